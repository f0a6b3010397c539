"""Bugs a hostile review of the database writer and the REST history queries found.

Each test failed before its fix. They run the
real writer into a real PostgreSQL (``tests/unit/conftest.py``'s cluster, a database per
test) over small journals made by ``journal_gen``, then query what ``procs.gateway.history``
serves.
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from config.schema import RingexConfig, SymbolConfig
from procs.common.records import NewOrder
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.dbwriter.store import prepare
from procs.dbwriter.users import UserSync
from procs.dbwriter.writer import DbWriter, WriterOptions
from procs.gateway.history import History
from tests.unit.dbwriter.history_query import query_history
from tests.unit.dbwriter.journal_gen import JournalBuilder, build, make_cfg


def _write_all(cfg: RingexConfig, dsn: str) -> None:
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))
    writer.run(to_end=True)
    writer.close()


def _limit(builder: JournalBuilder, account: int, side: Side, qty: int) -> None:
    gw, session, ref, acc, symbol = builder._header(account, 1)[2:7]
    builder.submit(
        NewOrder(
            seq=0, ts_ns=0, gateway=gw, session=session, client_ref=ref, account=acc,
            symbol=symbol, order_id=0, side=side, ord_type=OrdType.LIMIT,
            tif=TimeInForce.GTC, flags=0, stp=StpMode.NONE, price=100_000, qty=qty,
            stop_price=0, display_qty=0,
        )
    )  # fmt: skip


def _symbol(cfg: RingexConfig, symbol_id: int) -> SymbolConfig:
    return next(s for s in cfg.symbols if s.id == symbol_id)


def _klines_5m(h: History, *, sym: SymbolConfig, bounds: dict[str, int]) -> Awaitable[list[Any]]:
    return h.klines(sym, "5m", limit=1000, **bounds)


def test_rolled_up_klines_are_never_partial(tmp_path: Path, dsn: str) -> None:
    """A 5m kline is rolled up from 1m candles; ``startTime``/``endTime`` filter the 1m
    buckets before the roll-up, so a bound one minute into a 5m kline still returns a kline
    with that open time, but made of only some of its minutes. Whatever the bounds, a kline
    returned must equal the kline with the same open time in the unbounded answer."""
    cfg = make_cfg(tmp_path)
    build(cfg, 400).close()
    _write_all(cfg, dsn)
    sym = _symbol(cfg, 1)
    full = query_history(dsn, lambda h: h.klines(sym, "5m", start_ms=0, limit=1000))
    by_time = {k[0]: k for k in full}
    with psycopg.connect(dsn) as conn:
        minutes = conn.execute(
            "SELECT (extract(epoch FROM bucket) * 1000)::bigint FROM candles "
            "WHERE symbol_id = 1 AND interval_s = 60 ORDER BY bucket"
        ).fetchall()
    # a 5m kline with trades both in its first minute and in a later one
    first_minutes = {m for (m,) in minutes if m % 300_000 == 0}
    later = [m for (m,) in minutes if m % 300_000 and m - m % 300_000 in first_minutes]
    assert later, "the journal made no 5m kline with trades in two of its minutes"
    open_ms = later[0] - later[0] % 300_000
    wrong = []
    for bounds in ({"start_ms": open_ms + 60_000}, {"end_ms": open_ms + 60_000}):
        got = query_history(dsn, partial(_klines_5m, sym=sym, bounds=bounds))
        wrong += [(bounds, k, by_time[k[0]]) for k in got if k[0] in by_time and k != by_time[k[0]]]
    assert not wrong, wrong[:2]


def test_history_times_are_the_events_millisecond(tmp_path: Path, dsn: str) -> None:
    """A trade and an order made 0.6 ms into a millisecond: myTrades and allOrders show
    ``time`` one ms late (the live views truncate: ``rest_orders._ms``), and asking for the
    trades from that time on (``startTime``) leaves the trade out."""
    cfg = make_cfg(tmp_path)
    live = JournalBuilder(cfg)
    live.setup()
    live.clock += 600_000  # 0.6 ms: the next commands' ts_ns end in ...600_000 ns
    _limit(live, 10, Side.SELL, 5)
    _limit(live, 11, Side.BUY, 5)
    live.close()
    (trade,) = live.trades
    _write_all(cfg, dsn)
    sym = _symbol(cfg, 1)
    (mine,) = query_history(dsn, lambda h: h.trades(11, sym))
    after = query_history(dsn, lambda h: h.trades(11, sym, start_ms=mine["time"]))
    (order,) = query_history(dsn, lambda h: h.orders(11, 1))
    assert (mine["time"], order[13]) == (trade.ts_ns // 1_000_000, trade.ts_ns // 1_000_000)
    assert [t["id"] for t in after] == [trade.trade_id]


def test_a_far_end_time_is_answered(tmp_path: Path, dsn: str) -> None:
    """``endTime=10**16`` (ms) passes the REST parameter check (0..2**63-1) but
    ``to_timestamp(10**16 / 1000.0)`` is out of PostgreSQL's range: the query raises, and
    ``Api.db`` turns that into a 503 DISCONNECTED about the database. Expected: the rows up to
    that time (all of them), or a 400 from the parameter check."""
    cfg = make_cfg(tmp_path)
    build(cfg, 100).close()
    _write_all(cfg, dsn)
    sym = _symbol(cfg, 1)
    klines = query_history(dsn, lambda h: h.klines(sym, "1m", end_ms=10**16))
    orders = query_history(dsn, lambda h: h.orders(10, 1, end_ms=10**16))
    assert klines and orders


def test_a_new_user_with_a_removed_users_session_id_is_synchronised(
    tmp_path: Path, dsn: str
) -> None:
    """A new user with a removed user's session id (the ``users`` primary key): ``UserStore``
    gave one then (max(session) + 1); it no longer does (review 25), but a file restored
    from an older copy or edited by hand still can, as written here. ``UserSync.sync``
    upserts the new user ``ON CONFLICT (sender_comp_id)`` before deleting the removed one:
    a ``UniqueViolation`` on ``users_pkey``, which ``DbWriter._housekeeping`` does not catch
    (only OperationalError), so the writer dies, and dies again after every restart."""
    cfg = make_cfg(tmp_path)
    path = tmp_path / "users.json"
    sync = UserSync(path)
    with psycopg.connect(dsn, autocommit=True) as conn:
        prepare(conn, cfg)
        sync.store.add("ALICE", "pw", 10, n=2)
        sync.store.add("BOB", "pw", 11, n=2)
        assert sync.sync(conn)
        bob = sync.store.get("BOB")
        assert bob is not None and bob.session == 2
        carol = msgspec.structs.replace(bob, comp_id="CAROL", account=12)  # BOB's id
        sync.store.compact()  # as before a hand edit: the log's changes not over it
        path.write_bytes(msgspec.json.encode([sync.store.get("ALICE"), carol]))
        assert sync.sync(conn)
        rows = conn.execute("SELECT id, sender_comp_id FROM users ORDER BY id").fetchall()
    assert rows == [(1, "ALICE"), (2, "CAROL")]
