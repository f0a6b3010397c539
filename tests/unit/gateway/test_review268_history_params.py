"""Review 268: a hostile review of the REST history routes' parameters and rows
(``allOrders``, ``myTrades``, ``klines``, ``GET order`` from the database).

Reviewed: ``procs/gateway/rest_history.py``, ``history.py`` (``orders``, ``trades``,
``whole_trades``, ``_between``, ``klines``), ``rest_params.py`` (``integer``,
``opt_integer``, ``_integer``, ``time_span``, ``order_id``), ``rest_public.py``
(``klines``), ``rest_named.py`` (``named_order``), ``rest.py`` (``query_order``),
``unfiled_orders.py`` and ``live_trades.py`` (``merged``), and README's REST section (the
history's ordering, bounds, -1023, self-trades, commissions). Rig: ``unfiled_rig`` (real
HTTP and FIX in front of real rings, the session's PostgreSQL, the writer run by hand).

Faults: none reproduced within the review's time box.

Found sound (plain tests): every bad parameter tried (a sign, a space, an exponent or a
fraction in an integer; a value past 2**63 - 1; limit 0 or 1001; a start after the end; an
empty or missing interval; an unknown symbol) is a 400 with Binance's code whose msg names
the parameter and the value (and the range); a leading zero is taken; ``fromId`` with
``startTime``, and ``fromId`` with ``orderId``, are taken (Binance's combinations); a FIX
order replaced over FIX is one allOrders row under its id, with the new ClOrdID, price and
size, live and once filed alike, ``GET order`` finds it by its new ClOrdID and not by the old
one; a self-trade is two myTrades rows under one id (taker then maker), each with its own
commission (taker 20 bps, maker 10 bps) in the quote asset, live and filed alike, a newest
page of ``limit`` 1 keeps both; walks of allOrders by ``orderId`` and of myTrades by
``fromId`` = last + 1, 7 rows a page, over 150 orders and as many fills, half filed and half
not, list every row once with no gap, equal to the database's rows once filed.

Not reached in the time box: ``GET order`` of an order past ``keep_done`` (review 222's
ground), klines' open candle against the feed (review 196's).
"""

from __future__ import annotations

from typing import Any

import psycopg

from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import Harness, utc
from tests.unit.gateway.rest_rig import ALICE, LIMIT, fix_user, run
from tests.unit.gateway.test_review214_views_of_fills import acked, fix_order, fix_until
from tests.unit.gateway.test_review219_history_paging import ALL, KLINES, ORDER, SYM, TRADES
from tests.unit.gateway.unfiled_rig import SELL, harness

__all__ = ["harness"]  # the fixture these tests take, imported

BIG = 2**63


def test_bad_parameters_are_400s_naming_the_parameter_and_value(harness: Harness) -> None:
    """Scenario: allOrders, myTrades and klines asked with malformed, out-of-range and
    contradictory parameters. Expected: a 400 each, Binance's code, the msg naming the
    parameter and the value (and the range where there is one); a leading zero is taken, and
    so are fromId with startTime and fromId with orderId. Now: so."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            cases: list[tuple[str, dict[str, Any], int, tuple[str, ...]]] = [
                (ALL, {"limit": "+5"}, -1100, ("limit", "'+5'")),
                (ALL, {"limit": " 5"}, -1100, ("limit", "' 5'")),
                (ALL, {"orderId": "1e3"}, -1100, ("orderId", "1e3")),
                (ALL, {"startTime": "1.0"}, -1100, ("startTime", "1.0")),
                (ALL, {"startTime": 10**20}, -1100, ("startTime", str(10**20), str(BIG - 1))),
                (ALL, {"endTime": BIG}, -1100, ("endTime", str(BIG), str(BIG - 1))),
                (ALL, {"orderId": BIG}, -1100, ("orderId", str(BIG))),
                (ALL, {"limit": 0}, -1100, ("limit 0", "1..1000")),
                (TRADES, {"fromId": "x"}, -1100, ("fromId", "'x'")),
                (TRADES, {"limit": 1001}, -1100, ("limit 1001", "1..1000")),
                (TRADES, {"startTime": 9, "endTime": 8}, -1023, ("startTime 9", "endTime 8")),
            ]  # fmt: skip
            for path, q, code, named in cases:
                status, body = await alice.request("GET", path, **SYM, **q)
                assert (status, body["code"]) == (400, code), (path, q, body)
                assert all(n in body["msg"] for n in named), (path, q, body)
            k_cases: list[tuple[dict[str, Any], int, tuple[str, ...]]] = [
                ({"interval": "1m", "limit": 1001}, -1100, ("limit 1001", "1..1000")),
                ({"interval": "1m", "startTime": -1}, -1100, ("startTime -1",)),
                ({"interval": "1m", "startTime": "x"}, -1100, ("startTime", "'x'")),
                ({"interval": ""}, -1100, ("interval", "empty")),
                ({}, -1102, ("interval",)),
                ({"interval": "1m", "startTime": 5, "endTime": 4}, -1023, ("5", "4")),
                ({"interval": "1m", "symbol": "NOPE"}, -1121, ("NOPE",)),
            ]  # fmt: skip
            for q, code, named in k_cases:
                status, body = await alice.request("GET", KLINES, signed=False, **{**SYM, **q})
                assert (status, body["code"]) == (400, code), (q, body)
                assert all(n in body["msg"] for n in named), (q, body)
            for path, q in (
                (ALL, {"limit": "05"}), (TRADES, {"fromId": 1, "startTime": 1}),
                (TRADES, {"fromId": 1, "orderId": 1}),
            ):  # fmt: skip
                status, body = await alice.request("GET", path, **SYM, **q)
                assert (status, body) == (200, []), (path, q, body)

    run(h, scenario)


def test_a_fix_replace_is_one_row_named_by_its_new_client_id(harness: Harness) -> None:
    """Scenario: ALICE's FIX bid F1 replaced over FIX by F2 (price and size changed).
    Expected: allOrders lists one row under the order's id with clientOrderId F2 and the
    new price and size, live and once filed alike; GET order finds it by orderId and by
    F2, and says -2013 for F1, which no longer names it. Now: so."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            fix = await fix_user(h, "ALICE", "alice-pw")
            await fix_order(fix, "F1", "1", "0.10", (40, "2"), (44, "29000.00"), (59, "1"))
            reports = await fix_until(fix, acked("F1"))
            oid = next(int(m.get(37)) for m in reports if m.get(11) == b"F1")
            await fix.send(
                "G", (11, "F2"), (41, "F1"), (37, oid), (55, "BTC-USD"), (54, "1"),
                (60, utc()), (38, "0.20"), (40, "2"), (44, "29500.00"), (59, "1"),
            )  # fmt: skip
            await fix_until(fix, acked("F2"))
            live = await alice.call("GET", ALL, **SYM)
            await unfiled_rig.file_all(h)
            filed = await alice.call("GET", ALL, **SYM)
            for rows in (live, filed):
                assert [(o["orderId"], o["clientOrderId"], o["price"], o["origQty"])
                        for o in rows] == [(oid, "F2", "29500.00", "0.20")], rows  # fmt: skip
            assert live == filed
            by_id = await alice.call("GET", ORDER, **SYM, orderId=oid)
            by_cl = await alice.call("GET", ORDER, **SYM, origClientOrderId="F2")
            assert by_id == by_cl == filed[0]
            status, body = await alice.request("GET", ORDER, **SYM, origClientOrderId="F1")
            assert (status, body["code"]) == (400, -2013), body

    run(h, scenario)


def _sides(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    keys = ("id", "orderId", "price", "qty", "isBuyer", "isMaker", "commission", "commissionAsset")
    return [tuple(r[k] for k in keys) for r in rows]


def test_a_self_trade_lists_both_sides_with_their_commissions(harness: Harness) -> None:
    """Scenario: ALICE buys 0.10 from BOB, rests a bid and sells 0.05 into it (a self-trade).
    Expected: myTrades has the self-trade twice under one id, taker (the sell, 20 bps) then
    maker (the buy, 10 bps), commissions in USD, live and filed alike; a newest page of
    limit 1 and a page of limit 1 from its id keep both rows; orderId picks one side.
    Now: so."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.10")
            await alice.call("POST", ORDER, **LIMIT, price="30000.00", quantity="0.10",
                             timeInForce="IOC")  # fmt: skip
            bid = await alice.call("POST", ORDER, **LIMIT, price="29500.00", quantity="0.20")
            ask = await alice.call("POST", ORDER, **SELL, price="29500.00", quantity="0.05",
                                   timeInForce="IOC")  # fmt: skip
            want = [
                (2, ask["orderId"], "29500.00", "0.05", False, False, "2.950000", "USD"),
                (2, bid["orderId"], "29500.00", "0.05", True, True, "1.475000", "USD"),
            ]
            for filed in (False, True):
                if filed:
                    await unfiled_rig.file_all(h)
                rows = await alice.call("GET", TRADES, **SYM)
                assert rows[0]["commission"] == "6.000000", rows
                assert _sides(rows[1:]) == want, (filed, rows)
                pages: list[dict[str, Any]] = [{"limit": 1}, {"limit": 1, "fromId": 2}]
                for q in pages:
                    page = await alice.call("GET", TRADES, **SYM, **q)
                    assert _sides(page) == want, (filed, q, page)
                one = await alice.call("GET", TRADES, **SYM, orderId=bid["orderId"])
                assert _sides(one) == want[1:], (filed, one)

    run(h, scenario)


async def _walk(c: RestClient, path: str, first: str, key: str) -> list[int]:
    """Every row's key, walked 7 a page by the last key + 1."""
    at, out = 0, list[int]()
    for _ in range(200):  # bounded: the walk must end
        query: dict[str, Any] = {**SYM, "limit": 7, first: at}
        page = await c.call("GET", path, **query)
        if not page:
            return out
        out += [r[key] for r in page]
        at = page[-1][key] + 1
    raise AssertionError(f"{path}: the walk never ended at {at}")


def test_walks_over_hundreds_of_rows_equal_the_database(harness: Harness, dsn: str) -> None:
    """Scenario: ALICE rests 150 bids, 25 at a time, BOB sells into each lot (150 fills),
    the writer files halfway; ALICE walks allOrders by orderId and myTrades by fromId, 7 a page,
    then again once everything is filed. Expected: each walk lists every order and fill of
    hers once, in order, no gap, equal to the database's rows. Now: so."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            for n in range(6):  # 25 bids at a time: an account holds at most 100 open
                for _ in range(25):
                    await alice.call("POST", ORDER, **LIMIT, price="30000.00", quantity="0.01")
                for _ in range(5):
                    await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.05",
                                   timeInForce="IOC")  # fmt: skip
                if n == 2:
                    await unfiled_rig.file_all(h)
            live = (
                await _walk(alice, ALL, "orderId", "orderId"),
                await _walk(alice, TRADES, "fromId", "id"),
            )
            await unfiled_rig.file_all(h)
            filed = (
                await _walk(alice, ALL, "orderId", "orderId"),
                await _walk(alice, TRADES, "fromId", "id"),
            )
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                cur = await conn.execute(
                    "SELECT id FROM orders WHERE account_id = %s AND status <> 8 ORDER BY id",
                    (ALICE,),
                )
                orders = [r[0] for r in await cur.fetchall()]
                cur = await conn.execute(
                    "SELECT trade_id FROM trades WHERE maker_account_id = %s "
                    "OR taker_account_id = %s ORDER BY trade_id",
                    (ALICE, ALICE),
                )
                trades = [r[0] for r in await cur.fetchall()]
            assert len(orders) == 150 and len(trades) == 150, (len(orders), len(trades))
            assert live == filed == (orders, trades)

    run(h, scenario)
