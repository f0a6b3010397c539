"""Bugs a second hostile review of the database writer and the REST history queries found.

Each test runs the real writer into a real PostgreSQL (``tests/unit/conftest.py``'s cluster,
a database per test) over a small journal made through the real sequencer and matchers
(``journal_gen.JournalBuilder``), and fails today because of the product.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TypeVar

import msgspec
import psycopg
import pytest

from config.schema import AssetConfig, MatcherConfig, RingexConfig, SymbolConfig
from procs.common.types import Side
from procs.common.users import UserStore
from procs.core.market.candles import Candle
from procs.core.market.state import build_state
from procs.dbwriter.store import prepare
from procs.dbwriter.writer import Backoff, DbWriter, WriterOptions
from procs.gateway.instruments import format_units
from tests.unit.dbwriter.history_query import query_history
from tests.unit.dbwriter.journal_gen import JournalBuilder, fund, limit_order, make_cfg, write_all

T = TypeVar("T")


def test_symbol_and_asset_ids_above_int32_are_refused_by_the_config(tmp_path: Path) -> None:
    """The schema keeps symbol and asset ids in ``integer`` columns (``symbols.id``,
    ``assets.id``, ``trades.symbol_id``, ``balances.asset_id`` ..., packed as ``int4`` by the
    COPY layouts), while the config took ids up to 2**32-1: a symbol with id 2**31 traded
    normally and stopped the writer for good (``NumericValueOutOfRange`` on every start).
    The config now refuses such an id, naming the limit, before anything runs."""
    raw = msgspec.to_builtins(make_cfg(tmp_path))
    for kind in ("assets", "symbols"):
        bad = msgspec.json.decode(msgspec.json.encode(raw))
        bad[kind][0]["id"] = 2**31
        with pytest.raises(msgspec.ValidationError, match="<= 2147483647"):
            msgspec.convert(bad, RingexConfig)
    msgspec.convert(raw, RingexConfig)  # the same config with its own ids is fine


def test_candle_volume_past_int64_is_written(tmp_path: Path, dsn: str) -> None:
    """The exchange bounds every balance of an asset to an int64 (``accounts.MAX_TOTAL``), but
    not what trades in a candle: the same lots change hands again and again, so a minute's
    (or a day's) volume can pass 2**63-1 lots. ``candles.volume`` is ``bigint``
    (migrations/0001_core.sql): the batch sums it in Python and COPYs it as ``int8`` (store.py
    ``_TYPES['candles']``: psycopg raises ``OverflowError``), or, across batches, adds it up
    in SQL (``volume = c.volume + excluded.volume``: ``NumericValueOutOfRange``). Neither is
    retried: the writer stops at that batch on every restart. Here 2**62 lots (each trade
    and each balance within int64) trade one way and back in the same minute. Expected: the
    journal written, the candles' volume 2**63 (``quote_volume``, a numeric, holds its
    part); actual: the writer raises ``OverflowError``."""
    base = make_cfg(tmp_path)
    cfg = msgspec.structs.replace(
        base,
        assets=[
            AssetConfig(name="USD", id=1, decimals=0),
            AssetConfig(name="TOK", id=2, decimals=0),
        ],
        symbols=[
            SymbolConfig(
                name="TOK-USD", id=1, price_decimals=0, qty_decimals=0, base="TOK",
                quote="USD", max_qty=2**62,
            )
        ],
        matchers=[MatcherConfig(name="m1", symbols=["TOK-USD"])],
    )  # fmt: skip
    b = JournalBuilder(cfg)
    lots = 2**62
    fund(b, 10, {1: lots // 128, 2: lots})  # all the TOK there is; USD for the fees
    fund(b, 11, {1: lots + lots // 128})
    limit_order(b, 10, 1, Side.SELL, 1, lots)
    limit_order(b, 11, 1, Side.BUY, 1, lots)  # 11 buys the lot ...
    limit_order(b, 11, 1, Side.SELL, 1, lots)
    limit_order(b, 10, 1, Side.BUY, 1, lots)  # ... and sells it back the same minute
    b.close()
    minutes = {t.ts_ns // 60_000_000_000 for t in b.trades}
    assert len(b.trades) == 2 and len(minutes) == 1
    assert write_all(cfg, dsn) == b.last_seq
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT interval_s, volume FROM candles ORDER BY interval_s").fetchall()
    assert rows == [(60, 2**63), (3_600, 2**63), (86_400, 2**63)]


def _other_database(dsn: str, suffix: str) -> tuple[str, str, str]:
    """(the dsn of a fresh database beside ``dsn``'s, its name, the admin dsn)."""
    name = dsn.split("dbname=")[1].split(maxsplit=1)[0]
    admin = dsn.replace(f"dbname={name}", "dbname=postgres")
    other = f"{name}{suffix}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {other}")
    return dsn.replace(f"dbname={name}", f"dbname={other}"), other, admin


def test_rolled_up_candles_do_not_depend_on_batch_bounds_when_the_clock_steps_back(
    tmp_path: Path, dsn: str
) -> None:
    """Commands are stamped with the router's wall clock (``time.time_ns()`` in
    ``procs/router/main.py``), which can step back (NTP, a promoted standby's clock). Trade A
    at 12:10, then the clock steps back and trade B at 12:05, same hour. The writer merges
    a batch's 1m candles into the 1h one in *minute* order (``Batch.candle_rows`` sorts by
    minute and takes ``open`` from the first, ``close`` from the last), but across batches in
    *seq* order (``store.py`` keeps ``open``, ``first_trade_id`` and replaces ``close``,
    ``last_trade_id``). So the 1h row depends on where batches were cut: the live writer (one
    batch per command) and ``ringex replay --to-db`` (one batch) write different rows, against
    the issue's rule that a rebuild equals the live database (``test_a_rebuild_equals_the_live
    _database`` only uses a monotonic clock). Expected: the same candles whatever the batch
    sizes; actual: 1h open/close and first/last trade ids swapped."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    fund(b, 11, {1: 10**15, 2: 10**15})
    hour = (b.clock // 3_600_000_000_000 + 1) * 3_600_000_000_000
    b.clock = hour + 600 * 10**9  # 12:10 (the next command is stamped 7 s later)
    limit_order(b, 10, 1, Side.SELL, 100_000, 5)
    limit_order(b, 11, 1, Side.BUY, 100_000, 5)  # trade A at 100_000
    b.clock = hour + 300 * 10**9  # the clock steps back to 12:05
    limit_order(b, 10, 1, Side.SELL, 100_200, 5)
    limit_order(b, 11, 1, Side.BUY, 100_200, 5)  # trade B at 100_200
    b.close()
    assert [t.price for t in b.trades] == [100_000, 100_200]
    assert {t.ts_ns // 3_600_000_000_000 for t in b.trades} == {hour // 3_600_000_000_000}
    other, name, admin = _other_database(dsn, "r")
    query = (
        "SELECT interval_s, bucket, open, high, low, close, volume, trades, first_trade_id, "
        "last_trade_id FROM candles ORDER BY 1, 2"
    )
    try:
        write_all(cfg, dsn, batch_rows=1)  # the live writer: a batch per command
        write_all(cfg, other, batch_rows=10**6)  # the rebuild: one batch
        with psycopg.connect(dsn) as live, psycopg.connect(other) as rebuilt:
            assert live.execute(query).fetchall() == rebuilt.execute(query).fetchall()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_users_are_mirrored_again_after_the_database_lost_commits(tmp_path: Path, dsn: str) -> None:
    """The writer survives a database that lost committed transactions (its docstring: an
    asynchronous commit, failover to a lagging replica, a restored backup): it sees the
    checkpoint behind and writes the journal again from there. The users are not journaled:
    ``UserSync`` writes them only when ``users.json`` changes (``users.py``: ``_synced``,
    the digest of the list last written, is kept across reconnects and restarts from the
    checkpoint), on the writer's own ``synchronous_commit = off`` connection. So after a
    restore from a backup taken before the users were written, the ``users`` table stays
    empty for as long as nobody edits the user file. Expected: the users mirrored again once
    the writer is back on the restored database; actual: no rows."""
    cfg = make_cfg(tmp_path)
    users = tmp_path / "users.json"
    UserStore(users).add("ALICE", "pw", 10, n=2)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    fund(b, 11, {1: 10**15, 2: 10**15})
    name = dsn.split("dbname=")[1].split(maxsplit=1)[0]
    with psycopg.connect(dsn, autocommit=True) as conn:
        prepare(conn, cfg)  # the backup: the schema, nothing written yet
    _, backup_name, admin = _other_database(dsn, "b")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {backup_name}")
        conn.execute(f"CREATE DATABASE {backup_name} TEMPLATE {name}")
    options = WriterOptions(
        batch_rows=200, batch_ms=10**6, backoff=Backoff(0.01, 0.05), users_path=users
    )
    writer = DbWriter(cfg, dsn, options)
    try:
        writer.run(to_end=True)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT sender_comp_id FROM users").fetchall() == [("ALICE",)]
        with psycopg.connect(admin, autocommit=True) as conn:  # restore the backup
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {backup_name}")
        limit_order(b, 10, 1, Side.SELL, 100_000, 5)
        limit_order(b, 11, 1, Side.BUY, 100_000, 5)
        b.close()
        time.sleep(1.05)  # the writer looks at the user file once a second
        assert writer.run(to_end=True) == b.last_seq  # written again from the restored seq
    finally:
        writer.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {backup_name} WITH (FORCE)")
    with psycopg.connect(dsn) as conn:
        (accounts,) = conn.execute("SELECT count(*) FROM accounts").fetchone() or (0,)
        rows = conn.execute("SELECT sender_comp_id FROM users").fetchall()
    assert accounts == 2  # the journal was written again ...
    assert rows == [("ALICE",)]  # ... and the users should be too


def _kline_head(c: Candle) -> list[object]:
    """[open time, open, high, low, close, volume] of ``c`` as the REST klines show them."""
    prices = (format_units(p, 2).decode() for p in (c.open, c.high, c.low, c.close))
    return [c.open_ns // 10**6, *prices, format_units(c.volume, 4).decode()]


def test_klines_of_idle_minutes_match_the_market_datas_candles(tmp_path: Path, dsn: str) -> None:
    """The exchange's own candles (``procs/core/market/candles.py``, served live and by the
    market data's ``/api/klines``) open a flat candle at the previous close with zero volume
    for an interval nobody traded in, "as the venues do". ``GET /api/v1/klines`` comes from
    ``History.klines``, which only groups the stored candles (the writer stores a candle
    only where a trade was), so the two endpoints disagree: trades at minute 0 and minute 3
    give four 1m klines on the market data feed, two on the REST history, and ``limit=N``
    then spans more than N intervals. Expected: the REST klines equal the market data's
    (flat klines for minutes 1 and 2); actual: minutes 1 and 2 are missing."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    fund(b, 11, {1: 10**15, 2: 10**15})
    minute = (b.clock // 60_000_000_000 + 1) * 60_000_000_000
    b.clock = minute + 1_000_000_000  # the next commands are at mm:08 and mm:15
    limit_order(b, 10, 1, Side.SELL, 100_000, 5)
    limit_order(b, 11, 1, Side.BUY, 100_000, 5)
    b.clock = minute + 180 * 10**9  # three minutes later
    limit_order(b, 10, 1, Side.SELL, 100_200, 5)
    limit_order(b, 11, 1, Side.BUY, 100_200, 5)
    b.close()
    assert len(b.trades) == 2
    state = build_state(cfg)
    for trade in b.trades:
        state.process(trade, [])
    series = state.symbols[1].candles["1m"].history(10)
    sym = next(s for s in cfg.symbols if s.id == 1)
    want = [_kline_head(c) for c in series]
    assert len(want) == 4  # the exchange's candles: minutes 0 .. 3
    write_all(cfg, dsn)
    got = query_history(dsn, lambda h: h.klines(sym, "1m", start_ms=minute // 10**6, limit=4))
    assert [k[:6] for k in got] == want
