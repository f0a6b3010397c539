"""The producer role: claims sequences, writes slots, never laps an active consumer.

Hot path cost is what limits a Python ring, so ``publish`` is one comparison against a cached
limit, one codec call that writes body and stamp, one cursor store and one load of the
"someone is parked" word. The limit (slowest active consumer + capacity) is re-read from the
header only when the cached value says the ring may be full, like the Disruptor's cached
gating sequence.
"""

from __future__ import annotations

import os
import struct
import textwrap
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, NoReturn, TypeVar

from shm import header as h
from shm import roles
from shm.barrier import Gate
from shm.cells import Cell
from shm.errors import EncodeError, RingError, RingFullError, alive
from shm.liveness import holder_alive, own_start
from shm.wait import PARKED, Parker, Posts, WaitStrategy, Yielding, post

if TYPE_CHECKING:
    from shm.ring import Ring


class Claim(NamedTuple):
    """Slots reserved by ``Producer.claim``: where to write them and with which stamp."""

    view: memoryview
    offset: int  # byte offset of the first claimed slot in ``view``
    stamp: int  # the stamp every claimed slot must end with
    slots: int  # how many were claimed (may be fewer than asked, at the end of the buffer)


T = TypeVar("T")

_CURSOR = h.P_CURSOR
_WAKE = h.P_WAKE


class Producer(Generic[T]):
    """The one writer of a ring. Use from a single thread of a single process.

    ``publish`` / ``publish_batch`` wait (per the wait strategy) while the ring is full;
    ``try_publish`` / ``try_publish_batch`` return ``False`` instead, for callers that must not
    block (an event loop). ``close`` releases the role; records already published stay.
    """

    _next = Cell()  # the next sequence to write, in the compiled publish's cell
    _limit = Cell()  # the cached limit (slowest active consumer + capacity), likewise

    def __init__(self, ring: Ring[T], wait: WaitStrategy | None = None) -> None:
        self.ring = ring
        self.wait = wait if wait is not None else Yielding()
        words = ring.words
        holder = words[h.P_PID]
        me = os.getpid()
        if holder and holder != me and holder_alive(holder, words[h.P_PID_START]):
            raise RingError(f"ring {ring.name!r} already has a live producer, pid {holder}")
        words[h.P_PID_START] = own_start()  # first: a reader sees the pid whole with it
        words[h.P_PID] = me
        roles.took(ring.instance, ring.name, ring.created_ns, roles.PRODUCER)
        self._words = words
        self._view = memoryview(ring.region.buf)
        self._encode = ring.codec.encode_into
        self._encode_window = ring.codec.encode_window
        self._mask = ring.mask
        self._slot = ring.slot_size
        self._data = ring.data_offset
        self._capacity = ring.capacity
        self._gate = Gate(words, range(ring.max_consumers))  # inactive lines are skipped
        words[h.P_PARKED] = 0  # a predecessor killed while parked left it raised
        self._sems: Posts = {}
        #: the compiled publish holds it strongly (the producer, weakly: a kept ``publish``
        #: whose producer was let go still wakes the consumers after its cursor store)
        self._waker = _Waker(ring, words, self._sems)
        self._shift = ring.shift
        # One attribute load instead of seven on the reference path.
        self._hot = (
            words,
            self._view,
            self._encode,
            self._mask,
            self._slot,
            self._data,
            self._shift,
        )
        # The compiled publish owns the sequence and the cached limit (closure cells: measured
        # 8.7% more records/s than attributes in the two-process benchmark); _next and _limit
        # are Cell attributes over them for every other path.
        compiled, self._get_next, self._set_next, self._get_limit, self._set_limit = (
            self._compile_publish(ring.cursor())  # crash-only: start = recovery = the cursor
        )
        self.publish = compiled  # type: ignore[method-assign, assignment]  # same contract
        self._limit = self._refresh_limit()
        self._parker: Parker | None = None
        self._closed = False
        #: called now and then (with the heartbeat) while a publish waits for room: a process
        #: under systemd's watchdog pets it there, for a producer held back by a slow
        #: consumer is waiting, not hung (the matcher: review 189)
        self.on_wait: Callable[[], object] | None = None
        self._claimed = 0  # slots of the last claim not yet published
        # publish_slots' stamp words (_lap_stamps): no lap's yet, stamps start at 1
        self._stamps = self._window_stamps = (0, memoryview(b"").cast("q"))
        self.heartbeat()

    # -- hot path --------------------------------------------------------------------------

    def publish(self, item: T) -> int:
        """Write one record, waiting while the ring is full; returns its sequence.

        This is the reference implementation; each instance runs the compiled equivalent
        (``_compile_publish``), and a contract test checks that both write the same bytes."""
        n = self._next
        if n >= self._limit:
            self._await_space(n + 1, None)
        words, view, encode, mask, slot, data, shift = self._hot
        encode(view, data + (n & mask) * slot, item, (n >> shift) + 1)
        self._next = n + 1
        words[_CURSOR] = n + 1
        if words[_WAKE]:
            self._wake_consumers()
        return n

    def _compile_publish(
        self, start: int
    ) -> tuple[
        Callable[[T], int],
        Callable[[], int],
        Callable[[int], None],
        Callable[[], int],
        Callable[[int], None],
    ]:
        """``publish`` as a closure, with the codec's encode statement inlined if it offers
        one (``encode_source``), else a call to its ``encode_into``; plus accessors for the
        sequence and limit it keeps in its cells.

        Same logic as the reference method, one Python frame per record fewer and no attribute
        lookups; the slot's offset and stamp are kept in cells and stepped (a lap's end resets
        the one and bumps the other) rather than derived from the sequence each time.
        ``set_next`` derives them again for every other path that moves the sequence. The
        template is fixed; only the codec's statement, generated from its field count,
        varies. The statement gets ``buf``, ``offset``, ``item`` and ``stamp`` as locals of its
        own and may bind any other name but the template's own, which all begin ``_ring``
        (``_RING`` for constants). The closure holds the producer weakly (``me``): it is stored on
        the producer, and a strong reference back would make a cycle that only a full
        collection frees (``gc_policy`` turns those off)."""
        codec = self.ring.codec
        source = getattr(codec, "encode_source", None) or "encode(buf, offset, item, stamp)\n"
        body = textwrap.indent(source, " " * 8)
        template = f"""
def bind(_ring_me, _ring_wake, _ring_words, buf, _ring_mask, _ring_slot, _ring_data,
         _ring_shift, _RING_CURSOR, _RING_WAKE, _ring_next, _ring_limit):
    _ring_end = _ring_data + (_ring_mask + 1) * _ring_slot
    _ring_at = _ring_data + (_ring_next & _ring_mask) * _ring_slot
    _ring_lap = (_ring_next >> _ring_shift) + 1

    def publish(item):
        nonlocal _ring_next, _ring_at, _ring_lap
        _ring_n = _ring_next
        if _ring_n >= _ring_limit:
            _ring_alive(_ring_me, "Producer")._await_space(_ring_n + 1, None)  # refreshes the limit
        offset = _ring_at
        stamp = _ring_lap
{body}
        _ring_next = _ring_n + 1
        _ring_words[_RING_CURSOR] = _ring_next
        _ring_at += _ring_slot
        if _ring_at == _ring_end:
            _ring_at = _ring_data
            _ring_lap += 1
        if _ring_words[_RING_WAKE]:
            _ring_wake()
        return _ring_n

    def get_next():
        return _ring_next

    def set_next(value):
        nonlocal _ring_next, _ring_at, _ring_lap
        _ring_next = value
        _ring_at = _ring_data + (value & _ring_mask) * _ring_slot
        _ring_lap = (value >> _ring_shift) + 1

    def get_limit():
        return _ring_limit

    def set_limit(value):
        nonlocal _ring_limit
        _ring_limit = value

    return publish, get_next, set_next, get_limit, set_limit
"""
        namespace = dict(getattr(codec, "encode_namespace", {}))
        namespace["encode"] = codec.encode_into
        namespace["_ring_alive"] = alive
        exec(template, namespace)  # fixed template + the codec's generated statement
        compiled: tuple[
            Callable[[T], int],
            Callable[[], int],
            Callable[[int], None],
            Callable[[], int],
            Callable[[int], None],
        ] = namespace["bind"](
            weakref.ref(self),
            _wake_through(weakref.ref(self), self._waker),
            self._words,
            self._view,
            self._mask,
            self._slot,
            self._data,
            self._shift,
            _CURSOR,
            _WAKE,
            start,
            0,
        )
        return compiled

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
        if self._closed:
            _closed(self.ring.name)
        if not isinstance(items, (list, tuple)):  # sliced below (a deque is a Sequence too)
            items = list(items)
        encode = self._encode_window
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
            chunk = items[done : done + count] if done or count < total else items
            first = min(count, self._capacity - (n & mask))  # up to the end of the buffer
            written = 0  # items of this chunk in windows that encoded completely
            try:
                encode(
                    view,
                    data + (n & mask) * slot,
                    chunk if first == count else chunk[:first],
                    (n >> self._shift) + 1,
                )
                written = first
                if first < count:  # the part that wraps to the start
                    encode(view, data, chunk[first:], ((n + first) >> self._shift) + 1)
            except EncodeError as exc:
                # The window is ordered, not atomic: publish the items before the bad one.
                good = written + exc.published
                self._next = n + good
                self._words[_CURSOR] = self._next
                if self._words[h.P_WAKE]:
                    self._wake_consumers()
                raise EncodeError(
                    f"{exc}; the {done + good} items before it were published", done + good
                ) from None
            self._next = n + count
            self._words[h.P_CURSOR] = n + count
            done += count
            if self._words[h.P_WAKE]:  # each chunk: the next may wait for a parked reader
                self._wake_consumers()
        return self._next - 1

    def claim(self, count: int) -> Claim:
        """Reserve up to ``count`` contiguous slots, waiting for room: fewer when the buffer's
        end comes first. The zero-copy batch path, the Disruptor's ``next(n)``.

        Fill slot ``k`` of the claim at ``offset + k * slot_size`` of ``view``, ending in
        ``stamp``: ``codec.slot_struct.pack`` builds such an image, and one slice copy of the
        joined images is the fastest way in. Nothing is visible until
        ``publish_claimed(claim.slots)`` stores the cursor, so the order of writes does not
        matter; call nothing else on the producer in between."""
        if self._closed:  # its cursor store would rewind its successor's (review 178)
            _closed(self.ring.name)
        if count <= 0:
            raise ValueError(f"claim count {count} must be positive")
        n = self._next
        count = min(count, self._capacity - (n & self._mask))
        if n + count > self._limit:
            self._await_space(n + count, None)
        self._claimed = count
        return Claim(
            self._view, self._data + (n & self._mask) * self._slot, (n >> self._shift) + 1, count
        )

    def publish_claimed(self, count: int) -> int:
        """Publish the first ``count`` slots of the last claim; returns the last sequence."""
        if self._closed:
            _closed(self.ring.name)
        if not 1 <= count <= self._claimed:
            raise ValueError(
                f"publish_claimed: count {count} is outside 1..{self._claimed}, the slots of "
                "the last claim not yet published"
            )
        self._claimed = 0
        n = self._next + count
        self._next = n
        words = self._words
        words[_CURSOR] = n
        if words[_WAKE]:
            self._wake_consumers()
        return n - 1

    def publish_slots(self, images: bytes | bytearray | memoryview, count: int) -> int:
        """Publish ``count`` ready-made slot images, ``count * slot_size`` contiguous bytes
        (a journal's replay, say). Returns the last sequence.

        Each window is one slice copy, then one strided store that sets every stamp (whatever
        the images held), then the cursor store that publishes it. Batches larger than the
        ring are split."""
        slot = self._slot
        raw = memoryview(images).cast("B")
        if count <= 0:
            raise ValueError(f"publish_slots: count {count} must be at least 1")
        if raw.nbytes != count * slot:
            raise ValueError(
                f"publish_slots: {raw.nbytes} bytes is not count={count} x slot_size={slot}"
            )
        view, words, slot_words = self._view, self._words, slot // 8
        done = 0
        while done < count:
            _, offset, stamp, k = self.claim(count - done)
            view[offset : offset + k * slot] = raw[done * slot : (done + k) * slot]
            first_stamp = (offset + slot) // 8 - 1
            held, stamps = self._window_stamps  # the last window's: most often this one's too
            if held != stamp or len(stamps) != k:
                stamps = self._lap_stamps(stamp, k)
            words[first_stamp : first_stamp + k * slot_words : slot_words] = stamps
            self.publish_claimed(k)
            done += k
        return self._next - 1

    def _lap_stamps(self, stamp: int, count: int) -> memoryview:
        """``count`` copies of ``stamp`` as int64 words (one strided store then stamps a whole
        window): a slice of one buffer, made again when the lap changes or a window is longer
        than any before, so it never holds more than a lap's words. The slice is kept for the
        next window (``_window_stamps``), most often of the same lap and size."""
        held, words = self._stamps
        if held != stamp or len(words) < count:
            words = memoryview(_WORD.pack(stamp) * max(count, len(words))).cast("q")
            self._stamps = (stamp, words)
        self._window_stamps = (stamp, words[:count])
        return words[:count]

    def try_publish_batch(self, items: Sequence[T]) -> bool:
        """All of ``items`` if they fit now, else nothing and ``False``; more than the ring
        holds never fit: a ``ValueError`` naming both (``publish_batch`` takes them in
        chunks)."""
        self._within_capacity("try_publish_batch", len(items))
        if not self._fits(len(items)):
            return False
        self.publish_batch(items)
        return True

    def try_publish_slots(self, images: bytes | bytearray | memoryview, count: int) -> bool:
        """``publish_slots`` if all ``count`` fit now, else nothing and ``False`` (a caller
        that already holds the encoded images: no second encode)."""
        if count <= 0:
            raise ValueError(f"try_publish_slots: count {count} must be at least 1")
        self._within_capacity("try_publish_slots", count)
        if not self._fits(count):
            return False
        self.publish_slots(images, count)
        return True

    def backlog(self) -> int:
        """Records published that the slowest active consumer has not consumed yet."""
        return self._next - self._gate.minimum(self._next)

    def idle_round(self, count: int, rounds: int) -> None:
        """One round of waiting for room for ``count`` records, as the wait strategy says
        (``rounds``: the caller's idle rounds so far; a blocking strategy parks until a
        consumer commits). For a caller with other work between rounds, where ``publish``
        would wait in one go: the router drains the matchers' events between them."""
        if rounds & 63 == 0:
            self.heartbeat()
        self.wait.idle(rounds, lambda: self._fits(count), self._producer_parker())

    def has_room(self, count: int) -> bool:
        """Whether ``count`` records fit now (what ``try_publish_slots`` would find)."""
        self._within_capacity("has_room", count)
        return self._fits(count)

    def _within_capacity(self, what: str, count: int) -> None:
        """More than the ring holds never fits: asked whether they do, say so (a loop
        waiting for room for them would wait for ever, review 178)."""
        if count > self._capacity:
            raise ValueError(
                f"ring {self.ring.name!r}: {what} of {count} records, more than its capacity "
                f"{self._capacity} (publish_batch and publish_slots take them in chunks)"
            )

    # The wait for room split in two, for an event loop (the gateway's) that must not block:
    # it raises the flag (``WATCHED``) and watches ``watch_fd`` while it waits, and a
    # consumer's commit writes the FIFO, as a producer's publish does a watched consumer's.

    def raise_park_flag(self, how: int = PARKED) -> None:
        """Have each consumer's commit post this producer as if it were parked (with
        ``WATCHED``, by a write to ``watch_fd``'s FIFO); fenced, so ``has_room`` may be
        checked right after."""
        self._producer_parker().raise_flag(how)

    def lower_park_flag(self) -> None:
        self._producer_parker().lower_flag()

    def watch_fd(self) -> int:
        """A descriptor for an event loop to watch (``add_reader``): readable after a commit
        while the flag says ``WATCHED``. This producer's: ``close`` closes it (a watcher that
        may outlive the producer watches a ``dup`` of it)."""
        return self._producer_parker().watch()

    def _fits(self, count: int) -> bool:
        need = self._next + count
        if need > self._limit:
            self._limit = self._refresh_limit()
            if need > self._limit or count > self._capacity:
                return False
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

        if ready():
            return
        parker = self._producer_parker()
        try:
            while not ready():
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left < 0:
                        raise RingFullError(
                            f"ring {self.ring.name!r} full for {timeout_s}s: need sequence "
                            f"{need}, slowest consumer allows {self._limit}"
                        )
                    parker.cap_s = left  # a park ends by the deadline (review 119)
                if rounds & 63 == 0:
                    self.heartbeat()
                    if self.on_wait is not None:
                        self.on_wait()
                self.wait.idle(rounds, ready, parker)
                rounds += 1
        finally:
            parker.cap_s = None

    def _producer_parker(self) -> Parker:
        if self._parker is None:
            self._parker = Parker(self._words, h.P_PARKED, self.ring.producer_sem_name())
        return self._parker

    def _wake_consumers(self) -> None:
        self._waker.wake()

    def heartbeat(self) -> None:
        self._words[h.P_HEARTBEAT] = time.monotonic_ns()

    def close(self) -> None:
        """Give up the role (the cursor stays; a new producer continues from it)."""
        if self._closed:
            return
        self._closed = True
        name = self.ring.name
        self.publish = lambda _item: _closed(name)  # type: ignore[method-assign,assignment]
        ring = self.ring
        last = roles.let_go(ring.instance, ring.name, ring.created_ns, roles.PRODUCER)
        if last and self._words[h.P_PID] == os.getpid():  # not while another handle holds it
            self._words[h.P_PID] = 0
            self._words[h.P_PID_START] = 0
        if self._parker is not None:
            self._parker.close()
        for sem in self._sems.values():
            sem.close()
        self._view.release()


class _Waker:
    """Posts the parked consumers of a ring: what a publish does after its cursor store,
    apart from the producer so that the compiled publish can hold it strongly."""

    __slots__ = ("ring", "sems", "words")

    def __init__(self, ring: Ring[Any], words: memoryview, sems: Posts) -> None:
        self.ring, self.words, self.sems = ring, words, sems

    def wake(self) -> None:
        """Post every parked active consumer's semaphore. Clear the wake word first: a
        consumer that parks after the clear sets it again, so no parker is forgotten (module
        docstring of ``shm.wait`` covers the remaining race). A line not active is passed
        over: a detached one was woken when it was detached, and a consumer killed while
        parked left its flag raised, which a post on each wake would only pile up on."""
        words = self.words
        words[h.P_WAKE] = 0
        ring = self.ring
        for index in range(ring.max_consumers):
            if (parked := words[h.consumer_word(index, h.C_PARKED)]) and words[
                h.consumer_word(index, h.C_STATE)
            ] == h.STATE_ACTIVE:
                post(ring.consumer_sem_name(index), self.sems, parked)


def _wake_through(ref: weakref.ref[Producer[Any]], waker: _Waker) -> Callable[[], None]:
    """The compiled publish's wake: its producer's ``_wake_consumers`` while it lives (the
    one method every publish path wakes through), the waker itself once it was let go."""

    def wake() -> None:
        producer = ref()
        if producer is not None:
            producer._wake_consumers()
        else:
            waker.wake()

    return wake


def _closed(ring: str) -> NoReturn:
    raise RingError(f"ring {ring!r}: this producer is closed")


_WORD = struct.Struct("<q")
