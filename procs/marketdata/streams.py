"""Stream names, as the most used venue APIs spell them: ``<symbol>@trade``, ``<symbol>@depth``,
``<symbol>@depth5`` (10, 20: partial book depth), ``<symbol>@bookTicker``, ``<symbol>@ticker``,
``<symbol>@kline_<interval>``, the symbol lower-cased ("btc-usd"); and
``<symbol>@status``, the symbol's trading status (trading or halted), which a client needs to
tell a quiet book from a halted one. A depth stream named with an update speed, as Binance's
clients name them (``@depth@100ms``, ``@depth5@1000ms``), is that stream: the feed sends each
batch as it comes, faster than either (review 330)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from procs.core.market.candles import INTERVALS


class Kind(Enum):
    TRADE = "trade"
    DEPTH = "depth"
    PARTIAL_DEPTH = "depth<levels>"  # named depth5, depth10, depth20 (``PARTIAL_LEVELS``)
    TICKER = "ticker"
    BOOK_TICKER = "bookTicker"
    KLINE = "kline"
    STATUS = "status"
    HEARTBEAT = "heartbeat"  # the server's own, to every connection; not subscribable


#: The partial book depth streams' sizes: ``<symbol>@depth5`` is the best 5 levels a side.
PARTIAL_LEVELS: Final = (5, 10, 20)
_PARTIAL_NAMES: Final = {f"depth{n}": n for n in PARTIAL_LEVELS}
#: The update speeds a depth stream's name may end with (``btc-usd@depth@100ms``).
SPEEDS: Final = ("100ms", "1000ms")


@dataclass(frozen=True)
class Stream:
    symbol: str  # lower-cased stream prefix
    kind: Kind
    interval: str = ""  # kline only
    levels: int = 0  # partial depth only

    @property
    def name(self) -> str:
        if self.kind is Kind.KLINE:
            return f"{self.symbol}@kline_{self.interval}"
        if self.kind is Kind.PARTIAL_DEPTH:
            return f"{self.symbol}@depth{self.levels}"
        return f"{self.symbol}@{self.kind.value}"


class StreamError(ValueError):
    """A stream name that is malformed or names an unknown symbol or interval."""


def parse_stream(name: object, symbols: frozenset[str]) -> Stream:
    """``name`` as a ``Stream``; raises ``StreamError`` saying what is wrong with it."""
    if not isinstance(name, str):
        raise StreamError(f"stream name must be a string, got {type(name).__name__}")
    if len(name) > 64:
        raise StreamError(f"stream name is {len(name)} characters, at most 64")
    symbol, at, kind = name.partition("@")
    if not at:
        raise StreamError(f"stream {name!r} is not <symbol>@<kind>")
    if symbol not in symbols:
        raise StreamError(
            f"stream {name!r}: unknown symbol {symbol!r} ({', '.join(sorted(symbols))})"
        )
    depth, at, speed = kind.partition("@")
    if at and speed in SPEEDS and (depth == "depth" or depth in _PARTIAL_NAMES):
        kind = depth  # the same stream (its name without the speed)
    if kind.startswith("kline_"):
        interval = kind[len("kline_") :]
        if interval not in INTERVALS:
            raise StreamError(
                f"stream {name!r}: unknown interval {interval!r} ({', '.join(INTERVALS)})"
            )
        return Stream(symbol, Kind.KLINE, interval)
    if kind in _PARTIAL_NAMES:
        return Stream(symbol, Kind.PARTIAL_DEPTH, levels=_PARTIAL_NAMES[kind])
    try:
        parsed = Kind(kind)
    except ValueError:
        raise StreamError(
            f"stream {name!r}: unknown kind {kind!r} "
            "(trade, depth, depth5, depth10, depth20, bookTicker, ticker, kline_<interval>, "
            "status)"
        ) from None
    if parsed is Kind.HEARTBEAT:
        raise StreamError(f"stream {name!r}: heartbeats come to every connection unasked")
    if parsed is Kind.KLINE:
        raise StreamError(f"stream {name!r}: kline needs an interval, e.g. kline_1m")
    if parsed is Kind.PARTIAL_DEPTH:
        raise StreamError(f"stream {name!r}: a partial depth is depth5, depth10 or depth20")
    return Stream(symbol, parsed)
