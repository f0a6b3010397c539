"""Archiving a replicated journal: the primary and its standby hash the journal from the
newest key of its history chain (from its first entry within the first block), and a
standby behind the archive point catches up from there, so both read the segments ``ringex
replay --archive`` moved to ``journal.archive_dir``. Until this change nothing was archived
while replication was configured (review 69's documented limit). The archive may go to cold
storage up to the block a standby is in since the chain (``test_history_chain.py``): the
strict xfail that was here, for a hash from seq 1, is that file's test of it."""

from __future__ import annotations

import asyncio
import gc
import shutil
import time
import warnings
from pathlib import Path

import msgspec
import pytest

from config.schema import JournalConfig, RingexConfig
from procs.common.journal import (
    HEADER_SIZE,
    EntryLayout,
    JournalArchivedError,
    JournalReader,
    list_segments,
)
from procs.common.journal_archive import archive_segments_before
from procs.common.journal_writer import JournalWriter
from procs.common.topology import journal_archive_dir, journal_dir
from procs.core.recovery import recover, write_snapshot
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.replica.wire import History
from tests.unit.replica.history_reference import hashes_before
from tests.unit.replica.test_review_replica2_bugs import pair, serve_in_a_thread
from tests.unit.replica.test_source import CODEC, commands

PER_SEGMENT = 10


def _archiving(cfg: RingexConfig, tmp_path: Path) -> RingexConfig:
    """``cfg`` archiving to a directory of its own (another volume, in production)."""
    where = tmp_path / f"archive-{cfg.instance}"
    return msgspec.structs.replace(cfg, journal=JournalConfig(archive_dir=str(where)))


def _append(cfg: RingexConfig, first: int, n: int) -> None:
    """Commands ``first``..``first + n - 1`` in segments of ``PER_SEGMENT`` entries."""
    with JournalWriter(
        journal_dir(cfg),
        slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id,
        segment_bytes=HEADER_SIZE + PER_SEGMENT * EntryLayout(CODEC.slot_size).size,
        fsync="none",
    ) as journal:
        for seq, command in enumerate(commands(first, n), first):
            journal.append(seq, CODEC.encode_slot(command), 1)


def _archive(cfg: RingexConfig, before: int) -> int:
    moved = archive_segments_before(journal_dir(cfg), before, journal_archive_dir(cfg))
    return len(moved)


def _history(cfg: RingexConfig) -> bytes:
    reader = JournalReader(
        journal_dir(cfg),
        slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id,
        archive=journal_archive_dir(cfg),
    )
    history = History()
    for _seq, image in reader.entries(1):
        history.update(image)
    return history.digest()


def _follow(standby: Standby, until_seq: int) -> None:
    """Run ``standby`` until it holds ``until_seq`` (or 5 s pass)."""

    async def follow() -> None:
        following = asyncio.create_task(standby.run())
        deadline = time.monotonic() + 5.0
        while standby.next_seq <= until_seq and time.monotonic() < deadline:
            if following.done():
                following.result()  # a refusal raises here
            await asyncio.sleep(0.01)
        standby.stopping.set()
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)

    asyncio.run(follow())


def _closed(standby: Standby) -> None:
    standby.journal.close()
    with warnings.catch_warnings():  # the transports of its connection, now rather than later
        warnings.simplefilter("ignore")
        gc.collect()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_new_standby_catches_up_from_the_primarys_archive(tmp_path: Path) -> None:
    """100 entries, the first 60 archived on the primary: a standby with an empty journal
    asks from seq 1 and gets them all, from the archive and then the journal, with the
    primary's history hash."""
    primary, secondary = pair(tmp_path)
    primary = _archiving(primary, tmp_path)
    _append(primary, 1, 100)
    assert _archive(primary, 61) == 6
    assert list_segments(journal_dir(primary))[0][0] == 61

    stop_source = serve_in_a_thread(ReplicationSource(primary))
    standby = Standby(secondary)
    try:
        _follow(standby, 100)
    finally:
        stop_source()
        _closed(standby)
    assert standby.next_seq == 101
    assert standby.digest == _history(primary)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_standby_with_an_archived_journal_restarts_and_follows(tmp_path: Path) -> None:
    """Both sides archived: the standby's restart hashes its own journal from its archive,
    the primary's answer hashes its own, and the two agree: the standby takes what the
    primary appended since."""
    primary, secondary = pair(tmp_path)
    primary, secondary = _archiving(primary, tmp_path), _archiving(secondary, tmp_path)
    _append(primary, 1, 80)
    shutil.copytree(journal_dir(primary), journal_dir(secondary))  # it followed up to here
    write_snapshot(secondary, recover(secondary))  # as its clean stop writes (at seq 80)
    _append(primary, 81, 20)
    assert _archive(primary, 71) == 7
    assert _archive(secondary, 51) == 5

    stop_source = serve_in_a_thread(ReplicationSource(primary))
    standby = Standby(secondary)
    try:
        assert standby.next_seq == 81
        _follow(standby, 100)
    finally:
        stop_source()
        _closed(standby)
    assert standby.next_seq == 101
    assert _history(secondary) == _history(primary)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_primary_whose_archive_is_gone_refuses_the_standby_saying_why(
    tmp_path: Path,
) -> None:
    """The archive shipped away: the primary cannot hash its history from seq 1, and says
    so to the standby (which stops, refused, rather than retrying for ever); the source
    lives on."""
    primary, secondary = pair(tmp_path)
    primary = _archiving(primary, tmp_path)
    _append(primary, 1, 40)
    assert _archive(primary, 31) == 3
    shutil.rmtree(journal_archive_dir(primary))

    stop_source = serve_in_a_thread(ReplicationSource(primary))
    standby = Standby(secondary)
    try:
        with pytest.raises(StandbyRefusedError, match="keep the segments archived"):
            _follow(standby, 40)
    finally:
        stop_source()
        _closed(standby)


def test_a_standby_whose_own_archive_is_gone_says_why_at_its_start(tmp_path: Path) -> None:
    """Its restart hashes its journal from seq 1: without the archive it cannot, and the
    error says what to keep (it named only the missing seq)."""
    _, secondary = pair(tmp_path)
    secondary = _archiving(secondary, tmp_path)
    _append(secondary, 1, 40)
    write_snapshot(secondary, recover(secondary))
    assert _archive(secondary, 31) == 3
    shutil.rmtree(journal_archive_dir(secondary))
    with pytest.raises(JournalArchivedError, match="keep the segments archived"):
        Standby(secondary)


def test_a_reader_follows_a_segment_archived_while_it_reads(tmp_path: Path) -> None:
    """``ringex replay --archive`` beside a running instance moves a segment a reader has
    listed but not opened yet: the reader opens it in the archive (it raised
    ``FileNotFoundError`` mid-journal)."""
    primary, _ = pair(tmp_path)
    primary = _archiving(primary, tmp_path)
    _append(primary, 1, 50)
    reader = JournalReader(
        journal_dir(primary),
        slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id,
        archive=journal_archive_dir(primary),
    )
    entries = reader.entries(1)
    first = [next(entries) for _ in range(3)]  # inside the first segment, all listed
    assert _archive(primary, 41) == 4
    rest = list(entries)
    assert [s for s, _ in first] + [s for s, _ in rest] == list(range(1, 51))


def test_operator_history_hashes_read_the_archive(tmp_path: Path) -> None:
    """``failover.py demote``'s questions (``AskDigests``) hash from seq 1 too."""
    primary, _ = pair(tmp_path)
    primary = _archiving(primary, tmp_path)
    _append(primary, 1, 50)
    whole = JournalReader(
        journal_dir(primary), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    expected = hashes_before(whole.entries(1), [1, 25, 51])
    assert _archive(primary, 41) == 4
    source = ReplicationSource(primary)
    try:
        answer = source._digests([1, 25, 51])
    finally:
        source.close()
    assert answer.digests == [expected[1], expected[25], expected[51]]
