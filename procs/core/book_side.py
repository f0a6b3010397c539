"""One side of the fast book: price levels sorted best first, FIFO orders within a level.

The why of each choice (empty levels kept listed, the cached best key, orders counted per
account only once a FOK under self-trade prevention asks) is in ``procs.core.fast_book``'s
docstring, beside the paths that rely on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

from sortedcontainers import SortedList

from procs.core.resting import RestingOrder

INF = 1 << 63  # the best key of an empty side: above every int64 price, so none crosses it
SWEEP_AT = 1024  # empty levels kept before a sweep is considered


class CountedOrders(dict[int, RestingOrder]):
    """A level's orders (by id, in arrival order) that also keep ``accounts``: how many of
    them each account has, no account listed with 0. Only ``[]=`` and ``del`` change a
    level's orders; the other ways to change a dict are refused, since they would not
    count."""

    __slots__ = ("accounts",)

    def __init__(self, orders: dict[int, RestingOrder]) -> None:
        super().__init__(orders)
        self.accounts: dict[int, int] = {}
        for order in orders.values():
            self.accounts[order.account] = self.accounts.get(order.account, 0) + 1

    def __setitem__(self, oid: int, order: RestingOrder) -> None:
        if oid in self:
            raise KeyError(f"order {oid} already rests in this level")
        dict.__setitem__(self, oid, order)
        self.accounts[order.account] = self.accounts.get(order.account, 0) + 1

    def __delitem__(self, oid: int) -> None:
        account = self[oid].account
        dict.__delitem__(self, oid)
        count = self.accounts[account]
        if count == 1:
            del self.accounts[account]
        else:
            self.accounts[account] = count - 1

    def _uncounted(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a level's orders change only by [] and del, which keep the counts")

    pop = popitem = clear = update = setdefault = __ior__ = _uncounted


class Level:
    """One price's orders in arrival order (a plain dict until ``rests`` is first asked,
    then ``CountedOrders``), ``qty`` their visible leaves, ``reserve`` their icebergs'
    hidden rest."""

    __slots__ = ("orders", "price", "qty", "reserve")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: dict[int, RestingOrder] = {}  # arrival order
        self.qty = 0
        self.reserve = 0

    def rests(self, account: int) -> bool:
        """Whether ``account`` has an order here. The first call counts the orders, and
        from then on the orders keep the count."""
        orders = self.orders
        if not isinstance(orders, CountedOrders):
            self.orders = orders = CountedOrders(orders)
        return account in orders.accounts


class BookSide:
    """One side's levels: ``keys`` sorted best first, ``levels`` by key, ``best`` the first
    key with orders (``INF`` if none), ``empty`` how many listed levels have no orders."""

    __slots__ = ("best", "empty", "keys", "levels")

    def __init__(self) -> None:
        self.keys: SortedList[int] = SortedList()
        self.levels: dict[int, Level] = {}
        self.best = INF
        self.empty = 0

    def add(self, key: int, order: RestingOrder) -> Level:
        """Append ``order`` to the level at ``key`` (made if missing)."""
        level = self.levels.get(key)
        if level is None:
            level = self.levels[key] = Level(order.price)
            self.keys.add(key)
        elif not level.orders:
            self.empty -= 1
        level.orders[order.order_id] = order
        level.qty += order.leaves  # an iceberg's reserve: the caller's (inline paths rest none)
        if key < self.best:  # noqa: PLR1730  (min() costs a call on the hot path)
            self.best = key
        return level

    def emptied(self, key: int) -> None:
        """The level at ``key`` just lost its last order."""
        self.empty += 1
        if key == self.best:
            self.drop_front()
        elif self.empty > SWEEP_AT and self.empty > len(self.levels) // 2:
            self.sweep()

    def drop_front(self) -> None:
        """Drop empty levels from the front; ``best`` becomes the first live one."""
        keys, levels = self.keys, self.levels
        while keys:
            key = keys[0]
            if levels[key].orders:
                self.best = key
                return
            del keys[0]
            del levels[key]
            self.empty -= 1
        self.best = INF

    def sweep(self) -> None:
        live = [key for key in self.keys if self.levels[key].orders]
        self.levels = {key: self.levels[key] for key in live}
        self.keys = SortedList(live)
        self.empty = 0
        self.best = live[0] if live else INF

    def live_levels(self) -> Iterator[Level]:
        for key in self.keys:
            level = self.levels[key]
            if level.orders:
                yield level
