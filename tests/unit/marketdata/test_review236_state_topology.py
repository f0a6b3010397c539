"""Review 236: the market-data process's saved state across topology changes and restarts:
a crash and new rings of another size, a matcher renamed, a matcher added with a new
symbol, a matcher that crashed and restarted on its ring while the market data was down, a
ring that filled while it was down, a commit that landed right after a matcher's replay
mark.

Reviewed: ``procs/common/market_snapshots.py`` (``MarketSnapshots.load``: the symbols kept
since review 226), ``procs/marketdata/main.py`` (``resume``, ``_reseed``),
``procs/marketdata/feed.py`` (``pump``'s marks, ``checkpoint``, ``_applied``),
``procs/marketdata/reseed.py`` (``Reseeder``), ``procs/core/market/state.py`` and
``book.py`` (what a re-read event does), ``procs/matcher/main.py`` (its start: the
``REPLAY_SOURCE`` mark, ``published_position``), ``procs/common/topology.py``
(``create_rings``: every start of an instance makes new rings, so a topology change always
meets new rings and the saved positions of the old ones are not used).

Method: the router and matcher shells over the instance's real rings and journal (review
206's ``Rig``), or a matcher's output ring fed by hand with a real ``Matcher``'s events (as
``test_review_restart_bugs``), and the market-data process in this thread
(``rig.event_time_process``); its books are compared with the matcher's own.

Faults:

1. A ring that filled while the market data was down defeats the reseed of a lost or stale
   state. ``_reseed`` (``procs/marketdata/main.py:114-118``) anchors the books at the
   ring's last committed record, ``ring.record(consumer.sequence - 1)``; a matcher that
   ran on while the process was down stops exactly when the ring is full, which is the
   moment that record is overwritten: "the state misses events the ring no longer holds"
   is logged and the process serves, without a word to its clients, books that lack every
   level set before the commit and not changed since (diff ids contiguous). Fix: when the
   record before the commit is gone, anchor at the first unread one, which an active line
   keeps (``ring.record(consumer.sequence)``: its seq less one, or a mark's counter).
2. A commit that landed right after a matcher's replay mark reseeds the books back in time.
   ``_reseed`` (``main.py:119-120``) takes a ``REPLAY_SOURCE`` mark's counter as the seq the
   ring covered, but that counter is the seq of the snapshot the matcher restored: the
   events before the mark went out to the seq it had published before its crash (the very
   reason ``published_position`` walks back past such a mark). After a failed save (or a
   lost file) and a restart, the levels set between the snapshot's seq and the crash are
   missing. Fix: in ``_reseed``, for a ``REPLAY_SOURCE`` mark walk back as
   ``procs.matcher.main.published_position`` does (the newest event's seq, or a
   ``RECOVERED_SOURCE`` mark's counter, before it), at least the mark's counter.

Found sound: a crash of the whole instance (no stop snapshots) and a start on rings of
another size: a matcher restores an older snapshot and replays trades the saved state holds
onto its new ring; none is taken twice (each book its matcher's, each trade once on the
tape, the 24h volume and the 1m candles' once); a matcher renamed is refused before a start
(``units_differ``), so no renamed ring replays the journal from its start into the state; a
matcher added with a new symbol: the kept symbols' trades and books stay, the new one is the
matcher's, the symbols in the config's order (the tickers' arrays); a matcher that crashed
and restarted on its ring while the market data was down (its snapshot older than its last
events): the book is the matcher's, each trade once; a whole instance restarted from a
market state saved before its last trade: the book is set from the matcher's at its replay
mark (the tape's gap is the documented one).

Not tested: the WebSocket ``U``/``u`` across these restarts (a client resubscribes and gets
a snapshot; a reseed that changes a book at the seq its last diff ended at is sent as a
``reset``, which ``test_reseed`` and review 159 cover).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.schema import AssetConfig, RingexConfig
from procs.common.market_snapshots import MarketSnapshots, Positions
from procs.common.records import Heartbeat, Record, Trade
from procs.common.snapshots import SnapshotStore
from procs.common.topology import (
    MARKETDATA,
    RECOVERED_SOURCE,
    REPLAY_SOURCE,
    matcher_output,
    snapshot_dir,
)
from procs.common.types import Side
from procs.common.units import units_differ
from procs.core.engine import Matcher
from procs.core.market.state import MarketState
from procs.core.symbols import symbol_specs
from procs.marketdata.main import MarketDataProcess
from procs.matcher.main import MatcherShell
from shm import Ring
from shm.inspect import remove_instance
from tests.unit.marketdata import rig as md
from tests.unit.marketdata.test_server import order, random_orders
from tests.unit.supervisor.test_review206_config_change import (
    BTC_USD,
    ETH_USD,
    Rig,
    _matcher,
    _symbol,
    buy,
    changed,
    config,
    funded,
    sell,
)

SOL_USD = 3


@pytest.fixture
def cfg(instance: str, tmp_path: Path) -> Iterator[RingexConfig]:
    yield config(instance, tmp_path / "var")
    remove_instance(instance)


def start_md(cfg: RingexConfig) -> MarketDataProcess:
    """The market-data process of ``cfg`` (its saved state resumed), caught up."""
    process = md.event_time_process(cfg)
    md.drain_feed(process)
    return process


def stop_md(process: MarketDataProcess) -> None:
    """A clean stop: caught up, the state saved with its positions, the rings let go."""
    md.drain_feed(process)
    process.feed.checkpoint()
    md.close_process(process)


def view(state: MarketState, symbol: int) -> tuple[list[int], int, int, int]:
    """A symbol's trade ids on the tape, its 24h volume and trade count, its 1m candles'
    volume."""
    market = state.symbols[symbol]
    ticker = market.ticker.ticker()
    volume, trades = (ticker.volume, ticker.trades) if ticker is not None else (0, 0)
    candles = sum(c.volume for c in market.candles["1m"].history(1000))
    return [t.trade_id for t in market.tape.recent(100)], volume, trades, candles


def true_book(rig: Rig, matcher: str, symbol: int) -> object:
    return rig.matchers[matcher].matcher.books[symbol].levels()


# -- fault 1: a ring that filled while the process was down --------------------------------------


def deep_book(matcher: Matcher) -> list[Record]:
    """Ten bids at 90.00.. and ten asks at 110.00.. (seqs 1..20), far from ``random_orders``'
    prices (100.00 +- 0.20), which never reach them."""
    bids = [order(k + 1, Side.BUY, 9000 + k, 5) for k in range(10)]
    asks = [order(k + 11, Side.SELL, 11000 + k, 5) for k in range(10)]
    return matcher.execute_all(bids + asks)


def test_a_ring_that_filled_while_down_still_reseeds_a_lost_state(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: the market data reads a matcher's deep book (seqs 1..20), saves and commits,
    and stops; its state file is lost (removed, as ``resume``'s docstring allows); the
    matcher trades on until its ring is full (where it waits for the market data), its
    snapshot at seq 20 and at its last seq on disk; the market data starts again. Expected:
    the book is the matcher's (the deep levels set from its state, as for a lost file whose
    anchor record is still held). Was (fixed): the anchor record (the one before the commit) was
    overwritten by the last record that filled the ring: "the state misses events the ring
    no longer holds", and the book lacks all twenty deep levels, silently."""
    cfg = md.config(instance, str(tmp_path))
    ring = Ring.create(instance, matcher_output("m1"), md.CODEC, capacity=1 << 10,
                       consumers=[MARKETDATA])  # fmt: skip
    producer = ring.producer()
    matcher = Matcher(symbol_specs(cfg, "m1"))
    store = SnapshotStore(snapshot_dir(cfg, "matcher-m1"))
    try:
        producer.publish_batch(deep_book(matcher))
        store.save(20, matcher.snapshot())
        process = start_md(cfg)
        assert process.state.symbols[1].book.depth() == (10, 10)
        stop_md(process)
        committed = process.consumers[0].sequence
        process.snapshots.path.unlink()  # lost
        rng, seq = random.Random(3), 21
        while committed + ring.capacity - ring.cursor() > 64:  # room for a command's events
            assert producer.try_publish_batch(matcher.execute(random_orders(rng, seq, 1)[0]))
            seq += 1
        mark = Heartbeat(time.time_ns(), RECOVERED_SOURCE, seq - 1)  # the idle matcher's
        while producer.try_publish_batch([mark]):
            pass
        assert ring.cursor() == committed + ring.capacity  # full: the matcher waits
        store.save(seq - 1, matcher.snapshot())
        again = start_md(cfg)
        got = again.state.symbols[1].book.levels()
        md.close_process(again)
        assert got == matcher.books[1].levels()
    finally:
        producer.close()
        ring.close()


# -- fault 2: a commit right after a replay mark ---------------------------------------------------


def test_a_commit_after_a_replay_mark_reseeds_at_what_the_ring_held(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: the market data holds ten bids (seqs 1..10; the matcher's snapshot at 10)
    and saves; the matcher adds ten asks (11..20), crashes and restarts from its snapshot:
    its mark says 10, its replay publishes nothing (11..20 are out); the feed reads up to
    the mark, its save fails (a full disk) and it commits all the same; then the matcher's
    "published through 20" mark; the market data restarts. Expected: the book is the
    matcher's: ten bids and ten asks. Was (fixed): the stale state is reseeded "from the matcher's
    state at seq 10", the mark's counter, though the ring before it held up to 20: the ten
    asks are gone, and nothing changes them again."""
    cfg = md.config(instance, str(tmp_path))
    ring = Ring.create(instance, matcher_output("m1"), md.CODEC, capacity=1 << 10,
                       consumers=[MARKETDATA])  # fmt: skip
    producer = ring.producer()
    matcher = Matcher(symbol_specs(cfg, "m1"))
    try:
        events = deep_book(matcher)
        producer.publish_batch(events[: len(events) // 2])
        SnapshotStore(snapshot_dir(cfg, "matcher-m1")).save(10, matcher.snapshot())
        process = start_md(cfg)
        process.feed.checkpoint()
        producer.publish_batch(events[len(events) // 2 :])
        producer.publish_batch([Heartbeat(time.time_ns(), REPLAY_SOURCE, 10)])
        md.drain_feed(process)
        assert process.state.symbols[1].book.depth() == (10, 10)  # live: right

        def full_disk(self: MarketSnapshots, state: MarketState, positions: Positions) -> int:
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as patched:
            patched.setattr(MarketSnapshots, "save", full_disk)
            process.feed.checkpoint()  # not saved, committed after the mark
        producer.publish_batch([Heartbeat(time.time_ns(), RECOVERED_SOURCE, 20)])
        SnapshotStore(snapshot_dir(cfg, "matcher-m1")).save(20, matcher.snapshot())  # its next
        md.close_process(process)  # a crash
        again = start_md(cfg)
        got = again.state.symbols[1].book.levels()
        md.close_process(again)
        assert got == matcher.books[1].levels()
    finally:
        producer.close()
        ring.close()


# -- sound: topology changes between runs ----------------------------------------------------------


def traded(cfg: RingexConfig) -> Rig:
    """``funded``'s exchange with two trades on ETH-USD (sells of 4 and 2 into its buy of
    10) and one on BTC-USD (a sell of 3), the market data caught up and stopped cleanly."""
    rig = funded(cfg)
    process = start_md(cfg)
    rig.send(1, sell(3, ETH_USD, 1000, 4), sell(4, ETH_USD, 1000, 2), sell(5, BTC_USD, 1000, 3))
    md.drain_feed(process)
    assert view(process.state, ETH_USD) == ([1, 2], 6, 2, 6)
    assert view(process.state, BTC_USD) == ([1], 3, 1, 3)
    stop_md(process)
    return rig


def test_checked_a_crash_and_a_new_ring_size_replay_nothing_twice_into_the_state(
    cfg: RingexConfig,
) -> None:
    """Scenario: m2 saves a snapshot; two ETH-USD trades and one on BTC-USD; the market data
    saves them and stops; the whole instance crashes (no stop snapshots) and starts again
    with rings twice as large: m2 restores its older snapshot and replays both sells onto
    its new ring, events the saved state already holds. Expected: each book is its
    matcher's, the tapes hold each trade once, the 24h volumes and the candles count 6 and
    3 once; a trade after the start is added once. Now: so."""
    rig = funded(cfg)
    rig.matchers["m2"].save_snapshot()
    process = start_md(cfg)
    rig.send(1, sell(3, ETH_USD, 1000, 4), sell(4, ETH_USD, 1000, 2), sell(5, BTC_USD, 1000, 3))
    stop_md(process)
    rig.router.close()  # a crash: no stop snapshot
    for shell in rig.matchers.values():
        shell.close()
    remove_instance(cfg.instance)
    bigger = changed(cfg, ring=msgspec.structs.replace(cfg.ring, capacity=8192))
    rig = Rig(bigger)
    try:
        out = Ring.attach(cfg.instance, matcher_output("m2"), md.CODEC)
        again = [out.record(n) for n in range(out.cursor())]
        out.close()
        assert [t.trade_id for t in again if isinstance(t, Trade)] == [1, 2]  # replayed
        process = start_md(bigger)
        try:
            state = process.state
            assert view(state, ETH_USD) == ([1, 2], 6, 2, 6)
            assert view(state, BTC_USD) == ([1], 3, 1, 3)
            rig.send(1, sell(6, ETH_USD, 1000, 1))
            md.drain_feed(process)
            assert view(state, ETH_USD) == ([1, 2, 3], 7, 3, 7)
            for name, symbol in (("m1", BTC_USD), ("m2", ETH_USD)):
                assert state.symbols[symbol].book.levels() == true_book(rig, name, symbol), name
        finally:
            md.close_process(process)
    finally:
        rig.stop()


def test_checked_a_renamed_matcher_is_refused_before_the_market_data_meets_it(
    cfg: RingexConfig,
) -> None:
    """Scenario: m2 renamed m3 (the same symbol) after trades. Expected: refused before a
    start (``units_differ``), naming ETH-USD and both matchers: no new ring replays the
    journal from its start into the saved state under another name. Now: so."""
    traded(cfg).stop()
    said = units_differ(changed(cfg, matchers=[cfg.matchers[0], _matcher("m3", "ETH-USD")]))
    assert "ETH-USD" in said and "'m2'" in said and "'m3'" in said, said


def test_checked_a_matcher_added_with_a_symbol_keeps_the_others_in_config_order(
    cfg: RingexConfig,
) -> None:
    """Scenario: trades on both symbols, a clean stop; SOL-USD listed on a new matcher m3
    (first in the config's symbols); a buy rests on it. Expected: BTC-USD's and ETH-USD's
    tapes, volumes and books are as before (the books their matchers'); SOL-USD's book is
    m3's; the state's symbols (the tickers' arrays) in the config's order. Now: so."""
    traded(cfg).stop()
    listed = changed(
        cfg,
        assets=[*cfg.assets, AssetConfig(name="SOL", id=4, decimals=4)],
        symbols=[_symbol("SOL-USD", SOL_USD), *cfg.symbols],
        matchers=[*cfg.matchers, _matcher("m3", "SOL-USD")],
    )
    rig = Rig(listed)
    try:
        process = start_md(listed)
        try:
            rig.send(1, buy(7, SOL_USD, 1000, 1))
            md.drain_feed(process)
            state = process.state
            assert list(state.symbols) == [SOL_USD, BTC_USD, ETH_USD]
            assert view(state, ETH_USD) == ([1, 2], 6, 2, 6)
            assert view(state, BTC_USD) == ([1], 3, 1, 3)
            for name, symbol in (("m1", BTC_USD), ("m2", ETH_USD), ("m3", SOL_USD)):
                assert state.symbols[symbol].book.levels() == true_book(rig, name, symbol), name
            assert state.symbols[SOL_USD].book.depth() == (1, 0)
        finally:
            md.close_process(process)
    finally:
        rig.stop()


def test_checked_a_matcher_restarted_while_the_market_data_was_down(cfg: RingexConfig) -> None:
    """Scenario: the market data saves and stops; m2 saves a snapshot, trades twice on
    ETH-USD, crashes (no snapshot) and restarts on its ring (its mark says the snapshot's
    seq; the events since are not published again), trades once more; the market data
    starts again. Expected: ETH-USD's book is m2's, the tape holds the three trades once,
    the volume 7 once. Now: so."""
    rig = funded(cfg)
    try:
        stop_md(start_md(cfg))
        rig.matchers["m2"].save_snapshot()
        rig.send(1, sell(3, ETH_USD, 1000, 4), sell(4, ETH_USD, 1000, 2))
        rig.matchers["m2"].close()  # a crash
        rig.matchers["m2"] = MatcherShell(cfg, "m2")
        rig.pump()
        rig.send(1, sell(5, ETH_USD, 1000, 1))
        process = start_md(cfg)
        try:
            assert process.state.symbols[ETH_USD].book.levels() == true_book(rig, "m2", ETH_USD)
            assert view(process.state, ETH_USD) == ([1, 2, 3], 7, 3, 7)
        finally:
            md.close_process(process)
    finally:
        rig.stop()


def test_checked_a_restart_from_a_state_saved_before_the_last_trade_has_the_book(
    cfg: RingexConfig,
) -> None:
    """Scenario: the market data saves and stops (its state of ETH-USD: a buy of 10); a
    trade of 4 follows; the instance stops cleanly and starts again (new rings: m2's mark
    at its stop snapshot's seq). Expected: ETH-USD's book is m2's (6 left at 10.00), set
    from the matcher's state at the mark; the trade missed stays off the tape (README: a
    gap the database fills). Now: so."""
    rig = funded(cfg)
    stop_md(start_md(cfg))
    rig.send(1, sell(3, ETH_USD, 1000, 4))
    rig.stop()
    rig = Rig(cfg)
    try:
        process = start_md(cfg)
        try:
            book = process.state.symbols[ETH_USD].book
            assert book.levels() == true_book(rig, "m2", ETH_USD)
            assert book.best_bid() == (1000, 6)
            assert view(process.state, ETH_USD)[0] == []
        finally:
            md.close_process(process)
    finally:
        rig.stop()
