"""Hostile review of the watched FIFOs that wake an event loop (82ba7ff): ``RingWaker`` raises
a consumer's parked word to ``WATCHED`` and the producer (a gating commit, a detach) writes a
byte to ``/dev/shm/fifo.<sem>`` instead of posting the semaphore.

The first tests exposed faults, each fixed since (2nd commit after 82ba7ff; each failed
before the fix, for the reason its docstring gives): a second waker over the same consumer
lost its reader when the first closed (the wakers now own ``dup``s of the descriptor, and a
close leaves a flag it did not raise), a consumer closed first left the loop a number the
process could reuse, a detach did not end a watched nap, and a FIFO whose semaphore was gone
was never cleaned up. The rest pin down properties that were checked and hold. Every test
is deterministic: wakers get a long ``park_s`` so that a nap ended within a test was ended by
a post, never by the waker's own look; waits are generous bounds for liveness only, never
timing targets.
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
import uvloop

from procs.common.ring_waker import RingWaker
from shm import Blocking, Ring, StructCodec
from shm import header as h
from shm.consumer import Consumer
from shm.inspect import remove_instance
from shm.ring import ConsumerSpec
from shm.wait import PARKED, WATCHED, FifoPoster, fifo_path

CODEC = StructCodec("2q")
#: Longer than any test: a nap ended within a test was ended by a post, not by the look.
LONG_PARK_S = 30.0
#: Generous bound for what happens in microseconds.
WAIT_S = 5.0
#: How long a nap whose record is published (or whose line is detached) is given to end.
NAP_END_S = 2.0
#: What a test that exposes a missed wake-up gives the nap: still thousands of times the
#: ~30 us a post takes, short enough that the suite's expected failures stay quick.
MISS_S = 0.5
#: Linux's default pipe buffer.
PIPE_BUF_BYTES = 64 * 1024


async def _ended(nap: asyncio.Future[None], within_s: float = NAP_END_S) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(nap), within_s)
    except TimeoutError:
        return False
    return True


def _fifo_fds(path: str) -> list[int]:
    """This process's descriptors open on the FIFO at ``path`` (the live inode's name)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the listing's own descriptor, closed since
            continue
        if target.startswith(path):  # "<path>" or "<path> (deleted)"
            found.append(int(name))
    return found


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _parked_word(consumer: Consumer[Any]) -> int:
    return consumer.ring.words[h.consumer_word(consumer.index, h.C_PARKED)]


def _run(make: Callable[[], Coroutine[Any, Any, Any]], uv: bool = False) -> Any:
    if uv:
        return uvloop.run(make())
    return asyncio.run(make())


# -- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("uv", [False, True], ids=["asyncio", "uvloop"])
def test_replacing_a_waker_over_the_same_consumers_keeps_the_new_one_woken(
    instance: str, uv: bool
) -> None:
    """A process that replaces its waker (a new ``RingWaker`` over the same consumers, then
    ``close`` of the old one: the natural order for a swap) must keep its naps woken by
    records. Both wakers ``add_reader`` the same descriptor, ``Consumer.watch_fd``: the old
    one's ``close`` calls ``remove_reader`` on it, which unregisters the new waker's reader.
    The new waker still thinks it watches (its ``_loop`` is set, so ``arm`` does not add it
    again): a publish writes the FIFO and nobody reads it."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    producer = ring.producer()
    old = RingWaker([consumer], park_s=LONG_PARK_S)
    new = RingWaker([consumer], park_s=LONG_PARK_S)

    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        first: asyncio.Future[None] = loop.create_future()
        old.arm(first)  # the old waker watches
        old.disarm()
        nap: asyncio.Future[None] = loop.create_future()
        new.arm(nap)  # the new one watches the same descriptor
        old.close()  # the swap: the old one goes
        producer.publish((1, 1))
        ended = await _ended(nap, MISS_S)
        new.disarm()
        return ended

    try:
        assert _run(scenario, uv=uv), (
            "the new waker's nap missed its record: its reader was removed"
        )
    finally:
        new.close()
        old.close()
        producer.close()
        consumer.close()
        ring.close()


def test_a_consumer_closed_before_its_waker_does_not_blind_the_loop_to_a_reused_fd(
    instance: str,
) -> None:
    """The old thread design explicitly survived a consumer closed before its waker (a
    test's crash; ``test_close_after_a_consumer_was_closed...`` still closes in that order).
    Now the consumer's ``close`` closes the FIFO descriptor while the loop's selector still
    maps that number to the waker's reader. The kernel drops the closed file from epoll, the
    selector does not: when the number is reused (a client socket, another ring's FIFO) and
    the loop is asked to watch it, ``add_reader`` sees a key with the same events, only
    swaps its callback and never tells epoll. Forced here with ``dup2`` onto that number.
    asyncio's selector loop only (the tests' loop); uvloop, the gateway's and the feed's,
    was checked and copes."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    waker = RingWaker([consumer], park_s=LONG_PARK_S)
    fd = consumer.watch_fd()
    r, w = os.pipe()

    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        waker.arm(loop.create_future())
        waker.disarm()
        consumer.close()  # before the waker: fd's number is free, its selector key is not
        os.dup2(r, fd)  # the next open of that number (a socket accepted, say)
        got = asyncio.Event()
        loop.add_reader(fd, got.set)
        try:
            os.write(w, b"x")
            try:
                await asyncio.wait_for(got.wait(), MISS_S)
            except TimeoutError:
                return False
            return True
        finally:
            loop.remove_reader(fd)

    try:
        assert _run(scenario), "a readable descriptor the loop was asked to watch never fired"
    finally:
        waker.close()
        os.close(fd)  # the dup2'd pipe end (the consumer's descriptor was closed)
        os.close(r)
        os.close(w)
        ring.close()


def test_a_detach_ends_the_watched_consumers_nap(instance: str) -> None:
    """``Ring.detach_consumer`` posts the detached line ("wake it if parked or watched"): a
    consumer parked in ``Consumer.wait`` wakes, re-checks and raises
    ``ConsumerDetachedError`` at once. A watched one's loop reads the byte, finds no record,
    raises its flags again and goes on napping: up to ``PARKED_NAP_S`` (1 s) in the gateway,
    to the next clock tick in the feed, before its pump finds out."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    waker = RingWaker([consumer], park_s=LONG_PARK_S)

    async def scenario() -> bool:
        nap: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waker.arm(nap)
        ring.detach_consumer(consumer.index)  # the supervisor's, say
        ended = await _ended(nap, MISS_S)
        waker.disarm()
        return ended

    try:
        assert _run(scenario), "the detach's wake-up did not end the watched nap"
    finally:
        waker.close()
        consumer.close()
        ring.close()


def test_a_fifo_whose_semaphore_is_gone_is_removed_with_its_instance(instance: str) -> None:
    """``remove`` unlinks each semaphore, then the FIFO beside it. A clean-up killed between
    the two (or a semaphore removed by other means) leaves a FIFO that no later
    ``remove_instance`` can see: ``list_segments`` builds its list from segment files and
    ``sem.`` entries only."""
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    sem = ring.consumer_sem_name(consumer.index)
    path = fifo_path(sem)
    consumer.watch_fd()
    consumer.close()
    ring.close()
    try:
        assert os.path.exists(path)
        posix_ipc.unlink_semaphore(sem)  # what an interrupted remove() did first
        remove_instance(instance)  # the next clean-up
        assert not os.path.exists(path), f"{path} was left behind by remove_instance"
    finally:
        if os.path.exists(path):
            os.unlink(path)


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
        mine = _fifo_fds(path)
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
            ended = await _ended(future)
            waker.disarm()
            return ended

        try:
            assert _run(nap, uv=i % 2 == 1)
            assert len(consumer.read()) == 1
        finally:
            waker.close()
            consumer.close()

    try:
        cycle(0)  # the first of each loop kind opens what stays open (the producer's end,
        cycle(1)  # caches, uvloop's own)
        before = _fd_count()
        for i in range(2, 42):
            cycle(i)
        assert _fd_count() == before
        assert len(_fifo_fds(path)) <= 1  # the producer's end, no stale ones
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
    assert _parked_word(consumer) == 0  # the dead process's WATCHED lowered
    assert len(consumer.read()) == 1

    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        nap: asyncio.Future[None] = loop.create_future()
        waker.arm(nap)
        early = await _ended(nap, 0.05)  # a stale byte must not end it: nothing to read
        producer.publish((2, 2))  # EPIPE on the dead reader's pipe, or the live FIFO
        ended = await _ended(nap)
        waker.disarm()
        return early, ended

    try:
        early, ended = _run(scenario, uv=True)
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
            ended = await _ended(future)
            waker.disarm()
            assert len(consumer.read()) == 1
            return ended

        return nap

    try:
        assert [_run(make(i), uv=uv) for i, uv in enumerate([False, True, True, False])] == [
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
        assert _parked_word(consumer) == WATCHED
        waker.close()
        assert _parked_word(consumer) == 0 and not waker.armed
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
        assert await _ended(again)
        successor.disarm()
        successor.close()

    try:
        _run(scenario, uv=uv)
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
        early = await _ended(nap, 0.05)  # 64 KiB of stale wake-ups, no record
        producer.publish((9, 9))
        ended = await _ended(nap)
        waker.disarm()
        return early, ended

    filler = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        _run(leave_armed)
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
        early, ended = _run(nap_for_a_record, uv=True)
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
            while _parked_word(consumer) != PARKED and time.monotonic() < deadline:
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
        assert _parked_word(consumer) == 0
        assert [r[0] for r in consumer.read()] == [value]
        with pytest.raises(BlockingIOError):
            os.read(fd, 1)  # parked: the FIFO was not written

    async def watched_nap(value: int) -> None:
        nap: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waker.arm(nap)
        assert _parked_word(consumer) == WATCHED
        producer.publish((value, value))
        assert await _ended(nap)
        waker.disarm()
        assert _parked_word(consumer) == 0
        assert sem.value == 0  # watched: the semaphore was not posted
        assert [r[0] for r in consumer.read()] == [value]

    try:
        parked_wait(1)
        _run(lambda: watched_nap(2))
        parked_wait(3)
        _run(lambda: watched_nap(4), uv=True)
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
        ended = await _ended(nap)
        waker.disarm()
        return ended

    try:
        assert _run(scenario, uv=True)
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
    before = _fd_count()
    poster.release()  # missing: ENOENT
    os.mkfifo(path, 0o600)
    poster.release()  # no reader: ENXIO
    assert _fd_count() == before
    reader = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        poster.release()
        assert os.read(reader, 16) == b"\0"
    finally:
        poster.close()
        os.close(reader)
    assert _fd_count() == before
