"""The acknowledgement block and the router's sync gate.

Outcomes of ``SyncGate.wait(seq)``, each checked below:
- acknowledged: True as soon as ``ACKED_SEQ >= seq`` (at once, or after waiting, with the
  matchers drained meanwhile);
- timed out: True *degraded* after ``timeout_ms`` (the word and the log say so); later batches
  go on at once while the standby is behind, and sync resumes once it has everything that was
  journaled before a batch;
- stopped: False when ``stop()`` turns true first;
- never with ``timeout_ms = 0``: it waits however long the acknowledgement takes.
Forbidden: True for a seq not acknowledged without the degraded flag set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.common.replication_ack import (
    ACKED_SEQ,
    DEGRADED,
    DEGRADED_TOTAL,
    JOURNAL_SEQ,
    SOURCE_PARKED,
    AckBlock,
    Doorbell,
    SyncGate,
)


@pytest.fixture
def blocks(tmp_path: Path) -> Iterator[tuple[AckBlock, AckBlock]]:
    router, source = AckBlock(tmp_path), AckBlock(tmp_path)  # two mappings, as two processes
    yield router, source
    router.close()
    source.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_both_sides_see_one_block(blocks: tuple[AckBlock, AckBlock], tmp_path: Path) -> None:
    router, source = blocks
    router.appended(41)
    source.acknowledged(40)
    assert source.words[JOURNAL_SEQ] == 41 and router.acked_seq == 40
    assert router.status()["lag"] == 1
    again = AckBlock(tmp_path)  # a restarted process maps the same words
    assert again.acked_seq == 40
    again.close()


def test_a_block_of_another_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "replication.ack").write_bytes(b"\xff" * 4096)
    with pytest.raises(ValueError, match="layout tag"):
        AckBlock(tmp_path)


def test_a_doorbell_wakes_a_waiter_and_never_blocks_its_ringer(tmp_path: Path) -> None:
    waiter, ringer = Doorbell(tmp_path / "bell"), Doorbell(tmp_path / "bell")
    assert not waiter.wait(0.001)
    threading.Timer(0.02, ringer.ring).start()
    started = time.monotonic()
    assert waiter.wait(5.0)
    assert time.monotonic() - started < 1.0
    for _ in range(100_000):  # far more than a pipe holds: rings past full are dropped
        ringer.ring()
    assert waiter.wait(0) and not waiter.wait(0)  # one wait drains them all
    waiter.close()
    ringer.close()


def test_the_router_rings_only_a_sleeping_source(blocks: tuple[AckBlock, AckBlock]) -> None:
    router, source = blocks
    router.appended(1)
    assert not source.appended_bell.wait(0)
    source.words[SOURCE_PARKED] = 1
    router.appended(2)
    assert source.appended_bell.wait(0)


def test_an_acknowledged_batch_goes_on_at_once(blocks: tuple[AckBlock, AckBlock]) -> None:
    router, source = blocks
    source.acknowledged(10)
    gate = SyncGate(router, timeout_ms=0, clock=FakeClock())
    assert gate.wait(10, drain=lambda: pytest.fail("no need to wait"))
    assert not gate.degraded


def test_the_wait_drains_the_matchers_until_acknowledged(
    blocks: tuple[AckBlock, AckBlock],
) -> None:
    router, source = blocks
    drained = []

    def drain() -> int:  # the router's settle; here the standby answers on the third call
        drained.append(1)
        if len(drained) == 3:
            source.acknowledged(5)
        return 1

    gate = SyncGate(router, timeout_ms=0, spin=True)
    assert gate.wait(5, drain)
    assert len(drained) == 3 and not gate.degraded


def test_with_no_timeout_it_waits_however_long_it_takes(
    blocks: tuple[AckBlock, AckBlock],
) -> None:
    router, source = blocks
    clock = FakeClock()
    rounds = []

    def drain() -> int:
        rounds.append(1)
        clock.now += 60.0  # a minute per round, an hour in all: still waiting
        if len(rounds) == 60:
            source.acknowledged(7)
        return 0

    gate = SyncGate(router, timeout_ms=0, spin=True, clock=clock)
    assert gate.wait(7, drain) and len(rounds) == 60
    assert not gate.degraded and router.words[DEGRADED] == 0


def test_a_stop_ends_the_wait_unacknowledged(blocks: tuple[AckBlock, AckBlock]) -> None:
    router, _source = blocks
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    gate = SyncGate(router, timeout_ms=0, spin=True)
    assert gate.wait(3, stop=stop) is False


def test_a_timeout_degrades_loudly_then_sync_resumes_once_caught_up(
    blocks: tuple[AckBlock, AckBlock], caplog: pytest.LogCaptureFixture
) -> None:
    router, source = blocks
    clock = FakeClock()

    def drain() -> int:
        clock.now += 0.01
        return 0

    gate = SyncGate(router, timeout_ms=50, spin=True, clock=clock)
    source.acknowledged(9)
    assert gate.wait(10, drain, before=9)  # no acknowledgement within 50 ms: goes on
    assert gate.degraded and router.words[DEGRADED] == 1 and router.words[DEGRADED_TOTAL] == 1
    assert "SYNC REPLICATION SUSPENDED" in caplog.text and "seq 10 within 50 ms" in caplog.text
    assert router.status()["degraded"]

    # while the standby lags, batches go on at once (no timeout paid per batch)
    assert gate.wait(20, lambda: pytest.fail("degraded: no wait"), before=10)
    source.acknowledged(15)
    assert gate.wait(30, lambda: pytest.fail("still behind: no wait"), before=20)
    assert gate.degraded

    # it has everything journaled before the next batch: sync again, this batch waited for
    source.acknowledged(30)
    rounds = []

    def answer() -> int:
        rounds.append(1)
        source.acknowledged(40)
        return 0

    assert gate.wait(40, answer, before=30) and rounds == [1]
    assert not gate.degraded and router.words[DEGRADED] == 0
    assert "sync replication resumed" in caplog.text
    assert router.words[DEGRADED_TOTAL] == 1  # the count stays for the operator


def test_an_idle_router_resumes_sync_once_the_standby_has_everything(
    blocks: tuple[AckBlock, AckBlock],
) -> None:
    router, source = blocks
    gate = SyncGate(router, timeout_ms=1, spin=True)
    assert gate.wait(5, before=4)
    assert gate.degraded
    assert not gate.poll(5)
    source.acknowledged(5)
    assert gate.poll(5) and not gate.degraded


def test_a_restarted_router_keeps_the_verdict(blocks: tuple[AckBlock, AckBlock]) -> None:
    router, source = blocks
    router.words[DEGRADED] = 1
    gate = SyncGate(router, timeout_ms=100)
    assert gate.degraded
    source.words[ACKED_SEQ] = 3
    assert gate.wait(9, before=8)  # behind: goes on without waiting
    assert gate.degraded


def test_a_sleeping_router_wakes_on_the_bell(blocks: tuple[AckBlock, AckBlock]) -> None:
    router, source = blocks
    gate = SyncGate(router, timeout_ms=0)  # sleeps on the bell between drains
    threading.Timer(0.05, source.acknowledged, (12,)).start()
    started = time.monotonic()
    cpu = time.process_time()
    assert gate.wait(12)
    took = time.monotonic() - started
    assert 0.04 < took < 1.0
    assert time.process_time() - cpu < took / 2  # slept, not spun
