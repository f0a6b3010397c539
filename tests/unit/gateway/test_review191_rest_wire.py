"""Review 191: a hostile review of the REST API's HTTP wire handling.

Reviewed: the fast lane ``procs/gateway/rest_fast.py`` (httptools over ``asyncio.Protocol``;
POST, DELETE, GET ``/api/v1/order`` and the batch routes served there, every other request
handed with its connection to aiohttp), ``fast_request.py`` (the request and the answer's
bytes), ``rest_body.py`` (``read_body``'s 408), ``rest_connections.py`` and ``rest.py``'s
middleware (413, CORS), against their docstrings and README's REST section ("What one HTTP
client can make the gateway spend is bounded"). Rig: ``rest_rig``'s exchange over real TCP
sockets on 127.0.0.1, raw bytes written a part at a time (``TCP_NODELAY``; the server seen to
have read a part before the next is sent, where the split matters); aiohttp's own answer to
the same bytes (``fast_lane = false``) is the reference the lane's docstring names. A handler
held on an event stands for a slow exchange; ``body_timeout_s`` shortened to 0.2 s.

Faults found:

1. ``procs/gateway/rest_fast.py:73-74`` (``_SINGLETONS``) with ``:255-256``: the lane refuses
   only Host and Content-Type sent twice, but aiohttp 3.14 refuses every RFC 9110 singleton
   twice (User-Agent, ETag, Server, Max-Forwards, Content-Location, Content-Range: 400
   "Duplicate 'User-Agent' header found."). The lane serves such a request, against its
   docstring (:22-23: "a malformed request (its 400 names the fault)" stays aiohttp's).
   Fix: take aiohttp's list (``aiohttp.http_parser.SINGLETON_HEADERS``) for the bits, and
   look at every header name of those lengths. Was (fixed: ``_SINGLETONS`` holds them all,
   but the two llhttp refuses itself). Test:
   ``test_a_singleton_header_sent_twice_gets_aiohttps_400``.
2. ``rest_fast.py:265-277`` (``on_headers_complete``): an HTTP/1.1 request without Host is
   served by the lane (401 here; nothing reads Host, so a signed order is placed); aiohttp
   answers 400 "Missing 'Host' header in request." (RFC 9112 3.2: a server must). Fix: hand
   an HTTP/1.1 request whose ``_singletons`` lacks the Host bit to aiohttp. Was (fixed so).
   Test:
   ``test_an_http_1_1_request_without_host_gets_aiohttps_400``.
3. ``rest_fast.py:239-243`` (``on_header`` for a trailer): a chunked body's trailer counts its
   lines but not their length, and the size check of ``data_received`` (:199-208) looks only
   at requests spread over two reads or more, so a trailer line of 9 KB in one read is
   ignored and the request served, where aiohttp answers 400 ("Got more than 8190 bytes")
   to the same bytes: not "ignored as aiohttp ignores it" (:26). Fix: apply the header
   line check (``MAX_LINE_BYTES``) to trailer lines too. Was (fixed so). Test:
   ``test_a_trailer_line_past_8190_bytes_gets_aiohttps_400``.
4. ``rest_fast.py:210-212`` with ``:442-445`` (``_pause``) and ``:468-478`` (``_too_slow``): the
   body timer of a request begun in the last read keeps running while the lane itself has
   stopped reading (``MAX_QUEUED`` requests queued behind a slow answer, or
   ``pause_writing``). A client that pipelined its requests at once gets "request line and
   headers did not arrive within 0.2 s" for one whose bytes wait in the server's kernel
   buffer, and every request behind it goes unanswered (the close resets them). Fix: cancel
   the timer in ``_pause`` and arm it again where reading resumes (``_may_resume``,
   ``_hand_over_when_answered``) when a request is in progress. Was (fixed: ``_pause``
   cancels it, ``_may_resume`` and a read arm it again). Test:
   ``test_a_request_left_unread_while_the_lane_pauses_is_not_answered_408``.
5. ``rest_fast.py:77`` (``FastLane`` has no ``eof_received``) with ``:336-337``: a client
   that half-closes after its order (``shutdown(SHUT_WR)``, as ``nc -N`` or a script that
   writes then reads) makes asyncio close the transport at the FIN (the default
   ``eof_received`` returns None), so the answer the exchange gives a moment later is
   dropped (``transport.is_closing()``): the order is placed and its client never told.
   (A query the lane answers without waiting is written before the FIN is read; aiohttp
   drops even a ``ping`` the same way, its own behaviour.) Fix: ``eof_received`` returns
   True while a request is queued or in hand, and the lane closes once it has answered
   them. Was (fixed so). Test: ``test_an_order_sent_before_a_half_close_is_answered``.

Found sound (plain tests): conflicting framing and malformed heads (a Content-Length twice,
with a sign, as a list or past 2^64, with Transfer-Encoding either way round;
Transfer-Encoding twice; a bad, huge or negative chunk size; bare LF line ends, obs-fold, a
blank before the colon, a NUL in a value; Host or Content-Type twice in odd case) get
aiohttp's 400 and the close; an order query pipelined with a ping, split at every byte into
two reads, is answered once each and in order, or (the ping's head begun behind the query in
an earlier read) the query's answer then the documented 400 "must not be pipelined"; three
lane answers, a hand-over held until a slow first answer is written, then pings and queries
on aiohttp are answered in request order; HTTP/1.0 without keep-alive is answered and closed,
HTTP/1.1 keep-alive serves several requests on one connection, ``Connection: close`` closes
after its answer; HEAD of an order route gets aiohttp's 405 (its Allow names GET); a body past
``max_body_bytes`` gets the middleware's 413, declared (naming its size) or chunked; a
chunked body that trickles gets the 408 naming "chunked request body"; a partial request
behind a slow answer, with reading not paused, is read whole and answered (fault 4's control);
a short trailer is ignored as aiohttp ignores it (fault 3's control). Probed by hand, the same
on both paths: an endless chunk extension or 200 KB of zeros in a chunk size, gzip,
HTTP/0.9 and 2.0 request lines, absolute-form and escaped targets, ``OPTIONS *``.

Leads, not faults: the module docstring (:7) and the refusal's text (:378-379) name only
POST, DELETE and GET ``/api/v1/order`` as the lane's, while ``RestApi.fast_routes`` (rest.py
:165-171) serves POST and DELETE ``/api/v1/batchOrders`` there too (README says so). A
request with ``Connection: close`` followed by any byte in the same read gets only a 400 and
its own answer is lost, on both paths (aiohttp's parser refuses data after a close; the lane
hands the read over as documented). A half-closed connection loses aiohttp's answers too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from procs.gateway.rest import RestApi
from procs.gateway.rest_fast import MAX_QUEUED, FastLane
from procs.gateway.rest_request import RestRequest
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import (
    alive,
    client,
    exchange,
    request,
    rest_exchange,
    run,
    statuses,
)
from tests.unit.gateway.test_rest_fast_lane import BODY, _order_request
from tests.unit.gateway.test_review10_fast_lane import _placed

QUERY = b"GET /api/v1/order HTTP/1.1"
ORDER = b"POST /api/v1/order HTTP/1.1"
CLOSE = b"Connection: close"


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def _read_all(reader: asyncio.StreamReader, timeout_s: float = 3.0) -> bytes:
    """What comes until the close (a reset ends it too), or ``timeout_s``."""
    out = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        async with asyncio.timeout(timeout_s):
            while chunk := await reader.read(65536):
                out += chunk
    return out


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """One answer with a Content-Length: its head and body."""
    async with asyncio.timeout(3):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return head + await reader.readexactly(length)


async def _lane(api: RestApi, writer: asyncio.StreamWriter) -> FastLane:
    """The fast lane serving ``writer``'s connection."""
    me = writer.get_extra_info("sockname")
    async with asyncio.timeout(3):
        while (lane := next((x for x in api.lanes if x.peer == me), None)) is None:
            await asyncio.sleep(0.005)
    return lane


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(3):
        while not condition():
            await asyncio.sleep(0.005)


async def _in_request(lane: FastLane) -> None:
    """Until ``lane`` has read part of a request (a request in progress)."""
    await _until(lambda: lane._in_request)


class _Held:
    """``GET /api/v1/order``'s handler, its first call held until ``release``: a slow
    exchange behind the lane's first answer."""

    def __init__(self, api: RestApi) -> None:
        self.api, self.held, self.release = api, asyncio.Event(), asyncio.Event()
        self.query = api.fast_routes["GET", "/api/v1/order"]
        api.fast_routes["GET", "/api/v1/order"] = self

    async def __call__(self, request: RestRequest) -> web.StreamResponse:
        if not self.held.is_set():
            self.held.set()
            await self.release.wait()
        return await self.query(request)


# -- 1-3. requests aiohttp refuses, served by the lane ------------------------------------------


@pytest.mark.parametrize("name", [b"User-Agent", b"ETag", b"Server", b"Max-Forwards"])
def test_a_singleton_header_sent_twice_gets_aiohttps_400(harness: Harness, name: bytes) -> None:
    """The second in another case: aiohttp's 400 names the header (``fast_lane = false``
    answers exactly this)."""

    async def scenario(api: RestApi, url: str) -> None:
        data = request(QUERY, name + b": 1", name.upper() + b": 1", CLOSE)
        raw = await exchange(api.port, data, timeout_s=2)
        assert statuses(raw) == [400] and b"Duplicate" in raw, raw

    run(harness, scenario)


def test_an_http_1_1_request_without_host_gets_aiohttps_400(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        raw = await exchange(api.port, QUERY + b"\r\nConnection: close\r\n\r\n", timeout_s=2)
        assert statuses(raw) == [400] and b"Host" in raw, raw

    run(harness, scenario)


def test_a_trailer_line_past_8190_bytes_gets_aiohttps_400(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        trailer = b"X-T: " + b"x" * 9_000 + b"\r\n"
        body = b"3\r\na=1\r\n0\r\n" + trailer + b"\r\n"
        data = request(ORDER, b"Transfer-Encoding: chunked", CLOSE, body=body)
        raw = await exchange(api.port, data, timeout_s=2)
        assert statuses(raw) == [400], raw[:200]

    run(harness, scenario)


def test_a_trailer_line_within_8190_bytes_is_ignored_as_aiohttp_ignores_it(
    harness: Harness,
) -> None:
    """Fault 3's control: a short trailer, ignored; the order route answers (401 unsigned)."""

    async def scenario(api: RestApi, url: str) -> None:
        body = b"3\r\na=1\r\n0\r\nX-T: " + b"x" * 100 + b"\r\n\r\n"
        data = request(ORDER, b"Transfer-Encoding: chunked", CLOSE, body=body)
        assert statuses(await exchange(api.port, data, timeout_s=2)) == [401]

    run(harness, scenario)


_MALFORMED = [
    request(ORDER, b"Content-Length: 3", b"content-length: 3", CLOSE, body=b"a=1"),
    request(ORDER, b"Content-Length: 5", b"Transfer-Encoding: chunked", CLOSE, body=b"0\r\n\r\n"),
    request(ORDER, b"Transfer-Encoding: chunked", b"Content-Length: 5", CLOSE, body=b"0\r\n\r\n"),
    request(
        ORDER,
        b"Transfer-Encoding: chunked",
        b"TRANSFER-ENCODING: chunked",
        CLOSE,
        body=b"0\r\n\r\n",
    ),
    request(ORDER, b"Transfer-Encoding: chunked", CLOSE, body=b"zz\r\nabc\r\n0\r\n\r\n"),
    request(ORDER, b"Transfer-Encoding: chunked", CLOSE, body=b"f" * 20 + b"\r\nabc\r\n0\r\n\r\n"),
    request(ORDER, b"Transfer-Encoding: chunked", CLOSE, body=b"-3\r\na=1\r\n0\r\n\r\n"),
    request(ORDER, b"Content-Length: +3", CLOSE, body=b"a=1"),
    request(ORDER, b"Content-Length: 3, 3", CLOSE, body=b"a=1"),
    request(ORDER, b"Content-Length: 99999999999999999999999", CLOSE),
    request(QUERY, b"hOsT: y", CLOSE),
    request(QUERY, b"Content-Type: a/b", b"CONTENT-TYPE: a/b", CLOSE),
    request(QUERY, b"X-A: a\r\n folded", CLOSE),
    request(QUERY, b"X-A : a", CLOSE),
    QUERY + b"\nHost: x\nConnection: close\n\n",
    request(QUERY, b"X-A: a\x00b", CLOSE),
]


def test_conflicting_framing_and_malformed_heads_get_aiohttps_400(harness: Harness) -> None:
    """Each of ``_MALFORMED`` on a fresh connection: one 400 (aiohttp's, naming the fault),
    then the close; the gateway serves on."""

    async def scenario(api: RestApi, url: str) -> None:
        for data in _MALFORMED:
            raw = await exchange(api.port, data, timeout_s=2)
            assert statuses(raw) == [400] and raw.startswith(b"HTTP/1."), (data[:120], raw)
        await alive(url)

    run(harness, scenario)


# -- 4. the body timer while the lane itself does not read ----------------------------------------


async def _pipelined_behind_a_slow_answer(api: RestApi, queued: int) -> list[int]:
    """A query held (a slow exchange); then ``queued`` queries and half of one more in one
    write, seen read; then the rest of it and a last query with ``Connection: close``.
    Past the body timeout the held query is released: the statuses that come."""
    api.body_timeout_s = 0.2  # read by each new connection's lane
    held = _Held(api)
    one = request(QUERY)
    reader, writer = await _connect(api.port)
    try:
        lane = await _lane(api, writer)
        writer.write(one)
        async with asyncio.timeout(3):
            await held.held.wait()
        writer.write(one * queued + one[:10])
        await _in_request(lane)
        writer.write(one[10:] + request(QUERY, CLOSE))
        await asyncio.sleep(0.4)  # twice the body timeout: the bytes sent long before
        held.release.set()
        return statuses(await _read_all(reader))
    finally:
        writer.close()


def test_a_partial_request_behind_a_slow_answer_is_read_whole_and_answered(
    harness: Harness,
) -> None:
    """Fault 4's control: fewer than ``MAX_QUEUED`` queued, reading never pauses; the rest
    of the half request is read at once and every query is answered, in order."""

    async def scenario(api: RestApi, url: str) -> None:
        assert await _pipelined_behind_a_slow_answer(api, 3) == [401] * 6

    run(harness, scenario)


def test_a_request_left_unread_while_the_lane_pauses_is_not_answered_408(
    harness: Harness,
) -> None:
    """Past ``MAX_QUEUED`` queued the lane stops reading; the half request's rest waits in
    the kernel. Today: the 21 queries before it answered, it gets 408 "request line and
    headers did not arrive within 0.2 s", the last query none (a reset)."""

    async def scenario(api: RestApi, url: str) -> None:
        queued = MAX_QUEUED + 4
        assert await _pipelined_behind_a_slow_answer(api, queued) == [401] * (queued + 3)

    run(harness, scenario)


# -- 5. a half-closed connection ------------------------------------------------------------------


def test_an_order_sent_before_a_half_close_is_answered(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            body = BODY.format("halfclosed").encode()
            data = _order_request(alice.headers("POST", "/api/v1/order", "", body), body)
        finally:
            await alice.close()
        reader, writer = await _connect(api.port)
        try:
            writer.write(data)
            await writer.drain()
            writer.get_extra_info("socket").shutdown(socket.SHUT_WR)
            raw = await _read_all(reader)
        finally:
            writer.close()
        assert await _placed(url, "halfclosed")  # it executes either way
        assert statuses(raw) == [200] and b'"halfclosed"' in raw, raw

    run(harness, scenario)


# -- pipelining, splits and the hand-over ---------------------------------------------------------


def test_a_query_and_a_ping_split_at_every_byte_are_answered_once_in_order(
    harness: Harness,
) -> None:
    """An order query (the lane's) then a ping (aiohttp's), in two reads cut at every byte.
    Cut within the query: aiohttp takes both reads, both answered in order. Cut at its end:
    the lane answers it, then hands the ping over. Cut within the ping (its head begun behind
    the query in the earlier read: no cut aiohttp can parse from): the query's answer, then
    the documented 400. Each split waits until the server has read the first part."""

    async def scenario(api: RestApi, url: str) -> None:
        query, ping = request(QUERY), request(b"GET /api/v1/ping HTTP/1.1", CLOSE)
        data = query + ping
        for cut in range(1, len(data)):
            reader, writer = await _connect(api.port)
            try:
                lane = await _lane(api, writer)
                writer.write(data[:cut])
                if cut < len(query):
                    await _in_request(lane)
                    expected, raw = [401, 200], b""
                else:  # the query answered: the first part was read
                    raw = await _answer(reader)
                    expected = [401, 200] if cut == len(query) else [401, 400]
                writer.write(data[cut:])
                raw += await _read_all(reader)
            finally:
                writer.close()
            assert statuses(raw) == expected, (cut, raw)
            if expected[1] == 400:
                assert b"must not be pipelined" in raw, (cut, raw)
            else:
                assert raw.index(b"-2014") < raw.index(b"\r\n\r\n{}"), (cut, raw)

    run(harness, scenario)


def test_the_hand_over_after_lane_answers_keeps_request_order(harness: Harness) -> None:
    """Read 1: three queries, the first held (a slow exchange). Read 2: a ping, two queries
    and a ``time``, on aiohttp once the lane's three answers are out. Read 3, on aiohttp:
    a query and a closing ping. Every answer once, in request order."""

    async def scenario(api: RestApi, url: str) -> None:
        held = _Held(api)
        reader, writer = await _connect(api.port)
        try:
            lane = await _lane(api, writer)
            writer.write(request(QUERY) * 3)
            async with asyncio.timeout(3):
                await held.held.wait()
            writer.write(
                request(b"GET /api/v1/ping HTTP/1.1") + request(QUERY) * 2
                + request(b"GET /api/v1/time HTTP/1.1")
            )  # fmt: skip
            await _until(lambda: lane._handover is not None)
            held.release.set()
            raw = b"".join([await _answer(reader) for _ in range(7)])
            assert not api.lanes  # aiohttp's now
            writer.write(request(QUERY) + request(b"GET /api/v1/ping HTTP/1.1", CLOSE))
            raw += await _read_all(reader)
        finally:
            writer.close()
        assert statuses(raw) == [401] * 3 + [200] + [401] * 2 + [200, 401, 200], raw
        bodies = [part.partition(b"\r\n\r\n")[2][:12] for part in raw.split(b"HTTP/1.1 ")[1:]]
        assert bodies[3] == b"{}" and bodies[6].startswith(b'{"serverTime') and bodies[8] == b"{}"

    run(harness, scenario)


# -- HTTP versions, connection headers, HEAD, limits, slow bodies ---------------------------------


def test_connection_headers_and_http_versions_are_kept(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        # HTTP/1.0 without keep-alive: answered in 1.0, then closed
        raw = await exchange(api.port, b"GET /api/v1/order HTTP/1.0\r\nHost: x\r\n\r\n", 2)
        assert raw.startswith(b"HTTP/1.0 401 ") and statuses(raw) == [401], raw
        # HTTP/1.1 keep-alive: several requests, one at a time, on one connection
        reader, writer = await _connect(api.port)
        try:
            for _ in range(3):
                writer.write(request(QUERY, b"CONNECTION: Keep-Alive"))
                assert statuses(await _answer(reader)) == [401]
            writer.write(request(QUERY, b"connection: CLOSE"))
            raw = await _read_all(reader)  # answered, then closed by the server
        finally:
            writer.close()
        assert statuses(raw) == [401] and b"Connection: close" in raw, raw
        await alive(url)

    run(harness, scenario)


def test_head_of_an_order_route_gets_aiohttps_405_allowing_get(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        raw = await exchange(api.port, request(b"HEAD /api/v1/order HTTP/1.1", CLOSE), 2)
        allow = raw.partition(b"\r\nAllow: ")[2].partition(b"\r\n")[0]
        assert statuses(raw) == [405] and b"GET" in allow.split(b","), raw

    run(harness, scenario)


def test_a_body_past_the_limit_gets_the_middlewares_413(harness: Harness) -> None:
    """Declared (its size named) or chunked ("as read"), from a client with a real key (the
    key is looked up before the body is read)."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            key = [f"{k}: {v}".encode() for k, v in alice.headers("POST", "/api/v1/order",
                                                                  "", b"").items()]  # fmt: skip
        finally:
            await alice.close()
        big = b"a" * 20_000
        declared = request(ORDER, b"Content-Length: 20000", CLOSE, *key, body=big)
        chunked = request(ORDER, b"Transfer-Encoding: chunked", CLOSE, *key,
                          body=b"4e20\r\n" + big + b"\r\n0\r\n\r\n")  # fmt: skip
        for data, says in ((declared, b"of 20000 bytes"), (chunked, b"(as read")):
            raw = await exchange(api.port, data, timeout_s=2)
            assert statuses(raw) == [413] and says in raw, raw[-200:]

    run(harness, scenario)


def test_a_chunked_body_that_trickles_gets_the_408_naming_it(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        api.body_timeout_s = 0.2
        data = request(ORDER, b"Transfer-Encoding: chunked", body=b"3\r\na=")
        raw = await exchange(api.port, data, timeout_s=2)
        assert statuses(raw) == [408] and b"chunked request body did not arrive" in raw, raw

    run(harness, scenario)
