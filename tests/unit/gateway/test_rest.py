"""The REST API and private stream over real HTTP, in front of real rings, an in-process router
and matcher (the FIX tests' harness): keys, signatures, orders, balances, ownership, limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.edges import RestConfig
from config.schema import DatabaseConfig
from procs.gateway.rest_client import RestClient
from procs.gateway.signing import SIGNATURE
from tests.unit.gateway.harness import Harness, config

ALICE, BOB = 501, 502


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    rest = RestConfig(port=0, key_rate_per_s=50, key_burst=50, login_rate_per_s=100)
    cfg = config(instance, tmp_path, rest=rest)
    cfg = msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False))
    h = Harness(cfg)
    h.add_user("ALICE", "alice-pw", ALICE)
    h.add_user("BOB", "bob-pw", BOB)
    h.fund(ALICE, usd=1_000_000 * 10**6, btc=0)
    h.fund(BOB, usd=0, btc=10 * 10**6)
    yield h
    h.close()


def run(h: Harness, scenario: Callable[[str], Awaitable[None]]) -> None:
    async def main() -> None:
        await h.start()
        assert h.gateway is not None and h.gateway.api is not None
        try:
            await asyncio.wait_for(scenario(f"http://127.0.0.1:{h.gateway.api.port}"), 20)
        finally:
            await h.stop()

    asyncio.run(main())


async def client(url: str, user: str, password: str, scopes: str = "read,trade") -> RestClient:
    api = RestClient(url)
    await api.login(user, password, scopes)
    return api


def test_login_refuses_a_wrong_password(harness: Harness) -> None:
    run(harness, _login_refuses_a_wrong_password)


async def _login_refuses_a_wrong_password(url: str) -> None:
    async with RestClient(url) as api:
        status, body = await api.request(
            "POST", "/api/v1/apiKey", signed=False, username="ALICE", password="nope"
        )
        assert status == 401 and body["code"] == -2014
        status, body = await api.request("POST", "/api/v1/apiKey", signed=False, username="ALICE")
        assert status == 400 and "password" in body["msg"]


def test_exchange_info_is_public(harness: Harness) -> None:
    run(harness, _exchange_info_is_public)


async def _exchange_info_is_public(url: str) -> None:
    async with RestClient(url) as api:
        info = await api.call("GET", "/api/v1/exchangeInfo", signed=False)
    (sym,) = info["symbols"]
    assert sym["symbol"] == "BTC-USD" and sym["tickSize"] == "0.05" and sym["stepSize"] == "0.01"


def test_an_order_trades_and_balances_follow(harness: Harness) -> None:
    run(harness, _an_order_trades_and_balances_follow)


async def _an_order_trades_and_balances_follow(url: str) -> None:
    alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
    try:
        ask = await bob.call(
            "POST", "/api/v1/order", symbol="BTC-USD", side="SELL", type="LIMIT",
            price="30000.00", quantity="0.50", newClientOrderId="bob-1",
        )  # fmt: skip
        assert ask["status"] == "NEW" and ask["clientOrderId"] == "bob-1" and ask["fills"] == []
        bid = await alice.call(
            "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="LIMIT",
            price="30000.00", quantity="0.20", timeInForce="IOC",
        )  # fmt: skip
        assert bid["status"] == "FILLED" and bid["executedQty"] == "0.20"
        assert bid["fills"] == [
            {"price": "30000.00", "qty": "0.20", "tradeId": 1, "isMaker": False,
             "commission": "12.000000", "commissionAsset": "USD"}  # 20 bps of 6000 USD
        ]  # fmt: skip
        assert bid["cummulativeQuoteQty"] == "6000.0000"
        # the maker's view, live
        mine = await bob.call("GET", "/api/v1/order", symbol="BTC-USD", orderId=ask["orderId"])
        assert mine["status"] == "PARTIALLY_FILLED" and mine["executedQty"] == "0.20"
        opened = await bob.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
        assert [o["orderId"] for o in opened] == [ask["orderId"]]
        # balances from the router: alice paid 6000 + the taker fee and holds 0.2 BTC
        account = await alice.call("GET", "/api/v1/account")
        balances = {b["asset"]: b for b in account["balances"]}
        assert balances["BTC"]["free"] == "0.200000"
        assert balances["USD"]["free"] == "993988.000000"  # 1e6 - 6000 - 20 bps fee
        bob_bal = {b["asset"]: b for b in (await bob.call("GET", "/api/v1/account"))["balances"]}
        assert bob_bal["BTC"]["locked"] == "0.300000"
        # cancel the rest
        done = await bob.call(
            "DELETE", "/api/v1/order", symbol="BTC-USD", origClientOrderId="bob-1"
        )
        assert done["status"] == "CANCELED" and done["orderId"] == ask["orderId"]
        assert await bob.call("GET", "/api/v1/openOrders") == []
    finally:
        await alice.close()
        await bob.close()


def test_nobody_sees_or_cancels_another_users_orders(harness: Harness) -> None:
    run(harness, _nobody_sees_or_cancels_another_users_orders)


async def _nobody_sees_or_cancels_another_users_orders(url: str) -> None:
    alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
    try:
        ask = await bob.call(
            "POST", "/api/v1/order", symbol="BTC-USD", side="SELL", type="LIMIT",
            price="31000.00", quantity="0.10",
        )  # fmt: skip
        oid = ask["orderId"]
        status, body = await alice.request("GET", "/api/v1/order", symbol="BTC-USD", orderId=oid)
        assert status == 400 and body["code"] == -2013
        status, body = await alice.request("DELETE", "/api/v1/order", symbol="BTC-USD", orderId=oid)
        assert status == 400 and body["code"] == -2011 and "unknown order" in body["msg"]
        assert await alice.call("GET", "/api/v1/openOrders") == []
        still = await bob.call("GET", "/api/v1/order", symbol="BTC-USD", orderId=oid)
        assert still["status"] == "NEW"
    finally:
        await alice.close()
        await bob.close()


def test_refusals_name_the_value(harness: Harness) -> None:
    run(harness, _refusals_name_the_value)


async def _refusals_name_the_value(url: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    try:
        base: dict[str, Any] = {
            "symbol": "BTC-USD",
            "side": "BUY",
            "type": "LIMIT",
            "quantity": "0.10",
        }
        status, body = await alice.request("POST", "/api/v1/order", **base, price="30000.01")
        assert status == 400 and body["code"] == -1013 and "30000.01" in body["msg"]
        assert "tick 0.05" in body["msg"]
        status, body = await alice.request("POST", "/api/v1/order", **{**base, "symbol": "X"})
        assert status == 400 and body["code"] == -1121 and "'X'" in body["msg"]
        status, body = await alice.request(
            "POST", "/api/v1/order", **{**base, "side": "HOLD"}, price="1"
        )
        assert status == 400 and "HOLD" in body["msg"]
        # the router's risk check: more than alice has
        status, body = await alice.request(
            "POST", "/api/v1/order", **{**base, "quantity": "1000.00"}, price="30000.00"
        )
        assert status == 400 and body["code"] == -2010
        assert "INSUFFICIENT_BALANCE" in body["msg"]
    finally:
        await alice.close()


def test_signatures_are_checked_and_never_replayed(harness: Harness) -> None:
    run(harness, _signatures_are_checked_and_never_replayed)


async def _signatures_are_checked_and_never_replayed(url: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    session = alice.session
    try:
        headers = alice.headers("GET", "/api/v1/account", "", b"")
        async with session.get(f"{url}/api/v1/account", headers=headers) as r:
            assert r.status == 200
        async with session.get(f"{url}/api/v1/account", headers=headers) as r:
            assert r.status == 401 and (await r.json())["code"] == -1025  # replayed
        headers = alice.headers("GET", "/api/v1/account", "", b"")
        async with session.get(f"{url}/api/v1/openOrders", headers=headers) as r:
            assert r.status == 401 and (await r.json())["code"] == -1022  # another path
        headers = alice.headers("GET", "/api/v1/account", "", b"")
        headers[SIGNATURE] = "0" * 64
        async with session.get(f"{url}/api/v1/account", headers=headers) as r:
            assert r.status == 401
        async with session.get(f"{url}/api/v1/account") as r:
            assert r.status == 401 and (await r.json())["code"] == -2014
        reader = await client(url, "ALICE", "alice-pw", scopes="read")
        status, body = await reader.request(
            "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="MARKET", quantity="1"
        )
        assert status == 403 and "trade" in body["msg"]
        await reader.close()
    finally:
        await alice.close()


def test_limits_answer_429_and_413(harness: Harness) -> None:
    run(harness, _limits_answer_429_and_413)


async def _limits_answer_429_and_413(url: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    try:
        statuses = []
        for k in range(150):  # each signed apart (a signature is taken once)
            alice.recv_window_ms = 5_000 + k
            status, _body = await alice.request("GET", "/api/v1/openOrders")
            statuses.append(status)
            if status == 429:
                break
        assert 429 in statuses and 401 not in statuses, statuses
        async with alice.session.post(f"{url}/api/v1/order", data=b"x" * 20_000) as r:
            assert r.status == 413 and "16384" in (await r.json())["msg"]
        headers = alice.headers("GET", "/api/v1/openOrders", "", b"")
        async with alice.session.get(f"{url}/api/v1/openOrders", headers=headers) as r:
            if r.status == 429:
                assert int(r.headers["Retry-After"]) >= 1
    finally:
        await alice.close()


def test_private_stream_snapshot_then_events(harness: Harness) -> None:
    run(harness, _private_stream_snapshot_then_events)


async def _private_stream_snapshot_then_events(url: str) -> None:
    alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
    try:
        ws = await bob.stream()
        first = json.loads((await ws.receive(timeout=5)).data)
        assert first["event"] == "snapshot" and first["seq"] == 1
        assert {b["asset"]: b["free"] for b in first["data"]["balances"]} == {"BTC": "10.000000"}
        ask = await bob.call(
            "POST", "/api/v1/order", symbol="BTC-USD", side="SELL", type="LIMIT",
            price="30000.00", quantity="0.50",
        )  # fmt: skip
        await alice.call(
            "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="LIMIT", quantity="0.10",
            price="31000.00", timeInForce="IOC",  # no trade yet: a market buy is refused 2011
        )  # fmt: skip
        events: list[dict[str, Any]] = []
        while not any(e["data"].get("executionType") == "TRADE" for e in events) or not any(
            e["event"] == "balance" and e["data"]["asset"] == "USD" for e in events
        ):
            events.append(json.loads((await ws.receive(timeout=5)).data))
        assert [e["seq"] for e in events] == list(range(2, 2 + len(events)))
        trade = next(e["data"] for e in events if e["data"].get("executionType") == "TRADE")
        assert trade["orderId"] == ask["orderId"] and trade["lastQty"] == "0.10"
        assert trade["isMaker"] is True and trade["status"] == "PARTIALLY_FILLED"
        await ws.close()
    finally:
        await alice.close()
        await bob.close()


def test_stream_refuses_a_bad_signature(harness: Harness) -> None:
    run(harness, _stream_refuses_a_bad_signature)


async def _stream_refuses_a_bad_signature(url: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    try:
        bad = alice.stream_url().replace("signature=", "signature=0")
        async with alice.session.get(bad) as r:
            assert r.status == 401
        await asyncio.sleep(0)
    finally:
        await alice.close()
