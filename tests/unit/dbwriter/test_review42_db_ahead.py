"""Review 42: the database ahead of the journal after a host crash.

Under ``fsync = "interval"``, ``"pipelined"`` or ``"none"`` the writer may commit entries a power
loss then cuts from the journal; the restarted router numbers other commands from the cut. A
power loss is simulated as the journal cut back to an entry boundary (``cut_after``, what is
left on the disk) and, where said, grown again with another history's entries: journals built
with seeds 1 and 2 share their first ``COMMON`` entries (the accounts and their deposits) and
differ from there on, so seed 2's journal is seed 1's cut at ``COMMON`` and grown again.

Faults found, fixed (their tests failed before): a writer snapshot from the lost history was
restored and replayed on (a ReplayError saying nothing of a lost tail), and survived the
remedy the refusal names (a database written anew was then poisoned by it at the next
start): a writer snapshot now keeps its entry's CRC and one the journal no longer holds is
passed over (``Follower.restore``); the refusal named the snapshot's seq as the journal's
end. Left, documented: under ``"batch"`` the writer may commit an entry before the router's
fsync of it returns (the strict xfail at the end).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import msgspec
import psycopg
import pytest

from config.schema import JournalConfig, RingexConfig
from procs.common.journal import JournalReader
from procs.common.journal_writer import JournalWriter, cut_after
from procs.common.record_codec import RecordCodec
from procs.common.records import Transfer
from procs.common.topology import journal_dir
from procs.dbwriter.replay import Follower, snapshot_store
from procs.dbwriter.writer import DbWriter, WriterOptions
from tests.unit.dbwriter.journal_gen import JournalBuilder, build, make_cfg, write_all

CODEC = RecordCodec()
COMMON = 24  # CreateAccount + 3 Transfers for each of the 6 accounts: seed-independent
LOST = 120  # random commands of the history the power loss takes back
REGROWN = 150  # ... and of the one the router journals after it (longer: past the checkpoint)


def _reader(cfg: RingexConfig) -> JournalReader:
    return JournalReader(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )


def _history(root: Path, seed: int, commands: int) -> JournalBuilder:
    builder = build(make_cfg(root), commands, seed)
    builder.close()
    return builder


def _power_loss(cfg: RingexConfig, keep: int, aside: Path, regrow: JournalBuilder | None) -> None:
    """Cut the journal after ``keep`` (the unsynced tail is gone) and, with ``regrow``, append
    that history's entries after ``keep``: what the restarted router journals."""
    cut_after(
        journal_dir(cfg), keep, aside, slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    if regrow is None:
        return
    images = [bytes(image) for _seq, image in _reader(regrow.cfg).entries(keep + 1)]
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id, fsync="none"
    ) as w:
        w.append(keep + 1, b"".join(images), len(images))


def _checkpoint(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT last_seq FROM checkpoint").fetchone()
    assert row is not None
    return int(row[0])


def _start_error(cfg: RingexConfig, dsn: str) -> str:
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))
    try:
        with pytest.raises(RuntimeError) as caught:
            writer.run(to_end=True)
    finally:
        writer.close()
    return str(caught.value)


def _hashes(sequencer: object, matchers: dict[str, object]) -> dict[str, str]:
    out = {"router": sequencer.accounts.state_hash()}  # type: ignore[attr-defined]
    return out | {name: m.state_hash() for name, m in matchers.items()}  # type: ignore[attr-defined]


def _follower_hashes(follower: Follower) -> dict[str, str]:
    return _hashes(follower.sequencer, follower.matchers)  # type: ignore[arg-type]


def _snapshots_while_writing(cfg: RingexConfig, dsn: str) -> int:
    """Write the journal with a writer snapshot every 30 seqs; the newest snapshot's seq."""
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=50, batch_ms=10**6, snapshot_every=30))
    try:
        assert writer.run(to_end=True) == 144
    finally:
        writer.close()
    store = snapshot_store(cfg)
    store.path(144).unlink(missing_ok=True)  # periodic: the last one is before the checkpoint
    found = store.at_or_before(144)
    assert found is not None
    return found[0]


def _deposits_only(root: Path, commands: int) -> JournalBuilder:
    """A history that shares the deposits and then has only more deposits: no order ids or
    cancels for a replay on the wrong state to trip over."""
    builder = JournalBuilder(make_cfg(root))
    builder.setup()
    for k in range(commands):
        account = 10 + k % 6
        builder.submit(Transfer(0, 0, 1, 1, builder._next(), account, 1 + k % 3, 7, builder.ref))
    builder.close()
    return builder


def test_the_two_histories_share_only_the_deposits(tmp_path: Path) -> None:
    """The rig: seed 2's journal is seed 1's cut at ``COMMON`` and grown again."""
    one = [bytes(i) for _s, i in _reader(_history(tmp_path / "a", 1, LOST).cfg).entries()]
    two = [bytes(i) for _s, i in _reader(_history(tmp_path / "b", 2, REGROWN).cfg).entries()]
    assert one[:COMMON] == two[:COMMON]
    assert one[COMMON] != two[COMMON]


def test_a_journal_cut_below_the_checkpoint_stops_the_writer_naming_both_seqs(
    tmp_path: Path, dsn: str
) -> None:
    """Right (``writer.py`` ``start``): the power loss took seqs 101..144 the database holds;
    the writer refuses to start, naming the checkpoint and the journal's end, and writes
    nothing."""
    lost = _history(tmp_path / "a", 1, LOST)
    assert write_all(lost.cfg, dsn) == lost.last_seq == 144
    _power_loss(lost.cfg, 100, tmp_path / "aside", None)
    message = _start_error(lost.cfg, dsn)
    assert "checkpoint is seq 144" in message and "ends at 100" in message, message
    assert _checkpoint(dsn) == 144


def test_the_cut_journal_message_names_the_journal_end_not_the_writer_snapshot(
    tmp_path: Path, dsn: str
) -> None:
    lost = _history(tmp_path / "a", 1, LOST)
    assert _snapshots_while_writing(lost.cfg, dsn) == 137
    _power_loss(lost.cfg, 100, tmp_path / "aside", None)
    message = _start_error(lost.cfg, dsn)
    assert "checkpoint is seq 144" in message, message
    assert "ends at 100" in message, message


def test_a_journal_regrown_past_the_checkpoint_is_caught_by_the_checkpoint_crc(
    tmp_path: Path, dsn: str
) -> None:
    """Right (``writer.py`` ``start``, ``last_crc`` of migration 0009): the journal was cut at
    24 and the restarted router journaled 150 other commands (to 174) while the writer was
    down: seq 144 is there, but another entry. The writer refuses, says why and what to do,
    and writes nothing."""
    lost = _history(tmp_path / "a", 1, LOST)
    regrown = _history(tmp_path / "b", 2, REGROWN)
    assert write_all(lost.cfg, dsn) == 144
    _power_loss(lost.cfg, COMMON, tmp_path / "aside", regrown)
    assert _reader(lost.cfg).last_seq() == regrown.last_seq == 174
    message = _start_error(lost.cfg, dsn)
    assert "checkpoint is seq 144" in message, message
    assert "not the one the database was written from" in message, message
    assert "lost a tail" in message and "write it anew" in message, message
    assert _checkpoint(dsn) == 144


def test_a_journal_regrown_to_exactly_the_checkpoint_is_caught_too(
    tmp_path: Path, dsn: str
) -> None:
    """Right: the regrown journal ends at the checkpoint's seq itself (nothing after it for a
    batch's ``prev_crc`` check to meet): the start's CRC check is what stops it."""
    lost = _history(tmp_path / "a", 1, LOST)
    regrown = _history(tmp_path / "b", 2, LOST)
    assert write_all(lost.cfg, dsn) == regrown.last_seq == 144
    _power_loss(lost.cfg, COMMON, tmp_path / "aside", regrown)
    assert "not the one the database was written from" in _start_error(lost.cfg, dsn)


def test_a_writer_snapshot_in_the_lost_tail_still_gets_the_lost_tail_message(
    tmp_path: Path, dsn: str
) -> None:
    lost = _history(tmp_path / "a", 1, LOST)
    regrown = _history(tmp_path / "b", 2, REGROWN)
    assert _snapshots_while_writing(lost.cfg, dsn) == 137
    _power_loss(lost.cfg, COMMON, tmp_path / "aside", regrown)
    assert "not the one the database was written from" in _start_error(lost.cfg, dsn)


def test_a_rebuild_after_a_lost_tail_is_not_poisoned_by_the_lost_history_snapshots(
    tmp_path: Path, dsn: str
) -> None:
    lost = _history(tmp_path / "a", 1, LOST)
    regrown = _deposits_only(tmp_path / "b", REGROWN)
    assert _snapshots_while_writing(lost.cfg, dsn) == 137
    _power_loss(lost.cfg, COMMON, tmp_path / "aside", regrown)
    assert "not the one the database was written from" in _start_error(lost.cfg, dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:  # the remedy: write it anew
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    assert write_all(lost.cfg, dsn) == 174  # from seq 1: right (the test below pins it)
    restarted = DbWriter(lost.cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))
    try:
        follower = restarted.start()
        resting = sum(len(b.orders) for m in follower.matchers.values() for b in m.books.values())
        assert resting == 0, f"{resting} resting orders of the lost history"
        assert _follower_hashes(follower) == _hashes(regrown.sequencer, regrown.matchers)  # type: ignore[arg-type]
    finally:
        restarted.close()


def test_under_batch_the_writer_commits_only_fsynced_entries(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = msgspec.structs.replace(make_cfg(tmp_path), journal=JournalConfig(fsync="batch"))
    router = JournalBuilder(cfg)
    router.setup()  # seqs 1..24, durable
    router.writer.close()
    router.writer = JournalWriter(
        journal_dir(cfg),
        slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id,
        fsync="batch",
    )
    durable = router.writer.durable_seq
    assert durable == COMMON
    real_fsync = os.fsync
    entered, opened = threading.Event(), threading.Event()

    def disk(fd: int) -> None:  # the router's fsync is slow; everyone else's is not
        if threading.current_thread().name == "router":
            entered.set()
            assert opened.wait(10), "the test never let the fsync finish"
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk)
    deposit = Transfer(0, 0, 1, 1, router._next(), 10, 1, 5, router.ref)
    appender = threading.Thread(target=router.submit, args=(deposit,), name="router")
    appender.start()
    try:
        assert entered.wait(5), "the router never fsynced"
        checkpoint = write_all(cfg, dsn)  # the writer runs while seq 25 is being fsynced
    finally:
        opened.set()
        appender.join(5)
        router.close()
    assert router.last_seq == COMMON + 1
    # (a documented limit until the journal's writer kept its durable mark for the readers
    # beside it, ``journal_durable.py``: the writer read what the file held, fsynced or not)
    assert checkpoint <= durable, f"checkpoint {checkpoint}, durable {durable}"


def test_the_remedy_rebuild_without_stale_snapshots_matches_the_new_journal(
    tmp_path: Path, dsn: str
) -> None:
    """Right: the operator's path (an emptied database, the writer to the end, what
    ``ringex replay --to-db`` runs) writes the regrown journal, and a restart from that
    checkpoint (no writer snapshot of the lost history around) resumes in its state."""
    lost = _history(tmp_path / "a", 1, LOST)
    regrown = _deposits_only(tmp_path / "b", REGROWN)
    assert write_all(lost.cfg, dsn) == 144
    _power_loss(lost.cfg, COMMON, tmp_path / "aside", regrown)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    assert write_all(lost.cfg, dsn) == 174
    restarted = DbWriter(lost.cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))
    try:
        follower = restarted.start()
        assert _follower_hashes(follower) == _hashes(regrown.sequencer, regrown.matchers)  # type: ignore[arg-type]
    finally:
        restarted.close()
