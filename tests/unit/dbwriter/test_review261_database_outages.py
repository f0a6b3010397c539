"""Review 261: PostgreSQL going away and coming back while the exchange runs.

Reviewed: ``procs/dbwriter/`` (``writer.py``: ``start``, ``_follow``, ``_write``,
``_retry``, ``_checkpoint_kept``; ``store.py``: ``write``, the lanes, ``open``;
``committer.py``; ``main.py``: the embedded cluster, the ``stats-dbwriter`` page and its
``ready``), ``procs/gateway/history.py`` (the pool, ``_rows``), ``rest.py`` (``db``,
``query_order``), ``rest_history.py`` and ``rest_public.py`` (``klines``),
``procs/supervisor/metrics.py`` (``ringex_dbwriter_lag``), ``procs/supervisor/main.py``
(``_not_ready``), ``procs/common/embedded_postgres.py``, and README's dbwriter row and
``[database]`` section. Rigs: a cluster of this module's own (stopped fast or immediate, its
postmaster SIGKILLed) under the real ``DbWriter`` over ``journal_gen``'s journals,
``unfiled_rig`` (real HTTP, the session's cluster stopped and started), ``running.py``'s
``run_in_foreground`` (a whole instance on an external ``database.dsn``), and the writer's
own ``main`` as a process on the embedded cluster.

Faults (each fixed; its test says what it was):

1. ``procs/gateway/history.py:254`` (``History``'s ``AsyncConnectionPool``, made without a
   ``check``) with ``_rows`` (:279): the pool keeps its idle connections across a restart of
   PostgreSQL and hands the next request one to the server that is gone; that request
   answers 503 "the history database did not answer: terminating connection due to
   administrator command" while the database is up again (as many requests as the pool held
   connections, up to four). Fix: ``AsyncConnectionPool(..., check=AsyncConnectionPool.
   check_connection)`` (psycopg_pool 3.2+; 3.3.3 here), or in ``_rows`` take a second
   connection once where the first fails with ``OperationalError`` before any row came.
2. ``procs/dbwriter/main.py:101-103`` (``run`` starts the embedded cluster once, at the
   process's start) with ``writer.py:398`` (``_retry`` only reconnects): the embedded
   cluster, which only the writer starts, stays down once its postmaster died (the OOM
   killer, a SIGKILL) or was stopped: the writer logs "Connection refused; retrying" for
   ever, the lag grows and every history call is a 503 until an operator restarts the writer
   by hand. Fix: hand ``DbWriter`` a ``revive`` callable that ``_retry`` calls before its
   wait (at most every few seconds); ``main.run`` passes one that, for the embedded cluster,
   calls ``embedded.start()`` when ``not embedded.running()`` (an ``EmbeddedError`` logged,
   not raised).

Found sound (plain tests): a stop fast, immediate or by SIGKILL of the postmaster while the
journal grows, then a start: the writer's checkpoint stays put, its lag is the journal's last
seq less it, and once the server is back the database is a replay of the journal (trades,
orders, balances, candles, accounts, fees: ``reconcile``); a restart (immediate, or the
postmaster killed) inside a batch's transaction, lanes committed and the batch's commit not
yet sent, files it once; during an outage ``myTrades``, ``allOrders`` and ``klines`` answer
503 ``-1001`` naming the history database within the pool's wait (5 s), not a 500, a hang or
an empty list, and answer again once it is back; an external ``database.dsn`` down at the
start: ``ringex run`` reaches running, the writer's log says "PostgreSQL unavailable while
reading the checkpoint ... retrying", the writer SIGKILLed while it is away is restarted once
(no crash loop, the instance running), it catches up once the server is up
(``ringex_dbwriter_lag`` 0), the lag reads 1 during a second outage with one command
journaled, ``ringex stop`` then stops cleanly at once (the log: "stopped while PostgreSQL was
unavailable ... written at the next start") and the next start files the rest.

Leads, not shown as faults: during an outage every history call after the first waits out
the pool's 5 s and says "couldn't get a connection after 5.00 sec", which does not name the
server's answer (connection refused); a restarted writer finds its page's ``ready`` still 1
from the process before (``Counters.open`` keeps the page), so the supervisor counts it ready
at once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config import load_profile
from procs.common.embedded_postgres import (
    PORT,
    SUPERUSER,
    EmbeddedError,
    EmbeddedPostgres,
    find_bin_dir,
)
from procs.common.run_files import read_status, run_dir
from procs.common.topology import postgres_dir
from procs.dbwriter.projection import Batch
from procs.dbwriter.writer import Backoff, DbWriter, WriterOptions
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.e2e.running import ROOT, ringex, run_in_foreground
from tests.e2e.test_metrics import Scrape
from tests.free_ports import free_port
from tests.unit.dbwriter.journal_gen import build, make_cfg
from tests.unit.dbwriter.reconcile import reconcile
from tests.unit.dbwriter.test_review40_writer_faults import _Running
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import LIMIT, run
from tests.unit.gateway.unfiled_rig import PRICE, SELL, harness

__all__ = ["harness"]
_QUICK = Backoff(0.01, 0.2)
_names = itertools.count()


@pytest.fixture(scope="module")
def own_pg() -> Iterator[EmbeddedPostgres]:
    """A cluster of this module's own: its tests stop it and kill its postmaster."""
    if find_bin_dir() is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql")
    root = Path(tempfile.mkdtemp(prefix="rgx261-"))
    root.chmod(0o755)  # under root the server runs as postgres, which must reach it
    cluster = EmbeddedPostgres(root / "pg", fast=True)
    cluster.start()
    yield cluster
    cluster.destroy()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_dsn(own_pg: EmbeddedPostgres) -> Iterator[str]:
    """An empty database of its own in ``own_pg``."""
    name = f"r261_{os.getpid()}_{next(_names)}"
    admin = f"host={own_pg.data} port={PORT} dbname=postgres user={SUPERUSER}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"host={own_pg.data} port={PORT} dbname={name} user={SUPERUSER}"
    _up(own_pg)  # a test may have left it down
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _down(cluster: EmbeddedPostgres, how: str) -> None:
    """Stop ``cluster`` by ``pg_ctl stop -m how``, or (``kill``) SIGKILL its postmaster."""
    if how != "kill":
        cluster.stop(how)
        return
    pid = _postmaster(cluster)
    os.kill(pid, signal.SIGKILL)
    _until(lambda: _gone(pid), 10, f"the killed postmaster {pid} still runs")


def _postmaster(cluster: EmbeddedPostgres) -> int:
    """The pid ``cluster``'s lock file names (0 while it has none)."""
    try:
        return int((cluster.data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return 0


def _gone(pid: int) -> bool:
    """``pid`` has ended (reaped, or a zombie not yet reaped). Judged by the pid, not by
    ``pg_ctl status``: a writer that revives its cluster may start a new postmaster before
    a poll of the status sees the old one down (the CI run of session 71)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _up(cluster: EmbeddedPostgres) -> None:
    """Start it again: a killed postmaster's backends may hold its memory a moment."""
    deadline = time.monotonic() + 15
    while True:
        try:
            cluster.start()
            return
        except (EmbeddedError, psycopg.OperationalError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _until(what: Callable[[], bool], timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, why
        time.sleep(0.05)


def _filed(dsn: str) -> int | None:
    """The database's checkpoint (None: not reachable)."""
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            row = conn.execute("SELECT last_seq FROM checkpoint").fetchone()
            return None if row is None else int(row[0])
    except psycopg.Error:
        return None


# -- the writer ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["fast", "immediate", "kill"])
def test_an_outage_while_orders_trade_is_filed_once_it_ends(
    tmp_path: Path, own_pg: EmbeddedPostgres, own_dsn: str, how: str
) -> None:
    """Scenario: the writer caught up; PostgreSQL stopped (``how``) while 300 more commands
    are journaled; started again. Expected: meanwhile the checkpoint stays put and the lag is
    the journal's last seq less it; then every row is a replay of the journal, once. Now: so."""
    cfg = make_cfg(tmp_path)
    live = build(cfg, 200)
    options = WriterOptions(batch_rows=100, batch_ms=20, poll_max_s=0.02, backoff=_QUICK)
    writer = DbWriter(cfg, own_dsn, options)
    running = _Running(writer, to_end=False)
    try:
        _until(lambda: writer.committed == live.last_seq, 20, "not caught up")
        _down(own_pg, how)
        at = writer.committed
        live.random_commands(300)
        _until(lambda: writer._lag() == live.last_seq - at, 10, "the lag does not grow")
        assert writer.committed == at and _filed(own_dsn) is None
        _up(own_pg)
        _until(lambda: writer.committed == live.last_seq, 30, "not caught up after")
    finally:
        running.stop()
        live.close()
    assert not running.errors, running.errors
    reconcile(own_dsn, live)


@pytest.mark.parametrize("how", ["immediate", "kill"])
def test_a_restart_inside_a_batch_files_it_once(
    tmp_path: Path, own_pg: EmbeddedPostgres, own_dsn: str, how: str
) -> None:
    """Scenario: inside the third batch's transaction (its lanes committed, its commit not
    sent, on the committer's thread) the server goes down (``how``) and is started again
    half a second later. Expected: the journal filed once, to its end. Now: so."""
    cfg = make_cfg(tmp_path)
    live = build(cfg, 600)
    live.close()
    writer = DbWriter(cfg, own_dsn, WriterOptions(batch_rows=100, batch_ms=10**6, backoff=_QUICK))
    calls = 0
    back = threading.Event()

    def restart() -> None:
        _up(own_pg)
        back.set()

    def outage(_conn: psycopg.Connection[Any], _batch: Batch) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            _down(own_pg, how)
            threading.Timer(0.5, restart).start()

    writer.store.before_commit.append(outage)
    running = _Running(writer, to_end=True)
    try:
        assert running.done.wait(30), "the writer did not reach the journal's end"
    finally:
        back.wait(20)
        running.stop()
    assert not running.errors, running.errors
    assert calls > 3, "the outage did not come inside a batch"
    reconcile(own_dsn, live)


def _profile(tmp_path: Path, instance: str) -> Path:
    """``make_cfg``'s config as a profile: the embedded cluster under ``tmp_path``."""
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'instance = "{instance}"\nvar_dir = "{tmp_path}"\n[journal]\nfsync = "none"\n'
        "[risk]\nmax_commands_per_s = 1000000000\nmax_open_orders = 1000000\nfee_account = 99\n"
        "[database]\nbatch_rows = 300\nbatch_ms = 50\nretry_max_s = 0.5\n"
    )
    return profile


def test_the_embedded_cluster_killed_is_started_again(tmp_path: Path, instance: str) -> None:
    """Scenario: the writer process (``procs.dbwriter.main``) on its embedded cluster, caught
    up; the cluster's postmaster SIGKILLed (the OOM killer); 100 more commands journaled.
    Expected: the writer, whose cluster no one else starts, starts it again and files them
    within 10 s. Was (fixed): it logs "Connection refused; retrying" for ever; the cluster stays
    down, the history with it, until the writer is restarted by hand."""
    cfg = make_cfg(tmp_path, instance)
    live = build(cfg, 100)
    cluster = EmbeddedPostgres(postgres_dir(cfg))
    argv = [
        sys.executable,
        "-m",
        "procs.dbwriter.main",
        "--profile",
        str(_profile(tmp_path, instance)),
    ]
    with open(tmp_path / "dbwriter.log", "wb") as err:
        proc = subprocess.Popen(argv, cwd=ROOT, stderr=err)
    try:
        _until(lambda: _filed(cluster.dsn) == live.last_seq, 60, "no first catch-up")
        _down(cluster, "kill")
        live.random_commands(100)
        deadline = time.monotonic() + 10
        while _filed(cluster.dsn) != live.last_seq and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _filed(cluster.dsn) == live.last_seq, (
            f"the embedded cluster is {'up' if cluster.running() else 'down'}; the writer "
            "says: " + (tmp_path / "dbwriter.log").read_text().splitlines()[-1]
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        live.close()
        cluster.destroy()


# -- the REST history ----------------------------------------------------------------------------


async def _history(c: RestClient) -> list[tuple[int, Any]]:
    """myTrades, allOrders and klines at once: (status, body) each."""
    calls = [
        c.request("GET", "/api/v1/myTrades", symbol="BTC-USD"),
        c.request("GET", "/api/v1/allOrders", symbol="BTC-USD"),
        c.request("GET", "/api/v1/klines", signed=False, symbol="BTC-USD", interval="1m"),
    ]
    return list(await asyncio.gather(*calls))


async def _a_filed_trade(h: Harness, url: str) -> tuple[RestClient, RestClient]:
    """ALICE's bid filled by BOB, filed; both logged in (closed by the caller)."""
    await unfiled_rig.file_all(h)
    alice, bob = RestClient(url), RestClient(url)
    await alice.login("ALICE", "alice-pw")
    await bob.login("BOB", "bob-pw")
    await alice.call("POST", "/api/v1/order", **LIMIT, price=PRICE, quantity="0.10",
                     timeInForce="GTC")  # fmt: skip
    await bob.call("POST", "/api/v1/order", **SELL, price=PRICE, quantity="0.10",
                   timeInForce="IOC")  # fmt: skip
    await unfiled_rig.file_all(h)
    assert [s for s, _ in await _history(alice)] == [200, 200, 200]
    return alice, bob


def test_history_during_an_outage_is_a_503_naming_the_database(
    harness: Harness, pg: EmbeddedPostgres
) -> None:
    """Scenario: a fill filed; PostgreSQL stopped; myTrades, allOrders and klines asked at
    once; then started again. Expected: each a 503 -1001 naming the history database within
    the pool's 5 s wait (not a 500, a hang or an empty list); all three answer once it is
    back (the pool's old connections failed during the outage: fault 1 is a restart with
    no request meanwhile). Now: so."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await _a_filed_trade(h, url)
        try:
            pg.stop("fast")
            began = time.monotonic()
            answers = await _history(alice)
            took = time.monotonic() - began
            assert [s for s, _ in answers] == [503, 503, 503], answers
            for _, body in answers:
                assert body["code"] == -1001
                assert body["msg"].startswith("the history database did not answer"), body
            assert took < 7, f"{took:.1f} s for a 503"
            pg.start()
            answers = await _history(alice)
            assert [s for s, _ in answers] == [200, 200, 200], answers
            assert len(answers[0][1]) == 1 and answers[2][1], answers
        finally:
            await alice.close()
            await bob.close()

    run(h, scenario)


def test_history_answers_once_postgresql_restarted(harness: Harness, pg: EmbeddedPostgres) -> None:
    """Scenario: a fill filed and listed (the pool holds a connection); PostgreSQL restarted
    (``pg_ctl stop -m fast``, start: an upgrade, a setting that needs a restart) with no
    request meanwhile; then myTrades. Expected: 200 with the fill: the database is up. Was (fixed):
    503 "the history database did not answer: terminating connection due to administrator
    command": the pool handed out its connection to the server that is gone."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await _a_filed_trade(h, url)
        try:
            pg.stop("fast")
            pg.start()
            status, body = await alice.request("GET", "/api/v1/myTrades", symbol="BTC-USD")
            assert status == 200, body
        finally:
            await alice.close()
            await bob.close()

    run(h, scenario)


# -- a whole instance on an external database -----------------------------------------------------


def _writer_process(profile: Path) -> dict[str, Any]:
    status = json.loads(ringex(profile, "status", "--json"))
    found: dict[str, Any] = next(p for p in status["processes"] if p["name"] == "dbwriter")
    return found


def test_an_external_database_away_at_start_and_at_stop(
    tmp_path: Path, instance: str, own_pg: EmbeddedPostgres, own_dsn: str
) -> None:
    """Scenario: ``database.dsn`` names a server that is down; ``ringex run``; a command;
    the writer SIGKILLed; the server started; stopped again, a command; ``ringex stop``; the
    server started, ``ringex run`` again. Expected: running at once, the writer's log naming
    the retry; the writer restarted once, no crash loop; caught up once the server is up
    (lag 0); lag 1 during the second outage; a clean stop within the grace that says the
    journal holds the rest; the next start files it. Now: so."""
    profile = tmp_path / "e2e.toml"
    profile.write_text(
        f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n'
        f'[marketdata]\nenabled = false\n[database]\ndsn = "{own_dsn}"\nretry_max_s = 0.5\n'
        '[ring]\ncapacity = 4096\n[wait]\nstrategy = "blocking"\npark_timeout_s = 0.005\n'
        f'[risk]\nfee_account = 1\n[[gateways]]\nname = "gw1"\nid = 1\nport = {free_port()}\n'
    )
    cfg = load_profile(str(profile))
    log = run_dir(cfg) / "dbwriter.log"
    own_pg.stop("fast")
    proc = run_in_foreground(profile, tmp_path / "run1.err")
    try:
        _until(lambda: (read_status(cfg) or {}).get("state") == "running", 60, "not running")
        assert "PostgreSQL unavailable while reading the checkpoint" in log.read_text()
        url = json.loads(ringex(profile, "status", "--json"))["endpoints"]["metrics"]
        ringex(profile, "admin", "create-account", "--account", "7")
        first = _writer_process(profile)["pid"]
        os.kill(first, signal.SIGKILL)
        _until(lambda: _writer_process(profile)["pid"] != first, 30, "the writer not restarted")
        _until(lambda: _writer_process(profile)["ready"], 30, "the restarted writer not ready")
        _up(own_pg)
        last = Scrape(url)("ringex_router_sequenced_total")
        _until(lambda: _filed(own_dsn) == last, 30, "the writer did not catch up")
        _until(lambda: Scrape(url)("ringex_dbwriter_lag") == 0, 10, "the lag stays")
        assert _writer_process(profile)["restarts"] == 1
        assert (read_status(cfg) or {}).get("state") == "running"

        own_pg.stop("fast")
        ringex(profile, "admin", "create-account", "--account", "8")
        _until(lambda: Scrape(url)("ringex_dbwriter_lag") == 1, 10, "the lag is not 1")
        began = time.monotonic()
        assert "stopped" in ringex(profile, "stop")
        assert proc.wait(30) == 0
        assert time.monotonic() - began < 20, "the stop waited for PostgreSQL"
        assert "stopped while PostgreSQL was unavailable" in log.read_text()
        _up(own_pg)
        proc = run_in_foreground(profile, tmp_path / "run2.err")
        _until(lambda: (read_status(cfg) or {}).get("state") == "running", 60, "not running")
        _until(lambda: _filed(own_dsn) == last + 1, 30, "the next start did not file the rest")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
