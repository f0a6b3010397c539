"""The rows a command and its events make: sans-I/O, no clock, deterministic.

``Projection.process(seq, command, events, batch)`` updates its open orders and adds rows to
``batch``: a trade row per ``Trade``, the latest version of every order touched (one row per
order per batch), accounts, transfers, 1m/1h/1d candles merged in the batch, and the (account,
asset) pairs whose balance may have changed, each with the seq and time of the last command
that marked it. A trade row carries each side's fee (quote minor units), under the fees in
force in the replay's accounts when its command was replayed: a ``FeeSchedule`` changes them
between commands only, so those are the fees the router settled the trade under.
``Batch.seal(accounts)`` reads those balances once, at the batch's last seq;
a balance not marked after its stamp has not changed since, so the row (value, ``updated_seq``,
``updated``) is the same whatever the batch sizes: a rebuild equals the live database. With
``batch`` None it only keeps its orders up to date (replaying up to the checkpoint after a
restart).

Balances are marked generously: any order event marks its account's base and quote of the
symbol; that costs a few extra upserts of unchanged values and cannot miss a change.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

import msgspec

from config.schema import RingexConfig
from procs.common.records import (
    Accepted,
    CreateAccount,
    FeeSchedule,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    Replaced,
    ReplaceOrder,
    Trade,
    Transfer,
    Triggered,
)
from procs.common.types import DoneReason, OrderFlag, OrdType, Side
from procs.core.accounts import Accounts
from procs.dbwriter.copy import BinaryRows, GroupedRows, RowLayout, pg_micros

# order_statuses codes (migrations/0001_core.sql)
PENDING, NEW, PARTIALLY_FILLED, FILLED, CANCELLED = 0, 1, 2, 3, 4
EXPIRED, SELF_TRADE, MASS_CANCELLED, REJECTED = 5, 6, 7, 8
OPEN_STATUSES: Final = (PENDING, NEW, PARTIALLY_FILLED)
DONE_STATUS: Final = {
    DoneReason.FILLED: FILLED,
    DoneReason.CANCELLED: CANCELLED,
    DoneReason.EXPIRED: EXPIRED,
    DoneReason.SELF_TRADE: SELF_TRADE,
    DoneReason.MASS_CANCELLED: MASS_CANCELLED,
}
CANDLE_INTERVALS_S: Final = (60, 3_600, 86_400)
_BUY: Final = Side.BUY  # a module constant: an enum member lookup costs ~60 ns a trade
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

TRADES = RowLayout(
    "trades",
    [
        ("symbol_id", "int4"), ("trade_id", "int8"), ("seq", "int8"), ("ts", "timestamptz"),
        ("price", "int8"), ("size", "int8"), ("aggressor", "int2"),
        ("maker_order_id", "int8"), ("maker_account_id", "int8"),
        ("taker_order_id", "int8"), ("taker_account_id", "int8"),
        ("maker_fee", "int8"), ("taker_fee", "int8"),  # quote minor units (0007_trade_fees)
    ],
)  # fmt: skip
ORDERS = RowLayout(
    "orders",
    [
        ("id", "int8"), ("account_id", "int8"), ("symbol_id", "int4"), ("side", "int2"),
        ("ord_type", "int2"), ("tif", "int2"), ("price", "int8"), ("stop_price", "int8"),
        ("size", "int8"), ("remaining", "int8"), ("filled", "int8"), ("status", "int2"),
        ("reject_code", "int4"), ("created_seq", "int8"), ("created", "timestamptz"),
        ("updated_seq", "int8"), ("updated", "timestamptz"), ("flags", "int2"),
        ("display", "int8"),  # 0008_order_display
        ("client_order_id", "text"),  # 0013_order_client_id
    ],
)  # fmt: skip
ACCOUNTS = RowLayout(
    "accounts", [("id", "int8"), ("created_seq", "int8"), ("created", "timestamptz")]
)

_PACK_TRADE: Final = TRADES.row.pack


def trade_row(t: Trade, ts_us: int, maker_fee: int, taker_fee: int) -> bytes:
    """``TRADES.pack`` of a trade (``ts_us``: its ``pg_micros``; the fees in quote minor units)
    straight from its fields: no tuple built a row (``test_lanes`` checks the two agree)."""
    return _PACK_TRADE(
        13, 4, t.symbol, 8, t.trade_id, 8, t.seq, 8, ts_us, 8, t.price, 8, t.qty, 2, t.aggressor,
        8, t.maker_order_id, 8, t.maker_account, 8, t.taker_order_id, 8, t.taker_account,
        8, maker_fee, 8, taker_fee,
    )  # fmt: skip


def to_datetime(ts_ns: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=ts_ns // 1000)


class OrderRow(msgspec.Struct, array_like=True):
    """An order as the ``orders`` table has it (field order = ``ORDERS``, less ``updated_seq``
    and ``updated``, which come before ``flags``, ``display`` and ``client_id`` there)."""

    id: int
    account: int
    symbol: int
    side: int
    ord_type: int
    tif: int
    price: int
    stop_price: int
    size: int
    remaining: int
    filled: int
    status: int
    reject_code: int
    created_seq: int
    created_us: int  # pg_micros of the new order's ts
    flags: int = 0  # NewOrder.flags (a snapshot from before it was kept: 0)
    display: int = 0  # NewOrder.display_qty (likewise)
    client_id: bytes = b""  # NewOrder.client_id, or the last Replaced's ReplaceOrder's (likewise)


@dataclass
class Batch:
    """Rows of the commands ``first_seq..last_seq``: the trades in each lane's transaction,
    committed first, the rest with the checkpoint in one more (``store.py``; a restart
    rewinds the lanes to the checkpoint)."""

    first_seq: int
    last_seq: int = 0
    #: the CRC-32 of ``last_seq``'s journal image, kept with the checkpoint (the writer's)
    last_crc: int | None = None
    #: ... and of ``first_seq - 1``'s, as this writer read it (None: not known): the
    #: checkpoint's must be the same, or another writer wrote it from another journal
    prev_crc: int | None = None
    last_ts_ns: int = 0
    started: float = field(default_factory=time.monotonic)
    trades: GroupedRows = field(default_factory=lambda: GroupedRows(TRADES))  # by symbol
    accounts: BinaryRows = field(default_factory=lambda: BinaryRows(ACCOUNTS))
    orders: dict[int, tuple[int | bytes, ...]] = field(default_factory=dict)
    transfers: list[tuple[int, dt.datetime, int, int, Decimal, int]] = field(default_factory=list)
    # (account, asset) -> (seq, ts_ns) of the last command that marked its balance:
    dirty: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    # symbol -> account that traded -> (seq, ts_ns) of its last trade:
    traders: dict[int, dict[int, tuple[int, int]]] = field(default_factory=dict)
    candles: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # (symbol, minute)
    # filled by seal():
    order_rows: BinaryRows = field(default_factory=lambda: BinaryRows(ORDERS))
    balances: list[tuple[int, int, Decimal, Decimal, int, dt.datetime]] = field(
        default_factory=list
    )
    sealed: bool = False
    ts_min_us: int = 2**63 - 1  # of the trades (pg micros): the partitions they need
    ts_max_us: int = -(2**63)

    def rows(self) -> int:
        """Rows so far (what ``batch_rows`` bounds)."""
        return (
            self.trades.count + self.accounts.count + len(self.orders) + len(self.transfers)
            + len(self.dirty) + len(self.candles)
        )  # fmt: skip

    def seal(
        self, accounts: Accounts, decimals: dict[int, int], assets_of: dict[int, tuple[int, int]]
    ) -> None:
        """Freeze the batch at ``last_seq``: pack the orders, read the marked balances."""
        if self.sealed:
            return
        dirty = self.dirty
        for symbol, traders in self.traders.items():
            base, quote = assets_of[symbol]
            for account, stamp in traders.items():
                for key in ((account, base), (account, quote)):
                    if dirty.get(key, (0, 0)) < stamp:
                        dirty[key] = stamp
        for row in self.orders.values():
            self.order_rows.add(row)
        for (account, asset), (seq, ts_ns) in sorted(dirty.items()):
            free, reserved = accounts.balance(account, asset)
            places = -decimals[asset]
            self.balances.append(
                (
                    *(account, asset, Decimal(free).scaleb(places)),
                    *(Decimal(reserved).scaleb(places), seq, to_datetime(ts_ns)),
                )
            )
        self.sealed = True

    def candle_rows(self) -> list[tuple[object, ...]]:
        """(symbol, interval_s, bucket, open, high, low, close, volume, quote_volume, trades,
        first_trade_id, last_trade_id, taker_buy_volume, taker_buy_quote_volume) per candle
        the batch touched: its 1m candles, and the longer ones merged from them."""
        merged: dict[tuple[int, int, int], list[int]] = {}
        for (symbol, minute), c in sorted(self.candles.items()):
            for interval in CANDLE_INTERVALS_S:
                key = (symbol, interval, minute - minute % (interval // 60))
                m = merged.get(key)
                if m is None:
                    merged[key] = list(c)
                else:  # open and close by trade id (as the upsert merges): not by minute
                    m[1], m[2] = max(m[1], c[1]), min(m[2], c[2])
                    if c[7] < m[7]:
                        m[0], m[7] = c[0], c[7]
                    if c[8] > m[8]:
                        m[3], m[8] = c[3], c[8]
                    m[4], m[5], m[6] = m[4] + c[4], m[5] + c[5], m[6] + c[6]
                    m[9], m[10] = m[9] + c[9], m[10] + c[10]
        rows: list[tuple[object, ...]] = []
        for (symbol, interval, start), c in merged.items():  # c: add_candle's list
            bucket = to_datetime(start * 60_000_000_000)
            rows.append((symbol, interval, bucket, *c[:5], Decimal(c[5]), *c[6:]))
        return rows


class Projection:
    """Open orders and what every command's events do to the rows."""

    def __init__(self, cfg: RingexConfig, accounts: Accounts) -> None:
        #: The replay's accounts (``Follower``'s; a restore sets the restored ones): their
        #: markets hold the fees in force and their fee account the one trades credit, both
        #: journaled state (``FeeSchedule``), never the config of the day.
        self.accounts = accounts
        by_name = {a.name: a for a in cfg.assets}
        self.decimals = {a.id: a.decimals for a in cfg.assets}
        self.assets_of = {
            s.id: (by_name[s.base].id, by_name[s.quote].id) for s in cfg.symbols
        }  # symbol -> (base, quote)
        self.orders: dict[int, OrderRow] = {}
        self._renamed = b""

    def process(
        self, seq: int, command: Record, events: Sequence[Record], batch: Batch | None
    ) -> None:
        ts_ns: int = getattr(command, "ts_ns", 0)
        touched: dict[int, OrderRow] = {}
        kind = type(command)
        self._renamed = b""  # the client id a replace gives its order, once Replaced
        if kind is NewOrder:
            new: NewOrder = command  # type: ignore[assignment]
            # a price the router gave (a market or stop-market buy sent without one: its
            # cap) is not the client's: 0, as every live view shows it
            price = 0 if new.flags & OrderFlag.CAPPED else new.price
            order = OrderRow(
                *(new.order_id, new.account, new.symbol, int(new.side), int(new.ord_type)),
                *(int(new.tif), price, new.stop_price, new.qty, new.qty, 0, PENDING, 0),
                *(seq, pg_micros(ts_ns), new.flags, new.display_qty, new.client_id),
            )
            self.orders[new.order_id] = touched[new.order_id] = order
        elif kind is ReplaceOrder:
            replace: ReplaceOrder = command  # type: ignore[assignment]
            self._renamed = replace.client_id
            target = self.orders.get(replace.order_id)
            if target is not None and batch is not None:
                self._mark(batch, target, (seq, ts_ns))  # the router reserved the replace's hold
        elif kind is CreateAccount and batch is not None:
            create: CreateAccount = command  # type: ignore[assignment]
            batch.accounts.add((create.account, seq, pg_micros(ts_ns)))
        elif kind is FeeSchedule and batch is not None:  # the account fees go to: opened by
            fees: FeeSchedule = command  # type: ignore[assignment]  # it (review 50)
            batch.accounts.add((fees.fee_account, seq, pg_micros(ts_ns)))
        elif kind is Transfer and batch is not None:
            transfer: Transfer = command  # type: ignore[assignment]
            places = -self.decimals[transfer.asset]
            batch.transfers.append(
                (
                    *(seq, to_datetime(ts_ns), transfer.account, transfer.asset),
                    *(Decimal(transfer.amount).scaleb(places), transfer.key),
                )
            )
            batch.dirty[transfer.account, transfer.asset] = (seq, ts_ns)
        stamp = (seq, ts_ns)
        for event in events:
            self._event(event, touched, batch, stamp)
        if batch is None:
            for oid, order in touched.items():
                if order.status not in OPEN_STATUSES:
                    self.orders.pop(oid, None)
            return
        updated_us = pg_micros(ts_ns)
        for oid, order in touched.items():
            *fields, flags, display, client_id = msgspec.structs.astuple(order)
            batch.orders[oid] = (*fields, seq, updated_us, flags, display, client_id)
            self._mark(batch, order, stamp)
            if order.status not in OPEN_STATUSES:
                self.orders.pop(oid, None)
        batch.last_seq, batch.last_ts_ns = seq, ts_ns

    def _mark(self, batch: Batch, order: OrderRow, stamp: tuple[int, int]) -> None:
        base, quote = self.assets_of[order.symbol]
        batch.dirty[order.account, base] = stamp
        batch.dirty[order.account, quote] = stamp

    def _order(self, oid: int, what: str) -> OrderRow:
        order = self.orders.get(oid)
        if order is None:
            raise AssertionError(f"{what} event for order {oid}, which is not open here")
        return order

    def _event(
        self,
        event: Record,
        touched: dict[int, OrderRow],
        batch: Batch | None,
        stamp: tuple[int, int],
    ) -> None:
        kind = type(event)
        if kind is Trade:
            trade: Trade = event  # type: ignore[assignment]
            for oid, leaves in (
                (trade.maker_order_id, trade.maker_leaves),
                (trade.taker_order_id, trade.taker_leaves),
            ):
                order = touched[oid] = self._order(oid, f"trade {trade.trade_id}")
                order.filled += trade.qty
                order.remaining = leaves
                order.status = PARTIALLY_FILLED if leaves else FILLED
            if batch is not None:
                self.add_trade(trade, batch, stamp)
        elif kind is Accepted:
            accepted: Accepted = event  # type: ignore[assignment]
            order = touched[accepted.order_id] = self._order(accepted.order_id, "accepted")
            order.status = PARTIALLY_FILLED if order.filled else NEW
            order.remaining = accepted.qty
        elif kind is OrderDone:
            done: OrderDone = event  # type: ignore[assignment]
            order = touched[done.order_id] = self._order(done.order_id, "done")
            order.status = DONE_STATUS[done.reason]
            order.filled = done.filled_qty
            order.remaining = 0
        elif kind is Rejected:
            rejected: Rejected = event  # type: ignore[assignment]
            order_or_none = self.orders.get(rejected.order_id)
            if order_or_none is None or order_or_none.account != rejected.account:
                return  # a cancel or replace of an order not (or no longer) open
            if order_or_none.status == PENDING and rejected.seq == order_or_none.created_seq:
                order_or_none.status = REJECTED
                order_or_none.reject_code = int(rejected.code)
                order_or_none.remaining = 0
                touched[rejected.order_id] = order_or_none
            elif batch is not None:  # a replace refused: its hold went back, and the order
                self._mark(batch, order_or_none, stamp)  # did not change (review 50)
        elif kind is Replaced:
            replaced: Replaced = event  # type: ignore[assignment]
            order = touched[replaced.order_id] = self._order(replaced.order_id, "replaced")
            order.price, order.remaining = replaced.price, replaced.qty
            order.size = order.filled + replaced.qty
            if self._renamed:  # b"": not kept (a long ClOrdID, an older build's entry)
                order.client_id = self._renamed
        elif kind is Triggered:
            triggered: Triggered = event  # type: ignore[assignment]
            order = touched[triggered.order_id] = self._order(triggered.order_id, "triggered")
            if order.ord_type != OrdType.STOP:  # a stop-market's price is a cap (above)
                order.price = triggered.price

    def add_trade(self, trade: Trade, batch: Batch, stamp: tuple[int, int]) -> None:
        """A trade row, its candles and the balances it marks with ``stamp`` (the seq and time
        of the command that made it)."""
        ts = pg_micros(trade.ts_ns)
        batch.ts_max_us = max(batch.ts_max_us, ts)
        batch.ts_min_us = min(batch.ts_min_us, ts)
        maker_fee, taker_fee = self.accounts.markets[trade.symbol].fees(trade.price, trade.qty)
        batch.trades.add_row(trade.symbol, trade.seq, trade_row(trade, ts, maker_fee, taker_fee))
        traders = batch.traders.get(trade.symbol)
        if traders is None:
            traders = batch.traders[trade.symbol] = {}
        traders[self.accounts.fee_account] = traders[trade.maker_account] = stamp
        traders[trade.taker_account] = stamp
        add_candle(batch.candles, trade)

    # -- state (the writer's snapshot) -----------------------------------------------------------

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(sorted(self.orders.values(), key=lambda o: o.id))

    def restore(self, data: bytes) -> None:
        rows = msgspec.msgpack.decode(data, type=list[OrderRow])
        self.orders = {row.id: row for row in rows}


def add_candle(candles: dict[tuple[int, int], list[int]], trade: Trade) -> None:
    """Merge ``trade`` into the batch's 1m candle of its symbol:
    [open, high, low, close, volume, quote volume, trades, first trade id, last trade id,
    taker buy volume, taker buy quote volume] (the last two: a buying aggressor's trades)."""
    price, qty = trade.price, trade.qty
    key = (trade.symbol, trade.ts_ns // 60_000_000_000)
    c = candles.get(key)
    bought = trade.aggressor == _BUY
    if c is None:
        first = trade.trade_id
        buy = (qty, price * qty) if bought else (0, 0)
        candles[key] = [price, price, price, price, qty, price * qty, 1, first, first, *buy]
    else:
        if price > c[1]:
            c[1] = price
        elif price < c[2]:
            c[2] = price
        c[3] = price
        c[4] += qty
        c[5] += price * qty
        c[6] += 1
        c[8] = trade.trade_id
        if bought:
            c[9] += qty
            c[10] += price * qty
