"""Fixtures more than one area's tests use.

The private PostgreSQL cluster is defined here, once: a module that imported the fixture
(``pg = conftest.pg``) would register a fixture of its own, each a cluster of its own (initdb,
a server left running to the session's end, its teardown there)."""

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
from procs.common.record_codec import RecordCodec
from procs.common.topology import (
    ADMIN_GATEWAY,
    ROUTER,
    gateway_commands,
    gateway_consumer,
    gateway_replies,
)
from shm import Ring


@pytest.fixture
def admin_rings(instance: str) -> Iterator[str]:
    """The two admin rings of a running instance, made by this live process (nobody
    answers on them unless a test does)."""
    codec = RecordCodec()
    made = [
        Ring.create(
            instance, gateway_commands(ADMIN_GATEWAY), codec, capacity=64, consumers=[ROUTER]
        ),
        Ring.create(
            instance,
            gateway_replies(ADMIN_GATEWAY),
            codec,
            capacity=64,
            consumers=[gateway_consumer(ADMIN_GATEWAY)],
        ),
    ]
    yield instance
    for ring in made:
        ring.close()


_databases = itertools.count()


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    """A private PostgreSQL cluster for the session (fsync off)."""
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
    """An empty database of its own in the session's cluster."""
    name = f"t{os.getpid()}_{next(_databases)}"
    with psycopg.connect(admin_dsn(pg), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"host={pg.data} port={PORT} dbname={name} user={SUPERUSER}"
    pg.start()  # a test may have stopped the server
    with psycopg.connect(admin_dsn(pg), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
