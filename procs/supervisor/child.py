"""What the supervisor keeps of each process it runs: its spec, its current process, its
restarts (for ``restart_limit``), whether it is held or ready, and what the last look for a
stuck process saw of it (``Supervisor._look_for_stuck``)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field

from procs.supervisor.plan import ProcessSpec
from shm.ring import ConsumerInfo


@dataclass
class Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)  # monotonic times of restarts
    restarts_total: int = 0  # since the supervisor started (metrics)
    started_at: float = 0.0
    #: Unix time of its release, read once then (metrics): a start time worked out from the
    #: monotonic one at each scrape moved with the wall clock's steps (review 154)
    started_unix: float = 0.0
    ready: bool = False
    #: monotonic time it last became ready: the stuck watch judges it only from
    #: ``stuck_after_s`` after (its start and recovery are ``ready_timeout_s``'s to watch)
    ready_at: float = 0.0
    held: bool = False  # started, importing or waiting for the word (``held.py``)
    seen: ConsumerInfo | None = None  # its line on the ring it reads, at the last look
    seen_watched: dict[str, ConsumerInfo] = field(default_factory=dict)  # its other lines
    stuck: bool = False  # logged as stuck (once per episode)
    log_from: int = 0  # where its latest run's lines begin in its log (each run appends)

    def uptime_s(self) -> float:
        """Seconds since it was released, while it runs; 0 held, down or gone (a process
        that died is not up, whatever its start was)."""
        if not self.started_at or self.process is None or self.process.poll() is not None:
            return 0.0  # a float up or down: one JSON type (review 154)
        return round(time.monotonic() - self.started_at, 1)
