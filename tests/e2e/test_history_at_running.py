"""A running instance's history has its tables: the supervisor's start waits for the database
writer to reach PostgreSQL (its ``ready`` counter), or to find it away (the exchange trades
meanwhile). CI once read ``relation "orders" does not exist`` from REST's openOrders after
``running`` (test_review216): a first start's ``initdb`` took seconds."""

from __future__ import annotations

from pathlib import Path

import psycopg

from config import load_profile
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.run_files import run_dir
from procs.common.topology import postgres_dir
from tests.e2e.running import running_exchange


def test_the_tables_are_there_as_soon_as_a_first_start_runs(instance: str, tmp_path: Path) -> None:
    with running_exchange(instance, tmp_path) as profile:
        dsn = EmbeddedPostgres(postgres_dir(load_profile(str(profile)))).dsn
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT to_regclass('orders'), to_regclass('trades')").fetchone()
        assert row == ("orders", "trades"), row


def test_a_database_that_is_away_does_not_hold_the_start(instance: str, tmp_path: Path) -> None:
    """The writer retries (the journal holds what it has not written); the exchange runs."""
    away = "postgresql://ringex@127.0.0.1:1/none?connect_timeout=2"
    with running_exchange(instance, tmp_path, dsn=away) as profile:
        log = (run_dir(load_profile(str(profile))) / "dbwriter.log").read_text()
        assert "PostgreSQL unavailable" in log, log[-2000:]
