"""A ninth hostile review, of the money invariants end to end: gateway commands through the
sequencer's risk checks, the accepted ones through the matchers, their events back into
settlement (``core_rig.Exchange``), on a market the earlier reviews did not build: three
symbols sharing a quote asset, one crossed (ETH-BTC: BTC is a base on one symbol and the
quote on another), two symbols on one matcher, unlike scales and fees up to the 1,000 bps
cap, so fee rounding on tiny fills gets exercised.

After every step: no balance negative, every hold what its order needs, every asset's total
what deposits and withdrawals made it, the fee account credited exactly the fees of the trades
settled; with nothing in flight, the holds are what the matchers' books need. A copy restored
from snapshots mid-stream, and a restart that replays the journal mid-stream, each continue
byte-identically with the uninterrupted run.
"""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.schema import RingexConfig
from procs.common.records import (
    AdminCommand,
    CreateAccount,
    MassCancel,
    NewOrder,
    Rejected,
    ReplaceOrder,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.types import AdminAction
from procs.core.accounts import MAX_TOTAL
from tests.unit.router.core_rig import (
    BTC,
    BUY,
    CODEC,
    ETH,
    SELL,
    USD,
    Exchange,
    new_order,
    roundtrip,
)
from tests.unit.router.money_rig import (
    BTCUSD,
    CFG,
    ETHBTC,
    FEE,
    MARKET,
    Driver,
    Op,
    Run,
    Submit,
    copy_of,
    funded_run,
    market_config,
    need,
    op_strategy,
    replayed,
    restarted,
)


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    ops=st.lists(op_strategy, min_size=30, max_size=120),
    cuts=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_random_streams_on_a_shared_quote_market_keep_every_money_invariant(
    ops: list[Op], cuts: tuple[float, float]
) -> None:
    """After every step the invariants of ``Run.check``. A copy restored from snapshots at
    one point (events in flight kept) and a restart replaying the journal at another (with
    everything settled first, as recovery leaves it) each go on byte-identically with the
    run that was never interrupted; at the end, with everything cancelled, nothing is held."""
    driver = Driver(funded_run())
    restore_at, restart_at = (min(int(c * len(ops)), len(ops) - 1) for c in cuts)
    copies: list[tuple[Run, int, int]] = []  # (copy, tape mark, output mark)
    for i, op in enumerate(ops):
        run = driver.run
        if i == restore_at:
            copies.append((copy_of(run, run.ex.restored()), len(run.tape), len(run.ex.out)))
        if i == restart_at:
            run.settle_all()
            copies.append((restarted(run), len(run.tape), len(run.ex.out)))
            assert copies[-1][0].ex.hashes() == run.ex.hashes()
        driver.step(op)
    run = driver.run
    run.settle_all()
    run.do(Submit(MassCancel(0, 0, 1, 1, 0, 0, 0), driver.now))
    run.do(Submit(AdminCommand(0, 0, AdminAction.RESUME, 0, 0), driver.now))
    run.settle_all()
    run.check()
    assert all(r == 0 for _, _, _, r in run.ex.accounts.state().balances)
    assert run.ex.accounts.state().orders == []
    for copy, mark, out_mark in copies:
        for action in run.tape[mark:]:
            copy.do(action)
        copy.check()
        assert copy.ex.out == run.ex.out[out_mark:]
        assert copy.ex.hashes() == run.ex.hashes()
    rec = replayed(CFG, run.ex.journal)
    assert rec.sequencer.accounts.state_hash() == run.ex.accounts.state_hash()


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    ops=st.lists(op_strategy, min_size=30, max_size=100),
    cut=st.floats(0, 1),
    emptied=st.booleans(),
)
def test_a_restart_under_changed_fees_settles_each_trade_under_its_own(
    ops: list[Op], cut: float, emptied: bool
) -> None:
    """Mid-stream the router restarts under a config with other fees and another fee
    account: maker and taker swapped (the margin kept, so buys may rest), or, with the book
    emptied first, other margins. The fee oracle follows the fees in force; the whole journal
    replayed under either config ends in the live state."""
    driver = Driver(funded_run())
    at = min(int(cut * len(ops)), len(ops) - 1)
    for i, op in enumerate(ops):
        if i == at:
            run = driver.run
            run.settle_all()
            fees = (0, 25, 13, 7, 1_000, 999)
            if emptied:
                run.do(Submit(MassCancel(0, 0, 1, 1, 0, 0, 0), driver.now))
                run.settle_all()
                fees = (30, 1, 0, 0, 2, 500)
            else:
                fees = (25, 0, 7, 13, 999, 1_000)
            new_cfg = msgspec.structs.replace(
                market_config(fees),
                risk=msgspec.structs.replace(CFG.risk, fee_account=FEE + 1),
            )
            driver.run = restarted(run, new_cfg)
        driver.step(op)
    run = driver.run
    run.settle_all()
    run.check()
    for cfg in (CFG, run.ex.cfg):
        rec = replayed(cfg, run.ex.journal)
        assert rec.sequencer.accounts.state_hash() == run.ex.accounts.state_hash()


# -- by hand, at the edges ------------------------------------------------------------------------


def test_a_trade_at_an_int64_notional_settles_exactly_and_no_cap_overflows() -> None:
    """BTC-USD has 1 USD minor unit per price x qty unit: a buy holding all of 2**63-1 USD,
    its fee margin included, trades; both sides and the fee account settle to the unit and
    every record fits its field. A market buy's cap above int64 is refused, never sent."""
    run = Run(Exchange.fresh(CFG))
    price = MAX_TOTAL * 10_000 // 10_025
    while need(CFG, BTCUSD, BUY, price, 1) > MAX_TOTAL:
        price -= 1
    hold = need(CFG, BTCUSD, BUY, price, 1)
    for account, asset, amount in ((1, USD, hold), (2, BTC, 10**4)):
        run.do(Submit(CreateAccount(0, 0, 1, account, 0, account), 0))
        run.do(Submit(Transfer(0, 0, 1, account, 0, account, asset, amount, account), 0))
    assert run.do(Submit(Transfer(0, 0, 1, 2, 0, 2, USD, 1, 3), 0)) is None  # past 2**63-1
    assert run.do(Submit(new_order(1, BUY, price, 1, ref=1), 0)) is not None
    assert run.do(Submit(new_order(2, SELL, price, 1, ref=2), 0)) is not None
    run.settle_all()
    run.check()
    fee = price * 25 // 10_000  # the seller took: 25 bps; the resting buyer: 0
    assert run.ex.accounts.balance(1, USD) == (hold - price, 0)
    assert run.ex.accounts.balance(2, USD) == (price - fee, 0)
    assert run.ex.accounts.balance(FEE, USD) == (fee, 0)
    reply = run.ex.sequencer.submit(new_order(2, BUY, 0, 1, ref=3, kind=MARKET), 0).reply
    assert isinstance(reply, Rejected) and reply.code == ResultCode.INVALID_PRICE
    for image in run.ex.out:
        roundtrip(CODEC.decode_slot(image))


def _poor(cfg: RingexConfig, usd: int) -> Run:
    """A market on BTC-USD (last trade 3,000) and account 3 with exactly ``usd``."""
    run = Run(Exchange.fresh(cfg))
    for account, amount in ((1, 10**10), (3, usd)):
        run.do(Submit(CreateAccount(0, 0, 1, account, 0, account), 0))
        run.do(Submit(Transfer(0, 0, 1, account, 0, account, USD, amount, account), 0))
        run.do(Submit(Transfer(0, 0, 1, account, 0, account, BTC, 10**8, 10 + account), 0))
    run.do(Submit(new_order(1, SELL, 3_000, 1, ref=1), 0))
    run.do(Submit(new_order(1, BUY, 3_000, 1, ref=2), 0))
    run.settle_all()
    assert run.ex.accounts.last_price(BTCUSD) == 3_000
    return run


def test_a_market_buy_holds_its_cap_and_pays_only_what_it_trades() -> None:
    """The cap is 3,000 x 1.05 = 3,150: a market buy of 10 holds 31,500 and its fee margin.
    One unit less than that is refused; exactly that is accepted, trades at the ask, pays the
    notional and the taker's fee of what it traded, and gets the rest of the cap back."""
    cap_hold = need(CFG, BTCUSD, BUY, 3_150, 10)
    run = _poor(CFG, cap_hold - 1)
    run.do(Submit(new_order(1, SELL, 3_010, 10, ref=3), 0))
    assert run.do(Submit(new_order(3, BUY, 0, 10, ref=4, kind=MARKET), 0)) is None
    run.ex.accounts.validate_internal_state()
    assert run.ex.accounts.balance(3, USD) == (cap_hold - 1, 0)
    run = _poor(CFG, cap_hold)
    run.do(Submit(new_order(1, SELL, 3_010, 10, ref=3), 0))
    buy = run.do(Submit(new_order(3, BUY, 0, 10, ref=4, kind=MARKET), 0))
    assert isinstance(buy, NewOrder) and buy.price == 3_150
    assert run.ex.accounts.balance(3, USD) == (0, cap_hold)
    run.settle_all()
    run.check()
    cost = 3_010 * 10 + 3_010 * 10 * 25 // 10_000
    assert run.ex.accounts.balance(3, USD) == (cap_hold - cost, 0)


def test_a_replace_may_raise_the_hold_to_the_last_unit_of_the_balance_and_not_past_it() -> None:
    """A resting buy of 10 at 3,000 and a replace to 12 at 3,010: what it adds is exactly the
    new hold less the old (no slack for the fee's rounding: the thirty-second review). A
    balance one unit short refuses it and changes nothing; the exact balance accepts it, and
    the matcher's answer leaves the order holding exactly its new need."""
    old, new = need(CFG, BTCUSD, BUY, 3_000, 10), need(CFG, BTCUSD, BUY, 3_010, 12)
    for short in (1, 0):
        run = _poor(CFG, new - short)
        buy = run.do(Submit(new_order(3, BUY, 3_000, 10, ref=3), 0))
        assert isinstance(buy, NewOrder)
        run.settle_all()
        assert run.ex.accounts.balance(3, USD) == (new - short - old, old)
        before = run.ex.accounts.state_hash()
        replace = ReplaceOrder(0, 0, 1, 3, 4, 3, BTCUSD, buy.order_id, 3_010, 12)
        done = run.do(Submit(replace, 0))
        if short:
            assert done is None and run.ex.accounts.state_hash() == before
            continue
        assert isinstance(done, ReplaceOrder)
        assert run.ex.accounts.balance(3, USD) == (0, new)
        run.settle_all()
        run.check()
        assert run.ex.accounts.balance(3, USD) == (0, new)


def test_fees_on_the_tiniest_fills_round_down_and_neither_make_nor_lose_money() -> None:
    """One lot at one tick on BTC-USD is a notional of 1 USD minor unit: every fee floors to
    0 (none to the fee account), the buy holds 2 (the margin rounds up) and gets 1 back. On
    ETH-BTC (1,000 / 999 bps) a fill of 1 at 1 is a notional of 100: fees of 10 and 9."""
    run = _poor(CFG, 10)
    start = {a: sum(run.ex.accounts.balance(a, USD)) for a in (1, 3, FEE)}
    run.do(Submit(new_order(3, BUY, 1, 1, ref=3), 0))
    assert run.ex.accounts.balance(3, USD)[1] == 2
    run.do(Submit(new_order(1, SELL, 1, 1, ref=4), 0))
    run.settle_all()
    run.check()
    assert {a: sum(run.ex.accounts.balance(a, USD)) for a in (1, 3, FEE)} == {
        1: start[1] + 1,
        3: start[3] - 1,
        FEE: start[FEE],
    }
    for account in (1, 3):
        run.do(Submit(Transfer(0, 0, 1, account, 0, account, ETH, 10**6, 20 + account), 0))
    run.do(Submit(new_order(3, BUY, 1, 1, symbol=ETHBTC, ref=5), 0))  # maker: 1,000 bps
    run.do(Submit(new_order(1, SELL, 1, 1, symbol=ETHBTC, ref=6), 0))  # taker: 999 bps
    run.settle_all()
    run.check()
    assert run.ex.accounts.balance(FEE, BTC) == (10 + 9, 0)


def test_a_buy_repriced_up_and_cut_so_its_hold_falls_is_not_refused_for_money() -> None:
    """README: "A replace reserves only what it may add to the order's hold". A buy of 10 at
    3,000 holding every unit of the account's USD, replaced to 5 at 3,010, needs at most
    15,088 of the 30,075 it holds, whatever fills race it, so it may add nothing. The
    router reserves 1 anyway (``_replace_addition`` adds the fee-rounding slack to the x = 0
    end, where the new need is exactly 0) and refuses it with INSUFFICIENT_BALANCE."""
    held = need(CFG, BTCUSD, BUY, 3_000, 10)
    assert need(CFG, BTCUSD, BUY, 3_010, 5) < held
    run = _poor(CFG, held)
    buy = run.do(Submit(new_order(3, BUY, 3_000, 10, ref=3), 0))
    assert isinstance(buy, NewOrder)
    run.settle_all()
    assert run.ex.accounts.balance(3, USD) == (0, held)
    replace = ReplaceOrder(0, 0, 1, 3, 4, 3, BTCUSD, buy.order_id, 3_010, 5)
    decision = run.ex.sequencer.submit(replace, 0)
    assert decision.reply is None, decision.reply
