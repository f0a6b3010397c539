"""Order-semantics bugs shared by both books (they live in ``Book``'s common flow or in
``OrderChecks``, so the differential test between ``FastBook`` and ``ReferenceBook`` cannot see
them). Each test runs against both books and fails on the code as reviewed."""

from __future__ import annotations

import msgspec
import pytest

from procs.common.records import Rejected, Replaced, Trade
from procs.core.book import Book
from tests.unit.matcher.scenarios import BUY, SELL, SPEC, ids, new, replace, setup
from tests.unit.matcher.test_books import BOOKS, run

# -- cancel-replace ------------------------------------------------------------------------------


@BOOKS
@pytest.mark.parametrize("total", [2, 1], ids=["equal-to-filled", "below-filled"])
def test_a_replace_down_to_what_has_filled_ends_the_order_instead_of_being_rejected(
    book_cls: type[Book], total: int
) -> None:
    """A replace whose new total is at or below what has already filled is rejected
    (``INVALID_QTY``, procs/core/book.py ``_replace``: ``leaves <= 0``) and the order keeps
    resting with its old size, so it goes on filling past the total its owner asked for.

    This is the classic in-flight case: the client amends 5 -> 2 while 2 are being filled. FIX
    (4.2 Appendix D11, 4.3 D13, "cancel/replace request sent whilst execution is being
    reported -- the requested order qty equals the cum qty") accepts the replace and reads it
    as "cancel the balance": OrdStatus Filled, LeavesQty 0; venues' in-flight fill mitigation
    (CME) likewise eliminates an order modified to at or below its filled quantity.

    Expected: no reject, the order leaves the book (nothing more can fill it).
    Actual: ``Rejected(INVALID_QTY)``; the order still rests with 3 and a later seller fills
    it to 5, more than double the requested total."""
    book = book_cls(SPEC)
    setup(book, new(1, BUY, 100, 5, account=1), new(2, SELL, 100, 2, account=2))  # filled 2
    events = run(book, replace(1, 100, total, account=1))
    still_resting = ids(book, BUY)
    later = run(book, new(3, SELL, 100, 3, account=3))
    overfilled = sum(e.qty for e in later if isinstance(e, Trade) and e.maker_order_id == 1)
    rejects = [type(e).__name__ for e in events if isinstance(e, Rejected)]
    assert (rejects, still_resting, overfilled) == ([], [], 0), events


@BOOKS
def test_a_size_reduction_at_an_unchanged_price_is_not_refused_by_the_limit_collar(
    book_cls: type[Book],
) -> None:
    """A replace that only reduces the size of a resting order is refused with
    ``PRICE_OUT_OF_BAND`` once the market has moved more than ``limit_band_bps`` away from
    the order's (unchanged) price: ``Book._replace`` runs ``_check_limit(cmd.price)`` on every
    replace (procs/core/book.py, ``_replace``), price unchanged or not.

    The collar is a check of a limit price entering the book (``SymbolSpec.limit_band_bps``:
    "a limit price further than this from the last trade price is rejected"); a same-price
    size reduction brings no new price and only lowers risk, and issue 3 says reducing size
    keeps priority. Refusing it leaves the owner a single way to cut exposure, a cancel,
    which gives up the place the rule is meant to keep.

    Expected: ``Replaced`` and the order keeps its place with the smaller size.
    Actual: ``Rejected(PRICE_OUT_OF_BAND)``, the order rests unchanged."""
    book = book_cls(msgspec.structs.replace(SPEC, limit_band_bps=1000))  # +-10%
    setup(
        book,
        new(1, BUY, 100, 5, account=1),
        new(2, SELL, 100, 1, account=2),  # last 100; order 1 has 4 left
        new(3, SELL, 110, 1, account=2),
        new(4, BUY, 110, 1, account=3),  # last 110
        new(5, SELL, 120, 1, account=2),
        new(6, BUY, 120, 1, account=3),  # last 120: the collar is 108..132
    )
    assert book.last_price == 120 and ids(book, BUY) == [1]
    events = run(book, replace(1, 100, 3, account=1))  # same price, 2 open instead of 4
    assert [type(e).__name__ for e in events][:1] == ["Replaced"], events
    assert isinstance(events[0], Replaced) and events[0].qty == 2
    assert book.levels() == {(BUY, 100): (2, 1)}


# -- validation codes ----------------------------------------------------------------------------


@BOOKS
def test_off_lot_and_out_of_range_quantities_get_distinguishable_result_codes(
    book_cls: type[Book],
) -> None:
    """Issue 3 asks for "validation with clear result codes and reasons: tick size, lot size,
    min/max size, ...". ``OrderChecks._check_qty`` (procs/core/order_checks.py) answers
    ``INVALID_QTY`` alike for a size off the lot, below the minimum and above the maximum,
    and ``Rejected`` carries no reason, so the client (FIX text "INVALID_QTY (3007)") cannot
    tell which rule it broke; ``ResultCode`` even defines ``QTY_NOT_ON_LOT`` and
    ``QTY_OUT_OF_RANGE`` (and ``PRICE_NOT_ON_TICK``), which nothing uses.

    Expected: an off-lot size and an out-of-range size get different codes.
    Actual: all three are ``INVALID_QTY``."""
    book = book_cls(msgspec.structs.replace(SPEC, lot=10, min_qty=20, max_qty=1000))
    codes = {}
    for name, cmd in {
        "off lot": new(1, BUY, 100, 25),
        "below min": new(2, BUY, 100, 10),
        "above max": new(3, BUY, 100, 2000),
    }.items():
        (event,) = run(book, cmd)
        assert isinstance(event, Rejected)
        codes[name] = event.code
    assert codes["off lot"] not in (codes["below min"], codes["above max"]), codes
