"""Review 115, part 2: ``procs/core/book.py``'s module docstring for cancels, replaces, mass
cancels and admin commands, then the docstrings of ``order_checks``, ``order_events``,
``engine``, ``fast_book``, ``reference_book`` and ``symbols``, of ``Book.state_hash`` and of
snapshots, held to both books (``FastBook``, ``ReferenceBook``). Convention as in part 1
(``test_review115_book_docstrings.py``): a claim anchored by a verbatim quote (``_says``), a
plain test where the code agrees, a strict xfail asserting the docstring where it does not.

Disagreements found here (five, all fixed on the docstring side since; part 1 has one more):

- ``book.py``, "keeps its place (same price, smaller size)": the same size keeps it too
  (``Book._replace``, ``FastBook._fast_replace``); "no larger size".
- ``book.py``, a moved replace "re-enters ... matching like a ``NewOrder`` (trades, maker
  levels, its outcome, triggered stops)": the ``BookLevel`` of the level it left comes first,
  unnamed.
- ``engine.py``, "A command for a symbol this matcher does not own is answered
  ``Rejected(UNKNOWN_SYMBOL)``": an ``AdminCommand`` is answered nothing (``Matcher._bulk``).
- ``symbols.py``, ``band_bps``: "(or a triggered stop-market) never trades further than this
  from the best opposite price at its arrival": it is banded from its stop (``Book._take``).
- ``symbols.py``, ``limit_band_bps``: "a limit price further than this from the last trade
  price is rejected": a waiting stop-limit's is collared around its stop (``_check_order``).
"""

from __future__ import annotations

import inspect
from pathlib import Path

from procs.common.records import (
    AdminCommand,
    CancelOrder,
    MassCancel,
    OrderDone,
    Rejected,
    ReplaceOrder,
    SymbolRules,
    SymbolStatus,
)
from procs.common.types import AdminAction, StpMode
from procs.core import engine as engine_module
from procs.core import fast_book as fast_module
from procs.core import order_checks as checks_module
from procs.core import order_events as events_module
from procs.core import reference_book as reference_module
from procs.core import resting as resting_module
from procs.core.book import Book
from procs.core.book_side import INF
from procs.core.engine import Matcher
from procs.core.fast_book import FastBook
from procs.core.order_checks import OrderChecks
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec
from tests.unit.matcher.differential import SPEC as RANDOM_SPEC
from tests.unit.matcher.differential import commands as random_commands
from tests.unit.matcher.test_books import BOOKS
from tests.unit.matcher.test_review115_book_docstrings import BOOK_DOC, _bid_ids, _says, _sig
from tests.unit.readme_core_claims import (
    BUY,
    DAY,
    FOK,
    SELL,
    SPEC,
    STOP,
    STOP_LIMIT,
    SYMBOL,
    Rig,
    _of,
    _order,
    _trades,
    fixture_rig,  # noqa: F401  (the fixture rig: each test on both books)
)

ENGINE_DOC = engine_module.__doc__
FAST_DOC = fast_module.__doc__
#: ``SymbolSpec``'s field docs (``#:`` comments, which ``__doc__`` does not hold), joined
SPEC_COMMENTS = " ".join(
    line.strip().removeprefix("#:")
    for line in Path(inspect.getsourcefile(SymbolSpec) or "").read_text().splitlines()
    if line.strip().startswith("#:")
)


# -- cancels, replaces -------------------------------------------------------------------------


def test_cancel_answers_done_and_level_none_for_a_stop_or_rejected(rig: Rig) -> None:
    """ "``CancelOrder``: ``OrderDone(CANCELLED)`` and its ``BookLevel`` (a stop's: none); or
    ``Rejected``"."""
    _says(BOOK_DOC, "``OrderDone(CANCELLED)`` and its ``BookLevel`` (a stop's: none); or")
    a, _ = rig.new(BUY, 100, 2)
    rig.new(BUY, 100, 3)
    assert _sig(rig.cancel(a)) == [("Done", a, "CANCELLED", 0, 2), ("Level", "BUY", 100, 3, 1)]
    s, _ = rig.new(BUY, 0, 1, kind=STOP, stop=120)
    assert _sig(rig.cancel(s)) == [("Done", s, "CANCELLED", 0, 1)]
    assert _sig(rig.cancel(999)) == [("Rejected", 999, "UNKNOWN_ORDER")]
    b, _ = rig.new(BUY, 99, 1)
    assert _sig(rig.cancel(b, account=2)) == [("Rejected", b, "NOT_ORDER_OWNER")]


def test_replace_smaller_at_the_same_price_keeps_its_place(rig: Rig) -> None:
    """ "``Replaced``, then, when the order keeps its place (same price, no larger size), its
    level's ``BookLevel``": the first of two bids, cut from 5 to 3, stays first."""
    _says(BOOK_DOC, "when the order keeps its place (same price, no larger size), its level's")
    a, _ = rig.new(BUY, 100, 5)
    b, _ = rig.new(BUY, 100, 1)
    assert _sig(rig.replace(a, 100, 3)) == [("Replaced", a, 100, 3), ("Level", "BUY", 100, 4, 2)]
    assert _bid_ids(rig.book) == [a, b]


def test_replace_same_price_same_size_keeps_its_place(rig: Rig) -> None:
    """ "when the order keeps its place (same price, no larger size)" (review 115: it said
    smaller): the first of two bids replaced to its own terms stays first."""
    _says(BOOK_DOC, "keeps its place (same price, no larger")
    a, _ = rig.new(BUY, 100, 5)
    b, _ = rig.new(BUY, 100, 1)
    rig.replace(a, 100, 5)
    assert _bid_ids(rig.book) == [a, b]


def test_replace_larger_at_the_same_price_loses_its_place(rig: Rig) -> None:
    """ "otherwise it leaves the book and re-enters as a new arrival": grown from 5 to 6 at the
    same price, the first bid goes behind the second."""
    _says(BOOK_DOC, "otherwise the ``BookLevel`` of the level it leaves, and it re-enters,")
    a, _ = rig.new(BUY, 100, 5)
    b, _ = rig.new(BUY, 100, 1)
    events = rig.replace(a, 100, 6)
    assert _sig(events)[0] == ("Replaced", a, 100, 6)
    assert _sig(events)[-1] == ("Level", "BUY", 100, 7, 2)
    assert _bid_ids(rig.book) == [b, a]


def test_replace_to_a_new_price_events_as_listed(rig: Rig) -> None:
    """ "otherwise the ``BookLevel`` of the level it leaves, and it re-enters, matching like a
    ``NewOrder`` (...)" (review 115: the level left was unsaid): a bid moved
    from 100 to 99, crossing nothing, answers ``Replaced``, the level it left, and its
    outcome, the level it rests on."""
    _says(BOOK_DOC, "matching like a ``NewOrder`` (trades, maker levels, its outcome,")
    a, _ = rig.new(BUY, 100, 5)
    assert _sig(rig.replace(a, 99, 5)) == [
        ("Replaced", a, 99, 5),
        ("Level", "BUY", 100, 0, 0),
        ("Level", "BUY", 99, 5, 1),
    ]


def test_replace_that_crosses_trades_and_triggers_stops(rig: Rig) -> None:
    """ "re-enters as a new arrival, matching like a ``NewOrder`` (trades, maker levels, its
    outcome, triggered stops)": a bid moved up into an ask trades (after ``Replaced`` and its
    old level), its outcome, then the stop its trade reached."""
    _says(BOOK_DOC, "(trades, maker levels, its outcome, triggered stops)")
    m, _ = rig.new(SELL, 101, 2, account=2)
    rig.new(SELL, 102, 5, account=2)
    s, _ = rig.new(BUY, 0, 1, kind=STOP, stop=101, account=4)
    a, _ = rig.new(BUY, 100, 2)
    assert _sig(rig.replace(a, 101, 2)) == [
        ("Replaced", a, 101, 2),
        ("Level", "BUY", 100, 0, 0),
        ("Trade", 101, 2, m, a),
        ("Done", m, "FILLED", 2, 0),
        ("Level", "SELL", 101, 0, 0),
        ("Done", a, "FILLED", 2, 0),
        ("Triggered", s, 101, 0),
        ("Trade", 102, 1, 2, s),
        ("Level", "SELL", 102, 4, 1),
        ("Done", s, "FILLED", 1, 0),
    ]


def test_replace_of_a_pending_stop_is_rejected(rig: Rig) -> None:
    """ "Or ``Rejected``: pending stops cannot be replaced (cancel and send a new one)"."""
    _says(BOOK_DOC, "pending stops cannot be replaced (cancel and send a new one)")
    s, _ = rig.new(BUY, 0, 1, kind=STOP, stop=120)
    assert _sig(rig.replace(s, 0, 2)) == [("Rejected", s, "INVALID_ORDER")]
    assert s in rig.book.stops


def test_replace_to_what_has_filled_cancels_the_balance(rig: Rig) -> None:
    """ "A new total at or below what has filled cancels the balance: ``Replaced`` with qty 0,
    the level's ``BookLevel``, ``OrderDone(FILLED)``"."""
    _says(BOOK_DOC, "``Replaced`` with qty 0, the level's ``BookLevel``, ``OrderDone(FILLED)``")
    a, _ = rig.new(SELL, 100, 5)
    rig.new(BUY, 100, 3, account=2)
    assert _sig(rig.replace(a, 100, 2)) == [
        ("Replaced", a, 100, 0),
        ("Level", "SELL", 100, 0, 0),
        ("Done", a, "FILLED", 3, 0),
    ]
    assert rig.book.orders == {}


@BOOKS
def test_the_collar_judges_only_a_changed_price(book_cls: type[Book]) -> None:
    """ "The price collar judges only a changed price": collar 10%, last trade 100, then 120:
    a bid at 95 (now 21% off) may shrink in place, not move to 96."""
    _says(BOOK_DOC, "The price collar judges only a changed price.")
    rig = Rig(book_cls, SymbolSpec(symbol=SPEC.symbol, limit_band_bps=1_000))
    rig.trade_at(100)
    a, _ = rig.new(BUY, 95, 5)
    rig.trade_at(110)
    rig.trade_at(120)
    assert _sig(rig.replace(a, 95, 4)) == [("Replaced", a, 95, 4), ("Level", "BUY", 95, 4, 1)]
    assert _sig(rig.replace(a, 96, 4)) == [("Rejected", a, "PRICE_OUT_OF_BAND")]


# -- mass cancel, admin --------------------------------------------------------------------------


def test_mass_cancel_order_of_events(rig: Rig) -> None:
    """ "``MassCancel``: per cancelled order, in priority order (bids first), ``OrderDone(MASS_
    CANCELLED)``; then for pending stops, in arrival order; then one ``BookLevel`` per level"
    (``Book._remove_all``), each done under the order's own header."""
    _says(BOOK_DOC, "per cancelled order, in priority order (bids first), ``OrderDone(MASS_")
    _says(BOOK_DOC, "then for pending stops, in arrival order; then one ``BookLevel`` per level")
    ask, _ = rig.new(SELL, 105, 1)
    s2, _ = rig.new(SELL, 0, 1, kind=STOP, stop=90)
    b1, _ = rig.new(BUY, 99, 1)
    b2, _ = rig.new(BUY, 100, 1)
    b3, _ = rig.new(BUY, 100, 2)
    s1, _ = rig.new(BUY, 0, 1, kind=STOP, stop=110)
    events = rig.mass_cancel()
    assert _sig(events) == [
        ("Done", b2, "MASS_CANCELLED", 0, 1),
        ("Done", b3, "MASS_CANCELLED", 0, 2),
        ("Done", b1, "MASS_CANCELLED", 0, 1),
        ("Done", ask, "MASS_CANCELLED", 0, 1),
        ("Done", s2, "MASS_CANCELLED", 0, 1),
        ("Done", s1, "MASS_CANCELLED", 0, 1),
        ("Level", "BUY", 100, 0, 0),
        ("Level", "BUY", 99, 0, 0),
        ("Level", "SELL", 105, 0, 0),
    ]
    assert all(e.client_ref == e.order_id for e in _of(events, OrderDone))


def test_mass_cancel_of_one_account(rig: Rig) -> None:
    """``Book._remove_all``: "the resting orders ``chosen`` (``resting``: those, in priority
    order, where known: an account's ...) and the pending stops": only account 1's go, bids
    first, then its stop."""
    _says(Book._remove_all.__doc__, "in priority order, where known: an account's")
    a, _ = rig.new(SELL, 101, 1)
    b, _ = rig.new(BUY, 99, 1)
    rig.new(BUY, 100, 1, account=2)
    c, _ = rig.new(BUY, 100, 1)
    s, _ = rig.new(BUY, 0, 1, kind=STOP, stop=120)
    rig.new(BUY, 0, 1, kind=STOP, stop=120, account=2)
    dones = [e.order_id for e in _of(rig.mass_cancel(account=1), OrderDone)]
    assert dones == [c, b, a, s]
    assert len(rig.book.orders) == 1 and len(rig.book.stops) == 1


def test_end_of_session_expires_day_orders_then_stops_then_levels(rig: Rig) -> None:
    """ "``END_OF_SESSION`` expires every DAY order (``OrderDone(EXPIRED)`` in priority order,
    then pending DAY stops, then the levels) and answers ``SymbolStatus``"; GTC orders and
    stops stay ("DAY (rests until the ``END_OF_SESSION`` admin command expires it)")."""
    _says(BOOK_DOC, "expires every DAY order (``OrderDone(EXPIRED)`` in priority order, then")
    _says(BOOK_DOC, "pending DAY stops, then the levels) and answers ``SymbolStatus``")
    _says(BOOK_DOC, "DAY (rests until the ``END_OF_SESSION`` admin command expires it)")
    d1, _ = rig.new(BUY, 99, 1, tif=DAY)
    keep, _ = rig.new(BUY, 100, 1)
    d2, _ = rig.new(BUY, 100, 1, tif=DAY)
    d3, _ = rig.new(SELL, 101, 1, tif=DAY)
    ds, _ = rig.new(BUY, 0, 1, kind=STOP, stop=120, tif=DAY)
    gs, _ = rig.new(BUY, 0, 1, kind=STOP, stop=120)
    assert _sig(rig.admin(AdminAction.END_OF_SESSION)) == [
        ("Done", d2, "EXPIRED", 0, 1),
        ("Done", d1, "EXPIRED", 0, 1),
        ("Done", d3, "EXPIRED", 0, 1),
        ("Done", ds, "EXPIRED", 0, 1),
        ("Level", "BUY", 100, 1, 1),
        ("Level", "BUY", 99, 0, 0),
        ("Level", "SELL", 101, 0, 0),
        ("Status", "END_OF_SESSION", "OPEN"),
    ]
    assert list(rig.book.orders) == [keep] and list(rig.book.stops) == [gs]


def test_other_admin_actions_belong_to_the_process(rig: Rig) -> None:
    """ "Other actions belong to the process": ``SNAPSHOT`` and ``SHUTDOWN`` answer nothing
    from a book, and change nothing."""
    _says(BOOK_DOC, "Other actions belong to the process.")
    rig.new(BUY, 100, 1, tif=DAY)
    before = rig.book.state_hash()
    assert rig.admin(AdminAction.SNAPSHOT) == [] and rig.admin(AdminAction.SHUTDOWN) == []
    assert rig.book.state_hash() == before


# -- order_checks.py, order_events.py ------------------------------------------------------------


def test_a_refusal_touches_nothing(rig: Rig) -> None:
    """``order_checks``: "A book's checks of a command before it touches anything: prices,
    sizes, order types and ownership ..., each refusal a ``ResultCode``": each refused new
    order, cancel and replace leaves the state hash as it was."""
    _says(checks_module.__doc__, "A book's checks of a command before it touches anything")
    _says(checks_module.__doc__, "each refusal a ``ResultCode``")
    a, _ = rig.new(BUY, 100, 5)
    rig.new(SELL, 0, 1, kind=STOP, stop=90)
    before = rig.book.state_hash()
    refusals = [
        rig.new(BUY, 0, 1)[1],  # price
        rig.new(BUY, 100, 0)[1],  # size
        rig.new(BUY, 100, 1, tif=FOK, display=1)[1],  # order type: an iceberg must rest
        rig.new(SELL, 0, 1, kind=STOP, stop=0)[1],
        rig.cancel(a, account=2),  # ownership
        rig.replace(a, 100, 0),
        rig.replace(a, 101, 6, account=2),
    ]
    assert all(len(r) == 1 and isinstance(r[0], Rejected) for r in refusals), refusals
    assert rig.book.state_hash() == before


@BOOKS
def test_the_collar_is_the_last_trade_price_and_none_before(book_cls: type[Book]) -> None:
    """``OrderChecks._check_limit``: "within the collar (``limit_band_bps``) of ``reference``
    (0: the last trade price; none before the first trade)": collar 10%: a bid at 1 rests
    before any trade; after a trade at 100, 89 is refused, 90 rests."""
    _says(OrderChecks._check_limit.__doc__, "(0: the last trade price; none before the first")
    rig = Rig(book_cls, SymbolSpec(symbol=SYMBOL, limit_band_bps=1_000))
    assert _sig(rig.new(BUY, 1, 1)[1])[0][0] == "Accepted"
    rig.trade_at(100)
    oid, events = rig.new(BUY, 89, 1)
    assert _sig(events) == [("Rejected", oid, "PRICE_OUT_OF_BAND")]
    assert _sig(rig.new(BUY, 90, 1)[1])[0][0] == "Accepted"


def test_a_stop_market_dead_on_arrival_is_refused(rig: Rig) -> None:
    """``OrderChecks._dead_on_arrival``: "Refused rather than accepted, triggered and expired
    unfilled": a sell stop at 100 after a trade at 100, the best bid 80 past its band (10%
    from 100), is ``PRICE_OUT_OF_BAND``; with no bid at all, ``NO_LIQUIDITY``."""
    _says(OrderChecks._dead_on_arrival.__doc__, "Refused rather than accepted, triggered and")
    rig.trade_at(100)
    oid, events = rig.new(SELL, 0, 1, kind=STOP, stop=100)
    assert _sig(events) == [("Rejected", oid, "NO_LIQUIDITY")]
    rig.new(BUY, 80, 1, account=2)
    oid, events = rig.new(SELL, 0, 1, kind=STOP, stop=100)
    assert _sig(events) == [("Rejected", oid, "PRICE_OUT_OF_BAND")]


def test_a_reject_and_a_done_carry_the_commands_header(rig: Rig) -> None:
    """``order_events``: "The events every book makes for an order command: the shared
    header, a reject, a done": a refused order's ``Rejected`` and a cancel's ``OrderDone``
    carry that command's header (seq, time, gateway, session, reference, account, symbol,
    order id)."""
    _says(events_module.__doc__, "The events every book makes for an order command: the shared")
    cmd = _order(
        seq=1, ts_ns=11, gateway=3, session=4, client_ref=5, account=6, order_id=8, price=0
    )
    [rejected] = rig.book.execute(cmd)
    header = ("seq", "ts_ns", "gateway", "session", "client_ref", "account", "symbol", "order_id")
    assert [getattr(rejected, f) for f in header] == [1, 11, 3, 4, 5, 6, SYMBOL, 8]
    rig.book.execute(_order(seq=2, order_id=9, account=6, price=100))
    done, _ = rig.book.execute(CancelOrder(3, 33, 2, 7, 77, 6, SYMBOL, 9))
    assert isinstance(done, OrderDone)
    assert [getattr(done, f) for f in header] == [3, 33, 2, 7, 77, 6, SYMBOL, 9]


# -- engine.py -----------------------------------------------------------------------------------


def _matcher(book_cls: type[Book], *symbols: int) -> Matcher:
    return Matcher([SymbolSpec(symbol=s) for s in symbols], book_cls)


@BOOKS
def test_an_order_command_for_another_symbol_is_unknown(book_cls: type[Book]) -> None:
    """``engine``: "An order command or a mass cancel for a symbol this matcher does not own is
    answered ``Rejected(UNKNOWN_SYMBOL)``": a new order, a cancel, a replace and a mass cancel for
    symbol 9 on a matcher of symbol 3."""
    _says(ENGINE_DOC, "An order command or a mass cancel for a symbol this matcher does not own")
    matcher = _matcher(book_cls, 3)
    for cmd in (
        _order(seq=1, symbol=9, order_id=1, price=100),
        CancelOrder(2, 2, 1, 1, 2, 1, 9, 1),
        ReplaceOrder(3, 3, 1, 1, 3, 1, 9, 1, 100, 1),
        MassCancel(4, 4, 1, 1, 4, 1, 9),
    ):
        [event] = matcher.execute(cmd)
        assert isinstance(event, Rejected) and event.code.name == "UNKNOWN_SYMBOL"


@BOOKS
def test_an_admin_command_for_another_symbol_is_dropped(book_cls: type[Book]) -> None:
    """``engine``: "An order command or a mass cancel for a symbol this matcher does not own
    is answered ``Rejected(UNKNOWN_SYMBOL)``; an admin command for one is another matcher's,
    and dropped" (review 115: it said any command): a halt for symbol 9 on a matcher of
    symbol 3 answers nothing."""
    _says(ENGINE_DOC, "an admin command for one is another matcher's, and dropped.")
    events = _matcher(book_cls, 3).execute(AdminCommand(1, 1, AdminAction.HALT, 9, 0))
    assert events == []


@BOOKS
def test_symbol_zero_goes_to_every_book_in_id_order(book_cls: type[Book]) -> None:
    """``engine``: "A mass cancel or admin command for symbol 0 goes to every book, in symbol
    id order": books made from specs 9, 3 answer a halt and a mass cancel 3 first."""
    _says(ENGINE_DOC, "A mass cancel or admin command for symbol 0 goes to every book, in symbol")
    matcher = _matcher(book_cls, 9, 3)
    events = matcher.execute(AdminCommand(1, 1, AdminAction.HALT, 0, 0))
    assert [e.symbol for e in _of(events, SymbolStatus)] == [3, 9]
    matcher.execute(AdminCommand(2, 2, AdminAction.RESUME, 0, 0))
    for seq, symbol in ((3, 9), (4, 3)):
        matcher.execute(_order(seq=seq, symbol=symbol, order_id=seq, price=100))
    events = matcher.execute(MassCancel(5, 5, 1, 1, 5, 0, 0))
    assert [e.symbol for e in _of(events, OrderDone)] == [3, 9]


@BOOKS
def test_a_command_not_above_the_last_seq_is_skipped(book_cls: type[Book]) -> None:
    """``engine``: "A command whose ``seq`` is not above the last one executed ... is skipped
    and answers nothing": a repeat of seq 2 and an older seq 1 change nothing."""
    _says(ENGINE_DOC, "it is skipped and answers nothing, which makes recovery idempotent")
    matcher = _matcher(book_cls, 3)
    matcher.execute(_order(seq=2, symbol=3, order_id=1, price=100))
    before = matcher.state_hash()
    assert matcher.execute(_order(seq=2, symbol=3, order_id=2, price=100)) == []
    assert matcher.execute(MassCancel(1, 1, 1, 1, 1, 0, 0)) == []
    assert matcher.state_hash() == before


@BOOKS
def test_symbol_rules_take_force_answer_nothing_and_survive_a_snapshot(
    book_cls: type[Book],
) -> None:
    """``engine``: "``SymbolRules`` puts its symbol's trading rules in force from its seq on
    and answers nothing; the snapshot keeps the rules in force": a tick of 5 refuses a price
    of 101 after it, also in a matcher restored from a snapshot with specs of tick 1."""
    _says(ENGINE_DOC, "puts its symbol's trading rules in force from its seq on and answers")
    _says(ENGINE_DOC, "the snapshot keeps the rules in force")
    matcher = _matcher(book_cls, 3)
    assert _sig(matcher.execute(_order(seq=1, symbol=3, order_id=1, price=101)))[0] == (
        "Accepted",
        1,
    )
    assert matcher.execute(SymbolRules(2, 2, 3, 5, 1, 1, 10**9, 100, 500, 0)) == []
    restored = Matcher.restore([SymbolSpec(symbol=3)], matcher.snapshot(), book_cls)
    for m in (matcher, restored):
        [event] = m.execute(_order(seq=3, symbol=3, order_id=2, price=101))
        assert isinstance(event, Rejected) and event.code.name == "PRICE_NOT_ON_TICK"


# -- fast_book.py -------------------------------------------------------------------------------


def test_fast_book_keeps_an_emptied_level_listed_and_drops_the_front() -> None:
    """``fast_book``: "a level that empties stays listed, empty, and is reused ...; only
    empty levels at the front are dropped (so ``best`` is always a live level)" and "The best
    key of each side is cached (``INF`` when the side is empty)"."""
    _says(FAST_DOC, "So a level that empties stays listed, empty, and is reused")
    _says(FAST_DOC, "only empty levels at the front are dropped (so ``best`` is always a")
    _says(FAST_DOC, "The best key of each side is cached (``INF`` when the side is empty)")
    rig = Rig(FastBook)
    book = rig.book
    assert isinstance(book, FastBook) and book.bids.best == INF
    a, _ = rig.new(BUY, 100, 1)
    b, _ = rig.new(BUY, 99, 1)
    rig.cancel(b)
    assert list(book.bids.keys) == [-100, -99] and book.bids.empty == 1
    level = book.bids.levels[-99]
    rig.new(BUY, 99, 1)
    assert book.bids.levels[-99] is level and book.bids.empty == 0
    rig.cancel(a)
    assert list(book.bids.keys) == [-99] and book.bids.best == -99
    book.validate_internal_state()


def test_a_fok_that_cannot_fill_changes_nothing(rig: Rig) -> None:
    """``fast_book``: "A FOK that cannot fill changes nothing, so a client may send it again
    and again": its events are ``Accepted`` and ``EXPIRED``, the state hash is unchanged,
    under self-trade prevention too."""
    _says(FAST_DOC, "A FOK that cannot fill changes nothing, so a client may send it again")
    rig.new(SELL, 100, 2, account=2, display=1)
    rig.new(SELL, 101, 2)
    before = rig.book.state_hash()
    for stp in StpMode:
        oid, events = rig.new(BUY, 101, 5, tif=FOK, stp=stp)
        assert _sig(events) == [("Accepted", oid), ("Done", oid, "EXPIRED", 0, 5)]
        assert rig.book.state_hash() == before


# -- symbols.py ----------------------------------------------------------------------------------


@BOOKS
def test_tick_lot_and_size_limits(book_cls: type[Book]) -> None:
    """``SymbolSpec``: "A valid price is a multiple of this many price units", "A valid
    quantity is a multiple of this many size units", "Smallest and largest quantity of one
    order"."""
    _says(SPEC_COMMENTS, "A valid price is a multiple of this many price units.")
    _says(SPEC_COMMENTS, "A valid quantity is a multiple of this many size units.")
    _says(SPEC_COMMENTS, "Smallest and largest quantity of one order, in size units.")
    rig = Rig(book_cls, SymbolSpec(symbol=SYMBOL, tick=5, lot=2, min_qty=4, max_qty=10))
    codes = [_sig(rig.new(BUY, p, q)[1])[0][-1] for p, q in ((102, 4), (100, 5), (100, 2))]
    assert codes == ["PRICE_NOT_ON_TICK", "QTY_NOT_ON_LOT", "QTY_OUT_OF_RANGE"]
    assert _sig(rig.new(BUY, 100, 12)[1])[0][-1] == "QTY_OUT_OF_RANGE"
    assert _sig(rig.new(BUY, 100, 10)[1])[0][0] == "Accepted"


def test_iceberg_parts_bounds_the_slices(rig: Rig) -> None:
    """``SymbolSpec.iceberg_parts``: "An iceberg is at most this many slices: ceil(qty /
    display) <= iceberg_parts": with 4, 8 shown 2 at a time rests, 9 is ``INVALID_QTY``."""
    _says(SPEC_COMMENTS, "An iceberg is at most this many slices: ceil(qty / display) <=")
    assert SPEC.iceberg_parts == 4
    assert _sig(rig.new(BUY, 100, 8, display=2)[1])[0][0] == "Accepted"
    oid, events = rig.new(BUY, 100, 9, display=2)
    assert _sig(events) == [("Rejected", oid, "INVALID_QTY")]


def test_a_triggered_stop_market_is_banded_from_its_stop(rig: Rig) -> None:
    """``SymbolSpec.band_bps``: "a market order never trades further than this from the best
    opposite price at its arrival, a triggered stop-market than this from its stop price"
    (review 115: it said from the best opposite price for both): a sell sweeping a bid at 101
    down to 95 triggers a buy stop at 100; from its stop (band 10%: 110) it takes 95 and 107,
    past the 104 the best ask it met would allow."""
    _says(SPEC_COMMENTS, "a triggered stop-market than this from its stop price")
    rig.new(SELL, 107, 5, account=3)
    rig.new(BUY, 101, 1, account=4)
    stop, _ = rig.new(BUY, 0, 3, kind=STOP, stop=100, account=5)
    _, events = rig.new(SELL, 95, 2, account=6)
    prices = [t.price for t in _trades(events) if t.taker_order_id == stop]
    assert prices == [95, 107]
    assert max(prices) <= 100 * (10_000 + SPEC.band_bps) // 10_000


@BOOKS
def test_a_stop_limits_limit_is_collared_from_its_stop(book_cls: type[Book]) -> None:
    """``SymbolSpec.limit_band_bps``: "a limit price further than this from the last trade
    price (a stop-limit's still waiting for its trigger: from its stop price, review 51) is
    rejected" (review 115: the stop-limit's reference was unsaid): collar 10%, last trade 100,
    a buy stop-limit (stop 130) limited at 135 is accepted, at 145 refused."""
    _says(SPEC_COMMENTS, "(a stop-limit's still waiting for its trigger: from its")
    rig = Rig(book_cls, SymbolSpec(symbol=SYMBOL, limit_band_bps=1_000))
    rig.trade_at(100)
    _, events = rig.new(BUY, 135, 1, kind=STOP_LIMIT, stop=130)
    assert _sig(events)[0][0] == "Accepted"
    oid, events = rig.new(BUY, 145, 1, kind=STOP_LIMIT, stop=130)
    assert _sig(events) == [("Rejected", oid, "PRICE_OUT_OF_BAND")]


# -- state_hash, snapshots -----------------------------------------------------------------------


def test_state_hash_is_the_same_for_both_books_and_survives_a_restore() -> None:
    """``Book.state_hash``: "A digest of the book's state that any implementation computes the
    same way"; ``resting``: "``BookState`` is everything a book is ... so ``state_hash`` and
    snapshots are the same for any implementation": 1,500 random commands (every path) to
    both books; halfway, each book's snapshot restored into the other implementation and its
    own goes on alike: same events, same hashes, trade ids going on gaplessly."""
    _says(Book.state_hash.__doc__, "that any implementation computes the same way")
    _says(resting_module.__doc__, "so ``state_hash`` and snapshots are the same for any")
    _says(
        reference_module.__doc__, "The command flow and the events are ``procs.core.book.Book``'s."
    )
    fast, ref = FastBook(RANDOM_SPEC), ReferenceBook(RANDOM_SPEC)
    books: list[Book] = [fast, ref]
    trade_ids: list[int] = []
    for i, cmd in enumerate(random_commands(115, 1_500, fast)):
        if i == 750:
            snap = fast.snapshot()
            assert snap == ref.snapshot()
            books = [fast, ref, ReferenceBook.restore(RANDOM_SPEC, snap)]
            books.append(FastBook.restore(RANDOM_SPEC, ref.snapshot()))
            assert len({b.state_hash() for b in books}) == 1
        first, *others = (b.execute(cmd) for b in books)
        assert all(other == first for other in others), cmd
        trade_ids += [t.trade_id for t in _trades(first)]
    for b in books:
        b.validate_internal_state()
    assert len({b.state_hash() for b in books}) == 1
    assert trade_ids == list(range(1, len(trade_ids) + 1)) and len(trade_ids) > 100
    assert ref.stops or ref.orders  # something was live to restore
