"""Contract tests for halt, resume and end of session, the limit collar, snapshots of
stops and icebergs, and post-only misuse (``procs.core.book``'s docstring).

Each scenario runs against both books and compares the *whole* event list of a command with
the one the docstring prescribes, field for field, so a wrong order, header or quantity fails.
"""

from __future__ import annotations

import msgspec
import pytest

from procs.common.records import (
    OrderDone,
    OrderRecord,
    Record,
    Rejected,
    SymbolStatus,
    Trade,
    Triggered,
)
from procs.common.result_codes import ResultCode
from procs.common.types import (
    AdminAction,
    OrderFlag,
    OrdType,
    TimeInForce,
    TradingStatus,
)
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from tests.unit.matcher.scenarios import (
    BUY,
    CANCELLED,
    DAY,
    EXPIRED,
    FOK,
    GTC,
    IOC,
    SELL,
    SPEC,
    accepted,
    admin,
    cancel,
    done,
    ids,
    level,
    market,
    new,
    rejected,
    replace,
    setup,
    status,
    stop,
    stop_ids,
)
from tests.unit.matcher.test_books import BOOKS, run

# -- halt, resume, end of session --------------------------------------------------------------


@BOOKS
def test_a_halted_symbol_refuses_orders_and_replaces_but_cancels_work(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    setup(book, new(1, BUY, 100, 5), new(2, SELL, 110, 5, account=2), stop(3, BUY, 120, 1))
    h = admin(AdminAction.HALT)
    assert run(book, h) == [status(h, TradingStatus.HALTED)]
    before = book.state_hash()
    refused: list[OrderRecord] = [
        new(4, SELL, 100, 1, account=2),
        market(5, SELL, 1, account=2),
        stop(6, SELL, 90, 1),
        replace(1, 100, 3),
        replace(1, 95, 5),
    ]
    for cmd in refused:
        assert run(book, cmd) == [rejected(cmd, ResultCode.SYMBOL_HALTED)], cmd
    assert book.state_hash() == before
    assert run(book, admin(AdminAction.RESUME, symbol=8)) == []  # another symbol's
    c = cancel(1)
    assert run(book, c) == [done(c, c, CANCELLED, 0, 5), level(c, BUY, 100, 0, 0)]
    c = cancel(3)
    assert run(book, c) == [done(c, c, CANCELLED, 0, 1)]
    r = admin(AdminAction.RESUME, symbol=0)  # every symbol
    assert run(book, r) == [status(r, TradingStatus.OPEN)]
    n = new(7, BUY, 100, 1)
    assert run(book, n) == [accepted(n), level(n, BUY, 100, 1, 1)]


@BOOKS
def test_end_of_session_expires_day_orders_and_day_stops_but_not_gtc(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    d1, g2 = new(1, BUY, 100, 5, tif=DAY), new(2, BUY, 100, 4, account=2)
    d3 = new(3, SELL, 110, 10, account=3, tif=DAY, display=4)
    g4 = new(4, SELL, 115, 1, account=2)
    ds5 = stop(5, BUY, 120, 2, account=4, tif=DAY)
    gs6 = stop(6, SELL, 90, 2, account=4)
    ds7 = stop(7, SELL, 95, 1, limit=90, account=5, tif=DAY)
    setup(book, d1, g2, d3, g4, ds5, gs6, ds7)
    e = admin(AdminAction.END_OF_SESSION)
    assert run(book, e) == [
        done(e, d1, EXPIRED, 0, 5),
        done(e, d3, EXPIRED, 0, 10),  # leaves include the iceberg's reserve
        done(e, ds5, EXPIRED, 0, 2),
        done(e, ds7, EXPIRED, 0, 1),
        level(e, BUY, 100, 4, 1),
        level(e, SELL, 110, 0, 0),
        status(e, TradingStatus.OPEN),
    ]
    assert ids(book, BUY) == [2] and ids(book, SELL) == [4] and stop_ids(book) == [6]


# -- the limit price collar --------------------------------------------------------------------


@BOOKS
def test_limit_prices_are_collared_around_the_last_trade_once_there_is_one(
    book_cls: type[Book],
) -> None:
    book = book_cls(msgspec.structs.replace(SPEC, limit_band_bps=100))
    far = [new(1, SELL, 5000, 1, account=2), new(2, BUY, 5, 1, account=3)]
    for cmd in far:  # no trade yet: no collar
        assert run(book, cmd)[0] == accepted(cmd)
    setup(book, new(3, SELL, 1000, 1, account=2), new(4, BUY, 1000, 1, account=3))
    assert book.last_price == 1000  # the collar is 1000 +- 10
    for cmd in [new(5, BUY, 1015, 1), new(6, SELL, 985, 1), stop(7, BUY, 1000, 1, limit=1015)]:
        assert run(book, cmd) == [rejected(cmd, ResultCode.PRICE_OUT_OF_BAND)], cmd
    inside = [new(8, BUY, 1010, 1), new(9, BUY, 990, 1)]
    for cmd in inside:  # the edges are in
        assert run(book, cmd) == [accepted(cmd), level(cmd, BUY, cmd.price, 1, 1)]
    r = replace(9, 1015, 1)
    assert run(book, r) == [rejected(r, ResultCode.PRICE_OUT_OF_BAND)]


# -- snapshots ---------------------------------------------------------------------------------


def _busy_book(book_cls: type[Book]) -> Book:
    """Resting orders of both sides, an iceberg part-way through, pending buy and sell stops,
    a last price, and halted."""
    book = book_cls(SPEC)
    setup(
        book,
        new(1, BUY, 95, 3),
        new(2, BUY, 95, 2, account=2, tif=DAY),
        new(3, SELL, 105, 10, account=3, display=3),
        new(4, SELL, 110, 5, account=2),
        new(5, BUY, 105, 4, account=4),  # one slice and one from the next
        stop(6, BUY, 110, 2, account=5),
        stop(7, SELL, 95, 3, limit=90, account=5, tif=DAY),
        admin(AdminAction.HALT),
    )
    assert book.last_price == 105 and book.halted and stop_ids(book) == [6, 7]
    assert (book.orders[3].leaves, book.orders[3].reserve) == (2, 4)
    return book


def _continuation() -> list[Record]:
    return [
        new(8, BUY, 100, 1, account=6),  # halted: refused
        admin(AdminAction.RESUME),
        new(9, BUY, 105, 6, account=6),  # eats the rest of the iceberg
        new(10, BUY, 110, 3, account=6),  # trades at 110: the buy stop
        new(11, SELL, 95, 6, account=6),  # trades at 95: the sell stop
        replace(1, 95, 1),
        admin(AdminAction.END_OF_SESSION),
        cancel(7, account=5),
    ]


@BOOKS
@pytest.mark.parametrize("restore_cls", [ReferenceBook, FastBook])
def test_a_snapshot_restores_stops_icebergs_halt_and_last_price(
    book_cls: type[Book], restore_cls: type[Book]
) -> None:
    book = _busy_book(book_cls)
    restored = restore_cls.restore(SPEC, book.snapshot())
    restored.validate_internal_state()
    assert restored.state() == book.state() and restored.state_hash() == book.state_hash()
    seen: list[Record] = []
    for command in _continuation():
        events = run(book, command)
        assert run(restored, command) == events, command
        assert restored.state_hash() == book.state_hash()
        seen += events
    assert {type(e) for e in seen} >= {Rejected, SymbolStatus, Trade, Triggered, OrderDone}
    assert sum(isinstance(e, Triggered) for e in seen) == 2


# -- post-only misuse --------------------------------------------------------------------------


@BOOKS
@pytest.mark.parametrize(
    ("ord_type", "tif", "price", "stop_price"),
    [
        (OrdType.LIMIT, IOC, 100, 0),
        (OrdType.LIMIT, FOK, 100, 0),
        (OrdType.MARKET, GTC, 0, 0),
        (OrdType.STOP, GTC, 0, 120),
        (OrdType.STOP_LIMIT, GTC, 100, 120),
    ],
)
def test_post_only_that_cannot_simply_rest_is_invalid(
    book_cls: type[Book], ord_type: OrdType, tif: TimeInForce, price: int, stop_price: int
) -> None:
    book = book_cls(SPEC)
    setup(book, new(1, BUY, 95, 1, account=2), new(2, SELL, 110, 1, account=2))
    before = book.state_hash()
    cmd = new(3, BUY, price, 1, ord_type=ord_type, tif=tif, flags=OrderFlag.POST_ONLY,
              stop_price=stop_price)  # fmt: skip
    assert run(book, cmd) == [rejected(cmd, ResultCode.INVALID_ORDER)]
    assert book.state_hash() == before
