"""Contract tests for the order types and rules of ``procs.core.book``'s docstring that
``test_books.py`` leaves out: market protection, stops, icebergs, self-trade prevention, halt
and end of session, the limit collar, snapshots of all of it, and post-only misuse.

Each scenario runs against both books and compares the *whole* event list of a command with
the one the docstring prescribes, field for field, so a wrong order, header or quantity fails.
"""

from __future__ import annotations

import itertools

import msgspec
import pytest

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
    SymbolStatus,
    Trade,
    Triggered,
)
from procs.common.result_codes import ResultCode
from procs.common.types import (
    AdminAction,
    DoneReason,
    OrderFlag,
    OrdType,
    Side,
    StpMode,
    TimeInForce,
    TradingStatus,
)
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec
from tests.unit.matcher.test_books import BOOKS, run

SPEC = SymbolSpec(symbol=7, tick=5, lot=1, min_qty=1, max_qty=1000, band_bps=500)
BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
FILLED, CANCELLED, EXPIRED = DoneReason.FILLED, DoneReason.CANCELLED, DoneReason.EXPIRED
SELF_TRADE = DoneReason.SELF_TRADE
_seq = itertools.count(1)

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
    seq = next(_seq)
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
    seq = next(_seq)
    return CancelOrder(
        *(seq, 10_000 + seq, account, 100 + account, 5000 + seq, account, SPEC.symbol),
        order_id,
    )


def replace(order_id: int, price: int, qty: int, account: int = 1) -> ReplaceOrder:
    seq = next(_seq)
    return ReplaceOrder(
        *(seq, 10_000 + seq, account, 100 + account, 5000 + seq, account, SPEC.symbol),
        *(order_id, price, qty),
    )


def admin(action: AdminAction, symbol: int = SPEC.symbol) -> AdminCommand:
    seq = next(_seq)
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
    return Accepted(*head(cmd, cmd), side=cmd.side, price=cmd.price, qty=cmd.qty)


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
    assert run(book, m) == [rejected(m, ResultCode.INVALID_PRICE)]
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
        triggered(t, second),
        trade(t, 4, 115, 1, a4, 4, second, 0),
        level(t, SELL, 115, 4, 1),
        done(t, second, FILLED, 1, 0),
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
        (OrdType.STOP, 0, 102, ResultCode.INVALID_PRICE),  # not on the 5-tick
        (OrdType.STOP_LIMIT, 100, 0, ResultCode.INVALID_PRICE),
        (OrdType.STOP_LIMIT, 100, 97, ResultCode.INVALID_PRICE),
        (OrdType.STOP_LIMIT, 101, 100, ResultCode.INVALID_PRICE),  # the limit off the tick
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
    seq = next(_seq)
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
        (OrdType.LIMIT, GTC, 100, 3, ResultCode.INVALID_QTY),  # not a multiple of the 2-lot
        (OrdType.LIMIT, GTC, 100, 12, ResultCode.INVALID_QTY),  # more than the order
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
