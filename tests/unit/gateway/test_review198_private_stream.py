"""Review 198: a hostile review of the private stream (``/api/v1/stream``) and its credentials.

Reviewed: ``procs/gateway/private_stream.py`` (``_admit``, ``_serve``, ``_snapshot``,
``sweep``), ``stream_subscriber.py``, ``stream_slots.py``, ``signing.py`` (``Verifier``),
``rest_keys.py``, ``procs/common/apikeys.py`` and ``procs/admin/users.py`` (``set-password
--revoke-keys``, ``remove-user``), against README's "The REST API and the private stream" and
the module docstrings. What reviews 5, 9, 16, 33, 36, 44, 106, 151, 164 and 195 pin already
(slow consumers, ping floods, heartbeats, held events behind a slow snapshot, FIX orders in
flight at a subscription, limits across gateways, revokes at another gateway) was not
repeated.

Rig: ``rest_rig.py``'s exchange (real HTTP, WebSocket and FIX over TCP in front of real
rings, an in-process router and matcher stepped in the test's loop; ``Harness.pause`` holds
the pipeline so that commands are in flight), ALICE (601, dollars) and BOB (602, bitcoin),
with ``test_admin_keys``'s fixture so that ``ringex admin`` runs against it; maker and taker
fees 10 and 20 bps. Raw WebSocket frames (fragments, binary, oversized) are written on a
socket upgraded by hand (``raw_stream``), the stream's URL signed as ``RestClient`` signs it;
refused upgrades are read as closes (``closeOnRefusal=true``), whose reason carries the code.

Faults found:

1. ``procs/gateway/private_stream.py:195-198`` (``_serve``): the client's frames are counted
   (``MAX_CLIENT_FRAMES_PER_S``, 5,000/s, "pings included", the docstring says; past it the
   stream closes 1008 naming the limit) only as aiohttp hands over whole messages, so the
   frames of a message never finished are not counted at all: a text frame without FIN,
   then empty continuation frames (6 bytes each) without end. aiohttp's reader parses each
   (``_partial`` never grows, so ``max_msg_size`` never trips) at about 47 ns of the loop
   every FIX and REST client shares (measured: a million took 47 ms here), and the stream
   stays open: a client at 100 MB/s takes most of the gateway's loop, the very cost the
   limit exists to bound (review 38), with no limit to meet. Fix: the stream's client has
   nothing to say, so refuse a fragmented message (close 1008 at its first non-FIN frame;
   aiohttp does not expose frames, so count bytes read per second on the transport, e.g.
   a protocol wrapper, or a ``max_msg_size`` and a read budget per second), or count frames
   below the message level. Was (fixed: ``procs/gateway/stream_meter.py`` reads the frame
   headers as the bytes pass to aiohttp's parser and charges the continuation frames to the
   stream's frame budget; past it the stream closes 1008 naming the limit). Test:
   ``test_empty_continuation_frames_count_against_the_client_frame_limit``.

Found sound (plain tests):

- a signed URL is refused, as a close naming the code, when replayed within its window
  (-1025), sent after it (-1021), stamped 5 s ahead (-1021, 60 s window or not), signed for
  another user's key id with one's own secret (-1022), of a revoked key (-2014) or of a key
  with the trade scope only (-2015); a read-only key streams
  (``test_stream_urls_replayed_late_early_forged_revoked_or_trade_only_are_refused``);
- across a gateway restart a stream is closed 1001 "gateway shutting down"; a URL signed
  before the new process started is refused (-1021, naming its start); a new stream begins
  at seq 1 with a snapshot that holds the REST order from the order log, its cancel then
  reported once (``test_across_a_gateway_restart_a_stream_closes_1001_and_starts_again_at_1``);
- a password changed without ``--revoke-keys`` leaves the stream open (and reporting); with
  it the stream closes 1008 within a second; ``remove-user`` closes the removed user's
  (``test_a_new_password_closes_streams_only_with_revoke_keys_and_removal_closes_them``);
- a key's sixth stream is refused 1013 naming the limit; a stream closed by its client
  gives its slot back before the next upgrade comes
  (``test_a_keys_sixth_stream_is_refused_and_a_closed_ones_slot_is_free_at_once``);
- a binary frame, an unknown text command and a stray pong are ignored (the reports go on,
  seq gapless); invalid UTF-8 closes 1007, a frame over 4 KiB 1009, each giving its slot
  back (``test_odd_frames_are_ignored_and_invalid_or_huge_ones_close_with_their_codes``);
- cancel on disconnect of a FIX session and a ``DELETE openOrders`` are reported once per
  order, seq gapless, the folded stream equal to ``openOrders`` and the router's balances
  (``test_cancel_on_disconnect_and_a_mass_cancel_reach_the_stream_once_per_order``), and so
  when the mass cancel and a fill are in flight at the subscription, the pipeline released
  0-100 ms after it (``test_a_mass_cancel_and_a_fill_in_flight_at_a_subscription_count_once``);
- an operator's withdrawal is one ``balance`` event, a refused one (more than free) or a
  repeated key none; a fill's balances are the router's to the micro-dollar, the maker's and
  taker's ``commission`` their 10 and 20 bps; an asset gone to zero is sent as 0/0 once,
  then left out of the next snapshot as of ``GET account``; every message is
  ``{"event", "seq", "data"}`` with decimals as strings and ms times as integers
  (``test_withdrawals_fills_and_fees_reach_the_stream_as_the_router_has_them``).

Leads, not faults: a ``balance`` event comes before the ``executionReport`` that moved it
(a cancel's release, a fill's), so a client folding events sees, for a moment, money
released from an order still shown open (the README promises no order between them). A
client that pings below the limit and reads nothing blocks its handler in ``ws.pong`` on a
full socket; with no events for the account nothing cuts it, but it holds only its own slot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import pytest

from procs.common.records import Transfer
from procs.gateway import signing
from procs.gateway.private_stream import PATH as STREAM_PATH
from procs.gateway.private_stream import TOO_MANY_FRAMES
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.stream_meter import FrameScan
from tests.unit.gateway.harness import FUNDER, USD, Harness, settled
from tests.unit.gateway.rest_rig import ALICE, BOB, client, fix_user, run, stream_messages
from tests.unit.gateway.rest_rig import until_closed as closed_within
from tests.unit.gateway.test_admin_keys import admin, harness
from tests.unit.gateway.test_review195_channels import (
    ACCOUNT,
    OPEN,
    ORDER,
    SELL,
    fix_bid,
    fold,
    rest_bid,
    router_balances,
    subscribed,
)

__all__ = ["harness"]  # the fixture: rest_rig's exchange, ``ringex admin`` pointed at it

TEXT, BINARY, CONTINUATION, CLOSE, PONG = 1, 2, 0, 8, 10
Frames = list[tuple[int, bytes]]


async def counted(
    ws: aiohttp.ClientWebSocketResponse, count: int, timeout_s: float = 5.0
) -> list[dict[str, Any]]:
    """The stream's messages until ``count`` came (within ``timeout_s``: a loaded host is
    slow), then any more within 0.3 s (one too many shows)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        out += await stream_messages(ws, min(0.1, max(0.0, deadline - time.monotonic())))
    return out + await stream_messages(ws, 0.3)


# -- the rig ---------------------------------------------------------------------------------


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A client's frame (masked, as RFC 6455 has clients send them)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def raw_stream(c: RestClient, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``c``'s private stream upgraded by hand on a plain socket: frames are written raw."""
    parts = urlsplit(c.stream_url())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    nonce = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def server_frames(reader: asyncio.StreamReader, timeout_s: float) -> Frames:
    """The server's frames (opcode, payload) until a close or a pong (included), the
    connection's end or ``timeout_s``."""
    out: Frames = []
    with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        async with asyncio.timeout(timeout_s):
            while True:
                b0, b1 = await reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await reader.readexactly(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await reader.readexactly(8))
                out.append((b0 & 0x0F, await reader.readexactly(n)))
                if out[-1][0] in (CLOSE, PONG):
                    break
    return out


def close_code(frames: Frames) -> int | None:
    """The code of the close among ``frames``, None if none came."""
    for opcode, payload in frames:
        if opcode == CLOSE:
            return int(struct.unpack("!H", payload[:2])[0])
    return None


async def hang_up(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def signed_query(key: str, secret: str, ts: int, window: int = 5_000) -> str:
    """A stream URL's query signed with ``secret`` for key id ``key`` at ``ts``."""
    sig = signing.sign(secret, ts, window, "GET", STREAM_PATH, "", b"")
    return urlencode({"apiKey": key, "timestamp": ts, "recvWindow": window, "signature": sig})


async def upgrade(session: aiohttp.ClientSession, url: str, query: str) -> tuple[int, str]:
    """(101, the first event) of a stream taken, else (close code, reason) of one refused,
    asked as a close (``closeOnRefusal``): the reason is ``"<code> <msg>"``."""
    ws = await session.ws_connect(f"{url}{STREAM_PATH}?{query}&closeOnRefusal=true")
    msg = await ws.receive(timeout=3)
    await ws.close()
    if msg.type is aiohttp.WSMsgType.TEXT:
        return 101, str(msg.json()["event"])
    return int(msg.data), str(msg.extra)


async def close_reason(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> tuple[int, str]:
    """(code, reason) of the server's close within ``timeout_s`` (events skipped)."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        msg = await ws.receive(timeout=left)
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return int(msg.data), str(msg.extra)
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return ws.close_code or 0, ""
    return 0, ""


def brief(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(seq, event, orderId or asset, executionType or free, status or locked) of each."""
    out: list[tuple[Any, ...]] = []
    for m in messages:
        d = m["data"]
        if m["event"] == "executionReport":
            out.append((m["seq"], "report", d["orderId"], d["executionType"], d["status"]))
        elif m["event"] == "balance":
            out.append((m["seq"], "balance", d["asset"], d["free"], d["locked"]))
        else:
            out.append((m.get("seq"), m["event"]))
    return out


# -- the fault -------------------------------------------------------------------------------


def test_empty_continuation_frames_count_against_the_client_frame_limit(
    harness: Harness,
) -> None:
    """BOB's client opens a text message (no FIN) and sends 20,000 empty continuation
    frames at once, four times the 5,000 frames a second the stream takes, then a ping:
    the stream closes (1008, naming the limit). Was (fixed: ``stream_meter`` counts the
    continuation frames as the bytes pass, against the same budget): it stayed open and the
    ping was answered, none of those frames counted."""

    async def scenario(api: RestApi, url: str) -> None:
        bob = await client(url, "BOB", "bob-pw")
        reader, writer = await raw_stream(bob, api.port)
        try:
            assert [op for op, _ in await server_frames(reader, 1.0)] == [TEXT]  # snapshot
            writer.write(frame(TEXT, b"{", fin=False))
            writer.write(frame(CONTINUATION, fin=False) * 20_000)
            writer.write(frame(9, b"still there?"))
            await writer.drain()
            answer = await server_frames(reader, 2.0)
            assert close_code(answer) == 1008, f"the stream is still open: {answer}"
            assert any(TOO_MANY_FRAMES in data for _, data in answer), answer
        finally:
            await hang_up(writer)
            await bob.close()

    run(harness, scenario)


# -- found sound -----------------------------------------------------------------------------


def test_stream_urls_replayed_late_early_forged_revoked_or_trade_only_are_refused(
    harness: Harness,
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        reader_ = await client(url, "ALICE", "alice-pw", "read")
        bob = await client(url, "BOB", "bob-pw")
        trader = await client(url, "BOB", "bob-pw", "trade")
        gone = await client(url, "BOB", "bob-pw")
        try:
            async with aiohttp.ClientSession() as s:
                now = time.time_ns() // 1_000_000
                key, secret = reader_.api_key, reader_.secret
                taken = signed_query(key, secret, now)
                assert await upgrade(s, url, taken) == (101, "snapshot")  # read scope: enough
                refusals = {
                    "replayed": taken,
                    "late": signed_query(key, secret, now - 6_000),
                    "ahead": signed_query(key, secret, now + 5_000),
                    "ahead, 60 s window": signed_query(key, secret, now + 5_000, 60_000),
                    "forged": signed_query(bob.api_key, secret, now + 1),
                    "trade only": signed_query(trader.api_key, trader.secret, now + 2),
                }
                revoked = signed_query(gone.api_key, gone.secret, now + 3)
                await gone.call("DELETE", "/api/v1/apiKey")
                refusals["revoked"] = revoked
                got = {what: await upgrade(s, url, q) for what, q in refusals.items()}
            codes = {what: (close, reason.split(" ")[0]) for what, (close, reason) in got.items()}
            assert codes == {
                "replayed": (1008, "-1025"),
                "late": (1008, "-1021"),
                "ahead": (1008, "-1021"),
                "ahead, 60 s window": (1008, "-1021"),
                "forged": (1008, "-1022"),
                "trade only": (1008, "-2015"),
                "revoked": (1008, "-2014"),
            }, got
        finally:
            for c in (reader_, bob, trader, gone):
                await c.close()

    run(harness, scenario)


def test_across_a_gateway_restart_a_stream_closes_1001_and_starts_again_at_1(
    harness: Harness,
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        again = None
        try:
            oid = await rest_bid(alice, "90.00")
            ws = await subscribed(alice)
            # the longest window (60 s): a slow restart must not outlast it (a flake)
            now_ms = time.time_ns() // 1_000_000
            signed_before = signed_query(alice.api_key, alice.secret, now_ms, 60_000)
            await harness.stop()
            assert await close_reason(ws, 3.0) == (1001, "gateway shutting down")
            await harness.start()
            assert harness.gateway is not None and harness.gateway.api is not None
            url2 = f"http://127.0.0.1:{harness.gateway.api.port}"
            async with aiohttp.ClientSession() as s:
                code, reason = await upgrade(s, url2, signed_before)
            assert code == 1008 and reason.startswith("-1021 ") and "started" in reason
            again = RestClient(url2)
            again.api_key, again.secret = alice.api_key, alice.secret
            ws2 = await again.stream()
            # the snapshot before the cancel (else gone from it, its report dropped: a flake)
            messages = [await ws2.receive_json(timeout=5.0)]
            await again.call("DELETE", ORDER, symbol="BTC-USD", orderId=oid)
            messages += await counted(ws2, 2)
            await ws2.close()
            assert messages[0]["seq"] == 1, messages[:1]
            assert [o["orderId"] for o in messages[0]["data"]["openOrders"]] == [oid]
            assert [m["seq"] for m in messages] == [1, 2, 3], messages
            assert sorted(b[1:] for b in brief(messages[1:])) == [
                ("balance", "USD", "1000000.000000", "0.000000"),
                ("report", oid, "CANCELED", "CANCELED"),
            ], messages
        finally:
            await alice.close()
            if again is not None:
                await again.close()

    run(harness, scenario)


def test_a_new_password_closes_streams_only_with_revoke_keys_and_removal_closes_them(
    harness: Harness,
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            ws, bws = await subscribed(alice), await subscribed(bob)
            assert admin("set-password", "--comp-id", "ALICE", "--password", "alice-pw2") == 0
            assert await closed_within(ws, 2.2) is None  # two sweeps: its keys stay
            oid = await rest_bid(alice, "90.00")
            got = brief(await counted(ws, 2))  # its hold and its NEW, reported
            assert [g[0] for g in got] == [2, 3] and (oid, "NEW") in {g[2:4] for g in got}, got
            assert (
                admin("set-password", "--comp-id", "ALICE", "--password", "pw-3", "--revoke-keys")
                == 0
            )
            assert await close_reason(ws, 1.5) == (1008, "API key revoked")
            assert admin("remove-user", "--comp-id", "BOB") == 0
            assert (await close_reason(bws, 2.5))[0] == 1008
            await settled(lambda: api.streams.count == 0, 1.0)
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_a_keys_sixth_stream_is_refused_and_a_closed_ones_slot_is_free_at_once(
    harness: Harness,
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        api.streams.max_streams = 20
        alice = await client(url, "ALICE", "alice-pw")
        held = []
        try:
            held = [await subscribed(alice) for _ in range(5)]
            async with aiohttp.ClientSession() as s:
                sixth = await upgrade(s, url, urlsplit(alice.stream_url()).query)
                assert sixth == (1013, "-1003 this API key holds 5 private streams, the limit is 5")
                await held.pop().close()
                assert await upgrade(s, url, urlsplit(alice.stream_url()).query) == (
                    101,
                    "snapshot",
                )
        finally:
            for ws in held:
                await ws.close()
            await alice.close()

    run(harness, scenario)


def test_odd_frames_are_ignored_and_invalid_or_huge_ones_close_with_their_codes(
    harness: Harness,
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            reader, writer = await raw_stream(alice, api.port)
            try:
                assert [op for op, _ in await server_frames(reader, 1.0)] == [TEXT]
                writer.write(frame(BINARY, b"\x00\x01binary"))
                writer.write(frame(TEXT, b'{"method":"SUBSCRIBE","params":["BTC-USD@trade"]}'))
                writer.write(frame(PONG, b"unasked"))
                await writer.drain()
                await rest_bid(alice, "90.00")
                events = await server_frames(reader, 0.3)
                assert [op for op, _ in events] == [TEXT, TEXT], events  # its hold, its NEW
                for huge, code in ((b"\xff\xfe", 1007), (b"x" * 5_000, 1009)):
                    writer.write(frame(TEXT, huge))
                    await writer.drain()
                    assert close_code(await server_frames(reader, 1.0)) == code
                    await settled(lambda: api.streams.count == 0, 1.0)
                    await hang_up(writer)
                    reader, writer = await raw_stream(alice, api.port)
                    assert [op for op, _ in await server_frames(reader, 1.0)] == [TEXT]
            finally:
                await hang_up(writer)
        finally:
            await alice.close()

    run(harness, scenario)


def test_cancel_on_disconnect_and_a_mass_cancel_reach_the_stream_once_per_order(
    harness: Harness,
) -> None:
    harness.add_user("ALICE", "alice-pw", ALICE, cancel_on_disconnect=True)

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            ws = await alice.stream()
            rest = [await rest_bid(alice, f"9{i}.00") for i in range(3)]
            fix = await fix_user(harness, "ALICE", "alice-pw")
            fixed = [await fix_bid(fix, "f1", "80.00"), await fix_bid(fix, "f2", "81.00")]
            await fix.aclose()
            await settled(lambda: harness.router.sequencer.accounts.open_orders(ALICE) == 3)
            ended = await alice.call("DELETE", OPEN, symbol="BTC-USD")
            assert sorted((o["orderId"], o["status"]) for o in ended) == [
                (oid, "CANCELED") for oid in rest
            ]
            messages = await stream_messages(ws, 0.5)
            await ws.close()
            ends = [(m[2], m[3]) for m in brief(messages) if m[1] == "report" and m[3] != "NEW"]
            assert sorted(ends) == sorted((oid, "CANCELED") for oid in rest + fixed), messages
            orders, balances = fold(messages)  # each order once, seq gapless
            assert orders == {} and balances == router_balances(harness, ALICE)
            assert balances == {"USD": ("1000000.000000", "0.000000")}
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_mass_cancel_and_a_fill_in_flight_at_a_subscription_count_once(
    harness: Harness,
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            for delay in (0.0, 0.002, 0.02, 0.1):
                for i in range(3):
                    await rest_bid(alice, f"10{i}.00")
                harness.pause()
                sell = asyncio.ensure_future(
                    bob.call("POST", ORDER, **SELL, price="101.00", quantity="0.15",
                             timeInForce="IOC")
                )  # fmt: skip
                await asyncio.sleep(0.01)
                mass = asyncio.ensure_future(alice.call("DELETE", OPEN, symbol="BTC-USD"))
                await asyncio.sleep(0.02)  # both read by the gateway, published
                subscribing = asyncio.ensure_future(alice.stream())
                await asyncio.sleep(delay)
                harness.resume()
                ws = await subscribing
                orders, balances = fold(await stream_messages(ws, 0.4))
                await ws.close()
                assert (await sell)["status"] == "FILLED"
                assert sorted(o["status"] for o in await mass) == ["CANCELED", "CANCELED", "FILLED"]
                assert orders == {} == {o["orderId"]: o for o in await alice.call("GET", OPEN)}
                assert balances == router_balances(harness, ALICE), delay
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_withdrawals_fills_and_fees_reach_the_stream_as_the_router_has_them(
    harness: Harness,
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            ws, bws = await subscribed(alice), await subscribed(bob)
            out = Transfer(0, 0, FUNDER, 0, 9801, ALICE, USD, -3 * 10**6, 9801)
            harness.funder.publish_batch([out])
            assert brief(await counted(ws, 1)) == [
                (2, "balance", "USD", "999997.000000", "0.000000")
            ]
            too_much = Transfer(0, 0, FUNDER, 0, 9802, ALICE, USD, -(10**15), 9802)
            harness.funder.publish_batch([too_much, out])  # refused, and a key used already
            assert await stream_messages(ws, 0.3) == []
            oid = await rest_bid(alice, "100.00")
            await bob.call("POST", ORDER, **SELL, price="100.00", quantity="10.00")
            mine = await stream_messages(ws, 0.3)
            theirs = await stream_messages(bws, 0.3)
            # the maker pays 10 bps of 10.00, the taker 20 bps; BOB's 9.90 BTC rest
            trade = [m["data"] for m in mine if m["data"].get("executionType") == "TRADE"]
            assert [(t["orderId"], t["lastQty"], t["lastPrice"]) for t in trade] == [
                (oid, "0.10", "100.00")
            ]
            assert (trade[0]["commission"], trade[0]["commissionAsset"]) == ("0.010000", "USD")
            taker = [m["data"] for m in theirs if m["data"].get("executionType") == "TRADE"]
            assert [(t["commission"], t["isMaker"]) for t in taker] == [("0.020000", False)]
            for who, got in ((ALICE, mine), (BOB, theirs)):
                last = {m["data"]["asset"]: m["data"] for m in got if m["event"] == "balance"}
                shown = {a: (d["free"], d["locked"]) for a, d in last.items()}
                want = router_balances(harness, who)
                assert {a: fl for a, fl in shown.items() if a in want} == want, (who, got)
            assert router_balances(harness, ALICE) == {
                "USD": ("999986.990000", "0.000000"),
                "BTC": ("0.100000", "0.000000"),
            }
            for m in mine + theirs:  # the documented shapes: decimals as strings, ms as ints
                assert set(m) == {"event", "seq", "data"} and isinstance(m["seq"], int)
                for name, value in m["data"].items():
                    if name in ("time", "updateTime", "eventTime", "orderId", "tradeId"):
                        assert isinstance(value, int) and value >= 0, (name, m)
                    elif name in ("free", "locked", "price", "origQty", "executedQty"):
                        assert isinstance(value, str) and "." in value, (name, m)
            await alice.call(  # ALICE takes BOB's 9.90 BTC: his BTC goes to zero
                "POST", ORDER, symbol="BTC-USD", side="BUY", type="LIMIT", price="100.00",
                quantity="9.90", timeInForce="IOC",
            )  # fmt: skip
            gone = [m for m in await stream_messages(bws, 0.3) if m["event"] == "balance"]
            assert gone[-1]["data"] == {"asset": "BTC", "free": "0.000000", "locked": "0.000000"}
            for w in (ws, bws):
                await w.close()
            await settled(lambda: api.streams.count == 0, 1.0)  # the rig's max_streams: 2
            fresh = await subscribed_snapshot(bob)
            listed = (await bob.call("GET", ACCOUNT))["balances"]
            assert [b["asset"] for b in fresh["balances"]] == [b["asset"] for b in listed]
            assert [b["asset"] for b in listed] == ["USD"]
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


async def subscribed_snapshot(c: RestClient) -> dict[str, Any]:
    """A new stream's snapshot's data (the stream closed after it)."""
    ws = await c.stream()
    first = await ws.receive_json(timeout=3.0)
    await ws.close()
    assert first["event"] == "snapshot", first
    return first["data"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 13, 64])
def test_the_meter_counts_continuations_across_any_cut_of_the_reads(cut: int) -> None:
    """``FrameScan``: frame headers of every length form (7-bit, 16-bit, 64-bit), masked,
    with payloads of those sizes, read in pieces of ``cut`` bytes: only the continuations
    count, whatever read a header or a payload is cut by."""
    stream = (
        frame(TEXT, b"{", fin=False)
        + frame(CONTINUATION, b"x" * 300, fin=False)  # a 16-bit length
        + frame(9, b"ping")
        + frame(CONTINUATION, b"y" * 70_000, fin=False)  # a 64-bit length
        + frame(CONTINUATION, fin=False) * 5
        + frame(CONTINUATION, b"}")
    )
    scan = FrameScan()
    counted = sum(scan.continuations(stream[i : i + cut]) for i in range(0, len(stream), cut))
    assert counted == 8
