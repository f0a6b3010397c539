-- trades_decimal's fees in quote asset units, exactly at any of the asset's decimals (up to
-- 18): power(10::numeric, -18) is 0E-16 in PostgreSQL (a negative power keeps 16 digits of
-- scale), so a quote asset of 17 or 18 decimals showed every fee as 0 (review 50). The
-- scale is now the literal 1e-<decimals>, which numeric holds exactly. Prices and sizes keep
-- power(): their decimals are at most 12.
CREATE OR REPLACE VIEW trades_decimal AS
SELECT s.name AS symbol, t.trade_id, t.seq, t.ts,
       t.price * power(10::numeric, -s.price_decimals) AS price,
       t.size * power(10::numeric, -s.qty_decimals) AS size,
       t.aggressor, t.maker_order_id, t.maker_account_id, t.taker_order_id, t.taker_account_id,
       t.maker_fee * ('1e-' || q.decimals)::numeric AS maker_fee,
       t.taker_fee * ('1e-' || q.decimals)::numeric AS taker_fee,
       q.name AS fee_asset
FROM trades t JOIN symbols s ON s.id = t.symbol_id JOIN assets q ON q.id = s.quote_asset_id;
