"""Shared by the watched-FIFO review tests (``test_review21_fifo_wake*.py``)."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from shm import StructCodec
from shm import header as h
from shm.consumer import Consumer

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


async def nap_ended(nap: asyncio.Future[None], within_s: float = NAP_END_S) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(nap), within_s)
    except TimeoutError:
        return False
    return True


def fifo_fds(path: str) -> list[int]:
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


def fd_count() -> int:
    gc.collect()  # an earlier test's garbage (a socket in a cycle) closes now, not mid-count
    return len(os.listdir("/proc/self/fd"))


def parked_word(consumer: Consumer[Any]) -> int:
    return consumer.ring.words[h.consumer_word(consumer.index, h.C_PARKED)]


def run(make: Callable[[], Coroutine[Any, Any, Any]], uv: bool = False) -> Any:
    if uv:
        return uvloop.run(make())
    return asyncio.run(make())
