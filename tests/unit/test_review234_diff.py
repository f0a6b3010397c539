"""Review 234: a hostile reread of today's changes, part C (review 233 covered the private
stream and ``Market.cap``).

Reviewed: ``procs/core/recovery.py`` (``restore_matchers``, ``matchers_at``,
``matcher_snapshot``, ``from_snapshot``), ``procs/dbwriter/replay.py`` (``Follower.restore``),
``procs/matcher/main.py`` (its start), ``procs/core/book.py`` (``Book._replace``: a cut in
place past a lowered ``iceberg_parts``), ``procs/core/order_checks.py`` (``_protection``).

Fault (fixed: its test says "Was (fixed)"):

1. A relisted matcher whose snapshots at or before the exchange snapshot are all gone is
   rebuilt fresh by the router. ``restore_matchers`` (``procs/core/recovery.py:404-406``)
   asks ``matcher_snapshot(cfg, name, (seq, seq))`` first and calls ``matchers_at`` only
   when that finds one; else the matcher starts with empty books. But a matcher's own store
   keeps its 3 newest snapshots and the exchange store its 3 newest, so after a relisting
   three own snapshots (three clean restarts, or ``snapshot_every`` commands) prune the
   pre-delisting one while the newest exchange snapshot is still one of the delisted run:
   the router (and ``ringex replay``, the dbwriter's ``Follower``, a standby) rebuild the
   relisted matcher fresh, the matcher process goes on from its own newest snapshot (trade
   ids 2, 3, ...). The next exchange snapshot carries the fresh copy, and a crash of the
   matcher after it restarts from there: trade ids given before are given again (the
   database's trade key, FIX ExecIDs), the last price and a halt lost (review 226's fault,
   by another road). Fix: in ``restore_matchers`` drop the ``known`` test and always call
   ``matchers_at(cfg, {name: seq})`` for a matcher the snapshot lacks (it replays the
   journal from its first entry when no snapshot is old enough, which is exact while the
   journal is not archived); when it returns None (archived) refuse with a ReplayError
   naming the matcher rather than start it empty, or (cheaper) start empty only when the
   journal holds no command for the matcher's symbols at all.

Found sound: a cut in place of an iceberg past a lowered ``iceberg_parts`` after a partial
fill leaves ReferenceBook and FastBook in the same state with the same events; a cut to the
filled quantity or below ends it (README: FILLED) alike in both books; a market sell into a
bid below the raised tick (1 with tick 5) and a market buy into an ask off the raised tick
trade at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config.schema import RingexConfig
from procs.common.records import (
    BookLevel,
    OrderDone,
    Record,
    Rejected,
    Replaced,
    SymbolRules,
    Trade,
)
from procs.common.types import DoneReason
from procs.core.engine import Matcher
from procs.core.fast_book import FastBook
from procs.core.recovery import recover, write_snapshot
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec
from procs.matcher.main import MatcherShell
from shm.inspect import remove_instance
from tests.unit.matcher.sweep_rig import BUY, MARKET, SELL, Feed
from tests.unit.supervisor.test_review206_config_change import (
    BTC_USD,
    ETH_USD,
    Rig,
    buy,
    config,
    sell,
)
from tests.unit.supervisor.test_review226_symbol_lifecycle import delisted, eth_cleared, watch

BOOKS: list[type[ReferenceBook] | type[FastBook]] = [ReferenceBook, FastBook]


@pytest.fixture
def cfg(instance: str, tmp_path: Path) -> Iterator[RingexConfig]:
    yield config(instance, tmp_path / "var")
    remove_instance(instance)


# -- fault 1: a relisted matcher, its old snapshots pruned -------------------------------------


def test_a_relisted_matcher_whose_old_snapshots_were_pruned_keeps_its_trade_ids(
    cfg: RingexConfig,
) -> None:
    """Scenario: ETH-USD (m2) trades (trade 1), its orders cancelled, an exchange snapshot,
    a stop; three runs without ETH-USD and m2, each writing an exchange snapshot (the one
    holding m2 pruned: 3 kept); ETH-USD and m2 listed again, three runs each ordering on it
    (the first trades: trade 2) and stopping (three own stop snapshots of m2, its
    pre-delisting one pruned); a fourth start, a BTC-USD order, an exchange snapshot, an
    ETH-USD buy, a crash of m2, a sell into that buy. Expected: the router's copy of m2 is
    the live m2's state, and the trade after the crash is trade 5. Was (fixed): the router's
    recovery rebuilt m2 with fresh books (no snapshot of it at or before the exchange
    snapshot's seq: ``known`` false), its state differed from the live m2's (it replayed
    only trades 2-4, as 1-3), and m2 restarted from the next exchange snapshot handed out
    trade id 4 again (now the journal is replayed from its start for it)."""
    rig = eth_cleared(cfg)
    write_snapshot(cfg, recover(cfg))
    rig.stop()
    gone = delisted(cfg)
    for ref in (20, 21, 22):
        rig = Rig(gone)
        rig.send(1, buy(ref, BTC_USD, 900, 1))
        write_snapshot(gone, recover(gone))
        rig.stop()
    ids: list[int] = []
    for ref in (30, 32, 34):  # listed again: m2 goes on from its own old snapshot
        rig = Rig(cfg)
        seen = watch(rig.matchers["m2"])
        rig.send(1, buy(ref, ETH_USD, 1000, 1), sell(ref + 1, ETH_USD, 1000, 1))
        ids += [e.trade_id for e in seen if isinstance(e, Trade)]
        rig.stop()
    assert ids == [2, 3, 4], ids  # the live m2 never repeats itself
    rig = Rig(cfg)
    try:
        live = rig.matchers["m2"].matcher
        router_copy = recover(cfg).matchers["m2"]
        same = router_copy.state_hash() == live.state_hash()
        rig.send(1, buy(39, BTC_USD, 900, 1))  # the snapshot past m2's own newest
        write_snapshot(cfg, recover(cfg))  # the router's snapshot child
        rig.send(1, buy(40, ETH_USD, 1000, 1))
        rig.matchers["m2"].close()  # a crash: it restarts from the exchange snapshot's copy
        rig.matchers["m2"] = MatcherShell(cfg, "m2")
        after = watch(rig.matchers["m2"])
        rig.send(1, sell(41, ETH_USD, 1000, 1))
        again = [e.trade_id for e in after if isinstance(e, Trade)]
        assert same and again == [5], (
            f"router's m2 equals the live m2: {same}; trade ids after m2's crash {again}"
        )
    finally:
        rig.stop()


# -- sound: Book._replace past lowered parts --------------------------------------------------


def _qty(event: Record) -> int:
    assert isinstance(event, Replaced | BookLevel), event
    return event.qty


def _lowered(matcher: Matcher, f: Feed, parts: int) -> None:
    seq = next(f.seq)
    matcher.execute(SymbolRules(seq, seq * 10, 5, 1, 1, 1, 10**9, parts, 500, 0))


def test_a_cut_past_lowered_parts_after_a_fill_agrees_in_both_books() -> None:
    """Scenario: a sell iceberg of 500 showing 10 at 100 (parts 100); a buy of 25 fills part
    of it (two slices and a half); parts lowered to 10; the owner cuts it to 300, then to
    200, then grows it back to 300 (refused: 28 slices). Expected: both books emit the same
    events and end in the same state (levels, counts, reserve), and a buy of 1000 then takes
    the same trades. Now: so."""
    runs = []
    for book_cls in BOOKS:
        matcher, f = Matcher([SymbolSpec(symbol=5, iceberg_parts=100)], book_cls), Feed(5)
        out = [matcher.execute(f.new(1, SELL, 100, 500, display=10))]
        out.append(matcher.execute(f.new(2, BUY, 100, 25, account=2)))
        _lowered(matcher, f, 10)
        for qty in (300, 200, 300):
            out.append(matcher.execute(f.replace(1, 100, qty)))
        out.append(matcher.execute(f.new(3, BUY, 100, 1000, account=2)))
        runs.append((out, matcher.state_hash()))
    (ref_out, ref_hash), (fast_out, fast_hash) = runs
    assert ref_out == fast_out
    assert ref_hash == fast_hash
    cut, cut_again, grown = ref_out[2:5]
    assert [type(e) for e in cut] == [Replaced, BookLevel] and _qty(cut[0]) == 275
    assert [type(e) for e in cut_again] == [Replaced, BookLevel] and _qty(cut_again[0]) == 175
    assert [type(e) for e in grown] == [Rejected]
    assert sum(e.qty for e in ref_out[5] if isinstance(e, Trade)) == 175


@pytest.mark.parametrize("qty", [25, 20])
def test_a_cut_to_the_filled_quantity_or_below_ends_it_alike_in_both_books(qty: int) -> None:
    """Scenario: an iceberg of 500 showing 10, 25 filled, parts lowered to 10; a replace to
    ``qty`` (25, 20) at its price. Expected: README's "a total at or below what has filled
    ends it (FILLED)": ``Replaced`` (0 open), the level, ``OrderDone`` FILLED, its reserve
    gone, the same in both books; a buy then finds nothing. Now: so."""
    runs = []
    for book_cls in BOOKS:
        matcher, f = Matcher([SymbolSpec(symbol=5, iceberg_parts=100)], book_cls), Feed(5)
        matcher.execute(f.new(1, SELL, 100, 500, display=10))
        matcher.execute(f.new(2, BUY, 100, 25, account=2))
        _lowered(matcher, f, 10)
        events = matcher.execute(f.replace(1, 100, qty))
        assert [type(e) for e in events] == [Replaced, BookLevel, OrderDone], events
        assert _qty(events[0]) == 0 and _qty(events[1]) == 0
        done = events[2]
        assert isinstance(done, OrderDone) and done.reason == DoneReason.FILLED
        took = matcher.execute(f.new(3, BUY, 100, 1000, account=2))
        assert not [e for e in took if isinstance(e, Trade)], took
        runs.append((events, matcher.state_hash()))
    assert runs[0] == runs[1]


# -- sound: _protection at a reference off the raised tick -----------------------------------


def _raised_tick(matcher: Matcher, f: Feed, tick: int) -> None:
    seq = next(f.seq)
    matcher.execute(SymbolRules(seq, seq * 10, 5, tick, 1, 1, 10**9, 100, 100, 0))


@pytest.mark.parametrize("book_cls", BOOKS)
def test_a_market_sell_reaches_a_bid_below_the_raised_tick(
    book_cls: type[ReferenceBook] | type[FastBook],
) -> None:
    """Scenario: a buy of 10 rests at 1 (tick 1); the tick is raised to 5; a market sell of
    10. Expected: it trades 10 at 1 (the protection never short of the best bid). Now: so."""
    matcher, f = Matcher([SymbolSpec(symbol=5, band_bps=100)], book_cls), Feed(5)
    matcher.execute(f.new(1, BUY, 1, 10))
    _raised_tick(matcher, f, 5)
    events = matcher.execute(f.new(2, SELL, 0, 10, account=2, ord_type=MARKET))
    assert [(e.price, e.qty) for e in events if isinstance(e, Trade)] == [(1, 10)], events


@pytest.mark.parametrize("book_cls", BOOKS)
def test_a_market_buy_reaches_an_ask_off_the_raised_tick(
    book_cls: type[ReferenceBook] | type[FastBook],
) -> None:
    """Scenario: a sell of 10 rests at 103 (tick 1); the tick is raised to 5 (band 1%); a
    market buy of 10. Expected: 10 at 103. Now: so."""
    matcher, f = Matcher([SymbolSpec(symbol=5, band_bps=100)], book_cls), Feed(5)
    matcher.execute(f.new(1, SELL, 103, 10))
    _raised_tick(matcher, f, 5)
    events = matcher.execute(f.new(2, BUY, 0, 10, account=2, ord_type=MARKET))
    assert [(e.price, e.qty) for e in events if isinstance(e, Trade)] == [(103, 10)], events
