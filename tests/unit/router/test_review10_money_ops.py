"""A tenth hostile review, of money under operator actions: deposits and withdrawals, fee
settings (maker/taker bps, fee account), halts, mass cancels, end of session, with orders
live. Each test is a bug found; its docstring says what is wrong, how it shows and what is
expected. Built on the ninth review's rig (``money_rig``): the router and matcher cores
driven together, replayed from the journal the way recovery replays it.
"""

from __future__ import annotations

import argparse

import msgspec
import pytest

from config.schema import RingexConfig
from procs.admin import commands
from procs.admin.client import to_minor_units
from procs.common.records import AccountReply, CreateAccount, Transfer
from procs.common.result_codes import ResultCode
from procs.core.recovery import fresh
from tests.unit.router.core_rig import BTC, BUY, SELL, USD, new_order
from tests.unit.router.money_rig import (
    BTCUSD,
    CFG,
    MARKET,
    Run,
    Submit,
    funded_run,
    replayed,
    restarted,
)

HOUSE = 500  # an account opened by the operator, later made the fee account


def _with_fee_account(cfg: RingexConfig, account: int) -> RingexConfig:
    return msgspec.structs.replace(cfg, risk=msgspec.structs.replace(cfg.risk, fee_account=account))


def _house_run() -> Run:
    """Traders 1-3 funded, and the operator's account HOUSE opened and funded while the fee
    account is still 99 (``create-account`` refuses only the fee account in force)."""
    run = funded_run()
    assert run.do(Submit(CreateAccount(0, 0, 1, HOUSE, 1, HOUSE), 0)) is not None
    assert run.do(Submit(Transfer(0, 0, 1, HOUSE, 2, HOUSE, USD, 10**6, 77), 0)) is not None
    return run


def test_a_fee_account_moved_to_an_existing_account_leaves_a_journal_that_cannot_replay() -> None:
    """The operator opens account 500 (fee account still 99), then sets ``risk.fee_account
    = 500`` and restarts: the router journals ``FeeSchedule(fee_account=500)`` and runs on.
    But a replay of that journal from its first entry under the config the exchange now
    runs (a new hot standby following the primary from seq 1, ``ringex replay
    --from-start``, any recovery without a snapshot: ``recovery.fresh(cfg)``) starts from
    ``Accounts(cfg)``, which seeds its account set with the *configured* fee account
    (``Accounts.__init__``: ``self._accounts = {self.fee_account}``), although the journal
    says the fee account then was 99 (its first records are the ``FeeSchedule``s naming it).
    The journaled ``CreateAccount(500)`` is then refused ACCOUNT_EXISTS and the replay stops
    with ``ReplayError``: the exchange's own journal no longer recovers. Fees are journaled
    state exactly so that a replay never depends on the config of the day; the initial
    account set must not either. Expected: the replay under the new config reaches the live
    state, as the replay under the old one does."""
    run = _house_run()
    new_cfg = _with_fee_account(CFG, HOUSE)
    again = restarted(run, new_cfg)  # replays under the old config, then runs under the new
    assert again.ex.accounts.fee_account == HOUSE
    assert replayed(CFG, again.ex.journal).sequencer.accounts.state_hash() == (
        again.ex.accounts.state_hash()
    )
    rec = replayed(new_cfg, again.ex.journal)  # raises ReplayError: ACCOUNT_EXISTS
    assert rec.sequencer.accounts.state_hash() == again.ex.accounts.state_hash()


def test_a_fresh_replay_under_a_moved_fee_account_has_that_account_before_it_was_opened() -> None:
    """The same root cause seen without a refusal: a journal whose fee account was 99
    throughout, replayed from nothing under a config naming 500 (about to become the fee
    account, never opened), holds account 500 from the first seq, where the live exchange
    (and a replay under the old config) has no such account: the state hashes of the same
    journal differ by the config of the day, and a deposit to 500 is then accepted by the
    replayed state where the live one refuses it UNKNOWN_ACCOUNT (the check after it).
    Expected: the state a journal replays to does not depend on which fee account the config
    names (the journal's ``FeeSchedule`` records say which one was in force)."""
    run = funded_run()
    live = run.ex.accounts
    sequencer, matchers = fresh(_with_fee_account(CFG, HOUSE))
    for command in run.ex.journal:
        sequencer.replay(command)
        for name in sequencer.matchers_for(command):
            sequencer.settle(matchers[name].execute(command))
    assert sequencer.accounts.state().accounts == live.state().accounts
    deposit = Transfer(0, 0, 1, HOUSE, 3, HOUSE, USD, 1, 78)
    assert sequencer.submit(deposit, 0).command is None  # UNKNOWN_ACCOUNT, as live


def test_a_market_buy_replayed_under_a_changed_band_trades_differently_than_it_did() -> None:
    """Fees are journaled so that a restart under changed fees replays each trade under its
    own (README); the symbol's ``band_bps``, which decides how far a market order sweeps,
    is not: the matchers of a replay are built from the config of the day
    (``symbol_specs(cfg)``, ``recovery.fresh``/``Recovered``). A market buy of 2 BTC-USD
    swept asks at 3,000 and 3,100 live (band 500 bps: up to 3,150); the same journal
    replayed after the operator narrows the band to 100 bps (a restart, whose recovery
    replays the journal tail) trades only the ask at 3,000: the buyer and the seller end with
    other balances than the live run settled and reported, and the matchers' books differ
    from the events already published. Expected: a replay gives the state the live run had,
    whatever the band in the config now (journal the symbol rules as the fees are, or refuse
    a start whose rules differ from the state's)."""
    run = funded_run()
    for ref, (side, price) in enumerate(((SELL, 3_000), (BUY, 3_000)), start=1):
        run.do(Submit(new_order(1, side, price, 1, ref=ref), 0))  # a last trade: 3,000
    run.settle_all()
    run.do(Submit(new_order(2, SELL, 3_000, 1, ref=3), 0))
    run.do(Submit(new_order(2, SELL, 3_100, 1, ref=4), 0))
    run.do(Submit(new_order(3, BUY, 0, 2, ref=5, kind=MARKET), 0))
    run.settle_all()
    run.check()
    bought = run.ex.accounts.balance(3, BTC)
    narrow = msgspec.structs.replace(
        CFG,
        symbols=[
            msgspec.structs.replace(s, band_bps=100) if s.id == BTCUSD else s for s in CFG.symbols
        ],
    )
    rec = replayed(narrow, run.ex.journal)
    assert rec.sequencer.accounts.balance(3, BTC) == bought
    assert rec.sequencer.accounts.state_hash() == run.ex.accounts.state_hash()


class _Client:
    """``AdminClient``'s transfer as the real one makes it: the amount through
    ``to_minor_units`` (``client.py``), recorded instead of sent."""

    def __init__(self) -> None:
        self.units: list[int] = []

    def transfer(
        self, account: int, asset: str, amount: str, key: int | None = None
    ) -> AccountReply:
        self.units.append(to_minor_units(CFG, asset, amount)[1])
        return AccountReply(1, 0, 0, 0, 0, account, 1, ResultCode.OK, 0)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("amount", ["+-5", "+ -5"])
def test_a_deposit_written_with_a_plus_before_a_minus_withdraws(
    amount: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ringex admin deposit --amount=+-5`` is checked by ``_admin_args_refused`` only for a
    leading "-" (it starts with "+"), then its amount is taken with the "+" removed: "-5",
    which ``to_minor_units`` reads as -5 units (it keeps the sign). ``run_admin`` sends that
    as the deposit's amount (a deposit adds no sign), so the router gets a ``Transfer`` of
    -5,000,000 USD minor units: the "deposit" withdraws 5 USD from the account and reports
    OK. Expected: refused as a signed amount (exit status 2), like "-5", and nothing sent."""
    client = _Client()
    monkeypatch.setattr(commands, "admin_client", lambda cfg: client)
    args = argparse.Namespace(
        admin_command="deposit", account=1, asset="USD", amount=amount, key=None
    )
    status = commands.run_admin(args, CFG)
    assert all(units > 0 for units in client.units), client.units  # a deposit never withdraws
    assert status == 2 and client.units == []
