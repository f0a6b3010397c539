"""Each process's CPU over a benchmark's phases: which stage was the bottleneck.

A thread samples every watched process's CPU seconds (user + system, from /proc through
psutil) a few times a second; afterwards any window's share can be read, as % of one core.
The windows come from the load (``Phase.window``, on the monotonic clock that every process
of the host shares), so the sampler needs no hook into the load processes. The load's own
processes are found as this process's children on each tick (the load processes of
``--workers`` start after the watch does) and summed under one name.
"""

from __future__ import annotations

import bisect
import os

import psutil

from tests.bench.sampler import Sampler

#: A process at or above this share of one core is reported as saturated.
SATURATED_PCT = 85.0


class CpuWatch(Sampler[dict[str, float]]):
    def __init__(self, pids: dict[str, int], every_s: float = 0.2) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._me = psutil.Process(os.getpid())
        super().__init__(every_s, "cpu-watch")  # a sample: name -> CPU seconds

    def _sample(self) -> dict[str, float]:
        sample: dict[str, float] = {}
        for name, proc in self._procs.items():
            try:
                t = proc.cpu_times()
            except psutil.Error:  # gone (restarted): it stops counting
                continue
            sample[name] = t.user + t.system
        load = 0.0
        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            load += t.user + t.system
        sample["load"] = load
        return sample

    def share(self, start: float, end: float) -> dict[str, float]:
        """Each process's CPU in % of one core over [start, end] (monotonic seconds), from
        the samples nearest inside the window; empty when the window held fewer than two."""
        first = bisect.bisect_left(self._times, start)
        last = bisect.bisect_right(self._times, end) - 1
        if last <= first:
            return {}
        wall = self._times[last] - self._times[first]
        a, b = self._samples[first], self._samples[last]
        return {name: round(100 * (b[name] - a[name]) / wall, 1) for name in b if name in a}


def describe(cpu: dict[str, float], load_processes: int = 1) -> str:
    """``router 97% (saturated), matcher 12%, ...``: the busiest first. The load's share is
    the sum over its ``load_processes`` processes, saturated only when all of them are."""
    if not cpu:
        return "CPU: no samples in the window"

    def one(name: str, pct: float) -> str:
        n = load_processes if name == "load" else 1
        label = f"load x{n}" if name == "load" and n > 1 else name
        return f"{label} {pct:.0f}%" + (" (saturated)" if pct >= SATURATED_PCT * n else "")

    parts = [one(name, pct) for name, pct in sorted(cpu.items(), key=lambda kv: -kv[1])]
    return "CPU, % of a core: " + ", ".join(parts)
