"""Review 196: a hostile review of the REST API's history and public-data endpoints against
the venue API they follow (Binance spot, README "The REST API and the private stream").

Reviewed: ``procs/gateway/rest_history.py`` (allOrders, myTrades), ``rest_public.py``
(klines, trades, depth, ticker/24hr, exchangeInfo), ``rest_params.py`` (``integer``,
``opt_integer``, ``time_span``), ``rest_order_state.py`` and ``rest_open_orders.py`` (the live
views merged over the rows), ``history.py`` (the queries, ``_between``, ``_keyset``,
``whole_trades``, ``klines`` with ``_flat_filled``), ``unfiled_orders.py`` and
``live_trades.py`` (the merges), and ``openapi.py`` (what ``/openapi.json`` says of them):
defaults, bounds, inclusive ends, ordering, startTime after endTime, ids and times at the
int64 edge, limit edges, an order that fills between two pages, an order just placed, klines
over gaps and the feed's candles for the same trades, decimal formatting.
Rig: ``rest_rig.py``'s real HTTP in front of real rings (router and matcher in process),
``unfiled_rig``'s PostgreSQL (the session's private cluster, a database per test) with the
writer run by hand (``file_all``), and review 47's stand-in market-data port (``Site`` over a
``MarketState`` fed trades); the klines parity test files a journal made by the real
sequencer and matchers (``journal_gen``) and reads it as the gateway does (``query_history``).

Faults found:

1. ``procs/gateway/rest_public.py:227`` (``proxy``: ``rp.integer(params, 'limit', 100, ...)``
   for ``depth`` and ``trades`` alike) with ``openapi.py:193`` (``_limit(100)`` for both):
   ``GET /api/v1/trades`` without a ``limit`` answers the newest 100 trades; Binance's
   ``trades`` answers 500 by default (its ``depth``, 100, is right). A script written for it
   that reads the recent trades without a limit gets a fifth of them in silence, and the
   README's list of the differences such a script meets in silence (review 70) does not name
   it. Fix: default ``trades``' limit to 500 (``depth`` keeps 100) and document it so, or
   name the difference in the README's list. Was (fixed: ``trades`` defaults to 500, its
   OpenAPI parameter says so). Test: ``test_recent_trades_default_to_binances_500``.

Found sound (plain tests): allOrders paged by ``orderId`` = last + 1 and myTrades by
``fromId`` = last + 1 list each order and fill once, in id order, while an order of the
first page fills, and new fills come, between two pages, before and after the writer files
them; an order just placed is in allOrders at once (NEW, then FILLED), with the same row once
filed; ids and times at 0 and at 2**63 - 1 answer 200 (empty or whole), never a 500;
``limit`` 0 and 1001 are 400 naming the range on all three history routes, and
startTime > endTime is -1023; a lower-case symbol is taken; prices, sizes and quote
quantities carry the symbol's decimals (trailing zeros kept) and commissions the quote
asset's; the document's history parameters have the server's bounds and defaults. klines from
the database over a journal with idle gaps equal the feed's candles (``CandleSeries``) for the
same trades at 1m, 5m and 1h: flat klines at the previous close in the gaps, none before the
first trade, open times on the epoch grid, close time open + width - 1, and a startTime inside
a kline starts at the next one (Binance's "open time at or after").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from procs.common.types import Side
from procs.core.market.candles import INTERVALS, CandleSeries
from procs.core.market.symbols import decimal_string as d
from procs.gateway.history import History
from procs.gateway.openapi import document
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.dbwriter.history_query import query_history
from tests.unit.dbwriter.journal_gen import JournalBuilder, fund, limit_order, make_cfg, write_all
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import LIMIT, run
from tests.unit.gateway.test_review47_rest_public import _get, _trades, market_data, public
from tests.unit.gateway.unfiled_rig import PRICE, SELL, harness

__all__ = ["harness", "public"]  # the fixtures these tests take, imported

ORDER, ALL, TRADES = "/api/v1/order", "/api/v1/allOrders", "/api/v1/myTrades"
BIG = 2**63 - 1


def _op_param(path: str, name: str) -> dict[str, Any]:
    """The schema ``/openapi.json`` gives parameter ``name`` of ``GET path``."""
    op = document(harness_cfg())["paths"][path]["get"]
    return next(p["schema"] for p in op["parameters"] if p["name"] == name)


def harness_cfg() -> Any:
    """A config with the rig's symbols, for the document (its history routes do not vary)."""
    return make_cfg(Path("/nonexistent"))


# -- the fault ----------------------------------------------------------------------------------


def test_recent_trades_default_to_binances_500(public: Harness) -> None:
    """Binance's ``GET /api/v3/trades``: ``limit`` "Default 500; max 1000". Here 600 trades
    on the tape and no ``limit`` answer the newest 100 (``depth``'s default, shared by
    ``proxy``), and ``/openapi.json`` says 100. Expected: the newest 500, oldest first, and a
    document that says 500 (depth keeps 100, as Binance's)."""
    h = public

    async def scenario(api: RestApi, url: str) -> None:
        async with market_data(api, _trades(h.cfg, 600)):
            status, rows = await _get(url, "/api/v1/trades", symbol="BTC-USD")
            assert status == 200, rows
            assert _op_param("/api/v1/depth", "limit")["default"] == 100
            assert [t["id"] for t in rows] == list(range(101, 601)), len(rows)
            assert _op_param("/api/v1/trades", "limit")["default"] == 500

    run(h, scenario)


# -- found sound --------------------------------------------------------------------------------


async def _pages(c: RestClient, path: str, first: str, key: str, limit: int) -> list[Any]:
    """Every row of ``path`` paged as Binance's docs say: ``first`` = the last ``key`` + 1."""
    got: list[Any] = []
    at = 0
    for _ in range(50):  # bounded: a page that does not move on ends it
        query: dict[str, Any] = {"symbol": "BTC-USD", "limit": limit, first: at}
        page = await c.call("GET", path, **query)
        if not page:
            return got
        got += page
        at = page[-1][key] + 1
    raise AssertionError(f"{path}: paging never ended: {got}")


def test_checked_pages_neither_skip_nor_repeat_while_orders_fill_between_them(
    harness: Harness,
) -> None:
    """ALICE's bids: two filed, two not; page 1 of allOrders (limit 2) shows the first two
    NEW; then BOB fills the first and takes part of the third; page 2 from the last id + 1
    lists the third (PARTIALLY_FILLED) and fourth once. myTrades paged by fromId = last + 1
    with new fills between pages lists each fill once in id order. The whole walk is the
    same after the writer has filed everything, and the rows equal a single query's."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            ids = []
            for n in range(4):
                placed = await alice.call("POST", ORDER, **LIMIT, price=PRICE, quantity="0.10")
                ids.append(placed["orderId"])
                if n == 1:
                    await unfiled_rig.file_all(h)
            page1 = await alice.call("GET", ALL, symbol="BTC-USD", orderId=0, limit=2)
            assert [(o["orderId"], o["status"]) for o in page1] == [(i, "NEW") for i in ids[:2]]
            await bob.call("POST", ORDER, **SELL, price=PRICE, quantity="0.25", timeInForce="IOC")
            page2 = await alice.call("GET", ALL, symbol="BTC-USD", orderId=ids[1] + 1, limit=2)
            assert [(o["orderId"], o["status"]) for o in page2] == [
                (ids[2], "PARTIALLY_FILLED"), (ids[3], "NEW"),
            ]  # fmt: skip
            fills1 = await alice.call("GET", TRADES, symbol="BTC-USD", fromId=0, limit=2)
            await bob.call("POST", ORDER, **SELL, price=PRICE, quantity="0.10", timeInForce="IOC")
            fills2 = await alice.call(
                "GET", TRADES, symbol="BTC-USD", fromId=fills1[-1]["id"] + 1, limit=10
            )
            walked = [t["id"] for t in fills1 + fills2]
            assert walked == sorted(set(walked)) == [1, 2, 3, 4, 5], walked
            orders_before = await _pages(alice, ALL, "orderId", "orderId", 1)
            trades_before = await _pages(alice, TRADES, "fromId", "id", 1)
            assert [o["orderId"] for o in orders_before] == ids
            assert [t["id"] for t in trades_before] == [1, 2, 3, 4, 5]
            assert trades_before == await alice.call("GET", TRADES, symbol="BTC-USD")
            await unfiled_rig.file_all(h)
            api.core.trades.forget_filed(2**62)
            api.core.unfiled.forget_filed(2**62)
            assert await _pages(alice, TRADES, "fromId", "id", 1) == trades_before
            orders_after = await _pages(alice, ALL, "orderId", "orderId", 1)
            assert [(o["orderId"], o["status"]) for o in orders_after] == [
                (o["orderId"], o["status"]) for o in orders_before
            ]

    run(h, scenario)


def test_checked_edges_of_ids_times_limits_and_formats(harness: Harness) -> None:
    """An order just placed is in allOrders at once (NEW); ids and times at 0 and at
    2**63 - 1 answer 200, empty or whole; limit 0 and 1001 are 400 naming 1..1000 and the
    document says the same bounds and defaults; startTime > endTime is -1023; a lower-case
    symbol is taken; decimals keep the symbol's places (trailing zeros), a commission the
    quote asset's."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            placed = await alice.call("POST", ORDER, **LIMIT, price=PRICE, quantity="0.10")
            listed = await alice.call("GET", ALL, symbol="btc-usd")
            assert [(o["orderId"], o["status"]) for o in listed] == [(placed["orderId"], "NEW")]
            await bob.call("POST", ORDER, **SELL, price=PRICE, quantity="0.10", timeInForce="IOC")
            await unfiled_rig.file_all(h)
            order = (await alice.call("GET", ALL, symbol="BTC-USD"))[0]
            assert order["status"] == "FILLED" and order["price"] == "30000.00"
            assert (order["origQty"], order["executedQty"]) == ("0.10", "0.10")
            fill = (await alice.call("GET", TRADES, symbol="BTC-USD"))[0]
            assert (fill["price"], fill["qty"], fill["quoteQty"]) == (
                "30000.00", "0.10", "3000.0000",
            )  # fmt: skip
            assert fill["commission"] is not None and len(fill["commission"].split(".")[1]) == 6
            # allOrders' times are the order's creation, myTrades' the fill's
            for path, first, key, row in (
                (ALL, "orderId", "orderId", order), (TRADES, "fromId", "id", fill),
            ):  # fmt: skip
                t, whole = row["time"], [row[key]]
                answers: list[tuple[dict[str, Any], list[int]]] = [
                    ({"startTime": BIG}, []), ({"endTime": 0}, []), ({"startTime": t + 1}, []),
                    ({"endTime": t - 1}, []), ({first: BIG}, []), ({first: 0}, whole),
                    ({"startTime": t - 86_400_000, "endTime": t}, whole),
                    ({"startTime": t, "endTime": t}, whole),
                    ({"endTime": BIG}, whole),
                ]  # fmt: skip
                for q, want in answers:
                    status, body = await alice.request("GET", path, symbol="BTC-USD", **q)
                    assert status == 200, (path, q, body)
                    assert [r[key] for r in body] == want, (path, q)
            for path, signed, extra in (
                (ALL, True, {}), (TRADES, True, {}), ("/api/v1/klines", False, {"interval": "1m"}),
            ):  # fmt: skip
                for limit in (0, 1001):
                    status, body = await alice.request(
                        "GET", path, signed=signed, symbol="BTC-USD", limit=limit, **extra
                    )
                    assert status == 400 and "1..1000" in body["msg"], (path, limit, body)
                status, body = await alice.request(
                    "GET", path, signed=signed, symbol="BTC-USD", startTime=2, endTime=1, **extra
                )
                assert (status, body["code"]) == (400, -1023), body
                schema = _op_param(path, "limit")
                assert (schema["minimum"], schema["maximum"], schema["default"]) == (1, 1000, 500)
            for q in ({"startTime": BIG}, {"endTime": 0}, {"startTime": 0, "endTime": 0}):
                status, body = await _get(
                    url, "/api/v1/klines", symbol="BTC-USD", interval="1m", **q
                )
                assert (status, body) == (200, []), q
            status, body = await _get(url, "/api/v1/klines", symbol="BTC-USD", interval="1m",
                                      endTime=BIG)  # fmt: skip
            # the trade's minute opens the list; a minute that turned since is flat at its close
            assert status == 200 and body[0][0] == fill["time"] // 60_000 * 60_000, body
            assert [k[1:6] for k in body] == [["30000.00"] * 4 + ["0.10"]] + [
                ["30000.00"] * 4 + ["0.00"]
            ] * (len(body) - 1), body

    run(h, scenario)


def test_checked_database_klines_over_gaps_equal_the_feeds_candles(
    tmp_path: Path, dsn: str
) -> None:
    """Trades at chosen times with idle gaps (a few minutes, over an hour): the database's
    klines at 1m, 5m and 1h equal, field for field, what the feed's ``CandleSeries`` of that
    interval holds for the same trades advanced to the same clock; a startTime 1 ms into a
    kline starts at the next one, and one before the first trade starts at the first."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    fund(b, 11, {1: 10**15, 2: 10**15})
    b.clock = b.clock // 3_600_000_000_000 * 3_600_000_000_000 + 3_600_000_000_000
    gaps_s = [0, 20, 200, 10, 900, 4_000, 5, 61]
    for n, gap in enumerate(gaps_s):
        b.clock += gap * 10**9
        limit_order(b, 10, 1, Side.SELL, 100_000 + 5 * n, 3)
        limit_order(b, 11, 1, Side.BUY, 100_000 + 5 * n, 3)
    b.close()
    write_all(cfg, dsn)
    sym = next(s for s in cfg.symbols if s.id == 1)
    trades = [t for t in b.trades if t.symbol == 1]
    assert len(trades) == len(gaps_s)
    now_ns = b.clock + 600 * 10**9
    first_ms = trades[0].ts_ns // 1_000_000
    pd, qd = sym.price_decimals, sym.qty_decimals

    def feed(interval: str) -> list[list[Any]]:
        series = CandleSeries(interval, history=1000)
        for t in trades:
            series.trade(t.ts_ns, t.price, t.qty, t.trade_id)
        series.advance(now_ns)
        return [
            [c.open_ns // 10**6, d(c.open, pd), d(c.high, pd), d(c.low, pd), d(c.close, pd),
             d(c.volume, qd), c.close_ns // 10**6 - 1, d(c.quote_volume, pd + qd), c.trades]
            for c in series.history(1000)
        ]  # fmt: skip

    async def ask(h: History) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for interval in ("1m", "5m", "1h"):
            out[interval] = await h.klines(sym, interval, limit=1000, now_ms=now_ns // 10**6)
            out[interval, "from"] = await h.klines(
                sym, interval, start_ms=0, limit=1000, now_ms=now_ns // 10**6
            )
            out[interval, "+1"] = await h.klines(
                sym, interval, start_ms=out[interval][0][0] + 1, limit=2,
                now_ms=now_ns // 10**6,
            )  # fmt: skip
        return out

    got = query_history(dsn, ask)
    for interval in ("1m", "5m", "1h"):
        width = INTERVALS[interval] // 10**6
        want = feed(interval)
        # the feed's candles have no taker buy volumes: every trade here was a buy's
        assert all(k[9:] == [k[5], k[7], "0"] for k in got[interval]), interval
        assert [k[:9] for k in got[interval]] == want, interval
        assert [k[:9] for k in got[interval, "from"]] == want, interval
        assert [k[:9] for k in got[interval, "+1"]] == want[1:3], interval
        assert want[0][0] == first_ms // width * width
        assert all(k[0] % width == 0 and k[6] == k[0] + width - 1 for k in want)
        assert any(k[8] == 0 for k in want) or interval == "1h"  # flat ones in the gaps
