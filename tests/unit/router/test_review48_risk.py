"""A forty-eighth hostile review, of the router's money and risk logic as traders and an
operator meet it (``procs/core/accounts.py``, ``settlement.py``, ``sequencer.py``), driven
through the core rigs (``core_rig``, ``money_rig``) and, where a promise spans the gateway, its
order entry (``procs/gateway/orders.py``) in front of the same router core.

The first tests failed on the code they were written against, for the faults found (each
docstring says what README asks, what the code did and where, "Actual"), and pass since
their fixes (the same commit). The last test pins what was checked and found sound.

Found sound (no test of its own): holds of every order type and their release on cancel,
expiry, self-trade prevention and replace (up, down, to and below the filled size, racing
fills), price improvement, fee rounding at every scale, ``max_open_orders`` against the
books' own count after 150 random streams of every order type with lagging settlement and
halts, and a replay of each journal to the live state; a second replace's addition and a
market buy's caps were checked against the exact bound and never reserve too little.
"""

from __future__ import annotations

import itertools
from typing import cast

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.schema import RingexConfig
from procs.common.records import (
    CancelOrder,
    CreateAccount,
    MassCancel,
    NewOrder,
    Record,
    Rejected,
    ReplaceOrder,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.types import Side
from procs.gateway.fix import FixMessage
from procs.gateway.instruments import Instruments
from procs.gateway.orders import OrderEntry
from procs.gateway.session import Session
from tests.unit.router import money_rig as money
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
from tests.unit.router.money_rig import need

CFG = exchange_config()  # BTC-USD: tick 5, notional p*q*10 USD minor, base q*100 BTC minor
TRADER = 5  # an account of its own, funded to the unit


def _trader(ex: Exchange, asset: int, amount: int) -> None:
    """Open ``TRADER`` and deposit exactly ``amount`` of ``asset``."""
    assert ex.submit(CreateAccount(0, 0, 1, TRADER, 0, TRADER)) is not None
    assert ex.submit(Transfer(0, 0, 1, TRADER, 0, TRADER, asset, amount, 4_242))


def _last_reply(ex: Exchange) -> Record:
    return CODEC.decode_slot(ex.out[-1])


# -- faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "first", "second"),
    [
        (SELL, (10_005, 10), (10_005, 6)),  # a sell repriced, then cut before that lands
        (BUY, (9_995, 10), (9_990, 6)),  # a bid repriced down, then down again and cut
    ],
)
def test_a_second_replace_in_flight_can_still_cut_an_order_holding_everything(
    side: Side, first: tuple[int, int], second: tuple[int, int]
) -> None:
    """README (the router): "A replace reserves only what it may add to the order's hold (a
    sell that keeps or lowers its size and a buy that goes no higher in price or size add
    nothing, so an order holding all of an account's money can still be repriced or cut".

    A market maker repricing fast has a replace in flight when it sends the next: here a
    sell of 10 holding all of the account's BTC is repriced (size kept), then cut to 6; a
    bid of 10 holding all of its USD is repriced down, then down again and cut to 6. Neither
    second replace can need a unit more than the order holds whichever way the first ends
    (landed or refused): a sell's need is its size, at most max(0, 6 - min(10, 10)) more; a
    bid's is highest at the old price and size, which both replaces lower.

    ``Accounts._replace_addition`` answers any replace of an order with one in flight with
    ``market.hold(side, price, total)``, the whole new hold (its docstring: "as it cannot
    know which of those before it will land"), so the second is refused
    INSUFFICIENT_BALANCE; once the first has landed the same replace passes. The bound the
    README promises is the largest addition over the states the replaces before it may
    leave the order in (as it is, or as each of them makes it), each with the single
    replace's formula.

    Actual: the second replace is refused INSUFFICIENT_BALANCE."""
    ex = Exchange.fresh(CFG)
    if side == SELL:
        _trader(ex, BTC, 10 * 100)
    else:
        _trader(ex, USD, need(CFG, BTCUSD, BUY, 10_000, 10))
    order = placed(ex, new_order(TRADER, side, 10_000, 10, ref=1))
    ex.settle()
    oid = order.order_id
    price, qty = first
    assert ex.submit(ReplaceOrder(0, 0, 1, TRADER, 2, TRADER, BTCUSD, oid, price, qty))
    price, qty = second
    again = ex.submit(ReplaceOrder(0, 0, 1, TRADER, 3, TRADER, BTCUSD, oid, price, qty))
    refused = _last_reply(ex)
    assert again is not None, refused
    ex.settle()
    ex.check()


class _Connection:
    """A FIX session of ``TRADER`` as ``OrderEntry`` sees it (what it sends is kept)."""

    session_id = 77
    account = TRADER
    user = None
    closed = False

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    def send(self, msg_type: bytes, body: bytes, now_ns: int) -> None:
        self.sent.append((msg_type, body))


def _bid(cl_ord_id: bytes, price: bytes) -> FixMessage:
    """A FIX NewOrderSingle: buy 0.1 BTC-USD at ``price``, GTC."""
    tags = [35, 11, 55, 54, 60, 40, 38, 44, 59]
    values = [b"D", cl_ord_id, b"BTC-USD", b"1", b"20260101-00:00:00", b"2", b"0.1", price, b"1"]
    return FixMessage.of(b"", tags, values)


_ORDER_COMMANDS = (NewOrder, CancelOrder, ReplaceOrder, MassCancel)


def _pump(ex: Exchange, entry: OrderEntry, now_ns: int) -> None:
    """What the gateway sends goes through the router core and the matchers; the router's
    replies and the matchers' events go back to the gateway (which reads the matchers' output
    rings itself), and the router settles the events."""
    while entry.outgoing:
        sent, entry.outgoing = entry.outgoing, []
        for command in sent:
            mark = len(ex.out)
            ex.submit(command, now_ns)
            for image in ex.out[mark:]:
                record = CODEC.decode_slot(image)
                if not isinstance(record, _ORDER_COMMANDS):
                    entry.process(record)
    ex.settle()


def test_cancel_on_disconnect_cancels_every_order_whatever_the_accounts_command_rate() -> None:
    """README (the gateway's table row): "cancel on disconnect"; the operator's section: a
    user removed with ``--cancel-orders`` "(or the session cancels on disconnect, as at any
    disconnect)". It is the safety a client relies on when its link drops: nothing of its
    left in the book.

    Account 5 (``risk.max_commands_per_s`` = 5 here; 1,000 by default, the same as the
    default ``max_open_orders``) places five bids within one second through a FIX session
    that cancels on disconnect, and its link drops. ``OrderEntry.on_disconnect`` ->
    ``cancel_session_orders`` sends a ``CancelOrder`` per open order; ``Sequencer._order``
    draws each on the account's token bucket, already spent by the orders, and refuses them
    ``ACCOUNT_RATE_LIMITED`` (the operator's mass cancel is exempt, ``_mass_cancel``; these
    are not); ``OrderEntry._rejected`` pops each request (no ClOrdID: nobody to tell) and
    nothing sends it again, not a second later, when the bucket has refilled. A gateway's
    restart cancels the same way (``restart.py``), every such user's orders at once.

    A fix belongs in the router (a cancel only lowers risk: let it through the account's
    rate, as the operator's cancel-all goes) or in the gateway (cancel a disconnected
    session's orders with a command the rate cannot refuse, or send the refused cancels
    again once the bucket refills).

    Actual: all five bids rest on, their USD held, after the session is gone."""
    cfg = exchange_config(rate=5, max_open=100)
    ex = funded(cfg)
    _trader(ex, USD, 10**9)
    entry = OrderEntry(1, Instruments([cfg.symbols[0]]), cancel_on_disconnect=True)
    session = cast(Session, _Connection())
    entry.on_logon(session, 1)
    now = 10**18
    for n in range(5):
        entry.on_message(session, _bid(b"bid%d" % n, b"90.%02d" % (5 * n)), now)
    _pump(ex, entry, now)
    assert ex.accounts.open_orders(TRADER) == 5
    entry.on_disconnect(session, now + 1_000)
    _pump(ex, entry, now + 1_000)
    refused = [
        r.code
        for r in map(CODEC.decode_slot, ex.out)
        if isinstance(r, Rejected) and r.account == TRADER and r.code != ResultCode.OK
    ]
    _pump(ex, entry, now + 2 * 10**9)  # the bucket full again: anything sent again passes
    ex.check()
    assert ex.accounts.open_orders(TRADER) == 0, refused
    assert ex.accounts.balance(TRADER, USD) == (10**9, 0)


# -- found sound --------------------------------------------------------------------------------


def _limited(cfg: RingexConfig, open_orders: int, notional: int) -> RingexConfig:
    """``cfg`` with every account limit biting: a few open orders, a notional cap that some
    ETH-USD orders pass and some do not, and a low command rate."""
    risk = msgspec.structs.replace(
        cfg.risk,
        max_open_orders=open_orders,
        max_order_notional=notional,
        max_commands_per_s=10,
    )
    return msgspec.structs.replace(cfg, risk=risk)


FEES = (25, 3, 1_000, 7, 0, 999)  # maker above taker too
LIMITED = _limited(money.market_config(FEES), 3, 40_000_000)
LOWERED = _limited(money.market_config(FEES), 2, 20_000_000)  # a restart's tighter limits


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=st.lists(money.op_strategy, min_size=40, max_size=110), cut=st.floats(0, 1))
def test_random_streams_under_biting_account_limits_keep_money_and_counts_across_a_restart(
    ops: list[money.Op], cut: float
) -> None:
    """The money rig's random streams (every order type, replaces racing fills, transfers
    around the free balance, mass cancels, halts, session ends, lagging settlement) with the
    account limits the earlier random tests left off (``max_open_orders``,
    ``max_order_notional``, the command rate), and mid-stream a restart that replays the
    journal under lower limits (README: "A replay skips the account limits, so lowering one
    between two runs never stops a restart"). After every step ``Run.check`` (nothing
    negative, totals = transfers, the fee account = the fees of the trades, holds = the
    books' needs); no account past the limit it ever had; a refusal for too many open orders
    only at the limit in force; with nothing in flight each account's open orders are
    exactly the books'. The whole journal replays to the live state under either config."""
    driver = money.Driver(money.funded_run(LIMITED))
    at = min(int(cut * len(ops)), len(ops) - 1)
    for i, op in enumerate(ops):
        if i == at:
            driver.run.settle_all()
            driver.run = money.restarted(driver.run, LOWERED)
            driver.run.check()
        driver.now += 10_000_000  # a tenth of a command a step: the rate bites late
        action = driver.command(op)
        ex = driver.run.ex
        before = {a: ex.accounts.open_orders(a) for a in money.TRADERS}
        mark = len(ex.out)
        driver.run.do(action)
        driver.run.check()
        for reply in map(CODEC.decode_slot, ex.out[mark:]):
            if isinstance(reply, Rejected) and reply.code == ResultCode.TOO_MANY_OPEN_ORDERS:
                assert before[reply.account] >= ex.cfg.risk.max_open_orders
        for account in money.TRADERS:
            assert ex.accounts.open_orders(account) <= LIMITED.risk.max_open_orders
        if not any(ex.inbox.values()):
            books: dict[int, int] = {}
            for matcher in ex.fast.values():
                for book in matcher.books.values():
                    for o in itertools.chain(book.orders.values(), book.stops.values()):
                        books[o.account] = books.get(o.account, 0) + 1
            assert {a: ex.accounts.open_orders(a) for a in money.TRADERS} == {
                a: books.get(a, 0) for a in money.TRADERS
            }
    run = driver.run
    run.settle_all()
    run.check()
    for cfg in (LIMITED, LOWERED):
        rec = money.replayed(cfg, run.ex.journal)
        assert rec.sequencer.accounts.state_hash() == run.ex.accounts.state_hash()
