"""The REST history's queries (``procs/gateway/history.py``: allOrders, myTrades) against the
session's real PostgreSQL: on random data they answer what a plain reference query answers,
and on skewed data their plans read about as many rows as they answer, a prepared statement's
generic plan as well as a custom one.

The skewed shape is the one that hurt: an account whose orders on a symbol are old while the
others placed 100,000 newer ones (the primary key was walked back over all of them: 99,990
rows read to answer 10), and a busy account's old order, whose trades were found under every
trade the account made since (100,000 rows read to answer 5). The bound is on rows read, not
on time. Data is made with ``generate_series`` in SQL (a second or two).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import psycopg
import pytest

from config.schema import RingexConfig
from procs.common.embedded_postgres import PORT, SUPERUSER, EmbeddedPostgres
from procs.dbwriter.migrate import migrate
from procs.gateway.history import History
from tests.unit.dbwriter.history_query import query_history

_SYMBOLS = {s.id: s for s in RingexConfig().symbols}
_T0_MS = 1_735_689_600_000  # 2025-01-01 00:00 UTC
_MS = "floor(extract(epoch from {}) * 1000)::bigint"

Call = Callable[[History], Coroutine[Any, Any, Any]]


# -- the same answers as a plain query ----------------------------------------------------------


def _random_data(dsn: str) -> None:
    """3,000 orders and 4,000 trades over two symbols and five accounts (the first the
    busiest), every status, times jittered by seconds so that they do not follow the ids (a
    clock stepped back), a trade now and then with the same account on both sides."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        conn.execute("SELECT ringex_trade_partitions('2024-12-31', '2025-01-08')")
        conn.execute("SELECT setseed(0.25)")
        conn.execute(
            "INSERT INTO orders SELECT i, 1 + floor(random() ^ 2 * 5), 1 + (random() < 0.3)::int,"
            " 1, 1, 1, 100, 0, 1, 1, 0, floor(random() * 9), 0, i, t, i, t, 0, 0"
            " FROM generate_series(1, 3000) i, LATERAL (SELECT '2025-01-01'::timestamptz"
            " + i * interval '1 s' + (random() - 0.5) * interval '8 s' AS t) s"
        )
        conn.execute(
            "INSERT INTO trades SELECT 1 + i % 2, i, i, '2025-01-01'::timestamptz"
            " + i * interval '2 min' + (random() - 0.5) * interval '6 min', 100 + i % 7,"
            " 1 + i % 5, 1 + (i % 3 = 0)::int, 1 + floor(random() * 300),"
            " 1 + floor(random() ^ 2 * 5), 1 + floor(random() * 300),"
            " 1 + floor(random() ^ 2 * 5), CASE WHEN i % 10 = 0 THEN NULL ELSE i END, i"
            " FROM generate_series(1, 4000) i"
        )
        conn.execute("ANALYZE")


def _cut(rows: list[Any], from_id: int | None, start_ms: int | None, limit: int) -> list[Any]:
    """The venues' cut: the first ``limit`` from a first id or a start time, else the newest."""
    return rows[-limit:] if from_id is None and start_ms is None else rows[:limit]


def _within(ms: int, start_ms: int | None, end_ms: int | None) -> bool:
    return (start_ms is None or ms >= start_ms) and (end_ms is None or ms <= end_ms)


class Reference:
    """The answers by plain queries: every order or trade side of (account, symbol), in id
    order, then filtered and cut here."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.orders: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self.trades: dict[tuple[int, int], list[tuple[int, int, bool, int]]] = {}

    def order_ids(self, account: int, symbol: int, **q: Any) -> list[int]:
        if (account, symbol) not in self.orders:
            self.orders[account, symbol] = self.conn.execute(
                f"SELECT id, {_MS.format('created')} FROM orders WHERE account_id = %s"
                " AND symbol_id = %s AND status <> 8 ORDER BY id",
                (account, symbol),
            ).fetchall()
        from_id, start, end = q.get("from_id"), q.get("start_ms"), q.get("end_ms")
        rows = [
            oid
            for oid, ms in self.orders[account, symbol]
            if oid >= (from_id or 0) and _within(ms, start, end)
        ]
        return _cut(rows, from_id, start, q.get("limit") or 500)

    def trade_sides(self, account: int, symbol: int, **q: Any) -> list[tuple[int, int, bool, int]]:
        if (account, symbol) not in self.trades:
            self.trades[account, symbol] = self.conn.execute(
                f"SELECT trade_id, maker_order_id, true, {_MS.format('ts')} FROM trades"
                " WHERE maker_account_id = %(a)s AND symbol_id = %(s)s UNION ALL"
                f" SELECT trade_id, taker_order_id, false, {_MS.format('ts')} FROM trades"
                " WHERE taker_account_id = %(a)s AND symbol_id = %(s)s ORDER BY 1, 3",
                {"a": account, "s": symbol},
            ).fetchall()
        from_id, start, end, order_id = (
            q.get(k) for k in ("from_id", "start_ms", "end_ms", "order_id")
        )
        rows = [
            row
            for row in self.trades[account, symbol]
            if row[0] >= (from_id or 0)
            and _within(row[3], start, end)
            and (order_id is None or row[1] == order_id)
        ]
        limit = q.get("limit", 500)
        if len(rows) > limit:  # a self-trade's two sides (one id) stay in one page (review 90)
            if from_id is None and start is None:
                limit += rows[-limit - 1][0] == rows[-limit][0]
            else:
                limit += rows[limit][0] == rows[limit - 1][0]
        return _cut(rows, from_id, start, limit)


def _bounds(
    rng: random.Random, ids: list[int], times: list[int], limits: list[Any]
) -> dict[str, Any]:
    """Random query bounds, edges included: a first id on a row, just past one, 0 or past the
    last; a start or end on a row's millisecond, a window that ends before it starts; limits
    of 1 up to the most."""
    q: dict[str, Any] = {"limit": rng.choice(limits)}
    pick = rng.random()
    if pick < 0.35:
        q["from_id"] = rng.choice([0, rng.choice(ids), rng.choice(ids) + 1, max(ids) + 1])
    if rng.random() < 0.4:
        q["start_ms"] = rng.choice(times) + rng.choice([0, 0, 1, -1])
    if rng.random() < 0.4:
        q["end_ms"] = rng.choice([*([rng.choice(times)] * 3), 2**63 - 1])
    if rng.random() < 0.05 and "start_ms" in q:
        q["end_ms"] = q["start_ms"] - 1  # an empty window
    return q


def test_answers_equal_a_plain_querys_under_random_bounds(dsn: str) -> None:
    """allOrders and myTrades (with and without an orderId) under 300 random bounds each
    answer exactly what the reference answers: the same rows in the same order, the same
    cut, empty answers included; paging through with fromId meets every row once."""
    _random_data(dsn)
    rng = random.Random(7)
    with psycopg.connect(dsn, autocommit=True) as conn:
        ref = Reference(conn)
        order_ids = [r[0] for r in conn.execute("SELECT id FROM orders").fetchall()]
        order_ms = [r[0] for r in conn.execute(f"SELECT {_MS.format('created')} FROM orders")]
        trade_ids = [r[0] for r in conn.execute("SELECT trade_id FROM trades").fetchall()]
        trade_ms = [r[0] for r in conn.execute(f"SELECT {_MS.format('ts')} FROM trades")]
        order_of = conn.execute(
            "SELECT maker_account_id, maker_order_id FROM trades UNION"
            " SELECT taker_account_id, taker_order_id FROM trades"
        ).fetchall()

        async def check(h: History) -> tuple[int, int]:
            answered = empty = 0
            for _ in range(300):
                account, symbol = rng.choice([1, 1, 2, 3, 4, 5, 6]), rng.choice([1, 2])
                q = _bounds(rng, order_ids, order_ms, [1, 2, 5, 10, 500, 1000, None])
                got = [r[0] for r in await h.orders(account, symbol, **q)]
                assert got == ref.order_ids(account, symbol, **q), (account, symbol, q)
                q = _bounds(rng, trade_ids, trade_ms, [1, 2, 5, 10, 500, 1000])
                if rng.random() < 0.5:
                    mine = [o for a, o in order_of if a == account] or [1]
                    q["order_id"] = rng.choice([*mine, *mine, rng.randint(1, 301), 10**12])
                sides = await h.trades(account, _SYMBOLS[symbol], **q)
                got_sides = [(t["id"], t["orderId"], t["isMaker"], t["time"]) for t in sides]
                want = ref.trade_sides(account, symbol, **q)
                assert got_sides == want, (account, symbol, q)
                answered += bool(got) + bool(want)
                empty += (not got) + (not want)
            for account, symbol in [(1, 1), (2, 2)]:  # paging: fromId after each page's last
                pages: list[int] = []
                while True:
                    page = await h.orders(
                        account, symbol, from_id=pages[-1] + 1 if pages else 0, limit=7
                    )
                    pages += [r[0] for r in page]
                    if len(page) < 7:
                        break
                assert pages == ref.order_ids(account, symbol, from_id=0, limit=10**6)
            return answered, empty

        answered, empty = query_history(dsn, check)
    assert answered > 300 and empty > 30, (answered, empty)  # both kinds were asked


# -- plans that read what they answer -----------------------------------------------------------

_QUIET, _BUSY, _TAKER = 8, 7, 9
_OLD_ORDER, _QUIET_ORDER = 50, 60  # the busy account's order in the first trades; the quiet's
_READ_AT_MOST = 50  # rows read (returned and filtered out) to answer at most 10


@pytest.fixture(scope="module")
def skewed(pg: EmbeddedPostgres) -> Iterator[str]:
    """100,000 orders: the quiet account's first 20 on the first symbol (the oldest), its
    20,000 newer ones on the second, the busy account's the rest; 100,000 trades on the first
    symbol over three days' partitions, the busy account the maker of every one (its old order
    of the first five), the quiet account the taker of the first ten."""
    admin = f"host={pg.data} port={PORT} dbname=postgres user={SUPERUSER}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS history_plans WITH (FORCE)")
        conn.execute("CREATE DATABASE history_plans")
    dsn = f"host={pg.data} port={PORT} dbname=history_plans user={SUPERUSER}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        conn.execute("SELECT ringex_trade_partitions('2025-01-01', '2025-01-03')")
        conn.execute(
            f"INSERT INTO orders SELECT i, CASE WHEN i <= 20 OR i % 5 = 0 THEN {_QUIET}"
            f" ELSE {_BUSY} END, CASE WHEN i > 20 AND i % 5 = 0 THEN 2 ELSE 1 END,"
            " 1, 1, 1, 100, 0, 1, 1, 0, CASE WHEN i % 97 = 0 THEN 8 WHEN i % 50 = 0 THEN 1"
            " ELSE 3 END, 0, i, t, i, t, 0, 0 FROM generate_series(1, 100000) i,"
            " LATERAL (SELECT '2025-01-01'::timestamptz + i * interval '2 s' AS t) s"
        )
        conn.execute(
            "INSERT INTO trades SELECT 1, i, i, '2025-01-01'::timestamptz + i * interval '2 s',"
            f" 100, 1, 1, CASE WHEN i <= 5 THEN {_OLD_ORDER} ELSE 1000 + i END, {_BUSY},"
            f" CASE WHEN i <= 10 THEN {_QUIET_ORDER} ELSE 200000 + i END,"
            f" CASE WHEN i <= 10 THEN {_QUIET} ELSE {_TAKER} END, 0, 0"
            " FROM generate_series(1, 100000) i"
        )
        conn.execute("ANALYZE")
    yield dsn
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS history_plans WITH (FORCE)")


def _sql_of(dsn: str, call: Call) -> tuple[str, tuple[Any, ...]]:
    """The one query ``History`` sends for ``call`` (captured, not run)."""
    sent: list[tuple[str, tuple[Any, ...]]] = []

    class Capturing(History):
        async def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            sent.append((sql, args))
            return []

    asyncio.run(call(Capturing(dsn)))
    (one,) = sent
    return one


def _rows_read(plan: Any) -> int:
    """Rows the plan's scans of orders and trades (any partition) returned or filtered out."""
    total, stack = 0, [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        relation = node.get("Relation Name", "")
        if relation == "orders" or relation.startswith("trades"):
            taken = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            total += taken * node.get("Actual Loops", 1)
        stack.extend(node.get("Plans", []))
    return total


def _explained(
    conn: psycopg.Connection[Any], sql: str, args: tuple[Any, ...], generic: bool
) -> Any:
    """EXPLAIN ANALYZE of the query as sent (a custom plan, for these parameters) or as a
    prepared statement's generic plan (what a pooled connection runs once psycopg prepares a
    query it has sent five times and PostgreSQL finds the generic plan no dearer)."""
    if generic:  # (``conn`` is the caller's own: the setting and the name die with it)
        numbers = iter(range(1, len(args) + 1))
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(("PREPARE q AS " + re.sub("%s", lambda _: f"${next(numbers)}", sql)).encode())
        sql, args = f"EXECUTE q({', '.join(str(int(a)) for a in args)})", ()
    row = conn.execute(("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).encode(), args).fetchone()
    assert row is not None
    return row[0]


_BTC = _SYMBOLS[1]
_CALLS: dict[str, Call] = {
    # the faults: the quiet account's newest orders on a symbol, the busy one's old order
    "allOrders, quiet account, newest": lambda h: h.orders(_QUIET, 1, limit=10),
    "myTrades orderId, busy account's old order": lambda h: h.trades(
        _BUSY, _BTC, order_id=_OLD_ORDER, limit=10
    ),
    "allOrders, quiet account, from an id": lambda h: h.orders(_QUIET, 1, from_id=5, limit=10),
    "allOrders, quiet account, other symbol": lambda h: h.orders(_QUIET, 2, limit=10),
    "allOrders, quiet account, to an end": lambda h: h.orders(
        _QUIET, 1, end_ms=_T0_MS + 10**9, limit=10
    ),
    "allOrders, busy account, newest": lambda h: h.orders(_BUSY, 1, limit=10),
    "allOrders, busy account, from an id": lambda h: h.orders(_BUSY, 1, from_id=50_000, limit=10),
    "myTrades orderId, from an id": lambda h: h.trades(
        _BUSY, _BTC, order_id=_OLD_ORDER, from_id=3, limit=10
    ),
    "myTrades orderId, quiet account": lambda h: h.trades(
        _QUIET, _BTC, order_id=_QUIET_ORDER, limit=10
    ),
    "myTrades orderId, another's order": lambda h: h.trades(
        _TAKER, _BTC, order_id=_OLD_ORDER, limit=10
    ),
    "myTrades, quiet account, newest": lambda h: h.trades(_QUIET, _BTC, limit=10),
    "myTrades, busy account, newest": lambda h: h.trades(_BUSY, _BTC, limit=10),
    "myTrades, busy account, from an id": lambda h: h.trades(_BUSY, _BTC, from_id=50_000, limit=10),
}


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("name", list(_CALLS))
def test_plans_read_about_what_they_answer(skewed: str, name: str, generic: bool) -> None:
    """Each query reads at most ``_READ_AT_MOST`` rows to answer at most 10, whichever plan
    PostgreSQL makes of it. Before the row keysets and 0011's indexes the first two read
    99,990 and 100,000 (the primary key walked back over everyone's newer orders; every trade
    of the symbol, in either plan), and so did the other queries of an old order's trades and
    the quiet account's allOrders to an end."""
    sql, args = _sql_of(skewed, _CALLS[name])
    with psycopg.connect(skewed, autocommit=True) as conn:
        plan = _explained(conn, sql, args, generic)
    assert _rows_read(plan) <= _READ_AT_MOST, (name, plan[0]["Plan"])
