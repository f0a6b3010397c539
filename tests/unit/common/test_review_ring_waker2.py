"""Review of ``RingWaker`` after its redesign (54563e0): threads that sleep on the rings'
semaphores for good, while ``arm`` and ``disarm`` only raise and lower the parked flags.

Why this file exists: a hostile review of that protocol. The first tests show faults found
(each failed before its fix, for the reason its docstring gives); the last ones pin down
properties that were checked and hold. Every test is deterministic: the thread's progress is
observed through a counting sleeper (how many times it went back to sleep), posts through a
counting ``post``, and each waker's ``park_s`` is long (30 s), so that its periodic look,
which would otherwise hide a missed post after 50 ms, never runs within a test.

The faults:

- A thread woken by a post that finds no record (the record was read already, or is still
  gated) goes back to sleep without raising the flags again. But the post used up the ring's
  wake word (``P_WAKE``, which the producer clears before it posts; or the gating consumer's
  ``C_WAKE_GATED``), so no later publish of the same nap posts: the nap is ended by its timer
  or by ``park_s``, not by its record. ``Parker.park`` does not have this hole, because each
  of its rounds raises the flag again.
- ``close`` after a consumer was closed (the order ``_watch``'s docstring says it copes with)
  raises ``ExistentialError`` from ``Consumer.unpark`` and leaves the other threads unwoken.
- ``wakeups`` counts a nap once per ring whose thread saw it armed, not once per nap.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import posix_ipc
import pytest

from procs.common.ring_waker import RingWaker
from shm import Ring, StructCodec, wait
from shm.consumer import Consumer
from shm.ring import ConsumerSpec
from shm.wait import Sleeper

CODEC = StructCodec("2q")
#: Longer than any test: a nap ended within a test was ended by a post, not a thread's look.
LONG_PARK_S = 30.0
#: Generous: what must happen happens in microseconds.
WAIT_S = 5.0
#: How long a nap whose record is published is given to end (a post ends it in ~100 us).
NAP_END_S = 2.0


class CountingSleeper:
    """A ``Sleeper`` that counts the thread's sleeps: ``entered`` n + 1 means the thread has
    handled its n-th wake-up (looked at the ring and the nap) and is back to sleep."""

    def __init__(self, inner: Sleeper) -> None:
        self.inner = inner
        self.entered = 0
        self.posted = 0
        self._cond = threading.Condition()

    def sleep(self, timeout_s: float) -> bool:
        with self._cond:
            self.entered += 1
            self._cond.notify_all()
        posted = self.inner.sleep(timeout_s)
        if posted:
            with self._cond:
                self.posted += 1
        return posted

    def close(self) -> None:
        self.inner.close()

    def wait_entered(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.entered >= count, WAIT_S), (
                f"the thread went to sleep {self.entered} times, expected {count}"
            )


def _counting(monkeypatch: pytest.MonkeyPatch, consumer: Consumer[Any]) -> CountingSleeper:
    """Make the waker's thread for ``consumer`` sleep on a counting sleeper."""
    counting = CountingSleeper(consumer.sleeper())
    monkeypatch.setattr(consumer, "sleeper", lambda: counting)
    return counting


async def _ended(nap: asyncio.Future[None]) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(nap), NAP_END_S)
    except TimeoutError:
        return False
    return True


def test_a_post_for_a_record_already_read_leaves_the_rest_of_the_nap_unwoken(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The producer publishes R1 and loads ``P_WAKE`` = 1 (left up by an earlier nap that its
    timer ended), then is preempted before ``_wake_consumers`` clears it. Meanwhile the loop
    reads R1 and arms the next nap (flag and ``P_WAKE`` raised, nothing published). The
    producer resumes: it clears ``P_WAKE`` (the nap's), sees the flag up and posts. The
    thread finds nothing to read and sleeps again, flags untouched. R2, published during that
    nap, finds ``P_WAKE`` = 0 and posts nothing: the nap misses it (until ``park_s``, 50 ms in
    production, or the nap's own timer).

    The preemption is made deterministic by running the loop's steps inside the producer's
    call of ``_wake_consumers``, which is where a real preemption would put them."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    sleeper = _counting(monkeypatch, consumer)
    waker = RingWaker([consumer], park_s=LONG_PARK_S)

    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        sleeper.wait_entered(1)
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
        sleeper.wait_entered(2)  # the thread took R1's post, found nothing, slept again
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
            "the thread's empty wake-up used up P_WAKE and did not raise the flags again"
        )
    finally:
        waker.close()
        producer.close()
        consumer.close()
        ring.close()


def test_a_gated_consumers_nap_misses_the_commit_that_opens_its_gate(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same hole through the gate's wake word, with the public API only. ``b`` is gated
    on ``a``. While ``b``'s nap is armed, ``a`` commits without moving (a checkpointing reader
    commits on a timer whether or not it read anything, as ``MarketFeed.checkpoint`` does):
    that clears ``a``'s ``C_WAKE_GATED`` and posts ``b``, which finds nothing. The producer's
    publish then posts (``P_WAKE``) while the record is still gated: nothing again. When ``a``
    commits the record, no wake word is up: ``b``'s nap misses its record."""
    specs: list[ConsumerSpec | str] = ["a", ConsumerSpec("b", gates=("a",))]
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=specs)
    gate = ring.consumer("a", auto_commit=False)
    gated = ring.consumer("b")
    producer = ring.producer()
    sleeper = _counting(monkeypatch, gated)
    waker = RingWaker([gated], park_s=LONG_PARK_S)

    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        sleeper.wait_entered(1)
        nap: asyncio.Future[None] = loop.create_future()
        waker.arm(nap)
        gate.commit()  # nothing new: a checkpoint on a timer
        sleeper.wait_entered(2)
        producer.publish((1, 1))
        sleeper.wait_entered(3)
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
            f"{NAP_END_S} s: the thread's empty wake-ups used up the wake words"
        )
    finally:
        waker.close()
        producer.close()
        gate.close()
        gated.close()
        ring.close()


def test_close_after_a_consumer_was_closed_stops_every_thread(instance: str) -> None:
    """``_watch`` gives each thread its own handle so that a consumer closed before the waker
    (a test's crash) does no harm; but ``close`` wakes the threads through
    ``Consumer.unpark``, whose semaphore the consumer's close has closed: it raises
    ``ExistentialError``, and the threads after it are never woken nor joined."""
    rings = [Ring.create(instance, n, CODEC, capacity=16, consumers=["c"]) for n in ("a", "b")]
    consumers = [ring.consumer("c") for ring in rings]
    waker = RingWaker(consumers, park_s=LONG_PARK_S)
    try:
        consumers[0].close()
        try:
            waker.close()
        except posix_ipc.ExistentialError as exc:
            pytest.fail(f"close() after a consumer's close raised {exc!r}")
        assert not any(thread.is_alive() for thread in waker._threads)
    finally:
        for ring in rings:  # wake what is left: its own handle, as the thread has
            post = posix_ipc.Semaphore(ring.consumer_sem_name(0))
            post.release()
            post.close()
        for thread in waker._threads:
            thread.join(WAIT_S)
        for consumer in consumers:
            consumer.close()
        for ring in rings:
            ring.close()


def test_wakeups_counts_a_nap_once_when_two_rings_end_it(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wakeups`` is "naps ended by a ring". Both rings get a record during one nap, before
    the loop runs the settle: each thread sees the nap not done (its settle is only queued)
    and counts it."""
    rings = [Ring.create(instance, n, CODEC, capacity=16, consumers=["c"]) for n in ("a", "b")]
    consumers = [ring.consumer("c") for ring in rings]
    producers = [ring.producer() for ring in rings]
    sleepers = [_counting(monkeypatch, consumer) for consumer in consumers]
    waker = RingWaker(consumers, park_s=LONG_PARK_S)

    async def one_nap() -> None:
        loop = asyncio.get_running_loop()
        for sleeper in sleepers:
            sleeper.wait_entered(1)
        nap: asyncio.Future[None] = loop.create_future()
        waker.arm(nap)
        for producer in producers:
            producer.publish((1, 1))
        for sleeper in sleepers:  # both threads looked, before the loop ran anything
            sleeper.wait_entered(2)
        await asyncio.wait_for(nap, WAIT_S)
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
    """The threads do not wake per record: while disarmed the producer posts nothing, and an
    armed nap costs one post however many records follow (the first clears ``P_WAKE``)."""
    posts: list[str] = []
    real_post: Callable[[str, dict[str, posix_ipc.Semaphore]], None] = wait.post

    def counting_post(name: str, cache: dict[str, posix_ipc.Semaphore]) -> None:
        posts.append(name)
        real_post(name, cache)

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
        assert waker.wakeups == 1
    finally:
        waker.close()
        producer.close()
        consumer.close()
        ring.close()


def test_a_nap_left_armed_on_a_closed_loop_does_not_kill_the_thread(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post for a nap whose loop has closed: ``call_soon_threadsafe`` raises RuntimeError,
    which the thread swallows; it still ends the next loop's nap."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    sleeper = _counting(monkeypatch, consumer)
    waker = RingWaker([consumer], park_s=LONG_PARK_S)

    async def arm_and_leave() -> None:
        waker.arm(asyncio.get_running_loop().create_future())  # never disarmed

    async def nap_for_a_record() -> bool:
        nap: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waker.arm(nap)
        producer.publish((2, 2))
        ended = await _ended(nap)
        waker.disarm()
        return ended

    try:
        sleeper.wait_entered(1)
        asyncio.run(arm_and_leave())  # the loop closes with the nap armed
        producer.publish((1, 1))
        sleeper.wait_entered(2)  # the thread tried to settle it on the closed loop
        assert len(consumer.read()) == 1
        assert asyncio.run(nap_for_a_record())
    finally:
        waker.close()
        producer.close()
        consumer.close()
        ring.close()
