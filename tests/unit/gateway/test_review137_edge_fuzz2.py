"""Review 137, part 2: the REST API's edges fuzzed in-process with hypothesis (part 1,
``..._fuzz.py``, has the FIX gateway and the convention). Fuzzed: the parameters of an order
and an amend (``rest_params``: decimal strings huge, tiny, in exponent form, with signs,
blanks, other scripts' digits, fullwidth and superscript ones), the integers (ids, times),
bodies (``rest_body``: forms and JSON objects, any bytes, any content type), the size checks
(``checked_params``), the signature check (``signing.Verifier.check``: any header values),
and signed ``FastRequest``s of any query and body through the API's own middleware and order
handlers (review 126's ``_Rig``: a ``RestApi`` never started over a real ``RestOrders``).

Faults found: none here. Every refusal was an ``ApiError`` (400, or 504 for an order the
stand-in exchange never answers) naming the value, every price and size taken was exactly
the decimal sent, on its tick or lot and within the symbol's limits, and every command
published was within its record's limits.
Seen and not pinned: ``Verifier.check`` raises ``UnicodeEncodeError`` for a query holding a
lone surrogate (``payload`` encodes strictly, signing.py:71), which is how aiohttp and the
fast lane decode a non-UTF-8 byte of a request target; both parsers (llhttp) refuse such a
byte in a target with their own 400 before a handler runs, so no request reaches it.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from procs.common.records import NewOrder, ReplaceOrder
from procs.gateway import rest_body, signing
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError
from procs.gateway.fast_request import FastRequest
from procs.gateway.instruments import MAX_INT64, Instruments
from tests.unit.gateway.test_review126_rest_docstrings import _STAMPS, _Rig, answer

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RIG = _Rig(Path(tempfile.mkdtemp(prefix="ringex-r137-")), order_timeout_s=0.001)
INSTRUMENTS = Instruments(RIG.cfg.symbols)
SYM = RIG.cfg.symbols[0]  # BTC-USD: 2 price decimals on a tick of 5, 2 size decimals

#: Decimal strings a client might send: plain ones of any length, and every odd spelling.
DECIMAL = st.one_of(
    st.from_regex(r"\A[0-9]{0,25}(\.[0-9]{0,25})?\Z"),
    st.sampled_from(
        (
            *("1e5", "1E-2", "-1", "+1", " 1", "1 ", "\t1", "1\n", "-0", ".", "0.", ".0"),
            *("\u0661", "\uff11", "\u00bd", "\u00b2", "1_000", "0x10", "inf", "nan", "NaN"),
            *("9" * 64, "9" * 65, "0." + "0" * 62, "00.050", "10.05", "10.03", "0.05", "0.00"),
            *("92233720368547758.05", "92233720368547758.10", "184467440737095516.15"),
        )
    ),
    st.text(max_size=10),
)
CHOICES = {
    "symbol": ("BTC-USD", "btc-usd", "BTC-USDT", "\u017fBTC-USD", ""),
    "side": ("BUY", "SELL", "buy", "X"),
    "type": (*rp.TYPES, "limit", "STOP"),
    "timeInForce": (*rp.TIFS, "gtc", "GTX"),
    "selfTradePreventionMode": (*rp.STP, "x"),
}


def value(name: str) -> st.SearchStrategy[str]:
    if name in CHOICES:
        return st.sampled_from(CHOICES[name])
    return st.text(max_size=40) if name == "newClientOrderId" else DECIMAL


@st.composite
def order_params(draw: st.DrawFn) -> dict[str, str]:
    """A buy of some type and size, and up to five more parameters of the order's names."""
    params = {"symbol": "BTC-USD", "side": "BUY", "type": draw(value("type"))}
    params["quantity"] = draw(DECIMAL)
    for name in draw(st.lists(st.sampled_from(sorted(rp.NEW_ORDER_PARAMS)), max_size=5)):
        params[name] = draw(value(name))
    return params


def units(text: str, decimals: int) -> Decimal:
    """The exact value of a decimal string, in units of 10**-decimals."""
    return Decimal(text).scaleb(decimals)


def _refused(exc: ApiError) -> None:
    assert exc.status == 400 and exc.code < 0 and exc.msg and len(exc.msg) < 600, exc.msg


@FUZZ
@given(order_params())
def test_an_orders_parameters_are_refused_with_an_api_error_or_taken_exactly(
    params: dict[str, str],
) -> None:
    """Any order parameters: ``check_params`` and ``new_order`` raise nothing but a 400
    ``ApiError`` naming why; what they take is the exact decimal sent, a size within the
    symbol's min and max on its lot, prices positive, on the tick and at most 2**63-1, an
    iceberg's slice below its size."""
    try:
        rp.check_params(params)
        req = rp.new_order(params, INSTRUMENTS)
    except ApiError as exc:
        _refused(exc)
        return
    assert SYM.min_qty <= req.qty <= SYM.max_qty and req.qty % SYM.lot == 0
    assert units(params["quantity"], SYM.qty_decimals) == req.qty
    for name, taken in (("price", req.price), ("stopPrice", req.stop_price)):
        if taken:
            assert 0 < taken <= MAX_INT64 and taken % SYM.tick == 0
            assert units(params[name], SYM.price_decimals) == taken
    if req.display_qty:
        assert SYM.min_qty <= req.display_qty < req.qty
        assert units(params["icebergQty"], SYM.qty_decimals) == req.display_qty


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(("price", "quantity", "orderId", "startTime", "endTime", "limit")),
        st.one_of(DECIMAL, st.integers(-(2**70), 2**70).map(str)),
    )
)
def test_an_amend_and_the_integers_are_refused_with_an_api_error_or_within_bounds(
    params: dict[str, str],
) -> None:
    """Any amend, order id, time span and limit: a 400 ``ApiError`` or a value within its
    bounds (an amend's price and size as an order's, ids 1..2**63-1, times 0..2**63-1 with
    the start not after the end, a limit in its range)."""
    try:
        price, qty = rp.amendment(params, SYM)
    except ApiError as exc:
        _refused(exc)
    else:
        assert price is None or (0 < price <= MAX_INT64 and price % SYM.tick == 0)
        assert qty is None or SYM.min_qty <= qty <= SYM.max_qty
    try:
        oid = rp.order_id(params)
    except ApiError as exc:
        _refused(exc)
    else:
        assert oid is None or 0 < oid <= MAX_INT64
    try:
        start, end = rp.time_span(params)
    except ApiError as exc:
        _refused(exc)
    else:
        assert all(t is None or 0 <= t <= MAX_INT64 for t in (start, end))
        assert start is None or end is None or start <= end
    try:
        limit = rp.integer(params, "limit", 500, 1, 1000)
    except ApiError as exc:
        _refused(exc)
    else:
        assert 1 <= limit <= 1000


JSON_BODY = st.dictionaries(
    st.sampled_from((*sorted(rp.NEW_ORDER_PARAMS), "x", "", "a" * 70)),
    st.one_of(st.text(max_size=8), st.integers(-(2**70), 2**70), st.floats(), st.booleans()),
).map(lambda d: json.dumps(d).encode())
BODY = st.one_of(
    st.binary(max_size=60),
    JSON_BODY,
    JSON_BODY.map(lambda b: b[:-1] + b', "side": "BUY", "side": "SELL"}' if len(b) > 2 else b),
    st.lists(st.sampled_from(("a=1", "=", "%zz", "%ff", "b=%E2%82%AC", "+", "c=1", ""))).map(
        lambda parts: "&".join(parts).encode()
    ),
)
CONTENT_TYPE = st.sampled_from(
    ("application/json", "application/x-www-form-urlencoded", "text/json", "", "a/b/c")
)


@FUZZ
@given(BODY, CONTENT_TYPE, st.integers(0, 30))
def test_any_body_is_parameters_or_a_400(body: bytes, content_type: str, repeat: int) -> None:
    """Any body, as any content type, with the query's parameters: ``body_pairs`` and
    ``checked_params`` raise nothing but a 400 ``ApiError``; what they take is at most
    ``MAX_PARAMS`` names sent once each, each value 1..64 characters."""
    query = [(f"q{k % 26}", "1") for k in range(repeat)]
    try:
        params = rest_body.checked_params(
            query + rest_body.body_pairs(body, content_type), frozenset(f"q{k}" for k in range(26))
        )
    except ApiError as exc:
        _refused(exc)
        return
    assert len(params) <= rp.MAX_PARAMS
    assert all(1 <= len(v) <= rp.MAX_VALUE_CHARS for v in params.values())


HEADER = st.one_of(st.none(), st.text(max_size=20), st.integers(-5, 2**70).map(str))
VERIFIER = signing.Verifier(60_000, 5_000)


@FUZZ
@given(
    HEADER,
    HEADER,
    st.one_of(HEADER, st.text(min_size=64, max_size=64), st.text(max_size=200)),
    st.text(max_size=30),
    st.binary(max_size=30),
)
def test_any_signature_headers_are_an_auth_error_or_a_match(
    timestamp: str | None, window: str | None, signature: str | None, query: str, body: bytes
) -> None:
    """Any timestamp, window and signature header values (text as a client can send):
    ``Verifier.check`` raises nothing but ``AuthError`` with a message of bounded size."""
    now = time.time_ns() // 1_000_000
    try:
        VERIFIER.check("k" * 64, timestamp, window, signature, "POST", "/o", query, body, now)
    except signing.AuthError as exc:
        assert exc.code < 0 and exc.msg and len(exc.msg) < 300, exc.msg
    else:
        raise AssertionError("a signature that is no HMAC was taken")


PIECE = st.sampled_from(
    (
        *("symbol=BTC-USD", "side=BUY", "side=SELL", "type=LIMIT", "type=MARKET", "type=STOP_LOSS"),
        *("type=LIMIT_MAKER", "quantity=1", "quantity=0.01", "quantity=1e2", "price=10.05"),
        *("price=%31%30", "price=+1", "price=1%20", "stopPrice=10", "icebergQty=0.5", "x="),
        *("timeInForce=IOC", "timeInForce=DAY", "newClientOrderId=a%00b", "=1", "&", "%", "%zz"),
        *("quantity=%EF%BC%91", "price=%D9%A1", "symbol=%C5%BFBTC-USD", "#frag", "a=b=c"),
        *("quantity=99999999999999999999999", "price=000000000000000000000000000010.05"),
        *("orderId=1", "orderId=-1", "orderId=99999999999999999999", "origClientOrderId=%FF"),
    )
)


GOOD_ORDER = {
    "symbol": "BTC-USD",
    "side": "BUY",
    "type": "LIMIT",
    "price": "10.05",
    "quantity": "1",
}
#: An order's form body, each value kept or spelled oddly, and maybe more pieces after it.
ORDER_FORM = st.fixed_dictionaries(
    {name: st.one_of(*[st.just(good)] * 5, value(name)) for name, good in GOOD_ORDER.items()}
).flatmap(
    lambda form: st.lists(PIECE, max_size=1).map(
        lambda extra: "&".join([urlencode(form), *extra]).encode()
    )
)


@settings(FUZZ, max_examples=150)
@given(
    st.one_of(st.just([]), st.lists(PIECE, max_size=3)),
    st.one_of(
        ORDER_FORM,
        ORDER_FORM,
        st.lists(PIECE, max_size=8).map(lambda ps: "&".join(ps).encode()),
        BODY,
    ),
    st.sampled_from((None, "application/json", "application/x-www-form-urlencoded", ";;")),
    st.sampled_from(("POST", "POST", "DELETE", "GET")),
)
def test_a_signed_order_request_of_any_query_and_body_is_answered_never_500(
    pieces: list[str], body: bytes, content_type: str | None, method: str
) -> None:
    """A request signed right, of any query, body and content type, to the order routes
    (new, cancel, query) through the API's middleware: answered 200, 400 or 504 (the order
    unanswered) with a ``code`` and ``msg`` body, nothing raised; every command published
    within its record's limits and the symbol's."""
    query, path = "&".join(pieces), "/api/v1/order"
    key = RIG.key()
    ts = _STAMPS[0] = max(time.time_ns() // 1_000_000, _STAMPS[0] + 1)
    headers = CIMultiDict(
        {
            signing.API_KEY: key.key,
            signing.TIMESTAMP: str(ts),
            signing.SIGNATURE: signing.sign(key.secret, ts, 5_000, method, path, query, body),
        }
    )
    if content_type is not None:
        headers["Content-Type"] = content_type
    if body:
        headers["Content-Length"] = str(len(body))
    target = f"{path}?{query}" if query else path
    request = FastRequest(method, target, CIMultiDictProxy(headers), body, "10.0.0.1", True)
    handler = {"POST": RIG.api.new_order, "DELETE": RIG.api.cancel_order}.get(
        method, RIG.api.query_order
    )
    before = len(RIG.out)
    status, answered, _ = asyncio.run(answer(RIG.api, handler, request))
    assert status in (200, 400, 504), (status, answered)
    assert status == 200 or (answered["code"] < 0 and answered["msg"]), answered
    for record in RIG.out[before:]:
        msgspec.msgpack.decode(msgspec.msgpack.encode(record), type=type(record))
        if isinstance(record, NewOrder | ReplaceOrder):
            size = record.qty if isinstance(record, NewOrder) else record.order_qty
            assert SYM.min_qty <= size <= SYM.max_qty and record.price % SYM.tick == 0
