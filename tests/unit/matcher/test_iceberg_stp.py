"""Contract tests for icebergs and self-trade prevention (``procs.core.book``'s docstring).

Each scenario runs against both books and compares the *whole* event list of a command with
the one the docstring prescribes, field for field, so a wrong order, header or quantity fails.
"""

from __future__ import annotations

import msgspec
import pytest

from procs.common.records import (
    NewOrder,
    Replaced,
)
from procs.common.result_codes import ResultCode
from procs.common.types import (
    OrdType,
    StpMode,
    TimeInForce,
)
from procs.core.book import Book
from tests.unit.matcher.scenarios import (
    BUY,
    CANCELLED,
    FILLED,
    FOK,
    GTC,
    IOC,
    SELF_TRADE,
    SELL,
    SPEC,
    accepted,
    cancel,
    done,
    head,
    ids,
    level,
    new,
    rejected,
    replace,
    setup,
    trade,
)
from tests.unit.matcher.test_books import BOOKS, run

# -- icebergs ----------------------------------------------------------------------------------


@BOOKS
def test_an_iceberg_shows_one_slice_and_a_filled_slice_goes_to_the_back(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    ice = new(1, SELL, 100, 10, display=3)
    assert run(book, ice) == [accepted(ice), level(ice, SELL, 100, 3, 1)]
    o2 = new(2, SELL, 100, 2, account=2)
    assert run(book, o2) == [accepted(o2), level(o2, SELL, 100, 5, 2)]
    t = new(3, BUY, 100, 3, account=3)
    assert run(book, t) == [
        accepted(t),
        trade(t, 1, 100, 3, ice, 7, t, 0),  # maker leaves count the hidden reserve
        level(t, SELL, 100, 5, 2),
        done(t, t, FILLED, 3, 0),
    ]
    assert ids(book, SELL) == [2, 1]  # the new slice queues behind order 2
    t = new(4, BUY, 100, 2, account=3)
    assert run(book, t) == [
        accepted(t),
        trade(t, 2, 100, 2, o2, 0, t, 0),
        done(t, o2, FILLED, 2, 0),
        level(t, SELL, 100, 3, 1),
        done(t, t, FILLED, 2, 0),
    ]


@BOOKS
def test_a_big_taker_eats_several_slices(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    ice, o2 = new(1, SELL, 100, 10, display=3), new(2, SELL, 100, 1, account=2)
    setup(book, ice, o2)
    t = new(3, BUY, 100, 8, account=3)
    assert run(book, t) == [
        accepted(t),
        trade(t, 1, 100, 3, ice, 7, t, 5),
        trade(t, 2, 100, 1, o2, 0, t, 4),
        done(t, o2, FILLED, 1, 0),
        trade(t, 3, 100, 3, ice, 4, t, 1),
        trade(t, 4, 100, 1, ice, 3, t, 0),
        level(t, SELL, 100, 2, 1),
        done(t, t, FILLED, 8, 0),
    ]
    t = new(4, BUY, 100, 5, account=3)  # the last slice is what is left: 1
    assert run(book, t) == [
        accepted(t),
        trade(t, 5, 100, 2, ice, 1, t, 3),
        trade(t, 6, 100, 1, ice, 0, t, 2),
        done(t, ice, FILLED, 10, 0),
        level(t, SELL, 100, 0, 0),
        level(t, BUY, 100, 2, 1),
    ]


@BOOKS
def test_an_iceberg_done_reports_its_hidden_reserve(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    ice = new(1, BUY, 100, 10, display=4)
    run(book, ice)
    s = new(2, SELL, 100, 3, account=2)
    assert run(book, s) == [
        accepted(s),
        trade(s, 1, 100, 3, ice, 7, s, 0),
        level(s, BUY, 100, 1, 1),
        done(s, s, FILLED, 3, 0),
    ]
    c = cancel(1)
    assert run(book, c) == [done(c, c, CANCELLED, 3, 7), level(c, BUY, 100, 0, 0)]


@BOOKS
def test_an_iceberg_aggressor_takes_with_its_whole_size_then_shows_a_slice(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    a1 = new(1, SELL, 100, 5, account=2)
    run(book, a1)
    ice = new(2, BUY, 100, 10, display=2)
    assert run(book, ice) == [
        accepted(ice),
        trade(ice, 1, 100, 5, a1, 0, ice, 5),
        done(ice, a1, FILLED, 5, 0),
        level(ice, SELL, 100, 0, 0),
        level(ice, BUY, 100, 2, 1),
    ]
    assert (book.orders[2].leaves, book.orders[2].reserve) == (2, 3)


@BOOKS
def test_an_iceberg_replaced_smaller_keeps_its_place_and_gives_up_reserve_first(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    ice, o2 = new(1, BUY, 100, 10, display=3), new(2, BUY, 100, 1, account=2)
    setup(book, ice, o2)
    r = replace(1, 100, 5)
    assert run(book, r) == [Replaced(*head(r, r), price=100, qty=5), level(r, BUY, 100, 4, 2)]
    assert ids(book, BUY) == [1, 2] and (book.orders[1].leaves, book.orders[1].reserve) == (3, 2)
    r = replace(1, 100, 2)
    assert run(book, r) == [Replaced(*head(r, r), price=100, qty=2), level(r, BUY, 100, 3, 2)]
    assert ids(book, BUY) == [1, 2] and (book.orders[1].leaves, book.orders[1].reserve) == (2, 0)
    s = new(3, SELL, 100, 2, account=3)
    assert run(book, s) == [
        accepted(s),
        trade(s, 1, 100, 2, ice, 0, s, 0),
        done(s, ice, FILLED, 2, 0),
        level(s, BUY, 100, 1, 1),
        done(s, s, FILLED, 2, 0),
    ]


@BOOKS
@pytest.mark.parametrize(
    ("ord_type", "tif", "price", "display", "code"),
    [
        (OrdType.LIMIT, GTC, 100, 3, ResultCode.QTY_NOT_ON_LOT),  # not a multiple of the 2-lot
        (OrdType.LIMIT, GTC, 100, 12, ResultCode.QTY_OUT_OF_RANGE),  # more than the order
        (OrdType.LIMIT, IOC, 100, 4, ResultCode.INVALID_ORDER),  # cannot rest
        (OrdType.LIMIT, FOK, 100, 4, ResultCode.INVALID_ORDER),
        (OrdType.MARKET, GTC, 0, 4, ResultCode.INVALID_ORDER),
    ],
)
def test_invalid_iceberg_display_is_rejected(
    book_cls: type[Book], ord_type: OrdType, tif: TimeInForce, price: int, display: int,
    code: ResultCode,
) -> None:  # fmt: skip
    book = book_cls(msgspec.structs.replace(SPEC, lot=2, min_qty=2))
    run(book, new(1, SELL, 110, 4, account=2))
    before = book.state_hash()
    cmd = new(2, BUY, price, 10, ord_type=ord_type, tif=tif, display=display)
    assert run(book, cmd) == [rejected(cmd, code)]
    assert book.state_hash() == before


# -- self-trade prevention ---------------------------------------------------------------------


def _stp_book(book_cls: type[Book]) -> tuple[Book, NewOrder, NewOrder, NewOrder]:
    """Asks: another account's 2 at 100, then at 105 the taker's own 3 ahead of another 3."""
    book = book_cls(SPEC)
    o1, own, o3 = (
        new(1, SELL, 100, 2, account=2),
        new(2, SELL, 105, 3),
        new(3, SELL, 105, 3, account=2),
    )
    setup(book, o1, own, o3)
    return book, o1, own, o3


@BOOKS
def test_stp_cancel_newest_cancels_the_aggressor_and_stops_matching(book_cls: type[Book]) -> None:
    book, o1, _, _ = _stp_book(book_cls)
    t = new(4, BUY, 105, 10, stp=StpMode.CANCEL_NEWEST)
    assert run(book, t) == [
        accepted(t),
        trade(t, 1, 100, 2, o1, 0, t, 8),
        done(t, o1, FILLED, 2, 0),
        level(t, SELL, 100, 0, 0),
        done(t, t, SELF_TRADE, 2, 8),
    ]
    assert ids(book, SELL) == [2, 3] and ids(book, BUY) == []


@BOOKS
def test_stp_cancel_oldest_cancels_the_resting_order_and_goes_on(book_cls: type[Book]) -> None:
    book, o1, own, o3 = _stp_book(book_cls)
    t = new(4, BUY, 105, 10, stp=StpMode.CANCEL_OLDEST)
    assert run(book, t) == [
        accepted(t),
        trade(t, 1, 100, 2, o1, 0, t, 8),
        done(t, o1, FILLED, 2, 0),
        done(t, own, SELF_TRADE, 0, 3),  # under the resting order's own header
        trade(t, 2, 105, 3, o3, 0, t, 5),
        done(t, o3, FILLED, 3, 0),
        level(t, SELL, 100, 0, 0),
        level(t, SELL, 105, 0, 0),
        level(t, BUY, 105, 5, 1),
    ]
    assert ids(book, SELL) == [] and ids(book, BUY) == [4]


@BOOKS
def test_stp_cancel_both_cancels_the_resting_order_and_the_aggressor(book_cls: type[Book]) -> None:
    book, o1, own, _ = _stp_book(book_cls)
    t = new(4, BUY, 105, 10, stp=StpMode.CANCEL_BOTH)
    assert run(book, t) == [
        accepted(t),
        trade(t, 1, 100, 2, o1, 0, t, 8),
        done(t, o1, FILLED, 2, 0),
        done(t, own, SELF_TRADE, 0, 3),
        level(t, SELL, 100, 0, 0),
        level(t, SELL, 105, 3, 1),
        done(t, t, SELF_TRADE, 2, 8),
    ]
    assert ids(book, SELL) == [3] and ids(book, BUY) == []


@BOOKS
def test_stp_is_the_aggressors_choice(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    mine = new(1, SELL, 100, 2, stp=StpMode.CANCEL_BOTH)
    run(book, mine)
    t = new(2, BUY, 100, 2)  # same account, no prevention asked: they trade
    assert run(book, t) == [
        accepted(t),
        trade(t, 1, 100, 2, mine, 0, t, 0),
        done(t, mine, FILLED, 2, 0),
        level(t, SELL, 100, 0, 0),
        done(t, t, FILLED, 2, 0),
    ]
