"""Where the router's time goes: what it counts into its metrics page (``stats-router``,
``procs/common/stats.py``), so that a pipeline that falls short says whether the sequencer
is the stage it waits on (busy near all the time) or waits itself, and on what.

Each wait is timed where it happens (``waited``), and the journal counts its inline fsyncs;
the rest of the loop is busy. The page is stored at most once a millisecond: under light
load a round takes one command, and a store a round would cost about as much as deciding
it. A restarted router goes on from the page's counts, so they only grow while the
instance runs."""

from __future__ import annotations

import time
from array import array

from procs.common.stats import ROUTER_COUNTERS, ROUTER_PAGE
from shm.counters import Counters

COMMANDS, EVENTS, BUSY, IDLE, BEHIND, FULL, FSYNC, STANDBY = range(len(ROUTER_COUNTERS))

#: The longest the page lags what the router counted (ns).
STORE_EVERY_NS = 1_000_000


class TimeUse:
    """The router's counts and its time by state; ``step_done`` closes each loop round."""

    def __init__(self, instance: str) -> None:
        self.page = Counters.open(instance, ROUTER_PAGE, ROUTER_COUNTERS)
        self.values = self.page.values.tolist()  # a restarted router goes on from them
        self._began = time.perf_counter_ns()
        self._waited = 0  # this round's timed waits
        self._fsync_seen = 0  # the journal's inline fsync time, as last seen
        self._store_due = 0
        self._closed = False

    def begin(self, inline_fsync_ns: int) -> None:
        """The loop starts (recovery before it is no round's), the journal's inline fsyncs
        having taken ``inline_fsync_ns`` so far."""
        self._began, self._waited = time.perf_counter_ns(), 0
        self._fsync_seen = inline_fsync_ns

    def waited(self, state: int, since_ns: int) -> None:
        """A wait in ``state`` (IDLE, BEHIND, FULL, FSYNC or STANDBY) that began at
        ``since_ns`` has ended."""
        now = time.perf_counter_ns()
        ns = now - since_ns
        self.values[state] += ns
        self._waited += ns
        self._maybe_store(now)  # a long round (a matcher's full ring) is shown meanwhile

    def step_done(self, commands: int, inline_fsync_ns: int) -> None:
        """A round of the router's loop ended, having taken ``commands``; the journal's
        inline fsyncs have taken ``inline_fsync_ns`` in all (``JournalWriter``)."""
        now = time.perf_counter_ns()
        values = self.values
        fsync, self._fsync_seen = inline_fsync_ns - self._fsync_seen, inline_fsync_ns
        values[COMMANDS] += commands
        values[FSYNC] += fsync
        values[BUSY] += max(0, now - self._began - self._waited - fsync)
        self._began, self._waited = now, 0
        self._maybe_store(now)

    def _maybe_store(self, now: int) -> None:
        if now >= self._store_due:
            self._store_due = now + STORE_EVERY_NS
            self.store()

    def settled(self, events: int) -> None:
        self.values[EVENTS] += events

    def store(self) -> None:
        self.page.values[:] = array("Q", self.values)

    def close(self) -> None:
        """Store the counts and release the page; once (a router's close may run twice)."""
        if not self._closed:
            self._closed = True
            self.store()
            self.page.close()
