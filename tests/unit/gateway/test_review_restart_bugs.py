"""Bugs a hostile review of the gateway's restart and recovery path found (order log,
ClOrdIDs, message stores, new rings). Each failed on the code as reviewed and passes since its
fix."""

from __future__ import annotations

import asyncio
from pathlib import Path

from procs.common.records import NewOrder, Record, Trade
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.gateway.order_log import ORDER, OrderLog
from shm.inspect import remove_instance
from tests.unit.gateway.harness import FUNDER, Harness, close_all, config, settled
from tests.unit.gateway.test_gateway import logged_on, order, status_request
from tests.unit.gateway.test_gateway_restart import back_on, crash, drain, run, run_harness


def taker(qty: int, ref: int = 99) -> NewOrder:
    """BOB (account 8) buys ``qty`` lots at up to 100.00, IOC, through the funder's ring."""
    return NewOrder(
        *(0, 0, FUNDER, 1, ref, 8, 1, 0), side=Side.BUY, ord_type=OrdType.LIMIT,
        tif=TimeInForce.IOC, flags=0, stp=StpMode.NONE, price=10_000, qty=qty, stop_price=0,
        display_qty=0,
    )  # fmt: skip


def test_a_full_restart_after_a_batch_cut_inside_one_commands_events_loses_no_fill(
    instance: str, tmp_path: Path
) -> None:
    """One taker fills two of ALICE's orders: the events of one command (one seq). The
    gateway's read takes the first fill only (a batch ends there: ``read(1024)`` ends where
    it ends) and logs that seq as handled; then the whole exchange restarts (new rings).
    The matcher replays the journal: every event of that seq is skipped as handled, so the
    second fill is never reported and the order stays New with nothing filled."""
    cfg = config(instance, tmp_path)
    first = Harness(cfg)
    first.add_user("ALICE", "secret", 7)
    first.fund(7)
    first.fund(8)
    seq = 1

    async def place() -> None:
        nonlocal seq
        port = await first.start()
        gw = first.gateway
        assert gw is not None
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        await alice.send("D", *order("s2", "2", "1.00", "100.00"))
        assert [(await alice.expect("8")).get(150) for _ in range(2)] == [b"0", b"0"]
        matcher_ring = gw.inputs[1]
        real = matcher_ring.read
        cut = False

        def read(max_batch: int = 256) -> list[Record]:
            nonlocal cut
            if cut:
                return []  # the process dies before its next read
            events = real(max_batch)
            trades = [i for i, e in enumerate(events) if isinstance(e, Trade)]
            if not trades:
                return events
            cut = True
            matcher_ring._next -= len(events) - trades[0] - 1
            return events[: trades[0] + 1]

        matcher_ring.read = read  # type: ignore[method-assign]
        first.funder.publish_batch([taker(200)])
        fill = await alice.expect("8")
        assert (fill.get(11), fill.get(150)) == (b"s1", b"F")
        await asyncio.sleep(0.05)  # the batch is logged as handled
        seq = alice.seq
        await crash(first)
        await close_all()

    asyncio.run(place())
    first.close()
    remove_instance(instance)
    again = Harness(cfg)

    async def check() -> None:
        port = await again.start()
        alice = await back_on(port, "ALICE", seq)
        await alice.send("2", (7, 1), (16, 0))
        told = [(m.get(11), m.get(150)) for m in await drain(alice) if m.get(35) == b"8"]
        assert (b"s2", b"F") in told, told
        gw = again.gateway
        assert gw is not None
        assert not [o.cl_ord_id for o in gw.entry.live.values()]  # both filled: none live

    try:
        asyncio.run(run_harness(again, check))
    finally:
        again.close()


def test_an_order_log_with_a_zero_filled_tail_loads(tmp_path: Path) -> None:
    """After a power loss a file's last blocks can read back as zeros (its size was written,
    its data was not). The order log must take it as a torn tail: cut it and keep what the
    complete frames hold, not fail the gateway's start."""
    path = tmp_path / "orders.log"
    log = OrderLog(path)
    log.load()
    log.write([(ORDER, 5, *range(15))])
    log.close()
    with path.open("ab") as f:
        f.write(bytes(4096))
    again = OrderLog(path)
    try:
        recovered = again.load()
    finally:
        again.close()
    assert list(recovered.orders) == [5]
    assert path.stat().st_size < 4096


def test_a_command_logged_but_not_published_is_not_lost_when_the_rings_are_new(
    instance: str, tmp_path: Path
) -> None:
    """ALICE's order is in the order log, not in the router ring (full), when the gateway
    dies; then the whole exchange restarts (new rings). ``_recover`` keeps only commands of
    the ring it logged them for, so the order is neither published nor refused: it stays
    'pending new' forever (its ClOrdID taken, ``in_flight`` never 0)."""
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
        gw.producer.try_publish_slots = lambda images, count: False  # type: ignore[method-assign]
        await alice.send("D", *order("held", "2", "1.00", "100.00"))
        await settled(lambda: bool(gw._unpublished))
        assert gw._unpublished
        seq = alice.seq
        await crash(first)
        await close_all()

    asyncio.run(place())
    first.close()
    remove_instance(instance)
    again = Harness(cfg)

    async def check() -> None:
        port = await again.start()
        gw = again.gateway
        assert gw is not None
        await settled(lambda: gw.in_flight() == 0, 2.0)
        alice = await back_on(port, "ALICE", seq)
        await alice.send("H", *status_request("held", "2"))
        status = await alice.expect("8")
        assert status.get(39) != b"A", "still pending new after the restart"
        assert gw.in_flight() == 0

    try:
        asyncio.run(run_harness(again, check))
    finally:
        again.close()


def test_a_status_request_of_an_order_filled_before_a_restart_says_filled(
    harness: Harness,
) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("f1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        h.funder.publish_batch([taker(100)])
        fill = await alice.expect("8")
        assert (fill.get(150), fill.get(39)) == (b"F", b"2")
        await alice.send("H", *status_request("f1", "2"))
        assert (await alice.expect("8")).get(39) == b"2"  # before the restart: filled
        await alice.send("5")
        await alice.expect("5")
        await h.stop()
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("H", *status_request("f1", "2"))
        status = await alice.expect("8")
        assert (status.get(39), status.get(14)) == (b"2", b"1.00"), status

    run(harness, scenario)
