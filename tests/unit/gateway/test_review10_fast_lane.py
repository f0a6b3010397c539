"""Hostile review of the REST fast lane (``rest_fast.py``), round 10: each test sends bytes a
client may send over a real socket and expects what aiohttp answers to the same bytes
(``fast_lane = false``), or that the gateway stays within its bounds."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from procs.gateway.rest import RestApi
from procs.gateway.rest_fast import FastLane
from procs.gateway.rest_request import RestRequest
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import (
    alive,
    client,
    exchange,
    request,
    rest_exchange,
    run,
    statuses,
)

BODY = "symbol=BTC-USD&side=BUY&type=LIMIT&price=100.00&quantity=0.10&newClientOrderId={}"


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def _head(raw: bytes) -> list[bytes]:
    return raw.partition(b"\r\n\r\n")[0].lower().split(b"\r\n")


async def _placed(url: str, client_order_id: str) -> bool:
    alice = await client(url, "ALICE", "alice-pw")
    try:
        orders = await alice.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
        return any(o["clientOrderId"] == client_order_id for o in orders)
    finally:
        await alice.close()


async def _slow_reader(port: int) -> socket.socket:
    """A connected socket whose kernel receive buffer holds little."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def _lane_of(api: RestApi, sock: socket.socket) -> FastLane:
    async with asyncio.timeout(5):
        while True:
            lane = next((x for x in api.lanes if x.peer == sock.getsockname()), None)
            if lane is not None:
                return lane
            await asyncio.sleep(0.01)


def test_a_chunked_bodys_trailer_does_not_sign_an_order(harness: Harness) -> None:
    """The API key and signature sent as trailer fields after a chunked body, not as
    headers. aiohttp ignores trailers: 401, no order. The lane merges them into the
    headers (``on_header`` after ``on_headers_complete``) and places the order, so fields a
    proxy in front never saw as headers authenticate it."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            body = BODY.format("trailer").encode()
            signed = alice.headers("POST", "/api/v1/order", "", body)
        finally:
            await alice.close()
        trailer = b"".join(f"{name}: {value}\r\n".encode() for name, value in signed.items())
        data = request(
            b"POST /api/v1/order HTTP/1.1",
            b"Content-Type: application/x-www-form-urlencoded",
            b"Transfer-Encoding: chunked",
            b"Connection: close",
            body=b"%x\r\n%s\r\n0\r\n%s\r\n" % (len(body), body, trailer),
        )
        raw = await exchange(api.port, data)
        assert statuses(raw) == [401], raw
        assert not await _placed(url, "trailer")

    run(harness, scenario)


def test_a_gzip_encoded_order_is_read_as_aiohttp_reads_it(harness: Harness) -> None:
    """``Content-Encoding: gzip``: aiohttp inflates the body before the handler reads it, so
    an order signed over its form is placed (200). The lane hands the handler the
    compressed bytes: 401, signature mismatch, no order."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            body = BODY.format("gzipped").encode()
            signed = alice.headers("POST", "/api/v1/order", "", body)
        finally:
            await alice.close()
        packed = gzip.compress(body)
        data = request(
            b"POST /api/v1/order HTTP/1.1",
            b"Content-Type: application/x-www-form-urlencoded",
            b"Content-Encoding: gzip",
            b"Content-Length: %d" % len(packed),
            b"Connection: close",
            *(f"{name}: {value}".encode() for name, value in signed.items()),
            body=packed,
        )
        raw = await exchange(api.port, data)
        assert statuses(raw) == [200], raw
        assert json.loads(raw.partition(b"\r\n\r\n")[2])["clientOrderId"] == "gzipped"

    run(harness, scenario)


def test_a_header_line_that_never_ends_is_refused_at_once(harness: Harness) -> None:
    """A header value of 4 MiB with no line end. aiohttp answers 400 ("Got more than 8190
    bytes") as soon as the line passes 8190 bytes. The lane's length check runs only when
    httptools hands it a whole header, and httptools gathers a header's pieces itself
    (``_current_header_value += val``, a copy of all so far per read): the lane keeps
    reading, holds every byte twice (there and in ``_chunks``) and answers nothing until
    the 408, 10 s later; a faster client gets the copies quadratic in what it sent."""

    async def scenario(api: RestApi, url: str) -> None:
        # 320 KiB: past one read (256 KiB at most) and the lane's head limit after it
        data = b"POST /api/v1/order HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (320 << 10)
        raw = await exchange(api.port, data, timeout_s=2)
        assert statuses(raw) == [400], raw[:300]
        await alive(url)

    run(harness, scenario)


def test_an_http_1_0_keep_alive_request_is_answered_keep_alive(harness: Harness) -> None:
    """HTTP/1.0 with ``Connection: keep-alive``: aiohttp keeps the connection and says so
    (``Connection: keep-alive``), as an HTTP/1.0 client needs to reuse it. The lane keeps it
    open but says nothing, so such a client (``ab -k``) closes it after every answer, and
    one that reads to the close waits for the 75 s sweep."""

    async def scenario(api: RestApi, url: str) -> None:
        data = b"GET /api/v1/order HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
        raw = await exchange(api.port, data, timeout_s=1)
        assert statuses(raw) == [401], raw
        assert b"connection: keep-alive" in _head(raw), raw

    run(harness, scenario)


def test_a_hand_over_while_the_write_buffer_is_full_keeps_aiohttps_flow_control(
    harness: Harness,
) -> None:
    """The lane holds a request (the first of 200 pipelined order queries) when a public
    route arrives in a read of its own: the hand-over waits for the lane's answers, which
    fill the write buffer (``pause_writing``). Then the lane gives the transport to aiohttp
    with the transport's flow control paused, which aiohttp's protocol was never told, and
    resumes reading though writing is paused. aiohttp then answers a client that reads
    nothing without waiting for a drain (its writes never pause: the transport will not call
    ``pause_writing`` twice), so the write buffer grows with every pipelined request; and
    once the client reads, the transport's ``resume_writing`` fails aiohttp's assertion
    (``protocol.resume_writing() failed``, logged by the loop)."""

    async def scenario(api: RestApi, url: str) -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        held, release = asyncio.Event(), asyncio.Event()
        query = api.fast_routes["GET", "/api/v1/order"]

        async def hold_the_first(r: RestRequest) -> web.StreamResponse:
            if not held.is_set():  # the lane stays busy until the test says
                held.set()
                await release.wait()
            return await query(r)

        api.fast_routes["GET", "/api/v1/order"] = hold_the_first
        sock = await _slow_reader(api.port)
        try:
            lane = await _lane_of(api, sock)
            transport = lane.transport
            assert transport is not None
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            transport.set_write_buffer_limits(high=4096)
            count, pings = 200, 4000
            await loop.sock_sendall(sock, request(b"GET /api/v1/order HTTP/1.1") * count)
            async with asyncio.timeout(5):
                await held.wait()
            await asyncio.sleep(0.1)  # every query read: the ping begins a read of its own
            await loop.sock_sendall(sock, request(b"GET /api/v1/ping HTTP/1.1"))
            async with asyncio.timeout(5):
                while lane._handover is None:
                    await asyncio.sleep(0.01)
            release.set()
            async with asyncio.timeout(5):  # the lane answers, and holds the hand-over
                while not lane._write_paused:  # until the client has read its answers
                    await asyncio.sleep(0.01)
            # pipelined pings from a client that reads nothing, aiohttp's once it reads
            data = request(b"GET /api/v1/ping HTTP/1.1") * pings
            raw, biggest = await _send_unread(sock, transport, data, count + 1 + pings)
            assert len(statuses(raw)) == count + 1 + pings
            assert biggest < 64 << 10, f"write buffer grew to {biggest} bytes"
            assert not errors, errors
        finally:
            sock.close()

    run(harness, scenario)


async def _send_unread(
    sock: socket.socket, transport: asyncio.Transport, data: bytes, answers: int
) -> tuple[bytes, int]:
    """Send ``data`` from a client that reads nothing for a second, sampling the lane's write
    buffer; then read until ``answers`` answers came. The bytes read, and the largest buffer."""
    loop = asyncio.get_running_loop()
    sending = loop.create_task(loop.sock_sendall(sock, data))
    biggest = 0
    for _ in range(100):
        biggest = max(biggest, transport.get_write_buffer_size())
        await asyncio.sleep(0.01)
    raw = b""
    async with asyncio.timeout(30):  # (10 s was short on a loaded CI host)
        while len(statuses(raw)) < answers:
            raw += await loop.sock_recv(sock, 1 << 16)
        await sending
    return raw, biggest


def test_the_answers_to_one_read_do_not_overrun_the_write_buffer(harness: Harness) -> None:
    """6,000 pipelined order queries (234 KB) from a client that reads nothing.
    ``pause_writing`` stops the lane reading, but ``_answer`` goes on writing the answer to
    every request already queued, a whole read's worth, so the transport's buffer takes
    ~650 KB here, near three times what the client sent in all (a read of small requests
    is up to 256 KiB), and a few thousand such connections hold gigabytes. aiohttp awaits a
    drain before its next request: its buffer stays near the 64 KiB high-water mark."""

    async def scenario(api: RestApi, url: str) -> None:
        sock = await _slow_reader(api.port)
        try:
            lane = await _lane_of(api, sock)
            transport = lane.transport
            assert transport is not None
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            count = 6000
            data = request(b"GET /api/v1/order HTTP/1.1") * count
            raw, biggest = await _send_unread(sock, transport, data, count)
            assert statuses(raw) == [401] * count
            assert biggest < 256 << 10, f"write buffer grew to {biggest} bytes"
        finally:
            sock.close()

    run(harness, scenario)


def test_an_order_with_expect_100_continue_is_placed_after_the_continue(
    harness: Harness,
) -> None:
    """Guard: the hand-over happens at the headers, before the body is sent; aiohttp's
    ``100 Continue`` must come, then the order's answer, once."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            body = BODY.format("continued").encode()
            signed = alice.headers("POST", "/api/v1/order", "", body)
        finally:
            await alice.close()
        head = request(
            b"POST /api/v1/order HTTP/1.1",
            b"Content-Type: application/x-www-form-urlencoded",
            b"Content-Length: %d" % len(body),
            b"Expect: 100-continue",
            b"Connection: close",
            *(f"{name}: {value}".encode() for name, value in signed.items()),
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        try:
            writer.write(head)
            async with asyncio.timeout(5):
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100 ")
                writer.write(body)
                raw = await reader.read()
        finally:
            writer.close()
        assert statuses(raw) == [200], raw
        assert await _placed(url, "continued")

    run(harness, scenario)


def test_a_request_split_across_two_reads_anywhere_is_answered_once(harness: Harness) -> None:
    """Guard: an order query (the lane's) and a ping (aiohttp's, handed over with both
    reads) cut at every byte, the halves sent 5 ms apart."""

    async def scenario(api: RestApi, url: str) -> None:
        for line, status in (
            (b"GET /api/v1/order HTTP/1.1", 401),
            (b"GET /api/v1/ping HTTP/1.1", 200),
        ):
            data = request(line, b"Connection: close")
            for cut in range(1, len(data)):
                reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
                try:
                    writer.get_extra_info("socket").setsockopt(
                        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
                    )
                    writer.write(data[:cut])
                    await asyncio.sleep(0.005)
                    writer.write(data[cut:])
                    async with asyncio.timeout(5):
                        raw = await reader.read()
                finally:
                    writer.close()
                assert statuses(raw) == [status], (cut, raw)
        assert not api.lanes

    run(harness, scenario)
