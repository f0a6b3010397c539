"""The matcher engine and its process shell over real rings: symbol routing, snapshots, and
recovery by snapshot + journal replay without duplicate or missing events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.schema import MatcherConfig, RingConfig, RingexConfig, SymbolConfig, WaitConfig
from procs.common.record_codec import RecordCodec
from procs.common.records import AdminCommand, Heartbeat, MassCancel, NewOrder, Record, Rejected
from procs.common.result_codes import ResultCode
from procs.common.snapshots import SnapshotStore
from procs.common.topology import (
    RECOVERED_SOURCE,
    REPLAY_SOURCE,
    matcher_input,
    matcher_output,
    snapshot_dir,
)
from procs.common.types import AdminAction, OrdType, Side, StpMode, TimeInForce
from procs.core.engine import Matcher
from procs.core.recovery import ExchangeSnapshot, snapshot_store
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import symbol_specs
from procs.matcher.main import INPUT_CONSUMER, MatcherShell
from shm import Ring

from .differential import SPEC, commands

CODEC = RecordCodec()


def config(instance: str, var: Path, **matcher: object) -> RingexConfig:
    return RingexConfig(
        instance=instance,
        ring=RingConfig(capacity=1024),
        wait=WaitConfig(strategy="blocking", park_timeout_s=0.01),
        symbols=[
            SymbolConfig(name="AAA", id=SPEC.symbol, max_qty=100, band_bps=100),
            SymbolConfig(name="BBB", id=9),
        ],
        matchers=[MatcherConfig(name="m1", symbols=["AAA", "BBB"], **matcher)],  # type: ignore[arg-type]
        var_dir=str(var),
    )


def make_rings(cfg: RingexConfig) -> tuple[Ring[Record], Ring[Record]]:
    inbound = Ring.create(
        cfg.instance, matcher_input("m1"), CODEC, capacity=1024, consumers=[INPUT_CONSUMER]
    )
    outbound = Ring.create(
        cfg.instance, matcher_output("m1"), CODEC, capacity=1 << 16, consumers=["tap"]
    )
    return inbound, outbound


def order(seq: int, symbol: int, order_id: int) -> NewOrder:
    return NewOrder(
        *(seq, seq, 1, 1, order_id, 1, symbol, order_id),
        side=Side.BUY,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC,
        flags=0,
        stp=StpMode.NONE,
        price=100,
        qty=1,
        stop_price=0,
        display_qty=0,
    )


def test_engine_routes_by_symbol_and_rejects_foreign_ones() -> None:
    cfg = config("x", Path("var"))
    matcher = Matcher(symbol_specs(cfg, "m1"))
    assert [type(e).__name__ for e in matcher.execute(order(1, 9, 1))] == [
        "Accepted",
        "BookLevel",
    ]
    (reject,) = matcher.execute(order(2, 42, 2))
    assert isinstance(reject, Rejected) and reject.code == ResultCode.UNKNOWN_SYMBOL
    (reject,) = matcher.execute(MassCancel(3, 3, 1, 1, 1, 0, 42))
    assert isinstance(reject, Rejected) and reject.code == ResultCode.UNKNOWN_SYMBOL
    # symbol 0 reaches every book; a replayed (old) seq is skipped
    events = matcher.execute(AdminCommand(4, 4, AdminAction.HALT, 0, 0))
    assert [e.symbol for e in events] == [SPEC.symbol, 9]  # type: ignore[attr-defined]
    assert matcher.execute(order(4, 9, 5)) == []
    restored = Matcher.restore(symbol_specs(cfg, "m1"), matcher.snapshot(), ReferenceBook)
    assert restored.state_hash() == matcher.state_hash()


def run_shell(shell: MatcherShell, inbound: Ring[Record], cmds: list[Record]) -> None:
    producer = inbound.producer()
    for k in range(0, len(cmds), 100):
        producer.publish_batch(cmds[k : k + 100])
        while shell.step(timeout_s=0.01):
            pass
    producer.close()


def test_shell_recovers_from_snapshot_and_journal_without_duplicates(
    instance: str, tmp_path: Path
) -> None:
    cfg = config(instance, tmp_path, snapshot_every=700, batch=64)
    inbound, outbound = make_rings(cfg)
    journal = list(commands(11, 3000, ReferenceBook(SPEC)))
    expected = Matcher(symbol_specs(cfg, "m1"), ReferenceBook).execute_all(journal)

    shell = MatcherShell(cfg, "m1")
    run_shell(shell, inbound, journal[:2000])
    # A crash: no clean snapshot, and the last batch published but not committed.
    shell.consumer._publish_sequence = lambda upto: None  # type: ignore[method-assign]
    run_shell(shell, inbound, journal[2000:2100])
    shell.producer.close()
    del shell

    snapshot = SnapshotStore(snapshot_dir(cfg, "matcher-m1")).latest()
    assert snapshot is not None
    recovered = MatcherShell(cfg, "m1", replay=journal[:2100])
    assert recovered.matcher.last_seq == journal[2099].seq  # type: ignore[attr-defined]
    run_shell(recovered, inbound, journal[2100:])
    tap = outbound.consumer("tap")
    got = tap.read(1 << 16)
    marks = [(e.source, e.counter) for e in got if isinstance(e, Heartbeat)]
    # two per start: where its replay starts (its snapshot) and how far it recovered; and
    # one per snapshot, how far it had executed and published
    last = journal[2099].seq  # type: ignore[attr-defined]
    second = marks.index((REPLAY_SOURCE, snapshot[0]))
    assert marks[:2] == [(REPLAY_SOURCE, 0), (RECOVERED_SOURCE, 0)]
    assert marks[second - 1 : second + 2] == [
        (RECOVERED_SOURCE, snapshot[0]), (REPLAY_SOURCE, snapshot[0]), (RECOVERED_SOURCE, last),
    ]  # fmt: skip
    assert {source for source, _ in marks[2 : second - 1] + marks[second + 2 :]} <= {
        RECOVERED_SOURCE
    }
    got = [e for e in got if not isinstance(e, Heartbeat)]
    assert got == expected  # every event once, in order
    reference = Matcher(symbol_specs(cfg, "m1"), ReferenceBook)
    reference.execute_all(journal)
    assert recovered.matcher.state_hash() == reference.state_hash()
    recovered.close()


def test_matcher_process_runs_and_stops_cleanly(instance: str, tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'instance = "{instance}"\nvar_dir = "{tmp_path}"\n'
        '[[symbols]]\nname = "AAA"\nid = 3\nbase = "BTC"\nquote = "USD"\n'
        '[[matchers]]\nname = "m1"\nsymbols = ["AAA"]\n'
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.01\n'
    )
    cfg_rings = config(instance, tmp_path)
    inbound, outbound = make_rings(cfg_rings)
    proc = subprocess.Popen(
        [sys.executable, "-m", "procs.matcher.main", "--profile", str(profile), "--name", "m1"],
        cwd=Path(__file__).parents[3],
        env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[3])},
    )
    try:
        producer = inbound.producer()
        producer.publish_batch([order(1, 3, 1), order(2, 7, 2)])
        tap = outbound.consumer("tap")
        events: list[Record] = []
        deadline = time.monotonic() + 20
        while len(events) < 5 and time.monotonic() < deadline:
            events += tap.take(16, timeout_s=0.2)
        assert [type(e).__name__ for e in events] == [
            "Heartbeat",  # replays after seq 0 (no snapshot)
            "Heartbeat",  # recovered through seq 0
            "Accepted",
            "BookLevel",
            "Rejected",
        ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert list((tmp_path / instance / "snapshots" / "matcher-m1").glob("*.snap"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("bad", ["CCC"])
def test_config_refuses_a_symbol_without_owner(bad: str) -> None:
    with pytest.raises(ValueError, match=f"matcher 'm1' owns symbol '{bad}'"):
        RingexConfig(
            symbols=[SymbolConfig(name="AAA", id=1)],
            matchers=[MatcherConfig(name="m1", symbols=["AAA", bad])],
        )


@pytest.mark.parametrize("newer", ["exchange", "own"])
def test_a_restart_starts_from_the_newer_of_its_own_and_the_exchange_snapshot(
    instance: str, tmp_path: Path, newer: str
) -> None:
    """The router's snapshot children save every matcher's books too; a matcher restarts
    from that copy when it is newer than its own snapshot, and replays only after it."""
    cfg = config(instance, tmp_path, snapshot_every=0, batch=64)
    inbound, outbound = make_rings(cfg)
    journal = list(commands(11, 3000, ReferenceBook(SPEC)))
    specs = symbol_specs(cfg, "m1")
    seq_of = [c.seq for c in journal]  # type: ignore[attr-defined]
    own_at, exchange_at = (1000, 2000) if newer == "exchange" else (2000, 1000)

    def state_after(count: int) -> Matcher:
        state = Matcher(specs)
        state.execute_all(journal[:count])
        return state

    own = state_after(own_at)
    SnapshotStore(snapshot_dir(cfg, "matcher-m1")).save(own.last_seq, own.snapshot())
    at = seq_of[exchange_at - 1]
    copy = ExchangeSnapshot(at, b"", {"m1": state_after(exchange_at).snapshot()})
    snapshot_store(cfg).save(at, msgspec.msgpack.encode(copy))

    shell = MatcherShell(cfg, "m1", replay=journal[:2500])
    tap = outbound.consumer("tap")
    marks = [(e.source, e.counter) for e in tap.read(1 << 16) if isinstance(e, Heartbeat)]
    assert marks == [(REPLAY_SOURCE, seq_of[1999]), (RECOVERED_SOURCE, seq_of[2499])]
    run_shell(shell, inbound, journal[2500:])
    reference = Matcher(specs, ReferenceBook)
    reference.execute_all(journal)
    assert shell.matcher.state_hash() == reference.state_hash()
    shell.close()


def test_the_queue_histogram_counts_each_batch_once_and_no_recovered_command(
    instance: str, tmp_path: Path
) -> None:
    """The metrics' matcher queue latency (sequenced -> read): one sample per batch, from
    its oldest command; commands sequenced before the matcher started (a replay after a
    restart) are recovery, not queueing, and would overflow the histogram's sum."""
    cfg = config(instance, tmp_path, batch=64)
    inbound, _outbound = make_rings(cfg)
    shell = MatcherShell(cfg, "m1")
    old: list[Record] = [order(k, 9, k) for k in range(1, 201)]  # ts_ns = seq: long ago
    run_shell(shell, inbound, old)
    assert shell.queue_latency.count == 0
    now = time.time_ns()
    fresh: list[Record] = [
        msgspec.structs.replace(order(k, 9, k), ts_ns=now) for k in range(201, 301)
    ]
    run_shell(shell, inbound, fresh)  # one batch of 100 at a time: 64, then 36
    assert shell.queue_latency.count == 2
    page = shell.stats.read()
    assert page["queue_sum_ns"] == shell.queue_latency.sum_ns > 0
    assert sum(v for k, v in page.items() if k.startswith("queue_le_")) == 2
    shell.close()


def test_a_command_sequenced_during_the_matchers_replay_is_not_counted_as_queueing(
    instance: str, tmp_path: Path
) -> None:
    """The live router sequences commands while a restarted matcher replays its journal:
    they waited for the recovery, which the queue histogram does not count (README)."""
    cfg = config(instance, tmp_path, batch=64)
    inbound, _outbound = make_rings(cfg)
    during: list[int] = []

    def replay() -> Iterator[Record]:
        yield order(1, 9, 1)
        during.append(time.time_ns())  # the router stamps a command now
        time.sleep(0.01)  # the rest of a long replay

    shell = MatcherShell(cfg, "m1", replay=replay())
    stamped: list[Record] = [msgspec.structs.replace(order(2, 9, 2), ts_ns=during[0])]
    run_shell(shell, inbound, stamped)
    assert shell.matcher.last_seq == 2  # executed, not counted
    assert shell.queue_latency.count == 0
    shell.close()
