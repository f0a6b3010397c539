"""The order book's command flow, shared by the reference and the fast implementation.

``Book.execute(command)`` validates, then drives a few mechanics that each implementation
provides (match, rest, remove, level totals, priority order). Everything observable, the
events and their order, is fixed here, so the two books can only differ in mechanics: exactly
what the contract and differential tests compare.

Event order for one command (the contract the fast book must follow):

- ``NewOrder``: ``Rejected`` and nothing else; or ``Accepted``, then for each fill a ``Trade``
  followed by the maker's ``OrderDone(FILLED)`` if it filled, then one ``BookLevel`` per maker
  level touched (in the order touched), then the taker's outcome: ``OrderDone(FILLED)``, a
  ``BookLevel`` for the level it rests on (GTC, DAY), or ``OrderDone(EXPIRED)`` with what was
  left (IOC; FOK that cannot fill completely, before any trade).
- ``CancelOrder``: ``OrderDone(CANCELLED)`` and the level's ``BookLevel``; or ``Rejected``.
- ``ReplaceOrder``: ``Replaced``, then, when the order keeps its place (same price, smaller
  size), its level's ``BookLevel``; otherwise it leaves the book and re-enters as a new
  arrival, matching like a ``NewOrder`` (trades, maker levels, its outcome). Or ``Rejected``.
- ``MassCancel``: per cancelled order, in priority order (bids first), ``OrderDone(MASS_
  CANCELLED)``; then one ``BookLevel`` per level touched.

Every event carries the command's ``seq`` and ``ts_ns``: the core never reads a clock, so the
same commands always give the same events.

This slice supports limit orders (GTC, IOC, FOK, DAY resting like GTC, post-only). Market,
stop and iceberg orders, self-trade prevention, halts and end-of-session expiry are rejected
with ``INVALID_ORDER`` until they land (issue 3).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from procs.common.records import (
    Accepted,
    AdminCommand,
    BookLevel,
    CancelOrder,
    MassCancel,
    NewOrder,
    OrderDone,
    OrderRecord,
    Record,
    Rejected,
    Replaced,
    ReplaceOrder,
    Trade,
)
from procs.common.result_codes import ResultCode
from procs.common.types import DoneReason, OrderFlag, OrdType, Side, StpMode, TimeInForce
from procs.matcher.symbols import SymbolSpec

B = TypeVar("B", bound="Book")


@dataclass(slots=True)
class RestingOrder:
    order_id: int
    account: int
    side: Side
    price: int
    leaves: int
    filled: int
    arrival: int  # priority within a price: smaller came first
    gateway: int
    session: int
    client_ref: int


class BookState(msgspec.Struct, frozen=True, array_like=True):
    """Everything a book is, in a canonical order: what ``state_hash`` hashes and what a
    snapshot holds. Orders are listed bids then asks, each in priority order."""

    symbol: int
    next_trade_id: int
    next_arrival: int
    orders: list[tuple[int, int, int, int, int, int, int, int, int, int]]


class Book(ABC):
    """One symbol's book. ``execute(command)`` returns the events it caused."""

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.orders: dict[int, RestingOrder] = {}
        self.next_trade_id = 1  # gapless per symbol
        self.next_arrival = 0

    # -- mechanics, per implementation ------------------------------------------------------

    @abstractmethod
    def _crossable(self, side: Side, price: int, enough: int) -> int:
        """Resting opposite quantity a ``side`` order at ``price`` could take; may stop
        counting once it reaches ``enough``."""

    @abstractmethod
    def _match(
        self, cmd: OrderRecord, taker: RestingOrder, events: list[Record]
    ) -> list[tuple[Side, int]]:
        """Fill ``taker`` against the opposite side in priority order while it crosses,
        appending ``_trade`` events and, for each maker that fills, the maker's
        ``_done_resting(FILLED)`` (and dropping it from ``orders``). Returns the maker
        levels touched, in order."""

    @abstractmethod
    def _rest(self, order: RestingOrder) -> None:
        """Put ``order`` at the back of its price level (its ``arrival`` is set)."""

    @abstractmethod
    def _unlink(self, order: RestingOrder) -> None:
        """Take ``order`` out of its level (``orders`` is the caller's business)."""

    @abstractmethod
    def _shrink(self, order: RestingOrder, leaves: int) -> None:
        """Set ``order``'s leaves to a smaller value, keeping its place."""

    @abstractmethod
    def _level_totals(self, side: Side, price: int) -> tuple[int, int]:
        """(total leaves, order count) resting at ``price`` on ``side``."""

    @abstractmethod
    def _priority(self) -> Iterator[RestingOrder]:
        """Every resting order: bids then asks, each in priority order."""

    @abstractmethod
    def validate_internal_state(self) -> None:
        """Raise ``AssertionError`` naming the first broken invariant."""

    # -- commands ----------------------------------------------------------------------------

    def execute(self, command: Record) -> list[Record]:
        if isinstance(command, NewOrder):
            return self._new(command)
        if isinstance(command, CancelOrder):
            return self._cancel(command)
        if isinstance(command, ReplaceOrder):
            return self._replace(command)
        if isinstance(command, MassCancel):
            return self._mass_cancel(command)
        if isinstance(command, AdminCommand):
            return [
                Rejected(
                    *(command.seq, command.ts_ns, 0, 0, 0, 0, command.symbol, 0),
                    code=ResultCode.INVALID_ORDER,
                )
            ]
        raise TypeError(f"the matcher does not execute {type(command).__name__} records")

    def _new(self, cmd: NewOrder) -> list[Record]:
        problem = self._check_order(cmd)
        if problem is not None:
            return [_reject(cmd, problem)]
        if cmd.order_id in self.orders:
            return [_reject(cmd, ResultCode.INVALID_ORDER)]
        if cmd.flags & OrderFlag.POST_ONLY and self._crossable(cmd.side, cmd.price, 1) > 0:
            return [_reject(cmd, ResultCode.POST_ONLY_WOULD_TAKE)]
        events: list[Record] = [
            Accepted(*_header(cmd), side=cmd.side, price=cmd.price, qty=cmd.qty)
        ]
        order = RestingOrder(
            cmd.order_id,
            cmd.account,
            cmd.side,
            cmd.price,
            cmd.qty,
            0,
            0,
            cmd.gateway,
            cmd.session,
            cmd.client_ref,
        )
        if cmd.tif == TimeInForce.FOK and self._crossable(cmd.side, cmd.price, cmd.qty) < cmd.qty:
            events.append(_done(cmd, order, DoneReason.EXPIRED))
            return events
        self._enter(cmd, order, cmd.tif, events)
        return events

    def _enter(
        self, cmd: OrderRecord, order: RestingOrder, tif: TimeInForce, events: list[Record]
    ) -> None:
        """Match ``order`` as the aggressor, then rest, expire or finish it."""
        touched = self._match(cmd, order, events)
        for side, price in touched:
            events.append(self._level(cmd, side, price))
        if order.leaves == 0:
            events.append(_done(cmd, order, DoneReason.FILLED))
        elif tif == TimeInForce.IOC:
            events.append(_done(cmd, order, DoneReason.EXPIRED))
        else:
            order.arrival = self.next_arrival
            self.next_arrival += 1
            self._rest(order)
            self.orders[order.order_id] = order
            events.append(self._level(cmd, order.side, order.price))

    def _cancel(self, cmd: CancelOrder) -> list[Record]:
        order = self.orders.get(cmd.order_id)
        problem = self._check_owner(cmd, order)
        if problem is not None or order is None:
            return [_reject(cmd, problem or ResultCode.UNKNOWN_ORDER)]
        self._remove(order)
        return [
            _done(cmd, order, DoneReason.CANCELLED),  # to the requester: the cancel's header
            self._level(cmd, order.side, order.price),
        ]

    def _replace(self, cmd: ReplaceOrder) -> list[Record]:
        order = self.orders.get(cmd.order_id)
        problem = self._check_owner(cmd, order)
        if problem is None:
            problem = self._check_price_qty(cmd.price, cmd.qty)
        if problem is not None or order is None:
            return [_reject(cmd, problem or ResultCode.UNKNOWN_ORDER)]
        events: list[Record] = [Replaced(*_header(cmd), price=cmd.price, qty=cmd.qty)]
        if cmd.price == order.price and cmd.qty <= order.leaves:
            self._shrink(order, cmd.qty)  # smaller at the same price: keeps its place
            events.append(self._level(cmd, order.side, order.price))
            return events
        old_price = order.price
        self._remove(order)
        events.append(self._level(cmd, order.side, old_price))
        order.price, order.leaves = cmd.price, cmd.qty
        self._enter(cmd, order, TimeInForce.GTC, events)
        return events

    def _mass_cancel(self, cmd: MassCancel) -> list[Record]:
        if cmd.symbol not in (0, self.spec.symbol):
            return []
        victims = [o for o in self._priority() if cmd.account in (0, o.account)]
        events: list[Record] = []
        touched: list[tuple[Side, int]] = []
        for order in victims:
            self._remove(order)
            events.append(self._done_resting(cmd, order, DoneReason.MASS_CANCELLED))
            if (order.side, order.price) not in touched:
                touched.append((order.side, order.price))
        events += [self._level(cmd, side, price) for side, price in touched]
        return events

    # -- checks --------------------------------------------------------------------------------

    def _check_order(self, cmd: NewOrder) -> ResultCode | None:
        if cmd.symbol != self.spec.symbol:
            return ResultCode.UNKNOWN_SYMBOL
        if (
            cmd.ord_type != OrdType.LIMIT
            or cmd.stp != StpMode.NONE
            or cmd.display_qty
            or cmd.stop_price
            or cmd.flags & ~OrderFlag.ALL
        ):
            return ResultCode.INVALID_ORDER  # not in this slice yet
        return self._check_price_qty(cmd.price, cmd.qty)

    def _check_price_qty(self, price: int, qty: int) -> ResultCode | None:
        spec = self.spec
        if price <= 0 or price % spec.tick:
            return ResultCode.INVALID_PRICE
        if qty % spec.lot or not spec.min_qty <= qty <= spec.max_qty:
            return ResultCode.INVALID_QTY
        return None

    def _check_owner(
        self, cmd: CancelOrder | ReplaceOrder, order: RestingOrder | None
    ) -> ResultCode | None:
        if cmd.symbol != self.spec.symbol:
            return ResultCode.UNKNOWN_SYMBOL
        if order is None:
            return ResultCode.UNKNOWN_ORDER
        if order.account != cmd.account:
            return ResultCode.NOT_ORDER_OWNER
        return None

    def _level(self, cmd: OrderRecord | MassCancel, side: Side, price: int) -> BookLevel:
        qty, count = self._level_totals(side, price)
        return BookLevel(
            seq=cmd.seq,
            ts_ns=cmd.ts_ns,
            symbol=self.spec.symbol,
            side=side,
            price=price,
            qty=qty,
            count=count,
        )

    def _done_resting(
        self, cmd: OrderRecord | MassCancel, order: RestingOrder, reason: DoneReason
    ) -> OrderDone:
        """An event about a resting order caused by someone else's command (a maker filled, a
        mass cancel): the resting order's own routing header, so its owner's gateway gets the
        report."""
        return OrderDone(
            seq=cmd.seq,
            ts_ns=cmd.ts_ns,
            gateway=order.gateway,
            session=order.session,
            client_ref=order.client_ref,
            account=order.account,
            symbol=self.spec.symbol,
            order_id=order.order_id,
            reason=reason,
            filled_qty=order.filled,
            leaves_qty=order.leaves,
        )

    def _remove(self, order: RestingOrder) -> None:
        self._unlink(order)
        del self.orders[order.order_id]

    def _trade(
        self, cmd: OrderRecord, maker: RestingOrder, taker: RestingOrder, fill: int
    ) -> Trade:
        trade = Trade(
            seq=cmd.seq,
            ts_ns=cmd.ts_ns,
            trade_id=self.next_trade_id,
            symbol=self.spec.symbol,
            price=maker.price,
            qty=fill,
            aggressor=taker.side,
            maker_order_id=maker.order_id,
            maker_account=maker.account,
            maker_gateway=maker.gateway,
            maker_leaves=maker.leaves,
            taker_order_id=taker.order_id,
            taker_account=taker.account,
            taker_gateway=taker.gateway,
            taker_leaves=taker.leaves,
        )
        self.next_trade_id += 1
        return trade

    # -- state -------------------------------------------------------------------------------

    def state(self) -> BookState:
        return BookState(
            symbol=self.spec.symbol,
            next_trade_id=self.next_trade_id,
            next_arrival=self.next_arrival,
            orders=[
                (
                    o.order_id,
                    int(o.side),
                    o.price,
                    o.leaves,
                    o.filled,
                    o.arrival,
                    o.account,
                    o.gateway,
                    o.session,
                    o.client_ref,
                )
                for o in self._priority()
            ],
        )

    def state_hash(self) -> str:
        """A digest of the book's state that any implementation computes the same way."""
        return hashlib.blake2b(msgspec.msgpack.encode(self.state()), digest_size=16).hexdigest()

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.state())

    @classmethod
    def restore(cls: type[B], spec: SymbolSpec, snapshot: bytes) -> B:
        state = msgspec.msgpack.decode(snapshot, type=BookState)
        if state.symbol != spec.symbol:
            raise ValueError(f"snapshot is of symbol {state.symbol}, not {spec.symbol}")
        book = cls(spec)
        book.next_trade_id = state.next_trade_id
        book.next_arrival = state.next_arrival
        for oid, side, price, leaves, filled, arrival, account, gw, session, ref in state.orders:
            order = RestingOrder(
                oid, account, Side(side), price, leaves, filled, arrival, gw, session, ref
            )
            book._rest(order)  # in priority order, so each goes to the back of its level
            book.orders[oid] = order
        return book


def _other(side: Side) -> Side:
    return Side.SELL if side == Side.BUY else Side.BUY


def _crosses(side: Side, price: int, resting_price: int) -> bool:
    return price >= resting_price if side == Side.BUY else price <= resting_price


def _header(cmd: OrderRecord) -> tuple[int, int, int, int, int, int, int, int]:
    return (
        cmd.seq,
        cmd.ts_ns,
        cmd.gateway,
        cmd.session,
        cmd.client_ref,
        cmd.account,
        cmd.symbol,
        cmd.order_id,
    )


def _reject(cmd: OrderRecord, code: ResultCode) -> Rejected:
    return Rejected(*_header(cmd), code=code)


def _done(cmd: OrderRecord, order: RestingOrder, reason: DoneReason) -> OrderDone:
    return OrderDone(*_header(cmd), reason=reason, filled_qty=order.filled, leaves_qty=order.leaves)
