"""The request handler of the metrics endpoint: quiet, and a deadline on the whole request.

A connection that sends no whole request head in ``timeout`` seconds is closed: each holds a
thread of the supervisor's and a descriptor (review 95: 120 idle ones held 120 threads). The
socket's own timeout bounds each read only: one dribbling a byte a second held its slot for
ever, and 16 such kept every scrape out (review 296). So each connection's deadline is kept
in the server's ``HeadDeadlines``, which the server's own loop looks at every poll
(``service_actions``) and whose late sockets it shuts down: no thread per connection for it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler


class HeadDeadlines:
    """The connections whose request line and headers are still to come, with their
    deadlines (``time.monotonic``); added and dropped by the handlers' threads, cut by the
    server's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[socket.socket, float] = {}

    def add(self, sock: socket.socket, deadline: float) -> None:
        with self._lock:
            self._due[sock] = deadline

    def discard(self, sock: socket.socket) -> None:
        with self._lock:
            self._due.pop(sock, None)

    def cut_late(self, now: float) -> None:
        """Shut down each socket past its deadline: its handler's read ends, and its thread
        closes the connection."""
        with self._lock:
            late = [sock for sock, deadline in self._due.items() if deadline <= now]
            for sock in late:
                del self._due[sock]
        for sock in late:
            with contextlib.suppress(OSError):  # closed meanwhile
                sock.shutdown(socket.SHUT_RDWR)


class ScrapeHandler(WSGIRequestHandler):
    #: The seconds a connection has to send its request line and headers.
    timeout = 10.0

    def setup(self) -> None:
        super().setup()
        self._heads().add(self.connection, time.monotonic() + self.timeout)

    def _heads(self) -> HeadDeadlines:
        heads = getattr(self.server, "heads", None)
        return heads if isinstance(heads, HeadDeadlines) else HeadDeadlines()

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # the request line and headers read: in time
        self._heads().discard(self.connection)
        return parsed

    def finish(self) -> None:
        self._heads().discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news
