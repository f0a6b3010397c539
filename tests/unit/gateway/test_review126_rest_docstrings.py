"""Review 126: the REST gateway's own docstrings (module, class and function docstrings, ``#:``
comments) held to what the code does. This file: the edge (``rest.py``: the middleware's
limits and error bodies, ``signed``, ``wait``, ``stop``), ``signing.py``'s replay memory as
the edge uses it, the order routes (``rest_orders.py``'s requests, ``rest_amend.py``,
``rest_named.py``) and ``rest_history.py``. ``..._docstrings2.py``: ``rest_mass_cancel.py``,
``rest_keys.py``, ``rest_params.py``, ``rest_open_orders.py``, the private stream
(``private_stream.py``, ``stream_subscriber.py``, ``stream_slots.py``), ``deadlines.py``,
``rest_connections.py``, the fast lane (``rest_fast.py``), ``history.py``,
``rest_order_state.py``, ``rest_order_log.py``, ``rest_balances.py``, ``rest_orders.py``'s
queries. Review 106 held README.md's REST section; this holds the code's own word.

Convention (reviews 115-124): each claim is anchored by a short verbatim quote of the
docstring or comment it checks (whitespace folded, comment marks dropped: ``_says``); a claim
found right is a plain test, a disagreement a strict xfail asserting what the docstring says,
the side to fix in its reason. In-process: a ``RestApi`` made and never started (``_Rig``)
over a real ``RestOrders`` core whose records land in a list, its handlers called through its
own middleware with ``FastRequest``s signed as a client signs them, the exchange's events fed
to the core by hand and handed over with ``after_batch``, as the poll loop does. No database.

Disagreements found (both docstring side, fixed since):
- rest.py ``require_user`` "401 unless ``key``'s user still exists": a removed user's key is
  taken for up to a second more (``holder_unchanged`` reads a view of the users file looked
  at once a second, rest.py:124, :403). Part 1.
- rest_fast.py ``KEEPALIVE_S`` "(aiohttp's default)": aiohttp's default keep-alive is 3,630 s
  (``RequestHandler(keepalive_timeout=3630)``), as rest.py:244 says; 75 s is ringex's. Part 2.
Adversarial sequences (another user's order named by id or client id to query, cancel and
amend; a signed request sent again, its window and timestamp respelled, after a 429; a second
amend behind an unanswered one; a client id reused while its order waits; a cancel of an order
not answered yet; a 504 then the late answer) found no order acted on twice or across
accounts, no replay taken, no limit skipped.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any, cast
from urllib.parse import urlencode

import msgspec
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from config.edges import RestConfig
from config.schema import DatabaseConfig
from procs.common.apikeys import ApiKey
from procs.common.records import (
    Accepted,
    CancelOrder,
    NewOrder,
    Record,
    Rejected,
    ReplaceOrder,
    Trade,
)
from procs.common.result_codes import ResultCode
from procs.common.topology import users_path
from procs.common.types import Side
from procs.common.users import UserStore
from procs.gateway import api_errors, rest_params, signing
from procs.gateway.fast_request import FastRequest
from procs.gateway.instruments import Instruments
from procs.gateway.rest import RestApi
from procs.gateway.rest_amend import AmendRoute
from procs.gateway.rest_history import HistoryRoutes
from procs.gateway.rest_orders import RestOrders
from tests.unit.gateway.harness import config

ALICE, BOB = 601, 602
PASSWORDS = {"ALICE": "alice-pw", "BOB": "bob-pw"}
BID = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": "10.00", "quantity": "1.00"}
_instances = itertools.count()


def _text(where: ModuleType | type | Any) -> str:
    """``where``'s source (a name: ``procs.gateway``'s module of it), comment marks (``#``,
    ``#:``) at a line's start dropped, folded."""
    if isinstance(where, str):
        where = importlib.import_module(f"procs.gateway.{where}")
    return " ".join(re.sub(r"(?m)^\s*#:?", " ", inspect.getsource(where)).split())


def _says(where: ModuleType | type | Any, quote: str) -> None:
    """``where`` still says ``quote`` (whitespace folded): the anchor of a claim checked."""
    assert " ".join(quote.split()) in _text(where), f"{where!r} no longer says {quote!r}"


Answer = tuple[int, Any, CIMultiDict[str]]
_STAMPS = [0]  # the last timestamp ``signed`` gave


class _Rig:
    """A ``RestApi`` made, never started, over a real ``RestOrders`` core (its records in
    ``out``), with ALICE (601) and BOB (602) in its users file."""

    def __init__(self, tmp_path: Path, **rest_kw: Any) -> None:
        many = 100_000
        limits: dict[str, Any] = {
            "key_rate_per_s": many, "key_burst": many, "ip_rate_per_s": many, "ip_burst": many,
            "login_rate_per_s": many, "login_burst": many, "order_timeout_s": 2.0,
        }  # fmt: skip
        rest_cfg = RestConfig(port=0, **{**limits, **rest_kw})
        instance = f"r126x{next(_instances)}"
        cfg = config(instance, tmp_path / instance, rest=rest_cfg, failed_login_burst=2)
        self.cfg = msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False))
        users = UserStore(users_path(self.cfg))
        users.add("ALICE", PASSWORDS["ALICE"], ALICE, n=1 << 4)
        users.add("BOB", PASSWORDS["BOB"], BOB, n=1 << 4)
        self.out: list[Record] = []
        refs = itertools.count(1000)
        gw = self.cfg.gateways[0]
        self.core = RestOrders(
            gw.id, Instruments(self.cfg.symbols), self.cfg.assets, self.out, lambda: next(refs)
        )
        self.api = RestApi(self.cfg, gw, rest_cfg, self.core, users, lambda: None)
        self.gateway = gw.id
        self.seq = itertools.count(100)

    def key(self, user: str = "ALICE", scopes: tuple[str, ...] = ("read", "trade")) -> ApiKey:
        found = self.api.logins.get(user)
        assert found is not None
        return self.api.keys.create(found, list(scopes), evict_oldest=True)

    def last(self, kind: type[Record]) -> Any:
        return next(r for r in reversed(self.out) if isinstance(r, kind))

    def feed(self, *events: Record) -> None:
        """A batch of the exchange's events, as the poll loop hands them over."""
        for event in events:
            self.core.process(event)
        self.api.after_batch()

    def accept(self, order_id: int) -> NewOrder:
        cmd: NewOrder = self.last(NewOrder)
        head = (next(self.seq), time.time_ns(), cmd.gateway, cmd.session, cmd.client_ref)
        self.feed(Accepted(*head, cmd.account, cmd.symbol, order_id, cmd.side, cmd.price, cmd.qty))
        return cmd


def signed(
    key: ApiKey, method: str, path: str, params: dict[str, str] | None = None, *,
    ts: int | None = None, window: int | None = None, remote: str = "10.0.0.1",
) -> FastRequest:  # fmt: skip
    """A request signed as a client signs it: GET and DELETE parameters in the query, POST
    and PUT ones in a form body."""
    encoded = urlencode(params or {})
    query, body = (encoded, b"") if method in ("GET", "DELETE") else ("", encoded.encode())
    if ts is None:  # a new millisecond each: two requests alike are not one replayed
        ts = _STAMPS[0] = max(time.time_ns() // 1_000_000, _STAMPS[0] + 1)
    sig = signing.sign(key.secret, ts, window or 5_000, method, path, query, body)
    headers = CIMultiDict(
        {signing.API_KEY: key.key, signing.TIMESTAMP: str(ts), signing.SIGNATURE: sig}
    )
    if window is not None:
        headers[signing.RECV_WINDOW] = str(window)
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers["Content-Length"] = str(len(body))
    target = f"{path}?{query}" if query else path
    return FastRequest(method, target, CIMultiDictProxy(headers), body, remote, True)


def plain(method: str, target: str, body: bytes = b"", remote: str = "10.0.0.1") -> FastRequest:
    headers = CIMultiDict({"Content-Type": "application/x-www-form-urlencoded"})
    if body:
        headers["Content-Length"] = str(len(body))
    return FastRequest(method, target, CIMultiDictProxy(headers), body, remote, True)


async def answer(api: RestApi, handler: Callable[[Any], Awaitable[Any]], req: Any) -> Answer:
    """The handler's answer through the API's middleware (error bodies, limits)."""
    response = cast(web.Response, await api._middleware(req, handler))
    return response.status, json.loads(cast(bytes, response.body)), response.headers


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


async def pending(
    rig: _Rig, handler: Callable[[Any], Awaitable[Any]], req: Any, kind: type[Record]
) -> asyncio.Future[Answer]:
    """The request's answer as a task, once its command is in ``rig.out``."""
    before = sum(isinstance(r, kind) for r in rig.out)
    task = asyncio.ensure_future(answer(rig.api, handler, req))
    for _ in range(20):
        await asyncio.sleep(0)
        if sum(isinstance(r, kind) for r in rig.out) > before or task.done():
            break
    for _ in range(5):  # its wait begun (it publishes the command)
        await asyncio.sleep(0)
    return task


async def placed(rig: _Rig, key: ApiKey, order_id: int, **extra: str) -> Answer:
    """A new order of ``key``'s, accepted as ``order_id``."""
    task = await pending(rig, rig.api.new_order, signed(key, "POST", "/api/v1/order",
                         {**BID, **extra}), NewOrder)  # fmt: skip
    rig.accept(order_id)
    return await task


# -- rest.py: every request ---------------------------------------------------------------------


def test_errors_are_code_and_msg_and_a_body_too_large_is_413_naming_both(tmp_path: Path) -> None:
    """rest.py: "the body size (413)", "Errors are ``{"code": ..., "msg": ...}``" (the
    middleware, rest.py:304 and :313)."""
    _says("rest", "the body size (413)")
    _says("rest", 'Errors are ``{"code": ..., "msg": ...}``')
    rig = _Rig(tmp_path, max_body_bytes=256)
    status, body, _ = run(answer(rig.api, rig.api.new_order, plain("POST", "/o", b"x" * 300)))
    assert status == 413 and set(body) == {"code", "msg"}
    assert "of 300 bytes" in body["msg"] and "limit of 256 bytes" in body["msg"]


def test_the_address_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    """rest.py: "the client address's rate limit (429 with ``Retry-After``)"; api_errors
    ``throttle``: "429 with the seconds until ``key`` may go on" (rest.py:304)."""
    _says("rest", "the client address's rate limit (429 with ``Retry-After``)")
    _says(api_errors.throttle, "429 with the seconds until ``key`` may go on")
    rig = _Rig(tmp_path, ip_rate_per_s=0.5, ip_burst=1)
    key = rig.key()

    async def go() -> list[Answer]:
        req = signed(key, "GET", "/api/v1/openOrders")
        return [await answer(rig.api, rig.api.open_orders, req) for _ in range(2)]

    first, second = run(go())
    assert first[0] != 429
    status, body, headers = second
    assert status == 429 and body["code"] == api_errors.TOO_MANY_REQUESTS
    assert "requests from 10.0.0.1" in body["msg"] and "0.5/s" in body["msg"]
    assert int(headers["Retry-After"]) >= 2  # 0.5/s: two seconds until the next token


def test_the_key_limit_is_spent_only_once_the_signature_holds(tmp_path: Path) -> None:
    """rest.py ``charge``: "429 when ``key`` is over its rate limit ... Only once the
    signature holds: ... requests that merely name it must not spend its owner's budget"."""
    _says(RestApi.charge, "Only once the signature holds: the key id travels in the clear")
    rig = _Rig(tmp_path, key_rate_per_s=0.01, key_burst=1)
    key = rig.key()
    forged = ApiKey(**{**msgspec.structs.asdict(key), "secret": "f" * 64})

    async def go() -> list[Answer]:
        path = "/api/v1/openOrders"
        out = [await answer(rig.api, rig.api.open_orders, signed(forged, "GET", path))
               for _ in range(3)]  # fmt: skip
        await asyncio.sleep(0.002)
        out.append(
            await answer(rig.api, rig.api.open_orders, signed(key, "GET", "/api/v1/openOrders"))
        )
        await asyncio.sleep(0.002)
        out.append(
            await answer(rig.api, rig.api.open_orders, signed(key, "GET", "/api/v1/openOrders"))
        )
        return out

    *forgeries, taken, over = run(go())
    assert [a[1]["code"] for a in forgeries] == [signing.BAD_SIGNATURE] * 3
    assert taken[0] != 429  # the forgeries spent nothing of the key's one token
    assert over[0] == 429 and "requests for this API key" in over[1]["msg"]
    assert "Retry-After" in over[2]


def test_a_signed_request_is_refused_when_replayed_even_respelled(tmp_path: Path) -> None:
    """rest.py: "the HMAC signature over the request with its timestamp and receive window,
    refused when replayed"; signing.py: "a captured request cannot be re-sent within its
    window either" -- the window left out and then sent as the default it stood for: the same
    signed bytes, refused (REPLAYED); the timestamp with a leading zero is other bytes than
    those signed (signed as sent since review 284): refused too, its signature not matching."""
    _says("rest", "refused when replayed (``signing.py``)")
    _says(signing, "a captured request cannot be re-sent within its window either")
    rig = _Rig(tmp_path)
    key = rig.key()
    ts = time.time_ns() // 1_000_000
    first = signed(key, "GET", "/api/v1/openOrders", ts=ts)
    headers = CIMultiDict(first.headers)
    again = FastRequest("GET", first.raw_path, CIMultiDictProxy(headers), b"", "10.0.0.9", True)
    headers[signing.RECV_WINDOW] = "5000"
    respelled = FastRequest("GET", first.raw_path, CIMultiDictProxy(headers), b"", "x", True)
    headers = CIMultiDict(first.headers)
    headers[signing.TIMESTAMP] = f"0{ts}"
    zero = FastRequest("GET", first.raw_path, CIMultiDictProxy(headers), b"", "x", True)

    async def go() -> list[Answer]:
        return [
            await answer(rig.api, rig.api.open_orders, r) for r in (first, again, respelled, zero)
        ]

    codes = [(s, b.get("code") if isinstance(b, dict) else None) for s, b, _ in run(go())]
    assert codes[0] == (200, None)
    assert codes[1:] == [(401, signing.REPLAYED)] * 2 + [(401, signing.BAD_SIGNATURE)]


def test_a_request_refused_429_is_not_remembered(tmp_path: Path) -> None:
    """signing.py ``Verifier``: "the gateway remembers a request only once its key's limit
    took it (``check``, the limit, then ``remember``)"."""
    _says(signing.Verifier, "the gateway remembers a request only once its key's limit took it")
    rig = _Rig(tmp_path, key_rate_per_s=1_000, key_burst=1)
    key = rig.key()

    async def go() -> list[int]:
        spent = await answer(rig.api, rig.api.open_orders, signed(key, "GET", "/api/v1/openOrders"))
        req = signed(key, "GET", "/api/v1/openOrders")
        refused = await answer(rig.api, rig.api.open_orders, req)
        await asyncio.sleep(0.01)  # a token back
        again = await answer(rig.api, rig.api.open_orders, req)
        return [spent[0], refused[0], again[0]]

    assert run(go()) == [200, 429, 200]


def test_require_scope_is_403_naming_the_scopes(tmp_path: Path) -> None:
    """rest.py ``require_scope``: "403 unless ``key`` has ``scope``"."""
    _says(RestApi.require_scope, "403 unless ``key`` has ``scope``")
    rig = _Rig(tmp_path)
    key = rig.key(scopes=("read",))
    status, body, _ = run(answer(rig.api, rig.api.new_order, signed(key, "POST", "/o", BID)))
    assert status == 403 and body["code"] == -2015 and "'trade' is needed" in body["msg"]


def test_require_user_refuses_a_removed_users_key_within_a_second(tmp_path: Path) -> None:
    """rest.py ``require_user``: "401 unless ``key``'s user still exists, with the key's
    account, as the users file stood at most a second ago" (review 126: the second was
    unsaid): the user removed, the key's next request still passes; once the view is a
    second old, 401."""
    _says(RestApi.require_user, "as the users file stood at most a second ago")
    rig = _Rig(tmp_path)
    key = rig.key()
    assert rig.api.logins.remove("ALICE")
    request = signed(key, "GET", "/api/v1/openOrders")
    status, _, _ = run(answer(rig.api, rig.api.open_orders, request))
    assert status == 200
    time.sleep(1.1)
    status, _, _ = run(
        answer(rig.api, rig.api.open_orders, signed(key, "GET", "/api/v1/openOrders"))
    )
    assert status == 401


def test_a_stopping_gateway_refuses_new_orders_and_amends_but_takes_cancels(
    tmp_path: Path,
) -> None:
    """rest.py ``require_open``: "503 while the gateway stops: it takes no ``what`` then
    (cancels it takes)"."""
    _says(RestApi.require_open, "503 while the gateway stops: it takes no ``what`` then")
    rig = _Rig(tmp_path)
    key = rig.key()
    rig.api.closing = True
    amend = AmendRoute(rig.api).amend_order
    cancel = {"symbol": "BTC-USD", "orderId": "5"}

    async def go() -> list[int]:
        out = [(await answer(rig.api, rig.api.new_order, signed(key, "POST", "/o", BID)))[0]]
        req = signed(key, "PUT", "/o", {**cancel, "price": "10.05"})
        out.append((await answer(rig.api, amend, req))[0])
        task = await pending(rig, rig.api.cancel_order, signed(key, "DELETE", "/o", cancel),
                             CancelOrder)  # fmt: skip
        out.append(int(isinstance(rig.out[-1], CancelOrder)))
        task.cancel()
        return out

    assert run(go()) == [503, 503, 1]


def test_an_order_answer_carries_its_fills_and_transact_time(tmp_path: Path) -> None:
    """rest.py: "the answer waits for the exchange's events: accepted with its fills";
    rest_orders.py: "so a new order's answer carries the fills its own command made"."""
    _says("rest", "accepted with its fills, or the reason it was refused")
    _says("rest_orders", "so a new order's answer carries the fills its own command made")
    rig = _Rig(tmp_path)
    key = rig.key()

    async def go() -> Answer:
        task = await pending(rig, rig.api.new_order, signed(key, "POST", "/o", BID), NewOrder)
        cmd: NewOrder = rig.last(NewOrder)
        accepted = Accepted(
            *(50, 10**18, cmd.gateway, cmd.session, cmd.client_ref, ALICE, 1, 77),
            *(cmd.side, cmd.price, cmd.qty),
        )
        trade = Trade(50, 10**18, 9, 1, 1_000, 40, Side.BUY, 5, BOB, 0, 0, 77, ALICE, 1, 60)
        rig.feed(accepted, trade)
        return await task

    status, body, _ = run(go())
    assert status == 200 and body["orderId"] == 77 and body["status"] == "PARTIALLY_FILLED"
    assert [f["qty"] for f in body["fills"]] == ["0.40"] and body["executedQty"] == "0.40"
    assert body["transactTime"] == body["updateTime"] == 10**18 // 10**6


def test_a_refused_order_names_the_code_and_its_values(tmp_path: Path) -> None:
    """rest.py: "or the reason it was refused"; rest_params ``refusal``: "the code, the
    order's values, and the rule it broke where a configured limit says"."""
    _says(rest_params.refusal, "the code, the order's values, and the rule it broke")
    rig = _Rig(tmp_path)
    key = rig.key()

    async def go() -> Answer:
        task = await pending(rig, rig.api.new_order, signed(key, "POST", "/o", BID), NewOrder)
        cmd: NewOrder = rig.last(NewOrder)
        code = ResultCode.TOO_MANY_OPEN_ORDERS
        rig.feed(Rejected(51, 0, cmd.gateway, cmd.session, cmd.client_ref, ALICE, 1, 0, code))
        return await task

    status, body, _ = run(go())
    assert status == 400 and body["code"] == api_errors.NEW_ORDER_REJECTED
    msg = body["msg"]
    assert "TOO_MANY_OPEN_ORDERS" in msg and "price=10.00" in msg and "quantity=1.00" in msg
    assert f"at most {rig.cfg.risk.max_open_orders} open orders" in msg


def test_a_504_names_the_id_to_ask_by_and_the_late_answer_still_lands(tmp_path: Path) -> None:
    """rest.py ``wait``: "``what`` names the request in a timeout's message: what to ask the
    status of"; rest_orders ``abandon``: "its answer still comes (a new order's must still
    turn the order placed under its clientOrderId into the exchange's, an orderId, NEW"; and
    rest_open_orders: "placed here and not answered yet (orderId 0; a 504's): open"."""
    _says(RestApi.wait, "``what`` names the request in a timeout's message")
    _says(RestOrders.abandon, "turn the order placed under its clientOrderId into the exchange's")
    _says("rest_open_orders", "placed here and not answered yet (orderId 0; a 504's): open")
    rig = _Rig(tmp_path, order_timeout_s=0.05)
    key = rig.key()
    by_name = {"symbol": "BTC-USD", "origClientOrderId": "late-1"}

    async def go() -> list[Any]:
        req = signed(key, "POST", "/o", {**BID, "newClientOrderId": "late-1"})
        timed_out = await answer(rig.api, rig.api.new_order, req)
        listed = await answer(rig.api, rig.api.open_orders, signed(key, "GET", "/x", {}))
        cancel = await answer(rig.api, rig.api.cancel_order, signed(key, "DELETE", "/o", by_name))
        rig.accept(88)
        status = await answer(rig.api, rig.api.query_order, signed(key, "GET", "/o", by_name))
        return [timed_out, listed, cancel, status]

    timed_out, listed, cancel, status = run(go())
    assert timed_out[0] == 504 and timed_out[1]["code"] == api_errors.TIMEOUT
    assert "(origClientOrderId=late-1)" in timed_out[1]["msg"]
    assert [(o["orderId"], o["status"]) for o in listed[1]] == [(0, "PENDING_NEW")]
    assert cancel[0] == 400 and "has not answered it yet" in cancel[1]["msg"]
    assert not any(isinstance(r, CancelOrder) for r in rig.out)  # never sent blind
    assert (status[1]["orderId"], status[1]["status"]) == (88, "NEW")


def test_stop_answers_the_waiting_requests_504(tmp_path: Path) -> None:
    """rest.py ``stop``: "as a timeout, since they may still execute (503 says "not taken,
    retry": review 66)"."""
    _says("rest", 'as a timeout, since they may still execute (503 says "not taken, retry"')
    rig = _Rig(tmp_path)
    key = rig.key()

    async def go() -> Answer:
        task = await pending(rig, rig.api.new_order, signed(key, "POST", "/o", BID), NewOrder)
        await rig.api.stop()
        return await task

    status, body, _ = run(go())
    assert status == 504 and body == {"code": -1007, "msg": api_errors.STOPPED_UNANSWERED}


def test_a_client_id_in_use_is_refused_while_its_order_waits(tmp_path: Path) -> None:
    """rest_orders ``in_use``: "A new order under it would make ``origClientOrderId``
    ambiguous" -- the second POST under one id while the first waits for its answer."""
    _says(RestOrders.in_use, "A new order under it would make ``origClientOrderId`` ambiguous")
    rig = _Rig(tmp_path)
    key = rig.key()
    req = {**BID, "newClientOrderId": "dup-1"}

    async def go() -> Answer:
        first = await pending(rig, rig.api.new_order, signed(key, "POST", "/o", req), NewOrder)
        second = await answer(rig.api, rig.api.new_order, signed(key, "POST", "/o", req))
        first.cancel()
        return second

    status, body, _ = run(go())
    assert status == 400 and "newClientOrderId=dup-1 is in use" in body["msg"]
    assert sum(isinstance(r, NewOrder) for r in rig.out) == 1


# -- other accounts' orders -------------------------------------------------------------------


def test_another_accounts_order_is_not_found_nor_told_apart(tmp_path: Path) -> None:
    """rest_orders ``order``: "An order of ``account`` known here ...; never another's";
    ``cancel``: "the matcher refuses it unless ``account`` owns the order"; api_errors
    ``NOT_YOURS``: "another account's order is not to be told apart from none"."""
    _says(RestOrders.order, "never another's")
    _says(RestOrders.cancel, "the matcher refuses it unless ``account`` owns the order")
    _says(api_errors, "another account's order is not to be told apart from none")
    rig = _Rig(tmp_path)
    alice, bob = rig.key(), rig.key("BOB")
    by_id = {"symbol": "BTC-USD", "orderId": "91"}

    async def go() -> list[Answer]:
        await placed(rig, alice, 91, newClientOrderId="mine")
        q = await answer(rig.api, rig.api.query_order, signed(bob, "GET", "/o", by_id))
        named = {"symbol": "BTC-USD", "origClientOrderId": "mine"}
        q2 = await answer(rig.api, rig.api.query_order, signed(bob, "GET", "/o", named))
        amend = AmendRoute(rig.api).amend_order
        a = await answer(rig.api, amend, signed(bob, "PUT", "/o", {**by_id, "price": "10.05"}))
        task = await pending(rig, rig.api.cancel_order, signed(bob, "DELETE", "/o", by_id),
                             CancelOrder)  # fmt: skip
        cmd: CancelOrder = rig.last(CancelOrder)
        assert (cmd.account, cmd.order_id) == (BOB, 91)  # the matcher judges
        code = ResultCode.NOT_ORDER_OWNER
        rig.feed(Rejected(60, 0, cmd.gateway, cmd.session, cmd.client_ref, BOB, 1, 91, code))
        c = await task
        task = await pending(rig, rig.api.cancel_order, signed(bob, "DELETE", "/o",
                             {**by_id, "orderId": "92"}), CancelOrder)  # fmt: skip
        cmd = rig.last(CancelOrder)
        code = ResultCode.UNKNOWN_ORDER
        rig.feed(Rejected(61, 0, cmd.gateway, cmd.session, cmd.client_ref, BOB, 1, 92, code))
        return [q, q2, a, c, await task]

    q, q2, a, c, none = run(go())
    assert q[1]["code"] == q2[1]["code"] == a[1]["code"] == api_errors.NO_SUCH_ORDER
    assert c[1]["msg"] == "cancel rejected: unknown order orderId=91"
    assert none[1]["msg"] == "cancel rejected: unknown order orderId=92"
    assert not any(isinstance(r, ReplaceOrder) for r in rig.out)
    assert rig.core.order(ALICE, 91) is not None and rig.core.order(ALICE, 91).open  # type: ignore[union-attr]


def test_both_ids_must_name_one_order_and_either_is_mandatory(tmp_path: Path) -> None:
    """rest_named ``named_order``: "Both ids sent must name the same order (the venue
    rule)"; "either id names an order: the message says so (review 91)"."""
    _says("rest_named", "Both ids sent must name the same order (the venue rule)")
    rig = _Rig(tmp_path)
    key = rig.key()

    async def go() -> list[Answer]:
        await placed(rig, key, 93, newClientOrderId="a-93")
        await placed(rig, key, 94, newClientOrderId="a-94")
        mixed = {"symbol": "BTC-USD", "orderId": "93", "origClientOrderId": "a-94"}
        one = await answer(rig.api, rig.api.cancel_order, signed(key, "DELETE", "/o", mixed))
        bare = {"symbol": "BTC-USD"}
        return [one, await answer(rig.api, rig.api.cancel_order, signed(key, "DELETE", "/o", bare))]

    mixed, bare = run(go())
    assert (
        mixed[1]["code"] == api_errors.ILLEGAL_PARAM and "do not name the same" in mixed[1]["msg"]
    )
    assert bare[1] == {
        "code": api_errors.MANDATORY_PARAM,
        "msg": "mandatory parameter 'orderId' or 'origClientOrderId' was not sent",
    }
    assert not any(isinstance(r, CancelOrder) for r in rig.out)


# -- rest_amend.py ----------------------------------------------------------------------------


def test_a_second_amend_is_refused_while_the_first_waits_and_the_id_stays(tmp_path: Path) -> None:
    """rest_amend: "so a second amend of an order is refused while the first waits for its
    answer"; "Its ``clientOrderId`` stays as it is" (the ``ReplaceOrder`` carries none);
    "``quantity`` is the new total, fills included"."""
    _says("rest_amend", "so a second amend of an order is refused while the first waits for its")
    _says("rest_amend", "Its ``clientOrderId`` stays as it is")
    rig = _Rig(tmp_path, order_timeout_s=0.05)
    key = rig.key()
    amend = AmendRoute(rig.api).amend_order
    change = {"symbol": "BTC-USD", "orderId": "95", "quantity": "2.00"}

    async def go() -> list[Answer]:
        await placed(rig, key, 95, newClientOrderId="keep-me")
        first = await answer(rig.api, amend, signed(key, "PUT", "/o", change))  # a 504
        second = await answer(rig.api, amend, signed(key, "PUT", "/o", {**change, "price": "9"}))
        return [first, second]

    first, second = run(go())
    assert first[0] == 504
    said = "an amend, cancel or replace of orderId=95 waits for its answer"
    assert second[0] == 400 and said in second[1]["msg"]
    (cmd,) = [r for r in rig.out if isinstance(r, ReplaceOrder)]
    assert (cmd.order_qty, cmd.price, cmd.client_id) == (200, 1_000, b"")


def test_history_routes_check_parameters_before_asking_for_the_database(tmp_path: Path) -> None:
    """rest_history ``my_trades``: "after the parameters: a bad one is a 400 either way";
    rest.py ``need_history``: 503 "history needs the database, which is not enabled here"."""
    _says("rest_history", "after the parameters: a bad one is a 400 either way")
    rig = _Rig(tmp_path)
    key = rig.key()
    routes = HistoryRoutes(rig.api)
    for handler in (routes.my_trades, routes.all_orders):
        bad = signed(key, "GET", "/h", {"symbol": "BTC-USD", "limit": "0"})
        assert run(answer(rig.api, handler, bad))[0] == 400
        good = signed(key, "GET", "/h", {"symbol": "BTC-USD"})
        status, body, _ = run(answer(rig.api, handler, good))
        assert status == 503 and "history needs the database" in body["msg"]
