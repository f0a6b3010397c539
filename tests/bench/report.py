"""The end every benchmark shares: say whether its answers were right and which targets it
missed, write its results as JSON, and exit 1 only when an answer was wrong (a missed target
is a figure to report, not a failure of the run)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``values``: the smallest value with at
    least ``q`` of them at or below it. (Index ``int(q * n)``, what the benchmarks took before,
    is one rank high: the p99 of 100 samples was their maximum, the p50 of two their larger.)"""
    if not values:
        raise ValueError("the percentile of no values")
    ordered = sorted(values)
    rank = math.ceil(q * len(ordered) - 1e-9)  # 1-based; the epsilon: 0.99 * 100 > 99.0
    return ordered[min(len(ordered), max(1, rank)) - 1]


def conclude(
    out: str | Path, doc: dict[str, Any], checks: dict[str, bool], missed: list[str]
) -> int:
    failed = [name for name, ok in checks.items() if not ok]
    print("\nanswer checks:", "all agree" if not failed else f"FAILED: {failed}")
    print("targets:", "all met" if not missed else "missed:\n  " + "\n  ".join(missed))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**doc, "checks": checks, "targets_missed": missed}, indent=2))
    print(f"wrote {path}")
    return 1 if failed else 0
