"""The REST API in the whole exchange (`ringex run`, real processes, the embedded PostgreSQL):
exchangeInfo's status, and a FIX session's SecurityStatus, through a halt and a resume;
history from the database writer's tables (allOrders, myTrades, klines), and after the
gateway is SIGKILLed and restarted, what its memory lost is still answered from there."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from procs.gateway.rest_client import ApiCallError, RestClient
from tests.e2e.running import ringex, running_exchange
from tests.e2e.test_pipeline import kill_and_wait
from tests.free_ports import free_port
from tests.unit.gateway.harness import Client


@pytest.fixture
def exchange(instance: str, tmp_path: Path) -> Iterator[Path]:
    rest = f"[gateways.rest]\nport = {free_port()}\n"
    with running_exchange(instance, tmp_path, rest, marketdata=True) as p:  # for exchangeInfo
        yield p


async def until(check: Any, what: str, timeout_s: float = 20.0) -> Any:
    """Poll the async ``check`` until it returns something true (the writer lags a batch)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            got = await check()
        except ApiCallError as exc:  # 503 while the writer is still creating its tables
            if exc.status != 503:
                raise
            got = None
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        await asyncio.sleep(0.2)


def test_history_comes_from_the_database(exchange: Path) -> None:
    cfg = load_profile(str(exchange))
    rest = cfg.gateways[0].rest
    assert rest is not None
    url = f"http://127.0.0.1:{rest.port}"
    ringex(exchange, "admin", "add-user", "--username", "MM", "--password", "pw",
           "--deposit", "BTC=10")  # fmt: skip
    ringex(exchange, "admin", "add-user", "--username", "TK", "--password", "pw",
           "--deposit", "USD=100000")  # fmt: skip

    async def scenario() -> None:
        async with RestClient(url) as mm, RestClient(url) as tk:
            # a FIX session follows the symbol's status (SecurityStatus, security_status.py):
            # market data's at first (no halt read since the gateway started), then pushed
            fix = Client("MM")
            await fix.connect(cfg.gateways[0].port)
            await fix.logon("pw", reset=True)
            await fix.send("e", (324, "follow"), (55, "BTC-USD"), (263, 1))
            first = await fix.expect("f", timeout=10)
            assert (first.get(325), first.get(326), first.get(58)) == (b"N", b"17", None)
            # exchangeInfo's status follows a halt and a resume (through market data)
            for command, status, fix_status in (
                ("halt", "HALT", b"2"),
                ("resume", "TRADING", b"17"),
            ):
                ringex(exchange, "admin", command, "BTC-USD")
                pushed = await fix.expect("f", timeout=10)
                assert (pushed.get(324), pushed.get(325)) == (b"follow", b"Y")
                assert pushed.get(326) == fix_status and pushed.get(60)

                async def shown(status: str = status) -> Any:
                    info = await mm.call("GET", "/api/v1/exchangeInfo", signed=False)
                    return {s["symbol"]: s["status"] for s in info["symbols"]}["BTC-USD"] == status

                await until(shown, f"exchangeInfo saying {status}")
            await fix.aclose()
            await mm.login("MM", "pw")
            await tk.login("TK", "pw")
            ask = await mm.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="SELL", type="LIMIT",
                price="100.00", quantity="1.5",
            )  # fmt: skip
            bid = await tk.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="LIMIT",
                price="100.00", quantity="1",
            )  # fmt: skip
            assert bid["status"] == "FILLED"

            async def tk_trades() -> Any:
                return await tk.call("GET", "/api/v1/myTrades", symbol="BTC-USD")

            (trade,) = await until(tk_trades, "the trade in the database")
            assert trade["orderId"] == bid["orderId"] and trade["isBuyer"] is True
            assert trade["isMaker"] is False and trade["price"].startswith("100")
            (mm_trade,) = await mm.call("GET", "/api/v1/myTrades", symbol="BTC-USD")
            assert mm_trade["isMaker"] is True and mm_trade["isBuyer"] is False
            orders = await mm.call("GET", "/api/v1/allOrders", symbol="BTC-USD")
            assert [o["orderId"] for o in orders] == [ask["orderId"]]
            assert orders[0]["status"] == "PARTIALLY_FILLED"

            async def candles() -> Any:
                return await tk.call("GET", "/api/v1/klines", symbol="BTC-USD", interval="5m")

            # the trade's 5 minutes open the list; any 5 minutes begun since are flat, 0 volume
            kline, *flat = await until(candles, "a candle in the database")
            assert kline[0] == trade["time"] // 300_000 * 300_000, (kline, trade)
            assert kline[1].startswith("100") and kline[8] == 1  # open, trades
            assert all(k[8] == 0 and float(k[5]) == 0 for k in flat), flat
            now_ms = int(time.time() * 1000)
            window: dict[str, Any] = {"startTime": now_ms - 600_000, "endTime": now_ms + 60_000}
            within = await tk.call(
                "GET", "/api/v1/klines", symbol="BTC-USD", interval="1m", **window
            )
            newest = await tk.call("GET", "/api/v1/klines", symbol="BTC-USD", interval="1m")
            # a minute that turned between the two asks adds a flat one (0 volume) to the later
            assert within and newest[: len(within)] == within, (within, newest)
            assert all(k[8] == 0 and k[1:5] == [within[-1][4]] * 4 for k in newest[len(within) :])
            assert len(await mm.call("GET", "/api/v1/allOrders", symbol="BTC-USD", **window)) == 1
            later: dict[str, Any] = {"startTime": now_ms + 60_000}
            assert await mm.call("GET", "/api/v1/allOrders", symbol="BTC-USD", **later) == []
            assert await tk.call("GET", "/api/v1/myTrades", symbol="BTC-USD", **later) == []

            # without fromId / orderId (nor startTime) the newest come, oldest first
            bids = [bid]
            for _ in range(2):  # two more trades against the ask's rest: three in all
                bids.append(await tk.call(
                    "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="LIMIT",
                    price="100.00", quantity="0.1",
                ))  # fmt: skip

            async def three() -> Any:
                got = await tk_trades()
                return got if len(got) == 3 else None

            # myTrades lists a fill before the writer has filed it (the gateway's live fills)
            ids = [t["id"] for t in await until(three, "three trades")]
            newest = await tk.call("GET", "/api/v1/myTrades", symbol="BTC-USD", limit=2)
            assert [t["id"] for t in newest] == ids[1:]
            first = await tk.call(
                "GET", "/api/v1/myTrades", symbol="BTC-USD", limit=2, fromId=ids[0]
            )
            assert [t["id"] for t in first] == ids[:2]

            async def newest_order() -> Any:
                (last,) = await tk.call("GET", "/api/v1/allOrders", symbol="BTC-USD", limit=1)
                return last["orderId"] == bids[-1]["orderId"]

            await until(newest_order, "the newest order in the database")

        # the gateway dies: its live view is gone; the database still answers
        await kill_and_wait(cfg, "gateway-gw1")
        async with RestClient(url) as mm:
            await mm.login("MM", "pw")  # ready means listening: no retry needed
            found = await mm.call("GET", "/api/v1/order", symbol="BTC-USD", orderId=ask["orderId"])
            assert found["status"] == "PARTIALLY_FILLED" and found["executedQty"].startswith("1")
            (still,) = await mm.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
            assert still["orderId"] == ask["orderId"]
            done = await mm.call(
                "DELETE", "/api/v1/order", symbol="BTC-USD", orderId=ask["orderId"]
            )
            assert done["status"] == "CANCELED"
            account = await mm.call("GET", "/api/v1/account")
            assert {b["asset"]: b["locked"] for b in account["balances"]}["BTC"].strip("0.") == ""

    asyncio.run(scenario())
