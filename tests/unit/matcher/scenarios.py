"""Builders for the order-type contract tests (``test_market_stop``, ``test_iceberg_stp``,
``test_session_rules``): commands whose header is each order's own, and the events that
``procs.core.book``'s docstring prescribes for them, field for field."""

from __future__ import annotations

import itertools

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
    ReplaceOrder,
    SymbolStatus,
    Trade,
    Triggered,
)
from procs.common.result_codes import ResultCode
from procs.common.types import (
    AdminAction,
    DoneReason,
    OrdType,
    Side,
    StpMode,
    TimeInForce,
    TradingStatus,
)
from procs.core.book import Book
from procs.core.symbols import SymbolSpec
from tests.unit.matcher.test_books import run

SPEC = SymbolSpec(symbol=7, tick=5, lot=1, min_qty=1, max_qty=1000, band_bps=500)
BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
FILLED, CANCELLED, EXPIRED = DoneReason.FILLED, DoneReason.CANCELLED, DoneReason.EXPIRED
SELF_TRADE = DoneReason.SELF_TRADE
SEQUENCE = itertools.count(1)

#: What can carry an event's ``seq`` and ``ts_ns``.
Command = OrderRecord | MassCancel | AdminCommand


# -- commands: each order's header is its own (gateway = account, client_ref from the id) ------


def new(
    order_id: int,
    side: Side,
    price: int,
    qty: int,
    *,
    account: int = 1,
    ord_type: OrdType = OrdType.LIMIT,
    tif: TimeInForce = GTC,
    flags: int = 0,
    stp: StpMode = StpMode.NONE,
    stop_price: int = 0,
    display: int = 0,
) -> NewOrder:
    seq = next(SEQUENCE)
    return NewOrder(
        *(seq, 10_000 + seq, account, 100 + account, 1000 + order_id, account, SPEC.symbol),
        order_id,
        side=side,
        ord_type=ord_type,
        tif=tif,
        flags=flags,
        stp=stp,
        price=price,
        qty=qty,
        stop_price=stop_price,
        display_qty=display,
    )


def market(
    order_id: int, side: Side, qty: int, *, account: int = 1, tif: TimeInForce = GTC
) -> NewOrder:
    return new(order_id, side, 0, qty, account=account, ord_type=OrdType.MARKET, tif=tif)


def stop(
    order_id: int,
    side: Side,
    stop_price: int,
    qty: int,
    *,
    limit: int = 0,
    account: int = 1,
    tif: TimeInForce = GTC,
) -> NewOrder:
    """A stop-market order, or with ``limit`` a stop-limit order."""
    ord_type = OrdType.STOP_LIMIT if limit else OrdType.STOP
    return new(
        order_id, side, limit, qty, account=account, ord_type=ord_type, tif=tif,
        stop_price=stop_price,
    )  # fmt: skip


def cancel(order_id: int, account: int = 1) -> CancelOrder:
    seq = next(SEQUENCE)
    return CancelOrder(
        *(seq, 10_000 + seq, account, 100 + account, 5000 + seq, account, SPEC.symbol),
        order_id,
    )


def replace(order_id: int, price: int, qty: int, account: int = 1) -> ReplaceOrder:
    seq = next(SEQUENCE)
    return ReplaceOrder(
        *(seq, 10_000 + seq, account, 100 + account, 5000 + seq, account, SPEC.symbol),
        *(order_id, price, qty),
    )


def admin(action: AdminAction, symbol: int = SPEC.symbol) -> AdminCommand:
    seq = next(SEQUENCE)
    return AdminCommand(seq, 10_000 + seq, action, symbol, 0)


# -- the events the docstring prescribes -------------------------------------------------------


def head(whose: OrderRecord, at: Command) -> tuple[int, int, int, int, int, int, int, int]:
    """``whose`` routing header, stamped with the ``seq`` and ``ts_ns`` of command ``at``."""
    return (
        at.seq,
        at.ts_ns,
        whose.gateway,
        whose.session,
        whose.client_ref,
        whose.account,
        whose.symbol,
        whose.order_id,
    )


def accepted(cmd: NewOrder) -> Accepted:
    """The ``Accepted`` of ``cmd``: its header, and its terms as sent."""
    return Accepted(
        *head(cmd, cmd), side=cmd.side, price=cmd.price, qty=cmd.qty, ord_type=cmd.ord_type,
        tif=cmd.tif, flags=cmd.flags, stop_price=cmd.stop_price, display_qty=cmd.display_qty,
    )  # fmt: skip


def rejected(cmd: OrderRecord, code: ResultCode) -> Rejected:
    return Rejected(*head(cmd, cmd), code=code)


def done(
    at: Command, whose: OrderRecord, reason: DoneReason, filled: int, leaves: int
) -> OrderDone:
    return OrderDone(*head(whose, at), reason=reason, filled_qty=filled, leaves_qty=leaves)


def level(at: Command, side: Side, price: int, qty: int, count: int) -> BookLevel:
    return BookLevel(at.seq, at.ts_ns, SPEC.symbol, side, price, qty, count)


def trade(
    at: Command,
    trade_id: int,
    price: int,
    qty: int,
    maker: NewOrder,
    maker_leaves: int,
    taker: NewOrder,
    taker_leaves: int,
) -> Trade:
    return Trade(
        seq=at.seq,
        ts_ns=at.ts_ns,
        trade_id=trade_id,
        symbol=SPEC.symbol,
        price=price,
        qty=qty,
        aggressor=taker.side,
        maker_order_id=maker.order_id,
        maker_account=maker.account,
        maker_gateway=maker.gateway,
        maker_leaves=maker_leaves,
        taker_order_id=taker.order_id,
        taker_account=taker.account,
        taker_gateway=taker.gateway,
        taker_leaves=taker_leaves,
    )


def triggered(at: Command, stop_order: NewOrder) -> Triggered:
    return Triggered(
        *head(stop_order, at), stop_price=stop_order.stop_price, price=stop_order.price
    )


def status(at: AdminCommand, trading: TradingStatus) -> SymbolStatus:
    return SymbolStatus(at.seq, at.ts_ns, SPEC.symbol, at.action, trading)


def setup(book: Book, *commands: Record) -> None:
    for command in commands:
        run(book, command)


def ids(book: Book, side: Side) -> list[int]:
    """Resting orders of ``side`` in priority order, from the implementation-neutral state."""
    return [order[0] for order in book.state().orders if order[2] == side]


def stop_ids(book: Book) -> list[int]:
    return [order[0] for order in book.state().stops]
