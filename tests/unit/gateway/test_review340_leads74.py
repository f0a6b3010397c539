"""Review 340: session 74's leads (a deposit and GET account, history parameters, the
wrong-password lockout, exchangeInfo's fees).

Reviewed: README (The REST API: ``account`` "balances from the router, live", the history
parameters of ``allOrders`` / ``myTrades``, Limits: ``failed_login_rate_per_s``; Fees are
journaled state), ``procs/gateway/rest_balances.py`` (``account_balances``, ``has_seen``),
``procs/gateway/rest_interest.py`` (the 10 s watch renewal), ``procs/gateway/rest.py``
(``balances``), ``procs/router/main.py`` (``Watches``: none survive a restart),
``procs/gateway/rest_history.py``, ``procs/gateway/history.py`` (``_between``,
``newest_first``), ``procs/gateway/unfiled_orders.py`` (``merged``),
``procs/gateway/rest_keys.py`` (``create_key``'s throttle), ``procs/admin/`` (no command
touches a gateway's limiter), ``procs/gateway/exchange_info.py`` and ``commission.py``;
against Binance spot ``GET /api/v3/account``, ``/api/v3/allOrders``, ``/api/v3/myTrades``
(orderId / fromId "gets rows >= that id, otherwise the most recent"; startTime: the oldest
from it; endTime alone: the most recent before it; at most 24 h between the two).

Rig: ``tests/unit/gateway/rest_rig.py`` (real HTTP in front of real rings, router and matcher
stepped in process; ALICE 601 with 1,000,000 USD, BOB 602 with 10 BTC; BTC-USD prices 2
decimals, sizes 2, fees maker 10 bps taker 20, fee account 99), deposits as ``ringex admin``
sends them (a ``Transfer`` on the admin gateway's ring, acknowledged on its reply ring), a
router restart as review 16 makes it (a new ``RouterShell`` on the same journal: state
recovered, no balance watch), the router's own books as the truth; the history tests on
``unfiled_rig.py`` (the database tests' private PostgreSQL, the writer run by hand).

Faults found:

1. After a router restart, a deposit (or withdrawal) acknowledged to the operator is missing
   from ``GET /api/v1/account`` for up to 10 s. A restarted router (the supervisor's
   restart of a crashed one, a failover) holds no balance watch until each gateway renews its
   own on its 10 s timer; the gateway still holds the account's balances and, having read no
   event of the account since, answers them at once (``has_seen``): a transfer is not one
   of the events it waits for, so nothing tells it they are stale. The client sees USD
   1,000,000.000000 after ``ringex admin deposit --amount 250`` said done (a withdrawal:
   money shown free that the router no longer holds; every order on it refused for balance,
   the user told by ``account`` it is there). README promises balances "from the router,
   live", a push or, "as after a router restart", a snapshot asked anew; review 16 fixed the
   same staleness for an order's hold and a fill, not for a transfer. Cause:
   ``procs/gateway/rest_balances.py:83`` (``account_balances`` answers ``known`` when
   ``has_seen``, with no sign of a router that lost its watches) and
   ``procs/gateway/rest_interest.py:73`` (renewal only every ``LEASE_MS / 3``; the router's
   watches start empty, ``procs/router/main.py:133``). Fix: have
   the gateway notice a router restart (a new router start stamp on its replies ring, the
   router's heartbeat's epoch, or the replies ring's first record after a gap) and renew
   every watch at once, dropping the balances held until the snapshot comes (a read then
   waits for it, as a first read does); or have a ``GET account`` of an account whose
   watch was not confirmed since the router's last start ask a snapshot.
   Was (fixed): USD 1000000.000000, read after read, the router holding 1000250.000000.
   Fixed: a starting router puts a mark first on each gateway's reply ring (a ``Heartbeat``
   of ``ROUTER_STARTED_SOURCE``, ``reply_queue.started_queues``); the gateway renews every
   balance watch at once and answers no balance held from before it until the new router's
   snapshot comes (``RestBalances.router_started``), so the read waits for the snapshot,
   which holds the deposit; a stream is told of the deposit by the same snapshot.

Sound (``test_sound_*``): with the router running, a deposit acknowledged on the admin
gateway's reply ring is in the next ``GET account`` (and so is a withdrawal): in this rig the
router's push is read before the request (see the first lead); and
within the lease after a router restart, the renewal the timer makes brings the deposit;
exchangeInfo's ``makerFeeBps``/``takerFeeBps`` are what the router charges a fill (the
taker's USD and the fee account's, from the router's books) and what the fill's
``commission`` says; ``allOrders`` and ``myTrades`` with ``startTime`` alone list the oldest
from it, with ``endTime`` alone the newest before it, with ``orderId``/``fromId`` and a
window both bounds (an AND, never the rows outside either), ``endTime`` < ``startTime`` -1023
naming both, ``limit`` 0 and 1001 refused naming the bound; the wrong-password allowance:
after the burst the right password too is ``429`` with ``Retry-After`` and a msg naming the
user and the limit, as README says.

Leads not shown:

- The private stream of an account after a router restart likely gets no ``balance`` event
  for a transfer until the same renewal (``_renew_behind`` asks anew only for an account
  with an event unread: ``rest_interest.py:77``); fault 1's cause. Shown after fault 1's
  fix (``test_a_stream_hears_of_a_deposit_after_a_router_restart``, which failed before it).

- A deposit acked while the router runs but the REST gateway is behind on its replies ring
  (a backlog past ``EVENTS_PER_PASS``, 4,096 a pass): a ``GET account`` served between two
  passes answers the balances without it, as nothing the gateway waits for is newer. README's
  read-your-writes covers "what the requests answered" through this gateway, not an
  operator's transfer, and Binance's deposits are not read-after-write either; not built.
- No operator remedy for a username locked out by wrong passwords: ``ringex admin`` has no
  command that clears the allowance (``procs/admin/``), a password change does not, only a
  gateway restart (the limiter is in memory) or the 10 s per token. Anyone who knows a
  username (a FIX SenderCompID) keeps its user out, REST and FIX Logons alike, with one wrong
  password every 10 s from any address (the per-address login limit does not hold it).
  README documents the 429 "until a token comes back", so a lead: worth an ``admin
  unlock-user`` and a README line on the denial-of-service it permits.
- ``allOrders`` / ``myTrades`` take combinations Binance refuses (``fromId`` with
  ``startTime``/``endTime`` on myTrades: Binance ``-1128``), and answer their AND:
  leniency, no row outside either bound (shown sound), not a fault.
- exchangeInfo's fees are the gateway's config, not the journaled schedule: after a fee
  change deployed to one process and not the other they differ (README: "after a fee change,
  until both restarted, they can differ"); documented, not shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from config.schema import DatabaseConfig
from procs.common.records import Transfer
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.router.main import RouterShell
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import BTC, FUNDER, USD, Harness
from tests.unit.gateway.rest_rig import ALICE, BOB, client, rest_exchange, run
from tests.unit.gateway.test_review195_channels import router_balances, shown_balances

ACCOUNT, ORDER = "/api/v1/account", "/api/v1/order"
ALL, TRADES, INFO = "/api/v1/allOrders", "/api/v1/myTrades", "/api/v1/exchangeInfo"
BID: dict[str, Any] = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT"}
ASK: dict[str, Any] = {"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT"}
SYM: dict[str, Any] = {"symbol": "BTC-USD"}
FEE_ACCOUNT = 99


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def shown(api: RestClient) -> dict[str, tuple[str, str]]:
    """``GET account``'s balances: asset -> (free, locked)."""
    return shown_balances((await api.call("GET", ACCOUNT))["balances"])


async def transfer(h: Harness, ref: int, account: int, asset: int, amount: int) -> None:
    """A deposit (> 0) or withdrawal (< 0) as ``ringex admin`` sends it; returns once the
    operator has its reply (what ``ringex admin deposit`` prints as done)."""
    h.funder.publish_batch([Transfer(0, 0, FUNDER, 0, ref, account, asset, amount, ref)])
    deadline = time.monotonic() + 3.0
    while not any(getattr(r, "client_ref", 0) == ref for r in h.funder_replies.read(8)):
        assert time.monotonic() < deadline, f"no reply to transfer {ref}"
        await asyncio.sleep(0.002)  # (the mark of a router's start is no reply)


def restart_router(h: Harness) -> None:
    """The router restarts (its supervisor's restart, a failover): it recovers its state
    from the journal and holds no balance watch (review 16's)."""
    h.pause()
    h.router.close()
    h.router = RouterShell(h.cfg)
    h.resume()


# -- 1: a transfer and GET account ------------------------------------------------------------


def test_sound_a_deposit_acked_is_in_the_next_account_read(harness: Harness) -> None:
    """The router running: ALICE's balances held by the gateway, the operator deposits 250
    USD and withdraws 0.5 BTC; each, once its reply is read, is in ALICE's next ``GET
    account``, read at once (no wait-until), equal to the router's books."""
    h = harness

    async def scenario(_: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            assert await shown(alice) == {"USD": ("1000000.000000", "0.000000")}
            await transfer(h, 34001, ALICE, USD, 250 * 10**6)
            assert await shown(alice) == router_balances(h, ALICE)
            assert (await shown(alice))["USD"] == ("1000250.000000", "0.000000")
            await transfer(h, 34002, ALICE, BTC, 2 * 10**6)
            await transfer(h, 34003, ALICE, BTC, -500_000)
            assert (await shown(alice))["BTC"] == ("1.500000", "0.000000")
        finally:
            await alice.close()

    run(h, scenario)


def test_a_deposit_after_a_router_restart_is_in_the_next_account_read(harness: Harness) -> None:
    """Scenario: ALICE has read her balances (the gateway holds them, watched); the router
    restarts (state from the journal, no watch); the operator deposits 250 USD and is told
    done; ALICE reads ``GET account``.
    Expected: USD 1000250.000000, what the router holds (README: balances "from the router,
    live"; review 16 made the same read right for an order's hold and a fill).
    (Within 1.25 s: README's 0.25 s for a push and a further second for a snapshot.)
    Was (fixed): USD 1000000.000000, read after read, for up to 10 s (the watch's renewal)."""
    h = harness

    async def scenario(_: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            assert await shown(alice) == {"USD": ("1000000.000000", "0.000000")}
            restart_router(h)
            await transfer(h, 34011, ALICE, USD, 250 * 10**6)
            truth = router_balances(h, ALICE)
            assert truth["USD"] == ("1000250.000000", "0.000000"), truth
            deadline = time.monotonic() + 1.25  # README's 0.25 s for a push, 1 s more
            while (got := await shown(alice)) != truth:
                assert time.monotonic() < deadline, f"GET account {got}, the router {truth}"
                await asyncio.sleep(0.05)
        finally:
            await alice.close()

    run(h, scenario)


def test_a_stream_hears_of_a_deposit_after_a_router_restart(harness: Harness) -> None:
    """The first lead, shown with fault 1's fix: ALICE's private stream is open, the router
    restarts, the operator deposits 250 USD. Expected: a ``balance`` event of USD
    1000250.000000 within 1.25 s, no tick of the gateway's timer (the start mark renews the
    watch, and the new router's snapshot says what moved). Was: none until the renewal."""
    h = harness

    async def scenario(_: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            ws = await alice.stream()
            first = json.loads((await ws.receive(timeout=5)).data)
            assert first["event"] == "snapshot", first
            restart_router(h)
            await transfer(h, 34031, ALICE, USD, 250 * 10**6)
            deadline = time.monotonic() + 1.25
            seen: list[dict[str, Any]] = []
            while not any(m["data"].get("free") == "1000250.000000" for m in seen):
                left = deadline - time.monotonic()
                assert left > 0, f"stream events {seen}"
                with contextlib.suppress(TimeoutError):
                    msg = json.loads((await ws.receive(timeout=left)).data)
                    if msg.get("event") == "balance":
                        seen.append(msg)
            await ws.close()
        finally:
            await alice.close()

    run(h, scenario)


def test_sound_the_watch_renewal_brings_the_deposit_after_a_router_restart(
    harness: Harness,
) -> None:
    """The bound of fault 1: the gateway's timer renewing the watch (``tick`` 11 s on, as
    review 16 drives it) brings the deposit the restarted router did not push."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await shown(alice)
            restart_router(h)
            await transfer(h, 34021, ALICE, USD, 250 * 10**6)
            api.tick(time.monotonic() + 11)
            api.publish()
            deadline = time.monotonic() + 3.0
            while (got := await shown(alice))["USD"][0] != "1000250.000000":
                assert time.monotonic() < deadline, got
                await asyncio.sleep(0.01)
        finally:
            await alice.close()

    run(h, scenario)


# -- 4: exchangeInfo's fees and what a fill is charged -----------------------------------------


def test_sound_exchange_info_fees_are_what_the_router_charges(harness: Harness) -> None:
    """BOB's ask of 1.00 at 30000.00 rests; ALICE's IOC bid takes it. exchangeInfo's
    ``takerFeeBps``/``makerFeeBps`` give ALICE's USD spent and BOB's USD received as the
    router's books hold them, the fee account's take, and the fills' ``commission``."""
    h = harness

    async def scenario(_: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            info = await alice.call("GET", INFO, signed=False, symbol="BTC-USD")
            (sym,) = info["symbols"]
            maker, taker = sym["makerFeeBps"], sym["takerFeeBps"]
            assert (maker, taker) == (10, 20), sym  # the config's, distinct: a swap shows
            accounts = h.router.sequencer.accounts
            fee_before = accounts.balance(FEE_ACCOUNT, USD)[0]
            await bob.call("POST", ORDER, **ASK, price="30000.00", quantity="1.00")
            took = await alice.call(
                "POST", ORDER, **BID, price="30000.00", quantity="1.00", timeInForce="IOC"
            )
            assert took["status"] == "FILLED", took
            notional = 30_000 * 10**6
            t_fee, m_fee = notional * taker // 10_000, notional * maker // 10_000
            assert accounts.balance(ALICE, USD) == (10**12 - notional - t_fee, 0)
            assert accounts.balance(BOB, USD) == (notional - m_fee, 0)
            assert accounts.balance(FEE_ACCOUNT, USD)[0] - fee_before == t_fee + m_fee
            (fill,) = took["fills"]
            assert Decimal(fill["commission"]) == Decimal(t_fee) / 10**6, fill
            assert fill["commissionAsset"] == "USD", fill
        finally:
            await alice.close()
            await bob.close()

    run(h, scenario)


# -- 3: the wrong-password allowance ----------------------------------------------------------


def test_sound_wrong_passwords_lock_the_username_as_documented(harness: Harness) -> None:
    """Ten wrong passwords for BOB (the burst), then the right one: ``429`` ``-1003`` with
    ``Retry-After``, the msg naming the user and the limit (README: "then 429 for that
    username ... the right password included, until a token comes back"); ALICE, another
    username, logs in meanwhile."""

    async def scenario(_: RestApi, url: str) -> None:
        async with RestClient(url) as anon:
            body = {"username": "BOB", "password": "nope"}
            for _try in range(10):
                status, answer = await anon.request("POST", "/api/v1/apiKey", signed=False, **body)
                assert status == 401, (status, answer)
            async with anon.session.post(
                f"{url}/api/v1/apiKey", data={"username": "BOB", "password": "bob-pw"}
            ) as r:
                status, answer, retry = r.status, await r.json(), r.headers.get("Retry-After")
            assert status == 429 and answer["code"] == -1003, (status, answer)
            assert "'BOB'" in answer["msg"] and "0.1/s" in answer["msg"], answer
            assert retry is not None and 1 <= int(retry) <= 10, retry
        alice = await client(url, "ALICE", "alice-pw")
        await alice.close()

    run(harness, scenario)


# -- 2: allOrders / myTrades parameters (history database) -------------------------------------


@pytest.fixture
def db_harness(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    """``unfiled_rig``'s: the history in ``dsn``."""
    yield from rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn))


def test_sound_history_parameter_combinations(db_harness: Harness) -> None:
    """ALICE places three bids (each taking 0.10 of BOB's asks: a trade each), a few ms
    apart; the first two filed by the writer, the third live only. Then: ``startTime``
    alone lists the oldest from it, ``endTime`` alone the newest before it (limit 1),
    ``orderId`` (``fromId``) with a window both bounds, ``endTime`` < ``startTime`` -1023
    naming both, ``limit`` 0 and 1001 refused naming the bound."""
    h = db_harness

    async def scenario(_: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            for k in range(3):
                await bob.call("POST", ORDER, **ASK, price="100.00", quantity="0.10")
                placed = await alice.call(
                    "POST", ORDER, **BID, price="100.00", quantity="0.10", timeInForce="IOC"
                )
                assert placed["status"] == "FILLED", placed
                if k == 1:
                    await unfiled_rig.file_all(h)
                await asyncio.sleep(0.005)
            orders = await alice.call("GET", ALL, **SYM)
            trades = await alice.call("GET", TRADES, **SYM)
            assert len(orders) == 3 and len(trades) == 3, (orders, trades)
            oids, times = [o["orderId"] for o in orders], [o["time"] for o in orders]
            tids, ttimes = [t["id"] for t in trades], [t["time"] for t in trades]
            assert len(set(times)) == 3 and len(set(ttimes)) == 3, (times, ttimes)
            # startTime alone: the oldest from it
            got = await alice.call("GET", ALL, **SYM, startTime=times[1], limit=1)
            assert [o["orderId"] for o in got] == [oids[1]], got
            got = await alice.call("GET", TRADES, **SYM, startTime=ttimes[1], limit=1)
            assert [t["id"] for t in got] == [tids[1]], got
            # endTime alone: the newest before it
            got = await alice.call("GET", ALL, **SYM, endTime=times[1], limit=1)
            assert [o["orderId"] for o in got] == [oids[1]], got
            got = await alice.call("GET", TRADES, **SYM, endTime=ttimes[1], limit=1)
            assert [t["id"] for t in got] == [tids[1]], got
            # an id and a window: both bounds hold
            got = await alice.call("GET", ALL, **SYM, orderId=oids[0], endTime=times[1])
            assert [o["orderId"] for o in got] == oids[:2], got
            got = await alice.call("GET", ALL, **SYM, orderId=oids[2], startTime=times[0])
            assert [o["orderId"] for o in got] == oids[2:], got
            got = await alice.call("GET", TRADES, **SYM, fromId=tids[1], endTime=ttimes[1])
            assert [t["id"] for t in got] == [tids[1]], got
            got = await alice.call("GET", TRADES, **SYM, fromId=tids[0], startTime=ttimes[2])
            assert [t["id"] for t in got] == [tids[2]], got
            for path in (ALL, TRADES):
                status, body = await alice.request(
                    "GET", path, **SYM, startTime=times[2], endTime=times[0]
                )
                assert status == 400 and body["code"] == -1023, body
                assert str(times[2]) in body["msg"] and str(times[0]) in body["msg"], body
                for bad in (0, 1001):
                    status, body = await alice.request("GET", path, **SYM, limit=bad)
                    assert status == 400 and "limit" in body["msg"], (bad, body)
                    assert ("1000" if bad else "1") in body["msg"], (bad, body)
        finally:
            await alice.close()
            await bob.close()

    run(h, scenario)
