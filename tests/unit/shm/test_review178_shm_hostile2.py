"""Review 178, part 2: crashed processes, detach and rejoin, lap boundaries, encode errors and
wake-ups of the shm substrate (test_review178_shm_hostile.py has the review's account,
the faults found and fixed, and the first tests)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import pytest

from shm import (
    Blocking,
    EncodeError,
    Producer,
    Ring,
)
from shm import header as h
from shm.consumer import Consumer
from shm.health import Health, classify
from shm.ring import ConsumerSpec
from tests.unit.shm.test_review178_shm_hostile import (
    CODEC,
    FORK,
    LONG_PARK_S,
    SHORT,
    SLOT,
    fill_claim,
    finish,
    image,
    in_thread,
    outcome,
    rec,
    received,
    start,
    wait_for,
)

# -- crashed processes, detach and rejoin ------------------------------------------------------


def _producer_killed_mid_claim(instance: str) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    producer = ring.producer()
    producer.publish_batch([rec(n) for n in range(10)])
    claim = producer.claim(3)  # written and stamped, never published
    for k in range(claim.slots):
        at = claim.offset + k * SLOT
        claim.view[at : at + SLOT] = CODEC.slot_struct.pack(-1, -1, claim.stamp)
    os.kill(os.getpid(), signal.SIGKILL)


def _parked_consumer(instance: str, total: int, conn: Connection) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    consumer = ring.consumer("a", Blocking(spins=0, park_timeout_s=LONG_PARK_S))
    got: list[tuple[int, int]] = []
    while len(got) < total:
        batch = consumer.take(64, timeout_s=20)
        if not batch:
            break
        got += batch
    conn.send(got)


def test_a_producer_killed_mid_claim_is_resumed_and_wakes_the_parked_consumer(
    instance: str,
) -> None:
    """A producer process SIGKILLed between filling a claim and publishing it has published
    nothing of it: its successor (this process) starts at the cursor, overwrites the claimed
    slots, and its first publish wakes the consumer process its predecessor left parked
    (parked for 30 s: it answers well before)."""
    ring = Ring.create(instance, "r", CODEC, capacity=8, consumers=["a"])
    ours, theirs = FORK.Pipe()
    reader = start(_parked_consumer, instance, 20, theirs)
    assert finish(start(_producer_killed_mid_claim, instance)) == -signal.SIGKILL
    line = h.consumer_word(0, h.C_SEQUENCE)
    wait_for(lambda: ring.words[line] == 10 and ring.words[h.consumer_word(0, h.C_PARKED)])
    assert ring.cursor() == 10 and not ring.info().producer_alive
    assert ring.last_published() == rec(9)
    producer = ring.producer()
    assert producer.sequence == 10
    began = time.monotonic()
    producer.publish_batch([rec(n) for n in range(10, 20)])
    assert received(ours) == [rec(n) for n in range(20)]
    assert time.monotonic() - began < LONG_PARK_S / 2
    assert finish(reader) == 0


def _consumer_killed_unread(instance: str) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    consumer = ring.consumer("b", auto_commit=False)
    assert consumer.read(2) == [rec(0), rec(1)]  # read, never committed
    os.kill(os.getpid(), signal.SIGKILL)


def _parked_producer(instance: str, total: int) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    producer = ring.producer(Blocking(spins=0, park_timeout_s=LONG_PARK_S))
    for n in range(producer.sequence, total):
        producer.publish(rec(n))
    producer.close()


def _rejoined(instance: str, total: int, conn: Connection) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    consumer = ring.consumer("b", SHORT, rejoin=True)
    got: list[tuple[int, int]] = []
    while len(got) < total:
        batch = consumer.take(64, timeout_s=15)
        if not batch:
            break
        got += batch
    conn.send((consumer.sequence, got))


def test_a_consumer_killed_holding_the_producer_back_is_detached_and_rejoined(
    instance: str,
) -> None:
    """A consumer process SIGKILLed with records read but not committed holds the producer
    process (parked for 30 s) on a full ring of 4. ``info``/``classify`` call it dead; its
    detach wakes the producer at once, which runs on past it; a new process rejoins the line
    at the cursor, from where it gets exactly what follows."""
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["b"])
    first = ring.producer()
    first.publish_batch([rec(0), rec(1)])
    first.close()
    assert finish(start(_consumer_killed_unread, instance)) == -signal.SIGKILL
    began = time.monotonic()
    producer = start(_parked_producer, instance, 12)
    wait_for(lambda: ring.words[h.P_PARKED] and ring.cursor() == 4)
    snapshot = ring.info().consumers[0]
    assert snapshot.sequence == 0 and snapshot.pid and not snapshot.pid_alive
    assert classify(snapshot, snapshot, stale_after_s=60) is Health.DEAD
    ring.detach_consumer(0)
    assert finish(producer) == 0 and ring.cursor() == 12
    assert time.monotonic() - began < LONG_PARK_S / 2
    after = ring.info().consumers[0]
    assert classify(after, after, stale_after_s=60) is Health.DETACHED
    ours, theirs = FORK.Pipe()
    rejoined = start(_rejoined, instance, 3, theirs)
    wait_for(lambda: ring.words[h.consumer_word(0, h.C_PID)] == rejoined.pid)  # after rejoin
    successor = ring.producer()
    successor.publish_batch([rec(n) for n in range(12, 15)])
    assert received(ours) == (15, [rec(12), rec(13), rec(14)])
    assert finish(rejoined) == 0


def test_restarts_on_a_lap_boundary_continue_without_gap(instance: str) -> None:
    """Producer and consumer both stop at sequence 8 on a ring of 4 (two whole laps: the
    next record is slot 0, lap 3). The restarted producer writes record 8 to slot 0 with
    stamp 3; the restarted consumer and a consumer declared there both read from 8."""
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["a"])
    producer = ring.producer()
    consumer = ring.consumer("a")
    for n in range(0, 8, 4):
        producer.publish_batch([rec(k) for k in range(n, n + 4)])
        assert consumer.read(8) == [rec(k) for k in range(n, n + 4)]
    producer.close()
    consumer.close()
    assert ring.last_published() == rec(7)
    again = Ring.attach(instance, "r", CODEC)
    restarted = again.producer()
    claim = restarted.claim(4)
    assert (claim.offset, claim.stamp, claim.slots) == (again.slot_offset(0), 3, 4)
    late = again.declare_consumer("late")
    assert again.words[h.consumer_word(late, h.C_SEQUENCE)] == 8
    restarted.publish(rec(8))
    assert again.words[again.stamp_word(8)] == 3
    assert again.consumer("a").read(8) == [rec(8)]
    assert again.consumer("late").read(8) == [rec(8)]


def test_an_encode_error_in_the_wrapped_part_publishes_exactly_the_good_prefix(
    instance: str,
) -> None:
    """A batch of 5 from slot 6 of 8 (2 slots to the end, 3 wrapped) whose fourth item does
    not fit: the 3 before it are published (2 before the end, 1 after), the error says so,
    the bad item's slot is the next publish's, and the consumer sees 6..9 in order."""
    ring = Ring.create(instance, "r", CODEC, capacity=8, consumers=["a"])
    producer = ring.producer()
    consumer = ring.consumer("a")
    producer.publish_batch([rec(n) for n in range(6)])
    assert len(consumer.read(8)) == 6
    batch = [rec(6), rec(7), rec(8), (2**70, 0), rec(10)]
    with pytest.raises(EncodeError) as info:
        producer.publish_batch(batch)
    assert info.value.published == 3 and "the 3 items before it were published" in str(info.value)
    assert ring.cursor() == 9 and producer.sequence == 9
    assert producer.publish(rec(9)) == 9
    assert consumer.read(8) == [rec(n) for n in range(6, 10)]


# -- wake-ups: every path that should post, posts --------------------------------------------


def _claim_one(producer: Producer[Any]) -> None:
    fill_claim(producer, 0, 1)


PUBLISHES: dict[str, Callable[[Producer[Any]], object]] = {
    "publish": lambda p: p.publish(rec(0)),
    "try_publish": lambda p: p.try_publish(rec(0)),
    "publish_batch": lambda p: p.publish_batch([rec(0), rec(1)]),
    "try_publish_batch": lambda p: p.try_publish_batch([rec(0)]),
    "claim": _claim_one,
    "publish_slots": lambda p: p.publish_slots(image(0), 1),
    "try_publish_slots": lambda p: p.try_publish_slots(image(0), 1),
}


@pytest.mark.parametrize("path", sorted(PUBLISHES))
def test_each_publish_path_wakes_a_parked_consumer(instance: str, path: str) -> None:
    """A consumer parked for 30 s is posted by every way of publishing."""
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["a"])
    producer = ring.producer()
    consumer = ring.consumer("a", Blocking(spins=0, park_timeout_s=LONG_PARK_S))
    thread, out = in_thread(lambda: consumer.wait(20))
    wait_for(lambda: ring.words[h.consumer_word(0, h.C_PARKED)])
    PUBLISHES[path](producer)
    thread.join(20)
    assert out.get("value") is True and out["took"] < LONG_PARK_S / 2, out
    assert consumer.poll() == rec(0)


def _poll_twice(consumer: Consumer[Any]) -> None:
    assert consumer.poll() == rec(0)
    assert consumer.poll() == rec(1)  # its slow path commits the first (commit_every 1)


def _poll_then_close(consumer: Consumer[Any]) -> None:
    assert consumer.poll() == rec(0)
    consumer.close()  # commits what was polled


RELEASES: dict[str, Callable[[Ring[Any], Consumer[Any]], object]] = {
    "read": lambda r, c: c.read(1),
    "poll": lambda r, c: _poll_twice(c),
    "skip_to": lambda r, c: c.skip_to(1),
    "close": lambda r, c: _poll_then_close(c),
    "detach": lambda r, c: r.detach_consumer(c.index),
}


@pytest.mark.parametrize("path", sorted(RELEASES))
def test_each_release_path_wakes_a_parked_producer(instance: str, path: str) -> None:
    """A producer parked for 30 s on a full ring is posted by every way room is freed."""
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["a"])
    producer = ring.producer(Blocking(spins=0, park_timeout_s=LONG_PARK_S))
    producer.publish_batch([rec(n) for n in range(4)])
    consumer = ring.consumer("a")
    thread, out = in_thread(lambda: producer.publish(rec(4)))
    wait_for(lambda: ring.words[h.P_PARKED])
    RELEASES[path](ring, consumer)
    thread.join(20)
    assert out.get("value") == 4 and out["took"] < LONG_PARK_S / 2, out


def test_a_hand_commit_wakes_a_parked_producer(instance: str) -> None:
    """The journal's way: read without committing leaves the producer parked; ``commit``
    wakes it."""
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["a"])
    producer = ring.producer(Blocking(spins=0, park_timeout_s=LONG_PARK_S))
    producer.publish_batch([rec(n) for n in range(4)])
    consumer = ring.consumer("a", auto_commit=False)
    assert consumer.read(2) == [rec(0), rec(1)]
    thread, out = in_thread(lambda: producer.publish(rec(4)))
    wait_for(lambda: ring.words[h.P_PARKED])
    assert ring.cursor() == 4
    consumer.commit()
    thread.join(20)
    assert out.get("value") == 4 and out["took"] < LONG_PARK_S / 2, out


GATE_MOVES: dict[str, Callable[[Ring[Any], Consumer[Any]], object]] = {
    "read": lambda r, c: c.read(1),
    "skip_to": lambda r, c: c.skip_to(1),
    "close": lambda r, c: _poll_then_close(c),
    "detach": lambda r, c: r.detach_consumer(c.index),
}


@pytest.mark.parametrize("path", sorted(GATE_MOVES))
def test_each_gate_move_wakes_the_consumer_parked_behind_it(instance: str, path: str) -> None:
    """``m`` gated on ``j``, with records published but none committed by ``j``: ``m``
    parks (30 s) and every way ``j``'s gate moves posts it."""
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["j", ConsumerSpec("m", ("j",))])
    ring.producer().publish_batch([rec(0), rec(1)])
    gate = ring.consumer("j")
    follower = ring.consumer("m", Blocking(spins=0, park_timeout_s=LONG_PARK_S))
    thread, out = in_thread(lambda: follower.wait(20))
    wait_for(lambda: ring.words[h.consumer_word(1, h.C_PARKED)])
    GATE_MOVES[path](ring, gate)
    thread.join(20)
    assert out.get("value") is True and out["took"] < LONG_PARK_S / 2, out
    assert follower.poll() == rec(0)


# -- error messages ----------------------------------------------------------------------------


def test_error_messages_name_the_value_and_the_limit(instance: str) -> None:
    """Each refusal names what was asked and what bounds it."""
    ring = Ring.create(instance, "r", CODEC, capacity=4, consumers=["a"])
    producer = ring.producer()
    consumer = ring.consumer("a", auto_commit=False)
    producer.publish_batch([rec(0), rec(1)])
    claim = producer.claim(2)
    said = outcome(lambda: producer.publish_claimed(3))
    assert "count 3" in said and "1..2" in said, said
    assert claim.slots == 2
    said = outcome(lambda: consumer.commit(3))
    assert "commit 3" in said and "0..0" in said, said
    said = outcome(lambda: consumer.skip_to(9))
    assert "9" in said and "cursor 2" in said, said
    said = outcome(lambda: ring.declare_consumer("late", start=3))
    assert "start at 3" in said and "0..2" in said, said
    said = outcome(lambda: Ring.create(instance, "q", CODEC, capacity=6))
    assert "capacity 6" in said and "power of two" in said, said
    said = outcome(lambda: ring.consumer("nobody"))
    assert "'nobody'" in said and "['a']" in said, said
    said = outcome(lambda: Consumer(ring, 99))
    assert "99" in said and "0..15" in said, said
