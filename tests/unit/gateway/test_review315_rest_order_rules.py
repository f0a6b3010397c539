"""Review 315: a Binance spot client's order-entry conventions over REST.

Reviewed: README ("The REST API and the private stream": the endpoints, the code list, the
documented differences of review 70, ``POST order/test``, exchangeInfo's flags and filters),
``procs/gateway/rest_params.py`` (every order field's check and its code), ``rest_body.py``
(query and body pairs, repeats), ``rest_new_orders.py`` (``place``, ``placed``, order/test),
``exchange_info.py`` (flags, filters), ``signing.py`` (timestamp and receive window),
``rest_history.py`` (``allOrders`` / ``myTrades`` bounds), ``api_errors.py``; Binance's
spot error-code list (developers.binance.com, "Error codes for Binance") for the codes.

Rig: ``tests/unit/gateway/rest_rig.py`` (real HTTP in front of real rings, router and matcher
in process; ALICE 601 with dollars; BTC-USD prices 2 decimals on a 0.05 tick, sizes 2
decimals, both assets 6 decimals, so ``baseAssetPrecision`` and ``quoteAssetPrecision`` are
6), signed as ``RestClient`` signs; the same with ``risk.max_order_notional`` $100
(``_notional``: exchangeInfo then publishes ``NOTIONAL``); review 47's ``_get`` for the
public routes.

Faults found (each fixed; its test says what it was):
1. exchangeInfo says ``cancelReplaceAllowed: true`` for every symbol, but there is no ``POST
   /api/v1/order/cancelReplace``: a client that reads the flag (ccxt's Binance ``editOrder`` on
   spot calls that route, python-binance's ``cancel_replace_order`` too) gets 404 ``-1000`` for a
   replace the exchange said it allows; ringex's replace is ``PUT order``, Binance's
   ``amendAllowed`` / ``order/amend/keepPriority`` family. Cause:
   ``procs/gateway/exchange_info.py:40`` (``FLAGS``). Fixed: ``cancelReplaceAllowed`` is false
   (README: a replace is ``PUT order``, which keeps the order id).
2. An unknown ``side``, ``type`` or ``timeInForce`` is ``-1100`` (illegal characters), not
   Binance's ``-1117`` INVALID_SIDE, ``-1116`` INVALID_ORDER_TYPE, ``-1115`` INVALID_TIF (Binance
   answers ``{"code": -1116, "msg": "Invalid orderType."}`` for a type it does not have). README
   says the codes follow that numbering and lists none of these as a difference; a client branching
   on -1116 (a type this venue lacks, such as ``TAKE_PROFIT_LIMIT``: fall back to another) never
   sees it. Cause: ``procs/gateway/rest_params.py:198`` (``choice`` answers every enumeration with
   ``ILLEGAL_PARAM``). Fixed: ``choice`` takes the code per parameter (side -1117, type -1116,
   timeInForce -1115; ``selfTradePreventionMode`` keeps -1100), its message naming the value and
   the names taken.
3. A quantity or price with more decimals than its asset has (``quantity=1.0000001`` where
   ``baseAssetPrecision`` is 6; ``price=100.0000001`` where ``quoteAssetPrecision`` is 6) is
   ``-1013`` "not a multiple of lot", the code of a filter failure. Binance answers ``-1111``
   BAD_PRECISION ("Parameter 'quantity' has too much precision.") past the asset's precision, and
   ``-1013`` only for a value within it that is off the step or tick; ringex has no ``-1111`` at
   all. Cause: ``procs/gateway/rest_params.py:278`` and ``:291`` (every ``price_ticks`` /
   ``qty_lots`` failure is ``FILTER_FAILURE``; ``instruments.to_units`` returns None for both cases
   alike). Fixed: ``_decimal`` counts the value's significant decimals first and answers ``-1111``
   past the symbol's own ``pricePrecision`` / ``quantityPrecision`` (which no value on its tick or
   lot passes), naming them and the step; ``-1013`` stays for a value off the tick or lot within
   them.
4. exchangeInfo publishes Binance's ``NOTIONAL`` filter (``maxNotional``), yet a LIMIT order past
   it is passed by ``POST order/test`` (``{}``) and refused by ``POST order`` with ``-2010`` from
   the router, where Binance answers both with ``-1013`` ("Filter failure: NOTIONAL"): a script
   that tests its orders first learns nothing, and one branching on -1013 (round and resize)
   against -2010 (refused by the engine: balance) takes the wrong branch. README says order/test
   checks "every field against the symbol's rules" and leaves out only balance, the price band and
   the open-order limits. Cause: ``procs/gateway/rest_params.py:326`` (``new_order`` checks no
   notional, though a limit's price x quantity is known there) and
   ``procs/gateway/rest_new_orders.py:167`` (every refusal ``NEW_ORDER_REJECTED``). Fixed:
   ``order/test`` judges a priced order's notional as the router does
   (``rest_params.over_notional``), and ``api_errors.order_refused`` answers the router's
   ``NOTIONAL_TOO_LARGE`` with ``-1013``. (Its msg still says "at most 100000000 minor units of
   USD" where exchangeInfo says 100.000000.)

Sound (``test_sound_*``): ``1e-3``, `` 1``, ``-1`` and ``1e2`` are ``-1100`` (Binance's regex
refuses them too), a value within the symbol's decimals off the tick and a size below ``minQty``
are ``-1013`` (one past its decimals ``-1111``), ``1.000000`` (trailing zeros) is taken; a missing
``price`` / ``stopPrice`` / ``quantity`` is ``-1102``, an unknown parameter ``-1104``,
``stopPrice`` on a LIMIT and ``timeInForce=GTC`` on a MARKET ``-1106``, an unknown symbol
``-1121``; ``newClientOrderId`` of 36 characters is taken and of 37, or with a space, ``-1100``;
one an open order holds is ``-2010`` "duplicate order", one of a finished order is taken again;
``GET`` and ``DELETE order`` by ``origClientOrderId`` find the order, neither id is ``-1102``;
``GET openOrders`` without ``symbol`` lists every symbol's; parameters split over the query and a
form body, signed over both, are taken; a receive window of 60000 is taken and 60001 ``-1131``; a
timestamp 1.5 s ahead is ``-1021``; ``allOrders`` and ``myTrades`` refuse ``limit`` 0 and 1001 and
a negative ``fromId`` (``-1100``) before the database is asked.

Leads not shown:
- ``orderId`` with an ``origClientOrderId`` of another order is ``-1100`` ("do not name the
  same order"); Binance's docs say only that such a request "will be rejected", and its
  code for it (likely -2013 for a query, -2011 for a cancel) could not be confirmed here.
- ``DELETE order`` of an unknown ``orderId`` is ``-2011`` but of an unknown
  ``origClientOrderId`` ``-2013`` (README documents the latter, review 73); Binance answers
  both ``-2011`` "Unknown order sent.", so a script ignoring -2011 on cancel meets -2013 by
  client id only.
- A parameter in the query and again in the body is ``-1100`` "sent twice" (README
  documents repeats); Binance takes the query's value. An empty one is ``-1100`` where
  Binance has ``-1105`` PARAM_EMPTY, and a repeat ``-1101`` "Duplicate values" (both
  documented here as -1100).
- ``newOrderRespType`` (ACK/RESULT/FULL), which ccxt's Binance client sends on every spot
  order, is ``-1104``: documented as an unknown parameter, but harmless to take (FULL is
  what ringex answers).
- ``-1131`` (a bad receive window) is answered with HTTP 401; Binance's is a 400.
- ``quantity=.5`` and ``1.`` are taken; Binance's pattern (``^([0-9]{1,20})(\\.[0-9]{1,20})?$``)
  refuses both with -1100 (ringex is the more lenient; not a fault a client meets).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import RingexConfig
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.signing import API_KEY, RECV_WINDOW, SIGNATURE, TIMESTAMP, sign
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import LIMIT, client, rest_exchange, run
from tests.unit.gateway.test_review47_rest_public import _get

ORDER = "/api/v1/order"
TEST = "/api/v1/order/test"
BID: dict[str, Any] = {**LIMIT, "price": "100.00", "quantity": "1.00"}


def _notional(cfg: RingexConfig) -> RingexConfig:
    """The rig's config with a $100 ``risk.max_order_notional`` (exchangeInfo's
    ``NOTIONAL``)."""
    return msgspec.structs.replace(
        cfg, risk=msgspec.structs.replace(cfg.risk, max_order_notional=100 * 10**6)
    )


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """The REST rig's exchange: ALICE with dollars, BOB with bitcoin, no database."""
    yield from rest_exchange(instance, tmp_path)


@pytest.fixture
def bounded(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """The REST rig's exchange with a $100 ``max_order_notional``."""
    yield from rest_exchange(instance, tmp_path, reshape=_notional)


async def _codes(c: RestClient, method: str, path: str, cases: dict[str, dict[str, Any]]) -> Any:
    """Each case's (status, code) as ``c`` sends it; 0 for an answer without a code."""
    out = {}
    for name, params in cases.items():
        status, body = await c.request(method, path, **params)
        out[name] = (status, body.get("code", 0) if isinstance(body, dict) else 0)
    return out


# -- faults -----------------------------------------------------------------------------------


def test_a_cancel_replace_exchange_info_allows_is_served(harness: Harness) -> None:
    """Scenario: ALICE rests a bid, reads exchangeInfo (``cancelReplaceAllowed: true``) and
    sends Binance's ``POST order/cancelReplace`` (STOP_ON_FAILURE, ``cancelOrderId``, a new
    price). Expected: the flag is false, or the route cancels the bid and places the new
    one, ``{"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS", ...}``. Was (fixed): the flag is
    true and the route is 404 ``-1000`` "Not Found"."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            _, info = await _get(url, "/api/v1/exchangeInfo")
            allowed = info["symbols"][0]["cancelReplaceAllowed"]
            bid = await alice.call("POST", ORDER, **BID)
            status, body = await alice.request(
                "POST", f"{ORDER}/cancelReplace", **{**BID, "price": "101.00"},
                timeInForce="GTC", cancelReplaceMode="STOP_ON_FAILURE",
                cancelOrderId=bid["orderId"],
            )  # fmt: skip
            assert not allowed or (status, body.get("cancelResult")) == (200, "SUCCESS"), body
        finally:
            await alice.close()

    run(harness, scenario)


def test_an_unknown_side_type_or_time_in_force_has_binances_code(harness: Harness) -> None:
    """Scenario: ALICE sends orders with ``side=HOLD``, ``type=TAKE_PROFIT_LIMIT`` (a
    Binance type ringex lacks) and ``timeInForce=GTX``. Expected: 400 with Binance's codes,
    -1117 INVALID_SIDE, -1116 INVALID_ORDER_TYPE, -1115 INVALID_TIF. Was (fixed): -1100 for all
    three."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            seen = await _codes(alice, "POST", TEST, {
                "side": {**BID, "side": "HOLD"},
                "type": {**BID, "type": "TAKE_PROFIT_LIMIT", "stopPrice": "99.00"},
                "timeInForce": {**BID, "timeInForce": "GTX"},
            })  # fmt: skip
            assert seen == {
                "side": (400, -1117), "type": (400, -1116), "timeInForce": (400, -1115)
            }  # fmt: skip
        finally:
            await alice.close()

    run(harness, scenario)


def test_decimals_past_the_assets_precision_are_1111(harness: Harness) -> None:
    """Scenario: with ``baseAssetPrecision`` and ``quoteAssetPrecision`` 6 in exchangeInfo,
    ALICE sends ``quantity=1.0000001``, ``quantity=1.0000000000000000001`` and
    ``price=100.0000001``. Expected: -1111 BAD_PRECISION for each, as Binance answers past
    the asset's precision (-1013 stays for a value within it off the lot or tick). Now:
    -1013 "not a multiple of lot" / "tick"."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            _, info = await _get(url, "/api/v1/exchangeInfo")
            btc = info["symbols"][0]
            assert (btc["baseAssetPrecision"], btc["quoteAssetPrecision"]) == (6, 6)
            seen = await _codes(alice, "POST", TEST, {
                "qty7": {**BID, "quantity": "1.0000001"},
                "qty19": {**BID, "quantity": "1.0000000000000000001"},
                "price7": {**BID, "price": "100.0000001"},
            })  # fmt: skip
            assert set(seen.values()) == {(400, -1111)}, seen
        finally:
            await alice.close()

    run(harness, scenario)


def test_an_order_past_the_published_notional_filter_is_a_filter_failure(
    bounded: Harness,
) -> None:
    """Scenario: exchangeInfo's BTC-USD has ``NOTIONAL`` ``maxNotional`` 100; ALICE tests,
    then sends, a LIMIT bid of 10.00 at 20.00 (notional 200). Expected: both 400 -1013, a
    filter failure, as Binance answers an order past its NOTIONAL filter (order/test
    included). Was (fixed): order/test answers 200 ``{}`` and the order is refused -2010
    "NOTIONAL_TOO_LARGE" by the router."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            _, info = await _get(url, "/api/v1/exchangeInfo")
            filters = {f["filterType"]: f for f in info["symbols"][0]["filters"]}
            assert filters["NOTIONAL"]["maxNotional"] == "100.000000"
            big = {**LIMIT, "price": "20.00", "quantity": "10.00"}
            tested = await alice.request("POST", TEST, **big)
            placed = await alice.request("POST", ORDER, **big)
            codes = [
                (s, b.get("code", 0) if isinstance(b, dict) else 0) for s, b in (tested, placed)
            ]
            assert codes == [(400, -1013), (400, -1013)], (tested, placed)
        finally:
            await alice.close()

    run(bounded, scenario)


# -- sound ------------------------------------------------------------------------------------


def test_sound_order_fields_have_binances_codes(harness: Harness) -> None:
    """Malformed numbers -1100, values off the lot or tick or below the minimum -1013,
    mandatory ones -1102, unknown ones -1104, ones the type does not take -1106, an unknown
    symbol -1121; trailing zeros within the decimals are taken."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            cases: dict[str, tuple[dict[str, Any], tuple[int, int]]] = {
                "exp": ({**BID, "quantity": "1e-3"}, (400, -1100)),
                "space": ({**BID, "quantity": " 1"}, (400, -1100)),
                "negative": ({**BID, "quantity": "-1"}, (400, -1100)),
                "price exp": ({**BID, "price": "1e2"}, (400, -1100)),
                "past precision": ({**BID, "quantity": "1.001"}, (400, -1111)),
                "off tick": ({**BID, "price": "100.01"}, (400, -1013)),
                "zero": ({**BID, "quantity": "0.00"}, (400, -1013)),
                "zeros": ({**BID, "quantity": "1.000000"}, (200, 0)),
                "no price": ({**LIMIT, "quantity": "1.00"}, (400, -1102)),
                "no qty": ({**LIMIT, "price": "100.00"}, (400, -1102)),
                "no stop": ({**BID, "type": "STOP_LOSS_LIMIT"}, (400, -1102)),
                "unknown": ({**BID, "newOrderRespType": "FULL"}, (400, -1104)),
                "stop on limit": ({**BID, "stopPrice": "99.00"}, (400, -1106)),
                "gtc market": (
                    {
                        "symbol": "BTC-USD",
                        "side": "BUY",
                        "type": "MARKET",
                        "quantity": "1.00",
                        "timeInForce": "GTC",
                    },
                    (400, -1106),
                ),
                "symbol": ({**BID, "symbol": "DOGE-USD"}, (400, -1121)),
            }
            seen = await _codes(alice, "POST", TEST, {k: v[0] for k, v in cases.items()})
            assert seen == {k: v[1] for k, v in cases.items()}
        finally:
            await alice.close()

    run(harness, scenario)


def test_sound_client_order_ids_follow_binances_rules(harness: Harness) -> None:
    """36 characters taken, 37 or a space -1100; an id an open order holds -2010
    "duplicate", one of a cancelled order taken again; GET and DELETE order find an order by
    ``origClientOrderId``; neither id is -1102; openOrders without a symbol lists all."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            seen = await _codes(alice, "POST", TEST, {
                "36": {**BID, "newClientOrderId": "a" * 36},
                "37": {**BID, "newClientOrderId": "a" * 37},
                "space": {**BID, "newClientOrderId": "a b"},
            })  # fmt: skip
            assert seen == {"36": (200, 0), "37": (400, -1100), "space": (400, -1100)}
            first = await alice.call("POST", ORDER, **BID, newClientOrderId="mine-1")
            status, dup = await alice.request("POST", ORDER, **BID, newClientOrderId="mine-1")
            assert (status, dup["code"]) == (400, -2010) and "duplicate" in dup["msg"], dup
            named: dict[str, Any] = {"symbol": "BTC-USD", "origClientOrderId": "mine-1"}
            got = await alice.call("GET", ORDER, **named)
            assert got["orderId"] == first["orderId"]
            assert [o["orderId"] for o in await alice.call("GET", "/api/v1/openOrders")] == [
                first["orderId"]
            ]
            gone = await alice.call("DELETE", ORDER, **named)
            assert (gone["orderId"], gone["status"]) == (first["orderId"], "CANCELED")
            again = await alice.call("POST", ORDER, **BID, newClientOrderId="mine-1")
            assert again["orderId"] != first["orderId"]
            for method in ("GET", "DELETE"):
                status, body = await alice.request(method, ORDER, symbol="BTC-USD")
                assert (status, body["code"]) == (400, -1102), body
        finally:
            await alice.close()

    run(harness, scenario)


def _signed(c: RestClient, method: str, path: str, query: str, body: bytes, ts: int,
            window: int) -> dict[str, str]:  # fmt: skip
    return {
        API_KEY: c.api_key,
        TIMESTAMP: str(ts),
        RECV_WINDOW: str(window),
        SIGNATURE: sign(c.secret, ts, window, method, path, query, body),
    }


def test_sound_query_and_body_timestamp_and_window(harness: Harness) -> None:
    """Parameters split over the query and a form body, signed over both, make one order;
    a receive window of 60000 is taken, 60001 is -1131; a timestamp 1.5 s ahead is -1021."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            query, body = "symbol=BTC-USD&side=BUY", b"type=LIMIT&price=100.00&quantity=1.00"
            headers = alice.headers("POST", ORDER, query, body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            async with alice.session.post(f"{url}{ORDER}?{query}", data=body,
                                          headers=headers) as r:  # fmt: skip
                split = r.status, await r.json()
            assert split[0] == 200 and split[1]["status"] == "NEW", split
            path, now = "/api/v1/openOrders", time.time_ns() // 1_000_000
            answers = []
            for ts, window in ((now, 60_000), (now + 1, 60_001), (now + 1_500, 5_000)):
                headers = _signed(alice, "GET", path, "", b"", ts, window)
                async with alice.session.get(f"{url}{path}", headers=headers) as r:
                    answer = await r.json()
                answers.append(answer.get("code", 0) if isinstance(answer, dict) else 0)
            assert answers == [0, -1131, -1021]
        finally:
            await alice.close()

    run(harness, scenario)


def test_sound_history_bounds_are_checked_before_the_database(harness: Harness) -> None:
    """``allOrders`` and ``myTrades`` refuse ``limit`` 0 and 1001 and a negative ``fromId``
    (-1100), and a missing symbol (-1102), with no history database behind them."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            btc: dict[str, Any] = {"symbol": "BTC-USD"}
            for path in ("/api/v1/allOrders", "/api/v1/myTrades"):
                seen = await _codes(alice, "GET", path, {
                    "0": {**btc, "limit": 0}, "1001": {**btc, "limit": 1001}, "none": {},
                })  # fmt: skip
                assert seen == {"0": (400, -1100), "1001": (400, -1100), "none": (400, -1102)}
            status, body = await alice.request("GET", "/api/v1/myTrades", **btc, fromId=-1)
            assert (status, body["code"]) == (400, -1100), body
        finally:
            await alice.close()

    run(harness, scenario)
