"""Review 119: the docstrings of the shared-memory substrate (``shm/``) held against the code.

Every statement about behaviour in the docstrings and ``#:`` comments of ``shm/`` (ring,
consumer, errors here; producer, header, region, codec, wait, barrier, cells, counters,
health, inspect, liveness, roles in ``..._docstrings2.py``) is checked on segments of the
test's own instance (the ``instance`` fixture unlinks them). A test's docstring quotes its
claims ("..." elides) and names the code; ``said(...)`` asserts each quote is still in that
docstring (a module: its source). A claim found right is a plain test; a disagreement is
``xfail(strict=True, raises=AssertionError)`` asserting the docstring, naming the side to fix.

Disagreements, all fixed since. Code side: ``RingError`` (refuses "an unknown consumer index"):
``Consumer(ring, max_consumers)`` takes a record past the table as its line and writes a pid
and heartbeat into it (consumer.py:127); ``RingFullError`` ("a bounded wait", "in time"):
``Producer._await_space`` parks a whole ``park_timeout_s`` past its deadline (producer.py:444).
Docstring side: ``RingError`` "bad geometry" (``ValueError``, header.py:118);
``detach_consumer`` "on its next wait or read" (``wait``/``read`` go on over what was known
published, consumer.py:276, 453); ``last_published`` "raise rather than return a wrong
record" (a slot being rewritten keeps its old stamp: ring.py:414-428); ring.py "checks each
slot's stamp again" (``_window`` checks two, consumer.py:296); consumer.py "every
``commit_every`` ``poll``s" (capped at capacity // 4, consumer.py:187).
"""

from __future__ import annotations

import inspect
import multiprocessing as mp
import os
import re
import select
import struct
import sys
import threading
import time
import types
from typing import Any

import pytest

import shm.consumer
import shm.errors
import shm.ring
from shm import (
    Blocking,
    ConsumerDetachedError,
    HeaderMismatchError,
    Ring,
    RingError,
    StructCodec,
    TornReadError,
)
from shm import header as h
from shm.consumer import Consumer
from shm.region import Region
from shm.ring import ConsumerSpec
from shm.wait import WATCHED, fifo_path, sem_path
from tests.unit.shm.test_review_shm_bugs import CODEC, firsts, make, wait_for

FORK = mp.get_context("fork")


def said(*where: object) -> None:
    """Each "quoted" span of the calling test's docstring (each part around "..."), whitespace
    folded, is in the docstring of one of ``where`` (a module: its source, so that its ``#:``
    comments count): else that docstring changed and the test must be read again."""
    caller = sys._getframe(1)
    quotes = re.findall(
        r'"(.+?)"', " ".join(caller.f_globals[caller.f_code.co_name].__doc__.split())
    )
    texts = []
    for obj in where:
        if isinstance(obj, types.ModuleType):
            texts.append(re.sub(r"(?m)^\s*#:?", " ", inspect.getsource(obj)))
        else:
            texts.append(inspect.getdoc(obj) or "")
    folded = [" ".join(text.split()) for text in texts]
    assert quotes
    for quote in quotes:
        for part in filter(None, (p.strip() for p in quote.split("..."))):
            assert any(part in text for text in folded), (part, where)


def seq_of(ring: Ring[Any], index: int = 0) -> int:
    return int(ring.words[h.consumer_word(index, h.C_SEQUENCE)])


def readable(fd: int, timeout_s: float = 2.0) -> bool:
    return bool(select.select([fd], [], [], timeout_s)[0])


def in_thread(target: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            out["value"] = target()
        except Exception as exc:  # handed to the test
            out["error"] = exc
        out["took"] = time.monotonic() - start

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


# -- shm/ring.py: layout, seqlock, commit point, lifecycle --------------------------------


def test_record_n_is_in_slot_n_masked_and_stamped_with_its_lap(instance: str) -> None:
    """``Ring.slot_offset``, ``stamp_of``, ``publish``: "writes record ``n`` into slot ``n &
    (capacity - 1)``"; "``(n >> log2(capacity)) + 1`` for record ``n`` (0 means never
    written)"; "the value is the same for every slot of a lap"; ``last_published``: "The
    newest record published, or None if the ring is empty"; ``record``: "checked against its
    stamp before and after the decode"."""
    said(shm.ring, Ring.last_published, Ring.record)
    ring = make(instance, capacity=4, consumers=())
    assert ring.last_published() is None
    assert [ring.words[ring.stamp_word(n)] for n in range(4)] == [0, 0, 0, 0]
    producer = ring.producer()
    for n in range(10):
        producer.publish((n, -n))
    for n in range(6, 10):
        at = ring.data_offset + (n & 3) * ring.slot_size
        assert struct.unpack_from("<qqq", ring.region.buf, at) == (n, -n, n // 4 + 1)
    assert [ring.words[ring.stamp_word(n)] for n in range(8, 12)] == [3, 3, 2, 2]
    assert ring.last_published() == (9, -9) and ring.record(6) == (6, -6)
    with pytest.raises(RingError, match=r"record 10 is not published \(cursor 10\)"):
        ring.record(10)
    with pytest.raises(RingError, match="slot of record 5 holds stamp 3, expected 2"):
        ring.record(5)  # lapped: slot 1 holds record 9


def test_a_full_ring_makes_try_calls_false_and_publish_wait(instance: str) -> None:
    """``Producer.try_*``, ``publish``: "never writes slot ``n`` while any active consumer's
    sequence is ``<= n - capacity`` (it waits, or a ``try_`` call returns ``False``)";
    ``Ring.create``: "they gate the producer from the first record, attached or not: nothing
    is lost to a consumer that starts late"; ``Consumer._probe``: "checks *before* decoding
    that the last slot of that run carries its lap's stamp"."""
    said(shm.ring, Ring.create)
    ring = make(instance, capacity=4)  # "a" is declared, not attached
    producer = ring.producer()
    assert producer.publish_batch([(n, 0) for n in range(4)]) == 3
    assert not producer.try_publish((4, 0)) and not producer.try_publish_batch([(4, 0)])
    assert not producer.try_publish_slots(bytes(24), 1) and not producer.has_room(1)
    thread, out = in_thread(lambda: producer.publish((4, 0)))
    time.sleep(0.2)
    assert "took" not in out and ring.cursor() == 4  # waiting, record 0 intact
    consumer = ring.consumer("a")
    assert firsts(consumer.read()) == [0, 1, 2, 3]
    thread.join(5)
    assert out["value"] == 4 and firsts(consumer.read()) == [4]
    producer.publish_batch([(n, 0) for n in range(5, 8)])
    ring.words[ring.stamp_word(7)] = 7  # the run's last slot
    for call in (consumer.poll, consumer.read):
        with pytest.raises(TornReadError, match="record 7"):
            call()


def test_a_gated_consumer_sees_only_what_its_gates_have_committed(instance: str) -> None:
    """``_probe``, ``Gate``: "so that it only sees what they have finished with"; ``ConsumerSpec``:
    "``gates`` name consumers it may not pass"; ``STATE_DETACHED``: "gates nobody"."""
    said(shm.ring, ConsumerSpec, h)
    ring = Ring.create(instance, "r", CODEC, capacity=8, consumers=["a", ConsumerSpec("b", ("a",))])
    producer = ring.producer()
    a, b = ring.consumer("a", auto_commit=False), ring.consumer("b")
    producer.publish_batch([(n, 0) for n in range(5)])
    assert b.read() == [] and not b.published() and firsts(a.read(3)) == [0, 1, 2]
    assert b.read() == []  # read by a, not yet finished with
    a.commit(2)
    assert firsts(b.read()) == [0, 1] and b.poll() is None
    ring.detach_consumer(0)
    assert firsts(b.read()) == [2, 3, 4]


def test_read_checks_its_windows_first_slot_after_decoding(instance: str) -> None:
    """``Consumer.read``/``_window``: "checks a stamp again *after* decoding it (... a window's
    first and last, as the producer writes in sequence order, so a lap reaches the first slot
    first)" (review 119: it said each slot's): the first slot's stamp changing during the
    window's decode is ``TornReadError``."""
    said(shm.ring)
    ring = make(instance, capacity=4)
    ring.producer().publish_batch([(n, 0) for n in range(3)])
    consumer = ring.consumer("a")

    def decode_window(view: memoryview, offset: int, count: int) -> Any:
        items = CODEC.decode_window(view, offset, count)
        ring.words[ring.stamp_word(0)] = 2  # the first slot, lapped mid-read
        return items

    consumer._codec = types.SimpleNamespace(decode_window=decode_window)
    with pytest.raises(TornReadError):
        consumer.read()


def test_a_producer_gone_before_its_cursor_store_acknowledged_nothing(instance: str) -> None:
    """``Consumer._probe``, ``Producer.__init__``: "readers take availability from it alone,
    never from a stamp ahead of it"; "a producer that dies before storing the cursor has
    acknowledged nothing: its restart continues from the cursor and overwrites the
    unpublished slots"; "a restarted consumer resumes from its own sequence"."""
    said(shm.ring)
    ring = make(instance, capacity=4)
    producer = ring.producer()
    producer.publish((0, 0))
    view, offset, stamp, _ = producer.claim(2)
    view[offset : offset + 48] = CODEC.slot_struct.pack(7, 7, stamp) * 2
    assert ring.words[ring.stamp_word(1)] == ring.stamp_of(1)  # whole, stamped slots
    producer.close()  # gone between its slot writes and publish_claimed
    consumer = ring.consumer("a", commit_every=1)
    assert firsts(consumer.read()) == [0] and consumer.poll() is None and not consumer.ready()
    again = ring.producer()
    assert again.sequence == 1 and again.publish((1, 1)) == 1
    consumer.close()
    restarted = ring.consumer("a")
    assert restarted.sequence == 1 and restarted.poll() == (1, 1)


def test_attach_checks_the_header_against_codec_and_capacity(instance: str) -> None:
    """``Ring.attach``: "checking its header against ``codec`` (and ``capacity``)";
    ``_checked_header``: "naming the field, what it holds and what was expected";
    ``HeaderMismatchError``: "names both values"; ``StructCodec``: "so a ring of another
    format is a header mismatch"."""
    said(Ring.attach, shm.ring._checked_header, HeaderMismatchError, sys.modules["shm.codec"])
    make(instance, capacity=8)
    with pytest.raises(HeaderMismatchError) as size:
        Ring.attach(instance, "r", StructCodec("3q"))
    assert (size.value.field, size.value.found, size.value.expected) == ("slot_size", 24, 32)
    with pytest.raises(HeaderMismatchError, match="header schema_id is"):
        Ring.attach(instance, "r", StructCodec("qd"))  # same size, other layout
    with pytest.raises(HeaderMismatchError, match="header capacity is 8, expected 4"):
        Ring.attach(instance, "r", CODEC, capacity=4)
    assert Ring.attach(instance, "r", CODEC, capacity=8).capacity == 8


def test_nothing_attaches_before_create_wrote_the_magic(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``NO_MAGIC``: "A ring's magic while ``Ring.create`` lays it out: written last, so
    nothing attaches early"."""
    said(h)
    refused: list[str] = []

    declare = Ring.declare_consumer

    def attach_midway(ring: Ring[Any], name: str, **kwargs: Any) -> int:  # before the magic
        with pytest.raises(HeaderMismatchError) as early:
            Ring.attach(instance, "r", CODEC)
        refused.append(early.value.field)
        return declare(ring, name, **kwargs)

    monkeypatch.setattr(Ring, "declare_consumer", attach_midway)
    make(instance)
    assert refused == ["magic"] and Ring.attach(instance, "r", CODEC).consumer_names() == {0: "a"}


def test_a_declared_start_is_bounded_by_the_cursor_and_the_slowest(instance: str) -> None:
    """``declare_consumer``: "(default: the producer's cursor, for a late joiner): at most the
    cursor, and no further back than what every active consumer still holds"; "with none,
    only the cursor"."""
    said(Ring.declare_consumer)
    ring = make(instance, capacity=8)
    producer, a = ring.producer(), ring.consumer("a", auto_commit=False)
    producer.publish_batch([(n, 0) for n in range(6)])
    a.read(5)
    a.commit()
    producer.publish_batch([(n, 0) for n in range(6, 10)])  # cursor 10, "a" at 5
    for bad in (4, 11):
        with pytest.raises(RingError, match=rf"cannot start at {bad}.*within 5\.\.10"):
            ring.declare_consumer("x", start=bad)
    assert seq_of(ring, ring.declare_consumer("x", start=5)) == 5
    assert seq_of(ring, ring.declare_consumer("late")) == 10
    for index in ring.consumer_names():
        ring.detach_consumer(index)
    with pytest.raises(RingError, match=r"within 10\.\.10"):
        ring.declare_consumer("y", start=9)


def test_a_detached_consumer_learns_it_at_its_next_slow_path_check(instance: str) -> None:
    """``Ring.detach_consumer``: "Its process, if alive, gets ``ConsumerDetachedError`` at its
    next slow-path check (the end of what it knew was published ...), not before" (review
    119: it said its next wait or read): what it knew is read, then the error."""
    said(Ring.detach_consumer)
    ring = make(instance, capacity=8)
    ring.producer().publish_batch([(n, 0) for n in range(4)])
    journal = ring.consumer("a", auto_commit=False)
    assert firsts(journal.read(1)) == [0]
    ring.detach_consumer(0)
    assert firsts(journal.read()) == [1, 2, 3]  # known published before the detach
    with pytest.raises(ConsumerDetachedError):
        journal.wait(0)


def test_detached_readers_learn_it_at_their_next_slow_path_check(instance: str) -> None:
    """shm/consumer.py: "Its process learns it at its next slow-path check (the end of what it
    knew was published, a commit, a wait)"; ``_slow_path``: "(or freed and declared again)";
    ``_rejoin``: "Make detached line ``index`` active again, from the producer's cursor";
    ``free_consumer``: "Return a detached line to the pool (its name becomes declarable
    again)"; ``consumer_names``: "every declared (active or detached) consumer"."""
    said(shm.consumer, shm.consumer._rejoin, Ring.free_consumer, Ring.consumer_names)
    ring = make(instance, capacity=8)
    ring.producer().publish_batch([(n, 0) for n in range(3)])
    consumer = ring.consumer("a", auto_commit=False)
    assert consumer.poll() == (0, 0)
    ring.detach_consumer(0)
    assert consumer.poll() == (1, 0) and not consumer.attached()  # known published
    with pytest.raises(ConsumerDetachedError):
        consumer.commit()
    assert consumer.poll() == (2, 0)
    for call in (consumer.poll, consumer.wait):  # the end of what it knew; a wait
        with pytest.raises(ConsumerDetachedError):
            call()
    with pytest.raises(ConsumerDetachedError, match="attach with rejoin=True"):
        ring.consumer("a")
    old = ring.consumer("a", rejoin=True)
    assert old.sequence == 3 == seq_of(ring) and old.attached()
    with pytest.raises(RingError, match="is active; detach it first"):
        ring.free_consumer(0)
    ring.detach_consumer(0)
    assert ring.consumer_names() == {0: "a"}
    ring.free_consumer(0)
    assert ring.consumer_names() == {} and ring.declare_consumer("a") == 0
    with pytest.raises(ConsumerDetachedError):
        old.wait(0)


def test_parked_sides_are_posted_not_left_to_their_park_timeout(instance: str) -> None:
    """``Blocking``: "park on a POSIX semaphore that the other side posts only when it sees
    the parked flag"; ``_wake_gated``: "Post every parked consumer gated on this one";
    ``detach_consumer``: "(a dead consumer must not block the producer)", its process "gets
    ``ConsumerDetachedError`` at its next slow-path check". Each wake within 3 s of a 5 s park."""
    said(sys.modules["shm.wait"], Consumer._wake_gated, Ring.detach_consumer)
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["a", ConsumerSpec("b", ("a",))])
    slow = Blocking(spins=0, park_timeout_s=5)
    producer, a, b = ring.producer(slow), ring.consumer("a", slow), ring.consumer("b", slow)
    for index, waiter, wake in ((0, a, lambda: producer.publish((0, 0))), (1, b, a.read)):
        thread, out = in_thread(lambda w=waiter: w.wait(10))
        wait_for(lambda i=index: ring.words[h.consumer_word(i, h.C_PARKED)])
        wake()
        thread.join(5)
        assert out["value"] is True and out["took"] < 3
    thread, out = in_thread(lambda: a.wait(10))
    wait_for(lambda: ring.words[h.consumer_word(0, h.C_PARKED)])
    ring.detach_consumer(0)
    thread.join(5)
    assert isinstance(out["error"], ConsumerDetachedError) and out["took"] < 3
    producer.publish_batch([(n, 0) for n in range(1, 4)])  # full for "b"
    thread, out = in_thread(lambda: producer.publish((4, 0)))
    wait_for(lambda: ring.words[h.P_PARKED])
    ring.detach_consumer(1)
    thread.join(5)
    assert out["value"] == 4 and out["took"] < 3


def test_last_published_is_exact_only_without_a_live_producer(instance: str) -> None:
    """``last_published``: "exact only while no producer is live (a restart) ... a producer
    midway through rewriting it a lap later has not stamped it yet (the stamp goes last), so a
    live producer's race could pass both checks" (review 119: it said it would raise). The
    decode runs while the producer publishes record 2 and starts record 3 over record 1's
    slot: a wrong record passes."""
    said(Ring.last_published)
    ring = make(instance, capacity=2, consumers=())
    producer = ring.producer()
    producer.publish_batch([(0, 100), (1, 101)])

    def decode(buf: Any, offset: int) -> Any:
        producer.publish((2, 102))
        buf[offset : offset + 8] = bytes(8)  # record 3's write, preempted
        return CODEC.decode_from(buf, offset)

    ring.codec = types.SimpleNamespace(decode_from=decode)
    assert ring.last_published() == (0, 101)  # the race the docstring now names


def _take_producer(instance: str) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    try:
        ring.producer()
    except RingError as exc:
        raise SystemExit(0 if "already has a live producer" in str(exc) else 2) from None
    raise SystemExit(1)


def test_info_and_a_live_second_producer_process_is_refused(instance: str) -> None:
    """``Ring.info``: "who is attached, alive, lagging"; ``Ring.producer``: "one process per
    ring; a live second one is refused"."""
    said(Ring.info, Ring.producer)
    ring = Ring.create(instance, "r", CODEC, capacity=8, consumers=["a", ConsumerSpec("b", ("a",))])
    producer, _a = ring.producer(), ring.consumer("a")
    producer.publish_batch([(n, 0) for n in range(3)])
    info = ring.info()
    assert (info.cursor, info.producer_pid, info.producer_alive) == (3, os.getpid(), True)
    one, two = info.consumers
    assert (one.name, one.lag, one.pid, one.pid_alive) == ("a", 3, os.getpid(), True)
    assert (two.pid, two.heartbeat_age_s, two.gates, two.state) == (0, None, (0,), "active")
    child = FORK.Process(target=_take_producer, args=(instance,))
    child.start()
    child.join(10)
    assert child.exitcode == 0


def test_unlink_removes_segment_semaphores_and_fifos(instance: str) -> None:
    """``Ring.unlink``: "Remove the segment, its semaphores and the FIFOs beside them (its
    consumers', and its producer's"."""
    said(Ring.unlink)
    ring = make(instance)
    ring.producer().watch_fd()
    ring.consumer("a").watch_fd()
    made = [f(s) for s in (ring.producer_sem_name(), ring.consumer_sem_name(0))
            for f in (sem_path, fifo_path)]  # fmt: skip
    assert all(os.path.exists(path) for path in made)
    ring.unlink()
    assert not any(os.path.exists(path) for path in made) and Region.peek(instance, "r") is None


# -- shm/consumer.py -------------------------------------------------------------------------


def test_auto_commit_releases_per_read_per_commit_every_polls_and_when_idle(
    instance: str,
) -> None:
    """shm/consumer.py: "released ... after each ``read`` batch, every ``commit_every``
    ``poll``s ... and whenever the consumer finds nothing to read"; "may get up to
    ``commit_every`` records again when it restarts: redelivery, never loss"."""
    said(shm.consumer)
    ring = make(instance, capacity=64)
    producer, consumer = ring.producer(), ring.consumer("a", commit_every=4)
    producer.publish_batch([(n, 0) for n in range(20)])
    assert [consumer.poll() for _ in range(4)] and seq_of(ring) == 0
    assert consumer.poll() == (4, 0) and seq_of(ring) == 4
    assert firsts(consumer.read(3)) == [5, 6, 7] and seq_of(ring) == 8
    assert [consumer.poll() for _ in range(4)] and seq_of(ring) == 8  # 8..11 read
    crashed = ring.consumer("a")  # a restart after a crash (same pid, no close)
    assert firsts(crashed.read()) == list(range(8, 20))  # 4 again, none lost
    assert crashed.poll() is None and seq_of(ring) == 20


def test_commit_every_is_capped_at_a_quarter_of_the_capacity(instance: str) -> None:
    """shm/consumer.py: "every ``commit_every`` ``poll``s (at most a quarter of the ring's
    capacity)" (review 119: the cap was unsaid): on a ring of 8, ``commit_every=4`` releases
    after 2 polls."""
    said(shm.consumer)
    ring = make(instance, capacity=8)
    producer, consumer = ring.producer(), ring.consumer("a", commit_every=4)
    producer.publish_batch([(n, 0) for n in range(6)])
    consumer.poll()
    assert seq_of(ring) == 0
    consumer.poll()
    consumer.poll()
    assert seq_of(ring) == 2


def test_a_line_no_ring_could_have_written_is_refused(instance: str) -> None:
    """``_check_line``: "Refuse a line whose gate mask or sequence no ring could have written"
    (a gate past the table, a sequence past the cursor)."""
    said(shm.consumer._check_line)
    ring = make(instance, capacity=4)
    ring.producer().publish_batch([(n, 0) for n in range(3)])
    for field, value, what in ((h.C_GATES, 1 << 16, "gates"), (h.C_SEQUENCE, 4, "sequence")):
        ring.words[h.consumer_word(0, field)] = value
        with pytest.raises(HeaderMismatchError, match=f"header consumer 'a' {what} is {value}"):
            ring.consumer("a")
        ring.words[h.consumer_word(0, field)] = 0
    assert ring.consumer("a").sequence == 0


def test_an_unknown_consumer_index_is_a_ring_error(instance: str) -> None:
    """``RingError``: "Misuse of a ring: a second producer, an unknown consumer index" (review
    119: ``Consumer(ring, max_consumers)`` took a record past the table as its line and wrote
    its pid and heartbeat into it): refused, the record untouched."""
    said(RingError)
    ring = Ring.create(instance, "r", StructCodec("4q"), capacity=4, max_consumers=1)
    ring.producer().publish((0, 0, 0, h.STATE_ACTIVE))  # where line 1's state word would be
    with pytest.raises(RingError, match=r"consumer index 1 is outside 0\.\.0"):
        Consumer(ring, ring.max_consumers)
    assert ring.record(0) == (0, 0, 0, 1)


def test_skip_to_commits_at_once_pass_over_at_the_next_commit(instance: str) -> None:
    """``skip_to``: "Returns how many were passed; only published records can be";
    ``pass_over``: "released with the records read, at the next commit, not at once";
    ``commit``: "(default: all returned so far)"; ``Cell``: "``self.<name>`` reads
    ``self._get<name>()`` and writes ``self._set<name>(value)``" (``_next``)."""
    said(Consumer.skip_to, Consumer.pass_over, Consumer.commit, sys.modules["shm.cells"])
    ring = make(instance, capacity=8)
    producer, consumer = ring.producer(), ring.consumer("a", auto_commit=False)
    producer.publish_batch([(n, 0) for n in range(5)])
    assert consumer.skip_to(2) == 2 and seq_of(ring) == 2 and consumer.skip_to(1) == 0
    assert consumer._next == consumer._get_next() == 2
    with pytest.raises(RingError, match="cannot skip to 6, past the cursor 5"):
        consumer.skip_to(6)
    consumer.pass_over()
    assert seq_of(ring) == 2 and consumer.poll() == (3, 0)
    consumer.commit()
    assert seq_of(ring) == 4 and consumer.sequence == 4
    with pytest.raises(RingError, match=r"commit 3 is outside 4\.\.4"):
        consumer.commit(3)


def test_poll_read_never_block_wait_next_take_time_out(instance: str) -> None:
    """shm/consumer.py: "``poll`` and ``read`` never block; ``wait``, ``next`` and ``take``
    idle"; ``next``: "(``None`` on timeout)"; ``take``: "Wait for at least one record, then
    return up to ``max_batch``"; ``ready``: "True when ``poll`` would return a record"."""
    said(shm.consumer, Consumer.next, Consumer.take, Consumer.ready)
    ring = make(instance, capacity=8)
    producer, consumer = ring.producer(), ring.consumer("a")
    start = time.monotonic()
    assert consumer.poll() is None and consumer.read() == [] and not consumer.ready()
    assert not consumer.wait(0.05) and consumer.next(0.05) is None and consumer.take(1, 0.05) == []
    assert 0.15 <= time.monotonic() - start < 2
    producer.publish_batch([(n, 0) for n in range(3)])
    assert consumer.ready() and consumer.published() and consumer.next(1) == (0, 0)
    assert firsts(consumer.take(1, 1)) == [1] and firsts(consumer.take(5, 1)) == [2]


def test_a_wait_round_only_loads_the_cursor_and_counts_from_zero(instance: str) -> None:
    """``Consumer.wait``: "The full check (gates, stamp) runs only when it did, or when
    gated"; ``WaitStrategy``: "counts the idle rounds since the last progress (0 on the
    first)"."""
    said(Consumer.wait, sys.modules["shm.wait"].WaitStrategy)
    ring = make(instance, capacity=4)
    consumer, producer = ring.consumer("a"), ring.producer()
    rounds: list[int] = []
    checks: list[int] = []
    full = consumer._slow_path

    def counted(n: int) -> bool:
        checks.append(n)
        return full(n)

    consumer._slow_path = counted  # type: ignore[method-assign]

    def idle(done: int, ready: Any, parker: Any) -> None:
        rounds.append(done)
        if done == 9:
            producer.publish((0, 0))

    consumer.wait_strategy = types.SimpleNamespace(name="counting", idle=idle)
    assert consumer.wait(5) and rounds == list(range(10))
    assert checks == [0, 0]  # ready() on entry, then once the cursor moved


def test_a_watched_consumer_is_posted_and_close_commits_and_keeps_gating(instance: str) -> None:
    """``raise_park_flag``: "Have the producer post at its next publish"; ``P_WAKE``: "1 when
    some consumer is parked: the producer must post"; ``_Waker.wake``: "Clear the wake word
    first"; ``close``: "the line stays declared and keeps gating the producer, so a restarted
    process resumes where this one stopped"; ``watch_fd``: "``close`` closes it";
    ``sequence``: "Records this consumer has read (the next sequence it will read)"."""
    consumer_docs = (Consumer.raise_park_flag, Consumer.watch_fd, Consumer.close, Consumer.sequence)
    said(*consumer_docs, h, sys.modules["shm.producer"])
    ring = make(instance, capacity=4)
    producer, consumer = ring.producer(), ring.consumer("a", commit_every=64)
    fd = consumer.watch_fd()
    consumer.raise_park_flag(WATCHED)
    assert ring.words[h.P_WAKE] == 1 and not readable(fd, 0.05)
    producer.publish_batch([(n, 0) for n in range(4)])
    assert readable(fd) and ring.words[h.P_WAKE] == 0
    consumer.poll()
    assert consumer.sequence == 1 and seq_of(ring) == 0
    consumer.close()
    assert seq_of(ring) == 1 and ring.words[h.consumer_word(0, h.C_PID)] == 0
    assert producer.try_publish((4, 0)) and not producer.try_publish((5, 0))
    assert ring.consumer("a").poll() == (1, 0)
    with pytest.raises(OSError):
        os.fstat(fd)
