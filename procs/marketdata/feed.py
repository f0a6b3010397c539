"""The matchers' output rings -> ``MarketState`` -> ``Hub``, on the event loop.

The rings are read with the consumer's non-blocking ``read``: a blocking wait would stall
every socket. While events flow the loop reads, processes and publishes a batch, then yields
to the sockets; when the rings are empty it sleeps, backing off from ``min_idle_s`` to
``max_idle_s``, which bounds the added latency at the price of a few hundred wake-ups per
second when idle (a wait thread parked on the ring's semaphore would need none, but would
hand every batch across threads). Under load the loop lingers: after a batch whose pump took
``d`` seconds it waits ``linger x d`` (at most ``max_linger_s``) before the next, so batches
grow with the load instead of the loop spinning on small ones (each batch costs every
subscriber's socket one write): the fan-out takes at most 1 / (1 + linger) of the core, for
about ``linger x d`` of added latency,
which is nothing when few listen. The wall clock is fed to the state once per
``clock_s``, so candles open on time when nobody trades.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from procs.common.records import Record
from procs.marketdata.hub import Hub
from procs.marketdata.market import MarketState, Update
from shm.consumer import Consumer


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
        linger: float = 1.0,
        max_linger_s: float = 0.01,
    ) -> None:
        self.state = state
        self.hub = hub
        self.consumers = list(consumers)
        self.batch = batch
        self.min_idle_s = min_idle_s
        self.max_idle_s = max_idle_s
        self.clock_s = clock_s
        self.linger = linger
        self.max_linger_s = max_linger_s
        self.events = 0
        self._next_clock = 0.0

    def pump(self) -> int:
        """Read one batch from every ring, apply it and publish the result; returns the
        number of events read. Never blocks."""
        state, process = self.state, self.state.process
        updates: list[Update] = []
        count = 0
        for consumer in self.consumers:
            events = consumer.read(self.batch)
            count += len(events)
            for event in events:
                process(event, updates)
        now = time.monotonic()
        ticked = now >= self._next_clock
        if ticked:
            self._next_clock = now + self.clock_s
            state.advance(time.time_ns())
            for consumer in self.consumers:
                consumer.heartbeat()
        if count or ticked:  # events, or the clock: candles and the 24h window may roll
            updates += state.flush()
        if updates:
            self.hub.publish(updates)
        self.events += count
        return count

    async def run(self, stop: asyncio.Event) -> None:
        idle = self.min_idle_s
        while not stop.is_set():
            started = time.perf_counter()
            if self.pump():
                idle = self.min_idle_s
                # let the sockets read and write; linger when the batch was costly
                busy = time.perf_counter() - started
                await asyncio.sleep(min(busy * self.linger, self.max_linger_s))
            else:
                await asyncio.sleep(idle)
                idle = min(idle * 2, self.max_idle_s)
