"""History for the REST API from PostgreSQL: orders, a user's trades, klines.

What the database writer has written (it follows the journal; it lags the exchange by its
batch time, tens of ms): the API overlays what the gateway saw live on top. Queries run on a
small ``psycopg_pool`` pool of async connections, every one bounded by the caller's ``limit``
(at most ``MAX_LIMIT`` rows; an account's open orders, all of them, by the risk limit on
open orders) and by an index:

- orders: ``orders_account_symbol (account_id, symbol_id, id)`` (migration 0010); a row holds
  its ``updated_seq`` (the journal seq of its last change), which the live view is compared
  with, and ends with its notional, summed from its trades by the order indexes below (the
  orders table keeps none: ``_NOTIONAL``);
- trades: ``trades_maker_account`` / ``trades_taker_account`` (migration 0003), one order's
  ``trades_maker_order`` / ``trades_taker_order`` (migration 0011); each with the commission
  its side paid as the writer filed it from the journal's fees (migration 0007; null for
  trades filed before it, whose fees were not kept);
- klines: the candles' primary key; intervals the writer does not keep (it keeps 1m, 1h, 1d)
  are rolled up from the next smaller one with ``date_bin``.

Orders and trades are asked for by a keyset written as one row comparison on the index's
columns and ordered by all of them (``(account_id, symbol_id, id) >= (%s, %s, %s) ... ORDER
BY account_id, symbol_id, id``), not as ``account_id = %s AND symbol_id = %s ... ORDER BY
id``. With the leading columns equated to parameters, PostgreSQL takes ``ORDER BY id`` as the
primary key's order as well, and a plan that takes an account's rows as spread evenly over the
ids walks the primary key back over everyone's newer rows: 198,000 read to answer 10 for an
account whose orders on the symbol are old. A prepared statement's generic plan (psycopg
prepares a query a pooled connection has run five times) makes that plan for every account,
a custom one where the account is busy on another symbol. Ordered by the row, only the index
named gives the order, and the scan reads the rows it answers (and those its filters drop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from psycopg.errors import UndefinedColumn
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from config.schema import AssetConfig, SymbolConfig
from procs.common.types import OrderFlag, OrdType
from procs.gateway.instruments import format_units
from procs.gateway.rest_params import SIDE_NAMES, TIF_NAMES, TYPE_NAMES

MAX_LIMIT = 1000

#: Database status codes (order_statuses) -> the API's names.
STATUS_NAMES = {
    0: "PENDING_NEW",
    1: "NEW",
    2: "PARTIALLY_FILLED",
    3: "FILLED",
    4: "CANCELED",
    5: "EXPIRED",
    6: "EXPIRED_IN_MATCH",
    7: "CANCELED",
    8: "REJECTED",
}

R = TypeVar("R")

REJECTED = 8  # the orders table's status of an order the matcher refused

#: Kline interval -> (seconds, the stored interval it is rolled up from).
KLINES: dict[str, tuple[int, int]] = {
    "1m": (60, 60),
    "3m": (180, 60),
    "5m": (300, 60),
    "15m": (900, 60),
    "30m": (1_800, 60),
    "1h": (3_600, 3_600),
    "2h": (7_200, 3_600),
    "4h": (14_400, 3_600),
    "6h": (21_600, 3_600),
    "12h": (43_200, 3_600),
    "1d": (86_400, 86_400),
}

#: An order's notional (price x size of its fills, ticks x lots: numeric, as a sum of bigint
#: products may pass bigint's range), from its trades, as a row's last column (``NOTIONAL``).
#: Its trades up to the row's ``updated_seq`` only: a trade lane commits a batch's trades
#: before the batch's orders (``procs/dbwriter/store.py``), so a read may see trades the row
#: does not count yet; never fewer, as the lanes commit first. NULL, unknown, where those
#: trades do not add up to the row's ``filled`` (a trade partition an operator dropped): no
#: wrong sum. One index probe per trade partition and side (``trades_maker_order``,
#: ``trades_taker_order``, migration 0011), for a row with fills only, and only in the
#: partitions from the day before the order's creation on (its trades come after it; a day
#: of slack for a clock stepped back, past which the sum does not add up: NULL), so a year of
#: daily partitions does not cost each old order of ``allOrders`` 730 probes.
_SINCE = "AND seq <= orders.updated_seq AND ts >= orders.created - interval '1 day'"
_NOTIONAL = (
    "CASE WHEN orders.filled = 0 THEN 0 ELSE (SELECT CASE WHEN sum(f.size) = orders.filled "
    "THEN sum(f.price::numeric * f.size) END FROM ("
    f"SELECT price, size FROM trades WHERE maker_order_id = orders.id {_SINCE} UNION ALL "
    f"SELECT price, size FROM trades WHERE taker_order_id = orders.id {_SINCE}) f) END"
)
#: The index of a row's notional (``row_notional``).
NOTIONAL = 19

_ORDER_COLUMNS = (
    "id, account_id, symbol_id, side, ord_type, tif, price, stop_price, size, remaining, "
    "filled, status, reject_code, floor(extract(epoch from created) * 1000)::bigint, "
    "floor(extract(epoch from updated) * 1000)::bigint, flags, updated_seq, display, "
    "client_order_id, " + _NOTIONAL
)


def row_type(ord_type: int, flags: int) -> str:
    """An order's type name from its row's ``ord_type`` and ``flags`` (``LIMIT_MAKER`` kept)."""
    if ord_type == OrdType.LIMIT and flags & OrderFlag.POST_ONLY:
        return "LIMIT_MAKER"
    return TYPE_NAMES.get(ord_type, "")


_STOPS = (OrdType.STOP, OrdType.STOP_LIMIT)


def row_notional(row: tuple[Any, ...]) -> int | None:
    """A row's notional in ticks x lots; None where not known: its trades filed do not add
    up to its ``filled`` (``_NOTIONAL``), or a row built without that column (19 fields)."""
    value = row[NOTIONAL] if len(row) > NOTIONAL else None
    return None if value is None else int(value)


def order_json(row: tuple[Any, ...], sym: SymbolConfig) -> dict[str, Any]:
    (oid, _acct, _sym, side, ord_type, tif, price, stop, size, _rem, filled, status, _rc) = row[:13]
    pd, qd = sym.price_decimals, sym.qty_decimals
    name = STATUS_NAMES.get(status, str(status))
    notional = row_notional(row)
    return {
        "symbol": sym.name,
        "orderId": oid,
        "clientOrderId": row[18],  # '': not kept (an older build's row, a long ClOrdID)
        "price": format_units(price, pd).decode(),
        "origQty": format_units(size, qd).decode(),
        "executedQty": format_units(filled, qd).decode(),
        # summed from its trades, as the live view's (null: they do not add up, ``_NOTIONAL``)
        "cummulativeQuoteQty": None
        if notional is None
        else format_units(notional, pd + qd).decode(),
        "status": name,
        "timeInForce": TIF_NAMES.get(tif, ""),
        "type": row_type(ord_type, row[15]),
        "side": SIDE_NAMES.get(side, str(side)),
        "stopPrice": format_units(stop, pd).decode(),
        "icebergQty": format_units(row[17], qd).decode(),
        "time": row[13],
        "updateTime": row[14],
        # on the book: a stop with nothing filled is taken as not triggered yet (the row
        # does not say; the live view, which knows, shows a triggered one as working)
        "isWorking": name in ("PENDING_NEW", "NEW", "PARTIALLY_FILLED")
        and not (ord_type in _STOPS and not filled),
    }


def trade_json(
    sym: SymbolConfig,
    trade_id: int,
    order_id: int,
    price: int,
    qty: int,
    time_ms: int,
    buyer: bool,
    maker: bool,
    commission: bytes | None,
) -> dict[str, Any]:
    """A ``myTrades`` row: one side of a trade (``price`` in ticks, ``qty`` in lots;
    ``buyer``: this side bought; ``commission``: what it paid in quote asset units, None where
    not known), from the database or from the gateway's live fills alike."""
    pd, qd = sym.price_decimals, sym.qty_decimals
    return {
        "symbol": sym.name,
        "id": trade_id,
        "orderId": order_id,
        "price": format_units(price, pd).decode(),
        "qty": format_units(qty, qd).decode(),
        "quoteQty": format_units(price * qty, pd + qd).decode(),
        "time": time_ms,
        "isBuyer": buyer,
        "isMaker": maker,
        "commission": None if commission is None else commission.decode(),
        "commissionAsset": sym.quote,
    }


#: The last ms of year 9999: later bounds are clamped to it (PostgreSQL's timestamps end
#: in year 294276; a client's 2**63 - 1 would overflow them).
MAX_MS = 253_402_300_799_999
#: The largest id (bigint): the top of a keyset's range.
_MAX_ID = 2**63 - 1


def newest_first(from_id: int | None, start_ms: int | None) -> bool:
    """A history query with neither a first id nor a start time asks for the newest rows
    (then shown oldest first, as the venues answer allOrders and myTrades)."""
    return from_id is None and start_ms is None


def whole_trades(rows: list[R], limit: int, newest: bool, trade_id: Callable[[R], int]) -> list[R]:
    """The first ``limit`` of ``rows`` (oldest first; the last ``limit`` when ``newest``),
    one more where the cut would fall between the two sides of one trade (an account that
    traded with itself has a taker row and a maker row under one id): a client paging myTrades
    by ``fromId`` = the last id + 1 would never see the second side, and one paging from the
    last id would get the first twice (review 90). So a page holds at most ``limit`` + 1
    rows; ``rows`` must hold one past the cut for the check to see it."""
    if len(rows) <= limit:
        return rows
    if newest:
        k = len(rows) - limit
        if trade_id(rows[k - 1]) == trade_id(rows[k]):
            k -= 1
        return rows[k:]
    k = limit + (trade_id(rows[limit - 1]) == trade_id(rows[limit]))
    return rows[:k]


def _flat_filled(
    rows: list[tuple[Any, ...]], low: int, top: int, window: int, close: int | None
) -> list[tuple[Any, ...]]:
    """A kline for every ``window`` from ``low`` to ``top`` (ms open times): the row that
    opens there (``rows``: oldest first), else a flat one at the previous close (none before
    the first close: no trade yet); at most (top - low) / window + 1 of them."""
    out: list[tuple[Any, ...]] = []
    at_row = 0
    for t in range(low, top + 1, window):
        while at_row < len(rows) and rows[at_row][0] < t:  # none in a query's answer
            close = rows[at_row][4]
            at_row += 1
        if at_row < len(rows) and rows[at_row][0] == t:
            out.append(rows[at_row])
            close = rows[at_row][4]
            at_row += 1
        elif close is not None:
            out.append((t, close, close, close, close, 0, 0, 0, 0, 0))
    return out


def _between(column: str, start_ms: int | None, end_ms: int | None) -> tuple[str, list[Any]]:
    """`` AND column >= start AND column <= end`` for the bounds given (ms since the epoch).
    Times in the database are microseconds and shown truncated to the ms (as live views
    are, ``ts_ns // 10**6``), so the end bound takes in the whole of its millisecond."""
    sql, args = "", []
    if start_ms is not None:
        sql += f" AND {column} >= to_timestamp(%s / 1000.0)"
        args.append(min(start_ms, MAX_MS))
    if end_ms is not None:
        sql += f" AND {column} < to_timestamp(%s / 1000.0)"
        args.append(min(end_ms, MAX_MS) + 1)
    return sql, args


def _keyset(columns: tuple[str, ...], newest: bool) -> tuple[str, str]:
    """``(c1, c2, ...) >= (%s, ...) AND (c1, c2, ...) <= (%s, ...)`` (the first row's and
    the last row's key, as parameters) and the ``ORDER BY`` of the same columns, descending
    where ``newest``: one index's range, walked in its order (the module's docstring says why
    a row and not ``c1 = %s AND ...``)."""
    row = f"({', '.join(columns)})"
    params = f"({', '.join(['%s'] * len(columns))})"
    way = " DESC" if newest else ""
    return f"{row} >= {params} AND {row} <= {params}", ", ".join(c + way for c in columns)


#: The most a history query may run (the server's statement_timeout, lock waits included),
#: and a wait for one of the pool's connections: a query the server held (a lock, a hung
#: server, a host gone without a reset) kept its REST request and its connection for ever,
#: and four such made every history route wait for a 503 (review 167).
QUERY_S = 5.0
POOL_WAIT_S = 5.0


class History:
    def __init__(
        self,
        dsn: str,
        *,
        max_connections: int = 4,
        assets: Iterable[AssetConfig] = (),
        query_s: float = QUERY_S,
    ) -> None:
        #: the configured assets by name: a trade's commission is in its quote asset
        self.assets = {a.name: a for a in assets}
        #: this side's deadline for a whole read: the pool's wait, the query, a second more
        #: for the server's own timeout to come back (a host gone without a reset sends none)
        self.deadline_s = POOL_WAIT_S + query_s + 1.0
        self.pool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            open=False,
            # an idle connection is checked as it is handed out: after PostgreSQL restarted,
            # each one the pool held failed its next request with a 503 (review 261)
            check=AsyncConnectionPool.check_connection,
            kwargs={
                "autocommit": True,
                "connect_timeout": 5,
                "options": f"-c statement_timeout={round(query_s * 1000)}",
                # over TCP, a server host gone without a reset is noticed in a minute or so,
                # as the writer's connections notice it (libpq ignores them on a socket)
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
                "tcp_user_timeout": 60_000,
            },
        )

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    async def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            async with asyncio.timeout(self.deadline_s):
                async with self.pool.connection(timeout=POOL_WAIT_S) as conn:
                    cur = conn.cursor(row_factory=tuple_row)
                    await cur.execute(sql, args)
                    return await cur.fetchall()
        except TimeoutError:
            raise TimeoutError(f"no answer within {self.deadline_s:.0f} s") from None

    async def filed_seq(self) -> int:
        """The writer's checkpoint: the last journal seq whose rows, trades included (every
        lane's), are all in the database."""
        rows = await self._rows("SELECT last_seq FROM checkpoint", ())
        return int(rows[0][0]) if rows else 0

    async def order(self, account: int, order_id: int) -> tuple[Any, ...] | None:
        """``account``'s order ``order_id``, not one the matcher refused (``orders``' rule:
        a refused order is answered, never found; its id answered -2013 live, then its row
        once filed, until a review of 2026-12-03)."""
        rows = await self._rows(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = %s AND account_id = %s "
            f"AND status <> {REJECTED}",
            (order_id, account),
        )
        return rows[0] if rows else None

    async def order_by_client_id(
        self, account: int, symbol: int, client_id: str
    ) -> tuple[Any, ...] | None:
        """``account``'s newest order on ``symbol`` filed under ``client_id`` (an id is unique
        among an account's open orders only: a grid's ``g-1`` on two symbols, review 87),
        not one the matcher refused: no view lists those, and a refused post-only under an
        id hid the order it had named before (``orders``' rule)."""
        rows = await self._rows(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE account_id = %s AND "
            f"client_order_id = %s AND symbol_id = %s AND status <> {REJECTED} "
            "ORDER BY id DESC LIMIT 1",
            (account, client_id, symbol),
        )
        return rows[0] if rows else None

    async def orders(
        self,
        account: int,
        symbol: int,
        *,
        open_only: bool = False,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> list[tuple[Any, ...]]:
        """Oldest first: from ``from_id`` or ``start_ms`` when given, else the newest ``limit``
        (as the venues answer allOrders without orderId or startTime; default 500, at most
        ``MAX_LIMIT``). ``open_only`` with no ``limit``: every open order (openOrders has no
        limit; ``risk.max_open_orders`` bounds them), not the newest 500."""
        # not the orders the matcher refused (a post-only that would take): the live views
        # keep none (a refused order is answered, not listed), so neither does the history
        span, span_args = _between("created", start_ms, end_ms)
        if limit is None and open_only:  # all of them: no cut a walk could overshoot
            return await self._rows(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE account_id = %s AND symbol_id = %s "
                f"AND id >= %s AND status <> {REJECTED} AND status IN (0, 1, 2){span} "
                "ORDER BY id",
                (account, symbol, from_id or 0, *span_args),
            )
        newest = newest_first(from_id, start_ms)
        key, order = _keyset(("account_id", "symbol_id", "id"), newest)
        if open_only:
            key += " AND status IN (0, 1, 2)"
        rows = await self._rows(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE {key} AND status <> {REJECTED}{span} "
            f"ORDER BY {order} LIMIT %s",
            (
                *(account, symbol, from_id or 0, account, symbol, _MAX_ID),
                *span_args,
                min(500 if limit is None else limit, MAX_LIMIT),
            ),
        )
        return rows[::-1] if newest else rows

    async def trades(
        self,
        account: int,
        sym: SymbolConfig,
        *,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
        order_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """The account's trades on ``sym``, one row per side it was on, oldest first: from
        ``from_id`` or ``start_ms`` when given, else the newest ``limit`` (as the venues
        answer myTrades without fromId or startTime); with ``order_id``, only that order's.
        ``commission``: what that side paid, in ``commissionAsset`` (the quote asset) units;
        None where the database has no fee."""
        span, span_args = _between("ts", start_ms, end_ms)
        newest = newest_first(from_id, start_ms)
        first = from_id or 0
        # an account's trades by its index (0003), one order's by the order's (0011): by the
        # account's, an old order of a market maker was found under every trade it made since
        if order_id is None:
            columns: tuple[str, ...] = ("{side}_account_id", "symbol_id", "trade_id")
            one: list[Any] = [account, sym.id, first, account, sym.id, _MAX_ID]
        else:
            columns = ("{side}_order_id", "trade_id")
            span = " AND {side}_account_id = %s AND symbol_id = %s" + span
            one = [order_id, first, order_id, _MAX_ID, account, sym.id]
        key, order = _keyset(columns, newest)
        # each side ordered and cut too: the outer cut alone made PostgreSQL read every trade
        # of the account on the symbol (a market maker's: all of them) and sort them
        side_sql = (
            "SELECT trade_id, {side}_order_id, price, size, "
            "floor(extract(epoch from ts) * 1000)::bigint, aggressor, {maker}, {side}_fee "
            f"FROM trades WHERE {key}{span} ORDER BY {order} LIMIT %s"
        )
        sql = (
            "SELECT * FROM (("
            + side_sql.format(side="maker", maker="true")
            + ") UNION ALL ("
            + side_sql.format(side="taker", maker="false")
            + ")) t ORDER BY "
            + ("1 DESC, 7 DESC" if newest else "1, 7")
            + " LIMIT %s"
        )
        cut = min(limit, MAX_LIMIT)
        one += [*span_args, cut + 1]  # one past the cut: whole_trades sees the next row
        rows = await self._rows(sql, (*one, *one, cut + 1))
        if newest:
            rows = rows[::-1]
        rows = whole_trades(rows, cut, newest, lambda row: int(row[0]))
        quote = self.assets.get(sym.quote)
        # this side bought: the taker of a buy, or the maker of a sell
        return [
            trade_json(
                sym, trade_id, oid, price, size, ts_ms, (aggressor == 1) != maker, maker,
                None if fee is None or quote is None else format_units(fee, quote.decimals),
            )
            for trade_id, oid, price, size, ts_ms, aggressor, maker, fee in rows
        ]  # fmt: skip

    async def klines(
        self,
        sym: SymbolConfig,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
        now_ms: int | None = None,
    ) -> list[list[Any]]:
        """Klines as the venues send them: [open time, open, high, low, close, volume, close
        time, quote volume, trades, taker buy volume, taker buy quote volume, "0"] (Binance's
        twelve fields, the last unused; the first nine from a database the writer has not
        brought to migration 0014 yet), oldest first: the ``limit`` intervals from the start
        when one is given, else the newest ``limit`` up to the end (default: now). An interval
        nobody traded in, after a trade, is a flat kline at the previous close with zero
        volume, as the exchange's own candles (``core/market/candles.py``) and the venues
        show it; intervals before the symbol's first trade are left out."""
        seconds, stored = KLINES[interval]
        window = seconds * 1000
        limit = max(1, min(limit, MAX_LIMIT))
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        # Whole klines only: those opening at or after the start and at or before the end.
        top = min(now_ms, MAX_MS) // window * window
        if end_ms is not None:
            top = min(top, min(end_ms, MAX_MS) // window * window)
        if start_ms is not None:
            low = -(-min(start_ms, MAX_MS) // window) * window
        else:
            low = max(0, top - (limit - 1) * window)
        before = await self._rows(
            "SELECT close FROM candles WHERE symbol_id = %s AND interval_s = %s AND "
            "bucket < to_timestamp(%s / 1000.0) ORDER BY bucket DESC LIMIT 1",
            (sym.id, stored, low),
        )
        if start_ms is not None:
            if not before:  # nothing traded before the start: from the first trade on
                (first,) = await self._rows(
                    "SELECT floor(extract(epoch from min(bucket)) * 1000)::bigint FROM candles "
                    "WHERE symbol_id = %s AND interval_s = %s AND "
                    "bucket >= to_timestamp(%s / 1000.0)",
                    (sym.id, stored, low),
                )
                if first[0] is None:
                    return []
                low = int(first[0]) // window * window
            top = min(top, low + (limit - 1) * window)
        if low > top:
            return []
        span, span_args = _between("bucket", low, top + window - 1)
        # open and close by trade id, as the writer merges them (a clock stepped back puts a
        # later trade in an earlier minute: the rows must not depend on that)
        query = (
            "SELECT floor(extract(epoch from b) * 1000)::bigint, o, h, l, c, v, q, n, bv, bq FROM ("
            "SELECT date_bin(make_interval(secs => %s), bucket, 'epoch') AS b, "
            "(array_agg(open ORDER BY first_trade_id))[1] AS o, max(high) AS h, "
            "min(low) AS l, (array_agg(close ORDER BY last_trade_id DESC))[1] AS c, "
            "sum(volume) AS v, sum(quote_volume) AS q, sum(trades) AS n, {} "
            f"FROM candles WHERE symbol_id = %s AND interval_s = %s{span} GROUP BY 1) k "
            "ORDER BY b LIMIT %s"
        )
        args = (seconds, sym.id, stored, *span_args, limit)
        taker = True
        try:
            sums = "sum(taker_buy_volume) AS bv, sum(taker_buy_quote_volume) AS bq"
            rows = await self._rows(query.format(sums), args)
        except UndefinedColumn:  # a database the writer has not brought to 0014 yet (its
            # migration waits on a dump's lock: review 243): the nine fields it has
            rows, taker = await self._rows(query.format("0 AS bv, 0 AS bq"), args), False
        filled = _flat_filled(rows, low, top, window, before[0][0] if before else None)
        pd, qd = sym.price_decimals, sym.qty_decimals
        fields = 12 if taker else 9
        return [
            [
                t,
                *(format_units(p, pd).decode() for p in (o, h, lo, c)),
                format_units(int(v), qd).decode(),
                t + seconds * 1000 - 1,
                format_units(int(q), pd + qd).decode(),
                int(n),
                format_units(int(bv), qd).decode(),
                format_units(int(bq), pd + qd).decode(),
                "0",
            ][:fields]
            for t, o, h, lo, c, v, q, n, bv, bq in filled
        ]
