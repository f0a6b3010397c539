"""``POST /api/v1/batchOrders`` over real HTTP: each order placed as ``POST /api/v1/order``
places it, in the array's order, an answer each (the order, or the ``{"code", "msg"}`` of one
refused while the others go); what refuses the whole request; the key's rate limit spent
once per order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.gateway import api_errors as codes
from procs.gateway.limits import RateLimiter
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import ApiCallError, RestClient
from procs.gateway.rest_params import MAX_BATCH_ORDERS
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import client, rest_exchange, run

BATCH = "/api/v1/batchOrders"
ASK: dict[str, Any] = {"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT", "quantity": "0.10"}
BID: dict[str, Any] = {**ASK, "side": "BUY"}


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def _refused(c: RestClient, **params: Any) -> dict[str, Any]:
    with pytest.raises(ApiCallError) as refused:
        await c.call("POST", BATCH, **params)
    assert refused.value.status == 400, refused.value
    body: dict[str, Any] = refused.value.body
    return body


def test_a_batch_places_each_order_in_turn_and_answers_each(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            asks = await bob.batch_orders(
                [
                    {**ASK, "price": "30000.00"},
                    {**ASK, "price": "30100.00", "newClientOrderId": "q2"},
                ]
            )
            assert [a["status"] for a in asks] == ["NEW", "NEW"]
            assert asks[0]["orderId"] < asks[1]["orderId"]  # placed in the array's order
            assert asks[1]["clientOrderId"] == "q2"
            answers = await alice.batch_orders(
                [
                    {**BID, "price": "30100.00", "newClientOrderId": "b1"},  # takes both
                    {**BID, "price": "30000.01"},  # off the tick
                    {**BID, "price": "100.00", "newClientOrderId": "b1"},  # b1 is pending then
                    {**BID, "price": "100.00", "quantity": "0.30", "newClientOrderId": "b4"},
                    {**BID, "price": "100.00", "newClientOrderId": "b4"},  # b4 rests: in use
                ]
            )
            taker, tick, reused, rests, duplicate = answers
            assert taker["status"] == "FILLED" and taker["executedQty"] == "0.10"
            assert [f["price"] for f in taker["fills"]] == ["30000.00"]
            assert tick["code"] == codes.FILTER_FAILURE and "30000.01" in tick["msg"], tick
            # the batch's orders are placed before any is answered: b1 was unanswered
            assert reused["code"] == codes.NEW_ORDER_REJECTED, reused
            assert "newClientOrderId=b1 is in use by open order (pending)" in reused["msg"]
            assert rests["status"] == "NEW"
            assert duplicate["code"] == codes.NEW_ORDER_REJECTED, duplicate
            assert "newClientOrderId=b4 is in use" in duplicate["msg"]
            mine = await alice.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
            assert [o["clientOrderId"] for o in mine] == ["b4"]  # b1 filled
            again = await alice.batch_orders([{**BID, "price": "100.00", "newClientOrderId": "b1"}])
            assert again[0]["status"] == "NEW"  # a finished order's id may be used again
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_an_order_of_a_batch_is_checked_as_a_json_body_is(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            text = (
                '[{"symbol":"BTC-USD","side":"BUY","type":"LIMIT","quantity":"0.1",'
                '"price":100.50}, 7, {"symbol":"BTC-USD","sid":"BUY"},'
                f"{json.dumps({**BID, 'price': '100.00'})}]"
            )
            number, seven, misspelt, ok = await alice.call("POST", BATCH, batchOrders=text)
            assert number["code"] == codes.ILLEGAL_PARAM and "100.50" in number["msg"], number
            assert seven["code"] == codes.ILLEGAL_PARAM
            assert seven["msg"] == "batchOrders[1] is not a JSON object: 7"
            assert misspelt["code"] == codes.UNKNOWN_PARAM and "'sid'" in misspelt["msg"]
            assert ok["status"] == "NEW"
        finally:
            await alice.close()

    run(harness, scenario)


def test_what_refuses_a_whole_batch_is_named(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            missing = await _refused(alice)
            assert missing["code"] == codes.MANDATORY_PARAM and "batchOrders" in missing["msg"]
            not_json = await _refused(alice, batchOrders="{'a': 1}")
            assert "is not a JSON array of orders" in not_json["msg"], not_json
            empty = await _refused(alice, batchOrders="[]")
            assert f"holds 0 orders: the limit is 1..{MAX_BATCH_ORDERS}" in empty["msg"]
            many = json.dumps([{**BID, "price": "100.00"}] * (MAX_BATCH_ORDERS + 1))
            too_many = await _refused(alice, batchOrders=many)
            assert f"holds {MAX_BATCH_ORDERS + 1} orders" in too_many["msg"], too_many
            long = await _refused(alice, batchOrders="[" + " " * 9_000 + "]")
            assert "'batchOrders' is 9002 characters, the limit is 8192" in long["msg"], long
            other = await _refused(alice, batchOrders="[]", symbol="BTC-USD")
            assert other["code"] == codes.UNKNOWN_PARAM
            assert await alice.call("GET", "/api/v1/openOrders") == []  # none went
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_batch_spends_the_keys_rate_limit_once_per_order(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            api.key_limits = RateLimiter(0.001, 6)  # six requests, then none for a long while
            order = {**BID, "price": "100.00"}
            past = await _refused(alice, batchOrders=json.dumps([order] * 8))
            assert "burst here is 6 requests, so 6 orders a batch at most" in past["msg"], past
            # that request spent one: five left, so a batch of six is refused as a whole,
            # spending nothing (review 342)
            with pytest.raises(ApiCallError) as limited:
                await alice.batch_orders([order] * 6)
            assert limited.value.status == 429, limited.value
            assert limited.value.body["code"] == codes.TOO_MANY_REQUESTS
            answers = await alice.batch_orders([order] * 4)  # four of the five
            assert [a["status"] for a in answers] == ["NEW"] * 4
            await alice.call("GET", "/api/v1/openOrders")  # the last
            with pytest.raises(ApiCallError) as spent:
                await alice.call("GET", "/api/v1/openOrders")
            assert spent.value.status == 429
        finally:
            await alice.close()

    run(harness, scenario)


async def _post_json(c: RestClient, url: str, body: bytes) -> tuple[int, Any]:
    headers = c.headers("POST", BATCH, "", body) | {"Content-Type": "application/json"}
    async with c.session.post(f"{url}{BATCH}", data=body, headers=headers) as r:
        return r.status, await r.json()


def test_the_array_goes_in_a_json_body_or_as_text(harness: Harness) -> None:
    """The array itself in a JSON body, or its text: a JSON string, a form field; a JSON
    body naming ``batchOrders`` twice is refused as any repeated parameter is."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            orders = [{**BID, "price": f"{100 + k}.00"} for k in range(3)]
            text = json.dumps(orders)
            status, as_array = await _post_json(
                alice, url, json.dumps({"batchOrders": orders}).encode()
            )
            assert status == 200 and [a["price"] for a in as_array] == [
                "100.00", "101.00", "102.00"
            ]  # fmt: skip
            status, as_string = await _post_json(
                alice, url, json.dumps({"batchOrders": text}).encode()
            )
            assert status == 200 and [a["status"] for a in as_string] == ["NEW"] * 3
            as_form = await alice.call("POST", BATCH, batchOrders=text)
            assert [a["status"] for a in as_form] == ["NEW"] * 3
            twice = f'{{"batchOrders": {text}, "batchOrders": {text}}}'.encode()
            status, refused = await _post_json(alice, url, twice)
            assert status == 400 and "'batchOrders' is sent twice" in refused["msg"], refused
            status, number = await _post_json(alice, url, b'{"batchOrders": 5}')
            assert status == 400 and "not a JSON array of orders" in number["msg"], number
            status, other = await _post_json(alice, url, b'{"batchOrders": [], "x": [1]}')
            assert status == 400 and other["code"] == codes.UNKNOWN_PARAM, other
            assert len(await alice.call("GET", "/api/v1/openOrders")) == 9
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_batch_cancel_cancels_each_order_named_and_answers_each(harness: Harness) -> None:
    """``DELETE /api/v1/batchOrders``: by ``orderIdList`` or ``origClientOrderIdList``, an
    answer each (CANCELED, or the refusal of one: unknown, another account's, too late),
    in order; what refuses the whole request is named."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            bids = await alice.batch_orders(
                [{**BID, "price": f"{100 + k}.00", "newClientOrderId": f"c{k}"} for k in range(5)]
            )
            ids = [b["orderId"] for b in bids]
            (ask,) = await bob.batch_orders([{**ASK, "price": "40000.00"}])
            (taker,) = await bob.batch_orders([{**ASK, "price": "104.00"}])  # fills c4
            assert taker["status"] == "FILLED"
            answers = await alice.batch_cancel(
                "BTC-USD", [ids[0], ask["orderId"], 99, ids[4], ids[1]]
            )
            first, bobs, unknown, filled, second = answers
            assert (first["orderId"], first["status"]) == (ids[0], "CANCELED")
            assert (second["orderId"], second["status"]) == (ids[1], "CANCELED")
            assert bobs["code"] == codes.CANCEL_REJECTED and "unknown order" in bobs["msg"], bobs
            assert unknown["code"] == codes.CANCEL_REJECTED, unknown
            assert "too late to cancel" in filled["msg"], filled
            by_client = await alice.call(
                "DELETE", BATCH, symbol="BTC-USD", origClientOrderIdList='["c2","c3","zz"]'
            )
            assert [a.get("clientOrderId") for a in by_client[:2]] == ["c2", "c3"]
            assert "zz" in by_client[2]["msg"], by_client
            assert await alice.call("GET", "/api/v1/openOrders") == []
            (still,) = await bob.call("GET", "/api/v1/openOrders")
            assert still["orderId"] == ask["orderId"]  # another account's order stands
            refusals: list[tuple[dict[str, Any], str]] = [
                ({"symbol": "BTC-USD"}, "not neither"),
                ({"symbol": "BTC-USD", "orderIdList": "[1]", "origClientOrderIdList": '["a"]'},
                 "not both"),
                ({"symbol": "BTC-USD", "orderIdList": "[]"}, "holds 0 orders"),
                ({"symbol": "BTC-USD", "orderIdList": json.dumps(list(range(1, 12)))},
                 f"holds 11 orders: the limit is 1..{MAX_BATCH_ORDERS}"),
                ({"symbol": "BTC-USD", "orderIdList": '["1"]'}, "is not a JSON array of order"),
                ({"orderIdList": "[1]"}, "'symbol'"),
            ]  # fmt: skip
            for params, why in refusals:
                with pytest.raises(ApiCallError) as refused:
                    await alice.call("DELETE", BATCH, **params)
                assert refused.value.status == 400 and why in refused.value.body["msg"], (
                    params, refused.value.body
                )  # fmt: skip
            (empty,) = await alice.call(
                "DELETE", BATCH, symbol="BTC-USD", origClientOrderIdList='[""]'
            )
            assert "sent empty" in empty["msg"], empty
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_a_batch_cancel_takes_its_list_itself_in_a_json_body(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            bids = await alice.batch_orders([{**BID, "price": f"{100 + k}.00"} for k in range(2)])
            body = json.dumps(
                {"symbol": "BTC-USD", "orderIdList": [b["orderId"] for b in bids]}
            ).encode()
            headers = alice.headers("DELETE", BATCH, "", body) | {
                "Content-Type": "application/json"
            }
            async with alice.session.delete(f"{url}{BATCH}", data=body, headers=headers) as r:
                assert r.status == 200, await r.text()
                assert [a["status"] for a in await r.json()] == ["CANCELED"] * 2
        finally:
            await alice.close()

    run(harness, scenario)
