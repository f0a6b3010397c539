"""Books the rings cannot give back: seeded from the matcher's own state at its replay mark.

A matcher that starts publishes first, on its output ring, a mark (a ``Heartbeat`` from
``REPLAY_SOURCE``) with the seq of the snapshot it restored, then the events of the journaled
commands after it. Every event of the commands up to that seq went out before, on this ring or
on the one an earlier run had, and a market-data process that read them all holds the books as
they were at that seq. One that did not shows wrong levels until each changes again: the
promoted standby's (its market data never ran while it followed the primary), or one whose
state was saved a while before a crash that also took the rings. So at each mark, every book of
the matcher's symbols that saw no change after the mark's seq is compared with the matcher's
book at that seq (its snapshot and the journal up to it: ``matchers_at``), and each level that
differs becomes a ``BookLevel`` at the mark's seq. The state takes it as any change, and
subscribers get it in the next diff (or, where the book's last change was at the mark's seq
itself, a fresh snapshot: a change to an update already published is a reset), so their
books stay continuous. A halt or resume missed
the same way becomes a ``SymbolStatus`` at the mark's seq. On a new ring whose replay's events
are more than it holds, the mark is the seq of the last command the matcher left out, whose
events went nowhere (review 266): the books are set at it the same way.

The trade tape, ticker and candles cannot be rebuilt so (the journal holds commands, and their
trades come from executing them from the start): a promoted standby's come from the market
state it kept hot (``procs/replica/market.py``); a state saved a while before a crash, or a
replay's trades left out of a new ring, leave a gap in them, and the database keeps the
history.
"""

from __future__ import annotations

import logging

import msgspec

from config.schema import RingexConfig
from procs.common.journal import JournalError
from procs.common.record_codec import RecordCodec
from procs.common.records import BookLevel, SymbolStatus
from procs.common.topology import matcher_output
from procs.common.types import AdminAction, Side, TradingStatus
from procs.core.book import LevelMap
from procs.core.market.state import MarketState
from procs.core.recovery import matchers_at

log = logging.getLogger("ringex.marketdata")


def level_changes(current: LevelMap, target: LevelMap) -> list[tuple[Side, int, int, int]]:
    """The (side, price, qty, count) changes that turn ``current`` into ``target`` (qty 0: the
    level is gone), bids then asks, by price."""
    changes = [
        (side, price, *value)
        for (side, price), value in target.items()
        if current.get((side, price)) != value
    ]
    changes += [(side, price, 0, 0) for side, price in current if (side, price) not in target]
    return sorted(changes, key=lambda c: (c[0], c[1]))


class Reseeder:
    """``reseed(ring, seq, ts_ns, state)``: the ``BookLevel`` (and ``SymbolStatus``) events
    that bring the books of the matcher writing ``ring`` in ``state`` to the matcher's own at
    ``seq``."""

    def __init__(self, cfg: RingexConfig, codec: RecordCodec) -> None:
        self.cfg = cfg
        self.codec = codec
        self.matchers = {matcher_output(m.name): m.name for m in cfg.matchers}
        self.symbols = {m.name: [cfg.symbol(s).id for s in m.symbols] for m in cfg.matchers}

    def __call__(
        self, ring: str, seq: int, ts_ns: int, state: MarketState
    ) -> list[BookLevel | SymbolStatus]:
        name = self.matchers.get(ring)
        if name is None or not seq:
            return []  # not a matcher's ring, or a matcher that starts from nothing
        behind = [
            symbol
            for symbol in self.symbols[name]
            if symbol in state.symbols and state.symbols[symbol].book.last_update_id <= seq
        ]
        if not behind:
            return []
        try:
            matchers = matchers_at(self.cfg, {name: seq}, self.codec)
        except (OSError, ValueError, JournalError, msgspec.DecodeError) as exc:
            # a snapshot or journal it cannot read: the feed goes on with the books it has
            log.error("matcher %s: its state at seq %d is unreadable (%s)", name, seq, exc)
            return []
        if matchers is None:
            log.warning(
                "matcher %s: its snapshot is past seq %d, its replay mark: books as they are",
                name,
                seq,
            )
            return []
        books = matchers[name].books
        out: list[BookLevel | SymbolStatus] = [
            BookLevel(seq, ts_ns, symbol, side, price, qty, count)
            for symbol in behind
            for side, price, qty, count in level_changes(
                state.symbols[symbol].book.levels(), books[symbol].levels()
            )
        ]
        for symbol in behind:
            known = state.symbols[symbol].status
            halted = books[symbol].halted
            if known.seq <= seq and (known.status == TradingStatus.HALTED) != halted:
                action = AdminAction.HALT if halted else AdminAction.RESUME
                status = TradingStatus.HALTED if halted else TradingStatus.OPEN
                out.append(SymbolStatus(seq, ts_ns, symbol, action, status))
        if out:
            log.info(
                "matcher %s: %d book levels set from its state at seq %d (missed before it)",
                *(name, len(out), seq),
            )
        return out
