"""Review 38, the HTTP side: what one client (an address, or a customer's valid API key) can
make the gateway spend without a bound, after the FIX side's per-session intake limit.

Measured before the fixes (this 2-core machine, the gateway in the harness, the client in its own
process where it says so; the gateway logs at INFO to ``var/<instance>/run/<process>.log``,
which nothing rotates):

1. Every malformed HTTP request is logged by aiohttp (``aiohttp.server``, ERROR, with a
   traceback) before any limit of ours sees it: the fast lane hands a malformed request to
   aiohttp, whose ``handle_error`` logs it (only a bad method as a connection's first
   request is logged at DEBUG). Its message repeats the offending line and a caret line as
   long: an 8,000-byte header costs 16.5 KB of log, twice what was sent. No key is needed,
   and the address limit never counts these. A client reconnecting in a loop wrote
   20 MB/s of log (8 KB headers, ~1,200 connections/s), 0.5 MB/s with a 10-byte one.
2. A private-stream upgrade that offers WebSocket subprotocols the server does not speak is
   logged by aiohttp (``aiohttp.websocket``, WARNING) with the list the client sent: two
   4,000-character names, 8.1 KB a line, per upgrade (a valid key's rate, 2,000/s).
3. A history query that fails is logged per request (``RestApi.db``: "history query
   failed"), public ``klines`` included: while the database is down or its pool of 4 is
   busy past 5 s, every request writes a line, up to the address limit (5,000/s). The
   market-data proxy's equivalent (``exchangeInfo``) logs once a minute at most.
4. A connection handed to aiohttp (any request but the fast lane's order routes; every
   connection with ``fast_lane = false``) is kept idle for aiohttp's default keep-alive,
   3,630 s: ``AppRunner`` is built without ``keepalive_timeout``, so the fast lane's
   ``KEEPALIVE_S`` (75 s, "aiohttp's default") holds on the fast lane only.
5. A request head that reaches ``MAX_HEAD_BYTES`` (16 KiB) unfinished over two reads is
   handed to aiohttp, and the fast lane's 408 timer is cancelled with it: aiohttp has no
   limit on the time a head takes, and buffers one up to 128 headers of 8,190 bytes.
   200 such connections, never finished, held 397 MB more RSS (~2 MB each), none closed
   (until the keep-alive of 4, an hour). The same on a connection after its hand-over.
6. Nothing limits the REST port's connections, per address or in all: an address holds as
   many as the process has descriptors (the gateway does not raise its soft
   ``RLIMIT_NOFILE``, 1024 under systemd); idle ones cost it one request per 75 s (an
   hour after a hand-over). At the limit the gateway accepts no one and cannot open a
   file: a FIX client connected before sent its Logon, whose session store could not be
   created (``MessageStore``: EMFILE, raised in the password check's callback and logged
   by asyncio), and was left without an answer or a close.
7. The private stream reads every frame a client sends and answers none, without a count:
   1.9 us of the gateway's loop a 7-byte frame, 100,000 frames in 0.17 s, the stream still
   open; the loop that serves every FIX and REST client runs at the client's pace.

Held, checked: the address, key and login limits (a 429 costs the fast lane 16 us, aiohttp
58 us, as a request served: refused requests are not cheaper than a ping, and a connection
is never closed for them); scrypt per login is behind the login limit (2/s, burst 10, per
address); a login rewrites ``apikeys.json`` (fsynced) at most at that rate; history
``limit`` 1..1000, times and ids range-checked; parameters counted and cut; pipelining
(the fast lane queues 16, aiohttp pauses at its queue); bodies (size, 10 s); the replay
memory holds only accepted signatures (the key rate times at most 61 s); a stream's queue
(``stream_queue``) and the streams per key, account and gateway.

Fixed since (review 38): 1-3 (``QuietFilter``: one record a minute on those loggers, cut to
300 characters), 4 (``keepalive_timeout=KEEPALIVE_S``), 6 (``max_connections`` and
``max_connections_per_address``: a 503 naming the limit; a logon whose store cannot be opened
is closed), 7 (past 5,000 frames a second, 1008 naming it), and 5 (a connection handed to aiohttp
mid-head gets the fast lane's 408 unless a request of it reaches the middleware in time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from psycopg_pool import PoolTimeout

from procs.common.quiet_log import QuietFilter
from procs.gateway import rest_fast
from procs.gateway.history import History
from procs.gateway.rest import QUIET_LOGGERS, RestApi
from tests.unit.gateway.harness import Client, Harness, close_all, settled
from tests.unit.gateway.rest_rig import (
    client,
    exchange,
    fix_user,
    request,
    rest_exchange,
    run,
    statuses,
)

#: The gateway's log format (``procs/gateway/main.py``): what a record costs the log file.
FORMAT = logging.Formatter("%(asctime)s %(name)s %(message)s")


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


@pytest.fixture(autouse=True)
def _fresh_quiet_filters() -> Iterator[None]:
    """Each test's own ``QuietFilter``s: their once-a-minute window is process-wide state,
    and a test in another file may have let its one record of the minute through (those
    filters are removed before the test as well as after it)."""
    _drop_quiet_filters()
    yield
    _drop_quiet_filters()


def _drop_quiet_filters() -> None:
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, QuietFilter)]:
            logger.removeFilter(f)


def logged(records: list[logging.LogRecord]) -> int:
    """The bytes ``records`` add to the gateway's log, tracebacks included."""
    return sum(len(FORMAT.format(r)) + 1 for r in records)


# -- 1. a malformed request's log line ------------------------------------------------------


def test_malformed_requests_do_not_each_write_a_log_line(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """20 requests with an invalid 8,000-byte header, each on its own connection (the 400
    closes it), no key: before review 38, 20 ERROR records, ~330 KB. Now the gateway
    answers them the same 400 and logs at most a line or two that echo none of the
    client's kilobytes."""
    caplog.set_level(logging.INFO)  # the gateway's level
    bad = request(b"GET /api/v1/ping HTTP/1.1", b"X-A: " + b"a" * 8_000 + b"\x01")

    async def scenario(api: RestApi, url: str) -> None:
        start = len(caplog.records)
        for _ in range(20):
            assert statuses(await exchange(api.port, bad)) == [400]
        records = caplog.records[start:]
        assert 1 <= len(records) <= 2 and logged(records) <= 2_048, (
            f"{len(records)} records, {logged(records)} bytes of log for 20 bad requests"
        )

    run(harness, scenario)


# -- 2. a subprotocol offer's log line -------------------------------------------------------


def test_a_stream_upgrade_offering_subprotocols_does_not_write_a_log_line(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """10 upgrades with a valid key, each offering two 4,000-character subprotocols: before
    review 38, 10 WARNING records of 8.1 KB. Now the gateway opens the stream without one
    and logs at most a line or two of its own size."""
    caplog.set_level(logging.INFO)

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            start = len(caplog.records)
            for _ in range(10):
                with contextlib.suppress(aiohttp.WSServerHandshakeError):
                    ws = await alice.session.ws_connect(
                        alice.stream_url(), protocols=("p" * 4_000, "q" * 4_000)
                    )
                    assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.TEXT
                    await ws.close()
            records = caplog.records[start:]
            assert 1 <= len(records) <= 2 and logged(records) <= 2_048, (
                f"{len(records)} records, {logged(records)} bytes of log for 10 upgrades"
            )
        finally:
            await alice.close()

    run(harness, scenario)


# -- 3. a failing history query's log line ---------------------------------------------------


class _DownHistory:
    """A history whose database does not answer: what the pool says after its 5 s wait."""

    async def klines(self, *args: Any, **kwargs: Any) -> list[list[Any]]:
        raise PoolTimeout("couldn't get a connection after 5.00 sec")

    async def close(self) -> None:
        pass


def test_a_database_down_is_logged_once_not_per_request(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """50 unsigned ``klines`` requests while the database does not answer: each is a 503
    naming it. Before review 38, 50 WARNING records. Now the gateway logs the outage at most once in
    a while, as ``exchangeInfo`` logs the market data's (once a minute)."""
    caplog.set_level(logging.INFO)

    async def scenario(api: RestApi, url: str) -> None:
        api.history = cast(History, _DownHistory())
        start = len(caplog.records)
        async with aiohttp.ClientSession() as session:
            for _ in range(50):
                query = {"symbol": "BTC-USD", "interval": "1m"}
                async with session.get(f"{url}/api/v1/klines", params=query) as r:
                    assert r.status == 503 and "did not answer" in (await r.json())["msg"]
        records = [r for r in caplog.records[start:] if r.levelno >= logging.WARNING]
        assert len(records) <= 1, f"{len(records)} log records for 50 failed queries"

    run(harness, scenario)


# -- 4. aiohttp's keep-alive ------------------------------------------------------------------


def test_a_connection_aiohttp_serves_is_kept_idle_no_longer_than_the_fast_lanes(
    harness: Harness,
) -> None:
    """A connection that asked for a route aiohttp serves (here ``ping``) is aiohttp's from
    then on: its idle keep-alive is at most ``rest_fast.KEEPALIVE_S``, as the fast lane's."""

    async def scenario(api: RestApi, url: str) -> None:
        assert api.runner is not None and api.runner.server is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        try:
            writer.write(request(b"GET /api/v1/ping HTTP/1.1"))
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            handlers = api.runner.server.connections
            assert handlers, "the connection was not handed to aiohttp"
            held = [handler.keepalive_timeout for handler in handlers]
            assert max(held) <= rest_fast.KEEPALIVE_S, f"aiohttp keeps idle connections {held} s"
        finally:
            writer.close()

    run(harness, scenario)


# -- 5. a slow head past the fast lane ----------------------------------------------------------


async def _stalled_head(port: int, parts: list[bytes], wait_s: float) -> bytes:
    """Send ``parts`` as separate reads, then nothing: what the gateway answers within
    ``wait_s`` (b"" when it neither answers nor closes)."""
    return await exchange(port, parts, wait_s, pause_s=0.05)


_LINE = b"GET /api/v1/order?symbol=BTC-USD&orderId=1 HTTP/1.1\r\nHost: x\r\n"


def test_a_head_that_stalls_on_the_fast_lane_gets_a_408(harness: Harness) -> None:
    """Holds (the control of the next test): a head of 2 KB that stops coming is answered
    408 once the body timeout passes, and the connection closes."""

    async def scenario(api: RestApi, url: str) -> None:
        api.body_timeout_s = 0.5  # read by each new connection's lane
        answer = await _stalled_head(api.port, [_LINE, b"X-A: " + b"a" * 2_000 + b"\r\n"], 3)
        assert statuses(answer) == [408] and b"did not arrive within 0.5 s" in answer

    run(harness, scenario)


def test_a_head_that_stalls_past_16_kib_gets_a_408_too(harness: Harness) -> None:
    """The same head grown past ``MAX_HEAD_BYTES`` (three 8,000-byte headers after the
    line, in a second read) and stopped: before review 38 no answer, and the connection
    stayed; now the gateway answers 408 within the body timeout, whoever parses the head."""

    async def scenario(api: RestApi, url: str) -> None:
        api.body_timeout_s = 0.5
        headers = b"".join(b"X-%d: " % k + b"a" * 8_000 + b"\r\n" for k in range(3))
        assert len(headers) > rest_fast.MAX_HEAD_BYTES
        answer = await _stalled_head(api.port, [_LINE, headers], 3)
        assert statuses(answer) == [408], f"answered {answer[:80]!r} within 3 s"

    run(harness, scenario)


# -- 6. connections without a count ---------------------------------------------------------------

#: The client that holds the REST port's connections (its own process: its descriptors are
#: not the gateway's). Connects until one is not taken within 2 s (the backlog full: the
#: gateway takes no more), says how many it holds, then holds them until it is killed.
_HOLDER = """
import socket, sys
held = []
for _ in range(int(sys.argv[2])):
    try:
        held.append(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2))
    except OSError:
        break
print(len(held), flush=True)
sys.stdin.read()
"""
#: Descriptors the test process keeps free when the harness starts (its start takes ~15,
#: the FIX client and the holder's pipes a few, the REST port the rest: room for a burst of
#: accepts, 100 at a time, past any sane connection limit), and the connections held.
_HEADROOM = 250
_HELD = 800


def test_one_address_holding_rest_connections_leaves_fix_logons_working(
    harness: Harness,
) -> None:
    """The gateway starts with ``_HEADROOM`` descriptors to spare (as a gateway with ~750
    open does under the usual soft limit of 1024), BOB logs on over FIX (what a logon needs
    is loaded), ALICE connects, then one address opens 800 idle REST connections and holds
    them. Before review 38 the gateway took them until its descriptors ran out, and ALICE's Logon,
    which must create her session's store, got no answer. Now the gateway keeps
    the descriptors its own work needs (a connection limit per address and in all, within
    what ``open_files.connections_room`` finds at start, the rest refused): the Logon is
    answered."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    outcome: list[str] = []

    async def main() -> None:
        in_use = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(in_use + _HEADROOM, hard), hard))
        try:
            await harness.start()
            gw = harness.gateway
            assert gw is not None and gw.api is not None
            await fix_user(harness, "BOB", "bob-pw")  # a gateway that has served a logon
            fix = Client("ALICE")
            await fix.connect(gw.port)
            await settled(lambda: len(gw.connections) == 2)  # accepted: its Logon is read
            holder = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _HOLDER, str(gw.api.port), str(_HELD),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                assert holder.stdout is not None
                held = int(await asyncio.wait_for(holder.stdout.readline(), 30))
                await asyncio.sleep(0.5)  # the gateway takes (or refuses) what is queued
                try:
                    await fix.logon("alice-pw")
                    outcome.append("answered")
                except AssertionError as exc:
                    outcome.append(f"{exc} (one address holding {held} connections)")
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                holder.kill()
                await holder.wait()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            await close_all()
            await harness.stop()

    asyncio.run(main())
    assert outcome == ["answered"], outcome


# -- 7. the private stream's frames ---------------------------------------------------------------


def _upgrade(url: str) -> bytes:
    """A WebSocket upgrade request for the private stream ``url`` (as ``stream_url`` signs)."""
    target = url.partition("://")[2].partition("/")[2]
    return request(
        b"GET /" + target.encode() + b" HTTP/1.1",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        b"Sec-WebSocket-Version: 13",
    )


#: Frames a client sends in a burst, and one of them: a masked one-byte text frame.
FRAMES = 100_000
_FRAME = bytes((0x81, 0x81)) + b"\0\0\0\0" + b"x"
_PING = bytes((0x89, 0x80)) + b"\0\0\0\0"


def _server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of the unmasked server frames in ``data`` (short ones)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 2 <= len(data):
        size = data[pos + 1] & 0x7F
        head = 2 if size < 126 else 4 if size == 126 else 10
        if size >= 126:
            size = int.from_bytes(data[pos + 2 : pos + head], "big")
        if pos + head + size > len(data):
            break
        out.append((data[pos] & 0x0F, data[pos + head : pos + head + size]))
        pos += head + size
    return out


def test_a_stream_that_floods_frames_is_closed_naming_the_limit(harness: Harness) -> None:
    """100,000 one-byte text frames in a burst on a private stream, then a ping. Before
    review 38 the gateway read them all and ponged: the stream stayed open. Now the gateway
    counts what a stream sends (as FIX's ``max_inbound_per_s`` counts a session's every
    message) and
    closes it (1008, naming the limit) before it has read them all. (Review 31 pins 2,000
    frames sent at once as allowed: the limit sits above that.)"""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        try:
            writer.write(_upgrade(alice.stream_url()))
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
            chunk = _FRAME * 10_000
            for _ in range(FRAMES // 10_000):
                writer.write(chunk)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
            writer.write(_PING)
            data, frames = b"", list[tuple[int, bytes]]()
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(5):
                    while not any(op in (0x8, 0xA) for op, _ in frames):  # a close or the pong
                        chunk = await reader.read(65_536)
                        if not chunk:
                            break
                        data += chunk
                        frames = _server_frames(data)
            ends = [(op, payload[:2]) for op, payload in frames if op in (0x8, 0xA)]
            assert ends and ends[0] == (0x8, (1008).to_bytes(2, "big")), (
                f"after {FRAMES} frames the stream answered {ends[:1]} (0xA: the pong)"
            )
        finally:
            writer.close()
            await alice.close()

    run(harness, scenario)
