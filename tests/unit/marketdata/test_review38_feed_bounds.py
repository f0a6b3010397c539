"""Review 38, the market-data side: what one client can make the market-data process spend,
or hold of what every client shares, without a bound. No key is needed here: the port
serves the public feed and the page.

Measured before the fixes (this 2-core machine, the process in the rig, the client in its
own process for the rates):

1. ``max_connections`` counts connections once their handshake is done
   (``_process_request``); until then nothing counts them. A connection that sends nothing
   is held for websockets' ``open_timeout`` (10 s), as many as a client opens: 50 idle
   sockets against ``max_connections = 8`` were all held (50 handler tasks, 0 clients),
   each a descriptor that ``connections_room`` budgeted for clients that were counted.
2. Every slot of ``max_connections`` may go to one address: 8 WebSockets from 127.0.0.1,
   and a client from 127.0.0.2 is refused (503 "8 connections open, at most 8").
3. Nothing counts the requests a connection sends: 20,000 ``LIST_SUBSCRIPTIONS`` on one
   connection, read as they come, took 13 us of the process's loop each (SUBSCRIBE and
   UNSUBSCRIBE of a depth stream 20 us), 37,000 a second from one client process, never
   refused nor closed. The loop is the one that fans the feed out to everyone.
4. The page's HTTP API renders each answer anew, with no limit per address:
   ``/api/depth?limit=1000`` over a book of 1,000 levels a side costs 2.5 ms of the
   process's CPU (39 KB answered) per request, ``/api/trades?limit=1000`` 0.8 ms: one
   client at 400 requests a second takes the whole process. (The gateways' REST ``depth``
   proxies it, one request of an address's 5,000/s.)

Held, checked: streams per connection (``max_subscriptions``), a request's params (1,024)
and size (``max_message_bytes``), a slow reader (its outbox conflates, compacts depth to
a snapshot, closes with 1008; a depth stream re-subscribed queues one snapshot at most), a
client that sends and never reads (reading pauses with its writes, answers past the queue
close it), the page's files (read once at start), the HTTP API's ``limit`` (1..1000), and
its errors (cut to 64 characters).

Each fault's test states the bound the fixed process keeps (all four fixed in review 38's
commits: sockets counted from their accept, a per-address limit, a request budget per
connection, depth answers rendered once per book version).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from procs.common.types import Side
from procs.marketdata import messages

from .events import level
from .rig import Rig
from .test_adversarial_ws import get, run

# -- 1. handshakes not counted ---------------------------------------------------------------


def test_connections_in_their_handshake_count_against_max_connections(instance: str) -> None:
    """40 sockets connect and send nothing, ``max_connections = 8``: before review 38 the
    process held all 40 (40 descriptors more). Now it holds at most ``max_connections`` of
    them and a small margin (it counts a connection from its accept)."""

    async def body(rig: Rig) -> None:
        before = len(os.listdir("/proc/self/fd"))
        socks = [socket.create_connection(("127.0.0.1", rig.port)) for _ in range(40)]
        try:
            await asyncio.sleep(0.3)  # accepted, if they are
            held = len(os.listdir("/proc/self/fd")) - before - len(socks)
            # (4: the process's own files, a state snapshot being written)
            assert held <= 8 + 4, f"{held} connections held in handshakes, max_connections 8"
        finally:
            for sock in socks:
                sock.close()

    run(instance, body, max_connections=8)


# -- 2. every slot to one address ---------------------------------------------------------------


async def _from(rig: Rig, address: str) -> ClientConnection:
    """A WebSocket to ``/ws`` from ``address`` (any of 127/8 is this machine's)."""
    sock = socket.socket()
    sock.bind((address, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", rig.port))
    return await connect(rig.url + "/ws", sock=sock, open_timeout=3)


def test_one_address_cannot_take_every_connection_slot(instance: str) -> None:
    """One address opens WebSockets until it is refused, ``max_connections = 16``: before
    review 38 it got all 16, and a client from another address was refused (503). Now the
    process holds one address to fewer than ``max_connections`` (a limit per address): the
    other client is served."""

    async def body(rig: Rig) -> None:
        mine: list[ClientConnection] = []
        try:
            with contextlib.suppress(InvalidStatus):
                for _ in range(16):
                    mine.append(await _from(rig, "127.0.0.1"))
            try:
                other = await _from(rig, "127.0.0.2")
            except InvalidStatus as exc:
                body = exc.response.body or b""
                pytest.fail(f"another address refused: {body.decode().strip()!r}")
            await other.close()
        finally:
            for ws in mine:
                await ws.close()

    run(instance, body, max_connections=16)


# -- 3. requests without a count -----------------------------------------------------------------

#: Requests one connection sends back to back (answers read as they come).
REQUESTS = 20_000


def test_a_connection_flooding_requests_is_closed_naming_the_limit(instance: str) -> None:
    """20,000 ``LIST_SUBSCRIPTIONS`` sent back to back by a client that reads every answer:
    before review 38 all were answered and the connection stayed open. Now the process counts a
    connection's requests (the venues allow 5 a second) and closes it (1008, naming the
    limit) before answering them all. (``test_adversarial_ws`` pins a storm of 302
    requests at once as answered: the limit's burst sits above that.)"""

    async def body(rig: Rig) -> None:
        async with rig.client() as c:

            async def send() -> None:
                with contextlib.suppress(ConnectionClosed):
                    for k in range(REQUESTS):
                        await c.ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": k}))

            sender = asyncio.create_task(send())
            answered = 0
            try:
                while answered < REQUESTS:
                    msg: dict[str, Any] = json.loads(await c.ws.recv())
                    answered += "result" in msg
            except ConnectionClosed:
                pass
            finally:
                await sender
            assert answered < REQUESTS and c.ws.close_code == 1008, (
                f"{answered} of {REQUESTS} requests answered, close code {c.ws.close_code}"
            )

    run(instance, body)


# -- 4. the page's API renders each request ---------------------------------------------------

#: Levels a side in the book, and full-depth requests one address sends.
LEVELS = 1_000
DEPTH_REQUESTS = 200


def test_full_depth_requests_from_one_address_are_not_each_rendered(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 ``GET /api/depth?limit=1000`` from one address while the book does not change:
    before review 38, 200 renders of 2,000 levels. Now the process renders at most 20 (one per book
    change, as the WebSocket's depth snapshot is cached per book version, or a few within
    a per-address budget that weighs a request by its depth, the rest 429)."""
    renders = 0
    depth_data = messages.depth_data  # the render (each answer cut from it)

    def counted(*args: Any) -> dict[str, Any]:
        nonlocal renders
        renders += 1
        return depth_data(*args)

    async def body(rig: Rig) -> None:
        nonlocal renders
        book = [level(1 + 2 * k, Side.BUY, 5_000 + k, 10) for k in range(LEVELS)]
        book += [level(2 + 2 * k, Side.SELL, 20_000 + k, 10) for k in range(LEVELS)]
        rig.publish(book)
        target = b"/api/depth?symbol=btc-usd&limit=1000"
        for _ in range(200):  # until the feed has the whole book
            status, answer = await get(rig.port, target)
            if status == 200 and len(json.loads(answer)["bids"]) == LEVELS:
                break
            await asyncio.sleep(0.02)
        monkeypatch.setattr(messages, "depth_data", counted)
        for _ in range(DEPTH_REQUESTS):
            status, _ = await get(rig.port, target)
            assert status in (200, 429), status
        assert renders <= 20, f"{renders} renders of {LEVELS} levels a side for 200 requests"

    run(instance, body)
