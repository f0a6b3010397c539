"""Sync replication as an operator runs it: a primary (with a FIX gateway) and its standby
under `ringex run`. An order whose execution report came back is on the standby's journal at
that moment; with the standby stopped and ``sync_timeout_ms = 0`` a new order is journaled
but not acknowledged until the standby is back; with a small timeout the primary goes on
without it, says so (router log, ``replication.json``), and returns to sync once it is back."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from procs.common.journal import JournalReader
from procs.common.record_codec import RecordCodec
from procs.common.records import NewOrder
from procs.common.topology import journal_dir
from shm.inspect import remove_instance
from tests.e2e.test_standby import ringex, wait_running
from tests.free_ports import free_port
from tests.unit.gateway.harness import Client, close_all

ROOT = Path(__file__).parents[2]
CODEC = RecordCodec()


def write_profile(
    path: Path,
    instance: str,
    var: Path,
    extra: str,
    marketdata: str = "enabled = false",
    database: str = "enabled = false",
) -> Path:
    path.write_text(
        f'instance = "{instance}"\nvar_dir = "{var}"\n'
        f"[ring]\ncapacity = 4096\n[marketdata]\n{marketdata}\n[database]\n{database}\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.005\n[risk]\nfee_account = 1\n' + extra
    )
    return path


class Pair:
    """A primary (sync replication, a FIX gateway) and a standby; each can be (re)started."""

    def __init__(self, instance: str, tmp_path: Path) -> None:
        self.port, self.fix_port = free_port(), free_port()
        self.instance, self.tmp = instance, tmp_path
        self.primary = tmp_path / "primary.toml"
        self.standby = write_profile(
            tmp_path / "standby.toml", instance + "s", tmp_path / "s",
            f'[replication]\nprimary = "127.0.0.1:{self.port}"\n',
        )  # fmt: skip
        self.procs: dict[Path, subprocess.Popen[bytes]] = {}

    def configure_primary(self, timeout_ms: int) -> None:
        write_profile(
            self.primary, self.instance + "p", self.tmp / "p",
            f'[replication]\nlisten_port = {self.port}\nmode = "sync"\n'
            f"sync_timeout_ms = {timeout_ms}\n"
            f'[[gateways]]\nname = "gw1"\nid = 1\nport = {self.fix_port}\n',
        )  # fmt: skip

    def start(self, path: Path) -> None:
        self.procs[path] = subprocess.Popen(
            [sys.executable, "-m", "procs.cli", "run", "--config", str(path)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_running(path)

    def stop(self, path: Path) -> None:
        proc = self.procs.pop(path)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)

    def close(self) -> None:
        for path in list(self.procs):
            self.stop(path)
        for suffix in "ps":
            remove_instance(self.instance + suffix)

    def journal(self, path: Path) -> list[tuple[int, object]]:
        cfg = load_profile(str(path))
        reader = JournalReader(
            journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
        )
        return [(seq, CODEC.decode_slot(image)) for seq, image in reader.entries(1)]

    def replication(self) -> dict[str, Any]:
        cfg = load_profile(str(self.primary))
        path = Path(cfg.var_dir) / cfg.instance / "run" / "replication.json"
        doc: dict[str, Any] = json.loads(path.read_text())
        return doc

    def router_log(self) -> str:
        cfg = load_profile(str(self.primary))
        return (Path(cfg.var_dir) / cfg.instance / "run" / "router.log").read_text()


@pytest.fixture
def pair(instance: str, tmp_path: Path) -> Iterator[Pair]:
    made = Pair(instance, tmp_path)
    try:
        yield made
    finally:
        made.close()


async def until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def test_an_acknowledged_order_is_on_the_standby(pair: Pair) -> None:
    pair.configure_primary(timeout_ms=0)
    pair.start(pair.primary)
    pair.start(pair.standby)
    added = ringex("admin", "add-user", "--username", "MM", "--password", "pw",
                   "--deposit", "USD=100000", "--deposit", "BTC=10",
                   "--config", str(pair.primary))  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr

    async def place(client: Client, ref: str, wait_s: float) -> bool:
        """Send a one-lot sell; True if its New report came within ``wait_s``."""
        await client.send(
            "D", (11, ref), (55, "BTC-USD"), (54, "2"), (60, b"20260101-00:00:00.000"),
            (38, "1"), (40, "2"), (44, "100.00"), (59, "1"),
        )  # fmt: skip
        return await report(client, ref, wait_s)

    async def report(client: Client, ref: str, wait_s: float) -> bool:
        msg = await client.recv(wait_s)
        while msg is not None and msg.get(35) == b"0":  # heartbeats
            msg = await client.recv(wait_s)
        if msg is None:
            return False
        assert msg.get(35) == b"8" and msg.get(11) == ref.encode() and msg.get(150) == b"0"
        return True

    def orders_on(path: Path) -> list[int]:
        return [seq for seq, r in pair.journal(path) if isinstance(r, NewOrder)]

    async def scenario() -> None:
        client = Client("MM")
        await client.connect(pair.fix_port)
        await client.logon("pw")
        assert await place(client, "o1", 10)
        # acknowledged: on the standby's journal now, same seq, same image as the primary's
        on_standby, on_primary = orders_on(pair.standby), orders_on(pair.primary)
        assert on_standby == on_primary and len(on_primary) == 1
        assert pair.journal(pair.standby)[-1] == pair.journal(pair.primary)[-1]

        pair.stop(pair.standby)  # timeout 0: no acknowledgement while it is away
        assert not await place(client, "o2", 1.5)
        assert len(orders_on(pair.primary)) == 2  # journaled, waiting for the standby
        assert pair.replication()["standbys_connected"] == 0
        pair.start(pair.standby)
        assert await report(client, "o2", 20)  # it came back: the order goes on
        assert len(orders_on(pair.standby)) == 2
        assert not pair.replication()["degraded"]
        await close_all()

        pair.stop(pair.primary)  # again with a 300 ms timeout: degrades, then resumes
        pair.configure_primary(timeout_ms=300)
        restarted = time.time_ns()
        pair.start(pair.primary)
        await until(  # sync from the first order: the standby has reconnected
            lambda: (
                (doc := pair.replication())["standbys_connected"] == 1
                and doc["updated_ns"] > restarted
            ),
            "the standby did not reconnect",
        )
        client = Client("MM")
        await client.connect(pair.fix_port)
        await client.logon("pw", reset=True)
        assert await place(client, "o3", 10)
        pair.stop(pair.standby)
        started = time.monotonic()
        assert await place(client, "o4", 10)
        assert 0.25 < time.monotonic() - started < 5  # waited the timeout, then went on
        started = time.monotonic()
        assert await place(client, "o5", 10)  # degraded: no wait per order
        assert time.monotonic() - started < 0.25
        assert "SYNC REPLICATION SUSPENDED" in pair.router_log()
        await until(lambda: pair.replication()["degraded"] is True, "degraded not reported")
        assert pair.replication()["degraded_total"] == 1
        pair.start(pair.standby)
        await until(lambda: pair.replication()["degraded"] is False, "sync not resumed")
        assert "sync replication resumed" in pair.router_log()
        assert orders_on(pair.standby) == orders_on(pair.primary)
        assert len(orders_on(pair.primary)) == 5
        await close_all()

    asyncio.run(scenario())
