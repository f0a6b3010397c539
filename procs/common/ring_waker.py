"""An event loop's sleep that a record on any of its input rings ends: ``RingWaker``.

A process whose asyncio loop polls rings without blocking (the gateway) must notice a record
within a millisecond while anything is going on, and should cost nothing while nothing is.
Napping a millisecond at a time does the first and costs a few percent of a core forever
(1000 wake-ups a second). So after a while with nothing to do the loop sleeps deeply instead:
``arm(nap)`` hands the nap's future to one thread per ring, each parked on its consumer's
semaphore (``Consumer.park``: the producer posts it when it sees the parked flag, see
``shm/wait.py``), and the first to see a record settles the future on the loop. The loop's
own wake-ups (a client's request, a timer) settle it as before; ``disarm`` follows every nap.

The threads only load ring words (``Consumer.published``) and sleep in ``sem_timedwait`` with
the GIL released: they take nothing from the loop while it is busy, since they wait on a
condition until the next ``arm``. A park ends every ``park_s`` at the latest, which bounds the
delay of the rare wake-up that the parking protocol can miss (``shm/wait.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from shm.consumer import Consumer

#: The longest one park lasts before its thread looks again.
PARK_S = 0.05


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
        self._cond = threading.Condition()
        self._armed: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self._generation = 0  # of arm(): a thread wakes a nap once
        self._closed = False
        self.wakeups = 0  # naps ended by a ring (for tests and stats)
        self._threads = [
            threading.Thread(
                target=self._watch, args=(c,), name=f"waker-{c.ring.name}", daemon=True
            )
            for c in self.consumers
        ]
        for thread in self._threads:
            thread.start()

    def arm(self, nap: asyncio.Future[None]) -> None:
        """Let the threads end ``nap`` (a future of the running loop) when a ring has a
        record, from now until ``disarm``."""
        with self._cond:
            self._armed = (nap.get_loop(), nap)
            self._generation += 1
            self._cond.notify_all()

    @property
    def armed(self) -> bool:
        """Whether a nap is armed (the loop sleeps until a ring or its own wake-up ends it)."""
        return self._armed is not None

    def disarm(self) -> None:
        with self._cond:
            self._armed = None

    def close(self) -> None:
        """Stop the threads (each within its current park) and wait for them."""
        with self._cond:
            self._closed = True
            self._armed = None
            self._cond.notify_all()
        for consumer in self.consumers:
            consumer.unpark()
        for thread in self._threads:
            thread.join(self.park_s * 4)

    def _watch(self, consumer: Consumer[Any]) -> None:
        cond, done = self._cond, 0  # the generation this thread last woke or saw end
        while True:
            with cond:
                while not self._closed and (self._armed is None or self._generation == done):
                    cond.wait()
                if self._closed:
                    return
                generation = self._generation
            if consumer.published() or consumer.park(self.park_s):
                with cond:
                    armed = self._armed if self._generation == generation else None
                    done = generation
                    if armed is not None:
                        self.wakeups += 1
                if armed is not None:
                    loop, nap = armed
                    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                        loop.call_soon_threadsafe(settle, nap)
