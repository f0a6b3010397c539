"""Bugs a fifteenth hostile review found in what a user sees of one order through the
different views: FIX ExecutionReports and status requests, REST ``GET order``,
``openOrders``, ``allOrders``, ``myTrades``, the answers to POST/PUT/DELETE, and the private
stream's snapshot and events. Each test fails until its bug is fixed.

Rigs: ``rest_rig.py`` (real HTTP and WebSocket in front of real rings, an in-process router
and matcher, FIX clients from ``harness.py``) and, for the views the database answers,
``unfiled_rig.py`` (the database tests' private PostgreSQL behind the gateway's history, the
writer run by hand with ``file_all``).

BTC-USD: prices 2 decimals (tick 0.05), sizes 2 decimals. ALICE (601) has dollars, BOB (602)
bitcoin; both log on over FIX and REST to the same gateway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.schema import DatabaseConfig
from procs.gateway.history import order_json
from procs.gateway.recent_elsewhere import RecentElsewhere
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import Harness, settled, utc
from tests.unit.gateway.rest_rig import (
    ALICE,
    LIMIT,
    bid_elsewhere,
    client,
    fix_user,
    order_status,
    reports,
    rest_exchange,
    run,
)
from tests.unit.gateway.unfiled_rig import file_all

ORDER = "/api/v1/order"
SELL = {**LIMIT, "side": "SELL"}
BUY: dict[str, Any] = {"symbol": "BTC-USD", "side": "BUY"}


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """No database: the live views only."""
    yield from rest_exchange(instance, tmp_path)


@pytest.fixture
def db_harness(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    """The history in ``dsn``; the writer files only when ``file_all`` says."""
    yield from rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn))


# -- order type and instructions shown back --------------------------------------------------


def test_a_fix_post_only_order_is_shown_as_limit_maker_like_the_same_rest_order(
    harness: Harness,
) -> None:
    """What is wrong: ALICE places a post-only bid over FIX (ExecInst 18=6) and another through
    the API as ``type=LIMIT_MAKER``: the same order to the exchange (``OrderFlag.POST_ONLY``).
    The REST views (``openOrders``, ``GET order``, the private stream) show the API one as
    ``LIMIT_MAKER`` but the FIX one as plain ``LIMIT``: ``rest_order_state.from_fix`` (and
    ``RestOrders._accepted``, which calls it) names the type by ``TYPE_NAMES[ord_type]`` and
    ignores ``Order.post_only``. The history names the very same order ``LIMIT_MAKER``
    (``history.row_type`` reads the row's flags; README: "a ``LIMIT_MAKER`` order keeps its
    type in the history"), so the order changes type when the gateway stops following it,
    and a client that reads ``LIMIT`` believes its bid may take liquidity.
    Expected: ``LIMIT_MAKER`` for both, in every view. Actual: ``LIMIT`` for the FIX one."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            ws = await alice.stream()
            await fix.send(
                "D", (11, "po-fix"), (55, "BTC-USD"), (54, "1"), (60, utc()), (38, "0.10"),
                (40, "2"), (44, "90.00"), (59, "1"), (18, "6"),
            )  # fmt: skip
            ack = await fix.expect("8")
            assert ack.get(39) == b"0", ack
            api_bid = await alice.call(
                "POST", ORDER, **BUY, type="LIMIT_MAKER", price="90.00", quantity="0.10"
            )
            assert api_bid["type"] == "LIMIT_MAKER", api_bid  # the control
            fix_id = int(ack.get(37))
            shown = {o["orderId"]: o["type"] for o in await alice.call("GET", "/api/v1/openOrders")}
            streamed: dict[int, str] = {}
            deadline = time.monotonic() + 5
            while fix_id not in streamed and time.monotonic() < deadline:
                streamed |= {r["orderId"]: r["type"] for r in await reports(ws, 0.2)}
            await ws.close()
            seen = (
                shown[fix_id],
                (await order_status(alice, fix_id))["type"],
                streamed.get(fix_id),
            )
            assert seen == ("LIMIT_MAKER",) * 3, (
                f"FIX post-only order {fix_id}: openOrders, GET order and the stream say "
                f"{seen}; the API's LIMIT_MAKER order says {shown[api_bid['orderId']]}"
            )
        finally:
            await alice.close()

    run(harness, scenario)


def test_an_iceberg_order_shows_its_iceberg_quantity(harness: Harness) -> None:
    """What is wrong: an order placed with ``icebergQty=0.02`` (a slice of 0.02 shown of
    0.10) is shown back without it anywhere: the POST answer, ``GET order``, ``openOrders``
    and the stream's ``executionReport`` (``LiveOrder.json`` in rest_order_state.py has no
    such field; ``LiveOrder`` does not even keep the display quantity), so a client that
    restarts cannot tell an iceberg from a plain order, nor what an amend keeps showing.
    The venue whose conventions the API follows shows ``icebergQty`` in every order answer
    and query (and FIX 4.4 reports can carry MaxFloor, 111).
    Expected: ``icebergQty`` "0.02" in the answer and the query. Actual: absent."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            placed = await alice.call(
                "POST", ORDER, **LIMIT, price="91.00", quantity="0.10", icebergQty="0.02"
            )
            queried = await order_status(alice, placed["orderId"])
            shown = (placed.get("icebergQty"), queried.get("icebergQty"))
            assert shown == ("0.02", "0.02"), (shown, placed, queried)
        finally:
            await alice.close()

    run(harness, scenario)


# -- timestamps -------------------------------------------------------------------------------


def test_a_fix_order_followed_later_shows_the_time_of_its_last_fill(harness: Harness) -> None:
    """What is wrong: ALICE places a bid over FIX; BOB fills part of it through the API
    (his answer's ``updateTime`` is the trade's time); only then does ALICE make her first
    REST request. The API's view of her FIX order is built by ``from_fix``
    (rest_order_state.py), which sets ``update_ms`` to the order's *acceptance* time
    (``o.time_ns``), so ``GET order`` and ``openOrders`` say PARTIALLY_FILLED with an
    ``updateTime`` from before the fill that made it so (and before the trade's ``time`` in
    ``myTrades``). ``updateTime`` is the time of the order's last change.
    Expected: ``updateTime`` at or after the fill's time. Actual: the acceptance time."""

    async def scenario(api: RestApi, url: str) -> None:
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        alice: RestClient | None = None
        try:
            await fix.send(
                "D", (11, "bid-1"), (55, "BTC-USD"), (54, "1"), (60, utc()), (38, "0.10"),
                (40, "2"), (44, "100.00"), (59, "1"),
            )  # fmt: skip
            ack = await fix.expect("8")
            assert ack.get(39) == b"0", ack
            await asyncio.sleep(0.05)  # the fill comes some milliseconds after the ack
            hit = await bob.call(
                "POST", ORDER, **SELL, price="100.00", quantity="0.04", timeInForce="IOC"
            )
            assert hit["status"] == "FILLED", hit
            fill = await fix.expect("8")
            assert fill.get(150) == b"F", fill
            alice = await client(url, "ALICE", "alice-pw")
            order = await order_status(alice, int(ack.get(37)))
            assert order["status"] == "PARTIALLY_FILLED", order
            assert order["updateTime"] >= hit["updateTime"], (
                f"updateTime {order['updateTime']} of a PARTIALLY_FILLED order is before its "
                f"fill at {hit['updateTime']} (accepted at {order['time']})"
            )
        finally:
            await bob.close()
            if alice is not None:
                await alice.close()

    run(harness, scenario)


def test_a_triggered_stop_shows_the_time_it_was_triggered(harness: Harness) -> None:
    """What is wrong: ALICE's stop-limit buy (stop 101.00, limit 100.50) is triggered by a
    trade at 101.00 and rests in the book as a limit order, unfilled. The private stream says
    ``TRIGGERED`` with ``eventTime`` T, yet the order it carries, and ``GET order`` after it,
    keep ``updateTime`` at the placement time: ``RestOrders.process`` (the ``Triggered``
    branch, rest_orders.py) stamps the order's journal seq but not ``update_ms``. The
    history stamps the row's ``updated`` at the trigger (dbwriter/projection.py, the
    ``Triggered`` branch touches the row), so ``allOrders`` shows another ``updateTime`` once
    the gateway stops following the order, and a client comparing ``updateTime`` to tell
    which view is newer takes the stale one.
    Expected: ``updateTime`` >= the TRIGGERED report's ``eventTime``. Actual: earlier."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            ws = await alice.stream()
            stop = await alice.call(
                "POST", ORDER, **BUY, type="STOP_LOSS_LIMIT", price="100.50",
                stopPrice="101.00", quantity="0.05",
            )  # fmt: skip
            await bob.call("POST", ORDER, **SELL, price="101.00", quantity="0.05")
            await asyncio.sleep(0.05)  # the trigger comes some milliseconds after placing
            await alice.call(
                "POST", ORDER, **LIMIT, price="101.00", quantity="0.01", timeInForce="IOC"
            )
            triggered = [
                r for r in await reports(ws, 0.5)
                if r["orderId"] == stop["orderId"] and r["executionType"] == "TRIGGERED"
            ]  # fmt: skip
            await ws.close()
            assert len(triggered) == 1, triggered
            when = triggered[0]["eventTime"]
            now = await order_status(alice, stop["orderId"])
            assert now["status"] == "NEW" and now["executedQty"] == "0.00", now
            shown = (triggered[0]["updateTime"], now["updateTime"])
            assert min(shown) >= when, (
                f"triggered at {when}; the report's and GET order's updateTime say {shown} "
                f"(placed at {stop['time']})"
            )
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


# -- the live views against the history ------------------------------------------------------


def test_a_market_buy_shows_the_same_price_live_and_in_the_history(db_harness: Harness) -> None:
    """What is wrong: ALICE sends a market buy with ``price=150.00``, its worst price (the
    API takes it: "a market order's worst price"). The live views (the POST answer, ``GET
    order``, the stream) show ``price`` "150.00", as FIX reports 44 for the same order;
    the database writer files every market or stop-market buy with price 0
    (dbwriter/projection.py ``process``: ``price = 0 if new.side == Side.BUY and
    new.ord_type in _CAPPED``, whose comment claims "as every live view shows it"), so
    ``allOrders`` and ``GET order`` answered from the history (once the gateway no longer
    follows the order) say "0.00": the same order changes price between views. The router
    puts a cap in ``price`` only when the client gave none (core/accounts.py: ``price ==
    0``), so a price there is the client's. (Review 328: a market buy needs a trade first,
    and a worst price above the cap gives way to it, ``CAPPED``: here 104.00 after a trade at
    100.00, within the cap 105.00, stays the client's.)
    Expected: one price in both views. Actual: "150.00" live, "0.00" in the history."""
    h = db_harness

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            await bob.call("POST", ORDER, **SELL, price="100.00", quantity="0.10")
            await alice.call("POST", ORDER, **BUY, type="LIMIT", quantity="0.05", price="100.00")
            bought = await alice.call(
                "POST", ORDER, **BUY, type="MARKET", quantity="0.05", price="104.00"
            )
            assert bought["status"] == "FILLED", bought
            live = await order_status(alice, bought["orderId"])
            await file_all(h)
            assert api.history is not None
            row = await api.history.order(ALICE, bought["orderId"])
            assert row is not None
            filed = order_json(row, h.cfg.symbols[0])
            assert (live["price"], live["type"]) == (filed["price"], filed["type"]), (
                f"live {live['price']} {live['type']}, history {filed['price']} {filed['type']}"
            )
        finally:
            await alice.close()
            await bob.close()

    run(h, scenario)


@pytest.mark.xfail(
    strict=True,
    reason="a documented limit (README, REST): an order accepted before the recent window "
    "(recent_elsewhere.py) and followed from a database row that lags may have missed a "
    "fill or a replace, which a trade's leaves cannot tell apart "
    "(test_review15_session_diff has the replace); the live count goes on from the row "
    "with cummulativeQuoteQty null, allOrders shows the row once the writer has filed the "
    "order's last change, and its end brings the matcher's count",
)
def test_an_order_followed_from_a_row_the_writer_had_not_caught_up_counts_every_fill(
    db_harness: Harness,
) -> None:
    """What is wrong: ALICE's bid of 0.30 was placed through another gateway and filed open.
    BOB then fills 0.10 of it while ALICE is of no interest to the REST gateway, and the
    writer has not filed that fill yet (it lags by a batch). ALICE asks for ``openOrders``:
    the row says 0.00 filled, and is remembered (``RowOrders.remember``). BOB fills 0.10
    more: ``RestOrders._fill`` takes the order from the row (``RowOrders.take``: the trade's
    seq is above the row's ``updated_seq``) and adds only this fill to the row's count. The
    live view now says executedQty 0.10 of 0.30 with 0.10 left (leaves from the trade):
    0.10 is missing, and ``cummulativeQuoteQty`` 10.0000 (not null: ``from_row`` thought
    nothing had filled) is wrong too. Once the writer has filed everything, ``allOrders``
    still shows the live view (its seq ties the row's ``updated_seq``:
    ``UnfiledOrders.merged``), while ``myTrades`` lists 0.20 of fills and the database row
    says 0.20.
    Expected: executedQty 0.20 in ``GET order`` and ``allOrders``, as ``myTrades`` sums.
    Actual: 0.10."""
    h = db_harness

    async def scenario(api: RestApi, url: str) -> None:
        api.core.recent = RecentElsewhere(0)  # the bid's events older than the recent window
        bob = await client(url, "BOB", "bob-pw")
        alice: RestClient | None = None
        try:
            h.funder.publish_batch([bid_elsewhere(1, 30)])
            await settled(lambda: h.router.sequencer.accounts.open_orders(ALICE) == 1, 10.0)
            await file_all(h)  # the bid is filed open, nothing filled
            for _ in range(2):
                hit = await bob.call(
                    "POST", ORDER, **SELL, price="100.00", quantity="0.10", timeInForce="IOC"
                )
                assert hit["status"] == "FILLED", hit
                if alice is None:  # after the first fill, not filed yet: ALICE looks
                    alice = await client(url, "ALICE", "alice-pw")
                    (listed,) = await alice.call("GET", "/api/v1/openOrders")
                    oid = listed["orderId"]
            assert alice is not None
            live = await order_status(alice, oid)
            await file_all(h)
            trades = await alice.call("GET", "/api/v1/myTrades", symbol="BTC-USD")
            traded = sum(round(float(t["qty"]) * 100) for t in trades if t["orderId"] == oid)
            listed = {o["orderId"]: o for o in await alice.call(
                "GET", "/api/v1/allOrders", symbol="BTC-USD"
            )}  # fmt: skip
            shown = (live["executedQty"], listed[oid]["executedQty"])
            assert traded == 20, trades
            assert shown == ("0.20", "0.20"), (
                f"myTrades: 0.20 filled; GET order and allOrders say {shown} (GET order: {live})"
            )
        finally:
            await bob.close()
            if alice is not None:
                await alice.close()

    run(h, scenario)
