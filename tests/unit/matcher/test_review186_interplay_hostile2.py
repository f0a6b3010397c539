"""Review 186, part 2: hand-made scenarios of the matcher's features together, on both books
(test_review186_interplay_hostile.py has the review's account, the oracle and the
property run)."""

from __future__ import annotations

import pytest

from procs.common.records import (
    Rejected,
    Replaced,
    Trade,
)
from procs.common.result_codes import ResultCode
from procs.common.types import (
    AdminAction,
    DoneReason,
    StpMode,
)
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from tests.unit.matcher.test_review186_interplay_hostile import (
    BOOKS,
    BOTH,
    BUY,
    DAY,
    EXPIRED,
    FILLED,
    FOK,
    GTC,
    IOC,
    MARKET,
    NEWEST,
    NONE,
    OLDEST,
    SELF_TRADE,
    SELL,
    SPEC,
    STOP,
    STOP_LIMIT,
    admin,
    dones,
    fills,
    mass,
    new,
    of,
    replace,
    run,
    triggered,
)

# -- scenarios ---------------------------------------------------------------------------------


@BOOKS
def test_one_trade_sets_off_stops_of_both_sides_at_its_price_in_arrival_order(
    book_cls: type[Book],
) -> None:
    """A trade at 100 reaches a sell stop and a buy stop at 100 together: they enter in
    arrival order (the sell first, it came first), each stop-market banded from its own stop
    (3%: the sell no lower than 97, the buy no higher than 103), and the buy's trades at 103
    reach a later buy stop-limit at 102, which queues behind and enters last."""
    book = book_cls(SPEC)
    run(
        book,
        new(1, BUY, 98, 5, account=2),
        new(2, BUY, 96, 5, account=2),  # past the sell stop's band: never reached
        new(3, SELL, 103, 4, account=2),
        new(4, SELL, 104, 5, account=2),  # past the buy stop's band
        new(5, SELL, 0, 3, kind=STOP, stop=100, account=3),
        new(6, BUY, 0, 6, kind=STOP, stop=100, account=3),
        new(7, BUY, 104, 2, kind=STOP_LIMIT, stop=102, account=3),
        new(8, SELL, 100, 1, account=2),
    )
    events = run(book, new(9, BUY, 100, 1, account=4))
    order = triggered(events)
    assert order == [5, 6, 7]
    assert fills(events) == [
        (8, 9, 100, 1),
        (1, 5, 98, 3),  # the sell stop: 98 within 97
        (3, 6, 103, 4),  # the buy stop: 103 only, 104 past its band
        (4, 7, 104, 2),  # the stop-limit its trades reached
    ]
    assert dones(events)[6] == (EXPIRED, 4, 2)
    assert 2 in book.orders and book.orders[4].leaves == 3


@BOOKS
def test_a_triggered_iceberg_stop_limit_rests_sliced_refills_to_the_back_and_expires_whole(
    book_cls: type[Book],
) -> None:
    """A DAY stop-limit iceberg that triggers rests as an iceberg: its first slice shows,
    a filled slice refills behind an order that came after it, and the end of the session
    expires it with its reserve, and a pending DAY stop, and keeps a GTC stop waiting."""
    book = book_cls(SPEC)
    run(
        book,
        new(1, SELL, 100, 1, account=2),
        new(2, BUY, 99, 9, kind=STOP_LIMIT, stop=100, display=3, tif=DAY, account=1),
        new(3, BUY, 0, 2, kind=STOP, stop=105, tif=DAY, account=1),
        new(4, BUY, 0, 2, kind=STOP, stop=106, tif=GTC, account=1),
    )
    events = run(book, new(5, BUY, 100, 1, account=3))
    assert triggered(events) == [2]
    assert book.levels()[(BUY, 99)] == (3, 1)
    run(book, new(6, BUY, 99, 2, account=3))
    events = run(book, new(7, SELL, 99, 4, account=4))
    assert fills(events) == [(2, 7, 99, 3), (6, 7, 99, 1)]  # the refill went behind 6
    events = run(book, admin(AdminAction.END_OF_SESSION))
    assert dones(events) == {2: (EXPIRED, 3, 6), 3: (EXPIRED, 0, 2)}
    assert list(book.stops) == [4]


@pytest.mark.parametrize(
    ("stp", "want"),
    [
        # the taker meets its own iceberg behind another account's slice
        (NEWEST, {1: (FILLED, 2, 0), 9: (SELF_TRADE, 2, 8)}),
        (OLDEST, {1: (FILLED, 2, 0), 2: (SELF_TRADE, 0, 9), 9: (FILLED, 10, 0)}),
        (BOTH, {1: (FILLED, 2, 0), 2: (SELF_TRADE, 0, 9), 9: (SELF_TRADE, 2, 8)}),
    ],
)
@BOOKS
def test_an_iceberg_aggressor_meets_its_accounts_resting_iceberg_under_each_stp_mode(
    book_cls: type[Book], stp: StpMode, want: dict[int, tuple[DoneReason, int, int]]
) -> None:
    """Account 1's resting iceberg (9, slices of 3) sits behind account 2's order; account
    1 sends an iceberg buy of 10 (slices of 4) that crosses both. The aggressor takes with
    its whole size; STP acts on the resting iceberg whole, reserve included."""
    book = book_cls(SPEC)
    run(
        book,
        new(1, SELL, 100, 2, account=2),
        new(2, SELL, 100, 9, display=3, account=1),
        new(3, SELL, 101, 10, account=2),
    )
    events = run(book, new(9, BUY, 101, 10, display=4, stp=stp, account=1))
    got = dones(events)
    assert got == want
    if stp == OLDEST:
        assert fills(events) == [(1, 9, 100, 2), (3, 9, 101, 8)]
        assert book.levels()[(SELL, 101)] == (2, 1) and 9 not in book.orders


@pytest.mark.parametrize(
    ("stp", "qty", "fills_it"),
    [
        (NONE, 12, True),  # reserve and its own orders count
        (NONE, 13, False),
        (OLDEST, 9, True),  # its own order does not count: it is cancelled
        (OLDEST, 10, False),
        (NEWEST, 2, True),  # only what is ahead of its own order, the slice
        (NEWEST, 3, False),  # the reserve refills behind its own order
        (BOTH, 3, False),
    ],
)
@BOOKS
def test_a_fok_counts_hidden_reserve_and_never_its_own_orders_under_stp(
    book_cls: type[Book], stp: StpMode, qty: int, fills_it: bool
) -> None:
    """Asks at 100: account 2's iceberg (slice 2 of 6), account 1's 3; at 101 account 2's
    3 more. Account 1's FOK buy at 101 fills all or nothing, as its sweep would go; one that
    cannot fill trades nothing and cancels none of its own orders."""
    book = book_cls(SPEC)
    run(
        book,
        new(1, SELL, 100, 6, display=2, account=2),
        new(2, SELL, 100, 3, account=1),
        new(3, SELL, 101, 3, account=2),
    )
    before = book.state_hash()
    events = run(book, new(9, BUY, 101, qty, tif=FOK, stp=stp, account=1))
    mine = dones(events)[9]
    if fills_it:
        assert mine == (FILLED, qty, 0)
    else:
        assert mine == (EXPIRED, 0, qty) and not of(events, Trade)
        assert book.state_hash() == before


@BOOKS
def test_replacing_a_part_filled_iceberg_gives_up_reserve_first_and_ends_at_its_fills(
    book_cls: type[Book],
) -> None:
    """An iceberg of 12 (slices of 4) filled 1: down to 8 keeps its place (visible 3,
    reserve 4), up to 14 loses it (the other order now first), to its fills ends it FILLED,
    even halted."""
    book = book_cls(SPEC)
    run(book, new(1, SELL, 100, 12, display=4, account=1), new(2, BUY, 100, 1, account=2))
    run(book, new(3, SELL, 100, 5, account=3))
    events = run(book, replace(1, 100, 8))
    assert [e.qty for e in events if isinstance(e, Replaced)] == [7]
    o = book.orders[1]
    assert (o.leaves, o.reserve) == (3, 4) and next(iter(book._priority())).order_id == 1
    run(book, replace(1, 100, 14))
    assert [x.order_id for x in book._priority()] == [3, 1]
    assert (book.orders[1].leaves, book.orders[1].reserve) == (4, 9)
    run(book, new(4, BUY, 100, 9, account=2))  # 3's 5, then 4 of 1's slice
    run(book, admin(AdminAction.HALT))
    events = run(book, replace(1, 100, 5))
    assert [type(e).__name__ for e in events] == ["Replaced", "BookLevel", "OrderDone"]
    assert dones(events)[1] == (FILLED, 5, 0) and 1 not in book.orders


@BOOKS
def test_a_triggered_stop_limit_resting_is_replaced_like_any_order(book_cls: type[Book]) -> None:
    """A stop-limit that triggered and rests: a smaller size keeps its place, a new price
    takes what crosses and triggers the next stop; a pending stop's replace is refused."""
    book = book_cls(SPEC)
    run(
        book,
        new(1, SELL, 100, 1, account=2),
        new(2, BUY, 98, 6, kind=STOP_LIMIT, stop=100, account=1),
        new(3, BUY, 98, 2, account=3),
        new(4, SELL, 101, 2, account=2),
        new(5, SELL, 0, 1, kind=STOP, stop=99, account=2),
        new(6, BUY, 0, 1, kind=STOP, stop=101, account=3),
    )
    run(book, new(7, BUY, 100, 1, account=4))  # 2 triggers, and rests behind 3
    assert [o.order_id for o in book._priority()][:2] == [3, 2]
    refused = run(book, replace(6, 102, 1, account=3))
    assert isinstance(refused[0], Rejected) and refused[0].code == ResultCode.INVALID_ORDER
    run(book, replace(2, 98, 4))
    assert [o.order_id for o in book._priority()][:2] == [3, 2]
    assert book.orders[2].leaves == 4
    events = run(book, replace(2, 101, 4))
    assert fills(events) == [(4, 2, 101, 2)]
    assert triggered(events) == [6]
    assert 6 not in book.stops and book.orders[2].price == 101


@BOOKS
def test_a_market_order_at_its_band_edge_takes_an_iceberg_there_whole_and_no_further(
    book_cls: type[Book],
) -> None:
    """Best ask 100, band 3%: an iceberg at 103 (the edge) refills at 103 for the whole
    market order; the 104 ask stays. A FOK market counting that reserve fills."""
    book = book_cls(SPEC)
    run(
        book,
        new(1, SELL, 100, 1, account=2),
        new(2, SELL, 103, 8, display=2, account=2),
        new(3, SELL, 104, 5, account=2),
    )
    events = run(book, new(4, BUY, 0, 20, kind=MARKET, tif=IOC, account=1))
    assert [f[2] for f in fills(events)] == [100, 103, 103, 103, 103]
    assert dones(events)[4] == (EXPIRED, 9, 11) and book.levels() == {(SELL, 104): (5, 1)}
    run(book, new(5, SELL, 100, 1, account=2), new(6, SELL, 103, 8, display=2, account=2))
    events = run(book, new(7, BUY, 0, 9, kind=MARKET, tif=FOK, account=1))
    assert dones(events)[7] == (FILLED, 9, 0)


@BOOKS
def test_a_halt_keeps_stops_waiting_and_a_mass_cancel_of_one_account_takes_its_stops(
    book_cls: type[Book],
) -> None:
    """Halted, nothing trades, so nothing triggers; a replace to the fills still ends an
    order. Resumed, a trade triggers the waiting stops; a mass cancel of account 1 took its
    pending stop and its triggered, resting stop-limit, and the cascade of account 3's goes
    on alone."""
    book = book_cls(SPEC)
    run(
        book,
        new(1, SELL, 100, 3, account=2),
        new(2, BUY, 100, 1, account=4),
        new(3, BUY, 99, 2, kind=STOP_LIMIT, stop=100, account=1),  # triggers now, rests
        new(4, BUY, 0, 1, kind=STOP, stop=101, account=1),
        new(5, BUY, 0, 1, kind=STOP, stop=101, account=3),
        new(6, SELL, 101, 3, account=2),
    )
    assert 3 in book.orders and set(book.stops) == {4, 5}
    run(book, admin(AdminAction.HALT))
    assert isinstance(run(book, new(7, BUY, 101, 1, account=4))[0], Rejected)
    events = run(book, mass(1))
    assert dones(events) == {
        3: (DoneReason.MASS_CANCELLED, 0, 2),
        4: (DoneReason.MASS_CANCELLED, 0, 1),
    }
    run(book, admin(AdminAction.RESUME))
    events = run(book, new(8, BUY, 100, 2, account=4), new(9, BUY, 101, 1, account=4))
    assert triggered(events) == [5]
    assert fills(events)[-1] == (6, 5, 101, 1) and not book.stops


@BOOKS
def test_a_snapshot_mid_cascade_setup_restored_into_the_other_class_goes_on_the_same(
    book_cls: type[Book],
) -> None:
    """Icebergs, pending and triggered stops, a part-filled order and STP: a snapshot
    restored into the other class makes the same events for what follows, byte for byte."""
    book = book_cls(SPEC)
    setup = [
        new(1, SELL, 100, 9, display=3, account=1),
        new(2, SELL, 101, 4, account=2),
        new(3, BUY, 0, 5, kind=STOP, stop=100, account=2),
        new(4, SELL, 97, 6, kind=STOP_LIMIT, stop=99, display=2, account=3),
        new(5, BUY, 98, 4, account=3, tif=DAY),
        new(6, BUY, 100, 1, account=4),
    ]
    run(book, *setup)
    other_cls = FastBook if book_cls is ReferenceBook else ReferenceBook
    twin = other_cls.restore(SPEC, book.snapshot())
    after = [
        new(7, BUY, 101, 6, account=1, stp=OLDEST),
        new(8, SELL, 98, 3, account=4),
        replace(1, 100, 2),
        admin(AdminAction.END_OF_SESSION),
        new(9, BUY, 0, 3, kind=MARKET, account=2),
    ]
    for command in after:
        assert run(book, command) == run(twin, command), command
        assert book.state_hash() == twin.state_hash()
