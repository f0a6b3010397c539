"""The whole exchange as an operator runs it: `ringex run` (the supervisor and real
processes over shm), `ringex admin add-user`, FIX clients over TCP; a SIGKILLed router and
then matcher are restarted and recover with nothing acknowledged lost (a resting order
survives its matcher's death and fills); the journal replays to the same balances,
conserved, and the database writer's checkpoint reaches the journal's end."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.run_files import read_status
from procs.common.topology import postgres_dir
from procs.core.recovery import recover
from shm.inspect import list_segments
from tests.e2e.running import ringex, running_exchange
from tests.unit.gateway.harness import Client


@pytest.fixture
def exchange(instance: str, tmp_path: Path) -> Iterator[Path]:
    with running_exchange(instance, tmp_path) as profile:
        yield profile


def order(client: Client, ref: str, side: str, qty: str, price: str) -> tuple[str, object]:
    return (
        "D",
        (11, ref),
        (55, "BTC-USD"),
        (54, side),
        (60, b"20260101-00:00:00.000"),
        (38, qty),
        (40, "2"),
        (44, price),
        (59, "1"),
    )  # type: ignore[return-value]


async def place(client: Client, ref: str, side: str, qty: str, price: str) -> None:
    msg_type, *pairs = order(client, ref, side, qty, price)
    await client.send(str(msg_type), *pairs)  # type: ignore[arg-type]


async def reports(client: Client, count: int) -> list[dict[int, bytes]]:
    got: list[dict[int, bytes]] = []
    while len(got) < count:
        msg = await client.expect("8", timeout=10)
        got.append({tag: msg.get(tag) for tag in (11, 39, 150, 14, 151, 31, 32)})
    return got


async def kill_and_wait(cfg: RingexConfig, name: str) -> None:
    """SIGKILL process ``name`` and wait until the supervisor has it back and ready."""
    status = read_status(cfg)
    assert status is not None
    victim = next(p for p in status["processes"] if p["name"] == name)
    os.kill(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        now = next(p for p in (read_status(cfg) or {})["processes"] if p["name"] == name)
        if now["restarts"] == victim["restarts"] + 1 and now["ready"]:
            return
        assert time.monotonic() < deadline, f"{name} not restarted"
        await asyncio.sleep(0.1)


def test_fix_in_reports_out_and_killed_processes_recover(exchange: Path) -> None:
    cfg = load_profile(str(exchange))
    port = cfg.gateways[0].port
    ringex(exchange, "admin", "add-user", "--username", "MM", "--password", "pw",
           "--deposit", "USD=100000", "--deposit", "BTC=10")  # fmt: skip
    ringex(exchange, "admin", "add-user", "--username", "TK", "--password", "pw",
           "--deposit", "USD=100000")  # fmt: skip

    async def trade() -> None:
        maker, taker = Client("MM"), Client("TK")
        await maker.connect(port)
        await taker.connect(port)
        await maker.logon("pw")
        await taker.logon("pw")
        await place(maker, "m1", "2", "1.5", "100.00")
        (new,) = await reports(maker, 1)
        assert new[150] == b"0" and new[39] == b"0"
        await place(taker, "t1", "1", "1", "100.00")
        (ack, fill) = await reports(taker, 2)
        assert ack[150] == b"0" and fill[150] == b"F" and fill[39] == b"2"
        assert fill[31] == b"100" or fill[31].startswith(b"100")  # LastPx
        (partial,) = await reports(maker, 1)
        assert partial[39] == b"1" and partial[151] in (b"0.5", b"0.5000")

        await kill_and_wait(cfg, "router")  # the sequencer dies mid-session
        await place(taker, "t2", "1", "0.5", "100.00")  # takes the rest: state survived
        (ack2, fill2) = await reports(taker, 2)
        assert ack2[150] == b"0" and fill2[39] == b"2"
        (done,) = await reports(maker, 1)
        assert done[39] == b"2" and done[14] in (b"1.5", b"1.5000")

        # the matcher dies with an order resting in its book: it comes back with it
        await place(maker, "m2", "2", "1", "101.00")
        assert (await reports(maker, 1))[0][150] == b"0"
        await kill_and_wait(cfg, "matcher-m1")
        await place(taker, "t3", "1", "1", "101.00")
        (ack3, fill3) = await reports(taker, 2)
        assert ack3[150] == b"0" and fill3[39] == b"2"
        (maker_fill,) = await reports(maker, 1)
        assert maker_fill[39] == b"2" and maker_fill[11] == b"m2"
        await maker.aclose()
        await taker.aclose()

    asyncio.run(trade())


def test_the_journal_replays_to_conserved_balances(exchange: Path) -> None:
    cfg = load_profile(str(exchange))
    ringex(exchange, "admin", "add-user", "--username", "A", "--password", "pw",
           "--deposit", "USD=1000", "--deposit", "BTC=2")  # fmt: skip
    out = ringex(exchange, "stop")
    assert "stopped" in out
    assert list_segments(cfg.instance) == []
    state = recover(cfg)
    accounts = state.sequencer.accounts
    assert accounts.totals(1) == 1000 * 10**6 and accounts.totals(2) == 2 * 10**8
    # the database writer, run by the supervisor, wrote the same balances
    pg = EmbeddedPostgres(postgres_dir(cfg))
    with psycopg.connect(pg.start()) as conn:
        seq = conn.execute("SELECT last_seq FROM checkpoint").fetchone()
        assert seq is not None and seq[0] == state.last_seq
