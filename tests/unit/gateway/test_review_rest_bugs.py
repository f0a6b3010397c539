"""Bugs a hostile review of the REST API's order and query semantics found (``rest_rig.py``:
real HTTP in front of real rings, databases off). Each test failed before its fix."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from procs.gateway.limits import RateLimiter
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.signing import API_KEY
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import (
    LIMIT,
    client,
    post_json,
    rest_exchange,
    run,
    stream_messages,
)

ASK: dict[str, Any] = {"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT"}
#: Past the core's ``interest_s`` (600 s): what the gateway's once-a-second tick sees after
#: ten idle minutes.
TEN_MINUTES_ON = 601.0


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def _open(c: RestClient) -> list[dict[str, Any]]:
    """``c``'s open orders (one sent and not yet acknowledged among them, orderId 0)."""
    listed: list[dict[str, Any]] = await c.call("GET", "/api/v1/openOrders")
    return listed


# -- the live view of an account ---------------------------------------------------------------


def test_an_open_private_stream_keeps_reporting_after_ten_quiet_minutes(
    harness: Harness,
) -> None:
    """A client that only listens on its private stream (it trades over FIX, or simply
    waits) still gets the fill of its resting order after ten minutes without a REST call."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            ask = await bob.call("POST", "/api/v1/order", **ASK, price="100.00", quantity="0.50")
            ws = await bob.stream()
            snapshot = json.loads((await ws.receive(timeout=5)).data)
            assert [o["orderId"] for o in snapshot["data"]["openOrders"]] == [ask["orderId"]]
            api.core.tick(time.monotonic() + TEN_MINUTES_ON)  # the stream stays open, quiet
            await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10",
                timeInForce="IOC",
            )  # fmt: skip
            events = await stream_messages(ws, 1.5)
            trades = [e["data"] for e in events if e["data"].get("executionType") == "TRADE"]
            assert [t["orderId"] for t in trades] == [ask["orderId"]], events
            assert any(e["event"] == "balance" for e in events), events
            await ws.close()
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_an_open_order_is_found_by_client_id_after_ten_idle_minutes(harness: Harness) -> None:
    """An order placed with newClientOrderId rests for ten minutes without a request from its
    owner; then GET and DELETE by origClientOrderId must still find it, and the id stays in
    use while it is open."""

    async def scenario(api: RestApi, url: str) -> None:
        bob = await client(url, "BOB", "bob-pw")
        try:
            ask = await bob.call(
                "POST", "/api/v1/order", **ASK, price="100.00", quantity="0.50",
                newClientOrderId="bob-ask",
            )  # fmt: skip
            api.core.tick(time.monotonic() + TEN_MINUTES_ON)
            status, body = await bob.request(
                "GET", "/api/v1/order", symbol="BTC-USD", origClientOrderId="bob-ask"
            )
            assert status == 200 and body["orderId"] == ask["orderId"], body
            status, body = await bob.request(
                "POST", "/api/v1/order", **ASK, price="100.00", quantity="0.50",
                newClientOrderId="bob-ask",
            )  # fmt: skip
            assert status == 400 and "bob-ask" in body["msg"], body  # still in use
            status, body = await bob.request(
                "DELETE", "/api/v1/order", symbol="BTC-USD", origClientOrderId="bob-ask"
            )
            assert status == 200 and body["status"] == "CANCELED", body
            assert body["orderId"] == ask["orderId"]
        finally:
            await bob.close()

    run(harness, scenario)


def test_an_order_that_timed_out_is_found_by_client_id_once_it_executes(
    harness: Harness,
) -> None:
    """The 504 says "the request may still execute, ask for its status": once the exchange
    took the order, its status by origClientOrderId is the live order (NEW, its orderId),
    openOrders shows it under that clientOrderId, and a cancel by it works."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        paused = True
        try:
            api.rest = msgspec.structs.replace(api.rest, order_timeout_s=0.3)
            harness.pause()  # the exchange is slow to answer
            status, body = await alice.request(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10",
                newClientOrderId="slow-1",
            )  # fmt: skip
            assert status == 504, body
            harness.resume()
            paused = False
            # the order reaches the book: listed before, as sent, with orderId 0 (a fixed
            # 0.3 s wait was short of that on a loaded machine)
            deadline = time.monotonic() + 5
            while not any(o["orderId"] for o in await _open(alice)):
                assert time.monotonic() < deadline, "the order never reached the book"
                await asyncio.sleep(0.05)
            (opened,) = await _open(alice)
            assert opened["clientOrderId"] == "slow-1", opened
            status, body = await alice.request(
                "GET", "/api/v1/order", symbol="BTC-USD", origClientOrderId="slow-1"
            )
            assert status == 200 and body["status"] == "NEW", body
            assert body["orderId"] == opened["orderId"]
            status, body = await alice.request(
                "DELETE", "/api/v1/order", symbol="BTC-USD", origClientOrderId="slow-1"
            )
            assert status == 200 and body["status"] == "CANCELED", body
        finally:
            if paused:
                harness.resume()
            await alice.close()

    run(harness, scenario)


# -- parameters, limits, errors ----------------------------------------------------------------


def test_a_json_body_with_a_parameter_twice_is_refused(harness: Harness) -> None:
    """A query or form parameter sent twice is refused (test_rest_found_bugs); a JSON body
    with the same key twice must be too, not silently trade the last value."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            body = (
                b'{"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": "100.00", '
                b'"quantity": "0.10", "quantity": "5.00"}'
            )
            status, answer = await post_json(alice, url, body)
            assert status == 400 and "quantity" in answer["msg"], answer
            assert await alice.call("GET", "/api/v1/openOrders") == []
        finally:
            await alice.close()

    run(harness, scenario)


def test_unsigned_requests_do_not_spend_another_keys_rate_limit(harness: Harness) -> None:
    """The API key id travels in the clear in every request; anyone who saw it must not be
    able to lock its owner out with requests that fail the signature check."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            api.key_limits = RateLimiter(0.01, 5)  # a small bucket, so a few requests show it
            async with aiohttp.ClientSession() as stranger:
                for _ in range(5):
                    headers = {API_KEY: alice.api_key}
                    async with stranger.get(f"{url}/api/v1/account", headers=headers) as r:
                        assert r.status == 401
            status, body = await alice.request("GET", "/api/v1/account")
            assert status == 200, body
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_private_stream_whose_snapshot_fails_is_refused_cleanly(harness: Harness) -> None:
    """With the router not answering, the snapshot cannot be made: the client must get a
    refusal it can read (an HTTP 5xx before the upgrade, or a WebSocket close frame), not an
    HTTP response written into the upgraded connection (a WebSocket protocol error)."""

    async def scenario(api: RestApi, url: str) -> None:
        bob = await client(url, "BOB", "bob-pw")
        try:
            harness.pause()
            try:
                ws = await bob.stream()
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status >= 500
                return
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE, msg
            assert msg.data >= 1000, msg
        finally:
            harness.resume()
            await bob.close()

    run(harness, scenario)


def test_market_data_that_hangs_up_is_a_json_error(harness: Harness) -> None:
    """``depth`` proxies to the market-data process; when it closes the connection the answer
    is the API's ``{"code","msg"}`` with a 502/503 naming it, never an unhandled 500."""

    async def scenario(api: RestApi, url: str) -> None:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        try:
            api.market_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{url}/api/v1/depth?symbol=BTC-USD") as r,
            ):
                text = await r.text()
                assert r.status in (502, 503), (r.status, text)
                body = json.loads(text)
                assert body["code"] < 0 and "market data" in body["msg"], body
        finally:
            server.close()

    run(harness, scenario)
