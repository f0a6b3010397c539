"""One private stream's connection (``private_stream.py`` serves them): its queue of encoded
messages, the task that sends them, and its end, bounded in memory and in time.

A client is never waited for by anyone but its own sender: the gateway's loop only queues
(``push``), and a stream too far behind, or being closed, queues nothing more. A close (a slow
consumer, a key revoked, no snapshot, the gateway stopping) interrupts a sender stuck on a
socket that takes nothing, queues the close frame behind what the socket holds, and drops the
connection if the client has not taken it within the grace: aiohttp's own close, which stops
the heartbeat, would otherwise wait for that socket forever.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import msgspec
from aiohttp import WSCloseCode, web

_encode = msgspec.json.Encoder().encode


#: How long a stream being closed (a slow consumer, a key revoked, the gateway stopping)
#: waits for its client to take the close frame, queued behind what its socket holds, before
#: the connection is dropped: a client whose socket takes nothing would otherwise keep its
#: slot until the heartbeat gives up, and a close begun on it (which stops the heartbeat)
#: would wait for the socket forever.
CLOSE_GRACE_S = 10.0
#: After this long with nothing queued, a stream gets a ``heartbeat`` event (no ``seq``: it
#: is not one of the account's events), so a client can tell a live stream that has nothing
#: to say from a half-open one, which a browser's page cannot ping (review 58).
HEARTBEAT_S = 5.0


class Subscriber:
    """One stream: its queue of encoded messages, the task that sends them, and its end.

    Who calls what: the gateway's loop ``push``es (through ``PrivateStreams.deliver``) and
    may ``close``; the handler ``start``s the sender once upgraded and ``finish``es in its
    ``finally``. Nothing here blocks the caller: a socket that takes nothing stalls only
    this stream's sender, which ``close`` interrupts."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        key: str,
        account: int,
        queue_limit: int,
        transport: asyncio.Transport | None = None,
        grace_s: float = CLOSE_GRACE_S,
    ) -> None:
        self.ws = ws
        self.key = key
        self.account = account
        self.queue: deque[str] = deque()
        self.queue_limit = queue_limit
        self.transport = transport
        self.grace_s = grace_s
        self.seq = 0
        self.queued_at = time.monotonic()  # the last message queued (``beat``)
        self.ready = False  # the snapshot is queued: events may follow
        self.held: list[tuple[str, dict[str, Any]]] = []
        self.wake = asyncio.Event()
        self.cut: bytes = b""  # why the stream is being closed, once it is
        self.code: int = WSCloseCode.POLICY_VIOLATION
        self.sender: asyncio.Task[None] | None = None
        self._sending = False  # the sender waits for the socket to take a message
        self._drop: asyncio.TimerHandle | None = None
        #: done once the handler has finished (``finish``): what a shutdown waits for
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        """Upgraded: send what is queued, or the close when the stream was closed meanwhile."""
        self.sender = asyncio.create_task(self._closing() if self.cut else self._send())

    def close(self, why: bytes, code: int = WSCloseCode.POLICY_VIOLATION) -> None:
        """Close the stream with ``code`` and ``why`` after nothing more (what is queued is
        dropped); a client that has not taken the close frame within ``grace_s`` is
        dropped. Called from the gateway's loop; once only (later calls do nothing)."""
        if self.cut:
            return
        self.cut, self.code = why, code
        self.queue.clear()
        self.held.clear()
        self.wake.set()
        if self.sender is not None and self._sending:
            # stuck in the drain of a socket that takes nothing: its frame is written
            # whole already (the drain comes after), the close frame goes behind it
            self.sender.cancel()
            self.sender.add_done_callback(quietly)
            self.sender = asyncio.create_task(self._closing())
        self._drop = asyncio.get_running_loop().call_later(self.grace_s, self._abort)

    def begin(self, snapshot: dict[str, Any]) -> None:
        """The snapshot, then the events held while it was made (``push`` bounds them to
        ``queue_limit``), queued at once: the snapshot is not counted against the limit
        (review 44: exactly ``queue_limit`` held events cut the stream as too slow)."""
        if self.cut:
            return
        self.ready = True
        held, self.held = self.held, []
        for event, data in [("snapshot", snapshot), *held]:
            self.seq += 1
            self.queue.append(_encode({"event": event, "seq": self.seq, "data": data}).decode())
        self.queued_at = time.monotonic()
        self.wake.set()

    def push(self, event: str, data: dict[str, Any]) -> None:
        if self.cut:
            return
        if not self.ready:  # the snapshot is being made: these follow it
            self.held.append((event, data))
            if len(self.held) > self.queue_limit:  # memory bounded while it is made, too
                self._slow(len(self.held))
            return
        self.seq += 1
        self.queue.append(_encode({"event": event, "seq": self.seq, "data": data}).decode())
        self.queued_at = time.monotonic()
        if len(self.queue) > self.queue_limit:
            self._slow(len(self.queue))
            return
        self.wake.set()

    def beat(self, now: float) -> None:
        """A ``heartbeat`` when nothing was queued for ``HEARTBEAT_S`` (``now``: monotonic)."""
        if self.cut or not self.ready or self.queue or now - self.queued_at < HEARTBEAT_S:
            return  # (unsent messages: the socket is the slow one, not the stream quiet)
        beat = {"event": "heartbeat", "data": {"time": int(time.time() * 1000)}}
        self.queue.append(_encode(beat).decode())
        self.queued_at = now
        self.wake.set()

    def finish(self) -> None:
        """The handler is done: the drop timer is of no use any more."""
        if self._drop is not None:
            self._drop.cancel()
            self._drop = None
        if not self.ended.done():
            self.ended.set_result(None)

    def _slow(self, behind: int) -> None:
        self.close(
            f"slow consumer: {behind} messages not sent, the limit is {self.queue_limit}".encode()
        )

    def _abort(self) -> None:
        """The grace is over: the client did not take its close frame. Dropped (RST): the
        sender's drain and the handler's read end with the connection."""
        if self.transport is not None:
            self.transport.abort()

    async def _send(self) -> None:
        ws, queue, wake = self.ws, self.queue, self.wake
        while not self.cut:
            while queue and not self.cut:
                self._sending = True
                try:
                    await ws.send_str(queue.popleft())
                finally:
                    self._sending = False
            if self.cut:
                break
            await wake.wait()
            wake.clear()
        await self._closing()

    async def _closing(self) -> None:
        await self.ws.close(code=self.code, message=self.cut)


def quietly(task: asyncio.Future[None]) -> None:
    """A task given up (a sender for its close, a read at its bound): how it ended
    (cancelled, the connection lost) is of no interest, but is taken, so that asyncio does
    not log it as never retrieved. A done callback."""
    if not task.cancelled():
        task.exception()
