"""Bugs a fifth hostile review of cross-component consistency found: the same order or trade
told differently by the FIX execution reports, the REST API and its private stream, the
database writer's rows and the router's books, or told differently by one component before
and after a restart of it. Each test fails until its bug is fixed.

Rigs: ``tests/unit/gateway/harness.py`` / ``rest_rig.py`` (a gateway over real TCP and HTTP in
front of real rings, an in-process router and matcher), the database writer following that
router's journal into the database tests' private PostgreSQL (``tests/unit/conftest.py``)
and read back through ``procs.gateway.history``, and a market-data process.

(Checked and found consistent, so not filed: over 50 random command streams of new orders
of every type, cancels, replaces, mass cancels and end of session, the FIX order entry's
orders, the REST core's and the database writer's rows agree on every order's status, size,
filled, leaves and limit price.)"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from config.edges import MarketDataConfig
from config.schema import MatcherConfig, RingConfig, RingexConfig, SymbolConfig
from procs.common.record_codec import RecordCodec
from procs.common.topology import MARKETDATA, matcher_output
from procs.dbwriter.writer import DbWriter, WriterOptions
from procs.gateway.history import History, order_json
from procs.gateway.rest_client import RestClient
from procs.marketdata.main import MarketDataProcess
from procs.router.main import RouterShell
from shm import Ring
from tests.unit.gateway.harness import Client, Harness, close_all, settled, utc
from tests.unit.gateway.rest_rig import ALICE, LIMIT, client, rest_exchange, stream_messages


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE (601) with dollars, BOB (602) with bitcoin; REST on, databases off."""
    yield from rest_exchange(instance, tmp_path)


def restart_scenario(h: Harness, before: Any, after: Any) -> None:
    """``before(url)`` against a running gateway, then a clean gateway restart (the router,
    matcher and rings stay up, as when the supervisor restarts one crashed gateway), then
    ``after(url, state)`` against the new gateway with what ``before`` returned."""

    async def main() -> None:
        await h.start()
        try:
            assert h.gateway is not None and h.gateway.api is not None
            state = await asyncio.wait_for(before(f"http://127.0.0.1:{h.gateway.api.port}"), 20)
            await h.stop()
            await h.start()
            assert h.gateway is not None and h.gateway.api is not None
            url = f"http://127.0.0.1:{h.gateway.api.port}"
            await asyncio.wait_for(after(url, state), 20)
        finally:
            await close_all()
            await h.stop()

    asyncio.run(main())


def with_history(h: Harness, database: str, scenario: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``scenario(url)`` against the exchange, stop it, let the database writer follow the
    router's journal to its end, and return what the scenario returned with ALICE's orders
    as the history answers them (``History.orders`` + ``order_json``: what ``allOrders``,
    ``openOrders`` and ``GET order`` show for an order the gateway no longer follows, after
    its restart or once it is past the ``keep_done`` it remembers)."""

    async def live() -> Any:
        await h.start()
        try:
            assert h.gateway is not None and h.gateway.api is not None
            url = f"http://127.0.0.1:{h.gateway.api.port}"
            return await asyncio.wait_for(scenario(url), 20)
        finally:
            await close_all()
            await h.stop()

    answers = asyncio.run(live())
    writer = DbWriter(h.cfg, database, WriterOptions(batch_rows=100, batch_ms=10))
    writer.run(to_end=True)
    writer.close()

    async def rows() -> list[dict[str, Any]]:
        history = History(database)
        await history.open()
        try:
            sym = h.cfg.symbols[0]
            return [order_json(row, sym) for row in await history.orders(ALICE, sym.id)]
        finally:
            await history.close()

    return answers, asyncio.run(rows())


async def relogin(c: RestClient, url: str) -> RestClient:
    """The same API key (kept in apikeys.json) against the restarted gateway's new port."""
    again = RestClient(url)
    again.api_key, again.secret, again.account = c.api_key, c.secret, c.account
    await c.close()
    return again


# -- a gateway restart: orders placed through the REST API -------------------------------------


def test_an_open_rest_order_is_still_named_by_its_client_order_id_after_a_gateway_restart(
    harness: Harness,
) -> None:
    """What was wrong (fixed: the order log keeps them, kind ``A``): ``RestOrders``
    (rest_orders.py) kept the orders placed through the API only in memory (``live``,
    ``client_ids``, ``done``); unlike the FIX side (order_log.py, ``clordids.log``) nothing
    of them survived a gateway restart, and the database keeps no
    client order id either (history.py ``order_json``: ``"clientOrderId": ""``). After a
    restart of the gateway, ALICE's order that still rests in the book is no longer found by
    the ``newClientOrderId`` she gave it (404, "does not exist"), and a new order may reuse
    that id while the first is open.
    Spec (README, REST): "A ``newClientOrderId`` that an open order of the account placed
    through this gateway still holds is refused (-2010), so ``origClientOrderId`` always names
    one order." The FIX side keeps the same promise across a restart (README, gateway row:
    "an order log ... keeps its orders ... across a restart").
    Expected after the restart: ``GET order?origClientOrderId=keep-1`` answers the open order;
    a new order with ``newClientOrderId=keep-1`` is refused. Actual: 404, and the reuse is
    accepted."""

    async def before(url: str) -> tuple[RestClient, int]:
        alice = await client(url, "ALICE", "alice-pw")
        placed = await alice.call(
            "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10",
            newClientOrderId="keep-1",
        )  # fmt: skip
        assert placed["status"] == "NEW", placed
        return alice, placed["orderId"]

    async def after(url: str, state: tuple[RestClient, int]) -> None:
        alice = await relogin(state[0], url)
        try:
            status, body = await alice.request(
                "GET", "/api/v1/order", symbol="BTC-USD", origClientOrderId="keep-1"
            )
            assert harness.router.sequencer.accounts.open_orders(601) == 1  # it still rests
            assert status == 200 and body.get("orderId") == state[1], (status, body)
            reuse, answer = await alice.request(
                "POST", "/api/v1/order", **LIMIT, price="95.00", quantity="0.10",
                newClientOrderId="keep-1",
            )  # fmt: skip
            assert (reuse, answer.get("code")) == (400, -2010), (reuse, answer)
        finally:
            await alice.close()

    restart_scenario(harness, before, after)


def test_the_private_stream_reports_fills_of_a_rest_order_placed_before_a_gateway_restart(
    harness: Harness,
) -> None:
    """What was wrong (fixed: the order log keeps them, kind ``A``): the private stream's
    execution reports come from ``RestOrders.live``
    (rest_orders.py ``_fill``: ``self.live.get(order_id)`` or nothing), which a restarted
    gateway starts empty: only FIX orders are taken back (``_follow_fix_orders``), the API's
    own are not. ALICE's order placed through the API before the gateway restarted fills
    after it; the FIX side would report that fill (README: "fills and cancels of earlier
    orders are reported ... after it"), her stream says nothing (only the balance moves), and
    its snapshot does not list the order while it is open (databases off here; with one on,
    only the writer's row, without its clientOrderId).
    Spec (README, the private stream): "it sends a ``snapshot`` (balances, open orders ...),
    then ``executionReport`` and ``balance`` events".
    Expected: the snapshot lists the open order and a TRADE executionReport for it follows the
    fill. Actual: neither."""

    async def before(url: str) -> tuple[RestClient, int]:
        alice = await client(url, "ALICE", "alice-pw")
        placed = await alice.call(
            "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10",
            newClientOrderId="rest-bid",
        )  # fmt: skip
        return alice, placed["orderId"]

    async def after(url: str, state: tuple[RestClient, int]) -> None:
        alice = await relogin(state[0], url)
        bob = await client(url, "BOB", "bob-pw")
        try:
            ws = await alice.stream()
            snapshot = json.loads((await ws.receive(timeout=5)).data)["data"]
            await bob.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="SELL", type="LIMIT",
                price="100.00", quantity="0.10", timeInForce="IOC",
            )  # fmt: skip
            events = await stream_messages(ws, 1.5)
            await ws.close()
            listed = [o["orderId"] for o in snapshot["openOrders"]]
            trades = [
                e["data"]
                for e in events
                if e["event"] == "executionReport" and e["data"].get("executionType") == "TRADE"
            ]
            balances = [e for e in events if e["event"] == "balance"]
            assert balances, events  # the fill did reach her account
            assert state[1] in listed, snapshot
            assert [t["orderId"] for t in trades] == [state[1]], events
        finally:
            await alice.close()
            await bob.close()

    restart_scenario(harness, before, after)


# -- a gateway restart: orders placed over FIX, seen through the API ---------------------------


def test_a_fix_order_seen_through_the_api_keeps_its_time_after_a_gateway_restart(
    harness: Harness,
) -> None:
    """What is wrong: the API shows an order its user placed over FIX on this gateway from the
    FIX order entry's memory (rest_orders.py ``_from_fix``: ``time`` and ``updateTime`` are
    ``o.received_ns // 1_000_000``), but the order log does not keep ``received_ns``
    (order_memory.py ``_entry`` / ``_order``; order_state.py: "0: restored after a restart").
    After a gateway restart ALICE's open FIX order is listed by ``openOrders`` with
    ``"time": 0`` and ``"updateTime": 0`` (1970-01-01), where before the restart it had the
    time it was placed, and the database's row (which this live view overrides) has it too.
    Expected: the same ``time`` before and after the restart (at least not 0). Actual: 0."""

    async def before(url: str) -> tuple[RestClient, int, int]:
        assert harness.gateway is not None
        fix = Client("ALICE")
        await fix.connect(harness.gateway.port)
        await fix.logon("alice-pw")
        await fix.send(
            "D", (11, "fix-bid"), (55, "BTC-USD"), (54, "1"), (60, utc()),
            (38, "0.10"), (40, "2"), (44, "100.00"), (59, "1"),
        )  # fmt: skip
        ack = await fix.expect("8")
        assert ack.get(39) == b"0", ack
        await fix.send("5")
        await fix.expect("5")
        alice = await client(url, "ALICE", "alice-pw")
        (order,) = await alice.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
        assert order["clientOrderId"] == "fix-bid" and order["time"] > 0, order
        return alice, order["orderId"], order["time"]

    async def after(url: str, state: tuple[RestClient, int, int]) -> None:
        alice = await relogin(state[0], url)
        try:
            orders = await alice.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
            (order,) = [o for o in orders if o["orderId"] == state[1]]
            assert order["time"] == state[2], (order, state[2])
            assert order["updateTime"] >= order["time"] > 0, order
        finally:
            await alice.close()

    restart_scenario(harness, before, after)


# -- symbol names: the config and the market data's stream names ------------------------------


def test_a_symbol_name_the_config_takes_can_be_subscribed_by_url(instance: str) -> None:
    """What is wrong: the config takes a symbol name with a '/' (config/schema.py
    ``SymbolConfig.name``: ``^[A-Z0-9][A-Z0-9./_-]{0,23}$``; "BTC/USD" is how many venues spell
    a pair), the FIX gateway and the REST API trade it, but the market data's URL-subscribed
    streams split their names at '/' (marketdata/server.py ``_path_streams``:
    ``names.split("/")``), so ``/ws/btc/usd@trade`` and ``/stream?streams=btc/usd@trade`` are
    refused (400: "stream 'btc' is not <symbol>@<kind>"): that symbol's trades, depth and
    ticker cannot be had the way README says streams are had.
    Spec (README, marketdata row): "Binance-style stream names (``<symbol>@trade``, ...) at
    ``/ws/<stream>``, ``/stream?streams=a/b``".
    Expected: either the config refuses the name at load (naming it), or both URLs subscribe
    to ``btc/usd@trade``. Actual: the config takes it and both URLs are refused."""
    try:
        cfg = RingexConfig(
            instance=instance,
            ring=RingConfig(capacity=1 << 10),
            symbols=[SymbolConfig(name="BTC/USD", id=1, price_decimals=2, qty_decimals=4)],
            matchers=[MatcherConfig(name="m1", symbols=["BTC/USD"])],
            marketdata=MarketDataConfig(port=0),
        )
        cfg = msgspec.convert(msgspec.to_builtins(cfg), RingexConfig)  # as a loaded file is
    except (ValueError, msgspec.ValidationError):
        return  # refused at load: fine

    async def main() -> None:
        codec = RecordCodec()
        ring = Ring.create(
            instance, matcher_output("m1"), codec, capacity=1 << 10, consumers=[MARKETDATA]
        )
        process = MarketDataProcess(cfg, codec=codec)
        port = await process.start(0)
        refused: list[str] = []
        try:
            for path in ("/ws/btc/usd@trade", "/stream?streams=btc/usd@trade"):
                try:
                    async with connect(f"ws://127.0.0.1:{port}{path}"):
                        pass
                except InvalidStatus as exc:
                    refused.append(f"{path}: {exc.response.status_code} {exc.response.body!r}")
        finally:
            await process.stop()
            ring.close()
        assert not refused, refused

    asyncio.run(main())


# -- a router restart: balances on the private stream -------------------------------------------


def test_the_private_stream_tells_balances_that_moved_while_the_router_restarted(
    harness: Harness,
) -> None:
    """What is wrong: balance watches do not survive a router restart (watches.py: "a
    restarted router has none: a gateway renews its leases, and each renewal brings a fresh
    snapshot, so nothing is lost"). But the gateway takes a renewal's snapshot into its own
    view only (rest_orders.py ``_balance``: a record with a ``client_ref`` updates
    ``self.balances`` and returns; only pushes, ``client_ref`` 0, become a stream ``balance``
    event). So what moved between the router's restart and the renewal is never told to an
    open private stream: ALICE's order placed right after the restart locks 10.02 USD, the
    account endpoint says so once the lease is renewed, and her stream, which started from a
    snapshot with nothing locked, never hears of it; its view stays wrong until the asset
    happens to move again.
    Spec (README, the private stream): a ``snapshot`` then ``balance`` events, i.e. a client
    applying them holds the account's balances; the account endpoint is "balances from the
    router, live".
    Expected: after the renewal, the stream's snapshot + balance events give the same USD as
    ``GET /api/v1/account``. Actual: the stream still shows nothing locked."""

    async def scenario() -> None:
        await harness.start()
        gw = harness.gateway
        assert gw is not None and gw.api is not None
        url = f"http://127.0.0.1:{gw.api.port}"
        alice = await client(url, "ALICE", "alice-pw")
        try:
            ws = await alice.stream()
            first = json.loads((await ws.receive(timeout=5)).data)
            assert first["event"] == "snapshot", first
            view = {b["asset"]: b for b in first["data"]["balances"]}
            assert view["USD"]["locked"] == "0.000000", view

            harness.pause()  # the router restarts: recovery from its journal, no watches
            harness.router.close()
            harness.router = RouterShell(harness.cfg)
            harness.resume()

            placed = await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10"
            )
            assert placed["status"] == "NEW", placed
            gw.api.core.tick(time.monotonic() + 11.0)  # the lease's renewal is due (10 s)
            gw.api.publish()
            await settled(  # the renewal taken by the router, its snapshot read here (10 s)
                lambda: not gw.entry.outgoing and harness.caught_up(),
                10.0,
            )
            account = await alice.call("GET", "/api/v1/account")
            truth = {b["asset"]: b for b in account["balances"]}
            assert truth["USD"]["locked"] == "10.020000", truth  # the router's word

            for msg in await stream_messages(ws, 1.0):
                if msg["event"] == "balance":
                    view[msg["data"]["asset"]] = msg["data"]
            await ws.close()
            assert view["USD"] == truth["USD"], (view["USD"], truth["USD"])
        finally:
            await alice.close()
            await close_all()
            await harness.stop()

    asyncio.run(scenario())


# -- the live REST view and the database's view of the same order ---------------------------


def test_a_market_buy_has_the_same_price_live_and_in_the_history(
    harness: Harness, dsn: str
) -> None:
    """What is wrong: the router gives a market (or stop-market) buy its protection cap in the
    order's ``price`` before it journals it (accounts.py ``reserve_new``: "a market or
    stop-market buy gets its cap in ``price``"), and the database writer stores that field as
    the order's price (projection.py: ``OrderRow(..., new.price, ...)``). So ALICE's MARKET
    buy, answered by POST /api/v1/order with ``"price": "0.00"`` (as the venues show a market
    order, and as its FIX ExecutionReport has no Price), is listed by the history with
    ``"price": "105.00"``, a price she never gave (the last trade plus the 5% band), and her
    pending STOP_LOSS buy with ``"price": "157.50"`` where ``openOrders`` said "0.00".
    Expected: one order, one price, whichever view answers. Actual: 0.00 live, the router's
    cap in the history."""

    async def scenario(url: str) -> list[dict[str, Any]]:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            await bob.call("POST", "/api/v1/order", symbol="BTC-USD", side="SELL",
                           type="LIMIT", price="100.00", quantity="0.30")  # fmt: skip
            await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10", timeInForce="IOC"
            )  # fmt: skip  (a last price)
            market = await alice.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="MARKET",
                quantity="0.10",
            )  # fmt: skip
            stop = await alice.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="STOP_LOSS",
                quantity="0.10", stopPrice="150.00",
            )  # fmt: skip
            return [market, stop]
        finally:
            await alice.close()
            await bob.close()

    answers, rows = with_history(harness, dsn, scenario)
    by_id = {row["orderId"]: row for row in rows}
    for live in answers:
        stored = by_id[live["orderId"]]
        assert (live["type"], live["price"]) == (stored["type"], stored["price"]), (live, stored)


def test_a_limit_maker_order_keeps_its_type_in_the_history(harness: Harness, dsn: str) -> None:
    """What is wrong: a LIMIT_MAKER (post-only) order is a LIMIT with the post-only flag
    (rest_params.py ``TYPES``), and the database keeps no flags (projection.py ``ORDERS``;
    history.py ``order_json``: ``TYPE_NAMES.get(ord_type)``), so the order POST /api/v1/order
    and ``openOrders`` call ``"type": "LIMIT_MAKER"`` turns into a plain ``"LIMIT"`` in the
    history (``allOrders``, and ``openOrders`` / ``GET order`` once the gateway no longer
    follows it, e.g. after its restart): a client reading it back cannot tell it would never
    take liquidity.
    Expected: the same type in both views. Actual: LIMIT_MAKER live, LIMIT stored."""

    async def scenario(url: str) -> dict[str, Any]:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            answer: dict[str, Any] = await alice.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="LIMIT_MAKER",
                price="50.00", quantity="0.10",
            )  # fmt: skip
            return answer
        finally:
            await alice.close()

    live, rows = with_history(harness, dsn, scenario)
    (stored,) = [row for row in rows if row["orderId"] == live["orderId"]]
    assert live["type"] == "LIMIT_MAKER"
    assert stored["type"] == live["type"], (live, stored)


def test_an_orders_time_is_the_same_live_and_in_the_history(harness: Harness, dsn: str) -> None:
    """What is wrong: the REST view stamps an order's ``time`` with the gateway's clock when
    the request came in (rest_orders.py ``new_order``: ``time_ms=_ms(now_ns)``, never updated
    by ``_accepted``), while the exchange's time of the order is the router's stamp on the
    sequenced command (sequencer.py: "``ts_ns = now_ns``"), which every event carries and the
    database stores as ``created``. The two differ by however long the order waited before
    the router took it (here 0.2 s, the router busy), so the same order's ``time`` changes
    between the POST answer / ``openOrders`` and ``allOrders`` from the history, and the
    ``startTime`` / ``endTime`` filters judge it by two clocks.
    Expected: ``time`` equal in both views (the router's stamp, as the order's events carry).
    Actual: the gateway's receive time live, the router's in the history."""

    async def scenario(url: str) -> dict[str, Any]:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            harness.pause()  # the router is busy: the order waits in the gateway's ring
            loop = asyncio.get_running_loop()
            loop.call_later(0.2, harness.resume)
            answer: dict[str, Any] = await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="50.00", quantity="0.10"
            )
            return answer
        finally:
            await alice.close()

    live, rows = with_history(harness, dsn, scenario)
    (stored,) = [row for row in rows if row["orderId"] == live["orderId"]]
    assert live["time"] == stored["time"], (live, stored)
