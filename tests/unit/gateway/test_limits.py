"""RateLimiter: burst, refill, the Retry-After hint, cost, a clock going backwards and the LRU
bound on tracked keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from procs.gateway.limits import RateLimiter


def test_burst_then_refused_with_hint() -> None:
    lim = RateLimiter(rate_per_s=10.0, burst=3)
    assert [lim.take("k", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.take("k", 100.0) == pytest.approx(0.1)
    assert lim.take("k", 100.05) == pytest.approx(0.05)  # refused: nothing spent
    assert lim.take("k", 100.1) == 0.0  # waiting as told is enough
    assert lim.take("k", 100.1) == pytest.approx(0.1)


def test_a_refund_gives_back_up_to_the_burst() -> None:
    lim = RateLimiter(rate_per_s=0.001, burst=2)
    assert lim.take("k", 1.0) == 0.0
    lim.refund("k")  # the request did not count
    assert [lim.take("k", 1.0) for _ in range(2)] == [0.0, 0.0]
    lim.refund("k", 5.0)  # never past the burst
    assert [lim.take("k", 1.0) == 0.0 for _ in range(3)] == [True, True, False]
    lim.refund("never-seen")  # a key it does not hold: nothing to give back
    assert len(lim) == 1


def test_refill_caps_at_burst() -> None:
    lim = RateLimiter(rate_per_s=2.0, burst=4)
    for _ in range(4):
        lim.take("k", 0.0)
    assert lim.take("k", 1.0) == 0.0  # 2 tokens back after 1 s
    assert lim.take("k", 1.0) == 0.0
    assert lim.take("k", 1.0) == pytest.approx(0.5)
    assert all(lim.take("k", 1000.0) == 0.0 for _ in range(4))  # capped at burst, not 2000
    assert lim.take("k", 1000.0) > 0


def test_keys_are_independent() -> None:
    lim = RateLimiter(rate_per_s=1.0, burst=1)
    assert lim.take("a", 0.0) == 0.0
    assert lim.take("a", 0.0) > 0
    assert lim.take(("10.0.0.1", 443), 0.0) == 0.0


def test_cost() -> None:
    lim = RateLimiter(rate_per_s=10.0, burst=10)
    assert lim.take("k", 0.0, cost=8) == 0.0
    assert lim.take("k", 0.0, cost=5) == pytest.approx(0.3)
    assert lim.take("k", 0.0, cost=2) == 0.0  # the refused cost 5 spent nothing
    with pytest.raises(ValueError, match=r"cost 11 exceeds burst 10: it can never pass"):
        lim.take("k", 0.0, cost=11)


def test_clock_going_backwards_does_not_refill_twice() -> None:
    lim = RateLimiter(rate_per_s=1.0, burst=1)
    assert lim.take("k", 10.0) == 0.0
    assert lim.take("k", 5.0) == pytest.approx(1.0)
    assert lim.take("k", 10.5) == pytest.approx(0.5)
    assert lim.take("k", 11.0) == 0.0


def test_lru_bound() -> None:
    lim = RateLimiter(rate_per_s=1.0, burst=1, max_keys=3)
    for key in "abc":
        lim.take(key, 0.0)
    lim.take("a", 0.0)  # a is now the most recently used (and refused)
    lim.take("d", 0.0)  # evicts b, the least recently used
    assert len(lim) == 3
    assert lim.take("a", 0.0) > 0  # still tracked: still empty
    assert lim.take("c", 0.0) > 0
    assert lim.take("b", 0.0) == 0.0  # forgotten: back with a full bucket
    assert len(lim) == 3


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rate_per_s 0 must be positive"):
        RateLimiter(0, 1)
    with pytest.raises(ValueError, match="burst 0 must be at least 1"):
        RateLimiter(1.0, 0)
    with pytest.raises(ValueError, match="max_keys 0 must be at least 1"):
        RateLimiter(1.0, 1, max_keys=0)


@given(
    rate=st.floats(0.1, 10_000),
    burst=st.integers(1, 1_000),
    steps=st.lists(st.tuples(st.floats(0, 5), st.floats(0.1, 1.0)), max_size=50),
)
def test_never_more_than_burst_plus_rate_times_time(
    rate: float, burst: int, steps: list[tuple[float, float]]
) -> None:
    """Over any run of requests, what is let through never exceeds burst + rate * elapsed, and
    waiting the hinted time always lets a refused request through."""
    lim = RateLimiter(rate, burst)
    now, spent = 0.0, 0.0
    for gap, cost in steps:
        now += gap
        hint = lim.take("k", now, cost)
        if hint == 0.0:
            spent += cost
        else:
            assert hint > 0
            assert lim.take("k", now + hint, cost) == 0.0
            now += hint
            spent += cost
        assert spent <= burst + rate * now + 1e-6
