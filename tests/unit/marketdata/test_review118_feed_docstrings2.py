"""Review 118, part 2 (convention and the six disagreements: ``..._docstrings.py``): the
docstrings of ``feed.py``, ``outbox.py``, ``server.py``, ``requests.py``, ``streams.py``,
``web.py``, ``reseed.py`` and ``procs/common/market_snapshots.py`` held to the code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import Mock

import pytest

from config.edges import MarketDataConfig
from procs.common import market_snapshots as snapshots_mod
from procs.common.market_snapshots import MarketSnapshots
from procs.common.record_codec import RecordCodec
from procs.common.records import BookLevel, Heartbeat, Record, SymbolStatus
from procs.common.topology import REPLAY_SOURCE, matcher_output
from procs.common.types import AdminAction, Side, TradingStatus
from procs.core.market.state import MarketState
from procs.marketdata import connection as connection_mod
from procs.marketdata import feed as feed_mod
from procs.marketdata import outbox as outbox_mod
from procs.marketdata import requests as requests_mod
from procs.marketdata import reseed as reseed_mod
from procs.marketdata import server as server_mod
from procs.marketdata import streams as streams_mod
from procs.marketdata import web as web_mod
from procs.marketdata.connection import POLICY_VIOLATION, FlowConnection
from procs.marketdata.feed import Feed, _last_seq_start
from procs.marketdata.hub import Message
from procs.marketdata.outbox import Outbox
from procs.marketdata.requests import ErrorCode, RequestError, parse_request, shown
from procs.marketdata.reseed import Reseeder, level_changes
from procs.marketdata.streams import Kind, StreamError, parse_stream
from procs.marketdata.web import MAX_LIMIT, Site, split_target

from .events import MIN, OTHER, SYMBOL, T0, level, trade
from .feed_fakes import ListConsumer, NullHub
from .rig import config
from .test_review110_readme_feed import _client, _Conn, _feed, _market, _server, _subscribe
from .test_review118_feed_docstrings import _depth, _says

ROOT = Path(__file__).parents[3]
BTC = frozenset({"btc-usd"})
D, T, TK, KL = Kind.DEPTH, Kind.TRADE, Kind.TICKER, Kind.KLINE


class _Committing(ListConsumer):  # a list consumer that records its commits
    def __init__(self, events: list[Any], name: str = matcher_output("m1")) -> None:
        super().__init__(events, name)
        self.commits: list[int] = []

    def commit(self, at: int) -> None:
        self.commits.append(at)


def _fed(state: Any, hub: Any, *rings: Any, **kw: Any) -> Feed:
    """A feed over ``rings`` whose clock never ticks (event time alone)."""
    feed = Feed(state, hub, rings, **kw)
    feed._next_clock = float("inf")
    return feed


# -- procs/marketdata/feed.py --------------------------------------------------------------


def test_a_seq_cut_by_a_full_read_waits_and_leaves_in_one_diff() -> None:
    """``Feed._held``: "one command's book changes must reach the state in one batch";
    ``_applied``: "(held events are not in)" the commit."""
    _says(feed_mod, "one command's book changes must reach the state in one batch, so that")
    _says(feed_mod, "(held events are not in)")
    state, hub = _market()
    sub = _subscribe(hub, "btc-usd@depth")
    events: list[Record] = [level(1, Side.BUY, 9_000, 1)]
    events += [level(2, Side.BUY, 9_000 + k, 1) for k in range(1, 4)] + [level(3, Side.SELL, 1, 1)]
    ring = _Committing(events)
    feed = _fed(state, hub, ring, batch=3, snapshot_every_events=1)
    assert feed.pump() == 1 and ring.commits == [1]  # seq 2's two held back
    assert feed.pump() == 4 and ring.commits == [1, 5]
    assert _depth(sub) == [("S", 0, None), ("D", 1, 1), ("D", 2, 3)]
    assert _last_seq_start(events[1:4]) == 0  # "0 when that is the whole list"
    assert _last_seq_start([*events[:2], Heartbeat(T0, 1, 1)]) == 0  # "no seq"


def test_a_behind_rings_symbols_wait_for_the_clock() -> None:
    """feed.py: "while a ring is behind (a read came back full) its symbols wait for it
    (``ring_symbols``)"; ``_held_symbols``: "None: every one" (a ring it does not know)."""
    _says(feed_mod, "while a ring is behind (a read came back full) its symbols wait for it")
    _says(feed_mod, "The symbols the wall clock must not move while ``behind`` lag; None: every")
    for known, rolled in (({"a": [1], "b": [2]}, [False, True]), ({"b": [2]}, [False, False])):
        state, hub = _market()
        a = ListConsumer([trade(k, k, 10_000, 1) for k in (1, 2)], name="a")
        b = ListConsumer([trade(3, 1, 2_000, 1, symbol=2)], name="b")
        Feed(state, hub, [a, b], batch=2, ring_symbols=known).pump()  # type: ignore[list-item]
        current: list[Any] = [state.symbols[s].candles["1m"].current for s in (1, 2)]
        got = [candle.open_ns > T0 for candle in current]
        assert got == rolled, known


def test_the_wall_clock_is_fed_clock_lag_s_late() -> None:
    """feed.py: "The wall clock is fed ``clock_lag_s`` late"."""
    _says(feed_mod, "The wall clock is fed ``clock_lag_s`` late")
    state, hub = _market()
    before = feed_mod.time.time_ns()  # type: ignore[attr-defined]
    Feed(state, hub, [ListConsumer([])], clock_lag_s=3.0).pump()  # type: ignore[list-item]
    after = feed_mod.time.time_ns()  # type: ignore[attr-defined]
    assert before - 3 * 10**9 <= state.now_ns <= after - 3 * 10**9


def test_checkpoint_every_n_events_a_failed_write_commits_anyway(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """feed.py: "every ``snapshot_every_s`` or after ``snapshot_every_events`` events,
    whichever comes first"; ``checkpoint``: "A failed write is logged and the positions
    committed all the same"; nothing uncommitted, no checkpoint."""
    _says(feed_mod, "or after ``snapshot_every_events`` events, whichever comes first")
    _says(feed_mod, "A failed write is logged and the positions committed all the same")
    saved: list[Any] = []

    def save(state: MarketState, positions: dict[str, tuple[int, int]]) -> int:
        saved.append(positions)
        raise OSError("disk full")

    ring = _Committing([trade(k, k, 10_000, 1) for k in (1, 2)])
    feed = _fed(*_market(), ring, snapshots=SimpleNamespace(save=save), snapshot_every_events=3)
    feed._next_snapshot = float("inf")  # snapshot_every_s never due
    counts = [feed.pump()]
    with caplog.at_level(logging.ERROR, "ringex.marketdata"):
        for more in ([3, 4], [5]):
            ring.events += [trade(k, k, 10_000, 1) for k in more]
            counts.append(feed.pump())
    assert counts == [2, 2, 1] and ring.commits == [4]
    assert saved == [{matcher_output("m1"): (1, 4)}] and "not saved (disk full)" in caplog.text
    bare = _Committing([trade(1, 1, 10_000, 1)])
    timed = _fed(*_market(), bare, snapshot_every_s=0.0)
    timed.pump()
    timed.pump()  # due, but nothing uncommitted: no checkpoint
    assert bare.commits == [1]


def test_idle_backoff_and_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    """feed.py: "backing off from ``min_idle_s`` to ``max_idle_s``"; "it waits ``linger x d``
    (at most ``max_linger_s``)" (``Feed.run``, its clock and sleep faked)."""
    _says(feed_mod, "backing off from ``min_idle_s`` to ``max_idle_s``")
    _says(feed_mod, "it waits ``linger x d`` (at most ``max_linger_s``)")
    clock, slept, stop = [0.0], list[float](), asyncio.Event()
    pumps = iter([(0, 0.0)] * 4 + [(7, 0.002), (0, 0.0), (9, 0.5)])

    def pump() -> int:
        count, took = next(pumps, (0, 0.0))
        clock[0] += took
        return count

    async def sleep(s: float) -> None:
        slept.append(round(s, 6))
        if len(slept) == 7:
            stop.set()

    feed = Feed(*_market(), [], min_idle_s=0.001, max_idle_s=0.004, linger=2.0, max_linger_s=0.01)
    monkeypatch.setattr(feed_mod, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(feed_mod, "asyncio", SimpleNamespace(sleep=sleep))
    monkeypatch.setattr(feed, "pump", pump)
    asyncio.run(feed.run(stop))
    assert slept == [0.001, 0.002, 0.004, 0.004, 0.004, 0.001, 0.01]


def test_a_replay_mark_asks_reseed_for_the_missed_levels() -> None:
    """``Reseed``: "(ring, mark's seq, mark's ts_ns, state) -> the book levels (and symbol
    status) the state missed", asked at a mark from ``REPLAY_SOURCE`` only."""
    _says(feed_mod, "(ring, mark's seq, mark's ts_ns, state) -> the book levels (and symbol")
    asked: list[tuple[str, int, int]] = []

    def reseed(ring: str, seq: int, ts_ns: int, st: MarketState) -> list[Any]:
        asked.append((ring, seq, ts_ns))
        return [SymbolStatus(seq, ts_ns, 1, AdminAction.HALT, TradingStatus.HALTED)]

    state, hub = _market()
    marks = [Heartbeat(T0, 1, 4), Heartbeat(T0 + 1, REPLAY_SOURCE, 5)]
    _fed(state, hub, ListConsumer(marks, name="r"), reseed=reseed).pump()  # type: ignore[arg-type]
    assert asked == [("r", 5, T0 + 1)] and state.symbols[1].status.seq == 5


def test_the_saved_state_module_it_names_exists() -> None:
    """feed.py: "``checkpoint`` writes the state ..., then commits them
    (``procs/common/market_snapshots.py``)" (review 118: it named a snapshot.py)."""
    _says(feed_mod, "then commits them (``procs/common/market_snapshots.py``)")
    assert (ROOT / "procs" / "common" / "market_snapshots.py").is_file()


def test_a_restart_from_a_checkpoint_resumes_without_a_gap(tmp_path: Path) -> None:
    """market_snapshots.py: "A restart loads the state and reads on from the positions: the
    same path as a crash": a checkpoint with a seq held back, a crash, a restart from it give
    the state of one uninterrupted run; "One of another symbol set keeps the symbols the
    config still lists as they were" (review 226: it was ignored whole)."""
    _says(snapshots_mod, "A restart loads the state and reads on from the positions: the same")
    _says(snapshots_mod, "One of another symbol set keeps the symbols the config still lists")
    events: list[Record] = []
    for k in range(1, 9):
        events += [level(k, Side.BUY, 9_000 + j, k) for j in range(3)]
        events.append(trade(k, k, 10_000 + k, 1, ts=T0 + k * MIN // 3))
    snaps = MarketSnapshots(tmp_path / "state.pickle")
    first = _Committing(events)
    crashed = _fed(*_market(), first, batch=5, snapshots=snaps)
    for _ in range(3):
        crashed.pump()
    crashed.checkpoint()
    crashed.pump()  # applied after the write: lost in the crash
    one = snaps.load(MarketState([SYMBOL]))  # saved for two symbols: the one listed kept
    assert one is not None and list(one.state.symbols) == [SYMBOL.id]
    assert one.state.symbols[SYMBOL.id].book.levels()
    loaded = snaps.load(_market()[0])
    assert loaded is not None
    (position,) = [at for _, at in loaded.positions.values()]
    assert position == first.commits[-1] < first.sequence
    again = ListConsumer(events)
    again.sequence = position
    resumed = _fed(loaded.state, NullHub(), again, batch=5)
    whole = _fed(_market()[0], NullHub(), ListConsumer(events), batch=5)
    while resumed.pump() + whole.pump():
        pass
    a, b = resumed.state.symbols[1], whole.state.symbols[1]
    assert a.book.levels() == b.book.levels() and a.book.last_update_id == 8
    assert [t.trade_id for t in a.tape.recent(100)] == list(range(1, 9))
    assert pickle.dumps(a.candles["1m"].history(10)) == pickle.dumps(b.candles["1m"].history(10))
    (tmp_path / "state.pickle").write_bytes(b"torn")
    assert snaps.load(MarketState([SYMBOL, OTHER])) is None


# -- procs/marketdata/outbox.py ------------------------------------------------------------


def _box(limit: int, *pushes: tuple[Kind, str, bytes]) -> Outbox:
    box = Outbox(limit, lambda stream: f"snap {stream}".encode())
    for kind, stream, payload in pushes:
        assert box.push(kind, stream, payload) is None
    return box


def _drain(box: Outbox) -> list[bytes]:
    return list(iter(box.pop, None))


def test_conflation_in_place_at_any_length_a_final_never_replaced() -> None:
    """outbox.py: "a queued message of the same stream is replaced in place by the newer one
    ..., but a final one (a candle's close) is never replaced: the next value queues behind
    it"; "Conflation applies at any queue length"."""
    _says(outbox_mod, "but a final one (a candle's close) is never replaced: the next value")
    _says(outbox_mod, "Conflation applies at any queue length")
    box = _box(10, (TK, "x@ticker", b"t1"), (T, "x@trade", b"tr"), (TK, "x@ticker", b"t2"))
    box.push(KL, "x@kline_1m", b"k1")
    box.push(KL, "x@kline_1m", b"k1 closed", final=True)
    box.push(KL, "x@kline_1m", b"k2")
    box.push(KL, "x@kline_1m", b"k2'")
    assert _drain(box) == [b"t2", b"tr", b"k1 closed", b"k2'"] and box.conflated == 3


def test_a_depth_diff_past_the_limit_owes_a_snapshot_after_the_batch() -> None:
    """outbox.py: "a depth diff drops that stream's queued diffs and owes a fresh snapshot
    instead"; ``settle`` queues it "after everything pushed before"; "A diff of a stream
    that owes one is dropped"; ``__len__``: "an owed snapshot counted"."""
    _says(outbox_mod, "a depth diff drops that stream's queued diffs and owes a fresh snapshot")
    _says(outbox_mod, "A diff of a stream that owes one is dropped: the snapshot will hold it.")
    box = _box(3, (D, "x@depth", b"d1"), (D, "x@depth", b"d2"), (T, "x@t", b"tr1"))
    assert box.push(D, "x@depth", b"d3") is None and len(box) == 2  # one owed counts
    assert box.push(D, "x@depth", b"d4") is None
    box.push(T, "x@t", b"tr2")
    box.settle()
    assert _drain(box) == [b"tr1", b"tr2", b"snap x@depth"] and box.resnapshots == 1


def test_a_trade_compacts_depth_streams_then_overflows() -> None:
    """outbox.py: "first every depth stream with more than one message queued is compacted
    ...; if that frees no room, ``push`` returns an overflow reason"."""
    _says(outbox_mod, "first every depth stream with more than one message queued is compacted")
    box = _box(4, (D, "a@depth", b"a1"), (D, "b@depth", b"b1"), (D, "b@depth", b"b2"))
    box.push(T, "a@t", b"t1")
    assert box.push(T, "a@t", b"t2") is None
    assert _drain(box) == [b"a1", b"t1", b"t2", b"snap b@depth"]
    full = _box(2, (T, "a@t", b"t1"), (D, "a@depth", b"a1"))
    reason = full.push(T, "a@t", b"t2")
    assert reason is not None and "trade stream a@t cannot be conflated" in reason


def test_status_and_snapshots_never_refused_replies_after_compaction() -> None:
    """outbox.py: a status is "queued whole, never conflated nor refused"; ``push_snapshot``
    "never refused, it restarts the stream", "newer than any owed"; ``push_reply``: "closed
    the same way ... after the same compaction"; ``discard``: "Forget what is queued"."""
    _says(outbox_mod, "queued whole, never conflated nor refused")
    _says(outbox_mod, "Queue a depth snapshot (on subscribe): never refused, it restarts")
    box = _box(2, (T, "a@t", b"t1"), (T, "a@t", b"t2"), (Kind.STATUS, "a@status", b"s1"))
    assert box.push(Kind.STATUS, "a@status", b"s2") is None
    box.push_snapshot("a@depth", b"snap0")
    assert len(box) == 5 and box.push_reply(b"r") is not None
    assert _drain(box) == [b"t1", b"t2", b"s1", b"s2", b"snap0"]
    room = _box(3, (D, "a@depth", b"a1"), (D, "a@depth", b"a2"), (T, "a@t", b"t1"))
    assert room.push_reply(b"r") is None
    assert _drain(room) == [b"t1", b"r", b"snap a@depth"]
    owed = _box(2, (T, "a@t", b"t1"), (D, "a@depth", b"d1"), (D, "a@depth", b"d2"))
    owed.push_snapshot("a@depth", b"fresh")
    owed.push(TK, "a@ticker", b"tk")
    owed.discard("a@ticker")
    assert _drain(owed) == [b"t1", b"fresh"]
    with pytest.raises(ValueError):
        Outbox(0, lambda s: b"")


# -- procs/marketdata/server.py ------------------------------------------------------------


def test_a_full_queues_snapshot_goes_after_the_batch_it_shows() -> None:
    """``Client.deliver``: "a snapshot a full queue owes goes after the batch it shows": a
    slow client gets every trade, a snapshot after its batch's, the next diffs continuing."""
    _says(server_mod, "a snapshot a full queue owes goes after the batch it shows")
    state, hub = _market()
    client = _client(_server(MarketDataConfig(client_queue=16), hub), _Conn())
    names = ("btc-usd@depth", "btc-usd@trade")
    hub.subscribe(client, [parse_stream(n, hub.symbols) for n in names])
    for k in range(1, 11):
        _feed(state, hub, [trade(k, k, 10_000, 1), level(k, Side.BUY, 9_000 + k, 1)])
    sent = [m["data"] for m in map(json.loads, _drain(client.outbox))]
    assert not client.closing and client.outbox.resnapshots == 1
    assert [d["t"] for d in sent if d["e"] == "trade"] == list(range(1, 11))
    (at,) = [k for k, d in enumerate(sent) if d["e"] == "depthSnapshot" and d["lastUpdateId"]]
    last = sent[at]["lastUpdateId"]
    assert [d["t"] for d in sent[:at] if d["e"] == "trade"][-1] == last  # after its batch
    diffs = [(d["U"], d["u"]) for d in sent[at:] if d["e"] == "depthUpdate"]
    assert diffs == [(u, u) for u in range(last + 1, 11)]


def test_a_slow_consumer_is_closed_1008_with_a_reason_of_123_bytes() -> None:
    """outbox.py: "the server closes the connection (1008, policy violation) with it";
    ``close_slow``: "A close reason is at most 123 bytes (RFC 6455)", ``slow_close_s``."""
    _says(server_mod, "A close reason is at most 123 bytes (RFC 6455).")
    server, conn = _server(MarketDataConfig(client_queue=16), ping_interval_s=30.0), _Conn()

    async def run() -> None:
        client = _client(server, conn)
        for k in range(17):
            message = Message(T, "btc-usd@trade" + "x" * 150, b"%d" % k)
            client.deliver([message], message.frame)
        await asyncio.sleep(0.01)

    asyncio.run(run())
    assert conn.closed is not None and conn.closed[0] == POLICY_VIOLATION == 1008
    assert len(conn.closed[1].encode()) == 123 and conn.close_timeout == server.slow_close_s == 60


def test_a_socket_that_takes_nothing_is_aborted() -> None:
    """``Client.sender``: "A socket that takes nothing for ``stall_s`` ... is aborted";
    ``_close_within``: "or drop the socket when that takes longer than ``limit_s``"."""
    _says(server_mod, "A socket that takes nothing for ``stall_s`` (a peer that stopped")
    _says(server_mod, "Close with 1008, or drop the socket when that takes longer than")
    server, conn, other = _server(ping_interval_s=0.005), _Conn(), _Conn()
    conn.hangs = other.hangs = True

    async def run() -> None:
        client = _client(server, conn)
        client.outbox.push_reply(b'{"id":1}')
        await asyncio.wait_for(client.sender(), 1.0)
        await _client(server, other)._close_within("why", 0.01)

    asyncio.run(run())
    assert conn.transport.abort.called and other.transport.abort.called and server.stalled == 2


def test_a_slow_consumer_gets_slow_close_s_to_read_its_close() -> None:
    """``stall_s``: "a slow consumer closed with 1008 gets ``slow_close_s`` (as long, 2 s at
    least; 10 s without pings)" (review 118: it said ``stall_s``)."""
    _says(server_mod, "consumer closed with 1008 gets ``slow_close_s`` (as long, 2 s at least;")
    assert _server(ping_interval_s=0.25).slow_close_s == 2.0
    assert _server(ping_interval_s=20.0).slow_close_s == 40.0


def test_per_address_two_at_least_max_connections_at_most() -> None:
    """``per_address``: "else a quarter of ``max_connections``, two at least, and never more
    than ``max_connections``" (review 118: the cap was unsaid)."""
    _says(server_mod, "two at least, and never more than ``max_connections``)")
    got = {n: _server(MarketDataConfig(max_connections=n)).per_address for n in (1, 8, 100)}
    assert got == {1: 1, 8: 2, 100: 25}


def test_malformed_requests_get_an_error_the_connection_stays_open() -> None:
    """requests.py: "A malformed request is answered with an error naming the problem; the
    connection stays open", ``{"id": N, "error": {"code": C, "msg": "..."}}``; SUBSCRIBE:
    "the answer first, then the snapshots"; UNSUBSCRIBE forgets what is queued."""
    _says(requests_mod, "A malformed request is answered with an error naming the problem")
    _says(server_mod, "# the answer first, then the snapshots")
    server = _server()
    client = _client(server, _Conn())
    raw: list[str | bytes] = [b"\x00", "{", "[1]"]
    raw += ['{"method": "SUBSCRIBE", "params": ["btc-usd@nope"], "id": 7}']
    raw += ['{"method": "SUBSCRIBE", "params": ["btc-usd@depth", "btc-usd@depth"], "id": 8}']
    for message in raw:
        server._on_message(client, message)
    got = [json.loads(p) for p in _drain(client.outbox)]
    codes = [m["error"]["code"] for m in got[:4]]
    assert codes == [ErrorCode.INVALID_JSON] * 2 + [ErrorCode.INVALID_REQUEST, 2]
    assert got[3]["id"] == 7 and "unknown kind 'nope'" in got[3]["error"]["msg"]
    assert got[4] == {"result": None, "id": 8} and got[5]["data"]["e"] == "depthSnapshot"
    assert len(got) == 6 and not client.closing and client.streams == {"btc-usd@depth"}
    client.outbox.push(TK, "btc-usd@ticker", b"queued")
    client.streams.add("btc-usd@ticker")
    server._on_message(client, '{"method": "UNSUBSCRIBE", "params": ["btc-usd@ticker"]}')
    assert _drain(client.outbox) == [b'{"result":null,"id":null}']


def test_on_message_returns_the_requests_weight() -> None:
    """``_on_message``: "returns its weight: the distinct stream names it carried (parsed), 1
    for a ``LIST_SUBSCRIPTIONS``" (review 118: the 1 was unsaid)."""
    _says(server_mod, "the distinct stream names it carried (parsed), 1 for a ``LIST_SUBSCRIP")
    server = _server()
    client = _client(server, _Conn())
    twice = '{"method": "SUBSCRIBE", "params": ["btc-usd@trade", "btc-usd@trade"]}'
    assert server._on_message(client, twice) == 1
    assert server._on_message(client, '{"method": "LIST_SUBSCRIPTIONS"}') == 1


def test_reading_pauses_while_websockets_queue_is_full() -> None:
    """``FlowConnection``: "Reading pauses while the transport's writes are paused, as well
    as while websockets' own queue is full"."""
    _says(connection_mod, "as well as while websockets' own queue is full")
    conn = FlowConnection.__new__(FlowConnection)
    fake = Mock(**{"is_closing.return_value": False})
    conn.__dict__.update(transport=fake, _queue_full=False, _writes_full=False)
    conn._pause_queue()
    assert fake.pause_reading.call_count == 1 and not fake.resume_reading.called
    conn._resume_queue()
    assert fake.resume_reading.call_count == 1


# -- procs/marketdata/requests.py and streams.py -------------------------------------------


def test_requests_parsed_checked_names_once_values_cut() -> None:
    """requests.py: ``ErrorCode``: "not JSON, or binary", "JSON, but not a request we know",
    "a stream name that is malformed or unknown"; "a name repeated is parsed (and
    subscribed) once"; ``shown``: "an error never reflects kilobytes back"."""
    _says(requests_mod, "a name repeated is parsed (and subscribed) once")
    _says(requests_mod, "an error never reflects kilobytes back")
    cases = {
        '{"method": "SUBSCRIBE", "params": ["btc-usd@x"]}': ErrorCode.INVALID_STREAM,
        '{"method": "SUBSCRIBE", "id": true, "params": []}': ErrorCode.INVALID_REQUEST,
        '{"method": "GET", "params": []}': ErrorCode.INVALID_REQUEST,
        '{"method": "SUBSCRIBE"}': ErrorCode.INVALID_REQUEST,
        '"x"': ErrorCode.INVALID_REQUEST,
    }
    for raw, code in cases.items():
        with pytest.raises(RequestError) as err:
            parse_request(raw, BTC)
        assert err.value.code is code, raw
    twice = '{"method":"SUBSCRIBE","params":["btc-usd@trade","btc-usd@trade"]}'
    assert [s.name for s in parse_request(twice, BTC).streams] == ["btc-usd@trade"]
    assert len(shown("x" * 5_000)) < 100 and shown("x" * 5_000).endswith("(5000 characters)")


def test_stream_names_lower_cased_heartbeat_unasked() -> None:
    """streams.py: "``<symbol>@kline_<interval>``, the symbol lower-cased ("btc-usd")";
    ``HEARTBEAT``: "the server's own, to every connection; not subscribable"."""
    _says(streams_mod, 'the symbol lower-cased ("btc-usd")')
    _says(streams_mod, "# the server's own, to every connection; not subscribable")
    assert parse_stream("btc-usd@kline_4h", BTC).name == "btc-usd@kline_4h"
    for bad in ("BTC-USD@trade", "btc-usd@heartbeat", "btc-usd@kline", "btc-usd@kline_2m", "x"):
        with pytest.raises(StreamError):
            parse_stream(bad, BTC)


# -- procs/marketdata/web.py ---------------------------------------------------------------


def test_api_limits_klines_open_last_ticker_before_a_trade() -> None:
    """web.py: ``MAX_LIMIT``: "The most rows an ``/api/*`` answer holds"; ``_klines``: "the
    open candle is the last one shown"; "the open one is rendered each answer"."""
    _says(web_mod, "The most rows an ``/api/*`` answer holds (``limit``)")
    _says(web_mod, "# the open candle is the last one shown")
    state, hub = _market()
    site = Site(state)
    assert json.loads(site.get("/api/ticker?symbol=BTC-USD").body) == {"s": "BTC-USD"}
    _feed(state, hub, [trade(k, k, 10_000 + k, 1, ts=T0 + k * MIN) for k in range(1, 5)])
    klines = json.loads(site.get("/api/klines?symbol=btc-usd&limit=2").body)
    assert [(k["c"], k["x"]) for k in klines] == [("100.03", True), ("100.04", False)]
    _feed(state, hub, [trade(5, 5, 10_100, 1, ts=T0 + 4 * MIN + 1)])
    again = json.loads(site.get("/api/klines?symbol=btc-usd&limit=2").body)
    assert again[0] == klines[0] and again[1]["c"] == "101.00"
    assert site.get(f"/api/trades?symbol=btc-usd&limit={MAX_LIMIT}").status_code == 200
    assert site.get(f"/api/trades?symbol=btc-usd&limit={MAX_LIMIT + 1}").status_code == 400


def test_every_answer_carries_the_security_headers_files_read_once(tmp_path: Path) -> None:
    """web.py: ``SECURITY_HEADERS``: "What every answer says of how a browser may use it";
    "every file is read once at start"; ``split_target``: "split at the first ``?``"."""
    _says(web_mod, "What every answer says of how a browser may use it")
    _says(web_mod, "every file is read once at start")
    _says(web_mod, "split at the first ``?``, not with ``urlsplit``, which reads a target")
    (tmp_path / "index.html").write_text("one")
    site = Site(MarketState([SYMBOL]), tmp_path)
    (tmp_path / "index.html").write_text("two")
    assert site.get("/").body == b"one" and split_target("//[x?a=1?b#f") == ("//[x", "a=1?b")
    for target in ("/", "/nope", "/api/depth?symbol=zzz", "/api/config", "//[x?"):
        headers = site.get(target).headers
        assert all(headers[name] == value for name, value in web_mod.SECURITY_HEADERS), target


def test_a_source_restored_since_starts_anew() -> None:
    """``_Rendered``: "a source restored since (a reseed) starts anew"; ``keep``: "Past twice
    the ``held`` items the source holds, forget those before ``first()``"."""
    _says(web_mod, "a source restored since (a reseed) starts anew")
    table: dict[Any, web_mod._Rendered] = {}
    source = object()
    one = web_mod._Rendered.of(table, "k", source)
    assert web_mod._Rendered.of(table, "k", source) is one
    assert web_mod._Rendered.of(table, "k", object()) is not one
    for key, kept in ((5, list(range(6))), (6, [4, 5, 6])):  # past 2 x 3: trimmed
        for k in range(key + 1):
            one.get(k, lambda k: {"k": k}, k)
        one.keep(3, lambda: 4)
        assert sorted(one.by_key) == kept


# -- procs/marketdata/reseed.py ------------------------------------------------------------


def test_level_changes_bids_then_asks_by_price() -> None:
    """``level_changes``: "(qty 0: the level is gone), bids then asks, by price"."""
    _says(reseed_mod, "(qty 0: the level is gone), bids then asks, by price")
    current = {(Side.SELL, 12): (1, 1), (Side.BUY, 9): (1, 1), (Side.BUY, 8): (2, 1)}
    target = {(Side.SELL, 11): (3, 2), (Side.BUY, 9): (1, 1), (Side.BUY, 7): (5, 1)}
    bids, asks = [(Side.BUY, 7, 5, 1), (Side.BUY, 8, 0, 0)], [(Side.SELL, 11, 3, 2)]
    assert level_changes(current, target) == [*bids, *asks, (Side.SELL, 12, 0, 0)]


def _reseeder(monkeypatch: pytest.MonkeyPatch, levels: Any, halted: bool) -> Reseeder:
    book = SimpleNamespace(levels=lambda: levels, halted=halted)
    fake = {"m1": SimpleNamespace(books={1: book, 2: book})}
    monkeypatch.setattr(reseed_mod, "matchers_at", lambda *_: fake)
    return Reseeder(config("review118-reseed"), RecordCodec())


def test_reseeder_sets_books_unchanged_since_the_mark(monkeypatch: pytest.MonkeyPatch) -> None:
    """reseed.py: "every book of the matcher's symbols that saw no change after the mark's
    seq is compared ... each level that differs becomes a ``BookLevel`` at the mark's seq";
    "A halt or resume missed the same way becomes a ``SymbolStatus``"; none for "not a
    matcher's ring, or a matcher that starts from nothing", nor a snapshot past the mark."""
    _says(reseed_mod, "each level that differs becomes a ``BookLevel`` at the mark's seq")
    _says(reseed_mod, "A halt or resume missed the same way becomes a ``SymbolStatus``")
    state, hub = _market()
    _feed(state, hub, [level(2, Side.BUY, 9_800, 1), level(9, Side.BUY, 1, 1, symbol=2)])
    reseeder = _reseeder(monkeypatch, {(Side.BUY, 9_900): (4, 1)}, halted=True)
    ring = matcher_output("m1")
    assert reseeder("elsewhere", 5, T0, state) == [] and reseeder(ring, 0, T0, state) == []
    changes = ((9_800, 0, 0), (9_900, 4, 1))
    levels = [BookLevel(5, T0 + 7, 1, Side.BUY, p, q, c) for p, q, c in changes]
    halt = SymbolStatus(5, T0 + 7, 1, AdminAction.HALT, TradingStatus.HALTED)
    assert reseeder(ring, 5, T0 + 7, state) == [*levels, halt]
    monkeypatch.setattr(reseed_mod, "matchers_at", lambda *_: None)
    assert reseeder(ring, 5, T0, state) == []  # its snapshot past the mark: books as they are


def test_a_reseeded_level_at_the_marks_own_seq_is_a_fresh_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """reseed.py: "subscribers get it in the next diff (or, where the book's last change was
    at the mark's seq itself, a fresh snapshot ...)" (review 118: the reset was unsaid)."""
    _says(reseed_mod, "at the mark's seq itself, a fresh snapshot: a change to an update")
    state, hub = _market()
    _feed(state, hub, [level(5, Side.BUY, 9_900, 1)])
    sub = _subscribe(hub, "btc-usd@depth")
    reseeder = _reseeder(monkeypatch, {(Side.BUY, 9_900): (1, 1), (Side.BUY, 9_800): (2, 1)}, False)
    _fed(state, hub, ListConsumer([Heartbeat(T0, REPLAY_SOURCE, 5)]), reseed=reseeder).pump()
    assert state.symbols[1].book.best_bid() == (9_900, 1) and len(_depth(sub)) == 2
    assert _depth(sub)[1][0] != "D"
