"""Bugs a sixteenth hostile review found in the private stream and the balances it and
``GET /api/v1/account`` show (``rest_rig.py``: real HTTP and WebSocket in front of real
rings, an in-process router and matcher). Each test fails until its bug is fixed.

BTC-USD: prices 2 decimals, sizes 2; USD and BTC 6 decimals. ALICE holds 1,000,000 USD and
no BTC, BOB 10 BTC and no USD. The router's balance watches (``procs/core/watches.py``) push
what "may have changed" and their snapshots list only the assets an account holds any of; the
gateway renews its watches every ``LEASE_MS / 3`` (10 s): the tests make that renewal due by
calling ``RestOrders.tick`` with a clock 11 s ahead, as the gateway's timer would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from procs.gateway.rest import RestApi
from procs.gateway.rest_balances import LEASE_MS
from procs.gateway.rest_client import RestClient
from procs.router.main import RouterShell
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import client, rest_exchange, run

SELL: dict[str, Any] = {"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT", "price": "30000.00"}
BUY: dict[str, Any] = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": "30000.00"}


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def _messages(ws: aiohttp.ClientWebSocketResponse, quiet_s: float) -> list[dict[str, Any]]:
    """The stream's messages until none came for ``quiet_s``."""
    out: list[dict[str, Any]] = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet_s)
        except TimeoutError:
            return out
        if msg.type is not aiohttp.WSMsgType.TEXT:
            return out
        out.append(json.loads(msg.data))


async def _snapshot(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    first = json.loads((await ws.receive(timeout=5)).data)
    assert first["event"] == "snapshot", first
    data: dict[str, Any] = first["data"]
    return data


def _renew(api: RestApi) -> None:
    """What the gateway's timer does a third of a lease later: renew the balance watches."""
    api.core.tick(time.monotonic() + LEASE_MS / 3000 + 1)
    api.publish()


async def _balances(c: RestClient) -> dict[str, tuple[str, str]]:
    account = await c.call("GET", "/api/v1/account")
    return {b["asset"]: (b["free"], b["locked"]) for b in account["balances"]}


def _restart_router(h: Harness) -> None:
    """The router restarts (its supervisor's restart, a failover): it recovers its state from
    the journal and holds no balance watch."""
    h.pause()
    h.router.close()
    h.router = RouterShell(h.cfg)
    h.resume()


async def _bob_sells_everything(alice: RestClient, bob: RestClient) -> None:
    """BOB's 10 BTC rest as an ask; ALICE's IOC buy takes them all: BOB holds no BTC."""
    await bob.call("POST", "/api/v1/order", **SELL, quantity="10.00")
    answer = await alice.call("POST", "/api/v1/order", **BUY, quantity="10.00", timeInForce="IOC")
    assert answer["status"] == "FILLED", answer


# -- balance events that say nothing --------------------------------------------------------------


def test_a_rejected_cancel_pushes_balance_events_though_nothing_moved(harness: Harness) -> None:
    """What is wrong: the router's watch pushes what *may* have changed (``Watches.touch``: a
    reject of a cancel touches the order's pair, "a push repeats the current values"), and
    ``RestOrders._balance`` (rest_orders.py) turns every such push into a private-stream
    ``balance`` event without comparing it with the balance it already holds. A cancel of an
    unknown order (refused, -2011) moves nothing, yet BOB's stream gets two ``balance``
    events: BTC 10.000000 / 0, exactly what the snapshot said, and USD 0 / 0, an asset the
    snapshot did not even list. Every refused cancel, every order placed or cancelled
    (which touches the other asset of the pair too), pushes identical events.
    Expected (Binance's ``outboundAccountPosition`` carries the balances that changed): no
    ``balance`` event when no balance moved. Actual: two identical ones."""

    async def scenario(api: RestApi, url: str) -> None:
        bob = await client(url, "BOB", "bob-pw")
        try:
            ws = await bob.stream()
            snapshot = await _snapshot(ws)
            assert snapshot["balances"] == [
                {"asset": "BTC", "free": "10.000000", "locked": "0.000000"}
            ], snapshot
            status, body = await bob.request(
                "DELETE", "/api/v1/order", symbol="BTC-USD", orderId=999
            )
            assert status == 400 and body["code"] == -2011, body
            events = [m for m in await _messages(ws, 0.5) if m["event"] == "balance"]
            await ws.close()
            assert events == [], f"balance events for a refused cancel: {events}"
        finally:
            await bob.close()

    run(harness, scenario)


def test_a_balance_gone_to_zero_is_pushed_again_at_the_next_lease_renewal(
    harness: Harness,
) -> None:
    """What is wrong: a watch's snapshot lists only the assets an account holds any of
    (``Watches.snapshot``), while a push of an asset gone to zero is kept as (0, 0) in
    ``RestOrders.balances``. At the next lease renewal (every 10 s) ``RestOrders._balance``
    compares the account's balances with the renewed snapshot, takes "BTC: (0, 0)" against
    "BTC: absent" for a change, and pushes a second ``balance`` event BTC 0 / 0, identical to
    the one the stream sent when BOB's last BTC was sold, though nothing moved since.
    Expected: a renewal that finds nothing changed sends nothing (a missing asset is a zero
    balance). Actual: one more ``balance`` event, BTC 0.000000 / 0.000000, per asset gone to
    zero."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            ws = await bob.stream()
            await _snapshot(ws)
            await _bob_sells_everything(alice, bob)
            sold = await _messages(ws, 0.5)
            btc = [m["data"] for m in sold if m["event"] == "balance"]
            assert {"asset": "BTC", "free": "0.000000", "locked": "0.000000"} in btc, sold
            _renew(api)  # nothing moved since
            again = await _messages(ws, 0.5)
            await ws.close()
            assert again == [], f"events at a renewal that found nothing changed: {again}"
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_get_account_lists_a_zero_balance_until_the_next_lease_renewal(harness: Harness) -> None:
    """What is wrong: ``GET /api/v1/account`` lists the assets of ``RestOrders.balances``,
    which holds what the router's watch snapshot listed (assets with a balance only) plus
    every asset a push touched since (kept at (0, 0) when it went to zero, see
    ``RestOrders._balance``). So the same account, with the same balances, is shown with a
    different list of assets depending on when the last renewal came: right after BOB sold
    all his BTC the answer lists "BTC 0.000000 / 0.000000"; ten seconds later (a lease
    renewal, nothing moved) BTC is gone from it. A client diffing two answers sees an asset
    disappear without any trade or transfer.
    Expected: the same balances give the same list (either zero balances always listed, as
    Binance's account endpoint does by default, or never). Actual: BTC listed, then not."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            await _bob_sells_everything(alice, bob)
            before = await _balances(bob)
            _renew(api)  # nothing moved since
            await asyncio.sleep(0.3)  # the renewal's snapshot comes back
            after = await _balances(bob)
            assert after == before, f"before the renewal {before}, after it {after}"
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


# -- after a router restart -----------------------------------------------------------------------


def test_get_account_right_after_an_order_misses_its_hold_after_a_router_restart(
    harness: Harness,
) -> None:
    """What is wrong: a restarted router holds no balance watch, and the gateway renews its
    watches only on its 10 s timer (``RestOrders.tick``): until then no push comes. And
    ``RestOrders.process`` records no balance-moving event for an ``Accepted`` order (only
    trades, ends, replaces and rejects set ``_need``), although the router reserved the
    order's hold when it sequenced it. So right after the router restarted, BOB's sell of
    1.00 BTC is answered NEW and ``GET /api/v1/account`` at once says BTC free 10.000000,
    locked 0.000000: the hold is not there (read-your-writes broken), for up to ten seconds.
    Expected (README: ``account``, "balances from the router, live"; the gateway's own rule
    that a balance read includes what it has seen): free 9.000000, locked 1.000000. Actual:
    10.000000 / 0.000000."""

    async def scenario(api: RestApi, url: str) -> None:
        bob = await client(url, "BOB", "bob-pw")
        try:
            assert await _balances(bob) == {"BTC": ("10.000000", "0.000000")}
            _restart_router(harness)
            placed = await bob.call("POST", "/api/v1/order", **SELL, quantity="1.00")
            assert placed["status"] == "NEW", placed
            balances = await _balances(bob)
            assert balances["BTC"] == ("9.000000", "1.000000"), balances
        finally:
            await bob.close()

    run(harness, scenario)


def test_get_account_after_a_fill_is_slow_and_stale_after_a_router_restart(
    harness: Harness,
) -> None:
    """What is wrong: after a router restart the gateway's watch is gone until its 10 s
    renewal. ``RestOrders.account_balances`` sees a trade newer than the balances it holds
    (``_have`` < ``_need``) and waits for a push that cannot come (no watch: it sends none),
    and ``RestApi.balances`` (rest.py), after ``BALANCE_WAIT_S``, answers with the stale
    balances. So every ``GET /api/v1/account`` takes a full second and shows BOB's BTC still
    locked for the 0.50 that ALICE bought, and none of the 14,985 USD he was paid.
    Expected: the fill's balances (BTC 9.000000 free, 0.500000 locked; USD 14985.000000),
    promptly (a stale read can ask the router for a fresh snapshot instead of waiting for a
    push). Actual: BTC 9.000000 / 1.000000, no USD, after one second."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            await bob.call("POST", "/api/v1/order", **SELL, quantity="1.00")
            assert await _balances(bob) == {"BTC": ("9.000000", "1.000000")}
            _restart_router(harness)
            taken = await alice.call(
                "POST", "/api/v1/order", **BUY, quantity="0.50", timeInForce="IOC"
            )
            assert taken["status"] == "FILLED", taken
            started = time.monotonic()
            balances = await _balances(bob)
            took = time.monotonic() - started
            assert balances.get("BTC") == ("9.000000", "0.500000"), balances
            assert balances.get("USD") == ("14985.000000", "0.000000"), balances
            assert took < 0.5, f"GET account took {took:.2f} s"
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_a_stream_opened_after_a_router_restart_snapshots_stale_balances(
    harness: Harness,
) -> None:
    """What is wrong: the stream's snapshot (``PrivateStreams._snapshot``) takes its balances
    from ``RestApi.balances``, which after a router restart (watch gone until the 10 s
    renewal, see the test above) waits a second and hands back the stale ones, while its open
    orders are live. So BOB's new stream, opened after ALICE bought 0.50 of his 1.00 ask,
    shows the ask PARTIALLY_FILLED with 0.50 left, and balances that still lock 1.000000 BTC
    and hold no USD: a snapshot that contradicts itself, and the ``balance`` events that
    follow only correct it at the renewal, up to ten seconds later.
    Expected: balances consistent with the orders the snapshot shows (BTC locked 0.500000,
    USD 14985.000000). Actual: BTC locked 1.000000, no USD."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            await bob.call("POST", "/api/v1/order", **SELL, quantity="1.00")
            assert await _balances(bob) == {"BTC": ("9.000000", "1.000000")}
            _restart_router(harness)
            await alice.call("POST", "/api/v1/order", **BUY, quantity="0.50", timeInForce="IOC")
            ws = await bob.stream()
            snapshot = await _snapshot(ws)
            await ws.close()
            (order,) = snapshot["openOrders"]
            assert order["status"] == "PARTIALLY_FILLED" and order["executedQty"] == "0.50"
            balances = {b["asset"]: (b["free"], b["locked"]) for b in snapshot["balances"]}
            assert balances.get("BTC") == ("9.000000", "0.500000"), balances
            assert balances.get("USD") == ("14985.000000", "0.000000"), balances
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)
