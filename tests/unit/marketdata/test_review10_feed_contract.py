"""A tenth hostile review of the market-data process, against what a client of a real
exchange's public feed relies on (README, marketdata row: "a slow client's depth is compacted
..., a client closed as slow gets twice the ping interval to read up to its 1008 frame, and
one whose socket takes nothing for that long is dropped").

Found (one failing test):

- a client closed as a slow consumer (1008) whose socket takes nothing is never dropped when
  its sender task was idle at the close: ``Client.close_slow`` sets ``closing``, so the
  sender (whose stall timer is what drops a stalled socket) exits without sending, and
  ``conn.close`` waits in websockets' ``drain()`` (no timeout) behind the full buffer; the
  keepalive, which could otherwise abort at the close deadline, is itself stuck in the
  ``drain()`` of a ping sent while the buffer was full; and heartbeats skip a closing
  client. The connection is held (a ``max_connections`` slot, its buffers) for as long as
  the peer's kernel keeps the socket open. It takes one batch longer than ``client_queue``
  (16 here, 1000 by default) reaching the client while its sender is idle and a ping is
  already waiting in the full buffer; with a ping every 20 s and heartbeats every 5 s that
  is a narrow window in production, but the connection never comes back from it.

Guards that pass (the contract holds): subscribe / unsubscribe / resubscribe of one depth
stream during bursts from a real matcher (a snapshot after each SUBSCRIBE answer, nothing of
the stream between an UNSUBSCRIBE answer and it, contiguous diffs, the book equal to the
server's), gapless trade ids and every trade ahead of the depth change it caused; events for
a symbol the config does not know, and a halt and resume, leave the feed serving; candles and
the 24h ticker across interval boundaries with trades sharing a timestamp and a halt between.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from procs.common.records import BookLevel, Record, SymbolStatus
from procs.common.types import AdminAction, Side, TradingStatus
from procs.core.market.state import CandleUpdate, MarketState, StatusUpdate, Update
from procs.core.market.ticker import Ticker

from .events import MIN, SYMBOL, T0, level, trade
from .rig import Rig
from .test_adversarial_ws import TIGHT, fill_socket, now_trade, run
from .test_review4_ws_bugs import raw_ws
from .test_review_found_bugs import Book, apply_depth, server_book
from .test_server import RandomFlow


def test_a_stalled_client_closed_as_slow_is_dropped(instance: str) -> None:
    """A client on ``btc-usd@trade`` hangs for good (its socket open, nothing read). A burst
    goes straight into its socket (the outbox was empty) and fills every buffer; a keepalive
    ping follows, and its ``drain()`` waits behind the full buffer. The next burst, longer
    than ``client_queue``, overflows the outbox before the sender runs: ``close_slow``
    (1008). Pings every 0.3 s, so ``stall_s`` 0.6 s and ``slow_close_s`` 2 s: by README the
    connection is gone within about 2.6 s. Actual: still in ``server.clients`` (CLOSING)
    after 4 s, and after any wait (nothing is left that could end it): ``close_slow`` stops
    the sender (``while not self.closing``) whose stall timer drops stalled sockets,
    ``conn.close`` sits in ``drain()`` with no deadline, the keepalive sits in the drain of
    its ping, and heartbeats skip a closing client."""

    async def body(rig: Rig) -> None:
        server = rig.process.server
        sock = await raw_ws(rig.port, "/ws/btc-usd@trade")
        try:
            (client,) = server.clients
            transport = client.conn.transport
            await fill_socket(rig, transport)
            assert not client._sending and not len(client.outbox)  # the sender is idle
            await asyncio.sleep(0.5)  # a keepalive ping now waits in drain()
            rig.publish([now_trade(k, k) for k in range(301, 331)])  # 30 > client_queue 16
            deadline = time.monotonic() + 1
            while server.slow_closed == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert server.slow_closed == 1 and client.closing
            deadline = time.monotonic() + 4  # stall_s 0.6 s, slow_close_s 2 s, and a margin
            while server.clients and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            left = [c.conn.protocol.state.name for c in server.clients]
            assert not left, f"a stalled client closed as slow is still connected: {left}"
        finally:
            sock.close()

    run(instance, body, client_queue=16, server={**TIGHT, "ping_interval_s": 0.3})


def test_resubscribing_depth_during_bursts_keeps_snapshot_then_contiguous_diffs(
    instance: str,
) -> None:
    """Requests sent back to back while a real matcher's events stream in: after every
    SUBSCRIBE answer the stream's next message is a snapshot; between an UNSUBSCRIBE answer
    and it, nothing of the stream; diffs continue the snapshot (``U`` = last + 1); trade ids
    are gapless, and no depth message ahead of a trade already covers the trade's seq (a
    trade comes before the depth change it caused). The book built so is the server's."""
    flow = RandomFlow(10)
    burst = flow.feed

    async def body(rig: Rig) -> None:
        burst(rig, 300)  # a book before the client
        await asyncio.sleep(0.05)
        async with rig.client("/stream") as c:
            sub = {"method": "SUBSCRIBE", "params": ["btc-usd@trade", "btc-usd@depth"], "id": 1}
            await c.ws.send(json.dumps(sub))
            for k in range(12):
                burst(rig, 40)
                if k in (3, 4, 8):
                    for method, n in (("UNSUBSCRIBE", 100 + k), ("SUBSCRIBE", 200 + k)):
                        body_ = {"method": method, "params": ["btc-usd@depth"], "id": n}
                        await c.ws.send(json.dumps(body_))
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.2)  # every batch published before the marker
            await c.ws.send('{"method":"LIST_SUBSCRIPTIONS","id":"end"}')
            messages: list[dict[str, Any]] = []
            while not messages or messages[-1].get("id") != "end":
                messages.append(await c.recv())
        book: Book = {"b": {}, "a": {}}
        last, depth_on, snapshot_due, snapshots = 0, False, False, 0
        trade_ids: list[int] = []
        for msg in messages:
            rid = msg.get("id")
            if rid is not None:
                assert "result" in msg, msg
                if isinstance(rid, int) and 100 <= rid < 200:
                    depth_on = False
                elif rid == 1 or (isinstance(rid, int) and rid >= 200):
                    depth_on = snapshot_due = True
                continue
            data = msg["data"]
            if msg["stream"] == "btc-usd@trade":
                assert last < data["u"], f"depth up to {last} came before trade {data}"
                trade_ids.append(data["t"])
                continue
            assert msg["stream"] == "btc-usd@depth" and depth_on, msg
            if snapshot_due:
                assert data["e"] == "depthSnapshot", data
                snapshot_due, snapshots = False, snapshots + 1
            last = apply_depth(book, last, data)
        assert snapshots == 4
        assert trade_ids and trade_ids == list(range(trade_ids[0], trade_ids[0] + len(trade_ids)))
        assert last == flow.seq - 1
        assert book == await server_book(rig)

    run(instance, body)


def test_unknown_symbol_events_and_a_halt_leave_the_feed_serving(instance: str) -> None:
    """A matcher's output with events of a symbol the config does not have (id 99) and a
    halt then resume of BTC-USD: the unknown ones are passed over, the status stream says
    HALT then TRADING with their seqs, and the trades and the book go on."""

    async def body(rig: Rig) -> None:
        names = "btc-usd@trade/btc-usd@status/btc-usd@depth"
        async with rig.client(f"/stream?streams={names}") as c:
            first = [(await c.recv())["data"]["e"] for _ in range(2)]
            assert sorted(first) == ["depthSnapshot", "status"]
            now = time.time_ns()
            events: list[Record] = [
                trade(1, 1, 10_000, 1, symbol=99, ts=now),
                BookLevel(2, now, 99, Side.BUY, 9_900, 5, 1),
                SymbolStatus(3, now, 99, AdminAction.HALT, TradingStatus.HALTED),
                SymbolStatus(4, now, 1, AdminAction.HALT, TradingStatus.HALTED),
                SymbolStatus(5, now, 1, AdminAction.RESUME, TradingStatus.OPEN),
                level(6, Side.BUY, 9_900, 5, ts=now),
                trade(7, 1, 9_900, 1, ts=now),
                level(7, Side.BUY, 9_900, 4, ts=now),
            ]
            rig.publish(events)
            got = [(m["stream"], m["data"]) for m in [await c.recv() for _ in range(4)]]
            assert [(s, d.get("S"), d.get("u")) for s, d in got[:2]] == [
                ("btc-usd@status", "HALT", 4),
                ("btc-usd@status", "TRADING", 5),
            ]
            assert got[2][0] == "btc-usd@trade" and got[2][1]["t"] == 1
            assert got[3][0] == "btc-usd@depth" and got[3][1]["b"] == [["99.00", "0.0004"]]
        assert sorted(rig.process.state.symbols) == [1, 2]

    run(instance, body)


def test_candles_and_ticker_across_boundaries_with_same_time_trades_and_a_halt() -> None:
    """Two trades share the last nanosecond of the first minute; a halt at the boundary, a
    resume a minute later and a trade exactly on the third minute's start. 1m candles:
    [T0] holds trades 1..2 (open, close, ``f``, ``L``), [T0+1m] is flat at the close with
    no trade, [T0+2m] holds trade 3; the 24h ticker counts all three."""
    state = MarketState([SYMBOL])
    out: list[Update] = []
    for event in [
        trade(1, 1, 10_000, 2, ts=T0 + MIN - 1),
        trade(1, 2, 10_100, 3, ts=T0 + MIN - 1),
        SymbolStatus(2, T0 + MIN, 1, AdminAction.HALT, TradingStatus.HALTED),
    ]:
        state.process(event, out)
    out += state.flush()
    state.process(SymbolStatus(3, T0 + 2 * MIN - 5, 1, AdminAction.RESUME, TradingStatus.OPEN), out)
    state.process(trade(4, 3, 9_900, 1, ts=T0 + 2 * MIN), out)
    out += state.flush()
    closed = {
        u.candle.open_ns: u.candle
        for u in out
        if isinstance(u, CandleUpdate) and u.interval == "1m" and u.candle.closed
    }
    first, flat = closed[T0], closed[T0 + MIN]
    assert (first.open, first.high, first.low, first.close) == (10_000, 10_100, 10_000, 10_100)
    assert (first.volume, first.trades, first.first_trade_id, first.last_trade_id) == (5, 2, 1, 2)
    assert (flat.open, flat.close, flat.trades, flat.first_trade_id) == (10_100, 10_100, 0, 0)
    current = state.symbols[1].candles["1m"].current
    assert current is not None and current.open_ns == T0 + 2 * MIN
    assert (current.open, current.trades, current.first_trade_id) == (9_900, 1, 3)
    assert [(u.status, u.seq) for u in out if isinstance(u, StatusUpdate)] == [
        (TradingStatus.HALTED, 2),
        (TradingStatus.OPEN, 3),
    ]
    (ticker,) = [u for u in out if isinstance(u, Ticker)][-1:]
    assert (ticker.open, ticker.high, ticker.low, ticker.last) == (10_000, 10_100, 9_900, 9_900)
    assert (ticker.trades, ticker.first_trade_id, ticker.last_trade_id) == (3, 1, 3)
