"""Bugs the hostile REST pass found (``rest_rig.py``). The plain tests each failed before
their fix; those marked ``xfail(strict=True)`` are still open: they pass (and then fail as
XPASS) once fixed, so the mark must go with the fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from procs.common.apikeys import ApiKeyStore
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import (
    LIMIT,
    alive,
    client,
    post_json,
    rest_exchange,
    run,
    until_closed,
)


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


# -- known bugs --------------------------------------------------------------------------------


def test_json_body_with_invalid_utf8_is_a_400(harness: Harness) -> None:
    run(harness, _json_invalid_utf8)


async def _json_invalid_utf8(api: RestApi, url: str) -> None:
    async with aiohttp.ClientSession() as session:
        body = b'{"username": "ALICE", "password": "\xff"}'
        async with session.post(
            f"{url}/api/v1/apiKey", data=body, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400, await r.text()
            assert "UTF-8" in (await r.json())["msg"]
    await alive(url)


def test_client_order_id_with_a_trailing_newline_is_refused(harness: Harness) -> None:
    run(harness, _client_order_id_newline)


async def _client_order_id_newline(api: RestApi, url: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    try:
        status, body = await alice.request(
            "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10",
            newClientOrderId="ok\n",
        )  # fmt: skip
        assert status == 400 and "newClientOrderId" in body["msg"], body
    finally:
        await alice.close()


def test_an_unknown_parameter_is_refused(harness: Harness) -> None:
    run(harness, _unknown_parameter)


async def _unknown_parameter(api: RestApi, url: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    try:
        status, body = await alice.request(
            "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10", timeinforce="IOC"
        )
        assert status == 400 and body["code"] == -1104 and "timeinforce" in body["msg"], body
    finally:
        await alice.close()


@pytest.mark.parametrize("where", ["query", "query-and-body"])
def test_a_parameter_sent_twice_is_refused(harness: Harness, where: str) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            if where == "query":
                for _ in range(2):
                    await alice.call(
                        "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10"
                    )
                path, query, body = "/api/v1/order", "symbol=BTC-USD&orderId=1&orderId=2", b""
                method = "GET"
            else:
                path, query = "/api/v1/order", "quantity=0.01"
                body = b"symbol=BTC-USD&side=BUY&type=LIMIT&price=100.00&quantity=0.20"
                method = "POST"
            headers = alice.headers(method, path, query, body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            async with alice.session.request(
                method, f"{url}{path}?{query}", data=body or None, headers=headers
            ) as r:
                answer = await r.json()
                assert r.status == 400, answer
                assert "orderId" in answer["msg"] or "quantity" in answer["msg"]
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_json_number_is_not_rounded_onto_the_tick(harness: Harness) -> None:
    run(harness, _json_number_rounded)


async def _json_number_rounded(api: RestApi, url: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    try:
        body = (
            b'{"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", '
            b'"price": 30000.050000000001, "quantity": "0.10"}'
        )
        status, answer = await post_json(alice, url, body)
        assert status == 400 and "price" in answer["msg"], answer
    finally:
        await alice.close()


def test_a_long_parameter_name_is_named_with_its_length(harness: Harness) -> None:
    run(harness, _long_parameter_name)


async def _long_parameter_name(api: RestApi, url: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    try:
        long_name: dict[str, Any] = {"x" * 100: "1"}
        status, body = await alice.request("GET", "/api/v1/openOrders", **long_name)
        assert status == 400 and "100 characters" in body["msg"], body
    finally:
        await alice.close()


def test_a_trade_only_key_can_revoke_itself(harness: Harness) -> None:
    run(harness, _trade_only_revoke)


async def _trade_only_revoke(api: RestApi, url: str) -> None:
    trader = await client(url, "ALICE", "alice-pw", scopes="trade")
    try:
        status, body = await trader.request("DELETE", "/api/v1/apiKey")
        assert status == 200 and body["revoked"] is True, body
    finally:
        await trader.close()


def test_revoking_a_key_closes_its_private_stream(harness: Harness) -> None:
    run(harness, _revoke_closes_stream)


async def _revoke_closes_stream(api: RestApi, url: str) -> None:
    bob, other = await client(url, "BOB", "bob-pw"), await client(url, "BOB", "bob-pw")
    try:
        ws = await bob.stream()
        await ws.receive(timeout=5)  # the snapshot
        assert (await bob.call("DELETE", "/api/v1/apiKey"))["revoked"] is True
        await other.call(  # an event for the account, through another key
            "POST", "/api/v1/order", symbol="BTC-USD", side="SELL", type="LIMIT",
            price="30000.00", quantity="0.10",
        )  # fmt: skip
        assert await until_closed(ws, 2) is not None, "the revoked key's stream is still open"
    finally:
        await bob.close()
        await other.close()


def test_a_key_revoked_elsewhere_closes_its_stream_within_seconds(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        bob = await client(url, "BOB", "bob-pw")
        try:
            ws = await bob.stream()
            await ws.receive(timeout=5)  # the snapshot
            # another gateway process or an operator: a store of its own over the same file
            assert ApiKeyStore(api.keys.path).revoke(bob.api_key)
            assert await until_closed(ws, 4) == 1008, "the revoked key's stream is still open"
        finally:
            await bob.close()

    run(harness, scenario)


def test_a_client_order_id_in_use_is_refused(harness: Harness) -> None:
    run(harness, _client_order_id_in_use)


async def _client_order_id_in_use(api: RestApi, url: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    try:
        params = {**LIMIT, "price": "100.00", "quantity": "0.10", "newClientOrderId": "dup-1"}
        await alice.call("POST", "/api/v1/order", **params)
        status, body = await alice.request("POST", "/api/v1/order", **params)
        assert status == 400 and "dup-1" in body["msg"], body
        await alice.call("DELETE", "/api/v1/order", symbol="BTC-USD", origClientOrderId="dup-1")
        await alice.call("POST", "/api/v1/order", **params)  # free again once it is finished
    finally:
        await alice.close()
