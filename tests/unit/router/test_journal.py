"""The router's journal on real files: round trips, segments, reopening, torn tails repaired,
corruption refused with file and offset, fsync policies, archiving."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.common import journal as journal_module
from procs.common.journal import (
    HEADER_SIZE,
    EntryLayout,
    JournalCorruptError,
    JournalError,
    JournalFormatError,
    JournalReader,
    JournalSequenceError,
    list_segments,
    segment_name,
)
from procs.common.journal_archive import archive_segments_before
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import CancelOrder, NewOrder, Record
from procs.common.types import OrdType, Side, StpMode, TimeInForce

CODEC = RecordCodec()
SLOT = CODEC.slot_size
SCHEMA = CODEC.journal_schema_id
ENTRY = EntryLayout(SLOT).size  # 168 for 152-byte slots
PER_SEGMENT = 10
SMALL = HEADER_SIZE + PER_SEGMENT * ENTRY  # segment_bytes for 10 entries a segment


def command(seq: int) -> Record:
    if seq % 5 == 0:
        return CancelOrder(
            seq=seq, ts_ns=1_000 + seq, gateway=1, session=2, client_ref=seq, account=7,
            symbol=3, order_id=seq - 1,
        )  # fmt: skip
    return NewOrder(
        seq=seq, ts_ns=1_000 + seq, gateway=1, session=2, client_ref=seq, account=7, symbol=3,
        order_id=seq, side=Side.BUY if seq % 2 else Side.SELL, ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC, flags=0, stp=StpMode.NONE, price=10_000 + seq, qty=seq,
        stop_price=0, display_qty=0,
    )  # fmt: skip


def images(first: int, count: int) -> bytes:
    return b"".join(CODEC.encode_slot(command(s)) for s in range(first, first + count))


def writer(path: Path, **kwargs: object) -> JournalWriter:
    return JournalWriter(path, slot_size=SLOT, schema_id=SCHEMA, **kwargs)  # type: ignore[arg-type]


def reader(path: Path) -> JournalReader:
    return JournalReader(path, slot_size=SLOT, schema_id=SCHEMA)


def fill(path: Path, total: int, batch: int = 7, **kwargs: object) -> None:
    with writer(path, **kwargs) as w:
        seq = w.next_seq
        while seq <= total:
            n = min(batch, total - seq + 1)
            w.append(seq, images(seq, n), n)
            seq += n


def read_all(path: Path, from_seq: int = 1) -> list[tuple[int, Record]]:
    return [(seq, CODEC.decode_slot(image)) for seq, image in reader(path).entries(from_seq)]


def assert_contiguous(path: Path, first: int, last: int) -> None:
    assert read_all(path, first) == [(s, command(s)) for s in range(first, last + 1)]


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Count os.fsync calls (still making them)."""
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    yield calls


# -- round trips and segments -------------------------------------------------------------


def test_round_trip_of_real_records(tmp_path: Path) -> None:
    fill(tmp_path, 25)
    assert_contiguous(tmp_path, 1, 25)
    assert reader(tmp_path).last_seq() == 25
    [(first, path)] = list_segments(tmp_path)
    assert (first, path.name) == (1, "00000000000000000001.journal")
    assert path.stat().st_size == HEADER_SIZE + 25 * ENTRY


def test_rollover_across_segments_and_reading_from_the_middle(tmp_path: Path) -> None:
    fill(tmp_path, 47, batch=13, segment_bytes=SMALL)  # batches straddle segment ends
    segments = list_segments(tmp_path)
    assert [first for first, _ in segments] == [1, 11, 21, 31, 41]
    assert segments[-1][1].stat().st_size == HEADER_SIZE + 7 * ENTRY
    assert_contiguous(tmp_path, 1, 47)
    for start in (10, 11, 12, 33, 47):
        assert_contiguous(tmp_path, start, 47)
    assert list(reader(tmp_path).entries(48)) == []
    assert list(reader(tmp_path).entries(1_000)) == []


def test_one_append_larger_than_a_segment(tmp_path: Path) -> None:
    fill(tmp_path, 35, batch=35, segment_bytes=SMALL)
    assert len(list_segments(tmp_path)) == 4
    assert_contiguous(tmp_path, 1, 35)


def test_reopening_continues_at_next_seq(tmp_path: Path) -> None:
    fill(tmp_path, 15, segment_bytes=SMALL)
    with writer(tmp_path, segment_bytes=SMALL) as w:
        assert w.next_seq == 16
        assert w.durable_seq == 15
        w.append(16, images(16, 10), 10)
    fill(tmp_path, 40, segment_bytes=SMALL)
    assert_contiguous(tmp_path, 1, 40)
    assert [first for first, _ in list_segments(tmp_path)] == [1, 11, 21, 31]


def test_reopening_a_full_last_segment_starts_the_next(tmp_path: Path) -> None:
    fill(tmp_path, 20, batch=10, segment_bytes=SMALL)
    assert [first for first, _ in list_segments(tmp_path)] == [1, 11]
    fill(tmp_path, 21, segment_bytes=SMALL)
    assert [first for first, _ in list_segments(tmp_path)] == [1, 11, 21]
    assert_contiguous(tmp_path, 1, 21)


@pytest.mark.parametrize(("slot", "entry"), [(20, 32), (21, 40)])
def test_slot_sizes_off_8_bytes_fill_entry_by_entry(tmp_path: Path, slot: int, entry: int) -> None:
    assert EntryLayout(slot).size == entry  # 8 + slot + 4, rounded up to 8
    data = bytes(k % 251 for k in range(slot * 9))
    segment = HEADER_SIZE + 4 * entry
    with JournalWriter(tmp_path, slot_size=slot, schema_id=5, segment_bytes=segment) as w:
        w.append(1, data, 9)
    journal = JournalReader(tmp_path, slot_size=slot, schema_id=5)
    got = [(s, bytes(v)) for s, v in journal.entries(2)]
    assert got == [(k + 1, data[k * slot : k * slot + slot]) for k in range(1, 9)]
    assert journal.last_seq() == 9


def test_both_fill_paths_write_the_same_entries(tmp_path: Path) -> None:
    data = images(1, 9)
    for name, by_words in (("words", True), ("each", False)):
        with writer(tmp_path / name) as w:
            w._by_words = by_words
            w.append(1, memoryview(data), 9)
    words = (tmp_path / "words" / segment_name(1)).read_bytes()
    each = (tmp_path / "each" / segment_name(1)).read_bytes()
    assert words[HEADER_SIZE:] == each[HEADER_SIZE:]


def test_an_empty_or_missing_journal(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        reader(tmp_path / "nope").last_seq()
    with writer(tmp_path / "j") as w:
        assert (w.next_seq, w.durable_seq) == (1, 0)
        w.append(1, b"", 0)
    assert reader(tmp_path / "j").last_seq() == 0
    assert list(reader(tmp_path / "j").entries()) == []


def test_an_empty_last_segment_is_continued(tmp_path: Path) -> None:
    fill(tmp_path, 10, batch=10, segment_bytes=SMALL)
    with writer(tmp_path, segment_bytes=SMALL) as w:  # start segment 11, crash before entries
        w._roll()
    assert reader(tmp_path).last_seq() == 10
    fill(tmp_path, 12, segment_bytes=SMALL)
    assert_contiguous(tmp_path, 1, 12)


# -- torn tails ---------------------------------------------------------------------------


def last_segment(path: Path) -> Path:
    return list_segments(path)[-1][1]


def repaired(path: Path, caplog: pytest.LogCaptureFixture, good: int, total: int) -> None:
    """Opening the writer drops the tail after ``good`` with one warning; appending goes on."""
    seg = last_segment(path)
    size = seg.stat().st_size
    good_end = HEADER_SIZE + (good - list_segments(path)[-1][0] + 1) * ENTRY
    assert reader(path).last_seq() == good
    assert_contiguous(path, 1, good)  # the reader stops before a torn tail, untouched
    with caplog.at_level(logging.WARNING, logger="ringex.journal"):
        fill(path, total, segment_bytes=SMALL)
    [line] = [r for r in caplog.records if r.name == "ringex.journal"]
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert str(seg) in message
    assert f"offset {good_end}" in message
    assert f"dropped {size - good_end} bytes" in message
    assert_contiguous(path, 1, total)


def test_a_short_last_entry_is_repaired(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fill(tmp_path, 15, segment_bytes=SMALL)
    seg = last_segment(tmp_path)
    os.truncate(seg, seg.stat().st_size - 5)
    repaired(tmp_path, caplog, 14, 30)


def test_garbage_in_the_last_entry_is_repaired(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fill(tmp_path, 15, segment_bytes=SMALL)
    seg = last_segment(tmp_path)
    for at in range(40, 36, -1):  # garbage, not one bit off (that is rot: refused)
        flip(seg, seg.stat().st_size - at)
    repaired(tmp_path, caplog, 14, 30)


def test_trailing_zeros_are_repaired(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fill(tmp_path, 13, segment_bytes=SMALL)
    seg = last_segment(tmp_path)
    with open(seg, "ab") as f:
        f.write(bytes(3 * ENTRY + 17))  # a crashed, preallocated or half-flushed write
    repaired(tmp_path, caplog, 13, 30)


def test_a_half_written_entry_then_zeros_is_repaired(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fill(tmp_path, 13, segment_bytes=SMALL)
    seg = last_segment(tmp_path)
    with open(seg, "ab") as f:
        f.write(images(14, 1)[:50] + bytes(ENTRY * 2))
    repaired(tmp_path, caplog, 13, 30)


def test_repair_reports_what_it_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fill(tmp_path, 5)
    seg = last_segment(tmp_path)
    os.truncate(seg, seg.stat().st_size - 1)
    with caplog.at_level(logging.WARNING, logger="ringex.journal"):
        assert reader(tmp_path).repair() == ENTRY - 1
        assert reader(tmp_path).repair() == 0
    assert len(caplog.records) == 1
    assert seg.stat().st_size == HEADER_SIZE + 4 * ENTRY


# -- corruption is refused, with file and offset -------------------------------------------


def corrupt(path: Path, match: str) -> JournalCorruptError:
    with pytest.raises(JournalCorruptError, match=match) as caught:
        read_all(path)
    return caught.value


def test_a_bad_entry_in_a_sealed_segment(tmp_path: Path) -> None:
    fill(tmp_path, 25, segment_bytes=SMALL)
    seg = list_segments(tmp_path)[1][1]
    offset = HEADER_SIZE + 2 * ENTRY  # seq 13
    flip(seg, offset + 30)
    err = corrupt(tmp_path, "CRC")
    assert (err.path, err.offset) == (seg, offset)
    assert f"{seg}: offset {offset}" in str(err)
    assert "expected 13" in str(err)
    assert_contiguous(tmp_path, 14, 25)  # a read starting after the damage does not see it


def test_a_bad_entry_followed_by_data_in_the_last_segment(tmp_path: Path) -> None:
    fill(tmp_path, 8)
    seg = last_segment(tmp_path)
    offset = HEADER_SIZE + 1 * ENTRY  # seq 2, with 6 good entries after it
    flip(seg, offset + 100)
    err = corrupt(tmp_path, "not a torn tail")
    assert (err.path, err.offset) == (seg, offset)
    assert f"followed by data at offset {offset + ENTRY}" in str(err)
    # the writer's open looks at the end only (replay checks the rest); a damaged end makes
    # it scan, and then it refuses too
    os.truncate(seg, seg.stat().st_size - 3)
    with pytest.raises(JournalCorruptError, match=f"offset {offset}"):
        writer(tmp_path)
    with pytest.raises(JournalCorruptError, match=f"offset {offset}"):
        reader(tmp_path).repair()


def test_zeros_in_the_middle_are_not_a_tail(tmp_path: Path) -> None:
    fill(tmp_path, 8)
    seg = last_segment(tmp_path)
    with open(seg, "r+b") as f:
        f.seek(HEADER_SIZE + 3 * ENTRY)
        f.write(bytes(ENTRY))
    err = corrupt(tmp_path, "not a torn tail")
    assert err.offset == HEADER_SIZE + 3 * ENTRY


def test_a_partial_entry_in_a_sealed_segment(tmp_path: Path) -> None:
    fill(tmp_path, 15, segment_bytes=SMALL)
    seg = list_segments(tmp_path)[0][1]
    os.truncate(seg, seg.stat().st_size - 10)
    err = corrupt(tmp_path, "partial entry")
    assert (err.path, err.offset) == (seg, HEADER_SIZE + 9 * ENTRY)


def test_a_sound_entry_with_the_wrong_seq(tmp_path: Path) -> None:
    fill(tmp_path, 6)
    other = tmp_path / "other"
    with writer(other) as w:  # the same images under seqs 1..6 ...
        w.append(1, images(1, 6), 6)
    entry_5 = (other / segment_name(1)).read_bytes()[HEADER_SIZE + 4 * ENTRY :][:ENTRY]
    seg = last_segment(tmp_path)
    with open(seg, "r+b") as f:  # ... so seq 5's entry, valid, lands where seq 3 belongs
        f.seek(HEADER_SIZE + 2 * ENTRY)
        f.write(entry_5)
    err = corrupt(tmp_path, "entry has seq 5, expected 3")
    assert err.offset == HEADER_SIZE + 2 * ENTRY


def test_a_missing_segment_is_a_seq_gap(tmp_path: Path) -> None:
    fill(tmp_path, 35, segment_bytes=SMALL)
    segments = list_segments(tmp_path)
    segments[1][1].unlink()
    err = corrupt(tmp_path, "first seq 21, but the previous segment ends at 10: a seq gap")
    assert (err.path, err.offset) == (segments[2][1], 32)


def test_a_damaged_header(tmp_path: Path) -> None:
    fill(tmp_path, 15, segment_bytes=SMALL)
    seg = list_segments(tmp_path)[0][1]
    flip(seg, 40)
    err = corrupt(tmp_path, "header CRC")
    assert (err.path, err.offset) == (seg, 60)
    flip(seg, 40)
    flip(seg, 1)
    err = corrupt(tmp_path, "magic")
    assert (err.path, err.offset) == (seg, 0)


def test_a_header_that_disagrees_with_its_name(tmp_path: Path) -> None:
    fill(tmp_path, 5)
    seg = last_segment(tmp_path)
    seg.rename(tmp_path / segment_name(2))
    with pytest.raises(
        JournalCorruptError, match="first seq 1 differs from the file name's 2"
    ) as e:
        reader(tmp_path).last_seq()
    assert e.value.offset == 32


def test_another_schema_or_a_record_too_large_for_the_slot_names_both_values(
    tmp_path: Path,
) -> None:
    fill(tmp_path, 5)
    seg = last_segment(tmp_path)
    with pytest.raises(
        JournalFormatError, match=f"schema_id is {SCHEMA:#x} in the file, expected 0x7"
    ) as caught:
        list(JournalReader(tmp_path, slot_size=SLOT, schema_id=7).entries())
    assert (caught.value.path, caught.value.offset) == (seg, 24)
    # another slot size is read in its own (re-framed): a record it cannot hold is refused
    with pytest.raises(
        JournalFormatError, match=rf"{seg}: offset 64: entry of seq 1 holds a \d+-byte record "
        r"in a 152-byte slot; this build's 24-byte slots hold records of up to 14 bytes"
    ):  # fmt: skip
        list(JournalReader(tmp_path, slot_size=24, schema_id=SCHEMA).entries())
    with JournalWriter(tmp_path, slot_size=64, schema_id=SCHEMA) as other:
        assert other.next_seq == 6  # (its first append begins a segment of its own)
    with pytest.raises(JournalCorruptError, match="header is 10 bytes, expected 64"):
        os.truncate(seg, 10)
        reader(tmp_path).last_seq()


# -- the writer's contract ----------------------------------------------------------------


def test_append_refuses_a_wrong_first_seq(tmp_path: Path) -> None:
    fill(tmp_path, 5)
    with writer(tmp_path) as w:
        for wrong in (5, 7, 1):
            with pytest.raises(JournalSequenceError, match=f"first_seq={wrong}, .*next_seq=6"):
                w.append(wrong, images(wrong, 1), 1)
        with pytest.raises(
            ValueError, match=f"images hold {SLOT * 2} bytes; count=3 .* {SLOT * 3}"
        ):
            w.append(6, images(6, 2), 3)
        w.append(6, images(6, 1), 1)  # the refusals changed nothing
    assert_contiguous(tmp_path, 1, 6)


def test_one_writer_per_directory(tmp_path: Path) -> None:
    with writer(tmp_path):
        with pytest.raises(JournalError, match="held by a writer"):
            writer(tmp_path)
        with pytest.raises(JournalError, match="held by a writer"):
            reader(tmp_path).repair()
    writer(tmp_path).close()


def test_a_failed_write_stops_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = writer(tmp_path)
    w.append(1, images(1, 3), 3)

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        with pytest.raises(OSError, match="No space"):
            w.append(4, images(4, 2), 2)
    with pytest.raises(JournalError, match="failed earlier"):
        w.append(4, images(4, 2), 2)
    w.close()
    fill(tmp_path, 6)
    assert_contiguous(tmp_path, 1, 6)


def test_stale_temporary_segments_are_removed(tmp_path: Path) -> None:
    fill(tmp_path, 3)
    stale = tmp_path / (segment_name(4) + ".tmp")
    stale.write_bytes(b"half a header")
    fill(tmp_path, 4)
    assert not stale.exists()
    assert_contiguous(tmp_path, 1, 4)


def test_configuration_errors_name_the_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync='always'"):
        writer(tmp_path, fsync="always")
    with pytest.raises(ValueError, match="segment_bytes 100 cannot hold"):
        writer(tmp_path, segment_bytes=100)
    with pytest.raises(ValueError, match="from_seq 0"):
        list(reader(tmp_path).entries(0))


# -- fsync policies -----------------------------------------------------------------------


def test_batch_policy_syncs_every_append(tmp_path: Path, fsyncs: list[int]) -> None:
    with writer(tmp_path, fsync="batch") as w:
        start = len(fsyncs)
        for seq in range(1, 31, 5):
            w.append(seq, images(seq, 5), 5)
            assert w.durable_seq == seq + 4
        assert len(fsyncs) - start == 6 + 2  # one a batch; segment 1's file and directory
        w.sync()  # nothing pending: no fsync
        assert len(fsyncs) - start == 8


def test_interval_policy_syncs_when_the_interval_has_passed(
    tmp_path: Path, fsyncs: list[int]
) -> None:
    now = [0]
    with writer(tmp_path, fsync="interval", fsync_interval_ms=5, clock=lambda: now[0]) as w:
        w.append(1, images(1, 5), 5)
        assert (w.next_seq, w.durable_seq) == (6, 0)
        now[0] = 4_999_999
        assert not w.maybe_sync()
        w.append(6, images(6, 5), 5)
        assert w.durable_seq == 0
        now[0] = 5_000_000
        count = len(fsyncs)
        assert w.maybe_sync()
        assert (w.durable_seq, len(fsyncs)) == (10, count + 1)
        assert not w.maybe_sync()  # nothing pending
        now[0] = 20_000_000
        w.append(11, images(11, 2), 2)  # late enough: the append syncs
        assert w.durable_seq == 12
        w.append(13, images(13, 2), 2)
        assert w.durable_seq == 12
        w.sync()
        assert w.durable_seq == 14
        w.append(15, images(15, 1), 1)
    with writer(tmp_path) as w:
        assert w.durable_seq == 15  # close synced the rest


def test_none_policy_leaves_it_to_the_os(tmp_path: Path, fsyncs: list[int]) -> None:
    with writer(tmp_path, fsync="none") as w:
        w.append(1, images(1, 5), 5)
        start = len(fsyncs)
        for seq in range(6, 31, 5):
            w.append(seq, images(seq, 5), 5)
            assert w.durable_seq == seq + 4  # "none": what was written
        assert not w.maybe_sync()
    assert len(fsyncs) == start  # nor on close
    assert_contiguous(tmp_path, 1, 30)


def test_sealing_a_segment_syncs_it_under_any_policy(tmp_path: Path, fsyncs: list[int]) -> None:
    with writer(tmp_path, fsync="none", segment_bytes=SMALL) as w:
        w.append(1, images(1, 10), 10)
        start = len(fsyncs)
        w.append(11, images(11, 1), 1)
        assert len(fsyncs) - start == 3  # seal segment 1; new segment's file and directory


# -- archiving ----------------------------------------------------------------------------


def test_archive_before_moves_whole_segments(tmp_path: Path) -> None:
    journal, archive = tmp_path / "journal", tmp_path / "archive"
    fill(journal, 45, segment_bytes=SMALL)  # segments 1, 11, 21, 31, 41
    with writer(journal, segment_bytes=SMALL) as w:
        assert w.archive_before(1, archive) == []
        assert w.archive_before(20, archive) == [archive / segment_name(1)]  # 11..20 holds 20
        moved = w.archive_before(31, archive)
        assert moved == [archive / segment_name(11), archive / segment_name(21)]
        assert w.archive_before(1_000, archive) == [archive / segment_name(31)]  # not the last
        w.append(46, images(46, 1), 1)
    assert [first for first, _ in list_segments(journal)] == [41]
    assert [first for first, _ in list_segments(archive)] == [1, 11, 21, 31]
    assert_contiguous(journal, 41, 46)
    assert_contiguous(archive, 1, 40)
    with pytest.raises(JournalError, match="from_seq 40 precedes the oldest segment"):
        read_all(journal, 40)
    fill(journal, 50, segment_bytes=SMALL)
    assert_contiguous(journal, 41, 50)


def test_archive_to_another_file_system_copies_then_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal, archive = tmp_path / "journal", tmp_path / "archive"
    fill(journal, 25, segment_bytes=SMALL)
    real = os.rename

    def cross_device(src: Path, dst: Path) -> None:
        if Path(src).parent == journal:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real(src, dst)

    monkeypatch.setattr(os, "rename", cross_device)
    with writer(journal, segment_bytes=SMALL) as w:
        assert w.archive_before(21, archive) == [
            archive / segment_name(1),
            archive / segment_name(11),
        ]
    assert sorted(p.name for p in archive.iterdir()) == [segment_name(1), segment_name(11)]
    assert [first for first, _ in list_segments(journal)] == [21]
    assert_contiguous(archive, 1, 20)
    (journal / segment_name(1)).write_bytes(b"")
    with pytest.raises(FileExistsError, match=f"{archive / segment_name(1)} exists already"):
        archive_segments_before(journal, 21, archive)


def test_chunk_boundaries_change_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "_READ_CHUNK", 3 * ENTRY + 5)  # 3 entries a read
    fill(tmp_path, 25, segment_bytes=SMALL)
    for start in (1, 3, 4, 12, 25):
        assert_contiguous(tmp_path, start, 25)
    seg = last_segment(tmp_path)
    with open(seg, "ab") as f:
        f.write(bytes(7 * ENTRY))  # zeros across several reads: still a tail
    assert reader(tmp_path).repair() == 7 * ENTRY
    seg = list_segments(tmp_path)[1][1]
    offset = HEADER_SIZE + 4 * ENTRY  # seq 15: the second entry of the second read
    flip(seg, offset + 9)
    entries = reader(tmp_path).entries(12)
    assert [next(entries)[0] for _ in range(3)] == [12, 13, 14]  # the good ones come first
    with pytest.raises(JournalCorruptError, match=f"offset {offset}"):
        next(entries)
    err = corrupt(tmp_path, "CRC")
    assert (err.path, err.offset) == (seg, offset)


def test_a_reader_beside_the_writer_sees_a_prefix(tmp_path: Path) -> None:
    with writer(tmp_path) as w:
        w.append(1, images(1, 6), 6)
        assert reader(tmp_path).last_seq() == 6
        with open(last_segment(tmp_path), "ab") as f:  # a write the reader catches half done
            f.write(images(7, 1)[:60])
        assert_contiguous(tmp_path, 1, 6)
        assert_contiguous(tmp_path, 4, 6)
