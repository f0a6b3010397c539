"""Review 306: the REST new-order API as a client written for Binance's spot API uses it.

Reviewed: README (The REST API and the private stream), ``/openapi.json``,
``procs/gateway/rest_params.py``, ``rest_new_orders.py``, ``rest_orders.py``,
``rest_order_state.py``, ``rest_body.py``, ``signing.py``, ``api_errors.py``,
``openapi.py`` / ``openapi_intro.py``; ``tests/unit/test_review70_binance.py`` (the
documented differences it pins are not reported again).

Rig: ``tests/unit/gateway/rest_rig.py`` (real HTTP in front of real rings, router and matcher;
ALICE 601 with dollars, BOB 602 with bitcoin; BTC-USD tick 0.05, lot 0.01), driven the way a
python-binance bot drives its venue: form bodies, ``newClientOrderId``, ``timeInForce``, STP
modes, ``origClientOrderId`` cancels; signed with ringex's own headers (``RestClient``, or
``_signed`` below for a chosen timestamp and receive window).

Faults found (each fixed; its test says what it was):

1. A parameter sent that the order's type does not take is answered ``-1100``, the code README
   and ``/openapi.json`` give to "a value malformed, repeated or empty", not ``-1106``,
   Binance's number for exactly this fault ("Parameter '%s' sent when not required."), whose
   numbering README says the codes follow. ``stopPrice`` on a LIMIT
   (``procs/gateway/rest_params.py:352``), ``timeInForce`` GTC on a MARKET (:335) and
   ``icebergQty`` on a MARKET (:360) all give ``ILLEGAL_PARAM``; ``api_errors.py`` has no
   -1106. A bot that routes -1100 to "fix the value's formatting" and -1106 to "drop the
   parameter for this type" takes the wrong branch, and the value it is told is malformed
   (``90.00``) is well formed. Fixed: ``api_errors.NOT_REQUIRED_PARAM`` (-1106) from those
   three checks and the LIMIT_MAKER/iceberg "does not rest" ones; README's code list and
   ``openapi_intro.ERRORS[400]`` name it.

Sound (``test_sound_*``): the new order answer's fields (``symbol``, ``orderId``,
``clientOrderId``, ``transactTime``, ``price``, ``origQty``, ``executedQty``,
``cummulativeQuoteQty`` = the sum of the fills' notionals, ``status``, ``timeInForce``,
``type``, ``side``, ``fills`` with price/qty/commission/commissionAsset/tradeId) across a
two-level sweep, a market buy and a market sell by ``quantity``; LIMIT without
``timeInForce`` is GTC as ``/openapi.json`` says; Binance-only parameters
(``newOrderRespType`` ACK/RESULT/FULL, ``quoteOrderQty`` on a buy and a sell, ``recvWindow``
and ``timestamp`` as parameters) refused -1104 naming them, nothing placed; TAKE_PROFIT,
TAKE_PROFIT_LIMIT refused naming the supported types; LIMIT_MAKER that would cross -2010, and
over the account's own order under EXPIRE_MAKER/EXPIRE_BOTH it leaves that order alone; a FOK
that cannot fill under STP expires no maker; ``icebergQty`` rules (IOC refused, equal to the
quantity refused, a crossing iceberg takes then rests its shown slice); ``newClientOrderId``
(37 characters refused, reuse while open -2010, twice in one batch the second -2010, reuse
after a cancel, a refusal or a maker fill taken, an exchange-refused id -2013);
``DELETE order`` by ``origClientOrderId`` (form body too), both ids naming different orders
refused; receive window 1..60000 (-1131 outside), a timestamp more than 1 s ahead or older
than the window -1021; -1013 for off-tick / off-lot naming tick and lot while 8-decimal
renderings of on-tick values are taken; -1102 naming the missing parameter; no /api/v3 path.

Leads not shown:
- The new order answer has no ``orderListId``, ``workingTime`` or ``selfTradePreventionMode``
  (Binance's FULL/RESULT have them): a bot reading them fails loudly (KeyError); neither README
  nor ``/openapi.json`` claims them, so not reported as a fault. Without
  ``selfTradePreventionMode`` in the answer a client cannot see that its order got ``NONE``.
- ``newOrderRespType`` is refused rather than taken: ccxt sends it on every spot order, so a
  ccxt client places nothing (loud; README's -1104 rule covers it).
- An unsupported enum value (``TAKE_PROFIT``, ``limit``) is -1100 where Binance has -1116 /
  -1115 / -1117; the msg names the allowed values, so only a code-keyed client is misled.
  (Review 315 made them Binance's codes.)
- A FOK under ``EXPIRE_TAKER`` whose first match is the account's own order answers
  ``EXPIRED``, not ``EXPIRED_IN_MATCH``; Binance's answer for that case could not be confirmed
  here.
- The -1013 messages say "tick"/"lot" where exchangeInfo says ``tickSize``/``stepSize`` and
  Binance says "Filter failure: PRICE_FILTER / LOT_SIZE"; an ``icebergQty`` of 0 is told
  "icebergQty: quantity 0.00 must be positive" (wording only).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.signing import API_KEY, RECV_WINDOW, SIGNATURE, TIMESTAMP, sign
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import LIMIT, client, rest_exchange, run

ORDER = "/api/v1/order"
SELL: dict[str, Any] = {**LIMIT, "side": "SELL"}
MARKET: dict[str, Any] = {"symbol": "BTC-USD", "type": "MARKET"}
MAKER: dict[str, Any] = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT_MAKER"}


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def _signed(
    c: RestClient, method: str, path: str, query: str, body: bytes, ts: int, window: str | None
) -> tuple[int, Any]:
    """A request signed at timestamp ``ts`` with receive window header ``window`` (None: not
    sent, the server's 5000 signed), params in ``query`` or a form ``body``."""
    signature = sign(c.secret, ts, int(window or 5000), method, path, query, body)
    headers = {API_KEY: c.api_key, TIMESTAMP: str(ts), SIGNATURE: signature}
    if window is not None:
        headers[RECV_WINDOW] = window
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    url = f"{c.base_url}{path}" + (f"?{query}" if query else "")
    async with c.session.request(method, url, data=body or None, headers=headers) as r:
        return r.status, await r.json()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _seed_last_trade(alice: RestClient, bob: RestClient) -> None:
    """A trade at 300.00 (market buys need a reference price)."""
    await bob.call("POST", ORDER, **SELL, price="300.00", quantity="0.10")
    await alice.call("POST", ORDER, **LIMIT, price="300.00", quantity="0.10")


# -- faults -----------------------------------------------------------------------------------


def test_a_parameter_the_type_does_not_take_is_binance_minus_1106(harness: Harness) -> None:
    """Scenario: a Binance bot sends ``stopPrice=90.00`` on a LIMIT order, ``timeInForce=GTC``
    on a MARKET, ``icebergQty`` on a MARKET. Binance answers each -1106 "Parameter '...' sent
    when not required."; README says ringex's codes follow that numbering and defines -1100 as
    "a value malformed, repeated or empty", which none of these values is.
    Expected: 400 -1106 naming the parameter, nothing placed.
    Was (fixed): 400 -1100 (``ILLEGAL_PARAM``), the code for a malformed value."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            sent: list[tuple[str, dict[str, Any]]] = [
                ("stopPrice", {**LIMIT, "price": "100.00", "stopPrice": "90.00"}),
                ("timeInForce", {**MARKET, "side": "SELL", "timeInForce": "GTC"}),
                ("icebergQty", {**MARKET, "side": "SELL", "icebergQty": "0.05"}),
            ]
            answers = [
                (name, await alice.request("POST", ORDER, **params, quantity="0.10"))
                for name, params in sent
            ]
            assert await alice.call("GET", "/api/v1/openOrders") == []
        finally:
            await alice.close()
        for name, (status, body) in answers:
            assert (status, body["code"]) == (400, -1106), (name, body)
            assert name in body["msg"], body

    run(harness, scenario)


# -- sound ------------------------------------------------------------------------------------


def test_sound_new_order_answers_carry_binances_fields_and_fills(harness: Harness) -> None:
    """A sweep of two levels, a market buy and a market sell by ``quantity``: Binance's field
    names, ``cummulativeQuoteQty`` the sum of the fills, a fill's commission in the quote
    asset; a LIMIT without ``timeInForce`` is GTC, as ``/openapi.json`` documents."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            await bob.call("POST", ORDER, **SELL, price="300.00", quantity="0.20")
            await bob.call("POST", ORDER, **SELL, price="305.00", quantity="0.20")
            sweep = await alice.call("POST", ORDER, **LIMIT, price="305.00", quantity="0.30")
            buy = await alice.call("POST", ORDER, **MARKET, side="BUY", quantity="0.05")
            await alice.call("POST", ORDER, **LIMIT, price="200.00", quantity="0.10")
            sell = await bob.call("POST", ORDER, **MARKET, side="SELL", quantity="0.05")
            spec = await alice.call("GET", "/openapi.json", signed=False)
        finally:
            await alice.close()
            await bob.close()
        fields = {
            "symbol", "orderId", "clientOrderId", "transactTime", "price", "origQty",
            "executedQty", "cummulativeQuoteQty", "status", "timeInForce", "type", "side",
            "fills",
        }  # fmt: skip
        for answer in (sweep, buy, sell):
            assert fields <= answer.keys(), answer
            for fill in answer["fills"]:
                assert {"price", "qty", "commission", "commissionAsset", "tradeId"} <= fill.keys()
                assert fill["commissionAsset"] == "USD", fill
            quote = sum(float(f["price"]) * float(f["qty"]) for f in answer["fills"])
            assert float(answer["cummulativeQuoteQty"]) == pytest.approx(quote), answer
            assert answer["status"] == "FILLED", answer
        assert [f["price"] for f in sweep["fills"]] == ["300.00", "305.00"], sweep
        assert (sweep["timeInForce"], sweep["cummulativeQuoteQty"]) == ("GTC", "90.5000"), sweep
        assert (buy["type"], buy["executedQty"], buy["timeInForce"]) == ("MARKET", "0.05", "IOC")
        assert (sell["side"], sell["fills"][0]["price"]) == ("SELL", "200.00"), sell
        tif = spec["components"]["schemas"]["NewOrderRequest"]["properties"]["timeInForce"]
        assert "GTC for limit types" in tif["description"], tif

    run(harness, scenario)


def test_sound_binance_only_parameters_and_types_are_refused_naming_them(
    harness: Harness,
) -> None:
    """``newOrderRespType`` (each value), ``quoteOrderQty`` (buy and sell), ``recvWindow`` and
    ``timestamp`` sent as parameters: -1104 naming them; TAKE_PROFIT types refused naming
    the supported ones; nothing placed."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            base = {**LIMIT, "price": "100.00", "quantity": "0.10", "timeInForce": "GTC"}
            extras: list[tuple[str, dict[str, Any]]] = [
                *(("newOrderRespType", {**base, "newOrderRespType": t}) for t in
                  ("ACK", "RESULT", "FULL")),
                ("quoteOrderQty", {**MARKET, "side": "BUY", "quoteOrderQty": "30.00"}),
                ("quoteOrderQty", {**MARKET, "side": "SELL", "quoteOrderQty": "30.00"}),
                ("recvWindow", {**base, "recvWindow": "5000"}),
                ("timestamp", {**base, "timestamp": str(_now_ms())}),
            ]  # fmt: skip
            for name, params in extras:
                status, body = await alice.request("POST", ORDER, **params)
                assert (status, body["code"]) == (400, -1104), (name, body)
                assert repr(name) in body["msg"], body
            for kind in ("TAKE_PROFIT", "TAKE_PROFIT_LIMIT"):
                status, body = await alice.request(
                    "POST", ORDER, **{**base, "type": kind, "stopPrice": "90.00"}
                )
                assert (status, body["code"]) == (400, -1116), body  # (review 315: -1100)
                assert kind in body["msg"] and "STOP_LOSS_LIMIT" in body["msg"], body
            assert await alice.call("GET", "/api/v1/openOrders") == []
            status, body = await alice.request("GET", "/api/v3/openOrders")
            assert status == 404, body
        finally:
            await alice.close()

    run(harness, scenario)


def test_sound_client_order_id_rules(harness: Harness) -> None:
    """``newClientOrderId``: unique among open orders (a batch's twin included), free again
    once the order is done (cancelled, refused, filled as a maker); ``DELETE`` by
    ``origClientOrderId`` in a form body; both ids must name one order."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        bid = {**LIMIT, "price": "200.00", "quantity": "0.05"}
        try:
            status, body = await alice.request("POST", ORDER, **bid, newClientOrderId="x" * 37)
            assert (status, body["code"]) == (400, -1100), body
            first = await alice.call("POST", ORDER, **bid, newClientOrderId="dup")
            status, body = await alice.request("POST", ORDER, **bid, newClientOrderId="dup")
            assert (status, body["code"]) == (400, -2010), body
            twins = await alice.batch_orders(
                [{**bid, "newClientOrderId": "twin"}, {**bid, "newClientOrderId": "twin"}]
            )
            assert twins[0]["clientOrderId"] == "twin" and twins[1]["code"] == -2010, twins
            status, body = await alice.request(
                "DELETE", ORDER, symbol="BTC-USD", orderId=first["orderId"],
                origClientOrderId="twin",
            )  # fmt: skip
            assert (status, body["code"]) == (400, -1100), body
            form = urlencode({"symbol": "BTC-USD", "origClientOrderId": "dup"}).encode()
            status, gone = await _signed(alice, "DELETE", ORDER, "", form, _now_ms(), None)
            assert (status, gone["orderId"], gone["status"]) == (200, first["orderId"], "CANCELED")
            again = await alice.call("POST", ORDER, **bid, newClientOrderId="dup")
            found = await alice.call("GET", ORDER, symbol="BTC-USD", origClientOrderId="dup")
            assert found["orderId"] == again["orderId"] != first["orderId"], found
            await bob.call("POST", ORDER, **SELL, price="300.00", quantity="0.10")
            status, body = await alice.request(
                "POST", ORDER, **MAKER, price="300.00", quantity="0.05", newClientOrderId="pm"
            )
            assert (status, body["code"]) == (400, -2010), body
            status, body = await alice.request(
                "GET", ORDER, symbol="BTC-USD", origClientOrderId="pm"
            )
            assert (status, body["code"]) == (400, -2013), body
            maker = await alice.call(
                "POST", ORDER, **MAKER, price="250.00", quantity="0.05", newClientOrderId="pm"
            )
            await bob.call(
                "POST", ORDER, **SELL, price="250.00", quantity="0.05", timeInForce="IOC"
            )
            reused = await alice.call("POST", ORDER, **bid, newClientOrderId="pm")
            assert reused["orderId"] != maker["orderId"] and reused["status"] == "NEW", reused
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_sound_receive_window_and_timestamp_limits(harness: Harness) -> None:
    """Receive window 1..60000 ms (Binance's maximum), -1131 outside; a timestamp more than
    1 s ahead of the server, or older than the window, -1021."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        path, query = "/api/v1/openOrders", "symbol=BTC-USD"
        try:
            now = _now_ms()
            cases = [
                ("60000", now, 200, None), ("60001", now + 1, 401, -1131),
                ("0", now + 2, 401, -1131), (None, now + 500, 200, None),
                (None, _now_ms() + 1_500, 401, -1021), (None, _now_ms() - 6_000, 401, -1021),
            ]  # fmt: skip
            for window, ts, want, code in cases:
                status, body = await _signed(alice, "GET", path, query, b"", ts, window)
                assert status == want, (window, ts - now, body)
                if code is not None:
                    assert body["code"] == code, body
        finally:
            await alice.close()

    run(harness, scenario)


def test_sound_post_only_iceberg_and_self_trade_prevention(harness: Harness) -> None:
    """A LIMIT_MAKER that would cross is -2010, over the account's own order under STP too,
    which stays; a FOK that cannot fill under EXPIRE_MAKER expires no maker; icebergQty:
    IOC refused, equal to quantity refused, a crossing iceberg takes, then rests."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            await _seed_last_trade(alice, bob)
            own = await alice.call("POST", ORDER, **SELL, price="301.00", quantity="0.05")
            await bob.call("POST", ORDER, **SELL, price="302.00", quantity="0.05")
            for mode in ("EXPIRE_MAKER", "EXPIRE_BOTH"):
                status, body = await alice.request(
                    "POST", ORDER, **MAKER, price="301.00", quantity="0.05",
                    selfTradePreventionMode=mode,
                )  # fmt: skip
                assert (status, body["code"]) == (400, -2010), body
                assert "POST_ONLY_WOULD_TAKE" in body["msg"], body
            fok = await alice.call(
                "POST", ORDER, **LIMIT, price="302.00", quantity="0.20", timeInForce="FOK",
                selfTradePreventionMode="EXPIRE_MAKER",
            )  # fmt: skip
            assert (fok["status"], fok["fills"]) == ("EXPIRED", []), fok
            kept = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=own["orderId"])
            assert kept["status"] == "NEW", kept
            ice = {**LIMIT, "price": "290.00", "quantity": "0.50", "icebergQty": "0.10"}
            status, body = await alice.request("POST", ORDER, **ice, timeInForce="IOC")
            assert (status, body["code"]) == (400, -1106), body  # (the fix: type rule)
            status, body = await alice.request("POST", ORDER, **{**ice, "icebergQty": "0.50"})
            assert (status, body["code"]) == (400, -1013), body
            took = await alice.call(
                "POST", ORDER, **{**ice, "price": "302.00"}, selfTradePreventionMode="EXPIRE_MAKER"
            )
            assert (took["status"], took["executedQty"], took["icebergQty"]) == (
                "PARTIALLY_FILLED", "0.05", "0.10"
            ), took  # fmt: skip
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_sound_filter_failures_and_missing_parameters(harness: Harness) -> None:
    """-1013 off the tick or lot, naming them; an on-tick price and lot written with eight
    decimals (as bots format them) taken; -1102 naming a missing ``price``/``quantity``."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            cases: list[tuple[dict[str, Any], int, str]] = [
                ({"price": "100.01", "quantity": "0.10"}, -1013, "tick 0.05"),
                ({"price": "100.00", "quantity": "0.101"}, -1111, "lot 0.01"),  # review 315
                ({"quantity": "0.10"}, -1102, "'price'"),
                ({"price": "100.00"}, -1102, "'quantity'"),
            ]
            for params, code, named in cases:
                status, body = await alice.request("POST", ORDER, **LIMIT, **params)
                assert (status, body["code"]) == (400, code), body
                assert named in body["msg"], body
            placed = await alice.call(
                "POST", ORDER, **LIMIT, price="100.05000000", quantity="0.10000000"
            )
            assert (placed["price"], placed["origQty"]) == ("100.05", "0.10"), placed
        finally:
            await alice.close()

    run(harness, scenario)


def test_sound_answers_are_json_objects(harness: Harness) -> None:
    """Errors are ``{"code", "msg"}`` with an integer code, as a Binance client parses them."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            status, body = await alice.request("POST", ORDER, **LIMIT, quantity="0.10")
        finally:
            await alice.close()
        assert status == 400 and set(body) == {"code", "msg"}, body
        assert isinstance(body["code"], int) and json.dumps(body), body

    run(harness, scenario)
