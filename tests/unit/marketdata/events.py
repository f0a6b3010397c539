"""Builders of matcher output events for market-data tests."""

from __future__ import annotations

from procs.common.records import BookLevel, Trade
from procs.common.types import Side
from procs.core.market.symbols import MarketSymbol

SYMBOL = MarketSymbol(id=1, name="BTC-USD", stream="btc-usd", price_decimals=2, qty_decimals=4)
OTHER = MarketSymbol(id=2, name="ETH-USD", stream="eth-usd", price_decimals=2, qty_decimals=4)
MIN = 60 * 1_000_000_000
T0 = 1_699_920_000 * 1_000_000_000  # a day boundary (UTC), so every interval starts here


def level(
    seq: int, side: Side, price: int, qty: int, *, symbol: int = 1, ts: int = T0
) -> BookLevel:
    return BookLevel(seq, ts, symbol, side, price, qty, 1 if qty else 0)


def trade(
    seq: int,
    trade_id: int,
    price: int,
    qty: int,
    *,
    symbol: int = 1,
    ts: int = T0,
    aggressor: Side = Side.BUY,
) -> Trade:
    return Trade(
        *(seq, ts, trade_id, symbol, price, qty, aggressor),
        *(7, 70, 1, 0, 8, 80, 1, 0),
    )
