"""Bugs a fourth hostile review of the market-data WebSocket server and its HTTP side found
(``procs/marketdata/server.py``, ``web.py``), one failing test each:

- a client that sends pings and never reads makes the server buffer the pongs without bound:
  tens of megabytes within a second, while every other write to it is capped;
- a client closed as a slow consumer can SUBSCRIBE during its close handshake and is put
  back in the hub: it is fanned out to (and counted) for as long as its close takes;
- the process never raises its open-file limit, so ``max_connections`` (5000 by default)
  sits above the usual soft limit (1024): past it, clients get a dropped connection, not
  the 503 that names the limit;
- HTTP methods other than GET are answered as GET (``DELETE /`` serves the page) and a
  HEAD answer carries a body, though ``web.py`` says "Only GET".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import resource
import socket
import time

import uvloop
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode

from procs.common.records import Record

from .rig import Rig, running
from .test_adversarial_ws import TIGHT, now_trade, run
from .test_server import small_buffer_socket


async def raw_ws(port: int, path: str) -> socket.socket:
    """A WebSocket opened by hand on a socket with a small receive buffer, then never read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += await asyncio.wait_for(loop.sock_recv(sock, 1), 3)
        assert head.startswith(b"HTTP/1.1 101"), head
    except BaseException:
        sock.close()
        raise
    return sock


def test_pongs_to_a_client_that_never_reads_are_bounded(instance: str) -> None:
    """Everything the server writes to a client is bounded: messages by ``write_limit`` and
    the outbox, answers by ``push_reply``, and a socket that takes nothing is dropped after
    ``stall_s``. Pongs are not: websockets answers each ping the moment it is read, straight
    into the transport, and the server never stops reading a connection whose writes are
    paused (``server.py:202-213`` passes no such bound; ``Client`` watches only its own
    writes). A client that sends 125-byte pings and never reads makes the server buffer
    over 16 MB in about a second (write_limit 4 KB, SO_SNDBUF 4 KB), and it would go on
    until the next heartbeat stalls, ``stall_s`` later (40 s by default): gigabytes. A
    correct server stops reading a peer whose output it cannot deliver (pause reading
    while writing is paused, as asyncio's flow control allows), so its buffer stays near
    the write limit."""

    async def body(rig: Rig) -> None:
        loop = asyncio.get_running_loop()
        sock = await raw_ws(rig.port, "/ws")
        try:
            (client,) = rig.process.server.clients
            transport = client.conn.transport
            pings = Frame(Opcode.PING, b"p" * 125).serialize(mask=True, extensions=()) * 500
            peak, deadline = 0, time.monotonic() + 4
            while time.monotonic() < deadline and peak < 16 << 20:
                try:  # a server that stops reading stops this loop: the send blocks
                    await asyncio.wait_for(loop.sock_sendall(sock, pings), 0.5)
                except TimeoutError:
                    break
                peak = max(peak, transport.get_write_buffer_size())
            assert peak < 4 << 20, f"{peak} bytes of pongs buffered for a client that reads none"
        finally:
            sock.close()

    run(instance, body, client_queue=16, server=TIGHT)


def test_a_client_closed_as_slow_cannot_subscribe_again(instance: str) -> None:
    """``Client.close_slow`` removes the client from the hub and starts the 1008 close,
    which may take ``slow_close_s`` (40 s by default: the client is behind by definition).
    Meanwhile its requests are still read, and ``_on_message`` (``server.py:321-323``)
    runs ``hub.check_subscribe`` and ``hub.subscribe`` for it: only the answer is skipped
    (``reply`` returns when closing). A SUBSCRIBE sent after the close puts the closed
    client back into the hub's subscriptions and groups: every batch is rendered for it
    and fanned out to it (``deliver`` drops it), ``hub.delivered`` counts it, and a depth
    subscription renders a snapshot for a connection that is going away. Expected: a
    closing client's requests change nothing (``_on_message`` returns when
    ``client.closing``); no stream has it as a subscriber."""

    async def body(rig: Rig) -> None:
        server, hub = rig.process.server, rig.process.hub
        sock = small_buffer_socket(rig.port)
        async with rig.client("/ws/btc-usd@trade", sock=sock, max_queue=1) as c:
            trade_id, deadline = 0, time.monotonic() + 5
            while server.slow_closed == 0 and time.monotonic() < deadline:
                batch: list[Record] = [now_trade(trade_id + k, trade_id + k) for k in range(1, 51)]
                trade_id += 50
                rig.publish(batch)
                await asyncio.sleep(0.01)
            assert server.slow_closed == 1
            (client,) = server.clients
            assert client.closing and hub.subscribers("btc-usd@trade") == 0
            await c.ws.send('{"method":"SUBSCRIBE","params":["eth-usd@depth"],"id":1}')
            await asyncio.sleep(0.3)  # read and handled by now
            subscribed = hub.subscribers("eth-usd@depth"), sorted(client.streams)
            c.ws.transport.abort()  # no close handshake behind the buffered trades
            assert subscribed == (0, []), f"closed client back in the hub: {subscribed}"

    run(instance, body, client_queue=16, server=TIGHT)


def test_clients_up_to_max_connections_are_served_or_told_the_limit(instance: str) -> None:
    """``marketdata.max_connections`` defaults to 5000, and an over-limit client gets a 503
    naming the limit (``server.py:248-253``). But each connection is a file descriptor,
    and the process never raises its ``RLIMIT_NOFILE`` soft limit (1024 under systemd and
    most shells; nothing in ``procs/marketdata`` or ``scripts/systemd_units.py`` sets it):
    past it ``accept`` fails with EMFILE and the client's connection is dropped before any
    HTTP answer, at about a fifth of the configured limit. Here the same at a smaller
    scale: the process starts with 60 descriptors to spare (as a process with ~100 open
    starts under 1024) and 100 clients connect; about half get no answer at all
    (``InvalidMessage``). Expected: the process raises its soft limit towards the hard one
    at start, enough for ``max_connections`` (or refuses connections past what it can hold
    with the 503), so every client here is served or told why not."""
    socks = [socket.socket() for _ in range(100)]  # the clients' own descriptors, first
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    results: list[str] = []

    async def one(rig: Rig, sock: socket.socket) -> str:
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", rig.port))
            async with connect(rig.url + "/ws", sock=sock, open_timeout=1.5):
                await asyncio.sleep(2.5)  # all held open at once
                return "open"
        except InvalidStatus as exc:
            return f"HTTP {exc.response.status_code}"
        except Exception as exc:
            return type(exc).__name__

    async def main() -> None:
        async with running(instance) as rig:
            results.extend(await asyncio.gather(*(one(rig, s) for s in socks)))

    try:
        in_use = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(in_use + 60, hard), hard))
        uvloop.run(main())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for s in socks:
            s.close()
    dropped = [r for r in results if r not in ("open", "HTTP 503")]
    assert not dropped, f"{len(dropped)} of 100 clients got no answer: {sorted(set(dropped))}"


async def http(port: int, method: bytes, target: bytes) -> tuple[int, bytes]:
    """A raw HTTP request on the market-data port: (status, body as sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = b""
    try:
        writer.write(method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(3):
            while chunk := await reader.read(65536):
                out += chunk
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_http_methods_other_than_get_are_not_served_as_get(instance: str) -> None:
    """``web.py`` says "Only GET", and websockets 17 hands every request method to
    ``process_request``, leaving the check to it; ``_process_request`` (``server.py:247``)
    serves any request without an Upgrade header with ``site.get(request.path)``, whatever
    its method. ``DELETE /`` and ``POST /api/depth`` answer 200 with the page and the
    book, and ``HEAD /`` answers the whole page as a body, which RFC 9110 (9.3.2) forbids
    and which an HTTP client that trusts the framing reads as the start of its next
    response. Expected: 405 Method Not Allowed (with ``Allow: GET, HEAD``) for the others,
    and a HEAD answer with the headers only."""

    async def body(rig: Rig) -> None:
        answers = {
            method: await http(rig.port, method, target)
            for method, target in [
                (b"DELETE", b"/"),
                (b"POST", b"/api/depth?symbol=btc-usd"),
                (b"PUT", b"/api/symbols"),
            ]
        }
        head_status, head_body = await http(rig.port, b"HEAD", b"/")
        served = {m.decode(): status for m, (status, _) in answers.items() if status != 405}
        assert not served and head_status == 200 and head_body == b"", (
            f"answered as GET: {served}; HEAD / sent a {len(head_body)}-byte body"
        )

    run(instance, body)
