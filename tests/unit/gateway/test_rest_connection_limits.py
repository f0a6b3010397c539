"""The REST port's connection limits: per address and in all, each refusal a 503 naming it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness, settled
from tests.unit.gateway.rest_rig import exchange, request, rest_exchange, run, statuses

PING = request(b"GET /api/v1/ping HTTP/1.1", b"Connection: close")


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def _hold(port: int, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
    return writers


def _refusal(raw: bytes) -> str:
    assert statuses(raw) == [503], raw[:200]
    return str(json.loads(raw.partition(b"\r\n\r\n")[2])["msg"])


def test_past_the_per_address_limit_a_connection_gets_a_503_naming_it(
    harness: Harness,
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        api.rest = msgspec.structs.replace(api.rest, max_connections_per_address=3)
        held = await _hold(api.port, 3)
        try:
            await settled(lambda: len(api.lanes) == 3)
            why = _refusal(await exchange(api.port, PING))
            assert "3 connections from 127.0.0.1" in why and "limit is 3 an address" in why
            held.pop().close()  # one goes: the next is taken
            await settled(lambda: len(api.lanes) == 2)
            assert statuses(await exchange(api.port, PING)) == [200]
        finally:
            for writer in held:
                writer.close()

    run(harness, scenario)


def test_past_the_ports_limit_a_connection_gets_a_503_naming_it(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        api.max_connections = 4
        held = await _hold(api.port, 4)
        try:
            await settled(lambda: len(api.lanes) == 4)
            why = _refusal(await exchange(api.port, PING))
            assert "4 connections open, this port's limit is 4" in why
        finally:
            for writer in held:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    run(harness, scenario)
