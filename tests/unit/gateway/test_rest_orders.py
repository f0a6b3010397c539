"""The REST API's sans-I/O core alone: requests become records, the exchange's events become
answers, live orders, balances that wait for the router, and private events."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import msgspec

from config.schema import AssetConfig, SymbolConfig
from procs.common.records import (
    Accepted,
    Balance,
    CancelOrder,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    Trade,
    WatchBalances,
)
from procs.common.result_codes import ResultCode
from procs.common.types import DoneReason, Side
from procs.gateway.instruments import Instruments
from procs.gateway.order_log import Kept, Recovered
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_params import new_order

GW, OTHER_GW = 3, 4
ALICE, BOB = 11, 12
SYM = SymbolConfig(name="BTC-USD", id=1, price_decimals=2, qty_decimals=2, base="BTC")
ASSETS = [AssetConfig(name="USD", id=1, decimals=4), AssetConfig(name="BTC", id=2, decimals=2)]


def core() -> tuple[RestOrders, list[Record]]:
    out: list[Record] = []
    refs = itertools.count(100)
    return RestOrders(GW, Instruments([SYM]), ASSETS, out, lambda: next(refs)), out


def limit(side: str, price: str, qty: str) -> dict[str, str]:
    return {"symbol": "BTC-USD", "side": side, "type": "LIMIT", "price": price, "quantity": qty}


def accepted(cmd: NewOrder, order_id: int, seq: int) -> Accepted:
    return Accepted(
        *(seq, 0, cmd.gateway, cmd.session, cmd.client_ref, cmd.account, cmd.symbol, order_id),
        *(cmd.side, cmd.price, cmd.qty),
    )


def test_a_new_order_is_answered_with_the_fills_of_its_own_batch() -> None:
    c, out = core()
    c.touch(ALICE, 1, now_s=0.0)
    assert isinstance(out.pop(), WatchBalances)  # the account's balances are watched
    ref = c.new_order(new_order(limit("BUY", "100.00", "2"), c.instruments), ALICE, 1, 5)
    (cmd,) = out
    assert isinstance(cmd, NewOrder) and cmd.client_ref == ref and cmd.qty == 200
    c.process(accepted(cmd, order_id=7, seq=40))
    trade = Trade(40, 0, 1, SYM.id, 10_000, 50, Side.BUY, 3, BOB, OTHER_GW, 0, 7, ALICE, GW, 150)
    c.process(trade)
    assert c.completed == []  # the batch is not over: more of its events may follow
    c.end_of_batch()
    ((done_ref, outcome),) = c.completed
    assert done_ref == ref and outcome.code == ResultCode.OK
    assert outcome.order is not None and outcome.order.status == "PARTIALLY_FILLED"
    assert outcome.fills == [
        {"price": "100.00", "qty": "0.50", "tradeId": 1, "isMaker": False,
         "commission": "0.1000", "commissionAsset": "USD"}  # the taker's 20 bps of 50 USD
    ]  # fmt: skip
    assert [o.order_id for o in c.open_orders(ALICE, None)] == [7]


def test_a_refused_order_carries_the_code_and_is_not_live() -> None:
    c, out = core()
    ref = c.new_order(new_order(limit("SELL", "1.00", "1"), c.instruments), ALICE, 1, 5)
    cmd = out[-1]
    assert isinstance(cmd, NewOrder)
    c.process(Rejected(0, 0, GW, 1, ref, ALICE, SYM.id, 0, ResultCode.INSUFFICIENT_BALANCE))
    c.end_of_batch()
    ((_, outcome),) = c.completed
    assert outcome.code == ResultCode.INSUFFICIENT_BALANCE
    assert outcome.order is not None and outcome.order.status == "REJECTED"
    assert c.open_orders(ALICE, None) == []


def test_only_the_owner_finds_an_order() -> None:
    c, out = core()
    c.touch(BOB, 2, 0.0)
    c.process(
        Accepted(9, 0, OTHER_GW, 2, 55, BOB, SYM.id, 8, Side.SELL, 10_000, 100)  # via FIX
    )
    found = c.order(BOB, 8)  # its terms from the Accepted (review 59): a limit, as sent
    assert found is not None and found.type_name == "LIMIT"
    assert c.order(ALICE, 8) is None
    assert c.open_orders(ALICE, None) == []
    ref = c.cancel(ALICE, 1, SYM.id, 8, 0)
    cancel = out[-1]
    assert isinstance(cancel, CancelOrder) and cancel.account == ALICE  # the matcher checks
    c.process(Rejected(10, 0, GW, 1, ref, ALICE, SYM.id, 8, ResultCode.NOT_ORDER_OWNER))
    c.end_of_batch()
    assert c.completed[-1][1].code == ResultCode.NOT_ORDER_OWNER
    assert c.order(BOB, 8) is not None  # untouched


def test_balances_wait_for_the_router_to_include_what_was_seen() -> None:
    c, out = core()
    c.touch(ALICE, 1, 0.0)
    watch = out.pop()
    assert isinstance(watch, WatchBalances)
    for asset, free, last in ((1, 5_000_000, 0), (2, 0, 1)):
        c.process(Balance(30, 0, GW, 1, watch.client_ref, ALICE, asset, free, 0, last))
    assert c.account_balances(ALICE) == {1: (5_000_000, 0), 2: (0, 0)}
    # a fill at seq 41 is seen before the router's push that includes it
    c.process(Trade(41, 0, 1, SYM.id, 10_000, 100, Side.BUY, 3, BOB, 0, 0, 7, ALICE, GW, 0))
    ref = c.account_balances(ALICE)
    assert isinstance(ref, int)  # wait
    c.process(Balance(40, 0, GW, 0, 0, ALICE, 1, 4_000_000, 0, 0))  # older than the fill
    c.end_of_batch()
    assert c.completed == []
    c.process(Balance(41, 0, GW, 0, 0, ALICE, 2, 100, 0, 0))
    c.end_of_batch()
    ((done, outcome),) = c.completed
    assert done == ref and outcome.balances == {1: (4_000_000, 0), 2: (100, 0)}


def test_a_balance_request_given_up_is_forgotten_with_its_wait() -> None:
    """A balance request that timed out (``abandon``) leaves nothing behind, not even its
    place among those waiting for the account's next push: an account that no push comes
    for again would keep every one; one still waiting is answered by that push."""
    c, out = core()
    c.touch(ALICE, 1, 0.0)
    watch = out.pop()
    assert isinstance(watch, WatchBalances)
    c.process(Balance(30, 0, GW, 1, watch.client_ref, ALICE, 1, 5_000_000, 0, 1))
    c.process(Trade(41, 0, 1, SYM.id, 10_000, 100, Side.BUY, 3, BOB, 0, 0, 7, ALICE, GW, 0))
    gone, kept = c.account_balances(ALICE), c.account_balances(ALICE)
    assert isinstance(gone, int) and isinstance(kept, int)
    c.abandon(gone)
    assert gone not in c.requests and c._stale == {ALICE: [kept]}
    c.process(Balance(41, 0, GW, 0, 0, ALICE, 2, 100, 0, 0))
    c.end_of_batch()
    assert [ref for ref, _ in c.completed] == [kept] and c._stale == {}


def test_private_events_only_for_streaming_accounts() -> None:
    c, out = core()
    c.touch(ALICE, 1, 0.0)
    c.new_order(new_order(limit("BUY", "100.00", "1"), c.instruments), ALICE, 1, 5)
    cmd = out[-1]
    assert isinstance(cmd, NewOrder)
    c.process(accepted(cmd, 7, 40))
    assert c.events == []
    c.streaming.add(ALICE)
    c.process(OrderDone(41, 0, GW, 1, 999, ALICE, SYM.id, 7, DoneReason.CANCELLED, 0, 100))
    ((account, name, data),) = c.events
    assert (account, name, data["status"], data["executionType"]) == (
        ALICE,
        "executionReport",
        "CANCELED",
        "CANCELED",
    )


def test_interest_ends_and_the_watch_is_dropped() -> None:
    c, out = core()
    c.touch(ALICE, 1, now_s=0.0)
    c.tick(now_s=c.interest_s + 1)
    assert ALICE not in c.interest
    assert isinstance(out[-1], WatchBalances) and out[-1].lease_ms == 0


def replayed(entries: Sequence[Kept]) -> dict[int, list[object]]:
    """What the order log gives back of ``entries``: their bytes decoded (a finished order's
    are written encoded already), then ``Recovered.apply``, in order."""
    state = Recovered()
    for entry in msgspec.msgpack.decode(msgspec.msgpack.encode(entries)):
        state.apply(entry)
    return state.api_orders


def test_orders_placed_here_come_back_from_the_order_log() -> None:
    """An open order keeps its clientOrderId, one still waiting gets its answer, and a
    finished one answers queries; orders only followed here (placed elsewhere) are not
    logged."""
    c, out = core()
    c.touch(ALICE, 1, now_s=0.0)
    out.clear()
    req = new_order(limit("BUY", "100.00", "1"), c.instruments)
    c.new_order(req, ALICE, 1, 5)
    first = out.pop()
    assert isinstance(first, NewOrder)
    c.process(accepted(first, order_id=7, seq=40))
    c.end_of_batch()
    done_ref = c.new_order(new_order(limit("BUY", "99.00", "1"), c.instruments), ALICE, 1, 5)
    done = out.pop()
    assert isinstance(done, NewOrder)
    c.process(accepted(done, order_id=8, seq=41))
    c.process(OrderDone(42, 0, GW, 1, 0, ALICE, SYM.id, 8, DoneReason.CANCELLED, 0, 100))
    c.end_of_batch()
    pending_ref = c.new_order(new_order(limit("SELL", "101.00", "1"), c.instruments), ALICE, 1, 5)
    pending = out.pop()
    assert isinstance(pending, NewOrder)
    c.process(Accepted(43, 0, OTHER_GW, 9, 5, ALICE, SYM.id, 20, Side.BUY, 9_000, 100))
    assert 20 in c.live  # followed, not placed here
    log = replayed(c.take_changes())
    assert sorted(log) == sorted([first.client_ref, done_ref, pending_ref])
    assert c.take_changes() == []  # nothing changed since

    again, out2 = core()
    assert again.restore(log) == 2  # the open one and the pending one
    assert again.order(ALICE, None, f"r{first.client_ref}") is not None
    assert again.in_use(ALICE, f"r{first.client_ref}") is not None
    assert again.order(ALICE, 8) is not None and again.order(ALICE, 8).status == "CANCELED"  # type: ignore[union-attr]
    again.process(accepted(pending, order_id=9, seq=44))
    again.end_of_batch()
    ((ref, outcome),) = again.completed
    assert ref == pending_ref and outcome.order is not None and outcome.order.order_id == 9
    assert sorted(o.order_id for o in again.open_orders(ALICE, None)) == [7, 9]
    assert out2 == []


def test_a_finished_order_past_keep_done_leaves_the_order_log() -> None:
    c, out = core()
    c.keep_done = 1
    for order_id in (7, 8):
        c.new_order(new_order(limit("BUY", "100.00", "1"), c.instruments), ALICE, 1, 5)
        cmd = out.pop()
        assert isinstance(cmd, NewOrder)
        c.process(accepted(cmd, order_id=order_id, seq=order_id))
        c.process(OrderDone(0, 0, GW, 1, 0, ALICE, SYM.id, order_id, DoneReason.CANCELLED, 0, 100))
        c.end_of_batch()
    log = replayed(c.take_changes())
    assert [values[0] for values in log.values()] == [8]
