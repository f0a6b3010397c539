"""The committer thread alone: order, at most two batches ahead, errors handed back."""

from __future__ import annotations

import threading
import time

import pytest

from procs.dbwriter.committer import Committer
from procs.dbwriter.projection import Batch


def batch(first: int, last: int) -> Batch:
    b = Batch(first_seq=first)
    b.last_seq = last
    return b


def test_batches_are_written_in_order_and_drain_waits_for_all() -> None:
    written: list[int] = []

    def write(b: Batch) -> None:
        time.sleep(0.002)
        written.append(b.last_seq)

    c = Committer(write)
    for k in range(1, 21):
        c.submit(batch(k, k))
    c.drain()
    assert written == list(range(1, 21))
    c.close()


def test_submit_blocks_while_one_waits_and_one_is_in_flight() -> None:
    release = threading.Event()
    started = threading.Event()

    def write(b: Batch) -> None:
        started.set()
        release.wait(5)

    c = Committer(write)
    c.submit(batch(1, 1))  # in flight
    assert started.wait(5)
    c.submit(batch(2, 2))  # waits
    third = threading.Thread(target=c.submit, args=(batch(3, 3),))
    third.start()
    third.join(0.1)
    assert third.is_alive()  # a third would be too far ahead of the checkpoint
    release.set()
    third.join(5)
    assert not third.is_alive()
    c.drain()
    c.close()


def test_an_error_in_the_thread_is_raised_in_the_writers() -> None:
    def write(b: Batch) -> None:
        if b.last_seq == 2:
            raise RuntimeError(f"checkpoint mismatch at {b.last_seq}")

    c = Committer(write)
    c.submit(batch(1, 1))
    c.submit(batch(2, 2))
    with pytest.raises(RuntimeError, match="mismatch at 2"):
        c.drain()
    with pytest.raises(RuntimeError):  # sticky: a stopped committer is replaced
        c.submit(batch(3, 3))
    c.close()
