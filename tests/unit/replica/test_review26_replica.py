"""A hostile review of replication, epochs, promotion and demotion (review 26).

The tests named ``test_..._bug`` show one bug each and fail on the code as reviewed; each
docstring says what is wrong, why it matters and where. The others pin behaviour that was
checked and found correct."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from pathlib import Path

import msgspec
import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.epochs import Epochs
from procs.common.records import Record, Transfer
from procs.common.replication_ack import FENCED
from procs.common.topology import journal_dir
from procs.replica import standby as standby_module
from procs.replica.files import FileReceiver
from procs.replica.rebuild import rebuild
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.replica.wire import (
    GENESIS,
    Ack,
    EpochHistory,
    Hello,
    History,
    Message,
    Refused,
    StateFile,
    receive,
    send,
)
from tests.unit.replica.test_review3_replica_bugs import frame
from tests.unit.replica.test_review_replica_bugs import append, pair
from tests.unit.replica.test_source import CODEC, commands
from tests.unit.supervisor.test_review_ops_bugs import FakeChild, configs, failover, write


def _own(seqs: range, amount: int = 55) -> list[Record]:
    """Commands at ``seqs`` that differ from ``commands``' (another primary's history)."""
    return [Transfer(seq, 6, 0, 0, seq, 7, 1, amount, seq) for seq in seqs]


# -- bugs ---------------------------------------------------------------------------------------


def test_a_hello_of_an_epoch_past_int64_fences_the_journal_but_not_the_router_bug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``ReplicationSource._epoch_refusal`` (procs/replica/source.py:190-191) fences the
    primary on any Hello whose epoch is newer than its own, with no bound on the number;
    msgspec decodes a Hello's epoch up to 2**64-1 (wire.py:55-58 has no range). ``fence``
    (source.py:206-209) first saves the fence in the journal's epochs file, then stores the
    epoch in the block's ``FENCED`` word, an int64 (replication_ack.py:54): for an epoch
    >= 2**63 that store raises ``ValueError``, which ``serve`` does not catch
    (source.py:172-178; asyncio logs "Unhandled exception in client_connected_cb"). So the
    journal is fenced on disk while ``FENCED`` stays 0: the running router goes on
    sequencing and publishing, the other standby connections are not closed
    (source.py:211-213 never runs) and the peer gets no ``Refused``. The fence
    on disk is past any real epoch: the next router start is refused, and ``failover.py
    demote`` refuses every real promoted instance ("the primary is at epoch 2, older than
    this journal's 9223372036854775808", rebuild.py:75-80), so only a hand edit of
    epochs.json brings the instance back. A Hello is garbage from whatever connects to the
    replication port, the case the source already bounds by size and time (source.py:127).
    Expected: such an epoch is refused as a bad frame and nothing is fenced, or the fence is
    whole (file and ``FENCED`` word). Fix: check ``hello.epoch`` (and ``EpochHistory``
    epochs) against the int64 range before ``fence``, e.g. raise ``FrameError``; and store
    ``FENCED`` before the file is saved, or save only once the word is set."""
    primary, _ = pair(tmp_path)
    append(primary, 1, 3)
    host, port = "127.0.0.1", primary.replication.listen_port

    async def scenario() -> tuple[object, int]:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        try:
            await asyncio.sleep(0.05)  # listening
            reader, writer = await asyncio.open_connection(host, port)
            try:
                await send(writer, Hello(1, GENESIS, 2**63))
                try:
                    answer: object = await asyncio.wait_for(receive(reader), 2.0)
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    answer = exc
            finally:
                writer.close()
            await asyncio.sleep(0.05)
            return answer, source.block.words[FENCED]
        finally:
            source.stopping.set()
            await serving
            source.close()

    with caplog.at_level(logging.CRITICAL, logger="asyncio"):  # the unhandled ValueError
        answer, word = asyncio.run(scenario())
    fence = Epochs.load(journal_dir(primary)).fence
    assert fence is None or word != 0, (
        f"the journal is fenced on disk by epoch {fence.epoch} but the block's FENCED word "
        f"is {word}: the running router was never told (the peer got {answer!r})"
    )


def test_promote_refuses_a_standby_that_is_ahead_of_a_primary_that_rewrote_its_seqs_bug(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``failover.diverged`` (scripts/failover.py:175-191) compares the two journals only at
    seq 1 and at the *standby's* last seq, and only where both hold an entry. A standby can
    be longer than its primary: the source ships what the router wrote before its fsync
    (it tails the page cache, procs/replica/source.py:262; under ``fsync = "interval"`` at
    once, the router rings it right after the write), so after a crash of the primary's
    host the restarted primary lacks the standby's last entries, refuses it ("standby is
    at seq 12, the primary at 10"), goes on alone (sync mode degrades after its timeout)
    and sequences *other* commands at those seqs, acknowledged to their clients. Here the
    primary holds 1..10 and its own seq 11, the standby 1..12 with another 11. The only
    points compared are seq 1 (equal) and seq 12 (the primary has none), so ``diverged``
    says 0 and ``promote`` fences the primary and promotes the standby: the primary's
    acknowledged seq 11 is silently replaced, which is exactly what the check exists to
    refuse ("promoting it would lose what the primary acknowledged after that"; its
    docstring reasons only about a standby that is a prefix of its primary). ``demote``
    then cuts nothing either (the new epoch begins at 13) and the rebuilt instance is
    refused by hash.
    Expected: promote refuses (nonzero, primary not fenced) without ``--force``. Fix:
    compare also at ``min(primary last, standby last)`` (the hash of the common prefix, as
    ``status`` does, is the thorough form)."""
    primary_path, standby_path = configs(tmp_path, instance)
    primary, standby = load_profile(str(primary_path)), load_profile(str(standby_path))
    write(primary, [*commands(1, 10), *_own(range(11, 12))])  # its seq 11, acknowledged
    write(standby, commands(1, 12))  # the old 11..12 that the primary's crash lost
    monkeypatch.setattr(failover.subprocess, "Popen", FakeChild)
    monkeypatch.setattr(failover, "await_promoted", lambda *args, **kwargs: 0)
    found = failover.diverged(primary, standby)
    code = failover.promote(str(primary_path), str(standby_path))
    fenced = Epochs.load(journal_dir(primary)).fence
    assert code != 0 and fenced is None, (
        f"promote went ahead (exit {code}, primary fenced: {fenced}) over a standby whose "
        f"seq 11 is not the primary's (diverged() said {found})"
    )


def test_demote_cuts_what_the_old_instance_wrote_in_an_epoch_the_new_one_never_had_bug(
    tmp_path: Path,
) -> None:
    """``Epochs.keep_before`` (procs/common/epochs.py:95-107) says it "raises EpochsError when
    the histories disagree before" the seq it returns, but it only checks that the
    primary's epochs up to this journal's current one are a prefix of this journal's; this
    journal's own epochs that the primary never had are not looked at. Here X was promoted
    to epoch 2 at seq 3 (it had 1..2) and wrote 3..4 in epoch 2; Y, another standby of
    the same old primary P (it had P's 1..4 of epoch 1), was then promoted in X's place
    (``promote --primary X --standby Y`` picks epoch 3; with X on another host its
    journal is not readable there, so ``diverged`` compares nothing), so Y's history is
    [(1, 1), (3, 5)]: its 3..4 are P's epoch-1 entries, not X's. Two failovers and two
    standbys are needed: a demoted *original* primary has no epoch of its own.
    ``rebuild(X, Y)`` (rebuild.py:81) gets keep = 4 and cuts nothing, keeping X's 3..4
    that Y never had; it then writes Y's epochs (rebuild.py:123), so X looks like a clean
    prefix of Y.
    The Hello's hash refuses X afterwards, but the demote is done and a second demote
    cuts nothing (the epochs now agree): the operator is left with an instance that can
    neither follow nor be rebuilt by the tool, and X's epoch-2 entries never went to the
    aside journal where demote keeps what it removes. ``Standby.follow_epochs``
    (standby.py:169) uses the same function. Expected: keep = 2 (3..4 cut and set aside),
    or ``EpochsError``. Fix: in ``keep_before`` also bound the kept seq by the first seq
    of this journal's first epoch that is not in the primary's history."""
    x = RingexConfig(instance="x", var_dir=str(tmp_path / "x"))
    write(x, [*commands(1, 2), *_own(range(3, 5))])  # 3..4 written as the epoch-2 primary
    Epochs().promoted(2, 3).save(journal_dir(x))  # fenced by the operator's own means
    y = Epochs().promoted(3, 5)  # Y had P's 1..4 of epoch 1 when it began epoch 3
    try:
        done = rebuild(x, y)
    except ValueError:  # EpochsError: refused, which is also correct
        return
    assert (done.kept_seq, done.cut) == (2, 2), (
        f"demote kept seqs up to {done.kept_seq} (cut {done.cut}): X's epoch-2 seqs 3..4, "
        "which the promoted instance never had, stay in the rebuilt journal"
    )


def test_a_state_file_sent_whole_is_durable_before_it_replaces_the_standbys_copy_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``FileReceiver.apply`` (procs/replica/files.py:163-168, the rename at 166) renames a
    file sent whole (``<name>.shipping``) over the standby's copy as soon as its last byte
    is written, with no fsync of the new content first; the fsync comes only at the next
    ``sync`` (files.py:137-144), which ``persist`` calls when the next journal frame arrives
    (standby.py:138), possibly much later (users are added while the market is idle: only
    heartbeats come). A crash of the standby's host in between can leave users.json,
    apikeys.json or an order log empty or cut short where the file system does not flush
    a file's data when it is renamed over another (ext4's default ``auto_da_alloc`` does;
    ``noauto_da_alloc`` and other file systems need not): the old copy, which was durable,
    is gone, and the new one is not. The project's own rule for such files is write
    aside, fsync, rename, fsync the directory (``durable.replace_durably``: "never half of
    either"), and files.py makes the copy aside precisely so that the standby "keeps the
    whole old copy" until the new one is complete. Expected: the aside file is
    fsynced before the rename. Fix: ``fsync`` the ``.shipping`` file's descriptor before
    ``os.replace`` (then ``sync`` need only fsync the directory)."""
    root = tmp_path / "gateway"
    root.mkdir()
    (root / "users.json").write_bytes(b'{"users": ["old"]}')  # the copy it has, durable
    events: list[tuple[str, int]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        events.append(("replace", os.stat(src).st_ino))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    receiver = FileReceiver(root)
    new = b'{"users": ["old", "new"]}'
    receiver.apply(StateFile("users.json", 0, new, True, len(new)))
    receiver.sync()  # what the next frame's persist does
    monkeypatch.undo()
    assert (root / "users.json").read_bytes() == new
    renamed = [k for k, (what, _) in enumerate(events) if what == "replace"]
    assert renamed, events
    inode = events[renamed[0]][1]
    synced_before = [e for e in events[: renamed[0]] if e == ("fsync", inode)]
    assert synced_before, (
        f"the new users.json replaced the standby's copy before its content was fsynced "
        f"(calls in order: {events})"
    )


# -- checked and found correct --------------------------------------------------------------


def test_the_standby_acknowledges_a_frame_only_after_its_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``persist`` makes the frame durable (an fsync of the journal segment it went to)
    before ``_follow`` sends its Ack, whatever the journal policy (here ``none``, where
    ``append`` itself syncs nothing; the segment exists already, so no roll fsyncs)."""
    _, secondary = pair(tmp_path)
    secondary = msgspec.structs.replace(
        secondary, journal=msgspec.structs.replace(secondary.journal, fsync="none")
    )
    append(secondary, 1, 2)  # its segment exists: the frame below rolls nothing
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        events.append(f"fsync {os.readlink(f'/proc/self/fd/{fd}').rsplit('/', 1)[-1]}")
        real_fsync(fd)

    async def recorded_send(writer: asyncio.StreamWriter, message: Message) -> None:
        if isinstance(message, Ack) and message.seq > 2:
            events.append(f"ack {message.seq}")
            raise ConnectionResetError("enough")  # the reconnect is not this test's

    standby = Standby(secondary)
    before = History()
    before.update(b"".join(CODEC.encode_slot(r) for r in commands(1, 2)))
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(standby_module, "send", recorded_send)
    bodies = [msgspec.msgpack.encode(m) for m in (EpochHistory([(1, 1)]), frame(3, 2, before))]
    data = b"".join(struct.pack("<I", len(b)) + b for b in bodies)

    async def scenario() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        with pytest.raises(ConnectionResetError):
            await standby._follow(reader, None)  # type: ignore[arg-type]

    try:
        asyncio.run(scenario())
    finally:
        monkeypatch.undo()
        standby.journal.close()
    assert "ack 4" in events, events
    synced = [e for e in events[: events.index("ack 4")] if e.endswith(".journal")]
    assert synced, f"acknowledged before any fsync of the journal: {events}"
    assert standby.state.last_seq == 4  # applied too, though the ack could not be sent


@pytest.mark.parametrize("cut", [0, 1, 3, 4, 5, 20, -1])
def test_a_frame_cut_at_any_byte_is_a_lost_connection_not_a_message(cut: int) -> None:
    """A frame cut anywhere (in its length, in its body) ends in ``IncompleteReadError``,
    which both sides take for a lost connection (reconnect / drop), never a decoded
    message or a ``FrameError`` (which would stop a standby for good)."""
    body = msgspec.msgpack.encode(frame(1, 2))
    data = struct.pack("<I", len(body)) + body
    part = data[: cut if cut >= 0 else len(data) - 1]

    async def scenario(silence: float | None) -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(part)
        reader.feed_eof()
        with pytest.raises(asyncio.IncompleteReadError):
            await receive(reader, silence_s=silence)

    asyncio.run(scenario(None))
    asyncio.run(scenario(1.0))


def test_a_standby_ending_just_before_the_new_epoch_follows_and_one_past_it_is_refused(
    tmp_path: Path,
) -> None:
    """Epoch bounds in ``follow_epochs``: a journal that ends at the seq before the
    primary's new epoch is a prefix of it; one more entry of the old epoch is the old
    primary's unreplicated tail, and refused (no off-by-one either way)."""
    _, secondary = pair(tmp_path)
    append(secondary, 1, 4)
    standby = Standby(secondary)
    try:
        standby.follow_epochs(EpochHistory([(1, 1), (2, 5)]))  # ends at 4: follows
        with pytest.raises(StandbyRefusedError, match=r"seqs 4\.\.4 of epoch 1"):
            standby.follow_epochs(EpochHistory([(1, 1), (2, 4)]))
    finally:
        standby.journal.close()


def test_a_fenced_source_refuses_a_standby_of_its_own_epoch(tmp_path: Path) -> None:
    """A source started on a fenced journal sets ``FENCED`` at once and serves nobody, even
    a standby of its own epoch (its tail past the new epoch is what demote cuts)."""
    primary, _ = pair(tmp_path)
    append(primary, 1, 3)
    Epochs().fenced(2, "promoted").save(journal_dir(primary))
    host, port = "127.0.0.1", primary.replication.listen_port

    async def scenario() -> tuple[object, int]:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        try:
            await asyncio.sleep(0.05)
            reader, writer = await asyncio.open_connection(host, port)
            try:
                await send(writer, Hello(1, GENESIS, 1))
                answer = await asyncio.wait_for(receive(reader), 2.0)
            finally:
                writer.close()
            return answer, source.block.words[FENCED]
        finally:
            source.stopping.set()
            await serving
            source.close()

    answer, word = asyncio.run(scenario())
    assert isinstance(answer, Refused) and "fenced by epoch 2" in answer.reason, answer
    assert word == 2


def test_a_standby_built_with_other_records_never_follows_a_primary_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing in the replication protocol carries the record set's schema id: the Hello
    (procs/replica/wire.py:55-58) says only a seq, a hash and an epoch, and the history
    hash covers raw slot images. The README's rule is that "a process built with other
    records fails on attach" (rings' headers), and a journal segment's header carries the
    schema id for the same reason; but a standby built with other records (a rolling
    upgrade that adds a record type or a field: the slot stays 128 bytes) takes the
    primary's slot images as they are, writes them into its own journal under *its*
    schema id (``Standby.persist``, standby.py:137, via its own ``JournalWriter``) and
    decodes them with its own codec (``apply``, standby.py:186-190): with array-like
    structs of ints a shifted field decodes without an error, so the hot state, the
    snapshots and the promoted instance silently differ from the primary's, and the
    journal claims a schema its entries were not written in. Here the primary is built
    without the last record type (another schema id, the same slot size) and the standby
    with all of them. Expected: the standby is refused by name (the Hello, or the first
    answer, compares schema ids and slot sizes), nothing journaled. Actual: it follows.
    Fix: put ``schema_id`` and ``slot_size`` in ``Hello``/``EpochHistory`` (or a new first
    message) and refuse a mismatch on both sides."""
    from procs.common.journal_writer import JournalWriter  # noqa: PLC0415
    from procs.common.record_codec import RecordCodec  # noqa: PLC0415
    from procs.common.records import RECORD_TYPES, Transfer  # noqa: PLC0415
    from procs.replica import source as source_module  # noqa: PLC0415

    # without a journaled type (an event type's change leaves the journal's schema as it is)
    other = RecordCodec([t for t in RECORD_TYPES if t is not Transfer])
    assert other.slot_size == CODEC.slot_size
    assert other.journal_schema_id != CODEC.journal_schema_id
    primary, secondary = pair(tmp_path)
    with JournalWriter(
        journal_dir(primary), slot_size=other.slot_size, schema_id=other.journal_schema_id
    ) as journal:
        journal.append(1, b"".join(map(other.encode_slot, commands(1, 3))), 3)
    monkeypatch.setattr(source_module, "RecordCodec", lambda: other)  # the primary's build

    async def scenario() -> tuple[int, BaseException | None]:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        try:
            deadline = asyncio.get_running_loop().time() + 3.0
            while not following.done() and standby.next_seq < 4:
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.01)
            ended = following.exception() if following.done() else None
            return standby.next_seq, ended
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            standby.journal.close()
            source.stopping.set()
            await serving
            source.close()

    next_seq, ended = asyncio.run(scenario())
    assert next_seq == 1 and isinstance(ended, StandbyRefusedError), (
        f"a standby of schema {CODEC.journal_schema_id:#x} took a primary of schema "
        f"{other.journal_schema_id:#x}: it journaled up to seq {next_seq - 1} (ended: {ended!r})"
    )
