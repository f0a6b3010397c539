"""bench-pipeline's ring lags: the summary names the ring and the consumer holding the queue."""

from __future__ import annotations

from tests.bench.ring_watch import describe_lags, summarize


def test_the_summary_names_the_consumer_most_often_behind_and_how_full_the_ring_was() -> None:
    samples = [
        {"m1-out": (16, {"router": 9, "gw1": 2}), "m1-in": (16, {"matcher": 0})},
        {"m1-out": (16, {"router": 3, "gw1": 4}), "m1-in": (16, {"matcher": 1})},
        {"m1-out": (16, {"router": 12, "gw1": 0}), "m1-in": (16, {"matcher": 0})},
    ]
    stats = summarize(samples)
    assert stats["m1-out"] == {
        "capacity": 16,
        "max": 12,
        "mean": round((9 + 4 + 12) / 3, 1),
        "who": "router",
        "half_full_pct": round(100 * 2 / 3, 1),
    }
    assert stats["m1-in"]["who"] == "matcher"
    assert stats["m1-in"]["half_full_pct"] == 0
    line = describe_lags(stats)
    assert line.startswith("rings, lag mean/max: m1-out 8/12 of 16 (router; half full 66.7%)")
    assert "m1-in 0/1 of 16 (matcher)" in line


def test_rings_never_behind_are_left_out_and_a_window_without_samples_is_empty() -> None:
    assert summarize([]) == {}
    quiet = summarize([{"gw1-cmd": (8, {"router": 0})}])
    assert quiet["gw1-cmd"]["who"] == ""
    assert describe_lags(quiet) == "rings: no consumer behind at any sample"
