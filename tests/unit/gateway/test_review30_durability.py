"""A thirtieth hostile review, of the gateway's durability code as 5eff96a changed it: the
commands kept until answered (``sent_commands.py``), the store's ``before_save`` and the
frames ``order_logging.py`` writes, the audit journal's flushes, the counter ExecIDs' durable
blocks (``exec_ids.py``) and the FINISHED entries' OrigClOrdID flag (``order_memory.py``).

Rigs: ``harness.py`` (real TCP, real rings, an in-process router and matcher stepped by the
test when it pauses them) and ``test_gateway_restart.crash`` (what SIGKILL leaves). A crash
inside a pass of the poll loop is put at an order-log write (``kill_at``): from the frame it
names on, nothing more reaches the log, a store or the router ring.

The first tests each show a fault (fixed); the last ones
pin what was checked and holds.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import cast

import msgspec
import pytest

from procs.common.exec_ids import FILE_NAME, ExecIdBlocks, parse_mark, skip_at_promotion
from procs.common.records import Accepted, NewOrder, OrderDone, Replaced, Trade
from procs.common.types import DoneReason, OrdType, Side, StpMode, TimeInForce
from procs.gateway import orders as orders_module
from procs.gateway.fix import FixMessage
from procs.gateway.instruments import Instruments
from procs.gateway.order_log import HANDLED, Kept, OrderLog
from procs.gateway.order_state import Order
from procs.gateway.orders import OrderEntry
from procs.gateway.sent_commands import SWEEP_MIN, SentCommands
from procs.gateway.server import GatewayServer
from procs.gateway.session import Session
from tests.unit.gateway.harness import FUNDER, Harness, config, settled
from tests.unit.gateway.test_gateway import logged_on, order, status_request
from tests.unit.gateway.test_gateway_restart import back_on, crash, drain, run
from tests.unit.gateway.test_review29_restart import _logged_commands
from tests.unit.gateway.test_review_order_log_steps import SYM
from tests.unit.gateway.test_review_order_log_steps import _Connection as _Session


class SigkillError(Exception):
    """The gateway process died at this order-log write (SIGKILL)."""


def kill_at(
    gw: GatewayServer, frame: Callable[[Sequence[Kept]], bool], *, written: bool
) -> list[bool]:
    """Kill ``gw`` at the first order-log frame ``frame`` accepts, that frame ``written`` or
    not: later frames, stores' flushes and ring publishes reach nothing, and the write raises
    (ending the poll task before it commits a cursor). Returns a list that is [True] once."""
    dead: list[bool] = []
    log_write, ring_publish = gw.order_log.write, gw.producer.try_publish_slots

    def write(entries: Sequence[Kept]) -> None:
        if dead:
            raise SigkillError("the gateway is dead")
        if frame(entries):
            if written:
                log_write(entries)
            dead.append(True)
            for store in gw.stores.values():
                store.flush = lambda: None  # type: ignore[method-assign]
            raise SigkillError("SIGKILL at this order-log write")
        log_write(entries)

    def publish(images: bytes | bytearray | memoryview, count: int) -> bool:
        return not dead and ring_publish(images, count)

    gw.order_log.write = write  # type: ignore[method-assign]
    gw.producer.try_publish_slots = publish  # type: ignore[method-assign]
    return dead


def has_cursors(entries: Sequence[Kept]) -> bool:
    """A batch's frame: it holds the input rings' HANDLED entries."""
    return any(isinstance(e, tuple) and e[0] == HANDLED for e in entries)


def taker(account: int, qty: int, ref: int) -> NewOrder:
    """``account`` buys ``qty`` lots at up to 100.00, IOC, through the funder's ring."""
    return NewOrder(
        *(0, 0, FUNDER, 1, ref, account, 1, 0), side=Side.BUY, ord_type=OrdType.LIMIT,
        tif=TimeInForce.IOC, flags=0, stp=StpMode.NONE, price=10_000, qty=qty, stop_price=0,
        display_qty=0,
    )  # fmt: skip


def order_named(gw: GatewayServer, cl_ord_id: bytes) -> Order | None:
    return next((o for o in gw.entry.orders.values() if o.cl_ord_id == cl_ord_id), None)


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE (account 7) cancels on disconnect, BOB (8) does not; account 9 takes."""
    h = Harness(config(instance, tmp_path))
    h.add_user("ALICE", "secret", 7, cancel_on_disconnect=True)
    h.add_user("BOB", "secret", 8)
    for account in (7, 8, 9):
        h.fund(account)
    yield h
    h.close()


async def gone_with_an_order_in_flight(h: Harness, port: int) -> Order:
    """ALICE's buy 'a1' is in the router ring, unread (the pipeline paused), and she is gone:
    her session cancels on disconnect, so 'a1' is to be cancelled once it is acknowledged."""
    gw = h.gateway
    assert gw is not None
    alice = await logged_on(port)
    h.pause()
    await alice.send("D", *order("a1", "1", "1.00", "90.00"))
    await settled(lambda: order_named(gw, b"a1") is not None and not gw.entry.outgoing)
    await alice.aclose()
    a1 = order_named(gw, b"a1")
    assert a1 is not None
    await settled(lambda: a1.cancel_account != 0)
    assert a1.cancel_account and not a1.order_id
    return a1


# -- 1. a store's save wrote half a batch to the order log --------------------------------------


def test_a_fill_is_counted_once_after_a_crash_inside_a_batch_that_made_a_cancel(
    rig: Harness,
) -> None:
    """Found (review 30), fixed. A batch of events is logged in one frame with the input
    cursors, so that a restart either skips it whole or handles it again whole. The
    ``before_save`` hook broke that: a store saving inside the batch (``park`` flushes the
    store of a session that is away, for each report it parks) called
    ``_before_store_save``, which, when ``outgoing`` held a command not logged yet, wrote the
    order entry's changes so far -- the batch's first half -- without the cursors. An event
    makes a command when it acknowledges an order whose session left meanwhile and cancels
    on disconnect (``_accepted`` -> ``_cancel_record``). So: ALICE's 'a1' acknowledged, then
    a fill of BOB's 'ob' (BOB logged out: parked), then a crash before the batch's frame.
    The log had 'ob' filled 1.00; the restart read the batch again and filled it again:
    CumQty 2.00, Filled, while the book held 1.00 of it (and a compaction begun at that
    write would have logged the cursors too: the batch's second half skipped, unreported).
    Now a store's save inside a batch logs nothing (``_in_batch``; every client command was
    logged by the ``publish`` that begins the pass), and the commands the batch made go in
    its own frame."""

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        bob = await logged_on(port, "BOB")
        await bob.send("D", *order("ob", "2", "2.00", "100.00"))
        assert (await bob.expect("8")).get(150) == b"0"
        await bob.send("5")
        await bob.expect("5")
        await bob.aclose()
        await gone_with_an_order_in_flight(h, port)
        dead = kill_at(gw, has_cursors, written=False)
        h.step_pipeline()  # 'a1' acknowledged: its cancel is made
        h.funder.publish_batch([taker(9, 100, ref=901)])
        h.step_pipeline()  # BOB's 'ob' half filled: one batch of events for the gateway
        await settled(lambda: bool(dead))
        assert dead
        await crash(h)
        port = await h.start()
        gw = h.gateway
        assert gw is not None
        await settled(lambda: gw.in_flight() == 0)
        ob = order_named(gw, b"ob")
        bob = await back_on(port, "BOB", bob.seq)
        await drain(bob)
        await bob.send("H", *status_request("ob", "2"))
        status = await bob.expect("8")
        assert ob is not None and ob.cum == 100 and status.get(14) == b"1.00", (
            f"'ob' was filled 1.00 once; after the restart its CumQty is {status.get(14)!r} "
            f"(OrdStatus {status.get(39)!r}): the fill was counted twice"
        )

    run(rig, scenario)


def test_a_cancel_made_by_an_event_is_logged_in_its_batchs_frame(rig: Harness) -> None:
    """Found (review 30), fixed. The cancel that an acknowledgement makes (cancel on
    disconnect) left its request (an R entry) in the batch's frame, with the cursors, and
    its command for the next ``publish``'s frame. A crash in between: the restart skipped
    the batch, kept the request and had no command for it. ``_recover`` cancels the order
    again (a new request), and the first request waited for an answer for good:
    ``in_flight`` never came back to 0 (each stop waits its whole grace, and says requests
    went unanswered). Now the batch's frame holds the commands its events made."""

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        await gone_with_an_order_in_flight(h, port)
        dead = kill_at(gw, has_cursors, written=True)
        h.step_pipeline()  # 'a1' acknowledged, its cancel made; the batch's frame, then death
        await settled(lambda: bool(dead))
        assert dead
        await crash(h)
        await h.start()
        gw = h.gateway
        assert gw is not None
        await settled(lambda: gw.in_flight() == 0)
        placed = h.router.sequencer.accounts.open_orders(7)
        assert gw.in_flight() == 0 and placed == 0, (
            f"{gw.in_flight()} requests in flight after the restart "
            f"({sorted(gw.entry.requests)} waiting), {placed} of ALICE's orders on the book"
        )

    run(rig, scenario)


# -- 2. an order reached the log and the router before its message reached the audit journal --


def test_an_order_is_in_the_audit_journal_before_its_command_is_logged(
    harness: Harness,
) -> None:
    """Found (review 30), fixed. ``take_output`` flushes the audit journal before frames go
    to a socket, but an inbound order has no answer until its ack: ``publish`` logged its
    command and put it in the router ring while its NewOrderSingle line waited in memory
    until a later write (the ack's) or the 1 s timer. A crash in between (a slow or stopped
    router widens it) left an order the exchange executes, and reports after the restart,
    whose message the journal never had. Now ``_log_commands`` flushes the journal first:
    a command is logged after the line of the message it came from."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        gw._tasks[1].cancel()  # the timers: their flush is not what is checked
        h.pause()
        seen: list[bool] = []
        log_write = gw.order_log.write

        def write(entries: Sequence[Kept]) -> None:
            if any(isinstance(e, tuple) and e[0] == "C" for e in entries):
                seen.append(b"11=heard" in gw.audit.path.read_bytes())
            log_write(entries)

        gw.order_log.write = write  # type: ignore[method-assign]
        await alice.send("D", *order("heard", "2", "1.00", "100.00"))
        await settled(lambda: bool(gw.entry.orders) and not gw.entry.outgoing)
        assert len(_logged_commands(gw.order_log.path)) == 1
        assert seen == [True], (
            "the order's command was logged (and published) while the audit journal on disk "
            "lacked its NewOrderSingle"
        )

    run(harness, scenario)


# -- 3. a standby promoted with the ExecID file one reservation old ----------------------------


def test_a_standby_with_an_exec_ids_copy_one_reservation_old_repeats_no_exec_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found (review 30), fixed. ``exec-ids`` reaches the standby as the replica's shipper
    next looks at it (``procs/replica/files.py``): a primary that crossed into a new block
    after the last look sent ids above the standby's copy. The standby started at the copy's
    mark (its clock behind it: the premise of the blocks, a clock stepped back, or a
    standby's clock behind the primary's) and handed the same ids out again. Now a counter
    starts a block above the mark (``ExecIdBlocks.counter_start``): a copy one reservation
    old covers every id its primary used, as a shipper that looks more often than a block
    of 2**20 reports is used (seconds at any rate) keeps it. (Its first block after a start
    of its own is covered by the promotion's skip: the test below.)"""
    monkeypatch.setattr(orders_module, "ExecIdBlocks", partial(ExecIdBlocks, block=8))
    clock = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: clock)  # behind what the primary reserved
    instruments = Instruments([SYM])
    primary = OrderEntry(1, instruments, False, (), tmp_path / "primary")
    used = [primary._exec_id() for _ in range(8)]  # its first block, reserved and shipped:
    shipped = (tmp_path / "primary" / FILE_NAME).read_bytes()
    used += [primary._exec_id() for _ in range(3)]  # into the next block, then the failover
    (tmp_path / "standby").mkdir()
    (tmp_path / "standby" / FILE_NAME).write_bytes(shipped)
    standby = OrderEntry(1, instruments, False, (), tmp_path / "standby")
    again = [standby._exec_id() for _ in range(8)]
    assert not set(used) & set(again), f"ExecIDs sent twice: {sorted(set(used) & set(again))}"


def test_a_standby_promoted_within_its_primarys_first_block_after_a_restart_repeats_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found (review 30), fixed: a primary restarted with its clock behind the exec-ids
    mark, that dies in its first block before the replica ships that block's reservation,
    left a standby whose copy was the mark the primary started from: both computed the
    same counter start. Now the promotion skips the copy's mark ``PROMOTION_SKIP`` ahead
    (``skip_at_promotion``, in ``promotion.begin_epoch``)."""
    monkeypatch.setattr(orders_module, "ExecIdBlocks", partial(ExecIdBlocks, block=8))
    clock = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: clock)  # stepped back: behind the mark
    instruments = Instruments([SYM])
    first_run = OrderEntry(1, instruments, False, (), tmp_path / "primary")
    used = [first_run._exec_id() for _ in range(3)]
    shipped = (tmp_path / "primary" / FILE_NAME).read_bytes()  # the shipper's last look
    restarted = OrderEntry(1, instruments, False, (), tmp_path / "primary")
    used += [restarted._exec_id() for _ in range(3)]  # its first block, then the failover
    (tmp_path / "standby").mkdir()
    (tmp_path / "standby" / FILE_NAME).write_bytes(shipped)
    skip_at_promotion(tmp_path / "standby" / FILE_NAME)  # as promotion.begin_epoch does
    standby = OrderEntry(1, instruments, False, (), tmp_path / "standby")
    again = [standby._exec_id() for _ in range(3)]
    assert not set(used) & set(again), f"ExecIDs sent twice: {sorted(set(used) & set(again))}"


# -- 4. a full disk at a command's log write dropped its order's entry -----------------------


def test_an_order_whose_first_log_write_met_a_full_disk_is_known_after_a_crash(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found (review 30), fixed. ``_log_commands`` takes the order entry's changes
    (``take_changes`` empties ``touched``) and writes them with the command. When that
    write fails (ENOSPC: ``OrderLog.write`` cuts the torn frame and raises, and the gateway
    goes on), the command stays in ``outgoing`` and is logged again by the next pass once
    the disk has room (review 29 checked that much), but the order's entry was gone with
    the failed frame. A crash before its ack: the log had the command and not the order,
    the ring had the command (the router placed it), and the restarted gateway ignored its
    Accepted -- 'unknown order' to a status request, no ack, no fill reports, while the
    client's MsgSeqNum was counted. Now the entries of a frame that failed go first in
    the next one (``_unwritten``)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        h.pause()  # the ack comes only after the crash
        real_write, failed = os.write, list[int]()

        def full_once(fd: int, data: bytes) -> int:
            if fd == gw.order_log._fd and not failed:
                failed.append(len(data))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", full_once)
        await alice.send("D", *order("full", "2", "1.00", "100.00"))
        await settled(lambda: bool(failed) and not gw.entry.outgoing)
        assert failed and not gw.entry.outgoing  # logged again and published
        await crash(h)
        await alice.aclose()
        port = await h.start()
        await settled(lambda: h.router.sequencer.accounts.open_orders(7) == 1)
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("2", (7, 1), (16, 0))  # what was parked for her while away
        told = [m for m in await drain(alice) if m.get(35) == b"8" and m.get(11) == b"full"]
        acks = [m for m in told if m.get(150) == b"0"]
        await alice.send("H", *status_request("full", "2"))
        status = await alice.expect("8")
        assert status.get(39) == b"0" and acks, (
            f"'full' rests on the book; the restarted gateway answers OrdStatus "
            f"{status.get(39)!r} ({status.get(58)!r}), {len(acks)} ack(s) sent"
        )

    run(harness, scenario)


# -- checked: what holds --------------------------------------------------------------------------


def test_checked_sent_commands_hold_the_unanswered_and_at_most_twice_as_many() -> None:
    """With answers that never come (a router down), every command stays (a full restart
    may need each); with answers coming, sweeps keep the table under twice the unanswered
    ones or ``SWEEP_MIN``: it follows the orders in flight, not the traffic."""
    waiting: set[int] = set()
    sent = SentCommands(lambda ref: ref in waiting)
    command = NewOrder(
        *(0, 0, 1, 1, 0, 7, 1, 0), side=Side.BUY, ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC, flags=0, stp=StpMode.NONE, price=1, qty=1, stop_price=0,
        display_qty=0,
    )  # fmt: skip
    seq = 0
    for ref in range(1, 10 * SWEEP_MIN):  # answered as soon as published
        cmd = msgspec_replace(command, ref)
        sent.published(seq, 1, [cmd], {seq: b"x"})
        seq += 1
        assert len(sent._sent) <= 2 * SWEEP_MIN + 1
    assert sent.entries() == []
    for ref in range(10 * SWEEP_MIN, 13 * SWEEP_MIN):  # none answered: all kept
        waiting.add(ref)
        sent.published(seq, 1, [msgspec_replace(command, ref)], {seq: b"y"})
        seq += 1
    assert len(sent.entries()) == 3 * SWEEP_MIN


def msgspec_replace(command: NewOrder, ref: int) -> NewOrder:
    return msgspec.structs.replace(command, client_ref=ref)


def _fix(kind: bytes, **fields: bytes) -> FixMessage:
    tags = {"cl": 11, "orig": 41, "qty": 38, "price": 44}
    pairs = [(35, kind), (55, b"BTC-USD"), (54, b"1"), (60, b"20260101-00:00:00"), (40, b"2")]
    pairs += [(tags[k], v) for k, v in fields.items()]
    return FixMessage.of(b"", [t for t, _ in pairs], [v for _, v in pairs])


def test_checked_a_restored_entry_knows_each_finished_order_as_the_live_one_did(
    tmp_path: Path,
) -> None:
    """The FINISHED entry's flag: an order finished by a cancel of its own is known by the
    ClOrdID it had and the cancel's; one replaced and then filled or cancelled only by the
    ids it ended under. An order log written and read back gives a gateway that finds the
    same orders under the same (session, ClOrdID) keys."""
    entry = OrderEntry(3, Instruments([SYM]), False)
    session = cast(Session, _Session())
    order_id = seq = 0

    def place(cl: bytes) -> Order:
        nonlocal order_id, seq
        entry.on_message(session, _fix(b"D", cl=cl, qty=b"2", price=b"100"), 0)
        placed = entry.live[(5, cl)]
        order_id, seq = order_id + 1, seq + 1
        entry.process(Accepted(seq, 0, 3, 5, placed.ref, 7, 1, order_id, Side.BUY, 10_000, 200))
        return placed

    def ask(kind: bytes, orig: bytes, cl: bytes) -> int:
        entry.on_message(session, _fix(kind, orig=orig, cl=cl, qty=b"2", price=b"101"), 0)
        return max(entry.requests)

    def done(o: Order, ref: int, reason: DoneReason) -> None:
        nonlocal seq
        seq += 1
        entry.process(OrderDone(seq, 0, 3, 5, ref, 7, 1, o.order_id, reason, o.cum, o.leaves))

    cancelled = place(b"o1")
    done(cancelled, ask(b"F", b"o1", b"c1"), DoneReason.CANCELLED)  # known as o1 and c1
    filled = place(b"o2")
    seq += 1
    entry.process(Replaced(seq, 0, 3, 5, ask(b"G", b"o2", b"o2b"), 7, 1, filled.order_id,
                           10_100, 200))  # fmt: skip
    seq += 1
    entry.process(Trade(seq, 0, seq, 1, 10_100, 200, Side.SELL, filled.order_id, 7, 3, 0,
                        99, 9, 9, 0))  # fmt: skip
    done(filled, 0, DoneReason.FILLED)  # known as o2b only
    both = place(b"o3")
    seq += 1
    entry.process(Replaced(seq, 0, 3, 5, ask(b"G", b"o3", b"o3b"), 7, 1, both.order_id,
                           10_100, 200))  # fmt: skip
    done(both, ask(b"F", b"o3b", b"c3"), DoneReason.CANCELLED)  # known as o3b and c3
    log = OrderLog(tmp_path / "orders.log")
    log.load()
    log.write(entry.take_changes())
    log.close()
    reader = OrderLog(tmp_path / "orders.log")
    back = reader.load()
    reader.close()
    restored = OrderEntry(3, Instruments([SYM]), False)
    restored.restore(back.orders, back.requests, back.finished, back.mass_cancels)
    live = {key: o.ref for key, o in entry.finished.items()}
    assert {key: o.ref for key, o in restored.finished.items()} == live
    assert set(live) == {(5, b"o1"), (5, b"c1"), (5, b"o2b"), (5, b"o3b"), (5, b"c3")}


def test_checked_counter_exec_ids_at_a_block_boundary_stay_unique_over_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the clock frozen (stepped back to the first start), three runs each ending just
    before, at or just after a block's last id: no id twice, and the file's mark covers
    every id handed out before each is used (a crash at any point starts above it)."""
    monkeypatch.setattr(orders_module, "ExecIdBlocks", partial(ExecIdBlocks, block=4))
    clock = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: clock)
    path = tmp_path / FILE_NAME
    handed: list[int] = []
    for count in (3, 4, 5, 8):
        entry = OrderEntry(1, Instruments([SYM]), False, (), tmp_path)
        for _ in range(count):
            handed.append(int(entry._exec_id()))
            assert (parse_mark(path.read_bytes()) or 0) >= handed[-1]
    assert len(set(handed)) == len(handed)
