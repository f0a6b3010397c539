"""Review 110, part 2 (the review and its convention: ``test_review110_readme_feed.py``):
README.md's ``[marketdata]`` config block (each key's default, bound and effect), the limits
paragraph under it (requests and their weight, pings, connections per address, sockets
counted from their accept, ``/api`` answers rendered once), the saved state and its resume,
"Market data after a failover", the layout lines, and the two tests over real sockets
(``rig.running``: the frame limit, the ping count, ``start``'s open-file limit, the bare and
combined endpoints, the heartbeat, a POST's 405). The handler's request budget is driven
in-process (``_handler`` over a fake connection, its clock frozen).

Disagreement found: ``client_queue = 1000 # messages queued per slow client before
conflation / 1008``, while ``Outbox.push`` (procs/marketdata/outbox.py:72) conflates a ticker,
kline or heartbeat with a queued one of its stream at any queue length (a strict xfail).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request
from websockets.protocol import State

from config.edges import MarketDataConfig
from procs.common.market_snapshots import MarketSnapshots
from procs.common.record_codec import RecordCodec
from procs.common.records import BookLevel, Heartbeat, Record
from procs.common.topology import MARKETDATA, REPLAY_SOURCE, market_state_path, matcher_output
from procs.common.topology import rings as ring_specs
from procs.common.types import Side
from procs.core.market.candles import INTERVALS
from procs.core.market.state import MarketState
from procs.core.market.symbols import MarketSymbol
from procs.marketdata import messages as messages_module
from procs.marketdata import reseed as reseed_module
from procs.marketdata import server as server_module
from procs.marketdata.connection import (
    MAX_REQUESTS_PER_S,
    NAMES_PER_REQUEST,
    TOO_MANY_PINGS,
    TOO_MANY_REQUESTS,
)
from procs.marketdata.feed import Feed
from procs.marketdata.hub import Hub, Message
from procs.marketdata.main import MarketDataProcess, resume
from procs.marketdata.outbox import Outbox
from procs.marketdata.requests import ErrorCode, RequestError, parse_request
from procs.marketdata.reseed import Reseeder
from procs.marketdata.server import Client
from procs.marketdata.streams import Kind, parse_stream
from procs.marketdata.web import MAX_LIMIT, Site
from procs.supervisor.plan import plan
from shm import Ring
from tests.readme_text import ROOT, claim, section
from tests.unit.config.readme_claims import _toml_blocks

from .events import MIN, OTHER, SYMBOL, T0, level, trade
from .feed_fakes import ListConsumer
from .rig import CODEC, close_process, config, drain_feed, running
from .test_review110_readme_feed import _Conn, _feed, _market, _server, _snapshot, _Sub, _subscribe

KINDS = ("trade", "depth", "ticker", "status", *(f"kline_{i}" for i in INTERVALS))
BLOCK = next(text for _, text in _toml_blocks() if text.startswith("[marketdata]"))
#: The paragraph under the block: the feed's limits.
_, PROSE = section("Configure").split("max_connections_per_address = 0", 1)
PROSE = PROSE.split("The router's journal", 1)[0]


def _block(quote: str) -> None:  # (a comment's continuation lines joined)
    claim(quote, BLOCK, where="README's [marketdata] block", comments=True)


def _prose(quote: str) -> None:
    claim(quote, PROSE, where="README's feed limits paragraph")


def _convert(**keys: Any) -> MarketDataConfig:  # as a profile's loader reads it: bounded
    return msgspec.convert(keys, MarketDataConfig)


@contextlib.contextmanager
def _ring(instance: str) -> Iterator[Ring[Record]]:
    """The matcher ``m1``'s output ring a ``rig.config`` process reads (nothing listens)."""
    ring: Ring[Record] = Ring.create(
        instance, matcher_output("m1"), CODEC, capacity=1 << 14, consumers=[MARKETDATA]
    )
    try:
        yield ring
    finally:
        ring.close()


def _built(instance: str, var_dir: str | None = None, **md: Any) -> MarketDataProcess:
    """A ``MarketDataProcess`` built, never started, its rings let go."""
    process = MarketDataProcess(config(instance, var_dir, **md), codec=CODEC)
    close_process(process)
    return process


def test_block_keys_and_defaults_are_the_schemas() -> None:
    """README: "Market data (all keys optional):": each key of the block is a
    ``MarketDataConfig`` field defaulting to the value shown (``port = 8765`` ...); an empty
    table is valid; "Every listener binds `127.0.0.1` unless its `host` says otherwise"."""
    claim("Market data (all keys optional):")
    shown = tomllib.loads(BLOCK)["marketdata"]
    assert list(shown) == [
        *("enabled", "port", "max_subscriptions", "max_message_bytes", "depth_levels"),
        *("client_queue", "snapshot_every_s", "write_limit_bytes", "send_buffer_bytes"),
        *("compression", "max_connections", "max_connections_per_address"),
    ]
    for key, value in shown.items():
        assert getattr(MarketDataConfig(), key) == value, key
    assert _convert() == MarketDataConfig()
    claim("Every listener binds `127.0.0.1` unless its `host` says otherwise")
    claim("`[marketdata] host`")
    assert MarketDataConfig().host == "127.0.0.1"


def test_enabled_false_no_feed_no_page_no_ring_lines(instance: str) -> None:
    """README: "false: no feed and no page (nor its lines on the matchers' rings)": no
    marketdata process in ``plan``, no ``marketdata`` consumer in ``topology.rings``."""
    _block("enabled = true             # false: no feed and no page (nor its lines on the")
    for enabled in (True, False):
        cfg = config(instance, enabled=enabled)
        (output,) = [s for s in ring_specs(cfg) if s.name == matcher_output("m1")]
        assert (MARKETDATA in output.consumers) is enabled
        assert ("marketdata" in [p.name for p in plan(cfg)]) is enabled


def test_max_subscriptions_streams_one_connection_may_hold() -> None:
    """README: "max_subscriptions = 200 # streams one connection may hold": ``Hub`` takes 200
    and refuses the 201st (TOO_MANY_SUBSCRIPTIONS), keeping none of that request."""
    _block("max_subscriptions = 200    # streams one connection may hold")
    symbols = [MarketSymbol(k + 1, f"S{k}-USD", f"s{k}-usd", 2, 4) for k in range(21)]
    hub = Hub(MarketState(symbols), depth_levels=100, max_subscriptions=200)
    streams = [parse_stream(f"{s.stream}@{k}", hub.symbols) for s in symbols for k in KINDS]
    sub = _Sub()
    hub.subscribe(sub, streams[:200])
    with pytest.raises(RequestError) as refused:
        hub.subscribe(sub, streams[200:202])
    assert refused.value.code is ErrorCode.TOO_MANY_SUBSCRIPTIONS and len(sub.streams) == 200


def test_max_subscriptions_at_connect_closes_1008() -> None:
    """README: "max_subscriptions": a URL naming more streams is closed 1008 at once
    (``MarketDataServer._handler``; the hub as ``MarketDataProcess`` makes it)."""
    _block("max_subscriptions = 200")
    hub = Hub(_market()[0], depth_levels=100, max_subscriptions=2)
    conn = _Conn("/stream?streams=btc-usd@trade/btc-usd@depth/btc-usd@ticker")
    asyncio.run(_server(MarketDataConfig(max_subscriptions=2), hub)._handler(conn))  # type: ignore[arg-type]
    assert conn.closed == (1008, "3 streams, at most 2")


def test_depth_levels_per_side_at_most_5000() -> None:
    """README: "depth_levels = 100 # levels per side in a depth snapshot (at most 5,000)": a
    snapshot of a 150-level book holds 100 a side; the schema refuses 5,001 and 0."""
    _block("depth_levels = 100         # levels per side in a depth snapshot (at most 5,000)")
    state, hub = _market()
    _feed(state, hub, [level(k + 1, Side.BUY, 10_000 - k, 1) for k in range(150)])
    (snap,) = _subscribe(hub, "btc-usd@depth").data("btc-usd@depth")
    assert len(snap["bids"]) == 100 and snap["bids"][0][0] == "100.00"
    assert _convert(depth_levels=5_000).depth_levels == 5_000
    for bad in (5_001, 0):
        with pytest.raises(msgspec.ValidationError):
            _convert(depth_levels=bad)


def test_client_queue_is_each_clients_queue_then_1008() -> None:
    """README: "client_queue = 1000 # messages queued per client, then its depth compacts,
    else 1008": each ``Client``'s ``Outbox`` limit; a trade past it, nothing to compact, is
    refused."""
    _block("client_queue = 1000        # messages queued per client, then its depth compacts, else")
    assert Client(_Conn(), _server()).outbox.limit == 1_000  # type: ignore[arg-type]
    box = Outbox(1_000, _snapshot)
    for n in range(1_000):
        assert box.push(Kind.TRADE, "btc-usd@trade", b"%d" % n) is None
    assert "limit 1000" in (box.push(Kind.TRADE, "btc-usd@trade", b"x") or "")


def test_a_ticker_replaces_its_streams_queued_one_at_once() -> None:
    """README: "client_queue ... (a ticker or candle replaces its stream's queued one at once)"
    (review 110: it said messages queue "before conflation"): two tickers of one stream, far
    below 1,000, leave one queued, the newer (``Outbox.push``: at any queue length)."""
    _block("(a ticker or candle replaces its stream's queued one at once)")
    box = Outbox(MarketDataConfig().client_queue, _snapshot)
    box.push(Kind.TICKER, "btc-usd@ticker", b'{"n":1}')
    box.push(Kind.TICKER, "btc-usd@ticker", b'{"n":2}')
    assert (len(box), box.conflated) == (1, 1)


def test_snapshot_every_s_saves_the_state_with_its_positions() -> None:
    """README: "snapshot_every_s = 1.0 # state saved with its ring positions": ``Feed.pump``
    saves (``snapshots.save(state, positions)``) once ``snapshot_every_s`` passed."""
    _block("snapshot_every_s = 1.0     # state saved with its ring positions")
    saved: list[dict[str, tuple[int, int]]] = []
    snapshots: Any = SimpleNamespace(save=lambda state, positions: saved.append(positions))
    for every_s, saves in ((3_600.0, 0), (0.0, 1)):
        saved.clear()
        state, hub = _market()
        consumers: list[Any] = [ListConsumer([trade(1, 1, 10_000, 1)])]
        Feed(state, hub, consumers, snapshots=snapshots, snapshot_every_s=every_s).pump()
        assert len(saved) == saves
    assert saved == [{matcher_output("m1"): (1, 1)}]


def test_process_takes_the_blocks_settings(instance: str) -> None:
    """README's block: ``snapshot_every_s``, ``depth_levels``, ``max_subscriptions``,
    ``write_limit_bytes``, ``send_buffer_bytes`` ("0: the OS's autotuned default"),
    ``compression`` reach the feed, hub and server ``MarketDataProcess`` builds."""
    _block("send_buffer_bytes = 0      # SO_SNDBUF per connection; 0: the OS's autotuned default")
    _block('compression = "none"       # or "deflate": permessage-deflate, compressed per client')
    settings: dict[str, Any] = {"snapshot_every_s": 2.5, "depth_levels": 7}
    settings |= {"max_subscriptions": 9, "write_limit_bytes": 4_096}
    settings |= {"send_buffer_bytes": 8_192, "compression": "deflate"}
    with _ring(instance):
        default, p = _built(instance), _built(instance, **settings)
    got = [(b.server.send_buffer, b.server.compression, b.server.write_limit) for b in (default, p)]
    assert got == [(None, None, 65_536), (8_192, "deflate", 4_096)]
    assert (default.feed.snapshot_every_s, p.feed.snapshot_every_s) == (1.0, 2.5)
    assert (p.hub.depth_levels, p.hub.max_subscriptions) == (7, 9)


def test_send_buffer_bytes_is_each_connections_so_sndbuf() -> None:
    """README: "send_buffer_bytes = 0 # SO_SNDBUF per connection": set on each connection's
    socket (``MarketDataServer._handler``)."""
    _block("send_buffer_bytes = 0      # SO_SNDBUF per connection")
    options: list[tuple[int, int, int]] = []
    conn = _Conn("/stream")
    conn.transport.get_extra_info.return_value = SimpleNamespace(
        setsockopt=lambda *o: options.append(o)
    )
    asyncio.run(_server(send_buffer=8_192)._handler(conn))  # type: ignore[arg-type]
    assert options == [(socket.SOL_SOCKET, socket.SO_SNDBUF, 8_192)]


def test_write_limit_bytes_before_messages_queue_in_the_outbox() -> None:
    """README: "write_limit_bytes = 65536 # per socket, before messages queue in the
    client's outbox": ``Client.deliver`` writes straight below it, queues from it on."""
    _block("write_limit_bytes = 65536  # per socket, before messages queue in the client's outbox")
    server = _server()
    message = Message(Kind.TRADE, "btc-usd@trade", b'{"t":1}')
    for buffered, direct in ((65_535, True), (65_536, False)):
        conn = _Conn(buffered=buffered)
        client = Client(conn, server)  # type: ignore[arg-type]
        client.deliver([message], message.frame)
        assert conn.transport.write.called is direct and len(client.outbox) == (not direct)


def test_deflate_is_compressed_per_client() -> None:
    """README: ""deflate": permessage-deflate, compressed per client": a connection with an
    extension does not take the hub's shared frames (``Client._shared_frames``)."""
    _block('"deflate": permessage-deflate, compressed per client')
    plain, deflate = _Conn(), _Conn()
    deflate.protocol.extensions = [object()]
    assert Client(plain, _server())._shared_frames  # type: ignore[arg-type]
    assert not Client(deflate, _server())._shared_frames  # type: ignore[arg-type]


def test_max_connections_per_address_default_a_quarter_two_at_least() -> None:
    """README: "max_connections_per_address = 0 # one address's (0: a quarter of
    max_connections, two at least), then 503": ``MarketDataServer.per_address``."""
    _block("max_connections_per_address = 0  # one address's (0: a quarter of max_connections,")
    _block("two at least), then 503")
    for total, expected in {5_000: 1_250, 12: 3, 8: 2, 4: 2}.items():
        assert _server(MarketDataConfig(max_connections=total)).per_address == expected
    chosen = MarketDataConfig(max_connections=100, max_connections_per_address=7)
    assert _server(chosen).per_address == 7


def test_an_address_past_its_share_gets_503_naming_it() -> None:
    """README: "One address holds at most `max_connections_per_address` connections (...
    then a 503 naming it; handshakes under way do not count against it": ``_process_request``
    counts the connections admitted (``admitted``) and this one, and refuses the one past."""
    _prose("One address holds at most `max_connections_per_address` connections")
    _prose("two at least; then a 503 naming it; handshakes under way do not count against it")
    server = _server(MarketDataConfig(max_connections=8))
    upgrade = Request("/stream", Headers([("Upgrade", "websocket")]))
    answers = []
    for held in (1, 2):
        server.admitted["127.0.0.1"] = {_Conn() for _ in range(held)}  # type: ignore[misc]
        answers.append(server._process_request(_Conn(), upgrade))  # type: ignore[arg-type]
    assert answers[0] is None and answers[1] is not None and answers[1].status_code == 503
    assert answers[1].body == b"3 connections from this address open, at most 2\n"


def test_sockets_count_from_accept_a_few_past_hear_503() -> None:
    """README: "a socket counts from its accept, its handshake included (a few past
    `max_connections` still hear their 503; beyond those it is dropped at once)":
    ``max_sockets`` is ``max_connections`` and a margin of 1 to 16."""
    _prose("a socket counts from its accept, its handshake included (a few past")
    for total in (1, 8, 100, 5_000):
        margin = _server(MarketDataConfig(max_connections=total)).max_sockets - total
        assert 1 <= margin <= 16, (total, margin)


def _answered(monkeypatch: pytest.MonkeyPatch, requests: list[str]) -> tuple[_Conn, int]:
    """``requests`` at one instant (the server's clock frozen): how many were answered."""
    monkeypatch.setattr(server_module, "time", SimpleNamespace(monotonic_ns=lambda: 1_000))
    answers: list[bytes] = []
    monkeypatch.setattr(Client, "reply", lambda _, payload: answers.append(payload))
    conn = _Conn("/stream", requests)
    asyncio.run(_server()._handler(conn))  # type: ignore[arg-type]
    return conn, len(answers)


def _unsubscribe(names: list[str], n: int) -> list[str]:
    return [json.dumps({"method": "UNSUBSCRIBE", "params": names, "id": k}) for k in range(n)]


#: 20 distinct stream names: every stream of the two symbols.
TWENTY = [f"{symbol}@{kind}" for symbol in ("btc-usd", "eth-usd") for kind in KINDS]


def test_1000_requests_a_second_a_burst_of_as_many(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: "1,000 requests a second (a burst of as many) ... past any, it is closed
    with 1008 naming the limit": 1,001 at once, 1,000 answered, then 1008 naming 1000/s."""
    _prose("A feed connection may send 1,000 requests a second (a burst of as many)")
    _prose("past any, it is closed with 1008 naming the limit")
    lists = [json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": k}) for k in range(1_001)]
    conn, answered = _answered(monkeypatch, lists)
    assert MAX_REQUESTS_PER_S == answered == 1_000 and "1000/s" in TOO_MANY_REQUESTS
    assert conn.closed == (1008, TOO_MANY_REQUESTS)


def test_a_request_weighs_one_more_per_ten_distinct_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: "a request weighing one more for each ten distinct stream names it carries":
    20 distinct names weigh 3: 334 requests spend a second's 1,000 (the last on credit)."""
    _prose("a request weighing one more for each ten distinct stream names it carries")
    assert NAMES_PER_REQUEST == 10 and len(set(TWENTY)) == 20
    conn, answered = _answered(monkeypatch, _unsubscribe(TWENTY, 400))
    assert answered == (MAX_REQUESTS_PER_S - 1) // (1 + 20 // 10) + 1 == 334
    assert conn.closed == (1008, TOO_MANY_REQUESTS)


def test_a_name_repeated_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: "(a name repeated is parsed once)": ``parse_request`` keeps one of each name,
    so 1,000 requests of one name 20 times weigh 1 each: all answered, none closed."""
    _prose("(a name repeated is parsed once)")
    raw = json.dumps({"method": "SUBSCRIBE", "params": ["btc-usd@trade"] * 20, "id": 1})
    assert len(parse_request(raw, frozenset({"btc-usd"})).streams) == 1
    conn, answered = _answered(monkeypatch, _unsubscribe(["btc-usd@trade"] * 20, 1_000))
    assert answered == 1_000 and conn.closed is None


def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Calls the site makes of ``messages.<name>``, counted."""
    calls: list[int] = []
    real = getattr(messages_module, name)

    def counted(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(messages_module, name, counted)
    return calls


def test_api_depth_renders_1000_levels_once_per_book_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """README: "`/api/depth` renders a book's 1,000 best levels a side once per book version
    and cuts each answer from them" (``Site._depth``)."""
    _prose("`/api/depth` renders a book's 1,000 best levels a side once per book version")
    calls = _counting(monkeypatch, "depth_data")
    state, out = MarketState([SYMBOL]), list[Any]()
    for k in range(1_200):
        state.process(level(k + 1, Side.SELL, 10_000 + k, 1), out)
    state.flush()
    site = Site(state)

    def answer(n: int) -> Any:
        return json.loads(site.get(f"/api/depth?symbol=BTC-USD&limit={n}").body)

    assert [len(answer(n)["asks"]) for n in (5, 1_000, 17)] == [5, 1_000, 17]
    assert len(calls) == 1 and MAX_LIMIT == 1_000
    state.process(level(2_000, Side.BUY, 9_000, 1), out)
    state.flush()
    answer(5)
    assert len(calls) == 2  # a new version


def test_api_trades_and_klines_render_each_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: "`/api/trades` and `/api/klines` render each trade and each closed candle once
    (the open candle at each answer): a client asking again, at any `limit`, costs encoding,
    not rendering" (``Site``'s ``_Rendered``)."""
    _prose("`/api/trades` and `/api/klines` render each trade and each closed candle once")
    _prose("a client asking again, at any `limit`, costs encoding, not rendering")
    trades, candles = _counting(monkeypatch, "trade_data"), _counting(monkeypatch, "candle_data")
    state, out = MarketState([SYMBOL]), list[Any]()
    for k in range(5):
        state.process(trade(k + 1, k + 1, 10_000 + k, 1, ts=T0 + k * MIN), out)
    state.flush()
    site = Site(state)
    for limit in (5, 3, 5):
        site.get(f"/api/trades?symbol=BTC-USD&limit={limit}")
        site.get(f"/api/klines?symbol=BTC-USD&interval=1m&limit={limit}")
    assert len(trades) == 5  # each trade once
    assert len(candles) == 4 + 3  # the 4 closed ones once, the open one at each answer


# -- saved state, restart, failover ---------------------------------------------------------------


def test_state_saved_at_var_instance_marketdata_state_pickle(instance: str, tmp_path: Path) -> None:
    """README: "saves its state with the ring positions it covers
    (`var/<instance>/marketdata/state.pickle`, ...)": the process's ``MarketSnapshots``."""
    processes = section("The processes")
    claim(
        "(`var/<instance>/marketdata/state.pickle`, every `marketdata.snapshot_every_s`)", processes
    )
    with _ring(instance):
        p = _built(instance, str(tmp_path))
    assert p.snapshots.path == tmp_path / instance / "marketdata" / "state.pickle"
    assert p.snapshots.path == market_state_path(p.cfg)


def test_resumes_from_it_after_a_restart(instance: str, tmp_path: Path) -> None:
    """README: "and resumes from it after a restart or crash": after a process applied two
    trades and checkpointed, the next starts with them, its ring read on from there."""
    claim("and resumes from it after a restart or crash", section("The processes"))
    with _ring(instance) as ring:
        cfg = config(instance, str(tmp_path))
        producer = ring.producer()
        first = MarketDataProcess(cfg, codec=CODEC)
        producer.publish_batch([trade(1, 1, 10_000, 1), trade(2, 2, 10_100, 1)])
        drain_feed(first)
        first.feed.checkpoint()
        close_process(first)
        second = _built(instance, str(tmp_path))
        producer.close()
    assert second.state.symbols[1].tape.last_trade_id == 2 and second.consumers[0].sequence == 2


def test_failover_starts_from_the_standbys_state(tmp_path: Path) -> None:
    """README: "The promoted instance's marketdata process starts from it: the books, the
    trade tape, the 24h ticker and the candles": ``main.resume`` starts from a state saved
    without ring positions (``HotMarket.save``)."""
    claim("The promoted instance's marketdata process starts from it: the books, the trade tape")
    kept, out = MarketState([SYMBOL, OTHER]), list[Any]()
    kept.process(level(1, Side.BUY, 9_900, 2), out)
    kept.process(trade(2, 1, 10_000, 3), out)
    kept.flush()
    snapshots = MarketSnapshots(tmp_path / "state.pickle")
    snapshots.save(kept, {})
    market = resume(snapshots, MarketState([SYMBOL, OTHER]), []).symbols[1]
    ticker = market.ticker.ticker()
    assert market.tape.last_trade_id == 1 and market.book.best_bid() == (9_900, 2)
    assert ticker is not None and ticker.last == 10_000 and market.candles["1m"].current


def test_replay_mark_reseeds_books_diffs_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: "at that mark the market data sets every book that saw no change after it
    from the matcher's own state there (`procs/marketdata/reseed.py`): depth snapshots and
    diffs are whole": ``Feed.pump`` reseeds at a ``REPLAY_SOURCE`` mark, the levels reach
    a subscriber in a diff continuing its snapshot; ``Reseeder`` skips a book changed
    after the mark."""
    claim("and at that mark the market data sets every book that saw no change after it")
    claim("depth snapshots and diffs are whole from the first message")
    state, hub = _market()
    _feed(state, hub, [level(2, Side.BUY, 9_800, 1), level(7, Side.SELL, 10_300, 1, symbol=2)])
    sub = _subscribe(hub, "btc-usd@depth")
    asked: list[tuple[str, int]] = []

    def reseed(ring: str, seq: int, ts_ns: int, st: MarketState) -> list[Any]:
        asked.append((ring, seq))
        return [BookLevel(seq, ts_ns, 1, Side.BUY, 9_900, 4, 1)]

    marks: list[Any] = [ListConsumer([Heartbeat(T0, REPLAY_SOURCE, 5)])]
    Feed(state, hub, marks, reseed=reseed).pump()
    snap, diff = sub.data("btc-usd@depth")
    assert asked == [(matcher_output("m1"), 5)]
    assert (diff["U"], diff["u"], diff["b"]) == (snap["lastUpdateId"] + 1, 5, [["99.00", "0.0004"]])
    book = SimpleNamespace(levels=lambda: {(Side.BUY, 9_700): (1, 1)}, halted=False)
    fake = {"m1": SimpleNamespace(books={1: book, 2: book})}  # the matcher at the mark
    monkeypatch.setattr(reseed_module, "matchers_at", lambda *_: fake)
    reseeder = Reseeder(config("review110-reseed"), RecordCodec())
    assert {lv.symbol for lv in reseeder(matcher_output("m1"), 5, T0, state)} == {1}


def test_layout_names_the_feeds_files() -> None:
    """README "## Layout": "marketdata/ hub.py (...), server.py (websockets), static/ ...,
    main.py; its state is core/market/, saved ... by common/market_snapshots.py", and core's
    "market/ (...; the marketdata process and a standby keep one)": each file is there."""
    layout = section("Layout")
    claim("marketdata/ hub.py (subscriptions and slow consumers), server.py (websockets),", layout)
    claim("saved with the ring positions it covers by common/market_snapshots.py", layout)
    claim("the marketdata process and a standby keep one)", layout)
    procs = ROOT / "procs"
    names = ("hub", "server", "web", "streams", "messages", "requests", "outbox", "feed")
    for name in (*names, "reseed", "main"):
        assert (procs / "marketdata" / f"{name}.py").is_file(), name
    assert (procs / "marketdata" / "static" / "index.html").is_file()
    assert (procs / "common" / "market_snapshots.py").is_file()
    for name in ("book", "tape", "ticker", "candles", "state"):
        assert (procs / "core" / "market" / f"{name}.py").is_file(), name
    assert "MarketState" in (procs / "replica" / "market.py").read_text()


# -- over real sockets (two tests) ----------------------------------------------------------------


def test_real_socket_endpoints_heartbeat_and_405(instance: str) -> None:
    """README: "`/stream?streams=a/b` or a bare `/stream` (then SUBSCRIBE)", the heartbeat,
    "methods other than GET and HEAD get 405": over a running feed (``rig.running``)."""
    claim("`/stream?streams=a/b` or a bare `/stream` (then SUBSCRIBE)")
    claim("methods other than GET and HEAD get 405")

    async def body() -> None:
        async with running(instance, heartbeat_s=0.1) as rig:
            async with rig.client("/stream") as bare:
                assert await bare.request("SUBSCRIBE", ["btc-usd@depth"]) == {
                    "result": None,
                    "id": 1,
                }
                snap = await bare.until(lambda m: m.get("stream") == "btc-usd@depth")
                assert snap["data"]["e"] == "depthSnapshot"
            async with rig.client("/stream?streams=btc-usd@status/eth-usd@status") as both:
                seen: set[str] = set()
                while len(seen) < 2:
                    seen.add(
                        (await both.until(lambda m: "status" in m.get("stream", "")))["stream"]
                    )
                assert seen == {"btc-usd@status", "eth-usd@status"}
                beat = await both.until(lambda m: m.get("stream") == "heartbeat", timeout=2)
                assert beat["data"]["e"] == "heartbeat"
            reader, writer = await asyncio.open_connection("127.0.0.1", rig.port)
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            assert status.split()[1] == b"405", status

    asyncio.run(body())


def test_real_socket_limits(instance: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """README: "raises its open-file limit for `max_connections` at start (what does not fit is
    answered 503)" (``connections_room`` answering 1); "max_message_bytes ... the largest
    frame a client may send" (1,024: past it, 1009); pings "counted apart ...; past any,
    it is closed with 1008 naming the limit" (``FlowConnection``'s own bucket)."""
    _block("max_message_bytes = 65536  # the largest frame a client may send")
    _prose("and as many pings, counted apart (websockets answers a ping at once)")
    asked: list[int] = []

    def room(wanted: int) -> int:
        asked.append(wanted)
        return 1

    monkeypatch.setattr(server_module, "connections_room", room)

    async def body() -> None:
        async with running(instance, max_connections=4, max_message_bytes=1_024) as rig:
            assert asked == [4]
            async with rig.client() as first:
                with pytest.raises(InvalidStatus) as refused:
                    async with rig.client():
                        pass
                assert refused.value.response.status_code == 503
                assert b"at most 1" in refused.value.response.body
                await first.ws.send("x" * 1_025)
                with pytest.raises(ConnectionClosed) as closed:
                    await first.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            for _ in range(50):  # until the server's handler has let the first one go
                if not rig.process.server.clients:
                    break
                await asyncio.sleep(0.02)
            async with rig.client() as pinger:
                waiters: list[Any] = []
                with contextlib.suppress(ConnectionClosed):
                    for k in range(3_000):
                        waiters.append(await pinger.ws.ping(k.to_bytes(4, "big")))
                with contextlib.suppress(ConnectionClosed, TimeoutError):
                    await asyncio.wait_for(pinger.ws.wait_closed(), 5)
                for waiter in waiters:
                    waiter.cancel()
                assert pinger.ws.state is State.CLOSED and "1000/s" in TOO_MANY_PINGS
                assert (pinger.ws.close_code, pinger.ws.close_reason) == (1008, TOO_MANY_PINGS)

    asyncio.run(body())
