"""The OpenAPI document holds for the running gateway: schemathesis generates requests from
``GET /openapi.json`` (the document's examples, requests that fit the schemas and requests that
do not) plus each documented limit and one past it; every private request is signed, and every
answer must have a status the document lists for that operation, with a body that fits. Market
data and the database are off here, so their endpoints answer 503, which the document must
list; nothing else may answer 5xx (504 included: the exchange here is in-process and fast).

The gateway (in front of an in-process router and matcher, ``harness.py``) runs on an asyncio
loop in a background thread; schemathesis' requests are synchronous, from the test's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.edges import RestConfig
from config.schema import DatabaseConfig, RingexConfig
from procs.gateway import rest_params as rp
from procs.gateway.openapi import V1, document
from procs.gateway.private_stream import PATH as STREAM_PATH
from procs.gateway.rest import RestApi
from procs.gateway.signing import API_KEY, RECV_WINDOW, SIGNATURE, TIMESTAMP, sign
from tests.unit.gateway.harness import Harness, config

ALICE = 501
WINDOW_MS = 5_000
#: Generated requests per operation, of each kind (fitting the schemas, not fitting them).
EXAMPLES = 25
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Operation]


@pytest.fixture
def api(instance: str, tmp_path: Path) -> Iterator[RestApi]:
    """The gateway's REST API, served from a loop in a background thread."""
    many = 1_000_000
    rest = RestConfig(
        port=0, key_rate_per_s=many, key_burst=many, ip_rate_per_s=many, ip_burst=many,
        login_rate_per_s=many, login_burst=many, order_timeout_s=3.0,
    )  # fmt: skip
    cfg = config(instance, tmp_path, rest=rest)
    cfg = msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False))
    h = Harness(cfg)
    h.add_user("ALICE", "alice-pw", ALICE)
    h.fund(ALICE)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway-loop", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(h.start(), loop).result(10)
        assert h.gateway is not None and h.gateway.api is not None
        yield h.gateway.api
    finally:
        asyncio.run_coroutine_threadsafe(_stop(h), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        h.close()


async def _stop(h: Harness) -> None:
    await h.stop()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Signer:
    """A ``requests`` auth hook: signs the prepared request, so the signature covers the very
    path, query string and body that go on the wire."""

    def __init__(self, key: str, secret: str) -> None:
        self.key, self.secret = key, secret
        self.last_ms = 0

    def stamp(self) -> int:
        """Now in ms, strictly increasing: two identical requests never share a signature
        (the server refuses a replayed one)."""
        self.last_ms = max(time.time_ns() // 1_000_000, self.last_ms + 1)
        return self.last_ms

    def __call__(self, request: Any) -> Any:
        path, _, query = request.path_url.partition("?")
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else body
        now = self.stamp()
        request.headers[API_KEY] = self.key
        request.headers[TIMESTAMP] = str(now)
        request.headers[RECV_WINDOW] = str(WINDOW_MS)
        request.headers[SIGNATURE] = sign(
            self.secret, now, WINDOW_MS, request.method, path, query, body
        )
        return request

    def stream_query(self) -> dict[str, Any]:
        now = self.stamp()
        signature = sign(self.secret, now, WINDOW_MS, "GET", STREAM_PATH, "", b"")
        return {
            "apiKey": self.key,
            "timestamp": now,
            "recvWindow": WINDOW_MS,
            "signature": signature,
        }


def login(schema: schemathesis.BaseSchema, base_url: str) -> Signer:
    """A fresh API key of ALICE's, made through the API itself."""
    create = schema[f"{V1}/apiKey"]["POST"].Case(
        body={"username": "ALICE", "password": "alice-pw"}, media_type="application/json"
    )
    response = create.call(base_url=base_url)
    assert response.status_code == 200, response.text
    reply = response.json()
    return Signer(reply["apiKey"], reply["secretKey"])


def exercise(case: Case, base_url: str, signer: Signer) -> None:
    """Send ``case`` (signed where the operation says) and hold the answer to the document."""
    kwargs: dict[str, Any] = {}
    signed = bool(case.operation.definition.raw.get("security"))
    if case.path == STREAM_PATH:
        case.query = signer.stream_query()
        signed = True
    elif signed and case.method == "DELETE" and case.path.endswith("/apiKey"):
        kwargs["auth"] = login(case.operation.schema, base_url)  # it revokes its own key
    elif signed:
        kwargs["auth"] = signer
    response = case.call(base_url=base_url, **kwargs)
    case.validate_response(response, checks=CHECKS)
    status, what = response.status_code, f"{case.method} {case.path}"
    assert status < 500 or status == 503, f"{what}: {status} {response.text}"
    if signed:  # the signature is right and the key alive: never refused for it
        assert status != 401, f"{what}: {response.text}"


def test_every_route_is_documented(api: RestApi) -> None:
    routes = {(r.method, r.resource.canonical) for r in api.app.router.routes() if r.resource}
    documented = {
        (method.upper(), path)
        for path, item in document(api.cfg)["paths"].items()
        for method in item
    }
    assert documented == {(method, path) for method, path in routes if method != "HEAD"}


def test_the_server_keeps_its_openapi_document(api: RestApi) -> None:
    base_url = f"http://127.0.0.1:{api.port}"
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    operations = [operation for item in schema.values() for operation in item.values()]
    assert len(operations) == sum(len(item) for item in document(api.cfg)["paths"].values())
    signer = login(schema, base_url)
    for operation in operations:
        for case in edges(operation):
            exercise(case, base_url, signer)
        for strategy, count in strategies(operation):

            @given(case=strategy)
            @settings(
                max_examples=count,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Case) -> None:
                exercise(case, base_url, signer)

            check()


def strategies(operation: Operation) -> Iterator[tuple[st.SearchStrategy[Case], int]]:
    """The document's examples, then requests that fit the schemas, then (where there is
    anything to get wrong) requests that do not: with how many of each to send."""
    examples = operation.get_strategies_from_examples()
    if examples:
        yield st.one_of(*examples), 2 * len(examples)
    yield operation.as_strategy(schemathesis.GenerationMode.POSITIVE), EXAMPLES
    raw = operation.definition.raw
    if raw.get("parameters") or "requestBody" in raw:
        yield operation.as_strategy(schemathesis.GenerationMode.NEGATIVE), EXAMPLES


def edges(operation: Operation) -> Iterator[Case]:
    """Each documented limit, and one past it: an integer parameter's maximum, and beyond
    what 64 bits hold; a body value of the longest length allowed, all nines."""
    components = operation.schema.raw_schema["components"]["schemas"]
    params = [p for p in operation.definition.raw.get("parameters", []) if p["in"] == "query"]
    query = {p["name"]: valid(p["schema"], components) for p in params if p["required"]}
    for p in params:
        high = p["schema"].get("maximum")
        if high is not None:
            for value in (high, high + 1, 2**64 + 1):
                yield operation.Case(query={**query, p["name"]: value})
    content = operation.definition.raw.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        body_schema = resolve(content["application/json"]["schema"], components)
        for example in body_schema.get("examples", []):
            for name, field in body_schema["properties"].items():
                longest = field.get("maxLength")
                if longest is not None:
                    body = {**example, name: "9" * longest}
                    yield operation.Case(body=body, media_type="application/json")


def resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return resolve(components[ref.rsplit("/", 1)[1]], components) if ref else schema


def valid(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A value that fits ``schema`` (of those the query parameters use)."""
    schema = resolve(schema, components)
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("type") == "integer":
        return schema.get("minimum", 0)
    return "x"


def test_every_documented_parameter_is_accepted_and_no_other() -> None:
    """The endpoints refuse a parameter they do not read (UNKNOWN_PARAM): the document must
    list exactly those they accept, or a client following it would be refused."""

    accepted = {
        ("post", "/api/v1/apiKey"): rp.CREATE_KEY_PARAMS,
        ("post", "/api/v1/order"): rp.NEW_ORDER_PARAMS,
        ("post", "/api/v1/order/test"): rp.NEW_ORDER_PARAMS,
        ("delete", "/api/v1/order"): rp.ORDER_PARAMS,
        ("get", "/api/v1/order"): rp.ORDER_PARAMS,
        ("get", "/api/v1/openOrders"): rp.OPEN_ORDERS_PARAMS,
        ("get", "/api/v1/allOrders"): rp.ALL_ORDERS_PARAMS,
        ("get", "/api/v1/myTrades"): rp.MY_TRADES_PARAMS,
        ("get", "/api/v1/depth"): rp.MARKET_PARAMS,
        ("get", "/api/v1/trades"): rp.MARKET_PARAMS,
        ("get", "/api/v1/ticker/24hr"): rp.TICKER_PARAMS,
        ("get", "/api/v1/ticker/price"): rp.TICKER_PARAMS,
        ("get", "/api/v1/ticker/bookTicker"): rp.TICKER_PARAMS,
        ("get", "/api/v1/klines"): rp.KLINES_PARAMS,
    }
    doc = document(RingexConfig())
    for (method, path), names in accepted.items():
        op = doc["paths"][path][method]
        documented = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        for content in op.get("requestBody", {}).get("content", {}).values():
            schema = content["schema"]
            if "$ref" in schema:
                schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            documented |= set(schema.get("properties", {}))
        assert documented == names, (method, path)
