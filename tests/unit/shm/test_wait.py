"""Wait strategies: an idle blocked consumer costs no CPU and wakes on publish."""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from typing import Any

import pytest

from shm import Blocking, BusySpin, Ring, SleepBackoff, StructCodec, Yielding, wait_strategy

CODEC = StructCodec("2q")


def _blocked_consumer(instance: str, n: int, out: Any) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    consumer = ring.consumer("c", Blocking(spins=50, park_timeout_s=0.5))
    before = resource.getrusage(resource.RUSAGE_SELF)
    got: list[int] = []
    wake_ns: list[int] = []
    while len(got) < n:
        item = consumer.next(timeout_s=10)
        assert item is not None
        got.append(item[0])
        wake_ns.append(time.monotonic_ns() - item[1])
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out.put((got, cpu, wake_ns))


def test_idle_blocked_consumer_uses_no_cpu_and_wakes_on_publish(instance: str) -> None:
    ring = Ring.create(instance, "r", CODEC, capacity=64, consumers=["c"])
    producer = ring.producer()
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_blocked_consumer, args=(instance, 3, out))
    child.start()
    idle_s = 0.0
    for i in range(3):
        time.sleep(0.5)  # the consumer idles, parked on its semaphore
        idle_s += 0.5
        producer.publish((i, time.monotonic_ns()))
    got, cpu_s, wake_ns = out.get(timeout=20)
    child.join(10)
    assert got == [0, 1, 2]
    assert cpu_s < 0.1 * idle_s, f"parked consumer used {cpu_s:.3f}s CPU in {idle_s}s idle"
    # Woken by the post, not by its 0.5 s park timeout.
    assert max(wake_ns) < 0.4e9, f"wake-up latencies {wake_ns} ns"


def _producer_into_full_ring(instance: str, out: Any) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    producer = ring.producer(Blocking(spins=10, park_timeout_s=0.5))
    for i in range(6):
        producer.publish((i, 0))  # the 5th waits for the consumer
    out.put(producer.sequence)


def test_producer_parks_on_a_full_ring_and_is_woken_by_a_commit(instance: str) -> None:
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["c"])
    consumer = ring.consumer("c")
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_producer_into_full_ring, args=(instance, out))
    child.start()
    deadline = time.monotonic() + 5
    while ring.cursor() < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert ring.cursor() == 4  # full, waiting
    assert [item[0] for item in consumer.read()] == [0, 1, 2, 3]
    assert out.get(timeout=5) == 6
    child.join(5)


@pytest.mark.parametrize(
    "strategy", [BusySpin(), Yielding(spins=2), SleepBackoff(spins=2, yields=2), Blocking(spins=2)]
)
def test_every_strategy_times_out_when_nothing_comes(instance: str, strategy: Any) -> None:
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["c"])
    consumer = ring.consumer("c", strategy)
    start = time.monotonic()
    assert consumer.next(timeout_s=0.05) is None
    assert time.monotonic() - start < 2


def test_strategies_are_built_by_name_with_checked_parameters() -> None:
    assert isinstance(wait_strategy("blocking", park_timeout_s=0.1), Blocking)
    assert wait_strategy("sleep", max_sleep_s=0.001).name == "sleep"
    with pytest.raises(ValueError, match="wait strategy 'spin' is unknown"):
        wait_strategy("spin")
    with pytest.raises(ValueError, match="bad parameters"):
        wait_strategy("yield", park_timeout_s=1.0)


def test_a_raised_park_flag_makes_the_next_publish_post_and_a_lowered_one_does_not(
    instance: str,
) -> None:
    """The park split in two (``RingWaker``'s threads): the flag is raised and lowered by one
    thread while another sleeps on the semaphore; a post comes only while the flag is up."""
    ring = Ring.create(instance, "split", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    sleeper = consumer.sleeper()
    try:
        consumer.lower_park_flag()
        producer.publish((1, 1))
        assert not sleeper.sleep(0.05)  # flag down: no post
        consumer.raise_park_flag()
        producer.publish((2, 2))
        assert sleeper.sleep(5.0)
        assert not sleeper.sleep(0.05)  # one post, and the surplus drained
        consumer.lower_park_flag()
        producer.publish((3, 3))
        assert not sleeper.sleep(0.05)
        consumer.unpark()  # from any thread: ends a sleep at once
        assert sleeper.sleep(5.0)
        assert [r[0] for r in consumer.read()] == [1, 2, 3]
        consumer.close()  # the sleeper's handle is its own: it still works
        producer.publish((4, 4))
        assert not sleeper.sleep(0.01)
    finally:
        sleeper.close()
        producer.close()
        consumer.close()
        ring.unlink()
        ring.close()
