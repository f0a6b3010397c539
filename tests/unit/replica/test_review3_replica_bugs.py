"""A third hostile review of replication, epochs and failover: each test shows one bug and
fails on the code as reviewed (each docstring says what is wrong and what a correct system
does)."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from procs.common.epochs import Epochs, EpochsError
from procs.common.topology import journal_dir
from procs.replica import source as source_module
from procs.replica import standby as standby_module
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.replica.wire import (
    MAX_FRAME,
    Ack,
    Entries,
    EpochHistory,
    History,
    StateFile,
    receive,
    send,
)
from procs.supervisor.promotion import begin_epoch
from tests.unit.replica.test_review_replica_bugs import append, pair
from tests.unit.replica.test_source import CODEC, commands


def frame(first: int, n: int, before: History | None = None) -> Entries:
    """The primary's frame of seqs ``first .. first + n - 1`` after the history ``before``."""
    images = [CODEC.encode_slot(r) for r in commands(first, n)]
    history = (before or History()).fork()
    history.update(b"".join(images))
    return Entries(first, images, history.digest())


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


class KilledError(Exception):
    """What a SIGKILL does to the standby: it ends where it is, nothing more runs."""


def test_a_standby_of_an_idle_primary_never_records_the_primarys_newer_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A standby keeps its primary's epoch history (README, "Epochs"), which is what
    ``failover.py promote`` extends and what its Hello says. ``Standby.follow_epochs`` only
    keeps the primary's epochs in memory (``_adopt``) and ``persist`` writes them with the
    next frame of entries. A primary promoted at seq 4 that has sequenced nothing since (or
    a quiet market) sends only heartbeats: its standby, caught up at seq 3, follows it for
    as long as it likes and its journal still says epoch 1. Promoted now (two hosts: the
    old primary's epochs are not readable, so ``promote`` picks max(1, 1) + 1), it becomes a
    second "epoch 2" beginning at seq 4, like the primary it replaces: the old primary is
    never fenced by the new one's standbys (their Hello's epoch 2 is not newer than its 2),
    and ``demote`` finds nothing to cut (``keep_before`` sees the same histories).
    Expected: once the primary has proven the standby's history (anything after the
    EpochHistory but a Refused), the epochs that begin by its next seq are saved.
    Actual: epochs.json is never written while no entry arrives."""
    monkeypatch.setattr(source_module, "HEARTBEAT_S", 0.01)
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)
    Epochs().promoted(2, 4).save(journal_dir(primary))  # promoted at seq 4, idle since
    append(secondary, 1, 3)  # the standby holds the same seqs 1..3

    async def scenario() -> int:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        try:
            assert await until(lambda: standby.connected), "the standby never connected"
            await asyncio.sleep(0.3)  # heartbeats: the primary accepted it
            return Epochs.load(journal_dir(secondary)).current
        finally:
            standby.stopping.set()
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            standby.close()
            source.stopping.set()
            await serving
            source.close()

    kept = asyncio.run(scenario())
    assert kept == 2, f"the standby's journal says epoch {kept}; its primary is at epoch 2"


def test_a_standby_killed_before_its_epochs_file_refuses_its_own_primary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Standby.persist`` appends and fsyncs a frame, then saves the primary's epochs that
    the frame reached (``_adopt_reached``). A standby killed between the two (SIGKILL, power
    loss: crash-only design) restarts with entries of epoch 2 in its journal and an
    epochs file that still says epoch 1. ``follow_epochs`` then reads them as an old
    primary's own tail: "this journal holds seqs 3..4 of epoch 1, but the primary's next
    epoch began at seq 3: they diverge ... rebuild this instance with demote", and the
    standby exits 2 for good, although every entry it holds is its primary's (the history
    hash would prove it), and ``demote`` would cut entries it had acknowledged.
    Expected: a restarted standby follows its primary (the epochs written before the
    entries that need them, or the hash trusted over a stale epochs file). Actual: refused."""
    _, secondary = pair(tmp_path)
    standby = Standby(secondary)
    standby.follow_epochs(EpochHistory([(1, 1), (2, 3)]))  # the primary: epoch 2 from seq 3

    def killed(*_: object) -> None:
        raise KilledError

    # the fix saves the epochs first: the kill between the two now falls on the entries
    monkeypatch.setattr(standby.journal, "append", killed)
    with pytest.raises(KilledError):
        standby.receive_entries(frame(1, 4))  # the epochs saved, then the kill
    monkeypatch.undo()
    assert Epochs.load(journal_dir(secondary)).current == 2  # ahead of the journal
    standby.journal.close()  # the process is gone, and its lock with it
    restarted = Standby(secondary)
    try:
        assert restarted.next_seq == 1
        restarted.follow_epochs(EpochHistory([(1, 1), (2, 3)]))  # the same primary
        restarted.receive_entries(frame(1, 4))  # and it takes the frame again
    except StandbyRefusedError as exc:
        pytest.fail(f"the restarted standby refuses the primary it copied: {exc}")
    finally:
        restarted.journal.close()


def test_promoting_a_fenced_journal_reuses_the_epoch_that_fenced_it(tmp_path: Path) -> None:
    """A fence records that another instance was promoted to epoch N (``Fence.epoch``), and
    "only failover.py demote (which cuts the diverged tail) lifts a fence" (epochs.py,
    README). ``promotion.begin_epoch`` builds the new history from ``begun_by``, which drops
    the fence, and takes any epoch newer than the journal's own current one; and
    ``failover.py promote`` picks max(standby's current, primary's current) + 1, ignoring
    the standby's fence. So an old primary fenced by epoch 2 and promoted back on its own
    host (the instance that fenced it is on another host, its journal unreadable here: no
    divergence check either) becomes a second epoch 2, its unreplicated tail kept: two
    primaries with the same epoch, which the epochs exist to tell apart (neither is ever
    fenced by the other's standbys). Expected: a journal fenced by epoch 2 is not promoted
    into epoch 2 (EpochsError; or the epoch chosen past the fence). Actual: it is, and the
    fence is lifted."""
    _, old = pair(tmp_path)
    append(old, 1, 5)  # seqs 4..5 were never replicated: the promoted one began epoch 2 at 4
    Epochs().fenced(2, "the instance promoted at seq 4").save(journal_dir(old))
    try:
        first = begin_epoch(old, 2)
    except EpochsError:
        return  # refused: what a correct system does
    epochs = Epochs.load(journal_dir(old))
    pytest.fail(
        f"a journal fenced by epoch 2 began epoch 2 again at seq {first}: {epochs.history}, "
        f"fence {epochs.fence}"
    )


def test_a_peer_that_has_not_said_hello_may_make_the_source_buffer_64_mib(
    tmp_path: Path,
) -> None:
    """Every read from a peer has a size limit (STYLE.md, websockets). The source reads the
    first frame of any connection, before the peer has said who it is, with the
    protocol's one limit, ``MAX_FRAME`` (64 MiB), and no deadline: whatever connects to the
    replication port may announce a 64 MiB "Hello" and have the source buffer it
    (``StreamReader.readexactly`` resumes reading until it has it all), on as many
    connections as it opens (16 of them: a GiB), and msgspec then decodes it as any
    ``Message``, so a frame of 2-byte ``Entries.images`` makes a list of ~16M bytes objects,
    about ten times its size. A Hello is about 30 bytes (an Ack too). Expected: a first
    frame longer than a Hello or AskEpochs can be is refused at once (the connection
    closed). Actual: the source keeps reading it."""
    primary, _ = pair(tmp_path)
    host, port = "127.0.0.1", primary.replication.listen_port

    async def scenario() -> bool:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        try:
            await asyncio.sleep(0.05)  # listening
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(struct.pack("<I", MAX_FRAME) + b"\0" * (1 << 20))
                await writer.drain()
                try:
                    closed = await asyncio.wait_for(reader.read(1), 1.0) == b""
                except TimeoutError:
                    closed = False
                except ConnectionResetError:  # closed with our bytes unread: a reset
                    closed = True
                return closed
            finally:
                writer.close()
        finally:
            source.stopping.set()
            await serving
            source.close()

    assert asyncio.run(scenario()), "the source is still reading a 64 MiB first frame"


def test_a_standby_drops_a_primary_that_is_still_sending_a_long_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "A standby that hears nothing for SILENCE_S takes the primary for gone" (wire.py,
    README). ``receive_within`` puts the limit on the whole frame instead: a frame that
    takes longer than 2 s to arrive is cut off however steadily its bytes come, and the
    connection is dropped. Frames are up to 4 MiB of a gateway's order log
    (``files.CHUNK``) or 512 KiB of journal (``BATCH`` x 128), and a new connection ships
    every file again whole from its start: on a link slower than ~17 Mbit/s (another
    region) the first 4 MiB chunk of a large order log never arrives in time, so the
    standby reconnects forever and never gets an entry. Here the same at a smaller scale:
    a 64 KiB StateFile trickled over ~0.3 s (a piece every 20 ms: never silent), against a
    silence limit of 0.2 s. Expected: the standby takes the frame and acknowledges the
    entry that follows on the first connection. Actual: it drops every connection
    mid-frame."""
    monkeypatch.setattr(standby_module, "SILENCE_S", 0.2)
    _, secondary = pair(tmp_path)
    host, port = secondary.replication.primary_address()
    body = msgspec.msgpack.encode(StateFile("users.json", 0, b"u" * (64 << 10), True))
    data = struct.pack("<I", len(body)) + body
    connections: list[int] = []
    acked: list[tuple[int, int]] = []

    async def primary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections) + 1)
        mine = connections[-1]
        try:
            await receive(reader)  # the Hello
            await send(writer, EpochHistory([(1, 1)]))
            for at in range(0, len(data), 4096):  # a slow link: bytes all the time
                writer.write(data[at : at + 4096])
                await writer.drain()
                await asyncio.sleep(0.02)
            await send(writer, frame(1, 1))
            ack = await receive(reader)
            if isinstance(ack, Ack) and ack.seq == 0:  # the StateFile's "heard" (wire.py)
                ack = await receive(reader)
            if isinstance(ack, Ack):
                acked.append((mine, ack.seq))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the standby hung up
        finally:
            writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(primary, host, port)
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        try:
            await until(lambda: bool(acked), timeout=3.0)
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            server.close()
            await server.wait_closed()
            await asyncio.sleep(0.05)  # the handlers run to their close
            standby.journal.close()

    asyncio.run(scenario())
    # on the first connection (the fake primary hangs up after the ack: a second may follow)
    assert acked[:1] == [(1, 1)], f"acknowledged {acked} over {len(connections)} connection(s)"
