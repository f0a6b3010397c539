"""Review 43: ``[journal] pipeline_behind`` (590f8ac): under ``fsync = "pipelined"`` a step's
fsync goes to the journal's thread only with that many commands waiting unread on the
gateways' rings; with fewer it runs inline, as under ``"batch"``.

Rig: ``test_router``'s exchange stepped by hand, ``router_batch=3`` (a step takes one
command from each of gw1, gw2 and the admin ring), so a handful of orders on gw1 puts the
router on either side of a small threshold. ``os.fsync`` is ``test_journal_pipelined``'s
gate (held until the test opens it, calls counted) or ``SlowDisk`` (each fsync takes
``delay_s``, its span and thread recorded).

Faults found, and fixed (``_route_durable`` now only collects a finished fsync,
``JournalWriter.collect``; the config refuses a threshold its rings cannot reach):

- A step that went inline after two thread steps waited for two fsyncs, one after the
  other: ``_route_durable`` at the step's start (procs/router/main.py) calls
  ``maybe_sync``, which starts a thread fsync for the batch held uncovered; the step then
  finds fewer than ``pipeline_behind`` waiting and ``JournalWriter.sync`` reaps that fsync
  (``_reap(None)``) before its own. The held batch waits for three fsyncs (the one in
  flight when it was journaled, the thread's, the inline one), where any waiting (the rule
  before) routed it after two, and the router decides nothing for two fsyncs: the "fsync in
  flight, then its own" the threshold was measured to avoid.
- ``pipeline_behind`` above what the gateways' rings can hold (``ring.capacity`` x
  (gateways + 1)) is accepted: the thread is then never used and ``"pipelined"`` is
  ``"batch"`` in silence (config/schema.py).

Verified right (plain tests): with an fsync in flight on the thread and fewer than the
threshold waiting, the inline ``sync`` waits for it, covers the step's batch too, and the
step routes the held batch and its own, in order, with two fsyncs and no third;
``_waiting`` leaves out a gateway whose replies wait for room, counts the admin ring, and
counts what a restarted router reads again (never negative: a consumer reads no further
than its ring's cursor); in sync replication below the threshold the standby is told of a
batch once it is durable here and the batch is routed in its step, at or above it the
standby is told first and the batch is held for the thread's fsync; a TOML value out of
range names the key, the value and the limit.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config import load_profile
from config.loader import ConfigError
from config.schema import JournalConfig, RingConfig, RingexConfig
from procs.common.records import AccountReply, Record
from procs.common.result_codes import ResultCode
from procs.common.topology import ADMIN_GATEWAY
from procs.common.types import Side
from tests.unit.router.test_journal_pipelined import FsyncGate
from tests.unit.router.test_review42_pipelined import deposit, standby
from tests.unit.router.test_router import Exchange, config, fund, order

REAL_FSYNC = os.fsync
DELAY_S = 0.15  # a slow disk's fsync: two in a row are told from one with a wide margin


class SlowDisk:
    """``os.fsync`` that takes ``delay_s``; each call's (start, end, thread) is kept."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.spans: list[tuple[float, float, str]] = []
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        start = time.monotonic()
        time.sleep(self.delay_s)
        REAL_FSYNC(fd)
        with self._lock:
            self.spans.append((start, time.monotonic(), threading.current_thread().name))


@pytest.fixture
def slow_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowDisk]:
    disk = SlowDisk()
    monkeypatch.setattr(os, "fsync", disk)  # the writer calls os.fsync by name
    yield disk
    disk.delay_s = 0.0


@pytest.fixture
def fsync_gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[FsyncGate]:
    gate = FsyncGate()
    monkeypatch.setattr(os, "fsync", gate)
    yield gate
    gate.opened.set()  # no thread of a failed test left waiting


def pipelined(instance: str, tmp_path: Path, behind: int, **changes: object) -> Exchange:
    """The exchange under ``"pipelined"`` with ``pipeline_behind = behind``, account 7
    funded on the admin ring (inline fsyncs; review 343) and its answers read."""
    cfg = config(instance, tmp_path)
    journal = JournalConfig(fsync="pipelined", pipeline_behind=behind)
    ex = Exchange(msgspec.structs.replace(cfg, journal=journal, router_batch=3, **changes))
    fund(ex, 7, usd=10**9, btc=0)
    told = ex.replies_of(ADMIN_GATEWAY)
    assert [r.code for r in told] == [ResultCode.OK] * 2  # type: ignore[attr-defined]
    return ex


def buys(first_ref: int, n: int) -> list[Record]:
    return [order(first_ref + k, 7, Side.BUY, 100 - k, 1) for k in range(n)]


def step(ex: Exchange) -> float:
    """One router step; the seconds it took."""
    start = time.monotonic()
    ex.router.step(timeout_s=0.001)
    return time.monotonic() - start


# -- faults ------------------------------------------------------------------------------------


def test_going_inline_after_thread_steps_waits_for_one_fsync_not_two(
    instance: str, tmp_path: Path, slow_disk: SlowDisk
) -> None:
    ex = pipelined(instance, tmp_path, behind=3)
    try:
        to_book = ex.router.to_matchers["m1"]
        journal = ex.router.journal
        slow_disk.delay_s = DELAY_S
        ex.gateways[1].publish_batch(buys(600, 5))
        step(ex)  # 600; four wait: the fsync (F1) goes to the thread
        first = journal.durable_seq + 1
        step(ex)  # 601; three wait: held, F1 in flight (601 is after it)
        assert to_book.backlog() == 0 and journal.durable_seq < first
        time.sleep(DELAY_S + 0.05)  # F1 returns; 601 is covered by no fsync yet
        slow_disk.spans.clear()
        started = time.monotonic()
        took = step(ex)  # 602; two wait: inline
        assert to_book.backlog() == 3  # 600, 601, 602 routed in this step
        assert journal.durable_seq == journal.next_seq - 1
        spans = [(round(s - started, 3), round(e - started, 3), n) for s, e, n in slow_disk.spans]
        assert took < 1.66 * DELAY_S, f"the inline step took {took:.3f} s: fsyncs {spans}"
    finally:
        slow_disk.delay_s = 0.0
        ex.stop()


def test_a_threshold_the_rings_cannot_reach_is_refused() -> None:
    with pytest.raises(ValueError, match=r"pipeline_behind.*100.*32"):
        RingexConfig(
            ring=RingConfig(capacity=16),
            journal=JournalConfig(fsync="pipelined", pipeline_behind=100),
        )


# -- verified right ----------------------------------------------------------------------------


def test_an_inline_step_waits_for_the_fsync_in_flight_and_routes_the_held_batch(
    instance: str, tmp_path: Path, fsync_gate: FsyncGate
) -> None:
    """The thread's fsync of 600's batch is held at the gate; 601's step finds one waiting
    (under 2): its ``sync`` waits for the thread's, then makes 601 durable, and the step
    routes 600 then 601. Two fsyncs in all: the thread's and the inline one."""
    ex = pipelined(instance, tmp_path, behind=2)
    try:
        to_book = ex.router.to_matchers["m1"]
        journal = ex.router.journal
        fsync_gate.shut()
        ex.gateways[1].publish_batch(buys(600, 3))
        step(ex)  # 600; two wait: to the thread, held at the gate
        assert fsync_gate.entered.wait(5)
        assert to_book.backlog() == 0 and ex.replies_of(1) == []
        fsync_gate.open_after(0.2)
        took = step(ex)  # 601; one waits: inline, after the thread's fsync returns
        assert took >= 0.15  # it waited for the fsync in flight
        assert fsync_gate.calls == 2
        assert journal.durable_seq == journal.next_seq - 1 and not journal.syncing
        assert not ex.router._held
        sent = ex.router.to_matchers["m1"].ring
        cursor = sent.cursor()
        refs = [sent.record(n).client_ref for n in range(cursor - 2, cursor)]  # type: ignore[attr-defined]
        assert refs == [600, 601]
        step(ex)  # 602, nothing after it: inline, one fsync more
        assert fsync_gate.calls == 3 and to_book.backlog() == 3
    finally:
        fsync_gate.opened.set()
        ex.stop()


def test_waiting_counts_readable_rings_the_admin_ring_included(
    instance: str, tmp_path: Path
) -> None:
    ex = pipelined(instance, tmp_path, behind=32)
    admin = ex.gateways[ADMIN_GATEWAY]
    try:
        router = ex.router
        assert router._waiting() == 0
        ex.gateways[1].publish_batch(buys(700, 4))
        admin.publish_batch([deposit(710, ADMIN_GATEWAY)])
        assert router._waiting() == 5  # the admin ring's command counts
        held_reply = AccountReply(0, 0, 2, 1, 1, 7, 1, ResultCode.OK, 0)
        router.pending_replies[2].append(held_reply)  # gw2's replies wait for room
        ex.gateways[2].publish_batch(buys(720, 6))
        assert router._waiting() == 5  # gw2 is not read: its commands do not count
        router.pending_replies[2].clear()
        assert router._waiting() == 11
        router.close()  # nothing of it committed: a restart reads all again
        ex.start()
        assert ex.router._waiting() == 11
        ex.router.step(timeout_s=0.001)  # one of each ring
        assert ex.router._waiting() == 8
        assert all(c.ring.cursor() >= c.sequence for _g, c in ex.router.inputs)
    finally:
        ex.stop()


def test_sync_mode_below_the_threshold_tells_the_standby_once_durable_here(
    instance: str, tmp_path: Path, fsync_gate: FsyncGate
) -> None:
    """Below ``pipeline_behind`` the standby is told of a batch after the local fsync and
    the batch goes out in its step (the round trip no longer overlaps the fsync, as under
    ``"batch"``); at it, the standby is told first and the batch is held for the thread."""
    ex = pipelined(instance, tmp_path, behind=2)
    try:
        appended = standby(ex, [])
        to_book = ex.router.to_matchers["m1"]
        ex.gateways[1].publish_batch(buys(800, 1))
        step(ex)
        seq = ex.router.journal.next_seq - 1
        assert appended == [(seq, seq)] and to_book.backlog() == 1
        fsync_gate.shut()
        ex.gateways[1].publish_batch(buys(810, 3))
        step(ex)  # 810; two wait
        assert fsync_gate.entered.wait(5)
        assert appended[-1] == (seq + 1, seq)  # offered to the standby before durable here
        assert to_book.backlog() == 1  # acknowledged (faked at once), held for the fsync
        fsync_gate.opened.set()
        for _ in range(4):
            step(ex)
        assert to_book.backlog() == 4
    finally:
        fsync_gate.opened.set()
        ex.stop()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", r"Expected `int` >= 1 - at `\$\.journal\.pipeline_behind`: "
              r"journal\.pipeline_behind = 0"),
        ("1_000_001", r"<= 1000000 .*journal\.pipeline_behind = 1000001"),
        ('"32"', r"Expected `int`, got `str`.*journal\.pipeline_behind = '32'"),
    ],
)  # fmt: skip
def test_a_refused_toml_value_names_the_key_the_value_and_the_limit(
    tmp_path: Path, value: str, says: str
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(f'[journal]\nfsync = "pipelined"\npipeline_behind = {value}\n')
    with pytest.raises(ConfigError, match=says):
        load_profile(str(path))
    path.write_text('[journal]\nfsync = "pipelined"\npipeline_behind = 8\n')
    assert load_profile(str(path)).journal.pipeline_behind == 8


def test_a_held_batch_gets_its_fsync_from_a_step_of_refusals_alone(
    instance: str, tmp_path: Path, fsync_gate: FsyncGate
) -> None:
    """Reread of 7a137f5: a batch journaled while an fsync ran is held with none covering
    it, and a step's start no longer starts one. A step that takes only refused commands
    (an unknown account's flood) appends nothing: it must still start the held batch's
    fsync, or the batch waits until the router is idle, however long the flood lasts."""
    ex = pipelined(instance, tmp_path, behind=1)
    try:
        to_book = ex.router.to_matchers["m1"]
        refused = [order(900 + k, 99, Side.BUY, 90, 1) for k in range(12)]  # no account 99
        fsync_gate.shut()
        ex.gateways[1].publish_batch([*buys(800, 2), *refused])
        step(ex)  # 800: others wait, so its fsync goes to the thread (held at the gate)
        assert fsync_gate.entered.wait(5)
        step(ex)  # 801: journaled while 800's fsync runs; held with no fsync covering it
        fsync_gate.opened.set()
        for _ in range(8):  # refusals only, one a step, four left after: never idle
            step(ex)
            flight, deadline = ex.router.journal._flight, time.monotonic() + 5
            while flight and not flight[0].done() and time.monotonic() < deadline:
                time.sleep(0.001)  # the thread's fsync returns meanwhile (not 5 ms: a loaded host)
        assert to_book.backlog() == 2  # 800 and 801 routed while the flood goes on
    finally:
        fsync_gate.opened.set()
        ex.stop()
