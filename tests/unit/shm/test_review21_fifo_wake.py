"""Hostile review of the watched FIFOs that wake an event loop (82ba7ff), part one: the
faults found. ``RingWaker`` raises a consumer's parked word to ``WATCHED`` and the producer
(a gating commit, a detach) writes a byte to ``/dev/shm/fifo.<sem>`` instead of posting the
semaphore.

Each test failed before its fix (792e0f4), for the reason its docstring gives: a second
waker over the same consumer lost its reader when the first closed (the wakers now own
``dup``s of the descriptor, and a close leaves a flag it did not raise); a consumer closed
first left the loop a number the process could reuse; a detach did not end a watched nap;
a FIFO whose semaphore was gone was never cleaned up. The properties that hold are in
``test_review21_fifo_wake_properties.py``. Every test is deterministic: wakers get a long
``park_s`` so that a nap ended within a test was ended by a post, never by the waker's own
look; waits are generous bounds for liveness only, never timing targets.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import posix_ipc
import pytest

from procs.common.ring_waker import RingWaker
from shm import Ring
from shm.inspect import remove_instance
from shm.wait import fifo_path
from tests.unit.shm.fifo_rig import (
    CODEC,
    LONG_PARK_S,
    MISS_S,
    nap_ended,
    run,
)

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
        ended = await nap_ended(nap, MISS_S)
        new.disarm()
        return ended

    try:
        assert run(scenario, uv=uv), "the new waker's nap missed its record: its reader was removed"
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
        assert run(scenario), "a readable descriptor the loop was asked to watch never fired"
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
        ended = await nap_ended(nap, MISS_S)
        waker.disarm()
        return ended

    try:
        assert run(scenario), "the detach's wake-up did not end the watched nap"
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
