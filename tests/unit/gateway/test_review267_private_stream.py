"""Review 267: a hostile review of the private stream (``/api/v1/stream``) as a trading
client meets it with a real ``websockets`` client (permessage-deflate negotiated, as a
browser does): its refusals, its snapshot against REST and the router under a flood, across
two gateways and a gateway restart, and the frames a hostile client sends.

Reviewed: ``procs/gateway/private_stream.py`` (``_admit``, ``_serve``, ``_snapshot``,
``sweep``), ``stream_subscriber.py`` (``begin``, ``push``, ``close``), ``stream_slots.py``,
``signing.py`` (``Verifier.check``), ``rest.py`` (``after_batch``) and ``server.py``
(``pump``), against README's "The REST API and the private stream" and the module
docstrings. What reviews 9, 16, 33, 44, 106, 195, 198, 202, 228 and 251 pin already (slow
consumers, held events behind a slow snapshot, revokes, removals, new passwords, fees,
ping floods, oversized and invalid frames) was not repeated.

Rig: ``rest_rig.py``'s exchange (real HTTP, WebSocket and FIX over TCP in front of real
rings, an in-process router and matcher stepped in the test's loop), ALICE (601, dollars),
BOB (602, bitcoin); review 36's ``Pair`` for two gateways; review 198's raw frames.

Faults found (each fixed; its test says what it was):

1. ``procs/gateway/private_stream.py:233`` (``_admit``: ``api.verifier.remember(seen)``
   before ``require_user``, the scope, ``max_streams``, the per-key and per-account limits
   and ``slots.take``): an upgrade refused for a limit (429 ``-1003`` with ``Retry-After:
   1``, or 503) spends its signature all the same, so the same URL sent again once a slot is
   free is refused ``-1025 request replayed: this signature was accepted already``: a lie
   (it was refused), and a retry the ``Retry-After`` invited can never succeed. README: "A
   signature is accepted once"; "the memory keeps only the requests the key's rate limit
   took". Fix: in ``_admit`` call ``remember(seen)`` last, after ``slots.take`` (nothing is
   awaited between ``check`` and it, so it cannot raise there; were it to, give the slot
   back). Test: ``test_a_url_refused_for_a_limit_is_taken_once_a_slot_is_free``.
2. ``procs/gateway/private_stream.py:225-231`` with ``signing.py:227-258``
   (``Verifier.check`` names the headers in its messages): the stream's credentials travel
   in the query (``signature``, ``timestamp``, ``recvWindow``; a browser cannot set
   headers on a WebSocket), but a missing or malformed one is refused naming a header the
   stream does not read: ``-2014 header X-RINGEX-SIGNATURE must be 64 lower-case hex
   characters, got none``, ``-2014 header X-RINGEX-TIMESTAMP ...``, ``-1131
   X-RINGEX-RECV-WINDOW 'abc' ...``. A client told so adds the header and is refused the
   same. Fix: give ``Verifier.check`` the names its messages use (a ``names`` argument,
   the headers by default) and have ``_admit`` pass ``("signature", "timestamp",
   "recvWindow")``. Test: ``test_a_missing_stream_credential_is_named_as_the_query_names_it``.

Found sound (plain tests):

- five streams of ALICE's key subscribed 10 ms apart while a flood of ALICE's REST batches
  (5 bids each), FIX bids, BOB's crossing IOC sells and ALICE's mass cancels runs: each
  starts with its snapshot at seq 1, ``seq`` gapless, no order both in the snapshot and
  reported NEW, no fill doubled or of an order never shown, and folded equals
  ``openOrders`` and ``GET account``, the router's
  (``test_streams_subscribed_in_a_flood_fold_to_open_orders_and_the_router``);
- ALICE's streams at two gateways (REST orders at gw1, FIX at gw2, BOB's sells at gw1) carry
  the same account view, each folded equal to that gateway's ``openOrders`` and the
  router's balances, each fill with its own commission; BOB's stream sees none of ALICE's
  orders (``test_streams_at_two_gateways_fold_alike_and_keep_users_apart``);
- across a gateway restart, with ALICE's REST bid filled and her FIX bid partly filled
  (through another gateway) while it was down, a stream opened at once has a snapshot
  equal to ``openOrders`` (the fills in ``executedQty``, the filled bid gone) and to the
  router's balances
  (``test_after_a_restart_that_missed_fills_the_snapshot_is_the_routers``);
- an order answered 504 (the matcher held) is not in the snapshot (``openOrders`` shows it
  ``PENDING_NEW``, orderId 0); its NEW follows, once, with the next seq
  (``test_an_order_awaiting_its_answer_is_not_in_the_snapshot_and_its_new_follows``);
- a reserved opcode, a 200-byte ping, RSV1 unnegotiated, a fragmented ping, a 1-byte close
  and a close with code 999 each close the stream 1002 and give its slot back
  (``test_protocol_violations_close_1002_and_give_the_slot_back``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import msgspec
import pytest
import websockets

from config.schema import RingexConfig
from procs.common.records import NewOrder
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import ApiCallError, RestClient
from tests.unit.gateway import test_review36_gateways as two
from tests.unit.gateway.harness import FUNDER, Harness, settled
from tests.unit.gateway.rest_rig import ALICE, BOB, LIMIT, client, fix_user, rest_exchange, run
from tests.unit.gateway.test_gateway import order
from tests.unit.gateway.test_review195_channels import (
    ACCOUNT,
    OPEN,
    ORDER,
    SELL,
    fix_bid,
    fold,
    rest_bid,
    router_balances,
    shown_balances,
)
from tests.unit.gateway.test_review198_private_stream import (
    close_code,
    frame,
    hang_up,
    raw_stream,
    server_frames,
    upgrade,
)

pair = two.pair  # the fixture: gw1 and gw2, ALICE and BOB funded in both assets

Messages = list[dict[str, Any]]


def _roomy(cfg: RingexConfig) -> RingexConfig:
    """Room for a flood's backlog and several streams; a 504 after 0.5 s."""
    gw = cfg.gateways[0]
    assert gw.rest is not None
    rest = msgspec.structs.replace(gw.rest, max_streams=8, stream_queue=10_000, order_timeout_s=0.5)
    return msgspec.structs.replace(cfg, gateways=[msgspec.structs.replace(gw, rest=rest)])


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, reshape=_roomy)


async def ws_open(api: RestClient) -> websockets.ClientConnection:
    """``api``'s private stream through the ``websockets`` library (deflate negotiated)."""
    return await websockets.connect(api.stream_url().replace("http://", "ws://", 1))


async def ws_read(ws: websockets.ClientConnection, quiet_s: float = 0.5) -> Messages:
    """The stream's events until it stays silent for ``quiet_s`` (at most 8 s; heartbeats
    left out)."""
    out: Messages = []
    deadline = time.monotonic() + 8.0
    while time.monotonic() < deadline:
        try:
            raw = await asyncio.wait_for(ws.recv(), quiet_s)
        except (TimeoutError, websockets.ConnectionClosed):
            break
        if (m := json.loads(raw))["event"] != "heartbeat":
            out.append(m)
    return out


async def collect(ws: websockets.ClientConnection, out: Messages) -> None:
    """Every event of ``ws`` into ``out`` until it closes."""
    try:
        async for raw in ws:
            if (m := json.loads(raw))["event"] != "heartbeat":
                out.append(m)
    except websockets.ConnectionClosed:
        pass


def folds_to(got: Messages, listed: dict[int, str], account: dict[str, Any]) -> bool:
    """Whether ``got`` folds to ``listed`` and ``account`` (False while events are missing;
    ``fold``'s own checks are asserted by the caller's last fold)."""
    try:
        return fold(got) == (listed, account)
    except AssertionError:
        return False


def executed(rows: list[dict[str, Any]]) -> dict[int, str]:
    return {o["orderId"]: o["executedQty"] for o in rows}


def bob_sells_elsewhere(price: int, qty: int) -> NewOrder:
    """BOB's IOC sell through gateway 0 (the admin's ring: not the REST gateway)."""
    return NewOrder(
        *(0, time.time_ns(), FUNDER, 1, 9_001, BOB, 1, 0), side=Side.SELL,
        ord_type=OrdType.LIMIT, tif=TimeInForce.IOC, flags=0, stp=StpMode.NONE, price=price,
        qty=qty, stop_price=0, display_qty=0,
    )  # fmt: skip


# -- fault 1: a URL refused for a limit is spent -----------------------------------------------


def test_a_url_refused_for_a_limit_is_taken_once_a_slot_is_free(harness: Harness) -> None:
    """Scenario: ALICE's key holds its 5 streams; a sixth URL is refused 1013 (429 -1003,
    Retry-After 1); one stream closes; the same URL, well within its window, is sent again.
    Expected: the stream is taken (the first try was refused, not accepted). Was (fixed): -1025
    "request replayed: this signature was accepted already"."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        held: list[websockets.ClientConnection] = []
        try:
            held = [await ws_open(alice) for _ in range(5)]
            sixth = urlsplit(alice.stream_url()).query
            async with aiohttp.ClientSession() as s:
                assert await upgrade(s, url, sixth) == (
                    1013, "-1003 this API key holds 5 private streams, the limit is 5"
                )  # fmt: skip
                await held.pop().close()
                await settled(lambda: api.streams.count == 4, 5.0)
                assert await upgrade(s, url, sixth) == (101, "snapshot")
        finally:
            for ws in held:
                await ws.close()
            await alice.close()

    run(harness, scenario)


# -- fault 2: refusals name headers the stream does not read -----------------------------------


def test_a_missing_stream_credential_is_named_as_the_query_names_it(harness: Harness) -> None:
    """Scenario: ALICE's stream URL without ``signature``, without ``timestamp``, and with
    ``recvWindow=abc``. Expected: each refusal names the query parameter at fault, as the
    stream takes its credentials (README: ``?apiKey=K&timestamp=T&recvWindow=W&
    signature=S``). Was (fixed): "header X-RINGEX-SIGNATURE must be ...", "header
    X-RINGEX-TIMESTAMP must be ...", "X-RINGEX-RECV-WINDOW 'abc' must be ...": headers the
    stream never reads."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            signed = dict(parse_qsl(urlsplit(alice.stream_url()).query))
            cases = {
                "signature": {k: v for k, v in signed.items() if k != "signature"},
                "timestamp": {k: v for k, v in signed.items() if k != "timestamp"},
                "recvWindow": {**signed, "recvWindow": "abc"},
            }
            async with aiohttp.ClientSession() as s:
                got = {name: await upgrade(s, url, urlencode(q)) for name, q in cases.items()}
            assert all(code == 1008 for code, _ in got.values()), got
            assert not [r for _, r in got.values() if "X-RINGEX" in r], got
            assert all(name in got[name][1] for name in cases), got
        finally:
            await alice.close()

    run(harness, scenario)


# -- sound -------------------------------------------------------------------------------------


def test_streams_subscribed_in_a_flood_fold_to_open_orders_and_the_router(
    harness: Harness,
) -> None:
    """Scenario: while ALICE sends 40 rounds of a REST batch of 5 bids and 5 FIX bids, BOB
    an IOC sell through them each round and ALICE a mass cancel every fourth, five streams
    of hers are opened 10 ms apart. Expected: each folds (snapshot at seq 1, seq gapless,
    nothing doubled or unknown) to ``openOrders`` and ``GET account``, the router's. Now:
    so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        streams: list[websockets.ClientConnection] = []
        reads: list[Messages] = []
        readers: list[asyncio.Future[None]] = []

        async def flood() -> None:
            for r in range(40):
                batch = [{**LIMIT, "price": f"{90 + k}.00", "quantity": "0.10"} for k in range(5)]
                sends: list[Any] = [alice.batch_orders(batch)]
                for k in range(5):
                    bid = order(f"q{r}-{k}", "1", "0.10", f"{90 + k}.50", "2", (59, "1"))
                    await fix.send("D", *bid)
                ioc = {**SELL, "price": "92.00", "quantity": "0.20", "timeInForce": "IOC"}
                sends.append(bob.call("POST", ORDER, **ioc))
                await asyncio.gather(*sends)
                if r % 4 == 3:
                    await alice.call("DELETE", OPEN, symbol="BTC-USD")

        try:
            await rest_bid(alice, "80.00")  # the account in use: balances known
            flowing = asyncio.ensure_future(flood())
            while not flowing.done() and len(streams) < 5:
                streams.append(await ws_open(alice))
                reads.append([])
                readers.append(asyncio.ensure_future(collect(streams[-1], reads[-1])))
                await asyncio.sleep(0.01)
            await flowing
            deadline = time.monotonic() + 10.0  # the FIX orders' last events, read by all
            while True:
                listed = executed(await alice.call("GET", OPEN))
                account = shown_balances((await alice.call("GET", ACCOUNT))["balances"])
                if all(folds_to(got, listed, account) for got in reads):
                    break
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert account == router_balances(harness, ALICE)
            for ws in streams:
                await ws.close()
            await asyncio.gather(*readers)
            assert len(reads) >= 2, len(reads)
            for k, got in enumerate(reads):
                orders, balances = fold(got)
                assert (orders, balances) == (listed, account), (k, orders, listed)
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_streams_at_two_gateways_fold_alike_and_keep_users_apart(pair: two.Pair) -> None:
    """Scenario: ALICE streams at gw1 and gw2, BOB at gw2; ALICE bids over REST at gw1 and
    FIX at gw2, BOB sells IOC through them at gw1, six rounds. Expected: ALICE's two streams
    fold to each gateway's ``openOrders`` and the router's balances, each fill with its own
    commission; BOB's stream shows none of ALICE's orders. Now: so."""

    async def scenario(p: two.Pair) -> None:
        a1 = await client(p.url(p.gw1), "ALICE", "alice-pw")
        a2 = await client(p.url(p.gw2), "ALICE", "alice-pw")
        b1 = await client(p.url(p.gw1), "BOB", "bob-pw")
        b2 = await client(p.url(p.gw2), "BOB", "bob-pw")
        assert p.gw2 is not None
        fix = await two.fix_at(p.gw2, "ALICE", "alice-pw")
        try:
            streams = [await ws_open(a1), await ws_open(a2), await ws_open(b2)]
            reads: list[Messages] = [[], [], []]
            for k in range(6):
                await rest_bid(a1, f"9{k}.00", "0.20")
                await fix.send("D", *order(f"x{k}", "1", "0.20", f"9{k}.50", "2", (59, "1")))
                await b1.call(
                    "POST", ORDER, **SELL, price="90.00", quantity="0.25", timeInForce="IOC"
                )  # fmt: skip
            for ws, sofar in zip(streams, reads, strict=True):
                sofar.extend(await ws_read(ws, 1.0))
            balances = router_balances(p.h, ALICE)
            for at, got in ((a1, reads[0]), (a2, reads[1])):
                assert fold(got) == (executed(await at.call("GET", OPEN)), balances)
            fills = [m["data"] for m in reads[0] if m["event"] == "executionReport"]
            fills = [d for d in fills if d["executionType"] == "TRADE"]
            assert len(fills) >= 6 and all(d["commissionAsset"] for d in fills), fills
            alices = {m["data"]["orderId"] for m in reads[0] if m["event"] == "executionReport"}
            bobs = {m["data"]["orderId"] for m in reads[2] if m["event"] == "executionReport"}
            assert bobs and not bobs & alices, (bobs, alices)
            for ws in streams:
                await ws.close()
        finally:
            for c in (a1, a2, b1, b2):
                await c.close()

    two.run(pair, scenario)


def test_after_a_restart_that_missed_fills_the_snapshot_is_the_routers(
    harness: Harness,
) -> None:
    """Scenario: ALICE rests a FIX bid and two REST bids; the gateway stops; BOB's sell
    through another gateway fills the REST bid and part of the FIX bid; the gateway starts
    and ALICE streams at once. Expected: the snapshot's open orders are ``openOrders`` (the
    fills in their ``executedQty``), its balances the router's. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        again = None
        try:
            await fix_bid(fix, "f1", "95.00", "0.30")
            filled = await rest_bid(alice, "96.00", "0.40")
            await rest_bid(alice, "90.00", "0.10")
            await harness.stop()
            harness.funder.publish_batch([bob_sells_elsewhere(9_500, 50)])
            harness.step_pipeline()
            harness.funder_replies.read(64)
            await harness.start()
            assert harness.gateway is not None and harness.gateway.api is not None
            again = RestClient(f"http://127.0.0.1:{harness.gateway.api.port}")
            again.api_key, again.secret = alice.api_key, alice.secret
            ws = await ws_open(again)
            (snapshot,) = await ws_read(ws)
            await ws.close()
            listed = await again.call("GET", OPEN, symbol="BTC-USD")
            assert filled not in executed(listed) and len(listed) == 2, listed
            assert snapshot["data"]["openOrders"] == listed
            assert shown_balances(snapshot["data"]["balances"]) == router_balances(harness, ALICE)
        finally:
            await alice.close()
            if again is not None:
                await again.close()

    run(harness, scenario)


def test_an_order_awaiting_its_answer_is_not_in_the_snapshot_and_its_new_follows(
    harness: Harness,
) -> None:
    """Scenario: the matcher held (the router stepped alone), ALICE's bid is answered 504;
    she streams; the matcher resumes. Expected: ``openOrders`` shows it PENDING_NEW, the
    snapshot not; its NEW follows at seq 2, once; folded equals ``openOrders``. Now: so."""

    async def router_only() -> None:
        while True:
            busy = harness.router.step(timeout_s=0)
            harness.router.settle()
            await asyncio.sleep(0 if busy else 0.0005)

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        stepping = None
        try:
            await rest_bid(alice, "80.00")
            harness.pause()
            stepping = asyncio.ensure_future(router_only())
            with pytest.raises(ApiCallError) as told:
                await rest_bid(alice, "95.00", "0.30")
            assert told.value.status == 504
            ws = await ws_open(alice)
            got = await ws_read(ws)
            pending = await alice.call("GET", OPEN)
            assert [o["status"] for o in pending] == ["NEW", "PENDING_NEW"], pending
            assert [m["event"] for m in got] == ["snapshot"], got
            assert len(got[0]["data"]["openOrders"]) == 1, got
            stepping.cancel()
            harness.resume()
            got += await ws_read(ws)
            await ws.close()
            news = [m for m in got if m["event"] == "executionReport"]
            assert [(m["seq"], m["data"]["executionType"]) for m in news] == [(2, "NEW")], got
            assert fold(got)[0] == executed(await alice.call("GET", OPEN))
        finally:
            if stepping is not None and not stepping.done():
                stepping.cancel()
                harness.resume()
            await alice.close()

    run(harness, scenario)


def test_protocol_violations_close_1002_and_give_the_slot_back(harness: Harness) -> None:
    """Scenario: on a fresh stream each, a frame of reserved opcode 3, a 200-byte ping, a
    text frame with RSV1 (no extension negotiated), a ping without FIN, a 1-byte close
    payload and a close with code 999. Expected: each closes 1002 (RFC 6455) and the stream
    is counted no more. Now: so."""

    violations = {
        "opcode 3": frame(3, b"x"),
        "ping of 200 bytes": frame(9, b"p" * 200),
        "rsv1": bytes([0xC1]) + frame(1, b"hi")[1:],
        "fragmented ping": frame(9, b"p", fin=False),
        "close of 1 byte": frame(8, b"\x03"),
        "close code 999": frame(8, b"\x03\xe7"),
    }

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            codes = {}
            for name, raw in violations.items():
                reader, writer = await raw_stream(alice, api.port)
                await server_frames(reader, 1.0)  # the snapshot
                writer.write(raw)
                await writer.drain()
                codes[name] = close_code(await server_frames(reader, 3.0))
                await hang_up(writer)
                await settled(lambda: api.streams.count == 0, 5.0)
                assert api.streams.count == 0, name
            assert set(codes.values()) == {1002}, codes
        finally:
            await alice.close()

    run(harness, scenario)
