"""The rig of the core edge and stream tests: a ``Sequencer`` in front of two matchers, each
run twice (fast and reference book) on the same commands, as the router drives them.

``Exchange`` lets events reach the router with a lag the test chooses. Every command, reply
and event goes through the slot codec. The checks after every step: the two books agree
event for event and by state hash, internal state is valid, no balance is negative, and every
asset's total is exactly what the deposits and withdrawals made it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from config.schema import (
    AssetConfig,
    JournalConfig,
    MatcherConfig,
    RingexConfig,
    RiskConfig,
    SymbolConfig,
)
from procs.common.record_codec import RecordCodec
from procs.common.records import CreateAccount, NewOrder, Record, Transfer
from procs.common.result_codes import ResultCode
from procs.common.types import (
    OrdType,
    Side,
    StpMode,
    TimeInForce,
)
from procs.core.accounts import Accounts
from procs.core.engine import Matcher
from procs.core.reference_book import ReferenceBook
from procs.core.sequencer import Sequencer
from procs.core.symbols import symbol_specs

CODEC = RecordCodec()
I64_MAX = 2**63 - 1
USD, BTC, ETH = 1, 2, 3
ASSETS = (USD, BTC, ETH)
BTCUSD, ETHUSD = 1, 2
FEE = 99
TRADERS = (1, 2, 3)
SECOND = 1_000_000_000
BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, STOP, STOP_LIMIT = OrdType.LIMIT, OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
OK = ResultCode.OK
#: Where each symbol's random prices gather, and its tick.
MID = {BTCUSD: (10_000, 5), ETHUSD: (1_000, 1)}


def exchange_config(
    *,
    rate: int = 1_000_000,
    max_open: int = 6,
    max_notional: int = 3_000_000,
    fees: tuple[int, int, int, int] = (7, 13, 1_000, 3),
    var_dir: str = "var",
) -> RingexConfig:
    """Two symbols on two matchers, with odd fees (maker above taker on ETH-USD) and unlike
    scales, so that rounding and routing both get exercised:

        BTC-USD  tick 5, lot 1, qty 1..50; notional = p*q*10 USD minor, base = q*100 BTC minor
        ETH-USD  tick 1, lot 2, qty 2..60, limit collar 300 bps (the books' general path);
                 notional = p*q USD minor, base = q*100 ETH minor
    """
    btc_maker, btc_taker, eth_maker, eth_taker = fees
    return RingexConfig(
        assets=[
            AssetConfig(name="USD", id=USD, decimals=4),
            AssetConfig(name="BTC", id=BTC, decimals=3),
            AssetConfig(name="ETH", id=ETH, decimals=4),
        ],
        symbols=[
            SymbolConfig(
                name="BTC-USD",
                id=BTCUSD,
                tick=5,
                price_decimals=2,
                qty_decimals=1,
                max_qty=50,
                base="BTC",
                quote="USD",
                band_bps=500,
                maker_fee_bps=btc_maker,
                taker_fee_bps=btc_taker,
            ),
            SymbolConfig(
                name="ETH-USD",
                id=ETHUSD,
                tick=1,
                lot=2,
                min_qty=2,
                max_qty=60,
                price_decimals=2,
                qty_decimals=2,
                base="ETH",
                quote="USD",
                band_bps=333,
                limit_band_bps=300,
                maker_fee_bps=eth_maker,
                taker_fee_bps=eth_taker,
            ),
        ],
        matchers=[
            MatcherConfig(name="m1", symbols=["BTC-USD"]),
            MatcherConfig(name="m2", symbols=["ETH-USD"]),
        ],
        risk=RiskConfig(
            max_open_orders=max_open,
            max_order_notional=max_notional,
            max_commands_per_s=rate,
            fee_account=FEE,
        ),
        journal=JournalConfig(fsync="none"),
        var_dir=var_dir,
    )


def roundtrip(record: Record) -> bytes:
    """``record``'s slot image, after checking that it decodes to the same record."""
    image = CODEC.encode_slot(record)
    assert CODEC.decode_slot(image) == record, record
    return image


# -- the exchange, as the router drives it -------------------------------------------------------


@dataclass(frozen=True)
class Submit:
    command: Record
    now_ns: int


@dataclass(frozen=True)
class Settle:
    matcher: str
    count: int


Action = Submit | Settle


@dataclass
class Exchange:
    """The router's core in front of every matcher of ``cfg``; each matcher runs as a fast
    and a reference book, which must agree event for event. Events wait in ``inbox`` until
    ``settle`` (the router's lag). ``out`` is every reply, command and event as slot images."""

    cfg: RingexConfig
    sequencer: Sequencer
    fast: dict[str, Matcher]
    reference: dict[str, Matcher]
    inbox: dict[str, deque[Record]]
    net: dict[int, int] = field(default_factory=lambda: dict.fromkeys(ASSETS, 0))
    journal: list[Record] = field(default_factory=list)
    out: list[bytes] = field(default_factory=list)
    owners: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> account, symbol

    @classmethod
    def fresh(cls, cfg: RingexConfig) -> Exchange:
        """A new exchange, its journal starting with the fees, as a router's first start
        journals them (``RouterShell._journal_fees``)."""
        names = [m.name for m in cfg.matchers]
        ex = cls(
            cfg,
            Sequencer(cfg, Accounts(cfg)),
            {n: Matcher(symbol_specs(cfg, n)) for n in names},
            {n: Matcher(symbol_specs(cfg, n), ReferenceBook) for n in names},
            {n: deque() for n in names},
        )
        ex.journal += ex.sequencer.fee_changes(0)
        ex.start_rules()
        return ex

    def start_rules(self) -> None:
        """As a starting router: journal the symbol rules the state has not journaled and
        route them (``RouterShell._journal_rules``)."""
        for record in self.sequencer.rules_changes(0):
            self.journal.append(record)
            for name in self.sequencer.matchers_for(record):
                assert self.fast[name].execute(record) == []
                assert self.reference[name].execute(record) == []

    def restored(self) -> Exchange:
        """A copy made the way recovery makes one: from snapshots (events in flight kept)."""
        return Exchange(
            self.cfg,
            Sequencer.restore(self.cfg, self.sequencer.snapshot()),
            {
                n: Matcher.restore(symbol_specs(self.cfg, n), m.snapshot())
                for n, m in self.fast.items()
            },
            {
                n: Matcher.restore(symbol_specs(self.cfg, n), m.snapshot(), ReferenceBook)
                for n, m in self.reference.items()
            },
            {n: deque(q) for n, q in self.inbox.items()},
            dict(self.net),
            list(self.journal),
            [],
            dict(self.owners),
        )

    @property
    def accounts(self) -> Accounts:
        return self.sequencer.accounts

    def do(self, action: Action) -> Record | None:
        """Run one action; returns the sequenced command (None when refused or a settle)."""
        if isinstance(action, Settle):
            self.settle(action.matcher, action.count)
            return None
        decision = self.sequencer.submit(action.command, action.now_ns)
        if decision.reply is not None:
            self.out.append(roundtrip(decision.reply))
        command = decision.command
        if command is None:
            return None
        self.out.append(roundtrip(command))
        self.journal.append(command)
        if isinstance(command, Transfer):
            self.net[command.asset] += command.amount
        if isinstance(command, NewOrder):
            self.owners[command.order_id] = (command.account, command.symbol)
        for name in decision.matchers:
            events = self.fast[name].execute(command)
            assert self.reference[name].execute(command) == events, command
            self.out += map(roundtrip, events)
            self.inbox[name].extend(events)
        return command

    def submit(self, command: Record, now_ns: int = 0) -> Record | None:
        return self.do(Submit(command, now_ns))

    def settle(self, matcher: str | None = None, count: int | None = None) -> list[Record]:
        applied: list[Record] = []
        for name in [matcher] if matcher else list(self.inbox):
            inbox = self.inbox[name]
            while inbox and (count is None or len(applied) < count):
                event = inbox.popleft()
                self.sequencer.apply(event)
                applied.append(event)
        return applied

    def check(self) -> None:
        accounts = self.accounts
        accounts.validate_internal_state()  # includes: nothing negative, holds add up
        for _, _, free, reserved in accounts.state().balances:
            assert free >= 0 and reserved >= 0
        for asset in ASSETS:
            assert accounts.totals(asset) == self.net[asset], asset
        for name, matcher in self.fast.items():
            reference = self.reference[name]
            for book in (*matcher.books.values(), *reference.books.values()):
                book.validate_internal_state()
            assert matcher.state_hash() == reference.state_hash(), name

    def hashes(self) -> tuple[str, ...]:
        return (
            self.accounts.state_hash(),
            *(m.state_hash() for m in self.fast.values()),
            repr(
                (
                    self.sequencer.next_seq,
                    self.sequencer.next_order_id,
                    self.sequencer.state().live_client_ids,
                )
            ),
        )


def new_order(
    account: int,
    side: Side,
    price: int,
    qty: int,
    *,
    symbol: int = BTCUSD,
    ref: int = 0,
    kind: OrdType = LIMIT,
    tif: TimeInForce = GTC,
    flags: int = 0,
    stp: StpMode = StpMode.NONE,
    stop: int = 0,
    display: int = 0,
) -> NewOrder:
    """A gateway's new order: session = account, gateway 1, ``seq`` and id still 0."""
    return NewOrder(
        *(0, 0, 1, account, ref, account, symbol, 0),
        side=side,
        ord_type=kind,
        tif=tif,
        flags=flags,
        stp=stp,
        price=price,
        qty=qty,
        stop_price=stop,
        display_qty=display,
    )


def funded(cfg: RingexConfig, usd: int = 10**10, btc: int = 10**7, eth: int = 10**7) -> Exchange:
    ex = Exchange.fresh(cfg)
    for account in TRADERS:
        assert ex.submit(CreateAccount(0, 0, 1, account, 0, account)) is not None
        for asset, amount in ((USD, usd), (BTC, btc), (ETH, eth)):
            key = account * 10 + asset
            assert ex.submit(Transfer(0, 0, 1, account, 0, account, asset, amount, key))
    return ex


def placed(ex: Exchange, order: NewOrder, now_ns: int = 0) -> NewOrder:
    command = ex.submit(order, now_ns)
    assert isinstance(command, NewOrder), order
    return command
