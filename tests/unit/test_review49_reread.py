"""A hostile reread of two fix commits: 3b8b277 (gateway and REST: TransactTime of exchange
refusals, a new order's frozen answer, one client order id per open order across FIX and
the API, the notional refusal's text, the feed's request weight) and f12f594 (router: a
replace with others in flight reserves the most any state it may land on needs; gateway:
cancels on disconnect refused for the account's rate are sent again).

The other tests failed on those commits, for faults the fixes left or made (docstring: what
was asked, what the code did and where, "Actual"), and pass since their fixes (the same
commit): the router's new bound was sound but cost O(replaces in flight); the refused
cancels on disconnect, sent again, could lose every race for a token, and the router now
lets every cancel through the account's rate (the retry and its test went with it).
The passing ones pin what was checked and found sound: the router's new bound against a
brute-force model of every landing, and random in-flight replaces of one order through the
sequencer and real books (settlement asserts held >= need at every ``Replaced``), with
snapshot restores mid-flight, an older snapshot's lost asks, stops, fills racing, replaces
to and below the filled size, and a replay of the journal.

Rigs: the router core rig (``tests/unit/router/core_rig.py``), ``OrderEntry`` driven by hand
with a fake session, ``RestOrders`` wired to it as ``GatewayServer._rest_api`` wires them.
"""

from __future__ import annotations

import itertools
from typing import Any, cast

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.schema import AssetConfig, RiskConfig
from procs.common.records import (
    Accepted,
    CancelOrder,
    CreateAccount,
    MassCancel,
    NewOrder,
    Rejected,
    ReplaceOrder,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.types import OrdType, Side, TimeInForce
from procs.core.accounts import Accounts
from procs.core.money import Market
from procs.core.settlement import LIVE, OpenOrder
from procs.gateway import rest_params as rp
from procs.gateway.fix import FixMessage
from procs.gateway.instruments import Instruments
from procs.gateway.orders import OrderEntry
from procs.gateway.rest_orders import RestOrders
from procs.gateway.session import Session
from tests.unit.router import money_rig as money
from tests.unit.router.core_rig import (
    BTC,
    BTCUSD,
    BUY,
    CODEC,
    ETH,
    ETHUSD,
    MID,
    SELL,
    USD,
    Exchange,
    exchange_config,
    funded,
    new_order,
)
from tests.unit.test_review47_reread import ACCOUNT, GATEWAY, SESSION, SYM, _fix, _Session

# -- the router: a replace with others in flight (f12f594) -----------------------------------------


def _market(quote_scale: int, base_scale: int, maker: int, taker: int) -> Market:
    return Market(1, 2, 1, 1, 500, maker, taker, quote_scale, base_scale)


def _worst(
    market: Market,
    side: Side,
    now: tuple[int, int, int],
    asks: list[tuple[int, int]],
    new: tuple[int, int],
) -> int:
    """The most a replace to ``new`` (price, total) can need beyond what the order holds when
    it lands, found by walking every landing: the last of the earlier replaces to land (or
    none: all refused) sets price and total; fills then leave x of that open (x >= 1: a
    filled order is done, and the replace is refused then). A total at or below what has
    filled cancels the balance (``Book._replace_to_filled``): nothing needed."""
    price, leaves, filled = now
    p, q = new
    worst = 0
    states = [(price, filled + leaves), *asks]
    for at, total in states:
        for x in range(1, total - filled + 1):  # fills since the router's view leave x
            done = total - x  # what has filled when the replace lands
            need = market.hold(side, p, q - done) if q > done else 0
            worst = max(worst, need - market.hold(side, at, x))
    return worst


_PRICE = st.integers(1, 12)
_QTY = st.integers(1, 9)


@settings(max_examples=1_500, deadline=None, derandomize=True)
@given(
    scales=st.tuples(st.sampled_from((1, 3, 10, 1_000)), st.sampled_from((1, 100))),
    bps=st.tuples(st.integers(0, 1_500), st.integers(0, 1_500)),
    side=st.sampled_from((BUY, SELL)),
    now=st.tuples(_PRICE, _QTY, st.integers(0, 5)),
    asks=st.lists(st.tuples(_PRICE, st.integers(1, 14)), max_size=3),
    new=st.tuples(_PRICE, st.integers(1, 14)),
)
def test_an_in_flight_replaces_reservation_covers_every_landing_by_brute_force(
    scales: tuple[int, int],
    bps: tuple[int, int],
    side: Side,
    now: tuple[int, int, int],
    asks: list[tuple[int, int]],
    new: tuple[int, int],
) -> None:
    """Pin (found sound). f12f594: "it reserves what the most needing of the states it may
    land on needs, the order as it is or as any of them leaves it". Against a model that
    enumerates every landing (which earlier replace lands last, every fill amount after it,
    a total at or below the filled size), ``Accounts._replace_addition`` never reserves less
    than a landing needs (settlement's ``_replaced`` would raise), never more than the whole
    new hold (the old bound)."""
    market = _market(*scales, *bps)
    price, leaves, filled = now
    order = OpenOrder(7, 1, side, price, leaves, market.hold(side, price, leaves), 1, LIVE)
    order.filled = filled
    order.replaces = [0] * len(asks)  # their holds do not enter the bound
    order.asks = list(asks)
    reserved = Accounts._replace_addition(market, order, *new)
    worst = _worst(market, side, now, asks, new)
    assert worst <= reserved <= market.hold(side, *new), (worst, reserved)


def test_the_routers_work_per_replace_does_not_grow_with_the_replaces_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Asked: STYLE 4 ("Nothing allocates on the hot path that need not") and the router's
    one-thread loop (router/main.py: every command of every account is decided there, up to
    ``router.batch`` = 256 a step, their events settled only at the next step); the account's
    command rate (``max_commands_per_s``, 1,000 a second by default, a second's burst) is
    what bounds one account's share of it.
    Does: f12f594's ``Accounts._replace_addition`` (accounts.py) builds an ``OpenOrder``
    copy (``dataclasses.replace``) and evaluates ``_addition_to`` for every replace of the
    order in flight, so the k-th replace of one order in a step costs O(k): a step of 256
    replaces of one order costs ~33k evaluations. FIX lets a session chain any number of
    replaces of one order (each G naming the same OrigClOrdID is taken). Measured here
    (this container, one core): a replace with none in flight 1.3 us in
    ``Sequencer.submit``; with 1,000 in flight 1.1-1.3 ms; ~2.1 us per replace in flight,
    so one account's burst of 1,000 replaces of one order (within its rate) costs the
    router ~70 ms a step of 256, ~0.3-1.3 s a burst, where it cost ~1.5 ms: a few accounts
    doing so each second hold the exchange's only sequencer. Counted here: ``_addition_to``
    calls for 512 replaces of one order, settled every 256 (a step).
    Actual: ~128 evaluations a replace, growing with the burst. (The fix: keep the bound in
    O(1), e.g. track the in-flight states' least total and least hold in plain ints without
    copies, or cap the replaces of one order in flight, refusing more as a pending replace.)"""
    calls = 0
    addition_to = Accounts._addition_to

    def counted(*args: Any) -> int:
        nonlocal calls
        calls += 1
        return addition_to(*args)

    monkeypatch.setattr(Accounts, "_addition_to", staticmethod(counted))
    cfg = exchange_config(rate=10**9, max_open=100, max_notional=0)
    ex = funded(cfg)
    placed = ex.submit(new_order(1, BUY, 10_000, 10, ref=1))
    assert isinstance(placed, NewOrder)
    ex.settle()
    n = 512
    for i in range(n):
        price = 10_000 - 5 * (i % 3)  # a market maker's reprice, down and back
        cmd = ReplaceOrder(0, 0, 1, 1, 100 + i, 1, BTCUSD, placed.order_id, price, 10)
        assert ex.submit(cmd) is not None
        if i % 256 == 255:
            ex.settle()  # the next step settles the batch's events
    ex.check()
    assert calls <= 16 * n, calls / n


def _trader(ex: Exchange, account: int, asset: int, amount: int) -> None:
    assert ex.submit(CreateAccount(0, 0, 1, account, 0, account)) is not None
    assert ex.submit(Transfer(0, 0, 1, account, 0, account, asset, amount, 7_000 + account))


_OP = st.tuples(st.integers(0, 11), st.integers(0, 999), st.integers(0, 999), st.integers(0, 999))


@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    symbol=st.sampled_from((BTCUSD, ETHUSD)),
    side=st.sampled_from((BUY, SELL)),
    stop=st.booleans(),
    spare=st.sampled_from((0, 0, 1, 37, 10**6)),
    ops=st.lists(_OP, min_size=10, max_size=60),
)
def test_random_in_flight_replaces_of_one_order_settle_restore_and_replay(
    symbol: int, side: Side, stop: bool, spare: int, ops: list[tuple[int, int, int, int]]
) -> None:
    """Pin (found sound). One order of a trader funded to the unit (or a little more) takes
    replaces in flight, several at once, up and down in price and size, to and below its
    filled size, while counterparties fill it (as maker, or as taker when a replace crosses)
    and settlement lags by a chosen number of events; a stop-limit rests first and triggers
    on the counterparties' trades. Mid-run the router is restored from its snapshot (asks in
    flight kept) or as from an older snapshot (its asks lost). Settlement's ``_replaced``
    asserts held >= need at every landing, and ``Exchange.check`` (holds = reservations,
    totals = transfers) runs after each step; at the end the journal replays (replaces
    re-reserved with ``limits=False``) to the live state."""
    cfg = exchange_config(rate=10**9, max_open=1_000, max_notional=0)
    ex = funded(cfg)
    mid, tick = MID[symbol]
    lot = 2 if symbol == ETHUSD else 1
    trader, maker, taker = 5, 1, 2
    qty = 6 * lot
    hold = money.need(cfg, symbol, side, mid, qty) if side == BUY else qty * 100
    _trader(ex, trader, USD if side == BUY else (BTC if symbol == BTCUSD else ETH), hold + spare)
    kind, trigger = (OrdType.STOP_LIMIT, mid) if stop else (OrdType.LIMIT, 0)
    placed = ex.submit(
        new_order(trader, side, mid, qty, symbol=symbol, ref=1, kind=kind, stop=trigger)
    )
    assert isinstance(placed, NewOrder)
    oid = placed.order_id
    ex.settle()
    other = SELL if side == BUY else BUY
    refs = itertools.count(10)
    for op, a, b, c in ops:
        if op <= 3:  # a replace, its total around the router's view or an earlier ask's
            known = ex.accounts._orders.get(oid)
            total = qty
            if known is not None:
                total = known.filled + known.leaves
                if known.asks and a % 2:
                    total = known.asks[-1][1]
            total = max(lot, total + lot * (b % 9 - 5))
            price = mid + tick * (c % 7 - 3)
            ex.submit(ReplaceOrder(0, 0, 1, trader, next(refs), trader, symbol, oid, price, total))
        elif op <= 5:  # a counterparty rests on the other side, or takes from the order
            price = mid + tick * (b % 7 - 3)
            tif = TimeInForce.GTC if op == 4 else TimeInForce.IOC
            who = maker if op == 4 else taker
            ex.submit(
                new_order(
                    who, other, price, lot * (1 + a % 3), symbol=symbol, ref=next(refs), tif=tif
                )
            )
        elif op == 6:  # the counterparties trade with each other (a stop's trigger)
            price = mid + tick * (b % 5 - 2)
            ex.submit(new_order(maker, SELL, price, lot, symbol=symbol, ref=next(refs)))
            ex.submit(
                new_order(
                    taker, BUY, price, lot, symbol=symbol, ref=next(refs), tif=TimeInForce.IOC
                )
            )
        elif op <= 9:  # settlement lags: some events now
            ex.settle(count=(1, 2, 5, None)[a % 4])
        elif op == 10:
            ex = ex.restored()  # a restart from the snapshot, events in flight kept
            if a % 3 == 0:  # as an older snapshot restores: the replaces' asks not kept
                for o in ex.accounts._orders.values():
                    o.asks.clear()
        elif a % 4 == 0:
            ex.submit(CancelOrder(0, 0, 1, trader, next(refs), trader, symbol, oid))
        ex.check()
    ex.settle()
    ex.check()
    replay = money.replayed(cfg, ex.journal)
    assert replay.sequencer.accounts.state_hash() == ex.accounts.state_hash()


# -- gateway: one client order id, one open order (3b8b277) ---------------------------------------

ASSETS = [AssetConfig(name="USD", id=1, decimals=4), AssetConfig(name="BTC", id=2, decimals=2)]


def _bid(cl_ord_id: bytes, price: bytes = b"90.00") -> FixMessage:
    pairs = [(11, cl_ord_id), (55, b"BTC-USD"), (54, b"1"), (60, b"20260101-00:00:00")]
    return _fix(b"D", [*pairs, (40, b"2"), (38, b"0.10"), (44, price), (59, b"1")])


def _replace(orig: bytes, cl_ord_id: bytes, price: bytes) -> FixMessage:
    pairs = [(41, orig), (11, cl_ord_id), (55, b"BTC-USD"), (54, b"1")]
    pairs += [(60, b"20260101-00:00:00"), (40, b"2"), (38, b"0.10"), (44, price), (59, b"1")]
    return _fix(b"G", pairs)


def _wired() -> tuple[OrderEntry, RestOrders, _Session]:
    """A FIX order entry and the REST core wired to it as ``GatewayServer._rest_api`` wires
    them (``fix_live``, ``api_holds``, ``fix_order``), sharing the ring and the refs."""
    entry = OrderEntry(GATEWAY, Instruments([SYM]), cancel_on_disconnect=False)
    core = RestOrders(GATEWAY, entry.instruments, ASSETS, entry.outgoing, entry.next_ref)
    core.fix_orders = lambda s: [o for o in entry.orders.values() if o.session == s]
    core.fix_order = lambda order_id, ref: entry.by_id.get(order_id)
    core.fix_live = lambda a, c: entry.holding(a, c.encode("latin-1"))
    entry.api_holds = lambda a, c: (a, c.decode("latin-1")) in core.client_ids
    session = _Session()
    entry.on_logon(cast(Session, session), 1)
    return entry, core, session


def _acked_fix_bid(entry: OrderEntry, session: _Session, cl_ord_id: bytes, order_id: int) -> None:
    entry.on_message(cast(Session, session), _bid(cl_ord_id), 1)
    new = entry.outgoing.pop()
    assert isinstance(new, NewOrder)
    entry.process(
        Accepted(
            *(order_id, 10**18, GATEWAY, SESSION, new.client_ref, ACCOUNT, SYM.id, order_id),
            side=Side.BUY,
            price=new.price,
            qty=new.qty,
        )
    )


def _api_order(core: RestOrders, client_id: str = "") -> str:
    """An open API order of ``ACCOUNT`` (placed, its answer not come yet): its clientOrderId."""
    params = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    params |= {"price": "95.00", "quantity": "0.20"}
    if client_id:
        params["newClientOrderId"] = client_id
    ref = core.new_order(rp.new_order(params, core.instruments), ACCOUNT, SESSION, 5)
    placed = core.requests[ref].order
    assert placed is not None
    return placed.client_order_id


def test_a_fix_replace_cannot_rename_its_order_to_an_open_api_orders_client_id() -> None:
    """Asked: README (REST) "a FIX order whose ClOrdID an open order placed through the API
    holds is refused (OrdRejReason 6), so ``origClientOrderId`` always names one order";
    3b8b277: "one id, one open order".
    Does: ``OrderEntry._new`` (orders.py) asks ``api_holds`` of a NewOrderSingle's ClOrdID,
    but ``_cancel_replace`` does not of a replace's (G): its ClOrdID (11) becomes the order's
    own once ``Replaced`` comes (``OrderEntry._replaced``; ``RestOrders._replaced`` renames
    the API's view of it alike), so a FIX order is renamed to an id an open API order holds.
    Here the API rests ``x1``; a FIX bid ``f1`` of the same account is acknowledged and
    then replaced with ClOrdID ``x1``.
    Actual: the replace is published (a ``ReplaceOrder`` in the ring, no cancel reject):
    once it lands two open orders of the account are named x1. (The fix: the same
    ``api_holds`` check in ``_cancel_replace`` for a G, CxlRejReason 6 / text as for a D.)"""
    entry, core, session = _wired()
    assert _api_order(core, "x1") == "x1"
    entry.outgoing.clear()
    _acked_fix_bid(entry, session, b"f1", 41)
    entry.on_message(cast(Session, session), _replace(b"f1", b"x1", b"91.00"), 2)
    sent = [type(r).__name__ for r in entry.outgoing]
    rejects = [m for t, m in session.sent if t == b"9"]
    assert sent == [] and len(rejects) == 1, (sent, session.sent)


def test_a_client_order_id_a_fix_replace_in_flight_will_take_is_refused() -> None:
    """Asked: README (REST) "A ``newClientOrderId`` that an open order of the account
    placed through this gateway still holds (over the API, or over FIX as its ClOrdID,
    acknowledged or not) is refused (``-2010``) ... so ``origClientOrderId`` always names
    one order".
    Does: ``RestOrders.in_use`` (rest_orders.py) asks ``fix_live`` (``OrderEntry.live``, by
    each FIX order's current ClOrdID) but not the ClOrdID a FIX replace (G) in flight gives
    its order once it lands (``OrderEntry.requests``; ``OrderReplies._pending_replace`` finds
    it for a status request). A FIX bid ``f1`` is acknowledged and replaced with ClOrdID
    ``x2``; while the replace waits in the ring, the API asks whether ``x2`` is in use.
    Actual: ``in_use`` answers None, the POST would go out, and when the replace lands the
    FIX order becomes x2 beside the API's x2. (The fix: ``fix_live`` looks at the session's
    replaces in flight too, ``_pending_replace``.)"""
    entry, core, session = _wired()
    _acked_fix_bid(entry, session, b"f1", 41)
    entry.on_message(cast(Session, session), _replace(b"f1", b"x2", b"91.00"), 2)
    assert isinstance(entry.outgoing[-1], ReplaceOrder)
    assert core.in_use(ACCOUNT, "x2") is not None


def test_a_generated_client_order_id_is_not_a_fix_orders_clordid() -> None:
    """Asked: README (REST) a new order without ``newClientOrderId`` gets a generated one
    (the id to ask its status by) and "``origClientOrderId`` always names one order".
    Does: ``RestOrders.new_order`` names it ``generated_id(self.client_ids, account, ref)``
    (rest_order_state.py), ``r<ref>`` unless an *API* order of the account holds that name;
    an open FIX order of the account whose ClOrdID is ``r<ref>`` is not looked at (``in_use``
    is asked of the client's id only, before the name is made). Refs are the FIX entry's
    counter (``OrderEntry.next_ref``): a FIX client whose ClOrdIDs look like ``r<number>``
    meets one by chance only, hence a forced counter here.
    Actual: the API's order is named r1002, the name of the live FIX bid as well. (The fix:
    ``generated_id`` given a ``taken`` that asks ``fix_live`` and ``live`` too.)"""
    entry, core, session = _wired()
    entry._next_ref = 1_000  # the FIX bid draws 1001, the API's order 1002
    entry.on_message(cast(Session, session), _bid(b"r1002"), 1)
    name = _api_order(core)
    assert entry.live.get((SESSION, name.encode())) is None, name


def test_a_client_order_id_another_session_of_the_account_holds_unacknowledged_is_refused() -> None:
    """Asked: README (REST) "A ``newClientOrderId`` that an open order of the account placed
    through this gateway still holds (over the API, or over FIX as its ClOrdID,
    acknowledged or not) is refused"; users may share an account (``add-user --account``:
    "An explicit one may exist"), and ``api_holds`` refuses a FIX ClOrdID whichever user's
    API order of the account holds it.
    Does: ``RestOrders.in_use`` (rest_orders.py) finds an acknowledged FIX order of any
    session of the account (``live.of(account)``, followed from its ``Accepted``), but an
    unacknowledged one only of the key's own session (``fix_live(session, ...)``, wired in
    ``GatewayServer._rest_api`` to ``OrderEntry.live`` by that session). A second user of
    account 7 (session 6) sends a FIX bid ``dup``; before its ack, the first user's key
    (session 5) asks for ``dup``.
    Actual: ``in_use`` answers None; once the FIX bid is acknowledged the account has two
    open orders named dup (the acknowledged case is refused). (The fix: ``fix_live`` by
    account, over the account's sessions' live orders.)"""
    entry, core, _ = _wired()
    other = _Session()
    other.session_id = 6  # another user of the same account
    entry.on_logon(cast(Session, other), 1)
    entry.on_message(cast(Session, other), _bid(b"dup"), 1)
    assert isinstance(entry.outgoing[-1], NewOrder)
    assert core.in_use(ACCOUNT, "dup") is not None


# -- gateway: the notional refusal's text (3b8b277) ------------------------------------------------


def test_a_notional_refusal_of_a_stop_buy_names_the_price_it_was_judged_at() -> None:
    """Asked: README (REST) "An order the exchange refuses is told its code, its price and
    quantity, and the rule where a configured limit says"; review 47's fault was a refusal
    whose text named a rule the order kept (STYLE 12: errors give the values).
    Does: ``rest_params.refusal`` (rest_params.py) says NOTIONAL_TOO_LARGE is "judged at ...
    its stop price (a stop)", but ``Accounts.reserve_new`` judges a stop-market buy at its
    cap, ``Market.cap(stop)``: the stop price plus ``band_bps`` (a stop-limit buy at its
    limit; only a stop sell at the higher of its price and stop price). A STOP_LOSS buy of
    1.0 BTC-USD at stop 100.00 (band 500 bps) under a 100 USD limit: its stop price x
    quantity is 100 USD, inside the rule the text states.
    Actual: the router refuses it NOTIONAL_TOO_LARGE (at the cap 105.00) and the text says
    it was judged at its stop price; neither 105.00 nor the band is named (nor the stop
    price itself: ``refusal`` prints ``price`` only, 0 for a stop-market order). (The fix: the
    text says "its cap, stop price plus bandBps, for a stop buy; its limit for a stop-limit
    buy"; better, the router's reply carries the price it judged at.)"""
    cfg = exchange_config(max_notional=1_000_000)  # 100 USD; BTC-USD: band 500, tick 5
    accounts = Accounts(cfg)
    assert accounts.create_account(ACCOUNT) == ResultCode.OK
    assert accounts.transfer(ACCOUNT, USD, 10**12, 1) == ResultCode.OK
    stop = new_order(ACCOUNT, BUY, 0, 10, kind=OrdType.STOP, stop=10_000)
    stop = msgspec.structs.replace(stop, order_id=1, seq=1)
    code, _ = accounts.reserve_new(stop)
    assert code == ResultCode.NOTIONAL_TOO_LARGE
    sym = cfg.symbols[0]
    params = {"symbol": "BTC-USD", "side": "BUY", "type": "STOP_LOSS", "quantity": "1.0"}
    req = rp.new_order({**params, "stopPrice": "100.00"}, Instruments([sym]))
    text = rp.refusal(code, req, RiskConfig(max_order_notional=1_000_000, fee_account=99))
    assert "105.00" in text or "band" in text.lower(), text


# -- gateway: cancels on disconnect sent again (f12f594) -------------------------------------------


class _Connection(_Session):
    """A FIX connection of the session: each logon is a new one, as the server makes."""


def _rate_limited(entry: OrderEntry, order_id: int) -> None:
    """The router refuses the gateway's own cancel of ``order_id`` for the account's rate."""
    (cancel,) = [r for r in entry.outgoing if isinstance(r, CancelOrder)]
    assert cancel.order_id == order_id
    entry.outgoing.clear()
    entry.process(
        Rejected(
            *(0, 10**18, GATEWAY, SESSION, cancel.client_ref, ACCOUNT, SYM.id, order_id),
            code=ResultCode.ACCOUNT_RATE_LIMITED,
        )
    )


_ORDER_COMMANDS = (NewOrder, CancelOrder, ReplaceOrder, MassCancel)


def _pump(ex: Exchange, entry: OrderEntry, now_ns: int) -> None:
    """What the gateway sends goes through the router core and the matchers; the replies and
    events of its commands come back to it (as ``test_review48_risk._pump``)."""
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


def test_cancels_on_disconnect_end_the_orders_while_another_session_of_the_account_trades() -> None:
    """Asked: README (risk) "the gateway sends a cancel on disconnect that the rate refused
    again each second until its order is gone"; review 48 named the need (cancel on
    disconnect is the safety a client whose link drops relies on) and two fixes: let such
    cancels through the account's rate (as the operator's cancel-all goes), or send them
    again once the bucket refills. f12f594 took the second.
    Does: ``DisconnectCancels.cancel_again`` (disconnect_cancels.py) sends the refused
    cancels once a second, from the gateway's timers, into the same bucket
    (``Sequencer._allow``) as every other command of the account. While another session of
    the account (users share an account with ``add-user --account``; its REST bot, say) sends
    at the account's rate, the bucket is empty whenever the timers' pass comes: each pass is
    refused again, for as long as the other session trades. Here the rate is 5 a second:
    session 77's five bids, its link drops, and for ten seconds the account's other session
    spends the bucket each second just before the gateway's pass.
    Actual: after ten passes all five bids still rest, their USD held, the session gone.
    (The fix: a gateway's own cancel on disconnect is not held back by the account's rate,
    as the operator's mass cancel is not, e.g. a flag on ``CancelOrder`` the sequencer
    honours only from a gateway ring for a cancel without a client id.)"""
    cfg = exchange_config(rate=5, max_open=100)
    ex = funded(cfg)
    trader = 5
    _trader(ex, trader, USD, 10**9)
    entry = OrderEntry(1, Instruments([cfg.symbols[0]]), cancel_on_disconnect=True)
    session = _Session()
    session.session_id, session.account = 77, trader
    entry.on_logon(cast(Session, session), 1)
    now = 10**18
    for n in range(5):
        entry.on_message(cast(Session, session), _bid(b"bid%d" % n, b"90.%02d" % (5 * n)), now)
    _pump(ex, entry, now)
    assert ex.accounts.open_orders(trader) == 5
    entry.on_disconnect(cast(Session, session), now + 1_000)
    _pump(ex, entry, now + 1_000)
    refs = itertools.count(1)
    for second in range(1, 11):
        at = now + second * 10**9
        for k in range(5):  # the account's other session, at the account's rate
            ex.submit(CancelOrder(0, at, 2, 99, next(refs), trader, BTCUSD, 10**6 + k), at)
        _pump(ex, entry, at + 1_000_000)
    ex.check()
    assert ex.accounts.open_orders(trader) == 0
