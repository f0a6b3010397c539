"""An event loop's sleep that a record on any of its input rings ends: ``RingWaker``.

A process whose asyncio loop polls rings without blocking (the gateway) must notice a record
within a millisecond while anything is going on, and should cost nothing while nothing is.
Napping a millisecond at a time does the first and costs a few percent of a core forever
(1000 wake-ups a second). So after a while with nothing to do the loop sleeps deeply instead,
and a record ends that sleep.

One thread per ring sleeps on its consumer's semaphore all the time (its own handle of it,
``Consumer.sleeper``; GIL released). ``arm(nap)`` raises the consumers' parked flags, so each
producer posts the semaphore at its next publish, as it would for a parked consumer; the woken
thread settles the nap on the loop. ``disarm``, after every nap, lowers them again. Arming and
disarming are word stores in shared memory and one fence per ring: no syscall, no thread woken.
(The first version woke each thread through a ``threading.Condition`` at every arm, to park
anew: under load that cost the gateway about 8% of its time in futex wake-ups and GIL
hand-offs.)

A post uses up the ring's wake word (the producer clears it before it posts), so a thread woken
with nothing to read (the record was read already, or is still gated) raises the flags again
before it sleeps, as each round of ``Parker.park`` does; else no later publish of that nap
would post. A thread also wakes every ``park_s`` and settles an armed nap whose ring has a
record, which bounds the delay of the rare post that the parking protocol can miss
(``shm/wait.py``). A thread may settle a nap late, after the loop woke for another reason;
settling a nap that is done does nothing, and a later nap ended early just looks again.
``wakeups`` counts, on the loop's thread, the naps a ring actually ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from shm.consumer import Consumer
from shm.wait import Sleeper

#: The longest one park lasts before its thread looks again.
PARK_S = 0.05
#: How long ``close`` waits for each thread it has woken.
CLOSE_WAIT_S = 5.0


def settle(nap: asyncio.Future[None]) -> None:
    if not nap.done():
        nap.set_result(None)


async def nap_for(nap: asyncio.Future[None], timeout_s: float, waker: RingWaker | None) -> None:
    """Await ``nap`` (which the caller's own wake-ups settle) for ``timeout_s`` at most; with
    ``waker``, a record on one of its rings ends it too."""
    timer = nap.get_loop().call_later(timeout_s, settle, nap)
    if waker is not None:
        waker.arm(nap)
    try:
        await nap
    finally:
        timer.cancel()
        if waker is not None:
            waker.disarm()


class RingWaker:
    """A thread per consumer in ``consumers`` that ends an armed nap when its ring has a
    record. Arm, disarm and close on the loop's thread; close before the consumers."""

    def __init__(self, consumers: Sequence[Consumer[Any]], park_s: float = PARK_S) -> None:
        self.consumers = list(consumers)
        self.park_s = park_s
        self._armed: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self._closed = False
        self.wakeups = 0  # naps ended by a ring (for tests and stats)
        for consumer in self.consumers:
            consumer.lower_park_flag()  # makes its parker here, before a thread shares it
        #: handles of the threads' semaphores for ``close`` to post on: its own, so that a
        #: consumer closed first (a test's crash) does not stop the threads being woken
        self._posts = [Sleeper(c.ring.consumer_sem_name(c.index)) for c in self.consumers]
        self._threads = [
            threading.Thread(
                target=self._watch,
                args=(c, c.sleeper()),
                name=f"waker-{c.ring.name}",
                daemon=True,
            )
            for c in self.consumers
        ]
        for thread in self._threads:
            thread.start()

    def arm(self, nap: asyncio.Future[None]) -> None:
        """Let the threads end ``nap`` (a future of the running loop) when a ring has a
        record, from now until ``disarm``; a record already there ends it at once."""
        self._armed = (nap.get_loop(), nap)
        for consumer in self.consumers:
            consumer.raise_park_flag()
        for consumer in self.consumers:
            if consumer.published():
                # settled on the loop's next round, not here: awaiting a future that is
                # already done does not yield, and a loop whose ring never empties (a
                # reader that leaves records unread) would then never run anything else
                nap.get_loop().call_soon(self._settle, nap)
                return

    @property
    def armed(self) -> bool:
        """Whether a nap is armed (the loop sleeps until a ring or its own wake-up ends it)."""
        return self._armed is not None

    def disarm(self) -> None:
        self._armed = None
        for consumer in self.consumers:
            consumer.lower_park_flag()

    def close(self) -> None:
        """Stop the threads (each within its current sleep) and wait for them."""
        self._closed = True
        self.disarm()
        for post in self._posts:
            post.post()
        for thread in self._threads:
            thread.join(CLOSE_WAIT_S)  # posted: each wakes at once, but for a busy GIL
        for post in self._posts:
            post.close()

    def _settle(self, nap: asyncio.Future[None]) -> None:
        """End ``nap`` for a ring, on the loop's thread (counted once, if it ends it)."""
        if not nap.done():
            self.wakeups += 1
            nap.set_result(None)

    def _watch(self, consumer: Consumer[Any], sleeper: Sleeper) -> None:
        """The thread's loop. It sleeps on its own ``sleeper`` (which it closes), so a consumer
        closed before the waker (a test's crash) leaves it sleeping on a live semaphore; it
        reads the consumer's words only while a nap is armed."""
        try:
            while True:
                sleeper.sleep(self.park_s)
                if self._closed:
                    return
                armed = self._armed
                if armed is None:
                    continue
                if not consumer.published():
                    consumer.raise_park_flag()  # the post used the wake word up: raise it
                    if not consumer.published():  # fenced: a record from now on posts
                        continue
                loop, nap = armed
                if nap.done():  # a read of a flag: the loop's own wake-up came first
                    continue
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._settle, nap)
        finally:
            sleeper.close()
