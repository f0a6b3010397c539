"""Review 181: a hostile review of the market-data process (``procs/marketdata``,
``procs/core/market``): what a client following snapshot-then-diffs, a chart of candles or a
24h ticker ends with against the matchers' events, across subscribe, unsubscribe and
resubscribe, a command split over two batches (the ``reset`` diff), a restart from the saved
state, many symbols, and trades stamped alike or late; and what a hostile WebSocket client
can make the process do.

Method: the pure cores driven directly (``MarketState`` fed events by hand, flushed where the
feed's batches would end, ``Hub`` with a recording subscriber, the state pickled and loaded as
the saved state is), and the real process over a real ring with a real ``websockets`` client
(``rig.running``) for the hostile client.

Fault (fixed; its test passes now):

1. ``procs/core/market/state.py:71`` (``SymbolMarket.trade``) hands the 24h ticker the
   trade's own stamp, ``t.ts_ns``, while the candles get ``at = max(t.ts_ns, clock_ns)``,
   the symbol's clock (review-state-bugs' fix, "so where batches end does not matter"). The
   ticker's clock (``RollingTicker.now_ns``) moves with the symbol's clock only at a flush
   (``MarketState.flush`` -> ``SymbolMarket.advance``), so a trade stamped a millisecond
   before a minute's end that follows, in the exchange's order, an event of the next minute
   lands in the ticker bucket of its own minute when both arrive in one batch and in the
   next minute's when a batch ends between them. A restart re-reads the ring in other
   batches than the live run did, and the two tickers then differ for one minute a day later
   (the trade still in the window for one, gone for the other: ``n``, ``v``, ``q``, ``F``,
   ``o``); in one batch the ticker also puts the trade in another minute than the 1m candle.
   Was (fixed: ``self.ticker.trade(at, ...)``, the candles' time). Test:
   ``test_late_trade_lands_in_one_ticker_minute_whatever_the_batches``.

Held (plain tests): a recording subscriber on the depth streams of three symbols, through
seeded flows of level changes around a 3-level snapshot, a command split over two batches
(reset, then a fresh snapshot), unsubscribes and resubscribes between batches, and restarts
from the pickled state (a fresh hub, subscribed again), always holds the book's top levels,
with ``U`` = previous ``u`` + 1 after each snapshot and ``u`` never repeated or going back;
candles at every interval and the ticker over trades stamped alike exactly on a day
boundary, an idle gap of days and a restart mid-stream equal an uninterrupted run; a
hostile connection (invalid JSON, a binary frame, unknown streams and kinds, an over-long
name, too many params or subscriptions) is answered with errors naming the value and the
limit and stays open, 20,000 unsolicited pongs close it (1008), and a neighbour's trades keep
flowing.

Leads suspected, not shown as faults:

- unsolicited pongs (and, over a raw socket, fragments of one message) were counted by
  nothing (``FlowConnection.process_event`` counted pings only): 20,000 pongs cost the shared
  loop about 0.1 s and left the connection open; the ping limit's reasoning (loop time per
  frame) applies to them too, less the pong written. Was (fixed: pongs and continuation
  frames past 1,000 a second close the connection, 1008 naming the limit);
- the reseed at a replay mark stamps its levels with the mark's time (the matcher's restart),
  and ``L2Book.process`` set ``last_ts_ns`` from them: the replayed commands' diffs after
  it carried an earlier ``E`` (book.py:110), so a depth or bookTicker ``E`` went backwards.
  Was (fixed: ``last_ts_ns`` never goes back;
  ``test_a_depth_time_never_goes_back_after_a_reseed``);
- ``Outbox.push`` lets final klines and statuses past ``limit`` (outbox.py:75-89): a batch
  that closes many idle candles at once queues up to ``history`` finals per kline stream
  for a client that is behind; bounded, but by 500 x its kline streams, not ``client_queue``;
- a conflated ticker or bookTicker keeps its queue position with the newer value, so a slow
  client can read a ticker naming ``L`` (or a top at ``u``) before the trade (or the diff)
  it reflects (outbox.py:75-86): documented as conflation, not pinned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import random
import time
from collections.abc import Sequence
from typing import Any

import pytest
import uvloop
from websockets.exceptions import ConnectionClosed

from procs.common.records import BookLevel, Record
from procs.common.types import Side
from procs.core.market.book import L2Book
from procs.core.market.state import MarketState
from procs.core.market.symbols import MarketSymbol
from procs.core.market.ticker import Ticker
from procs.marketdata import messages
from procs.marketdata.connection import TOO_MANY_FRAMES
from procs.marketdata.hub import Hub, Message
from procs.marketdata.streams import parse_stream

from .events import MIN, OTHER, SYMBOL, T0, level, trade
from .rig import Rig, running

THIRD = MarketSymbol(id=3, name="SOL-USD", stream="sol-usd", price_decimals=2, qty_decimals=4)
SYMBOLS = (SYMBOL, OTHER, THIRD)
DAY = 1440 * MIN
SEC = 1_000_000_000
LEVELS = 3  # a small snapshot: levels rise into it often


# -- helpers -------------------------------------------------------------------------------


def _run(state: MarketState, batches: Sequence[Sequence[Record]]) -> MarketState:
    """Feed ``batches`` as ``Feed.pump`` does: each batch processed, then one flush."""
    for batch in batches:
        out: list[Any] = []
        for event in batch:
            state.process(event, out)
        state.flush()
    return state


def _ticker(state: MarketState, symbol: MarketSymbol = SYMBOL) -> dict[str, Any]:
    t: Ticker | None = state.symbols[symbol.id].ticker.ticker()
    return messages.ticker_data(symbol, t)


def _reload(state: MarketState) -> MarketState:
    """The state as a restart loads it (``MarketSnapshots`` pickles it)."""
    loaded: MarketState = pickle.loads(pickle.dumps(state))
    return loaded


class _Sub:
    """A connection as the hub sees it, keeping a local book per depth stream the way a
    client does: a snapshot replaces it, a diff must continue it."""

    def __init__(self) -> None:
        self.streams: set[str] = set()
        self.books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
        self.last: dict[str, int] = {}
        self.seen: dict[str, list[int]] = {}  # every u a stream's diffs carried

    def deliver(self, msgs: Sequence[Message], frames: bytes) -> None:
        for m in msgs:
            self._apply(json.loads(m.payload))

    def deliver_snapshot(self, stream: str, payload: bytes) -> None:
        self._apply(json.loads(payload))

    def _apply(self, msg: dict[str, Any]) -> None:
        stream, data = msg["stream"], msg["data"]
        if not stream.endswith("@depth"):
            return
        if "lastUpdateId" in data:
            bids = {p: q for p, q in data["bids"]}
            asks = {p: q for p, q in data["asks"]}
            self.books[stream] = (bids, asks)
            self.last[stream] = data["lastUpdateId"]
            return
        assert stream in self.books, f"{stream}: a diff before any snapshot"
        assert data["U"] == self.last[stream] + 1, (stream, data["U"], self.last[stream])
        assert data["u"] >= data["U"], (stream, data)
        bids, asks = self.books[stream]
        for side, changes in ((bids, data["b"]), (asks, data["a"])):
            for price, qty in changes:
                if float(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last[stream] = data["u"]
        self.seen.setdefault(stream, []).append(data["u"])

    def top(self, stream: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids, asks = self.books[stream]
        best_bids = sorted(bids.items(), key=lambda kv: -float(kv[0]))[:LEVELS]
        best_asks = sorted(asks.items(), key=lambda kv: float(kv[0]))[:LEVELS]
        return best_bids, best_asks


def _true_top(
    state: MarketState, symbol: MarketSymbol
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    snap = state.symbols[symbol.id].book.snapshot(LEVELS)
    render = [(symbol.price(p), symbol.qty(q)) for p, q in snap.bids]
    return render, [(symbol.price(p), symbol.qty(q)) for p, q in snap.asks]


def _hub(state: MarketState) -> Hub:
    return Hub(state, depth_levels=LEVELS, max_subscriptions=200)


def _subscribe(hub: Hub, sub: _Sub, name: str) -> None:
    hub.subscribe(sub, [parse_stream(name, hub.symbols)])


def _unsubscribe(hub: Hub, sub: _Sub, name: str) -> None:
    hub.unsubscribe(sub, [parse_stream(name, hub.symbols)])
    sub.books.pop(name, None)
    sub.last.pop(name, None)


def _command(rng: random.Random, seq: int, ts: int) -> list[Record]:
    """One command's level changes (one seq): new, amended and emptied levels near 100.00."""
    symbol = rng.choice(SYMBOLS).id
    out: list[Record] = []
    for _ in range(rng.randint(1, 4)):
        side = rng.choice((Side.BUY, Side.SELL))
        price = rng.randint(9_000, 9_999) if side == Side.BUY else rng.randint(10_000, 10_999)
        price -= price % 100  # ten levels a side: they empty and rise into the top often
        qty = rng.choice((0, 0, rng.randint(1, 50)))
        out.append(BookLevel(seq, ts, symbol, side, price, qty, 1 if qty else 0))
    return out


# -- fault 1: the ticker's minute of a late trade ---------------------------------------------


def test_late_trade_lands_in_one_ticker_minute_whatever_the_batches() -> None:
    """Was (fixed: ``SymbolMarket.trade`` gives the ticker the candles' time). A command of the next
    minute (a level at 00:10:00.000), then a trade stamped 1 ms before it (another gateway's clock):
    the 1m candle counts the trade in 00:10 however the events are batched. The ticker should too;
    it counts it in 00:09 when both come in one batch and in 00:10 when a batch ends between them
    (the live run and a restart's re-read batch differently). A day later, at 00:09:30 + 24 h, the
    window starts at 00:10: one ticker still holds the trade, the other does not."""
    edge = T0 + 10 * MIN
    events: list[Record] = [
        level(1, Side.BUY, 10_000, 5, ts=edge),
        trade(2, 1, 10_000, 3, ts=edge - 1_000_000),
    ]
    one = _run(MarketState(list(SYMBOLS)), [events])
    split = _run(MarketState(list(SYMBOLS)), [events[:1], events[1:]])
    for state in (one, split):  # the candle agrees in both
        candle = state.symbols[SYMBOL.id].candles["1m"].current
        assert candle is not None and candle.open_ns == edge
    later = edge + DAY - MIN + 30 * SEC
    one.advance(later)
    split.advance(later)
    assert _ticker(one) == _ticker(split)
    # and as the candle has it: the trade's minute is 00:10, still in the window
    assert _ticker(one)["n"] == 1


def test_late_trade_in_one_ticker_minute_when_batches_end_alike() -> None:
    """Control for fault 1: batched the same way, a run and its restart (the state pickled
    between the two batches) give the same ticker a day later."""
    edge = T0 + 10 * MIN
    events: list[Record] = [
        level(1, Side.BUY, 10_000, 5, ts=edge),
        trade(2, 1, 10_000, 3, ts=edge - 1_000_000),
    ]
    live = _run(MarketState(list(SYMBOLS)), [events[:1], events[1:]])
    restarted = _run(_reload(_run(MarketState(list(SYMBOLS)), [events[:1]])), [events[1:]])
    later = edge + DAY - MIN + 30 * SEC
    live.advance(later)
    restarted.advance(later)
    assert _ticker(live) == _ticker(restarted)


# -- held: depth across subscribe / unsubscribe / resubscribe / reset / restart ----------------


@pytest.mark.parametrize("seed", range(12))
def test_depth_clients_hold_the_book_through_resets_resubscribes_and_restarts(seed: int) -> None:
    rng = random.Random(seed)
    state = MarketState(list(SYMBOLS))
    hub = _hub(state)
    names = [f"{s.stream}@depth" for s in SYMBOLS]
    sub = _Sub()
    for name in names:
        _subscribe(hub, sub, name)
    seq, ts = 0, T0
    resets = restarts = resubscribes = 0
    for _ in range(150):
        batches: list[list[Record]] = [[]]
        for _ in range(rng.randint(1, 4)):
            seq += 1
            ts += rng.randint(0, 3) * 1_000_000
            cmd = _command(rng, seq, ts)
            if len(cmd) > 1 and rng.random() < 0.15:  # a command split over two batches
                cut = rng.randint(1, len(cmd) - 1)
                batches[-1] += cmd[:cut]
                batches.append(cmd[cut:])
                resets += 1
            else:
                batches[-1] += cmd
        for batch in batches:
            out: list[Any] = []
            for event in batch:
                state.process(event, out)
            hub.publish(out + state.flush())
            for symbol, name in zip(SYMBOLS, names, strict=True):
                if name in sub.streams:
                    assert sub.top(name) == _true_top(state, symbol), (seed, name, seq)
        roll = rng.random()
        if roll < 0.1:  # unsubscribe one, then maybe resubscribe it
            name = rng.choice(names)
            if name in sub.streams:
                _unsubscribe(hub, sub, name)
            if rng.random() < 0.7:
                _subscribe(hub, sub, name)
                resubscribes += 1
        elif roll < 0.15:  # a restart: the saved state loaded, a fresh hub, clients reconnect
            state = _reload(state)
            hub = _hub(state)
            sub = _Sub()
            for name in names:
                _subscribe(hub, sub, name)
            restarts += 1
    for seen in sub.seen.values():
        assert seen == sorted(set(seen)), "a u repeated or went back"
    assert resets and restarts and resubscribes, (resets, restarts, resubscribes)


# -- held: candles and ticker over a day boundary, equal stamps, an idle gap, a restart ---------


def _day_flow() -> list[list[Record]]:
    """Trades stamped alike exactly at a day's start, then days of nothing, then more."""
    day = T0 + DAY
    flow: list[list[Record]] = [
        [trade(1, 1, 10_000, 2, ts=day - 1), trade(2, 2, 10_100, 1, ts=day - 1)],
        [trade(3, 3, 10_200, 4, ts=day), trade(4, 4, 9_900, 1, ts=day)],
        [trade(5, 5, 10_050, 3, ts=day)],
        [trade(6, 6, 10_300, 1, ts=day + 3 * DAY + 7 * SEC)],
        [trade(7, 7, 10_310, 1, ts=day + 3 * DAY + 7 * SEC)],
    ]
    return flow


def _view(state: MarketState) -> dict[str, Any]:
    market = state.symbols[SYMBOL.id]
    klines = {
        name: [messages.candle_data(SYMBOL, name, c) for c in series.history(1000)]
        for name, series in market.candles.items()
    }
    return {"klines": klines, "ticker": _ticker(state)}


def test_candles_and_ticker_over_a_day_edge_an_idle_gap_and_a_restart() -> None:
    flow = _day_flow()
    live = _run(MarketState(list(SYMBOLS)), flow)
    restarted = _run(_reload(_run(MarketState(list(SYMBOLS)), flow[:3])), flow[3:])
    assert _view(live) == _view(restarted)
    day_candles = _view(live)["klines"]["1d"]
    first_day = next(k for k in day_candles if k["t"] == (T0 + DAY) // 1_000_000)
    # the day's candle: the trades stamped at its first ns, in their order, none of the eve
    assert (first_day["o"], first_day["h"], first_day["l"], first_day["c"]) == (
        "102.00",
        "102.00",
        "99.00",
        "100.50",
    )
    assert (first_day["n"], first_day["f"], first_day["L"], first_day["x"]) == (3, 3, 5, True)
    # three idle days later the window holds only the two new trades
    ticker = _view(live)["ticker"]
    assert (ticker["n"], ticker["F"], ticker["L"], ticker["o"]) == (2, 6, 7, "103.00")


# -- held: a hostile connection over a real socket ---------------------------------------------


def test_hostile_requests_are_answered_naming_the_value_and_the_neighbour_is_served(
    instance: str,
) -> None:
    async def body(rig: Rig) -> None:
        async with rig.client("/ws") as bad, rig.client("/ws/btc-usd@trade") as good:

            async def answer(raw: str | bytes) -> dict[str, Any]:
                await bad.ws.send(raw)
                return await bad.until(lambda m: "error" in m or "result" in m)

            cases: list[tuple[str | bytes, list[str]]] = [
                ("{not json", ["invalid JSON"]),
                (b"\x00\x01", ["binary"]),
                ('{"method":"SUBSCRIBE","params":["doge-usd@trade"],"id":1}', ["doge-usd"]),
                ('{"method":"SUBSCRIBE","params":["btc-usd@nope"],"id":2}', ["nope"]),
                (json.dumps({"method": "SUBSCRIBE", "params": ["x" * 100]}), ["100", "64"]),
                (json.dumps({"method": "SUBSCRIBE", "params": ["a"] * 1025}), ["1025", "1024"]),
                ('{"method":"SUBSCRIBE","params":["btc-usd@kline_2m"]}', ["2m", "1m"]),
            ]
            for raw, words in cases:
                msg = await answer(raw)
                assert "error" in msg, msg
                for word in words:
                    assert word in msg["error"]["msg"], (raw, msg)
            many = [f"btc-usd@kline_{i}" for i in ("1m", "5m", "15m", "1h", "4h", "1d")]
            many += ["btc-usd@trade", "btc-usd@depth", "eth-usd@trade"]
            msg = await answer(json.dumps({"method": "SUBSCRIBE", "params": many, "id": 3}))
            assert msg["error"]["code"] == 2 and "9" in msg["error"]["msg"], msg
            assert "at most 8" in msg["error"]["msg"], msg
            assert (await bad.request("LIST_SUBSCRIPTIONS"))["result"] == []
            with contextlib.suppress(ConnectionClosed):  # unsolicited pongs: counted, 1008
                for _ in range(20_000):
                    await bad.ws.pong(b"p")
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                await asyncio.wait_for(bad.ws.wait_closed(), 5)
            assert (bad.ws.close_code, bad.ws.close_reason) == (1008, TOO_MANY_FRAMES)
            rig.publish([trade(1, 1, 10_000, 1, ts=time.time_ns())])
            (got,) = await good.collect("btc-usd@trade", 1)
            assert got["t"] == 1

    async def main() -> None:
        async with running(instance, max_subscriptions=8) as rig:
            await asyncio.wait_for(body(rig), 20)

    uvloop.run(main())


def test_a_message_cut_into_thousands_of_frames_closes_the_connection(instance: str) -> None:
    """Continuation frames are counted as pongs are: each costs the loop a parse."""

    async def body(rig: Rig) -> None:
        async with rig.client("/ws") as bad, rig.client("/ws/btc-usd@trade") as good:
            with contextlib.suppress(ConnectionClosed):
                await bad.ws.send(["{"] + [" "] * 3_000 + ['"method":"LIST_SUBSCRIPTIONS"}'])
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                await asyncio.wait_for(bad.ws.wait_closed(), 5)
            assert (bad.ws.close_code, bad.ws.close_reason) == (1008, TOO_MANY_FRAMES)
            rig.publish([trade(1, 1, 10_000, 1, ts=time.time_ns())])
            (got,) = await good.collect("btc-usd@trade", 1)
            assert got["t"] == 1

    async def main() -> None:
        async with running(instance) as rig:
            await asyncio.wait_for(body(rig), 20)

    uvloop.run(main())


def test_a_depth_time_never_goes_back_after_a_reseed() -> None:
    """A reseed's levels at the restart's time, then the replayed commands' changes stamped
    before it: the diff, snapshot and top keep the later time (``E`` never goes back)."""
    book = L2Book(SYMBOL.id)
    book.process(level(5, Side.BUY, 10_000, 3, ts=T0 + 10 * SEC))  # the reseed at the mark
    book.process(level(6, Side.SELL, 10_100, 2, ts=T0 + SEC))  # a replayed command's change
    diff = book.take_diff()
    assert diff is not None and diff.ts_ns == T0 + 10 * SEC
    assert book.snapshot(10).ts_ns == T0 + 10 * SEC
