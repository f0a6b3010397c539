"""The consumer role: reads records in order, exactly once, at its own pace.

Each consumer owns one header line: its sequence (records consumed), heartbeat, pid, parked
flag and the mask of consumers it is gated on. ``poll`` and ``read`` never block; ``wait``,
``next`` and ``take`` idle through the configured wait strategy. With ``auto_commit`` (the
default) a record is released to the producer as soon as it is returned; a consumer that must
finish work first (a journal that fsyncs) passes ``auto_commit=False`` and calls ``commit``,
which is also what consumers gated on it wait for.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Generic, TypeVar

import posix_ipc

from shm import header as h
from shm.barrier import Gate, mask_indexes
from shm.errors import ConsumerDetachedError, RingError, TornReadError
from shm.liveness import pid_alive
from shm.wait import Parker, WaitStrategy, Yielding, post

if TYPE_CHECKING:
    from shm.ring import Ring

T = TypeVar("T")

_NO_GATE = 1 << 62


class Consumer(Generic[T]):
    """One declared consumer of a ring, attached by one process (single-threaded use)."""

    def __init__(
        self,
        ring: Ring[T],
        index: int,
        wait: WaitStrategy | None = None,
        *,
        auto_commit: bool = True,
        rejoin: bool = False,
    ) -> None:
        self.ring = ring
        self.index = index
        self.wait_strategy = wait if wait is not None else Yielding()
        words = ring.words
        self._words = words
        state = words[h.consumer_word(index, h.C_STATE)]
        name = ring.consumer_names().get(index, f"#{index}")
        if state == h.STATE_DETACHED:
            if not rejoin:
                raise ConsumerDetachedError(
                    f"ring {ring.name!r}: consumer {name!r} was detached; attach with "
                    "rejoin=True to continue from the producer's cursor (records in between "
                    "are lost to it)"
                )
            words[h.consumer_word(index, h.C_SEQUENCE)] = ring.cursor()
            words[h.consumer_word(index, h.C_STATE)] = h.STATE_ACTIVE
        elif state != h.STATE_ACTIVE:
            raise RingError(f"ring {ring.name!r}: consumer index {index} is not declared")
        holder = words[h.consumer_word(index, h.C_PID)]
        me = os.getpid()
        if holder and holder != me and pid_alive(holder):
            raise RingError(
                f"ring {ring.name!r}: consumer {name!r} is attached by live pid {holder}"
            )
        words[h.consumer_word(index, h.C_PID)] = me
        self.name = name
        self.auto_commit = auto_commit
        self._seq_word = h.consumer_word(index, h.C_SEQUENCE)
        self._state_word = h.consumer_word(index, h.C_STATE)
        self._beat_word = h.consumer_word(index, h.C_HEARTBEAT)
        self._view = memoryview(ring.region.buf)
        self._codec = ring.codec
        self._decode = ring.codec.decode_from
        self._mask = ring.mask
        self._slot = ring.slot_size
        self._slot_words = ring.slot_size // h.WORD
        self._data = ring.data_offset
        self._stamp0 = (ring.data_offset + ring.slot_size) // h.WORD - 1
        self._capacity = ring.capacity
        self._gate = Gate(words, mask_indexes(words[h.consumer_word(index, h.C_GATES)]))
        self._next = words[self._seq_word]  # crash-only: resume where the last holder stopped
        self._gate_limit = self._gate.minimum(_NO_GATE)
        self._parker: Parker | None = None
        self._sems: dict[str, posix_ipc.Semaphore] = {}
        self._closed = False
        self.heartbeat()

    # -- hot path --------------------------------------------------------------------------

    def poll(self) -> T | None:
        """The next record if one is ready, else ``None``. Never blocks."""
        n = self._next
        if n >= self._gate_limit:
            self._gate_limit = self._gate.minimum(_NO_GATE)
            if n >= self._gate_limit:
                return None
        words = self._words
        slot = n & self._mask
        stamp_word = self._stamp0 + slot * self._slot_words
        if words[stamp_word] != n + 1:
            self._check_lapped(words[stamp_word], n)
            return None
        item = self._decode(self._view, self._data + slot * self._slot)
        if words[stamp_word] != n + 1:
            raise self._torn(n, words[stamp_word])
        self._next = n + 1
        if self.auto_commit:
            words[self._seq_word] = n + 1
            if words[h.P_PARKED]:
                self._wake_producer()
        return item

    def read(self, max_batch: int = 256) -> list[T]:
        """Every ready record up to ``max_batch``, in order (possibly none). Never blocks."""
        n = self._next
        words = self._words
        hi = min(words[h.P_CURSOR], n + max_batch)
        if hi > self._gate_limit:
            self._gate_limit = self._gate.minimum(_NO_GATE)
            hi = min(hi, self._gate_limit)
        if hi <= n:
            # Nothing by the cursor. It may trail a producer that crashed between stamp and
            # cursor; poll looks at the stamp (and the gate), one record at a time.
            item = self.poll()
            return [] if item is None else [item]
        slot = n & self._mask
        first = min(hi - n, self._capacity - slot)  # up to the end of the buffer
        items = self._window(n, first)
        if first < hi - n:
            items += self._window(n + first, hi - n - first)  # the wrapped part
        self._next = hi
        if self.auto_commit:
            words[self._seq_word] = hi
            if words[h.P_PARKED]:
                self._wake_producer()
        return items

    def _window(self, n: int, count: int) -> list[T]:
        """Decode ``count`` contiguous slots from sequence ``n``, stamps checked both sides."""
        words = self._words
        slot = n & self._mask
        first_stamp = self._stamp0 + slot * self._slot_words
        last_stamp = first_stamp + (count - 1) * self._slot_words
        if words[last_stamp] != n + count:  # before: the last slot implies all earlier ones
            raise self._torn(n + count - 1, words[last_stamp])
        items = self._codec.decode_window(self._view, self._data + slot * self._slot, count)
        if words[first_stamp] != n + 1 or words[last_stamp] != n + count:  # after
            raise self._torn(n, words[first_stamp])
        return items

    def commit(self, sequence: int | None = None) -> None:
        """Release records up to ``sequence`` (default: all returned so far) to the producer
        and to consumers gated on this one."""
        upto = self._next if sequence is None else sequence
        if not self._words[self._seq_word] <= upto <= self._next:
            raise RingError(
                f"consumer {self.name!r}: commit {upto} is outside "
                f"{self._words[self._seq_word]}..{self._next}"
            )
        self._words[self._seq_word] = upto
        if self._words[h.P_PARKED]:
            self._wake_producer()

    # -- waiting ---------------------------------------------------------------------------

    def ready(self) -> bool:
        """True when ``poll`` would return a record."""
        n = self._next
        if n >= self._gate_limit:
            self._gate_limit = self._gate.minimum(_NO_GATE)
            if n >= self._gate_limit:
                return False
        return bool(self._words[self._stamp0 + (n & self._mask) * self._slot_words] == n + 1)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Idle until a record is ready (True) or ``timeout_s`` passes (False)."""
        if self.ready():
            return True
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        strategy = self.wait_strategy
        parker = self._consumer_parker()
        rounds = 0
        while not self.ready():
            if rounds & 63 == 0:
                self.heartbeat()
                if self._words[self._state_word] != h.STATE_ACTIVE:
                    raise ConsumerDetachedError(
                        f"ring {self.ring.name!r}: consumer {self.name!r} was detached at "
                        f"sequence {self._next}"
                    )
                if deadline is not None and time.monotonic() > deadline:
                    return False
            strategy.idle(rounds, self.ready, parker)
            rounds += 1
        return True

    def next(self, timeout_s: float | None = None) -> T | None:
        """Wait for and return the next record (``None`` on timeout)."""
        if self.wait(timeout_s):
            return self.poll()
        return None

    def take(self, max_batch: int = 256, timeout_s: float | None = None) -> list[T]:
        """Wait for at least one record, then return up to ``max_batch`` of them."""
        if self.wait(timeout_s):
            return self.read(max_batch)
        return []

    # -- bookkeeping -----------------------------------------------------------------------

    @property
    def sequence(self) -> int:
        """Records this consumer has read (the next sequence it will read)."""
        return self._next

    def heartbeat(self) -> None:
        self._words[self._beat_word] = time.monotonic_ns()

    def _check_lapped(self, stamp: int, n: int) -> None:
        if stamp > n + 1:
            raise ConsumerDetachedError(
                f"ring {self.ring.name!r}: consumer {self.name!r} at sequence {n} was lapped "
                f"(slot holds record {stamp - 1}); it had been detached"
            )

    def _torn(self, n: int, stamp: int) -> TornReadError:
        return TornReadError(
            f"ring {self.ring.name!r}: consumer {self.name!r} read record {n} while its slot "
            f"changed to stamp {stamp}; the consumer had been detached and lapped"
        )

    def _consumer_parker(self) -> Parker:
        if self._parker is None:
            self._parker = Parker(
                self._words,
                h.consumer_word(self.index, h.C_PARKED),
                self.ring.consumer_sem_name(self.index),
                wake_word=h.P_WAKE,
            )
        return self._parker

    def _wake_producer(self) -> None:
        post(self.ring.producer_sem_name(), self._sems)

    def close(self) -> None:
        """Detach this process; the line stays declared and keeps gating the producer, so a
        restarted process resumes where this one stopped."""
        if self._closed:
            return
        self._closed = True
        if self.auto_commit:
            self._words[self._seq_word] = self._next
        if self._words[h.consumer_word(self.index, h.C_PID)] == os.getpid():
            self._words[h.consumer_word(self.index, h.C_PID)] = 0
        if self._parker is not None:
            self._parker.close()
        for sem in self._sems.values():
            sem.close()
        self._view.release()
