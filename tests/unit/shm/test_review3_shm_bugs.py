"""Bugs a third hostile review of ``shm/`` found: each test fails on the code it was written
against (each docstring says what is wrong, what a correct ring does, and what happens)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from typing import Any

import posix_ipc
import pytest

from shm import (
    ConsumerDetachedError,
    HeaderMismatchError,
    Ring,
    RingError,
    ShmError,
    StructCodec,
)
from shm import header as h
from shm.counters import Counters
from shm.region import Region
from shm.ring import ConsumerSpec

CODEC = StructCodec("2q")


def make(instance: str, capacity: int = 4, consumers: Any = ("a",)) -> Ring[Any]:
    return Ring.create(instance, "r", CODEC, capacity=capacity, consumers=list(consumers))


def firsts(items: list[Any]) -> list[int]:
    return [item[0] for item in items]


# -- declaring consumers while others run --------------------------------------------------------


def test_a_consumer_declared_at_an_explicit_start_is_never_lapped(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Ring.declare_consumer(name, start=s)`` checks ``s`` against the slowest active
    consumer (``_check_start``), then writes the line and marks it ACTIVE last. Between the
    check and the ACTIVE store the new line gates nobody: the consumer it was checked against
    may read on and commit, and the producer, refreshing its limit from that consumer alone,
    overwrites records ``s..`` the new consumer was promised. (The ``start=None`` path re-reads
    the cursor after activation; an explicit start has no such repair.)

    The interleaving is forced: "a" reads and commits, the producer refills the ring, right
    after the check. Expected: the declaration is refused, or "late" reads records 2..5.
    Actual: the producer wrote 6..9 over them, and "late" is lapped at its first read."""
    ring = make(instance, capacity=4)
    producer = ring.producer()
    a = ring.consumer("a", auto_commit=False)
    for i in range(4):
        producer.publish((i, 0))
    assert firsts(a.read(2)) == [0, 1]
    a.commit()
    producer.publish((4, 0))
    producer.publish((5, 0))  # cursor 6, "a" at 2: a start of 2 is valid
    check = ring._check_start

    raced: list[bool] = []

    def check_then_race(name: str, start: int, **kwargs: int) -> None:
        check(name, start, **kwargs)
        if raced:
            return  # the check after the line is active (the fix): no race there
        raced.append(True)
        while a.read():  # meanwhile "a" finishes 2..5 and commits
            a.commit()
        for i in range(6, 10):
            producer.try_publish((i, 0))  # refused while "late" gates the producer

    monkeypatch.setattr(ring, "_check_start", check_then_race)
    try:
        ring.declare_consumer("late", start=2)
    except RingError:
        return  # refused: acceptable
    late = ring.consumer("late")
    try:
        got = firsts(late.read())
    except RingError as exc:
        pytest.fail(f"cursor {ring.cursor()}: the declared consumer was lapped: {exc}")
    assert got == [2, 3, 4, 5]


def test_a_ring_cannot_be_attached_before_its_consumers_are_declared(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Ring.create`` writes the whole static header, magic included, and only then declares
    the consumers one by one. A process that attaches in between (a producer started beside
    the supervisor, ``ringex status``) finds a valid ring with no consumers: its producer runs
    ungated (``Ring.create``'s promise "they gate the producer from the first record" is
    broken), and the creator's ``declare_consumer(start=0)`` then fails ("cannot start at
    0") and unlinks the segment under the live producer.

    Expected: the magic is written last (after the consumer table), so an attach during
    creation is a ``HeaderMismatchError`` and the creation succeeds. Actual: the attach
    succeeds, the producer publishes 5 records into a 4-slot ring nobody gates, and the
    creation fails."""
    outcome: list[str] = []
    declare = Ring.declare_consumer

    def race_then_declare(
        self: Ring[Any], name: str, *, gates: Iterable[str] = (), start: int | None = None
    ) -> int:
        if not outcome:
            try:
                early = Ring.attach(instance, "r", CODEC)
            except ShmError:
                outcome.append("refused")
            else:
                producer = early.producer()
                published = sum(producer.try_publish((i, 0)) for i in range(5))
                outcome.append(f"attached, published {published} records ungated")
                producer.close()
                early.close()
        return declare(self, name, gates=gates, start=start)

    monkeypatch.setattr(Ring, "declare_consumer", race_then_declare)
    created = "created"
    try:
        make(instance, capacity=4)
    except RingError as exc:
        created = f"create failed: {exc}"
    assert outcome == ["refused"] and created == "created", f"{outcome}; {created}"


# -- stale handles and reused lines --------------------------------------------------------------


def test_rejoining_makes_the_old_handle_of_the_line_stale(instance: str) -> None:
    """A rejoin (``Consumer(..., rejoin=True)``) moves a detached line to the cursor and marks
    it ACTIVE, but keeps its generation, so an older ``Consumer`` of the same line (the same
    process: the pid check lets it through) passes ``_check_attached`` again. It reads records
    it had before the detach and after, and its auto-commit stores its own sequence into the
    line the new handle owns: the producer then overwrites records the new handle never read.
    ``declare_consumer`` bumps the generation for exactly this reason ("an old holder of the
    line: stale"); a rejoin does not.

    Expected: the old handle gets ``ConsumerDetachedError``, the new one reads 4..7.
    Actual: the old handle commits sequence 8, so the producer may write 8..15, 12..15 over
    4..7, and the new handle is lapped."""
    ring = make(instance, capacity=8)
    producer = ring.producer()
    old = ring.consumer("a")
    for i in range(4):
        producer.publish((i, 0))
    assert old.poll() == (0, 0)
    ring.detach_consumer(0)
    new = ring.consumer("a", rejoin=True)  # at the cursor, 4
    for i in range(4, 8):
        producer.publish((i, 0))
    with contextlib.suppress(ConsumerDetachedError):
        old.read()
        old.read()
    assert ring.words[h.consumer_word(0, h.C_SEQUENCE)] == 4, "the old handle committed"
    for i in range(8, 16):
        producer.try_publish((i, 0))  # 12.. refused while the new handle holds 4..7
    try:
        got = firsts(new.read())
    except RingError as exc:
        pytest.fail(f"the rejoined consumer was lapped: {exc}")
    assert got[:4] == [4, 5, 6, 7]


def test_a_freed_gate_s_line_does_not_gate_its_followers_for_its_next_owner(
    instance: str,
) -> None:
    """Gates are stored as a bitmask of line indexes. ``free_consumer`` returns a line to the
    pool without clearing its bit from the masks of the consumers gated on it, so the next
    ``declare_consumer`` of any name on that line silently becomes their gate.

    Here "matcher" is gated on "journal"; the journal is detached and freed, and an unrelated
    "audit" consumer, declared at the cursor, takes line 0. Expected: the free is refused
    while "matcher" is gated on the line (the fix: name the followers), or the matcher, whose
    only gate is gone, reads record 0. Actual: it is gated on "audit" and gets nothing until
    audit reads, and ``info()`` lists gate 0 ("audit")."""
    ring = Ring.create(
        instance,
        "r",
        CODEC,
        capacity=8,
        consumers=["journal", ConsumerSpec("matcher", gates=("journal",))],
    )
    producer = ring.producer()
    ring.detach_consumer(0)
    try:
        ring.free_consumer(0)
    except RingError as exc:
        assert "matcher" in str(exc)  # refused, naming who it gates: acceptable
        return
    assert ring.declare_consumer("audit") == 0  # an unrelated consumer takes the line
    matcher = ring.consumer("matcher")
    producer.publish((0, 0))
    gates = {c.name: c.gates for c in ring.info().consumers}
    assert matcher.poll() == (0, 0), f"matcher is gated on line 0 (now 'audit'): {gates}"


# -- header validation -----------------------------------------------------------------------------


def test_attach_refuses_a_header_whose_capacity_is_not_a_power_of_two(instance: str) -> None:
    """``Ring.create`` validates the geometry (``Geometry.validate``), ``Ring.attach`` does not:
    it checks magic, version, slot size, schema and sizes, then addresses slots with
    ``mask = capacity - 1`` and laps with ``shift = capacity.bit_length() - 1`` as read. A
    corrupt or foreign header with capacity 6 (segment size consistent) attaches; with mask 5,
    records 0, 1, 2, 3 go to slots 0, 1, 0, 1: record 2 silently overwrites unread record 0.

    Expected: ``HeaderMismatchError`` (or ``RingError``) naming the capacity. Actual: the
    attach succeeds."""
    geometry = h.Geometry(CODEC.slot_size, 6, CODEC.schema_id, 1)
    region = Region.create(instance, "r", geometry.total_size)
    h.STATIC.pack_into(
        region.buf,
        0,
        h.MAGIC,
        h.LAYOUT_VERSION,
        geometry.slot_size,
        geometry.capacity,
        geometry.schema_id,
        geometry.max_consumers,
        geometry.header_size,
        time.time_ns(),
        os.getpid(),
    )
    region.close()
    with pytest.raises((ShmError, ValueError), match="capacity"):
        Ring.attach(instance, "r", CODEC)


def test_a_struct_codec_of_another_format_is_a_header_mismatch(instance: str) -> None:
    """``StructCodec``'s ``schema_id`` defaults to 0 for every format, so the header check
    cannot tell two formats of one slot size apart: a ring made for ``"2q"`` attaches with
    ``"qd"`` and its consumer decodes integers as floats, no error anywhere.
    (``RecordCodec`` derives its id from its layout; ``StructCodec`` should derive a default
    one from its format and slot size.)

    Expected: ``HeaderMismatchError`` on ``schema_id``. Actual: the attach succeeds and record
    (1, 2) is read as (1, 1e-323)."""
    ring = make(instance)
    ring.producer().publish((1, 2))
    with pytest.raises(HeaderMismatchError, match="schema_id"):
        other = Ring.attach(instance, "r", StructCodec("qd"))
        pytest.fail(f"attached; record 0 reads as {other.record(0)}")


def test_attaching_a_counter_page_to_a_tiny_segment_is_a_shm_error(instance: str) -> None:
    """``Counters`` unpacks its 16-byte head without checking the segment's size: an 8-byte
    segment under the name (another tool's, or one being created) raises ``struct.error``,
    which neither ``Counters.attach`` (it closes the region only on ``ShmError``) nor
    ``Counters.open`` (it replaces only on ``ShmError``) expects, so a metrics scrape or a
    writer's start crashes. ``Ring.attach`` checks the size first.

    Expected: ``ShmError`` saying the segment is too small for a counter page. Actual:
    ``struct.error: unpack_from requires a buffer of at least 16 bytes``."""
    mem = posix_ipc.SharedMemory(f"/ringex.{instance}.x", posix_ipc.O_CREX, size=8)
    mem.close_fd()
    with pytest.raises(ShmError):
        Counters.attach(instance, "x")
