"""``Deadlines``: every waiting future times out at its own deadline, on one timer."""

from __future__ import annotations

import asyncio

from procs.gateway.deadlines import RESOLUTION_S, Deadlines


async def _outcome(future: asyncio.Future[int]) -> str:
    try:
        return str(await future)
    except TimeoutError:
        return "timeout"


def test_each_future_times_out_at_its_own_deadline_and_answered_ones_do_not() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        start = loop.time()
        ends: list[tuple[str, float]] = []

        async def wait(name: str, timeout_s: float, answer_after_s: float | None) -> None:
            future: asyncio.Future[int] = loop.create_future()
            deadlines.add(future, timeout_s)
            if answer_after_s is not None:
                loop.call_later(answer_after_s, future.set_result, 7)
            try:
                got = await _outcome(future)
            finally:
                deadlines.discard(future)
            ends.append((f"{name}:{got}", round(loop.time() - start, 2)))

        await asyncio.gather(
            wait("long", 0.30, None),
            wait("answered", 0.20, 0.05),  # done long before its deadline
            wait("short", 0.10, None),  # added after a later deadline: the timer moves up
            wait("late answer", 0.15, 0.25),  # its deadline comes first
        )
        assert len(deadlines) == 0
        return ends

    ends = asyncio.run(main())
    names = [name for name, _ in ends]
    assert names == ["answered:7", "short:timeout", "late answer:timeout", "long:timeout"]
    times = dict(ends)
    dues = {"short:timeout": 0.10, "late answer:timeout": 0.15, "long:timeout": 0.30}
    for name, due in dues.items():
        assert due - 0.005 <= times[name] <= due + 0.25, (name, times[name])  # never early


def test_a_discarded_future_never_times_out() -> None:
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        future: asyncio.Future[int] = loop.create_future()
        deadlines.add(future, 0.02)
        deadlines.discard(future)
        await asyncio.sleep(0.06)
        return future.done()

    assert asyncio.run(main()) is False


def test_many_deadlines_a_moment_apart_take_one_pass_each_resolution() -> None:
    """A stalled exchange: thousands of requests time out microseconds apart. The timer
    fires about once per ``RESOLUTION_S``, not once per request, and each still ends."""

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        fires = 0
        fire = deadlines._fire

        def counted(loop: asyncio.AbstractEventLoop) -> None:
            nonlocal fires
            fires += 1
            fire(loop)

        deadlines._fire = counted  # type: ignore[method-assign]
        futures: list[asyncio.Future[int]] = []
        for k in range(2_000):
            future: asyncio.Future[int] = loop.create_future()
            deadlines.add(future, 0.02 + k * 1e-5)  # 20 ms plus 10 us apart: 20 ms in all
            futures.append(future)
        await asyncio.sleep(0.08)
        timed_out = sum(isinstance(f.exception(), TimeoutError) for f in futures if f.done())
        return fires, timed_out

    fires, timed_out = asyncio.run(main())
    assert timed_out == 2_000
    assert fires <= 2 + round(0.02 / RESOLUTION_S) + 2
