"""Review 226: a symbol's life across config changes between two runs of an instance (stop,
edit the config, start): listed, delisted with its orders cancelled, listed again, its tick
and lot changed under a resting order, moved to another matcher. Goes beyond review 206 (its
``Rig``: the router and matcher shells over the instance's real rings and journal, stepped in
this thread; a clean stop leaves each matcher's stop snapshot; exchange snapshots are written
as the router's snapshot child writes them).

Reviewed: ``procs/core/recovery.py`` (``recover``'s refusal wrapper, ``restore_matchers``,
``restored``, ``matcher_snapshot``), ``procs/core/engine.py`` (``Matcher.restore``),
``procs/matcher/main.py`` (start), ``procs/common/units.py`` (pins, ``removed_symbols``),
``procs/core/book.py`` (``_replace``), ``procs/common/market_snapshots.py`` and
``procs/marketdata/main.py`` (``resume``), ``procs/dbwriter/replay.py`` (``Follower.restore``).

Faults (all three fixed: their tests say "Was (fixed)"):

1. A delisted symbol listed again forks its matcher's state. ``restore_matchers``
   (``procs/core/recovery.py:388-399``) gives a matcher the exchange snapshot lacks fresh
   books ("its symbols are new"), but a matcher removed with its symbol and configured again
   is not new: its process restores its own old stop snapshot (``matcher_snapshot``), with
   the book's ``next_trade_id``, ``last_price`` and ``halted``. The router's copy, and every
   exchange snapshot written from it, restart them at 1/0/False, so once the matcher restarts
   from such a snapshot (any crash after the next exchange snapshot) it hands out trade ids it
   already gave (a FIX ExecID/REST trade id and the database's trade key repeated), loses the
   band reference and a halt (halted before the delisting, the relisted m2 is halted, and
   after its crash-restart trades again without a resume: seen by hand, not tested here).
   Fix: in ``restore_matchers``, build a matcher the snapshot lacks from
   ``matcher_snapshot(cfg, name, (seq, seq))`` (its own newest snapshot at or before the
   exchange snapshot's seq) when one exists, as its process does; fresh only when none does.
2. The router's refusal of a symbol taken from a matcher that stays says it twice.
   ``restored`` (``recovery.py:402-414``) wraps ``Matcher.restore``'s ValueError with "the
   journal's symbols ETH-USD (id 2) are not in the config: configure them again on m1", then
   ``recover``'s wrapper (``recovery.py:204-212``) sees "symbol" in that text and wraps it once
   more with the same sentence and other advice. Fix: ``restored`` raises a ``ReplayError``
   (or a subclass) that ``recover`` passes through unwrapped (``except ReplayError: raise``
   before the ``ValueError`` clause), or ``recover`` wraps only when ``removed_symbols`` is
   not named in the text already.
3. Listing or delisting one symbol wipes every other symbol's market data.
   ``MarketSnapshots.load`` (``procs/common/market_snapshots.py:81-93``) drops the saved state
   whole when the symbol set differs, so after SOL-USD is added BTC-USD's trade tape, 24h
   ticker and candle history start empty (``/api/klines``, ``@ticker``, ``@trade``'s recent
   trades), though README says the process "resumes from it after a restart". Fix: in
   ``load``, keep each saved ``SymbolMarket`` whose ``MarketSymbol`` is unchanged, start the
   new symbols empty and drop the removed ones (rebuilding ``by_stream``); a version change
   alone discards all.

Found sound: a symbol delisted with its matcher once its orders are cancelled and its
commands are behind an exchange snapshot starts, its buy's hold released (balances whole),
the other symbol trading; a tick and lot change under a resting order keeps it, a size-down
replace at its old off-tick price keeps its place, a replace to another off-tick price is
refused ``PRICE_NOT_ON_TICK`` and the order stays; a symbol moved to another matcher is
refused by ``units_differ`` (what ``ringex run``, the supervisor before each restart and
``failover.py promote`` ask) naming the symbol and both matchers, before anything starts.

Leads, not tests: ``Follower.restore`` (the database writer, ``procs/dbwriter/replay.py:90``)
restores matchers with ``restore_matchers`` too, so after a relist it would file trades
under the fresh copy's trade ids, repeating the pre-delisting trades' ids in PostgreSQL. A
delisted symbol's REST history (GET order, myTrades) reads as refused "unknown symbol" in
``rest_params.py:208`` (its rows staying in PostgreSQL); not run here, nor a FIX
OrderStatusRequest for one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config.schema import AssetConfig, RingexConfig
from procs.common.market_snapshots import MarketSnapshots
from procs.common.records import (
    MassCancel,
    Record,
    Rejected,
    Replaced,
    ReplaceOrder,
    Trade,
)
from procs.common.result_codes import ResultCode
from procs.common.types import Side
from procs.common.units import units_differ
from procs.core.market.state import Update, build_state
from procs.core.recovery import recover, write_snapshot
from procs.marketdata.main import resume
from procs.matcher.main import MatcherShell
from shm.inspect import remove_instance
from tests.unit.supervisor.test_review206_config_change import (
    BTC_USD,
    ETH_USD,
    TRADER,
    USD,
    Rig,
    _matcher,
    _symbol,
    buy,
    changed,
    config,
    funded,
    sell,
    with_symbol,
)


@pytest.fixture
def cfg(instance: str, tmp_path: Path) -> Iterator[RingexConfig]:
    yield config(instance, tmp_path / "var")
    remove_instance(instance)


def delisted(cfg: RingexConfig) -> RingexConfig:
    """``cfg`` without ETH-USD and its matcher m2."""
    return changed(cfg, symbols=cfg.symbols[:1], matchers=cfg.matchers[:1])


def watch(shell: MatcherShell) -> list[Record]:
    """Every event ``shell``'s matcher makes from now on (its ``execute`` wrapped)."""
    seen: list[Record] = []
    execute = shell.matcher.execute

    def recording(command: Record) -> list[Record]:
        events = execute(command)
        seen.extend(events)
        return events

    shell.matcher.execute = recording  # type: ignore[method-assign]
    return seen


def eth_cleared(cfg: RingexConfig) -> Rig:
    """``funded``'s exchange after a trade on ETH-USD (a sell of 4 into its buy) and its rest
    cancelled: nothing rests on ETH-USD."""
    rig = funded(cfg)
    rig.send(1, sell(3, ETH_USD, 1000, 4))
    rig.send(1, MassCancel(0, 0, 1, 1, 900, TRADER, ETH_USD))
    assert rig.router.sequencer.accounts.open_orders(TRADER) == 1  # BTC-USD's buy
    return rig


# -- fault 1: a symbol listed again ----------------------------------------------------------


def test_a_relisted_symbol_never_repeats_a_trade_id(cfg: RingexConfig) -> None:
    """Scenario: ETH-USD trades (trade 1), its orders are cancelled, an exchange snapshot, a
    clean stop; ETH-USD and m2 delisted, a run (a BTC-USD order, an exchange snapshot), a
    stop; ETH-USD and m2 listed again: a trade on it (m2 restored its own old snapshot: trade
    2), an exchange snapshot (the router's copy of m2: fresh books), an order, then m2
    crashes and restarts, and ETH-USD trades again. Expected: that trade's id is new (3), as
    m2's state before the crash. Was (fixed): m2 restarted from the exchange snapshot's copy,
    whose books began fresh at the relisting (``restore_matchers``): it handed out trade id 2
    again (and its last price and a halt were lost the same way)."""
    rig = eth_cleared(cfg)
    write_snapshot(cfg, recover(cfg))
    rig.stop()
    gone = delisted(cfg)
    rig = Rig(gone)
    rig.send(1, buy(10, BTC_USD, 900, 1))
    write_snapshot(gone, recover(gone))
    rig.stop()
    rig = Rig(cfg)  # listed again
    try:
        seen = watch(rig.matchers["m2"])
        rig.send(1, buy(11, ETH_USD, 1000, 2), sell(12, ETH_USD, 1000, 2))
        write_snapshot(cfg, recover(cfg))  # the router's snapshot child, between two batches
        rig.send(1, buy(13, ETH_USD, 1000, 2))
        rig.matchers["m2"].close()  # a crash: no stop snapshot
        rig.matchers["m2"] = MatcherShell(cfg, "m2")
        after = watch(rig.matchers["m2"])
        rig.send(1, sell(14, ETH_USD, 1000, 2))
        ids = [e.trade_id for e in [*seen, *after] if isinstance(e, Trade)]
        assert len(ids) == 2, ids
        assert ids[0] == 2, ids  # m2 went on from its old snapshot: trade 1 was before
        assert ids[1] == 3, f"trade ids after the relisting {ids}: the last was given before"
    finally:
        rig.stop()


# -- fault 2: the router's refusal, said twice --------------------------------------------------


def test_the_refusal_of_a_symbol_taken_from_a_matcher_says_it_once(cfg: RingexConfig) -> None:
    """Scenario: BTC-USD and ETH-USD on m1, ETH-USD's orders cancelled, an exchange snapshot,
    a stop; ETH-USD removed (m1 stays). Expected: the router's recovery (its start, a
    standby's, ``ringex replay``) refuses, naming ETH-USD and m1 once, with one piece of
    advice. Was (fixed): "the journal's symbols ETH-USD (id 2) are not in the config" twice,
    first "configure them again on m1", then "configure them again, on their matchers"."""
    cfg = changed(cfg, matchers=[_matcher("m1", "BTC-USD", "ETH-USD")])
    rig = eth_cleared(cfg)
    write_snapshot(cfg, recover(cfg))
    rig.stop()
    new = changed(cfg, symbols=cfg.symbols[:1], matchers=[_matcher("m1", "BTC-USD")])
    with pytest.raises(ValueError) as refused:
        recover(new)
    said = str(refused.value)
    assert "ETH-USD" in said and "m1" in said, said
    assert said.count("are not in the config") == 1, said


# -- fault 3: market data across a listing ------------------------------------------------------

#: A BTC-USD trade of 0.04 at 10.00 (account 7 with itself).
BTC_TRADE = Trade(5, 1_700_000_000 * 10**9, 1, BTC_USD, 1000, 4, Side.SELL, 1, 7, 1, 6, 3, 7, 1, 0)


def saved_market(cfg: RingexConfig, tmp_path: Path) -> MarketSnapshots:
    """The market-data state of ``cfg`` after ``BTC_TRADE``, saved as the process saves it."""
    state = build_state(cfg)
    out: list[Update] = []
    state.process(BTC_TRADE, out)
    assert out == [BTC_TRADE]
    snapshots = MarketSnapshots(tmp_path / "market" / "state.pickle")
    snapshots.save(state, {})
    return MarketSnapshots(snapshots.path)


def test_listing_a_symbol_keeps_the_other_symbols_market_data(
    cfg: RingexConfig, tmp_path: Path
) -> None:
    """Scenario: the market-data state holds a BTC-USD trade and is saved (as the process
    saves it, and at its stop); SOL-USD is added to the config and the process starts again
    (``resume``). Expected: BTC-USD's tape (recent trades, the ticker's and the candles'
    source) still holds its trade; SOL-USD starts empty. Was (fixed): the whole saved state
    was ignored for the new symbol set ("Starting with empty market state"): BTC-USD's recent
    trades, 24h ticker and candles were gone."""
    saved = saved_market(cfg, tmp_path)
    listed = changed(
        cfg,
        assets=[*cfg.assets, AssetConfig(name="SOL", id=4, decimals=4)],
        symbols=[*cfg.symbols, _symbol("SOL-USD", 3)],
        matchers=[_matcher("m1", "BTC-USD", "SOL-USD"), cfg.matchers[1]],
    )
    again = resume(saved, build_state(listed), [])
    assert set(again.symbols) == {BTC_USD, ETH_USD, 3}
    assert again.symbols[BTC_USD].tape.recent(10) == [BTC_TRADE]


def test_checked_an_unchanged_symbol_set_resumes_its_market_data(
    cfg: RingexConfig, tmp_path: Path
) -> None:
    """Scenario: as above, the config unchanged. Expected: the saved BTC-USD trade is in the
    resumed tape (the baseline fault 3 departs from). Now: so."""
    again = resume(saved_market(cfg, tmp_path), build_state(cfg), [])
    assert again.symbols[BTC_USD].tape.recent(10) == [BTC_TRADE]


# -- sound: delisting, a tick and lot change, a move ---------------------------------------------


def test_checked_a_symbol_delisted_once_cleared_starts_with_balances_whole(
    cfg: RingexConfig,
) -> None:
    """Scenario: ETH-USD's buy partly filled and its rest cancelled, an exchange snapshot
    after its last command, a stop; ETH-USD and m2 removed. Expected: the start carries on;
    no USD is held but BTC-USD's buy's (the ETH-USD hold released); BTC-USD trades; the
    balances are valid. Now: so."""
    rig = eth_cleared(cfg)
    usd = rig.balances()[0]
    write_snapshot(cfg, recover(cfg))
    rig.stop()
    gone = delisted(cfg)
    rig = Rig(gone)
    try:
        assert rig.balances()[0] == usd
        accounts = rig.router.sequencer.accounts
        btc_hold = 1000 * 10 + 1000 * 10 * 20 // 10_000  # 0.10 at 10.00 and its fee margin
        assert accounts.balance(TRADER, USD)[1] == btc_hold
        rig.send(1, sell(20, BTC_USD, 1000, 10))
        assert accounts.open_orders(TRADER) == 0
        assert accounts.balance(TRADER, USD)[1] == 0
        accounts.validate_internal_state()
    finally:
        rig.stop()


def test_checked_a_tick_and_lot_change_keeps_an_off_tick_order_and_judges_replaces(
    cfg: RingexConfig,
) -> None:
    """Scenario: BTC-USD's tick 1 -> 3 and lot 1 -> 2 while a buy of 10 rests at 10.00 (off
    the new tick). Expected: it still rests; a replace down to 6 at 10.00 is accepted and
    keeps its price; a replace to 10.01 (off tick) is refused ``PRICE_NOT_ON_TICK`` and
    leaves it as it was; one to 9.99 (on tick) moves it. Now: so."""
    rig = funded(cfg)
    rig.stop()
    rig = Rig(with_symbol(cfg, "BTC-USD", tick=3, lot=2))
    try:
        book = rig.matchers["m1"].matcher.books[BTC_USD]
        [(oid, order)] = list(book.orders.items())
        seen = watch(rig.matchers["m1"])

        def replace(ref: int, price: int, qty: int) -> Record:
            seen.clear()
            rig.send(1, ReplaceOrder(0, 0, 1, 1, ref, TRADER, BTC_USD, oid, price, qty))
            return seen[0]

        assert isinstance(replace(30, 1000, 6), Replaced)
        assert (order.price, order.leaves) == (1000, 6)
        refused = replace(31, 1001, 6)
        assert isinstance(refused, Rejected) and refused.code == ResultCode.PRICE_NOT_ON_TICK
        assert (order.price, order.leaves) == (1000, 6)
        assert isinstance(replace(32, 999, 6), Replaced)
        assert book.orders[oid].price == 999
        rig.router.sequencer.accounts.validate_internal_state()
    finally:
        rig.stop()


def test_checked_a_symbol_moved_to_another_matcher_is_refused_before_a_start(
    cfg: RingexConfig,
) -> None:
    """Scenario: ETH-USD moved from m2 to m1 (m2 removed) while its buy rests. Expected:
    ``units_differ`` (``ringex run``'s preflight, the supervisor's before each restart,
    ``failover.py promote``'s) refuses naming ETH-USD, m1 and m2, so nothing starts and
    nothing is carried or lost; the old config starts again with both buys resting.
    Now: so."""
    rig = funded(cfg)
    rig.stop()
    said = units_differ(changed(cfg, matchers=[_matcher("m1", "BTC-USD", "ETH-USD")]))
    assert "ETH-USD" in said and "'m1'" in said and "'m2'" in said, said
    rig = Rig(cfg)
    try:
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 2
    finally:
        rig.stop()
