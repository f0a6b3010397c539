"""OHLC candles of one symbol at one interval, built from trades and the clock.

Candles are aligned to the Unix epoch (UTC): a 1h candle spans [hh:00, hh+1:00). Time is the
events' ``ts_ns`` (the command's time, so a replay builds the same candles), pushed forward by
``advance(now_ns)`` so that a new candle opens on time when nobody trades: it opens flat at
the previous close with zero volume, as the venues do, until its first trade, which is its
open (open, high and low: the price of the interval's first trade, as the history in
PostgreSQL has it). Before the first trade there is no candle. A trade stamped before the
clock (clocks of two gateways differ slightly) is counted in the candle open at the clock: a
closed candle never changes. The clock a trade sees is the newest event time before it in
the exchange's order (``MarketState`` passes it), not the time of the last flush, so a
replay that reads the same events in other batches builds the same candles.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

_NS: Final = 1_000_000_000

#: Interval name -> length in ns, in the order the venues list them.
INTERVALS: Final[dict[str, int]] = {
    "1m": 60 * _NS,
    "5m": 300 * _NS,
    "15m": 900 * _NS,
    "1h": 3_600 * _NS,
    "4h": 14_400 * _NS,
    "1d": 86_400 * _NS,
}
#: The flat candles of an idle gap published closed (the newest ones): the stream sends the
#: closes of a short gap as they would have come; a long one's are in the history.
PUBLISHED_FLATS = 10


@dataclass
class Candle:
    open_ns: int
    close_ns: int  # exclusive end
    open: int
    high: int
    low: int
    close: int
    volume: int = 0  # size units
    quote_volume: int = 0  # price x size units
    trades: int = 0
    closed: bool = False
    #: Ids of its first and last trade; 0 while it has none (a flat candle), as the
    #: ticker's. (Class defaults: a candle pickled before they existed loads with 0.)
    first_trade_id: int = 0
    last_trade_id: int = 0
    #: What the trades whose aggressor bought added (Binance's kline ``V`` and ``Q``; the
    #: writer's candles keep the same, migration 0014); 0 in a candle pickled before.
    taker_buy_volume: int = 0
    taker_buy_quote_volume: int = 0

    def copy(self) -> Candle:
        return Candle(**self.__dict__)


class CandleSeries:
    """The open candle and the last ``history`` closed ones of one interval."""

    def __init__(self, interval: str, history: int = 500) -> None:
        if interval not in INTERVALS:
            raise ValueError(f"interval {interval!r} is not one of {', '.join(INTERVALS)}")
        self.interval = interval
        self.length_ns = INTERVALS[interval]
        self.current: Candle | None = None
        self.closed: deque[Candle] = deque(maxlen=history)
        self.changed = False  # the open candle changed since the last take_changed
        #: Candles closed since then (each batch may cross several boundaries).
        self._just_closed: list[Candle] = []

    def __setstate__(self, state: dict[str, object]) -> None:
        """A state pickled when ``_just_closed`` held one candle or None."""
        just = state.get("_just_closed")
        if not isinstance(just, list):
            state["_just_closed"] = [] if just is None else [just]
        self.__dict__.update(state)

    def trade(
        self, ts_ns: int, price: int, qty: int, trade_id: int = 0, bought: bool = False
    ) -> None:
        """A trade of ``qty`` at ``price`` stamped ``ts_ns``; ``bought``: its aggressor was
        the buyer."""
        self.advance(ts_ns)
        c = self.current
        if c is None:
            start = ts_ns - ts_ns % self.length_ns
            c = self.current = Candle(start, start + self.length_ns, price, price, price, price)
        if not c.trades:  # opened flat on time: its first trade is its open
            c.open = c.high = c.low = price
            c.first_trade_id = trade_id
        elif price > c.high:
            c.high = price
        elif price < c.low:
            c.low = price
        c.close = price
        c.volume += qty
        c.quote_volume += price * qty
        c.trades += 1
        c.last_trade_id = trade_id
        if bought:
            c.taker_buy_volume += qty
            c.taker_buy_quote_volume += price * qty
        self.changed = True

    def advance(self, now_ns: int) -> None:
        """Close the open candle if ``now_ns`` is past its end and open the one holding
        ``now_ns``; flat candles fill an idle gap (at most ``history`` of them), of which
        the last ``PUBLISHED_FLATS`` are published (``take_changed``) beside the candle that
        closed: the history has them all (review 205: a long gap's finals, ``history`` a
        stream, went to every client at once)."""
        c = self.current
        if c is None or now_ns < c.close_ns:
            return
        gap = (now_ns - c.close_ns) // self.length_ns  # whole idle candles in between
        start = c.close_ns
        c.closed = True
        self.closed.append(c)
        self._just_closed.append(c)
        maxlen = self.closed.maxlen or 0
        if gap > maxlen:
            start += (gap - maxlen) * self.length_ns
            gap = maxlen
        for left in range(gap, 0, -1):
            flat = self._flat(start, c.close, closed=True)
            self.closed.append(flat)
            if left <= PUBLISHED_FLATS:  # published closed too, as the history lists it;
                self._just_closed.append(flat)  # those before, in the history only
            start += self.length_ns
        self.current = self._flat(start, c.close, closed=False)
        self.changed = True

    def _flat(self, start: int, price: int, *, closed: bool) -> Candle:
        return Candle(start, start + self.length_ns, price, price, price, price, closed=closed)

    def take_changed(self) -> list[Candle]:
        """Copies of what changed since the last call: the candles closed meanwhile, each
        with its final value (a batch may close several), and then the open one."""
        if not self.changed or self.current is None:
            return []
        self.changed = False
        out = [c.copy() for c in self._just_closed]
        self._just_closed.clear()
        out.append(self.current.copy())
        return out

    def history(self, limit: int) -> list[Candle]:
        """Up to ``limit`` most recent candles, oldest first, the open one last."""
        items = list(self.closed)
        if self.current is not None:
            items.append(self.current)
        return [c.copy() for c in items[-limit:]] if limit > 0 else []
