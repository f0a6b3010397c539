"""Order-book packages from PyPI, driven by the same op stream as the ringex matcher.

Each adapter translates `tests.bench.matcher_mixes` ops into its library's calls in one tight
loop and reads the final book back in the shadow's format, so `make bench-matcher` can time
them side by side and check that every book ends equal. A library is imported only when its
adapter is built: `available()` is False (and the peer is skipped) when it does not import.

What each library lacks, and how the adapter stands in for it:

```
peer                  IOC                      MOVE (price replace)      ids
lightmatchingengine   add, then cancel rest    cancel + add leaves_qty   its own, mapped
cython-orderbook      add, then cancel rest    cancel + add remaining    its own (str), mapped
liquibook (C++)       add(order, IOC flag)     native replace()          the SimpleOrder object
  +listener           the same, its OrderListener called back for every order event
matching-engine       native IOC               cancel + add remaining    ours (Python >= 3.12)
```

All four fill at the maker's price with FIFO levels, and a MOVE that crosses matches before
it rests, as in the shadow book. The libraries' own order objects hold the remaining
quantity that a cancel + add carries over.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterable
from typing import Any, ClassVar

from tests.bench.matcher_mixes import BUY, CANCEL, MOVE, NEW, Levels, Op

SYMBOL = "X"


class Peer:
    """One library's book behind the op stream.

    `run(ops)` applies a whole stream (it may be called again to continue it); `levels()`
    returns the resting book as {"bids": [(price, qty), ...], "asks": [...]}, best first,
    empty levels left out. The constructor raises ImportError if the library is missing;
    call `available()` first.
    """

    name: ClassVar[str]
    module: ClassVar[str]  # what must import for the peer to run
    dist: ClassVar[str]  # the pip name, for the version in reports

    @classmethod
    def available(cls) -> bool:
        try:
            importlib.import_module(cls.module)
        except (ImportError, SyntaxError):  # SyntaxError: a newer Python's syntax
            return False
        return True

    @classmethod
    def version(cls) -> str:
        try:
            return importlib.metadata.version(cls.dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    def run(self, ops: Iterable[Op]) -> None:
        raise NotImplementedError

    def levels(self) -> Levels:
        raise NotImplementedError


class LightMatchingEnginePeer(Peer):
    """lightmatchingengine: pure Python, dict of price -> list, best price by min()/max()."""

    name = "lightmatchingengine"
    module = "lightmatchingengine.lightmatchingengine"
    dist = "lightmatchingengine"

    def __init__(self) -> None:
        lib = importlib.import_module(self.module)
        self._engine: Any = lib.LightMatchingEngine()
        self._orders: dict[int, Any] = {}  # our oid -> its Order (order_id, leaves_qty)

    def run(self, ops: Iterable[Op]) -> None:
        add, cancel = self._engine.add_order, self._engine.cancel_order
        orders = self._orders
        for op in ops:
            kind = op[0]
            if kind == MOVE:
                _, oid, price = op
                order = orders[oid]
                qty = order.leaves_qty  # read before cancel, which zeroes it
                cancel(order.order_id, SYMBOL)
                orders[oid] = add(SYMBOL, price, qty, order.side)[0]
            elif kind == NEW:
                _, oid, side, price, qty, ioc = op
                order = add(SYMBOL, price, qty, side)[0]
                if not ioc:
                    orders[oid] = order
                elif order.leaves_qty:
                    cancel(order.order_id, SYMBOL)
            elif kind == CANCEL:
                cancel(orders.pop(op[1]).order_id, SYMBOL)

    def levels(self) -> Levels:
        book = self._engine.order_books.get(SYMBOL)
        if book is None:
            return {"bids": [], "asks": []}
        return {
            "bids": _summed(sorted(book.bids.items(), reverse=True), "leaves_qty"),
            "asks": _summed(sorted(book.asks.items()), "leaves_qty"),
        }


class CythonOrderbookPeer(Peer):
    """cython-orderbook: Cython-compiled, SortedDict of price -> OrderedDict queue."""

    name = "cython-orderbook"
    module = "cython_orderbook"
    dist = "cython-orderbook"

    def __init__(self) -> None:
        lib = importlib.import_module(self.module)
        self._book: Any = lib.OrderBook()
        self._order: Any = lib.Order
        self._sides: tuple[Any, Any, Any] = (None, lib.OrderSide.BID, lib.OrderSide.ASK)
        self._orders: dict[int, Any] = {}  # our oid -> its Order (order_id, remaining_quantity)

    def run(self, ops: Iterable[Op]) -> None:
        add, cancel = self._book.add_limit_order, self._book.cancel_order
        make, sides, orders = self._order, self._sides, self._orders
        for op in ops:
            kind = op[0]
            if kind == MOVE:
                _, oid, price = op
                order = orders[oid]
                cancel(order.order_id)
                order = orders[oid] = make(order.side, order.remaining_quantity, price)
                add(order)
            elif kind == NEW:
                _, oid, side, price, qty, ioc = op
                order = make(sides[side], qty, price)
                add(order)
                if not ioc:
                    orders[oid] = order
                elif order.remaining_quantity:
                    cancel(order.order_id)
            elif kind == CANCEL:
                cancel(orders.pop(op[1]).order_id)

    def levels(self) -> Levels:
        # A level's total_quantity is not kept up to date by fills (0.1.2), and a level emptied
        # by a cancel can stay until a taker reaches it: sum the queue, skip empty levels.
        book = self._book
        return {
            "bids": _summed(
                ((p, lvl.queue.values()) for p, lvl in book.bids.items()), "remaining_quantity"
            ),
            "asks": _summed(
                ((p, lvl.queue.values()) for p, lvl in book.asks.items()), "remaining_quantity"
            ),
        }


class LiquibookPeer(Peer):
    """liquibook: the C++ book (OrderBook<SimpleOrder*>) through its SWIG binding."""

    name = "liquibook"
    module = "liquibook"
    dist = "liquibook"

    def __init__(self) -> None:
        lib = importlib.import_module(self.module)
        self._lib: Any = lib
        self._book: Any = lib.liquibook_book_OrderBook()  # no depth tracking, no listeners
        # The C++ book holds raw pointers to these: they must stay alive while they rest.
        self._orders: dict[int, Any] = {}

    def run(self, ops: Iterable[Op]) -> None:
        lib = self._lib
        add, cancel, replace = self._book.add, self._book.cancel, self._book.replace
        make, ioc_flag, orders = lib.SimpleOrder, lib.oc_immediate_or_cancel, self._orders
        for op in ops:
            kind = op[0]
            if kind == MOVE:
                _, oid, price = op
                order = orders[oid]
                replace(order, 0, price)
                # Without listeners nothing updates the SimpleOrder, yet cancel and replace find
                # it by its price: move that too (SimpleOrder.replace needs it accepted).
                order.replace(0, price)
            elif kind == NEW:
                _, oid, side, price, qty, ioc = op
                order = make(side == BUY, price, qty)
                if ioc:  # IOC is read from add()'s argument; the order's own flag is ignored
                    add(order, ioc_flag)
                else:
                    add(order)
                    order.accept()
                    orders[oid] = order
            elif kind == CANCEL:
                cancel(orders.pop(op[1]))

    def levels(self) -> Levels:
        return {"bids": _tracked(self._book.bids()), "asks": _tracked(self._book.asks())}


class LiquibookEventsPeer(LiquibookPeer):
    """liquibook with an ``OrderListener``: each accept, fill, cancel and replace comes back to
    Python as a callback, as an exchange needs them (the plain ``LiquibookPeer`` reports
    nothing, so the C++ book runs alone). ringex's book makes its events in the same loop,
    and the other peers return theirs. Shown beside the plain one; the target is judged
    against the plain one. The fills are kept, so the answer check covers them."""

    name = "liquibook+listener"

    def __init__(self) -> None:
        super().__init__()
        lib = self._lib
        events: list[tuple[int, ...]] = []
        self.events = events
        record = events.append

        class Listener(lib.OrderListener):  # type: ignore[misc,name-defined]
            # SWIG calls each override from C++; every callback must exist (pure virtual)
            def on_accept(self, order: Any) -> None:
                record((1,))

            def on_fill(self, order: Any, matched: Any, qty: int, price: int) -> None:
                record((2, qty, price))  # SWIG names it "cost": the fill's price

            def on_cancel(self, order: Any) -> None:
                record((3,))

            def on_replace(self, order: Any, size_delta: int, new_price: int) -> None:
                record((4, new_price))

            def on_reject(self, order: Any, reason: str) -> None:
                record((5,))

            def on_cancel_reject(self, order: Any, reason: str) -> None:
                record((6,))

            def on_replace_reject(self, order: Any, reason: str) -> None:
                record((7,))

            def on_trigger_stop(self, order: Any) -> None:
                record((8,))

        self._listener = Listener()  # the C++ book holds a raw pointer: keep it alive
        self._book.set_order_listener(self._listener)

    def trades(self) -> tuple[int, int, int]:
        """(fills, quantity, notional) over the run: the fills' answer check."""
        fills = [e for e in self.events if e[0] == 2]
        return len(fills), sum(e[1] for e in fills), sum(e[1] * e[2] for e in fills)


class MatchingEnginePeer(Peer):
    """matching-engine: pure Python, SortedList of levels, intrusive lists; needs Python 3.12."""

    name = "matching-engine"
    module = "matching_engine.engine"
    dist = "matching-engine"

    def __init__(self) -> None:
        lib = importlib.import_module("matching_engine")
        self._engine: Any = importlib.import_module(self.module).MatchingEngine()
        self._lib: Any = lib
        self._seq = 0

    def run(self, ops: Iterable[Op]) -> None:
        lib, engine = self._lib, self._engine
        process, resting = engine.process, engine.book.orders
        stamp, new, cancel = lib.SequencedCommand, lib.NewOrder, lib.CancelOrder
        sides = (None, lib.Side.BUY, lib.Side.SELL)
        limit, gtc, ioc_tif = lib.OrderType.LIMIT, lib.TimeInForce.GTC, lib.TimeInForce.IOC
        no_stp = lib.SelfTradePrevention.NONE  # one account for all: self-trades must match
        seq = self._seq
        for op in ops:
            seq += 1
            kind = op[0]
            if kind == MOVE:
                _, oid, price = op
                order = resting[oid]
                side, qty = order.side, order.remaining
                process(stamp(seq, 0, cancel(oid, 0)))
                seq += 1
                process(stamp(seq, 0, new(oid, 0, side, price, qty, limit, gtc, False, no_stp)))
            elif kind == NEW:
                _, oid, side, price, qty, ioc = op
                tif = ioc_tif if ioc else gtc
                process(
                    stamp(seq, 0, new(oid, 0, sides[side], price, qty, limit, tif, False, no_stp))
                )
            elif kind == CANCEL:
                process(stamp(seq, 0, cancel(op[1], 0)))
        self._seq = seq

    def levels(self) -> Levels:
        depth = self._engine.book.depth()
        return {
            "bids": [(lvl.price, lvl.qty) for lvl in depth.bids],
            "asks": [(lvl.price, lvl.qty) for lvl in depth.asks],
        }


def _summed(levels: Iterable[tuple[int, Iterable[Any]]], field: str) -> list[tuple[int, int]]:
    """(price, sum of `field` over the level's orders), dropping levels that sum to 0."""
    out = []
    for price, queue in levels:
        qty = sum(getattr(order, field) for order in queue)
        if qty:
            out.append((int(price), qty))
    return out


def _tracked(trackers: Any) -> list[tuple[int, int]]:
    """Aggregate a liquibook TrackerMap (price-priority multimap) into (price, qty) levels."""
    out: list[tuple[int, int]] = []
    for key, tracker in trackers.items():
        price, qty = key.price(), tracker.open_qty()
        if out and out[-1][0] == price:
            out[-1] = (price, out[-1][1] + qty)
        elif qty:
            out.append((price, qty))
    return out


PEERS: tuple[type[Peer], ...] = (
    LiquibookPeer,
    LiquibookEventsPeer,
    CythonOrderbookPeer,
    MatchingEnginePeer,
    LightMatchingEnginePeer,
)


def available_peers() -> list[type[Peer]]:
    """The peers whose library imports here, in `PEERS` order."""
    return [peer for peer in PEERS if peer.available()]
