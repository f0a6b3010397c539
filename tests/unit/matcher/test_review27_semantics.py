"""Review 27: a hostile review of the matching engine's semantics against issue 3's spec,
aimed at how the features meet (icebergs with STP, replace and FOK; stops through cascades,
halts, end of session, mass cancels and snapshots).

It found no command sequence on which both books break the spec, and none on which they
differ (seeded streams wider than ``differential.py``'s: tick and lot above one, collars,
market caps, CAPPED flags, foreign symbols, reused ids, prices near 2**63, rules changed
mid-stream, restores into the other implementation). What it keeps pins the combinations
it checked and found right. Each scenario runs through ``sweep_rig.run``, which feeds it
to ``ReferenceBook`` and ``FastBook`` alike and checks, after every command, identical
events (and bytes), valid internal state and equal state hashes.
"""

from __future__ import annotations

from procs.common.records import (
    BookLevel,
    OrderDone,
    Record,
    Rejected,
    Replaced,
    SymbolStatus,
    Trade,
    Triggered,
)
from procs.common.result_codes import ResultCode
from procs.common.types import AdminAction, DoneReason, OrderFlag, StpMode, TradingStatus
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from tests.unit.matcher.sweep_rig import (
    BUY,
    DAY,
    FOK,
    SELL,
    SPEC,
    STOP,
    STOP_LIMIT,
    Feed,
    kinds,
    run,
)

SELF_TRADE, MASS_CANCELLED = DoneReason.SELF_TRADE, DoneReason.MASS_CANCELLED


def _done(events: list[Record]) -> dict[int, tuple[DoneReason, int, int]]:
    """Each OrderDone of one command: order id -> (reason, filled, leaves)."""
    return {
        e.order_id: (e.reason, e.filled_qty, e.leaves_qty)
        for e in events
        if isinstance(e, OrderDone)
    }


def _levels(events: list[Record]) -> list[tuple[int, int, int, int]]:
    return [(e.side, e.price, e.qty, e.count) for e in events if isinstance(e, BookLevel)]


def _trades(events: list[Record]) -> list[tuple[int, int, int, int, int]]:
    """(trade id, price, qty, maker, taker) of each trade."""
    return [
        (e.trade_id, e.price, e.qty, e.maker_order_id, e.taker_order_id)
        for e in events
        if isinstance(e, Trade)
    ]


def test_fok_counts_iceberg_reserve_and_cancel_oldest_takes_out_the_whole_own_iceberg() -> None:
    """Asks at 100: another account's iceberg (2 shown of 8), the taker's own iceberg (3 of
    9), then 2 more of a third account. A FOK buy under CANCEL_OLDEST can fill 10 (8 + 2:
    hidden reserve counts, the own iceberg does not); 13 expires before any trade and
    cancels nothing; 10 fills, cancelling the own iceberg with its reserve, and the other
    iceberg refills behind the 2 that were queued after it."""
    f = Feed(SPEC.symbol)
    too_big = f.new(4, BUY, 100, 13, account=1, stp=StpMode.CANCEL_OLDEST, tif=FOK)
    fills = f.new(5, BUY, 100, 10, account=1, stp=StpMode.CANCEL_OLDEST, tif=FOK)
    out, book = run(
        SPEC,
        [
            f.new(1, SELL, 100, 8, display=2, account=2),
            f.new(2, SELL, 100, 9, display=3, account=1),
            f.new(3, SELL, 100, 2, account=3),
            too_big,
            fills,
        ],
    )
    assert kinds(out[3]) == ["Accepted", "OrderDone"]
    assert _done(out[3]) == {4: (DoneReason.EXPIRED, 0, 13)}
    assert _trades(out[4]) == [
        (1, 100, 2, 1, 5),  # the other iceberg's first slice; it refills at the back
        (2, 100, 2, 3, 5),  # the own iceberg (next) was cancelled; then order 3
        (3, 100, 2, 1, 5),
        (4, 100, 2, 1, 5),
        (5, 100, 2, 1, 5),
    ]
    assert _done(out[4]) == {
        2: (SELF_TRADE, 0, 9),  # shown 3 and hidden 6
        3: (DoneReason.FILLED, 2, 0),
        1: (DoneReason.FILLED, 8, 0),
        5: (DoneReason.FILLED, 10, 0),
    }
    assert _levels(out[4]) == [(SELL, 100, 0, 0)]
    assert book.orders == {} and book.next_trade_id == 6


def test_a_replace_below_what_a_part_filled_iceberg_has_filled_ends_it_with_its_reserve() -> None:
    """An iceberg sell of 30 showing 10 has 4 filled; a replace to a total of 3 (below the 4)
    ends it: ``Replaced`` with nothing open, the level without its shown 6 (the hidden 20 was
    never in it), ``OrderDone(FILLED)`` with 4 filled and 0 left. A later buy gets only the
    order behind it, and the trade ids go on without a gap."""
    f = Feed(SPEC.symbol)
    out, book = run(
        SPEC,
        [
            f.new(1, SELL, 100, 30, display=10, account=1),
            f.new(2, SELL, 100, 5, account=2),
            f.new(3, BUY, 100, 4, account=3),  # trade 1: 4 of the iceberg's slice
            f.replace(1, 100, 3, account=1),
            f.replace(1, 100, 9, account=1),  # it is gone
            f.new(4, BUY, 100, 20, account=3, tif=DAY),
        ],
    )
    replaced = out[3][0]
    assert isinstance(replaced, Replaced) and (replaced.price, replaced.qty) == (100, 0)
    assert _levels(out[3]) == [(SELL, 100, 5, 1)]
    assert _done(out[3]) == {1: (DoneReason.FILLED, 4, 0)}
    assert [e.code for e in out[4] if isinstance(e, Rejected)] == [ResultCode.UNKNOWN_ORDER]
    assert _trades(out[5]) == [(2, 100, 5, 2, 4)]
    assert _levels(out[5]) == [(SELL, 100, 0, 0), (BUY, 100, 15, 1)]
    assert list(book.orders) == [4]


def test_stops_wait_through_a_halt_then_a_trade_sets_off_a_cascade_in_arrival_order() -> None:
    """Stops are only reached by trades, and a halted symbol trades nothing: through HALT
    (a new order refused) and RESUME no stop is triggered. Then a trade at 100 reaches two buy
    stops (entered in arrival order, not stop-price order); the first's trades at 105 reach a
    third, which queues behind the second. A snapshot taken during the halt, restored in
    either implementation, gives the same events."""
    f = Feed(SPEC.symbol)
    setup = [
        f.new(1, SELL, 100, 1, account=9),
        f.new(2, SELL, 105, 2, account=9),
        f.new(3, SELL, 110, 5, account=9),
        f.new(10, BUY, 0, 2, account=1, ord_type=STOP, stop=100),  # arrival: first
        f.new(11, BUY, 0, 1, account=2, ord_type=STOP, stop=95),  # second, lower stop
        f.new(12, BUY, 0, 1, account=3, ord_type=STOP, stop=105),
        f.new(13, BUY, 90, 1, account=4),
        f.new(14, SELL, 90, 1, account=5),  # last 90: nothing reached
        f.admin(AdminAction.HALT),
    ]
    refused = f.new(15, BUY, 100, 1, account=6)
    resume = f.admin(AdminAction.RESUME)
    after = [refused, resume, f.new(16, BUY, 100, 1, account=6)]
    out, book = run(SPEC, setup + after)
    assert [e.code for e in out[len(setup)] if isinstance(e, Rejected)] == [
        ResultCode.SYMBOL_HALTED
    ]
    opened = SymbolStatus(resume.seq, resume.ts_ns, SPEC.symbol, resume.action, TradingStatus.OPEN)
    assert out[len(setup) + 1] == [opened]  # no stop triggered
    cascade = out[-1]
    assert [e.order_id for e in cascade if isinstance(e, Triggered)] == [10, 11, 12]
    assert _trades(cascade) == [
        (2, 100, 1, 1, 16),
        (3, 105, 2, 2, 10),  # stop 10 at 105 reaches stop 12
        # stop 11 is banded from its trigger, 95 -> 99 (review 42): 110 is past it
        (4, 110, 1, 3, 12),
    ]
    assert book.stops == {} and book.last_price == 110

    ref, fast = ReferenceBook(SPEC), FastBook(SPEC)
    for command in setup:
        ref.execute(command)
        fast.execute(command)
    for source, target in ((ref, FastBook), (fast, ReferenceBook)):
        copy = target.restore(SPEC, source.snapshot())
        assert copy.snapshot() == source.snapshot()
        assert [copy.execute(command) for command in after] == out[len(setup) :]


def test_end_of_session_expires_a_triggered_day_stop_limit_iceberg_and_pending_day_stops() -> None:
    """A DAY stop-limit iceberg triggered and resting (2 shown of 9), a GTC order at its
    price, and pending DAY and GTC stops: END_OF_SESSION expires the DAY ones (the iceberg
    with its hidden reserve in ``leaves_qty``), resting first then pending, and the level
    shows what is still displayed."""
    f = Feed(SPEC.symbol)
    iceberg = f.new(3, BUY, 95, 9, account=1, ord_type=STOP_LIMIT, stop=100, tif=DAY, display=2)
    out, book = run(
        SPEC,
        [
            f.new(1, SELL, 100, 1, account=9),
            f.new(2, BUY, 100, 1, account=8),  # last 100
            iceberg,  # reached on arrival: rests 2 shown, 7 hidden
            f.new(4, BUY, 95, 3, account=2),  # GTC behind it
            f.new(5, SELL, 0, 2, account=3, ord_type=STOP, stop=90, tif=DAY),
            f.new(6, SELL, 0, 2, account=3, ord_type=STOP, stop=85),  # GTC
            f.admin(AdminAction.END_OF_SESSION),
        ],
    )
    assert kinds(out[2]) == ["Accepted", "Triggered", "BookLevel"]
    assert _levels(out[2]) == [(BUY, 95, 2, 1)]
    eos = out[-1]
    assert kinds(eos) == ["OrderDone", "OrderDone", "BookLevel", "SymbolStatus"]
    assert _done(eos) == {3: (DoneReason.EXPIRED, 0, 9), 5: (DoneReason.EXPIRED, 0, 2)}
    assert _levels(eos) == [(BUY, 95, 3, 1)]
    assert list(book.orders) == [4] and list(book.stops) == [6]


def test_mass_cancel_of_an_account_takes_its_icebergs_and_pending_stops_only() -> None:
    """A mass cancel for account 1: its resting orders (an iceberg with its reserve) in
    priority order, bids first, then its pending stops in arrival order, then one level event
    per level; account 2's order and stop stay."""
    f = Feed(SPEC.symbol)
    out, book = run(
        SPEC,
        [
            f.new(1, SELL, 110, 12, display=4, account=1),
            f.new(2, BUY, 90, 3, account=1),
            f.new(3, SELL, 110, 2, account=2),
            f.new(4, BUY, 0, 2, account=1, ord_type=STOP, stop=120),
            f.new(5, SELL, 0, 2, account=2, ord_type=STOP, stop=80),
            f.new(6, SELL, 85, 1, account=1, ord_type=STOP_LIMIT, stop=80),
            f.mass(account=1),
        ],
    )
    cancel = out[-1]
    assert [(e.order_id, e.reason, e.leaves_qty) for e in cancel if isinstance(e, OrderDone)] == [
        (2, MASS_CANCELLED, 3),
        (1, MASS_CANCELLED, 12),
        (4, MASS_CANCELLED, 2),
        (6, MASS_CANCELLED, 1),
    ]
    assert _levels(cancel) == [(BUY, 90, 0, 0), (SELL, 110, 2, 1)]
    assert list(book.orders) == [3] and list(book.stops) == [5]


def test_a_post_only_iceberg_replace_that_would_take_is_refused_and_keeps_its_place() -> None:
    """A post-only iceberg bid (3 shown of 9) ahead of another bid: a replace to a price that
    crosses the best ask is refused ``POST_ONLY_WOULD_TAKE`` and changes nothing; a smaller
    total at its price keeps its place (reserve given up first); a larger one goes to the
    back with a fresh slice."""
    f = Feed(SPEC.symbol)
    commands = [
        f.new(1, BUY, 99, 9, account=1, display=3, flags=OrderFlag.POST_ONLY),
        f.new(2, BUY, 99, 4, account=2),
        f.new(3, SELL, 101, 5, account=3),
        f.replace(1, 101, 9, account=1),
        f.replace(1, 99, 5, account=1),
        f.replace(1, 99, 12, account=1),
    ]
    out, book = run(SPEC, commands[:3])
    before = book.state_hash()
    out, book = run(SPEC, commands[:4])
    assert [e.code for e in out[3] if isinstance(e, Rejected)] == [ResultCode.POST_ONLY_WOULD_TAKE]
    assert book.state_hash() == before
    out, book = run(SPEC, commands[:5])
    assert _levels(out[4]) == [(BUY, 99, 7, 2)]  # 3 shown still, reserve 6 -> 2
    assert [o[0] for o in book.state().orders if o[2] == BUY] == [1, 2]
    assert (book.orders[1].leaves, book.orders[1].reserve) == (3, 2)
    out, book = run(SPEC, commands)
    assert [o[0] for o in book.state().orders if o[2] == BUY] == [2, 1]
    assert (book.orders[1].leaves, book.orders[1].reserve) == (3, 9)
    assert _levels(out[5]) == [(BUY, 99, 4, 1), (BUY, 99, 7, 2)]
