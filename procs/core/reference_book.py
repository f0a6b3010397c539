"""The reference book's mechanics: written to be obviously correct, not fast.

It is the oracle the fast book is contract-tested against. Each side is a plain list kept
sorted by priority (best price first, then arrival): an order is inserted at its place; every
question (what crosses, what rests at a price) is a scan. O(n) everywhere, and nothing clever
to get wrong. The command flow and the events are ``procs.core.book.Book``'s.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator

from procs.common.records import OrderRecord, Record
from procs.common.types import DoneReason, Side, StpMode
from procs.core.book import Book, _crosses
from procs.core.order_checks import _other
from procs.core.resting import RestingOrder
from procs.core.symbols import SymbolSpec


class ReferenceBook(Book):
    def __init__(self, spec: SymbolSpec) -> None:
        super().__init__(spec)
        self.bids: list[RestingOrder] = []
        self.asks: list[RestingOrder] = []

    def _side(self, side: Side) -> list[RestingOrder]:
        return self.bids if side == Side.BUY else self.asks

    def _sort(self) -> None:
        self.bids.sort(key=_bid_priority)
        self.asks.sort(key=_ask_priority)

    def _crossable(self, side: Side, price: int, enough: int) -> int:
        return sum(o.leaves for o in self._side(_other(side)) if _crosses(side, price, o.price))

    def _crossing_levels(
        self, side: Side, price: int, account: int | None
    ) -> Iterator[tuple[int, list[RestingOrder] | None]]:
        crossing = [o for o in self._side(_other(side)) if _crosses(side, price, o.price)]
        for _price, group in itertools.groupby(crossing, key=lambda o: o.price):
            level = list(group)
            size = sum(o.leaves + o.reserve for o in level)
            yield size, level if any(o.account == account for o in level) else None

    def _best(self, side: Side) -> int | None:
        orders = self._side(side)
        return orders[0].price if orders else None

    def _match(
        self, cmd: OrderRecord, taker: RestingOrder, events: list[Record]
    ) -> list[tuple[Side, int]]:
        touched: list[tuple[Side, int]] = []  # levels where something changed
        opposite = self._side(_other(taker.side))
        while taker.leaves and opposite and _crosses(taker.side, taker.price, opposite[0].price):
            maker = opposite[0]
            level = (maker.side, maker.price)
            if taker.stp != StpMode.NONE and maker.account == taker.account:
                if taker.stp in (StpMode.CANCEL_OLDEST, StpMode.CANCEL_BOTH):
                    opposite.pop(0)
                    del self.orders[maker.order_id]
                    events.append(self._done_resting(cmd, maker, DoneReason.SELF_TRADE))
                    if level not in touched:
                        touched.append(level)
                if taker.stp in (StpMode.CANCEL_NEWEST, StpMode.CANCEL_BOTH):
                    self._taker_self_traded = True
                    break
                continue
            if level not in touched:
                touched.append(level)
            fill = min(taker.leaves, maker.leaves)
            maker.leaves -= fill
            maker.filled += fill
            taker.leaves -= fill
            taker.filled += fill
            self.last_price = maker.price
            events.append(self._trade(cmd, maker, taker, fill))
            if maker.leaves == 0 and maker.reserve:  # the next iceberg slice, at the back
                maker.leaves = min(maker.display, maker.reserve)
                maker.reserve -= maker.leaves
                maker.arrival = self.next_arrival
                self.next_arrival += 1
                self._sort()
            elif maker.leaves == 0:
                opposite.pop(0)
                del self.orders[maker.order_id]
                events.append(self._done_resting(cmd, maker, DoneReason.FILLED))
        return touched

    def _rest(self, order: RestingOrder) -> None:
        key = _bid_priority if order.side == Side.BUY else _ask_priority
        bisect.insort(self._side(order.side), order, key=key)

    def _unlink(self, order: RestingOrder) -> None:
        self._side(order.side).remove(order)

    def _shrink(self, order: RestingOrder, leaves: int, reserve: int) -> None:
        order.leaves, order.reserve = leaves, reserve

    def _level_totals(self, side: Side, price: int) -> tuple[int, int]:
        at = [o for o in self._side(side) if o.price == price]
        return sum(o.leaves for o in at), len(at)

    def _priority(self) -> Iterator[RestingOrder]:
        return iter(self.bids + self.asks)

    def validate_internal_state(self) -> None:
        for side, orders in ((Side.BUY, self.bids), (Side.SELL, self.asks)):
            keys = [(-o.price if side == Side.BUY else o.price, o.arrival) for o in orders]
            assert keys == sorted(keys), f"{side.name} side out of priority order"
            for o in orders:
                assert o.side == side, f"order {o.order_id} on the wrong side"
                assert o.leaves > 0, f"order {o.order_id} rests with leaves {o.leaves}"
                assert o.reserve == 0 or 0 < o.leaves <= o.display, (
                    f"iceberg {o.order_id} shows {o.leaves} of slice {o.display}"
                )
                assert self.orders.get(o.order_id) is o, f"order {o.order_id} not indexed"
        assert len(self.orders) == len(self.bids) + len(self.asks), "index has stale orders"
        self.by_account.check(self.orders)
        if self.bids and self.asks:
            best_bid, best_ask = self.bids[0].price, self.asks[0].price
            assert best_bid < best_ask, f"book crossed: bid {best_bid} >= ask {best_ask}"


def _bid_priority(order: RestingOrder) -> tuple[int, int]:
    return -order.price, order.arrival


def _ask_priority(order: RestingOrder) -> tuple[int, int]:
    return order.price, order.arrival
