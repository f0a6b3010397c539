"""The order book's command flow, shared by the reference and the fast implementation.

``Book.execute(command)`` validates, then drives a few mechanics that each implementation
provides (match, rest, remove, level totals, priority order). Everything observable, the
events and their order, is fixed here, so the two books can only differ in mechanics: exactly
what the contract and differential tests compare.

Order types and rules:

- Limit orders with time in force GTC, DAY (rests until the ``END_OF_SESSION`` admin command
  expires it), IOC and FOK; post-only (rejected if it would take).
- Market orders are protected: they never trade beyond ``SymbolSpec.band_bps`` from the best
  opposite price at arrival, nor beyond their ``price`` when it is not 0 (a worst price: the
  router sets it to what it reserved for a market buy), and what is left unfilled is cancelled
  (``EXPIRED``). A market order on an empty opposite side is rejected (``NO_LIQUIDITY``).
- Stop-market and stop-limit orders wait off the book until the last trade price reaches the
  stop price (a buy stop at or above, a sell stop at or below), then enter as a market or limit
  order (a stop-market banded from its stop price). Stops that trigger together enter in
  arrival order; a stop's trades may trigger others. A stop whose trigger is already reached
  when it arrives enters at once.
- Iceberg orders (``display_qty``) show one slice at a time; when a slice is filled the next
  one goes to the back of its level (it loses priority). As the aggressor an iceberg takes
  with its whole size.
- Self-trade prevention, chosen by the aggressor: ``CANCEL_NEWEST`` cancels the aggressor's
  rest, ``CANCEL_OLDEST`` cancels the resting order and goes on matching, ``CANCEL_BOTH``
  does both. A cancelled party gets ``OrderDone(SELF_TRADE)``.
- Halted symbols refuse new orders and replaces (``SYMBOL_HALTED``; a replace to no more than
  has filled only ends the order, and goes); cancels still work.

Event order for one command (the contract the fast book must follow):

- ``NewOrder``: ``Rejected`` and nothing else; or ``Accepted``, then for each fill a ``Trade``
  followed by the maker's ``OrderDone(FILLED)`` if it filled (a self-trade cancel of a maker
  is an ``OrderDone(SELF_TRADE)`` in the same place), then one ``BookLevel`` per maker level
  changed (in the order touched), then the taker's outcome: ``OrderDone(FILLED)``, a
  ``BookLevel`` for the level it rests on (GTC, DAY), ``OrderDone(SELF_TRADE)``, or
  ``OrderDone(EXPIRED)`` with what was left (IOC, market, FOK that cannot fill completely,
  before any trade). A pending stop order gets only its ``Accepted``. Then each stop order
  the command's trades triggered: ``Triggered`` and its own fills and outcome.
- ``CancelOrder``: ``OrderDone(CANCELLED)`` and its ``BookLevel`` (a stop's: none); or ``Rejected``.
- ``ReplaceOrder``: ``Replaced``, then, when the order keeps its place (same price, no larger
  size), its level's ``BookLevel``; otherwise the ``BookLevel`` of the level it leaves, and it
  re-enters, matching like a ``NewOrder`` (trades, maker levels, its outcome, triggered stops).
  Or ``Rejected``: pending stops cannot be replaced (cancel and send a new one). A new total
  at or below what has filled cancels the balance: ``Replaced`` with qty 0, the level's
  ``BookLevel``, ``OrderDone(FILLED)``. The price collar judges only a changed price.
- ``MassCancel``: per cancelled order, in priority order (bids first), ``OrderDone(MASS_
  CANCELLED)``; then for pending stops, in arrival order; then one ``BookLevel`` per level.
- ``AdminCommand``: ``HALT`` and ``RESUME`` answer ``SymbolStatus``; ``END_OF_SESSION``
  expires every DAY order (``OrderDone(EXPIRED)`` in priority order, then pending DAY stops,
  then the levels) and answers ``SymbolStatus``. Other actions belong to the process.

Reports about a resting or triggered order that someone else's command caused (a maker
filled, a mass cancel, a stop triggered) carry that order's own routing header, so its
owner's gateway gets them. Every event carries the command's ``seq`` and ``ts_ns``: the core
never reads a clock, so the same commands always give the same events.

Bounds. Each order's size is checked (``max_qty``), but a level's total, ``BookLevel.qty``, is
not: behind the router it cannot pass int64, since every resting order holds its size (a
sell its base, a buy at least its qty in quote) in an asset whose total over all accounts the
router keeps within 2**63-1; a bare book fed orders no router would accept could publish a
level no reader decodes.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import msgspec
from sortedcontainers import SortedList

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
from procs.core.account_orders import AccountOrders
from procs.core.order_checks import RESTS as _RESTS
from procs.core.order_checks import OrderChecks
from procs.core.order_events import done as _done
from procs.core.order_events import header as _header
from procs.core.order_events import reject as _reject
from procs.core.resting import (
    BookState,
    RestingOrder,
    order_fields,
    order_from_fields,
)
from procs.core.symbols import SymbolSpec

B = TypeVar("B", bound="Book")
#: What a book executes; every one has ``seq`` and ``ts_ns``.
Command = OrderRecord | MassCancel | AdminCommand
#: An L2 book's levels, as ``BookLevel`` events tell them: (side, price) -> (qty, order count).
LevelMap = dict[tuple[Side, int], tuple[int, int]]
#: A book's handler of each order command type (``Book.order_handlers``).
OrderHandlers = dict[type[Record], Callable[[Any], list[Record]]]

_MAX = 2**64  # above any arrival or order id: an open upper bound in (stop, arrival, id)


class Book(OrderChecks, ABC):
    """One symbol's book. ``execute(command)`` returns the events it caused."""

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.orders: dict[int, RestingOrder] = {}  # resting, by id
        self.by_account = AccountOrders()  # ids resting, by account (a mass cancel's)
        self.stops: dict[int, RestingOrder] = {}  # pending stops, by id
        # Pending stops by trigger order: buys lowest stop first, sells highest first.
        self._buy_stops: SortedList[tuple[int, int, int]] = SortedList()  # (stop, arrival, id)
        self._sell_stops: SortedList[tuple[int, int, int]] = SortedList()  # (-stop, ...)
        self.next_trade_id = 1  # gapless per symbol
        self.next_arrival = 0
        self.last_price = 0  # of the last trade; 0 before the first
        self.halted = False
        self._taker_self_traded = False  # set by _match when STP cancels the aggressor

    # -- mechanics, per implementation ------------------------------------------------------

    @abstractmethod
    def _crossable(self, side: Side, price: int, enough: int) -> int:
        """Resting visible opposite quantity a ``side`` order at ``price`` could take; may
        stop counting once it reaches ``enough``."""

    @abstractmethod
    def _crossing_levels(
        self, side: Side, price: int, account: int | None
    ) -> Iterator[tuple[int, Iterable[RestingOrder] | None]]:
        """The opposite levels a ``side`` order at ``price`` crosses, best first: each as its
        size (visible leaves plus icebergs' reserve) and, when ``account`` (None: nobody) has
        an order there, its orders in queue order, else None. This is FOK's test, free to
        repeat, so a level without ``account`` must not be walked (O(1) in the fast book)."""

    @abstractmethod
    def _best(self, side: Side) -> int | None:
        """The best price resting on ``side``, or None when it is empty."""

    @abstractmethod
    def _match(
        self, cmd: OrderRecord, taker: RestingOrder, events: list[Record]
    ) -> list[tuple[Side, int]]:
        """Fill ``taker`` against the opposite side in priority order while it crosses.

        Per maker: a self-trade (same account, ``taker.stp`` set) applies the STP mode; else
        a fill appends ``_trade`` and sets ``last_price``. A filled iceberg slice is refreshed
        from its reserve at the back of its level; a filled order is dropped from ``orders``
        after its ``_done_resting(FILLED)``; an STP-cancelled maker gets ``_done_resting(
        SELF_TRADE)``. When STP cancels the taker, matching stops and ``_taker_self_traded``
        is set. Returns the maker levels that changed, in the order touched."""

    @abstractmethod
    def _rest(self, order: RestingOrder) -> None:
        """Put ``order`` at the back of its price level (its ``arrival`` is set)."""

    @abstractmethod
    def _unlink(self, order: RestingOrder) -> None:
        """Take ``order`` out of its level (``orders`` is the caller's business)."""

    @abstractmethod
    def _shrink(self, order: RestingOrder, leaves: int, reserve: int) -> None:
        """Set ``order``'s visible leaves and reserve to values no larger, keeping its
        place."""

    @abstractmethod
    def _level_totals(self, side: Side, price: int) -> tuple[int, int]:
        """(total visible leaves, order count) resting at ``price`` on ``side``."""

    @abstractmethod
    def _priority(self) -> Iterator[RestingOrder]:
        """Every resting order: bids then asks, each in priority order."""

    @abstractmethod
    def validate_internal_state(self) -> None:
        """Raise ``AssertionError`` naming the first broken invariant."""

    # -- commands ----------------------------------------------------------------------------

    def order_handlers(self) -> OrderHandlers:
        """What executes each order command (``NewOrder``, ``CancelOrder``, ``ReplaceOrder``)
        by its type: ``execute`` here; a book with faster paths names them."""
        return dict.fromkeys((NewOrder, CancelOrder, ReplaceOrder), self.execute)

    def execute(self, command: Record) -> list[Record]:
        if isinstance(command, NewOrder):
            return self._new(command)
        if isinstance(command, CancelOrder):
            return self._cancel(command)
        if isinstance(command, ReplaceOrder):
            return self._replace(command)
        if isinstance(command, MassCancel):
            return self._mass_cancel(command)
        if isinstance(command, AdminCommand):
            return self._admin(command)
        raise TypeError(f"the matcher does not execute {type(command).__name__} records")

    def _new(self, cmd: NewOrder) -> list[Record]:
        problem = self._check_order(cmd)
        if problem is not None:
            return [_reject(cmd, problem)]
        accepted = Accepted(
            cmd.seq, cmd.ts_ns, cmd.gateway, cmd.session, cmd.client_ref, cmd.account,
            cmd.symbol, cmd.order_id, cmd.side, cmd.price, cmd.qty, cmd.ord_type, cmd.tif,
            cmd.flags, cmd.stop_price, cmd.display_qty,
        )  # fmt: skip
        events: list[Record] = [accepted]
        order = RestingOrder(
            cmd.order_id, cmd.account, cmd.side, cmd.price, cmd.qty, 0, 0,
            cmd.gateway, cmd.session, cmd.client_ref, cmd.tif, cmd.stp, cmd.display_qty, 0,
            cmd.ord_type, cmd.stop_price, bool(cmd.flags & OrderFlag.POST_ONLY),
        )  # fmt: skip
        if cmd.ord_type in (OrdType.STOP, OrdType.STOP_LIMIT):
            order.arrival = self.next_arrival
            self.next_arrival += 1
            self._park_stop(order)
        else:
            self._take(cmd, order, events, triggered=False)
        if self.stops:
            self._trigger_stops(cmd, events)
        return events

    def _take(
        self, cmd: OrderRecord, order: RestingOrder, events: list[Record], *, triggered: bool
    ) -> None:
        """An order arriving (new, or a triggered stop): set a market order's protection
        limit, check FOK, then enter it."""
        if order.ord_type in (OrdType.MARKET, OrdType.STOP):
            # a triggered stop-market's band is from its trigger price, as venues bound it
            # (the router caps a buy's at the same): from the best bid left after the sweep
            # that reached it, a sell stop at 100 sold at 60 (review 42)
            limit = self._protection(order.side, order.stop_price if triggered else 0)
            if limit is None:  # a triggered stop-market: nothing to trade with
                events.append(self._report(cmd, order, DoneReason.EXPIRED, triggered))
                return
            cap = order.price  # the sender's worst price (the router's reservation), 0: none
            if cap:
                limit = min(limit, cap) if order.side == Side.BUY else max(limit, cap)
            order.price = limit
        if order.tif == TimeInForce.FOK and self._fillable(order) < order.leaves:
            events.append(self._report(cmd, order, DoneReason.EXPIRED, triggered))
            return
        self._enter(cmd, order, events, triggered=triggered)

    def _fillable(self, taker: RestingOrder) -> int:
        """How much of ``taker`` the book would fill (FOK's test), as ``_match`` will sweep:
        an iceberg's reserve counts (it refills); under self-trade prevention an own order
        is skipped (CANCEL_OLDEST removes it) or ends the count (CANCEL_NEWEST and
        CANCEL_BOTH cancel the taker there), and then of its level only what is ahead of it
        counts, icebergs by their visible slice (a refill queues behind it).

        Only a level where the taker's own orders rest is walked; any other adds its size
        whole, so a FOK that cannot fill costs the levels it crosses, not their orders (it
        changes nothing, and a client may send it again and again)."""
        total = 0
        stp = taker.stp
        account = None if stp == StpMode.NONE else taker.account
        for size, orders in self._crossing_levels(taker.side, taker.price, account):
            if orders is None:
                total += size
            else:
                before, ahead = total, 0  # ahead: the visible quantity before, in this level
                for maker in orders:
                    if maker.account == account:
                        if stp == StpMode.CANCEL_OLDEST:
                            continue
                        return before + ahead
                    ahead += maker.leaves
                    total += maker.leaves + maker.reserve
            if total >= taker.leaves:
                break
        return total

    def _enter(
        self, cmd: OrderRecord, order: RestingOrder, events: list[Record], *, triggered: bool
    ) -> None:
        """Match ``order`` as the aggressor, then rest, expire or finish it."""
        touched = self._match(cmd, order, events)
        for side, price in touched:
            events.append(self._level(cmd, side, price))
        if self._taker_self_traded:
            self._taker_self_traded = False
            events.append(self._report(cmd, order, DoneReason.SELF_TRADE, triggered))
        elif order.leaves == 0:
            events.append(self._report(cmd, order, DoneReason.FILLED, triggered))
        elif order.tif not in _RESTS or order.ord_type in (OrdType.MARKET, OrdType.STOP):
            events.append(self._report(cmd, order, DoneReason.EXPIRED, triggered))
        else:
            if order.display and order.leaves > order.display:
                order.reserve = order.leaves - order.display
                order.leaves = order.display
            order.arrival = self.next_arrival
            self.next_arrival += 1
            self._rest(order)
            self.orders[order.order_id] = order
            self.by_account.add(order, self.orders)
            events.append(self._level(cmd, order.side, order.price))

    def _cancel(self, cmd: CancelOrder) -> list[Record]:
        order = self.orders.get(cmd.order_id) or self.stops.get(cmd.order_id)
        problem = self._check_owner(cmd, order)
        if problem is not None or order is None:
            return [_reject(cmd, problem or ResultCode.UNKNOWN_ORDER)]
        done = _done(cmd, order, DoneReason.CANCELLED)  # to the requester: the cancel's header
        if order.order_id in self.stops:
            self._unpark_stop(order)
            return [done]
        self._remove(order)
        return [done, self._level(cmd, order.side, order.price)]

    def _replace(self, cmd: ReplaceOrder) -> list[Record]:
        order = self.orders.get(cmd.order_id)
        problem = self._check_owner(cmd, order or self.stops.get(cmd.order_id))
        if problem is None and order is None:
            problem = ResultCode.INVALID_ORDER  # a pending stop: cancel it and send a new one
        if problem is None and order is not None:
            problem = self._check_qty(cmd.order_qty)
        if problem is None and order is not None and cmd.order_qty <= order.filled:
            # overtaken by fills: it ends, and no price enters the book, so neither the
            # collar (which the racing fills moved) nor a halt (a cancel goes) may keep the
            # balance resting, to fill past the total its owner asked for (review 51)
            return self._replace_to_filled(cmd, order)
        if problem is None and self.halted:
            problem = ResultCode.SYMBOL_HALTED
        if problem is None and order is not None and cmd.price != order.price:
            # the collar judges a price coming in: a size change at the same price brings none
            problem = self._check_limit(cmd.price)
        leaves, grows = 0, True
        if problem is None and order is not None:
            leaves = cmd.order_qty - order.filled  # what fills left of the new total
            grows = cmd.price != order.price or leaves > order.leaves + order.reserve
            if grows and order.display and -(-leaves // order.display) > self.spec.iceberg_parts:
                problem = ResultCode.INVALID_QTY  # grown or moved past its slices (review 227)
        if (
            problem is None
            and order is not None
            and order.post_only
            and self._crossable(order.side, cmd.price, 1) > 0
        ):
            problem = ResultCode.POST_ONLY_WOULD_TAKE  # the order stays as it was
        if problem is not None or order is None:
            return [_reject(cmd, problem or ResultCode.UNKNOWN_ORDER)]
        events: list[Record] = [Replaced(*_header(cmd), price=cmd.price, qty=leaves)]
        if not grows:  # smaller at the same price keeps its place; an iceberg's reserve goes first
            visible = min(order.leaves, leaves)
            self._shrink(order, visible, leaves - visible)
            events.append(self._level(cmd, order.side, order.price))
            return events
        old_price = order.price
        self._remove(order)
        events.append(self._level(cmd, order.side, old_price))
        order.price, order.leaves, order.reserve = cmd.price, leaves, 0
        self._enter(cmd, order, events, triggered=False)
        if self.stops:
            self._trigger_stops(cmd, events)
        return events

    def _replace_to_filled(self, cmd: ReplaceOrder, order: RestingOrder) -> list[Record]:
        """A replace to a total at or below what has filled (it raced fills: FIX's in-flight
        case) cancels the balance: ``Replaced`` with nothing open, the level, and the order
        done as filled. Nothing more can fill it beyond the total its owner asked for."""
        self._remove(order)
        events: list[Record] = [
            Replaced(*_header(cmd), price=order.price, qty=0),
            self._level(cmd, order.side, order.price),
        ]
        order.leaves = order.reserve = 0
        events.append(_done(cmd, order, DoneReason.FILLED))
        return events

    def _mass_cancel(self, cmd: MassCancel) -> list[Record]:
        if cmd.symbol not in (0, self.spec.symbol):
            return []
        mine = None if cmd.account == 0 else self.by_account.of(cmd.account, self.orders)
        return self._remove_all(
            cmd, DoneReason.MASS_CANCELLED, lambda o: cmd.account in (0, o.account), mine
        )

    def _admin(self, cmd: AdminCommand) -> list[Record]:
        if cmd.symbol not in (0, self.spec.symbol):
            return []
        events: list[Record] = []
        if cmd.action == AdminAction.HALT:
            self.halted = True
        elif cmd.action == AdminAction.RESUME:
            self.halted = False
        elif cmd.action == AdminAction.END_OF_SESSION:
            events = self._remove_all(cmd, DoneReason.EXPIRED, lambda o: o.tif == TimeInForce.DAY)
        else:
            return []  # snapshot, shutdown: the process's business
        status = TradingStatus.HALTED if self.halted else TradingStatus.OPEN
        events.append(SymbolStatus(cmd.seq, cmd.ts_ns, self.spec.symbol, cmd.action, status))
        return events

    def _remove_all(
        self,
        cmd: MassCancel | AdminCommand,
        reason: DoneReason,
        chosen: Callable[[RestingOrder], bool],
        resting: list[RestingOrder] | None = None,
    ) -> list[Record]:
        """Remove the resting orders ``chosen`` (``resting``: those, in priority order, where
        known: an account's, from ``by_account``) and the pending stops, in arrival order."""
        events: list[Record] = []
        touched: dict[tuple[Side, int], None] = {}  # levels in the order first emptied
        # (an index's list checked too: its ids trust the router never to reuse one, review 92)
        resting = [o for o in (self._priority() if resting is None else resting) if chosen(o)]
        for order in resting:
            self._remove(order)
            events.append(self._done_resting(cmd, order, reason))
            touched[(order.side, order.price)] = None
        for order in sorted([o for o in self.stops.values() if chosen(o)], key=_arrival):
            self._unpark_stop(order)  # (the stops chosen sorted, not all: a mass cancel of
            events.append(self._done_resting(cmd, order, reason))  # one account's, say)
        events += [self._level(cmd, side, price) for side, price in touched]
        return events

    # -- stops -------------------------------------------------------------------------------

    def _park_stop(self, order: RestingOrder) -> None:
        self.stops[order.order_id] = order
        if order.side == Side.BUY:
            self._buy_stops.add((order.stop_price, order.arrival, order.order_id))
        else:
            self._sell_stops.add((-order.stop_price, order.arrival, order.order_id))

    def _unpark_stop(self, order: RestingOrder) -> None:
        del self.stops[order.order_id]
        if order.side == Side.BUY:
            self._buy_stops.remove((order.stop_price, order.arrival, order.order_id))
        else:
            self._sell_stops.remove((-order.stop_price, order.arrival, order.order_id))

    def _trigger_stops(self, cmd: OrderRecord, events: list[Record]) -> None:
        """Enter every stop a trade of this command reached, or the last trade price (a stop
        that just arrived), one by one. Any price a sweep traded at counts, not only its
        last. Stops reached together enter in arrival order; the stops a triggered stop's
        own trades reach queue behind those already triggered, and none goes back to wait."""
        queue: deque[RestingOrder] = deque()
        scanned = 0  # events before this were looked at for trades
        while True:
            low = high = self.last_price
            if not low:
                return  # no trade yet: nothing can trigger
            for event in events[scanned:]:
                if type(event) is Trade:
                    price = event.price
                    if price < low:
                        low = price
                    elif price > high:
                        high = price
            scanned = len(events)
            reached = [
                *self._buy_stops.irange(maximum=(high, _MAX, _MAX)),
                *self._sell_stops.irange(maximum=(-low, _MAX, _MAX)),
            ]
            for _, _, oid in sorted(reached, key=lambda entry: entry[1]):
                order = self.stops[oid]
                self._unpark_stop(order)
                queue.append(order)
            if not queue:
                return
            order = queue.popleft()
            events.append(
                Triggered(
                    *(cmd.seq, cmd.ts_ns, order.gateway, order.session, order.client_ref),
                    *(order.account, self.spec.symbol, order.order_id),
                    stop_price=order.stop_price,
                    # the limit it enters with: a stop-market's is its protection, 0 here
                    # (its price until now is the router's cap)
                    price=order.price if order.ord_type == OrdType.STOP_LIMIT else 0,
                )
            )
            self._take(cmd, order, events, triggered=True)

    # -- events ------------------------------------------------------------------------------

    def _level(self, cmd: Command, side: Side, price: int) -> BookLevel:
        qty, count = self._level_totals(side, price)
        return BookLevel(cmd.seq, cmd.ts_ns, self.spec.symbol, side, price, qty, count)

    def _report(
        self, cmd: OrderRecord, order: RestingOrder, reason: DoneReason, triggered: bool
    ) -> OrderDone:
        """The aggressor's outcome: under the command's header, or the order's own when a
        trigger (not its owner's command) brought it in."""
        if triggered:
            return self._done_resting(cmd, order, reason)
        return _done(cmd, order, reason)

    def _done_resting(self, cmd: Command, order: RestingOrder, reason: DoneReason) -> OrderDone:
        """An event about a resting order caused by someone else's command (a maker filled, a
        mass cancel): the resting order's own routing header, so its owner's gateway gets the
        report."""
        return OrderDone(
            cmd.seq, cmd.ts_ns, order.gateway, order.session, order.client_ref,
            order.account, self.spec.symbol, order.order_id, reason, order.filled,
            order.leaves + order.reserve,
        )  # fmt: skip

    def _remove(self, order: RestingOrder) -> None:
        self._unlink(order)
        del self.orders[order.order_id]

    def _trade(
        self, cmd: OrderRecord, maker: RestingOrder, taker: RestingOrder, fill: int
    ) -> Trade:
        trade = Trade(
            cmd.seq, cmd.ts_ns, self.next_trade_id, self.spec.symbol, maker.price, fill,
            taker.side, maker.order_id, maker.account, maker.gateway,
            maker.leaves + maker.reserve, taker.order_id, taker.account, taker.gateway,
            taker.leaves,
        )  # fmt: skip
        self.next_trade_id += 1
        return trade

    # -- state -------------------------------------------------------------------------------

    def levels(self) -> LevelMap:
        """The L2 view: (side, price) -> (visible leaves, order count) of every level with
        orders."""
        out: LevelMap = {}
        for order in self._priority():
            key = (order.side, order.price)
            qty, count = out.get(key, (0, 0))
            out[key] = (qty + order.leaves, count + 1)
        return out

    def state(self) -> BookState:
        return BookState(
            symbol=self.spec.symbol,
            next_trade_id=self.next_trade_id,
            next_arrival=self.next_arrival,
            last_price=self.last_price,
            halted=self.halted,
            orders=[order_fields(o) for o in self._priority()],
            stops=[order_fields(o) for o in sorted(self.stops.values(), key=lambda o: o.arrival)],
        )

    def state_hash(self) -> str:
        """A digest of the book's state that any implementation computes the same way."""
        return hashlib.blake2b(msgspec.msgpack.encode(self.state()), digest_size=16).hexdigest()

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.state())

    @classmethod
    def restore(cls: type[B], spec: SymbolSpec, snapshot: bytes) -> B:
        return cls.from_state(spec, msgspec.msgpack.decode(snapshot, type=BookState))

    @classmethod
    def from_state(cls: type[B], spec: SymbolSpec, state: BookState) -> B:
        if state.symbol != spec.symbol:
            raise ValueError(f"snapshot is of symbol {state.symbol}, not {spec.symbol}")
        book = cls(spec)
        book.next_trade_id = state.next_trade_id
        book.next_arrival = state.next_arrival
        book.last_price = state.last_price
        book.halted = state.halted
        for fields in state.orders:
            order = order_from_fields(fields)
            book._rest(order)  # in priority order, so each goes to the back of its level
            book.orders[order.order_id] = order
        book.by_account.rebuild(book.orders)
        for fields in state.stops:
            book._park_stop(order_from_fields(fields))
        return book


def _arrival(order: RestingOrder) -> int:
    return order.arrival


def _crosses(side: Side, price: int, resting_price: int) -> bool:
    return price >= resting_price if side == Side.BUY else price <= resting_price
