"""Review 44: a hostile review of the private stream (``private_stream.py``,
``stream_subscriber.py``) against the README's contract: the snapshot, what follows it, seq.

Rigs: ``rest_rig.py`` (real HTTP and WebSocket in front of real rings, the router and
matcher in process) and ``unfiled_rig.py`` (the same with a private PostgreSQL and the
writer run by hand). "Elsewhere" is gateway 0's ring (the funder's), as another gateway's
client would send it. BTC-USD: prices 2 decimals, sizes 2. ALICE (601) holds dollars, BOB
(602) bitcoin.

An order of ALICE's that the gateway does not follow (placed elsewhere while she used the
API, then her interest lapsed: ``RestOrders._forget_account`` drops it, and it is not among
the recent events once taken) is in the database only: the snapshot shows it from its row,
and ``RowOrders`` follows it from its next event on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from procs.common.records import AdminCommand, Transfer
from procs.common.types import AdminAction, OrdType, TimeInForce
from procs.gateway.rest import RestApi
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import FUNDER, USD, Harness
from tests.unit.gateway.rest_rig import ALICE, BOB, client, rest_exchange, run, stream_messages
from tests.unit.gateway.test_review29_rest_views import TICKS, _elsewhere, _publish, _snapshot
from tests.unit.gateway.test_review33_private_stream import _abort, _flood

ORDER = "/api/v1/order"
SELL: dict[str, Any] = {"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT"}
CAROL = 603  # trades through gateway 0 only


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


db_harness = unfiled_rig.harness


def _lapse(api: RestApi) -> None:
    """What the gateway's timer does ``interest_s`` (10 min) after an account's last use of
    the API: forget it (orders placed elsewhere included)."""
    api.core.tick(time.monotonic() + api.core.interest_s + 1)
    api.publish()


async def _read(
    ws: aiohttp.ClientWebSocketResponse, quiet_s: float
) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
    """The stream's messages until none came for ``quiet_s``, and its close (code, reason)
    if it closed."""
    out: list[dict[str, Any]] = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet_s)
        except TimeoutError:
            return out, None
        if msg.type is not aiohttp.WSMsgType.TEXT:
            closed = msg.type is aiohttp.WSMsgType.CLOSE
            return out, (int(msg.data), str(msg.extra)) if closed else (0, str(msg.type))
        out.append(json.loads(msg.data))


def _reports(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["data"] for m in messages if m["event"] == "executionReport"]


async def _unfollowed_bid(api: RestApi, h: Harness, alice: Any, **kw: Any) -> int:
    """ALICE's order placed elsewhere while she used the API, her interest lapsed, the
    writer filed it: the gateway knows it from the database only. Returns its orderId."""
    await alice.call("GET", "/api/v1/openOrders")  # of interest
    await _publish(_elsewhere(1, **kw), h=h)
    (followed,) = api.core.open_orders(ALICE, 1)
    _lapse(api)
    assert api.core.open_orders(ALICE, 1) == []
    await unfiled_rig.file_all(h)
    return followed.order_id


# -- faults (each test failed before its fix, in the commit that adds it) -------------------------


def test_a_fill_while_the_snapshot_reads_the_database_is_lost(db_harness: Harness) -> None:
    """ALICE's bid of 0.10 at 29000.00, known from the database only (see the module). Her
    stream's snapshot reads the database, which is slow (a lock held); meanwhile BOB sells
    her 0.05. Expected (the docstring: events that arrive while the snapshot is made wait
    behind it): a client applying snapshot and events holds the order filled 0.05. Actual:
    the snapshot shows it NEW with nothing filled (the row from before the fill) and no
    report follows; BOB's next 0.02 is reported as executedQty 0.02, not 0.07. The fill's
    ``_fill`` found neither a followed order nor a remembered row (``remember`` comes only
    after the read) and dropped it."""
    h = db_harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            oid = await _unfollowed_bid(api, h, alice)
            lock = await psycopg.AsyncConnection.connect(h.cfg.database.dsn)
            try:
                await lock.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
                ws = await alice.stream()
                await asyncio.sleep(0.3)  # the balances came: the read waits on the lock
                sold = await bob.call(
                    "POST", ORDER, **SELL, price="29000.00", quantity="0.05", timeInForce="IOC"
                )
                assert sold["status"] == "FILLED", sold
                await asyncio.sleep(0.2)
            finally:
                await lock.rollback()
                await lock.close()
            shown = (await _snapshot(ws))["openOrders"]
            await bob.call(
                "POST", ORDER, **SELL, price="29000.00", quantity="0.02", timeInForce="IOC"
            )
            events = _reports(await stream_messages(ws, 0.8))
            await ws.close()
            held = {o["orderId"]: o["executedQty"] for o in shown}
            for e in events:
                held[e["orderId"]] = e["executedQty"]
            assert held == {oid: "0.07"}, (shown, events)

    run(h, scenario)


def test_a_database_only_stop_that_triggers_is_reported_working(db_harness: Harness) -> None:
    """ALICE's stop-limit buy of 0.30 (stop and limit 30000.00), known from the database
    only, is in her snapshot as a pending stop (isWorking false). CAROL's buy from BOB at
    30000.00 triggers it and it takes 0.15 of BOB's ask, resting for the rest.
    Expected: a TRIGGERED report, then a TRADE that says the order works (it is on the
    book). Before the fix: no TRIGGERED (``RestOrders._triggered`` looks in ``live`` only, never
    at the rows as ``_fill``/``_replaced``/``_done`` do), and the TRADE's order, taken from
    the row (``from_row``: not triggered, nothing filled), says isWorking false."""
    h = db_harness
    h.fund(CAROL)

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            stop = {"ord_type": OrdType.STOP_LIMIT, "price": TICKS, "qty": 30, "stop": TICKS}
            oid = await _unfollowed_bid(api, h, alice, **stop)
            ws = await alice.stream()
            (shown,) = (await _snapshot(ws))["openOrders"]
            assert (shown["orderId"], shown["isWorking"]) == (oid, False), shown
            await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.20")
            hit = _elsewhere(2, CAROL, tif=TimeInForce.IOC, price=TICKS, qty=5)
            await _publish(hit, h=h)
            events = _reports(await stream_messages(ws, 0.8))
            await ws.close()
            got = [(e["executionType"], e["status"], e["isWorking"]) for e in events]
            assert got == [
                ("TRIGGERED", "NEW", True),
                ("TRADE", "PARTIALLY_FILLED", True),
            ], events

    run(h, scenario)


def test_as_many_events_as_the_queue_limit_behind_a_snapshot_are_sent(harness: Harness) -> None:
    """BOB's snapshot waits for the router (its pipeline paused) while 16 events (the rig's
    ``stream_queue``) come for him. The docstring: "more than ``queue_limit`` of them cut
    the stream". Expected: the snapshot, then the 16 events. Before the fix: 1008 "slow consumer:
    17 messages not sent": ``_begin`` queues the snapshot and then every held event before
    the sender runs, so the snapshot takes one of the limit's places."""

    async def scenario(api: RestApi, url: str) -> None:
        bob = await client(url, "BOB", "bob-pw")
        harness.pause()
        try:
            ws = await bob.stream()
            limit = api.streams.queue_limit
            for n in range(limit):
                api.streams.deliver([(BOB, "executionReport", {"orderId": -1 - n})])
        finally:
            harness.resume()
        try:
            messages, close = await _read(ws, 1.0)
            await ws.close()
            seqs = [(m["event"], m["seq"]) for m in messages]
            want = [("snapshot", 1)] + [("executionReport", 2 + n) for n in range(limit)]
            assert (seqs, close) == (want, None), (seqs, close)
        finally:
            await bob.close()

    run(harness, scenario)


def test_a_hung_database_holds_the_snapshot_back(db_harness: Harness) -> None:
    """The database hangs (its ``orders`` table locked: no error, no answer) while ALICE
    subscribes. The snapshot's read is ``best_effort`` ("a database that does not answer
    leaves the live view alone instead of refusing", ``open_order_views``), and ``DELETE
    openOrders`` reads it "for at most 2 s". Expected: a snapshot (balances, the live open
    orders) within a few seconds. Before the fix: nothing at all until the database answers
    (``History._rows`` has a pool timeout, no statement timeout, and ``_snapshot`` awaits
    it without one); meanwhile the account's events pile up behind it, and past
    ``queue_limit`` the stream is cut as a "slow consumer" that was never sent anything."""
    h = db_harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            lock = await psycopg.AsyncConnection.connect(h.cfg.database.dsn)
            try:
                await lock.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
                ws = await alice.stream()
                messages, close = await _read(ws, 3.0)
            finally:
                await lock.rollback()
                await lock.close()
            await ws.close()
            assert [m["event"] for m in messages] == ["snapshot"], (messages, close)

    run(h, scenario)


def test_a_stream_opened_while_the_gateway_stops_is_closed(harness: Harness) -> None:
    """The gateway stops (``GatewayServer.shutdown`` -> ``RestApi.stop``) while BOB's stream
    takes nothing: ``PrivateStreams.close`` closes the streams it holds and waits (up to the
    close grace) for them, with the REST port still open. ALICE subscribes meanwhile.
    Expected: her upgrade refused, or her stream closed 1001 "gateway shutting down" as
    every other, and the stop done once BOB's is dropped. Before the fix: ``_admit`` takes her
    stream (nothing says the streams are closing), ``close`` had listed its streams before
    she came, so hers gets its snapshot and stays open; the stop then waits in aiohttp's
    cleanup for her handler (its ``shutdown_timeout``, 60 s) until she leaves."""

    async def scenario(api: RestApi, url: str) -> None:
        api.streams.close_grace_s = 1.0
        api.streams.queue_limit = 10**6
        bob = await client(url, "BOB", "bob-pw")
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await alice.call("GET", "/api/v1/account")  # her balances known: no router wait
            stuck = await bob.stream()
            await stuck.receive(timeout=5)  # the snapshot; then BOB reads nothing more
            await _flood(api, BOB)
            stopping = asyncio.ensure_future(harness.stop())
            await asyncio.sleep(0.3)  # closing BOB's, waiting for him
            try:
                late = await alice.stream()
            except aiohttp.WSServerHandshakeError as refused:  # the fix: 503, no stream
                assert refused.status == 503, refused
                await asyncio.sleep(2.5)  # BOB's is dropped after 1 s
                done = stopping.done()
                _abort(stuck)
                await stopping
                assert done, "the gateway's stop still waits"
                return
            except aiohttp.ClientConnectorError:  # BOB's went at once: the port already shut
                _abort(stuck)
                await asyncio.wait_for(stopping, 5)  # and the stop does not wait on anyone
                return
            messages, close = await _read(late, 2.5)  # BOB's is dropped after 1 s
            done = stopping.done()
            _abort(late)  # whatever happened: the stop can end
            _abort(stuck)
            await stopping
            events = [m["event"] for m in messages]
            assert close is not None and close[0] == 1001, (events, close)
            assert done, "the gateway's stop still waits on the late stream"
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


# -- checked -----------------------------------------------------------------------------------


def test_checked_deposits_day_expiry_and_an_evicted_key_reach_the_stream(
    harness: Harness,
) -> None:
    """Checked (not pinned elsewhere): an operator's deposit while ALICE streams is one
    ``balance`` event; her DAY order, partly filled, expired at the session's end is
    reported EXPIRED with its fill counted; a login beyond ``max_keys_per_user`` that
    revokes her stream's key (``revokedApiKey``) closes the stream 1008; BOB's stream hears
    none of her events, nor she his; seq runs on from the snapshot without a gap."""

    async def scenario(api: RestApi, url: str) -> None:
        api.keys.max_keys_per_user = 2
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        others: list[Any] = []
        try:
            ws, bws = await alice.stream(), await bob.stream()
            assert (await _snapshot(ws))["balances"] == [
                {"asset": "USD", "free": "1000000.000000", "locked": "0.000000"}
            ]
            await _snapshot(bws)
            deposit = Transfer(0, 0, FUNDER, 0, 4401, ALICE, USD, 5 * 10**6, 4401)
            harness.funder.publish_batch([deposit])
            got, _ = await _read(ws, 0.3)
            assert got == [
                {
                    "event": "balance",
                    "seq": 2,
                    "data": {"asset": "USD", "free": "1000005.000000", "locked": "0.000000"},
                }
            ], got
            day = await alice.call(
                "POST", ORDER, symbol="BTC-USD", side="BUY", type="LIMIT", price="100.00",
                quantity="1.00", timeInForce="DAY",
            )  # fmt: skip
            await bob.call(
                "POST", ORDER, **SELL, price="100.00", quantity="0.40", timeInForce="IOC"
            )
            end = AdminCommand(0, 0, AdminAction.END_OF_SESSION, 0, time.time_ns())
            harness.funder.publish_batch([end])
            got, _ = await _read(ws, 0.5)
            assert [m["seq"] for m in got] == list(range(3, 3 + len(got))), got
            seen = [
                (e["orderId"], e["executionType"], e["status"], e["executedQty"])
                for e in _reports(got)
            ]
            oid = day["orderId"]
            assert seen == [
                (oid, "NEW", "NEW", "0.00"),
                (oid, "TRADE", "PARTIALLY_FILLED", "0.40"),
                (oid, "EXPIRED", "EXPIRED", "0.40"),
            ], seen
            theirs, _ = await _read(bws, 0.2)
            assert {e["orderId"] for e in _reports(theirs)} == {oid + 1}, theirs
            others = [await client(url, "ALICE", "alice-pw") for _ in range(2)]
            _, close = await _read(ws, 2.5)
            assert close == (1008, "API key revoked"), close
            await bws.close()
        finally:
            for c in (alice, bob, *others):
                await c.close()

    run(harness, scenario)
