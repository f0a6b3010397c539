"""Review 283: several gateways side by side.

One account trading through two gateway processes' worth of FIX and REST (gw1 and gw2, each
with both), orders placed at one and handled at the other, and one gateway down or crashed
while the other trades.

Reviewed: ``procs/gateway/live_sessions.py`` (the instance-wide claim per CompID),
``disconnect_cancels.py``, ``clordid_holders.py``, ``recent_elsewhere.py``,
``ended_elsewhere.py``, ``restart.py`` (the order log's recovery, cancel on disconnect at a
restart), ``order_replies.py``; README's "The FIX gateway", Configure (``reuse_port``,
review 208's limit) and "The REST API and the private stream".

Rig: review 36's ``Pair`` (``tests/unit/gateway/test_review36_gateways.py``: the harness's
exchange, real rings, an in-process router and matcher stepped in the loop, gw1 and gw2
each a ``GatewayServer`` with FIX and REST on real TCP ports, ALICE and BOB funded), review
195's helpers (``quiet``, ``fields``), a second CompID ALICE2 on ALICE's account, and a
crash of gw2 as ``test_gateway_restart.crash`` makes one (no logout, no flush, no commit,
its connections aborted) followed by a new ``GatewayServer`` over the same files and rings.

Faults found: none that could be shown (every scenario below held).

Sound (plain tests, each passing):
1. A REST order of gw2 cancelled, amended and partly filled through gw1 while gw2 is
   stopped: the restarted gw2 names each by its ``clientOrderId`` with the right status,
   price and fill, and the cancelled one's id is free again there.
2. Cancel on disconnect of ALICE's FIX session at gw1 cancels her gw1 FIX order only: her
   REST order at gw2 and ALICE2's FIX order at gw2 rest on, and an order she places at
   once through gw2 after logging on there is not taken by the cancels.
3. ``DELETE openOrders`` at gw2 answers with ALICE's FIX order placed at gw1 before her
   first use of gw2 (``recent_elsewhere``), and her FIX session hears 150=4 once.
4. A REST amend at gw2 of gw1's REST order is seen at gw1 (``GET order`` by its
   ``clientOrderId``, a later amend there leaving the price as amended), and gw1's stream
   says NEW, REPLACED, REPLACED under its ``clientOrderId``.
5. A FIX order of gw1 amended then cancelled over REST at gw2: the session is told 150=D
   then 150=4; its OrderStatusRequest and OrderMassStatusRequest answer the amended price,
   then 39=4.
6. A FIX session's orders at gw2 amended and cancelled through gw1 while gw2 is stopped:
   at its next Logon (numbers kept) a ResendRequest brings 150=D and 150=4, each once.
7. A wrong password for a CompID logged on at gw1 is "bad password" at both gateways (the
   refusal does not tell that the session is logged on), and the session stays up.
8. A FIX replace at gw1 and a REST cancel at gw2 of the same order in one router step:
   150=5 then 150=4 under the new ClOrdID; a FIX cancel and a REST cancel (or amend) at
   once: one 150=4 for the FIX session and the REST call refused "too late".
9. gw2 crashed (SIGKILL-like) holding a cancel-on-disconnect session's orders while BOB
   fills one of them through gw1: the restarted gw2 cancels that session's orders only
   (ALICE2's order at gw1 stays), and the session's next Logon fetches the fill and both
   cancels once each by ResendRequest, ExecIDs distinct; ALICE2 at gw1 hears nothing.

Leads not shown:
- An ExecutionReport 150=4 of a cancel made through the other gateway's REST API carries
  OrigClOrdID (41) of the replace before (``11=g1|41=f1`` in sound test 8), which FIX 4.4
  has for an answer to the session's own cancel or replace; an engine that matches 41 to
  its pending requests sees an answer to no request. Not a fault README names.
- ALICE (FIX at gw1) and ALICE2 (FIX at gw2), one account, may hold one ClOrdID on two open
  orders: ``held_elsewhere`` (``clordid_holders.py:35``) knows this gateway's sessions only,
  so ``origClientOrderId`` over a shared REST port names one or the other by the kernel's
  pick; README scopes the REST ids per gateway (review 36), so it reads as documented.
- The OrderMassCancelReport carries no TotalAffectedOrders (533), so a FIX client cannot
  tell that its mass cancel ended REST orders of another gateway.
"""

from __future__ import annotations

import asyncio
from typing import Any

from procs.gateway.rest_client import ApiCallError, RestClient
from tests.unit.gateway import test_review36_gateways as two
from tests.unit.gateway.harness import Client, settled
from tests.unit.gateway.rest_rig import ALICE, LIMIT, client, order_status, stream_messages
from tests.unit.gateway.test_gateway import cancel, order, status_request
from tests.unit.gateway.test_review192_exec_reports import fields, quiet

ORDER, OPEN = "/api/v1/order", "/api/v1/openOrders"
pair = two.pair  # the fixture: gw1 and gw2 (FIX and REST each), ALICE and BOB funded


async def rest_bid(api: RestClient, price: str, qty: str = "1", **kw: Any) -> int:
    """A limit bid through the API, answered: its orderId."""
    placed = await api.call("POST", ORDER, **LIMIT, price=price, quantity=qty, **kw)
    return int(placed["orderId"])


async def fix_bid(fix: Client, cl: str, price: str, qty: str = "1") -> int:
    """A GTC limit bid over FIX, acknowledged: its OrderID."""
    await fix.send("D", *order(cl, "1", qty, price, "2", (59, "1")))
    ack = await fix.expect("8")
    assert fields(ack, 11, 150) == (cl.encode(), b"0"), ack
    return int(ack.get(37))


async def bob_sells(url: str, price: str, qty: str) -> None:
    """BOB's IOC sell through the API at ``url``."""
    bob = await client(url, "BOB", "bob-pw")
    try:
        await bob.call(
            "POST", ORDER, symbol="BTC-USD", side="SELL", type="LIMIT", price=price,
            quantity=qty, timeInForce="IOC",
        )  # fmt: skip
    finally:
        await bob.close()


def with_cod(p: two.Pair) -> two.Pair:
    """ALICE cancels on disconnect; ALICE2 a second CompID on her account, who does not."""
    p.h.add_user("ALICE", "alice-pw", ALICE, cancel_on_disconnect=True)
    p.h.add_user("ALICE2", "alice2-pw", ALICE)
    return p


def ignore(*_: object) -> None:
    """What a dead process does with its connections' data and ends."""


async def crash_gw2(p: two.Pair) -> None:
    """What SIGKILL leaves of gw2 (as ``test_gateway_restart.crash`` does for gw1): no
    logout, no flush, no commit; its connections just drop."""
    gw = p.gw2
    assert gw is not None
    for task in gw._tasks:
        task.cancel()
    if gw._server is not None:
        gw._server.close()
    for conn in list(gw.connections):  # a dead process sees no connection_lost
        conn.data_received = ignore  # type: ignore[method-assign, assignment]
        conn.connection_lost = ignore  # type: ignore[method-assign, assignment]
        if conn.transport is not None:
            conn.transport.abort()
    p.gw2 = None
    await asyncio.sleep(0.05)
    gw.close()
    if gw.api is not None:  # what the process's death frees: its REST port and client
        for server in (gw.api._fast_server, gw.api._plain_server):
            if server is not None:
                server.close()
        if gw.api.client is not None:
            await gw.api.client.close()


async def resent(p: two.Pair, comp: str, password: str, seq: int, begin: int) -> list[Any]:
    """``comp`` logged on at gw2 keeping its numbers (next ``seq``), then what its
    ResendRequest from ``begin`` brings: the application messages."""
    assert p.gw2 is not None
    again = Client(comp)
    again.seq = seq
    await again.connect(p.gw2.port)
    await again.logon(password)
    await again.send("2", (7, begin), (16, 0))
    return [m for m in await quiet(again, 0.5) if m.get(35) != b"4"]


def test_sound_a_rest_order_handled_elsewhere_while_its_gateway_is_down(pair: two.Pair) -> None:
    async def scenario(p: two.Pair) -> None:
        at2 = await client(p.url(p.gw2), "ALICE", "alice-pw")
        at1 = two.same_key(at2, p.url(p.gw1))
        try:
            a = await rest_bid(at2, "90.00", newClientOrderId="c1")
            await rest_bid(at2, "80.00", "2", newClientOrderId="c2")
            c = await rest_bid(at2, "70.00", "2", newClientOrderId="c3")
        finally:
            await at2.close()
        try:
            await p.stop_gw2()
            await at1.call("DELETE", ORDER, symbol="BTC-USD", orderId=a)
            await at1.call("PUT", ORDER, symbol="BTC-USD", orderId=c, price="71.00")
            await bob_sells(p.url(p.gw1), "80.00", "1")
            await p.start_gw2()
        finally:
            await at1.close()
        at2 = two.same_key(at1, p.url(p.gw2))
        try:
            views = [
                await at2.call("GET", ORDER, symbol="BTC-USD", origClientOrderId=cl)
                for cl in ("c1", "c2", "c3")
            ]
            got = [(v["status"], v["price"], v["executedQty"]) for v in views]
            assert got == [
                ("CANCELED", "90.00", "0.00"),
                ("PARTIALLY_FILLED", "80.00", "1.00"),
                ("NEW", "71.00", "0.00"),
            ], got
            assert await rest_bid(at2, "90.00", newClientOrderId="c1") != a
        finally:
            await at2.close()

    two.run(pair, scenario)


def test_sound_cancel_on_disconnect_at_one_gateway_leaves_the_others_orders(
    pair: two.Pair,
) -> None:
    async def scenario(p: two.Pair) -> None:
        assert p.gw2 is not None
        fix = await two.fix_at(p.gw1, "ALICE", "alice-pw")
        fix2 = await two.fix_at(p.gw2, "ALICE2", "alice2-pw")
        at2 = await client(p.url(p.gw2), "ALICE", "alice-pw")
        try:
            f1 = await fix_bid(fix, "f1", "90.00")
            g1 = await fix_bid(fix2, "g1", "89.00")
            r1 = await rest_bid(at2, "88.00", newClientOrderId="r1")
            await fix.aclose()
            accounts = p.h.router.sequencer.accounts
            await settled(lambda: accounts.open_orders(ALICE) == 2, 3.0)
            assert (await order_status(at2, f1))["status"] == "CANCELED"
            assert [(await order_status(at2, o))["status"] for o in (g1, r1)] == ["NEW"] * 2
            deadline = asyncio.get_running_loop().time() + 3.0
            while True:  # gw1 lets the claim go once its cancels are in the router's ring
                again = Client("ALICE")
                await again.connect(p.gw2.port)
                await again.send("A", (98, 0), (108, 30), (554, "alice-pw"))
                answer = await again.recv(2.0)
                assert answer is not None
                if answer.get(35) == b"A":
                    break
                await again.aclose()
                assert asyncio.get_running_loop().time() < deadline, answer
                await asyncio.sleep(0.05)
            n1 = await fix_bid(again, "n1", "87.00")
            await asyncio.sleep(0.2)  # nothing more comes for it
            assert (await order_status(at2, n1))["status"] == "NEW"
            assert accounts.open_orders(ALICE) == 3
        finally:
            await at2.close()

    two.run(with_cod(pair), scenario)


def test_sound_a_mass_cancel_at_gw2_answers_the_fix_orders_of_gw1(pair: two.Pair) -> None:
    async def scenario(p: two.Pair) -> None:
        fix = await two.fix_at(p.gw1, "ALICE", "alice-pw")
        f1 = await fix_bid(fix, "f1", "90.00")
        at2 = await client(p.url(p.gw2), "ALICE", "alice-pw")  # her first use of gw2
        try:
            gone = await at2.call("DELETE", OPEN, symbol="BTC-USD")
            assert [(o["orderId"], o["status"]) for o in gone] == [(f1, "CANCELED")], gone
            told = [fields(m, 11, 150) for m in await quiet(fix, at_least=1)]
            assert told == [(b"f1", b"4")], told
        finally:
            await at2.close()

    two.run(pair, scenario)


def test_sound_an_amend_at_gw2_of_a_gw1_rest_order_is_seen_at_gw1(pair: two.Pair) -> None:
    async def scenario(p: two.Pair) -> None:
        async with two.alice_at_both(p) as (at1, at2):
            ws = await at1.stream()
            assert (await ws.receive_json(timeout=3.0))["event"] == "snapshot"
            a = await rest_bid(at1, "90.00", "2", newClientOrderId="a1")
            await at2.call("PUT", ORDER, symbol="BTC-USD", orderId=a, price="91.00")
            view = await at1.call("GET", ORDER, symbol="BTC-USD", origClientOrderId="a1")
            assert view["price"] == "91.00", view
            again = await at1.call(
                "PUT", ORDER, symbol="BTC-USD", origClientOrderId="a1", quantity="1"
            )
            assert (again["price"], again["origQty"]) == ("91.00", "1.00"), again
            kinds = [
                (m["data"]["executionType"], m["data"]["price"], m["data"]["clientOrderId"])
                for m in await stream_messages(ws, 0.4)
                if m["event"] == "executionReport"
            ]
            assert kinds == [
                ("NEW", "90.00", "a1"),
                ("REPLACED", "91.00", "a1"),
                ("REPLACED", "91.00", "a1"),
            ], kinds
            await ws.close()

    two.run(pair, scenario)


def test_sound_status_requests_at_gw1_follow_what_gw2_did(pair: two.Pair) -> None:
    async def scenario(p: two.Pair) -> None:
        fix = await two.fix_at(p.gw1, "ALICE", "alice-pw")
        f1 = await fix_bid(fix, "f1", "90.00", "2")
        at2 = await client(p.url(p.gw2), "ALICE", "alice-pw")
        try:
            await at2.call("PUT", ORDER, symbol="BTC-USD", orderId=f1, price="91.00")
            told = [fields(m, 11, 150, 44) for m in await quiet(fix, at_least=1)]
            assert told == [(b"f1", b"D", b"91.00")], told
            await fix.send("H", *status_request("f1", "1"))
            await fix.send("AF", (584, "m1"), (585, "7"))
            told = [fields(m, 150, 39, 44) for m in await quiet(fix, at_least=2)]
            assert told == [(b"I", b"0", b"91.00")] * 2, told
            await at2.call("DELETE", ORDER, symbol="BTC-USD", orderId=f1)
            assert [fields(m, 11, 150) for m in await quiet(fix, at_least=1)] == [(b"f1", b"4")]
            await fix.send("H", *status_request("f1", "1"))
            assert [fields(m, 150, 39) for m in await quiet(fix, at_least=1)] == [(b"I", b"4")]
        finally:
            await at2.close()

    two.run(pair, scenario)


def test_sound_a_sessions_reports_made_while_its_gateway_was_down_are_resent(
    pair: two.Pair,
) -> None:
    async def scenario(p: two.Pair) -> None:
        assert p.gw2 is not None
        fix = await two.fix_at(p.gw2, "ALICE", "alice-pw")
        f1 = await fix_bid(fix, "f1", "90.00", "2")  # its 34=2
        f2 = await fix_bid(fix, "f2", "80.00", "2")  # 34=3
        await fix.send("5")
        await fix.expect("5")  # 34=4
        await fix.aclose()
        await p.stop_gw2()
        at1 = await client(p.url(p.gw1), "ALICE", "alice-pw")
        try:
            await at1.call("PUT", ORDER, symbol="BTC-USD", orderId=f1, price="91.00")
            await at1.call("DELETE", ORDER, symbol="BTC-USD", orderId=f2)
        finally:
            await at1.close()
        await p.start_gw2()
        got = await resent(p, "ALICE", "alice-pw", fix.seq, 5)
        told = [fields(m, 34, 11, 150, 44) for m in got]
        assert told == [(b"5", b"f1", b"D", b"91.00"), (b"6", b"f2", b"4", b"80.00")], told

    two.run(pair, scenario)


def test_sound_a_wrong_password_does_not_tell_a_session_is_logged_on(pair: two.Pair) -> None:
    async def scenario(p: two.Pair) -> None:
        assert p.gw2 is not None
        first = await two.fix_at(p.gw1, "ALICE", "alice-pw")
        for port in (p.gw1.port, p.gw2.port):
            bad = Client("ALICE")
            await bad.connect(port)
            await bad.send("A", (98, 0), (108, 30), (141, "Y"), (554, "wrong"))
            out = await bad.expect("5")
            assert b"bad password" in out.get(58) and b"logged on" not in out.get(58), out
            await bad.aclose()
        await first.send("1", (112, "still-283"))
        assert (await first.expect("0")).get(112) == b"still-283"

    two.run(pair, scenario)


def cancel_by_id(c: RestClient, o: int) -> Any:
    return c.call("DELETE", ORDER, symbol="BTC-USD", orderId=o)


def race(fix_msg: tuple[Any, ...], rest_call: Any, want: Any) -> Any:
    """A scenario: ALICE's FIX order at gw1, then ``fix_msg`` from her session and
    ``rest_call`` at gw2 in one router step; ``want(REST answer or error, reports)``."""

    async def scenario(p: two.Pair) -> None:
        fix = await two.fix_at(p.gw1, "ALICE", "alice-pw")
        f1 = await fix_bid(fix, "f1", "90.00", "2")
        at2 = await client(p.url(p.gw2), "ALICE", "alice-pw")
        try:
            p.h.pause()
            await fix.send(*fix_msg)
            await asyncio.sleep(0.05)  # gw1 has published it
            task = asyncio.create_task(rest_call(at2, f1))
            await asyncio.sleep(0.05)
            p.h.resume()
            try:
                answer: Any = await task
            except ApiCallError as e:
                answer = e
            want(answer, await quiet(fix, 0.4))
        finally:
            await at2.close()

    return scenario


def test_sound_a_fix_replace_and_a_rest_cancel_at_once(pair: two.Pair) -> None:
    def want(answer: Any, told: list[Any]) -> None:
        assert answer["status"] == "CANCELED" and answer["price"] == "95.00", answer
        got = [fields(m, 11, 150, 39) for m in told]
        assert got == [(b"g1", b"5", b"0"), (b"g1", b"4", b"4")], got

    g = [*order("g1", "1", "2", "95.00", "2", (59, "1")), (41, "f1")]
    two.run(pair, race(("G", *g), cancel_by_id, want))


def test_sound_a_fix_cancel_and_a_rest_cancel_at_once(pair: two.Pair) -> None:
    def want(answer: Any, told: list[Any]) -> None:
        assert isinstance(answer, ApiCallError) and answer.body["code"] == -2011, answer
        assert "too late" in answer.body["msg"], answer.body
        got = [fields(m, 11, 41, 150) for m in told]
        assert got == [(b"c1", b"f1", b"4")], got

    f = ("F", *cancel("f1", "c1", "1"))
    two.run(pair, race(f, cancel_by_id, want))


def test_sound_a_fix_cancel_and_a_rest_amend_at_once(pair: two.Pair) -> None:
    def want(answer: Any, told: list[Any]) -> None:
        assert isinstance(answer, ApiCallError) and answer.body["code"] == -2011, answer
        assert [fields(m, 11, 150) for m in told] == [(b"c1", b"4")]

    f = ("F", *cancel("f1", "c1", "1"))

    def amend(c: RestClient, o: int) -> Any:
        return c.call("PUT", ORDER, symbol="BTC-USD", orderId=o, price="93.00")

    two.run(pair, race(f, amend, want))


def test_sound_a_crashed_gateway_cancels_its_sessions_orders_and_resends_once(
    pair: two.Pair,
) -> None:
    async def scenario(p: two.Pair) -> None:
        assert p.gw2 is not None
        fix = await two.fix_at(p.gw2, "ALICE", "alice-pw")
        fix2 = await two.fix_at(p.gw1, "ALICE2", "alice2-pw")
        f1 = await fix_bid(fix, "f1", "90.00", "2")  # its 34=2
        f2 = await fix_bid(fix, "f2", "85.00", "1")  # 34=3
        g1 = await fix_bid(fix2, "g1", "89.00", "1")
        await crash_gw2(p)
        at1 = await client(p.url(p.gw1), "ALICE", "alice-pw")
        try:
            await bob_sells(p.url(p.gw1), "90.00", "1")
            assert (await order_status(at1, f1))["executedQty"] == "1.00"
            await p.start_gw2()
            accounts = p.h.router.sequencer.accounts
            await settled(lambda: accounts.open_orders(ALICE) == 1, 3.0)
            got = [(await order_status(at1, o))["status"] for o in (f1, f2, g1)]
            assert got == ["CANCELED", "CANCELED", "NEW"], got
        finally:
            await at1.close()
        told = await resent(p, "ALICE", "alice-pw", fix.seq, 4)
        got = [fields(m, 11, 150, 39, 14) for m in told]
        assert got == [
            (b"f1", b"F", b"1", b"1.00"),
            (b"f1", b"4", b"4", b"1.00"),
            (b"f2", b"4", b"4", b"0.00"),
        ], got
        assert len({m.get(17) for m in told}) == 3
        assert await quiet(fix2, 0.2) == []

    two.run(with_cod(pair), scenario)
