"""Bugs a fifth hostile review of the database writer and its embedded PostgreSQL found.

Each test runs the real code (the writer, or ``EmbeddedPostgres`` on a cluster of its own)
and fails today because of the product.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from procs.common.embedded_postgres import EmbeddedError, EmbeddedPostgres, find_bin_dir
from tests.unit.dbwriter.journal_gen import JournalBuilder, make_cfg


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory the server's user can reach (under root the server runs as postgres; a
    0700 pytest directory would move the cluster to /var/tmp/ringex-pg instead)."""
    if find_bin_dir() is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql")
    base = Path(tempfile.mkdtemp(prefix="rgx5-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


# -- the embedded cluster -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["My Exchange", "o'brien \\ back"])
def test_the_embedded_cluster_runs_under_a_directory_with_a_space(
    open_dir: Path, name: str
) -> None:
    """``var_dir`` is any directory (``config.schema``: no pattern), and the cluster lives in
    ``var/<instance>/pg``: a checkout under ``~/My Exchange`` is an ordinary place to run
    ``make run``. The server itself copes (``unix_socket_directories = '...'`` is quoted,
    ``pg_ctl -D`` gets an argv), but ``EmbeddedPostgres.dsn`` (and the admin DSN in ``start``)
    is ``f"host={self.data} ..."`` with the path unquoted: libpq reads ``host=/.../My`` and
    then a stray ``Exchange/var/...`` (``missing "=" after ...``). ``start`` raises
    ``ProgrammingError`` after starting the server, on every try, so the writer never runs,
    and the REST gateway's ``history_dsn`` hands out the same broken DSN. Expected: a
    libpq-quoted value (``host='/.../My Exchange/...'``), and a DSN that connects. A quote
    or a backslash broke ``postgresql.conf``'s line, and the server's start (a review,
    2026-12-03): the list element is quoted too."""
    spaced = open_dir / name
    spaced.mkdir(mode=0o755)
    spaced.chmod(0o755)
    cluster = EmbeddedPostgres(spaced / "pg", fast=True)
    try:
        dsn = cluster.start()
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        cluster.destroy()


@pytest.mark.parametrize(
    ("name", "said"),
    [("a,b", "a comma, which libpq reads as a list"), ('say "x"', "a double quote")],
)
def test_a_cluster_directory_with_a_comma_or_a_double_quote_is_refused(
    open_dir: Path, name: str, said: str
) -> None:
    """libpq reads ``host=/a,b/...`` as two hosts, quoted or not (the server would start and
    no connection reach it), and pg_ctl's shell command cannot carry a double quote in its
    log file's path: refused before anything is made, naming the way out."""
    with pytest.raises(EmbeddedError, match=f"holds {said}.*: use a var_dir without one"):
        EmbeddedPostgres(open_dir / name / "pg", fast=True)
    assert not (open_dir / name).exists()


def test_a_cluster_whose_first_start_died_after_initdb_is_started_next_time(
    open_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``EmbeddedPostgres.init`` runs ``initdb`` and then appends its own settings to
    ``postgresql.conf`` (``listen_addresses = ''``, ``unix_socket_directories = '<data>'``,
    ...), and it counts a cluster as made as soon as ``PG_VERSION`` exists. A writer that dies
    between the two (SIGKILL or OOM during the first ``make run``, the supervisor's or
    systemd's kill; and the append is never fsynced, so a power loss after the first start
    can take it while initdb's own files, fsynced, stay) leaves a cluster without those
    settings: every later ``start`` skips ``init``, runs the server with the defaults (a
    socket in /var/run/postgresql, TCP on localhost:5432, or no start at all) and then cannot
    reach it at ``host=<data>``: the embedded database never comes up again until someone
    deletes ``var/<instance>/pg`` by hand. Expected (crash-only, like every other start-up
    path): a cluster that did not finish being made is made (or finished) again, and
    ``start`` returns a DSN that connects."""
    real_run = subprocess.run

    class DiedHereError(Exception):
        pass

    def run_then_die(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        done = real_run(argv, *args, **kwargs)
        if any(Path(a).name == "initdb" for a in argv):
            raise DiedHereError  # the process is gone right after initdb returned
        return done

    root = open_dir / "pg"
    first = EmbeddedPostgres(root, fast=True)
    monkeypatch.setattr(subprocess, "run", run_then_die)  # the module's own calls
    with pytest.raises(DiedHereError):
        first.start()
    monkeypatch.setattr(subprocess, "run", real_run)

    again = EmbeddedPostgres(root, fast=True)  # the restarted writer
    try:
        dsn = again.start()
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        again.destroy()


# -- the writer under systemd -------------------------------------------------------------------


def _checkpoint(conn: psycopg.Connection[Any]) -> int:
    try:
        row = conn.execute("SELECT last_seq FROM checkpoint").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(row[0]) if row else 0


def _received(sock: socket.socket) -> list[bytes]:
    got: list[bytes] = []
    while True:
        try:
            got.append(sock.recv(4096))
        except BlockingIOError:
            return got


def test_the_writer_pets_the_watchdog_while_it_catches_up(
    tmp_path: Path, dsn: str, open_dir: Path
) -> None:
    """Under systemd the writer's unit has ``WatchdogSec=30s`` (``scripts/systemd_units.py``)
    and the README says a process that stops pinging is killed as hung. The writer pings
    only from ``DbWriter.sleep`` (``main.py``: ``sd_notify.petting(time.sleep)``), and
    ``_follow`` sleeps only once a pass has read the journal to its end: while it works
    through a backlog (PostgreSQL was slow or down for a while during a busy period, or the
    exchange writes faster than it can for a stretch) it reads, replays and commits batch
    after batch without a single ping. A backlog worth more than 30 s gets a healthy,
    progressing writer SIGABRTed and restarted, again and again (each restart replays from its
    snapshot first). Here, after READY, a lock stands in for the slow database while 1500
    commands arrive, then goes; with ``WATCHDOG_USEC`` = 20 ms (a ping due every 10 ms) the
    writer commits its way through the backlog in a second or more. Expected: pings while it
    does (between the first 100 and the last 100 seqs of the backlog); actual: none until
    its first idle wait at the journal's end."""
    cfg = make_cfg(tmp_path)
    live = JournalBuilder(cfg)
    live.setup()
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'instance = "{cfg.instance}"\nvar_dir = "{cfg.var_dir}"\n'
        '[journal]\nfsync = "none"\n'
        "[risk]\nmax_commands_per_s = 1000000000\nmax_open_orders = 1000000\nfee_account = 99\n"
        "[database]\nbatch_rows = 20\nbatch_ms = 20\n"
    )
    address = str(open_dir / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    env = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}
    env |= {"PYTHONPATH": str(Path.cwd()), "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "20000"}
    argv = [sys.executable, "-m", "procs.dbwriter.main", "--profile", str(profile), "--dsn", dsn]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            ready = False
            while not (ready and _checkpoint(conn) == live.last_seq):
                assert time.monotonic() < deadline and proc.poll() is None, "no READY"
                ready = ready or any(b"READY=1" in m for m in _received(sock))
                time.sleep(0.01)
            frozen = live.last_seq
            with psycopg.connect(dsn) as blocker:  # the slow database: commits wait on it
                blocker.execute("SELECT last_seq FROM checkpoint FOR UPDATE")
                live.random_commands(1500)
                live.writer.close()
                _received(sock)
            low, high = frozen + 100, live.last_seq - 100
            pinged_in_backlog = 0
            before = _checkpoint(conn)
            deadline = time.monotonic() + 60
            while before < live.last_seq and time.monotonic() < deadline:
                pings = sum(b"WATCHDOG=1" in m for m in _received(sock))
                after = _checkpoint(conn)
                # sent after the previous look (checkpoint >= before) and before this one
                if before > low and after < high:
                    pinged_in_backlog += pings
                before = after
                time.sleep(0.005)
            assert before == live.last_seq, "the writer did not catch up"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        sock.close()
    assert pinged_in_backlog > 0, (
        "no WATCHDOG=1 while the writer worked through the backlog: systemd kills it as hung"
    )
