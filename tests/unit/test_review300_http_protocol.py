"""Review 300: the REST and WebSocket servers at the HTTP protocol level.

Reviewed: ``procs/gateway/rest.py`` (``_app``'s routes, ``_middleware``: OPTIONS, 413, the
router's 404 and 405, CORS), ``rest_fast.py`` (what it hands to aiohttp: ``Expect``, more
than ``MAX_HEADERS`` headers), ``private_stream.py`` (``_admit`` then ``ws.prepare`` in
``_serve``), ``procs/marketdata/web.py`` (``Site.get``'s query) and ``static/trading.js``
(the page reaches the REST API across ports: ``rest = scheme://host:rest.port``, signed
headers, so DELETE and signed GETs are preflighted), against RFC 9110/9112, RFC 6455 and
README's REST and market-data sections ("Errors are the HTTP status with ``{"code",
"msg"}``, the msg naming the value and the limit"; "only a stream taken uses it up").

Rig: ``tests/unit/gateway/rest_rig.py``'s exchange (real gateway, REST fast lane and aiohttp
over real TCP on 127.0.0.1, an in-process router and matcher), requests written as raw bytes
(``rest_rig.exchange``, ``request``; review 200's ``upgrade`` for hand-made WebSocket
handshakes, signed with ``RestClient.stream_url``); the market-data process over a real ring
(``tests/unit/marketdata/test_adversarial_ws.run``), spoken to with review 200's raw
``exchange``.

Faults found (each fixed; its test says what it was):

1. ``procs/gateway/rest.py:280-298`` (``_app`` registers every route with aiohttp's default
   ``expect_handler``, which ``aiohttp/web_app.py:538`` runs before the middleware) with
   ``rest.py:368`` (the 413 check, in the middleware) and ``rest_fast.py:74`` (``Expect`` hands the
   request to aiohttp): a POST with ``Expect: 100-continue`` and a ``Content-Length`` past
   ``max_body_bytes`` is told ``HTTP/1.1 100 Continue`` and only then 413. RFC 9110 10.1.1: a
   server MUST send an immediate final status when the headers decide it; here they do (the
   middleware refuses on the header alone). curl sends ``Expect`` for large bodies: it is invited
   to upload the megabytes that are refused. Fixed: the fast lane answers such a head 413 itself,
   naming the size and the limit, and closes (``rest_fast.py``, ``on_headers_complete``); with
   ``fast_lane = false`` aiohttp's 100 comes first still. Test:
   ``test_expect_100_continue_past_the_body_limit_gets_the_413_not_a_100``.
2. ``procs/gateway/private_stream.py:197`` (``ws.prepare``, aiohttp's handshake check) with
   ``rest.py:396-401`` (the middleware turns any ``HTTPException`` into ``{"code": -1000, "msg":
   "<reason>: <method> <path>"}``, keeping only ``Allow`` of its headers): a signed private-stream
   upgrade with ``Sec-WebSocket-Version: 99`` is answered ``400 {"msg": "Bad Request: GET
   /api/v1/stream"}`` with no ``Sec-WebSocket-Version`` header. RFC 6455 4.2.2 says the server MUST
   answer a version it does not speak with a ``Sec-WebSocket-Version`` header naming its versions
   (426 suggested); the market-data port does so (README: "426 naming 13", review 200's fault 3).
   Fixed: ``private_stream.handshake_fault`` in ``_admit`` (before the signature is remembered):
   another version given is a 426 with ``Sec-WebSocket-Version: 13`` (``ApiError`` takes headers),
   naming the version sent and 13. Test:
   ``test_a_stream_upgrade_of_an_unknown_version_is_told_version_13``.
3. ``procs/gateway/rest.py:396-399`` (``f"{exc.reason}: {request.method} {request.path}"``): every
   refusal aiohttp's WebSocket handshake makes of a signed stream upgrade (no ``Upgrade:
   websocket`` header, as behind a proxy that drops hop-by-hop headers; a missing or malformed
   ``Sec-WebSocket-Key``) reaches the client as ``"Bad Request: GET /api/v1/stream"``, naming
   neither the header nor the value: aiohttp's own text ("Handshake error: ...", "No WebSocket
   UPGRADE hdr: ...") is dropped. README: "Errors are the HTTP status with ``{"code", "msg"}``, the
   msg naming the value". Fixed: ``handshake_fault`` (``ws.can_prepare``) refuses 400 naming the
   Upgrade, Connection, Sec-WebSocket-Key and Sec-WebSocket-Version sent. Test:
   ``test_a_stream_upgrade_without_its_key_is_told_which_header``.
4. ``procs/gateway/private_stream.py:260`` (``_admit``: ``api.verifier.remember(seen)``) with
   ``:197`` (``ws.prepare`` after it, in ``_serve``): a signed stream URL whose upgrade the
   handshake refuses (no ``Upgrade`` header: a proxy that strips it; a wrong version) has spent its
   signature, so the same URL sent again as a proper upgrade within its window is refused ``-1025
   request replayed: this signature was accepted already`` although no stream was ever taken.
   README: "a URL refused for a limit may be sent again within its window: only a stream taken uses
   it up" (review 267 fixed the limits' case only). Fixed: the handshake is judged in ``_admit``
   before ``remember``. Test: ``test_a_stream_url_refused_by_the_handshake_may_be_sent_again``.
5. ``procs/gateway/rest_fast.py:270-271`` (past ``MAX_HEADERS`` or ``MAX_LINE_BYTES`` the lane
   hands the request to aiohttp) with aiohttp's ``RequestHandler.handle_error``
   (``aiohttp/web_protocol.py:850``): a request with 200 header lines is answered ``HTTP/1.0 400``,
   ``text/plain``, ``Too many headers received``: not the API's ``{"code", "msg"}``, no limit named
   (128), no CORS header (a page cannot read it), and not 431 (RFC 6585), which the market-data
   port answers to the same request ("expected no more than 128 headers"). A header line past 8,190
   bytes likewise (400 text "Got more than 8190 bytes"). Fixed: the lane answers 431 (a header line
   past 8190 bytes, more than 128 headers) and 414 (a target past 8190 bytes) itself in the API's
   error body, naming the limit, and closes; with ``fast_lane = false`` aiohttp's text 400 stays.
   Test: ``test_too_many_headers_get_a_431_in_the_apis_error_body``.
6. ``procs/marketdata/web.py:247`` (``{k: v[-1] for k, v in parse_qs(...)}``): a parameter sent
   twice to the market-data HTTP API is taken from its last copy in silence:
   ``/api/depth?symbol=btc-usd&symbol=eth-usd`` answers ETH-USD's book with 200, and
   ``limit=5&limit=1000`` a thousand levels. The REST API refuses the same (``-1100``, "sent
   twice": "never a default taken in silence"); a cache or a log keyed on the first copy shows
   another book than the one served. Fixed: a name with more than one value is a 400 naming it and
   the count. Test: ``test_a_market_data_parameter_sent_twice_is_refused``.

Sound (plain tests): three pings pipelined on one keep-alive connection are answered in
order, each with a correct ``Content-Length``, and the last's ``Connection: close`` ends the
connection after its answer; an unknown path is 404 and a wrong method 405 with ``Allow``,
both JSON naming method and path, and HEAD of a GET route a 405 without a body but with the
body's ``Content-Length``; the page's CORS preflight (its origin, DELETE, its signed headers)
is a 204 allowing each; a parameter sent twice is ``-1100`` naming it, ``+`` is read as a
space and named so; a body past the limit is 413 naming its size and the limit, and a request
pipelined behind it is served (its body is not read as a request); handshake refusals of the
private stream leave no stream counted.

Leads not shown:
- After a connection is handed to aiohttp (any public request), a later request head trickled
  a byte at a time has no 10 s limit: aiohttp's keep-alive timer (75 s) is the only bound,
  and aiohttp buffers up to 128 x 8,190 bytes of it (README bounds only a head handed over
  unfinished; with ``fast_lane = false`` no head has the 10 s limit). Not measured here.
- The fast lane's own refusals (``error_bytes``: the 503 of the connection limits, the 408)
  carry no CORS header, so the page across ports sees a network error, not the 503 naming
  the limit. Not pinned (the 503 is written before any header, the Origin unknown).
- ``%FF`` (not UTF-8) in a query is decoded to U+FFFD by yarl and by ``parse_qs``: the
  refusal names ``'\\ufffd'``, not what was sent; two distinct escaped ids could read alike.
- OPTIONS of any path, unknown ones included, is a 204 with the CORS headers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import client, exchange, request, rest_exchange, run
from tests.unit.marketdata.rig import Rig
from tests.unit.marketdata.test_adversarial_ws import run as run_feed
from tests.unit.marketdata.test_review200_feed_wire import exchange as feed_exchange
from tests.unit.marketdata.test_review200_feed_wire import upgrade

STREAM = "/api/v1/stream"
PAGE_ORIGIN = b"Origin: http://127.0.0.1:8765"

Answer = tuple[int, dict[str, str], bytes]


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def answers(raw: bytes, head_only: bool = False) -> list[Answer]:
    """The HTTP answers in ``raw``, each (status, headers lower-cased, body by its
    Content-Length; none with ``head_only``)."""
    out: list[Answer] = []
    while raw:
        head, sep, raw = raw.partition(b"\r\n\r\n")
        assert sep, f"an answer's head without its end: {head[:200]!r}"
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        size = 0 if head_only else int(headers.get("content-length", "0"))
        out.append((int(status_line.split(" ", 2)[1]), headers, raw[:size]))
        raw = raw[size:]
    return out


def one(raw: bytes) -> Answer:
    (answer,) = answers(raw)
    return answer


async def first_answer(port: int, data: bytes, timeout_s: float = 2.0) -> bytes:
    """What the server answers to ``data`` (a head whose body is never sent) up to the end
    of its first answer's head, or within ``timeout_s``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(timeout_s):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


def stream_query(url: str) -> str:
    return url.split("?", 1)[1]


# -- faults ----------------------------------------------------------------------------------


def test_expect_100_continue_past_the_body_limit_gets_the_413_not_a_100(
    harness: Harness,
) -> None:
    """Scenario: ``POST /api/v1/apiKey`` with ``Expect: 100-continue`` and ``Content-Length:
    1000000`` (the limit: 16,384), the body held back as the expectation says.
    Expected: the 413 at once (RFC 9110 10.1.1: the headers decide it), no 100.
    Was (fixed): ``HTTP/1.1 100 Continue``, then the 413: the client is invited to send 1 MB."""

    async def scenario(api: RestApi, url: str) -> None:
        head = request(
            b"POST /api/v1/apiKey HTTP/1.1",
            b"Expect: 100-continue",
            b"Content-Type: application/x-www-form-urlencoded",
            b"Content-Length: 1000000",
        )
        first = await first_answer(api.port, head)
        assert first.startswith(b"HTTP/1.1 413 "), first

    run(harness, scenario)


def test_a_stream_upgrade_of_an_unknown_version_is_told_version_13(harness: Harness) -> None:
    """Scenario: a signed private-stream upgrade with ``Sec-WebSocket-Version: 99``.
    Expected: 426 with ``Sec-WebSocket-Version: 13`` (RFC 6455 4.2.2 MUST name the versions;
    the market-data port answers so), the msg naming 99.
    Was (fixed): ``400 {"code": -1000, "msg": "Bad Request: GET /api/v1/stream"}``, no
    version."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            path = f"{STREAM}?{stream_query(alice.stream_url())}"
            status, headers, body = one(await exchange(api.port, upgrade(path, version="99"), 2))
            assert headers.get("sec-websocket-version") == "13", (status, headers, body)
            assert status == 426, body
            assert "99" in json.loads(body)["msg"], body
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_stream_upgrade_without_its_key_is_told_which_header(harness: Harness) -> None:
    """Scenario: a signed private-stream upgrade with no ``Upgrade`` header (a proxy that
    drops hop-by-hop headers), and one with ``Sec-WebSocket-Key: bad``.
    Expected: 400 whose msg names the header at fault (``Upgrade``, ``Sec-WebSocket-Key``).
    Was (fixed): both ``{"code": -1000, "msg": "Bad Request: GET /api/v1/stream"}``."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            plain = request(f"GET {STREAM}?{stream_query(alice.stream_url())} HTTP/1.1".encode())
            bad_key = upgrade(f"{STREAM}?{stream_query(alice.stream_url())}", key="bad")
            msgs = []
            for data in (plain, bad_key):
                status, _, body = one(await exchange(api.port, data, 2))
                assert status == 400, body
                msgs.append(json.loads(body)["msg"])
            assert "upgrade" in msgs[0].lower(), msgs
            assert "sec-websocket-key" in msgs[1].lower(), msgs
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_stream_url_refused_by_the_handshake_may_be_sent_again(harness: Harness) -> None:
    """Scenario: a signed stream URL sent first without ``Upgrade: websocket`` (400), then,
    within its window, as a proper upgrade.
    Expected: the second is taken (101, the snapshot): README "only a stream taken uses it
    up". Was (fixed): 401 ``-1025 request replayed: this signature was accepted already``."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            path = f"{STREAM}?{stream_query(alice.stream_url())}"
            refused = await exchange(api.port, request(f"GET {path} HTTP/1.1".encode()), 2)
            assert answers(refused)[0][0] == 400, refused
            again = await exchange(api.port, upgrade(path), 1)
            assert again.startswith(b"HTTP/1.1 101 "), again[:300]
        finally:
            await alice.close()

    run(harness, scenario)


def test_too_many_headers_get_a_431_in_the_apis_error_body(harness: Harness) -> None:
    """Scenario: ``GET /api/v1/ping`` from the page's origin with 200 header lines.
    Expected: 431 (as the market-data port answers), ``{"code", "msg"}`` naming 128.
    Was (fixed): ``HTTP/1.0 400``, ``text/plain``, "Too many headers received", no limit
    named."""

    async def scenario(api: RestApi, url: str) -> None:
        many = [b"X-Filler-%d: 1" % k for k in range(200)]
        data = request(b"GET /api/v1/ping HTTP/1.1", PAGE_ORIGIN, *many)
        status, headers, body = one(await exchange(api.port, data, 2))
        assert headers.get("content-type", "").startswith("application/json"), (status, body)
        assert status == 431, body
        assert "128" in json.loads(body)["msg"], body

    run(harness, scenario)


def test_a_market_data_parameter_sent_twice_is_refused(instance: str) -> None:
    """Scenario: ``GET /api/depth?symbol=btc-usd&symbol=eth-usd&limit=5`` on the market-data
    port. Expected: 400 naming ``symbol`` sent twice (as the REST API refuses it).
    Was (fixed): 200, ETH-USD's book: the last copy, in silence."""

    async def body(rig: Rig) -> None:
        target = b"/api/depth?symbol=btc-usd&symbol=eth-usd&limit=5"
        raw = await feed_exchange(rig.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, text = one(raw)
        assert status == 400, text
        assert b"symbol" in text, text

    run_feed(instance, body)


# -- sound -----------------------------------------------------------------------------------


def test_sound_pipelined_requests_are_answered_in_order_then_closed(harness: Harness) -> None:
    """Three requests in one write on one connection, the last with ``Connection: close``:
    three answers in order, each body its ``Content-Length``, then the close."""

    async def scenario(api: RestApi, url: str) -> None:
        data = (
            request(b"GET /api/v1/ping HTTP/1.1")
            + request(b"GET /api/v1/time HTTP/1.1")
            + request(b"GET /api/v1/nothing HTTP/1.1", b"Connection: close")
        )
        started = time.monotonic()
        got = answers(await exchange(api.port, data, 5))
        assert time.monotonic() - started < 4, "the connection was not closed"
        assert [status for status, _, _ in got] == [200, 200, 404]
        assert json.loads(got[0][2]) == {}
        assert "serverTime" in json.loads(got[1][2])
        assert got[2][1].get("connection") == "close"
        for _, headers, body in got:
            assert headers["content-type"] == "application/json"
            assert int(headers["content-length"]) == len(body)

    run(harness, scenario)


def test_sound_404_and_405_are_json_with_allow(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        status, _, body = one(await exchange(api.port, request(b"GET /api/v2/x HTTP/1.1"), 1))
        assert (status, json.loads(body)) == (
            404, {"code": -1000, "msg": "Not Found: GET /api/v2/x"}
        )  # fmt: skip
        status, headers, body = one(
            await exchange(api.port, request(b"PUT /api/v1/ping HTTP/1.1"), 1)
        )
        assert (status, headers["allow"]) == (405, "GET")
        assert json.loads(body)["msg"] == "Method Not Allowed: PUT /api/v1/ping"
        head = await exchange(api.port, request(b"HEAD /api/v1/ping HTTP/1.1"), 1)
        ((status, headers, body),) = answers(head, head_only=True)
        assert (status, headers["allow"], body) == (405, "GET", b"")
        assert head.endswith(b"\r\n\r\n")  # no body after the head
        assert int(headers["content-length"]) > 0

    run(harness, scenario)


def test_sound_the_pages_preflight_allows_its_signed_delete(harness: Harness) -> None:
    """The page (market-data port) calls the REST port across origins with the signed
    headers: its preflight of a DELETE is allowed, each header named."""

    async def scenario(api: RestApi, url: str) -> None:
        data = request(
            b"OPTIONS /api/v1/order?symbol=BTC-USD&orderId=1 HTTP/1.1",
            PAGE_ORIGIN,
            b"Access-Control-Request-Method: DELETE",
            b"Access-Control-Request-Headers: x-ringex-apikey, x-ringex-timestamp, "
            b"x-ringex-recv-window, x-ringex-signature",
        )
        status, headers, _ = one(await exchange(api.port, data, 1))
        assert status == 204
        assert headers["access-control-allow-origin"] == "*"
        assert "DELETE" in headers["access-control-allow-methods"]
        allowed = headers["access-control-allow-headers"].lower()
        for name in ("apikey", "timestamp", "recv-window", "signature"):
            assert f"x-ringex-{name}" in allowed

    run(harness, scenario)


def test_sound_query_strings_repeated_keys_and_plus(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        twice = b"GET /api/v1/depth?symbol=BTC-USD&symbol=BTC-USD HTTP/1.1"
        status, _, body = one(await exchange(api.port, request(twice), 1))
        assert (status, json.loads(body)) == (
            400, {"code": -1100, "msg": "parameter 'symbol' is sent twice"}
        )  # fmt: skip
        plus = b"GET /api/v1/depth?symbol=BTC%2DUSD&limit=+5 HTTP/1.1"
        status, _, body = one(await exchange(api.port, request(plus), 1))
        assert (status, json.loads(body)["msg"]) == (400, "limit ' 5' is not an integer")

    run(harness, scenario)


@pytest.mark.parametrize("target", [b"/api/v1/order", b"/api/v1/apiKey"])
def test_sound_a_request_behind_a_413_is_served_not_smuggled(
    harness: Harness, target: bytes
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        big = b"a=" + b"b" * 20_000
        data = request(
            b"POST " + target + b" HTTP/1.1",
            b"Content-Type: application/x-www-form-urlencoded",
            b"Content-Length: %d" % len(big),
            body=big,
        ) + request(b"GET /api/v1/ping HTTP/1.1", b"Connection: close")
        got = answers(await exchange(api.port, data, 5))
        assert [status for status, _, _ in got] == [413, 200]
        assert json.loads(got[0][2])["msg"] == (
            "request body of 20002 bytes is larger than the limit of 16384 bytes"
        )

    run(harness, scenario)


def test_sound_refused_stream_handshakes_leave_nothing_counted(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            for data, status in (
                (upgrade(f"{STREAM}?{stream_query(alice.stream_url())}", version="99"), 426),
                (upgrade(f"{STREAM}?{stream_query(alice.stream_url())}", key="bad"), 400),
                (
                    request(f"GET {STREAM}?{stream_query(alice.stream_url())} HTTP/1.1".encode()),
                    400,
                ),
            ):
                assert answers(await exchange(api.port, data, 1))[0][0] == status
            assert (api.streams.count, api.streams.by_account) == (0, {})
            ws = await alice.stream()  # a stream is still served
            first: Any = await ws.receive_json(timeout=5)
            assert first["event"] == "snapshot"
            await ws.close()
        finally:
            await alice.close()

    run(harness, scenario)
