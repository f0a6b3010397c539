"""Review 110: README.md's claims about the public market-data feed held to the code,
mechanically. Here: the ``marketdata`` row of "## The processes"; ``..._feed2.py``: the
``[marketdata]`` config block, the limits paragraph under it, the saved state, "Market data
after a failover", the layout lines and the two real-socket tests. Not the REST API and
private stream section (review 106). Convention (review 104's, ``tests/readme_text.py``):
each test anchors its claim by a quote found in the README as it is (whitespace folded), so
a reworded claim fails loudly; a claim found right is a plain test, a disagreement a strict
xfail asserting what the README says. All in-process: the market state fed records by hand,
the hub with a recording subscriber, the server's ``Client`` and handlers on a fake socket.
One disagreement found (``..._feed2.py``), fixed on the README side: ``client_queue`` "messages
queued per slow client before conflation / 1008", but ``Outbox.push`` conflates tickers,
klines and heartbeats at any queue length (procs/marketdata/outbox.py:72).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import resource
from collections.abc import Iterable, Sequence
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from unittest.mock import Mock

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.protocol import State

from config.edges import MarketDataConfig
from config.schema import SymbolConfig
from procs.common.open_files import connections_room
from procs.common.records import Record, SymbolStatus
from procs.common.types import AdminAction, Side, TradingStatus
from procs.core.market.candles import INTERVALS
from procs.core.market.state import MarketState, Update
from procs.core.market.symbols import MarketSymbol
from procs.marketdata import main, messages
from procs.marketdata.connection import POLICY_VIOLATION, FlowConnection
from procs.marketdata.hub import Hub, Message
from procs.marketdata.outbox import Outbox
from procs.marketdata.requests import ErrorCode, RequestError, parse_request
from procs.marketdata.server import Client, MarketDataServer, _http
from procs.marketdata.streams import Kind, StreamError, parse_stream
from procs.marketdata.web import STATIC_DIR, Site, page_config
from tests.readme_text import README, claim, section

from .events import MIN, OTHER, SYMBOL, T0, level, trade
from .rig import config

ROW = next(line for line in section("The processes").splitlines() if line.startswith("| marketd"))
TICKER_KEYS = ["p", "P", "w", "x", "o", "h", "l", "c", "Q", "b", "B", "a", "A"]  # (x, b..A: 334)
TICKER_KEYS += ["v", "q", "O", "C", "F", "L", "n"]
S = 1_000_000_000
BTC = frozenset({"btc-usd"})


def _row(quote: str) -> None:
    claim(quote, ROW, where="README's marketdata row")


class _Sub:
    """A hub subscriber whose socket takes everything at once: each message's JSON, in order."""

    def __init__(self) -> None:
        self.streams: set[str] = set()
        self.got: list[dict[str, Any]] = []

    def deliver(self, messages: Sequence[Message], frames: bytes) -> None:
        self.got += [json.loads(m.payload) for m in messages]

    def deliver_snapshot(self, stream: str, payload: bytes) -> None:
        self.got.append(json.loads(payload))

    def data(self, stream: str) -> list[dict[str, Any]]:
        return [m["data"] for m in self.got if m.get("stream") == stream]


def _market() -> tuple[MarketState, Hub]:
    state = MarketState([SYMBOL, OTHER])
    return state, Hub(state, depth_levels=100, max_subscriptions=200)


def _feed(state: MarketState, hub: Hub, events: Iterable[Record], now_ns: int = 0) -> None:
    """What ``Feed.pump`` does with a batch: process, move the clock, flush, publish."""
    out: list[Update] = []
    for event in events:
        state.process(event, out)
    if now_ns:
        state.advance(now_ns)
    hub.publish(out + state.flush())


def _subscribe(hub: Hub, *names: str) -> _Sub:
    sub = _Sub()
    hub.subscribe(sub, [parse_stream(n, hub.symbols) for n in names])
    return sub


class _Conn:
    """A websockets connection as ``Client`` and ``_handler`` use it; its transport holds
    ``buffered`` bytes (past ``write_limit``: messages go through the client's outbox)."""

    def __init__(
        self, path: str = "/stream", messages: Sequence[str] = (), buffered: int = 1 << 30
    ):
        self.request = Request(path, Headers())
        self.remote_address = ("127.0.0.1", 40_000)
        self.transport = Mock(**{"get_write_buffer_size.return_value": buffered})
        self.transport.get_extra_info.return_value = None
        self.protocol = SimpleNamespace(extensions=[], state=State.OPEN)
        self.messages, self.sent = list(messages), list[dict[str, Any]]()
        self.closed: tuple[int, str] | None = None
        self.close_timeout: float = 2
        self.hangs = False  # its socket takes nothing: send and close never end

    async def send(self, payload: bytes, text: bool = False) -> None:
        if self.hangs:
            await asyncio.Event().wait()
        self.sent.append(json.loads(payload))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.hangs:
            await asyncio.Event().wait()
        self.closed = (code, reason)

    def __aiter__(self) -> Any:
        return self._messages()

    async def _messages(self) -> Any:
        for message in self.messages:
            if self.closed is not None:
                return
            yield message
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)  # the client's sender sends what is queued, then it ends


def _server(cfg: Any = None, hub: Hub | None = None, **kw: Any) -> MarketDataServer:
    hub = hub or _market()[1]
    return MarketDataServer(hub, Site(hub.state), cfg or MarketDataConfig(), **kw)


def _client(server: MarketDataServer, conn: _Conn) -> Client:
    return Client(conn, server)  # type: ignore[arg-type]  # the fake connection


def _snapshot(stream: str) -> bytes:
    return json.dumps({"stream": stream, "data": {"e": "depthSnapshot"}}).encode()


def _depth() -> bytes:
    return b'{"stream":"btc-usd@depth","data":{"e":"depthUpdate"}}'


def _trade(n: int) -> bytes:
    return json.dumps({"stream": "btc-usd@trade", "data": {"e": "trade", "t": n}}).encode()


# -- L2 depth, trades ---------------------------------------------------------------------------


def test_row_is_the_marketdata_package() -> None:
    """README: "| marketdata | `procs/marketdata` |", the table's one marketdata row: the
    process is ``procs/marketdata/main.py``."""
    _row("| marketdata | `procs/marketdata` |")
    assert [line for line in README.splitlines() if line.startswith("| marketdata |")] == [ROW]
    assert callable(main.main) and callable(main.serve)


def test_depth_is_a_snapshot_then_contiguous_diffs() -> None:
    """README: "L2 depth (snapshot then contiguous diffs)": ``Hub.subscribe`` sends a snapshot
    first; each diff of ``L2Book.take_diff`` has ``U`` = the previous ``u`` (or the
    snapshot's ``lastUpdateId``) + 1, other symbols' seqs between covered vacuously."""
    _row("L2 depth (snapshot then contiguous diffs)")
    state, hub = _market()
    _feed(state, hub, [level(1, Side.BUY, 9_900, 5), level(2, Side.SELL, 10_100, 7)])
    sub = _subscribe(hub, "btc-usd@depth")
    _feed(state, hub, [level(3, Side.BUY, 9_800, 1, symbol=2), level(4, Side.BUY, 9_900, 0)])
    _feed(state, hub, [level(6, Side.SELL, 10_200, 3), level(7, Side.SELL, 10_100, 1)])
    _feed(state, hub, [level(9, Side.SELL, 10_300, 3, symbol=2)])  # not this book's
    _feed(state, hub, [level(11, Side.BUY, 9_700, 2)])
    snap, *diffs = sub.data("btc-usd@depth")
    assert (snap["e"], snap["lastUpdateId"], snap["bids"][0]) == (
        "depthSnapshot",
        2,
        ["99.00", "0.0005"],
    )
    assert [d["e"] for d in diffs] == ["depthUpdate"] * 3
    last = snap["lastUpdateId"]
    for d in diffs:
        assert d["U"] == last + 1, (d["U"], last)
        last = d["u"]
    assert [(d["U"], d["u"]) for d in diffs] == [(3, 4), (5, 7), (8, 11)]


def test_trades_go_out_on_symbol_at_trade() -> None:
    """README: "trades ... (`<symbol>@trade`": each trade a ``trade`` message on
    ``btc-usd@trade`` (``MarketState.process``, ``messages.trade``)."""
    _row("`<symbol>@trade`")
    state, hub = _market()
    sub = _subscribe(hub, "btc-usd@trade")
    _feed(state, hub, [trade(1, 1, 10_000, 2), trade(2, 2, 10_100, 3, aggressor=Side.SELL)])
    got = [(t["e"], t["s"], t["t"], t["p"], t["q"]) for t in sub.data("btc-usd@trade")]
    assert got == [
        ("trade", "BTC-USD", 1, "100.00", "0.0002"),
        ("trade", "BTC-USD", 2, "101.00", "0.0003"),
    ]


#: 1 at 100.00, then 3 at 101.00.
TWO_TRADES = [
    trade(1, 1, 10_000, 10_000, ts=T0 + 10 * S),
    trade(2, 2, 10_100, 30_000, ts=T0 + 20 * S),
]


def _ticker_after(events: Iterable[Record], now_ns: int = 0) -> dict[str, Any]:
    """The last ``btc-usd@ticker`` message's data after ``events`` (then the clock at
    ``now_ns``)."""
    state, hub = _market()
    sub = _subscribe(hub, "btc-usd@ticker")
    _feed(state, hub, events)
    if now_ns:
        _feed(state, hub, [], now_ns)
    return sub.data("btc-usd@ticker")[-1]


def test_ticker_has_exactly_the_keys_the_readme_lists() -> None:
    """README: "24h ticker (`p`, `P`, `w` ..., `o`, `h`, `l`, `c`, `Q` ..., `v`, `q`, `O`,
    `C`, `F`, `L`, `n`": ``messages._ticker_data``'s keys, beside ``e``, ``E``, ``s``."""
    listed = re.findall(r"`(\w)`", ROW.split("24h ticker (", 1)[1].split(";", 1)[0])
    assert listed == TICKER_KEYS
    data = _ticker_after(TWO_TRADES)
    assert data["e"] == "24hrTicker" and sorted(set(data) - {"e", "E", "s"}) == sorted(TICKER_KEYS)


def test_ticker_values_are_the_windows() -> None:
    """README's ticker keys: ``p``/``P`` change, ``o h l c``, ``v q`` volumes, ``O C`` the
    window's start and newest time, ``F L n`` its first and last trade and count, "`w` the
    weighted average price", "`Q` the last trade's size" (``RollingTicker.ticker``)."""
    _row("`o`, `h`, `l`, `c`")
    d = _ticker_after(TWO_TRADES)
    assert [d[k] for k in "ohlcpP"] == ["100.00", "101.00", "100.00", "101.00", "1.00", "1.00"]
    assert (d["v"], Decimal(d["q"]), d["F"], d["L"], d["n"]) == ("4.0000", Decimal("403"), 1, 2, 2)
    assert (d["O"], d["C"]) == ((T0 - 1439 * MIN) // 1_000_000, (T0 + 20 * S) // 1_000_000)
    _row("`w` the weighted average price")  # (100 x 1 + 101 x 3) / 4
    _row("`Q` the last trade's size")  # ``RollingTicker.last_qty``, not the volume
    assert (Decimal(d["w"]), d["Q"]) == (Decimal("100.75"), "3.0000")


def test_ticker_with_no_trade_in_the_window() -> None:
    """README: "with no trade in the window `F`, `L`, `n` are 0 while `c` and `Q` still show
    the last trade": the clock 24 h on, ``RollingTicker.advance`` empties the window."""
    _row("with no trade in the window `F`, `L`, `n` are 0 while `c` and `Q` still show the last")
    d = _ticker_after(TWO_TRADES, now_ns=T0 + 24 * 60 * MIN)
    assert [d[k] for k in "FLncQv"] == [0, 0, 0, "101.00", "3.0000", "0.0000"]


# -- candles ------------------------------------------------------------------------------------


def test_candle_intervals_are_1m_to_1d() -> None:
    """README: "candles 1m..1d", "`@kline_<interval>` with interval one of 1m, 5m, 15m, 1h, 4h,
    1d": ``candles.INTERVALS``; ``parse_stream`` takes each, refuses others; a trade sends
    one kline message per interval, on its stream, with its ``i`` (``messages.kline``)."""
    _row("candles 1m..1d")
    _row("`@kline_<interval>` with interval one of 1m, 5m, 15m, 1h, 4h, 1d;")
    assert list(INTERVALS) == ["1m", "5m", "15m", "1h", "4h", "1d"]
    assert [parse_stream(f"btc-usd@kline_{i}", BTC).interval for i in INTERVALS] == list(INTERVALS)
    for other in ("3m", "30m", "2h", "1w", "1M", ""):
        with pytest.raises(StreamError):
            parse_stream(f"btc-usd@kline_{other}", BTC)
    state, hub = _market()
    sub = _subscribe(hub, *(f"btc-usd@kline_{i}" for i in INTERVALS))
    _feed(state, hub, [trade(1, 1, 10_000, 1, ts=T0 + S)])
    for i in INTERVALS:
        (got,) = sub.data(f"btc-usd@kline_{i}")
        assert (got["e"], got["k"]["i"], got["k"]["n"]) == ("kline", i, 1)


def test_candles_name_their_first_and_last_trade_0_before_the_first() -> None:
    """README: "(each naming its first and last trade, `f` and `L`, 0 before its first)":
    trades 1, 2 give f 1, L 2; the flat candles the clock opens say 0, 0, the open one until
    its first trade (``CandleSeries``, ``messages.candle_data``)."""
    _row("(each naming its first and last trade, `f` and `L`, 0 before its first)")
    state, hub = _market()
    sub = _subscribe(hub, "btc-usd@kline_1m")
    _feed(state, hub, TWO_TRADES)
    _feed(state, hub, [], T0 + 3 * MIN)
    _feed(state, hub, [trade(3, 3, 10_200, 1, ts=T0 + 3 * MIN + 5 * S)])
    ks = [m["k"] for m in sub.data("btc-usd@kline_1m")]
    last = {k["t"]: (k["f"], k["L"], k["n"], k["x"]) for k in ks}  # each candle's last value
    t0 = T0 // 1_000_000
    assert [last[t0 + m * 60_000] for m in range(3)] == [(1, 2, 2, True), *[(0, 0, 0, True)] * 2]
    opened = [(k["f"], k["L"], k["n"]) for k in ks if k["t"] == t0 + 3 * 60_000]
    assert (opened[0], opened[-1]) == ((0, 0, 0), (3, 3, 1))


# -- stream names, the heartbeat, the endpoints ---------------------------------------------------


def test_stream_names_are_binance_style() -> None:
    """README: "Binance-style stream names (`<symbol>@trade`, `@depth`, `@bookTicker`,
    `@ticker`, `@kline_<interval>` ...; `<symbol>` lower-cased: `btc-usd@trade`":
    ``parse_stream`` reads each, ``Stream.name`` spells it; the configured case is refused."""
    _row("stream names (`<symbol>@trade`, `@depth`, `@bookTicker`, `@ticker`, `@kline_<interval>`")
    kinds = {
        "trade": Kind.TRADE,
        "depth": Kind.DEPTH,
        "bookTicker": Kind.BOOK_TICKER,
        "depth20": Kind.PARTIAL_DEPTH,
        "ticker": Kind.TICKER,
        "kline_1h": Kind.KLINE,
    }
    for suffix, kind in kinds.items():
        stream = parse_stream(f"btc-usd@{suffix}", BTC)
        assert (stream.kind, stream.name) == (kind, f"btc-usd@{suffix}")
    _row("`<symbol>` lower-cased: `btc-usd@trade`")  # ``MarketSymbol.from_config``
    symbol = MarketSymbol.from_config(SymbolConfig(name="BTC-USD", id=1))
    assert symbol.stream == "btc-usd"
    assert messages.trade(symbol, trade(1, 1, 100, 1))[0] == "btc-usd@trade"
    with pytest.raises(StreamError, match="unknown symbol"):
        parse_stream("BTC-USD@trade", frozenset({symbol.stream}))


def test_every_connection_gets_a_heartbeat_message() -> None:
    """README: "every connection also gets a `heartbeat` stream message every 5 s":
    ``_heartbeats`` fans ``{"stream": "heartbeat"}`` out to every client, one with no
    subscription too; ``heartbeat_s`` is 5 s by default (server and process)."""
    _row("every connection also gets a `heartbeat` stream message every 5 s")
    server = _server(heartbeat_s=0.01)
    idle, subscribed = _Sub(), _Sub()
    subscribed.streams.add("btc-usd@trade")
    server.clients = {idle, subscribed}  # type: ignore[arg-type]

    async def beats() -> None:
        task = asyncio.ensure_future(server._heartbeats())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(beats())
    for sub in (idle, subscribed):
        assert sub.data("heartbeat") and sub.data("heartbeat")[0]["e"] == "heartbeat"
    assert _server().heartbeat_s == 5.0  # every 5 s: the default (``serve`` passes none)
    assert inspect.signature(main.MarketDataProcess).parameters["heartbeat_s"].default == 5.0


def test_heartbeat_cannot_be_subscribed_to() -> None:
    """README: "..., which it cannot subscribe to": ``parse_stream`` refuses "heartbeat" and
    "<symbol>@heartbeat"; a SUBSCRIBE of it is INVALID_STREAM."""
    _row("which it cannot subscribe to")
    for name in ("heartbeat", "btc-usd@heartbeat"):
        with pytest.raises(StreamError):
            parse_stream(name, BTC)
        with pytest.raises(RequestError) as refused:
            parse_request(json.dumps({"method": "SUBSCRIBE", "params": [name], "id": 1}), BTC)
        assert refused.value.code is ErrorCode.INVALID_STREAM


def test_endpoints_ws_stream_combined_and_bare() -> None:
    """README: "at `/ws/<stream>`, `/stream?streams=a/b` or a bare `/stream` (then
    SUBSCRIBE)": ``_path_streams`` subscribes the URL's streams, none for a bare one."""
    _row("at `/ws/<stream>`, `/stream?streams=a/b` or a bare `/stream` (then SUBSCRIBE)")
    server = _server()
    for path, names in (
        ("/ws/btc-usd@trade", ["btc-usd@trade"]),
        ("/stream?streams=btc-usd@depth/eth-usd@kline_1m", ["btc-usd@depth", "eth-usd@kline_1m"]),
        ("/stream", []),
    ):
        assert [s.name for s in server._path_streams(path)] == names
    with pytest.raises(StreamError):
        server._path_streams("/stream?streams=btc-usd@nothing")


def test_a_bare_stream_then_subscribe() -> None:
    """README: "a bare `/stream` (then SUBSCRIBE)": the SUBSCRIBE's answer, then the depth
    snapshot (``MarketDataServer._handler`` over a fake connection)."""
    _row("or a bare `/stream` (then SUBSCRIBE)")
    request = json.dumps({"method": "SUBSCRIBE", "params": ["btc-usd@depth"], "id": 7})
    conn = _Conn("/stream", [request])
    asyncio.run(_server()._handler(conn))  # type: ignore[arg-type]
    assert conn.sent[0] == {"result": None, "id": 7}
    assert (conn.sent[1]["stream"], conn.sent[1]["data"]["e"]) == ("btc-usd@depth", "depthSnapshot")


# -- slow clients ---------------------------------------------------------------------------------


def test_slow_clients_depth_compacted_before_a_trade_or_answer_overflows() -> None:
    """README: "a slow client's depth is compacted to a snapshot before any trade or answer
    can overflow its queue": a full ``Outbox`` holding diffs takes a trade or an answer (its
    diffs now an owed snapshot); only one with nothing to compact refuses them."""
    _row("a slow client's depth is compacted to a snapshot before any trade or answer can overflow")
    box = Outbox(4, _snapshot)
    for _ in range(3):
        assert box.push(Kind.DEPTH, "btc-usd@depth", _depth()) is None
    assert box.push(Kind.TRADE, "btc-usd@trade", _trade(1)) is None  # the 4th: the queue full
    assert box.push(Kind.TRADE, "btc-usd@trade", _trade(2)) is None  # compacted: room
    box.settle()
    assert [json.loads(p)["data"]["e"] for p in iter(box.pop, None)] == [
        "trade",
        "trade",
        "depthSnapshot",
    ]
    full = Outbox(2, _snapshot)
    assert full.push(Kind.TRADE, "btc-usd@trade", _trade(1)) is None
    assert full.push(Kind.TRADE, "btc-usd@trade", _trade(2)) is None
    assert "slow consumer" in (full.push(Kind.TRADE, "btc-usd@trade", _trade(3)) or "")
    box = Outbox(3, _snapshot)  # an answer: ``push_reply`` compacts as a trade does
    for _ in range(3):
        box.push(Kind.DEPTH, "btc-usd@depth", _depth())
    assert box.push_reply(b'{"result":null,"id":1}') is None
    assert [json.loads(p).get("id") for p in iter(box.pop, None)] == [1, None]
    assert "does not read the answers" in (full.push_reply(b"{}") or "")


def test_owed_snapshot_queued_after_the_batchs_trades() -> None:
    """README: "(the snapshot queued after the trades of the batch it shows)": a slow
    ``Client.deliver`` of trade, diff (past the limit), trade queues the snapshot last."""
    _row("(the snapshot queued after the trades of the batch it shows)")
    state, hub = _market()
    _feed(state, hub, [level(1, Side.BUY, 9_900, 5)])
    client = _client(_server(MarketDataConfig(client_queue=16), hub), _Conn())
    for _ in range(15):
        client.outbox.push(Kind.DEPTH, "btc-usd@depth", _depth())
    batch = [
        Message(Kind.TRADE, "btc-usd@trade", _trade(1)),
        Message(Kind.DEPTH, "btc-usd@depth", _depth()),
        Message(Kind.TRADE, "btc-usd@trade", _trade(2)),
    ]
    client.deliver(batch, b"".join(m.frame for m in batch))
    queued = [json.loads(p)["data"] for p in iter(client.outbox.pop, None)]
    assert not client.closing and [d["e"] for d in queued] == ["trade", "trade", "depthSnapshot"]
    assert queued[-1]["lastUpdateId"] == 1  # the hub's, from the book


def test_closed_as_slow_gets_twice_the_ping_interval_to_read_its_1008() -> None:
    """README: "a client closed as slow gets twice the ping interval to read up to its 1008
    frame": ``Client.close_slow`` sets ``close_timeout`` to 2 x 20 s and closes 1008; past
    that, ``Client._close_within`` aborts the socket."""
    _row("a client closed as slow gets twice the ping interval to read up to its 1008 frame")
    server, conn = _server(), _Conn()
    assert server.ping_interval_s == 20.0 and server.slow_close_s == 2 * server.ping_interval_s

    async def close() -> None:
        client = _client(server, conn)
        client.close_slow("slow consumer: test")
        assert client.closing and conn.close_timeout == 40.0
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(close())
    assert POLICY_VIOLATION == 1008 and conn.closed == (1008, "slow consumer: test")
    unread = _Conn()
    unread.hangs = True  # past its time (``_close_within``'s limit): the socket aborted
    asyncio.run(_client(_server(), unread)._close_within("slow", 0.05))
    assert unread.transport.abort.called and unread.closed is None


def test_a_socket_that_takes_nothing_for_that_long_is_dropped() -> None:
    """README: "and one whose socket takes nothing for that long is dropped": ``stall_s`` is
    2 x the ping interval; ``Client.sender`` aborts a send not done in it (25 ms here)."""
    _row("and one whose socket takes nothing for that long is dropped")
    assert _server().stall_s == 40.0
    server, conn = _server(ping_interval_s=0.025), _Conn()
    conn.hangs = True

    async def stall() -> None:
        client = _client(server, conn)
        client.reply(b'{"result":null,"id":1}')  # queued: the transport is full
        await asyncio.wait_for(client.sender(), 2)
        assert client.closing

    asyncio.run(stall())
    assert conn.transport.abort.called and server.stalled == 1


def test_a_connection_is_not_read_while_its_writes_are_paused() -> None:
    """README: "a connection is not read while its writes are paused": ``FlowConnection``'s
    ``pause_writing`` pauses the transport's reading, ``resume_writing`` resumes it."""
    _row("a connection is not read while its writes are paused")
    conn = FlowConnection.__new__(FlowConnection)
    fake = Mock(**{"is_closing.return_value": False})
    conn.__dict__.update(paused=False, drain_waiters=[], _queue_full=False, _writes_full=False)
    conn.__dict__["transport"] = fake
    conn.pause_writing()
    assert fake.pause_reading.called and not fake.resume_reading.called
    conn.resume_writing()
    assert fake.resume_reading.called


def test_open_file_limit_raised_for_max_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: "the process raises its open-file limit for `max_connections` at start":
    ``connections_room`` raises the soft RLIMIT_NOFILE towards the hard one, says what fits
    (that ``start`` calls it: ``test_real_socket_limits``)."""
    _row("the process raises its open-file limit for `max_connections` at start")
    set_to: list[tuple[int, int]] = []
    limits = [(256, 1 << 20)]
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits[0])
    monkeypatch.setattr(resource, "setrlimit", lambda _, v: set_to.append(v))
    assert connections_room(5_000, warn=False) == 5_000
    assert set_to and set_to[0][0] >= 5_000 and set_to[0][1] == 1 << 20
    limits[0] = (256, 1_000)  # a hard limit below them: what fits
    assert connections_room(5_000, warn=False) < 1_000


def test_what_does_not_fit_is_answered_503() -> None:
    """README: "(what does not fit is answered 503)": ``_process_request`` answers an upgrade
    past ``max_connections`` (as ``start`` set it) 503 naming it."""
    _row("(what does not fit is answered 503)")
    server = _server()
    server.max_connections, server.clients = 2, {object(), object()}  # type: ignore[arg-type]
    upgrade = Request("/stream", Headers([("Upgrade", "websocket")]))
    answer = server._process_request(_Conn(), upgrade)  # type: ignore[arg-type]
    assert answer is not None and answer.status_code == 503 and b"at most 2" in answer.body


def test_methods_other_than_get_and_head_get_405() -> None:
    """README: "methods other than GET and HEAD get 405": ``server._http``, with ``Allow:
    GET, HEAD``; HEAD is GET's answer without its body."""
    _row("methods other than GET and HEAD get 405")
    site = Site(MarketState([SYMBOL]))
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        answer = _http(site.get, Request("/", Headers(), method=method))
        assert answer.status_code == 405 and answer.headers["Allow"] == "GET, HEAD"
    get = _http(site.get, Request("/", Headers(), method="GET"))
    head = _http(site.get, Request("/", Headers(), method="HEAD"))
    assert get.status_code == head.status_code == 200 and get.body and head.body == b""


def test_status_at_subscription_then_each_halt_and_resume() -> None:
    """README: "`<symbol>@status` (`{"S": "TRADING"|"HALT", "u": seq}`: the status at
    subscription, then each halt and resume)": ``Hub._initial`` sends TRADING (seq 0), then a
    halt and a resume with their seqs, not a second halt nor an end of session."""
    _row('`<symbol>@status` (`{"S": "TRADING"\\|"HALT", "u": seq}`')
    _row("the status at subscription, then each halt and resume)")
    assert set(messages.STATUS_NAMES.values()) == {"TRADING", "HALT"}
    state, hub = _market()
    sub = _subscribe(hub, "btc-usd@status")
    halt, resume, eos = AdminAction.HALT, AdminAction.RESUME, AdminAction.END_OF_SESSION
    _feed(state, hub, [SymbolStatus(5, T0, 1, halt, TradingStatus.HALTED)])
    _feed(state, hub, [SymbolStatus(6, T0, 1, halt, TradingStatus.HALTED)])
    _feed(state, hub, [SymbolStatus(8, T0, 1, resume, TradingStatus.OPEN)])
    _feed(state, hub, [SymbolStatus(9, T0, 1, eos, TradingStatus.OPEN)])
    got = [(d["S"], d["u"]) for d in sub.data("btc-usd@status")]
    assert got == [("TRADING", 0), ("HALT", 5), ("TRADING", 8)]


# -- the page -------------------------------------------------------------------------------------


def _static(name: str) -> str:
    return (STATIC_DIR / name).read_text()


def test_page_at_slash_chart_ladder_trades_ticker_halt() -> None:
    """README: "the page at `/` (chart, ladder, trades, ticker, HALT beside a halted symbol":
    ``Site.get("/")`` is ``index.html``: each, HALT right after the symbol's select."""
    _row("the page at `/` (chart, ladder, trades, ticker, HALT beside a halted symbol;")
    html = _static("index.html")
    assert Site(MarketState([SYMBOL])).get("/").body == html.encode()
    for element in ("chart", "asks", "bids", "trades", "ticker"):
        assert f'id="{element}"' in html, element
    header = html.split("<header>", 1)[1].split("</header>", 1)[0]
    assert re.search(r'id="symbol"[^\n]*\n\s*<span id="halt"[^>]*>HALT<', header)
    assert 'd.S !== "HALT"' in _static("app.js")


def test_page_trading_panels_with_a_rest_gateway() -> None:
    """README: "with a REST gateway, login, order entry (...), open orders with a cancel each
    and a cancel-all, fills with their commission and asset, balances": hidden panels
    ``trading.js`` shows when ``/api/config`` names a REST API (``page_config``)."""
    _row("with a REST gateway, login, order entry")
    _row("open orders with a cancel each and a cancel-all, fills with their commission and asset")
    html, js = _static("index.html"), _static("trading.js")
    assert '<div id="trading" hidden>' in html
    for element in ("login", "order-form", "open-orders", "cancel-all", "fills", "balances"):
        assert f'id="{element}"' in html, element
    assert "commissionAsset" in js and "if (!config.rest) return;" in js
    assert page_config(config("review110-page")) == {"rest": None}


def test_page_is_offline() -> None:
    """README: "the page at `/` (...), offline": no file of ``static/`` loads anything from
    another host (no ``http(s)://`` or ``//host`` source, import or stylesheet)."""
    _row("an answer that comes back after a logout is dropped), offline;")
    external = re.compile(r"""(src|href|import|from|url)\s*[=(]?\s*["'](https?:)?//""")
    for path in sorted(STATIC_DIR.iterdir()):
        assert not external.search(path.read_text()), path.name
