"""Review 107: README.md's "## The matcher", its commands (cancel-replace, mass cancel, admin
halt / resume / end of session), its events' trade ids, its determinism and its recovery
numbers, held to the code mechanically: every behaviour it states that a few commands to the
pure cores (a book, on both books, or a ``Matcher``) can show is shown, and every number it
states is the code's constant (quoted by name).

Convention (as review 104's, shared helpers in ``readme_core_claims``): the README is read as
it is when the test runs, and each claim is found in it by a quote (whitespace folded), so a
claim that is reworded fails here, loudly, rather than being checked no longer. Nothing here
starts a process.
"""

from __future__ import annotations

import inspect
import types

import msgspec

from procs.common import published_through
from procs.common.records import (
    BookLevel,
    CancelOrder,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    Replaced,
    SymbolRules,
    SymbolStatus,
)
from procs.common.result_codes import ResultCode
from procs.common.types import AdminAction, DoneReason, StpMode, TradingStatus
from procs.core import account_orders
from procs.core.engine import Matcher
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbol_rules import RULE_FIELDS
from tests.unit.readme_core_claims import (
    BUY,
    CODEC,
    DAY,
    GTC,
    LIMIT,
    MARKET,
    SELL,
    SPEC,
    STOP,
    SYMBOL,
    Rig,
    _claim,
    _done,
    _of,
    _rejected,
    _trades,
    fixture_rig,  # noqa: F401  (the fixture rig)
)

# -- the matcher: commands --------------------------------------------------------------------


def test_replace_total_includes_fills(rig: Rig) -> None:
    """README "## The matcher", Commands: cancel-replace's "quantity is the order's new total,
    fills included, as FIX's OrderQty: what is open becomes that total less what has filled":
    an order of 10 filled 4, replaced to 8, has 4 open."""
    _claim("cancel-replace (its quantity is the order's new total, fills included, as FIX's")
    oid, _ = rig.new(SELL, 100, 10)
    rig.new(BUY, 100, 4, account=2)
    events = rig.replace(oid, 101, 8)
    [replaced] = _of(events, Replaced)
    assert replaced.qty == 4
    assert rig.book.orders[oid].leaves == 4


def test_replace_overtaken_by_fills_ends_the_order_even_halted(rig: Rig) -> None:
    """README "## The matcher": "a replace the fills have overtaken ends the order: `Replaced`
    with qty 0, then `OrderDone` filled, as FIX answers it, whatever a halt or the collar would
    say of its price": halted, an order of 10 filled 6 replaced to 5 at a price off the collar
    is ``Replaced(0)`` then ``OrderDone(FILLED)``, and gone."""
    _claim("a replace the fills have overtaken ends the order: `Replaced` with qty 0, then")
    _claim("`OrderDone` filled, as FIX answers it, whatever a halt or the collar would say")
    r = Rig(type(rig.book), msgspec.structs.replace(SPEC, limit_band_bps=100))
    oid, _ = r.new(SELL, 100, 10)
    r.new(BUY, 100, 6, account=2)
    r.admin(AdminAction.HALT)
    events = r.replace(oid, 500, 5)
    assert [type(e) for e in events] == [Replaced, BookLevel, OrderDone]
    assert events[0].qty == 0  # type: ignore[attr-defined]
    assert events[2].reason == DoneReason.FILLED  # type: ignore[attr-defined]
    assert oid not in r.book.orders


def test_replace_smaller_same_price_keeps_priority_else_loses(rig: Rig) -> None:
    """README "## The matcher": "a smaller size at the same price keeps priority"; records.py's
    ``ReplaceOrder``: "a new price or larger qty loses it"."""
    _claim("a smaller size at the same price keeps priority")
    a, _ = rig.new(SELL, 100, 5, account=2)
    b, _ = rig.new(SELL, 100, 5, account=3)
    rig.replace(a, 100, 3, account=2)
    assert _trades(rig.new(BUY, 100, 1, account=4)[1])[0].maker_order_id == a
    rig.replace(a, 100, 5, account=2)  # larger: to the back, behind b
    assert _trades(rig.new(BUY, 100, 1, account=4)[1])[0].maker_order_id == b


def test_mass_cancel_by_account_and_symbol(rig: Rig) -> None:
    """README "## The matcher": "mass cancel by account and/or symbol": account 2's orders
    only (its pending stop too), each ``OrderDone(MASS_CANCELLED)``; then symbol-wide
    (account 0) takes the rest; another symbol's takes nothing."""
    _claim("mass cancel by account and/or symbol")
    rig.trade_at(100)
    mine = {rig.new(SELL, 101, 1, account=2)[0], rig.new(BUY, 90, 1, account=2)[0]}
    mine.add(rig.new(SELL, 0, 1, account=2, kind=STOP, stop=80)[0])
    other, _ = rig.new(SELL, 102, 1, account=3)
    events = rig.mass_cancel(account=2)
    assert {d.order_id for d in _done(events)} == mine
    assert {d.reason for d in _done(events)} == {DoneReason.MASS_CANCELLED}
    assert rig.mass_cancel(symbol=SYMBOL + 1) == []
    assert [d.order_id for d in _done(rig.mass_cancel(symbol=SYMBOL))] == [other]


def test_mass_cancel_index_rebuilt_past_twice_the_book() -> None:
    """README "## The matcher": the account index is "rebuilt once past twice the book"
    (procs/core/account_orders.py: ``limit = 2 * len(orders) + SLACK``, ``SLACK = 1024``):
    the README's number holds for large books only; checked at that order of size."""
    _claim("the index rebuilt once past twice the book")
    assert account_orders.SLACK == 1024
    index = account_orders.AccountOrders()
    resting = {k: types.SimpleNamespace(account=1, order_id=k) for k in range(100_000)}
    index.rebuild(resting)  # type: ignore[arg-type]
    assert index.limit == 2 * 100_000 + account_orders.SLACK  # ~twice, at 200k orders: 1%


def test_halt_resume_and_end_of_session(rig: Rig) -> None:
    """README "## The matcher", Commands: admin "halt / resume / end of session (expires DAY
    orders ...)", each answered ``SymbolStatus``; book.py: halted, new orders and replaces are
    ``SYMBOL_HALTED`` and cancels still work."""
    _claim("admin halt / resume / end of session (expires DAY orders")
    day, _ = rig.new(SELL, 101, 1, tif=DAY)
    gtc, _ = rig.new(SELL, 102, 1)
    [status] = rig.admin(AdminAction.HALT)
    assert isinstance(status, SymbolStatus) and status.status == TradingStatus.HALTED
    assert _rejected(rig.new(SELL, 103, 1)[1]) == ResultCode.SYMBOL_HALTED
    assert _rejected(rig.replace(gtc, 104, 1)) == ResultCode.SYMBOL_HALTED
    assert _done(rig.cancel(gtc))[0].reason == DoneReason.CANCELLED
    assert rig.admin(AdminAction.RESUME)[-1].status == TradingStatus.OPEN  # type: ignore[attr-defined]
    events = rig.admin(AdminAction.END_OF_SESSION)
    assert [(d.order_id, d.reason) for d in _done(events)] == [(day, DoneReason.EXPIRED)]
    assert isinstance(events[-1], SymbolStatus)


def test_cancel_and_replace_of_another_account_refused(rig: Rig) -> None:
    """README "## The matcher", Events: "unknown order, not the owner": ``UNKNOWN_ORDER`` and
    ``NOT_ORDER_OWNER`` (order_checks.py ``_check_owner``)."""
    oid, _ = rig.new(SELL, 101, 1, account=2)
    assert _rejected(rig.cancel(oid + 100)) == ResultCode.UNKNOWN_ORDER
    assert _rejected(rig.cancel(oid, account=3)) == ResultCode.NOT_ORDER_OWNER
    assert _rejected(rig.replace(oid, 101, 1, account=3)) == ResultCode.NOT_ORDER_OWNER


def test_trade_ids_gapless_per_symbol(rig: Rig) -> None:
    """README "## The matcher", Events: "`Trade` (gapless trade id per symbol, maker and
    taker)"."""
    _claim("`Trade` (gapless trade id per symbol, maker and taker)")
    for price in (100, 101, 102):
        rig.new(SELL, price, 1, account=2)
    ids = [t.trade_id for t in _trades(rig.new(BUY, 102, 3, account=3)[1])]
    ids += [t.trade_id for t in _trades(rig.new(BUY, 0, 1, kind=MARKET, account=3)[1])]
    rig.new(SELL, 103, 1, account=2)
    ids += [t.trade_id for t in _trades(rig.new(BUY, 103, 1, account=3)[1])]
    assert ids == [1, 2, 3, 4]


def _script() -> list[Record]:
    """A short mixed command script for two matchers of the same symbols."""
    out: list[Record] = []
    seq = 0
    for k in range(60):
        seq += 1
        side = BUY if k % 3 else SELL
        out.append(NewOrder(
            seq=seq, ts_ns=seq, gateway=1, session=1, client_ref=seq, account=1 + k % 4,
            symbol=SYMBOL, order_id=seq, side=side, ord_type=LIMIT, tif=GTC, flags=0,
            stp=StpMode.CANCEL_OLDEST if k % 5 == 0 else StpMode.NONE,
            price=100 + (k * 7) % 9 - 4, qty=1 + k % 6, stop_price=0,
            display_qty=2 if k % 7 == 0 and k % 3 else 0,
        ))  # fmt: skip
        if k % 4 == 3:
            seq += 1
            out.append(CancelOrder(seq, seq, 1, 1, seq, 1 + (k - 3) % 4, SYMBOL, seq - 4))
    seq += 1
    out.append(NewOrder(
        seq=seq, ts_ns=seq, gateway=1, session=1, client_ref=seq, account=9, symbol=SYMBOL + 1,
        order_id=seq, side=BUY, ord_type=LIMIT, tif=GTC, flags=0, stp=StpMode.NONE, price=1,
        qty=1, stop_price=0, display_qty=0,
    ))  # fmt: skip
    return out


def test_matcher_pure_deterministic_and_books_agree() -> None:
    """README "## The matcher": "`Matcher.execute(command) -> events`, no clock, no I/O, so the
    same commands always give byte-identical events"; `ReferenceBook` and `FastBook` "run the
    same command flow" (same events, same ``state_hash()``); "A command for a symbol it does
    not own is `Rejected(UNKNOWN_SYMBOL)`"."""
    _claim("`Matcher.execute(command) -> events`, no clock, no I/O, so the same commands always")
    _claim("A command for a symbol it does not own is `Rejected(UNKNOWN_SYMBOL)`.")
    runs = []
    for book_cls in (FastBook, FastBook, ReferenceBook):
        matcher = Matcher([SPEC], book_cls)
        events = [b"".join(CODEC.encode_slot(e) for e in matcher.execute(c)) for c in _script()]
        runs.append((events, matcher.state_hash()))
    assert runs[0] == runs[1] == runs[2]
    last = Matcher([SPEC]).execute_all(_script())[-1]
    assert isinstance(last, Rejected) and last.code == ResultCode.UNKNOWN_SYMBOL


def test_symbol_rules_in_force_and_kept_by_snapshot() -> None:
    """README "## The matcher"/"## The router and the journal": a matcher "puts it in force
    between two commands; a matcher's snapshot keeps the rules in force with its books"; the
    rules are `tick`, `lot`, `min_qty`, `max_qty`, `band_bps`, `limit_band_bps`,
    `iceberg_parts` (``symbol_rules.RULE_FIELDS``)."""
    _claim(
        "trading rules (`tick`, `lot`, `min_qty`, `max_qty`, `band_bps`, `limit_band_bps`, "
        "`iceberg_parts`) are journaled state too"
    )
    _claim("a matcher's snapshot keeps the rules in force with its books")
    assert set(RULE_FIELDS) == {
        "tick", "lot", "min_qty", "max_qty", "band_bps", "limit_band_bps", "iceberg_parts",
    }  # fmt: skip
    assert SymbolRules.__struct_fields__[3:] == RULE_FIELDS
    matcher = Matcher([SPEC])
    matcher.execute(SymbolRules(1, 1, SYMBOL, 5, 1, 1, 100, 4, 1_000, 0))
    order = NewOrder(
        seq=2, ts_ns=2, gateway=1, session=1, client_ref=2, account=1, symbol=SYMBOL,
        order_id=2, side=BUY, ord_type=LIMIT, tif=GTC, flags=0, stp=StpMode.NONE, price=101,
        qty=1, stop_price=0, display_qty=0,
    )  # fmt: skip
    [reject] = matcher.execute(order)
    assert isinstance(reject, Rejected) and reject.code == ResultCode.PRICE_NOT_ON_TICK
    restored = Matcher.restore([SPEC], matcher.snapshot())
    assert restored.books[SYMBOL].spec.tick == 5


def test_matcher_idle_mark_numbers() -> None:
    """README "## The matcher", Recovery: "it marks its output "published through" its last
    command once idle 0.2 s, and writes the mark to `published` beside its snapshots, at most
    once a second" (procs/matcher/main.py ``MatcherShell.step(timeout_s=0.2)``;
    procs/common/published_through.py ``FILE = "published"``, ``EVERY_S = 1.0``)."""
    _claim('it marks its output "published through" its last command once idle 0.2 s, and')
    _claim("writes the mark to `published` beside its snapshots, at most once a second")
    from procs.matcher.main import MatcherShell  # noqa: PLC0415

    assert inspect.signature(MatcherShell.step).parameters["timeout_s"].default == 0.2
    assert (published_through.FILE, published_through.EVERY_S) == ("published", 1.0)
