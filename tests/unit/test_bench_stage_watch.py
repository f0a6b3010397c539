"""bench-pipeline's stage latencies: percentiles read off the processes' histograms."""

from __future__ import annotations

import pytest

from procs.common.stats import LATENCY_BUCKETS_US, SUM_CAP_NS, LatencyHistogram
from tests.bench.stage_watch import percentile


def counts_of(*samples_us: float) -> list[int]:
    histogram = LatencyHistogram()
    for us in samples_us:
        histogram.record(int(us * 1_000))
    return histogram.counts


def test_a_percentile_is_linear_inside_its_bucket() -> None:
    assert percentile(counts_of(), 0.5) is None
    # 4 samples in (100, 150]: the median is half way through that bucket
    assert percentile(counts_of(110, 120, 130, 140), 0.5) == pytest.approx(125)
    # 1 in (0, 10], 3 in (200, 300]: p50 falls in the second
    assert percentile(counts_of(5, 250, 250, 250), 0.5) == pytest.approx(200 + 100 / 3)
    assert percentile(counts_of(5, 250, 250, 250), 0.99) == pytest.approx(200 + 100 * 2.96 / 3)


def test_a_sample_past_the_last_bound_reads_as_the_last_bound() -> None:
    assert percentile(counts_of(5e6), 0.5) == LATENCY_BUCKETS_US[-1]


def test_the_sum_takes_a_sample_within_zero_and_a_minute() -> None:
    histogram = LatencyHistogram()
    histogram.record(-5)  # a clock that stepped back
    histogram.record(10**18)  # a command from a journal days old
    assert histogram.sum_ns == SUM_CAP_NS
    assert histogram.counts[0] == 1 and histogram.counts[-1] == 1
