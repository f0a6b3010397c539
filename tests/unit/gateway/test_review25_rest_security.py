"""A 25th hostile review, security-minded, of the REST API's access control: signing and
replay (``signing.py``), keys and scopes (``rest_keys.py``), rate limits (``limits.py``,
``api_errors.throttle``), size limits and the fast lane (``rest.py``, ``rest_fast.py``,
``rest_body.py``, ``rest_params.py``). Rig: ``rest_rig.py`` (real HTTP over real sockets in
front of real rings, an in-process router and matcher, databases off).

Tests whose docstring opens with "What is wrong" fail on the code as reviewed: each names
the bug, why it matters and where. The others pin what was checked and holds.

The fast lane's answers are compared with aiohttp's to the same bytes (``fast_lane =
false``, aiohttp 3.14.5): aiohttp's request parser strips a header value's trailing
whitespace (``_http_parser.pyx``: ``raw_value.rstrip(b" \\t")``), refuses a second
``Content-Type`` or ``Host`` (``SINGLETON_HEADERS``: "Duplicate 'Content-Type' header
found.") and counts a chunked body's trailer lines against its 128 headers ("Too many
headers received"); httptools, under the lane, does none of these.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.edges import RestConfig
from config.schema import DatabaseConfig
from procs.gateway.limits import RateLimiter
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.rest_fast import MAX_HEAD_BYTES
from procs.gateway.signing import API_KEY, SIGNATURE, TIMESTAMP, sign
from tests.unit.gateway.harness import Harness, config
from tests.unit.gateway.rest_rig import (
    ALICE,
    client,
    exchange,
    request,
    rest_exchange,
    run,
    statuses,
)

ORDER = "symbol=BTC-USD&side=BUY&type=LIMIT&price=100.00&quantity=0.10&newClientOrderId={}"


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


@pytest.fixture(params=["fast lane", "aiohttp"])
def lanes(request: pytest.FixtureRequest, instance: str, tmp_path: Path) -> Iterator[Harness]:
    """The REST exchange with the fast lane on (the default) or off (aiohttp alone): the
    same bytes must get the same answer from both."""
    rest = RestConfig(
        port=0, fast_lane=request.param == "fast lane", key_rate_per_s=1_000, key_burst=1_000,
        login_rate_per_s=100, login_burst=100,
    )  # fmt: skip
    cfg = config(instance, tmp_path, rest=rest)
    h = Harness(msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False)))
    h.add_user("ALICE", "alice-pw", ALICE)
    h.fund(ALICE, usd=1_000_000 * 10**6, btc=0)
    yield h
    h.close()


def _signed_order(c: RestClient, body: bytes, *extra: bytes, sig_tail: bytes = b"") -> bytes:
    """A signed form POST of an order, as raw bytes ending the connection after it."""
    ts = c._timestamp()
    sig = sign(c.secret, ts, c.recv_window_ms, "POST", "/api/v1/order", "", body)
    return request(
        b"POST /api/v1/order HTTP/1.1",
        b"Content-Type: application/x-www-form-urlencoded",
        b"Content-Length: %d" % len(body),
        f"{API_KEY}: {c.api_key}".encode(),
        f"{TIMESTAMP}: {ts}".encode(),
        b"X-RINGEX-RECV-WINDOW: %d" % c.recv_window_ms,
        f"{SIGNATURE}: {sig}".encode() + sig_tail,
        *extra,
        b"Connection: close",
        body=body,
    )


def _answer(raw: bytes) -> Any:
    return json.loads(raw.partition(b"\r\n\r\n")[2] or b"null")


def _lower_name(line: bytes) -> bytes:
    name, sep, value = line.partition(b":")
    return name.lower() + sep + value


async def _open_ids(c: RestClient) -> list[str]:
    return [o["clientOrderId"] for o in await c.call("GET", "/api/v1/openOrders")]


# -- the fast lane: unbounded buffering --------------------------------------------------------


@pytest.mark.parametrize("filler", ["chunk extension", "trailer lines"])
def test_a_chunked_order_cannot_make_the_fast_lane_buffer_without_bound(
    harness: Harness, filler: str
) -> None:
    """What is wrong: a chunked ``POST /api/v1/order`` whose framing never ends (one chunk
    extension of endless bytes, ``1;e=aaaa...``, or an endless trailer after the last chunk,
    ``0\\r\\nT: ...\\r\\nT: ...``) is read and kept whole by the fast lane until its 408,
    ``body_timeout_s`` (10 s) later. ``FastLane.data_received`` appends every read of a
    request in progress to ``self._chunks`` (rest_fast.py:277-278, kept for a hand-over to
    aiohttp); the only bound on them, ``MAX_HEAD_BYTES``, applies before the headers end
    (rest_fast.py:302-310); ``max_body_bytes`` counts body bytes only (``on_body``,
    rest_fast.py:370-374), which neither filler has; and trailer lines are skipped before the
    128-header check (``on_header``, rest_fast.py:338-339). Over loopback one connection
    made the lane hold ~440 MB in one second (~4 GB by the 408); a handful of connections,
    no API key needed, runs the gateway (and the FIX sessions it serves) out of memory.
    aiohttp, given the same bytes (``fast_lane = false``), holds none of it: it answers the
    extension at once (its handler runs when the headers end: 401 for an unknown key) and
    refuses the trailer at line 129 (400 "Too many headers received").
    Expected: an answer within a second or two, and the lane holding no more than a head and
    a body's worth. Fix: bound the bytes a request may take past its headers (e.g.
    ``max_body_bytes`` plus a framing allowance) and count trailer lines against
    ``MAX_HEADERS``, handing over to aiohttp (or answering 400/413) past either."""

    async def scenario(api: RestApi, url: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        head = b"POST /api/v1/order HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        if filler == "chunk extension":
            writer.write(head + b"1;e=")
            piece = b"a" * 65_536
        else:
            writer.write(head + b"1\r\nX\r\n0\r\n")
            piece = b"T: " + b"b" * 60 + b"\r\n"
            piece *= 65_536 // len(piece)
        held = 0
        reset = False  # the server answered and closed while the client still wrote: the
        # kernel resets the connection, and the answer is lost (aiohttp's own 400 as well)
        try:
            try:
                for _ in range(128):  # 8 MiB
                    writer.write(piece)
                    await writer.drain()
            except ConnectionError:
                reset = True
            await asyncio.sleep(0.3)
            held = max((sum(map(len, lane._chunks)) for lane in api.lanes), default=0)
            raw = b""
            try:
                async with asyncio.timeout(1.5):
                    while b"\r\n\r\n" not in raw and (chunk := await reader.read(65_536)):
                        raw += chunk
            except ConnectionError:
                reset = True
            except TimeoutError:
                pass
            bound = MAX_HEAD_BYTES + api.rest.max_body_bytes + (256 << 10)  # and one read
            assert (statuses(raw) or reset) and held <= bound, (
                f"no answer after 8 MiB of {filler}; the lane holds {held} bytes"
            )
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    run(harness, scenario)


# -- the fast lane and aiohttp: the same bytes, other answers ---------------------------------


def test_a_signed_header_with_trailing_whitespace_is_read_as_aiohttp_reads_it(
    lanes: Harness,
) -> None:
    """What is wrong: a correctly signed order whose ``X-RINGEX-SIGNATURE`` value is
    followed by a space (``X-RINGEX-SIGNATURE: <64 hex> \\r\\n``, optional whitespace RFC 9110
    5.5 says a recipient excludes from the field value) is placed by aiohttp (200: its parser
    strips the trailing whitespace) but refused by the fast lane, 401 -2014 "must be 64
    lower-case hex characters": httptools hands the value with its trailing space and the
    lane keeps it (``FastLane.on_header``, rest_fast.py:351-353). The same holds for the API
    key (401 "unknown or missing API key") and the timestamp. The port's answer to the
    same bytes thus depends on the route (POST/DELETE/GET ``/api/v1/order`` on the lane,
    ``PUT`` and the rest on aiohttp) and on ``fast_lane``.
    Expected: 200, as aiohttp answers (the ``aiohttp`` case of this test passes). Fix: strip
    trailing spaces and tabs from header values in ``on_header``, as aiohttp does."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            data = _signed_order(alice, ORDER.format("ows").encode(), sig_tail=b" ")
            raw = await exchange(api.port, data, timeout_s=3)
            assert statuses(raw) == [200], raw[-300:]
            assert await _open_ids(alice) == ["ows"]
        finally:
            await alice.close()

    run(lanes, scenario)


@pytest.mark.parametrize("second", [b"Content-Type: application/json", b"Host: elsewhere"])
def test_a_repeated_singleton_header_is_refused_as_aiohttp_refuses_it(
    lanes: Harness, second: bytes
) -> None:
    """What is wrong: an order request with a second ``Content-Type`` (or ``Host``) header
    is refused by aiohttp, 400 "Duplicate 'Content-Type' header found." (aiohttp's
    ``SINGLETON_HEADERS``, its guard against two parsers on the path, e.g. a proxy taking
    the last and the gateway the first, reading one request two ways), but placed by the
    fast lane, which keeps both (``FastLane.on_header``, rest_fast.py:337-353) and uses the
    first (``FastRequest.content_type``, rest_fast.py:127-132). ``Content-Type`` is not
    signed and decides whether the signed body is read as a form or as JSON
    (``body_pairs``, rest_body.py:47), so which one counts matters; no body that reads as a
    valid order both ways was found, so this is a hardening gap and a divergence, not a
    replay. Expected: 400, as aiohttp answers (the ``aiohttp`` cases pass), and no order.
    Fix: refuse a repeated Content-Length/Content-Type/Host/Transfer-Encoding in
    ``on_header`` (hand the request to aiohttp, whose 400 names it)."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            data = _signed_order(alice, ORDER.format("twice").encode(), second)
            raw = await exchange(api.port, data, timeout_s=3)
            assert statuses(raw) == [400], raw[-300:]
            assert await _open_ids(alice) == []
        finally:
            await alice.close()

    run(lanes, scenario)


# -- what holds ------------------------------------------------------------------------------


def test_a_captured_order_cannot_be_replayed_in_another_framing(harness: Harness) -> None:
    """Holds: the signature covers the target and body as sent and the replay memory keys on
    the signature, so every re-framing of a captured order that keeps the signed bytes
    (another connection, lower-case header names, chunked instead of Content-Length, an
    empty query ``?`` that signs the same ``path\\nquery``) is refused -1025, one that changes
    them (parameters reordered) is refused -1022; one order is placed, on either lane."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            body = ORDER.format("once").encode()
            captured = _signed_order(alice, body)
            raw = await exchange(api.port, captured)
            assert statuses(raw) == [200], raw[-300:]
            head, _, _ = captured.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            chunked = [x for x in lines if not x.startswith(b"Content-Length")]
            chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            reordered = body.replace(b"side=BUY&type=LIMIT", b"type=LIMIT&side=BUY")
            replays = {
                "again": (captured, -1025),
                "lower-case names": (
                    b"\r\n".join([lines[0]] + [_lower_name(x) for x in lines[1:]])
                    + b"\r\n\r\n"
                    + body,
                    -1025,
                ),
                "chunked": (
                    b"\r\n".join([*chunked, b"Transfer-Encoding: chunked"]) + b"\r\n\r\n" + chunk,
                    -1025,
                ),
                "empty query": (captured.replace(b"/api/v1/order ", b"/api/v1/order? ", 1), -1025),
                "reordered": (captured.replace(body, reordered), -1022),
            }
            for name, (data, code) in replays.items():
                raw = await exchange(api.port, data)
                assert statuses(raw) == [401] and _answer(raw)["code"] == code, (name, raw[-200:])
            assert await _open_ids(alice) == ["once"]
        finally:
            await alice.close()

    run(harness, scenario)


def test_another_users_order_cannot_be_told_from_no_order(harness: Harness) -> None:
    """Holds: ALICE cancelling or querying BOB's open order by its ``orderId`` gets the same
    answer as for an id that names no order (the matcher's NOT_ORDER_OWNER is told as
    "unknown order", ``api_errors.NOT_YOURS``), and BOB's order stays open."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            ask = await bob.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="SELL", type="LIMIT",
                price="31000.00", quantity="0.10",
            )  # fmt: skip
            theirs, none = ask["orderId"], ask["orderId"] + 1000
            for method in ("DELETE", "GET"):
                answers = [
                    await alice.request(method, "/api/v1/order", symbol="BTC-USD", orderId=oid)
                    for oid in (theirs, none)
                ]
                (s1, b1), (s2, b2) = answers
                assert s1 == s2 == 400 and b1["code"] == b2["code"], answers
                assert b1["msg"].replace(str(theirs), "N") == b2["msg"].replace(str(none), "N")
            still = await bob.call("GET", "/api/v1/order", symbol="BTC-USD", orderId=theirs)
            assert still["status"] == "NEW"
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_the_address_limit_ignores_forwarding_headers(harness: Harness) -> None:
    """Holds: the per-address limit keys on the socket's peer, never on a header a client
    writes (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``), on either lane; its 429 is
    JSON ``{"code": -1003, "msg": ...}`` with a ``Retry-After`` of whole seconds."""

    async def scenario(api: RestApi, url: str) -> None:
        api.ip_limits = RateLimiter(0.5, 3)
        got: list[int] = []
        for i, target in enumerate([b"/api/v1/ping", b"/api/v1/order"] * 3):
            spoof = f"10.0.0.{i}".encode()
            data = request(
                b"GET " + target + b" HTTP/1.1",
                b"X-Forwarded-For: " + spoof,
                b"Forwarded: for=" + spoof,
                b"X-Real-IP: " + spoof,
                b"Connection: close",
            )
            raw = await exchange(api.port, data)
            got += statuses(raw)
            if statuses(raw) == [429]:
                answer = _answer(raw)
                assert answer["code"] == -1003 and "limit is 0.5/s" in answer["msg"], answer
                assert b"\r\nRetry-After: 2\r\n" in raw or b"\r\nRetry-After: 1\r\n" in raw, raw
        assert got[:3] == [200, 401, 200] and got[3:] == [429, 429, 429], got

    run(harness, scenario)


def test_refused_signatures_cost_no_replay_memory_and_forged_ones_no_key_budget(
    harness: Harness,
) -> None:
    """Holds: requests that fail the signature (wrong HMAC, stale timestamp, bad window)
    leave the replay memory as it was, and do not spend the key's rate limit: only a request
    whose HMAC holds is remembered and charged."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            api.key_limits = RateLimiter(0.01, 2)
            before = len(api.verifier)
            now = time.time_ns() // 1_000_000
            good = sign(alice.secret, now - 70_000, 5000, "GET", "/api/v1/account", "", b"")
            for ts, window, sig in [
                (now, "5000", "0" * 64),  # wrong HMAC
                (now - 70_000, "5000", good),  # right HMAC, stale timestamp
                (now, "0", good),  # a window out of range
            ]:
                headers = {
                    API_KEY: alice.api_key,
                    TIMESTAMP: str(ts),
                    "X-RINGEX-RECV-WINDOW": window,
                    SIGNATURE: sig,
                }
                async with alice.session.get(f"{url}/api/v1/account", headers=headers) as r:
                    assert r.status == 401, await r.text()
            assert len(api.verifier) == before
            for _ in range(2):  # the key's whole burst is still there
                assert (await alice.request("GET", "/api/v1/openOrders"))[0] == 200
            status, body = await alice.request("GET", "/api/v1/openOrders")
            assert status == 429 and body["code"] == -1003, body
        finally:
            await alice.close()

    run(harness, scenario)
