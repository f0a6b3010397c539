"""The consumer role: reads records in order, exactly once, at its own pace.

Each consumer owns one header line: its sequence (records consumed), heartbeat, pid, parked
flag and the mask of consumers it is gated on. ``poll`` and ``read`` never block; ``wait``,
``next`` and ``take`` idle through the configured wait strategy.

Committing. With ``auto_commit`` (the default) records are released to the producer (and to
consumers gated on this one) after each ``read`` batch, every ``commit_every`` ``poll``s (at
most a quarter of the ring's capacity), and
whenever the consumer finds nothing to read; storing the sequence on every poll would cost a
tenth of a poll. So a process that crashes may get up to ``commit_every`` records again when it
restarts: redelivery, never loss. A consumer that must finish work first (a journal that
fsyncs) passes ``auto_commit=False`` and calls ``commit`` itself.

Detaching. A detached line gates nobody, so the producer may overwrite what it had not read.
Its process learns it at its next slow-path check (the end of what it knew was published, a
commit, a wait); a record it reads before that, from a slot the producer is rewriting at the
same instant, can pass the seqlock's check (the slot keeps its old stamp until the new body is
written). So detach only the lines of processes that are gone (what the supervisor does);
checking on every record would cost every poll a load (about 8% of the ring's rate).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shm import header as h
from shm import roles
from shm.barrier import Gate, mask_indexes
from shm.cells import Cell
from shm.errors import (
    ConsumerDetachedError,
    HeaderMismatchError,
    RingError,
    TornReadError,
    alive,
)
from shm.liveness import holder_alive, own_start
from shm.wait import PARKED, BusySpin, Parker, Posts, WaitStrategy, Yielding, post

if TYPE_CHECKING:
    from shm.ring import Ring

T = TypeVar("T")

_NO_GATE = 1 << 62
_PARKED = h.P_PARKED
_CURSOR = h.P_CURSOR


def _rejoin(ring: Ring[Any], index: int) -> None:
    """Make detached line ``index`` active again, from the producer's cursor."""
    words = ring.words
    words[h.consumer_word(index, h.C_PARKED)] = 0  # a holder killed while parked raised it
    words[h.consumer_word(index, h.C_SEQUENCE)] = ring.cursor()
    words[h.consumer_word(index, h.C_GENERATION)] += 1  # an older handle of it: stale
    words[h.consumer_word(index, h.C_STATE)] = h.STATE_ACTIVE
    # from the cursor once active: a producer that refreshed its limit in between may have
    # run a lap past the cursor read before (``Ring.declare_consumer``)
    words[h.consumer_word(index, h.C_SEQUENCE)] = ring.cursor()


def _holds(words: memoryview, index: int, holder: int) -> bool:
    """Line ``index``'s ``holder`` pid is alive, and the very process that took it."""
    return holder_alive(holder, words[h.consumer_word(index, h.C_PID_START)])


def _take(ring: Ring[Any], index: int, me: int) -> None:
    """Write this process into line ``index``: its start time first, so a reader never
    sees its pid with the start of the line's last holder; one more handle of it here."""
    ring.words[h.consumer_word(index, h.C_PID_START)] = own_start()
    ring.words[h.consumer_word(index, h.C_PID)] = me
    roles.took(ring.instance, ring.name, ring.created_ns, index)


def _check_line(ring: Ring[Any], index: int, name: str, state: int) -> None:
    """Refuse a line whose gate mask or sequence no ring could have written: a gate past the
    table would read a record's bytes as a consumer line, a sequence off the ring would skip
    records (past the cursor) or read overwritten ones (a lap behind it, on an active line,
    which the producer cannot lap)."""
    words = ring.words
    gates = words[h.consumer_word(index, h.C_GATES)]
    if not 0 <= gates < 1 << ring.max_consumers or gates >> index & 1:
        raise HeaderMismatchError(
            ring.region.posix_name,
            f"consumer {name!r} gates",
            f"a mask of lines 0..{ring.max_consumers - 1} other than its own ({index})",
            gates,
        )
    if state == h.STATE_ACTIVE:  # a detached line rejoins at the cursor, whatever it held
        sequence = words[h.consumer_word(index, h.C_SEQUENCE)]
        cursor = ring.cursor()  # after: it only grows, and never a lap past an active line
        still = words[h.consumer_word(index, h.C_STATE)] == h.STATE_ACTIVE  # not detached since
        if still and not max(0, cursor - ring.capacity) <= sequence <= cursor:
            raise HeaderMismatchError(
                ring.region.posix_name,
                f"consumer {name!r} sequence",
                f"{max(0, cursor - ring.capacity)}..{cursor} (the cursor, less a lap at most)",
                sequence,
            )


class Consumer(Generic[T]):
    """One declared consumer of a ring, attached by one process (single-threaded use)."""

    _next = Cell()  # the next sequence to read, in the compiled poll's cell
    _slow_at = Cell()  # where poll next takes the slow path, likewise

    def __init__(
        self,
        ring: Ring[T],
        index: int,
        wait: WaitStrategy | None = None,
        *,
        auto_commit: bool = True,
        commit_every: int = 64,
        rejoin: bool = False,
    ) -> None:
        ring._check_index(index)  # else the line read and written is a record's (review 119)
        self.ring = ring
        self.index = index
        self.wait_strategy = wait if wait is not None else Yielding()
        self._words = words = ring.words
        state = words[h.consumer_word(index, h.C_STATE)]
        name = ring.consumer_names().get(index, f"#{index}")
        if state == h.STATE_DETACHED and not rejoin:
            raise ConsumerDetachedError(
                f"ring {ring.name!r}: consumer {name!r} was detached; attach with "
                "rejoin=True to continue from the producer's cursor (records in between "
                "are lost to it)"
            )
        if state not in (h.STATE_ACTIVE, h.STATE_DETACHED):
            raise RingError(f"ring {ring.name!r}: consumer index {index} is not declared")
        holder = words[h.consumer_word(index, h.C_PID)]
        me = os.getpid()
        if holder and holder != me and _holds(words, index, holder):  # before any change
            raise RingError(
                f"ring {ring.name!r}: consumer {name!r} is attached by live pid {holder}"
            )
        _check_line(ring, index, name, state)  # before the line is taken or its words used
        if state == h.STATE_DETACHED:
            _rejoin(ring, index)
        _take(ring, index, me)
        self.name = name
        self.auto_commit = auto_commit
        self._seq_word = h.consumer_word(index, h.C_SEQUENCE)
        self._state_word = h.consumer_word(index, h.C_STATE)
        self._beat_word = h.consumer_word(index, h.C_HEARTBEAT)
        self._generation_word = h.consumer_word(index, h.C_GENERATION)
        self._generation = words[self._generation_word]  # the line's owner this one is
        self._wake_gated_word = h.consumer_word(index, h.C_WAKE_GATED)
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
        self._gated = bool(self._gate)
        self._shift = ring.shift
        # One attribute load instead of nine on the reference path (~25% of its poll).
        self._hot = (
            words,
            self._view,
            self._decode,
            self._mask,
            self._stamp0,
            self._slot_words,
            self._data,
            self._slot,
            ring.shift,
        )
        start = words[self._seq_word]  # crash-only: resume where the last holder stopped
        # The compiled poll owns the sequence and the slow-path bound in closure cells, as the
        # producer's publish does; _next and _slow_at are Cell attributes over them.
        compiled, self._get_next, self._set_next, self._get_slow_at, self._set_slow_at = (
            self._compile_poll(start)
        )
        self.poll = compiled  # type: ignore[method-assign]  # same contract
        self._available = start  # records below this are known published (see _probe)
        self._commit_every = max(1, min(commit_every, self._capacity // 4))
        self._commit_at = start + self._commit_every
        self._parker: Parker | None = None
        self._sems: Posts = {}
        self._closed = False
        self.heartbeat()

    # -- hot path --------------------------------------------------------------------------

    def poll(self) -> T | None:
        """The next record if one is ready, else ``None``. Never blocks.

        This is the reference implementation; each instance runs the compiled equivalent
        (``_compile_poll``), and a contract test checks that both read the same records."""
        n = self._next
        if n >= self._slow_at and not self._slow_path(n):
            return None
        words, view, decode, mask, stamp0, slot_words, data, slot, shift = self._hot
        index = n & mask
        item = decode(view, data + index * slot)
        if words[stamp0 + index * slot_words] != (n >> shift) + 1:  # after: still our record
            raise self._torn(n, words[stamp0 + index * slot_words])
        self._next = n + 1
        return item

    def _compile_poll(
        self, start: int
    ) -> tuple[
        Callable[[], T | None],
        Callable[[], int],
        Callable[[int], None],
        Callable[[], int],
        Callable[[int], None],
    ]:
        """``poll`` as a closure over cells, plus accessors for the sequence and the
        slow-path bound it keeps there: the reference method's logic with no attribute load or
        store per record (measured ~25% of a poll, which is half of the ring's cost between
        two processes)."""
        words, view, decode, mask, stamp0, slot_words, data, slot, shift = self._hot
        # Weakly: the closure is stored on the consumer (self.poll), and a strong reference
        # back would make every consumer a cycle, freed only by a full collection (which
        # gc_policy turns off), its view of the segment exported until then.
        me = weakref.ref(self)
        end = data + (mask + 1) * slot
        nxt = slow_at = start
        # record nxt's slot offset, its stamp word and the stamp it must hold: stepped per
        # record, derived again by set_next for every other path that moves the sequence
        offset = data + (start & mask) * slot
        stamp_at = stamp0 + (start & mask) * slot_words
        stamp = (start >> shift) + 1

        def poll() -> T | None:
            nonlocal nxt, offset, stamp_at, stamp
            n = nxt
            if n >= slow_at and not alive(me, "Consumer")._slow_path(n):
                return None
            item = decode(view, offset)
            if words[stamp_at] != stamp:  # after: still our record
                raise alive(me, "Consumer")._torn(n, words[stamp_at])
            nxt = n + 1
            offset += slot
            stamp_at += slot_words
            if offset == end:
                offset, stamp_at, stamp = data, stamp0, stamp + 1
            return item

        def get_next() -> int:
            return nxt

        def set_next(value: int) -> None:
            nonlocal nxt, offset, stamp_at, stamp
            nxt = value
            offset = data + (value & mask) * slot
            stamp_at = stamp0 + (value & mask) * slot_words
            stamp = (value >> shift) + 1

        def get_slow_at() -> int:
            return slow_at

        def set_slow_at(value: int) -> None:
            nonlocal slow_at
            slow_at = value

        return poll, get_next, set_next, get_slow_at, set_slow_at

    def read(self, max_batch: int = 256) -> list[T]:
        """Every ready record up to ``max_batch``, in order (possibly none). Never blocks."""
        if max_batch < 1:
            raise ValueError(f"read: max_batch {max_batch} must be at least 1")
        n = self._next
        if n >= self._available and not self._slow_path(n):
            return []
        hi = min(self._available, n + max_batch)
        first = min(hi - n, self._capacity - (n & self._mask))  # up to the end of the buffer
        items = self._window(n, first)
        if first < hi - n:
            items += self._window(n + first, hi - n - first)  # the part that wrapped
        self._next = hi
        if self.auto_commit:
            self._check_attached()
            self._publish_sequence(hi)
        return items

    def _window(self, n: int, count: int) -> list[T]:
        """Decode ``count`` contiguous slots from sequence ``n`` and re-check their stamps."""
        words = self._words
        first_stamp = self._stamp0 + (n & self._mask) * self._slot_words
        last_stamp = first_stamp + (count - 1) * self._slot_words
        items = self._codec.decode_window(self._view, self.ring.slot_offset(n), count)
        stamp = self.ring.stamp_of(n)  # the window does not wrap: one lap
        if words[first_stamp] != stamp or words[last_stamp] != stamp:  # after
            raise self._torn(n, words[first_stamp])
        return items

    def _slow_path(self, n: int) -> bool:
        """Runs when ``n`` reaches the known-available bound or the next auto-commit point:
        commits, refreshes availability, and says whether record ``n`` can be read. Raises
        ``ConsumerDetachedError`` once the line was detached (or freed and declared again).

        A paced consumer takes it for every record, so the common case (attached, ungated,
        within a lap) is written out here: calls are most of its cost in CPython."""
        words = self._words
        if (
            words[self._state_word] != h.STATE_ACTIVE
            or words[self._generation_word] != self._generation
        ):
            self._check_attached()  # raises
        auto = self.auto_commit
        if auto and n >= self._commit_at:
            self._publish_sequence(n)
        available = self._available
        if n >= available:
            hi = words[_CURSOR]
            if hi <= n or self._gated or hi - n > self._capacity:
                available = self._probe(n)
            else:  # as _probe: the run's last slot must carry its lap's stamp
                last = hi - 1
                stamp = words[self._stamp0 + (last & self._mask) * self._slot_words]
                if stamp != (last >> self._shift) + 1:
                    raise self._torn(last, stamp)
                available = hi
            self._available = available
            if n >= available:
                if auto and words[self._seq_word] != n:
                    self._publish_sequence(n)  # idle: release everything read so far
                return False
        commit_at = self._commit_at
        self._slow_at = commit_at if auto and commit_at < available else available
        return True

    def _probe(self, n: int) -> int:
        """The exclusive bound of records from ``n`` that are published and not gated.

        Availability comes from the cursor alone, the producer's commit point, stored after
        the slots it covers (x86 TSO: a load of the cursor is not reordered with the later loads
        of the slots). The seqlock's "before" check is done once for the run, as the Disruptor
        does with its available sequence: the run's last slot must carry its lap's stamp."""
        words = self._words
        hi = words[_CURSOR]
        if hi <= n:
            return n
        if hi - n > self._capacity:
            self._check_lapped(self.ring.stamp_of(hi - 1), n)
        if self._gated:
            hi = min(hi, self._gate.minimum(_NO_GATE))
            if hi <= n:
                return n
        last = hi - 1
        stamp = words[self._stamp0 + (last & self._mask) * self._slot_words]
        if stamp != (last >> self._shift) + 1:  # before: the run's last slot holds its record
            raise self._torn(last, stamp)
        return hi

    def skip_to(self, sequence: int) -> int:
        """Pass over the records before ``sequence`` unread and commit: a restarted process
        whose own checkpoint covers them (the cursor it committed may lag that checkpoint).
        Returns how many were passed; only published records can be."""
        n = self._next
        if sequence <= n:
            return 0
        cursor = self.ring.cursor()
        if sequence > cursor:
            raise RingError(
                f"consumer {self.name!r}: cannot skip to {sequence}, past the cursor {cursor}"
            )
        self._check_attached()
        self._next = sequence
        self._available = max(self._available, sequence)
        self._publish_sequence(sequence)
        return sequence - n

    def pass_over(self) -> None:
        """Pass over the next record unread (one that does not decode, say), as ``poll``
        would have taken it: released with the records read, at the next commit, not at once
        as ``skip_to`` does (records read before it may not be done with yet)."""
        n = self._next
        if n >= self._slow_at and not self._slow_path(n):
            raise RingError(f"consumer {self.name!r}: no record {n} to pass over")
        self._next = n + 1

    def commit(self, sequence: int | None = None) -> None:
        """Release records up to ``sequence`` (default: all returned so far) to the producer
        and to consumers gated on this one. Only needed with ``auto_commit=False``."""
        self._check_attached()
        upto = self._next if sequence is None else sequence
        if not self._words[self._seq_word] <= upto <= self._next:
            raise RingError(
                f"consumer {self.name!r}: commit {upto} is outside "
                f"{self._words[self._seq_word]}..{self._next}"
            )
        self._publish_sequence(upto)

    def _publish_sequence(self, upto: int) -> None:
        """Store ``upto`` in this line: its callers have checked that the line is still this
        process's (``_check_attached``): a sequence word it no longer owns is never written."""
        words = self._words
        words[self._seq_word] = upto
        self._commit_at = upto + self._commit_every
        self._slow_at = min(self._available, self._commit_at)
        if parked := words[_PARKED]:
            self._wake_producer(parked)
        if words[self._wake_gated_word]:
            self._wake_gated()

    def _attached(self) -> bool:
        words = self._words
        return (
            words[self._state_word] == h.STATE_ACTIVE
            and words[self._generation_word] == self._generation
        )

    def _check_attached(self) -> None:
        if self._closed:  # the line may be another holder's now (review 178)
            raise RingError(f"ring {self.ring.name!r}: consumer {self.name!r} is closed")
        if not self._attached():
            raise ConsumerDetachedError(
                f"ring {self.ring.name!r}: consumer {self.name!r} was detached at sequence "
                f"{self._next}"
            )

    def _wake_gated(self) -> None:
        """Post every parked consumer gated on this one: its gate just moved. Clear the flag
        first: one that parks after the clear sets it again (as ``Producer._wake_consumers``)."""
        words = self._words
        words[self._wake_gated_word] = 0
        bit = 1 << self.index
        for index in range(self.ring.max_consumers):
            if (
                words[h.consumer_word(index, h.C_GATES)] & bit
                and (parked := words[h.consumer_word(index, h.C_PARKED)])
                and words[h.consumer_word(index, h.C_STATE)] == h.STATE_ACTIVE
            ):  # not active: woken when detached, or a holder killed while parked
                post(self.ring.consumer_sem_name(index), self._sems, parked)

    # -- waiting ---------------------------------------------------------------------------

    def ready(self) -> bool:
        """True when ``poll`` would return a record."""
        n = self._next
        if n < self._available:
            return True
        return self._slow_path(n)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Idle until a record is ready (True) or ``timeout_s`` passes (False).

        A spin round is one load of the cursor word: latency is the time to notice it moved.
        The full check (gates, stamp) runs only when it did, or when gated."""
        if self.ready():
            return True
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        strategy = self.wait_strategy
        idle = None if isinstance(strategy, BusySpin) else strategy.idle
        parker = self._consumer_parker()
        # Straight to the slow path (``ready`` less a call): n >= _available while it waits.
        words, n, gated, slow = self._words, self._next, self._gated, self._slow_path
        # Busy-spin rounds are ~100 ns: look after liveness and the deadline every 1024 of them.
        # Other strategies' rounds can sleep or park for milliseconds: every round.
        check_mask = 1023 if idle is None else 0
        rounds = 0
        try:
            while True:
                if (words[_CURSOR] > n or gated) and slow(n):
                    return True
                if rounds & check_mask == 0:
                    self.heartbeat()
                    self._check_attached()
                    if deadline is not None:
                        left = deadline - time.monotonic()
                        if left < 0:
                            return False
                        parker.cap_s = left  # a park ends by the deadline, whatever its timeout
                if idle is not None:
                    idle(rounds, self.ready, parker)
                rounds += 1
        finally:
            parker.cap_s = None

    def next(self, timeout_s: float | None = None) -> T | None:
        """Wait for and return the next record (``None`` on timeout)."""
        if self.wait(timeout_s):
            return self.poll()
        return None

    def take(self, max_batch: int = 256, timeout_s: float | None = None) -> list[T]:
        """Wait for at least one record, then return up to ``max_batch`` of them."""
        if max_batch < 1:  # (before the wait: ``read`` would say so only after it)
            raise ValueError(f"take: max_batch {max_batch} must be at least 1")
        if self.wait(timeout_s):
            return self.read(max_batch)
        return []

    # -- waiting on another thread ---------------------------------------------------------

    def published(self) -> bool:
        """True when a record past those read is published (and not gated). It only loads
        words, so one other thread may ask while this consumer's thread reads: the answer may
        be stale by a record or two, in the direction of a spurious True, never of a missed one
        (sequences only grow)."""
        hi = self._words[_CURSOR]
        if self._gated:
            hi = min(hi, self._gate.minimum(_NO_GATE))
        return hi > self._next

    # A park split in two, for an event loop that sleeps on several rings (and sockets) at
    # once: it watches each ring's ``watch_fd``, raises the rings' flags (``WATCHED``) when it
    # naps and lowers them when it wakes. A post the parking protocol misses (``shm.wait``) is
    # noticed by the watcher's own periodic look (``RingWaker``).

    def raise_park_flag(self, how: int = PARKED) -> None:
        """Have the producer post at its next publish, as it does for a parked consumer (with
        ``WATCHED``, by a write to ``watch_fd``'s FIFO); fenced, so ``published`` may be
        checked right after."""
        self._consumer_parker().raise_flag(how)

    def lower_park_flag(self) -> None:
        self._consumer_parker().lower_flag()

    def watch_fd(self) -> int:
        """A descriptor for an event loop to watch (``add_reader``): readable after a post
        while the flag says ``WATCHED``. This consumer's: ``close`` closes it (a watcher that
        may outlive the consumer watches a ``dup`` of it)."""
        return self._consumer_parker().watch()

    def attached(self) -> bool:
        """Whether this process still holds its line (False once it was detached)."""
        return self._attached()

    # -- bookkeeping -----------------------------------------------------------------------

    @property
    def sequence(self) -> int:
        """Records this consumer has read (the next sequence it will read)."""
        return self._next

    def heartbeat(self) -> None:
        self._words[self._beat_word] = time.monotonic_ns()

    def _check_lapped(self, stamp: int, n: int) -> None:
        if stamp > self.ring.stamp_of(n):
            raise ConsumerDetachedError(
                f"ring {self.ring.name!r}: consumer {self.name!r} at sequence {n} was lapped "
                f"(its slot holds lap {stamp - 1}, expected {self.ring.stamp_of(n) - 1}); it had "
                "been detached"
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
                (h.P_WAKE, *(h.consumer_word(g, h.C_WAKE_GATED) for g in self._gate.indexes)),
            )
        return self._parker

    def _wake_producer(self, parked: int) -> None:
        """Post the producer as its parked word says: its semaphore, or the FIFO an event
        loop watches while it waits for room (``Producer.raise_park_flag(WATCHED)``)."""
        post(self.ring.producer_sem_name(), self._sems, parked)

    def close(self) -> None:
        """Detach this process; the line stays declared and keeps gating the producer, so a
        restarted process resumes where this one stopped."""
        if self._closed:
            return
        self._closed = True
        if self.auto_commit and self._attached():
            self._publish_sequence(self._next)
        ring = self.ring
        last = roles.let_go(ring.instance, ring.name, ring.created_ns, self.index)
        if last and self._words[h.consumer_word(self.index, h.C_PID)] == os.getpid():
            self._words[h.consumer_word(self.index, h.C_PID)] = 0
            self._words[h.consumer_word(self.index, h.C_PID_START)] = 0
        if self._parker is not None:
            self._parker.close()
        for sem in self._sems.values():
            sem.close()
        self._view.release()
