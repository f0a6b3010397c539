"""Review of the ring's hot paths kept in closure cells (commit 0a45063): ``Consumer.poll``
compiled per instance, the slot offset and stamp stepped in cells by the compiled poll and
the compiled publish, ``set_next`` deriving them again for every other path."""

from __future__ import annotations

import gc
import struct
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from shm import EncodeError, Ring, StructCodec
from shm.producer import Producer

CODEC = StructCodec("2q")


def test_an_unclosed_consumer_let_go_does_not_keep_the_ring_mapped(instance: str) -> None:
    """Wrong: the compiled poll closes over the consumer's own bound methods (``_slow_path``,
    ``_torn``) and is stored on the consumer (``self.poll``), so every ``Consumer`` is now a
    reference cycle. One that is let go without ``close`` (an error path, a detached handle
    replaced by a ``rejoin=True`` one) is no longer freed when its last reference goes: its
    ``memoryview`` of the segment stays exported until the cyclic collector happens to run,
    so ``ring.close()`` raises ``BufferError: cannot close exported pointers exist`` (and
    leaves the region half closed, its ``words`` already released). Before the change a
    consumer held no cycle and this worked.

    It matters beyond tests: ``procs/common/gc_policy`` runs every process with no full
    collection (``threshold2 = 0``, after a ``gc.freeze()``), on the stated ground that
    ringex's long-lived state holds no cycles; a consumer is long-lived, so one dropped later
    (closed or not) is now never freed, and an unclosed one keeps its mapping exported.

    Shows with the collector off (deterministic; ``replay_pipeline`` runs so too): the
    consumer outlives its last reference and ``ring.close()`` fails. Expected: the consumer
    is freed at once and the ring closes (the closure should not hold the consumer strongly,
    e.g. take the functions it needs unbound or through a weak reference)."""
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["a"])
    producer = ring.producer()
    producer.publish((1, 1))
    producer.close()  # its let-go is the next test's
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        consumer = ring.consumer("a")
        assert consumer.poll() == (1, 1)
        gone = weakref.ref(consumer)
        del consumer
        alive = gone() is not None
        try:
            ring.close()
            closed = True
        except BufferError:
            closed = False
        assert not alive, "an unreferenced consumer is kept alive by its compiled poll"
        assert closed, "ring.close() raised BufferError: the dropped consumer's view is exported"
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()
        ring.close()  # idempotent once the cycle is collected


def test_a_producer_let_go_is_freed_at_once(instance: str) -> None:
    """The compiled publish, stored on the producer, held it strongly (``bind(self, ...)``)
    from before the cells change: the same cycle as the consumer's above, found with it.
    Expected: with the collector off, a producer let go is freed when its last reference
    goes, and the ring closes."""
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["a"])
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        producer = ring.producer()
        producer.publish((1, 1))
        gone = weakref.ref(producer)
        del producer
        assert gone() is None, "an unreferenced producer is kept alive by its compiled publish"
        ring.close()
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()
        ring.close()


class _SteppingCodec(StructCodec):
    """``2q`` slots whose inlinable encode statement writes the body in two parts, naming
    its own temporaries, as a codec is free to: ``encode_source`` is documented only as "the
    statement that writes ``item`` into ``buf`` at ``offset`` with ``stamp``"."""

    def __init__(self, source: str) -> None:
        super().__init__("2q")
        self.encode_source = source
        self.encode_namespace = {
            **self.encode_namespace,
            "head": struct.Struct("<q").pack_into,
            "tail": struct.Struct("<qq").pack_into,
        }


_STEPS_OFFSET = "a, b = item\nhead(buf, offset, a)\noffset += 8\ntail(buf, offset, b, stamp)\n"
_NAMES_END = "a, b = item\nend = offset + 8\nhead(buf, offset, a)\ntail(buf, end, b, stamp)\n"


@pytest.mark.parametrize("source", [_STEPS_OFFSET, _NAMES_END], ids=["offset+=", "end="])
def test_a_codec_statement_with_its_own_temporaries_publishes_what_encode_into_does(
    instance: str, source: str
) -> None:
    """Wrong: the compiled publish inlines the codec's ``encode_source`` into a function
    whose ``offset`` and ``stamp`` are now ``nonlocal`` cells, stepped per record, and whose
    wrap check reads a new name, ``end``. A statement that advances ``offset`` while it
    writes (``offset += 8`` between two ``pack_into``) now moves the producer's own cell, so
    every later record lands 8 bytes off its slot; a statement with a temporary called
    ``end`` makes ``end`` local to ``publish``, so the lap's end is never seen and the
    offset runs past the buffer. Before the change both were plain locals derived again for
    each record, and such a statement was harmless.

    Shows as the consumer reading wrong records or raising (torn read, ``struct.error``)
    across a few laps of a 4-slot ring. Expected: the compiled publish writes what
    ``encode_into`` (the reference path) writes, whatever names the codec's statement uses
    (the template's own state should live under names the statement cannot reach)."""
    ring = Ring.create(instance, "r", _SteppingCodec(source), capacity=4, consumers=["a"])
    producer, consumer = ring.producer(), ring.consumer("a")
    got: list[Any] = []
    try:
        for i in range(12):
            producer.publish((i, -i))
            got += consumer.read(8)
    except Exception as exc:  # what the reader or writer hit is the finding
        got.append(repr(exc))
    finally:
        consumer.close()
        producer.close()
    assert got == [(i, -i) for i in range(12)]


def _moves(producer: Producer[Any], start: int) -> list[Callable[[], Any]]:
    """Every producer path that moves the sequence other than ``publish``, each leaving it
    somewhere in the middle of a lap of a small ring (values from ``start``)."""
    slot = CODEC.slot_size

    def batch_that_wraps() -> None:
        producer.publish_batch([(start + 1, 1), (start + 2, 2)])

    def window_refused_midway() -> None:
        with pytest.raises(EncodeError):
            producer.publish_batch([(start + 4, 4), (1 << 70, 0)])

    def claim_partly_published() -> None:
        claim = producer.claim(2)
        for k in range(claim.slots):
            CODEC.slot_struct.pack_into(
                claim.view, claim.offset + k * slot, start + 5 + k, 5, claim.stamp
            )
        producer.publish_claimed(1)

    def slots() -> None:
        producer.publish_slots(CODEC.slot_struct.pack(start + 6, 6, 0), 1)

    return [batch_that_wraps, window_refused_midway, claim_partly_published, slots]


@pytest.mark.parametrize("capacity", [2, 4])
def test_compiled_publish_after_every_other_path_writes_what_the_reference_writes(
    instance: str, capacity: int
) -> None:
    """Pins (passes): the compiled publish's stepped slot offset and stamp are derived again
    by ``set_next`` after every other path that moves the producer's sequence
    (``publish_batch`` across the buffer's end, a window refused midway by ``EncodeError``,
    ``claim`` + a partial ``publish_claimed``, ``publish_slots``) and for a producer
    re-attached to a ring whose cursor is mid-lap; each followed by ``publish``, compiled or
    reference, leaves byte-identical rings that a consumer reads in order. No existing test
    fails if ``Producer``'s ``set_next`` stops deriving them (checked by mutation), and a
    stale offset there overwrites a published, possibly unread, slot."""
    rings = [
        Ring.create(instance, f"r{k}", CODEC, capacity=capacity, consumers=["a"]) for k in range(2)
    ]
    outcomes = []
    for reference, ring in zip((False, True), rings, strict=True):
        producer, consumer = ring.producer(), ring.consumer("a")

        def publish(producer: Producer[Any], item: Any, ref: bool = reference) -> int:
            return Producer.publish(producer, item) if ref else producer.publish(item)

        got: list[Any] = []
        for lap in range(3):
            start = lap * 100
            publish(producer, (start, 0))
            got += consumer.read(8)
            for move in _moves(producer, start):
                move()
                got += consumer.read(8)
                publish(producer, (start + 50, 50))
                got += consumer.read(8)
            producer.close()  # re-attached mid-lap: start from the cursor
            producer = ring.producer()
            publish(producer, (start + 99, 99))
            got += consumer.read(8)
        outcomes.append((got, ring.cursor(), bytes(ring.region.buf[ring.data_offset :])))
        consumer.close()
        producer.close()
    assert outcomes[0] == outcomes[1]
    got, cursor, _ = outcomes[0]
    assert len(got) == cursor
    assert [v for v, _ in got][:11] == [0, 1, 2, 50, 4, 50, 5, 50, 6, 50, 99]
