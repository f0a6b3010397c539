-- Two writers making the same day's partition at once (a failover's old and new writer, a
-- `ringex replay --to-db` beside the live one): the second's CREATE TABLE waited on the
-- first's lock on trades, then failed "relation already exists", a crash rather than the
-- partition it wanted. A day another made meanwhile is now taken as made.
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
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF trades FOR VALUES FROM (%L) TO (%L)',
                    part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
                made := made + 1;
            EXCEPTION WHEN duplicate_table OR unique_violation THEN
                NULL;  -- another writer made it between our look and our CREATE
            END;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN made;
END
$$;

-- allOrders and openOrders ask for one account's orders on one symbol by id (newest first
-- without a start): (account_id, created_seq) found every order of the account, on every
-- symbol, and sorted them, to answer 500 (a market maker's millions, at each request).
-- This one answers them in index order and serves lookups by account alone as well.
CREATE INDEX IF NOT EXISTS orders_account_symbol ON orders (account_id, symbol_id, id);
DROP INDEX IF EXISTS orders_account;

-- A hypertable got TimescaleDB's default B-tree on ts (trades_ts_idx) beside the BRIN
-- index 0002 makes: an index insert a trade that the plain path does not pay, and no query
-- needs (time ranges use the BRIN index, an account's trades 0003's).
DROP INDEX IF EXISTS trades_ts_idx;
