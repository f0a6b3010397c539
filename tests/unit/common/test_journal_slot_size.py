"""A journal written by a build of another slot size (a field added to the largest event,
``Trade``, grows every slot: review 64's documented limit). Each segment is read with the
slot size its header says, its images re-framed to this build's (``reframe_slot``: the
record's length and bytes kept), so recovery, replication, ``cut_after``, the replication
source's tail and the metrics read an older build's journal; the writer begins a segment of
its own. An older build's journal is made here by rewriting one of today's with wider slots
(``widen``): the same entries, each segment the same seqs, rules and schema."""

from __future__ import annotations

import asyncio
import shutil
import types
from pathlib import Path

import pytest

from procs.common.journal import (
    HEADER_SIZE,
    JournalFormatError,
    JournalReader,
    entry_layout,
    list_segments,
)
from procs.common.journal_writer import JournalWriter, cut_after
from procs.common.record_codec import RecordCodec, reframe_slot
from procs.common.records import Record
from procs.common.topology import journal_dir
from procs.core.recovery import recover
from procs.gateway.order_log import Recovered as LoggedCommands
from procs.gateway.restart import GatewayRestart
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby
from procs.replica.tail import JournalTail
from procs.supervisor.metrics import journal_last_seq
from tests.unit.replica.test_review_replica_bugs import append, pair, until
from tests.unit.replica.test_source import commands
from tests.unit.router.test_review3_recovery_bugs import _instance

CODEC = RecordCodec()
SLOT = CODEC.slot_size
#: an older (or newer) build's slots: a field added to its largest event
WIDE = SLOT + 8
WIDE_CODEC = RecordCodec(slot_size=WIDE)


def widen(directory: Path, slot_size: int = WIDE) -> None:
    """Rewrite the journal in ``directory`` as a build of ``slot_size`` slots wrote it: the
    same entries, in segments of as many entries each, under the same rules."""
    reader = JournalReader(directory, slot_size=SLOT, schema_id=CODEC.journal_schema_id)
    segments = list_segments(directory)
    (rules,) = {reader.segment_rules(first, path) for first, path in segments}
    per_segment = (segments[0][1].stat().st_size - HEADER_SIZE) // entry_layout(SLOT).size
    images = [reframe_slot(image, slot_size) for _, image in reader.entries()]
    assert None not in images
    shutil.rmtree(directory)
    with JournalWriter(
        directory, slot_size=slot_size, schema_id=CODEC.journal_schema_id, rules=rules,
        segment_bytes=HEADER_SIZE + per_segment * entry_layout(slot_size).size, fsync="none",
    ) as writer:  # fmt: skip
        writer.append(1, b"".join(i for i in images if i is not None), len(images))
    assert [first for first, _ in list_segments(directory)] == [first for first, _ in segments]


def _reader(directory: Path, slot_size: int = SLOT) -> JournalReader:
    return JournalReader(directory, slot_size=slot_size, schema_id=CODEC.journal_schema_id)


def _slot_sizes(directory: Path) -> list[int]:
    return [_reader(directory).segment_layout(f, p).slot_size for f, p in list_segments(directory)]


def test_reframe_slot_keeps_the_record_and_resizes_the_padding() -> None:
    command = _commands_of(1)[0]
    image = CODEC.encode_slot(command)
    wider = reframe_slot(image, WIDE)
    assert wider is not None and len(wider) == WIDE
    assert WIDE_CODEC.decode_slot(wider) == command
    assert reframe_slot(wider, SLOT) == image  # and back
    length = image[0] | image[1] << 8
    assert reframe_slot(image, length + 9) is None  # no room for the stamp
    assert reframe_slot(b"\x00\x00" + bytes(SLOT - 2), SLOT) is None  # no record
    assert reframe_slot(b"\xff\x00" + bytes(SLOT - 2), WIDE * 4) is None  # more than it holds


def _commands_of(count: int) -> list[Record]:
    return list(commands(1, count))


def test_an_older_builds_journal_replays_to_the_same_state(tmp_path: Path) -> None:
    cfg, count = _instance(tmp_path)
    before = recover(cfg).state_hashes()
    directory = journal_dir(cfg)
    widen(directory)
    assert set(_slot_sizes(directory)) == {WIDE}
    after = recover(cfg)
    assert (after.last_seq, after.state_hashes()) == (count, before)


def test_the_writer_begins_a_segment_of_its_own_slot_size(tmp_path: Path) -> None:
    cfg, count = _instance(tmp_path)
    directory = journal_dir(cfg)
    widen(directory)
    old = list_segments(directory)[-1][1]
    size = old.stat().st_size
    with JournalWriter(directory, slot_size=SLOT, schema_id=CODEC.journal_schema_id) as writer:
        assert writer.next_seq == count + 1
        writer.append(count + 1, b"".join(map(CODEC.encode_slot, _commands_of(3))), 3)
    assert old.stat().st_size == size  # never appended to
    assert list_segments(directory)[-1][0] == count + 1
    assert _slot_sizes(directory)[-1] == SLOT
    images = [image for _, image in _reader(directory).entries()]
    assert len(images) == count + 3 and {len(i) for i in images} == {SLOT}
    assert [CODEC.decode_slot(i) for i in images[-3:]] == _commands_of(3)


def test_a_torn_tail_of_an_older_builds_segment_is_cut_at_its_own_entries(
    tmp_path: Path,
) -> None:
    cfg, count = _instance(tmp_path)
    directory = journal_dir(cfg)
    widen(directory)
    last = list_segments(directory)[-1][1]
    whole = last.stat().st_size
    with open(last, "ab") as f:
        f.write(b"\x07" * (entry_layout(WIDE).size // 2))  # a crashed write
    with JournalWriter(directory, slot_size=SLOT, schema_id=CODEC.journal_schema_id) as writer:
        assert writer.next_seq == count + 1
    assert last.stat().st_size == whole
    assert (whole - HEADER_SIZE) % entry_layout(WIDE).size == 0


def test_a_record_larger_than_this_builds_slot_is_refused_naming_it(tmp_path: Path) -> None:
    capacity = SLOT - 10
    image = (capacity + 7).to_bytes(2, "little") + b"\x01" * (capacity + 7)
    image += bytes(WIDE + 8 - len(image))
    with JournalWriter(
        tmp_path, slot_size=WIDE + 8, schema_id=CODEC.journal_schema_id, fsync="none"
    ) as writer:
        writer.append(1, image, 1)
    with pytest.raises(
        JournalFormatError,
        match=rf"offset 64: entry of seq 1 holds a {capacity + 7}-byte record in a "
        rf"{WIDE + 8}-byte slot; this build's {SLOT}-byte slots hold records of up to "
        rf"{capacity} bytes",
    ):
        list(_reader(tmp_path).entries())
    assert _reader(tmp_path).last_seq() == 1  # where it ends is still known (no decode)


def test_cut_after_truncates_an_older_segment_by_its_own_entries(tmp_path: Path) -> None:
    cfg, count = _instance(tmp_path)
    directory = journal_dir(cfg)
    originals = [bytes(i) for _, i in _reader(directory).entries()]
    widen(directory)
    with JournalWriter(directory, slot_size=SLOT, schema_id=CODEC.journal_schema_id) as writer:
        writer.append(count + 1, b"".join(map(CODEC.encode_slot, _commands_of(3))), 3)
    at = count - 3  # inside the last of the older build's segments
    moved = cut_after(
        directory, at, tmp_path / "aside", slot_size=SLOT, schema_id=CODEC.journal_schema_id
    )
    assert moved == 6
    kept = [bytes(i) for _, i in _reader(directory).entries()]
    assert kept == originals[:at]
    aside = [bytes(i) for _, i in _reader(tmp_path / "aside").entries(at + 1)]
    assert aside[:3] == originals[at:]
    assert [CODEC.decode_slot(i) for i in aside[3:]] == _commands_of(3)
    assert set(_slot_sizes(tmp_path / "aside")) == {SLOT}  # the copy is in this build's slots


def test_the_replication_tail_reads_across_slot_sizes(tmp_path: Path) -> None:
    cfg, count = _instance(tmp_path)
    directory = journal_dir(cfg)
    originals = [bytes(i) for _, i in _reader(directory).entries()]
    widen(directory)
    tail = JournalTail(_reader(directory))
    try:
        read: list[bytes] = []
        while len(read) < count:
            more = tail.read(len(read) + 1, 7)
            assert more, "the tail found nothing"
            read += more
        assert read == originals
        assert tail.read(count + 1, 7) == []
        with JournalWriter(directory, slot_size=SLOT, schema_id=CODEC.journal_schema_id) as w:
            w.append(count + 1, b"".join(map(CODEC.encode_slot, _commands_of(3))), 3)
        new = tail.read(count + 1, 7)
        assert [CODEC.decode_slot(i) for i in new] == _commands_of(3)
    finally:
        tail.close()


def test_the_metrics_count_an_older_segment_by_its_own_entries(tmp_path: Path) -> None:
    cfg, count = _instance(tmp_path)
    widen(journal_dir(cfg))
    assert journal_last_seq(journal_dir(cfg), entry_layout(SLOT).size) == count


def test_a_standby_follows_its_primary_over_an_older_builds_journal(tmp_path: Path) -> None:
    """Both upgraded: each hashes the older build's entries re-framed to its own slots."""
    primary, secondary = pair(tmp_path)
    append(primary, 1, 10)
    shutil.copytree(journal_dir(primary), journal_dir(secondary))
    widen(journal_dir(primary))
    widen(journal_dir(secondary))
    append(primary, 11, 3)  # the new build's first entries

    async def scenario() -> int:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        try:
            await until(lambda: standby.next_seq == 14 or following.done(), 5.0)
            if following.done():
                following.result()  # raises what refused it
            return standby.next_seq
        finally:
            standby.stopping.set()
            source.stopping.set()
            following.cancel()
            await asyncio.gather(following, serving, return_exceptions=True)
            standby.journal.close()
            source.close()

    assert asyncio.run(scenario()) == 14
    ours = [bytes(i) for _, i in _reader(journal_dir(primary)).entries()]
    theirs = [bytes(i) for _, i in _reader(journal_dir(secondary)).entries()]
    assert theirs == ours


def test_the_gateway_reframes_a_logged_image_of_another_slot_size() -> None:
    """Its ring takes slots of its own size: an image of a wider slot, published as it is,
    would spill into the next slot; one whose record does not fit is passed over."""
    command = _commands_of(1)[0]
    image = CODEC.encode_slot(command)
    wide = reframe_slot(image, WIDE)
    assert wide is not None
    too_large = (SLOT - 3).to_bytes(2, "little") + b"\x01" * (SLOT - 3) + bytes(13)
    logged = LoggedCommands()
    logged.commands = {5: (1, wide), 6: (1, image), 7: (1, too_large)}
    logged.command_schemas = dict.fromkeys((5, 6, 7), CODEC.journal_schema_id)
    restart = types.SimpleNamespace(codec=CODEC)
    kept = GatewayRestart._own_layout(restart, logged)  # type: ignore[arg-type]
    assert kept == {5: (1, image), 6: (1, image)}
