"""Review 148: the matcher's semantics against a tiny reference book written from the spec.

Method: ``_Ref`` below was written from README.md ("## The matcher", "Result codes") and the
docstrings of ``procs/core/book.py``, ``procs/core/symbols.py`` and ``procs/common/records.py``
before reading any book's algorithm: one list of live orders per side, sorted on every
question; a FOK decided by running the sweep on a deep copy; stops in a FIFO queue. Hypothesis
(derandomized) drives it, ``ReferenceBook`` and ``FastBook`` with the same random commands:
limit GTC/DAY/IOC/FOK, post-only, icebergs, market with and without a cap, stop and
stop-limit (arriving reached or not), every STP mode, cancels and replaces (down, up, moved,
to at or below the filled total, of stops, by a stranger), mass cancels, halt, resume, end of
session, and commands off tick, off lot and out of range. Each event is reduced to what the
spec fixes (kind, ids, prices, sizes, reasons, codes, levels) and compared in order; then the
L2 views, determinism (the same commands twice: the same bytes), every event's ``seq`` and
``ts_ns`` the command's, gapless trade ids and conservation (a taker's trades add up to its
fills). The matcher does not assign order ids (the router does) and has no
"decrement" STP mode (``StpMode``: newest, oldest, both).

Sound: limit matching in price-time priority at the maker's price; IOC/FOK (a FOK counts an
iceberg's reserve and stops at its own orders under STP); post-only refused when it would
cross, and kept on a replace; a market order (GTC too) banded from the best opposite price,
within its cap, its rest expired; a stop-market banded from its stop and refused on arrival
past its band or on an empty side; triggers by every traded price, stops reached together in
arrival order (not stop order), cascades queued behind; iceberg slices to the back of the
level, the aggressor taking with its whole size, a stop-limit iceberg; STP in each mode,
chosen by the aggressor; a replace keeping its place when it shrinks at its price,
re-entering otherwise (trades, triggers), ending the order at or below its fills even when
halted (``OrderDone`` leaves 0: nothing is open after ``Replaced`` 0), parts judged on the new
total; the limit collar from the last trade, a waiting stop-limit's from its stop, a replace's
only on a changed price; mass cancel and session end (resting in priority order, then pending
stops, then levels); halt and resume; tick, lot, min/max and parts checks; ``Accepted`` with
the terms as sent; every event with the command's seq and ts; a report under its order's own
header; gapless trade ids; each ``OrderDone``'s fills the sum of its trades; the same
commands giving the same bytes in two books and both classes. About 4,000 streams of up to
80 commands (band 0 to 20%, parts 2 to 8, collar off, 5% and 10%) agreed with both books.

Ambiguous, not faults (no README or docstring line decides them): a replace to total 0 of an
unfilled order is ``QTY_OUT_OF_RANGE`` rather than ending it; which code a command with two
faults (off lot and out of collar) gets.

Faults (each a strict xfail when written): none found; the differential is kept as a property.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    SymbolStatus,
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
    TradingStatus,
)
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec

SPEC = SymbolSpec(symbol=3, tick=5, lot=2, min_qty=2, max_qty=60, iceberg_parts=8, band_bps=500)
BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
Cmd = NewOrder | CancelOrder | ReplaceOrder | MassCancel | AdminCommand


# -- the reference: README.md and book.py's docstring, nothing of procs/core's code ----------


class _O:
    """A live order: ``vis`` shown, ``res`` hidden (iceberg), ``filled`` so far."""

    def __init__(self, c: NewOrder, arrival: int) -> None:
        self.id, self.acct, self.side, self.tif, self.stp = (
            c.order_id, c.account, c.side, c.tif, c.stp,
        )  # fmt: skip
        self.type, self.price, self.stop, self.disp = (
            c.ord_type, c.price, c.stop_price, c.display_qty,
        )  # fmt: skip
        self.post = bool(c.flags & OrderFlag.POST_ONLY)
        self.vis, self.res, self.filled, self.arrival = c.qty, 0, 0, arrival
        self.killed = False  # STP cancelled it as the taker

    def open(self) -> int:
        return self.vis + self.res


class _Ref:
    def __init__(self, spec: SymbolSpec) -> None:
        self.s = spec
        self.book: dict[Side, list[_O]] = {BUY: [], SELL: []}
        self.stops: list[_O] = []  # arrival order
        self.arrival = itertools.count()
        self.trade_id, self.last, self.halted = 1, 0, False

    def side(self, side: Side) -> list[_O]:
        sign = -1 if side == BUY else 1
        self.book[side].sort(key=lambda o: (sign * o.price, o.arrival))
        return self.book[side]

    def level(self, side: Side, price: int) -> tuple[Any, ...]:
        at = [o for o in self.book[side] if o.price == price]
        return ("L", side, price, sum(o.vis for o in at), len(at))

    def levels(self) -> dict[tuple[int, int], tuple[int, int]]:
        out: dict[tuple[int, int], tuple[int, int]] = {}
        for side in (BUY, SELL):
            for o in self.book[side]:
                q, n = out.get((side, o.price), (0, 0))
                out[(side, o.price)] = (q + o.vis, n + 1)
        return out

    def rest(self, o: _O) -> None:
        if o.disp and o.vis > o.disp:
            o.vis, o.res = o.disp, o.vis + o.res - o.disp
        o.arrival = next(self.arrival)
        self.book[o.side].append(o)

    @staticmethod
    def crosses(side: Side, limit: int, price: int) -> bool:
        return price <= limit if side == BUY else price >= limit

    def best(self, side: Side) -> int | None:
        return self.side(side)[0].price if self.book[side] else None

    def band(self, side: Side, ref: int, bps: int) -> int:  # against the taker, on a tick
        unit = 10_000 * self.s.tick
        if side == BUY:
            return ref * (10_000 + bps) // unit * self.s.tick
        return -(-(ref * (10_000 - bps)) // unit) * self.s.tick

    def match(self, t: _O, limit: int, ev: list[Any], prices: list[int]) -> None:
        touched: list[tuple[Side, int]] = []
        other = SELL if t.side == BUY else BUY
        while t.vis > 0:
            opp = self.side(other)
            if not opp or not self.crosses(t.side, limit, opp[0].price):
                break
            m = opp[0]
            if t.stp == StpMode.CANCEL_NEWEST and m.acct == t.acct:
                t.killed = True
                break
            if (m.side, m.price) not in touched:
                touched.append((m.side, m.price))
            if t.stp != StpMode.NONE and m.acct == t.acct:
                if t.stp in (StpMode.CANCEL_OLDEST, StpMode.CANCEL_BOTH):
                    opp.remove(m)
                    ev.append(("D", m.id, DoneReason.SELF_TRADE, m.filled, m.open()))
                if t.stp in (StpMode.CANCEL_NEWEST, StpMode.CANCEL_BOTH):
                    t.killed = True
                    break
                continue
            q = min(t.vis, m.vis)
            m.vis, m.filled, t.vis, t.filled = m.vis - q, m.filled + q, t.vis - q, t.filled + q
            self.last = m.price
            prices.append(m.price)
            ev.append(("T", self.trade_id, m.price, q, t.side, m.id, m.open(), t.id, t.vis))
            self.trade_id += 1
            if m.vis == 0:
                opp.remove(m)
                if m.res:  # the next slice, at the back of its level
                    m.vis = min(m.disp, m.res)
                    m.res -= m.vis
                    m.arrival = next(self.arrival)
                    opp.append(m)
                else:
                    ev.append(("D", m.id, DoneReason.FILLED, m.filled, 0))
        ev.extend(self.level(*k) for k in touched)

    def fillable(self, t: _O, limit: int) -> bool:
        dry = copy.deepcopy(self)
        u = copy.deepcopy(t)
        dry.match(u, limit, [], [])
        return u.vis == 0 and not u.killed

    def enter(self, t: _O, limit: int, ev: list[Any], prices: list[int]) -> None:
        """``t`` (its whole open size in ``vis``) as the aggressor, then its outcome."""
        if t.tif == FOK and not self.fillable(t, limit):
            ev.append(("D", t.id, DoneReason.EXPIRED, t.filled, t.vis))
            return
        self.match(t, limit, ev, prices)
        if t.killed:
            ev.append(("D", t.id, DoneReason.SELF_TRADE, t.filled, t.vis))
        elif t.vis == 0:
            ev.append(("D", t.id, DoneReason.FILLED, t.filled, 0))
        elif t.type in (OrdType.LIMIT, OrdType.STOP_LIMIT) and t.tif in (GTC, DAY):
            self.rest(t)
            ev.append(self.level(t.side, t.price))
        else:
            ev.append(("D", t.id, DoneReason.EXPIRED, t.filled, t.vis))

    def market_limit(self, o: _O, ref: int) -> int:
        limit = self.band(o.side, ref, self.s.band_bps)
        if o.price:
            limit = min(limit, o.price) if o.side == BUY else max(limit, o.price)
        return limit

    def reached(self, o: _O, prices: list[int]) -> bool:
        if o.side == BUY:
            return any(p >= o.stop for p in prices)
        return any(p <= o.stop for p in prices)

    def trigger(self, queue: list[_O], ev: list[Any]) -> None:
        while queue:
            o = queue.pop(0)
            ev.append(("G", o.id, o.stop, o.price if o.type == OrdType.STOP_LIMIT else 0))
            prices: list[int] = []
            limit = self.market_limit(o, o.stop) if o.type == OrdType.STOP else o.price
            self.enter(o, limit, ev, prices)
            more = [s for s in self.stops if self.reached(s, prices)]
            for s in more:
                self.stops.remove(s)
            queue.extend(more)

    def after(self, prices: list[int], ev: list[Any]) -> None:
        queue = [s for s in self.stops if self.reached(s, prices)]
        for s in queue:
            self.stops.remove(s)
        self.trigger(queue, ev)

    def execute(self, c: Cmd) -> list[Any]:
        if isinstance(c, NewOrder):
            return self.new(c)
        if isinstance(c, CancelOrder):
            return self.cancel(c)
        if isinstance(c, ReplaceOrder):
            return self.replace(c)
        if isinstance(c, MassCancel):
            return self.remove_all(
                lambda o: c.account in (0, o.acct), DoneReason.MASS_CANCELLED, []
            )
        if c.action == AdminAction.END_OF_SESSION:
            status = TradingStatus.HALTED if self.halted else TradingStatus.OPEN
            return self.remove_all(
                lambda o: o.tif == DAY, DoneReason.EXPIRED, [("S", c.action, status)]
            )
        self.halted = c.action == AdminAction.HALT
        return [("S", c.action, TradingStatus.HALTED if self.halted else TradingStatus.OPEN)]

    def remove_all(self, chosen: Any, reason: DoneReason, tail: list[Any]) -> list[Any]:
        ev: list[Any] = []
        touched: list[tuple[Side, int]] = []
        for side in (BUY, SELL):
            for o in list(self.side(side)):
                if chosen(o):
                    self.book[side].remove(o)
                    ev.append(("D", o.id, reason, o.filled, o.open()))
                    if (side, o.price) not in touched:
                        touched.append((side, o.price))
        for o in list(self.stops):
            if chosen(o):
                self.stops.remove(o)
                ev.append(("D", o.id, reason, 0, o.vis))
        return ev + [self.level(*k) for k in touched] + tail

    def check(self, c: NewOrder, reached: bool) -> ResultCode | None:
        s, stop = self.s, c.ord_type in (OrdType.STOP, OrdType.STOP_LIMIT)
        priced = c.ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT) or c.price != 0
        if (priced and c.price <= 0) or (stop and c.stop_price <= 0):
            return ResultCode.INVALID_PRICE
        if (priced and c.price % s.tick) or (stop and c.stop_price % s.tick):
            return ResultCode.PRICE_NOT_ON_TICK
        if c.ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT):  # a waiting stop-limit: its stop
            ref = c.stop_price if c.ord_type == OrdType.STOP_LIMIT and not reached else self.last
            if self.collar(c.price, ref):
                return ResultCode.PRICE_OUT_OF_BAND
        if c.qty % s.lot or c.display_qty % s.lot:
            return ResultCode.QTY_NOT_ON_LOT
        if not s.min_qty <= c.qty <= s.max_qty:
            return ResultCode.QTY_OUT_OF_RANGE
        if c.display_qty and not s.min_qty <= c.display_qty <= c.qty:
            return ResultCode.QTY_OUT_OF_RANGE
        rests = c.ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT) and c.tif in (GTC, DAY)
        post = c.flags & OrderFlag.POST_ONLY
        if ((post or c.display_qty) and not rests) or (post and c.ord_type == OrdType.STOP_LIMIT):
            return ResultCode.INVALID_ORDER
        if c.display_qty and -(-c.qty // c.display_qty) > s.iceberg_parts:
            return ResultCode.INVALID_QTY
        return None

    def new(self, c: NewOrder) -> list[Any]:
        if self.halted:
            return [("R", c.order_id, ResultCode.SYMBOL_HALTED)]
        o = _O(c, 0)
        other = SELL if c.side == BUY else BUY
        best = self.best(other)
        stop = c.ord_type in (OrdType.STOP, OrdType.STOP_LIMIT)
        reached = stop and self.last > 0 and self.reached(o, [self.last])
        code = self.check(c, reached)
        if code is None and o.post and best is not None and self.crosses(c.side, c.price, best):
            code = ResultCode.POST_ONLY_WOULD_TAKE
        if code is None and c.ord_type == OrdType.MARKET and best is None:
            code = ResultCode.NO_LIQUIDITY
        if code is None and c.ord_type == OrdType.STOP and reached:
            if best is None:
                code = ResultCode.NO_LIQUIDITY
            elif not self.crosses(c.side, self.market_limit(o, c.stop_price), best):
                code = ResultCode.PRICE_OUT_OF_BAND
        if code is not None:
            return [("R", c.order_id, code)]
        terms = (c.side, c.price, c.qty, c.ord_type, c.tif, c.flags, c.stop_price, c.display_qty)
        ev: list[Any] = [("A", c.order_id, *terms)]
        if stop:
            o.arrival = next(self.arrival)
            if reached:
                self.trigger([o], ev)
            else:
                self.stops.append(o)
            return ev
        prices: list[int] = []
        limit = c.price if c.ord_type == OrdType.LIMIT else self.market_limit(o, best or 0)
        self.enter(o, limit, ev, prices)
        self.after(prices, ev)
        return ev

    def collar(self, price: int, ref: int) -> ResultCode | None:
        """``limit_band_bps`` around ``ref``, once the symbol has traded."""
        bps = self.s.limit_band_bps
        if bps and self.last and abs(price - ref) * 10_000 > bps * ref:
            return ResultCode.PRICE_OUT_OF_BAND
        return None

    def find(self, c: CancelOrder | ReplaceOrder) -> _O | ResultCode:
        for o in self.book[BUY] + self.book[SELL] + self.stops:
            if o.id == c.order_id:
                return o if o.acct == c.account else ResultCode.NOT_ORDER_OWNER
        return ResultCode.UNKNOWN_ORDER

    def cancel(self, c: CancelOrder) -> list[Any]:
        o = self.find(c)
        if not isinstance(o, _O):
            return [("R", c.order_id, o)]
        if o in self.stops:
            self.stops.remove(o)
            return [("D", o.id, DoneReason.CANCELLED, 0, o.vis)]
        self.book[o.side].remove(o)
        return [("D", o.id, DoneReason.CANCELLED, o.filled, o.open()), self.level(o.side, o.price)]

    def replace(self, c: ReplaceOrder) -> list[Any]:
        o = self.find(c)
        if not isinstance(o, _O):
            return [("R", c.order_id, o)]
        if o in self.stops:
            return [("R", c.order_id, ResultCode.INVALID_ORDER)]
        new_open = c.order_qty - o.filled
        if new_open <= 0:  # the fills overtook it: the balance is cancelled
            self.book[o.side].remove(o)
            return [
                ("P", o.id, o.price, 0),
                self.level(o.side, o.price),
                ("D", o.id, DoneReason.FILLED, o.filled, 0),  # nothing open after Replaced
            ]
        if self.halted:
            return [("R", c.order_id, ResultCode.SYMBOL_HALTED)]
        if c.price <= 0:
            return [("R", c.order_id, ResultCode.INVALID_PRICE)]
        if c.price % self.s.tick:
            return [("R", c.order_id, ResultCode.PRICE_NOT_ON_TICK)]
        if c.order_qty % self.s.lot:
            return [("R", c.order_id, ResultCode.QTY_NOT_ON_LOT)]
        if not self.s.min_qty <= c.order_qty <= self.s.max_qty:
            return [("R", c.order_id, ResultCode.QTY_OUT_OF_RANGE)]
        if o.disp and -(-c.order_qty // o.disp) > self.s.iceberg_parts:
            return [("R", c.order_id, ResultCode.INVALID_QTY)]
        if c.price != o.price and self.collar(c.price, self.last):
            return [("R", c.order_id, ResultCode.PRICE_OUT_OF_BAND)]
        best = self.best(SELL if o.side == BUY else BUY)
        if o.post and best is not None and self.crosses(o.side, c.price, best):
            return [("R", c.order_id, ResultCode.POST_ONLY_WOULD_TAKE)]
        if c.price == o.price and new_open <= o.open():  # keeps its place
            o.vis = min(o.vis, new_open)
            o.res = new_open - o.vis
            return [("P", o.id, c.price, new_open), self.level(o.side, o.price)]
        self.book[o.side].remove(o)
        ev: list[Any] = [("P", o.id, c.price, new_open), self.level(o.side, o.price)]
        o.price, o.vis, o.res = c.price, new_open, 0
        prices: list[int] = []
        self.enter(o, o.price, ev, prices)
        self.after(prices, ev)
        return ev


# -- the books' events, reduced to what the spec fixes ---------------------------------------


def reduce(e: Record) -> tuple[Any, ...]:
    if isinstance(e, Accepted):
        return ("A", e.order_id, e.side, e.price, e.qty, e.ord_type, e.tif, e.flags,
                e.stop_price, e.display_qty)  # fmt: skip
    if isinstance(e, Rejected):
        return ("R", e.order_id, e.code)
    if isinstance(e, Trade):
        return ("T", e.trade_id, e.price, e.qty, e.aggressor, e.maker_order_id,
                e.maker_leaves, e.taker_order_id, e.taker_leaves)  # fmt: skip
    if isinstance(e, OrderDone):
        return ("D", e.order_id, e.reason, e.filled_qty, e.leaves_qty)
    if isinstance(e, BookLevel):
        return ("L", e.side, e.price, e.qty, e.count)
    if isinstance(e, Replaced):
        return ("P", e.order_id, e.price, e.qty)
    if isinstance(e, Triggered):
        return ("G", e.order_id, e.stop_price, e.price)
    assert isinstance(e, SymbolStatus), e
    return ("S", e.action, e.status)


# -- commands ---------------------------------------------------------------------------------

_H = {"ts_ns": 7, "session": 1, "symbol": SPEC.symbol}


def order(
    seq: int, oid: int, side: Side, price: int, qty: int, acct: int = 1, **kw: Any
) -> NewOrder:
    terms = dict(
        ord_type=OrdType.LIMIT, tif=GTC, flags=0, stp=StpMode.NONE, stop_price=0, display_qty=0
    )
    terms.update(kw)
    return NewOrder(seq=seq, gateway=acct, client_ref=oid, account=acct, order_id=oid, side=side,
                    price=price, qty=qty, **terms, **_H)  # type: ignore[arg-type]  # fmt: skip


def amend(seq: int, oid: int, price: int, total: int, acct: int = 1) -> ReplaceOrder:
    return ReplaceOrder(seq=seq, gateway=acct, client_ref=oid, account=acct, order_id=oid,
                        price=price, order_qty=total, **_H)  # type: ignore[arg-type]  # fmt: skip


@st.composite
def streams(draw: st.DrawFn) -> tuple[SymbolSpec, list[Cmd]]:
    spec = msgspec.structs.replace(
        SPEC,
        band_bps=draw(st.sampled_from([0, 300, 500, 2000])),
        iceberg_parts=draw(st.sampled_from([2, 3, 8])),
        limit_band_bps=draw(st.sampled_from([0, 0, 500, 1000])),
    )
    cmds: list[Cmd] = []
    owners: list[tuple[int, int]] = []
    price = st.integers(18, 22).map(lambda p: p * 5)
    qty = st.integers(1, 8).map(lambda q: q * 2)
    for seq in range(1, draw(st.integers(5, 80)) + 1):
        kind = draw(st.sampled_from("LLLLLLLLIIMMSSSCCRRRXLLLLLLLLIIMMSSSCCRRRXHE"))
        acct = draw(st.integers(1, 3))
        if kind in "LIMS":
            oid = 100 + seq
            side, q = draw(st.sampled_from([BUY, SELL])), draw(qty)
            kw: dict[str, Any] = {"stp": draw(st.sampled_from(list(StpMode)))}
            p = draw(price)
            if kind == "L":
                kw["tif"] = draw(st.sampled_from([GTC, GTC, DAY, IOC, FOK]))
                kw["flags"] = OrderFlag.POST_ONLY if draw(st.integers(0, 5)) == 0 else 0
                if draw(st.integers(0, 9)) == 0:  # off tick, off lot or out of range
                    p, q = draw(st.sampled_from([(p + 1, q), (p, q + 1), (p, 62), (-5, q)]))
            elif kind == "I":
                kw["display_qty"] = draw(st.sampled_from([2, 4]))
                kw["tif"] = draw(st.sampled_from([GTC, DAY]))
                q = max(q, 6)
            elif kind == "M":
                kw["ord_type"], kw["tif"] = OrdType.MARKET, draw(st.sampled_from([IOC, GTC]))
                p = draw(st.sampled_from([0, 0, p]))
            else:
                kw["stop_price"] = p
                kw["tif"] = draw(st.sampled_from([GTC, DAY]))
                if draw(st.booleans()):
                    kw["ord_type"], p = OrdType.STOP_LIMIT, draw(price)
                    kw["tif"] = draw(st.sampled_from([GTC, DAY, IOC, FOK]))
                    if kw["tif"] in (GTC, DAY) and draw(st.integers(0, 3)) == 0:
                        kw["display_qty"], q = 2, max(q, 4)
                else:
                    kw["ord_type"], p = OrdType.STOP, 0
            cmds.append(order(seq, oid, side, p, q, acct, **kw))
            owners.append((oid, acct))
        elif kind in "CR" and owners:
            oid, owner = owners[-draw(st.integers(1, min(len(owners), 8)))]
            who = owner if draw(st.integers(0, 7)) else owner % 3 + 1
            h = dict(seq=seq, gateway=who, client_ref=oid, account=who, order_id=oid, **_H)
            if kind == "C":
                cmds.append(CancelOrder(**h))
            else:
                cmds.append(amend(seq, oid, draw(price), draw(st.integers(1, 8)) * 2, who))
        elif kind == "X":
            cmds.append(
                MassCancel(seq, 7, acct, 1, 0, draw(st.sampled_from([0, acct])), SPEC.symbol)
            )
        elif kind in "HE":
            act = draw(st.sampled_from([AdminAction.HALT] + [AdminAction.RESUME] * 3))
            act = AdminAction.END_OF_SESSION if kind == "E" else act
            cmds.append(AdminCommand(seq, 7, act, SPEC.symbol, 0))
    return spec, cmds


def _check_stream(cmds: list[Cmd], spec: SymbolSpec = SPEC) -> None:
    """Each book's events against the reference's, command by command, and what holds whatever
    the implementation: the command's seq and ts on every event, a report about an order under
    that order's own header, gapless trade ids, each ``OrderDone``'s fills its trades' sum."""
    ref = _Ref(spec)
    books = [ReferenceBook(spec), FastBook(spec)]
    owner = {c.order_id: c.account for c in cmds if isinstance(c, NewOrder)}
    for book in books:
        traded: dict[int, int] = {}
        trade_ids: list[int] = []
        for c in cmds:
            for e in book.execute(c):
                assert msgspec.structs.astuple(e)[:2] == (c.seq, c.ts_ns), e  # seq, ts_ns lead
                if isinstance(e, Trade):
                    trade_ids.append(e.trade_id)
                    for oid in (e.maker_order_id, e.taker_order_id):
                        traded[oid] = traded.get(oid, 0) + e.qty
                elif isinstance(e, OrderDone | Triggered | Accepted):
                    assert (e.account, e.gateway, e.client_ref) == (owner[e.order_id],) * 2 + (
                        e.order_id,
                    ), e
                if isinstance(e, OrderDone):
                    assert e.filled_qty == traded.get(e.order_id, 0), e
            book.validate_internal_state()
        assert trade_ids == list(range(1, len(trade_ids) + 1))
    books = [ReferenceBook(spec), FastBook(spec)]
    for c in cmds:
        want = ref.execute(c)
        for book in books:
            got = [reduce(e) for e in book.execute(c)]
            assert got == want, (type(book).__name__, c)
            assert book.levels() == ref.levels()


@settings(max_examples=250, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(streams())
def test_every_event_matches_the_spec_reference(stream: tuple[SymbolSpec, list[Cmd]]) -> None:
    _check_stream(stream[1], stream[0])


@settings(max_examples=40, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(streams())
def test_the_same_commands_give_byte_identical_events(stream: tuple[SymbolSpec, list[Cmd]]) -> None:
    spec, cmds = stream
    runs = []
    for book in (FastBook(spec), FastBook(spec), ReferenceBook(spec)):
        runs.append([msgspec.msgpack.encode(book.execute(c)) for c in cmds])
    assert runs[0] == runs[1] == runs[2]


def _stop(seq: int, side: Side, stop: int, qty: int, acct: int) -> NewOrder:
    return order(seq, seq, side, 0, qty, acct, ord_type=OrdType.STOP, stop_price=stop)


def test_stops_reached_together_enter_in_arrival_order_and_their_cascade_queues_behind() -> None:
    """One trade at 100 reaches A (stop 100) and then B (stop 95, arrived later, the lower
    stop): A enters first. A's own trade at 105 reaches C, which queues behind B."""
    cmds: list[Cmd] = [
        *(order(i, i, SELL, p, 2, 1) for i, p in ((1, 100), (2, 105), (3, 110))),
        _stop(4, BUY, 100, 4, 2),  # A
        _stop(5, BUY, 95, 2, 3),  # B
        _stop(6, BUY, 105, 2, 3),  # C
        order(7, 7, BUY, 100, 2, 2),
    ]
    _check_stream(cmds)
    book = FastBook(SPEC)
    events = [e for c in cmds for e in book.execute(c)]
    assert [e.order_id for e in events if isinstance(e, Triggered)] == [4, 5, 6]
    assert [(e.taker_order_id, e.price) for e in events if isinstance(e, Trade)] == [
        (7, 100), (4, 105), (6, 110)
    ]  # fmt: skip


def test_a_refilled_iceberg_slice_goes_to_the_back_of_its_level() -> None:
    cmds: list[Cmd] = [
        order(1, 1, SELL, 100, 10, 1, display_qty=2),
        order(2, 2, SELL, 100, 4, 2),
        order(3, 3, BUY, 100, 8, 3),
    ]
    _check_stream(cmds)
    book = FastBook(SPEC)
    events = [e for c in cmds for e in book.execute(c)]
    assert [(e.maker_order_id, e.qty) for e in events if isinstance(e, Trade)] == [
        (1, 2), (2, 4), (1, 2)
    ]  # fmt: skip
