"""A hostile review of the router's money side (``procs/core/sequencer.py``, ``accounts.py``,
``settlement.py``, ``fees.py``, ``money.py``, ``watches.py`` and how ``procs/router/main.py``
uses them).

Failing tests are bugs on the code they were written against. The passing ones pin behaviour
that was checked and found correct: a per-account ledger oracle over random streams (not only
totals: buyer pays exactly what the seller receives plus both fees, each account to the unit),
price improvement released at the fill, a stop-market buy held at its cap, an iceberg's
reserve and STP cancel-both released, and a withdrawal never touching held money.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.schema import RingexConfig
from procs.common.records import (
    AdminCommand,
    Balance,
    CreateAccount,
    MassCancel,
    Record,
    Trade,
    Transfer,
    WatchBalances,
)
from procs.common.types import AdminAction, Side, StpMode
from tests.unit.router import core_rig as core
from tests.unit.router import money_rig as money
from tests.unit.router.money_rig import Driver, Op, Run, Settle, Submit

from .test_router import USD as RUSD
from .test_router import Exchange as ShellExchange
from .test_router import config as shell_config
from .test_router import fund, order

# -- bugs -------------------------------------------------------------------------------------


def test_balance_watch_of_a_fee_account_changed_at_restart_gets_no_fee_pushes(
    instance: str, tmp_path: Path
) -> None:
    """The operator moves ``risk.fee_account`` from 99 to 100 and restarts (README: "a
    starting router whose configured ... ``risk.fee_account`` differ[s] from what its state
    holds journals a ``FeeSchedule``"). From then on every trade's fees are credited to 100
    (settlement.py:124, ``self.fee_account``, updated by ``fees.set_fee_account``). A
    gateway watching account 100 must get a ``Balance`` push when it changes (watches.py:
    "a spurious one is harmless, a missing one is not").

    What is wrong: ``Watches.__init__`` copies ``accounts.fee_account`` once
    (procs/core/watches.py:55) and ``touch_events`` touches that copy for every trade
    (watches.py:135-140). ``RouterShell.__init__`` builds the watches (procs/router/main.py:
    111) from the recovered state, whose fee account is still the old one, and only then
    journals and applies the new fees and fee account (``_journal_fees``, main.py:126). So
    after the restart every trade touches the old fee account 99, and the watcher of the
    fee account in force (100) never hears that its balance grew: its view stays wrong until
    it renews its lease. Fix: read ``self.accounts.fee_account`` in ``touch_events`` (or
    build the watches after ``_journal_fees``)."""
    cfg = shell_config(instance, tmp_path)
    ex = ShellExchange(cfg)
    try:
        fund(ex, 7, usd=10**9, btc=0)
        fund(ex, 8, usd=0, btc=10**6)
        ex.replies_of(1)
        ex.replies_of(2)
        ex.stop()
        ex.cfg = msgspec.structs.replace(
            cfg, risk=msgspec.structs.replace(cfg.risk, fee_account=100)
        )
        ex.start()
        accounts = ex.router.sequencer.accounts
        assert accounts.fee_account == 100  # the restart put the new fee account in force
        ex.send(1, WatchBalances(0, 0, 1, 1, 500, 100, 60_000))
        snapshot = ex.replies_of(1)
        assert [b.free for b in snapshot if isinstance(b, Balance)] == [0]  # nothing yet
        ex.send(2, order(10, 8, Side.SELL, 1000, 100, gateway=2))
        ex.send(1, order(11, 7, Side.BUY, 1000, 100))
        ex.pump()
        fees = accounts.balance(100, RUSD)[0]
        assert fees > 0  # the trade paid its fees to account 100
        pushed = [
            r
            for r in ex.replies_of(1)
            if isinstance(r, Balance) and r.account == 100 and r.asset == RUSD
        ]
        assert pushed and pushed[-1].free == fees, (
            f"fee account 100 now holds {fees} USD minor, but its watcher got no push "
            f"({pushed}): the watches touched the fee account they were made with, not "
            f"the accounts' {ex.router.watches.accounts.fee_account}"
        )
    finally:
        ex.stop()


# -- checked and found correct -----------------------------------------------------------------

#: Fees at and near the cap, maker above taker on two symbols: rounding on every fill.
LEDGER_CFG = money.market_config((1_000, 999, 13, 7, 1, 1_000))


class LedgerRun(Run):
    """A ``Run`` that also keeps an independent ledger of every (account, asset): deposits and
    withdrawals as accepted, and per trade the buyer paying notional + its fee and getting
    base(qty), the seller giving base(qty) and getting notional - its fee, the fee account
    getting both fees (units and bps from the config, not from ``Market``)."""

    ledger: dict[tuple[int, int], int]

    def do(self, action: money.Action) -> Record | None:
        if isinstance(action, Settle):
            self.tape.append(action)
            cfg = self.ex.cfg
            for event in self.ex.settle(action.matcher, action.count):
                if isinstance(event, Trade):
                    self._book(cfg, event)
            return None
        command = super().do(action)
        if isinstance(command, Transfer):
            key = (command.account, command.asset)
            self.ledger[key] = self.ledger.get(key, 0) + command.amount
        return command

    def _book(self, cfg: RingexConfig, t: Trade) -> None:
        quote, scale, base, base_scale = money.units(cfg, t.symbol)
        maker_bps, taker_bps = money.bps_of(cfg)[t.symbol]
        notional = t.price * t.qty * scale
        maker_fee, taker_fee = notional * maker_bps // 10_000, notional * taker_bps // 10_000
        self.fees[quote] += maker_fee + taker_fee
        taker, maker = (t.taker_account, taker_fee), (t.maker_account, maker_fee)
        (buyer, buyer_fee), (seller, seller_fee) = (
            (taker, maker) if t.aggressor == Side.BUY else (maker, taker)
        )
        for key, delta in (
            ((buyer, quote), -(notional + buyer_fee)),
            ((buyer, base), t.qty * base_scale),
            ((seller, base), -t.qty * base_scale),
            ((seller, quote), notional - seller_fee),
            ((money.FEE, quote), maker_fee + taker_fee),
        ):
            self.ledger[key] = self.ledger.get(key, 0) + delta

    def check(self) -> None:
        super().check()
        accounts = self.ex.accounts
        for account in (*money.TRADERS, money.FEE):
            for asset in core.ASSETS:
                held = sum(accounts.balance(account, asset))
                assert held == self.ledger.get((account, asset), 0), (account, asset)


def _ledger_run() -> LedgerRun:
    run = LedgerRun(core.Exchange.fresh(LEDGER_CFG))
    run.ledger = {}
    key = itertools.count(1)
    for account in money.TRADERS:
        run.do(Submit(CreateAccount(0, 0, 1, account, 0, account), 0))
        rich = account in money.RICH
        for asset, amount in ((core.USD, 10**9), (core.BTC, 10**8), (core.ETH, 10**7)):
            given = amount if rich else amount // 100_000  # the poor one meets its limits
            run.do(Submit(Transfer(0, 0, 1, account, 0, account, asset, given, next(key)), 0))
    run.check()
    return run


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=st.lists(money.op_strategy, min_size=40, max_size=140))
def test_every_account_holds_exactly_what_its_transfers_and_trades_make_it(
    ops: list[Op],
) -> None:
    """Random streams (new orders of every type, replaces racing fills, cancels, mass
    cancels, halts, end of session, deposits and withdrawals around the free balance, events
    settled with random lag) on three symbols sharing assets, fees up to the cap. After every
    step, besides ``Run.check`` (nothing negative, totals, holds = books' needs), each
    account's free + reserved of each asset equals the independent ledger; at the end,
    everything cancelled, nothing is held and a replay of the journal is the same state."""
    driver = Driver(_ledger_run())
    for op in ops:
        driver.step(op)
    run = driver.run
    run.settle_all()
    run.do(Submit(MassCancel(0, 0, 1, 1, 0, 0, 0), driver.now))
    run.do(Submit(AdminCommand(0, 0, AdminAction.RESUME, 0, 0), driver.now))
    run.settle_all()
    run.check()
    assert all(r == 0 for _, _, _, r in run.ex.accounts.state().balances)
    rec = money.replayed(LEDGER_CFG, run.ex.journal)
    assert rec.sequencer.accounts.state_hash() == run.ex.accounts.state_hash()


def _core_hold(price: int, qty: int, bps: int = 13) -> int:
    """A BTC-USD buy's hold on the core rig: notional p*q*10 plus its ceil fee margin."""
    notional = price * qty * 10
    return notional + -(-notional * bps // 10_000)


def test_price_improvement_is_released_at_the_fill_not_when_the_order_ends() -> None:
    """A buy of 10 at 10_500 takes 5 offered at 10_000 and rests 5: right after the fill it
    holds exactly what its resting 5 need at 10_500, and has paid 10_000's notional plus the
    taker fee (13 bps) of what it took; the seller got notional less the maker fee (7 bps)."""
    ex = core.funded(core.exchange_config())
    core.placed(ex, core.new_order(1, core.SELL, 10_000, 5, ref=1))
    core.placed(ex, core.new_order(2, core.BUY, 10_500, 10, ref=2))
    ex.settle()
    ex.check()
    notional = 10_000 * 5 * 10
    assert ex.accounts.balance(2, core.USD) == (
        10**10 - notional - notional * 13 // 10_000 - _core_hold(10_500, 5),
        _core_hold(10_500, 5),
    )
    assert ex.accounts.balance(1, core.USD) == (10**10 + notional - notional * 7 // 10_000, 0)
    assert ex.accounts.balance(core.FEE, core.USD) == (notional * 20 // 10_000, 0)


def test_a_stop_market_buy_holds_its_stop_cap_and_pays_only_what_it_trades() -> None:
    """A stop-market buy sent without a price is capped at stop x 1.05 on the tick
    (10_100 -> 10_605) and holds that at once; triggered by a trade at 10_100 it takes the
    ask at 10_200 and gets everything else back."""
    ex = core.funded(core.exchange_config())
    core.placed(ex, core.new_order(1, core.SELL, 10_000, 1, ref=1))
    core.placed(ex, core.new_order(2, core.BUY, 10_000, 1, ref=2))  # last trade 10_000
    ex.settle()
    stop = core.placed(ex, core.new_order(3, core.BUY, 0, 4, ref=3, kind=core.STOP, stop=10_100))
    assert stop.price == 10_605
    assert ex.accounts.balance(3, core.USD) == (
        10**10 - _core_hold(10_605, 4),
        _core_hold(10_605, 4),
    )
    core.placed(ex, core.new_order(1, core.SELL, 10_200, 4, ref=4))
    core.placed(ex, core.new_order(1, core.SELL, 10_100, 1, ref=5))
    core.placed(ex, core.new_order(2, core.BUY, 10_100, 1, ref=6))  # trades 10_100: triggers
    ex.settle()
    ex.check()
    notional = 10_200 * 4 * 10
    assert ex.accounts.balance(3, core.USD) == (10**10 - notional - notional * 13 // 10_000, 0)
    assert ex.accounts.balance(3, core.BTC) == (10**7 + 4 * 100, 0)


def test_iceberg_reserve_and_stp_cancel_both_release_every_hold() -> None:
    """A DAY iceberg sell of 20 showing 5, hit for 7 (a slice refreshed from its reserve),
    holds its 13 left until the end of session expires it, then nothing. A sell of account 3
    against its own bid with CANCEL_BOTH ends both orders and releases both holds."""
    ex = core.funded(core.exchange_config())
    core.placed(ex, core.new_order(1, core.SELL, 10_000, 20, ref=1, tif=core.DAY, display=5))
    core.placed(ex, core.new_order(2, core.BUY, 10_000, 7, ref=2))
    ex.settle()
    ex.check()
    assert ex.accounts.balance(1, core.BTC) == (10**7 - 20 * 100, 13 * 100)
    ex.submit(AdminCommand(0, 0, AdminAction.END_OF_SESSION, core.BTCUSD, 0))
    ex.settle()
    ex.check()
    assert ex.accounts.balance(1, core.BTC) == (10**7 - 7 * 100, 0)
    core.placed(ex, core.new_order(3, core.BUY, 9_000, 3, ref=3))
    core.placed(ex, core.new_order(3, core.SELL, 9_000, 3, ref=4, stp=StpMode.CANCEL_BOTH))
    ex.settle()
    ex.check()
    assert ex.accounts.balance(3, core.USD) == (10**10, 0)
    assert ex.accounts.balance(3, core.BTC) == (10**7, 0)
    assert ex.accounts.state().orders == []


def test_a_withdrawal_never_reaches_held_money_and_a_self_quoted_symbol_is_refused() -> None:
    """With a bid holding part of its USD, an account may withdraw its free USD to the
    unit, not one unit more; the bid still settles in full afterwards. And a symbol whose
    base and quote are the same asset cannot be configured at all."""
    ex = core.Exchange.fresh(core.exchange_config())
    for account, asset, amount in ((1, core.USD, 10**6), (2, core.BTC, 10**4)):
        ex.submit(CreateAccount(0, 0, 1, account, 0, account))
        assert ex.submit(Transfer(0, 0, 1, account, 0, account, asset, amount, account))
    core.placed(ex, core.new_order(1, core.BUY, 1_000, 50, ref=1))
    free, held = ex.accounts.balance(1, core.USD)
    assert held == _core_hold(1_000, 50) and free == 10**6 - held
    assert ex.submit(Transfer(0, 0, 1, 1, 0, 1, core.USD, -(free + 1), 11)) is None
    assert ex.submit(Transfer(0, 0, 1, 1, 0, 1, core.USD, -free, 12)) is not None
    assert ex.accounts.balance(1, core.USD) == (0, held)
    core.placed(ex, core.new_order(2, core.SELL, 1_000, 50, ref=2))
    ex.settle()
    ex.check()
    notional = 1_000 * 50 * 10
    assert ex.accounts.balance(1, core.USD) == (held - notional - notional * 7 // 10_000, 0)
    cfg = core.exchange_config()
    fields = {name: getattr(cfg, name) for name in cfg.__struct_fields__}
    fields["symbols"] = [msgspec.structs.replace(cfg.symbols[0], base="USD", quote="USD")]
    fields["matchers"] = [msgspec.structs.replace(cfg.matchers[0], symbols=["BTC-USD"])]
    with pytest.raises(ValueError, match="base and quote are both"):
        RingexConfig(**fields)
