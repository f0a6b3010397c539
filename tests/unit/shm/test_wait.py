"""Wait strategies: an idle blocked consumer costs no CPU and wakes on publish."""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import select
import time
from typing import Any

import posix_ipc
import pytest

from shm import Blocking, BusySpin, Ring, SleepBackoff, StructCodec, Yielding, wait_strategy
from shm.wait import WATCHED, fifo_path

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


def _posted(fd: int, timeout_s: float) -> bool:
    """Whether ``fd`` (a watched FIFO) turns readable within ``timeout_s``; drains it."""
    if not select.select([fd], [], [], timeout_s)[0]:
        return False
    while True:
        try:
            if not os.read(fd, 4096):
                return True
        except BlockingIOError:
            return True


def test_a_watched_flag_makes_the_next_publish_write_the_fifo_and_a_lowered_one_does_not(
    instance: str,
) -> None:
    """The park split in two (``RingWaker``): an event loop watches the consumer's FIFO and
    raises its flag as ``WATCHED`` while it naps; a byte comes only while the flag is up, one
    per publish that finds it up, and the consumer's semaphore is not posted for it."""
    ring = Ring.create(instance, "split", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    fd = consumer.watch_fd()
    sem = posix_ipc.Semaphore(ring.consumer_sem_name(consumer.index))
    path = fifo_path(ring.consumer_sem_name(consumer.index))
    try:
        assert os.path.exists(path)
        assert consumer.watch_fd() == fd  # one descriptor per consumer
        consumer.lower_park_flag()
        producer.publish((1, 1))
        assert not _posted(fd, 0.05)  # flag down: no write
        consumer.raise_park_flag(WATCHED)
        producer.publish((2, 2))
        assert _posted(fd, 5.0)
        producer.publish((3, 3))  # the write used the wake word up: nothing more
        assert not _posted(fd, 0.05)
        assert sem.value == 0  # watched, not parked: the semaphore stays quiet
        consumer.raise_park_flag(WATCHED)
        consumer.lower_park_flag()
        producer.publish((4, 4))
        assert not _posted(fd, 0.05)
        assert [r[0] for r in consumer.read()] == [1, 2, 3, 4]
    finally:
        sem.close()
        producer.close()
        consumer.close()
        ring.unlink()
        ring.close()
    assert not os.path.exists(path)  # unlinked with the ring


def test_a_new_watcher_of_the_fifo_is_written_by_a_producer_that_wrote_the_old_one(
    instance: str,
) -> None:
    """A producer keeps the FIFO open; a restarted consumer opens it anew (the old one's
    end is gone): the producer's write finds no reader there, and it opens the FIFO again."""
    ring = Ring.create(instance, "rewatch", CODEC, capacity=16, consumers=["c"])
    producer = ring.producer()
    first = ring.consumer("c")
    try:
        first.raise_park_flag(WATCHED)
        fd = first.watch_fd()
        producer.publish((1, 1))
        assert _posted(fd, 5.0)
        first.close()  # its descriptor closes: the producer's now leads nowhere
        os.unlink(fifo_path(ring.consumer_sem_name(0)))  # and a clean-up removed the FIFO
        second = ring.consumer("c")
        fd = second.watch_fd()
        second.raise_park_flag(WATCHED)
        producer.publish((2, 2))
        assert _posted(fd, 5.0)
        second.close()
    finally:
        producer.close()
        ring.unlink()
        ring.close()


def test_detaching_or_a_gate_moving_writes_a_watched_consumers_fifo(instance: str) -> None:
    ring = Ring.create(instance, "gates", CODEC, capacity=16, consumers=["a", "b"])
    ring.declare_consumer("late", gates=["a"])
    producer = ring.producer()
    a, late = ring.consumer("a"), ring.consumer("late")
    fd = late.watch_fd()
    try:
        producer.publish((1, 1))
        late.raise_park_flag(WATCHED)
        assert not late.published()  # gated behind a
        assert len(a.read()) == 1
        a.commit()  # a's commit moves late's gate: late is written to
        assert _posted(fd, 5.0)
        assert late.published()
        late.raise_park_flag(WATCHED)  # napping again: a detach wakes it to find out
        ring.detach_consumer(late.index)
        assert _posted(fd, 5.0)
    finally:
        producer.close()
        a.close()
        late.close()
        ring.unlink()
        ring.close()
