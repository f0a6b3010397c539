"""Review 121, second part: the docstrings of ``intake.py``, ``held.py``, ``commits.py``,
``reply_queue.py``, ``reread.py``, ``gateway_rings.py``, ``applied.py``, ``snapshots.py``,
``time_use.py`` and ``main.py``'s balances, back-pressure and close, held to the code. The
convention and the disagreements are in ``test_review121_shell_docstrings.py``; this part's
one: a watch's snapshot lost to a crash after ``_commit_answered`` committed its ring (fixed
since: the ring stays uncommitted while the watch waits).
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from procs.common.record_codec import RecordDecodeError
from procs.common.records import Balance, CreateAccount, Heartbeat, WatchBalances
from procs.common.topology import RECOVERED_SOURCE
from procs.common.types import Side
from procs.core.sequencer import Decision
from procs.router import (
    applied,
    commits,
    gateway_rings,
    held,
    intake,
    reply_queue,
    reread,
    snapshots,
    time_use,
)
from procs.router.held import Batch, HeldBatches
from procs.router.main import RouterShell
from procs.router.time_use import BEHIND, TimeUse
from shm import RingError
from tests.unit.router.test_review8_owed_replies import REJECTED, RING, funded, kill_router, told
from tests.unit.router.test_review121_shell_docstrings import (
    exchange,
    refusal,
    restarted,
    says,
    shell,
    with_journal,
)
from tests.unit.router.test_router import Exchange, order
from tests.unit.router.test_router import config as router_config
from tests.unit.test_review109_readme_processes2 import Commits

__all__ = ["exchange"]
BUY = Side.BUY


def push(account: int, asset: int, free: int) -> Balance:
    return Balance(0, 0, 1, 0, 0, account, asset, free, 0, 0)


class Producer:
    """A reply ring's producer: room for ``room`` records, what it published."""

    def __init__(self, capacity: int = 8, room: int = 8) -> None:
        self.ring = SimpleNamespace(capacity=capacity)
        self.room, self.batches = room, list[int]()

    def try_publish_batch(self, batch: list[Any]) -> bool:
        if len(batch) > self.room:
            return False
        self.room -= len(batch)
        self.batches.append(len(batch))
        return True

    def has_room(self, count: int) -> bool:
        return count <= self.room


# -- main.py: replies, owed OKs, back-pressure, close ---------------------------------------------


def test_books_behind_takes_nothing_after_one_idle_round() -> None:
    """``_books_behind``: "True (after one idle round) while a matcher has more than an
    eighth of its input ring unread: no command is taken from the gateways until it catches
    up" (the wait counted ``BEHIND``; replies still go out, the journal's promises kept)."""
    says(RouterShell._books_behind, "True (after one idle round) while a matcher has more than an")
    calls: list[Any] = []
    book = SimpleNamespace(
        backlog=lambda: 9,
        ring=SimpleNamespace(capacity=64),
        idle_round=lambda room, rounds: calls.append((room, rounds)),
    )
    rig = shell(
        to_matchers={"m1": book},
        _books_limit=8,
        _behind_rounds=0,
        journal=SimpleNamespace(maybe_sync=lambda: calls.append("sync")),
        time_use=SimpleNamespace(waited=lambda s, t: calls.append(s)),
    )
    rig._flush_replies = lambda: calls.append("flush")
    assert rig._books_behind() and rig._books_behind()
    assert calls == ["flush", "sync", (56, 0), BEHIND, "flush", "sync", (56, 1), BEHIND]
    book.backlog = lambda: 8
    assert not rig._books_behind() and rig._behind_rounds == 0


def test_balances_go_out_of_a_durable_state_only(exchange: Exchange) -> None:
    """``_flush_replies``: "balances only of a durable state: none while a batch is held";
    held.py: "until then nothing of it leaves the router (no command to a matcher, so no
    execution report; no reply, no balance push)": under ``"interval"`` a watch's snapshot
    waits for the held batch, then the push of its reservation comes first."""
    says(RouterShell._flush_replies, "balances only of a durable state: none while a batch is held")
    says(held, "no reply, no balance push)")
    says(RouterShell._queue_balances, "pushes first, so a new watch's snapshot is not followed")
    ex = restarted(exchange, with_journal(exchange.cfg, fsync="interval", fsync_interval_ms=10**6))
    ex.gateways[2].publish_batch([WatchBalances(0, 0, 2, 1, 77, 7, 60_000)])
    ex.router.step(timeout_s=0.001)  # the watch (nothing held): answered
    first = ex.replies_of(2)
    assert first and all(getattr(b, "client_ref", 0) == 77 for b in first)
    ex.gateways[1].publish_batch([order(20, 7, BUY, 900, 1)])
    ex.gateways[2].publish_batch([WatchBalances(0, 0, 2, 1, 78, 7, 60_000)])
    ex.router.step(timeout_s=0.001)
    assert ex.router._held and ex.replies_of(2) == []
    ex.router.journal.sync()
    ex.router.step(timeout_s=0.001)
    refs = [getattr(b, "client_ref", 0) for b in ex.replies_of(2)]
    assert refs[0] == 0 and refs == sorted(refs) and refs[-1] == 78  # pushes, then snapshot


def test_a_later_batch_waits_behind_a_held_one(exchange: Exchange) -> None:
    """held.py: "each later batch waits behind the held ones (replies keep their order)";
    ``Batch.last_seq``: "0: it accepted none": a refusal decided after a held creation is
    answered after it (both on the admin ring, which carries an account's creation: review
    343)."""
    says(held, "each later batch waits behind the held ones (replies keep their order)")
    ex = restarted(exchange, with_journal(exchange.cfg, fsync="interval", fsync_interval_ms=10**6))
    ex.gateways[RING].publish_batch([CreateAccount(0, 0, RING, 1, 21, 21)])
    ex.router.step(timeout_s=0.001)
    ex.gateways[RING].publish_batch([order(22, 9, BUY, 900, 1, gateway=RING)])
    ex.router.step(timeout_s=0.001)
    assert [b.last_seq for b in ex.router._held._batches][1] == 0 and told(ex) == []
    ex.router.journal.sync()
    ex.router.step(timeout_s=0.001)
    assert told(ex) == [(21, "AccountReply", "OK"), (22, *REJECTED)]


def test_close_routes_what_was_journaled(exchange: Exchange) -> None:
    """``close``: "Make what was journaled durable and route it, then release the journal
    and the rings": a held creation (on the admin ring: review 343) is answered at close,
    and a new router opens the journal."""
    says(RouterShell.close, "Make what was journaled durable and route it, then release")
    ex = restarted(exchange, with_journal(exchange.cfg, fsync="interval", fsync_interval_ms=10**6))
    ex.gateways[RING].publish_batch([CreateAccount(0, 0, RING, 1, 23, 23)])
    ex.router.step(timeout_s=0.001)
    assert ex.router._held
    ex.router.close()
    assert told(ex) == [(23, "AccountReply", "OK")]
    ex.router = RouterShell(ex.cfg)


def test_close_releases_everything_when_the_fsync_fails(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``close``: "whatever failed before (an fsync failing here too: review 42)": the
    fsync raises, and the journal's lock is released all the same (a restart opens it)."""
    says(RouterShell.close, "whatever failed before (an fsync failing here too: review 42)")

    def fail() -> None:
        raise OSError("EIO")

    monkeypatch.setattr(exchange.router.journal, "sync", fail)
    with pytest.raises(OSError):
        exchange.router.close()
    assert exchange.router.time_use._closed
    exchange.router = RouterShell(exchange.cfg)


def test_abandon_answers_only_refusals_before_a_waiting_command() -> None:
    """``_abandon``: "Refusals ... are answered now, those a gateway sent before its first
    command of the batch that waits", a gateway with a held batch waiting too."""
    says(RouterShell._abandon, "those a gateway sent before its first command of the batch")
    answered: list[tuple[int, Any]] = []
    held_ = HeldBatches()
    held_.hold(Batch(4, [], [3], []))
    rig = shell(
        _held=held_,
        acks=None,
        journal=SimpleNamespace(next_seq=9),
        _answer=lambda g, r: answered.append((g, r)),
        _send_pending=lambda: None,
    )
    D = Decision  # noqa: N806
    cmd: Any = SimpleNamespace(seq=8)
    decisions = [
        D(None, reply=refusal(1)),
        D(cmd),
        D(None, reply=refusal(2)),
        D(None, reply=refusal(5, 2)),
        D(None, reply=refusal(6, 3)),
    ]
    assert rig._abandon(decisions, [1, 1, 1, 2, 3]) == 5
    assert [(g, r.client_ref) for g, r in answered] == [(1, 1), (2, 5)]


# -- intake.py -------------------------------------------------------------------------------------


def test_one_trading_gateway_is_waited_on_at_most_admin_poll_s() -> None:
    """``ADMIN_POLL_S``: "Longest the router parks on its one trading gateway's ring before
    it looks at the admin ring"; ``_idle``: "With one trading gateway, wait on its ring"."""
    says(intake, "Longest the router parks on its one trading gateway's ring before it looks")
    waits: list[float] = []
    gw = SimpleNamespace(wait=waits.append)
    rig = shell(
        inputs=[(1, gw), (0, SimpleNamespace())],
        pending_replies={1: collections.deque(), 0: collections.deque()},
    )
    rig._idle(1.0)
    assert waits == [intake.ADMIN_POLL_S]


def test_several_gateways_are_polled_with_a_backoff_from_a_yield_to_1_ms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``_idle``: "with several, poll them all with a backoff from a yield to a 1 ms sleep";
    "A gateway whose replies wait for room has its commands left unread ... its ring's
    records end no wait ... room for its replies' next chunk does (``can_send``)"."""
    says(intake.GatewayIntake._idle, "poll them all with a backoff from a yield to a 1 ms sleep")
    says(intake.GatewayIntake._idle, "its ring's records end no wait, or the router would spin")
    naps: list[float] = []
    monkeypatch.setattr(time, "sleep", naps.append)
    busy = SimpleNamespace(ready=lambda: True)
    quiet = SimpleNamespace(ready=lambda: False)
    full = Producer(capacity=8, room=0)
    rig = shell(
        inputs=[(1, busy), (2, quiet), (0, quiet)],
        from_matchers=[quiet],
        pending_replies={
            1: collections.deque([refusal(1)]),
            2: collections.deque(),
            0: collections.deque(),
        },
        replies={1: full},
    )
    rig._idle(0.01)  # gateway 1's records wait: they do not end it
    assert naps[:3] == [0.0, 50e-6, 100e-6] and max(naps) == 1e-3
    naps.clear()
    full.room = 2  # room for the next chunk (capacity // 4)
    rig._idle(10.0)
    assert naps == []


def test_pipelined_sync_goes_to_the_thread_only_when_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``_pipelined_sync``: "with ``[journal] pipeline_behind`` commands or more waiting
    ..., the fsync goes to the journal's thread ...; with fewer, it runs here"; "once they
    have waited ``BALANCES_WAIT_S``, the fsync runs here"; "A matcher's events waiting do
    not count" (``_waiting`` reads the gateways' rings)."""
    says(intake.GatewayIntake._pipelined_sync, "with fewer, it runs here, as under")
    says(intake.GatewayIntake._pipelined_sync, "A matcher's events waiting do not count")
    says(intake, "Longest wait of balance watches for a durable state under")
    calls: list[str] = []
    ring = SimpleNamespace(cursor=lambda: 10)
    journal = SimpleNamespace(
        sync=lambda: calls.append("sync"), maybe_sync=lambda: calls.append("thread")
    )
    rig = shell(
        cfg=SimpleNamespace(journal=SimpleNamespace(pipeline_behind=4)),
        journal=journal,
        inputs=[(1, SimpleNamespace(ring=ring, sequence=6))],
        _balances_since=0.0,
        pending_replies={1: collections.deque()},
        from_matchers=[],
    )
    rig._pipelined_sync()  # 4 waiting
    rig.inputs[0][1].sequence = 7
    rig._pipelined_sync()  # 3 waiting
    rig.inputs[0][1].sequence = 0
    rig._balances_since = time.monotonic() - 2 * intake.BALANCES_WAIT_S
    rig._pipelined_sync()  # 10 waiting, balances waited too long
    assert calls == ["thread", "sync", "sync"]


def test_a_record_that_is_not_a_command_is_ignored(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    """``_take``: "the decisions, each one's gateway, the watch requests, and each ring's
    read position after its part"; a record not a command is "a gateway's bug: never the
    router's end" (logged, ignored, its ring read on)."""
    says(intake.GatewayIntake._take, "and each ring's read position after its part.")
    exchange.gateways[1].publish_batch([refusal(5), order(6, 9, BUY, 900, 1)])
    with caplog.at_level("ERROR", logger="ringex.router"):
        exchange.router.step(timeout_s=0.001)
    assert "which is not a command: ignored" in caplog.text
    assert told(exchange, 1) == [(6, *REJECTED)]


# -- held.py, commits.py ---------------------------------------------------------------------------


def test_held_batches_leave_oldest_first_and_name_their_gateways() -> None:
    """``HeldBatches.durable``: "The held batches, oldest first, whose commands are durable";
    ``gateways``: "The gateways with a command in a held batch" (a watch's too)."""
    says(HeldBatches.durable, "The held batches, oldest first, whose commands are durable")
    says(HeldBatches.gateways, "The gateways with a command in a held batch: their rings")
    batches = HeldBatches()
    watch = WatchBalances(0, 0, 4, 1, 1, 7, 1)
    for last, origins in ((3, [1]), (0, [2]), (6, [1])):
        batches.hold(Batch(last, [], origins, [(4, watch)] if last == 6 else []))
    assert batches.gateways() == {1, 2, 4}
    assert [b.last_seq for b in batches.durable(5)] == [3, 0]
    assert batches.gateways() == {1, 4}


def test_a_commit_past_the_floor_does_nothing_and_restarts_the_wait() -> None:
    """``_committed``: "wholly (``upto`` None) or up to a routed batch's end; the wait for
    its answers then starts anew" (a commit under one made already does nothing)."""
    says(commits.RingCommits._committed, "or up to a routed batch's end; the wait for its")
    rig = Commits()
    consumer = rig.inputs[0][1]
    rig._committed(1, consumer, 5, at=3)
    assert rig.commits == [(1, 5)] and rig._waiting_since[1] == 3
    rig._committed(1, consumer, None, at=4)
    rig._committed(1, consumer, 8, at=4)  # under the floor (9): no commit
    assert rig.commits == [(1, 5), (1, None)] and 1 not in rig._waiting_since


def test_a_held_batch_waiting_past_half_the_window_is_made_durable() -> None:
    """``_commit_answered``: a gateway waiting on a held batch past half the restart's
    look-back: "make the batches durable and route them now rather than commit with their
    answers unsent"."""
    says(commits.RingCommits._commit_answered, "committed up to its newest routed")
    calls: list[str] = []
    rig = Commits(window=16)
    rig.journal.sync = lambda: calls.append("sync")  # type: ignore[method-assign]

    def route() -> None:
        calls.append("route")
        rig._held._batches.clear()

    rig._route_durable = route  # type: ignore[method-assign]
    rig._held.hold(Batch(3, [], [1], []))
    rig._commit_answered()
    rig.journal.next_seq = 10  # type: ignore[misc]
    rig._commit_answered()
    assert calls == ["sync", "route"] and rig.commits[-2:] == [(1, None), (2, None)]


def test_a_watch_answered_only_in_memory_is_read_again_after_a_crash(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """commits.py: "so a restart reads again exactly those whose answers were only in its
    memory". ``"pipelined"``, ``pipeline_behind`` 1: step 1 holds [order A (gw1), watch W
    (gw2)], its fsync on the thread; in step 2 that fsync ends while C is decided and
    journaled (its own fsync then in flight): A's batch is routed, W waits for a durable
    state in memory, and gw2's ring is committed wholly. Killed there, the restart has no
    W to read: gw2 never gets its snapshot."""
    says(commits, "so a restart reads again exactly those whose answers were only in its memory")
    cfg = msgspec.structs.replace(router_config(instance, tmp_path), router_batch=3)
    ex = funded(with_journal(cfg, fsync="pipelined", pipeline_behind=1))
    gate, real_fsync = threading.Event(), os.fsync

    def fsync(fd: int) -> None:  # the thread's fsync ends when the test says
        if threading.current_thread() is not threading.main_thread():
            assert gate.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    try:
        router = ex.router
        ex.gateways[1].publish_batch([order(k, 7, BUY, 900, 1) for k in (31, 32, 33)])
        ex.gateways[2].publish_batch([WatchBalances(0, 0, 2, 1, 77, 7, 60_000)])
        router.step(timeout_s=0.001)
        assert router._held and router.journal._flight is not None
        first, pipelined_sync = router.journal._flight[0], router._pipelined_sync

        def ends_meanwhile() -> None:
            gate.set()
            first.result(10)
            gate.clear()
            pipelined_sync()

        monkeypatch.setattr(router, "_pipelined_sync", ends_meanwhile)
        router.step(timeout_s=0.001)
        assert router._watch_requests and ex.replies_of(2) == []  # W only in memory
        gate.set()
        kill_router(ex, monkeypatch)
        ex.pump()
        assert 77 in [getattr(b, "client_ref", 0) for b in ex.replies_of(2)]
    finally:
        gate.set()
        ex.stop()


# -- reply_queue.py --------------------------------------------------------------------------------


def test_replies_go_out_in_chunks_and_waiting_pushes_merge() -> None:
    """reply_queue.py: "Its replies go out in chunks that fit the ring"; "the balance pushes
    among them are merged: ... only the newest of an account's asset matters" (once the
    queue is longer than the ring, ``send_pending``); ``can_send``: "the first chunk of
    ``queue`` fits"."""
    says(reply_queue, "Its replies go out in chunks that fit the ring")
    says(reply_queue, "only the newest of an account's asset matters.")
    says(reply_queue.can_send, "the first chunk of ``queue`` fits")
    producer: Any = Producer(capacity=8, room=4)
    queue: collections.deque[Any] = collections.deque([refusal(k) for k in range(5)])
    reply_queue.send_pending(queue, producer)
    assert producer.batches == [2, 2] and len(queue) == 1
    assert not reply_queue.can_send(queue, producer)
    queue += [*(push(7, 1, k) for k in range(9)), push(8, 1, 0), refusal(9)]
    reply_queue.send_pending(queue, producer)
    assert [(type(r).__name__, getattr(r, "free", None)) for r in queue] == [
        ("Rejected", None),
        ("Balance", 8),
        ("Balance", 0),
        ("Rejected", None),
    ]


# -- reread.py, gateway_rings.py -------------------------------------------------------------------


def test_after_the_reread_the_gateway_is_forgotten(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """reread.py: "Past the end a ring held at the start, nothing can be, and the gateway is
    forgotten"; "a command answered then ... is not decided again": killed after the
    replies left, before the commit, a refusal is not told twice."""
    says(reread, "Past the end a ring held at the start, nothing can be, and the gateway is")
    says(reread, "a command answered then (its reply is still in the gateway's reply ring) is")
    exchange.gateways[1].publish_batch([order(40, 9, BUY, 900, 1)])
    monkeypatch.setattr(exchange.router, "_commit_answered", lambda: None)
    exchange.router.step(timeout_s=0.001)
    kill_router(exchange, monkeypatch)
    assert 1 in exchange.router._reread
    exchange.pump()
    assert told(exchange, 1) == [(40, *REJECTED)] and 1 not in exchange.router._reread


def test_answered_reads_the_newest_capacity_replies_skipping_overwritten() -> None:
    """``answered``: "(session, client_ref) of every reply still in a gateway's reply ring
    (its newest ``capacity`` records)" (one overwritten meanwhile passed over)."""
    says(reread.answered, "(session, client_ref) of every reply still in a gateway's reply ring")
    records = {n: refusal(n) for n in range(10)}

    def record(n: int) -> Any:
        if n == 7:
            raise RingError("overwritten")
        return records[n]

    ring = SimpleNamespace(cursor=lambda: 10, capacity=4, record=record)
    assert reread.answered(ring) == {(1, 6), (1, 8), (1, 9)}  # type: ignore[arg-type]


def test_a_bad_record_is_passed_over_after_the_good_ones_before_it() -> None:
    """``read_commands``: "One that does not decode ... is logged and passed over once it
    is the first unread ...; the records before it come first"."""
    says(gateway_rings.read_commands, "the records before it come first")
    stream: list[Any] = ["a", "b", RecordDecodeError("bad"), "c", None]
    read_commands: Any = gateway_rings.read_commands
    passed: list[int] = []

    def poll() -> Any:
        item = stream[0]
        if isinstance(item, Exception):
            raise item
        return stream.pop(0)

    def read(quota: int) -> Any:
        raise RecordDecodeError("bad")

    consumer = SimpleNamespace(
        read=read,
        poll=poll,
        sequence=2,
        ring=SimpleNamespace(name="g"),
        pass_over=lambda: passed.append(stream.pop(0)),
    )
    assert read_commands(consumer, 10) == ["a", "b"]
    assert read_commands(consumer, 10) == ["c"] and len(passed) == 1


# -- applied.py ------------------------------------------------------------------------------------


def test_settle_reads_a_whole_ring_in_settle_batch_reads_and_labels_below_outstanding() -> None:
    """``settle``: "up to a whole ring of each one's events (in reads of ``SETTLE_BATCH``)";
    ``whole_seq``: "less one where a full read may end inside that command's events", "a
    matcher's mark ... closes the events before it"; ``_applied_label``: "below any
    command still outstanding at a matcher"."""
    says(applied.AppliedEvents.settle, "up to a whole ring of each one's events (in reads of")
    says(applied.whole_seq, "which closes the events before it.")
    says(applied.AppliedEvents._applied_label, "below any command still outstanding at a matcher")
    full = applied.SETTLE_BATCH
    reads: list[list[Any]] = [
        [SimpleNamespace(seq=5)] * full,
        [SimpleNamespace(seq=6)] * full,
        ["x"],
    ]
    sizes: list[int] = []

    def read(n: int) -> list[Any]:
        sizes.append(n)
        return reads.pop(0)

    consumer = SimpleNamespace(ring=SimpleNamespace(capacity=2 * full, name="out"), read=read)
    rig = shell(
        from_matchers=[consumer],
        sequencer=SimpleNamespace(settle=lambda e: None),
        watches=[],
        applied_seq=0,
        _routed_seq=9,
        time_use=TimeUse.__new__(TimeUse),
        _outstanding={"out": collections.deque([5, 6, 8])},
    )
    rig.time_use.settled = lambda n: None
    assert rig.settle() == 2 * full and sizes == [full, full]
    assert rig.applied_seq == 5 and list(rig._outstanding["out"]) == [6, 8]
    assert rig._applied_label() == 5
    mark = Heartbeat(0, RECOVERED_SOURCE, 7)
    four: Any = SimpleNamespace(seq=4)
    assert applied.whole_seq([four, mark], 5) == 4
    assert applied.whole_seq([four] * 5, 5) == 3


# -- snapshots.py ----------------------------------------------------------------------------------


def test_snapshots_start_by_count_from_the_recovered_one_or_by_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """snapshots.py: "Every ``journal.snapshot_every`` commands, or
    ``journal.snapshot_every_s`` seconds after the last snapshot when any command came
    since"; "Counting starts from the snapshot recovery began from"; the journal synced
    first ("the child reads what is durable"); none while one runs."""
    says(snapshots, "Counting starts from the snapshot recovery began from, not from this start")
    started: list[int] = []

    class Child:
        pid, alive = 1, True

        def __init__(self, target: Any, args: Any, name: str, daemon: bool) -> None:
            self.seq = args[1]

        def start(self) -> None:
            started.append(self.seq)

        def is_alive(self) -> bool:
            return Child.alive

        @property
        def exitcode(self) -> int | None:  # (Process's: None while it runs)
            return None if Child.alive else 0

        def join(self, timeout: float) -> None:
            pass

    monkeypatch.setattr(multiprocessing, "get_context", lambda kind: SimpleNamespace(Process=Child))
    monkeypatch.setattr(snapshots, "_snapshot_age_s", lambda cfg, seq: 0.0)
    synced: list[int] = []
    journal = SimpleNamespace(sync=lambda: synced.append(1), lock_fd=-1)
    cadence = SimpleNamespace(snapshot_every=10, snapshot_every_s=0.0)
    jobs = snapshots.Snapshots(SimpleNamespace(journal=cadence), 100)  # type: ignore[arg-type]
    jobs.maybe_start(109, journal)  # type: ignore[arg-type]
    jobs.maybe_start(110, journal)  # type: ignore[arg-type]
    jobs.maybe_start(125, journal)  # type: ignore[arg-type]  # the child still runs
    Child.alive = False
    cadence.snapshot_every, cadence.snapshot_every_s = 0, 0.01
    time.sleep(0.02)
    jobs.maybe_start(125, journal)  # type: ignore[arg-type]  # by time: due at once
    jobs.maybe_start(125, journal)  # type: ignore[arg-type]  # no command since
    assert started == [110, 125] and len(synced) == 2 and jobs.done(0)


# -- time_use.py -----------------------------------------------------------------------------------


def test_time_use_stores_at_most_once_a_millisecond_and_closes_once(instance: str) -> None:
    """time_use.py: "The page is stored at most once a millisecond"; ``waited``: "A wait in
    ``state`` ... has ended" (not busy); ``close``: "once (a router's close may run twice)"."""
    says(time_use, "The page is stored at most once a millisecond")
    says(TimeUse.close, "once (a router's close may run twice)")
    use = TimeUse(instance)
    use.begin(0)
    use.step_done(1, 0)  # stored
    use.step_done(1, 0)  # within the millisecond: not
    assert use.page.values[time_use.COMMANDS] == 1 and use.values[time_use.COMMANDS] == 2
    began = time.perf_counter_ns() - 5_000_000
    use.waited(BEHIND, began)
    use.step_done(0, 2_000_000)
    assert use.values[BEHIND] >= 5_000_000 and use.values[time_use.FSYNC] == 2_000_000
    assert use.values[time_use.BUSY] < 5_000_000
    use.close()
    use.close()
