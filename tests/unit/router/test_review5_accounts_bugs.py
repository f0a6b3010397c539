"""Bugs found by a fifth hostile review of the router's accounts and risk core
(``procs/core/accounts.py``, ``procs/core/sequencer.py``, ``procs/core/money.py``) and of how
they meet a restart. Each test fails on the code it was written against, because of the bug
its docstring names.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common.journal_writer import JournalWriter
from procs.common.records import CreateAccount, ReplaceOrder, Transfer
from procs.common.result_codes import ResultCode
from procs.common.topology import journal_dir
from procs.core.recovery import recover, write_snapshot
from tests.unit.router.core_rig import (
    BTC,
    BTCUSD,
    BUY,
    CODEC,
    SELL,
    USD,
    Exchange,
    exchange_config,
    funded,
    new_order,
    placed,
)

TRADER = 5  # an account of its own, funded to the unit in each test


def _account(ex: Exchange, account: int, asset: int, amount: int) -> None:
    assert ex.submit(CreateAccount(0, 0, 1, account, 0, account)) is not None
    assert ex.submit(Transfer(0, 0, 1, account, 0, account, asset, amount, 1000 + account))


def _replace(ex: Exchange, order_id: int, price: int, qty: int, ref: int) -> ResultCode:
    """Submit a replace of ``TRADER``'s order; the code the router gives it (OK: sequenced)."""
    cmd = ReplaceOrder(0, 0, 1, TRADER, ref, TRADER, BTCUSD, order_id, price, qty)
    decision = ex.sequencer.submit(cmd, 0)
    if decision.command is None:
        assert decision.reply is not None
        return ResultCode(decision.reply.code)  # type: ignore[attr-defined]
    ex.journal.append(decision.command)
    for name in decision.matchers:
        events = ex.fast[name].execute(decision.command)
        assert ex.reference[name].execute(decision.command) == events
        ex.inbox[name].extend(events)
    return ResultCode.OK


# -- replaces that need no more money are refused for the lack of it ---------------------------


def test_repricing_a_sell_of_everything_the_account_holds_is_not_refused() -> None:
    """A trader offers all its BTC (5 lots, 500 minor units, all of it reserved) and moves
    the offer's price up one tick, same size. ``Accounts.reserve_replace``
    (accounts.py:264) reserves the replace's *full* new hold, base(5) = 500, out of the free
    balance (0), so the replace is refused INSUFFICIENT_BALANCE: a seller can never reprice
    an order for everything it has, only cancel and send anew. The sell's exposure cannot
    grow: ``ReplaceOrder.order_qty`` is the order's new total, fills included, and the matcher
    leaves open ``order_qty`` - filled (records.py, ``ReplaceOrder``), so the old hold already
    covers every lot the order can still sell. The docstring's reason for the full hold
    ("the matcher then sets the leaves to the replace's qty, so one order can buy its old
    leaves and then its new qty in full") describes the old leaves semantics, not this one.
    Correct: a replace that needs no more than the order holds is accepted, whatever the free
    balance; only an increase beyond the hold needs free funds."""
    ex = Exchange.fresh(exchange_config())
    _account(ex, TRADER, BTC, 500)
    sell = placed(ex, new_order(TRADER, SELL, 10_000, 5, ref=1))
    ex.settle()
    assert ex.accounts.balance(TRADER, BTC) == (0, 500)
    assert _replace(ex, sell.order_id, 10_050, 5, ref=2) == ResultCode.OK
    ex.settle()
    assert ex.accounts.balance(TRADER, BTC) == (0, 500)
    ex.check()


def test_reducing_a_buy_that_holds_all_the_accounts_quote_is_not_refused() -> None:
    """A trader bids 5 lots at 10_000 with exactly the USD it needs (notional 500_000 plus
    the largest fee, 13 bps: 500_650, all reserved), then cuts the bid to 3 lots at the same
    price (keeping its priority: "a smaller qty keeps priority", records.py). The router asks
    the free balance (0) for the replace's full hold, 300_390, and refuses it
    INSUFFICIENT_BALANCE (accounts.py ``reserve_replace``): reducing an order, which frees
    money, is refused for the lack of money, and the trader's only way out is a cancel that
    gives up its place. Correct: accepted; once the matcher confirms, 300_390 stays held and
    200_260 is free again."""
    ex = Exchange.fresh(exchange_config())
    _account(ex, TRADER, USD, 500_650)
    buy = placed(ex, new_order(TRADER, BUY, 10_000, 5, ref=1))
    ex.settle()
    assert ex.accounts.balance(TRADER, USD) == (0, 500_650)
    assert _replace(ex, buy.order_id, 10_000, 3, ref=2) == ResultCode.OK
    ex.settle()
    assert ex.accounts.balance(TRADER, USD) == (200_260, 300_390)
    ex.check()


# -- a risk setting changed between two runs stops the router from starting ---------------------


def _journal(cfg: RingexConfig, ex: Exchange) -> None:
    images = b"".join(CODEC.encode_slot(command) for command in ex.journal)
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id, fsync="none"
    ) as writer:
        writer.append(1, images, len(ex.journal))


def _with_risk(cfg: RingexConfig, **changes: int) -> RingexConfig:
    return msgspec.structs.replace(cfg, risk=msgspec.structs.replace(cfg.risk, **changes))


@pytest.mark.parametrize(
    "lowered",
    [{"max_open_orders": 2}, {"max_order_notional": 1_000_000}],
    ids=["max_open_orders", "max_order_notional"],
)
def test_a_lowered_risk_limit_does_not_stop_the_router_from_recovering(
    tmp_path: Path, lowered: dict[str, int]
) -> None:
    """Account 1 rests four bids of 25 lots (notional 2_500_000 each) under
    ``max_open_orders = 6`` and ``max_order_notional = 3_000_000``. The operator lowers a
    ``[risk]`` limit (README: "Limits per account (``[risk]``)") and restarts. Recovery
    replays the journal through ``Sequencer.replay`` (sequencer.py), which calls
    ``reserve_new`` with its limit checks and raises ``ValueError("replay of seq N ... was
    refused: TOO_MANY_OPEN_ORDERS")`` (or NOTIONAL_TOO_LARGE) for orders that were valid
    when they were accepted: the router cannot start until the setting is put back. A limit
    applies to commands from now on (venues never void accepted orders when a limit is
    lowered); replay must reproduce what was journaled, so it must not re-decide the
    per-account limits, only what the state itself decides. Correct: the recovered state
    equals the live one."""
    cfg = exchange_config(var_dir=str(tmp_path), max_open=6, max_notional=3_000_000)
    ex = funded(cfg)
    for ref in range(4):
        placed(ex, new_order(1, BUY, 10_000 - 5 * ref, 25, ref=ref))
    ex.settle()
    ex.check()
    _journal(cfg, ex)
    assert recover(cfg).sequencer.accounts.state_hash() == ex.accounts.state_hash()
    changed = _with_risk(cfg, **lowered)
    recovered = recover(changed)  # raises ValueError today
    assert recovered.sequencer.accounts.state_hash() == ex.accounts.state_hash()
    assert recovered.sequencer.accounts.open_orders(1) == 4


def test_a_changed_fee_schedule_does_not_stop_the_router_from_restoring(tmp_path: Path) -> None:
    """The operator changes BTC-USD's taker fee (13 to 20 bps; the config's
    ``taker_fee_bps``, a per-symbol setting like the fee account, whose change the README
    says "takes effect at the next start, from a snapshot too") and restarts. The snapshot
    holds a resting bid whose hold was computed with the old fee (notional + ceil(13 bps));
    ``Accounts.restore`` runs ``validate_internal_state`` (accounts.py), which recomputes
    every order's hold with the *new* fees and raises ``AssertionError("order 1 holds
    500650, needs 501000")``: the router cannot start from any snapshot taken while a buy
    rested, whatever the journal says. Correct: the restore keeps each order's hold as it
    was reserved (or refuses the change with a ``ValueError`` naming it, as a changed
    symbol set is refused), and never fails on a broken-invariant assertion."""
    cfg = exchange_config(var_dir=str(tmp_path))
    ex = funded(cfg)
    placed(ex, new_order(1, BUY, 10_000, 5, ref=1))
    ex.settle()
    _journal(cfg, ex)
    write_snapshot(cfg, recover(cfg))  # what the router's forked snapshot job does
    btc = cfg.symbols[0]
    changed = msgspec.structs.replace(
        cfg, symbols=[msgspec.structs.replace(btc, taker_fee_bps=20), *cfg.symbols[1:]]
    )
    try:
        recovered = recover(changed)  # AssertionError today
    except ValueError as exc:
        assert "fee" in str(exc)  # refused, naming the change: acceptable
        return
    accounts = recovered.sequencer.accounts
    accounts.validate_internal_state()
    assert accounts.open_orders(1) == 1
