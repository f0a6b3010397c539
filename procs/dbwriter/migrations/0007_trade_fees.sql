-- The commission each side of a trade paid, as the router settled it: floor(notional x bps /
-- 10000) under the maker's and the taker's fees in force at the trade (journaled FeeSchedule
-- records, so a fee change files each trade under its own fees), in minor units of the
-- symbol's quote asset (10^-decimals of it), integers as price and size are; trades_decimal
-- shows them in quote asset units. The writer files them with every trade from now on;
-- trades filed before this migration have NULL: their fees were not kept.
ALTER TABLE trades ADD COLUMN IF NOT EXISTS maker_fee bigint,
                   ADD COLUMN IF NOT EXISTS taker_fee bigint;

CREATE OR REPLACE VIEW trades_decimal AS
SELECT s.name AS symbol, t.trade_id, t.seq, t.ts,
       t.price * power(10::numeric, -s.price_decimals) AS price,
       t.size * power(10::numeric, -s.qty_decimals) AS size,
       t.aggressor, t.maker_order_id, t.maker_account_id, t.taker_order_id, t.taker_account_id,
       t.maker_fee * power(10::numeric, -q.decimals) AS maker_fee,
       t.taker_fee * power(10::numeric, -q.decimals) AS taker_fee,
       q.name AS fee_asset
FROM trades t JOIN symbols s ON s.id = t.symbol_id JOIN assets q ON q.id = s.quote_asset_id;
