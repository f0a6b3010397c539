"""The load generators' pacer (tests/bench/pacer.py): never early, and its fallback works."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from tests.bench.pacer import Pacer


async def _lateness(pacer: Pacer, gaps_ns: list[int]) -> list[int]:
    late = []
    for gap in gaps_ns:
        deadline = time.perf_counter_ns() + gap
        await pacer.until(deadline)
        late.append(time.perf_counter_ns() - deadline)
    return late


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_until_never_returns_before_its_deadline(run: object) -> None:
    async def main() -> list[int]:
        pacer = Pacer()
        try:
            return await _lateness(pacer, [200_000, 50_000, 1_000_000, 0, -5_000] * 4)
        finally:
            pacer.close()

    late = run(main())  # type: ignore[operator]
    assert min(late[k] for k in range(len(late)) if k % 5 < 3) >= 0


def test_other_tasks_run_while_it_waits() -> None:
    async def main() -> int:
        pacer = Pacer()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await pacer.until(time.perf_counter_ns() + 5_000_000)
        task.cancel()
        pacer.close()
        return ticks

    assert uvloop.run(main()) > 1


def test_without_timerfd_it_falls_back_to_asyncio_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.bench.pacer._libc", lambda: None)

    async def main() -> list[int]:
        pacer = Pacer()
        try:
            return await _lateness(pacer, [2_000_000, 0])
        finally:
            pacer.close()

    assert asyncio.run(main())[0] >= 0
