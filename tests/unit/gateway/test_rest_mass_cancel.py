"""``DELETE /api/v1/openOrders`` over real HTTP, in front of real rings, an in-process router
and matcher: every open order of the key's account ends in one command, and the answer lists
them as they ended; another account's orders stay. And ``OrderEnds``, the core's wait for them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.gateway.order_ends import OrderEnds
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import ALICE, LIMIT, client, rest_exchange, run

PATH = "/api/v1/openOrders"


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def _bids(alice: Any, prices: list[str]) -> list[int]:
    return [
        (await alice.call("POST", "/api/v1/order", **LIMIT, price=p, quantity="0.10"))["orderId"]
        for p in prices
    ]


def test_cancels_every_open_order_of_the_account_and_lists_them(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            before = await alice.call("GET", "/api/v1/account")
            ids = await _bids(alice, ["29000.00", "29500.00", "30000.00"])
            ask = await bob.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="SELL", type="LIMIT",
                price="31000.00", quantity="0.10",
            )  # fmt: skip
            answer = await alice.call("DELETE", PATH, symbol="BTC-USD")
            assert sorted(o["orderId"] for o in answer) == sorted(ids)
            assert {o["status"] for o in answer} == {"CANCELED"}
            assert await alice.call("GET", PATH) == []
            # the other account's order stays, and alice's funds are free again
            assert (await bob.call("GET", PATH))[0]["orderId"] == ask["orderId"]
            after = await alice.call("GET", "/api/v1/account")
            usd = [[b for b in a["balances"] if b["asset"] == "USD"] for a in (before, after)]
            assert usd[0] == usd[1] and usd[1][0]["locked"] == "0.000000"
            assert len(api.core.ends) == 0  # nothing left waiting
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_without_a_symbol_every_symbol_and_a_part_filled_order(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            (bid,) = await _bids(alice, ["30000.00"])
            await bob.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="SELL", type="LIMIT",
                price="30000.00", quantity="0.04",
            )  # fmt: skip
            (order,) = await alice.call("DELETE", PATH)
            assert order["orderId"] == bid and order["status"] == "CANCELED"
            assert order["executedQty"] == "0.04" and order["origQty"] == "0.10"
            assert await alice.call("DELETE", PATH) == []  # nothing open: nothing listed
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_every_cancel_answer_names_the_orders_client_id_as_binance_does(
    harness: Harness,
) -> None:
    """A cancel's answer (one, a batch, every open order) carries the order's client order
    id also as ``origClientOrderId``, where Binance clients (ccxt, python-binance) read it;
    a status query's does not."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            for n in range(3):
                await alice.call(
                    "POST", "/api/v1/order", **LIMIT, price="29000.00", quantity="0.10",
                    newClientOrderId=f"mine-{n}",
                )  # fmt: skip
            shown = await alice.call("GET", "/api/v1/order", symbol="BTC-USD",
                                     origClientOrderId="mine-0")  # fmt: skip
            assert "origClientOrderId" not in shown, shown
            one = await alice.call("DELETE", "/api/v1/order", symbol="BTC-USD",
                                   orderId=shown["orderId"])  # fmt: skip
            batch = await alice.call("DELETE", "/api/v1/batchOrders", symbol="BTC-USD",
                                     origClientOrderIdList='["mine-1"]')  # fmt: skip
            every = await alice.call("DELETE", PATH, symbol="BTC-USD")
            for answer, n in ((one, 0), (*batch, 1), (*every, 2)):
                assert answer["status"] == "CANCELED", answer
                assert answer["origClientOrderId"] == answer["clientOrderId"] == f"mine-{n}"
        finally:
            await alice.close()

    run(harness, scenario)


def test_refusals(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        reader = await client(url, "ALICE", "alice-pw", scopes="read")
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await _bids(alice, ["29000.00"])
            status, body = await reader.request("DELETE", PATH, symbol="BTC-USD")
            assert status == 403 and "'trade'" in body["msg"]
            status, body = await alice.request("DELETE", PATH, symbol="DOGE-USD")
            assert status == 400 and body["code"] == -1121 and "'DOGE-USD'" in body["msg"]
            status, body = await alice.request("DELETE", PATH, symbol="BTC-USD", side="BUY")
            assert status == 400 and "side" in body["msg"]
            assert len(await alice.call("GET", PATH)) == 1  # none of those cancelled it
        finally:
            await reader.close()
            await alice.close()

    run(harness, scenario)


def test_the_private_stream_reports_each_cancel(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            ids = await _bids(alice, ["29000.00", "29500.00"])
            ws = await alice.stream()
            assert json.loads((await ws.receive(timeout=5)).data)["event"] == "snapshot"
            await alice.call("DELETE", PATH, symbol="BTC-USD")
            seen: dict[int, str] = {}
            while len(seen) < len(ids):
                msg = json.loads((await ws.receive(timeout=5)).data)
                if msg["event"] == "executionReport":
                    seen[msg["data"]["orderId"]] = msg["data"]["status"]
            assert seen == {oid: "CANCELED" for oid in ids}
            await ws.close()
        finally:
            await alice.close()

    run(harness, scenario)


# -- OrderEnds ----------------------------------------------------------------------------------


def test_order_ends_answers_once_every_order_ended() -> None:
    ends = OrderEnds()
    assert not ends.watch(1, [])  # nothing to wait for: not taken
    assert ends.watch(2, [10, 11])
    assert ends.watch(3, [11])
    ends.finished(11)
    assert ends.take() == [3]
    ends.finished(99)  # nobody waits for it
    ends.finished(10)
    assert ends.take() == [2]
    assert ends.take() == [] and len(ends) == 0


def test_order_ends_abandon_and_reuse() -> None:
    ends = OrderEnds()
    ends.watch(1, [10])
    with pytest.raises(ValueError, match="ref 1 already waits for 1 orders"):
        ends.watch(1, [12])
    ends.watch(2, [10])
    ends.abandon(1)
    ends.abandon(7)  # never watched
    ends.finished(10)
    assert ends.take() == [2] and len(ends) == 0
    assert ALICE  # the rig's account, used above
