"""A thirty-ninth hostile review: the FIX gateway's durability across a crash at an arbitrary
point and a restart ("nothing acknowledged is ever lost, nothing executed twice, a restart
takes the same path as recovery").

A crash is put in process: a write, rename or open that raises ``SigkillError`` (no handler
of the gateway catches it, as none runs after SIGKILL), after which nothing more reaches a
file, a store or the router ring (``test_review30_durability.kill_at``); the files are then
opened again as a new process would (``test_gateway_restart.crash`` and a second ``OrderLog``
or ``MessageStore`` on the same path).

The review found seven faults, each with its test, all fixed since (a line in each test's
docstring says how); the ``test_checked_`` ones pin crash points that were tried and held.
"""

from __future__ import annotations

import asyncio
import errno
import os
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from procs.common import durable
from procs.common.records import NewOrder
from procs.gateway import order_log as order_log_module
from procs.gateway.audit import AuditLog
from procs.gateway.clordids import digest
from procs.gateway.order_log import (
    COMMAND,
    ORDER,
    POSITION,
    Kept,
    OrderLog,
    OrderLogError,
    Recovered,
)
from procs.gateway.server import GatewayServer
from procs.gateway.store import MessageStore
from tests.unit.gateway.harness import Client, Harness, close_all, settled, utc
from tests.unit.gateway.rest_rig import ALICE as API_ALICE
from tests.unit.gateway.rest_rig import LIMIT, client
from tests.unit.gateway.test_gateway import logged_on, order
from tests.unit.gateway.test_gateway_restart import back_on, crash, drain, run
from tests.unit.gateway.test_reset_logon import _stored, filled_while_away
from tests.unit.gateway.test_review18_rest_restart import first_exchange, rest_config, url_of
from tests.unit.gateway.test_review30_durability import has_cursors, kill_at, taker


class SigkillError(Exception):
    """The process died here."""


def _commands(entries: Sequence[Kept]) -> bool:
    """A frame that logs commands for the router ring (C entries)."""
    return any(isinstance(e, tuple) and e[0] == COMMAND for e in entries)


def _kill_stores(gw: GatewayServer) -> None:
    """From now on no store of ``gw`` writes anything (its process is dead)."""
    for store in gw.stores.values():
        store.flush = lambda: None  # type: ignore[method-assign]


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


# == found: a logon that resets the numbers, killed before what it carried is stored ============


@pytest.mark.parametrize(
    "point", ["inside reset, before the seqnums", "after reset, before a flush"]
)
def test_a_crash_at_a_reset_logon_keeps_the_fill_parked_while_away(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """``Session._finish_logon`` with 141=Y takes the parked messages into memory
    (``store.unsent()``), then ``MessageStore.reset`` truncates ``messages`` and saves
    ``seqnums`` (1, 1, none parked); the carried messages are stored again only at the next
    ``flush`` (the connection's write). A crash anywhere in between -- inside ``reset``
    after the truncation (``seqnums`` still name the parked seqs, ``messages`` is empty), or
    after it (``seqnums`` say nothing is parked) -- leaves no copy of them anywhere: the order
    log has the fill's batch as handled, so the restart does not make the report again. ALICE
    logs on again with a reset and never hears that 's1' filled. (The store's own promise: "a
    reset discards what the client has seen, never what it has not".)

    Fixed: ``reset(carry=True)`` copies the parked entries to ``carried`` first; the flush
    that stores them anew removes it, and a start that finds it parks them again.
    """

    async def scenario(h: Harness, port: int) -> None:
        await filled_while_away(port)  # ALICE's fill of 's1' is parked while she is away
        gw = h.gateway
        assert gw is not None
        store = gw.store("ALICE")
        assert [t for t, _ in store.unsent()] == [b"8"]
        dead: list[bool] = []
        real_reset, real_pwrite = store.reset, os.pwrite

        def pwrite(fd: int, data: bytes, offset: int) -> int:
            if fd == store._seq_fd and point.startswith("inside") and store.next_out == 1:
                dead.append(True)  # the truncation done, the seqnums not saved
                _kill_stores(gw)
                raise SigkillError("SIGKILL inside MessageStore.reset")
            return real_pwrite(fd, data, offset)

        def reset(carry: bool = False) -> None:
            real_reset(carry)
            dead.append(True)
            _kill_stores(gw)
            raise SigkillError("SIGKILL after MessageStore.reset")

        monkeypatch.setattr(os, "pwrite", pwrite)
        store.reset = reset  # type: ignore[method-assign]
        back = Client("ALICE")
        await back.connect(port)
        await back.send("A", (98, 0), (108, 30), (141, "Y"), (554, "secret"))
        await settled(lambda: bool(dead))
        assert dead
        await crash(h)
        monkeypatch.undo()
        await back.aclose()
        port = await h.start()
        again = Client("ALICE")
        await again.connect(port)
        await again.logon(reset=True)
        fills = [m for m in await drain(again) if m.get(35) == b"8" and m.get(11) == b"s1"]
        assert [m.get(39) for m in fills] == [b"2"], (
            "the fill of 's1' parked before the reset logon is gone: got MsgTypes "
            f"{[m.get(35) for m in again.received]}"
        )

    run(harness, scenario)


# == found: the ClOrdID digest is written before the order's command =============================


@pytest.mark.parametrize("written", [False, True], ids=["order log unwritten", "order log written"])
def test_an_order_resent_after_a_crash_between_the_clordid_and_order_logs_is_answered(
    harness: Harness, written: bool
) -> None:
    """``publish`` (and ``_before_store_save``) appends the pass's ClOrdID digests to
    ``clordids.log`` first, then writes the order log frame with the commands. A crash in
    between (a full disk at the order log's write, then a kill; or SIGKILL between the two
    ``write`` calls): the restarted gateway knows the ClOrdID as taken, but has no order, no
    command, and never saved the MsgSeqNum of the NewOrderSingle (``before_save`` logs the
    commands first). So it asks for the message again, as it should -- and the client's
    PossDup copy is dropped in silence as "received before" (``OrderEntry._duplicate``): no
    order on the book, no ExecutionReport, no reject. The client waits for its ack for good.

    Fixed: the digests are written after the order log's frame. Killed at that frame, the
    ClOrdID is in neither file and the resend is placed; killed after it, the restart takes
    the ClOrdID from the order the log holds (``_seen_from_orders``), publishes its command,
    and the resend is not placed a second time."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        dead = kill_at(gw, _commands, written=written)
        first_sent = utc()
        lost_seq = alice.seq
        await alice.send("D", *order("lost", "2", "1.00", "100.00"), sending_time=first_sent)
        await settled(lambda: bool(dead))
        assert dead
        hers = h.users.get("ALICE")
        assert hers is not None
        seen = gw.seen_log.path.read_bytes()
        assert digest(hers.session, b"lost").to_bytes(8, "little") not in seen  # after the log
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        ask = await alice.expect("2")
        assert int(ask.get(7)) == lost_seq  # the gateway asks for the NewOrderSingle again
        await alice.send(
            "D", *order("lost", "2", "1.00", "100.00"), seq=lost_seq, poss_dup=True,
            sending_time=utc(), orig_sending_time=first_sent,
        )  # fmt: skip
        await drain(alice)  # the ack may come before the resend (its command sent again)
        answers: list[Any] = [
            m for m in alice.received if m.get(35) == b"8" and m.get(11) == b"lost"
        ]
        if written and not answers:  # acked while she was away: parked, hers to fetch
            now = h.gateway
            assert now is not None
            store = now.store("ALICE")
            answers = [
                raw
                for _, raw in store.outbound(1, store.next_out)
                if b"\x0135=8\x01" in raw and b"\x0111=lost\x01" in raw
            ]
        placed = h.router.sequencer.accounts.open_orders(7)
        assert answers and placed == 1, (
            f"the resent order 'lost' got {len(answers)} ExecutionReports and {placed} "
            "orders on the book: it was dropped as a duplicate of a message never acted on"
        )

    run(harness, scenario)


# == found: a compaction's last step taken by the timers with an API amend not logged ==========


def test_an_amend_taken_by_a_timers_compaction_step_and_never_sent_does_not_wait_forever(
    instance: str, tmp_path: Path
) -> None:
    """``OrderLog.begin_compaction``: the live entries may be newer than when the compaction
    began, but "only as far as the log has it when the compaction finishes: a value newer
    than the log would give the renamed file a state the log never had (the gateway takes its
    changes just before each write)". ``_write_log`` steps the compaction right after a write,
    but ``_timers`` steps it too, once a second, between any two callbacks of the loop. A PUT
    /order handler's ``core.amend`` sets ``amend_ref`` on an open API order (an order the
    compaction listed at its start) and leaves its command for ``_publish_soon`` (next pass);
    the timer's step in the same pass writes the order's entry, amend_ref and all, and, as
    its last step, renames the file. A crash before the publish: the restarted gateway holds
    an amend that is in no log frame as a command and never reached the router. It waits for
    its answer for good: every later amend of the order is refused ("an amend ... waits for
    its answer") and ``in_flight`` never falls to 0 (a stop waits its whole grace).

    Fixed: the timers' step (``_idle_compaction_step``) finishes a compaction only when the
    log holds every change; a write's step finishes it otherwise.
    """
    cfg = rest_config(instance, tmp_path)
    h = first_exchange(cfg)

    async def body() -> None:
        await h.start()
        gw = h.gateway
        assert gw is not None and gw.api is not None
        alice = await client(url_of(h), "ALICE", "alice-pw")
        placed = await alice.call(
            "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="1.00",
            newClientOrderId="rests",
        )  # fmt: skip
        await alice.close()
        assert placed["status"] == "NEW"
        oid = int(placed["orderId"])
        core, first = gw.api.core, gw
        await settled(
            lambda: not first.entry.outgoing and not core._changed and not first._unpublished
        )
        live = core.client_ids[API_ALICE, "rests"]
        session = next(u.session for u in gw.users.users() if u.account == API_ALICE)
        # 1. a compaction begins at a log write (memory and log agree)
        gw.order_log.begin_compaction(gw._live_entries())
        # 2. PUT /order: the handler's part before it waits (its command goes next pass)
        core.amend(API_ALICE, session, live, live.price, live.qty + 100)
        # 3. the timers' step, in the same pass: the last one, it renamed the file (fixed:
        # it does not finish the compaction while a change waits to be logged)
        gw._idle_compaction_step()
        await crash(h)  # before ``_publish_soon``
        await h.start()
        gw = h.gateway
        assert gw is not None and gw.api is not None
        core = gw.api.core
        await settled(lambda: not core.amending(oid), 1.0)
        waiting = core.client_ids[API_ALICE, "rests"].amend_ref
        assert not core.amending(oid), (
            f"orderId={oid} waits for an amend (ref {waiting}) that no log frame holds as a "
            "command and the router never got"
        )

    try:
        run_rest(h, body)
    finally:
        h.close()


def run_rest(h: Harness, body: Callable[[], Awaitable[None]]) -> None:
    """``body`` (which starts the gateway, and may crash and restart it) within 20 s."""

    async def main() -> None:
        try:
            await asyncio.wait_for(body(), 20)
        finally:
            await close_all()
            await h.stop()

    asyncio.run(main())


def test_checked_an_idle_gateways_timer_still_finishes_a_compaction(
    instance: str, tmp_path: Path
) -> None:
    """The fix above holds a timer's finish back only while a change waits to be logged: a
    gateway with nothing new finishes its compaction from the timers, as before."""
    cfg = rest_config(instance, tmp_path)
    h = first_exchange(cfg)

    async def body() -> None:
        await h.start()
        gw = h.gateway
        assert gw is not None and gw.api is not None
        alice = await client(url_of(h), "ALICE", "alice-pw")
        placed = await alice.call(
            "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="1.00",
            newClientOrderId="rests",
        )  # fmt: skip
        await alice.close()
        assert placed["status"] == "NEW"
        core, first = gw.api.core, gw
        await settled(
            lambda: not first.entry.outgoing and not core._changed and not first._unpublished
        )
        assert gw._log_is_current()
        gw.order_log.begin_compaction(gw._live_entries())
        gw._idle_compaction_step()
        assert not gw.order_log.compacting

    try:
        run_rest(h, body)
    finally:
        h.close()


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

    Fixed: a loaded log whose descriptor is gone opens it again at the next write.
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
    with pytest.raises(OSError):  # what ``_compaction_step`` catches and logs
        logged.log.finish_compaction()
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


# == checked: what holds ==========================================================================


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


def test_checked_a_crash_after_a_batch_frame_that_finished_a_compaction_skips_the_batch(
    harness: Harness,
) -> None:
    """The batch's frame (its reports sent, the cursors in it) is the write whose compaction
    step renames the file; SIGKILL right after the rename, before the cursors' commit. The
    compacted file has the frame among its tail: the restart skips the batch, and the ack
    goes out once."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        gw.order_log.compact_bytes, gw.order_log.step_entries = 1, 1_000_000
        dead: list[bool] = []
        last: list[Sequence[Kept]] = [()]
        log_write, real_finish = gw.order_log.write, gw.order_log._finish

        def write(entries: Sequence[Kept]) -> None:
            log_write(entries)
            last[0] = entries

        def finish() -> None:
            real_finish()
            if has_cursors(last[0]) and any(
                isinstance(e, tuple) and e[0] == POSITION for e in last[0]
            ):
                dead.append(True)
                _kill_stores(gw)
                raise SigkillError("SIGKILL after the rename, before the commit")

        gw.order_log.write = write  # type: ignore[method-assign]
        gw.order_log._finish = finish  # type: ignore[method-assign]
        await alice.send("D", *order("once", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await settled(lambda: bool(dead))
        assert dead
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        again = [m for m in await drain(alice) if m.get(35) == b"8"]
        assert again == [], f"the ack went out again: {again}"
        assert h.router.sequencer.accounts.open_orders(7) == 1

    run(harness, scenario)


def test_checked_a_fill_reported_again_after_a_crash_before_its_batch_frame_keeps_its_exec_id(
    harness: Harness,
) -> None:
    """SIGKILL after a batch's reports went to the socket and before its frame: the restart
    reads the batch again and reports the fill again (parked: ALICE is not back yet), under
    a new MsgSeqNum -- with the same ExecID, so the client can tell it counted it already."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        await alice.send("D", *order("f1", "1", "1.00", "100.00"))  # a buy that rests
        assert (await alice.expect("8")).get(150) == b"0"
        dead = kill_at(gw, has_cursors, written=False)
        seller = msgspec.structs.replace(taker(8, 100, ref=902), side=2)
        assert isinstance(seller, NewOrder)
        h.funder.publish_batch([seller])
        fill = await alice.expect("8")
        assert fill.get(150) == b"F"
        await settled(lambda: bool(dead))
        assert dead
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        ask_from = int(fill.get(34)) + 1
        await alice.send("2", (7, ask_from), (16, 0))
        again = [m for m in await drain(alice) if m.get(35) == b"8" and m.get(11) == b"f1"]
        assert [(m.get(150), m.get(17)) for m in again] == [(b"F", fill.get(17))], (
            f"the fill of 'f1' before the crash had ExecID {fill.get(17)!r}; after it: "
            f"{[(m.get(150), m.get(17)) for m in again]}"
        )

    run(harness, scenario)


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
    store._file.close()  # (the dead process's handles: nothing is pending in them)
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
    store.reset(carry=True)
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


def test_checked_a_crash_before_a_resets_truncation_neither_loses_nor_doubles(
    tmp_path: Path,
) -> None:
    """Killed with ``carried`` written and ``messages`` not yet truncated: the next start
    finds the parked messages where they were, parks no second copy, and drops the file."""
    store = _parked(tmp_path)
    before = store.unsent()
    parked = store.outbound(store.parked_from, store.next_out)
    data = b"".join(struct.pack("<II", len(raw), seq) + raw for seq, raw in parked)
    (tmp_path / "carried").write_bytes(data)  # what reset writes before it truncates
    store.close()
    again = MessageStore(tmp_path)
    assert again.unsent() == before and again.next_out == 5
    assert len(again.outbound(1, again.next_out)) == 4
    assert not (tmp_path / "carried").exists()
    again.close()


def test_refs_stay_above_the_rest_apis_when_the_clock_stepped_back_over_a_restart(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``OrderMemory.restore`` kept new refs above FIX's logged ones only; a REST order's
    ref (restored apart, by the API's core) could be handed out again after a restart with
    the clock stepped back: a new command's answer taken for the old order's."""
    cfg = rest_config(instance, tmp_path)
    h = first_exchange(cfg)

    async def body() -> None:
        await h.start()
        gw = h.gateway
        assert gw is not None and gw.api is not None
        alice = await client(url_of(h), "ALICE", "alice-pw")
        placed = await alice.call(
            "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="1.00",
            newClientOrderId="rests",
        )  # fmt: skip
        await alice.close()
        assert placed["status"] == "NEW"
        used = gw.api.core.client_ids[API_ALICE, "rests"].placed
        assert used and not gw.entry.orders  # no FIX order: only the API's holds a ref
        await crash(h)
        monkeypatch.setattr(time, "time_ns", lambda: used - 10**12)  # stepped back
        await h.start()
        assert h.gateway is not None
        assert h.gateway.entry.next_ref() > used

    try:
        run_rest(h, body)
    finally:
        h.close()
