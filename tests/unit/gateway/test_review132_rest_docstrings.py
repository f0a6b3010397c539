"""Review 132: the docstrings (module, class and function docstrings, ``#:`` comments) of the
REST gateway's remaining modules held to what the code does. This file: the public endpoints
(``rest_public.py``: ping, time, exchangeInfo, depth, trades, ticker, klines and their limits),
request bodies (``rest_body.py``, ``rest_request.py``), the OpenAPI document (``openapi.py``,
``openapi_intro.py``) against the routes and answers, and the client (``rest_client.py``).
``..._docstrings2.py``: ``rest_named.py``, ``rest_interest.py``, ``rest_wiring.py``,
``order_fields.py`` (with ``fix44.json``), ``order_state.py``, ``rest_connections.py`` and
``stream_slots.py`` (beyond review 126's checks of those two).

Convention (reviews 115-126): each claim is anchored by a short verbatim quote of the
docstring or comment it checks (whitespace folded: review 126's ``_says``, by import); a claim
found right is a plain test, a disagreement a strict xfail asserting what the docstring says,
the side to fix in its reason. In-process: review 126's ``_Rig`` (a ``RestApi`` made, never
started) with its routes taken from its own router and called through its middleware; a
stand-in for the market-data process's HTTP client; pure functions with small inputs.

Disagreements found (fixed since on the docstring side):
- openapi.py ``_paths`` "Every route ``rest.py`` registers, in its order": the document lists
  ``/openapi.json`` last and ``apiKey`` before ``order``, where ``RestApi._app`` registers
  ``/openapi.json`` eighth (with the public routes) and ``apiKey`` after the amend; the same
  routes, another order (docstring side). Part 1.
Adversarial inputs (decimal strings with trailing zeros, a sign, no digits, JSON floats and
repeated keys, a limit one past the largest, an escaped ``:`` in a signed query) found no value
taken that should be refused, rounded, or read at another scale.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest
from aiohttp import ClientError
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict, CIMultiDictProxy

from procs.core.market.tape import TRADES_KEPT
from procs.gateway import api_errors as codes
from procs.gateway import (
    exchange_info,
    openapi,
    openapi_intro,
    rest_body,
    rest_client,
    rest_public,
    rest_request,
    signing,
)
from procs.gateway.fast_request import FastRequest
from procs.gateway.history import KLINES, MAX_LIMIT
from procs.gateway.instruments import format_units
from procs.gateway.private_stream import PATH as STREAM_PATH
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import ApiCallError, RestClient
from procs.gateway.rest_public import PublicRoutes
from procs.gateway.stream_subscriber import HEARTBEAT_S
from procs.marketdata import messages as md_messages
from procs.marketdata.web import MAX_LIMIT as MD_MAX_LIMIT
from tests.unit.gateway.test_review126_rest_docstrings import (
    BID,
    _Rig,
    _says,
    answer,
    placed,
    plain,
    run,
)

V1 = "/api/v1"


def _said(text: str, quote: str) -> None:
    """The text (a document's, line continuations gone) still says ``quote``, folded."""
    assert " ".join(quote.split()) in " ".join(text.split()), f"no longer says {quote!r}"


def _route(api: RestApi, method: str, path: str) -> Callable[..., Any]:
    """The handler ``api``'s own router serves ``method path`` with."""
    for r in api.app.router.routes():
        if r.method == method and r.resource is not None and r.resource.canonical == path:
            return r.handler
    raise AssertionError(f"no route {method} {path}")


def _path(resource: Any) -> str:
    return str(resource.canonical)


def _get(rig: _Rig, path: str, query: str = "") -> tuple[int, Any]:
    target = f"{path}?{query}" if query else path
    status, body, _ = run(answer(rig.api, _route(rig.api, "GET", path), plain("GET", target)))
    return status, body


class _Reply:
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body

    async def read(self) -> bytes:
        return self.body


class _Market:
    """The market-data process's HTTP client: each ``get`` recorded, answered by ``outcome``
    (a reply, or an exception raised on entry)."""

    def __init__(self, outcome: _Reply | BaseException) -> None:
        self.outcome = outcome
        self.asked: list[tuple[str, float]] = []

    def get(self, url: str, timeout: Any) -> _Market:
        self.asked.append((url, timeout.total))
        return self

    async def __aenter__(self) -> _Reply:
        await asyncio.sleep(0)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    async def __aexit__(self, *exc: object) -> None:
        return None


def _with_market(rig: _Rig, market: _Market) -> None:
    rig.api.market_url, rig.api.client = "http://md:9", market  # type: ignore[assignment]


# -- rest_public.py ---------------------------------------------------------------------------


def test_public_endpoints_need_no_key_and_take_no_parameter(tmp_path: Path) -> None:
    """rest_public.py: "no key, only the client address's rate limit"; ping, time, openapi,
    exchangeInfo: "none taken: any is refused" (``PublicRoutes``)."""
    _says(rest_public, "no key, only the client address's rate limit")
    _says(PublicRoutes.ping, "none taken: any is refused")
    rig = _Rig(tmp_path)
    assert _get(rig, f"{V1}/ping") == (200, {})
    status, body = _get(rig, f"{V1}/time")
    assert status == 200 and set(body) == {"serverTime"}
    for path in (f"{V1}/ping", f"{V1}/time", f"{V1}/exchangeInfo", "/openapi.json"):
        status, body = _get(rig, path, "x=1")
        assert status == 400 and body["code"] == codes.UNKNOWN_PARAM, path


def test_exchange_info_is_the_configs_and_unknown_without_market_data(tmp_path: Path) -> None:
    """rest_public.py: "``exchangeInfo`` (from the config, each symbol's trading status from
    the market-data process)"; exchange_info.py: ``UNKNOWN_STATUS``, "A symbol's status when
    the market-data process cannot say (disabled, restarting)"; "the least and the largest
    size an order may have: a multiple of stepSize (the config's bounds need not be)"."""
    _says(exchange_info, "A symbol's status when the market-data process cannot say (disabled,")
    _says(exchange_info, "a multiple of stepSize (the config's bounds need not be)")
    rig = _Rig(tmp_path, key_rate_per_s=7.5, key_burst=9)
    sym = msgspec.structs.replace(
        rig.cfg.symbols[0], lot=5, qty_decimals=2, min_qty=7, max_qty=998, tick=25
    )
    rig.api.cfg = msgspec.structs.replace(rig.cfg, symbols=[sym])
    status, body = _get(rig, f"{V1}/exchangeInfo")
    assert status == 200 and body["rateLimits"][0]["limit"] == 7.5
    assert body["rateLimits"][0]["burst"] == 9 and body["rateLimits"][0]["perKey"] is True
    (info,) = body["symbols"]
    assert info["status"] == exchange_info.UNKNOWN_STATUS == "UNKNOWN"
    assert (info["stepSize"], info["minQty"], info["maxQty"]) == ("0.05", "0.10", "9.95")
    assert info["tickSize"] == format_units(25, sym.price_decimals).decode()
    assert [a["asset"] for a in body["assets"]] == [a.name for a in rig.cfg.assets]


def test_statuses_are_one_fetch_shared_kept_ttl_or_retry_after_a_failure(tmp_path: Path) -> None:
    """``PublicRoutes.statuses``: "empty when it is disabled or does not answer within
    STATUS_TIMEOUT_S. Callers share one fetch, and its answer for STATUS_TTL_S (a failure's
    for STATUS_RETRY_S)"."""
    _says(PublicRoutes.statuses, "Callers share one fetch, and its answer for STATUS_TTL_S")
    rig = _Rig(tmp_path)
    name = rig.cfg.symbols[0].name
    good = _Market(_Reply(200, msgspec.json.encode([{"symbol": name, "status": "HALT"}])))
    _with_market(rig, good)
    routes = _route(rig.api, "GET", f"{V1}/exchangeInfo").__self__  # type: ignore[attr-defined]

    async def twice(r: PublicRoutes) -> list[dict[str, str]]:
        return list(await asyncio.gather(r.statuses(), r.statuses()))

    assert run(twice(routes)) == [{name: "HALT"}] * 2
    assert good.asked == [("http://md:9/api/symbols", rest_public.STATUS_TIMEOUT_S)]
    assert 0.3 < routes._statuses_until - time.monotonic() <= rest_public.STATUS_TTL_S
    _, body = _get(rig, f"{V1}/exchangeInfo")
    assert body["symbols"][0]["status"] == "HALT" and len(good.asked) == 1  # answered again
    failing = _Market(ClientError("refused"))
    fresh = PublicRoutes(rig.api)
    rig.api.client = failing  # type: ignore[assignment]
    assert run(twice(fresh)) == [{}, {}] and len(failing.asked) == 1
    left = fresh._statuses_until - time.monotonic()
    assert rest_public.STATUS_TTL_S < left <= rest_public.STATUS_RETRY_S
    assert run(fresh.statuses()) == {} and len(failing.asked) == 1  # not waited for again


def test_market_limit_is_the_tapes_and_checked_before_market_data_is_asked(
    tmp_path: Path,
) -> None:
    """``MARKET_LIMIT``: "The most depth levels or trades a request may ask for: the tape
    keeps as many trades"; ``proxy``: "``accepted``: its parameters (a ``limit`` or none)";
    disabled market data is a 503."""
    _says(rest_public, "The most depth levels or trades a request may ask for: the tape keeps")
    _says(PublicRoutes.proxy, "``accepted``: its parameters (a ``limit`` or none)")
    assert rest_public.MARKET_LIMIT == TRADES_KEPT == MD_MAX_LIMIT
    rig = _Rig(tmp_path)
    for path in (f"{V1}/depth", f"{V1}/trades"):
        over = _get(rig, path, f"symbol=BTC-USD&limit={TRADES_KEPT + 1}")
        assert over[0] == 400 and f"1..{TRADES_KEPT}" in over[1]["msg"]
        status, body = _get(rig, path, f"symbol=BTC-USD&limit={TRADES_KEPT}")
        assert status == 503 and "market data is not enabled" in body["msg"]
    status, body = _get(rig, f"{V1}/ticker/24hr", "symbol=BTC-USD&limit=5")
    assert status == 400 and body["code"] == codes.UNKNOWN_PARAM


def test_proxied_requests_say_what_market_data_did(tmp_path: Path) -> None:
    """``MARKET_TIMEOUT_S``: "How long a proxied market-data request (depth, trades, ticker)
    waits for its answer"; ``proxy``: "answered by the market-data process" -- its refusal a
    502 with its text, no answer in time or none at all a 503 (``PublicRoutes.proxy``)."""
    _says(rest_public, "How long a proxied market-data request (depth, trades, ticker) waits")
    rig = _Rig(tmp_path)
    ok = _Market(_Reply(200, b'{"e":"depthSnapshot"}'))
    _with_market(rig, ok)
    assert _get(rig, f"{V1}/depth", "symbol=btc-usd") == (200, {"e": "depthSnapshot"})
    assert ok.asked == [("http://md:9/api/depth?symbol=btc-usd&limit=100", 5.0)]
    for outcome, status, said in (
        (_Reply(400, b"limit 7 is not 1..1000\n"), 502, "limit 7 is not 1..1000"),
        (TimeoutError(), 503, "did not answer within 5 s"),
        (ConnectionResetError("reset"), 503, "is unreachable: reset"),
    ):
        _with_market(rig, _Market(outcome))
        got = _get(rig, f"{V1}/trades", "symbol=BTC-USD")
        assert got[0] == status and said in got[1]["msg"], got
        assert got[1]["code"] == codes.DISCONNECTED


def test_klines_check_every_argument_before_the_database(tmp_path: Path) -> None:
    """``PublicRoutes.klines``: "every argument checked before the database is asked for: a
    bad one is a 400" (no history database here: a good request is the 503)."""
    _says(PublicRoutes.klines, "every argument checked before the database is asked for")
    rig = _Rig(tmp_path)
    path = f"{V1}/klines"
    for query, code in (
        ("symbol=BTC-USD&interval=7m", codes.BAD_INTERVAL),
        ("symbol=BTC-USD&interval=1m&limit=1001", codes.ILLEGAL_PARAM),
        ("symbol=BTC-USD&interval=1m&startTime=9&endTime=8", codes.BAD_TIME_RANGE),
        ("symbol=XX&interval=1m", codes.BAD_SYMBOL),
        ("symbol=BTC-USD", codes.MANDATORY_PARAM),
    ):
        status, body = _get(rig, path, query)
        assert (status, body["code"]) == (400, code), query
    assert _get(rig, path, "symbol=BTC-USD&interval=1m&limit=1000")[0] == 503


def test_json_response_keeps_integers_exact() -> None:
    """``json_response``: "Every answer of the API, errors included: msgspec's JSON (fast,
    exact integers)"."""
    _says(rest_public.json_response, "msgspec's JSON (fast, exact integers)")
    response = rest_public.json_response({"n": 2**63 - 1}, 400)
    assert response.body == b'{"n":9223372036854775807}' and response.status == 400
    assert response.content_type == "application/json"


# -- rest_body.py, rest_request.py ------------------------------------------------------------


def test_a_json_body_is_scalars_as_text_a_repeat_two_pairs_a_float_refused() -> None:
    """rest_body.py: "a form, or a JSON object of scalars, each value as text; a key sent
    twice shows as two pairs"; ``_text``: "A float is refused: prices and sizes are
    strings"."""
    _says(rest_body, "a JSON object of scalars, each value as text; a key sent twice shows")
    _says(rest_body._text, "A float is refused: prices and sizes are strings")
    pairs = rest_body.body_pairs(b'{"limit": 5, "flag": true, "s": "1.50"}', "application/json")
    assert pairs == [("limit", "5"), ("flag", "true"), ("s", "1.50")]
    twice = rest_body.body_pairs(b'{"price": "1", "\\u0070rice": "2"}', "application/json")
    assert twice == [("price", "2"), ("price", "")]
    for bad, said in (
        (b'{"price": 1.0}', "is the JSON number 1.0: decimals are strings"),
        (b'{"price": 1e2}', "is the JSON number 1e2"),
        (b'{"a": {"b": "c"}}', "body is not a JSON object"),
        (b"[1]", "body is not a JSON object"),
    ):
        with pytest.raises(codes.ApiError) as err:
            rest_body.body_pairs(bad, "application/json")
        assert err.value.status == 400 and said in str(err.value.body()["msg"]), bad


def test_a_form_keeps_blank_names_and_values_and_drops_only_empty_fields() -> None:
    """``_form``: "A blank value, or a blank name, is kept either way, for the checks to
    refuse ...; only an empty field (``a=1&&b=2``) is no pair" -- both the plain split and
    ``parse_qsl``'s path."""
    _says(rest_body._form, "only an empty field (``a=1&&b=2``) is no pair")
    for text in ("a=1&&b=&=junk&c", "a=%31&&b=&=junk&c"):
        assert rest_body.body_pairs(text.encode(), "application/x-www-form-urlencoded") == [
            ("a", "1"), ("b", ""), ("", "junk"), ("c", ""),
        ]  # fmt: skip


def test_checked_params_refuse_a_name_in_the_query_and_the_body() -> None:
    """``checked_params``: "none sent twice (in the query twice, or in the query and the
    body), within the size limits, each one of the ``accepted`` names"."""
    _says(rest_body.checked_params, "or in the query and the body), within the size limits")
    accepted = frozenset(("symbol", "price"))
    assert rest_body.checked_params([("symbol", "X")], accepted) == {"symbol": "X"}
    for pairs, said in (
        ([("price", "1"), ("symbol", "X"), ("price", "1")], "parameter 'price' is sent twice"),
        ([("side", "BUY")], "parameter 'side' is not one this endpoint takes"),
        ([("price", "1" * 65)], "65 characters, the limit is 64"),
    ):
        with pytest.raises(codes.ApiError) as err:
            rest_body.checked_params(pairs, accepted)
        assert said in str(err.value.body()["msg"])


class _Body:
    """A request whose body is ``size`` bytes (None: chunked) arriving after ``delay_s``."""

    def __init__(self, data: bytes, delay_s: float, size: int | None) -> None:
        self.data, self.delay_s, self.content_length = data, delay_s, size
        self.body_exists = bool(data)
        self.content = SimpleNamespace(is_eof=lambda: delay_s == 0)

    async def read(self) -> bytes:
        await asyncio.sleep(self.delay_s)
        return self.data


def test_read_body_is_408_when_late_and_arms_no_timer_for_a_body_already_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``read_body``: "``request``'s body (b"" when it has none), or 408 when it took over
    ``timeout_s``"; "A body that has already arrived whole ... is taken without arming the
    timer"."""
    _says(rest_body.read_body, 'body (b"" when it has none), or 408 when it took over')
    _says(rest_body.read_body, "is taken without arming the timer")
    r: Any = _Body(b"x" * 10, 0.5, 10)
    with pytest.raises(codes.ApiError) as err:
        run(rest_body.read_body(r, 0.01))
    assert err.value.status == 408
    assert str(err.value.body()["msg"]) == "request body of 10 bytes did not arrive within 0.01 s"
    with pytest.raises(codes.ApiError) as err:
        run(rest_body.read_body(_Body(b"x", 0.5, None), 0.01))  # type: ignore[arg-type]
    assert str(err.value.body()["msg"]).startswith("chunked request body did not arrive")

    def no_timer(_: float) -> None:
        raise AssertionError("a timer was armed")

    monkeypatch.setattr(rest_body, "asyncio", SimpleNamespace(timeout=no_timer))
    assert run(rest_body.read_body(_Body(b"abc", 0, 3), 0.01)) == b"abc"  # type: ignore[arg-type]
    assert run(rest_body.read_body(_Body(b"", 0, None), 0.01)) == b""  # type: ignore[arg-type]


def test_a_fast_request_has_the_decoded_path_and_the_target_as_sent() -> None:
    """rest_request.py ``path``: "The decoded path"; ``raw_path``: "The request target as sent
    (path and query): what a signature covers" -- of the fast lane's ``FastRequest``."""
    _says(rest_request, "The request target as sent (path and query): what a signature")
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json; charset=utf-8"}))
    req = FastRequest("GET", "/api/v1/a%20b?x=%41:1", headers, b"", "10.0.0.1", True)
    assert (req.path, req.raw_path) == ("/api/v1/a b", "/api/v1/a%20b?x=%41:1")
    assert req.query["x"] == "A:1" and req.content_type == "application/json"


# -- openapi.py, openapi_intro.py -------------------------------------------------------------


def _documented() -> list[tuple[str, str]]:
    return [(p, m.upper()) for p, ops in openapi._paths().items() for m in ops]


def test_the_document_lists_every_route_and_no_other(tmp_path: Path) -> None:
    """openapi.py: "built from the tables the server checks against, so that the two cannot
    drift"; ``_paths``: "Every route ``rest.py`` registers" -- as a set."""
    _says(openapi, "built from the tables the server checks against, so that the two cannot")
    rig = _Rig(tmp_path)
    served = [(_path(r.resource), r.method) for r in rig.api.app.router.routes()]
    assert sorted(served) == sorted(_documented())


def test_the_document_lists_every_route_registered(tmp_path: Path) -> None:
    """``_paths``: "Every route ``rest.py`` registers (grouped by what they serve, not in its
    order)" (review 132: it said in its order)."""
    _says(openapi._paths, "Every route ``rest.py`` registers (grouped by what they serve, not")
    rig = _Rig(tmp_path)
    served = list(dict.fromkeys(_path(r.resource) for r in rig.api.app.router.routes()))
    assert sorted(served) == sorted(openapi._paths())


def test_each_operation_lists_400_408_413_429_and_401_403_when_signed() -> None:
    """``_operation``: "Every request may get 400 (...), 408, 413 and 429; a signed one 401,
    and 403 when it needs a ``scope`` ("": any valid key)"."""
    _says(openapi._operation, "Every request may get 400 (a parameter it does not take, a bad")
    for path, ops in openapi._paths().items():
        for method, op in ops.items():
            if path == STREAM_PATH:
                continue
            got = set(op["responses"])
            assert {"200", "400", "408", "413", "429"} <= got, (path, method)
            signed_op = bool(op["security"])
            assert signed_op <= ("401" in got), (path, method)  # (a login's too: errors=)
            assert ("403" in got) == (signed_op and "scope `" in op.get("description", ""))


def test_the_documents_limits_and_enumerations_are_the_servers(tmp_path: Path) -> None:
    """openapi.py: "Enumerations come from ``rest_params`` ..., ``history`` (kline intervals,
    the row limit ...)"; the exchangeInfo statuses are the market data's names and
    ``UNKNOWN_STATUS``; the 408's seconds are the gateway's body timeout."""
    _says(openapi, "``history`` (kline intervals, the row limit, order statuses)")
    rig = _Rig(tmp_path)
    doc = openapi.document(rig.cfg)
    paths = doc["paths"]

    def limit(path: str) -> Any:
        return next(p for p in paths[path]["get"]["parameters"] if p["name"] == "limit")["schema"]

    assert limit(f"{V1}/depth")["maximum"] == MAX_LIMIT == rest_public.MARKET_LIMIT
    assert limit(f"{V1}/depth")["default"] == 100 and limit(f"{V1}/klines")["maximum"] == 1000
    interval = next(
        p for p in paths[f"{V1}/klines"]["get"]["parameters"] if p["name"] == "interval"
    )
    assert interval["schema"]["enum"] == list(KLINES)
    symbol = doc["components"]["schemas"]["ExchangeInfo"]["properties"]["symbols"]["items"]
    statuses = {*md_messages.STATUS_NAMES.values(), exchange_info.UNKNOWN_STATUS}
    assert set(symbol["properties"]["status"]["enum"]) == statuses
    assert f"{rig.api.body_timeout_s:g} s" in openapi_intro.ERRORS[408][1]


def test_exchange_info_and_an_order_answer_have_the_documented_fields(tmp_path: Path) -> None:
    """openapi.py: "The REST API's OpenAPI 3.1 document" -- its ExchangeInfo, Order and
    NewOrderResult schemas' required fields are what the server answers."""
    _says(openapi, "The REST API's OpenAPI 3.1 document (``GET /openapi.json``)")
    rig = _Rig(tmp_path)
    schemas = openapi.document(rig.cfg)["components"]["schemas"]
    _, info = _get(rig, f"{V1}/exchangeInfo")
    info_schema = schemas["ExchangeInfo"]
    assert set(info) == set(info_schema["required"])
    sym_schema = info_schema["properties"]["symbols"]["items"]
    assert set(info["symbols"][0]) == set(sym_schema["required"])
    status, order, _ = run(placed(rig, rig.key(), 77))
    assert status == 200
    assert set(order) == {*schemas["Order"]["required"], "transactTime", "fills"}
    assert _get(rig, "/openapi.json")[1] == msgspec.json.decode(
        msgspec.json.encode(openapi.document(rig.cfg))
    )


def test_decimals_the_server_writes_match_the_documents_pattern() -> None:
    """openapi.py ``_DECIMAL_OUT``: "A decimal string as the server writes it
    (``instruments.format_units``)" -- negatives, no decimals, and leading zeros included."""
    _says(openapi, "A decimal string as the server writes it (``instruments.format_units``)")
    pattern = re.compile(openapi._DECIMAL_OUT)
    for value, decimals in ((-5, 2), (0, 8), (7, 0), (-3, 0), (123456789, 4)):
        assert pattern.fullmatch(format_units(value, decimals).decode()), (value, decimals)


def test_the_introductions_signature_is_the_servers() -> None:
    """openapi_intro.py ``SIGNING``: "lower-case hex HMAC-SHA256, keyed with the secret's
    UTF-8 bytes, of f"{timestamp}\\n{recvWindow}\\n{METHOD}\\n{path}\\n{query}\\n" + body";
    "accepted from server time minus the receive window to server time plus 1000 ms"."""
    _says(openapi_intro, "lower-case hex HMAC-SHA256, keyed with the secret's UTF-8 bytes, of")
    assert f"server time plus {signing.MAX_AHEAD_MS} ms" in openapi_intro.SIGNING
    secret, body = "s\u00e9cret", b"symbol=BTC-USD"
    text = b"1700000000000\n5000\nPOST\n/api/v1/order\na=%3A\n" + body
    want = hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()
    got = signing.sign(secret, 1700000000000, 5000, "POST", "/api/v1/order", "a=%3A", body)
    assert got == want == want.lower()


def test_the_stream_heartbeat_and_unknown_paths_are_as_the_document_says(tmp_path: Path) -> None:
    """openapi.py's stream: "after 5 s of nothing else a `heartbeat`"; openapi_intro.py:
    "unknown paths answer 404 and known paths with another method 405, both with that body.
    Any `OPTIONS` request is a CORS preflight and answers 204"."""
    _says(openapi, "after 5 s of nothing else a `heartbeat`")
    _said(openapi_intro.INFO, "unknown paths answer 404 and known paths with another method 405")
    _said(openapi_intro.INFO, "Any `OPTIONS` request is a CORS preflight and answers 204")
    assert HEARTBEAT_S == 5
    rig = _Rig(tmp_path)

    async def go(method: str, path: str) -> tuple[int, Any]:
        match = await rig.api.app.router.resolve(make_mocked_request(method, path))
        status, body, _ = await answer(rig.api, match.handler, plain(method, path))
        return status, body

    for method, path, status in (("GET", "/nowhere", 404), ("PATCH", f"{V1}/order", 405)):
        got = run(go(method, path))
        assert got[0] == status and got[1]["code"] == codes.UNKNOWN and set(got[1]) == {
            "code", "msg",
        }  # fmt: skip
    response = run(rig.api._middleware(plain("OPTIONS", "/nowhere"), _route(rig.api, "GET",
                                       f"{V1}/ping")))  # fmt: skip
    assert response.status == 204


# -- rest_client.py -----------------------------------------------------------------------------


class _Sent:
    """``ClientSession.request`` recording what would go on the wire."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes | None, dict[str, str]]] = []
        self.status, self.body = 200, b"{}"

    def __call__(self, method: str, url: Any, data: Any, headers: Any) -> _Sent:
        self.calls.append((method, str(url), data, dict(headers)))
        return self

    async def __aenter__(self) -> Any:
        return SimpleNamespace(status=self.status, read=self._read)

    async def _read(self) -> bytes:
        return self.body

    async def __aexit__(self, *exc: object) -> None:
        return None


def test_the_client_signs_what_the_server_verifies_query_escapes_kept(tmp_path: Path) -> None:
    """rest_client.py: "signs every private request (``signing.sign``)"; ``request``: "POST
    sends the parameters as a form body, the other methods in the query string"; "as signed:
    yarl would otherwise unescape what it may (``%3A`` to ``:``)" -- the client's requests,
    replayed into a ``RestApi``, pass its signature check."""
    _says(rest_client, "signs every private request (``signing.sign``)")
    _says(RestClient.request, "POST sends the parameters as a form body, the other methods")
    rig = _Rig(tmp_path)
    key = rig.key()

    async def go() -> list[tuple[int, Any]]:
        client = RestClient("http://h:1/")
        client.api_key, client.secret = key.key, key.secret
        sent = _Sent()
        cast(Any, client.session).request = sent
        await client.request("DELETE", f"{V1}/order", symbol="BTC-USD", origClientOrderId="a:b")
        refused: dict[str, Any] = {**BID, "side": "UP"}
        await client.request("POST", f"{V1}/order", **refused)
        await client.close()
        out = []
        for (method, url, data, headers), handler in zip(
            sent.calls, (rig.api.cancel_order, rig.api.new_order), strict=True
        ):
            target = url.removeprefix("http://h:1")
            body = data or b""
            if method == "DELETE":
                assert "origClientOrderId=a%3Ab" in target and data is None
            else:
                assert "?" not in target and b"side=UP" in body
                assert headers["Content-Type"] == "application/x-www-form-urlencoded"
            req = FastRequest(method, target, CIMultiDictProxy(CIMultiDict(headers)), body,
                              "10.0.0.1", True)  # fmt: skip
            status, answered, _ = await answer(rig.api, handler, req)
            out.append((status, answered["code"]))
        return out

    assert run(go()) == [(400, codes.NO_SUCH_ORDER), (400, codes.INVALID_SIDE)]


def test_the_client_stamps_strictly_later_and_raises_on_any_status_but_200() -> None:
    """``_timestamp``: "Milliseconds, strictly increasing"; ``call``: "``ApiCallError`` for any
    status but 200"; ``login``: made unsigned; ``stream_url`` signs GET of the stream path with
    an empty query and body, as the document says."""
    _says(RestClient._timestamp, "Milliseconds, strictly increasing")
    _says(RestClient.call, "``ApiCallError`` for any status but 200")

    async def go() -> None:
        client = RestClient("http://h:1")
        stamps = [client._timestamp() for _ in range(50)]
        assert all(b > a for a, b in itertools.pairwise(stamps))
        sent = _Sent()
        cast(Any, client.session).request = sent
        sent.body = b'{"apiKey": "k", "secretKey": "s", "accountId": 5}'
        await client.login("U", "p")
        assert signing.SIGNATURE not in sent.calls[-1][3] and client.account == 5
        sent.status, sent.body = 201, b'{"code": 1}'
        with pytest.raises(ApiCallError) as err:
            await client.call("GET", f"{V1}/ping", signed=False)
        assert err.value.status == 201
        url = client.stream_url()
        ts = int(url.split("timestamp=")[1].split("&")[0])
        want = signing.sign("s", ts, 5000, "GET", STREAM_PATH, "", b"")
        assert url.endswith(f"signature={want}")
        await client.close()

    run(go())
