"""A live order and the book's state in its canonical, implementation-independent form.

``RestingOrder`` is what both books keep per live order; ``BookState`` is everything a book
is, listed in a fixed order, so ``state_hash`` and snapshots are the same for any
implementation (``procs.core.book``).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from procs.common.types import OrdType, Side, StpMode, TimeInForce


@dataclass(slots=True)
class RestingOrder:
    """A live order: resting, or a pending stop. ``leaves`` is the visible quantity (for an
    iceberg the current slice, ``reserve`` the hidden rest); ``leaves + reserve`` is what is
    left of the order."""

    order_id: int
    account: int
    side: Side
    price: int  # limit; for a market or stop-market taker, its protection limit
    leaves: int
    filled: int
    arrival: int  # priority within a price: smaller came first
    gateway: int
    session: int
    client_ref: int
    tif: TimeInForce = TimeInForce.GTC
    stp: StpMode = StpMode.NONE
    display: int = 0  # iceberg slice size, 0 = show all
    reserve: int = 0
    ord_type: OrdType = OrdType.LIMIT
    stop_price: int = 0
    post_only: bool = False  # never takes, a replace included


#: ``RestingOrder``'s fields, in the order ``BookState`` lists them.
ORDER_FIELDS = RestingOrder.__slots__
#: A snapshot written before ``post_only`` lists one field fewer; its orders are not.
_FIELDS_BEFORE_POST_ONLY = len(ORDER_FIELDS) - 1


class BookState(msgspec.Struct, frozen=True, array_like=True):
    """Everything a book is, in a canonical order: what ``state_hash`` hashes and what a
    snapshot holds. Resting orders are listed bids then asks, each in priority order; pending
    stops in arrival order. Each order is its ``ORDER_FIELDS``."""

    symbol: int
    next_trade_id: int
    next_arrival: int
    last_price: int
    halted: bool
    orders: list[tuple[int, ...]]
    stops: list[tuple[int, ...]]


def order_fields(order: RestingOrder) -> tuple[int, ...]:
    """``order`` as its ``ORDER_FIELDS`` (a snapshot's form)."""
    return tuple(int(getattr(order, name)) for name in ORDER_FIELDS)


def order_from_fields(fields: tuple[int, ...]) -> RestingOrder:
    """The order a snapshot lists, its enums restored."""
    if len(fields) == _FIELDS_BEFORE_POST_ONLY:
        fields = (*fields, 0)
    if len(fields) != len(ORDER_FIELDS):
        raise ValueError(f"snapshot order has {len(fields)} fields, expected {len(ORDER_FIELDS)}")
    oid, account, side, price, leaves, filled, arrival, gw, session, ref, *rest = fields
    tif, stp, display, reserve, ord_type, stop_price, post_only = rest
    return RestingOrder(
        *(oid, account, Side(side), price, leaves, filled, arrival, gw, session, ref),
        *(TimeInForce(tif), StpMode(stp), display, reserve, OrdType(ord_type), stop_price),
        bool(post_only),
    )
