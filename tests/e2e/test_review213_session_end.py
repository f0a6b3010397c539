"""Hostile review 213: the end of the trading session (END_OF_SESSION, ``ringex admin
end-session``) and DAY orders, across every view.

Method: the REST rig (``tests/unit/gateway/rest_rig.py``: a gateway over real TCP and HTTP in
front of real rings, an in-process router and matcher) with simplefix FIX clients and the
private WebSocket stream; the END_OF_SESSION goes in through the admin ring, as ``ringex
admin`` sends it. After each step the router's holds are recomputed from the matcher's
resting and waiting orders (``_holds_agree``). A barrier order (its ack comes after every
event of a command sequenced before it) ends each wait for reports: nothing is judged by
sleeping. The crash test runs the whole exchange (``ringex run``) and SIGKILLs the matcher
and the router; the restart test restarts the whole exchange on new rings (the gateway
restart tests' rig). Found: no fault; every view held."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import simplefix  # ships no type information

from config import load_profile
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.records import AdminCommand
from procs.common.topology import postgres_dir
from procs.common.types import AdminAction, TimeInForce
from procs.core.recovery import recover
from procs.core.resting import order_from_fields
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import ApiCallError
from shm.inspect import remove_instance
from tests.e2e.running import ringex, running_exchange
from tests.e2e.test_pipeline import kill_and_wait
from tests.unit.gateway.harness import (
    Client,
    Harness,
    close_all,
    config,
    run_scenario,
    settled,
    utc,
)
from tests.unit.gateway.rest_rig import client, fix_user, rest_exchange, run, stream_messages
from tests.unit.gateway.test_gateway_restart import back_on, crash
from tests.unit.gateway.test_review210_replace import _holds_agree

BUY, SELL = "1", "2"
DAY, GTC, IOC = "0", "1", "3"
ORDER = "/api/v1/order"


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


# -- helpers ------------------------------------------------------------------------------------


async def _order(
    fix: Client, cl: str, side: str, qty: str, price: str, tif: str, *extra: tuple[int, Any]
) -> None:
    """A limit order (``extra`` may make it a stop-limit or an iceberg)."""
    typ = "4" if any(tag == 99 for tag, _ in extra) else "2"
    await fix.send(
        "D", (11, cl), (55, "BTC-USD"), (54, side), (60, utc()), (38, qty), (40, typ),
        (44, price), (59, tif), *extra,
    )  # fmt: skip


async def _until(fix: Client, cl: bytes, exec_type: bytes) -> list[simplefix.FixMessage]:
    """Every execution report and cancel reject up to and including ``cl``'s report with
    ``exec_type``."""
    got: list[simplefix.FixMessage] = []
    while True:
        msg = await fix.recv(5.0)
        assert msg is not None, f"no report {exec_type!r} of {cl!r}; got {got}"
        if msg.get(35) not in (b"8", b"9"):
            continue
        got.append(msg)
        if msg.get(11) == cl and msg.get(150) == exec_type:
            return got


def _end_session(h: Harness, symbol: int = 1) -> None:
    """END_OF_SESSION through the admin ring, as ``ringex admin end-session`` sends it."""
    h.funder.publish_batch([AdminCommand(0, 0, AdminAction.END_OF_SESSION, symbol, time.time_ns())])


def _day_left(h: Harness) -> list[int]:
    book = h.matcher.matcher.books[1]
    every = [*book.orders.values(), *book.stops.values()]
    return sorted(o.order_id for o in every if o.tif == TimeInForce.DAY)


def _expired(event: dict[str, Any]) -> bool:
    return bool(event["event"] == "executionReport" and event["data"]["status"] == "EXPIRED")


async def _stream_until(ws: Any, cl: str) -> list[dict[str, Any]]:
    """The stream's messages up to the first report of ``cl`` (seq checked gapless)."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5.0
    while not any(e.get("data", {}).get("clientOrderId") == cl for e in events):
        assert time.monotonic() < deadline, f"no report of {cl} on the stream: {events}"
        events += await stream_messages(ws, 0.2)
    seqs = [e["seq"] for e in events if "seq" in e]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    return events


def _f(msg: simplefix.FixMessage, *tags: int) -> tuple[bytes | None, ...]:
    return tuple(msg.get(t) for t in tags)


async def _sequenced(h: Harness, seq: int) -> None:
    await settled(lambda: h.router.sequencer.next_seq >= seq, 5.0)
    assert h.router.sequencer.next_seq >= seq


# -- every view ---------------------------------------------------------------------------------


def test_every_kind_of_day_order_expires_once_in_every_view(harness: Harness) -> None:
    """Scenario: ALICE (FIX) rests a plain DAY bid, a DAY iceberg (0.50 showing 0.10), a DAY
    bid partly filled (0.20 of 0.50 at 100.50), a DAY stop-limit waiting (stop 150.00) and one
    triggered by that fill (stop 100.50, limit 95.00: rests), and a GTC bid; BOB a DAY and a
    GTC ask. END_OF_SESSION for BTC-USD. Expected: ALICE's FIX session gets exactly one
    Expired (150=C, 39=C, 151=0) per DAY order, CumQty and AvgPx kept on the partly filled
    one; GET order says EXPIRED; openOrders keeps only the GTC bid; the private stream one
    EXPIRED report per order with gapless seq; the book keeps only GTC orders and holds agree
    with it; BOB's DAY ask expires, his GTC ask rests."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await fix_user(harness, "ALICE", "alice-pw")
        bob = await fix_user(harness, "BOB", "bob-pw")
        rest = await client(url, "ALICE", "alice-pw")
        ws = await rest.stream()
        await _order(alice, "plain", BUY, "0.10", "100.00", DAY)
        await _order(alice, "ice", BUY, "0.50", "99.00", DAY, (111, "0.10"))
        await _order(alice, "part", BUY, "0.50", "100.50", DAY)
        await _order(alice, "trig", BUY, "0.30", "95.00", DAY, (99, "100.50"))
        await _order(alice, "gtc", BUY, "0.10", "98.00", GTC)
        await _until(alice, b"gtc", b"0")
        await _order(bob, "hit", SELL, "0.20", "100.50", IOC)
        await _until(bob, b"hit", b"F")
        await _order(alice, "wait", BUY, "0.10", "150.00", DAY, (99, "150.00"))
        await _until(alice, b"wait", b"0")
        await _order(bob, "bday", SELL, "0.10", "200.00", DAY)
        await _order(bob, "bgtc", SELL, "0.10", "201.00", GTC)
        await _until(bob, b"bgtc", b"0")
        _holds_agree(harness)
        ids = {o.cl_ord_id: o.order_id for o in harness.gateway.entry.by_id.values()}  # type: ignore[union-attr]

        _end_session(harness)
        await settled(lambda: _day_left(harness) == [], 5.0)
        await _order(alice, "barrier", BUY, "0.01", "10.00", GTC)
        got = await _until(alice, b"barrier", b"0")
        expired = [m for m in got if m.get(150) == b"C"]
        assert sorted(m.get(11) for m in expired) == [b"ice", b"part", b"plain", b"trig", b"wait"]
        assert all(_f(m, 39, 151) == (b"C", b"0.00") for m in expired), expired
        (part,) = [m for m in expired if m.get(11) == b"part"]
        assert _f(part, 14, 38) == (b"0.20", b"0.50") and float(part.get(6)) == 100.5
        assert len(got) == len(expired) + 1, got  # nothing else but the barrier's ack
        assert [m.get(11) for m in await _until(bob, b"bday", b"C")] == [b"bday"]

        book = harness.matcher.matcher.books[1]
        assert sorted(o.tif for o in book.orders.values()) == [TimeInForce.GTC] * 3
        assert not book.stops
        _holds_agree(harness)

        for cl in (b"plain", b"ice", b"part", b"trig", b"wait"):
            seen = await rest.call("GET", "/api/v1/order", symbol="BTC-USD", orderId=ids[cl])
            assert seen["status"] == "EXPIRED", seen
        opened = await rest.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
        assert sorted(o["clientOrderId"] for o in opened) == ["barrier", "gtc"], opened

        events = await _stream_until(ws, "barrier")
        done = [e["data"]["clientOrderId"] for e in events if _expired(e)]
        assert sorted(done) == ["ice", "part", "plain", "trig", "wait"], events
        await ws.close()
        await rest.close()

    run(harness, scenario)


# -- twice, halted ------------------------------------------------------------------------------


def test_a_second_end_and_an_end_while_halted(harness: Harness) -> None:
    """Scenario: ALICE's DAY bid over FIX and DAY and GTC bids over REST; BTC-USD halted, then
    END_OF_SESSION twice, then resumed. Expected: each DAY order expires once (FIX 150=C, REST
    EXPIRED, the stream's one report), the second end says nothing; a mass status lists none
    of them; the symbol stays halted through the end (a new order refused) until resumed;
    holds agree."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await fix_user(harness, "ALICE", "alice-pw")
        rest = await client(url, "ALICE", "alice-pw")
        ws = await rest.stream()
        try:
            await _order(alice, "fday", BUY, "0.10", "100.00", DAY)
            await _until(alice, b"fday", b"0")
            limit: dict[str, Any] = {
                "symbol": "BTC-USD",
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "0.10",
            }
            rday = await rest.call("POST", ORDER, **limit, price="99.00", timeInForce="DAY")
            rgtc = await rest.call("POST", ORDER, **limit, price="98.00", timeInForce="GTC")
            halt = AdminCommand(0, 0, AdminAction.HALT, 1, time.time_ns())
            harness.funder.publish_batch([halt])
            await settled(lambda: harness.matcher.matcher.books[1].halted, 5.0)
            seq = harness.router.sequencer.next_seq
            _end_session(harness)
            _end_session(harness)
            await _sequenced(harness, seq + 2)
            assert _day_left(harness) == [] and harness.matcher.matcher.books[1].halted
            await _order(alice, "halted", BUY, "0.01", "10.00", GTC)
            got = await _until(alice, b"halted", b"8")
            assert [_f(m, 11, 150, 39) for m in got] == [
                (b"fday", b"C", b"C"), (b"halted", b"8", b"8"),
            ]  # fmt: skip
            await alice.send("AF", (584, "ms"), (585, "7"))  # her open orders: none
            status = await alice.expect("8")
            assert _f(status, 150, 37, 911) == (b"I", b"NONE", b"0"), status
            resume = AdminCommand(0, 0, AdminAction.RESUME, 1, time.time_ns())
            harness.funder.publish_batch([resume])
            await settled(lambda: not harness.matcher.matcher.books[1].halted, 5.0)
            await _order(alice, "barrier", BUY, "0.01", "10.00", GTC)
            assert [_f(m, 11, 150) for m in await _until(alice, b"barrier", b"0")] == [
                (b"barrier", b"0")
            ]
            for placed, status in ((rday, "EXPIRED"), (rgtc, "NEW")):
                ref = {"symbol": "BTC-USD", "orderId": placed["orderId"]}
                assert (await rest.call("GET", ORDER, **ref))["status"] == status
            _holds_agree(harness)
            events = await _stream_until(ws, "barrier")
            ends = [e["data"]["clientOrderId"] for e in events if _expired(e)]
            assert sorted(ends) == sorted(["fday", rday["clientOrderId"]]), events
            await ws.close()
        finally:
            await rest.close()

    run(harness, scenario)


# -- races --------------------------------------------------------------------------------------


def test_cancels_replaces_and_amends_sequenced_behind_the_end(harness: Harness) -> None:
    """Scenario: ALICE's DAY bids F1, F2 (FIX) and R1, R2 (REST); the pipeline paused, the end
    is sequenced first, then a FIX cancel of F1, a FIX replace of F2, a REST amend of R1, a
    REST cancel of R2 and a new DAY bid N. Expected: each of the four expires once (FIX 150=C,
    REST EXPIRED); the FIX cancel and replace are refused (35=9, OrdStatus 39=C, too late),
    the REST amend and cancel answered with an error, none resurrects its order; N rests (a
    new session's order); holds agree with the book."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await fix_user(harness, "ALICE", "alice-pw")
        rest = await client(url, "ALICE", "alice-pw")
        try:
            await _order(alice, "F1", BUY, "0.10", "100.00", DAY)
            await _order(alice, "F2", BUY, "0.10", "99.00", DAY)
            await _until(alice, b"F2", b"0")
            limit: dict[str, Any] = {
                "symbol": "BTC-USD",
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "0.10",
            }
            r1 = await rest.call("POST", ORDER, **limit, price="98.00", timeInForce="DAY")
            r2 = await rest.call("POST", ORDER, **limit, price="97.00", timeInForce="DAY")
            harness.pause()
            seq = harness.router.sequencer.next_seq
            _end_session(harness)
            while harness.router.sequencer.next_seq == seq:  # the end alone sequenced
                harness.router.step(timeout_s=0)
            await alice.send("F", (41, "F1"), (11, "C1"), (55, "BTC-USD"), (54, BUY), (60, utc()))
            await alice.send(
                "G", (41, "F2"), (11, "G2"), (55, "BTC-USD"), (54, BUY), (60, utc()),
                (38, "0.20"), (40, "2"), (44, "99.00"), (59, DAY),
            )  # fmt: skip
            amend = asyncio.create_task(
                rest.call("PUT", ORDER, symbol="BTC-USD", orderId=r1["orderId"], quantity="0.05")
            )
            cancel = asyncio.create_task(
                rest.call("DELETE", ORDER, symbol="BTC-USD", orderId=r2["orderId"])
            )
            await _order(alice, "N", BUY, "0.10", "96.00", DAY)
            await settled(lambda: len(api.core.requests) >= 2 and not api.core.outgoing, 5.0)
            harness.resume()
            answers = await asyncio.gather(amend, cancel, return_exceptions=True)
            assert all(isinstance(a, ApiCallError) for a in answers), answers
            got = await _until(alice, b"N", b"0")
            seen = sorted(_f(m, 35, 11, 150, 39) for m in got if m.get(150) == b"C")
            assert seen == [(b"8", b"F1", b"C", b"C"), (b"8", b"F2", b"C", b"C")], seen
            msgs = [m for m in got if m.get(35) == b"9"]
            assert sorted(_f(m, 11, 39, 434) for m in msgs) == [
                (b"C1", b"C", b"1"), (b"G2", b"C", b"2"),
            ]  # fmt: skip
            for placed in (r1, r2):
                ref = {"symbol": "BTC-USD", "orderId": placed["orderId"]}
                assert (await rest.call("GET", ORDER, **ref))["status"] == "EXPIRED"
            book = harness.matcher.matcher.books[1]
            assert [(o.price, o.leaves) for o in book.orders.values()] == [(9_600, 10)]
            _holds_agree(harness)
        finally:
            await rest.close()

    run(harness, scenario)


# -- crashes (the whole exchange) ---------------------------------------------------------------


def test_matcher_and_router_killed_right_after_the_end(instance: str, tmp_path: Path) -> None:
    """Scenario (``ringex run``, the database writer on): MM rests DAY asks d1, d2 and a GTC
    ask g1; ``ringex admin end-session BTC-USD`` and at once SIGKILL of the matcher; then a
    DAY ask d3, another end of session and at once SIGKILL of the router. Expected: d1, d2,
    d3 each reported Expired exactly once (the end the CLI said was sent is not lost with the
    router), g1 never; after a clean stop the journal's book holds only g1 and the barrier,
    and the database rows say EXPIRED for d1..d3 with their size left unfilled."""
    with running_exchange(instance, tmp_path) as profile:
        cfg = load_profile(str(profile))
        ringex(profile, "admin", "add-user", "--username", "MM", "--password", "pw",
               "--deposit", "BTC=10")  # fmt: skip

        async def session() -> list[tuple[bytes | None, ...]]:
            mm = Client("MM")
            await mm.connect(cfg.gateways[0].port)
            await mm.logon("pw")
            seen: list[simplefix.FixMessage] = []
            for cl, tif, price in (("d1", DAY, "100.00"), ("d2", DAY, "101.00"),
                                   ("g1", GTC, "102.00")):  # fmt: skip
                await _order(mm, cl, SELL, "1", price, tif)
            seen += await _until(mm, b"g1", b"0")
            ringex(profile, "admin", "end-session", "BTC-USD")
            await kill_and_wait(cfg, "matcher-m1")
            seen += await _until(mm, b"d2", b"C")
            await _order(mm, "d3", SELL, "1", "103.00", DAY)
            seen += await _until(mm, b"d3", b"0")
            ringex(profile, "admin", "end-session", "BTC-USD")
            await kill_and_wait(cfg, "router")
            seen += await _until(mm, b"d3", b"C")
            await _order(mm, "barrier", SELL, "1", "150.00", GTC)
            seen += await _until(mm, b"barrier", b"0")
            await mm.aclose()
            return [_f(m, 11, 150, 39, 151) for m in seen]

        said = asyncio.run(session())
        ends = sorted(s for s in said if s[1] == b"C")
        assert [e[0] for e in ends] == [b"d1", b"d2", b"d3"], said
        assert len(said) == 4 + 3 + 1, said  # four acks, three expiries, the barrier
        ringex(profile, "stop")
        state = recover(cfg)
        (book,) = [b for b in state.matchers["m1"].state().books if b.symbol == 1]
        kept = sorted((o.price, o.tif) for o in map(order_from_fields, book.orders))
        assert kept == [(10_200, TimeInForce.GTC), (15_000, TimeInForce.GTC)], kept
        with psycopg.connect(EmbeddedPostgres(postgres_dir(cfg)).start()) as conn:
            rows = conn.execute(
                "SELECT price, status, remaining, filled FROM orders ORDER BY price"
            ).fetchall()
        assert rows == [
            (10_000, 5, 0, 0), (10_100, 5, 0, 0), (10_200, 1, 10_000, 0), (10_300, 5, 0, 0),
            (15_000, 1, 10_000, 0),
        ], rows  # fmt: skip


# -- a full restart across the end --------------------------------------------------------------


def test_an_end_the_gateway_missed_is_reported_after_a_full_restart(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE rests DAY bid d1 and GTC bid g1 over FIX; her gateway dies (what
    SIGKILL leaves); END_OF_SESSION is sequenced and executed while it is down; then the
    whole exchange restarts on new rings and she logs on again. Expected: d1's expiry is
    sent once (150=C: MsgSeqNum 4 while she was off, resent on her ResendRequest), as README
    says a full restart makes the missed events again from the journal; an
    OrderStatusRequest of d1 says 39=C, of g1 39=0."""
    cfg = config(instance, tmp_path)
    first = Harness(cfg)
    first.add_user("ALICE", "secret", 7)
    first.fund(7)
    seq = 1

    async def before() -> None:
        nonlocal seq
        port = await first.start()
        alice = await back_on(port, "ALICE", 1)
        await _order(alice, "d1", BUY, "1.00", "100.00", DAY)
        await _order(alice, "g1", BUY, "1.00", "99.00", GTC)
        seq = alice.seq
        await _until(alice, b"g1", b"0")
        await crash(first)
        await close_all()
        _end_session(first)
        first.step_pipeline()
        assert _day_left(first) == []

    asyncio.run(before())
    first.close()
    remove_instance(instance)
    again = Harness(cfg)

    async def after(h: Harness, port: int) -> None:
        alice = await back_on(port, "ALICE", seq)
        assert alice.received[-1].get(34) == b"5"  # 4, the expiry, sent while she was off
        await alice.send("2", (7, 4), (16, 0))  # ResendRequest, as her engine sends it
        got = await _until(alice, b"d1", b"C")
        await _order(alice, "barrier", BUY, "0.01", "10.00", GTC)
        got += await _until(alice, b"barrier", b"0")
        assert [_f(m, 11, 150, 39, 151) for m in got] == [
            (b"d1", b"C", b"C", b"0.00"), (b"barrier", b"0", b"0", b"0.01"),
        ], [_f(m, 11, 150, 39, 58) for m in got]  # fmt: skip
        for cl, status in ((b"d1", b"C"), (b"g1", b"0")):
            await alice.send("H", (11, cl), (55, "BTC-USD"), (54, BUY))
            assert (await alice.expect("8")).get(39) == status

    run_scenario(again, after)
