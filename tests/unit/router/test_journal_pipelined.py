"""``fsync = "pipelined"``: the journal's fsync on a thread, batches durable before routed.

On a lent 16-core host the router waited on the journal's fsync inline, once a step, and
that host's fsync was slow: the queue sat in the gateways' command rings with the router at
64% of a core. Under ``pipelined`` the fsync runs on the writer's thread while the router
decides the next batches, which wait (held, as under ``interval``) for the fsync after it:
one fsync covers every batch that came meanwhile. These tests hold the fsync at a gate to
see each step: nothing is durable, hence routed, before its fsync returns.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.schema import JournalConfig
from procs.common.journal import JournalError
from procs.common.journal_writer import JournalWriter
from procs.common.types import Side
from tests.unit.router.test_journal import (
    SMALL,
    assert_contiguous,
    images,
    writer,
)
from tests.unit.router.test_router import ADMIN, Exchange, config, fund, order

REAL_FSYNC = os.fsync


class FsyncGate:
    """``os.fsync`` that waits while the gate is shut (the test opens it), counting calls."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.opened.set()
        self.entered = threading.Event()  # a call came (the thread's may come later)
        self.calls = 0
        self.fail: OSError | None = None

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.entered.set()
        assert self.opened.wait(5), "the test never opened the fsync gate"
        if self.fail is not None:
            raise self.fail
        REAL_FSYNC(fd)

    def shut(self) -> None:
        self.calls = 0
        self.entered.clear()
        self.opened.clear()

    def open_after(self, seconds: float) -> None:
        threading.Timer(seconds, self.opened.set).start()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[FsyncGate]:
    fsync = FsyncGate()
    monkeypatch.setattr(os, "fsync", fsync)  # the writer calls os.fsync by name
    yield fsync
    fsync.opened.set()  # no thread of a failed test left waiting


def started(path: Path, **kwargs: object) -> JournalWriter:
    """A pipelined writer with entry 1 durable: its segment made (fsynced inline) and open."""
    w = writer(path, fsync="pipelined", **kwargs)
    w.append(1, images(1, 1), 1)
    w.sync()
    return w


def test_an_append_is_durable_only_once_its_fsync_returns(tmp_path: Path, gate: FsyncGate) -> None:
    with started(tmp_path) as w:
        gate.shut()
        w.append(2, images(2, 3), 3)
        assert w.next_seq == 5
        assert w.durable_seq == 1 and w.syncing
        assert not w.maybe_sync()  # the fsync starts on the thread: nothing more durable yet
        assert gate.entered.wait(5)
        assert not w.maybe_sync()  # still in flight
        gate.opened.set()
        assert w.wait_durable(5.0)
        assert w.durable_seq == 4 and not w.syncing
    assert_contiguous(tmp_path, 1, 4)


def test_appends_during_an_fsync_are_covered_by_one_more(tmp_path: Path, gate: FsyncGate) -> None:
    """The group commit: batches appended while an fsync runs wait for the next one, one
    fsync for all of them, however many there were."""
    with started(tmp_path) as w:
        gate.shut()
        w.append(2, images(2, 1), 1)
        w.maybe_sync()
        assert gate.entered.wait(5)  # the fsync of entry 2 runs, held at the gate
        for seq in range(3, 9):
            w.append(seq, images(seq, 1), 1)
            w.maybe_sync()
        assert gate.calls == 1  # the first fsync is still in flight: no second one yet
        gate.opened.set()
        while w.syncing:
            w.wait_durable(5.0)
        assert w.durable_seq == 8
        assert gate.calls == 2
    assert_contiguous(tmp_path, 1, 8)


def test_a_failed_fsync_leaves_the_writer_unusable(tmp_path: Path, gate: FsyncGate) -> None:
    w = started(tmp_path)
    try:
        gate.shut()
        gate.fail = OSError(errno.EIO, "I/O error")
        w.append(2, images(2, 2), 2)
        w.maybe_sync()
        gate.opened.set()
        with pytest.raises(JournalError, match=r"fsync of .* failed"):
            w.wait_durable(5.0)
        assert w.durable_seq == 1
        with pytest.raises(JournalError, match="failed earlier"):
            w.append(4, images(4, 1), 1)
    finally:
        w.close()


def test_sync_close_and_a_rollover_wait_for_the_fsync_in_flight(
    tmp_path: Path, gate: FsyncGate
) -> None:
    """Each needs the open segment's descriptor, which the fsync's thread may hold."""
    w = started(tmp_path, segment_bytes=SMALL)
    gate.shut()
    w.append(2, images(2, 3), 3)
    w.maybe_sync()  # an fsync in flight, held at the gate, for each of the three below
    gate.open_after(0.2)
    w.sync()
    assert w.durable_seq == 4 and not w.syncing
    gate.shut()
    w.append(5, images(5, 4), 4)
    w.maybe_sync()
    gate.open_after(0.2)
    w.append(9, images(9, 4), 4)  # rolls over at 10: the fsync in flight ends first
    gate.shut()
    w.append(13, images(13, 2), 2)
    w.maybe_sync()
    gate.open_after(0.2)
    w.close()
    assert_contiguous(tmp_path, 1, 14)


def test_the_router_routes_a_batch_only_once_its_fsync_returned(
    instance: str, tmp_path: Path, gate: FsyncGate
) -> None:
    """With more commands waiting, the fsync goes to the thread and the batch is held until
    it returns; with none, the router fsyncs inline, as under ``"batch"``."""
    cfg = config(instance, tmp_path)
    pipelined = JournalConfig(fsync="pipelined", pipeline_behind=1)
    ex = Exchange(msgspec.structs.replace(cfg, journal=pipelined, router_batch=3))
    try:  # a step takes one command a gateway ring (three rings, the admin's among them)
        fund(ex, 7, usd=10**9, btc=0)  # on the admin ring (review 343)
        assert len(ex.replies_of(ADMIN)) == 2
        to_book = ex.router.to_matchers["m1"]
        gate.shut()
        ex.gateways[1].publish_batch(
            [order(500, 7, Side.BUY, 100, 1), order(501, 7, Side.BUY, 99, 1)]
        )
        assert ex.router.step(timeout_s=0.001) == 1  # 501 waits: the fsync goes to the thread
        assert gate.entered.wait(5)
        assert to_book.backlog() == 0  # nothing of 500 left the router
        assert ex.replies_of(1) == []
        gate.opened.set()
        for _ in range(3):  # 501, nothing after it: fsynced inline; then both routed
            ex.router.step(timeout_s=0.001)
        assert to_book.backlog() == 2
        ex.pump()
        assert ex.router.sequencer.accounts.open_orders(7) == 2
        gate.shut()
        gate.opened.set()  # calls counted from here, none held
        ex.gateways[1].publish_batch([order(502, 7, Side.BUY, 98, 1)])
        assert ex.router.step(timeout_s=0.001) == 1
        assert to_book.backlog() == 1  # routed in the step that took it, as under "batch"
        assert gate.calls == 1
    finally:
        gate.opened.set()
        ex.stop()


def test_a_few_commands_waiting_fsync_inline_a_backlog_goes_to_the_thread(
    instance: str, tmp_path: Path, gate: FsyncGate
) -> None:
    """``[journal] pipeline_behind``: with fewer commands waiting than it says, a step
    fsyncs inline and routes its batch at once, as under ``"batch"`` (a held batch would wait
    for the fsync in flight, then its own: the ack latency at moderate rates); with that
    many, the router is behind, and the fsync goes to the thread while it goes on."""
    assert JournalConfig().pipeline_behind == 32  # the default
    cfg = config(instance, tmp_path)
    pipelined = JournalConfig(fsync="pipelined", pipeline_behind=3)
    ex = Exchange(msgspec.structs.replace(cfg, journal=pipelined, router_batch=3))
    try:  # a step takes one command a gateway ring (three rings, the admin's among them)
        fund(ex, 7, usd=10**9, btc=0)
        to_book = ex.router.to_matchers["m1"]
        prices = iter(range(100, 90, -1))
        ex.gateways[1].publish_batch(
            [order(600 + k, 7, Side.BUY, next(prices), 1) for k in range(3)]
        )
        gate.shut()
        gate.opened.set()  # calls counted from here, none held
        assert ex.router.step(timeout_s=0.001) == 1  # two left waiting: fewer than three
        assert to_book.backlog() == 1  # fsynced inline, routed in the step that took it
        assert gate.calls == 1
        ex.gateways[1].publish_batch(
            [order(610 + k, 7, Side.BUY, next(prices), 1) for k in range(2)]
        )
        gate.shut()  # four waiting: the step takes one, three are left
        assert ex.router.step(timeout_s=0.001) == 1
        assert gate.entered.wait(5)  # the thread's fsync, held at the gate
        assert to_book.backlog() == 1  # the step's batch is held until it returns
        gate.opened.set()
        for _ in range(6):
            ex.router.step(timeout_s=0.001)
        assert to_book.backlog() == 5
    finally:
        gate.opened.set()
        ex.stop()
