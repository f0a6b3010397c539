"""A market-data process in-process over a real matcher output ring, and a WebSocket client
helper: what the server tests drive."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from config.edges import MarketDataConfig
from config.schema import MatcherConfig, RingConfig, RingexConfig, SymbolConfig
from procs.common.record_codec import RecordCodec
from procs.common.records import Record
from procs.common.topology import MARKETDATA, matcher_output
from procs.marketdata.main import MarketDataProcess
from shm import Ring
from shm.producer import Producer

CODEC = RecordCodec()


def config(instance: str, var_dir: str | None = None, **marketdata: Any) -> RingexConfig:
    return RingexConfig(
        instance=instance,
        var_dir=var_dir or tempfile.mkdtemp(prefix="ringex-md-"),  # the saved market state
        ring=RingConfig(capacity=1 << 14),
        symbols=[
            SymbolConfig(name="BTC-USD", id=1, price_decimals=2, qty_decimals=4),
            SymbolConfig(name="ETH-USD", id=2, price_decimals=2, qty_decimals=4, base="ETH"),
        ],
        matchers=[MatcherConfig(name="m1", symbols=["BTC-USD", "ETH-USD"])],
        marketdata=MarketDataConfig(port=0, **marketdata),
    )


def event_time_process(cfg: RingexConfig) -> MarketDataProcess:
    """The market-data process in this one, its clock fed by event time alone."""
    process = MarketDataProcess(cfg, codec=CODEC)
    process.feed._next_clock = float("inf")
    return process


def drain_feed(process: MarketDataProcess) -> None:
    while process.feed.pump():
        pass


def close_process(process: MarketDataProcess) -> None:
    process.feed.close()
    for consumer in process.consumers:
        consumer.close()


class Rig:
    def __init__(self, process: MarketDataProcess, producer: Producer[Record], port: int) -> None:
        self.process = process
        self.producer = producer
        self.port = port
        self.url = f"ws://127.0.0.1:{port}"

    def publish(self, events: Sequence[Record]) -> None:
        """``events`` on the ring, never blocking the loop that drains it: where the ring has
        no room, the feed's own step (``pump``, as the process's loop runs it) reads first.
        A blocking publish waited on that loop for ever (a slow host fell behind a burst)."""
        feed = self.process.feed
        for k in range(0, len(events), 1024):
            batch = events[k : k + 1024]
            while not self.producer.has_room(len(batch)):
                if not feed.pump():  # all read: committed at the feed's next checkpoint
                    feed.checkpoint()
                    if not self.producer.has_room(len(batch)):
                        raise AssertionError(f"no room for {len(batch)} events, none read")
            self.producer.publish_batch(batch)

    @asynccontextmanager
    async def client(self, path: str = "/ws", **kwargs: Any) -> AsyncIterator[Client]:
        async with connect(self.url + path, **kwargs) as ws:
            yield Client(ws)


@asynccontextmanager
async def running(
    instance: str,
    heartbeat_s: float = 5.0,
    server: dict[str, Any] | None = None,
    var_dir: str | None = None,
    **marketdata: Any,
) -> AsyncIterator[Rig]:
    cfg = config(instance, var_dir, **marketdata)
    ring = Ring.create(
        instance, matcher_output("m1"), CODEC, capacity=1 << 14, consumers=[MARKETDATA]
    )
    producer = ring.producer()
    process = MarketDataProcess(cfg, heartbeat_s=heartbeat_s, codec=CODEC, **(server or {}))
    port = await process.start(0)
    try:
        yield Rig(process, producer, port)
    finally:
        await process.stop()
        producer.close()
        ring.close()


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._id = 0

    async def request(self, method: str, params: list[Any] | None = None) -> dict[str, Any]:
        """Send a request; return its answer (messages before it are dropped)."""
        self._id += 1
        body: dict[str, Any] = {"method": method, "id": self._id}
        if params is not None:
            body["params"] = params
        await self.ws.send(json.dumps(body))
        return await self.until(lambda m: m.get("id") == self._id)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        msg: dict[str, Any] = json.loads(raw)
        return msg

    async def until(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv(timeout)
                if match(msg):
                    return msg

    async def collect(self, stream: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The data of the next ``count`` messages of ``stream`` (others are skipped)."""
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(got) < count:
                msg = await self.recv(timeout)
                if msg.get("stream") == stream:
                    got.append(msg["data"])
        return got
