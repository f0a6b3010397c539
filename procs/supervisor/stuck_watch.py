"""The supervisor's look for stuck processes: a process with records waiting for it whose
position did not move and whose heartbeat is old (``shm.health``), and each process's
heartbeat age for the status.

A mixin of ``Supervisor`` (``main.py``), which owns the state it names.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from config.schema import RingexConfig
from procs.supervisor.child import Child
from shm import Ring
from shm.health import Health, classify
from shm.ring import ConsumerInfo

log = logging.getLogger("ringex.supervisor")


class StuckWatch:
    cfg: RingexConfig
    children: list[Child]
    _rings: dict[str, Ring[Any]]

    def _look_for_stuck(self) -> None:
        """Once a second: a process with records waiting for it whose position did not move
        since the last look and whose heartbeat is older than ``stuck_after_s`` is stuck
        (``shm.health``). Logged; with ``restart_stuck`` killed, so ``watch`` restarts it.
        A process is judged only once it has been ready ``stuck_after_s``: while it starts
        or recovers (a gateway holds its line before it reads, a matcher replays its
        journal) it neither reads nor beats, and killing it then only starts that again, a
        loop up to ``restart_limit``; ``ready_timeout_s`` watches a start instead."""
        sup = self.cfg.supervisor
        for child in self.children:
            line = self._line(child)
            earlier, child.seen = child.seen, line
            looks = [(child.spec.ready_ring, earlier, line)]
            for ring_name, consumer in child.spec.watched:
                later = self._line(child, ring_name, consumer)
                looks.append((ring_name, child.seen_watched.pop(ring_name, None), later))
                if later is not None:
                    child.seen_watched[ring_name] = later
            if not child.ready or time.monotonic() - child.ready_at < sup.stuck_after_s:
                child.stuck = False
                continue
            stuck = next(
                (
                    (ring_name, now)
                    for ring_name, before, now in looks
                    if now is not None
                    and before is not None
                    and before.index == now.index
                    and classify(before, now, stale_after_s=sup.stuck_after_s) is Health.STUCK
                ),
                None,
            )
            if stuck is None:
                child.stuck = False
                continue
            ring_name, now = stuck
            if not child.stuck:
                child.stuck = True
                log.error("%s looks stuck: %d records wait on %s, no progress or heartbeat "
                          "for %.0f s%s", child.spec.name, now.lag, ring_name,
                          now.heartbeat_age_s or 0.0,
                          ": killed, to be restarted" if sup.restart_stuck else "")  # fmt: skip
            if sup.restart_stuck and child.process is not None:
                child.process.kill()

    def _line(
        self, child: Child, ring_name: str | None = None, consumer_name: str | None = None
    ) -> ConsumerInfo | None:
        """``child``'s consumer line on the ring it reads (by default its ready ring), while
        it holds it."""
        ring = self._rings.get(ring_name or child.spec.ready_ring)
        name = consumer_name or child.spec.ready_consumer
        if ring is None or child.process is None:
            return None
        for consumer in ring.info().consumers:
            if consumer.name == name and consumer.pid == child.process.pid:
                return consumer
        return None

    @staticmethod
    def _heartbeat_age(child: Child) -> float | None:
        """Seconds since ``child`` last beat on the ring it reads (its consumer line: a
        process beats there whenever it reads or idles), as of the last look for stuck
        processes; None where it reads none, has not been looked at since it started, or
        has exited since (a dead process beats no more: review 183)."""
        line, process = child.seen, child.process
        if line is None or process is None or line.pid != process.pid:
            return None
        if process.poll() is not None:
            return None
        return None if line.heartbeat_age_s is None else round(line.heartbeat_age_s, 3)
