"""Review 106, the routes: README.md's "### The REST API and the private stream" (under
"## Operate") held to the code and to the served OpenAPI document (``procs/gateway/openapi.py``,
``GET /openapi.json``): every endpoint the README names is routed (aiohttp's router, and the
fast lane's three), and every routed one is in the README and the document; the fast lane's
query split; and the public endpoints' claims (exchangeInfo, market data). Shared rig:
``readme_rest_claims.py``.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, cast

import msgspec
import pytest
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from config.edges import RestConfig
from config.schema import SymbolConfig
from procs.gateway import exchange_info, rest_public
from procs.gateway.fast_request import plain_query
from procs.gateway.rest import RestApi
from procs.gateway.rest_public import PublicRoutes
from tests.unit.gateway import readme_rest_claims as claims
from tests.unit.gateway.readme_rest_claims import DOC, ENDPOINTS, NAMED, V1, _claim, _resolve, _run

local = claims.local  # the fixture: a RestApi made, never started


# -- 1. the routes ----------------------------------------------------------------------------


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
        "and `POST` and `DELETE /api/v1/batchOrders` are parsed by httptools and answered by "
        "the same handlers, checks and error bodies as on aiohttp"
    )
    assert set(local.fast_routes) == {
        ("POST", f"{V1}/order"),
        ("DELETE", f"{V1}/order"),
        ("GET", f"{V1}/order"),
        ("POST", f"{V1}/batchOrders"),
        ("DELETE", f"{V1}/batchOrders"),
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


# -- the public endpoints --------------------------------------------------------------------


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
    assert exchange_info.UNKNOWN_STATUS == "UNKNOWN"
    assert _resolve(DOC["components"]["schemas"]["ExchangeInfo"])["properties"]["symbols"]["items"][
        "properties"
    ]["status"]["enum"] == ["TRADING", "HALT", "UNKNOWN"]


def test_market_data_gets_five_seconds_then_a_503_says_so() -> None:
    """README: "(these six from the market-data process, which gets 5 s to answer: past
    that a 503 says so)" (rest_public.py:41 ``MARKET_TIMEOUT_S``, :214 the 503 and its message)."""
    _claim(
        "(these six from the market-data process, which gets 5 s to answer: past that "
        "a 503 says so)"
    )
    assert rest_public.MARKET_TIMEOUT_S == 5.0
    source = inspect.getsource(PublicRoutes.proxy)
    assert "did not answer within" in source and "503" in source
