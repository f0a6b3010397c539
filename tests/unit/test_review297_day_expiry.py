"""Review 297: DAY orders and the end of the trading session, on every surface.

Reviewed: ``procs/core/book.py`` (``_admin``, ``_remove_all``), ``procs/gateway/orders.py``
(``_done``), ``order_fields.py`` (``rested``, ``cannot_rest``, the G's TimeInForce check),
``dictionary.py`` (TimeInForce's enum), ``rest_params.py`` (``new_order``'s defaults),
``rest_order_state.py``, ``security_status.py`` (``on_event``), ``procs/core/accounts.py``
(``reserve_replace``), ``procs/dbwriter/projection.py`` (``DONE_STATUS``),
``procs/supervisor/session_clock.py``, README "Session end", "The matcher", "The FIX
gateway" and the REST API's order rules.

Rig: review 220's exchange with two matchers (``Held``: m1 BTC-USD, m2 ETH-USD; FIX and REST
over real sockets in front of real rings, an in-process router and matchers stepped in the
test's loop, m2 restartable as after a SIGKILL), its END_OF_SESSION published on the admin
ring as ``ringex admin end-session`` does; with the unit tests' private PostgreSQL and the
database writer run by hand (``unfiled_rig.file_all``) for the history; review 292's
``crash`` for a gateway killed across the end.

Faults found (each fixed; its test says what it was):

1. A FIX order with TimeInForce 6 (Good Till Date), a value FIX 4.4 defines, is answered with
   a session-level Reject (35=3, 373=5 "'6' is not one of ['0', '1', '3', '4']") instead of
   the order's own refusal (ExecutionReport 150=8 39=8, OrdRejReason 11 naming it). README
   says validation is "against the whole FIX 4.4 dictionary (QuickFIX's FIX44.xml ...)",
   whose TimeInForce holds 0-7, and that an order characteristic ringex does not act on
   (ExpireTime 126, ExpireDate 432: both so refused, checked here) refuses the order with
   OrdRejReason 11. A client OMS gets no ExecutionReport for its ClOrdID and holds the order
   Pending New. Cause: ``procs/gateway/dictionary.py:182`` narrows the enum to ringex's
   subset (40 OrdType, line 169, is narrowed alike: not run). Fixed: the dictionary takes
   FIX 4.4's enums for 40 and 59, and a new order of a type or time in force ringex does not
   support is refused, OrdRejReason 11 naming it (``order_fields.unsupported_value``); a G
   whose OrdType or TimeInForce is not its order's gets an OrderCancelReject, as before.

Sound:

- an end of session for every symbol expires exactly the DAY orders on both matchers (a REST
  DAY limit, DAY LIMIT_MAKER, DAY iceberg, untriggered DAY stop-limit, and a FIX D without
  TimeInForce: Day), each once: FIX 150=C 39=C LeavesQty 0, REST ``GET order`` EXPIRED,
  the private stream's executionReport EXPIRED; a REST LIMIT without ``timeInForce`` is
  GTC (as ``/openapi.json`` says) and stays, ``openOrders`` lists it alone, and the router
  holds exactly its dollars after;
- a replace and a cancel sequenced before the end act, and the replaced order expires at its
  new terms; sequenced after it (a FIX G and F, a REST amend and cancel in flight), each is
  refused too late (102=0 39=C; -2011 "is EXPIRED"), nothing held afterwards;
- a gateway killed before the end and started after it stores the 150=C for the FIX
  session, which a ResendRequest brings, and REST says EXPIRED;
- a matcher killed with the end unread in its ring expires the DAY orders once after its
  restart, a second restart reports nothing again, and a crossing order finds only the GTC;
- the database writer files the expiries (status 5, the iceberg's fills kept, tif 4) and
  ``allOrders`` agrees; the GTC stays NEW;
- an end of session of one halted symbol expires its DAY orders (an amended one kept DAY)
  and leaves the other symbol's and the halt; REST refuses ``timeInForce=GTD`` naming the
  ones it takes.

Leads not shown:

- ``security_status.py:113`` keeps the END_OF_SESSION's time as the symbol's status time, so
  a SecurityStatus snapshot after a halt and an end carries the end's TransactTime, not the
  halt's; README says a snapshot is "the newest event's", so not filed;
- the L2 deltas and book of an end of session were not rebuilt here: review 287 compares the
  feed with the books across ends of session;
- the supervisor's schedule (``session_clock.py``, ``journaled_ends.py``) is covered by
  reviews 8, 34, 221 and 282; not retried here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config.schema import DatabaseConfig
from procs.common.records import Transfer
from procs.common.topology import gateway_commands
from procs.common.types import AdminAction
from procs.gateway.rest import RestApi
from shm import Ring
from tests.unit.gateway.harness import CODEC, FUNDER, Client, utc
from tests.unit.gateway.rest_rig import ALICE, BOB, client, fix_user, rest_exchange, run
from tests.unit.gateway.test_gateway_restart import crash
from tests.unit.gateway.test_review44_stream import _read, _reports
from tests.unit.gateway.test_review192_exec_reports import fields, quiet
from tests.unit.gateway.test_review220_two_matchers import (
    ETH,
    Held,
    admin,
    fix_order,
    harness,
    two_symbols,
    usd,
)
from tests.unit.gateway.unfiled_rig import file_all

__all__ = ["harness"]
ORDER, OPEN = "/api/v1/order", "/api/v1/openOrders"
EVERY = 0  # END_OF_SESSION for every symbol


@pytest.fixture
def dbh(instance: str, tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Held]:
    """Review 220's two matchers, the history in ``dsn``; BOB holds ETH too."""
    monkeypatch.setattr("tests.unit.gateway.rest_rig.Harness", Held)
    for h in rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn), reshape=two_symbols):
        assert isinstance(h, Held)
        h.funder.publish_batch([Transfer(0, 0, FUNDER, 1, 99_001, BOB, ETH, 10**7, 99_001)])
        h.step_pipeline()
        h.funder_replies.read(64)
        yield h


def cursor(h: Held) -> int:
    """Records gateway 1 has published to the router."""
    ring = Ring.attach(h.cfg.instance, gateway_commands(1), CODEC)
    try:
        return ring.cursor()
    finally:
        ring.close()


async def in_ring(h: Held, before: int, n: int) -> None:
    """Until gateway 1 has published ``n`` records past ``before`` (3 s at most)."""
    deadline = time.monotonic() + 3
    while cursor(h) < before + n and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert cursor(h) >= before + n


def limit(symbol: str, price: str, qty: str = "0.10", **kw: str) -> dict[str, Any]:
    return {"symbol": symbol, "side": "BUY", "type": "LIMIT", "price": price,
            "quantity": qty, **kw}  # fmt: skip


def no_tif(cl: str, symbol: str, price: str) -> list[tuple[int, object]]:
    """A FIX buy limit without TimeInForce (59): a Day order in FIX 4.4."""
    return [(11, cl), (55, symbol), (54, "1"), (60, utc()), (38, "0.10"), (40, "2"), (44, price)]


# == found =====================================================================================


def test_a_gtd_order_over_fix_is_refused_as_an_order(harness: Held) -> None:
    """Scenario: ALICE sends a D with TimeInForce 6 (Good Till Date, a FIX 4.4 value) and an
    ExpireDate. Expected: as for ExpireDate alone (checked here), an ExecutionReport 150=8
    39=8 OrdRejReason 11 for her ClOrdID, naming TimeInForce. Was (fixed): a session-level
    Reject 35=3 373=5 371=59, "'6' is not one of ['0', '1', '3', '4']": no report for the order."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        await fix.send("D", *fix_order("x432", "BTC-USD", "1", "0.10", "90.00", "0"),
                       (432, "20261231"))  # fmt: skip
        got = await quiet(fix, 0.3, 1)
        assert [fields(m, 35, 11, 150, 39, 103) for m in got] == [
            (b"8", b"x432", b"8", b"8", b"11")
        ], got
        await fix.send("D", *fix_order("gtd", "BTC-USD", "1", "0.10", "90.00", "6"),
                       (432, "20261231"))  # fmt: skip
        got = await quiet(fix, 0.3, 1)
        assert [fields(m, 35, 11, 150, 39, 103) for m in got] == [
            (b"8", b"gtd", b"8", b"8", b"11")
        ], [fields(m, 35, 373, 371, 58) for m in got]

    run(h, scenario)


# == sound =====================================================================================


def test_sound_the_end_expires_exactly_the_day_orders_on_fix_rest_and_the_stream(
    harness: Held,
) -> None:
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(h, "ALICE", "alice-pw")
        ws = await alice.stream()
        try:
            placed = {
                "day": limit("BTC-USD", "90.00", timeInForce="DAY"),
                "default": limit("BTC-USD", "91.00"),
                "maker": {**limit("ETH-USD", "92.00", timeInForce="DAY"), "type": "LIMIT_MAKER"},
                "iceberg": limit("ETH-USD", "93.00", "0.30", icebergQty="0.10", timeInForce="DAY"),
                "stop": {
                    **limit("BTC-USD", "120.00", stopPrice="120.00", timeInForce="DAY"),
                    "type": "STOP_LOSS_LIMIT",
                },
            }
            ids = {k: (await alice.call("POST", ORDER, **p))["orderId"] for k, p in placed.items()}
            await fix.send("D", *no_tif("fx", "ETH-USD", "94.00"))
            ack = await fix.expect("8")
            assert fields(ack, 11, 150, 59) == (b"fx", b"0", b"0")
            await _read(ws, 0.3)
            admin(h, AdminAction.END_OF_SESSION, EVERY)
            got = await quiet(fix, 0.4, 1)
            assert [fields(m, 11, 150, 39, 151) for m in got] == [(b"fx", b"C", b"C", b"0.00")], got
            streamed, _ = await _read(ws, 0.4)
            expired = sorted(r["orderId"] for r in _reports(streamed))
            day = sorted([int(ack.get(37)), *(v for k, v in ids.items() if k != "default")])
            assert expired == day, streamed
            assert {r["executionType"] for r in _reports(streamed)} == {"EXPIRED"}
            for k, oid in ids.items():
                o = await alice.call("GET", ORDER, symbol=placed[k]["symbol"], orderId=oid)
                want = ("NEW", "GTC") if k == "default" else ("EXPIRED", "DAY")
                assert (o["status"], o["timeInForce"]) == want, o
            assert [o["orderId"] for o in await alice.call("GET", OPEN)] == [ids["default"]]
            assert h.router.sequencer.accounts.open_orders(ALICE) == 1
            assert usd(h)[1] == 9_118_200  # 0.10 x 91.00 and its 20 bps: the GTC's alone
        finally:
            await ws.close()
            await alice.close()

    run(h, scenario)


def test_sound_a_replace_sequenced_before_the_end_acts_and_expires_at_its_new_terms(
    harness: Held,
) -> None:
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        await fix.send("D", *fix_order("a", "BTC-USD", "1", "0.10", "90.00", "0"))
        await fix.send("D", *fix_order("b", "BTC-USD", "1", "0.10", "90.00", "0"))
        await quiet(fix, 0.3, 2)
        h.pause()
        at = cursor(h)
        await fix.send("G", (41, "a"), *fix_order("a2", "BTC-USD", "1", "0.50", "95.00", "0"))
        await fix.send("F", (41, "b"), (11, "b2"), (55, "BTC-USD"), (54, "1"), (60, utc()))
        await in_ring(h, at, 2)
        admin(h, AdminAction.END_OF_SESSION, EVERY)  # read by the router after gateway 1's
        h.resume()
        got = [fields(m, 11, 41, 150, 39, 151, 38) for m in await quiet(fix, 0.5, 3)]
        assert got == [
            (b"a2", b"a", b"5", b"0", b"0.50", b"0.50"),
            (b"b2", b"b", b"4", b"4", b"0.00", b"0.10"),
            (b"a2", b"a", b"C", b"C", b"0.00", b"0.50"),
        ], got
        assert usd(h) == (10**12, 0)

    run(h, scenario)


def test_sound_a_cancel_replace_or_amend_sequenced_after_the_end_is_too_late(
    harness: Held,
) -> None:
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await fix.send("D", *fix_order("a", "BTC-USD", "1", "0.10", "90.00", "0"))
            await fix.send("D", *fix_order("b", "BTC-USD", "1", "0.10", "90.00", "0"))
            rest = await alice.call("POST", ORDER, **limit("ETH-USD", "90.00", timeInForce="DAY"))
            await quiet(fix, 0.3, 2)
            h.pause()
            admin(h, AdminAction.END_OF_SESSION, EVERY)
            while h.router.step(timeout_s=0):  # sequenced, not yet at the matchers
                pass
            h.router.settle()
            at = cursor(h)
            await fix.send("G", (41, "a"), *fix_order("a2", "BTC-USD", "1", "0.50", "95.00", "0"))
            await fix.send("F", (41, "b"), (11, "b2"), (55, "BTC-USD"), (54, "1"), (60, utc()))
            oid = rest["orderId"]
            amend = asyncio.ensure_future(alice.request(
                "PUT", ORDER, symbol="ETH-USD", orderId=oid, price="95.00", quantity="0.50"
            ))  # fmt: skip
            cancel = asyncio.ensure_future(
                alice.request("DELETE", ORDER, symbol="ETH-USD", orderId=oid)
            )
            await in_ring(h, at, 4)
            h.resume()
            got = [fields(m, 35, 11, 150, 39, 102) for m in await quiet(fix, 0.5, 4)]
            assert got == [
                (b"8", b"a", b"C", b"C", None),
                (b"8", b"b", b"C", b"C", None),
                (b"9", b"a2", None, b"C", b"0"),
                (b"9", b"b2", None, b"C", b"0"),
            ], got
            for answer in (await amend, await cancel):
                assert answer[0] == 400 and "is EXPIRED: too late" in answer[1]["msg"], answer
            assert usd(h) == (10**12, 0)
        finally:
            await alice.close()

    run(h, scenario)


def test_sound_a_gateway_killed_across_the_end_stores_the_expiry_for_the_session(
    harness: Held,
) -> None:
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        alice = await client(url, "ALICE", "alice-pw")
        await fix.send("D", *fix_order("a", "BTC-USD", "1", "0.10", "90.00", "0"))
        await fix.send("D", *fix_order("g", "ETH-USD", "1", "0.10", "90.00", "1"))
        rest = await alice.call("POST", ORDER, **limit("ETH-USD", "90.00", timeInForce="DAY"))
        await quiet(fix, 0.3, 2)
        await alice.close()
        await crash(h)
        await fix.aclose()
        admin(h, AdminAction.END_OF_SESSION, EVERY)
        h.step_pipeline()
        await h.start()
        assert h.gateway is not None and h.gateway.api is not None
        again = Client("ALICE")
        again.seq = fix.seq
        await again.connect(h.gateway.port)
        await again.logon("alice-pw")
        await again.send("2", (7, "1"), (16, "0"))
        got = [fields(m, 11, 150, 39) for m in await quiet(again, 0.5) if m.get(35) == b"8"]
        assert got[-1] == (b"a", b"C", b"C") and (b"g", b"C", b"C") not in got, got
        alice = await client(f"http://127.0.0.1:{h.gateway.api.port}", "ALICE", "alice-pw")
        try:
            o = await alice.call("GET", ORDER, symbol="ETH-USD", orderId=rest["orderId"])
            assert o["status"] == "EXPIRED"
            assert [o["clientOrderId"] for o in await alice.call("GET", OPEN)] == ["g"]
        finally:
            await alice.close()

    run(h, scenario)


def test_sound_a_matcher_killed_with_the_end_unread_expires_once(harness: Held) -> None:
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        bob = await fix_user(h, "BOB", "bob-pw")
        await fix.send("D", *fix_order("d", "ETH-USD", "1", "0.10", "90.00", "0"))
        await fix.send("D", *fix_order("g", "ETH-USD", "1", "0.10", "89.00", "1"))
        await quiet(fix, 0.3, 2)
        h.m2_held = True
        admin(h, AdminAction.END_OF_SESSION, EVERY)
        await asyncio.sleep(0.1)  # the router goes on: the end waits in m2's ring
        h.restart_m2()
        h.m2_held = False
        got = [fields(m, 11, 150, 39) for m in await quiet(fix, 0.4, 1)]
        assert got == [(b"d", b"C", b"C")], got
        h.restart_m2()
        assert await quiet(fix, 0.3) == []
        await bob.send("D", *fix_order("s", "ETH-USD", "2", "0.20", "89.00", "3"))
        fills = [fields(m, 150, 31, 32) for m in await quiet(bob, 0.3, 3)]
        assert (b"F", b"89.00", b"0.10") in fills and len(fills) == 3, fills
        assert [fields(m, 11, 150) for m in await quiet(fix, 0.3, 1)] == [(b"g", b"F")]

    run(h, scenario)


def test_sound_postgres_files_the_expiries_and_all_orders_agrees(dbh: Held) -> None:
    h = dbh

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(h, "ALICE", "alice-pw")
        try:
            ice = limit("ETH-USD", "93.00", "0.30", icebergQty="0.10", timeInForce="DAY")
            await alice.call("POST", ORDER, **ice)
            stop = {**limit("BTC-USD", "120.00", stopPrice="120.00", timeInForce="DAY"),
                    "type": "STOP_LOSS_LIMIT"}  # fmt: skip
            await alice.call("POST", ORDER, **stop)
            await bob.call("POST", ORDER, **{**limit("ETH-USD", "93.00", "0.15"),
                                             "side": "SELL", "timeInForce": "IOC"})  # fmt: skip
            await fix.send("D", *no_tif("fx", "BTC-USD", "94.00"))
            await fix.send("D", *fix_order("fg", "BTC-USD", "1", "0.10", "95.00", "1"))
            await quiet(fix, 0.3, 2)
            admin(h, AdminAction.END_OF_SESSION, EVERY)
            await quiet(fix, 0.3, 1)  # fx expired
            await file_all(h)
            with psycopg.connect(h.cfg.database.dsn) as conn:
                rows = conn.execute(
                    "SELECT id, tif, remaining, filled, status FROM orders ORDER BY id"
                ).fetchall()
            assert rows == [(1, 4, 0, 15, 5), (2, 4, 0, 0, 5), (3, 2, 0, 15, 3), (4, 4, 0, 0, 5),
                            (5, 1, 10, 0, 1)]  # fmt: skip
            listed: list[Any] = []
            for sym in ("BTC-USD", "ETH-USD"):
                listed += await alice.call("GET", "/api/v1/allOrders", symbol=sym)
            assert sorted((o["orderId"], o["status"], o["executedQty"]) for o in listed) == [
                (1, "EXPIRED", "0.15"), (2, "EXPIRED", "0.00"), (4, "EXPIRED", "0.00"),
                (5, "NEW", "0.00"),
            ]  # fmt: skip
        finally:
            await alice.close()
            await bob.close()

    run(h, scenario)


def test_sound_the_end_of_one_halted_symbol(harness: Held) -> None:
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            gtd = await alice.request("POST", ORDER, **limit("BTC-USD", "90.00", timeInForce="GTD"))
            assert gtd[0] == 400 and "not one of DAY, FOK, GTC, IOC" in gtd[1]["msg"], gtd
            d = await alice.call("POST", ORDER, **limit("BTC-USD", "90.00", timeInForce="DAY"))
            e = await alice.call("POST", ORDER, **limit("ETH-USD", "90.00", timeInForce="DAY"))
            await alice.call(
                "PUT", ORDER, symbol="BTC-USD", orderId=d["orderId"], price="91.00",
                quantity="0.20",
            )  # fmt: skip
            admin(h, AdminAction.HALT, 1)
            admin(h, AdminAction.END_OF_SESSION, 1)
            deadline = time.monotonic() + 3
            o: dict[str, Any] = {}
            while time.monotonic() < deadline:
                o = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=d["orderId"])
                if o["status"] != "NEW":
                    break
                await asyncio.sleep(0.02)
            assert (o["status"], o["timeInForce"], o["origQty"]) == ("EXPIRED", "DAY", "0.20")
            other = await alice.call("GET", ORDER, symbol="ETH-USD", orderId=e["orderId"])
            assert other["status"] == "NEW"
            refused = await alice.request("POST", ORDER, **limit("BTC-USD", "90.00"))
            assert refused[0] == 400 and "SYMBOL_HALTED" in refused[1]["msg"], refused
            assert usd(h)[1] == 9_018_000  # the ETH bid's 9.00 and 20 bps
        finally:
            await alice.close()

    run(h, scenario)
