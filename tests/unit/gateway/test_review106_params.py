"""Review 106, the parameters: every parameter README.md's "### The REST API and the private
stream" names is taken, with the limits and defaults it states, and every parameter the code
takes (as an unknown one's -1104 lists them, over HTTP in the scenario) is in the served
OpenAPI document; bounds, required parameters, and the refusals of unknown, repeated, empty,
too many and too long ones. Shared rig: ``readme_rest_claims.py``.
"""

from __future__ import annotations

import ast
import inspect
import re
from typing import Any, cast

import pytest
from aiohttp.test_utils import make_mocked_request

from config import load_profile
from procs.common.types import OrdType, Side, TimeInForce
from procs.core.market.tape import TRADES_KEPT
from procs.gateway import api_errors as codes
from procs.gateway import openapi_intro, rest_history, rest_public
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError
from procs.gateway.instruments import Instruments
from procs.gateway.private_stream import PATH as STREAM_PATH
from procs.gateway.rest import RestApi
from procs.gateway.rest_body import BODY_TIMEOUT_S, checked_params
from procs.gateway.rest_public import PublicRoutes
from tests.unit.gateway import readme_rest_claims as claims
from tests.unit.gateway.readme_rest_claims import (
    DOC,
    INTEGER_PARAMS,
    NAMED,
    README,
    REQUIRED,
    SYMBOL,
    V1,
    _claim,
    _operation,
    _refused,
    _refused_async,
    _run,
    _says,
    _schema_keys,
)

local = claims.local  # the fixture: a RestApi made, never started
served = claims.served  # the fixture: the scenario's observations, run once for this module


# -- 2. the parameters ------------------------------------------------------------------------


def _documented_params(method: str, path: str) -> set[str]:
    """The parameters the document gives an operation: its query's, and its body's."""
    op = _operation(method, path)
    names = {p["name"] for p in op.get("parameters", ())}
    body = op.get("requestBody")
    if body is not None:
        for media in body["content"].values():
            names |= _schema_keys(media["schema"])[1]
    return names


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
    (
        "GET",
        f"{V1}/ticker/24hr",
        "symbol",
        "`ticker/24hr` (`symbol` only; for each of the three tickers",
    ),
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
                        else PROXY_DEFAULT  # the proxy's parameter: each route's own
                        if ast.unparse(a) == "default_limit"
                        else int(getattr(module, ast.unparse(a)))
                        for a in call.args[2:5]
                    )
                    found[fn.name] = (default, low, high)
    return found


PROXY_DEFAULT = -1
#: The default ``limit`` of each route ``proxy`` serves (``default_limit``): README's
#: "by default 100 levels and 500 trades as Binance's".
PROXIED_DEFAULTS = {f"{V1}/depth": 100, f"{V1}/trades": 500}
#: (handler, the paths it serves).
LIMIT_HANDLERS = [
    ("handler", [f"{V1}/depth", f"{V1}/trades"]),
    ("klines", [f"{V1}/klines"]),
    ("all_orders", [f"{V1}/allOrders"]),
    ("my_trades", [f"{V1}/myTrades"]),
]


@pytest.mark.parametrize(("handler", "paths"), LIMIT_HANDLERS)
def test_each_limits_default_is_the_documents(handler: str, paths: list[str]) -> None:
    """rest_public.py:199 (depth 100, trades 500, up to the tape's 1,000), :240 (klines: 500),
    rest_history.py:30, :52 (allOrders, myTrades: 500, up to 1,000): the default and bounds
    of ``limit`` are those the document gives (openapi.py ``_limit``)."""
    default, low, high = _limit_calls()[handler]
    for path in paths:
        schema = next(
            p["schema"] for p in _operation("GET", path)["parameters"] if p["name"] == "limit"
        )
        wanted = PROXIED_DEFAULTS[path] if default == PROXY_DEFAULT else default
        assert (schema["default"], schema["minimum"], schema["maximum"]) == (wanted, low, high)


def test_trades_limit_is_the_tapes_thousand() -> None:
    """README: "`trades` (`limit` up to 1,000: the tape keeps the newest 1,000 trades a
    symbol)" (rest_public.py:39 ``MARKET_LIMIT = TRADES_KEPT``, tape.py:10)."""
    _claim("`trades` (`limit` up to 1,000: the tape keeps the newest 1,000 trades a symbol)")
    assert rest_public.MARKET_LIMIT == TRADES_KEPT == 1_000


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
    assert "10 s" in openapi_intro.ERRORS[408][1]
