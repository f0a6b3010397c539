"""Bugs a hostile review of the market-data WebSocket server found (``procs/marketdata``:
the endpoints, the slow-consumer policy, the HTTP API); one failing test each:

- a bare ``/stream`` (combined streams, subscribed later by request, as the venue's own
  connectors open it) is refused with a 400;
- ``/api/symbols`` names a symbol's status ``OPEN``/``HALTED`` where the status stream (and
  the venue) say ``TRADING``/``HALT``;
- a trade that finds the queue full of depth diffs (which the policy may drop) closes the
  client as a slow trade consumer, with one trade queued;
- so does an answer to a request: a depth client that sends one request while a moment
  behind is closed for "sending requests and not reading the answers";
- a client that stops reading and follows only depth (never closed by the policy) is never
  dropped: the protocol ping waits behind the full socket buffer, so its timeout never runs;
- a slow trade consumer that takes more than two seconds to read up to the close frame gets
  no close frame at all (1006, no reason), not the promised 1008 with a reason.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from procs.common.records import Record, SymbolStatus
from procs.common.types import AdminAction, Side, TradingStatus
from procs.marketdata.outbox import Outbox
from procs.marketdata.streams import Kind

from .events import level, trade
from .rig import Rig
from .test_adversarial_ws import TIGHT, get, now_trade, run
from .test_server import small_buffer_socket


def test_a_bare_combined_stream_endpoint_takes_subscriptions_by_request(instance: str) -> None:
    """The venue's combined endpoint is ``/stream``: its own connectors (binance-connector's
    ``SpotWebsocketStreamClient(is_combined=True)``, browser snippets) open a bare
    ``/stream`` and send SUBSCRIBE afterwards, getting wrapped messages. Here ``/stream``
    without ``?streams=`` is refused (HTTP 400 "/stream needs ?streams=...",
    ``server.py:245-247``), so such client code needs changing. Expected: the connection
    opens with no streams, as ``/ws`` does, and a SUBSCRIBE works on it."""

    async def body(rig: Rig) -> None:
        try:
            async with rig.client("/stream") as c:
                ack = await c.request("SUBSCRIBE", ["btc-usd@trade"])
                assert ack == {"result": None, "id": 1}
                rig.publish([now_trade(1, 1)])
                (got,) = await c.collect("btc-usd@trade", 1)
                assert got["t"] == 1
        except InvalidStatus as exc:
            response = exc.response
            pytest.fail(f"/stream refused: HTTP {response.status_code} {response.body!r}")

    run(instance, body)


def test_api_symbols_names_the_status_as_the_status_stream_does(instance: str) -> None:
    """The status stream says ``"S": "TRADING"`` / ``"HALT"`` (``messages.STATUS_NAMES``,
    the venue's symbol status names); ``/api/symbols`` says ``"status": "OPEN"`` /
    ``"HALTED"`` for the same thing (the enum's Python names, ``web.py:123``). A client that
    reads the status once over HTTP and then follows the stream compares two vocabularies.
    Expected: the same names in both (TRADING, then HALT after a halt)."""

    async def body(rig: Rig) -> None:
        async with rig.client("/ws/btc-usd@status") as c:
            streamed = [(await c.collect("btc-usd@status", 1))[0]["S"]]
            status, answer = await get(rig.port, b"/api/symbols")
            served = [next(s["status"] for s in json.loads(answer) if s["stream"] == "btc-usd")]
            rig.publish(
                [SymbolStatus(5, time.time_ns(), 1, AdminAction.HALT, TradingStatus.HALTED)]
            )
            streamed.append((await c.collect("btc-usd@status", 1))[0]["S"])
            status, answer = await get(rig.port, b"/api/symbols")
            served.append(next(s["status"] for s in json.loads(answer) if s["stream"] == "btc-usd"))
            assert status == 200
            assert served == streamed == ["TRADING", "HALT"], (served, streamed)

    run(instance, body)


def diffs_and_snapshots() -> tuple[Outbox, list[str]]:
    """An outbox of 16 whose client is a moment behind on a busy book: 16 depth diffs wait,
    which the policy may drop for one snapshot at any time."""
    rendered: list[str] = []

    def snapshot(stream: str) -> bytes:
        rendered.append(stream)
        return b"snapshot"

    box = Outbox(16, snapshot)
    for k in range(16):
        assert box.push(Kind.DEPTH, "btc-usd@depth", f"diff {k}".encode()) is None
    return box, rendered


def test_a_trade_behind_droppable_depth_diffs_does_not_close_the_client() -> None:
    """Issue 6: depth drops its queued diffs and sends a fresh snapshot; trades *beyond a
    hard cap* close the connection (the outbox's own words: "only one that cannot keep up
    with the trade tape is cut off"). Here the queue holds 16 depth diffs and no trade; the
    first trade to arrive finds ``len(queue) >= limit`` and the client is closed 1008
    "trade stream btc-usd@trade cannot be conflated" (``outbox.py:73-80``) though dropping
    the diffs for a snapshot would leave room for it. A client on depth and trades of a busy
    book is cut off for being behind on depth. Expected: no close; the diffs give way to a
    snapshot, which follows the trade (it shows the book after the trade's batch)."""
    box, rendered = diffs_and_snapshots()
    reason = box.push(Kind.TRADE, "btc-usd@trade", b"trade 1")
    assert reason is None, reason
    queued = []
    while (payload := box.pop()) is not None:
        queued.append(payload)
    assert queued == [b"trade 1", b"snapshot"] and rendered


def test_a_request_behind_droppable_depth_diffs_does_not_close_the_client() -> None:
    """A depth-only client is never closed by the policy (its diffs give way to a snapshot).
    But while 16 diffs wait, the answer to its one UNSUBSCRIBE or LIST_SUBSCRIPTIONS finds
    the queue at its limit and the client is closed 1008 "it sends requests and does not
    read the answers" (``outbox.py:91-99``): a false reason, one request sent. Expected:
    the answer queues (the diffs may give way to a snapshot first)."""
    box, _ = diffs_and_snapshots()
    reason = box.push_reply(b'{"result":null,"id":1}')
    assert reason is None, reason


def test_a_client_that_never_reads_depth_is_dropped_by_the_ping_timeout(instance: str) -> None:
    """A client on ``btc-usd@depth`` stops reading for good (a hung process with its socket
    open). The policy never closes a depth client, so only the protocol ping can notice; but
    websockets' keepalive ``await``s ``ping()``, which drains the socket's buffer first, and
    the buffer never drains: the pong timeout is never started. Pings every 0.3 s, 0.3 s to
    answer, 2 s to close: the connection should be gone within 3.5 s, as it is when the same
    client stopped reading after three diffs (its buffers not full). Actual: still OPEN,
    holding a connection slot, its buffers and its queue for as long as the peer lives
    (``server.py:188-189`` rely on websockets' keepalive; nothing times out a stalled
    writer)."""

    async def body(rig: Rig) -> None:
        sock = small_buffer_socket(rig.port)
        async with rig.client(
            "/ws/btc-usd@depth", sock=sock, max_queue=1, ping_interval=None, close_timeout=0.1
        ) as c:
            server = rig.process.server
            seq = 1
            for _ in range(60):  # enough changes to fill the socket's buffers both ends
                rig.publish(
                    [level(seq + k, Side.BUY, 10_000 + (seq + k) % 300, 1 + k) for k in range(20)]
                )
                seq += 20
                await asyncio.sleep(0.005)
            deadline = time.monotonic() + 3.5
            while server.clients and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            still_open = len(server.clients)
            c.ws.transport.abort()  # end the test quickly either way
            assert still_open == 0, "a client that reads nothing is still connected after 3.5 s"

    run(instance, body, client_queue=16, server={**TIGHT, "ping_interval_s": 0.3})


def test_a_slow_trade_consumer_that_pauses_gets_the_1008_close_and_its_reason(
    instance: str,
) -> None:
    """Issue 6: trades beyond the cap close the connection with 1008 and a reason. The
    client closed is, by definition, behind: its close frame waits behind what the socket
    buffers hold. ``close_slow`` calls ``conn.close`` with the server's ``close_timeout=2``
    (``server.py:141,192``): the deadline runs from the close, and once it has passed the
    transport is aborted, discarding the close frame still in the server's buffer. A client
    that paused 2.5 s (a GC pause, a busy laptop) reads the trades that were sent, then sees
    the connection drop with no close frame (1006): it never learns it was cut off as a slow
    consumer, nor why. Expected: the 1008 frame with its "slow consumer" reason arrives after
    the trades delivered before it."""

    async def body(rig: Rig) -> None:
        sock = small_buffer_socket(rig.port)
        async with rig.client("/ws/btc-usd@trade", sock=sock, max_queue=1) as slow:
            trade_id = 0
            deadline = time.monotonic() + 3
            while rig.process.server.slow_closed == 0 and time.monotonic() < deadline:
                batch: list[Record] = [
                    trade(trade_id + k, trade_id + k, 10_000, 1, ts=time.time_ns())
                    for k in range(1, 51)
                ]
                trade_id += 50
                rig.publish(batch)
                await asyncio.sleep(0.01)
            assert rig.process.server.slow_closed == 1
            await asyncio.sleep(2.5)  # the client pauses, then reads on
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await slow.recv(timeout=3)
            rcvd = closed.value.rcvd
            assert rcvd is not None, f"no close frame: {closed.value}"
            assert rcvd.code == 1008 and "slow consumer" in rcvd.reason

    run(instance, body, client_queue=16, server=TIGHT)
