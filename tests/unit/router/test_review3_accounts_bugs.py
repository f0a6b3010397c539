"""Bugs found by a third hostile review of the router's accounts and risk checks
(``procs/core/accounts.py``, ``procs/core/sequencer.py``) and of how they meet the matcher's
events and a restart. Each test fails on the code it was written against, because of the bug
its docstring names.

Found correct (random streams through ``core_rig.Exchange`` with fees up to 1_000 bps on both
sides, a fee account that also trades, lagging settlement, replay): no overdraft, holds
released on every ending (filled, cancelled, expired, rejected, replaced, mass cancelled,
STP, halted, end of session), fees conserved to the unit, replay equal to live.
"""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from config.schema import RingexConfig
from procs.common.records import ReplaceOrder, Trade
from procs.core.accounts import Accounts
from procs.core.sequencer import Sequencer
from tests.unit.router.core_rig import (
    BTCUSD,
    BUY,
    FEE,
    SECOND,
    SELL,
    STOP_LIMIT,
    USD,
    Exchange,
    exchange_config,
    funded,
    new_order,
    placed,
)

LIMIT_NOTIONAL = 3_000_000  # BTC-USD: notional = price x qty x 10 USD minor units


def _bids_at_10_000() -> Exchange:
    """BTC-USD with a last trade at 10_000 and 49 lots bid there (two bids of 25, one lot
    of which traded): a sell of 49 lots sweeps a notional of 4_900_000, past the limit."""
    ex = funded(exchange_config(max_notional=LIMIT_NOTIONAL))
    for ref, buyer in ((1, 2), (2, 3)):  # 2_500_000 each: allowed
        placed(ex, new_order(buyer, BUY, 10_000, 25, ref=ref))
    placed(ex, new_order(1, SELL, 10_000, 1, ref=3))  # the last trade price: 10_000
    ex.settle()
    assert ex.accounts.last_price(BTCUSD) == 10_000
    refused = ex.sequencer.submit(new_order(1, SELL, 5, 49, ref=4), SECOND)
    assert refused.command is None  # a plain limit sell of it is refused (issue 4's fix)
    return ex


def _traded_notional(ex: Exchange, account: int) -> int:
    trades = [e for e in ex.settle() if isinstance(e, Trade)]
    ex.check()
    return sum(t.price * t.qty * 10 for t in trades if t.taker_account == account)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(price=st.integers(1, 1_999).map(lambda p: 5 * p), qty=st.integers(31, 49))
def test_a_sell_replaced_to_a_low_price_cannot_exceed_the_max_order_notional(
    price: int, qty: int
) -> None:
    """``max_order_notional`` (issue 4) is bypassed by a replace. A new limit sell is checked
    at the last trade price when that is above its own (``market_sell_notional``,
    accounts.py:270, called only for ``NewOrder`` at sequencer.py:135), but
    ``reserve_replace`` checks a replace at ``cmd.price`` alone (accounts.py:308): a resting
    sell of 1 lot at 20_000 (notional 200_000) replaced to ``qty`` lots at a ``price`` far
    below the market passes (``notional(price, qty)`` is small), re-enters as an aggressor
    and sweeps the bids at 10_000, trading a notional above 3_000_000. The same sell sent as
    a new order is refused NOTIONAL_TOO_LARGE. A correct exchange checks a replace like a
    new order, at max(last trade price, new price) for a sell (live only, as for
    ``market_sell_notional``)."""
    ex = _bids_at_10_000()
    resting = placed(ex, new_order(1, SELL, 20_000, 1, ref=5))
    ex.settle()
    cmd = ReplaceOrder(0, 0, 1, 1, 6, 1, BTCUSD, resting.order_id, price, qty)
    replaced = ex.submit(cmd, SECOND)
    traded = _traded_notional(ex, 1)
    assert replaced is None, f"a replace that traded a notional of {traded} was accepted"


def test_a_stop_limit_sell_with_a_low_limit_cannot_exceed_the_max_order_notional() -> None:
    """A stop-limit sell is not checked by ``market_sell_notional`` (accounts.py:280 lets
    every stop through, "checked at its stop price") but ``reserve_new`` checks only a
    stop-market sell at its stop price (accounts.py:257): a stop-limit sell is checked at its
    limit. A stop-limit sell of 49 lots with stop 10_000 (reached already: it enters at
    once) and limit 5 is checked at notional(5, 49) = 2_450 and sweeps the bids at 10_000:
    a notional of 4_900_000, where the limit sell of the same 49 lots at 5 is refused. A
    correct exchange checks a stop-limit sell at the highest of its limit, its stop price
    and the last trade price."""
    ex = _bids_at_10_000()
    stop = new_order(1, SELL, 5, 49, ref=5, kind=STOP_LIMIT, stop=10_000)
    order = ex.submit(stop, SECOND)
    traded = _traded_notional(ex, 1)
    assert order is None, f"a stop-limit sell that traded a notional of {traded} was accepted"


def test_a_clock_stepped_back_refills_at_most_one_bucket_and_silences_nobody() -> None:
    """The router stamps commands with ``time.time_ns()`` (router/main.py:278), a wall clock
    NTP may step back. ``Sequencer._allow`` refills nothing for a negative elapsed time and
    counts on from the new reading. This review first asked for the time mark never to move
    back (then the wall time between the two readings is not refilled twice); a later review
    (test_review14_session_diff) showed the price of that: an account out of tokens is
    refused everything, cancels included, for the whole step (minutes, after a large one).
    Counting on from the new reading refills the time between the readings twice at most,
    which the bucket's cap bounds to one bucket: with ``max_commands_per_s = 2``, emptied at
    t = 100 s and a command at t = 50 s, the account gets its 2 commands back once the clock
    is right again, never more, and is served again 1 s after the step."""
    ex = funded(exchange_config(rate=2))
    now = 100 * SECOND

    def sent(ref: int, at: int) -> bool:  # a replace (a cancel never draws on the rate)
        replace = ReplaceOrder(0, 0, 1, 1, ref, 1, BTCUSD, 999, 10_000, 1)
        return ex.sequencer.submit(replace, at).command is not None

    assert [sent(1, now), sent(2, now), sent(3, now)] == [True, True, False]
    assert not sent(4, now - 50 * SECOND)  # the clock stepped back 50 s: refused
    assert sent(7, now - 49 * SECOND)  # a second on from the step: served, not silenced
    later = [sent(ref, now + 1) for ref in (5, 6, 8)]  # the clock right again, 1 ns on
    assert later == [True, True, False], f"more than the one bucket the cap allows: {later}"


def _with_fee_account(cfg: RingexConfig, account: int) -> RingexConfig:
    return msgspec.structs.replace(cfg, risk=msgspec.structs.replace(cfg.risk, fee_account=account))


def test_a_router_restored_with_another_fee_account_can_restart_from_its_own_snapshot() -> None:
    """``Accounts.__init__`` makes the configured fee account, but ``Accounts.restore``
    (accounts.py:536) replaces the account set with the snapshot's: a router restarted from
    a snapshot after ``risk.fee_account`` was changed (99 to 98) has no account 98, yet
    credits every fee to it (accounts.py:371). After one trade its state is invalid
    (``validate_internal_state``: a balance of an unknown account), and its next snapshot
    does not restore (AssertionError), so the router cannot restart again: a crash loop
    that a replay from the start (where 98 exists) does not show. A correct router either
    refuses the changed fee account at restore, naming it (as ``Matcher.restore`` refuses a
    changed symbol set), or creates it there as at construction."""
    cfg = exchange_config()
    snapshot = funded(cfg).sequencer.snapshot()
    moved = _with_fee_account(cfg, 98)
    try:
        sequencer = Sequencer.restore(moved, snapshot)
    except ValueError:
        return  # refused at restore, naming the change: acceptable
    ex = funded(cfg)  # the same deposits (net), then the restored router in front
    ex.cfg, ex.sequencer = moved, sequencer
    ex.journal += sequencer.fee_changes(0)  # as a starting router journals the change
    placed(ex, new_order(1, SELL, 10_000, 5, ref=1))
    placed(ex, new_order(2, BUY, 10_000, 5, ref=2))
    ex.settle()
    assert sequencer.accounts.balance(98, USD)[0] > 0  # the fees went to the new account
    assert sequencer.accounts.balance(FEE, USD) == (0, 0)
    again = Accounts.restore(moved, sequencer.accounts.snapshot())  # raises today
    assert again.state_hash() == sequencer.accounts.state_hash()
    ex.check()
