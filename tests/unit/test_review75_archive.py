"""A hostile review (75) of archiving with replication and the quiet-matcher archive bound
(db36f88: both sides of replication read ``journal.archive_dir`` where the journal lacks a
segment, and ``ringex replay --archive`` runs with replication configured; 4625e61: a
matcher's own snapshots bound the archive only where its ``published`` file, or its newest
own snapshot, is short of the oldest exchange snapshot's copy of its books).

Reviewed: ``JournalReader`` (``_segments``, ``_open_segment``), ``archive_segments_before``,
``recovery.archivable_before`` / ``_served_by_exchange`` / ``matcher_snapshot`` /
``_exchange_books`` / ``unrouted``, ``MatcherShell`` (``_mark``, ``step``,
``published_position``), ``published_through.py``, the replication source and its
``JournalTail``, the standby's start, ``rebuild`` (demote), ``failover.py status``, the
session-end search, the database writer and the gateway's catch-up, and the README's
Recovery, Disk and Hot standby sections.

What holds (not tested again here): the ``published`` file never says more than a live
output ring holds within one supervisor run (it is written after the mark is published, and
every supervisor start makes new rings, from which a matcher takes the newest snapshot of
any kind); a reader that listed a segment an archive run then moved opens it in the archive;
an archive directory equal to the journal's is refused, and one nested in it is never listed
as the journal.

Faults, each pinned by a test that failed on the code it was written against. The first,
second, third, fifth and sixth pass since their fixes (the tail looks for the next segment
in the archive too and opens a moved one there; ``unrouted`` reads from the newest older
exchange snapshot whose copy is at or before the held seq, through the archive; ``demote``
moves archived segments after its cut back first; ``status`` says what is missing). The
fourth is a documented limit, a strict xfail: instances sharing ``journal.archive_dir`` need
names of their own (a primary and its standby too), and the refusal now says so:

1. The replication source's ``JournalTail`` stalls for good when an archive run moves the
   segment it is reading and the next one (a standby catching up behind the archive point,
   which the README says it does "from there"): ``_fast`` looks for the next segment in the
   journal's directory only (``tail.py:49``), finds none, and answers "nothing new" at every
   look from then on; the standby stays connected on heartbeats and is never sent another
   entry (async: a lag that only grows; sync: the router degrades).
2. ``JournalTail._position`` opens the segment it just listed without the archive fallback
   the commit gave ``JournalReader`` (``tail.py:82``): an archive run between the listing
   and the open raises ``FileNotFoundError`` out of the source's stream (the standby is cut
   off with a traceback in the source's log).
3. A restarting router's ``unrouted`` (``recovery.py:356-360``) reads the journal, without the
   archive, from a quiet matcher's held seq when the router's snapshot holds a command of
   that matcher it never got; 4625e61 let the archive move past that seq (the quiet
   matcher's own snapshots, which are all at or before it, no longer bound it), so the
   router fails to start with ``JournalArchivedError``.
4. A primary and its standby of the same instance name (two hosts) that share
   ``journal.archive_dir`` (README: "another volume, which instances may share") archive to
   the same ``<archive_dir>/<instance>`` (``topology.py:51``): the second side's archive run
   fails for good (``FileExistsError``: "exists already"), as their segments bear the same
   names and differ in their headers' creation times.
5. ``demote`` (``rebuild`` -> ``cut_after``, ``journal_writer.py:482``) cannot cut an old
   primary whose archive run moved segments past the promoted epoch's first seq (an old
   primary that went on in async mode or degraded sync): it refuses, saying the segments
   "were archived", and leaves the operator no path but moving them back by hand.
6. ``failover.py status`` (``journal_state``, ``failover.py:82``) on an instance whose
   archived segments were shipped away ends in a traceback (``JournalArchivedError``), where
   the source and the standby say what to keep.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest

from config.schema import (
    DatabaseConfig,
    JournalConfig,
    MatcherConfig,
    ReplicationConfig,
    RingConfig,
    RingexConfig,
    SymbolConfig,
)
from procs.common.epochs import Epochs
from procs.common.journal import (
    HEADER_SIZE,
    EntryLayout,
    JournalReader,
    list_segments,
)
from procs.common.journal_archive import archive_segments_before
from procs.common.journal_writer import JournalWriter
from procs.common.published_through import PublishedThrough
from procs.common.records import AdminCommand
from procs.common.topology import journal_archive_dir, journal_dir, snapshot_dir
from procs.common.types import AdminAction
from procs.core.archive_bound import archivable_before
from procs.core.recovery import (
    JournaledTail,
    recover,
    unrouted,
    write_snapshot,
)
from procs.replica.rebuild import rebuild
from procs.replica.source import ReplicationSource
from procs.replica.tail import JournalTail
from tests.scripts_loader import load_script
from tests.unit.replica.test_archived_replication import (
    PER_SEGMENT,
    _append,
    _archive,
    _archiving,
)
from tests.unit.replica.test_review_replica2_bugs import pair
from tests.unit.replica.test_source import CODEC

failover = load_script("failover", "review75")


def _images(cfg: RingexConfig, first: int, n: int) -> list[bytes]:
    """The slot images of seqs ``first``.. (``n`` of them), read through the archive."""
    reader = JournalReader(
        journal_dir(cfg),
        slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id,
        archive=journal_archive_dir(cfg),
    )
    out = []
    for _seq, image in reader.entries(first):
        out.append(bytes(image))
        if len(out) == n:
            break
    return out


# -- 1 and 2: the replication source's tail ------------------------------------------------------


def test_the_sources_tail_follows_a_catch_up_into_segments_archived_under_it(
    tmp_path: Path,
) -> None:
    """Invariant: a standby behind the archive point catches up from the archive (README,
    Disk: "a standby behind the archive point catches up from there"), whenever the archive
    run happens.

    The source's stream reads through ``JournalTail(source.shipped)``. Here a standby
    catching up has been sent seqs 1-10 (the tail's descriptor sits at the end of segment
    1-10) when ``ringex replay --archive`` moves segments 1-40. Expected: the next read
    gives seqs 11-15, from the archive. What happens: ``_fast`` reads nothing more from the
    (moved) segment, looks for ``00..011.journal`` in the journal's directory only, finds
    none and answers [] ("nothing new"); every later look takes the same path, even once the
    primary has appended more, so the source heartbeats the standby for ever and sends it
    nothing (async: its lag only grows; sync: the router degrades)."""
    primary, _ = pair(tmp_path)
    primary = _archiving(primary, tmp_path)
    _append(primary, 1, 5 * PER_SEGMENT)
    source = ReplicationSource(primary)
    tail = JournalTail(source.shipped)  # as ``ReplicationSource._stream`` makes it
    try:
        assert len(tail.read(1, 5)) == 5  # the slow path: opens segment 1-10
        assert len(tail.read(6, 5)) == 5  # the fast path, to its end
        assert _archive(primary, 41) == 4  # an archive run beside the running source
        _append(primary, 51, 10)  # and the router appends meanwhile
        got = [tail.read(11, 5) for _ in range(3)]  # the stream's looks, parked between
    finally:
        tail.close()
        source.close()
    assert got[-1] == _images(primary, 11, 5)


def test_the_sources_tail_opens_a_segment_archived_since_it_was_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant (db36f88's own): "a reader that listed a segment an archive run then moved
    opens it in the archive (it raised FileNotFoundError mid-journal)".

    ``JournalTail._position`` lists the journal's segments, then ``os.open``s the one the
    next seq is in. An archive run between the two (here injected right after the listing)
    moves it. Expected: the read returns its entries and the tail goes on (from the archive
    or by the reader's slow path). What happens: ``FileNotFoundError`` from ``os.open``,
    out of ``tail.read`` and so out of ``ReplicationSource._stream``, which ``serve`` does
    not catch: the standby is cut off with a traceback in the source's log."""
    primary, _ = pair(tmp_path)
    primary = _archiving(primary, tmp_path)
    _append(primary, 1, 5 * PER_SEGMENT)
    moved: list[int] = []

    source = ReplicationSource(primary)
    listing = source.shipped.segments

    def listing_then_archive() -> list[tuple[int, Path]]:
        segments = listing()  # the real listing, then the move
        if not moved:
            moved.append(_archive(primary, 41))  # ringex replay --archive, concurrently
        return segments

    # (the tail listed with ``list_segments`` when this was written; now through its reader)
    monkeypatch.setattr(source.shipped, "segments", listing_then_archive)
    tail = JournalTail(source.shipped)
    try:
        first = tail.read(1, 15)  # seqs 1-15; then positions at 16, in segment 11-20
        second = tail.read(16, 5)
    finally:
        tail.close()
        source.close()
    assert moved == [4]
    assert first + second == _images(primary, 1, 20)


# -- 3: a restarting router after the quiet-matcher archive bound ---------------------------------


def _two_matchers(var: Path) -> RingexConfig:
    return RingexConfig(
        instance="r75",
        ring=RingConfig(capacity=4),  # a restarted router reads back 4 x 2 entries
        symbols=[SymbolConfig(name="AAA", id=3), SymbolConfig(name="BBB", id=4)],
        matchers=[
            MatcherConfig(name="m1", symbols=["AAA"]),  # busy
            MatcherConfig(name="m2", symbols=["BBB"]),  # quiet: seqs 1 and 95 only
        ],
        database=DatabaseConfig(enabled=False),
        journal=JournalConfig(archive_dir=str(var.parent / f"{var.name}-archive")),
        var_dir=str(var),
    )


def _admin(seq: int, symbol: int) -> AdminCommand:
    action = AdminAction.HALT if seq % 2 else AdminAction.RESUME
    return AdminCommand(seq, seq, action, symbol, seq)


def _journal_commands(cfg: RingexConfig, quiet: set[int], last: int) -> None:
    """Seqs 1..``last``: admin commands for m1's symbol, for m2's at ``quiet``; segments of
    10 entries."""
    with JournalWriter(
        journal_dir(cfg),
        slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id,
        segment_bytes=HEADER_SIZE + PER_SEGMENT * EntryLayout(CODEC.slot_size).size,
        fsync="none",
    ) as journal:
        for seq in range(1, last + 1):
            command = _admin(seq, 4 if seq in quiet else 3)
            journal.append(seq, CODEC.encode_slot(command), 1)


def test_a_restarting_router_finds_what_a_quiet_matcher_lacks_after_an_archive(
    tmp_path: Path,
) -> None:
    """Invariant: archiving moves nothing a restarting process still reads (README: "the
    oldest seq a reader may still replay from").

    m2 is quiet: its commands are seqs 1 and 95. Seq 95 was journaled (durable) and went
    into the router's snapshot at 96 (its child forked while the batch was held), and the
    router was killed before it routed it: m2's input ring holds seq 1, its output's mark
    says 1 (its ``published`` file too). The exchange snapshots are at 70, 80 and 96; the
    oldest copy of m2's books has executed seq 1, which m2 has published, so since 4625e61
    m2's own snapshots (all at or before seq 1, or none) no longer bound the archive: it
    moves seqs 1-60. The restarted router's ``_resend_unrouted`` then asks ``unrouted``
    which, as m2 lacks a command of the snapshot (``snapshot_last`` 95 > held 1), reads the
    journal from seq 2, without the archive. Expected: seq 95 found, to be sent to m2
    (from the archive, or from a bound the archive respects: no m2 command lies between 1
    and the oldest snapshot whose copy says 1). What happens: ``JournalArchivedError``, and
    the router does not start (the supervisor restarts it into the same error). Before
    4625e61 nothing past m2's own oldest snapshot (at most seq 1) was archived."""
    cfg = _two_matchers(tmp_path / "var")
    _journal_commands(cfg, quiet={1, 95}, last=100)
    for upto in (70, 80, 96):
        write_snapshot(cfg, recover(cfg, upto=upto))
    PublishedThrough(snapshot_dir(cfg, "matcher-m1")).note(100)
    PublishedThrough(snapshot_dir(cfg, "matcher-m2")).note(1)  # its mark: through seq 1
    before = archivable_before(cfg)
    assert before == 71 - JournaledTail.for_config(cfg).window
    archive_segments_before(journal_dir(cfg), before, journal_archive_dir(cfg))
    assert list_segments(journal_dir(cfg))[0][0] == 61

    recovered = recover(cfg, tail=JournaledTail.for_config(cfg))  # the router's start
    assert recovered.snapshot_last["m2"] == 95
    missing = unrouted(cfg, recovered, {"m1": 100, "m2": 1}, 100, CODEC)
    assert [getattr(c, "seq", 0) for c in missing.get("m2", [])] == [95]


# -- 4: one archive directory for a primary and its standby -------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="a documented limit (README, Disk; review 75): a primary and its standby of one "
    "instance name need a journal.archive_dir each (both archive to <archive_dir>/<instance>; "
    "the second is refused, saying so)",
)
def test_a_primary_and_its_standby_of_one_name_share_an_archive_volume(tmp_path: Path) -> None:
    """Invariant: "a primary and its standby archive the same way, each its own journal"
    (README, Recovery), to ``<journal.archive_dir>/<instance>``, "another volume, which
    instances may share" (Disk); on two hosts the standby needs no instance name of its
    own (Hot standby: only "on one host").

    Here primary and standby are both instance ``prod`` (two hosts: ``var_dir`` apart) with
    one ``journal.archive_dir`` (a shared volume). Each wrote seqs 1-40 (the standby's
    segments its own files: their headers' creation times differ). Expected: each archives
    its segments 1-30 and reads its own archive. What happens: both archive into
    ``<archive_dir>/prod``; the primary's run moves its three, the standby's meets
    ``0..01.journal`` there, not byte-equal to its own, and fails with ``FileExistsError``
    ("exists already; not replacing it", which reads as a run killed midway): every later
    run fails the same way, so that side's journal is never archived again."""
    port_cfg, _ = pair(tmp_path)
    shared = JournalConfig(archive_dir=str(tmp_path / "nfs"))
    primary = msgspec.structs.replace(
        port_cfg, instance="prod", var_dir=str(tmp_path / "host-a"), journal=shared
    )
    standby = msgspec.structs.replace(
        primary,
        var_dir=str(tmp_path / "host-b"),
        replication=ReplicationConfig(primary=f"host-a:{port_cfg.replication.listen_port}"),
    )
    _append(primary, 1, 40)
    _append(standby, 1, 40)
    assert _archive(primary, 31) == 3
    assert _archive(standby, 31) == 3


# -- 5: demote after an archive past the promotion point ----------------------------------------


def test_demote_cuts_an_old_primary_whose_archive_passed_the_promotion(tmp_path: Path) -> None:
    """Invariant: ``demote`` rebuilds a stopped old primary as the promoted instance's
    standby, cutting what it wrote after the new epoch began (README, Hot standby), and an
    archived journal is read where the journal lacks a segment (db36f88).

    The promoted instance's epoch 2 began at seq 51; the old primary went on to seq 100
    (async mode, or sync degraded while its standby was away) and an archive run (a nightly
    cron, its snapshots long past 51) moved seqs 1-60. Expected: it keeps seqs 1-50 (in
    the archive) and sets 51-100 aside, the archived 51-60 with them. What happens:
    ``cut_after`` lists the journal's own directory only and refuses ("cannot cut ... its
    oldest segment begins at 61 (the ones before were archived)"): demote fails, and the
    only way on is to move archived segments back by hand, which nothing says."""
    old, _ = pair(tmp_path)
    old = _archiving(old, tmp_path)
    _append(old, 1, 100)
    assert _archive(old, 61) == 6
    done = rebuild(old, Epochs().promoted(2, 51))
    assert done.kept_seq == 50
    assert len(_images(old, 1, 100)) == 50


# -- 6: failover.py status -------------------------------------------------------------------------


def test_failover_status_says_what_is_missing_when_the_archive_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Invariant: an instance whose archived segments were shipped away says so (README:
    it "refuses its standby, or as a standby fails to start, saying so").

    ``failover.py status`` hashes each journal from seq 1 through its archive
    (``journal_state``). With the primary's archive gone, expected: status prints its lines,
    the primary's journal said unreadable before seq 31 (keep the archive), and returns.
    What happens: ``JournalArchivedError`` out of ``status`` (a traceback from the operator's
    first command in an incident), with nothing about the standby or replication."""
    primary, standby = pair(tmp_path)
    primary = _archiving(primary, tmp_path)
    _append(primary, 1, 40)
    assert _archive(primary, 31) == 3
    shutil.rmtree(journal_archive_dir(primary))
    failover.status(primary, standby)
    out = capsys.readouterr().out
    assert f"standby {standby.instance}" in out
