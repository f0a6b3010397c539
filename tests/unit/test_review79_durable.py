"""A hostile review (79) of the journal's durable mark (a3f49bd) and review 78's fixes (9aa4047):
``journal_durable.py`` (the 8-byte shared mapping ``journal/durable`` the JournalWriter stores
its durable seq in), its wiring in ``journal_writer.py``, the database writer's ``_follow``
reading no further than ``durable_upto``; ``_scan`` passing a skipped segment over at its
header, ``JournaledEnds``' resume point and ``unarchive_after``'s archive fsync.

What holds (looked at, not pinned unless said): the mark is stored after the fsync it reports
on every path that fsyncs (``sync``, ``_reap``, ``_roll``'s seal, the open), and a failed
fsync leaves it where it was, ``cut_on_failure`` or not (a standby's cut leaves ``_written``
at the mark; its reopen marks what the file holds); a killed writer's mark is a seq of its
own, below the next writer's first entry, so a stale read of it bounds the next writer too;
a demote's cut or a restored journal under a mark that says more is bounded by what the
files hold, and every writer's open stores its own mark before it appends; a mark file of
the wrong size (short: 0; longer: its first 8 bytes) is taken safely; ``durable_upto`` costs
an open, a read and a close per pass, beside the listing and opening of segments each pass
already makes. Review 78's resume point is read before the scan, so an entry appended
meanwhile is scanned (pinned below); ``_ts``'s key stays monotonic with the header skip;
``unarchive_after`` fsyncs the archive before ``cut_after`` truncates. Not pinned (the
documented pair of README "failover"): a router restarted after a failed fsync takes the
page cache's entries for durable, and now marks them so for the database writer too, which
the README's "a host crash cannot leave the database ahead of the journal" does not say.

Faults, each pinned by a test that failed on the code it was written against; all four
pass since their fixes (the same session's next commit):

1. A clean close marks ``ALL`` (``journal_durable.py`` ``DurableMark.close``,
   ``journal_writer.py`` ``close``): "no bound", which outlives the writer. A database
   writer's pass reads the mark once (``writer.py`` ``_follow``) and then reads on through
   the journal for as long as the pass lasts (a backlog: a pass commits batch after batch
   to its end); a router restarted meanwhile (any stop that closes: SIGTERM, a Python
   error, ``fsync = "none"`` too) appends to the same files under its own mark, and the
   pass, bounded by the stale ``ALL``, commits its entries before their fsync: the database
   ahead of the journal after a host crash, the limit a3f49bd removed.
2. A run to the journal's end (``DbWriter.run(to_end=True)``: ``ringex replay --to-db``,
   the README's upgrade step ``ringex replay --snapshot --to-db``) stops at a killed
   router's mark, below the journal's end, with no writer holding the journal, even after
   ``--snapshot`` fsynced every segment (``cli._sync_journal``): it reports "database
   written up to seq" short of the replay's "state at seq", its writer snapshot is short of
   the end, and the new build of other rules then has old-rules entries to replay and
   refuses. Said nowhere (``--to-db``'s help: "to the end").
3. Review 78's fix 1 is partial: the header skip is for segments that are not the last
   (``journal.py`` ``_scan``), so a journal whose last segment is another layout's (the
   README's upgrade, an idle new router: with the default 256 MiB segments a whole day is
   one segment) is still read from each probe to its end by ``_first_at``'s bisection
   (``journaled_ends.py`` ``_ts``): ~9N entries for N, review 78's fault 1 unchanged.
4. A skipped segment that is not the last is no longer checked at all: a partial entry
   there (junk after its last entry) is passed over, where the tail rules (``journal.py``)
   make it a ``JournalCorruptError`` "in any segment but the last", as it was before
   9aa4047 (the size check needs no read).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest

import procs.common.journal as journal_module
from config.schema import JournalConfig, RingexConfig
from procs.cli import _sync_journal
from procs.common.journal import (
    HEADER_SIZE,
    Foreign,
    JournalCorruptError,
    JournalReader,
    list_segments,
)
from procs.common.journal_durable import durable_upto
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import Transfer
from procs.common.topology import journal_dir
from procs.dbwriter.writer import DbWriter, WriterOptions
from procs.supervisor.journaled_ends import JournaledEnds
from tests.unit.dbwriter.journal_gen import JournalBuilder, make_cfg, write_all
from tests.unit.supervisor import test_review8_session_end_failover as review8
from tests.unit.supervisor.test_review8_session_end_failover import Host
from tests.unit.supervisor.test_session_clock import utc
from tests.unit.test_review78_reread import _Counted, _upgraded_standby

CODEC = RecordCodec()
COMMON = 24  # JournalBuilder.setup: CreateAccount + 3 Transfers for each of 6 accounts
_RULES_AT, _SCHEMA_AT, _CRC_AT = 20, 24, HEADER_SIZE - 4  # (test_review68_reread's)
OTHER_SCHEMA = 0x0123_4567_89AB  # another build's journaled commands


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> _Counted:
    """The entries the journal's reader reads (CRC-checks), counted (review 78's rig)."""
    counted = _Counted()
    monkeypatch.setattr(journal_module, "zlib", SimpleNamespace(crc32=counted.crc32))
    return counted


def _cfg(tmp_path: Path, fsync: str) -> RingexConfig:
    return msgspec.structs.replace(make_cfg(tmp_path), journal=JournalConfig(fsync=fsync))  # type: ignore[arg-type]


def _router(cfg: RingexConfig, fsync: str) -> JournalWriter:
    """The router's journal writer; under ``"interval"`` its clock never moves, so nothing
    appended is fsynced until an explicit ``sync``."""
    return JournalWriter(
        journal_dir(cfg),
        slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id,
        fsync=fsync,  # type: ignore[arg-type]
        fsync_interval_ms=10**6,
        clock=lambda: 0,
    )


def _deposit(router: JournalBuilder) -> None:
    assert router.submit(Transfer(0, 0, 1, 1, router._next(), 10, 1, 5, router.ref))


def _killed(writer: JournalWriter) -> None:
    """What a SIGKILL leaves: the descriptors and the mapping go, nothing more runs."""
    os.close(writer._fd)
    writer._mark.close()  # (the mark stays as it was)
    writer._lock.close()


# -- 1. a clean close's ALL outlives the writer --------------------------------------------------


def test_a_pass_that_read_a_clean_close_mark_stops_at_the_next_writers_mark(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant (a3f49bd, README "the router and the journal"): the database writer reads
    no entry past the last one the router's writer knows durable, so a host crash cannot
    leave the database ahead of the journal.

    Router A (``"batch"``) journals seqs 1..24 and stops cleanly: the mark is ``ALL``. The
    database writer's pass reads the mark (``ALL``) and the journal; while it is at seq 24
    (in production: a backlog, batch after batch), router B starts (``"interval"``), its
    open marks 24, and it journals 25 and 26, not fsynced yet. Expected: the pass stops at
    24 (B's mark; 25 and 26 go at a later pass, once fsynced).

    What happens: the pass is bounded by the ``ALL`` it read before B opened, reads on into
    B's entries as the file grows, and commits 25 and 26: checkpoint 26, mark 24; a host
    crash now loses them from the journal and not from the database."""
    cfg = _cfg(tmp_path, "batch")
    router = JournalBuilder(cfg)
    router.writer.close()
    router.writer = _router(cfg, "batch")
    router.setup()
    router.writer.close()  # router A's clean stop
    directory = journal_dir(cfg)
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))
    real = writer.replayed.entries
    restarted: list[JournalWriter] = []

    def entries(
        from_seq: int = 1, *, foreign: Foreign = "refuse"
    ) -> Iterator[tuple[int, memoryview]]:
        for seq, image in real(from_seq, foreign=foreign):
            yield seq, image
            if seq == COMMON and not restarted:  # router B starts while the pass is here
                router.writer = _router(cfg, "interval")
                restarted.append(router.writer)
                _deposit(router)
                _deposit(router)
                writer.request_stop()  # (so that the run returns after this pass)

    monkeypatch.setattr(writer.replayed, "entries", entries)
    try:
        checkpoint = writer.run()  # following, as the supervisor's writer does
        assert restarted, "router B never started"
        durable, mark = restarted[0].durable_seq, durable_upto(directory)
    finally:
        writer.close()
        for journal in restarted:
            journal.close()
    assert (durable, mark, router.last_seq) == (COMMON, COMMON, COMMON + 2)
    assert checkpoint <= durable, f"checkpoint {checkpoint}, router B's durable seq {durable}"


# -- 2. a run to the end stops at a dead writer's mark -------------------------------------------


def test_a_run_to_the_end_after_a_killed_router_reaches_the_journals_end(
    tmp_path: Path, dsn: str
) -> None:
    """Invariant: ``DbWriter.run(to_end=True)`` follows the journal "to its last entry"
    (``procs/dbwriter/main.py``: what ``ringex replay --to-db`` runs; its help: "the database
    writer's path, to the end"); the README's upgrade to a build of other rules relies on it
    (``ringex replay --snapshot --to-db``: the writer's checkpoint and snapshot at the
    journal's end, so the new build replays nothing of the old rules).

    Router (``"interval"``) journals 1..24, fsyncs (mark 24), journals 25 and 26 and is
    SIGKILLed; the exchange stays stopped. The operator runs ``ringex replay --snapshot
    --to-db``: ``_sync_journal`` fsyncs every segment (26 durable now), then the writer runs
    to the end. Expected: checkpoint 26.

    What happens: the writer stops at the dead router's mark, 24, and returns it: "database
    written up to seq 24" after "state at seq 26". Nothing but a router's next open ever
    moves the mark, so the run stops there every time."""
    cfg = _cfg(tmp_path, "interval")
    router = JournalBuilder(cfg)
    router.writer.close()
    router.writer = _router(cfg, "interval")
    router.setup()
    router.writer.sync()
    _deposit(router)
    _deposit(router)
    assert durable_upto(journal_dir(cfg)) == COMMON
    _killed(router.writer)
    assert _sync_journal(cfg) == COMMON + 2  # --snapshot: durable to the end now
    assert write_all(cfg, dsn) == COMMON + 2


# -- 3. review 78's fix 1 leaves the last segment out --------------------------------------------


def test_the_session_end_bisection_reads_a_foreign_last_segment_once(
    tmp_path: Path, instance: str, reads: _Counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant (review 78's fault 1, ``journaled_ends.py``): ``_first_at`` reads one entry
    per bisection step, and the scan after it each entry from there once.

    Review 78's journal of the old build's day (480 entries, an upgrade across the 17:00
    end, the new build's router idle), but in one segment, as the default 256 MiB segments
    hold a day of up to 1.8M commands. Expected: at most 2N entries read, as review 78's
    test allows for the same day in 12 segments.

    What happens: the last segment is scanned (``_scan``'s skip at the header is for
    segments that are not the last), so each probe reads from itself to the journal's end:
    4326 entries, ~9N, as before 9aa4047."""
    monkeypatch.setattr(review8, "SEGMENT_BYTES", HEADER_SIZE + 144 * 4000)
    host = _upgraded_standby(tmp_path, instance)
    assert len(list_segments(journal_dir(host.cfg))) == 1
    assert JournaledEnds(host.cfg).first_since(utc("2026-03-10 17:00")) is None
    assert reads.entries <= 2 * host.seq


# -- 4. a skipped segment that is not the last goes unchecked ------------------------------------


def _restamp_one(path: Path, schema: int) -> None:
    """Rewrite one segment's header as a build of other journaled commands wrote it."""
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, _SCHEMA_AT, schema)
    struct.pack_into("<I", data, _CRC_AT, zlib.crc32(bytes(data[:_CRC_AT])))
    path.write_bytes(bytes(data))


def _upgraded_journal(tmp_path: Path, instance: str) -> tuple[Host, Path]:
    """The old build's 40 entries (one sealed segment), then this build's 10."""
    host = Host(tmp_path, instance, standby=False)
    host.orders("2026-03-10 09:00", "2026-03-10 09:39", 60)
    ((_first, old),) = list_segments(journal_dir(host.cfg))
    _restamp_one(old, OTHER_SCHEMA)
    host.orders("2026-03-10 10:00", "2026-03-10 10:09", 60)  # a segment of its own
    assert [first for first, _ in list_segments(journal_dir(host.cfg))] == [1, 41]
    return host, old


def _reader(host: Host) -> JournalReader:
    return JournalReader(
        journal_dir(host.cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )


def test_a_partial_entry_in_a_skipped_segment_that_is_not_the_last_is_refused(
    tmp_path: Path, instance: str
) -> None:
    """Invariant (``journal.py``, tail rules): anything but a torn tail of the last segment
    is ``JournalCorruptError`` naming the file and offset, "never skipped": "a partial entry
    in any segment but the last".

    The old build's sealed segment (1..40) has 10 bytes of junk after its last entry; this
    build's segment follows at 41. Expected: ``entries(foreign="skip")`` (the session-end
    search, the router's reread window) raises, as it did before 9aa4047 (a check of the
    file's size, no read).

    What happens: the header skip takes ``(size - 64) // 144`` entries and returns, so the
    junk is never seen and the reader yields 41..50 as if the segment were sound."""
    host, old = _upgraded_journal(tmp_path, instance)
    with open(old, "ab") as f:
        f.write(b"\x5a" * 10)
    with pytest.raises(JournalCorruptError, match="partial entry"):
        list(_reader(host).entries(1, foreign="skip"))


def test_a_sound_skipped_segment_is_passed_over_to_the_next(tmp_path: Path, instance: str) -> None:
    """Pinned: the header skip's count is right for a sound segment: the next one continues
    at its first seq, and a read from inside the old segment yields this build's entries."""
    host, _old = _upgraded_journal(tmp_path, instance)
    assert [seq for seq, _ in _reader(host).entries(7, foreign="skip")] == list(range(41, 51))


# -- pinned: the resume point is read before the scan ------------------------------------------


def test_an_end_appended_between_the_resume_point_and_the_scan_is_found(
    tmp_path: Path, instance: str, reads: _Counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinned (review 78's fix 2, ``journaled_ends.py``): ``end`` is read before the scan, so
    an END_OF_SESSION the router appends between ``last_seq()`` and the scan is scanned
    (the scan reads to the file's end), and the resume point moves past it only after."""
    host = _upgraded_standby(tmp_path, instance)
    ends = JournaledEnds(host.cfg)
    assert ends.first_since(utc("2026-03-10 17:00")) is None
    make_reader = ends._reader

    def reader() -> JournalReader:
        made = make_reader()
        last_seq = made.last_seq

        def raced() -> int:
            seen = last_seq()
            host.journal(("end", "2026-03-10 17:00:05"))  # appended right after
            return seen

        monkeypatch.setattr(made, "last_seq", raced)
        return made

    monkeypatch.setattr(ends, "_reader", reader)
    found = ends.first_since(utc("2026-03-10 17:00"))
    assert found is not None and found.seq == host.seq
