"""The fast book: sorted price levels, FIFO orders within a level, and inlined common paths.

Each side is a ``sortedcontainers.SortedList`` of level keys beside a plain dict from key to
``Level``, keyed so that the best price comes first on both sides (asks by price, bids by
minus the price). A level keeps its orders in an insertion-ordered dict (FIFO, with O(1)
cancel from the middle), their visible total, so a level change is reported without a scan,
and their icebergs' reserve total, so a FOK's test adds up levels, not orders.

Where the time goes (PERF-NOTES: per-order work should be a dict operation) and what this
module does about it:

- The sorted container is the expensive part (~1 us per insert or remove, against ~0.1 us
  for a dict operation), and the exchange-core mix moves an order to a new price in 82% of
  commands. So a level that empties stays listed, empty, and is reused when an order comes
  back to its price; only empty levels at the front are dropped (so ``best`` is always a
  live level), and when empty levels outnumber live ones past ``SWEEP_AT`` they are swept in
  one rebuild. With prices near a moving mid the set of keys is nearly stable, and most
  commands never touch the sorted container.
- The best key of each side is cached (``INF`` when the side is empty): whether a price
  crosses is one comparison.
- ``execute`` handles the common commands inline (a limit order that does not cross, a
  cancel, a replace that does not cross) and builds events with positional arguments; every
  other case (matching, stops, icebergs, STP, halts, rejects) takes ``Book``'s general flow
  on the same mechanics. The differential tests compare both paths with the reference book.
- A FOK that cannot fill changes nothing, so a client may send it again and again: its test
  (``Book._fillable``) must cost the levels it crosses, never their orders. Under self-trade
  prevention it must still walk a level where the taker's own orders rest, so a level must
  say whether an account has orders there. Counting orders per account on every change
  would cost the move-heavy mix ~5% (a dict update on each of a move's two levels), and
  even a test "is this level counted?" at each change measured 2-3%, for a question most
  levels are never asked. So a level's orders are a plain dict until a FOK under STP first
  asks about it; then they become ``CountedOrders``, a dict that keeps the count itself on
  every ``[]=`` and ``del``, so the inline paths are the same code either way and cannot
  forget it. A level is unlisted only when empty, so each resting order is counted in at
  most one such conversion: O(1) per order, amortised, and a repeated FOK walks nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from procs.common.records import (
    Accepted,
    BookLevel,
    CancelOrder,
    NewOrder,
    OrderDone,
    OrderRecord,
    Record,
    Replaced,
    ReplaceOrder,
    Trade,
)
from procs.common.types import DoneReason, OrdType, Side, StpMode, TimeInForce
from procs.core.book import Book, OrderHandlers
from procs.core.book_side import INF, BookSide, CountedOrders, Level
from procs.core.order_checks import RESTS as _RESTS
from procs.core.order_events import done as _done
from procs.core.resting import RestingOrder
from procs.core.symbols import SymbolSpec

_BUY = Side.BUY
_LIMIT = OrdType.LIMIT
_IOC = TimeInForce.IOC
_FOK = TimeInForce.FOK
_SELL = Side.SELL
_PROTECTED = (OrdType.MARKET, OrdType.STOP)  # takers whose price is a protection limit
_CANCELLED = DoneReason.CANCELLED
_EXPIRED = DoneReason.EXPIRED
_FILLED = DoneReason.FILLED


class FastBook(Book):
    def __init__(self, spec: SymbolSpec) -> None:
        super().__init__(spec)
        self.bids = BookSide()  # key: -price
        self.asks = BookSide()  # key: price

    # -- the common commands, inline ---------------------------------------------------------

    def order_handlers(self) -> OrderHandlers:
        return {
            NewOrder: self._fast_new,
            CancelOrder: self._fast_cancel,
            ReplaceOrder: self._fast_replace,
        }

    def execute(self, command: Record) -> list[Record]:
        kind = type(command)
        if kind is ReplaceOrder:
            return self._fast_replace(command)  # type: ignore[arg-type]
        if kind is NewOrder:
            return self._fast_new(command)  # type: ignore[arg-type]
        if kind is CancelOrder:
            return self._fast_cancel(command)  # type: ignore[arg-type]
        return Book.execute(self, command)

    def _fast_new(self, cmd: NewOrder) -> list[Record]:
        """A plain limit order (GTC, DAY or IOC; no flags, iceberg or stop); anything else
        takes ``Book._new``."""
        spec = self.spec
        price, qty, side, oid = cmd.price, cmd.qty, cmd.side, cmd.order_id
        if (
            cmd.ord_type is not _LIMIT  # (an enum member: ``is`` skips IntEnum's ``!=``)
            or cmd.flags
            or cmd.display_qty
            or cmd.stop_price
            or cmd.tif == _FOK
            or self.halted
            or cmd.symbol != spec.symbol
            or spec.limit_band_bps
            or price <= 0
            or price % spec.tick
            or qty % spec.lot
            or qty < spec.min_qty  # (two tests: a chained comparison costs more)
            or qty > spec.max_qty
            or oid in self.orders
            or oid in self.stops
        ):
            return self._new(cmd)
        seq, ts, account, symbol = cmd.seq, cmd.ts_ns, cmd.account, spec.symbol
        gateway, session, ref = cmd.gateway, cmd.session, cmd.client_ref
        tif = cmd.tif  # a plain limit: no flags, stop or iceberg
        accepted = Accepted(
            seq, ts, gateway, session, ref, account, symbol, oid, side, price, qty, _LIMIT, tif
        )
        if self.asks.best <= price if side == _BUY else self.bids.best <= -price:
            events: list[Record] = [accepted]  # it crosses: match it (checks are done)
            order = RestingOrder(
                oid, account, side, price, qty, 0, 0, gateway, session, ref, tif, cmd.stp
            )
            self._sweep(cmd, order, events)
            if self.stops:
                self._trigger_stops(cmd, events)
            return events
        if tif == _IOC:
            return [
                accepted,
                OrderDone(seq, ts, gateway, session, ref, account, symbol, oid, _EXPIRED, 0, qty),
            ]
        arrival = self.next_arrival
        self.next_arrival = arrival + 1
        order = RestingOrder(
            oid, account, side, price, qty, 0, arrival, gateway, session, ref, tif, cmd.stp
        )
        orders = self.orders
        orders[oid] = order
        index = self.by_account  # its ``add``, inline
        ids = index.ids.get(account)
        if ids is None:
            index.ids[account] = [oid]
        else:
            ids.append(oid)
        index.added += 1
        if index.added > index.limit:
            index.rebuild(orders)
        if side == _BUY:
            book_side, key = self.bids, -price
        else:
            book_side, key = self.asks, price
        level = book_side.levels.get(key)
        if level is not None and level.orders:  # a live level: the usual case, inline
            level.orders[oid] = order
            level.qty += qty
        else:
            level = book_side.add(key, order)
        return [accepted, BookLevel(seq, ts, symbol, side, price, level.qty, len(level.orders))]

    def _fast_cancel(self, cmd: CancelOrder) -> list[Record]:
        oid = cmd.order_id
        order = self.orders.get(oid)
        if order is None or order.account != cmd.account or cmd.symbol != self.spec.symbol:
            return self._cancel(cmd)
        del self.orders[oid]
        side, price = order.side, order.price
        if side == _BUY:
            book_side, key = self.bids, -price
        else:
            book_side, key = self.asks, price
        level = book_side.levels[key]
        orders = level.orders
        del orders[oid]
        level.qty -= order.leaves
        if order.reserve:
            level.reserve -= order.reserve
        if not orders:
            book_side.emptied(key)
        seq, ts, symbol = cmd.seq, cmd.ts_ns, cmd.symbol
        done = OrderDone(
            seq, ts, cmd.gateway, cmd.session, cmd.client_ref, cmd.account, symbol, oid,
            _CANCELLED, order.filled, order.leaves + order.reserve,
        )  # fmt: skip
        return [
            done,
            BookLevel(seq, ts, symbol, side, price, level.qty, len(orders)),
        ]

    def _fast_replace(self, cmd: ReplaceOrder) -> list[Record]:
        """A replace of a plain resting order (no iceberg, not post-only); else
        ``Book._replace``."""
        spec = self.spec
        oid, price, qty = cmd.order_id, cmd.price, cmd.order_qty
        order = self.orders.get(oid)
        if (
            order is None
            or order.account != cmd.account
            or order.display
            or order.post_only
            or cmd.symbol != spec.symbol
            or self.halted
            or spec.limit_band_bps
            or price <= 0
            or price % spec.tick
            or qty % spec.lot
            or not spec.min_qty <= qty <= spec.max_qty
            or qty <= order.filled
        ):
            return self._replace(cmd)
        qty -= order.filled  # the new total's open part
        side, old_price = order.side, order.price
        if side == _BUY:
            book_side, old_key, key = self.bids, -old_price, -price
            crosses = self.asks.best <= price
        else:
            book_side, old_key, key = self.asks, old_price, price
            crosses = self.bids.best <= -price
        keeps_place = price == old_price and qty <= order.leaves
        seq, ts, symbol = cmd.seq, cmd.ts_ns, cmd.symbol
        replaced = Replaced(
            seq, ts, cmd.gateway, cmd.session, cmd.client_ref, cmd.account, symbol, oid, price, qty
        )
        level = book_side.levels[old_key]
        orders = level.orders
        if keeps_place:
            level.qty -= order.leaves - qty
            order.leaves = qty
            return [replaced, BookLevel(seq, ts, symbol, side, price, level.qty, len(orders))]
        del orders[oid]
        level.qty -= order.leaves  # not an iceberg: no reserve
        if not orders:
            book_side.emptied(old_key)
        old = BookLevel(seq, ts, symbol, side, old_price, level.qty, len(orders))
        order.price = price
        order.leaves = qty
        if crosses:  # it re-enters as the aggressor (checks are done)
            del self.orders[oid]
            events: list[Record] = [replaced, old]
            self._sweep(cmd, order, events)
            if self.stops:
                self._trigger_stops(cmd, events)
            return events
        order.arrival = arrival = self.next_arrival
        self.next_arrival = arrival + 1
        target = book_side.levels.get(key)
        if target is not None and target.orders:  # a live level: the usual case, inline
            target.orders[oid] = order
            target.qty += qty
        else:
            target = book_side.add(key, order)
        return [
            replaced,
            old,
            BookLevel(seq, ts, symbol, side, price, target.qty, len(target.orders)),
        ]

    def _sweep(self, cmd: OrderRecord, taker: RestingOrder, events: list[Record]) -> None:
        """``Book._enter`` for a limit taker without self-trade prevention or a display size
        (the inline paths' crossing orders): ``_fill`` matches it, then the levels it touched
        are reported and the taker filled, expired or rested. Any other taker takes
        ``_enter``."""
        if taker.stp or taker.display or taker.ord_type in _PROTECTED:
            self._enter(cmd, taker, events, triggered=False)
            return
        seq, ts, symbol = cmd.seq, cmd.ts_ns, self.spec.symbol
        side = taker.side
        maker_side = _SELL if side == _BUY else _BUY
        for level in self._fill(seq, ts, taker, events):
            events.append(
                BookLevel(seq, ts, symbol, maker_side, level.price, level.qty, len(level.orders))
            )
        if taker.leaves == 0:
            events.append(_done(cmd, taker, _FILLED))
        elif taker.tif not in _RESTS:
            events.append(_done(cmd, taker, _EXPIRED))
        else:
            taker.arrival = arrival = self.next_arrival
            self.next_arrival = arrival + 1
            price = taker.price
            level = self.bids.add(-price, taker) if side == _BUY else self.asks.add(price, taker)
            self.orders[taker.order_id] = taker
            self.by_account.add(taker, self.orders)
            events.append(BookLevel(seq, ts, symbol, side, price, level.qty, len(level.orders)))

    def _fill(self, seq: int, ts: int, taker: RestingOrder, events: list[Record]) -> list[Level]:
        """``_match`` without self-trade prevention, inline: each fill's trade and each
        filled maker's done built in place. Returns the levels it traded at."""
        if taker.side == _BUY:
            opposite, limit = self.asks, taker.price
        else:
            opposite, limit = self.bids, -taker.price
        symbol, index, side = self.spec.symbol, self.orders, taker.side
        toid, taccount, tgateway = taker.order_id, taker.account, taker.gateway
        leaves, trade_id, levels = taker.leaves, self.next_trade_id, opposite.levels
        touched: list[Level] = []
        while leaves and opposite.best <= limit:
            key = opposite.best
            level = levels[key]
            touched.append(level)
            orders, price = level.orders, level.price
            while leaves and orders:
                maker = next(iter(orders.values()))
                fill = maker.leaves if maker.leaves < leaves else leaves
                maker.leaves -= fill
                maker.filled += fill
                leaves -= fill
                level.qty -= fill
                moid = maker.order_id
                events.append(Trade(
                    seq, ts, trade_id, symbol, price, fill, side, moid, maker.account,
                    maker.gateway, maker.leaves + maker.reserve, toid, taccount, tgateway, leaves,
                ))  # fmt: skip
                trade_id += 1
                if maker.leaves == 0:
                    del orders[moid]
                    if maker.reserve:
                        self._refresh(level, maker)
                    else:
                        del index[moid]
                        events.append(OrderDone(
                            seq, ts, maker.gateway, maker.session, maker.client_ref,
                            maker.account, symbol, moid, _FILLED, maker.filled, 0,
                        ))  # fmt: skip
            self.last_price = price
            if not orders:
                opposite.emptied(key)
        taker.filled += taker.leaves - leaves
        taker.leaves = leaves
        self.next_trade_id = trade_id
        return touched

    # -- mechanics for Book's general flow -----------------------------------------------------

    def _side_key(self, side: Side, price: int) -> tuple[BookSide, int]:
        return (self.bids, -price) if side == _BUY else (self.asks, price)

    def _crossable(self, side: Side, price: int, enough: int) -> int:
        opposite = self.asks if side == _BUY else self.bids
        limit = price if side == _BUY else -price  # opposite keys <= limit cross
        total = 0
        for key in opposite.keys.irange(maximum=limit):
            total += opposite.levels[key].qty
            if total >= enough:
                break
        return total

    def _crossing_levels(
        self, side: Side, price: int, account: int | None
    ) -> Iterator[tuple[int, Iterable[RestingOrder] | None]]:
        opposite = self.asks if side == _BUY else self.bids
        levels = opposite.levels
        for key in opposite.keys.irange(maximum=price if side == _BUY else -price):
            level = levels[key]
            own = account is not None and level.rests(account)
            yield level.qty + level.reserve, level.orders.values() if own else None

    def _best(self, side: Side) -> int | None:
        book_side = self.bids if side == _BUY else self.asks
        best = book_side.best
        return None if best == INF else book_side.levels[best].price

    def _match(
        self, cmd: OrderRecord, taker: RestingOrder, events: list[Record]
    ) -> list[tuple[Side, int]]:
        touched: list[tuple[Side, int]] = []
        if taker.side == _BUY:
            opposite, limit, maker_side = self.asks, taker.price, Side.SELL
        else:
            opposite, limit, maker_side = self.bids, -taker.price, _BUY
        index = self.orders
        stp, account = taker.stp, taker.account
        while taker.leaves and opposite.best <= limit:
            key = opposite.best
            level = opposite.levels[key]
            orders = level.orders
            mark = len(events)  # the level changed if this level added events
            while taker.leaves and orders:
                maker = next(iter(orders.values()))
                if stp and maker.account == account:
                    if self._self_trade(cmd, stp, level, maker, events):
                        break
                    continue
                fill = min(taker.leaves, maker.leaves)
                maker.leaves -= fill
                maker.filled += fill
                taker.leaves -= fill
                taker.filled += fill
                level.qty -= fill
                self.last_price = level.price
                events.append(self._trade(cmd, maker, taker, fill))
                if maker.leaves == 0:
                    del orders[maker.order_id]
                    if maker.reserve:
                        self._refresh(level, maker)
                    else:
                        del index[maker.order_id]
                        events.append(self._done_resting(cmd, maker, DoneReason.FILLED))
            if len(events) != mark:
                touched.append((maker_side, level.price))
            if not orders:
                opposite.emptied(key)
            if self._taker_self_traded:
                break
        return touched

    def _self_trade(
        self,
        cmd: OrderRecord,
        stp: StpMode,
        level: Level,
        maker: RestingOrder,
        events: list[Record],
    ) -> bool:
        """Apply the taker's STP mode to ``maker``; True when the taker is cancelled."""
        if stp != StpMode.CANCEL_NEWEST:
            del level.orders[maker.order_id]
            del self.orders[maker.order_id]
            level.qty -= maker.leaves
            level.reserve -= maker.reserve
            events.append(self._done_resting(cmd, maker, DoneReason.SELF_TRADE))
        if stp != StpMode.CANCEL_OLDEST:
            self._taker_self_traded = True
            return True
        return False

    def _refresh(self, level: Level, maker: RestingOrder) -> None:
        """The next slice of an iceberg whose slice just filled, at the back of its level."""
        maker.leaves = min(maker.display, maker.reserve)
        maker.reserve -= maker.leaves
        maker.arrival = self.next_arrival
        self.next_arrival += 1
        level.qty += maker.leaves
        level.reserve -= maker.leaves
        level.orders[maker.order_id] = maker

    def _rest(self, order: RestingOrder) -> None:
        book_side, key = self._side_key(order.side, order.price)
        book_side.add(key, order).reserve += order.reserve

    def _unlink(self, order: RestingOrder) -> None:
        book_side, key = self._side_key(order.side, order.price)
        level = book_side.levels[key]
        del level.orders[order.order_id]
        level.qty -= order.leaves
        level.reserve -= order.reserve
        if not level.orders:
            book_side.emptied(key)

    def _shrink(self, order: RestingOrder, leaves: int, reserve: int) -> None:
        book_side, key = self._side_key(order.side, order.price)
        level = book_side.levels[key]
        level.qty -= order.leaves - leaves
        level.reserve -= order.reserve - reserve
        order.leaves, order.reserve = leaves, reserve

    def _level_totals(self, side: Side, price: int) -> tuple[int, int]:
        book_side, key = self._side_key(side, price)
        level = book_side.levels.get(key)
        return (0, 0) if level is None else (level.qty, len(level.orders))

    def _priority(self) -> Iterator[RestingOrder]:
        for book_side in (self.bids, self.asks):
            for level in book_side.live_levels():
                yield from level.orders.values()

    def validate_internal_state(self) -> None:
        seen = 0
        for side, book_side in ((Side.BUY, self.bids), (Side.SELL, self.asks)):
            name = side.name
            assert list(book_side.keys) == sorted(book_side.levels), f"{name} keys != levels"
            empty = sum(1 for level in book_side.levels.values() if not level.orders)
            assert empty == book_side.empty, f"{name} counts {book_side.empty} empty, not {empty}"
            live = [key for key in book_side.keys if book_side.levels[key].orders]
            assert book_side.best == (live[0] if live else INF), f"{name} best is stale"
            for key in book_side.keys:
                level = book_side.levels[key]
                assert key == (-level.price if side == Side.BUY else level.price), (
                    f"{name} level {key} misfiled"
                )
                arrivals = [o.arrival for o in level.orders.values()]
                assert arrivals == sorted(arrivals), f"level {level.price} out of FIFO order"
                assert level.qty == sum(o.leaves for o in level.orders.values()), (
                    f"level {level.price} total {level.qty} disagrees with its orders"
                )
                reserve = sum(o.reserve for o in level.orders.values())
                assert level.reserve == reserve, (
                    f"level {level.price} reserve {level.reserve} disagrees with its orders"
                    f" ({reserve})"
                )
                if isinstance(level.orders, CountedOrders):
                    counts = dict(Counter(o.account for o in level.orders.values()))
                    assert level.orders.accounts == counts, (
                        f"level {level.price} counts {level.orders.accounts} orders per"
                        f" account, its orders {counts}"
                    )
                for oid, o in level.orders.items():
                    assert o.order_id == oid and o.side == side and o.price == level.price
                    assert o.leaves > 0, f"order {oid} rests with leaves {o.leaves}"
                    assert o.reserve == 0 or o.leaves <= o.display, f"iceberg {oid} overshows"
                    assert self.orders.get(oid) is o, f"order {oid} not indexed"
                    seen += 1
        assert seen == len(self.orders), "index has stale orders"
        self.by_account.check(self.orders)
        if INF not in (self.bids.best, self.asks.best):
            best_bid, best_ask = -self.bids.best, self.asks.best
            assert best_bid < best_ask, f"book crossed: bid {best_bid} >= ask {best_ask}"
