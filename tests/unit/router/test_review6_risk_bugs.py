"""Bugs found by a sixth hostile review of the router's accounts and risk core
(``procs/core/accounts.py``, ``procs/core/sequencer.py``, ``procs/core/money.py``) and of how
they meet a restart. Each test fails on the code it was written against, because of the bug
its docstring names.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from config.schema import RingexConfig
from procs.common.journal import ReplayError
from procs.common.journal_writer import JournalWriter
from procs.common.records import CancelOrder, CreateAccount, MassCancel, Record, Transfer
from procs.common.topology import journal_dir
from procs.core.accounts import Accounts
from procs.core.recovery import recover, write_snapshot
from tests.unit.router.core_rig import (
    ASSETS,
    BTCUSD,
    BUY,
    CODEC,
    FEE,
    SELL,
    TRADERS,
    USD,
    Exchange,
    exchange_config,
    funded,
    new_order,
    placed,
)

TRADER = 5  # an account of its own, funded to the unit


def _append(cfg: RingexConfig, commands: list[Record]) -> None:
    """Append ``commands`` (sequenced, in order) to ``cfg``'s journal, as the router did."""
    images = b"".join(CODEC.encode_slot(command) for command in commands)
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id, fsync="none"
    ) as writer:
        writer.append(commands[0].seq, images, len(commands))  # type: ignore[attr-defined]


def _with_btc_fees(cfg: RingexConfig, maker: int, taker: int) -> RingexConfig:
    btc = cfg.symbols[0]
    changed = msgspec.structs.replace(btc, maker_fee_bps=maker, taker_fee_bps=taker)
    return msgspec.structs.replace(cfg, symbols=[changed, *cfg.symbols[1:]])


def _with_fee_account(cfg: RingexConfig, account: int) -> RingexConfig:
    return msgspec.structs.replace(cfg, risk=msgspec.structs.replace(cfg.risk, fee_account=account))


def _traded_then_flat(cfg: RingexConfig) -> Exchange:
    """Funded traders, an exchange snapshot with nothing resting (what the router's periodic
    snapshot job writes), then after it: a trade of 5 lots at 10_000 on BTC-USD (notional
    500_000 USD minor; account 2 the taker, 13 bps: 650; account 1 the maker, 7 bps: 350),
    and a mass cancel. Nothing rests at the end: the README's condition for a fee change
    ("change fees with no buy resting") holds."""
    ex = funded(cfg)
    _append(cfg, ex.journal)
    write_snapshot(cfg, recover(cfg))  # no order at all in it
    mark = len(ex.journal)
    placed(ex, new_order(1, SELL, 10_000, 5, ref=1))
    placed(ex, new_order(2, BUY, 10_000, 5, ref=2))
    ex.submit(MassCancel(0, 0, 1, 1, 3, 0, 0))
    ex.settle()
    ex.check()
    assert ex.accounts.balance(FEE, USD) == (350 + 650, 0)
    assert ex.accounts.state().orders == []
    _append(cfg, ex.journal[mark:])
    return ex


def _balances(
    source: Accounts, accounts: tuple[int, ...]
) -> dict[tuple[int, int], tuple[int, int]]:
    balance = source.balance
    return {(a, s): balance(a, s) for a in accounts for s in ASSETS}


# -- a fee setting changed between two runs re-settles trades made before the restart ------------


def test_a_fee_change_does_not_re_settle_trades_made_before_the_restart(tmp_path: Path) -> None:
    """The operator raises BTC-USD's fees (maker 7 -> 20, taker 13 -> 20 bps) with no buy
    resting, as the README says to ("changed maker/taker fees are config, not journal ...
    change fees with no buy resting"), and restarts. Recovery restores the newest exchange
    snapshot and replays the journal after it (``recover``, recovery.py) through an
    ``Accounts`` built from the *new* config (``Market.all`` in money.py;
    ``Accounts._trade`` charges ``market.maker_bps``/``taker_bps`` of the config it runs
    under): a trade settled live at 7/13 bps before the restart is settled again at 20/20.
    Account 1 loses 650 and account 2 loses 350 USD minor that they were never charged, and
    the fee account gains 1_000, by a restart and no command (issue 4: "for every asset,
    the sum over all accounts changes only by deposits and withdrawals", and a replay must
    rebuild the state the live router had). Since the router writes no exchange snapshot at
    a clean stop, every trade since the last periodic snapshot (up to 200k commands or 300
    s) is re-charged. Correct: the recovered balances are the live ones; the new fees apply
    to trades from this start on (e.g. the fees in force journaled or kept with the
    snapshot, the tail replayed under them)."""
    cfg = exchange_config(var_dir=str(tmp_path))
    ex = _traded_then_flat(cfg)
    live = _balances(ex.accounts, (*TRADERS, FEE))
    assert _balances(recover(cfg).sequencer.accounts, (*TRADERS, FEE)) == live  # same config
    recovered = recover(_with_btc_fees(cfg, 20, 20)).sequencer.accounts
    assert _balances(recovered, (*TRADERS, FEE)) == live


def test_changing_fees_with_no_buy_resting_does_not_stop_the_router_from_starting(
    tmp_path: Path,
) -> None:
    """An account holds exactly 500_650 USD minor: a bid of 5 lots at 10_000 (notional
    500_000) plus the largest BTC-USD fee, ceil(500_000 x 13 / 10_000) = 650. It bids, then
    cancels: nothing rests. The operator raises the taker fee to 20 bps, following the
    README ("change fees with no buy resting"), and restarts. Recovery replays the journal
    after the snapshot, and ``Sequencer.replay`` (sequencer.py) asks
    ``Accounts.reserve_new`` for the bid's hold under the *new* fees (500_000 + 1_000),
    which the account never had: ``ReplayError("replay of seq N ... was refused:
    INSUFFICIENT_BALANCE")``, and the router cannot start until the fee is put back.
    Correct: a journaled command is replayed as it was accepted; the recovery succeeds with
    the live state (the account holds its 500_650 again, nothing reserved)."""
    cfg = exchange_config(var_dir=str(tmp_path))
    ex = Exchange.fresh(cfg)
    assert ex.submit(CreateAccount(0, 0, 1, TRADER, 0, TRADER)) is not None
    assert ex.submit(Transfer(0, 0, 1, TRADER, 0, TRADER, USD, 500_650, 7))
    _append(cfg, ex.journal)
    write_snapshot(cfg, recover(cfg))  # nothing rests in it
    mark = len(ex.journal)
    bid = placed(ex, new_order(TRADER, BUY, 10_000, 5, ref=1))
    assert ex.accounts.balance(TRADER, USD) == (0, 500_650)
    ex.submit(CancelOrder(0, 0, 1, TRADER, 2, TRADER, BTCUSD, bid.order_id))
    ex.settle()
    ex.check()
    assert ex.accounts.balance(TRADER, USD) == (500_650, 0)
    _append(cfg, ex.journal[mark:])
    try:
        recovered = recover(_with_btc_fees(cfg, 7, 20))
    except ReplayError as exc:
        raise AssertionError(f"the router cannot start after a fee change: {exc}") from None
    assert recovered.sequencer.accounts.balance(TRADER, USD) == (500_650, 0)


def test_a_changed_fee_account_is_not_credited_fees_of_trades_before_the_restart(
    tmp_path: Path,
) -> None:
    """The README: "A changed ``risk.fee_account`` takes effect at the next start, from a
    snapshot too". The operator points ``fee_account`` at 98 and restarts. Recovery replays
    the journal after the newest snapshot with the new setting (``Accounts.__init__`` takes
    ``cfg.risk.fee_account``; ``_trade`` credits ``self.fee_account``), so the 1_000 USD
    minor of fees that a trade before the restart paid to account 99 move to account 98:
    the old fee account's balance drops by a restart and no command, the new one is
    credited fees of trades made before it took effect. Correct: fees of trades before the
    start stay with the account that collected them live; 98 collects from this start on."""
    cfg = exchange_config(var_dir=str(tmp_path))
    ex = _traded_then_flat(cfg)
    live = _balances(ex.accounts, (*TRADERS, FEE, 98))
    assert live[(FEE, USD)] == (1_000, 0) and live[(98, USD)] == (0, 0)
    recovered = recover(_with_fee_account(cfg, 98)).sequencer.accounts
    assert _balances(recovered, (*TRADERS, FEE, 98)) == live
