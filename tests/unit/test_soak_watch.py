"""bench-soak's memory judgment (``tests/bench/soak.py``): a leak is a slope, so growth is
judged by the least-squares line through the samples after the warm-up, not by the ends'
medians, which a process whose RSS jitters with its work (the database writer's batches)
made a coin toss."""

from __future__ import annotations

import os
import random

from tests.bench.soak import MIB, RssWatch


def _watch(series: list[float], warmup: int) -> RssWatch:
    """A watch over ``series`` (MiB, one sample each 5 s), its baseline after ``warmup``."""
    watch = RssWatch({"proc": os.getpid()})
    watch.samples = [(5.0 * i, {"proc": int(mib * MIB)}) for i, mib in enumerate(series)]
    watch.baseline = warmup
    return watch


def test_jitter_without_growth_is_not_judged_a_leak_whatever_the_ends_show() -> None:
    rng = random.Random(7)
    series = [48.0 + rng.uniform(-2.5, 2.5) for _ in range(120)]
    series[12:15] = [45.6, 45.7, 45.5]  # the baseline's samples on a trough, the end's on a crest
    series[-3:] = [50.3, 50.4, 50.5]
    (row,) = _watch(series, 12).growth(5.0)
    assert row["growth_pct"] > 5.0, row  # what the ends' medians read
    assert abs(row["trend_pct"]) < 2.0, row
    assert row["within_target"], row


def test_a_steady_leak_under_the_jitter_is_judged_one() -> None:
    rng = random.Random(11)
    series = [48.0 + 0.03 * i + rng.uniform(-2.5, 2.5) for i in range(120)]  # +3.2 MiB in all
    (row,) = _watch(series, 12).growth(5.0)
    assert 5.0 < row["trend_pct"] < 8.0, row
    assert not row["within_target"], row


def test_a_flat_process_and_too_few_samples_read_no_trend() -> None:
    (flat,) = _watch([40.0] * 30, 5).growth(5.0)
    assert flat["trend_pct"] == 0.0 and flat["growth_pct"] == 0.0 and flat["within_target"]
    (short,) = _watch([40.0, 41.0, 60.0], 1).growth(5.0)
    assert short["trend_pct"] == 0.0
