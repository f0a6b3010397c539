"""The rig of the hostile REST tests: an exchange with REST keys over real HTTP (the FIX
tests' harness), raw-socket exchanges, and a check that the gateway still serves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from config.edges import RestConfig
from config.schema import DatabaseConfig, RingexConfig
from procs.common.records import NewOrder
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import FUNDER, Client, Harness, close_all, config

ALICE, BOB = 601, 602
LIMIT: dict[str, Any] = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT"}


def rest_exchange(
    instance: str,
    tmp_path: Path,
    database: DatabaseConfig | None = None,
    reshape: Callable[[RingexConfig], RingexConfig] = lambda cfg: cfg,
) -> Iterator[Harness]:
    """What the tests' ``harness`` fixture yields: ALICE with dollars, BOB with bitcoin; no
    database writer unless ``database`` says; the config as ``reshape`` makes it (another
    symbol, say)."""
    rest = RestConfig(
        port=0,
        key_rate_per_s=1_000,
        key_burst=1_000,
        login_rate_per_s=100,
        login_burst=100,
        max_streams=2,
        stream_queue=16,
    )
    cfg = config(instance, tmp_path, rest=rest)
    cfg = msgspec.structs.replace(cfg, database=database or DatabaseConfig(enabled=False))
    h = Harness(reshape(cfg))
    h.add_user("ALICE", "alice-pw", ALICE)
    h.add_user("BOB", "bob-pw", BOB)
    h.fund(ALICE, usd=1_000_000 * 10**6, btc=0)
    h.fund(BOB, usd=0, btc=10 * 10**6)
    yield h
    h.close()


Scenario = Callable[[RestApi, str], Awaitable[None]]


def run(h: Harness, scenario: Scenario) -> None:
    async def main() -> None:
        await h.start()
        assert h.gateway is not None and h.gateway.api is not None
        api = h.gateway.api
        try:
            await asyncio.wait_for(scenario(api, f"http://127.0.0.1:{api.port}"), 20)
        finally:
            await close_all()  # FIX clients a scenario opened: ended in this loop, not the next
            await h.stop()

    asyncio.run(main())


async def client(url: str, user: str, password: str, scopes: str = "read,trade") -> RestClient:
    api = RestClient(url)
    await api.login(user, password, scopes)
    return api


async def push_out(url: str) -> None:
    """Two of ALICE's API orders end (IOC bids that find nothing): with ``keep_done`` 1,
    what ended before is forgotten."""
    alice = await client(url, "ALICE", "alice-pw")
    try:
        for _ in range(2):
            await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="10.00", quantity="0.10",
                timeInForce="IOC",
            )  # fmt: skip
    finally:
        await alice.close()


async def exchange(
    port: int,
    data: bytes | list[bytes],
    timeout_s: float = 5.0,
    *,
    tls: ssl.SSLContext | None = None,
    pause_s: float = 0.0,
) -> bytes:
    """Send raw bytes on a fresh connection (over TLS where ``tls`` says); everything the
    server answers until it closes (or ``timeout_s`` passes: what came so far). A list is
    written a part at a time, each drained, then ``pause_s``: a read of its own."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
    )
    out = b""
    try:
        for part in [data] if isinstance(data, bytes) else data:
            writer.write(part)
            await writer.drain()
            if pause_s:
                await asyncio.sleep(pause_s)
        async with asyncio.timeout(timeout_s):
            while chunk := await reader.read(65536):
                out += chunk
    except TimeoutError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return out


def statuses(raw: bytes) -> list[int]:
    return [int(s) for s in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw)]


async def post_json(c: RestClient, url: str, body: bytes) -> tuple[int, Any]:
    """A signed POST of an order as a JSON body (the client's own ``request`` sends forms):
    (status, decoded answer)."""
    headers = c.headers("POST", "/api/v1/order", "", body)
    headers["Content-Type"] = "application/json"
    async with c.session.post(f"{url}/api/v1/order", data=body, headers=headers) as r:
        return r.status, await r.json()


async def alive(url: str) -> None:
    """Another client is served normally."""
    async with RestClient(url) as api:
        assert await api.call("GET", "/api/v1/ping", signed=False) == {}


def request(line: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    head = b"".join(h + b"\r\n" for h in (b"Host: x", *headers))
    return line + b"\r\n" + head + b"\r\n" + body


async def until_closed(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> int | None:
    """The close code the server sent within ``timeout_s`` (other messages are skipped), or
    None when the stream stayed open that long."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            return None
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING):
            return int(msg.data)
        if msg.type is aiohttp.WSMsgType.CLOSED:
            return ws.close_code
    return None


async def stream_messages(
    ws: aiohttp.ClientWebSocketResponse, timeout_s: float
) -> list[dict[str, Any]]:
    """The stream's text messages within ``timeout_s`` (until it closes)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        out.append(json.loads(msg.data))
    return out


async def fix_user(h: Harness, comp_id: str, password: str) -> Client:
    """A FIX client of ``comp_id`` logged on to the harness's gateway."""
    assert h.gateway is not None
    fix = Client(comp_id)
    await fix.connect(h.gateway.port)
    await fix.logon(password)
    return fix


async def reports(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> list[dict[str, Any]]:
    """The stream's executionReports within ``timeout_s``, and the open orders of its
    snapshot as such (an order accepted before the subscription is in it, not reported);
    balances skipped."""
    out: list[dict[str, Any]] = []
    for event in await stream_messages(ws, timeout_s):
        if event["event"] == "executionReport":
            out.append(event["data"])
        elif event["event"] == "snapshot":
            out += event["data"]["openOrders"]
    return out


async def order_status(c: RestClient, oid: int) -> dict[str, Any]:
    """``GET /api/v1/order`` of order ``oid`` on BTC-USD."""
    return await c.call("GET", "/api/v1/order", symbol="BTC-USD", orderId=oid)  # type: ignore[no-any-return]


def bid_elsewhere(ref: int, qty: int) -> NewOrder:
    """ALICE's bid at 100.00 through gateway 0 (another gateway's client, as far as the
    REST gateway knows)."""
    return NewOrder(
        *(0, time.time_ns(), FUNDER, 1, ref, ALICE, 1, 0), side=Side.BUY, ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC, flags=0, stp=StpMode.NONE, price=10_000, qty=qty, stop_price=0,
        display_qty=0,
    )  # fmt: skip
