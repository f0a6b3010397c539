"""The market state survives a restart of the process: a clean stop saves it, a crash
resumes from the last checkpoint and reads the uncommitted events again, and a saved state
for other symbols is not taken."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from procs.common.records import Record
from procs.common.topology import MARKETDATA, matcher_output
from procs.common.types import Side
from procs.core.market.state import MarketState, Update, build_state
from procs.marketdata.main import MarketDataProcess
from shm import Ring
from tests.unit.marketdata.events import MIN, level, trade
from tests.unit.marketdata.rig import CODEC, config

T0 = time.time_ns() - 2 * 60 * MIN  # within the ticker's 24 h of the wall clock


def events(first_seq: int, count: int) -> list[Record]:
    out: list[Record] = []
    for k in range(count):
        seq = first_seq + k
        out.append(level(seq, Side.BUY, 10_000 - k % 50, 5 + k, ts=T0 + k * MIN // 7))
        out.append(level(seq, Side.SELL, 10_100 + k % 50, 0 if k % 3 else 7, ts=T0 + k * MIN // 7))
        out.append(trade(seq, seq, 10_050 + k % 11, 1 + k % 4, ts=T0 + k * MIN // 7))
    return out


def view(state: MarketState) -> object:
    """What clients see of a symbol: the book, the tape, the ticker's trade figures, the
    candles."""
    m = state.symbols[1]
    candles = {name: [vars(c) for c in s.history(1000)] for name, s in m.candles.items()}
    t = m.ticker.ticker()
    assert t is not None
    figures = (t.open, t.high, t.low, t.last, t.volume, t.quote_volume, t.trades)
    return (m.book.snapshot(1000), m.tape.recent(1000), figures, candles)


def reference(all_events: list[Record], cfg_state: MarketState) -> object:
    updates: list[Update] = []
    for event in all_events:
        cfg_state.process(event, updates)
    cfg_state.flush()
    return view(cfg_state)


async def settle(process: MarketDataProcess, upto: int) -> None:
    for _ in range(500):
        if process.feed.events >= upto:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the feed took {process.feed.events} of {upto} events")


@pytest.mark.parametrize("how", ["clean stop", "crash"])
def test_state_is_the_same_after_a_restart(instance: str, tmp_path: Path, how: str) -> None:
    cfg = config(instance, var_dir=str(tmp_path), snapshot_every_s=3600)
    ring = Ring.create(
        instance, matcher_output("m1"), CODEC, capacity=1 << 14, consumers=[MARKETDATA]
    )
    producer = ring.producer()
    first, second = events(1, 300), events(301, 200)

    async def scenario() -> None:
        process = MarketDataProcess(cfg, codec=CODEC)
        process.feed._next_clock = float("inf")  # event time only: comparable with replay
        await process.start(0)
        producer.publish_batch(first)
        await settle(process, len(first))
        process.feed.checkpoint()
        producer.publish_batch(second[:300])
        await settle(process, len(first) + 300)
        if how == "clean stop":
            await process.stop()
        else:  # read, applied, never checkpointed: those 300 come again
            process.stopping.set()
            if process._feed_task is not None:
                await process._feed_task
            await process.server.stop()
            for consumer in process.consumers:
                consumer.close()
        again = MarketDataProcess(cfg, codec=CODEC)
        skipped = again.consumers[0].sequence
        assert skipped == (len(first) + 300 if how == "clean stop" else len(first))
        again.feed._next_clock = float("inf")
        await again.start(0)
        producer.publish_batch(second[300:])
        await settle(again, len(first) + len(second) - skipped)
        assert view(again.state) == reference(first + second, build_state(cfg))
        await again.stop()

    try:
        asyncio.run(scenario())
    finally:
        producer.close()
        ring.close()


def test_a_state_saved_for_other_symbols_keeps_those_unchanged(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(instance, var_dir=str(tmp_path))
    ring = Ring.create(instance, matcher_output("m1"), CODEC, capacity=1024, consumers=[MARKETDATA])
    try:
        process = MarketDataProcess(cfg, codec=CODEC)
        process.state.process(level(1, Side.BUY, 100, 1), [])
        process.feed.checkpoint()
        for consumer in process.consumers:
            consumer.close()
        finer = msgspec.structs.replace(cfg.symbols[1], price_decimals=1)
        other = msgspec.structs.replace(cfg, symbols=[cfg.symbols[0], finer])
        again = MarketDataProcess(other, codec=CODEC)  # ETH-USD's rules changed, not BTC-USD's
        assert again.state.symbols[1].book.best_bid() is not None  # kept (review 226)
        assert again.state.symbols[2].symbol.price_decimals == 1  # anew, as configured
        assert "with new rules, starting empty: ['ETH-USD']" in caplog.text
        for consumer in again.consumers:
            consumer.close()
    finally:
        ring.close()
