"""Review 231: the price band and its reference over a symbol's life, with halts and stops.

Reviewed: ``procs/core/order_checks.py`` (``_protection``, ``_dead_on_arrival``, the collar
``_check_limit``, the halt check), ``book.py`` (``_take``: a market order's limit, the
router's cap; ``_trigger_stops``; ``_admin``: halt, resume, end of session; ``_replace``),
``fast_book.py`` (the inline paths' hand-off of protected takers), ``engine.py``
(``SymbolRules`` in force between two commands), ``symbol_rules.py``, ``accounts.py``
(``reserve_new``: a market buy capped at the band over the router's last trade, a stop buy
over its stop; the notional checks), ``money.py`` (``Market.cap``, ``largest_capped``),
``settlement.py`` (fills against a capped hold), ``sequencer.py``, and
``procs/gateway/notional_note.py`` (``cap_note``), driven through ``core_rig.Exchange``
(the router's core in front of a fast and a reference book) and ``money_rig.restarted``
(a restart replaying the journal under a changed config, its rules journaled).

Fault found (fixed: its tests say "Was (fixed)"):

1. ``procs/core/order_checks.py:167-168`` (``OrderChecks._protection``) with
   ``procs/core/money.py:80`` (``Market.cap``), reached through ``symbol_rules.changes``
   (``procs/core/symbol_rules.py:58``), which journals a new ``tick`` whatever rests: a
   market order's band limit is the reference moved ``band_bps`` and then rounded to the
   tick *towards* the reference, so with a reference off the tick in force (orders that
   rested, and a last trade made, before the operator raised the tick) and a band narrower
   than the distance to the next tick, the limit lands on the far side of the reference
   itself. With ``band_bps = 0`` (market orders at the touch only) after BTC-USD's tick
   went 5 -> 25, a market sell against the best bid at 100.05 limits at 100.25 and a market
   buy against the best ask at 100.05 is capped by the router at 100.00 (the last trade,
   100.05, rounded down): both are accepted and expire unfilled with the touch resting
   there. Fix: never let the band's rounding exclude its reference (``_protection``: a
   buy's limit ``max(reference, ...)``, a sell's ``min(reference, ...)``; ``Market.cap``
   rounded up to the tick rather than down below ``ref``), or refuse a tick change at the
   router's start while orders rest off the new tick, naming them, as a fee-margin change
   is refused while buys rest (``fees.check_schedule``). Tests:
   ``test_a_market_sell_at_a_zero_band_reaches_a_best_bid_off_a_raised_tick`` and
   ``test_a_market_buy_at_a_zero_band_reaches_a_best_ask_off_a_raised_tick``.

Found sound (passing tests below): seeded random streams of limits, market orders, stops
(some triggering on arrival, some far outside the band), cancels, replaces, halts, resumes
and session ends through the router's core and both books, with the events settled back
late and two restarts under changed bands and collars: after every step no balance is
negative, holds equal the open orders' needs once settled, every asset is conserved, the
router's last trade is the matcher's, and no market order trades past the band from the best
opposite price at its arrival (nor a capped buy past its cap), no triggered stop-market past
the band from its stop, under the band in force at that moment. A halt refuses new orders
and replaces (``SYMBOL_HALTED``, the holds released), takes cancels, triggers nothing
(neither does the resume nor a session end), and after the resume a market buy is banded
from the best ask and capped at the band over the last trade. A stop-market buy triggering
on arrival past its band is refused ``PRICE_OUT_OF_BAND`` (hold released); one whose stop is
far outside the band waits, held at the band over its stop. A market buy whose router cap
(over the last trade) is above the matcher's band (over a best ask that fell since) fills
within the narrower one and never past its hold. ``largest_capped`` (``cap_note``'s largest
stop price) is exactly the router's ``INVALID_PRICE`` boundary. After a session end the
collar's reference is still the last trade, and a waiting stop-limit is collared around its
stop.
"""

from __future__ import annotations

import random

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common.records import (
    Accepted,
    AdminCommand,
    CancelOrder,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    ReplaceOrder,
    SymbolStatus,
    Trade,
    Transfer,
    Triggered,
)
from procs.common.result_codes import ResultCode
from procs.common.types import AdminAction, DoneReason, Side, TradingStatus
from procs.core.accounts import MAX_TOTAL
from procs.core.book import Book
from procs.core.money import largest_capped
from tests.unit.router.core_rig import (
    BTCUSD,
    BUY,
    DAY,
    ETHUSD,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    SELL,
    STOP,
    STOP_LIMIT,
    USD,
    Exchange,
    exchange_config,
    funded,
    new_order,
    placed,
)
from tests.unit.router.money_rig import Run, need, restarted

HALT, RESUME, EOS = AdminAction.HALT, AdminAction.RESUME, AdminAction.END_OF_SESSION
MATCHER = {BTCUSD: "m1", ETHUSD: "m2"}


def _events(ex: Exchange, command: Record) -> list[Record]:
    """``command``'s events as its matcher answered them (submitted, not yet settled)."""
    symbol: int = getattr(command, "symbol", BTCUSD) or BTCUSD
    name = MATCHER[symbol]
    mark = len(ex.inbox[name])
    sent = ex.submit(command)
    assert sent is not None, command
    return list(ex.inbox[name])[mark:]


def _refusal(events: list[Record]) -> ResultCode | None:
    """The code of a command answered by a lone ``Rejected``; None for anything else."""
    only = events[0] if len(events) == 1 else None
    return only.code if isinstance(only, Rejected) else None


def _admin(ex: Exchange, action: AdminAction, symbol: int = BTCUSD) -> list[Record]:
    return _events(ex, AdminCommand(0, 0, action, symbol, 0))


def _settled(ex: Exchange) -> None:
    ex.settle()
    ex.check()
    _holds_match_books(ex)


def _holds_match_books(ex: Exchange) -> None:
    """Nothing in flight: every hold is exactly what the books' orders need."""
    holds: dict[tuple[int, int], int] = {}
    for matcher in ex.fast.values():
        for symbol, book in matcher.books.items():
            market = ex.accounts.markets[symbol]
            for o in (*book.orders.values(), *book.stops.values()):
                slot = (o.account, market.hold_asset(o.side))
                amount = need(ex.cfg, symbol, o.side, o.price, o.leaves + o.reserve)
                holds[slot] = holds.get(slot, 0) + amount
    reserved = {(a, s): r for a, s, _, r in ex.accounts.state().balances if r}
    assert reserved == {k: v for k, v in holds.items() if v}


def _book(ex: Exchange, symbol: int = BTCUSD) -> Book:
    return ex.fast[MATCHER[symbol]].books[symbol]


# -- the random streams --------------------------------------------------------------------------


class Banded:
    """A random stream through ``core_rig.Exchange`` that checks every trade against the band
    of its moment: a market order's from the best opposite price at its arrival (and a capped
    buy's cap), a triggered stop-market's from its stop, under the band then in force."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.run = Run(funded(exchange_config(max_notional=0)))
        self.orders: dict[int, NewOrder] = {}
        self.ref = 1_000
        self.trades = 0

    @property
    def ex(self) -> Exchange:
        return self.run.ex

    def command(self) -> Record:
        rng, ex = self.rng, self.ex
        symbol = rng.choice((BTCUSD, ETHUSD))
        book = _book(ex, symbol)
        tick, lot = book.spec.tick, book.spec.lot
        mid = (10_000 if symbol == BTCUSD else 1_000) // tick * tick
        price = mid + tick * rng.randint(-8, 8)
        qty = lot * rng.randint(1, 6)
        account = rng.choice((1, 2, 3))
        self.ref += 1
        op = rng.choice("lllmmssccrrah")
        live = sorted(book.orders.values(), key=lambda o: o.order_id)
        if op in "cr" and live:
            o = rng.choice(live)
            if op == "c":
                return CancelOrder(0, 0, 1, o.account, self.ref, o.account, symbol, o.order_id)
            total = max(lot, o.filled + o.leaves + o.reserve + lot * rng.randint(-2, 2))
            return ReplaceOrder(
                *(0, 0, 1, o.account, self.ref, o.account, symbol, o.order_id),
                *(rng.choice((o.price, price)), total),
            )
        if op == "a":
            action = rng.choice((HALT, RESUME, RESUME, EOS))
            return AdminCommand(0, 0, action, rng.choice((0, symbol)), self.ref)
        side = rng.choice((BUY, SELL))
        kind, stop = LIMIT, 0
        if op == "m":
            kind, price = MARKET, rng.choice((0, 0, 0, price))
        elif op == "s":
            kind = rng.choice((STOP, STOP, STOP_LIMIT))
            stop = max(tick, mid + tick * rng.choice((-30, -6, -2, 0, 2, 6, 30)))
            price = 0 if kind == STOP and rng.random() < 0.8 else price
        tif = rng.choice((GTC, GTC, DAY, IOC)) if kind != MARKET else IOC
        return new_order(
            account, side, price, qty, symbol=symbol, ref=self.ref, kind=kind, tif=tif, stop=stop
        )

    def step(self) -> None:
        command = self.command()
        symbol: int = getattr(command, "symbol", 0)
        books = [_book(self.ex, symbol)] if symbol else [_book(self.ex, s) for s in MATCHER]
        best = {(b.spec.symbol, s): b._best(s) for b in books for s in (BUY, SELL)}
        marks = {name: len(q) for name, q in self.ex.inbox.items()}
        sent = self.ex.submit(command)
        if isinstance(sent, NewOrder):
            self.orders[sent.order_id] = sent
        for name, queue in self.ex.inbox.items():
            self._bands(list(queue)[marks[name] :], best)
        if self.rng.random() < 0.6:  # the router settles late, a few events at a time
            self.ex.settle(self.rng.choice(list(MATCHER.values())), self.rng.randint(1, 9))
        self.ex.check()

    def _bands(self, events: list[Record], best: dict[tuple[int, Side], int | None]) -> None:
        taker: NewOrder | None = None
        for event in events:
            if isinstance(event, Triggered):
                taker = self.orders[event.order_id]
            if type(event) is not Trade:
                continue
            self.trades += 1
            order = self.orders.get(event.taker_order_id)
            if order is None or order.ord_type not in (MARKET, STOP):
                continue
            band = _book(self.ex, event.symbol).spec.band_bps
            if order.ord_type == MARKET:
                ref = best[(event.symbol, SELL if order.side == BUY else BUY)]
                assert ref is not None, event
            else:
                assert taker is order, (event, taker)
                ref = order.stop_price
            reach = ref * band // 10_000
            if order.side == BUY:
                assert event.price <= ref + reach, (event, ref, band)
                assert not order.price or event.price <= order.price, (event, order)
            else:
                assert event.price >= ref - reach, (event, ref, band)

    def restart(self) -> None:
        """Everything settled, then a restart under other bands and collars."""
        self.run.settle_all()
        _settled(self.ex)
        cfg = self.ex.cfg
        symbols = [
            msgspec.structs.replace(
                s,
                band_bps=self.rng.choice((0, 1, 100, 500, 2_500, 10_000)),
                limit_band_bps=self.rng.choice((0, 0, 50, 300, 10_000)),
            )
            for s in cfg.symbols
        ]
        self.run = restarted(self.run, msgspec.structs.replace(cfg, symbols=symbols))
        self.ex.check()

    def finish(self) -> None:
        self.run.settle_all()
        _settled(self.ex)
        for symbol in MATCHER:
            assert self.ex.accounts.last_price(symbol) == _book(self.ex, symbol).last_price


@pytest.mark.parametrize("seed", range(6))
def test_random_streams_keep_money_and_never_trade_past_the_band_of_the_moment(
    seed: int,
) -> None:
    """Scenario: 3 x 250 random commands (limits, market orders capped or not, stop-markets
    and stop-limits near and far from the market, cancels, replaces, halts, resumes, session
    ends) with events settled late, and two restarts under random bands and collars.
    Expected: after every step nothing negative and every asset conserved (``check``), holds
    equal the books' needs once settled, the router's last trade is the matcher's, and no
    trade of a market order or triggered stop-market is past the band of its moment. Now: so."""
    stream = Banded(seed)
    for part in range(3):
        for _ in range(250):
            stream.step()
        if part < 2:
            stream.restart()
    stream.finish()
    assert stream.trades > 20  # the stream really trades


# -- halts ---------------------------------------------------------------------------------------


def test_a_halt_refuses_orders_takes_cancels_triggers_nothing_and_the_resume_is_banded() -> None:
    """Scenario: BTC-USD trades at 100.00 (band 500 bps); a bid rests, a buy stop at 100.50
    and a sell stop at 99.50 wait; the symbol is halted; a limit, a market buy, a stop and a
    replace arrive; the bid is cancelled; a session end and the resume follow, then asks at
    100.00 and 106.00 and a market buy of 5. Expected: during the halt every new order and the
    replace refused ``SYMBOL_HALTED`` with nothing held for them, the cancel done, no stop
    triggered by the halt, the session end (GTC stops) or the resume; after it the market buy
    takes 100.00 only (106.00 is past both the band from the best ask and its cap, 105.00),
    and its stop-market buy at 100.50 is not triggered by a trade at 100.00. Now: so."""
    ex = funded(exchange_config(max_notional=0))
    placed(ex, new_order(1, SELL, 10_000, 1, ref=1))
    placed(ex, new_order(2, BUY, 10_000, 1, ref=2))
    bid = placed(ex, new_order(2, BUY, 9_900, 2, ref=3))
    placed(ex, new_order(3, BUY, 0, 1, ref=4, kind=STOP, stop=10_050))
    placed(ex, new_order(3, SELL, 0, 1, ref=5, kind=STOP, stop=9_950))
    _settled(ex)
    held = ex.accounts.balance(1, USD)
    status = _admin(ex, HALT)[-1]
    assert isinstance(status, SymbolStatus) and status.status == TradingStatus.HALTED
    refused = [
        new_order(1, BUY, 10_000, 1, ref=6),
        new_order(1, BUY, 0, 1, ref=7, kind=MARKET, tif=IOC),
        new_order(1, BUY, 0, 1, ref=8, kind=STOP, stop=10_000),
        ReplaceOrder(0, 0, 1, 2, 9, 2, BTCUSD, bid.order_id, 9_905, 2),
    ]
    for command in refused:
        events = _events(ex, command)
        assert _refusal(events) == ResultCode.SYMBOL_HALTED, events
    done = _events(ex, CancelOrder(0, 0, 1, 2, 10, 2, BTCUSD, bid.order_id))
    assert isinstance(done[0], OrderDone) and done[0].reason == DoneReason.CANCELLED
    for action in (EOS, RESUME):
        assert not any(isinstance(e, (Trade, Triggered)) for e in _admin(ex, action))
    _settled(ex)
    assert ex.accounts.balance(1, USD) == held
    assert len(_book(ex).stops) == 2
    placed(ex, new_order(1, SELL, 10_000, 2, ref=11))
    placed(ex, new_order(1, SELL, 10_600, 3, ref=12))
    events = _events(ex, new_order(2, BUY, 0, 5, ref=13, kind=MARKET, tif=IOC))
    assert isinstance(events[0], Accepted) and events[0].price == 10_500  # its cap
    assert [(e.price, e.qty) for e in events if isinstance(e, Trade)] == [(10_000, 2)]
    assert not any(isinstance(e, Triggered) for e in events)
    _settled(ex)


# -- stops and caps ------------------------------------------------------------------------------


def test_a_stop_market_past_its_band_on_arrival_is_refused_and_one_far_away_waits() -> None:
    """Scenario: a trade at 100.00, the best ask then 110.00; a stop-market buy at 100.00
    (reached: the last trade is at it) arrives, then one at 150.00. Expected: the first is
    refused ``PRICE_OUT_OF_BAND`` (banded from its stop it may pay 105.00 at most) and holds
    nothing; the second waits, held at its cap, the band over its stop (157.50). Now: so."""
    ex = funded(exchange_config(max_notional=0))
    placed(ex, new_order(1, SELL, 10_000, 1, ref=1))
    placed(ex, new_order(2, BUY, 10_000, 1, ref=2))
    placed(ex, new_order(1, SELL, 11_000, 5, ref=3))
    _settled(ex)
    free = ex.accounts.balance(3, USD)
    events = _events(ex, new_order(3, BUY, 0, 2, ref=4, kind=STOP, stop=10_000))
    assert _refusal(events) == ResultCode.PRICE_OUT_OF_BAND, events
    _settled(ex)
    assert ex.accounts.balance(3, USD) == free
    far = placed(ex, new_order(3, BUY, 0, 2, ref=5, kind=STOP, stop=15_000))
    assert far.price == 15_750
    _settled(ex)
    assert ex.accounts.balance(3, USD)[1] == need(ex.cfg, BTCUSD, BUY, 15_750, 2)
    assert far.order_id in _book(ex).stops


def test_a_market_buy_fills_within_the_narrower_of_its_cap_and_the_matchers_band() -> None:
    """Scenario: a trade at 100.00 (the router's reference), then the asks fall: 90.00 x 2,
    94.50 x 2, 95.00 x 2 and 104.00 x 2; a poor account, holding exactly what a market buy of 8
    capped at 105.00 needs, sends one. Expected: it fills 90.00 and 94.50 only (the band from
    the best ask, 94.50, is below its cap), pays no more than it held, and its rest is
    released. Now: so."""
    ex = funded(exchange_config(max_notional=0))
    placed(ex, new_order(1, SELL, 10_000, 1, ref=1))
    placed(ex, new_order(2, BUY, 10_000, 1, ref=2))
    for n, price in enumerate((9_000, 9_450, 9_500, 10_400)):
        placed(ex, new_order(1, SELL, price, 2, ref=10 + n))
    _settled(ex)
    hold = need(ex.cfg, BTCUSD, BUY, 10_500, 8)
    free = ex.accounts.balance(3, USD)[0]
    assert ex.submit(Transfer(0, 0, 1, 3, 0, 3, USD, hold - free, 777))  # free: just the hold
    assert ex.accounts.balance(3, USD) == (hold, 0)
    market = placed(ex, new_order(3, BUY, 0, 8, ref=20, kind=MARKET, tif=IOC))
    assert market.price == 10_500
    fills = [(e.price, e.qty) for e in ex.inbox["m1"] if isinstance(e, Trade)][-2:]
    assert fills == [(9_000, 2), (9_450, 2)]
    _settled(ex)
    spent = sum(ex.accounts.markets[BTCUSD].notional(p, q) for p, q in fills)
    fee = sum(ex.accounts.markets[BTCUSD].fees(p, q)[1] for p, q in fills)
    assert ex.accounts.balance(3, USD) == (hold - spent - fee, 0)


def test_largest_capped_is_the_routers_invalid_price_boundary() -> None:
    """Scenario: stop-market buys without a price at ``largest_capped`` (what ``cap_note``
    names as the largest stop price) and one tick above it, for the config's tick and band.
    Expected: the first is not refused ``INVALID_PRICE`` (its cap fits an int64; it fails on
    the balance), the second is. Now: so."""
    ex = funded(exchange_config(max_notional=0))
    market = ex.accounts.markets[BTCUSD]
    top = largest_capped(market.tick, market.band_bps, MAX_TOTAL)
    assert market.cap(top) <= MAX_TOTAL < market.cap(top + market.tick)
    codes = []
    for n, stop in enumerate((top, top + market.tick)):
        order = new_order(1, BUY, 0, 1, ref=50 + n, kind=STOP, stop=stop)
        decision = ex.sequencer.submit(order, 0)
        assert decision.command is None and isinstance(decision.reply, Rejected)
        codes.append(decision.reply.code)
    assert codes == [ResultCode.INSUFFICIENT_BALANCE, ResultCode.INVALID_PRICE]


def test_after_a_session_end_the_collar_is_still_around_the_last_trade() -> None:
    """Scenario: ETH-USD (collar 300 bps) trades at 10.00, the session ends, then a limit at
    10.31, one at 10.30, and a stop-limit buy waiting at stop 12.00 limited at 12.36 and at
    12.37. Expected: 10.31 refused ``PRICE_OUT_OF_BAND`` and 10.30 accepted (the reference is
    still the last trade, 10.00); the stop-limit collared around its stop: 12.36 waits, 12.37
    refused. Now: so."""
    ex = funded(exchange_config(max_notional=0))
    placed(ex, new_order(1, SELL, 1_000, 2, symbol=ETHUSD, ref=1))
    placed(ex, new_order(2, BUY, 1_000, 2, symbol=ETHUSD, ref=2))
    _admin(ex, EOS, ETHUSD)
    _settled(ex)
    cases = [
        (new_order(1, SELL, 1_031, 2, symbol=ETHUSD, ref=3), ResultCode.PRICE_OUT_OF_BAND),
        (new_order(1, SELL, 1_030, 2, symbol=ETHUSD, ref=4), None),
        (new_order(2, BUY, 1_236, 2, symbol=ETHUSD, ref=5, kind=STOP_LIMIT, stop=1_200), None),
        (
            new_order(2, BUY, 1_237, 2, symbol=ETHUSD, ref=6, kind=STOP_LIMIT, stop=1_200),
            ResultCode.PRICE_OUT_OF_BAND,
        ),
    ]
    for order, code in cases:
        events = _events(ex, order)
        got = events[0].code if isinstance(events[0], Rejected) else None
        assert got == code, (order, events)
    _settled(ex)


# -- the fault: a band rounded past its own reference -------------------------------------------


def _raised_tick(resting: Side) -> Exchange:
    """BTC-USD (tick 5) trades at 100.05 and keeps a ``resting`` order at 100.05; the operator
    then restarts it with tick 25 and ``band_bps`` 0 (its rules journaled)."""
    ex = funded(exchange_config(max_notional=0))
    other = SELL if resting == BUY else BUY
    placed(ex, new_order(1, other, 10_005, 1, ref=1))
    placed(ex, new_order(2, resting, 10_005, 1, ref=2))
    placed(ex, new_order(1, resting, 10_005, 3, ref=3))
    _settled(ex)
    cfg: RingexConfig = ex.cfg
    symbols = [
        msgspec.structs.replace(s, tick=25, band_bps=0) if s.id == BTCUSD else s
        for s in cfg.symbols
    ]
    again = restarted(Run(ex), msgspec.structs.replace(cfg, symbols=symbols)).ex
    book = _book(again)
    assert (book.spec.tick, book.spec.band_bps, book.last_price) == (25, 0, 10_005)
    assert book._best(resting) == 10_005
    return again


def test_a_market_sell_at_a_zero_band_reaches_a_best_bid_off_a_raised_tick() -> None:
    """Scenario: after the tick went 5 -> 25 with ``band_bps`` 0, a bid rests at 100.05 (off
    the new tick; the last trade too); a market sell of 1 arrives. Expected: it sells 1 at
    100.05, the best bid, which no band can exclude (it is the band's own reference). Was
    (fixed): it was accepted and expired unfilled: ``_protection`` rounded 100.05 up to the
    tick, 100.25, past the best bid."""
    ex = _raised_tick(BUY)
    events = _events(ex, new_order(3, SELL, 0, 1, ref=9, kind=MARKET, tif=IOC))
    _settled(ex)
    assert [(e.price, e.qty) for e in events if isinstance(e, Trade)] == [(10_005, 1)]


def test_a_market_buy_at_a_zero_band_reaches_a_best_ask_off_a_raised_tick() -> None:
    """Scenario: as above, with an ask resting at 100.05 (placed before the tick change) and
    the last trade at 100.05; a market buy of 1 arrives. Expected: it buys 1 at 100.05. Was
    (fixed): the router capped it at 100.00 (``Market.cap`` rounded the last trade down to
    the new tick) and the matcher's limit was 100.00 too: accepted, it expired unfilled."""
    ex = _raised_tick(SELL)
    events = _events(ex, new_order(3, BUY, 0, 1, ref=9, kind=MARKET, tif=IOC))
    _settled(ex)
    assert [(e.price, e.qty) for e in events if isinstance(e, Trade)] == [(10_005, 1)]
