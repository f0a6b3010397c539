"""Review 185: a hostile review of the database writer (``procs/dbwriter``).

Reviewed: ``writer.py`` (start, the follow loop, flush and snapshots, retries, the idle
checkpoint look, ``_run_again``), ``store.py`` (``write``, the lanes, ``rewind_lanes``,
``_lay_out``, partitions, the orphans), ``committer.py``, ``projection.py`` (rows, balances
sealed per batch, candles), ``copy.py``, ``replay.py``, ``migrate.py`` and the migrations'
column types against the records' ranges (``procs/common/records.py``, ``types.py``),
``main.py``, and README's dbwriter row and ``[database]`` section.

Method: a journal made by the real sequencer and matchers (``journal_gen``), filed by the
real ``DbWriter`` (committer thread, two trade lanes) into the session's PostgreSQL
(``tests/unit/conftest.py``'s ``dsn``), killed again and again by an exception raised from a
monkeypatched method at chosen points: between two binary COPYs of a batch's main
transaction, inside a lane's COPY (another lane may have committed: a lane ahead), just
before the batch's commit, and just after it (the commit made, the process dead before it
knew). After each death the database is held against the router's state replayed to the
checkpoint seq (balances, open orders), and at the end every table is compared row for row,
timestamps and ``updated_seq`` included, with a database filed by one clean writer in one
batch: the rows must not depend on batching nor on where the writer died. The candles are
compared with the market-data feed's ``CandleSeries`` fed the same trades.

Held (plain tests): every property above. Value ranges: every integer column a record feeds
is int8 or wider where the record's field is U64/I64 (ids, prices, sizes, fees: a fee is at
most the notional a buyer held, <= 2^63-1), ``flags`` (U8) fits int2, candle volume and quote
volume are numeric (0005), the checkpoint's CRC (u32) is bigint; client ids are at most 36
printable ASCII bytes (``types.client_id_of``) into ``text``.

Faults found: none shown by a failing test in this review's time. No strict xfail here.

Leads suspected, not shown:
- ``store.py`` ``_end_stale_holders``: a live writer's main session sits "idle in
  transaction" on the checkpoint's lock while its lanes COPY (``write`` waits on them); a
  second writer (``ringex replay --to-db`` beside the live one) that waits 2 s on that lock
  terminates it whenever a batch's lanes take longer than ``ORPHAN_IDLE_S`` (a huge batch on
  a slow server). Its docstring says a live writer is "never idle that long". Fix: mark the
  main session (``SET application_name`` per batch, or an advisory lock held by live writers)
  and end only sessions whose process is gone.
- ``store.py`` ``prepare``: assets and symbols are upserted one by one on ``id`` with ``name``
  UNIQUE, so a config that swaps two names (or renames onto a name another id held) fails
  every start with a unique violation naming no config key. Fix: upsert under a deferred
  constraint, or rename to temporary names first.
- ``writer.py`` ``start``: the CRC of the checkpoint's entry is checked with ``_entry_crcs``,
  which finds nothing where the entry's segment was archived and the archive then deleted
  (``archivable_before`` keeps it only while the writer's oldest snapshot is above it); the
  refusal then says "the journal lost a tail", not "archived segment missing".
- A ``NewOrder.client_id`` that is not UTF-8 (a gateway path that skipped
  ``client_id_of``) would fail the ``orders`` COPY on every restart (a poison batch); the
  router does not re-check it.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config.schema import RingexConfig
from procs.common.topology import snapshot_dir
from procs.core.market.candles import CandleSeries
from procs.dbwriter import store as store_mod
from procs.dbwriter.projection import OPEN_STATUSES, Batch
from procs.dbwriter.replay import Follower
from procs.dbwriter.store import PgStore
from procs.dbwriter.writer import Backoff, DbWriter, WriterOptions
from tests.unit.dbwriter.journal_gen import JournalBuilder, build, make_cfg, write_all
from tests.unit.dbwriter.reconcile import reconcile

_QUICK = Backoff(0.01, 0.1)
_names = itertools.count()


class CrashError(Exception):
    """The writer process dies here (inside a transaction: the server rolls it back)."""


# -- harness ------------------------------------------------------------------------------


@pytest.fixture
def ref_dsn(dsn: str) -> Iterator[str]:
    """A second empty database beside ``dsn``, for the clean reference filing."""
    name = dsn.split("dbname=")[1].split(maxsplit=1)[0]
    admin = dsn.replace(f"dbname={name}", "dbname=postgres")
    ref = f"r185_{os.getpid()}_{next(_names)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {ref}")
    yield dsn.replace(f"dbname={name}", f"dbname={ref}")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {ref} WITH (FORCE)")


_TABLES = {
    "accounts": "SELECT * FROM accounts ORDER BY id",
    "orders": "SELECT * FROM orders ORDER BY id",
    "trades": "SELECT * FROM trades ORDER BY symbol_id, trade_id",
    "transfers": "SELECT * FROM transfers ORDER BY seq",
    "balances": "SELECT * FROM balances ORDER BY account_id, asset_id",
    "candles": "SELECT * FROM candles ORDER BY symbol_id, interval_s, bucket",
    "checkpoint": "SELECT last_seq, last_crc FROM checkpoint",
}


def _dump(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as conn:
        return {table: conn.execute(sql).fetchall() for table, sql in _TABLES.items()}


def _checkpoint(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT last_seq FROM checkpoint").fetchone()
        assert row is not None
        return int(row[0])


class Killer:
    """Raises ``CrashError`` at the ``n``-th pass through a chosen point (then disarms)."""

    def __init__(self) -> None:
        self.left = -1  # disarmed

    def arm(self, n: int) -> None:
        self.left = n

    def tick(self) -> None:
        if self.left < 0:
            return
        self.left -= 1
        if self.left < 0:
            raise CrashError


def _install(monkeypatch: pytest.MonkeyPatch, point: str, killer: Killer) -> None:
    """Crash points: ``copy`` (before any binary COPY: main transaction or a lane's thread),
    ``commit`` (the batch's last statement before its commit), ``after`` (once ``write``
    committed, before the writer took note)."""
    if point == "copy":
        original_copy = store_mod._copy_binary

        def copy(cur: psycopg.Cursor[Any], layout: Any, payload: bytes, into: str = "") -> None:
            killer.tick()
            original_copy(cur, layout, payload, into)

        monkeypatch.setattr(store_mod, "_copy_binary", copy)
    elif point == "after":
        original_write = PgStore.write

        def write(self: PgStore, batch: Batch) -> bool:
            done = original_write(self, batch)
            killer.tick()
            return done

        monkeypatch.setattr(PgStore, "write", write)


def _writer(cfg: RingexConfig, dsn: str, killer: Killer, point: str, rows: int) -> DbWriter:
    writer = DbWriter(
        cfg,
        dsn,
        WriterOptions(
            batch_rows=rows, batch_ms=10**6, snapshot_every=97, backoff=_QUICK, report_s=10**6
        ),
    )
    if point == "commit":

        def hook(_conn: psycopg.Connection[Any], _batch: Batch) -> None:
            killer.tick()

        writer.store.before_commit.append(hook)
    return writer


def _replayed_to(cfg: RingexConfig, seq: int) -> Follower:
    """The router's state at ``seq``, replayed from seq 1 (no snapshot)."""
    writer = DbWriter(cfg, "host=/nonexistent dbname=x")  # its reader and codec only
    follower = Follower(cfg)
    for s, image in writer.replayed.entries(1):
        if s > seq:
            break
        command = writer.codec.decode_slot(image)
        follower.projection.process(s, command, follower.step(s, command), None)
    assert follower.seq == seq
    return follower


def _held_against_replay(cfg: RingexConfig, dsn: str) -> None:
    """The database at its checkpoint against the router's state replayed to that seq:
    every balance (exact) and every open order's remaining and filled."""
    at = _checkpoint(dsn)
    if not at:
        return
    follower = _replayed_to(cfg, at)
    decimals = {a.id: a.decimals for a in cfg.assets}
    want = {
        (acc, asset): (Decimal(f).scaleb(-decimals[asset]), Decimal(r).scaleb(-decimals[asset]))
        for acc, asset, f, r in follower.sequencer.accounts.state().balances
    }
    with psycopg.connect(dsn) as conn:
        got = {
            (int(a), int(s)): (f, r)
            for a, s, f, r in conn.execute(
                "SELECT account_id, asset_id, free, reserved FROM balances"
            ).fetchall()
        }
        open_rows = {
            int(r[0]): (int(r[1]), int(r[2]))
            for r in conn.execute(
                "SELECT id, remaining, filled FROM orders WHERE status = ANY(%s)",
                (list(OPEN_STATUSES),),
            ).fetchall()
        }
        past = conn.execute(
            "SELECT count(*) FROM orders WHERE updated_seq > %s OR created_seq > %s", (at, at)
        ).fetchone()
    assert {k: v for k, v in got.items() if v != (0, 0)} == want, f"balances at seq {at}"
    resting = {
        oid for m in follower.matchers.values() for b in m.books.values() for oid in b.orders
    }
    assert sorted(open_rows) == sorted(resting), f"open orders at seq {at}"
    replayed = follower.projection.orders
    for oid, (remaining, filled) in open_rows.items():
        assert (remaining, filled) == (replayed[oid].remaining, replayed[oid].filled), oid
    assert past == (0,), f"order rows past the checkpoint {at}"


def _run_with_crashes(
    cfg: RingexConfig, dsn: str, monkeypatch: pytest.MonkeyPatch, point: str, seed: int
) -> int:
    """File the journal, dying at ``point`` at random passes until a run gets through;
    returns the number of deaths."""
    rng = random.Random(seed)
    killer = Killer()
    _install(monkeypatch, point, killer)
    deaths = 0
    for attempt in range(31):
        killer.arm(rng.randint(0, 4) if attempt < 30 else -1)  # the last run lives
        writer = _writer(cfg, dsn, killer, point, rows=rng.choice((7, 13, 29, 61)))
        try:
            writer.run(to_end=True)
        except CrashError:
            deaths += 1
            _held_against_replay(cfg, dsn)
            continue
        finally:
            writer.close()
        return deaths
    raise AssertionError("the writer never got through")


def _journal(tmp_path: Path, commands: int = 260, seed: int = 185) -> JournalBuilder:
    cfg = make_cfg(tmp_path)
    live = build(cfg, commands, seed=seed)
    live.close()
    return live


# -- held -----------------------------------------------------------------------------------


_SEEDS = {"copy": 11, "commit": 12, "after": 13}


@pytest.mark.parametrize("point", list(_SEEDS))
def test_crashes_anywhere_leave_the_database_a_replay_of_the_journal(
    tmp_path: Path, dsn: str, ref_dsn: str, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """Killed over and over at ``point`` (between the COPYs of a batch's main transaction or
    inside a lane's, so another lane may be ahead; before the commit; after it, before the
    writer noted it), with small batches of varying sizes and writer snapshots every 97
    commands: after each death the balances and open orders at the checkpoint are the
    router's at that seq and no order row is past it; at the end every table equals, row
    for row (``updated_seq`` and times included), one clean writer's filing in one batch."""
    live = _journal(tmp_path)
    cfg = live.cfg
    deaths = _run_with_crashes(cfg, dsn, monkeypatch, point, seed=_SEEDS[point])
    assert deaths >= 3, "the crash points were not reached"
    monkeypatch.undo()
    assert write_all(cfg, ref_dsn, batch_rows=10**6) == live.last_seq
    got, want = _dump(dsn), _dump(ref_dsn)
    for table in _TABLES:
        assert got[table] == want[table], table
    reconcile(dsn, live)


def test_a_lane_ahead_then_a_death_inside_the_rewinds_batch_is_filed_once(
    tmp_path: Path, dsn: str, ref_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lane commits its trades and the writer dies before the batch's commit (a lane
    ahead); the next writer rewinds it and dies again inside its first batch's lane COPY;
    the third gets through. Trades are each once, the rest as a clean filing."""
    live = _journal(tmp_path, 200, seed=7)
    cfg = live.cfg
    killer, at_commit = Killer(), Killer()
    _install(monkeypatch, "copy", killer)
    first = _writer(cfg, dsn, at_commit, "commit", rows=10**6)
    at_commit.arm(0)  # the before_commit hook: every lane has committed
    with pytest.raises(CrashError):
        first.run(to_end=True)
    first.close()
    with psycopg.connect(dsn) as conn:
        lanes: dict[int, int] = dict(conn.execute("SELECT lane, last_seq FROM trade_lanes"))
        (trades,) = conn.execute("SELECT count(*) FROM trades").fetchone()  # type: ignore[misc]
    assert max(lanes.values()) == live.last_seq and _checkpoint(dsn) == 0 and trades
    second = _writer(cfg, dsn, killer, "copy", rows=10**6)
    killer.arm(1)  # the first COPY in the batch's main transaction goes, a later one dies
    with pytest.raises(CrashError):
        second.run(to_end=True)
    second.close()
    killer.arm(-1)
    third = _writer(cfg, dsn, killer, "copy", rows=50)
    try:
        assert third.run(to_end=True) == live.last_seq
    finally:
        third.close()
    monkeypatch.undo()
    write_all(cfg, ref_dsn, batch_rows=10**6)
    got, want = _dump(dsn), _dump(ref_dsn)
    for table in _TABLES:
        assert got[table] == want[table], table


@pytest.mark.parametrize(("interval", "seconds"), [("1m", 60), ("1h", 3_600), ("1d", 86_400)])
def test_candles_equal_the_feeds_for_the_same_trades(
    tmp_path: Path, dsn: str, interval: str, seconds: int
) -> None:
    """Every candle with a trade equals the one the market-data feed's ``CandleSeries``
    builds from the same trades in journal order (the journal's clock never steps back
    here, so the feed's clock puts each trade in its own bucket): open, high, low, close,
    volume, quote volume, count, first and last trade id."""
    live = _journal(tmp_path, 300, seed=31)
    write_all(live.cfg, dsn, batch_rows=37)
    for symbol in (1, 2):
        series = CandleSeries(interval, history=10_000)
        for t in live.trades:
            if t.symbol == symbol:
                series.trade(t.ts_ns, t.price, t.qty, t.trade_id)
        feed = [*series.closed] + ([series.current] if series.current else [])
        want = [
            (c.open_ns // 1000, c.open, c.high, c.low, c.close, c.volume, c.quote_volume,
             c.trades, c.first_trade_id, c.last_trade_id)
            for c in feed if c.trades
        ]  # fmt: skip
        with psycopg.connect(dsn) as conn:
            got = [
                (int(r[0]), *map(int, r[1:]))
                for r in conn.execute(
                    "SELECT (extract(epoch FROM bucket) * 1000000)::bigint, open, high, low, "
                    "close, volume, quote_volume, trades, first_trade_id, last_trade_id "
                    "FROM candles WHERE symbol_id = %s AND interval_s = %s ORDER BY bucket",
                    (symbol, seconds),
                ).fetchall()
            ]
        assert want and got == want, (symbol, interval)


def test_a_run_after_a_finished_one_writes_nothing_again(
    tmp_path: Path, dsn: str, ref_dsn: str
) -> None:
    """Restarts over a database at the journal's end (from the writer's snapshot there, and
    with the snapshots gone: a replay from seq 1) add no row and move nothing."""
    live = _journal(tmp_path, 150, seed=3)
    cfg = live.cfg
    write_all(cfg, dsn, batch_rows=40)
    before = _dump(dsn)
    write_all(cfg, dsn, batch_rows=9)
    snaps = snapshot_dir(cfg, "dbwriter")
    for path in snaps.glob("*") if snaps.is_dir() else ():
        path.unlink()
    write_all(cfg, dsn, batch_rows=11)
    assert _dump(dsn) == before
    write_all(cfg, ref_dsn, batch_rows=10**6)
    assert _dump(ref_dsn) == before
