"""The market-data server over a real matcher output ring, with real WebSocket clients:
requests, combined streams, depth snapshot then contiguous diffs (from a real matcher),
trades, ticker, klines, heartbeats, slow consumers, malformed requests and limits."""

from __future__ import annotations

import asyncio
import random
import socket
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop
from websockets.exceptions import ConnectionClosed, InvalidStatus

from procs.common.records import NewOrder, Record, SymbolStatus
from procs.common.types import AdminAction, OrdType, Side, StpMode, TimeInForce, TradingStatus
from procs.core.engine import Matcher
from procs.core.symbols import SymbolSpec

from .events import MIN, trade
from .rig import Rig, running


def run(instance: str, body: Callable[[Rig], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with running(instance, **kw) as rig:
            await body(rig)

    uvloop.run(main())


def now_trade(seq: int, trade_id: int, price: int, qty: int = 1, symbol: int = 1) -> Record:
    return trade(seq, trade_id, price, qty, symbol=symbol, ts=time.time_ns())


def test_subscribe_unsubscribe_list_and_malformed_requests(instance: str) -> None:
    async def body(rig: Rig) -> None:
        async with rig.client() as c:
            ack = await c.request("SUBSCRIBE", ["btc-usd@trade", "eth-usd@ticker"])
            assert ack == {"result": None, "id": 1}
            listed = await c.request("LIST_SUBSCRIPTIONS")
            assert listed["result"] == ["btc-usd@trade", "eth-usd@ticker"]
            for raw, why in [
                ("not json", "invalid JSON"),
                ('{"method":"SUBSCRIBE","params":["btc-usd@nope"],"id":9}', "unknown kind"),
                ('{"method":"PING","id":10}', "method 'PING'"),
            ]:
                await c.ws.send(raw)
                err = await c.until(lambda m: "error" in m)
                assert why in err["error"]["msg"]
            assert (await c.request("UNSUBSCRIBE", ["btc-usd@trade"]))["result"] is None
            assert (await c.request("LIST_SUBSCRIPTIONS"))["result"] == ["eth-usd@ticker"]
            rig.publish([now_trade(1, 1, 10_000), now_trade(2, 1, 20_000, symbol=2)])
            msg = await c.until(lambda m: "stream" in m and m["stream"] != "heartbeat")
            assert msg["stream"] == "eth-usd@ticker"  # not the unsubscribed trade
            assert msg["data"]["c"] == "200.00"

    run(instance, body)


def test_combined_streams_trades_ticker_and_kline(instance: str) -> None:
    async def body(rig: Rig) -> None:
        first_ns = time.time_ns()  # before the subscriber: its latest values
        rig.publish([trade(1, 1, 10_000, 5, ts=first_ns)])
        await asyncio.sleep(0.05)
        streams = "btc-usd@trade/btc-usd@ticker/btc-usd@kline_1m"
        async with rig.client(f"/stream?streams={streams}") as c:
            first = [await c.recv(), await c.recv()]
            assert {m["stream"] for m in first} == {"btc-usd@ticker", "btc-usd@kline_1m"}
            later_ns = time.time_ns()
            rig.publish([trade(2, 2, 10_150, 20, ts=later_ns), trade(3, 3, 9_900, 1, ts=later_ns)])
            trades = await c.collect("btc-usd@trade", 2)
            assert [(t["t"], t["p"], t["q"], t["s"]) for t in trades] == [
                (2, "101.50", "0.0020", "BTC-USD"),
                (3, "99.00", "0.0001", "BTC-USD"),
            ]
            ticker = await c.until(
                lambda m: m.get("stream") == "btc-usd@ticker" and m["data"]["n"] == 3
            )
            t = ticker["data"]
            assert (t["o"], t["h"], t["l"], t["c"], t["v"]) == (
                "100.00",
                "101.50",
                "99.00",
                "99.00",
                "0.0026",
            )
            assert (t["p"], t["P"]) == ("-1.00", "-1.00")
            assert t["q"] == "0.262900"  # 100 x 0.0005 + 101.5 x 0.002 + 99 x 0.0001
            # the candle of trades 2 and 3: trade 1's too, unless a minute turned between them
            opened = later_ns // MIN * MIN
            shown = (["100.00"] if first_ns >= opened else []) + ["101.50", "99.00"]
            kline = await c.until(
                lambda m: (
                    m.get("stream") == "btc-usd@kline_1m"
                    and (m["data"]["k"]["t"], m["data"]["k"]["n"]) == (opened // 10**6, len(shown))
                )
            )
            k = kline["data"]["k"]
            assert (k["i"], k["o"], k["h"], k["l"], k["c"], k["x"]) == (
                "1m",
                shown[0],
                "101.50",
                "99.00",
                "99.00",
                False,
            )

    run(instance, body)


def order(
    seq: int, side: Side, price: int, qty: int, ord_type: OrdType = OrdType.LIMIT
) -> NewOrder:
    return NewOrder(
        *(seq, time.time_ns(), 1, 1, seq, 1, 1, seq),
        side=side,
        ord_type=ord_type,
        tif=TimeInForce.GTC if ord_type == OrdType.LIMIT else TimeInForce.IOC,
        flags=0,
        stp=StpMode.NONE,
        price=price,
        qty=qty,
        stop_price=0,
        display_qty=0,
    )


def random_orders(rng: random.Random, first_seq: int, count: int) -> list[NewOrder]:
    out = []
    for k in range(count):
        side = rng.choice((Side.BUY, Side.SELL))
        price = 10_000 + rng.randint(-20, 20)
        out.append(order(first_seq + k, side, price, rng.randint(1, 50)))
    return out


class RandomFlow:
    """A real matcher of symbol 1 fed random orders, its events published to a rig; ``seq``
    is the next command's (every command changes the book: the last diff ends before it)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.matcher = Matcher([SymbolSpec(symbol=1)])
        self.seq = 1

    def feed(self, rig: Rig, count: int) -> None:
        rig.publish(self.matcher.execute_all(random_orders(self.rng, self.seq, count)))
        self.seq += count


def apply(book: dict[str, dict[str, str]], bids: list[list[str]], asks: list[list[str]]) -> None:
    for side, levels in (("b", bids), ("a", asks)):
        for price, qty in levels:
            if qty == "0.0000":
                book[side].pop(price, None)
            else:
                book[side][price] = qty


def test_depth_snapshot_then_contiguous_diffs_from_a_real_matcher(instance: str) -> None:
    flow = RandomFlow(6)

    async def body(rig: Rig) -> None:
        flow.feed(rig, 300)  # a book exists before the subscriber arrives
        await asyncio.sleep(0.1)
        async with rig.client("/ws/btc-usd@depth") as c:
            snap = (await c.recv())["data"]
            assert snap["e"] == "depthSnapshot"
            book = {"b": dict(map(tuple, snap["bids"])), "a": dict(map(tuple, snap["asks"]))}
            last = snap["lastUpdateId"]
            assert last > 0
            for _ in range(5):
                flow.feed(rig, 200)
            target = flow.seq - 1  # every command changes the book: the last diff ends here
            while last < target:
                d = (await c.recv())["data"]
                assert d["e"] == "depthUpdate"
                assert d["U"] == last + 1, "diffs must be contiguous"
                assert d["u"] >= d["U"]
                apply(book, d["b"], d["a"])
                last = d["u"]
            # the book built from snapshot + diffs is the matcher's book, level by level
            md_book = rig.process.state.symbols[1].book
            fresh = md_book.snapshot(1_000)
            s = rig.process.state.symbols[1].symbol
            assert book["b"] == {s.price(p): s.qty(q) for p, q in fresh.bids}
            assert book["a"] == {s.price(p): s.qty(q) for p, q in fresh.asks}
            assert fresh.last_update_id == last

    run(instance, body, depth_levels=1_000)


def test_heartbeat_and_http_page(instance: str) -> None:
    async def body(rig: Rig) -> None:
        async with rig.client() as c:
            beat = await c.until(lambda m: m.get("stream") == "heartbeat", timeout=2)
            assert beat["data"]["e"] == "heartbeat"

        def get(path: str) -> tuple[int, str, bytes]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{rig.port}{path}") as r:
                    return r.status, r.headers["Content-Type"], r.read()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers["Content-Type"], exc.read()

        rig.publish([now_trade(1, 1, 10_000)])
        await asyncio.sleep(0.05)
        status, ctype, page = await asyncio.to_thread(get, "/")
        assert status == 200 and ctype.startswith("text/html") and b"<canvas" in page
        status, ctype, _ = await asyncio.to_thread(get, "/app.js")
        assert status == 200 and "javascript" in ctype
        status, _, body_ = await asyncio.to_thread(get, "/api/symbols")
        assert status == 200 and b'"stream":"btc-usd"' in body_
        status, _, body_ = await asyncio.to_thread(get, "/api/klines?symbol=btc-usd&interval=1m")
        assert status == 200 and b'"c":"100.00"' in body_
        status, _, body_ = await asyncio.to_thread(get, "/api/trades?symbol=BTC-USD")
        assert status == 200 and b'"p":"100.00"' in body_
        status, _, body_ = await asyncio.to_thread(get, "/api/klines?symbol=xyz")
        assert status == 400 and b"'xyz' is unknown" in body_
        assert (await asyncio.to_thread(get, "/nope"))[0] == 404

    run(instance, body, heartbeat_s=0.05)


def test_limits_connections_subscriptions_and_message_size(instance: str) -> None:
    async def body(rig: Rig) -> None:
        async with rig.client() as a, rig.client() as b:
            with pytest.raises(InvalidStatus) as refused:
                async with rig.client():
                    pass
            assert refused.value.response.status_code == 503
            streams = ["btc-usd@trade", "btc-usd@depth", "btc-usd@ticker"]
            err = await a.request("SUBSCRIBE", streams)
            assert err["error"]["code"] == 2 and "at most 2 per connection" in err["error"]["msg"]
            assert (await a.request("LIST_SUBSCRIPTIONS"))["result"] == []  # none taken
            await b.ws.send("x" * 2_000)
            with pytest.raises(ConnectionClosed) as closed:
                await b.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            assert (await a.request("LIST_SUBSCRIPTIONS"))["result"] == []  # a is unharmed
        with pytest.raises(InvalidStatus) as bad:
            async with rig.client("/stream?streams=btc-usd@bogus"):
                pass
        assert bad.value.response.status_code == 400

    run(instance, body, max_connections=2, max_subscriptions=2, max_message_bytes=1_024)


#: Small socket buffers, so that a client that stops reading is noticed after kilobytes.
TIGHT = {"write_limit": 4096, "send_buffer": 4096}


def small_buffer_socket(port: int) -> socket.socket:
    """A client socket that takes little before TCP pushes back on the server."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def test_slow_trade_consumer_is_closed_1008_and_others_get_every_trade(instance: str) -> None:
    async def body(rig: Rig) -> None:
        slow_sock = small_buffer_socket(rig.port)
        async with (
            rig.client("/ws/btc-usd@trade") as fast,
            rig.client("/ws/btc-usd@trade", sock=slow_sock, max_queue=1) as slow,
        ):
            await slow.ws.send('{"method":"LIST_SUBSCRIPTIONS","id":1}')
            assert (await slow.recv())["result"] == ["btc-usd@trade"]
            seen = 0
            trade_id = 0
            deadline = time.monotonic() + 10
            while rig.process.server.slow_closed == 0 and time.monotonic() < deadline:
                # bursts the fast client's buffers absorb; the slow one's fill up
                batch = [now_trade(trade_id + k + 1, trade_id + k + 1, 10_000) for k in range(10)]
                trade_id += 10
                rig.publish(batch)
                got = await fast.collect("btc-usd@trade", 10)
                assert [t["t"] for t in got] == list(range(seen + 1, seen + 11))
                seen += 10
            assert rig.process.server.slow_closed == 1, f"not closed after {trade_id} trades"
            # the slow one reads what was delivered before the close, then the close frame
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await slow.recv(timeout=10)
            rcvd = closed.value.rcvd
            assert rcvd is not None and rcvd.code == 1008
            assert "slow consumer" in rcvd.reason and "limit 16" in rcvd.reason

    run(instance, body, client_queue=16, server=TIGHT)


def test_slow_depth_consumer_gets_a_fresh_snapshot_and_ticker_conflates(instance: str) -> None:
    rng = random.Random(7)
    matcher = Matcher([SymbolSpec(symbol=1)])

    async def body(rig: Rig) -> None:
        slow_sock = small_buffer_socket(rig.port)
        streams = "/stream?streams=btc-usd@depth/btc-usd@ticker"
        # close_timeout: when the feed sends again after the last read, a client at
        # max_queue=1 stops reading and never sees the server's close frame; its close then
        # waited websockets' default 10 s (often, on a loaded machine)
        async with rig.client(streams, sock=slow_sock, max_queue=1, close_timeout=0.1) as slow:
            snap = (await slow.recv())["data"]
            assert snap["e"] == "depthSnapshot"
            seq = 1
            client = next(iter(rig.process.server.clients))
            deadline = time.monotonic() + 10
            while client.outbox.resnapshots == 0 and time.monotonic() < deadline:
                # stop reading: the server queues, then restarts depth from a snapshot
                rig.publish(matcher.execute_all(random_orders(rng, seq, 400)))
                seq += 400
                await asyncio.sleep(0.02)
            assert client.outbox.resnapshots >= 1
            assert not client.closing  # depth and tickers never close a client
            target = seq - 1
            book: dict[str, dict[str, str]] = {"b": {}, "a": {}}
            last, snapshots, tickers = 0, 0, 0
            while last < target:
                msg = await slow.recv()
                d = msg["data"]
                if d["e"] == "depthSnapshot":
                    snapshots += 1
                    book = {"b": dict(map(tuple, d["bids"])), "a": dict(map(tuple, d["asks"]))}
                    assert d["lastUpdateId"] >= last
                    last = d["lastUpdateId"]
                elif d["e"] == "depthUpdate":
                    if d["u"] <= last:
                        continue
                    assert d["U"] == last + 1
                    apply(book, d["b"], d["a"])
                    last = d["u"]
                else:
                    tickers += 1
            assert snapshots >= 1
            fresh = rig.process.state.symbols[1].book.snapshot(100)
            s = rig.process.state.symbols[1].symbol
            top_bids = sorted(book["b"].items(), key=lambda kv: -float(kv[0]))[:100]
            assert top_bids == [(s.price(p), s.qty(q)) for p, q in fresh.bids]
            assert client.outbox.conflated > 0 and tickers > 0  # queued tickers were replaced

    run(instance, body, client_queue=16, server=TIGHT)


@pytest.mark.parametrize("compression", ["none", "deflate"])
def test_compression_and_socket_buffers_come_from_the_config(
    instance: str, compression: str
) -> None:
    async def body(rig: Rig) -> None:
        server = rig.process.server
        assert (server.write_limit, server.send_buffer) == (4096, 65536)
        async with rig.client() as c:  # websockets' client offers permessage-deflate
            negotiated = [e.name for e in c.ws.protocol.extensions]
            assert negotiated == ([] if compression == "none" else ["permessage-deflate"])
            await c.request("SUBSCRIBE", ["btc-usd@trade"])
            rig.publish([now_trade(1, 1, 10_000)])
            msg = await c.until(lambda m: m.get("stream") == "btc-usd@trade")
            assert msg["data"]["p"] == "100.00"

    run(
        instance,
        body,
        compression=compression,
        write_limit_bytes=4096,
        send_buffer_bytes=65536,
    )


def test_status_stream_starts_with_the_status_and_follows_halts(instance: str) -> None:
    async def body(rig: Rig) -> None:
        async with rig.client() as c:
            await c.request("SUBSCRIBE", ["btc-usd@status"])
            first = await c.until(lambda m: m.get("stream") == "btc-usd@status")
            assert (first["data"]["S"], first["data"]["u"]) == ("TRADING", 0)
            now = time.time_ns()
            rig.publish(
                [
                    SymbolStatus(7, now, 1, AdminAction.HALT, TradingStatus.HALTED),
                    SymbolStatus(9, now, 1, AdminAction.RESUME, TradingStatus.OPEN),
                ]
            )
            halted = await c.until(lambda m: m.get("stream") == "btc-usd@status")
            resumed = await c.until(lambda m: m.get("stream") == "btc-usd@status")
            assert [(m["data"]["S"], m["data"]["u"]) for m in (halted, resumed)] == [
                ("HALT", 7), ("TRADING", 9),
            ]  # fmt: skip
        async with rig.client() as late:  # a new subscriber gets the status as it is
            await late.request("SUBSCRIBE", ["btc-usd@status"])
            now_status = await late.until(lambda m: m.get("stream") == "btc-usd@status")
            assert (now_status["data"]["S"], now_status["data"]["u"]) == ("TRADING", 9)

    run(instance, body)


def test_an_idle_feed_parks_and_a_trade_wakes_it(instance: str) -> None:
    """Idle, the feed parks on its ring (no 5 ms naps); a trade ends the park at once, not at
    the clock's next tick (set far off here)."""

    async def body(rig: Rig) -> None:
        feed = rig.process.feed
        assert feed.waker is not None
        feed.clock_s = 60.0
        deadline = time.monotonic() + 5.0  # it ticks once more, then parks until the next
        while feed._nap is None or feed._next_clock - time.monotonic() < 30:
            assert time.monotonic() < deadline, "the feed did not park"
            await asyncio.sleep(0.05)
        woken, events = feed.waker.wakeups, feed.events
        async with rig.client("/stream?streams=btc-usd@trade") as client:
            rig.publish([now_trade(1, 1, 5_000_000)])
            started = time.monotonic()
            got = await client.recv(timeout=5.0)
            assert got["data"]["t"] == 1
            assert time.monotonic() - started < 2.0  # the ring woke it, not the clock
        assert feed.events == events + 1 and feed.waker.wakeups > woken

    run(instance, body)
