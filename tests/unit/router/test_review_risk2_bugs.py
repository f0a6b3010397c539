"""Bugs found by a second hostile review of the router's pure core (``procs/core/
accounts.py``, ``procs/core/sequencer.py``). Each test fails on the code it was written
against, because of the bug its docstring names.
"""

from __future__ import annotations

import msgspec

from procs.common.records import Rejected, Trade
from procs.common.result_codes import ResultCode
from procs.core.accounts import Accounts
from procs.core.accounts_state import AccountsState
from tests.unit.router.core_rig import (
    BUY,
    FEE,
    MARKET,
    SECOND,
    SELL,
    USD,
    exchange_config,
    funded,
    new_order,
    placed,
)


def test_a_market_sell_with_a_worst_price_cannot_exceed_the_max_order_notional() -> None:
    """``max_order_notional`` (issue 4: per-account limit with a clear reject) is bypassed by
    a market sell that names any worst price. ``Accounts.market_sell_notional``
    (accounts.py:277) checks a market sell at the last trade price only when ``price`` is 0,
    and ``reserve_new`` (accounts.py:257) checks it at its ``price``: a worst price of one
    tick (5) makes ``notional(5, 50) = 2_500`` pass a limit of 3_000_000, and the matcher then
    sweeps the bids at 10_000. The same 50 lots with price 0 are refused (NO_REFERENCE_PRICE
    before the first trade, NOTIONAL_TOO_LARGE after), so the fix of the earlier review only
    covers price 0. Expected: refused (NOTIONAL_TOO_LARGE); actual: accepted, and it trades a
    notional of 5_000_000."""
    ex = funded(exchange_config(max_notional=3_000_000))
    for ref, buyer in ((1, 2), (2, 3)):  # two bids of 25 lots at 10_000 (2_500_000 each)
        placed(ex, new_order(buyer, BUY, 10_000, 25, ref=ref))
    bare = ex.sequencer.submit(new_order(1, SELL, 0, 50, ref=3, kind=MARKET), SECOND)
    assert isinstance(bare.reply, Rejected)  # with no worst price: refused
    order = ex.submit(new_order(1, SELL, 5, 50, ref=4, kind=MARKET), SECOND)
    trades = [e for e in ex.settle() if isinstance(e, Trade)]
    ex.check()
    traded = sum(t.price * t.qty * 10 for t in trades if t.taker_account == 1)
    assert order is None, f"a market sell of notional {traded} was accepted (limit 3_000_000)"


def test_a_snapshot_restored_with_bare_transfer_keys_can_be_snapshotted_again() -> None:
    """``Accounts.restore`` accepts an older snapshot whose ``transfer_keys`` are bare keys
    (accounts.py:541, ``_keys[key] = None``), but ``Accounts.state`` (accounts.py:508)
    sorts bare ints and ``(key, account, asset, amount, seq)`` tuples together: after one
    new transfer, ``state()``, ``snapshot()`` and ``state_hash()`` raise ``TypeError``
    ('<' between tuple and int). A router restored from such a snapshot can no longer write
    a snapshot nor print its state hash (replay, periodic snapshots) once anyone deposits.
    Expected: a hash, and a snapshot that restores to the same state; actual: TypeError."""
    cfg = exchange_config()
    older = AccountsState(
        accounts=[1, FEE],
        balances=[(1, USD, 500, 0)],
        net=[(USD, 500)],
        transfer_keys=[7],  # as an older snapshot lists them
        last_prices=[],
        orders=[],
    )
    accounts = Accounts.restore(cfg, msgspec.msgpack.encode(older))
    assert accounts.transfer(1, USD, 100, 8, 5) == ResultCode.OK
    snapshot = accounts.snapshot()
    assert Accounts.restore(cfg, snapshot).state_hash() == accounts.state_hash()
    assert accounts.balance(1, USD) == (600, 0)
