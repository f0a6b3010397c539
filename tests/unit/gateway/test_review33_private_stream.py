"""Faults a thirty-third hostile review found in the private stream's ends: how a stream
is closed when its client takes nothing (a slow consumer cut off, a key revoked, the gateway
stopping) and what it holds while its snapshot is made (``rest_rig.py``: real HTTP and
WebSocket in front of real rings, an in-process router and matcher). Each test failed until
its fault was fixed in ``procs/gateway/private_stream.py``.

- A client whose socket takes nothing (stopped reading, a dead link that has not timed out)
  left ``_send`` waiting on the transport's drain: a cut (slow consumer) or a revoke set
  ``cut`` and woke a sender that never looked at it, so the stream, its slot among
  ``max_streams`` and among its key's ``max_streams_per_key``, stayed until aiohttp's
  heartbeat gave up (45 s); a close begun on such a socket (the sender's own, or the
  shutdown's) cancels that heartbeat and waits for the drain forever, so ``RestApi.stop``
  never returned. A stream being closed now gets ``close_grace_s`` to take its close frame,
  then its connection is dropped.
- The events that came while a stream's snapshot was being made were all held, however
  many: a busy account and a slow snapshot (the router's balances, the database) held them
  without bound, though more than ``queue_limit`` of them cut the stream once pushed.
- The slow consumer's close reason said "slow consumer" without the numbers.

The backlog that fills the sockets is put in with ``streams.deliver``, the call the gateway's
poll loop makes with the exchange's events (big messages fill the buffers quickly), as
``test_review5_rest_bugs.py`` does; the aiohttp client stops reading its socket once its
queue holds 64 KiB that nobody receives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness, settled
from tests.unit.gateway.rest_rig import BOB, client, rest_exchange, run

GRACE_S = 0.5  # the tests' close grace: what a client that takes nothing is given
PAD = "x" * 65_536


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def _flood(api: RestApi, account: int, messages: int = 400) -> None:
    """``messages`` big events for ``account``, one a loop turn (~26 MB for 400: more than
    the loopback socket buffers hold), as the poll loop would deliver them."""
    for _ in range(messages):
        api.streams.deliver([(account, "executionReport", {"pad": PAD})])
        await asyncio.sleep(0)
    await asyncio.sleep(0.2)


def _abort(ws: aiohttp.ClientWebSocketResponse) -> None:
    """The client goes away at once (ends the test's connection whatever the server did)."""
    if ws._response is not None and ws._response.connection is not None:
        transport = ws._response.connection.transport
        if transport is not None:
            transport.abort()


async def _close_frame(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> tuple[int, str]:
    """Read everything up to the server's close frame: (code, reason); (0, "") if none came."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return int(msg.data), str(msg.extra or "")
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            break
    return 0, ""


def test_a_slow_consumer_whose_socket_takes_nothing_is_dropped(harness: Harness) -> None:
    """BOB's client reads his snapshot and then nothing; the events pile up behind his full
    socket past the queue limit (16): he is cut off as a slow consumer.
    Expected: his stream ends, its slot given back, within the close grace (a client that
    takes nothing cannot take its close frame either). Actual: the sender waits on the
    drain and never sees the cut; the slot stays held until the heartbeat gives up, 45 s
    later (and a reconnect of his key finds its slots taken by dead streams)."""

    async def scenario(api: RestApi, url: str) -> None:
        api.streams.close_grace_s = GRACE_S
        bob = await client(url, "BOB", "bob-pw")
        ws = await bob.stream()
        try:
            await ws.receive(timeout=5)  # the snapshot; then BOB reads nothing more
            await _flood(api, BOB)
            await settled(lambda: api.streams.count == 0, GRACE_S + 2)
            assert api.streams.count == 0, f"{api.streams.count} stream(s) still held"
            assert BOB not in api.streams.by_account and BOB not in api.core.streaming
        finally:
            _abort(ws)
            await bob.close()

    run(harness, scenario)


def test_a_revoked_key_ends_a_stream_whose_socket_takes_nothing(harness: Harness) -> None:
    """BOB's stream has a deep backlog (no slow-consumer cut) behind a socket that takes
    nothing; he revokes its key (``DELETE /api/v1/apiKey``).
    Expected (README: revoking a key closes its private streams): the stream ends within the
    close grace. Actual: the sweep sets ``cut`` and wakes a sender stuck in the drain; the
    stream of the revoked key stays open and counted."""

    async def scenario(api: RestApi, url: str) -> None:
        api.streams.close_grace_s = GRACE_S
        api.streams.queue_limit = 10**6  # a deep backlog, not a slow-consumer cut
        bob = await client(url, "BOB", "bob-pw")
        ws = await bob.stream()
        try:
            await ws.receive(timeout=5)
            await _flood(api, BOB)
            revoked = await bob.call("DELETE", "/api/v1/apiKey")
            assert revoked["revoked"] is True, revoked
            await settled(lambda: api.streams.count == 0, GRACE_S + 2)
            assert api.streams.count == 0, "the revoked key's stream is still open"
        finally:
            _abort(ws)
            await bob.close()

    run(harness, scenario)


def test_the_gateway_stops_with_a_stream_whose_socket_takes_nothing(harness: Harness) -> None:
    """The gateway stops (``RestApi.stop`` closes the private streams) while BOB's client
    takes nothing. Expected: the streams are closed within the close grace. Actual:
    ``PrivateStreams.close`` awaits ``ws.close``, which cancels the heartbeat and then waits
    for the transport's drain: forever, and the gateway never stops."""

    async def scenario(api: RestApi, url: str) -> None:
        api.streams.close_grace_s = GRACE_S
        api.streams.queue_limit = 10**6
        bob = await client(url, "BOB", "bob-pw")
        ws = await bob.stream()
        try:
            await ws.receive(timeout=5)
            await _flood(api, BOB)
            started = time.monotonic()
            try:
                await asyncio.wait_for(api.streams.close(), GRACE_S + 2)
            except TimeoutError:
                pytest.fail(f"closing the streams still waits after {GRACE_S + 2} s")
            assert time.monotonic() - started < GRACE_S + 2
            await settled(lambda: api.streams.count == 0, 1.0)
            assert api.streams.count == 0
        finally:
            _abort(ws)
            await bob.close()

    run(harness, scenario)


def test_the_events_held_behind_a_slow_snapshot_are_bounded(harness: Harness) -> None:
    """BOB's snapshot waits for the router's balances (its pipeline paused), while his
    account's events keep coming: twenty times the queue limit of them.
    Expected: no more than the queue limit is held for him (past it, the stream is cut as a
    slow consumer, as it would be once they were pushed), and he hears 1008. Actual: every
    event is held until the snapshot is made (``Subscriber.held`` has no limit)."""

    async def scenario(api: RestApi, url: str) -> None:
        bob = await client(url, "BOB", "bob-pw")
        harness.pause()
        paused = True
        try:
            ws = await bob.stream()  # upgraded: the snapshot waits for the router
            limit = api.streams.queue_limit
            for n in range(20 * limit):
                api.streams.deliver([(BOB, "balance", {"asset": "BTC", "n": n})])
            (sub,) = api.streams.by_account[BOB]
            assert len(sub.held) <= limit + 1, f"{len(sub.held)} events held, limit {limit}"
            harness.resume()
            paused = False
            code, reason = await _close_frame(ws, 5)
            assert code == 1008 and "slow consumer" in reason, (code, reason)
            await settled(lambda: api.streams.count == 0)
            assert api.streams.count == 0
        finally:
            if paused:
                harness.resume()
            await bob.close()

    run(harness, scenario)


def test_a_slow_consumer_that_reads_again_hears_why_with_the_numbers(harness: Harness) -> None:
    """BOB's client stops reading, is cut off as a slow consumer, and reads again within the
    grace. Expected: after what his socket held, the 1008 frame, its reason naming the
    queue limit (16), as errors here name their values. Actual: "slow consumer" alone."""

    async def scenario(api: RestApi, url: str) -> None:
        api.streams.close_grace_s = 3.0
        bob = await client(url, "BOB", "bob-pw")
        ws = await bob.stream()
        try:
            await ws.receive(timeout=5)
            await _flood(api, BOB)
            code, reason = await _close_frame(ws, 5)
            assert code == 1008 and "slow consumer" in reason and "16" in reason, (code, reason)
            await settled(lambda: api.streams.count == 0)
            assert api.streams.count == 0
            again = await bob.stream()  # it reconnects and starts over from a snapshot
            first = await again.receive_json(timeout=5)
            assert (first["event"], first["seq"]) == ("snapshot", 1), first
            await again.close()
        finally:
            _abort(ws)
            await bob.close()

    run(harness, scenario)


def test_an_account_holds_no_more_streams_than_its_limit_across_its_keys(
    harness: Harness,
) -> None:
    """Found by the same review, fixed after it: only ``max_streams_per_key`` bounded a user,
    who may hold 20 keys (``max_keys_per_user``), so 100 streams: ``max_streams_per_account``
    counts them over all the account's keys, and its 429 names the account's count."""

    async def scenario(api: RestApi, url: str) -> None:
        api.streams.max_per_account, api.streams.max_streams = 2, 10  # the rig's is 2
        first, second = await client(url, "BOB", "bob-pw"), await client(url, "BOB", "bob-pw")
        try:
            assert first.api_key != second.api_key
            streams = [await first.stream(), await second.stream()]
            for ws in streams:
                await ws.receive(timeout=5)  # the snapshot
            async with second.session.get(second.stream_url()) as r:
                status, body = r.status, await r.json()
            for ws in streams:
                await ws.close()
            assert status == 429, status
            assert body["msg"] == (
                "this account (all its keys) holds 2 private streams, the limit is 2"
            ), body
        finally:
            await first.close()
            await second.close()

    run(harness, scenario)
