"""A sixth hostile review of the FIX 4.4 gateway: execution report contents, cancel/replace
and status answers, and the session layer's recovery and logon rules, against FIX 4.4
(Volume 2 session rules as QuickFIX implements them, Volume 4 order handling) and issue 5.
Each test fails on the code it was written against because of the bug its docstring names:
what is wrong, what FIX 4.4 says, what was expected and what came. They go end to end through
the harness (real TCP, router and matcher, a simplefix client)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec

from config.edges import GatewayConfig
from procs.common.records import CancelOrder
from procs.common.topology import gateway_commands
from shm import Ring
from tests.unit.gateway.harness import CODEC, Client, Harness, config
from tests.unit.gateway.test_gateway import logged_on, order, run, status_request


async def drain_for(client: Client, timeout: float = 0.5) -> list[Any]:
    """Every message that comes within ``timeout`` of the last one."""
    got = []
    while (msg := await client.recv(timeout)) is not None:
        got.append(msg)
    return got


# -- cancel/replace ----------------------------------------------------------------------------


def test_a_replace_asking_for_post_only_is_applied_or_refused(harness: Harness) -> None:
    """ALICE's plain bid o1 rests at 99.00 under BOB's ask at 100.00. She replaces it to
    100.00 with ExecInst (18) = 6, Participate don't initiate (post-only): the replace must
    not take liquidity. ``orders.py`` ``_cancel_replace`` never reads tag 18 on a G (only
    ``_new`` does, and ``ReplaceOrder`` carries no flags), so the instruction is dropped in
    silence: the gateway answers Replaced (150=5) and the order crosses and trades as the
    aggressor, exactly what post-only forbids.

    FIX 4.4 Vol 4 (Order Cancel/Replace Request): the replace restates the order with its
    new instructions; an instruction the receiver cannot apply is refused with an
    OrderCancelReject, never executed otherwise (the earlier reviews' TimeInForce and
    MaxFloor cases, and the D path's own ExecInst check). Expected: an OrderCancelReject
    (35=9), or a replace the book refuses as post-only would take; in no case a fill.
    Actual: 150=5, then 150=F at 100.00."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await bob.send("D", *order("a1", "2", "1.00", "100.00"))
        assert (await bob.expect("8")).get(150) == b"0"
        await alice.send("D", *order("o1", "1", "1.00", "99.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send("G", (41, "o1"), *order("o2", "1", "1.00", "100.00", "2", (18, "6")))
        answers = [m for m in await drain_for(alice) if m.get(35) in (b"8", b"9")]
        got = [(m.get(35), m.get(150)) for m in answers]
        assert (b"8", b"F") not in got, f"the post-only replace took liquidity: {got}"
        assert got and got[0][0] == b"9", got

    run(harness, scenario)


# -- order status -------------------------------------------------------------------------------


def test_a_status_request_naming_a_pending_replace_is_not_called_unknown(
    harness: Harness,
) -> None:
    """ALICE's resting o1 is replaced by o2; before the exchange answers the replace, she
    asks for the order's status by o2 (an OMS's usual check after sending a G). ``orders.py``
    ``_status`` looks only in ``live`` (keyed by o1 until ``Replaced`` comes) and
    ``finished``, so it answers 150=I with OrdStatus 8 (Rejected) and "unknown order", for a
    live order whose replace is in flight (the cancel path knows pending replaces,
    ``_pending_replace``; the status path does not). A client takes OrdStatus 8 as final.

    FIX 4.4 Vol 4 (Order Status Request, and the order state matrices for a status request
    while a replace is pending): the answer is the order's current state (OrdStatus 0 New,
    or E Pending Replace), with its OrderID, never Rejected. Expected: 150=I with 39 in
    (0, E) and the order's OrderID. Actual: 39=8, 37=NONE, 58 'unknown order ClOrdID o2'."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "1", "1.00", "99.00"))
        ack = await alice.expect("8")
        assert ack.get(150) == b"0"
        h.pause()
        await alice.send("G", (41, "o1"), *order("o2", "1", "2.00", "99.00"))
        await asyncio.sleep(0.05)  # the gateway takes the G; the exchange has not answered
        await alice.send("H", *status_request("o2", "1"), (790, "q1"))
        status = await alice.expect("8")
        h.resume()
        assert status.get(150) == b"I" and status.get(790) == b"q1"
        got = (status.get(39), status.get(37), status.get(58))
        assert got[0] in (b"0", b"E") and got[1] == ack.get(37), got

    run(harness, scenario)


# -- events of another gateway --------------------------------------------------------------


def test_an_order_cancelled_through_another_gateway_is_reported_to_its_fix_session(
    instance: str, tmp_path: Path
) -> None:
    """ALICE places o1 over FIX on gw1. Her firm's script cancels it by OrderID through the
    REST API of gw2 (issue 10: the same users and accounts; ``RestOrders.cancel`` sends
    ``CancelOrder(gateway=gw2, ..., order_id)`` and the matcher only checks the account).
    The matcher answers under the cancel's header, so the ``OrderDone`` names gw2;
    ``orders.py`` ``process`` drops every non-trade event whose ``gateway`` is not its own
    before looking at the order id, so gw1 never tells ALICE: her order is off the book,
    while her session still holds it as New (a status request says 39=0, and its
    funds-at-risk view is wrong) until she tries to cancel it herself.

    Issue 5: the gateway must "never lose or invent a message"; FIX 4.4 Vol 4: an order
    cancelled other than by the session's own request gets an unsolicited ExecutionReport
    (150=4, 39=4). Expected: 150=4 for o1 on ALICE's session. Actual: nothing."""
    cfg = config(instance, tmp_path)
    gateways = [*cfg.gateways, GatewayConfig(name="gw2", id=2, port=0)]
    cfg = msgspec.structs.replace(cfg, gateways=gateways)
    h = Harness(cfg)
    h.add_user("ALICE", "secret", 7)
    h.fund(7)
    gw2 = Ring.attach(cfg.instance, gateway_commands(2), CODEC).producer()
    alice_session = next(u.session for u in h.users.users() if u.comp_id == "ALICE")

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "1", "1.00", "99.00"))
        ack = await alice.expect("8")
        assert ack.get(150) == b"0"
        order_id = int(ack.get(37))
        gw2.publish_batch(  # what gw2's REST side publishes for DELETE /api/v1/order
            [CancelOrder(0, time.time_ns(), 2, alice_session, 1, 7, 1, order_id)]
        )
        reports = [m for m in await drain_for(alice, 1.0) if m.get(35) == b"8"]
        assert not h.matcher.matcher.books[1].orders  # the control: o1 is off the book
        got = [(m.get(11), m.get(150), m.get(39)) for m in reports]
        assert (b"o1", b"4", b"4") in got, got

    try:
        run(h, scenario)
    finally:
        gw2.close()
        h.close()
