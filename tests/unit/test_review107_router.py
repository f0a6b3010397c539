"""Review 107: README.md's "## The router and the journal", the sequencer and the accounts,
held to the code mechanically: every refusal, hold, fee, limit and start-up record it states
that a ``Sequencer`` in front of a ``Matcher`` can show is shown, and every number it states
is the code's constant (quoted by name). The journal on disk is in
``test_review107_journal.py``.

Convention (as review 104's, shared helpers in ``readme_core_claims``): the README is read as
it is when the test runs, and each claim is found in it by a quote (whitespace folded), so a
claim that is reworded fails here, loudly. A claim checked and found right is a plain test; a
disagreement was a strict xfail until fixed. Three were found here, all README wordings now
mended: a stop-market buy's notional checked at its cap (not its stop price), a market sell's
NO_REFERENCE_PRICE only under a notional limit, and account and admin commands not drawn on the
per-account command rate. Nothing here starts a process.
"""

from __future__ import annotations

import inspect

import msgspec
import pytest

from config.schema import (
    AssetConfig,
    JournalConfig,
    MatcherConfig,
    RingexConfig,
    RiskConfig,
    SymbolConfig,
)
from procs.common import journal_history
from procs.common.record_codec import RecordCodec
from procs.common.records import (
    JOURNALED_TYPES,
    Accepted,
    AdminCommand,
    CancelOrder,
    CreateAccount,
    FeeSchedule,
    MassCancel,
    NewOrder,
    Record,
    Rejected,
    ReplaceOrder,
    SymbolRules,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.snapshots import SnapshotStore
from procs.common.types import DoneReason, OrderFlag, OrdType, Side, StpMode, TimeInForce
from procs.core import fees, recovery
from procs.core.accounts import MAX_TOTAL, Accounts
from procs.core.engine import Matcher
from procs.core.sequencer import Sequencer
from procs.core.symbols import SymbolSpec
from procs.router import intake
from shm.errors import EncodeError
from tests.unit.readme_core_claims import (
    BUY,
    CODEC,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    SELL,
    STOP,
    STOP_LIMIT,
    _claim,
    _done,
    _of,
    _order,
    _trades,
)

# -- the router: the sequencer and the accounts -----------------------------------------------

USD, BTC = 1, 2
BTCUSD = 1
FEE_ACCOUNT = 99


def _config(
    *,
    maker: int = 10,
    taker: int = 20,
    max_open: int = 1_000,
    max_notional: int = 0,
    rate: int = 1_000,
) -> RingexConfig:
    """One symbol: price in cents (notional = price x qty cents), qty in whole BTC."""
    return RingexConfig(
        assets=[
            AssetConfig(name="USD", id=USD, decimals=2),
            AssetConfig(name="BTC", id=BTC, decimals=0),
        ],
        symbols=[
            SymbolConfig(
                name="BTC-USD",
                id=BTCUSD,
                tick=1,
                price_decimals=2,
                qty_decimals=0,
                base="BTC",
                quote="USD",
                band_bps=1_000,
                maker_fee_bps=maker,
                taker_fee_bps=taker,
            )
        ],
        matchers=[MatcherConfig(name="m1", symbols=["BTC-USD"])],
        risk=RiskConfig(
            max_open_orders=max_open,
            max_order_notional=max_notional,
            max_commands_per_s=rate,
            fee_account=FEE_ACCOUNT,
        ),
        journal=JournalConfig(fsync="none"),
    )


class Exchange:
    """A sequencer in front of one matcher, every event settled at once."""

    def __init__(self, cfg: RingexConfig) -> None:
        self.cfg = cfg
        self.seq = Sequencer(cfg, Accounts(cfg))
        self.seq.fee_changes(0)
        self.matcher = Matcher(
            [SymbolSpec(symbol=BTCUSD, band_bps=1_000)],
        )
        self.ref = 0
        self.now = 1

    def send(self, command: Record) -> tuple[Record | None, list[Record]]:
        """``command`` submitted: its reply (None when sequenced) and the matcher's events."""
        self.now += 1
        decision = self.seq.submit(command, self.now)
        if decision.command is None:
            return decision.reply, []
        events = self.matcher.execute(decision.command) if decision.matchers else []
        self.seq.settle(events)
        self.seq.applied(decision.command.seq)  # type: ignore[attr-defined]
        return decision.reply, events

    def open(self, account: int, usd: int = 0, btc: int = 0) -> None:
        self.ref += 1
        self.send(CreateAccount(0, 0, 1, 1, self.ref, account))
        for asset, amount in ((USD, usd), (BTC, btc)):
            if amount:
                self.ref += 1
                self.send(Transfer(0, 0, 1, 1, self.ref, account, asset, amount, self.ref))

    def order(
        self,
        account: int,
        side: Side,
        price: int,
        qty: int,
        *,
        kind: OrdType = LIMIT,
        tif: TimeInForce = GTC,
        stop: int = 0,
        session: int = 1,
        ref: int | None = None,
    ) -> tuple[Record | None, list[Record]]:
        self.ref += 1
        return self.send(NewOrder(
            seq=0, ts_ns=0, gateway=1, session=session,
            client_ref=self.ref if ref is None else ref, account=account, symbol=BTCUSD,
            order_id=0, side=side, ord_type=kind, tif=tif, flags=0, stp=StpMode.NONE,
            price=price, qty=qty, stop_price=stop, display_qty=0,
        ))  # fmt: skip

    def replace(self, account: int, order_id: int, price: int, total: int) -> Record | None:
        self.ref += 1
        cmd = ReplaceOrder(0, 0, 1, 1, self.ref, account, BTCUSD, order_id, price, total)
        return self.send(cmd)[0]

    def balance(self, account: int, asset: int) -> tuple[int, int]:
        return self.seq.accounts.balance(account, asset)


def _code(reply: Record | None) -> ResultCode:
    return reply.code if isinstance(reply, Rejected) else ResultCode.OK


def test_submit_stamps_seq_order_id_and_matcher() -> None:
    """README "## The router and the journal": ``Sequencer.submit`` "stamps it with the next
    global `seq` (a new order also gets its `order_id`) and says which matcher gets it"."""
    _claim("or stamps it with the next global `seq` (a new order also gets its `order_id`) and")
    ex = Exchange(_config())
    ex.open(5, usd=1_000_000)
    first = ex.seq.next_seq
    order = NewOrder(
        seq=0, ts_ns=0, gateway=1, session=1, client_ref=1, account=5, symbol=BTCUSD,
        order_id=0, side=BUY, ord_type=LIMIT, tif=GTC, flags=0, stp=StpMode.NONE, price=100,
        qty=1, stop_price=0, display_qty=0,
    )  # fmt: skip
    decision = ex.seq.submit(order, 7)
    assert isinstance(decision.command, NewOrder)
    assert (decision.command.seq, decision.command.ts_ns) == (first, 7)
    assert decision.command.order_id >= 1 and decision.matchers == ("m1",)


def test_submit_refusals() -> None:
    """README "## The router and the journal": submit "refuses a command (rate limit,
    duplicate client order id per session, unknown symbol, a risk check) with a reply to its
    gateway": ``ACCOUNT_RATE_LIMITED``, ``DUPLICATE_CLIENT_ORDER_ID`` (the same client ref in
    one session; another session may reuse it), ``UNKNOWN_SYMBOL``, ``INSUFFICIENT_BALANCE``."""
    _claim("refuses a command (rate limit, duplicate client order id per session, unknown")
    ex = Exchange(_config(rate=3))
    ex.open(5, usd=10_000)
    assert _code(ex.order(5, BUY, 100, 1, ref=77)[0]) == ResultCode.OK
    assert _code(ex.order(5, BUY, 100, 1, ref=77)[0]) == ResultCode.DUPLICATE_CLIENT_ORDER_ID
    assert _code(ex.order(5, BUY, 100, 1, ref=77, session=2)[0]) == ResultCode.OK
    assert _code(ex.order(5, BUY, 100, 1)[0]) == ResultCode.ACCOUNT_RATE_LIMITED
    ex2 = Exchange(_config())
    ex2.open(5, usd=10_000)
    assert _code(ex2.order(5, BUY, 10_000, 1)[0]) == ResultCode.INSUFFICIENT_BALANCE
    bad = _order(client_ref=9, account=5, symbol=42)
    assert _code(ex2.send(bad)[0]) == ResultCode.UNKNOWN_SYMBOL


def test_holds_buy_notional_plus_largest_fee_sell_base() -> None:
    """README "## The router and the journal": "a new order reserves what it can spend (buy:
    notional at its limit plus the largest fee ...; sell: the base size)"; "Every buy holds
    the symbol's fee margin, max(maker, taker)" (money.py ``Market.hold``: ceil of the
    margin)."""
    _claim("a new order reserves what it can spend (buy: notional at its limit")
    _claim("plus the largest fee")
    _claim("Every buy holds the symbol's fee margin, max(maker, taker)")
    ex = Exchange(_config(maker=30, taker=20))
    ex.open(5, usd=1_000_000, btc=10)
    ex.order(5, BUY, 1_001, 10)  # notional 10,010; 30 bps = 30.03: 31
    assert ex.balance(5, USD) == (1_000_000 - 10_041, 10_041)
    ex.order(5, SELL, 2_000, 4)
    assert ex.balance(5, BTC) == (6, 4)


def test_market_buy_capped_at_band_above_last_trade() -> None:
    """README "## The router and the journal": a "market buy: capped at the band above the
    last trade, the cap travels in the order so the matcher never trades above it"
    (money.py ``Market.cap``: ref x (10,000 + band_bps) // 10,000, on a tick; ``OrderFlag.
    CAPPED``); before any trade a market buy is ``NO_REFERENCE_PRICE``."""
    _claim("market buy: capped at the band above the last trade, the cap travels in the order")
    ex = Exchange(_config())
    ex.open(5, usd=10_000_000)
    ex.open(6, btc=100)
    assert _code(ex.order(5, BUY, 0, 1, kind=MARKET, tif=IOC)[0]) == ResultCode.NO_REFERENCE_PRICE
    ex.order(6, SELL, 1_000, 1)
    ex.order(5, BUY, 1_000, 1)  # last trade 1,000: the cap is 1,100
    for price in (1_090, 1_100, 1_110):  # the book's band from 1,090 would reach 1,199
        ex.order(6, SELL, price, 1)
    market = _order(client_ref=999, account=5, symbol=BTCUSD, ord_type=MARKET, tif=IOC)
    decision = ex.seq.submit(msgspec.structs.replace(market, price=0, qty=3), 99)
    assert isinstance(decision.command, NewOrder)
    assert decision.command.price == 1_100 and decision.command.flags & OrderFlag.CAPPED
    trades = _trades(ex.matcher.execute(decision.command))
    assert [t.price for t in trades] == [1_090, 1_100]


def test_fees_floor_credited_to_fee_account_and_totals_kept() -> None:
    """README "## The router and the journal": "fills settle both sides exactly with
    maker/taker fees credited to the fee account"; "Each side pays floor(notional x bps /
    10,000) in the quote asset's minor units"; "every asset's total changes only by deposits
    and withdrawals"."""
    _claim("Each side pays floor(notional x bps / 10,000)")
    _claim("every asset's total changes only by deposits and withdrawals")
    ex = Exchange(_config(maker=10, taker=20))
    ex.open(5, usd=1_000_000)
    ex.open(6, btc=100)
    ex.order(6, SELL, 1_235, 10)  # maker: notional 12,350
    ex.order(5, BUY, 1_235, 10)  # taker
    assert ex.balance(FEE_ACCOUNT, USD) == (12_350 * 10 // 10_000 + 12_350 * 20 // 10_000, 0)
    assert ex.balance(6, USD) == (12_350 - 12, 0)
    assert ex.balance(5, USD) == (1_000_000 - 12_350 - 24, 0)
    assert ex.seq.accounts.totals(USD) == 1_000_000 and ex.seq.accounts.totals(BTC) == 100
    ex.seq.accounts.validate_internal_state()


def test_deposit_past_int64_refused() -> None:
    """README "## The router and the journal": "A deposit that would take an asset's total
    past 2^63-1 is refused (`BALANCE_LIMIT`)" (accounts.py ``MAX_TOTAL = 2**63 - 1``)."""
    _claim("A deposit that would take an asset's total past 2^63-1 is refused (`BALANCE_LIMIT`)")
    assert MAX_TOTAL == 2**63 - 1
    accounts = Accounts(_config())
    accounts.create_account(5)
    accounts.create_account(6)
    assert accounts.transfer(5, USD, MAX_TOTAL - 10, key=1) == ResultCode.OK
    assert accounts.transfer(6, USD, 11, key=2) == ResultCode.BALANCE_LIMIT
    assert accounts.transfer(6, USD, 10, key=3) == ResultCode.OK


def test_journal_write_refuses_a_field_past_its_bounds() -> None:
    """README "## The router and the journal": "the journal's write refuses a record with a
    field past its bounds, naming it" (record_codec.py ``encode_slots``)."""
    _claim("the journal's write refuses a record with a field past its bounds, naming it")
    bad = CreateAccount(1, 1, 1, 1, 1, 2**63)
    with pytest.raises(EncodeError, match=r"CreateAccount\.account=9223372036854775808"):
        CODEC.encode_slots([bad])


def test_open_orders_and_notional_limits() -> None:
    """README "## The router and the journal": limits per account: open orders
    (``TOO_MANY_OPEN_ORDERS``) and `max_order_notional`, "checked at an order's limit or stop
    price (a stop sell at the higher of the two)"; "a market or limit sell, and a replace of a
    sell, also at the last trade price when that is higher"; "with a notional limit set a market
    sell needs a last trade (`NO_REFERENCE_PRICE` before the first ...)"."""
    _claim("checked at an order's limit or stop price (a stop sell at the higher of the two;")
    _claim("a market or limit sell, and a replace of a sell, also at the last trade price")
    _claim("with a notional limit set a market sell needs a last trade (`NO_REFERENCE_PRICE`")
    ex = Exchange(_config(max_notional=10_000, max_open=4))
    ex.open(5, usd=10_000_000, btc=1_000)
    ex.open(6, usd=10_000_000, btc=1_000)
    assert _code(ex.order(5, SELL, 0, 1, kind=MARKET, tif=IOC)[0]) == ResultCode.NO_REFERENCE_PRICE
    assert _code(ex.order(5, BUY, 10_001, 1)[0]) == ResultCode.NOTIONAL_TOO_LARGE
    code = _code(ex.order(5, SELL, 0, 1, kind=STOP_LIMIT, stop=10_001)[0])
    assert code == ResultCode.NOTIONAL_TOO_LARGE  # a stop sell: at its stop, above its limit
    ex.order(6, SELL, 6_000, 1)
    ex.order(5, BUY, 6_000, 1)  # last trade 6,000
    assert _code(ex.order(5, SELL, 1, 2)[0]) == ResultCode.NOTIONAL_TOO_LARGE  # 2 x 6,000
    _, events = ex.order(5, SELL, 7_000, 1)
    oid = _of(events, Accepted)[0].order_id
    assert _code(ex.replace(5, oid, 1, 2)) == ResultCode.NOTIONAL_TOO_LARGE
    for _ in range(3):
        ex.order(6, BUY, 1, 1)
    ex.order(6, BUY, 1, 1)
    assert _code(ex.order(6, BUY, 1, 1)[0]) == ResultCode.TOO_MANY_OPEN_ORDERS


def test_capped_buy_notional_checked_at_its_cap() -> None:
    """README "## The router and the journal": `max_order_notional` "checked at an order's
    limit or stop price (...; a market or stop-market buy at its cap, the band above the last
    trade or its stop)" (review 107: it said at its stop price): a stop-market buy of 10 at a
    stop of 1,000 has a cap of 1,100 (a 10% band), 11,000, refused under a limit of 10,500
    and taken under one of 11,000."""
    _claim("stop-market buy at its cap, the band above the last trade or its stop)")
    ex = Exchange(_config(max_notional=10_500))
    ex.open(5, usd=10_000_000)
    code = _code(ex.order(5, BUY, 0, 10, kind=STOP, stop=1_000)[0])
    assert code == ResultCode.NOTIONAL_TOO_LARGE
    ex = Exchange(_config(max_notional=11_000))
    ex.open(5, usd=10_000_000)
    assert _code(ex.order(5, BUY, 0, 10, kind=STOP, stop=1_000)[0]) == ResultCode.OK


def test_market_sell_needs_a_last_trade_only_under_a_notional_limit() -> None:
    """README "## The router and the journal": "with a notional limit set a market sell needs a
    last trade (`NO_REFERENCE_PRICE` before the first, as a market buy always does: its cap is
    drawn from it)" (review 107: it said every market sell): under the default config (no
    notional limit) a market sell before any trade is sequenced, a market buy is not."""
    _claim("with a notional limit set a market sell")
    _claim("needs a last trade (`NO_REFERENCE_PRICE` before the first, as a market buy always does")
    assert RiskConfig().max_order_notional == 0
    ex = Exchange(_config())
    ex.open(5, usd=10_000_000, btc=10)
    assert _code(ex.order(5, SELL, 0, 1, kind=MARKET, tif=IOC)[0]) == ResultCode.OK
    reply, _ = ex.order(5, BUY, 0, 1, kind=MARKET, tif=IOC)
    assert _code(reply) == ResultCode.NO_REFERENCE_PRICE


def test_operator_commands_never_count_against_the_rate() -> None:
    """README "## The router and the journal": the command rate counts "a client's new orders,
    replaces and mass cancels; ... nor the operator's commands: accounts, transfers, halts and
    the admin gateway's mass cancels" (review 107: it said every command but a cancel): with a
    rate of 2, three transfers of one account in the same instant all go, and so does an order
    after them."""
    _claim("commands per second (a client's new orders, replaces and mass cancels; not a cancel")
    _claim("commands: accounts, transfers, halts and the admin gateway's mass cancels")
    ex = Exchange(_config(rate=2))
    ex.open(5, usd=100_000)
    codes = [
        ex.seq.submit(Transfer(0, 0, 1, 1, k, 5, USD, 1, 100 + k), ex.now).reply.code  # type: ignore[union-attr]
        for k in range(3)
    ]
    assert codes == [ResultCode.OK] * 3
    assert _code(ex.order(5, BUY, 100, 1)[0]) == ResultCode.OK


def test_cancels_never_rate_limited_mass_cancels_are() -> None:
    """README "## The router and the journal": the rate counts "mass cancels included" and
    not a cancel: with a rate of 1, after an order a cancel goes and a client's mass cancel is
    ``ACCOUNT_RATE_LIMITED``."""
    ex = Exchange(_config(rate=1))
    ex.open(5, usd=100_000)
    _, events = ex.order(5, BUY, 100, 1)
    oid = _of(events, Accepted)[0].order_id
    reply, events = ex.send(CancelOrder(0, 0, 1, 1, 500, 5, BTCUSD, oid))
    assert reply is None and _done(events)[0].reason == DoneReason.CANCELLED
    reply, _ = ex.send(MassCancel(0, 0, 1, 1, 501, 5, BTCUSD))
    assert _code(reply) == ResultCode.ACCOUNT_RATE_LIMITED


def test_replace_reserves_only_what_it_may_add() -> None:
    """README "## The router and the journal": "A replace reserves only what it may add to the
    order's hold (a sell that keeps or lowers its size and a buy that goes no higher in price
    or size add nothing, so an order holding all of an account's money can still be
    repriced or cut ...)"."""
    _claim("(a sell that keeps or lowers its size and a buy that goes no higher in price or")
    _claim("size add nothing, so an order holding all of an account's money can still be")
    ex = Exchange(_config(maker=0, taker=0))
    ex.open(5, usd=1_000, btc=4)
    _, events = ex.order(5, BUY, 100, 10)  # all 1,000 held
    buy = _of(events, Accepted)[0].order_id
    _, events = ex.order(5, SELL, 900, 4)  # all 4 held
    sell = _of(events, Accepted)[0].order_id
    assert ex.balance(5, USD)[0] == 0 and ex.balance(5, BTC)[0] == 0
    assert ex.replace(5, buy, 90, 10) is None  # lower price
    assert ex.replace(5, buy, 90, 8) is None  # smaller
    assert ex.replace(5, sell, 950, 4) is None  # a sell, any price, same size
    assert ex.replace(5, sell, 800, 3) is None
    assert _code(ex.replace(5, buy, 200, 8)) == ResultCode.INSUFFICIENT_BALANCE


def test_replay_skips_account_limits() -> None:
    """README "## The router and the journal": "A replay skips the account limits, so lowering
    one between two runs never stops a restart": orders journaled under a limit of 5 open
    replay under a limit of 1 (``Sequencer.replay``)."""
    _claim("A replay skips the account limits, so lowering one")
    ex = Exchange(_config(max_open=5))
    journal: list[Record] = []
    seq = ex.seq
    for cmd in (
        CreateAccount(0, 0, 1, 1, 1, 5),
        Transfer(0, 0, 1, 1, 2, 5, USD, 100_000, 2),
        *(_order(client_ref=10 + k, account=5, symbol=BTCUSD, price=100) for k in range(3)),
    ):
        decision = seq.submit(cmd, 1)
        assert decision.command is not None, decision.reply
        journal.append(decision.command)
    again = Sequencer(_config(max_open=1), Accounts(_config(max_open=1)))
    again.fee_changes(0)
    for cmd in journal:
        again.replay(cmd)
    assert again.accounts.open_orders(5) == 3


def test_a_new_journal_starts_with_fees_and_rules_per_symbol() -> None:
    """README "## The router and the journal": "a new journal starts with one [`FeeSchedule`]
    per symbol", and a starting router journals a `SymbolRules` record "for each configured
    symbol whose rules differ from those or that has none yet"; none again once held."""
    _claim("(a new journal starts with one per symbol)")
    seq = Sequencer(_config(), Accounts(_config()))
    fee_records = seq.fee_changes(1)
    assert [(r.symbol, r.maker_bps, r.taker_bps) for r in fee_records] == [(BTCUSD, 10, 20)]
    assert [r.symbol for r in seq.rules_changes(1)] == [BTCUSD]
    assert seq.fee_changes(2) == [] and seq.rules_changes(2) == []
    assert fees.changes(seq.accounts, _config(maker=11)) == [(BTCUSD, 11, 20)]


def test_fee_margin_change_with_resting_buys_refused_naming_them() -> None:
    """README "## The router and the journal": "A change of a symbol's fee margin while buys
    rest on it is refused at start, naming the symbol and the orders" (fees.py
    ``check_schedule``: ``FeeChangeError``)."""
    _claim("A change of a symbol's fee margin while buys rest on it")
    _claim("is refused at start, naming the symbol and the orders")
    ex = Exchange(_config(maker=10, taker=20))
    ex.open(5, usd=100_000)
    _, events = ex.order(5, BUY, 100, 1)
    oid = _of(events, Accepted)[0].order_id
    state = ex.seq.snapshot()
    again = Sequencer.restore(_config(maker=10, taker=30), state)
    with pytest.raises(fees.FeeChangeError, match=rf"symbol BTC-USD: .*orders {oid}\b"):
        again.fee_changes(5)
    # the same margin (max 20) with other fees is no change of margin: it goes
    assert Sequencer.restore(_config(maker=20, taker=5), state).fee_changes(5)


def test_market_buy_needs_the_larger_maker_margin() -> None:
    """README "## The router and the journal": "where the maker fee is the larger, a market
    buy needs that margin free though it pays the taker fee, and is refused
    `INSUFFICIENT_BALANCE` without it (a known limit ...)": a buyer with the notional and the
    taker fee, not the maker margin, is refused."""
    _claim("where the maker fee is the larger, a market buy needs that")
    _claim("margin free though it pays the taker fee, and is refused `INSUFFICIENT_BALANCE`")
    ex = Exchange(_config(maker=1_000, taker=0))
    ex.open(5, usd=100_000)
    ex.open(6, btc=10)
    ex.order(6, SELL, 100, 1)
    ex.order(5, BUY, 100, 1)  # last trade 100: a market buy's cap is 110
    ex.open(7, usd=110)  # 1 x 110 and a taker fee of 0; the maker margin would be 11 more
    ex.order(6, SELL, 100, 1)
    reply, _ = ex.order(7, BUY, 0, 1, kind=MARKET, tif=IOC)
    assert _code(reply) == ResultCode.INSUFFICIENT_BALANCE


def test_journaled_types_are_the_commands_listed() -> None:
    """README "## The router and the journal": the journal's schema id is that of
    "`JOURNALED_TYPES` ...: the orders, cancels, replaces, mass cancels, admin commands, fee
    schedules, symbol rules and account commands" (records.py)."""
    _claim(
        "the orders, cancels, replaces, mass cancels, admin commands, fee schedules, symbol "
        "rules and account commands"
    )
    assert set(JOURNALED_TYPES) == {
        NewOrder, CancelOrder, ReplaceOrder, MassCancel, AdminCommand, FeeSchedule, SymbolRules,
        CreateAccount, Transfer,
    }  # fmt: skip
    assert CODEC.journal_schema_id == RecordCodec(JOURNALED_TYPES).schema_id


def test_router_numbers() -> None:
    """README "## The router and the journal": the numbers it states, each the code's:
    `pipeline_behind` (32), 20 ms for balance watches, a tail of 20,000 commands replayed in
    two processes, `snapshot_every` 200,000 and `snapshot_every_s` 300, history blocks of
    65,536 entries, snapshot stores keeping 3 (the writer's 2), ``journal/durable`` 16 bytes."""
    _claim("`pipeline_behind` commands (32)")
    _claim("once they have waited 20 ms the router fsyncs inline for them")
    _claim("A tail of 20,000 commands or more replays in two processes")
    _claim("Every `journal.snapshot_every` commands (200,000 by default)")
    _claim("seconds after the last snapshot when commands came since (300)")
    _claim("The history hash is chained in blocks of 65,536 entries")
    _claim("Snapshot stores keep their newest 3 (the writer's 2)")
    _claim("the writer keeps that seq in `journal/durable` (16 bytes, the seq and its complement")
    journal = JournalConfig()
    assert journal.pipeline_behind == 32
    assert intake.BALANCES_WAIT_S == 0.02
    assert recovery.PIPELINE_MIN == 20_000
    assert (journal.snapshot_every, journal.snapshot_every_s) == (200_000, 300.0)
    assert journal_history.BLOCK == 65_536
    assert inspect.signature(SnapshotStore).parameters["keep"].default == 3
    from procs.dbwriter import replay as dbwriter_replay  # noqa: PLC0415

    assert "keep=2" in inspect.getsource(dbwriter_replay.snapshot_store)
