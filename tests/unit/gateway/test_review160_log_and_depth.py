"""Review 160: a hostile review of the order log's two new values per REST API order
(``cancel_ref``, ``seq``), the streaming accounts' balance renewal (``_renew_behind``) and
the feed's partial depth streams (``@depth5``, ``@depth10``, ``@depth20``).

Method: in-process only. The REST core alone (``RestOrders``, as ``test_rest_orders.py``
builds it) is fed the exchange's events, its order log written (``take_changes``) and read
back as the log gives it (``replayed``) into a second core, as a restart does; the hub
(``Hub`` over a ``MarketState``) is fed book levels and recorded per subscriber.

Checked, and held: an entry of yesterday's build (21 values) restores with neither value
and waits for nothing new; today's entries round-trip through a compaction (``dump``);
a cancel's ref is logged and cleared when it is answered, refused or when two of one order
are answered in either order; a cancel of an order followed but placed over FIX is not
logged; a restored open order's cancel is answered after the restart and cleared; a
finished order restored with its seq is in the unfiled index (an old one, seq 0, is not),
and the index stays within its limit however many are restored; an account whose balances
lag gets a snapshot request within two ticks, one that keeps up gets none. Partial depth:
a new subscriber gets the levels whole; a change below a stream's levels sends nothing to
it, a change in them sends one; ``@depth20`` under a hub whose ``depth_levels`` is 5 shows
and follows 20 levels; a reset diff (one command over two batches) sends the book after it;
subscribe/unsubscribe churn neither suppresses nor repeats one; a state reloaded (a
market-data restart) serves them; a halt sends none; a slow client's partials conflate to
the newest.

Faults (each a strict xfail when written; all fixed since, the same session):
- ``test_a_finished_orders_cancel_answered_after_a_restart_is_cleared``: a cancel whose
  order ended before its answer, then a restart: the answer was dropped, the ref stayed in
  the log for every later full restart to send again. Fixed: a cancel waits only while its
  order is open (``LiveOrder.waiting_refs``), and a restored finished order holds none.
- ``test_another_accounts_cancel_does_not_unlog_the_owners``: another account's cancel of
  an API order replaced the owner's ref on it, and its refusal cleared it: the owner's
  cancel, still unanswered, was no longer sent again by a full restart. Fixed: only the
  owner's cancel is logged on the order.
- ``test_a_router_that_does_not_answer_gets_one_renewal_in_flight``: ``_renew_behind``
  asked a streaming account's snapshot every second for as long as the router was silent.
  Fixed: one renewal in flight, asked again only past a third of the lease.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import msgspec

from procs.common.records import (
    Accepted,
    Balance,
    CancelOrder,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    SymbolStatus,
    WatchBalances,
)
from procs.common.result_codes import ResultCode
from procs.common.types import AdminAction, DoneReason, Side, TradingStatus
from procs.core.market.state import MarketState, Update
from procs.gateway.rest_order_state import LiveOrder
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_params import new_order
from procs.marketdata.hub import Hub, Message
from procs.marketdata.outbox import Outbox
from procs.marketdata.streams import Kind, parse_stream
from tests.unit.gateway.test_rest_orders import (
    ALICE,
    BOB,
    GW,
    OTHER_GW,
    SYM,
    accepted,
    core,
    limit,
    replayed,
)
from tests.unit.marketdata.events import SYMBOL, level
from tests.unit.marketdata.test_hub_index import Recorder

# -- the order log: cancel_ref and seq --------------------------------------------------------


def _resting(c: RestOrders, out: list[Record], order_id: int, seq: int) -> NewOrder:
    """An API order of ALICE's, accepted as ``order_id`` at journal seq ``seq``."""
    c.new_order(new_order(limit("BUY", "100.00", "1"), c.instruments), ALICE, 1, 5)
    cmd = out.pop()
    assert isinstance(cmd, NewOrder)
    c.process(accepted(cmd, order_id=order_id, seq=seq))
    c.end_of_batch()
    return cmd


def _cancel_sent(c: RestOrders, out: list[Record], account: int, order_id: int) -> int:
    ref = c.cancel(account, 1, SYM.id, order_id, 0)
    assert isinstance(out.pop(), CancelOrder)
    return ref


def _waiting(entries: dict[int, list[Any]]) -> dict[int, list[int]]:
    """Each logged order's refs a full restart sends again (``restart._recover``'s)."""
    return {placed: LiveOrder.waiting_refs(values) for placed, values in entries.items()}


def _dumped(c: RestOrders) -> dict[int, list[Any]]:
    """What a compaction writes of the API's orders, read back."""
    return replayed(c.dump())


def test_yesterdays_21_value_entries_restore_and_compact_to_todays() -> None:
    """An entry of the build before (21 values: no cancel_ref, no seq) restores as an
    order with neither, waits for no cancel, and is not taken into the unfiled index; today's
    entries (24 values since review 332's notional flag) round-trip through a compaction."""
    c, out = core()
    cmd = _resting(c, out, order_id=7, seq=40)
    ref = _cancel_sent(c, out, ALICE, 7)
    log = replayed(c.take_changes())
    (values,) = log.values()
    assert len(values) == 24 and values[21] == ref and values[22] == 40 and values[23]
    assert _waiting(log) == {cmd.client_ref: [ref]}
    old = {placed: v[:21] for placed, v in log.items()}
    again, out2 = core()
    assert again.restore(old) == 1
    order = again.order(ALICE, 7)
    assert order is not None and order.cancel_ref == 0 and order.seq == 0
    assert _waiting(old) == {cmd.client_ref: []} and len(again.unfiled) == 0
    today, _ = core()
    today.restore(log)
    assert _dumped(today) == log  # a compaction writes back what it read
    assert out2 == []


def test_a_cancel_ref_is_cleared_when_answered_refused_or_sent_twice() -> None:
    """Cancelled: the log says nothing waits; refused: the same; two cancels of one order,
    the first ending it: nothing waits once the order has ended (a cancel of an ended order
    has nothing to do: ``waiting_refs`` takes an open order's alone, since this review's
    first fault), nor after the second's refusal."""
    c, out = core()
    cmd = _resting(c, out, order_id=7, seq=40)
    ref = _cancel_sent(c, out, ALICE, 7)
    c.process(OrderDone(41, 0, GW, 1, ref, ALICE, SYM.id, 7, DoneReason.CANCELLED, 0, 100))
    c.end_of_batch()
    assert _waiting(replayed(c.take_changes())) == {cmd.client_ref: []}

    cmd = _resting(c, out, order_id=8, seq=42)
    ref = _cancel_sent(c, out, ALICE, 8)
    c.process(Rejected(43, 0, GW, 1, ref, ALICE, SYM.id, 8, ResultCode.UNKNOWN_ORDER))
    c.end_of_batch()
    assert _waiting(replayed(c.take_changes())) == {cmd.client_ref: []}

    cmd = _resting(c, out, order_id=9, seq=44)
    first, second = _cancel_sent(c, out, ALICE, 9), _cancel_sent(c, out, ALICE, 9)
    c.process(OrderDone(45, 0, GW, 1, first, ALICE, SYM.id, 9, DoneReason.CANCELLED, 0, 100))
    c.end_of_batch()
    assert _waiting(replayed(c.take_changes())) == {cmd.client_ref: []}
    c.process(Rejected(46, 0, GW, 1, second, ALICE, SYM.id, 9, ResultCode.UNKNOWN_ORDER))
    c.end_of_batch()
    assert _waiting(replayed(c.take_changes())) == {cmd.client_ref: []}


def test_a_cancel_of_an_order_placed_over_fix_is_not_logged() -> None:
    c, out = core()
    c.touch(BOB, 2, 0.0)
    c.process(Accepted(9, 0, OTHER_GW, 2, 55, BOB, SYM.id, 8, Side.SELL, 10_000, 100))
    _cancel_sent(c, out, BOB, 8)
    assert c.take_changes() == []


def test_a_restored_open_orders_cancel_is_answered_and_cleared() -> None:
    c, out = core()
    cmd = _resting(c, out, order_id=7, seq=40)
    ref = _cancel_sent(c, out, ALICE, 7)
    again, _ = core()
    again.restore(replayed(c.take_changes()))
    again.process(OrderDone(41, 0, GW, 1, ref, ALICE, SYM.id, 7, DoneReason.CANCELLED, 0, 100))
    again.end_of_batch()
    ((done_ref, outcome),) = again.completed
    assert done_ref == ref and outcome.order is not None and outcome.order.status == "CANCELED"
    assert _waiting(replayed(again.take_changes())) == {cmd.client_ref: []}


def test_a_finished_orders_cancel_answered_after_a_restart_is_cleared() -> None:
    """Failed on the code it was written against; passes since its fix (the same
    session).
    What should happen: ALICE cancels order 7, which ends (cancelled by another of her
    requests, expired, filled) before the cancel's answer; the gateway restarts (the log
    holds the finished order with its cancel_ref). The cancel's answer (refused: unknown
    order), whether the old ring brings it or the full restart's resend makes it, clears the
    ref, so no later full restart sends it again and a compaction stops keeping it.

    What happens: ``RestOrderLog.restore`` registers a restored order's cancel_ref as a
    pending request only for an open order (procs/gateway/rest_order_log.py:87-93 ``continue``
    before :99-100), while ``restart._recover`` takes every entry's ``waiting_refs``
    (procs/gateway/restart.py:80-84, rest_order_state.py:170-173) finished or not. The answer
    finds no request (``_rejected``, rest_orders.py:514-516) and the entry keeps the ref, as
    the bytes ``restore`` kept (``logged``) go on into every compaction: each later full
    restart sends the cancel again, for as long as the order is among the kept finished ones.

    Fix: in ``restore``, register a finished order's cancel_ref (and amend_ref) too, or drop
    it there (the order is over: nothing to cancel) and leave it out of ``waiting_refs`` for
    a finished entry (status not open)."""
    c, out = core()
    cmd = _resting(c, out, order_id=7, seq=40)
    ref = _cancel_sent(c, out, ALICE, 7)
    c.process(OrderDone(41, 0, GW, 1, 0, ALICE, SYM.id, 7, DoneReason.EXPIRED, 0, 100))
    c.end_of_batch()
    again, _ = core()
    again.restore(replayed(c.take_changes()))
    again.process(Rejected(42, 0, GW, 1, ref, ALICE, SYM.id, 7, ResultCode.UNKNOWN_ORDER))
    again.end_of_batch()
    again.take_changes()
    assert _waiting(_dumped(again)) == {cmd.client_ref: []}


def test_another_accounts_cancel_does_not_unlog_the_owners() -> None:
    """Failed on the code it was written against; passes since its fix (the same
    session).
    What should happen: ALICE cancels her API order 7; before its answer BOB sends a
    cancel naming order 7 (any key may name any orderId: the matcher refuses him,
    NOT_ORDER_OWNER). ALICE's cancel is still unanswered, so the log must still name it for
    a full restart to send again.

    What happens: ``RestOrders.cancel`` (procs/gateway/rest_orders.py:186-190) sets
    ``cancel_ref`` on the order found by id whoever asks, so BOB's ref replaces ALICE's, and
    his refusal clears it (``end_of_batch``, :380-382): the entry waits for no cancel while
    ALICE's is in flight. A full restart over a new router ring then drops her cancel (the
    order rests on; her 504 said "may still execute"). The same happens in one step with
    ``DELETE batchOrders`` naming another account's id.

    Fix: log the ref only for the owner's cancel (``order.account == account``); the
    matcher refuses any other, and nothing waits on it across a restart."""
    c, out = core()
    cmd = _resting(c, out, order_id=7, seq=40)
    mine = _cancel_sent(c, out, ALICE, 7)
    theirs = _cancel_sent(c, out, BOB, 7)
    c.process(Rejected(41, 0, GW, 2, theirs, BOB, SYM.id, 7, ResultCode.NOT_ORDER_OWNER))
    c.end_of_batch()
    assert c.completed[-1][1].code == ResultCode.NOT_ORDER_OWNER
    assert _waiting(replayed(c.take_changes())) == {cmd.client_ref: [mine]}


def test_restored_finished_orders_are_unfiled_by_seq_within_the_limit() -> None:
    """Finished orders restored with their seq are listed by allOrders until filed (in the
    unfiled index with that seq), an open one is not indexed there, and however many are
    restored the index holds at most its limit."""
    c, out = core()
    for oid in range(7, 13):
        _resting(c, out, order_id=oid, seq=oid * 10)
        c.process(
            OrderDone(oid * 10 + 1, 0, GW, 1, 0, ALICE, SYM.id, oid, DoneReason.EXPIRED, 0, 100)
        )
        c.end_of_batch()
    _resting(c, out, order_id=20, seq=200)
    log = replayed(c.take_changes())
    again, _ = core()
    again.restore(log)
    assert len(again.unfiled) == 6
    assert [o.seq for o in again.unfiled._orders.values()] == [oid * 10 + 1 for oid in range(7, 13)]
    again.unfiled.forget_filed(101)  # the writer filed up to order 10's end
    assert [o.order_id for o in again.unfiled._orders.values()] == [11, 12]
    small, _ = core()
    small.unfiled.limit = 2
    small.restore(log)
    assert len(small.unfiled) == 2 and {o.order_id for o in small.unfiled._orders.values()} == {
        11,
        12,
    }


# -- _renew_behind ----------------------------------------------------------------------------


def _streaming_behind() -> tuple[RestOrders, list[Record]]:
    """ALICE streaming, her balances known as of seq 10, then an event at seq 50 read and
    no push from the router (it restarted: her watch is gone)."""
    c, out = core()
    c.touch(ALICE, 1, now_s=0.0)
    watch = out.pop()
    assert isinstance(watch, WatchBalances)
    c.streaming.add(ALICE)
    c.process(Balance(10, 0, GW, 1, watch.client_ref, ALICE, 1, 5_000_000, 0, 1))
    c.end_of_batch()
    c.process(Accepted(50, 0, OTHER_GW, 9, 5, ALICE, SYM.id, 20, Side.BUY, 9_000, 100))
    out.clear()
    return c, out


def _watches(out: list[Record]) -> list[WatchBalances]:
    return [r for r in out if isinstance(r, WatchBalances)]


def test_an_account_behind_gets_a_snapshot_request_and_one_keeping_up_none() -> None:
    c, out = _streaming_behind()
    c.tick(1.0)
    c.tick(2.0)
    (renewal,) = _watches(out)  # within two ticks, not the lease's 10 s
    c.process(Balance(51, 0, GW, 1, renewal.client_ref, ALICE, 1, 4_000_000, 0, 1))
    c.end_of_batch()
    out.clear()
    for second in range(3, 9):  # busy: each second an event, and its push within the tick
        c.process(
            Accepted(second * 100, 0, OTHER_GW, 9, 5, ALICE, SYM.id, second, Side.BUY, 9_000, 1)
        )
        c.process(Balance(second * 100 + 1, 0, GW, 0, 0, ALICE, 1, 4_000_000 - second, 0, 0))
        c.tick(float(second))
    assert _watches(out) == []


def test_a_router_that_does_not_answer_gets_one_renewal_in_flight() -> None:
    """Failed on the code it was written against; passes since its fix (the same
    session).
    What should happen: a streaming account whose balances lag (its router restarted)
    gets a snapshot request; while that one is unanswered (the router still starting, or
    behind), no more: as ``renew_watch`` keeps one renewal at a time per account
    (procs/gateway/rest_balances.py:71), and the lease's renewal still comes every 10 s.

    What happens: ``_renew_behind`` (procs/gateway/rest_interest.py:86-89) sends a
    WatchBalances every second for as long as the account lags, each replacing the last in
    ``_renewing``: 8 in 9 s here, per streaming account. With thousands of streaming
    accounts and a router that is down or slow, that is thousands of snapshot requests a
    second into the router's ring (which, full, holds back new orders), and as many
    snapshots once the router reads them: a load that grows with the router's lag.

    Fix: skip an account whose renewal is in flight (``self._renewing.get(account)`` not
    answered yet, its snapshot not in), retrying only after a timeout such as the lease's
    third; clear ``_renewing`` when the snapshot comes (as now)."""
    c, out = _streaming_behind()
    for second in range(1, 10):
        c.tick(float(second))
    assert len(_watches(out)) <= 1


# -- partial depth ----------------------------------------------------------------------------


class Payloads(Recorder):
    """``Recorder`` that keeps each partial depth message's data, by stream."""

    def __init__(self) -> None:
        super().__init__()
        self.partials: list[tuple[str, dict[str, Any]]] = []

    def deliver(self, messages: Sequence[Message], frames: bytes) -> None:
        super().deliver(messages, frames)
        for m in messages:
            if m.kind is Kind.PARTIAL_DEPTH:
                self.partials.append((m.stream, msgspec.json.decode(m.payload)["data"]))


_seq = iter(range(1_000, 10**9))


def _levels(state: MarketState, hub: Hub, *levels: tuple[Side, int, int], seq: int = 0) -> None:
    """Book ``levels`` (side, price, qty) applied in one batch, published."""
    updates: list[Update] = []
    for side, price, qty in levels:
        state.process(level(seq or next(_seq), side, price, qty), updates)
    hub.publish(updates + state.flush())


def _book(depth_levels: int = 10, bids: int = 25) -> tuple[MarketState, Hub]:
    state = MarketState([SYMBOL])
    hub = Hub(state, depth_levels=depth_levels, max_subscriptions=20)
    _levels(state, hub, *[(Side.BUY, 10_000 - k, 1 + k) for k in range(bids)])
    _levels(state, hub, (Side.SELL, 10_100, 5))
    return state, hub


def _sub(hub: Hub, client: Recorder, *names: str) -> None:
    hub.subscribe(client, [parse_stream(n, hub.symbols) for n in names])


def _bids(data: dict[str, Any]) -> list[list[str]]:
    bids: list[list[str]] = data["bids"]
    return bids


def test_partials_start_whole_and_follow_only_changes_in_their_levels() -> None:
    state, hub = _book()
    c = Payloads()
    _sub(hub, c, "btc-usd@depth5", "btc-usd@depth10")
    assert [(s, len(_bids(d))) for s, d in c.partials] == [
        ("btc-usd@depth5", 5), ("btc-usd@depth10", 10)
    ]  # fmt: skip
    c.partials.clear()
    _levels(state, hub, (Side.BUY, 10_000 - 7, 99))  # the 8th bid: in 10, not in 5
    assert [s for s, _ in c.partials] == ["btc-usd@depth10"]
    assert _bids(c.partials[0][1])[7] == ["99.93", "0.0099"]
    c.partials.clear()
    _levels(state, hub, (Side.BUY, 10_000 - 20, 7))  # the 21st: in neither
    assert c.partials == []
    _levels(state, hub, (Side.SELL, 10_100, 6))
    assert [s for s, _ in c.partials] == ["btc-usd@depth5", "btc-usd@depth10"]


def test_depth20_beyond_the_hubs_depth_levels() -> None:
    state, hub = _book(depth_levels=5)
    c = Payloads()
    _sub(hub, c, "btc-usd@depth20")
    assert len(_bids(c.partials[-1][1])) == 20
    _levels(state, hub, (Side.BUY, 10_000 - 15, 42))
    assert _bids(c.partials[-1][1])[15] == ["99.85", "0.0042"] and len(c.partials) == 2
    _levels(state, hub, (Side.BUY, 10_000 - 3, 0))  # a level goes: the 21st rises into 20
    assert _bids(c.partials[-1][1])[19] == ["99.80", "0.0021"]


def test_a_reset_diff_sends_the_book_after_it() -> None:
    """One command's levels over two batches (the same seq): the second batch's diff is a
    reset; the partial shows the book after it, as of the same lastUpdateId."""
    state, hub = _book()
    c = Payloads()
    _sub(hub, c, "btc-usd@depth5", "btc-usd@depth")
    _levels(state, hub, (Side.BUY, 10_050, 3), seq=5_000_000)
    _levels(state, hub, (Side.BUY, 10_050, 0), (Side.BUY, 10_000, 0), seq=5_000_000)
    shown = c.partials[-1][1]
    assert len(c.partials) == 3 and shown["lastUpdateId"] == 5_000_000
    assert _bids(shown)[0] == ["99.99", "0.0002"]


def test_churn_neither_suppresses_nor_repeats_a_partial() -> None:
    state, hub = _book()
    x, y = Payloads(), Payloads()
    _sub(hub, x, "btc-usd@depth5")
    hub.unsubscribe(x, [parse_stream("btc-usd@depth5", hub.symbols)])
    _levels(state, hub, (Side.BUY, 10_000, 50))  # followed by nobody
    _sub(hub, y, "btc-usd@depth5")
    _sub(hub, x, "btc-usd@depth5")
    assert _bids(x.partials[-1][1])[0] == _bids(y.partials[-1][1])[0] == ["100.00", "0.0050"]
    x.partials.clear()
    y.partials.clear()
    _levels(state, hub, (Side.SELL, 10_100, 5))  # no change: nothing
    _levels(state, hub, (Side.BUY, 10_000, 1))  # back as it was before the churn: sent
    assert len(x.partials) == len(y.partials) == 1
    assert _bids(x.partials[0][1])[0] == ["100.00", "0.0001"]


def test_a_reloaded_state_serves_partials_and_a_halt_sends_none() -> None:
    state, _ = _book()
    loaded: MarketState = pickle.loads(pickle.dumps(state))  # as a restart loads it
    hub2 = Hub(loaded, depth_levels=10, max_subscriptions=20)
    c = Payloads()
    _sub(hub2, c, "btc-usd@depth5")
    assert _bids(c.partials[-1][1])[0] == ["100.00", "0.0001"]
    updates: list[Update] = []
    loaded.process(SymbolStatus(next(_seq), 0, 1, AdminAction.HALT, TradingStatus.HALTED), updates)
    hub2.publish(updates + loaded.flush())
    assert len(c.partials) == 1
    _levels(loaded, hub2, (Side.BUY, 10_000, 0))
    assert _bids(c.partials[-1][1])[0] == ["99.99", "0.0002"]


def test_a_slow_clients_partials_conflate_to_the_newest() -> None:
    box = Outbox(2, lambda stream: b"snapshot")
    box.push(Kind.TRADE, "btc-usd@trade", b"t1")
    for k in range(5):
        assert box.push(Kind.PARTIAL_DEPTH, "btc-usd@depth5", b"p%d" % k) is None
    assert [box.pop(), box.pop(), box.pop()] == [b"t1", b"p4", None]
