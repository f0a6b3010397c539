"""Review 33 of ``shm/``: a hostile review of the substrate against its contract (sizes from a
header are checked before use; a corrupted header never makes a process read out of bounds or
allocate without limit; a consumer resumes from its committed position, no gap or repeat).
Each ``test_`` that is not a ``test_pin_`` failed on the code it was written against; its
docstring says what was wrong and where. ``test_pin_`` tests pass: behaviour checked and found
correct, kept so that it stays so."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import signal
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import posix_ipc
import pytest

from shm import HeaderMismatchError, Ring, ShmError, StructCodec
from shm import header as h
from shm.counters import Counters
from shm.inspect import SHM_DIR, list_segments, remove_instance
from tests.unit.shm.test_review_shm_bugs import CODEC, firsts, make, wait_for

SPAWN = mp.get_context("spawn")
MiB = 1 << 20


def _raw_segment(instance: str, name: str, size: int, head: bytes = b"") -> Path:
    """A segment made the way another tool (or a corruption) would: ``size`` bytes, sparse,
    ``head`` written at its start."""
    mem = posix_ipc.SharedMemory(f"/ringex.{instance}.{name}", posix_ipc.O_CREX, size=size)
    try:
        if head:
            os.pwrite(mem.fd, head, 0)
    finally:
        mem.close_fd()
    return SHM_DIR / f"ringex.{instance}.{name}"


def _allocated(path: Path) -> int:
    """Bytes of memory tmpfs holds for the segment at ``path`` (its pages, not its size)."""
    return path.stat().st_blocks * 512


def _static_line(instance: str, capacity: int = 4, max_consumers: int = 16) -> bytes:
    """The static line of a real ring (then unlinked), to put into a segment of other size."""
    ring = Ring.create(
        instance, "model", CODEC, capacity=capacity, consumers=["a"], max_consumers=max_consumers
    )
    try:
        return bytes(ring.region.buf[: h.STATIC.size])
    finally:
        ring.unlink()
        ring.close()


@pytest.fixture
def raw_cleanup(instance: str) -> Iterator[None]:
    """Unlink the instance's segments by name: a corrupted one may defeat ``remove_instance``
    (the fixture's own teardown) on the code these tests were written against."""
    yield
    for path in SHM_DIR.glob(f"ringex.{instance}.*"):
        with contextlib.suppress(posix_ipc.ExistentialError):
            posix_ipc.unlink_shared_memory("/" + path.name)


# -- attach: a foreign segment is refused before it is mapped --------------------------------


def test_attaching_a_ring_of_a_foreign_size_allocates_none_of_its_memory(
    instance: str, raw_cleanup: None
) -> None:
    """``Region.attach`` maps the whole segment with ``MAP_POPULATE`` (shm/region.py), and
    ``Ring.attach`` reads the header only once it is mapped: every page of whatever is there
    under the name is faulted in, that is allocated, first. A sparse segment of another size
    (a corrupted or foreign one, or a ring of another profile's capacity) costs its attacher its
    whole size in shared memory before the header check refuses it: measured, a 1 GiB segment
    took 0.6 s and 1 GiB of /dev/shm to refuse; one larger than the memory is an OOM kill.

    Expected: ``HeaderMismatchError`` naming the segment size found and expected, with no page
    of the segment allocated. Actual: the error, after all 64 MiB were allocated."""
    head = _static_line(instance)
    size = 64 * MiB
    path = _raw_segment(instance, "big", size, head)
    before = _allocated(path)
    with pytest.raises(HeaderMismatchError) as refused:
        Ring.attach(instance, "big", CODEC)
    assert refused.value.field == "segment size" and refused.value.found == size
    assert refused.value.expected == h.Geometry(CODEC.slot_size, 4, CODEC.schema_id, 16).total_size
    assert _allocated(path) - before < MiB, f"{_allocated(path)} bytes allocated by a refusal"

    blank = _raw_segment(instance, "blank", size)  # not a ring at all: the magic is missing
    with pytest.raises(HeaderMismatchError, match="magic"):
        Ring.attach(instance, "blank", CODEC)
    assert _allocated(blank) < MiB and _allocated(path) - before < MiB


def test_attaching_a_counter_page_of_a_foreign_size_allocates_none_of_its_memory(
    instance: str, raw_cleanup: None
) -> None:
    """``Counters.attach`` maps (and so pre-faults) the whole segment before it reads the magic
    and the count: the same fault as the ring's, on every metrics scrape of such a page.

    Expected: ``ShmError`` with no page allocated, for a segment that is no counter page and
    for one whose count does not match its size. Actual: 64 MiB allocated by each refusal."""
    blank = _raw_segment(instance, "blank", 64 * MiB)
    with pytest.raises(ShmError, match="not a counter page"):
        Counters.attach(instance, "blank")
    assert _allocated(blank) < MiB
    page = Counters.open(instance, "stats", ["a", "b"])
    head = bytes(page.region.buf[: page.region.size])
    page.close()
    grown = _raw_segment(instance, "grown", 64 * MiB, head)
    with pytest.raises(ShmError, match=r"2 counters need 96 bytes, the segment has 67108864"):
        Counters.attach(instance, "grown")
    assert _allocated(grown) < MiB


def test_pin_a_ring_attached_by_another_process_is_checked_and_read_there(instance: str) -> None:
    """The check before the map changes nothing for a good ring: a spawned process attaches,
    is refused a wrong codec, and reads what was published, in order."""
    ring = make(instance, capacity=8)
    producer = ring.producer()
    producer.publish_batch([(i, i) for i in range(5)])
    with SPAWN.Pool(1) as pool:
        assert pool.apply(_attach_and_read, (instance,)) == ([0, 1, 2, 3, 4], "slot_size")


def _attach_and_read(instance: str) -> tuple[list[int], str]:
    try:
        Ring.attach(instance, "r", StructCodec("3q"))
    except HeaderMismatchError as exc:
        refused = exc.field
    ring = Ring.attach(instance, "r", CODEC, capacity=8)
    consumer = ring.consumer("a")
    got = firsts(consumer.read())
    consumer.close()
    ring.close()
    return got, refused


# -- inspect: a corrupted header never stops `ringex shm ls` or `rm` ----------------------------


def test_listing_survives_truncated_and_corrupted_ring_headers(
    instance: str, raw_cleanup: None
) -> None:
    """``inspect._describe`` trusts the header it reads: a segment holding a ring's static line
    but cut short raises ``IndexError`` (64 bytes: the producer line is missing) or
    ``TypeError`` (60 bytes: ``cast("q")`` of a length that is not whole words), and a static
    line whose max_consumers is corrupted to 2**32-1 makes it ``read(128 * max_consumers)``:
    a 512 GiB buffer, ``MemoryError``. Each one stops ``list_segments`` and so
    ``ringex shm ls`` and ``ringex shm rm`` (``remove_instance``): the tool that cleans up
    after a crash cannot clean up after this one.

    Expected: each listed (as a ring where its magic says so), with no allocation beyond the
    bytes that exist, and removed by ``remove_instance``. Actual: the errors above."""
    head = _static_line(instance)
    fields = list(h.STATIC.unpack(head))
    fields[5] = 2**32 - 1  # max_consumers
    _raw_segment(instance, "short", 64, head)
    _raw_segment(instance, "odd", 60, head)
    _raw_segment(instance, "wide", 4096, h.STATIC.pack(*fields))
    tracemalloc.start()
    try:
        listed = {s.name: s for s in list_segments(instance)}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(listed) == {"short", "odd", "wide"}
    assert all(s.is_ring and s.capacity == 4 for s in listed.values())
    assert peak < MiB, f"listing three small segments allocated {peak} bytes"
    assert remove_instance(instance) == 3
    assert list_segments(instance) == []


# -- a consumer's line: what the header says is checked before it is used ---------------------


@pytest.mark.parametrize("gates", [1 << 5, 1 << 40, 1, -1])
def test_a_consumer_line_gated_outside_the_table_is_refused(instance: str, gates: int) -> None:
    """``Consumer.__init__`` turns the line's gate mask into a ``Gate`` unchecked. A bit past
    ``max_consumers`` names a "consumer line" past the header: in the slots (a record's fields
    read as a state and a sequence: a phantom gate that may hold the consumer back forever),
    or past the segment (``IndexError`` from the first poll). A bit for the line itself gates
    it on its own sequence: it never reads again. A negative mask (bit 63) is read as bit 0.

    Expected: the attach refused, naming the mask and what it may hold. Actual: attached."""
    ring = Ring.create(instance, "r", CODEC, capacity=64, consumers=["a"], max_consumers=2)
    ring.words[h.consumer_word(0, h.C_GATES)] = gates
    with pytest.raises(HeaderMismatchError, match=rf"gates is {gates}, expected"):
        ring.consumer("a")


@pytest.mark.parametrize("offset", [5, -5])
def test_a_consumer_line_whose_sequence_is_off_the_ring_is_refused(
    instance: str, offset: int
) -> None:
    """A consumer resumes from the sequence in its line (``Consumer.__init__``) unchecked. One
    past the cursor (a corrupted word) is a silent gap: the consumer waits there and then
    reads on, the records in between never delivered, and it lets the producer run ahead of
    what it has read. One more than a lap behind the cursor on an active line is impossible
    (the producer cannot lap an active line) and was reported at the first read as "lapped ...
    it had been detached", which it was not.

    Expected: the attach refused, naming the sequence and the range. Actual: the consumer
    attached, and read records 25.. after records 0..19 (a gap of 20..24)."""
    ring = make(instance, capacity=8)
    producer, reader = ring.producer(), ring.consumer("a")
    for i in range(20):
        producer.publish((i, 0))
        assert reader.poll() == (i, 0)
    reader.close()  # commits 20
    sequence = 20 + offset if offset > 0 else 20 - ring.capacity + offset
    ring.words[h.consumer_word(0, h.C_SEQUENCE)] = sequence
    with pytest.raises(HeaderMismatchError, match=rf"sequence is {sequence}, expected"):
        ring.consumer("a")


def test_corrupted_names_and_states_are_header_errors_not_crashes(instance: str) -> None:
    """A consumer name that is not UTF-8 made ``consumer_names`` (so ``consumer``, ``info``,
    ``declare_consumer``) raise ``UnicodeDecodeError``; a state word outside the three made
    ``info()`` raise ``KeyError`` (a supervisor's health check, on every ring); a counter page's
    name likewise made ``Counters.attach`` raise ``UnicodeDecodeError``, which ``open`` (it
    replaces a page only on ``ShmError``) passes on, so its writer cannot start.

    Expected: ``HeaderMismatchError`` / ``ShmError`` naming the field, ``info()`` reporting the
    unknown state. Actual: the errors above."""
    ring = make(instance, consumers=("a", "b"))
    at = h.consumer_name_at(0)
    ring.region.buf[at : at + 2] = b"\xff\xfe"
    with pytest.raises(HeaderMismatchError, match="consumer 0 name"):
        ring.consumer("b")
    ring.region.buf[at : at + 2] = b"a\0"
    ring.words[h.consumer_word(1, h.C_STATE)] = 7
    states = {c.name: c.state for c in ring.info().consumers}
    assert states == {"a": "active", "b": "unknown (7)"}
    page = Counters.open(instance, "stats", ["x"])
    page.region.buf[16:17] = b"\xff"
    page.close()
    with pytest.raises(ShmError, match="counter 0 name"):
        Counters.attach(instance, "stats")
    assert Counters.open(instance, "stats", ["x"]).read() == {"x": 0}  # replaced


# -- publish_slots: memory bounded by the ring, not by the window sizes seen -------------------


def test_publish_slots_keeps_stamp_buffers_bounded_by_the_ring(instance: str) -> None:
    """``publish_slots`` stamps a window with one strided store of ``_lap_stamps(stamp, k)``,
    a buffer of ``k`` words cached in a module-level dict keyed by ``k`` and never dropped: a
    process keeps one buffer per window size it has ever published, 4 * K**2 bytes after
    windows of 1..K slots. The gateway publishes windows of up to capacity // 2 (whatever
    its clients sent in one pass, split at the buffer's end): up to 268 MB for the dev
    profile's 16384 slots, in every gateway, for good.

    Expected: what stays allocated is bounded by the ring (one lap's words: 8 KiB here).
    Actual: about 1.1 MiB kept after windows of 1..512 slots."""
    ring = Ring.create(instance, "r", CODEC, capacity=1024)  # no consumer: never full
    producer = ring.producer()
    image = CODEC.slot_struct.pack(7, 7, 0)
    producer.publish_slots(image, 1)  # whatever a first call sets up
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for count in range(1, 513):
            producer.publish_slots(image * count, count)
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept - before < 64 * 1024, f"{kept - before} bytes kept by publish_slots"
    assert ring.record(producer.sequence - 1) == (7, 7)


# -- a consumer killed at any point resumes from its committed position -----------------------


def _consume_into(instance: str, path: str, commit_every: int) -> None:
    """Read batches; append each to ``path`` and flush before committing it (write-ahead)."""
    ring = Ring.attach(instance, "r", CODEC)
    consumer = ring.consumer("a", auto_commit=False)
    with open(path, "a") as out:
        while True:
            batch = consumer.take(max_batch=commit_every, timeout_s=0.2)
            if batch:
                out.write("".join(f"{item[0]}\n" for item in batch))
                out.flush()
                consumer.commit()


def _produce(instance: str, total: int) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    producer = ring.producer()
    for i in range(0, total, 7):
        producer.publish_batch([(n, n) for n in range(i, min(i + 7, total))])


def test_pin_a_consumer_killed_at_random_points_resumes_from_its_commit(
    instance: str, tmp_path: Path
) -> None:
    """A producer process publishes 0..N-1 through a 64-slot ring; a consumer process is
    SIGKILLed again and again (a new one attached each time, from the line's committed
    sequence). For every incarnation, what it wrote before the next one's start must be the
    records from its own start, in order: no gap, no repeat, across the kills."""
    total, kills = 30_000, 6
    ring = make(instance, capacity=64)
    producer = SPAWN.Process(target=_produce, args=(instance, total), daemon=True)
    producer.start()
    starts: list[int] = []
    try:
        for k in range(kills + 1):
            starts.append(ring.words[h.consumer_word(0, h.C_SEQUENCE)])
            child = SPAWN.Process(
                target=_consume_into, args=(instance, str(tmp_path / f"{k}"), 16), daemon=True
            )
            child.start()
            if k == kills:
                wait_for(lambda: ring.words[h.consumer_word(0, h.C_SEQUENCE)] == total, 30)
            else:
                mark = starts[-1]
                wait_for(lambda m=mark: ring.words[h.consumer_word(0, h.C_SEQUENCE)] > m + 300, 30)
                time.sleep(0.001 * (k % 3))  # mid-batch, mid-write, mid-commit: wherever
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            child.join(5)
        producer.join(10)
    finally:
        for proc in (producer,):
            if proc.is_alive():
                proc.kill()
    starts.append(total)
    delivered: list[int] = []
    for k in range(kills + 1):
        path = tmp_path / f"{k}"
        got = [int(line) for line in path.read_text().split()] if path.exists() else []
        assert got[: starts[k + 1] - starts[k]] == list(range(starts[k], starts[k + 1]))
        delivered += got[: starts[k + 1] - starts[k]]
    assert delivered == list(range(total))
    assert len(set(starts)) > 3, f"the kills landed nowhere useful: starts {starts}"
