"""Review 178: a hostile review of the shared-memory substrate (``shm/``: ring, producer,
consumer, wait, barrier, cells, header, region, liveness, counters, health), against the
README's "The rings" and the module docstrings, with real processes (``fork``) and real
segments where a fault needs them.

Looked for: records lost, duplicated or torn; a producer overwriting an unread slot; lost
wake-ups (of a parked consumer by each publish path, of a parked producer by each path that
frees room, of a consumer parked behind its gate by each path that moves the gate); the
buffer's end and lap boundaries; detach, rejoin and crashed processes; gating with several
consumers; batches of zero, of exactly the capacity and larger; error messages; state left
by exceptions and by handles already closed.

Faults found, all seven fixed (their tests, below, pass now; each says "Was (fixed)"):

1. shm/producer.py:283,303 ``claim`` and ``publish_claimed`` do not check ``_closed`` (only
   ``publish`` and ``publish_batch`` do, review 26): a closed producer's ``claim(1)`` +
   ``publish_claimed(1)`` stores its stale ``_next + 1`` as the cursor, rewinding the cursor
   of the producer that took over (6 -> 4): records 4 and 5 are unpublished again, a consumer
   that committed 6 can no longer attach (its sequence is past the cursor), and a producer
   restarted from that cursor writes records 4 and 5 again over ones already consumed.
   ``publish_slots`` on it fails with "operation forbidden on released memoryview". Fix:
   ``if self._closed: _closed(...)`` at the top of ``claim``, ``publish_claimed`` and
   ``publish_slots``.
2. shm/consumer.py:361,388 ``skip_to`` and ``commit`` of a closed consumer still store the
   line's sequence (``_check_attached`` only compares state and generation, which a close
   and a re-attach by the next holder do not change): a handle kept after ``close`` moved the
   next holder's sequence past records it had not read, the producer overwrote them, and the
   next holder's read tore. Fix: a ``_closed`` check in ``_check_attached`` (or in each
   method that writes the line).
3. shm/consumer.py:490 ``take(max_batch=0)`` waits out its whole timeout (for ever with
   ``timeout_s=None`` on an idle ring) and returns ``[]``; ``read(0)`` refuses at once. Fix:
   check ``max_batch`` before ``wait``.
4. shm/producer.py:330 ``publish_slots(b"", 0)`` says "0 bytes is not count=0 x
   slot_size=24", which is false; the problem is the count. Fix: its own message, "count 0
   must be at least 1".
5. shm/producer.py:358,413 ``try_publish_batch`` (and ``has_room``, ``idle_round``) of more
   items than the ring holds return ``False`` for ever, even on an empty ring, where
   ``publish_batch`` takes such a batch in chunks: a caller that retries never finishes. Fix:
   refuse it, ``ValueError`` naming the count and the capacity.
6. shm/liveness.py:21 ``pid_alive`` lets ``os.kill``'s ``OverflowError`` out for a pid word
   past a C ``pid_t`` (a corrupted header): ``Ring.info``, ``ring.consumer``,
   ``ring.producer`` and ``list_segments`` (so ``ringex shm ls`` and ``rm --stale``) all raise
   it. Fix: a pid outside ``1..2**31-1`` is not alive (or catch ``OverflowError``).
7. shm/counters.py:81 ``Counters.open`` takes names that do not read back as written:
   duplicates (``read()`` builds a dict, so one counter silently vanishes) and names ending
   in NUL (stripped on attach, so the page never matches again and every writer restart
   replaces it, zeroing its counters). Fix: refuse both, naming the name.

Checked and holding (plain tests): batches, claims and slot images of exactly the capacity
fit a drained ring at any offset without waiting; zero-sized batches publish nothing;
batches larger than the ring reach a forked consumer whole; a seeded mix of every publish
and read path over capacities 2, 4 and 8 keeps order and never lets a gated consumer pass
its gate's commit; a forked producer and three forked consumers (one gated, one committing
by hand) over a ring of 4 lose, duplicate and tear nothing and the gated one never passes
its gate; a producer SIGKILLed mid-claim is resumed from the cursor and its successor wakes
the consumer its predecessor left parked; a consumer SIGKILLed holding the producer back is
classified dead, its detach wakes the parked producer process, and a new process rejoins its
line at the cursor; restarts exactly on a lap boundary; an encode error in the wrapped part
of a batch publishes exactly the good prefix; each publish path wakes a parked consumer,
each path that frees room wakes a parked producer, each path that moves a gate wakes the
consumer parked behind it; error messages name the value and the limit.

Leads suspected, not shown:
- Liveness across pid namespaces: a process in another pid namespace sharing ``/dev/shm``
  (``docker --ipc=host`` without ``--pid=host``) writes its namespace's pid; read here it is
  another process (or none), so its line reads as dead and can be taken while it runs.
- ``Ring.create(replace=True)`` unlinks only the segment: the old ring's processes still
  park on the same named semaphores and FIFOs as the new ring's, and may eat its posts (a
  delay up to the park timeout; no caller uses ``replace`` for rings today).
- ``skip_to`` on a gated consumer is bounded by the cursor, not by its gates.
- ``health.classify`` compares two snapshots by line index only; a line freed and declared
  again between them compares two consumers' sequences.
- ``publish_claimed`` publishes from ``_next``, not from where the claim began; a
  ``publish`` between ``claim`` and ``publish_claimed`` (documented as forbidden) would
  publish slots nobody wrote.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import pytest

from shm import (
    Blocking,
    Producer,
    Ring,
    StructCodec,
)
from shm import header as h
from shm.counters import Counters
from shm.inspect import list_segments
from shm.ring import ConsumerSpec
from shm.wait import Parker

CODEC = StructCodec("2q")
SLOT = CODEC.slot_size
FORK = mp.get_context("fork")
#: A park that a lost wake-up would sleep out: every wait below ends well before it, or fails.
LONG_PARK_S = 30.0
#: A short park for the stress tests, which check records, not wake-ups (``shm.wait`` says a
#: waker may rarely miss a park; a short park bounds that miss).
SHORT = Blocking(spins=20, park_timeout_s=0.05)


def rec(n: int) -> tuple[int, int]:
    return (n, n * 7 + 1)


def image(n: int) -> bytes:
    return CODEC.slot_struct.pack(*rec(n), 0)


def wait_for(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.001)


def outcome(call: Callable[[], object]) -> str:
    """What ``call`` did, in words: its return value or its exception, for an assertion."""
    try:
        return f"returned {call()!r}"
    except Exception as exc:  # the outcome is the point
        return f"{type(exc).__name__}: {exc}"


def in_thread(target: Callable[[], object]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            out["value"] = target()
        except Exception as exc:  # handed to the test
            out["error"] = exc
        out["took"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


class NoWait:
    """A wait strategy that fails the test if the caller ever has to wait."""

    name = "no-wait"

    def idle(self, rounds: int, ready: Callable[[], bool], parker: Parker | None) -> None:
        raise AssertionError("waited for room that should have been there")


def fill_claim(producer: Producer[Any], first: int, count: int) -> int:
    """Claim up to ``count`` slots, write records ``first..``, publish them all."""
    claim = producer.claim(count)
    for k in range(claim.slots):
        at = claim.offset + k * SLOT
        claim.view[at : at + SLOT] = CODEC.slot_struct.pack(*rec(first + k), claim.stamp)
    producer.publish_claimed(claim.slots)
    return claim.slots


def start(target: Callable[..., None], *args: object) -> Any:
    child = FORK.Process(target=target, args=args, daemon=True)
    child.start()
    return child


def finish(child: Any, timeout_s: float = 20.0) -> int:
    child.join(timeout_s)
    if child.is_alive():
        child.kill()
        child.join(5)
        raise AssertionError(f"child {child.pid} did not finish in {timeout_s}s")
    return int(child.exitcode)


def received(conn: Connection, timeout_s: float = 20.0) -> Any:
    assert conn.poll(timeout_s), f"no answer from the child in {timeout_s}s"
    return conn.recv()


# -- faults ----------------------------------------------------------------------------------


def test_a_closed_producer_s_claim_cannot_rewind_its_successor_s_cursor(instance: str) -> None:
    """Was (fixed: ``claim``, ``publish_claimed`` and ``publish_slots`` refuse a closed producer). A
    producer closed and replaced (a restart within the process) keeps ``claim`` and
    ``publish_claimed``: ``publish_claimed`` stores its own stale ``_next + count`` as the cursor.
    Expected: refused ("closed"), the cursor left at 6. Actual: the cursor goes back to 4, and the
    consumer that read and committed 6 records cannot attach again."""
    ring = Ring.create(instance, "r", CODEC, capacity=8, consumers=["a"])
    first = ring.producer()
    first.publish_batch([rec(n) for n in range(3)])
    first.close()
    second = ring.producer()
    second.publish_batch([rec(n) for n in range(3, 6)])
    reader = ring.consumer("a")
    assert reader.read(16) == [rec(n) for n in range(6)]
    reader.close()
    said = [outcome(lambda: first.claim(1)), outcome(lambda: first.publish_claimed(1))]
    assert ring.cursor() == 6, f"cursor {ring.cursor()} after a closed producer's {said}"
    assert "closed" in said[0], said
    ring.consumer("a").close()  # its committed sequence is still within the ring


def test_a_closed_consumer_cannot_move_the_next_holder_s_sequence(instance: str) -> None:
    """Was (fixed: ``_check_attached`` refuses a closed handle). A consumer handle kept after
    ``close`` (the line then taken by the next holder, here a restart within the process) still
    ``skip_to``s: it stores the sequence of a line that is no longer its own, and the producer
    overwrites what the next holder has not read. Expected: ``RingError`` (closed), the next holder
    reads records 2..9. Actual: the skip moves the line to 8, eight more records overwrite slots
    0..7, the next holder tears."""
    ring = Ring.create(instance, "r", CODEC, capacity=8, consumers=["a"])
    producer = ring.producer()
    producer.publish_batch([rec(n) for n in range(8)])  # full
    old = ring.consumer("a")
    old.close()
    new = ring.consumer("a")
    assert new.read(2) == [rec(0), rec(1)]  # commits 2
    said = outcome(lambda: old.skip_to(8))
    published = sum(producer.try_publish(rec(8 + k)) for k in range(8))
    got = new.read(16)
    got += new.read(16)  # (the first read stops at the cursor it last loaded)
    assert got == [rec(n) for n in range(2, 2 + 6 + published)]
    assert published == 2 and said.startswith("RingError") and "closed" in said, said


def test_take_refuses_a_zero_max_batch_before_waiting(instance: str) -> None:
    """Was (fixed: ``take`` checks ``max_batch`` before it waits). ``read(0)`` is a ``ValueError``
    naming ``max_batch``; ``take(0)`` waits first, so on an idle ring it sleeps its whole timeout
    (for ever with ``timeout_s=None``) and returns ``[]``. Expected: the same ``ValueError``, at
    once."""
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["a"])
    consumer = ring.consumer("a", Blocking(spins=0, park_timeout_s=0.05))
    assert outcome(lambda: consumer.read(0)).startswith("ValueError: read: max_batch 0")
    began = time.monotonic()
    said = outcome(lambda: consumer.take(0, timeout_s=0.3))
    assert said.startswith("ValueError") and "max_batch 0" in said, said
    assert time.monotonic() - began < 0.25


def test_publish_slots_of_no_slot_says_the_count_must_be_positive(instance: str) -> None:
    """Was (fixed: a count under 1 is said so). ``publish_slots(b"", 0)``: "0 bytes is not count=0 x
    slot_size=24", which is false (0 is 0 x 24). Expected: a message that the count must be at least
    1, naming it."""
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["a"])
    producer = ring.producer()
    for call in (
        lambda: producer.publish_slots(b"", 0),
        lambda: producer.try_publish_slots(b"", 0),
    ):
        said = outcome(call)
        assert said.startswith("ValueError") and "count" in said, said
        assert "at least 1" in said or "positive" in said, said
    assert ring.cursor() == 0


def test_try_publish_batch_larger_than_the_ring_is_refused_naming_both(instance: str) -> None:
    """Was (fixed: ``_within_capacity``). Five items never fit a ring of four: ``try_publish_batch``
    returns ``False`` on an empty ring with no consumer at all, as often as it is asked
    (``has_room(5)`` likewise, so a loop of ``idle_round(5, ...)`` never ends), while
    ``publish_batch`` takes them in chunks. Expected: ``ValueError`` naming the count (5) and the
    capacity (4)."""
    ring = Ring.create(instance, "r", CODEC, capacity=4)
    producer = ring.producer()
    said = outcome(lambda: producer.try_publish_batch([rec(n) for n in range(5)]))
    assert said.startswith("ValueError") and "5" in said and "4" in said, said


def test_a_corrupted_pid_word_is_not_alive_rather_than_an_overflow(instance: str) -> None:
    """Was (fixed: a pid outside ``1..2**31-1`` is no process). A pid word past a C ``pid_t`` (a
    stray write, a corrupted header) makes ``os.kill`` raise ``OverflowError`` in ``pid_alive``:
    ``Ring.info``, ``ring.consumer``, ``ring.producer`` and ``list_segments`` (``ringex shm ls``,
    ``rm --stale``) all raise it. Expected: such a pid is no live process (a header error would do
    too)."""
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["a"])
    words = ring.words
    said = []
    try:
        words[h.consumer_word(0, h.C_PID)] = 2**40
        words[h.P_PID] = 2**40
        for call in (
            ring.info,
            lambda: ring.consumer("a").close(),
            lambda: ring.producer().close(),
            lambda: [s.name for s in list_segments() if s.instance == instance],
        ):
            said.append(outcome(call))
    finally:  # the fixture's cleanup lists segments too
        words[h.consumer_word(0, h.C_PID)] = 0
        words[h.P_PID] = 0
    assert not [s for s in said if s.startswith("OverflowError")], said


@pytest.mark.parametrize("names", [["x", "y", "x"], ["a\0"]], ids=["duplicate", "nul"])
def test_counter_names_that_cannot_be_read_back_are_refused(
    instance: str, names: list[str]
) -> None:
    """Was (fixed: ``Counters.open`` refuses both, naming them). Duplicates: ``read()`` is a dict,
    so the first ``x`` (5 here) silently disappears from every scrape. A name ending in NUL is
    stripped on attach, so the page never matches its writer's names again and each restart replaces
    it, zeroing the counters. Expected: ``ValueError`` naming the name."""
    try:
        page = Counters.open(instance, "m", names)
    except ValueError:
        return
    page.values[0] = 5
    page.close()
    again = Counters.open(instance, "m", names)
    seen = again.read()
    again.close()
    raise AssertionError(f"names {names!r} taken; read back {seen}")


# -- batches: zero, exactly the capacity, larger -----------------------------------------------


@pytest.mark.parametrize("offset", [0, 3])
def test_exactly_capacity_fits_a_drained_ring_without_waiting(instance: str, offset: int) -> None:
    """With the consumer caught up, a batch, a try-batch, claims and slot images of exactly
    the capacity go in without a wait (``NoWait`` fails the test if any waits), at the start
    of the buffer and across its end; one more record then does not fit."""
    cap = 8
    ring = Ring.create(instance, "r", CODEC, capacity=cap, consumers=["a"])
    producer = ring.producer(NoWait())
    consumer = ring.consumer("a")
    producer.publish_batch([rec(n) for n in range(offset)])
    assert consumer.read(cap) == [rec(n) for n in range(offset)]
    batches: list[Callable[[int], object]] = [
        lambda n: producer.publish_batch([rec(k) for k in range(n, n + cap)]),
        lambda n: producer.try_publish_batch([rec(k) for k in range(n, n + cap)]),
        lambda n: producer.publish_slots(b"".join(image(k) for k in range(n, n + cap)), cap),
        lambda n: producer.try_publish_slots(b"".join(image(k) for k in range(n, n + cap)), cap),
    ]
    n = offset
    for publish in batches:
        assert producer.has_room(cap)
        publish(n)
        assert ring.cursor() == n + cap
        assert not producer.has_room(1) and not producer.try_publish(rec(0))
        assert not producer.try_publish_batch([rec(0)])
        assert consumer.read(2 * cap) == [rec(k) for k in range(n, n + cap)]
        n += cap
    first = fill_claim(producer, n, cap)  # up to the buffer's end
    assert first == cap - (n & (cap - 1))
    if first < cap:
        assert fill_claim(producer, n + first, cap - first) == cap - first
    assert consumer.read(2 * cap) == [rec(k) for k in range(n, n + cap)]


def test_zero_sized_batches_publish_nothing_and_are_refused_where_they_mean_nothing(
    instance: str,
) -> None:
    """An empty ``publish_batch`` or ``try_publish_batch`` moves nothing (the one returns the
    last sequence published, -1 on a fresh ring); ``claim(0)``, ``publish_claimed(0)`` and
    ``read(0)`` are ``ValueError``s naming the 0; none of them moves the cursor."""
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["a"])
    producer = ring.producer()
    consumer = ring.consumer("a")
    assert producer.publish_batch([]) == -1 and ring.cursor() == 0
    producer.publish(rec(0))
    assert producer.publish_batch([]) == 0 and producer.try_publish_batch([]) is True
    assert producer.has_room(0)
    assert outcome(lambda: producer.claim(0)) == "ValueError: claim count 0 must be positive"
    said = outcome(lambda: producer.publish_claimed(0))
    assert said.startswith("ValueError") and "count 0" in said, said
    assert outcome(lambda: consumer.read(0)).startswith("ValueError: read: max_batch 0")
    assert ring.cursor() == 1 and consumer.read(8) == [rec(0)]


def _consume(instance: str, name: str, total: int, conn: Connection) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    consumer = ring.consumer(name, SHORT)
    got: list[tuple[int, int]] = []
    while len(got) < total:
        batch = consumer.take(64, timeout_s=15)
        if not batch:
            break
        got += batch
    consumer.close()
    conn.send(got)


def test_batches_larger_than_the_ring_reach_a_forked_consumer_whole(instance: str) -> None:
    """``publish_batch`` of 3 x capacity + 1 items and ``publish_slots`` of 2 x capacity + 3
    images (each split by the ring, waiting for the consumer in another process) arrive in
    order, once each."""
    cap = 4
    ring = Ring.create(instance, "r", CODEC, capacity=cap, consumers=["a"])
    total = (3 * cap + 1) + (2 * cap + 3)
    ours, theirs = FORK.Pipe()
    child = start(_consume, instance, "a", total, theirs)
    producer = ring.producer(SHORT)
    assert producer.publish_batch([rec(n) for n in range(3 * cap + 1)]) == 3 * cap
    images = b"".join(image(n) for n in range(3 * cap + 1, total))
    assert producer.publish_slots(images, 2 * cap + 3) == total - 1
    assert received(ours) == [rec(n) for n in range(total)]
    assert finish(child) == 0


# -- order, gating and wrap-around over every path ---------------------------------------------


def test_a_seeded_mix_of_every_path_keeps_order_and_the_gate(instance: str) -> None:
    """Forty seeded runs over capacities 2, 4 and 8, a consumer ``j`` (auto-commit or by
    hand) and ``m`` gated on it, interleave ``try_publish``, ``try_publish_batch`` (0 to
    capacity + 2 items), claims published in part, ``try_publish_slots``, ``poll``, ``read``,
    ``take`` and ``commit``. After every step each consumer has read a prefix of what was
    sent, in order, and ``m`` never holds more than ``j`` has committed."""
    for seed in range(40):
        rnd = random.Random(seed)
        cap = rnd.choice([2, 4, 8])
        name = f"r{seed}"
        ring = Ring.create(
            instance, name, CODEC, capacity=cap, consumers=["j", ConsumerSpec("m", ("j",))]
        )
        producer = ring.producer(NoWait())
        j = ring.consumer("j", auto_commit=rnd.random() < 0.5, commit_every=rnd.randint(1, 5))
        m = ring.consumer("m", commit_every=rnd.randint(1, 5))
        got: dict[str, list[tuple[int, int]]] = {"j": [], "m": []}
        sent = 0
        for _ in range(250):
            op = rnd.randrange(8)
            side, who = rnd.choice([(j, "j"), (m, "m")])
            if op == 0:
                sent += producer.try_publish(rec(sent))
            elif op == 1:
                k = rnd.randint(0, cap)  # (more than the ring holds: a ValueError, pinned below)
                if producer.try_publish_batch([rec(sent + i) for i in range(k)]):
                    sent += k
            elif op == 2:
                k = rnd.randint(1, cap)
                if producer.has_room(k):
                    claim = producer.claim(k)
                    for i in range(claim.slots):
                        at = claim.offset + i * SLOT
                        claim.view[at : at + SLOT] = CODEC.slot_struct.pack(
                            *rec(sent + i), claim.stamp
                        )
                    done = rnd.randint(1, claim.slots)
                    producer.publish_claimed(done)
                    sent += done
            elif op == 3:
                k = rnd.randint(1, cap)
                if producer.try_publish_slots(b"".join(image(sent + i) for i in range(k)), k):
                    sent += k
            elif op == 4:
                item = side.poll()
                got[who] += [] if item is None else [item]
            elif op == 5:
                got[who] += side.read(rnd.randint(1, cap + 1))
            elif op == 6:
                got[who] += side.take(rnd.randint(1, 3), timeout_s=0)
            elif not j.auto_commit:
                j.commit()
            assert ring.cursor() == sent
            for key, items in got.items():
                assert items == [rec(n) for n in range(len(items))], (seed, key)
            assert len(got["m"]) <= ring.words[h.consumer_word(0, h.C_SEQUENCE)], seed
        while True:  # drain
            more = j.read(64)
            if not j.auto_commit:
                j.commit()
            got["j"] += more
            after = m.read(64)
            got["m"] += after
            if not more and not after:
                break
        assert got["j"] == got["m"] == [rec(n) for n in range(sent)], seed
        j.close()
        m.close()
        producer.close()
        ring.unlink()
        ring.close()


def _pipeline_producer(instance: str, total: int) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    producer = ring.producer(SHORT)
    rnd = random.Random(178)
    n = 0
    while n < total:
        k = min(rnd.randint(1, 6), total - n)
        path = rnd.randrange(4)
        if path == 0:
            producer.publish(rec(n))
            k = 1
        elif path == 1:
            producer.publish_batch([rec(i) for i in range(n, n + k)])
        elif path == 2:
            producer.publish_slots(b"".join(image(i) for i in range(n, n + k)), k)
        else:
            k = fill_claim(producer, n, k)
        n += k
    producer.close()


def _pipeline_journal(instance: str, total: int, conn: Connection) -> None:
    """Reads in batches, commits by hand every third batch and before it waits."""
    ring = Ring.attach(instance, "r", CODEC)
    journal = ring.consumer("j", SHORT, auto_commit=False)
    got: list[tuple[int, int]] = []
    batches = 0
    while len(got) < total:
        batch = journal.take(3, timeout_s=15)
        if not batch:
            break
        got += batch
        batches += 1
        if batches % 3 == 0 or not journal.ready():  # commit before waiting: a journal's fsync
            journal.commit()
    journal.commit()
    journal.close()
    conn.send(got)


def _pipeline_gated(instance: str, total: int, conn: Connection) -> None:
    """Reads one record at a time behind the journal; each record must be below the
    journal's committed sequence, read after it (the sequence only grows)."""
    ring = Ring.attach(instance, "r", CODEC)
    matcher = ring.consumer("m", SHORT)
    gate = h.consumer_word(ring.consumer_index("j"), h.C_SEQUENCE)
    got: list[tuple[int, int]] = []
    passed = 0
    while len(got) < total:
        item = matcher.next(timeout_s=15)
        if item is None:
            break
        passed += item[0] >= ring.words[gate]
        got.append(item)
    matcher.close()
    conn.send((got, passed))


def test_a_forked_pipeline_with_a_gated_consumer_loses_and_tears_nothing(instance: str) -> None:
    """A producer process (every publish path, seeded) and three consumer processes on a
    ring of 4: ``j`` committing by hand, ``m`` gated on ``j`` polling one at a time, ``x``
    taking batches. Each gets every record once, in order, and ``m`` never reads a record
    ``j`` has not committed."""
    total = 1500
    Ring.create(instance, "r", CODEC, capacity=4, consumers=["j", ConsumerSpec("m", ("j",)), "x"])
    pipes = [FORK.Pipe() for _ in range(3)]
    children = [
        start(_pipeline_journal, instance, total, pipes[0][1]),
        start(_pipeline_gated, instance, total, pipes[1][1]),
        start(_consume, instance, "x", total, pipes[2][1]),
        start(_pipeline_producer, instance, total),
    ]
    expected = [rec(n) for n in range(total)]
    assert received(pipes[0][0], 30) == expected
    got, passed = received(pipes[1][0], 30)
    assert got == expected and passed == 0
    assert received(pipes[2][0], 30) == expected
    assert [finish(child) for child in children] == [0, 0, 0, 0]
