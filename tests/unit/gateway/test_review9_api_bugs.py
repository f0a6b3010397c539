"""Bugs a ninth hostile review of the REST API and its private stream found (``rest_rig.py``:
real HTTP and WebSocket in front of real rings, databases off). Each test failed until its bug
was fixed; none repeats what the earlier review files already hold.

- A finished order placed through the API was forgotten after ten idle minutes (the core
  dropped the account's finished orders with its interest), so ``GET order`` by its
  ``origClientOrderId`` (which the database does not keep) said -2013, while the order log
  still held it and a gateway restart brought it back.
- Opening a private stream spent nothing of the key's rate limit: a key over its limit was
  refused every REST request (429) yet could open streams, each one a snapshot (the router's
  balances, the database's open orders), as fast as its address's limit let it.
- An empty parameter was taken as absent: ``icebergQty=`` placed a plain order showing its
  whole size, ``price=`` sent a market order with no worst price, where ``timeInForce=`` was
  refused (README, Limits: never a default taken in silence).
- A body that never finished arriving was waited for without end (aiohttp has no body
  timeout): each such connection held a handler and a file descriptor for as long as its
  client liked. It is now answered 408 after ``RestApi.body_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from config.edges import RestConfig
from config.schema import DatabaseConfig
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness, config
from tests.unit.gateway.rest_rig import (
    ALICE,
    LIMIT,
    alive,
    client,
    request,
    rest_exchange,
    run,
    statuses,
)

ASK: dict[str, Any] = {"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT"}
#: Past the core's ``interest_s`` (600 s): what the gateway's once-a-second tick sees after
#: ten idle minutes.
TEN_MINUTES_ON = 601.0
#: A key's burst in the rate-limit test; its refill (one request per 1000 s) never comes.
KEY_BURST = 3


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE (601) with dollars, BOB (602) with bitcoin; REST on, databases off."""
    yield from rest_exchange(instance, tmp_path)


@pytest.fixture
def slow_keys(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """As ``harness``, with a key allowed ``KEY_BURST`` requests and then one per 1000 s."""
    rest = RestConfig(
        port=0, key_rate_per_s=0.001, key_burst=KEY_BURST, login_rate_per_s=100,
        login_burst=100, max_streams=20,
    )  # fmt: skip
    cfg = config(instance, tmp_path, rest=rest)
    h = Harness(msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False)))
    h.add_user("ALICE", "alice-pw", ALICE)
    h.fund(ALICE, usd=1_000_000 * 10**6, btc=0)
    yield h
    h.close()


def test_a_finished_order_is_found_by_client_id_after_ten_idle_minutes(harness: Harness) -> None:
    """What is wrong: ``RestOrders._forget_account`` (rest_orders.py), run when an account has
    made no request for ten minutes, kept its open orders placed through the API but dropped
    its finished ones from ``done``, though the order log keeps them (a restarted gateway
    answers for them) and the database has no clientOrderId to find them by.
    Expected: BOB's filled sell is still answered, FILLED, by its origClientOrderId (and, the
    database being off here, by its orderId). Actual: -2013 "order does not exist" for both."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            ask = await bob.call(
                "POST", "/api/v1/order", **ASK, price="100.00", quantity="0.50",
                newClientOrderId="bob-ask",
            )  # fmt: skip
            await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.50",
                timeInForce="IOC",
            )  # fmt: skip
            api.core.tick(time.monotonic() + TEN_MINUTES_ON)  # BOB idle for ten minutes
            for named in ({"origClientOrderId": "bob-ask"}, {"orderId": ask["orderId"]}):
                status, body = await bob.request("GET", "/api/v1/order", symbol="BTC-USD", **named)
                assert status == 200, (named, body)
                assert body["orderId"] == ask["orderId"] and body["status"] == "FILLED", body
                assert body["clientOrderId"] == "bob-ask", body
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_opening_a_private_stream_spends_the_keys_rate_limit(slow_keys: Harness) -> None:
    """What is wrong: ``PrivateStreams.handle`` (private_stream.py) checked the signature, the
    user and the scope of an upgrade but never took from the key's token bucket, which only
    ``RestApi.signed`` did; the README promises rate limits per key, and each upgrade costs
    a snapshot.
    Expected: with a burst of 3, three streams open one after the other, the fourth upgrade is
    refused 429 with Retry-After, and so is the key's next REST request. Actual: every
    upgrade is taken, and the account request after them too."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            for _ in range(KEY_BURST):
                ws = await alice.stream()
                first = json.loads((await ws.receive(timeout=5)).data)
                assert first["event"] == "snapshot", first
                await ws.close()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                ws = await alice.stream()
                await ws.close()
            assert refused.value.status == 429, refused.value
            assert refused.value.headers is not None
            assert int(refused.value.headers["Retry-After"]) >= 1
            status, body = await alice.request("GET", "/api/v1/account")
            assert status == 429 and body["code"] == -1003, body
            assert "API key" in body["msg"] and "limit" in body["msg"], body
        finally:
            await alice.close()

    run(slow_keys, scenario)


def test_an_empty_parameter_is_refused_not_taken_for_its_default(harness: Harness) -> None:
    """What is wrong: ``rest_params.new_order`` reads ``icebergQty``, ``price`` (of a market
    order) and ``stopPrice`` with ``params.get(name)``, so an empty value counts as absent:
    ``icebergQty=`` rests the whole quantity in view, ``price=`` drops a market order's
    worst price. (An empty ``timeInForce`` was refused: it goes through ``choice``.)
    Expected: 400 / -1100 naming the parameter, no order placed. Actual: 200, a plain limit
    order resting (and the market order sent to the exchange with no price cap)."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            sends: list[tuple[str, dict[str, Any]]] = [
                ("icebergQty", {**LIMIT, "price": "100.00", "icebergQty": ""}),
                ("price", {**LIMIT, "type": "MARKET", "price": ""}),
                ("stopPrice", {**LIMIT, "price": "100.00", "stopPrice": ""}),
            ]
            for name, params in sends:
                status, body = await alice.request(
                    "POST", "/api/v1/order", **params, quantity="0.50"
                )
                assert status == 400 and body["code"] == -1100, (name, body)
                assert repr(name) in body["msg"] and "empty" in body["msg"], body
            assert await alice.call("GET", "/api/v1/openOrders", symbol="BTC-USD") == []
            # a query's empty value too: orderId= is not "no orderId"
            ask = await bob.call(
                "POST", "/api/v1/order", **ASK, price="100.00", quantity="0.50",
                newClientOrderId="bob-ask",
            )  # fmt: skip
            status, body = await bob.request(
                "GET", "/api/v1/order", symbol="BTC-USD", orderId="", origClientOrderId="bob-ask"
            )
            assert status == 400 and "'orderId'" in body["msg"], body
            status, body = await bob.request(
                "GET", "/api/v1/order", symbol="BTC-USD", origClientOrderId="bob-ask"
            )
            assert status == 200 and body["orderId"] == ask["orderId"], body
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


async def _first_answer(port: int, data: bytes, wait_s: float) -> bytes:
    """Send ``data`` on a fresh connection and leave it open, unfinished; what the server
    answers within ``wait_s`` (up to the end of its first JSON body), b"" for nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = b""
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait_s):
            while not (b"\r\n\r\n" in out and out.rstrip().endswith(b"}")):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                out += chunk
    except TimeoutError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return out


def test_a_body_that_never_finishes_arriving_is_answered_408(harness: Harness) -> None:
    """What is wrong: ``RestApi.signed`` and ``RestApi.params`` (rest.py) awaited
    ``request.read()`` with no time limit, and aiohttp sets none on a body: a client that
    sends headers promising 100 bytes and then 10 of them holds its connection and handler
    until it hangs up (the keep-alive timer only closes idle connections), so a few thousand
    such clients exhaust the gateway process's file descriptors, FIX sessions included.
    Expected: within the gateway's body timeout (shortened here), 408 with -1007 naming the
    size and the limit, for a login and a signed request alike; other clients still served.
    Actual: no answer at all."""

    async def scenario(api: RestApi, url: str) -> None:
        api.body_timeout_s = 0.2
        login = request(
            b"POST /api/v1/apiKey HTTP/1.1",
            b"Content-Type: application/x-www-form-urlencoded",
            b"Content-Length: 100",
            body=b"username=A",
        )
        alice = await client(url, "ALICE", "alice-pw")
        try:
            body = b"symbol=BTC-USD&side=BUY&type=LIMIT&price=100.00&quantity=0.10"
            headers = alice.headers("POST", "/api/v1/order", "", body)
            signed = request(
                b"POST /api/v1/order HTTP/1.1",
                b"Content-Type: application/x-www-form-urlencoded",
                b"Content-Length: %d" % (len(body) + 50),
                *(f"{name}: {value}".encode() for name, value in headers.items()),
                body=body,
            )
            for data in (login, signed):
                raw = await _first_answer(api.port, data, wait_s=10)
                assert statuses(raw) == [408], raw
                answer = json.loads(raw.partition(b"\r\n\r\n")[2])
                assert answer["code"] == -1007, answer
                assert "0.2 s" in answer["msg"] and "bytes" in answer["msg"], answer
            await alive(url)
            assert await alice.call("GET", "/api/v1/openOrders", symbol="BTC-USD") == []
        finally:
            await alice.close()

    run(harness, scenario)
