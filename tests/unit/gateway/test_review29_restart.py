"""A twenty-ninth hostile review of the gateway's crash-only restart: the order log (its
compaction in steps), ``restart.py``/``recovery.py``, the session stores, the ClOrdID log,
the audit journal and ``server.py``'s publish/log ordering. The sessions' side (stores,
resends, audit, ExecIDs) is in ``test_review29_restart_sessions.py``.

Rigs: ``harness.py`` (real TCP, real rings, in-process router and matcher),
``test_gateway_restart.crash`` (what SIGKILL leaves), a full restart being
``remove_instance`` and a new ``Harness`` over the same config (new rings; the router and
matcher recover from the journal). Fault injection monkeypatches ``os.write``/``os.pwrite``.

The first tests each show a bug and fail on the code as reviewed; the last ones pin down
what was checked and holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from array import array
from pathlib import Path

import pytest

from procs.gateway.clordids import SeenLog
from procs.gateway.order_log import OrderLog
from shm.inspect import remove_instance
from tests.unit.gateway.harness import Harness, close_all, config, settled, utc
from tests.unit.gateway.test_gateway import logged_on, order, status_request
from tests.unit.gateway.test_gateway_restart import back_on, crash, drain, run, run_harness
from tests.unit.gateway.test_review_restart_bugs import taker


def _logged_commands(path: Path) -> dict[int, tuple[int, bytes]]:
    probe = OrderLog(path)
    try:
        return probe.load().commands
    finally:
        probe.close()


# -- 1. a compaction forgot commands the old router ring still held unread -----------------


def test_a_compaction_keeps_the_commands_a_full_restart_must_send_again(
    instance: str, tmp_path: Path
) -> None:
    """Found (review 29), fixed. ``_live_entries`` wrote a COMMAND entry only for
    ``_unpublished``: commands logged but not in the router ring yet. A full restart (new
    rings) needs more: ``_recover`` sends again every command logged for the old ring that
    is still unanswered and not in the journal (``_lost_commands``), since one the old ring
    held *unread* went with it. Without a compaction the log still has those C entries
    (nothing removes one); a compaction begun after their publish dropped them. So: an order
    published, not yet read by the router (a busy router ring: when compactions happen), a
    compaction, then a whole-exchange crash: the order was never sent again nor refused, and
    stayed pending new for good (its ClOrdID taken, ``in_flight`` never 0). Now the gateway
    keeps the published commands until their answer comes (``SentCommands``, restored from
    the log at a start too) and a compaction writes the C entries of those still
    unanswered: after the full restart 'held' is sent again and answered."""
    cfg = config(instance, tmp_path)
    first = Harness(cfg)
    first.add_user("ALICE", "secret", 7)
    first.fund(7)
    seq = 1

    async def place() -> None:
        nonlocal seq
        port = await first.start()
        gw = first.gateway
        assert gw is not None
        alice = await logged_on(port)
        first.pause()  # the router reads nothing more: what is published waits in the ring
        await alice.send("D", *order("held", "2", "1.00", "100.00"))
        await settled(lambda: bool(gw.entry.orders) and not gw._unpublished)
        held_ref = next(iter(gw.entry.orders))
        logged = _logged_commands(gw.order_log.path)
        assert len(logged) == 1  # the command of "held": published, unread
        # the log is due for a compaction; the next write begins it, the one after finishes
        gw.order_log.compact_bytes, gw.order_log.step_entries = 1, 10_000
        await alice.send("D", *order("later1", "2", "1.00", "99.00"))
        await settled(lambda: gw.order_log.compacting)
        await alice.send("D", *order("later2", "2", "1.00", "98.00"))
        await settled(
            lambda: (
                len(gw.entry.orders) == 3 and not gw.order_log.compacting and not gw._unpublished
            )
        )
        assert gw.order_log.compacted_size > 0  # the compaction ran to its rename
        assert gw.entry.unanswered(held_ref)
        seq = alice.seq
        await crash(first)
        await close_all()

    asyncio.run(place())
    first.close()
    remove_instance(instance)  # the whole exchange restarts: new rings, unread commands gone
    again = Harness(cfg)

    async def check() -> None:
        port = await again.start()
        gw = again.gateway
        assert gw is not None
        await settled(lambda: gw.in_flight() == 0, 2.0)
        alice = await back_on(port, "ALICE", seq)
        await alice.send("H", *status_request("held", "2"))
        status = await alice.expect("8")
        placed = again.router.sequencer.accounts.open_orders(7)
        assert status.get(39) != b"A" and gw.in_flight() == 0, (
            f"'held' is still pending new after the full restart ({placed} of 3 orders "
            f"placed, {gw.in_flight()} requests in flight): its command was dropped by the "
            "compaction"
        )

    try:
        asyncio.run(run_harness(again, check))
    finally:
        again.close()


# -- 5. a compaction step that fails stops the gateway, though its log write went through ----


def test_a_failed_compaction_step_does_not_stop_the_gateway(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``OrderLog.step_compaction`` drops the compaction when its side file's write fails
    (the log alone still holds everything: "a later step must not rename a file without
    it"), and raises. ``GatewayServer._write_log`` (server.py:188-194) calls it right after
    the log's own write succeeded, and lets the error out: from ``pump`` it ends the poll
    task (``run`` then shuts the gateway down: no report is read any more), from
    ``publish`` it escapes after the commands were logged and before they are published.
    A disk with room for the log's small appends and not for the compacted copy (ENOSPC on
    ``orders.compact``) so takes the gateway down, and after each restart the next
    compaction does it again: a crash loop over a file the gateway does not need. Fix:
    catch ``OSError`` from the step in ``_write_log`` (log it; the compaction is dropped and
    is begun again later), as the log's own state allows."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        gw.order_log.compact_bytes, gw.order_log.step_entries = 1, 1
        real_write = os.write

        def side_file_full(fd: int, data: bytes) -> int:
            if fd == gw.order_log._aside_fd:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", side_file_full)
        acked = []
        for i in range(4):
            await alice.send("D", *order(f"o{i}", "2", "1.00", f"{100 + i}.00"))
            msg = await alice.recv(0.5)
            acked.append(msg.get(150) if msg is not None else None)
        poll = gw._tasks[0]
        ended = poll.exception() if poll.done() else None
        assert acked == [b"0"] * 4, (
            f"acks {acked}; the poll task ended with {ended!r}: a compaction the disk had no "
            "room for stopped the gateway"
        )

    run(harness, scenario)


# -- 6. the ClOrdID log ignores a short write -----------------------------------------------


def test_a_short_write_to_the_clordid_log_does_not_garble_the_digests_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``SeenLog.append`` (clordids.py:117-118; ``rewrite`` too, :125) ignores what
    ``os.write`` returns -- the bug the order log had and fixed (``_write_all``,
    ``test_review_order_log_steps``). A write that stops short (the disk filling up
    mid-batch) leaves a partial digest; the next batch is appended after it, every digest
    from there on is read back shifted by the missing bytes, and only a length that is not a
    multiple of 8 is noticed (and then only the last partial one is cut). After the restart
    the ClOrdIDs of every order placed since are forgotten: a client reusing one has it
    accepted (``OrderEntry._duplicate``). ``publish`` calls ``keep`` before each command
    batch. Fix: write whole (loop over short writes) or cut the file back to its last whole
    digest and raise, as ``OrderLog.write`` does."""
    path = tmp_path / "clordids.log"
    seen_log = SeenLog(path)
    seen_log.load()
    seen_log.append(array("Q", [1, 2, 3]))
    real_write, armed = os.write, [True]

    def short(fd: int, data: bytes) -> int:
        if armed[0]:
            armed[0] = False
            return real_write(fd, bytes(data)[: len(data) // 2])
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", short)
    with contextlib.suppress(OSError):  # a write that says it failed is as good: it is known
        seen_log.append(array("Q", [10, 11, 12]))  # 12 of its 24 bytes reach the file
    seen_log.append(array("Q", [20, 21]))  # the disk has room again
    seen_log.close()
    monkeypatch.setattr(os, "write", real_write)
    again = SeenLog(path)
    back = set(again.load())
    again.close()
    assert {1, 2, 3, 20, 21} <= back, f"read back after the restart: {sorted(back)}"


# -- 7. a restarted gateway knew a finished order by a ClOrdID the live one had forgotten --


def test_a_replaced_then_filled_order_answers_the_same_before_and_after_a_restart(
    harness: Harness,
) -> None:
    """Found (review 29), fixed. Live, a finished order is known (``OrderEntry.finished``)
    by the ClOrdID it ended under, plus the one before a cancel that finished it (``_done``
    renames, ``_finish`` twice). ``OrderMemory.restore`` added its ``orig_cl_ord_id`` as a
    key for *every* finished order: for one replaced s3 -> s3b and then filled (or cancelled
    on disconnect, expired), the restarted gateway also knew it as s3, which the live one
    never did (``_replaced`` moves the key), and a cancel naming s3 was refused "unknown
    order" (CxlRejReason 1) before a restart and "too late: finished" (CxlRejReason 0) after
    it. Now the FINISHED entry says whether the order is known by its OrigClOrdID too, and
    ``restore`` keys it so: the restarted gateway answers as the live one did."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("s3", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send("G", (41, "s3"), *order("s3b", "2", "2.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"5"
        h.funder.publish_batch([taker(200)])
        assert (await alice.expect("8")).get(39) == b"2"  # s3b filled

        async def cancel_s3(cl: str) -> tuple[bytes, bytes]:
            await alice.send("F", (41, "s3"), (11, cl), (55, "BTC-USD"), (54, "2"), (60, utc()))
            reject = await alice.expect("9")
            return reject.get(102), reject.get(58)

        before = await cancel_s3("c1")
        await alice.send("5")
        await alice.expect("5")
        await h.stop()
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        after = await cancel_s3("c2")
        assert after == before, f"before the restart {before}, after it {after}"

    run(harness, scenario)


# -- 8. a second full restart sends a lost command twice --------------------------------------


def test_a_lost_command_is_sent_once_after_a_second_full_restart(
    instance: str, tmp_path: Path
) -> None:
    """``_recover`` (restart.py:92-94) takes as ``stale`` the images of *every* COMMAND
    entry logged for a ring that is not the current one, and ``_lost_commands`` sends again
    each one that is unanswered and not in the journal. A command sent again after a full
    restart is logged anew, under the new ring's seq, and its entry for the older ring stays
    (C entries are keyed by seq; nothing removes one). Should the exchange restart whole a
    second time before the router read it (the router not up yet, or stuck in its replay),
    ``stale`` holds the same command twice, both copies pass the checks, and both are
    published. For a NewOrder the router refuses the second as a duplicate client ref; that
    refusal comes on the reply ring, which ``pump`` reads before the matchers' ring, before
    the Accepted: ``_rejected`` forgets the order and reports it Rejected (150=8) to the
    client while it rests on the book (its fills will go unreported). A cancel or mass cancel
    is executed twice (the router dedupes only a NewOrder's ref). Fix: send each client
    ref once (dedupe ``stale`` by ``client_ref``, newest entry), or drop the older ring's
    C entries once a command is logged for the new one."""
    cfg = config(instance, tmp_path)
    first = Harness(cfg)
    first.add_user("ALICE", "secret", 7)
    first.fund(7)
    seq = 1

    async def place() -> None:
        nonlocal seq
        port = await first.start()
        gw = first.gateway
        assert gw is not None
        alice = await logged_on(port)
        await alice.send("D", *order("before", "2", "1.00", "101.00"))  # ring A's seq 0
        assert (await alice.expect("8")).get(150) == b"0"
        gw.producer.try_publish_slots = lambda images, count: False  # type: ignore[method-assign]
        await alice.send("D", *order("held", "2", "1.00", "100.00"))  # seq 1, not published
        await settled(lambda: bool(gw._unpublished))
        seq = alice.seq
        await crash(first)
        await close_all()

    asyncio.run(place())
    first.close()
    remove_instance(instance)
    second = Harness(cfg)  # the first full restart: the router does not read the new ring

    async def send_again() -> None:
        await second.start()
        second.pause()
        gw = second.gateway
        assert gw is not None
        await settled(lambda: not gw.entry.outgoing and not gw._unpublished)
        assert not gw.entry.outgoing  # "held" sent again, into the new ring, unread
        await crash(second)

    asyncio.run(send_again())
    second.close()
    remove_instance(instance)
    again = Harness(cfg)  # the second full restart

    async def check() -> None:
        port = await again.start()
        gw = again.gateway
        assert gw is not None
        await settled(lambda: gw.in_flight() == 0, 2.0)
        alice = await back_on(port, "ALICE", seq)
        told = [m for m in await drain(alice) if m.get(35) == b"8" and m.get(11) == b"held"]
        placed = again.router.sequencer.accounts.open_orders(7)
        await alice.send("H", *status_request("held", "2"))
        status = await alice.expect("8")
        assert placed == 2 and status.get(39) == b"0", (
            f"{placed} order(s) on the book; 'held' now has OrdStatus {status.get(39)!r} "
            f"({status.get(58)!r}); reports of it: {[(m.get(150), m.get(58)) for m in told]}"
        )

    try:
        asyncio.run(run_harness(again, check))
    finally:
        again.close()


# -- checked: what holds ------------------------------------------------------------------------


def test_checked_a_command_the_ring_took_before_a_crash_is_not_published_again(
    harness: Harness,
) -> None:
    """Crash after the ring publish and before the router read it (same rings): the log
    has its C entry, the ring's producer sequence is past it, so ``_recover`` does not
    publish it again (restart.py:83-90); the router, running again, places it once and the
    client's ack comes once (stored for her: she was away)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        h.pause()
        await alice.send("D", *order("once", "2", "1.00", "100.00"))
        await settled(lambda: bool(gw.entry.orders) and not gw._unpublished)
        assert not gw.entry.outgoing and len(_logged_commands(gw.order_log.path)) == 1
        await crash(h)
        await alice.aclose()
        port = await h.start()
        restarted = h.gateway
        assert restarted is not None and not restarted.entry.outgoing
        await settled(lambda: restarted.in_flight() == 0)
        assert h.router.sequencer.accounts.open_orders(7) == 1
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("2", (7, 1), (16, 0))
        acks = [m for m in await drain(alice) if m.get(35) == b"8" and m.get(150) == b"0"]
        assert [m.get(11) for m in acks] == [b"once"]

    run(harness, scenario)


def test_checked_a_full_disk_at_the_log_write_publishes_nothing_unlogged(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC at the order log's write of a command (``publish`` -> ``_log_commands``): the
    torn frame is cut (order_log.py ``write``), ``_logged_to`` does not move and the command
    stays in ``outgoing``, so nothing reaches the router ring unlogged; once the disk has
    room the next pass logs it and publishes it, once."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        real_write, failed = os.write, list[int]()

        def full_once(fd: int, data: bytes) -> int:
            if fd == gw.order_log._fd and not failed:
                failed.append(len(data))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        before = gw.order_log.path.stat().st_size
        published: list[int] = []
        real_publish = gw.producer.try_publish_slots

        def watched(images: bytes, count: int) -> bool:
            assert len(_logged_commands(gw.order_log.path)) >= len(published) + count
            published.append(count)
            return real_publish(images, count)

        gw.producer.try_publish_slots = watched  # type: ignore[method-assign, assignment]
        monkeypatch.setattr(os, "write", full_once)
        await alice.send("D", *order("full", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        assert failed and published == [1]
        assert gw.order_log.path.stat().st_size > before
        assert h.router.sequencer.accounts.open_orders(7) == 1

    run(harness, scenario)
