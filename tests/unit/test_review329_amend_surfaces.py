"""Review 329: amending orders (cancel-replace) on every surface.

Reviewed: README (the matcher's commands, the router's replace hold, FIX G, REST ``PUT
order``), procs/core/book.py (``_replace``, ``_replace_to_filled``), procs/core/fast_book.py
(``_fast_replace``), procs/core/accounts.py (``reserve_replace``, ``_replace_addition``),
procs/core/settlement.py (``_replaced``), procs/gateway/orders.py (``_named``,
``_cancel_replace``, ``_replaced``), procs/gateway/order_fields.py (``differs``,
``replace_fault``, ``amounts``), procs/gateway/rest_amend.py, procs/dbwriter projection (the
orders row).

Rig: the REST rig (``tests/unit/gateway/rest_rig.py``: real HTTP and FIX over TCP in front of
real rings, an in-process router and matcher) with review 210's helpers (``_place``,
``_replace``, ``_holds_agree``: the router's holds recomputed from the matcher's book,
``_resting``); the private PostgreSQL cluster (``dsn``) with the database writer run by hand
(``unfiled_rig.file_all``) for the orders row.

Faults found:

1. A FIX OrderCancelReplaceRequest (G) whose OrderID (37) names another of the session's
   orders than its OrigClOrdID (41) is taken, and replaces the OrigClOrdID's order; the
   report answers with that order's OrderID, not the one the client named. The gateway never
   reads tag 37 of a G or F: ``procs/gateway/orders.py:323`` (``_named`` looks the order up
   by ``f[41]`` alone). FIX 4.4 has OrderID name "the most recent order as assigned by the
   sell-side"; a client that sends both means one order, and two that disagree say the
   client's state is wrong: ringex elsewhere refuses such a field rather than drop it in
   silence (an Account (1) not the session's, a StopPx or MaxFloor a replace would change).
   Fixed: ``_named`` asks ``procs/gateway/order_id_check.py`` (``other_order_id``) whether a
   present 37 is the named order's id as the reports write it (its decimal; an absent 37 or
   NONE is not read), and where it is not, answers an OrderCancelReject (CxlRejReason 1,
   unknown order, 37 NONE, 39=8, Text naming both ids) and acts on nothing; F and G alike
   (an H's 37 is still not read: it names its order by ClOrdID alone).

Sound:

- a G that changes Side, TimeInForce or OrdType is refused (OrderCancelReject 434=2,
  CxlRejReason 99, Text naming the field and both values), the order unchanged;
- a G by an OrigClOrdID the chain has moved past (A, after A was replaced by R1) is refused
  as an unknown order (CxlRejReason 1), the order unchanged; one by the newest id is taken;
- a REST amend to a crossing price under ``EXPIRE_TAKER`` ends the order
  ``EXPIRED_IN_MATCH`` (answer, ``GET order``, stream REPLACED then TRADE_PREVENTION), its
  hold released;
- a REST amend of a ``LIMIT_MAKER`` to a crossing price is refused
  (``POST_ONLY_WOULD_TAKE``), the order as it was;
- a REST amend of a FIX order to its fills ends it: the FIX session is told once (Restated,
  39=2, LeavesQty 0), its whole hold released, and the USD balance exact (maker fee paid);
- a REST cut of a partly filled iceberg at its price keeps the slice's place, cutting the
  reserve first; holds agree with the book;
- a triggered stop-limit resting as a limit can be repriced over REST (stop price kept);
- the orders row after an amend: size the new total, remaining the total less the fills,
  and after an amend below the fills, remaining 0 and FILLED.

Leads not shown:

- A replace to a total at or below what has filled, where that total is below the symbol's
  ``min_qty`` (a 0.03 fill of an order on a symbol of min 0.05), is refused by every surface
  (``amounts`` and ``_order_qty`` at the edge, ``Book._check_qty`` before
  ``_replace_to_filled`` in book.py:343-347), though README says such a total "ends it
  (FILLED)"; a cancel does the same job, so it is not pinned.
- An amend racing a fill through another gateway (review 210's documented limit) was not
  retried here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config.schema import DatabaseConfig
from procs.common.records import Transfer
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import BTC, FUNDER, Client, Harness, utc
from tests.unit.gateway.rest_rig import (
    ALICE,
    LIMIT,
    client,
    fix_user,
    order_status,
    reports,
    rest_exchange,
    run,
)
from tests.unit.gateway.test_review210_replace import (
    BUY,
    SELL,
    _f,
    _holds_agree,
    _place,
    _replace,
    _resting,
)
from tests.unit.gateway.unfiled_rig import file_all

ORDER = "/api/v1/order"


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def _deposit_btc(h: Harness, account: int, amount: int) -> None:
    """``amount`` BTC minor units more for ``account`` (the rig gives ALICE none)."""
    h.funder.publish_batch([Transfer(0, 0, FUNDER, 1, 9_001, account, BTC, amount, 9_001)])
    h.step_pipeline()
    h.funder_replies.read(64)


async def _bid(c: RestClient, price: str, qty: str = "0.10", **kw: Any) -> dict[str, Any]:
    order = await c.call("POST", ORDER, **LIMIT, price=price, quantity=qty, **kw)
    return order  # type: ignore[no-any-return]


async def _ask(c: RestClient, price: str, qty: str, **kw: Any) -> dict[str, Any]:
    return await c.call(  # type: ignore[no-any-return]
        "POST", ORDER, symbol="BTC-USD", side="SELL", type="LIMIT", price=price, quantity=qty,
        **kw,
    )  # fmt: skip


async def _quiet(fix: Client, wait_s: float = 0.5) -> list[Any]:
    """What ``fix`` is sent within ``wait_s`` (heartbeats skipped)."""
    out = []
    while (msg := await fix.recv(wait_s)) is not None:
        if msg.get(35) != b"0":
            out.append(msg)
    return out


def _usd(balances: list[dict[str, str]]) -> tuple[str, str]:
    (usd,) = [b for b in balances if b["asset"] == "USD"]
    return usd["free"], usd["locked"]


# -- faults ---------------------------------------------------------------------------------------


def test_a_g_whose_orderid_names_another_order_is_refused(harness: Harness) -> None:
    """Scenario: ALICE's FIX bids A (0.10 at 100.00) and B (0.10 at 99.00); she sends a G with
    OrigClOrdID A and OrderID B's id, price 98.00. Expected: the two names disagree, so the G
    is refused (OrderCancelReject, CxlRejReason 1) and neither order changes. Was (fixed): the
    G was taken (150=5, 37 = A's id, not the 37 sent) and A moves to 98.00."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await fix_user(harness, "ALICE", "alice-pw")
        a = int((await _place(alice, "A", BUY, "0.10", "100.00")).get(37))
        b = int((await _place(alice, "B", BUY, "0.10", "99.00")).get(37))
        rep = await _replace(alice, "A", "R1", BUY, "0.10", "98.00", (37, b))
        resting = _resting(harness)
        assert resting[a][0] == 10_000 and resting[b][0] == 9_900, resting
        assert rep.get(35) == b"9" and rep.get(102) == b"1", rep
        assert _f(rep, 434, 41, 11) == (b"2", b"A", b"R1"), rep
        assert f"OrderID {b}".encode() in rep.get(58) and b"%d" % a in rep.get(58), rep
        # nothing was taken: R1 is still free, and the G by A alone replaces A
        rep = await _replace(alice, "A", "R1", BUY, "0.10", "98.00")
        assert _f(rep, 35, 150, 37) == (b"8", b"5", b"%d" % a), rep

    run(harness, scenario)


def test_an_f_whose_orderid_names_another_order_is_refused(harness: Harness) -> None:
    """Review 329's fault 1 for a cancel: an F with OrigClOrdID A and OrderID B's id is
    refused (OrderCancelReject 434=1, CxlRejReason 1, Text naming both ids) and neither order
    is cancelled; an OrderID no order has is refused the same way."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await fix_user(harness, "ALICE", "alice-pw")
        a = int((await _place(alice, "A", BUY, "0.10", "100.00")).get(37))
        b = int((await _place(alice, "B", BUY, "0.10", "99.00")).get(37))
        for cl, named in (("C1", b), ("C2", b + 1_000_000)):
            await alice.send(
                "F", (41, "A"), (11, cl), (55, "BTC-USD"), (54, BUY), (60, utc()), (37, named)
            )
            rep = await alice.expect("9")
            want = (b"1", b"1", b"NONE", b"8", b"A", cl.encode())
            assert _f(rep, 434, 102, 37, 39, 41, 11) == want, rep
            assert b"%d" % named in rep.get(58) and b"%d" % a in rep.get(58), rep
        assert await _quiet(alice) == []
        resting = _resting(harness)
        assert resting[a][0] == 10_000 and resting[b][0] == 9_900, resting
        _holds_agree(harness)

    run(harness, scenario)


# -- sound ----------------------------------------------------------------------------------------


def test_sound_fix_g_fields_that_may_not_change_and_an_old_clordid(harness: Harness) -> None:
    """A G changing Side, TimeInForce or OrdType is refused naming the field; a G by an
    OrigClOrdID the chain moved past is unknown; by the newest one it is taken."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await fix_user(harness, "ALICE", "alice-pw")
        oid = int((await _place(alice, "A", BUY, "0.10", "100.00")).get(37))
        rep = await _replace(alice, "A", "R1", BUY, "0.10", "99.00")
        assert _f(rep, 35, 150, 11, 41, 44) == (b"8", b"5", b"R1", b"A", b"99.00")
        rep = await _replace(alice, "A", "R2", BUY, "0.10", "97.00")
        assert _f(rep, 35, 102, 434) == (b"9", b"1", b"2")
        assert b"unknown order" in rep.get(58)
        for cl, side, extra, word in (
            ("R3", SELL, (), b"Side 2"),
            ("R4", BUY, ((59, "1"),), b"TimeInForce 1"),
        ):
            rep = await _replace(alice, "R1", cl, side, "0.10", "97.00", *extra)
            assert _f(rep, 35, 102, 434) == (b"9", b"99", b"2") and word in rep.get(58), rep
        await alice.send(
            "G", (41, "R1"), (11, "R5"), (55, "BTC-USD"), (54, BUY), (60, utc()), (38, "0.10"),
            (40, "1"),
        )  # fmt: skip
        rep = await alice.expect("9")
        assert rep.get(102) == b"99" and b"OrdType 1" in rep.get(58)
        assert _resting(harness)[oid] == (9_900, 10, 0)
        rep = await _replace(alice, "R1", "R6", BUY, "0.05", "99.00")
        assert _f(rep, 35, 150, 41, 151) == (b"8", b"5", b"R1", b"0.05")
        _holds_agree(harness)

    run(harness, scenario)


def test_sound_a_g_and_an_f_with_the_orders_own_orderid_are_taken(harness: Harness) -> None:
    """A G carrying the order's own OrderID (37, as its reports give it) is taken, and so is
    one carrying 37=NONE (an id never received) and an F carrying the right one."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await fix_user(harness, "ALICE", "alice-pw")
        oid = int((await _place(alice, "A", BUY, "0.10", "100.00")).get(37))
        rep = await _replace(alice, "A", "R1", BUY, "0.10", "99.00", (37, oid))
        assert _f(rep, 35, 150, 37, 41, 44) == (b"8", b"5", b"%d" % oid, b"A", b"99.00")
        rep = await _replace(alice, "R1", "R2", BUY, "0.10", "98.00", (37, "NONE"))
        assert _f(rep, 35, 150, 37, 41, 44) == (b"8", b"5", b"%d" % oid, b"R1", b"98.00")
        assert _resting(harness)[oid][0] == 9_800
        await alice.send(
            "F", (41, "R2"), (11, "C1"), (55, "BTC-USD"), (54, BUY), (60, utc()), (37, oid)
        )
        rep = await alice.expect("8")
        assert _f(rep, 150, 39, 37, 41) == (b"4", b"4", b"%d" % oid, b"R2"), rep
        assert oid not in _resting(harness)
        _holds_agree(harness)

    run(harness, scenario)


def test_sound_rest_amend_crossing_self_and_a_crossing_post_only(harness: Harness) -> None:
    """A crossing amend under EXPIRE_TAKER ends the order in the match everywhere, its hold
    released; a LIMIT_MAKER amended to cross is refused and stays as it was."""
    _deposit_btc(harness, ALICE, 10**6)

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            ws = await alice.stream()
            await _ask(alice, "101.00", "0.10")
            bid = await _bid(alice, "100.00", selfTradePreventionMode="EXPIRE_TAKER")
            out = await alice.call(
                "PUT", ORDER, symbol="BTC-USD", orderId=bid["orderId"], price="101.00"
            )
            assert out["status"] == "EXPIRED_IN_MATCH" and out["executedQty"] == "0.00"
            assert (await order_status(alice, bid["orderId"]))["status"] == "EXPIRED_IN_MATCH"
            _holds_agree(harness)
            maker = await alice.call(
                "POST", ORDER, symbol="BTC-USD", side="BUY", type="LIMIT_MAKER", price="100.00",
                quantity="0.10",
            )  # fmt: skip
            status, body = await alice.request(
                "PUT", ORDER, symbol="BTC-USD", orderId=maker["orderId"], price="101.00"
            )
            assert status == 400 and "POST_ONLY_WOULD_TAKE" in body["msg"]
            now = await order_status(alice, maker["orderId"])
            assert (now["price"], now["status"]) == ("100.00", "NEW")
            _holds_agree(harness)
            kinds = [
                r["executionType"]
                for r in await reports(ws, 1.0)
                if r["orderId"] == bid["orderId"] and "executionType" in r
            ]
            assert kinds == ["NEW", "REPLACED", "TRADE_PREVENTION"], kinds
            await ws.close()
        finally:
            await alice.close()

    run(harness, scenario)


def test_sound_rest_amends_of_fix_stop_and_iceberg_orders(harness: Harness) -> None:
    """A FIX order amended over REST to its fills ends, its session told once, its hold
    released to the cent; a triggered stop-limit is repriced; a partly filled iceberg cut
    at its price keeps its place, the reserve cut first."""

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(harness, "ALICE", "alice-pw")
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            oid = int((await _place(fix, "A", BUY, "0.50", "100.00")).get(37))
            await _ask(bob, "100.00", "0.20")
            assert (await fix.expect("8")).get(150) == b"F"
            # 0.30 open at 100.00 holds 30.00 plus the 20 bps fee margin
            assert _usd((await alice.call("GET", "/api/v1/account"))["balances"]) == (
                "999949.920000", "30.060000",
            )  # fmt: skip
            out = await alice.call("PUT", ORDER, symbol="BTC-USD", orderId=oid, quantity="0.20")
            assert (out["status"], out["origQty"], out["clientOrderId"]) == ("FILLED", "0.20", "A")
            told = await _quiet(fix)
            assert [_f(m, 150, 39, 151, 38) for m in told] == [(b"D", b"2", b"0.00", b"0.20")]
            # 20.00 paid and its 10 bps maker fee: nothing left locked
            assert _usd((await alice.call("GET", "/api/v1/account"))["balances"]) == (
                "999979.980000", "0.000000",
            )  # fmt: skip
            stop = await alice.call(
                "POST",
                ORDER,
                symbol="BTC-USD",
                side="BUY",
                type="STOP_LOSS_LIMIT",
                price="101.00",
                stopPrice="100.00",
                quantity="0.10",
                timeInForce="GTC",
            )  # fmt: skip (triggered on arrival: the last trade is 100.00)
            out = await alice.call(
                "PUT", ORDER, symbol="BTC-USD", orderId=stop["orderId"], price="99.00"
            )
            assert (out["price"], out["stopPrice"], out["status"]) == ("99.00", "100.00", "NEW")
            _holds_agree(harness)
            ice = await _bid(alice, "98.00", "1.00", icebergQty="0.10")
            behind = await _bid(alice, "98.00", "0.10")
            await _ask(bob, "98.00", "0.15", timeInForce="IOC")  # 0.10 at 99, 0.05 of ice
            assert _resting(harness)[ice["orderId"]] == (9_800, 5, 90)
            out = await alice.call(
                "PUT", ORDER, symbol="BTC-USD", orderId=ice["orderId"], quantity="0.50"
            )
            assert (out["executedQty"], out["origQty"], out["icebergQty"]) == (
                "0.05", "0.50", "0.10",
            )  # fmt: skip
            assert _resting(harness)[ice["orderId"]] == (9_800, 5, 40)
            _holds_agree(harness)
            await _ask(bob, "98.00", "0.05", timeInForce="IOC")  # the slice kept its place
            assert (await order_status(alice, ice["orderId"]))["executedQty"] == "0.10"
            assert (await order_status(alice, behind["orderId"]))["executedQty"] == "0.00"
            _holds_agree(harness)
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_sound_the_orders_row_after_amends(instance: str, tmp_path: Path, dsn: str) -> None:
    """The orders row follows an amend (size the new total, remaining what is open) and one
    below the fills (remaining 0, FILLED)."""
    exchange = rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn))
    h = next(exchange)
    query = "SELECT price, size, remaining, filled, status FROM orders WHERE id = %s"

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            oid = (await _bid(alice, "100.00", "0.50"))["orderId"]
            await _ask(bob, "100.00", "0.20")
            await alice.call(
                "PUT", ORDER, symbol="BTC-USD", orderId=oid, price="99.00", quantity="0.40"
            )
            await file_all(h)
            with psycopg.connect(dsn) as conn:
                assert conn.execute(query, (oid,)).fetchall() == [(9_900, 40, 20, 20, 2)]
            await alice.call("PUT", ORDER, symbol="BTC-USD", orderId=oid, quantity="0.10")
            await file_all(h)
            with psycopg.connect(dsn) as conn:
                assert conn.execute(query, (oid,)).fetchall() == [(9_900, 20, 0, 20, 3)]
        finally:
            await alice.close()
            await bob.close()

    try:
        run(h, scenario)
    finally:
        next(exchange, None)  # the rig's teardown: the harness closed
