"""Review 42: the seq a balance push carries, and what a gateway's read-your-writes makes of it.

A balance snapshot is labelled ``_applied_label()`` (``procs/router/applied.py``): every event
of every seq through it is in the values. A push was labelled with the newest seq that touched
its (account, asset) (``Watches.take``, ``procs/core/watches.py``): for a command's touch
(``touch_commands``, at route time) that is the command's own seq, whose matcher events have
not even been made; for an event's touch on one matcher, a seq past commands still queued at
the other. The REST gateway (``procs/gateway/rest_balances.py``) keeps, per account, ``_have``
= the newest label of any snapshot or push and ``_need`` = the seq of the newest event of the
account it read from the matchers' rings, and answers a balance request (``GET /account``)
from what it holds once ``_have >= _need``.

Rig: ``test_review41_topology``'s (two matchers, m1 BTC-USD, m2 ETH-USD, three gateways),
stepped by hand; gateway 1's replies and events are kept, and fed to a real ``RestOrders``
core where a test gives one (replies first, then the matchers' rings, as ``server.py`` reads).

Faults, each fixed (the test failed before its fix):

- A push sent as an order is routed is labelled with the order's seq S while its values hold
  only the order's reservation. The gateway reads the order's fills (seq S): ``_need`` = S =
  ``_have``, and ``GET /account`` after the order's FILLED answer shows the quote reserved and
  no base received.
- With two matchers, the push made when one matcher's events settle is labelled with their seq
  while an older command of the same account is still queued at the other matcher (the fault
  review 41 fixed for snapshots, left in pushes).
- The gateway's ``_need`` is the seq of the last event read, not the newest: reading m2's fill
  (seq 11) and then m1's older one (seq 10) lowers it to 10, and a push labelled 10, which
  rightly holds seq 10's fill and not seq 11's, answers the request.
- Under ``fsync = "pipelined"`` a push can show a batch not yet durable: a held batch whose
  fsync ends between a step's two ``_route_durable`` calls is routed after the step's own
  batch was decided and before that one is held, so ``_flush_replies`` finds ``_held`` empty.

The fixes: a push is labelled with ``_applied_label()`` as a snapshot is, and made again as
the label moves on until it reaches the seq that touched it (``Watches.take``); the label
counts a command routed and outstanding at no matcher as applied; ``_need`` keeps the newest
seq; no balance goes out while anything journaled is not durable (``_durable_state``).

Holds: after a mixed workload on both matchers, each watched (account, asset)'s newest push or
snapshot equals the router's balance, every asset's total is what was deposited, nothing is
negative, and the fee account is pushed its fees.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.schema import RingexConfig
from procs.common.records import Balance, Record, Trade, WatchBalances
from procs.common.types import Side
from procs.gateway.instruments import Instruments
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_params import new_order
from tests.unit.router.test_review41_topology import (
    BTCUSD,
    ETH,
    ETHUSD,
    GATEWAYS,
    Rig,
    as_of,
    fund,
    topology,
    traded,
    workload,
)
from tests.unit.router.test_router import BTC, USD

FEE = 99  # ``test_router.config``'s fee account


class LabelRig(Rig):
    """``Rig``, keeping what gateway 1 reads: its ``Balance`` records, and every record fed to
    ``core`` (a REST core of gateway 1) in the gateway's order: replies, then events."""

    def __init__(self, cfg: RingexConfig) -> None:
        self.balances: list[Balance] = []
        self.core: RestOrders | None = None
        super().__init__(cfg)

    def read_gateways(self, replies: bool = True) -> int:
        got = 0
        fed: list[Record] = []
        if replies:
            for g, rep in self.replies.items():
                for r in rep.read(4096):
                    got += 1
                    if g == 1:
                        fed.append(r)
                        if isinstance(r, Balance):
                            self.balances.append(r)
        for g, tap in self.taps:
            events = tap.read(4096)
            got += len(events)
            if g == 1:
                fed += events
        if self.core is not None and fed:
            for record in fed:
                self.core.process(record)
            self.core.end_of_batch()
        return got


@pytest.fixture
def make(instance: str, tmp_path: Path) -> Iterator[Callable[..., LabelRig]]:
    made: list[LabelRig] = []

    def build(**kwargs: object) -> LabelRig:
        rig = LabelRig(topology(instance, tmp_path, **kwargs))  # type: ignore[arg-type]
        made.append(rig)
        return rig

    yield build
    for rig in made:
        rig.stop()


def watch(rig: LabelRig, *accounts: int) -> None:
    rig.gateways[1].publish_batch(
        [WatchBalances(0, 0, 1, 1, 4000 + a, a, 60_000) for a in accounts]
    )
    rig.pump()


def pushes_from(balances: list[Balance], account: int, label: int) -> list[Balance]:
    """The pushes (not snapshots) of ``account`` labelled ``label`` or later."""
    return [b for b in balances if not b.client_ref and b.account == account and b.seq >= label]


def claims(rig: LabelRig, pushes: list[Balance], account: int) -> dict[int, tuple[object, ...]]:
    """Per asset, the (label, free, reserved) of each push that disagrees with the balance
    now, once every event is in (nothing later touches ``account``)."""
    now = rig.router.sequencer.accounts
    return {
        b.asset: (b.seq, b.free, b.reserved, "now", *now.balance(account, b.asset))
        for b in pushes
        if (b.free, b.reserved) != now.balance(account, b.asset)
    }


# -- the faults ---------------------------------------------------------------------------------


def test_a_push_sent_as_an_order_is_routed_is_labelled_as_holding_its_fills(
    make: Callable[..., LabelRig],
) -> None:
    rig = make()
    fund(rig, 1, 7)
    fund(rig, 2, 8)
    rig.pump()
    watch(rig, 7)
    rig.gateways[2].publish_batch([traded(2, 601, 8, BTCUSD, Side.SELL, 1000, 10)])
    rig.pump()
    rig.balances.clear()
    rig.gateways[1].publish_batch([traded(1, 602, 7, BTCUSD, Side.BUY, 1000, 10)])
    rig.router.step(timeout_s=0.001)  # journaled, routed to m1 (not stepped), pushed
    crossing = rig.router.sequencer.next_seq - 1
    rig.read_gateways()
    routed = [b for b in rig.balances if b.account == 7 and not b.client_ref]
    assert {b.asset for b in routed} == {USD, BTC}  # the route's pushes: its reservation,
    assert pushes_from(routed, 7, crossing) == []  # labelled below the order
    rig.pump()  # m1 fills it; its events settle and are pushed
    settled = pushes_from(rig.balances, 7, crossing)
    assert {b.asset for b in settled} == {USD, BTC}
    assert claims(rig, settled, 7) == {}


def test_a_rest_account_answer_after_its_filled_order_lacks_the_fill(
    make: Callable[..., LabelRig],
) -> None:
    rig = make()
    fund(rig, 1, 7)
    fund(rig, 2, 8)
    rig.pump()
    out: list[Record] = []
    refs = itertools.count(5000)
    core = rig.core = RestOrders(1, Instruments(rig.cfg.symbols), rig.cfg.assets, out,
                                 lambda: next(refs))  # fmt: skip
    core.touch(7, 1, now_s=time.monotonic())  # the account's balances are watched
    rig.gateways[1].publish_batch(out)
    out.clear()
    rig.gateways[2].publish_batch([traded(2, 601, 8, BTCUSD, Side.SELL, 1000, 10)])
    rig.pump()
    before = core.account_balances(7)
    assert before == as_of(rig, 7)  # the snapshot is in
    params = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": "10.00",
              "quantity": "0.10"}  # fmt: skip
    ref = core.new_order(new_order(params, core.instruments), 7, 1, time.time_ns())
    rig.gateways[1].publish_batch(out)
    out.clear()
    rig.router.step(timeout_s=0.001)  # routed to m1; the reservation pushed
    rig.read_gateways()
    assert rig.matchers["m1"].step(timeout_s=0.001) == 1
    rig.read_gateways()  # Accepted, Trade, OrderDone: the order is answered
    ((_ref, outcome),) = [c for c in core.completed if c[0] == ref]
    assert outcome.order is not None and outcome.order.status == "FILLED"
    answer = core.account_balances(7)  # GET /account, right after the order's answer
    if not isinstance(answer, int):
        answer = dict(answer)  # as rest.py writes it out now (the core's dict moves on)
    rig.pump()
    assert isinstance(answer, int) or answer == as_of(rig, 7), (answer, as_of(rig, 7))


def test_a_settled_push_is_labelled_past_a_command_still_at_the_other_matcher(
    make: Callable[..., LabelRig],
) -> None:
    rig = make()
    fund(rig, 1, 7)
    fund(rig, 2, 8)
    rig.pump()
    watch(rig, 7)
    rig.gateways[2].publish_batch(
        [traded(2, 601, 8, ETHUSD, Side.SELL, 1000, 10),
         traded(2, 602, 8, BTCUSD, Side.SELL, 1000, 10)]
    )  # fmt: skip
    rig.pump()
    rig.gateways[1].publish_batch([traded(1, 603, 7, ETHUSD, Side.BUY, 1000, 10)])
    rig.router.step(timeout_s=0.001)  # routed to m2, which does not step
    older = rig.router.sequencer.next_seq - 1
    rig.gateways[1].publish_batch([traded(1, 604, 7, BTCUSD, Side.BUY, 1000, 10)])
    rig.router.step(timeout_s=0.001)  # routed to m1
    rig.read_gateways()
    rig.balances.clear()  # only what settling m1's events pushes, from here
    assert rig.matchers["m1"].step(timeout_s=0.001) == 1
    rig.router.step(timeout_s=0.001)  # settles m1's fill; pushes 7's USD and BTC
    rig.read_gateways(replies=True)
    pushed = [b for b in rig.balances if b.account == 7 and not b.client_ref]
    assert {b.asset for b in pushed} == {USD, BTC}  # m1's fill is pushed,
    assert pushes_from(pushed, 7, older) == []  # labelled below the command at m2
    assert rig.router._applied_label() < older  # as a snapshot now would be
    rig.pump()  # m2 fills the older buy
    assert rig.router.sequencer.accounts.balance(7, ETH)[0] > 10**12
    settled = pushes_from(rig.balances, 7, older)
    assert {b.asset for b in settled} >= {USD}
    assert claims(rig, settled, 7) == {}


def test_an_older_fill_read_after_a_newer_one_lowers_what_a_balance_request_waits_for(
    make: Callable[..., LabelRig],
) -> None:
    rig = make()  # for its symbols and assets only
    out: list[Record] = []
    refs = itertools.count(5000)
    core = RestOrders(1, Instruments(rig.cfg.symbols), rig.cfg.assets, out, lambda: next(refs))
    core.touch(7, 1, now_s=time.monotonic())
    (request,) = out
    assert isinstance(request, WatchBalances)
    core.process(Balance(5, 0, 1, 1, request.client_ref, 7, USD, 10**6, 0, 1))
    core.end_of_batch()

    def fill(seq: int, symbol: int) -> Trade:  # 7 buys 0.10 at 10.00 from 8
        return Trade(seq, 0, seq, symbol, 1000, 10, Side.BUY, 90 + seq, 8, 2, 0, 80 + seq, 7, 1, 0)

    core.process(fill(11, ETHUSD))  # m2's ring, read first
    core.process(fill(10, BTCUSD))  # m1's ring
    core.end_of_batch()
    assert isinstance(core.account_balances(7), int)  # waits: right so far
    core.process(Balance(10, 0, 1, 0, 0, 7, USD, 10**6 - 10_000, 0, 0))  # seq 10 in, 11 not
    core.end_of_batch()
    assert isinstance(core.account_balances(7), int)


def test_a_push_never_shows_a_batch_not_yet_durable(
    make: Callable[..., LabelRig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fsync = "pipelined"``, a command a ring a step (``router_batch`` 4: four rings). The
    journal thread's fsyncs are let through one at a time (a semaphore), so that B1's ends
    right after B2 is journaled, as a real one may (``_flush_replies``: "balances only of a
    durable state: none while a batch is held")."""
    rig = make(fsync="pipelined", router_batch=4)
    fund(rig, 1, 7)
    rig.pump()
    watch(rig, 7)
    real_fsync, permits, gated = os.fsync, threading.Semaphore(0), [True]

    def fsync(fd: int) -> None:
        if gated[0] and threading.current_thread().name.startswith("journal-fsync"):
            permits.acquire(timeout=5)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    journal = rig.router.journal
    real_append = journal.append
    # 7's three buys, one a step; B3 waits, so B2's fsync goes to the thread too
    b1, b2, b3 = (traded(1, 701 + k, 7, BTCUSD, Side.BUY, 1000, 10) for k in range(3))
    second = journal.next_seq + 1

    def append(first: int, images: bytes, count: int) -> None:
        real_append(first, images, count)
        if first == second:  # B2 journaled: B1's fsync ends now
            permits.release()
            while journal._flight is not None and not journal._flight[0].done():
                time.sleep(0.001)

    monkeypatch.setattr(journal, "append", append)
    try:
        rig.balances.clear()
        rig.gateways[1].publish_batch([b1, b2, b3])
        rig.router.step(timeout_s=0.001)  # B1: journaled, its fsync on the thread, held
        rig.router.step(timeout_s=0.001)  # B2: journaled; B1 durable meanwhile and routed
        assert journal.durable_seq < second  # B2 is not durable
        rig.read_gateways()
        usd = [(b.free, b.reserved) for b in rig.balances if b.account == 7 and b.asset == USD]
    finally:
        gated[0] = False
        for _ in range(4):
            permits.release()
    rig.pump()
    assert usd in ([], [(10**12 - 10_020, 10_020)])  # B1's route pushes B1 alone, or waits
    last = [b for b in rig.balances if b.account == 7 and b.asset == USD][-1]
    assert (last.free, last.reserved) == rig.router.sequencer.accounts.balance(7, USD)


# -- what holds ---------------------------------------------------------------------------------


def test_the_newest_push_of_every_watched_balance_is_the_routers_and_money_is_conserved(
    make: Callable[..., LabelRig],
) -> None:
    rig = make()
    traders = [100 + g for g in GATEWAYS]
    watch(rig, *traders, FEE)  # before any exists: snapshots of nothing, then pushes
    for g in GATEWAYS:
        fund(rig, g, 100 + g)  # the trader's account, opened and funded on the admin ring
        rig.gateways[g].publish_batch(workload(g, 60))
        rig.pump()
    rig.pump()
    accounts = rig.router.sequencer.accounts
    seen: dict[tuple[int, int], tuple[int, int]] = {}
    for b in rig.balances:
        if b.asset:
            seen[b.account, b.asset] = (b.free, b.reserved)
    for account in (*traders, FEE):
        for asset in (USD, BTC, ETH):
            now = accounts.balance(account, asset)
            assert seen.get((account, asset), (0, 0)) == now, (account, asset)
            assert min(now) >= 0
    for asset in (USD, BTC, ETH):
        assert accounts.totals(asset) == len(traders) * 10**12, asset
    assert seen[FEE, USD][0] > 0  # the fee account was pushed its fees


def test_a_snapshot_labelled_before_an_event_read_here_does_not_answer(
    make: Callable[..., LabelRig],
) -> None:
    """Review 42, the chaos review's suspicion (fixed): a balance request answered by a
    snapshot whose label is below an event of the account this gateway has read (a fill the
    router has not settled whole yet) would miss that fill; it waits for the push that holds
    it instead."""
    rig = make()  # for its symbols and assets only
    out: list[Record] = []
    refs = itertools.count(5000)
    core = RestOrders(1, Instruments(rig.cfg.symbols), rig.cfg.assets, out, lambda: next(refs))
    core.touch(7, 1, now_s=time.monotonic())
    (watch_request,) = out
    assert isinstance(watch_request, WatchBalances)
    fill = Trade(10, 0, 10, BTCUSD, 1000, 10, Side.BUY, 90, 8, 2, 0, 80, 7, 1, 0)
    core.process(fill)  # read here before the snapshot: _need 10
    core.end_of_batch()
    ref = core.account_balances(7)
    assert isinstance(ref, int)  # the first snapshot is asked for
    core.process(Balance(5, 0, 1, 1, ref, 7, USD, 10**6, 0, 1))  # labelled 5 < 10
    core.end_of_batch()
    assert ref not in [r for r, _ in core.completed]
    core.process(Balance(10, 0, 1, 0, 0, 7, USD, 10**6 - 10_000, 0, 0))  # holds seq 10
    core.end_of_batch()
    ((_ref, outcome),) = [c for c in core.completed if c[0] == ref]
    assert outcome.balances == {USD: (10**6 - 10_000, 0)}
