"""bench-rest's request mixes (``--mix``), fed to lanes that answer at once: "orders" is the
cycle of two new orders and a cancel, "crossing" new orders alone, each one aggressive."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.bench.rest_load import Answer, Lane, Stats, closed_loop, open_loop


class Instant(Lane):
    """A lane whose every request is answered at once, counting what it was asked."""

    def __init__(self, user: int) -> None:
        self.user, self.home = user, user
        self.asked: Counter[str] = Counter()
        self.n = 0

    async def order(self, passive: bool) -> Answer:
        self.n += 1
        self.asked["passive" if passive else "crossing"] += 1
        await asyncio.sleep(0)
        return Answer(True, "NEW", self.n, 0)

    async def cancel(self, ref: Any) -> Answer:
        self.asked["cancel"] += 1
        await asyncio.sleep(0)
        return Answer(True, "CANCELED", ref, 0)


def asked(lanes: list[Instant]) -> Counter[str]:
    return sum((lane.asked for lane in lanes), Counter())


@pytest.mark.parametrize("loop", ["closed", "open"])
def test_the_crossing_mix_sends_aggressive_new_orders_alone(loop: str) -> None:
    lanes = [Instant(0), Instant(1)]
    stats = Stats()
    if loop == "closed":
        missing = asyncio.run(closed_loop(lanes, 0.05, stats, "crossing"))
    else:
        missing = asyncio.run(open_loop(lanes, 2_000, 0.05, stats, "crossing"))
    got = asked(lanes)
    assert missing == 0 and got["crossing"] > 0
    assert got["passive"] == got["cancel"] == 0
    assert stats.ops["new"] == got["crossing"] and stats.ops["cancel"] == 0


@pytest.mark.parametrize("loop", ["closed", "open"])
def test_the_orders_mix_is_two_new_orders_and_a_cancel(loop: str) -> None:
    lanes = [Instant(0), Instant(1)]
    stats = Stats()
    if loop == "closed":
        asyncio.run(closed_loop(lanes, 0.05, stats))
    else:
        asyncio.run(open_loop(lanes, 3_000, 0.05, stats))
    got = asked(lanes)
    assert got["crossing"] > 0 and got["passive"] > 0 and got["cancel"] > 0
    assert abs(got["crossing"] - got["passive"]) <= len(lanes) * 2
    assert abs(got["passive"] - got["cancel"]) <= len(lanes) * 2
