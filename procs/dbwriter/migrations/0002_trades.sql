-- Trades, partitioned by time: a TimescaleDB hypertable (1-day chunks) when the extension is
-- installed and preloaded, else native range partitions by UTC day, which the writer creates
-- ahead with ringex_trade_partitions(); a BRIN index on ts either way (ts follows seq).
-- The key holds ts because a partitioned table's unique keys must contain its partition key.

DO $$
DECLARE
    columns constant text := '
        symbol_id         integer NOT NULL,
        trade_id          bigint NOT NULL,   -- gapless per symbol
        seq               bigint NOT NULL,   -- the command that made it
        ts                timestamptz NOT NULL,
        price             bigint NOT NULL,   -- ticks
        size              bigint NOT NULL,   -- lots
        aggressor         smallint NOT NULL, -- the taker''s side: 1 buy, 2 sell
        maker_order_id    bigint NOT NULL,
        maker_account_id  bigint NOT NULL,
        taker_order_id    bigint NOT NULL,
        taker_account_id  bigint NOT NULL,
        PRIMARY KEY (symbol_id, trade_id, ts)';
    preloaded boolean := false;
BEGIN
    IF to_regclass('trades') IS NOT NULL THEN
        RETURN;
    END IF;
    BEGIN  -- only a superuser (or pg_read_all_settings) may read it: else native partitions
        preloaded := current_setting('shared_preload_libraries') LIKE '%timescaledb%';
    EXCEPTION WHEN insufficient_privilege THEN
        preloaded := false;
    END;
    IF preloaded AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        EXECUTE 'CREATE TABLE trades (' || columns || ')';
        PERFORM create_hypertable('trades', 'ts', chunk_time_interval => interval '1 day');
    ELSE
        EXECUTE 'CREATE TABLE trades (' || columns || ') PARTITION BY RANGE (ts)';
    END IF;
    CREATE INDEX trades_ts_brin ON trades USING brin (ts);
END
$$;

-- Create the daily partitions that cover [from_day, to_day] (UTC); returns how many it made.
-- A hypertable makes its own chunks: then it makes none.
CREATE OR REPLACE FUNCTION ringex_trade_partitions(from_day date, to_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date := from_day;
    made integer := 0;
    part text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'trades'::regclass) THEN
        RETURN 0;
    END IF;
    WHILE d <= to_day LOOP
        part := 'trades_' || to_char(d, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF trades FOR VALUES FROM (%L) TO (%L)',
                part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            made := made + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN made;
END
$$;

CREATE OR REPLACE VIEW trades_decimal AS
SELECT s.name AS symbol, t.trade_id, t.seq, t.ts,
       t.price * power(10::numeric, -s.price_decimals) AS price,
       t.size * power(10::numeric, -s.qty_decimals) AS size,
       t.aggressor, t.maker_order_id, t.maker_account_id, t.taker_order_id, t.taker_account_id
FROM trades t JOIN symbols s ON s.id = t.symbol_id;
