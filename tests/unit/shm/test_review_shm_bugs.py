"""Bugs a hostile review of ``shm/`` found: each test failed on the code it was written against
and passes since its fix."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

import posix_ipc
import pytest

from shm import (
    Blocking,
    ConsumerDetachedError,
    HeaderMismatchError,
    Ring,
    RingError,
    ShmError,
    StructCodec,
    TornReadError,
    Yielding,
)
from shm import header as h
from shm.inspect import list_segments
from shm.liveness import process_start
from shm.ring import ConsumerSpec

CODEC = StructCodec("2q")


def make(instance: str, capacity: int = 4, consumers: Any = ("a",)) -> Ring[Any]:
    return Ring.create(instance, "r", CODEC, capacity=capacity, consumers=list(consumers))


def firsts(items: list[Any]) -> list[int]:
    return [item[0] for item in items]


def wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.001)


# -- wait strategies: timeouts and wake-ups ---------------------------------------------------


def test_wait_honours_its_timeout_under_a_long_park_timeout(instance: str) -> None:
    ring = make(instance)
    consumer = ring.consumer("a", Blocking(spins=0, park_timeout_s=1.5))  # config allows <= 10
    start = time.monotonic()
    assert not consumer.wait(timeout_s=0.05)
    assert time.monotonic() - start < 0.75


def test_a_batch_larger_than_the_ring_wakes_a_parked_consumer_per_chunk(instance: str) -> None:
    ring = make(instance, capacity=4)
    producer = ring.producer(Yielding())
    consumer = ring.consumer("a", Blocking(spins=0, park_timeout_s=1.5))
    got: list[int] = []

    def read_all() -> None:
        while len(got) < 8:
            got.extend(firsts(consumer.take(timeout_s=5)))

    thread = threading.Thread(target=read_all)
    thread.start()
    wait_for(lambda: ring.words[h.consumer_word(0, h.C_PARKED)] == 1)
    start = time.monotonic()
    producer.publish_batch([(i, 0) for i in range(8)])  # two chunks of the ring's size
    elapsed = time.monotonic() - start
    thread.join(10)
    assert got == list(range(8))
    assert elapsed < 0.75, f"the second chunk waited {elapsed:.2f}s for a parked consumer"


def test_a_gated_consumer_parked_behind_its_gate_wakes_when_the_gate_commits(
    instance: str,
) -> None:
    ring = Ring.create(
        instance,
        "r",
        CODEC,
        capacity=8,
        consumers=["journal", ConsumerSpec("matcher", gates=("journal",))],
    )
    producer = ring.producer()
    journal = ring.consumer("journal", auto_commit=False)
    matcher = ring.consumer("matcher", Blocking(spins=0, park_timeout_s=1.5))
    producer.publish((0, 0))
    assert firsts(journal.read()) == [0]
    woke_after: list[float] = []

    def wait_behind_gate() -> None:
        assert matcher.wait(timeout_s=5)
        woke_after.append(time.monotonic())

    thread = threading.Thread(target=wait_behind_gate)
    thread.start()
    wait_for(lambda: ring.words[h.consumer_word(1, h.C_PARKED)] == 1)
    committed = time.monotonic()
    journal.commit()  # "record 0 is durable"
    thread.join(10)
    assert woke_after and woke_after[0] - committed < 0.75


def test_detaching_the_consumer_a_parked_producer_waits_for_wakes_it(instance: str) -> None:
    ring = make(instance, capacity=4, consumers=("dead",))
    producer = ring.producer(Blocking(spins=0, park_timeout_s=1.5))
    for i in range(4):
        producer.publish((i, 0))
    done: list[float] = []

    def publish_fifth() -> None:
        producer.publish((4, 0))  # full: "dead" never reads
        done.append(time.monotonic())

    thread = threading.Thread(target=publish_fifth)
    thread.start()
    wait_for(lambda: ring.words[h.P_PARKED] == 1)
    detached = time.monotonic()
    ring.detach_consumer(0)  # what the supervisor does for a consumer whose process is gone
    thread.join(10)
    assert done and done[0] - detached < 0.75


# -- detached, freed, re-declared consumers ----------------------------------------------------


def test_a_detached_consumer_learns_it_on_its_next_read(instance: str) -> None:
    ring = make(instance)
    producer = ring.producer()
    consumer = ring.consumer("a")
    producer.publish((0, 0))
    ring.detach_consumer(0)  # docstring: "gets ConsumerDetachedError on its next wait or read"
    with pytest.raises(ConsumerDetachedError):
        consumer.read()


def test_a_detached_consumer_cannot_release_slots_of_the_line_s_new_owner(instance: str) -> None:
    ring = make(instance, capacity=4)
    producer = ring.producer()
    old = ring.consumer("a")
    ring.detach_consumer(0)
    ring.free_consumer(0)
    assert ring.declare_consumer("b") == 0  # the line is reused
    new = ring.consumer("b")
    for i in range(4):
        producer.publish((i, 0))
    with contextlib.suppress(ConsumerDetachedError):
        old.read()  # the old process has not noticed: it reads and auto-commits sequence 4
    assert ring.words[h.consumer_word(0, h.C_SEQUENCE)] == 0, "b's sequence was overwritten"
    assert not producer.try_publish((4, 0))  # b has read nothing: slot 0 is still its record 0
    assert firsts(new.read()) == [0, 1, 2, 3]


def test_a_refused_rejoin_leaves_the_line_detached(instance: str) -> None:
    ring = make(instance, consumers=("a",))
    producer = ring.producer()
    ring.consumer("a")
    ring.detach_consumer(0)
    other = Ring.attach(instance, "r", CODEC)
    other.words[h.consumer_word(0, h.C_PID)] = os.getppid()  # a live process holds the line
    other.words[h.consumer_word(0, h.C_PID_START)] = process_start(os.getppid()) or 0
    with pytest.raises(RingError, match="attached by live pid"):
        other.consumer("a", rejoin=True)
    assert ring.info().consumers[0].state == "detached"
    for i in range(8):
        assert producer.try_publish((i, 0))  # the detached line gates nobody


def test_detaching_an_undeclared_line_is_refused(instance: str) -> None:
    ring = make(instance, consumers=("a",))
    with pytest.raises(RingError):
        ring.detach_consumer(5)
    assert ring.consumer_names() == {0: "a"}


def test_declaring_a_consumer_at_an_overwritten_sequence_is_refused(instance: str) -> None:
    ring = make(instance, capacity=4)
    producer = ring.producer()
    consumer = ring.consumer("a")
    for i in range(8):
        producer.publish((i, 0))
        consumer.poll()
    # Records 0..3 were overwritten by 4..7: such a consumer could never read, and it would
    # gate the producer to sequence 0 + capacity, far behind the cursor, forever.
    with pytest.raises((ValueError, RingError), match="start"):
        ring.declare_consumer("late", start=0)


# -- producer: claims ----------------------------------------------------------------------


def test_publish_claimed_refuses_more_than_the_claim(instance: str) -> None:
    ring = make(instance, capacity=4)
    producer = ring.producer()
    consumer = ring.consumer("a")
    producer.publish_batch([(0, 0), (1, 0)])
    claim = producer.claim(4)
    assert claim.slots == 2  # up to the end of the buffer
    with pytest.raises(ValueError):
        producer.publish_claimed(4)  # two slots beyond the claim, past the consumer's limit
    assert ring.cursor() <= 4
    assert firsts(consumer.read())[:2] == [0, 1]


# -- consumer: bad arguments -----------------------------------------------------------------


def test_read_with_a_non_positive_max_batch_neither_tears_nor_rewinds(instance: str) -> None:
    ring = make(instance, capacity=4)
    producer = ring.producer()
    consumer = ring.consumer("a")
    producer.publish_batch([(i, 0) for i in range(3)])
    assert firsts(consumer.read(2)) == [0, 1]
    with contextlib.suppress(ValueError):
        consumer.read(-1)  # an error, or nothing: never a step back
    assert firsts(consumer.read()) == [2]  # record 1 must not come again
    producer.publish_batch([(3, 0), (4, 0)])  # record 4 starts the next lap
    assert firsts(consumer.read(1)) == [3]
    try:
        consumer.read(0)
    except ValueError:
        pass
    except TornReadError as exc:  # pragma: no cover - the bug
        pytest.fail(f"read(0) raised {exc}")
    assert firsts(consumer.read()) == [4]


# -- creating and attaching segments -------------------------------------------------------


def test_a_create_refused_for_its_consumers_leaves_no_segment(instance: str) -> None:
    with pytest.raises(ValueError, match="consumer name"):
        make(instance, consumers=("x" * 17,))
    with pytest.raises(RingError, match="already declared"):
        make(instance, consumers=("a", "a"))
    try:
        ring = make(instance, consumers=("a",))  # the corrected call
    except ShmError as exc:
        pytest.fail(f"retry refused: {exc}")
    ring.close()


@pytest.mark.parametrize("size", [0, 100])
def test_attaching_a_segment_of_a_foreign_size_is_a_header_mismatch(
    instance: str, size: int
) -> None:
    mem = posix_ipc.SharedMemory(f"/ringex.{instance}.r", posix_ipc.O_CREX, size=size)
    mem.close_fd()
    with pytest.raises(HeaderMismatchError, match="segment size"):
        Ring.attach(instance, "r", CODEC)


def test_a_capacity_too_big_to_map_is_refused_and_leaves_no_segment(instance: str) -> None:
    # 2**54 slots of 24 bytes: a valid ftruncate on tmpfs, but more than any address space
    # (47- or 57-bit), so the mmap fails at once.
    with pytest.raises((ValueError, ShmError)):
        make(instance, capacity=2**54)
    assert list_segments(instance) == []
