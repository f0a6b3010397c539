"""Bugs a hostile review of the market-data server found, one test each; each failed before
its fix (an open one would be marked xfail, strict, until fixed):

- depth: changes of one exchange seq that land in two batches (a sweep split by the feed's
  read bound) make a diff whose ``U`` is past its ``u``, which a client following the
  documented snapshot/diff rule drops, and leave a stale cached snapshot for new subscribers;
- a slow client's queue conflates a closed candle away: its final value never arrives;
- a combined-stream URL counts duplicate names against the subscription limit;
- HTTP requests the server cannot parse (two Upgrade headers, a target ``urlsplit`` refuses)
  get a 500 instead of a 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import pytest

from procs.common.records import Record
from procs.common.types import Side
from procs.core.market.state import MarketState, Update
from procs.marketdata.hub import Hub, Message
from procs.marketdata.outbox import Outbox
from procs.marketdata.streams import parse_stream

from .events import MIN, OTHER, SYMBOL, T0, level, trade
from .rig import Client, Rig
from .test_adversarial_ws import get, run

Book = dict[str, dict[str, str]]


def apply_depth(book: Book, last: int, data: dict[str, Any]) -> int:
    """Apply one depth message as the documented rule says (a snapshot starts over; a diff
    with ``u <= last`` is old and dropped; otherwise ``U`` must be ``last + 1``); returns the
    new last update id."""
    if data["e"] == "depthSnapshot":
        book["b"] = dict(map(tuple, data["bids"]))
        book["a"] = dict(map(tuple, data["asks"]))
        return int(data["lastUpdateId"])
    assert data["e"] == "depthUpdate"
    if data["u"] <= last:
        return last
    assert data["U"] == last + 1, (last, data)
    for side in ("b", "a"):
        for price, qty in data[side]:
            if qty == "0.0000":
                book[side].pop(price, None)
            else:
                book[side][price] = qty
    return int(data["u"])


async def server_book(rig: Rig) -> Book:
    """The BTC-USD book as ``/api/depth`` answers it (rendered fresh, never cached)."""
    status, body = await get(rig.port, b"/api/depth?symbol=btc-usd&limit=1000")
    assert status == 200, body
    snap = json.loads(body)
    return {"b": dict(map(tuple, snap["bids"])), "a": dict(map(tuple, snap["asks"]))}


async def follow_depth(c: Client, book: Book, last: int, until: int) -> int:
    """Read ``c``'s depth messages until one ends at ``until`` or later."""
    while True:
        msg = await c.recv(timeout=3)
        if msg.get("stream") != "btc-usd@depth":
            continue
        data = msg["data"]
        last = apply_depth(book, last, data)
        if data.get("u", data.get("lastUpdateId", 0)) >= until:
            return last


def test_depth_changes_of_one_seq_split_over_two_batches_reach_a_subscriber(
    instance: str,
) -> None:
    """One command's level changes share its seq; the feed reads at most 1024 records a
    batch, so 1023 other records ahead of a two-level sweep split it. The second diff is
    ``U = S + 1, u = S``: a client that drops ``u <= lastUpdateId`` (the rule) loses it."""

    async def body(rig: Rig) -> None:
        async with rig.client("/ws/btc-usd@depth") as c:
            book: Book = {"b": {}, "a": {}}
            last = apply_depth(book, 0, (await c.recv())["data"])
            others: list[Record] = [
                level(k, Side.SELL, 20_000 + k, 1, symbol=2) for k in range(1, 1024)
            ]
            sweep: list[Record] = [
                level(1024, Side.BUY, 10_000, 5),
                level(1024, Side.BUY, 9_900, 3),
            ]
            rig.publish(others + sweep)  # one publish; the feed reads it in two batches
            last = await follow_depth(c, book, last, 1024)
            await asyncio.sleep(0.05)  # let the second batch's diff out
            rig.publish([level(1025, Side.SELL, 10_100, 1)])  # a marker after the sweep
            last = await follow_depth(c, book, last, 1025)
            assert book == await server_book(rig)

    run(instance, body)


def test_depth_snapshot_after_a_same_seq_change_is_the_current_book(instance: str) -> None:
    """A subscriber caches the snapshot at seq 10; another change of seq 10 arrives in the
    next batch; the cache (checked by ``lastUpdateId`` only) still answers the next
    subscriber with the book that lacks it, and no later diff brings it back."""

    async def body(rig: Rig) -> None:
        async with rig.client("/ws/btc-usd@depth") as a:
            await a.recv()  # the empty book's snapshot
            rig.publish([level(10, Side.BUY, 10_000, 5)])
            await a.recv()  # its diff
            async with rig.client("/ws/btc-usd@depth") as b:
                await b.recv()  # renders and caches the snapshot at update 10
                rig.publish([level(10, Side.BUY, 9_900, 3)])  # the same command's next level
                await a.recv()
            async with rig.client("/ws/btc-usd@depth") as c:
                book: Book = {"b": {}, "a": {}}
                apply_depth(book, 0, (await c.recv())["data"])
                assert book == await server_book(rig)

    run(instance, body)


class QueuedClient:
    """A connection whose socket is busy (something queued or being sent): the server's
    ``Client`` then pushes every message into its ``Outbox``, as this one does."""

    def __init__(self) -> None:
        self.streams: set[str] = set()
        self.outbox = Outbox(1_000, lambda stream: b"")

    def deliver(self, messages: Sequence[Message], frames: bytes) -> None:
        for m in messages:
            assert self.outbox.push(m.kind, m.stream, m.payload, m.final) is None

    def deliver_snapshot(self, stream: str, payload: bytes) -> None:
        self.outbox.push_snapshot(stream, payload)

    def drain(self) -> list[dict[str, Any]]:
        out = []
        while (payload := self.outbox.pop()) is not None:
            out.append(json.loads(payload))
        return out


def test_a_queued_kline_client_gets_the_closed_candle() -> None:
    """Candle conflation should replace an older value of the same candle, not a candle that
    just closed: a client that is a message behind when the minute rolls never learns the
    final OHLC of that minute (no ``"x": true`` message for it at all)."""
    state = MarketState([SYMBOL, OTHER])
    hub = Hub(state, depth_levels=10, max_subscriptions=10)
    client = QueuedClient()
    hub.subscribe(client, [parse_stream("btc-usd@kline_1m", frozenset({"btc-usd"}))])
    out: list[Update] = []
    state.process(trade(1, 1, 10_000, 1, ts=T0), out)
    hub.publish(out + state.flush())  # the first candle opens: queued
    out = []
    state.process(trade(2, 2, 10_500, 1, ts=T0 + 30_000_000_000), out)
    state.process(trade(3, 3, 11_000, 1, ts=T0 + MIN + 1), out)  # the first candle closes
    hub.publish(out + state.flush())
    candles = [m["data"]["k"] for m in client.drain()]
    first = [k for k in candles if k["t"] == T0 // 1_000_000]
    assert first and first[-1]["x"] is True and first[-1]["c"] == "105.00", candles


def test_duplicate_names_in_a_combined_stream_url_are_one_subscription(instance: str) -> None:
    """SUBSCRIBE with the same name 1000 times is one subscription; the same 201 times in
    ``/stream?streams=`` closes the connection 1008 "201 streams, at most 200"."""

    async def body(rig: Rig) -> None:
        names = "/".join(["btc-usd@trade"] * 201)
        async with rig.client(f"/stream?streams={names}") as c:
            assert (await c.request("LIST_SUBSCRIPTIONS"))["result"] == ["btc-usd@trade"]

    run(instance, body)


async def raw_get(port: int, request: bytes) -> int:
    """The status of the answer to a raw HTTP request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 3)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return int(head.split(b" ", 2)[1])


def test_two_upgrade_headers_are_not_a_500(instance: str) -> None:
    """``request.headers.get("Upgrade")`` raises ``MultipleValuesError`` when the header
    comes twice; websockets turns the exception into a 500."""

    async def body(rig: Rig) -> None:
        status = await raw_get(
            rig.port,
            b"GET /api/symbols HTTP/1.1\r\nHost: x\r\nUpgrade: a\r\nUpgrade: b\r\n\r\n",
        )
        assert status < 500  # a 400 naming the header, or the page served

    run(instance, body)


@pytest.mark.parametrize("upgrade", [False, True])
def test_a_target_urlsplit_refuses_is_not_a_500(instance: str, upgrade: bool) -> None:
    """``urlsplit("//[x")`` raises ``ValueError: Invalid IPv6 URL`` in ``Site.get`` (plain
    GET) and in ``_path_streams`` (WebSocket upgrade); websockets answers 500."""
    ws = (
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )

    async def body(rig: Rig) -> None:
        request = b"GET //[x/api/symbols HTTP/1.1\r\nHost: x\r\n" + (ws if upgrade else b"")
        assert await raw_get(rig.port, request + b"\r\n") < 500  # a 400 (or 404)

    run(instance, body)
