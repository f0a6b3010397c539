"""Review 126, part 2 (part 1, ``test_review126_rest_docstrings.py``: the edge, the order
routes, the rig, the summary): ``rest_mass_cancel.py``, ``rest_keys.py``, ``rest_params.py``,
``rest_open_orders.py``, the private stream, ``stream_slots.py``,
``deadlines.py``, ``rest_connections.py``, the fast lane, ``history.py`` (its SQL recorded,
not run), ``rest_order_state.py``, ``rest_order_log.py``, ``rest_balances.py``,
``rest_orders.py``'s queries.

Convention as part 1's: a quote anchors each claim (``_says``), a claim found right is a plain
test, a disagreement a strict xfail asserting the docstring, its fix side in the reason. Found
here, fixed since: rest_fast.py ``KEEPALIVE_S`` "(aiohttp's default)": aiohttp's is 3,630 s.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_protocol import RequestHandler

from procs.common import records as rec
from procs.common.result_codes import ResultCode
from procs.common.types import DoneReason, OrderFlag, OrdType, Side, TimeInForce
from procs.gateway import api_errors, history, rest_fast, rest_order_state, rest_params, signing
from procs.gateway.api_errors import ApiError
from procs.gateway.clordids import Generations
from procs.gateway.deadlines import Deadlines
from procs.gateway.history import History
from procs.gateway.instruments import Instruments
from procs.gateway.private_stream import PATH, PrivateStreams
from procs.gateway.rest_balances import RestBalances
from procs.gateway.rest_connections import Gate
from procs.gateway.rest_fast import FastLane
from procs.gateway.rest_keys import KeyRoutes
from procs.gateway.rest_mass_cancel import MassCancelRoute
from procs.gateway.rest_order_log import RestOrderLog
from procs.gateway.rest_order_state import LiveOrder
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_public import json_response
from procs.gateway.stream_slots import StreamSlot, StreamSlots
from procs.gateway.stream_subscriber import HEARTBEAT_S, Subscriber
from tests.unit.gateway import test_review126_rest_docstrings as one
from tests.unit.gateway.readme_rest_claims import _refused, _refused_async
from tests.unit.gateway.test_review126_rest_docstrings import Answer, _Rig

ALICE, BOB, BID, _says = one.ALICE, one.BOB, one.BID, one._says
answer, pending, placed, plain = one.answer, one.pending, one.placed, one.plain
run, signed = one.run, one.signed


def test_cancel_all_is_one_mass_cancel_of_the_keys_account_listing_what_ended(
    tmp_path: Path,
) -> None:
    """rest_mass_cancel: "in one command", "the router's verdict ... is the request's; then
    the matchers end the orders. The answer lists the orders that were open when the request
    came ... each as it stands once it has ended: normally ``CANCELED``"."""
    _says("rest_mass_cancel", 'in one command (the venues\' "cancel all"')
    _says("rest_mass_cancel", "each as it stands once it has ended: normally ``CANCELED``")
    rig = _Rig(tmp_path)
    key = rig.key()
    route = MassCancelRoute(rig.api).cancel_open_orders

    async def go() -> Answer:
        await placed(rig, key, 96)
        task = await pending(rig, route, signed(key, "DELETE", "/x", {}), rec.MassCancel)
        cmd: rec.MassCancel = rig.last(rec.MassCancel)
        assert (cmd.account, cmd.symbol) == (ALICE, 0)  # every symbol, the key's account
        head = (cmd.gateway, cmd.session, cmd.client_ref, ALICE, 1)
        rig.feed(rec.Rejected(70, 0, *head, 0, ResultCode.OK))  # the router's verdict
        await asyncio.sleep(0.01)
        rig.feed(rec.OrderDone(71, 10**18, rig.gateway, 0, 0, ALICE, 1, 96,
                           DoneReason.MASS_CANCELLED, 0, 100))  # fmt: skip
        return await task

    status, body, _ = run(go())
    assert status == 200 and [(o["orderId"], o["status"]) for o in body] == [(96, "CANCELED")]
    assert sum(isinstance(r, rec.MassCancel) for r in rig.out) == 1


def _login(rig: _Rig, user: str, password: str, remote: str, **extra: str) -> Answer:
    body = urlencode({"username": user, "password": password, **extra}).encode()
    request = plain("POST", "/k", body, remote)
    found: Answer = run(answer(rig.api, KeyRoutes(rig.api).create_key, request))
    return found


def test_wrong_passwords_are_limited_per_username_from_any_address(tmp_path: Path) -> None:
    """rest_keys: "wrong passwords per username from any address"; "a right password gives
    it back"."""
    _says("rest_keys", "wrong passwords per username from any address")
    _says("rest_keys", "every try spends one of the username's tokens, and a right password")
    rig = _Rig(tmp_path)  # failed_login_burst 2
    assert _login(rig, "ALICE", "alice-pw", "10.0.0.1")[0] == 200  # refunded
    assert _login(rig, "ALICE", "wrong", "10.0.0.2")[0] == 401
    assert _login(rig, "ALICE", "wrong", "10.0.0.3")[0] == 401
    status, body, headers = _login(rig, "ALICE", "alice-pw", "10.0.0.4")
    assert status == 429 and "wrong passwords for user 'ALICE'" in body["msg"]
    assert "Retry-After" in headers
    assert _login(rig, "BOB", "bob-pw", "10.0.0.2")[0] == 200  # another user's budget


def test_unknown_repeated_empty_and_too_many_parameters_are_refused(tmp_path: Path) -> None:
    """rest_params: "Any other is refused with UNKNOWN_PARAM (-1104)"; ``check_params``:
    "no value is empty"; ``MAX_PARAMS``; rest_body ``checked_params``: "none sent twice"."""
    _says("rest_params", "Any other is refused with UNKNOWN_PARAM (-1104)")
    _says(rest_params.check_params, "and no value is empty")
    rig = _Rig(tmp_path)
    key = rig.key()
    cases = {
        "timeinforce": ({**BID, "timeinforce": "IOC"}, -1104, "'timeinforce'"),
        "empty": ({**BID, "icebergQty": ""}, -1100, "'icebergQty' is sent empty"),
        "many": ({f"p{k}": "1" for k in range(25)}, -1101, "25 parameters, the limit is 24"),
        "long": ({**BID, "newClientOrderId": "x" * 65}, -1100, "65 characters, the limit is 64"),
    }
    for name, (params, code, words) in cases.items():
        status, body, _ = run(answer(rig.api, rig.api.new_order,
                                     signed(key, "POST", "/o", params)))  # fmt: skip
        assert (status, body["code"]) == (400, code), name
        assert words in body["msg"], (name, body)
    err = run(_refused_async(rig.api.params(plain("GET", "/o?symbol=A&symbol=B"),
                                            frozenset({"symbol"}))))  # fmt: skip
    assert err.code == api_errors.ILLEGAL_PARAM and "'symbol' is sent twice" in err.msg


def test_values_are_named_in_the_messages(tmp_path: Path) -> None:
    """rest_params: "an ``ApiError`` that names the parameter, the value and the rule it
    broke"; ``time_span``: "a start after the end is refused naming both (-1023"."""
    _says("rest_params", "an ``ApiError`` that names the parameter, the value and the rule")
    _says("rest_params", "ASCII digits, a leading '-' at most; ``int()`` alone would")
    _says(rest_params.time_span, "a start after the end is refused naming both (-1023")
    inst = Instruments(_Rig(tmp_path).cfg.symbols)
    cases = [
        ({**BID, "side": "HOLD"}, "side 'HOLD' is not one of BUY, SELL"),
        ({**BID, "symbol": "ETH-USD"}, "unknown symbol 'ETH-USD'"),
        ({**BID, "price": "1e3"}, "price '1e3' is not a decimal number"),
        ({**BID, "type": "MARKET", "timeInForce": "GTC"}, "timeInForce GTC does not apply to"),
        ({**BID, "type": "LIMIT_MAKER", "timeInForce": "IOC"}, "timeInForce IOC does not"),
        ({**BID, "stopPrice": "9.00"}, "stopPrice 9.00 applies to STOP_LOSS"),
        ({**BID, "newClientOrderId": "a b"}, "newClientOrderId 'a b' must be 1..36"),
        ({**BID, "icebergQty": "1.00"}, "icebergQty 1.00 must be below quantity 1.00"),
    ]
    for params, words in cases:
        err = _refused(lambda p=params: rest_params.new_order(p, inst))  # type: ignore[misc]
        assert err.status == 400 and words in err.msg, (params, err.msg)
    err = _refused(lambda: rest_params.time_span({"startTime": "9", "endTime": "8"}))
    assert (err.code, err.msg) == (-1023, "startTime 9 is after endTime 8")
    for t in (" 5", "+5", "1_0", "\u0663"):  # ``INTEGER``: "ASCII digits, a leading '-'"
        err = _refused(lambda t=t: rest_params.integer({"n": t}, "n", 1, 1, 9))  # type: ignore[misc]
        assert repr(t) in err.msg
    err = _refused(lambda: rest_params.order_id({"orderId": "0"}))
    assert err.msg.startswith("orderId 0 is outside 1..")


def test_open_orders_overlay_the_database_with_the_fresher_live_view(tmp_path: Path) -> None:
    """rest_open_orders: "the database's open orders of an account, overlaid with (and
    completed by) the live view, which is fresher" -- a row that says NEW for an order the
    live view saw partly filled shows the live one; one it saw end is left out; a row alone
    is shown as the row; and a pending order is not in the stream's snapshot view."""
    _says("rest_open_orders", "overlaid with (and completed by) the live view, which is fresher")
    _says("rest_open_orders", "Not in the private stream's snapshot: its NEW or REJECTED report")
    rig = _Rig(tmp_path)
    key = rig.key()
    sym = rig.cfg.symbols[0]

    def row(oid: int) -> tuple[Any, ...]:
        return (oid, ALICE, 1, 1, 1, 1, 1_000, 0, 100, 100, 0, 1, 0, 5, 5, 0, 1, 0, f"db{oid}")

    async def go() -> list[dict[str, Any]]:
        await placed(rig, key, 97)
        rig.feed(rec.Trade(80, 10**18, 3, 1, 1_000, 30, Side.SELL, 97, ALICE, 1, 70, 7, BOB, 0, 0))
        rows: dict[int, list[Any]] = {1: [row(97), row(98)]}
        task = await pending(rig, rig.api.new_order, signed(key, "POST", "/o", BID), rec.NewOrder)
        view = rig.api.open_orders_over(rows, ALICE, [sym])
        task.cancel()
        return view

    view = run(go())
    assert [(o["orderId"], o["status"], o["executedQty"]) for o in view] == [
        (97, "PARTIALLY_FILLED", "0.30"),
        (98, "NEW", "0.00"),
    ]
    assert view[1]["clientOrderId"] == "db98"


_WS = cast(web.WebSocketResponse, None)  # what a ``Subscriber`` is made with: never sent on


def test_a_stream_is_a_snapshot_then_numbered_events_and_unnumbered_heartbeats() -> None:
    """private_stream: "``seq`` counting from 1 on each connection: first a ``snapshot``";
    "Events that arrive while the snapshot is being made wait behind it"; a heartbeat "with no
    ``seq``" (stream_subscriber ``beat``: "when nothing was queued for ``HEARTBEAT_S``")."""
    _says("private_stream", "``seq`` counting from 1 on each connection: first a ``snapshot``")
    _says("private_stream", "while the snapshot is being made wait behind it")
    _says(Subscriber.beat, "A ``heartbeat`` when nothing was queued for ``HEARTBEAT_S``")

    async def go() -> list[list[dict[str, Any]]]:
        sub = Subscriber(_WS, "k", ALICE, 16)
        sub.push("executionReport", {"orderId": 1})
        sub.begin({"balances": [], "openOrders": []})
        sub.push("balance", {"asset": "USD"})
        sub.beat(sub.queued_at + HEARTBEAT_S)  # messages unsent: the socket is the slow one
        events = [json.loads(m) for m in sub.queue]
        sub.queue.clear()
        sub.beat(sub.queued_at + HEARTBEAT_S - 0.1)
        sub.beat(sub.queued_at + HEARTBEAT_S)
        return [events, [json.loads(m) for m in sub.queue]]

    events, beats = run(go())
    assert [(m["event"], m["seq"]) for m in events] == [
        ("snapshot", 1), ("executionReport", 2), ("balance", 3)
    ]  # fmt: skip
    assert [m["event"] for m in beats] == ["heartbeat"] and "seq" not in beats[0]


def test_a_stream_too_far_behind_is_cut_1008_naming_the_numbers_and_queues_no_more() -> None:
    """private_stream: "is cut off (close code 1008, the reason naming the numbers)", held
    events too; stream_subscriber: "a stream too far behind, or being closed, queues nothing
    more"; ``close``: "once only (later calls do nothing)"."""
    _says("private_stream", "is cut off (close code 1008, the reason naming the numbers)")
    _says("stream_subscriber", "a stream too far behind, or being closed, queues nothing more")
    _says(Subscriber.close, "once only (later calls do nothing)")

    async def go() -> list[Any]:
        behind = Subscriber(_WS, "k", ALICE, 16)
        behind.begin({})
        for k in range(17):
            behind.push("balance", {"k": k})
        behind.push("balance", {"k": 99})
        behind.close(b"later", 1000)
        held = Subscriber(_WS, "k", ALICE, 16)
        for k in range(17):
            held.push("executionReport", {"orderId": k})
        held.begin({})  # too late: cut while it was made
        out = [behind.cut, behind.code, len(behind.queue), held.cut, held.queue]
        for sub in (behind, held):
            sub.finish()
        return out

    cut, code, queued, held_cut, held_queue = run(go())
    assert cut == b"slow consumer: 17 messages not sent, the limit is 16" and code == 1008
    assert queued == 0 and held_cut.startswith(b"slow consumer: 17") and not held_queue


def test_the_snapshot_keeps_only_the_held_events_it_does_not_show(tmp_path: Path) -> None:
    """private_stream ``_snapshot``: "that state holds every event delivered so far, so a held
    event it shows would count twice" -- a held report of an order shown goes, one of an
    order not shown stays; held balances go where the balances are current."""
    _says(PrivateStreams._snapshot, "so a held event it shows would count twice")
    rig = _Rig(tmp_path)
    rig.core.touch(ALICE, 1, time.monotonic())
    watch: rec.WatchBalances = rig.last(rec.WatchBalances)
    rig.feed(rec.Balance(5, 0, rig.gateway, 1, watch.client_ref, ALICE, 1, 10**6, 0, 1))
    key = rig.key()

    async def go() -> tuple[dict[str, Any], list[Any]]:
        await placed(rig, key, 97)
        sub = Subscriber(_WS, "k", ALICE, 16)
        sub.held = [("executionReport", {"orderId": 97}), ("executionReport", {"orderId": 55}),
                    ("balance", {"asset": "USD"})]  # fmt: skip
        snapshot = await rig.api.streams._snapshot(sub, ALICE)
        return snapshot, sub.held

    snapshot, held = run(go())
    assert [o["orderId"] for o in snapshot["openOrders"]] == [97]
    assert snapshot["balances"] == [{"asset": "USD", "free": "1.000000", "locked": "0.000000"}]
    assert held == [("executionReport", {"orderId": 55})]


def test_a_revoked_keys_stream_closes_at_the_sweep(tmp_path: Path) -> None:
    """private_stream: "revoking the key ... or removing the user closes it with 1008"
    (``sweep``: "Close the streams whose key or user is gone")."""
    _says("private_stream", "revoking the key (here, through another")
    _says(PrivateStreams.sweep, "Close the streams whose key or user is gone")
    rig = _Rig(tmp_path)
    gone, kept = rig.key(), rig.key()
    rig.api.keys.revoke(gone.key)
    subs = [_Sub(gone.key), _Sub(kept.key)]
    rig.api.streams.by_account[ALICE] = cast(set[Subscriber], set(subs))
    rig.api.streams.sweep()
    assert [(s.closed, s.beats) for s in subs] == [(b"API key revoked", 0), (b"", 1)]
    assert inspect.signature(Subscriber.close).parameters["code"].default == 1008


#: A WebSocket upgrade's headers (RFC 6455's example key): ``_admit`` judges the handshake.
HANDSHAKE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def test_an_upgrade_spends_a_request_and_a_key_holds_at_most_max_per_key(tmp_path: Path) -> None:
    """private_stream: "One key holds at most ``max_per_key`` streams, and each upgrade spends
    one of the key's requests (its rate limit, as any signed request)"."""
    _says("private_stream", "each upgrade spends one of the key's requests")
    rig = _Rig(tmp_path, key_rate_per_s=0.01, key_burst=2, max_streams_per_key=1)
    key = rig.key()
    streams = rig.api.streams

    def upgrade(ts: int) -> ApiError | None:
        sig = signing.sign(key.secret, ts, 5_000, "GET", PATH, "", b"")
        query = urlencode({"apiKey": key.key, "timestamp": ts, "signature": sig})
        try:
            request = make_mocked_request("GET", f"{PATH}?{query}", headers=HANDSHAKE)
            _, slot = streams._admit(request)
        except ApiError as exc:
            return exc
        assert slot is not None
        slot.release()
        return None

    now = time.time_ns() // 1_000_000
    assert upgrade(now) is None
    streams.by_account[ALICE] = cast(set[Subscriber], {_Sub(key.key)})  # one held
    held = upgrade(now + 1)
    assert held is not None and held.status == 429
    assert "this API key holds 1 private streams, the limit is 1" in held.msg
    spent = upgrade(now + 2)  # its two requests spent by the upgrades
    assert spent is not None and "requests for this API key" in spent.msg


def test_stream_slots_hold_per_key_and_per_account_and_give_the_key_back() -> None:
    """stream_slots ``take``: "A slot of ``key`` and one of ``account``, or which is full:
    "key" or "account""; a full account gives the key's slot back (review 80)."""
    _says(StreamSlots.take, "A slot of ``key`` and one of ``account``, or which is full")
    with tempfile.TemporaryDirectory() as where:
        slots = StreamSlots(Path(where), per_key=1, per_account=1)
        first = slots.take("k1", 1)
        assert slots.take("k1", 2) == "key" and slots.take("k2", 1) == "account"
        second = slots.take("k2", 2)  # k2's slot was given back
        assert isinstance(first, StreamSlot) and isinstance(second, StreamSlot)
        first.release()
        first.release()  # once
        third = slots.take("k1", 1)
        assert isinstance(third, StreamSlot)
        second.release()
        third.release()


def test_deadlines_time_out_each_request_at_its_own_deadline() -> None:
    """deadlines: "so every request times out when its own deadline passes"; ``discard``:
    "it no longer times out"; "they time out only once the gateway has read what the rings
    held then" (``behind``)."""
    _says("deadlines", "so every request times out when its own deadline passes")
    _says("deadlines", "they time out only once the gateway has read what the rings held then")

    async def go() -> list[Any]:
        read = [False]
        behind: list[Callable[[], bool] | None] = [None]
        dl = Deadlines(lambda: behind[0])
        loop = asyncio.get_running_loop()
        late, soon, gone = loop.create_future(), loop.create_future(), loop.create_future()
        dl.add(late, 0.5)
        dl.add(soon, 0.02)
        dl.add(gone, 0.02)
        dl.discard(gone)
        await asyncio.sleep(0.06)
        first = [late.done(), soon.done(), gone.done()]
        held = loop.create_future()
        behind[0] = lambda: read[0]
        dl.add(held, 0.01)
        await asyncio.sleep(0.05)
        waited = held.done()
        read[0] = True
        await asyncio.sleep(0.03)
        late.cancel()
        return [*first, isinstance(soon.exception(), TimeoutError), waited, held.done()]

    assert run(go()) == [False, True, False, True, False, True]


# fmt: off
class _Transport:
    """A connection's transport, as a protocol sees it: what it wrote, whether it closed."""
    def __init__(self) -> None: self.written, self.closed, self.paused = b"", False, False
    def get_extra_info(self, name: str) -> Any: return ("10.0.0.1", 5)
    def write(self, data: bytes) -> None: self.written += data
    def close(self) -> None: self.closed = True
    def is_closing(self) -> bool: return self.closed
    def pause_reading(self) -> None: self.paused = True
    def resume_reading(self) -> None: self.paused = False


class _Lane:
    def __init__(self, remote: str) -> None: self.remote = remote


class _Sub:
    """A stream as ``sweep`` sees it: its key, its close, its heartbeat."""
    def __init__(self, key: str) -> None: self.key, self.closed, self.beats = key, b"", 0
    def close(self, why: bytes) -> None: self.closed = why
    def beat(self, now: float) -> None: self.beats += 1
# fmt: on


def test_the_ports_connections_are_limited_in_all_and_per_address_with_a_503(
    tmp_path: Path,
) -> None:
    """rest_connections ``_admit``: "past ``max_connections`` on the port ..., or
    ``max_connections_per_address``"; "Both refuse alike: a 503 naming the limit, then the
    close" (the fast lane's and ``Gate``'s)."""
    _says("rest_connections", "Both refuse alike: a 503 naming the limit, then the close")
    rig = _Rig(tmp_path, max_connections_per_address=2)
    api = rig.api
    api.max_connections = 3
    api.lanes = cast(set[FastLane], {_Lane("10.0.0.1"), _Lane("10.0.0.1")})
    assert api._admit("10.0.0.1") == "2 connections from 10.0.0.1 open, the limit is 2 an address"
    assert api._admit("10.0.0.2") is None
    api.lanes.add(cast(FastLane, _Lane("10.0.0.3")))
    why = api._admit("10.0.0.2")
    assert why == "3 connections open, this port's limit is 3: try again later"
    for protocol in (
        Gate(api._admit, asyncio.Protocol),
        FastLane({}, api._middleware, asyncio.Protocol, set(), 256, 1.0, api._admit),
    ):
        transport = _Transport()
        protocol.connection_made(cast(asyncio.Transport, transport))
        assert transport.written.startswith(b"HTTP/1.1 503 ") and transport.closed
        assert why.encode() in transport.written and b"Connection: close" in transport.written


def test_the_lanes_keepalive_is_what_aiohttp_is_set_to() -> None:
    """rest_fast ``KEEPALIVE_S``: "(as ``RestApi.start`` sets aiohttp's, not its default of
    3,630 s)" (review 126: it said aiohttp's default)."""
    _says("rest_fast", "(as ``RestApi.start`` sets aiohttp's, not its default of 3,630 s)")
    default = inspect.signature(RequestHandler.__init__).parameters["keepalive_timeout"].default
    assert default == 3630 != rest_fast.KEEPALIVE_S == 75.0


def test_a_request_pipelined_behind_an_earlier_reads_order_is_400_after_its_answers() -> None:
    """rest_fast: "A request pipelined behind an order that came in an earlier read has no
    such cut ...: it gets a 400 naming the rule, after the answers ahead of it, and the
    connection closes"."""
    _says("rest_fast", "it gets a 400 naming the rule, after the answers ahead of it, and the")
    order = b"POST /api/v1/order HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    ping = b"GET /api/v1/ping HTTP/1.1\r\nHost: x\r\n\r\n"

    async def handler(request: Any) -> web.StreamResponse:
        return json_response({"ok": 1})

    async def middleware(request: Any, handle: Any) -> web.StreamResponse:
        return cast(web.StreamResponse, await handle(request))

    async def go() -> _Transport:
        lane = FastLane({("POST", "/api/v1/order"): handler}, middleware, asyncio.Protocol,
                        set(), 256, 1.0)  # fmt: skip
        transport = _Transport()
        lane.connection_made(cast(asyncio.Transport, transport))
        lane.data_received(order + ping[:10])
        await asyncio.sleep(0.01)
        lane.data_received(ping[10:])
        await asyncio.sleep(0.01)
        return transport

    transport = run(go())
    first, _, rest = transport.written.partition(b"HTTP/1.1 400 ")
    assert first.startswith(b"HTTP/1.1 200 ") and b"must not be pipelined" in rest
    assert transport.closed


_ROW = (5, ALICE, 1, 1, 3, 1, 1_000, 950, 100, 100, 0, 1, 0, 7, 8, 0, 9, 10, "c-5")


class _Rows(History):
    """``History`` whose queries are recorded, not run (no pool, no database)."""

    def __init__(self) -> None:
        self.assets, self.asked = {}, cast(list[tuple[str, Any]], [])

    async def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        self.asked.append((sql, args))
        return []


def test_history_queries_are_bounded_and_leave_refused_orders_out(tmp_path: Path) -> None:
    """history: "every one bounded by the caller's ``limit`` (at most ``MAX_LIMIT`` rows; an
    account's open orders, all of them, by the risk limit"; ``orders``: "``open_only`` with no
    ``limit``: every open order"; "not the orders the matcher refused"."""
    _says("history", "every one bounded by the caller's ``limit`` (at most ``MAX_LIMIT`` rows")
    _says(History.orders, "``open_only`` with no ``limit``: every open order")
    db = _Rows()
    sym = _Rig(tmp_path).cfg.symbols[0]
    run(db.orders(ALICE, 1, open_only=True))
    run(db.orders(ALICE, 1, limit=5_000))
    run(db.trades(ALICE, sym, limit=5_000))
    (every, _), (capped, args), (_, trades) = db.asked
    assert "LIMIT" not in every and "status <> 8" in every and "status <> 8" in capped
    assert args[-1] == history.MAX_LIMIT and trades[-1] == history.MAX_LIMIT + 1


def test_order_views_from_rows_events_and_fix_say_what_they_know(tmp_path: Path) -> None:
    """rest_order_state ``from_accepted``: "no clientOrderId until a row completes it" (price
    0 for a capped buy); ``from_done``: "nor is its notional (null"; ``complete``: "What the
    view knows stays"; ``generated_id``: "then ``r<ref>.<k>``, the first one free"."""
    _says(rest_order_state.from_accepted, "no clientOrderId until a row completes it")
    _says(rest_order_state.from_done, "nor is its notional (null")
    _says(LiveOrder.complete, "What the view knows stays")
    _says(rest_order_state.generated_id, "then ``r<ref>.<k>``, the first one free")
    sym = _Rig(tmp_path).cfg.symbols[0]
    capped = rec.Accepted(1, 0, 1, 1, 1, ALICE, 1, 5, Side.BUY, 99_999, 100, OrdType.MARKET,
                      TimeInForce.IOC, OrderFlag.CAPPED)  # fmt: skip
    view = rest_order_state.from_accepted(capped, sym)
    assert (view.price, view.client_order_id, view.type_name) == (0, "", "MARKET")
    done = rec.OrderDone(9, 10**18, 1, 1, 1, ALICE, 1, 5, DoneReason.CANCELLED, 30, 70)
    end = rest_order_state.from_done(done, sym)
    assert end.json()["side"] == "" and end.json()["cummulativeQuoteQty"] is None
    end.complete(_ROW)
    shown = end.json()
    got = [shown[k] for k in ("side", "type", "status", "clientOrderId")]
    assert got == ["BUY", "STOP_LOSS", "CANCELED", "c-5"]  # the end's status, the row's rest
    assert shown["executedQty"] == "0.30" and shown["isWorking"] is False
    stop = rest_order_state.from_row(_ROW, sym)
    assert not stop.json()["isWorking"] and stop.seq == 9
    stop.triggered = True
    assert stop.json()["isWorking"]
    taken = {"r7", "r7.1"}
    assert rest_order_state.generated_id(taken.__contains__, 7) == "r7.2"


def test_a_restarted_core_takes_back_waiting_open_and_finished_api_orders(tmp_path: Path) -> None:
    """rest_order_log ``restore``: "open ones are followed again and hold their
    clientOrderIds, one still waiting for the exchange's answer gets it, finished ones answer
    queries. Returns how many are open or pending"."""
    _says(RestOrderLog.restore, "one still waiting for the exchange's answer gets it")
    rig = _Rig(tmp_path)
    key = rig.key()

    async def go() -> None:
        await placed(rig, key, 41, newClientOrderId="open-1")
        await placed(rig, key, 42, newClientOrderId="done-1")
        rig.feed(
            rec.OrderDone(90, 0, rig.gateway, 0, 0, ALICE, 1, 42, DoneReason.CANCELLED, 0, 100)
        )
        task = await pending(rig, rig.api.new_order, signed(key, "POST", "/o", {**BID,
                             "newClientOrderId": "wait-1"}), rec.NewOrder)  # fmt: skip
        task.cancel()

    run(go())
    entries = {e[1]: list(e[2:]) for e in rig.core.dump()}
    again = _Rig(tmp_path)
    assert again.core.restore(entries) == 2  # open-1 and wait-1
    waiting = again.core.order(ALICE, None, "wait-1")
    assert waiting is not None and waiting.ref in again.core.requests
    assert again.core.in_use(ALICE, "open-1") is not None
    finished = again.core.order(ALICE, 42)
    assert finished is not None and finished.status == "CANCELED"
    assert again.core.in_use(ALICE, "done-1") is None


def test_balances_keep_zero_by_absence_and_report_only_what_moved(tmp_path: Path) -> None:
    """rest_balances: "The router pushes every balance that may have moved; only what did
    becomes a private-stream event. A zero is kept as the router's snapshot keeps it, by its
    absence"; ``renew_watch``: "One renewal at a time per account"."""
    _says("rest_balances", "only what did becomes a private-stream event")
    _says(RestBalances.renew_watch, "One renewal at a time per account")
    rig = _Rig(tmp_path)
    core = rig.core
    core.touch(ALICE, 1, 0.0)
    watch: rec.WatchBalances = rig.last(rec.WatchBalances)
    core.streaming.add(ALICE)
    core.process(rec.Balance(5, 0, rig.gateway, 1, watch.client_ref, ALICE, 1, 10, 0, 1))
    for free in (10, 0, 7):
        core.process(rec.Balance(6, 0, rig.gateway, 1, 0, ALICE, 1, free, 0, 0))
    assert [e[2]["free"] for e in core.balance_events] == ["0.000000", "0.000007"]
    core.process(rec.Balance(7, 0, rig.gateway, 1, 0, ALICE, 1, 0, 0, 0))
    assert core.balances[ALICE] == {}
    watches = sum(isinstance(r, rec.WatchBalances) for r in rig.out)
    first, second = core.renew_watch(ALICE), core.renew_watch(ALICE)
    assert first != second and sum(isinstance(r, rec.WatchBalances) for r in rig.out) == watches + 1


def test_a_mass_cancel_never_names_account_0_and_a_used_id_is_not_does_not_exist(
    tmp_path: Path,
) -> None:
    """rest_orders ``mass_cancel``: "account 0 would name every account's orders";
    ``unknown``: ""status unknown here" for one the exchange took (forgotten since), "does
    not exist" for one never used"."""
    _says(RestOrders.mass_cancel, "account 0 would name every account's orders")
    _says(RestOrders.unknown, '"does not exist" for one never used (review 70)')
    core = _Rig(tmp_path).core
    with pytest.raises(ValueError):
        core.mass_cancel(0, 1, 0, 0)
    core.seen = Generations(16)
    core.note_used(ALICE, "was-1")
    assert core.unknown(ALICE, "was-1").status == 504
    assert core.unknown(BOB, "was-1").code == api_errors.NO_SUCH_ORDER
