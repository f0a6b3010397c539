"""Review 119, second part: the docstrings and ``#:`` comments of ``shm/producer.py``,
``header.py``, ``region.py``, ``codec.py``, ``wait.py``, ``barrier.py``, ``cells.py``,
``counters.py``, ``health.py``, ``inspect.py``, ``liveness.py`` and ``roles.py``. Convention
and disagreements: ``test_review119_shm_docstrings.py``."""

from __future__ import annotations

import os
import select
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import shm.codec
import shm.errors
import shm.header
import shm.health
import shm.inspect
import shm.roles
import shm.wait
from shm import (
    Blocking,
    BusySpin,
    EncodeError,
    Ring,
    RingError,
    RingFullError,
    ShmError,
    SleepBackoff,
    StructCodec,
    Yielding,
)
from shm import header as h
from shm.barrier import Gate, mask_indexes
from shm.counters import Counters
from shm.health import Health, classify
from shm.inspect import list_segments, remove, remove_instance
from shm.liveness import holder_alive, own_start, pid_alive, process_start
from shm.producer import Producer
from shm.region import HEAD_BYTES, Region, segment_name
from shm.ring import ConsumerInfo
from shm.wait import PARKED, WATCHED, FifoPoster, Parker, fifo_path, own, post, sem_path
from tests.unit.shm.test_health import _attach_and_die
from tests.unit.shm.test_review119_shm_docstrings import FORK, in_thread, readable, said
from tests.unit.shm.test_review_shm_bugs import CODEC, firsts, make, wait_for

# -- shm/producer.py -------------------------------------------------------------------------


def test_the_cached_limit_is_reread_only_when_the_ring_may_be_full(instance: str) -> None:
    """shm/producer.py: "The limit (slowest active consumer + capacity) is re-read from the
    header only when the cached value says the ring may be full"; ``backlog``: "Records
    published that the slowest active consumer has not consumed yet"."""
    said(sys.modules["shm.producer"], Producer.backlog)
    ring = make(instance, capacity=4, consumers=("a", "b"))
    producer, consumer = ring.producer(), ring.consumer("a")
    producer.publish_batch([(n, 0) for n in range(3)])
    consumer.read()
    assert producer._limit == 4 and producer.backlog() == 3  # b has read nothing
    ring.detach_consumer(1)
    producer.publish((3, 0))
    assert producer._limit == 4 and producer.backlog() == 1  # cached, not re-read
    producer.publish((4, 0))  # 4 >= the cached limit: re-read, 3 + 4
    assert producer._limit == 7


def test_publish_batch_stores_the_cursor_once_and_chunks_by_the_ring(instance: str) -> None:
    """``publish_batch``: "publish the cursor once. Returns the sequence of the last record.
    Batches larger than the ring are written in ring-sized chunks"; ``publish``: "returns its
    sequence"."""
    said(Producer.publish_batch, Producer.publish)
    ring = make(instance, capacity=4, consumers=())
    producer = ring.producer()
    cursors: list[int] = []

    def encode_window(buf: Any, offset: int, items: Any, stamp: int) -> None:
        cursors.append(ring.cursor())  # what a reader sees while the window is written
        CODEC.encode_window(buf, offset, items, stamp)

    producer._encode_window = encode_window
    assert producer.publish((0, 0)) == 0 and producer.publish((1, 0)) == 1
    assert producer.publish_batch([(2, 0), (3, 0), (4, 0)]) == 4  # wraps: two windows
    assert cursors == [2, 2] and ring.cursor() == 5
    assert producer.publish_batch([(n, 0) for n in range(5, 15)]) == 14
    assert cursors[2:] == [5, 5, 9, 9, 13]  # chunks of 4, a cursor store after each


def test_claim_stops_at_the_buffer_s_end_and_shows_nothing_until_published(
    instance: str,
) -> None:
    """``claim``: "fewer when the buffer's end comes first"; "Nothing is visible until
    ``publish_claimed(claim.slots)`` stores the cursor"; ``publish_claimed``: "Publish the
    first ``count`` slots of the last claim; returns the last sequence"."""
    said(Producer.claim, Producer.publish_claimed)
    ring = make(instance, capacity=4)
    producer, consumer = ring.producer(), ring.consumer("a")
    producer.publish_batch([(0, 0), (1, 0)])
    consumer.read()
    view, offset, stamp, slots = producer.claim(4)
    assert (offset, stamp, slots) == (ring.slot_offset(2), 1, 2)
    view[offset : offset + 48] = CODEC.slot_struct.pack(2, 0, 1) + CODEC.slot_struct.pack(3, 0, 1)
    assert consumer.poll() is None
    with pytest.raises(ValueError, match=r"outside 1\.\.2"):
        producer.publish_claimed(3)
    assert producer.publish_claimed(1) == 2 and firsts(consumer.read()) == [2]


def test_publish_slots_sets_every_stamp_and_splits_past_the_ring(instance: str) -> None:
    """``publish_slots``: "one strided store that sets every stamp (whatever the images
    held)"; "Batches larger than the ring are split"; ``slot_struct``: "Packs a whole slot
    image for ``Producer.publish_slots``"."""
    said(Producer.publish_slots, shm.codec)
    ring = make(instance, capacity=4, consumers=())
    producer = ring.producer()
    images = b"".join(CODEC.slot_struct.pack(n, n, 12345) for n in range(6))
    assert producer.publish_slots(images, 6) == 5
    assert [ring.words[ring.stamp_word(n)] for n in range(4, 8)] == [2, 2, 1, 1]
    assert [ring.record(n) for n in range(2, 6)] == [(n, n) for n in range(2, 6)]
    with pytest.raises(ValueError, match="not count=2"):
        producer.publish_slots(images, 2)


def test_idle_round_parks_a_blocking_producer_until_a_commit(instance: str) -> None:
    """``idle_round``: "a blocking strategy parks until a consumer commits"."""
    said(Producer.idle_round)
    ring = make(instance, capacity=4)
    producer = ring.producer(Blocking(spins=0, park_timeout_s=5))
    consumer = ring.consumer("a")
    producer.publish_batch([(n, 0) for n in range(4)])
    thread, out = in_thread(lambda: producer.idle_round(1, 0))
    wait_for(lambda: ring.words[h.P_PARKED])
    consumer.read(1)
    thread.join(5)
    assert out["took"] < 3 and producer.has_room(1)


def test_a_bounded_wait_for_room_ends_in_time(instance: str) -> None:
    """``RingFullError``: "Raised by a bounded wait when the slowest consumer does not free a
    slot in time" (``Producer._await_space(need, timeout_s)``, a blocking strategy; review
    119: it parked a whole ``park_timeout_s`` past its deadline)."""
    said(RingFullError)
    ring = make(instance, capacity=4)
    producer = ring.producer(Blocking(spins=0, park_timeout_s=1.5))
    producer.publish_batch([(n, 0) for n in range(4)])
    start = time.monotonic()
    with pytest.raises(RingFullError, match="need sequence 5, slowest consumer allows 4"):
        producer._await_space(5, 0.02)
    took = time.monotonic() - start
    assert took < 0.75, f"a 0.02 s bounded wait raised after {took:.2f} s"


def test_a_watched_producer_s_fd_turns_readable_at_a_commit(instance: str) -> None:
    """``raise_park_flag``: "Have each consumer's commit post this producer as if it were
    parked (with ``WATCHED``, by a write to ``watch_fd``'s FIFO)"; ``watch_fd``: "``close``
    closes it"."""
    said(Producer.raise_park_flag, Producer.watch_fd)
    ring = make(instance, capacity=4)
    producer, consumer = ring.producer(), ring.consumer("a", auto_commit=False)
    fd = producer.watch_fd()
    producer.publish_batch([(n, 0) for n in range(4)])
    producer.raise_park_flag(WATCHED)
    assert not producer.has_room(1) and not readable(fd, 0.05)
    consumer.poll()
    consumer.commit()
    assert readable(fd) and producer.has_room(1)
    producer.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_close_keeps_the_cursor_and_a_kept_publish_still_wakes(instance: str) -> None:
    """``close``: "the cursor stays; a new producer continues from it"; ``P_PID``: "pid of
    the attached producer, 0 when none"; ``_waker``: "a kept ``publish`` whose producer was
    let go still wakes the consumers"; ``alive``: "a RingError, before anything is published
    or read, when it was let go"; shm/roles.py: "The first ``close`` must not clear it while
    the other still publishes or reads"."""
    said(Producer.close, shm.header, sys.modules["shm.producer"], shm.errors.alive, shm.roles)
    ring = make(instance, capacity=4)
    producer, consumer = ring.producer(), ring.consumer("a")
    other = Ring.attach(instance, "r", CODEC).producer()  # this process's second handle
    producer.publish((0, 0))
    other.close()
    assert ring.words[h.P_PID] == os.getpid()
    producer.close()
    assert ring.words[h.P_PID] == 0 and ring.record(0) == (0, 0)
    with pytest.raises(RingError, match="this producer is closed"):
        producer.publish((1, 0))
    fd = consumer.watch_fd()
    consumer.raise_park_flag(WATCHED)
    again = ring.producer()
    publish = again.publish
    del again
    assert publish((1, 0)) == 1 and readable(fd)
    publish((2, 0))
    publish((3, 0))
    with pytest.raises(RingError, match="was let go"):
        publish((4, 0))
    assert ring.cursor() == 4


def test_a_bad_item_publishes_what_came_before_it_in_its_window(instance: str) -> None:
    """``EncodeError``: "items before it in the same window were written and stamped, so the
    producer publishes them"; ``SlotCodec``: "raises ``ValueError`` naming the field and
    value"."""
    said(EncodeError, shm.codec.SlotCodec)
    ring = make(instance, capacity=4)
    producer, consumer = ring.producer(), ring.consumer("a")
    with pytest.raises(ValueError, match=r"field 0 \('q'\) is 9223372036854775808"):
        producer.publish((2**63, 0))
    assert ring.cursor() == 0
    with pytest.raises(EncodeError) as bad:
        producer.publish_batch([(0, 0), (1, 0), ("x", 0), (3, 0)])
    assert bad.value.published == 2 and firsts(consumer.read()) == [0, 1]


# -- shm/header.py ---------------------------------------------------------------------------


def test_the_header_lines_hold_what_the_layout_says(instance: str) -> None:
    """The layout: "line 1 producer cursor, heartbeat ns, pid,"; "Each role's words live on
    their own 128-byte line"; "data capacity x slot_size bytes"; ``CREATOR_START``: "Word of
    the static line after its fields"; a consumer line: "sequence, heartbeat ns, pid, state,
    gate mask, parked flag, name,"; ``state_name``: "a corrupted one is named, not a
    ``KeyError``"."""
    said(shm.header, h.state_name)
    ring = Ring.create(instance, "r", CODEC, capacity=8, consumers=["a", "b"], max_consumers=3)
    words, me = ring.words, os.getpid()
    fields = h.STATIC.unpack_from(ring.region.buf, 0)
    assert fields[:7] == (h.MAGIC, h.LAYOUT_VERSION, 24, 8, CODEC.schema_id, 3, 6 * 128)
    assert fields[8] == me and words[h.CREATOR_START] == own_start() and h.STATIC.size < 128
    ring.producer().publish((0, 0))
    assert [words[w] for w in (h.P_CURSOR, h.P_PID, h.P_PID_START)] == [1, me, own_start()]
    assert 16 <= h.P_CURSOR < h.P_PID_START < 32 == h.P_PARKED
    ring.consumer("b").raise_park_flag()
    line = [h.consumer_word(1, f) for f in range(h.C_PID_START + 1)]
    assert min(line) == 64 and max(line) < 80 and words[h.consumer_word(1, h.C_PID)] == me
    assert (words[line[h.C_PARKED]], words[line[h.C_HEARTBEAT]] > 0) == (1, True)
    assert bytes(ring.region.buf[h.consumer_name_at(1) :][:16]) == b"b".ljust(16, b"\0")
    assert ring.region.size == 6 * 128 + 8 * 24 and ring.data_offset == 6 * 128
    words[h.consumer_word(0, h.C_STATE)] = 7
    assert ring.info().consumers[0].state == "unknown (7)"


def test_geometry_refuses_what_the_fields_cannot_hold() -> None:
    """``MAX_SLOT``: "the static line's slot size field is a uint32"; ``MAX_CONSUMERS``: "a
    gate mask is a word, its sign bit is not one, and bit 62 is the consumer's"; ``Geometry``:
    "What a ring's creator fixed and every attacher validates"."""
    said(shm.header, h.Geometry)
    assert h.MAX_CONSUMERS == 62 and sys.modules["shm.consumer"]._NO_GATE == 1 << 62
    ok = h.Geometry(16, 2, 0, h.MAX_CONSUMERS)
    ok.validate()
    for bad, words in (
        (replace(ok, capacity=6), "not a power of two"),
        (replace(ok, slot_size=20), "multiple of 8"),
        (replace(ok, slot_size=h.MAX_SLOT + 1), "uint32"),
        (replace(ok, max_consumers=63), "outside 1..62"),
        (replace(ok, slot_size=1 << 31, capacity=1 << 10), "1 TiB"),
    ):
        with pytest.raises(ValueError, match=words):
            bad.validate()


def test_a_bad_geometry_is_a_value_error_naming_it(instance: str) -> None:
    """``RingError``: "(bad geometry is a ``ValueError`` of ``Geometry.validate``, naming the
    value)" (review 119: it said a bad geometry was a ``RingError``)."""
    said(RingError)
    with pytest.raises(ValueError, match="3"):
        Ring.create(instance, "r", CODEC, capacity=3)


# -- shm/region.py ---------------------------------------------------------------------------


def test_create_names_zero_fills_reserves_and_replaces_only_when_asked(instance: str) -> None:
    """ "Names carry an instance prefix, ``/ringex.<instance>.<name>``"; "The same prefix names
    the segment's semaphores"; ``segment_name``: "both parts are checked"; ``create``: "an
    existing one is an error unless ``replace`` (then it is unlinked first: attached processes
    keep the old mapping)"; ``_reserve``: "Allocate every page of a new segment now"."""
    said(Region.create, segment_name, sys.modules["shm.region"])
    assert make(instance).producer_sem_name() == f"/ringex.{instance}.r.p"
    for parts in (("a.b", "r"), (instance, "x" * 49), (instance, "")):
        with pytest.raises(ValueError, match=r"must be 1\.\.48 of"):
            segment_name(*parts)
    old = Region.create(instance, "seg", 1 << 20)
    assert old.posix_name == f"/ringex.{instance}.seg" and bytes(old.buf) == bytes(1 << 20)
    assert os.stat(f"/dev/shm/ringex.{instance}.seg").st_blocks * 512 >= 1 << 20
    old.buf[0:3] = b"old"
    with pytest.raises(ShmError, match="already exists"):
        Region.create(instance, "seg", 4096)
    new = Region.create(instance, "seg", 4096, replace=True)
    assert bytes(old.buf[0:3]) == b"old" and bytes(new.buf[0:3]) == bytes(3)


def test_attach_shows_its_check_the_size_and_head_before_mapping(instance: str) -> None:
    """``attach``: "given its size and first ``HEAD_BYTES`` (fewer if it is smaller) before
    anything is mapped"; ``peek``: "None if there is none";
    ``unlink``: "mappings stay valid until each process closes its own"; ``close``: "Unmap.
    Idempotent."."""
    said(Region.attach, Region.peek, Region.unlink, Region.close)
    seen: list[tuple[int, int]] = []
    for name, size in (("small", 64), ("big", 3 * HEAD_BYTES)):
        Region.create(instance, name, size)
        Region.attach(instance, name, lambda _n, size, head: seen.append((size, len(head))))
    assert seen == [(64, 64), (3 * HEAD_BYTES, HEAD_BYTES)]
    region = Region.attach(instance, "small")
    region.unlink()
    region.buf[0:2] = b"ok"
    assert bytes(region.buf[0:2]) == b"ok" and Region.peek(instance, "small") is None
    region.close()
    region.close()
    with pytest.raises(ShmError, match="does not exist"):
        Region.attach(instance, "small")


# -- shm/codec.py ----------------------------------------------------------------------------


def test_struct_codec_pads_to_whole_words_and_stamps_last() -> None:
    """``StructCodec``: "the smallest multiple of 8 that holds body and stamp"; ``SlotCodec``:
    "into the slot's last 8 bytes, after (at higher addresses than) everything else it
    writes"; ``_length_checks``: "longer than its ``Ns`` (struct truncates it)"; ``_room``:
    "a Pascal string spends a byte on its length, which holds at most 255"."""
    said(StructCodec, shm.codec.SlotCodec, shm.codec._length_checks, shm.codec._room)
    assert [StructCodec(f).slot_size for f in ("b", "bq", "2q", "q3s")] == [16, 24, 24, 24]
    codec = StructCodec("q4s")
    buf = bytearray(48)
    codec.encode_into(buf, 0, (1, b"ab"), 7)
    codec.encode_window(buf, 24, [(2, b"cd")], 9)
    assert buf[16:24] == (7).to_bytes(8, "little") and buf[40:48] == (9).to_bytes(8, "little")
    assert codec.decode_window(memoryview(buf), 0, 2) == [(1, b"ab\0\0"), (2, b"cd\0\0")]
    with pytest.raises(ValueError, match="is 5 bytes, at most 4"):
        codec.encode_into(buf, 0, (1, b"abcde"), 1)
    with pytest.raises(ValueError, match="at most 255"):
        StructCodec("300p").encode_into(bytearray(312), 0, (b"x" * 256,), 1)


# -- shm/wait.py -----------------------------------------------------------------------------


def test_each_strategy_spins_yields_sleeps_or_parks_as_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ "``BusySpin`` re-check immediately"; "``Yielding`` spin a little, then
    ``sched_yield``"; "``SleepBackoff`` spin, yield, then sleep with doubling intervals up to
    a cap"; "``Blocking`` spin, then park"; "(then a blocking strategy degrades to
    sleeping)"; ``wait_strategy``: "Build a strategy by its config name"."""
    said(shm.wait, shm.wait.WaitStrategy, shm.wait.wait_strategy)
    names = ["busy-spin", "yield", "sleep", "blocking"]
    assert [shm.wait.wait_strategy(name).name for name in names] == names
    with pytest.raises(ValueError, match="choose one of"):
        shm.wait.wait_strategy("nap")
    calls: list[Any] = []
    monkeypatch.setattr(os, "sched_yield", lambda: calls.append("yield"))
    monkeypatch.setattr(time, "sleep", calls.append)
    for rounds in range(102):
        BusySpin().idle(rounds, lambda: False, None)
        Yielding().idle(rounds, lambda: False, None)
    assert calls == ["yield", "yield"]
    backoff = SleepBackoff(spins=2, yields=2, min_sleep_s=1e-3, max_sleep_s=5e-3)
    for rounds in range(9):
        backoff.idle(rounds, lambda: False, None)
    assert calls[2:] == ["yield", "yield", 1e-3, 2e-3, 4e-3, 5e-3, 5e-3]
    parks: Any = SimpleNamespace(cap_s=1e-4, park=lambda _r, t: calls.append(("park", t)))
    backoff.idle(100, lambda: False, parks)  # cap_s: the caller's deadline
    for rounds in (1, 2):
        Blocking(spins=2, park_timeout_s=0.5).idle(rounds, lambda: False, parks)
    Blocking(spins=2, park_timeout_s=0.5).idle(2, lambda: False, None)
    assert calls[9:] == [1e-4, ("park", 0.5), 0.5]


def test_a_park_ends_at_a_post_a_timeout_or_a_ready_condition(instance: str) -> None:
    """``Parker.park``: "Sleep until posted, ``timeout_s`` passes, or ``ready()`` is already
    true"; "surplus posts: the next park really sleeps"; ``Parker``: "``cap_s``, when set,
    bounds every park"; "words on the wakers' lines"."""
    said(Parker.park, shm.wait, Parker)
    ring = make(instance)
    flag, sem = h.consumer_word(0, h.C_PARKED), ring.consumer_sem_name(0)
    parker = Parker(ring.words, flag, sem, (h.P_WAKE,))

    def took(ready: Any, timeout_s: float) -> float:
        start = time.monotonic()
        parker.park(ready, timeout_s)
        return time.monotonic() - start

    assert took(lambda: True, 5) < 0.5
    for _ in range(3):
        post(sem, {})
    assert took(lambda: False, 5) < 0.5  # posted
    assert 0.08 <= took(lambda: False, 0.1) < 1  # the surplus was drained: a timeout
    parker.cap_s = 0.05
    assert took(lambda: False, 5) < 1 and ring.words[flag] == 0
    parker.raise_flag(WATCHED)
    assert (ring.words[flag], ring.words[h.P_WAKE]) == (WATCHED, 1)


def test_a_watch_fd_is_a_fifo_never_hung_up_readable_after_a_watched_post(
    instance: str,
) -> None:
    """``Parker.watch``: "made if missing. Opened for writing too, so that it never reads as
    hung up"; ``post``: "or ``WATCHED`` through its FIFO"; ``FifoPoster``: "``release``
    writes one byte, as a post"."""
    said(Parker.watch, post, FifoPoster)
    ring = make(instance)
    sem = ring.consumer_sem_name(0)
    FifoPoster(fifo_path(sem)).release()  # no FIFO yet: nobody to wake, no error
    fd = Parker(ring.words, h.consumer_word(0, h.C_PARKED), sem).watch()
    assert stat.S_ISFIFO(os.stat(fifo_path(sem)).st_mode)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    assert poller.poll(50) == []  # no hang-up
    post(sem, {}, PARKED)
    assert not readable(fd, 0.05)
    post(sem, {}, WATCHED)
    assert readable(fd) and os.read(fd, 10) == b"\0"


def test_own_narrows_a_wide_mode_and_refuses_another_user_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``own``: "Ours with a wider mode (an older build's, or a umask's) is narrowed to 0600;
    another user's refuses, naming it"; ``sem_path``: "Where Linux keeps the named
    semaphore"."""
    said(own, sem_path)
    path = tmp_path / "sem.x"
    path.write_bytes(b"")
    path.chmod(0o666)
    own(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)
    with pytest.raises(ShmError, match=f"{path} belongs to uid"):
        own(str(path))
    assert sem_path("/ringex.i.r.p") == "/dev/shm/sem.ringex.i.r.p"


# -- shm/barrier.py --------------------------------------------------------------------------


def test_a_gate_is_the_minimum_of_its_active_consumers(instance: str) -> None:
    """``Gate.minimum``: "Smallest sequence among the active gating consumers, ``default`` if
    there are none"; "Detached consumers gate nobody"; ``mask_indexes``: "The consumer
    indexes set in a gate bitmask"."""
    said(Gate.minimum, sys.modules["shm.barrier"], mask_indexes)
    ring = make(instance, consumers=("a", "b", "c"))
    for index, seq in enumerate((5, 3, 9)):
        ring.words[h.consumer_word(index, h.C_SEQUENCE)] = seq
    assert Gate(ring.words, mask_indexes(0b101)).minimum(99) == 5
    assert Gate(ring.words, range(3)).minimum(99) == 3
    ring.detach_consumer(1)
    assert Gate(ring.words, [1]).minimum(99) == 99 and not Gate(ring.words, [])
    assert mask_indexes(0b1011) == [0, 1, 3]


# -- shm/counters.py -------------------------------------------------------------------------


def test_a_counter_page_is_laid_out_as_documented(instance: str) -> None:
    """ "``magic(8) | count u32 | pad u32 | count x 32-byte NUL-padded names | count x
    u64``"; ``read``: "Every counter, copied."; ``open``: "keeps an existing page whose names
    match, so counters continue across a restart of the writer; a page with other names is
    replaced"; "``attach`` (a reader) validates the magic"; a ring is "not replaced"."""
    said(sys.modules["shm.counters"], Counters.read, Counters.open)
    page = Counters.open(instance, "cnt", ["in", "out"])
    page.values[page.index("out")] = 7
    raw = bytes(page.region.buf)
    assert raw[:16] == b"RGXCNT01" + (2).to_bytes(4, "little") + bytes(4)
    assert raw[16:48] == b"in".ljust(32, b"\0") and raw[48:80] == b"out".ljust(32, b"\0")
    assert raw[80:96] == bytes(8) + (7).to_bytes(8, "little") and len(raw) == 96
    copied = Counters.attach(instance, "cnt").read()
    page.values[0] = 1
    assert copied == {"in": 0, "out": 7}
    with pytest.raises(ShmError, match="no counter 'x'"):
        page.index("x")
    assert Counters.open(instance, "cnt", ["in", "out"]).read() == {"in": 1, "out": 7}
    assert Counters.open(instance, "cnt", ["in"]).read() == {"in": 0}
    make(instance)
    with pytest.raises(ShmError, match="is not a counter page"):
        Counters.attach(instance, "r")
    with pytest.raises(ShmError, match="not replaced"):
        Counters.open(instance, "r", ["a"])


# -- shm/health.py ---------------------------------------------------------------------------

BASE = ConsumerInfo(0, "c", "active", 5, 3, os.getpid(), True, 0.01, False, ())


@pytest.mark.parametrize(
    ("later", "verdict"),
    [
        ({"state": "detached"}, Health.DETACHED),
        ({"pid": 0}, Health.UNATTACHED),
        ({"pid_alive": False}, Health.DEAD),
        ({"lag": 0, "heartbeat_age_s": 99.0}, Health.IDLE),
        ({"sequence": 6}, Health.WORKING),
        ({}, Health.WAITING),
        ({"heartbeat_age_s": 2.0}, Health.STUCK),
        ({"heartbeat_age_s": None}, Health.STUCK),
    ],
)
def test_classify_gives_the_documented_verdict(later: dict[str, Any], verdict: Health) -> None:
    """``Health``: "nothing pending"; "records pending and its sequence moved"; "records
    pending, no progress, but a fresh heartbeat"; "no heartbeat for stale_after_s"."""
    said(shm.health)
    assert classify(BASE, replace(BASE, **later), stale_after_s=1.0) is verdict


def test_a_real_unattached_line_gates_and_a_dead_holder_is_dead(instance: str) -> None:
    """``UNATTACHED``: "declared, no process holds it yet (it still gates the producer)";
    ``DEAD``: "its process is gone"."""
    said(shm.health)
    ring = Ring.create(instance, "r", CODEC, capacity=2, consumers=["later", "dead"])
    producer = ring.producer()
    child = FORK.Process(target=_attach_and_die, args=(instance,))
    child.start()
    child.join(10)
    assert producer.try_publish((0, 0)) and producer.try_publish((1, 0))
    assert not producer.try_publish((2, 0))
    earlier = {c.name: c for c in ring.info().consumers}
    later = {c.name: c for c in ring.info().consumers}
    verdicts = {n: classify(earlier[n], later[n], stale_after_s=1) for n in later}
    assert verdicts == {"later": Health.UNATTACHED, "dead": Health.DEAD}


# -- shm/inspect.py, shm/liveness.py, shm/roles.py -----------------------------------------------


def test_a_ring_is_stale_when_no_process_it_names_is_the_one_that_wrote_it(
    instance: str,
) -> None:
    """ "A segment is stale when no process it names (creator, producer, attached consumers) is
    alive"; ``CREATOR_START``: "a pid alone may be reused"; ``holder_alive``: "a process that
    took the pid since ... holds nothing of the ring"."""
    said(shm.inspect, shm.header, holder_alive)
    ring = make(instance)
    ring.words[h.CREATOR_START] += 1  # the creator's pid, taken since by this process
    (seg,) = list_segments(instance)
    assert seg.is_ring and seg.pids == (os.getpid(),) and seg.stale
    consumer = ring.consumer("a")
    assert not list_segments(instance)[0].stale
    consumer.close()
    assert list_segments(instance)[0].stale
    ring.producer()
    assert list_segments(instance)[0].live_pids == (os.getpid(),)
    assert not holder_alive(os.getpid(), own_start() + 1) and holder_alive(os.getpid(), 0)


def test_a_fifo_whose_semaphore_is_gone_is_listed_and_removed(instance: str) -> None:
    """``list_segments``: "named also by a FIFO beside one whose semaphore is gone: ``remove``
    takes both"; ``remove``: "Unlink the segment, its semaphores and the FIFOs beside them";
    "a segment that names none (a counters page) is stale when no ring of its instance has a
    live process"; ``remove_instance``: "returns how many"."""
    said(list_segments, remove, shm.inspect, remove_instance)
    Counters.open(instance, "cnt", ["a"])
    assert [s.stale for s in list_segments(instance)] == [True]
    ring = make(instance)
    os.mkfifo(fifo_path(ring.consumer_sem_name(0)), 0o600)
    cnt, seg = list_segments(instance)
    assert not cnt.stale and seg.semaphores == (ring.consumer_sem_name(0),)
    remove(seg)
    assert not os.path.exists(fifo_path(ring.consumer_sem_name(0)))
    assert remove_instance(instance) == 1 and list_segments(instance) == []


def test_a_zombie_counts_as_gone() -> None:
    """``pid_alive``: "a zombie, exited but not yet reaped by its parent, counts as gone";
    ``process_start``: "None when there is no such process (or only its zombie)"."""
    said(pid_alive, process_start)
    assert process_start(os.getpid()) == own_start() != 0 and pid_alive(os.getpid())
    proc = subprocess.Popen(["true"])
    try:
        wait_for(lambda: process_start(proc.pid) is None)
        assert Path(f"/proc/{proc.pid}/stat").exists() and not pid_alive(proc.pid)
    finally:
        proc.wait()
    assert not pid_alive(proc.pid) and not pid_alive(0)
