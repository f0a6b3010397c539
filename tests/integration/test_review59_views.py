"""Review 59: one order, trade, balance or candle as each view shows it, on a whole exchange
(`ringex run`: supervisor, router, matcher, two gateways with FIX and REST, the database
writer and its embedded PostgreSQL), driven by a FIX client (simplefix) and a REST client.

In the review's exploration (not repeated here: it ran 20 to 60 s) a mixed session
(partial fills, FIX replaces and REST amends racing fills, iceberg slices, stops triggering,
self-trade prevention, mass cancels, a halt and resume, DAY orders expiring at a session
end, a gateway and the database writer SIGKILLed in the middle and restarted by the
supervisor) showed every view agreeing, once quiet, on every order (FIX's last report, REST
allOrders and GET order on both gateways, the ``orders`` row), trade (``trades`` row,
myTrades, the feed's trade stream, FIX fills' Commission), balance (the router,
``balances``, REST account, the private stream's last balance event) and candle
(``candles``, REST klines, the feed's klines, a recomputation from the trades). What did
not agree is pinned here; each test failed on the code it was written against:

- an order placed through one gateway, as another gateway's private stream reports it and
  its cancel answers it there: type, time in force, stop price and iceberg qty empty, a
  pending stop "working", a stop-market buy priced at the router's cap (passes since the
  matcher's ``Accepted`` carries the order's terms);
- an order the matcher refused: its ``time`` on the private stream was the gateway's clock
  at the request, where its row (and ``GET order``) says the exchange's sequencing (passes
  since its fix, the same session's commits).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.run_files import read_status
from procs.common.topology import postgres_dir
from procs.gateway.rest_client import ApiCallError, RestClient
from shm.inspect import remove_instance
from tests.e2e.running import ringex, running_exchange
from tests.free_ports import free_port
from tests.unit.gateway.harness import Client, utc

#: the fields an order's view says of its terms, which every view must say alike
TERMS = ("type", "timeInForce", "price", "stopPrice", "icebergQty", "isWorking", "origQty")


class Exchange:
    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.cfg: RingexConfig = load_profile(str(profile))
        self.urls = [f"http://127.0.0.1:{g.rest.port}" for g in self.cfg.gateways if g.rest]
        self.fix_port = self.cfg.gateways[0].port


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    """Two gateways, each with FIX and REST; user MM (funded), who trades over FIX at gw1."""
    instance = f"t{os.getpid()}x59"  # conftest's pattern: a killed run's leftovers go
    gateways = (
        f"[gateways.rest]\nport = {free_port()}\n"
        f'[[gateways]]\nname = "gw2"\nid = 2\nport = {free_port()}\n'
        f"[gateways.rest]\nport = {free_port()}\n"
    )
    try:
        with running_exchange(instance, tmp_path_factory.mktemp("rv59"), gateways) as profile:
            ringex(profile, "admin", "add-user", "--username", "MM", "--password", "pw",
                   "--deposit", "BTC=100", "--deposit", "USD=1000000")  # fmt: skip
            yield Exchange(profile)
    finally:
        remove_instance(instance)


class Stream:
    """A private stream's messages, read in the background."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.msgs: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.msgs.append(msg.json())

    def reports(self, exec_type: str) -> dict[int, dict[str, Any]]:
        return {
            m["data"]["orderId"]: m["data"]
            for m in self.msgs
            if m["event"] == "executionReport" and m["data"]["executionType"] == exec_type
        }

    async def snapshot(self, timeout_s: float = 10.0) -> None:
        """Wait for the snapshot: events that come while it is made are folded into it."""
        deadline = time.monotonic() + timeout_s
        while not self.msgs:
            assert time.monotonic() < deadline, "no snapshot"
            await asyncio.sleep(0.02)
        assert self.msgs[0]["event"] == "snapshot", self.msgs[0]

    async def until(self, exec_type: str, count: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.reports(exec_type)) < count:
            assert time.monotonic() < deadline, f"{count} {exec_type} reports: {self.msgs}"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.ws.close()
        await self.task


async def fix_order(client: Client, ref: str, *pairs: tuple[int, object]) -> None:
    await client.send("D", (11, ref), (55, "BTC-USD"), (60, utc()), *pairs)


async def filed(api: RestClient, order_id: int, timeout_s: float = 10.0) -> dict[str, Any]:
    """``GET order``, once the gateway's live view or the database writer's row has the
    order ("order does not exist", a 400, until then)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return dict(await api.call("GET", "/api/v1/order", symbol="BTC-USD", orderId=order_id))
        except ApiCallError as exc:
            assert exc.status == 400 and time.monotonic() < deadline, exc
        await asyncio.sleep(0.1)


async def filed_row(cfg: RingexConfig, order_id: int, timeout_s: float = 10.0) -> dict[str, Any]:
    """The ``orders`` row of ``order_id`` once the writer has filed it: its status and its
    times in ms as the REST views read them (a refused order's: no view answers it)."""
    dsn = EmbeddedPostgres(postgres_dir(cfg)).dsn
    query = (
        "SELECT status, floor(extract(epoch from created) * 1000)::bigint, "
        "floor(extract(epoch from updated) * 1000)::bigint FROM orders WHERE id = %s"
    )
    deadline = time.monotonic() + timeout_s
    while True:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            found = await (await conn.execute(query, (order_id,))).fetchone()
        if found is not None:
            return dict(zip(("status", "time", "updateTime"), found, strict=True))
        assert time.monotonic() < deadline, f"order {order_id} not filed in {timeout_s} s"
        await asyncio.sleep(0.1)


def terms(view: dict[str, Any]) -> dict[str, Any]:
    return {k: view[k] for k in TERMS}


def test_an_order_placed_at_another_gateway_is_reported_with_its_terms(
    exchange: Exchange,
) -> None:
    """MM uses the REST API of gw2 (its private stream is open there, so gw2 follows MM's
    account) and places over FIX at gw1 a stop-market buy without a price (stop 104), a
    stop-limit buy (stop 105, limit 106) and a DAY iceberg sell (1.0 showing 0.2).

    Should agree: gw2's stream ``executionReport`` NEW of each, gw2's answer to its
    ``DELETE order``, and ``GET order`` (gw1's live view, gw2's completed one, the
    ``orders`` row): type STOP_LOSS / STOP_LOSS_LIMIT / LIMIT, timeInForce GTC / GTC / DAY,
    stopPrice 104.00 / 105.00 / 0.00, icebergQty 0 / 0 / 0.2000, isWorking false for the
    waiting stops, price 0.00 for the stop-market buy (README: "a market or stop-market buy
    sent without a price shows price 0 in both", the router's cap is not the client's).

    Differs: gw2's stream reports each NEW with type "" and timeInForce "", stopPrice 0.00,
    icebergQty 0.0000, isWorking true for both waiting stops, and price 109.20 for the
    stop-market buy (the cap, 5% above its stop); gw2's ``DELETE order`` answer likewise,
    and so does a stream's snapshot made before the writer has filed the rows.

    Cause: ``RestOrders._accepted`` (procs/gateway/rest_orders.py) builds the ``LiveOrder``
    of an order placed elsewhere from the ``Accepted`` record (side, price, qty only) and
    ``_report``s it at once; ``LiveOrder.complete`` fills the terms in from the database row
    only when ``GET order``, ``allOrders``, ``openOrders`` or a stream snapshot read it
    (completing_rows.py), never before a stream event or a cancel's answer
    (``_done`` answers ``request.outcome.order`` as it is).

    Fix: carry the terms in ``Accepted`` (ord_type, tif, flags with ``CAPPED``, stop price,
    display qty: the matcher has the ``NewOrder``), so every gateway's view is whole from
    the first event; or complete a partial order from its row (bounded wait, as
    ``query_order`` does) before answering a cancel or amend, and hold its stream reports
    until it is complete.
    """

    async def scenario() -> None:
        gw1, gw2 = exchange.urls
        async with RestClient(gw2) as api2, RestClient(gw1) as api1:
            await api2.login("MM", "pw")
            await api1.login("MM", "pw")
            stream = Stream(await api2.stream())
            await stream.snapshot()
            mm = Client("MM")
            await mm.connect(exchange.fix_port)
            try:
                await mm.logon("pw", reset=True)
                await fix_order(mm, "stop-mkt", (54, "1"), (38, "0.1000"), (40, "3"),
                                (99, "104.00"), (59, "1"))  # fmt: skip
                await fix_order(mm, "stop-lmt", (54, "1"), (38, "0.1000"), (40, "4"),
                                (44, "106.00"), (99, "105.00"), (59, "1"))  # fmt: skip
                await fix_order(mm, "iceberg", (54, "2"), (38, "1.0000"), (40, "2"),
                                (44, "101.00"), (111, "0.2000"), (59, "0"))  # fmt: skip
                acks = [await mm.expect("8", timeout=10) for _ in range(3)]
                ids = {m.get(11).decode(): int(m.get(37)) for m in acks}
                await stream.until("NEW", 3)
                new = stream.reports("NEW")
                placed = {ref: terms(await filed(api1, oid)) for ref, oid in ids.items()}
                assert placed["stop-mkt"]["price"] == "0.00"  # as the row, gw1 and FIX say
                reported = {ref: terms(new[oid]) for ref, oid in ids.items()}
                cancelled = {}
                for ref, oid in ids.items():
                    answer = await api2.call("DELETE", "/api/v1/order", symbol="BTC-USD",
                                             orderId=oid)  # fmt: skip
                    cancelled[ref] = {**terms(answer), "isWorking": placed[ref]["isWorking"]}
            finally:
                await mm.aclose()
                await stream.close()
        assert {"stream NEW": reported, "DELETE answer": cancelled} == {
            "stream NEW": placed,
            "DELETE answer": placed,
        }

    asyncio.run(scenario())


def pid_of(cfg: RingexConfig, name: str) -> int:
    status = read_status(cfg)
    assert status is not None
    return int(next(p["pid"] for p in status["processes"] if p["name"] == name))


def test_a_refused_orders_time_is_the_exchanges_on_the_stream_too(exchange: Exchange) -> None:
    """BTC-USD halted; MM sends a limit buy through the REST API of gw1 while the router
    stalls for 0.3 s (a slow fsync, a pause; here SIGSTOP and SIGCONT), so the request's
    arrival and its sequencing are 0.3 s apart; the matcher refuses it, SYMBOL_HALTED, and
    the writer files the refused order (status REJECTED, reject_code 3001).

    Should agree (README, the REST API: "An order's time is the exchange's (its new order's
    sequencing), live and in the history alike"): the private stream's ``executionReport``
    REJECTED and ``GET order`` of the same orderId (the ``orders`` row), on ``time`` and
    ``updateTime``.

    Differs: the stream says the gateway's clock when the request came, 0.3 s before the
    row's ``created`` / ``updated`` (the report's own ``eventTime`` is the exchange's).

    Cause: ``RestOrders.new_order`` (procs/gateway/rest_orders.py) stamps the ``LiveOrder``
    with the gateway's ``now_ns``; ``_accepted`` replaces it with ``accepted.ts_ns``, but
    ``_rejected`` reports the order with the request's time.

    Fix: in ``_rejected``, for a new order, set ``time_ms`` and ``update_ms`` to
    ``ms(rejected.ts_ns)`` before ``_report`` (a router's refusal, which is not journaled,
    carries the router's stamp as well, so the answer is the exchange's time either way).
    """
    ringex(exchange.profile, "admin", "halt", "BTC-USD")
    router = pid_of(exchange.cfg, "router")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with RestClient(exchange.urls[0]) as api:
            await api.login("MM", "pw")
            stream = Stream(await api.stream())
            try:
                await stream.snapshot()
                asked_ms = time.time_ns() // 1_000_000
                os.kill(router, signal.SIGSTOP)
                try:
                    sent = asyncio.create_task(api.call(
                        "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="LIMIT",
                        timeInForce="GTC", price="96.00", quantity="0.1000",
                    ))  # fmt: skip
                    await asyncio.sleep(0.3)
                finally:
                    os.kill(router, signal.SIGCONT)
                with pytest.raises(ApiCallError, match="SYMBOL_HALTED"):
                    await sent
                await stream.until("REJECTED", 1)
                (report,) = stream.reports("REJECTED").values()
                row = await filed_row(exchange.cfg, report["orderId"])
            finally:
                await stream.close()
        assert row["time"] - asked_ms >= 250  # sequenced after the stall
        return report, row

    try:
        report, row = asyncio.run(scenario())
    finally:
        ringex(exchange.profile, "admin", "resume", "BTC-USD")
    assert row["status"] == 8  # REJECTED: filed, though no REST view finds it
    assert (report["time"], report["updateTime"]) == (row["time"], row["updateTime"])
