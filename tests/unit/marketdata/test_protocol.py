"""Stream names, client requests, the outbox's slow-consumer policy and the hub's fan-out,
without sockets."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from procs.common.types import Side
from procs.core.market.state import MarketState, Update
from procs.marketdata.hub import Hub, Message
from procs.marketdata.outbox import Outbox
from procs.marketdata.requests import ErrorCode, RequestError, error, parse_request, result
from procs.marketdata.streams import Kind, Stream, StreamError, parse_stream

from .events import OTHER, SYMBOL, level, trade

SYMBOLS = frozenset({"btc-usd", "eth-usd"})


def test_stream_names() -> None:
    assert parse_stream("btc-usd@trade", SYMBOLS) == Stream("btc-usd", Kind.TRADE)
    assert parse_stream("eth-usd@kline_4h", SYMBOLS).name == "eth-usd@kline_4h"
    for bad, why in [
        ("BTC-USD@trade", "unknown symbol 'BTC-USD'"),
        ("btc-usd", "is not <symbol>@<kind>"),
        ("btc-usd@book", "unknown kind 'book'"),
        ("btc-usd@kline_2m", "unknown interval '2m'"),
        ("btc-usd@kline", "kline needs an interval"),
        ("btc-usd@heartbeat", "heartbeats come to every connection"),
        (5, "must be a string, got int"),
    ]:
        with pytest.raises(StreamError, match=why):
            parse_stream(bad, SYMBOLS)


def test_requests_parse_and_errors_name_the_problem() -> None:
    r = parse_request('{"method":"SUBSCRIBE","params":["btc-usd@trade"],"id":7}', SYMBOLS)
    assert (r.method, r.streams, r.id) == ("SUBSCRIBE", (Stream("btc-usd", Kind.TRADE),), 7)
    assert parse_request('{"method":"LIST_SUBSCRIPTIONS","id":"a"}', SYMBOLS).id == "a"
    cases: list[tuple[str | bytes, ErrorCode, str]] = [
        ("{", ErrorCode.INVALID_JSON, "invalid JSON"),
        (b"{}", ErrorCode.INVALID_JSON, "binary frames"),
        ("[1]", ErrorCode.INVALID_REQUEST, "a request is a JSON object, got list"),
        ('{"method":"SUB","id":1}', ErrorCode.INVALID_REQUEST, "method 'SUB' is not one of"),
        ('{"method":"SUBSCRIBE","id":1}', ErrorCode.INVALID_REQUEST, "SUBSCRIBE needs params"),
        ('{"method":"SUBSCRIBE","params":"x","id":1}', ErrorCode.INVALID_REQUEST, "list"),
        ('{"method":"SUBSCRIBE","params":[],"id":1.5}', ErrorCode.INVALID_REQUEST, "id must"),
        ('{"method":"SUBSCRIBE","x":1,"id":1}', ErrorCode.INVALID_REQUEST, "unknown field"),
        ('{"method":"SUBSCRIBE","params":["a@b"],"id":1}', ErrorCode.INVALID_STREAM, "'a'"),
        # a number past the decoder's size names the limit (review 277's lead)
        ('{"id":%s}' % ("9" * 5000), ErrorCode.INVALID_JSON, "at most 4,300 digits"),
        ('{"id":1e400}', ErrorCode.INVALID_JSON, "at most 1.8e"),
    ]
    for raw, code, why in cases:
        with pytest.raises(RequestError, match=why) as info:
            parse_request(raw, SYMBOLS)
        assert info.value.code == code
    assert msgspec.json.decode(result(3)) == {"result": None, "id": 3}
    assert msgspec.json.decode(error(ErrorCode.INVALID_JSON, "bad", 4)) == {
        "error": {"code": 3, "msg": "bad"},
        "id": 4,
    }


def test_outbox_conflates_resnapshots_and_caps_trades() -> None:
    snapshots: list[str] = []

    def snapshot(stream: str) -> bytes:
        snapshots.append(stream)
        return b"snap"

    box = Outbox(3, snapshot)
    box.push(Kind.TICKER, "a@ticker", b"t1")
    box.push(Kind.DEPTH, "a@depth", b"d1")
    box.push(Kind.TICKER, "a@ticker", b"t2")  # replaces t1 where it stands
    box.push(Kind.DEPTH, "a@depth", b"d2")
    assert len(box) == 3 and box.conflated == 1
    assert box.push(Kind.DEPTH, "a@depth", b"d3") is None  # full: diffs -> a snapshot owed
    assert snapshots == [] and box.resnapshots == 1 and len(box) == 2
    box.settle()  # the server settles once it pushed a batch: the snapshot is rendered then
    assert snapshots == ["a@depth"]
    assert len(box) == 2
    box.push(Kind.TRADE, "a@trade", b"x1")
    reason = box.push(Kind.TRADE, "a@trade", b"x2")
    assert reason is not None and "3 messages queued, limit 3" in reason
    assert [box.pop() for _ in range(4)] == [b"t2", b"snap", b"x1", None]
    box.push(Kind.KLINE, "a@kline_1m", b"k")
    box.push_reply(b"r")
    box.discard("a@kline_1m")
    assert box.pop() == b"r" and box.pop() is None


class FakeClient:
    def __init__(self) -> None:
        self.streams: set[str] = set()
        self.got: list[tuple[str, dict[str, object]]] = []

    def deliver(self, messages: Sequence[Message], frames: bytes) -> None:
        assert frames == b"".join(m.frame for m in messages)
        for message in messages:
            msg = msgspec.json.decode(message.payload)
            assert msg["stream"] == message.stream
            assert message.frame.endswith(message.payload)
            self.got.append((message.stream, msg["data"]))

    def deliver_snapshot(self, stream: str, payload: bytes) -> None:
        message = Message(Kind.DEPTH, stream, payload)
        self.deliver((message,), message.frame)


def test_hub_fans_out_rendered_updates_and_starts_streams_with_state() -> None:
    state = MarketState([SYMBOL, OTHER])
    hub = Hub(state, depth_levels=10, max_subscriptions=3)
    out: list[Update] = []
    for event in [level(1, Side.SELL, 10_000, 5), trade(2, 1, 10_000, 12_345)]:
        state.process(event, out)
    hub.publish(state.flush())
    assert hub.published == 0  # nobody listens: nothing rendered
    a, b = FakeClient(), FakeClient()
    streams = [parse_stream(n, SYMBOLS) for n in ("btc-usd@depth", "btc-usd@ticker")]
    hub.subscribe(a, [*streams, parse_stream("btc-usd@kline_1m", SYMBOLS)])
    snap = a.got[0][1]
    assert (snap["e"], snap["lastUpdateId"], snap["asks"]) == (
        "depthSnapshot",
        1,
        [["100.00", "0.0005"]],
    )
    ticker = a.got[1][1]
    assert (ticker["c"], ticker["v"], ticker["q"], ticker["P"]) == (
        "100.00",
        "1.2345",
        "123.450000",
        "0.00",
    )
    assert a.got[2][1]["k"]["c"] == "100.00"  # type: ignore[index]
    with pytest.raises(RequestError, match="4 subscriptions requested, at most 3"):
        hub.subscribe(a, [parse_stream("btc-usd@trade", SYMBOLS)])
    hub.subscribe(b, [parse_stream("btc-usd@trade", SYMBOLS), streams[0]])
    out = []
    for event in [trade(3, 2, 10_100, 1, aggressor=Side.SELL), level(3, Side.SELL, 10_000, 4)]:
        state.process(event, out)
    hub.publish(out + state.flush())
    (t,) = [d for s, d in b.got if s == "btc-usd@trade"]
    assert (t["p"], t["q"], t["t"], t["m"], t["u"]) == ("101.00", "0.0001", 2, True, 3)
    diffs = [d for s, d in a.got if s == "btc-usd@depth"][1:]
    assert [(d["U"], d["u"], d["a"]) for d in diffs] == [(2, 3, [["100.00", "0.0004"]])]
    hub.unsubscribe(a, streams)
    hub.remove(b)
    assert a.streams == {"btc-usd@kline_1m"} and hub.subscribers("btc-usd@depth") == 0


def test_hub_hands_each_subscriber_a_batch_once_joined_per_group() -> None:
    calls: list[bytes] = []

    class Counting(FakeClient):
        def deliver(self, messages: Sequence[Message], frames: bytes) -> None:
            calls.append(frames)
            super().deliver(messages, frames)

    state = MarketState([SYMBOL, OTHER])
    hub = Hub(state, depth_levels=10, max_subscriptions=5)
    trades_only, both, also_both = Counting(), Counting(), Counting()
    names = ("btc-usd@trade", "btc-usd@depth")
    hub.subscribe(trades_only, [parse_stream(names[0], SYMBOLS)])
    for c in (both, also_both):
        hub.subscribe(c, [parse_stream(n, SYMBOLS) for n in names])
    for c in (trades_only, both, also_both):
        c.got.clear()
    calls.clear()
    out: list[Update] = []
    for event in [level(1, Side.SELL, 10_000, 5), trade(2, 1, 10_000, 1), trade(3, 2, 10_000, 1)]:
        state.process(event, out)
    hub.publish(out + state.flush())
    assert len(calls) == 3  # one call per subscriber for the whole batch
    assert [s for s, _ in trades_only.got] == ["btc-usd@trade"] * 2
    assert [s for s, _ in both.got] == ["btc-usd@trade"] * 2 + ["btc-usd@depth"]
    assert calls[1] is calls[2]  # joined once for the group: the same bytes to each
    hub.unsubscribe(both, [parse_stream(names[1], SYMBOLS)])
    both.got.clear()
    out = []
    state.process(trade(4, 3, 10_000, 1), out)
    hub.publish(out)
    assert [s for s, _ in both.got] == ["btc-usd@trade"]
    assert [s for s, _ in also_both.got][-1] == "btc-usd@trade"
