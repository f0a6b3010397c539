"""Where an order's time goes inside the exchange, from the processes' own latency histograms.

The gateways and matchers count latencies into their ``shm.counters`` pages
(``procs/common/stats.py``), stamped by one host's clock: received -> in the router's ring,
received -> sequenced (the router's stamp), sequenced -> read by the matcher (each batch's
oldest command), sequenced -> acknowledged, and the whole received -> acknowledged.
``StageWatch`` samples the pages while a bench runs, like ``RingWatch`` the rings, and
``stages(start, end)`` gives each histogram's p50 and p99 over a phase's window: the
exchange's share of the order -> ack latency the load generator measures, cut in stages.
A percentile is read off the buckets (linear inside one), so it is as fine as they are.
``router_time(start, end)`` reads the router's page: the share of the window it was busy or
waited, and on what (``procs/router/time_use.py``), with the commands and events it handled.
"""

from __future__ import annotations

import bisect
import contextlib
from typing import Any

from config.schema import RingexConfig
from procs.common.stats import (
    LATENCY_BUCKETS_US,
    ROUTER_PAGE,
    ROUTER_STATES,
    gateway_page,
    histogram_counters,
    matcher_page,
)
from shm.counters import Counters
from shm.errors import ShmError
from tests.bench.sampler import Sampler

#: The histograms, by the page prefix they are stored under, in the order an order meets them.
STAGES = {
    "to_ring": "received -> router's ring",
    "to_router": "received -> sequenced",
    "queue": "sequenced -> matcher (batch's oldest)",
    "router_to_ack": "sequenced -> acked",
    "ack": "received -> acked, in the gateway",
}


def percentile(counts: list[int], q: float) -> float | None:
    """The ``q`` quantile (0..1), in us, of per-bucket ``counts`` over ``LATENCY_BUCKETS_US``
    (then +Inf): linear inside the bucket it falls in; the last bound for the +Inf bucket;
    None for no samples."""
    total = sum(counts)
    if not total:
        return None
    want, seen = q * total, 0
    for k, n in enumerate(counts):
        if n and seen + n >= want:
            if k == len(LATENCY_BUCKETS_US):
                return float(LATENCY_BUCKETS_US[-1])
            low = LATENCY_BUCKETS_US[k - 1] if k else 0
            return low + (LATENCY_BUCKETS_US[k] - low) * (want - seen) / n
        seen += n
    return float(LATENCY_BUCKETS_US[-1])


def bucket_counts(values: dict[str, int], prefix: str) -> list[int] | None:
    names = histogram_counters(prefix)[1:]  # the buckets, past the sum
    if not all(name in values for name in names):
        return None  # a page without this histogram (another version's)
    return [values[name] for name in names]


class StageWatch(Sampler[dict[str, dict[str, int]]]):
    """A thread reading every gateway's and matcher's counter page every ``every_s``."""

    def __init__(self, cfg: RingexConfig, every_s: float = 0.2) -> None:
        self._names = [gateway_page(g.id) for g in cfg.gateways]
        self._names += [matcher_page(m.name) for m in cfg.matchers]
        self._names.append(ROUTER_PAGE)
        self._instance = cfg.instance
        self._pages: dict[str, Counters] = {}
        super().__init__(every_s, "stage-watch")

    def _close(self) -> None:
        for page in self._pages.values():
            page.close()

    def _sample(self) -> dict[str, dict[str, int]]:
        for name in self._names:  # attached once each, when it first exists
            if name not in self._pages:
                with contextlib.suppress(ShmError, OSError):
                    self._pages[name] = Counters.attach(self._instance, name)
        sample: dict[str, dict[str, int]] = {}
        for name, page in self._pages.items():
            with contextlib.suppress(Exception):  # unlinked at a stop
                sample[name] = page.read()
        return sample

    def stages(self, start: float, end: float) -> dict[str, dict[str, Any]]:
        """Per histogram of ``STAGES``, summed over the pages: what was counted between the
        samples nearest ``start`` and ``end`` (monotonic seconds), as ``count``, ``p50_us``
        and ``p99_us``. A page whose counts went down (its process restarted) counts from zero."""
        first = max(0, bisect.bisect_left(self._times, start) - 1)
        last = bisect.bisect_right(self._times, end) - 1
        if last <= first:
            return {}
        before, after = self._samples[first], self._samples[last]
        out: dict[str, dict[str, Any]] = {}
        for prefix in STAGES:
            total: list[int] | None = None
            for name, values in after.items():
                now = bucket_counts(values, prefix)
                if now is None:
                    continue
                then = bucket_counts(before.get(name, {}), prefix) or [0] * len(now)
                if any(b < a for a, b in zip(then, now, strict=True)):
                    then = [0] * len(now)
                diff: list[int] = [b - a for a, b in zip(then, now, strict=True)]
                total = diff if total is None else [a + b for a, b in zip(total, diff, strict=True)]
            if total is not None and any(total):
                p50, p99 = percentile(total, 0.5), percentile(total, 0.99)
                out[prefix] = {
                    "count": sum(total),
                    "p50_us": None if p50 is None else round(p50),
                    "p99_us": None if p99 is None else round(p99),
                }
        return out

    def router_time(self, start: float, end: float) -> dict[str, float]:
        """Over the samples nearest ``start`` and ``end``: the router's share of the time in
        each state (``<state>_pct``) and its ``commands_per_s`` and ``events_per_s``; {}
        without two samples of its page, or should a count go down (a restarted router
        goes on from its page's counts, so only a page made anew does that)."""
        first = max(0, bisect.bisect_left(self._times, start) - 1)
        last = bisect.bisect_right(self._times, end) - 1
        if last <= first:
            return {}
        before = self._samples[first].get(ROUTER_PAGE)
        after = self._samples[last].get(ROUTER_PAGE)
        seconds = self._times[last] - self._times[first]
        if not before or not after or seconds <= 0:
            return {}
        diff = {k: after[k] - before.get(k, 0) for k in after}
        if any(v < 0 for v in diff.values()):
            return {}
        spent = sum(diff.get(f"{s}_ns", 0) for s in ROUTER_STATES) or 1
        out = {f"{s}_pct": round(100 * diff.get(f"{s}_ns", 0) / spent, 1) for s in ROUTER_STATES}
        out["commands_per_s"] = round(diff.get("commands", 0) / seconds)
        out["events_per_s"] = round(diff.get("events", 0) / seconds)
        return out


def describe_router(time_use: dict[str, float]) -> str:
    if not time_use:
        return "router: no time counted"
    shares = [f"{s} {time_use[f'{s}_pct']:g}%" for s in ROUTER_STATES if time_use[f"{s}_pct"]]
    return (
        f"router's time: {', '.join(shares) or 'none counted'}; "
        f"{time_use['commands_per_s']:,} commands/s, {time_use['events_per_s']:,} events/s settled"
    )


def describe_stages(stages: dict[str, dict[str, Any]]) -> str:
    if not stages:
        return "inside: no latency counted"
    parts = [f"{STAGES[k]} p50 {v['p50_us']:,} p99 {v['p99_us']:,}" for k, v in stages.items()]
    return "inside, us: " + "; ".join(parts)
