"""A hostile review of the order log's compaction in steps (commit 5a2498b): the compacted
file, renamed over the log, must replay to what the log itself would, whatever happens
between the steps.

The first tests show what the review found wrong (each failed before its fix): a step that
fails (its side-file write, or the live entries' iterator, raises) left the compaction under
way without the entries it took, and the next step finished it and renamed the file over the
log without them; a short ``os.write`` to the side file left a torn frame inside it, which the
rename made a log that no longer loads (and a log write failing mid-frame did the same).
The rest pin down what was checked and holds: live entries are all
written before the frames appended since the start (so a stale value read after an X is
undone by it), the kinds whose replay is not plain "last write wins" (A: oldest write first,
F: the newest ``FINISHED_KEPT``, H: its part popped) come out the same, the side file is
fsynced before the rename, a crash or a close mid-way leaves the log whole, and the gateway's
own lazy entries (``OrderEntry.dump_lazily``) survive the order memory changing under them.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import cast

import msgspec
import pytest

from config.schema import SymbolConfig
from procs.common.records import Accepted, OrderDone, Trade
from procs.common.types import DoneReason, Side
from procs.gateway import order_log as order_log_module
from procs.gateway.fix import FixMessage
from procs.gateway.instruments import Instruments
from procs.gateway.order_log import (
    API_ORDER,
    FINISHED,
    GONE,
    HANDLED,
    ORDER,
    Entry,
    Kept,
    OrderLog,
    OrderLogError,
    Recovered,
)
from procs.gateway.orders import OrderEntry
from procs.gateway.session import Session

_HEADER = struct.Struct("<II")


class _Logged:
    """An order log and the reference state: every entry written, applied in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.log = OrderLog(path, compact_bytes=1)
        self.log.load()
        self.reference = Recovered()

    def write(self, entries: Sequence[Kept]) -> None:
        self.log.write(entries)
        for entry in msgspec.msgpack.decode(msgspec.msgpack.encode(entries)):  # as read back
            self.reference.apply(entry)

    def reloaded(self) -> Recovered:
        """What a restart reads now (a second handle on the file, as a new process's)."""
        other = OrderLog(self.path)
        state = other.load()
        other.close()
        return state


def _frames(data: bytes) -> list[list[list[object]]]:
    """The entries of each frame of a log file's bytes (all complete)."""
    frames, pos = [], 0
    while pos < len(data):
        length, _crc = _HEADER.unpack_from(data, pos)
        body = data[pos + _HEADER.size : pos + _HEADER.size + length]
        frames.append(msgspec.msgpack.decode(body, type=list[list[object]]))
        pos += _HEADER.size + length
    return frames


# -- found: a failed step ---------------------------------------------------------------------


def _raising_entries(entries: list[Entry], after: int) -> Iterator[Entry]:
    """``entries``, but the iterator raises after ``after`` of them (as a generator over a
    live dict does when the dict changes size): it is finished from then on."""
    for i, entry in enumerate(entries):
        if i == after:
            raise RuntimeError("dictionary changed size during iteration")
        yield entry


@pytest.mark.parametrize("how", ["the side file's write fails (ENOSPC)", "the iterator raises"])
def test_a_step_that_fails_does_not_let_a_later_step_rename_a_file_without_its_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Found: ``step_compaction`` takes its slice of the live entries, then writes it aside.
    When either raises, the compaction stays under way and the slice is lost: the next step
    goes on from after it (or, the iterator being finished, finishes at once) and renames a
    file without those orders over the log, which held them. In the gateway the step runs in
    ``_write_log`` after the log's own write succeeded, and a publish from a client's request
    is a ``call_soon`` callback, whose exception asyncio logs and goes on: the next write's
    step finishes the compaction. A restart then has lost those open orders (no fill
    reported, no cancel by ClOrdID). With the old ``compact`` a failure left the old log."""
    logged = _Logged(tmp_path / "orders.log")
    logged.write([(ORDER, ref, f"v{ref}") for ref in range(10)])
    live = [(ORDER, ref, *values) for ref, values in logged.reference.orders.items()]
    if how == "the iterator raises":
        logged.log.begin_compaction(_raising_entries(live, after=5))
        assert not logged.log.step_compaction(4)  # orders 0-3 written aside
        with pytest.raises(RuntimeError):
            logged.log.step_compaction(4)  # order 4 taken, then the iterator raises
    else:
        logged.log.begin_compaction(iter(live))
        real_write, armed = os.write, [True]

        def disk_full(fd: int, data: bytes) -> int:
            if armed[0]:
                armed[0] = False
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", disk_full)
        with pytest.raises(OSError, match="No space"):
            logged.log.step_compaction(4)  # orders 0-3 taken, not written
        monkeypatch.setattr(os, "write", real_write)
    # the gateway goes on: a write, a step, until no compaction is under way
    for ref in range(100, 110):
        logged.write([(ORDER, ref, "later")])
        if not logged.log.compacting or logged.log.step_compaction(4):
            break
    assert not logged.log.compacting
    logged.log.close()
    reloaded = logged.reloaded()
    missing = sorted(set(logged.reference.orders) - set(reloaded.orders))
    assert not missing, f"orders lost by the compaction: {missing}"
    assert reloaded == logged.reference


def test_a_short_write_to_the_side_file_does_not_leave_a_torn_frame_inside_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found (inherited from the old ``compact``, and ``write`` has it too): ``_write_aside``
    ignores what ``os.write`` returns. A write that stops short (the disk filled mid-frame)
    leaves a torn frame in the side file; the next frames are written after it, the file is
    renamed over the log, and the next start refuses the log (a frame that fails its check
    and is not the last): the gateway cannot start without someone cutting the file."""
    logged = _Logged(tmp_path / "orders.log")
    logged.write([(ORDER, ref, f"v{ref}") for ref in range(10)])
    live = [(ORDER, ref, *values) for ref, values in logged.reference.orders.items()]
    logged.log.begin_compaction(iter(live))
    real_write, armed = os.write, [True]

    def short(fd: int, data: bytes) -> int:
        if armed[0]:
            armed[0] = False
            return real_write(fd, data[: len(data) // 2])
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", short)
    logged.log.step_compaction(4)  # half of the frame of orders 0-3 reaches the file
    monkeypatch.setattr(os, "write", real_write)
    logged.write([(ORDER, 100, "later")])
    logged.log.finish_compaction()
    logged.log.close()
    try:
        reloaded = logged.reloaded()
    except OrderLogError as exc:
        pytest.fail(f"the compacted log no longer loads: {exc}")
    assert reloaded == logged.reference


def test_a_log_write_that_fails_part_way_leaves_no_torn_frame_before_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found with the one above: ``write`` to the log itself ignored a short write too, and
    one that fails after writing part of its frame (ENOSPC mid-frame) left the torn part
    with the next frames appended after it. The frame is now written whole or cut off: the
    caller sees the error, and what comes later still loads."""
    logged = _Logged(tmp_path / "orders.log")
    logged.write([(ORDER, 1, "one")])
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if len(data) > 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space"):
        logged.log.write([(ORDER, 2, "lost: never acknowledged")])
    monkeypatch.setattr(os, "write", real_write)
    logged.write([(ORDER, 3, "three")])
    logged.log.close()
    reloaded = logged.reloaded()
    assert reloaded == logged.reference
    assert sorted(reloaded.orders) == [1, 3]


# -- checked: what holds ---------------------------------------------------------------------


def test_live_entries_all_precede_the_frames_appended_since_the_start(tmp_path: Path) -> None:
    """A key changed, and one gone, after the start and before the lazy entries reach them:
    the side file holds the value read then (the newer one, and the gone one's stale value),
    every live frame before the frames appended since the start, byte for byte those the
    log got. So the X comes after the stale value and the replay drops the key."""
    logged = _Logged(tmp_path / "orders.log")
    memory = {ref: [f"v{ref}"] for ref in range(1, 6)}  # ref -> its value, held by reference
    logged.write([(ORDER, ref, *value) for ref, value in memory.items()])
    taken = list(memory.items())  # what ``dump_lazily`` keeps: the objects, read when taken
    logged.log.begin_compaction((ORDER, ref, *value) for ref, value in taken)
    start = logged.path.stat().st_size
    assert not logged.log.step_compaction(2)  # 1 and 2 written aside
    memory[4][0] = "v4b"
    logged.write([(ORDER, 4, "v4b")])
    del memory[5]
    logged.write([(GONE, 5)])
    logged.write([(ORDER, 6, "v6")])
    since = logged.path.read_bytes()[start:]
    assert logged.log.step_compaction(2) is False  # 3, 4 (its new value)
    assert logged.log.step_compaction(2) is True  # 5 (stale), then the frames since
    data = logged.path.read_bytes()
    assert data.endswith(since)
    live = [entry for frame in _frames(data[: len(data) - len(since)]) for entry in frame]
    assert live == [[ORDER, 1, "v1"], [ORDER, 2, "v2"], [ORDER, 3, "v3"], [ORDER, 4, "v4b"],
                    [ORDER, 5, "v5"]]  # fmt: skip
    assert logged.log.compacted_size == len(data) - len(since) == logged.log.size - len(since)
    logged.log.close()
    reloaded = logged.reloaded()
    assert reloaded == logged.reference
    assert reloaded.orders == {1: ["v1"], 2: ["v2"], 3: ["v3"], 4: ["v4b"], 6: ["v6"]}


def test_api_orders_keep_oldest_write_first_through_a_compaction_in_steps(
    tmp_path: Path,
) -> None:
    """A: replay moves a key to the end at each write (restored oldest first, the oldest
    finished ones dropped past ``keep_done``). Rewritten after the start, a key is last in
    the compacted file too, whichever its place in the live entries."""
    logged = _Logged(tmp_path / "orders.log")
    logged.write([(API_ORDER, ref, f"a{ref}") for ref in (1, 2, 3, 4)])
    live = [(API_ORDER, ref, *v) for ref, v in logged.reference.api_orders.items()]
    logged.log.begin_compaction(iter(live))
    assert not logged.log.step_compaction(1)
    logged.write([(API_ORDER, 1, "a1 filled")])  # already written aside: moves to the end
    logged.write([(API_ORDER, 3, "a3 done")])  # not yet reached: moves to the end as well
    logged.write([(GONE, 2)])
    logged.write([(API_ORDER, 5, "a5")])
    logged.log.finish_compaction()
    logged.log.close()
    reloaded = logged.reloaded()
    assert list(reloaded.api_orders) == list(logged.reference.api_orders) == [4, 1, 3, 5]
    assert reloaded == logged.reference


def test_finished_orders_keep_the_newest_through_a_compaction_in_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F: the newest ``FINISHED_KEPT`` (by last write) are kept. Finished orders written
    after the start push the oldest of the live ones out in the compacted file as in the
    log, and one finished again moves to the newest."""
    monkeypatch.setattr(order_log_module, "FINISHED_KEPT", 3)
    logged = _Logged(tmp_path / "orders.log")
    logged.write([(FINISHED, ref, f"f{ref}") for ref in (1, 2, 3, 4)])  # 1 is pushed out
    assert list(logged.reference.finished) == [2, 3, 4]
    live = [(FINISHED, ref, *v) for ref, v in logged.reference.finished.items()]
    logged.log.begin_compaction(iter(live))
    assert not logged.log.step_compaction(1)
    logged.write([(FINISHED, 5, "f5")])  # pushes 2 out
    logged.write([(FINISHED, 3, "f3 again")])  # 3 the newest
    logged.log.finish_compaction()
    logged.log.close()
    reloaded = logged.reloaded()
    assert list(reloaded.finished) == list(logged.reference.finished) == [4, 5, 3]
    assert reloaded == logged.reference


def test_a_handled_part_is_dropped_by_a_later_whole_handled_through_a_compaction(
    tmp_path: Path,
) -> None:
    """H: a write without a part pops the part an earlier one set."""
    logged = _Logged(tmp_path / "orders.log")
    logged.write([(HANDLED, "m1", 5, 2), (HANDLED, "m2", 7, None), (ORDER, 1, "v1")])
    logged.log.begin_compaction(iter([(HANDLED, "m1", 5, 2), (HANDLED, "m2", 7, None),
                                      (ORDER, 1, "v1")]))  # fmt: skip
    assert not logged.log.step_compaction(1)
    logged.write([(HANDLED, "m1", 6, None), (HANDLED, "m2", 8, 3)])
    logged.log.finish_compaction()
    logged.log.close()
    reloaded = logged.reloaded()
    assert reloaded.handled_part == {"m2": 3}
    assert reloaded == logged.reference


def test_the_side_file_is_fsynced_before_it_is_renamed_over_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = _Logged(tmp_path / "orders.log")
    logged.write([(ORDER, ref, "v") for ref in range(5)])
    aside = logged.path.with_suffix(".compact")
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync side file" if os.fstat(fd).st_ino == aside.stat().st_ino else "fsync")
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        calls.append(f"replace {Path(src).name} -> {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", cast(Callable[..., None], replace))
    logged.log.begin_compaction(iter([(ORDER, ref, "v") for ref in range(5)]))
    logged.write([(ORDER, 9, "w")])
    logged.log.finish_compaction()
    monkeypatch.undo()
    assert calls == ["fsync side file", "replace orders.compact -> orders.log"]
    logged.log.close()
    assert logged.reloaded() == logged.reference


def test_a_crash_mid_compaction_leaves_the_log_whole_and_its_side_file_is_written_over(
    tmp_path: Path,
) -> None:
    """The process dies with a compaction under way (its handle never closed): the next
    start reads the log, which holds everything; its first compaction truncates the stale
    side file and the result replays the same."""
    logged = _Logged(tmp_path / "orders.log")
    logged.write([(ORDER, ref, f"v{ref}") for ref in range(10)])
    logged.log.begin_compaction(iter([(ORDER, ref, f"v{ref}") for ref in range(10)]))
    assert not logged.log.step_compaction(4)
    logged.write([(GONE, 3), (ORDER, 11, "v11")])
    assert not logged.log.step_compaction(4)
    aside = logged.path.with_suffix(".compact")
    assert aside.stat().st_size > 0
    crashed = logged.log
    restarted = OrderLog(logged.path, compact_bytes=1)
    assert restarted.load() == logged.reference
    restarted.write([(ORDER, 12, "v12")])
    logged.reference.apply([ORDER, 12, "v12"])
    state = logged.reference
    restarted.begin_compaction(
        iter([(ORDER, ref, *v) for ref, v in state.orders.items()])  # as the gateway's
    )
    assert aside.stat().st_size == 0  # the stale one truncated
    restarted.finish_compaction()
    restarted.close()
    crashed.close()  # (the dead process's handles: its side file is gone already)
    assert logged.reloaded() == logged.reference
    assert not aside.exists()


def test_a_close_mid_compaction_drops_it_and_a_step_after_renames_nothing(tmp_path: Path) -> None:
    logged = _Logged(tmp_path / "orders.log")
    logged.write([(ORDER, ref, "v") for ref in range(5)])
    logged.log.begin_compaction(iter([(ORDER, ref, "v") for ref in range(5)]))
    assert not logged.log.step_compaction(2)
    before = logged.path.read_bytes()
    logged.log.close()
    assert not logged.log.compacting
    assert logged.log.step_compaction(2)  # nothing under way: nothing happens
    assert logged.path.read_bytes() == before
    assert not logged.path.with_suffix(".compact").exists()
    assert logged.reloaded() == logged.reference


# -- checked: the gateway's lazy entries -----------------------------------------------------

SYM = SymbolConfig(name="BTC-USD", id=1, price_decimals=2, qty_decimals=2, base="BTC")
GW, SESSION, ACCOUNT = 3, 5, 7


class _Connection:
    session_id = SESSION
    account = ACCOUNT
    user = None
    closed = False

    def send(self, msg_type: bytes, body: bytes, now_ns: int) -> None:
        pass


def _new_order(cl_ord_id: bytes) -> FixMessage:
    tags = [35, 11, 55, 54, 60, 40, 38, 44, 59]
    values = [b"D", cl_ord_id, b"BTC-USD", b"1", b"20260101-00:00:00", b"2", b"1", b"100", b"1"]
    return FixMessage.of(b"", tags, values)


def test_the_order_memory_changing_between_steps_gives_the_log_s_state(tmp_path: Path) -> None:
    """``OrderEntry.dump_lazily`` (what the gateway gives ``begin_compaction``) takes the
    keys when called and reads each order when taken. Orders filled, finished and placed
    between the steps, as the poll loop does between two log writes: no "dictionary changed
    size during iteration", and the compacted log replays to the reference."""
    entry = OrderEntry(GW, Instruments([SYM]), cancel_on_disconnect=False)
    conn = _Connection()
    entry.on_logon(cast(Session, conn), 1)
    logged = _Logged(tmp_path / "orders.log")

    def flush() -> None:  # the server's ``_write_log(self._changes() + ...)``
        logged.write(entry.take_changes())

    for i in range(8):
        entry.on_message(cast(Session, conn), _new_order(b"o%d" % i), 10 + i)
    flush()
    refs = list(entry.orders)
    for i, ref in enumerate(refs):
        entry.process(Accepted(i + 1, 0, GW, SESSION, ref, ACCOUNT, SYM.id, 100 + i,
                               Side.BUY, 10_000, 100))  # fmt: skip
    flush()
    logged.log.begin_compaction(entry.dump_lazily())
    assert not logged.log.step_compaction(2)  # orders 0 and 1 written aside
    entry.process(
        Trade(20, 0, 1, SYM.id, 10_000, 40, Side.SELL, 101, ACCOUNT, GW, 60, 900, 8, 9, 0)
    )  # order 1, already written aside: partly filled
    entry.process(
        OrderDone(21, 0, GW, SESSION, 0, ACCOUNT, SYM.id, 104, DoneReason.CANCELLED, 0, 100)
    )  # order 4, not reached yet: finished (F, X)
    entry.on_message(cast(Session, conn), _new_order(b"o9"), 30)
    flush()
    assert not logged.log.step_compaction(2)  # orders 2 and 3
    entry.process(
        OrderDone(22, 0, GW, SESSION, 0, ACCOUNT, SYM.id, 107, DoneReason.CANCELLED, 0, 100)
    )  # order 7, the last one: finished
    entry.process(
        Trade(23, 0, 2, SYM.id, 10_000, 100, Side.SELL, 105, ACCOUNT, GW, 0, 900, 8, 9, 0)
    )  # order 5, not reached yet: filled
    flush()
    while not logged.log.step_compaction(2):
        flush()
    assert refs[4] not in logged.reference.orders and refs[4] in logged.reference.finished
    logged.log.close()
    assert logged.reloaded() == logged.reference
