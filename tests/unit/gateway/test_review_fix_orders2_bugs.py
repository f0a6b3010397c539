"""A second hostile review of FIX order entry and execution reports (``orders.py`` and its
helpers, where they meet the router and the matcher). What ``test_review_fix_orders_bugs.py``
and ``test_review_fix_session_bugs.py`` test is not repeated. Each test fails because of the
bug its docstring names: what is wrong, what FIX 4.4 says, what was expected and what came."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from config.schema import RiskConfig
from procs.common.records import AdminCommand, NewOrder
from procs.common.types import AdminAction, OrdType, Side, StpMode, TimeInForce
from tests.unit.gateway.harness import FUNDER, Client, Harness, config, settled, utc
from tests.unit.gateway.test_gateway import cancel, logged_on, order, run, status_request
from tests.unit.gateway.test_gateway_restart import back_on, crash


async def drain_for(client: Client, timeout: float = 0.5) -> list[Any]:
    """Every message that comes within ``timeout`` of the last one."""
    got = []
    while (msg := await client.recv(timeout)) is not None:
        got.append(msg)
    return got


async def reports(client: Client, timeout: float = 0.5) -> list[Any]:
    return [m for m in await drain_for(client, timeout) if m.get(35) == b"8"]


def end_of_session() -> AdminCommand:
    """What ``ringex admin`` sends at the end of the trading day: DAY orders expire."""
    return AdminCommand(0, 0, AdminAction.END_OF_SESSION, 0, 0)


def test_an_order_without_time_in_force_is_a_day_order(harness: Harness) -> None:
    """FIX 4.4, TimeInForce (59): "Absence of this field indicates Day order". The gateway
    defaults a missing 59 to GTC (``orders.py`` ``_new``: ``TIFS[f.get(59, b"1")]``): the
    ack says 59=1 and the order survives the end of the session, resting on the next day's
    book, where a client that sent a plain limit order (most OMSs leave 59 out for Day)
    believes it expired. Expected: 59=0 on the ack and an Expired report (150=C) at the end
    of the session, as an explicit 59=0 order gets. Actual: 59=1, nothing at the end of the
    session, the order still open."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("plain", "1", "1.00", "90.00"))
        await alice.send("D", *order("day", "1", "1.00", "90.00", "2", (59, "0")))
        acks = {m.get(11): m for m in [await alice.expect("8"), await alice.expect("8")]}
        h.funder.publish_batch([end_of_session()])
        expired = {m.get(11) for m in await reports(alice) if m.get(150) == b"C"}
        assert b"day" in expired  # the control: an explicit Day order expires
        assert (acks[b"plain"].get(59), b"plain" in expired) == (b"0", True), (
            acks[b"plain"].get(59),
            expired,
        )

    run(harness, scenario)


def test_a_market_order_rest_is_cancelled_whatever_its_time_in_force(harness: Harness) -> None:
    """A market order fills what the book has and its unfilled rest is cancelled at once.
    The matcher says ``OrderDone(EXPIRED)`` for that, and ``orders.py`` ``_done`` picks the
    ExecType by the order's TimeInForce: 150=4 (Canceled) for 59=1, but 150=C/39=C
    'expired' for 59=0 (the usual TimeInForce of a market order), the same code it uses for
    a Day order expiring at the end of the session. FIX 4.4: Expired (C) is an order whose
    time in force ran out; a Day market order's rest cancelled in the same instant has not
    expired (the day is not over), it is Canceled, as for 59=1. Expected: both 150=4.
    Actual: 150=4 and 150=C."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        outcome = {}
        for tif in ("1", "0"):
            await alice.send("D", *order(f"bid{tif}", "1", "1.00", "100.00"))
            await alice.expect("8")
            await bob.send("D", *order(f"mkt{tif}", "2", "2.00", None, "1", (59, tif)))
            got = await reports(bob)
            assert [m.get(150) for m in got][:2] == [b"0", b"F"], got
            outcome[tif] = (got[-1].get(150), got[-1].get(39))
        assert outcome == {"1": (b"4", b"4"), "0": (b"4", b"4")}, outcome

    run(harness, scenario)


def test_a_status_request_for_an_unknown_order_echoes_ord_status_req_id(
    harness: Harness,
) -> None:
    """FIX 4.4 ExecutionReport, OrdStatusReqID (790): "Required if responding to and if
    provided on the Order Status Request message. Echo back the value provided by the
    requester." The gateway echoes it for a known order but not in the answer for an
    unknown one (``orders.py`` ``_status`` -> ``_reject_new``, which has no 790), so a
    client matching answers to its requests by 790 never gets this one. Expected:
    150=I, 39=8, 790=req1. Actual: no 790."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("H", *status_request("nope", "1"), (790, "req1"))
        answer = await alice.expect("8")
        assert (answer.get(150), answer.get(39)) == (b"I", b"8")
        assert answer.get(790) == b"req1"

    run(harness, scenario)


def test_a_mass_cancel_the_router_refuses_is_not_reported_as_done(
    instance: str, tmp_path: Path
) -> None:
    """ALICE's account is over its command rate (risk.max_commands_per_s) when her
    OrderMassCancelRequest (q, 530=7) comes: the router refuses the MassCancel
    (ACCOUNT_RATE_LIMITED) and nothing is cancelled. But ``orders.py`` ``_mass_cancel``
    answers OrderMassCancelReport 531=7 ('all orders cancelled') as soon as the request is
    read, and ``process``/``_rejected`` drops the router's Rejected of a MassCancel (no
    order or request has its ref), so she is told her orders are cancelled while they rest.
    FIX 4.4: 531=0 (cancel request rejected) with MassCancelRejectReason when the request is
    not carried out. Expected: an r with 531=0, or her orders cancelled. Actual: r 531=7,
    her order still open, nothing else said."""
    cfg = config(instance, tmp_path)
    risk = RiskConfig(max_open_orders=100, max_commands_per_s=1, fee_account=99)
    h = Harness(msgspec.structs.replace(cfg, risk=risk))
    h.add_user("ALICE", "secret", 7)
    h.fund(7)

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "1", "1.00", "90.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send("q", (11, "mc"), (530, "7"), (60, utc()))
        said = [(m.get(35), m.get(531), m.get(150)) for m in await drain_for(alice)]
        open_orders = h.router.sequencer.accounts.open_orders(7)
        told_done = (b"r", b"7", None) in said
        assert not (told_done and open_orders), (said, open_orders)

    try:
        run(h, scenario)
    finally:
        h.close()


def test_an_exec_inst_the_exchange_does_not_support_is_refused_not_ignored(
    harness: Harness,
) -> None:
    """ExecInst (18) is read only for '6' (post-only, ``orders.py`` ``_new``); any other
    instruction is dropped without a word. An All-or-none sell (18=G) is acknowledged as an
    ordinary limit order and then partially filled: exactly what AON forbids. FIX 4.4: an
    order the receiver cannot execute as instructed is rejected (ExecutionReport 150=8,
    OrdRejReason 11 'Unsupported order characteristic' or 99), never executed otherwise.
    Expected: 150=8 on the NewOrderSingle. Actual: 150=0, then a partial fill of 0.50."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("aon", "2", "1.00", "100.00", "2", (18, "G")))
        ack = await alice.expect("8")
        if ack.get(150) == b"0":
            await bob.send("D", *order("b1", "1", "0.50", "100.00"))
            fills = [m for m in await reports(alice) if m.get(150) == b"F"]
            assert not fills, [(m.get(32), m.get(39)) for m in fills]
        assert ack.get(150) == b"8", ack.get(150)

    run(harness, scenario)


def test_a_replace_that_sets_max_floor_is_applied_or_refused(harness: Harness) -> None:
    """A resting 1.00 bid replaced with MaxFloor (111) 0.10, to show only a tenth: the
    gateway parses MaxFloor on the G and throws it away (``orders.py`` ``_cancel_replace``:
    ``price, _stop, qty, _display = parsed``; ``ReplaceOrder`` has no display field), then
    answers Replaced (150=5) while the whole 1.00 stays displayed. FIX 4.4 lets a replace
    change MaxFloor; an exchange that cannot must refuse the request (OrderCancelReject),
    not report a replace that did something else (the earlier review's TimeInForce case,
    for another field). Expected: 35=9, or the book showing 0.10. Actual: 150=5 and the
    book showing 1.00."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "1", "1.00", "90.00"))
        await alice.expect("8")
        await alice.send("G", (41, "o1"), *order("o2", "1", "1.00", "90.00", "2", (111, "0.10")))
        answer = await alice.recv(1.0)
        assert answer is not None
        shown = [o.leaves for o in h.matcher.matcher.books[1].orders.values()]
        assert answer.get(35) == b"9" or shown == [10], (answer.get(35), answer.get(150), shown)

    run(harness, scenario)


def test_a_replace_refused_while_stopping_keeps_the_orders_identity(harness: Harness) -> None:
    """While the gateway is stopping it refuses replaces (cancels still go). The refusal
    (``orders.py`` ``on_message``: ``_cancel_reject(session, msg, None, text)``) is made
    without looking the order up, so the OrderCancelReject of a live, resting order says
    OrderID NONE, OrdStatus 8 (Rejected) and CxlRejReason 1 (Unknown order): a client takes
    its order for dead while it can still fill. FIX 4.4 OrderCancelReject: OrdStatus is the
    order's status after the reject, OrderID the order's. Expected: 37=<its OrderID>, 39=0,
    102 not 1. Actual: 37=NONE, 39=8, 102=1."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "1", "1.00", "90.00"))
        new = await alice.expect("8")
        assert h.gateway is not None
        h.gateway.entry.closing = True  # what ``GatewayServer.stop`` sets first
        await alice.send("G", (41, "o1"), *order("o2", "1", "2.00", "90.00"))
        reject = await alice.expect("9")
        assert b"stopping" in reject.get(58)
        got = (reject.get(37), reject.get(39), reject.get(102) == b"1")
        assert got == (new.get(37), b"0", False), got

    run(harness, scenario)


def test_a_cancel_reject_while_the_client_is_logged_off_is_kept_for_it(
    harness: Harness,
) -> None:
    """ALICE sends a replace the matcher will refuse (a pending stop cannot be replaced) and
    logs out before the answer. ExecutionReports for a session that is not logged on are
    parked in its store and delivered by the ResendRequest after its next logon, but
    ``orders.py`` ``_rejected`` sends the OrderCancelReject only to a logged-on session and
    otherwise drops it. FIX 4.4: every application message is delivered, if late, by the
    session's recovery; the client keeps the replace pending forever. Expected: the resend
    after her logon holds a 35=9 for st2. Actual: no 9 (the request is answered and gone)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("st", "1", "1.00", "200.00", "4", (99, "150.00")))
        assert (await alice.expect("8")).get(150) == b"0"
        h.pause()
        await alice.send("G", (41, "st"), *order("st2", "1", "1.00", "201.00", "4", (99, "150.00")))
        await asyncio.sleep(0.05)
        await alice.send("5")
        await alice.expect("5")
        await alice.aclose()
        h.resume()
        gw = h.gateway
        assert gw is not None
        await settled(lambda: not gw.entry.requests)
        assert not gw.entry.requests  # the matcher answered the replace
        back = Client("ALICE")
        back.seq = alice.seq
        await back.connect(port)
        await back.logon()
        await back.send("2", (7, 1), (16, 0))
        got = [(m.get(35), m.get(11)) for m in await drain_for(back)]
        assert (b"9", b"st2") in got, got

    run(harness, scenario)


def test_a_cancelled_order_is_still_known_by_its_clordid_after_a_restart(
    harness: Harness,
) -> None:
    """o1 is cancelled by c1. Before a restart a status request or a cancel naming o1 is
    answered from its final state (39=4; CxlRejReason 0, too late). After a clean restart
    the gateway calls o1 unknown (39=8; CxlRejReason 1): ``orders.py`` ``_done`` renames the
    order to c1 and files it as finished under both ClOrdIDs, but the order log writes the
    order (one Order object, by ref) with its current ClOrdID only, so ``restore`` keys it
    under c1 alone. FIX 4.4: the client may name the order by the ClOrdID it sent it with;
    a restart of the gateway must not change the answer. Expected after the restart: 150=I
    39=4 for H o1, and 102=0 for F o1. Actual: 39=8 'unknown order'."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "1", "1.00", "90.00"))
        await alice.expect("8")
        await alice.send("F", *cancel("o1", "c1", "1"))
        assert (await alice.expect("8")).get(150) == b"4"
        await alice.send("H", *status_request("o1", "1"))
        assert (await alice.expect("8")).get(39) == b"4"  # before the restart: known
        await alice.send("5")
        await alice.expect("5")
        await h.stop()
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("H", *status_request("o1", "1"))
        status = await alice.expect("8")
        await alice.send("F", *cancel("o1", "c2", "1"))
        reject = await alice.expect("9")
        got = (status.get(150), status.get(39), reject.get(39), reject.get(102))
        assert got == (b"I", b"4", b"4", b"0"), got

    run(harness, scenario)


def test_a_fill_reported_again_after_a_crash_keeps_its_exec_id(harness: Harness) -> None:
    """The gateway writes a fill's report to the client, then crashes before its order log
    records the batch (the window ``server.py`` ``pump`` leaves between writing reports and
    ``_write_log``; ``order_log.py``: 'a report can go out twice'). The restarted gateway
    reads the Trade again and reports it again, with a fresh ExecID (``orders.py``
    ``_report``: ``self._next_exec += 1``, the counter starting at the wall clock), under a
    new MsgSeqNum. FIX 4.4: ExecID is unique per execution and is how a client recognises a
    report it has had; the same fill under two ExecIDs is two fills to it (LastQty counted
    twice). Expected: one ExecID for the one trade. Actual: two."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        gw = h.gateway
        assert gw is not None
        gw._write_log = lambda entries: None  # type: ignore[method-assign]  # dies first
        for consumer in gw.inputs:
            consumer.commit = lambda sequence=None: None  # type: ignore[method-assign]
        taker = NewOrder(
            *(0, 0, FUNDER, 1, 99, 8, 1, 0), side=Side.BUY, ord_type=OrdType.LIMIT,
            tif=TimeInForce.IOC, flags=0, stp=StpMode.NONE, price=10_000, qty=100,
            stop_price=0, display_qty=0,
        )  # fmt: skip
        h.funder.publish_batch([taker])
        fill = await alice.expect("8")
        assert (fill.get(150), fill.get(11)) == (b"F", b"s1")
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("2", (7, 1), (16, 0))
        fills = [m for m in await reports(alice) if m.get(150) == b"F"]
        ids = {m.get(17) for m in fills} | {fill.get(17)}
        assert len(ids) == 1, [(m.get(34), m.get(17), m.get(32)) for m in fills]

    run(harness, scenario)


def test_a_replace_down_to_the_filled_quantity_fills_the_order(harness: Harness) -> None:
    """The matcher review's in-flight case, end to end: ALICE's bid of 1.00 has 0.40 filled
    and she amends it to 0.40 (OrderQty = CumQty) as the fill crosses her request. FIX 4.4
    (the in-flight examples): the replace is accepted and cancels the balance, the order is
    Filled (150=5, 39=2, LeavesQty 0) and nothing more fills it; her USD is no longer held
    for it."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("o1", "1", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await bob.send("D", *order("b1", "2", "0.40", "100.00"))
        assert (await alice.expect("8")).get(14) == b"0.40"
        await alice.send("G", (41, "o1"), *order("o2", "1", "0.40", "100.00"))
        replaced = await alice.expect("8")
        got = [replaced.get(t) for t in (150, 39, 151, 14, 38)]
        assert got == [b"5", b"2", b"0.00", b"0.40", b"0.40"], got
        await bob.send("D", *order("b2", "2", "0.60", "100.00"))
        assert not [m for m in await reports(alice) if m.get(150) == b"F"]
        assert h.matcher.matcher.books[1].levels() == {(Side.SELL, 10_000): (60, 1)}
        await settled(lambda: h.router.sequencer.accounts.open_orders(7) == 0)
        assert h.router.sequencer.accounts.open_orders(7) == 0  # the router released it

    run(harness, scenario)
