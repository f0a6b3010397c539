"""The source and a standby in one event loop over real TCP: what the router appends reaches
the standby at once (the "appended" bell, not the source's fallback poll), and the
acknowledged seq, the standby count and the status file follow; the gateways' order logs
reach it before the frames whose commands they name."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from config.edges import GatewayConfig
from config.schema import ReplicationConfig, RingexConfig
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import CreateAccount, Record, Transfer
from procs.common.replication_ack import CONNECTED, AckBlock, ack_dir
from procs.common.topology import gateway_root, journal_dir
from procs.replica import source as source_module
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby
from procs.replica.tail import JournalTail
from procs.replica.wire import Entries
from tests.free_ports import free_port

CODEC = RecordCodec()


def commands(first: int, n: int) -> list[Record]:
    out: list[Record] = []
    for seq in range(first, first + n):
        if seq == 1:
            out.append(CreateAccount(1, 5, 0, 0, 1, 7))
        else:
            out.append(Transfer(seq, 6, 0, 0, seq, 7, 1, 100, seq))
    return out


def test_appended_entries_reach_the_standby_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_module, "PARK_S", 30.0)  # only the bell can wake it in time
    port = free_port()
    primary = RingexConfig(
        instance="rp", var_dir=str(tmp_path / "p"),
        replication=ReplicationConfig(listen_port=port, mode="sync"),
    )  # fmt: skip
    secondary = RingexConfig(
        instance="rs", var_dir=str(tmp_path / "s"),
        replication=ReplicationConfig(primary=f"127.0.0.1:{port}"),
    )  # fmt: skip
    journal = JournalWriter(
        journal_dir(primary), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    router = AckBlock(ack_dir(primary.var_dir, primary.instance))  # the router's mapping

    def append(first: int, n: int) -> int:
        batch = commands(first, n)
        journal.append(first, b"".join(map(CODEC.encode_slot, batch)), n)
        router.appended(first + n - 1)
        return first + n - 1

    async def until(condition: object, timeout: float = 10.0) -> float:
        started = time.monotonic()
        while not condition():  # type: ignore[operator]
            assert time.monotonic() - started < timeout, "timed out"
            await asyncio.sleep(0.001)
        return time.monotonic() - started

    async def scenario() -> list[float]:
        append(1, 2)
        source = ReplicationSource(primary)
        assert source.acked == 0  # nothing known acknowledged before a standby says so
        serving = asyncio.create_task(source.run())
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        await until(lambda: router.acked_seq == 2 and router.words[CONNECTED] == 1)
        took = []
        for k in range(5):  # each batch: one round trip, well under the 30 s fallback poll
            last = append(3 + 3 * k, 3)
            took.append(await until(lambda last=last: router.acked_seq == last, 5.0))
        assert standby.next_seq == 18
        assert standby.state.sequencer.accounts.balance(7, 1) == (1600, 0)  # 16 transfers of 100
        status = ack_dir(primary.var_dir, primary.instance) / "replication.json"
        await until(lambda: status.exists() and json.loads(status.read_text())["acked_seq"] == 17)
        doc = json.loads(status.read_text())
        assert doc["mode"] == "sync" and doc["lag"] == 0 and doc["standbys_connected"] == 1
        assert not doc["degraded"]
        standby.stopping.set()
        following.cancel()
        standby.close()
        await until(lambda: router.words[CONNECTED] == 0)
        source.stopping.set()
        await serving
        source.close()
        return took

    took = asyncio.run(scenario())
    assert max(took) < 5.0, took
    journal.close()
    router.close()


def test_order_logs_reach_the_standby_before_the_frame_that_needs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway logs a command before the router journals it. The worst moment for the
    log's bytes is just before the source reads the frame: they must still arrive (and be
    durable) before the standby acknowledges that frame."""
    port = free_port()
    gateways = [GatewayConfig(name="gw1", id=1)]
    primary = RingexConfig(
        instance="rp", var_dir=str(tmp_path / "p"), gateways=gateways,
        replication=ReplicationConfig(listen_port=port),
    )  # fmt: skip
    secondary = RingexConfig(
        instance="rs", var_dir=str(tmp_path / "s"), gateways=gateways,
        replication=ReplicationConfig(primary=f"127.0.0.1:{port}"),
    )  # fmt: skip
    log = gateway_root(primary) / "gw1" / "orders.log"
    copy = gateway_root(secondary) / "gw1" / "orders.log"
    read = JournalTail.read

    def read_after_the_log(tail: JournalTail, seq: int, n: int) -> list[bytes]:
        images = read(tail, seq, n)
        if images and not log.exists():  # logged just now, the frame already journaled
            log.parent.mkdir(parents=True)
            log.write_bytes(b"the order's ClOrdID")
        return images

    monkeypatch.setattr(JournalTail, "read", read_after_the_log)
    acknowledged: list[tuple[int, bytes]] = []
    persist = Standby.persist

    def persist_and_look(standby: Standby, entries: Entries) -> int:
        acknowledged.append((entries.first_seq, copy.read_bytes() if copy.exists() else b""))
        return persist(standby, entries)

    monkeypatch.setattr(Standby, "persist", persist_and_look)
    with JournalWriter(
        journal_dir(primary), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    ) as journal:
        journal.append(1, b"".join(map(CODEC.encode_slot, commands(1, 2))), 2)

    async def scenario() -> None:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        for _ in range(1000):
            if source.acked == 2:
                break
            await asyncio.sleep(0.005)
        standby.stopping.set()
        following.cancel()
        standby.close()
        source.stopping.set()
        await serving
        source.close()

    asyncio.run(scenario())
    assert acknowledged == [(1, b"the order's ClOrdID")]
