"""bench-ws's load: raw-socket WebSocket clients that check every trade they get, and a slow
client (``bench_ws.py`` runs them; see its docstring)."""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any

import uvloop

BUCKET_NS = 10_000  # latency histogram resolution
BUCKETS = 300_000  # up to 3 s; slower counts in the last bucket


def handshake_request(port: int, path: str, deflate: bool) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    extensions = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extensions if deflate else ''}\r\n"
    ).encode()


@dataclass
class ClientStats:
    """What one client received and what its checks found. ``trade_messages``, ``depth``,
    ``bytes`` and ``reads`` are counted by every client, in every read: what the run reports
    as delivered is their sum over the clients, not a sample scaled up."""

    trades: int = 0  # this phase's trades accounted for (the span of ids read, in order)
    next_trade: int = 0  # the trade id expected next
    out_of_order: int = 0  # reads whose trade ids were not the ones expected next
    depth: int = 0  # depth messages received (the snapshot and the diffs)
    depth_gaps: int = 0  # depth diffs whose U was not the previous u + 1
    last_u: int = 0
    closed: int = 0  # close code received, 0 if none
    trade_messages: int = 0  # trade messages received (any from before the phase too)
    bytes: int = 0  # bytes received after the HTTP handshake: frames, headers and all
    reads: int = 0  # data_received calls after the handshake
    every_id: bool = False  # reads every trade id (else: each read's count against its span)


TRADE_ID = re.compile(rb'trade","E":\d+,"s":"[^"]*","t":(\d+),')
TRADE_TAG = b'"e":"trade"'
TRADE_TAG_AT = 5  # TRADE_ID starts at the tag's "trade"
DEPTH_TAG = b'"e":"depth'  # depthUpdate and depthSnapshot
DEPTH_IDS = re.compile(rb'"(?:U":(\d+),"u|lastUpdateId)":(\d+)')


class FeedClient(asyncio.Protocol):
    """One subscriber, as cheap as can be: the server's frames are unmasked text, so instead
    of walking frame headers the trade and update ids are found in each read with a regex
    (in C); JSON text never holds the bytes 0x88/0x89 that start close and ping frames.

    Every client counts, in each read, the trade and depth messages and the bytes it received
    (the messages with ``bytes.count`` and ``bytes.find``: C, one pass over the read each,
    ~0.4 ns a byte), and checks that its depth diffs are contiguous (tens a second: each is
    parsed). A read is cut to whole messages (a cut one is carried to the next), so the counts
    are exact: the run's delivered figures are these counts summed over every client.

    Trade ids are checked two ways. Every ``verify_every``-th client (``FULL_EVERY`` by
    default) reads every trade id of each read and checks that they are the next ones, in
    order. The others check each read's count of trades against its first and last ids
    (``bytes.count`` and two regex matches: a third of the cost or less at 16-64 trades a
    read, so the clients, which share this machine's cores with the server under test, keep
    up with 1M messages a second). That catches a gap, a repeat and a reorder across reads,
    but not a reorder inside one read, nor a gap and a repeat in the same read (count and
    span still agree); all clients get the same frames, joined once per group by the server,
    so a full client of the group would see those. The latency of every ``SAMPLE``-th trade is
    histogrammed (a different residue per client, so all fan-out positions are sampled)."""

    SAMPLE = 16
    FULL_EVERY = 10

    def __init__(self, port: int, path: str, ctx: ClientContext, index: int) -> None:
        self.port, self.path, self.ctx = port, path, ctx
        self.residue = index % self.SAMPLE
        self.full = index % ctx.verify_every == 0
        self.stats = ClientStats(next_trade=ctx.first_trade, every_id=self.full)
        self.carry = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.write(handshake_request(self.port, self.path, deflate=True))  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.carry + data if self.carry else data
        received = len(data)
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.carry = buf
                return
            head = buf[:end].decode()
            if " 101 " not in head.split("\r\n")[0] or "permessage-deflate" in head:
                self.upgraded.set_exception(RuntimeError(f"unexpected handshake: {head!r}"))
                return
            self.upgraded.set_result(None)
            buf = buf[end + 4 :]
            received = len(buf)
        ctx, s = self.ctx, self.stats
        s.bytes += received
        s.reads += 1
        if buf.endswith(b"}}"):  # ends with a whole message
            self.carry = b""
        else:
            cut = buf.rfind(b'{"stream":')
            self.carry, buf = (buf[cut:], buf[:cut]) if cut > 0 else (buf, b"")
        if b"\x89" in buf or b"\x88" in buf:
            self.control(buf)
        span = self.trades(buf)
        if span is not None:
            first, last = span
            s.next_trade = last + 1
            s.trades += last - first + 1
            stamps, hist, k = ctx.stamps, ctx.hist, self.residue
            for t in range(first + (k - first) % self.SAMPLE, last + 1, self.SAMPLE):
                lat = (now - stamps[t]) // BUCKET_NS
                hist[lat if lat < BUCKETS else BUCKETS - 1] += 1
            if last == ctx.last_trade:
                ctx.finished += 1
        at = buf.find(DEPTH_TAG)  # a few depth messages among the trades: find, then match
        while at >= 0:
            m = DEPTH_IDS.search(buf, at)
            at = buf.find(DEPTH_TAG, at + 1)
            s.depth += 1
            if m is None:
                s.depth_gaps += 1  # a depth message without its ids: nothing to chain from
                continue
            first_u, last_u = m.groups()
            u = int(last_u)
            if first_u and s.last_u and int(first_u) != s.last_u + 1:
                s.depth_gaps += 1
            s.last_u = u

    def trades(self, buf: bytes) -> tuple[int, int] | None:
        """The first and last ids of this phase's trades in ``buf``, None if none; counts
        ``buf``'s trade messages, and a read out of order unless they are the ids expected
        next, all of them (a full client) or as many as their span (the others)."""
        s, first_trade = self.stats, self.ctx.first_trade
        n = buf.count(TRADE_TAG)
        if not n:
            return None
        s.trade_messages += n
        if not self.full:
            head = TRADE_ID.search(buf)
            tail = TRADE_ID.match(buf, buf.rfind(TRADE_TAG) + TRADE_TAG_AT)
            if head is not None and tail is not None:
                first, last = int(head.group(1)), int(tail.group(1))
                if first >= first_trade:  # else: a trade from before the phase, read it all
                    if first != s.next_trade or last != first + n - 1:
                        s.out_of_order += 1
                    return first, last
        found = TRADE_ID.findall(buf)
        if len(found) != n:  # a trade message whose id does not read
            s.out_of_order += 1
        ids = [int(t) for t in found]
        if ids and ids[0] < first_trade:
            ids = [t for t in ids if t >= first_trade]
        if not ids:
            return None
        first, n = ids[0], len(ids)
        if first != s.next_trade or ids != list(range(first, first + n)):
            s.out_of_order += 1
        return first, ids[-1]

    def control(self, buf: bytes) -> None:
        """Answer pings (a pong masked with a zero key) and note a close frame's code."""
        at = buf.find(b"\x89\x04")
        if at >= 0 and self.transport is not None and len(buf) >= at + 6:
            self.transport.write(b"\x8a\x84\0\0\0\0" + buf[at + 2 : at + 6])
        at = buf.find(b"\x88")
        # 0x88 is also the low byte of a 136-byte message's length, followed by '{'
        while at >= 0 and not (len(buf) >= at + 4 and 2 <= buf[at + 1] <= 125 and buf[at + 2] < 20):
            at = buf.find(b"\x88", at + 1)
        if at >= 0:
            self.stats.closed = int.from_bytes(buf[at + 2 : at + 4], "big")


@dataclass
class ClientContext:
    first_trade: int
    last_trade: int
    stamps: Any  # the shared ctypes array: trade id -> ts_ns
    hist: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    finished: int = 0
    verify_every: int = FeedClient.FULL_EVERY  # every n-th client reads every trade id


def run_clients(
    port: int,
    count: int,
    trades: tuple[int, int],
    stamps: SynchronizedArray[int],
    ready: Any,
    go: Any,
    results: Any,
    timeout_s: float,
    verify_every: int = FeedClient.FULL_EVERY,
) -> None:
    """A client process: connect ``count`` clients, report ready, read until every client
    saw the last trade (or ``timeout_s``), then send back stats and the latency histogram.
    Every ``verify_every``-th client reads every trade id (``FeedClient``)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ctx = ClientContext(trades[0], trades[1], stamps.get_obj(), verify_every=verify_every)
        clients: list[FeedClient] = []
        path = "/stream?streams=btc-usd@trade/btc-usd@depth"
        for k in range(count):
            _, client = await loop.create_connection(
                functools.partial(FeedClient, port, path, ctx, k), "127.0.0.1", port
            )
            await client.upgraded
            clients.append(client)
            if k % 50 == 49:
                await asyncio.sleep(0)
        ready.put(count)
        await loop.run_in_executor(None, go.wait)
        cpu0 = time.process_time()
        deadline = time.monotonic() + timeout_s
        while ctx.finished < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for c in clients:
            assert c.transport is not None
            c.transport.abort()
        results.put(([c.stats.__dict__ for c in clients], ctx.hist, time.process_time() - cpu0))

    uvloop.run(main())


class SlowClient:
    """Subscribes, then stalls for ``STALL_S`` at a time, catching up between stalls: a client
    on a link that comes and goes. It connects as a client on a real network would: a small
    receive buffer and a 1400-byte MSS. On loopback the MSS is 64 KiB, and the kernel sizes
    a connection's send buffer from it (two congestion windows of segments: over a megabyte
    from the start), so a stalled loopback client hides seconds of this feed in the kernel
    before the server's outbox sees it; with real segments a stall fills the outbox within
    one, and the server should close it with 1008. The catching up reads the close frame
    before the server's close timeout (2 s) gives up on it: a client that never read would
    be aborted with the frame unread."""

    def __init__(self, port: int) -> None:
        self.sock = sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
        sock.connect(("127.0.0.1", port))
        sock.sendall(handshake_request(port, "/stream?streams=btc-usd@trade/btc-usd@depth", False))
        self.data = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        sock = self.sock
        try:
            while True:
                time.sleep(STALL_S)
                sock.settimeout(0.2)  # catch up: read until the server pauses
                try:
                    while part := sock.recv(1 << 20):
                        self.data += part
                    return  # closed by the server
                except TimeoutError:
                    continue
        except OSError:
            pass

    def close_code(self) -> int:
        """Wait for the server to close it (or a few stalls); the close code it sent."""
        self.reader.join(3 * STALL_S)
        self.sock.close()
        return close_code(bytes(self.data))


#: How long the slow client stops reading at a time.
STALL_S = 2.5


def close_code(data: bytes) -> int:
    """The close code in a client's received bytes (after the HTTP response; 0: none)."""
    i = data.find(b"\r\n\r\n") + 4
    code = 0
    while len(data) - i >= 2:
        b0, n = data[i], data[i + 1] & 0x7F
        start = i + 2
        if n == 126:
            n, start = int.from_bytes(data[i + 2 : i + 4], "big"), i + 4
        elif n == 127:
            n, start = int.from_bytes(data[i + 2 : i + 10], "big"), i + 10
        if b0 & 0x0F == 8 and start + 2 <= len(data):
            code = int.from_bytes(data[start : start + 2], "big")
        i = start + n
    return code
