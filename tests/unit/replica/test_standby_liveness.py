"""The primary tells a dead standby from an idle one without TCP's minutes, keeps a live
idle one, and stops at once however stuck a standby is. Real source, real TCP; the dead
and the stuck standbys are raw sockets that say Hello, then nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from procs.common.replication_ack import CONNECTED
from procs.replica import source as source_module
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby
from procs.replica.wire import GENESIS, HEARTBEAT_S, Hello, receive, send
from tests.unit.replica.test_review_replica_bugs import append, pair, until


def test_a_silent_standby_is_dropped_and_a_live_idle_one_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_module, "STANDBY_SILENCE_S", 4 * HEARTBEAT_S)
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)
    host, port = "127.0.0.1", primary.replication.listen_port

    async def scenario() -> tuple[float, int]:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        standby = Standby(secondary)
        following: asyncio.Task[None] | None = None
        try:
            await asyncio.sleep(0.05)  # listening
            following = asyncio.create_task(standby.run())  # a live one, idle once caught up
            await until(lambda: standby.next_seq == 4 and source.block.words[CONNECTED] == 1)
            reader, writer = await asyncio.open_connection(host, port)
            await send(writer, Hello(1, GENESIS))  # a host that dies right after its Hello
            await until(lambda: source.block.words[CONNECTED] == 2)
            began = time.monotonic()
            await until(lambda: source.block.words[CONNECTED] == 1, timeout=10.0)
            dropped_after = time.monotonic() - began
            await asyncio.sleep(6 * HEARTBEAT_S)  # the live one, idle all along, stays
            kept = source.block.words[CONNECTED]
            writer.close()
            del reader
            return dropped_after, kept
        finally:
            if following is not None:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
            standby.journal.close()
            source.stopping.set()
            await serving
            source.close()

    dropped_after, kept = asyncio.run(scenario())
    assert dropped_after < 4 * HEARTBEAT_S + 2.0
    assert kept == 1


def test_stopping_does_not_wait_on_a_standby_that_stopped_reading(tmp_path: Path) -> None:
    primary, _ = pair(tmp_path)
    append(primary, 1, 60_000)  # megabytes: more than the socket buffers hold
    host, port = "127.0.0.1", primary.replication.listen_port

    async def scenario() -> float:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection(host, port)
        await send(writer, Hello(1, GENESIS))
        await receive(reader)  # the EpochHistory, then it reads no more
        await until(lambda: source.block.words[CONNECTED] == 1)
        await asyncio.sleep(0.3)  # its send buffer fills
        began = time.monotonic()
        source.stopping.set()
        await serving
        took = time.monotonic() - began
        source.close()
        writer.close()
        return took

    assert asyncio.run(scenario()) < 1.0
