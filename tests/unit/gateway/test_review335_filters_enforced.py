"""Review 335: exchangeInfo's filters against what the exchange enforces, at the boundaries.

Reviewed: README (the REST API's ``exchangeInfo``: ``PRICE_FILTER``, ``LOT_SIZE``,
``MARKET_LOT_SIZE``, ``ICEBERG_PARTS``, ``NOTIONAL``, ``EXCHANGE_MAX_NUM_ORDERS``,
``limitBandBps``; ``POST order/test``; the errors' "msg naming the value and the limit"; the
FIX SecurityList and the gateway's own OrderQty / MaxFloor refusals),
``procs/gateway/exchange_info.py``, ``rest_params.py`` (``new_order``, ``router_refusal``,
``refusal``), ``instruments.py``, ``order_fields.py`` (``amounts``), ``security_list.py``,
``notional_note.py``, ``api_errors.py`` (``order_refused``), ``rest_amend.py``,
``procs/core/order_checks.py``, ``money.py``, ``accounts.py`` (``reserve_new``).

Rig: ``tests/unit/gateway/rest_rig.py`` (real HTTP and a real FIX port in front of real rings,
router and matcher in process; ALICE 601 with dollars, BOB 602 with bitcoin, each also a FIX
user); BTC-USD as ``test_exchange_info_filters.py`` bounds it (tick 0.05, lot 0.10, sizes 0.15
to 10.05, so minQty 0.20 and maxQty 10.00; ``risk.max_order_notional`` $100), with
``iceberg_parts`` 4 and ``max_open_orders`` 3 here; a plain BTC-USD (tick 0.05, lot 0.01,
``limit_band_bps`` 500) for the largest price and the collar. Each bound is read from
exchangeInfo's own answer, then an order exactly at it, one step inside and one past is
sent to ``POST order/test``, ``POST order`` and as a FIX NewOrderSingle.

Faults found (each fixed; its test says what it was):
1. An iceberg that shows its whole size is refused over REST and taken over FIX: ``POST order``
   (and ``order/test``) with ``icebergQty`` equal to ``quantity`` is 400 ``-1013`` "icebergQty 1.00
   must be below quantity 1.00", while the same order as a FIX D with MaxFloor (111) equal to
   OrderQty (38) is acknowledged New (39=0) and rests; exchangeInfo's ``ICEBERG_PARTS`` (1 part,
   within ``limit``) says nothing against it, and the matcher takes ``display_qty <= qty``. A
   client moving between the edges meets two rules for one order. Cause:
   ``procs/gateway/order_fields.py:435`` (``display > qty and not replace``: equal is taken)
   against ``procs/gateway/rest_params.py:393`` (``display >= qty``). Fix: one rule at both edges;
   Binance's (``icebergQty`` below ``quantity``) is REST's, so FIX's check becomes ``display >=
   qty`` for a new order (Rejected, "MaxFloor must be below OrderQty"), and
   ``procs/core/order_checks.py:88`` refuses ``display_qty == qty`` too so neither edge can differ.
   Fixed: FIX refuses a new order's MaxFloor equal to its OrderQty ("must be below OrderQty"); the
   matcher's rule stays as it is, so a journal replays as it ran.
2. A ``NOTIONAL`` refusal states the limit in a unit the API never publishes: an order of 10.00 at
   10.05 (notional 100.5 against exchangeInfo's ``maxNotional`` "100.000000") is ``-1013`` "... its
   notional may be at most 100000000 minor units of USD, judged at its price", and FIX's Text (58)
   says the same. Every amount the REST API gives (``maxNotional``, ``cummulativeQuoteQty``,
   ``quoteQty``) is a decimal; "100000000 ... USD" reads as a hundred million dollars, and the
   order's own notional (100.5) is not named, though README says an error's msg names "the value
   and the limit". Cause: ``procs/gateway/notional_note.py:19`` (``{limit} minor units of
   {sym.quote}``, the raw integer). Fix: format the limit with the quote asset's decimals, as
   ``exchange_info.filters`` does (``format_units(limit, quote_decimals)``: "maxNotional
   100.000000"), and name the notional judged (price judged at x quantity, at a notional's
   decimals): "notional 100.5000 is past maxNotional 100.000000 (NOTIONAL)". Fixed: the limit is
   said as a decimal of the quote asset, "at most 100.000000 USD", on both edges; the notional
   judged is not (a market order's is judged at the last trade, which only the router knows).

Sound (``test_sound_*``): at every bound exchangeInfo publishes (minPrice, the tick, minQty,
maxQty, the step, maxNotional with price x quantity exactly at it, a market order's sizes,
``ICEBERG_PARTS`` at ``limit`` and one past, an iceberg slice at minQty and one lot below),
``order/test`` and ``POST order`` give the same answer, an order inside is taken and one past
is ``-1013``; FIX takes and refuses the same orders (OrderQty outside the sizes 103=13 naming
them, a notional past the limit 103=3); ``EXCHANGE_MAX_NUM_ORDERS`` 3: a waiting stop-limit
counts, the fourth order is ``-2010`` naming "at most 3 open orders" over REST and rejected
over FIX, and a cancel makes room at once; ``limitBandBps`` 500 around a last trade of 100.00:
95.00 and 105.00 are taken on both sides, 94.95 and 105.05 refused naming the rule; a sell at
``maxPrice`` rests and one a tick past is ``-1013`` naming the largest price; the filters'
values carry exactly the symbol's ``pricePrecision`` / ``quantityPrecision`` decimals and the
FIX SecurityList's MinPriceIncrement, RoundLot and MinTradeVol are exchangeInfo's
``tickSize``, ``stepSize`` and ``minQty`` character for character; ``PUT order`` meets the
same bounds (a new total at maxNotional exactly is taken; past it, past maxQty or off the
tick ``-1013``).

Leads not shown:
- A refusal's msg never says Binance's "Filter failure: <FILTER>" (only the ICEBERG_PARTS ones
  name their filter); the code, -1013, is right, and README promises the numbering only.
- The collar (``limitBandBps``) is published as a ringex key, not as Binance's
  ``PERCENT_PRICE_BY_SIDE``, and its refusal is ``-2010`` where Binance's is ``-1013``; README
  documents both (``limitBandBps``; "the rule where a configured limit says"), so not a fault.
- ``maxNotional`` carries the quote asset's 6 decimals while every notional the API answers
  (``cummulativeQuoteQty``, ``quoteQty``) carries price + size decimals (4): harmless to a
  parser, and Binance's own 8-decimal strings are not promised.
- Binance's ``NOTIONAL`` has ``avgPriceMins``; ringex's lacks it (a market order is judged at
  its cap or the last trade, as README says), which a strict schema-bound client may trip on.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import simplefix  # ships no type information

from config.schema import RingexConfig
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.rest_rig import LIMIT, client, fix_user, rest_exchange, run
from tests.unit.gateway.test_review47_rest_public import _get

ORDER, TEST = "/api/v1/order", "/api/v1/order/test"
Params = dict[str, Any]


def _bounded(cfg: RingexConfig) -> RingexConfig:
    """Sizes 0.15..10.05 on a 0.10 lot (minQty 0.20, maxQty 10.00), 4 iceberg parts, $100
    of notional and 3 open orders an account."""
    btc = msgspec.structs.replace(cfg.symbols[0], lot=10, min_qty=15, max_qty=1005, iceberg_parts=4)
    risk = msgspec.structs.replace(cfg.risk, max_order_notional=100 * 10**6, max_open_orders=3)
    return msgspec.structs.replace(cfg, symbols=[btc], risk=risk)


def _collared(cfg: RingexConfig) -> RingexConfig:
    """A limit price at most 5% from the last trade; no notional limit."""
    btc = msgspec.structs.replace(cfg.symbols[0], limit_band_bps=500)
    return msgspec.structs.replace(cfg, symbols=[btc])


@pytest.fixture
def bounded(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, reshape=_bounded)


@pytest.fixture
def collared(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, reshape=_collared)


async def _filters(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """exchangeInfo's BTC-USD entry and its filters by type."""
    status, info = await _get(url, "/api/v1/exchangeInfo", symbol="BTC-USD")
    assert status == 200, info
    (btc,) = info["symbols"]
    return btc, {f["filterType"]: f for f in btc["filters"]}


async def _both(c: RestClient, params: Params) -> tuple[tuple[int, Any], tuple[int, Any]]:
    """``order/test``'s answer, then ``POST order``'s, to ``params``."""
    return await c.request("POST", TEST, **params), await c.request("POST", ORDER, **params)


async def _fix_first(fix: Client, cl: str, *pairs: tuple[int, object]) -> simplefix.FixMessage:
    """Send a D of ``pairs`` as ``cl``; its first ExecutionReport (New, 39=0, or Rejected,
    39=8), reports of earlier orders (an IOC's Expired) skipped."""
    await fix.send("D", (11, cl), (55, "BTC-USD"), (60, utc()), *pairs)
    while True:
        report = await fix.expect("8", timeout=5.0)
        if report.get(11) == cl.encode():
            return report


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


def _order(side: str, qty: str, price: str, tif: str = "3") -> tuple[tuple[int, object], ...]:
    """A FIX limit order's fields (IOC unless ``tif``)."""
    return (54, "1" if side == "BUY" else "2"), (38, qty), (40, "2"), (44, price), (59, tif)


def test_an_iceberg_showing_its_whole_size_gets_one_answer_at_both_edges(
    bounded: Harness,
) -> None:
    """Scenario: ALICE sends a GTC bid of 1.00 at 1.00 with icebergQty 1.00 over REST, and the
    same bid with MaxFloor (111) 1.00 over FIX; exchangeInfo's ICEBERG_PARTS (limit 4) counts
    it as 1 part. Expected: the two edges answer alike (both refuse it, as Binance's
    icebergQty-below-quantity rule and REST do, or both take it). Was (fixed): REST (and order/test)
    answer 400 -1013 "icebergQty 1.00 must be below quantity 1.00"; FIX acknowledges it New
    (39=0) and it rests."""
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            bid = {**LIMIT, "price": "1.00", "quantity": "1.00", "icebergQty": "1.00"}
            seen["test"], seen["rest"] = await _both(alice, bid)
            fix = await fix_user(bounded, "ALICE", "alice-pw")
            report = await _fix_first(
                fix, "ice-1", *_order("BUY", "1.00", "1.00", "1"), (111, "1.00")
            )
            seen["fix"] = (report.get(39), report.get(58))
        finally:
            await alice.close()

    run(bounded, scenario)
    assert seen["test"][0] == seen["rest"][0], seen  # order/test agrees with POST order ...
    rest_took = seen["rest"][0] == 200
    fix_took = seen["fix"][0] == b"0"
    assert rest_took == fix_took, seen  # ... but FIX does not


def test_a_notional_refusal_names_the_limit_as_exchange_info_publishes_it(
    bounded: Harness,
) -> None:
    """Scenario: exchangeInfo's NOTIONAL says maxNotional "100.000000"; ALICE bids 10.00 at
    10.05 (notional 100.5) over REST and over FIX. Expected: the -1013 msg and FIX's Text (58)
    name the limit as the filter publishes it, "100.000000" (and the order's notional).
    Was (fixed): both say "its notional may be at most 100000000 minor units of USD", a figure no
    REST answer uses, which reads as a hundred million dollars; the notional is not named."""
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        _, filters = await _filters(url)
        seen["limit"] = filters["NOTIONAL"]["maxNotional"]
        alice = await client(url, "ALICE", "alice-pw")
        try:
            over = {**LIMIT, "price": "10.05", "quantity": "10.00", "timeInForce": "IOC"}
            seen["rest"] = await alice.request("POST", ORDER, **over)
            fix = await fix_user(bounded, "ALICE", "alice-pw")
            report = await _fix_first(fix, "big-1", *_order("BUY", "10.00", "10.05"))
            seen["fix"] = (report.get(39), report.get(103), report.get(58).decode())
        finally:
            await alice.close()

    run(bounded, scenario)
    status, body = seen["rest"]
    assert (status, body["code"]) == (400, -1013), body
    assert seen["fix"][:2] == (b"8", b"3"), seen
    assert seen["limit"] == "100.000000"
    assert seen["limit"] in body["msg"], body["msg"]
    assert seen["limit"] in seen["fix"][2], seen["fix"]


def _bound_cases(filters: dict[str, Any]) -> list[tuple[str, Params, bool]]:
    """(what, order, taken?) at each of the bounds ``filters`` publish, for ALICE (a buyer)."""
    price_f, lot, notional = filters["PRICE_FILTER"], filters["LOT_SIZE"], filters["NOTIONAL"]
    market = filters["MARKET_LOT_SIZE"]
    tick, least = Decimal(price_f["tickSize"]), Decimal(lot["minQty"])
    step, most = Decimal(lot["stepSize"]), Decimal(lot["maxQty"])
    top = Decimal(notional["maxNotional"]) / most  # price x maxQty exactly at maxNotional
    parts = filters["ICEBERG_PARTS"]["limit"]
    ioc = {**LIMIT, "timeInForce": "IOC"}
    gtc = {**LIMIT, "price": "1.00"}
    mkt = {"symbol": "BTC-USD", "side": "SELL", "type": "MARKET"}
    return [
        ("minPrice", {**ioc, "price": price_f["minPrice"], "quantity": str(least)}, True),
        ("off tick", {**ioc, "price": str(Decimal("1.00") + tick / 5), "quantity": "1.00"}, False),
        ("minQty", {**ioc, "price": "1.00", "quantity": str(least)}, True),
        ("below minQty", {**ioc, "price": "1.00", "quantity": str(least - step)}, False),
        ("maxQty", {**ioc, "price": "1.00", "quantity": str(most)}, True),
        ("above maxQty", {**ioc, "price": "1.00", "quantity": str(most + step)}, False),
        ("off step", {**ioc, "price": "1.00", "quantity": str(least + step / 2)}, False),
        ("at maxNotional", {**ioc, "price": str(top), "quantity": str(most)}, True),
        ("past maxNotional", {**ioc, "price": str(top + tick), "quantity": str(most)}, False),
        ("market above maxQty", {**mkt, "quantity": str(Decimal(market["maxQty"]) + step)}, False),
        ("market below minQty", {**mkt, "quantity": str(Decimal(market["minQty"]) - step)}, False),
        ("parts at limit", {**gtc, "quantity": str(least * parts), "icebergQty": str(least)}, True),
        (
            "parts past limit",
            {**gtc, "quantity": str(least * parts + step), "icebergQty": str(least)},
            False,
        ),
        ("slice below minQty", {**gtc, "quantity": "1.00", "icebergQty": str(least - step)}, False),
    ]


def test_sound_order_test_and_post_order_take_and_refuse_alike_at_every_bound(
    bounded: Harness,
) -> None:
    seen: list[tuple[str, bool, tuple[int, Any], tuple[int, Any]]] = []

    async def scenario(api: RestApi, url: str) -> None:
        _, filters = await _filters(url)
        alice = await client(url, "ALICE", "alice-pw")
        try:
            for what, params, taken in _bound_cases(filters):
                seen.append((what, taken, *await _both(alice, params)))
                await alice.call("DELETE", "/api/v1/openOrders")  # (3 open orders at most)
        finally:
            await alice.close()

    run(bounded, scenario)
    for what, taken, (t_status, t_body), (status, body) in seen:
        if taken:
            assert (t_status, t_body, status) == (200, {}, 200), (what, t_body, body)
        else:
            assert (t_status, status) == (400, 400), (what, t_body, body)
            assert t_body == body and body["code"] == -1013, (what, t_body, body)


def test_sound_fix_takes_and_refuses_what_rest_does_at_the_size_and_notional_bounds(
    bounded: Harness,
) -> None:
    seen: list[tuple[str, bool, Any, Any, str]] = []

    async def scenario(api: RestApi, url: str) -> None:
        _, filters = await _filters(url)
        fix = await fix_user(bounded, "ALICE", "alice-pw")
        alice = await client(url, "ALICE", "alice-pw")
        cases = [c for c in _bound_cases(filters) if c[1]["type"] == "LIMIT"]
        for k, (what, params, taken) in enumerate(cases):
            tif = "3" if params.get("timeInForce") == "IOC" else "1"
            extra = [(111, params["icebergQty"])] if "icebergQty" in params else []
            pairs = _order("BUY", params["quantity"], params["price"], tif)
            report = await _fix_first(fix, f"b-{k}", *pairs, *extra)
            seen.append((what, taken, report.get(39), report.get(103), str(report.get(58))))
            if report.get(39) == b"0" and tif == "1":  # (3 open orders at most)
                await alice.call("DELETE", "/api/v1/openOrders")
        await alice.close()

    run(bounded, scenario)
    for what, taken, status, reason, text in seen:
        assert status == (b"0" if taken else b"8"), (what, text)
        if what in ("below minQty", "above maxQty"):
            assert reason == b"13" and "min 0.20, max 10.00" in text, (what, text)
        if what == "past maxNotional":
            assert reason == b"3" and "NOTIONAL_TOO_LARGE" in text, text


def test_sound_exchange_max_num_orders_holds_at_its_bound(bounded: Harness) -> None:
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        _, info = await _get(url, "/api/v1/exchangeInfo")
        (limit,) = info["exchangeFilters"]
        seen["limit"] = limit
        alice = await client(url, "ALICE", "alice-pw")
        try:
            bid = {**LIMIT, "price": "1.00", "quantity": "0.20"}
            stop = {**bid, "type": "STOP_LOSS_LIMIT", "stopPrice": "2.00"}
            placed = [
                await alice.call("POST", ORDER, **bid),
                await alice.call("POST", ORDER, **stop),
            ]
            fix = await fix_user(bounded, "ALICE", "alice-pw")
            seen["third"] = (await _fix_first(fix, "n-3", *_order("BUY", "0.20", "1.00", "1"))).get(
                39
            )
            seen["rest4"] = await alice.request("POST", ORDER, **bid)
            seen["fix4"] = await _fix_first(fix, "n-4", *_order("BUY", "0.20", "1.00", "1"))
            await alice.call("DELETE", ORDER, symbol="BTC-USD", orderId=placed[1]["orderId"])
            seen["after"] = await alice.request("POST", ORDER, **bid)
        finally:
            await alice.close()

    run(bounded, scenario)
    assert seen["limit"] == {"filterType": "EXCHANGE_MAX_NUM_ORDERS", "maxNumOrders": 3}
    assert seen["third"] == b"0"
    status, body = seen["rest4"]
    assert (status, body["code"]) == (400, -2010), body
    assert "TOO_MANY_OPEN_ORDERS" in body["msg"] and "at most 3 open orders" in body["msg"]
    fix4 = seen["fix4"]
    assert fix4.get(39) == b"8" and b"at most 3 open orders" in fix4.get(58), str(fix4)
    assert seen["after"][0] == 200, seen["after"]


def test_sound_the_collar_holds_at_its_bound_on_each_side(collared: Harness) -> None:
    seen: list[tuple[str, str, int, Any]] = []

    async def scenario(api: RestApi, url: str) -> None:
        btc, _ = await _filters(url)
        assert btc["limitBandBps"] == 500
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            ask = {**LIMIT, "side": "SELL", "price": "100.00", "quantity": "0.01"}
            await bob.call("POST", ORDER, **ask)
            await alice.call("POST", ORDER, **LIMIT, price="100.00", quantity="0.01")  # last 100
            for who, side in ((alice, "BUY"), (bob, "SELL")):
                for price in ("95.00", "105.00", "94.95", "105.05"):
                    order = {**LIMIT, "side": side, "price": price, "quantity": "0.01"}
                    status, body = await who.request("POST", ORDER, **order, timeInForce="IOC")
                    seen.append((side, price, status, body))
        finally:
            await alice.close()
            await bob.close()

    run(collared, scenario)
    for side, price, status, body in seen:
        if price in ("95.00", "105.00"):
            assert status == 200, (side, price, body)
        else:
            assert (status, body["code"]) == (400, -2010), (side, price, body)
            assert "limitBandBps 500" in body["msg"], body


def test_sound_a_sell_at_max_price_rests_and_a_tick_past_it_is_refused(
    collared: Harness,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        _, filters = await _filters(url)
        top = filters["PRICE_FILTER"]["maxPrice"]
        past = str(Decimal(top) + Decimal(filters["PRICE_FILTER"]["tickSize"]))
        bob = await client(url, "BOB", "bob-pw")
        try:
            ask = {**LIMIT, "side": "SELL", "quantity": "0.01"}
            seen["top"] = await _both(bob, {**ask, "price": top})
            seen["past"] = await _both(bob, {**ask, "price": past})
            seen["top_s"], seen["past_s"] = top, past
        finally:
            await bob.close()

    run(collared, scenario)
    (t_status, _), (status, body) = seen["top"]
    assert (t_status, status, body["status"], body["price"]) == (200, 200, "NEW", seen["top_s"])
    (t_status, t_body), (status, body) = seen["past"]
    assert (t_status, status, body["code"]) == (400, 400, -1013) and t_body == body, body
    assert f"largest price {seen['top_s']}" in body["msg"], body


def test_sound_published_values_carry_the_symbols_decimals_and_fix_lists_the_same(
    bounded: Harness,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        seen["btc"], seen["filters"] = await _filters(url)
        fix = await fix_user(bounded, "ALICE", "alice-pw")
        await fix.send("x", (320, "list-1"), (559, 0), (55, "BTC-USD"))
        seen["y"] = await fix.expect("y", timeout=5.0)

    run(bounded, scenario)
    btc, filters, y = seen["btc"], seen["filters"], seen["y"]
    price_f, lot = filters["PRICE_FILTER"], filters["LOT_SIZE"]
    for key in ("minPrice", "maxPrice", "tickSize"):
        assert _decimals(price_f[key]) == btc["pricePrecision"] == 2, price_f
    for key in ("minQty", "maxQty", "stepSize"):
        assert _decimals(lot[key]) == btc["quantityPrecision"] == 2, lot
    assert _decimals(filters["NOTIONAL"]["maxNotional"]) == btc["quoteAssetPrecision"]
    listed = (y.get(969), y.get(561), y.get(562))
    assert listed == tuple(v.encode() for v in (btc["tickSize"], lot["stepSize"], lot["minQty"]))
    assert (btc["tickSize"], btc["stepSize"], btc["minQty"], btc["maxQty"]) == (
        price_f["tickSize"], lot["stepSize"], lot["minQty"], lot["maxQty"]
    )  # fmt: skip


def test_sound_an_amend_meets_the_same_bounds_as_a_new_order(bounded: Harness) -> None:
    seen: dict[str, tuple[int, Any]] = {}

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            placed = await alice.call("POST", ORDER, **LIMIT, price="10.00", quantity="5.00")
            named = {"symbol": "BTC-USD", "orderId": placed["orderId"]}
            seen["at maxNotional"] = await alice.request("PUT", ORDER, **named, quantity="10.00")
            seen["past maxNotional"] = await alice.request("PUT", ORDER, **named, price="10.05")
            seen["above maxQty"] = await alice.request("PUT", ORDER, **named, quantity="10.10")
            seen["off tick"] = await alice.request("PUT", ORDER, **named, price="9.01")
        finally:
            await alice.close()

    run(bounded, scenario)
    status, body = seen.pop("at maxNotional")
    assert (status, body["origQty"], body["status"]) == (200, "10.00", "NEW"), body
    for what, (status, body) in seen.items():
        assert (status, body["code"]) == (400, -1013), (what, body)
