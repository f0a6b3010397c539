"""Commit sealed batches on a thread of their own, so the writer builds batch N+1 while
PostgreSQL works on batch N.

Per trade the writer spends ~3.6 us in Python (decode, replay, projection, sealing) and the
server ~7 us on COPY and the inserts (the bench-db profile); done one after the other the two
add up. Here the database's part runs while the main thread goes on reading the journal:
psycopg releases the GIL while libpq waits on the server, so the overlap is real even in
one process.

At most one batch waits and one is in flight: the writer is never more than two batches
ahead of the checkpoint, and ``submit`` blocks (backpressure) when both places are taken.
Batches are committed in order, each with its checkpoint, by ``write`` (the writer's
retrying ``PgStore.write``), so exactly-once is the store's as before. An exception in the
thread stops it; the next ``submit`` or ``drain`` raises it in the writer's thread. Whoever
else needs the connection (the users sync, a snapshot) calls ``drain`` first: the connection
is only ever used by one thread at a time.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from procs.dbwriter.projection import Batch

#: The GIL hand-over interval for a process with a committer. At CPython's default (5 ms)
#: the committer, back from a libpq wait, waits up to 5 ms for the busy main thread to let go
#: of the GIL, once per round trip (several a batch): bench-db measured the pipelined writer
#: slower than the serial one (44k vs 59k trades/s); at 1 ms, faster (89k vs 54k) on the
#: same noisy machine.
SWITCH_INTERVAL_S = 0.001


def share_the_gil() -> None:
    """Make the GIL change hands often enough for the committer's round trips."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


class Committer:
    def __init__(self, write: Callable[[Batch], object]) -> None:
        self._write = write
        self._cv = threading.Condition()
        self._waiting: Batch | None = None
        self._busy = False
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="ringex-db-commit", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch) -> None:
        """Queue ``batch`` behind the one in flight; blocks while another already waits."""
        with self._cv:
            while self._waiting is not None and self._error is None:
                self._cv.wait()
            self._raise()
            self._waiting = batch
            self._cv.notify_all()

    def drain(self) -> None:
        """Return once every submitted batch is committed (or raise what stopped them)."""
        with self._cv:
            while (self._waiting is not None or self._busy) and self._error is None:
                self._cv.wait()
            self._raise()

    def close(self) -> None:
        """Stop the thread (after the batch in flight); what still waits is not written."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:  # sticky: a stopped committer is replaced, not reused
            raise self._error

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._waiting is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                batch, self._waiting, self._busy = self._waiting, None, True
                self._cv.notify_all()
            try:
                assert batch is not None
                self._write(batch)
            except BaseException as exc:  # handed to the writer's thread, which decides
                with self._cv:
                    self._error, self._busy = exc, False
                    self._closed = True
                    self._cv.notify_all()
                return
            with self._cv:
                self._busy = False
                self._cv.notify_all()
