"""A private PostgreSQL cluster for the session (fsync off), a fresh database per test."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from procs.common.embedded_postgres import PORT, SUPERUSER, EmbeddedPostgres, find_bin_dir

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    if find_bin_dir() is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql")
    root = Path(tempfile.mkdtemp(prefix="rgxpg-"))
    root.chmod(0o755)  # under root the server runs as postgres, which must reach its directory
    cluster = EmbeddedPostgres(root / "pg", fast=True)
    cluster.start()
    yield cluster
    cluster.destroy()
    shutil.rmtree(root, ignore_errors=True)


def admin_dsn(cluster: EmbeddedPostgres) -> str:
    return f"host={cluster.data} port={PORT} dbname=postgres user={SUPERUSER}"


@pytest.fixture
def dsn(pg: EmbeddedPostgres) -> Iterator[str]:
    """An empty database of its own."""
    name = f"t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(admin_dsn(pg), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"host={pg.data} port={PORT} dbname={name} user={SUPERUSER}"
    pg.start()  # a test may have stopped the server
    with psycopg.connect(admin_dsn(pg), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
