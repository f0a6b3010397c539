"""Deadlines of the REST requests waiting for the exchange's answer, on one loop timer.

A timer per request (``loop.call_later`` when it begins, ``cancel`` when its answer comes)
cost the gateway about a microsecond a request, ~1% of its CPU at 10k requests/s, and
nearly every one of those timers is cancelled unfired. Here a request's deadline is an entry
in a dict of the requests in flight (a few dozen, thousands under overload), dropped with
its answer, and one timer stands for the earliest: when it fires, the requests past their
deadline time out, and it is set again for the earliest of the rest. A deadline earlier
than the timer's (a shorter wait: a balance push) sets it again at once, so every request
times out when its own deadline passes, as with a timer each, or up to ``RESOLUTION_S``
later: after it fires, the timer is set no sooner than that, so that thousands of requests
timing out a few microseconds apart (a stalled exchange) cost one pass over the requests in
flight each ``RESOLUTION_S``, not one each.

A deadline says the exchange did not answer in time, so none passes while the answer may be
in the gateway's input rings, unread: with several gateways, each reads every gateway's
events, and a request's own can sit behind thousands of others' (review 42: a 504 for an
order the exchange had accepted in time, depending on other gateways' traffic). When
requests are due and ``behind`` says the rings hold events not read yet, they time out only
once the gateway has read what the rings held then (looked at every ``RESOLUTION_S``): an
answer written before the deadline always wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

#: When no timer is set (no request waits).
_NONE = float("inf")
#: After it fires, the timer is set again this long ahead at the soonest (s).
RESOLUTION_S = 0.01


class Deadlines:
    """The futures waiting for an answer, each with its deadline (the loop's clock, s);
    the event loop's only."""

    def __init__(self, behind: Callable[[], Callable[[], bool] | None] = lambda: None) -> None:
        #: None when every event written to the input rings is read, else a test of whether
        #: the gateway has read what they hold now
        self.behind = behind
        self._due: dict[asyncio.Future[Any], float] = {}
        #: futures past their deadline, waiting for the gateway to read what was in its
        #: rings then, with that test
        self._late: list[tuple[asyncio.Future[Any], Callable[[], bool]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._at = _NONE  # when the timer fires
        self._loop: asyncio.AbstractEventLoop | None = None  # the timer's

    def __len__(self) -> int:
        return len(self._due) + len(self._late)

    def add(self, future: asyncio.Future[Any], timeout_s: float) -> None:
        """``future`` gets a TimeoutError once ``timeout_s`` has passed, unless it is done by
        then or ``discard``-ed."""
        loop = future.get_loop()
        if loop is not self._loop:  # a timer of a loop that ended (tests run several) is gone
            self._timer, self._at, self._loop = None, _NONE, loop
        at = loop.time() + timeout_s
        self._due[future] = at
        if at < self._at:
            self._arm(loop, at)

    def discard(self, future: asyncio.Future[Any]) -> None:
        """``future`` was answered (or gave up): it no longer times out. The timer stays: it
        finds nothing due when it fires, and is set for what is left (a late one, done, is
        dropped then)."""
        self._due.pop(future, None)

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._at = loop.call_at(at, self._fire, loop), at

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._at = None, _NONE
        now = loop.time()
        due = self._due
        try:
            late, self._late = self._late, []
            for future, read in late:
                if future.done():
                    continue
                if read():  # what the rings held at its deadline is read: no answer came
                    future.set_exception(TimeoutError())
                else:
                    self._late.append((future, read))
            timed = [f for f, at in due.items() if at <= now]
            for future in timed:
                del due[future]
            timed = [f for f in timed if not f.done()]
            if timed:
                unread = self.behind()
                if unread is not None:  # the answers may be in the rings: read them first
                    self._late += [(f, unread) for f in timed]
                else:
                    for future in timed:
                        future.set_exception(TimeoutError())
        finally:  # one that raised (a future of a loop that ended) leaves the rest timed
            if self._late:
                self._arm(loop, now + RESOLUTION_S)
            elif due:
                self._arm(loop, max(min(due.values()), now + RESOLUTION_S))
