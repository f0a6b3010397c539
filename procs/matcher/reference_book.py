"""The reference order book: price-time priority, written to be obviously correct, not fast.

It is the oracle that the fast book is contract-tested against: both turn a command into the
same list of event records, byte for byte, and report the same ``state_hash()``. Each side is
a plain list kept sorted by priority (best price first, then arrival), re-sorted after every
change: O(n) everywhere, and nothing clever to get wrong.

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
from dataclasses import dataclass

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


class ReferenceBook:
    """One symbol's book. ``execute(command)`` returns the events it caused."""

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.bids: list[RestingOrder] = []
        self.asks: list[RestingOrder] = []
        self.orders: dict[int, RestingOrder] = {}
        self.next_trade_id = 1  # gapless per symbol
        self.next_arrival = 0

    # -- commands --------------------------------------------------------------------------

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
        if cmd.flags & OrderFlag.POST_ONLY and self._crossable(cmd.side, cmd.price) > 0:
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
        if cmd.tif == TimeInForce.FOK and self._crossable(cmd.side, cmd.price) < cmd.qty:
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
            self._side(order.side).append(order)
            self._sort()
            self.orders[order.order_id] = order
            events.append(self._level(cmd, order.side, order.price))

    def _match(
        self, cmd: OrderRecord, taker: RestingOrder, events: list[Record]
    ) -> list[tuple[Side, int]]:
        touched: list[tuple[Side, int]] = []
        opposite = self._side(_other(taker.side))
        while taker.leaves and opposite and _crosses(taker.side, taker.price, opposite[0].price):
            maker = opposite[0]
            fill = min(taker.leaves, maker.leaves)
            maker.leaves -= fill
            maker.filled += fill
            taker.leaves -= fill
            taker.filled += fill
            events.append(
                Trade(
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
            )
            self.next_trade_id += 1
            if (maker.side, maker.price) not in touched:
                touched.append((maker.side, maker.price))
            if maker.leaves == 0:
                opposite.pop(0)
                del self.orders[maker.order_id]
                events.append(_done_resting(cmd, maker, DoneReason.FILLED))
        return touched

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
            order.leaves = cmd.qty  # smaller at the same price: keeps its place
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
        victims = [o for o in self.bids + self.asks if cmd.account in (0, o.account)]
        events: list[Record] = []
        touched: list[tuple[Side, int]] = []
        for order in victims:
            self._remove(order)
            events.append(
                OrderDone(
                    seq=cmd.seq,
                    ts_ns=cmd.ts_ns,
                    gateway=order.gateway,
                    session=order.session,
                    client_ref=order.client_ref,
                    account=order.account,
                    symbol=self.spec.symbol,
                    order_id=order.order_id,
                    reason=DoneReason.MASS_CANCELLED,
                    filled_qty=order.filled,
                    leaves_qty=order.leaves,
                )
            )
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

    # -- book keeping ------------------------------------------------------------------------

    def _side(self, side: Side) -> list[RestingOrder]:
        return self.bids if side == Side.BUY else self.asks

    def _sort(self) -> None:
        self.bids.sort(key=lambda o: (-o.price, o.arrival))
        self.asks.sort(key=lambda o: (o.price, o.arrival))

    def _remove(self, order: RestingOrder) -> None:
        self._side(order.side).remove(order)
        del self.orders[order.order_id]

    def _crossable(self, side: Side, price: int) -> int:
        """How much resting opposite quantity a ``side`` order at ``price`` could take."""
        return sum(o.leaves for o in self._side(_other(side)) if _crosses(side, price, o.price))

    def _level(self, cmd: OrderRecord | MassCancel, side: Side, price: int) -> BookLevel:
        at = [o for o in self._side(side) if o.price == price]
        return BookLevel(
            seq=cmd.seq,
            ts_ns=cmd.ts_ns,
            symbol=self.spec.symbol,
            side=side,
            price=price,
            qty=sum(o.leaves for o in at),
            count=len(at),
        )

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
                for o in self.bids + self.asks
            ],
        )

    def state_hash(self) -> str:
        """A digest of the book's state that any implementation computes the same way."""
        return hashlib.blake2b(msgspec.msgpack.encode(self.state()), digest_size=16).hexdigest()

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.state())

    @classmethod
    def restore(cls, spec: SymbolSpec, snapshot: bytes) -> ReferenceBook:
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
            book._side(order.side).append(order)
            book.orders[oid] = order
        book._sort()
        return book

    def validate_internal_state(self) -> None:
        """Raise ``AssertionError`` naming the first broken invariant."""
        for side, orders in ((Side.BUY, self.bids), (Side.SELL, self.asks)):
            keys = [(-o.price if side == Side.BUY else o.price, o.arrival) for o in orders]
            assert keys == sorted(keys), f"{side.name} side out of priority order"
            for o in orders:
                assert o.side == side, f"order {o.order_id} on the wrong side"
                assert o.leaves > 0, f"order {o.order_id} rests with leaves {o.leaves}"
                assert self.orders.get(o.order_id) is o, f"order {o.order_id} not indexed"
        assert len(self.orders) == len(self.bids) + len(self.asks), "index has stale orders"
        if self.bids and self.asks:
            best_bid, best_ask = self.bids[0].price, self.asks[0].price
            assert best_bid < best_ask, f"book crossed: bid {best_bid} >= ask {best_ask}"


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


def _done_resting(cmd: OrderRecord, order: RestingOrder, reason: DoneReason) -> OrderDone:
    """An event about a resting order caused by someone else's command (a maker filled): the
    resting order's own routing header, so its owner's gateway gets the report."""
    return OrderDone(
        seq=cmd.seq,
        ts_ns=cmd.ts_ns,
        gateway=order.gateway,
        session=order.session,
        client_ref=order.client_ref,
        account=order.account,
        symbol=cmd.symbol,
        order_id=order.order_id,
        reason=reason,
        filled_qty=order.filled,
        leaves_qty=order.leaves,
    )
