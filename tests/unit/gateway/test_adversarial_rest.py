"""The REST API and private stream under hostile input, over real HTTP in front of real rings
(the FIX tests' harness): malformed numbers, protocol garbage, pipelining, many connections,
the private stream's limits. Each case checks the answer names the value and the limit, and
that the gateway keeps serving afterwards.

The bugs this found, and the three still open, are in ``test_rest_found_bugs.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from procs.gateway.rest import RestApi
from procs.gateway.signing import API_KEY, RECV_WINDOW, SIGNATURE, TIMESTAMP, sign
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import (
    ALICE,
    BOB,
    LIMIT,
    alive,
    client,
    exchange,
    request,
    rest_exchange,
    run,
    statuses,
    until_closed,
)


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


# -- numbers and parameters --------------------------------------------------------------------


def test_malformed_numbers_are_refused_naming_value_and_rule(harness: Harness) -> None:
    run(harness, _malformed_numbers)


async def _malformed_numbers(api: RestApi, url: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    big = "9" * 40
    try:
        cases: list[tuple[dict[str, str], int, list[str]]] = [
            ({"quantity": "1e400"}, -1100, ["'1e400'", "not a decimal"]),
            ({"quantity": "NaN"}, -1100, ["'NaN'"]),
            ({"quantity": "Infinity"}, -1100, ["'Infinity'"]),
            ({"quantity": "-0"}, -1100, ["'-0'"]),
            ({"quantity": "0.00"}, -1013, ["0.00", "must be positive"]),
            ({"quantity": big}, -1013, [big, "largest quantity, maxQty 10000000.00"]),
            ({"quantity": "0." + "0" * 50 + "1"}, -1111, ["not a multiple of lot 0.01"]),
            ({"quantity": "."}, -1100, ["'.'"]),
            ({"quantity": "\u0660.\u0661"}, -1100, ["not a decimal"]),  # Arabic-Indic digits
            ({"quantity": "1" * 65}, -1100, ["65 characters", "the limit is 64"]),
            ({"price": big}, -1013, [big, "largest price"]),
            ({"price": "92233720368547758.10"}, -1013, ["largest price"]),
            ({"price": "0"}, -1013, ["price 0 must be positive"]),
            ({"price": "-5"}, -1100, ["'-5'"]),
            ({"price": "100.001"}, -1111, ["100.001", "tick 0.05"]),
            ({"type": "STOP_LOSS", "stopPrice": big}, -1013, ["stopPrice", big]),
            ({"icebergQty": "0.10"}, -1013, ["icebergQty 0.10 must be below quantity 0.10"]),
            (
                {"quantity": "1.01", "icebergQty": "0.01"},
                -1013,
                ["icebergQty 0.01 cuts quantity 1.01 into 101 parts, at most 100"],
            ),
            ({"timeInForce": "NOW"}, -1115, ["'NOW'", "GTC"]),
            ({"newClientOrderId": "x" * 37}, -1100, ["1..36"]),
        ]
        for change, code, words in cases:
            params: dict[str, Any] = {**LIMIT, "quantity": "0.10", "price": "100.00", **change}
            status, body = await alice.request("POST", "/api/v1/order", **params)
            assert status == 400 and body["code"] == code, (change, body)
            for word in words:
                assert word in body["msg"], (change, body)
        # nothing got through, and the key still trades
        assert await alice.call("GET", "/api/v1/openOrders") == []
        order = await alice.call(
            "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10"
        )  # fmt: skip
        assert order["status"] == "NEW"
    finally:
        await alice.close()


def test_integer_parameters_name_value_and_range(harness: Harness) -> None:
    run(harness, _integer_parameters)


async def _integer_parameters(api: RestApi, url: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    try:
        for limit in ("0", "-1", "1000000000", "1e3"):
            for history in ("/api/v1/allOrders", "/api/v1/myTrades"):  # no database: still 400
                status, body = await alice.request("GET", history, symbol="BTC-USD", limit=limit)
                assert status == 400 and body["code"] == -1100 and "limit" in body["msg"]
                assert limit in body["msg"]
                assert "1..1000" in body["msg"] or "integer" in body["msg"]
            for path in ("/api/v1/depth", "/api/v1/trades", "/api/v1/ticker/24hr"):
                status, body = await alice.request(
                    "GET", path, signed=False, symbol="BTC-USD", limit=limit
                )
                assert status == 400 and "limit" in body["msg"], (path, body)
        for oid in ("-0", "0", "99999999999999999999", "abc"):
            status, body = await alice.request(
                "GET", "/api/v1/order", symbol="BTC-USD", orderId=oid
            )
            assert status == 400 and body["code"] == -1100 and "orderId" in body["msg"]
        many: dict[str, Any] = {f"p{i}": "1" for i in range(25)}
        status, body = await alice.request("GET", "/api/v1/openOrders", **many)
        assert status == 400 and body["code"] == -1101 and "the limit is 24" in body["msg"]
    finally:
        await alice.close()


def test_another_users_order_is_not_found_by_client_id(harness: Harness) -> None:
    run(harness, _another_users_order_by_client_id)


async def _another_users_order_by_client_id(api: RestApi, url: str) -> None:
    alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
    try:
        ask = await bob.call(
            "POST", "/api/v1/order", symbol="BTC-USD", side="SELL", type="LIMIT",
            price="31000.00", quantity="0.10", newClientOrderId="bobs",
        )  # fmt: skip
        for method in ("GET", "DELETE"):
            status, body = await alice.request(
                method, "/api/v1/order", symbol="BTC-USD", origClientOrderId="bobs"
            )
            assert status == 400 and body["code"] == -2013 and "bobs" in body["msg"]
        still = await bob.call("GET", "/api/v1/order", symbol="BTC-USD", orderId=ask["orderId"])
        assert still["status"] == "NEW"
    finally:
        await alice.close()
        await bob.close()


# -- signing, over the wire --------------------------------------------------------------------


def test_signed_headers_are_checked_over_the_wire(harness: Harness) -> None:
    run(harness, _signed_headers)


async def _signed_headers(api: RestApi, url: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    session, path = alice.session, "/api/v1/openOrders"

    async def send(query: str, signed_query: str, ts: int, window: str | None) -> Any:
        w = int(window) if window is not None and window.isdigit() else 5000
        headers = {
            API_KEY: alice.api_key,
            TIMESTAMP: str(ts),
            SIGNATURE: sign(alice.secret, ts, w, "GET", path, signed_query, b""),
        }
        if window is not None:
            headers[RECV_WINDOW] = window
        async with session.get(f"{url}{path}?{query}", headers=headers) as r:
            return r.status, await r.json()

    try:
        now = time.time_ns() // 1_000_000
        # the query is signed as sent: another order of the same parameters is another request
        status, body = await send("symbol=BTC-USD&x=1", "x=1&symbol=BTC-USD", now, None)
        assert status == 401 and body["code"] == -1022
        for window in ("0", "-1", "60001", "9" * 40, "1.5"):
            status, body = await send("symbol=BTC-USD", "symbol=BTC-USD", now, window)
            assert status == 401 and body["code"] == -1131 and "1..60000" in body["msg"], body
        for ts in (now + 60_000, now - 60_000, 0):
            status, body = await send("symbol=BTC-USD", "symbol=BTC-USD", ts, "5000")
            assert status == 401 and body["code"] == -1021 and str(ts) in body["msg"]
        status, body = await send("symbol=BTC-USD", "symbol=BTC-USD", now, "5000")
        assert status == 200 and body == []
    finally:
        await alice.close()


# -- HTTP framing ------------------------------------------------------------------------------


def test_protocol_garbage_gets_4xx_and_the_server_keeps_serving(harness: Harness) -> None:
    run(harness, _protocol_garbage)


async def _protocol_garbage(api: RestApi, url: str) -> None:
    port = api.port
    close = b"Connection: close"
    cases: list[tuple[bytes, bytes]] = [
        (request(b"GET /api/v1/ping?" + b"a" * 20_000 + b" HTTP/1.1", close), b"8190"),
        (request(b"GET /api/v1/ping HTTP/1.1", b"X-Big: " + b"a" * 20_000, close), b"8190"),
        (request(b"GET /api/v1/ping HTTP/1.1", *[b"X-H%d: 1" % i for i in range(500)]), b""),
        (request(b"POST /api/v1/apiKey HTTP/1.1", b"Content-Length: abc"), b"abc"),
        (request(b"POST /api/v1/apiKey HTTP/1.1", b"Content-Length: -5"), b"-5"),
        (request(b"POST /api/v1/apiKey HTTP/1.1", b"Content-Length: " + b"9" * 30), b""),
        (
            request(
                b"POST /api/v1/apiKey HTTP/1.1",
                b"Content-Length: 4",
                b"Transfer-Encoding: chunked",
                body=b"0\r\n\r\n",
            ),
            b"",
        ),
        (request(b"GET /api/v1/\xff\xfe HTTP/1.1", close), b""),
        (request(b"GET /api/v1/account?a=\xc3\xa9 HTTP/1.1", close), b""),
        (request(b"BREW /api/v1/ping HTTP/1.1", close), b""),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, b""),  # a TLS hello
    ]
    for data, named in cases:
        answer = await exchange(port, data)
        codes = statuses(answer)
        assert codes and 400 <= codes[0] < 500, (data[:60], answer[:200])
        assert named in answer, (data[:60], answer[:300])
    await alive(url)


def test_request_bodies_over_the_limit_are_refused_even_chunked(harness: Harness) -> None:
    run(harness, _bodies_over_the_limit)


async def _bodies_over_the_limit(api: RestApi, url: str) -> None:
    chunk = b"4000\r\n" + b"a" * 0x4000 + b"\r\n"
    answer = await exchange(
        api.port,
        request(
            b"POST /api/v1/apiKey HTTP/1.1",
            b"Transfer-Encoding: chunked",
            b"Content-Type: application/x-www-form-urlencoded",
            b"Connection: close",
            body=chunk * 3 + b"0\r\n\r\n",
        ),
    )
    assert statuses(answer) == [413]
    assert msgspec.json.decode(answer.partition(b"\r\n\r\n")[2])["msg"].endswith("16384 bytes")
    async with aiohttp.ClientSession() as session:
        for body, said in (
            (b"[" * 5000 + b"]" * 5000, "not a JSON object"),
            (b'{"username": {"a": 1}}', "not a JSON object"),
            (b'{"username": 1e400}', "'username' is the JSON number 1e400, out of range"),
        ):
            async with session.post(
                f"{url}/api/v1/apiKey", data=body, headers={"Content-Type": "application/json"}
            ) as r:
                assert r.status == 400 and said in (await r.json())["msg"]
    await alive(url)


def test_pipelined_requests_and_unread_bodies_stay_in_step(harness: Harness) -> None:
    run(harness, _pipelined)


async def _pipelined(api: RestApi, url: str) -> None:
    """A body the server never reads (refused before it) is skipped, never parsed as the next
    request: a request hidden in a body is not executed."""
    hidden = b"GET /api/v1/time HTTP/1.1\r\nHost: x\r\n\r\n"
    ping = request(b"GET /api/v1/ping HTTP/1.1")
    last = request(b"GET /api/v1/ping HTTP/1.1", b"Connection: close")
    form = b"Content-Type: application/x-www-form-urlencoded"
    length = b"Content-Length: %d" % len(hidden)
    unsigned = request(b"POST /api/v1/order HTTP/1.1", form, length, body=hidden)
    nowhere = request(b"POST /api/v1/nowhere HTTP/1.1", length, body=hidden)
    answer = await exchange(api.port, unsigned + nowhere + ping * 20 + last)
    assert statuses(answer) == [401, 404] + [200] * 21
    assert b"serverTime" not in answer
    # a refused oversized body is skipped too; what follows it is answered in order
    big = b"a" * 20_000
    oversized = request(b"POST /api/v1/order HTTP/1.1", form, b"Content-Length: 20000", body=big)
    answer = await exchange(api.port, oversized + hidden + last)
    assert statuses(answer) == [413, 200, 200] and answer.count(b"serverTime") == 1


def test_many_keep_alive_connections_are_served(harness: Harness) -> None:
    run(harness, _many_connections)


async def _many_connections(api: RestApi, url: str) -> None:
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(200):
            conns.append(await asyncio.open_connection("127.0.0.1", api.port))
        for _reader, writer in conns:
            writer.write(request(b"GET /api/v1/ping HTTP/1.1") * 2)
        for reader, _writer in conns:
            for _ in range(2):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                assert await reader.readexactly(2) == b"{}"
        alice = await client(url, "ALICE", "alice-pw")  # all of them still open
        try:
            assert (await alice.call("GET", "/api/v1/account"))["accountId"] == ALICE
        finally:
            await alice.close()
    finally:
        for _reader, writer in conns:
            writer.close()


# -- the private stream ------------------------------------------------------------------------


async def settled(done: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return done()


def test_private_stream_limits_and_bookkeeping(harness: Harness) -> None:
    run(harness, _stream_limits)


async def _stream_limits(api: RestApi, url: str) -> None:
    alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
    trader = await client(url, "BOB", "bob-pw", scopes="trade")
    try:
        replayed = alice.stream_url()
        first = await alice.session.ws_connect(replayed)
        assert msgspec.json.decode((await first.receive(timeout=5)).data)["event"] == "snapshot"
        async with alice.session.get(replayed) as r:  # the URL was used: refused
            assert r.status == 401 and (await r.json())["code"] == -1025
        async with trader.session.get(trader.stream_url()) as r:
            assert r.status == 403 and "'read' is needed" in (await r.json())["msg"]
        second = await bob.stream()
        await second.receive(timeout=5)
        async with alice.session.get(alice.stream_url()) as r:  # a third: over max_streams
            body = await r.json()
            assert r.status == 503 and "2 private streams" in body["msg"], body
        # a client message over 4096 bytes closes that stream (1009), and frees its slot
        await first.send_str("x" * 5_000)
        assert await until_closed(first, 3) == 1009
        assert await settled(lambda: api.streams.count == 1)
        third = await alice.stream()
        assert msgspec.json.decode((await third.receive(timeout=5)).data)["seq"] == 1
        await second.close()
        await third.close()
        assert await settled(lambda: api.streams.count == 0 and not api.streams.by_account)
        assert not api.core.streaming
    finally:
        for c in (alice, bob, trader):
            await c.close()


def test_private_stream_slow_consumer_is_cut_1008(harness: Harness) -> None:
    run(harness, _stream_slow_consumer)


async def _stream_slow_consumer(api: RestApi, url: str) -> None:
    bob = await client(url, "BOB", "bob-pw")
    try:
        ws = await bob.stream()
        await ws.receive(timeout=5)  # the snapshot
        # more events in one batch than the stream's queue (16) holds
        api.streams.deliver([(BOB, "balance", {"asset": "BTC", "n": n}) for n in range(100)])
        assert await until_closed(ws, 3) == 1008
        assert await settled(lambda: api.streams.count == 0)
        again = await bob.stream()  # it reconnects and starts over from a snapshot
        snap = msgspec.json.decode((await again.receive(timeout=5)).data)
        assert snap["event"] == "snapshot" and snap["seq"] == 1
        await again.close()
    finally:
        await bob.close()
