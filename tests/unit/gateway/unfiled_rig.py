"""The rig of the tests of what the writer has not filed yet (``test_review8_rest_bugs.py``,
``test_review8_all_orders.py``): real HTTP in front of real rings (``rest_rig.py``), the
database tests' private PostgreSQL behind the gateway's history, and the database writer run
by hand: ``file_all`` files the journal up to its end, so what happens after it is unfiled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from config.schema import DatabaseConfig
from procs.gateway.rest_client import RestClient
from tests.unit.dbwriter.journal_gen import write_all
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import LIMIT, rest_exchange

PRICE = "30000.00"
SELL = {**LIMIT, "side": "SELL"}


@pytest.fixture
def harness(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    """ALICE (601) with dollars, BOB (602) with bitcoin; the history in ``dsn``."""
    yield from rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn))


async def file_all(h: Harness) -> int:
    """The database writer files the journal up to its end; returns its checkpoint."""
    return await asyncio.to_thread(write_all, h.cfg, h.cfg.database.dsn)


@contextlib.asynccontextmanager
async def users(url: str) -> AsyncIterator[tuple[RestClient, RestClient]]:
    """ALICE and BOB logged in."""
    async with RestClient(url) as alice, RestClient(url) as bob:
        await alice.login("ALICE", "alice-pw")
        await bob.login("BOB", "bob-pw")
        yield alice, bob
