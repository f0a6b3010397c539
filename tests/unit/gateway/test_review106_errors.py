"""Review 106, the error codes: every error code README.md's "### The REST API and the private
stream" names is answered for the cause it gives, naming the value, and every code of
``api_errors.py`` (and ``signing.py``) is documented, in the README and in the served
OpenAPI document's errors; the scopes; each status answered is one its operation lists.
Shared rig: ``readme_rest_claims.py``.
"""

from __future__ import annotations

import ast
import re
from typing import Any, cast

import pytest

from config.edges import GatewayConfig, RestConfig
from procs.gateway import api_errors as codes
from procs.gateway import openapi_intro, signing
from procs.gateway.private_stream import PATH as STREAM_PATH
from tests.unit.gateway import readme_rest_claims as claims
from tests.unit.gateway.readme_rest_claims import (
    ENDPOINTS,
    README,
    ROOT,
    V1,
    _claim,
    _fits,
    _operation,
)
from tests.unit.gateway.rest_rig import statuses

served = claims.served  # the fixture: the scenario's observations, run once for this module


# -- 3. the error codes -----------------------------------------------------------------------

GATEWAY = ROOT / "procs" / "gateway"


def _documented_scope(method: str, path: str) -> str | None:
    """The scope the document says an operation needs ("": any valid key; None: unsigned)."""
    op = _operation(method, path)
    if not op.get("security"):
        return None
    found = re.search(r"needs scope `(\w+)`", op.get("description", ""))
    return found[1] if found else ""


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
            elif func == "choice" and len(node.args) >= 5:  # ``rest_params.choice``'s code
                pair = (400, value(node.args[4]))
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
    """openapi_intro.py ``ERRORS``: each status the API answers names the codes it comes with;
    every (status, code) the source raises (``_raised``) is named under its status."""
    errors = openapi_intro.ERRORS
    assert status in errors, status
    assert f"({code})" in errors[status][1] or f" {code}" in errors[status][1]


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
