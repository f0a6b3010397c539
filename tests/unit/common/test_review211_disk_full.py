"""A hostile review (211) of what the exchange does when a durable write fails: a full disk
(ENOSPC), a file over its size limit (EFBIG, a real ``RLIMIT_FSIZE``) or an fsync that
reports EIO, in the router's journal, the snapshot stores, a FIX session's audit log, a
gateway's ExecID blocks; each process then restarted from its files.

Faults (each fixed; each test states the correct behaviour and says what it was):

1. ``AuditLog.flush`` (``procs/gateway/audit.py:130-143``) writes its lines through a buffered
   file and keeps them all when the write fails part way: the torn part stays in
   ``audit.log`` and the next flush writes every line again after it. A line then holds two
   messages (the torn one glued onto the first retried), and the lines written whole before
   the failure appear twice, breaking the module's promise "a line is always one message".
2. A journal write that fails (``JournalWriter._write`` -> ``write_all``,
   ``procs/common/journal_writer.py:402``, kept and re-raised at 194-196) raises the bare
   ``OSError`` of ``os.write``: no file named. The router does not catch it
   (``procs/router/main.py:562-580``), so its last words are ``[Errno 28] No space left
   on device`` and a traceback, not which journal segment could not be written.
3. A matcher's snapshot that does not fit the disk (``MatcherShell.save_snapshot``,
   ``procs/matcher/main.py:209-216``) raises out of ``step``: the matcher process dies, is
   restarted, replays, and dies again at its next snapshot (a crash loop the supervisor's
   ``restart_limit`` ends by stopping the instance), for a snapshot that is an optimisation
   only (the journal holds every command). The router's snapshot, a forked child, fails
   alone and the router sequences on.

Checked and found sound (``test_checked_...``): a router batch whose journal write fails part
way is never answered nor routed, its close answers nothing of it, and the restart (the torn
entry cut) journals it once, at the seq it had, and routes it; a snapshot whose fsync fails
leaves the one before it the newest and no temp file; an ExecID reservation that fails hands
out no id and the mark before it stands; a snapshot cut short by a file size limit leaves no
part; an audit log reopened after a torn line starts on a line of its own.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from procs.common import journal_writer as journal_writer_module
from procs.common import snapshots as snapshots_module
from procs.common.durable import write_all
from procs.common.exec_ids import ExecIdBlocks, parse_mark
from procs.common.journal import JournalReader
from procs.common.journal_writer import JournalWriter
from procs.common.records import AccountReply, NewOrder, Record
from procs.common.result_codes import ResultCode
from procs.common.snapshots import SnapshotStore
from procs.common.types import Side
from procs.gateway.audit import AuditLog
from tests.unit.router.test_router import ADMIN, CODEC, Exchange, config, fund, order

SLOT = 152
SCHEMA = 7


def enospc(what: str = "") -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + (f" ({what})" if what else ""))


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past byte ``limit`` of any file fail with EFBIG (a real ``RLIMIT_FSIZE``; a
    write that crosses it is cut short at it, as a disk filling up cuts one)."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


def fix_report(seq: int, text_len: int) -> bytes:
    return b"8=FIX.4.4\x019=5\x0135=8\x0149=EX\x0156=ALICE\x0134=%d\x0158=%s\x0110=000\x01" % (
        seq,
        b"r" * text_len,
    )


# -- 1. the audit log's retry after a torn write -------------------------------------------


def test_an_audit_flush_cut_short_leaves_one_message_a_line_once_each(tmp_path: Path) -> None:
    """Scenario: ``audit.log`` holds one line; four 3 KB reports are recorded and flushed
    while the file may grow only 5,000 bytes more (a real ``RLIMIT_FSIZE``: the kernel
    writes up to the limit and refuses the rest, EFBIG, as a disk that fills mid-write does
    with ENOSPC). The flush raises; room comes back; a fifth report is flushed. Expected:
    every line one message, each report's line once (the torn part cut back, as
    ``MessageStore.flush`` and ``OrderLog.write`` do). Was (fixed): the file held the first retried
    line twice and one line with two messages (the torn third glued onto the retried
    second). Fix: write with ``write_all`` on the raw descriptor and ``os.ftruncate`` back to
    the size before the write when it fails (keeping the entries for the next flush)."""
    path = tmp_path / "audit.log"
    audit = AuditLog(path)
    audit.record(1, False, "ALICE", fix_report(1, 10))
    audit.flush()
    size = path.stat().st_size
    for seq in (2, 3, 4, 5):
        audit.record(seq, False, "ALICE", fix_report(seq, 3000))
    with file_size_limit(size + 5000), pytest.raises(OSError) as failed:
        audit.flush()
    assert failed.value.errno == errno.EFBIG
    audit.record(6, False, "ALICE", fix_report(6, 5))
    audit.flush()
    audit.close()
    lines = path.read_bytes().splitlines()
    seqs = [line.split(b" ", 1)[0] for line in lines]
    assert all(line.count(b"8=FIX.4.4") == 1 for line in lines), "a line of two messages"
    assert seqs == [b"1", b"2", b"3", b"4", b"5", b"6"], f"lines by timestamp: {seqs}"


def test_checked_an_audit_log_reopened_after_a_torn_line_starts_on_a_line_of_its_own(
    tmp_path: Path,
) -> None:
    """Scenario: a gateway dies with a torn last audit line (killed mid-write; a failed flush
    cuts its bytes back since fault 1's fix, so a kill is what leaves one now); the next run
    opens the log. Expected and seen: its first line starts on a line of its own (``_open``
    ends the torn one with a newline, review 39)."""
    path = tmp_path / "audit.log"
    path.write_bytes(b"1 out ALICE " + fix_report(1, 3000)[:900])  # no end of line
    again = AuditLog(path)
    again.record(2, False, "ALICE", fix_report(2, 5))
    again.close()
    lines = path.read_bytes().splitlines()
    assert lines[-1].startswith(b"2 out ALICE 8=FIX.4.4|"), lines[-1][:40]
    assert len(lines) == 2


# -- 2. the router's journal -----------------------------------------------------------------


def test_a_failed_journal_write_names_the_segment_and_the_errno(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: the journal's disk is full at an append (``write_all`` raises ENOSPC).
    Expected: the error the router dies with names the journal segment (or at least its
    directory) and the errno, as the writer's other errors name ``self.directory``, so an
    operator reading the router's last log lines knows which file and why. Was (fixed): ``str()``
    of the error is ``[Errno 28] No space left on device``, nothing else (``append`` keeps
    the bare exception as ``failed`` and re-raises it). Fix: in ``JournalWriter.append``,
    raise ``JournalError(f"writing {segment} at seq {first_seq}: {exc}") from exc`` (an
    ``OSError`` subclass keeping ``errno``, or log it before re-raising)."""
    directory = tmp_path / "journal"
    writer = JournalWriter(directory, slot_size=SLOT, schema_id=SCHEMA)
    writer.append(1, bytes(SLOT), 1)

    def full(fd: int, data: bytes | memoryview) -> None:
        raise enospc()

    monkeypatch.setattr(journal_writer_module, "write_all", full)
    with pytest.raises(OSError) as failed:
        writer.append(2, bytes(SLOT), 1)
    writer.close()
    said = str(failed.value)
    assert failed.value.errno == errno.ENOSPC
    assert str(directory) in said, f"the error says only {said!r}"


def _replies(ex: Exchange, gateway: int) -> list[Record]:
    out: list[Record] = []
    while more := ex.replies_of(gateway):
        out += more
    return out


def test_checked_a_router_batch_whose_journal_write_fails_is_answered_only_after_the_restart(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: the router runs with ``fsync = "batch"``; account 7 is funded (answered);
    then the disk fills as an order's batch is journaled: half its entry reaches the file and
    ``write_all`` raises ENOSPC. The step raises (the router's ``main`` then closes the shell
    and exits: crash-only). Expected and seen: no reply for the order leaves the router (not
    in the step, not in the close), nothing reaches the matcher; room back, the restart cuts
    the torn entry, reads the order again from the gateway's ring (not committed), journals
    it once at the seq it had, and routes it: the book holds it (its ack is the matcher's
    event), and the router answers nothing of it."""
    ex = Exchange(config(instance, tmp_path))
    try:
        fund(ex, 7, usd=10**9, btc=0)  # on the admin ring, as ``ringex admin`` does
        assert [r.code for r in _replies(ex, ADMIN) if isinstance(r, AccountReply)] == [
            ResultCode.OK
        ] * 2
        seq_before = ex.router.journal.next_seq
        real = write_all

        def torn(fd: int, data: bytes | memoryview) -> None:
            real(fd, memoryview(data)[: len(data) // 2])  # a part reaches the file
            raise enospc()

        monkeypatch.setattr(journal_writer_module, "write_all", torn)
        ex.gateways[1].publish_batch([order(50, 7, Side.BUY, 1000, 10)])
        with pytest.raises(OSError) as failed:
            ex.router.step(timeout_s=0.001)
        assert failed.value.errno == errno.ENOSPC
        ex.router.close()  # main's ``finally``
        assert _replies(ex, 1) == [], "a reply for a command the journal does not hold"
        assert ex.matcher.step(timeout_s=0.001) == 0, "the matcher got an unjournaled order"
        ex.matcher.close()
        monkeypatch.setattr(journal_writer_module, "write_all", real)  # room again

        ex.start()  # the supervisor's restart: recovery, the same path as a first start
        ex.pump()
        reader = JournalReader(
            ex.router.journal.directory,
            slot_size=CODEC.slot_size,
            schema_id=CODEC.journal_schema_id,
        )
        journaled = [CODEC.decode_slot(image) for _, image in reader.entries(1)]
        orders = [r for r in journaled if isinstance(r, NewOrder)]
        assert [o.client_ref for o in orders] == [50], f"journaled orders: {orders}"
        assert orders[0].seq == seq_before, "the order took another seq"
        assert len(journaled) == seq_before
        assert len(ex.matcher.matcher.books[1].orders) == 1, "the order is not in the book"
        assert _replies(ex, 1) == [], "an accepted order answered by the router"
    finally:
        with contextlib.suppress(Exception):
            ex.stop()


# -- 3. snapshots ---------------------------------------------------------------------------


def test_a_matcher_snapshot_that_does_not_fit_leaves_the_matcher_running(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Scenario: matcher ``m1`` snapshots every 2 commands; the disk has room for the
    journal but not for a snapshot (``replace_durably`` raises ENOSPC). Two orders come.
    Expected: the matcher executes them, publishes their events, logs that the snapshot at
    that seq failed (naming the directory and the errno) and goes on; it tries again at
    the next snapshot due, as the router's forked snapshot job (``router/snapshots.py``)
    fails without stopping the router. Was (fixed): ``MatcherShell.step`` raised the ENOSPC: the
    process dies, the supervisor restarts it, it replays and dies again at its next
    snapshot, and ``restart_limit`` restarts later the supervisor stops the instance. Fix:
    in ``save_snapshot``, catch ``OSError``, log it (``store.directory``, errno) at ERROR
    and leave ``_since_snapshot`` as it is (a clean stop's snapshot likewise)."""
    cfg = config(instance, tmp_path)
    matchers = [msgspec.structs.replace(m, snapshot_every=2) for m in cfg.matchers]
    ex = Exchange(msgspec.structs.replace(cfg, matchers=matchers))
    try:
        fund(ex, 7, usd=10**9, btc=10**6)

        def full(path: Path, data: bytes, **_: object) -> None:
            raise enospc(str(path))

        monkeypatch.setattr(snapshots_module, "replace_durably", full)
        caplog.set_level(logging.ERROR)
        ex.gateways[1].publish_batch(
            [order(60, 7, Side.BUY, 900, 10), order(61, 7, Side.SELL, 1100, 10)]
        )
        ex.pump()  # raises now, from the matcher's step
        assert len(ex.matcher.matcher.books[1].orders) == 2
        assert any("snapshot" in r.getMessage() for r in caplog.records)
    finally:
        monkeypatch.undo()
        with contextlib.suppress(Exception):
            ex.stop()


def test_checked_a_snapshot_whose_fsync_fails_leaves_the_one_before_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: a snapshot store holds seq 10; saving seq 20, the temp file's fsync reports
    EIO. Expected and seen: ``save`` raises EIO, seq 10 is still the newest (and reads
    whole), no temp file is left (the room it took is free), and a later save works."""
    store = SnapshotStore(tmp_path / "snapshots")
    store.save(10, b"ten")
    real = os.fsync
    calls: list[int] = []

    def eio(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(OSError) as failed:
        store.save(20, b"twenty" * 1000)
    monkeypatch.setattr(os, "fsync", real)
    assert failed.value.errno == errno.EIO and calls
    assert store.latest() == (10, b"ten")
    assert sorted(p.name for p in store.directory.iterdir()) == [store.path(10).name]
    store.save(30, b"thirty")
    assert store.latest() == (30, b"thirty")


def test_checked_a_snapshot_cut_short_by_the_file_size_limit_keeps_the_one_before(
    tmp_path: Path,
) -> None:
    """Scenario: a real ``RLIMIT_FSIZE`` lets a snapshot's temp file reach 4 KiB only; a
    64 KiB snapshot is saved. Expected and seen: EFBIG, the previous snapshot stays the
    newest, the part written is removed."""
    store = SnapshotStore(tmp_path / "snapshots")
    store.save(1, b"one")
    with file_size_limit(4096), pytest.raises(OSError) as failed:
        store.save(2, os.urandom(65536))
    assert failed.value.errno == errno.EFBIG
    assert store.latest() == (1, b"one")
    assert [p.name for p in store.directory.iterdir()] == [store.path(1).name]


# -- 4. a gateway's ExecID blocks --------------------------------------------------------------


def test_checked_an_execid_reservation_that_fails_keeps_the_mark_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: a gateway's ExecID mark is at the end of one block; the next reservation's
    write meets a full disk. Expected and seen: ``reserve`` raises (no id of the new block
    is handed out), the file still holds the old mark whole, no temp file is left, and a
    restart's counter starts above the old mark."""
    path = tmp_path / "gateway" / "exec-ids"
    blocks = ExecIdBlocks(path, block=1000)
    first_end = blocks.reserve(blocks.start())
    real_replace = os.replace

    def full(src: Any, dst: Any) -> None:
        raise enospc(str(dst))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        blocks.reserve(first_end)
    monkeypatch.setattr(os, "replace", real_replace)
    assert parse_mark(path.read_bytes()) == first_end
    assert sorted(p.name for p in path.parent.iterdir()) == ["exec-ids"]
    assert ExecIdBlocks(path, block=1000).counter_start() > first_end
