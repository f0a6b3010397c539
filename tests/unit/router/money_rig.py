"""The rig of the ninth hostile review (``test_review9_money_bugs.py``): a market of three
symbols sharing a quote asset, one crossed (ETH-BTC), two on one matcher, unlike scales and
fees up to the cap; a run of gateway commands through the sequencer and the matchers with
their events settled back (``core_rig.Exchange``), its invariant checks, a random driver,
and copies of a run restored from snapshots or replayed from its journal.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

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
    Record,
    ReplaceOrder,
    Trade,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.types import AdminAction, OrderFlag, OrdType, Side, StpMode, TimeInForce
from procs.core.accounts import Accounts
from procs.core.engine import Matcher
from procs.core.recovery import Recovered
from procs.core.reference_book import ReferenceBook
from procs.core.sequencer import Sequencer
from procs.core.symbols import symbol_specs
from tests.unit.router.core_rig import (
    ASSETS,
    BTC,
    BUY,
    ETH,
    SELL,
    USD,
    Exchange,
    new_order,
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
    again.start_rules()
    fees = dict.fromkeys(ASSETS, 0)  # the oracle follows the fee account in force
    if cfg.risk.fee_account == ex.cfg.risk.fee_account:
        fees = dict(run.fees)
    return Run(again, fees, [])


# -- random streams -------------------------------------------------------------------------------
