"""Bugs a third hostile review of the market-data state found (``procs/core/market`` and the
feed and standby that drive it), one test each; each fails until its fix:

- a batch that crosses idle intervals (a feed catching up, a restart after downtime) closes
  the flat candles between its trades, but only the first closed candle is published: a
  kline subscriber never gets the flat ones, which ``/api/klines`` then shows;
- the standby's hot market state (``procs/replica/market.py``) is never flushed between its
  start and its stop, so every candle that closes meanwhile stays in ``_just_closed``: its
  memory grows with the time it runs, not with the bounded history;
- while one matcher's ring holds more than a batch (a backlog), the wall clock is fed to no
  symbol at all: the quiet symbols of every other matcher keep their candles open.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any, cast

from procs.common.records import Record
from procs.common.topology import matcher_output
from procs.core.market.state import CandleUpdate, MarketState, Update
from procs.marketdata.feed import Feed
from procs.replica.market import HotMarket
from tests.unit.marketdata.feed_fakes import ListConsumer, NullHub

from .events import MIN, OTHER, SYMBOL, T0, trade
from .rig import config

SEC = 1_000_000_000


class _Backlog(ListConsumer):
    """A ring that always holds more than a batch: every read is full (a busy book the feed
    lags, or a long backlog), its events stamped in the past."""

    def read(self, limit: int) -> list[Record]:
        start = self.sequence
        self.sequence += limit
        base = time.time_ns() - 30 * MIN
        return [
            trade(k + 1, k + 1, 2_000, 1, symbol=2, ts=base) for k in range(start, start + limit)
        ]


def _published_1m(updates: list[Update]) -> list[tuple[int, bool]]:
    return [
        (u.candle.open_ns, u.candle.closed)
        for u in updates
        if isinstance(u, CandleUpdate) and u.symbol == 1 and u.interval == "1m"
    ]


def test_every_flat_candle_a_batch_closes_is_published() -> None:
    """One batch (a feed catching up) holds a trade in minute 0 and one in minute 3. The
    state closes minute 0 and the flat candles of minutes 1 and 2 (``/api/klines`` lists
    them, closed, at minute 0's close), but ``take_changed`` returns only minute 0 and the
    open minute 3: ``CandleSeries.advance`` puts only the candle it closes in
    ``_just_closed``, never the flat ones it fills the gap with. A kline subscriber
    building its chart from the stream jumps from minute 0 to minute 3, and never gets the
    ``"x": true`` of minutes 1 and 2 that the venues stream for idle minutes. The
    docstring promises "the candles closed meanwhile, each with its final value".
    Expected: minutes 0, 1, 2 closed, then minute 3 open, as the REST history has them."""
    state = MarketState([SYMBOL])
    state.process(trade(1, 1, 100, 1, ts=T0 + SEC), [])
    state.flush()
    updates: list[Update] = []
    state.process(trade(2, 2, 150, 1, ts=T0 + 2 * SEC), updates)
    state.process(trade(3, 3, 200, 1, ts=T0 + 3 * MIN + SEC), updates)
    updates += state.flush()
    history = state.symbols[1].candles["1m"].history(10)
    assert [(c.open_ns, c.closed) for c in history] == [
        (T0, True),
        (T0 + MIN, True),
        (T0 + 2 * MIN, True),
        (T0 + 3 * MIN, False),
    ]
    assert _published_1m(updates) == [(c.open_ns, c.closed) for c in history]


def test_the_standby_hot_market_does_not_keep_every_closed_candle(tmp_path: Path) -> None:
    """``HotMarket.observe`` feeds the standby's ``MarketState`` with every command's events
    and drops the updates, but never calls ``flush``; only ``save`` (at the standby's stop)
    does. ``CandleSeries.advance`` appends each candle it closes to ``_just_closed``, which
    only ``take_changed`` (from ``flush``) empties: on a standby that runs for weeks the
    list holds every candle closed since its start, at every interval of every symbol
    (about 1,900 a day a symbol trading each minute), far past the 500 the history keeps.
    Here, 3000 minutes of one trade a minute: the hot state pickles to twice the size of
    the same state flushed as the market-data process does. Expected: the same bounded
    memory as the live market data's state (observe flushes, or the state bounds it)."""
    cfg = config("review3-hot", str(tmp_path))
    hot = HotMarket(cfg)
    live = MarketState([SYMBOL, OTHER])
    for k in range(1, 3001):
        event = trade(k, k, 100 + k % 7, 1, ts=T0 + k * MIN)
        hot.observe([event])
        live.process(event, [])
        live.flush()
    just_closed = sum(len(s._just_closed) for s in hot.state.symbols[1].candles.values())
    assert just_closed <= 6, f"{just_closed} closed candles held for a flush that never comes"
    assert len(pickle.dumps(hot.state)) < 1.2 * len(pickle.dumps(live))


def test_a_backlog_on_one_ring_does_not_stop_the_clock_of_the_others() -> None:
    """Two matchers. m1's BTC-USD traded once, ten minutes ago, and is quiet since; m2's ring
    holds more than a batch on every read (a long backlog, or a busy book the feed lags).
    ``Feed.pump`` feeds the wall clock only when no ring's read was full (``behind``), and
    then to every symbol, so while m2 is behind no symbol of m1 sees the clock: BTC-USD's
    1m candle of ten minutes ago stays open (no ``"x": true``, no new minute) for as long
    as m2 lags, though m1's ring is caught up and none of its events can be late. The
    per-symbol clock (``SymbolMarket.clock_ns``) exists so that one ring's backlog does
    not decide another's candles. Expected: the symbols of the caught-up ring get the wall
    clock (only the lagging ring's are held back): BTC-USD's open candle is the current
    minute."""
    now = time.time_ns()
    btc = ListConsumer(
        name=matcher_output("m1"), events=[trade(1, 1, 10_000, 1, ts=now - 10 * MIN)]
    )
    eth = _Backlog([], matcher_output("m2"))
    state = MarketState([SYMBOL, OTHER])
    rings = {matcher_output("m1"): {SYMBOL.id}, matcher_output("m2"): {OTHER.id}}
    feed = Feed(
        state,
        cast(Any, NullHub()),
        cast(Any, [btc, eth]),
        batch=16,
        clock_s=0.0,
        ring_symbols=rings,
    )
    for _ in range(5):
        feed.pump()
    current = state.symbols[1].candles["1m"].current
    assert current is not None
    minute = time.time_ns() // MIN * MIN
    assert current.open_ns >= minute - MIN, (
        f"BTC-USD's open 1m candle opened {(minute - current.open_ns) // MIN} minutes ago"
    )
