"""Bugs found by a hostile review of the router's risk core (``procs/core/accounts.py`` and
``procs/core/sequencer.py``). Each test failed on the code it was written against and passes
since its fix.
"""

from __future__ import annotations

from procs.common.records import MassCancel, Rejected, ReplaceOrder, Trade
from procs.common.result_codes import ResultCode
from tests.unit.router.core_rig import (
    BTCUSD,
    BUY,
    MARKET,
    SECOND,
    SELL,
    exchange_config,
    funded,
    new_order,
    placed,
)


def test_mass_cancels_count_against_the_accounts_command_rate() -> None:
    """``max_commands_per_s`` is a limit per account on its commands (issue 4), and the
    sequencer applies it to new orders, cancels and replaces, but ``_mass_cancel`` never
    calls ``_allow``: once the bucket is empty a plain cancel is refused while mass cancels
    go on being sequenced, journaled and sent to every matcher (symbol 0), each one a scan
    of every book there."""
    ex = funded(exchange_config(rate=2))
    now = 10 * SECOND

    def replace(ref: int) -> ReplaceOrder:  # (a cancel never draws on the rate: review 48)
        return ReplaceOrder(0, 0, 1, 1, ref, 1, BTCUSD, 999, 10_000, 1)

    for ref in (1, 2):  # the bucket's two tokens
        assert ex.submit(replace(ref), now) is not None
    refused = ex.sequencer.submit(replace(3), now)
    assert isinstance(refused.reply, Rejected)
    assert refused.reply.code == ResultCode.ACCOUNT_RATE_LIMITED
    sequenced = [ex.submit(MassCancel(0, 0, 1, 1, ref, 1, 0), now) for ref in range(4, 14)]
    assert sequenced == [None] * 10, "mass cancels of a rate-limited account were sequenced"


def test_a_market_sell_cannot_exceed_the_max_order_notional() -> None:
    """``reserve_new`` checks a market sell at its ``price``, 0 when the client gives no
    worst price, so ``notional(0, qty) = 0`` always passes ``max_order_notional``. On BTC-USD
    (notional = price x qty x 10, limit 3_000_000) a limit sell of 50 lots at 10_000 is
    refused NOTIONAL_TOO_LARGE, but a market sell of the same 50 lots is accepted and trades
    all of it at 10_000 in one order: a notional of 5_000_000."""
    ex = funded(exchange_config(max_notional=3_000_000))
    for ref, buyer in ((1, 2), (2, 3)):  # two bids of 25 lots (2_500_000 each: allowed)
        placed(ex, new_order(buyer, BUY, 10_000, 25, ref=ref))
    limit = ex.sequencer.submit(new_order(1, SELL, 10_000, 50, ref=3), SECOND)
    assert isinstance(limit.reply, Rejected)
    assert limit.reply.code == ResultCode.NOTIONAL_TOO_LARGE
    order = ex.submit(new_order(1, SELL, 0, 50, ref=4, kind=MARKET), SECOND)
    trades = [e for e in ex.settle() if isinstance(e, Trade)]
    ex.check()
    traded = sum(t.price * t.qty * 10 for t in trades if t.taker_account == 1)
    assert order is None, f"a market sell of notional {traded} was accepted (limit 3_000_000)"


def test_a_market_sell_is_checked_at_the_last_trade_price() -> None:
    """Once the symbol has traded (here at 10_000), a market sell with no worst price is
    checked at that price: 25 lots (2_500_000) pass, 50 lots (5_000_000) do not."""
    ex = funded(exchange_config(max_notional=3_000_000))
    for ref, buyer in ((1, 2), (2, 3)):
        placed(ex, new_order(buyer, BUY, 10_000, 25, ref=ref))
    placed(ex, new_order(1, SELL, 10_000, 1, ref=3))  # a trade at 10_000
    ex.settle()
    assert ex.accounts.last_price(BTCUSD) == 10_000
    too_big = ex.sequencer.submit(new_order(1, SELL, 0, 50, ref=4, kind=MARKET), SECOND)
    assert isinstance(too_big.reply, Rejected)
    assert too_big.reply.code == ResultCode.NOTIONAL_TOO_LARGE
    assert ex.submit(new_order(1, SELL, 0, 25, ref=5, kind=MARKET), SECOND) is not None
    ex.settle()
    ex.check()
