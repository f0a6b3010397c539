"""The market data's state machine: L2 books, trade tapes, 24h tickers and candles built from
matcher events (sans-I/O). The marketdata process publishes it; a hot standby keeps one too,
so that a promoted instance's market data goes on where the primary's stopped."""
