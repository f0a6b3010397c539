"""Review 46: the matching engine against issue 3's specification and the README's matcher
rules, judged by an oracle written apart from ``procs/core``.

``ReadmeModel`` (``readme_model.py``) is a brute-force book that implements the README ("##
The matcher") and ``procs.core.book``'s docstring with none of ``procs/core``'s code: one
list of live orders, sorted on every question, and a FOK decided by running the real sweep
on a copy (not by a formula like ``_fillable``'s). Fed seeded streams of every command
(limit, market with and without a cap, stop and stop-limit, icebergs, post-only, every TIF
and STP mode, cancels and replaces mostly of live orders, mass cancels, halts, session
ends), now and then with each book swapped for the other implementation's restored snapshot
or with the symbol's rules changed under it, the reference and the fast book must agree with
it event for event: rejects by code, trades (id, price, size, maker, taker, both leaves,
aggressor), every order's end (reason, filled, remaining with hidden reserve), replaces,
triggers, and every ``BookLevel`` (side, price, visible total, order count) in place; and
the L2 and priority order after every command. They did, on over 1,500 streams of 300-400
commands run while this review went on (the seeds kept here are a few of them).

The fault found is one of cost: a mass cancel of one account reads every order resting in
the book, so an account's command rate buys other accounts' matcher time.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from procs.common.records import (
    AdminCommand,
    CancelOrder,
    MassCancel,
    NewOrder,
    Record,
    ReplaceOrder,
)
from procs.common.types import (
    AdminAction,
    OrderFlag,
    StpMode,
)
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.resting import RestingOrder
from procs.core.symbols import SymbolSpec
from tests.unit.matcher.readme_model import (
    BOTH,
    BUY,
    DAY,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    NEWEST,
    OLDEST,
    SELL,
    STOP,
    STOP_LIMIT,
    SYMBOL,
    ReadmeModel,
    priority,
    told,
)

# -- the streams --------------------------------------------------------------------------------

_TIFS = [GTC] * 4 + [IOC, FOK, DAY]
_KINDS = [LIMIT] * 6 + [MARKET, STOP, STOP_LIMIT] * 2
_STPS = [StpMode.NONE] * 3 + [NEWEST, OLDEST, BOTH]
_ADMIN = [AdminAction.HALT, AdminAction.RESUME, AdminAction.RESUME, AdminAction.END_OF_SESSION]


def _command(rng: random.Random, seq: int, book: Book, spec: SymbolSpec, mid: int) -> Record:
    """One command near ``mid`` (in ticks): mostly new orders of every kind from three
    accounts, cancels and replaces mostly of orders live in ``book`` (now and then a pending
    stop, a gone order, or someone else's), the odd mass cancel and admin action."""
    tick, lot, roll, account = spec.tick, spec.lot, rng.random(), rng.randint(1, 3)
    pool = list(book.orders.values()) + (list(book.stops.values()) if rng.random() < 0.2 else [])
    if roll < 0.6 or not pool:
        side, kind = rng.choice((BUY, SELL)), rng.choice(_KINDS)
        price = (mid + rng.randint(-6, 6)) * tick
        if kind in (MARKET, STOP):  # no cap, or a cap on either side of the book
            price = rng.choice((0, 0, (mid + rng.randint(-8, 8)) * tick))
        stop = (mid + rng.randint(-5, 5)) * tick if kind in (STOP, STOP_LIMIT) else 0
        qty = rng.randint(1, 12) * lot
        display = min(qty, rng.randint(1, 3) * lot) if rng.random() < 0.35 else 0
        flags = OrderFlag.POST_ONLY if rng.random() < 0.08 else 0
        return NewOrder(
            seq, seq, 1, account, seq, account, SYMBOL, seq, side, kind, rng.choice(_TIFS),
            flags, rng.choice(_STPS), price, qty, stop, display,
        )  # fmt: skip
    target = rng.choice(pool)
    oid, owner = target.order_id, target.account
    if rng.random() < 0.1:
        oid, owner = rng.randint(1, seq), rng.randint(1, 3)  # gone, or someone else's
    head = (seq, seq, 1, owner, seq, owner, SYMBOL, oid)
    if roll < 0.72:
        return CancelOrder(*head)
    if roll < 0.97:
        return ReplaceOrder(*head, (mid + rng.randint(-6, 6)) * tick, rng.randint(1, 14) * lot)
    if roll < 0.98:
        return MassCancel(seq, seq, 1, account, seq, rng.choice((0, account)), SYMBOL)
    return AdminCommand(seq, seq, rng.choice(_ADMIN), SYMBOL, 0)


_SPECS = {
    "plain": SymbolSpec(symbol=SYMBOL, max_qty=1000, band_bps=500),
    "tick-lot": SymbolSpec(
        symbol=SYMBOL, tick=5, lot=2, min_qty=2, max_qty=30, band_bps=300, iceberg_parts=3
    ),
    "collar": SymbolSpec(symbol=SYMBOL, max_qty=1000, band_bps=200, limit_band_bps=800),
    "tight": SymbolSpec(symbol=SYMBOL, max_qty=40, band_bps=50, iceberg_parts=6),
}
#: rules a stream may switch to (SymbolRules between two commands)
_RULES = [
    SymbolSpec(symbol=SYMBOL, max_qty=1000, band_bps=0, iceberg_parts=2),
    SymbolSpec(symbol=SYMBOL, tick=2, min_qty=2, max_qty=8, band_bps=100, limit_band_bps=300),
    SymbolSpec(symbol=SYMBOL, lot=3, min_qty=3, max_qty=60, band_bps=10_000, iceberg_parts=3),
]


@pytest.mark.parametrize(
    ("spec_name", "seed", "drift", "swaps", "rules"),
    [
        ("plain", 11, True, False, False),
        ("plain", 12, False, True, True),
        ("tick-lot", 13, True, True, False),
        ("tick-lot", 14, False, False, True),
        ("collar", 15, True, True, False),
        ("collar", 16, False, False, False),
        ("tight", 17, False, True, False),
        ("tight", 18, True, False, True),
    ],
)
def test_both_books_tell_what_an_independent_model_of_the_readme_rules_tells(
    spec_name: str, seed: int, drift: bool, swaps: bool, rules: bool
) -> None:
    """Event for event (rejects, trades, ends, replaces, triggers and every BookLevel in
    place), then the L2 and the priority order, after every command; books now and then
    restored from the other implementation's snapshot, rules now and then changed."""
    spec = _SPECS[spec_name]
    rng = random.Random(seed)
    model, ref, fast = ReadmeModel(spec), ReferenceBook(spec), FastBook(spec)
    mid = 100
    for seq in range(1, 401):
        if drift:
            mid = max(20, mid + rng.choice((-1, 0, 1)))
        if rules and rng.random() < 0.02:
            spec = rng.choice(_RULES)
            model.spec = ref.spec = fast.spec = spec
        if swaps and rng.random() < 0.03:
            ref, fast = (
                ReferenceBook.restore(spec, fast.snapshot()),
                FastBook.restore(spec, ref.snapshot()),
            )
        command = _command(rng, seq, ref, spec, mid)
        want = ref.execute(command)
        assert fast.execute(command) == want, f"fast and reference differ at {command!r}"
        assert told(want) == model.execute(command), (
            f"the books and the model differ at {command!r}"
        )
        assert ref.levels() == model.l2(), f"L2 differs after {command!r}"
        assert [o.order_id for o in ref._priority()] == [
            o.oid for o in sorted(model.book, key=priority)
        ], f"priority differs after {command!r}"
        assert fast.state_hash() == ref.state_hash()


# -- faults -------------------------------------------------------------------------------------


@contextmanager
def _reads(book: FastBook) -> Iterator[set[int]]:
    """Ids of the orders resting in ``book`` on entry whose attributes are read inside (the
    spy of ``test_fok_walk.py``)."""
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
        del RestingOrder.__getattribute__


def test_a_mass_cancel_of_one_account_reads_only_that_accounts_orders() -> None:
    """5,000 asks of account 2 over 50 levels and one bid of account 7: account 7's mass
    cancel takes its bid (the events are right) but reads all 5,000 of account 2's orders
    (``Book._remove_all`` filters ``_priority()``, every resting order). The router lets an
    account send ``max_commands_per_s`` (1,000) mass cancels a second; against 200k resting
    orders one costs ~22 ms of the matcher (FastBook, this review's host), so one account can
    hold the matcher ~20x over capacity for every other account.

    Passes since each book keeps its accounts' resting order ids (``account_orders.py``)."""
    book = FastBook(SymbolSpec(symbol=SYMBOL))
    for oid in range(1, 5001):
        book.execute(NewOrder(oid, oid, 1, 2, oid, 2, SYMBOL, oid, SELL, LIMIT, GTC, 0,
                              StpMode.NONE, 200 + oid % 50, 1, 0, 0))  # fmt: skip
    book.execute(NewOrder(5001, 5001, 1, 7, 5001, 7, SYMBOL, 5001, BUY, LIMIT, GTC, 0,
                          StpMode.NONE, 100, 3, 0, 0))  # fmt: skip
    others = {o.order_id for o in book.orders.values() if o.account != 7}
    with _reads(book) as seen:
        events = book.execute(MassCancel(5002, 5002, 1, 7, 5002, 7, SYMBOL))
    assert [(type(e).__name__, getattr(e, "order_id", None)) for e in events] == [
        ("OrderDone", 5001),
        ("BookLevel", None),
    ]
    book.validate_internal_state()
    assert not seen & others, f"read {len(seen & others)} orders of other accounts"
