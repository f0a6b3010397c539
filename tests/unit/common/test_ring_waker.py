"""RingWaker: a parked nap ends when any of its rings gets a record, and costs no CPU before."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import resource
import time
from typing import Any

from procs.common.ring_waker import RingWaker
from shm import Ring, StructCodec

CODEC = StructCodec("2q")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _publish_later(instance: str, name: str, delay_s: float) -> None:
    ring = Ring.attach(instance, name, CODEC)
    producer = ring.producer()
    time.sleep(delay_s)
    producer.publish((7, time.monotonic_ns()))
    producer.close()
    ring.close()


def test_a_record_on_either_ring_ends_the_nap_and_the_wait_costs_no_cpu(instance: str) -> None:
    rings = [Ring.create(instance, n, CODEC, capacity=16, consumers=["c"]) for n in ("a", "b")]
    consumers = [ring.consumer("c") for ring in rings]
    waker = RingWaker(consumers)

    async def nap_until_woken(timeout_s: float) -> tuple[bool, float, float]:
        """Whether the nap was woken, how long it slept, and the CPU it took meanwhile."""
        loop = asyncio.get_running_loop()
        nap: asyncio.Future[None] = loop.create_future()
        waker.arm(nap)
        start, cpu = time.monotonic(), _cpu_s()
        try:
            await asyncio.wait_for(asyncio.shield(nap), timeout_s)
            woken = True
        except TimeoutError:
            woken = False
        cpu = _cpu_s() - cpu
        waker.disarm()
        return woken, time.monotonic() - start, cpu

    try:
        ctx = mp.get_context("fork")
        for name in ("b", "a"):
            child = ctx.Process(target=_publish_later, args=(instance, name, 0.4))
            child.start()
            woken, slept, cpu = asyncio.run(nap_until_woken(10.0))
            child.join(10)
            assert woken, f"ring {name}: the nap was not ended by its record"
            assert 0.3 < slept < 5.0, slept
            # threads that spun would take about all of it; a busy CI machine adds some
            assert cpu < 0.5 * slept, f"{cpu:.3f} s of CPU while parked {slept:.3f} s"
            got = [c.read() for c in consumers]
            assert [len(g) for g in got] == ([0, 1] if name == "b" else [1, 0])
        # armed with nothing published: the nap runs out; a record left unread wakes at once
        woken, _, _ = asyncio.run(nap_until_woken(0.2))
        assert not woken
        assert waker.wakeups == 2
    finally:
        started = time.monotonic()
        waker.close()
        assert time.monotonic() - started < 1.0  # unparked, not left to time out
        for consumer in consumers:
            consumer.close()
        for ring in rings:
            ring.close()


def test_an_unread_record_wakes_the_next_nap_at_once(instance: str) -> None:
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    producer.publish((1, 2))
    waker = RingWaker([consumer])

    async def nap() -> float:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        waker.arm(fut)
        start = time.monotonic()
        await asyncio.wait_for(fut, 5.0)
        waker.disarm()
        return time.monotonic() - start

    try:
        assert asyncio.run(nap()) < 0.5
    finally:
        waker.close()
        producer.close()
        consumer.close()
        ring.close()


def test_a_nap_over_an_unread_record_still_lets_the_loop_run_other_tasks(instance: str) -> None:
    """A reader that leaves a record unread (a test's stub, a stalled consumer) makes every
    nap end at once; each must still pass through the loop, or ``_poll``'s ``while`` would
    never yield and starve the loop's other tasks (found hanging a restart test)."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    producer.publish((1, 2))
    waker = RingWaker([consumer])

    async def naps_beside_a_task() -> int:
        loop = asyncio.get_running_loop()
        ran = 0

        async def other() -> None:
            nonlocal ran
            while True:
                ran += 1
                await asyncio.sleep(0)

        task = loop.create_task(other())
        for _ in range(100):
            fut: asyncio.Future[None] = loop.create_future()
            waker.arm(fut)
            assert not fut.done()  # settled on the loop's next round, not in arm()
            await fut
            waker.disarm()
        task.cancel()
        return ran

    try:
        assert asyncio.run(naps_beside_a_task()) >= 50
    finally:
        waker.close()
        producer.close()
        consumer.close()
        ring.close()
