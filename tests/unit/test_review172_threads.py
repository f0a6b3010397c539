"""Review 172: threads sharing state, the parts review 171 did not reach: the journal's
fsync thread, the database writer's committer and lanes, the supervisor's metrics thread.

Faults found, both fixed (each test's docstring says how it was shown: "Was (fixed)"):

* journal_writer.py:277-280: ``_reap`` takes any ``TimeoutError`` out of
  ``future.result`` for "not done yet", but an fsync that failed with ``ETIMEDOUT`` (an NFS
  ``soft,softerr`` mount's answer) raises ``TimeoutError`` too (an ``OSError`` subclass,
  caught before the ``OSError`` branch). The failed flight is never cleared, the writer
  never marked failed: under ``"pipelined"`` no fsync is started again and held batches
  wait for ever, and the next inline ``sync`` (the router's ``close``) runs an fsync that
  returns 0 after the kernel reported (and may have dropped) the dirty pages, and marks
  every entry durable: acknowledged commands a host crash then loses (review 42's loss,
  through another door).
* dbwriter/writer.py:276-279 with committer.py:67-72: ``_run``'s ``finally`` closes the
  committer, which joins its thread; a thread in ``_retry`` (PostgreSQL down) gives up only
  when ``stopping`` is set, which only a signal does. An error on the main thread (a
  damaged journal entry, a bad replay) while a batch retries is never raised: the process
  hangs in ``join`` until PostgreSQL comes back, its sleeps petting systemd's watchdog.

Checked and found correct (pinned below, a few):

* A pipelined fsync failing with ``EIO`` makes the writer unusable and leaves the durable
  mark where it was; ``close`` waits for the fsync in flight before it closes the segment's
  descriptor (the thread never fsyncs a closed, or reused, fd); ``_roll`` reaps first too.
* ``DurableMark`` is written by the router's thread only (``_durable`` runs after ``_reap``
  on the caller's thread, never on the fsync thread), and a torn read of its two halves
  reads 0 (``journal_durable.py``): never more than is durable.
* ``Committer``: an exception in its thread is kept (sticky) and raised by the next
  ``submit`` and by ``drain``: a failed write never dies silently; ``drain`` returns only
  once nothing waits and nothing is in flight (one Condition, every change notified).
* ``PgStore``'s lanes add to ``_lane_conns`` under distinct keys and ``write`` waits for
  every lane before it raises or closes; sessions are kept under ``_sessions_lock``.
* ``RingexCollector.collect`` reads everything under ``_lock`` and builds a list before it
  lets go; ``close`` takes the lock, so it waits for a scrape in progress and later scrapes
  return nothing (the rings are unmapped only after). ``MetricsServer.close`` shuts the
  serving thread down and joins it.

Leads not shown: ``Supervisor.process_samples`` (supervisor/main.py:470-478) reads
``c.process`` twice (``c.process.pid if c.process is not None``); a main thread setting it
to None between would fail the scrape, but the only assignments of None (``prestart``,
``discard_held``) run before the server starts or after it is closed. ``Popen.poll`` from
the scrape's thread may reap a child; ``returncode`` is cached, so the watch still sees it.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from procs.common.journal import JournalError
from procs.common.journal_durable import durable_upto
from procs.common.journal_writer import JournalWriter
from procs.dbwriter import writer as writer_module
from procs.dbwriter.committer import Committer
from procs.dbwriter.projection import Batch
from procs.dbwriter.writer import Backoff, DbWriter, StoppedWaitingError, WriterOptions
from procs.supervisor.metrics import MetricsServer, RingexCollector

SLOT = 64
SCHEMA = 5


def _fail_thread_fsync_once(monkeypatch: pytest.MonkeyPatch, code: int) -> list[int]:
    """``os.fsync`` fails once with ``code``, on the journal's fsync thread only."""
    real = os.fsync
    failed: list[int] = []

    def fsync(fd: int) -> None:
        if threading.current_thread().name.startswith("journal-fsync") and not failed:
            failed.append(fd)
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return failed


def _pipelined_with_one_pending(directory: Path) -> JournalWriter:
    writer = JournalWriter(directory, slot_size=SLOT, schema_id=SCHEMA, fsync="pipelined")
    writer.append(1, bytes(SLOT), 1)
    assert writer.durable_seq == 0 and writer.syncing
    return writer


# -- faults -----------------------------------------------------------------------------------


def test_a_pipelined_fsync_failing_with_etimedout_fails_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed: ``_reap`` waits with ``concurrent.futures.wait`` and asks the future
    whether it is done). ``_reap`` (journal_writer.py:277-280) caught ``TimeoutError`` around
    ``future.result(timeout)`` to mean "still running"; ``os.fsync`` failing with
    ``ETIMEDOUT`` raises ``TimeoutError`` as well (``OSError(ETIMEDOUT)`` is one), so the
    failed fsync is taken for one in progress: ``_flight`` stays set (no fsync is started
    again: held batches wait for ever), ``failed`` stays None, and the next inline ``sync``
    (the router's ``close``) fsyncs again, gets 0 (the kernel reported the error once and
    may have dropped the pages) and marks seq 1 durable in ``journal/durable``.
    Shown: ``os.fsync`` monkeypatched to fail once with ETIMEDOUT on the fsync thread.
    Fix: tell "not done" from "failed" by the future, not by the exception: ``if not
    future.done(): concurrent.futures.wait([future], timeout_s)``, return False if still
    not done, then ``exc = future.exception()`` and treat any exception as a failed fsync."""
    failed = _fail_thread_fsync_once(monkeypatch, errno.ETIMEDOUT)
    writer = _pipelined_with_one_pending(tmp_path)
    try:
        with pytest.raises(JournalError):
            writer.wait_durable(2.0)
        assert failed, "the fsync thread did not run"
        assert writer.failed is not None, "a failed fsync left the writer usable"
        with pytest.raises(JournalError):
            writer.sync()  # the error was reported once: nothing is durable from now on
        assert writer.durable_seq == 0
    finally:
        writer.close()
    assert durable_upto(tmp_path) == 0, "an entry whose fsync failed was marked durable"


def test_an_error_while_a_batch_retries_is_raised_not_hung(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Was (fixed: ``_run`` raising sets ``_abandon``, which ``_retry`` gives up on as on
    ``stopping``). ``DbWriter._run`` (writer.py:276-279) closes the committer in its
    ``finally``;
    ``Committer.close`` (committer.py:67-72) joins the thread, which is in ``_retry``
    (writer.py:385-402) while PostgreSQL is down and gives up only once ``stopping`` is set
    (a signal). An exception on the main thread meanwhile (a damaged entry, a replay error)
    is never raised: the process hangs in ``join`` until the database returns, its retry
    sleeps petting the watchdog, the error unlogged.
    Shown: a store whose ``write`` always raises ``OperationalError``; ``_follow`` replaced
    by one that submits a batch, waits for the first retry sleep, then raises; ``_run``
    in a thread is still alive 1 s later (``stopping`` is set afterwards to end it).
    Fix: in ``_run``'s ``finally``, before ``close``, set a flag ``_retry`` checks with
    ``stopping`` (give up: the journal holds the batch), e.g. ``self._abandon = True``."""
    monkeypatch.setattr(writer_module, "share_the_gil", lambda: None)
    retrying = threading.Event()

    class DownStore:
        def write(self, batch: Batch) -> bool:
            raise psycopg.OperationalError("connection refused")

        def close(self) -> None:
            pass

    def sleep(seconds: float) -> None:
        retrying.set()
        threading.Event().wait(0.001)

    writer: Any = DbWriter.__new__(DbWriter)
    writer.options = WriterOptions(backoff=Backoff(initial_s=0.001, max_s=0.001))
    writer.store, writer.sleep, writer.stopping, writer.committed = DownStore(), sleep, False, 0
    writer.ready = writer.revive = lambda: None  # (its retry calls both)
    writer.reader = type("R", (), {"last_seq": staticmethod(lambda: 1)})()
    writer.follower = object()

    def follow(follower: object, to_end: bool) -> int:
        writer._committer.submit(Batch(first_seq=1, last_seq=1))
        assert retrying.wait(5)
        raise RuntimeError("journal entry 2 damaged")

    writer._follow = follow
    raised: list[BaseException] = []

    def run() -> None:
        try:
            writer._run(False)
        except BaseException as exc:
            raised.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(1.0)
    hung = runner.is_alive()
    writer.stopping = True  # (ends the retry either way)
    runner.join(5)
    assert not hung, "the writer hung in the committer's join while PostgreSQL was down"
    assert raised and isinstance(raised[0], RuntimeError)


# -- checked and found correct ----------------------------------------------------------------


def test_a_pipelined_fsync_failing_with_eio_fails_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sibling of the fault above with ``EIO``: ``_reap`` (journal_writer.py:281-287)
    marks the writer failed, ``sync`` refuses, the mark stays at 0 through ``close``."""
    _fail_thread_fsync_once(monkeypatch, errno.EIO)
    writer = _pipelined_with_one_pending(tmp_path)
    try:
        with pytest.raises(JournalError):
            writer.wait_durable(2.0)
        assert writer.failed is not None
        with pytest.raises(JournalError):
            writer.sync()
        assert writer.durable_seq == 0
    finally:
        writer.close()
    assert durable_upto(tmp_path) == 0


def test_close_waits_for_the_fsync_in_flight_before_closing_its_fd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``close`` -> ``sync`` -> ``_reap(None)`` (journal_writer.py:211) before ``os.close``:
    the fsync thread, held mid-fsync, still has an open descriptor when it goes on, and the
    close marks the entry durable only after it."""
    real = os.fsync
    entered, go = threading.Event(), threading.Event()
    seen: list[bool] = []

    def fsync(fd: int) -> None:
        if threading.current_thread().name.startswith("journal-fsync"):
            entered.set()
            go.wait(5)
            try:
                os.fstat(fd)
                seen.append(True)
            except OSError:
                seen.append(False)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    writer = _pipelined_with_one_pending(tmp_path)
    writer.maybe_sync()  # the fsync starts on its thread
    assert entered.wait(5)
    closer = threading.Thread(target=writer.close, daemon=True)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "close did not wait for the fsync in flight"
    assert durable_upto(tmp_path) == 0
    go.set()
    closer.join(5)
    assert not closer.is_alive()
    assert seen == [True], "the fsync thread's descriptor was closed under it"
    assert durable_upto(tmp_path) == 1


def test_a_committer_error_is_raised_by_drain_and_submit() -> None:
    """committer.py:90-95: the thread keeps what stopped it; ``drain`` and every later
    ``submit`` raise it on the writer's thread (no silent death, no wait for ever)."""

    def write(batch: Batch) -> None:
        raise RuntimeError(f"seq {batch.first_seq} refused")

    committer = Committer(write)
    try:
        committer.submit(Batch(first_seq=1, last_seq=1))
        with pytest.raises(RuntimeError, match="seq 1 refused"):
            committer.drain()
        with pytest.raises(RuntimeError, match="seq 1 refused"):
            committer.submit(Batch(first_seq=2, last_seq=2))
    finally:
        committer.close()


def test_drain_returns_only_after_the_batch_in_flight() -> None:
    """``drain`` waits while a batch is in flight (``_busy``) as well as while one waits:
    a snapshot taken after it is of a committed checkpoint (writer.py:357-359)."""
    started, go = threading.Event(), threading.Event()
    written: list[int] = []

    def write(batch: Batch) -> None:
        started.set()
        go.wait(5)
        written.append(batch.first_seq)

    committer = Committer(write)
    try:
        committer.submit(Batch(first_seq=1, last_seq=1))
        assert started.wait(5)
        drainer = threading.Thread(target=committer.drain, daemon=True)
        drainer.start()
        drainer.join(0.2)
        assert drainer.is_alive() and not written
        go.set()
        drainer.join(5)
        assert not drainer.is_alive() and written == [1]
    finally:
        go.set()
        committer.close()


def test_collector_close_waits_for_a_scrape_in_progress() -> None:
    """metrics.py:157-177: ``collect`` reads under ``_lock``; ``close`` takes it, so the
    rings are unmapped only after a scrape in progress, and later scrapes return nothing."""
    inside, go = threading.Event(), threading.Event()
    closed_pages: list[str] = []

    class Page:
        def close(self) -> None:
            closed_pages.append("p")

    collector: Any = RingexCollector.__new__(RingexCollector)
    collector._lock, collector._closed = threading.Lock(), False
    collector._rings, collector._pages = {"r": object()}, {"p": Page()}

    def held() -> list[Any]:
        inside.set()
        go.wait(5)
        assert collector._rings, "the rings went under a scrape"
        return []

    collector._instance = held
    for part in ("_ring_metrics", "_counted", "_router_time", "_process_metrics"):
        setattr(collector, part, lambda: [])
    scrape = threading.Thread(target=lambda: list(collector.collect()), daemon=True)
    scrape.start()
    assert inside.wait(5)
    closer = threading.Thread(target=collector.close, daemon=True)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive() and not closed_pages
    go.set()
    scrape.join(5)
    closer.join(5)
    assert closed_pages == ["p"] and list(collector.collect()) == []


def test_metrics_server_close_joins_its_thread() -> None:
    """metrics.py:535-539: ``shutdown`` ends ``serve_forever``, its thread is joined, and
    the collector is closed after it."""

    class Collector:
        closed = False

        def collect(self) -> list[Any]:
            return []

        def close(self) -> None:
            self.closed = True

    collector = Collector()
    server = MetricsServer(collector, "127.0.0.1", 0)  # type: ignore[arg-type]
    thread = server._thread
    assert thread.is_alive()
    server.close()
    assert not thread.is_alive() and collector.closed


def test_a_stop_ends_a_committer_retry() -> None:
    """The harness of the hang above: with ``stopping`` set, ``_retry`` (writer.py:391)
    gives up with ``StoppedWaitingError``, which ``drain`` raises (so the hang is the
    missing flag's, not the harness's)."""

    class DownStore:
        def write(self, batch: Batch) -> bool:
            raise psycopg.OperationalError("connection refused")

        def close(self) -> None:
            pass

    writer: Any = DbWriter.__new__(DbWriter)
    writer.options = WriterOptions(backoff=Backoff(initial_s=0.001, max_s=0.001))
    writer.store, writer.stopping, writer.committed = DownStore(), True, 0
    writer.sleep = lambda s: None
    committer = Committer(writer._write)
    try:
        committer.submit(Batch(first_seq=1, last_seq=1))
        with pytest.raises(StoppedWaitingError):
            committer.drain()
    finally:
        committer.close()
