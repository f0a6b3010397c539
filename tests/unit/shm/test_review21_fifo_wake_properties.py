"""Hostile review of the watched FIFOs that wake an event loop (82ba7ff), part two: the
properties that were checked and hold (part one, ``test_review21_fifo_wake.py``, has the
faults found). Every test is deterministic: wakers get a long ``park_s`` so that a nap ended
within a test was ended by a post, never by the waker's own look; waits are generous bounds
for liveness only, never timing targets.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import posix_ipc
import pytest

from procs.common.ring_waker import RingWaker
from shm import Blocking, Ring
from shm import header as h
from shm.ring import ConsumerSpec
from shm.wait import PARKED, WATCHED, FifoPoster, fifo_path
from tests.unit.shm.fifo_rig import (
    CODEC,
    LONG_PARK_S,
    PIPE_BUF_BYTES,
    WAIT_S,
    fd_count,
    fifo_fds,
    nap_ended,
    parked_word,
    run,
)

# -- properties that hold -----------------------------------------------------------------


def test_watch_and_post_descriptors_are_not_inherited_by_child_processes(instance: str) -> None:
    """Both ends are opened ``O_CLOEXEC``: a child the process starts (the supervisor's
    ``Popen``, even with ``close_fds=False``) holds no end of a FIFO, so it can neither keep
    a dead watcher's FIFO "read" (the producer's EPIPE is what makes it reopen) nor keep
    a write end alive."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    path = fifo_path(ring.consumer_sem_name(consumer.index))
    try:
        watch = consumer.watch_fd()
        consumer.raise_park_flag(WATCHED)
        producer.publish((1, 1))  # opens the producer's end
        mine = fifo_fds(path)
        assert watch in mine and len(mine) == 2
        assert not any(os.get_inheritable(fd) for fd in mine)
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os,sys; p=sys.argv[1]; "
                "print(sum(1 for f in os.listdir('/proc/self/fd') "
                "if os.path.realpath('/proc/self/fd/'+f).startswith(p)))",
                path,
            ],
            close_fds=False,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert child.stdout.strip() == "0"
    finally:
        producer.close()
        consumer.close()
        ring.unlink()
        ring.close()


def test_many_waker_and_consumer_cycles_leak_no_descriptor(instance: str) -> None:
    """A consumer restarted over and over in one process, each time with a new waker and a
    new loop (``asyncio.run``) that naps until a record: the process's descriptor count
    does not grow, and the producer holds one end of the FIFO at most (its ``EPIPE``
    reopen closes the old one)."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=1024, consumers=["c"])
    producer = ring.producer()
    path = fifo_path(ring.consumer_sem_name(0))

    def cycle(i: int) -> None:
        consumer = ring.consumer("c")
        waker = RingWaker([consumer], park_s=LONG_PARK_S)

        async def nap() -> bool:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waker.arm(future)
            producer.publish((i, i))
            ended = await nap_ended(future)
            waker.disarm()
            return ended

        try:
            assert run(nap, uv=i % 2 == 1)
            assert len(consumer.read()) == 1
        finally:
            waker.close()
            consumer.close()

    try:
        cycle(0)  # the first of each loop kind opens what stays open (the producer's end,
        cycle(1)  # caches, uvloop's own)
        before = fd_count()
        for i in range(2, 42):
            cycle(i)
        assert fd_count() == before
        assert len(fifo_fds(path)) <= 1  # the producer's end, no stale ones
    finally:
        producer.close()
        ring.unlink()
        ring.close()


def _watch_and_die(instance: str, ready: Any) -> None:
    ring = Ring.attach(instance, "r", CODEC)
    consumer = ring.consumer("c")
    consumer.watch_fd()
    consumer.raise_park_flag(WATCHED)
    ready.put(True)
    ready.get(timeout=30)  # until the producer has written the FIFO
    os._exit(0)  # a crash: the flag stays WATCHED, the FIFO's read end goes


def test_a_restarted_watcher_is_woken_after_its_predecessor_died_watched(instance: str) -> None:
    """A watching process dies with its flag up and the producer's end of the FIFO open on
    it. The producer's next write finds no reader (``EPIPE``) and reopens the FIFO; the
    restarted consumer's waker lowers the dead process's flag, reads the stale byte
    without ending its nap, and is woken by the next record, on the same FIFO."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    producer = ring.producer()
    ctx = mp.get_context("fork")
    ready = ctx.Queue()
    child = ctx.Process(target=_watch_and_die, args=(instance, ready))
    child.start()
    assert ready.get(timeout=30)
    producer.publish((1, 1))  # written to the child's FIFO: the producer keeps its end
    ready.put(True)
    child.join(30)
    assert child.exitcode == 0
    assert ring.words[h.consumer_word(0, h.C_PARKED)] == WATCHED  # left up by the dead
    consumer = ring.consumer("c")  # its holder is dead
    waker = RingWaker([consumer], park_s=LONG_PARK_S)
    assert parked_word(consumer) == 0  # the dead process's WATCHED lowered
    assert len(consumer.read()) == 1

    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        nap: asyncio.Future[None] = loop.create_future()
        waker.arm(nap)
        early = await nap_ended(nap, 0.05)  # a stale byte must not end it: nothing to read
        producer.publish((2, 2))  # EPIPE on the dead reader's pipe, or the live FIFO
        ended = await nap_ended(nap)
        waker.disarm()
        return early, ended

    try:
        early, ended = run(scenario, uv=True)
        assert not early
        assert ended
    finally:
        waker.close()
        consumer.close()
        producer.close()
        ring.unlink()
        ring.close()


def test_a_waker_moves_between_loops_of_either_kind(instance: str) -> None:
    """``asyncio.run`` then ``uvloop.run`` then ``asyncio.run`` again, one waker throughout
    (a test's loops; a closed loop's readers and look timer are simply dropped): each loop's
    nap is ended by its own record, and no loop is left watching."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    waker = RingWaker([consumer], park_s=LONG_PARK_S)

    def make(i: int) -> Callable[[], Coroutine[Any, Any, bool]]:
        async def nap() -> bool:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waker.arm(future)
            producer.publish((i, i))
            ended = await nap_ended(future)
            waker.disarm()
            assert len(consumer.read()) == 1
            return ended

        return nap

    try:
        assert [run(make(i), uv=uv) for i, uv in enumerate([False, True, True, False])] == [
            True
        ] * 4
        assert waker.wakeups == 4
    finally:
        waker.close()
        assert waker._loop is None and waker._look_timer is None
        producer.close()
        consumer.close()
        ring.close()


@pytest.mark.parametrize("uv", [False, True], ids=["asyncio", "uvloop"])
def test_closing_a_waker_while_armed_lowers_the_flag_and_stops_watching(
    instance: str, uv: bool
) -> None:
    """``close`` in the middle of a nap (a shutdown that does not wait for it): the flag is
    lowered, so publishes stop writing the FIFO; the loop no longer watches the descriptor
    and the look timer is cancelled; a new waker over the same consumer watches anew and is
    woken."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    waker = RingWaker([consumer], park_s=LONG_PARK_S)
    fd = consumer.watch_fd()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        nap: asyncio.Future[None] = loop.create_future()
        waker.arm(nap)
        assert parked_word(consumer) == WATCHED
        waker.close()
        assert parked_word(consumer) == 0 and not waker.armed
        assert waker._loop is None and waker._look_timer is None
        assert not loop.remove_reader(fd)  # nothing left registered on it
        producer.publish((1, 1))
        with pytest.raises(BlockingIOError):
            os.read(fd, 1)  # flag down: nothing was written
        assert not nap.done()  # nobody settles it now: its owner's timer does
        consumer.read()
        again: asyncio.Future[None] = loop.create_future()
        successor = RingWaker([consumer], park_s=LONG_PARK_S)
        successor.arm(again)
        producer.publish((2, 2))
        assert await nap_ended(again)
        successor.disarm()
        successor.close()

    try:
        run(scenario, uv=uv)
    finally:
        waker.close()
        producer.close()
        consumer.close()
        ring.close()


def test_a_full_fifo_never_blocks_the_producer_and_the_next_nap_still_wakes(
    instance: str,
) -> None:
    """Nobody drains the FIFO (a waker whose loop is gone, its flag left up, while other
    consumers keep raising the shared ``P_WAKE``): the pipe fills. A post into a full FIFO
    returns at once (``EAGAIN``: the watcher has wake-ups waiting already); the next loop
    drains all of it in one go, finds no record, and its nap is ended by the next one."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c", "d"])
    consumer = ring.consumer("c")
    other = ring.consumer("d")
    producer = ring.producer()
    waker = RingWaker([consumer], park_s=LONG_PARK_S)
    path = fifo_path(ring.consumer_sem_name(consumer.index))
    fd = consumer.watch_fd()

    async def leave_armed() -> None:
        waker.arm(asyncio.get_running_loop().create_future())  # never disarmed

    async def nap_for_a_record() -> tuple[bool, bool]:
        nap: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waker.arm(nap)
        early = await nap_ended(nap, 0.05)  # 64 KiB of stale wake-ups, no record
        producer.publish((9, 9))
        ended = await nap_ended(nap)
        waker.disarm()
        return early, ended

    filler = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        run(leave_armed)
        written = 0
        with pytest.raises(BlockingIOError):
            while True:
                written += os.write(filler, b"\0" * 4096)
        assert written >= PIPE_BUF_BYTES // 2
        for i in range(3):  # the other consumer's park raises P_WAKE: each publish posts
            other.raise_park_flag(PARKED)
            started = time.monotonic()
            producer.publish((i, i))
            assert time.monotonic() - started < WAIT_S  # returned, did not block
            other.lower_park_flag()
        other.read()
        consumer.read()
        early, ended = run(nap_for_a_record, uv=True)
        assert not early
        assert ended
        with pytest.raises(BlockingIOError):
            os.read(fd, 1)  # drained
    finally:
        os.close(filler)
        waker.close()
        producer.close()
        other.close()
        consumer.close()
        ring.close()


def test_a_consumer_that_both_parks_and_is_watched_is_woken_through_the_right_channel(
    instance: str,
) -> None:
    """One consumer used both ways in turn: ``Consumer.wait`` (``Blocking``, parked on the
    semaphore) and a ``RingWaker`` nap (watched, the FIFO). Each wake-up comes through the
    channel its flag named (one producer cache holds both), neither leaves the other's
    flag value behind, and neither channel gets a stray post meant for the other."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=64, consumers=["c"])
    consumer = ring.consumer("c", Blocking(spins=0, park_timeout_s=LONG_PARK_S))
    producer = ring.producer()
    waker = RingWaker([consumer], park_s=LONG_PARK_S)
    fd = consumer.watch_fd()
    sem = posix_ipc.Semaphore(ring.consumer_sem_name(consumer.index))

    def publish_once_parked(value: int) -> threading.Thread:
        def run() -> None:
            deadline = time.monotonic() + WAIT_S
            while parked_word(consumer) != PARKED and time.monotonic() < deadline:
                time.sleep(0.0005)
            producer.publish((value, value))

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def parked_wait(value: int) -> None:
        thread = publish_once_parked(value)
        started = time.monotonic()
        assert consumer.wait(timeout_s=WAIT_S)
        assert time.monotonic() - started < WAIT_S / 2  # the post, not a timeout
        thread.join(WAIT_S)
        assert parked_word(consumer) == 0
        assert [r[0] for r in consumer.read()] == [value]
        with pytest.raises(BlockingIOError):
            os.read(fd, 1)  # parked: the FIFO was not written

    async def watched_nap(value: int) -> None:
        nap: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waker.arm(nap)
        assert parked_word(consumer) == WATCHED
        producer.publish((value, value))
        assert await nap_ended(nap)
        waker.disarm()
        assert parked_word(consumer) == 0
        assert sem.value == 0  # watched: the semaphore was not posted
        assert [r[0] for r in consumer.read()] == [value]

    try:
        parked_wait(1)
        run(lambda: watched_nap(2))
        parked_wait(3)
        run(lambda: watched_nap(4), uv=True)
        assert waker.wakeups == 2
    finally:
        sem.close()
        waker.close()
        producer.close()
        consumer.close()
        ring.close()


def test_a_gated_watched_nap_ends_when_its_gate_is_detached(instance: str) -> None:
    """``b`` is gated on ``a`` and watched; a record waits behind ``a``. Detaching ``a``
    (its process died) opens ``b``'s gate: ``detach_consumer`` writes ``b``'s FIFO, and
    ``b``'s nap ends on the record it can now read."""
    specs: list[ConsumerSpec | str] = ["a", ConsumerSpec("b", gates=("a",))]
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=specs)
    gate = ring.consumer("a")
    gated = ring.consumer("b")
    producer = ring.producer()
    waker = RingWaker([gated], park_s=LONG_PARK_S)

    async def scenario() -> bool:
        nap: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waker.arm(nap)
        producer.publish((1, 1))
        await asyncio.sleep(0.01)  # the publish's post is handled: gated, nothing yet
        assert not nap.done()
        ring.detach_consumer(gate.index)
        ended = await nap_ended(nap)
        waker.disarm()
        return ended

    try:
        assert run(scenario, uv=True)
        assert [r[0] for r in gated.read()] == [1]
    finally:
        waker.close()
        producer.close()
        gate.close()
        gated.close()
        ring.close()


def test_a_fifo_poster_on_an_unwatched_or_missing_fifo_is_a_no_op(tmp_path: Any) -> None:
    """The producer posts a watched flag left by a dead process: no FIFO (a clean-up
    removed it) or a FIFO with no reader. Each post returns at once and keeps no
    descriptor; once a watcher opens the FIFO, the same poster reaches it."""
    path = str(tmp_path / "fifo.x")
    poster = FifoPoster(path)
    before = fd_count()
    poster.release()  # missing: ENOENT
    os.mkfifo(path, 0o600)
    poster.release()  # no reader: ENXIO
    assert fd_count() == before
    reader = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        poster.release()
        assert os.read(reader, 16) == b"\0"
    finally:
        poster.close()
        os.close(reader)
    assert fd_count() == before
