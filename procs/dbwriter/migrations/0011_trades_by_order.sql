-- myTrades with an orderId asks for one order's trades: by the account indexes (0003) they
-- were found by walking the account's trades on the symbol from the newest back to the
-- order's (or up from a fromId), a market maker's every trade since an order it placed that
-- morning. These find an order's trades directly, in trade id order. Each costs the writer
-- an index insert per trade, as each of 0003's does.
CREATE INDEX IF NOT EXISTS trades_maker_order ON trades (maker_order_id, trade_id);
CREATE INDEX IF NOT EXISTS trades_taker_order ON trades (taker_order_id, trade_id);
