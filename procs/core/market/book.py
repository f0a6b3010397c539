"""One symbol's L2 book (aggregated price levels), built from the matcher's ``BookLevel`` events.

Update ids are the exchange's global sequence (``seq``), so they survive restarts of this
process and of the matcher. Changes are collected between ``take_diff`` calls and leave as one
diff per batch whose ids are contiguous with the previous diff's: diff k covers the sequence
range ``first = previous last + 1 .. last = seq of its newest change`` (sequences in between
that did not touch this book are covered vacuously). A client that sees ``first != previous
last + 1`` lost a diff; one that starts from a snapshot with ``last_update_id = L`` applies the
first diff with ``first <= L + 1 <= last``, as on the venues it imitates.

One command's changes share its seq, so they should leave in one diff: the feed does not end
a batch inside a seq (``Feed.pump``). Should the changes of an already published seq come
alone anyway (a matcher's batch longer than its ring, published in chunks), no diff can carry
them, its ids would run backwards: the diff is then a ``reset``, and subscribers get a fresh
snapshot instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import NamedTuple

from sortedcontainers import SortedDict

from procs.common.records import BookLevel
from procs.common.types import Side
from procs.core.book import LevelMap

#: (price, qty) pairs, best first; qty 0 in a diff means the level is gone.
Levels = list[tuple[int, int]]


@dataclass(frozen=True)
class DepthDiff:
    symbol: int
    first_update_id: int
    last_update_id: int
    ts_ns: int
    bids: Levels  # best first
    asks: Levels
    #: Send subscribers a snapshot instead: a change came for a seq already published.
    reset: bool = False


@dataclass(frozen=True)
class DepthSnapshot:
    symbol: int
    last_update_id: int
    ts_ns: int
    bids: Levels
    asks: Levels


#: The best level of a side, (price, qty), or None when the side is empty.
Best = tuple[int, int] | None


class BookTop(NamedTuple):
    """The best bid and ask (``<symbol>@bookTicker``), as of ``update_id``: taken by
    ``L2Book.take_top`` when either changed (a price, or the size at it). A tuple: one is
    made after most diffs, and a frozen dataclass costs several times as much to make."""

    symbol: int
    update_id: int
    ts_ns: int
    bid: Best
    ask: Best


@dataclass
class L2Book:
    symbol: int
    #: price -> (qty, count); bids keyed by -price so both sides iterate best first.
    _bids: SortedDict[int, tuple[int, int]] = field(default_factory=SortedDict)
    _asks: SortedDict[int, tuple[int, int]] = field(default_factory=SortedDict)
    last_update_id: int = 0  # seq of the newest change applied
    last_ts_ns: int = 0
    _published_id: int = 0  # last_update_id of the newest diff taken
    _pending_bids: dict[int, int] = field(default_factory=dict)
    _pending_asks: dict[int, int] = field(default_factory=dict)
    #: Counts the changes applied: a snapshot rendered at one version is current while the
    #: version is (``last_update_id`` alone is not: one seq may bring several changes).
    version: int = 0
    #: Levels per side a depth snapshot holds (the hub's ``depth_levels``). A diff also
    #: carries each level that rose into them without changing (a better one went): a
    #: client of such a snapshot never heard of it, and then holds the top ``top`` exactly.
    top: int = 100
    _top_bids: frozenset[int] = frozenset()  # the keys in the top ``top`` at the last diff
    _top_asks: frozenset[int] = frozenset()
    #: What ``take_top`` gave last; None before its first (a class default too: a book
    #: saved before it was kept loads without one).
    _last_top: BookTop | None = None

    def process(self, event: BookLevel) -> None:
        """Apply one level change. Events at or below ``last_update_id`` with a lower seq are
        replays (a restart that re-reads the ring) and are ignored."""
        if event.seq < self.last_update_id:
            return
        if event.side == Side.BUY:
            side, key, pending = self._bids, -event.price, self._pending_bids
        else:
            side, key, pending = self._asks, event.price, self._pending_asks
        if event.qty:
            side[key] = (event.qty, event.count)
        else:
            side.pop(key, None)
        pending[event.price] = event.qty
        self.last_update_id = event.seq
        # never back: a reseed at a replay mark stamps its levels with the matcher's restart,
        # and the replayed commands' changes after it carry earlier times (review 181)
        self.last_ts_ns = max(self.last_ts_ns, event.ts_ns)
        self.version += 1

    def take_diff(self) -> DepthDiff | None:
        """The changes since the last diff (each level's latest qty), or None when none."""
        if not (self._pending_bids or self._pending_asks):
            return None
        bids = sorted(self._risen(self._bids, self._pending_bids, -1), reverse=True)
        asks = sorted(self._risen(self._asks, self._pending_asks, 1))
        self._pending_bids.clear()
        self._pending_asks.clear()
        first = self._published_id + 1
        # Changes of the seq the last diff ended at, and none after: ids cannot say it. (With
        # a later seq among them they simply ride in its diff: levels are absolute.)
        reset = self.last_update_id < first
        self._published_id = self.last_update_id
        return DepthDiff(
            self.symbol, first, self.last_update_id, self.last_ts_ns, bids, asks, reset
        )

    def _risen(
        self, side: SortedDict[int, tuple[int, int]], pending: dict[int, int], sign: int
    ) -> list[tuple[int, int]]:
        """``pending``'s changes (price -> qty) and the levels of ``side`` that rose into its
        top ``top`` since the last diff without a change of their own; the new top kept."""
        changes = list(pending.items())
        if not pending:  # nothing moved on this side: its top is as it was
            return changes
        top = frozenset(islice(side.keys(), self.top))
        before = self._top_bids if sign < 0 else self._top_asks
        changes += [
            (sign * key, side[key][0])
            for key in top
            if key not in before and sign * key not in pending
        ]
        if sign < 0:
            self._top_bids = top
        else:
            self._top_asks = top
        return changes

    def set_top(self, levels: int) -> None:
        """Serve snapshots of ``levels`` per side from now on: the top the next diff compares
        with becomes the book's at that size. Called before anyone holds a snapshot (the
        hub's start): a top remembered at another size (a state made without a hub, as a
        standby's, or saved under another ``depth_levels``) would count levels below the
        new size as known, and a diff would never carry them when they rise into it."""
        self.top = levels
        self._top_bids = frozenset(islice(self._bids.keys(), levels))
        self._top_asks = frozenset(islice(self._asks.keys(), levels))
        if self._last_top is None:  # a book saved before tops were kept: its own is the one
            self._last_top = self.last_top()  # shown, so that its emptying is told (review 159)

    def snapshot(self, levels: int) -> DepthSnapshot:
        """The best ``levels`` per side as of the last diff taken, so the next diff continues
        it. Refused (``RuntimeError``) while changes are pending: call ``take_diff`` first."""
        if self._pending_bids or self._pending_asks:
            raise RuntimeError(
                f"book {self.symbol}: snapshot with untaken changes up to update "
                f"{self.last_update_id} (take_diff first)"
            )
        bids = [(-p, q) for p, (q, _) in self._bids.items()[:levels]]
        asks = [(p, q) for p, (q, _) in self._asks.items()[:levels]]
        return DepthSnapshot(self.symbol, self.last_update_id, self.last_ts_ns, bids, asks)

    def take_top(self) -> BookTop | None:
        """The best bid and ask when either changed since the last take (an empty book's
        first take: none), else None."""
        bid, ask = self.best_bid(), self.best_ask()
        last = self._last_top
        if (bid, ask) == ((last.bid, last.ask) if last is not None else (None, None)):
            return None
        self._last_top = BookTop(self.symbol, self.last_update_id, self.last_ts_ns, bid, ask)
        return self._last_top

    def last_top(self) -> BookTop:
        """What ``take_top`` gave last (a new subscriber's first), or the book's best levels
        where it never gave any (an empty book, or one saved before tops were taken)."""
        if self._last_top is not None:
            return self._last_top
        return BookTop(
            self.symbol, self.last_update_id, self.last_ts_ns, self.best_bid(), self.best_ask()
        )

    def best_bid(self) -> tuple[int, int] | None:
        if not self._bids:
            return None
        price, (qty, _) = self._bids.peekitem(0)
        return -price, qty

    def best_ask(self) -> tuple[int, int] | None:
        if not self._asks:
            return None
        price, (qty, _) = self._asks.peekitem(0)
        return price, qty

    def levels(self) -> LevelMap:
        """(side, price) -> (qty, count) of every level, as ``procs.core.book.Book.levels``."""
        out = {(Side.BUY, -key): value for key, value in self._bids.items()}
        out.update(((Side.SELL, key), value) for key, value in self._asks.items())
        return out

    def depth(self) -> tuple[int, int]:
        """(bid levels, ask levels)."""
        return len(self._bids), len(self._asks)
