"""Review 284: numbers and text at every edge.

Reviewed: ``procs/gateway/signing.py`` (the signed request's timestamp and receive window),
``procs/gateway/rest_params.py`` (integers, decimals, ``symbol``/``symbols``),
``procs/gateway/rest_body.py`` (a JSON body's numbers), ``procs/gateway/instruments.py``,
``procs/gateway/order_fields.py`` and ``dictionary.py`` (FIX's numbers), ``procs/core/money.py``,
``procs/marketdata/requests.py`` and ``streams.py`` (a feed request's ``id`` and stream
names), ``procs/marketdata/web.py`` (``limit``), ``procs/admin/args.py``, ``client.py``,
``commands.py``, ``add_user.py`` (amounts, seconds), ``config/loader.py``.

Rig: the real ``signing.Verifier`` (sans-I/O, the gateway's own check); ``rest_rig.py``'s
exchange (a real gateway's HTTP port in front of real rings, two symbols as
``test_exchange_info_symbols.py`` has them); the real parsers of each edge called with hostile
text (``rest_params``, ``parse_request``, ``to_minor_units`` under the test profile).

Faults found (each fixed; its test says what it was):

1. A signed request whose ``X-RINGEX-RECV-WINDOW`` (or ``X-RINGEX-TIMESTAMP``) carries a
   leading zero ("05000") and is signed as README says (``timestamp\\nwindow\\n...``, "window:
   the header's value") is refused as ``-1022`` "signature does not match"; the gateway
   instead accepts a signature over a string the client never sent ("5000"), because
   ``Verifier.check`` rebuilds the payload from ``int(...)`` of each header
   (``procs/gateway/signing.py:278``, ``payload(ts, window, ...)``). The same holds for the
   private stream's ``timestamp``/``recvWindow`` query parameters. Fixed: ``payload`` is
   built from the timestamp and window text as sent (the default window's digits when none).
2. ``GET exchangeInfo?symbols=["XBT-USD","xbt-usd"]`` lists XBT-USD twice, where README
   promises the symbols "in its order, each once" (and a repeat spelt alike is listed once):
   ``rest_params.symbols`` (``procs/gateway/rest_params.py:233``) dedupes the names as sent,
   with ``dict.fromkeys(names)``, before ``symbol`` upper-cases them, so two spellings of one
   symbol both pass. Fixed: the resolved ``SymbolConfig``s are kept once each, by ``id``.

Sound: REST integers (``limit``, ``orderId``, ``startTime``/``endTime``) refuse Unicode
digits, full-width digits, "²", "1_000", "+5", spaces and NBSP, "0x10", "1e3", naming the
value; ``-0`` is 0 and refused by its range. The feed's ``id`` of 30 digits, or below -2**63,
is echoed exactly; a kline interval or depth level spelt otherwise ("kline_01m", "depth05",
"kline_1M", full-width "depth\\uff15") is refused naming the stream. ``ringex admin``'s amounts
are exact: "1000e-3", "0.1000000000e1" and a 400-digit run of zeros behind "1." are 1 unit of
the asset, a 400-digit fraction past its decimals is refused naming them, and "1_000",
Arabic-Indic and full-width digits, "NaN", "Infinity", "0x10", "²" are refused. The
verifier refuses a full-width or Arabic-Indic timestamp (-2014) and window (-1131).

Leads not shown:
- ``ringex admin deposit --amount`` takes NBSP and other Unicode spaces around the number
  (``to_minor_units`` matches ``amount.strip()``, and ``Decimal`` strips them too), where
  README says an amount is "ASCII digits, one '.', an exponent" and FIX and REST refuse " 1";
  the amount comes out right, so not a wrong amount. ``add-user --deposit USD=+ 5`` is
  refused while ``deposit --amount "+ 5"`` is taken (review 45): the two CLI edges differ.
- The ``--timeout`` of ``ringex run/stop/status`` goes through ``float()``: "1_0" and
  Arabic-Indic digits are seconds (``procs/admin/args.py:34``) where every other CLI number
  is ASCII digits; the value is the one meant.
- The market-data process's own ``/api/depth?limit=`` takes "0500" and keeps the last of a
  repeated ``limit`` (``parse_qs``), where the gateway's REST refuses a repeat; only reached
  by clients that bypass the gateway.
- FIX numbers stop at 40 characters (documented), REST's at 64: a size written with 50
  trailing zeros is taken on REST and refused by FIX; documented on each side, so not shown.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.loader import load_profile
from procs.admin.client import AdminError, to_minor_units
from procs.gateway import api_errors as codes
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError
from procs.gateway.rest import RestApi
from procs.gateway.signing import BAD_WINDOW, UNAUTHORIZED, AuthError, Verifier
from procs.marketdata.requests import ErrorCode, RequestError, parse_request, result
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import rest_exchange, run
from tests.unit.gateway.test_rest_tickers import _with_xbt
from tests.unit.gateway.test_review47_rest_public import _get

NOW_MS = 1_700_000_000_000
PATH = "/api/v1/account"
SECRET = "review284-secret"


def _signature(text: bytes) -> str:
    return hmac.new(SECRET.encode(), text, hashlib.sha256).hexdigest()


def _as_readme_says(timestamp: str, window: str) -> str:
    """The signature README describes: the header values as sent, then method, path, query."""
    return _signature(f"{timestamp}\n{window}\nGET\n{PATH}\n\n".encode())


def test_a_zero_padded_window_signed_as_sent_is_accepted() -> None:
    """Scenario: a client sends X-RINGEX-RECV-WINDOW "05000" (and, apart, a timestamp with a
    leading zero) and signs ``timestamp\\nwindow\\n...`` with the header's value, as README's
    signing rule says. Expected: accepted, or refused up front naming the leading zero.
    Was (fixed): -1022 "signature does not match", while a signature over "5000", text the client
    never sent, is accepted."""
    window_refused: AuthError | None = None
    try:
        Verifier(60_000, 5_000).verify(
            SECRET, str(NOW_MS), "05000", _as_readme_says(str(NOW_MS), "05000"),
            "GET", PATH, "", b"", NOW_MS,
        )  # fmt: skip
    except AuthError as exc:
        window_refused = exc
    padded = "0" + str(NOW_MS)
    stamp_refused: AuthError | None = None
    try:
        Verifier(60_000, 5_000).verify(
            SECRET, padded, None, _as_readme_says(padded, "5000"),
            "GET", PATH, "", b"", NOW_MS,
        )  # fmt: skip
    except AuthError as exc:
        stamp_refused = exc
    for refused in (window_refused, stamp_refused):
        # accepted, or refused naming the value's form: never a signature mismatch
        assert refused is None or refused.code in (UNAUTHORIZED, BAD_WINDOW), refused.msg


def test_sound_the_verifier_refuses_other_scripts_digits() -> None:
    """Full-width and Arabic-Indic digits (which ``int()`` takes) are no timestamp (-2014) and
    no window (-1131), each named; a leading '+' and spaces neither."""
    verifier = Verifier(60_000, 5_000)
    for stamp in ("\uff11" * 13, "\u0661" * 13, "+" + str(NOW_MS), f" {NOW_MS}", "1_7" * 4):
        with pytest.raises(AuthError) as caught:
            verifier.check(SECRET, stamp, None, "0" * 64, "GET", PATH, "", b"", NOW_MS)
        assert caught.value.code == UNAUTHORIZED and repr(stamp)[:20] in caught.value.msg
    for window in ("\uff15000", "5_000", "+5000", "5e3", "\u00b2", "0", "60001"):
        with pytest.raises(AuthError) as caught:
            verifier.check(SECRET, str(NOW_MS), window, "0" * 64, "GET", PATH, "", b"", NOW_MS)
        assert caught.value.code == BAD_WINDOW and "1..60000" in caught.value.msg


@pytest.fixture
def two(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, reshape=_with_xbt)


def test_exchange_info_lists_a_symbol_once_however_spelt(two: Harness) -> None:
    """Scenario: ``GET exchangeInfo?symbols=["XBT-USD","xbt-usd","BTC-USD"]`` (a symbol is
    named in any case, as ``symbol=xbt-usd`` is taken). Expected: XBT-USD, BTC-USD, each once,
    as README says and as ``["XBT-USD","XBT-USD"]`` is answered. Was (fixed): XBT-USD twice."""
    answers: list[list[str]] = []

    async def scenario(api: RestApi, url: str) -> None:
        listed = json.dumps(["XBT-USD", "xbt-usd", "BTC-USD"])
        status, body = await _get(url, "/api/v1/exchangeInfo", symbols=listed)
        assert status == 200, body
        answers.append([s["symbol"] for s in body["symbols"]])

    run(two, scenario)
    assert answers == [["XBT-USD", "BTC-USD"]]


#: Integers no REST parameter takes, though ``int()`` takes most of them.
NOT_INTEGERS = (
    "\u0661\u0662\u0663", "\uff11\uff12\uff13", "\u00b2", "1_000", "+5", " 5", "5 ",
    "\u00a05", "5\u00a0", "0x10", "1e3", "1.0", "NaN", "Infinity", "5\x00", "\u200b5",
)  # fmt: skip


@pytest.mark.parametrize("text", NOT_INTEGERS)
def test_sound_rest_integers_are_ascii_digits_only(text: str) -> None:
    """``limit``, ``orderId``, ``startTime``: each refuses the text naming it (-1100)."""
    calls = (
        lambda: rp.integer({"limit": text}, "limit", 500, 1, 1000),
        lambda: rp.order_id({"orderId": text}),
        lambda: rp.time_span({"startTime": text}),
    )
    for call in calls:
        with pytest.raises(ApiError) as caught:
            call()
        assert caught.value.code == codes.ILLEGAL_PARAM and repr(text) in caught.value.msg


def test_sound_rest_negative_zero_is_zero_refused_by_range() -> None:
    with pytest.raises(ApiError, match=r"outside 1\.\.1000"):
        rp.integer({"limit": "-0"}, "limit", 500, 1, 1000)
    with pytest.raises(ApiError, match=r"outside 1\.\."):
        rp.order_id({"orderId": "-0"})
    assert rp.integer({"limit": "0" * 63 + "7"}, "limit", 500, 1, 1000) == 7


def test_sound_feed_ids_and_stream_spellings() -> None:
    """A request ``id`` past int64 either way is echoed exactly; a stream's interval or depth
    spelt otherwise is refused naming the stream, the request's id kept."""
    symbols = frozenset({"btc-usd"})
    for big in ("123456789012345678901234567890", "-9223372036854775809"):
        req = parse_request(f'{{"method":"LIST_SUBSCRIPTIONS","id":{big}}}', symbols)
        assert result(req.id, []) == f'{{"result":[],"id":{big}}}'.encode()
    for name in ("btc-usd@kline_01m", "btc-usd@kline_1M", "btc-usd@depth05", "btc-usd@depth\uff15",
                 "btc-usd@depth\u0665", "BTC-USD@trade", "btc-usd@trade\x00"):  # fmt: skip
        raw = json.dumps({"method": "SUBSCRIBE", "params": [name], "id": 7})
        with pytest.raises(RequestError) as caught:
            parse_request(raw, symbols)
        assert caught.value.code == ErrorCode.INVALID_STREAM and caught.value.request_id == 7


def test_sound_admin_amounts_exact_and_ascii() -> None:
    """``deposit --amount``: exponents and long runs of zeros come out exact; what is not
    ASCII digits, one '.', an exponent is refused, naming it."""
    cfg = load_profile("test")
    usd = cfg.asset("USD")
    one = 10**usd.decimals
    for text in ("1000e-3", "0.1000000000e1", "1." + "0" * 400, "1", "+1", "1.", "100e-2"):
        assert to_minor_units(cfg, "USD", text) == (usd.id, one), text
    assert to_minor_units(cfg, "USD", "." + "0" * (usd.decimals - 1) + "1") == (usd.id, 1)
    with pytest.raises(AdminError, match="decimal places"):
        to_minor_units(cfg, "USD", "0." + "0" * 399 + "1")
    with pytest.raises(AdminError, match="beyond the limit"):
        to_minor_units(cfg, "USD", "9" * 1000)
    with pytest.raises(AdminError, match=r"beyond the limit|out of range"):
        to_minor_units(cfg, "USD", "1e999999999999999999999")
    for text in ("1_000", "\u0661\u0660", "\uff11\uff10", "\u00b2", "NaN", "Infinity", "0x10"):
        with pytest.raises(AdminError, match="is not a decimal number"):
            to_minor_units(cfg, "USD", text)
