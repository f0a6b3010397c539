"""Bugs found by a hostile review of the router's risk and balance logic and the books behind
it. Each test failed before its fix (an open one is marked ``xfail(strict=True)`` until
fixed).
"""

from __future__ import annotations

from config.schema import (
    AssetConfig,
    JournalConfig,
    MatcherConfig,
    RingexConfig,
    RiskConfig,
    SymbolConfig,
)
from procs.common.records import (
    CancelOrder,
    CreateAccount,
    NewOrder,
    Rejected,
    ReplaceOrder,
    Trade,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.core.engine import Matcher
from procs.core.symbols import SymbolSpec
from tests.unit.router.core_rig import (
    BTC,
    BUY,
    CODEC,
    FEE,
    I64_MAX,
    SELL,
    USD,
    Exchange,
    new_order,
    placed,
)


def _whole_units_config() -> RingexConfig:
    """One symbol in whole units (every scale 1), no fees and no size limit short of int64:
    a price of 1 and a qty of 2**63 - 1 cost 2**63 - 1, which a deposit can cover."""
    return RingexConfig(
        assets=[
            AssetConfig(name="USD", id=USD, decimals=0),
            AssetConfig(name="BTC", id=BTC, decimals=0),
        ],
        symbols=[
            SymbolConfig(
                name="BTC-USD",
                id=1,
                price_decimals=0,
                qty_decimals=0,
                max_qty=I64_MAX,
                base="BTC",
                quote="USD",
                maker_fee_bps=0,
                taker_fee_bps=0,
            )
        ],
        matchers=[MatcherConfig(name="m1", symbols=["BTC-USD"])],
        risk=RiskConfig(fee_account=FEE, max_commands_per_s=1_000_000),
        journal=JournalConfig(fsync="none"),
    )


def test_replaces_cannot_push_an_orders_filled_qty_past_its_record_bound() -> None:
    """A buy of 2**63-1 at price 1 is filled to 1 lot left; the buyer gets its money back by
    selling half the base at price 2 to the seller, replaces the buy up to 2**63-2 again
    (fully reserved, so the router accepts it) and the seller fills 2**62 more. The book's
    ``filled`` (cumulative, never reset by a replace) is now 2**63 + 2**62 - 2, past the
    U64 bound of ``OrderDone.filled_qty``: the cancel's OrderDone encodes into a ring slot
    (msgpack uint64) but every consumer's decode refuses it, so the router and the gateways
    cannot read the matcher's output. Every event must stay within its record's bounds (for
    example by refusing a replace whose qty would take filled + qty past 2**63-1)."""
    ex = Exchange.fresh(_whole_units_config())
    buyer, seller = 1, 2
    for account in (buyer, seller):
        assert ex.submit(CreateAccount(0, 0, 1, account, 0, account)) is not None
    assert ex.submit(Transfer(0, 0, 1, buyer, 0, buyer, USD, I64_MAX, 1)) is not None
    assert ex.submit(Transfer(0, 0, 1, seller, 0, seller, BTC, I64_MAX, 2)) is not None
    qty, half = I64_MAX, (I64_MAX - 1) // 2
    order = placed(ex, new_order(buyer, BUY, 1, qty, ref=1))
    placed(ex, new_order(seller, SELL, 1, qty - 1, ref=2))  # the buy has 1 left
    ex.settle()
    placed(ex, new_order(seller, BUY, 2, half, ref=3))  # the seller buys half back at 2
    placed(ex, new_order(buyer, SELL, 2, half, ref=4))
    ex.settle()
    assert ex.accounts.balance(buyer, USD) == (qty - 1, 1)
    assert ex.submit(ReplaceOrder(0, 0, 1, buyer, 5, buyer, 1, order.order_id, 1, qty - 1))
    ex.settle()
    placed(ex, new_order(seller, SELL, 1, half + 1, ref=6))
    ex.settle()
    # The rig round-trips every event through the slot codec; today this raises
    # RecordDecodeError on OrderDone.filled_qty = 13835058055282163710.
    ex.submit(CancelOrder(0, 0, 1, buyer, 7, buyer, 1, order.order_id))
    ex.settle()
    ex.check()


def _iceberg_then_taker(qty: int) -> list[object]:
    """On a symbol of the default size limits (1..10**9 lots), an iceberg sell of ``qty``
    showing 1 lot, then an IOC buy of ``qty`` at its price: the events of the buy."""
    matcher = Matcher([SymbolSpec(symbol=7)])
    iceberg = NewOrder(
        *(1, 1, 1, 1, 1, 1, 7, 1, Side.SELL, OrdType.LIMIT, TimeInForce.GTC, 0),
        *(StpMode.NONE, 100, qty, 0, 1),
    )
    taker = NewOrder(
        *(2, 2, 1, 2, 2, 2, 7, 2, Side.BUY, OrdType.LIMIT, TimeInForce.IOC, 0),
        *(StpMode.NONE, 100, qty, 0, 0),
    )
    matcher.execute(iceberg)
    events: list[object] = list(matcher.execute(taker))
    for event in events:
        assert not CODEC.out_of_bounds(event)  # type: ignore[arg-type]
    return events


def test_one_command_against_one_iceberg_makes_a_bounded_number_of_events() -> None:
    """An iceberg of 20_000 lots showing 1 (valid: display >= min_qty, <= qty) and one IOC
    buy of 20_000 that takes it all. The book refreshes the slice after each fill and trades
    again, so the one command makes 20_000 Trades (plus levels), and the router settles each.
    Work is linear in qty / display, not in the orders touched: at the default max_qty of
    10**9 one command is 10**9 Trade events (about 100 minutes of matcher time at the
    measured 6.4 us per slice, and some 100 GB of event objects in one list). It
    should be a few events per resting order touched (fill the hidden reserve in one trade),
    or such an iceberg should be refused (a minimum display relative to the qty, checked on
    replace too, since a replace can raise the qty and keep the display)."""
    events = _iceberg_then_taker(20_000)
    trades = [e for e in events if isinstance(e, Trade)]
    assert sum(t.qty for t in trades) in (0, 20_000)
    assert len(events) <= 100, f"{len(trades)} trades from one command against one order"


def test_a_replace_cannot_grow_an_iceberg_past_its_parts() -> None:
    """The ICEBERG_PARTS bound holds on a replace too: it keeps the display, so a larger
    quantity would mean more slices (and more trades for one taker)."""
    matcher = Matcher([SymbolSpec(symbol=7, iceberg_parts=10)])
    iceberg = NewOrder(
        *(1, 1, 1, 1, 1, 1, 7, 1, Side.SELL, OrdType.LIMIT, TimeInForce.GTC, 0),
        *(StpMode.NONE, 100, 10, 0, 1),
    )
    assert not any(isinstance(e, Rejected) for e in matcher.execute(iceberg))
    grown = ReplaceOrder(2, 2, 1, 1, 2, 1, 7, 1, 100, 11)
    (rejected,) = matcher.execute(grown)
    assert isinstance(rejected, Rejected) and rejected.code == ResultCode.INVALID_QTY
    too_many = NewOrder(
        *(3, 3, 1, 1, 3, 1, 7, 3, Side.SELL, OrdType.LIMIT, TimeInForce.GTC, 0),
        *(StpMode.NONE, 100, 11, 0, 1),
    )
    (refused,) = matcher.execute(too_many)
    assert isinstance(refused, Rejected) and refused.code == ResultCode.INVALID_QTY
