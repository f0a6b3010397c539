"""Review 36: the matching engine where its features meet: stop cascades (order, prices, each
stop-market's protection band), stops around a sweep, a halt and a mass cancel, icebergs
under self-trade prevention, replace and FOK, post-only against hidden reserve.

Two layers. Scenarios written by hand pin what the README and ``procs.core.book``'s docstring
prescribe. A hypothesis state machine mixes every feature on a narrow price range (so stops
trigger and icebergs refill often), feeds each command to ``ReferenceBook`` and ``FastBook``
(identical events, byte for byte; valid internal state; equal hashes; now and then each
restored from the other's snapshot) and judges the events against an oracle that knows only
the documented rules: gapless trade ids at the makers' prices, every lot accounted for, the
L2 the ``BookLevel`` events tell equal to the book's, stops entering in the documented order
once reached, each market or stop-market taker inside its band (from the best opposite price
at its own entry) having swept all it could there, FOK all or nothing, post-only never taking.
No command sequence broke one of them; what is kept pins the combinations checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from procs.common.records import (
    Accepted,
    BookLevel,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    Replaced,
    Trade,
    Triggered,
)
from procs.common.result_codes import ResultCode
from procs.common.types import AdminAction, DoneReason, OrderFlag, Side, StpMode
from procs.common.types import TimeInForce as Tif
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec
from tests.unit.matcher import sweep_rig as rig
from tests.unit.matcher.sweep_rig import ENC, SPEC, Feed, kinds

BUY, SELL, GTC, DAY, IOC, FOK = rig.BUY, rig.SELL, rig.GTC, rig.DAY, rig.IOC, rig.FOK
MARKET, STOP, STOP_LIMIT = rig.MARKET, rig.STOP, rig.STOP_LIMIT

SELF_TRADE, EXPIRED, FILLED = DoneReason.SELF_TRADE, DoneReason.EXPIRED, DoneReason.FILLED
NEWEST, OLDEST, BOTH = StpMode.CANCEL_NEWEST, StpMode.CANCEL_OLDEST, StpMode.CANCEL_BOTH


# -- the oracle: what the documented rules say of one command's events -------------------------


def _band_limit(spec: SymbolSpec, side: Side, best: int, cap: int) -> int:
    """The furthest price a protected ``side`` taker may trade at, from the README's rule."""
    band = best * spec.band_bps // 10_000
    if side == BUY:
        limit = (best + band) // spec.tick * spec.tick
        return min(limit, cap) if cap else limit
    limit = max(spec.tick, -(-(best - band) // spec.tick) * spec.tick)
    return max(limit, cap) if cap else limit


def _reaches(side: Side, stop_price: int, price: int) -> bool:
    return price >= stop_price if side == BUY else price <= stop_price


@dataclass
class _Stop:
    side: Side
    stop_price: int
    price: int  # the limit, or a stop-market's cap (0: none)
    market: bool
    ordinal: int  # stops enter in the order they were accepted


@dataclass
class Oracle:
    """Each order's total, open size, limit and STP mode, the pending stops, the next trade id
    and the L2 view, all kept from the events alone; ``check`` judges one command's events
    against the documented rules, then against the book it left."""

    spec: SymbolSpec
    total: dict[int, int] = field(default_factory=dict)
    open: dict[int, int] = field(default_factory=dict)
    limit: dict[int, int] = field(default_factory=dict)
    stp: dict[int, StpMode] = field(default_factory=dict)
    fok: set[int] = field(default_factory=set)  # FOK orders: all or nothing
    post_only: set[int] = field(default_factory=set)  # never take
    stops: dict[int, _Stop] = field(default_factory=dict)
    l2: dict[tuple[Side, int], int] = field(default_factory=dict)
    next_trade_id: int = 1
    last_price: int = 0
    accepted_stops: int = 0

    def best(self, side: Side) -> int | None:
        prices = [p for (s, p), qty in self.l2.items() if s == side and qty]
        return (max(prices) if side == BUY else min(prices)) if prices else None

    def check(self, cmd: Record, events: list[Record], book: Book) -> None:
        prices = [self.last_price] if self.last_price else []
        queue: list[int] = []  # stops reached, not yet entered
        taker: dict[str, int] = {}  # the protected taker being watched

        def reach() -> None:
            found = [
                (stop.ordinal, oid)
                for oid, stop in self.stops.items()
                if oid not in queue and any(_reaches(stop.side, stop.stop_price, p) for p in prices)
            ]
            queue.extend(oid for _, oid in sorted(found))

        def watch(oid: int, side: Side, cap: int, trigger: int = 0) -> None:  # review 42
            best = self.best(SELL if side == BUY else BUY)
            if best is not None:
                limit = _band_limit(self.spec, side, trigger or best, cap)
                taker.update(oid=oid, side=side, limit=limit)

        for event in events:
            if isinstance(event, Accepted):
                assert isinstance(cmd, NewOrder)
                oid = event.order_id
                self.total[oid] = self.open[oid] = event.qty
                self.limit[oid], self.stp[oid] = event.price, cmd.stp
                if cmd.tif == FOK:
                    self.fok.add(oid)
                if cmd.flags & OrderFlag.POST_ONLY:
                    self.post_only.add(oid)
                if cmd.ord_type in (STOP, STOP_LIMIT):
                    self.accepted_stops += 1
                    self.stops[oid] = _Stop(
                        cmd.side, cmd.stop_price, cmd.price, cmd.ord_type == STOP,
                        self.accepted_stops,
                    )  # fmt: skip
                elif cmd.ord_type == MARKET:
                    watch(oid, cmd.side, cmd.price)
            elif isinstance(event, Replaced):
                filled = self.total[event.order_id] - self.open[event.order_id]
                self.total[event.order_id] = filled + event.qty
                self.open[event.order_id] = event.qty
                self.limit[event.order_id] = event.price
            elif isinstance(event, Trade):
                self._trade(event, taker)
                prices.append(event.price)
            elif isinstance(event, OrderDone):
                oid = event.order_id
                assert self.open.pop(oid) == event.leaves_qty, f"{event}: leaves"
                assert event.filled_qty + event.leaves_qty == self.total[oid], f"{event}: lots"
                self.stops.pop(oid, None)  # a pending stop cancelled or expired
                if oid in self.fok:
                    assert event.reason == FILLED or not event.filled_qty, f"{event}: FOK part"
                if taker.get("oid") == oid:
                    if event.reason == EXPIRED and event.filled_qty and event.leaves_qty:
                        self._swept(taker)
                    taker.clear()
            elif isinstance(event, BookLevel):
                self.l2[(event.side, event.price)] = event.qty
                assert (event.qty == 0) == (event.count == 0), f"{event}"
            elif isinstance(event, Triggered):
                assert not taker, "a stop entered before the taker before it was done"
                reach()
                assert queue, f"stop {event.order_id} entered, but no trade reached it"
                assert queue.pop(0) == event.order_id, f"stop {event.order_id} out of order"
                stop = self.stops.pop(event.order_id)
                entering = 0 if stop.market else stop.price  # a stop-market's: 0 (review 42)
                assert (event.stop_price, event.price) == (stop.stop_price, entering)
                self.limit[event.order_id] = stop.price
                if stop.market:
                    watch(event.order_id, stop.side, stop.price, stop.stop_price)
        reach()
        assert not queue, f"stops {queue} were reached but never entered"
        self._against(book)

    def _trade(self, event: Trade, taker: dict[str, int]) -> None:
        assert event.trade_id == self.next_trade_id, f"trade id gap at {event}"
        self.next_trade_id += 1
        assert event.price == self.limit[event.maker_order_id], f"{event}: not the maker's price"
        assert event.taker_order_id not in self.post_only, f"{event}: a post-only order took"
        if event.maker_account == event.taker_account:
            assert self.stp[event.taker_order_id] == StpMode.NONE, f"{event}: a self-trade"
        for oid, leaves in (
            (event.maker_order_id, event.maker_leaves),
            (event.taker_order_id, event.taker_leaves),
        ):
            self.open[oid] -= event.qty
            assert self.open[oid] == leaves, f"{event}: order {oid} has {self.open[oid]} left"
        if taker:
            lim = taker["limit"]
            inside = event.price <= lim if event.aggressor == BUY else event.price >= lim
            assert inside, f"{event} beyond the protection limit {lim}"
        self.last_price = event.price

    def _swept(self, taker: dict[str, int]) -> None:
        """A protected taker that expired part-filled left nothing inside its limit."""
        side, lim = Side(taker["side"]), taker["limit"]
        best = self.best(SELL if side == BUY else BUY)
        crossed = best is not None and (best <= lim if side == BUY else best >= lim)
        assert not crossed, f"taker {taker['oid']} expired with {best} inside its limit {lim}"

    def _against(self, book: Book) -> None:
        levels = {key: qty for key, (qty, _) in book.levels().items()}
        assert {k: v for k, v in self.l2.items() if v} == levels, "BookLevels tell another L2"
        resting = {o.order_id: o.leaves + o.reserve for o in book.orders.values()}
        resting.update({o.order_id: o.leaves for o in book.stops.values()})
        assert resting == self.open, "an order's lots are unaccounted for"
        assert set(book.stops) == set(self.stops), "pending stops differ"
        assert (book.next_trade_id, book.last_price) == (self.next_trade_id, self.last_price)


class Pair:
    """The reference and the fast book fed alike, judged by the oracle after every command."""

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.ref: Book = ReferenceBook(spec)
        self.fast: Book = FastBook(spec)
        self.oracle = Oracle(spec)

    def step(self, cmd: Record) -> list[Record]:
        want = self.ref.execute(cmd)
        got = self.fast.execute(cmd)
        assert got == want, f"{cmd!r}:\nreference {want!r}\nfast      {got!r}"
        assert [ENC.encode(e) for e in got] == [ENC.encode(e) for e in want]
        self.ref.validate_internal_state()
        self.fast.validate_internal_state()
        _check_stop_index(self.ref)
        _check_stop_index(self.fast)
        assert self.ref.state_hash() == self.fast.state_hash(), f"state differs after {cmd!r}"
        self.oracle.check(cmd, want, self.ref)
        return want

    def swap(self) -> None:
        """Each book replaced by the other implementation's restored snapshot."""
        ref_snap, fast_snap = self.ref.snapshot(), self.fast.snapshot()
        self.ref = ReferenceBook.restore(self.spec, fast_snap)
        self.fast = FastBook.restore(self.spec, ref_snap)
        assert self.ref.state_hash() == self.fast.state_hash()


def _check_stop_index(book: Book) -> None:
    """The trigger index lists exactly the pending stops, none reached by the last price."""
    index = sorted(oid for _, _, oid in (*book._buy_stops, *book._sell_stops))
    assert index == sorted(book.stops), f"stop index {index} != stops {sorted(book.stops)}"
    for order in book.stops.values():
        assert not (book.last_price and _reaches(order.side, order.stop_price, book.last_price))


def _play(*commands: Record) -> tuple[list[list[Record]], Pair]:
    pair = Pair(SPEC)
    return [pair.step(cmd) for cmd in commands], pair


def _trades(events: list[Record]) -> list[tuple[int, int, int, int, int]]:
    """(trade id, price, qty, maker, taker) of each trade."""
    return [(e.trade_id, e.price, e.qty, e.maker_order_id, e.taker_order_id) for e in events
            if isinstance(e, Trade)]  # fmt: skip


def _done(events: list[Record]) -> dict[int, tuple[DoneReason, int, int]]:
    return {
        e.order_id: (e.reason, e.filled_qty, e.leaves_qty)
        for e in events
        if isinstance(e, OrderDone)
    }


def _codes(events: list[Record]) -> list[ResultCode]:
    return [e.code for e in events if isinstance(e, Rejected)]


def _triggered(events: list[Record]) -> list[int]:
    return [e.order_id for e in events if isinstance(e, Triggered)]


# -- stops: cascades and sweeps ----------------------------------------------------------------


def test_a_cascade_enters_in_order_each_stop_market_banded_from_its_trigger() -> None:
    """Asks 100x1, 101x2, 102x2, 110x5. A buy at 100 reaches two buy stops at 100 (entered in
    arrival order); the first's trade at 101 reaches the stop at 101, which queues behind the
    second. Each stop-market's band (5%) is from its trigger price (review 42): 100 -> 105 for
    the first two (the second stops short of 110 and expires 1), 101 -> 106 for the third,
    which finds only 110 left and expires whole. Trade ids gapless, at the maker's price."""
    f = Feed(SPEC.symbol)
    out, _ = _play(
        f.new(1, SELL, 100, 1, account=9),
        f.new(2, SELL, 101, 2, account=9),
        f.new(3, SELL, 102, 2, account=9),
        f.new(4, SELL, 110, 5, account=9),
        f.new(10, BUY, 0, 2, ord_type=STOP, stop=100, account=2),
        f.new(11, BUY, 0, 3, ord_type=STOP, stop=101, account=3),
        f.new(12, BUY, 0, 3, ord_type=STOP, stop=100, account=4),
        f.new(20, BUY, 100, 1, account=5),
    )
    last = out[-1]
    assert _triggered(last) == [10, 12, 11]
    assert _trades(last) == [
        (1, 100, 1, 1, 20),
        (2, 101, 2, 2, 10),
        (3, 102, 2, 3, 12),
    ]
    assert _done(last)[12] == (EXPIRED, 2, 1)
    assert _done(last)[11] == (EXPIRED, 0, 3)


@pytest.mark.parametrize(("asks", "stop_fill"), [(2, None), (3, 102)])
def test_a_stop_reached_mid_sweep_waits_for_the_taker_to_finish(
    asks: int, stop_fill: int | None
) -> None:
    """A buy for 2 sweeps asks at 100 and 101; its first trade reaches a buy stop at 100, but
    the stop enters only after the taker is done: it never takes the 101 ahead of it. With
    nothing left it expires unfilled; with a 102 left it takes that."""
    f = Feed(SPEC.symbol)
    sells = [f.new(1 + i, SELL, 100 + i, 1, account=9) for i in range(asks)]
    out, _ = _play(
        *sells,
        f.new(10, BUY, 0, 1, ord_type=STOP, stop=100, account=2),
        f.new(20, BUY, 101, 2, account=5),
    )
    last = out[-1]
    taker_done = next(
        i for i, e in enumerate(last) if isinstance(e, OrderDone) and e.order_id == 20
    )
    assert kinds(last).index("Triggered") == taker_done + 1
    assert _trades(last)[:2] == [(1, 100, 1, 1, 20), (2, 101, 1, 2, 20)]
    if stop_fill is None:
        assert _done(last)[10] == (EXPIRED, 0, 1)
    else:
        assert _trades(last)[2:] == [(3, stop_fill, 1, 3, 10)]
        assert _done(last)[10] == (FILLED, 1, 0)


def test_mass_cancel_takes_an_accounts_pending_stops_and_a_later_trade_triggers_only_others() -> (
    None
):
    """Account 1's resting order and its two pending stops go in one mass cancel (the order,
    then the stops in arrival order, then the level); a trade at 100 afterwards triggers only
    account 2's stop. A halt in between refuses orders; the stops wait through it."""
    f = Feed(SPEC.symbol)
    out, _ = _play(
        f.new(1, SELL, 100, 5, account=9),
        f.new(2, BUY, 90, 1, account=1),
        f.new(3, BUY, 0, 1, ord_type=STOP, stop=100, account=1),
        f.new(4, BUY, 105, 1, ord_type=STOP_LIMIT, stop=100, account=1),
        f.new(5, BUY, 0, 1, ord_type=STOP, stop=100, account=2),
        f.mass(1),
        f.admin(AdminAction.HALT),
        f.new(6, BUY, 100, 1, account=3),
        f.admin(AdminAction.RESUME),
        f.new(7, BUY, 100, 1, account=3),
    )
    assert [(e.order_id, e.reason) for e in out[5] if isinstance(e, OrderDone)] == [
        (2, DoneReason.MASS_CANCELLED),
        (3, DoneReason.MASS_CANCELLED),
        (4, DoneReason.MASS_CANCELLED),
    ]
    assert kinds(out[5])[-1] == "BookLevel"
    assert kinds(out[7]) == ["Rejected"] and _triggered(out[8]) == []
    assert _triggered(out[9]) == [5]
    assert _trades(out[9]) == [(1, 100, 1, 1, 7), (2, 100, 1, 1, 5)]


# -- icebergs: self-trade prevention, replace, FOK, post-only ----------------------------------


@pytest.mark.parametrize(
    ("stp", "iceberg_done", "taker_done", "ask_left"),
    [
        (NEWEST, None, (SELF_TRADE, 2, 3), 2),
        (OLDEST, (SELF_TRADE, 2, 4), None, 0),
        (BOTH, (SELF_TRADE, 2, 4), (SELF_TRADE, 2, 3), 0),
    ],
)
def test_a_taker_meets_its_own_icebergs_refreshed_slice(
    stp: StpMode,
    iceberg_done: tuple[DoneReason, int, int] | None,
    taker_done: tuple[DoneReason, int, int] | None,
    ask_left: int,
) -> None:
    """Asks at 100: account 1's iceberg (6, showing 2), then 2 of account 2. A buy of 2 takes
    the first slice; the refill queues behind account 2's order. Account 1 then buys 5 under
    each STP mode: it trades the 2 ahead, then meets its own refreshed slice: NEWEST ends the
    taker and leaves the iceberg (2 shown, 2 hidden); OLDEST cancels the whole iceberg and the
    taker rests its 3; BOTH does both."""
    f = Feed(SPEC.symbol)
    out, _ = _play(
        f.new(1, SELL, 100, 6, display=2, account=1),
        f.new(2, SELL, 100, 2, account=2),
        f.new(3, BUY, 100, 2, account=3),
        f.new(4, BUY, 100, 5, account=1, stp=stp),
    )
    last = out[-1]
    assert _trades(last) == [(2, 100, 2, 2, 4)]
    assert _done(last).get(1) == iceberg_done
    assert _done(last).get(4) == taker_done
    sells = [e for e in last if isinstance(e, BookLevel) and e.side == SELL]
    assert [(e.qty, e.count) for e in sells] == [(ask_left, 1 if ask_left else 0)]


@pytest.mark.parametrize(("total", "first_maker"), [(9, 1), (6, 1), (3, 1), (12, 2), (10, 2)])
def test_an_iceberg_replace_keeps_its_place_only_when_it_does_not_grow(
    total: int, first_maker: int
) -> None:
    """An iceberg of 9 showing 3 (1 of it filled) ahead of 3 more at the same price: a replace
    to a total no larger than its 9 keeps its place (the reserve given up first); a larger one
    goes to the back, behind the other order."""
    f = Feed(SPEC.symbol)
    out, pair = _play(
        f.new(1, SELL, 100, 9, display=3, account=1),
        f.new(2, SELL, 100, 3, account=2),
        f.new(3, BUY, 100, 1, account=3),
        f.replace(1, 100, total, account=1),
        f.new(4, BUY, 100, 1, account=3),
    )
    replaced = out[3][0]
    assert isinstance(replaced, Replaced) and replaced.qty == total - 1
    assert _trades(out[4])[0][3] == first_maker
    iceberg, left = pair.ref.orders[1], total - 1 - (first_maker == 1)
    assert iceberg.leaves <= 3 and iceberg.leaves + iceberg.reserve == left


@pytest.mark.parametrize(
    ("stp", "qty", "fills"),
    [
        (NEWEST, 2, True),
        (NEWEST, 3, False),
        (BOTH, 3, False),
        (OLDEST, 10, True),
        (OLDEST, 11, False),
    ],
)
def test_a_fok_counts_reserve_but_not_what_its_own_orders_cut_off(
    stp: StpMode, qty: int, fills: bool
) -> None:
    """Asks at 100: another account's iceberg (8, showing 2), the taker's own 3, then 2 more.
    Under NEWEST or BOTH the taker ends at its own order, which the iceberg's refill queues
    behind: only the shown 2 count. Under OLDEST its own order goes and the iceberg's reserve
    counts: 8 + 2. A FOK that cannot fill changes nothing."""
    f = Feed(SPEC.symbol)
    out, pair = _play(
        f.new(1, SELL, 100, 8, display=2, account=2),
        f.new(2, SELL, 100, 3, account=1),
        f.new(3, SELL, 100, 2, account=3),
        f.new(4, BUY, 100, qty, account=1, stp=stp, tif=FOK),
    )
    if fills:
        assert _done(out[-1])[4] == (FILLED, qty, 0)
    else:
        assert kinds(out[-1]) == ["Accepted", "OrderDone"]
        assert _done(out[-1])[4] == (EXPIRED, 0, qty)
        assert set(pair.ref.orders) == {1, 2, 3}


def test_post_only_is_refused_against_an_icebergs_shown_slice_and_its_refill() -> None:
    """A post-only buy at an iceberg's price would take (its slice shows), also once a taker
    has eaten a slice and the refill shows; below it rests, and a replace of it onto the
    iceberg's price is refused with the order unchanged."""
    f = Feed(SPEC.symbol)
    post = OrderFlag.POST_ONLY
    out, pair = _play(
        f.new(1, SELL, 100, 10, display=1, account=1),
        f.new(2, BUY, 100, 1, account=2, flags=post),
        f.new(3, BUY, 100, 1, account=3),
        f.new(4, BUY, 100, 1, account=2, flags=post),
        f.new(5, BUY, 99, 1, account=2, flags=post),
        f.replace(5, 100, 1, account=2),
    )
    codes = _codes(out[1]) + _codes(out[3]) + _codes(out[5])
    assert codes == [ResultCode.POST_ONLY_WOULD_TAKE] * 3
    assert pair.ref.orders[5].price == 99 and pair.ref.orders[1].reserve == 8


# -- market protection around halts and session ends -------------------------------------------


def test_market_protection_with_one_side_empty_across_halt_and_session_end() -> None:
    """No bids: a market sell is refused (NO_LIQUIDITY), a triggered sell stop-market
    expires. Halted, a market buy is refused; resumed, and with the DAY ask at 100 expired by
    the session end, a market buy is banded from the GTC 110 (5%: up to 115) and a market buy
    capped at 105 expires unfilled."""
    f = Feed(SPEC.symbol)
    out, _ = _play(
        f.new(1, SELL, 100, 1, account=9, tif=DAY),
        f.new(2, SELL, 110, 5, account=9),
        f.new(3, SELL, 200, 5, account=9),
        f.new(4, SELL, 0, 1, account=2, ord_type=MARKET),
        f.new(5, SELL, 0, 1, account=2, ord_type=STOP, stop=100),
        f.new(6, BUY, 100, 1, account=3),  # trades at 100: the sell stop enters, no bids
        f.admin(AdminAction.HALT),
        f.new(7, BUY, 0, 1, account=3, ord_type=MARKET),
        f.admin(AdminAction.RESUME),
        f.admin(AdminAction.END_OF_SESSION),
        f.new(8, BUY, 0, 7, account=3, ord_type=MARKET, tif=IOC),
        f.new(9, BUY, 105, 1, account=3, ord_type=MARKET),
    )
    assert _codes(out[3]) == [ResultCode.NO_LIQUIDITY]
    assert _triggered(out[5]) == [5] and _done(out[5])[5] == (EXPIRED, 0, 1)
    assert _codes(out[7]) == [ResultCode.SYMBOL_HALTED]
    assert _trades(out[10]) == [(2, 110, 5, 2, 8)] and _done(out[10])[8] == (EXPIRED, 5, 2)
    assert _trades(out[11]) == [] and _done(out[11])[9] == (EXPIRED, 0, 1)


# -- everything at once: a state machine over both books, judged by the oracle -----------------

STATE_SPEC = SymbolSpec(
    symbol=SPEC.symbol, tick=1, lot=1, min_qty=1, max_qty=1000, band_bps=300, iceberg_parts=4
)
_prices = st.integers(96, 104)
_qtys = st.integers(1, 9)
_accounts = st.integers(1, 3)
_stps = st.sampled_from(list(StpMode))
_sides = st.sampled_from([BUY, SELL])


class Cascades(RuleBasedStateMachine):
    """Limit orders (icebergs, post-only, every TIF), market orders, stops and stop-limits,
    any STP mode, three accounts, nine prices; ladders of five quotes (depth past the bands);
    cancels, replaces, mass cancels, halts, resumes, session ends, implementations swapped."""

    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair(STATE_SPEC)
        self.feed = Feed(STATE_SPEC.symbol)
        self.sent: list[tuple[int, int]] = []  # (order id, account) of every order sent

    def _new(self, account: int, side: Side, price: int, qty: int, **kw: object) -> None:
        self.sent.append((oid := len(self.sent) + 1, account))
        self.pair.step(self.feed.new(oid, side, price, qty, account=account, **kw))  # type: ignore[arg-type]

    @rule(
        account=_accounts, side=_sides, price=_prices, qty=_qtys, stp=_stps,
        tif=st.sampled_from([GTC, GTC, DAY, IOC, FOK]), display=st.integers(0, 4),
        post_only=st.booleans(),
    )  # fmt: skip
    def limit(
        self, account: int, side: Side, price: int, qty: int, stp: StpMode,
        tif: Tif, display: int, post_only: bool,
    ) -> None:  # fmt: skip
        flags = OrderFlag.POST_ONLY if post_only and display < 2 else 0
        self._new(account, side, price, qty, stp=stp, tif=tif, display=display, flags=flags)

    @rule(
        account=_accounts, side=_sides, qty=_qtys, stp=_stps, cap=st.sampled_from([0, 0, 99, 101]),
        tif=st.sampled_from([IOC, FOK, GTC]),
    )  # fmt: skip
    def market(self, account: int, side: Side, qty: int, stp: StpMode, cap: int, tif: Tif) -> None:
        self._new(account, side, cap, qty, ord_type=MARKET, stp=stp, tif=tif)

    @rule(
        account=_accounts, side=_sides, stop=_prices, qty=_qtys, stp=_stps,
        limit=st.sampled_from([0, 0, 97, 100, 103]), tif=st.sampled_from([GTC, DAY, IOC, FOK]),
        display=st.sampled_from([0, 0, 2]),
    )  # fmt: skip
    def stop(
        self, account: int, side: Side, stop: int, qty: int, stp: StpMode, limit: int,
        tif: Tif, display: int,
    ) -> None:  # fmt: skip
        kind, display = (STOP_LIMIT, display) if limit else (STOP, 0)
        kw = {"ord_type": kind, "stop": stop, "stp": stp, "tif": tif, "display": display}
        self._new(account, side, limit, qty, **kw)

    @rule(side=_sides, start=_prices, qty=st.integers(1, 3))
    def ladder(self, side: Side, start: int, qty: int) -> None:
        for step in range(5):
            self._new(3, side, start + step if side == SELL else start - step, qty)

    @precondition(lambda self: self.sent)
    @rule(pick=st.integers(0, 10**6), other=st.booleans())
    def cancel(self, pick: int, other: bool) -> None:
        oid, account = self.sent[pick % len(self.sent)]
        self.pair.step(self.feed.cancel(oid, account=account % 3 + 1 if other else account))

    @precondition(lambda self: self.sent)
    @rule(pick=st.integers(0, 10**6), price=_prices, total=st.integers(1, 14))
    def replace(self, pick: int, price: int, total: int) -> None:
        oid, account = self.sent[pick % len(self.sent)]
        self.pair.step(self.feed.replace(oid, price, total, account=account))

    @rule(account=st.integers(0, 3))
    def mass_cancel(self, account: int) -> None:
        self.pair.step(self.feed.mass(account))

    @rule(action=st.sampled_from([AdminAction.HALT, AdminAction.RESUME, AdminAction.RESUME,
                                  AdminAction.END_OF_SESSION]))  # fmt: skip
    def admin(self, action: AdminAction) -> None:
        self.pair.step(self.feed.admin(action))

    @rule()
    def swap(self) -> None:
        self.pair.swap()


Cascades.TestCase.settings = settings(
    max_examples=300, stateful_step_count=80, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
test_features_meeting_in_both_books_keep_every_documented_rule = Cascades.TestCase
