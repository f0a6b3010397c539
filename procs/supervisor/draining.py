"""The middle of a stop: once intake has stopped, wait until the rings are read to the end.

The supervisor (``main.py``) and ``scripts/systemd_units.py`` stop an instance the same way:
the gateways first (no new orders), then this wait, then the other processes. Meanwhile the
lines of consumers that have stopped are detached (``detach_gone``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from shm import Ring

log = logging.getLogger("ringex.supervisor")
#: The embedded database's stop and the rest of a stop, at most (s).
STOP_SLACK_S = 30.0


def stop_bound_s(drain_timeout_s: float, grace_s: float) -> float:
    """The longest a clean stop takes: three groups' ``grace_s`` (intake, the rest, the
    writer last), the drain between and ``STOP_SLACK_S``. ``ringex stop`` waits as long by
    default, so a stop that runs its course is not reported as failed."""
    return 3 * grace_s + drain_timeout_s + STOP_SLACK_S


def detach_gone(rings: Iterable[Ring[Any]]) -> list[str]:
    """Detach every active consumer line whose process is gone; returns them as ring:line.

    Only for a stopping instance: its rings are removed at the end of the stop and a start
    makes new ones (a gateway then checks its orders against the matchers' books), so the
    events a stopped gateway left unread would never be read. Left attached, they gate the
    matcher's output ring: with a backlog the ring's size the matcher waits for room and
    cannot drain its input, and the stop waits out its timeout and then kills it."""
    gone = []
    for ring in rings:
        for consumer in ring.info().consumers:
            if consumer.state == "active" and not consumer.pid_alive:
                ring.detach_consumer(consumer.index)
                gone.append(f"{ring.name}:{consumer.name}")
    return gone


def drain(
    rings: Iterable[Ring[Any]],
    timeout_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Wait until every live consumer has read its ring to the end, at most ``timeout_s``,
    detaching stopped consumers' lines meanwhile; returns the lines still behind
    (``ring:line=lag``), empty when drained."""
    rings = list(rings)
    deadline = time.monotonic() + timeout_s
    while True:
        gone = detach_gone(rings)
        if gone:
            log.info("stopping: detached the lines of stopped consumers %s", gone)
        lagging = [
            f"{info.name}:{c.name}={c.lag}"
            for info in (ring.info() for ring in rings)
            for c in info.consumers
            if c.pid_alive and c.lag
        ]
        if not lagging or time.monotonic() >= deadline:
            return lagging
        sleep(0.05)
