"""Market data: the matchers' events become books, tapes, tickers and candles per symbol, served
over WebSocket (venue-style streams) and as a browser page.

The state (``book``, ``tape``, ``ticker``, ``candles``, ``market``) and the protocol pieces
(``streams``, ``requests``, ``messages``, ``outbox``, ``hub``) are sans-I/O; ``server``, ``feed``
and ``main`` are the asyncio edge.
"""
