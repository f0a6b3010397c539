"""Balance watches: the pure core (snapshots, touches, coalescing, leases) with a hand-fed
``Accounts``, then the router over real rings: a watch's snapshot and the pushes that orders,
trades and transfers cause, the end of a watch, and no cost when nothing is watched."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.common.records import (
    NOT_OPEN,
    Accepted,
    Balance,
    CancelOrder,
    CreateAccount,
    OrderDone,
    Record,
    Rejected,
    Replaced,
    Trade,
    Transfer,
    WatchBalances,
)
from procs.common.result_codes import ResultCode
from procs.common.types import DoneReason, Side
from procs.core.accounts import Accounts
from procs.core.watches import Watches
from tests.unit.router.test_router import ADMIN, BTC, USD, Exchange, config, fund, order

FEE = 99  # the fee account of test_router's config
MS = 1_000_000
GW1, GW2 = 1, 2


def watch(account: int, lease_ms: int = 60_000, gateway: int = GW1, ref: int = 41) -> WatchBalances:
    return WatchBalances(0, 0, gateway, 3, ref, account, lease_ms)


# -- the pure core ----------------------------------------------------------------------------


@pytest.fixture
def accounts(tmp_path: Path) -> Accounts:
    accounts = Accounts(config("watches", tmp_path))
    for account in (7, 8):
        assert accounts.create_account(account) == ResultCode.OK
    assert accounts.transfer(7, USD, 1_000_000, key=1) == ResultCode.OK
    assert accounts.transfer(7, BTC, 3_000, key=2) == ResultCode.OK
    assert accounts.transfer(8, BTC, 50_000, key=3) == ResultCode.OK
    return accounts


def trade(maker: int, taker: int) -> Trade:
    return Trade(9, 0, 1, 1, 1000, 10, Side.BUY, 1, maker, GW1, 0, 2, taker, GW2, 0)


def pushed(pushes: list[tuple[int, Balance]]) -> list[tuple[int, int, int, int, int]]:
    """(gateway, account, asset, free, reserved) of each push, checking its fixed fields."""
    for gateway, push in pushes:
        assert (push.gateway, push.session, push.client_ref, push.last) == (gateway, 0, 0, 0)
    return [(g, p.account, p.asset, p.free, p.reserved) for g, p in pushes]


def test_snapshot_lists_held_assets_by_id_and_flags_the_last(accounts: Accounts) -> None:
    watches = Watches(accounts)
    snap = watches.execute(GW1, watch(7), now_ns=5, seq=12)
    assert [(b.asset, b.free, b.reserved, b.last) for b in snap] == [
        (USD, 1_000_000, 0, 0),
        (BTC, 3_000, 0, 1),
    ]
    assert {(b.seq, b.ts_ns, b.gateway, b.session, b.client_ref, b.account) for b in snap} == {
        (12, 5, GW1, 3, 41, 7)
    }
    (only,) = watches.execute(GW2, watch(8, ref=5), now_ns=5, seq=12)
    assert (only.asset, only.free, only.reserved, only.last, only.client_ref) == (
        BTC,
        50_000,
        0,
        1,
        5,
    )
    (unknown,) = watches.execute(GW1, watch(1234), now_ns=5, seq=12)  # never opened
    assert (unknown.asset, unknown.free, unknown.reserved, unknown.last) == (0, 0, 0, NOT_OPEN)
    assert accounts.create_account(1235) == ResultCode.OK
    (empty,) = watches.execute(GW1, watch(1235), now_ns=5, seq=12)  # open, holds nothing
    assert (empty.asset, empty.free, empty.reserved, empty.last) == (0, 0, 0, 1)
    assert watches.watchers(7) == (GW1,) and watches.watchers(1234) == (GW1,)


def test_lease_zero_drops_the_watch_without_an_answer(accounts: Accounts) -> None:
    watches = Watches(accounts)
    watches.execute(GW1, watch(7), 0, 1)
    watches.execute(GW2, watch(7, gateway=GW2), 0, 1)
    assert watches.execute(GW1, watch(7, lease_ms=0), 0, 1) == []
    assert watches.watchers(7) == (GW2,)
    assert watches.execute(GW2, watch(7, lease_ms=0), 0, 1) == []
    assert watches.execute(GW2, watch(7, lease_ms=0), 0, 1) == []  # twice: no error
    assert not watches
    watches.touch(7, USD)
    assert watches.take(0, 0) == []


def test_touches_coalesce_and_push_the_values_of_take_time(accounts: Accounts) -> None:
    watches = Watches(accounts)
    watches.execute(GW1, watch(7), 0, 1)
    watches.execute(GW2, watch(7, gateway=GW2), 0, 1)
    for seq in (28, 30, 29):
        watches.touch(7, USD, seq)
    watches.touch(8, BTC, 31)  # not watched
    assert accounts.transfer(7, USD, 5, key=10) == ResultCode.OK  # after the touch
    pushes = watches.take(now_ns=77, label=31)
    assert pushed(pushes) == [(GW1, 7, USD, 1_000_005, 0), (GW2, 7, USD, 1_000_005, 0)]
    assert {(p.seq, p.ts_ns) for _g, p in pushes} == {(31, 77)}  # the router's label
    assert watches.take(78, 31) == []  # nothing touched since
    assert watches.take(79, 32) == []  # nor behind the label


def test_a_push_labelled_below_its_touch_is_made_again_as_the_label_moves(
    accounts: Accounts,
) -> None:
    """Review 42: a push is labelled with the router's applied label, which may be below the
    seq that touched it (an order's reservation, pushed as it is routed; a fill while an
    older command waits at another matcher). It is pushed again at each take whose label has
    reached that seq, once: a gateway waiting for it gets it even when nothing touches the
    account again, and a touch costs two pushes at most however many accounts wait."""
    watches = Watches(accounts)
    watches.execute(GW1, watch(7), 0, 1)
    watches.touch(7, USD, 30)
    assert [p.seq for _g, p in watches.take(1, 20)] == [20]
    assert watches.take(2, 20) == []  # the label has not moved: nothing new to say
    assert watches.take(3, 25) == []  # moved, still below 30
    assert [p.seq for _g, p in watches.take(4, 31)] == [31]  # reached it
    assert watches.take(5, 40) == []  # done
    watches.touch(7, USD, 45)
    watches.touch(7, BTC, 41)
    assert [(p.asset, p.seq) for _g, p in watches.take(6, 42)] == [(USD, 42), (BTC, 42)]
    watches.touch(7, BTC, 50)  # touched again meanwhile: pushed, and the newer seq waited for
    assert [(p.asset, p.seq) for _g, p in watches.take(7, 46)] == [(USD, 46), (BTC, 46)]
    assert [(p.asset, p.seq) for _g, p in watches.take(8, 50)] == [(BTC, 50)]
    assert watches.take(9, 51) == []


def test_each_account_s_own_label_decides_its_pushes_and_their_repeat(accounts: Accounts) -> None:
    """Review 220: with ``label_of``, a push carries its account's own label (a matcher held
    where the account has no order holds it back no more), and a push made below its touch
    is made again once that account's label reaches it, whatever the others'."""
    watches = Watches(accounts)
    watches.execute(GW1, watch(7), 0, 1)
    watches.execute(GW1, watch(8), 0, 1)
    own = {7: 40, 8: 20}  # 8 has an order at the held matcher, 7 none

    def label(account: int) -> int:
        return own[account]

    watches.touch(7, USD, 30)
    watches.touch(8, BTC, 30)
    held = (("m2-out", 21),)  # what 8's label depends on (the router: matchers' heads)
    assert [(p.account, p.seq) for _g, p in watches.take(1, 40, label, held)] == [
        (7, 40),
        (8, 20),
    ]
    assert watches.take(2, 40, label, held) == []  # 8's own label has not moved
    own[8] = 35  # its matcher's head moved on: looked at again (review 224: only then)
    assert [(p.account, p.seq) for _g, p in watches.take(3, 40, label, (("m2-out", 36),))] == [
        (8, 35)
    ]
    assert watches.take(4, 41, label, ()) == []  # done: once


def test_the_accounts_symbols_follow_their_orders(exchange: Exchange) -> None:
    """``Accounts.symbols_of``, which the router's per-account label reads: a symbol while
    the account has an order there a matcher may still act on, none once it is done
    (``validate_internal_state`` counts them again after every step)."""
    accounts = exchange.router.sequencer.accounts
    fund(exchange, 7, 10_000_000, 0)
    fund(exchange, 8, 0, 50_000)
    exchange.send(1, order(71, 7, Side.BUY, 1000, 10))
    accounts.validate_internal_state()
    assert list(accounts.symbols_of(7)) == [1] and list(accounts.symbols_of(8)) == []
    exchange.send(1, order(81, 8, Side.SELL, 1000, 10))  # fills both: done
    accounts.validate_internal_state()
    assert list(accounts.symbols_of(7)) == [] and list(accounts.symbols_of(8)) == []


def test_accepted_commands_touch_what_they_reserve_or_move(accounts: Accounts) -> None:
    watches = Watches(accounts)
    watches.execute(GW1, watch(7), 0, 1)
    watches.touch_commands([CancelOrder(5, 0, GW1, 1, 1, 7, 1, 3), CreateAccount(6, 0, 1, 1, 2, 7)])
    assert watches.take(0, 100) == []
    code, placed = accounts.reserve_new(order(1, 7, Side.BUY, 1000, 200))
    assert code == ResultCode.OK
    watches.touch_commands([placed, Transfer(8, 0, GW1, 1, 3, 7, BTC, 0, 9)])
    free, reserved = accounts.balance(7, USD)
    assert reserved > 200_000 and free + reserved == 1_000_000  # 2.00 BTC at 10.00 + the fee
    assert pushed(watches.take(0, 100)) == [(GW1, 7, USD, free, reserved), (GW1, 7, BTC, 3_000, 0)]
    watches.touch_commands([Transfer(9, 0, GW1, 1, 3, 7, BTC, 1, 10)])
    assert pushed(watches.take(0, 100)) == [(GW1, 7, BTC, 3_000, 0)]  # its asset only


def test_events_touch_both_sides_of_a_trade_the_fee_account_and_a_moved_hold(
    accounts: Accounts,
) -> None:
    watches = Watches(accounts)
    for account in (7, 8, FEE):
        watches.execute(GW1, watch(account), 0, 1)
    watches.touch_events([trade(maker=7, taker=8)])
    assert [(a, asset) for _g, a, asset, _f, _r in pushed(watches.take(0, 100))] == [
        (7, USD),
        (7, BTC),
        (8, USD),
        (8, BTC),
        (FEE, USD),
        (FEE, BTC),
    ]
    watches.touch_events([Accepted(9, 0, GW1, 1, 1, 7, 1, 1, Side.BUY, 1000, 10)])
    assert watches.take(0, 100) == []  # an accepted order moved nothing
    for event in (
        OrderDone(9, 0, GW1, 1, 1, 8, 1, 1, DoneReason.CANCELLED, 0, 10),
        Rejected(9, 0, GW1, 1, 1, 8, 1, 1, ResultCode.UNKNOWN_ORDER),
        Replaced(9, 0, GW1, 1, 1, 8, 1, 1, 1000, 5),
    ):
        watches.touch_events([event])
        assert [(a, asset) for _g, a, asset, _f, _r in pushed(watches.take(0, 100))] == [
            (8, USD),
            (8, BTC),
        ]


def test_expired_leases_are_dropped_and_renewals_extend_them(accounts: Accounts) -> None:
    watches = Watches(accounts)
    watches.execute(GW1, watch(7, lease_ms=10), now_ns=0, seq=1)
    watches.execute(GW2, watch(7, lease_ms=10, gateway=GW2), now_ns=0, seq=1)
    watches.execute(GW2, watch(7, lease_ms=10, gateway=GW2), now_ns=5 * MS, seq=1)  # renewed
    watches.touch(7, USD)
    assert [g for g, _p in watches.take(10 * MS - 1, 100)] == [GW1, GW2]
    watches.touch(7, USD)
    assert [g for g, _p in watches.take(10 * MS, 100)] == [GW2]  # GW1's lease ended
    assert watches.watchers(7) == (GW2,)
    watches.touch(7, USD)
    assert watches.take(15 * MS, 100) == []
    assert not watches  # nothing watched: the router calls in no more


# -- the router over real rings -----------------------------------------------------------------


@pytest.fixture
def exchange(instance: str, tmp_path: Path) -> Iterator[Exchange]:
    ex = Exchange(config(instance, tmp_path))
    yield ex
    ex.stop()


def balances(ex: Exchange, gateway: int) -> list[Balance]:
    """The ``Balance`` records the gateway got, after one more router step (it sends what the
    last settlement touched)."""
    ex.router.step(timeout_s=0.001)
    return [r for r in ex.replies_of(gateway) if isinstance(r, Balance)]


def latest(*batches: list[Balance]) -> dict[tuple[int, int], tuple[int, int]]:
    """(account, asset) -> (free, reserved) of the newest record of each."""
    return {(b.account, b.asset): (b.free, b.reserved) for batch in batches for b in batch}


def test_a_watch_gets_a_snapshot_then_every_change(exchange: Exchange) -> None:
    fund(exchange, 7, usd=1_000_000, btc=0)
    fund(exchange, 8, usd=0, btc=50_000)
    exchange.replies_of(GW1)
    exchange.replies_of(GW2)
    router = exchange.router.sequencer
    seq = router.next_seq - 1
    exchange.send(GW1, watch(7), watch(FEE, ref=42))
    exchange.send(GW2, watch(8, gateway=GW2))
    assert router.next_seq - 1 == seq  # never sequenced
    snap = balances(exchange, GW1)
    assert [
        (b.account, b.asset, b.free, b.reserved, b.last, b.client_ref, b.seq) for b in snap
    ] == [
        (7, USD, 1_000_000, 0, 1, 41, seq),  # every command through it is in: the funding
        (FEE, 0, 0, 0, 1, 42, seq),
    ]
    (snap8,) = balances(exchange, GW2)
    assert (snap8.account, snap8.asset, snap8.free, snap8.last) == (8, BTC, 50_000, 1)

    # three orders in one batch: one push per asset, with the reservation of all three, as
    # they are routed (labelled below them: their matcher has not answered), and again once
    # their events are in (review 42)
    exchange.send(GW1, *(order(ref, 7, Side.BUY, 1000, 50) for ref in (1, 2, 3)))
    placed = balances(exchange, GW1)
    assert [(b.account, b.asset, b.client_ref, b.last, b.seq) for b in placed] == [
        (7, USD, 0, 0, seq),
        (7, BTC, 0, 0, seq),
        (7, USD, 0, 0, seq + 3),
        (7, BTC, 0, 0, seq + 3),
    ]
    usd = placed[2]
    assert usd.seq == router.next_seq - 1 == seq + 3
    assert (usd.free, usd.reserved) == router.accounts.balance(7, USD)
    assert (placed[0].free, placed[0].reserved) == (usd.free, usd.reserved)
    assert usd.free + usd.reserved == 1_000_000 and usd.reserved > 150_000

    # 8 sells 1.20 BTC into them: both sides and the fee account are pushed, nothing is lost
    exchange.send(GW2, order(4, 8, Side.SELL, 1000, 120, gateway=GW2))
    gw1, gw2 = balances(exchange, GW1), balances(exchange, GW2)
    assert {b.account for b in gw1} == {7, FEE} and {b.account for b in gw2} == {8}
    now = latest(snap, [snap8], placed, gw1, gw2)
    for key, value in now.items():
        assert value == router.accounts.balance(*key), key
    assert now[(7, BTC)] == (12_000, 0) and now[(8, BTC)] == (38_000, 0)
    assert sum(sum(now[(a, USD)]) for a in (7, 8, FEE)) == 1_000_000
    assert now[(FEE, USD)][0] > 0

    # a transfer pushes its asset; lease 0 ends the watch with no answer
    exchange.send(ADMIN, Transfer(0, 0, ADMIN, 1, 9, 7, USD, 500, 777))
    (deposit,) = balances(exchange, GW1)
    assert (deposit.asset, deposit.free) == (USD, now[(7, USD)][0] + 500)
    exchange.send(GW1, watch(7, lease_ms=0))
    assert balances(exchange, GW1) == []
    exchange.send(ADMIN, Transfer(0, 0, ADMIN, 1, 10, 7, USD, 500, 778))
    assert balances(exchange, GW1) == []
    assert exchange.router.watches.watchers(7) == ()


def test_an_expired_lease_stops_pushes_and_a_restart_forgets_watches(exchange: Exchange) -> None:
    fund(exchange, 7, usd=1_000_000, btc=0)
    exchange.send(GW1, watch(7, lease_ms=5))
    assert [b.last for b in balances(exchange, GW1)] == [1]
    time.sleep(0.02)
    exchange.send(GW1, order(1, 7, Side.BUY, 1000, 10))
    assert balances(exchange, GW1) == []
    assert not exchange.router.watches

    exchange.send(GW1, watch(7))
    assert len(balances(exchange, GW1)) == 1
    seq = exchange.router.sequencer.next_seq
    exchange.stop()
    exchange.start()  # recovery replays a journal that holds no watch
    assert not exchange.router.watches and exchange.router.sequencer.next_seq == seq
    exchange.send(ADMIN, Transfer(0, 0, ADMIN, 1, 9, 7, USD, 500, 777))
    assert exchange.router.sequencer.next_seq == seq + 1  # the deposit was sequenced
    assert balances(exchange, GW1) == []


def test_nothing_watched_costs_nothing(exchange: Exchange, monkeypatch: pytest.MonkeyPatch) -> None:
    def called(_records: object) -> None:
        raise AssertionError("the router touched balances with nothing watched")

    monkeypatch.setattr(exchange.router.watches, "touch_events", called)
    monkeypatch.setattr(exchange.router.watches, "touch_commands", called)
    fund(exchange, 7, usd=1_000_000, btc=0)
    fund(exchange, 8, usd=0, btc=50_000)
    exchange.send(GW1, order(1, 7, Side.BUY, 1000, 200))
    exchange.send(GW2, order(2, 8, Side.SELL, 1000, 150, gateway=GW2))
    assert exchange.router.sequencer.accounts.balance(8, BTC) == (35_000, 0)  # it traded
    replies: list[Record] = [
        *exchange.replies_of(ADMIN),  # the funding's answers
        *exchange.replies_of(GW1),
        *exchange.replies_of(GW2),
    ]
    assert replies and not any(isinstance(r, Balance) for r in replies)
