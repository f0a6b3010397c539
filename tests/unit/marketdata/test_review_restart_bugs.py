"""Bugs a hostile review of the market-data process's restarts found (its saved state, the
ring positions saved with it, what it reads on after a restart), one test each; each fails
until its fix:

- a checkpoint whose save fails still commits the rings: the next restart loads the older
  state, reads on from the committed positions, and the books miss the changes in between
  for good (the diff ids stay contiguous, so no client can tell);
- a saved state that is torn, missing or of another version starts the process empty while
  the rings are read on from their committed positions: every level that does not change
  again is missing, although the matchers' state could reseed it (as at a replay mark);
- ``MarketSnapshots.save`` never fsyncs (neither the file nor the directory), so a power
  loss after the rename can leave an empty or partial file in place of both states;
- a backlog on one matcher's ring (a restart after a short downtime) is read a batch at a
  time beside another ring's newer events: the state's single clock moves to the other
  ring's time, and the backlog's trades land in the current candle, their own minutes flat.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, cast

import pytest

from procs.common.market_snapshots import MarketSnapshots, Positions
from procs.common.records import Record
from procs.common.snapshots import SnapshotStore
from procs.common.topology import MARKETDATA, matcher_output, snapshot_dir
from procs.core.engine import Matcher
from procs.core.market.state import MarketState
from procs.core.symbols import symbol_specs
from procs.marketdata.feed import Feed
from shm import Ring
from tests.unit.marketdata.feed_fakes import ListConsumer, NullHub

from .events import MIN, OTHER, SYMBOL, T0, trade
from .rig import CODEC, close_process, config, drain_feed, event_time_process
from .test_server import random_orders

SEC = 1_000_000_000


def test_a_failed_save_then_a_restart_leaves_the_book_wrong(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Feed.checkpoint`` commits the rings even when ``snapshots.save`` raised (a full
    disk for a moment): the file keeps the state of the checkpoint before, the rings are
    committed past it. ``resume`` then sees ``upto < consumer.sequence`` and reads on from
    the committed position, silently: the events in between are never applied, and no
    matcher mark comes to reseed the book. Expected after the restart: the book the
    matcher has (every level the events set); actual: the levels changed between the two
    checkpoints are missing (or stale), and the next diffs' ids stay contiguous, so no
    client can detect the gap."""
    cfg = config(instance, str(tmp_path), snapshot_every_s=3600)
    ring = Ring.create(
        instance, matcher_output("m1"), CODEC, capacity=1 << 14, consumers=[MARKETDATA]
    )
    producer = ring.producer()
    matcher = Matcher(symbol_specs(cfg, "m1"))
    rng = random.Random(11)
    try:
        process = event_time_process(cfg)
        producer.publish_batch(matcher.execute_all(random_orders(rng, 1, 100)))
        drain_feed(process)
        process.feed.checkpoint()  # saved and committed

        def full_disk(self: MarketSnapshots, state: MarketState, positions: Positions) -> int:
            raise OSError(28, "No space left on device")

        producer.publish_batch(matcher.execute_all(random_orders(rng, 101, 100)))
        drain_feed(process)
        with monkeypatch.context() as patched:
            patched.setattr(MarketSnapshots, "save", full_disk)
            process.feed.checkpoint()  # not saved, committed all the same
        live = process.state.symbols[1].book.levels()
        assert live == matcher.books[1].levels()  # before the restart: right
        close_process(process)
        # what the matcher has on disk (the fix sets the books from it at this restart)
        SnapshotStore(snapshot_dir(cfg, "matcher-m1")).save(200, matcher.snapshot())

        again = event_time_process(cfg)
        drain_feed(again)
        got = again.state.symbols[1].book.levels()
        close_process(again)
        assert got == matcher.books[1].levels()
    finally:
        producer.close()
        ring.close()


def test_a_torn_saved_state_restarts_with_the_matchers_books(instance: str, tmp_path: Path) -> None:
    """The saved state is torn (what a power loss after the un-fsynced rename leaves; a
    deleted file or one of another version goes the same way): ``load`` logs it and the
    process starts empty, but its rings are read on from their committed positions, past
    every event that built the books. The matcher's state at the last seq is on disk (its
    snapshot), the very thing ``Reseeder`` sets books from at a replay mark, but nothing
    consults it at this start. Expected: the BTC-USD book equals the matcher's; actual: it
    is empty (and the first depth snapshot says ``lastUpdateId`` 0 after 200, ids running
    backwards), until each level happens to change again."""
    cfg = config(instance, str(tmp_path), snapshot_every_s=3600)
    ring = Ring.create(
        instance, matcher_output("m1"), CODEC, capacity=1 << 14, consumers=[MARKETDATA]
    )
    producer = ring.producer()
    matcher = Matcher(symbol_specs(cfg, "m1"))
    try:
        process = event_time_process(cfg)
        producer.publish_batch(matcher.execute_all(random_orders(random.Random(12), 1, 200)))
        SnapshotStore(snapshot_dir(cfg, "matcher-m1")).save(200, matcher.snapshot())
        drain_feed(process)
        process.feed.checkpoint()
        assert process.state.symbols[1].book.levels() == matcher.books[1].levels()
        close_process(process)

        path = process.snapshots.path
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # torn

        again = event_time_process(cfg)
        drain_feed(again)
        book = again.state.symbols[1].book
        got = (book.levels(), book.last_update_id)
        close_process(again)
        expected = matcher.books[1].levels()
        assert expected  # the matcher has resting orders
        assert got == (expected, 200)
    finally:
        producer.close()
        ring.close()


def test_the_saved_state_is_fsynced_before_and_after_its_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module says "a crash leaves one or the other", and the rest of the project writes
    such files with ``procs.common.durable.replace_durably`` (write aside, fsync, rename,
    fsync the directory). ``MarketSnapshots.save`` writes aside and renames but never
    fsyncs: after a power loss the renamed name may hold an empty or partial file (the
    data was still in the page cache), which loads as "not loadable" and starts the
    process empty (see the test above). Expected: an fsync of the new file before
    ``os.replace`` and one (of the directory) after; actual: no fsync at all."""
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    state = MarketState([SYMBOL])
    state.process(trade(1, 1, 100, 1), [])
    MarketSnapshots(tmp_path / "market.state").save(state, {"r": (1, 1)})
    assert "replace" in calls
    k = calls.index("replace")
    assert "fsync" in calls[:k], "the file's data is not made durable before the rename"
    assert "fsync" in calls[k + 1 :], "the rename is not made durable (directory fsync)"


def _minute_candles(state: MarketState, symbol: int) -> dict[int, tuple[int, int, int]]:
    series = state.symbols[symbol].candles["1m"]
    return {c.open_ns: (c.trades, c.volume, c.close) for c in series.history(1000)}


def test_a_backlog_on_one_ring_keeps_its_trades_in_their_own_candles() -> None:
    """Two matchers: m1 (BTC-USD) traded once a minute for three minutes, m2 (ETH-USD) once,
    in minute 3, while the market data was down; both backlogs wait in their rings. The
    feed reads a batch of every ring per pump (1 here; 1024 in production, so a backlog of
    a second of a busy book is enough), and ``MarketState`` keeps one clock for all
    symbols: after the first pump it is at ETH-USD's minute 3, ``flush`` advances
    BTC-USD's candles to it, and the BTC-USD trades of minutes 1 and 2 read next are
    "late", counted in minute 3's candle. The wall-clock guard (``behind``) does not help:
    the clock comes from the other ring's events. Expected: BTC-USD's 1m candles as the
    events build them in exchange order (one trade in each of minutes 0, 1, 2); actual:
    minutes 1 and 2 flat, minute 3 with two trades."""
    btc: list[Record] = [
        trade(k + 1, k + 1, 10_000 + k, 1, ts=T0 + k * MIN + SEC) for k in range(3)
    ]
    eth: list[Record] = [trade(4, 1, 2_000, 1, symbol=2, ts=T0 + 3 * MIN + SEC)]

    reference = MarketState([SYMBOL, OTHER])
    for event in btc + eth:  # the exchange's order (by seq)
        reference.process(event, [])
        reference.flush()

    restarted = MarketState([SYMBOL, OTHER])
    consumers = [
        ListConsumer(name=matcher_output("m1"), events=btc),
        ListConsumer(name=matcher_output("m2"), events=eth),
    ]
    feed = Feed(restarted, cast(Any, NullHub()), cast(Any, consumers), batch=1)
    feed._next_clock = float("inf")  # event time only: no wall clock at all
    while feed.pump():
        pass
    want = _minute_candles(reference, 1)
    got = _minute_candles(restarted, 1)
    assert [got[T0 + k * MIN] for k in range(3)] == [want[T0 + k * MIN] for k in range(3)]
