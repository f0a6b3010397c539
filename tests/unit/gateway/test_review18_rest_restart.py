"""Bugs an eighteenth hostile review found in the REST API across a gateway restart or crash
(``rest_rig.py``: real HTTP in front of real rings, an in-process router and matcher;
``test_gateway_restart.crash`` leaves what SIGKILL leaves; a full restart of the exchange is
``remove_instance`` and a new ``Harness`` over the same config: new rings, the router and the
matcher recovered from the journal). Each test fails until its bug is fixed.

BTC-USD: prices 2 decimals, sizes 2. ALICE holds 1,000,000 USD, BOB 10 BTC.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.edges import RestConfig
from config.schema import DatabaseConfig, RingexConfig
from procs.common.records import NewOrder
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.gateway import recovery
from procs.gateway.rest_client import RestClient
from procs.gateway.server import GatewayServer
from shm.inspect import remove_instance
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import FUNDER, Harness, close_all, config, settled
from tests.unit.gateway.rest_rig import ALICE, BOB, LIMIT, client, rest_exchange
from tests.unit.gateway.test_gateway_restart import crash


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def run_rest(h: Harness, body: Callable[[Harness], Awaitable[None]]) -> None:
    """``body`` with the exchange started; it may crash and restart the gateway."""

    async def main() -> None:
        await h.start()
        try:
            await asyncio.wait_for(body(h), 20)
        finally:
            await close_all()
            await h.stop()

    asyncio.run(main())


def rest_config(instance: str, tmp_path: Path) -> RingexConfig:
    """``rest_rig.rest_exchange``'s configuration (no database)."""
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
    return msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False))


def first_exchange(cfg: RingexConfig) -> Harness:
    h = Harness(cfg)
    h.add_user("ALICE", "alice-pw", ALICE)
    h.add_user("BOB", "bob-pw", BOB)
    h.fund(ALICE, usd=1_000_000 * 10**6, btc=0)
    h.fund(BOB, usd=0, btc=10 * 10**6)
    return h


def url_of(h: Harness) -> str:
    gw = h.gateway
    assert gw is not None and gw.api is not None
    return f"http://127.0.0.1:{gw.api.port}"


def gateway(h: Harness) -> GatewayServer:
    assert h.gateway is not None
    return h.gateway


def in_background(c: RestClient, method: str, **params: Any) -> asyncio.Task[tuple[int, Any]]:
    return asyncio.get_running_loop().create_task(c.request(method, "/api/v1/order", **params))


async def forget(task: asyncio.Task[Any]) -> None:
    """A request whose connection died with the gateway: its answer never comes."""
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


def run_in(h: Harness, body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        await h.start()
        try:
            await asyncio.wait_for(body(), 20)
        finally:
            await close_all()
            await h.stop()

    asyncio.run(main())


async def get_order(c: RestClient, client_id: str) -> tuple[int, Any]:
    return await c.request("GET", "/api/v1/order", symbol="BTC-USD", origClientOrderId=client_id)


def test_an_api_order_logged_for_the_old_router_ring_is_not_sent_again_after_a_full_restart(
    instance: str, tmp_path: Path
) -> None:
    """ALICE's POST order is in the order log but not in the router ring (full) when the
    gateway dies; then the exchange restarts whole (new rings). ``_lost_commands``
    (``restart.py``) sends again only the commands ``OrderEntry.unanswered`` knows, the FIX
    ones: the API's new order is neither sent nor refused. ``RestOrderLog.restore`` brings
    it back pending, so GET order shows it ``PENDING_NEW`` forever, its clientOrderId stays
    taken for good, and ``in_flight`` never drops to 0 (a clean stop waits its whole grace).
    Expected (README, Operate: "A command it had logged for the old router ring and that is
    still unanswered is sent again into the new one"): the order is placed (NEW)."""
    cfg = rest_config(instance, tmp_path)
    first = first_exchange(cfg)

    async def place() -> None:
        await first.start()
        gw = gateway(first)
        alice = await client(url_of(first), "ALICE", "alice-pw")
        gw.producer.try_publish_slots = lambda images, count: False  # type: ignore[method-assign]
        post = in_background(
            alice, "POST", **LIMIT, price="100.00", quantity="1.00", newClientOrderId="held"
        )
        await settled(lambda: bool(gw._unpublished))
        assert gw._unpublished
        await crash(first)
        await forget(post)
        await alice.close()
        await close_all()

    asyncio.run(place())
    first.close()
    remove_instance(instance)
    again = Harness(cfg)

    async def check() -> None:
        gw = gateway(again)
        await settled(lambda: gw.in_flight() == 0, 2.0)
        alice = await client(url_of(again), "ALICE", "alice-pw")
        try:
            status, body = await get_order(alice, "held")
        finally:
            await alice.close()
        assert status == 200, body
        assert body["status"] == "NEW", f"never sent again: {body['status']}"
        # (the requests just made leave a balance watch to publish: settled, not at once)
        await settled(lambda: gw.in_flight() == 0, 2.0)
        assert gw.in_flight() == 0

    try:
        run_in(again, check)
    finally:
        again.close()


def test_an_api_order_filled_while_the_gateway_was_down_is_not_corrected_from_the_books(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALICE's API order rests; the gateway dies; BOB's sell fills it whole; the matcher
    saves a snapshot (its replay starts after the fill) and the exchange restarts whole.
    Where the missed events cannot be made again (a gap over ``CATCH_UP_LIMIT``, set to 0
    here; or an archived journal), ``GatewayRestart._reconcile`` corrects only the FIX
    orders (``OrderEntry.reconcile``) from the books: the API's, restored from the order log
    by ``RestOrderLog.restore``, are never checked. So GET order says NEW with nothing
    executed, openOrders lists it forever and its clientOrderId stays taken, though the
    order filled. Expected (README: "it corrects its orders from the books"; an order
    finished meanwhile is no longer open): the order is not shown open any more (the fix:
    forgotten by the gateway, as the FIX side forgets such an order, and answered from the
    database)."""
    cfg = rest_config(instance, tmp_path)
    first = first_exchange(cfg)

    async def place() -> None:
        await first.start()
        alice = await client(url_of(first), "ALICE", "alice-pw")
        placed = await alice.call(
            "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="1.00",
            newClientOrderId="rests",
        )  # fmt: skip
        assert placed["status"] == "NEW"
        await crash(first)
        await alice.close()
        await close_all()

    asyncio.run(place())
    sell = NewOrder(
        *(0, 0, FUNDER, 1, 99, BOB, 1, 0), side=Side.SELL, ord_type=OrdType.LIMIT,
        tif=TimeInForce.IOC, flags=0, stp=StpMode.NONE, price=10_000, qty=100, stop_price=0,
        display_qty=0,
    )  # fmt: skip
    first.funder.publish_batch([sell])  # BOB sells 1.00 while ALICE's gateway is down
    first.step_pipeline()
    first.matcher.save_snapshot()
    first.close()
    remove_instance(instance)
    monkeypatch.setattr(recovery, "CATCH_UP_LIMIT", 0)  # the gap is "too long to replay"
    again = Harness(cfg)

    async def check() -> None:
        alice = await client(url_of(again), "ALICE", "alice-pw")
        try:
            status, body = await get_order(alice, "rests")
            _, still_open = await alice.request("GET", "/api/v1/openOrders")
        finally:
            await alice.close()
        # forgotten here, as the books cannot say how it ended: the database shows it (this
        # rig has none); its clientOrderId, free again, is "status unknown here" (504 -1007,
        # since review 70), not "does not exist"
        assert status == 504 and body["code"] == -1007, body
        assert still_open == [], "a filled order listed open"

    try:
        run_in(again, check)
    finally:
        again.close()


def test_an_amend_in_flight_at_a_crash_no_longer_stops_a_second_one(harness: Harness) -> None:
    """ALICE amends her order's price (100.00 -> 101.00); the gateway dies before the
    exchange answers; it comes back on the same rings. ``RestOrderLog.restore`` brings back
    only pending new orders, never an amend's ``PendingRequest``, so ``RestOrders.amending``
    is False and her second amend, a quantity only (2.00), is taken and filled in from the
    gateway's view of the order, price 100.00: the exchange applies the first amend, then the
    second puts the price back to 100.00, what the README says the refusal prevents ("a
    second amend of an order is refused while the first waits for its answer"). Expected:
    the second amend is refused while the first waits, so the order ends at 101.00."""

    async def scenario(h: Harness) -> None:
        alice = await client(url_of(h), "ALICE", "alice-pw")
        placed = await alice.call(
            "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="1.00",
            newClientOrderId="amended",
        )  # fmt: skip
        h.pause()  # the exchange answers the first amend only after the crash
        gw = gateway(h)
        first = in_background(
            alice, "PUT", symbol="BTC-USD", orderId=placed["orderId"], price="101.00"
        )
        await settled(lambda: gw.api is not None and gw.api.core.amending(placed["orderId"]))
        await settled(lambda: not gw.entry.outgoing and not gw._unpublished)
        await crash(h)
        await forget(first)
        await alice.close()
        await h.start()
        h.pause()
        alice = await client(url_of(h), "ALICE", "alice-pw")
        try:
            second = in_background(
                alice, "PUT", symbol="BTC-USD", orderId=placed["orderId"], quantity="2.00"
            )
            await asyncio.sleep(0.3)
            h.resume()
            status, body = await second
            await settled(lambda: False, 0.3)
            _, now = await get_order(alice, "amended")
        finally:
            await alice.close()
        assert status == 400, f"second amend taken: {body}"
        assert now["price"] == "101.00", f"the first amend undone: {now}"

    run_rest(harness, scenario)


@pytest.fixture
def pg_harness(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    """``harness`` with the database tests' private PostgreSQL behind the history."""
    yield from rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn))


async def _filled_in_part_then_crash(h: Harness) -> None:
    """ALICE's bid of 1.00 at 30000.00, half filled by BOB's IOC sell after the writer's last
    filing; then the gateway dies and comes back on the same rings."""
    await unfiled_rig.file_all(h)  # the schema and the accounts; no order yet
    async with unfiled_rig.users(url_of(h)) as (alice, bob):
        bid = await alice.call(
            "POST", "/api/v1/order", **LIMIT, price=unfiled_rig.PRICE, quantity="1.00",
            newClientOrderId="half",
        )  # fmt: skip
        assert bid["status"] == "NEW", bid
        sold = await bob.call(
            "POST", "/api/v1/order", **unfiled_rig.SELL, price=unfiled_rig.PRICE,
            quantity="0.50", timeInForce="IOC",
        )  # fmt: skip
        assert sold["status"] == "FILLED", sold
    await crash(h)
    await h.start()


def test_my_trades_after_a_crash_has_the_fill_get_order_shows(pg_harness: Harness) -> None:
    """An API order half filled after the writer's last filing; the gateway crashes and comes
    back (rings kept). GET order shows ALICE's order with 0.50 executed, and ``myTrades``
    lists the 0.50 fill (README: "myTrades lists a fill as soon as the live views do"): the
    order log keeps an API order's fills (review 324). Was (a documented limit until review
    324): the live copies were memory only, and myTrades lacked the fill."""

    async def scenario(h: Harness) -> None:
        await _filled_in_part_then_crash(h)
        async with unfiled_rig.users(url_of(h)) as (alice, _):
            shown = await alice.call(
                "GET", "/api/v1/order", symbol="BTC-USD", origClientOrderId="half"
            )
            trades = await alice.call("GET", "/api/v1/myTrades", symbol="BTC-USD")
        assert shown["executedQty"] == "0.50"
        assert [(t["orderId"], t["qty"]) for t in trades] == [(shown["orderId"], "0.50")]

    run_rest(pg_harness, scenario)
