"""Review 314: money is conserved end to end.

Reviewed: README (The router and the journal: holds, fees, deposits and withdrawals; Operate:
``balances``, ``deposit``, ``withdraw``, ``end-session``), ``procs/core/accounts.py``
(``reserve_new``, ``reserve_replace``, ``_replace_addition``, ``transfer``,
``validate_internal_state``), ``procs/core/settlement.py`` (``_trade``, ``_fill``,
``_replaced``, ``_rejected``, ``_end``), ``procs/core/money.py`` (``hold``, ``fees``,
``cap``), ``procs/dbwriter/projection.py`` (which balances a batch marks: read, not run).

Rig: review 203's in-process exchange (``tests/unit/router/test_router.py``'s ``Exchange``:
the instance's real rings and journal, a real ``RouterShell`` and ``MatcherShell`` stepped in
one thread) with two symbols on one matcher sharing USD (BTC-USD, ETH-USD), fees of 7/13 bps
(maker/taker: every fee rounds) and a ring of 16,384 (one thread steps both shells), its
gateway tap's events kept. A ``Shadow`` built only from the matchers' events and the
router's transfer answers (trades settled at README's floor(notional x bps / 10,000),
holds recomputed from ``Accepted``/``Replaced``/``Trade`` leaves/``OrderDone``) is compared
with the router's accounts. A seeded workload over four thinly funded users on two
gateways: limit GTC/IOC/FOK/DAY, post-only, market, stop, stop-limit and iceberg orders,
every STP mode, cancels, replaces up and down in price and size, mass cancels, deposits and
withdrawals (refusals for balance frequent; accounts opened and money moved on the admin
ring, gateway 0, as ``ringex admin`` sends them: a trading gateway's ring carries no
operator's command, review 343), up to six commands in flight at once. Router
crashes mid-batch and a matcher restart are the shells closed and made again (recovery from
the journal, as ``test_review_admin_bugs``); ``ringex admin ... --profile x`` runs through
``procs.cli.main`` against the rig (``_Pump``).

Faults found: none. Twelve seeds of 300 steps with a router crash after every 50, and six
with a matcher restart after every 40, were run while reviewing (not kept: minutes); no
unit was created or lost.

Sound: after every step no free or held balance is negative; once quiet, each asset's total
over the users and the fee account equals what the accepted transfers put in; each user's
free + held equals its transfers and trades settled independently; each user's held equals
what its open orders need (buys: notional at the limit or cap plus the ceil of the larger
fee; sells: the base leaves), so no hold leaks after an order is filled, cancelled, expired
(IOC, FOK, market remainder, ``end-session`` for DAY), mass-cancelled or self-trade
cancelled, nor after a replace's reservation is answered; the fee account holds exactly the
floor fees of every trade, and ``withdraw`` of all of them leaves it at 0; a router crash
with commands sequenced and their events unsettled, and a matcher restart, keep all of that,
and a router restarted from the journal alone reaches the same ``state_hash``; ``balances
--json`` shows each account's free and locked exactly as the router holds them.

Leads not shown: the REST ``/api/v3/account``, the private stream's ``balance`` events and
PostgreSQL's ``balances`` table were not compared with the router here (time box; reviews 228
and 290 cover the stream, 285 the database): ``projection.py`` marks the fee account's
quote on every trade and each order event's base and quote, which reads complete. A fee
schedule changed between runs while only sells rest (allowed) and a changed
``risk.fee_account`` were not driven through the workload. The matcher's ``batch`` of 64 in
review 203's ring of 4,096 hung this single-threaded rig (the matcher waiting for room the
router, stepped by the same thread, would have made): a rig limit, not the exchange's.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from config.schema import AssetConfig, MatcherConfig, RingConfig, RingexConfig, SymbolConfig
from procs.common.records import (
    Accepted,
    AccountReply,
    CancelOrder,
    CreateAccount,
    MassCancel,
    NewOrder,
    OrderDone,
    Record,
    Replaced,
    ReplaceOrder,
    Trade,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.types import OrderFlag, OrdType, Side, StpMode, TimeInForce
from procs.core.money import Market
from procs.matcher.main import MatcherShell
from procs.router.main import RouterShell
from tests.unit.router.test_router import ADMIN, Exchange, config
from tests.unit.test_review_admin_bugs import _cli, _Pump, _use_config

USD, BTC, ETH = 1, 2, 3
BTCUSD, ETHUSD = 1, 2
FEE = 99  # the rig's risk.fee_account
USERS = (7, 8, 9, 10)
MAKER_BPS, TAKER_BPS = 7, 13  # odd rates: every fee rounds


def _config(instance: str, var: Path) -> RingexConfig:
    """Review 203's rig's config with two symbols on one matcher, sharing USD, odd fees."""
    base = config(instance, var)
    fees = {"maker_fee_bps": MAKER_BPS, "taker_fee_bps": TAKER_BPS, "band_bps": 500}
    return msgspec.structs.replace(
        base,
        assets=[
            AssetConfig(name="USD", id=USD, decimals=4),
            AssetConfig(name="BTC", id=BTC, decimals=4),
            AssetConfig(name="ETH", id=ETH, decimals=4),
        ],
        symbols=[
            SymbolConfig(
                name="BTC-USD",
                id=BTCUSD,
                price_decimals=2,
                qty_decimals=2,
                base="BTC",
                quote="USD",
                **fees,
            ),
            SymbolConfig(
                name="ETH-USD",
                id=ETHUSD,
                price_decimals=2,
                qty_decimals=2,
                base="ETH",
                quote="USD",
                **fees,
            ),
        ],
        matchers=[
            MatcherConfig(name="m1", symbols=["BTC-USD", "ETH-USD"], snapshot_every=0, batch=16)
        ],
        # one thread steps the router and the matcher: the output ring must hold what the
        # matcher's batches publish before the router's next step reads them
        ring=RingConfig(capacity=16_384),
    )


@dataclass
class Shadow:
    """What the events and answers say, kept apart from the router's own accounts."""

    markets: dict[int, Market]
    net: dict[tuple[int, int], int] = field(default_factory=dict)  # (account, asset) -> sum
    deposited: dict[int, int] = field(default_factory=dict)  # asset -> net of transfers
    fees: int = 0
    open: dict[int, list[int]] = field(default_factory=dict)  # oid -> [acct, sym, side, p, q]
    trades: int = 0

    def add(self, account: int, asset: int, amount: int) -> None:
        self.net[(account, asset)] = self.net.get((account, asset), 0) + amount

    def event(self, record: Record) -> None:
        if isinstance(record, Accepted):
            self.open[record.order_id] = [
                record.account,
                record.symbol,
                int(record.side),
                record.price,
                record.qty,
            ]
        elif isinstance(record, Replaced):
            if record.order_id in self.open:
                self.open[record.order_id][3:] = [record.price, record.qty]
        elif isinstance(record, OrderDone):
            self.open.pop(record.order_id, None)
        elif isinstance(record, Trade):
            self.trades += 1
            market = self.markets[record.symbol]
            notional = market.notional(record.price, record.qty)
            maker_fee = notional * MAKER_BPS // 10_000
            taker_fee = notional * TAKER_BPS // 10_000
            buy_fee, sell_fee = (
                (taker_fee, maker_fee) if record.aggressor == Side.BUY else (maker_fee, taker_fee)
            )
            buyer, seller = (
                (record.taker_account, record.maker_account)
                if record.aggressor == Side.BUY
                else (record.maker_account, record.taker_account)
            )
            self.add(buyer, market.base, record.qty * market.base_scale)
            self.add(buyer, market.quote, -notional - buy_fee)
            self.add(seller, market.base, -record.qty * market.base_scale)
            self.add(seller, market.quote, notional - sell_fee)
            self.fees += buy_fee + sell_fee
            for oid, leaves in (
                (record.maker_order_id, record.maker_leaves),
                (record.taker_order_id, record.taker_leaves),
            ):
                if oid in self.open:
                    self.open[oid][4] = leaves

    def holds(self) -> dict[tuple[int, int], int]:
        held: dict[tuple[int, int], int] = {}
        for account, symbol, side, price, leaves in self.open.values():
            market = self.markets[symbol]
            slot = (account, market.hold_asset(Side(side)))
            held[slot] = held.get(slot, 0) + market.hold(Side(side), price, leaves)
        return {k: v for k, v in held.items() if v}


class Rig(Exchange):
    """Review 203's in-process exchange whose gateway tap keeps the matcher's events."""

    def __init__(self, cfg: RingexConfig) -> None:
        self.shadow = Shadow(Market.all(cfg))
        self.refs = 1_000
        self.pending: dict[tuple[int, int], tuple[int, int, int]] = {}  # (gw, ref) -> transfer
        super().__init__(cfg)

    def pump(self) -> None:
        while self.router.step(timeout_s=0.001) + self.matcher.step(timeout_s=0.001):
            self.drain()
        self.router.settle()
        self.drain()

    def drain(self) -> None:
        for record in self.taps[0].read(4096):
            self.shadow.event(record)
        self.taps[1].read(4096)
        self.admin_told += self.replies[ADMIN].read(4096)  # read by ``answers``

    def answers(self) -> None:
        """Read the admin ring's and both gateways' replies: an accepted transfer counts in
        the shadow."""
        for gw in (ADMIN, 1, 2):
            for reply in self.replies_of(gw):
                if isinstance(reply, AccountReply) and (gw, reply.client_ref) in self.pending:
                    account, asset, amount = self.pending.pop((gw, reply.client_ref))
                    if reply.code == ResultCode.OK:
                        self.shadow.add(account, asset, amount)
                        self.shadow.deposited[asset] = self.shadow.deposited.get(asset, 0) + amount

    def ref(self) -> int:
        self.refs += 1
        return self.refs

    def transfer(self, account: int, asset: int, amount: int) -> Transfer:
        """A deposit or withdrawal, on the admin ring (the operator's alone, review 343)."""
        ref = self.ref()
        self.pending[(ADMIN, ref)] = (account, asset, amount)
        return Transfer(0, 0, ADMIN, 1, ref, account, asset, amount, ref * 7919)


def gateway_of(account: int) -> int:
    return 1 if account in (7, 8) else 2


@pytest.fixture
def rig(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    """Accounts 7-10 trading on two gateways, each opened and funded on the admin ring with
    50 USD, 0.2 BTC and 1 ETH: a few orders' worth, so refusals for balance come often."""
    ex = Rig(_config(instance, tmp_path))
    _use_config(monkeypatch, ex.cfg)
    for account in USERS:
        ex.send(ADMIN, CreateAccount(0, 0, ADMIN, 1, ex.ref(), account))
        ex.send(
            ADMIN,
            ex.transfer(account, USD, 500_000),
            ex.transfer(account, BTC, 2_000),
            ex.transfer(account, ETH, 10_000),
        )
    ex.answers()
    yield ex
    ex.stop()


def new(
    ex: Rig,
    account: int,
    symbol: int,
    side: Side,
    kind: OrdType,
    tif: TimeInForce,
    price: int,
    qty: int,
    *,
    flags: int = 0,
    stp: StpMode = StpMode.NONE,
    stop: int = 0,
    display: int = 0,
) -> NewOrder:
    gw = gateway_of(account)
    return NewOrder(
        *(0, 0, gw, 1, ex.ref(), account, symbol, 0),
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


def random_command(ex: Rig, rnd: random.Random) -> Record:
    """One command of the seeded workload."""
    account = rnd.choice(USERS)
    symbol = rnd.choice((BTCUSD, ETHUSD))
    mid = 1000 if symbol == BTCUSD else 300
    mine = [oid for oid, o in ex.shadow.open.items() if o[0] == account]
    roll = rnd.random()
    gw = gateway_of(account)
    if mine and roll < 0.15:
        oid = rnd.choice(mine)
        return CancelOrder(0, 0, gw, 1, ex.ref(), account, ex.shadow.open[oid][1], oid)
    if mine and roll < 0.35:
        oid = rnd.choice(mine)
        _, sym, _, price, leaves = ex.shadow.open[oid]
        new_price = max(1, price + rnd.randint(-15, 15)) if price else 0
        total = max(1, leaves + rnd.randint(-leaves, 30))
        return ReplaceOrder(0, 0, gw, 1, ex.ref(), account, sym, oid, new_price, total)
    if roll < 0.42:
        asset = rnd.choice((USD, BTC, ETH))
        amount = rnd.randint(1, 20_000) * rnd.choice((1, -1))
        return ex.transfer(account, asset, amount)
    if roll < 0.44:
        return MassCancel(0, 0, gw, 1, ex.ref(), account, rnd.choice((0, symbol)))
    side = rnd.choice((Side.BUY, Side.SELL))
    price = mid + rnd.randint(-20, 20)
    qty = rnd.randint(1, 60)
    stp = rnd.choice(list(StpMode))
    kind = rnd.random()
    if kind < 0.45:
        return new(ex, account, symbol, side, OrdType.LIMIT, TimeInForce.GTC, price, qty, stp=stp)
    if kind < 0.55:
        return new(ex, account, symbol, side, OrdType.LIMIT, TimeInForce.IOC, price, qty, stp=stp)
    if kind < 0.62:
        return new(ex, account, symbol, side, OrdType.LIMIT, TimeInForce.FOK, price, qty, stp=stp)
    if kind < 0.66:
        return new(ex, account, symbol, side, OrdType.LIMIT, TimeInForce.DAY, price, qty, stp=stp)
    if kind < 0.72:
        return new(
            ex,
            account,
            symbol,
            side,
            OrdType.LIMIT,
            TimeInForce.GTC,
            price,
            qty,
            flags=OrderFlag.POST_ONLY,
        )
    if kind < 0.80:
        return new(ex, account, symbol, side, OrdType.MARKET, TimeInForce.IOC, 0, qty, stp=stp)
    if kind < 0.87:
        stop = price + (10 if side == Side.BUY else -10)
        return new(ex, account, symbol, side, OrdType.STOP, TimeInForce.GTC, 0, qty, stop=stop)
    if kind < 0.93:
        stop = price + (10 if side == Side.BUY else -10)
        return new(
            ex, account, symbol, side, OrdType.STOP_LIMIT, TimeInForce.GTC, stop, qty, stop=stop
        )
    display = max(1, qty // 4)
    return new(
        ex,
        account,
        symbol,
        side,
        OrdType.LIMIT,
        TimeInForce.GTC,
        price,
        qty,
        display=display,
        stp=stp,
    )


def assert_conserved(ex: Rig) -> None:
    """Every check of the brief against the router's accounts, from the shadow alone."""
    accounts = ex.router.sequencer.accounts
    everyone = (*USERS, FEE)
    for asset in (USD, BTC, ETH):
        total = sum(sum(accounts.balance(a, asset)) for a in everyone)
        assert total == ex.shadow.deposited.get(asset, 0), f"asset {asset}: {total}"
        for account in everyone:
            free, held = accounts.balance(account, asset)
            assert free >= 0 and held >= 0, (account, asset, free, held)
    holds = ex.shadow.holds()
    for account in USERS:
        for asset in (USD, BTC, ETH):
            free, held = accounts.balance(account, asset)
            assert held == holds.get((account, asset), 0), (account, asset, held, holds)
            assert free + held == ex.shadow.net.get((account, asset), 0), (account, asset)
    assert accounts.balance(FEE, USD) == (ex.shadow.fees, 0)


def run_workload(ex: Rig, seed: int, steps: int, *, batch: int = 6) -> None:
    rnd = random.Random(seed)
    for _ in range(steps):
        commands: dict[int, list[Record]] = {ADMIN: [], 1: [], 2: []}
        for _ in range(rnd.randint(1, batch)):
            command = random_command(ex, rnd)
            commands[command.gateway].append(command)  # type: ignore[attr-defined]
        for gw, cmds in commands.items():
            if cmds:
                ex.gateways[gw].publish_batch(cmds)
        ex.pump()
        ex.answers()
        accounts = ex.router.sequencer.accounts
        for (account, asset), free in accounts._free.items():
            assert free >= 0, (account, asset, free)


# -- sound ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [314, 2718])
def test_sound_a_random_workload_conserves_every_unit(rig: Rig, seed: int) -> None:
    """Limit GTC/IOC/FOK, post-only, market, stop, stop-limit and iceberg orders on two
    symbols sharing USD, with every STP mode, cancels, replaces up and down, mass cancels,
    deposits and withdrawals, several commands in flight at once: after each step no free
    balance is negative; once quiet every asset's total is what the transfers put in, each
    user's holds are what its open orders need, and the fee account holds the floor fees of
    every trade at 7/13 bps."""
    run_workload(rig, seed, 150)
    assert rig.shadow.trades > 50
    assert_conserved(rig)


def crash_router(ex: Rig, rnd: random.Random) -> None:
    """Commands in both gateways' rings and the admin ring (their accounts' transfers), the
    router steps once (some sequenced, their events unsettled), then dies; the supervisor's
    restart recovers from the journal."""
    rings: dict[int, list[Record]] = {ADMIN: [], 1: [], 2: []}
    for gw in (1, 2):
        cmds = [random_command(ex, rnd) for _ in range(5)]
        for c in cmds:
            if gateway_of(c.account) == gw:  # type: ignore[attr-defined]
                rings[c.gateway].append(c)  # type: ignore[attr-defined]
    for ring, mine in rings.items():
        if mine:
            ex.gateways[ring].publish_batch(mine)
    ex.router.step(timeout_s=0.001)
    ex.matcher.step(timeout_s=0.001)
    ex.drain()
    ex.router.close()
    ex.router = RouterShell(ex.cfg)
    ex.pump()
    ex.answers()


def test_sound_a_router_crash_mid_workload_and_a_replay_keep_every_unit(rig: Rig) -> None:
    """The workload, a router crash with commands in flight, more workload, another crash,
    a matcher restart: conserved as without; then a restart of the router from the journal
    alone reaches the same state (``state_hash``)."""
    rnd = random.Random(99)
    run_workload(rig, 11, 60)
    crash_router(rig, rnd)
    run_workload(rig, 12, 60)
    crash_router(rig, rnd)
    run_workload(rig, 13, 30)
    rig.matcher.close()  # the matcher dies too: it recovers its books from the journal
    rig.matcher = MatcherShell(rig.cfg, "m1")
    rig.pump()
    run_workload(rig, 14, 30)
    assert_conserved(rig)
    before = rig.router.sequencer.accounts.state_hash()
    rig.router.close()
    rig.router = RouterShell(rig.cfg)
    rig.pump()
    assert rig.router.sequencer.accounts.state_hash() == before
    assert_conserved(rig)


def dec(minor: int) -> str:
    """Minor units as the CLI shows an asset of 4 decimals."""
    return f"{Decimal(minor).scaleb(-4):.4f}"


def cli(ex: Rig, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``ringex admin ARGV --profile x`` with the rig stepped in a thread; then its events."""
    with _Pump(ex):  # its thread drops the taps' events: there are none but the command's
        code = _cli(["admin", argv[0], "--profile", "x", *argv[1:]])
    out = capsys.readouterr().out
    ex.pump()
    ex.answers()
    return code, out


def test_sound_day_expiry_and_the_admin_cli_show_the_routers_balances(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    """The workload (DAY orders among it), ``end-session`` expiring them, then the fee
    account's fees withdrawn by ``withdraw``: conserved; ``balances --json`` of each account
    shows the router's free and held to the minor unit."""
    run_workload(rig, 5, 120)
    assert rig.shadow.open  # orders rest, some of them DAY
    for symbol in ("BTC-USD", "ETH-USD"):
        assert cli(rig, ["end-session", symbol], capsys)[0] == 0
    assert_conserved(rig)
    fees = rig.shadow.fees
    assert fees > 0
    withdraw = ["withdraw", "--account", str(FEE), "--asset", "USD", "--amount", dec(fees)]
    code, out = cli(rig, withdraw, capsys)
    assert code == 0 and out.endswith("free balance 0.0000\n"), out
    rig.shadow.deposited[USD] -= fees
    rig.shadow.fees = 0
    assert_conserved(rig)
    accounts = rig.router.sequencer.accounts
    for account in (*USERS, FEE):
        code, out = cli(rig, ["balances", "--account", str(account), "--json"], capsys)
        assert code == 0, out
        shown = json.loads(out)["balances"]
        for name, asset in (("USD", USD), ("BTC", BTC), ("ETH", ETH)):
            free, held = accounts.balance(account, asset)
            row = shown.get(name, {"free": "0.0000", "locked": "0.0000"})
            assert (row["free"], row["locked"]) == (dec(free), dec(held)), (account, name, row)
