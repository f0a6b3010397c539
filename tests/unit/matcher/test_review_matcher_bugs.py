"""Bugs a hostile review of the matcher core found: each test failed on the code as it was
reviewed and passes since its fix (stops triggered by every price a sweep traded at, queued
in order; an uncapped market buy's protection limit bounded to int64)."""

from __future__ import annotations

from procs.common.records import Trade, Triggered
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from tests.unit.matcher.scenarios import (
    BUY,
    EXPIRED,
    SELL,
    SPEC,
    done,
    market,
    new,
    setup,
    stop,
    stop_ids,
)
from tests.unit.matcher.test_books import BOOKS, run

# -- stops ---------------------------------------------------------------------------------------


@BOOKS
def test_stops_triggered_together_all_enter_even_if_the_first_moves_the_price_back(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    sell_stop = stop(1, SELL, 100, 1, account=1)  # earlier arrival: enters first
    buy_stop = stop(2, BUY, 100, 1, account=2)
    setup(
        book,
        sell_stop,
        buy_stop,
        new(3, SELL, 100, 1, account=3),
        new(4, BUY, 95, 1, account=4),
        new(5, SELL, 120, 1, account=5),
    )
    events = run(book, new(6, BUY, 100, 1, account=6))  # a trade at 100 reaches both stops
    fired = [e.order_id for e in events if isinstance(e, Triggered)]
    # The sell stop sells at 95 (last 95); the buy stop was reached by the trade at 100 all
    # the same and must enter, not go back to waiting for the price to return to 100.
    assert fired == [1, 2]
    assert stop_ids(book) == []


@BOOKS
def test_a_sweep_through_a_sell_stops_price_triggers_it(book_cls: type[Book]) -> None:
    book = book_cls(SPEC)
    setup(book, new(1, SELL, 110, 1, account=1), new(2, BUY, 110, 1, account=2))  # last 110
    sell_stop = stop(3, SELL, 100, 1, account=3)  # 110 > 100: waits
    setup(
        book,
        sell_stop,
        new(4, BUY, 90, 5, account=4),  # what the triggered stop sells to
        new(5, SELL, 100, 1, account=5),
        new(6, SELL, 105, 1, account=5),
    )
    assert stop_ids(book) == [3]
    events = run(book, new(7, BUY, 105, 2, account=6))  # trades at 100, then at 105
    assert [e.price for e in events if isinstance(e, Trade)][:2] == [100, 105]
    # The market traded at 100, the sell stop's price: it is triggered.
    assert [e.order_id for e in events if isinstance(e, Triggered)] == [3]


@BOOKS
def test_a_stop_triggered_by_a_stops_trade_queues_behind_those_already_triggered(
    book_cls: type[Book],
) -> None:
    book = book_cls(SPEC)
    later = stop(1, BUY, 105, 1, account=1)  # earliest arrival, but reached only at 105
    first, second = stop(2, BUY, 100, 1, account=2), stop(3, BUY, 100, 1, account=3)
    asks = [(4, 100), (5, 105), (6, 110), (7, 115)]
    setup(book, later, first, second, *(new(i, SELL, p, 1, account=9) for i, p in asks))
    events = run(book, new(8, BUY, 100, 1, account=8))  # last 100: first and second reached
    # first enters (trades at 105), which reaches ``later``; second was triggered before it.
    assert [e.order_id for e in events if isinstance(e, Triggered)] == [2, 3, 1]


# -- market protection -------------------------------------------------------------------------


def test_an_uncapped_market_buy_that_empties_a_very_high_ask_side_expires_its_rest() -> None:
    top = (2**63 - 1) // SPEC.tick * SPEC.tick  # the highest price a record can carry
    ask = new(1, SELL, top, 1, account=1)
    taker = market(2, BUY, 2, account=2)  # price 0: no cap; its band limit is above 2**63
    reference, fast = ReferenceBook(SPEC), FastBook(SPEC)
    run(reference, ask)
    expected = run(reference, taker)
    assert expected[-1] == done(taker, taker, EXPIRED, 1, 1)  # the reference gets it right
    run(fast, ask)
    assert run(fast, taker) == expected  # FastBook: KeyError(2**63), after the trade
