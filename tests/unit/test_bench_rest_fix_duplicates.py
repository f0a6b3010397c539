"""bench-rest's FIX path counts a second ack of an order as an error, whenever it comes: it
settled each request on the first report and passed over every later one, so a duplicate
ack (after the order's fill, too) was never seen."""

from __future__ import annotations

import asyncio

from procs.gateway.fix import fields, frame
from tests.bench.rest_load import FixSession


def _report(cl_ord_id: str, exec_type: str, *more: tuple[int, str]) -> bytes:
    return frame(fields((35, "8"), (11, cl_ord_id), (150, exec_type), (54, "1"), *more))


def test_a_second_ack_is_a_problem_even_after_the_fill() -> None:
    async def scenario() -> list[str]:
        session = FixSession("F0", 201)
        session.data_received(_report("o-1", "0") + _report("o-2", "0"))
        session.data_received(_report("o-1", "F", (32, "0.01")))
        session.data_received(_report("o-1", "0"))  # late, after its fill
        session.data_received(_report("o-3", "4"))  # a cancel's answer: not an ack
        return session.problems

    problems = asyncio.run(scenario())
    assert problems == ["a second ack of ClOrdID o-1"], problems
