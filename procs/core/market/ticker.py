"""A symbol's rolling 24-hour ticker: open, high, low, last, volume, quote volume, change.

The window is kept as one-minute buckets, so it rolls with one-minute resolution: it holds
the minute of ``now`` and the 1439 before it. Per-trade cost is O(1); when a bucket leaves the
window the high and low are recomputed over the (at most 1440) buckets left, at most once a
minute. Exact per-trade expiry would need every trade of a day in memory (86M at 1000/s);
the venues' own 24h tickers are not exact to the trade either.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from procs.common.records import Trade

BUCKET_NS: Final = 60 * 1_000_000_000
WINDOW_BUCKETS: Final = 24 * 60


@dataclass
class _Bucket:
    start_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    trades: int
    first_trade_id: int


@dataclass(frozen=True)
class Ticker:
    symbol: int
    ts_ns: int  # the newest time the ticker has seen
    open: int  # price of the window's first trade; last price when the window is empty
    high: int
    low: int
    last: int
    volume: int
    quote_volume: int
    trades: int
    first_trade_id: int  # 0 when the window holds no trade
    last_trade_id: int  # 0 when the window holds no trade
    open_ns: int  # start of the window
    last_qty: int = 0  # size of the last trade (kept when the window empties, as ``last``)
    #: the price of the last trade before the window's first (Binance's ``x``,
    #: ``prevClosePrice``): the close of the newest bucket the window dropped; 0 while none
    #: was dropped (the exchange younger than the window: no such trade)
    prev_close: int = 0

    @property
    def change(self) -> int:
        return self.last - self.open

    def change_bps_x100(self) -> int:
        """Change in hundredths of a percent, rounded half away from zero (1234 = 12.34%)."""
        if self.open == 0:
            return 0
        num = self.change * 10_000
        q, r = divmod(abs(num), abs(self.open))
        if 2 * r >= abs(self.open):
            q += 1
        return q if (num >= 0) == (self.open > 0) else -q


class RollingTicker:
    last_qty = 0  # (a class default: a state saved before it existed loads with 0)
    prev_close = 0  # (the same; ``Ticker.prev_close``)

    def __init__(self, symbol: int) -> None:
        self.symbol = symbol
        self._buckets: deque[_Bucket] = deque()
        self._volume = 0
        self._quote = 0
        self._trades = 0
        self._high = 0
        self._low = 0
        self.last = 0  # last trade price, kept when the window empties
        self.last_trade_id = 0
        self.now_ns = 0
        self.changed = False

    def trade(self, ts_ns: int, trade_id: int, price: int, qty: int) -> None:
        self.advance(ts_ns)
        start = self.now_ns - self.now_ns % BUCKET_NS  # a late stamp joins the newest bucket
        b = self._buckets[-1] if self._buckets else None
        if b is None or b.start_ns < start:
            b = _Bucket(start, price, price, price, price, 0, 0, 0, trade_id)
            self._buckets.append(b)
            if len(self._buckets) == 1:
                self._high = self._low = price
        b.high = max(b.high, price)
        b.low = min(b.low, price)
        b.close = price
        b.volume += qty
        b.quote_volume += price * qty
        b.trades += 1
        self._high = max(self._high, price)
        self._low = min(self._low, price)
        self._volume += qty
        self._quote += price * qty
        self._trades += 1
        self.last = price
        self.last_qty = qty
        self.last_trade_id = trade_id
        self.changed = True

    def restore_prev_close(self, recent: Sequence[Trade]) -> None:
        """Set the previous close of a ticker saved by a build that did not keep it (it would
        read the class default 0 until a minute next left the window: up to a day in a quiet
        market) from ``recent``, the tape's trades, oldest first: the newest one older than
        the window's first trade, if the tape still holds one (review 337)."""
        if "prev_close" in self.__dict__:
            return
        first = self._buckets[0].first_trade_id if self._buckets else self.last_trade_id + 1
        before = [t.price for t in recent if t.trade_id < first]
        if before:
            self.prev_close = before[-1]

    def advance(self, now_ns: int) -> None:
        """Move the window's end to ``now_ns`` (never backwards) and drop expired buckets."""
        if now_ns <= self.now_ns:
            return
        self.now_ns = now_ns
        oldest = now_ns - now_ns % BUCKET_NS - (WINDOW_BUCKETS - 1) * BUCKET_NS
        buckets = self._buckets
        if not buckets or buckets[0].start_ns >= oldest:
            return
        while buckets and buckets[0].start_ns < oldest:
            gone = buckets.popleft()
            self.prev_close = gone.close
            self._volume -= gone.volume
            self._quote -= gone.quote_volume
            self._trades -= gone.trades
        if buckets:
            self._high = max(b.high for b in buckets)
            self._low = min(b.low for b in buckets)
        self.changed = True

    def ticker(self) -> Ticker | None:
        """The ticker now, or None before the first trade."""
        if self.last_trade_id == 0:
            return None
        window_start = self.now_ns - self.now_ns % BUCKET_NS - (WINDOW_BUCKETS - 1) * BUCKET_NS
        if not self._buckets:  # no trade in the window: none to name, the last price kept
            last = self.last
            return Ticker(
                *(self.symbol, self.now_ns, last, last, last, last, 0, 0, 0, 0, 0),
                *(window_start, self.last_qty, self.prev_close),
            )
        first = self._buckets[0]
        return Ticker(
            *(self.symbol, self.now_ns, first.open, self._high, self._low, self.last),
            *(self._volume, self._quote, self._trades, first.first_trade_id),
            *(self.last_trade_id, window_start, self.last_qty, self.prev_close),
        )

    def take_changed(self) -> Ticker | None:
        if not self.changed:
            return None
        self.changed = False
        return self.ticker()
