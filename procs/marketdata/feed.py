"""The matchers' output rings -> ``MarketState`` -> ``Hub``, on the event loop.

The rings are read with the consumer's non-blocking ``read``: a blocking wait would stall
every socket. While events flow the loop reads, processes and publishes a batch, then yields
to the sockets; when the rings are empty it sleeps, backing off from ``min_idle_s`` to
``max_idle_s``, which bounds the added latency at the price of a few hundred wake-ups per
second. With ``park`` it then parks instead: the loop watches a FIFO per ring that the ring's
producer writes when a record comes during the nap (``RingWaker``); the nap also ends at
the next clock tick or due snapshot, and at the stop.

Under load the loop lingers: after a batch whose pump took ``d`` seconds it waits
``linger x d`` (at most ``max_linger_s``) before the next, so batches grow with the load
instead of the loop spinning on small ones (each batch costs every subscriber's socket one
write): the fan-out takes at most 1 / (1 + linger) of the core, for about ``linger x d`` of
added latency, which is nothing when few listen. The wall clock is fed to the state once per
``clock_s``, so candles open on time when nobody trades; while a ring is behind (a read came
back full) its symbols wait for it (``ring_symbols``): a backlog's trades are older than it.
The wall clock is fed ``clock_lag_s`` late: a command is stamped by the router before its
journal fsync, its matcher and the ring bring its events here, and a candle the clock closed
meanwhile would lose its trade to the next (the history in PostgreSQL puts a trade in the
candle of its own time); an idle candle opens that much late (a trade opens it on time).

With ``snapshots`` the rings are read without committing: ``checkpoint`` writes the state
with the positions it covers, then commits them (``procs/common/market_snapshots.py``),
every ``snapshot_every_s`` or after ``snapshot_every_events`` events, whichever comes first,
and at the stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence

from procs.common.market_snapshots import MarketSnapshots
from procs.common.records import BookLevel, Heartbeat, Record, SymbolStatus
from procs.common.ring_waker import RingWaker, nap_for, settle
from procs.common.topology import REPLAY_SOURCE
from procs.core.market.state import MarketState, Update
from procs.marketdata.hub import Hub
from shm.consumer import Consumer

log = logging.getLogger("ringex.marketdata")

#: (ring, mark's seq, mark's ts_ns, state) -> the book levels (and symbol status) the state
#: missed (``reseed.py``).
Reseed = Callable[[str, int, int, MarketState], list[BookLevel | SymbolStatus]]


class Feed:
    def __init__(
        self,
        state: MarketState,
        hub: Hub,
        consumers: Sequence[Consumer[Record]],
        *,
        batch: int = 1024,
        min_idle_s: float = 0.0002,
        max_idle_s: float = 0.005,
        clock_s: float = 0.25,
        clock_lag_s: float = 1.0,
        linger: float = 1.0,
        max_linger_s: float = 0.01,
        snapshots: MarketSnapshots | None = None,
        snapshot_every_s: float = 1.0,
        snapshot_every_events: int = 4096,
        park: bool = False,
        reseed: Reseed | None = None,
        ring_symbols: Mapping[str, Collection[int]] | None = None,
    ) -> None:
        self.state = state
        self.hub = hub
        self.consumers = list(consumers)
        self.batch = batch
        self.min_idle_s = min_idle_s
        self.max_idle_s = max_idle_s
        self.clock_s = clock_s
        #: How far behind the wall clock the state's clock is fed: longer than a command
        #: takes from the router's stamp to this ring (its fsync, its matcher).
        self.clock_lag_ns = int(clock_lag_s * 1e9)
        self.linger = linger
        self.max_linger_s = max_linger_s
        self.events = 0
        self._next_clock = 0.0
        self.snapshots = snapshots
        self.snapshot_every_s = snapshot_every_s
        self.snapshot_every_events = snapshot_every_events
        self._uncommitted = 0  # events applied since the last checkpoint
        self._next_snapshot = time.monotonic() + snapshot_every_s
        self.waker = RingWaker(self.consumers) if park else None
        #: ring name -> the ids of the symbols whose events it carries: while a ring is
        #: behind only its symbols wait for the wall clock (None: all of them wait)
        self.ring_symbols = ring_symbols
        self.reseed = reseed
        self._nap: asyncio.Future[None] | None = None
        #: consumer index -> the events of the seq a full read ended in, read but not yet
        #: applied: one command's book changes must reach the state in one batch, so that
        #: they leave in one depth diff (``L2Book``).
        self._held: dict[int, list[Record]] = {}

    def pump(self) -> int:
        """Read one batch from every ring, apply it and publish the result; returns the
        number of events applied. Never blocks."""
        state, process = self.state, self.state.process
        updates: list[Update] = []
        count = 0
        reseed = self.reseed
        held = self._held
        behind: list[str] = []  # rings that had more than a batch: older than the clock
        for index, consumer in enumerate(self.consumers):
            events = consumer.read(self.batch)
            full = len(events) == self.batch
            if full:
                behind.append(consumer.ring.name)
            if index in held:
                events = held.pop(index) + events
            if full:  # the read may have ended inside a seq: its rest comes with the next
                cut = _last_seq_start(events)
                if cut:
                    held[index] = events[cut:]
                    del events[cut:]
            count += len(events)
            for event in events:
                if reseed is not None and type(event) is Heartbeat:
                    mark: Heartbeat = event
                    if mark.source == REPLAY_SOURCE:  # a matcher (re)started: see reseed.py
                        for level in reseed(consumer.ring.name, mark.counter, mark.ts_ns, state):
                            state.reseed(level, updates)
                    continue
                process(event, updates)
        now = time.monotonic()
        # The wall clock only to the symbols of rings caught up: fed while a backlog is read
        # (a restart after downtime), it would close the candles its trades belong in.
        ticked = now >= self._next_clock
        if ticked:
            self._next_clock = now + self.clock_s
            waiting = self._held_symbols(behind)
            if waiting is not None:
                state.advance(time.time_ns() - self.clock_lag_ns, waiting)
            for consumer in self.consumers:
                consumer.heartbeat()
        if count or ticked:  # events, or the clock: candles and the 24h window may roll
            updates += state.flush()
        if updates:
            self.hub.publish(updates)
        self.events += count
        self._uncommitted += count
        due = self._uncommitted >= self.snapshot_every_events or now >= self._next_snapshot
        if self._uncommitted and due:
            self.checkpoint()
        return count

    def _held_symbols(self, behind: list[str]) -> set[int] | None:
        """The symbols the wall clock must not move while ``behind`` lag; None: every one."""
        if not behind:
            return set()
        known = self.ring_symbols
        if known is None or any(ring not in known for ring in behind):
            return None
        return {symbol for ring in behind for symbol in known[ring]}

    def checkpoint(self) -> None:
        """Write the state with the ring positions it covers, then commit them. A failed
        write is logged and the positions committed all the same: a matcher must never wait
        on the market data's disk (a restart then starts from an older state). Without
        ``snapshots`` it only commits."""
        if self.snapshots is not None:
            positions = {c.ring.name: (c.ring.created_ns, at) for c, at in self._applied()}
            try:
                self.snapshots.save(self.state, positions)
            except OSError as exc:
                log.error("market state not saved (%s): a restart starts from an older one", exc)
        for consumer, at in self._applied():
            consumer.commit(at)
        self._uncommitted = 0
        self._next_snapshot = time.monotonic() + self.snapshot_every_s

    def _applied(self) -> list[tuple[Consumer[Record], int]]:
        """Each consumer with how far the state covers its ring (held events are not in)."""
        return [(c, c.sequence - len(self._held.get(k, ()))) for k, c in enumerate(self.consumers)]

    async def run(self, stop: asyncio.Event) -> None:
        idle = self.min_idle_s
        while not stop.is_set():
            started = time.perf_counter()
            if self.pump():
                idle = self.min_idle_s
                # let the sockets read and write; linger when the batch was costly
                busy = time.perf_counter() - started
                await asyncio.sleep(min(busy * self.linger, self.max_linger_s))
            elif self.waker is not None and idle >= self.max_idle_s:
                await self._park(self.waker)
            else:
                await asyncio.sleep(idle)
                idle = min(idle * 2, self.max_idle_s)

    async def _park(self, waker: RingWaker) -> None:
        """Sleep until a ring has a record, the clock's next tick, a due snapshot or ``wake``."""
        loop = asyncio.get_running_loop()
        due = self._next_clock
        if self._uncommitted:
            due = min(due, self._next_snapshot)
        self._nap = nap = loop.create_future()
        try:
            await nap_for(nap, max(0.0, due - time.monotonic()), waker)
        finally:
            self._nap = None

    def wake(self) -> None:
        """End a parked nap now (the stop)."""
        if self._nap is not None:
            settle(self._nap)

    def close(self) -> None:
        """Stop watching the rings; before the consumers close."""
        if self.waker is not None:
            self.waker.close()


def _last_seq_start(events: list[Record]) -> int:
    """Where the run of events sharing the last event's seq begins; 0 when that is the whole
    list or the last event has no seq (nothing can be held back then)."""
    last = getattr(events[-1], "seq", 0)
    if not last:
        return 0
    k = len(events) - 1
    while k and getattr(events[k - 1], "seq", 0) == last:
        k -= 1
    return k
