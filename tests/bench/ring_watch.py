"""Where a pipeline's queue sits: every ring's consumer lags, sampled while a benchmark runs.

A producer never overwrites an unread slot, so a slow consumer shows as its ring's lag near
the capacity; the producer waits on it and the stages before that wait in turn. CPU shares
alone do not say which stage holds the pipeline then: on a lent 16-core host every process
of bench-pipeline ran under 70% of a core while the router's lag on ``m1-out`` sat at 16k of
its 16k slots (the router settled one read of events a step, ``procs/router/main.py``).

A thread attaches every ring of the instance (``topology.rings``) and samples each one's
consumer lags a few times a second, like ``cpu_watch.CpuWatch`` samples CPU; afterwards any
window's figures can be read (``lags``), summarised by the pure ``summarize``.
"""

from __future__ import annotations

import bisect
import contextlib
from collections import Counter
from typing import Any

from config.schema import RingexConfig
from procs.common.record_codec import RecordCodec
from procs.common.topology import rings
from shm import Ring
from shm.errors import ShmError
from tests.bench.sampler import Sampler

#: One sample of one ring: its capacity and each consumer's lag.
RingSample = tuple[int, dict[str, int]]


def summarize(samples: list[dict[str, RingSample]]) -> dict[str, dict[str, Any]]:
    """Per ring over ``samples`` (each a tick's rings): the capacity, the largest lag of any
    consumer (``max``), the mean of each tick's largest (``mean``), the consumer that was most
    often the one behind (``who``, "" when none ever was) and the % of ticks at which the
    ring was at least half full for someone (``half_full_pct``)."""
    out: dict[str, dict[str, Any]] = {}
    names = sorted({name for tick in samples for name in tick})
    for name in names:
        ticks = [tick[name] for tick in samples if name in tick]
        capacity = ticks[-1][0]
        tops = [max(lags.values(), default=0) for _, lags in ticks]
        behind: Counter[str] = Counter()
        for _, lags in ticks:
            top = max(lags.values(), default=0)
            if top:
                behind.update(c for c, lag in lags.items() if lag == top)
        out[name] = {
            "capacity": capacity,
            "max": max(tops),
            "mean": round(sum(tops) / len(tops), 1),
            "who": behind.most_common(1)[0][0] if behind else "",
            "half_full_pct": round(100 * sum(t * 2 >= capacity for t in tops) / len(tops), 1),
        }
    return out


def describe_lags(stats: dict[str, dict[str, Any]], top: int = 4) -> str:
    """``rings, lag mean/max: m1-out 9,800/16,210 of 16,384 (router; half full 60%), ...``:
    the rings with the largest mean lag first, those never behind left out."""
    behind = sorted(
        ((name, s) for name, s in stats.items() if s["max"]), key=lambda kv: -kv[1]["mean"]
    )
    if not behind:
        return "rings: no consumer behind at any sample"
    parts = [
        f"{name} {s['mean']:,.0f}/{s['max']:,} of {s['capacity']:,} ({s['who']}"
        + (f"; half full {s['half_full_pct']:g}%" if s["half_full_pct"] else "")
        + ")"
        for name, s in behind[:top]
    ]
    more = f", {len(behind) - top} more" if len(behind) > top else ""
    return "rings, lag mean/max: " + ", ".join(parts) + more


class RingWatch(Sampler[dict[str, RingSample]]):
    """A thread sampling every ring's lags every ``every_s`` while the ``with`` block runs."""

    def __init__(self, cfg: RingexConfig, every_s: float = 0.2) -> None:
        self._cfg = cfg
        self._rings: dict[str, Ring[Any]] = {}
        super().__init__(every_s, "ring-watch")

    def _close(self) -> None:
        for ring in self._rings.values():
            ring.close()

    def _sample(self) -> dict[str, RingSample]:
        for spec in rings(self._cfg):  # attached once each, when it first exists
            if spec.name not in self._rings:
                with contextlib.suppress(ShmError):  # not made yet: the next tick
                    self._rings[spec.name] = Ring.attach(
                        self._cfg.instance, spec.name, RecordCodec()
                    )
        sample: dict[str, RingSample] = {}
        for name, ring in self._rings.items():
            try:
                info = ring.info()
            except Exception:  # unlinked at a stop: the rest of the window has no sample
                continue
            sample[name] = (info.capacity, {c.name: c.lag for c in info.consumers})
        return sample

    def lags(self, start: float, end: float) -> dict[str, dict[str, Any]]:
        """``summarize`` of the samples within [start, end] (monotonic seconds)."""
        first = bisect.bisect_left(self._times, start)
        last = bisect.bisect_right(self._times, end)
        return summarize(self._samples[first:last])
