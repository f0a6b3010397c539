"""The journal tail against the reader it shortcuts: the same images, across appends, segment
rolls and repositioning; a write in progress is "nothing yet"; corruption still raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.common.journal import HEADER_SIZE, JournalCorruptError, JournalReader, list_segments
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import Transfer
from procs.replica.tail import JournalTail

CODEC = RecordCodec()


def images(first: int, n: int) -> list[bytes]:
    return [CODEC.encode_slot(Transfer(s, 6, 0, 0, s, 7, 1, s, s)) for s in range(first, first + n)]


def open_journal(tmp_path: Path, segment_entries: int = 1000) -> tuple[JournalWriter, JournalTail]:
    reader = JournalReader(tmp_path, slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id)
    size = HEADER_SIZE + segment_entries * reader.layout.size
    writer = JournalWriter(
        tmp_path, slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id, segment_bytes=size
    )
    return writer, JournalTail(reader)


def test_the_tail_follows_appends_and_segment_rolls(tmp_path: Path) -> None:
    writer, tail = open_journal(tmp_path, segment_entries=7)
    written: list[bytes] = []
    got: list[bytes] = []
    for n in (1, 3, 5, 7, 2, 11):  # rolls mid-batch and at segment ends
        batch = images(len(written) + 1, n)
        writer.append(len(written) + 1, b"".join(batch), n)
        written += batch
        while more := tail.read(len(got) + 1, 4):
            got += more
        assert got == written
        assert tail.read(len(got) + 1, 4) == []  # nothing yet
    assert len(list_segments(tmp_path)) > 3
    assert tail.read(3, 2) == written[2:4]  # another position: repositions
    tail.close()
    writer.close()


def test_a_write_in_progress_is_nothing_yet_and_corruption_raises(tmp_path: Path) -> None:
    writer, tail = open_journal(tmp_path)
    writer.append(1, b"".join(images(1, 2)), 2)
    assert len(tail.read(1, 10)) == 2
    writer.close()
    (_, path) = list_segments(tmp_path)[-1]
    size_e = tail.layout.size
    entry = path.read_bytes()[-size_e:]
    with path.open("ab") as f:  # half of the next entry: a write still going on
        f.write(entry[: size_e // 2])
    assert tail.read(3, 10) == []
    with path.open("ab") as f:  # garbage then data: not a torn tail
        f.write(b"\xff" * (size_e // 2) + entry + entry)
    with pytest.raises(JournalCorruptError):
        tail.read(3, 10)
    tail.close()
