"""Review 26 of ``shm/``: a hostile review of the substrate (ring, roles, wait strategies,
header, inspect). Each ``test_`` below that is not a ``test_pin_`` fails on the code it was
written against; its docstring says what is wrong, why it matters and where. The
``test_pin_`` tests pass: behaviour that was checked and found correct."""

from __future__ import annotations

import collections
import gc
import multiprocessing as mp
import os
import platform
import signal
import struct
import time
from collections.abc import Callable
from typing import Any

import posix_ipc
import pytest

from shm import (
    Blocking,
    BusySpin,
    EncodeError,
    Ring,
    RingError,
    SleepBackoff,
    Yielding,
)
from shm import header as h
from shm.inspect import list_segments
from shm.ring import ConsumerSpec
from tests.unit.shm.test_review_shm_bugs import CODEC, firsts, make, wait_for

FORK = mp.get_context("fork")


def _kill(child: Any) -> None:
    if child.pid is not None and child.is_alive():
        os.kill(child.pid, signal.SIGKILL)
    child.join(5)


def _as_if_posted_for_days(sem_name: str) -> None:
    """Stand in for ~2**31 posts (a semaphore is posted once per commit or per wake-up: days
    of traffic) by making the named semaphore again at one below ``SEM_VALUE_MAX``."""
    posix_ipc.unlink_semaphore(sem_name)
    posix_ipc.Semaphore(
        sem_name, posix_ipc.O_CREX, initial_value=posix_ipc.SEMAPHORE_VALUE_MAX - 1
    ).close()


# -- creating a ring -------------------------------------------------------------------------


def test_a_create_refused_on_a_weak_memory_machine_leaves_no_segment(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Ring.create`` makes the segment (``Region.create``, shm/ring.py:172), writes the
    static header and only then builds the ``Ring`` (shm/ring.py:186), whose ``__init__``
    runs ``_check_memory_model`` (shm/ring.py:118): on a machine that is not x86 and without
    ``RINGEX_ALLOW_WEAK_MEMORY=1`` it raises ``RingError`` outside the ``try`` that unlinks
    a refused ring (shm/ring.py:187-194). The segment is left behind, so the retry the error
    message asks for (set the variable, start again) fails with "segment ... already exists"
    until someone runs ``ringex shm rm``. Elsewhere ``create`` promises that a refused
    creation "leaves no segment to block a retry".

    Expected: the refusal leaves no segment (check the memory model before creating, or
    unlink on any failure after ``Region.create``). Actual: the segment stays."""
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.delenv("RINGEX_ALLOW_WEAK_MEMORY", raising=False)
    with pytest.raises(RingError, match="not x86"):
        make(instance)
    left = [s.name for s in list_segments(instance) if s.size]
    assert left == [], f"a refused create left segment(s) {left} behind"
    monkeypatch.setenv("RINGEX_ALLOW_WEAK_MEMORY", "1")
    make(instance).close()  # the retry the message asks for


def test_geometry_refuses_a_slot_size_its_header_cannot_hold() -> None:
    """``Geometry.validate`` (shm/header.py:99-112) bounds ``max_consumers`` and the segment
    size but not ``slot_size``, which the static header stores as a ``uint32``
    (``STATIC = "<8sIIQQIIQQ"``, shm/header.py:37). A slot of 4 GiB passes (with capacity 2
    the segment is 8 GiB, under ``MAX_SEGMENT``), so ``Ring.create`` goes on to make and
    ``posix_fallocate`` the whole 8 GiB segment, and then ``STATIC.pack_into`` raises
    ``struct.error: 'I' format requires 0 <= number <= 4294967295`` (shm/ring.py:173),
    outside any ``try``: the 8 GiB segment stays in /dev/shm, and the error names neither
    the field nor the value. (Low severity: no codec in ringex has such slots.)

    Expected: ``validate`` raises ``ValueError`` naming ``slot_size``, its value and the
    header's limit, before anything is allocated. Actual: it accepts it."""
    geometry = h.Geometry(slot_size=1 << 32, capacity=2, schema_id=0, max_consumers=1)
    with pytest.raises(struct.error):  # what the header would say, 8 GiB later
        h.STATIC.pack_into(bytearray(h.STATIC.size), 0, h.MAGIC, 1, 1 << 32, 2, 0, 1, 512, 0, 0)
    with pytest.raises(ValueError, match="slot_size 4294967296"):
        geometry.validate()


# -- the compiled hot paths hold their role weakly ----------------------------------------------


def test_a_kept_publish_of_a_producer_let_go_still_publishes_once(instance: str) -> None:
    """``Producer.__init__`` replaces ``publish`` with a compiled closure that reaches its
    producer through a weak reference (``bind(weakref.ref(self), ...)``,
    shm/producer.py:197) and calls ``_ring_me()._await_space`` when the ring is full and
    ``_ring_me()._wake_consumers()`` when a consumer is parked (shm/producer.py:155, 166).
    The reference method it stands for ("same contract") is a bound method, which keeps its
    producer alive. A caller that keeps only the method (``publish =
    ring.attach(...).producer().publish``, a common hot-loop idiom) lets the producer go:
    the closure still writes slots and the cursor, then hits ``None._wake_consumers`` and
    raises ``AttributeError`` *after* the cursor store, so the record is published although
    ``publish`` failed; a caller that retries publishes it twice. (A full ring gives
    ``None._await_space`` instead.)

    Expected: ``publish`` returns the sequence (or fails before publishing with a clear
    error). Actual: ``AttributeError: 'NoneType' object has no attribute
    '_wake_consumers'`` with the record already visible."""
    ring = make(instance)
    consumer = ring.consumer("a")
    publish = ring.producer().publish  # the producer itself is not kept
    consumer.raise_park_flag()  # what a consumer about to park does
    seq, raised = None, None
    try:
        seq = publish((0, 0))
    except RingError:  # a clear refusal before anything is published would do too
        seq = 0 if ring.cursor() == 0 else None
    except AttributeError as exc:
        raised = repr(exc)  # not the exception: its traceback would keep the closure's view
    consumer.lower_park_flag()
    cursor, seen = ring.cursor(), consumer.poll()
    consumer.close()
    del publish
    gc.collect()
    ring.close()
    assert raised is None, f"publish raised {raised}, yet cursor is {cursor} and poll gives {seen}"
    assert seq == 0


def test_a_kept_poll_of_a_consumer_let_go_still_reads(instance: str) -> None:
    """The same for ``Consumer.poll``: the compiled poll reaches its consumer through
    ``me = weakref.ref(self)`` (shm/consumer.py:180) and its first call takes the slow path
    (``slow_at`` starts at the start sequence), ``me()._slow_path(n)`` (shm/consumer.py:192).
    ``poll = ring.consumer("a").poll`` therefore fails on its very first call with
    ``AttributeError: 'NoneType' object has no attribute '_slow_path'``, where the bound
    method it replaces would have kept the consumer and returned the record.

    Expected: the kept ``poll`` returns the published record (or a clear ``RingError``).
    Actual: ``AttributeError``."""
    ring = make(instance)
    producer = ring.producer()
    producer.publish((7, 7))
    poll = ring.consumer("a").poll  # the consumer itself is not kept
    got, raised = None, None
    try:
        got = poll()
    except RingError:
        got = (7, 7)  # a clear refusal would do too
    except AttributeError as exc:
        raised = repr(exc)  # not the exception: its traceback would keep the closure's view
    del poll
    gc.collect()
    producer.close()
    ring.close()
    assert raised is None, f"the kept poll raised {raised}"
    assert got == (7, 7)


# -- publishing ------------------------------------------------------------------------------------


def test_publish_batch_takes_a_deque_across_the_end_of_the_buffer(instance: str) -> None:
    """``publish_batch(items: Sequence[T])`` slices its items: ``items[done : done +
    count]`` for a batch larger than the ring and ``chunk[:first]`` / ``chunk[first:]`` when
    the window crosses the end of the buffer (shm/producer.py:238-250). A ``deque`` is a
    ``collections.abc.Sequence`` (and passes the type check) but cannot be sliced, so
    ``publish_batch(deque)`` works while the batch fits before the buffer's end and raises
    ``TypeError: sequence index must be integer, not 'slice'`` as soon as one crosses it:
    a latent failure that shows only at some wrap, in production. ``try_publish_batch`` is
    the same.

    Expected: a deque batch is published wherever it lands (index or ``itertools.islice``
    it). Actual: ``TypeError`` at the wrap."""
    ring = make(instance, capacity=4)
    producer, consumer = ring.producer(), ring.consumer("a")
    producer.publish_batch(collections.deque([(0, 0), (1, 1), (2, 2)]))  # fits before the end
    assert firsts(consumer.read()) == [0, 1, 2]
    producer.publish_batch(collections.deque([(3, 3), (4, 4)]))  # slot 3, then slot 0
    assert firsts(consumer.read()) == [3, 4]


def test_publishing_on_a_closed_producer_is_not_an_encode_error(instance: str) -> None:
    """``Producer.close`` releases the producer's view of the segment (shm/producer.py:424)
    but leaves ``publish`` and ``publish_batch`` callable; their encode then fails on the
    released view with ``ValueError``, which the generated encoders turn into
    ``EncodeError: item (1, 1) does not fit '2q': argument must be read-write bytes-like
    object, not memoryview`` (shm/codec.py:172-174, 202-207). ``EncodeError`` means "an item
    does not fit its slot layout" (shm/errors.py): a caller that handles it as a bad item
    (drop it, log it, go on) silently drops every record after a shutdown-ordering mistake,
    and the message blames a valid item.

    Expected: an error that says the producer is closed (``RingError``), not
    ``EncodeError``. Actual: ``EncodeError`` for a valid item."""
    ring = make(instance)
    producer = ring.producer()
    producer.close()
    calls: list[Callable[[], object]] = [
        lambda: producer.publish((1, 1)),
        lambda: producer.publish_batch([(1, 1)]),
    ]
    for call in calls:
        with pytest.raises(Exception) as info:
            call()
        assert not isinstance(info.value, EncodeError), f"closed producer: {info.value!r}"
        assert "closed" in str(info.value)


# -- parked flags left by a process that died parked ------------------------------------------


def _park_a_producer(instance: str) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    producer = ring.producer(Blocking(spins=0, park_timeout_s=30))
    for i in range(ring.capacity + 1):  # the last one finds the ring full and parks
        producer.publish((i, i))


def _park_a_consumer(instance: str) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    ring.consumer("x", Blocking(spins=0, park_timeout_s=30)).wait()


def test_a_producer_killed_while_parked_does_not_make_commits_fail(instance: str) -> None:
    """A producer killed while parked on a full ring (the state of a backed-up pipeline,
    when a supervisor restarts things) leaves ``P_PARKED = 1`` in the header. Nothing lowers
    it: ``Producer.__init__`` does not (shm/producer.py:57-98), and only the producer's own
    ``Parker.park`` does, when the successor first finds the ring full. Until then every
    consumer commit sees the flag and posts the producer's semaphore
    (``_publish_sequence``, shm/consumer.py:357-358), which nobody waits on: its count grows
    by one per commit, without bound (a consumer reading in batches commits once per
    batch: at 20k commits/s that is SEM_VALUE_MAX, 2**31-1, in about 30 hours). Then
    ``sem_post`` fails with ``EOVERFLOW`` and ``post`` (shm/wait.py:185) lets it out:
    ``commit``/``read``/``poll`` raise ``OSError: [Errno 75]`` *after* storing the sequence,
    in every consumer, and again after each restart (the flag and the count stay) -- a crash
    loop until the producer happens to park.

    The child below really dies parked; the semaphore is then made again one below its
    maximum to stand in for the days of commits. Expected: commits go on (the successor
    lowers the stale flag when it takes the role, and/or ``post`` treats ``EOVERFLOW`` as
    "already posted"). Actual: the second commit raises ``OSError``."""
    ring = make(instance, capacity=2)
    child = FORK.Process(target=_park_a_producer, args=(instance,), daemon=True)
    child.start()
    try:
        wait_for(lambda: ring.words[h.P_PARKED] == 1)
    finally:
        _kill(child)
    _as_if_posted_for_days(ring.producer_sem_name())
    successor = ring.producer()
    consumer = ring.consumer("a")
    failures = []
    try:
        for i in range(3):
            try:
                consumer.read()  # auto-commit: posts the producer while its flag is up
            except OSError as exc:
                failures.append((i, exc))
                break
            successor.publish((2 + i, 0))
        assert not failures, (
            f"a commit raised {failures} (stale P_PARKED = {ring.words[h.P_PARKED]}, the "
            f"consumer's sequence {ring.words[h.consumer_word(0, h.C_SEQUENCE)]} was stored)"
        )
    finally:
        ring.words[h.P_PARKED] = 0  # clean-up only: so that close's commit does not post
        consumer.close()
        successor.close()
        ring.close()


def test_a_consumer_killed_while_parked_does_not_make_publish_fail(instance: str) -> None:
    """A consumer killed while parked leaves its ``C_PARKED`` word up; the supervisor
    detaches its line (for good once its restart limit is reached, or frees it), and neither
    ``detach_consumer``, ``free_consumer`` nor ``declare_consumer`` lowers it
    (shm/ring.py:266-274, 316, 345): only a process parking on that line again does. The
    producer's ``_wake_consumers`` posts every line whose parked word is set, whatever its
    state (shm/producer.py:406-408), each time another consumer parks: the dead line's
    semaphore
    gains one count per such wake-up, forever (an idle consumer that parks between records
    at 1k records/s reaches SEM_VALUE_MAX in about 25 days). Then ``sem_post`` fails with
    ``EOVERFLOW`` and ``publish`` raises ``OSError`` *after* storing the cursor: the record
    is published and reported as failed (a retry publishes it twice), on every later
    wake-up, and again after a producer restart.

    The child below really dies parked; its semaphore is then made again one below its
    maximum to stand in for the days of wake-ups, and ``y.raise_park_flag()`` is what a
    parking consumer (``Parker.park``) does first. Expected: publishes go on (skip lines
    that are not active, lower a dead line's flag when it is detached, freed or declared,
    and/or let ``post`` treat ``EOVERFLOW`` as "already posted"). Actual: the second
    ``publish`` raises ``OSError`` with the record already published."""
    ring = make(instance, consumers=("x", "y"))
    child = FORK.Process(target=_park_a_consumer, args=(instance,), daemon=True)
    child.start()
    try:
        wait_for(lambda: ring.words[h.consumer_word(0, h.C_PARKED)] == 1)
    finally:
        _kill(child)
    ring.detach_consumer(0)  # the supervisor cuts the dead consumer loose
    _as_if_posted_for_days(ring.consumer_sem_name(0))
    producer = ring.producer()
    y = ring.consumer("y")
    failures = []
    try:
        for i in range(3):
            y.raise_park_flag()
            try:
                producer.publish((i, i))
            except OSError as exc:
                failures.append((i, exc))
                break
            finally:
                y.lower_park_flag()
            assert y.poll() == (i, i)
        assert not failures, (
            f"publish raised {failures} after storing the cursor ({ring.cursor()}); the "
            f"detached line's parked word is {ring.words[h.consumer_word(0, h.C_PARKED)]}"
        )
    finally:
        y.close()
        producer.close()
        ring.close()


# -- pins: behaviour checked and found correct ---------------------------------------------------

N_RECORDS = 5000


def _mixed_producer(instance: str, out: Any) -> None:
    """Every publishing path in turn, with batches smaller and larger than the ring."""
    ring = Ring.attach(instance, "r", CODEC)
    producer = ring.producer(Blocking(spins=20, park_timeout_s=0.05))
    cap, i, step = ring.capacity, 0, 0
    while i < N_RECORDS:
        kind, step = step % 6, step + 1
        size = min(N_RECORDS - i, 1 + (step * 7) % (3 * cap))
        if kind == 0:
            producer.publish((i, -i))
            i += 1
        elif kind == 1:
            producer.publish_batch([(j, -j) for j in range(i, i + size)])
            i += size
        elif kind == 2:
            images = b"".join(CODEC.slot_struct.pack(j, -j, 0) for j in range(i, i + size))
            producer.publish_slots(images, size)
            i += size
        elif kind == 3:
            claim = producer.claim(size)
            for k in range(claim.slots):
                CODEC.slot_struct.pack_into(
                    claim.view, claim.offset + k * ring.slot_size, i + k, -(i + k), claim.stamp
                )
            producer.publish_claimed(claim.slots)
            i += claim.slots
        elif kind == 4:
            i += producer.try_publish((i, -i))
        elif size <= cap and producer.try_publish_batch([(j, -j) for j in range(i, i + size)]):
            i += size
    producer.close()
    out.put(("producer", "done"))


def _mixed_consumer(instance: str, name: str, auto: bool, out: Any) -> None:
    """``poll``/``next``/``read``/``take`` in turn; without auto-commit, commit as it goes."""
    ring = Ring.attach(instance, "r", CODEC)
    consumer = ring.consumer(
        name, Blocking(spins=20, park_timeout_s=0.05), auto_commit=auto, commit_every=3
    )
    got: list[tuple[int, int]] = []
    step = 0
    while len(got) < N_RECORDS:
        kind, step = step % 4, step + 1
        if not auto:
            consumer.commit()
        if kind == 0:
            item = consumer.poll()
            got += [] if item is None else [item]
        elif kind == 1:
            item = consumer.next(timeout_s=5)
            got += [] if item is None else [item]
        elif kind == 2:
            got += consumer.read(1 + step % 11)
        else:
            got += consumer.take(1 + step % 13, timeout_s=5)
    if not auto:
        consumer.commit()
    consumer.close()
    out.put((name, got == [(j, -j) for j in range(N_RECORDS)]))


def test_pin_every_publish_and_read_path_delivers_each_record_once_in_order(
    instance: str,
) -> None:
    """Pins (passes): a producer process mixing ``publish``, ``publish_batch`` (past the
    ring's size), ``publish_slots``, ``claim``/``publish_claimed`` and the ``try_`` forms on
    a 4-slot ring, read by two consumer processes (``b`` gated on ``a``; ``a`` committing by
    hand) mixing ``poll``, ``next``, ``read`` and ``take``: each sees every record once, in
    order, never one overwritten or half-written (the payload ``-i`` checks the slot)."""
    ring = Ring.create(
        instance, "r", CODEC, capacity=4, consumers=["a", ConsumerSpec("b", gates=("a",))]
    )
    out = FORK.Queue()
    children = [
        FORK.Process(target=_mixed_producer, args=(instance, out), daemon=True),
        FORK.Process(target=_mixed_consumer, args=(instance, "a", False, out), daemon=True),
        FORK.Process(target=_mixed_consumer, args=(instance, "b", True, out), daemon=True),
    ]
    for child in children:
        child.start()
    try:
        results = dict(out.get(timeout=30) for _ in children)
    finally:
        for child in children:
            child.join(5)
            _kill(child)
        ring.close()
    assert results == {"producer": "done", "a": True, "b": True}


@pytest.mark.parametrize(
    "strategy",
    [BusySpin(), Yielding(spins=2), SleepBackoff(spins=2, yields=2), Blocking(spins=2)],
    ids=["busy-spin", "yield", "sleep", "blocking"],
)
def test_pin_waiting_never_times_out_early(instance: str, strategy: Any) -> None:
    """Pins (passes): ``wait``/``next``/``take`` with a timeout and nothing published return
    "nothing" no earlier than the timeout, under every strategy (the deadline is checked
    with ``left < 0`` and a park or nap is capped by what is left)."""
    ring = make(instance)
    consumer = ring.consumer("a", strategy)
    for call, empty in (
        (lambda: consumer.wait(timeout_s=0.04), False),
        (lambda: consumer.next(timeout_s=0.04), None),
        (lambda: consumer.take(timeout_s=0.04), []),
    ):
        start = time.monotonic()
        assert call() == empty
        assert time.monotonic() - start >= 0.04
    consumer.close()
    ring.close()
