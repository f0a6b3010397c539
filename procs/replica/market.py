"""The standby's market data: the state a promoted instance's market data starts from.

A standby runs no market-data process, but it executes every replicated command on its own
matchers (hot), and their events are what market data is made of. So, when the instance has
market data, it feeds them to a ``MarketState`` (``procs/core/market``) and saves it at its
stop, beside the snapshots of its router and matchers and at the same seq, with no ring
positions. The promoted instance's marketdata process loads it and reads its new rings from
their start, whose replay begins at that seq: the books, the trade tape, the 24h ticker and
the candles go on where the primary's stopped, with no gap a client could not fill.

On start the standby loads the state it saved last and feeds it the events of its recovery
replay; events the state already holds are recognised (trades by id, levels and statuses by
seq). A state that ends before the snapshot the replay starts from misses the events in
between: the promoted market data then sets its books from the matchers at their replay mark
(``procs/marketdata/reseed.py``), and only the tape and candles keep the gap.
"""

from __future__ import annotations

import logging

from config.schema import RingexConfig
from procs.common.market_snapshots import MarketSnapshots
from procs.common.records import Record
from procs.common.topology import market_state_path
from procs.core.market.state import Update, build_state

log = logging.getLogger("ringex.replica")

#: Commands, or event time, between two flushes of the standby's market state (a second
#: of a quiet market closes no more than a few candles)
FLUSH_EVERY = 1024
FLUSH_EVERY_NS = 1_000_000_000


class HotMarket:
    def __init__(self, cfg: RingexConfig) -> None:
        self.snapshots = MarketSnapshots(market_state_path(cfg))
        fresh = build_state(cfg)
        loaded = self.snapshots.load(fresh)
        self.state = fresh if loaded is None else loaded.state
        self._updates: list[Update] = []  # nobody subscribes here: made and dropped
        self._unflushed = 0
        self._flushed_ns = self.state.now_ns

    def observe(self, events: list[Record]) -> None:
        """One command's events on one matcher, as executed. The state is flushed (its
        changes made and dropped) every ``FLUSH_EVERY`` commands or second of event time,
        as the market-data process does after each batch: what it keeps for the next
        flush (closed candles, changed levels) stays bounded."""
        process, updates = self.state.process, self._updates
        for event in events:
            process(event, updates)
        updates.clear()
        self._unflushed += 1
        now = self.state.now_ns
        if self._unflushed >= FLUSH_EVERY or now - self._flushed_ns >= FLUSH_EVERY_NS:
            self._unflushed, self._flushed_ns = 0, now
            self.state.flush()

    def save(self) -> None:
        """Write the state for the promoted marketdata process (no ring positions: it reads
        its new rings from their start)."""
        self.state.flush()  # the changes since the last flush: nobody to send them to
        size = self.snapshots.save(self.state, {})
        log.info("market state written at seq %d (%d bytes)", self.state.last_seq, size)
