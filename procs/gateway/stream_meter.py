"""The private stream's client frames below the message level.

aiohttp hands a WebSocket handler whole messages only, so the frames of a message never
finished (a text frame without FIN, then empty continuation frames, 6 bytes each) reached no
count, while aiohttp parsed each on the loop every FIX and REST client shares (review 198).
``meter`` puts itself before the stream's frame parser (aiohttp's, which its connection's
protocol holds once upgraded: aiohttp is pinned in constraints.txt) and charges the stream's
frame budget with the continuation frames in the bytes as they pass: their headers read (2
to 14 bytes, RFC 6455 5.2), their payloads skipped. Past the budget, the stream's close, and
nothing more is parsed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from procs.common.token_bucket import TokenBucket

_CONTINUATION = 0x0


def meter(request: web.Request, frames: TokenBucket, over: Callable[[], None]) -> None:
    """Charge ``frames`` with the continuation frames ``request``'s client sends; ``over``
    once it refuses one."""
    protocol: Any = request.protocol
    protocol._payload_parser = _Metered(protocol._payload_parser, frames, over)


class _Metered:
    """A frame parser fed through a count of continuation frames."""

    __slots__ = ("_frames", "_over", "_parser", "_scan")

    def __init__(self, parser: Any, frames: TokenBucket, over: Callable[[], None]) -> None:
        self._parser = parser
        self._frames = frames
        self._over: Callable[[], None] | None = over
        self._scan = FrameScan()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._over is not None:
            count = self._scan.continuations(data)
            if count and not self._frames.allow(time.monotonic_ns(), count):
                over, self._over = self._over, None
                over()
        if self._over is None:  # past its budget: read no more of it
            return False, b""
        result: tuple[bool, bytes] = self._parser.feed_data(data)
        return result

    def feed_eof(self) -> None:
        self._parser.feed_eof()


class FrameScan:
    """The continuation frames of a client's byte stream, read across reads: a header cut
    by a read waits for the next; a payload is skipped, whatever reads it spans."""

    __slots__ = ("_head", "_skip")

    def __init__(self) -> None:
        self._head = b""  # a header's first bytes, cut by the end of a read
        self._skip = 0  # payload bytes of the current frame still to pass

    def continuations(self, data: bytes) -> int:
        buf = self._head + data if self._head else data
        count, pos, end = 0, 0, len(buf)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            if end - pos < 2:
                break
            first, second = buf[pos], buf[pos + 1]
            short = second & 0x7F
            ext = 2 if short == 126 else 8 if short == 127 else 0
            size = 2 + ext + (4 if second & 0x80 else 0)
            if end - pos < size:
                break
            length = int.from_bytes(buf[pos + 2 : pos + 2 + ext]) if ext else short
            count += first & 0x0F == _CONTINUATION
            pos += size
            self._skip = length
        self._head = buf[pos:]
        return count
