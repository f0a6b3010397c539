"""Review 180: a hostile review of the router's money invariants, on the pure cores.

Reviewed: ``procs/core/accounts.py`` (reservations, replaces' additions, transfers and their
keys, snapshot and restore), ``settlement.py`` (fills, fees, order lifetimes), ``money.py``
(holds, fees, caps), ``fees.py`` (the journaled schedule and fee account),
``transfer_keys.py``, ``sequencer.py`` (submit, settle, replay, state), driven through
``core_rig.Exchange`` and ``money_rig`` (the sequencer in front of both books, events settled
with a lag the test picks). Attacked: per-asset conservation over every account plus the fee
account, nothing negative, each hold released exactly once at every way an order ends,
a buy's hold covering its worst fill, fee rounding, withdrawals against held money, transfer
keys, and byte-identical state across a snapshot/restore mid-stream.

Fault found (fixed; its test passes now):

1. ``procs/core/accounts.py:147`` (``Accounts.untouched``): an account is "touched" when a
   ``(account, asset)`` key is in ``_free`` or ``_reserved``, even at 0; ``state()`` drops
   zero balances, so a snapshot/restore turns a touched account into an untouched one. On a
   journal from before ``FeeSchedule`` (``fee_account_recorded`` None), a seed fee account
   that received and paid out money (fees collected, then withdrawn to 0) is kept by the
   uninterrupted run at the first ``FeeSchedule`` that moves the fee account
   (``fees.set_fee_account``) and forgotten by a run restored from a snapshot taken before
   it: the states differ, and a later journaled deposit to that account is OK live and
   ``UNKNOWN_ACCOUNT`` on the restored run (a replay that cannot pass).
   Was (fixed: ``untouched`` judges by value, as the snapshot keeps balances). Test:
   ``test_a_snapshot_does_not_change_whether_the_seed_fee_account_is_kept``.

Found sound (passing tests below): conservation and the fee account's take to the unit over
random streams of every order type under four fee schedules (maker-only, taker-only, zero,
the 1,000 bps cap on both), with a snapshot/restore mid-stream continuing byte-identically
and the whole journal replayed to the live state; each way an order ends releasing its hold
exactly once (fill, cancel, DAY expiry, matcher reject, STP newest/oldest/both, FOK kill, IOC
and market rest, mass cancel, replace up/down in price and size, several replaces in flight,
a replace racing fills and one cut to the fills, iceberg slices, a stop-market and a
stop-limit triggered later at another price), checked against a ledger rebuilt here from the
trades; the buy hold exact to the unit at the fee margin's ceiling and never short at a
fill; both fees floored and conserved; withdrawals never reaching held money; transfer keys
idempotent (a retry answered as the first, another transfer under the key refused).

Leads not shown: fees are floored per fill, so an aggressor sweeping many small resting
orders (or a maker sliced by many small takers) pays less than the fee of the whole, down to
0 for fills whose notional x bps is under 10,000 minor units: README says per trade, so not
a fault, but a venue cost. ``_free`` keeps zero entries for ever (memory of accounts emptied),
harmless to money beyond fault 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procs.common.records import (
    AdminCommand,
    CancelOrder,
    FeeSchedule,
    MassCancel,
    NewOrder,
    Record,
    ReplaceOrder,
    Trade,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.types import AdminAction, Side, StpMode
from procs.core import fees
from procs.core.accounts import Accounts
from tests.unit.router import money_rig
from tests.unit.router.core_rig import (
    ASSETS,
    BTC,
    BTCUSD,
    BUY,
    DAY,
    ETH,
    ETHUSD,
    FEE,
    FOK,
    IOC,
    MARKET,
    OK,
    SELL,
    STOP,
    STOP_LIMIT,
    USD,
    exchange_config,
    funded,
    new_order,
    placed,
)

# BTC-USD: tick 5, notional p*q*10 USD minor, base q*100 BTC minor, maker 7 / taker 13 bps.
# ETH-USD: tick 1, lot 2, notional p*q, base q*100, maker 1,000 / taker 3 bps (maker larger).
CFG = exchange_config(max_notional=0, max_open=50)
UNITS = {BTCUSD: (USD, 10, BTC, 100, 7, 13), ETHUSD: (USD, 1, ETH, 100, 1_000, 3)}
START = {USD: 10**10, BTC: 10**7, ETH: 10**7}


class Ledger:
    """Every account's balance rebuilt from the deposits and the trades alone, the fees
    computed here from README's rule (floor of notional x bps, taker for the aggressor)."""

    def __init__(self) -> None:
        self.balances: dict[tuple[int, int], int] = {}
        for account in (1, 2, 3):
            for asset, amount in START.items():
                self.balances[(account, asset)] = amount

    def add(self, account: int, asset: int, amount: int) -> None:
        self.balances[(account, asset)] = self.balances.get((account, asset), 0) + amount

    def trade(self, t: Trade) -> None:
        quote, scale, base, base_scale, maker_bps, taker_bps = UNITS[t.symbol]
        notional = t.price * t.qty * scale
        maker_fee, taker_fee = notional * maker_bps // 10_000, notional * taker_bps // 10_000
        if t.aggressor == BUY:
            (buyer, buy_fee), (seller, sell_fee) = (
                (t.taker_account, taker_fee),
                (
                    t.maker_account,
                    maker_fee,
                ),
            )
        else:
            (buyer, buy_fee), (seller, sell_fee) = (
                (t.maker_account, maker_fee),
                (
                    t.taker_account,
                    taker_fee,
                ),
            )
        self.add(buyer, quote, -notional - buy_fee)
        self.add(buyer, base, t.qty * base_scale)
        self.add(seller, base, -t.qty * base_scale)
        self.add(seller, quote, notional - sell_fee)
        self.add(FEE, quote, buy_fee + sell_fee)


class Rig:
    def __init__(self) -> None:
        self.ex = funded(CFG, **{"usd": START[USD], "btc": START[BTC], "eth": START[ETH]})
        self.ledger = Ledger()
        self.refs = itertools.count(1)

    def order(self, account: int, side: Side, price: int, qty: int, **kw: Any) -> NewOrder:
        return placed(self.ex, new_order(account, side, price, qty, ref=next(self.refs), **kw))

    def submit(self, command: Record) -> Record | None:
        return self.ex.submit(command)

    def settle(self) -> None:
        for event in self.ex.settle():
            if isinstance(event, Trade):
                self.ledger.trade(event)
        self.ex.check()

    def cancel(self, account: int, order: NewOrder) -> None:
        ref = next(self.refs)
        assert self.submit(
            CancelOrder(0, 0, 1, account, ref, account, order.symbol, order.order_id)
        )

    def replace(self, account: int, order: NewOrder, price: int, total: int) -> None:
        ref = next(self.refs)
        cmd = ReplaceOrder(
            *(0, 0, 1, account, ref, account, order.symbol, order.order_id, price, total)
        )
        assert self.submit(cmd) is not None

    def last_trade(self, price: int) -> None:
        """A trade at ``price`` between traders 3 and 2, one unit."""
        self.order(3, SELL, price, 1)
        self.order(2, BUY, price, 1)
        self.settle()

    def ended(self) -> None:
        """Nothing rests and nothing is held: every hold was released once, and every free
        balance is what the ledger makes it."""
        self.settle()
        state = self.ex.accounts.state()
        assert state.orders == [], state.orders
        assert all(reserved == 0 for *_, reserved in state.balances), state.balances
        for account in (1, 2, 3, FEE):
            for asset in ASSETS:
                got = self.ex.accounts.balance(account, asset)
                assert got == (self.ledger.balances.get((account, asset), 0), 0), (
                    account,
                    asset,
                )


def _filled(r: Rig) -> None:
    buy = r.order(1, BUY, 10_000, 10)
    r.settle()
    r.order(2, SELL, 10_000, 10)
    del buy


def _improved_then_cancelled(r: Rig) -> None:
    r.order(2, SELL, 10_000, 4)
    buy = r.order(1, BUY, 10_050, 10)  # takes 4 at 10,000, rests 6 at 10,050
    r.settle()
    r.cancel(1, buy)


def _day_expired(r: Rig) -> None:
    r.order(1, BUY, 9_990, 5, tif=DAY)
    r.order(2, SELL, 10_500, 5, tif=DAY)
    r.settle()
    assert r.submit(AdminCommand(0, 0, AdminAction.END_OF_SESSION, 0, 1))


def _matcher_rejects(r: Rig) -> None:
    r.order(1, BUY, 10_001, 5)  # off the tick: the matcher's Rejected releases it


def _stp(mode: StpMode) -> Callable[[Rig], None]:
    def run(r: Rig) -> None:
        sell = r.order(1, SELL, 10_000, 5)
        buy = r.order(1, BUY, 10_000, 8, stp=mode)
        r.settle()
        for order in (sell, buy):
            if order.order_id in {o.order_id for o in r.ex.accounts.state().orders}:
                r.cancel(1, order)

    return run


def _fok_killed(r: Rig) -> None:
    sell = r.order(2, SELL, 10_000, 3)
    r.order(1, BUY, 10_000, 5, tif=FOK)
    r.settle()
    r.cancel(2, sell)


def _ioc_rest(r: Rig) -> None:
    r.order(2, SELL, 10_000, 3)
    r.order(1, BUY, 10_010, 5, tif=IOC)


def _market_rest(r: Rig) -> None:
    r.last_trade(10_000)
    r.order(2, SELL, 10_000, 3)
    r.order(2, SELL, 11_000, 3)  # past the cap (10,500): never reached
    market = r.order(1, BUY, 0, 5, kind=MARKET, tif=IOC)
    assert market.price == 10_500
    r.settle()
    assert r.submit(MassCancel(0, 0, 1, 2, next(r.refs), 2, 0))


def _mass_cancel(r: Rig) -> None:
    r.order(1, BUY, 9_000, 5)
    r.order(1, SELL, 11_000, 5)
    r.order(1, BUY, 900, 4, symbol=ETHUSD)
    assert r.submit(MassCancel(0, 0, 1, 1, next(r.refs), 1, 0))


def _replaced_up_and_down(r: Rig) -> None:
    buy = r.order(1, BUY, 10_000, 10)
    sell = r.order(2, SELL, 10_500, 10)
    r.replace(1, buy, 10_200, 20)  # up in price and size
    r.replace(1, buy, 9_800, 6)  # down in both, in flight with the first
    r.replace(2, sell, 10_600, 14)
    r.replace(2, sell, 10_400, 3)
    r.settle()
    r.order(3, SELL, 9_800, 2)  # fills 2 of the bid at 9,800
    r.settle()
    r.cancel(1, buy)
    r.cancel(2, sell)


def _replace_racing_fills(r: Rig) -> None:
    buy = r.order(1, BUY, 10_000, 10)
    r.settle()
    r.order(2, SELL, 10_000, 4)  # not settled when the replaces are decided
    r.replace(1, buy, 10_010, 12)
    r.order(2, SELL, 10_010, 3)
    r.replace(1, buy, 9_990, 7)  # the total is 7: 7 filled cuts it to its fills
    r.settle()


def _iceberg(r: Rig) -> None:
    buy = r.order(1, BUY, 10_000, 20, display=5)
    r.settle()
    r.order(2, SELL, 10_000, 7)
    r.order(3, SELL, 9_995, 4)
    r.settle()
    r.cancel(1, buy)


def _stop_market_later(r: Rig) -> None:
    r.last_trade(10_000)
    stop = r.order(1, BUY, 0, 5, kind=STOP, tif=IOC, stop=10_100)
    assert stop.price == 10_605  # capped at the band above its stop
    r.order(2, SELL, 10_300, 3)
    r.settle()
    r.last_trade(10_200)  # past the stop: triggers, takes 3 at 10,300, the rest expires


def _stop_limit_later(r: Rig) -> None:
    r.last_trade(10_000)
    stop = r.order(1, BUY, 10_150, 6, kind=STOP_LIMIT, stop=10_100)
    r.order(2, SELL, 10_120, 2)
    r.settle()
    r.last_trade(10_100)  # triggers: takes 2 at 10,120, rests 4 at 10,150
    r.cancel(1, stop)


def _maker_fee_buy(r: Rig) -> None:
    r.order(1, BUY, 999, 2, symbol=ETHUSD)  # 1,998 + ceil(199.8) = 2,198 held
    r.settle()
    assert r.ex.accounts.balance(1, USD)[1] == 2_198
    r.order(2, SELL, 999, 2, symbol=ETHUSD)  # the buyer pays floor(199.8): 1 unit freed


ENDINGS: dict[str, Callable[[Rig], None]] = {
    "filled": _filled,
    "improved_then_cancelled": _improved_then_cancelled,
    "day_expired": _day_expired,
    "matcher_rejects": _matcher_rejects,
    "stp_newest": _stp(StpMode.CANCEL_NEWEST),
    "stp_oldest": _stp(StpMode.CANCEL_OLDEST),
    "stp_both": _stp(StpMode.CANCEL_BOTH),
    "fok_killed": _fok_killed,
    "ioc_rest": _ioc_rest,
    "market_rest": _market_rest,
    "mass_cancel": _mass_cancel,
    "replaced_up_and_down": _replaced_up_and_down,
    "replace_racing_fills": _replace_racing_fills,
    "iceberg": _iceberg,
    "stop_market_later": _stop_market_later,
    "stop_limit_later": _stop_limit_later,
    "maker_fee_buy": _maker_fee_buy,
}


def test_every_way_an_order_ends_releases_its_hold_exactly_once() -> None:
    for name, ending in ENDINGS.items():
        r = Rig()
        ending(r)
        try:
            r.ended()
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


def test_a_buy_hold_is_exact_at_the_margin_ceiling_and_covers_a_fill_at_its_limit() -> None:
    r = Rig()
    # 10,005 x 1 x 10 = 100,050; taker 13 bps: 130.065 -> hold 100,050 + 131
    buy = r.order(1, BUY, 10_005, 3)
    assert r.ex.accounts.balance(1, USD)[1] == 3 * 100_050 + 391  # ceil(390.195)
    r.settle()
    for _ in range(3):  # three fills of 1, each paying notional + floor(70.035) as maker
        r.order(2, SELL, 10_005, 1)
        r.settle()
    del buy
    r.ended()


def test_fees_are_floored_on_both_sides_and_no_unit_is_made_or_lost() -> None:
    r = Rig()
    for price, qty in ((5, 1), (10_005, 1), (9_995, 7), (15, 3)):
        r.order(2, SELL, price, qty)
        r.order(1, BUY, price, qty)  # the buyer takes: taker fee on the buy side
        r.order(1, BUY, price, qty)
        r.order(2, SELL, price, qty)  # the seller takes
        r.settle()
    r.ended()
    fee_usd = r.ex.accounts.balance(FEE, USD)[0]
    assert fee_usd == r.ledger.balances[(FEE, USD)] > 0
    # the smallest trade (notional 50) pays no fee on either side: floor(0.035), floor(0.065)
    assert 50 * 13 // 10_000 == 0


def test_withdrawals_never_reach_held_money() -> None:
    r = Rig()
    free = r.ex.accounts.balance(3, USD)[0]
    assert r.submit(Transfer(0, 0, 1, 3, 1, 3, USD, -(free - 2_000_000), 900)) is not None
    r.order(3, BUY, 10_000, 1)  # holds 100,000 + 130
    free, held = r.ex.accounts.balance(3, USD)
    assert held == 100_130 and free == 2_000_000 - 100_130
    assert r.submit(Transfer(0, 0, 1, 3, 2, 3, USD, -(free + 1), 901)) is None
    assert r.submit(Transfer(0, 0, 1, 3, 3, 3, USD, -(free + held), 902)) is None
    assert r.submit(Transfer(0, 0, 1, 3, 4, 3, USD, -free, 903)) is not None
    assert r.ex.accounts.balance(3, USD) == (0, 100_130)
    r.ex.check()


def test_a_transfer_key_applies_once_and_refuses_another_transfer() -> None:
    accounts = Accounts(CFG)
    assert accounts.create_account(1) == OK and accounts.create_account(2) == OK
    assert accounts.transfer(1, USD, 500, 77, seq=5, ts_ns=10) == OK
    assert accounts.transfer(1, USD, 500, 77, seq=6, ts_ns=11) == ResultCode.DUPLICATE_TRANSFER
    assert accounts.repeat_of(1, USD, 500, 77, 11) == 5  # a retry: answered as the first
    assert accounts.repeat_of(2, USD, 500, 77, 11) == 0  # another transfer: refused
    assert accounts.transfer(2, USD, 500, 77, seq=7, ts_ns=12) == ResultCode.DUPLICATE_TRANSFER
    assert accounts.transfer(1, USD, -501, 78, seq=8, ts_ns=13) == ResultCode.INSUFFICIENT_BALANCE
    assert accounts.transfer(1, USD, -500, 78, seq=9, ts_ns=14) == OK  # a refusal kept no key
    assert accounts.balance(1, USD) == (0, 0) and accounts.totals(USD) == 0
    restored = Accounts.restore(CFG, accounts.snapshot())
    assert restored.transfer(1, USD, 500, 77, seq=10, ts_ns=15) == ResultCode.DUPLICATE_TRANSFER
    assert restored.state_hash() == accounts.state_hash()


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    fee_schedule=st.sampled_from(
        [
            (1_000, 0, 0, 1_000, 1_000, 0),
            (0, 1_000, 1_000, 0, 0, 1_000),
            (0, 0, 0, 0, 0, 0),
            (1_000, 1_000, 1_000, 1_000, 1_000, 1_000),
        ]
    ),
    ops=st.lists(money_rig.op_strategy, min_size=20, max_size=90),
    cut=st.integers(0, 89),
)
def test_random_streams_conserve_money_and_a_restore_mid_stream_changes_nothing(
    fee_schedule: tuple[int, int, int, int, int, int], ops: list[money_rig.Op], cut: int
) -> None:
    cfg = money_rig.market_config(fee_schedule)
    run = money_rig.funded_run(cfg)
    driver = money_rig.Driver(run)
    cut = min(cut, len(ops))
    for op in ops[:cut]:
        driver.step(op)  # conservation, fee oracle, nothing negative, holds == books'
    copy = money_rig.copy_of(run, run.ex.restored())
    out_at, tape_at = len(run.ex.out), len(run.tape)
    for op in ops[cut:]:
        driver.step(op)
    for action in run.tape[tape_at:]:
        copy.do(action)
        copy.check()
    assert copy.ex.out == run.ex.out[out_at:]
    assert copy.ex.hashes() == run.ex.hashes()
    run.settle_all()
    run.check()
    replay = money_rig.replayed(cfg, run.ex.journal)
    assert replay.sequencer.accounts.state_hash() == run.ex.accounts.state_hash()


def test_a_snapshot_does_not_change_whether_the_seed_fee_account_is_kept() -> None:
    """Was (fixed: ``Accounts.untouched`` judges by value). A seed fee account emptied to 0
    was kept by the live run at the first FeeSchedule and dropped by a restored one."""
    live = Accounts(CFG)  # a journal from before FeeSchedule: the fee account is the seed
    assert live.fee_account_recorded is None
    assert live.transfer(FEE, USD, 100, 1, seq=1, ts_ns=1) == OK  # fees, say, collected
    assert live.transfer(FEE, USD, -100, 2, seq=2, ts_ns=2) == OK  # and paid out
    restored = Accounts.restore(CFG, live.snapshot())
    assert restored.state_hash() == live.state_hash()
    moved = FeeSchedule(3, 3, 0, 0, 0, 77)  # the first record moves the fee account
    for accounts in (live, restored):
        fees.apply(accounts, moved)
    assert restored.state().accounts == live.state().accounts
    assert restored.transfer(FEE, USD, 5, 3, seq=4, ts_ns=4) == live.transfer(
        FEE, USD, 5, 3, seq=4, ts_ns=4
    )
