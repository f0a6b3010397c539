"""Review 42: replication to the hot standby under ``fsync = "pipelined"`` and ``"interval"``.

Under those policies the router tells the replication source of a batch (``acks.appended``)
right after its journal write, and the source tails the journal file itself: a standby may
hold entries the primary's host loses in a power cut. ``Disk`` is ``test_review42_pipelined``'s
(``os.fsync`` as a disk: EIO on demand, per inode the size a good fsync made durable), here
also failing the fsync of one directory's files only; ``power_cut`` truncates a journal to
what its fsyncs made durable. Real journals, sources, standbys and TCP; a real router for sync.

Verified right (plain tests):
- a standby ahead of a primary restarted after a power cut is refused at its reconnect,
  whatever the primary sequenced since (nothing, fewer, more seqs): it keeps no entry the
  primary gave another command, and nothing of it counts as acknowledged;
- ``promote`` takes a standby ahead of a crashed primary (those seqs were answered to no one)
  and ``demote``'s rebuild of the old primary keeps its prefix, which the promoted one accepts;
- sync mode under ``pipelined``/``interval``, the standby acking before or after the local
  fsync: no batch is routed (so answered) before it is durable here and acknowledged there;
- a standby whose fsync fails stops (no ack of the frame, no spin), under every policy.

Faults, each fixed (its test failed before): the source refused a standby ahead of it without
a word on the primary's side (now logged, naming the remedy); nothing brought such a standby
back (demote kept its tail: ``agreed_seq`` now finds where the journals agree, by the
primary's history hashes, and the rebuild cuts there); a standby restarted after a failed
fsync acknowledged what its disk lost (the writer's reopen trusted the page cache: a failed
fsync now cuts the entries it did not make durable from the file); a standby whose
state-file fsync kept failing reconnected hundreds of times a second (now with the backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from config import load_profile
from config.schema import JournalConfig, ReplicationConfig, RingexConfig
from procs.common.epochs import Epochs
from procs.common.journal import list_segments
from procs.common.journal_writer import JournalWriter
from procs.common.records import Record
from procs.common.replication_ack import JOURNAL_SEQ, AckBlock, ack_dir
from procs.common.topology import gateway_root, journal_dir
from procs.replica.rebuild import agreed_seq, rebuild
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.router.held import Batch
from procs.supervisor.promotion import begin_epoch
from tests.unit.replica.test_review33_failover import _no_supervisor, _own, _sync_pair, failover
from tests.unit.replica.test_review_replica_bugs import append, pair, until
from tests.unit.replica.test_source import CODEC, commands
from tests.unit.router.test_review42_pipelined import Disk as PipelinedDisk
from tests.unit.router.test_review42_pipelined import answered_in_journal, deposit, journaled
from tests.unit.router.test_router import Exchange, config, fund
from tests.unit.supervisor.test_review_ops_bugs import write


class Disk(PipelinedDisk):
    """``PipelinedDisk``, and ``fail_under``: the next fsync of a file below it fails (EIO)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_under: Path | None = None

    def __call__(self, fd: int) -> None:
        under = self.fail_under
        if under is not None and Path(os.readlink(f"/proc/self/fd/{fd}")).is_relative_to(under):
            self.fail_under = None
            self.lost.add(os.fstat(fd).st_ino)
            raise OSError(errno.EIO, "Input/output error")
        super().__call__(fd)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    d = Disk()
    monkeypatch.setattr(os, "fsync", d)
    yield d
    d.opened.set()


def power_cut(cfg: RingexConfig, disk: Disk) -> int:
    """Cut each segment of ``cfg``'s journal to what its fsyncs made durable; the last seq."""
    for _first, path in list_segments(journal_dir(cfg)):
        os.truncate(path, disk.durable.get(path.stat().st_ino, 0))
    return max(journaled(cfg), default=0)


def unsynced_tail(cfg: RingexConfig, policy: str, first: int, n: int) -> JournalWriter:
    """The router's writer with ``first..first+n-1`` appended under ``policy``, not fsynced yet."""
    w = JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id,
        fsync=policy, fsync_interval_ms=10**6,  # type: ignore[arg-type]
    )  # fmt: skip
    w.append(first, b"".join(map(CODEC.encode_slot, commands(first, n))), n)
    return w


async def stop_source(source: ReplicationSource, serving: asyncio.Task[None]) -> None:
    source.stopping.set()
    await serving
    source.close()


@contextlib.asynccontextmanager
async def running(
    primary: RingexConfig, secondary: RingexConfig
) -> AsyncIterator[tuple[ReplicationSource, Standby, asyncio.Task[None], list[int]]]:
    """A source and a standby following it; how many Hellos the source took (a spin shows)."""
    source, hellos = ReplicationSource(primary), [0]
    real_serve = source.serve

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hellos[0] += 1
        await real_serve(reader, writer)

    source.serve = serve  # type: ignore[method-assign]
    serving = asyncio.create_task(source.run())
    standby = Standby(secondary)
    following = asyncio.create_task(standby.run())
    try:
        yield source, standby, following, hellos
    finally:
        standby.stopping.set()
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        standby.journal.close()
        await stop_source(source, serving)


def agreed_with(primary: RingexConfig, secondary: RingexConfig) -> int:
    """``agreed_seq`` of the (stopped) standby against the primary's running source."""

    async def ask() -> int:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        try:
            await asyncio.sleep(0.05)
            host, port = secondary.replication.primary_address()
            return await asyncio.to_thread(agreed_seq, secondary, host, port)
        finally:
            await stop_source(source, serving)

    return asyncio.run(ask())


# -- 1. a power cut of the primary, then the primary restarts (no failover) --------------------


@pytest.mark.parametrize("policy", ["pipelined", "interval"])
@pytest.mark.parametrize("sequenced_since", [0, 2, 5])
def test_a_standby_ahead_of_a_primary_restarted_after_a_power_cut_is_refused(
    tmp_path: Path, disk: Disk, policy: str, sequenced_since: int
) -> None:
    """The standby took 4..6 from the file before the primary's fsync; the power cut keeps
    1..3; the restarted router sequences ``sequenced_since`` other commands from seq 4. The
    reconnecting standby must be refused (never follow with its own 4..6 under the
    primary's other commands) and nothing it holds may count as acknowledged."""
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)  # durable ("batch")
    router = unsynced_tail(primary, policy, 4, 3)

    async def scenario() -> tuple[Standby, BaseException | None, int]:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        await until(lambda: standby.next_seq == 7)  # shipped before the primary's fsync
        await stop_source(source, serving)  # the power goes
        disk.crashed = True
        router.close()
        disk.crashed = False
        assert power_cut(primary, disk) == 3
        if sequenced_since:  # the restart sequences other commands at 4..
            write(primary, _own(range(4, 4 + sequenced_since)))
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        try:
            await until(following.done, 10.0)
            return standby, following.exception(), source.acked
        finally:
            await stop_source(source, serving)

    standby, died, acked = asyncio.run(scenario())
    standby.journal.close()
    want = "history differs" if sequenced_since >= 3 else "standby is at seq 6"
    assert isinstance(died, StandbyRefusedError) and want in str(died), died
    assert acked == 0 and standby.state.last_seq == 6


def test_the_primary_says_so_when_it_refuses_a_standby_ahead_of_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)
    append(secondary, 1, 6)
    caplog.set_level(logging.INFO, logger="ringex.replica")

    async def scenario() -> BaseException | None:
        async with running(primary, secondary) as (_, _, following, _):
            await until(following.done, 10.0)
            return following.exception()

    assert "standby is at seq 6" in str(asyncio.run(scenario()))
    on_primary = [  # the source's own lines, not the standby's (one logger, two modules)
        r.getMessage()
        for r in caplog.records
        if r.module == "source" and r.levelno >= logging.WARNING
    ]
    assert on_primary, [r.getMessage() for r in caplog.records]


def test_a_standby_ahead_of_its_restarted_primary_can_be_rebuilt(tmp_path: Path) -> None:
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)
    write(primary, _own(range(4, 6)))  # restarted after losing 4..6: other commands at 4..5
    append(secondary, 1, 6)

    agreed = agreed_with(primary, secondary)  # what demote does
    assert agreed == 3
    rebuild(secondary, Epochs.load(journal_dir(primary)), agreed)
    assert max(journaled(secondary)) == 3

    async def scenario() -> int:
        async with running(primary, secondary) as (_, standby, following, _):
            await until(lambda: following.done() or standby.next_seq == 6, 10.0)
            if following.done():
                following.result()  # StandbyRefusedError: fails the test
            return standby.next_seq

    assert asyncio.run(scenario()) == 6


def test_agreement_is_found_past_a_long_shared_history(tmp_path: Path) -> None:
    """A hundred shared entries, then 50 of the primary's and 80 of the standby's own: the
    journals agree through 100, found by probes back from the end and a narrowing."""
    primary, secondary = pair(tmp_path)
    append(primary, 1, 100)
    write(primary, _own(range(101, 151)))
    append(secondary, 1, 180)
    assert agreed_with(primary, secondary) == 100


# -- 2. a power cut of the primary, then failover ------------------------------------------------


def test_promote_takes_a_standby_ahead_of_a_crashed_primary_and_demote_keeps_its_prefix(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sync mode: the standby acknowledged 4..6, the router held them for its own fsync, the
    power cut kept 1..3 (the block's words as the router left them). 4..6 were answered to no
    one: promoting the standby (ahead) is right; the old primary, demoted, keeps 1..3 (cuts
    nothing answered) and its history is the promoted one's prefix (its Hello is accepted)."""
    primary_path, standby_path = _sync_pair(tmp_path, instance)
    primary, standby = load_profile(str(primary_path)), load_profile(str(standby_path))
    write(primary, commands(1, 3))
    write(standby, commands(1, 6))
    block = AckBlock(ack_dir(primary.var_dir, primary.instance))
    block.appended(6)
    block.acknowledged(6)
    block.close()
    started = _no_supervisor(monkeypatch)
    assert failover.promote(str(primary_path), str(standby_path)) == 0 and len(started) == 1
    promoted = load_profile(str(standby_path.with_suffix(".promoted.toml")))
    assert begin_epoch(promoted, 2) == 7  # what its supervisor does
    source = ReplicationSource(promoted)
    try:
        done = rebuild(primary, source.epochs)
        assert (done.kept_seq, done.cut) == (3, 0)
        old = Standby(msgspec.structs.replace(primary, replication=ReplicationConfig()))
        try:
            assert old.next_seq == 4
            assert source._history_before(4).digest() == old.digest
        finally:
            old.journal.close()
    finally:
        source.close()


# -- 3. sync replication under "pipelined" and "interval": answered only once durable twice --------


@pytest.mark.parametrize("policy", ["pipelined", "interval"])
@pytest.mark.parametrize("standby_acks", ["before_the_fsync", "after_the_fsync"])
def test_sync_mode_routes_a_batch_only_once_durable_here_and_acknowledged_there(
    instance: str, tmp_path: Path, disk: Disk, monkeypatch: pytest.MonkeyPatch,
    policy: str, standby_acks: str,
) -> None:  # fmt: skip
    """A real ``SyncGate`` on a real block; the test is the source: it acknowledges each
    append at once (a standby faster than this disk), or 6 ms later from a thread (slower).
    Every ``_route`` (the only path to a matcher and to an OK) must find its batch durable
    here and acknowledged; a power cut at the end loses no answered command."""
    cfg = msgspec.structs.replace(
        config(instance, tmp_path), router_batch=3,
        journal=JournalConfig(fsync=policy, fsync_interval_ms=3),  # type: ignore[arg-type]
        replication=ReplicationConfig(listen_port=1, mode="sync", sync_timeout_ms=0),
    )  # fmt: skip
    source = AckBlock(ack_dir(cfg.var_dir, cfg.instance))
    source.acknowledged(10**9)  # funding goes through at once
    ex = Exchange(cfg)
    stopping = threading.Event()

    def standby() -> None:  # acknowledges what was appended 6 ms ago
        while not stopping.is_set():
            seq = source.words[JOURNAL_SEQ]
            time.sleep(0.006)
            source.acknowledged(max(seq, source.acked_seq))

    acker = threading.Thread(target=standby)
    try:
        fund(ex, 7, usd=10**9, btc=0)
        ex.replies_of(1)
        router, block = ex.router, ex.router.acks
        assert block is not None and router.gate is not None
        source.acknowledged(router.journal.next_seq - 1)
        if standby_acks == "before_the_fsync":
            real_appended = block.appended

            def appended(seq: int) -> None:
                real_appended(seq)
                source.acknowledged(seq)

            monkeypatch.setattr(block, "appended", appended)
        else:
            acker.start()
        early: list[tuple[int, int, int]] = []  # (batch's last seq, durable here, acked)
        real_route = router._route

        def route(batch: Batch) -> None:
            if batch.last_seq > min(router.journal.durable_seq, source.acked_seq):
                early.append((batch.last_seq, router.journal.durable_seq, source.acked_seq))
            real_route(batch)

        monkeypatch.setattr(router, "_route", route)
        disk.slow_s = 0.004
        told: list[Record] = []
        for k in range(12):
            ex.gateways[1].publish_batch([deposit(1000 + 2 * k), deposit(1001 + 2 * k)])
            ex.gateways[2].publish_batch([deposit(1500 + k, 2)])
            router.step(timeout_s=0.001)
            ex.matcher.step(timeout_s=0.001)
            told += ex.replies_of(1) + ex.replies[2].read(64)
        assert early == [], f"routed early: {early}"
        disk.crashed = True  # the power goes: no close, no more fsync
        entries = {s: r for s, r in journaled(cfg).items() if s <= power_cut(cfg, disk)}
        assert told and answered_in_journal(told, entries) == []
    finally:
        stopping.set()
        if acker.is_alive():
            acker.join(5)
        disk.crashed = False
        ex.stop()
        source.close()


# -- 4. the standby's own journal writer under a failed fsync --------------------------------------


def follow_into_a_failed_fsync(
    tmp_path: Path, disk: Disk, policy: str
) -> tuple[RingexConfig, RingexConfig, BaseException | None, int, int]:
    """A standby (journal ``policy``) follows 1..3; the fsync of its frame 4..6 fails. Returns
    both configs, what ended the standby's run, the source's acknowledged seq, its Hellos."""
    primary, secondary = pair(tmp_path)
    secondary = msgspec.structs.replace(secondary, journal=JournalConfig(fsync=policy))  # type: ignore[arg-type]
    append(primary, 1, 3)

    async def scenario() -> tuple[BaseException | None, int, int]:
        async with running(primary, secondary) as (source, standby, following, hellos):
            await until(lambda: source.acked == 3)
            disk.fail_under = journal_dir(secondary)
            append(primary, 4, 3)
            await until(following.done, 5.0)
            await asyncio.sleep(0.2)  # a spinning standby would say Hello again meanwhile
            standby.close()  # main()'s finally
            return following.exception(), source.acked, hellos[0]

    return primary, secondary, *asyncio.run(scenario())


@pytest.mark.parametrize("policy", ["batch", "pipelined", "interval"])
def test_a_standby_whose_fsync_fails_stops_acknowledging_nothing_of_the_frame(
    tmp_path: Path, disk: Disk, policy: str
) -> None:
    _, _, died, acked, hellos = follow_into_a_failed_fsync(tmp_path, disk, policy)
    assert isinstance(died, OSError) and died.errno == errno.EIO, died
    assert (acked, hellos) == (3, 1)


def test_a_standby_restarted_after_a_failed_fsync_acknowledges_only_what_its_disk_holds(
    tmp_path: Path, disk: Disk
) -> None:
    primary, secondary, died, _, _ = follow_into_a_failed_fsync(tmp_path, disk, "pipelined")
    assert isinstance(died, OSError)
    # the fix: the failed fsync's entries are cut from the file, so a restart cannot take
    # the page cache's copy for durable; it fetches them again and writes them anew
    assert max(journaled(secondary)) == 3

    async def restart() -> int:  # the supervisor restarts the standby
        async with running(primary, secondary) as (source, _, following, _):
            await until(lambda: source.acked >= 6 or following.done())
            await asyncio.sleep(0.1)
            return source.acked

    disk.lost.clear()  # 4..6 are written again: new pages, which a good fsync makes durable
    acked = asyncio.run(restart())
    on_disk = power_cut(secondary, disk)  # the standby's host loses power
    assert acked <= on_disk, f"acknowledged seq {acked}, the standby's disk holds 1..{on_disk}"
    assert acked == 6


def test_a_standby_whose_state_file_fsync_keeps_failing_does_not_spin(
    tmp_path: Path, disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)
    gateway_root(primary).mkdir(parents=True)
    (gateway_root(primary) / "users.json").write_text("{}")
    real_call = Disk.__call__

    def failing(self: Disk, fd: int) -> None:
        self.fail_under = gateway_root(secondary)  # every time: the disk stays bad
        real_call(self, fd)

    monkeypatch.setattr(Disk, "__call__", failing)

    async def scenario() -> tuple[bool, int]:
        async with running(primary, secondary) as (_, _, following, hellos):
            await asyncio.sleep(1.0)
            return following.done(), hellos[0]

    stopped, hellos = asyncio.run(scenario())
    assert stopped or hellos <= 10, f"{hellos} connections in 1 s, still following"
