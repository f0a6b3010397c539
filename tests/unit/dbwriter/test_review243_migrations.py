"""Review 243: the PostgreSQL schema's life.

Reviewed: ``procs/dbwriter/migrate.py`` and every file of ``procs/dbwriter/migrations/``
(0001-0013), the writer's start (``procs/dbwriter/main.py``, ``writer.py`` ``start`` and
``_retry``, ``store.py`` ``connect``, ``prepare``, ``PgStore.open``, ``_lay_out``), the REST
history's readers of the same tables (``procs/gateway/history.py``, ``rest.py`` ``db``),
and README's database sections. Against the session's real PostgreSQL (15, a database per
test); where a journal is needed, the real sequencer and matchers (``journal_gen``).

Beyond reviews 35, 40 and 50 (a newer database refused naming both versions, two writers'
``PgStore.open`` at once, a session terminated mid-migration, 0011 over partitions):

Faults found (fixed; its test says what it was):

- ``migrate.py:77-78`` (``migrate``): the migrations wait for their table locks without
  any bound. A reader holding a table (a nightly ``pg_dump``, an analyst's open
  transaction) keeps the starting writer's ``ALTER TABLE`` waiting, and every new reader of
  that table then queues behind the ALTER: the REST klines, answering until the upgraded
  writer started, now fail for as long as the dump runs (statement timeout, 503). Review 40
  mended this for the trade partitions ahead (``AHEAD_LOCK_TIMEOUT_MS``); migrations kept
  it. Fix: ``SET LOCAL lock_timeout`` (100 ms to 1 s) after the advisory lock in
  ``migrate``'s transaction; ``LockNotAvailable`` is an ``OperationalError``, which the
  writer's ``_retry`` already retries with backoff, so the migration is tried again later
  and nobody queues behind it meanwhile. (Checked: with ``lock_timeout = 200`` set on the
  migrating session, the test below passes.)

Found sound (plain tests):

- a writer process SIGKILLed in the middle of a migration (its backend blocked on a lock,
  finishing after the client is gone) leaves nothing of it; the next start applies it
  whole;
- two writers starting at once on a database whose ``default_transaction_isolation`` is
  ``repeatable read``: the one that waited on the advisory lock fails with a retryable
  ``OperationalError`` (a serialization failure, retried by ``_retry``) and its retry
  applies nothing twice;
- a writer of an older build against a database a newer one migrated refuses before it
  writes anything (no reference data, no lanes, checkpoint untouched) and does not retry;
- a database made by each older build (every migration prefix from 0002 to 0012) with a
  writer's rows in it, upgraded: every row kept (candle volumes through 0005's type
  change), the REST history (allOrders, myTrades, klines) the same as an up-to-date
  database's at the same checkpoint (trades filed before 0007 with no commission, as
  README says), and a writer of this build then goes on from its checkpoint to the same
  rows as one that filed the whole journal from the start.

TimescaleDB: not installable here (no package in this host's apt sources), so its path was
read, not run: 0002 makes the hypertable only where the library is preloaded, 0007's
``ADD COLUMN IF NOT EXISTS`` and 0003/0011's indexes are valid on a hypertable, 0010 drops
its default ``trades_ts_idx``; ``ringex_trade_partitions`` returns 0 for it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config.schema import RingexConfig
from procs.common.embedded_postgres import PORT, SUPERUSER, EmbeddedPostgres
from procs.dbwriter.migrate import LOCK, MIGRATIONS, MigrationError, load, migrate
from procs.dbwriter.writer import DbWriter, WriterOptions
from procs.gateway.history import History
from tests.unit.dbwriter.journal_gen import ACCOUNTS, START_NS, build, make_cfg, write_all

_DEADLINE_S = 15.0


def _prefix(tmp_path: Path, upto: int) -> Path:
    """A migrations folder as an older build shipped it: versions 1..``upto``."""
    older = tmp_path / f"migrations_{upto:04d}"
    older.mkdir(exist_ok=True)
    for m in load():
        if m.version <= upto:
            shutil.copy(MIGRATIONS / m.name, older / m.name)
    return older


def _wait_until(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _DEADLINE_S
    while not done():
        assert time.monotonic() < deadline, f"not within {_DEADLINE_S} s: {what}"
        time.sleep(0.02)


def _waits_on_a_lock(dsn: str, pid: int) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
    return row is not None and row[0] == "Lock"


def _versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


# -- interrupted, concurrent, newer ---------------------------------------------------------


_MIGRATE = (
    "import sys\nimport psycopg\nfrom procs.dbwriter.migrate import migrate\n"
    "with psycopg.connect(sys.argv[1], autocommit=True) as c:\n"
    "    print(c.info.backend_pid, flush=True)\n    migrate(c)\n"
)


def test_a_writer_killed_mid_migration_leaves_nothing_and_the_next_start_finishes(
    dsn: str, tmp_path: Path
) -> None:
    """Scenario: a database at 0012; a writer process starts migrating and its 0013 waits
    for a reader's lock on ``orders``; the process is SIGKILLed there (systemd's stop
    timeout, an OOM kill); the reader then ends, so the dead client's backend runs on.
    Expected: nothing of 0013 stays (no column, no index, no record), and the next start
    applies it whole. Now: so (one transaction; the orphan backend aborts at its next read
    from the closed socket)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, _prefix(tmp_path, 12))
    reader = psycopg.connect(dsn)
    reader.execute("SELECT count(*) FROM orders")  # holds ACCESS SHARE: a dump's
    proc = subprocess.Popen(
        [sys.executable, "-c", _MIGRATE, dsn],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[3],
        text=True,
    )
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        _wait_until("0013 waits on the reader", lambda: _waits_on_a_lock(dsn, pid))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        reader.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()

    def gone() -> bool:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
            return row.fetchone() == (0,)

    _wait_until("the dead writer's backend ends", gone)
    with psycopg.connect(dsn, autocommit=True) as conn:
        column = conn.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'orders' AND column_name = 'client_order_id'"
        ).fetchone()
        assert column == (0,) and conn.execute(
            "SELECT to_regclass('orders_client_id')"
        ).fetchone() == (None,)
        assert _versions(dsn)[-1] == 12
        assert migrate(conn) == [m.name for m in load() if m.version > 12]
    assert _versions(dsn) == [m.version for m in load()]


def test_two_writers_at_once_under_repeatable_read_retry_and_apply_once(
    dsn: str, tmp_path: Path
) -> None:
    """Scenario: the database's ``default_transaction_isolation`` is ``repeatable read`` (a
    DBA's choice); a writer migrates a fresh database while a second writer's start waits
    on the migrations' advisory lock (its snapshot taken before the first committed).
    Expected: the second does not apply a migration twice nor die: it retries and finds
    every migration applied. Now: so (a serialization failure, an ``OperationalError``
    that the writer's ``_retry`` retries)."""
    name = dsn.split("dbname=")[1].split(maxsplit=1)[0]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'")
    naps: list[float] = []
    second = DbWriter(make_cfg(tmp_path), dsn, WriterOptions(), sleep=naps.append)
    got: list[Any] = []

    def start() -> None:
        try:
            got.append(second._retry(second.store.checkpoint_entry, "reading the checkpoint"))
        except BaseException as exc:  # surfaced below
            got.append(exc)

    try:
        with psycopg.connect(dsn, autocommit=True) as first:
            with first.transaction():
                first.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
                thread = threading.Thread(target=start)
                thread.start()

                def waiting() -> bool:
                    with psycopg.connect(dsn, autocommit=True) as w:
                        row = w.execute(
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                            "AND NOT granted"
                        ).fetchone()
                    return row == (1,)

                _wait_until("the second writer waits on the advisory lock", waiting)
                assert len(migrate(first)) == len(load())
            thread.join(_DEADLINE_S)
    finally:
        second.close()
    assert got == [(0, None)]
    assert len(naps) == 1  # one retry
    assert _versions(dsn) == [m.version for m in load()]


def test_an_older_writer_on_a_newer_database_writes_nothing_and_does_not_retry(
    dsn: str, tmp_path: Path
) -> None:
    """Scenario: the build is rolled back; the database was migrated by the newer one
    (0099 here, with a constraint the older writer's rows would break).
    Expected: the older writer stops with ``MigrationError`` before writing anything: no
    reference data upserted, no lanes laid out, checkpoint as it was, no retry loop.
    Now: so."""
    newer = tmp_path / "newer"
    shutil.copytree(MIGRATIONS, newer)
    (newer / "0099_future.sql").write_text(
        "ALTER TABLE orders ADD COLUMN venue_tag text NOT NULL;\n"
        "UPDATE checkpoint SET last_seq = 7;\n"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, newer)
    cfg = make_cfg(tmp_path)
    build(cfg, 20).close()
    naps: list[float] = []
    writer = DbWriter(cfg, dsn, WriterOptions(), sleep=naps.append)
    try:
        with pytest.raises(MigrationError, match=r"0099_future\.sql"):
            writer.run(to_end=True)
    finally:
        writer.close()
    assert naps == []
    with psycopg.connect(dsn, autocommit=True) as conn:
        counts = [
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()
            for t in ("assets", "symbols", "trade_lanes", "orders", "accounts")
        ]
        assert counts == [(0,)] * 5
        assert conn.execute("SELECT last_seq FROM checkpoint").fetchone() == (7,)


# -- an older build's database, with rows, brought up ---------------------------------------

_TABLES = ("accounts", "orders", "trades", "transfers", "balances", "candles", "trade_lanes")
_DUMPED = (*_TABLES, "checkpoint")
_ORDER_BY = {
    "accounts": "id",
    "orders": "id",
    "trades": "symbol_id, trade_id",
    "transfers": "seq",
    "balances": "account_id, asset_id",
    "candles": "symbol_id, interval_s, bucket",
    "trade_lanes": "lane",
}


def _columns(conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [r[0] for r in rows]


def _copy_rows(src: str, dst: str) -> None:
    """Every row of ``src`` (a writer's filing) into ``dst`` (an older build's schema), in
    the columns that schema has: the database that older build's writer would have left."""
    with psycopg.connect(src) as s, psycopg.connect(dst, autocommit=True) as d:
        (lo, hi) = s.execute("SELECT min(ts)::date, max(ts)::date FROM trades").fetchone() or ()
        d.execute("SELECT ringex_trade_partitions(%s, %s)", (lo, hi))
        for table in _TABLES:
            names = _columns(d, table)
            if not names:
                continue  # not in that build's schema
            listed = ", ".join(names)
            rows = s.execute(f"SELECT {listed} FROM {table}").fetchall()
            with d.cursor() as cur, cur.copy(f"COPY {table} ({listed}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        names = [c for c in _columns(d, "checkpoint") if c in ("last_seq", "last_crc")]
        values = s.execute(f"SELECT {', '.join(names)} FROM checkpoint").fetchone() or ()
        sets = ", ".join(f"{c} = %s" for c in names)
        d.execute(f"UPDATE checkpoint SET {sets}", values)


def _dump(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(
                "SELECT last_seq, last_crc FROM checkpoint"
                if t == "checkpoint"
                else f"SELECT * FROM {t} ORDER BY {_ORDER_BY[t]}"
            ).fetchall()
            for t in _DUMPED
        }


def _history(dsn: str, cfg: RingexConfig) -> dict[str, Any]:
    """allOrders, myTrades and 1m/1h klines of every account and symbol, as the REST API
    reads them."""
    symbols = [s for s in cfg.symbols if s.id in (1, 2)]
    start_ms = START_NS // 10**6
    now_ms = start_ms + 10 * 86_400_000

    async def run() -> dict[str, Any]:
        history = History(dsn, max_connections=1, assets=cfg.assets)
        await history.pool.open(wait=True)
        try:
            out: dict[str, Any] = {}
            for sym in symbols:
                for account in ACCOUNTS:
                    key = f"{account}/{sym.name}"
                    out["orders " + key] = await history.orders(account, sym.id, limit=1000)
                    out["trades " + key] = await history.trades(account, sym, limit=1000)
                for interval in ("1m", "1h"):
                    out[f"klines {interval} {sym.name}"] = await history.klines(
                        sym, interval, start_ms=start_ms, limit=1000, now_ms=now_ms
                    )
            return out
        finally:
            await history.close()

    return asyncio.run(run())


def _no_commission(history: dict[str, Any]) -> dict[str, Any]:
    return {
        k: [{**t, "commission": None} for t in v] if k.startswith("trades ") else v
        for k, v in history.items()
    }


@pytest.fixture(scope="module")
def filed(
    pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RingexConfig, str, RingexConfig, str]]:
    """Two journals of one seed, each filed by a writer of this build into a database of
    its own: the first 120 random commands (what an older build's writer had filed), and
    the same followed by 120 more (what the upgraded one goes on with)."""
    root = tmp_path_factory.mktemp("r243_journals")
    first, whole = make_cfg(root / "first"), make_cfg(root / "whole")
    build(first, 120, seed=243).close()
    build(whole, 240, seed=243).close()
    admin = f"host={pg.data} port={PORT} dbname=postgres user={SUPERUSER}"
    names = [f"r243_{os.getpid()}_ref{k}" for k in (1, 2)]
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE DATABASE {name}")
    ref_first, ref_whole = (admin.replace("dbname=postgres", f"dbname={n}") for n in names)
    write_all(first, ref_first)
    write_all(whole, ref_whole)
    yield first, ref_first, whole, ref_whole
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.parametrize("upto", range(2, 13))
def test_a_database_of_each_older_build_with_rows_is_upgraded_keeping_its_history(
    dsn: str, tmp_path: Path, filed: tuple[RingexConfig, str, RingexConfig, str], upto: int
) -> None:
    """Scenario: a database an older build made (migrations 0001..``upto``) holding what its
    writer filed of the first half of a journal; this build's writer starts on it.
    Expected: the missing migrations, exactly; every row kept; the REST history (allOrders,
    myTrades, klines) the same as an up-to-date database's at that checkpoint (no
    commission on trades filed before 0007); then the writer goes on from the checkpoint
    and every table equals that of one writer that filed the whole journal. Now: so."""
    first, ref_first, whole, ref_whole = filed
    old = dsn
    with psycopg.connect(old, autocommit=True) as conn:
        migrate(conn, _prefix(tmp_path, upto))
    _copy_rows(ref_first, old)
    with psycopg.connect(old, autocommit=True) as conn:
        assert migrate(conn) == [m.name for m in load() if m.version > upto]
    got, want = _dump(old), _dump(ref_first)
    assert all(want[t] for t in _TABLES), "the first half filed no rows in some table"
    assert all(r[-1] is not None for r in want["trades"]), "no fees filed"
    if upto < 4:  # no lanes then: laid out at the writer's first open
        got["trade_lanes"] = want["trade_lanes"]
    if upto < 9:  # no CRC kept then: NULL, not checked at the next batch
        assert got["checkpoint"] == [(want["checkpoint"][0][0], None)]
        got["checkpoint"] = want["checkpoint"]
    if upto < 7:  # no fees then: NULL (README), the rest of each row as filed
        assert {r[-2:] for r in got["trades"]} == {(None, None)}
        got["trades"], want["trades"] = (
            [r[:-2] for r in got["trades"]],
            [r[:-2] for r in want["trades"]],
        )
    assert got == want
    before, reference = _history(old, first), _history(ref_first, first)
    if upto < 7:
        reference = _no_commission(reference)
    assert before == reference
    assert write_all(whole, old) == _dump(ref_whole)["checkpoint"][0][0] > 0
    got, want = _dump(old), _dump(ref_whole)
    if upto < 7:
        filed_before = {r[:2] for r in _dump(ref_first)["trades"]}
        for rows in (got["trades"], want["trades"]):
            rows[:] = [(*r[:-2], None, None) if r[:2] in filed_before else r for r in rows]
    assert got == want


# -- a migration waiting on a reader ----------------------------------------------------------


def test_a_migration_waiting_on_a_dump_does_not_stall_the_rest_history(
    dsn: str, tmp_path: Path
) -> None:
    """Scenario: a database an older build made (through 0004) with a candle filed; a
    nightly ``pg_dump`` holds its tables (ACCESS SHARE, for the dump's hours); this build's
    writer starts and migrates: 0005's ``ALTER TABLE candles`` waits for the dump. A REST
    client asks for klines (``History.klines``: ``candles`` as every build keeps it).
    Expected: klines answer, as they did before the writer started: the migration gives up
    its lock request after a moment (``lock_timeout``) and tries again later, as the trade
    partitions ahead do since review 40. Was (fixed): the ALTER's request waits as long as the dump,
    every new reader of ``candles`` queues behind it, and klines fail on the statement
    timeout (a 503 at the REST API) until the dump ends."""
    cfg = make_cfg(tmp_path)
    btc = next(s for s in cfg.symbols if s.id == 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, _prefix(tmp_path, 4))
        conn.execute(
            "INSERT INTO candles VALUES (1, 60, '2025-01-01 00:00+00', 100, 110, 90, 105, 3, "
            "300, 2, 1, 2)"
        )
    dump = psycopg.connect(dsn)
    dump.execute("LOCK TABLE candles, orders, trades, checkpoint IN ACCESS SHARE MODE")
    migrating = psycopg.connect(dsn, autocommit=True)
    pid = migrating.info.backend_pid
    outcome: list[Any] = []

    def start() -> None:
        try:
            outcome.append(migrate(migrating))
        except psycopg.Error as exc:  # a lock timeout: the writer's _retry tries again
            outcome.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    try:
        _wait_until(
            "the migration waits on the dump or gave up",
            lambda: bool(outcome) or _waits_on_a_lock(dsn, pid),
        )

        async def ask() -> list[list[Any]]:
            history = History(dsn, max_connections=1, query_s=2.0)
            await history.pool.open(wait=True)
            try:
                return await history.klines(
                    btc, "1m", start_ms=1_735_689_600_000, limit=1, now_ms=1_735_689_700_000
                )
            finally:
                await history.close()

        try:
            answered: Any = asyncio.run(ask())
        except psycopg.Error as exc:
            answered = exc
        assert answered == [
            [
                1_735_689_600_000,
                "1.00",
                "1.10",
                "0.90",
                "1.05",
                "0.0003",
                1_735_689_659_999,
                "0.000300",
                2,
            ]
        ]
    finally:
        dump.close()
        thread.join(_DEADLINE_S)
        migrating.close()
