"""Bugs an eighth review of the REST API found (``rest_rig.py``: real HTTP in front of real
rings, the database tests' private PostgreSQL behind the gateway's history, the database
writer run by hand: ``write_all`` files the journal up to its end, so a trade made after it
is one the writer has not filed yet). Each test failed until its bug was fixed.

- ``myTrades`` read only PostgreSQL: a fill the private stream and the order's status already
  showed was missing until the writer's next batch. It now merges the fills the gateway saw
  live that the database does not hold yet, once each, under the same parameters and with the
  same fields as the database's rows, commission included.

BTC-USD: prices 2 decimals, sizes 2, USD 6; fees 10 bps maker, 20 bps taker (the harness's).
ALICE's bid rests, BOB's sells take it: 30000.00 x 0.10 is 3000 USD, maker 3.000000 and taker
6.000000; x 0.05, 1.500000 and 3.000000.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from procs.common.records import Trade
from procs.common.types import Side
from procs.gateway.commission import Commissions
from procs.gateway.live_trades import MAX_LIVE_FILLS, LiveTrades
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import Harness, config
from tests.unit.gateway.rest_rig import ALICE, BOB, LIMIT, run

harness = unfiled_rig.harness
PRICE, SELL = unfiled_rig.PRICE, unfiled_rig.SELL


async def _sell(bob: RestClient, qty: str) -> dict[str, Any]:
    answer: dict[str, Any] = await bob.call(
        "POST", "/api/v1/order", **SELL, price=PRICE, quantity=qty,
        timeInForce="IOC",
    )  # fmt: skip
    assert answer["status"] == "FILLED", answer
    return answer


async def _trades(c: RestClient, **params: Any) -> list[dict[str, Any]]:
    trades: list[dict[str, Any]] = await c.call(
        "GET", "/api/v1/myTrades", symbol="BTC-USD", **params
    )
    return trades


def _seen(trades: list[dict[str, Any]]) -> list[tuple[int, bool, str, str | None]]:
    return [(t["id"], t["isMaker"], t["qty"], t["commission"]) for t in trades]


def test_my_trades_lists_a_fill_the_writer_has_not_filed(harness: Harness) -> None:
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)  # the schema, the accounts; no trade yet
        async with unfiled_rig.users(url) as (alice, bob):
            bid = await alice.call(
                "POST", "/api/v1/order", **LIMIT, price=PRICE, quantity="0.30", timeInForce="GTC"
            )
            first, second = await _sell(bob, "0.10"), await _sell(bob, "0.05")
            # the order's status already shows both fills ...
            status = await alice.call(
                "GET", "/api/v1/order", symbol="BTC-USD", orderId=bid["orderId"]
            )
            assert status["executedQty"] == "0.15"
            # ... and so does myTrades, on both sides, before the writer filed either
            mine = await _trades(alice)
            assert _seen(mine) == [(1, True, "0.10", "3.000000"), (2, True, "0.05", "1.500000")]
            assert mine[0] == {
                "symbol": "BTC-USD", "id": 1, "orderId": bid["orderId"], "price": PRICE,
                "qty": "0.10", "quoteQty": "3000.0000", "time": mine[0]["time"], "isBuyer": True,
                "isMaker": True, "commission": "3.000000", "commissionAsset": "USD",
            }  # fmt: skip
            theirs = await _trades(bob)
            assert _seen(theirs) == [(1, False, "0.10", "6.000000"), (2, False, "0.05", "3.000000")]
            assert [t["orderId"] for t in theirs] == [first["orderId"], second["orderId"]]
            assert not any(t["isBuyer"] for t in theirs)
            # the parameters hold as for the database's rows: the newest, from an id, a time span
            assert _seen(await _trades(alice, limit=1)) == [(2, True, "0.05", "1.500000")]
            assert _seen(await _trades(alice, fromId=1, limit=1)) == [(1, True, "0.10", "3.000000")]
            assert _seen(await _trades(alice, fromId=2)) == [(2, True, "0.05", "1.500000")]
            last = mine[-1]["time"]
            assert await _trades(alice, startTime=last + 1) == []
            assert await _trades(alice, endTime=mine[0]["time"] - 1) == []
            assert _seen(await _trades(alice, startTime=mine[0]["time"], endTime=last)) == _seen(
                mine
            )
            # orderId: only that order's fills (an order of another account's has none here)
            assert await _trades(bob, orderId=second["orderId"]) == theirs[1:]
            assert await _trades(alice, orderId=bid["orderId"]) == mine
            assert await _trades(alice, orderId=first["orderId"]) == []
            # once filed, the database's rows say the same, field for field (fees: the journal's)
            await unfiled_rig.file_all(h)
            assert await _trades(alice) == mine
            assert await _trades(bob) == theirs
            assert await _trades(bob, orderId=second["orderId"]) == theirs[1:]
            assert await _trades(alice, orderId=first["orderId"]) == []

    run(h, scenario)


def test_my_trades_lists_a_fill_both_the_database_and_the_gateway_hold_once(
    harness: Harness,
) -> None:
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            await alice.call(
                "POST", "/api/v1/order", **LIMIT, price=PRICE, quantity="0.30", timeInForce="GTC"
            )
            await _sell(bob, "0.10")
            live = await _trades(alice)
            assert _seen(live) == [(1, True, "0.10", "3.000000")]
            # the writer files it: the database has it and the gateway still holds its live copy
            await unfiled_rig.file_all(h)
            assert len(api.core.trades) == 2  # ALICE's side and BOB's
            assert await _trades(alice) == live  # once
            assert len(api.core.trades) == 0  # the database has them: the live copies go
            # a second fill the writer has not filed: the database's row, then the live one
            await _sell(bob, "0.05")
            both = await _trades(alice)
            assert _seen(both) == [(1, True, "0.10", "3.000000"), (2, True, "0.05", "1.500000")]
            assert _seen(await _trades(alice, limit=1)) == [(2, True, "0.05", "1.500000")]
            assert _seen(await _trades(alice, fromId=1, limit=1)) == [(1, True, "0.10", "3.000000")]
            assert _seen(await _trades(bob)) == [
                (1, False, "0.10", "6.000000"), (2, False, "0.05", "3.000000"),
            ]  # fmt: skip
            await unfiled_rig.file_all(h)
            assert await _trades(alice) == both

    run(h, scenario)


def test_a_self_trade_is_two_fills_of_one_trade_id(harness: Harness) -> None:
    """The dedup key is the trade id and the side: both sides of a self-trade stay."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            await bob.call(
                "POST", "/api/v1/order", **SELL, price=PRICE, quantity="0.10",
                timeInForce="GTC",
            )  # fmt: skip
            await alice.call("POST", "/api/v1/order", **LIMIT, price=PRICE, quantity="0.10")
            await unfiled_rig.file_all(h)  # trade 1 filed; ALICE now holds bitcoin
            await alice.call(
                "POST", "/api/v1/order", **SELL, price=PRICE, quantity="0.05",
                timeInForce="GTC",
            )  # fmt: skip
            await alice.call("POST", "/api/v1/order", **LIMIT, price=PRICE, quantity="0.05")
            live = await _trades(alice)
            assert [(t["id"], t["isMaker"], t["isBuyer"]) for t in live] == [
                (1, False, True), (2, False, True), (2, True, False),
            ]  # fmt: skip
            await unfiled_rig.file_all(h)
            assert await _trades(alice) == live

    run(h, scenario)


def _trade(trade_id: int, seq: int) -> Trade:
    return Trade(
        seq, 10**18 + trade_id, trade_id, 1, 3_000_000, 10, Side.BUY,
        trade_id * 2, ALICE, 1, 0, trade_id * 2 + 1, BOB, 1, 0,
    )  # fmt: skip


def test_the_live_fills_kept_are_bounded_oldest_first(tmp_path: Path) -> None:
    """``MAX_LIVE_FILLS`` bounds the memory (here a limit of 3): past it the oldest go; those
    at or below the writer's checkpoint go too."""
    assert MAX_LIVE_FILLS > 0
    cfg = config("bound", tmp_path)
    live = LiveTrades(Commissions(cfg.symbols, cfg.assets), limit=3)
    for n in range(1, 6):
        live.add(_trade(n, seq=100 + n), ALICE, n * 2, True)
        live.add(_trade(n, seq=100 + n), ALICE, n * 2, True)  # seen twice, kept once
    assert len(live) == 3
    sym = cfg.symbols[0]
    shown = live.merged([], ALICE, sym, from_id=None, start_ms=None, end_ms=None, limit=10)
    assert [t["id"] for t in shown] == [3, 4, 5]
    live.forget_filed(104)  # the writer's checkpoint: trades 3 and 4 are in the database
    assert len(live) == 1
