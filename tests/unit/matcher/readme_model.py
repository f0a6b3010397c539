"""An oracle of the matcher's rules written apart from ``procs/core``: a brute-force book
that implements the README ("## The matcher") and ``procs.core.book``'s docstring with none
of its code (one list of live orders, sorted on every question; a FOK decided by running the
real sweep on a copy). Review 46's test (``test_review46_spec``) feeds it and both books the
same streams and compares every event.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
from procs.common.result_codes import ResultCode as Code
from procs.common.types import (
    AdminAction,
    DoneReason,
    OrderFlag,
    OrdType,
    Side,
    StpMode,
    TimeInForce,
)
from procs.core.symbols import SymbolSpec

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
LIMIT, MARKET, STOP, STOP_LIMIT = OrdType.LIMIT, OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT
NEWEST, OLDEST, BOTH = StpMode.CANCEL_NEWEST, StpMode.CANCEL_OLDEST, StpMode.CANCEL_BOTH
SYMBOL = 5


@dataclass
class _Order:
    oid: int
    account: int
    side: Side
    price: int  # limit; a market taker's protection limit once it enters
    leaves: int  # visible
    reserve: int  # an iceberg's hidden rest
    display: int
    filled: int
    arrival: int
    tif: TimeInForce
    stp: StpMode
    post_only: bool
    kind: OrdType
    stop: int


def _crosses(side: Side, price: int, resting: int) -> bool:
    return price >= resting if side == BUY else price <= resting


def priority(o: _Order) -> tuple[int, int, int]:
    return (o.side, o.price if o.side == SELL else -o.price, o.arrival)


Event = tuple[Any, ...]


class ReadmeModel:
    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.book: list[_Order] = []
        self.stops: list[_Order] = []
        self.trade_id, self.arrival, self.last, self.halted = 1, 0, 0, False
        self.events: list[Event] = []
        self.touched: list[tuple[Side, int]] = []
        self.self_traded = False

    # what the book says
    def opposite(self, side: Side) -> list[_Order]:
        return sorted((o for o in self.book if o.side != side), key=priority)

    def level(self, side: Side, price: int) -> None:
        at = [o for o in self.book if o.side == side and o.price == price]
        self.events.append(("level", side, price, sum(o.leaves for o in at), len(at)))

    def l2(self) -> dict[tuple[Side, int], tuple[int, int]]:
        out: dict[tuple[Side, int], tuple[int, int]] = {}
        for o in self.book:
            qty, count = out.get((o.side, o.price), (0, 0))
            out[(o.side, o.price)] = (qty + o.leaves, count + 1)
        return out

    def done(self, o: _Order, reason: DoneReason) -> None:
        self.events.append(("done", o.oid, reason, o.filled, o.leaves + o.reserve))

    # checks
    def limit_problem(self, price: int, around: int = 0) -> Code | None:
        """``around``: the price the collar is around (a waiting stop-limit's stop; 0: the
        last trade's)."""
        spec = self.spec
        if price <= 0:
            return Code.INVALID_PRICE
        if price % spec.tick:
            return Code.PRICE_NOT_ON_TICK
        around = around or self.last
        band = around * spec.limit_band_bps // 10_000
        if spec.limit_band_bps and around and abs(price - around) > band:
            return Code.PRICE_OUT_OF_BAND
        return None

    def dead_stop(self, c: NewOrder) -> Code | None:
        """A stop-market triggering on arrival that its protection from its stop (and its
        cap) keeps from the best opposite price, or that finds no opposite at all."""
        opposite = self.opposite(c.side)
        if not opposite:
            return Code.NO_LIQUIDITY
        band, tick = c.stop_price * self.spec.band_bps // 10_000, self.spec.tick
        best = opposite[0].price
        if c.side == BUY:  # never short of the reference, one off a raised tick (review 231)
            limit = max(c.stop_price, (c.stop_price + band) // tick * tick)
            limit = min(limit, c.price) if c.price else limit
            return Code.PRICE_OUT_OF_BAND if best > limit else None
        limit = min(c.stop_price, max(tick, -(-(c.stop_price - band) // tick) * tick))
        limit = max(limit, c.price) if c.price else limit
        return Code.PRICE_OUT_OF_BAND if best < limit else None

    def reached(self, side: Side, stop: int) -> bool:
        return bool(self.last) and (stop <= self.last if side == BUY else stop >= self.last)

    def qty_problem(self, qty: int) -> Code | None:
        if qty % self.spec.lot:
            return Code.QTY_NOT_ON_LOT
        if not self.spec.min_qty <= qty <= self.spec.max_qty:
            return Code.QTY_OUT_OF_RANGE
        return None

    def new_problem(self, c: NewOrder) -> Code | None:
        spec = self.spec
        if self.halted:
            return Code.SYMBOL_HALTED
        market = c.ord_type in (MARKET, STOP)
        problem = Code.PRICE_NOT_ON_TICK if market and c.price % spec.tick else None
        if problem is None and c.ord_type in (STOP, STOP_LIMIT):
            if c.stop_price <= 0:
                problem = Code.INVALID_PRICE
            elif c.stop_price % spec.tick:
                problem = Code.PRICE_NOT_ON_TICK
        elif problem is None and c.stop_price:
            problem = Code.INVALID_ORDER
        if problem is None and not market:  # a stop-limit that waits: collared at its stop
            waits = (
                c.ord_type == STOP_LIMIT and self.last and not self.reached(c.side, c.stop_price)
            )
            problem = self.limit_problem(c.price, c.stop_price if waits else 0)
        if problem is None and c.ord_type == STOP and self.reached(c.side, c.stop_price):
            problem = self.dead_stop(c)  # it would enter and expire unfilled: refused
        problem = problem or self.qty_problem(c.qty)
        if problem:
            return problem
        rests = c.tif in (GTC, DAY) and not market
        if c.flags & OrderFlag.POST_ONLY:
            crossing = any(_crosses(c.side, c.price, o.price) for o in self.opposite(c.side))
            if not rests:
                return Code.INVALID_ORDER
            if c.ord_type == LIMIT and crossing:
                return Code.POST_ONLY_WOULD_TAKE
            if c.ord_type == STOP_LIMIT:
                return Code.INVALID_ORDER
        if c.display_qty:
            if not rests:
                return Code.INVALID_ORDER
            if c.display_qty % spec.lot:
                return Code.QTY_NOT_ON_LOT
            if not spec.min_qty <= c.display_qty <= c.qty:
                return Code.QTY_OUT_OF_RANGE
            if -(-c.qty // c.display_qty) > spec.iceberg_parts:
                return Code.INVALID_QTY
        if c.ord_type == MARKET and not self.opposite(c.side):
            return Code.NO_LIQUIDITY
        return None

    # commands
    def execute(self, c: Record) -> list[Event]:
        self.events = []
        if isinstance(c, NewOrder):
            self.new(c)
        elif isinstance(c, CancelOrder):
            self.cancel(c)
        elif isinstance(c, ReplaceOrder):
            self.replace(c)
        elif isinstance(c, MassCancel):
            self.remove_all(lambda o: c.account in (0, o.account), DoneReason.MASS_CANCELLED)
        elif isinstance(c, AdminCommand):
            if c.action == AdminAction.HALT:
                self.halted = True
            elif c.action == AdminAction.RESUME:
                self.halted = False
            else:
                self.remove_all(lambda o: o.tif == DAY, DoneReason.EXPIRED)
        return self.events

    def new(self, c: NewOrder) -> None:
        problem = self.new_problem(c)
        if problem is not None:
            self.events.append(("rejected", problem))
            return
        self.events.append(("accepted", c.order_id))
        o = _Order(
            c.order_id, c.account, c.side, c.price, c.qty, 0, c.display_qty, 0, 0, c.tif,
            c.stp, bool(c.flags & OrderFlag.POST_ONLY), c.ord_type, c.stop_price,
        )  # fmt: skip
        if c.ord_type in (STOP, STOP_LIMIT):
            o.arrival, self.arrival = self.arrival, self.arrival + 1
            self.stops.append(o)
        else:
            self.take(o, triggered=False)
        self.trigger()

    def take(self, o: _Order, *, triggered: bool) -> None:
        if o.kind in (MARKET, STOP):
            opposite = self.opposite(o.side)
            if not opposite:
                self.done(o, DoneReason.EXPIRED)
                return
            reference = o.stop if triggered else opposite[0].price  # README: trigger / best
            band, tick = reference * self.spec.band_bps // 10_000, self.spec.tick
            if o.side == BUY:  # never short of the reference (review 231)
                limit = max(reference, (reference + band) // tick * tick)
                o.price = min(limit, o.price) if o.price else limit
            else:
                limit = min(reference, max(tick, -(-(reference - band) // tick) * tick))
                o.price = max(limit, o.price) if o.price else limit
        if o.tif == FOK:  # what the sweep will really take: run it on a copy
            saved = copy.deepcopy((self.book, self.trade_id, self.last, self.arrival))
            told, trial = len(self.events), copy.deepcopy(o)
            self.match(trial)
            self.book, self.trade_id, self.last, self.arrival = saved
            del self.events[told:]
            if trial.leaves:
                self.done(o, DoneReason.EXPIRED)
                return
        self.enter(o)

    def match(self, taker: _Order) -> None:
        self.touched, self.self_traded = [], False
        while taker.leaves:
            opposite = self.opposite(taker.side)
            if not opposite or not _crosses(taker.side, taker.price, opposite[0].price):
                break
            maker = opposite[0]
            level = (maker.side, maker.price)
            if taker.stp != StpMode.NONE and maker.account == taker.account:
                if taker.stp in (OLDEST, BOTH):
                    self.touched += [level] if level not in self.touched else []
                    self.book.remove(maker)
                    self.done(maker, DoneReason.SELF_TRADE)
                if taker.stp in (NEWEST, BOTH):
                    self.self_traded = True
                    break
                continue
            self.touched += [level] if level not in self.touched else []
            fill = min(taker.leaves, maker.leaves)
            maker.leaves -= fill
            maker.filled += fill
            taker.leaves -= fill
            taker.filled += fill
            self.last = maker.price
            self.events.append((
                "trade", self.trade_id, maker.price, fill, maker.oid, taker.oid,
                maker.leaves + maker.reserve, taker.leaves, taker.side,
            ))  # fmt: skip
            self.trade_id += 1
            if maker.leaves == 0 and maker.reserve:  # the next slice, at the back
                maker.leaves = min(maker.display, maker.reserve)
                maker.reserve -= maker.leaves
                maker.arrival, self.arrival = self.arrival, self.arrival + 1
            elif maker.leaves == 0:
                self.book.remove(maker)
                self.done(maker, DoneReason.FILLED)

    def enter(self, o: _Order) -> None:
        self.match(o)
        for side, price in self.touched:
            self.level(side, price)
        if self.self_traded:
            self.done(o, DoneReason.SELF_TRADE)
        elif o.leaves == 0:
            self.done(o, DoneReason.FILLED)
        elif o.tif not in (GTC, DAY) or o.kind in (MARKET, STOP):
            self.done(o, DoneReason.EXPIRED)
        else:
            if o.display and o.leaves > o.display:
                o.reserve, o.leaves = o.leaves - o.display, o.display
            o.arrival, self.arrival = self.arrival, self.arrival + 1
            self.book.append(o)
            self.level(o.side, o.price)

    def trigger(self) -> None:
        """Every stop a price this command traded at reached (or the last price: a stop that
        just arrived), in arrival order; those a stop's own trades reach queue behind."""
        queue: list[_Order] = []
        scanned = 0
        while self.last:
            prices = [self.last] + [e[2] for e in self.events[scanned:] if e[0] == "trade"]
            scanned = len(self.events)
            low, high = min(prices), max(prices)
            reached = [
                o
                for o in self.stops
                if (o.side == BUY and o.stop <= high) or (o.side == SELL and o.stop >= low)
            ]
            for o in sorted(reached, key=lambda o: o.arrival):
                self.stops.remove(o)
                queue.append(o)
            if not queue:
                return
            o = queue.pop(0)
            self.events.append(("triggered", o.oid))
            self.take(o, triggered=True)

    def find(self, oid: int) -> tuple[_Order | None, _Order | None]:
        resting = next((o for o in self.book if o.oid == oid), None)
        return resting, next((o for o in self.stops if o.oid == oid), None)

    def cancel(self, c: CancelOrder) -> None:
        resting, stop = self.find(c.order_id)
        o = resting or stop
        if o is None or o.account != c.account:
            self.events.append(
                ("rejected", Code.UNKNOWN_ORDER if o is None else Code.NOT_ORDER_OWNER)
            )
            return
        (self.book if resting else self.stops).remove(o)
        self.done(o, DoneReason.CANCELLED)
        if resting:
            self.level(o.side, o.price)

    def replace(self, c: ReplaceOrder) -> None:
        o, stop = self.find(c.order_id)
        target = o or stop
        problem: Code | None = None
        if target is None:
            problem = Code.UNKNOWN_ORDER
        elif target.account != c.account:
            problem = Code.NOT_ORDER_OWNER
        elif o is None:
            problem = Code.INVALID_ORDER  # a pending stop
        else:  # overtaken by fills it ends, whatever a halt or the collar says
            problem = self.qty_problem(c.order_qty)
            if problem is None and c.order_qty > o.filled:
                if self.halted:
                    problem = Code.SYMBOL_HALTED
                elif c.price != o.price:
                    problem = self.limit_problem(c.price)
        if problem is not None or o is None:
            self.events.append(("rejected", problem))
            return
        if c.order_qty <= o.filled:  # fills overtook it: it ends
            self.book.remove(o)
            self.events.append(("replaced", o.oid, o.price, 0))
            self.level(o.side, o.price)
            o.leaves = o.reserve = 0
            self.done(o, DoneReason.FILLED)
            return
        leaves = c.order_qty - o.filled
        if o.display and -(-leaves // o.display) > self.spec.iceberg_parts:
            self.events.append(("rejected", Code.INVALID_QTY))
            return
        if o.post_only and any(_crosses(o.side, c.price, m.price) for m in self.opposite(o.side)):
            self.events.append(("rejected", Code.POST_ONLY_WOULD_TAKE))
            return
        self.events.append(("replaced", o.oid, c.price, leaves))
        if c.price == o.price and leaves <= o.leaves + o.reserve:  # keeps its place
            o.leaves, o.reserve = min(o.leaves, leaves), leaves - min(o.leaves, leaves)
            self.level(o.side, o.price)
            return
        self.book.remove(o)
        self.level(o.side, o.price)
        o.price, o.leaves, o.reserve = c.price, leaves, 0
        self.enter(o)
        self.trigger()

    def remove_all(self, chosen: Callable[[_Order], bool], reason: DoneReason) -> None:
        levels: list[tuple[Side, int]] = []
        for o in [o for o in sorted(self.book, key=priority) if chosen(o)]:
            self.book.remove(o)
            self.done(o, reason)
            levels += [(o.side, o.price)] if (o.side, o.price) not in levels else []
        for o in [o for o in sorted(self.stops, key=lambda o: o.arrival) if chosen(o)]:
            self.stops.remove(o)
            self.done(o, reason)
        for side, price in levels:
            self.level(side, price)


def told(events: list[Record]) -> list[Event]:
    """A book's events in the model's terms (Accepted's and SymbolStatus's other fields are
    the command's own)."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, Rejected):
            out.append(("rejected", e.code))
        elif isinstance(e, Accepted):
            out.append(("accepted", e.order_id))
        elif isinstance(e, Trade):
            out.append((
                "trade", e.trade_id, e.price, e.qty, e.maker_order_id, e.taker_order_id,
                e.maker_leaves, e.taker_leaves, e.aggressor,
            ))  # fmt: skip
        elif isinstance(e, OrderDone):
            out.append(("done", e.order_id, e.reason, e.filled_qty, e.leaves_qty))
        elif isinstance(e, Replaced):
            out.append(("replaced", e.order_id, e.price, e.qty))
        elif isinstance(e, Triggered):
            out.append(("triggered", e.order_id))
        elif isinstance(e, BookLevel):
            out.append(("level", e.side, e.price, e.qty, e.count))
    return out
