"""Review 276: the matching core's semantics where features combine, on both books.

Reviewed: ``procs/core/book.py`` (``_new``, ``_take``, ``_fillable``, ``_enter``,
``_replace``, ``_replace_to_filled``, ``_remove_all``, ``_trigger_stops``),
``procs/core/fast_book.py`` (``_fast_new``, ``_fast_replace``, ``_sweep``, ``_fill``,
``_match``, ``_self_trade``, ``_refresh``, ``_crossing_levels``), ``book_side.py``,
``reference_book.py``, ``order_checks.py`` (``_check_order``, ``_protection``,
``_dead_on_arrival``), ``account_orders.py``, ``engine.py``; against README's "## The
matcher" and the spec of the brief (price-time priority, protected market orders, TIFs,
post-only, stops by the last trade, icebergs, STP, cancel-replace, mass cancel, halts;
trades at the maker's price, gapless trade ids, done with remaining size, level changes
that add up to the visible book). Earlier reviews' tests (3, 5, 8, 9, 27, 36, 42, 46, 51,
55, 92, 115, 148, 186, 227, 238) are not repeated.

Rig: ``sweep_rig.run`` (both books, identical events and bytes, valid internal state and
equal state hashes after every command), plus ``_run`` below, which rebuilds the L2 book
from the ``BookLevel`` events alone and compares it with the book's own depth after every
command.

Faults found (xfail, strict): none. Each combination of the brief was put to both books and
reasoned from the spec rather than from one book against the other; none broke a rule.

Sound:

1. Stops reached inside one sweep: those the taker's trades reach together enter in arrival
   order, one a triggered stop's own trades reach queues behind them (the cascade is
   deterministic), each triggered stop-market banded from its stop; a triggered stop-limit
   under ``CANCEL_OLDEST`` removes its account's iceberg whole (``OrderDone(SELF_TRADE)``
   with slice and reserve as remaining) and goes on at the next level; trade ids gapless
   across the cascade; the L2 the events tell is the book's after every command
   (``test_a_cascade_through_an_iceberg_cancels_its_own_iceberg_whole_and_stays_in_order``).
2. A keep-place replace of an iceberg whose slice is part filled gives up reserve first,
   keeps its place ahead of a later order at its price, and its next slice then goes behind
   that order (``test_an_iceberg_cut_in_place_keeps_its_turn_and_its_refill_loses_it``).
3. Checked by hand and found as documented, not kept: a FOK under each STP mode against
   [another's iceberg, an own order] at one level (fills only from the visible part ahead
   of the own order, killed otherwise with nothing changed); a post-only iceberg; a
   replace of a pending stop (``INVALID_ORDER``); halts keep stops waiting (nothing trades,
   so none triggers); END_OF_SESSION expires DAY icebergs with their reserve and pending
   DAY stops after resting orders; a mass cancel of one account takes its triggered
   (resting) and pending stops; a market order under ``CANCEL_OLDEST`` whose own order is
   the best opposite price is banded from that price (the README's "from the best opposite
   price"), so it may stop short of liquidity the band from the next price would reach.
"""

from __future__ import annotations

from collections.abc import Sequence

from procs.common.records import BookLevel, OrderDone, Record, Trade, Triggered
from procs.common.types import DoneReason, StpMode
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from tests.unit.matcher.sweep_rig import (
    BUY,
    SELL,
    SPEC,
    STOP,
    STOP_LIMIT,
    Feed,
    run,
)

OLDEST = StpMode.CANCEL_OLDEST


def _run(commands: Sequence[Record]) -> tuple[list[list[Record]], FastBook]:
    """``sweep_rig.run``, then the L2 told by ``BookLevel`` events checked against each
    book's depth after every command."""
    out, fast = run(SPEC, commands)
    for book in (ReferenceBook(SPEC), FastBook(SPEC)):
        told: dict[tuple[int, int], tuple[int, int]] = {}
        for i, cmd in enumerate(commands):
            for e in book.execute(cmd):
                if isinstance(e, BookLevel):
                    told[(e.side, e.price)] = (e.qty, e.count)
            shown = {key: v for key, v in told.items() if v != (0, 0)}
            assert shown == book.levels(), f"{type(book).__name__}: L2 differs after {i}"
    return out, fast


def test_a_cascade_through_an_iceberg_cancels_its_own_iceberg_whole_and_stays_in_order() -> None:
    f = Feed(SPEC.symbol)
    commands = [
        f.new(1, SELL, 100, 1, account=9),
        f.new(2, BUY, 100, 1, account=8),  # the last trade: 100
        f.new(3, SELL, 101, 5, account=2),
        f.new(4, SELL, 102, 10, account=3, display=2),  # an iceberg of account 3
        f.new(5, SELL, 104, 10, account=2),
        f.new(6, BUY, 99, 10, account=4),
        f.new(10, BUY, 0, 3, account=5, ord_type=STOP, stop=101),
        # arrives before 12, but only 10's trades at 102 reach it: it queues behind 12
        f.new(11, BUY, 104, 6, account=3, ord_type=STOP_LIMIT, stop=102, stp=OLDEST),
        f.new(12, BUY, 0, 2, account=6, ord_type=STOP, stop=101),
        f.new(20, BUY, 101, 5, account=7),  # takes 101: reaches 10 and 12 together
    ]
    out, book = _run(commands)
    events = out[-1]
    assert [e.order_id for e in events if isinstance(e, Triggered)] == [10, 12, 11]
    trades = [(e.trade_id, e.price, e.qty, e.maker_order_id, e.taker_order_id)
              for e in events if isinstance(e, Trade)]  # fmt: skip
    assert trades == [
        (2, 101, 5, 3, 20),
        (3, 102, 2, 4, 10),
        (4, 102, 1, 4, 10),
        (5, 102, 1, 4, 12),
        (6, 102, 1, 4, 12),
        (7, 104, 6, 5, 11),
    ]
    # account 3's iceberg, met by its own stop-limit: cancelled with its slice and reserve
    stp = [e for e in events if isinstance(e, OrderDone) and e.order_id == 4]
    assert [(e.reason, e.filled_qty, e.leaves_qty) for e in stp] == [(DoneReason.SELF_TRADE, 5, 5)]
    assert book.levels() == {(BUY, 99): (10, 1), (SELL, 104): (4, 1)}
    assert book.next_trade_id == 8 and book.last_price == 104 and not book.stops


def test_an_iceberg_cut_in_place_keeps_its_turn_and_its_refill_loses_it() -> None:
    f = Feed(SPEC.symbol)
    commands = [
        f.new(1, SELL, 100, 20, account=2, display=5),
        f.new(2, BUY, 100, 3, account=3),  # the slice: 2 left, reserve 15
        f.new(3, SELL, 100, 4, account=4),  # behind the iceberg
        f.replace(1, 100, 12, account=2),  # total 12: 9 open, the slice kept whole
        f.new(4, BUY, 100, 4, account=5),  # the slice first, then 3, then the refill
    ]
    out, book = _run(commands)
    assert out[3][0].qty == 9  # type: ignore[attr-defined]
    assert out[3][1] == BookLevel(4, 40, SPEC.symbol, SELL, 100, 6, 2)
    trades = [(e.maker_order_id, e.qty, e.maker_leaves) for e in out[4] if isinstance(e, Trade)]
    assert trades == [(1, 2, 7), (3, 2, 2)]
    assert book.levels() == {(SELL, 100): (7, 2)}  # 3's 2 ahead, then the refill's 5
    assert [o.order_id for o in book._priority()] == [3, 1]
