"""Bugs a hostile review of the REST API's authentication, parameters, limits, private stream
and OpenAPI document found (``rest_rig.py``: real HTTP in front of real rings, databases off).
Each test fails until its bug is fixed; none repeats what ``test_review_rest_bugs.py``,
``test_rest_found_bugs.py`` or ``test_adversarial_rest.py`` already hold."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from procs.gateway.limits import RateLimiter
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import ApiCallError, RestClient
from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.rest_rig import (
    LIMIT,
    client,
    post_json,
    rest_exchange,
    run,
    stream_messages,
)

#: Arabic-Indic digits: ``int()`` reads them as 0..9.
ARABIC_DIGITS = str.maketrans(
    "0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
)


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


# -- parameters --------------------------------------------------------------------------------


def test_a_json_key_repeated_with_a_space_before_its_colon_is_refused(harness: Harness) -> None:
    """What is wrong: ``RestApi.params`` (rest.py, ``len(decoded) < body.count(b'":')``)
    only looks for repeated JSON keys when it counts more ``":`` than decoded keys; a body
    written ``"quantity" : "0.10"`` (a space before the colon, as many JSON pretty-printers
    and hand-written clients do) has no ``":`` at all, so a key sent twice is silently
    decoded as its last value.
    Spec/convention: a parameter sent twice is refused (query, form and JSON alike: the
    earlier review's fix), never traded at one of its values.
    Expected: 400 naming ``quantity``. Actual: 200, an order for 5.00 placed."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            body = (
                b'{"symbol" : "BTC-USD", "side" : "BUY", "type" : "LIMIT", '
                b'"price" : "100.00", "quantity" : "0.10", "quantity" : "5.00"}'
            )
            status, answer = await post_json(alice, url, body)
            assert status == 400 and "quantity" in answer["msg"], (status, answer)
        finally:
            await alice.close()

    run(harness, scenario)


def test_integer_parameters_are_plain_ascii_digits(harness: Harness) -> None:
    """What is wrong: ``rest_params.order_id`` and ``rest_params.integer`` parse with Python's
    ``int()``, which takes surrounding whitespace, a leading ``+``, ``_`` digit separators and
    any Unicode decimal digits (Arabic-Indic, full-width, ...). Decimal strings are held to
    ``[0-9.]`` (``DECIMAL``), the signature headers to ASCII digits; integers are not.
    Spec/convention: a value that does not parse is refused (-1100) naming it, as the venue
    APIs do for ``orderId=+7`` or ``orderId=7_0``.
    Expected: 400 / -1100 for each spelling. Actual: the order is found (200)."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            placed = await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10"
            )
            oid = str(placed["orderId"])
            answers = {}
            for spelled in (f" {oid} ", f"+{oid}", f"0_{oid}", oid.translate(ARABIC_DIGITS)):
                status, body = await alice.request(
                    "GET", "/api/v1/order", symbol="BTC-USD", orderId=spelled
                )
                answers[spelled] = (status, body.get("code"))
            assert all(a == (400, -1100) for a in answers.values()), answers
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_missing_side_is_a_missing_mandatory_parameter(harness: Harness) -> None:
    """What is wrong: ``rest_params.new_order`` reads ``side`` and ``type`` with
    ``choice(params, name, table, "")``, so an order without them is answered as if it had
    sent an empty value: -1100 "side '' is not one of BUY, SELL".
    Spec/convention: the venue's -1102 MANDATORY_PARAM ("mandatory parameter 'side' was not
    sent"), which ``api_errors`` defines and ``required`` uses for the other mandatory
    parameters (symbol, quantity, price); the OpenAPI document lists side and type as
    required.
    Expected: 400 / -1102 naming 'side'. Actual: 400 / -1100."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            status, body = await alice.request(
                "POST", "/api/v1/order", symbol="BTC-USD", type="LIMIT", price="100.00",
                quantity="0.10",
            )  # fmt: skip
            assert status == 400 and body["code"] == -1102 and "'side'" in body["msg"], body
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_stop_price_on_a_limit_order_is_not_ignored(harness: Harness) -> None:
    """What is wrong: ``rest_params.new_order`` reads ``stopPrice`` only for the stop types;
    on LIMIT or MARKET it is dropped in silence, and the order goes in as a plain one (while
    ``icebergQty`` on a market order is refused: the same kind of mistake).
    Spec/convention: the venue refuses a parameter that does not apply (-1106 "parameter
    'stopPrice' sent when not required"); this API's own rule is "a misspelled name is an
    error, not a default taken in silence" (rest_params.py).
    Expected: 400 naming stopPrice, no order. Actual: 200, a resting LIMIT order without
    its stop."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            status, body = await alice.request(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10",
                stopPrice="90.00",
            )  # fmt: skip
            assert status == 400 and "stopPrice" in body["msg"], (status, body)
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_quantity_over_the_limit_names_the_limit_as_a_decimal(harness: Harness) -> None:
    """What is wrong: ``rest_params.new_order`` names the symbol's size limits in the
    pipeline's integer size units ("outside the symbol's limits (1..1000000000 size units)"),
    while the API speaks decimals everywhere else (exchangeInfo says minQty "0.01", maxQty
    "10000000.00"; the tick and lot refusals say "tick 0.05", "lot 0.01"). A client reading
    the message is told it may send a billion where the limit is ten million.
    Spec: "Prices and sizes are decimal strings"; errors name the value and the limit.
    Expected: the message names maxQty 10000000.00. Actual: "1..1000000000 size units"."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            info = await alice.call("GET", "/api/v1/exchangeInfo", signed=False)
            max_qty = info["symbols"][0]["maxQty"]
            status, body = await alice.request(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="10000000.05"
            )
            assert status == 400 and body["code"] == -1013, body
            assert max_qty in body["msg"], (max_qty, body)
        finally:
            await alice.close()

    run(harness, scenario)


# -- client order ids --------------------------------------------------------------------------


def test_a_generated_client_order_id_never_collides_with_an_open_orders(
    harness: Harness,
) -> None:
    """What is wrong: an order sent without newClientOrderId is given ``f"r{ref}"``
    (rest_orders.py ``RestOrders.new_order``), a name from the same namespace a client may
    choose, and the in-use check (``RestApi.new_order``) runs for chosen ids only. A client
    that chose ``r<n>`` for an open order gets a second open order with the same
    clientOrderId as soon as the gateway's ref counter reaches n; ``client_ids`` then points
    at the newer one, so query/cancel by origClientOrderId reach only it, and once it
    finishes the id counts as free although the first order is still open.
    Spec/convention: a clientOrderId is unique among an account's open orders (the API
    refuses a chosen duplicate with -2010); venues generate ids that cannot clash.
    Expected: the generated id differs from every open order's. Actual: both open orders are
    named the same."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await alice.call("GET", "/api/v1/openOrders")  # its balance watch takes a ref
            peek = api.core.next_ref()  # the refs are a counter: the next two are peek+1, +2
            chosen = f"r{peek + 2}"
            first = await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10",
                newClientOrderId=chosen,
            )  # fmt: skip
            second = await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10"
            )
            open_ids = [o["clientOrderId"] for o in await alice.call("GET", "/api/v1/openOrders")]
            assert first["clientOrderId"] == chosen
            assert second["clientOrderId"] != chosen, open_ids
        finally:
            await alice.close()

    run(harness, scenario)


# -- keys and logins ---------------------------------------------------------------------------


def test_a_user_who_never_logged_out_can_still_log_in(harness: Harness) -> None:
    """What is wrong: every login (``POST /api/v1/apiKey``) makes a new key, keys never
    expire, and past ``max_keys_per_user`` (20) a login is refused "revoke one first"
    (apikeys.py ``ApiKeyStore.create``). The only way to revoke is ``DELETE /api/v1/apiKey``
    signed with that very key, and the trading page keeps its key in sessionStorage: a user
    who closed the tab 20 times without logging out has lost every secret and can never log
    in again (no listing, no revoke with the password, no expiry, no eviction of the oldest).
    Spec: "Users log in with username and password ... and get API keys".
    Expected: the 21st login succeeds (or the password can revoke the old keys). Actual: 400
    "has 20 API keys, the limit is 20: revoke one first", for good."""

    async def scenario(api: RestApi, url: str) -> None:
        limit = api.keys.max_keys_per_user
        async with RestClient(url) as browser:
            for _ in range(limit):  # one page session each, the tab closed without logout
                await browser.login("ALICE", "alice-pw")
            try:
                await browser.login("ALICE", "alice-pw")
            except ApiCallError as exc:
                pytest.fail(f"ALICE is locked out after {limit} logins: {exc}")

    run(harness, scenario)


def test_a_user_with_a_long_password_can_log_in(harness: Harness) -> None:
    """What is wrong: the users file takes a password of any length (it is a FIX Logon's 554,
    scrypt-hashed), but ``POST /api/v1/apiKey`` runs the generic ``check_params`` on it, which
    caps every value at 64 characters (rest_params.py ``MAX_VALUE_CHARS``): a user whose
    password-manager password is longer can log on over FIX but never get an API key.
    Spec: "Users log in with username and password (salted hashes, as for FIX)".
    Expected: a key for CAROL. Actual: 400 "parameter 'password' is 80 characters, the limit
    is 64"."""
    harness.add_user("CAROL", "p" * 80, 603)

    async def scenario(api: RestApi, url: str) -> None:
        async with RestClient(url) as carol:
            try:
                await carol.login("CAROL", "p" * 80)
            except ApiCallError as exc:
                pytest.fail(f"CAROL's valid password is refused: {exc}")

    run(harness, scenario)


def test_a_password_in_the_url_is_refused(harness: Harness) -> None:
    """What is wrong: ``create_key`` takes its parameters through ``RestApi.params``, which
    merges the query string with the body, so ``POST /api/v1/apiKey?username=..&password=..``
    logs in: the password travels in the request line, where access logs, proxies and
    browser history keep it. The OpenAPI document has the credentials in the request body
    only (``ApiKeyRequest``), no query parameters.
    Expected: 400 (credentials only in the body). Actual: 200 and a key."""

    async def scenario(api: RestApi, url: str) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/api/v1/apiKey?username=ALICE&password=alice-pw") as r,
        ):
            body = await r.json()
            assert r.status == 400, (r.status, body)

    run(harness, scenario)


# -- rate limits -------------------------------------------------------------------------------


def test_preflight_requests_count_against_the_address_limit(harness: Harness) -> None:
    """What is wrong: the middleware answers ``OPTIONS`` (any path) before the client
    address's rate limit (rest.py ``_middleware``), so one address can send preflights
    without bound, each served on the gateway's event loop (which also runs the FIX
    acceptor and the ring pipeline).
    Spec: "Rate limits per key and per IP with 429"; rest.py's docstring: "Every request:
    1. the client address's rate limit (429 with Retry-After)".
    Expected: 429 once the address's burst is spent. Actual: 204 every time."""

    async def scenario(api: RestApi, url: str) -> None:
        api.ip_limits = RateLimiter(0.01, 3)
        statuses = []
        async with aiohttp.ClientSession() as session:
            for _ in range(10):
                async with session.options(f"{url}/api/v1/order") as r:
                    statuses.append(r.status)
        assert 429 in statuses, statuses

    run(harness, scenario)


def test_a_browser_can_read_the_retry_hint_of_a_429(harness: Harness) -> None:
    """What is wrong: the retry hint of a 429 is only in the ``Retry-After`` header (the
    body says "the limit is N/s", not how long to wait), and the CORS answer
    (rest.py ``_cors``) has no ``Access-Control-Expose-Headers``: a cross-origin page (the
    trading page, served by the market-data process on another port) cannot read a header
    that is not CORS-safelisted, so a browser client gets no retry hint at all.
    Spec: "Rate limits per key and per IP with 429 and a retry hint".
    Expected: Retry-After exposed to the page (or the seconds in the body). Actual: neither."""

    async def scenario(api: RestApi, url: str) -> None:
        api.ip_limits = RateLimiter(0.01, 1)
        origin = {"Origin": "http://127.0.0.1:8081"}
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.get(f"{url}/api/v1/time", headers=origin) as r:
                    status, headers, body = r.status, r.headers, await r.json()
        assert status == 429 and "Retry-After" in headers, (status, body)
        exposed = headers.get("Access-Control-Expose-Headers", "").lower()
        assert "retry-after" in exposed or headers["Retry-After"] in body["msg"], (
            dict(headers),
            body,
        )

    run(harness, scenario)


# -- the private stream ------------------------------------------------------------------------


def test_a_removed_user_cannot_open_a_private_stream(harness: Harness) -> None:
    """What is wrong: a signed REST request checks that the key's user still exists with the
    key's account (rest.py ``RestApi.signed``: 401 "user ... of this key changed"); the
    private stream's upgrade (private_stream.py ``PrivateStreams.handle``) checks only the
    key and its signature, so a user an operator removed (``UserStore.remove``) keeps
    receiving the account's balances, open orders and fills.
    Expected: the upgrade refused with 401, like every REST request. Actual: 101 and a
    snapshot of the account."""

    async def scenario(api: RestApi, url: str) -> None:
        bob = await client(url, "BOB", "bob-pw")
        try:
            assert harness.users.remove("BOB")
            await asyncio.sleep(1.1)  # the gateway's view of the users file: once a second
            status, body = await bob.request("GET", "/api/v1/account")
            assert status == 401, body  # REST: refused
            try:
                ws = await bob.stream()
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 401
                return
            first = await ws.receive(timeout=2)
            await ws.close()
            pytest.fail(f"a removed user's stream opened: {first.data!r:.200}")
        finally:
            await bob.close()

    run(harness, scenario)


def test_one_key_cannot_take_every_private_stream_slot(harness: Harness) -> None:
    """What is wrong: the only cap on private streams is the gateway's total
    (``max_streams``, private_stream.py ``PrivateStreams.handle``); one API key may open
    them all (each upgrade needs only a fresh signature, which the key's owner makes at
    will), and every other user is then refused "N private streams is this gateway's limit".
    Spec/convention: streams are per user; venues cap connections per key/account (and per
    address), so one client cannot lock the others out.
    Expected: BOB's stream opens (ALICE is refused long before she holds every slot).
    Actual: 503 for BOB."""

    async def scenario(api: RestApi, url: str) -> None:
        api.streams.max_streams = 10  # below the client's 16 connections
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        held: list[aiohttp.ClientWebSocketResponse] = []
        try:
            for _ in range(10):
                try:
                    ws = await alice.stream()
                except aiohttp.WSServerHandshakeError:
                    break  # refused: a per-key cap
                held.append(ws)
                await ws.receive(timeout=5)  # the snapshot
            try:
                mine = await bob.stream()
            except aiohttp.WSServerHandshakeError as exc:
                pytest.fail(f"ALICE holds {len(held)} streams, BOB is refused: {exc.status}")
            await mine.close()
        finally:
            for ws in held:
                await ws.close()
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_the_stream_reports_fills_of_an_order_placed_over_fix(harness: Harness) -> None:
    """What is wrong: the stream's reports come from ``RestOrders.live``, which holds only
    orders accepted while the account was already of interest (rest_orders.py ``_accepted``,
    ``_fill``: ``self.live.get(order_id)`` or nothing). BOB's order placed over FIX before he
    opened the stream is in neither the snapshot's openOrders (databases off; with one on,
    only if the writer caught up) nor ``live``, so when it trades the stream says nothing
    about it: only the balance changes arrive. rest_orders.py's docstring promises every
    order of an account that uses the API, "whichever gateway or protocol placed it".
    Spec: "An authenticated WebSocket stream of the user's own execution reports ... with
    ... a snapshot on subscribe".
    Expected: the snapshot lists the open order, and a TRADE executionReport for it follows
    the fill. Actual: neither."""

    async def scenario(api: RestApi, url: str) -> None:
        assert harness.gateway is not None
        fix = Client("BOB")
        await fix.connect(harness.gateway.port)
        await fix.logon("bob-pw")
        await fix.send(
            "D", (11, "fix-ask"), (55, "BTC-USD"), (54, "2"), (60, utc()),
            (38, "0.50"), (40, "2"), (44, "100.00"),
        )  # fmt: skip
        ack = await fix.expect("8")
        assert ack.get(39) == b"0", ack  # NEW
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            ws = await bob.stream()
            snapshot = json.loads((await ws.receive(timeout=5)).data)["data"]
            await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10",
                timeInForce="IOC",
            )  # fmt: skip
            events = await stream_messages(ws, 1.5)
            await ws.close()
            trades = [e for e in events if e["data"].get("executionType") == "TRADE"]
            assert snapshot["openOrders"] and trades, (snapshot, events)
        finally:
            fix.close()
            await alice.close()
            await bob.close()

    run(harness, scenario)


# -- the OpenAPI document ----------------------------------------------------------------------


def test_the_document_says_what_revoking_a_key_needs(harness: Harness) -> None:
    """What is wrong: openapi.py documents ``DELETE /api/v1/apiKey`` with
    ``scope="read"`` ("Signed; the API key needs scope `read`"), but ``RestApi.revoke_key``
    takes any valid key (``signed(request, "")``): a trade-only key revokes itself (200),
    where the document promises a 403.
    Expected: the document and the server agree. Actual: the document claims scope read."""

    async def scenario(api: RestApi, url: str) -> None:
        trader = await client(url, "ALICE", "alice-pw", scopes="trade")
        try:
            doc = await trader.call("GET", "/openapi.json", signed=False)
            says_read = "scope `read`" in doc["paths"]["/api/v1/apiKey"]["delete"]["description"]
            status, body = await trader.request("DELETE", "/api/v1/apiKey")
            assert (status == 403) == says_read, (status, body, says_read)
        finally:
            await trader.close()

    run(harness, scenario)


def test_the_document_lists_the_503_of_a_new_order_while_stopping(harness: Harness) -> None:
    """What is wrong: ``RestApi.new_order`` answers 503 (-1001 "the exchange is stopping")
    while the gateway stops (``closing``), but openapi.py gives ``newOrder`` only
    ``errors=[504]``: its responses have no 503, and the document's own rule is that every
    status an operation answers is listed.
    Expected: "503" among newOrder's responses. Actual: 400, 401, 403, 413, 429, 504."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            api.closing = True
            status, body = await alice.request(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10"
            )
            assert status == 503, body
            doc = await alice.call("GET", "/openapi.json", signed=False)
            listed = sorted(doc["paths"]["/api/v1/order"]["post"]["responses"])
            assert str(status) in listed, listed
        finally:
            api.closing = False
            await alice.close()

    run(harness, scenario)
