"""Review 40, the crash points and limits of the database writer that were tried and held
(``test_checked_``): a crash between lanes or before a batch's commit, a commit whose answer
was lost, an order from before the writer's snapshot, migrations run twice at once or cut
short, values at their bounds, a mass cancel of thousands of orders, a symbol added later.
The faults the review found, and how the harness works, are in
``test_review40_writer_faults.py``.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from config.schema import AssetConfig, MatcherConfig, RingexConfig, SymbolConfig
from procs.common.records import CancelOrder, MassCancel, Transfer
from procs.common.types import Side
from procs.core.recovery import restore_matchers
from procs.core.sequencer import Sequencer
from procs.dbwriter.migrate import MIGRATIONS, load, migrate
from procs.dbwriter.projection import CANCELLED, MASS_CANCELLED, Batch
from procs.dbwriter.replay import snapshot_store
from procs.dbwriter.store import PgStore
from procs.dbwriter.writer import DbWriter, WriterOptions
from tests.unit.dbwriter.journal_gen import (
    JournalBuilder,
    build,
    fund,
    limit_order,
    make_cfg,
    write_all,
)
from tests.unit.dbwriter.reconcile import reconcile
from tests.unit.dbwriter.test_review40_writer_faults import _QUICK, CrashError, _state


def test_checked_a_crash_between_one_lanes_commit_and_the_others_is_written_once(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: the writer dies after lane 0 committed the third batch's ETH-USD trades and
    before lane 1 (BTC-USD) did, so before the batch too. Restarted with other batch bounds
    (its first batch ends inside the one lane 0 wrote, then one past it), lane 0 sends only
    what follows its own checkpoint and lane 1 everything it lacks: every trade once,
    candles, balances and orders as the live exchange has them."""
    cfg = make_cfg(tmp_path)
    live = build(cfg, 2000)
    live.close()
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=300, batch_ms=10**6))
    write_lane = writer.store._write_lane
    batches = 0

    def lane(k: int, symbols: list[int], batch: Batch) -> None:
        nonlocal batches
        if k == 1:
            batches += 1
            if batches == 3:
                raise CrashError  # lane 0's result is read (and its commit made) first
        write_lane(k, symbols, batch)

    writer.store._write_lane = lane  # type: ignore[method-assign, assignment]
    with pytest.raises(CrashError):
        writer.run(to_end=True)
    writer.close()
    at, lanes = _state(dsn)
    assert lanes[0] > at >= lanes[1] > 0
    restarted = DbWriter(cfg, dsn, WriterOptions(batch_rows=97, batch_ms=10**6))
    assert restarted.run(to_end=True) == live.last_seq
    restarted.close()
    reconcile(dsn, live)


def test_checked_a_connection_killed_before_the_batchs_commit_is_retried_not_skipped(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: PostgreSQL ends the writer's main session (``pg_terminate_backend``: an
    administrator, a restart) inside the third batch's transaction, after its lanes
    committed. The COMMIT fails (``OperationalError``), ``_retry`` writes the same batch
    again on a new connection: the lanes, ahead, skip their trades, the rest is written
    once (candles not doubled, balances absolute), nothing skipped."""
    cfg = make_cfg(tmp_path)
    live = build(cfg, 1500)
    live.close()
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6, backoff=_QUICK))
    seen: list[tuple[int, dict[int, int], int]] = []

    def kill(conn: psycopg.Connection[Any], batch: Batch) -> None:
        if len(seen) == 0 and batch.trades.count and batch.first_seq > 400:
            with psycopg.connect(dsn, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s, 5000)", (conn.info.backend_pid,))
            seen.append((*_state(dsn), batch.last_seq))

    writer.store.before_commit.append(kill)
    assert writer.run(to_end=True) == live.last_seq
    writer.close()
    [(at, lanes, last)] = seen
    assert at < last and max(lanes.values()) == last  # the lanes were in, the batch not
    assert writer.store.connections >= 2  # it reconnected and wrote again
    reconcile(dsn, live)


def test_checked_a_commit_whose_answer_was_lost_counts_candles_once(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: a batch committed whose answer never came (the connection broke after the
    server committed) is retried by ``_retry``; the retry finds the checkpoint at the
    batch's end and writes nothing, so the candles' merged volumes and trade counts, which
    are added, not set, count each trade once; balances are absolute values, kept by seq."""
    cfg = make_cfg(tmp_path)
    live = build(cfg, 1500)
    live.close()
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=150, batch_ms=10**6, backoff=_QUICK))
    write = writer.store.write
    answers: list[bool] = []

    def lost_answer(batch: Batch) -> bool:
        answered = write(batch)
        answers.append(answered)
        if len(answers) in (2, 6, 11):  # committed, then the connection broke
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return answered

    writer.store.write = lost_answer  # type: ignore[method-assign]
    assert writer.run(to_end=True) == live.last_seq
    writer.close()
    assert [i for i, a in enumerate(answers) if not a] == [2, 6, 11]  # each retry: a no-op
    reconcile(dsn, live)


def test_checked_a_cancel_of_an_order_from_before_the_writers_snapshot_is_filed(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: an order placed before the writer's snapshot, then a restart that restores
    the snapshot (so the order's NewOrder is not replayed), then its cancel and a partial
    fill of another such order: both rows move on from the snapshot's open orders, and the
    balances they free are filed."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    fund(b, 11, {1: 10**15, 2: 10**15})
    old = limit_order(b, 10, 1, Side.SELL, 200_000, 5)
    half = limit_order(b, 10, 1, Side.SELL, 150_000, 8)
    options = WriterOptions(batch_rows=2, batch_ms=10**6, snapshot_every=1)
    first = DbWriter(cfg, dsn, options)
    assert first.run(to_end=True) == b.last_seq
    first.close()
    snapped = snapshot_store(cfg).latest()
    assert snapped is not None and snapped[0] == b.last_seq
    b.submit(CancelOrder(*b._header(10, 1), old))
    limit_order(b, 11, 1, Side.BUY, 150_000, 3)
    b.close()
    second = DbWriter(cfg, dsn, options)
    assert second.start().seq == snapped[0]  # restored, not replayed
    assert second.run(to_end=True) == b.last_seq
    second.close()
    with psycopg.connect(dsn) as conn:
        query = "SELECT id, status, filled, remaining FROM orders"
        rows = {r[0]: r[1:] for r in conn.execute(query)}
    assert rows[old] == (CANCELLED, 0, 0)
    assert rows[half][1:] == (3, 5)
    reconcile(dsn, b)


def test_checked_migrations_run_by_two_writers_at_once_or_cut_short(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: two writers opening a fresh database at once (each ``PgStore.open``:
    migrations, reference data, temp tables, the lanes' layout) both go on, every migration
    applied and recorded once; and a migration whose session is ended part-way (after its
    first statement: a SIGKILLed writer, a server restart) leaves nothing of itself, so the
    next run applies it whole."""
    cfg = make_cfg(tmp_path)
    gate = threading.Barrier(2)
    errors: list[BaseException] = []
    stores = [PgStore(dsn, cfg), PgStore(dsn, cfg)]

    def open_store(store: PgStore) -> None:
        try:
            gate.wait(10)
            store.open()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=open_store, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in stores:
        s.close()
    assert errors == []
    every = load()
    with psycopg.connect(dsn) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        (lanes,) = conn.execute("SELECT count(*) FROM trade_lanes").fetchone() or (0,)
    assert versions == [m.version for m in every] and lanes == cfg.database.trade_lanes

    later = tmp_path / "later"
    shutil.copytree(MIGRATIONS, later)
    (later / "0099_r40_slow.sql").write_text(
        "CREATE TABLE r40_half (id int);\nSELECT pg_sleep(30);\nCREATE TABLE r40_rest (id int);\n"
    )
    failed: list[BaseException] = []
    with psycopg.connect(dsn, autocommit=True) as victim:
        pid = victim.info.backend_pid

        def run() -> None:
            try:
                migrate(victim, later)
            except BaseException as exc:  # the session's end, expected
                failed.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        with psycopg.connect(dsn, autocommit=True) as watch:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                row = watch.execute(
                    "SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
                if row is not None and row[0] == "PgSleep":
                    break
                time.sleep(0.02)
            watch.execute("SELECT pg_terminate_backend(%s)", (pid,))
        thread.join(10)
    assert len(failed) == 1 and isinstance(failed[0], psycopg.OperationalError)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('r40_half')").fetchone() == (None,)
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (
            every[-1].version,
        )
        (later / "0099_r40_slow.sql").write_text("CREATE TABLE r40_half (id int);\n")
        assert migrate(conn, later) == ["0099_r40_slow.sql"]


def _bounds_cfg(tmp_path: Path) -> RingexConfig:
    """One symbol and two assets with ids at their config bound (the database's integer)."""
    top = 2**31 - 1
    cfg = make_cfg(tmp_path)
    return msgspec.structs.replace(
        cfg,
        assets=[
            AssetConfig(name="USD", id=top, decimals=6),
            AssetConfig(name="BTC", id=top - 1, decimals=8),
        ],
        symbols=[
            SymbolConfig(name="BTC-USD", id=top, price_decimals=2, qty_decimals=4, base="BTC")
        ],
        matchers=[MatcherConfig(name="m1", symbols=["BTC-USD"])],
        risk=msgspec.structs.replace(cfg.risk, fee_account=2**63 - 3),
    )


def test_checked_ids_prices_and_times_at_their_bounds_go_through_the_writer(
    tmp_path: Path, dsn: str
) -> None:
    """Checked, through the real router and the whole writer (lanes, candles, balances,
    partitions): accounts 2**63 - 1 and 2**63 - 2 and a fee account beside them, symbol and
    asset ids 2**31 - 1, a transfer key 2**63 - 1, a price of 4 * 10**18 ticks, a day's quote
    volume past 2**63 (numeric), balances near 2**63, and every command stamped in the last
    minutes a ``U64`` nanosecond clock can hold (2262-04-11, its own day partition)."""
    cfg = _bounds_cfg(tmp_path)
    usd, btc, sym = 2**31 - 1, 2**31 - 2, 2**31 - 1
    a, z = 2**63 - 1, 2**63 - 2
    b = JournalBuilder(cfg)
    b.clock = 2**63 - 1 - 700 * 10**9  # ~11 minutes before the clock's end
    fund(b, a, {usd: 6 * 10**18, btc: 2 * 10**17})
    fund(b, z, {usd: 3 * 10**18 - 1})
    assert b.submit(Transfer(0, 0, 1, 1, b._next(), z, btc, 2 * 10**17, 2**63 - 1))
    limit_order(b, z, sym, Side.SELL, 4 * 10**18, 1)
    limit_order(b, a, sym, Side.BUY, 4 * 10**18, 1)
    limit_order(b, a, sym, Side.SELL, 9 * 10**9, 590_000_000)
    limit_order(b, z, sym, Side.BUY, 9 * 10**9, 590_000_000)
    b.close()
    assert len(b.trades) == 2
    assert write_all(cfg, dsn, batch_rows=3) == b.last_seq
    reconcile(dsn, b)
    with psycopg.connect(dsn) as conn:
        day = conn.execute(
            "SELECT quote_volume, trades, to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD') "
            "FROM candles WHERE interval_s = 86400"
        ).fetchall()
        where = conn.execute("SELECT DISTINCT tableoid::regclass::text FROM trades").fetchall()
        (key,) = conn.execute("SELECT max(key) FROM transfers").fetchone() or (0,)
    assert day == [(4 * 10**18 + 9 * 10**9 * 590_000_000, 2, "2262-04-11")]
    assert day[0][0] > 2**63 and where == [("trades_22620411",)] and key == 2**63 - 1


def test_checked_a_mass_cancel_of_thousands_of_orders_is_written_as_one_batch(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: an account with 3,000 resting orders mass-cancelled by one command: the
    batch holds every order's final row (thirty times ``batch_rows``: a command is never
    split between batches) and its freed balances; every order mass-cancelled, nothing else."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15, 3: 10**15})
    orders = [limit_order(b, 10, 1 + i % 2, Side.SELL, 200_000 + i % 50, 1) for i in range(3000)]
    gw, session, ref, account = b._header(10, 0)[2:6]
    b.submit(MassCancel(0, 0, gw, session, ref, account, 0))
    b.close()
    sizes: list[int] = []
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=100, batch_ms=10**6))
    writer.store.before_commit.append(lambda _c, batch: sizes.append(len(batch.orders)))
    assert writer.run(to_end=True) == b.last_seq
    writer.close()
    assert sizes[-1] == 3000
    with psycopg.connect(dsn) as conn:
        query = "SELECT status, count(*) FROM orders GROUP BY 1"
        statuses: dict[int, int] = dict(conn.execute(query).fetchall())
    assert statuses == {MASS_CANCELLED: len(orders)}
    reconcile(dsn, b)


def test_checked_a_symbol_added_later_is_filed_after_a_restore(tmp_path: Path, dsn: str) -> None:
    """Checked: a symbol (with a new asset and a new matcher) added to the config after the
    writer's snapshot: the router restarts on the new config, trades it; the writer,
    restarted on it too, restores the snapshot (its matchers lack the new one, which starts
    empty), files the new symbol's reference row, its trades on its lane, its candles and
    the new asset's balances."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    fund(b, 11, {1: 10**15, 2: 10**15})
    limit_order(b, 10, 1, Side.SELL, 100_000, 5)
    limit_order(b, 11, 1, Side.BUY, 100_000, 5)
    options = WriterOptions(batch_rows=2, batch_ms=10**6, snapshot_every=1)
    writer = DbWriter(cfg, dsn, options)
    assert writer.run(to_end=True) == b.last_seq
    writer.close()
    snapped = snapshot_store(cfg).latest()
    assert snapped is not None and snapped[0] == b.last_seq
    grown = msgspec.structs.replace(
        cfg,
        assets=[*cfg.assets, AssetConfig(name="SOL", id=4, decimals=8)],
        symbols=[*cfg.symbols, SymbolConfig(name="SOL-USD", id=3, base="SOL", qty_decimals=4)],
        matchers=[*cfg.matchers, MatcherConfig(name="m2", symbols=["SOL-USD"])],
    )
    b.cfg = grown  # the router's restart on the new config: its state, restored
    b.sequencer = Sequencer.restore(grown, b.sequencer.snapshot())
    b.matchers = restore_matchers(grown, {n: m.snapshot() for n, m in b.matchers.items()})
    b.owner = {grown.symbol(s).id: m.name for m in grown.matchers for s in m.symbols}
    for account in (10, 11):
        assert b.submit(Transfer(0, 0, 1, 1, b._next(), account, 4, 10**15, b.ref))
    limit_order(b, 10, 3, Side.SELL, 2_000, 7)
    limit_order(b, 11, 3, Side.BUY, 2_000, 7)
    limit_order(b, 11, 1, Side.BUY, 100_000, 2)
    b.close()
    assert [t.symbol for t in b.trades] == [1, 3]
    restarted = DbWriter(grown, dsn, options)
    assert restarted.start().seq == snapped[0]
    assert restarted.run(to_end=True) == b.last_seq
    restarted.close()
    reconcile(dsn, b)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT name FROM symbols WHERE id = 3").fetchone() == ("SOL-USD",)
        candles = conn.execute(
            "SELECT interval_s, volume, trades FROM candles WHERE symbol_id = 3 ORDER BY 1"
        ).fetchall()
    assert candles == [(60, 7, 1), (3_600, 7, 1), (86_400, 7, 1)]
