"""The fast book's mechanics: sorted price levels, FIFO orders within a level.

Each side is a ``sortedcontainers.SortedDict`` from a key to a ``Level``, keyed so that the
best price comes first on both sides (asks by price, bids by minus the price): the best level
is ``peekitem(0)``, and what crosses a taker is ``irange(maximum=...)``. A level keeps its
orders in an insertion-ordered dict (FIFO, with O(1) cancel from the middle) and their total,
so a level change is reported without a scan. The sorted container is only touched when a
level appears or empties (PERF-NOTES: per-order work is a dict operation).
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedDict

from procs.common.records import OrderRecord, Record
from procs.common.types import DoneReason, Side, StpMode
from procs.matcher.book import Book, RestingOrder
from procs.matcher.symbols import SymbolSpec


class Level:
    __slots__ = ("orders", "price", "qty")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: dict[int, RestingOrder] = {}  # arrival order
        self.qty = 0


class FastBook(Book):
    def __init__(self, spec: SymbolSpec) -> None:
        super().__init__(spec)
        self.bids: SortedDict[int, Level] = SortedDict()  # key: -price
        self.asks: SortedDict[int, Level] = SortedDict()  # key: price

    def _side(self, side: Side) -> SortedDict[int, Level]:
        return self.bids if side == Side.BUY else self.asks

    @staticmethod
    def _key(side: Side, price: int) -> int:
        return -price if side == Side.BUY else price

    def _crossable(self, side: Side, price: int, enough: int) -> int:
        opposite = self.asks if side == Side.BUY else self.bids
        limit = price if side == Side.BUY else -price  # opposite keys <= limit cross
        total = 0
        for key in opposite.irange(maximum=limit):
            total += opposite[key].qty
            if total >= enough:
                break
        return total

    def _best(self, side: Side) -> int | None:
        levels = self._side(side)
        return levels.peekitem(0)[1].price if levels else None

    def _match(
        self, cmd: OrderRecord, taker: RestingOrder, events: list[Record]
    ) -> list[tuple[Side, int]]:
        touched: list[tuple[Side, int]] = []
        if taker.side == Side.BUY:
            opposite, limit, maker_side = self.asks, taker.price, Side.SELL
        else:
            opposite, limit, maker_side = self.bids, -taker.price, Side.BUY
        index = self.orders
        stp, account = taker.stp, taker.account
        while taker.leaves and opposite:
            key, level = opposite.peekitem(0)
            if key > limit:
                break
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
                del opposite[key]
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
        level.orders[maker.order_id] = maker

    def _rest(self, order: RestingOrder) -> None:
        side = self._side(order.side)
        key = self._key(order.side, order.price)
        level = side.get(key)
        if level is None:
            level = side[key] = Level(order.price)
        level.orders[order.order_id] = order
        level.qty += order.leaves

    def _unlink(self, order: RestingOrder) -> None:
        side = self._side(order.side)
        key = self._key(order.side, order.price)
        level = side[key]
        del level.orders[order.order_id]
        level.qty -= order.leaves
        if not level.orders:
            del side[key]

    def _shrink(self, order: RestingOrder, leaves: int) -> None:
        self._side(order.side)[self._key(order.side, order.price)].qty -= order.leaves - leaves
        order.leaves = leaves

    def _level_totals(self, side: Side, price: int) -> tuple[int, int]:
        level = self._side(side).get(self._key(side, price))
        return (0, 0) if level is None else (level.qty, len(level.orders))

    def _priority(self) -> Iterator[RestingOrder]:
        for side in (self.bids, self.asks):
            for level in side.values():
                yield from level.orders.values()

    def validate_internal_state(self) -> None:
        seen = 0
        for side_name, side, book_side in (
            ("BUY", Side.BUY, self.bids),
            ("SELL", Side.SELL, self.asks),
        ):
            for key, level in book_side.items():
                assert key == self._key(side, level.price), f"{side_name} level {key} misfiled"
                assert level.orders, f"{side_name} level {level.price} is empty but listed"
                arrivals = [o.arrival for o in level.orders.values()]
                assert arrivals == sorted(arrivals), f"level {level.price} out of FIFO order"
                assert level.qty == sum(o.leaves for o in level.orders.values()), (
                    f"level {level.price} total {level.qty} disagrees with its orders"
                )
                for oid, o in level.orders.items():
                    assert o.order_id == oid and o.side == side and o.price == level.price
                    assert o.leaves > 0, f"order {oid} rests with leaves {o.leaves}"
                    assert o.reserve == 0 or o.leaves <= o.display, f"iceberg {oid} overshows"
                    assert self.orders.get(oid) is o, f"order {oid} not indexed"
                    seen += 1
        assert seen == len(self.orders), "index has stale orders"
        if self.bids and self.asks:
            best_bid, best_ask = self.bids.peekitem(0)[1].price, self.asks.peekitem(0)[1].price
            assert best_bid < best_ask, f"book crossed: bid {best_bid} >= ask {best_ask}"
