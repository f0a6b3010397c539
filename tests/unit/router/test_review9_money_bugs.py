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

import itertools
from collections import deque
from dataclasses import dataclass, field

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.schema import (
    AssetConfig,
    JournalConfig,
    MatcherConfig,
    RingexConfig,
    RiskConfig,
    SymbolConfig,
)
from procs.common.records import (
    AdminCommand,
    CancelOrder,
    CreateAccount,
    MassCancel,
    NewOrder,
    Record,
    Rejected,
    ReplaceOrder,
    Trade,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.types import AdminAction, OrderFlag, OrdType, Side, StpMode, TimeInForce
from procs.core.accounts import MAX_TOTAL, Accounts
from procs.core.engine import Matcher
from procs.core.recovery import Recovered
from procs.core.reference_book import ReferenceBook
from procs.core.sequencer import Sequencer
from procs.core.symbols import symbol_specs
from tests.unit.router.core_rig import (
    ASSETS,
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

BTCUSD, ETHUSD, ETHBTC = 1, 2, 3
SYMBOLS = (BTCUSD, ETHUSD, ETHBTC)
MATCHER = {BTCUSD: "m1", ETHUSD: "m1", ETHBTC: "m2"}
FEE = 99
RICH, POOR = (1, 2), 3  # the poor trader's orders often meet the limits of its balance
TRADERS = (*RICH, POOR)
#: where each symbol's random prices gather
MID = {BTCUSD: 3_000, ETHUSD: 2_000, ETHBTC: 500}
LIMIT, MARKET, STOP, STOP_LIMIT = OrdType.LIMIT, OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
OK = ResultCode.OK


def market_config(
    fees: tuple[int, int, int, int, int, int] = (0, 25, 13, 7, 1_000, 999),
    *,
    max_open: int = 10,
) -> RingexConfig:
    """Three symbols, two matchers, every scale different:

    BTC-USD  m1  tick 1, lot 1    notional = p*q      USD minor; base = q*10**4 BTC minor
    ETH-USD  m1  tick 5, lot 2    notional = p*q*10**3 USD minor; base = q*10**4 ETH minor
                 (limit collar 400 bps)
    ETH-BTC  m2  tick 1, lot 1    notional = p*q*10**2 BTC minor; base = q*10**4 ETH minor
    """
    f = fees
    return RingexConfig(
        assets=[
            AssetConfig(name="USD", id=USD, decimals=6),
            AssetConfig(name="BTC", id=BTC, decimals=8),
            AssetConfig(name="ETH", id=ETH, decimals=6),
        ],
        symbols=[
            SymbolConfig(
                name="BTC-USD",
                id=BTCUSD,
                tick=1,
                price_decimals=2,
                qty_decimals=4,
                max_qty=500,
                base="BTC",
                quote="USD",
                band_bps=500,
                maker_fee_bps=f[0],
                taker_fee_bps=f[1],
            ),
            SymbolConfig(
                name="ETH-USD",
                id=ETHUSD,
                tick=5,
                lot=2,
                min_qty=2,
                max_qty=400,
                price_decimals=1,
                qty_decimals=2,
                base="ETH",
                quote="USD",
                band_bps=300,
                limit_band_bps=400,
                maker_fee_bps=f[2],
                taker_fee_bps=f[3],
            ),
            SymbolConfig(
                name="ETH-BTC",
                id=ETHBTC,
                tick=1,
                price_decimals=4,
                qty_decimals=2,
                max_qty=500,
                base="ETH",
                quote="BTC",
                band_bps=1_000,
                maker_fee_bps=f[4],
                taker_fee_bps=f[5],
            ),
        ],
        matchers=[
            MatcherConfig(name="m1", symbols=["BTC-USD", "ETH-USD"]),
            MatcherConfig(name="m2", symbols=["ETH-BTC"]),
        ],
        risk=RiskConfig(
            max_open_orders=max_open,
            max_order_notional=0,
            max_commands_per_s=1_000_000,
            fee_account=FEE,
        ),
        journal=JournalConfig(fsync="none"),
    )


CFG = market_config()


def units(cfg: RingexConfig, symbol: int) -> tuple[int, int, int, int]:
    """(quote asset, quote minor units per price x qty unit, base asset, base minor units per
    qty unit), from the decimals, as README's units define them."""
    s = next(s for s in cfg.symbols if s.id == symbol)
    quote, base = cfg.asset(s.quote), cfg.asset(s.base)
    return (
        quote.id,
        10 ** (quote.decimals - s.price_decimals - s.qty_decimals),
        base.id,
        10 ** (base.decimals - s.qty_decimals),
    )


def bps_of(cfg: RingexConfig) -> dict[int, tuple[int, int]]:
    return {s.id: (s.maker_fee_bps, s.taker_fee_bps) for s in cfg.symbols}


def need(cfg: RingexConfig, symbol: int, side: Side, price: int, qty: int) -> int:
    """What an order must hold, from the README's rule, computed here independently."""
    _, scale, _, base_scale = units(cfg, symbol)
    if side == SELL:
        return qty * base_scale
    notional = price * qty * scale
    return notional + -(-notional * max(bps_of(cfg)[symbol]) // 10_000)


# -- the exchange, driven -------------------------------------------------------------------------


@dataclass(frozen=True)
class Submit:
    command: Record
    now_ns: int


@dataclass(frozen=True)
class Settle:
    matcher: str
    count: int | None


Action = Submit | Settle


@dataclass
class Run:
    """An exchange, the fee account's expected balances (an oracle from the trades settled)
    and every action it took, so another exchange can take them again."""

    ex: Exchange
    fees: dict[int, int] = field(default_factory=lambda: dict.fromkeys(ASSETS, 0))
    tape: list[Action] = field(default_factory=list)

    def do(self, action: Action) -> Record | None:
        self.tape.append(action)
        if isinstance(action, Settle):
            bps = bps_of(self.ex.cfg)
            for event in self.ex.settle(action.matcher, action.count):
                if isinstance(event, Trade):
                    quote, scale, _, _ = units(self.ex.cfg, event.symbol)
                    notional = event.price * event.qty * scale
                    self.fees[quote] += sum(notional * b // 10_000 for b in bps[event.symbol])
            return None
        return self.ex.submit(action.command, action.now_ns)

    def settle_all(self) -> None:
        for name in self.ex.inbox:
            self.do(Settle(name, None))

    def check(self) -> None:
        ex = self.ex
        ex.check()  # valid state, nothing negative, totals == deposits - withdrawals
        for asset in ASSETS:
            fee_account = ex.cfg.risk.fee_account
            assert ex.accounts.balance(fee_account, asset) == (self.fees[asset], 0), asset
        if any(ex.inbox.values()):
            return
        # nothing in flight: the holds are exactly what the books' orders need
        holds: dict[tuple[int, int], int] = {}
        for matcher in ex.fast.values():
            for symbol, book in matcher.books.items():
                quote, _, base, _ = units(ex.cfg, symbol)
                for o in (*book.orders.values(), *book.stops.values()):
                    asset = quote if o.side == BUY else base
                    amount = need(ex.cfg, symbol, o.side, o.price, o.leaves + o.reserve)
                    holds[(o.account, asset)] = holds.get((o.account, asset), 0) + amount
        reserved = {(a, s): r for a, s, _, r in ex.accounts.state().balances if r}
        assert reserved == {k: v for k, v in holds.items() if v}


def funded_run(cfg: RingexConfig = CFG) -> Run:
    run = Run(Exchange.fresh(cfg))
    key = itertools.count(1)
    for account in TRADERS:
        run.do(Submit(CreateAccount(0, 0, 1, account, 0, account), 0))
        rich = account in RICH
        for asset, amount in ((USD, 10**10), (BTC, 10**9), (ETH, 10**8)):
            given = amount if rich else amount // 10_000
            run.do(Submit(Transfer(0, 0, 1, account, 0, account, asset, given, next(key)), 0))
    run.check()
    return run


OPS: tuple[str, ...] = ("new",) * 12 + ("cancel",) * 3 + ("replace",) * 6 + ("settle",) * 7
OPS += ("deposit", "withdraw", "withdraw", "mass", "admin")
KINDS = (LIMIT,) * 6 + (MARKET, MARKET, STOP, STOP_LIMIT)
TIFS = (GTC, GTC, GTC, DAY, DAY, IOC, FOK)
ADMIN = (AdminAction.RESUME,) * 5 + (AdminAction.HALT, AdminAction.END_OF_SESSION)
Op = tuple[str, tuple[int, ...]]
op_strategy = st.tuples(st.sampled_from(OPS), st.tuples(*(st.integers(0, 9_999),) * 10))


@dataclass
class Driver:
    """Turns abstract ops into commands for the current state: live orders to cancel or
    replace (as their owner), sizes around an order's total, withdrawals around the free
    balance (so of held money too)."""

    run: Run
    now: int = 1
    refs: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    keys: itertools.count[int] = field(default_factory=lambda: itertools.count(10_000))

    def command(self, op: Op) -> Action:
        kind, v = op
        ex = self.run.ex
        self.now += v[9] % 3 * 1_000
        if kind == "settle":
            return Settle(("m1", "m2")[v[0] % 2], (None, 1, 3, 8)[v[1] % 4])
        account = TRADERS[v[0] % 3]
        symbol = SYMBOLS[v[1] % 3]
        spec = next(s for s in ex.cfg.symbols if s.id == symbol)
        mid, tick, lot = MID[symbol] // spec.tick * spec.tick, spec.tick, spec.lot
        price = mid + tick * (v[2] % 21 - 10)
        qty = lot * (1 + v[3] % 15)
        ref = next(self.refs)
        book = ex.fast[MATCHER[symbol]].books[symbol]
        # live in the book, or as the router knows them (maybe done in the book already)
        live = [
            (o.order_id, o.account, o.price, o.filled + o.leaves + o.reserve)
            for o in book.orders.values()
        ]
        live += [(o.order_id, o.account, o.price, o.leaves) for o in book.stops.values()]
        if v[7] % 3 == 0:
            live = [
                (o.order_id, o.account, o.price, o.filled + o.leaves)
                for o in ex.accounts.state().orders
                if o.symbol == symbol
            ]
        command: Record
        if kind in ("cancel", "replace") and live:
            oid, account, at, total = sorted(live)[v[4] % len(live)]
            if kind == "cancel":
                command = CancelOrder(0, 0, 1, account, ref, account, symbol, oid)
            else:
                qty = max(lot, total + lot * (v[5] % 7 - 3))  # up, down, or the same
                price = (at, price, at + tick, at - tick)[v[6] % 4]
                command = ReplaceOrder(0, 0, 1, account, ref, account, symbol, oid, price, qty)
        elif kind in ("new", "cancel", "replace"):
            ord_type = KINDS[v[4] % len(KINDS)]
            tif = TIFS[v[5] % len(TIFS)]
            rests = ord_type in (LIMIT, STOP_LIMIT) and tif in (GTC, DAY)
            stop = mid + tick * (v[6] % 9 - 4) if ord_type in (STOP, STOP_LIMIT) else 0
            if ord_type in (MARKET, STOP):  # mostly the router's cap; now and then one of its own
                price = (0, 0, 0, price, price * 4)[v[7] % 5]
            command = new_order(
                *(account, (BUY, SELL)[v[8] % 2], price, qty),
                symbol=symbol,
                ref=ref,
                kind=ord_type,
                tif=tif,
                flags=OrderFlag.POST_ONLY if rests and ord_type == LIMIT and v[9] % 6 == 0 else 0,
                stp=list(StpMode)[v[7] % 4],
                stop=stop,
                display=min(qty, lot * (0, 0, 1, 2, 4)[v[9] % 5]) if rests else 0,
            )
        elif kind in ("deposit", "withdraw"):
            asset = ASSETS[v[2] % 3]
            free, held = ex.accounts.balance(account, asset)
            amount = (1 + v[3]) * 10 ** (v[4] % 6)
            if kind == "withdraw":  # around the free balance: some of the held money too
                choices = (free - 1, free, free + 1, free + held, held, v[3], v[3] * 1_000)
                amount = -max(1, choices[v[5] % 7] if v[6] % 3 == 0 else v[3])
            command = Transfer(0, 0, 1, account, ref, account, asset, amount, next(self.keys))
        elif kind == "mass":
            whose, where = (0, account)[v[2] % 2], (0, symbol)[v[3] % 2]
            command = MassCancel(0, 0, 1, account, ref, whose, where)
        else:
            command = AdminCommand(0, 0, ADMIN[v[2] % len(ADMIN)], (0, *SYMBOLS)[v[3] % 4], ref)
        return Submit(command, self.now)

    def step(self, op: Op) -> None:
        self.run.do(self.command(op))
        self.run.check()


def copy_of(run: Run, ex: Exchange) -> Run:
    return Run(ex, dict(run.fees), [])


def replayed(cfg: RingexConfig, journal: list[Record]) -> Recovered:
    """The journal through recovery's own path (``Recovered.apply``), from nothing."""
    sequencer = Sequencer(cfg, Accounts(cfg))
    matchers = {m.name: Matcher(symbol_specs(cfg, m.name)) for m in cfg.matchers}
    recovered = Recovered(sequencer, matchers, 0, 0, 0, 0.0)
    for command in journal:
        recovered.apply(command)
    return recovered


def restarted(run: Run, cfg: RingexConfig | None = None) -> Run:
    """A restart: the state rebuilt by replaying the whole journal (every event settled),
    then an exchange that goes on from it, under ``cfg`` when given (its fees journaled
    first, as a starting router journals them)."""
    ex = run.ex
    rec = replayed(ex.cfg, ex.journal)
    cfg = cfg or ex.cfg
    names = list(rec.matchers)
    sequencer = Sequencer.restore(cfg, rec.sequencer.snapshot())
    again = Exchange(
        cfg,
        sequencer,
        rec.matchers,
        {
            n: Matcher.restore(symbol_specs(cfg, n), rec.matchers[n].snapshot(), ReferenceBook)
            for n in names
        },
        {n: deque() for n in names},
        dict(ex.net),
        list(ex.journal),
        [],
        dict(ex.owners),
    )
    again.journal += sequencer.fee_changes(0)
    fees = dict.fromkeys(ASSETS, 0)  # the oracle follows the fee account in force
    if cfg.risk.fee_account == ex.cfg.risk.fee_account:
        fees = dict(run.fees)
    return Run(again, fees, [])


# -- random streams -------------------------------------------------------------------------------


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
    """A resting buy of 10 at 3,000 and a replace to 12 at 3,010: what it adds is the
    new hold less the old (plus 1 for the fee's rounding). A balance one unit short refuses
    it and changes nothing; the exact balance accepts it, and the matcher's answer leaves
    the order holding exactly its new need."""
    old, new = need(CFG, BTCUSD, BUY, 3_000, 10), need(CFG, BTCUSD, BUY, 3_010, 12)
    for short in (1, 0):
        run = _poor(CFG, new + 1 - short)
        buy = run.do(Submit(new_order(3, BUY, 3_000, 10, ref=3), 0))
        assert isinstance(buy, NewOrder)
        run.settle_all()
        assert run.ex.accounts.balance(3, USD) == (new + 1 - short - old, old)
        before = run.ex.accounts.state_hash()
        replace = ReplaceOrder(0, 0, 1, 3, 4, 3, BTCUSD, buy.order_id, 3_010, 12)
        done = run.do(Submit(replace, 0))
        if short:
            assert done is None and run.ex.accounts.state_hash() == before
            continue
        assert isinstance(done, ReplaceOrder)
        assert run.ex.accounts.balance(3, USD) == (0, new + 1)
        run.settle_all()
        run.check()
        assert run.ex.accounts.balance(3, USD) == (1, new)


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
