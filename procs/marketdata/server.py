"""The WebSocket server: connections, their requests, and the writes to their sockets.

The thin asyncio edge around ``Hub`` (who gets what) and ``Outbox`` (a slow client's queue).
A message goes straight into a client's socket while the socket keeps up (its transport
buffer is under ``write_limit`` and nothing is queued: no task switch per message, as
websockets' ``broadcast`` does, and better: a whole batch's frames, the same bytes for
every client of a group, in one write); otherwise it waits in the client's ``Outbox`` and
the client's own sender task drains it at the socket's pace. So one slow client costs the others
nothing: fan-out never awaits a socket.

Endpoints on one port: ``/ws`` (subscribe by request), ``/ws/<stream>`` and
``/stream?streams=a/b`` (subscribed at connect), and, for a plain HTTP GET, the page and its
API (``web.Site``). Messages larger than ``max_message_bytes`` close the connection (1009,
websockets' limit); any other malformed request is answered with an error and the
connection stays open.
"""

from __future__ import annotations

import asyncio
import http
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import parse_qs

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from config.edges import MarketDataConfig
from procs.common.open_files import connections_room
from procs.common.task_end import wait_ended
from procs.common.token_bucket import TokenBucket
from procs.marketdata import messages
from procs.marketdata.connection import (
    MAX_REQUESTS_PER_S,
    NAMES_PER_REQUEST,
    POLICY_VIOLATION,
    TOO_MANY_REQUESTS,
    FlowConnection,
)
from procs.marketdata.hub import Hub, Message
from procs.marketdata.outbox import Outbox
from procs.marketdata.requests import (
    ErrorCode,
    RequestError,
    cut,
    error,
    parse_request,
    result,
)
from procs.marketdata.streams import Kind, Stream, StreamError, parse_stream
from procs.marketdata.web import Site, split_target, text

log = logging.getLogger("ringex.marketdata")

#: Seconds a stop gives the open connections to take their 1001 close frames (then aborted).
STOP_GRACE_S = 2.0


class Client:
    """One connection: its subscriptions, its outbox, and its sender task."""

    def __init__(self, conn: ServerConnection, server: MarketDataServer) -> None:
        self.conn = conn
        self.server = server
        self.streams: set[str] = set()
        self.outbox = Outbox(server.cfg.client_queue, server.hub.depth_snapshot)
        self._wake = asyncio.Event()
        self._sending = False
        self.closing = False
        self._transport = conn.transport
        self._write_limit = server.write_limit
        # The hub's frames fit only a connection without extensions (no per-message deflate).
        self._shared_frames = not conn.protocol.extensions

    def deliver(self, messages: Sequence[Message], frames: bytes) -> None:
        if self.closing:
            return
        if self._direct():  # (past the limit by one batch at most: a gap's candles are few)
            if self._shared_frames:
                # Straight to the transport: websockets' protocol keeps no state about data
                # frames sent whole, and its own writes (pings, close) go between ours.
                self._transport.write(frames)
            else:
                broadcast((self.conn,), messages[0].payload, text=True)
                for message in messages[1:]:
                    broadcast((self.conn,), message.payload, text=True)
            return
        push = self.outbox.push
        for message in messages:
            reason = push(message.kind, message.stream, message.payload, message.final)
            if reason is not None:
                self.close_slow(reason)
                return
        self.outbox.settle()  # a snapshot a full queue owes goes after the batch it shows
        self._wake.set()

    def deliver_snapshot(self, stream: str, payload: bytes) -> None:
        if self.closing:
            return
        if self._direct():
            broadcast((self.conn,), payload, text=True)
            return
        self.outbox.push_snapshot(stream, payload)
        self._wake.set()

    def reply(self, payload: bytes) -> None:
        """An answer to a request: in order after what is queued, never dropped (a client
        whose answers pile up past its queue's limit is closed instead)."""
        if self.closing:
            return
        if self._direct():
            broadcast((self.conn,), payload, text=True)
            return
        reason = self.outbox.push_reply(payload)
        if reason is not None:
            self.close_slow(reason)
            return
        self._wake.set()

    def _direct(self) -> bool:
        """True when a message may go straight to the socket: nothing is ahead of it."""
        return not self._sending and not self.outbox and self._writable()

    def _writable(self) -> bool:
        return (
            self.conn.protocol.state is State.OPEN
            and self._transport.get_write_buffer_size() < self._write_limit
        )

    async def sender(self) -> None:
        """Drain the outbox at the socket's pace (``send`` awaits the transport's drain).

        A socket that takes nothing for ``stall_s`` (a peer that stopped reading) is
        aborted: its close frame could not get out either, and websockets' own keepalive
        cannot notice, since its ping waits behind the same full buffer."""
        outbox, wake, conn = self.outbox, self._wake, self.conn
        stall_s = self.server.stall_s
        while not self.closing:
            payload = outbox.pop()
            if payload is None:
                wake.clear()
                await wake.wait()
                continue
            self._sending = True
            try:
                async with asyncio.timeout(stall_s):  # (wait_for could lose a cancel: wire.py)
                    await conn.send(payload, text=True)
            except TimeoutError:
                log.info("dropping %s: nothing sent for %.1f s", conn.remote_address, stall_s)
                self.closing = True
                self.server.hub.remove(self)
                self.server.stalled += 1
                self._transport.abort()
                return
            finally:
                self._sending = False

    def close_slow(self, reason: str) -> None:
        self.closing = True
        self.server.hub.remove(self)
        self.server.slow_closed += 1
        log.info("closing %s: %s", self.conn.remote_address, reason)
        self._wake.set()
        # Its close frame waits behind what the socket holds: give a client that is behind
        # (by definition) time to read up to it and learn why, not the usual 2 s.
        self.conn.close_timeout = self.server.slow_close_s
        # A close reason is at most 123 bytes (RFC 6455).
        reason_bytes = reason.encode()[:123].decode(errors="ignore")
        self.server.spawn(self._close_within(reason_bytes, self.server.slow_close_s))

    async def _close_within(self, reason: str, limit_s: float) -> None:
        """Close with 1008, or drop the socket when that takes longer than ``limit_s``: the
        sender, whose stall timer drops a socket that takes nothing, has stopped, and
        ``close`` can wait in the drain of a full socket with no deadline (so can the
        keepalive, its ping behind the same buffer)."""
        try:
            async with asyncio.timeout(limit_s):
                await self.conn.close(POLICY_VIOLATION, reason)
        except TimeoutError:
            log.info("dropping %s: its 1008 not read in %.1f s", self.conn.remote_address, limit_s)
            self.server.stalled += 1
            self._transport.abort()


class MarketDataServer:
    def __init__(
        self,
        hub: Hub,
        site: Site,
        cfg: MarketDataConfig,
        *,
        heartbeat_s: float = 5.0,
        ping_interval_s: float | None = 20.0,
        write_limit: int = 1 << 16,
        send_buffer: int | None = None,
        compression: str | None = None,
    ) -> None:
        """``write_limit``: bytes buffered in user space per socket before messages queue in
        the client's outbox; ``send_buffer``: the kernel's SO_SNDBUF per connection (None:
        the OS's autotuned default, megabytes on Linux). Both bound how long a stalled
        client takes to be noticed and how much memory it holds. ``compression``:
        "deflate" to accept permessage-deflate; off by default, since it compresses every
        message once per client, with a compressor of tens of KB each, where uncompressed
        the same frame bytes go to every client."""
        self.hub = hub
        self.site = site
        self.cfg = cfg
        self.heartbeat_s = heartbeat_s
        self.ping_interval_s = ping_interval_s
        self.write_limit = write_limit
        self.send_buffer = send_buffer
        self.compression = compression
        self.clients: set[Client] = set()
        #: A socket that takes nothing this long is aborted (``Client.sender``); a slow
        #: consumer closed with 1008 gets ``slow_close_s`` (as long, 2 s at least; 10 s
        #: without pings) to read up to the close frame.
        self.stall_s = 2 * ping_interval_s if ping_interval_s else None
        self.slow_close_s = max(2.0, self.stall_s or 10.0)
        self.slow_closed = 0
        self.stalled = 0
        self.refused = 0
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.max_connections = cfg.max_connections  # what fits the descriptors (``start``)
        #: the sockets held from their accept (handshakes too: ``_counted``), in all and by
        #: address, each bounded
        self.by_address: dict[str, int] = {}
        self.sockets = 0
        #: the connections of an address whose handshakes were admitted (``per_address``),
        #: from then until they end: sockets still in their handshakes do not count against
        #: their share (review 200: three opened at once with a share of 2 heard 503 each)
        self.admitted: dict[str, set[ServerConnection]] = {}

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def per_address(self) -> int:
        """Clients one address may hold (``max_connections_per_address``, else a quarter of
        ``max_connections``, two at least, and never more than ``max_connections``)."""
        quarter = min(self.max_connections, max(2, self.max_connections // 4))
        return self.cfg.max_connections_per_address or quarter

    @property
    def max_sockets(self) -> int:
        """Sockets held from their accept, handshakes included: the clients' limit and a
        margin in which a handshake past it still hears its 503."""
        return self.max_connections + _margin(self.max_connections)

    @property
    def max_sockets_per_address(self) -> int:
        """Sockets one address may hold from their accept: its clients' share and the same
        kind of margin, so one peer's silent handshakes cannot take every socket until their
        ``open_timeout`` (the total's limit alone let them)."""
        return self.per_address + _margin(self.per_address)

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (useful with port 0)."""
        self.max_connections = connections_room(self.cfg.max_connections)
        self._server = await serve(
            self._handler,
            host,
            port,
            process_request=self._process_request,
            max_size=self.cfg.max_message_bytes,
            ping_interval=self.ping_interval_s,
            ping_timeout=self.ping_interval_s,
            write_limit=self.write_limit,
            compression=self.compression,
            close_timeout=2,
            create_connection=_counted(self),
        )
        self.spawn(self._heartbeats())
        sock = next(iter(self._server.sockets))
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        """Close every connection with 1001 (going away), all given ``STOP_GRACE_S`` to
        take their close frames; then abort what is left. A client that stopped reading holds
        its close frame behind a full socket: websockets' close of it took 5 s (its
        ``close_timeout`` 2 s), and the server's ``wait_closed`` has no deadline of its own."""
        if self._server is not None:
            self._server.close()
            if not await _within(self._server.wait_closed(), STOP_GRACE_S):
                stuck = list(self._server.all_connections)
                log.warning("%d connection(s) did not close in %.0f s: aborted",
                            len(stuck), STOP_GRACE_S)  # fmt: skip
                for connection in stuck:
                    connection.transport.abort()
                if not await _within(self._server.wait_closed(), STOP_GRACE_S):
                    log.warning("the feed's connection handlers did not return: stopped")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # gather, not each awaited under suppress(CancelledError): that swallowed this
        # stop's own cancel (review 166), overrunning a timeout around it
        await asyncio.gather(*tasks, return_exceptions=True)

    def spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            message = Message(Kind.HEARTBEAT, "heartbeat", messages.heartbeat(time.time_ns()))
            self.hub.fan_out(list(self.clients), message)

    # -- handshake ------------------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        upgrade = request.headers.get_all("Upgrade")
        if len(upgrade) > 1:
            why = f"Upgrade header sent {len(upgrade)} times, once at most"
            return text(http.HTTPStatus.BAD_REQUEST, why)
        if not upgrade or upgrade[0].lower() != "websocket":
            return _http(self.site.get, request)
        if request.headers.get("Sec-WebSocket-Version", "13") != "13":  # RFC 6455 4.4
            answer = text(http.HTTPStatus.UPGRADE_REQUIRED, "only WebSocket version 13 is served")
            answer.headers["Sec-WebSocket-Version"] = "13"  # (review 200: a bare 400 before)
            return answer
        if len(self.clients) >= self.max_connections:
            self.refused += 1
            return text(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                f"{len(self.clients)} connections open, at most {self.max_connections}",
            )
        admitted = self.admitted.setdefault(_address(conn), set())
        if len(admitted) + 1 > self.per_address:  # this one's included
            self.refused += 1
            return text(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                f"{len(admitted) + 1} connections from this address open, at most "
                f"{self.per_address}",
            )
        try:
            self._path_streams(request.path)
        except StreamError as exc:
            return text(http.HTTPStatus.BAD_REQUEST, str(exc))
        admitted.add(conn)
        return None

    def _path_streams(self, target: str) -> list[Stream]:
        """The streams a connection's URL subscribes it to, each once; raises StreamError."""
        parts = split_target(target)
        symbols = self.hub.symbols
        if parts.path == "/stream":
            query = parse_qs(parts.query, keep_blank_values=True)
            if "streams" not in query:
                return []  # combined, subscribed later by request (as the venue's connectors do)
            if len(query["streams"]) > 1:  # which copy counts is no guess to make (review 304)
                raise StreamError(
                    f"parameter 'streams' is sent {len(query['streams'])} times, once at most"
                )
            names = query["streams"][0]
            if not names:
                raise StreamError(
                    "/stream needs ?streams=<stream>/<stream>... naming one at least (or no "
                    "streams parameter, then SUBSCRIBE)"
                )
        elif parts.path in ("/ws", "/ws/"):
            return []
        elif parts.path.startswith("/ws/"):
            names = parts.path[4:]
        else:
            raise StreamError(
                f"no WebSocket endpoint at {cut(parts.path)} (/ws, /ws/<stream>, /stream)"
            )
        streams = [parse_stream(n, symbols) for n in names.split("/")]
        return list({s.name: s for s in streams}.values())  # a name twice is one stream

    # -- a connection ---------------------------------------------------------------------

    async def _handler(self, conn: ServerConnection) -> None:
        if self.send_buffer is not None:
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        client = Client(conn, self)
        self.clients.add(client)
        sender = asyncio.create_task(client.sender())
        try:
            assert conn.request is not None
            streams = self._path_streams(conn.request.path)
            if len(streams) > self.hub.max_subscriptions:
                await conn.close(
                    POLICY_VIOLATION,
                    f"{len(streams)} streams, at most {self.hub.max_subscriptions}",
                )
                return
            self.hub.subscribe(client, streams)
            requests = TokenBucket(MAX_REQUESTS_PER_S, time.monotonic_ns())
            async for message in conn:
                now = time.monotonic_ns()
                if not requests.allow(now):  # 13-20 us of the shared loop each
                    await conn.close(POLICY_VIOLATION, TOO_MANY_REQUESTS)
                    return
                names = self._on_message(client, message)
                if names >= NAMES_PER_REQUEST:  # the rest of its weight, spent after the fact
                    requests.charge(names // NAMES_PER_REQUEST, now)
        except ConnectionClosed:
            pass
        finally:
            client.closing = True
            self.hub.remove(client)
            self.clients.discard(client)
            sender.cancel()
            await wait_ended(sender, ConnectionClosed)

    def _on_message(self, client: Client, message: str | bytes) -> int:
        """Answer one request; returns its weight: the distinct stream names it carried
        (parsed), 1 for a ``LIST_SUBSCRIPTIONS``, 0 for a closing client's."""
        if client.closing:  # closed as slow: its requests change nothing any more
            return 0
        request_id = None
        names = 0
        try:
            request = parse_request(message, self.hub.symbols)
            request_id, names = request.id, len(request.streams)
            if request.method == "SUBSCRIBE":
                self.hub.check_subscribe(client, request.streams)
                client.reply(result(request_id))  # the answer first, then the snapshots
                if not client.closing:  # the answer did not fit: closed as slow, not subscribed
                    self.hub.subscribe(client, request.streams)
                return len(request.streams)
            if request.method == "UNSUBSCRIBE":
                held = {s.name for s in request.streams} & client.streams
                self.hub.unsubscribe(client, request.streams)
                client.outbox.discard_all(held)  # (names it did not hold: nothing queued)
                client.reply(result(request_id))
                return len(request.streams)
            client.reply(result(request_id, sorted(client.streams)))
            return 1
        except RequestError as exc:
            rid = exc.request_id if exc.request_id is not None else request_id
            client.reply(error(exc.code, str(exc), rid))
            return names or exc.names  # parsed, then refused (too many): its names were read


__all__ = ["POLICY_VIOLATION", "Client", "ErrorCode", "MarketDataServer"]


def _address(conn: ServerConnection) -> str:
    peer = conn.remote_address
    return str(peer[0]) if isinstance(peer, tuple) else ""


async def _within(waited: Coroutine[Any, Any, None], seconds: float) -> bool:
    """Await ``waited`` for ``seconds`` at most; whether it ended."""
    try:
        async with asyncio.timeout(seconds):
            await waited
    except TimeoutError:
        return False
    return True


def _margin(limit: int) -> int:
    """Sockets past ``limit`` whose handshakes still hear their 503: 1 to 16."""
    return max(1, min(16, limit // 4))


def _counted(server: MarketDataServer) -> type[FlowConnection]:
    """``FlowConnection`` counted in ``server.sockets`` and ``server.by_address`` from its
    accept: a socket past ``max_sockets``, or past ``max_sockets_per_address`` of its own
    address, is aborted at once. (websockets counts nothing until a handshake is done, and
    holds one for its ``open_timeout``: review 38 held 40 silent sockets against
    ``max_connections = 8``.)"""

    class Counted(FlowConnection):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            server.sockets += 1
            peer = transport.get_extra_info("peername")
            self.counted_as = str(peer[0]) if isinstance(peer, tuple) else ""
            by_address = server.by_address
            mine = by_address[self.counted_as] = by_address.get(self.counted_as, 0) + 1
            if server.sockets > server.max_sockets or mine > server.max_sockets_per_address:
                server.refused += 1
                transport.abort()  # type: ignore[attr-defined]  # a TCP transport

        def connection_lost(self, exc: Exception | None) -> None:
            server.sockets -= 1
            by_address = server.by_address
            if by_address[self.counted_as] > 1:
                by_address[self.counted_as] -= 1
            else:
                del by_address[self.counted_as]
            admitted = server.admitted.get(self.counted_as)
            if admitted is not None:
                admitted.discard(self)
                if not admitted:
                    del server.admitted[self.counted_as]
            super().connection_lost(exc)

    return Counted


def _http(get: Callable[[str], Response], request: Request) -> Response:
    """A plain HTTP request: GET as the site answers it, HEAD the same with no body, any
    other method 405 (RFC 9110)."""
    method = request.method
    if method in ("GET", "HEAD"):
        answer = get(request.path)
        if method == "HEAD":
            answer = Response(answer.status_code, answer.reason_phrase, answer.headers, b"")
        return answer
    answer = text(http.HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not served here: GET, HEAD")
    answer.headers["Allow"] = "GET, HEAD"
    return answer
