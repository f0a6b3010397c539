-- ringex history: reference data, accounts, users, orders, balances, transfers, candles and the
-- writer's checkpoint. Prices are integer ticks and sizes integer lots as inside the pipeline;
-- the *_decimal views show them as exact numerics with the symbol's decimals. Balances and
-- transfers are exact numerics in asset units.

CREATE TABLE IF NOT EXISTS assets (
    id        integer PRIMARY KEY,
    name      text NOT NULL UNIQUE,
    decimals  smallint NOT NULL
);

CREATE TABLE IF NOT EXISTS symbols (
    id              integer PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    base_asset_id   integer NOT NULL REFERENCES assets (id),
    quote_asset_id  integer NOT NULL REFERENCES assets (id),
    price_decimals  smallint NOT NULL,
    qty_decimals    smallint NOT NULL,
    tick            bigint NOT NULL,
    lot             bigint NOT NULL
);

-- The last journal seq whose rows are all committed: written in the same transaction as them.
CREATE TABLE IF NOT EXISTS checkpoint (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_seq  bigint NOT NULL,
    updated   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO checkpoint (id, last_seq) VALUES (true, 0) ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS accounts (
    id           bigint PRIMARY KEY,
    created_seq  bigint NOT NULL,
    created      timestamptz NOT NULL
);

-- FIX users (the gateway's user store, not journaled): synchronised, not keyed by seq.
CREATE TABLE IF NOT EXISTS users (
    id              bigint PRIMARY KEY,  -- the session id records carry
    username        text NOT NULL UNIQUE,
    password_hash   text NOT NULL,       -- scrypt$n$r$p$salt_hex$digest_hex
    sender_comp_id  text NOT NULL UNIQUE,
    account_id      bigint NOT NULL,
    created         timestamptz NOT NULL DEFAULT now(),
    updated         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS order_statuses (
    code  smallint PRIMARY KEY,
    name  text NOT NULL UNIQUE
);
INSERT INTO order_statuses (code, name) VALUES
    (0, 'pending'), (1, 'new'), (2, 'partially_filled'), (3, 'filled'), (4, 'cancelled'),
    (5, 'expired'), (6, 'self_trade_cancelled'), (7, 'mass_cancelled'), (8, 'rejected')
ON CONFLICT DO NOTHING;

-- One row per order, upserted as its events change it (updated_seq orders the versions).
CREATE TABLE IF NOT EXISTS orders (
    id           bigint PRIMARY KEY,
    account_id   bigint NOT NULL,
    symbol_id    integer NOT NULL,
    side         smallint NOT NULL,  -- 1 buy, 2 sell
    ord_type     smallint NOT NULL,  -- 1 limit, 2 market, 3 stop, 4 stop limit
    tif          smallint NOT NULL,  -- 1 GTC, 2 IOC, 3 FOK, 4 DAY
    price        bigint NOT NULL,    -- ticks, as sent (0: none; not the cap the router set)
    stop_price   bigint NOT NULL,
    size         bigint NOT NULL,    -- lots: filled + remaining while open (a replace changes it)
    remaining    bigint NOT NULL,
    filled       bigint NOT NULL,
    status       smallint NOT NULL REFERENCES order_statuses (code),
    reject_code  integer NOT NULL,   -- procs.common.result_codes, 0 unless rejected
    created_seq  bigint NOT NULL,
    created      timestamptz NOT NULL,
    updated_seq  bigint NOT NULL,
    updated      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_account ON orders (account_id, created_seq);
CREATE INDEX IF NOT EXISTS orders_open ON orders (symbol_id, id) WHERE status IN (0, 1, 2);

CREATE TABLE IF NOT EXISTS balances (
    account_id   bigint NOT NULL,
    asset_id     integer NOT NULL,
    free         numeric NOT NULL,   -- asset units, exact
    reserved     numeric NOT NULL,
    updated_seq  bigint NOT NULL,
    updated      timestamptz NOT NULL,
    PRIMARY KEY (account_id, asset_id)
);

CREATE TABLE IF NOT EXISTS transfers (
    seq         bigint PRIMARY KEY,
    ts          timestamptz NOT NULL,
    account_id  bigint NOT NULL,
    asset_id    integer NOT NULL,
    amount      numeric NOT NULL,    -- asset units: > 0 deposit, < 0 withdrawal
    key         bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS candles (
    symbol_id       integer NOT NULL,
    interval_s      integer NOT NULL,
    bucket          timestamptz NOT NULL,
    open            bigint NOT NULL,   -- ticks
    high            bigint NOT NULL,
    low             bigint NOT NULL,
    close           bigint NOT NULL,
    volume          bigint NOT NULL,   -- lots
    quote_volume    numeric NOT NULL,  -- ticks x lots
    trades          bigint NOT NULL,
    first_trade_id  bigint NOT NULL,
    last_trade_id   bigint NOT NULL,
    PRIMARY KEY (symbol_id, interval_s, bucket)
);

CREATE OR REPLACE VIEW orders_decimal AS
SELECT o.id, o.account_id, s.name AS symbol, o.side, o.ord_type, o.tif,
       o.price * power(10::numeric, -s.price_decimals) AS price,
       o.stop_price * power(10::numeric, -s.price_decimals) AS stop_price,
       o.size * power(10::numeric, -s.qty_decimals) AS size,
       o.remaining * power(10::numeric, -s.qty_decimals) AS remaining,
       o.filled * power(10::numeric, -s.qty_decimals) AS filled,
       st.name AS status, o.reject_code, o.created_seq, o.created, o.updated_seq, o.updated
FROM orders o JOIN symbols s ON s.id = o.symbol_id JOIN order_statuses st ON st.code = o.status;
