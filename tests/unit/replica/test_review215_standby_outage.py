"""Hostile review 215: the hot standby over a long life.

The secondary away while the primary journals more than the source's frame (``BATCH``) and
more than a journal segment several times over, then back while the primary keeps
appending; a torn last entry in its own journal at its restart; a failover A -> B -> A
done with the pieces ``failover.py`` drives (``begin_epoch``, the fence, ``rebuild``);
and a secondary configured with other units than its primary's journal.

The two faults found (a standby of other units followed and acknowledged) are fixed: their
tests begin "Was (fixed)"."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common import gc_policy
from procs.common.epochs import Epochs
from procs.common.journal_writer import JournalWriter
from procs.common.replication_ack import FENCED, AckBlock, ack_dir
from procs.common.topology import journal_dir
from procs.common.units import pin_units, units_differ
from procs.core.recovery import recover
from procs.replica import cluster
from procs.replica import main as replica_main
from procs.replica.rebuild import ask_epochs, rebuild
from procs.replica.source import BATCH, ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.supervisor.promotion import begin_epoch
from tests.free_ports import free_port
from tests.unit.replica.test_epochs import images, instance
from tests.unit.replica.test_review_replica2_bugs import serve_in_a_thread
from tests.unit.replica.test_review_replica_bugs import following, pair
from tests.unit.replica.test_source import CODEC, commands

SEGMENT = 256 << 10  # the primary's segments: a long outage spans several


class Primary:
    """A primary's journal written as its router does (batches, each rung to the source),
    in small segments."""

    def __init__(self, cfg: RingexConfig) -> None:
        self.journal = JournalWriter(
            journal_dir(cfg),
            slot_size=CODEC.slot_size,
            schema_id=CODEC.journal_schema_id,
            segment_bytes=SEGMENT,
        )
        self.block = AckBlock(ack_dir(cfg.var_dir, cfg.instance))  # the router's mapping

    @property
    def last(self) -> int:
        return self.journal.next_seq - 1

    def batch(self, n: int) -> int:
        first = self.journal.next_seq
        self.journal.append(first, b"".join(map(CODEC.encode_slot, commands(first, n))), n)
        self.block.appended(first + n - 1)
        return first + n - 1

    def close(self) -> None:
        self.journal.close()
        self.block.close()


def segments(cfg: RingexConfig) -> int:
    return sum(1 for p in journal_dir(cfg).iterdir() if p.name.endswith(".journal"))


async def until_true(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def stop(standby: Standby, task: asyncio.Task[None], *, clean: bool) -> None:
    """End ``standby``: cleanly (its snapshots written), or as a crash (its journal only
    closed: what it fsynced is all it holds)."""
    standby.stopping.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if clean:
        standby.close()
    else:
        standby.journal.close()


async def epochs_of(port: int) -> Epochs:
    """``ask_epochs``, once the source there listens."""
    deadline = time.monotonic() + 30.0
    while True:
        try:
            return await asyncio.to_thread(ask_epochs, "127.0.0.1", port)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.01)


def same_history(primary: RingexConfig, secondary: RingexConfig) -> None:
    """Entry for entry the same journal (no gap, no duplicate), and the same state."""
    mine, theirs = images(primary), images(secondary)
    assert len(mine) == len(theirs)
    assert mine == theirs
    assert recover(primary).state_hashes() == recover(secondary).state_hashes()


# -- a long outage ------------------------------------------------------------------------------


def test_a_standby_away_for_many_frames_and_segments_catches_up_exactly_under_load(
    tmp_path: Path,
) -> None:
    """Away for 5 frames' worth (``BATCH``) across several of the primary's segments, then
    back while the primary goes on appending a batch at a time: it ends with the primary's
    journal, entry for entry, its state and the acknowledged seq at the end; every
    acknowledgement the source published since its return is one the standby holds."""
    primary_cfg, secondary = pair(tmp_path)
    primary = Primary(primary_cfg)
    primary.batch(100)
    stop_source = serve_in_a_thread(ReplicationSource(primary_cfg))
    held: list[tuple[int, int]] = []  # (acked seq seen, the standby's durable end then)

    async def scenario() -> None:
        standby = Standby(secondary)
        task = asyncio.create_task(standby.run())
        await until_true(lambda: primary.block.acked_seq == 100)
        await stop(standby, task, clean=False)  # away (a crash: no snapshot)
        away = primary.last + 5 * BATCH + 123
        while primary.last < away:
            primary.batch(500)
        assert segments(primary_cfg) >= 4
        standby = Standby(secondary)
        assert standby.next_seq == 101
        task = asyncio.create_task(standby.run())
        for _ in range(200):  # the primary keeps taking commands during the catch-up
            primary.batch(7)
            held.append((primary.block.acked_seq, standby.next_seq - 1))
            await asyncio.sleep(0)
        await until_true(lambda: task.done() or standby.next_seq == primary.last + 1)
        await until_true(lambda: primary.block.acked_seq == primary.last)
        assert not task.done(), task
        await stop(standby, task, clean=True)

    try:
        asyncio.run(scenario())
    finally:
        stop_source()
    # (the source publishes from its thread: an ack seen here is at most what is durable)
    assert all(acked <= durable for acked, durable in held), held
    primary.close()
    same_history(primary_cfg, secondary)


def test_a_standby_whose_own_last_entry_is_torn_refetches_it_and_goes_on(
    tmp_path: Path,
) -> None:
    """A standby killed mid-append (its last entry half written, never acknowledged) starts
    at the entry before it, asks for the torn one again and ends with the primary's journal:
    the torn bytes cut, no duplicate, no gap."""
    primary_cfg, secondary = pair(tmp_path)
    primary = Primary(primary_cfg)
    primary.batch(40)
    stop_source = serve_in_a_thread(ReplicationSource(primary_cfg))

    async def follow(until_seq: int, *, clean: bool) -> Standby:
        standby = Standby(secondary)
        task = asyncio.create_task(standby.run())
        await until_true(lambda: task.done() or standby.next_seq == until_seq + 1)
        await until_true(lambda: primary.block.acked_seq == until_seq)
        assert not task.done(), task
        await stop(standby, task, clean=clean)
        return standby

    try:
        asyncio.run(follow(40, clean=False))
        newest = max(journal_dir(secondary).glob("*.journal"))
        size = newest.stat().st_size
        with open(newest, "r+b") as f:  # the last entry half on disk
            f.truncate(size - 9)
        primary.batch(25)
        restarted = Standby(secondary)
        assert restarted.next_seq == 40  # seq 40 is not the standby's any more
        restarted.journal.close()
        asyncio.run(follow(65, clean=True))
    finally:
        stop_source()
    primary.close()
    same_history(primary_cfg, secondary)


# -- A -> B -> A ----------------------------------------------------------------------------------


def test_a_failover_and_back_keeps_every_entry_epoch_and_fences_each_old_primary(
    tmp_path: Path,
) -> None:
    """A primary, B its standby. B promoted (epoch 2; A fenced), A rebuilt to follow it;
    then A promoted again (epoch 3) while B still runs: A's Hello fences B (no split
    brain: B's router stops, B serves no one), B rebuilt to follow A. Both end with one
    journal, one state, the epochs (1, 2, 3) and one cluster id."""
    port_a, port_b = free_port(), free_port()
    a_primary = instance(tmp_path, "a", port=port_a)
    b_standby = instance(tmp_path, "b", primary=f"127.0.0.1:{port_a}", port=port_b)
    b_primary = instance(tmp_path, "b", port=port_b)
    a_standby = instance(tmp_path, "a", primary=f"127.0.0.1:{port_b}", port=port_a)

    async def follow(
        leader: RingexConfig, follower: RingexConfig, last: int
    ) -> tuple[ReplicationSource, asyncio.Task[None]]:
        source = ReplicationSource(leader)
        serving = asyncio.create_task(source.run())
        standby = Standby(follower)
        task = asyncio.create_task(standby.run())
        await until_true(lambda: task.done() or source.acked == last)
        assert not task.done(), task
        await stop(standby, task, clean=True)  # stopped for its promotion
        return source, serving

    async def end(source: ReplicationSource, serving: asyncio.Task[None]) -> None:
        source.stopping.set()
        await serving
        source.close()

    async def scenario() -> tuple[str, int]:
        a = Primary(a_primary)
        a.batch(30)
        source_a, serving_a = await follow(a_primary, b_standby, 30)
        # failover.py promote: A fenced, B's new epoch at its next seq; B takes commands
        Epochs.load(journal_dir(a_primary)).fenced(2, "promote").save(journal_dir(a_primary))
        a.close()
        await end(source_a, serving_a)
        assert begin_epoch(b_primary, 2) == 31
        b = Primary(b_primary)
        b.batch(20)
        source_b = ReplicationSource(b_primary)
        serving_b = asyncio.create_task(source_b.run())
        # failover.py demote: A rebuilt to follow B
        rebuild(a_standby, await epochs_of(port_b))
        standby = Standby(a_standby)
        task = asyncio.create_task(standby.run())
        await until_true(lambda: task.done() or source_b.acked == 50)
        assert not task.done(), task
        await stop(standby, task, clean=True)
        # and back: A promoted to epoch 3 while B still runs (its fence by promote not
        # landed, two hosts): A's Hello, of epoch 3, is what fences B
        assert begin_epoch(a_standby, 3) == 51
        hello = Standby(a_standby)
        refused = asyncio.create_task(hello.run())
        await until_true(refused.done)
        hello.journal.close()
        reason = str(refused.exception())
        fenced = int(b.block.words[FENCED])
        b.close()
        await end(source_b, serving_b)
        return reason, fenced

    reason, fenced = asyncio.run(scenario())
    assert "epoch 2 and the standby at 3" in reason, reason
    assert fenced == 3
    assert Epochs.load(journal_dir(b_primary)).fence is not None
    a = Primary(a_primary)
    a.batch(10)  # A sequences on; B is rebuilt and follows it

    async def back() -> None:
        source = ReplicationSource(a_primary)
        serving = asyncio.create_task(source.run())
        rebuild(b_standby, await epochs_of(port_a))  # failover.py demote of B
        standby = Standby(b_standby)
        task = asyncio.create_task(standby.run())
        await until_true(lambda: task.done() or source.acked == 60)
        assert not task.done(), task
        await stop(standby, task, clean=True)
        await end(source, serving)

    asyncio.run(back())
    a.close()
    same_history(a_primary, b_standby)
    for cfg in (a_primary, b_standby):
        epochs = Epochs.load(journal_dir(cfg))
        assert epochs.history == ((1, 1), (2, 31), (3, 51)) and epochs.fence is None, epochs
    assert cluster.load(journal_dir(a_primary)) == cluster.load(journal_dir(b_standby)) != ""


# -- a standby configured with other units --------------------------------------------------------


def _other_units(cfg: RingexConfig) -> RingexConfig:
    """``cfg`` with ETH-USD's quantities in hundredths of what the primary's are."""
    symbols = [
        msgspec.structs.replace(s, qty_decimals=s.qty_decimals - 2) if s.name == "ETH-USD" else s
        for s in cfg.symbols
    ]
    return msgspec.structs.replace(cfg, symbols=symbols)


def test_a_following_standby_of_other_units_stops_when_the_primarys_units_arrive(
    tmp_path: Path,
) -> None:
    """Was (fixed): a new standby whose config gives ETH-USD other qty_decimals than the primary's
    journal pinned follows it and acknowledges every entry: ``units.json`` arrives as a
    gateway state file (``files.py``), is written beside its journal, and nothing looks at
    it (``Standby._follow``'s StateFile branch, procs/replica/standby.py:349-361). The
    primary, in sync mode, counts those acknowledgements as a standby that holds its orders,
    ``failover.py status`` shows it caught up, yet ``promote`` refuses it (other units,
    whatever ``--force`` says): the one standby turns out unusable at the failover, and its
    hot state was applied under the wrong units all along. Should: the standby stops
    (StandbyRefusedError, exit 2) naming the difference as soon as the file arrives, before
    it acknowledges any entry."""
    primary, secondary = pair(tmp_path)
    secondary = _other_units(secondary)
    writer = Primary(primary)
    writer.batch(10)
    writer.close()
    pin_units(primary)  # what the primary's router writes at its first start

    async def scenario() -> tuple[int, BaseException | None]:
        async with following(primary, secondary) as (source, _standby, task):
            await until_true(lambda: task.done() or source.acked == 10, 10.0)
            return source.acked, task.exception() if task.done() else None

    acked, ended = asyncio.run(scenario())
    assert "ETH-USD qty_decimals" in units_differ(secondary)  # the file is there, differing
    assert isinstance(ended, StandbyRefusedError), (acked, ended)
    assert "ETH-USD" in str(ended) and acked == 0, (acked, ended)


def test_a_standby_process_restarted_on_other_units_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed): the standby process (``python -m procs.replica.main standby``, what a systemd
    unit runs; procs/replica/main.py:67-72, ``_standby``) starts on a journal whose
    ``units.json`` differs from its profile and follows its primary again, acknowledging:
    it never calls ``exit_if_other_units``, which README (Configure, units) says "every
    other process" does at its start, exit 2, because a systemd unit restarts on its own
    with an edited profile. Should: exit 2 naming ETH-USD before it follows."""
    monkeypatch.setattr(gc_policy, "settle", lambda _policy: None)  # (pytest's gc)
    primary, secondary = pair(tmp_path)
    writer = Primary(primary)
    writer.batch(10)
    pin_units(primary)

    async def first_run() -> None:  # the standby followed with the primary's own units
        async with following(primary, secondary) as (source, _standby, task):
            await until_true(lambda: task.done() or source.acked == 10)
            assert not task.done()

    asyncio.run(first_run())
    edited = _other_units(secondary)  # the profile edited, the unit restarted
    assert "ETH-USD" in units_differ(edited)
    writer.batch(5)
    writer.close()

    async def restart() -> tuple[int | None, int]:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        process = asyncio.create_task(replica_main._standby(edited))
        try:
            await until_true(lambda: process.done() or source.acked == 15)
            acked = source.acked
            if not process.done():  # still following: stopped here
                process.cancel()
                await asyncio.gather(process, return_exceptions=True)
                return None, acked
            return process.result(), acked
        finally:
            source.stopping.set()
            await serving
            source.close()

    status, acked = asyncio.run(restart())
    assert status == 2 and acked < 15, (status, acked)
