"""A hostile review of symbol rules as journaled state (commit 6c44668): a replay (router
recovery, ``ringex replay``, the database writer's follower, a hot standby, a matcher's own
restart) must execute every order under the rules it met live, whatever the config says at
replay time; a restart with an unchanged config journals nothing new.

The real router and matcher shells run over real rings and a real journal, stepped by hand
(as ``test_router.py`` does), with any number of matchers and a config that changes between
starts."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from config.schema import MatcherConfig, RingexConfig, SymbolConfig
from procs.common.journal import JournalReader
from procs.common.records import (
    CreateAccount,
    FeeSchedule,
    NewOrder,
    Record,
    SymbolRules,
    Transfer,
)
from procs.common.topology import (
    ADMIN_GATEWAY,
    gateway_commands,
    gateway_consumer,
    journal_dir,
    matcher_output,
    rings,
)
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.core import recovery
from procs.core.engine import Matcher
from procs.core.recovery import journal_commands, matchers_at, recover
from procs.core.symbol_rules import changes, record_of, rules_of
from procs.core.symbols import SymbolSpec
from procs.dbwriter.replay import Follower
from procs.matcher.main import MatcherShell
from procs.router.main import RouterShell
from shm import Ring
from tests.unit.router import test_router as router_rig

CODEC = router_rig.CODEC
USD, BTC = router_rig.USD, router_rig.BTC


# -- configs --------------------------------------------------------------------------------


def _symbol(name: str, sid: int, band_bps: int = 500) -> SymbolConfig:
    return SymbolConfig(
        name=name, id=sid, price_decimals=2, qty_decimals=2, base="BTC", quote="USD",
        band_bps=band_bps,
    )  # fmt: skip


def _config(
    instance: str, var: Path, symbols: list[SymbolConfig], matchers: dict[str, list[str]]
) -> RingexConfig:
    base = router_rig.config(instance, var)
    return msgspec.structs.replace(
        base,
        symbols=symbols,
        matchers=[
            MatcherConfig(name=name, symbols=names, snapshot_every=0, batch=64)
            for name, names in matchers.items()
        ],
    )


def _with_band(cfg: RingexConfig, symbol: int, band_bps: int) -> RingexConfig:
    symbols = [
        msgspec.structs.replace(s, band_bps=band_bps) if s.id == symbol else s for s in cfg.symbols
    ]
    return msgspec.structs.replace(cfg, symbols=symbols)


# -- the rig --------------------------------------------------------------------------------


class CrashError(Exception):
    """The router killed at a chosen point of its start."""


class Rig:
    """A router and every configured matcher, stepped by hand over real rings. ``start(cfg)``
    restarts them under ``cfg`` (rings a new matcher needs are made; the others are kept,
    as when only the processes restart)."""

    def __init__(self, cfg: RingexConfig, *, start: bool = True) -> None:
        self.cfg = cfg
        self.made: dict[str, Ring[Record]] = {}
        self.gateways: dict[int, object] = {}
        self.taps: dict[tuple[str, int], object] = {}
        self.router: RouterShell | None = None
        self.matchers: dict[str, MatcherShell] = {}
        if start:
            self.start(cfg)

    def _wire(self) -> None:
        inst = self.cfg.instance
        for spec in rings(self.cfg):
            if spec.name not in self.made:
                self.made[spec.name] = Ring.create(
                    inst, spec.name, CODEC, capacity=spec.capacity,
                    consumers=list(spec.consumers), max_consumers=self.cfg.ring.max_consumers,
                )  # fmt: skip
        for gid in (ADMIN_GATEWAY, *(g.id for g in self.cfg.gateways)):
            if gid not in self.gateways:
                self.gateways[gid] = Ring.attach(inst, gateway_commands(gid), CODEC).producer()
        for g in self.cfg.gateways:
            for m in self.cfg.matchers:
                if (m.name, g.id) not in self.taps:
                    ring = Ring.attach(inst, matcher_output(m.name), CODEC)
                    self.taps[m.name, g.id] = ring.consumer(gateway_consumer(g.id))

    def start(self, cfg: RingexConfig | None = None, *, matchers: bool = True) -> None:
        if cfg is not None:
            self.cfg = cfg
        self._wire()
        self.router = RouterShell(self.cfg)
        if matchers:
            self.start_matchers()

    def start_matchers(self) -> None:
        self.matchers = {m.name: MatcherShell(self.cfg, m.name) for m in self.cfg.matchers}

    def stop(self, *, matchers: bool = True) -> None:
        if self.router is not None:
            self.router.close()
            self.router = None
        if matchers:
            for shell in self.matchers.values():
                shell.close()
            self.matchers = {}

    def pump(self) -> None:
        assert self.router is not None
        while True:
            moved = self.router.step(timeout_s=0.001)
            for shell in self.matchers.values():
                moved += shell.step(timeout_s=0.001)
            for tap in self.taps.values():
                tap.read(4096)  # type: ignore[attr-defined]
            if not moved:
                break
        self.router.settle()

    def send(self, gateway: int, *commands: Record) -> None:
        self.gateways[gateway].publish_batch(list(commands))  # type: ignore[attr-defined]
        self.pump()

    def fund(self, account: int) -> None:
        """Open and fund ``account`` on the admin ring, as ``ringex admin`` does (review 343)."""
        admin = ADMIN_GATEWAY
        self.send(
            admin,
            CreateAccount(0, 0, admin, 1, account * 1000, account),
            Transfer(0, 0, admin, 1, account * 1000 + 1, account, USD, 10**9, account * 10 + 1),
            Transfer(0, 0, admin, 1, account * 1000 + 2, account, BTC, 10**6, account * 10 + 2),
        )

    def live(self) -> dict[str, str]:
        """The live state's hashes: the router's accounts and every matcher process's books."""
        assert self.router is not None
        out = {"router": self.router.sequencer.accounts.state_hash()}
        out |= {f"matcher {n}": s.matcher.state_hash() for n, s in self.matchers.items()}
        return out

    def band(self, symbol: int) -> int:
        for shell in self.matchers.values():
            book = shell.matcher.books.get(symbol)
            if book is not None:
                return book.spec.band_bps
        raise KeyError(symbol)


def _order(
    ref: int, account: int, side: Side, price: int, qty: int, *, symbol: int, gateway: int = 1,
    kind: OrdType = OrdType.LIMIT,
) -> NewOrder:  # fmt: skip
    return NewOrder(
        *(0, 0, gateway, 1, ref, account, symbol, 0),
        side=side,
        ord_type=kind,
        tif=TimeInForce.GTC if kind == OrdType.LIMIT else TimeInForce.IOC,
        flags=0,
        stp=StpMode.NONE,
        price=price,
        qty=qty,
        stop_price=0,
        display_qty=0,
    )


def _band_probe(rig: Rig, symbol: int, ref: int) -> None:
    """Trades whose outcome depends on ``band_bps``: asks at 1,000 and 1,040, a trade at
    1,000, then a market buy of 10 that sweeps 1,040 too under a 5% band, not under 1%."""
    rig.send(1, _order(ref, 7, Side.SELL, 1_000, 10, symbol=symbol))
    rig.send(1, _order(ref + 1, 7, Side.SELL, 1_040, 10, symbol=symbol))
    rig.send(2, _order(ref + 2, 8, Side.BUY, 1_000, 5, symbol=symbol, gateway=2))
    rig.send(2, _order(ref + 3, 8, Side.BUY, 0, 10, symbol=symbol, gateway=2, kind=OrdType.MARKET))
    rig.send(2, _order(ref + 4, 8, Side.BUY, 900, 1, symbol=symbol, gateway=2))  # rests: no cross
    rig.send(1, _order(ref + 5, 7, Side.SELL, 1_100, 1, symbol=symbol))


def _journal(cfg: RingexConfig) -> list[Record]:
    reader = JournalReader(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    return [CODEC.decode_slot(image) for _, image in reader.entries(1)]


def _rules_in_journal(cfg: RingexConfig) -> list[SymbolRules]:
    return [r for r in _journal(cfg) if isinstance(r, SymbolRules)]


def _hashes(recovered: recovery.Recovered) -> dict[str, str]:
    return recovered.state_hashes()


# -- a symbol the config gains later ---------------------------------------------------------

A, B = _symbol("BTC-USD", 1), _symbol("XBT-USD", 2)


@pytest.mark.parametrize("where", ["new matcher", "existing matcher"])
def test_a_symbol_added_later_gets_its_rules_journaled(
    instance: str, tmp_path: Path, where: str
) -> None:
    """Start 1 knows symbol 1 only. Start 2 adds symbol 2 (on a matcher of its own, or on
    m1) and it trades under a 5% band. A replay from the first entry under a config whose
    band for symbol 2 is 1% must give the live state: the journal must say which rules
    symbol 2 traded under. Fees have it (``fees.changes`` compares with the journaled
    schedule: symbol 2's FeeSchedule is journaled); rules do not, since a new book is built
    from the config of the day and so never "differs" from it, and ``every`` is only for a
    journal with no entry at all."""
    one = _config(instance, tmp_path, [A], {"m1": ["BTC-USD"]})
    if where == "new matcher":
        two = _config(instance, tmp_path, [A, B], {"m1": ["BTC-USD"], "m2": ["XBT-USD"]})
    else:
        two = _config(instance, tmp_path, [A, B], {"m1": ["BTC-USD", "XBT-USD"]})
    rig = Rig(one)
    try:
        rig.fund(7)
        rig.fund(8)
        rig.stop()
        rig.start(two)
        assert any(isinstance(r, FeeSchedule) and r.symbol == 2 for r in _journal(two))
        _band_probe(rig, 2, 100)
        live = rig.live()
        rig.stop()

        later = _with_band(two, 2, 100)  # an operator narrows symbol 2's band afterwards
        again = recover(later, use_snapshot=False)
        journaled = [r.symbol for r in _rules_in_journal(two)]
        assert _hashes(again) == live, (
            "a replay under a later config executed symbol 2's orders under that config's "
            f"rules: the journal holds rules for symbols {journaled}"
        )
        assert {r.symbol for r in _rules_in_journal(two)} == {1, 2}
    finally:
        rig.stop()


# -- a router killed between the fees and the rules of its first start -------------------------


def test_a_first_start_killed_after_the_fees_still_gets_every_symbols_rules_journaled(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_journal_fees`` journals and fsyncs, then ``_journal_rules`` does: a router killed
    between the two leaves a journal holding only the fees. The next start's journal is no
    longer empty (``every`` = last_seq == 0 is false) and its fresh books equal the config,
    so no SymbolRules is ever journaled: a later replay takes the config of the day."""
    cfg = _config(instance, tmp_path, [A], {"m1": ["BTC-USD"]})

    def killed(self: RouterShell) -> None:
        self.journal.close()
        raise CrashError("killed after the fees")

    rig = Rig(cfg, start=False)
    with monkeypatch.context() as patch:
        patch.setattr(RouterShell, "_journal_rules", killed)
        with pytest.raises(CrashError):
            rig.start()
    assert [type(r) for r in _journal(cfg)] == [FeeSchedule]
    rig.start()  # started again, same config
    try:
        rig.fund(7)
        rig.fund(8)
        _band_probe(rig, 1, 100)
        live = rig.live()
        rig.stop()
        narrow = _with_band(cfg, 1, 100)
        again = recover(narrow, use_snapshot=False)
        assert _hashes(again) == live, (
            f"journal rules: {_rules_in_journal(cfg)}; replay under a narrower band diverged"
        )
    finally:
        rig.stop()


# -- guards: changes across restarts, every reader of the journal ------------------------------

C = _symbol("BTC-USDX", 3)


def _three(instance: str, var: Path) -> RingexConfig:
    """Symbols 1 and 2 on m1, symbol 3 on m2."""
    return _config(instance, var, [A, B, C], {"m1": ["BTC-USD", "XBT-USD"], "m2": ["BTC-USDX"]})


def test_rules_changed_twice_over_three_restarts_replay_as_live_everywhere(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Symbol 1's band goes 5% -> 1% -> 3% over three restarts (symbol 2, on the same matcher,
    and symbol 3, on another, never change), matchers restarting from their own snapshots
    taken before and after a change. Then: unchanged restarts journal nothing; a replay from
    the start (in one process or two), from a snapshot, the writer's follower (restored from
    its own snapshot taken before the last change), a hot standby (``Recovered.apply``) and
    ``matchers_at`` all give the live state under a 4th config."""
    one = _three(instance, tmp_path)
    rig = Rig(one)
    bands: list[tuple[int, int]] = []  # (seq of a probe's first order, band in force)
    try:
        rig.fund(7)
        rig.fund(8)
        assert [r.symbol for r in _rules_in_journal(one)] == [1, 2, 3]
        bands.append((rig.router.sequencer.next_seq, 500))  # type: ignore[union-attr]
        _band_probe(rig, 1, 100)
        _band_probe(rig, 3, 200)
        rig.matchers["m1"].save_snapshot()  # m1's own snapshot: before any change
        rig.stop()

        two = _with_band(one, 1, 100)
        rig.start(two)
        rig.pump()
        (first,) = _rules_in_journal(two)[3:]
        assert (first.symbol, first.band_bps) == (1, 100)
        assert (rig.band(1), rig.band(2), rig.band(3)) == (100, 500, 500)
        bands.append((rig.router.sequencer.next_seq, 100))  # type: ignore[union-attr]
        _band_probe(rig, 1, 300)
        _band_probe(rig, 2, 400)
        follower_at = rig.router.sequencer.next_seq - 1  # type: ignore[union-attr]
        rig.stop()
        rig.start(two)  # unchanged: nothing journaled
        rig.pump()
        assert len(_rules_in_journal(two)) == 4
        rig.matchers["m1"].save_snapshot()  # m1's own snapshot: after the first change
        rig.stop()

        three = _with_band(one, 1, 300)
        rig.start(three)
        rig.pump()
        assert [(r.symbol, r.band_bps) for r in _rules_in_journal(three)[4:]] == [(1, 300)]
        assert rig.band(1) == 300
        bands.append((rig.router.sequencer.next_seq, 300))  # type: ignore[union-attr]
        _band_probe(rig, 1, 500)
        live = rig.live()
        last = rig.router.sequencer.next_seq - 1  # type: ignore[union-attr]
        rig.stop()
        rig.start(three)
        rig.pump()
        assert len(_rules_in_journal(three)) == 5
        assert rig.live() == live
        rig.stop()

        four = _with_band(_with_band(one, 1, 10_000), 3, 50)
        for use_snapshot in (False, True):
            assert _hashes(recover(four, use_snapshot=use_snapshot)) == live
        with monkeypatch.context() as patch:  # the two-process replay (a forked child)
            patch.setattr(recovery, "PIPELINE_MIN", 1)
            piped = recover(four, use_snapshot=False, pipelined=True)
            assert _hashes(piped) == live

        # the database writer's follower: from the start, and from its own snapshot taken
        # before the last change
        follower = Follower(four)
        for seq, command in enumerate(_journal(four), start=1):
            follower.step(seq, command)
            if seq == follower_at:
                follower.save_snapshot()
        assert follower.sequencer.accounts.state_hash() == live["router"]
        assert {f"matcher {n}": m.state_hash() for n, m in follower.matchers.items()} == {
            k: v for k, v in live.items() if k.startswith("matcher")
        }
        resumed = Follower.restore(four, follower_at)
        assert resumed.seq == follower_at
        for seq, command in enumerate(_journal(four), start=1):
            if seq > follower_at:
                resumed.step(seq, command)
        assert resumed.sequencer.accounts.state_hash() == live["router"]

        # a hot standby: recovered part way, then each entry applied as it arrives
        standby = recover(four, use_snapshot=False, upto=follower_at)
        for command in _journal(four)[follower_at:]:
            standby.apply(command)
        assert _hashes(standby) == live

        # matchers_at: each probe ran under the band its start put in force
        for seq, band in bands:
            rebuilt = matchers_at(four, {"m1": seq, "m2": seq})
            assert rebuilt is not None
            assert rebuilt["m1"].books[1].spec.band_bps == band
            assert rebuilt["m1"].books[2].spec.band_bps == 500
            assert rebuilt["m2"].books[3].spec.band_bps == 500
        rebuilt = matchers_at(four, {"m1": last, "m2": last})
        assert rebuilt is not None and rebuilt["m1"].state_hash() == live["matcher m1"]

        # a matcher restarted alone under the 4th config (own snapshot + journal): the live
        # rules, not the config's
        rig.cfg = four
        rig._wire()
        rig.start_matchers()
        assert rig.band(1) == 300 and rig.band(3) == 500
        assert rig.matchers["m1"].matcher.state_hash() == live["matcher m1"]
    finally:
        rig.stop()


def test_a_router_killed_between_journaling_the_rules_and_publishing_them(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restarted under a narrower band, the router journals the rules and is killed before it
    sends them. The next start (same config) journals nothing more and delivers them to the
    matcher (which kept running); a third start whose matcher ring holds them already sends
    nothing twice."""
    cfg = _three(instance, tmp_path)
    rig = Rig(cfg)
    try:
        rig.fund(7)
        rig.fund(8)
        _band_probe(rig, 1, 100)
        rig.stop(matchers=False)  # the matchers keep running

        narrow = _with_band(cfg, 1, 100)

        def killed(self: RouterShell, recovered_seq: int, last_seq: int) -> None:
            self.close()
            raise CrashError("killed before the publish")

        with monkeypatch.context() as patch:
            patch.setattr(RouterShell, "_resend_unrouted", killed)
            with pytest.raises(CrashError):
                rig.start(narrow, matchers=False)
        assert len(_rules_in_journal(cfg)) == 4
        assert rig.router is None
        for shell in rig.matchers.values():
            shell.step(timeout_s=0.001)
        assert rig.band(1) == 500  # not delivered yet

        rig.start(narrow, matchers=False)
        assert len(_rules_in_journal(cfg)) == 4  # not journaled twice
        rig.pump()
        assert rig.band(1) == 100 and rig.band(3) == 500
        _band_probe(rig, 1, 300)
        live = rig.live()
        rig.stop(matchers=False)

        rig.start(narrow, matchers=False)  # the ring holds the rules: nothing more
        assert len(_rules_in_journal(cfg)) == 4
        rig.pump()
        assert rig.live() == live
        rig.stop()
        assert _hashes(recover(cfg, use_snapshot=False)) == live
    finally:
        rig.stop()


def test_symbol_rules_of_a_symbol_no_longer_configured_and_changes_of_a_missing_one(
    instance: str, tmp_path: Path
) -> None:
    """``changes`` names a configured symbol none was journaled for; a
    SymbolRules for a symbol the config no longer has routes nowhere, is replayed by the
    sequencer, left alone by a matcher's journal feed and ignored by a matcher it reaches."""
    spec = SymbolSpec(symbol=1, band_bps=100)
    assert changes([spec], {}) == [record_of(spec)]
    assert changes([spec], {9: rules_of(SymbolSpec(symbol=9))}) == [record_of(spec)]
    assert changes([], {1: rules_of(spec)}) == []

    cfg = _config(instance, tmp_path, [A], {"m1": ["BTC-USD"]})
    sequencer, matchers = recovery.fresh(cfg)
    gone = msgspec.structs.replace(record_of(SymbolSpec(symbol=2)), seq=1)
    assert sequencer.matchers_for(gone) == ()
    sequencer.replay(gone)
    assert sequencer.next_seq == 2
    before = matchers["m1"].books[1].spec
    matchers["m1"].execute(gone)
    assert matchers["m1"].books[1].spec == before and 2 not in matchers["m1"].books

    # in a journal: a router restarted without symbol 2 (never traded) recovers past it
    two = _config(instance, tmp_path, [A, B], {"m1": ["BTC-USD"], "m2": ["XBT-USD"]})
    rig = Rig(two)
    try:
        rig.fund(7)
        rig.fund(8)
        _band_probe(rig, 1, 100)
        live = rig.live()
        balances = rig.router.sequencer.accounts.state().balances  # type: ignore[union-attr]
        rig.stop()
        assert [r.symbol for r in _rules_in_journal(two)] == [1, 2]
        assert [
            c.symbol
            for c in journal_commands(cfg, "m1", after=0, codec=CODEC)
            if isinstance(c, SymbolRules)
        ] == [1]
        again = recover(cfg, use_snapshot=False)
        assert again.state_hashes()["matcher m1"] == live["matcher m1"]
        # (the accounts' hash covers symbol 2's journaled fees, which it drops: balances)
        assert again.sequencer.accounts.state().balances == balances
    finally:
        rig.stop()


def test_a_matcher_snapshot_newer_than_the_exchange_snapshot_keeps_the_live_rules(
    instance: str, tmp_path: Path
) -> None:
    """An exchange snapshot before a rules change, the matcher's own after it, another change
    since: a restart under yet another config restores the newer (own) snapshot, replays the
    journal after it, and ends with the last journaled rules; ``Matcher.restore`` of either
    snapshot keeps its rules, not the config's."""
    cfg = _three(instance, tmp_path)
    rig = Rig(cfg)
    try:
        rig.fund(7)
        rig.fund(8)
        _band_probe(rig, 1, 100)
        rig.stop()
        recovery.write_snapshot(cfg, recover(cfg))  # the exchange snapshot: band 500
        rig.start(_with_band(cfg, 1, 100))
        rig.pump()
        _band_probe(rig, 1, 300)
        rig.matchers["m1"].save_snapshot()  # own snapshot: band 100, newer
        rig.stop()
        rig.start(_with_band(cfg, 1, 250))
        rig.pump()
        _band_probe(rig, 1, 500)
        live = rig.live()
        rig.stop()
        wide = _with_band(cfg, 1, 10_000)
        found = recovery.matcher_snapshot(wide, "m1")
        assert found is not None
        restored = Matcher.restore(
            [SymbolSpec(symbol=1, band_bps=10_000), SymbolSpec(symbol=2)], found[1]
        )
        assert restored.books[1].spec.band_bps == 100
        rig.cfg = wide
        rig.start_matchers()
        assert rig.band(1) == 250
        assert rig.matchers["m1"].matcher.state_hash() == live["matcher m1"]
        assert _hashes(recover(wide)) == live
    finally:
        rig.stop()
