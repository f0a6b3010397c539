"""A FIX client after a failover, as the README tells it to do it: log on to the promoted
instance's gateway with ResetSeqNumFlag, and find the orders it placed on the primary by
their ClOrdIDs. The users file and the gateway's order log were shipped with the journal. The
promoted instance's market data (it never ran on the standby) goes on from the standby's hot
market state: the book, and the trade made before the failover."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.topology import gateway_root, postgres_dir
from procs.core.recovery import recover
from tests.e2e.test_standby import failover, primary_and_standby, ringex, wait_running
from tests.e2e.test_standby_sync import write_profile
from tests.free_ports import free_port
from tests.unit.gateway.harness import Client, close_all
from tests.unit.gateway.test_gateway import cancel, order, status_request


@pytest.fixture
def pair(instance: str, tmp_path: Path) -> Iterator[tuple[Path, Path, int, int, int]]:
    port, fix_p, fix_s, md_s = free_port(), free_port(), free_port(), free_port()
    primary = write_profile(
        tmp_path / "primary.toml", instance + "p", tmp_path / "p",
        f'[replication]\nlisten_port = {port}\nmode = "sync"\n'
        f'[[gateways]]\nname = "gw1"\nid = 1\nport = {fix_p}\n',
    )  # fmt: skip
    standby = write_profile(
        tmp_path / "standby.toml", instance + "s", tmp_path / "s",
        f'[replication]\nprimary = "127.0.0.1:{port}"\n'
        f'[[gateways]]\nname = "gw1"\nid = 1\nport = {fix_s}\n',
        marketdata=f"port = {md_s}",  # runs once promoted
        database="enabled = true",  # its own embedded cluster, written once promoted
    )  # fmt: skip
    try:
        with primary_and_standby(instance, primary, standby):
            yield primary, standby, fix_p, fix_s, md_s
    finally:  # the writers' clusters outlive their instances (as root, outside tmp_path)
        for path in (primary, standby):
            EmbeddedPostgres(postgres_dir(load_profile(str(path)))).destroy()


def shipped(primary: Path, standby: Path) -> bool:
    """The standby's copies of the users file and gw1's order log equal the primary's."""
    p, s = (gateway_root(load_profile(str(path))) for path in (primary, standby))
    return all(
        (s / name).exists() and (s / name).read_bytes() == (p / name).read_bytes()
        for name in ("users.json", "gw1/orders.log")
    )


def test_a_fix_client_finds_its_orders_on_the_promoted_instance(
    pair: tuple[Path, Path, int, int, int],
) -> None:
    primary, standby, fix_p, fix_s, md_s = pair
    added = ringex("admin", "add-user", "--username", "MM", "--password", "pw",
                   "--deposit", "USD=100000", "--deposit", "BTC=10",
                   "--config", str(primary))  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    taker = ringex("admin", "add-user", "--username", "TK", "--password", "pw",
                   "--deposit", "USD=100000", "--config", str(primary))  # fmt: skip
    assert taker.returncode == 0, taker.stdout + taker.stderr

    async def before() -> None:
        client = Client("MM")
        await client.connect(fix_p)
        await client.logon("pw")
        await client.send("D", *order("o1", "2", "1.00", "100.00"))
        await client.send("D", *order("o2", "2", "2.00", "101.00"))
        assert [(await client.expect("8")).get(150) for _ in range(2)] == [b"0", b"0"]
        buyer = Client("TK")
        await buyer.connect(fix_p)
        await buyer.logon("pw")
        await buyer.send("D", *order("t1", "1", "0.50", "100.00"))
        assert [(await buyer.expect("8")).get(150) for _ in range(2)] == [b"0", b"F"]
        assert (await client.expect("8")).get(150) == b"F"  # o1 half filled
        await close_all()

    asyncio.run(before())
    deadline = time.monotonic() + 20
    while not shipped(primary, standby):
        assert time.monotonic() < deadline, "the gateway's state files did not reach the standby"
        time.sleep(0.05)
    promote = failover("promote", primary, standby)
    assert promote.returncode == 0, promote.stdout + promote.stderr
    assert "its processes are prestarted" in promote.stdout, promote.stdout  # the held spares
    wait_running(standby.with_suffix(".promoted.toml"))
    # its market data starts from the standby's hot state: the book, and the trade before
    url = f"http://127.0.0.1:{md_s}/api"
    with urllib.request.urlopen(f"{url}/depth?symbol=BTC-USD", timeout=10) as answer:
        depth = json.load(answer)
    assert (depth["bids"], depth["asks"]) == ([], [["100.00", "0.5000"], ["101.00", "2.0000"]])
    with urllib.request.urlopen(f"{url}/trades?symbol=BTC-USD", timeout=10) as answer:
        trades = json.load(answer)
    assert [(t["t"], t["p"], t["q"]) for t in trades] == [(1, "100.00", "0.5000")]
    database_matches_the_journal(load_profile(str(standby.with_suffix(".promoted.toml"))))

    async def after() -> None:
        client = Client("MM")
        await client.connect(fix_s)
        await client.logon("pw", reset=True)  # the README's rule after a failover
        await client.send("H", *status_request("o1", "2"))
        status = await client.expect("8")
        assert (status.get(150), status.get(11), status.get(39), status.get(151)) == (
            b"I", b"o1", b"1", b"0.5000",
        )  # fmt: skip
        await client.send("F", *cancel("o2", "c2", "2"))
        done = await client.expect("8")
        assert (done.get(150), done.get(11), done.get(41)) == (b"4", b"c2", b"o2")
        await close_all()

    asyncio.run(after())


def database_matches_the_journal(cfg: RingexConfig) -> None:
    """The promoted instance's writer fills its own database from the journal it received:
    to the journal's end, the trade made on the primary once, balances as its router has them."""
    state = recover(cfg)
    dsn = EmbeddedPostgres(postgres_dir(cfg)).start()
    decimals = {a.id: a.decimals for a in cfg.assets}
    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            try:
                row = conn.execute("SELECT last_seq FROM checkpoint").fetchone()
            except psycopg.errors.UndefinedTable:  # the writer has not made its tables yet
                row = None
            if row is not None and row[0] == state.last_seq:
                break
            assert time.monotonic() < deadline, f"checkpoint {row} never reached {state.last_seq}"
            time.sleep(0.2)
        trades = conn.execute("SELECT symbol_id, trade_id FROM trades").fetchall()
        assert trades == [(1, 1)]
        balances = conn.execute("SELECT account_id, asset_id, free, reserved FROM balances")
        rows = balances.fetchall()
    accounts = state.sequencer.accounts
    assert rows and all(
        accounts.balance(account, asset)
        == (int(free.scaleb(decimals[asset])), int(reserved.scaleb(decimals[asset])))
        for account, asset, free, reserved in rows
    ), rows
