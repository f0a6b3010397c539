"""Review 241: a hostile reread of reviews 235 and 236's changes (2105cf6, 6bb24b7).

Reviewed: ``procs/core/recovery.py`` (``matchers_at`` now reads the journal's archive and
returns None only on ``JournalArchivedError``; its callers ``restore_matchers``,
``procs/marketdata/reseed.py``'s ``Reseeder``, ``procs/gateway/recovery.py``'s
``resting_orders``), ``procs/matcher/main.py`` (its start's ``journal_commands``),
``procs/common/journal.py`` (``JournalReader.entries``: archive, gaps, rules and schema),
``procs/replica/standby.py`` (``apply``'s ``StandbyRefusedError``, ``_broken``,
``save_snapshots``), ``procs/marketdata/main.py`` (``_reseed``, the new ``_anchor``).

Rigs: review 206's ``Rig`` (router and matcher shells over real rings and journal), review
235's ``Pair`` (a primary and a real ``Standby`` over TCP), the market-data rig with a
matcher's output ring fed by hand from a real ``Matcher`` (as review 236).

Faults:

1. A matcher added after an upgrade (README's path: ``ringex replay --snapshot`` with the old
   build, then the new build) cannot start once the old segments are archived.
   ``matchers_at`` (``procs/core/recovery.py:443-447``, via ``restore_matchers``:405) now
   replays a matcher no snapshot holds from seq 1 through the archive, and
   ``journal_commands`` (``recovery.py:332``) reads under ``rules=RULES_VERSION`` with
   ``foreign="refuse"``: the archived segments of the old rules (or the old command layout)
   raise ``JournalRulesError`` / ``JournalFormatError`` ("replay it with the build that
   wrote it and write a snapshot at the journal's end ... before upgrading", which the
   operator did). Before 2105cf6 the router's copy returned None (archived) and started the
   new matcher empty, which it is; the matcher process's own start (``procs/matcher/
   main.py:118-121``) fails the same way, archived or not. A new symbol on a new matcher is
   unlistable after any rules or layout upgrade, against README's "what a snapshot covers
   is never replayed". Fix: in ``matchers_at`` and the matcher's start, a matcher no
   snapshot holds whose symbols have no journaled rules in the newest exchange snapshot's
   router state (``Sequencer.rules``: every symbol listed gets a ``SymbolRules`` first) had
   no command up to that snapshot's seq: build it empty and replay from that seq on; only a
   relisted one (review 226) reads the older journal, refusing naming it where it must.
2. The market data dies at start where its matcher publishes during the anchor's walk.
   ``_anchor`` (``procs/marketdata/main.py:138-141``) takes ``lowest`` from the cursor once
   and then reads back from the commit with ``ring.record``; the records before the commit
   are read already, so the running matcher may overwrite them at any moment (the reader's
   line gates only unread ones), and ``record`` raises ``RingError``. 6bb24b7 removed the
   ``except RingError`` the old single read had: the process exits with a traceback at
   start (a ring one record short of full and one publish is enough). Fix: in ``_anchor``
   catch ``RingError`` from the backward walk's ``ring.record(n)`` and go on to the forward
   walk (the record before the commit is gone: anchor at the first unread one).

Found sound: the market data's anchor where the first unread record of a full ring is a
replay mark (a matcher restarted from an older snapshot while the market data was down),
and where the commit landed after a replay mark that cut a command's events in two (the
anchor's seq is that command's: its state at that seq and the rest of its events give the
matcher's books); a matcher of the journal's head segments deleted by hand is not rebuilt
(None), and ``Reseeder`` keeps the books it has, and one of a segment deleted from the middle
raises ``JournalCorruptError`` naming the gap, which ``Reseeder`` logs; a standby refused
for a delisted symbol (its journal holding entries it never applied, no snapshot written)
starts again with the symbol configured, follows, and holds the primary's state.

Not faults: ``_broken`` is never reset, but the refusal ends the process (exit 2) and a
``Standby`` is never reused; ``Reseeder`` runs ``matchers_at`` at a mark's seq (its
matcher's restored snapshot) or, at start, at a seq within a ring of its matcher's newest
(the ring gates it), so it replays from a snapshot, not from seq 1 of a long journal.

Lead, not reproduced: ``Standby.apply`` (``procs/replica/standby.py:253-262``) blames the
removed symbols for any ``ValueError`` of an apply, where ``recover``'s wrapper
(``recovery.py:206``) asks for "symbol" in the message; no config difference that
``units.json`` does not pin was found to make a standby's replay refuse, so it stays a lead.
"""

from __future__ import annotations

import random
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.schema import AssetConfig, RingexConfig
from procs.common.journal import HEADER_SIZE, JournalCorruptError, list_segments
from procs.common.journal_archive import archive_segments_before
from procs.common.journal_writer import JournalWriter
from procs.common.records import Heartbeat, Record
from procs.common.rules_version import RULES_VERSION
from procs.common.snapshots import SnapshotStore
from procs.common.topology import (
    MARKETDATA,
    RECOVERED_SOURCE,
    REPLAY_SOURCE,
    journal_archive_dir,
    journal_dir,
    matcher_output,
    snapshot_dir,
)
from procs.common.types import Side
from procs.core.engine import Matcher
from procs.core.market.state import build_state
from procs.core.recovery import journal_end, matchers_at, recover, write_snapshot
from procs.core.symbols import symbol_specs
from procs.marketdata.reseed import Reseeder
from procs.replica.standby import StandbyRefusedError
from shm import Ring
from shm.inspect import remove_instance
from tests.unit.marketdata import rig as md
from tests.unit.marketdata.test_review236_state_topology import deep_book, start_md, stop_md
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
from tests.unit.supervisor.test_review235_standby_snapshots import (
    Pair,
    delisted,
    eth_traded_then_delisted,
    follow,
)

SOL_USD = 3
_RULES_AT, _SCHEMA_AT, _CRC_AT = 20, 24, HEADER_SIZE - 4  # (test_review67_upgrade)
OLD_SCHEMA = 0x1234_5678_9ABC  # a build of other journaled commands (no alias of ours)


@pytest.fixture
def cfg(instance: str, tmp_path: Path) -> Iterator[RingexConfig]:
    yield config(instance, tmp_path / "var")
    remove_instance(instance)


def _as_an_older_build_wrote_it(cfg: RingexConfig, what: str) -> None:
    """Each journal segment's header as a build of older rules (or command layout) wrote it
    (its entries the same bytes)."""
    for _, path in list_segments(journal_dir(cfg)):
        data = bytearray(path.read_bytes())
        if what == "rules":
            struct.pack_into("<I", data, _RULES_AT, RULES_VERSION - 1)
        else:
            struct.pack_into("<Q", data, _SCHEMA_AT, OLD_SCHEMA)
        struct.pack_into("<I", data, _CRC_AT, zlib.crc32(bytes(data[:_CRC_AT])))
        path.write_bytes(bytes(data))


def listed(cfg: RingexConfig) -> RingexConfig:
    """``cfg`` with SOL-USD listed on a new matcher m3."""
    return changed(
        cfg,
        assets=[*cfg.assets, AssetConfig(name="SOL", id=4, decimals=4)],
        symbols=[*cfg.symbols, _symbol("SOL-USD", SOL_USD)],
        matchers=[*cfg.matchers, _matcher("m3", "SOL-USD")],
    )


# -- fault 1: a matcher added after an upgrade ----------------------------------------------------


@pytest.mark.parametrize("upgrade", ["rules", "schema"])
def test_a_matcher_added_after_an_upgrade_starts_empty(cfg: RingexConfig, upgrade: str) -> None:
    """Scenario: trades on both symbols; the old build stops and writes a snapshot at the
    journal's end (README's upgrade path); the new build (other rules, or another command
    layout) starts, journals a trade in a segment of its own and stops; the old segments
    are archived (``ringex replay --archive``); SOL-USD is listed on a new matcher m3.
    Expected: the instance starts (router and m3), SOL-USD's book empty, a buy rests on it.
    Was (fixed): m3's start and the router's ``restore_matchers`` (``matchers_at``) replay m3 from
    seq 1 through the archive and refuse the old segments (``JournalRulesError`` /
    ``JournalFormatError``: "... before upgrading"); before 2105cf6 the router's copy was
    built empty."""
    rig = funded(cfg)
    rig.send(1, sell(3, ETH_USD, 1000, 4), sell(4, BTC_USD, 1000, 1))
    rig.stop()
    write_snapshot(cfg, recover(cfg))  # the old build's ``ringex replay --snapshot``
    _as_an_older_build_wrote_it(cfg, upgrade)
    rig = Rig(cfg)  # the new build: starts from the snapshot (review 67)
    rig.send(1, sell(5, ETH_USD, 1000, 1))
    rig.stop()
    segments = list_segments(journal_dir(cfg))
    assert len(segments) >= 2, segments  # the new build's own segment
    assert archive_segments_before(journal_dir(cfg), segments[-1][0], journal_archive_dir(cfg))
    new = listed(cfg)
    recovered = recover(new)  # the router's (``restore_matchers``)
    assert recovered.matchers["m3"].books[SOL_USD].levels() == {}
    rig = Rig(new)
    try:
        book = rig.matchers["m3"].matcher.books[SOL_USD]
        assert book.levels() == {}
        rig.send(1, buy(6, SOL_USD, 1000, 1))
        assert len(book.levels()) == 1
    finally:
        rig.stop()


# -- fault 2: the anchor's walk meets a publish ----------------------------------------------------


def _filled_but_one(instance: str, cfg: RingexConfig) -> tuple[Ring[Record], Matcher, int]:
    """A matcher's ring: its deep book (seqs 1..20) read, saved and committed by the market
    data, whose state file is then lost; the matcher trades on until its ring is one record
    short of full (its snapshot at its last seq). The ring, the matcher, the commit."""
    ring = Ring.create(instance, matcher_output("m1"), md.CODEC, capacity=1 << 10,
                       consumers=[MARKETDATA])  # fmt: skip
    producer = ring.producer()
    matcher = Matcher(symbol_specs(cfg, "m1"))
    store = SnapshotStore(snapshot_dir(cfg, "matcher-m1"))
    producer.publish_batch(deep_book(matcher))
    store.save(20, matcher.snapshot())
    process = start_md(cfg)
    stop_md(process)
    committed = process.consumers[0].sequence
    process.snapshots.path.unlink()  # lost
    rng, seq = random.Random(5), 21
    while committed + ring.capacity - ring.cursor() > 64:
        assert producer.try_publish_batch(matcher.execute(random_orders(rng, seq, 1)[0]))
        seq += 1
    mark = Heartbeat(time.time_ns(), RECOVERED_SOURCE, seq - 1)
    while ring.cursor() < committed + ring.capacity - 1:
        assert producer.try_publish_batch([mark])
    store.save(seq - 1, matcher.snapshot())
    producer.close()
    return ring, matcher, committed


def test_a_publish_during_the_anchors_walk_does_not_stop_the_market_data(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: as review 236's ring that filled while the market data was down, but one
    record short of full; the market data starts and, as its ``_anchor`` reads the record
    before its commit, the running matcher publishes one more (an idle mark), which
    overwrites it. Expected: the process starts, its book the matcher's (anchored at the
    first unread record, as where the record was gone before the start). Was (fixed):
    ``RingError`` ("slot of record N holds stamp ...") out of ``MarketDataProcess``: a crash
    at start."""
    cfg = md.config(instance, str(tmp_path))
    ring, matcher, committed = _filled_but_one(instance, cfg)
    producer = ring.producer()
    original = Ring.record
    published: list[int] = []

    def racing(self: Ring[Record], n: int) -> Record:
        if n == committed - 1 and not published:  # the matcher's publish, just then
            published.append(n)
            assert producer.try_publish_batch(
                [Heartbeat(time.time_ns(), RECOVERED_SOURCE, matcher.last_seq)]
            )
        return original(self, n)

    try:
        monkeypatch.setattr(Ring, "record", racing)
        again = start_md(cfg)
        monkeypatch.undo()
        got = again.state.symbols[1].book.levels()
        md.close_process(again)
        assert published, "the walk never read the record before the commit"
        assert got == matcher.books[1].levels()
    finally:
        monkeypatch.undo()
        producer.close()
        ring.close()


# -- sound: the anchor -----------------------------------------------------------------------------


def test_checked_a_full_ring_whose_first_unread_record_is_a_replay_mark(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Scenario: the market data reads the deep book (1..20), saves and stops; its state is
    lost; the matcher restarts from its snapshot at 20 while the market data is down (its
    mark, the first unread record), publishes nothing again and trades on until its ring is
    full; the market data starts. Expected: its book is the matcher's (anchored at the first
    event after the mark: the walk back meets no record, the ring being full; the deep
    levels set from the matcher's state there). Now: so."""
    cfg = md.config(instance, str(tmp_path))
    ring = Ring.create(instance, matcher_output("m1"), md.CODEC, capacity=1 << 10,
                       consumers=[MARKETDATA])  # fmt: skip
    producer = ring.producer()
    matcher = Matcher(symbol_specs(cfg, "m1"))
    store = SnapshotStore(snapshot_dir(cfg, "matcher-m1"))
    try:
        producer.publish_batch(deep_book(matcher))
        store.save(20, matcher.snapshot())
        stop_md(process := start_md(cfg))
        committed = process.consumers[0].sequence
        process.snapshots.path.unlink()
        producer.publish_batch([Heartbeat(time.time_ns(), REPLAY_SOURCE, 20)])
        rng, seq = random.Random(7), 21
        while committed + ring.capacity - ring.cursor() > 64:
            assert producer.try_publish_batch(matcher.execute(random_orders(rng, seq, 1)[0]))
            if seq == 21:  # a periodic snapshot (this rig has no journal to replay)
                store.save(21, matcher.snapshot())
            seq += 1
        while producer.try_publish_batch([Heartbeat(time.time_ns(), RECOVERED_SOURCE, seq - 1)]):
            pass
        assert ring.cursor() == committed + ring.capacity
        store.save(seq - 1, matcher.snapshot())
        again = start_md(cfg)
        got = again.state.symbols[1].book.levels()
        md.close_process(again)
        assert "state at seq 21" in caplog.text  # the anchor
        assert got == matcher.books[1].levels()
    finally:
        producer.close()
        ring.close()


def test_checked_a_commit_after_a_mark_that_cut_a_command_in_two(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Scenario: the deep book (1..20, snapshot at 20) read and saved; seq 21, a sell that
    sweeps five bid levels, publishes its first events and the matcher crashes; it restarts
    from its snapshot at 20 (mark 20) and publishes the rest of seq 21's events; the market
    data had read up to the mark and committed without a save (a full disk), then crashes
    and starts again. Expected: the anchor is seq 21 (the events before the mark), and the
    book is the matcher's. Now: so."""
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
        process.feed.checkpoint()
        sweep = matcher.execute(order(21, Side.SELL, 9005, 23))
        assert len(sweep) > 4, sweep
        store.save(21, matcher.snapshot())
        half = len(sweep) // 2
        producer.publish_batch(sweep[:half])
        producer.publish_batch([Heartbeat(time.time_ns(), REPLAY_SOURCE, 20)])
        md.drain_feed(process)

        def full_disk(*_: object) -> int:
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as patched:
            patched.setattr(process.snapshots, "save", full_disk)
            process.feed.checkpoint()
        producer.publish_batch(sweep[half:])
        producer.publish_batch([Heartbeat(time.time_ns(), RECOVERED_SOURCE, 21)])
        md.close_process(process)  # a crash
        again = start_md(cfg)
        got = again.state.symbols[1].book.levels()
        md.close_process(again)
        assert "state at seq 21" in caplog.text  # the anchor
        assert got == matcher.books[1].levels()
    finally:
        producer.close()
        ring.close()


# -- sound: matchers_at where the journal lost segments --------------------------------------------


def test_checked_segments_deleted_by_hand_give_none_or_a_named_gap(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Scenario: a journal of 30 orders of m1's BTC-USD in segments of 8, no snapshot, no
    archive; first a middle segment is deleted by hand, then every one before the last.
    Expected: whole, ``matchers_at`` rebuilds m1's book; with the gap it raises
    ``JournalCorruptError`` naming it, which ``Reseeder`` logs, keeping the books it has;
    with the head gone it returns None (what it replays is gone), and ``Reseeder`` says so.
    Now: so."""
    cfg = md.config(instance, str(tmp_path))
    truth = Matcher(symbol_specs(cfg, "m1"))
    commands = [order(k + 1, Side.BUY, 9000 + k, 5) for k in range(30)]
    truth.execute_all(commands)
    entry = md.CODEC.slot_size + 16  # (any size holding a few entries will do)
    with JournalWriter(
        journal_dir(cfg), slot_size=md.CODEC.slot_size, schema_id=md.CODEC.journal_schema_id,
        segment_bytes=HEADER_SIZE + 8 * entry, fsync="none",
    ) as writer:  # fmt: skip
        writer.append(1, b"".join(md.CODEC.encode_slot(c) for c in commands), len(commands))
    segments = list_segments(journal_dir(cfg))
    assert len(segments) >= 3, segments
    rebuilt = matchers_at(cfg, {"m1": 30}, md.CODEC)
    assert rebuilt is not None and rebuilt["m1"].books[1].levels() == truth.books[1].levels()
    reseed, state = Reseeder(cfg, md.CODEC), build_state(cfg)
    segments[1][1].unlink()  # the middle
    with pytest.raises(JournalCorruptError, match="gap"):
        matchers_at(cfg, {"m1": 30}, md.CODEC)
    assert reseed(matcher_output("m1"), 30, time.time_ns(), state) == []
    assert "unreadable" in caplog.text
    for _, path in segments[:-1]:
        path.unlink(missing_ok=True)  # the head
    assert matchers_at(cfg, {"m1": 30}, md.CODEC) is None
    assert reseed(matcher_output("m1"), 30, time.time_ns(), state) == []
    assert "books as they are" in caplog.text


# -- sound: the standby's refusal and its restart --------------------------------------------------


def test_checked_a_refused_standby_restarted_with_the_symbol_holds_the_primary(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: the primary traded ETH-USD, then delisted it with m2; a new standby
    configured without it follows from seq 1 and is refused at ETH-USD's first command (its
    journal holds entries it never applied; no snapshot written); the operator configures
    ETH-USD and m2 again, as the refusal says, and starts it. Expected: it follows to the
    primary's end, its accounts as the primary's replay from the start. Now: so."""
    pair = Pair(instance, tmp_path)
    try:
        eth_traded_then_delisted(pair)
        failed = follow(delisted(pair.primary), delisted(pair.standby))
        assert isinstance(failed, StandbyRefusedError), repr(failed)
        assert "ETH-USD" in str(failed)
        assert not list(snapshot_dir(pair.standby, "router").glob("*"))  # none written
        assert follow(delisted(pair.primary), pair.standby) is None
        held = recover(pair.standby)
        assert held.last_seq == journal_end(pair.primary)
        primary = recover(pair.primary, use_snapshot=False).sequencer.accounts.state_hash()
        assert held.sequencer.accounts.state_hash() == primary
    finally:
        remove_instance(instance)
