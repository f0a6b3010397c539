"""Review 138, part 1 (the files a crash or a bad disk damages: ``..._fuzz2.py``): a hostile,
in-process fuzz (hypothesis) of the market-data feed's request handling: ``parse_request``,
``parse_stream``, ``Hub.check_subscribe`` / ``subscribe`` / ``unsubscribe`` and
``MarketDataServer._on_message`` on review 110's fake connection, fed random JSON and
non-JSON text and bytes, huge and nested values, odd stream names and unicode, and repeated
SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS sequences checked against a model.

Convention: each property states its invariant in its docstring and holds (a plain test,
bounded and derandomized); a fault found is pinned as a plain example of that exact input,
a strict xfail asserting the invariant, so it fails now and passes once fixed.

Faults found, both fixed since (an exception escaped where the module promises an error answer):

1. A method nested 2-3 levels short of the recursion limit (``{"method": [[[...]]]}``, the
   depth where msgspec's decoder still succeeds) makes ``shown`` (requests.py:126,
   ``repr``) raise ``RecursionError`` out of ``parse_request`` and ``_on_message``: the
   connection's handler dies (websockets closes it 1011) instead of an INVALID_REQUEST answer.
2. A ``str`` holding a lone surrogate (``"\\ud800"``) makes ``parse_request`` raise
   ``UnicodeEncodeError`` (msgspec encodes the str; requests.py:62 catches only
   ``DecodeError``). websockets refuses such text itself (1007), so only a caller handing
   ``parse_request`` its own str reaches it.

Hub state stayed consistent (a client is in ``_subs[s]`` iff ``s`` is in its ``streams``, in
exactly the group of its set) and never past ``max_subscriptions`` in every sequence tried.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procs.core.market.candles import INTERVALS
from procs.core.market.state import MarketState
from procs.marketdata.hub import Hub
from procs.marketdata.requests import MAX_PARAMS, ErrorCode, RequestError, parse_request
from procs.marketdata.server import Client, MarketDataServer
from procs.marketdata.streams import Kind, StreamError, parse_stream
from tests.unit.marketdata.events import OTHER, SYMBOL
from tests.unit.marketdata.test_review110_readme_feed import _client, _Conn, _server
from tests.unit.marketdata.test_review118_feed_docstrings2 import _drain

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SYMBOLS = frozenset({"btc-usd", "eth-usd"})
MAX_SUBS = 4
VALID = [
    f"{symbol}@{kind}"
    for symbol in sorted(SYMBOLS)
    for kind in ("trade", "depth", "ticker", "status", *(f"kline_{i}" for i in INTERVALS))
]
INVALID = [
    "BTC-USD@trade", "btc-usd@heartbeat", "btc-usd@kline", "btc-usd@kline_7m", "btc-usd@",
    "@trade", "btc-usd", "", "btc-usd@trade ", " btc-usd@trade", "btc-usd@@trade",
    "\uff42tc-usd@trade", "btc-usd@tradé", "btc-usd@trade\x00", "btc-usd@" + "x" * 60,
    "btc-usd@kline_" + "1" * 70, "\u202ebtc-usd@trade", "btc-usd@TRADE", "btc\u2010usd@trade",
]  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)
names = st.sampled_from(VALID + INVALID) | st.text(max_size=80)
request_ids = st.none() | st.integers() | st.text(max_size=20) | json_values
methods = st.sampled_from(["SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS"]) | json_values


@st.composite
def requests(draw: st.DrawFn) -> str | bytes:
    """A request as a hostile client sends it: well formed, near it, or junk."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return draw(st.text(max_size=200))
    if choice == 2:
        return json.dumps(draw(json_values))
    doc: dict[str, Any] = {"method": draw(methods)}
    if draw(st.booleans()):
        doc["params"] = draw(st.lists(names | json_values, max_size=8) | json_values)
    if draw(st.booleans()):
        doc["id"] = draw(request_ids)
    if choice == 4:
        doc.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3)))
    return json.dumps(doc)


def _hub(max_subscriptions: int = MAX_SUBS) -> Hub:
    return Hub(MarketState([SYMBOL, OTHER]), depth_levels=10, max_subscriptions=max_subscriptions)


def _connected(max_subscriptions: int = MAX_SUBS) -> tuple[MarketDataServer, Client]:
    server = _server(hub=_hub(max_subscriptions))
    return server, _client(server, _Conn())


def _answers(client: Client) -> list[dict[str, Any]]:
    """What the client's queue holds that answers a request (updates name a stream)."""
    sent = [json.loads(payload) for payload in _drain(client.outbox)]
    return [m for m in sent if "stream" not in m]


def _consistent(hub: Hub, clients: list[Client]) -> None:
    """A client is in ``_subs[s]`` iff ``s`` is in its ``streams``; it is in the group of its
    set and no other; the group index agrees with the groups; none is past the limit."""
    for client in clients:
        assert len(client.streams) <= hub.max_subscriptions
        for name in client.streams:
            assert client in hub._subs.get(name, {}), name
        groups = [key for key, members in hub._groups.items() if client in members]
        assert groups == ([frozenset(client.streams)] if client.streams else [])
    for name, subs in hub._subs.items():
        assert subs, name  # an emptied stream is dropped
        assert all(name in c.streams for c in subs), name
    for key, members in hub._groups.items():
        assert members and all(frozenset(c.streams) == key for c in members)
        assert all(key in hub._groups_of[name] for name in key)
    for name, keys in hub._groups_of.items():
        assert all(name in key and key in hub._groups for key in keys)


# -- parse_request and parse_stream -----------------------------------------------------------


@FUZZ
@given(raw=requests())
def test_parse_request_answers_or_refuses_never_raises_else(raw: str | bytes) -> None:
    """Invariant: ``parse_request`` returns a ``Request`` of a known method whose streams
    are distinct, parse back to themselves and number at most ``MAX_PARAMS``, or raises
    ``RequestError`` with an ``ErrorCode`` and a message of bounded length: nothing else."""
    try:
        request = parse_request(raw, SYMBOLS)
    except RequestError as exc:
        assert isinstance(exc.code, ErrorCode)
        assert len(str(exc)) < 1_000
        return
    assert request.method in ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS")
    assert len(request.streams) == len(set(request.streams)) <= MAX_PARAMS
    for stream in request.streams:
        assert parse_stream(stream.name, SYMBOLS) == stream
        assert stream.kind is not Kind.HEARTBEAT


@FUZZ
@given(name=names | json_values)
def test_parse_stream_names_round_trip_or_refuse(name: object) -> None:
    """Invariant: ``parse_stream`` gives a subscribable stream whose ``name`` is exactly the
    name given, of a configured symbol, or raises ``StreamError``: nothing else."""
    try:
        stream = parse_stream(name, SYMBOLS)
    except StreamError:
        assert name not in VALID
        return
    assert stream.name == name and stream.symbol in SYMBOLS and name in VALID


@FUZZ
@given(size=st.integers(MAX_PARAMS - 2, MAX_PARAMS + 2), name=st.sampled_from(VALID + INVALID))
def test_huge_params_are_bounded_and_a_repeated_name_is_one_stream(size: int, name: str) -> None:
    """Invariant: more than ``MAX_PARAMS`` entries are INVALID_REQUEST whatever they hold; up
    to it, a name repeated is one stream (or one refusal, charged one name)."""
    raw = json.dumps({"method": "SUBSCRIBE", "params": [name] * size, "id": 1})
    try:
        request = parse_request(raw, SYMBOLS)
    except RequestError as exc:
        if size > MAX_PARAMS:
            assert exc.code is ErrorCode.INVALID_REQUEST
        else:
            assert exc.code is ErrorCode.INVALID_STREAM and exc.names == 1
        assert exc.request_id == 1
        return
    assert size <= MAX_PARAMS and [s.name for s in request.streams] == [name]


# -- the server's _on_message and the hub ---------------------------------------------------


@FUZZ
@given(raws=st.lists(requests(), min_size=1, max_size=12))
def test_junk_gets_one_answer_each_and_the_connection_stays(raws: list[str | bytes]) -> None:
    """Invariant: every message, however malformed, gets exactly one answer (a result or an
    error with a code) and leaves the client open, within its limit, the hub consistent."""
    server, client = _connected()
    for raw in raws:
        weight = server._on_message(client, raw)
        assert 0 <= weight <= MAX_PARAMS
        [answer] = _answers(client)
        assert set(answer) in ({"result", "id"}, {"error", "id"})
        if "error" in answer:
            assert answer["error"]["code"] in set(ErrorCode)
        assert not client.closing
        _consistent(server.hub, [client])


ops = st.tuples(
    st.sampled_from(["SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS"]),
    st.lists(st.sampled_from(VALID[:8] + INVALID[:3]), max_size=6),
    st.integers(0, 3),  # which client
)


@settings(FUZZ, max_examples=300)
@given(steps=st.lists(ops, min_size=1, max_size=40))
def test_subscribe_unsubscribe_sequences_follow_the_model(
    steps: list[tuple[str, list[str], int]],
) -> None:
    """Invariant: over any sequence of requests from four clients sharing a hub, a SUBSCRIBE
    is refused whole (INVALID_STREAM for a bad name, TOO_MANY_SUBSCRIPTIONS past
    ``max_subscriptions``) or adds exactly its names; an UNSUBSCRIBE drops exactly its
    names; LIST_SUBSCRIPTIONS tells the set; each answer carries its request's id; the hub
    and every client's own set agree throughout, and none is left once all are removed."""
    server, _ = _connected()
    hub = server.hub
    clients = [_client(server, _Conn()) for _ in range(4)]
    model: list[set[str]] = [set() for _ in clients]
    for n, (method, params, who) in enumerate(steps):
        client, mine = clients[who], model[who]
        server._on_message(client, json.dumps({"method": method, "params": params, "id": n}))
        [answer] = _answers(client)
        assert answer["id"] == n
        bad = any(p not in VALID for p in params)
        if method == "LIST_SUBSCRIPTIONS":
            assert answer == {"result": sorted(mine), "id": n}
        elif not params:
            assert answer["error"]["code"] == ErrorCode.INVALID_REQUEST
        elif bad:
            assert answer["error"]["code"] == ErrorCode.INVALID_STREAM
        elif method == "UNSUBSCRIBE":
            assert answer == {"result": None, "id": n}
            mine -= set(params)
        elif len(mine | set(params)) > MAX_SUBS:
            assert answer["error"]["code"] == ErrorCode.TOO_MANY_SUBSCRIPTIONS
        else:
            assert answer == {"result": None, "id": n}
            mine |= set(params)
        assert [c.streams for c in clients] == model
        _consistent(hub, clients)
        for name in VALID[:8]:
            assert hub.subscribers(name) == sum(name in m for m in model)
    for client in clients:
        hub.remove(client)
    assert hub._subs == {} and hub._groups == {} and hub._groups_of == {}


@FUZZ
@given(
    held=st.sets(st.sampled_from(VALID), max_size=MAX_SUBS),
    asked=st.lists(st.sampled_from(VALID), max_size=12),
    limit=st.integers(0, MAX_SUBS + 2),
)
def test_check_subscribe_refuses_exactly_past_the_limit(
    held: set[str], asked: list[str], limit: int
) -> None:
    """Invariant: ``check_subscribe`` returns the asked streams the client lacks, each once,
    when those and the held ones fit ``max_subscriptions``, else raises
    TOO_MANY_SUBSCRIPTIONS; it changes nothing either way."""
    hub = _hub(max(limit, len(held)))
    hub.max_subscriptions = limit
    client = _client(_server(hub=hub), _Conn())
    client.streams = set(held)
    streams = [parse_stream(name, hub.symbols) for name in asked]
    try:
        new = hub.check_subscribe(client, streams)
    except RequestError as exc:
        assert exc.code is ErrorCode.TOO_MANY_SUBSCRIPTIONS
        assert len(held | set(asked)) > limit
    else:
        assert len(held | set(asked)) <= limit
        assert [s.name for s in new] == [n for n in dict.fromkeys(asked) if n not in held]
    assert client.streams == held and hub._subs == {}


# -- faults -------------------------------------------------------------------------------------


def _escapes(raw: str) -> str | None:
    """What escapes ``parse_request`` other than a ``RequestError``, or None."""
    try:
        parse_request(raw, SYMBOLS)
    except RequestError:
        return None
    except Exception as exc:  # what escapes is what is asserted
        return type(exc).__name__
    return None


def test_a_method_nested_just_short_of_the_limit_is_answered() -> None:
    """Invariant: a nested method value is refused with a ``RequestError``, at any depth
    (the window is two or three levels wide, where it lies depends on the stack)."""
    server, client = _connected()
    escaped = {}
    for depth in range(700, 1_001):
        raw = '{"method": ' + "[" * depth + "]" * depth + "}"
        if (what := _escapes(raw)) is not None:
            escaped[depth] = what
        try:
            server._on_message(client, raw)
        except Exception as exc:  # what escapes is what is asserted
            escaped[-depth] = type(exc).__name__  # negative: through _on_message
        _drain(client.outbox)
    assert escaped == {}


def test_a_lone_surrogate_is_invalid_json() -> None:
    """Invariant: text that is not valid JSON (here: not even UTF-8) is INVALID_JSON."""
    raws = ["\ud800", '{"method": "SUBSCRIBE", "params": ["btc-usd@trade"], "id": "\udcff"}']
    assert {raw: _escapes(raw) for raw in raws} == {raw: None for raw in raws}
