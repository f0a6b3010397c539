"""The market-data process: the matchers' output rings -> WebSocket feed and the page.

    python -m procs.marketdata.main --profile dev [--port N]

1. attach every matcher's output ring as consumer ``marketdata``;
2. build the per-symbol state, the hub, the page and the server;
3. run the feed and the server on one uvloop event loop until SIGTERM or SIGINT, then close
   the connections (1001, going away) and the consumers, and exit 0.

Start and restart are one path: the state saved with the ring positions it covers
(``procs/common/market_snapshots.py``, under ``var/<instance>/marketdata/``) is loaded, and
the rings are read on from those positions. Nothing saved, or saved for other symbols: it
starts empty.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

import uvloop

from config import load_profile
from config.schema import RingexConfig
from procs.common import gc_policy, sd_notify
from procs.common.market_snapshots import MarketSnapshots
from procs.common.record_codec import RecordCodec
from procs.common.records import Heartbeat, Record
from procs.common.topology import (
    MARKETDATA,
    RECOVERED_SOURCE,
    REPLAY_SOURCE,
    market_state_path,
    matcher_output,
)
from procs.common.units import exit_if_other_units
from procs.core.market.state import MarketState, build_state
from procs.marketdata.feed import Feed
from procs.marketdata.hub import Hub
from procs.marketdata.reseed import Reseeder
from procs.marketdata.server import MarketDataServer
from procs.marketdata.web import Site, page_config
from shm import Ring, RingError
from shm.consumer import Consumer

log = logging.getLogger("ringex.marketdata")


def attach_consumers(cfg: RingexConfig, codec: RecordCodec) -> list[Consumer[Record]]:
    """Every matcher's output ring, read without committing (the feed's checkpoints do)."""
    consumers = []
    for m in cfg.matchers:
        ring = Ring.attach(cfg.instance, matcher_output(m.name), codec)
        consumers.append(ring.consumer(MARKETDATA, cfg.wait.build(), auto_commit=False))
    return consumers


def resume(
    snapshots: MarketSnapshots,
    fresh: MarketState,
    consumers: list[Consumer[Record]],
    reseed: Reseeder | None = None,
) -> MarketState:
    """The saved state, with each ring read on from where it covers; else ``fresh``. Where
    the rings were committed past what the state covers (a save that failed, a state file
    lost or torn), the books of those rings' matchers are set from the matchers' own state
    at the last seq committed (``reseed``): events between are not in the state."""
    loaded = snapshots.load(fresh)
    if loaded is None:
        _reseed(fresh, [c for c in consumers if c.sequence], reseed)
        return fresh
    if not loaded.positions:  # saved by a standby from its hot state (procs/replica/market.py)
        log.info(
            "market state at seq %d from a standby's hot state: the new rings are read from "
            "their start",
            loaded.state.last_seq,
        )
        # unless this process committed on them since (its own saves failed): their books
        # are then set as where a save of its own was lost
        _reseed(loaded.state, [c for c in consumers if c.sequence], reseed)
        return loaded.state
    stale = []
    for consumer in consumers:
        ring = consumer.ring
        created, upto = loaded.positions.get(ring.name, (0, 0))
        if created != ring.created_ns:
            log.warning(
                "%s was made after the saved market state: its events before are not in the "
                "state (a full restart keeps the books as they were when it stopped)",
                ring.name,
            )
            if consumer.sequence:  # and read and committed on it since, unsaved
                stale.append(consumer)
        elif upto > consumer.sequence:
            consumer.skip_to(upto)
        elif upto < consumer.sequence:
            stale.append(consumer)
    _reseed(loaded.state, stale, reseed)
    log.info("market state resumed from %s (seq %d)", snapshots.path, loaded.state.last_seq)
    return loaded.state


def _reseed(state: MarketState, stale: list[Consumer[Record]], reseed: Reseeder | None) -> None:
    """Set the books of ``stale`` rings' matchers from their state at the ring's last
    committed event (the state does not cover the events before it)."""
    if reseed is None:
        return
    for consumer in stale:
        ring = consumer.ring
        anchor = _anchor(ring, consumer.sequence)
        if anchor is None:
            log.warning("%s: the state misses events the ring no longer holds", ring.name)
            continue
        seq, ts_ns = anchor
        log.warning(
            "%s was committed past the saved market state: books set from the matcher's "
            "state at seq %d",
            ring.name, seq,
        )  # fmt: skip
        for event in reseed(ring.name, seq, ts_ns, state):
            state.reseed(event, [])  # the clocks stay: the ring's events after it are older


def _anchor(ring: Ring[Record], committed: int) -> tuple[int, int] | None:
    """The seq (and time) whose state the books are set to where a reader committed up to
    ``committed`` on ``ring``: the newest event before it, or a mark of what went out. A
    replay's mark (``REPLAY_SOURCE``) says nothing of what went out before it (its counter
    is the restored snapshot's seq, or the last command a long replay left out), so the
    walk goes back past it, as the matcher's ``published_position`` does (review 236: the
    events after that seq were lost); a mark is the anchor only where the ring holds
    nothing before it. Where the ring overwrote the records before ``committed`` (it filled
    while nothing read it), the first record after it (the reader's next, never
    overwritten) gives the seq: its command's events ring on from there, each level they set
    as absolute as the reseed's (review 236)."""
    lowest = max(0, ring.cursor() - ring.capacity)
    mark: Heartbeat | None = None
    walked = True  # back to the ring's oldest record
    for n in range(committed - 1, lowest - 1, -1):
        try:
            record = ring.record(n)
        except RingError:  # read already, and overwritten meanwhile by a running matcher
            walked = False  # (review 241): the first unread record, below, never is
            break
        if isinstance(record, Heartbeat):
            if record.source == RECOVERED_SOURCE:
                return record.counter, record.ts_ns
            if record.source == REPLAY_SOURCE and mark is None:
                mark = record
            continue
        return getattr(record, "seq", 0), getattr(record, "ts_ns", 0)
    if walked and committed > lowest == 0 and mark is not None:
        return mark.counter, mark.ts_ns  # nothing but marks since the ring was made
    for n in range(max(committed, lowest), ring.cursor()):
        record = ring.record(n)
        if isinstance(record, Heartbeat):
            if record.source == RECOVERED_SOURCE:
                return record.counter, record.ts_ns
            continue
        return getattr(record, "seq", 0), getattr(record, "ts_ns", 0)
    return None


class MarketDataProcess:
    """The whole process but its signals: rings, state, hub, page, server, feed."""

    def __init__(
        self,
        cfg: RingexConfig,
        *,
        heartbeat_s: float = 5.0,
        codec: RecordCodec | None = None,
        **server: Any,
    ) -> None:
        """``server``: ``MarketDataServer`` settings over the config's (write_limit,
        send_buffer, compression)."""
        md = cfg.marketdata
        # 1. rings
        self.consumers = attach_consumers(cfg, codec or RecordCodec())
        # 2. state (resumed from its last checkpoint), fan-out, page, server
        self.snapshots = MarketSnapshots(market_state_path(cfg))
        reseed = Reseeder(cfg, codec or RecordCodec())
        self.state = resume(self.snapshots, build_state(cfg), self.consumers, reseed)
        self.hub = Hub(
            self.state, depth_levels=md.depth_levels, max_subscriptions=md.max_subscriptions
        )
        site = Site(self.state, config=page_config(cfg))
        settings: dict[str, Any] = {
            "write_limit": md.write_limit_bytes,
            "send_buffer": md.send_buffer_bytes or None,
            "compression": None if md.compression == "none" else md.compression,
        }
        self.server = MarketDataServer(
            self.hub, site, md, heartbeat_s=heartbeat_s, **(settings | server)
        )
        self.feed = Feed(
            self.state,
            self.hub,
            self.consumers,
            snapshots=self.snapshots,
            snapshot_every_s=md.snapshot_every_s,
            snapshot_every_events=max(1, cfg.ring.capacity // 4),
            park=cfg.wait.strategy != "busy-spin",
            reseed=reseed,
            ring_symbols={
                matcher_output(m.name): {cfg.symbol(s).id for s in m.symbols} for m in cfg.matchers
            },
        )
        self.cfg = cfg
        self.stopping = asyncio.Event()
        self._feed_task: asyncio.Task[None] | None = None

    async def start(self, port: int | None = None) -> int:
        """Listen and start the feed; returns the bound port."""
        md = self.cfg.marketdata
        bound = await self.server.start(md.host, md.port if port is None else port)
        self._feed_task = asyncio.create_task(self.feed.run(self.stopping))
        return bound

    async def stop(self) -> None:
        self.stopping.set()
        self.feed.wake()
        if self._feed_task is not None:
            await self._feed_task
        self.feed.checkpoint()
        await self.server.stop()
        self.feed.close()
        for consumer in self.consumers:
            consumer.close()


async def serve(cfg: RingexConfig, port: int | None = None) -> None:
    process = MarketDataProcess(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, process.stopping.set)
    bound = await process.start(port)
    watchdog = asyncio.create_task(sd_notify.watchdog_loop())
    gc_policy.settle(cfg.gc)  # the market state rebuilt: never walked again
    sd_notify.ready()
    log.info(
        "marketdata up: http://%s:%d/ symbols %s, rings %s",
        *(cfg.marketdata.host, bound, [s.name for s in cfg.symbols]),
        [m.name for m in cfg.matchers],
    )
    await process.stopping.wait()
    sd_notify.stopping()
    watchdog.cancel()
    await process.stop()
    log.info(
        "marketdata stopped: %d events, %d messages delivered, %d slow clients closed",
        *(process.feed.events, process.hub.delivered, process.server.slow_closed),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ringex market-data process")
    parser.add_argument("--profile", default="dev", help="profile name or TOML path")
    parser.add_argument("--port", type=int, default=None, help="override marketdata.port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)  # a line per HTTP request
    cfg = load_profile(args.profile)
    exit_if_other_units(cfg, "marketdata")  # a unit restarted on an edited profile
    uvloop.run(serve(cfg, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
