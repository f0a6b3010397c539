"""Review 106: README.md's "### The REST API and the private stream" (under "## Operate") held
to the code mechanically, and the served OpenAPI document (``procs/gateway/openapi.py``,
``GET /openapi.json``) held to both: every endpoint the README names is routed (aiohttp's
router, and the fast lane's three), and every routed one is in the README and the document;
every parameter the README names is taken, with the limits and defaults it states, and every
parameter the code takes is in the document; every error code the README names is answered
for the cause it gives, naming the value, and every code of ``api_errors.py`` (and
``signing.py``) is documented; the keys of each answer are those the code writes; and the
private stream's messages are as the README says.

Convention (review 104's): the README is read as it is when the test runs, and each claim is
found in it by a quote (whitespace folded), so a claim reworded fails here, loudly, rather
than being checked no longer. A claim checked and found right is a plain test. Eight
disagreements were found (HEAD routed for every GET, 13 error codes the README never named,
three codes missing from the document's errors, a cancel's 503, three README wordings), each
pinned as a strict xfail and fixed in the same change; where the fix may be on either side,
the test passes once either is.

What the code writes is taken from the code's own functions where they can be called alone
(``rest_params``, ``signing``, ``LiveOrder.json``, ``history.order_json``, ``PublicRoutes``
over a mocked request, ``PrivateStreams._admit``, ``Subscriber``); what needs a running
gateway (the answers of signed requests, the parameters each endpoint takes as its -1104
lists them, the stream's messages and closes) is observed once, by one scenario against an
in-process exchange (``harness.py``: rings, router, matcher, a gateway on a free port, no
database, no market data) whose observations the tests below then read: a few seconds in
all, for the module.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import itertools
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from config import load_profile
from config.edges import GatewayConfig, RestConfig
from config.schema import DatabaseConfig, RingexConfig, RiskConfig, SymbolConfig
from procs.common.apikeys import SCOPES
from procs.common.result_codes import ResultCode
from procs.common.topology import apikeys_path, gateway_root, users_path
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.common.users import UserStore
from procs.core.market.tape import TRADES_KEPT
from procs.gateway import api_errors as codes
from procs.gateway import (
    history,
    openapi,
    rest_history,
    rest_keys,
    rest_public,
    signing,
    stream_subscriber,
)
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError
from procs.gateway.clordids import API_IDS_KEPT
from procs.gateway.fast_request import plain_query
from procs.gateway.instruments import Instruments
from procs.gateway.live_trades import MAX_LIVE_FILLS
from procs.gateway.private_stream import PATH as STREAM_PATH
from procs.gateway.private_stream import _too_many
from procs.gateway.recent_elsewhere import RECENT_EVENTS
from procs.gateway.rest import RestApi
from procs.gateway.rest_body import BODY_TIMEOUT_S, body_pairs, checked_params
from procs.gateway.rest_catch_up import UNFOLLOWED_KEPT
from procs.gateway.rest_client import RestClient
from procs.gateway.rest_mass_cancel import ENDS_WAIT_S
from procs.gateway.rest_open_orders import LISTING_WAIT_S
from procs.gateway.rest_order_state import LiveOrder
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_public import PublicRoutes
from procs.gateway.stream_subscriber import CLOSE_GRACE_S, HEARTBEAT_S, Subscriber
from procs.gateway.unfiled_orders import MAX_UNFILED_ORDERS
from shm.inspect import remove_instance
from tests.unit.gateway.harness import Harness, config
from tests.unit.gateway.rest_rig import request, statuses

ROOT = Path(__file__).parents[3]
README = (ROOT / "README.md").read_text()
GATEWAY = ROOT / "procs" / "gateway"
V1 = "/api/v1"
TITLE = "### The REST API and the private stream"


def _folded(text: str) -> str:
    return " ".join(text.split())


def _section() -> str:
    """The README section under review: from its title to the next heading."""
    start = README.index(f"\n{TITLE}\n")
    ends = [i for i in (README.find("\n## ", start + 1), README.find("\n### ", start + 1)) if i > 0]
    return README[start : min(ends)]


SECTION = _section()


def _says(quote: str, text: str = SECTION) -> bool:
    return _folded(quote) in _folded(text)


def _claim(quote: str) -> None:
    """The section still says ``quote`` (whitespace folded): the anchor of a claim checked."""
    assert _says(quote), f"README's {TITLE!r} no longer says {quote!r}"


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


def _documented_params(method: str, path: str) -> set[str]:
    """The parameters the document gives an operation: its query's, and its body's."""
    op = _operation(method, path)
    names = {p["name"] for p in op.get("parameters", ())}
    body = op.get("requestBody")
    if body is not None:
        for media in body["content"].values():
            names |= _schema_keys(media["schema"])[1]
    return names


def _documented_scope(method: str, path: str) -> str | None:
    """The scope the document says an operation needs ("": any valid key; None: unsigned)."""
    op = _operation(method, path)
    if not op.get("security"):
        return None
    found = re.search(r"needs scope `(\w+)`", op.get("description", ""))
    return found[1] if found else ""


# -- 1. the routes ----------------------------------------------------------------------------

#: Every endpoint, as the README names it: (method, path, the README's words, the scope the
#: README gives it: None unsigned, "" any valid key, "read", "trade").
ENDPOINTS: list[tuple[str, str, str, str | None]] = [
    ("GET", f"{V1}/ping", "- Public: `ping`,", None),
    ("GET", f"{V1}/time", "- Public: `ping`, `time`,", None),
    ("GET", f"{V1}/exchangeInfo", "`time`, `exchangeInfo` (each symbol's `status`", None),
    ("GET", f"{V1}/depth", "the limit-price collar), `depth`, `trades`", None),
    ("GET", f"{V1}/trades", "`trades` (`limit` up to 1,000", None),
    ("GET", f"{V1}/ticker/24hr", "`ticker/24hr` (`symbol` only)", None),
    ("GET", f"{V1}/klines", "`klines` (every parameter checked, `interval` mandatory", None),
    ("GET", "/openapi.json", "`GET /openapi.json` documents every route", None),
    ("POST", f"{V1}/apiKey", "Keys: `POST /api/v1/apiKey` with `username`, `password`", None),
    ("DELETE", f"{V1}/apiKey", "`DELETE /api/v1/apiKey` revokes the key that signs it", ""),
    ("POST", f"{V1}/order", "Private: `POST/PUT/DELETE/GET order`", "trade"),
    ("PUT", f"{V1}/order", "Private: `POST/PUT/DELETE/GET order`", "trade"),
    ("DELETE", f"{V1}/order", "Private: `POST/PUT/DELETE/GET order`", "trade"),
    ("GET", f"{V1}/order", "Private: `POST/PUT/DELETE/GET order`", "read"),
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


def _routes(api: RestApi) -> dict[tuple[str, str], Any]:
    """aiohttp's routes: (method, path) -> handler."""
    return {
        (r.method, r.resource.canonical): r.handler
        for r in api.app.router.routes()
        if r.resource is not None
    }


@pytest.mark.parametrize(("method", "path", "quote", "scope"), ENDPOINTS)
def test_each_endpoint_the_readme_names_is_routed_and_documented(
    local: RestApi, method: str, path: str, quote: str, scope: str | None
) -> None:
    """README "The REST API and the private stream" (Public, Keys, Private, the private
    stream): each endpoint it names is one aiohttp's router serves (rest.py ``_app`` and the
    route classes' ``register``) and one the OpenAPI document lists (openapi.py ``_paths``)."""
    _claim(quote)
    assert (method, path) in _routes(local)
    assert method.lower() in DOC["paths"].get(path, {})


def test_every_routed_endpoint_is_one_the_readme_names_and_the_document_lists(
    local: RestApi,
) -> None:
    """rest.py:224 ``_app`` (and each ``register``): the router serves exactly the endpoints
    of ``ENDPOINTS`` (each of which the README names, above), bar the HEADs aiohttp adds
    (next test), and the document lists exactly those (openapi.py:249 ``_paths``, "every
    route ``rest.py`` registers")."""
    routed = {k for k in _routes(local) if k[0] != "HEAD"}
    documented = {(m.upper(), p) for p, ops in DOC["paths"].items() for m in ops}
    assert routed == NAMED
    assert documented == NAMED


def test_no_route_is_served_that_neither_the_readme_nor_the_document_has(local: RestApi) -> None:
    """rest.py:230-236, rest_public.py:69-77, rest_history.py:22-23: ``add_get`` also routes
    HEAD for the path; the README (each endpoint by its method) and the document list GET
    only, so HEAD is an endpoint documented nowhere (passes once none is routed, or the
    document lists each)."""
    heads = sorted(p for m, p in _routes(local) if m == "HEAD")
    assert all("head" in DOC["paths"].get(p, {}) for p in heads), heads


def test_the_fast_lane_serves_post_delete_and_get_order_with_aiohttps_handlers(
    local: RestApi,
) -> None:
    """README: "`POST`, `DELETE` and `GET /api/v1/order` (not `PUT` ...) are parsed by
    httptools and answered by the same handlers ... as on aiohttp" (rest.py:162
    ``fast_routes``; rest_fast.py ``on_headers_complete`` hands any other to aiohttp)."""
    _claim(
        "`POST`, `DELETE` and `GET /api/v1/order` (not `PUT`, an amend, which aiohttp serves) "
        "are parsed by httptools and answered by the same handlers, checks and error bodies "
        "as on aiohttp"
    )
    assert set(local.fast_routes) == {
        ("POST", f"{V1}/order"),
        ("DELETE", f"{V1}/order"),
        ("GET", f"{V1}/order"),
    }
    routes = _routes(local)
    for key, handler in local.fast_routes.items():
        assert routes[key] == handler, key
    assert local.rest.fast_lane is True  # "on by default"
    assert RestConfig().fast_lane is True


#: Queries with nothing to decode, and some that have (``plain_query`` gives None for those).
QUERIES = [
    "symbol=BTC-USD&orderId=12",
    "symbol=BTC-USD&origClientOrderId=a.b:c/d-e_f",
    "a=1&&b=2",
    "a=&=b&c",
    "a=1=2&a=3",
    "=",
    "&",
    "x=1&",
    "a=%41",
    "a=+",
    "a=1#f",
    "a=\u00e9",
]


@pytest.mark.parametrize("query", QUERIES)
def test_a_query_with_nothing_to_decode_is_split_to_yarls_pairs(query: str) -> None:
    """README: "A query with nothing to decode (no `%`, `+`, `#` or non-ASCII ...) is split
    there without building a URL, to exactly the pairs yarl gives aiohttp" (fast_request.py
    ``plain_query``); any other is yarl's (None here)."""
    _claim(
        "A query with nothing to decode (no `%`, `+`, `#` or non-ASCII: a cancel's, as a rule) "
        "is split there without building a URL, to exactly the pairs yarl gives aiohttp"
    )
    pairs = plain_query(query)
    special = not query.isascii() or any(c in query for c in "%+#")
    assert (pairs is None) == special
    if pairs is not None:
        assert pairs == list(URL(f"/p?{query}", encoded=True).query.items())


# -- 2. the parameters ------------------------------------------------------------------------


def _taken(seen: dict[str, Any], method: str, path: str) -> set[str]:
    """The parameters an endpoint takes, as its -1104 to an unknown one (``zzz``) lists them
    (rest_params.py:129 ``only``): the code's own list, over HTTP."""
    status, body = seen["probe"][(method, path)]
    assert status == 400 and body["code"] == codes.UNKNOWN_PARAM, (method, path, body)
    listed = re.fullmatch(r"parameter 'zzz' is not one this endpoint takes \((.*)\)", body["msg"])
    assert listed is not None, body
    return set(listed[1].split(", ")) - {""}


@pytest.mark.parametrize(("method", "path"), sorted(NAMED))
def test_every_parameter_an_endpoint_takes_is_in_the_document(
    served: dict[str, Any], method: str, path: str
) -> None:
    """Each endpoint's parameters (rest_params.py:101-122, the sets each handler passes to
    ``params``; private_stream.py ``STREAM_PARAMS``), as its -1104 names them, are those the
    document gives its operation (query parameters, and a body's properties)."""
    assert _taken(served, method, path) == _documented_params(method, path)


#: (method, path, parameter, the README's words naming it for that endpoint).
README_PARAMS: list[tuple[str, str, str, str]] = [
    ("GET", f"{V1}/trades", "limit", "`trades` (`limit` up to 1,000"),
    ("GET", f"{V1}/ticker/24hr", "symbol", "`ticker/24hr` (`symbol` only)"),
    ("GET", f"{V1}/klines", "interval", "`klines` (every parameter checked, `interval` mandatory"),
    ("POST", f"{V1}/apiKey", "username", "Keys: `POST /api/v1/apiKey` with `username`"),
    ("POST", f"{V1}/apiKey", "password", "with `username`, `password` (a FIX user's"),
    ("POST", f"{V1}/apiKey", "scopes", "`scopes` (`read,trade`) returns `apiKey`"),
    ("PUT", f"{V1}/order", "price", "named as for a cancel, with a new `price`"),
    ("PUT", f"{V1}/order", "quantity", "a new total `quantity` (fills included) or both"),
    ("PUT", f"{V1}/order", "origClientOrderId", "so `origClientOrderId` always names one order"),
    ("PUT", f"{V1}/order", "orderId", "a cancel or amend goes to it by its `orderId`"),
    ("DELETE", f"{V1}/order", "origClientOrderId", "a cancel by its `origClientOrderId`"),
    ("DELETE", f"{V1}/order", "orderId", "a cancel or amend goes to it by its `orderId`"),
    ("GET", f"{V1}/order", "orderId", "`orderId` with `origClientOrderId` must name the same"),
    ("GET", f"{V1}/order", "origClientOrderId", "`orderId` with `origClientOrderId` must name"),
    ("POST", f"{V1}/order", "newClientOrderId", "`newClientOrderId` that an open order of the"),
    ("POST", f"{V1}/order", "selfTradePreventionMode", "`selfTradePreventionMode` defaults to"),
    ("POST", f"{V1}/order", "stopPrice", "a stop whose `stopPrice` the market has already"),
    ("POST", f"{V1}/order", "icebergQty", "an `icebergQty` below `minQty` is refused"),
    ("POST", f"{V1}/order", "timeInForce", "(`timeinforce` for `timeInForce`)"),
    ("DELETE", f"{V1}/openOrders", "symbol", "`DELETE openOrders` (optional `symbol`;"),
    ("GET", f"{V1}/allOrders", "orderId", "from `orderId` / `fromId` or `startTime`"),
    ("GET", f"{V1}/allOrders", "startTime", "from `orderId` / `fromId` or `startTime`"),
    ("GET", f"{V1}/allOrders", "endTime", "a `startTime` after the `endTime` is refused"),
    ("GET", f"{V1}/allOrders", "limit", "else the newest `limit`;"),
    ("GET", f"{V1}/myTrades", "fromId", "from `orderId` / `fromId` or `startTime`"),
    ("GET", f"{V1}/myTrades", "orderId", "`myTrades` with `orderId` lists that order's fills"),
    ("GET", f"{V1}/myTrades", "startTime", "from `orderId` / `fromId` or `startTime`"),
    ("GET", f"{V1}/myTrades", "endTime", "a `startTime` after the `endTime` is refused"),
    ("GET", f"{V1}/myTrades", "limit", "so it may hold `limit` + 1 rows"),
    ("GET", f"{V1}/klines", "startTime", "(-1023, here and in `klines`)"),
    ("GET", f"{V1}/klines", "endTime", "(-1023, here and in `klines`)"),
    ("GET", STREAM_PATH, "apiKey", "`ws://HOST:PORT/api/v1/stream?apiKey=K&"),
    ("GET", STREAM_PATH, "timestamp", "stream?apiKey=K&timestamp=T&recvWindow=W"),
    ("GET", STREAM_PATH, "recvWindow", "&timestamp=T&recvWindow=W&signature=S`"),
    ("GET", STREAM_PATH, "signature", "&recvWindow=W&signature=S`"),
    ("GET", STREAM_PATH, "closeOnRefusal", "with `closeOnRefusal=true` in the URL (not signed)"),
]


@pytest.mark.parametrize(("method", "path", "name", "quote"), README_PARAMS)
def test_each_parameter_the_readme_names_is_taken_by_its_endpoint(
    served: dict[str, Any], method: str, path: str, name: str, quote: str
) -> None:
    """README (Public, Keys, Private, the stream): each parameter it names for an endpoint is
    one that endpoint takes (its -1104 lists it) and the document gives it."""
    _claim(quote)
    assert name in _taken(served, method, path)
    assert name in _documented_params(method, path)


def test_the_readme_example_order_is_one_the_dev_profile_takes() -> None:
    """README: "A gateway with a `[gateways.rest]` section (the dev profile: port 8080)
    serves `/api/v1/`"; its ``RestClient`` example (after the section) sends symbol, side,
    type, price, quantity: each one ``POST /api/v1/order`` takes (rest_params.py:104
    ``NEW_ORDER_PARAMS``), and ``rp.new_order`` takes the example as it is on the dev
    profile's symbols."""
    _claim(
        "A gateway with a `[gateways.rest]` section (the dev profile: port 8080) serves `/api/v1/`"
    )
    dev = load_profile("dev")
    rests = [gw.rest for gw in dev.gateways if gw.rest is not None]
    assert rests and rests[0].port == 8080
    example = re.search(r'"POST",\s*"/api/v1/order",\s*(.*?)\)\n', README, re.S)
    assert example is not None
    params = dict(re.findall(r'(\w+)="([^"]*)"', example[1]))
    assert set(params) == {"symbol", "side", "type", "price", "quantity"}
    assert set(params) <= rp.NEW_ORDER_PARAMS
    order = rp.new_order(params, Instruments(dev.symbols))
    assert (order.side, order.ord_type, order.tif) == (Side.BUY, OrdType.LIMIT, TimeInForce.GTC)


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


@pytest.mark.parametrize(("method", "path", "name", "low", "high"), INTEGER_PARAMS)
def test_each_integer_parameters_documented_bounds_are_the_codes(
    served: dict[str, Any], method: str, path: str, name: str, low: int, high: int
) -> None:
    """openapi.py ``_limit``, ``_times``, ``_order_ref`` and the history ids: each bound the
    document gives an integer parameter is the code's (rest_params.py ``integer``,
    ``opt_integer``, ``order_id``; rest_public.py ``MARKET_LIMIT``): one past it is refused
    (400, -1100, naming the parameter and the range), the bound itself is not refused for
    it. (README: "`trades` (`limit` up to 1,000"; allOrders, myTrades, klines: 1..1,000.)"""
    for value, refused in ((low - 1, True), (low, False), (high, False), (high + 1, True)):
        status, body = served["bounds"][(method, path, name, value)]
        if refused:
            assert status == 400 and body["code"] == codes.ILLEGAL_PARAM, (value, body)
            assert body["msg"].startswith(f"{name} {value} is outside {low}.."), body
        else:
            assert not (
                body and body.get("code") == codes.ILLEGAL_PARAM and body["msg"].startswith(name)
            ), (value, body)


def _limit_calls() -> dict[str, tuple[int, int, int]]:
    """Each handler's ``rp.integer(params, "limit", default, low, high)``, read from the
    source: {handler: (default, low, high)} (a name for ``high`` resolved in its module)."""
    found: dict[str, tuple[int, int, int]] = {}
    for module in (rest_public, rest_history):
        source = inspect.getsource(module)
        for fn in ast.walk(ast.parse(source)):
            if not isinstance(fn, ast.AsyncFunctionDef | ast.FunctionDef):
                continue
            for call in ast.walk(fn):
                if (
                    isinstance(call, ast.Call)
                    and ast.unparse(call.func) == "rp.integer"
                    and isinstance(call.args[1], ast.Constant)
                    and call.args[1].value == "limit"
                ):
                    default, low, high = (
                        int(cast(int, a.value))
                        if isinstance(a, ast.Constant)
                        else int(getattr(module, ast.unparse(a)))
                        for a in call.args[2:5]
                    )
                    found[fn.name] = (default, low, high)
    return found


#: (handler, the paths it serves).
LIMIT_HANDLERS = [
    ("handler", [f"{V1}/depth", f"{V1}/trades"]),
    ("klines", [f"{V1}/klines"]),
    ("all_orders", [f"{V1}/allOrders"]),
    ("my_trades", [f"{V1}/myTrades"]),
]


@pytest.mark.parametrize(("handler", "paths"), LIMIT_HANDLERS)
def test_each_limits_default_is_the_documents(handler: str, paths: list[str]) -> None:
    """rest_public.py:199 (depth, trades: 100, up to the tape's 1,000), :240 (klines: 500),
    rest_history.py:30, :52 (allOrders, myTrades: 500, up to 1,000): the default and bounds
    of ``limit`` are those the document gives (openapi.py ``_limit``)."""
    default, low, high = _limit_calls()[handler]
    for path in paths:
        schema = next(
            p["schema"] for p in _operation("GET", path)["parameters"] if p["name"] == "limit"
        )
        assert (schema["default"], schema["minimum"], schema["maximum"]) == (default, low, high)


def test_trades_limit_is_the_tapes_thousand() -> None:
    """README: "`trades` (`limit` up to 1,000: the tape keeps the newest 1,000 trades a
    symbol)" (rest_public.py:39 ``MARKET_LIMIT = TRADES_KEPT``, tape.py:10)."""
    _claim("`trades` (`limit` up to 1,000: the tape keeps the newest 1,000 trades a symbol)")
    assert rest_public.MARKET_LIMIT == TRADES_KEPT == 1_000


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


@pytest.mark.parametrize(("method", "path", "name"), sorted(REQUIRED))
def test_each_parameter_the_document_requires_is_mandatory(
    served: dict[str, Any], method: str, path: str, name: str
) -> None:
    """The document's required parameters (openapi.py ``_symbol``, ``interval``, the
    request bodies' ``required``): a request without one is refused, 400 -1102, naming it
    (rest_params.py:166 ``required``)."""
    status, body = served["missing"][(method, path, name)]
    assert (status, body["code"]) == (400, codes.MANDATORY_PARAM), body
    assert f"'{name}'" in body["msg"]


def test_klines_checks_every_parameter_before_the_database_is_asked(local: RestApi) -> None:
    """README: "`klines` (every parameter checked, `interval` mandatory, before the database
    is asked for)" (rest_public.py:231-246): without a database, a missing interval is
    -1102, a bad one -1120, a start after the end -1023, a limit past 1,000 -1100; only
    parameters that all hold reach the database (here: 503, none enabled)."""
    _claim(
        "`klines` (every parameter checked, `interval` mandatory, before the database is asked for)"
    )
    routes = PublicRoutes(local)

    async def klines(query: str) -> ApiError:
        request = make_mocked_request("GET", f"{V1}/klines?{query}")
        return await _refused_async(routes.klines(request))

    base = f"symbol={SYMBOL}"
    cases = [
        (base, 400, codes.MANDATORY_PARAM, "'interval'"),
        (f"{base}&interval=7m", 400, codes.BAD_INTERVAL, "'7m'"),
        (
            f"{base}&interval=1m&startTime=2&endTime=1",
            400,
            codes.BAD_TIME_RANGE,
            "startTime 2 is after endTime 1",
        ),
        (f"{base}&interval=1m&limit=1001", 400, codes.ILLEGAL_PARAM, "limit 1001"),
        (f"{base}&interval=1m&limit=1000", 503, codes.DISCONNECTED, "database"),
    ]
    for query, status, code, named in cases:
        refused = _run(klines(query))
        assert (refused.status, refused.code) == (status, code), (query, refused.msg)
        assert named in refused.msg


def test_exchange_info_sizes_are_multiples_of_the_step_and_status_unknown_without_market_data(
    local: RestApi,
) -> None:
    """README: each symbol's `status` is ... "`UNKNOWN` while it is disabled"; "its `minQty`
    and `maxQty` are the least and the largest size an order may have, multiples of
    `stepSize` even where the config's `min_qty` and `max_qty` are not"; `bandBps` and
    `limitBandBps` shown (rest_public.py:91 ``exchange_info``, schema.py ``least_qty``)."""
    _claim("`UNKNOWN` while it is disabled or does not answer within a second")
    _claim(
        "its `minQty` and `maxQty` are the least and the largest size an order may have, "
        "multiples of `stepSize` even where the config's `min_qty` and `max_qty` are not, "
        "and `bandBps` and `limitBandBps` the market order band and the limit-price collar"
    )
    odd = SymbolConfig(
        name="BTC-USD",
        id=1,
        base="BTC",
        price_decimals=2,
        qty_decimals=2,
        lot=5,
        min_qty=7,
        max_qty=1_003,
        band_bps=300,
        limit_band_bps=200,
    )
    api = cast(Any, type("Api", (), {}))()
    api.cfg = msgspec.structs.replace(local.cfg, symbols=[odd])
    api.rest, api.market_url, api.client = local.rest, None, None
    api.params = local.params
    response = _run(PublicRoutes(api).exchange_info(make_mocked_request("GET", "/x")))
    info = json.loads(response.body)["symbols"][0]
    assert (info["minQty"], info["maxQty"], info["stepSize"]) == ("0.10", "10.00", "0.05")
    assert (info["status"], info["bandBps"], info["limitBandBps"]) == ("UNKNOWN", 300, 200)
    assert info["icebergParts"] == odd.iceberg_parts  # the README's `icebergParts` slices


def test_exchange_info_status_timings_are_the_readmes() -> None:
    """README: "`UNKNOWN` while it is disabled or does not answer within a second; callers
    share one fetch and its answer for half a second, and after a failed one hear `UNKNOWN`
    at once for 2 s" (rest_public.py:35-47)."""
    _claim(
        "callers share one fetch and its answer for half a second, and after a failed one "
        "hear `UNKNOWN` at once for 2 s rather than wait again"
    )
    assert rest_public.STATUS_TIMEOUT_S == 1.0
    assert rest_public.STATUS_TTL_S == 0.5
    assert rest_public.STATUS_RETRY_S == 2.0
    assert rest_public.UNKNOWN_STATUS == "UNKNOWN"
    assert _resolve(DOC["components"]["schemas"]["ExchangeInfo"])["properties"]["symbols"]["items"][
        "properties"
    ]["status"]["enum"] == ["TRADING", "HALT", "UNKNOWN"]


def test_market_data_gets_five_seconds_then_a_503_says_so() -> None:
    """README: "(these three from the market-data process, which gets 5 s to answer: past
    that a 503 says so)" (rest_public.py:41 ``MARKET_TIMEOUT_S``, :214 the 503 and its message)."""
    _claim(
        "(these three from the market-data process, which gets 5 s to answer: past that "
        "a 503 says so)"
    )
    assert rest_public.MARKET_TIMEOUT_S == 5.0
    source = inspect.getsource(PublicRoutes.proxy)
    assert "did not answer within" in source and "503" in source


def test_signing_headers_window_and_payload_are_the_readmes(local: RestApi) -> None:
    """README: "`X-RINGEX-APIKEY`, `X-RINGEX-TIMESTAMP` (ms), optionally
    `X-RINGEX-RECV-WINDOW` (ms, default 5000, at most 60000) and `X-RINGEX-SIGNATURE`: the
    hex HMAC-SHA256, keyed by the secret, of `timestamp\\nwindow\\nMETHOD\\npath\\nquery\\n`
    + body (`window`: the header's value, or `recv_window_ms`, 5000, when it is not sent)"
    (signing.py:31-34, :62 ``payload``, :224-237; edges.py:29-30)."""
    _claim(
        "Private requests carry `X-RINGEX-APIKEY`, `X-RINGEX-TIMESTAMP` (ms), optionally "
        "`X-RINGEX-RECV-WINDOW` (ms, default 5000, at most 60000) and `X-RINGEX-SIGNATURE`"
    )
    _claim(
        r"keyed by the secret, of `timestamp\nwindow\nMETHOD\npath\nquery\n` + body "
        "(`window`: the header's value, or `recv_window_ms`, 5000, when it is not sent)"
    )
    assert (signing.API_KEY, signing.TIMESTAMP, signing.RECV_WINDOW, signing.SIGNATURE) == (
        "X-RINGEX-APIKEY",
        "X-RINGEX-TIMESTAMP",
        "X-RINGEX-RECV-WINDOW",
        "X-RINGEX-SIGNATURE",
    )
    assert (RestConfig().recv_window_ms, RestConfig().max_recv_window_ms) == (5_000, 60_000)
    assert signing.payload(17, 5000, "get", "/p", "a=1", b"b=2") == b"17\n5000\nGET\n/p\na=1\nb=2"
    verifier = signing.Verifier(60_000, 5_000)
    now = 1_800_000_000_000
    sig = signing.sign("s3cret", now, 5_000, "GET", "/p", "", b"")
    verifier.check("s3cret", str(now), None, sig, "GET", "/p", "", b"", now)  # 5000 taken
    sig = signing.sign("s3cret", now, 60_000, "GET", "/p", "", b"")
    verifier.check("s3cret", str(now), "60000", sig, "GET", "/p", "", b"", now)
    sig = signing.sign("s3cret", now, 60_001, "GET", "/p", "", b"")
    with pytest.raises(signing.AuthError) as refused:
        verifier.check("s3cret", str(now), "60001", sig, "GET", "/p", "", b"", now)
    assert refused.value.code == signing.BAD_WINDOW and "60001" in refused.value.msg
    stream = {p["name"]: p["schema"] for p in _operation("GET", STREAM_PATH)["parameters"]}
    assert stream["recvWindow"]["maximum"] == RestConfig().max_recv_window_ms
    # the gateway's verifier is the config's
    assert (local.verifier.default_recv_window_ms, local.verifier.max_recv_window_ms) == (
        local.rest.recv_window_ms,
        local.rest.max_recv_window_ms,
    )


def test_the_signatures_hex_case_is_the_readmes() -> None:
    """README "`X-RINGEX-SIGNATURE`: the hex HMAC-SHA256": either the README says lower-case,
    or the code takes either case (signing.py ``check``)."""
    now = 1_800_000_000_000
    upper = signing.sign("s3cret", now, 5_000, "GET", "/p", "", b"").upper()
    try:
        signing.Verifier(60_000, 5_000).check(
            "s3cret", str(now), None, upper, "GET", "/p", "", b"", now
        )
    except signing.AuthError:
        assert _says("lower-case hex HMAC-SHA256")


def test_a_signature_is_taken_once_and_one_made_before_the_start_is_minus_1021() -> None:
    """README: "A signature is accepted once, within its window" and "a request signed
    before the gateway process started is refused (`-1021`, naming its start ...)"
    (signing.py:244 ``not_before_ms``, :281 REPLAYED)."""
    _claim("A signature is accepted once, within its window")
    _claim(
        "a request signed before the gateway process started is refused (`-1021`, naming its start"
    )
    start = 1_800_000_000_000
    verifier = signing.Verifier(60_000, 5_000, not_before_ms=start)
    sig = signing.sign("k", start, 5_000, "GET", "/p", "", b"")
    verifier.verify("k", str(start), None, sig, "GET", "/p", "", b"", start + 10)
    with pytest.raises(signing.AuthError) as again:
        verifier.verify("k", str(start), None, sig, "GET", "/p", "", b"", start + 20)
    assert again.value.code == signing.REPLAYED
    early = start - 100
    sig = signing.sign("k", early, 5_000, "GET", "/p", "", b"")
    with pytest.raises(signing.AuthError) as before:
        verifier.check("k", str(early), None, sig, "GET", "/p", "", b"", start + 10)
    assert before.value.code == signing.OUTSIDE_WINDOW == -1021
    assert str(start) in before.value.msg and str(early) in before.value.msg


def test_unknown_repeated_and_empty_parameters_are_refused_naming_them() -> None:
    """README: "A parameter an endpoint does not take (`timeinforce` for `timeInForce`) is
    refused (`-1104`, naming it and those it takes), and one sent twice or sent empty
    (`icebergQty=`) is refused too (`-1100`, naming it)" (rest_params.py:125 ``only``, :136
    ``check_params``; rest_body.py:89)."""
    _claim(
        "A parameter an endpoint does not take (`timeinforce` for `timeInForce`) is refused "
        "(`-1104`, naming it and those it takes), and one sent twice or sent empty "
        "(`icebergQty=`) is refused too (`-1100`, naming it)"
    )
    unknown = _refused(lambda: checked_params([("timeinforce", "IOC")], rp.NEW_ORDER_PARAMS))
    assert unknown.code == codes.UNKNOWN_PARAM == -1104
    assert "'timeinforce'" in unknown.msg and "timeInForce" in unknown.msg
    assert all(name in unknown.msg for name in rp.NEW_ORDER_PARAMS)
    twice = _refused(lambda: checked_params([("price", "1"), ("price", "2")], rp.AMEND_PARAMS))
    empty = _refused(lambda: checked_params([("icebergQty", "")], rp.NEW_ORDER_PARAMS))
    assert "'price'" in twice.msg and "'icebergQty'" in empty.msg
    assert twice.status == empty.status == 400


def test_the_code_of_a_repeated_or_empty_parameter_is_the_readmes() -> None:
    """README "Limits": the code a parameter sent twice or empty gets is the README's: it
    names -1100 for them, or the code answers -1104 as for an unknown one."""
    twice = _refused(lambda: checked_params([("price", "1"), ("price", "2")], rp.AMEND_PARAMS))
    empty = _refused(lambda: checked_params([("icebergQty", "")], rp.NEW_ORDER_PARAMS))
    said = -1104 if not _says("-1100") else -1100
    assert twice.code == empty.code == said


def test_parameter_count_and_length_are_limited() -> None:
    """README "Limits": "parameter count and length" (rest_params.py:73-78: 24 parameters,
    -1101; values of 64 characters, -1100, a password 1,024 or its file's limit)."""
    _claim("parameter count and length")
    many = [(f"p{i}", "1") for i in range(rp.MAX_PARAMS + 1)]
    assert _refused(lambda: rp.check_params(dict(many))).code == codes.TOO_MANY_PARAMS
    long = _refused(lambda: rp.check_params({"symbol": "x" * 65}))
    assert long.code == codes.ILLEGAL_PARAM and "'symbol'" in long.msg and "64" in long.msg
    assert (rp.MAX_PARAMS, rp.MAX_VALUE_CHARS) == (24, 64)
    assert f"At most {rp.MAX_PARAMS} parameters" in DOC["info"]["description"]


def test_body_limits_are_413_and_a_ten_second_408() -> None:
    """README "Limits": "body size (`413`) and the time a body may take to arrive (10 s,
    `408`)" (rest_body.py:22 ``BODY_TIMEOUT_S``, :41; rest.py:318 the 413)."""
    _claim("body size (`413`) and the time a body may take to arrive (10 s, `408`)")
    assert BODY_TIMEOUT_S == 10.0
    assert "10 s" in openapi.ERRORS[408][1]


def test_the_refusals_of_a_new_order_name_the_rule() -> None:
    """README: "An order the exchange refuses is told its code, its price and quantity, and
    the rule where a configured limit says (the collar's `limitBandBps`, `max_open_orders`,
    `max_order_notional`); a `LIMIT_MAKER` takes `GTC` or `DAY`; an `icebergQty` below
    `minQty` is refused naming both" (rest_params.py:267-340 ``new_order``, :380
    ``refusal``)."""
    _claim(
        "An order the exchange refuses is told its code, its price and quantity, and the "
        "rule where a configured limit says (the collar's `limitBandBps`, "
        "`max_open_orders`, `max_order_notional`); a `LIMIT_MAKER` takes `GTC` or `DAY`; an "
        "`icebergQty` below `minQty` is refused naming both"
    )
    sym = SymbolConfig(
        name="BTC-USD",
        id=1,
        base="BTC",
        price_decimals=2,
        qty_decimals=2,
        min_qty=10,
        limit_band_bps=250,
    )
    inst = Instruments([sym])
    base = {"symbol": "BTC-USD", "side": "BUY", "price": "10.00", "quantity": "1.00"}
    order = rp.new_order({**base, "type": "LIMIT"}, inst)
    risk = RiskConfig(max_open_orders=7, max_order_notional=5, fee_account=99)
    for code, rule in [
        (ResultCode.PRICE_OUT_OF_BAND, "limitBandBps 250"),
        (ResultCode.TOO_MANY_OPEN_ORDERS, "at most 7 open orders"),
        (ResultCode.NOTIONAL_TOO_LARGE, "notional may be at most 5 minor units of USD"),
    ]:
        text = rp.refusal(code, order, risk)
        assert code.name in text and str(int(code)) in text
        assert "price=10.00" in text and "quantity=1.00" in text and rule in text, text
    for tif in ("GTC", "DAY"):
        rp.new_order({**base, "type": "LIMIT_MAKER", "timeInForce": tif}, inst)
    for tif in ("IOC", "FOK"):
        maker = {**base, "type": "LIMIT_MAKER", "timeInForce": tif}
        with pytest.raises(ApiError) as refused:
            rp.new_order(maker, inst)
        assert refused.value.code == codes.ILLEGAL_PARAM and tif in refused.value.msg
    ice = {**base, "type": "LIMIT", "icebergQty": "0.05"}
    below = _refused(lambda: rp.new_order(ice, inst))
    assert below.code == codes.FILTER_FAILURE
    assert "icebergQty 0.05" in below.msg and "minQty 0.10" in below.msg


def test_self_trade_prevention_defaults_to_none() -> None:
    """README: "`selfTradePreventionMode` defaults to `NONE`" (rest_params.py:334), as the
    document's default says (openapi.py ``NewOrderRequest``)."""
    _claim("`selfTradePreventionMode` defaults to `NONE`")
    inst = Instruments([SymbolConfig(name="BTC-USD", id=1, base="BTC")])
    order = rp.new_order(
        {"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT", "price": "1", "quantity": "1"}, inst
    )
    assert order.stp == StpMode.NONE
    props = DOC["components"]["schemas"]["NewOrderRequest"]["properties"]
    assert props["selfTradePreventionMode"]["default"] == "NONE"


def test_a_forgotten_id_is_504_minus_1007_and_a_start_after_the_end_minus_1023() -> None:
    """README: an id used here and no longer remembered "is answered `504` (`-1007`, its
    status unknown here: find it in `allOrders`)" (rest_params.py:355 ``forgotten``); "a
    `startTime` after the `endTime` is refused naming both (-1023, here and in `klines`)"
    (rest_params.py:370 ``time_span``, which allOrders, myTrades and klines call)."""
    _claim("is answered `504` (`-1007`, its status unknown here: find it in `allOrders`)")
    _claim("a `startTime` after the `endTime` is refused naming both (-1023, here and in `klines`)")
    forgotten = rp.forgotten("my-id")
    assert (forgotten.status, forgotten.code) == (504, -1007)
    assert "origClientOrderId=my-id" in forgotten.msg and "allOrders" in forgotten.msg
    span = _refused(lambda: rp.time_span({"startTime": "20", "endTime": "10"}))
    assert (span.status, span.code) == (400, -1023) and "20" in span.msg and "10" in span.msg
    for handler in (
        rest_history.HistoryRoutes.all_orders,
        rest_history.HistoryRoutes.my_trades,
        PublicRoutes.klines,
    ):
        assert "rp.time_span(params)" in inspect.getsource(handler), handler


def test_the_constants_the_section_names_are_the_codes() -> None:
    """README (Private): the numbers it gives for what the gateway keeps: `keep_done` 10,000
    (rest_orders.py:85), the API's ids "newest 100k-200k" (clordids.py:31, two generations
    of half), `MAX_LIVE_FILLS` 20,000, `MAX_UNFILED_ORDERS` 20,000, `RECENT_EVENTS` 30,000,
    "the last 256 an account" (rest_catch_up.py:35), the mass cancel's 2 s waits
    (rest_open_orders.py:30, rest_mass_cancel.py:43), the stream's snapshot's 2 s."""
    claims: list[tuple[str, object, object]] = [
        (
            "past its newest `keep_done`, 10,000, finished orders",
            inspect.signature(RestOrders.__init__).parameters["keep_done"].default,
            10_000,
        ),
        ("the API's newest 100k-200k", (API_IDS_KEPT // 2, API_IDS_KEPT), (100_000, 200_000)),
        (
            "at most 20,000 are kept (`MAX_LIVE_FILLS` in `procs/gateway/live_trades.py`",
            MAX_LIVE_FILLS,
            20_000,
        ),
        (
            "at most 20,000 such orders are indexed (`MAX_UNFILED_ORDERS` in "
            "`procs/gateway/unfiled_orders.py`)",
            MAX_UNFILED_ORDERS,
            20_000,
        ),
        (
            "the last 30,000 events of accounts not using the API are kept for that, "
            "`RECENT_EVENTS` in `procs/gateway/recent_elsewhere.py`",
            RECENT_EVENTS,
            30_000,
        ),
        ("the last 256 an account", UNFOLLOWED_KEPT, 256),
        ("those the database lists, read meanwhile for at most 2 s", LISTING_WAIT_S, 2.0),
        ("one not seen to end within 2 s as it was listed", ENDS_WAIT_S, 2.0),
        ("The snapshot waits for the database at most 2 s", LISTING_WAIT_S, 2.0),
    ]
    for quote, value, said in claims:
        _claim(quote)
        assert value == said, quote


def test_prices_and_sizes_are_decimal_strings_both_ways(served: dict[str, Any]) -> None:
    """README: "Prices and sizes are decimal strings" (rest_params.py ``DECIMAL``, rest_body.py
    ``_text``: a JSON number is refused, -1100, naming it; ``format_units`` writes them): the
    document's patterns are the code's, and every price and size the scenario's answers
    carry matches the document's output pattern."""
    _claim("Prices and sizes are decimal strings")
    props = DOC["components"]["schemas"]["NewOrderRequest"]["properties"]
    assert props["price"]["pattern"] == props["quantity"]["pattern"] == rp.DECIMAL.pattern
    number = _refused(lambda: body_pairs(b'{"price": 10.5}', "application/json"))
    assert number.code == codes.ILLEGAL_PARAM and "'price'" in number.msg
    decimal = DOC["components"]["schemas"]["Order"]["properties"]["price"]["pattern"]
    answers = [served["new"][1], served["bob_sell"][1], *served["bob_sell"][1]["fills"]]
    for answer in answers + served["account"][1]["balances"]:
        for key in ("price", "origQty", "executedQty", "stopPrice", "icebergQty", "qty",
                    "commission", "free", "locked"):  # fmt: skip
            if key in answer:
                assert isinstance(answer[key], str) and re.fullmatch(decimal, answer[key]), key


def test_commission_keys_are_in_a_trades_row_a_fill_and_a_fills_report(
    served: dict[str, Any],
) -> None:
    """README: "a `myTrades` row, an order answer's `fills` entry and a fill's
    `executionReport` carry `commission` (a decimal string) and `commissionAsset` (the quote
    asset)" (history.py:124 ``trade_json``, rest_orders.py:502, rest_order_state.py:153)."""
    _claim(
        "a `myTrades` row, an order answer's `fills` entry and a fill's `executionReport` "
        "carry `commission` (a decimal string) and `commissionAsset` (the quote asset)"
    )
    sym = SymbolConfig(name="BTC-USD", id=1, base="BTC", quote="USD")
    row = history.trade_json(sym, 1, 2, 1000, 10, 1, True, False, b"0.0200")
    fill = served["bob_sell"][1]["fills"][0]
    trade = next(e for e in served["events"] if e.get("executionType") == "TRADE")
    for where in (row, fill, trade):
        assert re.fullmatch(r"[0-9]+\.[0-9]+", where["commission"]), where
        assert where["commissionAsset"] == "USD", where


# -- 3. the error codes -----------------------------------------------------------------------


def _module_codes(module: Any) -> dict[str, int]:
    return {
        name: value
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, int) and not isinstance(value, bool) and value < 0
    }


API_CODES = _module_codes(codes)
SIGNING_CODES = _module_codes(signing)


def _code_names(code: int) -> str:
    return ", ".join(n for n, v in {**API_CODES, **SIGNING_CODES}.items() if v == code)


def _documented(code: int) -> bool:
    return re.search(rf"(?<![\d-]){code}(?!\d)", README) is not None


@pytest.mark.parametrize(
    "code",
    [code for code in sorted(set(API_CODES.values()) | set(SIGNING_CODES.values()))],
)
def test_every_error_code_is_documented_in_the_readme(code: int) -> None:
    """api_errors.py:20-40 and signing.py:37-42: every code the API answers with is one the
    README names (the section's errors are `{"code": ..., "msg": ...}`)."""
    _claim('errors are `{"code": ..., "msg": ...}` naming the value')
    assert _documented(code)


def _raised() -> list[tuple[int, int, str]]:
    """Every (HTTP status, code) the REST code answers with, read from its source: each
    ``ApiError(status, code, ...)``, ``bad_request(code, ...)`` (400), ``error_bytes(status,
    code, ...)``, ``AuthError(code, ...)`` (401) and ``json_response({"code": ...}, status)``
    (the middleware's 413, 404/405) with its ``file:line``. A code held in a variable
    (``exc.code``, ``code``) is the re-raise of one found elsewhere; a 500 is a bug's."""
    names = {**API_CODES, **SIGNING_CODES, "ILLEGAL_PARAM": codes.ILLEGAL_PARAM}
    found: list[tuple[int, int, str]] = []

    def value(node: ast.expr) -> int | None:
        if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
            return -int(cast(int, node.operand.value))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
        return names.get(name)

    for path in sorted(GATEWAY.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = (
                node.func.attr if isinstance(node.func, ast.Attribute) else ast.unparse(node.func)
            )
            where = f"{path.name}:{node.lineno}"
            pair: tuple[int | None, int | None] = (None, None)
            if func in ("ApiError", "error_bytes") and len(node.args) >= 2:
                pair = (value(node.args[0]), value(node.args[1]))
            elif func == "bad_request" and node.args:
                pair = (400, value(node.args[0]))
            elif func == "AuthError" and node.args:
                code = value(node.args[0])
                pair = (403 if code == signing.FORBIDDEN_SCOPE else 401, code)
            elif func == "json_response" and node.args and isinstance(node.args[0], ast.Dict):
                body = dict(
                    zip(
                        map(ast.unparse, cast(list[ast.expr], node.args[0].keys)),
                        node.args[0].values,
                        strict=True,
                    )
                )
                if "'code'" in body:
                    given = node.args[1] if len(node.args) > 1 else None
                    if given is not None and ast.unparse(given) == "exc.status":
                        found += [
                            (404, value(body["'code'"]) or 0, where),
                            (405, value(body["'code'"]) or 0, where),
                        ]
                        continue
                    pair = (value(given) if given is not None else 200, value(body["'code'"]))
            status, code = pair
            if status is not None and code is not None and status != 500:
                found.append((status, code, where))
    return found


RAISED = _raised()


def test_the_source_scan_finds_the_codes() -> None:
    """The scan of ``_raised`` sees what it should: every code of api_errors.py (UNKNOWN's
    as the middleware's 404 and 405) and of signing.py, and some sixty places."""
    seen = {code for _, code, _ in RAISED}
    assert set(API_CODES.values()) <= seen
    assert {
        signing.BAD_SIGNATURE,
        signing.REPLAYED,
        signing.BAD_WINDOW,
        signing.OUTSIDE_WINDOW,
        signing.UNAUTHORIZED,
        signing.FORBIDDEN_SCOPE,
    } <= seen
    assert len(RAISED) > 60


@pytest.mark.parametrize(
    ("status", "code"),
    [(status, code) for status, code in sorted({(s, c) for s, c, _ in RAISED})],
)
def test_every_status_and_code_answered_is_in_the_documents_errors(status: int, code: int) -> None:
    """openapi.py:37 ``ERRORS``: each status the API answers names the codes it comes with;
    every (status, code) the source raises (``_raised``) is named under its status."""
    assert status in openapi.ERRORS, status
    assert f"({code})" in openapi.ERRORS[status][1] or f" {code}" in openapi.ERRORS[status][1]


#: (a README quote giving a code and its cause, the scenario's observation, status, code,
#: what the message must name).
CODE_CLAIMS: list[tuple[str, str, int, int, list[str]]] = [
    (
        "`newClientOrderId` that an open order of the account placed through this gateway "
        "still holds",
        "dup",
        400,
        -2010,
        ["newClientOrderId=r106-a"],
    ),
    (
        'within `order_timeout_s` is answered `504` (`-1007`, "may still execute"; a new '
        "order's names its `origClientOrderId`, the one generated where none was sent)",
        "pending",
        504,
        -1007,
        ["may still execute", "origClientOrderId=r106-p"],
    ),
    (
        'within `order_timeout_s` is answered `504` (`-1007`, "may still execute"; a new '
        "order's names its `origClientOrderId`, the one generated where none was sent)",
        "pending_unnamed",
        504,
        -1007,
        ["may still execute", "origClientOrderId=r"],
    ),
    (
        "a cancel by its `origClientOrderId` is refused (`-2011`, naming that state)",
        "cancel_pending",
        400,
        -2011,
        ["origClientOrderId=r106-p", "PENDING_NEW"],
    ),
    (
        "and `-2013` is kept for an id never used or refused",
        "never_used",
        400,
        -2013,
        ["origClientOrderId=r106-never"],
    ),
    (
        "an amend that would leave an iceberg more than `icebergParts` slices",
        "amend_iceberg",
        400,
        codes.FILTER_FAILURE,
        ["quantity 20.00", "icebergQty 0.10", "100"],
    ),
    (
        "in the body only, never the URL",
        "login_in_url",
        400,
        -1100,
        ["username and password go in the request body"],
    ),
    (
        "`failed_login_rate_per_s`, 0.1, with a burst of 10: then `429` for that username",
        "wrong_password_again",
        429,
        -1003,
        ["wrong passwords for user 'NOBODY'"],
    ),
    (
        "One key holds at most `max_streams_per_key` streams (5; then `429`)",
        "stream_second",
        429,
        -1003,
        ["this API key", "the limit is 1"],
    ),
    (
        'is that HTTP error with its `{"code", "msg"}` body',
        "stream_trade_only",
        403,
        -2015,
        ["'read' is needed"],
    ),
    (
        "An order the exchange refuses is told its code, its price and quantity",
        "rejected",
        400,
        -2010,
        ["price=20.00", "quantity=5000000.00"],
    ),
]


@pytest.mark.parametrize(("quote", "seen", "status", "code", "named"), CODE_CLAIMS)
def test_each_code_the_readme_names_is_answered_for_its_cause_naming_the_value(
    served: dict[str, Any], quote: str, seen: str, status: int, code: int, named: list[str]
) -> None:
    """README (Private, Limits, the stream): each error it gives for a cause is the one the
    gateway answers for it, over HTTP, and the message names the value (rest.py:453 the
    duplicate id, :212 the timeout, :482 a pending cancel; rest_orders.py:209 ``unknown``;
    rest_amend.py:82; rest_keys.py:38, :46; private_stream.py:103, rest.py:419)."""
    _claim(quote)
    got_status, body = served[seen]
    assert (got_status, body["code"]) == (status, code), body
    assert set(body) == {"code", "msg"}
    for text in named:
        assert text in body["msg"], (text, body)


def test_a_429_carries_retry_after(served: dict[str, Any]) -> None:
    """README "Limits": "(`429` with `Retry-After`)" (rest.py:317): the wrong passwords'
    429 over HTTP has the header, whole seconds, at least 1."""
    _claim("per address (`429` with `Retry-After`)")
    _claim("`failed_login_rate_per_s`, 0.1, with a burst of 10")
    gw = GatewayConfig(name="gw", id=1)
    assert (gw.failed_login_rate_per_s, gw.failed_login_burst) == (0.1, 10)
    retry = served["wrong_password_retry_after"]
    assert retry is not None and int(retry) >= 1


def test_unknown_paths_and_methods_answer_code_and_msg(served: dict[str, Any]) -> None:
    """README: errors are `{"code": ..., "msg": ...}` naming the value (rest.py:334): a path
    not routed (404) and a method not (405, with ``Allow``) name the request; a body past
    the limit (413) names the size and the limit."""
    _claim('errors are `{"code": ..., "msg": ...}` naming the value')
    status, body = served["not_found"]
    assert status == 404 and body == {"code": -1000, "msg": f"Not Found: GET {V1}/nope"}
    status, body, allow = served["not_allowed"]
    assert status == 405 and body["code"] == -1000 and f"PATCH {V1}/order" in body["msg"]
    assert set(allow.replace(" ", "").split(",")) >= {"GET", "POST", "PUT", "DELETE"}
    status, body = served["too_large"]
    assert status == 413 and body["code"] == -1100 and "20000" in body["msg"], body
    assert str(RestConfig().max_body_bytes) in body["msg"]


def test_a_route_pipelined_behind_an_order_of_an_earlier_read_gets_a_400_naming_the_rule(
    served: dict[str, Any],
) -> None:
    """README: "a request for another route pipelined behind an order that arrived in an
    earlier read is refused with a 400 that names the rule" (rest_fast.py:374)."""
    _claim(
        "a request for another route pipelined behind an order that arrived in an earlier "
        "read is refused with a 400 that names the rule"
    )
    raw = served["pipelined"]
    assert statuses(raw)[-1] == 400, raw
    assert b"must not be pipelined" in raw


def test_scopes_are_the_readmes_and_the_documents(served: dict[str, Any]) -> None:
    """README: "(trade scope for POST, PUT and DELETE)" of the private endpoints, the others
    read; `DELETE /api/v1/apiKey` any key that signs it (rest.py ``signed`` and each
    handler's scope): over HTTP, a read-only key is refused 403 -2015 where trade is
    needed, a trade-only key where read is; the document says the same per operation
    (openapi.py ``_operation``: "needs scope")."""
    _claim("(trade scope for POST, PUT and DELETE)")
    for method, path, _, said in ENDPOINTS:
        if said is None:
            continue
        if path == STREAM_PATH:
            assert served["stream_trade_only"][0] == 403  # the stream needs read
            continue
        read_only, trade_only = served["scope"][(method, path)]
        code = "trade" if read_only == 403 else "read" if trade_only == 403 else ""
        assert code == said, (method, path, read_only, trade_only)
        assert _documented_scope(method, path) == said, (method, path)


#: (an observation of the scenario, the operation that answered it).
ANSWERED: list[Any] = [
    ("new", "POST", f"{V1}/order"),
    ("dup", "POST", f"{V1}/order"),
    ("rejected", "POST", f"{V1}/order"),
    ("pending", "POST", f"{V1}/order"),
    ("amend", "PUT", f"{V1}/order"),
    ("amend_iceberg", "PUT", f"{V1}/order"),
    ("cancel", "DELETE", f"{V1}/order"),
    ("cancel_pending", "DELETE", f"{V1}/order"),
    ("cancel_db_down", "DELETE", f"{V1}/order"),
    ("never_used", "GET", f"{V1}/order"),
    ("get_pending", "GET", f"{V1}/order"),
    ("open_orders", "GET", f"{V1}/openOrders"),
    ("mass_cancel", "DELETE", f"{V1}/openOrders"),
    ("account", "GET", f"{V1}/account"),
    ("evicted_signs", "GET", f"{V1}/account"),
    ("login", "POST", f"{V1}/apiKey"),
    ("login_in_url", "POST", f"{V1}/apiKey"),
    ("wrong_password_again", "POST", f"{V1}/apiKey"),
    ("revoke", "DELETE", f"{V1}/apiKey"),
    ("stream_second", "GET", STREAM_PATH),
    ("stream_trade_only", "GET", STREAM_PATH),
]


def _listed(method: str, path: str) -> set[int]:
    return {int(s) for s in _operation(method, path)["responses"] if s != "101"}


@pytest.mark.parametrize(("seen", "method", "path"), ANSWERED)
def test_each_status_answered_is_one_its_operation_lists(
    served: dict[str, Any], seen: str, method: str, path: str
) -> None:
    """The document's responses of an operation (openapi.py ``_operation``: 400, 408, 413,
    429, 401/403 signed, and its ``errors``): each status the scenario got from it is one
    of them, with the ``{"code", "msg"}`` body of ``Error`` when not 200."""
    status, body = served[seen][:2]
    assert status in _listed(method, path) | {200}, (status, body)
    if status != 200:
        _fits(body, {"$ref": "#/components/schemas/Error"})


def test_each_status_of_the_probes_is_one_its_operation_lists(served: dict[str, Any]) -> None:
    """As above for the scenario's probes: an unknown parameter, each bound, each required
    parameter left out, each key lacking a scope: statuses their operations list."""
    for (method, path), (status, _) in served["probe"].items():
        assert status in _listed(method, path), (method, path, status)
    for (method, path, _, _), (status, _) in served["bounds"].items():
        assert status in _listed(method, path) | {200}, (method, path, status)
    for (method, path, _), (status, _) in served["missing"].items():
        assert status in _listed(method, path), (method, path, status)
    for (method, path), pair in served["scope"].items():
        assert set(pair) <= _listed(method, path), (method, path, pair)


# -- 4. the answers' keys ---------------------------------------------------------------------

#: (observation, the document's schema its JSON must fit: keys as the schema's properties,
#: every required one present).
ANSWERS: list[tuple[str, str]] = [
    ("new", "NewOrderResult"),
    ("amend", "Order"),
    ("cancel", "Order"),
    ("get_pending", "Order"),
    ("stp", "NewOrderResult"),
    ("account", "Account"),
    ("login", "ApiKeyCreated"),
    ("login_evicting", "ApiKeyCreated"),
    ("revoke", "ApiKeyRevoked"),
    ("time", "ServerTime"),
    ("ping", "Empty"),
    ("exchange_info", "ExchangeInfo"),
    ("dup", "Error"),
]


def _fits(value: Any, schema: dict[str, Any]) -> None:
    required, props = _schema_keys(schema)
    assert isinstance(value, dict), value
    assert required <= set(value) <= props, (sorted(value), sorted(props), sorted(required))


@pytest.mark.parametrize(("seen", "schema"), ANSWERS)
def test_each_answers_keys_are_its_schemas(served: dict[str, Any], seen: str, schema: str) -> None:
    """Each answer, as the gateway wrote it over HTTP (rest.py ``new_order``, ``account``;
    rest_keys.py; rest_public.py; ``LiveOrder.json``), has the keys of its schema in the
    document (openapi.py ``_order_schemas``, ``_other_schemas``): no key the document lacks,
    none it requires missing."""
    _fits(served[seen][1], {"$ref": f"#/components/schemas/{schema}"})


def test_nested_answers_keys_are_their_schemas(served: dict[str, Any]) -> None:
    """The lists and nested objects: a new order's ``fills`` entries (``Fill``), the
    account's balances (``Balance``), openOrders and DELETE openOrders items (``Order``),
    exchangeInfo's symbols, assets and rate limits."""
    ref = "#/components/schemas/"
    for fill in served["bob_sell"][1]["fills"]:
        _fits(fill, {"$ref": f"{ref}Fill"})
    for balance in served["account"][1]["balances"]:
        _fits(balance, {"$ref": f"{ref}Balance"})
    assert served["open_orders"][1] and served["mass_cancel"][1]
    for order in served["open_orders"][1] + served["mass_cancel"][1]:
        _fits(order, {"$ref": f"{ref}Order"})
    info = served["exchange_info"][1]
    props = DOC["components"]["schemas"]["ExchangeInfo"]["properties"]
    for key in ("symbols", "assets", "rateLimits"):
        for item in info[key]:
            _fits(item, props[key]["items"])


def test_a_database_rows_order_and_a_live_order_have_the_same_keys() -> None:
    """history.py:97 ``order_json`` (allOrders, an order only the database knows) and
    rest_order_state.py:87 ``LiveOrder.json`` write the same keys: the document's ``Order``;
    ``trade_json`` (history.py:124) writes ``AccountTrade``'s."""
    sym = SymbolConfig(name="BTC-USD", id=1, base="BTC")
    row = (7, 601, 1, 1, 1, 1, 100, 0, 10, 10, 0, 1, 0, 1, 2, 0, 3, 0, "cid")
    live = LiveOrder(7, 601, sym, 1, "LIMIT", 1, 100, 0, 10, 10)
    _, props = _schema_keys({"$ref": "#/components/schemas/Order"})
    assert set(history.order_json(row, sym)) == set(live.json()) == props
    trade = history.trade_json(sym, 1, 7, 100, 10, 5, True, True, None)
    assert set(trade) == _schema_keys({"$ref": "#/components/schemas/AccountTrade"})[1]


#: (a README quote naming keys of the answers, the observation, the keys).
README_KEYS: list[tuple[str, str, list[str]]] = [
    ("`scopes` (`read,trade`) returns `apiKey` and `secretKey`", "login", ["apiKey", "secretKey"]),
    ("names it (`revokedApiKey`)", "login_evicting", ["revokedApiKey"]),
    ("the API's `clientOrderId`", "new", ["clientOrderId"]),
    ("`PENDING_NEW` with `orderId` 0", "get_pending", ["orderId", "status"]),
    ("An order's `time` is the exchange's", "new", ["time"]),
    ("`updateTime` is the time of the order's last change", "new", ["updateTime"]),
    ("`isWorking` is false for a stop until its trigger", "new", ["isWorking"]),
    ("with `cummulativeQuoteQty` null", "new", ["cummulativeQuoteQty"]),
    ("an iceberg its `icebergQty`", "new", ["icebergQty"]),
    (
        "A new order's answer is the order as its own command left it, with the fills that command "
        "made",
        "bob_sell",
        ["fills"],
    ),
    ("`account` (balances from the router", "account", ["balances"]),
]


@pytest.mark.parametrize(("quote", "seen", "keys"), README_KEYS)
def test_each_answer_key_the_readme_names_is_written(
    served: dict[str, Any], quote: str, seen: str, keys: list[str]
) -> None:
    """README (Keys, Private): each key it names of an answer is one the gateway writes."""
    _claim(quote)
    answer = served[seen][1]
    for key in keys:
        assert key in answer, (key, sorted(answer))


def test_exchange_info_names_the_keys_the_readme_gives(served: dict[str, Any]) -> None:
    """README (Public): each symbol of exchangeInfo has `status`, `minQty`, `maxQty`,
    `stepSize`, `bandBps`, `limitBandBps`, and (PUT order) `icebergParts`."""
    _claim("each symbol's `status` is `TRADING` or `HALT`")
    symbol = served["exchange_info"][1]["symbols"][0]
    for key in (
        "status",
        "minQty",
        "maxQty",
        "stepSize",
        "bandBps",
        "limitBandBps",
        "icebergParts",
    ):
        assert key in symbol, key
    assert symbol["status"] == "UNKNOWN"  # market data disabled here


def test_the_iceberg_qty_of_an_order_that_shows_all_is_the_readmes(served: dict[str, Any]) -> None:
    """README: "every order view has the field, "0" for an order that shows all"."""
    quote = 'every order view has the field, "0" for an order that shows all'
    shown = served["new"][1]["icebergQty"]
    assert shown == "0" or not _says(quote), shown


def test_zero_balances_are_not_listed(served: dict[str, Any]) -> None:
    """README: `account` ... "an asset at zero is not listed, as in the private stream's
    snapshot" (rest.py:545 ``balances``): CAROL, funded with BTC alone, sees BTC alone."""
    _claim("an asset at zero is not listed, as in the private stream's snapshot")
    balances = served["carol_account"][1]["balances"]
    assert [b["asset"] for b in balances] == ["BTC"]
    assert all(b["free"] != "0.000000" or b["locked"] != "0.000000" for b in balances)


def test_a_pending_order_is_found_and_listed_after_the_answered_ones(
    served: dict[str, Any],
) -> None:
    """README: "Until its answer comes, such an order is `PENDING_NEW` with `orderId` 0:
    `GET order` finds it, `openOrders` lists it after the answered ones" (rest.py:502,
    rest_open_orders.py:52)."""
    _claim(
        "Until its answer comes, such an order is `PENDING_NEW` with `orderId` 0: `GET "
        "order` finds it, `openOrders` lists it after the answered ones"
    )
    found = served["get_pending"][1]
    assert (found["status"], found["orderId"], found["clientOrderId"]) == (
        "PENDING_NEW",
        0,
        "r106-p",
    )
    listed = served["open_orders"][1]
    kinds = [o["status"] == "PENDING_NEW" for o in listed]
    assert kinds == sorted(kinds) and kinds[0] is False and kinds[-1] is True, listed


def test_self_trade_prevention_ends_as_expired_in_match(served: dict[str, Any]) -> None:
    """README: "an order ended by self-trade prevention is reported with `executionType`
    `TRADE_PREVENTION` and status `EXPIRED_IN_MATCH`" (rest_orders.py:532,
    rest_order_state.py:32)."""
    _claim(
        "an order ended by self-trade prevention is reported with `executionType` "
        "`TRADE_PREVENTION` and status `EXPIRED_IN_MATCH`"
    )
    assert served["stp"][1]["status"] == "EXPIRED_IN_MATCH"
    report = next(e for e in served["events"] if e["executionType"] == "TRADE_PREVENTION")
    assert report["status"] == "EXPIRED_IN_MATCH"
    assert (
        "EXPIRED_IN_MATCH" in DOC["components"]["schemas"]["Order"]["properties"]["status"]["enum"]
    )


def test_a_stop_is_not_working_until_its_trigger() -> None:
    """README: "`isWorking` is false for a stop until its trigger (it is not on the book;
    the history, which does not keep the trigger, takes a stop with nothing filled as not
    triggered yet)" (rest_order_state.py:109, history.py:119)."""
    _claim(
        "`isWorking` is false for a stop until its trigger (it is not on the book; the "
        "history, which does not keep the trigger, takes a stop with nothing filled as not "
        "triggered yet)"
    )
    sym = SymbolConfig(name="BTC-USD", id=1, base="BTC")
    stop = LiveOrder(7, 601, sym, 1, "STOP_LOSS", 2, 0, 100, 10, 10, status="NEW")
    assert stop.json()["isWorking"] is False
    stop.triggered = True
    assert stop.json()["isWorking"] is True
    row = (7, 601, 1, 1, int(OrdType.STOP), 2, 0, 100, 10, 10, 0, 1, 0, 1, 2, 0, 3, 0, "")
    assert history.order_json(row, sym)["isWorking"] is False


# -- 5. the private stream --------------------------------------------------------------------


def test_the_streams_messages_are_a_snapshot_then_reports_and_balances_each_with_seq(
    served: dict[str, Any],
) -> None:
    """README: "it sends a `snapshot` (balances, open orders ...), then `executionReport` and
    `balance` events, each with `seq`" (stream_subscriber.py:96 ``begin``, :110 ``push``);
    the document's 101 says so too (``{"event", "seq", "data"}``, seq from 1)."""
    _claim(
        "it sends a `snapshot` (balances, open orders, including those the user placed over "
        "FIX on this gateway"
    )
    _claim("then `executionReport` and `balance` events, each with `seq`")
    messages = served["stream"]
    assert messages[0]["event"] == "snapshot" and messages[0]["seq"] == 1
    assert set(messages[0]["data"]) == {"balances", "openOrders"}
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert {m["event"] for m in messages[1:]} == {"executionReport", "balance"}
    assert all(set(m) == {"event", "seq", "data"} for m in messages)
    for m in messages:
        if m["event"] == "balance":
            _fits(m["data"], {"$ref": "#/components/schemas/Balance"})
    described = DOC["paths"][STREAM_PATH]["get"]["responses"]["101"]["description"]
    assert '`{"event": name, "seq": n, "data": {...}}`, seq from 1' in described


def test_an_execution_report_is_the_order_with_what_happened(served: dict[str, Any]) -> None:
    """rest_order_state.py:143 ``report_json``: the order's view, ``executionType``,
    ``eventTime``, and a fill's ``lastQty``, ``lastPrice``, ``tradeId``, ``isMaker``,
    ``commission``, ``commissionAsset`` (the document's 101: "as a `Fill` does"); the
    README's kinds are among those seen: NEW, REPLACED (an amend), TRADE, TRADE_PREVENTION,
    CANCELED, REJECTED."""
    _claim("the private stream says `REPLACED`")
    _claim("comes as a `TRADE` on the stream")
    _claim("its NEW or REJECTED report follows")
    _, order = _schema_keys({"$ref": "#/components/schemas/Order"})
    fill = {"lastQty", "lastPrice", "tradeId", "isMaker", "commission", "commissionAsset"}
    described = DOC["paths"][STREAM_PATH]["get"]["responses"]["101"]["description"]
    assert all(f"`{k}`" in described for k in fill)
    kinds = set()
    for report in served["events"]:
        kinds.add(report["executionType"])
        extra = set(report) - order - {"executionType", "eventTime", "rejectReason"}
        assert extra == (fill if report["executionType"] == "TRADE" else set()), report
    assert {"NEW", "REPLACED", "TRADE", "TRADE_PREVENTION", "CANCELED", "REJECTED"} <= kinds


def test_an_idle_stream_gets_a_heartbeat_without_seq_after_five_seconds() -> None:
    """README: "after 5 s with nothing else, a `heartbeat` event (`{"event": "heartbeat",
    "data": {"time": ms}}`, no `seq`: not one of the account's events)" (stream_subscriber.py
    :34 ``HEARTBEAT_S``, :126 ``beat``); the page replaces a stream silent for 15 s
    (trading.js)."""
    _claim(
        'after 5 s with nothing else, a `heartbeat` event (`{"event": "heartbeat", "data": '
        '{"time": ms}}`, no `seq`: not one of the account\'s events)'
    )
    _claim("(the page replaces a stream silent for 15 s)")
    assert HEARTBEAT_S == 5.0
    page = (ROOT / "procs" / "marketdata" / "static" / "trading.js").read_text()
    assert "Date.now() - streamHeard > 15000" in page

    async def beats() -> list[dict[str, Any]]:
        sub = Subscriber(cast(web.WebSocketResponse, None), "key", 601, 16)
        sub.begin({"balances": [], "openOrders": []})
        sub.push("balance", {"asset": "USD", "free": "1", "locked": "0"})
        sent = [json.loads(m) for m in sub.queue]
        sub.queue.clear()  # sent
        sub.beat(sub.queued_at + HEARTBEAT_S - 0.01)  # not yet
        assert not sub.queue
        before = time.time_ns() // 1_000_000
        sub.beat(sub.queued_at + HEARTBEAT_S)
        beat = json.loads(sub.queue.popleft())
        assert before <= beat["data"]["time"] <= time.time_ns() // 1_000_000
        sub.push("balance", {"asset": "USD", "free": "2", "locked": "0"})  # seq goes on
        sub.finish()
        return [*sent, beat, json.loads(sub.queue.popleft())]

    snapshot, balance, beat, after = _run(beats())
    assert (snapshot["seq"], balance["seq"], after["seq"]) == (1, 2, 3)
    assert set(beat) == {"event", "data"} and beat["event"] == "heartbeat"
    assert set(beat["data"]) == {"time"}


_signed_at = [0]


def _stream_query(key: Any, **extra: str) -> str:
    """A stream URL's signed query, each at a later millisecond (the same twice: a replay)."""
    now = _signed_at[0] = max(time.time_ns() // 1_000_000, _signed_at[0] + 1)
    sig = signing.sign(key.secret, now, 5_000, "GET", STREAM_PATH, "", b"")
    return urlencode(
        {"apiKey": key.key, "timestamp": now, "recvWindow": 5_000, "signature": sig, **extra}
    )


def test_stream_limits_per_key_per_account_per_gateway_and_while_stopping(
    local: RestApi,
) -> None:
    """README: "a gateway that stops takes no new stream (`503`). One key holds at most
    `max_streams_per_key` streams (5; then `429`) and one account over all its keys
    `max_streams_per_account` (10), across the instance's gateways (each stream holds a slot
    of both, a lock file under `var/<instance>/gateway/streams/` ...), and a gateway at most
    `max_streams` of its own" (private_stream.py:200 ``_admit``, stream_slots.py; edges.py
    :40-41); the README's example refusal is the code's, word for word."""
    _claim(
        "a gateway that stops takes no new stream (`503`). One key holds at most "
        "`max_streams_per_key` streams (5; then `429`) and one account over all its keys "
        "`max_streams_per_account` (10), across the instance's gateways (each stream holds "
        "a slot of both, a lock file under `var/<instance>/gateway/streams/`"
    )
    _claim("and a gateway at most `max_streams` of its own")
    _claim(
        "the reason `<code> <msg>` (`-1003 this account (all its keys) holds 10 private "
        "streams, the limit is 10`)"
    )
    assert (RestConfig().max_streams_per_key, RestConfig().max_streams_per_account) == (5, 10)
    example = _too_many("this account (all its keys)", 10, 10)
    assert f"{example.code} {example.msg}" == (
        "-1003 this account (all its keys) holds 10 private streams, the limit is 10"
    )
    streams = local.streams
    user = local.logins.get("ALICE")
    assert user is not None
    key = local.keys.create(user, ["read", "trade"], "", evict_oldest=True)

    def admit(**extra: str) -> ApiError:
        request = make_mocked_request("GET", f"{STREAM_PATH}?{_stream_query(key, **extra)}")
        return _refused(lambda: streams._admit(request))

    class Sub:
        def __init__(self, key: str) -> None:
            self.key = key

    try:
        streams.closing = True
        stopping = admit()
        assert (stopping.status, stopping.code) == (503, -1001) and "stopping" in stopping.msg
        streams.closing = False
        streams.count = streams.max_streams
        full = admit()
        assert (full.status, full.code) == (503, -1001), full.msg
        assert f"{streams.max_streams} private streams" in full.msg
        streams.count = 0
        streams.by_account[601] = cast(set[Subscriber], {Sub(key.key)})
        per_key = admit()
        assert (per_key.status, per_key.code) == (429, -1003) and "this API key" in per_key.msg
        others = {Sub(f"other{i}") for i in range(streams.max_per_account)}
        streams.by_account[601] = cast(set[Subscriber], others)
        per_account = admit()
        assert per_account.status == 429 and "this account (all its keys)" in per_account.msg
        assert per_account.retry_after_s is not None
    finally:
        streams.by_account.clear()
        streams.count = 0
        streams.closing = False
    assert streams.slots is not None
    assert streams.slots.directory == gateway_root(local.cfg) / "streams"
    assert gateway_root(local.cfg) == Path(local.cfg.var_dir) / local.cfg.instance / "gateway"


def test_a_closing_stream_is_dropped_ten_seconds_after_its_close_frame() -> None:
    """README: "a client that takes nothing ... is dropped 10 s after its close frame was
    queued (`CLOSE_GRACE_S` in `procs/gateway/stream_subscriber.py`, not a config key)"."""
    _claim(
        "dropped 10 s after its close frame was queued (`CLOSE_GRACE_S` in "
        "`procs/gateway/stream_subscriber.py`, not a config key)"
    )
    assert CLOSE_GRACE_S == stream_subscriber.CLOSE_GRACE_S == 10.0
    assert not any("grace" in f.name for f in msgspec.structs.fields(RestConfig))


def test_refusals_told_as_closes_and_revoked_keys_close_with_1008(served: dict[str, Any]) -> None:
    """README: "with `closeOnRefusal=true` in the URL (not signed) the gateway takes the
    upgrade and closes it at once instead, code 1008 for the credentials, 1013 for a limit,
    the reason `<code> <msg>`" (private_stream.py:86 ``refuse_in_band``); "`DELETE
    /api/v1/apiKey` revokes the key that signs it, and closes the private streams it opened
    (1008" (rest_keys.py:73, private_stream.py:138 ``sweep``)."""
    _claim(
        "with `closeOnRefusal=true` in the URL (not signed) the gateway takes the upgrade "
        "and closes it at once instead, code 1008 for the credentials, 1013 for a limit, the "
        "reason `<code> <msg>`"
    )
    _claim(
        "`DELETE /api/v1/apiKey` revokes the key that signs it, and closes the private "
        "streams it opened (1008;"
    )
    code, reason = served["close_limit"]
    assert code == 1013 and reason.startswith("-1003 this API key"), reason
    code, reason = served["close_credentials"]
    assert code == 1008 and reason.startswith(f"{signing.BAD_SIGNATURE} signature does not match")
    assert served["revoke"][1] == {"apiKey": served["bob_key"], "revoked": True}
    assert served["revoked_stream_close"] == 1008


def test_every_status_an_upgrade_is_refused_with_is_the_readmes(served: dict[str, Any]) -> None:
    """README: "An upgrade refused (`401`, `403`, `429`, `503`) is that HTTP error": the 400
    of a parameter the stream does not take is one such refusal too."""
    status, body = served["probe"][("GET", STREAM_PATH)]
    assert (status, body["code"]) == (400, -1104)
    listed = re.search(r"An upgrade refused \(([^)]*)\)", _folded(SECTION))
    assert listed is not None and "`400`" in listed[1], listed


def test_keys_file_and_stream_locks_are_where_the_readme_says(served: dict[str, Any]) -> None:
    """README: "Keys live in `var/<instance>/gateway/apikeys.json` (mode 0600)" (topology.py
    ``apikeys_path``); a stream holds "a lock file under `var/<instance>/gateway/streams/`"
    (stream_slots.py): both seen after the scenario's logins and streams."""
    _claim("Keys live in `var/<instance>/gateway/apikeys.json` (mode 0600)")
    keys, mode, locks = served["keys_file"], served["keys_mode"], served["stream_locks"]
    assert keys.parts[-3:] == (served["instance"], "gateway", "apikeys.json")
    assert mode == 0o600
    assert locks, "no lock file under var/<instance>/gateway/streams/"


def test_a_login_past_the_users_keys_revokes_its_oldest_and_names_it(
    served: dict[str, Any],
) -> None:
    """README: "A user holds at most `max_keys_per_user` keys (20): a login beyond that
    revokes the user's oldest key and names it (`revokedApiKey`)" (rest_keys.py:65;
    edges.py:32); here ``max_keys_per_user`` is 3: CAROL's fourth login names her first key,
    which no longer signs."""
    _claim(
        "A user holds at most `max_keys_per_user` keys (20): a login beyond that revokes the "
        "user's oldest key and names it (`revokedApiKey`)"
    )
    assert RestConfig().max_keys_per_user == 20
    assert served["login_evicting"][1]["revokedApiKey"] == served["carol_first_key"]
    assert (served["evicted_signs"][0], served["evicted_signs"][1]["code"]) == (401, -2014)
    assert "revokedApiKey" not in served["login"][1]
    assert set(SCOPES) == {"read", "trade"}
    assert 'params.get("scopes", "read,trade")' in inspect.getsource(rest_keys)


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
