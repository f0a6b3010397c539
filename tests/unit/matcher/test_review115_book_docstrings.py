"""Review 115: the docstrings of the matching engine's core held to what the books do,
mechanically. README.md says "The exact order of events per command is the docstring of
``procs/core/book.py``": this file turns that module docstring's order types and rules and
its ``NewOrder`` event order (limit resting and crossing, IOC, FOK, market and its band,
post-only, stop-market and stop-limit triggers, icebergs, self-trade prevention in each
mode, halts, headers, stamps and bounds) into commands run on both books (``FastBook`` and
``ReferenceBook``, through ``readme_core_claims``'s ``rig`` fixture), each command's events
compared whole and in order. ``test_review115_book_docstrings2.py`` goes on with cancels,
replaces, mass cancels and admin commands, and with the docstrings of ``order_checks``,
``order_events``, ``engine``, ``fast_book``, ``reference_book``, ``resting`` and ``symbols``,
``state_hash`` and snapshots.

Convention: each claim is anchored by a short verbatim quote of the docstring it checks
(whitespace folded, ``_says``), so a reworded docstring fails here, naming the quote. A claim
checked and found right is a plain test; a disagreement (the docstring says X, a book does Y)
is a strict xfail asserting what the docstring says, with the side to fix in its reason.

One disagreement here (six in the two files, all fixed on the docstring side since): "Halted
symbols refuse new orders and replaces (``SYMBOL_HALTED``)", but a replace to a total at or
below what has filled is executed while halted (``Book._replace``, on purpose since review
51, as README.md says): ``Replaced(0)``, ``BookLevel``, ``OrderDone(FILLED)``.
"""

from __future__ import annotations

import inspect

import pytest

from procs.common.records import (
    Accepted,
    BookLevel,
    OrderDone,
    Record,
    Rejected,
    Replaced,
    SymbolStatus,
    Trade,
    Triggered,
)
from procs.common.types import AdminAction, OrderFlag, StpMode
from procs.core import book as book_module
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec
from tests.unit.matcher.test_books import BOOKS
from tests.unit.readme_core_claims import (
    BUY,
    DAY,
    FOK,
    GTC,
    IOC,
    MARKET,
    SELL,
    SPEC,
    STOP,
    STOP_LIMIT,
    Rig,
    _of,
    _trades,
    fixture_rig,  # noqa: F401  (the fixture rig: each test on both books)
)

BOOK_DOC = book_module.__doc__
POST_ONLY = OrderFlag.POST_ONLY


def _says(doc: str | None, quote: str) -> None:
    """``doc`` still says ``quote`` (whitespace folded): the anchor of a claim checked."""
    assert " ".join(quote.split()) in " ".join((doc or "").split()), f"docstring lost {quote!r}"


def _sig(events: list[Record]) -> list[tuple[object, ...]]:
    """Each event as a short tuple of what the docstrings speak of, in order."""
    out: list[tuple[object, ...]] = []
    for e in events:
        if isinstance(e, Accepted):
            out.append(("Accepted", e.order_id))
        elif isinstance(e, Rejected):
            out.append(("Rejected", e.order_id, e.code.name))
        elif isinstance(e, Trade):
            out.append(("Trade", e.price, e.qty, e.maker_order_id, e.taker_order_id))
        elif isinstance(e, OrderDone):
            out.append(("Done", e.order_id, e.reason.name, e.filled_qty, e.leaves_qty))
        elif isinstance(e, BookLevel):
            out.append(("Level", e.side.name, e.price, e.qty, e.count))
        elif isinstance(e, Replaced):
            out.append(("Replaced", e.order_id, e.price, e.qty))
        elif isinstance(e, Triggered):
            out.append(("Triggered", e.order_id, e.stop_price, e.price))
        elif isinstance(e, SymbolStatus):
            out.append(("Status", e.action.name, e.status.name))
        else:  # pragma: no cover - every event a book makes is listed above
            raise AssertionError(e)
    return out


def _bid_ids(book: Book) -> list[int]:
    return [o[0] for o in book.state().orders if o[2] == BUY]


def _ask_ids(book: Book) -> list[int]:
    return [o[0] for o in book.state().orders if o[2] == SELL]


# -- NewOrder ------------------------------------------------------------------------------------


def test_a_reject_is_the_only_event(rig: Rig) -> None:
    """ "``NewOrder``: ``Rejected`` and nothing else": a size past ``max_qty`` (Bounds: "Each
    order's size is checked (``max_qty``)") and a price of 0 each answer one ``Rejected``
    (``Book._new``)."""
    _says(BOOK_DOC, "``NewOrder``: ``Rejected`` and nothing else;")
    _says(BOOK_DOC, "Each order's size is checked (``max_qty``)")
    oid, events = rig.new(BUY, 100, SPEC.max_qty + 1)
    assert _sig(events) == [("Rejected", oid, "QTY_OUT_OF_RANGE")]
    oid, events = rig.new(BUY, 0, 1)
    assert _sig(events) == [("Rejected", oid, "INVALID_PRICE")]


@pytest.mark.parametrize("tif", ["GTC", "DAY"])
def test_a_resting_limit_is_accepted_then_its_level(rig: Rig, tif: str) -> None:
    """ "or ``Accepted``, then ... the taker's outcome: ... a ``BookLevel`` for the level it
    rests on (GTC, DAY)": a limit that does not cross answers ``Accepted`` and its level,
    with the level's total and count (``Book._enter``, ``FastBook._fast_new``)."""
    _says(BOOK_DOC, "a ``BookLevel`` for the level it rests on (GTC, DAY)")
    rig.new(BUY, 100, 2, account=2)
    oid, events = rig.new(BUY, 100, 5, tif=DAY if tif == "DAY" else GTC)
    assert _sig(events) == [("Accepted", oid), ("Level", "BUY", 100, 7, 2)]


def test_a_crossing_limit_trades_makers_done_levels_then_its_outcome(rig: Rig) -> None:
    """ "for each fill a ``Trade`` followed by the maker's ``OrderDone(FILLED)`` if it filled
    ..., then one ``BookLevel`` per maker level changed (in the order touched), then the
    taker's outcome": a buy sweeping two ask levels (``_match``, ``FastBook._fill``)."""
    _says(BOOK_DOC, "then for each fill a ``Trade`` followed by the maker's ``OrderDone(FILLED)``")
    _says(BOOK_DOC, "then one ``BookLevel`` per maker level changed (in the order touched)")
    a, _ = rig.new(SELL, 100, 2, account=2)
    b, _ = rig.new(SELL, 101, 3, account=3)
    oid, events = rig.new(BUY, 101, 4)
    assert _sig(events) == [
        ("Accepted", oid),
        ("Trade", 100, 2, a, oid),
        ("Done", a, "FILLED", 2, 0),
        ("Trade", 101, 2, b, oid),
        ("Level", "SELL", 100, 0, 0),
        ("Level", "SELL", 101, 1, 1),
        ("Done", oid, "FILLED", 4, 0),
    ]


def test_a_crossing_limit_rests_its_remainder_after_the_maker_levels(rig: Rig) -> None:
    """ "then the taker's outcome: ... a ``BookLevel`` for the level it rests on (GTC, DAY)":
    a buy left open after a sweep rests, its level last."""
    _says(BOOK_DOC, "then the taker's outcome: ``OrderDone(FILLED)``, a ``BookLevel``")
    a, _ = rig.new(SELL, 100, 2, account=2)
    oid, events = rig.new(BUY, 101, 5)
    assert _sig(events) == [
        ("Accepted", oid),
        ("Trade", 100, 2, a, oid),
        ("Done", a, "FILLED", 2, 0),
        ("Level", "SELL", 100, 0, 0),
        ("Level", "BUY", 101, 3, 1),
    ]


def test_trade_price_is_the_makers_and_aggressor_the_takers_side(rig: Rig) -> None:
    """``Book._match``: "a fill appends ``_trade`` and sets ``last_price``": a sell at 95
    meeting a bid at 100 trades at 100, the maker's price, aggressor SELL, with the maker's and
    taker's ids, accounts and what each has left (``Book._trade``)."""
    _says(Book._match.__doc__, "a fill appends ``_trade`` and sets ``last_price``")
    maker, _ = rig.new(BUY, 100, 5, account=2)
    taker, events = rig.new(SELL, 95, 3, account=3)
    [trade] = _trades(events)
    assert (trade.price, trade.qty, trade.aggressor) == (100, 3, SELL)
    assert (trade.maker_order_id, trade.maker_account, trade.maker_leaves) == (maker, 2, 2)
    assert (trade.taker_order_id, trade.taker_account, trade.taker_leaves) == (taker, 3, 0)
    assert rig.book.last_price == 100


def test_trade_ids_are_gapless_per_symbol(rig: Rig) -> None:
    """``Book.__init__``: "``next_trade_id = 1  # gapless per symbol``": trade ids run 1, 2,
    3, ... over sweeps, a FOK that expires, rejects, cancels and a triggered stop."""
    assert "# gapless per symbol" in inspect.getsource(Book.__init__)
    rig.new(SELL, 100, 2, account=2)
    rig.new(SELL, 101, 2, account=2)
    rig.new(BUY, 0, 1, kind=STOP, stop=101, account=4)
    seen = _trades(rig.new(BUY, 100, 1)[1])
    rig.new(BUY, 105, 50, tif=FOK)  # expires: no trade, no id
    rig.new(BUY, 0, 1)  # rejected
    seen += _trades(rig.new(BUY, 101, 2)[1])  # trades at 100, 101, then triggers the stop
    rig.new(SELL, 110, 1, account=2)
    seen += _trades(rig.new(BUY, 110, 1)[1])
    assert [t.trade_id for t in seen] == list(range(1, len(seen) + 1))
    assert len(seen) >= 5 and rig.book.next_trade_id == len(seen) + 1


def test_ioc_remainder_expires_with_what_was_left(rig: Rig) -> None:
    """ "``OrderDone(EXPIRED)`` with what was left (IOC, ...)": an IOC takes what crosses and
    its rest expires; one that crosses nothing expires whole, after ``Accepted``."""
    _says(BOOK_DOC, "``OrderDone(EXPIRED)`` with what was left (IOC, market, FOK")
    a, _ = rig.new(SELL, 100, 2, account=2)
    oid, events = rig.new(BUY, 100, 5, tif=IOC)
    assert _sig(events) == [
        ("Accepted", oid),
        ("Trade", 100, 2, a, oid),
        ("Done", a, "FILLED", 2, 0),
        ("Level", "SELL", 100, 0, 0),
        ("Done", oid, "EXPIRED", 2, 3),
    ]
    oid, events = rig.new(BUY, 100, 4, tif=IOC)
    assert _sig(events) == [("Accepted", oid), ("Done", oid, "EXPIRED", 0, 4)]


def test_fok_fills_completely_or_expires_before_any_trade(rig: Rig) -> None:
    """ "FOK that cannot fill completely, before any trade": a FOK for more than crosses
    expires whole and trades nothing; one for what crosses fills across both levels."""
    _says(BOOK_DOC, "FOK that cannot fill completely, before any trade)")
    a, _ = rig.new(SELL, 100, 2, account=2)
    b, _ = rig.new(SELL, 101, 2, account=3)
    oid, events = rig.new(BUY, 101, 5, tif=FOK)
    assert _sig(events) == [("Accepted", oid), ("Done", oid, "EXPIRED", 0, 5)]
    assert _ask_ids(rig.book) == [a, b]
    oid, events = rig.new(BUY, 101, 4, tif=FOK)
    assert _sig(events) == [
        ("Accepted", oid),
        ("Trade", 100, 2, a, oid),
        ("Done", a, "FILLED", 2, 0),
        ("Trade", 101, 2, b, oid),
        ("Done", b, "FILLED", 2, 0),
        ("Level", "SELL", 100, 0, 0),
        ("Level", "SELL", 101, 0, 0),
        ("Done", oid, "FILLED", 4, 0),
    ]


def test_market_order_stops_at_the_band_and_expires_the_rest(rig: Rig) -> None:
    """ "Market orders are protected: they never trade beyond ``SymbolSpec.band_bps`` from the
    best opposite price at arrival ... and what is left unfilled is cancelled (``EXPIRED``)":
    band 10% from a best ask of 100 reaches 110, not 111 (``Book._take``, ``_protection``)."""
    _says(BOOK_DOC, "they never trade beyond ``SymbolSpec.band_bps`` from the best opposite")
    _says(BOOK_DOC, "what is left unfilled is cancelled (``EXPIRED``)")
    assert SPEC.band_bps == 1_000
    a, _ = rig.new(SELL, 100, 1, account=2)
    b, _ = rig.new(SELL, 110, 1, account=2)
    rig.new(SELL, 111, 1, account=2)
    oid, events = rig.new(BUY, 0, 3, kind=MARKET)
    assert _sig(events) == [
        ("Accepted", oid),
        ("Trade", 100, 1, a, oid),
        ("Done", a, "FILLED", 1, 0),
        ("Trade", 110, 1, b, oid),
        ("Done", b, "FILLED", 1, 0),
        ("Level", "SELL", 100, 0, 0),
        ("Level", "SELL", 110, 0, 0),
        ("Done", oid, "EXPIRED", 2, 1),
    ]


def test_market_sell_band_and_market_cap(rig: Rig) -> None:
    """ "nor beyond their ``price`` when it is not 0 (a worst price ...)": a market sell with
    bids at 100, 90 and 89 trades down to 90 (band 10%), and with a worst price of 95 at 100,
    not 94."""
    _says(BOOK_DOC, "nor beyond their ``price`` when it is not 0 (a worst price")
    for price in (100, 90, 89):
        rig.new(BUY, price, 1, account=2)
    _, events = rig.new(SELL, 0, 3, kind=MARKET)
    assert [t.price for t in _trades(events)] == [100, 90]
    assert _of(events, OrderDone)[-1].leaves_qty == 1
    rig.new(BUY, 100, 1, account=2)
    rig.new(BUY, 94, 1, account=2)
    _, events = rig.new(SELL, 95, 3, kind=MARKET)
    assert [t.price for t in _trades(events)] == [100]
    assert _of(events, OrderDone)[-1].leaves_qty == 2


def test_market_order_on_an_empty_side_is_rejected(rig: Rig) -> None:
    """ "A market order on an empty opposite side is rejected (``NO_LIQUIDITY``)"."""
    _says(BOOK_DOC, "A market order on an empty opposite side is rejected (``NO_LIQUIDITY``)")
    rig.new(BUY, 100, 1, account=2)  # its own side is not its liquidity
    oid, events = rig.new(BUY, 0, 1, kind=MARKET)
    assert _sig(events) == [("Rejected", oid, "NO_LIQUIDITY")]


def test_post_only_is_rejected_if_it_would_take(rig: Rig) -> None:
    """ "post-only (rejected if it would take)": a post-only buy at the best ask is refused
    (``POST_ONLY_WOULD_TAKE``), one below rests (``OrderChecks._check_order``)."""
    _says(BOOK_DOC, "post-only (rejected if it would take)")
    rig.new(SELL, 100, 1, account=2)
    oid, events = rig.new(BUY, 100, 1, flags=POST_ONLY)
    assert _sig(events) == [("Rejected", oid, "POST_ONLY_WOULD_TAKE")]
    oid, events = rig.new(BUY, 99, 1, flags=POST_ONLY)
    assert _sig(events) == [("Accepted", oid), ("Level", "BUY", 99, 1, 1)]


# -- stops ---------------------------------------------------------------------------------------


def test_a_pending_stop_gets_only_its_accepted_and_waits_off_the_book(rig: Rig) -> None:
    """ "A pending stop order gets only its ``Accepted``"; stops "wait off the book": no
    ``BookLevel``, no level, listed among the stops (``Book._park_stop``)."""
    _says(BOOK_DOC, "A pending stop order gets only its ``Accepted``.")
    _says(BOOK_DOC, "Stop-market and stop-limit orders wait off the book")
    rig.trade_at(100)
    a, events = rig.new(BUY, 0, 1, kind=STOP, stop=105)
    assert _sig(events) == [("Accepted", a)]
    b, events = rig.new(SELL, 90, 1, kind=STOP_LIMIT, stop=95)
    assert _sig(events) == [("Accepted", b)]
    assert rig.book.levels() == {} and [s[0] for s in rig.book.state().stops] == [a, b]


@pytest.mark.parametrize("side", ["BUY", "SELL"])
def test_stop_triggers_at_its_price_not_short_of_it(rig: Rig, side: str) -> None:
    """ "until the last trade price reaches the stop price (a buy stop at or above, a sell
    stop at or below)": a trade one tick short leaves it waiting, one at the stop price
    triggers it (``Book._trigger_stops``)."""
    _says(BOOK_DOC, "(a buy stop at or above, a sell stop at or below)")
    stop_side, short = (BUY, 99) if side == "BUY" else (SELL, 101)
    rig.trade_at(102 if side == "SELL" else 98)
    rig.new(stop_side, 0, 1, kind=STOP, stop=100, account=5)
    rig.trade_at(short)
    assert len(rig.book.stops) == 1
    rig.trade_at(100)
    assert rig.book.stops == {}


def test_stop_market_trigger_events(rig: Rig) -> None:
    """ "Then each stop order the command's trades triggered: ``Triggered`` and its own fills
    and outcome": after the command's own events, ``Triggered`` (the stop's own header, price
    0 for a stop-market), its trade, the maker's done, the level and its outcome."""
    _says(BOOK_DOC, "``Triggered`` and its own fills and outcome")
    a, _ = rig.new(SELL, 100, 1, account=2)
    b, _ = rig.new(SELL, 101, 5, account=3)
    s, _ = rig.new(BUY, 0, 2, kind=STOP, stop=100, account=4)
    oid, events = rig.new(BUY, 100, 1)
    assert _sig(events) == [
        ("Accepted", oid),
        ("Trade", 100, 1, a, oid),
        ("Done", a, "FILLED", 1, 0),
        ("Level", "SELL", 100, 0, 0),
        ("Done", oid, "FILLED", 1, 0),
        ("Triggered", s, 100, 0),
        ("Trade", 101, 2, b, s),
        ("Level", "SELL", 101, 3, 1),
        ("Done", s, "FILLED", 2, 0),
    ]
    [trig] = _of(events, Triggered)
    assert (trig.account, trig.client_ref) == (4, s)
    assert _trades(events)[-1].aggressor == BUY


def test_stop_limit_trigger_enters_as_a_limit_and_rests(rig: Rig) -> None:
    """ "then enter as a market or limit order": a triggered stop-limit names its limit in
    ``Triggered`` and rests what it cannot fill, its level its outcome."""
    _says(BOOK_DOC, "then enter as a market or limit order")
    rig.new(SELL, 100, 1, account=2)
    rig.new(SELL, 103, 1, account=2)
    s, _ = rig.new(BUY, 101, 2, kind=STOP_LIMIT, stop=100, account=4)
    _, events = rig.new(BUY, 100, 1)
    tail = _sig(events)[-2:]
    assert tail == [("Triggered", s, 100, 101), ("Level", "BUY", 101, 2, 1)]


def test_stops_reached_together_enter_in_arrival_order(rig: Rig) -> None:
    """ "Stops that trigger together enter in arrival order": a buy stop at 103 that came
    first enters before one at 101 that came later, both reached by one sweep."""
    _says(BOOK_DOC, "Stops that trigger together enter in arrival order")
    rig.new(SELL, 101, 1, account=2)
    rig.new(SELL, 103, 1, account=2)
    rig.new(SELL, 110, 10, account=2)
    first, _ = rig.new(BUY, 0, 1, kind=STOP, stop=103, account=4)
    second, _ = rig.new(BUY, 0, 1, kind=STOP, stop=101, account=5)
    _, events = rig.new(BUY, 103, 2)
    assert [e.order_id for e in _of(events, Triggered)] == [first, second]


def test_a_stops_trades_trigger_others(rig: Rig) -> None:
    """ "a stop's trades may trigger others": a stop-market's fill at 105 reaches a second
    stop at 105, which enters in the same command."""
    _says(BOOK_DOC, "a stop's trades may trigger others")
    rig.new(SELL, 100, 1, account=2)
    rig.new(SELL, 105, 1, account=2)
    rig.new(SELL, 106, 1, account=2)
    first, _ = rig.new(BUY, 0, 1, kind=STOP, stop=100, account=4)
    second, _ = rig.new(BUY, 0, 1, kind=STOP, stop=105, account=5)
    _, events = rig.new(BUY, 100, 1)
    assert [e.order_id for e in _of(events, Triggered)] == [first, second]
    assert [t.price for t in _trades(events)] == [100, 105, 106]


def test_a_stop_already_reached_enters_at_once(rig: Rig) -> None:
    """ "A stop whose trigger is already reached when it arrives enters at once": a buy
    stop-limit at 100 after a trade at 100 is ``Accepted``, ``Triggered`` and rests."""
    _says(BOOK_DOC, "A stop whose trigger is already reached when it arrives enters at once.")
    rig.trade_at(100)
    s, events = rig.new(BUY, 99, 2, kind=STOP_LIMIT, stop=100)
    assert _sig(events) == [
        ("Accepted", s),
        ("Triggered", s, 100, 99),
        ("Level", "BUY", 99, 2, 1),
    ]


# -- icebergs ------------------------------------------------------------------------------------


def test_iceberg_shows_one_slice_and_a_refill_loses_priority(rig: Rig) -> None:
    """ "Iceberg orders (``display_qty``) show one slice at a time; when a slice is filled the
    next one goes to the back of its level (it loses priority)": its level shows 2 of 6; once
    its slice fills, the maker level shows the refill behind a later order, which fills next
    (``FastBook._refresh``, ``ReferenceBook._match``)."""
    _says(BOOK_DOC, "show one slice at a time; when a slice is filled the next")
    _says(BOOK_DOC, "one goes to the back of its level (it loses priority)")
    ice, events = rig.new(SELL, 100, 6, account=2, display=2)
    assert _sig(events)[-1] == ("Level", "SELL", 100, 2, 1)
    later, _ = rig.new(SELL, 100, 3, account=3)
    oid, events = rig.new(BUY, 100, 2)
    assert _sig(events) == [
        ("Accepted", oid),
        ("Trade", 100, 2, ice, oid),
        ("Level", "SELL", 100, 5, 2),
        ("Done", oid, "FILLED", 2, 0),
    ]
    assert _trades(events)[0].maker_leaves == 4
    assert _ask_ids(rig.book) == [later, ice]
    _, events = rig.new(BUY, 100, 1)
    assert _trades(events)[0].maker_order_id == later


def test_iceberg_aggressor_takes_with_its_whole_size(rig: Rig) -> None:
    """ "As the aggressor an iceberg takes with its whole size": an iceberg buy of 8 showing 2
    takes 5 resting, then rests 3 as a slice of 2."""
    _says(BOOK_DOC, "As the aggressor an iceberg takes with its whole size.")
    rig.new(SELL, 100, 5, account=2)
    oid, events = rig.new(BUY, 100, 8, display=2)
    assert sum(t.qty for t in _trades(events)) == 5
    assert _sig(events)[-1] == ("Level", "BUY", 100, 2, 1)
    assert rig.book.orders[oid].reserve == 1


# -- self-trade prevention -----------------------------------------------------------------------


def _stp(rig: Rig, mode: StpMode) -> tuple[int, int, int, list[Record]]:
    own, _ = rig.new(SELL, 100, 2, account=1)
    other, _ = rig.new(SELL, 100, 2, account=2)
    taker, events = rig.new(BUY, 100, 3, account=1, stp=mode)
    return own, other, taker, events


def test_stp_cancel_newest_cancels_the_aggressor(rig: Rig) -> None:
    """ "``CANCEL_NEWEST`` cancels the aggressor's rest ... A cancelled party gets
    ``OrderDone(SELF_TRADE)``": the taker meets its own order first and is done, nothing
    traded, no level changed."""
    _says(BOOK_DOC, "``CANCEL_NEWEST`` cancels the aggressor's rest")
    _says(BOOK_DOC, "A cancelled party gets ``OrderDone(SELF_TRADE)``.")
    own, other, taker, events = _stp(rig, StpMode.CANCEL_NEWEST)
    assert _sig(events) == [("Accepted", taker), ("Done", taker, "SELF_TRADE", 0, 3)]
    assert _ask_ids(rig.book) == [own, other]


def test_stp_cancel_oldest_cancels_the_maker_and_goes_on(rig: Rig) -> None:
    """ "``CANCEL_OLDEST`` cancels the resting order and goes on matching" and "a self-trade
    cancel of a maker is an ``OrderDone(SELF_TRADE)`` in the same place" (as a fill's)."""
    _says(BOOK_DOC, "``CANCEL_OLDEST`` cancels the resting order and goes on matching")
    _says(BOOK_DOC, "is an ``OrderDone(SELF_TRADE)`` in the same place)")
    own, other, taker, events = _stp(rig, StpMode.CANCEL_OLDEST)
    assert _sig(events) == [
        ("Accepted", taker),
        ("Done", own, "SELF_TRADE", 0, 2),
        ("Trade", 100, 2, other, taker),
        ("Done", other, "FILLED", 2, 0),
        ("Level", "SELL", 100, 0, 0),
        ("Level", "BUY", 100, 1, 1),
    ]


def test_stp_cancel_both_cancels_both(rig: Rig) -> None:
    """ "``CANCEL_BOTH`` does both": the own maker and the taker are done ``SELF_TRADE``,
    the maker's level between them."""
    _says(BOOK_DOC, "``CANCEL_BOTH`` does both")
    own, other, taker, events = _stp(rig, StpMode.CANCEL_BOTH)
    assert _sig(events) == [
        ("Accepted", taker),
        ("Done", own, "SELF_TRADE", 0, 2),
        ("Level", "SELL", 100, 2, 1),
        ("Done", taker, "SELF_TRADE", 0, 3),
    ]
    assert _ask_ids(rig.book) == [other]


def test_stp_is_chosen_by_the_aggressor(rig: Rig) -> None:
    """ "Self-trade prevention, chosen by the aggressor": a maker's own mode does not stop a
    taker without one from trading with it."""
    _says(BOOK_DOC, "Self-trade prevention, chosen by the aggressor")
    maker, _ = rig.new(SELL, 100, 2, stp=StpMode.CANCEL_BOTH)
    _, events = rig.new(BUY, 100, 2)
    assert [t.maker_order_id for t in _trades(events)] == [maker]


# -- halts, cancels, replaces --------------------------------------------------------------------


def test_halt_refuses_orders_and_replaces_not_cancels(rig: Rig) -> None:
    """ "Halted symbols refuse new orders and replaces (``SYMBOL_HALTED``); cancels still
    work", and "``HALT`` and ``RESUME`` answer ``SymbolStatus``"."""
    _says(BOOK_DOC, "Halted symbols refuse new orders and replaces (``SYMBOL_HALTED``;")
    _says(BOOK_DOC, "``HALT`` and ``RESUME`` answer ``SymbolStatus``")
    a, _ = rig.new(BUY, 100, 2)
    assert _sig(rig.admin(AdminAction.HALT)) == [("Status", "HALT", "HALTED")]
    oid, events = rig.new(BUY, 99, 1)
    assert _sig(events) == [("Rejected", oid, "SYMBOL_HALTED")]
    assert _sig(rig.replace(a, 101, 2)) == [("Rejected", a, "SYMBOL_HALTED")]
    assert _sig(rig.cancel(a)) == [("Done", a, "CANCELLED", 0, 2), ("Level", "BUY", 100, 0, 0)]
    assert _sig(rig.admin(AdminAction.RESUME)) == [("Status", "RESUME", "OPEN")]


def test_halt_executes_a_replace_overtaken_by_fills(rig: Rig) -> None:
    """ "Halted symbols refuse new orders and replaces (``SYMBOL_HALTED``; a replace to no more
    than has filled only ends the order, and goes)" (review 115: the exception was
    unsaid): a replace of a half-filled order to what has filled, while halted, answers
    ``Replaced`` (qty 0), its level and ``OrderDone(FILLED)``."""
    _says(BOOK_DOC, "a replace to no more than has filled only ends the order, and goes);")
    a, _ = rig.new(SELL, 100, 4)
    rig.new(BUY, 100, 2, account=2)
    rig.admin(AdminAction.HALT)
    sigs = _sig(rig.replace(a, 100, 2))
    assert [sig[0] for sig in sigs] == ["Replaced", "Level", "Done"]
    assert sigs[0][1:3] == (a, 100) and sigs[-1][1:3] == (a, "FILLED")


# -- headers, stamps, bounds ---------------------------------------------------------------------


def test_reports_about_others_orders_carry_their_own_header(rig: Rig) -> None:
    """ "Reports about a resting or triggered order that someone else's command caused (a
    maker filled, a mass cancel, a stop triggered) carry that order's own routing header":
    the filled makers' dones, the stop's ``Triggered`` and done carry their own account and
    client reference, not the command's."""
    _says(BOOK_DOC, "(a maker filled, a mass cancel, a stop triggered) carry that order's own")
    m, _ = rig.new(SELL, 100, 1, account=2)
    rig.new(SELL, 101, 1, account=3)
    s, _ = rig.new(BUY, 0, 1, kind=STOP, stop=100, account=4)
    taker, events = rig.new(BUY, 100, 1, account=5)
    heads = {(e.order_id, type(e).__name__): (e.account, e.client_ref) for e in events
             if isinstance(e, OrderDone | Triggered)}  # fmt: skip
    assert heads == {
        (m, "OrderDone"): (2, m),
        (m + 1, "OrderDone"): (3, m + 1),
        (taker, "OrderDone"): (5, taker),
        (s, "Triggered"): (4, s),
        (s, "OrderDone"): (4, s),
    }


def test_every_event_carries_the_commands_seq_and_ts(rig: Rig) -> None:
    """ "Every event carries the command's ``seq`` and ``ts_ns``: the core never reads a clock,
    so the same commands always give the same events": a cascade's events are all stamped
    with the command's, and both books answer it alike (each rig's ts is its seq)."""
    _says(BOOK_DOC, "Every event carries the command's ``seq`` and ``ts_ns``")
    _says(BOOK_DOC, "so the same commands always give the same events")
    other = Rig(ReferenceBook if isinstance(rig.book, FastBook) else FastBook)
    for r in (rig, other):
        r.new(SELL, 100, 3, account=2, display=1)
        r.new(SELL, 101, 1, account=3)
        r.new(BUY, 0, 2, kind=STOP, stop=100, account=4)
    seq, events = rig.new(BUY, 100, 2)
    assert events == other.new(BUY, 100, 2)[1]
    assert len(events) > 6
    assert all((e.seq, e.ts_ns) == (seq, seq) for e in events)  # type: ignore[attr-defined]


@BOOKS
def test_a_bare_book_does_not_bound_a_level_total(book_cls: type[Book]) -> None:
    """Bounds: "a level's total, ``BookLevel.qty``, is not [checked] ... a bare book fed orders
    no router would accept could publish a level no reader decodes": two orders of 2**63-1
    make a level of 2**64-2."""
    _says(BOOK_DOC, "but a level's total, ``BookLevel.qty``, is not:")
    rig = Rig(book_cls, SymbolSpec(symbol=SPEC.symbol, max_qty=2**63 - 1))
    rig.new(BUY, 100, 2**63 - 1)
    _, events = rig.new(BUY, 100, 2**63 - 1)
    assert _of(events, BookLevel)[0].qty == 2**64 - 2
