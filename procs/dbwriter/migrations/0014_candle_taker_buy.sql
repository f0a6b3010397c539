-- A candle's taker buy volume (lots) and taker buy quote volume (ticks x lots): what the
-- trades whose aggressor bought added, the 10th and 11th fields of a Binance kline, which
-- client libraries read by position. Constant defaults: no table rewrite. Candles filed
-- before are filled in from the trades table (a trade pruned since adds nothing).
ALTER TABLE candles ADD COLUMN taker_buy_volume numeric NOT NULL DEFAULT 0;
ALTER TABLE candles ADD COLUMN taker_buy_quote_volume numeric NOT NULL DEFAULT 0;
UPDATE candles c SET taker_buy_volume = t.v, taker_buy_quote_volume = t.q FROM (
    SELECT t.symbol_id, i.s AS interval_s,
           date_bin(make_interval(secs => i.s), t.ts, 'epoch') AS bucket,
           sum(t.size)::numeric AS v, sum(t.price::numeric * t.size) AS q
    FROM trades t CROSS JOIN (VALUES (60), (3600), (86400)) AS i (s)
    WHERE t.aggressor = 1
    GROUP BY 1, 2, 3
) t
WHERE c.symbol_id = t.symbol_id AND c.interval_s = t.interval_s AND c.bucket = t.bucket;
