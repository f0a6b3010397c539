"""The private stream reports every execution of its user's orders, whichever gateway placed
them (``unfiled_rig.py``: real HTTP and WebSocket in front of real rings, the database tests'
private PostgreSQL behind the history). Each test failed until the bug was fixed.

- An order of ALICE placed elsewhere (here by the funder, gateway 0, as another gateway's
  client would, and partly filled) before her account was of interest to this gateway
  showed in the stream's snapshot, from the database, but ``RestOrders._fill`` and
  ``_done`` follow only the orders in ``live``: its later fills and its cancel sent no
  ``executionReport``. The snapshot and ``openOrders`` now remember the database's rows of
  the orders not followed (``row_orders.py``), and the first event about one takes it into
  the live view.

BTC-USD: prices 2 decimals, sizes 2. ALICE bids 0.30 at 30000.00; BOB's IOC sells reach it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from procs.common.records import CancelOrder, NewOrder, Record
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.gateway.instruments import Instruments
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.rest_order_state import LiveOrder
from procs.gateway.row_orders import RowOrders
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import FUNDER, Harness, config
from tests.unit.gateway.rest_rig import ALICE, run

harness = unfiled_rig.harness
PRICE, SELL = unfiled_rig.PRICE, unfiled_rig.SELL
TICKS = 3_000_000  # 30000.00


def _order(ref: int, account: int, side: Side, tif: TimeInForce, qty: int) -> NewOrder:
    return NewOrder(
        *(0, time.time_ns(), FUNDER, 1, ref, account, 1, 0), side=side, ord_type=OrdType.LIMIT,
        tif=tif, flags=0, stp=StpMode.NONE, price=TICKS, qty=qty, stop_price=0, display_qty=0,
    )  # fmt: skip


def _publish(h: Harness, *commands: Record) -> None:
    """Commands from gateway 0 (not the REST gateway), run through the pipeline at once."""
    h.funder.publish_batch(list(commands))
    h.step_pipeline()
    h.funder_replies.read(64)


async def _sell(bob: RestClient) -> None:
    answer = await bob.call(
        "POST", "/api/v1/order", **SELL, price=PRICE, quantity="0.10", timeInForce="IOC"
    )
    assert answer["status"] == "FILLED", answer


@contextlib.asynccontextmanager
async def _placed_elsewhere(h: Harness, url: str) -> AsyncIterator[tuple[RestClient, RestClient]]:
    """ALICE's bid of 0.30, placed through gateway 0 before this gateway started, rests; BOB
    fills 0.10 of it through the API. His answer means this gateway has read every event of
    the bid while ALICE's account was of no interest to it; then the writer files them all
    (the bid: PARTIALLY_FILLED, 0.10), and ALICE logs in: (ALICE, BOB)."""
    async with RestClient(url) as alice, RestClient(url) as bob:
        await bob.login("BOB", "bob-pw")
        await _sell(bob)
        await unfiled_rig.file_all(h)
        await alice.login("ALICE", "alice-pw")
        yield alice, bob


async def _reports(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[dict[str, Any]]:
    """The stream's next ``n`` executionReports (balance events skipped), 5 s at most."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5.0
    while len(out) < n and (left := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        event = json.loads(msg.data)
        if event["event"] == "executionReport":
            out.append(event["data"])
    assert len(out) == n, f"{len(out)} executionReports within 5 s, expected {n}: {out}"
    return out


def _shown(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["orderId"], r["executionType"], r["side"], r["price"], r["origQty"],
        r["executedQty"], r.get("lastQty"), r["status"], r["isWorking"],
    )  # fmt: skip


async def _snapshot_order(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    first = json.loads((await ws.receive(timeout=5.0)).data)
    assert first["event"] == "snapshot", first
    orders = first["data"]["openOrders"]
    assert len(orders) == 1, orders
    order: dict[str, Any] = orders[0]
    shown = (order["side"], order["executedQty"], order["status"])
    assert shown == ("BUY", "0.10", "PARTIALLY_FILLED"), order
    return order


def test_fills_and_cancel_of_an_order_placed_elsewhere_reach_the_stream(harness: Harness) -> None:
    """ALICE opens her stream after her bid, placed through gateway 0, was partly filled;
    BOB's sell fills 0.10 more, then she cancels the rest through the API.
    Expected: a TRADE report (executedQty 0.20 of 0.30, PARTIALLY_FILLED) and a CANCELED one.
    Actual: neither came."""
    h = harness
    _publish(h, _order(1, ALICE, Side.BUY, TimeInForce.GTC, 30))

    async def scenario(api: RestApi, url: str) -> None:
        async with _placed_elsewhere(h, url) as (alice, bob):
            ws = await alice.stream()
            bid = (await _snapshot_order(ws))["orderId"]
            await _sell(bob)
            [fill] = await _reports(ws, 1)
            traded = (bid, "TRADE", "BUY", PRICE, "0.30", "0.20", "0.10", "PARTIALLY_FILLED", True)
            assert _shown(fill) == traded, fill
            answer = await alice.call("DELETE", "/api/v1/order", symbol="BTC-USD", orderId=bid)
            assert (answer["status"], answer["executedQty"]) == ("CANCELED", "0.20"), answer
            [cancel] = await _reports(ws, 1)
            want = (bid, "CANCELED", "BUY", PRICE, "0.30", "0.20", None, "CANCELED", False)
            assert _shown(cancel) == want, cancel
            assert await alice.call("GET", "/api/v1/openOrders", symbol="BTC-USD") == []
            await ws.close()

    run(h, scenario)


def test_a_cancel_from_another_gateway_of_an_older_order_reaches_the_stream(
    harness: Harness,
) -> None:
    """ALICE's bid, placed through gateway 0 before her stream opened, is cancelled through
    gateway 0 too. Expected: a CANCELED report with what had filled. Actual: none."""
    h = harness
    _publish(h, _order(1, ALICE, Side.BUY, TimeInForce.GTC, 30))

    async def scenario(api: RestApi, url: str) -> None:
        async with _placed_elsewhere(h, url) as (alice, _bob):
            ws = await alice.stream()
            bid = (await _snapshot_order(ws))["orderId"]
            h.funder.publish_batch([CancelOrder(0, time.time_ns(), FUNDER, 1, 3, ALICE, 1, bid)])
            [cancel] = await _reports(ws, 1)
            want = (bid, "CANCELED", "BUY", PRICE, "0.30", "0.10", None, "CANCELED", False)
            assert _shown(cancel) == want, cancel
            await ws.close()

    run(h, scenario)


def test_an_event_the_row_holds_already_does_not_take_the_order() -> None:
    """``RowOrders`` alone: an event at or below the row's ``updated_seq`` (the writer filed
    it before this gateway read it) neither takes the order nor counts twice; a later one
    takes it once; an account no longer of interest has nothing remembered."""
    cfg = config("rows", Path("/nonexistent"))
    rows = RowOrders(Instruments(cfg.symbols))
    # id, account, symbol, side, type, tif, price, stop, size, remaining, filled, status,
    # reject code, created ms, updated ms, flags, updated_seq: BUY LIMIT GTC 0.30, 0.10 filled
    row = (7, ALICE, 1, 1, 1, 1, TICKS, 0, 30, 20, 10, 2, 0, 1_000, 2_000, 0, 40, 0, "")
    rows.remember(ALICE, {1: [row], 9: [row]}, lambda order_id: None)  # 9: not configured
    assert rows.take(ALICE, 7, 40) is None  # the row holds it
    order = rows.take(ALICE, 7, 41)
    assert order is not None and order.json()["cummulativeQuoteQty"] is None
    assert (order.side, order.type_name, order.qty, order.leaves, order.cum, order.status) == (
        1, "LIMIT", 30, 20, 10, "PARTIALLY_FILLED"
    )  # fmt: skip
    assert rows.take(ALICE, 7, 42) is None  # taken once
    rows.remember(ALICE, {1: [row]}, lambda order_id: None)
    rows.forget(ALICE)
    assert rows.take(ALICE, 7, 41) is None
    followed = LiveOrder(7, ALICE, cfg.symbols[0], 1, "LIMIT", 1, TICKS, 0, 30, 20)
    rows.remember(ALICE, {1: [row]}, lambda order_id: followed)  # followed already: not kept
    assert rows.take(ALICE, 7, 41) is None
