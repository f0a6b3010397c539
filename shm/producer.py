"""The producer role: claims sequences, writes slots, never laps an active consumer.

Hot path cost is what limits a Python ring, so ``publish`` is one comparison against a cached
limit, one codec call that writes body and stamp, one cursor store and one load of the
"someone is parked" word. The limit (slowest active consumer + capacity) is re-read from the
header only when the cached value says the ring may be full, like the Disruptor's cached
gating sequence.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

import posix_ipc

from shm import header as h
from shm.barrier import Gate
from shm.errors import RingError, RingFullError
from shm.liveness import pid_alive
from shm.wait import Parker, WaitStrategy, Yielding, post

if TYPE_CHECKING:
    from shm.ring import Ring

T = TypeVar("T")


class Producer(Generic[T]):
    """The one writer of a ring. Use from a single thread of a single process.

    ``publish`` / ``publish_batch`` wait (per the wait strategy) while the ring is full;
    ``try_publish`` / ``try_publish_batch`` return ``False`` instead, for callers that must not
    block (an event loop). ``close`` releases the role; records already published stay.
    """

    def __init__(self, ring: Ring[T], wait: WaitStrategy | None = None) -> None:
        self.ring = ring
        self.wait = wait if wait is not None else Yielding()
        words = ring.words
        holder = words[h.P_PID]
        me = os.getpid()
        if holder and holder != me and pid_alive(holder):
            raise RingError(f"ring {ring.name!r} already has a live producer, pid {holder}")
        words[h.P_PID] = me
        self._words = words
        self._view = memoryview(ring.region.buf)
        self._encode = ring.codec.encode_into
        self._mask = ring.mask
        self._slot = ring.slot_size
        self._data = ring.data_offset
        self._capacity = ring.capacity
        self._gate = Gate(words, range(ring.max_consumers))  # inactive lines are skipped
        self._next = ring.cursor()  # crash-only: recovery and start are the same path
        words[h.P_CURSOR] = self._next
        self._limit = self._refresh_limit()
        self._parker: Parker | None = None
        self._sems: dict[str, posix_ipc.Semaphore] = {}
        self._closed = False
        self.heartbeat()

    # -- hot path --------------------------------------------------------------------------

    def publish(self, item: T) -> int:
        """Write one record, waiting while the ring is full; returns its sequence."""
        n = self._next
        if n >= self._limit:
            self._await_space(n + 1, None)
        self._encode(self._view, self._data + (n & self._mask) * self._slot, item, n + 1)
        self._next = n + 1
        words = self._words
        words[h.P_CURSOR] = n + 1
        if words[h.P_WAKE]:
            self._wake_consumers()
        return n

    def try_publish(self, item: T) -> bool:
        """Write one record if a slot is free now; ``False`` (nothing written) if full."""
        n = self._next
        if n >= self._limit:
            self._limit = self._refresh_limit()
            if n >= self._limit:
                return False
        self.publish(item)
        return True

    def publish_batch(self, items: Sequence[T]) -> int:
        """Claim ``len(items)`` slots (waiting for room), write them, publish the cursor once.

        Returns the sequence of the last record. Batches larger than the ring are written in
        ring-sized chunks."""
        encode = self._encode
        view = self._view
        mask = self._mask
        slot = self._slot
        data = self._data
        total = len(items)
        done = 0
        while done < total:
            n = self._next
            count = min(total - done, self._capacity)
            if n + count > self._limit:
                self._await_space(n + count, None)
            for k in range(count):
                seq = n + k
                encode(view, data + (seq & mask) * slot, items[done + k], seq + 1)
            self._next = n + count
            self._words[h.P_CURSOR] = n + count
            done += count
        if self._words[h.P_WAKE]:
            self._wake_consumers()
        return self._next - 1

    def try_publish_batch(self, items: Sequence[T]) -> bool:
        """All of ``items`` if they fit now, else nothing and ``False``."""
        need = self._next + len(items)
        if need > self._limit:
            self._limit = self._refresh_limit()
            if need > self._limit or len(items) > self._capacity:
                return False
        self.publish_batch(items)
        return True

    # -- slow path -------------------------------------------------------------------------

    @property
    def sequence(self) -> int:
        """Records published so far (the next sequence to be written)."""
        return self._next

    def _refresh_limit(self) -> int:
        return self._gate.minimum(self._next) + self._capacity

    def _await_space(self, need: int, timeout_s: float | None) -> None:
        """Wait until every active consumer has freed up to sequence ``need - capacity``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        rounds = 0

        def ready() -> bool:
            self._limit = self._refresh_limit()
            return need <= self._limit

        while not ready():
            if deadline is not None and time.monotonic() > deadline:
                raise RingFullError(
                    f"ring {self.ring.name!r} full for {timeout_s}s: need sequence {need}, "
                    f"slowest consumer allows {self._limit}"
                )
            if rounds & 63 == 0:
                self.heartbeat()
            self.wait.idle(rounds, ready, self._producer_parker())
            rounds += 1

    def _producer_parker(self) -> Parker:
        if self._parker is None:
            self._parker = Parker(self._words, h.P_PARKED, self.ring.producer_sem_name())
        return self._parker

    def _wake_consumers(self) -> None:
        """Post every parked consumer's semaphore. Clear the wake word first: a consumer that
        parks after the clear sets it again, so no parker is forgotten (module docstring of
        ``shm.wait`` covers the remaining race)."""
        words = self._words
        words[h.P_WAKE] = 0
        ring = self.ring
        for index in range(ring.max_consumers):
            if words[h.consumer_word(index, h.C_PARKED)]:
                post(ring.consumer_sem_name(index), self._sems)

    def heartbeat(self) -> None:
        self._words[h.P_HEARTBEAT] = time.monotonic_ns()

    def close(self) -> None:
        """Give up the role (the cursor stays; a new producer continues from it)."""
        if self._closed:
            return
        self._closed = True
        if self._words[h.P_PID] == os.getpid():
            self._words[h.P_PID] = 0
        if self._parker is not None:
            self._parker.close()
        for sem in self._sems.values():
            sem.close()
        self._view.release()
