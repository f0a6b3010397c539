"""``PUT /api/v1/order`` over real HTTP, in front of real rings, an in-process router and
matcher: an amend keeps or loses the order's place as FIX's cancel-replace does, a crossing
price trades, the router's risk check holds, refusals name the value, the private stream says
REPLACED, and an order placed over FIX and amended through the API is reported to its session
(Restated, 150=D).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import LIMIT, client, rest_exchange, run
from tests.unit.gateway.test_review4_rest_bugs import fix_bob, fix_sell

ORDER = "/api/v1/order"


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def _bid(alice: RestClient, price: str, qty: str = "0.10") -> dict[str, Any]:
    return await alice.call("POST", ORDER, **LIMIT, price=price, quantity=qty)  # type: ignore[no-any-return]


async def _sell(bob: RestClient, price: str, qty: str) -> dict[str, Any]:
    return await bob.call(  # type: ignore[no-any-return]
        "POST", ORDER, symbol="BTC-USD", side="SELL", type="LIMIT", price=price, quantity=qty
    )


async def _status(c: RestClient, oid: int) -> dict[str, Any]:
    return await c.call("GET", ORDER, symbol="BTC-USD", orderId=oid)  # type: ignore[no-any-return]


def test_a_smaller_quantity_keeps_the_place_a_larger_one_loses_it(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            first, second = await _bid(alice, "30000.00"), await _bid(alice, "30000.00")
            smaller = await alice.call(
                "PUT", ORDER, symbol="BTC-USD", orderId=first["orderId"], quantity="0.06"
            )
            assert smaller["origQty"] == "0.06" and smaller["price"] == "30000.00"
            assert smaller["status"] == "NEW" and smaller["clientOrderId"] == first["clientOrderId"]
            await _sell(bob, "30000.00", "0.06")  # the first keeps its place: it fills
            assert (await _status(alice, first["orderId"]))["status"] == "FILLED"
            assert (await _status(alice, second["orderId"]))["executedQty"] == "0.00"
            third = await _bid(alice, "30000.00")
            larger = await alice.call(
                "PUT", ORDER, symbol="BTC-USD", origClientOrderId=second["clientOrderId"],
                quantity="0.20",
            )  # fmt: skip
            assert larger["origQty"] == "0.20"
            await _sell(bob, "30000.00", "0.10")  # the second went behind the third
            assert (await _status(alice, third["orderId"]))["status"] == "FILLED"
            assert (await _status(alice, second["orderId"]))["executedQty"] == "0.00"
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_a_crossing_price_trades_and_a_total_below_the_fills_ends_it(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            await _sell(bob, "31000.00", "0.04")
            bid = await _bid(alice, "30000.00")
            crossed = await alice.call(
                "PUT", ORDER, symbol="BTC-USD", orderId=bid["orderId"], price="31000.00"
            )
            assert crossed["executedQty"] == "0.04" and crossed["status"] == "PARTIALLY_FILLED"
            ended = await alice.call(
                "PUT", ORDER, symbol="BTC-USD", orderId=bid["orderId"], quantity="0.04"
            )
            assert ended["status"] == "FILLED" and ended["executedQty"] == "0.04"
            status, body = await alice.request(
                "PUT", ORDER, symbol="BTC-USD", orderId=bid["orderId"], quantity="0.10"
            )
            assert status == 400 and body["code"] == -2011 and "is FILLED" in body["msg"]
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_refusals_name_the_value(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        reader = await client(url, "ALICE", "alice-pw", scopes="read")
        try:
            oid = (await _bid(alice, "30000.00"))["orderId"]
            ask = (await _sell(bob, "35000.00", "0.10"))["orderId"]
            ref = {"symbol": "BTC-USD", "orderId": oid}

            async def put(c: RestClient = alice, **params: Any) -> tuple[int, Any]:
                return await c.request("PUT", ORDER, **params)

            status, body = await put(**ref)
            assert status == 400 and body["code"] == -1102 and "'price', 'quantity'" in body["msg"]
            status, body = await put(**ref, price="30000.01")
            assert status == 400 and body["code"] == -1013 and "30000.01" in body["msg"]
            status, body = await put(**ref, quantity="0.001")  # past quantityPrecision 2
            assert status == 400 and body["code"] == -1111 and "0.001" in body["msg"]
            status, body = await put(**ref, side="SELL", price="1.00")
            assert status == 400 and body["code"] == -1104 and "'side'" in body["msg"]
            status, body = await put(symbol="BTC-USD", orderId=ask, price="36000.00")  # bob's
            assert status == 400 and body["code"] == -2013
            status, body = await put(symbol="BTC-USD", orderId=10**12, price="1.00")
            assert status == 400 and body["code"] == -2013 and str(10**12) in body["msg"]
            status, body = await put(reader, **ref, price="29000.00")
            assert status == 403
            # the router's risk check: more than alice's dollars can hold
            status, body = await put(**ref, quantity="900.00", price="30000.00")
            assert status == 400 and body["code"] == -2011 and "INSUFFICIENT" in body["msg"]
            assert "price=30000.00 quantity=900.00" in body["msg"]
            # none of those changed either order
            assert (await _status(alice, oid))["origQty"] == "0.10"
            assert (await _status(bob, ask))["price"] == "35000.00"
        finally:
            await alice.close()
            await bob.close()
            await reader.close()

    run(harness, scenario)


def test_the_stream_says_replaced_and_a_fix_session_is_told(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        fix = await fix_bob(harness)
        try:
            ws = await alice.stream()
            assert json.loads((await ws.receive(timeout=5)).data)["event"] == "snapshot"
            oid = (await _bid(alice, "30000.00"))["orderId"]
            await alice.call("PUT", ORDER, symbol="BTC-USD", orderId=oid, price="29000.00")
            while True:
                msg = json.loads((await ws.receive(timeout=5)).data)
                if msg["data"].get("executionType") == "REPLACED":
                    break
            assert msg["data"]["orderId"] == oid and msg["data"]["price"] == "29000.00"
            await ws.close()
            await alice.call("DELETE", ORDER, symbol="BTC-USD", orderId=oid)  # out of the way
            # BOB's order placed over FIX, amended through the API: his session is told
            await fix_sell(fix, "fix-1")
            (placed,) = await bob.call("GET", "/api/v1/openOrders")
            amended = await bob.call(
                "PUT", ORDER, symbol="BTC-USD", orderId=placed["orderId"], quantity="0.30"
            )
            assert amended["origQty"] == "0.30" and amended["clientOrderId"] == "fix-1"
            report = await fix.expect("8")
            assert report.get(150) == b"D" and report.get(11) == b"fix-1"  # Restated
            assert report.get(378) == b"99"
            assert report.get(38) == b"0.30" and report.get(151) == b"0.30"
            assert b"REST" in report.get(58)
        finally:
            fix.close()
            await alice.close()
            await bob.close()

    run(harness, scenario)
