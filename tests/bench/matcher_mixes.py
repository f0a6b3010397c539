"""Order streams for `make bench-matcher`: one neutral op stream fed to ringex and every peer.

An op is a plain tuple, so any order book can be driven from it with a tight loop:

```
(NEW, oid, side, price, qty, ioc)   side 1=buy 2=sell, price in integer ticks, qty in integer
                                    lots, ioc True: fill what crosses, drop the rest
(CANCEL, oid)                       oid is resting at that point of the stream
(MOVE, oid, new_price)              price replace of a resting order: keeps its remaining qty,
                                    goes to the back of the new level, and matches first if the
                                    new price crosses (exchange-core's move semantics)
```

Order ids are unique per stream (a MOVE keeps its id). Every fill is at the maker's price and
levels are FIFO. The generators keep a `ShadowBook` (the same rules, kept small and plain) so
that cancels and moves only ever name orders still resting; `shadow_levels` replays a stream
through one to get the expected final book that the benchmark checks each implementation
against.

Mixes:
- `exchange_core_mix`: exchange-core's published load, 9% GTC, 3% IOC, 6% cancel, 82% move,
  ~1k resting orders over ~750 levels around a slowly drifting mid, after a GTC warm-up.
- `simple_mix`: 60% new GTC near the touch, 30% cancel, 10% marketable IOC.
- `load_mix`: non-crossing GTC only, for the memory test (1M orders over 10k levels).

The resting count is held near a target by sizing each IOC: it takes the opposite side's
first k orders (plus part of the next), k growing with the excess over the target, so the
shares of each op kind stay exactly as published while the book stays stationary.
"""

from __future__ import annotations

import random
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator

NEW = 0
CANCEL = 1
MOVE = 2
BUY = 1
SELL = 2

Op = tuple[int, ...]  # see the module docstring; ioc is a bool, which is an int
Levels = dict[str, list[tuple[int, int]]]  # {"bids": [(price, qty)], "asks": [...]}, best first

START_MID = 100_000  # ticks: far enough from 0 that a drifting mid never reaches it
DRIFT_P = 1 / 64  # chance per op that the mid moves one tick either way
MAX_QTY = 100

EC_TARGET = 1_000  # resting orders in the exchange-core mix (also its warm-up length)
EC_WIDTH = 1000  # moves re-quote uniformly 1..EC_WIDTH ticks from mid: ~750 levels in all
EC_TOUCH = 4  # GTCs go 1..EC_TOUCH ticks from mid, at or inside the usual spread
SIMPLE_TARGET = 500
SIMPLE_TOUCH = 5
GAIN = 25  # resting orders over target per extra order an IOC takes


class ShadowBook:
    """A plain price-time book over `Op`s: the generators' state and the expected answer.

    Orders are `oid -> [side, price, qty]`; each side has `price -> {oid: None}` (insertion
    order is time priority, and deleting from the middle is O(1)) and a sorted list of keys
    whose best is last (the key is the price for bids and minus the price for asks), so the
    taker loop pops from the end.
    """

    __slots__ = ("_keys", "_levels", "_live", "_orders", "_pos")

    def __init__(self) -> None:
        self._orders: dict[int, list[int]] = {}
        self._levels: list[dict[int, dict[int, None]]] = [{}, {}, {}]  # indexed by side
        self._keys: list[list[int]] = [[], [], []]
        self._live: list[int] = []  # resting oids, for O(1) random choice
        self._pos: dict[int, int] = {}  # oid -> index in _live

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, oid: int) -> bool:
        return oid in self._orders

    def apply(self, op: Op) -> None:
        kind = op[0]
        if kind == NEW:
            _, oid, side, price, qty, ioc = op
            self.new(oid, side, price, qty, bool(ioc))
        elif kind == CANCEL:
            self.cancel(op[1])
        elif kind == MOVE:
            self.move(op[1], op[2])
        else:
            raise ValueError(f"unknown op kind {kind} (op={op!r})")

    def run(self, ops: Iterable[Op]) -> None:
        for op in ops:
            self.apply(op)

    def new(self, oid: int, side: int, price: int, qty: int, ioc: bool) -> None:
        if oid in self._orders:
            raise ValueError(f"order {oid} is already resting (price={price}, qty={qty})")
        qty = self._take(side, price, qty)
        if qty and not ioc:
            self._rest(oid, side, price, qty)

    def cancel(self, oid: int) -> None:
        order = self._orders.get(oid)
        if order is None:
            raise KeyError(f"cancel of order {oid}, which is not resting")
        self._unrest(oid, order)

    def move(self, oid: int, price: int) -> None:
        order = self._orders.get(oid)
        if order is None:
            raise KeyError(f"move of order {oid} to {price}, which is not resting")
        side, _, qty = order
        self._unrest(oid, order)
        self.new(oid, side, price, qty, False)

    def random_live(self, rng: random.Random) -> int:
        """A resting oid, drawn uniformly; the book must not be empty."""
        return self._live[int(rng.random() * len(self._live))]

    def order(self, oid: int) -> tuple[int, int, int]:
        """(side, price, remaining qty) of a resting order."""
        side, price, qty = self._orders[oid]
        return side, price, qty

    def queue(self, side: int) -> Iterator[tuple[int, int]]:
        """(price, qty) of each resting order on `side`, in priority order."""
        orders, levels = self._orders, self._levels[side]
        for key in reversed(self._keys[side]):
            price = key if side == BUY else -key
            for oid in levels[price]:
                yield price, orders[oid][2]

    def levels(self) -> Levels:
        orders = self._orders
        out: Levels = {}
        for name, side in (("bids", BUY), ("asks", SELL)):
            levels = self._levels[side]
            prices = [key if side == BUY else -key for key in reversed(self._keys[side])]
            out[name] = [(p, sum(orders[oid][2] for oid in levels[p])) for p in prices]
        return out

    def _take(self, side: int, limit: int, qty: int) -> int:
        """Fill `qty` against the opposite side up to `limit`; return what is left."""
        opposite = SELL if side == BUY else BUY
        keys, levels, orders = self._keys[opposite], self._levels[opposite], self._orders
        while qty and keys:
            price = keys[-1] if opposite == BUY else -keys[-1]
            if (side == BUY and price > limit) or (side == SELL and price < limit):
                break
            level = levels[price]
            while qty and level:
                maker = next(iter(level))
                resting = orders[maker]
                if resting[2] > qty:
                    resting[2] -= qty
                    return 0
                qty -= resting[2]
                del level[maker], orders[maker]
                self._untrack(maker)
            if not level:
                del levels[price]
                keys.pop()
        return qty

    def _rest(self, oid: int, side: int, price: int, qty: int) -> None:
        self._orders[oid] = [side, price, qty]
        levels = self._levels[side]
        level = levels.get(price)
        if level is None:
            level = levels[price] = {}
            insort(self._keys[side], price if side == BUY else -price)
        level[oid] = None
        self._pos[oid] = len(self._live)
        self._live.append(oid)

    def _unrest(self, oid: int, order: list[int]) -> None:
        side, price, _ = order
        del self._orders[oid]
        levels = self._levels[side]
        level = levels[price]
        del level[oid]
        if not level:
            del levels[price]
            keys = self._keys[side]
            del keys[bisect_left(keys, price if side == BUY else -price)]
        self._untrack(oid)

    def _untrack(self, oid: int) -> None:
        i = self._pos.pop(oid)
        last = self._live.pop()
        if last != oid:
            self._live[i] = last
            self._pos[last] = i


def shadow_levels(ops: Iterable[Op]) -> Levels:
    """The final book of `ops`: {"bids": [(price, total_qty), ...], "asks": [...]}, best first."""
    book = ShadowBook()
    book.run(ops)
    return book.levels()


class _Stream:
    """What both mixes share: the op list, the shadow, the drifting mid and the op makers."""

    def __init__(self, seed: int, target: int) -> None:
        self.rng = random.Random(seed)
        self.book = ShadowBook()
        self.ops: list[Op] = []
        self.mid = START_MID
        self.next_oid = 1
        self.target = target

    def drift(self) -> None:
        rng = self.rng
        if rng.random() < DRIFT_P:
            self.mid += 1 if rng.random() < 0.5 else -1

    def quote(self, side: int, offset: int) -> int:
        return self.mid - offset if side == BUY else self.mid + offset

    def new(self, side: int, price: int, qty: int, ioc: bool) -> None:
        oid = self.next_oid
        self.next_oid = oid + 1
        self.ops.append((NEW, oid, side, price, qty, ioc))
        self.book.new(oid, side, price, qty, ioc)

    def gtc(self, max_offset: int) -> None:
        rng = self.rng
        side = BUY if rng.random() < 0.5 else SELL
        offset = 1 + int(rng.random() * max_offset)
        self.new(side, self.quote(side, offset), 1 + int(rng.random() * MAX_QTY), False)

    def ioc(self, base: float) -> None:
        """A marketable IOC that takes about `base` orders, more when the book is over target.

        Its limit is the price of the last order it takes. When the order after that rests at
        the same price, it takes part of that one too; when it rests a level worse, the IOC
        asks for more than its limit reaches, so the remainder is dropped.
        """
        rng = self.rng
        side = BUY if rng.random() < 0.5 else SELL
        opposite = SELL if side == BUY else BUY
        whole = max(0.0, base + (len(self.book) - self.target) / GAIN)
        take = int(whole) + (rng.random() < whole - int(whole))  # orders to fill completely
        qty, limit = 0, 0
        for price, resting in self.book.queue(opposite):
            if take == 0:
                if not limit or price == limit:
                    limit = price
                    if resting > 1:
                        qty += 1 + int(rng.random() * (resting - 1))
                else:
                    qty += 1 + int(rng.random() * MAX_QTY)
                break
            qty += resting
            take -= 1
            limit = price
        else:  # swept the whole side (or it was empty): the rest is dropped
            qty += 1 + int(rng.random() * MAX_QTY)
        self.new(side, limit or self.quote(side, -1), max(qty, 1), True)

    def cancel(self) -> None:
        oid = self.book.random_live(self.rng)
        self.ops.append((CANCEL, oid))
        self.book.cancel(oid)

    def move(self, max_offset: int) -> None:
        oid = self.book.random_live(self.rng)
        side, old, _ = self.book.order(oid)
        price = self.quote(side, 1 + int(self.rng.random() * max_offset))
        if price == old:
            price += -1 if side == BUY else 1
        self.ops.append((MOVE, oid, price))
        self.book.move(oid, price)


def exchange_core_mix(count: int, seed: int) -> list[Op]:
    """`count` ops: a GTC warm-up to ~1k orders, then 9% GTC, 3% IOC, 6% cancel, 82% move."""
    s = _Stream(seed, EC_TARGET)
    rng = s.rng
    for _ in range(min(count, EC_TARGET)):
        s.gtc(EC_WIDTH)
    while len(s.ops) < count:
        s.drift()
        r = rng.random()
        if r < 0.09 or not s.book:
            s.gtc(EC_TOUCH)
        elif r < 0.12:
            s.ioc(0.8)  # GTCs add 9%, cancels 6%, crossing GTCs and moves some
        elif r < 0.18:
            s.cancel()
        else:
            s.move(EC_WIDTH)
    return s.ops


def simple_mix(count: int, seed: int) -> list[Op]:
    """`count` ops: 60% new GTC near the touch, 30% cancel, 10% marketable IOC."""
    s = _Stream(seed, SIMPLE_TARGET)
    rng = s.rng
    while len(s.ops) < count:
        s.drift()
        r = rng.random()
        if r < 0.6 or not s.book:
            s.gtc(SIMPLE_TOUCH)
        elif r < 0.9:
            s.cancel()
        else:
            s.ioc(3.0)  # GTCs add 60%, cancels remove 30%: each IOC takes three orders
    return s.ops


def load_mix(orders: int, levels: int, seed: int) -> list[Op]:
    """`orders` non-crossing GTCs over `levels` prices: bids below a mid, asks above it."""
    if levels < 2:
        raise ValueError(f"levels={levels} must be at least 2 (one per side)")
    rng = random.Random(seed)
    asks = levels // 2
    bids = levels - asks
    mid = max(START_MID, levels)
    ops: list[Op] = []
    append, rand = ops.append, rng.random
    for oid in range(1, orders + 1):
        qty = 1 + int(rand() * MAX_QTY)
        if rand() < 0.5:
            append((NEW, oid, BUY, mid - 1 - int(rand() * bids), qty, False))
        else:
            append((NEW, oid, SELL, mid + 1 + int(rand() * asks), qty, False))
    return ops
