"""Hostile review of today's FIX changes: OrderMassStatusRequest (AF), the Restated report
(150=D) of a FIX order amended through the REST API, and the logout of a session whose user
was removed or changed. Over real TCP with the simplefix client, in front of a real router and
matcher (the REST ones with the REST rig). Tests whose docstring opens with "What is wrong"
failed on the code as reviewed and pass since their fixes; the others pin what holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from simplefix import FixMessage

from procs.common.topology import users_path
from procs.common.users import UserStore
from procs.gateway.rest import RestApi
from tests.unit.gateway import rest_rig
from tests.unit.gateway.harness import Client, Harness, config, settled, utc
from tests.unit.gateway.test_gateway import cancel, logged_on, order, run
from tests.unit.gateway.test_gateway_restart import back_on, crash
from tests.unit.gateway.test_review4_rest_bugs import fix_bob, fix_sell


async def _reports(c: Client, count: int) -> list[FixMessage]:
    return [await c.expect("8") for _ in range(count)]


async def _drain(c: Client, timeout: float = 0.3) -> list[FixMessage]:
    """Everything the gateway sends until it is quiet for ``timeout``."""
    out: list[FixMessage] = []
    while (msg := await c.recv(timeout)) is not None:
        out.append(msg)
    return out


def _fields(m: FixMessage, *tags: int) -> tuple[bytes | None, ...]:
    return tuple(m.get(t) for t in tags)


# -- what is wrong --------------------------------------------------------------------------


def test_a_mass_status_reports_an_order_with_a_cancel_in_flight_as_pending_cancel(
    harness: Harness,
) -> None:
    """What is wrong: an order whose OrderCancelRequest the exchange has not answered yet is
    reported by the AF's ExecutionReport with its plain status, 39=0 (order_replies.py:86-95,
    ``mass_status`` hands every live order to ``_report``, which writes ``order.status``;
    orders.py ``_cancel_replace`` keeps no trace of the request on the order). FIX 4.4
    Appendix D: "Next to each OrdStatus value is its precedence - this is used when the order
    exists in a number of states simultaneously to determine the value that should be
    reported back": Pending Cancel (12) outranks New (2) and Partially Filled (4). A client
    re-syncing with AF after a reconnect is told the order is simply open and may send its
    cancel again, or count on liquidity that is going. Correct: 39=6 while the cancel is in
    flight (the ClOrdID still the order's, 11=c1)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("c1", "1", "1.00", "90.00"))
        assert (await alice.expect("8")).get(39) == b"0"
        h.pause()  # the cancel waits in the ring
        await alice.send("F", *cancel("c1", "c1x", "1"))
        assert h.gateway is not None
        gw = h.gateway
        await settled(lambda: bool(gw.entry.requests))
        await alice.send("AF", (584, "pc"), (585, 7))
        (status,) = await _reports(alice, 1)
        h.resume()
        assert (await alice.expect("8")).get(150) == b"4"  # the cancel goes through after it
        assert _fields(status, 150, 11, 584) == (b"I", b"c1", b"pc")
        assert status.get(39) == b"6", f"a cancel is in flight: OrdStatus {status.get(39)!r}"

    run(harness, scenario)


def test_a_mass_status_reports_an_order_with_a_replace_in_flight_as_pending_replace(
    harness: Harness,
) -> None:
    """What is wrong: likewise, an order whose OrderCancelReplaceRequest is in flight is
    reported to an AF as 39=0 (order_replies.py:86-95 writes ``order.status``; the pending
    replace is only in ``OrderEntry.requests``). FIX 4.4 Appendix D's OrdStatus precedence
    puts Pending Replace (11) above New (2): the status report of an order in both states says
    Pending Replace (39=E), under the ClOrdID it has until the replace is accepted (11=r1;
    "an order cannot be considered replaced until it has been explicitly accepted")."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("r1", "1", "1.00", "91.00"))
        assert (await alice.expect("8")).get(39) == b"0"
        h.pause()
        await alice.send("G", (41, "r1"), *order("r2", "1", "2.00", "91.00"))
        assert h.gateway is not None
        gw = h.gateway
        await settled(lambda: bool(gw.entry.requests))
        await alice.send("AF", (584, "pr"), (585, 7))
        (status,) = await _reports(alice, 1)
        h.resume()
        replaced = await alice.expect("8")
        assert _fields(replaced, 150, 11, 41) == (b"5", b"r2", b"r1")
        assert _fields(status, 150, 11, 584) == (b"I", b"r1", b"pr")
        assert status.get(39) == b"E", f"a replace is in flight: OrdStatus {status.get(39)!r}"

    run(harness, scenario)


def test_a_burst_of_mass_status_requests_is_not_bounded_by_the_throttle(harness: Harness) -> None:
    """What is wrong: the message throttle counts an AF as one message (session.py:525 and 591-598,
    ``_allow`` takes one token), but each AF makes one report per open order of the session
    (order_replies.py:86-95), all at once in the loop's one pass over the bytes read. A
    session with 100 open orders (the harness' ``risk.max_open_orders``; 1,000 by default)
    that sends 1,000 AFs in one write (about 94 KB, a tenth of the default 10,000 messages/s)
    makes the gateway build and store 100,000 ExecutionReports in a single callback: every
    other session (BOB's TestRequest here) and the ring pump wait meanwhile, and the store
    grows by about 25 MB. At the default 1,000 open orders the same write is a million
    reports, seconds of a stalled gateway, repeatable every second by one authenticated
    client. Correct: what one session can make the gateway send is bounded by its throttle -
    charge an AF for the reports it makes (refuse one that would go over: BusinessMessageReject
    as for any throttled message), or answer one AF of a session at a time and refuse those
    that come while its answer is under way. Here: at most ``max_messages_per_s`` (10,000)
    reports to ALICE for that one burst, besides one refusal (j) per AF refused. (Fixed: an
    AF's reports are charged to the throttle, ``TokenBucket.charge``.)"""

    async def scenario(h: Harness, port: int) -> None:
        alice, bob = await logged_on(port), await logged_on(port, "BOB")
        for i in range(100):
            await alice.send("D", *order(f"o{i}", "2", "1.00", f"{100 + i}.00"))
        assert [(await alice.expect("8")).get(39) for _ in range(100)] == [b"0"] * 100
        assert h.gateway is not None
        store = h.gateway.store("ALICE")
        before = store.next_out
        burst = [alice.message("AF", (584, f"f{i}"), (585, 7)).encode() for i in range(1_000)]
        await alice.send_raw(b"".join(burst))
        started = time.perf_counter()
        await bob.send("1", (112, "still-served"))
        assert (await bob.expect("0", timeout=10)).get(112) == b"still-served"
        waited = time.perf_counter() - started
        sent = store.next_out - before
        assert sent <= 10_000 + 100 + 1_000, (
            f"one burst of 1,000 AFs made {sent} messages to ALICE, more than the throttle's "
            f"10,000/s and a refusal each; BOB's TestRequest waited {waited:.2f} s meanwhile"
        )

    run(harness, scenario)


def test_a_refused_mass_status_names_its_mass_status_req_id(harness: Harness) -> None:
    """What is wrong: the BusinessMessageReject of an AF (a MassStatusReqType 1 without its
    Symbol; an AF over the throttle) carries no BusinessRejectRefID (379): session.py:368-372,
    ``business_reject`` takes it from ClOrdID (11), which an AF does not have. FIX 4.4 j:
    379 is "the value of the business-level 'ID' field on the message being referenced.
    Required unless the corresponding ID field was not specified": an AF's is its
    MassStatusReqID (584), which the client matches its answers by (the reports echo it, the
    refusal does not). Correct: 379=<584 of the refused AF>."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("AF", (584, "by-symbol"), (585, 1))
        refused = await alice.expect("j")
        assert _fields(refused, 372, 380) == (b"AF", b"5")
        assert refused.get(379) == b"by-symbol", f"no BusinessRejectRefID in {refused}"

    run(harness, scenario)


# -- what holds -----------------------------------------------------------------------------


def test_a_mass_status_covers_every_state_of_an_open_order(harness: Harness) -> None:
    """Holds: pending new (37=NONE, 39=A, LeavesQty the whole), partially filled (39=1, the
    CumQty, LeavesQty and AvgPx of the fills), a stop waiting for its trigger (its StopPx), a
    replaced order under its new ClOrdID with its OrigClOrdID; none of another session's,
    none finished; numbered 911=4 with 912=Y on the last only; a Parties block and a Side
    filter are taken."""

    async def scenario(h: Harness, port: int) -> None:
        alice, bob = await logged_on(port), await logged_on(port, "BOB")
        await alice.send("D", *order("part", "2", "2.00", "100.00"))
        assert (await alice.expect("8")).get(39) == b"0"
        await bob.send("D", *order("b1", "1", "0.50", "100.00"))
        assert [(await bob.expect("8")).get(39) for _ in range(2)] == [b"0", b"2"]
        assert (await alice.expect("8")).get(39) == b"1"
        await alice.send("D", *order("stop", "1", "1.00", None, "3", (99, "150.00")))
        assert (await alice.expect("8")).get(39) == b"0"
        await alice.send("D", *order("old", "1", "1.00", "90.00"))
        await alice.expect("8")
        await alice.send("G", (41, "old"), *order("new", "1", "1.50", "91.00"))
        assert (await alice.expect("8")).get(150) == b"5"
        await alice.send("D", *order("gone", "1", "1.00", "80.00"))
        await alice.expect("8")
        await alice.send("F", *cancel("gone", "gone-x", "1"))
        assert (await alice.expect("8")).get(39) == b"4"
        h.pause()
        await alice.send("D", *order("pend", "1", "1.00", "85.00"))
        assert h.gateway is not None
        gw = h.gateway
        await settled(lambda: any(o.cl_ord_id == b"pend" for o in gw.entry.live.values()))
        parties = ((453, 1), (448, "DESK-1"), (447, "D"), (452, 3))
        await alice.send("AF", (584, "all"), (585, 1), (55, "BTC-USD"), *parties)
        every = {m.get(11): m for m in await _reports(alice, 4)}
        h.resume()
        assert set(every) == {b"part", b"stop", b"new", b"pend"}
        assert _fields(every[b"part"], 39, 38, 14, 151, 6) == (
            b"1", b"2.00", b"0.50", b"1.50", b"100.000000",
        )  # fmt: skip
        assert _fields(every[b"stop"], 39, 40, 99, 151) == (b"0", b"3", b"150.00", b"1.00")
        assert _fields(every[b"new"], 41, 38, 44) == (b"old", b"1.50", b"91.00")
        assert _fields(every[b"pend"], 37, 39, 151, 14) == (b"NONE", b"A", b"1.00", b"0.00")
        shown = [every[k] for k in (b"part", b"stop", b"new", b"pend")]
        assert {_fields(m, 150, 584, 911) for m in shown} == {(b"I", b"all", b"4")}
        assert sorted(m.get(912) for m in shown) == [b"N", b"N", b"N", b"Y"]
        assert every[b"pend"].get(912) == b"Y"  # the last one sent: the newest order
        await alice.send("AF", (584, "buys"), (585, 7), (54, "1"))
        buys = await _reports(alice, 3)
        assert {m.get(11) for m in buys} == {b"stop", b"new", b"pend"}

    run(harness, scenario)


def test_a_mass_status_after_a_crash_possdup_resend_and_logout(harness: Harness) -> None:
    """Holds: after a crash, the orders restored from the order log are reported; a PossDup
    AF in sequence is answered (a status request is safe to repeat), one below the expected
    MsgSeqNum is ignored; an AF and a Logout in one packet get every report before the
    Logout; a ResendRequest at the next logon sends the reports again (43=Y) with their
    MassStatusReqID, TotNumReports and LastRptRequested as they were."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        for i in range(3):
            await alice.send("D", *order(f"o{i}", "2", "1.00", f"10{i}.00"))
            assert (await alice.expect("8")).get(39) == b"0"
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("AF", (584, "back"), (585, 7))
        back = await _reports(alice, 3)
        assert [_fields(m, 11, 911, 912) for m in back] == [
            (b"o0", b"3", b"N"), (b"o1", b"3", b"N"), (b"o2", b"3", b"Y"),
        ]  # fmt: skip
        await alice.send("AF", (584, "again"), (585, 7), poss_dup=True, orig_sending_time=utc(-1))
        assert [m.get(584) for m in await _reports(alice, 3)] == [b"again"] * 3
        low = alice.seq - 1
        await alice.send("AF", (584, "low"), (585, 7), seq=low, poss_dup=True,
                         orig_sending_time=utc(-1))  # fmt: skip
        assert await alice.recv(0.3) is None
        both = alice.message("AF", (584, "bye"), (585, 7)).encode() + alice.message("5").encode()
        await alice.send_raw(both)
        tail = await _drain(alice)
        assert [m.get(35) for m in tail] == [b"8", b"8", b"8", b"5"]
        assert [m.get(912) for m in tail[:3]] == [b"N", b"N", b"Y"]
        first = int(tail[0].get(34))
        await alice.aclose()
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("2", (7, first), (16, first + 2))
        again = [m for m in await _drain(alice) if m.get(35) == b"8"]
        assert [_fields(m, 43, 584, 911, 912) for m in again] == [
            (b"Y", b"bye", b"3", b"N"), (b"Y", b"bye", b"3", b"N"), (b"Y", b"bye", b"3", b"Y"),
        ]  # fmt: skip

    run(harness, scenario)


def test_a_mass_status_while_stopping_and_the_throttle(instance: str, tmp_path: Path) -> None:
    """Holds: while the gateway stops (intake closed) an AF is still answered, a D refused;
    AFs and their reports count against the session's message throttle (at 3/s with one open
    order, an AF and its report cost two: two of four are answered, the others refused with
    a BusinessMessageReject)."""
    h = Harness(config(instance, tmp_path, max_messages_per_s=3))
    h.add_user("ALICE", "secret", 7)
    h.fund(7)

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(39) == b"0"
        await asyncio.sleep(1.1)  # the throttle's tokens back
        assert h.gateway is not None
        h.gateway.entry.closing = True
        await alice.send("AF", (584, "closing"), (585, 7))
        assert _fields(await alice.expect("8"), 11, 584, 912) == (b"o1", b"closing", b"Y")
        await alice.send("D", *order("o2", "2", "1.00", "100.00"))
        assert b"stopping" in (await alice.expect("8")).get(58)
        await asyncio.sleep(1.1)
        burst = [alice.message("AF", (584, f"t{i}"), (585, 7)).encode() for i in range(4)]
        await alice.send_raw(b"".join(burst))
        answers = await _drain(alice)
        assert [m.get(35) for m in answers] == [b"8", b"8", b"j", b"j"]
        assert b"throttle" in answers[-1].get(58)

    try:
        run(h, scenario)
    finally:
        h.close()


def test_a_changed_user_is_logged_out_and_its_orders_answer_its_next_mass_status(
    harness: Harness,
) -> None:
    """Holds: ALICE's user record rewritten by the operator (a new password: same account and
    session id) ends her session at the next timer pass, with a Logout and the connection
    closed; her order stays (no cancel on disconnect) and her next logon's AF reports it."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("keep", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(39) == b"0"
        UserStore(users_path(h.cfg)).add("ALICE", "new-secret", 7, n=1 << 4)
        logout = await alice.expect("5", timeout=3.0)
        assert b"removed or changed" in logout.get(58)
        assert await alice.closed()
        again = Client("ALICE")
        again.seq = alice.seq
        await again.connect(port)
        await again.logon("new-secret")
        await again.send("AF", (584, "after"), (585, 7))
        report = await again.expect("8")
        assert _fields(report, 11, 39, 584, 911, 912) == (b"keep", b"0", b"after", b"1", b"Y")

    run(harness, scenario)


@pytest.fixture
def rest_harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_rig.rest_exchange(instance, tmp_path)


def test_a_rest_amend_of_a_fix_order_is_restated_parked_and_followed(
    rest_harness: Harness,
) -> None:
    """Holds: BOB's FIX sell s1, replaced over FIX to s2 (0.60), amended through the API to
    0.40 at 101.00: 150=D, 378=99 under ClOrdID s2 with OrderQty 0.40, LeavesQty 0.40, CumQty
    0; amended again while he is logged off, then 0.10 of it filled: both reports are parked
    and resent at his next logon, in order; his AF then shows 0.40 / 0.10 / 0.30 at 99.00,
    and a FIX replace of s2 to 0.20 leaves 0.10 (the fill counted once)."""
    h = rest_harness

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_bob(h)
        bob = await rest_rig.client(url, "BOB", "bob-pw")
        alice = await rest_rig.client(url, "ALICE", "alice-pw")
        try:
            await fix_sell(fix, "s1")
            g = ((55, "BTC-USD"), (54, "2"), (60, utc()), (40, "2"))
            await fix.send("G", (41, "s1"), (11, "s2"), *g, (38, "0.60"), (44, "100.00"))
            assert _fields(await fix.expect("8"), 150, 11, 41) == (b"5", b"s2", b"s1")
            (shown,) = await bob.call("GET", "/api/v1/openOrders")
            oid = shown["orderId"]
            amend = {"symbol": "BTC-USD", "orderId": oid}
            await bob.call("PUT", "/api/v1/order", **amend, quantity="0.40", price="101.00")
            restated = await fix.expect("8")
            assert _fields(restated, 150, 378, 11, 39, 38, 151, 14, 44) == (
                b"D", b"99", b"s2", b"0", b"0.40", b"0.40", b"0.00", b"101.00",
            )  # fmt: skip
            await fix.send("5")
            await fix.expect("5")
            await fix.aclose()
            await bob.call("PUT", "/api/v1/order", **amend, price="99.00")
            await alice.call("POST", "/api/v1/order", **rest_rig.LIMIT, price="99.00",
                             quantity="0.10")  # fmt: skip
            assert h.gateway is not None
            back = Client("BOB")
            back.seq = fix.seq
            await back.connect(h.gateway.port)
            await back.logon("bob-pw")
            await back.send("2", (7, restated.get(34)), (16, 0))
            missed = [m for m in await _drain(back) if m.get(35) == b"8"]
            assert [_fields(m, 150, 43, 14, 151) for m in missed[1:]] == [
                (b"D", b"Y", b"0.00", b"0.40"), (b"F", b"Y", b"0.10", b"0.30"),
            ]  # fmt: skip
            await back.send("AF", (584, "sync"), (585, 7))
            status = await back.expect("8")
            assert _fields(status, 11, 39, 38, 14, 151, 44) == (
                b"s2", b"1", b"0.40", b"0.10", b"0.30", b"99.00",
            )  # fmt: skip
            await back.send("G", (41, "s2"), (11, "s3"), *g, (38, "0.20"), (44, "99.00"))
            replaced = await back.expect("8")
            assert _fields(replaced, 150, 11, 41, 38, 14, 151) == (
                b"5", b"s3", b"s2", b"0.20", b"0.10", b"0.10",
            )  # fmt: skip
        finally:
            await bob.close()
            await alice.close()

    rest_rig.run(h, scenario)
