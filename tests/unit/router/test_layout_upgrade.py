"""Upgrading to a build of other journaled commands (another schema id: a field added to a
command): the README's path, as for a build of other rules. Stop the exchange, snapshot at
the journal's end with the build that wrote it, start the new one. Readers check the schema
of the entries they yield, not every header, so the segments the snapshot covers are only
looked at (their last seq), the router's reread window passes over them, replication hashes
them as bytes, and the new build's writer begins a segment of its own. Until this change
every header was checked (review 68's documented limit)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from procs.common.journal import JournalFormatError, JournalReader, list_segments
from procs.common.journal_writer import JournalWriter, cut_after
from procs.common.record_codec import RecordCodec
from procs.common.record_layout import schema_id
from procs.common.records import JOURNALED_TYPES, AdminCommand
from procs.common.topology import journal_dir, snapshot_dir
from procs.common.types import AdminAction
from procs.core.recovery import JournaledTail, recover, write_snapshot
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from tests.unit.replica.test_review_replica_bugs import append, pair, until
from tests.unit.test_review68_reread import _restamp, _snapshotted_by

CODEC = RecordCodec()
#: the journal id of a build whose last journaled command had another layout
OTHER = schema_id([t for t in JOURNALED_TYPES if t is not JOURNALED_TYPES[-1]])


def _reader(cfg_dir: Path) -> JournalReader:
    return JournalReader(cfg_dir, slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id)


def test_the_new_build_starts_from_the_snapshot_and_journals_a_segment_of_its_own(
    tmp_path: Path,
) -> None:
    cfg, count = _snapshotted_by(tmp_path, OTHER)
    tail = JournaledTail.for_config(cfg)
    recovered = recover(cfg, tail=tail)  # the reread window passes over the old entries
    assert (recovered.last_seq, recovered.replayed) == (count, 0)
    assert tail.by_gateway() == {}
    new = [
        AdminCommand(seq, seq, AdminAction.SNAPSHOT, 0, seq) for seq in range(count + 1, count + 4)
    ]
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    ) as writer:
        assert writer.next_seq == count + 1
        writer.append(count + 1, b"".join(map(CODEC.encode_slot, new)), 3)
    assert list_segments(journal_dir(cfg))[-1][0] == count + 1  # a segment of its own
    reader = _reader(journal_dir(cfg))
    assert [s for s, _ in reader.entries(count + 1)] == [count + 1, count + 2, count + 3]
    assert [s for s, _ in reader.entries(1, foreign="skip")] == [count + 1, count + 2, count + 3]
    assert len(list(reader.entries(1, foreign="yield"))) == count + 3
    with pytest.raises(JournalFormatError, match="upgrade from a snapshot at the journal's end"):
        list(reader.entries(1))  # what would be decoded is refused, naming the way
    # a restart of the new build: its reread window now holds its own commands only
    tail = JournaledTail.for_config(cfg)
    assert recover(cfg, tail=tail).replayed == 3
    journaled = {seq for keys in tail.by_gateway().values() for seq in keys.values()}
    assert journaled == {count + 1, count + 2, count + 3}


def test_an_entry_of_another_layout_past_the_snapshot_is_refused(tmp_path: Path) -> None:
    """Started without the snapshot step, the new build would decode the old entries: it
    refuses at the first, naming the segment and both ids (never a wrong replay)."""
    cfg, _ = _snapshotted_by(tmp_path, OTHER)
    shutil.rmtree(snapshot_dir(cfg, "exchange"))
    with pytest.raises(JournalFormatError, match=f"schema_id is {OTHER:#x}"):
        recover(cfg)


def _upgraded_pair(tmp_path: Path, standby_upto: int):  # type: ignore[no-untyped-def]
    """A primary of 10 entries written by the old build, snapshotted at its end, then 3 of
    the new build's; its standby's journal the old build's first ``standby_upto`` entries,
    snapshotted there."""
    primary, secondary = pair(tmp_path)
    append(primary, 1, 10)
    shutil.copytree(journal_dir(primary), journal_dir(secondary))
    write_snapshot(primary, recover(primary))
    if standby_upto < 10:
        with JournalWriter(
            journal_dir(secondary), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
        ):
            pass
        cut_after(
            journal_dir(secondary), standby_upto, tmp_path / "aside",
            slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id,
        )  # fmt: skip
    write_snapshot(secondary, recover(secondary))
    _restamp(primary, OTHER, rules=2)
    _restamp(secondary, OTHER, rules=2)
    append(primary, 11, 3)  # the new build's first entries
    return primary, secondary


def test_a_standby_upgraded_with_its_primary_follows_it(tmp_path: Path) -> None:
    primary, secondary = _upgraded_pair(tmp_path, 10)

    async def scenario() -> int:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        standby = Standby(secondary)  # hashes its journal, old layout included
        following = asyncio.create_task(standby.run())
        try:
            await until(lambda: standby.next_seq == 14 or following.done(), 5.0)
            return standby.next_seq
        finally:
            standby.stopping.set()
            source.stopping.set()
            following.cancel()
            await asyncio.gather(following, serving, return_exceptions=True)
            standby.journal.close()
            source.close()

    assert asyncio.run(scenario()) == 14


def test_a_standby_behind_the_upgrade_is_refused_saying_why(tmp_path: Path) -> None:
    """It would be shipped entries 6-10 of the old layout and decode them as its own."""
    primary, secondary = _upgraded_pair(tmp_path, 5)

    async def scenario() -> BaseException | None:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        try:
            await until(following.done, 5.0)
            return following.exception()
        finally:
            source.stopping.set()
            await asyncio.gather(serving, return_exceptions=True)
            standby.journal.close()
            source.close()

    refused = asyncio.run(scenario())
    assert isinstance(refused, StandbyRefusedError), refused
    assert "only entries of its own records: catch it up" in str(refused)
