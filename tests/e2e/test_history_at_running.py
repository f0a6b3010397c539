"""A running instance's history has its tables: the supervisor's start waits for the database
writer to reach PostgreSQL (its ``ready`` counter), or to find it away (the exchange trades
meanwhile). CI once read ``relation "orders" does not exist`` from REST's openOrders after
``running`` (test_review216): a first start's ``initdb`` took seconds."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg

from config import load_profile
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.run_files import read_status, run_dir
from procs.common.topology import postgres_dir
from tests.e2e.running import ROOT, free_port, run_in_foreground, running_exchange


def test_the_tables_are_there_as_soon_as_a_first_start_runs(instance: str, tmp_path: Path) -> None:
    with running_exchange(instance, tmp_path) as profile:
        dsn = EmbeddedPostgres(postgres_dir(load_profile(str(profile)))).dsn
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT to_regclass('orders'), to_regclass('trades')").fetchone()
        assert row == ("orders", "trades"), row


def test_a_database_that_is_away_does_not_hold_the_start(instance: str, tmp_path: Path) -> None:
    """The writer retries (the journal holds what it has not written); the exchange runs."""
    profile = tmp_path / "away.toml"
    profile.write_text(
        f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n[marketdata]\nenabled = false\n'
        '[database]\nenabled = true\ndsn = "postgresql://ringex@127.0.0.1:1/none?connect_timeout=2"\n'
        '[ring]\ncapacity = 4096\n[wait]\nstrategy = "blocking"\npark_timeout_s = 0.005\n'
        f'[risk]\nfee_account = 1\n[[gateways]]\nname = "gw1"\nid = 1\nport = {free_port()}\n'
    )
    cfg = load_profile(str(profile))
    proc = run_in_foreground(profile, tmp_path / "supervisor.stderr")
    try:
        deadline = time.monotonic() + 60
        while (read_status(cfg) or {}).get("state") != "running":
            assert proc.poll() is None, (tmp_path / "supervisor.stderr").read_text()[-3000:]
            assert time.monotonic() < deadline, "not running within 60 s"
            time.sleep(0.1)
        log = (run_dir(cfg) / "dbwriter.log").read_text()
        assert "PostgreSQL unavailable" in log, log[-2000:]
    finally:
        stopped = subprocess.run(
            [sys.executable, "-m", "procs.cli", "stop", "--config", str(profile)],
            check=False, cwd=ROOT, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        proc.wait(60)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
