"""Contract tests for market protection and stop orders (``procs.core.book``'s docstring).

Each scenario runs against both books and compares the *whole* event list of a command with
the one the docstring prescribes, field for field, so a wrong order, header or quantity fails.
"""

from __future__ import annotations

import msgspec
import pytest

from procs.common.records import (
    MassCancel,
)
from procs.common.result_codes import ResultCode
from procs.common.types import (
    DoneReason,
    OrdType,
)
from procs.core.book import Book
from tests.unit.matcher.scenarios import (
    BUY,
    CANCELLED,
    EXPIRED,
    FILLED,
    FOK,
    SELL,
    SEQUENCE,
    SPEC,
    accepted,
    cancel,
    done,
    ids,
    level,
    market,
    new,
    rejected,
    replace,
    setup,
    stop,
    stop_ids,
    trade,
    triggered,
)
from tests.unit.matcher.test_books import BOOKS, run

# -- market orders -----------------------------------------------------------------------------


@BOOKS
def test_market_buy_sweeps_up_to_the_protection_limit_and_expires_the_rest(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    a1, a2, a3 = (
        new(i, SELL, p, q, account=2) for i, p, q in [(1, 100, 2), (2, 105, 3), (3, 110, 4)]
    )
    setup(book, a1, a2, a3)
    m = market(4, BUY, 10)  # best ask 100, band 5%: never above 105
    assert run(book, m) == [
        accepted(m),
        trade(m, 1, 100, 2, a1, 0, m, 8),
        done(m, a1, FILLED, 2, 0),
        trade(m, 2, 105, 3, a2, 0, m, 5),
        done(m, a2, FILLED, 3, 0),
        level(m, SELL, 100, 0, 0),
        level(m, SELL, 105, 0, 0),
        done(m, m, EXPIRED, 5, 5),
    ]
    assert ids(book, SELL) == [3] and book.last_price == 105


@BOOKS
def test_market_sell_protection_is_the_band_rounded_onto_the_tick_toward_the_best(
    book_cls: type[Book],
) -> None:
    book = book_cls(msgspec.structs.replace(SPEC, band_bps=700))
    bids = [new(i, BUY, p, 2, account=2) for i, p in [(1, 100), (2, 95), (3, 90)]]
    setup(book, *bids)
    m = market(4, SELL, 10)  # 100 - 7% = 93, on the 5-tick 95: the 90 bid is out of reach
    assert run(book, m) == [
        accepted(m),
        trade(m, 1, 100, 2, bids[0], 0, m, 8),
        done(m, bids[0], FILLED, 2, 0),
        trade(m, 2, 95, 2, bids[1], 0, m, 6),
        done(m, bids[1], FILLED, 2, 0),
        level(m, BUY, 100, 0, 0),
        level(m, BUY, 95, 0, 0),
        done(m, m, EXPIRED, 4, 6),
    ]
    assert ids(book, BUY) == [3]


@BOOKS
def test_market_order_on_an_empty_opposite_side_is_rejected_no_liquidity(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    for m in (market(1, SELL, 1), market(2, BUY, 1)):
        assert run(book, m) == [rejected(m, ResultCode.NO_LIQUIDITY)]
    run(book, new(3, BUY, 100, 5))  # bids do not help a market buy
    before = book.state_hash()
    m = market(4, BUY, 1, account=2)
    assert run(book, m) == [rejected(m, ResultCode.NO_LIQUIDITY)]
    assert book.state_hash() == before


@BOOKS
@pytest.mark.parametrize("ord_type", [OrdType.MARKET, OrdType.STOP])
@pytest.mark.parametrize("price", [-5, 102])
def test_market_and_stop_market_caps_must_be_zero_or_on_tick(
    book_cls: type[Book], ord_type: OrdType, price: int
) -> None:
    book = book_cls(SPEC)
    run(book, new(1, SELL, 100, 5, account=2))
    before = book.state_hash()
    stop_price = 100 if ord_type == OrdType.STOP else 0
    m = new(2, BUY, price, 1, ord_type=ord_type, stop_price=stop_price)
    code = ResultCode.INVALID_PRICE if price < 0 else ResultCode.PRICE_NOT_ON_TICK
    assert run(book, m) == [rejected(m, code)]
    assert book.state_hash() == before


@BOOKS
def test_a_market_orders_price_caps_its_sweep_inside_the_band(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    a1, a2 = (new(i, SELL, p, 2, account=2) for i, p in [(1, 100), (2, 105)])
    setup(book, a1, a2)
    m = new(3, BUY, 100, 5, ord_type=OrdType.MARKET)  # band allows 105, the cap only 100
    assert run(book, m) == [
        accepted(m),
        trade(m, 1, 100, 2, a1, 0, m, 3),
        done(m, a1, FILLED, 2, 0),
        level(m, SELL, 100, 0, 0),
        done(m, m, EXPIRED, 2, 3),
    ]
    assert ids(book, SELL) == [2]


@BOOKS
def test_fok_market_fills_completely_within_protection_or_expires_before_any_trade(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    a1, a2, a3 = (
        new(i, SELL, p, q, account=2) for i, p, q in [(1, 100, 2), (2, 105, 3), (3, 110, 5)]
    )
    setup(book, a1, a2, a3)
    before = book.state_hash()
    m = market(4, BUY, 6, tif=FOK)  # 11 on offer, but only 5 within 105
    assert run(book, m) == [accepted(m), done(m, m, EXPIRED, 0, 6)]
    assert book.state_hash() == before
    m = market(5, BUY, 5, tif=FOK)
    assert run(book, m) == [
        accepted(m),
        trade(m, 1, 100, 2, a1, 0, m, 3),
        done(m, a1, FILLED, 2, 0),
        trade(m, 2, 105, 3, a2, 0, m, 0),
        done(m, a2, FILLED, 3, 0),
        level(m, SELL, 100, 0, 0),
        level(m, SELL, 105, 0, 0),
        done(m, m, FILLED, 5, 0),
    ]


# -- stop orders -------------------------------------------------------------------------------


@BOOKS
def test_buy_stop_market_waits_then_a_trade_at_its_stop_triggers_it_under_its_own_header(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    a0, a1, a2 = (
        new(i, SELL, p, q, account=2) for i, p, q in [(1, 95, 1), (2, 100, 1), (3, 105, 5)]
    )
    setup(book, a0, a1, a2)
    st = stop(4, BUY, 100, 2, account=3)
    assert run(book, st) == [accepted(st)]  # pending: nothing but its Accepted
    t = new(5, BUY, 95, 1, account=4)  # last 95 < 100: not yet
    assert run(book, t) == [
        accepted(t),
        trade(t, 1, 95, 1, a0, 0, t, 0),
        done(t, a0, FILLED, 1, 0),
        level(t, SELL, 95, 0, 0),
        done(t, t, FILLED, 1, 0),
    ]
    assert stop_ids(book) == [4]
    t = new(6, BUY, 100, 1, account=4)  # last 100: reached; enters as a market buy (<= 110)
    assert run(book, t) == [
        accepted(t),
        trade(t, 2, 100, 1, a1, 0, t, 0),
        done(t, a1, FILLED, 1, 0),
        level(t, SELL, 100, 0, 0),
        done(t, t, FILLED, 1, 0),
        triggered(t, st),
        trade(t, 3, 105, 2, a2, 3, st, 0),
        level(t, SELL, 105, 3, 1),
        done(t, st, FILLED, 2, 0),
    ]
    assert stop_ids(book) == []


@BOOKS
def test_sell_stop_limit_triggers_at_or_below_its_stop_and_rests_at_its_limit(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    b1, b2 = new(1, BUY, 105, 1, account=2), new(2, BUY, 100, 1, account=2)
    setup(book, b1, b2)
    st = stop(3, SELL, 100, 3, limit=95, account=3)
    assert run(book, st) == [accepted(st)]
    t = new(4, SELL, 105, 1, account=4)  # last 105 > 100: not yet
    assert run(book, t) == [
        accepted(t),
        trade(t, 1, 105, 1, b1, 0, t, 0),
        done(t, b1, FILLED, 1, 0),
        level(t, BUY, 105, 0, 0),
        done(t, t, FILLED, 1, 0),
    ]
    t = new(5, SELL, 100, 1, account=4)
    assert run(book, t) == [
        accepted(t),
        trade(t, 2, 100, 1, b2, 0, t, 0),
        done(t, b2, FILLED, 1, 0),
        level(t, BUY, 100, 0, 0),
        done(t, t, FILLED, 1, 0),
        triggered(t, st),
        level(t, SELL, 95, 3, 1),  # nothing to sell to: rests at its limit
    ]
    assert stop_ids(book) == [] and ids(book, SELL) == [3]


@BOOKS
def test_a_triggered_stop_market_with_nothing_to_trade_with_expires(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    a1 = new(1, SELL, 100, 1, account=2)
    st = stop(2, BUY, 100, 3, account=3)
    setup(book, a1, st)
    t = new(3, BUY, 100, 1, account=4)
    assert run(book, t) == [
        accepted(t),
        trade(t, 1, 100, 1, a1, 0, t, 0),
        done(t, a1, FILLED, 1, 0),
        level(t, SELL, 100, 0, 0),
        done(t, t, FILLED, 1, 0),
        triggered(t, st),
        done(t, st, EXPIRED, 0, 3),
    ]


@BOOKS
def test_a_stops_trades_trigger_further_stops_in_cascade(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    a1, a2, a3 = (
        new(i, SELL, p, q, account=9) for i, p, q in [(1, 100, 1), (2, 105, 1), (3, 110, 5)]
    )
    sa, sb = stop(4, BUY, 100, 1, account=3), stop(5, BUY, 105, 1, account=4)
    setup(book, a1, a2, a3, sa, sb)
    t = new(6, BUY, 100, 1, account=5)  # last 100 triggers sa only; sa's trade at 105 then sb
    assert run(book, t) == [
        accepted(t),
        trade(t, 1, 100, 1, a1, 0, t, 0),
        done(t, a1, FILLED, 1, 0),
        level(t, SELL, 100, 0, 0),
        done(t, t, FILLED, 1, 0),
        triggered(t, sa),
        trade(t, 2, 105, 1, a2, 0, sa, 0),
        done(t, a2, FILLED, 1, 0),
        level(t, SELL, 105, 0, 0),
        done(t, sa, FILLED, 1, 0),
        triggered(t, sb),
        trade(t, 3, 110, 1, a3, 4, sb, 0),
        level(t, SELL, 110, 4, 1),
        done(t, sb, FILLED, 1, 0),
    ]


@BOOKS
def test_stops_triggered_by_the_same_trade_enter_in_arrival_order(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    asks = [(1, 100, 1), (2, 105, 1), (3, 110, 1), (4, 115, 5)]
    a1, a2, a3, a4 = (new(i, SELL, p, q, account=9) for i, p, q in asks)
    first, second = stop(5, BUY, 105, 1, account=3), stop(6, BUY, 100, 1, account=4)
    setup(book, a1, a2, a3, a4, first, second)
    t = new(7, BUY, 105, 2, account=5)  # last 105: both stops reached by the same command
    assert run(book, t) == [
        accepted(t),
        trade(t, 1, 100, 1, a1, 0, t, 1),
        done(t, a1, FILLED, 1, 0),
        trade(t, 2, 105, 1, a2, 0, t, 0),
        done(t, a2, FILLED, 1, 0),
        level(t, SELL, 100, 0, 0),
        level(t, SELL, 105, 0, 0),
        done(t, t, FILLED, 2, 0),
        triggered(t, first),
        trade(t, 3, 110, 1, a3, 0, first, 0),
        done(t, a3, FILLED, 1, 0),
        level(t, SELL, 110, 0, 0),
        done(t, first, FILLED, 1, 0),
        triggered(t, second),  # banded from its trigger (100 -> 105): 115 is past it
        done(t, second, EXPIRED, 0, 1),
    ]


@BOOKS
def test_a_stop_whose_trigger_is_already_reached_enters_at_once(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    early = stop(1, SELL, 90, 1, account=6)
    assert run(book, early) == [accepted(early)]  # no trade yet: no last price to reach
    setup(book, new(2, SELL, 100, 1, account=2), new(3, BUY, 100, 1, account=3))  # last 100
    a4 = new(4, SELL, 105, 1, account=2)
    run(book, a4)
    st = stop(5, BUY, 95, 2, limit=105, account=4)  # 100 >= 95
    assert run(book, st) == [
        accepted(st),
        triggered(st, st),
        trade(st, 2, 105, 1, a4, 0, st, 1),
        done(st, a4, FILLED, 1, 0),
        level(st, SELL, 105, 0, 0),
        level(st, BUY, 105, 1, 1),
    ]
    pending = stop(6, SELL, 95, 1, account=4)  # 100 > 95: waits
    assert run(book, pending) == [accepted(pending)]
    assert stop_ids(book) == [1, 6] and ids(book, BUY) == [5]


@BOOKS
def test_cancel_of_a_pending_stop_has_no_book_level_and_it_never_triggers(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    st = stop(1, BUY, 100, 2, limit=105)
    run(book, st)
    c = cancel(1, account=2)
    assert run(book, c) == [rejected(c, ResultCode.NOT_ORDER_OWNER)]
    c = cancel(1)
    assert run(book, c) == [done(c, c, CANCELLED, 0, 2)]
    assert stop_ids(book) == []
    a = new(2, SELL, 100, 1, account=2)
    run(book, a)
    t = new(3, BUY, 100, 1, account=3)
    assert run(book, t) == [
        accepted(t),
        trade(t, 1, 100, 1, a, 0, t, 0),
        done(t, a, FILLED, 1, 0),
        level(t, SELL, 100, 0, 0),
        done(t, t, FILLED, 1, 0),
    ]


@BOOKS
def test_replace_of_a_pending_stop_is_rejected(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    run(book, stop(1, SELL, 90, 2, limit=85))
    before = book.state_hash()
    r = replace(1, 85, 1)
    assert run(book, r) == [rejected(r, ResultCode.INVALID_ORDER)]
    r = replace(1, 85, 1, account=2)
    assert run(book, r) == [rejected(r, ResultCode.NOT_ORDER_OWNER)]
    assert book.state_hash() == before


@BOOKS
@pytest.mark.parametrize(
    ("ord_type", "price", "stop_price", "code"),
    [
        (OrdType.STOP, 0, 0, ResultCode.INVALID_PRICE),
        (OrdType.STOP, 0, -5, ResultCode.INVALID_PRICE),
        (OrdType.STOP, 0, 102, ResultCode.PRICE_NOT_ON_TICK),  # not on the 5-tick
        (OrdType.STOP_LIMIT, 100, 0, ResultCode.INVALID_PRICE),
        (OrdType.STOP_LIMIT, 100, 97, ResultCode.PRICE_NOT_ON_TICK),
        (OrdType.STOP_LIMIT, 101, 100, ResultCode.PRICE_NOT_ON_TICK),  # the limit off the tick
        (OrdType.STOP_LIMIT, 0, 100, ResultCode.INVALID_PRICE),
        (OrdType.LIMIT, 100, 100, ResultCode.INVALID_ORDER),  # a stop price on a non-stop
        (OrdType.MARKET, 0, 100, ResultCode.INVALID_ORDER),
    ],
)
def test_stop_prices_are_validated(
    book_cls: type[Book], ord_type: OrdType, price: int, stop_price: int, code: ResultCode
) -> None:
    book = book_cls(SPEC)
    run(book, new(1, SELL, 110, 5, account=2))
    before = book.state_hash()
    cmd = new(2, BUY, price, 1, ord_type=ord_type, stop_price=stop_price)
    assert run(book, cmd) == [rejected(cmd, code)]
    assert book.state_hash() == before


@BOOKS
def test_mass_cancel_cancels_resting_orders_then_pending_stops_in_arrival_order(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    s5, b1, s2, s3 = (
        stop(5, SELL, 95, 1),
        new(1, BUY, 100, 2),
        new(2, SELL, 110, 3),
        stop(3, BUY, 120, 1),
    )
    others = stop(4, SELL, 90, 1, account=2)
    setup(book, s5, b1, s2, s3, others)
    seq = next(SEQUENCE)
    mc = MassCancel(seq, 10_000 + seq, 1, 101, 77, 1, SPEC.symbol)
    reason = DoneReason.MASS_CANCELLED
    assert run(book, mc) == [
        done(mc, b1, reason, 0, 2),
        done(mc, s2, reason, 0, 3),
        done(mc, s5, reason, 0, 1),
        done(mc, s3, reason, 0, 1),
        level(mc, BUY, 100, 0, 0),
        level(mc, SELL, 110, 0, 0),
    ]
    assert stop_ids(book) == [4] and book.orders == {}
