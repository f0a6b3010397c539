"""An eighth hostile review of the matching books, aimed at how the features meet: icebergs
with self-trade prevention and replaces, stops triggered inside sweeps, cascades and FOK/IOC
orders, FOK against icebergs' reserve and STP, market protection on an empty book, post-only
replaces, end of session and mass cancels of icebergs and stops, halts, level totals after
refreshes, trade ids across snapshots.

It found no bug. What it keeps is the property below: hypothesis streams biased to those
features run through ``ReferenceBook``, ``FastBook`` and a book restored from a snapshot taken
mid-stream, and through ``_Model``, a third matcher written from ``procs/core/book.py``'s
docstring alone (lists and deep copies, a FOK decided by a dry run of the sweep itself). The
differential tests compare the two books, which share ``Book``'s command flow (validation,
FOK, replace, stops, session), so a mistake there shows in both alike; the model shares none
of it but the validation checks (``OrderChecks``) and the reject helpers. After every command
the property also checks what the spec says whatever the implementation: the L2 view rebuilt
from ``BookLevel`` events, each order's open quantity kept from the events, gapless trade ids,
no pending stop reached by any price the command traded at, a FOK all or nothing and expired
only when an IOC in its place would not fill it, post-only never taking, STP never trading
within an account, market orders inside their band. A second property puts FOK orders of
every STP mode against dense asks of icebergs and the taker's own orders.

Noted then, not a spec bug: a FOK that cannot fill counted every crossing order
(``Book._fillable``, per order: icebergs' reserves and STP needed it), about 15 ms against 100k
one-lot asks, and since it changes nothing it could be sent again and again. Since fixed:
levels keep their reserve totals and who rests there (``test_fok_walk.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
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
    OrderRecord,
    Record,
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
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.order_checks import OrderChecks
from procs.core.order_events import header, reject
from procs.core.reference_book import ReferenceBook
from procs.core.resting import RestingOrder
from procs.core.symbols import SymbolSpec

BUY, SELL = Side.BUY, Side.SELL
FILLED, EXPIRED, MASS_CANCELLED = DoneReason.FILLED, DoneReason.EXPIRED, DoneReason.MASS_CANCELLED
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
_MARKETABLE = (OrdType.MARKET, OrdType.STOP)
Command = OrderRecord | MassCancel | AdminCommand
_SPECS = [  # dense ladders: every order is near the others
    SymbolSpec(symbol=9, tick=1, lot=1, min_qty=1, max_qty=60, band_bps=300, iceberg_parts=50),
    SymbolSpec(symbol=9, tick=5, lot=2, min_qty=2, max_qty=60, band_bps=100, iceberg_parts=3,
               limit_band_bps=400),
    SymbolSpec(symbol=9, tick=1, lot=1, min_qty=1, max_qty=60, band_bps=0, iceberg_parts=4),
]  # fmt: skip


# -- the independent model ---------------------------------------------------------------------


def _crosses(side: Side, price: int, resting: int) -> bool:
    return price >= resting if side == BUY else price <= resting


def _opposite(side: Side) -> Side:
    return SELL if side == BUY else BUY


_NOBODY = RestingOrder(0, 0, BUY, 0, 0, 0, 0, 0, 0, 0)  # what ``_Model._find`` names on a refusal


class _Model(OrderChecks):
    """The docstring's matcher by brute force: orders in dicts, every question a sort. It keeps
    ``RestingOrder`` records (``leaves`` shown, ``reserve`` hidden, ``arrival`` its place in
    the queue) and ``OrderChecks``' validation; the rest is its own."""

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.orders: dict[int, RestingOrder] = {}
        self.stops: dict[int, RestingOrder] = {}  # in arrival order
        self.trade_id, self.clock, self.last_price, self.halted = 1, 0, 0, False

    def _queue(self, side: Side) -> list[RestingOrder]:
        sign = -1 if side == BUY else 1
        mine = [o for o in self.orders.values() if o.side == side]
        return sorted(mine, key=lambda o: (sign * o.price, o.arrival))

    def _best(self, side: Side) -> int | None:
        queue = self._queue(side)
        return queue[0].price if queue else None

    def _crossable(self, side: Side, price: int, enough: int) -> int:
        crossing = [o for o in self._queue(_opposite(side)) if _crosses(side, price, o.price)]
        return sum(o.leaves for o in crossing)

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def _level(self, at: Command, side: Side, price: int) -> BookLevel:
        there = [o for o in self.orders.values() if o.side == side and o.price == price]
        qty = sum(o.leaves for o in there)
        return BookLevel(at.seq, at.ts_ns, self.spec.symbol, side, price, qty, len(there))

    def _done(self, at: Command, o: RestingOrder, why: DoneReason, *, own: bool) -> OrderDone:
        """Under the order's own header (``own``) or the order command's."""
        who = (o.gateway, o.session, o.client_ref, o.account, self.spec.symbol, o.order_id)
        if not own:
            assert isinstance(at, (NewOrder, CancelOrder, ReplaceOrder))
            who = (at.gateway, at.session, at.client_ref, at.account, at.symbol, at.order_id)
        return OrderDone(at.seq, at.ts_ns, *who, why, o.filled, o.leaves + o.reserve)

    def execute(self, cmd: Record) -> list[Record]:
        if isinstance(cmd, NewOrder):
            return self._new(cmd)
        if isinstance(cmd, CancelOrder):
            return self._cancel(cmd)
        if isinstance(cmd, ReplaceOrder):
            return self._replace(cmd)
        if isinstance(cmd, MassCancel):
            return self._remove(cmd, MASS_CANCELLED, lambda o: cmd.account in (0, o.account))
        assert isinstance(cmd, AdminCommand)
        events: list[Record] = []
        if cmd.action == AdminAction.END_OF_SESSION:
            events = self._remove(cmd, EXPIRED, lambda o: o.tif == DAY)
        else:
            self.halted = cmd.action == AdminAction.HALT
        status = TradingStatus.HALTED if self.halted else TradingStatus.OPEN
        return [*events, SymbolStatus(cmd.seq, cmd.ts_ns, self.spec.symbol, cmd.action, status)]

    def _remove(
        self, cmd: Command, why: DoneReason, chosen: Callable[[RestingOrder], bool]
    ) -> list[Record]:
        events: list[Record] = []
        levels: list[tuple[Side, int]] = []
        for o in [*self._queue(BUY), *self._queue(SELL)]:
            if chosen(o):
                del self.orders[o.order_id]
                events.append(self._done(cmd, o, why, own=True))
                levels += [] if (o.side, o.price) in levels else [(o.side, o.price)]
        for o in list(self.stops.values()):
            if chosen(o):
                del self.stops[o.order_id]
                events.append(self._done(cmd, o, why, own=True))
        return events + [self._level(cmd, side, price) for side, price in levels]

    def _new(self, cmd: NewOrder) -> list[Record]:
        problem = self._check_order(cmd)
        if problem is not None:
            return [reject(cmd, problem)]
        terms = (cmd.ord_type, cmd.tif, cmd.flags, cmd.stop_price, cmd.display_qty)
        events: list[Record] = [Accepted(*header(cmd), cmd.side, cmd.price, cmd.qty, *terms)]
        o = RestingOrder(
            *(cmd.order_id, cmd.account, cmd.side, cmd.price, cmd.qty, 0, 0, cmd.gateway),
            *(cmd.session, cmd.client_ref, cmd.tif, cmd.stp, cmd.display_qty, 0, cmd.ord_type),
            cmd.stop_price, bool(cmd.flags & OrderFlag.POST_ONLY),
        )  # fmt: skip
        if o.ord_type in (OrdType.STOP, OrdType.STOP_LIMIT):
            self.stops[o.order_id] = o
        else:
            self._arrive(cmd, o, events, own=False)
        self._triggers(cmd, events)
        return events

    def _arrive(
        self, cmd: OrderRecord, o: RestingOrder, events: list[Record], *, own: bool
    ) -> None:
        if o.ord_type in _MARKETABLE:  # its limit: the band from the best, or its worst price
            best = self._best(_opposite(o.side))
            if best is None:
                events.append(self._done(cmd, o, EXPIRED, own=own))
                return
            if own and o.ord_type == OrdType.STOP:  # a triggered stop-market: from its trigger
                best = o.stop_price
            band, tick = best * self.spec.band_bps // 10_000, self.spec.tick
            if o.side == BUY:
                limit = min((best + band) // tick * tick, (2**63 - 1) // tick * tick)
                o.price = min(limit, o.price) if o.price else limit
            else:
                limit = max(tick, -(-(best - band) // tick) * tick)
                o.price = max(limit, o.price) if o.price else limit
        if o.tif == FOK:  # a dry run of the sweep on a copy: all of it, or nothing
            dry, taker = copy.deepcopy(self), copy.deepcopy(o)
            dry._sweep(cmd, taker, [])
            if taker.leaves:
                events.append(self._done(cmd, o, EXPIRED, own=own))
                return
        self._enter(cmd, o, events, own=own)

    def _enter(self, cmd: OrderRecord, o: RestingOrder, events: list[Record], *, own: bool) -> None:
        self_traded, touched = self._sweep(cmd, o, events)
        events += [self._level(cmd, side, price) for side, price in touched]
        if self_traded:
            events.append(self._done(cmd, o, DoneReason.SELF_TRADE, own=own))
        elif not o.leaves:
            events.append(self._done(cmd, o, FILLED, own=own))
        elif o.tif not in (GTC, DAY) or o.ord_type in _MARKETABLE:
            events.append(self._done(cmd, o, EXPIRED, own=own))
        else:
            if o.display and o.leaves > o.display:
                o.leaves, o.reserve = o.display, o.leaves - o.display
            o.arrival = self._tick()
            self.orders[o.order_id] = o
            events.append(self._level(cmd, o.side, o.price))

    def _sweep(
        self, cmd: OrderRecord, taker: RestingOrder, events: list[Record]
    ) -> tuple[bool, list[tuple[Side, int]]]:
        """Fill ``taker``; (whether STP cancelled it, the maker levels touched)."""
        touched: list[tuple[Side, int]] = []
        while taker.leaves:
            queue = self._queue(_opposite(taker.side))
            if not queue or not _crosses(taker.side, taker.price, queue[0].price):
                break
            maker = queue[0]
            where = (maker.side, maker.price)
            if taker.stp != StpMode.NONE and maker.account == taker.account:
                if taker.stp != StpMode.CANCEL_NEWEST:
                    del self.orders[maker.order_id]
                    events.append(self._done(cmd, maker, DoneReason.SELF_TRADE, own=True))
                    touched += [] if where in touched else [where]
                if taker.stp != StpMode.CANCEL_OLDEST:
                    return True, touched
                continue
            touched += [] if where in touched else [where]
            fill = min(taker.leaves, maker.leaves)
            maker.leaves, maker.filled = maker.leaves - fill, maker.filled + fill
            taker.leaves, taker.filled = taker.leaves - fill, taker.filled + fill
            self.last_price = maker.price
            events.append(
                Trade(
                    *(cmd.seq, cmd.ts_ns, self.trade_id, self.spec.symbol, maker.price, fill),
                    *(taker.side, maker.order_id, maker.account, maker.gateway),
                    *(maker.leaves + maker.reserve, taker.order_id, taker.account),
                    *(taker.gateway, taker.leaves),
                )
            )
            self.trade_id += 1
            if maker.leaves == 0 and maker.reserve:  # the next slice, at the back
                maker.leaves = min(maker.display, maker.reserve)
                maker.reserve -= maker.leaves
                maker.arrival = self._tick()
            elif maker.leaves == 0:
                del self.orders[maker.order_id]
                events.append(self._done(cmd, maker, FILLED, own=True))
        return False, touched

    def _triggers(self, cmd: OrderRecord, events: list[Record]) -> None:
        """Every price the command traded at reaches stops, entered in arrival order; those
        a triggered stop reaches queue behind."""
        triggered: list[RestingOrder] = []
        looked = 0
        while self.last_price:
            prices = [self.last_price, *(e.price for e in events[looked:] if isinstance(e, Trade))]
            looked = len(events)
            for s in list(self.stops.values()):
                if s.stop_price <= max(prices) if s.side == BUY else s.stop_price >= min(prices):
                    del self.stops[s.order_id]
                    triggered.append(s)
            if not triggered:
                return
            s = triggered.pop(0)
            head = (s.gateway, s.session, s.client_ref, s.account, self.spec.symbol, s.order_id)
            entering = s.price if s.ord_type == OrdType.STOP_LIMIT else 0
            events.append(Triggered(cmd.seq, cmd.ts_ns, *head, s.stop_price, entering))
            self._arrive(cmd, s, events, own=True)

    def _find(self, cmd: CancelOrder | ReplaceOrder) -> tuple[RestingOrder, ResultCode | None]:
        """The order ``cmd`` names, or why it may not."""
        o = self.orders.get(cmd.order_id) or self.stops.get(cmd.order_id)
        if cmd.symbol != self.spec.symbol:
            return _NOBODY, ResultCode.UNKNOWN_SYMBOL
        if o is None:
            return _NOBODY, ResultCode.UNKNOWN_ORDER
        return o, ResultCode.NOT_ORDER_OWNER if o.account != cmd.account else None

    def _cancel(self, cmd: CancelOrder) -> list[Record]:
        o, problem = self._find(cmd)
        if problem is not None:
            return [reject(cmd, problem)]
        done = self._done(cmd, o, DoneReason.CANCELLED, own=False)
        if self.stops.pop(o.order_id, None) is not None:
            return [done]
        del self.orders[o.order_id]
        return [done, self._level(cmd, o.side, o.price)]

    def _replace(self, cmd: ReplaceOrder) -> list[Record]:
        o, problem = self._find(cmd)
        if problem is None and o.order_id in self.stops:
            problem = ResultCode.INVALID_ORDER  # a pending stop is cancelled, not replaced
        problem = problem or self._check_qty(cmd.order_qty)
        overtaken = problem is None and cmd.order_qty <= o.filled  # ends: no price comes in
        if problem is None and not overtaken and self.halted:
            problem = ResultCode.SYMBOL_HALTED
        if problem is None and not overtaken and cmd.price != o.price:
            problem = self._check_limit(cmd.price)
        if problem is not None:
            return [reject(cmd, problem)]
        if overtaken:  # the fills overtook it: nothing more may fill
            del self.orders[o.order_id]
            events: list[Record] = [Replaced(*header(cmd), o.price, 0)]
            events.append(self._level(cmd, o.side, o.price))
            o.leaves = o.reserve = 0
            return [*events, self._done(cmd, o, FILLED, own=False)]
        open_qty = cmd.order_qty - o.filled
        if o.display and -(-open_qty // o.display) > self.spec.iceberg_parts:
            return [reject(cmd, ResultCode.INVALID_QTY)]
        if o.post_only and self._crossable(o.side, cmd.price, 1):
            return [reject(cmd, ResultCode.POST_ONLY_WOULD_TAKE)]
        events = [Replaced(*header(cmd), cmd.price, open_qty)]
        if cmd.price == o.price and open_qty <= o.leaves + o.reserve:  # keeps its place
            o.leaves = min(o.leaves, open_qty)
            o.reserve = open_qty - o.leaves
            return [*events, self._level(cmd, o.side, o.price)]
        del self.orders[o.order_id]
        events.append(self._level(cmd, o.side, o.price))
        o.price, o.leaves, o.reserve = cmd.price, open_qty, 0
        self._enter(cmd, o, events, own=False)
        self._triggers(cmd, events)
        return events


# -- the stream --------------------------------------------------------------------------------

#: One op: what it is (``_KINDS``, by a roll out of 100, so that a shrink goes to a new order),
#: then every parameter any op may use.
_ops = st.tuples(
    st.integers(0, 99),
    st.sampled_from([BUY, SELL]),
    st.sampled_from([OrdType.LIMIT] * 5 + [OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT] * 2),
    st.sampled_from([GTC, GTC, DAY, DAY, IOC, FOK, FOK]),
    st.sampled_from([StpMode.NONE, *StpMode]),
    st.integers(-3, 3),  # price, ticks from the mid toward the other side
    st.integers(1, 9),  # qty, lots
    st.sampled_from([0, 0, 1, 2, 3]),  # display, lots (when the order can rest)
    st.integers(-3, 3),  # stop price, ticks from the mid
    st.integers(1, 3),  # account
    st.integers(0, 19),  # a second roll: post-only, a market's worst price, a foreign owner
    st.integers(0, 999),  # which order a cancel or replace names
)
_KINDS = [(58, "new"), (68, "cancel"), (88, "replace"), (90, "mass"), (91, "halt"),
          (94, "resume"), (96, "eos"), (100, "snapshot")]  # fmt: skip
_streams = st.tuples(st.sampled_from(range(len(_SPECS))), st.lists(_ops, min_size=20, max_size=100))


def _kind(roll: int) -> str:
    return next(kind for bound, kind in _KINDS if roll < bound)


class _Stream:
    """Turns ops into commands against the live book, so cancels and replaces mostly hit."""

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec, self.seq, self.next_id = spec, 0, 1
        self.sent: list[tuple[int, int]] = []  # (order id, account)

    def _head(self, account: int) -> tuple[int, int, int, int, int, int, int]:
        self.seq += 1
        seq, symbol = self.seq, self.spec.symbol
        return (seq, 1000 + seq, account, 10 + account, seq, account, symbol)

    def command(self, op: tuple[Any, ...], book: Book) -> Record | None:
        """The command ``op`` stands for now; None for a snapshot or nothing to name."""
        spec, mid = self.spec, 100 * self.spec.tick
        roll, side, ord_type, tif, stp, off, lots, shown, stop_off, account, roll2, pick = op
        kind = _kind(roll)
        if kind == "new":
            price = mid + off * spec.tick if side == BUY else mid - off * spec.tick
            if ord_type in _MARKETABLE and roll2 > 2:
                price = 0  # mostly no worst price
            stops = (OrdType.STOP, OrdType.STOP_LIMIT)
            stop = mid + stop_off * spec.tick if ord_type in stops else 0
            rests = tif in (GTC, DAY) and ord_type not in _MARKETABLE
            # post-only and icebergs mostly where they are valid, now and then where not
            flags = OrderFlag.POST_ONLY if roll2 < 2 and (rests or roll2 == 0) else 0
            qty = max(spec.min_qty, lots * spec.lot)
            display = 0
            if shown and (rests or roll2 == 19):
                display = min(qty, max(spec.min_qty, shown * spec.lot))
            oid = self.next_id
            self.next_id += 1
            self.sent.append((oid, account))
            return NewOrder(*self._head(account), oid, side, ord_type, tif, flags, stp,
                            price, qty, stop, display)  # fmt: skip
        if kind in ("cancel", "replace"):
            live = sorted(book.orders) + sorted(book.stops)
            if not live and not self.sent:
                return None
            if live and pick % 10:
                oid = live[pick % len(live)]
                owner = (book.orders.get(oid) or book.stops[oid]).account
            else:  # now and then any id ever sent: most are gone
                oid, owner = self.sent[pick % len(self.sent)]
            owner = owner % 3 + 1 if roll2 == 19 else owner  # someone else's
            if kind == "cancel":
                return CancelOrder(*self._head(owner), oid)
            order = book.orders.get(oid)
            price = mid + off * spec.tick
            total = 6
            if order is not None:
                price = order.price if stop_off < 0 else price  # same price: size only
                total = order.filled + order.leaves + order.reserve
            qty = max(spec.lot, total + (lots - 6) * spec.lot)
            return ReplaceOrder(*self._head(owner), oid, price, qty)
        if kind == "mass":
            who = account if roll2 % 2 else 0
            return MassCancel(*self._head(who or 1)[:5], who, spec.symbol if roll2 % 3 else 0)
        if kind == "snapshot":
            return None
        action = {"halt": AdminAction.HALT, "resume": AdminAction.RESUME}.get(
            kind, AdminAction.END_OF_SESSION
        )
        self.seq += 1
        return AdminCommand(self.seq, 1000 + self.seq, action, spec.symbol, 0)


# -- the property ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_streams)
def test_books_model_and_restored_copy_agree_and_keep_the_specs_rules(
    stream: tuple[int, list[tuple[Any, ...]]],
) -> None:
    spec_index, ops = stream
    spec = _SPECS[spec_index]
    reference, fast, model = ReferenceBook(spec), FastBook(spec), _Model(spec)
    restored: Book = FastBook(spec)  # from the latest snapshot op: the empty book at first
    source = _Stream(spec)
    checks = _SpecChecks(spec)
    for op in ops:
        if _kind(op[0]) == "snapshot":  # a copy from the state, in the other implementation
            image = fast.snapshot()
            restored = (ReferenceBook if isinstance(restored, FastBook) else FastBook).restore(
                spec, image
            )
            assert restored.snapshot() == image
            continue
        command = source.command(op, reference)
        if command is None:
            continue
        before = reference.snapshot()
        events = reference.execute(command)
        assert fast.execute(command) == events, command
        assert model.execute(command) == events, command
        assert restored.execute(command) == events, command
        for book in (reference, fast, restored):
            book.validate_internal_state()
        assert fast.state_hash() == reference.state_hash()
        checks.after(command, events, reference, before)


class _SpecChecks:
    """What the spec says after any command, whatever the implementation."""

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.l2: dict[tuple[Side, int], tuple[int, int]] = {}
        self.open: dict[int, int] = {}  # order id -> open quantity, from the events
        self.next_trade_id = 1

    def after(self, cmd: Record, events: list[Record], book: Book, before: bytes) -> None:
        for e in events:
            if isinstance(e, BookLevel):
                if e.count:
                    self.l2[(e.side, e.price)] = (e.qty, e.count)
                else:
                    assert e.qty == 0
                    self.l2.pop((e.side, e.price), None)
            elif isinstance(e, (Accepted, Replaced)):
                self.open[e.order_id] = e.qty
            elif isinstance(e, Trade):
                assert e.trade_id == self.next_trade_id  # gapless
                self.next_trade_id += 1
                self.open[e.maker_order_id] -= e.qty
                self.open[e.taker_order_id] -= e.qty
                assert self.open[e.maker_order_id] == e.maker_leaves
                assert self.open[e.taker_order_id] == e.taker_leaves
            elif isinstance(e, OrderDone):
                assert self.open.pop(e.order_id) == e.leaves_qty
        assert self.l2 == book.levels()
        live = {**book.orders, **book.stops}
        assert self.open == {oid: o.leaves + o.reserve for oid, o in live.items()}
        prices = [book.last_price] * bool(book.last_price)
        prices += [e.price for e in events if isinstance(e, Trade)]
        for s in book.stops.values():  # no stop left waiting that a price reached
            assert all(p < s.stop_price if s.side == BUY else p > s.stop_price for p in prices)
        if isinstance(cmd, NewOrder) and isinstance(events[0], Accepted):
            self._taker(cmd, events, before)

    def _taker(self, cmd: NewOrder, events: list[Record], before: bytes) -> None:
        took = [e for e in events if isinstance(e, Trade) and e.taker_order_id == cmd.order_id]
        if cmd.flags & OrderFlag.POST_ONLY:
            assert not took
        if cmd.stp != StpMode.NONE:
            assert all(t.maker_account != cmd.account for t in took)
        if cmd.ord_type == OrdType.MARKET:
            best = ReferenceBook.restore(self.spec, before)._best(_opposite(cmd.side))
            assert best is not None
            band = best * self.spec.band_bps // 10_000
            assert all(abs(t.price - best) <= band for t in took)
        if cmd.tif == FOK and cmd.ord_type in (OrdType.LIMIT, OrdType.MARKET):
            (done,) = [e for e in events if isinstance(e, OrderDone) and e.order_id == cmd.order_id]
            if done.reason == DoneReason.EXPIRED:  # only if an IOC would not fill it all
                assert not took
                ioc = msgspec.structs.replace(cmd, tif=IOC)
                fills = ReferenceBook.restore(self.spec, before).execute(ioc)
                assert sum(t.qty for t in fills if isinstance(t, Trade) and t.taker_order_id
                           == cmd.order_id) < cmd.qty  # fmt: skip
            else:
                assert done.reason == DoneReason.FILLED


# -- FOK: all or nothing, exactly when the sweep would fill it --------------------------------

_FOK_SPEC = SymbolSpec(symbol=9, max_qty=100, iceberg_parts=20)
_makers = st.lists(  # (price, qty, display, account): asks of the FOK's account 1 and another
    st.tuples(st.integers(100, 102), st.integers(1, 6), st.integers(0, 3), st.integers(1, 2)),
    min_size=1,
    max_size=12,
)


def _limit(
    oid: int,
    account: int,
    side: Side,
    price: int,
    qty: int,
    *,
    tif: TimeInForce = GTC,
    stp: StpMode = StpMode.NONE,
    display: int = 0,
) -> NewOrder:
    head = (oid, oid, account, account, oid, account, _FOK_SPEC.symbol, oid)
    return NewOrder(*head, side, OrdType.LIMIT, tif, 0, stp, price, qty, 0, display)


@pytest.mark.parametrize("book_cls", [ReferenceBook, FastBook])
@settings(max_examples=300, deadline=None)
@given(
    makers=_makers,
    nibbles=st.lists(st.integers(1, 4), max_size=3),  # trades first: slices refresh, move back
    price=st.integers(100, 103),
    qty=st.integers(1, 40),
    stp=st.sampled_from(list(StpMode)),
)
def test_a_fok_fills_whole_exactly_when_an_ioc_in_its_place_would(
    book_cls: type[Book],
    makers: list[tuple[int, int, int, int]],
    nibbles: list[int],
    price: int,
    qty: int,
    stp: StpMode,
) -> None:
    """Icebergs' reserves (refilled at the back of their level) and the taker's own orders
    under each STP mode, dense: the FOK decides before any trade what the sweep then does."""
    book = book_cls(_FOK_SPEC)
    for i, (at, size, shown, account) in enumerate(makers):
        book.execute(_limit(i + 1, account, SELL, at, size, display=min(shown, size)))
    for i, nibble in enumerate(nibbles):
        book.execute(_limit(50 + i, 3, BUY, 102, nibble, tif=IOC))
    image = book.snapshot()
    fok = _limit(99, 1, BUY, price, qty, tif=FOK, stp=stp)
    events = book.execute(fok)
    book.validate_internal_state()
    filled = sum(e.qty for e in events if isinstance(e, Trade))
    ioc = book_cls.restore(_FOK_SPEC, image).execute(msgspec.structs.replace(fok, tif=IOC))
    could = sum(e.qty for e in ioc if isinstance(e, Trade))
    assert filled == (qty if could == qty else 0), (events, ioc)
