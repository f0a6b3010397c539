"""Review 35: the database schema's life (``procs/dbwriter``: migrations, trade partitions, the
writer's batches against them, the indexes the REST history's queries need).

Each test that names a fault failed before its fix (or is a strict xfail naming the fault
outside this review's files); its docstring says what was wrong, where, and what a venue's
DBA expects instead. The others pin what this review checked and found right. Everything
runs against the session's real PostgreSQL (``tests/unit/conftest.py``, a database per
test) and, where a journal is needed, the real sequencer and matchers (``journal_gen``).

TimescaleDB is not installable here (no package in this host's apt sources): its path
(``0002_trades.sql``) was checked against its documentation instead. A hypertable makes its
own 1-day chunks (so ``ringex_trade_partitions`` makes none), its key holds ``ts`` as a
hypertable's unique keys must, and ``create_hypertable`` adds a B-tree on ``ts`` by default,
which ``0010`` drops (the plain path has only the BRIN index): the rows are the same.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config.schema import RingexConfig
from procs.common.types import MAX_CLIENT_ID, Side
from procs.dbwriter.copy import pg_micros
from procs.dbwriter.migrate import MIGRATIONS, MigrationError, load, migrate
from procs.dbwriter.projection import ORDERS, TRADES, Batch
from procs.dbwriter.store import CheckpointMismatchError, PgStore
from procs.dbwriter.writer import DbWriter, WriterOptions
from procs.gateway.history import History
from tests.unit.dbwriter.journal_gen import JournalBuilder, fund, limit_order, make_cfg

_DAY_NS = 86_400 * 10**9
_YEAR_NS = 365 * _DAY_NS


class NoRetryError(Exception):
    """The writer's backoff was asked for: the batch failed with an error it retries."""


def _no_retry(_seconds: float) -> None:
    raise NoRetryError("the writer would retry (and, here, for ever)")


def _write_once(cfg: RingexConfig, dsn: str) -> int:
    """The whole journal in one batch, failing (not retrying) on a retryable error."""
    options = WriterOptions(batch_rows=10**6, batch_ms=10**6)
    writer = DbWriter(cfg, dsn, options, sleep=_no_retry)
    try:
        return writer.run(to_end=True)
    finally:
        writer.close()


def _funded(tmp_path: Path) -> tuple[RingexConfig, JournalBuilder]:
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    fund(b, 11, {1: 10**15, 2: 10**15})
    return cfg, b


def _trade_at(b: JournalBuilder, ts_ns: int) -> None:
    """One BTC-USD trade (10 sells to 11) stamped ``ts_ns``; the clock then goes on from it."""
    limit_order(b, 10, 1, Side.SELL, 100_000, 1)
    b.clock = ts_ns - 7_000_000_000  # the next command is stamped 7 s on
    limit_order(b, 11, 1, Side.BUY, 100_000, 1)


def _partitions(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'trades'::regclass ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def _day_name(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns // 10**9, dt.UTC).strftime("trades_%Y%m%d")


# -- migrations -------------------------------------------------------------------------------


def test_an_older_databases_schema_is_brought_up_and_a_second_run_does_nothing(
    dsn: str, tmp_path: Path
) -> None:
    """Checked: a database an older ringex made (its first migrations only) gets exactly the
    missing ones, in order, with its rows kept; migrating again applies nothing."""
    older = tmp_path / "older"
    older.mkdir()
    every = load()
    for m in every[:4]:
        shutil.copy(MIGRATIONS / m.name, older / m.name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert migrate(conn, older) == [m.name for m in every[:4]]
        conn.execute("UPDATE checkpoint SET last_seq = 42")
        assert migrate(conn) == [m.name for m in every[4:]]
        assert migrate(conn) == []
        assert conn.execute("SELECT last_seq FROM checkpoint").fetchone() == (42,)
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
        assert [v for (v,) in versions] == [m.version for m in every]


def test_a_database_from_a_newer_ringex_is_refused_naming_both_versions(
    dsn: str, tmp_path: Path
) -> None:
    """Fault (``migrate.py``): a database a newer ringex migrated was refused with only the
    database's migration named, not this ringex's newest, so the operator could not tell
    which build the schema needs from which it has. The message now names both."""
    newer = tmp_path / "newer"
    shutil.copytree(MIGRATIONS, newer)
    (newer / "0099_from_the_future.sql").write_text("CREATE TABLE future (id int);\n")
    newest = load()[-1]
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, newer)
        with pytest.raises(MigrationError) as refused:
            migrate(conn)
    message = str(refused.value)
    assert "0099_from_the_future.sql (version 99)" in message
    assert f"{newest.name} (version {newest.version})" in message


# -- partitions -------------------------------------------------------------------------------


def test_a_batch_across_a_clock_jump_makes_partitions_for_its_trades_days_only(
    tmp_path: Path, dsn: str
) -> None:
    """Fault (``store.py``, ``PgStore.ensure_partitions``): the partitions a batch needed were
    every day from its first trade's to its last's. A clock stepped 30 years ahead and back
    within one batch (an NTP step, a bad RTC at boot) asked for ~11,000 partitions in one
    statement: PostgreSQL ran out of lock slots ("out of shared memory", an
    ``OperationalError``), which the writer retries, for ever, and the history stops. Now a
    batch spanning more than a few days makes only the days its trades fall on."""
    cfg, b = _funded(tmp_path)
    now = b.clock
    _trade_at(b, now + 30 * _YEAR_NS)
    _trade_at(b, now + 60_000_000_000)
    b.close()
    assert _write_once(cfg, dsn) == b.last_seq
    days = {_day_name(t.ts_ns) for t in b.trades}
    made = set(_partitions(dsn))
    assert days <= made
    assert len(made - days) <= 4 + 1  # today and the days ahead (3), maybe across midnight
    with psycopg.connect(dsn) as conn:
        where = conn.execute("SELECT tableoid::regclass::text FROM trades ORDER BY seq").fetchall()
    assert [w for (w,) in where] == [_day_name(t.ts_ns) for t in b.trades]


def test_trades_either_side_of_the_postgres_epoch_land_in_their_own_days(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: a clock far behind (2000-01-01, PostgreSQL's epoch, where a trade's micros
    turn negative): the last nanosecond of 1999 and the first of 2000 in one batch go to
    ``trades_19991231`` and ``trades_20000101`` (days by floor division, not truncation)."""
    cfg, b = _funded(tmp_path)
    y2k = 946_684_800 * 10**9
    _trade_at(b, y2k - 1)
    _trade_at(b, y2k)
    b.close()
    assert _write_once(cfg, dsn) == b.last_seq
    with psycopg.connect(dsn) as conn:
        where = conn.execute("SELECT tableoid::regclass::text FROM trades ORDER BY ts").fetchall()
    assert where == [("trades_19991231",), ("trades_20000101",)]


def _blocked_on_a_lock(conn: psycopg.Connection[Any], pid: int) -> bool:
    row = conn.execute(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchone()
    return row is not None and row[0] == "Lock"


def test_two_writers_making_the_same_days_partition_at_once_both_go_on(dsn: str) -> None:
    """Fault (``0002_trades.sql``, ``ringex_trade_partitions``): it looked for the day's table
    and then created it. Two writers at once (a failover's old and new writer, a replay to
    the database beside the live one) both looked, one created, the other's CREATE waited on
    its lock and then failed "relation already exists" (a ``ProgrammingError``: the writer
    crashed, not retried). Now a day another writer made meanwhile counts as made
    (``0010``)."""
    with psycopg.connect(dsn, autocommit=True) as setup:
        migrate(setup)
    errors: list[BaseException] = []
    with psycopg.connect(dsn) as first, psycopg.connect(dsn, autocommit=True) as second:
        first.execute("SELECT ringex_trade_partitions('2031-05-01', '2031-05-02')")
        pid = second.info.backend_pid

        def make() -> None:
            try:
                second.execute("SELECT ringex_trade_partitions('2031-05-01', '2031-05-02')")
            except BaseException as exc:  # handed to the test's thread
                errors.append(exc)

        worker = threading.Thread(target=make)
        worker.start()
        with psycopg.connect(dsn, autocommit=True) as watch:
            deadline = time.monotonic() + 10
            while not _blocked_on_a_lock(watch, pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        first.commit()  # the first writer's partitions are in; the second's CREATE goes on
        worker.join(10)
    assert errors == []
    assert _partitions(dsn) == ["trades_20310501", "trades_20310502"]


# -- two writers ----------------------------------------------------------------------------


def _empty_batch(first: int, last: int, *, prev_crc: int | None, last_crc: int) -> Batch:
    batch = Batch(first_seq=first, last_seq=last, prev_crc=prev_crc, last_crc=last_crc)
    batch.sealed = True
    return batch


def test_a_writer_following_another_journal_does_not_write_over_the_others_history(
    tmp_path: Path, dsn: str
) -> None:
    """Fault (``store.py``, ``PgStore.write``): two writers on one database, each following its
    own journal (a failover's old primary, its tail never shipped, and the new one, whose
    seqs went to other commands). The checkpoint row's lock orders their batches, but a
    batch whose bounds matched the other's commit was taken as this writer's own ("committed
    already": skipped, its rows never written), and one that began at the other's checkpoint
    was written on top of it: the database held a history neither journal has. The
    checkpoint keeps the CRC-32 of the journal entry it was written from (``0009``); a batch
    now carries the one its writer read before its first seq, and either mismatch is refused
    (``OtherHistoryError``: not ``behind``, the writer stops)."""
    store = PgStore(dsn, make_cfg(tmp_path))
    try:
        assert store.write(_empty_batch(1, 10, prev_crc=None, last_crc=0xAAAA))
        assert not store.write(_empty_batch(1, 10, prev_crc=None, last_crc=0xAAAA))  # a retry
        with pytest.raises(CheckpointMismatchError, match="another writer") as same_bounds:
            store.write(_empty_batch(1, 10, prev_crc=None, last_crc=0xBBBB))
        assert not same_bounds.value.behind
        with pytest.raises(CheckpointMismatchError, match="another writer"):
            store.write(_empty_batch(11, 20, prev_crc=0xBBBB, last_crc=0xCCCC))
        assert store.checkpoint_entry() == (10, 0xAAAA)
        assert store.write(_empty_batch(11, 20, prev_crc=0xAAAA, last_crc=0xDDDD))
    finally:
        store.close()


def test_a_writer_carries_the_crc_it_read_before_each_batch(tmp_path: Path, dsn: str) -> None:
    """Checked with the fix above: a writer's batches follow one another (each one's
    ``prev_crc`` is the last one's ``last_crc``) and a restarted writer's first batch takes
    the checkpoint's, so a journal written by writer after writer is never refused."""
    cfg, b = _funded(tmp_path)
    seen: list[tuple[int | None, int | None]] = []

    def run_writer() -> None:
        writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=3, batch_ms=10**6))
        writer.store.before_commit.append(
            lambda _conn, batch: seen.append((batch.prev_crc, batch.last_crc))
        )
        try:
            assert writer.run(to_end=True) == b.last_seq
        finally:
            writer.close()

    run_writer()
    first_run = len(seen)
    _trade_at(b, b.clock + 10**9)
    b.close()
    run_writer()
    assert 2 < first_run < len(seen)
    assert seen[0][0] is None
    assert all(prev == last for (_, last), (prev, _) in itertools.pairwise(seen))


# -- column types -----------------------------------------------------------------------------


def test_values_at_the_records_bounds_fit_their_columns(tmp_path: Path, dsn: str) -> None:
    """Checked: every id, price, size and fee a record may hold (``U64``/``I64``: up to 2**63 -
    1, prices down to -2**63) goes through the binary COPY into its ``bigint`` column as
    is; a symbol id at its config bound (2**31 - 1) fits ``integer``."""
    top, low = 2**63 - 1, -(2**63)
    ts = pg_micros(1_763_000_000 * 10**9)
    batch = Batch(first_seq=1, last_seq=1, last_crc=1)
    trade = (2**31 - 1, top, 1, ts, low, top, 2, top, top, top, top, top, top)
    assert len(trade) == len(TRADES.names)
    batch.trades.add(2**31 - 1, 1, trade)
    batch.ts_min_us = batch.ts_max_us = ts
    longest = b"x" * MAX_CLIENT_ID  # the longest client id a record carries
    order = (top, top, 2**31 - 1, 1, 1, 1, top, low, top, top, top, 1, 0, 1, ts, 1, ts, 1, top)
    row = (*order, longest)
    assert len(row) == len(ORDERS.names)
    batch.order_rows.add(row)
    batch.sealed = True
    store = PgStore(dsn, make_cfg(tmp_path), lanes=1)
    try:
        assert store.write(batch)
    finally:
        store.close()
    with psycopg.connect(dsn) as conn:
        got_trade = conn.execute(f"SELECT {TRADES.column_list} FROM trades").fetchone()
        got_order = conn.execute(f"SELECT {ORDERS.column_list} FROM orders").fetchone()
    assert got_trade is not None and got_order is not None
    assert got_trade[:3] + got_trade[4:] == trade[:3] + trade[4:]
    assert got_order[:14] + got_order[15:16] + got_order[17:19] == (*order[:14], 1, *order[17:19])
    assert got_order[19] == longest.decode()


# -- the history's indexes --------------------------------------------------------------------

_BUSY, _QUIET = 7, 8  # a market maker in most orders and trades, and an account beside it


def _history_sql(dsn: str, calls: Any) -> list[tuple[str, tuple[Any, ...]]]:
    """The SQL ``History`` sends for ``calls(history)`` (captured, not run)."""
    captured: list[tuple[str, tuple[Any, ...]]] = []

    class Capturing(History):
        async def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            captured.append((sql, args))
            return []

    asyncio.run(calls(Capturing(dsn)))
    return captured


def _rows_read(conn: psycopg.Connection[Any], sql: str, args: tuple[Any, ...]) -> int:
    """How many rows the plan's scans of orders or trades (any partition) read: those they
    returned and those their filters removed."""
    plan = conn.execute(b"EXPLAIN (ANALYZE, FORMAT JSON) " + sql.encode(), args).fetchone()
    assert plan is not None
    doc = plan[0] if isinstance(plan[0], list) else json.loads(plan[0])
    total = 0
    stack = [doc[0]["Plan"]]
    while stack:
        node = stack.pop()
        relation = node.get("Relation Name", "")
        if relation == "orders" or relation.startswith("trades"):
            assert node["Node Type"] != "Seq Scan" or node["Actual Rows"] == 0, node
            taken = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            total += taken * node.get("Actual Loops", 1)
        stack.extend(node.get("Plans", []))
    return total


def _busy_database(dsn: str) -> None:
    """200,000 orders and trades over 20 days, the busy account on most of both; the quiet
    one's orders on the first symbol are its oldest, the rest on the other symbol."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        conn.execute("SELECT ringex_trade_partitions('2025-01-01', '2025-01-25')")
        conn.execute(
            "INSERT INTO orders SELECT i, CASE WHEN i <= 2000 OR i % 10 = 0 THEN 8 ELSE 7 END,"
            " CASE WHEN i <= 2000 THEN 1 WHEN i % 10 = 0 THEN 2 ELSE 1 + i % 3 / 2 END,"
            " 1, 1, 1, 100, 0, 1, 1, 0, CASE WHEN i % 50 = 0 THEN 1 ELSE 3 END, 0, i, now(), i,"
            " now(), 0, 0 FROM generate_series(1, 200000) i"
        )
        conn.execute(
            "INSERT INTO trades SELECT 1, i, i, '2025-01-01'::timestamptz + i * interval '8 s',"
            " 100, 1, 1, i, CASE WHEN i % 4 = 0 THEN 8 ELSE 7 END, i,"
            " CASE WHEN i % 4 = 1 THEN 8 ELSE 9 END, 0, 0 FROM generate_series(1, 200000) i"
        )
        conn.execute("ANALYZE")


@pytest.fixture
def busy(dsn: str) -> str:
    _busy_database(dsn)
    return dsn


def test_all_orders_of_an_account_reads_only_the_rows_it_answers(busy: str) -> None:
    """Fault (``0001_core.sql``: ``orders_account (account_id, created_seq)``): allOrders
    (``History.orders``: one account, one symbol, by id, newest first without a start, from
    an id with one) had no index in its order: the planner took every order of the account,
    every symbol's, and sorted them (a bitmap scan: an account of 1,000 orders read 1,000
    to answer 10), or walked the primary key backwards filtering on the account (here 91
    rows for 10). ``0010`` indexes (account_id, symbol_id, id) in place of it: 10 entries.
    An account whose newest orders on a symbol are old was still answered by the primary key
    walked back over every newer order of everyone, until ``history.py`` asked by a row
    comparison on the index's columns (``test_history_plans.py`` pins that)."""

    async def calls(h: History) -> None:
        await h.orders(_BUSY, 1, limit=10)
        await h.orders(_BUSY, 1, from_id=150_000, limit=10)
        await h.orders(_QUIET, 1, from_id=1_500, limit=10)
        await h.orders(_QUIET, 2, limit=10)
        await h.order(_BUSY, 4242)

    with psycopg.connect(busy) as conn:
        for sql, args in _history_sql(busy, calls):
            assert _rows_read(conn, sql, args) <= 40, (sql, args)


def test_my_trades_of_a_busy_account_reads_only_the_rows_it_answers(
    tmp_path: Path, busy: str
) -> None:
    """Fault (``procs/gateway/history.py``, ``History.trades``; fixed after the review):
    myTrades was ``(maker side) UNION ALL (taker side) ORDER BY trade_id LIMIT n``, the limit
    outside the union, so PostgreSQL took every trade of the account on the symbol
    before it can sort them: for an account on most trades (a market maker) that is a
    parallel sequential scan of every day's partition, at every request. With ``ORDER BY
    trade_id [DESC] LIMIT n`` inside each side as well, each is a merge of the partitions'
    (account, symbol, trade_id) index scans and reads n rows (checked by hand: 11 rows read
    where this reads 150,000)."""
    sym = make_cfg(tmp_path).symbols[0]

    async def calls(h: History) -> None:
        await h.trades(_BUSY, sym, limit=10)
        await h.trades(_BUSY, sym, from_id=100_000, limit=10)

    with psycopg.connect(busy) as conn:
        for sql, args in _history_sql(busy, calls):
            assert _rows_read(conn, sql, args) <= 40, sql
