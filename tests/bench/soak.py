"""The soak's memory watch: every process of a running instance, sampled by pid, so that a leak
shows as RSS that keeps growing after the warm-up instead of being guessed from a short run.

The processes come from the supervisor's status file (the children and the supervisor itself).
RSS is psutil's ``memory_info().rss`` (/proc/pid/statm: cheap enough to read from the load
generator's event loop between sends). It counts the shared-memory ring pages a process has
touched, so growth is judged from a baseline taken after a warm-up, once every ring has wrapped
and every pool, cache and socket buffer has reached its working size; the growth from before
the warm-up is reported too, but not judged.

Growth is judged by the least-squares line through every sample after the baseline: its rise
over that span, in % of the mean. A process whose RSS jitters with its work (the database
writer's batches move it by +-4 MiB from one 5 s sample to the next) made the ends' medians
of 3 samples a coin toss: a 10-minute soak read +5.6% for a writer that ended 0.1% below its
start, whose line rose 2.8%. A leak is a slope; the line sees it whatever the jitter. The
ends' medians are still reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import linear_regression, mean, median
from typing import Any

import psutil

from config.schema import RingexConfig
from procs.common.run_files import read_status

MIB = 1 << 20


def process_table(cfg: RingexConfig) -> dict[str, int]:
    """Name -> pid of every process the supervisor reports, the supervisor included."""
    status = read_status(cfg)
    if status is None:
        raise RuntimeError(f"no supervisor status for instance {cfg.instance}: is it running?")
    table = {"supervisor": int(status["supervisor_pid"])}
    for proc in status["processes"]:
        if proc["pid"] is None:
            raise RuntimeError(f"process {proc['name']} has no pid (state={status['state']})")
        table[proc["name"]] = int(proc["pid"])
    return table


@dataclass
class RssWatch:
    """RSS samples of a fixed set of pids; a pid that is gone is a process that restarted."""

    pids: dict[str, int]
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # (t s, name->B)
    baseline: int = 0  # index of the sample growth is judged from (set after the warm-up)
    gone: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in self.pids.items()}

    def sample(self, t_s: float) -> dict[str, int]:
        row: dict[str, int] = {}
        for name, proc in self._procs.items():
            try:
                row[name] = proc.memory_info().rss
            except psutil.NoSuchProcess:
                self.gone.add(name)
        self.samples.append((t_s, row))
        return row

    def mark_baseline(self) -> None:
        """Judge growth from the latest sample on (call it when the warm-up ends)."""
        self.baseline = len(self.samples) - 1

    def growth(self, target_pct: float) -> list[dict[str, Any]]:
        """Per process, in MiB: RSS before the soak, at the baseline and at the end, each of the
        last two the median of (up to) 3 samples; growth in % from the baseline to the end by
        those, and from before the soak (both reported only); and the trend: the rise of the
        least-squares line through the samples from the baseline on, in % of their mean,
        judged against ``target_pct``. Fewer than 3 samples from the baseline on (a soak
        shorter than its warm-up and a sample) draw no line: ``judged`` False, and not
        within the target, since nothing showed it was."""
        after = self.samples[self.baseline :]
        k = max(1, min(3, len(after) // 2))
        rows: list[dict[str, Any]] = []
        for name in self.pids:
            if name in self.gone:
                rows.append({"process": name, "gone": True, "within_target": False})
                continue
            start = self.samples[0][1][name]
            base = median(row[name] for _, row in after[:k])
            end = median(row[name] for _, row in after[-k:])
            pct = 100.0 * (end - base) / base
            trend = _trend_pct([t for t, _ in after], [row[name] for _, row in after])
            judged = len(after) >= 3 and after[-1][0] != after[0][0]
            rows.append(
                {
                    "process": name,
                    "pid": self.pids[name],
                    "start_mib": round(start / MIB, 2),
                    "baseline_mib": round(base / MIB, 2),
                    "end_mib": round(end / MIB, 2),
                    "peak_mib": round(max(row[name] for _, row in after) / MIB, 2),
                    "growth_pct": round(pct, 2),
                    "growth_from_start_pct": round(100.0 * (end / start - 1), 2),
                    "trend_pct": round(trend, 2),
                    "samples_judged": len(after),
                    "judged": judged,
                    "within_target": judged and trend <= target_pct,
                }
            )
        return rows

    def series(self) -> dict[str, list[float]]:
        """t_s and each process's RSS in MiB per sample (for the JSON and the plot)."""
        out: dict[str, list[float]] = {"t_s": [round(t, 2) for t, _ in self.samples]}
        for name in self.pids:
            out[name] = [round(row.get(name, 0) / MIB, 2) for _, row in self.samples]
        return out


def _trend_pct(ts: list[float], values: list[int]) -> float:
    """The rise of the least-squares line through (``ts``, ``values``) from the first time to
    the last, in % of the values' mean (0 with fewer than 3 samples)."""
    if len(ts) < 3 or ts[-1] == ts[0]:
        return 0.0
    slope, _ = linear_regression(ts, values)
    return 100.0 * slope * (ts[-1] - ts[0]) / mean(values)


def print_growth(rows: list[dict[str, Any]], target_pct: float, warmup_s: float) -> None:
    print(
        f"RSS per process (MiB): start = before the soak; baseline = after its {warmup_s:.0f} s "
        "warm-up and end = at its end, each the median of 3 samples; growth = end against "
        "baseline; trend = the rise of the least-squares line through every sample from the "
        f"baseline on, judged (target <= {target_pct:g}%)"
    )
    print(
        f"  {'process':<14} {'start':>8} {'baseline':>9} {'end':>8} {'peak':>8} {'growth':>8} "
        f"{'trend':>8}"
    )
    for r in rows:
        if r.get("gone"):
            print(f"  {r['process']:<14} exited or restarted during the soak")
            continue
        print(
            f"  {r['process']:<14} {r['start_mib']:>8.1f} {r['baseline_mib']:>9.1f} "
            f"{r['end_mib']:>8.1f} {r['peak_mib']:>8.1f} {r['growth_pct']:>+7.2f}% "
            f"{r['trend_pct']:>+7.2f}%"
            f"  (from start {r['growth_from_start_pct']:+.1f}%)"
            + ("" if r["judged"] else f"  not judged: {r['samples_judged']} samples")
        )
