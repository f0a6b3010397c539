"""The pure cores at their edges (``core_rig.Exchange``): values at int64's limits, the record
codec's bounds, FOK with self-trade prevention and icebergs, post-only replaces, client order
ids, notional limits, transfer keys, halts. Each test named after a bug failed before its fix.
"""

from __future__ import annotations

import msgspec
import pytest

from procs.common.records import (
    AccountReply,
    AdminCommand,
    CancelOrder,
    CreateAccount,
    NewOrder,
    Rejected,
    ReplaceOrder,
    Trade,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.types import (
    AdminAction,
    OrderFlag,
    Side,
    StpMode,
    TimeInForce,
)
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec
from shm.errors import EncodeError
from tests.unit.router.core_rig import (
    BTC,
    BTCUSD,
    BUY,
    CODEC,
    DAY,
    ETH,
    ETHUSD,
    FOK,
    GTC,
    I64_MAX,
    IOC,
    LIMIT,
    MARKET,
    OK,
    SELL,
    STOP,
    USD,
    Exchange,
    exchange_config,
    funded,
    new_order,
    placed,
    roundtrip,
)

# -- records: what does not fit a field's encoding ----------------------------------------------


def _price(value: int) -> NewOrder:
    return msgspec.structs.replace(new_order(1, BUY, 100, 1), price=value)


@pytest.mark.parametrize("value", [2**63, 2**64, -(2**63) - 1], ids=["2^63", "2^64", "-2^63-1"])
def test_a_field_out_of_its_bounds_is_refused_when_encoded(value: int) -> None:
    with pytest.raises(EncodeError, match="price"):
        CODEC.encode_slots([_price(1), _price(value)])  # the journal's path


# -- int64 limits: balances, caps, and the fast book's sentinel --------------------------------


def test_deposits_never_push_a_balance_past_int64() -> None:
    ex = Exchange.fresh(exchange_config())
    ex.submit(CreateAccount(0, 0, 1, 1, 0, 1))
    for key in range(3):
        decision = ex.sequencer.submit(Transfer(0, 0, 1, 1, key, 1, USD, I64_MAX, key + 1), 0)
        assert decision.reply is not None
        roundtrip(decision.reply)  # the reply must reach its gateway
    assert sum(ex.accounts.balance(1, USD)) <= I64_MAX
    assert ex.accounts.totals(USD) <= I64_MAX


def test_a_stop_buy_cap_always_fits_the_record() -> None:
    cfg = exchange_config(max_notional=0)
    ex = Exchange.fresh(cfg)
    ex.submit(CreateAccount(0, 0, 1, 1, 0, 1))
    for key in range(1, 5):  # rich enough for the hold: the balance check is not the guard
        ex.sequencer.submit(Transfer(0, 0, 1, 1, key, 1, USD, I64_MAX, key), 0)
    stop = I64_MAX - 10  # ETH-USD: tick 1, notional = p * q, the cap is stop * 1.0333
    order = new_order(1, BUY, 0, 2, symbol=ETHUSD, kind=STOP, stop=stop)
    decision = ex.sequencer.submit(order, 0)
    if decision.command is not None:  # refusing it is fine; journaling garbage is not
        roundtrip(decision.command)


@pytest.mark.parametrize("price", [2**62, I64_MAX])
@pytest.mark.parametrize("how", ["new", "replace"])
def test_a_buy_at_a_huge_price_rests_in_both_books(price: int, how: str) -> None:
    spec = SymbolSpec(symbol=7)
    books: list[Book] = [ReferenceBook(spec), FastBook(spec)]
    head = (1, 1, 1, 1, 1, 1, 7, 1)
    new = NewOrder(*head, BUY, LIMIT, GTC, 0, StpMode.NONE, price if how == "new" else 5, 1, 0, 0)
    outcomes = []
    for book in books:
        events = book.execute(new)
        if how == "replace":
            events = book.execute(ReplaceOrder(2, 2, 1, 1, 2, 1, 7, 1, price, 1))
        book.validate_internal_state()
        outcomes.append((events, book.state_hash()))
    assert outcomes[0] == outcomes[1]


def test_an_ask_above_two_to_the_62_is_seen_by_both_books() -> None:
    spec = SymbolSpec(symbol=7, band_bps=10_000)
    script = [
        NewOrder(1, 1, 1, 1, 1, 1, 7, 1, SELL, LIMIT, GTC, 0, StpMode.NONE, 2**62 + 1, 1, 0, 0),
        NewOrder(2, 2, 1, 2, 2, 2, 7, 2, BUY, MARKET, IOC, 0, StpMode.NONE, 0, 1, 0, 0),
    ]
    reference, fast = ReferenceBook(spec), FastBook(spec)
    for command in script:
        assert fast.execute(command) == reference.execute(command), command
        fast.validate_internal_state()


# -- matcher semantics -----------------------------------------------------------------------------


def _limit(
    oid: int,
    account: int,
    side: Side,
    price: int,
    qty: int,
    *,
    tif: TimeInForce = GTC,
    stp: StpMode = StpMode.NONE,
    flags: int = 0,
    display: int = 0,
) -> NewOrder:
    return NewOrder(
        *(oid, oid, 1, account, oid, account, 7, oid, side, LIMIT, tif, flags, stp, price, qty),
        *(0, display),
    )


@pytest.mark.parametrize("book_cls", [ReferenceBook, FastBook])
@pytest.mark.parametrize("stp", [StpMode.CANCEL_OLDEST, StpMode.CANCEL_NEWEST, StpMode.CANCEL_BOTH])
def test_fok_with_self_trade_prevention_is_all_or_nothing(
    book_cls: type[Book], stp: StpMode
) -> None:
    book = book_cls(SymbolSpec(symbol=7))
    book.execute(_limit(1, 2, SELL, 100, 5))  # someone else's, best
    book.execute(_limit(2, 1, SELL, 101, 5))  # the aggressor's own
    events = book.execute(_limit(3, 1, BUY, 101, 10, tif=FOK, stp=stp))
    filled = sum(e.qty for e in events if isinstance(e, Trade))
    assert filled in (0, 10), events


@pytest.mark.parametrize("book_cls", [ReferenceBook, FastBook])
def test_fok_counts_an_icebergs_hidden_reserve(book_cls: type[Book]) -> None:
    book = book_cls(SymbolSpec(symbol=7))
    book.execute(_limit(1, 2, SELL, 100, 10, display=2))
    events = book.execute(_limit(2, 1, BUY, 100, 10, tif=FOK))
    assert sum(e.qty for e in events if isinstance(e, Trade)) == 10, events


@pytest.mark.parametrize("book_cls", [ReferenceBook, FastBook])
def test_a_post_only_order_never_takes_not_even_after_a_replace(book_cls: type[Book]) -> None:
    book = book_cls(SymbolSpec(symbol=7))
    book.execute(_limit(1, 2, SELL, 100, 5))
    book.execute(_limit(2, 1, BUY, 90, 5, flags=OrderFlag.POST_ONLY))
    events = book.execute(ReplaceOrder(3, 3, 1, 1, 3, 1, 7, 2, 100, 5))
    assert not [e for e in events if isinstance(e, Trade) and e.taker_order_id == 2], events


@pytest.mark.parametrize("book_cls", [ReferenceBook, FastBook])
def test_an_iceberg_replaced_to_a_crossing_price_takes_then_rests_one_slice(
    book_cls: type[Book],
) -> None:
    book = book_cls(SymbolSpec(symbol=7))
    book.execute(_limit(1, 2, SELL, 100, 3))
    book.execute(_limit(2, 1, BUY, 90, 20, display=4))
    events = book.execute(ReplaceOrder(3, 3, 1, 1, 3, 1, 7, 2, 100, 12))
    trades = [e for e in events if isinstance(e, Trade)]
    assert [(t.qty, t.taker_leaves) for t in trades] == [(3, 9)]
    order = book.orders[2]
    assert (order.price, order.leaves, order.reserve) == (100, 4, 5)  # a 4-lot slice shows
    book.validate_internal_state()


# -- the sequencer's soft limits ------------------------------------------------------------------


def test_a_rejected_replace_does_not_free_its_orders_client_order_id() -> None:
    ex = funded(exchange_config())
    order = placed(ex, new_order(1, BUY, 9_000, 2, ref=42))
    ex.settle()
    # the same client_ref on a replace the matcher refuses (qty 0 is not a valid size)
    ex.submit(ReplaceOrder(0, 0, 1, 1, 42, 1, BTCUSD, order.order_id, 9_000, 0))
    (reject,) = ex.settle()
    assert isinstance(reject, Rejected) and reject.code == ResultCode.QTY_OUT_OF_RANGE
    decision = ex.sequencer.submit(new_order(1, BUY, 9_000, 2, ref=42), 0)
    assert isinstance(decision.reply, Rejected), "two live orders now share client_ref 42"
    assert decision.reply.code == ResultCode.DUPLICATE_CLIENT_ORDER_ID


def test_notional_limits_are_inclusive_for_new_orders_stops_and_replaces() -> None:
    cfg = exchange_config(max_notional=1_000_000)  # BTC-USD notional = p * q * 10
    ex = funded(cfg)
    cases = [
        (new_order(1, BUY, 10_000, 10), OK),
        (new_order(1, BUY, 10_005, 10), ResultCode.NOTIONAL_TOO_LARGE),
        (new_order(2, SELL, 20_000, 5), OK),
        (new_order(2, SELL, 20_005, 5), ResultCode.NOTIONAL_TOO_LARGE),
        (new_order(2, SELL, 0, 5, kind=STOP, stop=20_000), OK),  # checked at its stop
        (new_order(2, SELL, 0, 5, kind=STOP, stop=20_005), ResultCode.NOTIONAL_TOO_LARGE),
        # no worst price: checked at the last trade price, and there is none yet
        (new_order(2, SELL, 0, 50, kind=MARKET, tif=IOC), ResultCode.NO_REFERENCE_PRICE),
    ]
    for ref, (order, code) in enumerate(cases, start=100):
        decision = ex.sequencer.submit(msgspec.structs.replace(order, client_ref=ref), 0)
        got = OK if decision.command is not None else decision.reply.code  # type: ignore[union-attr]
        assert got == code, order
    bid = next(o for o in ex.accounts.state().orders if o.account == 1)
    at_limit = ReplaceOrder(0, 0, 1, 1, 7, 1, BTCUSD, bid.order_id, 20_000, 5)
    over = msgspec.structs.replace(at_limit, order_qty=6)
    assert ex.accounts.reserve_replace(over) == ResultCode.NOTIONAL_TOO_LARGE
    assert ex.accounts.reserve_replace(at_limit) == OK


def test_transfer_keys_are_global_and_refusals_change_nothing() -> None:
    ex = funded(exchange_config())
    before = ex.accounts.state_hash()
    used = 1 * 10 + USD  # account 1's USD deposit
    for account, asset, amount in ((1, USD, 5), (2, USD, 10**10), (2, BTC, -1), (1, ETH, 1)):
        decision = ex.sequencer.submit(Transfer(0, 0, 1, 1, 9, account, asset, amount, used), 0)
        reply = decision.reply
        assert decision.command is None and isinstance(reply, AccountReply)
        assert (reply.code, reply.seq) == (ResultCode.DUPLICATE_TRANSFER, 0)
        assert reply.balance == ex.accounts.balance(account, asset)[0]  # the free balance
    withdraw_all = Transfer(0, 0, 1, 1, 9, 2, BTC, -(10**7) - 1, 777)
    reply = ex.sequencer.submit(withdraw_all, 0).reply
    assert isinstance(reply, AccountReply) and reply.code == ResultCode.INSUFFICIENT_BALANCE
    assert ex.accounts.state_hash() == before
    # the refused withdrawal did not spend its key
    ok = ex.sequencer.submit(msgspec.structs.replace(withdraw_all, amount=-(10**7)), 0).reply
    assert isinstance(ok, AccountReply) and (ok.code, ok.balance) == (OK, 0)


# -- router and matcher together: halts and replaces ---------------------------------------------


def test_a_halt_refuses_and_releases_while_cancels_and_end_of_session_still_work() -> None:
    ex = funded(exchange_config())
    free = ex.accounts.balance(1, USD)[0]
    day = placed(ex, new_order(1, BUY, 9_000, 2, ref=1, tif=DAY))
    gtc = placed(ex, new_order(1, BUY, 8_000, 3, ref=2))
    stop = placed(ex, new_order(1, BUY, 0, 2, ref=3, kind=STOP, stop=10_500))
    ex.submit(AdminCommand(0, 0, AdminAction.HALT, 0, 0))
    ex.submit(ReplaceOrder(0, 0, 1, 1, 4, 1, BTCUSD, gtc.order_id, 8_500, 3))
    placed(ex, new_order(1, BUY, 9_000, 1, ref=5))
    placed(ex, new_order(2, SELL, 10_500, 1, ref=6))
    ex.settle()
    codes = [r.code for r in map(CODEC.decode_slot, ex.out) if isinstance(r, Rejected)]
    assert codes == [ResultCode.SYMBOL_HALTED] * 3
    ex.submit(CancelOrder(0, 0, 1, 1, 7, 1, BTCUSD, gtc.order_id))
    ex.submit(AdminCommand(0, 0, AdminAction.END_OF_SESSION, BTCUSD, 0))
    ex.settle()
    assert [o.order_id for o in ex.accounts.state().orders] == [stop.order_id]
    assert day.order_id not in ex.fast["m1"].books[BTCUSD].orders
    held = ex.accounts.balance(1, USD)[1]
    assert held == ex.accounts.markets[BTCUSD].hold(BUY, stop.price, 2)  # only the stop holds
    ex.submit(AdminCommand(0, 0, AdminAction.RESUME, 0, 0))
    placed(ex, new_order(2, SELL, 10_500, 3, ref=8))
    placed(ex, new_order(3, BUY, 10_500, 1, ref=9))  # trades at the stop: triggers it
    ex.settle()
    assert ex.accounts.open_orders(1) == 0 and ex.accounts.balance(1, USD)[1] == 0
    assert ex.accounts.balance(1, BTC)[0] == 10**7 + 200
    assert ex.accounts.balance(1, USD)[0] < free
    ex.check()


def test_a_partly_filled_buy_replaced_across_the_book_settles_to_the_unit() -> None:
    ex = funded(exchange_config())
    buy = placed(ex, new_order(1, BUY, 9_000, 10, ref=1))
    placed(ex, new_order(2, SELL, 9_000, 4, ref=2))  # fills 4: the buy is the maker (7 bps)
    placed(ex, new_order(3, SELL, 9_500, 3, ref=3))
    placed(ex, new_order(3, SELL, 9_600, 10, ref=4))
    ex.settle()
    usd = ex.accounts.balance(1, USD)
    # a taker now, for a new total of 9 (4 filled): 5 open
    ex.submit(ReplaceOrder(0, 0, 1, 1, 5, 1, BTCUSD, buy.order_id, 9_600, 9))
    ex.settle()
    taker = [(9_500, 3), (9_600, 2)]
    cost = sum(p * q * 10 + p * q * 10 * 13 // 10_000 for p, q in taker)
    assert ex.accounts.balance(1, USD) == (sum(usd) - cost, 0)
    assert ex.accounts.open_orders(1) == 0
    ex.check()
