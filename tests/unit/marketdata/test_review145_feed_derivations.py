"""Review 145: the market data's derivations (depth, tape, candles, 24h ticker, their decimal
strings) held DIFFERENTIALLY against a tiny reference computed from the same event stream.

Method: a seeded flow of matcher output (``Flow``): commands of one to three trades and up to
three level changes (new, amended, cancelled levels: absolute qty, 0 removes), several seqs a
batch, timestamps that repeat, land on the ns of a minute/hour/day boundary, step 1 ns, jump
days with no trade, and now and then come a few seconds late (a trade stamped before the
symbol's clock). The reference (``Ref``) keeps the book as a dict per side, the tape as a list,
candles as trades grouped by ``max(ts, clock)`` per interval with a flat candle at the previous
close for each empty one, and the ticker as the trades whose minute (a late one's: the
window's end when it came) is within the 1440 of now.
Three drives: (1) ``MarketState`` + ``Hub`` with a recording subscriber on every stream,
compared after every batch, with the wall clock advanced at random and the state pickled and
reloaded (a restart: a fresh hub, the subscriber's snapshot again) mid-stream; (2) rendering at
tick sizes 0.01, 0.00000001, 5 and 0.25 against ``Decimal``; (3) the real process
(``MarketDataProcess`` over a real ring, event time only) with a real websockets client on a
combined stream, stopped and restarted from its saved state mid-stream and reconnected.

Sound: a client's book (snapshot, then each diff with ``U`` = previous ``u`` + 1) equals the
reference's top ``depth_levels`` a side after every batch, at depths 1, 3 and 100, across
restarts; snapshots never hold a level of qty 0 nor more than ``depth_levels``; every trade
once, in order, with price, qty, ``m`` (buyer is maker: aggressor SELL) and ``u``; candles at
all six intervals (OHLC, volume, quote volume, count, first/last trade, epoch-aligned ``t``,
``T`` = next open - 1 ms, flats for idle intervals, a late trade in the candle open at the
clock) equal the reference's, also every ``x: true`` kline message; the ticker's ``o h l c v q
n F L`` and ``p P w`` equal the reference (``P`` and ``w`` rounded as documented), its window
emptying after a gap of days; every decimal string is exact at every tick size.

Faults (each a strict xfail when written; fixed since, the same session: a kline's ``E`` is
the later of the feed's clock and the symbol's own, ``Hub._now``):
1. ``procs/core/market/state.py:162-163`` (``MarketState.advance``) leaves ``now_ns`` where it
   was while a ring is behind (``held``), yet ``procs/marketdata/hub.py:216`` (and ``:155``, a
   new subscriber's first kline) renders every kline's ``E`` from ``state.now_ns``: the symbols
   whose clock did move get their candle closed and published ``x: true`` with an event time
   ``E`` before the candle's own close ``T`` (5 minutes before it here; the new open candle's
   ``E`` before its ``t``): a client ordering by ``E`` sees a close announced before the
   interval ended. Without a ring behind, ``E`` is after ``T`` (a plain test).
"""

from __future__ import annotations

import asyncio
import json
import pickle
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from websockets.asyncio.client import ClientConnection, connect

from procs.common.records import BookLevel, Record, Trade
from procs.common.topology import MARKETDATA, matcher_output
from procs.common.types import Side
from procs.core.market.candles import INTERVALS
from procs.core.market.state import MarketState, Update
from procs.core.market.symbols import MarketSymbol
from procs.core.market.ticker import BUCKET_NS, WINDOW_BUCKETS
from procs.marketdata.feed import Feed
from procs.marketdata.hub import Hub, Message
from procs.marketdata.main import MarketDataProcess
from procs.marketdata.streams import parse_stream
from shm import Ring

from .events import MIN, OTHER, SYMBOL, T0
from .feed_fakes import ListConsumer
from .rig import CODEC, config

S = 1_000_000_000
DAY = 86_400 * S
ALL = ["depth", "trade", "ticker", *(f"kline_{i}" for i in INTERVALS)]


# -- the flow and the reference ---------------------------------------------------------------


@dataclass
class Flow:
    """Seeded matcher output for symbol 1: ``batch()`` gives the next few seqs' events."""

    rng: random.Random
    late: bool = True  # trades stamped a few seconds before the clock, now and then
    tick: int = 1
    seq: int = 0
    trade_id: int = 0
    ts: int = T0 - 3 * MIN

    def _step(self) -> None:
        r = self.rng.random()
        if r < 0.04:  # days with no trade at all
            self.ts += self.rng.choice([1, 2, 9]) * DAY + self.rng.randrange(3) * MIN
        elif r < 0.30:  # a boundary's exact ns, 1 ns on, or a little
            step = self.rng.choice([MIN, 5 * MIN, 3600 * S, 4 * 3600 * S, DAY])
            self.ts += self.rng.choice([step - self.ts % step, 1, self.rng.randrange(90 * S)])
        # else: the same timestamp again

    def batch(self) -> list[Record]:
        out: list[Record] = []
        for _ in range(self.rng.randrange(1, 5)):
            self.seq += 1
            self._step()
            ts = self.ts - (
                self.rng.randrange(1, 5 * S) if self.late and self.rng.random() < 0.05 else 0
            )
            for _ in range(self.rng.randrange(0, 4) if self.rng.random() < 0.45 else 0):
                self.trade_id += 1
                price = self.rng.randrange(95, 106) * self.tick
                side = self.rng.choice([Side.BUY, Side.SELL])
                qty = self.rng.randrange(1, 40)
                out.append(
                    Trade(
                        self.seq, ts, self.trade_id, 1, price, qty, side, 5, 50, 1, 0, 6, 60, 1, 0
                    )
                )
            for _ in range(self.rng.randrange(0, 4)):
                side = self.rng.choice([Side.BUY, Side.SELL])
                base = 85 if side == Side.BUY else 101
                price = (base + self.rng.randrange(15)) * self.tick
                qty = self.rng.choice([0, 0, self.rng.randrange(1, 90)])
                out.append(BookLevel(self.seq, ts, 1, side, price, qty, 1 if qty else 0))
        return out


#: t o h l c v q n f L V Q (V, Q: the trades whose aggressor bought)
Candle = tuple[int, int, int, int, int, int, int, int, int, int, int, int]


@dataclass
class Ref:
    """The reference: what the documents say the feed shows, computed the plain way."""

    book: dict[Side, dict[int, int]] = field(default_factory=lambda: {Side.BUY: {}, Side.SELL: {}})
    trades: list[Trade] = field(default_factory=list)
    placed: list[tuple[int, int]] = field(default_factory=list)  # (candle time, ticker now)
    clock: int = 0  # newest event time (and advance) of the symbol
    tnow: int = 0  # the ticker's end: trades' own times and the clock at each flush

    def process(self, e: Record) -> None:
        if isinstance(e, Trade):
            if self.trades and e.trade_id <= self.trades[-1].trade_id:
                return
            self.tnow = max(self.tnow, e.ts_ns)
            self.trades.append(e)
            self.placed.append((max(e.ts_ns, self.clock), self.tnow))
        elif isinstance(e, BookLevel):
            if e.qty:
                self.book[e.side][e.price] = e.qty
            else:
                self.book[e.side].pop(e.price, None)
        self.clock = max(self.clock, e.ts_ns)  # type: ignore[attr-defined]

    def flushed(self) -> None:
        self.tnow = max(self.tnow, self.clock)

    def top(self, side: Side, n: int) -> list[tuple[int, int]]:
        return sorted(self.book[side].items(), reverse=side == Side.BUY)[:n]

    def candles(self, length: int, keep: int) -> list[Candle]:
        """The last ``keep`` candles of ``length``, the open one (at the clock) last."""
        groups: dict[int, list[Trade]] = {}
        for (at, _), t in zip(self.placed, self.trades, strict=True):
            groups.setdefault(at - at % length, []).append(t)
        end = max(self.clock - self.clock % length, *groups)
        start = max(min(groups), end - keep * length)
        older = [k for k in groups if k < start]
        close = groups[max(older)][-1].price if older else 0
        out: list[Candle] = []
        for t0 in range(start, end + length, length):
            g = groups.get(t0, [])
            if g:
                ps = [t.price for t in g]
                vol, quote = sum(t.qty for t in g), sum(t.price * t.qty for t in g)
                bought = [t for t in g if t.aggressor == Side.BUY]
                buy_vol, buy_quote = (
                    sum(t.qty for t in bought),
                    sum(t.price * t.qty for t in bought),
                )
                out.append(
                    (
                        t0,
                        ps[0],
                        max(ps),
                        min(ps),
                        ps[-1],
                        vol,
                        quote,
                        len(g),
                        g[0].trade_id,
                        g[-1].trade_id,
                        buy_vol,
                        buy_quote,
                    )
                )
                close = ps[-1]
            else:
                out.append((t0, close, close, close, close, 0, 0, 0, 0, 0, 0, 0))
        return out[-keep:]

    def ticker(self) -> tuple[int, ...]:
        """(open, high, low, last, volume, quote, count, first id, last id) of the window."""
        oldest = self.tnow - self.tnow % BUCKET_NS - (WINDOW_BUCKETS - 1) * BUCKET_NS
        win = [
            t
            for (_, at), t in zip(self.placed, self.trades, strict=True)
            if at - at % BUCKET_NS >= oldest
        ]
        last = self.trades[-1].price
        if not win:
            return (last, last, last, last, 0, 0, 0, 0, 0)
        ps = [t.price for t in win]
        vol, quote = sum(t.qty for t in win), sum(t.price * t.qty for t in win)
        return (
            ps[0],
            max(ps),
            min(ps),
            last,
            vol,
            quote,
            len(win),
            win[0].trade_id,
            win[-1].trade_id,
        )


# -- what a client rebuilds -------------------------------------------------------------------


def dec(value: int, decimals: int) -> str:
    """``value`` / 10**decimals as the exact string, through ``Decimal`` (the reference)."""
    text = format(Decimal(value).scaleb(-decimals), "f")
    return text if decimals else str(value)


def rebuild(
    msgs: list[dict[str, Any]], stream: str, depth: int = 1 << 30
) -> tuple[int, dict[str, dict[str, str]]]:
    """A client's book from ``stream``'s snapshots and diffs, checking continuity (and that
    a snapshot holds at most ``depth`` levels a side, none of them empty): (last update id,
    book). Review 89's reads its feeds' books with it too."""
    last, book = -1, {"b": dict[str, str](), "a": dict[str, str]()}
    for m in msgs:
        if m.get("stream") != stream:
            continue
        d = m["data"]
        if d["e"] == "depthSnapshot":
            assert len(d["bids"]) <= depth and len(d["asks"]) <= depth
            assert all(Decimal(q) > 0 for _, q in d["bids"] + d["asks"]), d
            last, book = d["lastUpdateId"], {"b": dict(d["bids"]), "a": dict(d["asks"])}
            continue
        assert d["U"] == last + 1, f"diff {d['U']}..{d['u']} after {last}"
        last = d["u"]
        for side in "ba":
            for price, qty in d[side]:
                if Decimal(qty) == 0:
                    book[side].pop(price, None)
                else:
                    book[side][price] = qty
    return last, book


def client_top(book: dict[str, str], n: int, bids: bool) -> list[tuple[str, str]]:
    return sorted(book.items(), key=lambda kv: Decimal(kv[0]), reverse=bids)[:n]


def shown(s: MarketSymbol, c: Candle, interval: str) -> dict[str, Any]:
    """A reference candle as a kline's ``k`` shows it (``x`` aside)."""
    t0, o, h, lo, cl, v, q, n, f, last, buy_v, buy_q = c
    return {
        **{"t": t0 // 10**6, "T": (t0 + INTERVALS[interval]) // 10**6 - 1, "s": s.name},
        **{"i": interval, "o": dec(o, s.price_decimals), "h": dec(h, s.price_decimals)},
        **{"l": dec(lo, s.price_decimals), "c": dec(cl, s.price_decimals)},
        **{"v": dec(v, s.qty_decimals), "q": dec(q, s.price_decimals + s.qty_decimals)},
        **{"n": n, "f": f, "L": last, "B": "0"},
        **{"V": dec(buy_v, s.qty_decimals), "Q": dec(buy_q, s.price_decimals + s.qty_decimals)},
    }


def ticker_shown(s: MarketSymbol, r: tuple[int, ...]) -> dict[str, Any]:
    """The reference ticker's figures as strings: ``P`` and ``w`` rounded half up."""
    o, h, lo, c, v, q, n, f, last = r
    pd, qd = s.price_decimals, s.qty_decimals
    pct = (Decimal(c - o) * 100 / Decimal(o)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    w = (
        (Decimal(q) / Decimal(v)).scaleb(-pd).quantize(Decimal(1).scaleb(-pd - qd), ROUND_HALF_UP)
        if v
        else Decimal(0)
    )
    return {
        **{"p": dec(c - o, pd), "P": str(pct), "o": dec(o, pd), "h": dec(h, pd), "l": dec(lo, pd)},
        **{"c": dec(c, pd), "v": dec(v, qd), "q": dec(q, pd + qd), "n": n, "F": f, "L": last},
        "w": dec(int(w.scaleb(pd + qd)), pd + qd),
    }


class Recorder:
    """A subscriber as ``Hub`` sees one, keeping every message it is handed as JSON."""

    def __init__(self) -> None:
        self.streams: set[str] = set()
        self.got: list[dict[str, Any]] = []

    def deliver(self, messages: Any, frames: bytes) -> None:
        self.got += [json.loads(m.payload) for m in messages]

    def deliver_snapshot(self, stream: str, payload: bytes) -> None:
        self.got.append(json.loads(payload))

    def join(self, hub: Hub, s: MarketSymbol) -> None:
        self.streams = set()
        hub.subscribe(self, [parse_stream(f"{s.stream}@{k}", hub.symbols) for k in ALL])


def check_all(
    s: MarketSymbol,
    state: MarketState,
    got: list[dict[str, Any]],
    ref: Ref,
    depth: int,
    since: int = 0,
) -> None:
    """Everything a client of every stream holds against the reference (trades from the
    ``since``-th: those after it connected)."""
    last, book = rebuild(got, f"{s.stream}@depth", depth)
    for side, key, bids in ((Side.BUY, "b", True), (Side.SELL, "a", False)):
        want = [(dec(p, s.price_decimals), dec(q, s.qty_decimals)) for p, q in ref.top(side, depth)]
        assert client_top(book[key], depth, bids) == want, (key, last)
    tape = [m["data"] for m in got if m.get("stream") == f"{s.stream}@trade"]
    expect = [
        {"t": t.trade_id, "p": dec(t.price, s.price_decimals), "q": dec(t.qty, s.qty_decimals)}
        | {"m": t.aggressor == Side.SELL, "u": t.seq, "T": t.ts_ns // 10**6}
        for t in ref.trades[since:]
    ]
    assert [{k: d[k] for k in "tpqmuT"} for d in tape] == expect
    assert all(d["M"] is True for d in tape)  # Binance's unused field, its parsers read
    if not ref.trades:
        return
    for interval, length in INTERVALS.items():
        series = state.symbols[s.id].candles[interval]
        keep = min(len(series.history(10_000)), 40)
        want_c = ref.candles(length, keep)
        mine = [
            (
                *(c.open_ns, c.open, c.high, c.low, c.close, c.volume, c.quote_volume),
                *(c.trades, c.first_trade_id, c.last_trade_id),
                *(c.taker_buy_volume, c.taker_buy_quote_volume),
            )
            for c in series.history(keep)
        ]
        assert mine == want_c, interval
        finals = {
            m["data"]["k"]["t"]: m["data"]["k"]
            for m in got
            if m.get("stream") == f"{s.stream}@kline_{interval}" and m["data"]["k"]["x"]
        }
        for c in want_c[:-1]:
            if c[0] // 10**6 in finals:
                assert {k: v for k, v in finals[c[0] // 10**6].items() if k != "x"} == shown(
                    s, c, interval
                )
    t = state.symbols[s.id].ticker.ticker()
    assert t is not None
    figures = (t.open, t.high, t.low, t.last, t.volume, t.quote_volume, t.trades)
    assert (*figures, t.first_trade_id, t.last_trade_id) == ref.ticker()
    tickers = [m["data"] for m in got if m.get("stream") == f"{s.stream}@ticker"]
    if tickers and tickers[-1]["C"] == t.ts_ns // 10**6:
        want_t = ticker_shown(s, ref.ticker())
        assert {k: tickers[-1][k] for k in want_t} == want_t


# -- sound: the sans-I/O state and hub --------------------------------------------------------


def drive(seed: int, s: MarketSymbol, depth: int, tick: int = 1, batches: int = 120) -> None:
    rng = random.Random(seed)
    flow, ref = Flow(rng, tick=tick), Ref()
    state = MarketState([s], candle_history=60)
    hub, rec = Hub(state, depth_levels=depth, max_subscriptions=64), Recorder()
    rec.join(hub, s)
    for _ in range(batches):
        out: list[Update] = []
        for event in flow.batch():
            ref.process(event)
            state.process(event, out)
        if rng.random() < 0.15:  # the wall clock (lagged): opens candles on time
            now = ref.clock + rng.choice([0, MIN, rng.randrange(3 * MIN), 2 * DAY])
            state.advance(now)
            ref.clock = max(ref.clock, now)
            ref.tnow = max(ref.tnow, now)
        out += state.flush()
        ref.flushed()
        hub.publish(out)
        if rng.random() < 0.06:  # a restart: the saved state, a fresh hub, resubscribed
            state = pickle.loads(pickle.dumps(state))
            hub = Hub(state, depth_levels=depth, max_subscriptions=64)
            rec.join(hub, s)
        check_all(s, state, rec.got, ref, depth)


@pytest.mark.parametrize("seed", range(12))
def test_state_and_hub_match_the_reference_batch_by_batch(seed: int) -> None:
    drive(seed, SYMBOL, depth=(1, 3, 100)[seed % 3])


#: (price decimals, qty decimals, tick in price units): 0.01, 0.00000001, 5, 0.25
TICKS = [(2, 4, 1), (8, 8, 1), (0, 0, 5), (2, 0, 25)]


@pytest.mark.parametrize(("pd", "qd", "tick"), TICKS)
def test_decimal_strings_are_exact_at_every_tick_size(pd: int, qd: int, tick: int) -> None:
    s = MarketSymbol(1, "X-Y", "x-y", pd, qd)
    for seed in range(3):
        drive(100 + seed, s, depth=5, tick=tick, batches=80)
    for value in (0, 1, 5, 25, 10**pd - 1, 10**pd, 123_456_789_012_345, -7):
        assert s.price(value) == dec(value, pd) and "e" not in s.price(value).lower()


# -- sound: the real process, a real client, a restart ----------------------------------------


async def read_all(ws: ClientConnection, ident: int) -> list[dict[str, Any]]:
    """Every message up to the answer to a LIST_SUBSCRIPTIONS (answers queue after all
    that was delivered before them)."""
    await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": ident}))
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("id") == ident:
                return got
            got.append(msg)


async def fed(process: MarketDataProcess, count: int) -> None:
    async with asyncio.timeout(10):
        while process.feed.events < count:
            await asyncio.sleep(0.005)


def test_real_process_and_client_match_the_reference_across_a_restart(
    instance: str, tmp_path: Path
) -> None:
    cfg = config(instance, var_dir=str(tmp_path), depth_levels=3, snapshot_every_s=3600)
    ring = Ring.create(
        instance, matcher_output("m1"), CODEC, capacity=1 << 14, consumers=[MARKETDATA]
    )
    producer = ring.producer()
    flow, ref = Flow(random.Random(145), late=False), Ref()
    streams = "/".join(f"btc-usd@{k}" for k in ALL)

    async def run_once(process: MarketDataProcess, seen: int, batches: int) -> int:
        process.feed._next_clock = float("inf")  # event time only: the reference's clock
        port = await process.start(0)
        since = len(ref.trades)
        async with connect(f"ws://127.0.0.1:{port}/stream?streams={streams}") as ws:
            got: list[dict[str, Any]] = []
            for k in range(batches):
                events = flow.batch()
                for e in events:
                    ref.process(e)
                producer.publish_batch(events)
                seen += len(events)
                if k % 10 == 9:
                    await fed(process, seen)
                    got += await read_all(ws, k)
                    ref.flushed()
                    check_all(SYMBOL, process.state, got, ref, 3, since)
        await process.stop()
        return seen

    async def scenario() -> None:
        first = MarketDataProcess(cfg, codec=CODEC)
        seen = await run_once(first, 0, 60)
        again = MarketDataProcess(cfg, codec=CODEC)  # the saved state, its ring position
        assert again.consumers[0].sequence == seen
        await run_once(again, 0, 60)

    try:
        asyncio.run(scenario())
    finally:
        producer.close()
        ring.close()


# -- faults -----------------------------------------------------------------------------------


class Kept:
    """A subscriber keeping ``Message`` objects."""

    def __init__(self) -> None:
        self.streams: set[str] = set()
        self.got: list[Message] = []

    def deliver(self, messages: Any, frames: bytes) -> None:
        self.got += messages

    def deliver_snapshot(self, stream: str, payload: bytes) -> None:
        pass


def klines(held: bool) -> Iterator[dict[str, Any]]:
    """Two rings: m1 (BTC-USD) traded 5 minutes ago; m2 (ETH-USD) holds a backlog older
    than that, more than a read (``held``) or not. One pump: the wall clock moves BTC-USD on,
    closing its minute. The 1m kline messages of BTC-USD."""
    now = time.time_ns()
    minute = now - now % MIN - 5 * MIN
    btc: list[Record] = [Trade(1, minute + 7 * S, 1, 1, 100, 1, Side.BUY, 5, 50, 1, 0, 6, 60, 1, 0)]
    eth: list[Record] = [
        BookLevel(2 + k, minute - 5 * MIN + k, 2, Side.BUY, 90 + k % 5, 1 + k, 1)
        for k in range(8 if held else 2)
    ]
    state = MarketState([SYMBOL, OTHER])
    hub, sub = Hub(state, depth_levels=5, max_subscriptions=8), Kept()
    hub.subscribe(sub, [parse_stream("btc-usd@kline_1m", hub.symbols)])
    rings = [ListConsumer(btc, matcher_output("m1")), ListConsumer(eth, matcher_output("m2"))]
    feed = Feed(
        state,
        hub,
        cast(Any, rings),
        batch=4,
        ring_symbols={matcher_output("m1"): {1}, matcher_output("m2"): {2}},
    )
    feed.pump()
    return (json.loads(m.payload)["data"] for m in sub.got)


def test_a_kline_closed_by_the_clock_is_stamped_after_its_close_when_no_ring_lags() -> None:
    closed = [d for d in klines(held=False) if d["k"]["x"]]
    assert closed and all(d["E"] > d["k"]["T"] for d in closed)


def test_a_kline_closed_while_another_ring_lags_is_not_stamped_before_its_close() -> None:
    """The wall clock closes BTC-USD's minute while ETH-USD's ring is behind: the close goes
    out ``x: true`` with ``E`` = the state's ``now_ns``, the newest event time, 5 minutes
    before the wall clock that closed it and before the candle's own ``T``."""
    got = list(klines(held=True))
    closed = [d for d in got if d["k"]["x"]]
    assert closed, got
    for d in got:
        assert d["E"] > d["k"]["T"] if d["k"]["x"] else d["E"] >= d["k"]["t"], d
