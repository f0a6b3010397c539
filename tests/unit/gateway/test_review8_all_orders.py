"""``allOrders`` lists what the live views already show (issue 10 of the eighth review; the
rig of ``test_review8_rest_bugs.py``: real HTTP in front of real rings, the database tests'
private PostgreSQL behind the gateway's history, ``write_all`` files the journal up to its
end, so an order placed, filled or cancelled after it is one the writer has not filed yet).
Each test failed until the bug was fixed.

- ``allOrders`` read PostgreSQL and added only the gateway's *open* orders: an order that
  filled or was cancelled since the writer's last batch was missing, and one the gateway no
  longer kept among its finished orders showed the database's older status. It now merges
  the orders the gateway follows whose last change the database lacks, once each, under the
  same parameters and ordering, with the same fields.

BTC-USD: prices 2 decimals, sizes 2. ALICE's bids rest (those at 30000.00 are the ones BOB's
IOC sells at 30000.00 reach; those at 29000.00 stay out of reach).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config.schema import SymbolConfig
from procs.gateway.history import order_json
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.rest_order_state import LiveOrder
from procs.gateway.unfiled_orders import MAX_UNFILED_ORDERS, UnfiledOrders
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import Harness, config
from tests.unit.gateway.rest_rig import ALICE, LIMIT, run

harness = unfiled_rig.harness
PRICE, SELL = unfiled_rig.PRICE, unfiled_rig.SELL
AWAY = "29000.00"


async def _bid(alice: RestClient, qty: str, price: str = PRICE) -> int:
    answer = await alice.call(
        "POST", "/api/v1/order", **LIMIT, price=price, quantity=qty, timeInForce="GTC"
    )
    assert answer["status"] == "NEW", answer
    return int(answer["orderId"])


async def _sell(bob: RestClient, qty: str) -> int:
    answer = await bob.call(
        "POST", "/api/v1/order", **SELL, price=PRICE, quantity=qty, timeInForce="IOC"
    )
    assert answer["status"] == "FILLED", answer
    return int(answer["orderId"])


async def _cancel(alice: RestClient, order_id: int) -> None:
    answer = await alice.call("DELETE", "/api/v1/order", symbol="BTC-USD", orderId=order_id)
    assert answer["status"] == "CANCELED", answer


async def _all(c: RestClient, **params: Any) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = await c.call(
        "GET", "/api/v1/allOrders", symbol="BTC-USD", **params
    )
    return orders


def _seen(orders: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return [(o["orderId"], o["status"], o["executedQty"]) for o in orders]


#: The fields of an allOrders row, as the database path renders one.
FIELDS = set(order_json((1, ALICE, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, ""), config(
    "fields", Path("/nonexistent")).symbols[0]))  # fmt: skip


def test_all_orders_lists_an_order_filled_after_the_last_filing(harness: Harness) -> None:
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)  # the schema, the accounts; no order yet
        async with unfiled_rig.users(url) as (alice, bob):
            bid = await _bid(alice, "0.10")
            sell = await _sell(bob, "0.10")  # fills the bid: neither is open, neither filed
            status = await alice.call("GET", "/api/v1/order", symbol="BTC-USD", orderId=bid)
            assert (status["status"], status["executedQty"]) == ("FILLED", "0.10")
            mine = await _all(alice)
            assert _seen(mine) == [(bid, "FILLED", "0.10")]
            assert mine == [status]  # as GET order shows it, field for field
            assert set(mine[0]) == FIELDS and mine[0]["cummulativeQuoteQty"] == "3000.0000"
            assert _seen(await _all(bob)) == [(sell, "FILLED", "0.10")]
            theirs = await _all(bob)
            # once filed, the answers are the same
            await unfiled_rig.file_all(h)
            assert await _all(alice) == mine
            assert await _all(bob) == theirs

    run(h, scenario)


def test_all_orders_lists_an_order_cancelled_after_the_last_filing(harness: Harness) -> None:
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            whole = await _bid(alice, "0.10", AWAY)
            part = await _bid(alice, "0.30")
            await _sell(bob, "0.10")  # part is partially filled
            await _cancel(alice, whole)
            await _cancel(alice, part)
            mine = await _all(alice)
            assert _seen(mine) == [(whole, "CANCELED", "0.00"), (part, "CANCELED", "0.10")]
            assert all(set(o) == FIELDS and not o["isWorking"] for o in mine)
            await unfiled_rig.file_all(h)
            assert await _all(alice) == mine

    run(h, scenario)


def test_an_order_both_hold_is_listed_once_with_the_newer_state(harness: Harness) -> None:
    """The database holds the bid as NEW; the gateway saw it fill and, past ``keep_done``,
    no longer keeps it among its finished orders: the newer state is still listed, once."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            bid = await _bid(alice, "0.10")
            rest = await _bid(alice, "0.30", AWAY)
            await unfiled_rig.file_all(h)  # both NEW in the database
            api.core.keep_done = 0  # a busy gateway: its finished orders go at once
            await _sell(bob, "0.10")
            assert api.core.known(bid) is None
            assert _seen(await _all(alice)) == [(bid, "FILLED", "0.10"), (rest, "NEW", "0.00")]
            assert _seen(await _all(alice, limit=1)) == [(rest, "NEW", "0.00")]
            assert _seen(await _all(alice, orderId=bid, limit=1)) == [(bid, "FILLED", "0.10")]
            await unfiled_rig.file_all(h)  # now the database has the fill
            assert _seen(await _all(alice)) == [(bid, "FILLED", "0.10"), (rest, "NEW", "0.00")]

    run(h, scenario)


def test_limit_order_id_and_times_cut_as_the_database_path_does(harness: Harness) -> None:
    """Filed and unfiled orders mixed: every query answers, before the writer files them,
    what the database alone answers after."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            o1 = await _bid(alice, "0.10", AWAY)  # filed open
            o2 = await _bid(alice, "0.10", AWAY)
            await _cancel(alice, o2)  # filed cancelled
            await unfiled_rig.file_all(h)
            o3 = await _bid(alice, "0.10")
            await _sell(bob, "0.10")  # unfiled, filled
            o4 = await _bid(alice, "0.10", AWAY)
            await _cancel(alice, o4)  # unfiled, cancelled
            o5 = await _bid(alice, "0.10", AWAY)  # unfiled, open
            every = await _all(alice)
            assert _seen(every) == [
                (o1, "NEW", "0.00"), (o2, "CANCELED", "0.00"), (o3, "FILLED", "0.10"),
                (o4, "CANCELED", "0.00"), (o5, "NEW", "0.00"),
            ]  # fmt: skip
            ids = [o["orderId"] for o in every]
            times = sorted({o["time"] for o in every})
            queries: list[dict[str, Any]] = [
                {"limit": 2}, {"limit": 3}, {"orderId": o2, "limit": 2}, {"orderId": o3},
                {"orderId": o5 + 1}, {"startTime": times[-1]}, {"endTime": times[0]},
                {"startTime": times[0], "limit": 2}, {"orderId": o2, "endTime": times[-1]},
                {"endTime": times[-1], "limit": 4},
            ]  # fmt: skip
            before = [await _all(alice, **q) for q in queries]
            assert [o["orderId"] for o in before[0]] == ids[-2:]
            assert [o["orderId"] for o in before[1]] == ids[-3:]
            assert [o["orderId"] for o in before[2]] == [o2, o3]
            assert [o["orderId"] for o in before[3]] == [o3, o4, o5]
            assert before[4] == []
            await unfiled_rig.file_all(h)  # the database alone now
            api.core.unfiled.forget_filed(2**62)
            assert len(api.core.unfiled) == 0
            assert await _all(alice) == every
            for q, answer in zip(queries, before, strict=True):
                assert await _all(alice, **q) == answer, q

    run(h, scenario)


# -- the merge itself, without HTTP --------------------------------------------------------------


class _Followed:
    """What ``RestOrders`` answers the merge: the orders it still keeps."""

    def __init__(self, *orders: LiveOrder) -> None:
        self.orders = {o.order_id: o for o in orders}

    def known(self, order_id: int) -> LiveOrder | None:
        return self.orders.get(order_id)

    def open_orders(self, account: int, symbol: int | None) -> list[LiveOrder]:
        return [o for o in self.orders.values() if o.open and o.account == account]


def _order(sym: SymbolConfig, order_id: int, status: str, cum: int, seq: int) -> LiveOrder:
    order = LiveOrder(order_id, ALICE, sym, 1, "LIMIT", 1, 3_000_000, 0, 10, 10 - cum, cum)
    order.status, order.seq, order.time_ms = status, seq, 1_000 + order_id
    return order


def _row(order_id: int, status: int, filled: int, updated_seq: int) -> tuple[Any, ...]:
    return (
        order_id, ALICE, 1, 1, 1, 1, 3_000_000, 0, 10, 10 - filled, filled, status, 0,
        1_000 + order_id, 1_000 + order_id, 0, updated_seq, 0, "",
    )  # fmt: skip


def test_the_newer_of_the_database_row_and_the_live_view_is_listed(tmp_path: Path) -> None:
    """Live view at a later seq than the row: the live view; the row at a later seq (the
    gateway missed an event): the row; the same seq: the live view (it has the
    clientOrderId); a live view of unknown seq (restored, or followed from FIX): as GET order
    shows it, the live view."""
    sym = config("merge", tmp_path).symbols[0]
    newer = _order(sym, 1, "FILLED", 10, seq=50)
    older = _order(sym, 2, "NEW", 0, seq=20)
    same = _order(sym, 3, "PARTIALLY_FILLED", 4, seq=30)
    unknown = _order(sym, 4, "NEW", 0, seq=0)
    rows = [_row(1, 1, 0, 40), _row(2, 3, 10, 40), _row(3, 2, 4, 30), _row(4, 2, 5, 40)]
    unfiled = UnfiledOrders()
    shown = unfiled.merged(
        rows, ALICE, sym, _Followed(newer, older, same, unknown),
        from_id=None, start_ms=None, end_ms=None, limit=10,
    )  # fmt: skip
    assert [(o["orderId"], o["status"]) for o in shown] == [
        (1, "FILLED"), (2, "FILLED"), (3, "PARTIALLY_FILLED"), (4, "NEW"),
    ]  # fmt: skip
    assert shown[0] == newer.json() and shown[1] == order_json(rows[1], sym)
    assert shown[2] == same.json() and shown[3] == unknown.json()


def test_the_unfiled_orders_kept_are_bounded_oldest_first(tmp_path: Path) -> None:
    """``MAX_UNFILED_ORDERS`` bounds the memory (here a limit of 3): past it the order changed
    longest ago goes; an order changed again moves to the newest end; those at or below the
    writer's checkpoint go, and so does one a database row shows as new."""
    assert MAX_UNFILED_ORDERS > 0
    sym = config("bound", tmp_path).symbols[0]
    unfiled = UnfiledOrders(limit=3)
    orders = [_order(sym, n, "NEW", 0, seq=0) for n in range(1, 6)]
    for n, order in enumerate(orders, start=1):
        unfiled.changed(order, 100 + n)
        unfiled.changed(order, 100 + n)  # an event read again: kept once
    unfiled.changed(orders[2], 106)  # order 3 changes again
    assert len(unfiled) == 3 and orders[2].seq == 106

    def listed(rows: list[tuple[Any, ...]]) -> list[int]:
        shown = unfiled.merged(
            rows, ALICE, sym, _Followed(), from_id=None, start_ms=None, end_ms=None, limit=10
        )
        return [o["orderId"] for o in shown]

    assert listed([]) == [3, 4, 5]
    unfiled.forget_filed(104)  # order 4's change is in the database; 3 and 5 are not
    assert listed([]) == [3, 5]
    assert listed([_row(5, 1, 0, 105)]) == [3, 5]  # the row is as new: the live copy goes
    assert len(unfiled) == 1
    unfiled.forget_filed(106)
    assert len(unfiled) == 0
