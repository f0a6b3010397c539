"""Hostile review 216: a failover as the REST API, the private stream and market data see it.

A sync primary and its standby under ``ringex run`` (REST on gw1, market data and the
embedded database on both), orders placed and traded over REST on the primary, then
``failover.py promote``. The promoted instance's views are compared with what the primary
answered just before: the same key signs, an order's GET, openOrders, allOrders, myTrades,
account; the private stream's snapshot; the feed's depth, tape, 24h ticker and candles."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.topology import gateway_root, postgres_dir
from procs.gateway.rest_client import ApiCallError, RestClient
from tests.e2e.test_standby import failover, primary_and_standby, ringex, wait_running
from tests.e2e.test_standby_sync import write_profile
from tests.free_ports import free_port

SYMBOL = "BTC-USD"
SHIPPED = ("users.json", "apikeys.log", "gw1/orders.log", "gw1/api_ids.log")


@dataclass
class Pair:
    primary: Path
    standby: Path
    rest_p: int
    rest_s: int
    md_p: int
    md_s: int


@pytest.fixture
def pair(instance: str, tmp_path: Path) -> Iterator[Pair]:
    port = free_port()
    rest_p, rest_s, md_p, md_s = free_port(), free_port(), free_port(), free_port()

    def gateway(rest: int) -> str:
        fix = f'[[gateways]]\nname = "gw1"\nid = 1\nport = {free_port()}\n'
        return fix + f"[gateways.rest]\nport = {rest}\n"

    primary = write_profile(
        tmp_path / "primary.toml", instance + "p", tmp_path / "p",
        f'[replication]\nlisten_port = {port}\nmode = "sync"\n' + gateway(rest_p),
        marketdata=f"port = {md_p}", database="enabled = true",
    )  # fmt: skip
    standby = write_profile(
        tmp_path / "standby.toml", instance + "s", tmp_path / "s",
        f'[replication]\nprimary = "127.0.0.1:{port}"\n' + gateway(rest_s),
        marketdata=f"port = {md_s}", database="enabled = true",
    )  # fmt: skip
    try:
        with primary_and_standby(instance, primary, standby):
            yield Pair(primary, standby, rest_p, rest_s, md_p, md_s)
    finally:
        for path in (primary, standby):
            EmbeddedPostgres(postgres_dir(load_profile(str(path)))).destroy()


def shipped(pair: Pair) -> bool:
    p, s = (gateway_root(load_profile(str(path))) for path in (pair.primary, pair.standby))
    return all(
        (s / name).exists() and (s / name).read_bytes() == (p / name).read_bytes()
        for name in SHIPPED
    )


def feed(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{path}", timeout=10) as answer:
        return json.load(answer)


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            last = await check()
            if last:
                return last
        except ApiCallError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s (last: {last})")
        await asyncio.sleep(0.2)


async def views(c: RestClient) -> dict[str, Any]:
    """What a client reads of its account over REST."""
    return {
        "open": await c.call("GET", "/api/v1/openOrders", symbol=SYMBOL),
        "all": await c.call("GET", "/api/v1/allOrders", symbol=SYMBOL),
        "trades": await c.call("GET", "/api/v1/myTrades", symbol=SYMBOL),
        "account": (await c.call("GET", "/api/v1/account"))["balances"],
    }


def market(port: int) -> dict[str, Any]:
    """The feed's views of the symbol, less what the wall clock moves (the ticker's window
    and time, a candle's close)."""
    ticker = feed(port, f"ticker?symbol={SYMBOL}")
    candles = feed(port, f"klines?symbol={SYMBOL}&interval=1m")
    first = next(({**c, "x": None} for c in candles if c["f"] == 1), None)  # trade 1's
    return {
        "depth": feed(port, f"depth?symbol={SYMBOL}"),
        "trades": feed(port, f"trades?symbol={SYMBOL}"),
        "ticker": {k: v for k, v in ticker.items() if k not in ("E", "O", "C")},
        "candle": first,
    }


async def place(c: RestClient, cid: str, side: str, qty: str, price: str) -> Any:
    return await c.call("POST", "/api/v1/order", symbol=SYMBOL, side=side, type="LIMIT",
                        price=price, quantity=qty, newClientOrderId=cid)  # fmt: skip


async def named(c: RestClient, cid: str) -> Any:
    return await c.call("GET", "/api/v1/order", symbol=SYMBOL, origClientOrderId=cid)


def test_the_promoted_instance_goes_on_with_the_primarys_rest_stream_and_market_views(
    pair: Pair,
) -> None:
    """Keys made on the primary sign on the promoted gateway; an order's GET (by its
    clientOrderId, a cancelled one included), openOrders, allOrders, myTrades and account
    answer as the primary did; an open order's clientOrderId is still refused as a
    duplicate; the private stream's snapshot holds the open orders and balances; the feed's
    depth, tape, ticker and candles are the primary's. Then a trade on the promoted instance
    against an order half filled on the primary: its counts go on (cummulativeQuoteQty from
    the primary's fill on), trade ids and the depth's update ids continue, and the 24h
    ticker and the candle open at the failover add to what the primary had."""
    for user, deposits in (("MM", ("BTC=10", "USD=100000")), ("TK", ("USD=100000",))):
        args = [f"--deposit={d}" for d in deposits]
        added = ringex("admin", "add-user", "--username", user, "--password", "pw", *args,
                       "--config", str(pair.primary))  # fmt: skip
        assert added.returncode == 0, added.stdout + added.stderr
    url_p, url_s = f"http://127.0.0.1:{pair.rest_p}", f"http://127.0.0.1:{pair.rest_s}"
    before: dict[str, Any] = {}
    keys: dict[str, tuple[str, str]] = {}

    async def on_primary() -> None:
        async with RestClient(url_p) as mm, RestClient(url_p) as tk:
            await mm.login("MM", "pw")
            await tk.login("TK", "pw")
            await place(mm, "ask1", "SELL", "1.00", "100.00")
            await place(mm, "ask2", "SELL", "2.00", "101.00")
            await place(tk, "bid1", "BUY", "0.50", "100.00")  # ask1 half filled
            await place(mm, "gone", "SELL", "0.10", "105.00")
            await mm.call("DELETE", "/api/v1/order", symbol=SYMBOL, origClientOrderId="gone")
            before["mm"], before["tk"] = await views(mm), await views(tk)
            before["ask1"] = await named(mm, "ask1")
            before["gone"] = await until(lambda: named(mm, "gone"), "the cancelled order")
            keys["mm"], keys["tk"] = (mm.api_key, mm.secret), (tk.api_key, tk.secret)

    asyncio.run(on_primary())
    before["market"] = market(pair.md_p)
    deadline = time.monotonic() + 20
    while not shipped(pair):
        assert time.monotonic() < deadline, "the gateway's files did not reach the standby"
        time.sleep(0.05)
    promote = failover("promote", pair.primary, pair.standby)
    assert promote.returncode == 0, promote.stdout + promote.stderr
    wait_running(pair.standby.with_suffix(".promoted.toml"))
    deadline, seen = time.monotonic() + 30, None
    while seen != before["market"]:  # (its listener may bind just after "running")
        assert time.monotonic() < deadline, f"the promoted feed shows {seen}, not {before}"
        try:
            seen = market(pair.md_s)
        except OSError as exc:
            seen = {"unreachable": str(exc)}
        time.sleep(0.1)

    async def on_promoted() -> None:
        async with RestClient(url_s) as mm, RestClient(url_s) as tk:
            (mm.api_key, mm.secret), (tk.api_key, tk.secret) = keys["mm"], keys["tk"]
            assert await until(lambda: named(mm, "ask1"), "ask1") == before["ask1"]
            assert await until(lambda: named(mm, "gone"), "gone") == before["gone"]

            async def same() -> bool:
                return (await views(mm), await views(tk)) == (before["mm"], before["tk"])

            await until(same, "the promoted views equal to the primary's")
            status, dup = await mm.request("POST", "/api/v1/order", symbol=SYMBOL, side="SELL",
                                           type="LIMIT", price="110.00", quantity="0.10",
                                           newClientOrderId="ask2")  # fmt: skip
            assert (status, dup["code"]) == (400, -2010) and "ask2" in dup["msg"], dup
            ws = await mm.stream()
            snapshot = json.loads((await ws.receive(timeout=10)).data)
            assert snapshot["event"] == "snapshot", snapshot
            assert snapshot["data"]["openOrders"] == before["mm"]["open"]
            assert snapshot["data"]["balances"] == before["mm"]["account"]
            bought = await place(tk, "bid2", "BUY", "0.70", "101.00")
            assert [f["tradeId"] for f in bought["fills"]] == [2, 3], bought
            reports: dict[str, Any] = {}
            while len(reports) < 2:
                event = json.loads((await ws.receive(timeout=10)).data)
                if event["event"] == "executionReport":
                    reports[event["data"]["clientOrderId"]] = event["data"]
            await ws.close()
            for cid, state, filled, quote in (
                ("ask1", "FILLED", "1.0000", "100.000000"),
                ("ask2", "PARTIALLY_FILLED", "0.2000", "20.200000"),
            ):
                got = await named(mm, cid)
                shown = (got["status"], got["executedQty"], got["cummulativeQuoteQty"])
                assert shown == (state, filled, quote), got
                report = reports[cid]
                assert (report["status"], report["executedQty"]) == (state, filled), report
                assert report["cummulativeQuoteQty"] == quote, report

            async def filed() -> bool:
                trades = await mm.call("GET", "/api/v1/myTrades", symbol=SYMBOL)
                return [t["id"] for t in trades] == [1, 2, 3]

            await until(filed, "myTrades with the fills on both sides of the failover")

    asyncio.run(on_promoted())
    after = market(pair.md_s)
    assert [t["t"] for t in after["trades"]] == [1, 2, 3]
    assert after["depth"]["lastUpdateId"] > before["market"]["depth"]["lastUpdateId"]
    assert after["depth"]["asks"] == [["101.00", "1.8000"]] and after["depth"]["bids"] == []
    ticker = after["ticker"]
    assert (ticker["o"], ticker["h"], ticker["l"], ticker["c"]) == (
        "100.00", "101.00", "100.00", "101.00",
    )  # fmt: skip
    assert (ticker["v"], ticker["q"], ticker["n"], ticker["F"], ticker["L"]) == (
        "1.2000", "120.200000", 3, 1, 3,
    )  # fmt: skip
    # the candle open at the failover (it held trade 1) goes on: it and those after it hold
    # every trade once, whichever minute the later ones fell in
    candles = feed(pair.md_s, f"klines?symbol={SYMBOL}&interval=1m")
    first = next(k for k, c in enumerate(candles) if c["f"] == 1)
    assert candles[first]["t"] == before["market"]["candle"]["t"], candles
    tail = candles[first:]
    assert sum(c["n"] for c in tail) == 3 and max(c["L"] for c in tail) == 3, candles
    assert sum(int(c["v"].replace(".", "")) for c in tail) == 12000, candles
