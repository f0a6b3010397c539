"""Review 319: the public market-data feed as a bot keeps a book by it.

Reviewed: README's marketdata row and ``[marketdata]`` section (snapshot then contiguous
diffs, ``U``/``u``, bookTicker, depth5, trades, 24h ticker, klines, slow consumers, status),
``procs/marketdata/hub.py``, ``outbox.py``, ``feed.py``, ``messages.py``, ``web.py``,
``server.py`` (``Client.deliver``), ``procs/core/market/book.py``, ``state.py``.

Rig: ``rig.running`` via ``test_adversarial_ws.run`` (the market-data process in this one over a
real matcher output ring, real ``websockets`` clients over TCP, ``/api/*`` by plain HTTP GET);
the events come from a real ``procs.core.engine.Matcher`` of the rig's two symbols fed a seeded
workload (``Workload``: limit GTC/IOC/FOK/post-only, market, stop and stop-limit with their
triggers, icebergs, cancels and replaces by their owner, halt and resume). ``Bot`` keeps an L2
book per depth stream (snapshot, then diffs with ``U == previous u + 1``, ``u <= last``
dropped) and the trade tapes; slow readers are ``test_server.small_buffer_socket`` with
``max_queue=1`` under ``TIGHT`` and ``client_queue=16``.

Faults found: none. Every scenario below held; no strict xfail is filed.

Sound:
1. After 1,000 commands over both symbols on one combined connection, the bot's books equal
   ``/api/depth`` (1,000 levels) and the matcher's own ``levels()``, with no gap.
2. An iceberg shows its display only (the slice left after a partial take), on the stream,
   on REST and in the matcher alike.
3. Trades: the stream and ``/api/trades`` both equal the matcher's ``Trade`` events (ids,
   prices, sizes, ``m`` = aggressor SELL, ``u`` = seq), none missing or twice; the last
   ``@ticker`` has ``o h l c Q v q w p n F L`` of those trades; every ``/api/klines`` 1m
   candle's OHLCV and count are its ``f..L`` trades', their volumes sum to the tape's, and the
   last ``@kline_1m`` equals REST's open candle.
4. UNSUBSCRIBE then SUBSCRIBE mid-flow gives a second snapshot and gapless diffs after it; a
   second connection on the same stream, and a repeated SUBSCRIBE of a held stream (a no-op:
   no second snapshot), end on the same book.
5. Halt and resume: ``@status`` says TRADING, HALT, TRADING (the other symbol only TRADING),
   ``/api/symbols`` says HALT meanwhile, the books stay equal to the matcher's.
6. A slow bot on depth/bookTicker/depth5 of both symbols is resnapshotted, never sees a hole,
   and ends on the book; its last bookTicker and depth5 are the book's top. A slow bot on
   trades gets a gapless prefix of the tape and then 1008 "slow consumer", as README says.
7. (Tried, not kept as a test: the same bot at ``depth_levels=3`` keeps a top 3 equal to
   ``/api/depth?limit=3`` through levels leaving and re-entering the top.)

Leads not shown:
- A SUBSCRIBE of a depth stream already held is answered ``null`` and sends nothing
  (``Hub.check_subscribe`` drops held names), so a bot that resyncs after a gap by SUBSCRIBE
  alone waits for a snapshot that never comes; the page UNSUBSCRIBEs first. That is how the
  venues behave too; README did not say either way (it does now: UNSUBSCRIBE then SUBSCRIBE
  takes a fresh snapshot).
- One command's events longer than a ring read (1,024) are applied in two batches and
  restart the stream from a snapshot (``feed.py`` ``_last_seq_start`` returns 0); README
  documents it, not exercised here.
- A candle's close (``x: true``) across a minute boundary and the 24h window's expiry were not
  driven here (wall-clock minutes; reviews 145 and 249 cover them by event time).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from procs.common.records import (
    AdminCommand,
    CancelOrder,
    NewOrder,
    Record,
    ReplaceOrder,
    Trade,
)
from procs.common.types import AdminAction, OrderFlag, OrdType, Side, StpMode, TimeInForce
from procs.core.engine import Matcher
from procs.core.symbols import symbol_specs

from .rig import Rig, config
from .test_adversarial_ws import TIGHT, get, run
from .test_server import small_buffer_socket

Book = dict[str, dict[str, str]]
SYMBOLS = {1: "btc-usd", 2: "eth-usd"}
NAMES = {1: "BTC-USD", 2: "ETH-USD"}


class Workload:
    """A real matcher of the rig's two symbols fed a seeded mix of orders (limit GTC, IOC,
    FOK, post-only, market, stop and stop-limit, iceberg, cancel, replace, halts), its
    events published to the rig; ``events`` keeps everything it published."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.matcher = Matcher(symbol_specs(config("review319-unused"), "m1"))
        self.seq = 0
        self.live: dict[int, list[tuple[int, int]]] = {1: [], 2: []}
        self.events: list[Record] = []
        self.halted: set[int] = set()

    def _next(self) -> tuple[int, int]:
        self.seq += 1
        return self.seq, time.time_ns()

    def order(self, symbol: int, side: Side, price: int, qty: int, **kw: Any) -> NewOrder:
        seq, ts = self._next()
        account = self.rng.randint(1, 6)
        fields: dict[str, Any] = {
            "ord_type": OrdType.LIMIT, "tif": TimeInForce.GTC, "flags": 0,
            "stp": StpMode.NONE, "stop_price": 0, "display_qty": 0,
        }  # fmt: skip
        fields.update(kw)
        return NewOrder(
            *(seq, ts, 1, account, seq, account, symbol, seq),
            side=side, price=price, qty=qty, **fields,
        )  # fmt: skip

    def command(self, symbol: int) -> Record:
        rng = self.rng
        side = rng.choice((Side.BUY, Side.SELL))
        price = 10_000 + rng.randint(-15, 15)
        qty = rng.randint(1, 40)
        roll = rng.random()
        live = self.live[symbol]
        if roll < 0.40:
            return self.order(symbol, side, price, qty)
        if roll < 0.48:
            return self.order(symbol, side, price, qty, tif=TimeInForce.IOC)
        if roll < 0.52:
            return self.order(symbol, side, price, qty, tif=TimeInForce.FOK)
        if roll < 0.57:
            return self.order(symbol, side, price, qty, flags=OrderFlag.POST_ONLY)
        if roll < 0.62:
            cap = 12_000 if side == Side.BUY else 0
            return self.order(symbol, side, cap, qty, ord_type=OrdType.MARKET)
        if roll < 0.70:
            return self.order(symbol, side, price, qty * 5, display_qty=qty)
        if roll < 0.74:
            stop = price + (3 if side == Side.BUY else -3)
            cap = 12_000 if side == Side.BUY else 0
            return self.order(symbol, side, cap, qty, ord_type=OrdType.STOP, stop_price=stop)
        if roll < 0.78:
            stop = price + (3 if side == Side.BUY else -3)
            return self.order(
                symbol, side, price, qty, ord_type=OrdType.STOP_LIMIT, stop_price=stop
            )
        if roll < 0.90 and live:
            target, account = rng.choice(live)
            seq, ts = self._next()
            return CancelOrder(seq, ts, 1, account, seq, account, symbol, target)
        if live:
            target, account = rng.choice(live)
            seq, ts = self._next()
            return ReplaceOrder(seq, ts, 1, account, seq, account, symbol, target, price, qty)
        return self.order(symbol, side, price, qty)

    def step(self, count: int, symbols: Iterable[int] = (1, 2)) -> list[Record]:
        syms = list(symbols)
        out: list[Record] = []
        for _ in range(count):
            symbol = self.rng.choice(syms)
            cmd = self.command(symbol)
            if isinstance(cmd, NewOrder):
                self.live[symbol].append((cmd.order_id, cmd.account))
            out += self.matcher.execute(cmd)
        return out

    def admin(self, action: AdminAction, symbol: int) -> list[Record]:
        seq, ts = self._next()
        return self.matcher.execute(AdminCommand(seq, ts, action, symbol, seq))

    def publish(self, rig: Rig, events: list[Record]) -> None:
        self.events += events
        rig.publish(events)

    def book(self, symbol: int) -> Book:
        """The matcher's own book, as the feed renders it (2 decimals, 4 for sizes)."""
        out: Book = {"b": {}, "a": {}}
        for (side, price), (qty, _count) in self.matcher.books[symbol].levels().items():
            out["b" if side == Side.BUY else "a"][f"{price / 100:.2f}"] = f"{qty / 10_000:.4f}"
        return out

    def trades(self, symbol: int) -> list[Trade]:
        return [e for e in self.events if isinstance(e, Trade) and e.symbol == symbol]


class Bot:
    """A client keeping L2 books from depth snapshots and diffs, and the trade tapes."""

    def __init__(self) -> None:
        self.books: dict[str, Book] = {}
        self.last: dict[str, int] = {}
        self.snapshots: dict[str, int] = {}
        self.gaps: list[str] = []
        self.trades: dict[str, list[dict[str, Any]]] = {}
        self.other: dict[str, list[dict[str, Any]]] = {}

    def take(self, msg: dict[str, Any]) -> None:
        stream = msg.get("stream")
        if stream is None:
            return
        data = msg["data"]
        if stream.endswith("@depth"):
            if data["e"] == "depthSnapshot":
                self.books[stream] = {
                    "b": dict(map(tuple, data["bids"])),
                    "a": dict(map(tuple, data["asks"])),
                }
                self.last[stream] = data["lastUpdateId"]
                self.snapshots[stream] = self.snapshots.get(stream, 0) + 1
                return
            if stream not in self.books:
                self.gaps.append(f"{stream}: diff {data['U']}..{data['u']} before a snapshot")
                return
            last = self.last[stream]
            if data["u"] <= last:
                return
            if data["U"] != last + 1:
                self.gaps.append(f"{stream}: diff {data['U']}..{data['u']} after {last}")
            book = self.books[stream]
            for key, levels in (("b", data["b"]), ("a", data["a"])):
                for price, qty in levels:
                    if float(qty) == 0:
                        book[key].pop(price, None)
                    else:
                        book[key][price] = qty
            self.last[stream] = data["u"]
        elif stream.endswith("@trade"):
            self.trades.setdefault(stream, []).append(data)
        else:
            self.other.setdefault(stream, []).append(data)


async def rest(rig: Rig, path: str) -> Any:
    status, body = await get(rig.port, path.encode())
    assert status == 200, (path, status, body[:200])
    return json.loads(body)


async def rest_book(rig: Rig, symbol: int) -> Book:
    depth = await rest(rig, f"/api/depth?symbol={NAMES[symbol]}&limit=1000")
    return {"b": dict(map(tuple, depth["bids"])), "a": dict(map(tuple, depth["asks"]))}


async def quiesce(rig: Rig, flow: Workload, timeout: float = 10.0) -> None:
    """Until the process has applied every event published."""
    deadline = time.monotonic() + timeout
    while rig.process.feed.events < len(flow.events):
        assert time.monotonic() < deadline, "the feed did not catch up"
        await asyncio.sleep(0.01)


async def read_until(ws: Any, bot: Bot, done: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not done():
            bot.take(json.loads(await ws.recv()))


def test_sound_bot_book_equals_rest_and_matcher(instance: str) -> None:
    flow = Workload(319)

    async def body(rig: Rig) -> None:
        flow.publish(rig, flow.step(200))
        await quiesce(rig, flow)
        streams = "/".join(f"{s}@depth/{s}@trade" for s in SYMBOLS.values())
        async with rig.client(f"/stream?streams={streams}") as c:
            bot = Bot()
            for _ in range(10):
                flow.publish(rig, flow.step(100))
            await quiesce(rig, flow)
            target = {
                f"{s}@depth": rig.process.state.symbols[k].book.last_update_id
                for k, s in SYMBOLS.items()
            }
            await read_until(
                c.ws, bot, lambda: all(bot.last.get(n, -1) >= u for n, u in target.items())
            )
            for k, s in SYMBOLS.items():
                assert not bot.gaps
                mine = bot.books[f"{s}@depth"]
                assert mine == await rest_book(rig, k)
                assert mine == flow.book(k)

    run(instance, body, depth_levels=1_000)


def test_sound_trades_ticker_and_candles_agree(instance: str) -> None:
    flow = Workload(3191)

    async def body(rig: Rig) -> None:
        names = [f"{s}@{k}" for s in SYMBOLS.values() for k in ("trade", "ticker", "kline_1m")]
        async with rig.client("/stream?streams=" + "/".join(names)) as c:
            bot = Bot()
            for _ in range(8):
                flow.publish(rig, flow.step(100))
            await quiesce(rig, flow)
            counts = {k: len(flow.trades(k)) for k in SYMBOLS}
            await read_until(
                c.ws,
                bot,
                lambda: all(
                    len(bot.trades.get(f"{s}@trade", [])) >= counts[k] for k, s in SYMBOLS.items()
                ),
            )
            await asyncio.sleep(0.3)  # the tickers and candles of the last batch
            while True:
                try:
                    bot.take(json.loads(await asyncio.wait_for(c.ws.recv(), 0.3)))
                except TimeoutError:
                    break
            for k, s in SYMBOLS.items():
                mine = flow.trades(k)
                got = bot.trades[f"{s}@trade"]
                want = [
                    {"t": t.trade_id, "p": f"{t.price / 100:.2f}", "q": f"{t.qty / 10_000:.4f}",
                     "m": t.aggressor == Side.SELL, "u": t.seq}
                    for t in mine
                ]  # fmt: skip
                assert [{f: g[f] for f in ("t", "p", "q", "m", "u")} for g in got] == want
                tape = await rest(rig, f"/api/trades?symbol={NAMES[k]}&limit=1000")
                assert [{f: g[f] for f in ("t", "p", "q", "m", "u")} for g in tape] == want
                ticker = bot.other[f"{s}@ticker"][-1]
                assert ticker["n"] == len(mine)
                assert ticker["F"] == mine[0].trade_id and ticker["L"] == mine[-1].trade_id
                assert ticker["v"] == f"{sum(t.qty for t in mine) / 10_000:.4f}"
                assert ticker["c"] == f"{mine[-1].price / 100:.2f}"
                assert ticker["o"] == f"{mine[0].price / 100:.2f}"
                assert ticker["h"] == f"{max(t.price for t in mine) / 100:.2f}"
                assert ticker["l"] == f"{min(t.price for t in mine) / 100:.2f}"
                assert ticker["Q"] == f"{mine[-1].qty / 10_000:.4f}"
                quote = sum(t.price * t.qty for t in mine)
                assert Decimal(ticker["q"]) == Decimal(quote) / 1_000_000
                volume = sum(t.qty for t in mine)
                vwap = (Decimal(quote) / volume / 100).quantize(Decimal("0.000001"))
                assert Decimal(ticker["w"]) == vwap
                assert Decimal(ticker["p"]) == Decimal(mine[-1].price - mine[0].price) / 100
                klines = await rest(rig, f"/api/klines?symbol={NAMES[k]}&interval=1m&limit=1000")
                by_id = {t.trade_id: t for t in mine}
                volume = 0
                for row in klines:
                    if not row["n"]:
                        continue
                    ts = [by_id[i] for i in range(row["f"], row["L"] + 1)]
                    assert row["n"] == len(ts)
                    assert row["o"] == f"{ts[0].price / 100:.2f}"
                    assert row["c"] == f"{ts[-1].price / 100:.2f}"
                    assert row["h"] == f"{max(t.price for t in ts) / 100:.2f}"
                    assert row["l"] == f"{min(t.price for t in ts) / 100:.2f}"
                    assert row["v"] == f"{sum(t.qty for t in ts) / 10_000:.4f}"
                    volume += sum(t.qty for t in ts)
                assert volume == sum(t.qty for t in mine)
                current = bot.other[f"{s}@kline_1m"][-1]["k"]
                at = next(n for n, row in enumerate(klines) if row["t"] == current["t"])
                assert current == klines[at] | {"x": current["x"]}
                # a minute the wall clock turned since the bot's last read: flat at its close
                flat = {key: current["c"] for key in "ohlc"} | {"n": 0}
                assert all({key: r[key] for key in flat} == flat for r in klines[at + 1 :])

    run(instance, body)


def test_sound_iceberg_shows_its_display_only(instance: str) -> None:
    flow = Workload(1)

    async def body(rig: Rig) -> None:
        async with rig.client("/ws/btc-usd@depth") as c:
            bot = Bot()
            bot.take(await c.recv())
            ice = flow.order(1, Side.SELL, 10_050, 50, display_qty=5)
            flow.publish(rig, flow.matcher.execute(ice))
            take = flow.order(1, Side.BUY, 10_050, 7)  # eats the slice and 2 of the next
            flow.publish(rig, flow.matcher.execute(take))
            await quiesce(rig, flow)
            last = rig.process.state.symbols[1].book.last_update_id
            await read_until(c.ws, bot, lambda: bot.last["btc-usd@depth"] >= last)
            assert bot.books["btc-usd@depth"]["a"] == {"100.50": "0.0003"}
            assert bot.books["btc-usd@depth"] == await rest_book(rig, 1) == flow.book(1)

    run(instance, body)


async def settle_bot(rig: Rig, c: Any, bot: Bot, symbols: Iterable[int]) -> None:
    """Read until the bot's depth streams reach the process's books."""
    target = {
        f"{SYMBOLS[k]}@depth": rig.process.state.symbols[k].book.last_update_id for k in symbols
    }
    await read_until(c.ws, bot, lambda: all(bot.last.get(n, -1) >= u for n, u in target.items()))


def test_sound_resubscribe_mid_stream_and_a_second_subscription(instance: str) -> None:
    flow = Workload(77)

    async def body(rig: Rig) -> None:
        flow.publish(rig, flow.step(150))
        await quiesce(rig, flow)
        async with rig.client("/ws/btc-usd@depth") as c, rig.client("/stream") as c2:
            bot, bot2 = Bot(), Bot()
            bot.take(await c.recv())
            for round_ in range(6):
                flow.publish(rig, flow.step(60, (1,)))
                if round_ == 2:
                    c._id += 1
                    await c.ws.send(json.dumps({"method": "UNSUBSCRIBE", "id": c._id,
                                                "params": ["btc-usd@depth"]}))  # fmt: skip
                    while True:
                        msg = json.loads(await c.ws.recv())
                        if msg.get("id") == c._id:
                            break
                        bot.take(msg)
                    flow.publish(rig, flow.step(60, (1,)))
                    answer = await c.request("SUBSCRIBE", ["btc-usd@depth"])
                    assert answer["result"] is None
                    await c2.ws.send(json.dumps({"method": "SUBSCRIBE", "id": 1,
                                                 "params": ["btc-usd@depth"]}))  # fmt: skip
                    # a second SUBSCRIBE of a held stream changes nothing
                    await c2.ws.send(json.dumps({"method": "SUBSCRIBE", "id": 2,
                                                 "params": ["btc-usd@depth"]}))  # fmt: skip
                await asyncio.sleep(0)
            await quiesce(rig, flow)
            await settle_bot(rig, c, bot, (1,))
            await settle_bot(rig, c2, bot2, (1,))
            assert not bot.gaps and not bot2.gaps
            assert bot.snapshots["btc-usd@depth"] == 2 and bot2.snapshots["btc-usd@depth"] == 1
            assert bot.books["btc-usd@depth"] == bot2.books["btc-usd@depth"] == flow.book(1)
            assert bot.books["btc-usd@depth"] == await rest_book(rig, 1)

    run(instance, body, depth_levels=1_000)


def test_sound_halt_and_resume_seen_on_status_and_book(instance: str) -> None:
    flow = Workload(5)

    async def body(rig: Rig) -> None:
        flow.publish(rig, flow.step(100))
        await quiesce(rig, flow)
        streams = "btc-usd@status/btc-usd@depth/eth-usd@status/eth-usd@depth"
        async with rig.client(f"/stream?streams={streams}") as c:
            bot = Bot()
            flow.publish(rig, flow.admin(AdminAction.HALT, 1))
            flow.publish(rig, flow.step(50))  # symbol 1's orders are refused
            await quiesce(rig, flow)
            symbols = await rest(rig, "/api/symbols")
            assert [s["status"] for s in symbols] == ["HALT", "TRADING"]
            flow.publish(rig, flow.admin(AdminAction.RESUME, 1))
            flow.publish(rig, flow.step(50))
            await quiesce(rig, flow)
            await settle_bot(rig, c, bot, (1, 2))
            seen = [m["S"] for m in bot.other["btc-usd@status"]]
            assert seen == ["TRADING", "HALT", "TRADING"]
            assert [m["S"] for m in bot.other["eth-usd@status"]] == ["TRADING"]
            assert not bot.gaps
            for k, s in SYMBOLS.items():
                assert bot.books[f"{s}@depth"] == flow.book(k) == await rest_book(rig, k)

    run(instance, body, depth_levels=1_000)


def test_sound_slow_bot_resnapshots_or_is_closed_without_a_hole(instance: str) -> None:
    flow = Workload(11)

    async def body(rig: Rig) -> None:
        flow.publish(rig, flow.step(100))
        await quiesce(rig, flow)
        names = [f"{s}@{k}" for s in SYMBOLS.values() for k in ("depth", "bookTicker", "depth5")]
        slow_sock = small_buffer_socket(rig.port)
        async with (
            rig.client("/stream?streams=" + "/".join(names), sock=slow_sock, max_queue=1,
                       close_timeout=0.1) as slow,
            rig.client("/stream?streams=btc-usd@trade", sock=small_buffer_socket(rig.port),
                       max_queue=1, close_timeout=0.1) as slow_trades,
        ):  # fmt: skip
            bot, tbot = Bot(), Bot()
            bot.take(await slow.recv())
            server = rig.process.server
            deadline = time.monotonic() + 10
            while (
                sum(c.outbox.resnapshots for c in server.clients) == 0 or server.slow_closed == 0
            ) and time.monotonic() < deadline:
                flow.publish(rig, flow.step(300))
                await asyncio.sleep(0.02)
            await quiesce(rig, flow)
            assert server.slow_closed == 1
            # the trade bot: a gapless prefix of the tape, then 1008
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    tbot.take(await slow_trades.recv(timeout=5))
            rcvd = closed.value.rcvd
            assert rcvd is not None and rcvd.code == 1008 and "slow consumer" in rcvd.reason
            ids = [t["t"] for t in tbot.trades["btc-usd@trade"]]
            assert ids == list(range(ids[0], ids[0] + len(ids)))
            # the depth bot: resnapshotted, never a hole, and ends on the book
            await settle_bot(rig, slow, bot, (1, 2))
            assert bot.snapshots["btc-usd@depth"] >= 2 or bot.snapshots["eth-usd@depth"] >= 2
            assert not bot.gaps
            for k, s in SYMBOLS.items():
                book = flow.book(k)
                assert bot.books[f"{s}@depth"] == book == await rest_book(rig, k)
                await read_until(
                    slow.ws, bot,
                    lambda s=s: bool(bot.other.get(f"{s}@bookTicker")) and bool(
                        bot.other.get(f"{s}@depth5")),
                )  # fmt: skip
            while True:
                try:
                    bot.take(json.loads(await asyncio.wait_for(slow.ws.recv(), 0.3)))
                except TimeoutError:
                    break
            for k, s in SYMBOLS.items():
                book = flow.book(k)
                bids = sorted(book["b"].items(), key=lambda kv: -float(kv[0]))
                asks = sorted(book["a"].items(), key=lambda kv: float(kv[0]))
                top = bot.other[f"{s}@bookTicker"][-1]
                assert (top["b"], top["B"]) == (bids[0] if bids else (None, None))
                assert (top["a"], top["A"]) == (asks[0] if asks else (None, None))
                five = bot.other[f"{s}@depth5"][-1]
                assert [tuple(x) for x in five["bids"]] == bids[:5]
                assert [tuple(x) for x in five["asks"]] == asks[:5]

    run(instance, body, client_queue=16, depth_levels=1_000, server=TIGHT)
