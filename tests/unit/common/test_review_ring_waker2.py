"""Review of ``RingWaker``'s protocol: ``arm`` and ``disarm`` only raise and lower the parked
flags (as ``WATCHED``), and a producer's post is a byte on a FIFO the loop watches.

Why this file exists: a hostile review of the protocol when a thread per ring slept on its
semaphore; its scenarios are kept for the watched FIFOs that replaced the threads. The
first tests are faults found then (each failed before its fix, for the reason its docstring
gives); the last ones pin down properties that were checked and hold. Every test is
deterministic: the loop's handling of a post is observed by counting ``_posted`` calls,
posts through a counting ``post``, and each waker's ``park_s`` is long (30 s), so that an
armed nap's cap, which would otherwise hide a missed post after 50 ms, never runs out
within a test.

The faults (of the thread design; each has its counterpart here):

- A wake-up by a post that finds no record (the record was read already, or is still
  gated) that goes back to sleep without raising the flags again. The post used up the
  ring's wake word (``P_WAKE``, which the producer clears before it posts; or the gating
  consumer's ``C_WAKE_GATED``), so no later publish of the same nap posts: the nap is ended
  by its timer or by ``park_s``, not by its record. ``Parker.park`` does not have this
  hole, because each of its rounds raises the flag again.
- ``close`` after a consumer was closed raising, and leaving the other rings watched.
- ``wakeups`` counting a nap once per ring that saw it armed, not once per nap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from procs.common.ring_waker import RingWaker
from shm import Ring, StructCodec, wait
from shm.consumer import Consumer
from shm.ring import ConsumerSpec

CODEC = StructCodec("2q")
#: Longer than any test: a nap ended within a test was ended by a post, not by its cap.
LONG_PARK_S = 30.0
#: Generous: what must happen happens in microseconds.
WAIT_S = 5.0
#: How long a nap whose record is published is given to end (a post ends it in ~30 us).
NAP_END_S = 2.0


class Handled:
    """Counts the loop's handling of posts (``RingWaker._posted``) per consumer."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, waker: RingWaker) -> None:
        self.calls: list[Consumer[Any]] = []
        real = waker._posted

        def counting(consumer: Consumer[Any], fd: int) -> None:
            real(consumer, fd)
            self.calls.append(consumer)

        monkeypatch.setattr(waker, "_posted", counting)  # before the first arm watches

    async def reach(self, count: int) -> None:
        """Run the loop until it has handled ``count`` posts."""
        deadline = time.monotonic() + WAIT_S
        while len(self.calls) < count:
            assert time.monotonic() < deadline, (
                f"the loop handled {len(self.calls)} posts, expected {count}"
            )
            await asyncio.sleep(0.001)


async def _ended(nap: asyncio.Future[None]) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(nap), NAP_END_S)
    except TimeoutError:
        return False
    return True


def test_a_post_for_a_record_already_read_leaves_the_rest_of_the_nap_woken_by_the_next(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The producer publishes R1 and loads ``P_WAKE`` = 1 (left up by an earlier nap that its
    timer ended), then is preempted before ``_wake_consumers`` clears it. Meanwhile the loop
    reads R1 and arms the next nap (flag and ``P_WAKE`` raised, nothing published). The
    producer resumes: it clears ``P_WAKE`` (the nap's), sees the flag up and posts. The loop
    finds nothing to read; unless it raises the flags again, R2, published during that nap,
    finds ``P_WAKE`` = 0 and posts nothing: the nap would miss it (until ``park_s``).

    The preemption is made deterministic by running the loop's steps inside the producer's
    call of ``_wake_consumers``, which is where a real preemption would put them."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    waker = RingWaker([consumer], park_s=LONG_PARK_S)
    handled = Handled(monkeypatch, waker)

    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        earlier: asyncio.Future[None] = loop.create_future()
        waker.arm(earlier)  # a nap its timer ends: P_WAKE stays up
        waker.disarm()
        nap: asyncio.Future[None] = loop.create_future()
        wake_consumers = producer._wake_consumers

        def preempted() -> None:
            monkeypatch.setattr(producer, "_wake_consumers", wake_consumers)
            assert len(consumer.read()) == 1  # the loop pumps R1 ...
            waker.arm(nap)  # ... and naps: nothing is published past what it read
            wake_consumers()  # the producer resumes: clears P_WAKE, sees the flag, posts

        monkeypatch.setattr(producer, "_wake_consumers", preempted)
        producer.publish((1, 1))
        await handled.reach(1)  # the loop took R1's post and found nothing
        assert not nap.done()
        producer.publish((2, 2))  # during the nap
        published = consumer.published()
        ended = await _ended(nap)
        waker.disarm()
        return published, ended

    try:
        published, ended = asyncio.run(scenario())
        assert published
        assert ended, (
            f"a record published during an armed nap did not end it within {NAP_END_S} s: "
            "the empty wake-up used up P_WAKE and did not raise the flags again"
        )
    finally:
        waker.close()
        producer.close()
        consumer.close()
        ring.close()


def test_a_gated_consumers_nap_ends_with_the_commit_that_opens_its_gate(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same hole through the gate's wake word, with the public API only. ``b`` is gated
    on ``a``. While ``b``'s nap is armed, ``a`` commits without moving (a checkpointing reader
    commits on a timer whether or not it read anything, as ``MarketFeed.checkpoint`` does):
    that clears ``a``'s ``C_WAKE_GATED`` and posts ``b``, which finds nothing. The producer's
    publish then posts (``P_WAKE``) while the record is still gated: nothing again. When ``a``
    commits the record, a wake word must be up, or ``b``'s nap misses its record."""
    specs: list[ConsumerSpec | str] = ["a", ConsumerSpec("b", gates=("a",))]
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=specs)
    gate = ring.consumer("a", auto_commit=False)
    gated = ring.consumer("b")
    producer = ring.producer()
    waker = RingWaker([gated], park_s=LONG_PARK_S)
    handled = Handled(monkeypatch, waker)

    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        nap: asyncio.Future[None] = loop.create_future()
        waker.arm(nap)
        gate.commit()  # nothing new: a checkpoint on a timer
        await handled.reach(1)
        producer.publish((1, 1))
        await handled.reach(2)
        assert not gated.published()  # gated: rightly asleep
        assert len(gate.read()) == 1
        gate.commit()  # opens b's gate
        published = gated.published()
        ended = await _ended(nap)
        waker.disarm()
        return published, ended

    try:
        published, ended = asyncio.run(scenario())
        assert published
        assert ended, (
            f"the commit that passed a record to a gated consumer did not end its nap within "
            f"{NAP_END_S} s: the empty wake-ups used up the wake words"
        )
    finally:
        waker.close()
        producer.close()
        gate.close()
        gated.close()
        ring.close()


def test_close_after_a_consumer_was_closed_stops_watching_every_ring(instance: str) -> None:
    rings = [Ring.create(instance, n, CODEC, capacity=16, consumers=["c"]) for n in ("a", "b")]
    consumers = [ring.consumer("c") for ring in rings]
    waker = RingWaker(consumers, park_s=LONG_PARK_S)

    async def scenario() -> None:
        waker.arm(asyncio.get_running_loop().create_future())
        waker.disarm()
        consumers[0].close()  # a test's crash: its descriptor is closed first
        waker.close()
        assert waker._loop is None

    try:
        asyncio.run(scenario())
    finally:
        for consumer in consumers:
            consumer.close()
        for ring in rings:
            ring.close()


def test_wakeups_counts_a_nap_once_when_two_rings_end_it(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wakeups`` is "naps ended by a ring". Both rings get a record during one nap, and the
    loop handles both posts: the nap is counted once."""
    rings = [Ring.create(instance, n, CODEC, capacity=16, consumers=["c"]) for n in ("a", "b")]
    consumers = [ring.consumer("c") for ring in rings]
    producers = [ring.producer() for ring in rings]
    waker = RingWaker(consumers, park_s=LONG_PARK_S)
    handled = Handled(monkeypatch, waker)

    async def one_nap() -> None:
        loop = asyncio.get_running_loop()
        nap: asyncio.Future[None] = loop.create_future()
        waker.arm(nap)
        for producer in producers:
            producer.publish((1, 1))
        await asyncio.wait_for(nap, WAIT_S)
        await handled.reach(2)
        waker.disarm()

    try:
        asyncio.run(one_nap())
        assert waker.wakeups == 1, f"one nap ended by a ring counted {waker.wakeups} times"
    finally:
        waker.close()
        for producer in producers:
            producer.close()
        for consumer in consumers:
            consumer.close()
        for ring in rings:
            ring.close()


# -- properties verified (these pass) ------------------------------------------------------


def test_a_busy_ring_posts_once_per_armed_nap_and_never_while_disarmed(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop is not woken per record: while disarmed the producer posts nothing, and an
    armed nap costs one post however many records follow (the first clears ``P_WAKE``)."""
    posts: list[tuple[str, int]] = []
    real_post: Callable[[str, wait.Posts, int], None] = wait.post

    def counting_post(name: str, cache: wait.Posts, how: int = wait.PARKED) -> None:
        posts.append((name, how))
        real_post(name, cache, how)

    monkeypatch.setattr("shm.producer.post", counting_post)  # the name the producer calls
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=4096, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    waker = RingWaker([consumer], park_s=LONG_PARK_S)

    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        counts = []
        earlier: asyncio.Future[None] = loop.create_future()
        waker.arm(earlier)  # leaves P_WAKE up: the next publish scans the flags
        waker.disarm()
        for i in range(1000):
            producer.publish((i, i))
        counts.append(len(posts))
        consumer.read(4096)
        nap: asyncio.Future[None] = loop.create_future()
        waker.arm(nap)
        for i in range(1000):
            producer.publish((i, i))
        counts.append(len(posts))
        await asyncio.wait_for(nap, WAIT_S)
        waker.disarm()
        consumer.read(4096)
        for i in range(1000):
            producer.publish((i, i))
        counts.append(len(posts))
        return counts

    try:
        assert asyncio.run(scenario()) == [0, 1, 1]
        assert [how for _, how in posts] == [wait.WATCHED]  # the FIFO, not the semaphore
        assert waker.wakeups == 1
    finally:
        waker.close()
        producer.close()
        consumer.close()
        ring.close()


def test_a_nap_left_armed_on_a_closed_loop_does_not_stop_the_next_loops_naps(
    instance: str,
) -> None:
    """A post for a nap whose loop has closed lands in the FIFO, unread; the next loop's
    first nap reads it, finds nothing new, and still ends on its own record."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    waker = RingWaker([consumer], park_s=LONG_PARK_S)

    async def arm_and_leave() -> None:
        waker.arm(asyncio.get_running_loop().create_future())  # never disarmed

    async def nap_for_a_record() -> bool:
        nap: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waker.arm(nap)
        await asyncio.sleep(0.01)  # the stale post is read, and ends nothing
        assert not nap.done()
        producer.publish((2, 2))
        ended = await _ended(nap)
        waker.disarm()
        return ended

    try:
        asyncio.run(arm_and_leave())  # the loop closes with the nap armed
        producer.publish((1, 1))  # posts the FIFO of a loop that is gone
        assert len(consumer.read()) == 1
        assert asyncio.run(nap_for_a_record())
    finally:
        waker.close()
        producer.close()
        consumer.close()
        ring.close()


def test_a_post_the_protocol_missed_is_found_by_the_waker_within_park_s(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waker's own look every ``park_s`` ends an armed nap whose ring has a record that
    no post announced (the race ``shm/wait.py`` describes: here the producer posts nothing)."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    monkeypatch.setattr(producer, "_wake_consumers", lambda: None)  # every post missed
    waker = RingWaker([consumer], park_s=0.05)

    async def scenario() -> float:
        nap: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waker.arm(nap)
        producer.publish((1, 1))
        started = time.monotonic()
        await asyncio.wait_for(nap, WAIT_S)
        waker.disarm()
        return time.monotonic() - started

    try:
        assert asyncio.run(scenario()) < WAIT_S
        assert waker.wakeups == 1
    finally:
        waker.close()
        producer.close()
        consumer.close()
        ring.close()
