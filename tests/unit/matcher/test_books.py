"""Contract tests: every scenario and property runs against the reference and the fast book,
checking internal state after every step."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procs.common.records import (
    Accepted,
    BookLevel,
    CancelOrder,
    MassCancel,
    NewOrder,
    OrderDone,
    Record,
    Replaced,
    ReplaceOrder,
    Trade,
)
from procs.common.result_codes import ResultCode
from procs.common.types import DoneReason, OrderFlag, OrdType, Side, StpMode, TimeInForce
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec

BOOKS = pytest.mark.parametrize("book_cls", [ReferenceBook, FastBook])
SPEC = SymbolSpec(symbol=7, tick=5, lot=1, min_qty=1, max_qty=1000)
_seq = itertools.count(1)


def new(
    order_id: int,
    side: Side,
    price: int,
    qty: int,
    *,
    account: int = 1,
    tif: TimeInForce = TimeInForce.GTC,
    flags: int = 0,
) -> NewOrder:
    seq = next(_seq)
    return NewOrder(
        seq=seq,
        ts_ns=1000 + seq,
        gateway=1,
        session=1,
        client_ref=order_id * 10,
        account=account,
        symbol=SPEC.symbol,
        order_id=order_id,
        side=side,
        ord_type=OrdType.LIMIT,
        tif=tif,
        flags=flags,
        stp=StpMode.NONE,
        price=price,
        qty=qty,
        stop_price=0,
        display_qty=0,
    )


def cancel(order_id: int, account: int = 1) -> CancelOrder:
    seq = next(_seq)
    return CancelOrder(seq, 1000 + seq, 1, 1, 99, account, SPEC.symbol, order_id)


def replace(order_id: int, price: int, qty: int, account: int = 1) -> ReplaceOrder:
    seq = next(_seq)
    return ReplaceOrder(seq, 1000 + seq, 1, 1, 98, account, SPEC.symbol, order_id, price, qty)


def run(book: Book, command: Record) -> list[Record]:
    events = book.execute(command)
    book.validate_internal_state()
    return events


def bid_ids(book: Book) -> list[int]:
    """Resting buy orders in priority order, from the implementation-independent state."""
    return [order[0] for order in book.state().orders if order[1] == Side.BUY]


def kinds(events: list[Record]) -> list[str]:
    return [type(e).__name__ for e in events]


@BOOKS
def test_resting_orders_and_a_taker_that_sweeps_two_levels_in_price_time_order(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    assert kinds(run(book, new(1, Side.SELL, 105, 3))) == ["Accepted", "BookLevel"]
    run(book, new(2, Side.SELL, 100, 2))
    run(book, new(3, Side.SELL, 100, 4, account=2))  # same price, later: behind order 2
    events = run(book, new(4, Side.BUY, 105, 8, account=3))
    assert kinds(events) == [
        "Accepted",
        "Trade",
        "OrderDone",
        "Trade",
        "OrderDone",
        "Trade",
        "BookLevel",
        "BookLevel",
        "OrderDone",
    ]
    trades = [e for e in events if isinstance(e, Trade)]
    assert [(t.maker_order_id, t.price, t.qty) for t in trades] == [
        (2, 100, 2),
        (3, 100, 4),
        (1, 105, 2),
    ]
    assert [t.trade_id for t in trades] == [1, 2, 3]  # gapless
    assert all(t.aggressor == Side.BUY and t.taker_order_id == 4 for t in trades)
    levels = [e for e in events if isinstance(e, BookLevel)]
    assert [(lv.price, lv.qty, lv.count) for lv in levels] == [(100, 0, 0), (105, 1, 1)]
    done = events[-1]
    assert isinstance(done, OrderDone) and done.reason == DoneReason.FILLED
    assert done.order_id == 4 and done.filled_qty == 8 and done.leaves_qty == 0


@BOOKS
def test_a_maker_report_goes_to_the_makers_gateway(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    run(book, new(1, Side.SELL, 100, 2))
    events = run(book, new(2, Side.BUY, 100, 2))
    maker_done = events[2]
    assert isinstance(maker_done, OrderDone)
    assert (maker_done.order_id, maker_done.client_ref) == (1, 10)


@BOOKS
def test_ioc_rest_expires_fok_all_or_nothing_post_only_never_takes(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    run(book, new(1, Side.SELL, 100, 5))
    ioc = run(book, new(2, Side.BUY, 100, 8, tif=TimeInForce.IOC))
    assert kinds(ioc)[-1] == "OrderDone" and ioc[-1].reason == DoneReason.EXPIRED  # type: ignore[attr-defined]
    assert ioc[-1].leaves_qty == 3 and 2 not in book.orders  # type: ignore[attr-defined]
    run(book, new(3, Side.SELL, 100, 5))
    fok = run(book, new(4, Side.BUY, 100, 6, tif=TimeInForce.FOK))
    assert kinds(fok) == ["Accepted", "OrderDone"] and book.orders[3].leaves == 5
    fok_ok = run(book, new(5, Side.BUY, 100, 5, tif=TimeInForce.FOK))
    assert "Trade" in kinds(fok_ok) and 3 not in book.orders
    run(book, new(6, Side.SELL, 110, 5))
    post = run(book, new(7, Side.BUY, 110, 1, flags=OrderFlag.POST_ONLY))
    assert kinds(post) == ["Rejected"] and post[0].code == ResultCode.POST_ONLY_WOULD_TAKE  # type: ignore[attr-defined]
    assert kinds(run(book, new(8, Side.BUY, 105, 1, flags=OrderFlag.POST_ONLY))) == [
        "Accepted",
        "BookLevel",
    ]


@BOOKS
def test_bad_orders_are_rejected_with_codes_and_change_nothing(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    run(book, new(1, Side.SELL, 100, 5))
    before = book.state_hash()
    cases = [
        (new(2, Side.BUY, 101, 1), ResultCode.PRICE_NOT_ON_TICK),  # not on the 5-tick
        (new(3, Side.BUY, 100, 0), ResultCode.QTY_OUT_OF_RANGE),
        (new(4, Side.BUY, 100, 1001), ResultCode.QTY_OUT_OF_RANGE),
        (new(1, Side.BUY, 100, 1), ResultCode.INVALID_ORDER),  # duplicate id
        (cancel(42), ResultCode.UNKNOWN_ORDER),
        (cancel(1, account=9), ResultCode.NOT_ORDER_OWNER),
        (replace(1, 100, 0), ResultCode.QTY_OUT_OF_RANGE),
    ]
    for command, code in cases:
        events = run(book, command)
        assert kinds(events) == ["Rejected"] and events[0].code == code, command  # type: ignore[attr-defined]
    assert book.state_hash() == before


@BOOKS
def test_cancel_and_replace_keep_or_lose_priority(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    run(book, new(1, Side.BUY, 100, 5))
    run(book, new(2, Side.BUY, 100, 5))
    assert kinds(run(book, replace(1, 100, 3))) == ["Replaced", "BookLevel"]
    assert bid_ids(book) == [1, 2]  # smaller: keeps its place
    run(book, replace(1, 100, 4))
    assert bid_ids(book) == [2, 1]  # larger: to the back
    events = run(book, replace(2, 95, 5))
    assert isinstance(events[0], Replaced) and bid_ids(book) == [1, 2]
    events = run(book, cancel(1))
    assert kinds(events) == ["OrderDone", "BookLevel"]
    assert events[0].reason == DoneReason.CANCELLED and events[0].client_ref == 99  # type: ignore[attr-defined]
    run(book, new(3, Side.SELL, 100, 2))
    crossing = run(book, replace(3, 95, 2))  # a replace that crosses trades at once
    assert "Trade" in kinds(crossing) and 3 not in book.orders


@BOOKS
def test_mass_cancel_by_account(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    run(book, new(1, Side.BUY, 100, 5, account=1))
    run(book, new(2, Side.BUY, 95, 5, account=2))
    run(book, new(3, Side.SELL, 110, 5, account=1))
    seq = next(_seq)
    events = run(book, MassCancel(seq, seq, 1, 1, 0, 1, SPEC.symbol))
    assert kinds(events) == ["OrderDone", "OrderDone", "BookLevel", "BookLevel"]
    assert set(book.orders) == {2}


@BOOKS
def test_snapshot_restores_the_same_state_and_behaviour(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    for i, (side, price) in enumerate([(Side.BUY, 100), (Side.SELL, 110), (Side.BUY, 100)]):
        run(book, new(i + 1, side, price, 3))
    restored = book_cls.restore(SPEC, book.snapshot())
    restored.validate_internal_state()
    assert restored.state_hash() == book.state_hash()
    taker = new(9, Side.SELL, 100, 4)
    assert restored.execute(taker) == book.execute(taker)


commands = st.lists(
    st.tuples(
        st.sampled_from(["new", "new", "new", "cancel", "replace"]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(18, 22).map(lambda p: p * 5),
        st.integers(1, 8),
        st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK]),
        st.integers(1, 30),
    ),
    max_size=120,
)


@BOOKS
@settings(max_examples=200, deadline=None)
@given(commands)
def test_random_commands_keep_every_invariant(
    book_cls: type[Book], script: list[tuple[Any, ...]]
) -> None:
    """After every command the book is uncrossed and in priority order; every trade is at the
    maker's resting price; and a shadow of each order's open quantity, kept from the events
    alone, always agrees with them and, at the end, with the book (quantity is conserved)."""
    book = book_cls(SPEC)
    open_qty: dict[int, int] = {}
    for kind, side, price, qty, tif, ref in script:
        resting_price = {o.order_id: o.price for o in book.orders.values()}
        if kind == "new":
            events = run(book, new(ref, side, price, qty, tif=tif))
        elif kind == "cancel":
            events = run(book, cancel(ref))
        else:
            events = run(book, replace(ref, price, qty))
        for e in events:
            if isinstance(e, (Accepted, Replaced)):
                open_qty[e.order_id] = e.qty
            elif isinstance(e, Trade):
                assert e.price == resting_price[e.maker_order_id]
                open_qty[e.maker_order_id] -= e.qty
                open_qty[e.taker_order_id] -= e.qty
                assert open_qty[e.maker_order_id] == e.maker_leaves
                assert open_qty[e.taker_order_id] == e.taker_leaves
            elif isinstance(e, OrderDone):
                assert open_qty.pop(e.order_id) == e.leaves_qty
    assert open_qty == {o.order_id: o.leaves for o in book.orders.values()}
