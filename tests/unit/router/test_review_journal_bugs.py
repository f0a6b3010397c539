"""Bugs found by a hostile review of the journal, snapshots and crash recovery. Each test
failed before its fix.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common.journal import JournalError
from procs.common.journal_archive import archive_segments_before
from procs.common.journal_writer import JournalWriter, cut_after
from procs.common.records import Record
from procs.common.snapshots import SnapshotStore
from procs.common.topology import journal_dir, snapshot_dir
from procs.core.archive_bound import archivable_before
from procs.core.recovery import recover, snapshot_store, write_snapshot
from procs.dbwriter.replay import Follower
from procs.replica.source import ReplicationSource
from tests.unit.router import test_router as router_rig
from tests.unit.router.core_rig import (
    BUY,
    CODEC,
    ETHUSD,
    exchange_config,
    funded,
    new_order,
    placed,
)
from tests.unit.router.test_journal import (
    SCHEMA,
    SLOT,
    SMALL,
    assert_contiguous,
    fill,
    reader,
    writer,
)

# -- cut_after: a crash half way leaves a journal with a hole ---------------------------------


class _Crash(BaseException):
    """The process dies here (a BaseException, so no ``except Exception`` swallows it)."""


def test_a_crash_during_cut_after_leaves_a_contiguous_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rebuild`` (failover demote) cuts an old primary's journal after the kept seq. The
    cut copies the tail aside, then walks the segments oldest first: it truncates the one
    holding the kept seq, and only later unlinks the segments after it. A crash between the
    two (here: the first unlink never happens) leaves segments 1..10, 11..15 and 21..30:
    recovery from the start fails with "a seq gap", a re-run of the cut fails the same way,
    and a writer opened on it continues at 31 as if nothing were missing. Removing the later
    segments first (newest first, directory fsynced) and truncating last would leave a
    contiguous (if longer) journal at every crash point, which a re-run of the cut finishes."""
    journal = tmp_path / "j"
    fill(journal, 30, segment_bytes=SMALL)  # segments from 1, 11, 21

    def crash(self: Path, missing_ok: bool = False) -> None:
        raise _Crash(f"crash before unlinking {self}")

    with monkeypatch.context() as m:
        m.setattr(Path, "unlink", crash)
        with pytest.raises(_Crash):
            cut_after(journal, 15, tmp_path / "aside", slot_size=SLOT, schema_id=SCHEMA)
    # the restarted operator's tools see the journal as the crash left it
    last = reader(journal).last_seq()
    assert_contiguous(journal, 1, last)  # before the fix: JournalCorruptError, "a seq gap"
    with writer(journal, segment_bytes=SMALL) as w:
        assert w.next_seq == last + 1
    # running the cut again finishes it: the aside already holds the tail it copied
    cut_after(journal, 15, tmp_path / "aside", slot_size=SLOT, schema_id=SCHEMA)
    assert reader(journal).last_seq() == 15
    assert_contiguous(journal, 1, 15)
    assert reader(tmp_path / "aside").last_seq() == 30


def test_a_cut_refuses_an_aside_that_holds_another_journal(tmp_path: Path) -> None:
    """A re-run of a cut takes up an aside holding exactly the tail it copied; an aside
    holding anything else is refused, the journal untouched."""
    journal, aside = tmp_path / "j", tmp_path / "aside"
    fill(journal, 30, segment_bytes=SMALL)
    with writer(aside, start_seq=16) as w:  # entries 16.. of some other journal
        w.append(16, CODEC.encode_slot(new_order(9, BUY, 9_000, 1, ref=1)), 1)
    with pytest.raises(JournalError, match="not this journal's tail after seq 15"):
        cut_after(journal, 15, aside, slot_size=SLOT, schema_id=SCHEMA)
    assert reader(journal).last_seq() == 30


# -- archiving: segments other journal readers still need -------------------------------------


def _journal_with_snapshots(tmp_path: Path) -> tuple[RingexConfig, int]:
    """An instance's journal in 10-entry segments, with the exchange snapshot and each
    matcher's own snapshot at their newest seqs: what ``ringex replay --snapshot`` and the
    matchers' clean stop leave. Returns the config and the journal's last seq."""
    cfg = exchange_config(var_dir=str(tmp_path), max_open=50)
    ex = funded(cfg)
    for ref in range(30):
        if ref % 2:
            placed(ex, new_order(1 + ref % 3, BUY, 9_000 + 5 * (ref % 10), 1, ref=100 + ref))
        else:
            order = new_order(1 + ref % 3, BUY, 990 + ref % 10, 2, symbol=ETHUSD, ref=100 + ref)
            placed(ex, order)
    images = b"".join(CODEC.encode_slot(command) for command in ex.journal)
    last = len(ex.journal)
    with JournalWriter(
        journal_dir(cfg), slot_size=SLOT, schema_id=SCHEMA, segment_bytes=SMALL, fsync="none"
    ) as w:
        w.append(1, images, last)
    recovered = recover(cfg)
    write_snapshot(cfg, recovered)
    for name, matcher in recovered.matchers.items():
        SnapshotStore(snapshot_dir(cfg, f"matcher-{name}")).save(
            matcher.last_seq, matcher.snapshot()
        )
    return cfg, last


def _archive(cfg: RingexConfig, tmp_path: Path) -> list[Path]:
    """What ``ringex replay --archive`` does (today it moves segments 1..40 of 42 entries;
    a fix may rightly move fewer, or none)."""
    before = archivable_before(cfg)
    return archive_segments_before(journal_dir(cfg), before, tmp_path / "journal-archive")


def test_archiving_keeps_what_the_database_writer_replays(tmp_path: Path) -> None:
    """The database writer (``database.enabled``, the default) restarts from its newest
    snapshot at or below the database's checkpoint (``Follower.restore``), else from seq 1,
    and replays the journal from there (``DbWriter.start``); a lagging writer reads on from
    its checkpoint. ``archivable_before`` takes only the exchange's and the matchers'
    snapshots, so ``ringex replay --archive`` moves segments the writer has not read: here a
    checkpoint of 10 and no writer snapshot yet. Its next ``reader.entries(seq + 1)`` raises
    "its entries were archived", on every restart. ``archivable_before`` should also take the
    writer's newest snapshot (and its checkpoint) when the database writer is enabled."""
    cfg, last = _journal_with_snapshots(tmp_path)
    assert cfg.database.enabled
    _archive(cfg, tmp_path)
    assert recover(cfg).last_seq == last  # the router's own recovery is fine
    follower = Follower.restore(cfg, 10)  # the writer's start at checkpoint 10
    journal = reader(journal_dir(cfg))
    replayed = [seq for seq, _ in journal.entries(follower.seq + 1)]  # today: JournalError
    assert replayed[0] == follower.seq + 1 and replayed[-1] == last


def test_archiving_keeps_what_the_replication_source_hashes(tmp_path: Path) -> None:
    """A primary with ``replication.listen_port`` answers a standby's Hello with the hash of
    its history before the standby's next seq, read from seq 1 (``_history_before``); the
    standby's own start hashes its journal from seq 1 too. After ``ringex replay --archive``
    on such a primary, the source raises "its entries were archived" for any standby past
    seq 1, so a standby that reconnects (or a new one) never catches up. Archiving should
    be refused (or keep the history's hash) while replication is configured."""
    base, last = _journal_with_snapshots(tmp_path)
    replication = msgspec.structs.replace(base.replication, listen_port=47_001)
    cfg = msgspec.structs.replace(base, replication=replication)
    _archive(cfg, tmp_path)
    source = ReplicationSource(cfg)
    try:
        history = source._history_before(last)  # today: JournalError
        assert history.digest()
    finally:
        source.block.close()


# -- the router's snapshots must bound what a restart replays ---------------------------------


def _orders(first_ref: int, count: int) -> list[Record]:
    return [
        router_rig.order(ref, 7, BUY, 900 + ref % 50, 10)
        for ref in range(first_ref, first_ref + count)
    ]


def test_restarts_do_not_let_the_replayed_tail_grow_past_snapshot_every(
    instance: str, tmp_path: Path
) -> None:
    """``journal.snapshot_every`` promises "a restart replays at most about this many
    commands". The router's count starts at ``recovered.last_seq`` (``_snapshot_at``), not at
    the snapshot it recovered from, so each restart forgets the commands already past the
    last snapshot. With snapshot_every = 8 (by count only) and 5 commands between restarts,
    no snapshot is ever taken: after four runs a restart replays all 22 commands, and the tail
    grows by every run's commands for as long as restarts come that often (crash loops, a
    router restarted by its watchdog). Starting the count from ``recovered.snapshot_seq``
    (and the clock, under ``snapshot_every_s``, from the snapshot's age) bounds it."""
    base = router_rig.config(instance, tmp_path)
    journal = msgspec.structs.replace(base.journal, snapshot_every=8, snapshot_every_s=0.0)
    ex = router_rig.Exchange(msgspec.structs.replace(base, journal=journal))
    try:
        router_rig.fund(ex, 7, usd=10**9, btc=0)  # 2 commands, after the fees and rules
        ref = 10
        for _ in range(4):
            ex.send(1, *_orders(ref, 5))
            ref += 5
            assert ex.router.snapshot_done(30)
            ex.stop()
            ex.start()  # a restart is a recovery
        recovered = recover(ex.cfg)
        assert recovered.last_seq == 24
        latest = snapshot_store(ex.cfg).latest()
        since = recovered.last_seq - (latest[0] if latest is not None else 0)
        assert since <= journal.snapshot_every, f"a restart replays {recovered.replayed}"
    finally:
        ex.stop()
