"""An event loop's sleep that a record on any of its input rings ends, or room in its output
ring: ``RingWaker``.

A process whose asyncio loop polls rings without blocking (the gateway) must notice a record
within a millisecond while anything is going on, and should cost nothing while nothing is.
Napping a millisecond at a time does the first and costs a few percent of a core forever
(1000 wake-ups a second). So after a while with nothing to do the loop sleeps deeply instead,
and a record ends that sleep.

The loop watches each ring's ``Consumer.watch_fd``, the read end of a FIFO that the ring's
producer writes a byte to at its next publish while the consumer's flag says ``WATCHED``
(``shm/wait.py``). ``arm(nap)`` raises the flags, so the next publish of each ring writes its
FIFO, and the loop's own poll (epoll, with its sockets) wakes; ``disarm``, after every nap,
lowers them again. Arming and disarming are word stores in shared memory and one fence per
ring: no syscall. (Before, a thread per ring slept on the ring's semaphore and handed each
wake-up to the loop with ``call_soon_threadsafe``: two wake-ups a record, p50 47-70 us and
55-70 us of CPU each on the 2-core VM, against 30 us and 30 us now.)

A post uses up the ring's wake word (the producer clears it before it writes), so a FIFO
read with nothing to read behind it (the record was read already, or is still gated) raises
the flags again, as each round of ``Parker.park`` does; else no later publish of that nap
would post. The parking protocol can miss a post (``shm/wait.py``): every ``park_s`` the
waker looks at the rings of an armed nap, which bounds the delay of that rare miss.
``wakeups`` counts the naps a ring actually ended.

A loop whose records wait for room in its output ring (the gateway's commands, the router's
ring full) arms its nap with ``room_for``, the records it must fit: the producer's flag is
raised the same way, and a consumer's commit, which makes the room, writes the producer's
FIFO. Without it only the consumer's answers on the input rings ended such a nap, and a
commit that answers nothing (the router's step of ended balance watches) left the records
waiting for the nap's timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from typing import Any

from shm.consumer import Consumer
from shm.producer import Producer
from shm.wait import WATCHED

#: How often the waker looks at an armed nap's rings (a post the parking protocol missed is
#: noticed by then).
PARK_S = 0.05


def settle(nap: asyncio.Future[None]) -> None:
    if not nap.done():
        nap.set_result(None)


async def nap_for(
    nap: asyncio.Future[None], timeout_s: float, waker: RingWaker | None, room_for: int = 0
) -> None:
    """Await ``nap`` (which the caller's own wake-ups settle) for ``timeout_s`` at most; with
    ``waker``, a record on one of its rings ends it too, and so does room for ``room_for``
    records in its producer's ring, when it has one."""
    timer = nap.get_loop().call_later(timeout_s, settle, nap)
    if waker is not None:
        waker.arm(nap, room_for)
    try:
        await nap
    finally:
        timer.cancel()
        if waker is not None:
            waker.disarm()


class RingWaker:
    """Ends an armed nap when one of ``consumers``' rings has a record, or ``producer``'s
    ring the room the nap was armed for, through their watched FIFOs. Arm, disarm and close
    on the loop's thread; close before the consumers and the producer."""

    def __init__(
        self,
        consumers: Sequence[Consumer[Any]],
        park_s: float = PARK_S,
        producer: Producer[Any] | None = None,
    ) -> None:
        self.consumers = list(consumers)
        self.producer = producer
        self.park_s = park_s
        self._room_for = 0  # the records an armed nap waits to fit in the producer's ring
        self._armed: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # whose poll watches the FIFOs
        self._look_timer: asyncio.TimerHandle | None = None
        #: its own descriptors of the consumers' FIFOs: a loop's registration is by number,
        #: so two wakers over one consumer (a replacement) must not share one, and a
        #: consumer closed first must not leave the loop a number the process reuses
        self._fds = [os.dup(c.watch_fd()) for c in self.consumers]
        self._room_fd = -1 if producer is None else os.dup(producer.watch_fd())
        self.wakeups = 0  # naps ended by a ring (for tests and stats)
        for consumer in self.consumers:
            consumer.lower_park_flag()
        if producer is not None:
            producer.lower_park_flag()

    def arm(self, nap: asyncio.Future[None], room_for: int = 0) -> None:
        """Let a record on a ring end ``nap`` (a future of the running loop), from now until
        ``disarm``, and room for ``room_for`` records in the producer's ring (0: not waited
        for); a record or the room already there ends it at once."""
        loop = nap.get_loop()
        if loop is not self._loop:
            self._watch(loop)
        self._armed = nap
        for consumer in self.consumers:
            consumer.raise_park_flag(WATCHED)
        if room_for and self.producer is not None:
            self._room_for = room_for
            self.producer.raise_park_flag(WATCHED)
        if any(c.published() for c in self.consumers) or self._has_room():
            # settled on the loop's next round, not here: awaiting a future that is
            # already done does not yield, and a loop whose ring never empties (a
            # reader that leaves records unread) would then never run anything else
            loop.call_soon(self._settle, nap)

    @property
    def armed(self) -> bool:
        """Whether a nap is armed (the loop sleeps until a ring or its own wake-up ends it)."""
        return self._armed is not None

    def disarm(self) -> None:
        self._armed = None
        for consumer in self.consumers:
            consumer.lower_park_flag()
        if self._room_for and self.producer is not None:
            self._room_for = 0
            self.producer.lower_park_flag()

    def _has_room(self) -> bool:
        producer = self.producer
        return bool(self._room_for) and producer is not None and producer.has_room(self._room_for)

    def close(self) -> None:
        """Stop watching the FIFOs and close this waker's descriptors of them (a nap still
        armed is disarmed; the flags of one that is not are left to whoever raised them)."""
        if self._armed is not None:
            self.disarm()
        self._unwatch()
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        if self._room_fd >= 0:
            os.close(self._room_fd)
            self._room_fd = -1

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._unwatch()  # another loop's (a test's asyncio.run after another)
        for consumer, fd in zip(self.consumers, self._fds, strict=True):
            loop.add_reader(fd, self._posted, consumer, fd)
        if self._room_fd >= 0:
            loop.add_reader(self._room_fd, self._room_posted)
        self._loop = loop
        self._look_timer = loop.call_later(self.park_s, self._look)

    def _unwatch(self) -> None:
        loop, self._loop = self._loop, None
        if self._look_timer is not None:
            self._look_timer.cancel()
            self._look_timer = None
        if loop is None or loop.is_closed():
            return
        for fd in self._fds:
            loop.remove_reader(fd)
        if self._room_fd >= 0:
            loop.remove_reader(self._room_fd)

    def _posted(self, consumer: Consumer[Any], fd: int) -> None:
        """A producer wrote ``consumer``'s FIFO: end the armed nap if its ring has a record
        (or its line was detached: a read says so)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(fd, 4096):
                pass
        nap = self._armed
        if nap is None or nap.done():
            return  # late: the loop woke for another reason, and looks anyway
        if not consumer.published() and consumer.attached():
            consumer.raise_park_flag(WATCHED)  # the post used the wake word up: raise it
            if not consumer.published():  # fenced: a record from now on posts
                return
        self._settle(nap)

    def _room_posted(self) -> None:
        """A consumer of the producer's ring committed while the flag said ``WATCHED``: end
        the armed nap if the room it waits for is there (a commit posts while the flag stays
        raised, so a later one posts again)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._room_fd, 4096):
                pass
        nap = self._armed
        if nap is not None and not nap.done() and self._has_room():
            self._settle(nap)

    def _look(self) -> None:
        """Every ``park_s``: end an armed nap whose ring has a record, or whose producer's
        ring has the room, all the same (a post the parking protocol missed)."""
        nap = self._armed
        if (
            nap is not None
            and not nap.done()
            and (any(c.published() or not c.attached() for c in self.consumers) or self._has_room())
        ):
            self._settle(nap)
        if self._loop is not None:
            self._look_timer = self._loop.call_later(self.park_s, self._look)

    def _settle(self, nap: asyncio.Future[None]) -> None:
        """End ``nap`` for a ring (counted once, if it ends it)."""
        if not nap.done():
            self.wakeups += 1
            nap.set_result(None)
