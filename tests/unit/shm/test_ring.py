"""Ring semantics in one process: order, wrap-around, back-pressure, multicast, gating,
batches, crash-only resume, detaching, and the seqlock's torn-read detection."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from shm import (
    ConsumerDetachedError,
    EncodeError,
    Ring,
    RingError,
    StructCodec,
    TornReadError,
    wait_strategy,
)
from shm import header as h
from shm.consumer import Consumer
from shm.liveness import process_start
from shm.producer import Producer
from shm.ring import ConsumerSpec

CODEC = StructCodec("2q")


def make(instance: str, capacity: int = 8, consumers: Any = ("a",)) -> Ring[Any]:
    return Ring.create(instance, "r", CODEC, capacity=capacity, consumers=list(consumers))


def drain(consumer: Any) -> list[int]:
    return [item[0] for item in consumer.read(1 << 20)]


def test_records_arrive_in_order_across_many_wraps(instance: str) -> None:
    ring = make(instance, capacity=4)
    producer, consumer = ring.producer(), ring.consumer("a")
    seen = []
    for i in range(50):
        assert producer.publish((i, -i)) == i
        item = consumer.poll()
        assert item == (i, -i)
        seen.append(item[0])
    assert consumer.poll() is None
    assert seen == list(range(50))


def test_full_ring_refuses_try_publish_and_blocks_publish_until_a_slot_is_freed(
    instance: str,
) -> None:
    ring = make(instance, capacity=4)
    producer, consumer = ring.producer(), ring.consumer("a")
    for i in range(4):
        assert producer.try_publish((i, 0))
    assert not producer.try_publish((4, 0))  # never overwrites an unread slot

    published = threading.Event()

    def publish_fifth() -> None:
        producer.publish((4, 0))
        published.set()

    thread = threading.Thread(target=publish_fifth)
    thread.start()
    assert not published.wait(0.2)  # still waiting: the consumer has read nothing
    assert drain(consumer) == [0, 1, 2, 3]
    assert published.wait(5)
    thread.join()
    assert drain(consumer) == [4]


def test_consumers_at_different_speeds_each_see_everything_and_the_slowest_gates(
    instance: str,
) -> None:
    ring = make(instance, capacity=8, consumers=("fast", "slow"))
    producer = ring.producer()
    fast, slow = ring.consumer("fast"), ring.consumer("slow")
    got_fast: list[int] = []
    got_slow: list[int] = []
    for i in range(40):
        if not producer.try_publish((i, 0)):
            got_slow += [item[0] for item in slow.read(3)]  # slow reads a little at a time
            got_fast += drain(fast)
            assert producer.try_publish((i, 0))
        got_fast += drain(fast)
    got_fast += drain(fast)
    got_slow += drain(slow)
    assert got_fast == list(range(40))
    assert got_slow == list(range(40))


def test_gated_consumer_reads_only_what_its_gate_has_committed(instance: str) -> None:
    ring = Ring.create(
        instance,
        "r",
        CODEC,
        capacity=16,
        consumers=["journal", ConsumerSpec("matcher", gates=("journal",))],
    )
    producer = ring.producer()
    journal = ring.consumer("journal", auto_commit=False)
    matcher = ring.consumer("matcher")
    for i in range(5):
        producer.publish((i, 0))
    assert matcher.poll() is None  # nothing durable yet
    assert [item[0] for item in journal.read()] == [0, 1, 2, 3, 4]
    assert matcher.read() == []  # read but not committed
    journal.commit(3)  # "records 0..2 are on disk"
    assert drain(matcher) == [0, 1, 2]
    assert matcher.poll() is None
    journal.commit()
    assert drain(matcher) == [3, 4]


def test_manual_commit_rejects_a_sequence_it_has_not_read(instance: str) -> None:
    ring = make(instance)
    producer, consumer = ring.producer(), ring.consumer("a", auto_commit=False)
    producer.publish((1, 1))
    consumer.poll()
    with pytest.raises(RingError, match=r"commit 5 is outside 0\.\.1"):
        consumer.commit(5)


def test_skip_to_passes_records_unread_commits_them_and_stops_at_the_cursor(
    instance: str,
) -> None:
    ring = make(instance, capacity=8)
    producer, consumer = ring.producer(), ring.consumer("a", auto_commit=False)
    producer.publish_batch([(i, i) for i in range(6)])
    assert [item[0] for item in consumer.read(2)] == [0, 1]
    assert consumer.skip_to(1) == 0  # already behind it
    assert consumer.skip_to(4) == 2
    assert ring.words[h.consumer_word(consumer.index, h.C_SEQUENCE)] == 4  # committed
    assert drain(consumer) == [4, 5]
    producer.publish_batch([(i, i) for i in range(6, 12)])  # the skipped slots were freed
    with pytest.raises(RingError, match="cannot skip to 13, past the cursor 12"):
        consumer.skip_to(13)
    assert consumer.skip_to(11) == 5
    assert drain(consumer) == [11]


def test_try_publish_slots_takes_all_or_nothing(instance: str) -> None:
    ring = make(instance, capacity=4)
    producer, consumer = ring.producer(), ring.consumer("a")
    images = bytearray(CODEC.slot_size * 3)
    CODEC.encode_window(images, 0, [(i, -i) for i in range(3)], 0)
    assert producer.try_publish_slots(images, 3)
    assert not producer.try_publish_slots(images, 3)  # 1 free slot: nothing is written
    assert drain(consumer) == [0, 1, 2]
    assert producer.try_publish_slots(images, 3)
    assert drain(consumer) == [0, 1, 2]


def test_batch_publish_and_read_wrap_and_split(instance: str) -> None:
    ring = make(instance, capacity=8)
    producer, consumer = ring.producer(), ring.consumer("a")
    producer.publish_batch([(i, i) for i in range(5)])
    assert drain(consumer) == [0, 1, 2, 3, 4]
    producer.publish_batch([(i, i) for i in range(5, 12)])  # wraps at slot 8
    assert [item[0] for item in consumer.read(3)] == [5, 6, 7]
    assert drain(consumer) == [8, 9, 10, 11]
    with pytest.raises(
        ValueError, match="try_publish_batch of 9 records, more than its capacity 8"
    ):
        producer.try_publish_batch([(i, i) for i in range(9)])  # never fits (review 178)


def test_batch_larger_than_the_ring_is_written_in_chunks(instance: str) -> None:
    ring = make(instance, capacity=4)
    producer, consumer = ring.producer(), ring.consumer("a")
    got: list[int] = []
    thread = threading.Thread(target=producer.publish_batch, args=([(i, 0) for i in range(30)],))
    thread.start()
    deadline = time.monotonic() + 10
    while len(got) < 30 and time.monotonic() < deadline:
        got += drain(consumer)
    thread.join()
    assert got == list(range(30))


def test_publish_slots_copies_images_and_stamps_them(instance: str) -> None:
    ring = make(instance, capacity=8)
    producer, consumer = ring.producer(), ring.consumer("a")
    pack = CODEC.slot_struct.pack
    producer.publish_slots(b"".join(pack(i, 7, 0) for i in range(6)), 6)
    assert drain(consumer) == list(range(6))
    producer.publish_slots(b"".join(pack(i, 7, 0) for i in range(6, 10)), 4)  # wraps
    assert drain(consumer) == list(range(6, 10))
    producer.publish_slots(pack(10, 2, 99), 1)  # whatever the image's stamp, the ring's wins
    assert consumer.poll() == (10, 2)
    with pytest.raises(ValueError, match="not count=2"):
        producer.publish_slots(pack(1, 2, 0), 2)


def test_a_bad_item_is_refused_and_the_window_before_it_is_published(instance: str) -> None:
    ring = make(instance)
    producer, consumer = ring.producer(), ring.consumer("a")
    with pytest.raises(EncodeError, match="does not fit '2q'"):
        producer.publish((1, 2**64))
    with pytest.raises(EncodeError, match="the 2 items before it were published"):
        producer.publish_batch([(0, 0), (1, 1), ("x", 2), (3, 3)])
    assert drain(consumer) == [0, 1]
    assert producer.sequence == 2


def test_second_live_producer_or_consumer_is_refused(instance: str) -> None:
    ring = make(instance)
    ring.producer()
    ring.consumer("a")
    other = Ring.attach(instance, "r", CODEC)
    # Same pid here, so simulate another live holder by writing our parent's pid.
    other.words[h.P_PID] = os.getppid()
    other.words[h.P_PID_START] = process_start(os.getppid()) or 0  # the very process
    with pytest.raises(RingError, match="already has a live producer"):
        other.producer()
    other.words[h.consumer_word(0, h.C_PID)] = os.getppid()
    other.words[h.consumer_word(0, h.C_PID_START)] = process_start(os.getppid()) or 0
    with pytest.raises(RingError, match="attached by live pid"):
        other.consumer("a")


def test_restarted_roles_resume_where_they_stopped(instance: str) -> None:
    ring = make(instance, capacity=16)
    producer, consumer = ring.producer(), ring.consumer("a")
    for i in range(6):
        producer.publish((i, 0))
    assert [item[0] for item in consumer.read(2)] == [0, 1]
    consumer.close()
    producer.close()
    again = Ring.attach(instance, "r", CODEC)
    producer2, consumer2 = again.producer(), again.consumer("a")
    assert producer2.sequence == 6
    producer2.publish((6, 0))
    assert drain(consumer2) == [2, 3, 4, 5, 6]


def test_records_written_but_not_committed_by_a_dead_producer_are_not_seen(
    instance: str,
) -> None:
    """The cursor store is the commit point: a producer that died after writing a slot but
    before storing the cursor acknowledged nothing, and its successor overwrites the slot."""
    ring = make(instance)
    producer = ring.producer()
    producer.publish((0, 0))
    claim = producer.claim(2)
    CODEC.slot_struct.pack_into(claim.view, claim.offset, 1, 1, claim.stamp)  # written...
    producer.close()  # ...and the process died before publish_claimed
    consumer = ring.consumer("a")
    assert drain(consumer) == [0]
    successor = ring.producer()
    assert successor.sequence == 1
    successor.publish((10, 10))
    assert [item[0] for item in consumer.read()] == [10]


def test_claim_then_publish_claimed_writes_in_place(instance: str) -> None:
    ring = make(instance, capacity=8)
    producer, consumer = ring.producer(), ring.consumer("a")
    producer.publish_batch([(i, 0) for i in range(6)])
    assert len(drain(consumer)) == 6
    claim = producer.claim(5)
    assert claim.slots == 2  # stops at the end of the buffer
    pack = CODEC.slot_struct.pack
    images = b"".join(pack(i, 1, claim.stamp) for i in (6, 7))
    claim.view[claim.offset : claim.offset + len(images)] = images  # any order: not yet visible
    assert consumer.poll() is None
    assert producer.publish_claimed(claim.slots) == 7
    assert drain(consumer) == [6, 7]
    with pytest.raises(ValueError, match="claim count 0 must be positive"):
        producer.claim(0)


def test_consumer_declared_later_starts_at_the_cursor(instance: str) -> None:
    ring = make(instance)
    producer = ring.producer()
    producer.publish((0, 0))
    ring.declare_consumer("late")
    producer.publish((1, 0))
    assert drain(ring.consumer("late")) == [1]
    with pytest.raises(RingError, match="already declared"):
        ring.declare_consumer("late")
    with pytest.raises(RingError, match="no consumer 'nobody'"):
        ring.consumer("nobody")


def test_detached_consumer_stops_gating_and_learns_it_was_detached(instance: str) -> None:
    ring = make(instance, capacity=4, consumers=("a", "dead"))
    producer = ring.producer()
    a, dead = ring.consumer("a"), ring.consumer("dead")
    for i in range(4):
        producer.publish((i, 0))
    assert drain(a) == [0, 1, 2, 3]
    assert not producer.try_publish((4, 0))  # "dead" still gates
    ring.detach_consumer(ring.consumer_index("dead"))
    for i in range(4, 8):
        producer.publish((i, 0))  # it no longer does; its slots are overwritten
    assert drain(a) == list(range(4, 8))
    with pytest.raises(ConsumerDetachedError):
        dead.poll()
    with pytest.raises(ConsumerDetachedError, match="rejoin=True"):
        Ring.attach(instance, "r", CODEC).consumer("dead")
    rejoined = Ring.attach(instance, "r", CODEC).consumer("dead", rejoin=True)
    producer.publish((8, 0))
    assert drain(rejoined) == [8]


@pytest.mark.parametrize("reference", [False, True])
def test_a_slot_rewritten_during_the_read_is_a_torn_read(instance: str, reference: bool) -> None:
    """The seqlock's second check: the decoder itself rewrites the stamp mid-read, standing
    in for a producer that lapped a detached consumer (compiled and reference poll)."""
    ring: Ring[Any]

    class RewritingCodec(StructCodec):
        @property
        def decode_from(self) -> Any:
            plain = super().decode_from

            def decode_while_rewritten(buf: Any, offset: int) -> Any:
                item = plain(buf, offset)
                ring.words[ring.stamp_word(0)] = 2  # the producer lapped us mid-read
                return item

            return decode_while_rewritten

    ring = Ring.create(instance, "torn", RewritingCodec("2q"), capacity=4, consumers=["a"])
    producer = ring.producer()
    producer.publish((1, 1))
    consumer = ring.consumer("a")
    with pytest.raises(TornReadError, match="read record 0 while its slot changed"):
        Consumer.poll(consumer) if reference else consumer.poll()


def test_info_reports_lag_liveness_and_gates(instance: str) -> None:
    ring = Ring.create(
        instance, "r", CODEC, capacity=8, consumers=["a", ConsumerSpec("b", gates=("a",))]
    )
    producer = ring.producer()
    ring.consumer("a")
    for i in range(3):
        producer.publish((i, 0))
    info = ring.info()
    assert info.cursor == 3 and info.producer_alive
    a, b = info.consumers
    assert (a.name, a.lag, a.pid_alive, a.gates) == ("a", 3, True, ())
    assert (b.name, b.pid, b.pid_alive, b.gates) == ("b", 0, False, (0,))


def test_compiled_publish_writes_what_the_reference_writes(instance: str) -> None:
    """Contract: the per-instance compiled publish and the readable reference method leave
    byte-identical rings, and share one sequence and limit."""
    items = [(i, -i) for i in range(20)]
    rings = [make(instance.replace("x", f"{k}x"), capacity=8) for k in range(2)]
    try:
        for use_reference, ring in zip((False, True), rings, strict=True):
            producer, consumer = ring.producer(), ring.consumer("a")
            got = []
            for item in items:
                if use_reference:
                    Producer.publish(producer, item)
                else:
                    producer.publish(item)
                if producer.sequence % 4 == 0:
                    got += drain(consumer)
            got += drain(consumer)
            assert got == [i for i, _ in items]
            assert producer.sequence == 20
            consumer.close()
            producer.close()
        one, two = (bytes(r.region.buf[r.data_offset :]) for r in rings)
        assert one == two
        assert rings[0].cursor() == rings[1].cursor() == 20
    finally:
        for ring in rings:
            ring.unlink()


def test_compiled_poll_reads_what_the_reference_reads(instance: str) -> None:
    """Contract: the per-instance compiled poll and the readable reference method return the
    same records, commit alike, and share one sequence with ``read``, ``skip_to`` and
    ``pass_over`` (mixed calls, across laps of a small ring)."""
    outcomes = []
    for k, use_reference in enumerate((False, True)):
        ring = make(instance.replace("x", f"{k}x"), capacity=8)
        try:
            producer, consumer = ring.producer(), ring.consumer("a", commit_every=2)
            poll: Callable[[], Any] = consumer.poll
            if use_reference:
                poll = partial(Consumer.poll, consumer)
            got: list[Any] = []
            for round_ in range(12):
                producer.publish_batch([(round_ * 10 + i, i) for i in range(6)])
                got.append(poll())
                got.append(poll())
                if round_ % 3 == 0:
                    consumer.pass_over()
                if round_ % 4 == 1:
                    consumer.skip_to(consumer.sequence + 1)
                got += consumer.read(2)
                while (item := poll()) is not None:
                    got.append(item)
                got.append(poll())  # None: nothing left
                got.append((consumer.sequence, ring.words[consumer._seq_word]))
            outcomes.append(got)
            consumer.close()
            producer.close()
        finally:
            ring.unlink()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][-1] == (72, 72)


def test_backlog_counts_what_the_slowest_consumer_has_not_read(instance: str) -> None:
    ring = make(instance, capacity=8, consumers=("a", "b"))
    producer, a, b = ring.producer(), ring.consumer("a"), ring.consumer("b")
    assert producer.backlog() == 0
    producer.publish_batch([(i, 0) for i in range(5)])
    assert producer.backlog() == 5
    assert drain(a) == [0, 1, 2, 3, 4]
    assert producer.backlog() == 5  # b has read nothing
    assert drain(b) == [0, 1, 2, 3, 4]
    assert producer.backlog() == 0


def test_idle_round_waits_as_configured_and_returns_once_there_is_room(instance: str) -> None:
    """A blocking strategy parks in ``idle_round`` until a consumer's commit posts it."""
    ring = make(instance, capacity=4)
    producer = ring.producer(wait_strategy("blocking", spins=0, park_timeout_s=5.0))
    consumer = ring.consumer("a")
    producer.publish_batch([(i, 0) for i in range(4)])
    threading.Timer(0.1, lambda: drain(consumer)).start()
    started = time.monotonic()
    producer.idle_round(1, 0)  # parked until the drain commits
    waited = time.monotonic() - started
    assert 0.05 < waited < 4.0
    assert producer.try_publish((4, 0))


def test_pass_over_leaves_the_commit_to_the_consumer(instance: str) -> None:
    """A record passed over (one that does not decode) is released with those read before
    it, at the consumer's commit: the router passes over a bad command while the replies to
    the commands before it may still be owed, and a crash must read those again."""
    ring = make(instance, capacity=8)
    producer = ring.producer()
    consumer = ring.consumer("a", auto_commit=False)
    producer.publish_batch([(k, k) for k in range(3)])
    assert drain_one(consumer) == 0
    consumer.pass_over()  # record 1
    assert consumer.sequence == 2
    assert committed(ring) == 0  # nothing committed yet
    assert drain(consumer) == [2]
    consumer.commit()
    assert committed(ring) == 3
    with pytest.raises(RingError, match="no record 3 to pass over"):
        consumer.pass_over()


def drain_one(consumer: Any) -> int:
    item = consumer.poll()
    assert item is not None
    return int(item[0])


def committed(ring: Ring[Any]) -> int:
    (info,) = ring.info().consumers
    return info.sequence
