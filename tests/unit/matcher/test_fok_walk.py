"""FOK's test (``Book._fillable``) adds up levels, and walks only those where the taker's own
orders rest.

A FOK that cannot fill changes nothing, so a client may send it again and again; walking
every crossing order made each one cost ~15 ms against 100k one-lot asks. The books now keep
each level's size (visible plus icebergs' reserve) and, for self-trade prevention, whether an
account rests there (``procs/core/fast_book.py``: counted the first time a FOK under STP asks
about a level, kept from then on). Two properties here: the answer is the one a brute-force
walk of every crossing order gives, in both books and in restored copies, after streams of
rests, fills, iceberg refills, cancels, replaces, mass cancels, STP cancels, session ends and
halts; and a FOK against 50k one-lot asks reads no resting order once each level has been
counted (none at all without STP). ``ReferenceBook`` scans by design, so only the fast book's
walk is counted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procs.common.records import (
    AdminCommand,
    CancelOrder,
    MassCancel,
    NewOrder,
    OrderDone,
    Record,
    ReplaceOrder,
)
from procs.common.types import AdminAction, DoneReason, OrdType, Side, StpMode, TimeInForce
from procs.core.book import Book
from procs.core.book_side import CountedOrders
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.resting import RestingOrder
from procs.core.symbols import SymbolSpec

BUY, SELL = Side.BUY, Side.SELL
GTC, DAY, IOC, FOK = TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK
SPEC = SymbolSpec(symbol=9, max_qty=60, iceberg_parts=60, band_bps=0)
MID = 100
ABSENT = 9  # an account that never rests


def brute_fillable(book: Book, taker: RestingOrder) -> int:
    """``_fillable``'s documented answer, walking every crossing order in priority order."""
    crossing = [
        o
        for o in book._priority()
        if o.side != taker.side
        and (o.price <= taker.price if taker.side == BUY else o.price >= taker.price)
    ]
    total = 0
    for _, group in itertools.groupby(crossing, key=lambda o: o.price):
        before, ahead = total, 0
        for maker in group:
            if taker.stp != StpMode.NONE and maker.account == taker.account:
                if taker.stp == StpMode.CANCEL_OLDEST:
                    continue
                return before + ahead
            ahead += maker.leaves
            total += maker.leaves + maker.reserve
        if total >= taker.leaves:
            break
    return total


def taker(side: Side, price: int, qty: int, account: int, stp: StpMode) -> RestingOrder:
    return RestingOrder(0, account, side, price, qty, 0, 0, 0, 0, 0, FOK, stp)


def probe(book: Book, account: int, qty: int) -> None:
    """Ask the FOK question every way around ``account``: the answer is the brute force's,
    and asking changes nothing a snapshot shows."""
    image = book.snapshot()
    for side, off, who, stp, size in itertools.product(
        (BUY, SELL), range(-3, 4), (account, ABSENT), StpMode, (qty, 10**6)
    ):
        fok = taker(side, MID + off, size, who, stp)
        assert book._fillable(fok) == brute_fillable(book, fok), (type(book).__name__, fok)
    assert book.snapshot() == image
    book.validate_internal_state()


# -- answers: the brute force's, in both books and restored copies ---------------------------

_ops = st.tuples(
    st.sampled_from(["rest"] * 8 + ["take"] * 3 + ["cancel", "replace"] * 2
                    + ["mass", "eos", "halt", "snapshot"] + ["probe"] * 3),
    st.sampled_from([BUY, SELL]),
    st.integers(-3, 3),  # price, ticks from the mid
    st.integers(1, 12),  # qty
    st.sampled_from([0, 1, 2, 5]),  # display (iceberg slice) of a rest
    st.integers(1, 2),  # account: two, so that takers often meet their own orders
    st.sampled_from([StpMode.NONE, *StpMode]),
    st.sampled_from([GTC, DAY, IOC, FOK]),  # a taker's time in force; a rest's GTC or DAY
    st.integers(0, 999),  # which order a cancel or replace names, and how
)  # fmt: skip


class _Commands:
    def __init__(self) -> None:
        self.seq = 0

    def command(self, op: tuple[Any, ...], book: Book) -> Record | None:
        kind, side, off, qty, display, account, stp, tif, pick = op
        self.seq += 1
        seq = self.seq
        head = (seq, seq, account, account, seq, account, SPEC.symbol)
        if kind in ("rest", "take"):
            rest = kind == "rest"
            price = MID + off
            if rest:  # rests mostly on its own side of the mid, now and then it crosses
                price = MID - abs(off) if side == BUY else MID + abs(off)
                price = MID + off if pick % 7 == 0 else price
                tif = DAY if tif in (DAY, FOK) else GTC
            shown = min(display, qty) if rest else 0
            return NewOrder(*head, seq, side, OrdType.LIMIT, tif, 0, stp, price, qty, 0, shown)
        if kind in ("cancel", "replace"):
            if not book.orders:
                return None
            order = book.orders[sorted(book.orders)[pick % len(book.orders)]]
            head = (seq, seq, order.account, order.account, seq, order.account, SPEC.symbol)
            if kind == "cancel":
                return CancelOrder(*head, order.order_id)
            total = order.filled + order.leaves + order.reserve
            if pick % 3:  # smaller at the same price: keeps its place, an iceberg's reserve first
                return ReplaceOrder(*head, order.order_id, order.price, max(1, total - qty))
            return ReplaceOrder(*head, order.order_id, MID + off, max(1, total + qty - 6))
        if kind == "mass":
            return MassCancel(seq, seq, 0, 0, seq, account if pick % 2 else 0, SPEC.symbol)
        action = AdminAction.END_OF_SESSION
        if kind == "halt":
            action = AdminAction.HALT if pick % 2 else AdminAction.RESUME
        return AdminCommand(seq, seq, action, SPEC.symbol, 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ops, min_size=30, max_size=80))
def test_fillable_is_the_brute_force_walk_in_both_books_and_restored_copies(
    ops: list[tuple[Any, ...]],
) -> None:
    """Probes count the fast book's levels mid-stream, so later commands run on counted and
    uncounted levels alike; ``validate_internal_state`` recounts the totals after each."""
    reference, fast = ReferenceBook(SPEC), FastBook(SPEC)
    restored: Book = ReferenceBook(SPEC)  # from the latest snapshot op
    source = _Commands()
    for op in ops:
        kind, account, qty = op[0], op[5], op[3]
        if kind == "snapshot":
            image = fast.snapshot()
            other = ReferenceBook if isinstance(restored, FastBook) else FastBook
            restored = other.restore(SPEC, image)
            assert restored.snapshot() == image
            continue
        books = (reference, fast, restored)
        if kind == "probe":
            for book in books:
                probe(book, account, qty)
            continue
        command = source.command(op, reference)
        if command is None:
            continue
        events = reference.execute(command)
        assert fast.execute(command) == events, command
        assert restored.execute(command) == events, command
        for book in books:
            book.validate_internal_state()
        assert fast.snapshot() == reference.snapshot()
        assert restored.state_hash() == reference.state_hash()
    for book in (reference, fast, restored):
        probe(book, 1, 30)


# -- cost: levels, not orders ------------------------------------------------------------------


@contextmanager
def reads_of_resting_orders(book: FastBook) -> Iterator[set[int]]:
    """The ids of the orders resting in ``book`` on entry whose attributes are read
    inside (a taker is an order object too, but not a resting one)."""
    resting = {id(order) for order in book.orders.values()}
    seen: set[int] = set()

    def spy(self: object, name: str) -> Any:
        if id(self) in resting:
            seen.add(object.__getattribute__(self, "order_id"))
        return object.__getattribute__(self, name)

    RestingOrder.__getattribute__ = spy  # type: ignore[method-assign]  # this block only
    try:
        yield seen
    finally:
        del RestingOrder.__getattribute__  # back to object's


LOTS = 50_000


def deep_asks() -> FastBook:
    """50k one-lot asks of account 2 over three levels, and an iceberg of account 3 at the
    back of the best one."""
    book = FastBook(SymbolSpec(symbol=9))
    for oid in range(1, LOTS + 1):
        head = (oid, oid, 2, 2, oid, 2, 9, oid)
        book.execute(NewOrder(*head, SELL, OrdType.LIMIT, GTC, 0, StpMode.NONE,
                              MID + oid % 3, 1, 0, 0))  # fmt: skip
    head = (LOTS + 1, LOTS + 1, 3, 3, LOTS + 1, 3, 9, LOTS + 1)
    book.execute(NewOrder(*head, SELL, OrdType.LIMIT, GTC, 0, StpMode.NONE, MID, 100, 0, 10))
    return book


def fok_buy(oid: int, account: int, qty: int, stp: StpMode) -> NewOrder:
    head = (oid, oid, account, account, oid, account, 9, oid)
    return NewOrder(*head, BUY, OrdType.LIMIT, FOK, 0, stp, MID + 2, qty, 0, 0)


def test_a_fok_that_cannot_fill_reads_no_resting_order() -> None:
    book = deep_asks()
    size = LOTS + 100
    for stp in StpMode:  # account 1 rests nowhere
        fok = taker(BUY, MID + 2, size + 1, 1, stp)
        book._fillable(fok)  # a first question under STP counts each level's orders, once
        with reads_of_resting_orders(book) as seen:
            assert book._fillable(fok) == size
        assert not seen, f"stp={stp.name} read {len(seen)} resting orders"
    levels = book.asks.levels.values()
    assert all(isinstance(level.orders, CountedOrders) for level in levels)
    book.validate_internal_state()


def test_without_stp_not_even_the_first_question_reads_an_order() -> None:
    book = deep_asks()
    fok = taker(BUY, MID + 2, LOTS + 101, 1, StpMode.NONE)
    with reads_of_resting_orders(book) as seen:
        assert book._fillable(fok) == LOTS + 100
    assert not seen
    assert not any(isinstance(level.orders, CountedOrders) for level in book.asks.levels.values())


def test_counted_levels_stay_counted_through_changes_and_a_fok_reads_nothing() -> None:
    """Rests, cancels, fills and iceberg refills after the count; then whole FOK commands,
    sent again and again, read no resting order and are expired."""
    book = deep_asks()
    book._fillable(taker(BUY, MID + 2, 1, 1, StpMode.CANCEL_OLDEST))  # counts the levels
    seq = LOTS + 10
    changes: list[Record] = [
        CancelOrder(seq, seq, 2, 2, seq, 2, 9, 7),
        NewOrder(seq + 1, seq + 1, 4, 4, seq + 1, 4, 9, seq + 1, SELL, OrdType.LIMIT, GTC, 0,
                 StpMode.NONE, MID + 1, 5, 0, 0),
        NewOrder(seq + 2, seq + 2, 5, 5, seq + 2, 5, 9, seq + 2, BUY, OrdType.LIMIT, IOC, 0,
                 StpMode.NONE, MID + 1, LOTS // 3 + 20, 0, 0),  # the best level and a refill
        ReplaceOrder(seq + 3, seq + 3, 2, 2, seq + 3, 2, 9, 8, MID + 1, 1),
    ]  # fmt: skip
    for command in changes:
        book.execute(command)
        book.validate_internal_state()
    size = sum(o.leaves + o.reserve for o in book.orders.values())
    for i, stp in enumerate(StpMode):
        fok = taker(BUY, MID + 2, size + 1, 1, stp)
        assert book._fillable(fok) == brute_fillable(book, fok) == size
        command = fok_buy(seq + 10 + i, 1, size + 1, stp)
        image = book.snapshot()
        with reads_of_resting_orders(book) as seen:
            events = book.execute(command)
        assert not seen, f"stp={stp.name} read {len(seen)} resting orders"
        assert isinstance(events[-1], OrderDone) and events[-1].reason == DoneReason.EXPIRED
        assert book.snapshot() == image


def test_only_the_level_with_the_takers_own_order_is_walked() -> None:
    book = deep_asks()
    seq = LOTS + 10
    book.execute(NewOrder(seq, seq, 1, 1, seq, 1, 9, seq, SELL, OrdType.LIMIT, GTC, 0,
                          StpMode.NONE, MID + 2, 1, 0, 0))  # fmt: skip
    at_102 = {o.order_id for o in book.orders.values() if o.price == MID + 2}
    for stp in (StpMode.CANCEL_OLDEST, StpMode.CANCEL_NEWEST, StpMode.CANCEL_BOTH):
        fok = taker(BUY, MID + 2, 10**6, 1, stp)
        book._fillable(fok)  # counts the levels
        with reads_of_resting_orders(book) as seen:
            answer = book._fillable(fok)
        assert answer == brute_fillable(book, fok)
        assert seen and seen <= at_102, f"stp={stp.name} walked outside the own level"
