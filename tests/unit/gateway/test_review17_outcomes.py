"""Bugs a seventeenth hostile review found in how each order outcome is reported to the
client: FIX 4.4 ExecutionReports (8), OrderCancelRejects (9) and mass cancel reports (r), and
the REST API's answers, ``GET order`` and the private stream. Each test fails until its bug
is fixed.

Rigs: ``rest_rig.py`` (real HTTP and WebSocket in front of real rings, an in-process router
and matcher) and FIX clients from ``harness.py`` on the same gateway.

BTC-USD: prices 2 decimals (tick 0.05), sizes 2 decimals. ALICE (601) has dollars, BOB (602)
bitcoin; both may log on over FIX and REST to the same gateway.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.common.records import AdminCommand, Transfer
from procs.common.types import AdminAction
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import BTC, FUNDER, Harness, settled, utc
from tests.unit.gateway.rest_rig import (
    ALICE,
    LIMIT,
    client,
    fix_user,
    order_status,
    reports,
    rest_exchange,
    run,
)

ORDER = "/api/v1/order"
SELL = {**LIMIT, "side": "SELL"}


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def give_alice_bitcoin(h: Harness) -> None:
    """ALICE holds dollars only: 1 BTC more, so she can sell against her own bids."""
    key = time.time_ns()
    h.funder.publish_batch([Transfer(0, 0, FUNDER, 1, key, ALICE, BTC, 10**6, key)])
    h.step_pipeline()
    h.funder_replies.read(64)


def fix_order(
    cl: str, side: str, qty: str, price: str | None, ord_type: str = "2", tif: str = "1"
) -> list[tuple[int, object]]:
    pairs: list[tuple[int, object]] = [(11, cl), (55, "BTC-USD"), (54, side), (60, utc())]
    pairs += [(38, qty), (40, ord_type), (59, tif)]
    if price is not None:
        pairs.append((44, price))
    return pairs


def test_a_fix_order_partly_filled_on_arrival_shows_its_fill_once_over_rest(
    harness: Harness,
) -> None:
    """What is wrong: ALICE uses the API, then places a GTC bid of 0.10 over FIX that takes
    BOB's ask of 0.04 on arrival and rests 0.06. ``GET order`` says ``executedQty`` 0.08 and
    ``cummulativeQuoteQty`` null: the gateway hands a batch of events to the FIX order entry
    first and to the REST core after (``GatewayServer.pump``), so when the REST core sees the
    order's ``Accepted`` it builds its view with ``from_fix`` (rest_order_state.py) from the
    FIX order as it stands at the *end* of the batch, fills included, then counts the same
    ``Trade`` again in ``RestOrders._fill`` (rest_orders.py). FIX says CumQty 0.04.
    Expected: executedQty "0.04", cummulativeQuoteQty "4.0000" (the fill at 100.00).
    Actual: "0.08" and null, until the order ends."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            assert await alice.call("GET", "/api/v1/openOrders") == []  # ALICE uses the API
            await bob.call("POST", ORDER, **SELL, price="100.00", quantity="0.04")
            await fix.send("D", *fix_order("bid-1", "1", "0.10", "100.00"))
            ack = await fix.expect("8")
            fill = await fix.expect("8")
            assert (ack.get(150), fill.get(150), fill.get(14)) == (b"0", b"F", b"0.04"), fill
            seen = await order_status(alice, int(ack.get(37)))
            got = (seen["status"], seen["executedQty"], seen["cummulativeQuoteQty"])
            assert got == ("PARTIALLY_FILLED", "0.04", "4.0000"), (got, seen)
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_a_pending_stop_order_is_not_shown_as_working(harness: Harness) -> None:
    """What is wrong: a ``STOP_LOSS`` buy whose stop price the market has not reached waits
    off the book (README, the matcher: stops "wait off the book until the last trade price
    reaches the stop price"), yet the POST answer, ``GET order`` and the stream's ``NEW``
    report all say ``isWorking: true``: ``LiveOrder.json`` (rest_order_state.py) sets
    ``isWorking`` to ``self.open`` and keeps no trace of whether a stop has triggered. In the
    venue API the REST API follows, ``isWorking`` (the stream's ``w``, "is the order on the
    book?") is false for a stop order until it triggers, and a client uses it to tell a
    resting order from a pending stop.
    Expected: ``isWorking`` false while the stop waits. Actual: true."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            placed = await alice.call(
                "POST", ORDER, symbol="BTC-USD", side="BUY", type="STOP_LOSS_LIMIT",
                price="300.00", stopPrice="300.00", quantity="0.01", timeInForce="GTC",
            )  # fmt: skip
            queried = await order_status(alice, placed["orderId"])
            seen = (placed["status"], placed["isWorking"], queried["isWorking"])
            assert seen == ("NEW", False, False), (seen, placed)
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_self_trade_prevention_report_has_the_venue_execution_type(harness: Harness) -> None:
    """What is wrong: ALICE rests an ask, then sends a crossing bid with
    ``selfTradePreventionMode=EXPIRE_TAKER``; the bid is expired by self-trade prevention.
    Its private-stream ``executionReport`` says ``executionType: EXPIRED_IN_MATCH``:
    ``RestOrders._done`` (rest_orders.py) passes the order's *status* as the execution type.
    ``EXPIRED_IN_MATCH`` is an order status in the venue API the REST API follows (README:
    "the conventions of the most used venue APIs"); its execution types are NEW, CANCELED,
    REPLACED, REJECTED, TRADE, EXPIRED and TRADE_PREVENTION, the last one for exactly this
    event. A client that switches on ``executionType`` does not recognise the report.
    Expected: executionType ``TRADE_PREVENTION`` with status ``EXPIRED_IN_MATCH``.
    Actual: executionType ``EXPIRED_IN_MATCH``."""

    give_alice_bitcoin(harness)

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            ws = await alice.stream()
            await alice.call("POST", ORDER, **SELL, price="150.00", quantity="0.01")
            taker = await alice.call(
                "POST", ORDER, **LIMIT, price="150.00", quantity="0.01",
                selfTradePreventionMode="EXPIRE_TAKER",
            )  # fmt: skip
            assert taker["status"] == "EXPIRED_IN_MATCH", taker  # the control
            ended: list[dict[str, Any]] = []
            deadline = time.monotonic() + 5
            while not ended and time.monotonic() < deadline:
                got = await reports(ws, 0.2)
                ended += [r for r in got if r["orderId"] == taker["orderId"] and not r["isWorking"]]
            await ws.close()
            assert ended, "no end of the taker on the stream"
            seen = (ended[0]["executionType"], ended[0]["status"])
            assert seen == ("TRADE_PREVENTION", "EXPIRED_IN_MATCH"), (seen, ended[0])
        finally:
            await alice.close()

    run(harness, scenario)


def test_fix_rejects_carry_the_ord_rej_reason_fix_defines_for_them(harness: Harness) -> None:
    """What is wrong: every refusal of a NewOrderSingle other than an unknown symbol carries
    OrdRejReason (103) 99, Other: a price off the tick (the gateway's own check in
    ``OrderEntry._amounts``, answered by ``_reject_new(..., 99)``, orders.py) and an order on
    a halted symbol (the matcher's ``SYMBOL_HALTED``, answered by ``OrderEntry._rejected``,
    which maps every code but ``UNKNOWN_SYMBOL`` to 99). FIX 4.4 defines OrdRejReason 18,
    Invalid price increment, and 2, Exchange closed (the value the gateway itself uses when
    intake is closed, README "Stopping"), so a client's reject handling can branch on them
    without parsing Text.
    Expected: 103=2 on the halted symbol (18 for the price off the tick is FIX 5.0's, not
    4.4's: that one stays 99 with its Text).
    Actual: 103=99 for both."""

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(harness, "ALICE", "alice-pw")
        await fix.send("D", *fix_order("off-tick", "1", "0.01", "100.03"))
        off_tick = await fix.expect("8")
        harness.funder.publish_batch([AdminCommand(0, 0, AdminAction.HALT, 1, time.time_ns())])
        await settled(  # the matcher halted, its events read here (a loaded host: later)
            lambda: harness.matcher.matcher.books[1].halted and harness.caught_up(), 10.0
        )
        await fix.send("D", *fix_order("halted", "1", "0.01", "100.00"))
        halted = await fix.expect("8")
        assert (halted.get(150), halted.get(58)) == (b"8", b"SYMBOL_HALTED (3001)"), halted
        seen = (off_tick.get(103), halted.get(103))
        # 18 (Invalid price increment) is FIX 5.0's: a 4.4 session gets 99 with the Text
        assert seen == (b"99", b"2"), (seen, off_tick, halted)

    run(harness, scenario)
