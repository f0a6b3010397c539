"""Review 206: an operator changes the config between a stop and the next start of an instance
that has a journal, snapshots, resting orders and balances. Each change must either carry on
(the state recovered, nothing acknowledged lost, the same replay) or be refused with a message
naming what changed, its old and new value and what to do; never a start that silently
diverges, nor a crash loop.

Method: an exchange of two matchers (m1: BTC-USD, m2: ETH-USD) over the instance's real rings
and journal, the router and matcher shells stepped in this thread (``Rig``, after
``tests/unit/router/test_router.Exchange``); a clean stop is the router's close and each
matcher's stop snapshot, with the rings removed as ``ringex stop`` removes them; the next start
is the same shells built from the changed config over new rings. Exchange snapshots are written
as the router's snapshot child writes them (``write_snapshot(cfg, recover(cfg))``). Two tests
run a real instance (``ringex run --detach``, ``ringex stop``) for what the operator sees.

Sound (``test_checked_...``): a symbol's tick, lot, min/max size, bands changed while an order
rests (the rules journaled; the order keeps resting and trades; new orders meet the new rules;
a replay from the journal's start is the live state); fees changed without changing the fee
margin and the fee account moved (journaled, later trades settle under them, the same replay);
the fee margin changed while buys rest (refused, naming the fees and "cancel them first"); an
asset's decimals changed (refused by ``units_differ`` and the router, naming asset, key, both
values and what to do); ring capacity, the number of gateways, the fsync policy and the
snapshot cadence changed (state recovered, trading goes on).

Faults (each fixed; its test says what it was):
1. A matcher renamed (m2 -> m3, same symbols) with an exchange snapshot and commands after it:
   ``restore_matchers`` (``procs/core/recovery.py:378-382``) gives a matcher the snapshot lacks
   empty books, assuming its symbols are new, so the router replays the tail against an empty
   ETH-USD book (a trade acknowledged live is replayed as a resting order: balances, holds and
   open orders differ from the live state and from a replay from scratch), while the matcher
   process itself (no own snapshot, ``matcher_snapshot`` finds none of m3) replays the whole
   journal and holds the true book. It starts without a word; the next fill on the order
   raises ``AssertionError`` in the router's settle (a crash, the same again at each restart).
2. A symbol added to an existing matcher (or moved to it from another): every clean stop
   leaves the matcher's own snapshot, and ``Matcher.restore`` (``procs/core/engine.py:152-153``)
   refuses any other symbol set with ``ValueError("snapshot holds symbols [1], this matcher
   owns [1, 2]")``: the process dies at start, ``ringex run`` says only "matcher-m1 exited
   with 1 while starting; see <log>", the log a traceback naming ids, not the symbol, the
   matchers, the config key or what to do. Adding a symbol to a matcher needs no migration
   (its book is new); a move needs one, and a clear refusal before anything starts.
3. A symbol (with its matcher) removed while orders rest on it: refused, but by
   ``Accounts.restore`` ("snapshot order 2 is on unknown symbol 2") or the replay ("replay of
   seq 9 NewOrder(...) was refused: UNKNOWN_SYMBOL"), naming neither the symbol's name nor
   what to do (cancel its orders first, then remove it).
4. The fee-margin refusal (``procs/core/fees.py:71-75``) names the symbol by id ("symbol 2"),
   not by the name the config and the operator use.

Leads, not shown here: a gateway renamed (``[[gateways]] name``, same id) starts with an empty
``var/<instance>/gateway/<new name>/`` (``topology.gateway_dir``: its order log, ClOrdIDs,
ExecID blocks and FIX session stores), nothing checks or carries the old directory over, and
no refusal names it; what a FIX client then meets (sequence numbers reset, a cancel by
OrigClOrdID of an order placed before) needs a real gateway run, not done here. The router
side of that rename (it knows gateways by id) is checked below. Nothing checks matcher
ownership at ``ringex run``'s preflight, as ``units_differ`` does for units: every refusal in
faults 2 and 3 comes from a process that dies at start, its reason only in its log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.edges import GatewayConfig
from config.schema import (
    AssetConfig,
    JournalConfig,
    MatcherConfig,
    RingConfig,
    RingexConfig,
    RiskConfig,
    SymbolConfig,
    WaitConfig,
)
from procs.common.record_codec import RecordCodec
from procs.common.records import NewOrder, Record, Transfer
from procs.common.topology import (
    ADMIN_GATEWAY,
    create_rings,
    gateway_commands,
    gateway_consumer,
    gateway_replies,
    matcher_output,
)
from procs.common.types import Side
from procs.common.units import UnitsError, units_differ
from procs.core.fees import FeeChangeError
from procs.core.recovery import recover, write_snapshot
from procs.matcher.main import MatcherShell
from procs.router.main import RouterShell
from shm import Ring
from shm.inspect import remove_instance
from tests.unit.router.test_router import ADMIN, fund, order
from tests.unit.supervisor.test_review50_ops import ringex

CODEC = RecordCodec()
USD, BTC, ETH = 1, 2, 3
BTC_USD, ETH_USD = 1, 2
TRADER = 7


def _matcher(name: str, *symbols: str) -> MatcherConfig:
    return MatcherConfig(name=name, symbols=list(symbols), snapshot_every=0, batch=64)


def _symbol(name: str, sid: int, **rules: int) -> SymbolConfig:
    base, quote = name.split("-")
    return SymbolConfig(
        name=name, id=sid, price_decimals=2, qty_decimals=2, base=base, quote=quote, **rules
    )


def config(instance: str, var: Path) -> RingexConfig:
    """Two matchers, m1 (BTC-USD) and m2 (ETH-USD), two gateways, fees 10/20 to account 99;
    no snapshot on its own (the tests write them)."""
    return RingexConfig(
        instance=instance,
        ring=RingConfig(capacity=4096),  # a whole matcher batch's events (one thread)
        wait=WaitConfig(strategy="blocking", park_timeout_s=0.005),
        assets=[
            AssetConfig(name="USD", id=USD, decimals=4),
            AssetConfig(name="BTC", id=BTC, decimals=4),
            AssetConfig(name="ETH", id=ETH, decimals=4),
        ],
        symbols=[_symbol("BTC-USD", BTC_USD), _symbol("ETH-USD", ETH_USD)],
        matchers=[_matcher("m1", "BTC-USD"), _matcher("m2", "ETH-USD")],
        gateways=[GatewayConfig(name="gw1", id=1), GatewayConfig(name="gw2", id=2, port=9879)],
        risk=RiskConfig(max_open_orders=50, max_commands_per_s=1_000_000, fee_account=99),
        journal=JournalConfig(fsync="batch", snapshot_every=0, snapshot_every_s=0),
        var_dir=str(var),
    )


def changed(cfg: RingexConfig, **fields: object) -> RingexConfig:
    return msgspec.structs.replace(cfg, **fields)


def with_symbol(cfg: RingexConfig, name: str, **rules: int) -> RingexConfig:
    """``cfg`` with symbol ``name``'s fields replaced (rules, fees)."""
    symbols = [msgspec.structs.replace(s, **rules) if s.name == name else s for s in cfg.symbols]
    return changed(cfg, symbols=symbols)


class Rig:
    """Every matcher of ``cfg`` and the router over new rings, stepped by hand, with the admin
    ring (gateway 0: accounts and money, as ``ringex admin`` sends them) beside the trading
    gateways' rings; ``stop`` is a clean stop (the router closed, each matcher's stop
    snapshot, the rings removed). The admin ring's replies are read as they come
    (``admin_told``), so they never hold its ring."""

    def __init__(self, cfg: RingexConfig) -> None:
        self.cfg = cfg
        inst = cfg.instance
        self.rings = create_rings(cfg, CODEC)
        ids = [ADMIN_GATEWAY, *(g.id for g in cfg.gateways)]
        self.gateways = {g: Ring.attach(inst, gateway_commands(g), CODEC).producer() for g in ids}
        self.replies = {
            g: Ring.attach(inst, gateway_replies(g), CODEC).consumer(gateway_consumer(g))
            for g in ids
        }
        self.admin_told: list[Record] = []
        self.taps = [  # the gateways' reads of the events, drained so they never gate
            Ring.attach(inst, matcher_output(m.name), CODEC).consumer(gateway_consumer(g.id))
            for m in cfg.matchers
            for g in cfg.gateways
        ]
        self.matchers: dict[str, MatcherShell] = {}
        try:
            for m in cfg.matchers:  # as the supervisor's first wave: the books first
                self.matchers[m.name] = MatcherShell(cfg, m.name)
            self.router = RouterShell.__new__(RouterShell)
            self.router.__init__(cfg)  # type: ignore[misc]  # kept: a refusal's journal
        except BaseException:
            journal = getattr(getattr(self, "router", None), "journal", None)
            if journal is not None:  # refused after it opened: released, as by an exit
                journal.close()
            self._close_matchers()
            remove_instance(inst)
            raise
        self.pump()

    def send(self, gateway: int, *commands: Record) -> list[Record]:
        """Publish ``commands`` on ``gateway``'s ring, step until quiet; the router's replies
        to it (as ``Exchange.send``, which ``fund`` calls)."""
        self.gateways[gateway].publish_batch(list(commands))
        self.pump()
        if gateway == ADMIN_GATEWAY:
            told, self.admin_told = self.admin_told, []
            return told + self.replies[gateway].read(4096)
        return self.replies[gateway].read(1024)

    def pump(self) -> None:
        while self.router.step(timeout_s=0.001) + sum(
            m.step(timeout_s=0.001) for m in self.matchers.values()
        ):
            for tap in self.taps:
                tap.read(4096)
            self.admin_told += self.replies[ADMIN_GATEWAY].read(4096)
        self.router.settle()
        self.admin_told += self.replies[ADMIN_GATEWAY].read(4096)

    def stop(self) -> None:
        try:
            self.router.close()
            for shell in self.matchers.values():
                shell.save_snapshot()
        finally:
            self._close_matchers()
            remove_instance(self.cfg.instance)

    def _close_matchers(self) -> None:
        for shell in self.matchers.values():
            shell.close()

    def balances(self) -> tuple[tuple[int, int], ...]:
        accounts = self.router.sequencer.accounts
        return tuple(accounts.balance(TRADER, asset) for asset in (USD, BTC, ETH))


def buy(ref: int, symbol: int, price: int, qty: int) -> NewOrder:
    return msgspec.structs.replace(order(ref, TRADER, Side.BUY, price, qty), symbol=symbol)


def sell(ref: int, symbol: int, price: int, qty: int) -> NewOrder:
    return msgspec.structs.replace(order(ref, TRADER, Side.SELL, price, qty), symbol=symbol)


def funded(cfg: RingexConfig) -> Rig:
    """A started rig, account 7 funded in USD, BTC and ETH, a buy resting on each symbol at
    10.00 (0.10 of each)."""
    rig = Rig(cfg)
    fund(rig, TRADER, usd=10**9, btc=10**6)  # type: ignore[arg-type]  # duck: send
    rig.send(ADMIN, Transfer(0, 0, ADMIN, 1, 777, TRADER, ETH, 10**6, 555))
    rig.send(1, buy(1, BTC_USD, 1000, 10), buy(2, ETH_USD, 1000, 10))
    assert rig.router.sequencer.accounts.open_orders(TRADER) == 2
    return rig


@pytest.fixture
def cfg(instance: str, tmp_path: Path) -> Iterator[RingexConfig]:
    yield config(instance, tmp_path / "var")
    remove_instance(instance)


def _same_replay(cfg: RingexConfig, live: Rig) -> None:
    """A replay from the journal's first entry under ``cfg`` is the live state."""
    scratch = recover(cfg, use_snapshot=False)
    assert scratch.sequencer.accounts.state_hash() == live.router.sequencer.accounts.state_hash()
    for name, shell in live.matchers.items():
        assert scratch.matchers[name].state_hash() == shell.matcher.state_hash(), name


# -- sound: rules, fees, units, plumbing ---------------------------------------------------------


def test_checked_symbol_rules_changed_while_an_order_rests_carry_on(cfg: RingexConfig) -> None:
    """BTC-USD's tick 1 -> 3, lot 1 -> 2, min_qty 1 -> 4, max_qty -> 1000, band_bps 500 -> 100
    and limit_band_bps 0 -> 9000 while a buy of 10 rests at 10.00 (no multiple of the new tick).
    Expected and found: the start journals the rules and carries on; the buy still rests and
    trades with a sell at 9.99 (a multiple of 3); a new buy at 10.00 is refused (tick); the
    balances are valid and a replay from the journal's start is the live state."""
    rig = funded(cfg)
    rig.stop()
    new = with_symbol(
        cfg, "BTC-USD", tick=3, lot=2, min_qty=4, max_qty=1000, band_bps=100, limit_band_bps=9000
    )
    rig = Rig(new)
    try:
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 2
        rig.send(1, sell(3, BTC_USD, 999, 4))
        assert rig.balances()[1] == (1_000_000, 0)  # sold 4 and bought 4 back: BTC whole
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 2  # 6 of the buy rest
        rig.send(1, buy(4, BTC_USD, 1000, 4))  # refused by its matcher: not a tick multiple
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 2
        rig.router.sequencer.accounts.validate_internal_state()
        _same_replay(new, rig)
    finally:
        rig.stop()


def test_checked_fees_changed_keeping_the_margin_and_a_new_fee_account(
    cfg: RingexConfig,
) -> None:
    """ETH-USD's fees 10/20 -> 20/10 (maker/taker: the margin, 20, unchanged) and
    ``risk.fee_account`` 99 -> 98, with buys resting. Expected and found: the start carries on;
    a trade after it pays the new fees to account 98 (99 keeps what it had); a replay from the
    journal's start is the live state."""
    rig = funded(cfg)
    rig.stop()
    new = with_symbol(cfg, "ETH-USD", maker_fee_bps=20, taker_fee_bps=10)
    new = changed(new, risk=msgspec.structs.replace(cfg.risk, fee_account=98))
    rig = Rig(new)
    try:
        rig.send(1, sell(3, ETH_USD, 1000, 10))  # self-trade (STP off): maker 20, taker 10 bps
        accounts = rig.router.sequencer.accounts
        notional = 1000 * 10  # minor units of USD: price 2 decimals, qty 2, USD 4
        assert accounts.balance(98, USD) == (notional * 20 // 10_000 + notional * 10 // 10_000, 0)
        assert accounts.balance(99, USD) == (0, 0)
        accounts.validate_internal_state()
        _same_replay(new, rig)
    finally:
        rig.stop()


def test_checked_a_fee_margin_change_while_buys_rest_is_refused(cfg: RingexConfig) -> None:
    """ETH-USD's taker fee 20 -> 30 bps (margin 20 -> 30) while a buy rests on it. Expected and
    found: the router refuses to start, naming the old and new fees, the order and "cancel them
    first"; the journal is unchanged and the old config starts again."""
    rig = funded(cfg)
    rig.stop()
    with pytest.raises(FeeChangeError) as refused:
        Rig(with_symbol(cfg, "ETH-USD", taker_fee_bps=30))
    said = str(refused.value)
    assert "10/20" in said and "10/30" in said and "cancel them first" in said, said
    rig = Rig(cfg)
    try:
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 2
    finally:
        rig.stop()


def test_the_fee_margin_refusal_names_the_symbol_as_the_config_does(cfg: RingexConfig) -> None:
    """As above. Expected: the refusal names the symbol as the config and the operator do
    (``ETH-USD``). Was (fixed): "symbol 2: the fees 10/20 bps ... cannot become 10/30"
    (fees.py:71)."""
    rig = funded(cfg)
    rig.stop()
    with pytest.raises(FeeChangeError) as refused:
        Rig(with_symbol(cfg, "ETH-USD", taker_fee_bps=30))
    assert "ETH-USD" in str(refused.value), str(refused.value)


def test_checked_an_asset_decimals_change_is_refused_naming_it(cfg: RingexConfig) -> None:
    """USD's decimals 4 -> 6 under a journal with balances. Expected and found:
    ``units_differ`` (what ``ringex run``, the supervisor and the tools check) and the router
    refuse, naming the asset, the key, both values and that a new instance can have others."""
    rig = funded(cfg)
    rig.stop()
    assets = [msgspec.structs.replace(a, decimals=6) if a.id == USD else a for a in cfg.assets]
    new = changed(cfg, assets=assets)
    said = units_differ(new)
    assert "asset USD decimals: 6 in the config, 4 in the journal" in said, said
    assert "a new instance" in said
    with pytest.raises(UnitsError):
        Rig(new)


def test_checked_rings_gateways_fsync_and_snapshot_cadence_changed(cfg: RingexConfig) -> None:
    """Ring capacity 4096 -> 2048, a third gateway (a rename is refused since review 208:
    a gateway's state is kept under its name), ``journal.fsync`` batch ->
    pipelined, ``snapshot_every`` 0 -> 5 and the matchers' ``snapshot_every`` 0 -> 3, after an
    exchange snapshot. Expected and found: the state is recovered (the same balances and open
    orders), trading goes on, and a replay from the journal's start is the live state."""
    rig = funded(cfg)
    before = rig.balances()
    rig.stop()
    write_snapshot(cfg, recover(cfg))
    new = changed(
        cfg,
        ring=RingConfig(capacity=2048),
        gateways=[
            GatewayConfig(name="gw1", id=1),
            GatewayConfig(name="gw2", id=2, port=9879),
            GatewayConfig(name="gw3", id=3, port=9880),
        ],
        journal=JournalConfig(fsync="pipelined", snapshot_every=5, snapshot_every_s=0),
        matchers=[msgspec.structs.replace(m, snapshot_every=3, batch=16) for m in cfg.matchers],
    )
    rig = Rig(new)
    try:
        assert rig.balances() == before
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 2
        rig.send(1, sell(3, BTC_USD, 1000, 10), sell(4, ETH_USD, 1000, 10))
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 0
        rig.router.snapshot_done(60)
        _same_replay(new, rig)
    finally:
        rig.stop()


# -- fault 1: a matcher renamed under an exchange snapshot ----------------------------------------


def test_a_matcher_renamed_after_an_exchange_snapshot_recovers_the_live_state(
    cfg: RingexConfig,
) -> None:
    """m2 renamed m3 (``[[matchers]] name``; same symbol ETH-USD), after an exchange snapshot
    and a trade journaled after it (a sell of 4 against the resting ETH-USD buy). Expected:
    the start recovers the live state (or refuses, naming the matcher), and trading goes on.
    Was (fixed): the router starts with the trade undone in its accounts (3 open orders, the ETH and
    USD of the trade gone), while the m3 process, which replayed the whole journal, holds the
    book with the trade; the next fill on that order raises AssertionError in the router."""
    rig = funded(cfg)
    write_snapshot(cfg, recover(cfg))  # the router's snapshot child, between two batches
    rig.send(1, sell(3, ETH_USD, 1000, 4))
    live = rig.router.sequencer.accounts.state_hash()
    rig.stop()
    new = changed(cfg, matchers=[cfg.matchers[0], _matcher("m3", "ETH-USD")])
    try:
        rig = Rig(new)
    except ValueError as refused:  # refused, naming the matcher: acceptable
        assert "m3" in str(refused) or "m2" in str(refused), str(refused)
        return
    try:
        assert rig.router.sequencer.accounts.state_hash() == live
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 2
        rig.send(1, sell(4, ETH_USD, 1000, 6))  # fills the rest of the buy
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 1
    finally:
        rig.stop()


# -- fault 2: a symbol added to, or moved to, an existing matcher --------------------------------


def test_a_symbol_added_to_an_existing_matcher_starts_and_trades(cfg: RingexConfig) -> None:
    """SOL-USD (a new asset and symbol) added to m1 beside BTC-USD, after a clean stop. Expected:
    the start carries on (the new book is empty, its rules and fees journaled), BTC-USD's
    resting buy still rests, and SOL-USD trades. Was (fixed): ``MatcherShell`` raises ``ValueError:
    snapshot holds symbols [1], this matcher owns [1, 3]`` (every clean stop leaves m1's own
    snapshot), so the matcher exits at each start."""
    rig = funded(cfg)
    rig.stop()
    new = changed(
        cfg,
        assets=[*cfg.assets, AssetConfig(name="SOL", id=4, decimals=4)],
        symbols=[*cfg.symbols, _symbol("SOL-USD", 3)],
        matchers=[_matcher("m1", "BTC-USD", "SOL-USD"), cfg.matchers[1]],
    )
    rig = Rig(new)
    try:
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 2
        rig.send(1, buy(5, 3, 1000, 10))
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 3
    finally:
        rig.stop()


def test_a_symbol_moved_between_matchers_is_refused_naming_it_or_carries_on(
    cfg: RingexConfig,
) -> None:
    """ETH-USD moved from m2 to m1 (m2 removed), a buy resting on it. Expected: the start
    carries its book over (the buy still rests), or refuses naming the symbol, both matchers
    and what to do. Was (fixed): ``ValueError: snapshot holds symbols [1], this matcher owns
    [1, 2]``."""
    rig = funded(cfg)
    rig.stop()
    new = changed(cfg, matchers=[_matcher("m1", "BTC-USD", "ETH-USD")])
    try:
        rig = Rig(new)
    except ValueError as exc:
        said = str(exc)
        assert "ETH-USD" in said and "m1" in said and "m2" in said, said
        return
    try:
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 2
    finally:
        rig.stop()


# -- fault 3: a symbol removed while orders rest on it --------------------------------------------


@pytest.mark.parametrize("snapshot", [False, True], ids=["journal-only", "exchange-snapshot"])
def test_checked_a_symbol_removed_while_orders_rest_is_refused(
    cfg: RingexConfig, snapshot: bool
) -> None:
    """ETH-USD and its matcher m2 removed while a buy rests on it. Expected and found: the
    router refuses to start (its buy's hold would be stuck with no book to cancel it in); the
    old config starts again with the buy resting."""
    rig = funded(cfg)
    rig.stop()
    if snapshot:
        write_snapshot(cfg, recover(cfg))
    new = changed(cfg, symbols=cfg.symbols[:1], matchers=cfg.matchers[:1])
    with pytest.raises(ValueError):
        Rig(new)
    rig = Rig(cfg)
    try:
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 2
    finally:
        rig.stop()


@pytest.mark.parametrize("snapshot", [False, True], ids=["journal-only", "exchange-snapshot"])
def test_a_symbol_removed_while_orders_rest_is_refused_naming_it(
    cfg: RingexConfig, snapshot: bool
) -> None:
    """As above. Expected: the refusal names the symbol (``ETH-USD``) and says to cancel its
    orders before removing it. Was (fixed): "snapshot order 2 is on unknown symbol 2"
    (``Accounts.restore``) or "replay of seq 9 NewOrder(...) was refused: UNKNOWN_SYMBOL"."""
    rig = funded(cfg)
    rig.stop()
    if snapshot:
        write_snapshot(cfg, recover(cfg))
    new = changed(cfg, symbols=cfg.symbols[:1], matchers=cfg.matchers[:1])
    with pytest.raises(ValueError) as refused:
        Rig(new)
    said = str(refused.value)
    assert "ETH-USD" in said and "cancel" in said, said


# -- fault 2 as the operator meets it: ringex run --------------------------------------------------

_REAL = """instance = "{instance}"
var_dir = "{var}"
gateways = []
[marketdata]
enabled = false
[database]
enabled = false
[ring]
capacity = 1024
[wait]
strategy = "blocking"
park_timeout_s = 0.01
[supervisor]
metrics = false
restart_limit = 3
ready_timeout_s = 60
[[symbols]]
name = "BTC-USD"
id = 1
{eth}[[matchers]]
name = "m1"
symbols = {m1}
"""


def test_ringex_run_starts_after_a_symbol_is_added_to_its_matcher(
    instance: str, tmp_path: Path
) -> None:
    """``ringex run --detach``, ``ringex stop`` of one matcher owning BTC-USD; then ETH-USD
    added to it (``[[matchers]] symbols``) and ``ringex run --detach`` again. Expected: it
    starts (exit 0). Was (fixed): exit 1, "matcher-m1 exited with 1 while starting; see
    .../matcher-m1.log", the log a ``ValueError`` traceback naming symbol ids only."""
    profile = tmp_path / "p.toml"
    fields = {"instance": instance, "var": tmp_path / "var"}
    profile.write_text(_REAL.format(m1='["BTC-USD"]', eth="", **fields))
    try:
        first = ringex("run", "--config", str(profile), "--detach", "--timeout", "60")
        assert first.returncode == 0, first.stderr
        stopped = ringex("stop", "--config", str(profile), "--timeout", "60")
        assert stopped.returncode == 0, stopped.stderr
        eth = '[[symbols]]\nname = "ETH-USD"\nid = 2\n'
        profile.write_text(_REAL.format(m1='["BTC-USD", "ETH-USD"]', eth=eth, **fields))
        again = ringex("run", "--config", str(profile), "--detach", "--timeout", "60")
        assert again.returncode == 0, again.stderr
    finally:
        ringex("stop", "--config", str(profile), "--timeout", "60")
        remove_instance(instance)
