"""Review 205: a hostile review of the market-data publisher's memory and limits: every size
taken from a client has a limit, and a slow or hostile client can neither grow the process's
memory without bound nor starve the others.

Reviewed: ``procs/marketdata/outbox.py`` (the slow-consumer policy), ``server.py``
(``Client.deliver``, the per-connection and per-address limits), ``hub.py`` (subscribe,
unsubscribe, the groups), ``core/market/candles.py`` (which candles leave as finals), against
README's market-data rows (``client_queue``: "messages queued per client, then its depth
compacts, else 1008"). Rig: the real process over a real ring (``rig.running`` through
``test_adversarial_ws.run``), real WebSocket clients over TCP; a client that reads nothing
is ``test_server.small_buffer_socket`` with ``max_queue=1``. What a client holds is counted
through the objects (its ``Outbox``, its transport's write buffer), never by RSS. Candle
tests feed event time alone (``Feed._next_clock`` put off, as ``rig.event_time_process``
does), so an hour of candles takes a moment.

Faults found (each fixed; its test says what it was):

1. ``procs/marketdata/outbox.py:75-85`` (``Outbox.push``, the conflated kinds return before
   the limit is looked at): a kline message marked ``final`` (a candle's close) is never
   replaced and never counted against ``limit``: each close queues one entry more, for
   ever. A client that follows kline streams only and reads slowly (one message taken
   within each ``stall_s``, 40 s by default, keeps its sender's stall timer from firing;
   one that reads nothing is aborted after it) is never closed, and its queue grows by
   one entry per stream per interval closed: a day of ``@kline_1m`` is 1,440 entries a
   stream, 200 streams 288,000. Here 600 closes queue 500 entries (129 KB) against a
   limit of 16 (the socket took the rest).
   Fix: past ``limit`` treat a final like a trade (``_make_room``, then the overflow
   reason and 1008), or keep at most the last final per stream and let a client that
   missed some ask ``/api/klines``. Test:
   ``test_a_kline_client_that_reads_nothing_is_held_to_client_queue``.
2. Same code, with ``procs/core/market/candles.py:96-118`` (``CandleSeries.advance``, an
   idle gap closes up to ``history`` flat candles at once, each published final): one
   batch that crosses an idle gap (a restart after downtime, a resumed or promoted state, a
   clock step) queues ``history + 1`` = 501 finals per kline stream past the limit: with
   ``max_subscriptions = 200`` kline streams, 100,200 entries for one client in one batch.
   Here one trade after 1,000 idle days queues 3,011 entries (6 x 501 finals and the
   open candles, 766 KB) against 16.
   Fix: as 1; and publish one final per gap (the flat candles are the previous close, which
   ``/api/klines`` lists), not ``history`` of them. Test:
   ``test_an_idle_gap_does_not_queue_history_finals_past_client_queue``.
3. ``procs/marketdata/server.py:84-93`` (``Client.deliver``, a writable socket takes the
   whole batch's frames in one write): the same gap batch to a client whose socket was
   idle goes into its transport's buffer whole, ~770 KB past ``write_limit`` (4 KiB here)
   for a client that reads nothing; the buffer is bounded by the batch, and a batch's
   finals by ``history`` x kline streams. Fix: 2's (a batch of finals bounded by the
   streams, not the history), or write a batch straight only while it fits
   ``write_limit`` and queue the rest. Test:
   ``test_an_idle_gap_batch_does_not_overshoot_write_limit``.

Found sound (``test_checked_`` tests): a slow consumer that follows a trade stream is
closed 1008 naming the limit (kline finals queued before it included) while a neighbour on
trades and depth gets every trade and contiguous depth diffs; subscriptions per connection
are held to ``max_subscriptions`` across requests (a stream already held is not counted
twice; one freed can be taken again) and a URL past it is closed 1008; a request past
``max_message_bytes`` is closed 1009; unknown stream names are refused naming them and
leave nothing in the hub; a hundred subscribe/unsubscribe rounds over every kind, and
connections opened and closed, leave the hub's tables, the client's outbox and the
server's per-address tables as they were; a client that churns subscriptions and reads
nothing is closed or held near ``client_queue``; connections in total and per address are
refused 503 naming the limit, and freed slots are counted back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from procs.common.records import Record
from procs.common.types import Side
from procs.marketdata.server import Client as ServerClient

from .events import MIN, level, trade
from .rig import Rig
from .test_adversarial_ws import TIGHT, now_trade, run
from .test_review38_feed_bounds import _from
from .test_server import small_buffer_socket

DAY = 24 * 60 * MIN
KLINES = [f"btc-usd@kline_{i}" for i in ("1m", "5m", "15m", "1h", "4h", "1d")]
EVERY_KIND = [
    f"{s}@{k}"
    for s in ("btc-usd", "eth-usd")
    for k in ("trade", "depth", "depth5", "depth20", "bookTicker", "ticker", "status", "kline_1m")
]


def event_time_only(rig: Rig) -> int:
    """The feed's clock from event time alone from now on; returns a time to start the
    events at: a day boundary ahead of the wall clock, which the feed fed its symbols
    already at its first tick (a trade stamped before it counts in the candle open then)."""
    rig.process.feed._next_clock = float("inf")
    return (time.time_ns() // DAY + 2) * DAY


async def applied(rig: Rig, events: int, timeout_s: float = 10.0) -> None:
    """Wait until the feed has applied ``events`` events in all."""
    async with asyncio.timeout(timeout_s):
        while rig.process.feed.events < events:
            await asyncio.sleep(0.005)


def server_client(rig: Rig, stream: str) -> ServerClient:
    """The server's side of the one connection following ``stream``."""
    (client,) = [c for c in rig.process.server.clients if stream in c.streams]
    return client


async def silent(rig: Rig, path: str, **kw: Any) -> ClientConnection:
    """A WebSocket on ``path`` that reads nothing once one message waits (small buffers)."""
    sock = small_buffer_socket(rig.port)
    return await connect(rig.url + path, sock=sock, max_queue=1, close_timeout=0.1, **kw)


def minute_trades(start_seq: int, t0: int, minutes: range) -> list[Record]:
    """One trade in each minute of ``minutes`` from ``t0``: each closes the last one's."""
    return [
        trade(start_seq + k, start_seq + k, 10_000 + m % 7, 1, ts=t0 + m * MIN)
        for k, m in enumerate(minutes)
    ]


def queued_bytes(client: ServerClient) -> int:
    return sum(len(e.payload) for e in client.outbox._queue)


# -- 1. kline finals past client_queue ------------------------------------------------------


def test_a_kline_client_that_reads_nothing_is_held_to_client_queue(instance: str) -> None:
    """A client follows ``btc-usd@kline_1m`` and reads nothing; 600 minutes of trades (event
    time) close 600 candles, in batches of 50. Expected (README: ``client_queue``, "messages
    queued per client, then its depth compacts, else 1008"): the client holds at most
    about ``client_queue`` (16) messages, or is closed as slow. Was (fixed): no limit applied to a
    final, the client stays open and 500 closes wait in its outbox (one entry a close, for
    as long as the client lives)."""

    async def body(rig: Rig) -> None:
        t0 = event_time_only(rig)
        ws = await silent(rig, "/ws/btc-usd@kline_1m")
        try:
            client = server_client(rig, "btc-usd@kline_1m")
            seq = 1
            for start in range(0, 600, 50):
                rig.publish(minute_trades(seq, t0, range(start, start + 50)))
                seq += 50
                await applied(rig, seq - 1)
            queued, limit = len(client.outbox), client.outbox.limit
            assert client.closing or queued <= 2 * limit, (
                f"{queued} messages ({queued_bytes(client)} bytes) queued for a client that "
                f"reads nothing, client_queue {limit}; still open"
            )
        finally:
            ws.transport.abort()

    run(instance, body, client_queue=16, server=TIGHT)


def test_an_idle_gap_does_not_queue_history_finals_past_client_queue(instance: str) -> None:
    """A client follows the six ``btc-usd`` kline streams and reads nothing; its socket is
    full (a day of 5-minute trades), then one trade comes 1,000 days later: each interval
    closes its candle and ``history`` (500) flat ones. Expected: the client holds about
    ``client_queue`` messages at most, or is closed as slow. Was (fixed): that one batch queued
    3,011 messages (6 x 501 finals, 5 open candles) against a limit of 16; with 200 kline
    streams (the default ``max_subscriptions``) it would be 100,200."""

    async def body(rig: Rig) -> None:
        t0 = event_time_only(rig)
        ws = await silent(rig, "/stream?streams=" + "/".join(KLINES))
        try:
            client = server_client(rig, KLINES[0])
            rig.publish(minute_trades(1, t0, range(0, 24 * 60, 5)))  # 288 trades
            await applied(rig, 288)
            before = len(client.outbox)
            late = t0 + 1_000 * DAY + 30 * MIN
            rig.publish([trade(1_000, 1_000, 10_000, 1, ts=late)])
            await applied(rig, 289)
            added, limit = len(client.outbox) - before, client.outbox.limit
            assert client.closing or len(client.outbox) <= 2 * limit, (
                f"one batch queued {added} messages ({len(client.outbox)} in all, "
                f"{queued_bytes(client)} bytes), client_queue {limit}; still open"
            )
        finally:
            ws.transport.abort()

    run(instance, body, client_queue=16, server=TIGHT)


def test_an_idle_gap_batch_does_not_overshoot_write_limit(instance: str) -> None:
    """As the gap test above, but the client's socket is idle when the batch comes (one
    trade, then one 1,000 days later). Expected: what the process holds for this client
    that reads nothing (its transport's unsent bytes and its outbox) stays near
    ``write_limit`` (4 KiB) and ``client_queue`` messages of the biggest kline. Was (fixed): the
    whole batch, 3,006 finals (~770 KB), is written into its transport at once."""

    async def body(rig: Rig) -> None:
        t0 = event_time_only(rig)
        ws = await silent(rig, "/stream?streams=" + "/".join(KLINES))
        try:
            client = server_client(rig, KLINES[0])
            rig.publish([trade(1, 1, 10_000, 1, ts=t0)])
            await applied(rig, 1)
            await asyncio.sleep(0.2)  # its first messages taken by the socket
            rig.publish([trade(2, 2, 10_000, 1, ts=t0 + 1_000 * DAY)])
            await applied(rig, 2)
            unsent = client.conn.transport.get_write_buffer_size()
            held = unsent + queued_bytes(client)
            bound = 4096 + client.outbox.limit * 1_024  # a kline message is ~400 bytes
            assert client.closing or held <= bound, (
                f"{held} bytes held ({unsent} unsent in the transport, write_limit 4096) "
                f"for a client that reads nothing"
            )
        finally:
            ws.transport.abort()

    run(instance, body, client_queue=16, server=TIGHT)


# -- checked: a slow consumer and its neighbour ----------------------------------------------


def test_checked_a_slow_kline_and_trade_client_is_closed_and_a_neighbour_stays_gapless(
    instance: str,
) -> None:
    """A client follows ``btc-usd@kline_1m`` and ``btc-usd@trade`` and reads nothing; a
    neighbour follows ``btc-usd@trade`` and ``btc-usd@depth`` and reads everything; trades
    (one a minute, event time) and a book level each come 10 at a time, each burst read by
    the neighbour before the next. Expected and found: the slow one is closed 1008 naming
    ``slow consumer`` and the limit (the finals queued before the trade that overflowed
    included: a trade looks at the whole queue), and the neighbour gets every trade id in
    order and depth diffs whose ``U`` continue the last ``u``."""

    async def body(rig: Rig) -> None:
        t0 = event_time_only(rig)
        slow = await silent(rig, "/stream?streams=btc-usd@kline_1m/btc-usd@trade")
        try:
            async with rig.client("/stream?streams=btc-usd@trade/btc-usd@depth") as good:
                snap = await good.until(lambda m: m.get("stream") == "btc-usd@depth")
                last_u = snap["data"]["lastUpdateId"]
                trades: list[int] = []
                seq, minute = 1, 0
                for _ in range(120):
                    burst: list[Record] = []
                    for _ in range(10):
                        ts = t0 + minute * MIN
                        burst.append(level(seq, Side.BUY, 9_000 + minute % 50, 1 + minute, ts=ts))
                        burst.append(trade(seq + 1, seq + 1, 10_000, 1, ts=ts))
                        seq, minute = seq + 2, minute + 1
                    rig.publish(burst)
                    async with asyncio.timeout(10):
                        while not trades or trades[-1] < seq - 1:
                            msg = await good.recv()
                            data = msg["data"]
                            if msg["stream"] == "heartbeat":
                                continue
                            if msg["stream"] == "btc-usd@trade":
                                trades.append(data["t"])
                            elif data["e"] == "depthUpdate":
                                assert data["U"] == last_u + 1, (data["U"], last_u)
                                last_u = data["u"]
                            else:
                                pytest.fail(f"neighbour resnapshotted: {msg['stream']}")
                    if rig.process.server.slow_closed:
                        break
                assert rig.process.server.slow_closed == 1, f"not closed after {seq} events"
                assert trades == list(range(2, seq, 2)), "the neighbour missed a trade"
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(15):
                    while True:
                        await slow.recv()
            rcvd = closed.value.rcvd
            assert rcvd is not None and rcvd.code == 1008, rcvd
            assert "slow consumer" in rcvd.reason and "limit 16" in rcvd.reason
        finally:
            slow.transport.abort()

    run(instance, body, client_queue=16, server=TIGHT)


# -- checked: what one connection may ask for ------------------------------------------------


def test_checked_subscriptions_per_connection_and_message_size_are_held(instance: str) -> None:
    """``max_subscriptions = 5``, ``max_message_bytes = 2048``. Expected and found: five
    streams taken over three requests; a sixth refused (code 4, naming 6 and 5) and none
    of that request taken; a stream already held asked again costs nothing; one freed can
    be taken again; a URL naming six streams is closed 1008; a 4 KB request closed 1009."""

    async def body(rig: Rig) -> None:
        async with rig.client() as c:
            assert "result" in await c.request("SUBSCRIBE", ["btc-usd@trade", "btc-usd@depth"])
            assert "result" in await c.request("SUBSCRIBE", ["eth-usd@trade", "eth-usd@depth"])
            assert "result" in await c.request("SUBSCRIBE", ["btc-usd@ticker", "btc-usd@trade"])
            err = await c.request("SUBSCRIBE", ["eth-usd@ticker", "btc-usd@status"])
            assert err["error"]["code"] == 2
            assert "7 subscriptions requested, at most 5" in err["error"]["msg"]
            err = await c.request("SUBSCRIBE", ["eth-usd@ticker"])
            assert "6 subscriptions requested, at most 5" in err["error"]["msg"]
            held = (await c.request("LIST_SUBSCRIPTIONS"))["result"]
            assert len(held) == 5 and "eth-usd@ticker" not in held
            assert "result" in await c.request("SUBSCRIBE", ["btc-usd@trade"])  # held already
            assert "result" in await c.request("UNSUBSCRIBE", ["btc-usd@ticker"])
            assert "result" in await c.request("SUBSCRIBE", ["eth-usd@ticker"])
            assert len((await c.request("LIST_SUBSCRIPTIONS"))["result"]) == 5
            await c.ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": "x" * 4_000}))
            with pytest.raises(ConnectionClosed) as big:
                await c.until(lambda m: False)
            assert big.value.rcvd is not None and big.value.rcvd.code == 1009
        six = "/".join(EVERY_KIND[:6])
        async with rig.client("/stream?streams=" + six) as c:
            with pytest.raises(ConnectionClosed) as many:
                await c.recv()
            assert many.value.rcvd is not None and many.value.rcvd.code == 1008
            assert "6 streams, at most 5" in many.value.rcvd.reason

    run(instance, body, max_subscriptions=5, max_message_bytes=2_048)


def test_checked_unknown_stream_names_leave_nothing_behind(instance: str) -> None:
    """Requests naming unknown symbols, kinds and intervals (alone, and beside known
    names), and a URL naming one. Expected and found: each refused naming the name (code
    3, the URL 400), no stream of the request taken, and the hub keeps no entry for any
    of them; the per-address table is empty once the refused upgrade's socket is gone."""

    async def body(rig: Rig) -> None:
        hub = rig.process.hub
        bad = ["zzz-usd@trade", "btc-usd@nope", "btc-usd@kline_2m", "btc-usd@depth7", "x" * 64]
        async with rig.client() as c:
            for k, name in enumerate(bad):
                err = await c.request("SUBSCRIBE", ["btc-usd@trade", name, f"eth-usd@{k}"])
                assert err["error"]["code"] == 2, err
                assert repr(name)[:20] in err["error"]["msg"], err
            assert (await c.request("LIST_SUBSCRIPTIONS"))["result"] == []
            assert hub._subs == {} and hub._groups == {} and hub._groups_of == {}
        with pytest.raises(InvalidStatus) as refused:
            async with rig.client("/stream?streams=btc-usd@trade/zzz@trade"):
                pass
        assert refused.value.response.status_code == 400
        async with asyncio.timeout(5):
            while rig.process.server.admitted or rig.process.server.by_address:
                await asyncio.sleep(0.01)

    run(instance, body)


# -- checked: churn ----------------------------------------------------------------------------


def test_checked_subscribe_unsubscribe_churn_leaks_nothing(instance: str) -> None:
    """100 rounds of SUBSCRIBE and UNSUBSCRIBE of every kind of stream of both symbols
    (16 streams) on one connection, with a trade and a level between rounds, and 20
    connections opened on those streams and closed. Expected and found: afterwards the
    hub's subscription tables are empty, its cached snapshots and partial levels are one
    per stream name at most, the churning client's outbox is empty, and the server's
    clients and per-address tables are back to none."""

    async def body(rig: Rig) -> None:
        hub, server = rig.process.hub, rig.process.server
        async with rig.client() as c:
            for k in range(1, 101):
                assert "result" in await c.request("SUBSCRIBE", EVERY_KIND)
                rig.publish(
                    [
                        level(2 * k, Side.SELL, 11_000 + k, 1, ts=time.time_ns()),
                        now_trade(2 * k + 1, k),
                    ]
                )
                assert "result" in await c.request("UNSUBSCRIBE", EVERY_KIND)
            assert (await c.request("LIST_SUBSCRIPTIONS"))["result"] == []
            assert hub._subs == {} and hub._groups == {} and hub._groups_of == {}
            (client,) = server.clients
            assert len(client.outbox) == 0 and client.outbox._conflated == {}
            assert client.outbox._owed == {}
        for _ in range(20):
            async with rig.client("/stream?streams=" + "/".join(EVERY_KIND)) as c:
                await c.recv()
        async with asyncio.timeout(5):
            while server.clients or server.admitted or server.by_address or server.sockets:
                await asyncio.sleep(0.01)
        assert hub._subs == {} and hub._groups == {} and hub._groups_of == {}
        assert len(hub._snapshots) <= 2 and len(hub._partials_shown) <= 4

    run(instance, body)


def test_checked_churn_from_a_client_that_reads_nothing_is_bounded(instance: str) -> None:
    """A client that reads nothing sends SUBSCRIBE and UNSUBSCRIBE of both depth streams
    (each subscription queues a snapshot, which ``push_snapshot`` never refuses) until the
    server stops reading it or closes it, while trades flow. Expected and found: its outbox
    never holds more than ``client_queue`` and one request's streams, or it is closed as
    slow; the server stops reading it (the sends block) rather than queue without end."""

    async def body(rig: Rig) -> None:
        ws = await silent(rig, "/ws")
        client = next(iter(rig.process.server.clients))
        limit = client.outbox.limit
        worst = 0

        async def churn() -> None:
            with contextlib.suppress(ConnectionClosed):
                for k in range(2_000):
                    method = "SUBSCRIBE" if k % 2 == 0 else "UNSUBSCRIBE"
                    names = ["btc-usd@depth", "eth-usd@depth", "btc-usd@trade"]
                    await ws.send(json.dumps({"method": method, "params": names, "id": k}))

        sender = asyncio.create_task(churn())
        try:
            for k in range(1, 101):
                rig.publish([now_trade(k, k)])
                worst = max(worst, len(client.outbox))
                if client.closing or sender.done():
                    break
                await asyncio.sleep(0.01)
            worst = max(worst, len(client.outbox))
            assert client.closing or worst <= limit + 3, f"{worst} queued, limit {limit}"
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            ws.transport.abort()

    run(instance, body, client_queue=16, server=TIGHT)


# -- checked: connections in total and per address -----------------------------------------------


def test_checked_connections_in_total_and_per_address_are_limited(instance: str) -> None:
    """``max_connections = 4`` (a share of 2 per address). Expected and found: a third
    from 127.0.0.1 is 503 naming "at most 2"; 127.0.0.2 takes the other two; a fifth from
    127.0.0.3 is 503 naming "4 connections open, at most 4"; once all close, the server's
    per-address tables are empty and a new client is admitted."""

    async def body(rig: Rig) -> None:
        server = rig.process.server
        held: list[ClientConnection] = []
        try:
            held += [await _from(rig, "127.0.0.1"), await _from(rig, "127.0.0.1")]
            with pytest.raises(InvalidStatus) as share:
                held.append(await _from(rig, "127.0.0.1"))
            assert share.value.response.status_code == 503
            assert b"at most 2" in (share.value.response.body or b"")
            held += [await _from(rig, "127.0.0.2"), await _from(rig, "127.0.0.2")]
            with pytest.raises(InvalidStatus) as total:
                held.append(await _from(rig, "127.0.0.3"))
            assert total.value.response.status_code == 503
            assert b"4 connections open, at most 4" in (total.value.response.body or b"")
        finally:
            for ws in held:
                await ws.close()
        async with asyncio.timeout(5):
            while server.clients or server.admitted or server.by_address:
                await asyncio.sleep(0.01)
        ws = await _from(rig, "127.0.0.3")
        await ws.close()

    run(instance, body, max_connections=4)
