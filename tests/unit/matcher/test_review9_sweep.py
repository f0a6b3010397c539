"""Review of FastBook's inline sweep (``_sweep``/``_fill``); the matcher's per-symbol order
routes, the record constructors that lost their ``*`` unpacking and ``encode_window``'s
failing-item index are in ``test_review9_routes_records.py``.

Every book scenario runs the same commands through ``ReferenceBook`` and ``FastBook``: the
events must be identical (and encode to the same bytes), ``validate_internal_state`` must hold
and ``state_hash`` agree after every command. Scenarios pin the inline sweep's inputs that the
seeded stream reaches rarely: iceberg makers refreshed mid-sweep, stops triggered by a sweep
(and triggered stops that sweep), crossing replaces of partly filled orders, tick/lot above 1,
halts, STP and non-STP takers against their own account's orders.

It found no bug: the inline sweep agreed with the reference over ~3M seeded commands on four
specs (tick/lot above 1, small iceberg_parts, a price collar), and checks that mutate
``_fill``/``_sweep``, ``Matcher.restore``'s ``_route()`` or ``encode_window``'s index all
fail here. What stays are guards of the new paths.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from procs.common.records import (
    Accepted,
    AdminCommand,
    BookLevel,
    CancelOrder,
    MassCancel,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    Replaced,
    ReplaceOrder,
    Trade,
    Triggered,
)
from procs.common.result_codes import ResultCode
from procs.common.types import (
    AdminAction,
    OrderFlag,
    StpMode,
)
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec
from tests.unit.matcher.sweep_rig import (
    BUY,
    DAY,
    EXPIRED,
    FILLED,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    SELL,
    SPEC,
    STOP,
    STOP_LIMIT,
    Feed,
    kinds,
    run,
)

# -- iceberg makers refreshed inside the inline sweep ------------------------------------------


def test_iceberg_makers_refresh_behind_their_level_during_an_inline_sweep() -> None:
    f = Feed(SPEC.symbol)
    cmds = [
        f.new(1, SELL, 100, 30, account=2, display=5),  # iceberg: 5 shown, 25 reserve
        f.new(2, SELL, 100, 7, account=3),
        f.new(3, SELL, 100, 12, account=4, display=4),  # iceberg
        f.new(4, SELL, 101, 9, account=2, display=2),
        f.new(5, BUY, 101, 55, account=5),  # GTC: sweeps 100 (49, refreshing), 6 of 101
        f.new(6, BUY, 101, 3, account=5, tif=IOC),  # the rest of 101's refreshed slices
        f.new(7, BUY, 102, 100, account=6),  # takes everything left, rests the remainder
    ]
    events, fast = run(SPEC, cmds)
    sweep = events[4]
    trades = [e for e in sweep if isinstance(e, Trade)]
    assert sum(t.qty for t in trades) == 55
    # one BookLevel per maker level touched, after every trade, then the taker's outcome
    levels = [(e.side, e.price, e.qty, e.count) for e in sweep if isinstance(e, BookLevel)]
    assert levels == [(SELL, 100, 0, 0), (SELL, 101, 2, 1)]
    assert isinstance(sweep[-1], OrderDone) and sweep[-1].reason == FILLED
    assert [e.maker_leaves for e in trades if e.maker_order_id == 4] == [7, 5, 3]
    assert fast.next_trade_id == 1 + sum(1 for evs in events for e in evs if isinstance(e, Trade))


def test_a_sweep_ending_exactly_on_a_slice_refreshes_without_a_done() -> None:
    f = Feed(SPEC.symbol)
    cmds = [
        f.new(1, SELL, 100, 20, account=2, display=5),
        f.new(2, SELL, 100, 5, account=3),
        f.new(3, BUY, 100, 5, account=4, tif=IOC),  # exactly the slice: refresh, no done
        f.new(4, BUY, 100, 10, account=4),  # order 2 then the refreshed slice of 1
        f.new(5, BUY, 100, 10, account=4, tif=IOC),  # two more slices: 1 ends FILLED
        f.new(6, BUY, 100, 1, account=4, tif=IOC),  # level gone: expires
    ]
    events, fast = run(SPEC, cmds)
    assert not [e for e in events[2] if isinstance(e, OrderDone) and e.order_id == 1]
    assert [e for e in events[4] if isinstance(e, OrderDone) and e.order_id == 1]
    assert events[5][-1] == OrderDone(
        6, 60, 2, 34, 1006, 4, SPEC.symbol, 6, EXPIRED, 0, 1
    )  # no cross: the inline IOC path
    assert not fast.orders


# -- stops after a sweep -----------------------------------------------------------------------


def test_stops_triggered_by_an_inline_sweep_and_stops_that_sweep_in_turn() -> None:
    f = Feed(SPEC.symbol)
    cmds = [
        f.new(1, SELL, 100, 5, account=2),
        f.new(2, SELL, 101, 5, account=2),
        f.new(3, SELL, 103, 5, account=2),
        f.new(4, SELL, 104, 8, account=2),
        f.new(5, SELL, 106, 8, account=2, display=3),
        # buy stops waiting above: the sweep trades at 100 and 101, the first one's own
        # trade at 103 reaches the second, which reaches the third
        f.new(10, BUY, 0, 4, account=3, ord_type=STOP, stop=101),
        f.new(11, BUY, 104, 6, account=3, ord_type=STOP_LIMIT, stop=103),
        f.new(12, BUY, 0, 10, account=4, ord_type=STOP, stop=104),
        f.new(13, SELL, 90, 3, account=4, ord_type=STOP_LIMIT, stop=90),  # not reached
        f.new(20, BUY, 101, 8, account=5),  # the inline sweep: 100 and 101, rests nothing
    ]
    events, fast = run(SPEC, cmds)
    last = events[-1]
    assert kinds(last).count("Triggered") == 3
    triggered = [e.order_id for e in last if isinstance(e, Triggered)]
    assert triggered == [10, 11, 12]
    assert set(fast.stops) == {13}


def test_a_crossing_replace_triggers_stops_and_a_triggered_stop_limit_rests() -> None:
    f = Feed(SPEC.symbol)
    cmds = [
        f.new(1, BUY, 100, 10, account=2),
        f.new(2, BUY, 99, 10, account=2),
        f.new(3, BUY, 97, 10, account=2),
        f.new(4, SELL, 105, 6, account=3),  # to be replaced down through the bids
        f.new(10, SELL, 98, 20, account=4, ord_type=STOP_LIMIT, stop=99),
        f.new(11, SELL, 0, 3, account=4, ord_type=STOP, stop=100),
        f.replace(4, 99, 25, account=3),  # sweeps 100 and 99 (partly), rests nothing more
    ]
    events, fast = run(SPEC, cmds)
    last = events[-1]
    assert isinstance(last[0], Replaced) and isinstance(last[1], BookLevel)
    assert [e.order_id for e in last if isinstance(e, Triggered)] == [10, 11]  # arrival order
    assert not fast.stops


# -- crossing replaces -------------------------------------------------------------------------


@pytest.mark.parametrize("new_total", [12, 14, 20, 40])
def test_a_crossing_replace_of_a_partly_filled_order(new_total: int) -> None:
    f = Feed(SPEC.symbol)
    cmds = [
        f.new(1, BUY, 100, 10, account=2),
        f.new(2, SELL, 100, 4, account=3, tif=IOC),  # order 1: filled 4, leaves 6
        f.new(3, SELL, 102, 3, account=3),
        f.new(4, SELL, 103, 5, account=4, display=2),
        f.new(5, SELL, 104, 50, account=4),
        f.replace(1, 103, new_total, account=2),  # open part: new_total - 4
    ]
    events, fast = run(SPEC, cmds)
    last = events[-1]
    assert last[0] == Replaced(6, 60, 4, 42, 2006, 2, SPEC.symbol, 1, 103, new_total - 4)
    done = [e for e in last if isinstance(e, OrderDone) and e.order_id == 1]
    if new_total - 4 <= 8:
        assert done and done[0].reason == FILLED and done[0].filled_qty == new_total
        assert 1 not in fast.orders
    else:
        assert not done and fast.orders[1].filled == 12 and fast.orders[1].price == 103


def test_a_crossing_replace_on_a_halted_symbol_is_refused_and_changes_nothing() -> None:
    f = Feed(SPEC.symbol)
    cmds = [
        f.new(1, BUY, 100, 10, account=2),
        f.new(2, SELL, 105, 4, account=3),
        f.admin(AdminAction.HALT),
        f.replace(1, 106, 10, account=2),  # would cross
        f.cancel(2, account=3),  # cancels still work while halted
        f.admin(AdminAction.RESUME),
        f.new(3, SELL, 105, 4, account=3),
        f.replace(1, 106, 10, account=2),
    ]
    events, _ = run(SPEC, cmds)
    assert events[3] == [Rejected(4, 40, 4, 42, 2004, 2, SPEC.symbol, 1, ResultCode.SYMBOL_HALTED)]
    assert [type(e) for e in events[-1]][:3] == [Replaced, BookLevel, Trade]


def test_crossing_replaces_of_resting_orders_that_were_stops() -> None:
    """A triggered stop-limit that rested keeps ord_type STOP_LIMIT: its crossing replace is
    a plain limit taker."""
    f = Feed(SPEC.symbol)
    cmds = [
        f.new(1, SELL, 100, 2, account=2),
        f.new(2, BUY, 101, 10, account=3, ord_type=STOP_LIMIT, stop=100),
        f.new(3, BUY, 100, 2, account=4),  # trades at 100: triggers 2, which rests at 101
        f.new(4, SELL, 103, 3, account=2),
        f.new(5, SELL, 104, 3, account=2),
        f.replace(2, 104, 10, account=3),
    ]
    _, fast = run(SPEC, cmds)
    assert fast.orders[2].ord_type == STOP_LIMIT and fast.orders[2].leaves == 4


# -- tick and lot above 1 ----------------------------------------------------------------------


def test_an_inline_sweep_with_tick_and_lot_above_one() -> None:
    spec = SymbolSpec(symbol=8, tick=25, lot=10, min_qty=20, max_qty=500, iceberg_parts=4)
    f = Feed(spec.symbol)
    cmds = [
        f.new(1, SELL, 1000, 50, account=2, display=20),
        f.new(2, SELL, 1025, 30, account=3),
        f.new(3, SELL, 1050, 40, account=2),
        f.new(4, BUY, 1040, 70, account=4),  # off tick: rejected
        f.new(5, BUY, 1050, 75, account=4),  # off lot: rejected
        f.new(6, BUY, 1050, 90, account=4, tif=IOC),  # sweeps 1000 and 1025, part of 1050
        f.new(7, BUY, 1000, 40, account=5),
        f.new(8, SELL, 900, 60, account=6),
        f.replace(7, 1075, 30, account=5),  # partly filled 40 → total at or below: FILLED
        f.replace(3, 975, 500, account=2),  # crosses nothing: bids are gone
    ]
    events, _ = run(spec, cmds)
    assert events[3][0].code == ResultCode.PRICE_NOT_ON_TICK  # type: ignore[attr-defined]
    assert events[4][0].code == ResultCode.QTY_NOT_ON_LOT  # type: ignore[attr-defined]


# -- self-trade prevention against the inline path ---------------------------------------------


@pytest.mark.parametrize("stp", list(StpMode))
def test_stp_and_non_stp_takers_against_makers_of_their_own_account(stp: StpMode) -> None:
    f = Feed(SPEC.symbol)
    cmds = [
        f.new(1, SELL, 100, 5, account=7),
        f.new(2, SELL, 100, 5, account=8),
        f.new(3, SELL, 101, 5, account=7, display=2, stp=StpMode.CANCEL_BOTH),
        f.new(4, SELL, 101, 5, account=8),
        f.new(5, BUY, 101, 12, account=7, stp=stp),  # new order
        f.new(6, BUY, 95, 3, account=7, stp=stp),
        f.replace(6, 102, 30, account=7),  # crossing replace of an order with ``stp``
        f.new(7, SELL, 99, 4, account=7),  # non-STP taker trading with its own account
    ]
    events, _ = run(SPEC, cmds)
    if stp == StpMode.NONE:
        assert any(
            isinstance(e, Trade) and e.maker_account == e.taker_account == 7 for e in events[4]
        )


# -- the inline sweep's bookkeeping ------------------------------------------------------------


def test_trade_ids_last_price_and_events_of_a_multi_level_sweep() -> None:
    f = Feed(SPEC.symbol)
    cmds = [
        f.new(1, BUY, 100, 3, account=2),
        f.new(2, BUY, 99, 4, account=3),
        f.new(3, BUY, 99, 2, account=4),
        f.new(4, BUY, 97, 5, account=2),
        f.new(5, SELL, 98, 20, account=9),  # 100, 99 (two), rests 11 at 98
    ]
    events, fast = run(SPEC, cmds)
    seq, ts, sym = 5, 50, SPEC.symbol
    assert events[-1] == [
        Accepted(seq, ts, 2, 39, 1005, 9, sym, 5, SELL, 98, 20),
        Trade(seq, ts, 1, sym, 100, 3, SELL, 1, 2, 2, 0, 5, 9, 2, 17),
        OrderDone(seq, ts, 2, 32, 1001, 2, sym, 1, FILLED, 3, 0),
        Trade(seq, ts, 2, sym, 99, 4, SELL, 2, 3, 2, 0, 5, 9, 2, 13),
        OrderDone(seq, ts, 2, 33, 1002, 3, sym, 2, FILLED, 4, 0),
        Trade(seq, ts, 3, sym, 99, 2, SELL, 3, 4, 2, 0, 5, 9, 2, 11),
        OrderDone(seq, ts, 2, 34, 1003, 4, sym, 3, FILLED, 2, 0),
        BookLevel(seq, ts, sym, BUY, 100, 0, 0),
        BookLevel(seq, ts, sym, BUY, 99, 0, 0),
        BookLevel(seq, ts, sym, SELL, 98, 11, 1),
    ]
    assert (fast.next_trade_id, fast.last_price) == (4, 99)
    assert fast.orders[5].filled == 9 and fast.orders[5].leaves == 11


def test_a_sweep_through_many_levels_with_empty_levels_kept_listed() -> None:
    """Hundreds of levels, most emptied by cancels (kept listed, some swept away), then
    takers that walk through them."""
    f = Feed(SPEC.symbol)
    cmds: list[Record] = []
    for k in range(1, 1401):
        cmds.append(f.new(k, SELL, 1000 + k, 1 + k % 3, account=1 + k % 4))
    cmds += [f.cancel(k, account=1 + k % 4) for k in range(1, 1401) if k % 5]
    cmds.append(f.new(5000, BUY, 1000 + 700, 10_000 // 20, account=9))
    cmds += [f.new(5000 + k, SELL, 2000 + 3 * k, 2, account=2) for k in range(1, 50)]
    cmds.append(f.replace(5000, 2100, 1000, account=9))
    cmds.append(f.new(6000, BUY, 2400, 1000, account=3, tif=IOC))
    run(SPEC, cmds, every=50)  # the build-up's checks walk 1,400 levels each


# -- seeded differential runs across specs -----------------------------------------------------


DIFF_SPECS = [
    SymbolSpec(symbol=7, tick=5, lot=10, min_qty=20, max_qty=150, band_bps=200, iceberg_parts=3),
    SymbolSpec(symbol=7, tick=1, lot=1, min_qty=1, max_qty=100, band_bps=50, iceberg_parts=2),
    SymbolSpec(symbol=7, tick=2, lot=3, min_qty=3, max_qty=60, band_bps=1000),
    SymbolSpec(symbol=7, tick=1, lot=1, min_qty=1, max_qty=100, band_bps=100, limit_band_bps=300),
]


def stream(rng: random.Random, spec: SymbolSpec, count: int, book: Book) -> Iterator[Record]:
    """Commands on ``spec``'s grid (a few off it), biased to crossing takers and replaces."""
    t, lot = spec.tick, spec.lot
    lo, hi = -(-spec.min_qty // lot), min(20, spec.max_qty // lot)  # in lots, mostly valid
    mid, nid = 1000, 1
    sent: list[tuple[int, int]] = []
    for seq in range(1, count + 1):
        mid = max(50, mid + rng.choice((-1, 0, 0, 1)))
        acct = rng.randint(1, 4)
        head = (seq, seq * 10, 1, acct, seq, acct, spec.symbol)
        r = rng.random()
        if r < 0.55 or not sent:
            side = rng.choice((BUY, SELL))
            off = rng.randint(-8, 10)
            price = (mid - off if side == BUY else mid + off) * t
            ord_type = rng.choice([LIMIT] * 12 + [MARKET, STOP, STOP_LIMIT] * 2)
            stop = (mid + rng.randint(-5, 5)) * t if ord_type in (STOP, STOP_LIMIT) else 0
            if ord_type in (MARKET, STOP):
                price = 0
            qty = rng.randint(lo, hi) * lot + (1 if rng.random() < 0.01 else 0)
            display = rng.randint(1, max(1, qty // lot)) * lot if rng.random() < 0.2 else 0
            flags = OrderFlag.POST_ONLY if rng.random() < 0.05 else 0
            tif = rng.choice([GTC] * 5 + [IOC, FOK, DAY])
            stp = rng.choice([StpMode.NONE] * 6 + [StpMode(1), StpMode(2), StpMode(3)])
            price += 1 if rng.random() < 0.02 else 0
            yield NewOrder(*head, nid, side, ord_type, tif, flags, stp, price, qty, stop, display)
            sent.append((nid, acct))
            nid += 1
        elif r < 0.75:
            oid, owner = _target(rng, book, sent)
            yield CancelOrder(seq, seq * 10, 1, owner, seq, owner, spec.symbol, oid)
        elif r < 0.993:
            oid, owner = _target(rng, book, sent)
            price = (mid + rng.randint(-10, 10)) * t
            qty = rng.randint(lo, hi + 3) * lot + (1 if rng.random() < 0.01 else 0)
            yield ReplaceOrder(seq, seq * 10, 1, owner, seq, owner, spec.symbol, oid, price, qty)
        elif r < 0.995:
            yield MassCancel(seq, seq * 10, 1, acct, seq, rng.choice((0, acct)), 0)
        else:  # halts are short: most admin commands resume
            action = rng.choice([AdminAction.HALT] + [AdminAction.RESUME] * 4
                                + [AdminAction.END_OF_SESSION])  # fmt: skip
            yield AdminCommand(seq, seq * 10, action, rng.choice((0, spec.symbol)), 0)


def _target(rng: random.Random, book: Book, sent: list[tuple[int, int]]) -> tuple[int, int]:
    if book.stops and rng.random() < 0.05:
        o = book.stops[rng.choice(list(book.stops))]
        return o.order_id, o.account
    if book.orders and rng.random() < 0.9:
        o = book.orders[rng.choice(list(book.orders))]
        return o.order_id, o.account
    return rng.choice(sent)


@pytest.mark.parametrize("spec_index", range(len(DIFF_SPECS)))
def test_seeded_streams_on_several_specs_match_the_reference(spec_index: int) -> None:
    spec = DIFF_SPECS[spec_index]
    for seed in range(6):
        ref, fast = ReferenceBook(spec), FastBook(spec)
        rng = random.Random(1000 * spec_index + seed)
        for i, cmd in enumerate(stream(rng, spec, 700, ref)):
            want, got = ref.execute(cmd), fast.execute(cmd)
            assert got == want, f"seed {seed} command {i} {cmd!r}: {want!r} != {got!r}"
            fast.validate_internal_state()
            if i % 25 == 0:
                assert fast.state_hash() == ref.state_hash(), f"seed {seed} at {i}"
        assert fast.state_hash() == ref.state_hash()
