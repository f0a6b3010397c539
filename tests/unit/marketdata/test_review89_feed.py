"""Review 89 of the market-data publisher (``procs/marketdata``), from the side of a feed
user who rebuilds the book, the tape and the candles from what the WebSocket sends.

No fault was found in this pass (about 50 minutes). Besides the three tests below, checked
(by a run) and found right: request ids of 5,000 digits or 1e400 are refused, big integers
echoed back whole; writing to a socket uvloop has already aborted does not raise into
``Feed.pump``. Read and found right: request errors naming the value and the limit; a slow
client's outbox on unsubscribe (its queued messages, conflated entry and owed snapshot
dropped)."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Sequence
from typing import Any

from procs.common.records import Record
from procs.common.types import Side
from procs.core.market.candles import INTERVALS
from procs.core.market.state import CandleUpdate, MarketState, Update
from procs.core.market.ticker import BUCKET_NS, WINDOW_BUCKETS
from procs.marketdata.hub import Hub, Message
from procs.marketdata.outbox import Outbox
from procs.marketdata.streams import parse_stream

from .events import OTHER, SYMBOL, T0, level, trade
from .rig import running
from .test_review145_feed_derivations import client_top, rebuild

S = 1_000_000_000

# -- checked and found correct --


class _SlowSocket:
    """What ``server.Client`` does for a client whose socket never keeps up: every message
    goes through its ``Outbox``; ``drain`` is the socket taking ``n`` of them."""

    def __init__(self, hub: Hub, limit: int) -> None:
        self.streams: set[str] = set()
        self.outbox = Outbox(limit, hub.depth_snapshot)
        self.closed: str | None = None
        self.got: list[dict[str, Any]] = []

    def deliver(self, messages: Sequence[Message], frames: bytes) -> None:
        if self.closed:
            return
        for m in messages:
            reason = self.outbox.push(m.kind, m.stream, m.payload, m.final)
            if reason is not None:
                self.closed = reason
                return
        self.outbox.settle()

    def deliver_snapshot(self, stream: str, payload: bytes) -> None:
        self.outbox.push_snapshot(stream, payload)

    def drain(self, n: int) -> None:
        for _ in range(n):
            payload = self.outbox.pop()
            if payload is None:
                return
            self.got.append(json.loads(payload))


def test_a_slow_client_rebuilds_books_tape_and_closed_candles_across_random_bursts() -> None:
    """A client whose socket is always behind (every message through a 16-message outbox,
    read a random few at a time) follows two depth streams at 2, 5 or 100 levels, a trade
    stream and two 1m kline streams through 400 random batches (levels of one seq in one
    batch, several seqs a batch, trades, minutes crossed). Whatever it misses, what it reads
    must add up: each depth stream snapshot then contiguous diffs ending at the book's last
    id with the book's top; every trade once, in order (the README: a trade is never
    dropped); each closed candle once, in time order, and the open one last."""
    for seed in range(40):
        rnd = random.Random(seed)
        state = MarketState([SYMBOL, OTHER])
        hub = Hub(state, depth_levels=rnd.choice([2, 5, 100]), max_subscriptions=50)
        client = _SlowSocket(hub, 16)
        names = ["btc-usd@depth", "eth-usd@depth", "btc-usd@trade"]
        names += ["btc-usd@kline_1m", "eth-usd@kline_1m", "btc-usd@ticker", "btc-usd@status"]
        hub.subscribe(client, [parse_stream(n, hub.symbols) for n in names])
        seq, ts, trade_ids = 0, T0, {SYMBOL.id: 0, OTHER.id: 0}
        for _ in range(400):
            updates: list[Update] = []
            for _ in range(rnd.randint(1, 5)):
                seq += 1
                ts += rnd.choice([0, S, 20 * S])
                symbol = rnd.choice([SYMBOL.id, OTHER.id])
                for _ in range(rnd.randint(1, 3)):
                    side = rnd.choice([Side.BUY, Side.SELL])
                    price = rnd.randint(1, 10) if side == Side.BUY else rnd.randint(11, 20)
                    qty = rnd.choice([0, 1, 2])
                    state.process(level(seq, side, price, qty, symbol=symbol, ts=ts), updates)
                if rnd.random() < 0.3:
                    trade_ids[symbol] += 1
                    t = trade(seq, trade_ids[symbol], 10, 1, symbol=symbol, ts=ts)
                    state.process(t, updates)
            hub.publish(updates + state.flush())
            assert client.closed is None, f"seed {seed}: {client.closed}"
            client.drain(rnd.randint(0, 12))
        client.drain(10**6)
        for market in (SYMBOL, OTHER):
            last, book = rebuild(client.got, f"{market.stream}@depth")
            snap = state.symbols[market.id].book.snapshot(hub.depth_levels)
            assert last == snap.last_update_id, f"seed {seed}"
            n = hub.depth_levels
            assert client_top(book["b"], n, True) == [
                (market.price(p), market.qty(q)) for p, q in snap.bids
            ]
            assert client_top(book["a"], n, False) == [
                (market.price(p), market.qty(q)) for p, q in snap.asks
            ]
            klines = [
                m["data"]["k"] for m in client.got if m["stream"] == f"{market.stream}@kline_1m"
            ]
            finals = [k["t"] for k in klines if k["x"]]
            assert finals == sorted(set(finals)), f"seed {seed}: closed candles {finals}"
            current = state.symbols[market.id].candles["1m"].current
            if current is not None:
                assert klines[-1]["t"] == current.open_ns // 1_000_000 and not klines[-1]["x"]
        tape = [m["data"]["t"] for m in client.got if m["stream"] == "btc-usd@trade"]
        assert tape == list(range(1, trade_ids[SYMBOL.id] + 1)), f"seed {seed}"


def test_candles_and_ticker_match_a_brute_force_model_at_every_boundary() -> None:
    """Random trades (event time only) whose stamps are often snapped to an interval's start,
    its last nanosecond or the next start, with idle gaps of a minute, an hour, 4 h and a
    day: every candle at every interval holds exactly the trades of its own time (open,
    high, low, close, volumes, first and last trade id), idle intervals are flat at the
    previous close, each closed candle is published once with its final value, and after
    every trade the 24h ticker covers exactly the trades of its window."""
    for seed in range(12):  # (60 seeds took 32 s a run; review 53 covers this ground too)
        rnd = random.Random(seed)
        state = MarketState([SYMBOL], candle_history=100_000)
        market = state.symbols[SYMBOL.id]
        trades: list[tuple[int, int, int, int]] = []  # (id, price, qty, ts)
        published: list[Update] = []
        ts = T0
        for tid in range(1, 301):
            ts += rnd.choice([0, 1, S, 59 * S, 60 * S, 61 * S, 3_600 * S, 14_400 * S, 86_399 * S])
            if rnd.random() < 0.3:
                length = rnd.choice(list(INTERVALS.values()))
                snapped = ts - ts % length + rnd.choice([0, length - 1, length])
                ts = max(snapped, trades[-1][3] if trades else 0)
            price, qty = rnd.randint(90, 110), rnd.randint(1, 5)
            state.process(trade(tid, tid, price, qty, ts=ts), published)
            trades.append((tid, price, qty, ts))
            if rnd.random() < 0.3:
                published += state.flush()
            ticker = market.ticker.ticker()
            assert ticker is not None
            now = market.ticker.now_ns
            oldest = now - now % BUCKET_NS - (WINDOW_BUCKETS - 1) * BUCKET_NS
            window = [t for t in trades if t[3] >= oldest]
            assert (ticker.open, ticker.high, ticker.low, ticker.trades) == (
                window[0][1],
                max(t[1] for t in window),
                min(t[1] for t in window),
                len(window),
            ), f"seed {seed} trade {tid}"
            assert ticker.volume == sum(t[2] for t in window)
            assert ticker.first_trade_id == window[0][0] and ticker.last_trade_id == tid
        published += state.flush()
        for name, length in INTERVALS.items():
            series = market.candles[name]
            assert series.current is not None
            candles = [*series.closed, series.current]
            by_open = {c.open_ns: c for c in candles}
            model: dict[int, list[int]] = {}
            for tid, price, qty, at in trades:
                c = model.setdefault(
                    at - at % length, [price, price, price, price, 0, 0, 0, tid, 0]
                )
                c[1], c[2], c[3] = max(c[1], price), min(c[2], price), price
                c[4], c[5], c[6], c[8] = c[4] + qty, c[5] + price * qty, c[6] + 1, tid
            for start, want in model.items():
                got = by_open[start]
                assert [got.open, got.high, got.low, got.close, got.volume] == want[:5]
                assert [got.quote_volume, got.trades, got.first_trade_id] == want[5:8]
                assert got.last_trade_id == want[8], f"seed {seed} {name} {start}"
            for a, b in itertools.pairwise(candles):
                assert a.close_ns == b.open_ns
                if not b.trades:
                    assert b.open == b.close == a.close
            finals = [
                u.candle for u in published if isinstance(u, CandleUpdate) and u.interval == name
            ]
            finals = [c for c in finals if c.closed]
            # every candle with a trade is published closed, and of an idle gap's flat ones
            # the newest PUBLISHED_FLATS (review 205): the history has them all
            by_start = {c.open_ns: c for c in series.closed}
            assert all(by_start.get(c.open_ns) == c for c in finals), f"seed {seed} {name}"
            assert [c.open_ns for c in finals] == sorted({c.open_ns for c in finals})
            shown = {c.open_ns for c in finals}
            assert all(c.open_ns in shown for c in series.closed if c.trades), f"seed {seed}"


async def _depth_over_a_socket(instance: str) -> None:
    async with running(instance, depth_levels=3) as rig:
        state = rig.process.state
        rnd = random.Random(89)
        events: list[Record] = [
            *(level(1, Side.BUY, 100 - k, 1 + k) for k in range(8)),
            *(level(1, Side.SELL, 101 + k, 1 + k) for k in range(8)),
        ]
        rig.publish(events)
        async with rig.client("/ws/btc-usd@depth") as client:
            got = [await client.recv(30.0)]
            seq = 1
            for _ in range(30):
                batch: list[Record] = []
                for _ in range(rnd.randint(1, 3)):
                    seq += 1
                    for _ in range(rnd.randint(1, 4)):
                        side = rnd.choice([Side.BUY, Side.SELL])
                        price = rnd.randint(85, 100) if side == Side.BUY else rnd.randint(101, 116)
                        batch.append(level(seq, side, price, rnd.choice([0, 0, 1, 5])))
                rig.publish(batch)
                await asyncio.sleep(rnd.choice([0.0, 0.02]))
            # one last change that is certain to make a diff ending at ``seq``
            seq += 1
            rig.publish([level(seq, Side.BUY, 1, 7)])
            while got[-1]["data"].get("u") != seq:
                got.append(await client.recv(30.0))
        last, book = rebuild(got, "btc-usd@depth")
        snap = state.symbols[SYMBOL.id].book.snapshot(3)
        assert last == snap.last_update_id == seq
        assert client_top(book["b"], 3, True) == [
            (SYMBOL.price(p), SYMBOL.qty(q)) for p, q in snap.bids
        ]
        assert client_top(book["a"], 3, False) == [
            (SYMBOL.price(p), SYMBOL.qty(q)) for p, q in snap.asks
        ]


def test_a_socket_at_three_levels_keeps_the_top_through_removals_and_rises(instance: str) -> None:
    """Over a real WebSocket at ``depth_levels = 3``: a snapshot of three levels a side, then
    30 batches of random changes and removals at and below the top, published in bursts so
    that several seqs share a diff. The client applying the snapshot then the diffs (each
    ``U`` = the previous ``u`` + 1) holds the book's top three levels a side at the end:
    levels rising into the top without changing come with the diffs (``L2Book.top``)."""
    asyncio.run(_depth_over_a_socket(instance))
