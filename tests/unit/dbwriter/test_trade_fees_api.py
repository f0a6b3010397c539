"""A user sees each fill's commission: the REST order answer and the private stream (under the
gateway's configured fees), FIX ExecutionReports (Commission 12, CommType 13 = 3, CommCurrency
479), and myTrades from what the real database writer filed into a real PostgreSQL. Real HTTP,
a real FIX client over TCP, the in-process router and matcher of the gateway tests' harness.

BTC-USD: prices 2 decimals (tick 5), sizes 2, USD 6: a tick-lot is 100 USD minor units. Fees
10 bps maker, 20 bps taker, rounded down as the router charges them.

- trade 1: BOB's FIX sell rests (maker), ALICE's REST buy takes it: 30000.05 x 0.37,
  notional 11100.0185 USD: maker 11.100018 (11.10001850 rounded down), taker 22.200037;
- trade 2: ALICE's REST buy rests (maker), BOB's FIX sell takes it: 29999.95 x 0.13,
  notional 3899.9935: maker 3.899993 (3.89999350), taker 7.799987.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse

from config.edges import RestConfig
from config.schema import DatabaseConfig, RingexConfig
from procs.gateway.openapi import document
from procs.gateway.rest_client import RestClient
from tests.unit.dbwriter.journal_gen import write_all
from tests.unit.gateway.harness import USD, Client, Harness, close_all, config, utc
from tests.unit.gateway.rest_rig import rest_exchange

FEE_ACCOUNT = 99  # the harness's
TRADE_1 = {"price": "30000.05", "qty": "0.37", "maker": "11.100018", "taker": "22.200037"}
TRADE_2 = {"price": "29999.95", "qty": "0.13", "maker": "3.899993", "taker": "7.799987"}


@pytest.fixture
def harness(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn))


def _sell(cl: str, price: str, qty: str) -> list[tuple[int, object]]:
    return [(11, cl), (55, "BTC-USD"), (54, "2"), (60, utc()), (38, qty), (40, "2"), (44, price)]


async def _buy(alice: RestClient, price: str, qty: str) -> Any:
    return await alice.call(
        "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="LIMIT", price=price,
        quantity=qty, timeInForce="GTC",
    )  # fmt: skip


async def _fix_fill(bob: Client) -> dict[int, bytes]:
    """BOB's next fill report's fields."""
    while True:
        report = await bob.expect("8")
        if report.get(150) == b"F":
            return {tag: report.get(tag) for tag in (31, 32, 12, 13, 479)}


async def _stream_trades(ws: ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    trades: list[dict[str, Any]] = []
    while len(trades) < count:
        event = json.loads((await ws.receive(timeout=5)).data)
        if event["event"] == "executionReport" and event["data"]["executionType"] == "TRADE":
            trades.append(event["data"])
    return trades


def _mine(trades: list[dict[str, Any]]) -> list[tuple[int, bool, str, str]]:
    return [(t["id"], t["isMaker"], t["commission"], t["commissionAsset"]) for t in trades]


def test_every_view_of_a_fill_shows_its_sides_commission(harness: Harness) -> None:
    h, cfg = harness, harness.cfg

    async def scenario(url: str, port: int) -> None:
        bob = Client("BOB")
        await bob.connect(port)
        await bob.logon("bob-pw")
        async with RestClient(url) as alice, RestClient(url) as bob_rest:
            await alice.login("ALICE", "alice-pw")
            await bob_rest.login("BOB", "bob-pw")
            ws = await alice.stream()
            assert json.loads((await ws.receive(timeout=5)).data)["event"] == "snapshot"
            # trade 1: BOB's FIX order rests, ALICE takes it over REST
            await bob.send("D", *_sell("s1", TRADE_1["price"], TRADE_1["qty"]))
            assert (await bob.expect("8")).get(150) == b"0"
            answer = await _buy(alice, TRADE_1["price"], TRADE_1["qty"])
            assert answer["fills"] == [
                {"price": "30000.05", "qty": "0.37", "tradeId": 1, "isMaker": False,
                 "commission": TRADE_1["taker"], "commissionAsset": "USD"},
            ]  # fmt: skip
            assert await _fix_fill(bob) == {
                31: b"30000.05", 32: b"0.37", 12: TRADE_1["maker"].encode(), 13: b"3",
                479: b"USD",
            }  # fmt: skip
            # trade 2: ALICE's REST order rests, BOB's FIX order takes it
            rested = await _buy(alice, TRADE_2["price"], TRADE_2["qty"])
            assert rested["fills"] == []
            await bob.send("D", *_sell("s2", TRADE_2["price"], TRADE_2["qty"]))
            assert await _fix_fill(bob) == {
                31: b"29999.95", 32: b"0.13", 12: TRADE_2["taker"].encode(), 13: b"3",
                479: b"USD",
            }  # fmt: skip
            streamed = await _stream_trades(ws, 2)
            assert [(t["tradeId"], t["isMaker"], t["commission"], t["commissionAsset"])
                    for t in streamed] == [
                (1, False, TRADE_1["taker"], "USD"), (2, True, TRADE_2["maker"], "USD"),
            ]  # fmt: skip
            await ws.close()
            # the history: what the writer filed from the journal, each side its own fee
            assert await asyncio.to_thread(write_all, cfg, cfg.database.dsn) > 0
            mine = await alice.call("GET", "/api/v1/myTrades", symbol="BTC-USD")
            assert _mine(mine) == [
                (1, False, TRADE_1["taker"], "USD"), (2, True, TRADE_2["maker"], "USD"),
            ]  # fmt: skip
            theirs = await bob_rest.call("GET", "/api/v1/myTrades", symbol="BTC-USD")
            assert _mine(theirs) == [
                (1, True, TRADE_1["maker"], "USD"), (2, False, TRADE_2["taker"], "USD"),
            ]  # fmt: skip
            # what the router charged: ALICE paid both notionals and her two fees ...
            account = await alice.call("GET", "/api/v1/account")
            usd = next(b for b in account["balances"] if b["asset"] == "USD")
            spent = 11_100_018_500 + 22_200_037 + 3_899_993_500 + 3_899_993
            assert (usd["free"], usd["locked"]) == (_usd(10**12 - spent), "0.000000")
        # ... and the fee account holds the four fees
        fees = h.router.sequencer.accounts.balance(FEE_ACCOUNT, USD)
        assert fees == (11_100_018 + 22_200_037 + 3_899_993 + 7_799_987, 0)

    async def main() -> None:
        port = await h.start()
        assert h.gateway is not None and h.gateway.api is not None
        try:
            await asyncio.wait_for(scenario(f"http://127.0.0.1:{h.gateway.api.port}", port), 30)
        finally:
            await close_all()
            await h.stop()

    asyncio.run(main())


def _usd(units: int) -> str:
    return f"{units // 10**6}.{units % 10**6:06d}"


def test_the_openapi_document_lists_the_commission_fields(tmp_path: Path) -> None:
    cfg: RingexConfig = config("openapi", tmp_path, rest=RestConfig(port=0))
    schemas = document(cfg)["components"]["schemas"]
    for name in ("Fill", "AccountTrade"):
        assert {"commission", "commissionAsset"} <= set(schemas[name]["required"])
        assert schemas[name]["properties"]["commissionAsset"]["enum"] == ["USD"]
    assert schemas["AccountTrade"]["properties"]["commission"]["type"] == ["string", "null"]
