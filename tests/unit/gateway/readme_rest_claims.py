"""Review 106's shared rig (README.md's "### The REST API and the private stream" held to the
code and to the served OpenAPI document): the README section and its quotes, the document,
the endpoints the README names, and the module-scoped fixtures: ``local``, a ``RestApi`` made
and never started, and ``served``, one scenario against an in-process exchange
(``harness.py``: rings, router, matcher, a gateway on a free port, no database, no market
data) whose recorded answers the ``test_review106_*`` files read.

Convention (review 104's): the README is read as it is when the test runs, and each claim is
found in it by a quote (whitespace folded), so a claim reworded fails, loudly, rather than
being checked no longer. A module that imports a fixture from here (``served =
claims.served``) runs the scenario once, for that module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import aiohttp
import msgspec
import pytest

from config.edges import GatewayConfig, RestConfig
from config.schema import DatabaseConfig, RingexConfig
from procs.common.topology import apikeys_path, gateway_root, users_path
from procs.common.users import UserStore
from procs.gateway import openapi
from procs.gateway.api_errors import ApiError
from procs.gateway.private_stream import PATH as STREAM_PATH
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.rest_orders import RestOrders
from shm.inspect import remove_instance
from tests.readme_text import README, ROOT, claim, says, section
from tests.readme_text import folded as _folded
from tests.unit.gateway.harness import Harness, config
from tests.unit.gateway.rest_rig import request

#: Re-exported for the test modules (the README, the repository, a quote's folding).
__all__ = ["README", "ROOT", "_folded"]

V1 = "/api/v1"
TITLE = "### The REST API and the private stream"
#: The README section under review: from its title to the next heading.
SECTION = section("The REST API and the private stream", level=3)


def _says(quote: str, text: str = SECTION) -> bool:
    return says(quote, text)


def _claim(quote: str) -> None:
    """The section still says ``quote`` (whitespace folded): the anchor of a claim checked."""
    claim(quote, SECTION, where=f"README's {TITLE!r}")


# -- the exchange the local checks and the scenario serve ---------------------------------------

USERS = {"ALICE": ("alice-pw", 601), "BOB": ("bob-pw", 602), "CAROL": ("carol-pw", 603)}
SYMBOL = "BTC-USD"


def _config(instance: str, var: Path) -> RingexConfig:
    """The harness's exchange (one symbol, BTC-USD, 2 price and 2 size decimals, tick 0.05),
    its REST API with the limits the scenario reaches: three keys a user, one stream a key,
    a wrong password a user, a half-second order timeout; no database, no market data."""
    many = 100_000
    rest = RestConfig(
        port=0,
        key_rate_per_s=many,
        key_burst=many,
        ip_rate_per_s=many,
        ip_burst=many,
        login_rate_per_s=many,
        login_burst=many,
        max_streams=8,
        max_streams_per_key=1,
        stream_queue=64,
        max_keys_per_user=3,
        order_timeout_s=0.5,
    )
    cfg = config(instance, var, rest=rest, failed_login_burst=1)
    return msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False))


def _rest(cfg: RingexConfig) -> tuple[GatewayConfig, RestConfig]:
    gw = cfg.gateways[0]
    assert gw.rest is not None
    return gw, gw.rest


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> RestApi:
    """A ``RestApi`` made, never started (no port, no rings: its core is never reached by
    what the local tests call), with ALICE in its users file."""
    cfg = _config("r106local", tmp_path_factory.mktemp("r106local"))
    users = UserStore(users_path(cfg))
    users.add("ALICE", "alice-pw", 601, n=1 << 4)
    gw, rest = _rest(cfg)
    return RestApi(cfg, gw, rest, cast(RestOrders, None), users, lambda: None)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _refused(call: Callable[[], object]) -> ApiError:
    with pytest.raises(ApiError) as refused:
        call()
    return refused.value


async def _refused_async(coro: Any) -> ApiError:
    try:
        await coro
    except ApiError as exc:
        return exc
    raise AssertionError("not refused")


DOC = openapi.document(_config("r106doc", Path("/nonexistent")))


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        kind, name = schema["$ref"].split("/")[-2:]
        schema = DOC["components"][kind][name]
    return schema


def _schema_keys(schema: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(required, properties) of an object schema, through ``$ref`` and ``allOf``."""
    schema = _resolve(schema)
    required: set[str] = set(schema.get("required", ()))
    props: set[str] = set(schema.get("properties", {}))
    for part in schema.get("allOf", ()):
        more_required, more_props = _schema_keys(part)
        required |= more_required
        props |= more_props
    return required, props


def _operation(method: str, path: str) -> dict[str, Any]:
    return cast(dict[str, Any], DOC["paths"][path][method.lower()])


# -- the endpoints the README names ----------------------------------------------------------

#: Every endpoint, as the README names it: (method, path, the README's words, the scope the
#: README gives it: None unsigned, "" any valid key, "read", "trade").
ENDPOINTS: list[tuple[str, str, str, str | None]] = [
    ("GET", f"{V1}/ping", "- Public: `ping`,", None),
    ("GET", f"{V1}/time", "- Public: `ping`, `time`,", None),
    ("GET", f"{V1}/exchangeInfo", "`time`, `exchangeInfo` (every symbol, or only those", None),
    ("GET", f"{V1}/depth", "`procs/gateway/exchange_info.py`), `depth`, `trades`", None),
    ("GET", f"{V1}/trades", "`trades` (`limit` up to 1,000", None),
    (
        "GET",
        f"{V1}/ticker/24hr",
        "`ticker/24hr` (`symbol` only; for each of the three tickers",
        None,
    ),
    ("GET", f"{V1}/ticker/price", '`ticker/price` (`symbol` only: `{"symbol", "price"}`', None),
    ("GET", f"{V1}/ticker/bookTicker", '`ticker/bookTicker` (`symbol` only: `{"symbol"', None),
    ("GET", f"{V1}/avgPrice", '`avgPrice` (`symbol` mandatory: `{"symbol", "mins": 5,', None),
    ("GET", f"{V1}/klines", "`klines` (every parameter checked, `interval` mandatory", None),
    ("GET", "/openapi.json", "`GET /openapi.json` documents every route", None),
    ("POST", f"{V1}/apiKey", "Keys: `POST /api/v1/apiKey` with `username`, `password`", None),
    ("DELETE", f"{V1}/apiKey", "`DELETE /api/v1/apiKey` revokes the key that signs it", ""),
    ("POST", f"{V1}/order", "Private: `POST/PUT/DELETE/GET order`", "trade"),
    ("PUT", f"{V1}/order", "Private: `POST/PUT/DELETE/GET order`", "trade"),
    ("DELETE", f"{V1}/order", "Private: `POST/PUT/DELETE/GET order`", "trade"),
    ("GET", f"{V1}/order", "Private: `POST/PUT/DELETE/GET order`", "read"),
    ("POST", f"{V1}/batchOrders", "`POST batchOrders` places 1 to 10 orders", "trade"),
    ("POST", f"{V1}/order/test", "`POST order/test` checks an order as `POST order`", "trade"),
    ("DELETE", f"{V1}/batchOrders", "`DELETE batchOrders` cancels 1 to 10", "trade"),
    ("GET", f"{V1}/openOrders", "`GET/DELETE openOrders`", "read"),
    ("DELETE", f"{V1}/openOrders", "`GET/DELETE openOrders`", "trade"),
    ("GET", f"{V1}/allOrders", "`GET/DELETE openOrders`, `allOrders`", "read"),
    (
        "GET",
        f"{V1}/myTrades",
        "`allOrders`, `myTrades` (trade scope for POST, PUT and DELETE)",
        "read",
    ),
    ("GET", f"{V1}/account", "(trade scope for POST, PUT and DELETE), `account` (balances", "read"),
    (
        "GET",
        STREAM_PATH,
        "`ws://HOST:PORT/api/v1/stream?apiKey=K&timestamp=T&recvWindow=W&"
        "signature=S` signed over `GET /api/v1/stream`",
        "read",
    ),
]
NAMED = {(m, p) for m, p, _, _ in ENDPOINTS}
PUBLIC = [(m, p) for m, p, _, scope in ENDPOINTS if scope is None]
SIGNED = [(m, p) for m, p, _, scope in ENDPOINTS if scope is not None and p != STREAM_PATH]


# -- what the scenario probes -----------------------------------------------------------------


def _integer_params() -> Iterator[tuple[str, str, str, int, int]]:
    """Every integer query parameter the document bounds, but the stream's (a signature's
    fields): (method, path, name, minimum, maximum)."""
    for path, ops in DOC["paths"].items():
        if path == STREAM_PATH:
            continue
        for method, op in ops.items():
            for p in op.get("parameters", ()):
                schema = p["schema"]
                if schema.get("type") == "integer" and "maximum" in schema:
                    yield method.upper(), path, p["name"], schema["minimum"], schema["maximum"]


INTEGER_PARAMS = sorted(_integer_params())
#: What each endpoint needs besides the parameter probed, to reach its check.
BASE_PARAMS: dict[tuple[str, str], dict[str, str]] = {
    ("GET", f"{V1}/klines"): {"symbol": SYMBOL, "interval": "1m"},
    ("PUT", f"{V1}/order"): {"symbol": SYMBOL, "price": "10.00"},
}


def _base(method: str, path: str) -> dict[str, str]:
    return BASE_PARAMS.get((method, path), {"symbol": SYMBOL})


#: (method, path, a required parameter the document marks so).
REQUIRED = (
    [
        (m.upper(), path, p["name"])
        for path, ops in DOC["paths"].items()
        if path != STREAM_PATH
        for m, op in ops.items()
        for p in op.get("parameters", ())
        if p["required"]
    ]
    + [
        ("POST", f"{V1}/order", name)
        for name in _schema_keys({"$ref": "#/components/schemas/NewOrderRequest"})[0]
    ]
    + [
        ("POST", f"{V1}/apiKey", name)
        for name in _schema_keys({"$ref": "#/components/schemas/ApiKeyRequest"})[0]
    ]
)


def _fits(value: Any, schema: dict[str, Any]) -> None:
    required, props = _schema_keys(schema)
    assert isinstance(value, dict), value
    assert required <= set(value) <= props, (sorted(value), sorted(props), sorted(required))


# -- the scenario -------------------------------------------------------------------------------


class _DownHistory:
    """A history database that fails every query (``RestApi.db`` answers 503)."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def failing(*_args: object, **_kwargs: object) -> None:
            raise OSError("database down")

        return failing


async def _login(url: str, user: str, scopes: str = "read,trade") -> RestClient:
    client = RestClient(url)
    await client.login(user, USERS[user][0], scopes)
    return client


async def _close_reason(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    msg = await ws.receive(timeout=3)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
    return int(msg.data or 0), str(msg.extra or "")


async def _messages(ws: aiohttp.ClientWebSocketResponse, quiet_s: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        while True:
            msg = await ws.receive(timeout=quiet_s)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            out.append(json.loads(msg.data))
    return out


Call = tuple[int, Any]


async def _call(client: RestClient, method: str, path: str, params: dict[str, Any]) -> Call:
    """(status, decoded answer) of a request, signed by ``client`` but for a public one or a
    login."""
    signed = path != f"{V1}/apiKey" or method != "POST"
    signed = signed and (method, path) not in PUBLIC
    return await client.request(method, path, signed=signed, **params)


async def _probes(
    alice: RestClient, read: RestClient, trade: RestClient, seen: dict[str, Any]
) -> None:
    """The parameters each endpoint takes (an unknown one's -1104) and the scope it needs
    (a read-only and a trade-only key's answers); each integer parameter's bounds; each
    required parameter left out."""
    seen["probe"], seen["scope"], seen["bounds"], seen["missing"] = {}, {}, {}, {}
    for method, path in sorted(NAMED - {("GET", STREAM_PATH)}):
        seen["probe"][(method, path)] = await _call(alice, method, path, {"zzz": "1"})
        if (method, path) in SIGNED:
            seen["scope"][(method, path)] = (
                (await _call(read, method, path, {"zzz": "1"}))[0],
                (await _call(trade, method, path, {"zzz": "1"}))[0],
            )
    for method, path, name, low, high in INTEGER_PARAMS:
        for value in (low - 1, low, high, high + 1):
            params = {**_base(method, path), name: str(value)}
            seen["bounds"][(method, path, name, value)] = await _call(alice, method, path, params)
    whole: dict[tuple[str, str], dict[str, str]] = {
        ("POST", f"{V1}/order"): {
            **{"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "price": "1.00"},
            **{"quantity": "0.01", "timeInForce": "IOC"},
        },
        ("POST", f"{V1}/apiKey"): {"username": "NOBODY2", "password": "x"},
        ("GET", f"{V1}/klines"): {"symbol": SYMBOL, "interval": "1m"},
    }
    for method, path, name in REQUIRED:
        params = dict(whole.get((method, path), {"symbol": SYMBOL}))
        params.pop(name)
        seen["missing"][(method, path, name)] = await _call(alice, method, path, params)


async def _scenario(h: Harness, seen: dict[str, Any]) -> None:
    assert h.gateway is not None and h.gateway.api is not None
    api = h.gateway.api
    url = f"http://127.0.0.1:{api.port}"
    order, new = f"{V1}/order", {"symbol": SYMBOL, "type": "LIMIT"}
    session = aiohttp.ClientSession()
    clients: list[RestClient] = []
    try:
        alice = await _login(url, "ALICE")
        alice_read = await _login(url, "ALICE", "read")
        alice_trade = await _login(url, "ALICE", "trade")
        bob = await _login(url, "BOB")
        clients += [alice, alice_read, alice_trade, bob]
        await _probes(alice, alice_read, alice_trade, seen)
        async with session.get(f"{url}{STREAM_PATH}?zzz=1") as r:
            seen["probe"][("GET", STREAM_PATH)] = (r.status, await r.json())
        async with session.get(alice_trade.stream_url()) as r:
            seen["stream_trade_only"] = (r.status, await r.json())

        # orders, and what the stream says of them
        ws = await alice.stream()
        bid = {**new, "side": "BUY", "price": "10.00", "quantity": "0.10"}
        seen["new"] = await _call(alice, "POST", order, {**bid, "newClientOrderId": "r106-a"})
        seen["dup"] = await _call(alice, "POST", order, {**bid, "newClientOrderId": "r106-a"})
        amend = {"symbol": SYMBOL, "origClientOrderId": "r106-a", "price": "10.05"}
        seen["amend"] = await _call(alice, "PUT", order, amend)
        ask = {**new, "side": "SELL", "price": "10.05", "quantity": "0.10"}
        seen["bob_sell"] = await _call(bob, "POST", order, ask)
        never = {"symbol": SYMBOL, "origClientOrderId": "r106-never"}
        seen["never_used"] = await _call(alice, "GET", order, never)
        ask = {**new, "side": "SELL", "price": "20.00", "quantity": "0.10"}
        resting = (await _call(alice, "POST", order, ask))[1]
        stp = {**ask, "side": "BUY", "selfTradePreventionMode": "EXPIRE_TAKER"}
        seen["stp"] = await _call(alice, "POST", order, stp)
        by_id = {"symbol": SYMBOL, "orderId": resting["orderId"]}
        seen["cancel"] = await _call(alice, "DELETE", order, by_id)
        seen["rejected"] = await _call(alice, "POST", order, {**ask, "quantity": "5000000.00"})
        ice = {**new, "side": "BUY", "price": "5.00", "quantity": "1.00", "icebergQty": "0.10"}
        iceberg = (await _call(alice, "POST", order, ice))[1]
        bigger = {"symbol": SYMBOL, "orderId": iceberg["orderId"], "quantity": "20.00"}
        seen["amend_iceberg"] = await _call(alice, "PUT", order, bigger)
        seen["mass_cancel"] = await _call(alice, "DELETE", f"{V1}/openOrders", {})
        seen["account"] = await _call(alice, "GET", f"{V1}/account", {})
        carol = await _login(url, "CAROL")
        clients.append(carol)
        seen["carol_first_key"] = carol.api_key
        seen["carol_account"] = await _call(carol, "GET", f"{V1}/account", {})
        for name, path in (("time", "time"), ("ping", "ping"), ("exchange_info", "exchangeInfo")):
            seen[name] = await _call(alice, "GET", f"{V1}/{path}", {})

        # orders the exchange has not answered: 504, then PENDING_NEW, behind an answered one
        low = {**new, "side": "BUY", "price": "1.00", "quantity": "0.10"}
        await _call(alice, "POST", order, low)
        h.pause()
        seen["pending"] = await _call(alice, "POST", order, {**low, "newClientOrderId": "r106-p"})
        seen["pending_unnamed"] = await _call(alice, "POST", order, low)
        pending = {"symbol": SYMBOL, "origClientOrderId": "r106-p"}
        seen["get_pending"] = await _call(alice, "GET", order, pending)
        seen["open_orders"] = await _call(alice, "GET", f"{V1}/openOrders", {})
        seen["cancel_pending"] = await _call(alice, "DELETE", order, pending)
        h.resume()
        messages = await _messages(ws, 0.3)
        seen["stream"] = messages
        seen["events"] = [m["data"] for m in messages if m["event"] == "executionReport"]

        # the stream's refusals told as closes, or as HTTP errors
        second = await session.ws_connect(alice.stream_url() + "&closeOnRefusal=true")
        seen["close_limit"] = await _close_reason(second)
        bad = re.sub(r"signature=[0-9a-f]+", "signature=" + "0" * 64, alice.stream_url())
        third = await session.ws_connect(bad + "&closeOnRefusal=true")
        seen["close_credentials"] = await _close_reason(third)
        async with session.get(alice.stream_url()) as r:
            seen["stream_second"] = (r.status, await r.json())
        seen["stream_locks"] = sorted((gateway_root(h.cfg) / "streams").iterdir())
        await ws.close()

        # a revoked key's stream closes
        bob_ws = await bob.stream()
        await bob_ws.receive(timeout=3)  # its snapshot
        seen["bob_key"] = bob.api_key
        seen["revoke"] = await _call(bob, "DELETE", f"{V1}/apiKey", {})
        seen["revoked_stream_close"] = (await _close_reason(bob_ws))[0]

        # logins: past the keys a user holds, in the URL, with wrong passwords
        login = {"username": "CAROL", "password": "carol-pw"}
        seen["login"] = await _call(carol, "POST", f"{V1}/apiKey", login)
        await _call(carol, "POST", f"{V1}/apiKey", login)
        seen["login_evicting"] = await _call(carol, "POST", f"{V1}/apiKey", login)
        seen["evicted_signs"] = await _call(carol, "GET", f"{V1}/account", {})
        async with session.post(f"{url}{V1}/apiKey?{urlencode(login)}") as r:
            seen["login_in_url"] = (r.status, await r.json())
        for _ in range(2):
            wrong = {"username": "NOBODY", "password": "x"}
            async with session.post(f"{url}{V1}/apiKey", data=wrong) as r:
                seen["wrong_password_again"] = (r.status, await r.json())
                seen["wrong_password_retry_after"] = r.headers.get("Retry-After")

        # a cancel by client id while the database fails
        api.history = cast(Any, _DownHistory())
        try:
            gone = {"symbol": SYMBOL, "origClientOrderId": "r106-gone"}
            seen["cancel_db_down"] = await _call(alice, "DELETE", order, gone)
        finally:
            api.history = None

        # the middleware's error bodies, and the fast lane's pipelining rule
        async with session.get(f"{url}{V1}/nope") as r:
            seen["not_found"] = (r.status, await r.json())
        async with session.patch(f"{url}{order}") as r:
            seen["not_allowed"] = (r.status, await r.json(), r.headers.get("Allow", ""))
        async with session.post(f"{url}{order}", data=b"x" * 20_000) as r:
            seen["too_large"] = (r.status, await r.json())
        seen["pipelined"] = await _pipelined(api.port)
        keys = apikeys_path(h.cfg)
        seen["keys_file"], seen["keys_mode"] = keys, stat.S_IMODE(keys.stat().st_mode)
    finally:
        for client in clients:
            await client.close()
        await session.close()


async def _pipelined(port: int) -> bytes:
    """Read 1: an order whole and the start of a second; read 2: the rest of the second and
    a ping (unsigned orders: 401 from the lane)."""
    order = request(b"POST /api/v1/order HTTP/1.1", b"Content-Length: 0")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(order + order[:20])
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(order[20:] + request(b"GET /api/v1/ping HTTP/1.1"))
        raw = b""
        async with asyncio.timeout(3):
            while chunk := await reader.read(65536):
                raw += chunk
        return raw
    finally:
        writer.close()


_instances = itertools.count()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """What the gateway answered in the scenario (``_scenario``), by name."""
    instance = f"t{os.getpid()}x106{next(_instances):03d}"
    cfg = _config(instance, tmp_path_factory.mktemp("r106"))
    h = Harness(cfg)
    for user, (password, account) in USERS.items():
        h.add_user(user, password, account)
    h.fund(601)
    h.fund(602)
    h.fund(603, usd=0, btc=10**6)
    seen: dict[str, Any] = {"instance": instance}

    async def main() -> None:
        await h.start()
        try:
            await asyncio.wait_for(_scenario(h, seen), 30)
        finally:
            await h.stop()

    try:
        asyncio.run(main())
        yield seen
    finally:
        h.close()
        remove_instance(instance)
