"""Review of FastBook's inline sweep (``_sweep``/``_fill``), the matcher's per-symbol order
routes, the record constructors that lost their ``*`` unpacking, and ``encode_window``'s
failing-item index.

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

import itertools
import random
from collections.abc import Iterator, Sequence
from typing import cast

import msgspec
import pytest

from config.schema import AssetConfig, SymbolConfig
from procs.common.records import (
    Accepted,
    AdminCommand,
    BookLevel,
    CancelOrder,
    MassCancel,
    NewOrder,
    OrderDone,
    Record,
    RecordCodec,
    Rejected,
    Replaced,
    ReplaceOrder,
    Trade,
    Triggered,
)
from procs.common.result_codes import ResultCode
from procs.common.types import (
    AdminAction,
    DoneReason,
    OrderFlag,
    OrdType,
    Side,
    StpMode,
    TimeInForce,
)
from procs.core.book import Book
from procs.core.engine import Matcher
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec
from procs.gateway.fix import FixMessage
from procs.gateway.instruments import Instruments
from procs.gateway.orders import OrderEntry
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_params import new_order
from procs.gateway.session import Session
from shm.errors import EncodeError

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
LIMIT, MARKET, STOP, STOP_LIMIT = OrdType.LIMIT, OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT
FILLED, EXPIRED = DoneReason.FILLED, DoneReason.EXPIRED
NO_STP = StpMode.NONE
SPEC = SymbolSpec(symbol=5, tick=1, lot=1, min_qty=1, max_qty=1000, band_bps=500)
ENC = msgspec.msgpack.Encoder()


class Feed:
    """Builds commands with increasing seq for one symbol."""

    def __init__(self, symbol: int) -> None:
        self.symbol = symbol
        self.seq = itertools.count(1)

    def new(
        self,
        oid: int,
        side: Side,
        price: int,
        qty: int,
        *,
        account: int = 1,
        tif: TimeInForce = GTC,
        ord_type: OrdType = LIMIT,
        stp: StpMode = StpMode.NONE,
        stop: int = 0,
        display: int = 0,
        flags: int = 0,
        symbol: int | None = None,
    ) -> NewOrder:
        s = next(self.seq)
        sym = self.symbol if symbol is None else symbol
        return NewOrder(
            s, s * 10, 2, 30 + account, 1000 + s, account, sym, oid,
            side, ord_type, tif, flags, stp, price, qty, stop, display,
        )  # fmt: skip

    def replace(
        self, oid: int, price: int, qty: int, *, account: int = 1, symbol: int | None = None
    ) -> ReplaceOrder:
        s = next(self.seq)
        sym = self.symbol if symbol is None else symbol
        return ReplaceOrder(s, s * 10, 4, 40 + account, 2000 + s, account, sym, oid, price, qty)

    def cancel(self, oid: int, *, account: int = 1, symbol: int | None = None) -> CancelOrder:
        s = next(self.seq)
        sym = self.symbol if symbol is None else symbol
        return CancelOrder(s, s * 10, 4, 40 + account, 3000 + s, account, sym, oid)

    def admin(self, action: AdminAction, symbol: int | None = None) -> AdminCommand:
        s = next(self.seq)
        return AdminCommand(s, s * 10, action, self.symbol if symbol is None else symbol, s)

    def mass(self, account: int = 0) -> MassCancel:
        s = next(self.seq)
        return MassCancel(s, s * 10, 2, 9, 4000 + s, account, self.symbol)


def run(spec: SymbolSpec, commands: Sequence[Record]) -> tuple[list[list[Record]], FastBook]:
    """Each command through both books: identical events (and bytes), valid state, equal
    hashes after every one. Returns the fast book's events per command, and the fast book."""
    ref, fast = ReferenceBook(spec), FastBook(spec)
    out: list[list[Record]] = []
    for i, cmd in enumerate(commands):
        want = ref.execute(cmd)
        got = fast.execute(cmd)
        assert got == want, f"command {i} {cmd!r}:\nreference {want!r}\nfast      {got!r}"
        assert [ENC.encode(e) for e in got] == [ENC.encode(e) for e in want]
        ref.validate_internal_state()
        fast.validate_internal_state()
        assert fast.state_hash() == ref.state_hash(), f"state differs after command {i}"
        assert (fast.next_trade_id, fast.last_price, fast.next_arrival) == (
            ref.next_trade_id,
            ref.last_price,
            ref.next_arrival,
        )
        out.append(got)
    return out, fast


def kinds(events: list[Record]) -> list[str]:
    return [type(e).__name__ for e in events]


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
    run(SPEC, cmds)


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


# -- the matcher: routes by symbol -------------------------------------------------------------


def test_restored_matcher_routes_to_its_restored_books_and_keeps_matching() -> None:
    specs = [SymbolSpec(symbol=1), SymbolSpec(symbol=2, tick=5, lot=2, min_qty=2)]
    rng = random.Random(7)
    seq = itertools.count(1)

    def cmd(symbol: int, oid: int, side: Side, price: int, qty: int, acct: int) -> NewOrder:
        s = next(seq)
        head = (s, s, 1, acct, s, acct, symbol, oid)
        return NewOrder(*head, side, LIMIT, GTC, 0, NO_STP, price, qty, 0, 0)

    before = [
        cmd(1, 1, SELL, 100, 10, 2), cmd(1, 2, SELL, 101, 10, 3),
        cmd(2, 3, BUY, 500, 10, 2), cmd(2, 4, BUY, 495, 20, 4),
    ]  # fmt: skip
    fast, ref = Matcher(specs), Matcher(specs, ReferenceBook)
    assert fast.execute_all(before) == ref.execute_all(before)
    restored = Matcher.restore(specs, fast.snapshot())
    restored_ref = Matcher.restore(specs, ref.snapshot(), ReferenceBook)
    for symbol, handlers in restored._routes.items():
        for handler in handlers.values():
            assert handler.__self__ is restored.books[symbol]  # type: ignore[attr-defined]
    s = next(seq)
    after: list[Record] = [
        CancelOrder(s, s, 1, 3, s, 3, 1, 2),
        cmd(1, 10, BUY, 101, 15, 5),  # crosses the restored ask at 100
        cmd(2, 11, SELL, 495, 24, 6),  # crosses both restored bids
    ]
    for _ in range(200):  # more traffic on the restored books
        s = next(seq)
        symbol = rng.choice((1, 2))
        side = rng.choice((BUY, SELL))
        price = (100 + rng.randint(-3, 3)) if symbol == 1 else (500 + 5 * rng.randint(-3, 3))
        qty = rng.randint(1, 10) * (1 if symbol == 1 else 2)
        tif = rng.choice((GTC, IOC))
        acct = rng.randint(1, 3)
        head = (s, s, 1, 1, s, acct, symbol, 100 + s)
        after.append(NewOrder(*head, side, LIMIT, tif, 0, StpMode.NONE, price, qty, 0, 0))
    got = restored.execute_all(after)
    assert got == restored_ref.execute_all(after)
    assert got == fast.execute_all(after)  # the matcher never restored agrees
    assert isinstance(got[0], OrderDone) and got[0].reason == DoneReason.CANCELLED
    assert restored.state_hash() == restored_ref.state_hash() == fast.state_hash()
    for book in restored.books.values():
        book.validate_internal_state()


def test_restore_leaves_no_route_to_the_empty_books_it_started_from() -> None:
    specs = [SymbolSpec(symbol=1)]
    m = Matcher(specs)
    m.execute(NewOrder(1, 1, 1, 1, 1, 1, 1, 1, SELL, LIMIT, GTC, 0, NO_STP, 100, 5, 0, 0))
    restored = Matcher.restore(specs, m.snapshot())
    events = restored.execute(
        NewOrder(2, 2, 1, 2, 2, 2, 1, 2, BUY, LIMIT, IOC, 0, NO_STP, 100, 5, 0, 0)
    )
    assert [type(e) for e in events] == [Accepted, Trade, OrderDone, BookLevel, OrderDone]
    assert not restored.books[1].orders and restored.books[1].next_trade_id == 2
    assert m.books[1].orders  # the original is untouched


@pytest.mark.parametrize("book_cls", [FastBook, ReferenceBook])
def test_matcher_answers_unknown_symbols_and_skips_replays(book_cls: type[Book]) -> None:
    m = Matcher([SymbolSpec(symbol=1), SymbolSpec(symbol=3)], book_cls)
    commands: list[Record] = [
        NewOrder(5, 50, 2, 8, 77, 9, 2, 0, BUY, LIMIT, GTC, 0, NO_STP, 100, 1, 0, 0),
        CancelOrder(6, 60, 2, 8, 78, 9, 2, 4),
        ReplaceOrder(7, 70, 2, 8, 79, 9, 2, 4, 100, 2),
    ]
    for cmd in commands:
        (rejected,) = m.execute(cmd)
        assert rejected == Rejected(
            cmd.seq, cmd.ts_ns, 2, 8, cmd.client_ref, 9, 2, cmd.order_id,  # type: ignore[attr-defined]
            ResultCode.UNKNOWN_SYMBOL,
        )  # fmt: skip
    assert m.last_seq == 7
    assert (
        m.execute(NewOrder(7, 1, 1, 1, 1, 1, 1, 1, BUY, LIMIT, GTC, 0, NO_STP, 100, 1, 0, 0)) == []
    )
    ok = m.execute(NewOrder(8, 1, 1, 1, 1, 1, 3, 1, BUY, LIMIT, GTC, 0, NO_STP, 100, 1, 0, 0))
    assert [type(e) for e in ok] == [Accepted, BookLevel]
    assert m.books[3].orders and not m.books[1].orders


def test_matcher_differential_with_snapshots_mid_stream() -> None:
    """Two symbols through a FastBook matcher and a ReferenceBook matcher, each restored from
    its own snapshot every 300 commands: the same events throughout."""
    specs = [SymbolSpec(symbol=1, max_qty=100), SymbolSpec(symbol=2, max_qty=100, band_bps=100)]
    rng = random.Random(99)
    fast, ref = Matcher(specs), Matcher(specs, ReferenceBook)
    nid = 0
    for s in range(1, 1501):
        symbol = rng.choice((1, 2))
        acct = rng.randint(1, 4)
        book = ref.books[symbol]
        r = rng.random()
        cmd: Record
        if r < 0.6 or not book.orders:
            nid += 1
            side = rng.choice((BUY, SELL))
            price = 100 + rng.randint(-6, 6)
            stp = rng.choice([StpMode.NONE] * 4 + [StpMode.CANCEL_OLDEST])
            display = rng.choice((0, 0, 0, 2))
            tif = rng.choice((GTC, GTC, IOC, DAY))
            if display and tif == IOC:
                tif = GTC
            cmd = NewOrder(s, s, 1, acct, s, acct, symbol, nid, side, LIMIT, tif, 0, stp, price,
                           rng.randint(1, 12), 0, display)  # fmt: skip
        elif r < 0.8:
            o = book.orders[rng.choice(list(book.orders))]
            cmd = ReplaceOrder(s, s, 1, o.account, s, o.account, symbol, o.order_id,
                               100 + rng.randint(-6, 6), rng.randint(1, 15))  # fmt: skip
        else:
            o = book.orders[rng.choice(list(book.orders))]
            cmd = CancelOrder(s, s, 1, o.account, s, o.account, symbol, o.order_id)
        assert fast.execute(cmd) == ref.execute(cmd), f"command {s}"
        if s % 300 == 0:
            fast = Matcher.restore(specs, fast.snapshot())
            ref = Matcher.restore(specs, ref.snapshot(), ReferenceBook)
            assert fast.state_hash() == ref.state_hash()
    assert fast.state_hash() == ref.state_hash()


# -- encode_window names the failing item ------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 1, 3])
@pytest.mark.parametrize("start", [0, 1])
def test_encode_window_names_the_item_that_failed_and_writes_those_before(
    bad: int, start: int
) -> None:
    codec = RecordCodec()
    slot = codec.slot_size
    items: list[Record] = [BookLevel(k + 1, 10, 1, BUY, 100 + k, 5, 1) for k in range(4)]
    items[bad] = BookLevel(9, 10, 1, BUY, 100, 2**64, 1)  # does not encode
    buf = bytearray(slot * (len(items) + start))
    with pytest.raises(EncodeError, match=rf"item {bad} of the window: .*qty") as info:
        codec.encode_window(buf, start * slot, items, 3)
    assert info.value.published == bad
    view = memoryview(buf)
    assert codec.decode_window(view, start * slot, bad) == items[:bad]
    oversized = BookLevel(9, 10, 1, BUY, 100, 5, 2**40)  # a U32 past its bound: too long
    items[bad] = oversized
    try:
        codec.encode_window(bytearray(slot * (len(items) + start)), start * slot, items, 3)
    except EncodeError as exc:
        assert exc.published == bad and f"item {bad} of the window" in str(exc)


# -- records built without * unpacking ---------------------------------------------------------


def test_book_records_put_every_value_in_its_field() -> None:
    f = Feed(SPEC.symbol)
    cmds = [
        f.new(1, SELL, 100, 5, account=2),
        f.new(2, BUY, 100, 8, account=3),  # partly fills, rests 3
        f.cancel(2, account=3),
        f.new(3, BUY, 90, 0, account=3),  # a reject
    ]
    events, _ = run(SPEC, cmds)
    accepted = events[1][0]
    assert isinstance(accepted, Accepted)
    assert msgspec.structs.asdict(accepted) == {
        "seq": 2, "ts_ns": 20, "gateway": 2, "session": 33, "client_ref": 1002, "account": 3,
        "symbol": SPEC.symbol, "order_id": 2, "side": BUY, "price": 100, "qty": 8,
    }  # fmt: skip
    trade = events[1][1]
    assert isinstance(trade, Trade)
    assert msgspec.structs.asdict(trade) == {
        "seq": 2, "ts_ns": 20, "trade_id": 1, "symbol": SPEC.symbol, "price": 100, "qty": 5,
        "aggressor": BUY, "maker_order_id": 1, "maker_account": 2, "maker_gateway": 2,
        "maker_leaves": 0, "taker_order_id": 2, "taker_account": 3, "taker_gateway": 2,
        "taker_leaves": 3,
    }  # fmt: skip
    maker_done = events[1][2]
    assert msgspec.structs.asdict(maker_done) == {
        "seq": 2, "ts_ns": 20, "gateway": 2, "session": 32, "client_ref": 1001, "account": 2,
        "symbol": SPEC.symbol, "order_id": 1, "reason": FILLED, "filled_qty": 5,
        "leaves_qty": 0,
    }  # fmt: skip
    cancelled = events[2][0]
    assert msgspec.structs.asdict(cancelled) == {
        "seq": 3, "ts_ns": 30, "gateway": 4, "session": 43, "client_ref": 3003, "account": 3,
        "symbol": SPEC.symbol, "order_id": 2, "reason": DoneReason.CANCELLED,
        "filled_qty": 5, "leaves_qty": 3,
    }  # fmt: skip
    (rejected,) = events[3]
    assert msgspec.structs.asdict(rejected) == {
        "seq": 4, "ts_ns": 40, "gateway": 2, "session": 33, "client_ref": 1004, "account": 3,
        "symbol": SPEC.symbol, "order_id": 3, "code": ResultCode.QTY_OUT_OF_RANGE,
    }  # fmt: skip


def test_gateways_build_new_and_replace_records_with_every_value_in_its_field() -> None:
    """The REST and FIX gateways' NewOrder/ReplaceOrder, now built from listed arguments."""
    sym = SymbolConfig(name="BTC-USD", id=1, price_decimals=2, qty_decimals=2, base="BTC")
    out: list[Record] = []
    refs = itertools.count(100)
    assets = [AssetConfig(name="USD", id=1, decimals=4), AssetConfig(name="BTC", id=2, decimals=2)]
    rest = RestOrders(3, Instruments([sym]), assets, out, lambda: next(refs))
    params = {"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT", "price": "101.50",
              "quantity": "2.25", "icebergQty": "0.75"}  # fmt: skip
    ref = rest.new_order(new_order(params, rest.instruments), 11, 6, 555)
    (cmd,) = [c for c in out if isinstance(c, NewOrder)]
    assert msgspec.structs.asdict(cmd) == {
        "seq": 0, "ts_ns": 555, "gateway": 3, "session": 6, "client_ref": ref, "account": 11,
        "symbol": 1, "order_id": 0, "side": SELL, "ord_type": LIMIT, "tif": GTC, "flags": 0,
        "stp": cmd.stp, "price": 10_150, "qty": 225, "stop_price": 0, "display_qty": 75,
    }  # fmt: skip
    rest.process(Accepted(40, 0, 3, 6, ref, 11, 1, 77, SELL, 10_150, 225))
    rest.end_of_batch()
    (live,) = rest.open_orders(11, None)
    amend_ref = rest.amend(11, 6, live, 10_200, 300)
    replace = out[-1]
    assert isinstance(replace, ReplaceOrder)
    fields = msgspec.structs.asdict(replace)
    del fields["ts_ns"]
    assert fields == {
        "seq": 0, "gateway": 3, "session": 6, "client_ref": amend_ref, "account": 11,
        "symbol": 1, "order_id": 77, "price": 10_200, "order_qty": 300,
    }  # fmt: skip

    class Conn:
        session_id, account, user, closed = 5, 7, None, False

        def send(self, msg_type: bytes, body: bytes, now_ns: int) -> None:
            pass

    entry = OrderEntry(9, Instruments([sym]), cancel_on_disconnect=False)
    conn = cast(Session, Conn())
    entry.on_logon(conn, 1)
    tags = [35, 11, 55, 54, 60, 40, 38, 44, 59]
    values = [b"D", b"c1", b"BTC-USD", b"2", b"20260101-00:00:00", b"2", b"1.5", b"100.25", b"1"]
    entry.on_message(conn, FixMessage(b"", tags, values), 2)
    (new,) = [c for c in entry.outgoing if isinstance(c, NewOrder)]
    assert msgspec.structs.asdict(new) == {
        "seq": 0, "ts_ns": 2, "gateway": 9, "session": 5, "client_ref": new.client_ref,
        "account": 7, "symbol": 1, "order_id": 0, "side": SELL, "ord_type": LIMIT, "tif": GTC,
        "flags": 0, "stp": StpMode.NONE, "price": 10_025, "qty": 150, "stop_price": 0,
        "display_qty": 0,
    }  # fmt: skip
    (order,) = entry.live.values()
    order.order_id = 21  # acknowledged
    order.status = b"0"
    tags = [35, 11, 41, 55, 54, 60, 40, 38, 44, 59]
    values = [b"G", b"c2", b"c1", b"BTC-USD", b"2", b"20260101-00:00:01", b"2", b"2", b"99.75",
              b"1"]  # fmt: skip
    entry.on_message(conn, FixMessage(b"", tags, values), 3)
    (rep,) = [c for c in entry.outgoing if isinstance(c, ReplaceOrder)]
    assert msgspec.structs.asdict(rep) == {
        "seq": 0, "ts_ns": 3, "gateway": 9, "session": 5, "client_ref": rep.client_ref,
        "account": 7, "symbol": 1, "order_id": 21, "price": 9_975, "order_qty": 200,
    }  # fmt: skip
