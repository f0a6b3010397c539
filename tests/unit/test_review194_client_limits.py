"""Review 194: a hostile audit of "bad input gets a clear error that names the value and the
limit; it never crashes a process and never corrupts state; every size taken from a client
has a limit", at the edges reviews 31, 38, 62, 137, 151 and 155 had not pinned.

Reviewed: what a FIX client hands the gateway (OrderQty, Price, StopPx, MaxFloor with 3,000
digits, exponents, signs, other scripts' digits; HeartBtInt, Username, MsgSeqNum, SendingTime
of a Logon; ResendRequest ranges; Text and NoPartyIDs), what a REST client does (parameter
values and counts, decimals as strings and as JSON numbers, ``newClientOrderId``, the
``limit`` of the market and history routes, ``batchOrders`` and ``orderIdList`` counts,
``symbols``, the signing headers' timestamp and recvWindow, the key login's fields) and what
an operator hands ``ringex admin add-user`` (username, comp id, password, deposits). The feed's
requests were read (``procs/marketdata/requests.py``, ``streams.py``) against review 38's and
181's tests, which pin them; nothing new was found there.
Rigs: ``rest_rig.py`` (real HTTP in front of real rings), ``test_adversarial_fix.py`` (a FIX
client over real TCP; BOB and CAROL trade afterwards), and the admin CLI in process with a
config that never ran, as review 155 drives it (``test_review_admin_bugs._cli``).

Faults found:

1. ``procs/gateway/rest_body.py:19,52-54`` (``body_pairs``): a JSON body's number past what
   msgspec decodes (``"quantity": 1e400``, or an integer of 5,000 digits, inside the 16 KiB
   body) is refused as "body is not a JSON object: Number out of range - at `$[...]`": the
   body is a JSON object, and the answer names neither the parameter, its value nor a limit,
   where ``1e2`` is named ("parameter 'quantity' is the JSON number 1e2: decimals are
   strings") and 100 digits are told the 64-character limit (review 31). Fix: on a range
   error, find the key as ``_sent`` does (or decode values as ``msgspec.Raw``) and name the
   parameter, its first characters and the rule. Was (fixed: ``_out_of_range`` finds the
   key, and the answer names it and the number as sent, cut to 40 characters and its
   length). Test: ``test_a_json_number_past_the_decoders_range_is_named_by_its_parameter``.
2. ``procs/common/users.py:56`` (``comp_id_refused``) and ``config/schema.py:584`` (the
   asset lookup): ``ringex admin add-user`` with a 10,000-character ``--username`` (the comp
   id) or a ``--deposit`` whose asset has 3,000 characters repeats the whole value on its one
   line of stderr (10 KB), where an amount is cut to its first 80 characters (review 155:
   ``test_a_long_amount_is_shown_cut``): an error's size is the client's. Fix: show the value
   cut as ``amount``'s refusal does (first characters, then its length). Was (fixed: both
   cut by ``cut_values``, as the amount is; the symbol lookup too). Test:
   ``test_add_user_cuts_a_long_comp_id_or_asset_in_its_refusal``.

Found sound: FIX OrderQty/Price/StopPx/MaxFloor of 3,000 characters are a session Reject
(373=5) naming the tag, the length and the limit of 40; ``1e400``, ``+100`` and Arabic-Indic
digits the wrong format naming the value; ``-0`` and ``-0.00`` a rejected order ("must be
positive"); EndSeqNo of 30 digits a Reject naming it and int64's top; a Logon's HeartBtInt
10**15 named with 1..300, a 7,000-byte Username shown cut with its length, MsgSeqNum of 30
digits named, a SendingTime with 10 fractional digits named as the wrong format; BOB and CAROL
trade after it all. REST: a 5,000-digit quantity is named by its length and the limit 64;
Arabic-Indic digits, ``1e400`` and ``-0`` as strings are "not a decimal number"; 64 nines are
named with the largest price or maxQty; ``newClientOrderId`` of 37 names the 1..36 rule; 25
parameters name 24; ``limit`` 0, 1001, 10**30 and an Arabic-Indic digit on depth, trades,
klines and allOrders are named with 1..1000; 11 orders in ``batchOrders`` or ``orderIdList``
name 1..10; ``symbols`` of 770 characters names 640; a label, username or password one past its
limit names both; a timestamp far off names the window accepted, one of 30 digits or another
script's digits names the header, a recvWindow of 0, -1, 5e3 or 10**29 names 1..60000; nothing
rests and another client is served after it all. ``add-user``: a password of 100,000 characters
names 100000 and 1024, a comp id of 33 names 1..32, a 100-digit deposit is cut and names the
int64 limit.

Leads, not shown: ``add-user --username X --comp-id Y`` never checks X (any length, any
characters) and prints it in its success line, though nothing stores it; ``scopes`` of
"read,read,...," (trailing empties) is taken as ``read``; a request line past 8,190 bytes on
a route aiohttp serves gets aiohttp's text/plain 400 quoting the line, not a JSON
``{code, msg}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.gateway.rest import RestApi
from tests.unit.gateway import test_adversarial_fix as fix_rig
from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.rest_rig import LIMIT, alive, client, post_json, rest_exchange, run
from tests.unit.gateway.test_adversarial_fix import framed, logged_on, order, trade
from tests.unit.router.test_router import config as router_config
from tests.unit.test_review_admin_bugs import _cli, _use_config

exchange = fix_rig.exchange  # the FIX fixture: a gateway with ALICE, BOB and CAROL
IOC: dict[str, Any] = {**LIMIT, "price": "10.00", "quantity": "0.10", "timeInForce": "IOC"}
ARABIC = "\u0661\u0662\u0663"  # 123 in Arabic-Indic digits


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


# -- REST ------------------------------------------------------------------------------------

BTC: dict[str, Any] = {"symbol": "BTC-USD"}
ORDER, KEY, BATCH = "/api/v1/order", "/api/v1/apiKey", "/api/v1/batchOrders"
PUBLIC = False  # an unsigned request
#: (method, path, signed, params, words the 400's msg holds)
REST_CASES: list[tuple[str, str, bool, dict[str, Any], tuple[str, ...]]] = [
    ("POST", ORDER, True, {**IOC, "quantity": "1" * 5000}, ("5000", "64")),
    ("POST", ORDER, True, {**IOC, "quantity": ARABIC}, (ARABIC, "decimal")),
    ("POST", ORDER, True, {**IOC, "quantity": "1e400"}, ("1e400", "decimal")),
    ("POST", ORDER, True, {**IOC, "quantity": "-0"}, ("'-0'", "decimal")),
    ("POST", ORDER, True, {**IOC, "price": "9" * 64}, ("largest price",)),
    ("POST", ORDER, True, {**IOC, "quantity": "9" * 64}, ("maxQty",)),
    ("POST", ORDER, True, {**IOC, "newClientOrderId": "a" * 37}, ("a" * 37, "1..36")),
    ("GET", "/api/v1/openOrders", True, {f"x{k}": "1" for k in range(25)}, ("25", "24")),
    ("GET", "/api/v1/depth", PUBLIC, {**BTC, "limit": 0}, ("limit 0", "1..1000")),
    ("GET", "/api/v1/depth", PUBLIC, {**BTC, "limit": 10**30}, (str(10**30), "1..1000")),
    ("GET", "/api/v1/depth", PUBLIC, {**BTC, "limit": "\u0661"}, ("\u0661", "integer")),
    ("GET", "/api/v1/trades", PUBLIC, {**BTC, "limit": 1001}, ("1001", "1..1000")),
    ("GET", "/api/v1/klines", PUBLIC, {**BTC, "interval": "1m", "limit": 10**6},
     ("1000000", "1..1000")),
    ("GET", "/api/v1/allOrders", True, {**BTC, "limit": 5000}, ("5000", "1..1000")),
    ("GET", "/api/v1/exchangeInfo", PUBLIC, {"symbols": json.dumps(["BTC-USD"] * 70)},
     ("770", "640")),
    ("POST", BATCH, True, {"batchOrders": json.dumps([IOC] * 11)}, ("11", "1..10")),
    ("DELETE", BATCH, True, {**BTC, "orderIdList": json.dumps(list(range(1, 12)))},
     ("11", "1..10")),
    ("POST", KEY, PUBLIC, {"username": "ALICE", "password": "alice-pw", "label": "l" * 65},
     ("65", "64")),
    ("POST", KEY, PUBLIC, {"username": "A" * 65, "password": "alice-pw"}, ("65", "64")),
    ("POST", KEY, PUBLIC, {"username": "ALICE", "password": "p" * 1025}, ("1025", "1024")),
]  # fmt: skip


def test_rest_sizes_and_numbers_are_refused_naming_the_value_and_the_limit(
    harness: Harness,
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            for method, path, signed, params, words in REST_CASES:
                status, body = await alice.request(method, path, signed=signed, **params)
                assert status == 400 and isinstance(body, dict), (path, params, body)
                for word in words:
                    assert word in body["msg"], (path, str(params)[:80], body)
            assert await alice.call("GET", "/api/v1/openOrders") == []
            await alive(url)
        finally:
            await alice.close()

    run(harness, scenario)


def test_signing_headers_far_off_are_refused_naming_the_window(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        cases: list[tuple[str | None, str, tuple[str, ...]]] = [
            (str(10**15), "5000", (str(10**15), "recvWindow 5000", "accepted")),
            ("1", "5000", ("timestamp 1 ", "accepted")),
            (str(10**29), "5000", (str(10**29), "TIMESTAMP")),
            (ARABIC, "5000", (ARABIC, "TIMESTAMP")),
            *((None, rw, (f"'{rw}'", "1..60000")) for rw in ("0", "-1", "5e3", str(10**29))),
        ]
        try:
            for ts, window, words in cases:
                headers = alice.headers("GET", "/api/v1/openOrders", "", b"")
                stamp = next(k for k in headers if "TIMESTAMP" in k.upper())
                headers[stamp] = ts or headers[stamp]
                headers[next(k for k in headers if "WINDOW" in k.upper())] = window
                async with alice.session.get(f"{url}/api/v1/openOrders", headers=headers) as r:
                    text = await r.text()
                    assert r.status == 401, (ts, window, text)
                for word in words:
                    assert word in json.loads(text)["msg"], (ts, window, text)
            assert await alice.call("GET", "/api/v1/openOrders") == []
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_json_number_past_the_decoders_range_is_named_by_its_parameter(
    harness: Harness,
) -> None:
    """``"quantity": 1e2`` is named (review 144) and 100 digits are told the 64-character
    limit (review 31); ``1e400`` and 5,000 digits are named as plainly."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        head = b'{"symbol":"BTC-USD","side":"BUY","type":"LIMIT","price":"10.00","quantity":'
        try:
            for number in (b"1e400", b"1" * 5000):
                status, body = await post_json(alice, url, head + number + b"}")
                assert status == 400, body  # refused, never a 500
                assert await alice.call("GET", "/api/v1/openOrders") == []
                await alive(url)
                assert "'quantity'" in body["msg"], (number[:20], body)
                assert "not a JSON object" not in body["msg"], body
        finally:
            await alice.close()

    run(harness, scenario)


# -- FIX -------------------------------------------------------------------------------------

#: (what, message type, its body, the reply's type, words of its Text)
FIX_CASES: list[tuple[str, str, list[tuple[int, object]], bytes, tuple[bytes, ...]]] = [
    ("qty 1e400", "D", order("f1", "1", "1e400", "100.00"), b"3", (b"1e400", b"OrderQty (38)")),
    ("qty 3000", "D", order("f2", "1", "1" * 3000, "100.00"), b"3", (b"3000 characters", b"40")),
    ("qty -0", "D", order("f3", "1", "-0", "100.00"), b"8", (b"quantity -0 must be positive",)),
    ("px -0.00", "D", order("f4", "1", "1.00", "-0.00"), b"8", (b"price -0.00 must be positive",)),
    ("px 3000", "D", order("f5", "1", "1.00", "9" * 3000), b"3", (b"Price (44)", b"3000", b"40")),
    ("px +100", "D", order("f6", "1", "1.00", "+100"), b"3", (b"'+100'", b"format")),
    ("px arabic", "D", order("f7", "1", "1.00", ARABIC), b"3", (ARABIC.encode(),)),
    ("stop 3000", "D", order("f8", "1", "1.00", "100.00", "4", (99, "9" * 3000)), b"3",
     (b"StopPx (99)", b"3000", b"40")),
    ("floor 3000", "D", order("f9", "1", "1.00", "100.00", "2", (111, "9" * 3000)), b"3",
     (b"MaxFloor (111)", b"3000", b"40")),
    ("resend 30", "2", [(7, 1), (16, "9" * 30)], b"3", (b"9" * 30, b"9223372036854775807")),
]  # fmt: skip


def test_fix_numbers_past_their_limits_are_rejected_naming_both(
    exchange: Callable[..., Harness],
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        for what, kind, body, reply_kind, words in FIX_CASES:
            await alice.send(kind, *body)
            reply = await alice.recv(1.0)
            assert reply is not None and reply.get(35) == reply_kind, (what, reply)
            for word in words:
                assert word in reply.get(58), (what, reply.get(58)[:200])
        assert fix_rig.open_orders(h, 7) == 0
        await trade(bob, carol)

    fix_rig.run(exchange(), scenario)


def test_fix_logon_values_past_their_limits_are_named(exchange: Callable[..., Harness]) -> None:
    now = utc().decode()
    logon = [(98, 0), (108, 30), (554, "secret")]
    cases: list[tuple[list[tuple[int, object]], object, str, tuple[bytes, ...]]] = [
        ([(98, 0), (108, 10**15), (554, "secret")], 1, now, (b"1000000000000000", b"1..300")),
        ([*logon[:2], (553, "A" * 7000), (554, "secret")], 1, now, (b"7000 bytes",)),
        (logon, "9" * 30, now, (b"9" * 30, b"9223372036854775807")),
        (logon, 1, now[:17] + ".1234567890", (b".1234567890", b"SendingTime (52)")),
    ]

    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        for body, seq, sent, words in cases:
            alice = Client("ALICE")
            await alice.connect(port)
            head = ((35, "A"), (49, "ALICE"), (56, "RINGEX"), (34, seq), (52, sent))
            await alice.send_raw(framed(*head, *body))
            logout = await alice.expect("5", timeout=1.0)
            text = logout.get(58)
            assert len(text) < 300, text[:100]
            for word in words:
                assert word in text, text
            await alice.aclose()
        await trade(bob, carol)
        await (await logged_on(port)).aclose()  # ALICE's own logon still works

    fix_rig.run(exchange(), scenario)


# -- ringex admin add-user -------------------------------------------------------------------


def _add_user(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> tuple[int, str]:
    """``ringex admin add-user`` of an instance that never ran: its status and stderr."""
    _use_config(monkeypatch, router_config("r194never", tmp_path))
    code = _cli(["admin", "add-user", "--profile", "x", *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--username", "alice", "--password", "p" * 100_000], ("100000", "1024")),
        (["--username", "alice", "--comp-id", "C" * 33, "--password", "pw"], ("C" * 33, "1..32")),
        (["--username", "a", "--password", "pw", "--deposit", "USD=" + "9" * 100],
         ("beyond the limit of 9223372036854775807",)),
        (["--username", "a", "--password", "pw", "--deposit", "USD=-" + "9" * 3000],
         ("beyond the limit of 9223372036854775807",)),
    ],
)  # fmt: skip
def test_add_user_refuses_long_credentials_and_amounts_naming_the_limit(
    argv: list[str],
    words: tuple[str, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = _add_user(argv, tmp_path, monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and len(err) < 400, err[:300]
    for word in words:
        assert word in err, err
    assert "not running" not in err  # refused before anything was attached


@pytest.mark.parametrize(
    "argv",
    [
        ["--username", "u" * 10_000, "--password", "pw"],
        ["--username", "alice", "--password", "pw", "--deposit", "U" * 3000 + "=5"],
    ],
    ids=["comp-id", "asset"],
)
def test_add_user_cuts_a_long_comp_id_or_asset_in_its_refusal(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = _add_user(argv, tmp_path, monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1, err[:300]  # refused, one line
    assert len(err) < 400, f"{len(err)} characters: {err[:120]}"
