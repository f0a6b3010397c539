"""Review 278: the config edited between a stop and the next start (or a crash and the
restart) while the journal, snapshots, users, resting orders and balances stay.

Reviewed: ``procs/common/units.py`` (``units_differ``, ``removed_symbols``),
``procs/core/recovery.py`` (``recover``'s refusal wrapper), ``procs/core/accounts.py``
(``restore``, ``validate_internal_state``), ``procs/core/fees.py`` (the fee-change guard),
``procs/core/symbol_rules.py``, ``procs/router/main.py`` (``main``, ``_journal_fees``),
``procs/supervisor/main.py`` and ``preflight.py`` (the start and restart checks),
``procs/gateway/order_fields.py`` (``amounts``: a FIX G), ``config/schema.py``, README
"## Configure".

Rig: review 206's ``Rig`` (the router and matcher shells over the instance's real rings and
journal, stepped in this thread; a clean stop leaves each matcher's stop snapshot), exchange
snapshots written as the router's snapshot child writes them, a real ``ringex run
--detach`` of a TOML profile (review 50's ``exchange_profile``) for what the operator sees,
and review 227's FIX G helpers against ``order_fields.amounts``.

Faults found (each fixed; its test says what it was):

1. An asset removed from the config while balances are held in it is refused, but naming
   neither the asset nor what to do: ``recover``'s wrapper (``procs/core/recovery.py:203-212``)
   names what was removed only for symbols, so a journal-only start dies on "replay of seq 8
   Transfer(...) was refused: UNKNOWN_ASSET" and one from an exchange snapshot on an
   ``AssertionError`` "free of unknown asset 3 (account=7)" (``procs/core/accounts.py:504``,
   an assert doing a refusal's work); ``units_differ`` says "" so ``ringex run``'s preflight
   lets it through to the router's traceback. Fixed: ``removed_assets(cfg)`` beside
   ``removed_symbols``; ``Accounts.restore`` raises ``ValueError`` naming a balance in an
   unconfigured asset; ``recover``'s wrapper blames the removed assets for a refusal that
   names an asset: "the journal's assets ETH (id 3) are not in the config ...: configure
   them again".
2. A fee-margin change while buys rest is refused at start only by the router's traceback:
   ``procs/router/main.py:583`` catches ``UnitsError`` and ``JournalFencedError``, not
   ``FeeChangeError`` (raised from ``_journal_fees``, ``procs/core/sequencer.py:221``), and
   neither ``Supervisor``'s start checks (``procs/supervisor/main.py:119-121``) nor its restart
   checks (``main.py:337-338``) ask, though ``scripts/failover.py:300`` (``fees_refused``) does
   for a promotion. ``ringex run`` says "router exited with 1 while starting; see
   .../router.log"; after a crash with the profile edited the router dies the same way at
   each restart until ``restart_limit``. README ("A change of a symbol's fee margin while buys
   rest on it is refused at start, naming the symbol and the orders") is kept only in the log.
   Fixed: ``router.main`` catches ``FeeChangeError`` with ``UnitsError`` (one line
   logged, exit 2), and the supervisor's message for a child that exits while starting
   carries its log's last line.
3. A FIX G cannot cut an order resting at a price off a since-raised tick at its own price:
   ``order_fields.amounts`` (``procs/gateway/order_fields.py:379``) judges the G's Price (44)
   with ``price_ticks`` under today's tick, so the cut is refused "price 100.01 is not a
   multiple of tick 0.05" though the matcher takes exactly this replace and keeps the order's
   place (``Book._replace`` checks a price only when it changes; review 226) and a REST amend of
   its quantity alone is taken. A G must carry Price for a limit, so a FIX client can only
   cancel such an order. Fixed: ``amounts`` takes a G's Price equal to its order's own
   off the tick; a REST amend's explicit price is parsed off the tick and judged against
   it only where it moves the order (``rest_amend.py``, ``rest_params.on_tick``).

Sound: an asset removed once its balances are withdrawn and its commands are behind an
exchange snapshot starts, the other assets whole; a REST amend of quantity alone passes the
edge whatever the tick (``rest_params.amendment``). Tried and held (already pinned
elsewhere, not repeated): tick/lot/min/max/band changes under a resting order (206, 226,
231), asset decimals, a symbol moved between matchers (206, 226), gateways renamed or
removed with orders (208), ring size, fsync and snapshot cadence (206), fee account on a
user's (237, 242).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.loader import load_profile
from config.schema import RingexConfig
from procs.common.records import Transfer
from procs.common.types import OrdType
from procs.common.units import units_differ
from procs.core.recovery import recover, write_snapshot
from procs.gateway import order_fields as of
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError
from procs.gateway.fix import FixMessage
from shm.inspect import remove_instance
from tests.unit.gateway.test_review112_readme_fix2 import SYM, message, order
from tests.unit.gateway.test_review227_iceberg_cuts import resting
from tests.unit.router.test_router import ADMIN, fund
from tests.unit.supervisor.test_review50_ops import exchange_profile, ringex
from tests.unit.supervisor.test_review206_config_change import (
    BTC,
    ETH,
    TRADER,
    USD,
    Rig,
    buy,
    changed,
    config,
)


@pytest.fixture
def cfg(instance: str, tmp_path: Path) -> Iterator[RingexConfig]:
    yield config(instance, tmp_path / "var")
    remove_instance(instance)


def _without_eth(cfg: RingexConfig) -> RingexConfig:
    """``cfg`` without the ETH asset, its symbol ETH-USD and that symbol's matcher m2."""
    return changed(
        cfg,
        assets=[a for a in cfg.assets if a.name != "ETH"],
        symbols=[s for s in cfg.symbols if s.name != "ETH-USD"],
        matchers=[m for m in cfg.matchers if m.name != "m2"],
    )


def _deposited(cfg: RingexConfig, *, withdraw: bool = False) -> None:
    """A run: account 7 funded in USD and BTC and given 0.01 ETH (then withdrawn if
    ``withdraw``); no order; a clean stop."""
    rig = Rig(cfg)
    try:
        fund(rig, TRADER, usd=10**9, btc=10**6)  # type: ignore[arg-type]  # duck: send
        rig.send(ADMIN, Transfer(0, 0, ADMIN, 1, 777, TRADER, ETH, 10**6, 555))
        if withdraw:
            rig.send(ADMIN, Transfer(0, 0, ADMIN, 1, 778, TRADER, ETH, -(10**6), 556))
        held = rig.router.sequencer.accounts.balance(TRADER, ETH)
        assert held == ((0 if withdraw else 10**6), 0), held
    finally:
        rig.stop()


# -- fault 1: an asset removed while balances are held in it ---------------------------------------


@pytest.mark.parametrize("snapshot", [False, True], ids=["journal-only", "exchange-snapshot"])
def test_an_asset_removed_with_balances_is_refused_naming_it(
    cfg: RingexConfig, snapshot: bool
) -> None:
    """Scenario: account 7 holds 0.01 ETH (no order anywhere); the operator removes the ETH
    asset with ETH-USD and its matcher m2 (after an exchange snapshot, or with the journal
    alone) and starts. Expected: a refusal that names the asset as the config does (ETH)
    and what to do (configure it again, or withdraw its balances first), as a removed
    symbol's does (review 206). Was (fixed): ``units_differ`` says nothing, and the router dies on
    "replay of seq 8 Transfer(...) was refused: UNKNOWN_ASSET" or an ``AssertionError`` "free
    of unknown asset 3 (account=7)"."""
    _deposited(cfg)
    if snapshot:
        write_snapshot(cfg, recover(cfg))
    new = _without_eth(cfg)
    with pytest.raises(Exception) as refused:  # an AssertionError now, a ReplayError
        Rig(new).stop()
    said = str(refused.value)
    assert "ETH" in said and ("configure" in said or "withdraw" in said), (
        units_differ(new),
        said,
    )


def test_sound_an_asset_removed_once_withdrawn_behind_a_snapshot_starts(
    cfg: RingexConfig,
) -> None:
    """An asset whose balances were all withdrawn, its commands behind an exchange snapshot:
    the start without it (ETH, ETH-USD, m2) carries on, USD and BTC whole."""
    _deposited(cfg, withdraw=True)
    write_snapshot(cfg, recover(cfg))
    rig = Rig(_without_eth(cfg))
    try:
        accounts = rig.router.sequencer.accounts
        assert accounts.balance(TRADER, USD) == (10**9, 0)
        assert accounts.balance(TRADER, BTC) == (10**6, 0)
        accounts.validate_internal_state()
    finally:
        rig.stop()


# -- fault 2: a fee-margin change refused only by the router's traceback ---------------------------

_SYMBOLS = """[[symbols]]
name = "BTC-USD"
id = 1
qty_decimals = 4
taker_fee_bps = {taker}
[[symbols]]
name = "ETH-USD"
id = 2
base = "ETH"
qty_decimals = 4
"""


def test_ringex_run_names_a_refused_fee_margin_change(instance: str) -> None:
    """Scenario: a buy rests on BTC-USD (fees 10/20); the operator raises its taker fee to 30
    bps (margin 20 -> 30) in the profile and runs ``ringex run --detach``. Expected: the run
    is refused saying why, as README promises ("refused at start, naming the symbol and the
    orders"): BTC-USD, the fees and "cancel them first", as a units change is (exit 2, the
    reason on stderr). Was (fixed): "instance ... did not start: router exited with 1 while
    starting; see .../router.log"; the reason only at the end of a traceback in that log."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "venue.toml"
        var = str(Path(tmp) / "var")
        exchange_profile(
            path,
            instance,
            var_dir=var,
            supervisor="restart_limit = 2\nready_timeout_s = 60\n",
            sections=_SYMBOLS.format(taker=20),
        )
        rig = Rig(load_profile(str(path)))
        try:
            fund(rig, TRADER, usd=10**9, btc=0)  # type: ignore[arg-type]  # duck: send
            rig.send(1, buy(1, 1, 1000, 10))
            assert rig.router.sequencer.accounts.open_orders(TRADER) == 1
        finally:
            rig.stop()
        path.write_text(path.read_text().replace("taker_fee_bps = 20", "taker_fee_bps = 30"))
        try:
            run = ringex("run", "--config", str(path), "--detach", "--timeout", "60")
        finally:
            ringex("stop", "--config", str(path), "--timeout", "60")
        assert run.returncode != 0, run.stdout
        said = run.stderr
        assert "BTC-USD" in said and "cancel them first" in said, said


# -- fault 3: a FIX G at an order's own price off a raised tick ------------------------------------

RAISED = msgspec.structs.replace(SYM, tick=5)  # 0.01 -> 0.05, as an operator's edit makes it


def _g(qty: str, price: str) -> FixMessage:
    """A plain (no MaxFloor) G of order "o": ``qty`` and ``price``."""
    pairs = [(t, v) for t, v in order("n") if t not in (38, 44)]
    return message("G", (41, "o"), *pairs, (38, qty), (44, price))


def test_a_fix_g_cuts_an_order_resting_off_a_raised_tick_at_its_price() -> None:
    """Scenario: a buy of 5.00 rests at 100.01 (tick 0.01); the operator raises BTC-USD's tick
    to 0.05 and restarts; the client sends a G to 4.00 at 100.01, its own price. Expected:
    taken, (10_001, 0, 400, 0), as the matcher takes it (same price: no price enters the book,
    its place kept) and as a REST amend of the quantity alone is. Was (fixed): a Fault "price 100.01
    is not a multiple of tick 0.05": a FIX client can only cancel the order."""
    was = resting(qty=500, display=0, price=10_001)
    taken = of.amounts(_g("4", "100.01"), RAISED, OrdType.LIMIT, replacing=was)
    assert taken == (10_001, 0, 400, 0), taken


def test_sound_a_g_to_another_off_tick_price_is_refused_and_rest_amends_qty_alone() -> None:
    """A G moving the order to another price off the tick is refused naming the tick (the
    matcher would refuse it ``PRICE_NOT_ON_TICK``); a REST amend of the quantity alone passes
    the edge's parse whatever the tick."""
    was = resting(qty=500, display=0, price=10_001)
    moved = of.amounts(_g("4", "100.02"), RAISED, OrdType.LIMIT, replacing=was)
    assert isinstance(moved, of.Fault) and "tick 0.05" in moved.text, moved
    assert rp.amendment({"quantity": "4"}, RAISED) == (None, 400)


def test_a_rest_amend_restating_its_off_tick_price_is_taken() -> None:
    """Scenario: the order of fault 3, amended over REST with ``price=100.01`` (its own)
    and ``quantity=4``. Expected: parsed (10_001, 400), the tick judged once the order is
    found (``rest_amend.py``: only a price that moves it must be on the tick), and another
    off-tick price refused naming the tick. Was (fixed): refused "price: price 100.01 is not
    a multiple of tick 0.05" before the order was looked at."""
    assert rp.amendment({"price": "100.01", "quantity": "4"}, RAISED) == (10_001, 400)
    with pytest.raises(ApiError) as refused:
        rp.on_tick({"price": "100.02"}, RAISED)
    assert "tick 0.05" in str(refused.value.msg), refused.value
