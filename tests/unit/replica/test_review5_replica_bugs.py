"""A fifth hostile review of replication, the sync gate and failover: each test shows one bug
and fails on the code as reviewed (each docstring says what is wrong and what a correct
system does)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from procs.common.epochs import EpochsError
from procs.common.replication_ack import DEGRADED, AckBlock, SyncGate
from procs.replica.files import CHUNK, FileReceiver, FileShipper
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby
from procs.replica.wire import GENESIS, Ack, Entries, EpochHistory, Hello, receive, send
from procs.supervisor.promotion import begin_epoch
from tests.unit.replica.test_review3_replica_bugs import frame
from tests.unit.replica.test_review_replica_bugs import append, pair


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def test_one_hello_from_seq_0_locks_every_later_standby_out(tmp_path: Path) -> None:
    """``ReplicationSource.serve`` checks that a Hello's ``next_seq`` is not past the
    journal's end, but not that it is at least 1. A Hello(next_seq=0) (any client of the
    replication port, a standby's bug) passes the history check (the hash before seq 0 is
    the empty one) and ``_history_before(0)`` caches ``(0, GENESIS)``; its stream then dies
    on ``JournalReader.entries(0)`` (ValueError). From then on every Hello takes the cached
    hash as its start (``self._hashed[0] <= seq``) and reads ``entries(0)`` again: every
    later standby, the real one included, is dropped right after the EpochHistory and
    reconnects forever, until the source restarts; meanwhile a sync primary degrades and
    nothing is replicated. (The bad Hello also publishes an acknowledged seq of -1.)
    Expected: such a Hello is refused, and the real standby then catches up. Actual: the
    real standby never gets an entry."""
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)
    port = primary.replication.listen_port

    async def scenario() -> int:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        standby: Standby | None = None
        following: asyncio.Task[None] | None = None
        try:
            await asyncio.sleep(0.05)  # listening
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                await send(writer, Hello(0, GENESIS, 1))
                try:  # whatever it answers, until it hangs up (or goes quiet)
                    while True:
                        await asyncio.wait_for(receive(reader), 0.5)
                except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                    pass
            finally:
                writer.close()
            standby = Standby(secondary)
            following = asyncio.create_task(standby.run())
            await until(lambda: standby is not None and standby.next_seq == 4, timeout=2.0)
            return standby.next_seq
        finally:
            if standby is not None and following is not None:
                standby.stopping.set()
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
                standby.close()
            source.stopping.set()
            await serving
            source.close()

    next_seq = asyncio.run(scenario())
    assert next_seq == 4, f"the real standby is stuck at seq {next_seq - 1} of 3"


def test_the_source_never_publishes_an_acknowledgement_of_entries_it_did_not_send(
    tmp_path: Path,
) -> None:
    """``ACKED_SEQ`` means "every seq up to here is durable on the standby" (replication_ack
    .py), and the sync router publishes a batch once it covers the batch's last seq (README,
    "sync"). ``ReplicationSource._acks`` publishes whatever seq a peer's Ack names: a peer
    that said Hello(1, GENESIS) (always accepted: the empty history is everyone's prefix)
    and was sent seqs 1..3 may acknowledge seq 1,000,000, and the router then publishes the
    next million seqs' batches without waiting for any standby (no degradation logged
    either: sync looks healthy while nothing is replicated). A standby can only ever hold
    what it was sent, so an Ack past that is a broken peer. Expected: the acknowledged seq
    never exceeds the last seq sent on that connection (the Ack refused, or the peer
    dropped). Actual: ``acked`` becomes 1,000,000."""
    primary, _ = pair(tmp_path)
    append(primary, 1, 3)
    port = primary.replication.listen_port

    async def scenario() -> int:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        try:
            await asyncio.sleep(0.05)  # listening
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                await send(writer, Hello(1, GENESIS, 1))
                assert isinstance(await receive(reader), EpochHistory)
                sent = 0
                while sent < 3:
                    message = await asyncio.wait_for(receive(reader), 2.0)
                    if isinstance(message, Entries):
                        sent = message.first_seq + len(message.images) - 1
                await send(writer, Ack(2))  # a true one first: it is taken
                assert await until(lambda: source.acked == 2, timeout=2.0)
                await send(writer, Ack(1_000_000))
                closed = asyncio.ensure_future(reader.read())  # a fix may hang up instead
                await until(lambda: source.acked != 2 or closed.done(), timeout=0.5)
                closed.cancel()
                return source.acked
            finally:
                writer.close()
        finally:
            source.stopping.set()
            await serving
            source.close()

    acked = asyncio.run(scenario())
    assert acked <= 3, f"the source published seq {acked} acknowledged; it sent seqs 1..3"


@pytest.fixture
def blocks(tmp_path: Path) -> Iterator[tuple[AckBlock, AckBlock]]:
    router, source = AckBlock(tmp_path), AckBlock(tmp_path)  # two mappings, as two processes
    yield router, source
    router.close()
    source.close()


def test_a_gate_with_no_timeout_never_goes_on_without_the_standby(
    blocks: tuple[AckBlock, AckBlock],
) -> None:
    """README, "sync": "With ``sync_timeout_ms = 0`` it never degrades: while the standby is
    away, orders wait (journaled, unacknowledged) and none acknowledged can be lost"; the
    config says the same ("0 waits forever (no acknowledged order can ever be lost"). The
    ``DEGRADED`` word lives in ``var/<instance>/run/replication.ack``, which outlives every
    process (only ``demote`` removes it), and ``SyncGate.__init__`` takes it up whatever its
    timeout ("a restarted router keeps the verdict"). So a primary that once degraded
    under ``sync_timeout_ms = 1000``, restarted with ``0`` precisely so that no acknowledged
    order can be lost again, starts degraded: ``wait`` returns True at once for every batch
    while the standby is behind (the restarted source publishes 0 acknowledged), and
    execution reports leave for commands the standby does not hold. Expected: a gate that
    never times out waits for the acknowledgement (here: until the stop). Actual: it
    returns True unacknowledged."""
    router, source = blocks
    router.words[DEGRADED] = 1  # a verdict of a run with a timeout, before this restart
    source.acknowledged(0)  # the restarted source: nothing known acknowledged
    gate = SyncGate(router, timeout_ms=0, spin=True)
    calls: list[int] = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    went_on = gate.wait(9, stop=stop, before=8)
    assert went_on is False, "batch 9 went on although the standby acknowledged nothing"


def test_shipping_a_large_order_log_again_never_cuts_the_standbys_whole_copy(
    tmp_path: Path,
) -> None:
    """The standby's copy of a gateway's order log is what lets a promoted gateway report
    fills of orders acknowledged before the failover (README, "FIX clients after a
    failover"; files.py: "in sync mode a promoted gateway knows the ClOrdID of every order
    whose acknowledgement left the primary"). Every new connection ships each file again
    whole (``FileShipper`` is per connection), in ``CHUNK`` (4 MiB) pieces, and an order log
    grows to ``compact_bytes`` (64 MiB) before it is compacted. ``FileReceiver.apply``
    replaces the standby's copy with the first piece (``reset``, offset 0: ``os.replace``)
    and writes the rest at their offsets as they come: from the first piece until the last,
    after every reconnect (a network blip) or a compaction, the standby's copy is cut to its
    first 4 MiB, and a primary lost in that window (the blip was its host failing) leaves
    the promoted gateway without the orders of the rest, all of them acknowledged long ago.
    Expected: the copy stays whole (the old one kept until the new one is complete).
    Actual: after the first piece the copy holds only its first 4 MiB."""
    primary_root, standby_root = tmp_path / "p", tmp_path / "s"
    log = primary_root / "gw1" / "orders.log"
    copy = standby_root / "gw1" / "orders.log"
    whole = bytes(range(256)) * ((CHUNK + (1 << 20)) // 256)  # 5 MiB of acknowledged orders
    for path in (log, copy):  # the standby has every byte: it followed until now
        path.parent.mkdir(parents=True)
        path.write_bytes(whole)
    shipper = FileShipper(primary_root, ["gw1/orders.log"])  # a new connection's
    receiver = FileReceiver(standby_root)
    first = shipper.changes()  # the first message(s), budget CHUNK
    assert first and first[0].reset and len(first[0].data) == CHUNK
    for message in first:
        receiver.apply(message)
    # the connection drops here (or the primary dies): what does the standby hold?
    held = copy.read_bytes()
    had, has = len(whole), len(held)
    assert has == had, f"the standby's copy of orders.log went from {had} to {has} bytes"
    assert held == whole, "the standby's copy of orders.log changed"


def test_a_standby_behind_its_primarys_new_epoch_is_not_promoted_into_that_epoch(
    tmp_path: Path,
) -> None:
    """Every promotion starts a *new* epoch (epochs.py: Kafka's leader epochs, Raft's
    terms), and epochs are what tell two primaries apart. A standby catching up with a
    primary promoted at seq 10 (its EpochHistory says epoch 2 from seq 10) holds seqs 1..3
    when that primary dies. ``Standby._adopt_reached`` keeps only the epochs begun by its
    next seq, so nothing of epoch 2 reaches its epochs file (rightly, as to where epochs
    begin), but neither does the fact that epoch 2 exists. On two hosts ``failover.py
    promote`` cannot read the old primary's journal (``Epochs.load`` of it gives epoch 1)
    and picks 1 + max(1, 1) = 2, and ``begin_epoch`` accepts it: a second epoch 2, from seq
    4 here and from seq 10 there. The old primary is then never fenced by the new one's
    standbys (their Hello's epoch 2 is not newer than its own), and ``demote`` of it fails
    for good ("epoch histories disagree": (2, 4) against (2, 10)). Expected: an epoch the
    standby has been told of is never begun again here (begin_epoch refuses it, and
    promote picks past it). Actual: the standby is promoted into epoch 2."""
    _, secondary = pair(tmp_path)
    standby = Standby(secondary)
    standby.follow_epochs(EpochHistory([(1, 1), (2, 10)]))  # the primary: epoch 2 from 10
    assert standby.receive_entries(frame(1, 3)) == 3  # its first frame: seqs 1..3
    standby.close()  # the primary dies now; this standby is promoted (two hosts)
    try:
        first = begin_epoch(secondary, 2)
    except EpochsError:
        return  # refused: what a correct system does
    pytest.fail(f"promoted into epoch 2 from seq {first}; the old primary began epoch 2 at 10")
