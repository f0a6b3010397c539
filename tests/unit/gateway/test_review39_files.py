"""Review 39, the files' own crash points: the order log (a damaged length, a compaction
that fails at its finish or whose reopen fails, each step of its finish, a write of several
frames cut short), the audit log (a torn last line) and a session's message store (killed
between its two files; the messages a reset carries). The process-level crash points are in
``test_review39_crash_points.py``; its docstring says how the review ran.

Each ``test_checked_`` test pins a crash point that was tried and held; the others were
faults, fixed since (each docstring says how).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from procs.common import durable
from procs.gateway import order_log as order_log_module
from procs.gateway.audit import AuditLog
from procs.gateway.order_log import ORDER, Kept, OrderLog, OrderLogError, Recovered
from procs.gateway.store import MessageStore, _entries, _type_and_body
from tests.unit.gateway.test_reset_logon import _stored


class SigkillError(Exception):
    """The process died here."""


class _Logged:
    """An order log and the reference state: every entry written, applied in order (what a
    restart must find)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.log = OrderLog(path, compact_bytes=1)
        self.log.load()
        self.reference = Recovered()

    def write(self, entries: Sequence[Kept]) -> None:
        self.log.write(entries)
        self.applied(entries)

    def applied(self, entries: Sequence[Kept]) -> None:
        for entry in msgspec.msgpack.decode(msgspec.msgpack.encode(entries)):  # as read back
            self.reference.apply(entry)

    def reloaded(self) -> Recovered:
        """What a restart reads now (a second handle on the file, as a new process's)."""
        other = OrderLog(self.path)
        state = other.load()
        other.close()
        return state


def _orders(first: int, count: int, value: str = "v") -> list[Kept]:
    return [(ORDER, ref, f"{value}{ref}") for ref in range(first, first + count)]


# == found: the order log's own crash and damage handling =======================================


def test_a_damaged_frame_length_before_the_last_frame_is_an_error_not_a_cut(
    tmp_path: Path,
) -> None:
    """``OrderLog.load``: a frame that fails its check and is not the last raises
    ``OrderLogError`` ("damaged before its last frame: named with the file and byte offset"),
    except when its length is over ``MAX_FRAME_BYTES``: then it is taken for a torn last frame,
    and ``load`` truncates the file there. One flipped high bit in the first frame's length
    (a disk error; no crash writes a length over the limit: a frame's header goes out before
    its body) silently drops every order after it -- and destroys them on disk.

    Fixed: a length over the limit is an ``OrderLogError`` naming the byte.
    """
    logged = _Logged(tmp_path / "orders.log")
    for k in range(3):
        logged.write(_orders(10 * k, 3))
    logged.log.close()
    data = bytearray(logged.path.read_bytes())
    data[3] |= 0x80  # the first frame's u32 length, high byte
    logged.path.write_bytes(bytes(data))
    with pytest.raises(OrderLogError, match="byte 0"):
        OrderLog(logged.path).load()
    assert logged.path.read_bytes() == bytes(data), "the log was cut on load"


def test_a_compaction_whose_reopen_fails_leaves_the_log_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``OrderLog._finish`` renames the side file over the log, closes the old descriptor,
    sets ``_fd`` to -1, then opens the new file. When that open fails (EMFILE: a gateway out
    of descriptors, a case the session code handles elsewhere) the ``OSError`` reaches
    ``_compaction_step``, which logs "the log is whole; again in 5 s" and goes on. But every
    write after raises ``OrderLogError`` ("load() the log before writing to it"), which is no
    ``OSError``: ``_write_log`` keeps no ``_unwritten`` for it, ``publish`` raises in its
    ``call_soon`` callback, and the poll task ends -- the gateway stops, every session
    dropped, for one descriptor missing for an instant. Expected: the write opens the log
    again (or fails with an ``OSError`` the gateway retries) and lands in the renamed file.

    Fixed: the compaction is done (the failed reopen logged), and a loaded log whose
    descriptor is gone opens it again at the next write.
    """
    logged = _Logged(tmp_path / "orders.log")
    logged.write(_orders(0, 5))
    logged.log.begin_compaction(iter(_orders(0, 5)))
    logged.write(_orders(5, 1))
    real_open, failed = os.open, list[bool]()

    def open_(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if Path(path) == logged.path and flags == os.O_WRONLY | os.O_APPEND and not failed:
            failed.append(True)
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", open_)
    logged.log.finish_compaction()  # done: the reopen's failure is logged, not raised
    assert failed
    logged.write(_orders(6, 1))  # the descriptor is back: the next pass's write
    logged.log.close()
    assert logged.reloaded() == logged.reference


def test_a_compaction_that_fails_at_its_finish_leaves_no_side_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``step_compaction`` drops a failed compaction (``_abandon_compaction``: the side file
    unlinked, the tail frames let go), but only while ``compacting``; ``_finish`` closes the
    side file (``_aside_fd = -1``) in a ``finally`` before the error reaches it. So a full
    disk (or EIO) at the finish -- writing the tail frames, or the fsync -- leaves the side
    file, as large as every live order, on the full disk, and the tail frames in memory, till
    a compaction begins again (5 s later, if the disk has room for one by then).

    Fixed: the side file stays open until the rename, so the caller abandons it.
    """
    logged = _Logged(tmp_path / "orders.log")
    logged.write(_orders(0, 50))
    logged.log.begin_compaction(iter(_orders(0, 50)))
    logged.write(_orders(50, 1))
    aside = logged.path.with_suffix(".compact")
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if aside.exists() and os.fstat(fd).st_ino == aside.stat().st_ino:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError):
        logged.log.finish_compaction()
    monkeypatch.undo()
    leftover = aside.stat().st_size if aside.exists() else 0
    kept = len(logged.log._tail)
    logged.log.close()
    assert logged.reloaded() == logged.reference  # (the log itself is whole)
    assert (leftover, kept) == (0, 0), (
        f"a failed compaction left its side file of {leftover} bytes and {kept} tail frames"
    )


def test_the_first_audit_line_after_a_torn_last_line_starts_a_line_of_its_own(
    tmp_path: Path,
) -> None:
    """``audit.py``: "A line is always one message". A kill inside ``AuditLog.flush``'s write
    (a fatal signal ends a long ``write`` between pages; a full disk ends it anywhere) leaves
    a last line without its newline. The restarted gateway's ``AuditLog`` appends after it as
    it is: its first message's line is glued onto the torn one, and a reader that goes by
    lines finds one garbled message where the journal of the new run's first message was.

    Fixed: an ``AuditLog`` opened on a torn last line ends it first.
    """
    path = tmp_path / "audit.log"
    before = AuditLog(path)
    before.record(1, True, "ALICE", b"8=FIX.4.4\x0135=D\x0111=a\x01")
    before.close()
    with path.open("ab") as f:
        f.write(b"2 in ALICE 8=FIX.4.4|35=D|11=b")  # the kill, mid-line
    after = AuditLog(path)
    after.record(3, False, "ALICE", b"8=FIX.4.4\x0135=8\x0111=c\x01")
    after.close()
    lines = path.read_bytes().split(b"\n")
    assert b"3 out ALICE 8=FIX.4.4|35=8|11=c|" in lines, f"the new run's first line: {lines}"


# == checked: what holds


@pytest.mark.parametrize(
    "point",
    [
        "side file fsynced, before the rename",
        "after the rename, before the reopen",
        "after the reopen",
    ],
)
def test_checked_a_crash_at_each_step_of_a_compactions_finish_replays_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """A compaction in steps, with appends between them -- one a write of several frames
    (``+``), another finishing an order the live entries had already written -- killed at
    each step of its finish: the restart reads the old log or the new one, and either
    replays to every write made."""
    monkeypatch.setattr(order_log_module, "MAX_FRAME_BYTES", 2 << 10)
    logged = _Logged(tmp_path / "orders.log")
    logged.write(_orders(0, 40))
    logged.log.begin_compaction(iter(_orders(0, 40)))
    assert not logged.log.step_compaction(10)
    logged.write(_orders(100, 60, "x" * 60))  # ~6 KB: several frames, with ``+``
    assert len(logged.log._tail) > 1
    assert not logged.log.step_compaction(10)
    logged.write([("X", 3), ("F", 3, "done"), ("X", 25)])  # 3 written aside already, 25 not
    real_replace, real_open = os.replace, os.open

    def replace(src: Any, dst: Any) -> None:
        if point.startswith("side file"):
            raise SigkillError(point)
        real_replace(src, dst)
        if point.startswith("after the rename"):
            raise SigkillError(point)

    def open_(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        fd = real_open(path, flags, *args, **kw)
        if point == "after the reopen" and Path(path) == logged.path:
            raise SigkillError(point)
        return fd

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "open", open_)
    with pytest.raises(SigkillError):
        logged.log.finish_compaction()
    monkeypatch.setattr(os, "replace", real_replace)
    monkeypatch.setattr(os, "open", real_open)
    back = logged.reloaded()
    assert back == logged.reference
    assert 3 not in back.orders and back.finished == {3: ["done"]} and 25 not in back.orders


def test_checked_a_write_of_several_frames_cut_during_a_compaction_is_dropped_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL inside a ``+`` write appended while a compaction is under way: the log (not
    renamed yet) ends in ``+`` frames with no last one; the restart drops the whole write and
    its first compaction, over a stale side file, replays the same."""
    monkeypatch.setattr(order_log_module, "MAX_FRAME_BYTES", 2 << 10)
    logged = _Logged(tmp_path / "orders.log")
    logged.write(_orders(0, 20))
    logged.log.begin_compaction(iter(_orders(0, 20)))
    assert not logged.log.step_compaction(5)
    real_write_all, frames = durable.write_all, list[int]()

    def write_all(fd: int, data: Any) -> None:
        if fd == logged.log._fd:
            frames.append(len(data))
            if len(frames) == 3:
                raise SigkillError("SIGKILL after two frames of a write")
        real_write_all(fd, data)

    monkeypatch.setattr(order_log_module, "write_all", write_all)
    with pytest.raises(SigkillError):
        logged.log.write(_orders(100, 60, "x" * 60))  # not applied to the reference
    monkeypatch.setattr(order_log_module, "write_all", real_write_all)
    assert logged.reloaded() == logged.reference
    restarted = OrderLog(logged.path, compact_bytes=1)
    state = restarted.load()
    restarted.begin_compaction(iter([(ORDER, ref, *v) for ref, v in state.orders.items()]))
    restarted.finish_compaction()
    restarted.close()
    assert logged.reloaded() == logged.reference


def test_checked_a_store_killed_between_its_messages_and_seqnums_serves_what_the_client_saw(
    tmp_path: Path,
) -> None:
    """``MessageStore.flush`` writes ``messages``, then ``seqnums``; SIGKILL between them
    (and a torn last message after them): reopened, the store resends every message a
    client can have seen, and hands no MsgSeqNum out twice."""
    store = MessageStore(tmp_path)
    for seq in range(1, 5):
        store.add_outbound(seq, _stored(seq, b"8", b"11=o%d\x01" % seq))
    store.flush()
    for seq in range(5, 7):
        store.add_outbound(seq, _stored(seq, b"8", b"11=o%d\x01" % seq))
    store.before_save = lambda: (_ for _ in ()).throw(SigkillError("before the seqnums"))
    with pytest.raises(SigkillError):
        store.flush()  # messages 5 and 6 in the file, seqnums still say next out 5
    os.close(store._fd)  # (the dead process's handles: nothing is pending in them)
    os.close(store._seq_fd)
    with (tmp_path / "messages").open("ab") as f:
        f.write(b"\x40\x00\x00\x00\x07\x00")  # a torn seventh, never on the wire
    again = MessageStore(tmp_path)
    assert again.next_out == 7
    assert [seq for seq, _ in again.outbound(1, 10)] == [1, 2, 3, 4, 5, 6]
    again.close()


# == the store's carried messages, at each crash point of a reset =================================


def _report(seq: int, cl: str) -> bytes:
    """A stored ExecutionReport frame (its header as the gateway frames it)."""
    return (
        b"8=FIX.4.4\x019=0\x0135=8\x0149=RINGEX\x0156=ALICE\x0134=%d\x01"
        b"52=20261126-00:00:00.000\x0111=%s\x0139=2\x0110=000\x01" % (seq, cl.encode())
    )


def _parked(directory: Path) -> MessageStore:
    store = MessageStore(directory)
    for seq in (1, 2):
        store.add_outbound(seq, _report(seq, f"seen{seq}"))
    store.park(3, _report(3, "away1"))
    store.park(4, _report(4, "away2"))
    store.flush()
    return store


def test_checked_a_reset_carrying_parked_messages_leaves_no_carried_file(tmp_path: Path) -> None:
    store = _parked(tmp_path)
    carried = store.unsent()
    store.reset()
    assert (tmp_path / "carried").exists()
    for k, (_, body) in enumerate(carried):  # the session sends them anew (headers its own)
        store.add_outbound(2 + k, b"8=FIX.4.4\x0135=8\x0134=%d\x0152=x\x01" % (2 + k) + body)
    store.carried_sent()
    store.flush()
    assert not (tmp_path / "carried").exists()
    store.close()
    again = MessageStore(tmp_path)
    assert again.unsent() == [] and again.next_out == 4
    again.close()


def test_a_reset_that_fails_after_its_copy_leaves_the_parked_messages_to_the_next_logon(
    tmp_path: Path,
) -> None:
    """The reread's fault: a reset whose last flush raised (the order log's write before the
    seqnums, a full disk) left the process going on with nothing parked and the messages in
    ``carried`` only; the next reset logon sent none of them, and a later reset wrote over
    the file. Now ``unsent`` (and ``reset``) park a ``carried`` file's messages first."""
    store = _parked(tmp_path)
    before = store.unsent()
    store.before_save = lambda: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full"))
    with pytest.raises(OSError):
        store.reset()
    store.before_save = None
    assert (tmp_path / "carried").exists()
    assert store.unsent() == before  # the next reset logon's
    store.reset()  # and a second reset carries them again
    assert [m for m in _entries_of(tmp_path / "carried")] == before
    store.close()


def test_a_damaged_carried_file_does_not_stop_the_store_from_opening(tmp_path: Path) -> None:
    """A host crash can leave ``carried`` zero-filled: the store opens, parking what is
    whole of it (here nothing) and dropping the file."""
    _parked(tmp_path).close()
    (tmp_path / "carried").write_bytes(b"\x00" * 64)
    again = MessageStore(tmp_path)
    assert not (tmp_path / "carried").exists()
    assert [t for t, _ in again.unsent()] == [b"8", b"8"]  # the parked ones, as they were
    again.close()


def test_checked_a_reset_killed_at_its_truncation_neither_loses_nor_doubles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed as ``reset`` truncates ``messages`` (its copy made): the store reopens with the
    parked messages where they were, and no second copy."""
    store = _parked(tmp_path)
    before = store.unsent()

    real_ftruncate = os.ftruncate

    def truncate(fd: int, size: int) -> None:
        if fd == store._fd:
            raise SigkillError("SIGKILL at the truncation")
        real_ftruncate(fd, size)

    monkeypatch.setattr(os, "ftruncate", truncate)
    with pytest.raises(SigkillError):
        store.reset()
    monkeypatch.undo()
    os.close(store._fd)
    os.close(store._seq_fd)
    again = MessageStore(tmp_path)
    assert again.unsent() == before and len(again.outbound(1, again.next_out)) == 4
    assert not (tmp_path / "carried").exists()
    again.close()


def _entries_of(path: Path) -> list[tuple[bytes, bytes]]:
    """A ``carried`` file's messages as ``unsent`` gives them."""
    return [_type_and_body(raw) for _, raw in _entries(path.read_bytes())]
