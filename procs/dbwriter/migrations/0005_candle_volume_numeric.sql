-- A candle's volume (lots) can pass 2^63 - 1: the same lots traded back and forth within a
-- minute or a day add up, where no balance can. numeric, like quote_volume: a writer that
-- met such a candle stopped for good (an overflow on every restart).
ALTER TABLE candles ALTER COLUMN volume TYPE numeric;
