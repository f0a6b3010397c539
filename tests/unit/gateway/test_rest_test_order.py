"""``POST /api/v1/order/test`` over real HTTP: an order checked as ``POST /api/v1/order``
checks it in the gateway, then not sent: ``{}``, or the 400 the order would get; the key's
scope is asked, and nothing reaches the book."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.gateway import api_errors as codes
from procs.gateway import signing
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import ApiCallError, RestClient
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import client, rest_exchange, run

TEST = "/api/v1/order/test"
BID: dict[str, Any] = {
    "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": "100.00", "quantity": "0.10",
}  # fmt: skip


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def _refused(c: RestClient, **params: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(ApiCallError) as refused:
        await c.call("POST", TEST, **params)
    return refused.value.status, refused.value.body


def test_a_good_order_is_checked_and_not_sent(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            assert await alice.call("POST", TEST, **BID, newClientOrderId="t1") == {}
            assert await alice.call("GET", "/api/v1/openOrders") == []
            placed = await alice.call("POST", "/api/v1/order", **BID, newClientOrderId="t1")
            assert placed["status"] == "NEW", placed  # t1 was not taken by the test
        finally:
            await alice.close()

    run(harness, scenario)


def test_what_post_order_refuses_here_the_test_refuses_the_same_way(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await alice.call("POST", "/api/v1/order", **BID, newClientOrderId="rests")
            for params in (
                {**BID, "price": "100.001"},  # off the tick
                {**BID, "symbol": "DOGE-USD"},
                {**BID, "timeInForce": "NEVER"},
                {**BID, "newClientOrderId": "rests"},  # an open order holds it
                {**BID, "colour": "red"},
            ):
                status, test = await _refused(alice, **params)
                with pytest.raises(ApiCallError) as real:
                    await alice.call("POST", "/api/v1/order", **params)
                assert (status, test) == (real.value.status, real.value.body), params
                assert status == 400 and test["code"] != codes.UNKNOWN, test
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_read_only_key_may_not_test_orders(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        reader = RestClient(url)
        await reader.login("ALICE", "alice-pw", scopes="read")
        try:
            status, body = await _refused(reader, **BID)
            assert (status, body["code"]) == (403, signing.FORBIDDEN_SCOPE), body
        finally:
            await reader.close()

    run(harness, scenario)
