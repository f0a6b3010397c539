"""Symbol rules as journaled state (``procs/core/symbol_rules.py``): a replay executes every
order under the rules it met live, whatever the config says at the time of the replay."""

from __future__ import annotations

from pathlib import Path

import msgspec

from config.schema import RingexConfig
from procs.common.journal import JournalReader
from procs.common.records import FeeSchedule, NewOrder, Record, SymbolRules
from procs.common.topology import journal_dir
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.core.engine import Matcher, MatcherState
from procs.core.fast_book import FastBook
from procs.core.recovery import recover
from procs.core.reference_book import ReferenceBook
from procs.core.symbol_rules import changes, record_of, rules_of, spec_of_record
from procs.core.symbols import SymbolSpec, symbol_specs
from tests.unit.router import test_router as router_rig

SPEC = SymbolSpec(symbol=1, tick=1, lot=1, band_bps=500)
CODEC = router_rig.CODEC


def _with_band(cfg: RingexConfig, band_bps: int) -> RingexConfig:
    symbols = [msgspec.structs.replace(s, band_bps=band_bps) for s in cfg.symbols]
    return msgspec.structs.replace(cfg, symbols=symbols)


def _journal(cfg: RingexConfig) -> list[Record]:
    reader = JournalReader(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    return [CODEC.decode_slot(image) for _, image in reader.entries(1)]


def _rules(symbol: int, seq: int, spec: SymbolSpec) -> SymbolRules:
    return msgspec.structs.replace(record_of(spec), seq=seq, symbol=symbol)


def test_changes_name_what_differs_and_what_has_none_journaled() -> None:
    wide, narrow = SPEC, msgspec.structs.replace(SPEC, band_bps=100)
    other = SymbolSpec(symbol=2, lot=10)
    journaled = {1: rules_of(wide), 2: rules_of(other)}
    assert changes([wide, other], journaled) == []
    assert changes([narrow, other], journaled) == [record_of(narrow)]
    assert changes([other, wide], {}) == [record_of(wide), record_of(other)]
    assert changes([other, wide], {1: rules_of(wide)}) == [record_of(other)]
    assert spec_of_record(record_of(other)) == other


def test_a_matcher_puts_rules_in_force_between_commands_and_keeps_them_in_its_snapshot() -> None:
    for book_cls in (FastBook, ReferenceBook):
        matcher = Matcher([SPEC, SymbolSpec(symbol=2)], book_cls)
        narrow = msgspec.structs.replace(SPEC, band_bps=100, max_qty=50)
        assert matcher.execute(_rules(1, 1, narrow)) == []
        assert matcher.books[1].spec == narrow and matcher.last_seq == 1
        assert matcher.execute(_rules(1, 1, SPEC)) == []  # seq 1 again: executed already
        assert matcher.books[1].spec == narrow
        assert matcher.execute(_rules(9, 2, SPEC)) == []  # not this matcher's symbol
        assert matcher.last_seq == 2
        # a restore keeps the snapshot's rules, not those it is given (the config's)
        restored = Matcher.restore([SPEC, SymbolSpec(symbol=2)], matcher.snapshot(), book_cls)
        assert restored.books[1].spec == narrow
        assert restored.books[2].spec == SymbolSpec(symbol=2)
        assert restored.state_hash() == matcher.state_hash()
        # and routes its orders to the restored books
        big = NewOrder(
            3, 0, 1, 1, 1, 1, 1, 7, Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 0, StpMode.NONE,
            100, 60, 0, 0,
        )  # fmt: skip
        (rejected,) = restored.execute(big)
        assert type(rejected).__name__ == "Rejected"  # 60 > the rules' max_qty 50
        # a snapshot from before rules were kept: the config's rules
        old = MatcherState(matcher.last_seq, matcher.state().books)
        before = Matcher.restore([SPEC, SymbolSpec(symbol=2)], msgspec.msgpack.encode(old))
        assert before.books[1].spec == SPEC


def test_a_router_journals_the_rules_on_a_new_journal_and_again_when_they_change(
    instance: str, tmp_path: Path
) -> None:
    cfg = router_rig.config(instance, tmp_path)
    ex = router_rig.Exchange(cfg)
    try:
        (configured,) = symbol_specs(cfg, "m1")
        kinds = [type(r) for r in _journal(cfg)]
        assert kinds == [FeeSchedule, SymbolRules]
        assert spec_of_record(_journal(cfg)[1]) == configured  # type: ignore[arg-type]
        router_rig.fund(ex, 7, usd=10**9, btc=10**6)
        router_rig.fund(ex, 8, usd=10**9, btc=10**6)
        ex.send(1, router_rig.order(10, 7, Side.SELL, 1_000, 10))
        ex.send(1, router_rig.order(11, 7, Side.SELL, 1_040, 10))
        ex.send(2, router_rig.order(12, 8, Side.BUY, 1_000, 5, gateway=2))  # last: 1,000
        ex.stop()

        # restarted under a narrower band: one record, routed to the matcher
        ex.cfg = narrow = _with_band(cfg, 100)
        ex.start()
        seq = ex.router.sequencer.next_seq - 1
        last = _journal(cfg)[-1]
        assert isinstance(last, SymbolRules) and (last.seq, last.band_bps) == (seq, 100)
        ex.pump()
        assert ex.matcher.matcher.books[1].spec.band_bps == 100
        market = msgspec.structs.replace(
            router_rig.order(13, 8, Side.BUY, 0, 10, gateway=2), ord_type=OrdType.MARKET
        )
        ex.send(2, market)  # 5 at 1,000; 1,040 is past 1% of 1,000: the rest expires
        live = ex.router.sequencer.accounts.state_hash(), ex.matcher.matcher.state_hash()
        ex.stop()
        ex.start()  # same config: nothing more journaled
        assert ex.router.sequencer.next_seq - 1 == _journal(cfg)[-1].seq  # type: ignore[attr-defined]
        assert sum(isinstance(r, SymbolRules) for r in _journal(cfg)) == 2

        # a replay from the first entry under yet another config: the state the run had
        wide = _with_band(narrow, 1_000)
        again = recover(wide)
        assert again.sequencer.accounts.state_hash() == live[0]
        assert again.matchers["m1"].state_hash() == live[1]
    finally:
        ex.stop()
