"""Fixtures more than one area's tests use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from procs.common.records import RecordCodec
from procs.common.topology import (
    ADMIN_GATEWAY,
    ROUTER,
    gateway_commands,
    gateway_consumer,
    gateway_replies,
)
from shm import Ring


@pytest.fixture
def admin_rings(instance: str) -> Iterator[str]:
    """The two admin rings of a running instance, made by this live process (nobody
    answers on them unless a test does)."""
    codec = RecordCodec()
    made = [
        Ring.create(
            instance, gateway_commands(ADMIN_GATEWAY), codec, capacity=64, consumers=[ROUTER]
        ),
        Ring.create(
            instance,
            gateway_replies(ADMIN_GATEWAY),
            codec,
            capacity=64,
            consumers=[gateway_consumer(ADMIN_GATEWAY)],
        ),
    ]
    yield instance
    for ring in made:
        ring.close()
