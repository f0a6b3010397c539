"""The wall clock as the FIX sessions read it, with its steps told apart from time passed.

A FIX session (``procs/gateway/session.py``) has one clock, the wall's: it stamps SendingTime
with the reading its timers judge by, and takes every reading from its caller (sans-I/O).
Its timers measured intervals on that clock, so a step of the host's clock (NTP's, an
operator's) forward timed out a fresh logon and aborted a client whose output had paused a
second, and one back stopped its heartbeats for the step's length (review 175).

``now_ns`` reads the wall clock and the monotonic one. When the wall has moved ``STEP_NS`` or
more against the monotonic clock since the reading before, it first tells every follower
(``follow``) by how much, and they shift the marks they measure intervals from by as much:
an interval then holds the time that passed, and stamps follow the new wall clock. Every
reading a session's mark is set from comes from here: one set from another reading after a
step, before this one saw it, would be shifted twice (the sessions take a mark past their
reading as the reading, which bounds that to an interval).

NTP's slewing moves the monotonic clock with the wall one (Linux's ``CLOCK_MONOTONIC``), so
it is never a step. A host suspended and resumed is (``CLOCK_MONOTONIC`` stops meanwhile):
the sessions' intervals then leave the suspension out, their heartbeats finding a peer
gone within an interval. A reading that finds a step takes a lock and judges again under it
(one step told once; a reading without one takes none), and a follower that raises is
logged, not let out to the reader nor in the way of the others.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Final, Protocol

log = logging.getLogger("ringex.gateway")

#: A move of the wall clock against the monotonic one taken as a step.
STEP_NS: Final = 1_000_000_000


class Follower(Protocol):
    def clock_stepped(self, step_ns: int) -> None:
        """Shift the marks intervals are measured from by ``step_ns``."""


class WallClock:
    """``now_ns``: ``time.time_ns()``, its steps told to the followers first."""

    def __init__(self) -> None:
        self._offset: int | None = None  # wall - monotonic, as of the last step
        self._followers: weakref.WeakSet[Follower] = weakref.WeakSet()
        self._lock = threading.Lock()

    def follow(self, follower: Follower) -> None:
        """``follower.clock_stepped`` is called at each step (held weakly)."""
        self._followers.add(follower)

    def now_ns(self) -> int:
        wall = time.time_ns()  # (looked up at each call: a test's patch of it holds)
        offset = self._offset
        if offset is not None and -STEP_NS < wall - time.monotonic_ns() - offset < STEP_NS:
            return wall  # no step: the lock is for one (0.19 us a reading here, 0.35 with it)
        with self._lock:  # a step (or the first reading), told once: judged again under it
            wall = time.time_ns()
            mono = time.monotonic_ns()
            if self._offset is None:
                self._offset = wall - mono
                return wall
            step = wall - mono - self._offset
            if step >= STEP_NS or step <= -STEP_NS:
                self._offset += step
                log.warning("the wall clock stepped %+.3f s: the FIX sessions' timers shift "
                            "their marks by as much", step / 1e9)  # fmt: skip
                for follower in list(self._followers):
                    try:
                        follower.clock_stepped(step)
                    except Exception:  # one follower's fault: the others still told
                        log.exception("%r could not follow the step", follower)
            return wall


#: The process's (a gateway's sessions all read it).
CLOCK: Final = WallClock()


def now_ns() -> int:
    """``CLOCK.now_ns()``: the wall clock, its steps told to the followers first."""
    return CLOCK.now_ns()
