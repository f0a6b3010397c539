"""A single-producer, multi-consumer ring of fixed-size slots in shared memory.

Design, after the LMAX Disruptor: one producer claims sequences 0, 1, 2, ... and writes record
``n`` into slot ``n & (capacity - 1)``. Every consumer is independent (multicast) and owns one
sequence on its own header line: the number of records it has consumed. The producer never
writes slot ``n`` while any active consumer's sequence is ``<= n - capacity`` (it waits, or a
``try_`` call returns ``False``). A consumer may also be gated on other consumers, so that it
only sees what they have finished with (a journal's durable barrier).

Seqlock. Each slot's last 8 bytes are a stamp: the lap of the record it holds plus one,
``(n >> log2(capacity)) + 1`` for record ``n`` (0 means never written). Slot and lap together
name the sequence, as in the Disruptor's ``MultiProducerSequencer.availableBuffer``; unlike
``n + 1`` the value is the same for every slot of a lap, so a batch stamps its slots with one
strided store of one repeated word. The producer writes body and stamp (one
``struct.pack_into`` writes its fields in address order, stamp last), then stores the cursor.
A reader takes what is available from the cursor, checks *before* decoding that the last slot
of that run carries its lap's stamp, and checks a stamp again *after* decoding it (each
slot's in ``record``; a window's first and last, as the producer writes in sequence order, so
a lap reaches the first slot first): ``TornReadError`` if it changed. Because the producer
cannot lap an active consumer, a change means the consumer had been detached; the second check
is what makes that safe to detect.

Memory ordering. Python has no fences, so the argument rests on x86-64's TSO model: stores
become visible in program order and loads are not reordered with older loads. So if a reader
sees slot ``n``'s stamp at ``n``'s lap (or a cursor past ``n``), it also sees the body
written before it. On a weakly ordered machine (ARM, POWER) the producer would need a
release store for the stamp and the cursor and the reader acquire loads (``stlr``/``ldar``,
or C11 atomics through a small extension); the protocol itself would not change. ``Ring``
refuses to run on other architectures unless ``RINGEX_ALLOW_WEAK_MEMORY=1`` is set.

Commit point. The cursor, stored after the slots it covers, is what publishes them: readers
take availability from it alone, never from a stamp ahead of it. So a batch may be written in
any order (one ``memcpy`` of ready-made slot images), and a producer that dies before storing
the cursor has acknowledged nothing: its restart continues from the cursor and overwrites
the unpublished slots.

Crash-only. Everything a role needs to resume lives in the header: a restarted producer
continues from the cursor; a restarted consumer resumes from its own sequence. Startup and
recovery are the same path.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import posix_ipc

from shm import header as h
from shm.barrier import mask_indexes
from shm.codec import Buffer, SlotCodec
from shm.consumer import Consumer
from shm.errors import HeaderMismatchError, RingError
from shm.liveness import holder_alive, own_start
from shm.producer import Producer
from shm.region import Region
from shm.wait import PARKED, Posts, WaitStrategy, fifo_path, post

T = TypeVar("T")

_TSO_MACHINES = {"x86_64", "amd64", "i386", "i686"}


def _check_memory_model() -> None:
    machine = platform.machine().lower()
    if machine not in _TSO_MACHINES and os.environ.get("RINGEX_ALLOW_WEAK_MEMORY") != "1":
        raise RingError(
            f"machine {machine!r} is not x86 (TSO); the ring's ordering argument does not hold "
            "there (see shm/ring.py); set RINGEX_ALLOW_WEAK_MEMORY=1 to run anyway"
        )


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A consumer declared when the ring is created; ``gates`` name consumers it may not pass."""

    name: str
    gates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConsumerInfo:
    index: int
    name: str
    state: str
    sequence: int
    lag: int
    pid: int
    pid_alive: bool
    heartbeat_age_s: float | None
    parked: bool
    gates: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RingInfo:
    name: str
    slot_size: int
    capacity: int
    schema_id: int
    cursor: int
    producer_pid: int
    producer_alive: bool
    producer_heartbeat_age_s: float | None
    consumers: tuple[ConsumerInfo, ...]


def _checked_header(
    posix_name: str, codec: SlotCodec[Any], size: int, head: Buffer, magic: bytes
) -> tuple[h.Geometry, int]:
    """The geometry and creation time in a ring's static line (``head``, the segment's first
    bytes), each field checked against ``codec``, ``magic`` and the segment's ``size`` before
    any is used: ``HeaderMismatchError`` naming the field, what it holds and what was expected.
    """
    if size < h.STATIC.size:
        raise HeaderMismatchError(posix_name, "segment size", f">= {h.STATIC.size}", size)
    found, version, slot, cap, schema, maxc, hsize, created, _pid = h.STATIC.unpack_from(head, 0)
    for field, expected, got in (
        ("magic", magic, found),
        ("layout_version", h.LAYOUT_VERSION, version),
        ("slot_size", codec.slot_size, slot),
        ("schema_id", codec.schema_id, schema),
    ):
        if expected != got:
            raise HeaderMismatchError(posix_name, field, expected, got)
    geometry = h.Geometry(int(slot), int(cap), int(schema), int(maxc))
    try:  # slots are addressed with capacity - 1 as a mask: it must be a power of two
        geometry.validate()
    except ValueError as exc:
        raise HeaderMismatchError(posix_name, "geometry", "valid", str(exc)) from exc
    for field, expected, got in (
        ("header_size", geometry.header_size, hsize),
        ("segment size", geometry.total_size, size),
    ):
        if expected != got:
            raise HeaderMismatchError(posix_name, field, expected, got)
    return geometry, int(created)


class Ring(Generic[T]):
    """A mapped ring. Create it once (the supervisor), attach it anywhere, then take a role:
    ``producer()`` (one per ring) or ``consumer(name)`` (one process per declared consumer)."""

    def __init__(
        self, region: Region, codec: SlotCodec[T], instance: str, *, magic: bytes = h.MAGIC
    ) -> None:
        _check_memory_model()
        self.region = region
        self.codec = codec
        self.instance = instance
        self.name = region.name
        self.words = region.words
        # created_ns, when the segment was made, tells this ring from an earlier one of the
        # same name, whose sequences a restarted process must not take for this one's.
        self.geometry, self.created_ns = _checked_header(
            region.posix_name, codec, region.size, region.buf, magic
        )
        cap = self.geometry.capacity
        self.slot_size = self.geometry.slot_size
        self.capacity = cap
        self.mask = cap - 1
        self.shift = cap.bit_length() - 1  # sequence >> shift = lap
        self.max_consumers = self.geometry.max_consumers
        self.data_offset = self.geometry.header_size
        self._sems: Posts = {}  # opened by detach_consumer

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        instance: str,
        name: str,
        codec: SlotCodec[T],
        *,
        capacity: int,
        consumers: Sequence[ConsumerSpec | str] = (),
        max_consumers: int = 16,
        replace: bool = False,
    ) -> Ring[T]:
        """Create and format the segment, declaring ``consumers`` (they gate the producer from
        the first record, attached or not: nothing is lost to a consumer that starts late)."""
        geometry = h.Geometry(codec.slot_size, capacity, codec.schema_id, max_consumers)
        geometry.validate()
        _check_memory_model()  # before the segment exists: a refusal leaves none behind
        head = bytearray((h.CREATOR_START + 1) * h.WORD)  # written before anything is mapped
        h.STATIC.pack_into(
            head,
            0,
            h.NO_MAGIC,  # the magic goes in last: no attach before it is whole
            h.LAYOUT_VERSION,
            geometry.slot_size,
            geometry.capacity,
            geometry.schema_id,
            geometry.max_consumers,
            geometry.header_size,
            time.time_ns(),
            os.getpid(),
        )
        head[h.CREATOR_START * h.WORD :] = own_start().to_bytes(h.WORD, "little", signed=True)
        region = Region.create(
            instance, name, geometry.total_size, replace=replace, head=bytes(head)
        )
        ring = cls(region, codec, instance, magic=h.NO_MAGIC)  # its creator's pid names it
        try:
            for declared in consumers:
                spec = ConsumerSpec(declared) if isinstance(declared, str) else declared
                ring.declare_consumer(spec.name, gates=spec.gates, start=0)
        except BaseException:  # a refused declaration leaves no segment to block a retry
            ring.unlink()
            ring.close()
            raise
        region.buf[0 : len(h.MAGIC)] = h.MAGIC  # whole: attachable from now on
        return ring

    @classmethod
    def attach(
        cls, instance: str, name: str, codec: SlotCodec[T], *, capacity: int | None = None
    ) -> Ring[T]:
        """Map an existing ring, checking its header against ``codec`` (and ``capacity``)."""

        def check(posix_name: str, size: int, head: bytes) -> None:  # before the map
            geometry, _ = _checked_header(posix_name, codec, size, head, h.MAGIC)
            if capacity is not None and capacity != geometry.capacity:
                raise HeaderMismatchError(posix_name, "capacity", capacity, geometry.capacity)

        region = Region.attach(instance, name, check)
        try:
            ring = cls(region, codec, instance)
        except Exception:
            region.close()
            raise
        return ring

    def close(self) -> None:
        for sem in self._sems.values():
            sem.close()
        self._sems.clear()
        self.region.close()

    def unlink(self) -> None:
        """Remove the segment, its semaphores and the FIFOs beside them (its consumers', and
        its producer's: an event loop's wait for room); the owner does this at shutdown."""
        self.region.unlink()
        consumers = range(self.max_consumers)
        for sem in [self.producer_sem_name(), *map(self.consumer_sem_name, consumers)]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(fifo_path(sem))
            with contextlib.suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_semaphore(sem)

    # -- consumer table (owner only: the creator or the supervisor) ------------------------

    def declare_consumer(
        self, name: str, *, gates: Iterable[str] = (), start: int | None = None
    ) -> int:
        """Give ``name`` a free line and make it gate the producer; returns its index.

        ``start`` is the first sequence it will read (default: the producer's cursor, for a
        late joiner): at most the cursor, and no further back than what every active consumer
        still holds (a producer may already write up to a lap past the slowest of them; with
        none, only the cursor). Call from the ring's owner only: the table has no lock.
        """
        if start is not None:
            self._check_start(name, start)
        encoded = name.encode()
        if not encoded or len(encoded) > h.NAME_SIZE:
            raise ValueError(f"consumer name {name!r} must be 1..{h.NAME_SIZE} bytes")
        if name in self.consumer_names().values():
            raise RingError(f"ring {self.name!r}: consumer {name!r} is already declared")
        gate_mask = 0
        for gate in gates:
            gate_mask |= 1 << self.consumer_index(gate)
        words = self.words
        for index in range(self.max_consumers):
            if words[h.consumer_word(index, h.C_STATE)] == h.STATE_FREE:
                break
        else:
            raise RingError(
                f"ring {self.name!r}: all {self.max_consumers} consumer lines are taken"
            )
        name_at = h.consumer_name_at(index)
        self.region.buf[name_at : name_at + h.NAME_SIZE] = encoded.ljust(h.NAME_SIZE, b"\0")
        words[h.consumer_word(index, h.C_SEQUENCE)] = self.cursor() if start is None else start
        words[h.consumer_word(index, h.C_GATES)] = gate_mask
        words[h.consumer_word(index, h.C_PID)] = 0
        words[h.consumer_word(index, h.C_PID_START)] = 0
        words[h.consumer_word(index, h.C_HEARTBEAT)] = 0
        words[h.consumer_word(index, h.C_WAKE_GATED)] = 0
        words[h.consumer_word(index, h.C_PARKED)] = 0  # a holder killed while parked raised it
        words[h.consumer_word(index, h.C_GENERATION)] += 1  # an old holder of the line: stale
        words[h.consumer_word(index, h.C_STATE)] = h.STATE_ACTIVE  # last: publishes the line
        if start is not None:
            # Checked before, against lines that may have moved on since (and the producer
            # with them); now that this line holds the producer back, check again.
            try:
                self._check_start(name, start, excluding=index)
            except RingError:
                words[h.consumer_word(index, h.C_STATE)] = h.STATE_FREE
                raise
        if start is None:
            # A producer that refreshed its limit before the line was active may run a lap
            # past the cursor read above; from the cursor now, it cannot (its limit is at most
            # a lap past the slowest active line, and no line is past the cursor).
            words[h.consumer_word(index, h.C_SEQUENCE)] = self.cursor()
        return index

    def _check_start(self, name: str, start: int, excluding: int = -1) -> None:
        cursor = self.cursor()
        held = [
            self.words[h.consumer_word(i, h.C_SEQUENCE)]
            for i in range(self.max_consumers)
            if i != excluding and self.words[h.consumer_word(i, h.C_STATE)] == h.STATE_ACTIVE
        ]
        lowest = max(cursor - self.capacity, min(held, default=cursor), 0)
        if not lowest <= start <= cursor:
            raise RingError(
                f"ring {self.name!r}: consumer {name!r} cannot start at {start}: the cursor is "
                f"{cursor}, capacity {self.capacity}, the slowest active consumer at "
                f"{min(held, default=cursor)}; a start must be within {lowest}..{cursor}"
            )

    def detach_consumer(self, index: int) -> None:
        """Stop ``index`` from gating anyone (a dead consumer must not block the producer).

        Its process, if alive, gets ``ConsumerDetachedError`` at its next slow-path check (the
        end of what it knew was published: ``consumer.py``), not before."""
        self._check_index(index)
        state = self.words[h.consumer_word(index, h.C_STATE)]
        if state not in (h.STATE_ACTIVE, h.STATE_DETACHED):
            raise RingError(
                f"ring {self.name!r}: consumer {index} is {h.STATE_NAMES.get(state, state)}, "
                "not declared: nothing to detach"
            )
        self.words[h.consumer_word(index, h.C_STATE)] = h.STATE_DETACHED
        # wake it if parked or watched
        post(self.consumer_sem_name(index), self._sems, self._parked(index) or PARKED)
        if parked := self.words[h.P_PARKED]:  # a producer waiting for room it may now have
            post(self.producer_sem_name(), self._sems, parked)
        for other in range(self.max_consumers):  # consumers gated on it: their gate moved
            gates = self.words[h.consumer_word(other, h.C_GATES)]
            if other != index and gates >> index & 1:
                post(self.consumer_sem_name(other), self._sems, self._parked(other) or PARKED)

    def free_consumer(self, index: int) -> None:
        """Return a detached line to the pool (its name becomes declarable again)."""
        self._check_index(index)
        words = self.words
        if words[h.consumer_word(index, h.C_STATE)] == h.STATE_ACTIVE:
            raise RingError(f"ring {self.name!r}: consumer {index} is active; detach it first")
        followers = [
            other
            for other in range(self.max_consumers)
            if other != index
            and words[h.consumer_word(other, h.C_STATE)] != h.STATE_FREE
            and words[h.consumer_word(other, h.C_GATES)] >> index & 1
        ]
        if followers:  # the line's next owner would gate them, whoever it is
            names = self.consumer_names()
            raise RingError(
                f"ring {self.name!r}: consumer {names.get(index, index)!r} gates "
                f"{[names.get(o, o) for o in followers]}; free them first"
            )
        words[h.consumer_word(index, h.C_PARKED)] = 0
        words[h.consumer_word(index, h.C_STATE)] = h.STATE_FREE

    def consumer_names(self) -> dict[int, str]:
        """Index -> name of every declared (active or detached) consumer."""
        names = {}
        for index in range(self.max_consumers):
            if self.words[h.consumer_word(index, h.C_STATE)] != h.STATE_FREE:
                at = h.consumer_name_at(index)
                raw = bytes(self.region.buf[at : at + h.NAME_SIZE]).rstrip(b"\0")
                try:
                    names[index] = raw.decode()
                except UnicodeDecodeError:
                    raise HeaderMismatchError(
                        self.region.posix_name, f"consumer {index} name", "UTF-8", raw
                    ) from None
        return names

    def consumer_index(self, name: str) -> int:
        for index, found in self.consumer_names().items():
            if found == name:
                return index
        raise RingError(
            f"ring {self.name!r} has no consumer {name!r}; declared: "
            f"{sorted(self.consumer_names().values())}"
        )

    def _parked(self, index: int) -> int:
        return self.words[h.consumer_word(index, h.C_PARKED)]

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.max_consumers:
            raise RingError(f"consumer index {index} is outside 0..{self.max_consumers - 1}")

    # -- state ------------------------------------------------------------------------------

    def stamp_word(self, sequence: int) -> int:
        """Word index of the stamp of the slot that holds record ``sequence``."""
        offset = self.data_offset + (sequence & self.mask) * self.slot_size + self.slot_size
        return offset // h.WORD - 1

    def slot_offset(self, sequence: int) -> int:
        return self.data_offset + (sequence & self.mask) * self.slot_size

    def cursor(self) -> int:
        """Records published so far: the producer's commit point."""
        return int(self.words[h.P_CURSOR])

    def stamp_of(self, sequence: int) -> int:
        """The stamp that slot ``sequence & mask`` carries once it holds record ``sequence``."""
        return (sequence >> self.shift) + 1

    def last_published(self) -> T | None:
        """The newest record published, or None if the ring is empty: how a restarted producer
        learns where its output stopped, exact only while no producer is live (a restart): the
        slot is checked against its stamp before and after the decode, but a producer midway
        through rewriting it a lap later has not stamped it yet (the stamp goes last), so a
        live producer's race could pass both checks."""
        cursor = self.cursor()
        return None if cursor == 0 else self.record(cursor - 1)

    def record(self, n: int) -> T:
        """Record ``n``, read without a consumer (checked against its stamp before and after
        the decode): one a declared consumer has not read yet cannot be overwritten."""
        if not 0 <= n < self.cursor():
            raise RingError(f"{self.name}: record {n} is not published (cursor {self.cursor()})")
        word = self.stamp_word(n)
        expected = self.stamp_of(n)
        if self.words[word] != expected:
            raise RingError(
                f"{self.name}: slot of record {n} holds stamp "
                f"{self.words[word]}, expected {expected}"
            )
        item = self.codec.decode_from(self.region.buf, self.slot_offset(n))
        if self.words[word] != expected:
            raise RingError(f"{self.name}: record {n} was overwritten while being read")
        return item

    def producer_sem_name(self) -> str:
        return f"{self.region.posix_name}.p"

    def consumer_sem_name(self, index: int) -> str:
        return f"{self.region.posix_name}.c{index}"

    def info(self) -> RingInfo:
        """A snapshot for supervisors and `ringex shm ls`: who is attached, alive, lagging."""
        words = self.words
        now = time.monotonic_ns()
        cursor = self.cursor()

        def age(word: int) -> float | None:
            beat = words[word]  # a beat written since ``now`` was read is of age 0, not less
            return max(0, now - beat) / 1e9 if beat else None  # (review 295)

        consumers = []
        for index, name in self.consumer_names().items():
            seq = words[h.consumer_word(index, h.C_SEQUENCE)]
            pid = words[h.consumer_word(index, h.C_PID)]
            consumers.append(
                ConsumerInfo(
                    index=index,
                    name=name,
                    state=h.state_name(words[h.consumer_word(index, h.C_STATE)]),
                    sequence=seq,
                    lag=max(0, cursor - seq),
                    pid=pid,
                    pid_alive=holder_alive(pid, words[h.consumer_word(index, h.C_PID_START)]),
                    heartbeat_age_s=age(h.consumer_word(index, h.C_HEARTBEAT)),
                    parked=bool(words[h.consumer_word(index, h.C_PARKED)]),
                    gates=tuple(mask_indexes(words[h.consumer_word(index, h.C_GATES)])),
                )
            )
        producer_pid = words[h.P_PID]
        return RingInfo(
            name=self.name,
            slot_size=self.slot_size,
            capacity=self.capacity,
            schema_id=self.geometry.schema_id,
            cursor=cursor,
            producer_pid=producer_pid,
            producer_alive=holder_alive(producer_pid, words[h.P_PID_START]),
            producer_heartbeat_age_s=age(h.P_HEARTBEAT),
            consumers=tuple(consumers),
        )

    # -- roles --------------------------------------------------------------------------------

    def producer(self, wait: WaitStrategy | None = None) -> Producer[T]:
        """Take the producer role (one process per ring; a live second one is refused)."""
        return Producer(self, wait)

    def consumer(
        self,
        name: str,
        wait: WaitStrategy | None = None,
        *,
        auto_commit: bool = True,
        commit_every: int = 64,
        rejoin: bool = False,
    ) -> Consumer[T]:
        """Take declared consumer ``name``'s role, resuming from its sequence."""
        return Consumer(
            self,
            self.consumer_index(name),
            wait,
            auto_commit=auto_commit,
            commit_every=commit_every,
            rejoin=rejoin,
        )
