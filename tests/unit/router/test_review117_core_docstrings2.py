"""Review 117, part two (part one and the convention: ``test_review117_core_docstrings.py``):
the docstrings of ``accounts.py`` (sell notional, transfers), ``fees.py``,
``settlement.py``, ``transfer_keys.py``, ``watches.py`` and ``symbol_rules.py`` held to the
code, each claim anchored by a quote (``_says``); the rest is part three's.

Disagreement found here (fixed on the docstring side since): ``Accounts.market_sell_notional``'s
"NO_REFERENCE_PRICE for a market sell before the first trade" holds only under a notional limit.
"""

from __future__ import annotations

import random

import msgspec
import pytest

import procs.core.accounts as accounts_mod
from config.schema import RingexConfig
from procs.common.records import (
    NOT_OPEN,
    AccountReply,
    BookLevel,
    CancelOrder,
    CreateAccount,
    FeeSchedule,
    Rejected,
    ReplaceOrder,
    Trade,
    Transfer,
    WatchBalances,
)
from procs.common.result_codes import ResultCode
from procs.common.types import Side
from procs.core import (
    fees,
    settlement,
    symbol_rules,
    transfer_keys,
)
from procs.core.accounts import MAX_TOTAL, Accounts
from procs.core.sequencer import Sequencer
from procs.core.settlement import OpenOrder
from procs.core.symbols import SymbolSpec
from procs.core.transfer_keys import UNTIMED, WINDOW_NS, TransferKeys, Used
from procs.core.watches import Watches
from tests.unit.router import core_rig, money_rig
from tests.unit.router.core_rig import funded, new_order, placed
from tests.unit.router.test_review117_core_docstrings import _code, _order, _says
from tests.unit.test_review107_router import BTC, BTCUSD, USD, Exchange, _config

BUY, SELL = Side.BUY, Side.SELL
OK = ResultCode.OK
MARKET, IOC = core_rig.MARKET, core_rig.IOC

# -- accounts.py: sell notional, transfers ---------------------------------------------------------


def test_market_sell_before_any_trade_without_a_notional_limit() -> None:
    """``Accounts.market_sell_notional``: "with a notional limit, NO_REFERENCE_PRICE for a
    market sell before the first trade" (review 117: the limit was unsaid): without
    ``max_order_notional`` it is OK, with one refused."""
    _says(Accounts.market_sell_notional, "with a notional limit, NO_REFERENCE_PRICE for a")
    order = _order(5, SELL, 0, 1, 1, kind=MARKET, tif=IOC)
    assert Accounts(_config(max_notional=0)).market_sell_notional(order) == ResultCode.OK
    refused = Accounts(_config(max_notional=10_000)).market_sell_notional(order)
    assert refused == ResultCode.NO_REFERENCE_PRICE


def test_sell_notional_checked_at_the_last_trade_when_above() -> None:
    """``market_sell_notional``: "``max_order_notional`` at the last trade price when that is
    above the order's own price"; with a limit, "NO_REFERENCE_PRICE for a market sell before
    the first trade"; ``replace_sell_notional``: "at the last trade price when that is above
    the new price"."""
    _says(Accounts.market_sell_notional, "at the last trade price when that is above the order")
    _says(Accounts.replace_sell_notional, "at the last trade price when that is above the new")
    acc = Accounts(_config(max_notional=1_000))
    assert acc.market_sell_notional(_order(5, SELL, 0, 1, 1, kind=MARKET, tif=IOC)) == (
        ResultCode.NO_REFERENCE_PRICE
    )
    acc._last[BTCUSD] = 600
    assert acc.market_sell_notional(_order(5, SELL, 1, 2, 1)) == ResultCode.NOTIONAL_TOO_LARGE
    assert acc.market_sell_notional(_order(5, SELL, 1, 1, 1)) == OK
    assert acc.market_sell_notional(_order(5, BUY, 1, 9, 1)) == OK  # a buy: its own price
    acc._orders[4] = OpenOrder(5, BTCUSD, SELL, 900, 1, 1, 1, settlement.LIVE)
    assert acc.replace_sell_notional(ReplaceOrder(2, 0, 1, 1, 1, 5, BTCUSD, 4, 1, 2)) == (
        ResultCode.NOTIONAL_TOO_LARGE
    )


def test_transfer_withdraw_at_most_free_and_repeat_of() -> None:
    """``Accounts.transfer``: "Deposit (``amount`` > 0) or withdraw (< 0, at most the free
    balance) ...; a key in use ... is DUPLICATE_TRANSFER (``repeat_of`` tells a repeat of that
    very transfer from another one)"; ``repeat_of``: "The seq of the transfer ``key`` was used
    for when it was this same transfer ..., else 0"."""
    _says(Accounts.transfer, "withdraw (< 0, at most the free balance)")
    _says(Accounts.transfer, "is DUPLICATE_TRANSFER (``repeat_of`` tells a repeat of that very")
    _says(Accounts.repeat_of, "The seq of the transfer ``key`` was used for when it was this same")
    ex = Exchange(_config())
    ex.open(5, usd=1_000, btc=0)
    ex.order(5, BUY, 100, 5)  # 500 + 1 held
    acc = ex.seq.accounts
    assert acc.transfer(5, USD, -500, 70) == ResultCode.INSUFFICIENT_BALANCE
    assert acc.transfer(5, USD, -499, 70, seq=40) == OK
    assert acc.transfer(5, USD, -1, 70) == ResultCode.DUPLICATE_TRANSFER
    assert (acc.repeat_of(5, USD, -499, 70), acc.repeat_of(5, USD, -1, 70)) == (40, 0)
    d = ex.seq.submit(Transfer(0, 0, 1, 1, 9, 5, USD, -499, 70), 50)
    assert d.command is None and isinstance(d.reply, AccountReply)
    assert (d.reply.code, d.reply.seq, d.reply.balance) == (OK, 40, 0)  # answered as the first
    _says(accounts_mod, "The most of one asset all accounts together may hold")  # ``MAX_TOTAL``
    assert acc.transfer(5, USD, MAX_TOTAL - acc.totals(USD), 80) == OK
    assert acc.transfer(99, USD, 1, 81) == ResultCode.BALANCE_LIMIT


# -- fees.py -------------------------------------------------------------------------------------


def _traded(cfg: RingexConfig) -> core_rig.Exchange:
    """Traders funded, then a trade of 3 at 10,000 on BTC-USD (its events not settled)."""
    ex = funded(cfg)
    placed(ex, new_order(1, SELL, 10_000, 5))
    placed(ex, new_order(2, BUY, 10_005, 3, ref=1))
    return ex


def test_fee_changes_one_per_symbol_or_the_fee_account_alone() -> None:
    """``fees.changes``: "(symbol, maker bps, taker bps) for every configured symbol whose
    fees the state does not hold yet; (0, 0, 0) alone when only the fee account is to be
    recorded or changed"; fees.py: "A brand-new journal starts with one per symbol"."""
    _says(fees.changes, "for every configured symbol whose fees the state does not hold yet;")
    _says(fees.changes, "(0, 0, 0) alone when only the fee account is to be recorded or changed")
    _says(fees, "A brand-new journal starts with one per symbol")
    cfg = core_rig.exchange_config()
    seq = Sequencer(cfg, Accounts(cfg))
    assert fees.changes(seq.accounts, cfg) == [(1, 7, 13), (2, 1_000, 3)]
    assert [r.symbol for r in seq.fee_changes(0)] == [1, 2] and seq.fee_changes(0) == []
    moved = msgspec.structs.replace(cfg, risk=msgspec.structs.replace(cfg.risk, fee_account=98))
    assert fees.changes(seq.accounts, moved) == [(0, 0, 0)]


def test_the_first_fee_account_recorded_replaces_only_an_empty_seed() -> None:
    """``fees.set_fee_account``: "The first one recorded replaces the configured account
    ``Accounts`` starts with when that one was only the seed (nothing in it)"; ``fees.apply``:
    "A symbol no longer configured keeps no fees"."""
    _says(fees.set_fee_account, "The first one recorded replaces the configured account")
    _says(fees.set_fee_account, "when that one was only the seed (nothing in it)")
    _says(fees.apply, "A symbol no longer configured keeps no fees")
    empty, funded_seed = Accounts(_config()), Accounts(_config())
    funded_seed.transfer(99, USD, 5, 1)
    for acc in (empty, funded_seed):
        fees.apply(acc, FeeSchedule(1, 0, 42, 1, 2, 100))
        assert 42 not in acc.fee_schedule and acc.fee_account == 100 and acc.known(100)
    assert (empty.known(99), funded_seed.known(99)) == (False, True)


def test_trades_settle_under_the_journaled_fees_on_replay() -> None:
    """fees.py: "a trade must settle under the fees in force when it was made, also when a
    restart replays it under a config changed since" (the journal replayed under other
    fees, ``Recovered.apply``)."""
    _says(fees, "a trade must settle under the fees in force when it was made, also when")
    ex = _traded(core_rig.exchange_config())
    ex.settle()
    assert ex.accounts.balance(core_rig.FEE, USD)[0] > 0
    other = core_rig.exchange_config(fees=(40, 60, 50, 50))
    again = money_rig.replayed(other, ex.journal)
    assert again.sequencer.accounts.state_hash() == ex.accounts.state_hash()


# -- settlement.py -------------------------------------------------------------------------------


def test_a_trade_moves_notional_and_fees_and_cuts_the_buy_hold_back() -> None:
    """settlement.py: "A trade at price p of qty q moves notional(p, q) + the buyer's fee out
    of the buyer's hold and credits it base(q); moves base(q) out of the seller's hold and
    credits it notional - the seller's fee. A fee is floor(notional * bps / 10_000), the
    taker's bps for the aggressor and the maker's for the resting side, credited to the fee
    account ... Then the buyer's hold is cut back to what its remaining qty needs at its
    limit."."""
    _says(settlement, "moves notional(p, q) + the buyer's fee out of the buyer's hold and")
    _says(settlement, "the taker's bps for the aggressor and the maker's for the resting side")
    _says(settlement, "Then the buyer's hold is cut back to what its remaining qty needs at")
    ex = Exchange(_config(maker=10, taker=25))
    ex.open(5, usd=100_000)
    ex.open(6, btc=9)
    ex.order(6, SELL, 1_003, 5)  # the maker
    ex.order(5, BUY, 1_200, 8)  # the taker: 5 at 1,003, 3 rest at 1,200
    notional = 5_015
    taker, maker = notional * 25 // 10_000, notional * 10 // 10_000
    rest = 3_600 + -(-3_600 * 25 // 10_000)
    assert ex.balance(5, USD) == (100_000 - notional - taker - rest, rest)
    assert ex.balance(5, BTC) == (5, 0)
    assert ex.balance(6, BTC) == (4, 0) and ex.balance(6, USD) == (notional - maker, 0)
    assert ex.balance(99, USD) == (taker + maker, 0)


def test_a_reject_sequenced_before_the_new_order_is_ignored() -> None:
    """settlement.py: "A reject sequenced before the order's own new order is about some other
    command and is ignored." (a cancel of the next order id, its reject settled late)."""
    _says(settlement, "A reject sequenced before the order's own new order is about some other")
    ex = funded(core_rig.exchange_config())
    future = ex.sequencer.next_order_id
    assert ex.submit(CancelOrder(0, 0, 1, 1, 50, 1, core_rig.BTCUSD, future))
    order = placed(ex, new_order(1, BUY, 10_000, 2, ref=51))
    held = ex.accounts.balance(1, USD)
    applied = ex.settle()
    assert [e.code for e in applied if isinstance(e, Rejected)] == [ResultCode.UNKNOWN_ORDER]
    assert ex.accounts.balance(1, USD) == held and held[1] > 0
    assert ex.accounts.new_order_seq(future) == order.seq
    refused = ex.sequencer.submit(new_order(1, BUY, 10_000, 2, ref=51), 0)
    assert _code(refused.reply) == ResultCode.DUPLICATE_CLIENT_ORDER_ID
    ex.check()


def test_settlement_checks_the_matcher_and_ignores_book_levels() -> None:
    """settlement.py: "The code checks it anyway, as it checks the matcher's leaves against
    its own, and raises ``AssertionError`` on a mismatch"; ``Settlement.apply``: "events of
    other kinds (book levels, status) are ignored"; "``OrderDone`` (any reason) releases what
    is held; the order is forgotten once nothing is in flight"; ``OpenOrder.pop_replace``:
    "The hold of the oldest replace in flight"."""
    _says(settlement, "``OrderDone`` (any reason) releases what is held; the order is")
    _says(OpenOrder.pop_replace, "The hold of the oldest replace in flight")
    order = OpenOrder(5, BTCUSD, BUY, 1, 1, 1, 1, replaces=[3, 4], asks=[(1, 1), (2, 2)])
    assert order.pop_replace() == 3 and order.asks == [(2, 2)]
    _says(settlement, "raises ``AssertionError`` on a mismatch (a broken invariant).")
    _says(settlement.Settlement.apply, "events of other kinds (book levels, status) are ignored")
    ex = Exchange(_config())
    ex.open(5, usd=10_000)
    ex.open(6, btc=5)
    sell, buy = ex.seq.next_order_id, ex.seq.next_order_id + 1
    ex.order(6, SELL, 100, 2)
    ex.order(5, BUY, 90, 2)
    acc = ex.seq.accounts
    other = ex.seq.next_order_id
    ex.order(5, BUY, 80, 1)
    ex.send(CancelOrder(0, 0, 1, 1, 9, 5, BTCUSD, other))  # OrderDone CANCELLED
    assert ex.balance(5, USD) == (10_000 - 181, 181) and acc.new_order_seq(other) == 0
    before = acc.snapshot()
    acc.apply(BookLevel(9, 0, BTCUSD, BUY, 90, 7, 1))
    assert acc.snapshot() == before
    leaves = Trade(9, 0, 1, BTCUSD, 90, 1, BUY, sell, 6, 1, 1, buy, 5, 1, 0)  # 2 - 1 is not 0
    with pytest.raises(AssertionError, match=f"fills 1 of order {buy} leaving 0"):
        acc.apply(leaves)
    above = Trade(9, 0, 1, BTCUSD, 95, 1, BUY, sell, 6, 1, 1, buy, 5, 1, 1)  # above its limit
    with pytest.raises(AssertionError, match=f"costs order {buy} 95 but it holds"):
        acc.apply(above)


def test_random_streams_keep_the_money_and_replay_the_same() -> None:
    """accounts.py: "No event lowers a free balance (fills and releases only move money out of
    holds)", "the state after the same commands and events is the same, whatever the
    interleaving"; "every ``reserved`` is exactly the sum of the holds of its orders"
    (``money_rig``'s lagged random streams, every settle watched; then the journal replayed)."""
    _says(accounts_mod, "No event lowers a free balance (fills and releases only move money out of")
    _says(accounts_mod, "the state after the same commands and events is the same, whatever")
    _says(accounts_mod, "every ``reserved`` is exactly the sum of the holds of its orders")
    for trial in range(8):
        rng = random.Random(117 + trial)
        run = money_rig.funded_run()
        driver = money_rig.Driver(run)
        for _ in range(200):
            op = (rng.choice(money_rig.OPS), tuple(rng.choices(range(10**4), k=10)))
            action = driver.command(op)
            free = {(a, s): f for a, s, f, _ in run.ex.accounts.state().balances}
            run.do(action)
            if isinstance(action, money_rig.Settle):
                after = {(a, s): f for a, s, f, _ in run.ex.accounts.state().balances}
                assert all(after.get(k, 0) >= v for k, v in free.items()), trial
            run.check()
        run.settle_all()
        again = money_rig.replayed(run.ex.cfg, run.ex.journal)
        assert again.sequencer.accounts.state_hash() == run.ex.accounts.state_hash(), trial


# -- transfer_keys.py ----------------------------------------------------------------------------


def test_a_key_is_in_use_for_the_window_then_free() -> None:
    """transfer_keys.py: "each is remembered for ``WINDOW_NS`` (7 days) after its transfer: a
    retry within it is applied once, a key older than that is free again." (``Accounts.
    transfer``, the keys' ``#:`` "How long after its transfer a key stays in use")."""
    _says(transfer_keys, "remembered for ``WINDOW_NS`` (7 days) after its transfer: a retry within")
    _says(transfer_keys, "it is applied once, a key older than that is free again.")
    assert WINDOW_NS == 7 * 86_400 * 10**9
    acc = Accounts(_config())
    acc.create_account(5)
    assert acc.transfer(5, USD, 10, 1, seq=3, ts_ns=100) == OK
    assert acc.transfer(5, USD, 10, 1, ts_ns=100 + WINDOW_NS - 1) == ResultCode.DUPLICATE_TRANSFER
    assert acc.repeat_of(5, USD, 10, 1, 100 + WINDOW_NS - 1) == 3
    assert acc.transfer(5, USD, 10, 1, ts_ns=100 + WINDOW_NS) == OK


def test_the_exchange_time_never_goes_back() -> None:
    """transfer_keys.py: "a key's time is that of its transfer ... or, should the router's
    clock have stepped back, the latest of the accepted transfers before it ... A key's age is
    measured against that time or the asking transfer's, whichever is later"."""
    _says(transfer_keys, "should the router's clock have stepped back, the latest of the accepted")
    _says(transfer_keys, "against that time or the asking transfer's, whichever is later")
    keys = TransferKeys()
    ahead = 3 * WINDOW_NS
    keys.add(1, Used(5, USD, 1, 1, ahead))  # a clock a few weeks ahead
    keys.add(2, Used(5, USD, 1, 2, 10))  # set right: kept at the latest time
    assert keys.get(2, 11) is not None and keys.get(2, ahead + WINDOW_NS - 1) is not None
    assert keys.get(2, ahead + WINDOW_NS) is None
    keys.add(3, Used(5, USD, 1, 3, ahead + WINDOW_NS))  # the latest moves: old keys age by it
    assert keys.get(1, 0) is None and len(keys) == 1  # and are dropped (``_expire``)


def test_a_refused_transfer_changes_nothing_and_dropping_decides_nothing() -> None:
    """transfer_keys.py: "a key past the window then can never be in use again, so when it is
    dropped (``_expire``, as an accepted transfer is added) decides nothing; a refused
    transfer, which the journal does not hold, changes nothing"."""
    _says(transfer_keys, "so when it is dropped (``_expire``, as an accepted transfer is added)")
    _says(transfer_keys, "a refused transfer, which the journal does not hold, changes nothing")
    acc = Accounts(_config())
    acc.create_account(5)
    acc.transfer(5, USD, 10, 1, ts_ns=0)
    before = acc.snapshot()
    for amount, key in ((-11, 2), (10, 1), (0, 3)):
        assert acc.transfer(5, USD, amount, key, ts_ns=WINDOW_NS // 2) != OK
    assert acc.snapshot() == before
    assert acc._keys.get(1, WINDOW_NS) is None and len(acc._keys) == 1  # past, not dropped yet
    acc.transfer(5, USD, 1, 9, ts_ns=WINDOW_NS)
    assert acc._keys.get(1, WINDOW_NS) is None and len(acc._keys) == 1


def test_untimed_keys_of_an_older_snapshot() -> None:
    """transfer_keys.py ``UNTIMED``: "in use until the first transfer this build accepts, then
    timed at its time"; ``state``: "(an untimed key has no time: restored untimed again)"."""
    _says(transfer_keys, "in use until the first transfer this build accepts, then timed at its")
    _says(TransferKeys.state, "(an untimed key has no time: restored untimed again)")
    keys = TransferKeys.restore([7, (8, 5, USD, 3, 2)], [(8, 50)])
    assert keys.get(7, 10**18) == Used(0, 0, 0, 0, UNTIMED)
    again = TransferKeys.restore(*keys.state())
    assert again.state() == keys.state() and again.get(7, 10**18) is not None
    keys.add(9, Used(5, USD, 1, 3, 1_000))
    assert keys.get(7, 1_000 + WINDOW_NS - 1) is not None and keys.get(7, 1_000 + WINDOW_NS) is None


# -- watches.py ----------------------------------------------------------------------------------


def _watched(*accounts: int) -> Watches:
    ex = Exchange(_config())
    ex.open(5, usd=1_000, btc=4)
    ex.open(6)
    w = Watches(ex.seq.accounts)
    for gateway in (3, 2):
        for account in accounts:
            w.execute(gateway, WatchBalances(0, 0, gateway, 1, 7, account, 1_000), 0, 1)
    return w


def test_watch_snapshot_records() -> None:
    """``Watches.snapshot``: "One ``Balance`` per asset the account holds any of, by asset id,
    the last one with ``last`` 1; a single all-zero record with asset 0 when it holds nothing
    (``last`` ``NOT_OPEN`` when it was never opened)"; ``execute``: "nothing when ``lease_ms``
    is 0"; ``watchers``: "ascending"."""
    _says(Watches.snapshot, "One ``Balance`` per asset the account holds any of, by asset id,")
    _says(Watches.snapshot, "(``last`` ``NOT_OPEN`` when it was never opened)")
    _says(Watches.execute, "or nothing when ``lease_ms`` is 0")
    _says(Watches.watchers, "The gateways watching ``account``, ascending")
    w = _watched(5)
    snap = w.execute(2, WatchBalances(0, 0, 2, 1, 8, 5, 100), 0, 4)
    assert [(b.asset, b.free, b.last, b.seq) for b in snap] == [(USD, 1_000, 0, 4), (BTC, 4, 1, 4)]
    assert [(b.asset, b.last) for b in w.snapshot(2, WatchBalances(0, 0, 2, 1, 8, 6, 1), 0, 4)] == [
        (0, 1)
    ]
    assert w.snapshot(2, WatchBalances(0, 0, 2, 1, 8, 66, 1), 0, 4)[0].last == NOT_OPEN
    assert w.watchers(5) == (2, 3)
    assert w.execute(3, WatchBalances(0, 0, 3, 1, 9, 5, 0), 0, 4) == [] and w.watchers(5) == (2,)


def test_take_pushes_once_per_slot_labelled_and_again_when_the_label_reaches() -> None:
    """``Watches.take``: "ordered by account, asset, gateway; at most one per (gateway,
    account, asset) a ``take``, each labelled ``label`` ... pushed again, once, at the first
    ``take`` whose label reaches that seq. Leases expired at ``now_ns`` are dropped first."."""
    _says(Watches.take, "ordered by account, asset, gateway; at most one per (gateway, account,")
    _says(Watches.take, "pushed again, once, at the first ``take`` whose label reaches that seq.")
    _says(Watches.take, "Leases expired at ``now_ns`` are dropped first.")
    w = _watched(6, 5)
    w.touch(6, USD, 9)
    for seq in (10, 11, 12):
        w.touch(5, BTC, seq)
    w.touch(5, USD, 3)
    pushes = w.take(0, 5)
    assert [(g, b.account, b.asset, b.seq) for g, b in pushes] == [
        (2, 5, USD, 5), (3, 5, USD, 5), (2, 5, BTC, 5), (3, 5, BTC, 5), (2, 6, USD, 5),
        (3, 6, USD, 5),
    ]  # fmt: skip
    assert [(g, b.account, b.asset, b.seq) for g, b in w.take(0, 11)] == [
        (2, 6, USD, 11), (3, 6, USD, 11),
    ]  # fmt: skip
    assert w.take(0, 11) == [] and w.pending  # (5, BTC) waits for its seq 12
    assert [(g, b.account, b.asset) for g, b in w.take(0, 12)] == [(2, 5, BTC), (3, 5, BTC)]
    assert w.take(0, 99) == [] and not w.pending  # twice per touch at most
    w.touch(5, USD, 100)
    assert w.take(1_000 * 1_000_000, 100) == [] and not w  # the leases ran out: dropped


def test_touches_trade_both_sides_and_the_fee_account() -> None:
    """``touch_events``: "a trade moves both sides' base and quote and pays the fee account;
    a done order, a reject or a replace moves a hold"; ``touch_commands``: "a new order or
    replace reserves, a transfer moves its asset"."""
    _says(Watches.touch_events, "a trade moves both sides' base and quote and pays the fee")
    _says(Watches.touch_commands, "a new order or replace reserves, a transfer moves its asset;")
    w = _watched(5, 6, 99)
    trade = Trade(9, 0, 1, BTCUSD, 100, 1, BUY, 1, 5, 1, 0, 2, 6, 1, 0)
    w.touch_events([trade])
    assert sorted(w._touched) == [(a, s) for a in (5, 6, 99) for s in (USD, BTC)]
    w.take(0, 9)
    w.touch_commands([Transfer(10, 0, 1, 1, 1, 5, BTC, 1, 1), CreateAccount(11, 0, 1, 1, 1, 6)])
    w.touch_events([Rejected(12, 0, 1, 1, 1, 6, BTCUSD, 3, ResultCode.UNKNOWN_ORDER)])
    assert sorted(w._touched) == [(5, BTC), (6, USD), (6, BTC)]


# -- symbol_rules.py -----------------------------------------------------------------------------


def test_rules_changes_in_symbol_order_and_records_unsequenced() -> None:
    """``symbol_rules.changes``: "Unsequenced records of the configured specs whose rules
    differ from those ``journaled`` for their symbol, or that have none journaled. In symbol
    id order."; ``record_of``: "unsequenced (seq and time 0)"."""
    _says(symbol_rules.changes, "whose rules differ from those ``journaled`` for their symbol,")
    _says(symbol_rules.changes, "or that have none journaled. In symbol id order.")
    _says(symbol_rules.record_of, "unsequenced (seq and time 0)")
    a, b, c = (SymbolSpec(symbol=s, tick=s) for s in (3, 1, 2))
    journaled = {1: symbol_rules.rules_of(b), 2: symbol_rules.rules_of(SymbolSpec(symbol=2))}
    out = symbol_rules.changes([a, b, c], journaled)
    assert [(r.symbol, r.seq, r.ts_ns, r.tick) for r in out] == [(2, 0, 0, 2), (3, 0, 0, 3)]
    assert symbol_rules.spec_of_record(out[1]) == a
