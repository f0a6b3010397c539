"""The REST port's fast lane (``rest_fast.py``): order requests answered off httptools, every
other request handed with its connection to aiohttp, in order, over real sockets.

``FastRequest`` is held to aiohttp's ``web.Request`` (the handlers read both), and the whole
REST suite runs over the lane too, since it is on by default; ``fast_lane = false`` serves
everything on aiohttp, as before.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict, CIMultiDictProxy

from config.edges import RestConfig
from config.schema import DatabaseConfig
from procs.gateway.fast_request import FastRequest, response_bytes
from procs.gateway.rest import RestApi
from procs.gateway.rest_fast import KEEPALIVE_S, FastLane
from tests.unit.gateway.harness import Harness, config
from tests.unit.gateway.rest_rig import (
    alive,
    client,
    exchange,
    request,
    rest_exchange,
    run,
    statuses,
)


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def _order_request(headers: dict[str, str], body: bytes, *extra: bytes) -> bytes:
    return request(
        b"POST /api/v1/order HTTP/1.1",
        b"Content-Type: application/x-www-form-urlencoded",
        b"Content-Length: %d" % len(body),
        *(f"{name}: {value}".encode() for name, value in headers.items()),
        *extra,
        body=body,
    )


BODY = "symbol=BTC-USD&side=BUY&type=LIMIT&price=100.00&quantity=0.10&newClientOrderId={}"


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/order?symbol=BTC-USD&orderId=7",
        "/api/v1/order?a=%20x+y&a=2&empty=&flag",
        "/api/v1/order?q=%E2%82%AC&bad=%zz",
        "/api/v1/ord%65r?x=1",
        "/api/v1/order",  # no query: the lane builds no URL
        "/api/v1/order?",
    ],
)
@pytest.mark.parametrize(
    "content_type", [None, "application/json", "Application/JSON; charset=utf-8", ""]
)
def test_a_fast_request_reads_as_aiohttps_request_does(
    target: str, content_type: str | None
) -> None:
    """Contract: what the handlers read of a request is the same on both paths."""
    headers = CIMultiDict({"Host": "x", "Content-Length": "0", "X-Key": "k"})
    if content_type is not None:
        headers["Content-Type"] = content_type
    slow = make_mocked_request("POST", target, headers=CIMultiDictProxy(headers))
    fast = FastRequest("POST", target, CIMultiDictProxy(headers), b"", "127.0.0.1", True)
    assert fast.method == slow.method
    assert fast.raw_path == slow.raw_path
    assert fast.path == slow.path
    assert list(fast.query.items()) == list(slow.query.items())
    assert fast.content_type == slow.content_type
    assert fast.content_length == slow.content_length
    assert fast.headers.get("x-key") == slow.headers.get("x-key")


def test_a_response_is_written_with_its_status_headers_and_length() -> None:
    response = web.Response(body=b'{"a":1}', status=429, content_type="application/json")
    response.headers["Retry-After"] = "2"
    raw = response_bytes(response, keep_alive=False)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 429 Too Many Requests"
    assert b"Content-Type: application/json" in lines and b"Retry-After: 2" in lines
    assert b"Content-Length: 7" in lines and b"Connection: close" in lines
    assert body == b'{"a":1}'


def test_orders_and_other_routes_share_a_connection_in_order(harness: Harness) -> None:
    """An order on the lane, then (a later read) a public route: the connection goes to
    aiohttp after the order's answer, and later orders on it are aiohttp's; pipelined
    orders ahead of a public route in one read go to aiohttp with it, answered in order."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
            answers: list[int] = []

            async def answer() -> bytes:
                head = await reader.readuntil(b"\r\n\r\n")
                answers.extend(statuses(head))
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                return await reader.readexactly(length)

            def order(n: int) -> bytes:
                body = BODY.format(f"lane{n}").encode()
                return _order_request(alice.headers("POST", "/api/v1/order", "", body), body)

            writer.write(order(1))
            assert json.loads(await answer())["clientOrderId"] == "lane1"
            assert len(api.lanes) >= 1  # still the lane's
            writer.write(request(b"GET /api/v1/ping HTTP/1.1"))
            assert json.loads(await answer()) == {}
            writer.write(order(2))  # aiohttp's now
            assert json.loads(await answer())["clientOrderId"] == "lane2"
            writer.close()

            # one read: two orders, then a public route, then an order
            pipelined = order(3) + order(4) + request(b"GET /api/v1/time HTTP/1.1") + order(5)
            raw = await exchange(api.port, pipelined + request(b"GET /api/v1/ping HTTP/1.1",
                                                               b"Connection: close"))  # fmt: skip
            assert statuses(raw) == [200] * 5
            ids = [b'"lane3"', b'"lane4"', b"serverTime", b'"lane5"', b"{}"]
            positions = [raw.index(i) for i in ids]
            assert positions == sorted(positions), raw
            open_ids = {o["clientOrderId"] for o in await alice.call(
                "GET", "/api/v1/openOrders", symbol="BTC-USD")}  # fmt: skip
            assert open_ids == {f"lane{n}" for n in range(1, 6)}  # each placed once
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_route_pipelined_behind_an_order_from_an_earlier_read_is_refused_after_it(
    harness: Harness,
) -> None:
    """Read 1: a whole order and the start of a second; read 2: the rest of the second and a
    public route. No cut lets aiohttp take the route without the second order, which the
    lane took: the first order is answered, then a 400 naming the rule, then the close."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            one = BODY.format("first").encode()
            two = BODY.format("second").encode()
            first = _order_request(alice.headers("POST", "/api/v1/order", "", one), one)
            second = _order_request(alice.headers("POST", "/api/v1/order", "", two), two)
            reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
            writer.write(first + second[:40])
            await writer.drain()
            await asyncio.sleep(0.2)  # two reads on the server's side
            writer.write(second[40:] + request(b"GET /api/v1/ping HTTP/1.1"))
            raw = b""
            async with asyncio.timeout(5):
                while chunk := await reader.read(65536):
                    raw += chunk
            writer.close()
            assert statuses(raw) == [200, 400], raw
            assert b'"first"' in raw and b"must not be pipelined" in raw
            await alive(url)
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_request_that_never_arrives_whole_is_answered_408(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        api.body_timeout_s = 0.2
        for data, what in (
            (b"POST /api/v1/order HTTP/1.1\r\nHost: x\r\n", b"request line and headers"),
            (
                b"POST /api/v1/order HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nsym",
                b"of 50 bytes",
            ),
        ):
            raw = await exchange(api.port, data, timeout_s=5)
            assert statuses(raw) == [408], raw
            answer = json.loads(raw.partition(b"\r\n\r\n")[2])
            assert answer["code"] == -1007 and what in answer["msg"].encode(), answer
        await alive(url)

    run(harness, scenario)


def test_an_idle_connection_is_closed_by_the_sweep(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        for _ in range(100):
            if api.lanes:
                break
            await asyncio.sleep(0.01)
        lane: FastLane = next(iter(api.lanes))
        lane.sweep(lane.idle_since + KEEPALIVE_S / 2)
        assert api.lanes  # not idle long enough
        api.tick(lane.idle_since + KEEPALIVE_S + 1)
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed by the server
        assert not api.lanes
        writer.close()

    run(harness, scenario)


def test_without_the_fast_lane_aiohttp_serves_orders(instance: str, tmp_path: Path) -> None:
    rest = RestConfig(port=0, fast_lane=False, key_rate_per_s=1_000, key_burst=1_000)
    cfg = config(instance, tmp_path, rest=rest)
    h = Harness(msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False)))
    h.add_user("ALICE", "alice-pw", 601)
    h.fund(601, usd=1_000_000 * 10**6, btc=0)

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            placed = await alice.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="LIMIT",
                price="100.00", quantity="0.10",
            )  # fmt: skip
            assert placed["status"] == "NEW"
            assert not api.lanes and api._fast_server is None
        finally:
            await alice.close()

    try:
        run(h, scenario)
    finally:
        h.close()


def test_the_fast_lane_is_on_by_default_and_configurable() -> None:
    assert RestConfig().fast_lane is True
    assert msgspec.convert({"fast_lane": False}, RestConfig).fast_lane is False


def test_a_client_that_does_not_read_its_answers_is_not_read_either(harness: Harness) -> None:
    """Pipelined requests from a client that reads nothing (a small receive buffer, so the
    kernel holds little): once the answers fill the transport's buffer the lane stops
    reading, and TCP pushes back on the client; then it reads, and nothing is lost."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        try:
            count = 2000
            data = b"".join(
                request(
                    b"GET /api/v1/order?%s HTTP/1.1" % query.encode(),
                    *(f"{k}: {v}".encode() for k, v in alice.headers("GET", "/api/v1/order",
                                                                     query, b"").items()),
                )
                for n in range(count)
                for query in [f"symbol=BTC-USD&orderId={10**9 + n}"]
            )  # fmt: skip
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", api.port))
            lane: FastLane | None = None
            async with asyncio.timeout(5):
                while lane is None:
                    await asyncio.sleep(0.01)
                    lane = next((x for x in api.lanes if x.peer == sock.getsockname()), None)
            assert lane.transport is not None  # the kernel's buffers hold little on both sides
            lane.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
            )
            sending = loop.create_task(loop.sock_sendall(sock, data))
            async with asyncio.timeout(5):
                while not lane._write_paused:
                    await asyncio.sleep(0.01)
            assert lane._paused  # reading stopped too
            raw = b""
            async with asyncio.timeout(10):
                while len(statuses(raw)) < count:
                    raw += await loop.sock_recv(sock, 1 << 16)
                await sending
            # unknown orders, and refusals (the key's rate, signatures ahead of the clock):
            # an answer each, in order
            assert len(statuses(raw)) == count and all(400 <= c < 500 for c in statuses(raw))
        finally:
            sock.close()
            await alice.close()

    run(harness, scenario)
