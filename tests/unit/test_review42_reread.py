"""Review 42, re-read: the four fixes of the day (``git log abc1c23..HEAD``) attacked.

Rigs: ``test_review41_topology``'s router, two matchers and three gateways, stepped by hand
(``LabelRig`` keeps gateway 1's ``Balance`` records); a hand-fed ``Watches``; a REST core
(``RestOrders``) with ``PrivateStreams._snapshot`` over a stand-in API.

Faults, each fixed (its test failed before):

- ``fsync = "pipelined"`` under sustained load (a command waiting at every step, each fsync
  ending after the next batch is journaled): ``_durable_state()`` is false at every
  ``_flush_replies``, so a watch renewal's snapshot never comes and no balance is pushed.
- ``Watches.take`` re-pushes every ``_behind`` slot at each label advance, not only those the
  label reached: 40 accounts touched at seqs 101..140 with the label moving one a take cost
  860 pushes for 40 changes.
- ``PrivateStreams._snapshot`` drops every held ``executionReport`` whose orderId is shown:
  a PENDING_NEW order (orderId 0, listed since review 42) in the snapshot drops a held
  REJECTED report of another order (orderId 0 too): its client never hears of the reject.
- ``RouterShell.close``: a pipelined fsync that fails while close waits for it raises out
  of ``close`` before ``journal.close()``: the directory lock stays held in the process.

The fixes: under ``"pipelined"``, balances that have waited ``BALANCES_WAIT_S`` for a
durable state make the next step fsync inline (``_pipelined_sync``); a slot behind is pushed
again once, when the label reaches its seq (a heap); the private stream's snapshot lists no
pending order (``openOrders`` does, after the answered ones); ``close`` releases the journal
and the rings in a ``finally``.

Holds: under ``"interval"`` the same sustained load answers the renewal; push and snapshot
labels never go backwards at a gateway; an expired lease leaves no ``_behind`` entry once
the label moves; a failure met in a step leaves ``close`` releasing the lock.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import os
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from procs.common.journal import JournalError
from procs.common.journal_writer import JournalWriter
from procs.common.records import Balance, Record, Rejected, WatchBalances
from procs.common.result_codes import ResultCode
from procs.common.topology import journal_dir
from procs.common.types import Side
from procs.core.accounts import Accounts
from procs.core.watches import Watches
from procs.gateway.instruments import Instruments
from procs.gateway.private_stream import PrivateStreams
from procs.gateway.rest import RestApi
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_params import new_order
from tests.unit.router.test_review41_topology import (
    BTCUSD,
    CODEC,
    GATEWAYS,
    fund,
    topology,
    traded,
    workload,
)
from tests.unit.router.test_review42_balance_labels import LabelRig
from tests.unit.router.test_router import USD, config

MS = 1_000_000


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


def renew(rig: LabelRig, account: int, ref: int) -> None:
    rig.gateways[1].publish_batch([WatchBalances(0, 0, 1, 1, ref, account, 60_000)])


def snapshots(rig: LabelRig, ref: int) -> list[Balance]:
    return [b for b in rig.balances if b.client_ref == ref]


def sustained(rig: LabelRig, rounds: int, pause_s: float = 0.0) -> Iterator[int]:
    """A command of account 7 published each round, one always waiting behind the step's."""
    refs = itertools.count(9000)
    buy = functools.partial(traded, 1, account=7, symbol=BTCUSD, side=Side.BUY, price=900, qty=1)
    rig.gateways[1].publish_batch([buy(ref=next(refs)), buy(ref=next(refs))])
    for k in range(rounds):
        rig.gateways[1].publish_batch([buy(ref=next(refs))])
        rig.router.step(timeout_s=0.001)
        for m in rig.matchers.values():
            m.step(timeout_s=0.001)
        rig.read_gateways()
        if pause_s:
            time.sleep(pause_s)
        yield k


# -- 1. balance pushes under load ---------------------------------------------------------------


def test_pipelined_sustained_load_starves_snapshots_and_pushes(
    make: Callable[..., LabelRig], monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make(fsync="pipelined", router_batch=4)  # a command a ring a step
    fund(rig, 1, 7)
    rig.pump()
    renew(rig, 7, 4007)
    rig.pump()
    assert snapshots(rig, 4007)  # the first watch is answered, the exchange idle
    real_fsync, permits, gated = os.fsync, threading.Semaphore(0), [True]

    def fsync(fd: int) -> None:
        if gated[0] and threading.current_thread().name.startswith("journal-fsync"):
            permits.acquire(timeout=5)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    journal = rig.router.journal
    real_append = journal.append

    def append(first: int, images: bytes, count: int) -> None:  # the fsync before ends now
        flight = journal._flight
        real_append(first, images, count)
        if flight is not None:
            permits.release()
            flight[0].result(timeout=5)

    monkeypatch.setattr(journal, "append", append)
    rig.balances.clear()
    try:
        for k in sustained(rig, 40):
            if k == 5:
                renew(rig, 7, 4008)
        answered = bool(snapshots(rig, 4008))
        pushed = [b for b in rig.balances if b.account == 7 and not b.client_ref]
    finally:
        gated[0] = False
        for _ in range(8):
            permits.release()
    rig.pump()
    assert snapshots(rig, 4008)  # once the load stops it comes
    assert answered and pushed, (answered, len(pushed))


def test_interval_sustained_load_answers_snapshots(make: Callable[..., LabelRig]) -> None:
    rig = make(fsync="interval", interval_ms=1, router_batch=4)
    fund(rig, 1, 7)
    rig.pump()
    renew(rig, 7, 4007)
    rig.pump()
    rig.balances.clear()
    for k in sustained(rig, 40, pause_s=0.002):
        if k == 5:
            renew(rig, 7, 4008)
    assert snapshots(rig, 4008)
    assert [b for b in rig.balances if b.account == 7 and not b.client_ref]


def test_labels_never_go_backwards_at_a_gateway(make: Callable[..., LabelRig]) -> None:
    rig = make()
    traders = [100 + g for g in GATEWAYS]
    for g in GATEWAYS:
        rig.gateways[1].publish_batch(
            [WatchBalances(0, 0, 1, 1, 4100 + a, a, 60_000) for a in traders]
        )
        fund(rig, g, 100 + g)  # the trader's account, opened and funded on the admin ring
        rig.gateways[g].publish_batch(workload(g, 60))
        rig.pump()
    labels = [b.seq for b in rig.balances]
    assert len(labels) > 20
    assert labels == sorted(labels)
    assert rig.router._applied_label() == rig.router.sequencer.next_seq - 1  # all settled


# -- Watches, by hand ---------------------------------------------------------------------------


@pytest.fixture
def accounts(tmp_path: Path) -> Accounts:
    accounts = Accounts(config("reread", tmp_path))
    for account in range(1, 41):
        assert accounts.create_account(account) == ResultCode.OK
        assert accounts.transfer(account, USD, 1_000_000, key=account) == ResultCode.OK
    return accounts


def test_behind_repushes_grow_with_the_square_of_the_accounts_behind(
    accounts: Accounts,
) -> None:
    w = Watches(accounts)
    for account in range(1, 41):
        w.register(1, account, 10**18)
        w.touch(account, USD, 100 + account)
    pushes = len(w.take(0, 100))
    for label in range(101, 141):
        pushes += len(w.take(0, label))
    assert not w._behind
    assert pushes <= 2 * 40, pushes


def test_an_expired_lease_leaves_nothing_behind_once_the_label_moves(
    accounts: Accounts,
) -> None:
    w = Watches(accounts)
    w.register(1, 7, 10 * MS)
    w.touch(7, USD, 105)
    assert len(w.take(0, 100)) == 1
    assert w._behind == {(7, USD): 105}
    assert w.take(20 * MS, 100) == []  # the label did not move: kept (bounded by slots)
    assert w.take(20 * MS, 101) == []  # expired: dropped, not pushed, not kept
    assert w._behind == {} and not w


def test_a_label_that_catches_up_pushes_each_behind_slot_once_more(accounts: Accounts) -> None:
    w = Watches(accounts)
    w.register(1, 7, 10**18)
    w.touch(7, USD, 105)
    w.take(0, 100)
    (again,) = w.take(0, 105)
    assert again[1].seq == 105 and not w._behind
    assert w.take(0, 106) == []


# -- 4. openOrders' pending orders and the private stream ---------------------------------------


def test_a_pending_order_in_a_stream_snapshot_hides_a_held_reject(tmp_path: Path) -> None:
    cfg = config("reread", tmp_path)
    out: list[Record] = []
    refs = itertools.count(5000)
    core = RestOrders(1, Instruments(cfg.symbols), cfg.assets, out, lambda: next(refs))
    core.streaming.add(7)
    params = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": "10.00",
              "quantity": "0.10"}  # fmt: skip
    q = core.new_order(new_order(params, core.instruments), 7, 1, time.time_ns())
    core.process(
        Rejected(0, time.time_ns(), 1, 1, q, 7, BTCUSD, 0, ResultCode.INSUFFICIENT_BALANCE)
    )
    core.end_of_batch()
    ((_acct, name, report),) = core.events  # Q's REJECTED, held behind the snapshot
    assert name == "executionReport" and report["status"] == "REJECTED"
    core.new_order(new_order(params, core.instruments), 7, 1, time.time_ns())  # P: pending

    async def no_balances(_account: int) -> list[object]:
        return []

    async def no_rows(*_args: object, **_kwargs: object) -> dict[int, list[object]]:
        return {}

    api = types.SimpleNamespace(core=core, cfg=cfg, balances=no_balances, open_order_rows=no_rows)
    api.open_orders_over = functools.partial(RestApi.open_orders_over, api)  # type: ignore[arg-type]
    streams = PrivateStreams(api, max_streams=4, queue_limit=100)  # type: ignore[arg-type]
    sub = types.SimpleNamespace(held=[("executionReport", report)])
    snap = asyncio.run(streams._snapshot(sub, 7))  # type: ignore[arg-type]
    assert snap["openOrders"] == []  # P is not listed: its NEW or REJECTED report follows
    assert sub.held == [("executionReport", report)]


# -- 3. the journal's failure and the router's close --------------------------------------------


def _fail_thread_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    real_fsync, failing = os.fsync, [False]

    def fsync(fd: int) -> None:
        if failing[0] and threading.current_thread().name.startswith("journal-fsync"):
            time.sleep(0.02)  # still in flight when the router looks
            raise OSError(errno.EIO, "injected")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return failing


def _lock_free(rig: LabelRig) -> bool:
    try:
        JournalWriter(journal_dir(rig.cfg), slot_size=CODEC.slot_size,
                      schema_id=CODEC.journal_schema_id).close()  # fmt: skip
    except (JournalError, OSError, BlockingIOError):
        return False
    return True


def _hold_a_batch(rig: LabelRig) -> None:
    """Two commands: the first journaled with its fsync on the thread (one more waits)."""
    rig.gateways[1].publish_batch(
        [traded(1, 8100 + k, 7, BTCUSD, Side.BUY, 900, 1) for k in range(2)]
    )
    rig.router.step(timeout_s=0.001)
    assert rig.router._held and rig.router.journal._flight is not None


def test_a_failure_met_in_a_step_leaves_close_releasing_the_lock(
    make: Callable[..., LabelRig], monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make(fsync="pipelined", router_batch=4)
    fund(rig, 1, 7)
    rig.pump()
    failing = _fail_thread_fsyncs(monkeypatch)
    failing[0] = True
    _hold_a_batch(rig)
    time.sleep(0.05)
    with pytest.raises(JournalError):
        for _ in range(5):
            rig.router.step(timeout_s=0.001)
    assert rig.router.journal.failed is not None
    failing[0] = False
    rig.router.close()  # no JournalError, and nothing held is routed or answered
    assert _lock_free(rig)
    rig.read_gateways()
    assert (1, 8100) not in rig.told and (1, 8101) not in rig.told


def test_a_failure_met_in_close_still_releases_the_lock(
    make: Callable[..., LabelRig], monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make(fsync="pipelined", router_batch=4)
    fund(rig, 1, 7)
    rig.pump()
    failing = _fail_thread_fsyncs(monkeypatch)
    failing[0] = True
    _hold_a_batch(rig)
    try:
        rig.router.close()
    except JournalError:
        pass
    finally:
        failing[0] = False
    assert _lock_free(rig)


def test_a_balance_wait_ends_with_the_watches(make: Callable[..., LabelRig]) -> None:
    """Mended after the reread (own): balances that were waiting for a durable state when
    their watches ended left ``_balances_since`` set, and every later step under
    ``"pipelined"`` fsynced inline for nothing; with nothing pending the wait ends."""
    rig = make(fsync="pipelined", router_batch=4)
    router = rig.router
    router._balances_since = time.monotonic() - 1.0  # waited past BALANCES_WAIT_S
    assert not router._watch_requests and not router.watches.pending
    router._flush_replies()
    assert router._balances_since == 0.0
