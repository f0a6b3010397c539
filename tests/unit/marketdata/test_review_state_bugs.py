"""Bugs a hostile review of the market-data state found (``procs/core/market``, its saved
state, the reseed after a matcher restart), one test each; each failed before its fix (the
flush-dependent candles of late-stamped trades, once a strict xfail here, too):

- a backlog read after the wall clock moved on (a restart after downtime, a feed that fell
  behind) lumps every trade past the first batch into the current candle and leaves their
  own candles flat;
- even on event time alone (no wall clock), which candle a late-stamped trade lands in
  depends on where the flushes fall, so a crash replay builds other candles than the live run;
- a batch whose trades cross two candle boundaries never publishes the first closed
  candle's final value;
- the reseed at a matcher's replay mark sets the books but not a halt the state missed;
- a saved-state file that unpickles to something other than a dict crashes the start.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any, cast

from procs.common.market_snapshots import MarketSnapshots
from procs.common.record_codec import RecordCodec
from procs.common.records import AdminCommand, Record
from procs.common.snapshots import SnapshotStore
from procs.common.topology import matcher_output, snapshot_dir
from procs.common.types import AdminAction, Side, TradingStatus
from procs.core.engine import Matcher
from procs.core.market.candles import Candle
from procs.core.market.state import CandleUpdate, MarketState, build_state
from procs.core.symbols import symbol_specs
from procs.marketdata.feed import Feed
from procs.marketdata.reseed import Reseeder
from tests.unit.marketdata.feed_fakes import ListConsumer, NullHub

from .events import MIN, SYMBOL, T0, level, trade
from .rig import config
from .test_server import order

SEC = 1_000_000_000


def minute_candles(state: MarketState) -> dict[int, tuple[int, int, int]]:
    """Symbol 1's 1m candles: open_ns -> (trades, volume, close)."""
    series = state.symbols[1].candles["1m"]
    return {c.open_ns: (c.trades, c.volume, c.close) for c in series.history(1000)}


def test_a_backlog_read_after_the_wall_clock_keeps_each_trade_in_its_own_candle() -> None:
    """Trades of the last minutes still in the ring (a restart after a short downtime, or a
    feed that fell behind) are read a batch at a time, and after the first batch the feed
    feeds the wall clock to the state: every later trade of the backlog is then "late" and
    counted in the current candle, while the candles of its own minutes stay flat at zero
    volume. Never stopped, the state would have each trade in its minute's candle."""
    now = time.time_ns()
    base = now - now % MIN - 5 * MIN
    backlog: list[Record] = [
        trade(k + 1, k + 1, 10_000 + k, 1, ts=base + k * MIN + SEC) for k in range(4)
    ]
    reference = MarketState([SYMBOL])
    for event in backlog:
        reference.process(event, [])
    reference.flush()

    restarted = MarketState([SYMBOL])
    consumer = ListConsumer(backlog)
    feed = Feed(
        restarted,
        cast(Any, NullHub()),
        [cast(Any, consumer)],
        batch=1,  # the ring holds more than one batch (1024 events in production)
    )
    while feed.pump():
        pass
    got = minute_candles(restarted)
    assert [got[base + k * MIN] for k in range(4)] == [
        minute_candles(reference)[base + k * MIN] for k in range(4)
    ]


def test_a_crash_replay_builds_the_candles_of_the_live_run() -> None:
    """Event time only, no wall clock. Live, each event comes in its own batch: a resting
    order stamped 60.5 s (its ``BookLevel``) moves the clock into minute 1, so a trade from a
    gateway whose clock is slightly behind (stamped 59.9 s, sequenced after it) is counted in
    the 1m candle of minute 1. After a crash the state restarts from the checkpoint taken
    after the first event and reads the other two again in one batch: the trade must land in
    minute 1 again (it used to land in minute 0, as the clock moved only at a flush)."""
    events: list[Record] = [
        trade(1, 1, 100, 1, ts=T0 + 59 * SEC),
        level(2, Side.BUY, 90, 1, ts=T0 + 60 * SEC + SEC // 2),
        trade(3, 2, 200, 1, ts=T0 + 59 * SEC + 9 * SEC // 10),
    ]
    live = MarketState([SYMBOL])
    live.process(events[0], [])
    live.flush()
    checkpoint = pickle.dumps(live)
    for event in events[1:]:  # one event a batch
        live.process(event, [])
        live.flush()

    replayed = pickle.loads(checkpoint)
    assert isinstance(replayed, MarketState)
    for event in events[1:]:  # read again after the crash, in one batch
        replayed.process(event, [])
    replayed.flush()
    assert minute_candles(replayed) == minute_candles(live)


def test_every_closed_candle_with_trades_is_published_with_its_final_value() -> None:
    """A subscriber saw minute 0's candle open (close 100, 1 trade). The next batch has a
    trade in minute 0 (150), one in minute 1 and one in minute 2 (a feed catching up). The
    flush publishes only the newest closed candle (minute 1) and the open one: minute 0's
    final value (close 150, 2 trades, ``x`` true) never reaches the stream, so the client's
    chart keeps a wrong close for it."""
    state = MarketState([SYMBOL])
    state.process(trade(1, 1, 100, 1, ts=T0 + SEC), [])
    state.flush()
    for event in (
        trade(2, 2, 150, 1, ts=T0 + 30 * SEC),
        trade(3, 3, 160, 1, ts=T0 + MIN + SEC),
        trade(4, 4, 170, 1, ts=T0 + 2 * MIN + SEC),
    ):
        state.process(event, [])
    published = [
        u.candle for u in state.flush() if isinstance(u, CandleUpdate) and u.interval == "1m"
    ]
    final: dict[int, Candle] = {c.open_ns: c for c in published if c.closed}
    assert T0 in final
    assert (final[T0].close, final[T0].trades) == (150, 2)


def test_the_reseed_at_a_replay_mark_also_sets_a_missed_halt(instance: str, tmp_path: Path) -> None:
    """The market state was saved before a halt and the crash took the rings (the case the
    reseed exists for): at the restarted matcher's mark the books are set from the matcher's
    state at that seq, but its symbol status, which the same state holds (``halted``), is
    not: the status stream keeps saying TRADING for a halted symbol until the next admin
    command."""
    cfg = config(instance, str(tmp_path))
    matcher = Matcher(symbol_specs(cfg, "m1"))
    matcher.execute_all([order(1, Side.BUY, 10_000, 5), order(2, Side.SELL, 10_100, 3)])
    matcher.execute_all([AdminCommand(3, time.time_ns(), AdminAction.HALT, 1, 0)])
    assert matcher.books[1].halted
    SnapshotStore(snapshot_dir(cfg, "matcher-m1")).save(3, matcher.snapshot())

    state = build_state(cfg)  # saved before any of it
    records = Reseeder(cfg, RecordCodec())(matcher_output("m1"), 3, time.time_ns(), state)
    for record in records:
        state.process(record, [])
    assert state.symbols[1].book.levels() == matcher.books[1].levels()  # the books: fine
    assert state.symbols[1].status.status == TradingStatus.HALTED


def test_a_foreign_pickle_that_is_not_a_dict_starts_empty(tmp_path: Path) -> None:
    """``load`` promises to start empty, with a log line, on a torn or foreign file; a file
    that unpickles fine but to something else than the dict ``save`` writes (a list) raises
    ``AttributeError`` from ``saved.get`` and stops the process's start."""
    path = tmp_path / "market.state"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    assert MarketSnapshots(path).load(MarketState([SYMBOL])) is None
