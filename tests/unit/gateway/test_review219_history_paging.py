"""Review 219: a hostile review of the REST history (``allOrders``, ``myTrades``, ``klines``)
while the database writer files it: pages walked by the last id + 1 while orders and fills
keep coming and the writer catches up between (and during) the calls, rows compared live and
once filed, windows on their edges, and the errors of bad parameters.

Reviewed: ``procs/gateway/rest_history.py``, ``unfiled_orders.py`` (``merged``,
``forget_filed``), ``live_trades.py`` (``merged``), ``history.py`` (``orders``, ``trades``,
``_between``, ``klines``), ``rest_orders.py`` (the live views' seqs and times),
``rest_order_state.py`` (``from_fix``, ``json``), ``rest_public.py`` (``klines``'s checks)
and ``rest_params.py`` (``integer``, ``time_span``).
Rig: ``unfiled_rig`` (real HTTP and FIX in front of real rings, the session's PostgreSQL,
the writer run by hand: ``file_all``); ALICE trades over REST and over FIX on one account,
BOB over REST.

Faults found, both fixed (their tests begin "Was (fixed)"):

1. ``procs/gateway/rest_catch_up.py:138-143`` (``_follow_recent`` takes a ``Trade`` only for
   an order whose ``Accepted`` it follows anew) with ``rest_interest.py:60``
   (``_follow_fix_orders``, run first, follows the user's open FIX orders from the FIX order
   entry, counts included, so their ``Accepted`` is skipped): a fill of a FIX order made
   before the account's first signed request (or during a lapse of its interest) is counted
   in ``GET order`` and ``allOrders`` but never reaches ``LiveTrades``: ``myTrades`` lacks it
   until the writer files it. Test: ``test_a_fix_fill_before_the_api_was_used_is_in_my_trades``.
2. ``procs/gateway/unfiled_orders.py:152`` and ``:170`` (``merged`` takes the index's
   ``LiveOrder`` before ``followed.known`` / ``open_orders``) with ``rest_interest.py:96``
   (``_forget_account`` lets go of a FIX order's view in ``live`` but not in the unfiled
   index): after a lapse of interest, the FIX order is followed again as a new object
   (``_follow_fix_orders``) and ``GET order`` shows its fill, while ``allOrders`` shows the
   stale object of before the lapse (NEW, nothing filled) until the writer files it. Test:
   ``test_after_an_interest_lapse_all_orders_agrees_with_get_order``.

Found sound (plain tests): walking allOrders by ``orderId`` = last + 1 and myTrades by
``fromId`` = last + 1, one row a page, while ALICE's REST and FIX orders are placed and
filled and the writer files between pages (and in the same instant as a page), lists every
order and fill of hers once, in id order, and none of BOB's; each order's row (status,
executedQty, updateTime, time, clientOrderId, type, isWorking) is the same live, once the
writer filed it, and as the database alone says it; each fill's id, time, price, quantity and
commission the same live and filed; ``startTime`` and ``endTime`` equal to a row's time take
it in, a ms either side leaves it out, live and filed alike; the newest ``limit`` 1 is the
newest order or fill, unfiled included; ``limit`` 1000 is taken, 1001 and negative ids and
times are 400s naming the value; klines on a bucket's edge (start = end = the open time)
answer that one kline with the filed trades' volume, an end 1 ms before it none, and an
interval not served (``1s``, ``1M``, ``1w``, ``8h``) is -1120 naming it.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from procs.gateway.history import order_json
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import ALICE, LIMIT, fix_user, run
from tests.unit.gateway.test_review214_views_of_fills import acked, fix_order, fix_until
from tests.unit.gateway.unfiled_rig import SELL, harness

__all__ = ["harness"]  # the fixture these tests take, imported

ORDER, ALL, TRADES, KLINES = (
    "/api/v1/order",
    "/api/v1/allOrders",
    "/api/v1/myTrades",
    "/api/v1/klines",
)
SYM: dict[str, Any] = {"symbol": "BTC-USD"}
#: the order fields that must read the same live and once filed (the table keeps no
#: notional: a filed row's cummulativeQuoteQty is null, README)
SAME = (
    "orderId", "clientOrderId", "price", "origQty", "executedQty", "status", "timeInForce",
    "type", "side", "stopPrice", "icebergQty", "time", "updateTime", "isWorking",
)  # fmt: skip
TRADE_SAME = (
    "id", "orderId", "price", "qty", "quoteQty", "time", "isBuyer", "isMaker", "commission",
    "commissionAsset",
)  # fmt: skip


async def _page(c: RestClient, path: str, first: str, at: int, limit: int) -> list[Any]:
    query: dict[str, Any] = {**SYM, "limit": limit, first: at}
    status, body = await c.request("GET", path, **query)
    assert status == 200, (path, first, at, body)
    return body  # type: ignore[no-any-return]


class Walker:
    """One client's walk over a history route, a page at a time, by the last key + 1."""

    def __init__(self, c: RestClient, path: str, first: str, key: str) -> None:
        self.c, self.path, self.first, self.key = c, path, first, key
        self.at = 0
        self.rows: list[dict[str, Any]] = []

    async def step(self, limit: int = 1) -> int:
        page = await _page(self.c, self.path, self.first, self.at, limit)
        self.rows += page
        if page:
            self.at = page[-1][self.key] + 1
        return len(page)

    async def to_end(self, limit: int = 1) -> None:
        for _ in range(200):  # bounded: the walk must end
            if not await self.step(limit):
                return
        raise AssertionError(f"{self.path}: the walk never ended at {self.at}")


async def _fix_bid(fix: Any, cl: str, price: str, qty: str) -> int:
    """ALICE's GTC bid over FIX; its orderId once acknowledged."""
    await fix_order(fix, cl, "1", qty, (40, "2"), (44, price), (59, "1"))
    reports = await fix_until(fix, acked(cl))
    return next(int(m.get(37)) for m in reports if m.get(11) == cl.encode())


def _keyed(rows: list[dict[str, Any]], key: str) -> dict[int, dict[str, Any]]:
    return {r[key]: r for r in rows}


def test_walking_pages_while_the_writer_files_lists_each_once(harness: Harness) -> None:
    """ALICE places bids over REST and over FIX, BOB sells into them (and rests asks ALICE
    takes), while ALICE walks allOrders (orderId = last + 1) and myTrades (fromId = last + 1)
    one row a page, and the writer files every other step, once in the same instant as a
    page. Every order and fill of ALICE's is walked once, in id order, none of BOB's; the walk
    equals one query's answer before and after the writer filed everything."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            fix = await fix_user(h, "ALICE", "alice-pw")
            orders = Walker(alice, ALL, "orderId", "orderId")
            trades = Walker(alice, TRADES, "fromId", "id")
            mine: list[int] = []
            bobs: list[int] = []
            for n in range(8):
                placed = await alice.call("POST", ORDER, **LIMIT, price="30000.00", quantity="0.10")
                mine.append(placed["orderId"])
                mine.append(await _fix_bid(fix, f"F{n}", "30000.00", "0.10"))
                await orders.step()
                sold = await bob.call(
                    "POST", ORDER, **SELL, price="30000.00", quantity="0.15", timeInForce="IOC"
                )
                bobs.append(sold["orderId"])
                if n % 2:
                    await unfiled_rig.file_all(h)
                await trades.step()
                ask = await bob.call("POST", ORDER, **SELL, price="30100.00", quantity="0.05")
                bobs.append(ask["orderId"])
                taken = await alice.call(
                    "POST", ORDER, **LIMIT, price="30100.00", quantity="0.05", timeInForce="IOC"
                )
                mine.append(taken["orderId"])
                if n == 4:  # the writer files in the very instant a page is read
                    await asyncio.gather(unfiled_rig.file_all(h), orders.step(), trades.step())
                else:
                    await orders.step()
            await orders.to_end()
            await trades.to_end()
            walked = [o["orderId"] for o in orders.rows]
            assert walked == sorted(set(mine)), (walked, mine)
            assert not set(walked) & set(bobs)
            tids = [t["id"] for t in trades.rows]
            assert tids == sorted(set(tids)), tids
            whole = await alice.call("GET", TRADES, **SYM, limit=1000)
            assert [t["id"] for t in whole] == tids
            assert {t["orderId"] for t in whole} <= set(mine)
            # each bid filled 0.10 from a 0.15 IOC, each IOC buy took its 0.05 ask
            assert Decimal(sum(Decimal(t["qty"]) for t in whole)) == Decimal("1.60")
            await unfiled_rig.file_all(h)
            again = Walker(alice, ALL, "orderId", "orderId")
            await again.to_end(limit=3)
            assert [o["orderId"] for o in again.rows] == walked
            filed = Walker(alice, TRADES, "fromId", "id")
            await filed.to_end(limit=2)
            assert [t["id"] for t in filed.rows] == tids

    run(h, scenario)


def test_rows_read_the_same_live_and_once_filed(harness: Harness) -> None:
    """ALICE's REST and FIX orders in every state (new, partly filled, filled, cancelled,
    expired) and their fills, read before the writer files them, after, and as the database
    alone has them: each order's fields and each fill's are the same (the database keeps no
    notional: its cummulativeQuoteQty is null, README); the stream of filing changes none."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            fix = await fix_user(h, "ALICE", "alice-pw")
            a = await alice.call("POST", ORDER, **LIMIT, price="30000.00", quantity="0.30")
            f = await _fix_bid(fix, "FX1", "30000.00", "0.20")
            await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.35",
                           timeInForce="IOC")  # fmt: skip
            # a filled, f partly; then a cancelled REST order and an expired IOC
            c = await alice.call("POST", ORDER, **LIMIT, price="29000.00", quantity="0.10")
            await alice.call("DELETE", ORDER, **SYM, orderId=c["orderId"])
            await alice.call("POST", ORDER, **LIMIT, price="10.00", quantity="0.10",
                             timeInForce="IOC")  # fmt: skip
            await bob.call("POST", ORDER, **SELL, price="30050.00", quantity="0.05")
            await alice.call("POST", ORDER, **LIMIT, price="30050.00", quantity="0.05")
            live_orders = await alice.call("GET", ALL, **SYM, limit=1000)
            live_trades = await alice.call("GET", TRADES, **SYM, limit=1000)
            assert {a["orderId"], f, c["orderId"]} <= {o["orderId"] for o in live_orders}
            by_id = _keyed(live_orders, "orderId")
            assert by_id[f]["status"] == "PARTIALLY_FILLED" and by_id[f]["clientOrderId"] == "FX1"
            await unfiled_rig.file_all(h)
            filed_orders = await alice.call("GET", ALL, **SYM, limit=1000)
            filed_trades = await alice.call("GET", TRADES, **SYM, limit=1000)
            history = api.need_history()
            db_rows = [order_json(r, h.cfg.symbols[0]) for r in
                       await history.orders(ALICE, 1, from_id=0, limit=1000)]  # fmt: skip
            for view in (filed_orders, db_rows):
                assert [o["orderId"] for o in view] == [o["orderId"] for o in live_orders]
                for was, now in zip(live_orders, view, strict=True):
                    diff = {k: (was[k], now[k]) for k in SAME if was[k] != now[k]}
                    assert not diff, (was["orderId"], diff)
            api.core.trades.forget_filed(2**62)
            db_trades = await alice.call("GET", TRADES, **SYM, limit=1000)
            for view in (filed_trades, db_trades):
                assert len(view) == len(live_trades)
                for was, now in zip(live_trades, view, strict=True):
                    diff = {k: (was[k], now[k]) for k in TRADE_SAME if was[k] != now[k]}
                    assert not diff, (was["id"], diff)

    run(h, scenario)


async def _window_checks(c: RestClient, path: str, key: str, rows: list[dict[str, Any]]) -> None:
    """startTime = endTime = a row's time takes that row in; a ms past either end leaves it
    out; endTime alone (the newest before it) and startTime alone (from it) agree."""
    for row in rows:
        t = row["time"]
        same = await c.call("GET", path, **SYM, startTime=t, endTime=t, limit=1000)
        assert row[key] in [r[key] for r in same], (path, row)
        assert all(r["time"] == t for r in same), (path, t, same)
        before = await c.call("GET", path, **SYM, endTime=t - 1, limit=1000)
        assert all(r["time"] < t for r in before), (path, t)
        assert row[key] not in [r[key] for r in before]
        after = await c.call("GET", path, **SYM, startTime=t + 1, limit=1000)
        assert all(r["time"] > t for r in after), (path, t)
        assert row[key] not in [r[key] for r in after]


def test_time_windows_and_the_newest_limit_take_live_and_filed_rows_alike(
    harness: Harness,
) -> None:
    """Orders and fills, some filed and some not: a window exactly on each row's time takes
    it in, a ms off leaves it out, before and after the writer files; ``limit`` 1 with no
    orderId / fromId is the newest row (an unfiled one), ``limit`` 1000 is taken."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            fix = await fix_user(h, "ALICE", "alice-pw")
            for n in range(3):
                await alice.call("POST", ORDER, **LIMIT, price="30000.00", quantity="0.10")
                await _fix_bid(fix, f"W{n}", "30000.00", "0.10")
                await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.10",
                               timeInForce="IOC")  # fmt: skip
                if n == 1:
                    await unfiled_rig.file_all(h)
            newest = await alice.call("POST", ORDER, **LIMIT, price="29000.00", quantity="0.10")
            await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.10",
                           timeInForce="IOC")  # fmt: skip
            for _ in range(2):
                orders = await alice.call("GET", ALL, **SYM, limit=1000)
                trades = await alice.call("GET", TRADES, **SYM, limit=1000)
                assert len(orders) == 7 and len(trades) == 4, (orders, trades)
                top = await alice.call("GET", ALL, **SYM, limit=1)
                assert [o["orderId"] for o in top] == [newest["orderId"]]
                last = await alice.call("GET", TRADES, **SYM, limit=1)
                assert [t["id"] for t in last] == [trades[-1]["id"]]
                await _window_checks(alice, ALL, "orderId", orders)
                await _window_checks(alice, TRADES, "id", trades)
                await unfiled_rig.file_all(h)

    run(h, scenario)


async def _fix_fill_seen(fix: Any) -> None:
    """Until ALICE's FIX session reports a fill (the gateway has read the trade)."""
    await fix_until(fix, lambda r: any(m.get(150) == b"F" for m in r))


def test_a_fix_fill_before_the_api_was_used_is_in_my_trades(harness: Harness) -> None:
    """Was (fixed): ALICE (logged in, no signed request yet) bids over FIX, BOB fills half of it;
    her first requests find ``GET order`` and ``allOrders`` PARTIALLY_FILLED 0.10, and
    ``myTrades`` empty (with or without ``orderId``) until the writer files the trade: the
    fill's Trade is among the recent events, but ``_follow_recent`` takes it only for orders
    whose Accepted it follows, and this one is followed from FIX already. Expected (README:
    myTrades lists a fill as soon as the live views do): the fill, as filed later."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            assert ALICE not in api.core.interest  # a login is no use of the API
            fix = await fix_user(h, "ALICE", "alice-pw")
            oid = await _fix_bid(fix, "P1", "30000.00", "0.20")
            await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.10",
                           timeInForce="IOC")  # fmt: skip
            await _fix_fill_seen(fix)
            order = await alice.call("GET", ORDER, **SYM, orderId=oid)
            assert (order["status"], order["executedQty"]) == ("PARTIALLY_FILLED", "0.10")
            listed = await alice.call("GET", ALL, **SYM)
            assert [(o["orderId"], o["executedQty"]) for o in listed] == [(oid, "0.10")]
            live = await alice.call("GET", TRADES, **SYM)
            one = await alice.call("GET", TRADES, **SYM, orderId=oid)
            await unfiled_rig.file_all(h)
            filed = await alice.call("GET", TRADES, **SYM)
            assert [(t["orderId"], t["qty"]) for t in filed] == [(oid, "0.10")]
            assert (live, one) == (filed, filed), (live, one)

    run(h, scenario)


def test_after_an_interest_lapse_all_orders_agrees_with_get_order(harness: Harness) -> None:
    """Was (fixed): ALICE uses the API, bids over FIX (followed, indexed as unfiled); her interest
    lapses (600 s idle: set to past here), BOB fills half the bid, and her next requests find
    ``GET order`` PARTIALLY_FILLED 0.10 (followed anew from FIX) but ``allOrders`` NEW 0.00,
    the view from before the lapse that the unfiled index still holds. Expected: allOrders
    shows the order as ``GET order`` does (README: allOrders lists an order as GET order,
    openOrders and the stream show it)."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            assert await alice.call("GET", ALL, **SYM) == []  # of interest from here
            fix = await fix_user(h, "ALICE", "alice-pw")
            oid = await _fix_bid(fix, "L1", "30000.00", "0.20")
            api.core.interest[ALICE] = 0.0  # its 600 s ran out: the next tick forgets it
            deadline = time.monotonic() + 5.0
            while ALICE in api.core.interest and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert ALICE not in api.core.interest
            await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.10",
                           timeInForce="IOC")  # fmt: skip
            await _fix_fill_seen(fix)
            order = await alice.call("GET", ORDER, **SYM, orderId=oid)
            assert (order["status"], order["executedQty"]) == ("PARTIALLY_FILLED", "0.10")
            listed = await alice.call("GET", ALL, **SYM)
            assert [(o["orderId"], o["status"], o["executedQty"]) for o in listed] == [
                (oid, "PARTIALLY_FILLED", "0.10")
            ], listed

    run(h, scenario)


def test_bad_history_parameters_are_refused_naming_the_value(harness: Harness) -> None:
    """Negative ids and times, limits off 1..1000 and a start after the end are 400s with
    ``{code, msg}`` naming the value, on allOrders and myTrades; klines' interval not served
    is -1120 naming it (month ``1M`` is not minute ``1m``)."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        async with unfiled_rig.users(url) as (alice, _bob):
            cases: list[tuple[str, dict[str, Any], str]] = [
                (ALL, {"orderId": -1}, "-1"), (ALL, {"startTime": -5}, "-5"),
                (ALL, {"endTime": -7}, "-7"), (ALL, {"limit": 1001}, "1001"),
                (ALL, {"limit": -1}, "-1"), (TRADES, {"fromId": -2}, "-2"),
                (TRADES, {"orderId": -3}, "-3"), (TRADES, {"limit": 1001}, "1001"),
                (TRADES, {"startTime": 9, "endTime": 8}, "9"),
                (ALL, {"orderId": "1.5"}, "1.5"),
            ]  # fmt: skip
            for path, q, named in cases:
                status, body = await alice.request("GET", path, **SYM, **q)
                assert status == 400, (path, q, body)
                assert set(body) == {"code", "msg"} and named in body["msg"], (path, q, body)
            for interval in ("1s", "1M", "1w", "8h", "3d", "1H"):
                status, body = await alice.request(
                    "GET", KLINES, signed=False, **SYM, interval=interval
                )
                assert (status, body["code"]) == (400, -1120), (interval, body)
                assert repr(interval) in body["msg"], body

    run(h, scenario)


def test_klines_on_a_bucket_edge(harness: Harness) -> None:
    """Trades filed: the 1m kline of the first one's minute, asked with startTime = endTime =
    its open time, is that one kline, with the volume and count of the trades filed in it;
    an endTime 1 ms before the open time answers none (nothing traded before), limit 1 from
    that start the same kline."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        async with unfiled_rig.users(url) as (alice, bob):
            for _ in range(3):
                await alice.call("POST", ORDER, **LIMIT, price="30000.00", quantity="0.10")
                await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.10",
                               timeInForce="IOC")  # fmt: skip
            await unfiled_rig.file_all(h)
            trades = await alice.call("GET", TRADES, **SYM)
            edge = trades[0]["time"] // 60_000 * 60_000
            inside = [t for t in trades if edge <= t["time"] < edge + 60_000]
            for q in ({"startTime": edge, "endTime": edge}, {"startTime": edge, "limit": 1}):
                status, body = await alice.request(
                    "GET", KLINES, signed=False, **SYM, interval="1m", **q
                )
                assert status == 200 and len(body) == 1, (q, body)
                k = body[0]
                assert (k[0], k[6]) == (edge, edge + 59_999), k
                assert Decimal(k[5]) == sum(Decimal(t["qty"]) for t in inside), (k, inside)
                assert k[8] == len(inside)
            status, body = await alice.request(
                "GET", KLINES, signed=False, **SYM, interval="1m", endTime=edge - 1
            )
            assert (status, body) == (200, []), body

    run(h, scenario)
