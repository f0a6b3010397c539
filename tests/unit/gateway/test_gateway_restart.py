"""A gateway restarted, cleanly or by a crash, keeps its FIX orders: fills of orders placed
before it are reported with their ClOrdIDs, cancels by OrigClOrdID work, the ClOrdIDs of
orders finished before it are still refused, commands the router ring never got are
published, and events handled before a crash are not handled twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from procs.common.records import NewOrder
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.gateway.server import GatewayServer
from shm.header import C_SEQUENCE, consumer_word
from shm.inspect import remove_instance
from tests.unit.gateway.harness import FUNDER, Client, Harness, close_all, config, settled
from tests.unit.gateway.test_gateway import cancel, logged_on, order, status_request


async def crash(h: Harness) -> None:
    """What SIGKILL leaves: no logout, no flush, no commit; connections just drop."""
    gw = h.gateway
    assert gw is not None
    for task in gw._tasks:
        task.cancel()
    if gw._server is not None:
        gw._server.close()
    for conn in list(gw.connections):  # a dead process sees no connection_lost
        conn.data_received = conn.connection_lost = lambda *_: None  # type: ignore[method-assign, assignment]
        if conn.transport is not None:
            conn.transport.abort()
    if h._task is not None:
        h._task.cancel()
    h.gateway, h._task = None, None
    await asyncio.sleep(0.05)
    gw.close()  # its files and ring lines: nothing is committed or flushed that was not


async def back_on(port: int, comp: str, seq: int) -> Client:
    c = Client(comp)
    c.seq = seq
    await c.connect(port)
    await c.logon()
    return c


def run(h: Harness, scenario: object) -> None:
    async def main() -> None:
        port = await h.start()
        try:
            await asyncio.wait_for(scenario(h, port), 20)  # type: ignore[operator]
        finally:
            await close_all()
            await h.stop()

    asyncio.run(main())


@pytest.mark.parametrize("how", ["clean", "crash", "clean, compacting", "crash, compacting"])
def test_orders_placed_before_a_restart_are_filled_reported_and_cancelled(
    harness: Harness, how: str
) -> None:
    async def scenario(h: Harness, port: int) -> None:
        if how.endswith("compacting"):  # a compaction in steps of 2 entries after each write
            assert h.gateway is not None
            h.gateway.order_log.compact_bytes, h.gateway.order_log.step_entries = 1, 2
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "2.00", "100.00"))
        await alice.send("D", *order("s2", "2", "1.00", "101.00"))
        assert [(await alice.expect("8")).get(150) for _ in range(2)] == [b"0", b"0"]
        await alice.send("D", *order("s3", "2", "1.00", "102.00"))
        await alice.expect("8")
        await alice.send("G", (41, "s3"), *order("s3b", "2", "3.00", "102.00"))
        assert (await alice.expect("8")).get(150) == b"5"
        if how.startswith("clean"):
            await alice.send("5")
            await alice.expect("5")
            await h.stop()
        else:
            await crash(h)
        await alice.aclose()
        port = await h.start()

        alice = await back_on(port, "ALICE", alice.seq)
        bob = await back_on(port, "BOB", 1)
        await bob.send("D", *order("b1", "1", "0.50", "100.00"))
        await bob.expect("8")
        assert (await bob.expect("8")).get(39) == b"2"
        fill = await alice.expect("8")
        assert (fill.get(11), fill.get(150), fill.get(39), fill.get(151), fill.get(14)) == (
            b"s1", b"F", b"1", b"1.50", b"0.50",
        )  # fmt: skip
        await alice.send("F", *cancel("s2", "c2", "2"))
        done = await alice.expect("8")
        assert (done.get(150), done.get(11), done.get(41)) == (b"4", b"c2", b"s2")
        await alice.send("H", *status_request("s3b", "2"))
        status = await alice.expect("8")
        assert (status.get(150), status.get(39), status.get(38)) == (b"I", b"0", b"3.00")
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))  # still live: a reuse
        assert b"duplicate ClOrdID" in (await alice.expect("8")).get(58)
        await alice.send("D", *order("s3", "2", "1.00", "100.00"))  # replaced before: too
        assert b"duplicate ClOrdID s3" in (await alice.expect("8")).get(58)

    run(harness, scenario)


def test_a_command_the_ring_never_got_is_published_after_a_crash(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        gw.producer.try_publish_slots = lambda images, count: False  # type: ignore[method-assign]
        await alice.send("D", *order("held", "2", "1.00", "100.00"))
        await settled(lambda: bool(gw.entry.outgoing and gw._unpublished))  # a loaded host: later
        assert gw.entry.outgoing and gw._unpublished  # logged, not in the ring
        await crash(h)
        await alice.aclose()
        port = await h.start()
        # the order goes in after the restart, without her
        await settled(lambda: bool(h.router.sequencer.accounts.open_orders(7)))
        assert h.router.sequencer.accounts.open_orders(7)
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("2", (7, 1), (16, 0))  # its ack was stored for her: resent
        while (msg := await alice.recv(1.0)) is not None:
            if msg.get(35) == b"8" and msg.get(11) == b"held":
                assert msg.get(150) == b"0"
                break
        else:
            raise AssertionError(f"no report of the held order in {alice.received}")

    run(harness, scenario)


def test_events_handled_before_a_crash_are_not_handled_again(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        for consumer in gw.inputs:  # the crash comes after the log's write, before the commit
            consumer.commit = lambda sequence=None: None  # type: ignore[method-assign]
        await alice.send("D", *order("once", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        handled = {c.ring.name: c.sequence for c in gw.inputs}
        committed = {
            c.ring.name: c.ring.words[consumer_word(c.index, C_SEQUENCE)] for c in gw.inputs
        }
        assert handled != committed
        await crash(h)
        await alice.aclose()
        port = await h.start()
        restarted: GatewayServer | None = h.gateway
        assert restarted is not None
        assert {c.ring.name: c.sequence for c in restarted.inputs} == handled
        alice = await back_on(port, "ALICE", alice.seq)
        assert await alice.recv(0.3) is None  # no second "New" for the same order

    run(harness, scenario)


def test_a_restart_cancels_orders_of_sessions_that_cancel_on_disconnect(
    instance: str, tmp_path: Path
) -> None:
    h = Harness(config(instance, tmp_path, cancel_on_disconnect=True))
    h.add_user("ALICE", "secret", 7)
    h.fund(7)

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("gone", "1", "1.00", "90.00"))
        await alice.expect("8")
        await crash(h)
        await alice.aclose()
        await h.start()
        await settled(lambda: not h.router.sequencer.accounts.open_orders(7))
        assert not h.router.sequencer.accounts.open_orders(7)

    try:
        run(h, scenario)
    finally:
        h.close()


@pytest.mark.parametrize("matcher_snapshot", [False, True])
def test_after_a_full_restart_a_fill_the_gateway_never_read_is_not_lost(
    instance: str, tmp_path: Path, matcher_snapshot: bool
) -> None:
    """The exchange restarts whole (new rings) while a fill of a resting order is still unread
    by the gateway. Without a matcher snapshot after it, the matcher's replay brings the fill
    again (and what the gateway had handled is skipped); with one, the replay starts after the
    fill, and the gateway makes the fill's events again from the journal (the matcher from
    an older snapshot or from nothing): either way the very fill report reaches the client."""
    cfg = config(instance, tmp_path)
    first = Harness(cfg)
    first.add_user("ALICE", "secret", 7)
    first.fund(7)
    first.fund(8)
    seq = 1

    async def place() -> None:
        nonlocal seq
        port = await first.start()
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "2.00", "100.00"))
        await alice.send("D", *order("s2", "2", "1.00", "101.00"))
        await alice.send("D", *order("s3", "2", "1.00", "102.00"))
        assert [(await alice.expect("8")).get(150) for _ in range(3)] == [b"0"] * 3
        seq = alice.seq
        await crash(first)
        await close_all()

    asyncio.run(place())
    taker = NewOrder(
        *(0, 0, FUNDER, 1, 99, 8, 1, 0), side=Side.BUY, ord_type=OrdType.LIMIT,
        tif=TimeInForce.IOC, flags=0, stp=StpMode.NONE, price=10_000, qty=50, stop_price=0,
        display_qty=0,
    )  # fmt: skip
    first.funder.publish_batch([taker])  # bob buys 0.50 while alice's gateway is down
    first.step_pipeline()
    if matcher_snapshot:
        first.matcher.save_snapshot()  # as a matcher's clean stop does
    first.close()
    remove_instance(instance)  # the rings go: the fill's events with them

    again = Harness(cfg)  # new rings; router and matcher recover from the journal

    async def check() -> None:
        port = await again.start()
        alice = Client("ALICE")
        alice.seq = seq
        await alice.connect(port)
        await alice.logon()
        # told while she was away: the fill report (replayed by the matcher, or made again)
        await alice.send("2", (7, 1), (16, 0))
        told = [m for m in await drain(alice) if m.get(35) == b"8" and m.get(43) == b"Y"]
        assert [(m.get(11), m.get(150), m.get(14)) for m in told][3:] == [
            (b"s1", b"F", b"0.50")
        ]  # after the three News of before the restart
        await alice.send("H", *status_request("s1", "2"))
        status = await alice.expect("8")
        assert (status.get(39), status.get(14), status.get(151), status.get(6)) == (
            b"1", b"0.50", b"1.50", b"100.000000",
        )  # fmt: skip
        await alice.send("F", *cancel("s2", "c2", "2"))
        done = await alice.expect("8")
        assert (done.get(150), done.get(11), done.get(41)) == (b"4", b"c2", b"s2")

    try:
        asyncio.run(run_harness(again, check))
    finally:
        again.close()


async def drain(client: Client) -> list[Any]:
    got = []
    while (msg := await client.recv(0.5)) is not None:
        got.append(msg)
    return got


async def run_harness(h: Harness, body: object) -> None:
    try:
        await asyncio.wait_for(body(), 20)  # type: ignore[operator]
    finally:
        await close_all()
        await h.stop()


def test_refs_stay_unique_when_the_clock_stepped_back_over_a_restart(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Client refs start at the wall clock; a restart after the clock was stepped back
    (NTP) must still hand out refs above every ref its order log holds."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("r1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        gw = h.gateway
        assert gw is not None
        used = max(gw.entry.orders)
        await alice.send("5")
        await alice.expect("5")
        await alice.aclose()
        await h.stop()
        monkeypatch.setattr(time, "time_ns", lambda: used - 10**12)
        await h.start()
        assert h.gateway is not None
        assert h.gateway.entry.next_ref() > used

    run(harness, scenario)
