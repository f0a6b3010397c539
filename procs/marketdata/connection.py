"""One WebSocket connection of the market-data server as the process takes it: reading
only while its writes flow, its control frames counted, its opening handshake given the
request's head alone. ``server.py`` serves it; the limits here are the connection's own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, State

from procs.common.token_bucket import TokenBucket

#: Close code for a policy violation (RFC 6455): a slow consumer.
POLICY_VIOLATION = 1008
#: Requests a second a connection may send (a burst of this many at once: a page that
#: subscribes its streams one request each); past it, the connection closes (1008) naming the
#: limit. Each request costs the loop that fans the feed out to everyone 13-20 us (review 38),
#: and each distinct stream name in it 1-1.5 us more (parsed, subscribed, unsubscribed): a
#: request weighs one more for each ``NAMES_PER_REQUEST`` such names (review 47: 1,024-name
#: requests at 1,000 a second took the loop; a name repeated is parsed once). So many pings a
#: second too, which websockets answers at once (counted apart: a client's keepalive ping
#: never trips on its requests), and so many pongs and continuation frames (a message cut
#: into many small frames), which cost the loop a parse each though nothing is answered
#: (review 181).
MAX_REQUESTS_PER_S = 1_000
TOO_MANY_REQUESTS = (
    f"more than {MAX_REQUESTS_PER_S} requests a second: the limit is {MAX_REQUESTS_PER_S}/s"
)
#: Distinct stream names that cost the loop about what one request does.
NAMES_PER_REQUEST = 10
TOO_MANY_PINGS = (
    f"more than {MAX_REQUESTS_PER_S} pings a second: the limit is {MAX_REQUESTS_PER_S}/s"
)
#: Bytes a peer may send after its opening handshake's head before the answer (then aborted).
MAX_AFTER_HEAD = 64 * 1024
TOO_MANY_FRAMES = (
    f"more than {MAX_REQUESTS_PER_S} pong or continuation frames a second: the limit is "
    f"{MAX_REQUESTS_PER_S}/s"
)


class FlowConnection(ServerConnection):
    """A connection that reads only while its writes flow. websockets answers a ping the
    moment it reads it, straight into the transport: a peer that sends pings (or requests)
    and reads nothing would grow the server's buffer without bound. Reading pauses while
    the transport's writes are paused, as well as while websockets' own queue is full.

    While its opening handshake is answered, websockets is given the request's head only:
    what follows in the same reads (a frame pipelined with the upgrade, a CRLF or a second
    request after a GET) waits for the answer, then goes on after a 101 and is dropped after
    anything else, whose connection closes (review 200: parsed as frames at once, a pong
    went out before the 101, and a GET followed by a CRLF lost its answer)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_end = b""  # the last bytes read while the head is read: its end across reads
        self._after_head: bytes | None = None  # what came after it, until the answer
        self._queue_full = self._writes_full = False
        self.pings = TokenBucket(MAX_REQUESTS_PER_S, time.monotonic_ns())
        self.frames = TokenBucket(MAX_REQUESTS_PER_S, time.monotonic_ns())
        self.recv_messages.pause = self._pause_queue
        self.recv_messages.resume = self._resume_queue

    def data_received(self, data: bytes) -> None:
        if self.protocol.state is not State.CONNECTING:
            super().data_received(data)
        elif self._after_head is not None:  # the head is in: the rest waits for the answer
            if len(self._after_head) + len(data) > MAX_AFTER_HEAD:
                self.transport.abort()  # (a peer that floods an unanswered handshake)
                return
            self._after_head += data
        else:
            seen = self._head_end + data
            end = seen.find(b"\r\n\r\n")
            if end < 0:
                self._head_end = seen[-3:]
                super().data_received(data)
                return
            cut = end + 4 - len(self._head_end)
            self._after_head = data[cut:]
            super().data_received(data[:cut])

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().handshake(*args, **kwargs)
        finally:
            after, self._after_head = self._after_head, None
            if after and self.protocol.state is State.OPEN:
                super().data_received(after)

    def process_event(self, event: Event) -> None:
        super().process_event(event)
        if not isinstance(event, Frame) or self.protocol.state is not State.OPEN:
            return
        if event.opcode is Opcode.PING:
            bucket, reason = self.pings, TOO_MANY_PINGS  # answered already: the next are not
        elif event.opcode in (Opcode.PONG, Opcode.CONT):
            bucket, reason = self.frames, TOO_MANY_FRAMES
        else:
            return
        if not bucket.allow(time.monotonic_ns()):
            self.protocol.fail(POLICY_VIOLATION, reason)
            self.send_data()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._writes_full = True
        self._flow()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._writes_full = False
        self._flow()

    def _pause_queue(self) -> None:
        self._queue_full = True
        self._flow()

    def _resume_queue(self) -> None:
        self._queue_full = False
        self._flow()

    def _flow(self) -> None:
        if self.transport.is_closing():
            return
        if self._queue_full or self._writes_full:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()
