"""Review 250: money conservation through the pure cores, as a hypothesis state machine.

Reviewed: ``procs/core/sequencer.py`` (submit, replay of fee records, snapshot/restore),
``accounts.py`` and ``settlement.py`` (holds, fills, releases), ``money.py`` (holds, caps),
``fees.py`` (a fee change at a restart and its refusal), ``engine.py``, ``book.py``,
``fast_book.py`` and ``reference_book.py`` (every order type, snapshot/restore), wired as the
pipeline wires them: ``core_rig.Exchange`` (the router's core in front of both matchers, each
as a fast and a reference book that must agree; events settled with a lag the machine picks).

Method: a ``RuleBasedStateMachine`` with three rich traders and a poor one: deposits and
withdrawals around the free balance; new orders of every type (limit GTC/DAY/IOC/FOK,
post-only, market capped by the router or with a price of its own, stop-market, stop-limit,
iceberg) under every self-trade prevention mode; cancels; replaces (size down, up, price
up/down, by 40 ticks past the collar too, of icebergs, stops and post-only orders);
mass cancels by account and/or symbol; halt, resume and end of session; a restart under
changed fees or a moved fee account (all settled, then the router restored from its snapshot
under the new config and its ``FeeSchedule`` records journaled; refused exactly where open
buys hold another fee margin); and a snapshot/restore of the router and both matchers in the
middle, after which the restored exchange and its unrestored twin (which takes the fee
records by ``replay``) take the same commands and must give byte-identical replies, events,
journals and state hashes. Prices now and then far past the band and the limit collar.
Checked after every op: per asset, every account's free + held (the fee accounts included)
is exactly deposits - withdrawals; nothing negative; the fee account in force when each
trade settled holds exactly that trade's floored maker and taker fees, under the fees in force
then; with nothing in flight, each (account, asset)'s held amount is what the books' resting
orders and pending stops need (recomputed here: a sell its base, a buy its notional at its
limit or cap plus the ceiling of the larger fee); no book rests crossed. At each example's end,
all settled, the whole journal replayed from nothing under the config of the day
(``money_rig.replayed``) gives the live state hashes.

Faults: none reproduced.

Found sound (the passing tests below): all of the above over 200 examples of up to 60 steps
of up to four ops (about 28,000 ops: ~5,000 trades, ~1,200 stop triggers, ~800 restores,
~800 restarts, ~75 of them refused a margin change); a fee change that keeps the margin
(maker and taker swapped) taken with a buy resting, its fill settled under the new fees to
the unit and replayed alike; a margin change refused, naming the symbol and the order, while
a stop buy waits, and taken once it is cancelled, a new buy then holding the new margin.

Leads, not faults: a replace of a waiting stop is refused ``INVALID_ORDER`` (README's result
codes document it: cancel and send a new one), so no stop is repriced while it waits.
"""

from __future__ import annotations

import itertools
import random

import msgspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from config.schema import RingexConfig
from procs.common.records import (
    AdminCommand,
    CancelOrder,
    CreateAccount,
    FeeSchedule,
    MassCancel,
    Record,
    ReplaceOrder,
    Trade,
    Transfer,
)
from procs.common.types import AdminAction, OrderFlag, OrdType, Side, StpMode, TimeInForce
from procs.core.fees import FeeChangeError
from procs.core.sequencer import Sequencer
from tests.unit.router.core_rig import (
    ASSETS,
    BTCUSD,
    BUY,
    ETHUSD,
    FEE,
    MID,
    SECOND,
    SELL,
    USD,
    Exchange,
    exchange_config,
    funded,
    new_order,
    placed,
)
from tests.unit.router.money_rig import replayed

LIMIT, MARKET, STOP, STOP_LIMIT = OrdType.LIMIT, OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
POOR = 4
ACCOUNTS = (1, 2, 3, POOR)
SYMBOLS = (BTCUSD, ETHUSD)
FEES = (7, 13, 1_000, 3)


def config(fees: tuple[int, int, int, int] = FEES, fee_account: int = FEE) -> RingexConfig:
    cfg = exchange_config(max_open=60, max_notional=0, fees=fees)
    return msgspec.structs.replace(
        cfg, risk=msgspec.structs.replace(cfg.risk, fee_account=fee_account)
    )


CFG = config()

# -- the model, written here from the README's rules ----------------------------------------------


def units(symbol: int) -> tuple[int, int, int, int, int, int]:
    """(quote, quote minor units per price x qty, base, base minor units per qty, tick, lot)."""
    s = next(s for s in CFG.symbols if s.id == symbol)
    quote, base = CFG.asset(s.quote), CFG.asset(s.base)
    return (
        *(quote.id, 10 ** (quote.decimals - s.price_decimals - s.qty_decimals)),
        *(base.id, 10 ** (base.decimals - s.qty_decimals), s.tick, s.lot),
    )


def need(symbol: int, side: Side, price: int, qty: int, margin_bps: int) -> int:
    """What an order with ``qty`` open at ``price`` holds: a sell its base, a buy its
    notional plus the ceiling of the larger fee."""
    _, scale, _, base_scale, _, _ = units(symbol)
    if side == SELL:
        return qty * base_scale
    notional = price * qty * scale
    return notional + -(-notional * margin_bps // 10_000)


def exchange() -> Exchange:
    """Three rich traders, a poor one, and a first trade on each symbol (a last price)."""
    ex = funded(CFG)
    assert ex.submit(CreateAccount(0, 0, 1, POOR, 0, POOR)) is not None
    for key, (asset, amount) in enumerate(((USD, 400_000), (2, 3_000), (3, 4_000)), start=900):
        assert ex.submit(Transfer(0, 0, 1, POOR, 0, POOR, asset, amount, key)) is not None
    for symbol in SYMBOLS:
        mid, _ = MID[symbol]
        lot = units(symbol)[5]
        placed(ex, new_order(1, SELL, mid, lot, symbol=symbol, ref=10**6 + symbol))
        placed(ex, new_order(2, BUY, mid, lot, symbol=symbol, ref=10**6 + symbol))
    ex.settle()
    return ex


# -- the machine ---------------------------------------------------------------------------------

KINDS = (LIMIT,) * 5 + (MARKET, STOP, STOP_LIMIT)
TIFS = (GTC, GTC, DAY, IOC, FOK)
ADMINS = (AdminAction.RESUME,) * 4 + (AdminAction.HALT, AdminAction.END_OF_SESSION)
OPS: tuple[str, ...] = ("new",) * 12 + ("cancel",) * 2 + ("replace",) * 6 + ("settle",) * 6
OPS += ("transfer",) * 2 + ("mass_cancel", "admin", "restore", "restart_with_fees")
Values = tuple[int, ...]


class MoneyMachine(RuleBasedStateMachine):
    """The exchange under random commands; once restored, its unrestored twin beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.ex = exchange()
        self.twin: Exchange | None = None
        self.mark = 0  # the twin's outputs before the last restore
        self.now = SECOND
        self.refs = itertools.count(1)
        self.keys = itertools.count(10_000)
        self.bps = {s.id: (s.maker_fee_bps, s.taker_fee_bps) for s in CFG.symbols}
        #: the fee account's take, from the trades settled (the opening trades' as found)
        self.collected = {(FEE, a): self.ex.accounts.balance(FEE, a)[0] for a in ASSETS}

    def exchanges(self) -> list[Exchange]:
        return [self.ex] if self.twin is None else [self.ex, self.twin]

    def collect(self, events: list[Record]) -> None:
        for t in events:
            if isinstance(t, Trade):
                quote, scale, *_ = units(t.symbol)
                notional = t.price * t.qty * scale
                key = (self.ex.cfg.risk.fee_account, quote)
                fee = sum(notional * b // 10_000 for b in self.bps[t.symbol])
                self.collected[key] = self.collected.get(key, 0) + fee

    def submit(self, command: Record) -> None:
        self.now += 1_000
        for ex in self.exchanges():
            ex.submit(command, self.now)

    def settle(self, v: Values) -> None:
        name, count = ("m1", "m2")[v[0] % 2], (1, 2, 5, None)[v[1] % 4]
        applied = self.ex.settle(name, count)
        if self.twin is not None:
            assert self.twin.settle(name, count) == applied
        self.collect(applied)

    def settle_all(self) -> None:
        for i in range(2):
            self.settle((i, 3))

    def live(self) -> list[tuple[int, int, int, int, int, int]]:
        """(id, account, symbol, price, total, lot) of the orders in the books."""
        out = []
        for matcher in self.ex.fast.values():
            for symbol, book in matcher.books.items():
                lot = units(symbol)[5]
                for o in (*book.orders.values(), *book.stops.values()):
                    total = o.filled + o.leaves + o.reserve
                    out.append((o.order_id, o.account, symbol, o.price, total, lot))
        return sorted(out)

    @rule(ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=4), seed=st.integers(0, 2**32))
    def step(self, ops: list[str], seed: int) -> None:
        """Up to four ops, each checked; their values drawn from ``seed`` (hypothesis's small
        draws would give every order one side and one price)."""
        rng = random.Random(seed)
        for op in ops:
            getattr(self, op)(tuple(rng.randrange(10_000) for _ in range(10)))
            self.money_holds()

    def new(self, v: Values) -> None:
        account, side = ACCOUNTS[v[0] % 4], (BUY, SELL)[v[1] % 2]
        symbol, kind, tif = SYMBOLS[v[2] % 2], KINDS[v[3] % len(KINDS)], TIFS[v[4] % len(TIFS)]
        mid, tick = MID[symbol]
        lot = units(symbol)[5]
        spread = (13, 13, 13, 61, 241)[v[9] // 5 % 5]  # now and then past the band and collar
        price, qty = mid + (v[5] % spread - spread // 2) * tick, (1 + v[6] % 20) * lot
        stop = mid + (v[7] % spread - spread // 2) * tick if kind in (STOP, STOP_LIMIT) else 0
        if kind in (MARKET, STOP) and v[5] % 3:
            price = 0  # the router caps a buy
        rests = kind in (LIMIT, STOP_LIMIT) and tif in (GTC, DAY)
        display = lot * (1 + v[8] % 3) if v[8] % 3 == 0 and rests and qty > lot * 3 else 0
        post = OrderFlag.POST_ONLY if kind == LIMIT and rests and v[9] % 5 == 0 else 0
        order = new_order(
            account, side, price, qty, symbol=symbol, ref=next(self.refs), kind=kind, tif=tif,
            stp=list(StpMode)[v[0] // 4 % 4], stop=stop, display=display, flags=post,
        )  # fmt: skip
        self.submit(order)

    def cancel(self, v: Values) -> None:
        live = self.live()
        if live:
            oid, account, symbol, *_ = live[v[0] % len(live)]
            self.submit(CancelOrder(0, 0, 1, account, next(self.refs), account, symbol, oid))

    def replace(self, v: Values) -> None:
        live = self.live()
        if not live:
            return
        oid, account, symbol, price, total, lot = live[v[0] % len(live)]
        tick = MID[symbol][1]
        p1 = max(tick, price + (0, 0, -1, 1, -3, 3, -40, 40)[v[1] % 8] * tick)
        q1 = max(lot, total + (0, -1, 1, -3, 4, -total)[v[2] % 6] * lot)
        cmd = ReplaceOrder(0, 0, 1, account, next(self.refs), account, symbol, oid, p1, q1)
        self.submit(cmd)

    def transfer(self, v: Values) -> None:
        account, asset = ACCOUNTS[v[0] % 4], ASSETS[v[1] % 3]
        free, held = self.ex.accounts.balance(account, asset)
        small = 1 + v[2] % 5_000
        amount = (small, -small, -free, -(free + 1), -(free + held), small * 1_000)[v[3] % 6]
        self.submit(Transfer(0, 0, 1, account, 0, account, asset, amount or 1, next(self.keys)))

    def mass_cancel(self, v: Values) -> None:
        account, symbol = (0, *ACCOUNTS)[v[0] % 5], (0, *SYMBOLS)[v[1] % 3]
        self.submit(MassCancel(0, 0, 1, account or 1, next(self.refs), account, symbol))

    def admin(self, v: Values) -> None:
        action, symbol = ADMINS[v[0] % len(ADMINS)], (0, *SYMBOLS)[v[1] % 3]
        self.submit(AdminCommand(0, 0, action, symbol, next(self.refs)))

    def restore(self, v: Values) -> None:
        """A snapshot of the router and both matchers, events in flight kept, restored; the
        exchange as it was goes on beside it as the twin."""
        if self.twin is None:
            self.twin = self.ex
        self.mark = len(self.twin.out)
        self.ex = self.ex.restored()

    def restart_with_fees(self, v: Values) -> None:
        """Everything settled (a restart replays its journal first), then the router started
        under other fees: from its snapshot under the new config (the twin: the same records
        replayed), refused where open buys hold another margin."""
        which, kind = SYMBOLS[v[0] % 2], ("swap", "same", "lower", "account")[v[1] % 4]
        fee_account = (FEE, 98, 97)[v[2] % 3] if kind == "account" else self.ex.cfg.risk.fee_account
        self.settle_all()
        fees = list(self.ex.cfg.symbols)
        i = SYMBOLS.index(which)
        maker, taker = fees[i].maker_fee_bps, fees[i].taker_fee_bps
        new = {"swap": (taker, maker), "lower": (maker // 2, taker // 2)}.get(kind, (maker, taker))
        four = [x for s in fees for x in (s.maker_fee_bps, s.taker_fee_bps)]
        four[2 * i : 2 * i + 2] = new
        cfg = config((four[0], four[1], four[2], four[3]), fee_account)
        margin_moves = max(new) != max(maker, taker)
        book = next(m.books[which] for m in self.ex.fast.values() if which in m.books)
        resting_buys = [o for o in (*book.orders.values(), *book.stops.values()) if o.side == BUY]
        sequencer = Sequencer.restore(cfg, self.ex.sequencer.snapshot())
        if margin_moves and resting_buys:
            with pytest.raises(FeeChangeError, match="cannot become"):
                sequencer.fee_changes(self.now)
            return
        records = sequencer.fee_changes(self.now)
        self.ex.sequencer, self.ex.cfg = sequencer, cfg
        self.ex.journal += records
        if self.twin is not None:
            for record in records:
                self.twin.sequencer.replay(record)
            self.twin.journal += records
            self.twin.cfg = cfg
        for record in records:
            assert isinstance(record, FeeSchedule)
            self.bps[record.symbol] = (record.maker_bps, record.taker_bps)

    def teardown(self) -> None:
        """Everything settled, the whole journal replayed from nothing under the config of
        the day: the live state, every trade settled under the fees it was made under."""
        self.settle_all()
        again = replayed(self.ex.cfg, self.ex.journal)
        assert again.sequencer.accounts.state_hash() == self.ex.accounts.state_hash()
        assert [m.state_hash() for m in again.matchers.values()] == [
            m.state_hash() for m in self.ex.fast.values()
        ]

    @invariant()
    def money_holds(self) -> None:
        for ex in self.exchanges():
            ex.check()  # valid, nothing negative, totals == deposits - withdrawals, books agree
        if self.twin is not None:
            assert self.ex.out == self.twin.out[self.mark :]
            assert self.ex.journal == self.twin.journal
            assert self.ex.hashes() == self.twin.hashes()
        ex = self.ex
        for (account, asset), fees in self.collected.items():
            assert ex.accounts.balance(account, asset) == (fees, 0), (account, asset)
        for matcher in ex.fast.values():
            for book in matcher.books.values():
                bids = [o.price for o in book.orders.values() if o.side == BUY]
                asks = [o.price for o in book.orders.values() if o.side == SELL]
                assert not bids or not asks or max(bids) < min(asks), (bids, asks)
        if any(ex.inbox.values()):
            return
        holds: dict[tuple[int, int], int] = {}
        for matcher in ex.fast.values():
            for symbol, book in matcher.books.items():
                quote, _, base, *_ = units(symbol)
                margin = max(self.bps[symbol])
                for o in (*book.orders.values(), *book.stops.values()):
                    slot = (o.account, quote if o.side == BUY else base)
                    amount = need(symbol, o.side, o.price, o.leaves + o.reserve, margin)
                    holds[slot] = holds.get(slot, 0) + amount
        reserved = {(a, s): r for a, s, _, r in ex.accounts.state().balances if r}
        assert reserved == {k: v for k, v in holds.items() if v}


def test_random_streams_conserve_money_across_restores_and_fee_changes() -> None:
    """Scenario: the machine above, 200 examples of 60 steps. Expected: every invariant after
    every step, the restored exchange byte-identical to its twin. Now: so."""
    run_state_machine_as_test(
        MoneyMachine,
        settings=settings(
            max_examples=200,
            stateful_step_count=60,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


# -- the fee changes, pinned ---------------------------------------------------------------------


def restarted_under(ex: Exchange, cfg: RingexConfig) -> list[FeeSchedule]:
    """``ex``'s router restarted under ``cfg`` (everything settled first), as the machine's."""
    ex.settle()
    sequencer = Sequencer.restore(cfg, ex.sequencer.snapshot())
    records = sequencer.fee_changes(0)
    ex.sequencer, ex.cfg = sequencer, cfg
    ex.journal += records
    return records


def test_a_margin_change_is_refused_while_a_stop_buy_waits_and_taken_once_it_is_cancelled() -> None:
    """Scenario: a stop-limit buy waits on ETH-USD (margin 1,000 bps); the router restarts
    with ETH-USD's fees halved. Expected: refused, naming the symbol and the order; after a
    cancel of the stop, taken, and a new buy holds the new margin. Now: so."""
    ex = exchange()
    stop = placed(ex, new_order(3, BUY, 1_010, 4, symbol=ETHUSD, kind=STOP_LIMIT, stop=1_005))
    halved = config((7, 13, 500, 1))
    with pytest.raises(FeeChangeError, match=rf"ETH-USD.*orders {stop.order_id}\)"):
        Sequencer.restore(halved, ex.sequencer.snapshot()).fee_changes(0)
    ex.submit(CancelOrder(0, 0, 1, 3, 7, 3, ETHUSD, stop.order_id))
    assert [r.symbol for r in restarted_under(ex, halved)] == [ETHUSD]
    free = ex.accounts.balance(3, USD)[0]
    placed(ex, new_order(3, BUY, 990, 4, symbol=ETHUSD, ref=8))
    assert ex.accounts.balance(3, USD) == (free - need(ETHUSD, BUY, 990, 4, 500), 3_960 + 198)
    ex.check()


def test_fees_swapped_with_a_buy_resting_settle_its_fill_under_the_new_fees_exactly() -> None:
    """Scenario: a bid of 10 at 990 rests on ETH-USD (maker 1,000 / taker 3 bps); the router
    restarts with them swapped (the margin kept, so allowed); a seller takes the bid. Expected:
    the buyer pays the new maker fee (3 bps), the seller the new taker fee (1,000 bps), the
    fee account gets both floored, nothing stays held, and a replay of the journal from
    nothing under today's config gives the same state. Now: so."""
    ex = exchange()
    bid = placed(ex, new_order(2, BUY, 990, 10, symbol=ETHUSD, ref=1))
    buyer, seller, fee = (ex.accounts.balance(a, USD)[0] for a in (2, 1, FEE))
    held = ex.accounts.balance(2, USD)[1]
    assert held == need(ETHUSD, BUY, 990, 10, 1_000)
    assert [
        (r.symbol, r.maker_bps, r.taker_bps) for r in restarted_under(ex, config((7, 13, 3, 1_000)))
    ] == [(ETHUSD, 3, 1_000)]
    placed(ex, new_order(1, SELL, 990, 10, symbol=ETHUSD, ref=2))
    ex.settle()
    notional = 9_900
    assert ex.accounts.balance(2, USD) == (buyer + held - notional - notional * 3 // 10_000, 0)
    assert ex.accounts.balance(1, USD)[0] == seller + notional - notional * 1_000 // 10_000
    assert ex.accounts.balance(FEE, USD)[0] == fee + notional * 3 // 10_000 + 990
    assert bid.order_id not in {o.order_id for o in ex.accounts.state().orders}
    ex.check()
    again = replayed(ex.cfg, ex.journal)
    assert again.sequencer.accounts.state_hash() == ex.accounts.state_hash()
