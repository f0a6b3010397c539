-- A user's trades (the REST API's myTrades) by account: without these, finding one account's
-- trades scans every trade of the symbol. They cost the writer an index insert per side.
CREATE INDEX IF NOT EXISTS trades_maker_account ON trades (maker_account_id, symbol_id, trade_id);
CREATE INDEX IF NOT EXISTS trades_taker_account ON trades (taker_account_id, symbol_id, trade_id);
