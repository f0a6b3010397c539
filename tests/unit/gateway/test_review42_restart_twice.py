"""Review 42 (hostile): a full restart (new rings), then a plain one (same rings) before the
gateway has logged a position in every ring again.

``_recover`` takes the new-rings path when a ring the order log has a position (P entry) in
is not the ring of that name now (``rings_replaced``). Positions are logged for the rings
that move: an input ring a batch read from, the router ring when commands are logged. After
a full restart a ring that has not moved since (the reply ring, moved only by a reject or a
mass cancel's verdict; the router ring, until gw1 publishes) keeps the old ring's position,
so the next plain restart over the same rings is taken for a full one again:
``_lost_commands`` runs again over the commands logged for the ring before the full restart,
and the matchers' rings go through ``_after_new_rings`` (not ``_skip_handled``), although
they resume at the committed cursors, not at a replay mark.

Found, both fixed (their tests failed before):

- a command the full restart sent again, still unread in the router ring when gw1 dies,
  is sent a second time: the router refuses the copy (duplicate client order id), gw1
  reads that refusal before the matcher's ack and reports the order Rejected, while it
  rests on the book.
- after a read that ended inside a command's events, ``events_after(events, seq, part)``
  drops ``part`` more of that command's events (it assumes the ring starts at the seq's
  first event): a fill never reported, its order open in the gateway for good.

The fixes: a command logged under the ring now is not sent again for its entry of the
ring before (``_recover``); a matcher's ring is taken for new only when the log's position
in it is another ring's, or it has none (``GatewayServer._replaced``): the others are read
from their committed cursors, past what the log says was handled (``_skip_handled``).

Holds: with every position current the plain restart is plain (same scenarios); a crash in
the full restart's catch-up (logged, not committed) makes nothing a third time nor loses a
fill; fills made at gw2 while gw1 restarts (taken for new rings, no cut read) reach both
sides once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.edges import GatewayConfig
from procs.gateway import server as server_module
from procs.gateway.server import GatewayServer
from shm.inspect import remove_instance
from tests.unit.gateway.harness import Harness, config, settled
from tests.unit.gateway.test_gateway import logged_on, order
from tests.unit.gateway.test_gateway_restart import back_on, crash, drain
from tests.unit.gateway.test_review41_fanout import (
    SMALL_PASS,
    cut_after,
    everything,
    reports,
    rest_four,
    run_loop,
    sweep,
    traded,
)

ALICE, BOB = 7, 8


def exchange(instance: str, tmp_path: Path) -> Harness:
    h = Harness(config(instance, tmp_path))
    h.add_user("ALICE", "secret", ALICE)
    h.fund(ALICE)
    h.fund(BOB)
    return h


async def mass_cancel(alice: Any, cl: str) -> None:
    """A mass cancel of ALICE's account: its verdict comes on the reply ring, so the order
    log gets a position in that ring."""
    await alice.send("q", (11, cl), (530, "7"), (60, "20260101-00:00:00"))
    assert (await alice.expect("r")).get(531) == b"7"


def whole_restart(first: Harness) -> Harness:
    """The whole exchange restarts: new rings, the journal and the gateway's files kept."""
    first.close()
    remove_instance(first.cfg.instance)
    return Harness(first.cfg)


# == found: a command sent again by a full restart is sent again by the plain one after it ====


@pytest.mark.parametrize(
    "before",
    [
        "no reply read before",
        "a reply read before",  # fixed: restart.py, the stale refs
    ],
)
def test_a_command_sent_again_at_a_full_restart_is_not_sent_twice_by_a_plain_one(
    instance: str, tmp_path: Path, before: str
) -> None:
    """ALICE's mass cancel (or nothing) gives the log a position in the reply ring. Her s2
    goes into the router ring; the whole exchange restarts before the router takes it, and
    the full restart sends s2 again (seq 0 of the new ring). gw1 dies before the router,
    starting up, takes it, and restarts over the same rings: with the reply ring's position
    the old ring's, it finds s2 still missing from the journal and publishes it again
    (seq 1). The router accepts seq 0, refuses seq 1; gw1 reports s2 Rejected."""
    first = exchange(instance, tmp_path)
    seq = 1

    async def place() -> None:
        nonlocal seq
        port = await first.start()
        alice = await logged_on(port)
        if before == "a reply read before":
            await mass_cancel(alice, "mc0")
        gw = first.gateway
        assert gw is not None
        first.pause()
        await alice.send("D", *order("s2", "2", "1.00", "101.00"))
        sent = 2 if before == "a reply read before" else 1
        await settled(lambda: gw.producer.sequence == sent and not gw.entry.outgoing)
        assert gw.in_flight() == 1  # published, unanswered
        seq = alice.seq
        await crash(first)

    run_loop(place)
    again = whole_restart(first)
    told: list[Any] = []
    ring_commands = resting = 0

    async def twice() -> None:
        nonlocal told, ring_commands, resting
        await again.start()
        again.pause()  # the router is not taking commands yet
        gw = again.gateway
        assert gw is not None
        producer = gw.producer
        await settled(lambda: producer.sequence == 1)  # s2, sent again
        await asyncio.sleep(0.05)
        await crash(again)
        port = await again.start()  # the same rings: a plain restart
        gw = again.gateway
        assert gw is not None
        await asyncio.sleep(0.2)
        ring_commands = gw.producer.sequence
        alice = await back_on(port, "ALICE", seq)
        told = await everything(alice)
        book = again.matcher.matcher.books[1]
        resting = sum(o.account == ALICE for o in book.orders.values())
        await again.stop()

    try:
        run_loop(twice)
    finally:
        again.close()
    s2 = [(m.get(150), m.get(58)) for m in told if m.get(35) == b"8" and m.get(11) == b"s2"]
    assert resting == 1
    assert ring_commands == 1, f"s2 published {ring_commands} times into the new ring; {s2}"
    assert [e for e, _ in s2] == [b"0"], s2  # acknowledged once, never rejected


# == found: the plain restart filters the same ring as if new, inside a cut command ============


@pytest.mark.parametrize(
    "variant",
    [
        "orders on the new rings",
        "a reply read before",  # the reply ring's P entry is the old ring's
        "orders before, none after",  # nothing published since: so is the router ring's
    ],
)
def test_a_plain_restart_after_a_full_one_reports_every_fill_of_a_cut_read(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """ALICE rests four sells (before the full restart or after it; before it, a mass cancel
    or nothing gave the log a position in the reply ring). On the new rings BOB sweeps them,
    and gw1 dies after a pass that read two of the sweep's events (logged: handled = the
    sweep's seq, part 2; committed). It restarts over the same rings. Where a ring's logged
    position is still the old ring's, it is taken for new rings: ``events_after(events, seq,
    2)`` drops the first two events of that seq it reads, but the ring resumes after the two
    handled, so two more are dropped, a fill among them."""
    monkeypatch.setattr(server_module, "EVENTS_PER_PASS", SMALL_PASS)
    first = exchange(instance, tmp_path)
    seq = 1
    ids: list[str] = []

    async def before_the_full_restart() -> None:
        nonlocal seq, ids
        port = await first.start()
        alice = await logged_on(port)
        if variant == "a reply read before":
            await mass_cancel(alice, "mc0")
        if variant == "orders before, none after":
            ids = await rest_four(alice)
        await asyncio.sleep(0.1)
        seq = alice.seq
        await crash(first)

    run_loop(before_the_full_restart)
    again = whole_restart(first)

    async def lives() -> None:
        nonlocal ids
        port = await again.start()
        gw = again.gateway
        assert gw is not None
        alice = await back_on(port, "ALICE", seq)
        if not ids:
            ids = await rest_four(alice)
        await asyncio.sleep(0.1)  # the matcher's replay read
        cut_after(gw, 1, traded)  # dies after a pass that read a trade
        again.funder.publish_batch([sweep(400, 99)])
        assert (await alice.expect("8")).get(150) == b"F"
        await asyncio.sleep(0.1)  # the pass's batch is logged and committed
        at = alice.seq
        await crash(again)
        await alice.aclose()
        port = await again.start()  # the same rings
        alice = await back_on(port, "ALICE", at)
        told = reports(await everything(alice), b"F")
        gw = again.gateway
        assert gw is not None
        open_orders = sorted(cl.decode() for _, cl in gw.entry.live)
        await again.stop()
        assert sorted(cl.decode() for cl, _ in told) == ids, told
        assert not [e for e, n in Counter(e for _, e in told).items() if n > 1], told
        assert not open_orders, open_orders

    try:
        run_loop(lives)
    finally:
        again.close()


# == holds: a crash in the full restart's catch-up, after its log write, before its commit =====


def test_a_crash_in_the_catch_up_neither_repeats_nor_loses_a_fill(
    instance: str, tmp_path: Path
) -> None:
    """ALICE's four sells rest; gw1 dies; BOB sweeps them; the matcher's snapshot is at the
    sweep's seq and the whole exchange restarts. gw1 makes the four fills again from the
    journal (the new ring starts at the mark past its handled seq), reports them, logs the
    batch and dies before committing its cursor. Over the same rings again (its router
    ring's P entry is still the old ring's: taken for new rings) it reads the mark a second
    time, at its handled seq with every event of it handled: nothing is made a third time.
    Each fill reaches ALICE under one ExecID, none is missed, no order stays open."""
    first = exchange(instance, tmp_path)
    seq = 1
    ids: list[str] = []

    async def place() -> None:
        nonlocal seq, ids
        port = await first.start()
        alice = await logged_on(port)
        ids = await rest_four(alice)
        seq = alice.seq
        await crash(first)
        first.funder.publish_batch([sweep(400, 99)])
        first.step_pipeline()

    run_loop(place)
    first.matcher.save_snapshot()  # at the sweep's seq: the missed fills come from the journal
    again = whole_restart(first)
    told: list[tuple[bytes, bytes]] = []
    open_orders: list[str] = []

    async def lives() -> None:
        nonlocal told, open_orders
        await again.start()
        gw = again.gateway
        assert gw is not None
        gw.inputs[1].commit = lambda *_: None  # type: ignore[method-assign]  # dies before it
        entry = gw.entry
        await settled(lambda: not entry.live)  # the fills made again, logged
        await asyncio.sleep(0.05)
        await crash(again)
        port = await again.start()
        gw = again.gateway
        assert gw is not None and gw._new_rings  # the same rings, taken for new ones
        alice = await back_on(port, "ALICE", seq)
        told = reports(await everything(alice), b"F")
        open_orders = sorted(cl.decode() for _, cl in gw.entry.live)
        await again.stop()

    try:
        run_loop(lives)
    finally:
        again.close()
    assert sorted({cl.decode() for cl, _ in told}) == ids, told
    per_order = Counter(cl for cl, _ in set(told))
    assert all(n == 1 for n in per_order.values()), told  # one ExecID per fill
    assert not open_orders, open_orders


# == holds: two gateways, one restarted after the full restart, fills made at the other ========


def test_fills_at_another_gateway_while_one_restarts_after_a_full_restart_are_reported_once(
    instance: str, tmp_path: Path
) -> None:
    """gw1 and gw2 come back on new rings; gw1 publishes nothing (its router ring's P entry
    stays the old ring's), dies, and while it is down BOB at gw2 buys ALICE's four sells
    (rested before the full restart). gw1 restarts over the same rings (taken for new ones)
    and reports each of ALICE's fills once; BOB hears of his four once; neither gateway keeps
    an order open that the exchange has finished."""
    cfg = config(instance, tmp_path)
    cfg = msgspec.structs.replace(
        cfg, gateways=[cfg.gateways[0], GatewayConfig(name="gw2", id=2, port=0)]
    )
    first = Harness(cfg)
    first.add_user("ALICE", "secret", ALICE)
    first.add_user("BOB", "secret", BOB)
    first.fund(ALICE)
    first.fund(BOB)
    seq = 1
    ids: list[str] = []

    async def place() -> None:
        nonlocal seq, ids
        port = await first.start()
        alice = await logged_on(port)
        ids = await rest_four(alice)
        seq = alice.seq
        await crash(first)

    run_loop(place)
    again = whole_restart(first)

    async def lives() -> None:
        await again.start()
        gw2 = GatewayServer(cfg, "gw2")
        await gw2.start()
        try:
            await asyncio.sleep(0.2)  # gw1 reads the matcher's replay, publishes nothing
            await crash(again)
            again.resume()  # the router and matcher go on for gw2
            bob = await logged_on(gw2.port, "BOB")
            await bob.send("D", *order("b1", "1", "4.00", "100.00", "2", (59, "3")))
            bob_fills = reports(await drain(bob), b"F")
            assert len(bob_fills) == 4 and len(set(bob_fills)) == 4, bob_fills
            again.pause()
            port = await again.start()
            gw1 = again.gateway
            assert gw1 is not None and gw1._new_rings  # the same rings, taken for new ones
            alice = await back_on(port, "ALICE", seq)
            told = reports(await everything(alice), b"F")
            assert sorted(cl.decode() for cl, _ in told) == ids, told
            assert not gw1.entry.live and not gw2.entry.live
        finally:
            await gw2.shutdown(grace_s=0.1)
            await again.stop()

    try:
        run_loop(lives)
    finally:
        again.close()
