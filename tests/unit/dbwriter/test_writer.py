"""The writer against a real PostgreSQL: reconciliation, rebuild, exactly once under crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from procs.common.embedded_postgres import EmbeddedPostgres
from procs.dbwriter.projection import Batch
from procs.dbwriter.replay import snapshot_store
from procs.dbwriter.store import PgStore
from procs.dbwriter.writer import Backoff, DbWriter, WriterOptions
from tests.unit.dbwriter.journal_gen import build, make_cfg
from tests.unit.dbwriter.reconcile import reconcile

FAST = WriterOptions(batch_rows=300, batch_ms=50, backoff=Backoff(0.01, 0.1))


def test_writer_reconciles_with_the_live_state(tmp_path: Path, dsn: str) -> None:
    cfg = make_cfg(tmp_path)
    live = build(cfg, 3000)
    writer = DbWriter(cfg, dsn, FAST)
    assert writer.run(to_end=True) == live.last_seq
    writer.close()
    assert writer.batches > 5  # many batches, not one
    reconcile(dsn, live)
    with psycopg.connect(dsn) as conn:
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'trades'::regclass"
        ).fetchone()
        assert parts is not None and parts[0] >= 2  # daily partitions, made on demand


def test_a_rebuild_equals_the_live_database(tmp_path: Path, dsn: str, pg: EmbeddedPostgres) -> None:
    """``ringex replay --to-db`` into another database, other batch sizes: the same rows
    (balances' ``updated_seq`` and ``updated`` included, whatever the batches' bounds)."""
    cfg = make_cfg(tmp_path)
    live = build(cfg, 1500)
    live.close()
    first = DbWriter(cfg, dsn, WriterOptions(batch_rows=41, batch_ms=50))
    first.run(to_end=True)
    first.close()
    other = dsn.replace("dbname=", "dbname=r")
    name = other.split("dbname=")[1].split(maxsplit=1)[0]
    admin = dsn.replace(dsn.split("dbname=")[1].split(maxsplit=1)[0], "postgres")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    try:
        rebuild = DbWriter(cfg, other, WriterOptions(batch_rows=10_000, batch_ms=10_000))
        rebuild.run(to_end=True)
        rebuild.close()
        tables = ("trades", "orders", "balances", "candles", "accounts", "transfers")
        for table in tables:
            query = f"SELECT * FROM {table} ORDER BY 1, 2, 3"
            with psycopg.connect(dsn) as a, psycopg.connect(other) as b:
                assert a.execute(query).fetchall() == b.execute(query).fetchall(), table
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE {name} WITH (FORCE)")


class CrashError(Exception):
    pass


def test_a_crash_between_copy_and_commit_neither_duplicates_nor_skips(
    tmp_path: Path, dsn: str
) -> None:
    cfg = make_cfg(tmp_path)
    live = build(cfg, 2000)
    writer = DbWriter(cfg, dsn, FAST)
    calls = 0

    def crash_on_fourth(conn: psycopg.Connection[Any], batch: Batch) -> None:
        nonlocal calls
        calls += 1
        if calls == 4:  # rows copied and upserted, checkpoint updated, not committed
            raise CrashError

    writer.store.before_commit.append(crash_on_fourth)
    with pytest.raises(CrashError):
        writer.run(to_end=True)
    writer.close()
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT last_seq FROM checkpoint").fetchone()
        assert row is not None and 0 < row[0] < live.last_seq
    restarted = DbWriter(cfg, dsn, FAST)
    assert restarted.run(to_end=True) == live.last_seq
    restarted.close()
    reconcile(dsn, live)


def test_a_batch_committed_twice_is_written_once(tmp_path: Path, dsn: str) -> None:
    """A commit whose answer was lost: the retry sees the checkpoint at the batch's end."""
    cfg = make_cfg(tmp_path)
    build(cfg, 200).close()
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=10**9, batch_ms=10**9))
    follower = writer.start()
    batch = Batch(first_seq=1)
    decode = writer.codec.decode_slot
    for seq, image in writer.reader.entries(1):
        command = decode(image)
        follower.projection.process(seq, command, follower.step(seq, command), batch)
    batch.seal(
        follower.sequencer.accounts, follower.projection.decimals, follower.projection.assets_of
    )
    store = PgStore(dsn, cfg)
    assert store.write(batch) is True
    assert store.write(batch) is False
    store.close()
    writer.close()
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (symbol_id, trade_id)) FROM trades"
        ).fetchone()
        assert row is not None and row[0] == row[1] == batch.trades.count


def test_restart_resumes_from_its_snapshot(tmp_path: Path, dsn: str) -> None:
    cfg = make_cfg(tmp_path)
    live = build(cfg, 1500)
    options = WriterOptions(batch_rows=300, batch_ms=50, snapshot_every=400)
    first = DbWriter(cfg, dsn, options)
    first.run(to_end=True)
    first.close()
    latest = snapshot_store(cfg).latest()
    assert latest is not None and latest[0] > 0
    live.random_commands(800)  # the exchange went on meanwhile
    second = DbWriter(cfg, dsn, options)
    follower = second.start()
    assert follower.seq == first.committed
    assert second.run(to_end=True) == live.last_seq
    second.close()
    reconcile(dsn, live)


def test_postgres_restart_mid_run_is_retried_and_caught_up(
    tmp_path: Path, dsn: str, pg: EmbeddedPostgres
) -> None:
    cfg = make_cfg(tmp_path)
    live = build(cfg, 1000)
    writer = DbWriter(
        cfg, dsn, WriterOptions(batch_rows=100, batch_ms=20, backoff=Backoff(0.01, 0.1))
    )
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            writer.run()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while writer.committed == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        pg.stop("immediate")
        live.random_commands(500)  # the journal grows while PostgreSQL is down
        time.sleep(0.3)
        stalled = writer.committed
        assert stalled < live.last_seq
        pg.start()
        while writer.committed < live.last_seq and time.monotonic() < deadline + 10:
            time.sleep(0.01)
    finally:
        writer.request_stop()
        done.wait(10)
        thread.join()
        writer.close()
    assert not errors, errors
    assert writer.committed == live.last_seq
    reconcile(dsn, live)


def test_sigkill_of_the_writer_process_then_restart(tmp_path: Path, dsn: str) -> None:
    cfg = make_cfg(tmp_path)
    live = build(cfg, 12_000)
    live.close()
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'instance = "{cfg.instance}"\nvar_dir = "{cfg.var_dir}"\n'
        '[journal]\nfsync = "none"\n'
        f"[risk]\nmax_commands_per_s = 1000000000\nmax_open_orders = 1000000\nfee_account = 99\n"
        "[database]\nbatch_rows = 200\nbatch_ms = 20\n"
    )
    argv = [sys.executable, "-m", "procs.dbwriter.main", "--profile", str(profile), "--dsn", dsn]
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    proc = subprocess.Popen([*argv, "--to-end"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    at = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                row = conn.execute("SELECT last_seq FROM checkpoint").fetchone()
                at = row[0] if row else 0
            except psycopg.errors.UndefinedTable:
                at = 0
            if at > live.last_seq // 4:
                break
            time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < at < live.last_seq, "the writer finished before it could be killed mid-run"
    done = subprocess.run(
        [*argv, "--to-end"], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    reconcile(dsn, live)


def test_sigterm_flushes_and_exits_zero(tmp_path: Path, dsn: str) -> None:
    cfg = make_cfg(tmp_path)
    live = build(cfg, 300)
    live.close()
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'instance = "{cfg.instance}"\nvar_dir = "{cfg.var_dir}"\n'
        "[risk]\nmax_commands_per_s = 1000000000\nmax_open_orders = 1000000\nfee_account = 99\n"
    )
    argv = [sys.executable, "-m", "procs.dbwriter.main", "--profile", str(profile), "--dsn", dsn]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            try:
                row = conn.execute("SELECT last_seq FROM checkpoint").fetchone()
                if row and row[0] == live.last_seq:
                    break
            except psycopg.errors.UndefinedTable:
                pass
            time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    reconcile(dsn, live)


def test_an_idle_journal_is_looked_at_less_and_less_often(tmp_path: Path, dsn: str) -> None:
    cfg = make_cfg(tmp_path)
    live = build(cfg, 200)
    pauses: list[float] = []

    def sleep(s: float) -> None:
        pauses.append(s)
        time.sleep(s / 20)  # the same decisions, sooner

    options = WriterOptions(batch_rows=100, batch_ms=20, poll_s=0.005, poll_max_s=0.08)
    writer = DbWriter(cfg, dsn, options, sleep=sleep)
    thread = threading.Thread(target=writer.run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while pauses[-6:] != [0.08] * 6:  # caught up, then backed off to the cap
            assert time.monotonic() < deadline, pauses[-10:]
            time.sleep(0.01)
        assert [p for p in pauses if p > 0.005][:4] == [0.01, 0.02, 0.04, 0.08]
        seen = len(pauses)
        live.random_commands(50)  # the journal moves: the next look comes soon again
        while writer.committed < live.last_seq:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert 0.005 in pauses[seen:]
    finally:
        writer.request_stop()
        thread.join(10)
        writer.close()
