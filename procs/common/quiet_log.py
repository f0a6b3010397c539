"""Log records a client can cause, kept to a few lines a minute of bounded size.

A log line per bad request is a disk anyone can fill: aiohttp logs each malformed HTTP
request at ERROR with a traceback that echoes the request (16.5 KB for an 8 KB header; one
client reconnecting in a loop wrote 20 MB/s, review 38), a WebSocket upgrade's unknown
subprotocols as a WARNING that echoes them, and a history query that fails while the
database is down would log once per request. ``QuietFilter`` on such a logger lets
``burst`` records through per ``period_s``, each cut to ``max_chars`` (its traceback to
three times that),
and says on the next one let through how many it dropped. The standard library has no
rate-limited filter; this is the whole of one.
"""

from __future__ import annotations

import logging
import time

#: How much of a record's message, and of its traceback, is kept (characters).
MAX_CHARS = 300


class QuietFilter(logging.Filter):
    """At most ``burst`` records per ``period_s`` (monotonic), each cut short; a count of
    those dropped goes with the next one let through."""

    def __init__(self, burst: int = 1, period_s: float = 60.0, max_chars: int = MAX_CHARS):
        super().__init__()
        if burst < 1 or period_s <= 0 or max_chars < 40:
            raise ValueError(
                f"QuietFilter(burst={burst}, period_s={period_s}, max_chars={max_chars}): "
                "burst >= 1, period_s > 0 and max_chars >= 40"
            )
        self.burst, self.period_s, self.max_chars = burst, period_s, max_chars
        self._window = -float("inf")  # when the current period began
        self._passed = 0  # records let through in it
        self.dropped = 0  # since the last one let through

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._window >= self.period_s:
            self._window, self._passed = now, 0
        if self._passed >= self.burst:
            self.dropped += 1
            return False
        self._passed += 1
        # the count of those dropped is kept within max_chars too (review 124)
        note = f" ({self.dropped} more like it dropped)" if self.dropped else ""
        message = _cut(_cut(record.getMessage(), self.max_chars - len(note)) + note, self.max_chars)
        self.dropped = 0
        record.msg, record.args = message, None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            lines = [_cut(line, 120) for line in text.splitlines()]
            record.exc_info, record.exc_text = None, _cut("\n".join(lines), self.max_chars * 3)
        return True


def quieten(logger: logging.Logger, burst: int = 1, period_s: float = 60.0) -> None:
    """Put a ``QuietFilter`` on ``logger`` unless it has one (a process's edges may call it
    more than once: a gateway's REST API is made once per test)."""
    if not any(isinstance(f, QuietFilter) for f in logger.filters):
        logger.addFilter(QuietFilter(burst, period_s))


def _cut(text: str, limit: int) -> str:
    """``text`` in ``limit`` characters, saying how long it was (where the saying does not
    fit in the limit, the text cut to it: never longer, review 188)."""
    if len(text) <= limit:
        return text
    tail = f"... ({len(text)} chars)"
    if len(tail) > limit:  # the saying alone is too long: the text cut, as much as fits
        return text[:limit]
    return text[: limit - len(tail)] + tail
