"""Bugs a hostile review of the router's and the matcher's process shells found; each test
failed on the code it was written against and passes since its fix."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import Accepted, CreateAccount, Heartbeat, MassCancel, Record
from procs.common.topology import journal_dir, matcher_input
from procs.common.types import Side
from procs.core.engine import Matcher
from procs.core.recovery import snapshot_store
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import symbol_specs
from procs.matcher.main import MatcherShell
from shm import Ring
from tests.unit.matcher import test_process as mp
from tests.unit.matcher.differential import SPEC, commands

from .test_router import Exchange, config, fund, order

CODEC = RecordCodec()


def _drain(ex: Exchange) -> list[Record]:
    """Pump the router and the matcher until idle; what gateway 1 read from the matcher."""
    seen: list[Record] = []
    while ex.router.step(timeout_s=0.001) + ex.matcher.step(timeout_s=0.001):
        seen += ex.taps[0].read(4096)
        ex.taps[1].read(4096)
    seen += ex.taps[0].read(4096)
    ex.taps[1].read(4096)
    ex.router.settle()
    return seen


# -- router: a bad record on a gateway's ring ---------------------------------------------------


def test_a_record_of_the_wrong_type_on_a_gateway_ring_does_not_stop_the_router(
    instance: str, tmp_path: Path
) -> None:
    ex = Exchange(config(instance, tmp_path))
    try:
        fund(ex, 7, usd=10**9, btc=0)  # seqs 3, 4 (1, 2: fees, rules, journaled at start)
        ex.replies_of(1)
        stray = Heartbeat(time.time_ns(), 1, 1)  # not a command: log it and go on
        ex.gateways[1].publish_batch([stray, order(10, 7, Side.BUY, 900, 10)])
        _drain(ex)  # TypeError from Sequencer.submit; the record stays uncommitted
        assert ex.router.sequencer.next_seq == 6  # the order behind it was sequenced
    finally:
        ex.stop()


def test_a_field_out_of_range_on_a_gateway_ring_does_not_stop_the_router(
    instance: str, tmp_path: Path
) -> None:
    ex = Exchange(config(instance, tmp_path))
    try:
        fund(ex, 7, usd=10**9, btc=0)
        ex.replies_of(1)
        # Struct construction does not validate, nor does the encoder: side 7 and a negative
        # qty reach the ring, and only the router's decode refuses them.
        bad = msgspec.structs.replace(order(10, 7, Side.BUY, 900, 10), side=7, qty=-1)
        ex.gateways[1].publish_batch([bad, order(11, 7, Side.BUY, 900, 10)])
        _drain(ex)
        assert ex.router.sequencer.next_seq == 6
    finally:
        ex.stop()


# -- matcher: a bad record on its input ring -----------------------------------------------------


def test_a_record_of_the_wrong_type_on_the_matchers_ring_does_not_stop_it(
    instance: str, tmp_path: Path
) -> None:
    cfg = mp.config(instance, tmp_path, batch=64)
    inbound, _outbound = mp.make_rings(cfg)
    shell = MatcherShell(cfg, "m1", replay=[])
    try:
        producer = inbound.producer()
        producer.publish_batch([CreateAccount(1, 1, 1, 1, 1, 7), mp.order(2, SPEC.symbol, 1)])
        while shell.step(timeout_s=0.01):
            pass
        assert shell.matcher.last_seq == 2
        producer.close()
    finally:
        shell.close()


# -- matcher: restarts -------------------------------------------------------------------------


def test_a_matcher_killed_during_its_replay_publishes_no_event_twice(
    instance: str, tmp_path: Path
) -> None:
    cfg = mp.config(instance, tmp_path, snapshot_every=0, batch=64)
    inbound, outbound = mp.make_rings(cfg)
    tap = outbound.consumer("tap")
    journal = list(commands(11, 600, ReferenceBook(SPEC)))
    expected = Matcher(symbol_specs(cfg, "m1"), ReferenceBook).execute_all(journal)

    shell = MatcherShell(cfg, "m1", replay=[])
    mp.run_shell(shell, inbound, journal[:300])
    shell.save_snapshot()  # at seq 300
    mp.run_shell(shell, inbound, journal[300:])  # the events to seq 600 are out
    shell.close()  # then a crash: no snapshot at the end

    def killed() -> Iterator[Record]:  # SIGKILL (or SIGTERM: no handler yet) mid-replay
        yield from journal[:450]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        MatcherShell(cfg, "m1", replay=killed())
    again = MatcherShell(cfg, "m1", replay=journal)
    try:
        got = [e for e in tap.read(1 << 16) if not isinstance(e, Heartbeat)]
        assert len(got) == len(expected)  # every event once
        assert got == expected
    finally:
        again.close()


def test_a_matcher_killed_mid_publish_loses_no_event_of_a_command(
    instance: str, tmp_path: Path
) -> None:
    cfg = mp.config(instance, tmp_path, batch=64)
    inbound = Ring.create(
        instance, matcher_input("m1"), CODEC, capacity=1024, consumers=["matcher"]
    )
    outbound = Ring.create(instance, "m1-out", CODEC, capacity=64, consumers=["tap"])
    tap = outbound.consumer("tap")
    rest = [
        msgspec.structs.replace(mp.order(k, SPEC.symbol, k), price=100 - k) for k in range(1, 41)
    ]  # 40 levels: 80 events to cancel them all
    mass = MassCancel(41, 41, 1, 1, 41, 0, SPEC.symbol)
    journal: list[Record] = [*rest, mass]
    expected = Matcher(symbol_specs(cfg, "m1"), ReferenceBook).execute_all(journal)

    shell = MatcherShell(cfg, "m1", replay=[])
    producer = inbound.producer()
    got: list[Record] = []

    def read_all() -> None:
        while batch := tap.read(64):
            got.extend(batch)
        tap.commit()

    for k in range(0, 40, 10):
        producer.publish_batch(rest[k : k + 10])
        shell.step(timeout_s=0.01)
        read_all()
    producer.publish_batch([mass])

    wait, calls = shell.producer._await_space, []

    def killed(need: int, timeout_s: float | None) -> None:
        calls.append(need)
        if len(calls) > 1:  # the second chunk: the ring is full, killed while it waits
            raise KeyboardInterrupt
        wait(need, timeout_s)  # the first chunk has room (a stale limit, refreshed)

    shell.producer._await_space = killed  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        shell.step(timeout_s=0.01)  # 80 events: 64 out, then the wait for room
    shell.stats.close()
    producer.close()
    read_all()  # the reader catches up: the first 64 events of the mass cancel
    assert sum(_seq(e) == 41 for e in got) == 64
    again = MatcherShell(cfg, "m1", replay=journal)
    try:
        read_all()
        events = [e for e in got if not isinstance(e, Heartbeat)]
        assert len(events) == len(expected)
    finally:
        again.close()


def test_a_matcher_restarted_behind_the_exchange_snapshot_publishes_what_it_missed(
    instance: str, tmp_path: Path
) -> None:
    base = config(instance, tmp_path)
    cfg = msgspec.structs.replace(
        base, journal=msgspec.structs.replace(base.journal, snapshot_every=5)
    )
    ex = Exchange(cfg)
    try:
        fund(ex, 7, usd=10**9, btc=0)  # seqs 3, 4 (1, 2: fees, rules, journaled at start)
        _drain(ex)
        refs = list(range(10, 15))
        ex.gateways[1].publish_batch([order(r, 7, Side.BUY, 900 + r, 10) for r in refs])
        ex.router.step(timeout_s=0.001)  # journaled and sent to m1 (seqs 5..9): a snapshot
        assert ex.router.snapshot_done(30)
        latest = snapshot_store(cfg).latest()
        assert latest is not None and latest[0] == 9
        # the matcher stops before it reads them (SIGTERM: its run() ends with a snapshot)
        ex.matcher.save_snapshot()
        ex.matcher.close()
        ex.matcher = MatcherShell(cfg, "m1")
        seen = _drain(ex)
        accepted = sorted(e.client_ref for e in seen if isinstance(e, Accepted))
        assert accepted == refs  # every order's execution report, once
    finally:
        ex.stop()


def _seq(event: Record) -> int:
    return getattr(event, "seq", -1)


# -- router: the snapshot child ----------------------------------------------------------------


def _slow_snapshot(cfg: object, upto: int) -> None:
    time.sleep(1.5)  # a long replay


def test_a_router_restarted_while_its_snapshot_child_runs_opens_its_journal(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("procs.router.snapshots.snapshot_job", _slow_snapshot)
    base = config(instance, tmp_path)
    cfg = msgspec.structs.replace(
        base, journal=msgspec.structs.replace(base.journal, snapshot_every=2)
    )
    ex = Exchange(cfg)
    try:
        fund(ex, 7, usd=10**9, btc=0)  # 2 commands: a snapshot child starts
        assert not ex.router.snapshot_done(0)
        ex.router.journal.close()  # the router dies; its snapshot child goes on
        writer = JournalWriter(  # what the restarted router opens first
            journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
        )
        writer.close()
    finally:
        ex.router.snapshot_done(10)
        ex.stop()
