"""Bugs a nineteenth hostile review found in the fixes of reviews 16 to 18 (balances and the
private stream, order outcomes, REST across a gateway restart). Each test fails until its bug
is fixed.

Rigs: the REST core alone (``core()`` of ``test_rest_orders.py``), ``RestApi.balances`` on a
stand-in shell, and FIX clients from ``harness.py`` on a real exchange (``rest_rig.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.common.records import Balance, NewOrder, Record, Trade, Triggered, WatchBalances
from procs.common.types import OrdType, Side
from procs.core.resting import RestingOrder
from procs.gateway import api_errors as codes
from procs.gateway import rest as rest_module
from procs.gateway.api_errors import ApiError
from procs.gateway.history import order_json
from procs.gateway.rest import RestApi
from procs.gateway.rest_order_state import Outcome
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_params import new_order
from tests.unit.gateway.harness import Harness, utc
from tests.unit.gateway.rest_rig import fix_user, rest_exchange, run
from tests.unit.gateway.test_rest_orders import ALICE, BOB, GW, SYM, accepted, core, limit

STOP_LIMIT = {
    "symbol": "BTC-USD",
    "side": "BUY",
    "type": "STOP_LOSS_LIMIT",
    "price": "300.00",
    "stopPrice": "300.00",
    "quantity": "1",
    "timeInForce": "GTC",
}


def _restarted(c: RestOrders) -> RestOrders:
    """A new core that takes back what ``c`` wrote to the order log (a gateway restart)."""
    entries = {entry[1]: list(entry[2:]) for entry in c.dump()}
    again, _ = core()
    again.restore(entries)
    return again


def _triggered_stop() -> tuple[RestOrders, NewOrder]:
    """ALICE's STOP_LOSS_LIMIT bid, accepted as order 7, then triggered (on the book now)."""
    c, out = core()
    c.touch(ALICE, 1, 0.0)
    c.new_order(new_order(STOP_LIMIT, c.instruments), ALICE, 1, 5)
    cmd = out[-1]
    assert isinstance(cmd, NewOrder) and cmd.ord_type == OrdType.STOP_LIMIT
    c.process(accepted(cmd, order_id=7, seq=40))
    c.end_of_batch()
    c.process(
        Triggered(
            *(41, 0, GW, 1, cmd.client_ref, ALICE, SYM.id, 7), stop_price=30_000, price=30_000
        )
    )
    c.end_of_batch()
    return c, cmd


def test_a_triggered_stop_is_not_working_after_a_gateway_restart() -> None:
    """What is wrong: ``LiveOrder.triggered`` (rest_order_state.py), which ``isWorking`` now
    depends on, is not in the order log: ``LiveOrder.entry`` writes ``amend_ref`` as its
    20th field but no trace of the trigger, and ``LiveOrder.restore`` leaves ``triggered``
    False. A STOP_LOSS_LIMIT placed through the API that triggered and rests on the book says
    ``isWorking: true`` until the gateway restarts, then ``false`` for the rest of its life
    (no second ``Triggered`` comes): a client takes a resting order for a pending stop.
    Expected: ``isWorking`` true after the restart, as before it. Actual: false."""
    c, _ = _triggered_stop()
    before = c.order(ALICE, 7)
    assert before is not None and before.json()["isWorking"] is True  # the control
    after = _restarted(c).order(ALICE, 7)
    assert after is not None and after.status == "NEW"
    assert after.json()["isWorking"] is True, after.json()


def test_a_stop_the_books_show_partly_filled_is_not_working_after_reconcile() -> None:
    """What is wrong: after a restart over new rings whose missed events cannot be made again,
    ``RestOrderLog.reconcile`` (rest_order_log.py) takes an API order's fills and leaves from
    the books but never sets ``LiveOrder.triggered``: a STOP_LOSS_LIMIT that triggered and
    partly filled while the events went with the rings becomes ``PARTIALLY_FILLED`` with
    ``isWorking`` false (a stop with fills has triggered: it is on the book).
    Expected: ``isWorking`` true once reconcile gives it fills. Actual: false."""
    c, out = core()
    c.touch(ALICE, 1, 0.0)
    c.new_order(new_order(STOP_LIMIT, c.instruments), ALICE, 1, 5)
    cmd = out[-1]
    assert isinstance(cmd, NewOrder)
    c.process(accepted(cmd, order_id=7, seq=40))
    c.end_of_batch()
    again = _restarted(c)
    found = RestingOrder(
        *(7, ALICE, Side.BUY, 30_000, 60, 40, 1, GW, 1, cmd.client_ref),
        ord_type=OrdType.STOP_LIMIT, stop_price=30_000,
    )  # fmt: skip
    assert again.reconcile({cmd.client_ref: found}, {SYM.id}) == (1, 0)
    order = again.order(ALICE, 7)
    assert order is not None and order.status == "PARTIALLY_FILLED"  # the control
    assert order.json()["isWorking"] is True, order.json()


def test_reconcile_leaves_an_api_order_the_books_hold_pending_forever() -> None:
    """What is wrong: an API order whose NewOrder the router took (it is journaled, so
    ``GatewayRestart._lost_commands`` rightly does not send it again) but whose ``Accepted``
    went with the old rings is in the matcher's books, yet ``RestOrderLog.reconcile``
    (rest_order_log.py) skips every order without an ``order_id``. ``OrderMemory.reconcile``
    gives a FIX order in that state the book's order id. The API order stays
    ``PENDING_NEW`` with orderId 0 forever (nothing will answer its ref): it cannot be
    cancelled or amended by orderId, its clientOrderId is held, and its ref stays in
    ``requests``, so the gateway's in_flight never falls to 0.
    Expected: after reconcile the order has the book's id 77, status NEW, and no request waits.
    Actual: orderId 0, PENDING_NEW, its ref still in ``requests``."""
    c, out = core()
    c.touch(ALICE, 1, 0.0)
    c.new_order(new_order(limit("BUY", "100.00", "2"), c.instruments), ALICE, 1, 5)
    cmd = out[-1]
    assert isinstance(cmd, NewOrder)
    again = _restarted(c)
    assert cmd.client_ref in again.requests  # the control: still waiting after the restart
    found = RestingOrder(77, ALICE, Side.BUY, 10_000, 200, 0, 1, GW, 1, cmd.client_ref)
    again.reconcile({cmd.client_ref: found}, {SYM.id})
    order = again.in_use(ALICE, f"r{cmd.client_ref}")
    assert order is not None
    seen = (order.order_id, order.status, sorted(again.requests))
    assert seen == (77, "NEW", []), seen


def test_the_database_view_of_a_pending_stop_still_says_it_is_working() -> None:
    """What is wrong: review 17's fix made ``isWorking`` false for a pending stop only in the
    live view (``LiveOrder.json``); the database's view, ``history.order_json`` (allOrders,
    and ``GET order`` of an order this gateway does not follow), still computes it from the
    status alone, so the same pending STOP_LOSS_LIMIT says ``isWorking: false`` in one answer
    and ``true`` in the other.
    Expected: false for a NEW stop order's row (its stop price set). Actual: true."""
    row = (
        *(9, ALICE, SYM.id, int(Side.BUY), int(OrdType.STOP_LIMIT), 1, 30_000, 30_000),
        *(100, 100, 0, 1, 0, 1_000, 1_000, 0, 5, 0, ""),
    )  # fmt: skip
    seen = order_json(row, SYM)
    assert (seen["status"], seen["type"]) == ("NEW", "STOP_LOSS_LIMIT")  # the control
    assert seen["isWorking"] is False, seen


class _Shell:
    """What ``RestApi.balances`` uses of its shell: the core, and ``wait`` on a router that
    does not answer (it lags), timing out as ``RestApi.wait`` does."""

    def __init__(self, core_: RestOrders) -> None:
        self.core = core_

    async def wait(self, ref: int, timeout_s: float | None = None) -> Outcome:
        await asyncio.sleep(timeout_s or 1.0)
        self.core.abandon(ref)
        raise ApiError(504, codes.TIMEOUT, "no answer")


def test_concurrent_balance_requests_each_send_the_router_a_watch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What is wrong: ``RestApi.balances`` (rest.py) asks the router for a fresh snapshot
    (``RestOrders.renew_watch``) whenever the push it waits for does not come within
    ``PUSH_WAIT_S`` (0.25 s), once per HTTP request, with no regard for a renewal already in
    flight for the same account. Under load the router's pushes lag that much for everyone,
    and then every ``GET account`` adds a ``WatchBalances`` command (and a full snapshot the
    router must build and send back) to the router that is already behind: 8 concurrent
    requests of one account send 8 of them.
    Expected: one renewal per account while one is in flight. Actual: one per request."""
    monkeypatch.setattr(rest_module, "PUSH_WAIT_S", 0.01)
    monkeypatch.setattr(rest_module, "BALANCE_WAIT_S", 0.05)
    c, out = core()
    c.touch(ALICE, 1, 0.0)
    watch = out.pop()
    assert isinstance(watch, WatchBalances)
    c.process(Balance(30, 0, GW, 1, watch.client_ref, ALICE, 1, 5_000_000, 0, 1))
    # a fill the router's push has not caught up with: every request waits for that push
    c.process(Trade(41, 0, 1, SYM.id, 10_000, 100, Side.BUY, 3, BOB, 0, 0, 7, ALICE, GW, 0))
    c.end_of_batch()
    shell = _Shell(c)

    async def main() -> list[Any]:
        calls = [RestApi.balances(shell, ALICE) for _ in range(8)]  # type: ignore[arg-type]
        return await asyncio.gather(*calls)

    answers = asyncio.run(main())
    assert all(a == answers[0] for a in answers)  # the control: each answered as known
    sent: list[Record] = [r for r in out if isinstance(r, WatchBalances)]
    assert len(sent) == 1, f"{len(sent)} WatchBalances for one account"


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def test_the_gateways_own_refusal_of_a_quantity_says_other(harness: Harness) -> None:
    """What is wrong: review 17's fix maps the matcher's quantity refusals (INVALID_QTY,
    QTY_NOT_ON_LOT, QTY_OUT_OF_RANGE) to OrdRejReason 13, Incorrect quantity
    (``ORD_REJ_REASON``, order_fields.py), but the gateway checks a NewOrderSingle's OrderQty
    itself first (``OrderEntry._amounts``, orders.py, ``qty_lots``) and refuses a zero or
    off-lot quantity with ``_reject_new(..., 99)``: those never reach the matcher, so a FIX
    client sees 99 (Other) for exactly the refusals the fix meant to report as 13, and a
    different value for the same mistake depending on which process catches it.
    Expected: 103=13 for OrderQty 0 and for OrderQty 0.001 (lot 0.01). Actual: 103=99."""

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(harness, "ALICE", "alice-pw")
        seen = []
        for cl, qty in (("zero", "0"), ("off-lot", "0.001")):
            pairs: list[tuple[int, object]] = [(11, cl), (55, "BTC-USD"), (54, "1")]
            pairs += [(60, utc()), (38, qty), (40, "2"), (59, "1"), (44, "100.00")]
            await fix.send("D", *pairs)
            report = await fix.expect("8")
            assert report.get(150) == b"8", report  # the control: refused
            seen.append(report.get(103))
        assert seen == [b"13", b"13"], seen

    run(harness, scenario)
