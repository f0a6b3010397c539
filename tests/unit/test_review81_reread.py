"""Review 81: a hostile reread of a78e5f3..HEAD (d4acca0: ``journal_archive._move``; 2a56c89:
a failed account take gives the key's slot back, the descriptor budget counts two slot locks
a stream, a run to the end holds the journal's lock only for ``_durable_now``; the README).

What holds (looked at; pinned where said): ``_durable_now`` reads the last seq under the
lock after the fsync, and a torn tail's ``last_seq`` is the last good entry before it: the
fsync covered it, and a router that opens afterwards repairs the same ``_tail`` of the same
bytes (nobody writes between the lock's release and its open), so it cuts nothing at or
below ``_floor`` and continues at ``_floor + 1``, bounded by its own mark from there
(pinned); a killed router's partial write leaves whole entries that the next router keeps
too. The archive's segments need no fsync (sealed and fsynced before they moved; a copy
across volumes is fsynced) and are read only where the live directory no longer has them.
``_floor`` survives a restart inside ``run`` after the database lost commits (pinned), and
the entries up to it are unchanged by anything a router does; only an explicit cut
(``failover.py demote``'s ``rebuild``, which drops the database anyway) could change them,
an operator's concurrent demote and ``--to-db``, not pinned. ``_move``'s
``fsync_dir(target.parent)`` is the directory each caller fsynced before (the archive when
archiving, the journal when bringing back), still before the original's unlink (pinned).
``take`` closes the key's descriptor on any exception from the account's take. README's
changed lines name modules that exist and say what they hold; "a limit's worth per key and
per account" of slot files is an upper bound (as many as were held at once; pinned).

Faults, each pinned by a test that failed on the code it was written against; both pass
since their fixes (the same session's next commit):

1. ``RestConnections._fit_connections`` (``procs/gateway/rest_connections.py``) reserves
   two descriptors for each of ``min(max_streams, max_connections)`` streams out of the
   *configured* ``max_connections``, before it knows how many connections fit. Where the
   descriptors run short, the streams of connections that cannot exist eat the whole room,
   and the port is clamped to ``max(1, ...)``: one connection. The default config (1,000
   FIX sessions, 2,000 connections, 1,000 streams) with 5,500 descriptors free serves one
   REST client, where 500 fit with their streams' locks (before 2a56c89: 1,500).
2. ``DbWriter._durable_now`` (``procs/dbwriter/writer.py``) holds the journal's lock but
   leaves a torn tail for the next router's open to cut, and 2a56c89 lets that router
   start while the run goes on. A run to the end after a host crash (a whole entry's worth
   of torn bytes after the last good entry) reads the segment a 4 MiB chunk at a time; a
   router that opens while the run works through the chunk holding the torn entry
   truncates it and appends, and the scan, at the torn entry of the chunk it read, looks
   past it in the file (``journal.py`` ``_bad_entry``), finds the router's entries and
   raises ``JournalCorruptError`` "not a torn tail": ``ringex replay --to-db`` fails naming
   a corruption the journal does not have. (A SIGKILL's partial entry is cut at the end of
   the chunk without a look at the file: that case holds, pinned.)
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from config.edges import RestConfig
from procs.common.durable import fsync_dir
from procs.common.journal import (
    HEADER_SIZE,
    EntryLayout,
    Foreign,
    JournalReader,
    list_segments,
)
from procs.common.journal_archive import archive_segments_before, unarchive_after
from procs.common.journal_durable import durable_upto
from procs.common.journal_writer import JournalWriter
from procs.common.topology import journal_dir
from procs.dbwriter.writer import CheckpointBehindError, DbWriter, WriterOptions
from procs.gateway import rest_connections
from procs.gateway.rest_connections import RestConnections
from procs.gateway.session_stores import SPARE, fix_descriptors
from procs.gateway.stream_slots import StreamSlot, StreamSlots
from tests.unit.dbwriter.journal_gen import JournalBuilder
from tests.unit.test_review79_durable import CODEC, COMMON, _cfg, _deposit, _killed, _router

# -- 1. the streams' locks of connections that cannot exist ---------------------------------------


def test_the_port_takes_as_many_connections_as_fit_with_their_streams_locks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Invariant (review 38, README ``max_connections``: "the port's connections (within the
    process's descriptors), then 503"; ``_fit_connections``: the connections and the FIX
    sessions "within the descriptors this process may open"): the port's limit is the most
    connections whose descriptors fit beside the FIX sessions' 4 each, a connection one and
    each of its streams (at most ``max_streams``) 2 more (2a56c89).

    The default config: 1,000 FIX sessions (4,000 descriptors), 2,000 connections, 1,000
    streams. The process can open 5,500 descriptors besides its own (a hard RLIMIT_NOFILE of
    ~5,600: ``connections_room`` raises the soft limit that far and says so). Expected: 500
    connections (500 + 2 x 500 + 4,000 = 5,500; 501 would need 5,503).

    What happens: 2 x min(1,000, 2,000) = 2,000 descriptors are set aside for streams before
    the fit, more than the 1,500 left after the FIX sessions, so ``room`` is negative and
    the limit is ``max(1, ...)``: 1. Every REST client but one is answered 503 (before
    2a56c89 the same gateway took 1,500)."""
    available = 5_500 + 2 * SPARE  # (the spare stores' too: review 256)
    fake = lambda wanted, **_: min(wanted, available)  # noqa: E731
    monkeypatch.setattr(rest_connections, "connections_room", fake)
    rest = RestConfig()
    assert (rest.max_connections, rest.max_streams) == (2_000, 1_000)
    gateway = SimpleNamespace(gw=SimpleNamespace(max_sessions=1_000), rest=rest)
    RestConnections._fit_connections(gateway)  # type: ignore[arg-type]
    fitted: int = gateway.max_connections

    def held(connections: int) -> int:
        return fix_descriptors(1_000) + connections + 2 * min(rest.max_streams, connections)

    assert held(fitted) <= available, f"{fitted} connections hold {held(fitted)} descriptors"
    assert fitted == 500, f"the port takes {fitted} connections; 500 fit with their streams"


def test_the_port_is_not_fitted_down_where_the_descriptors_suffice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pinned: with every descriptor asked for granted, the port keeps its configured limit,
    and ``max_streams`` above ``max_connections`` reserves locks for the connections only."""
    asked: list[int] = []

    def room(wanted: int, **_: object) -> int:
        asked.append(wanted)
        return wanted

    monkeypatch.setattr(rest_connections, "connections_room", room)
    rest = RestConfig(max_connections=300, max_streams=1_000)
    gateway = SimpleNamespace(gw=SimpleNamespace(max_sessions=10), rest=rest)
    RestConnections._fit_connections(gateway)  # type: ignore[arg-type]
    assert gateway.max_connections == 300
    assert asked == [fix_descriptors(10) + 300 + 2 * 300]


# -- pinned: a run to the end over a killed router's torn tail ----------------------------------


def _torn_after_a_kill(tmp_path: Path, torn: int) -> tuple[JournalBuilder, Path]:
    """Router (``"interval"``) journals 1..24, fsyncs (mark 24), journals 25 and 26 and
    dies in its next write, which leaves ``torn`` bytes that are no entry after 26: part of
    an entry (a SIGKILL), or a whole entry's worth (a host crash's half-written page)."""
    cfg = _cfg(tmp_path, "interval")
    router = JournalBuilder(cfg)
    router.writer.close()
    router.writer = _router(cfg, "interval")
    router.setup()
    router.writer.sync()
    _deposit(router)
    _deposit(router)
    _killed(router.writer)
    directory = journal_dir(cfg)
    assert durable_upto(directory) == COMMON
    (_first, last), *_ = reversed(list_segments(directory))
    with open(last, "ab") as f:
        f.write(b"\x5a" * torn)
    return router, directory


def _run_while_a_router_starts(
    router: JournalBuilder, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> int:
    """``ringex replay --to-db``; while it is at seq 12, the instance starts: its router
    opens the journal (the torn tail cut, 26 kept) and journals 27 and 28, not fsynced yet.
    The run's checkpoint."""
    writer = DbWriter(router.cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))
    real = writer.replayed.entries
    started: list[JournalWriter] = []

    def entries(
        from_seq: int = 1, *, foreign: Foreign = "refuse"
    ) -> Iterator[tuple[int, memoryview]]:
        for seq, image in real(from_seq, foreign=foreign):
            yield seq, image
            if seq == COMMON // 2 and not started:  # the instance starts meanwhile
                router.writer = _router(router.cfg, "interval")
                started.append(router.writer)
                assert router.writer.next_seq == COMMON + 3  # the torn tail cut, 26 kept
                _deposit(router)
                _deposit(router)

    monkeypatch.setattr(writer.replayed, "entries", entries)
    try:
        return writer.run(to_end=True)
    finally:
        writer.close()
        for journal in started:
            journal.close()
        assert started, "the router never started"
        assert router.last_seq == COMMON + 4


# -- 2. a router's repair under a run's read of the torn tail -----------------------------------


def test_a_router_that_cuts_a_torn_tail_during_a_run_to_the_end_does_not_fail_it(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant (2a56c89, ``_durable_now``: "a router may start while the run goes on,
    review 80"; README: ``ringex replay --to-db`` "fsyncs the journal under its lock, for
    that moment only, and reads to its end"): a router that starts during a run to the end
    changes nothing the run reads; the run writes the journal to the end it fixed.

    A host crash leaves the journal with a torn tail: a whole entry's worth of bytes that
    is no entry after 26 (a page the crash half wrote). The exchange stopped, the operator
    runs ``ringex replay --to-db`` (README: rebuilding the database); ``_durable_now`` fixes
    its end at 26 and leaves the tail as it is. The run's pass reads the segment a 4 MiB
    chunk at a time (~29k entries; here one chunk, torn entry included) and, while it works
    through the chunk, the instance starts: the router's open truncates the torn tail and
    it journals 27 and 28. Expected: checkpoint 26 (the pin above, with a partial entry).

    What happens: the scan reaches the torn entry in the chunk it read, looks past it in
    the file for non-zero bytes (``_bad_entry``) and finds the router's entry 28: it raises
    ``JournalCorruptError`` "... followed by data at offset ...: not a torn tail", and the
    run fails naming a corruption the journal does not have. ``_durable_now`` held the
    journal's lock and could have repaired the tail itself (``reader._repair()``), so no
    later open changes a byte the run reads."""
    router, _directory = _torn_after_a_kill(tmp_path, EntryLayout(CODEC.slot_size).size)
    assert _run_while_a_router_starts(router, dsn, monkeypatch) == COMMON + 2


def test_a_router_started_during_a_run_to_the_end_keeps_what_the_run_reads_to(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinned (2a56c89, ``_durable_now``): the run fixes its end at the torn tail's last good
    entry (26, fsynced: a SIGKILL's partial entry after it); a router that starts meanwhile
    repairs the tail there (its open cuts nothing the run reads), continues at 27, and what
    it appends, not fsynced yet, is not read: the run writes 1..26."""
    router, _directory = _torn_after_a_kill(tmp_path, 50)
    assert _run_while_a_router_starts(router, dsn, monkeypatch) == COMMON + 2


def test_a_run_to_the_end_restarted_for_lost_commits_keeps_its_end(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinned (2a56c89, ``_floor``): a run to the end that restarts inside ``run`` (the
    database lost commits: ``CheckpointBehindError``) still reads past the killed router's
    mark (24) to the end it fixed (26), and resets ``_floor`` once done."""
    router, directory = _torn_after_a_kill(tmp_path, EntryLayout(CODEC.slot_size).size)
    writer = DbWriter(router.cfg, dsn, WriterOptions(batch_rows=5, batch_ms=10**6))
    real = writer.replayed.entries
    lost: list[int] = []

    def entries(
        from_seq: int = 1, *, foreign: Foreign = "refuse"
    ) -> Iterator[tuple[int, memoryview]]:
        for seq, image in real(from_seq, foreign=foreign):
            yield seq, image
            if seq == COMMON // 2 and not lost:
                writer._drain()
                lost.append(writer.committed)
                raise CheckpointBehindError(0, writer.committed)

    monkeypatch.setattr(writer.replayed, "entries", entries)
    try:
        checkpoint = writer.run(to_end=True)
    finally:
        writer.close()
    assert lost and lost[0] > 0
    assert durable_upto(directory) == COMMON
    assert (checkpoint, writer._floor) == (COMMON + 2, 0)


# -- pinned: _move's directory fsync before the original's unlink ------------------------------


def _segmented(directory: Path) -> None:
    """Seqs 1..6, two entries a segment: segments 1, 3 and 5."""
    layout = EntryLayout(8)
    with JournalWriter(
        directory, slot_size=8, schema_id=1, segment_bytes=HEADER_SIZE + 2 * layout.size
    ) as out:
        out.append(1, bytes(range(48)), 6)
    assert [first for first, _ in list_segments(directory)] == [1, 3, 5]


def _across_volumes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path]]:
    """A rename between two directories fails as across volumes (EXDEV); the directory
    fsyncs and the unlinks, in order."""
    events: list[tuple[str, Path]] = []
    rename, unlink = os.rename, Path.unlink

    def fake_rename(src: str | Path, dst: str | Path) -> None:
        if Path(src).parent != Path(dst).parent:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        rename(src, dst)

    def fake_unlink(self: Path, missing_ok: bool = False) -> None:
        events.append(("unlink", self))
        unlink(self, missing_ok=missing_ok)

    def fake_fsync_dir(directory: Path) -> None:
        events.append(("fsync_dir", Path(directory)))
        fsync_dir(directory)

    monkeypatch.setattr(os, "rename", fake_rename)  # (journal_archive's os)
    monkeypatch.setattr(Path, "unlink", fake_unlink)
    monkeypatch.setattr("procs.common.journal_archive.fsync_dir", fake_fsync_dir)
    return events


def test_a_move_across_volumes_names_the_copy_durably_before_the_original_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinned (d4acca0): archiving, the archive's directory is fsynced before each original
    is unlinked; bringing back, the journal's directory before the archive's copy is."""
    directory, archive = tmp_path / "journal", tmp_path / "archive"
    _segmented(directory)
    events = _across_volumes(monkeypatch)
    moved = archive_segments_before(directory, 5, archive)
    assert [p.name for p in moved] == [p.name for _, p in list_segments(archive)]
    for gone in (directory / p.name for p in moved):
        at = events.index(("unlink", gone))  # (only a copy unlinks its original)
        assert events[at - 1] == ("fsync_dir", archive), events
    events.clear()
    unarchive_after(directory, archive, 2)  # segment 3 (seqs 3, 4) comes back
    assert [first for first, _ in list_segments(directory)] == [3, 5]
    at = events.index(("unlink", archive / moved[1].name))
    assert events[at - 1] == ("fsync_dir", directory), events
    reader = JournalReader(directory, slot_size=8, schema_id=1, archive=archive)
    assert [seq for seq, _ in reader.entries(1)] == [1, 2, 3, 4, 5, 6]


# -- pinned: the slot files a key leaves ------------------------------------------------------


def test_a_key_leaves_as_many_slot_files_as_it_held_streams_at_once(tmp_path: Path) -> None:
    """Pinned (README "private stream": "a limit's worth per key and per account"): an upper
    bound; a key that held two streams at once, many times over, leaves two files of its
    limit of five, and its account two of ten."""
    slots = StreamSlots(tmp_path, 5, 10)
    for _ in range(20):
        pair = [slots.take("K1", 7), slots.take("K1", 7)]
        for slot in pair:
            assert isinstance(slot, StreamSlot)
            slot.release()
    names = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert names == ["account", "account", "key", "key"]
