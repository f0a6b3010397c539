"""Review 124: the docstrings of ``procs/common/`` held against the code.

This file: the journal (``journal.py``, ``journal_format.py``, ``journal_writer.py``,
``journal_durable.py``, ``journal_archive.py``) and ``journal_history.py``'s hash.
``..._docstrings2.py``: the history chain file, the record codec (``record_codec.py``,
``record_layout.py``, ``records.py``), snapshots, market snapshots, durable files, units,
epochs, replication acks, the token bucket, stats, the quiet log, users, API keys, file
locks, run files, topology and types. Each claim about
behaviour (formats, frames and CRCs, what a reader accepts or refuses, rolling, fsync order,
archive rules, codec bounds, retention, arithmetic, modes, locks, paths) is a check on real
files in ``tmp_path`` with small inputs; the journal helpers come from
``tests/unit/router/test_journal.py``.

Convention: a test's docstring quotes the claims it checks in double quotes ("..." marks an
elision) and names the code; ``said("module", ...)`` first asserts each quote is still in one
of those modules' source (docstrings and ``#:`` comments), whitespace folded. A claim found
right is a plain test; a disagreement is ``xfail(strict=True, raises=AssertionError)``
asserting what the docstring says, its reason naming the side to fix.

Disagreements found (both files), all fixed since:

- ``durable.PRIVATE``: the journal is "the owner's alone"; ``journal_archive._move``
  (procs/common/journal_archive.py:70) copies a segment across volumes with
  ``shutil.copyfile``, so an archived segment (and a segment moved back by
  ``unarchive_after``) is 0644 under umask 022: every account's orders readable by any local
  user on the archive volume. Code side: make the copy ``PRIVATE``. The one real bug.
- ``Epochs.history``: "``(epoch, first_seq)``, both strictly increasing"; ``__post_init__``
  (procs/common/epochs.py:61) accepts two epochs from one seq. Docstring side (a promotion
  that wrote nothing is followed by another at the same seq): "first seqs never decrease".
- ``quiet_log``: records are "each cut to ``max_chars``"; ``QuietFilter.filter``
  (procs/common/quiet_log.py:49) appends the dropped count after the cut. Code side: cut
  after appending (or say the count comes on top).
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import inspect
import logging
import os
import re
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from procs.common.journal import (
    HEADER_SIZE,
    JournalArchivedError,
    JournalCorruptError,
    JournalError,
    JournalFormatError,
    JournalReader,
    JournalRulesError,
    list_segments,
    segment_name,
)
from procs.common.journal_archive import archive_segments_before, unarchive_after
from procs.common.journal_durable import ALL, FILE, durable_upto
from procs.common.journal_format import ENTRY_SIZE_AT, SLOT_SIZE_AT, EntryLayout, pack_header
from procs.common.journal_history import History, record_bytes
from procs.common.journal_writer import JournalWriter, cut_after
from procs.common.record_codec import reframe_slot
from tests.unit.router.test_journal import (
    ENTRY,
    PER_SEGMENT,
    SCHEMA,
    SLOT,
    SMALL,
    fill,
    flip,
    images,
    read_all,
    reader,
    writer,
)


def said(*names: str) -> None:
    """Each "quoted" span of the calling test's docstring (each part around "..."), whitespace
    folded, is in the source of one of the modules ``procs.common.<name>`` (docstrings and
    ``#:`` comments)."""
    caller = sys._getframe(1)
    doc = caller.f_globals[caller.f_code.co_name].__doc__
    quotes = re.findall(r'"(.+?)"', " ".join(doc.split()))
    modules = [importlib.import_module(f"procs.common.{name}") for name in names]
    texts = [" ".join(re.sub(r"(?m)^\s*#:?", " ", inspect.getsource(m)).split()) for m in modules]
    assert quotes
    for quote in quotes:
        for part in filter(None, (p.strip() for p in quote.split("..."))):
            assert any(part in text for text in texts), (part, names)


def segments(path: Path) -> list[Path]:
    return [p for _, p in list_segments(path)]


def rewrite_entry(seg: Path, index: int, seq: int, image: bytes) -> None:
    """Entry ``index`` of ``seg`` made ``seq`` and ``image`` with a valid CRC."""
    body = struct.pack("<Q", seq) + image
    entry = body + struct.pack("<I", zlib.crc32(body))
    with open(seg, "r+b") as f:
        f.seek(HEADER_SIZE + index * ENTRY)
        f.write(entry)


# -- journal_format.py / journal.py: the format ------------------------------------------------


def test_entry_sizes_follow_from_the_slot_size() -> None:
    """``EntryLayout``: "With 128-byte slots an entry is 144 bytes"; "The largest slot size a
    header may declare: a record's length is a u16"; "zero pad to 8"."""
    said("journal", "journal_format")
    assert EntryLayout(128).size == 144 and EntryLayout(152).size == 168
    assert EntryLayout(13).size == 32  # 8 + 13 + 4 = 25, padded to 32
    assert EntryLayout(1 << 16).slot_size == 1 << 16
    for bad in (0, (1 << 16) + 1):
        with pytest.raises(ValueError, match=f"slot_size {bad} must be within"):
            EntryLayout(bad)


def test_the_64_byte_header_field_by_field() -> None:
    """``pack_header``: "| u16 version | u16 header size | u32 entry size |", "| u32 slot size
    | u32 rules | u64 schema id | u64 first seq | i64 created ns |", "| 12 zero bytes | u32
    CRC32 of the 60 bytes before it |"; "Where the header keeps the entry size and the slot
    size"."""
    said("journal", "journal_format")
    head = pack_header(EntryLayout(152), 0xABCDEF, 41, -5, rules=7)
    assert len(head) == HEADER_SIZE == 64 and head[:8] == b"RGXJRNL\x00"
    assert struct.unpack_from("<HHII", head, 8) == (1, 64, 168, 152)
    assert struct.unpack_from("<I", head, ENTRY_SIZE_AT)[0] == 168
    assert struct.unpack_from("<I", head, SLOT_SIZE_AT)[0] == 152
    assert struct.unpack_from("<IQQq", head, 20) == (7, 0xABCDEF, 41, -5)
    assert head[48:60] == bytes(12)
    assert struct.unpack_from("<I", head, 60)[0] == zlib.crc32(head[:60])


def test_segments_and_entries_on_disk(tmp_path: Path) -> None:
    """journal_format.py: "A segment is ``<first_seq:020d>.journal``, a header
    (``pack_header``) and then fixed-size entries (``EntryLayout``: u64 seq, slot image, u32
    CRC, zero pad to 8), all little-endian."; journal.py: "CRC32(seq, image)"."""
    said("journal", "journal_format")
    fill(tmp_path, 3)
    (seg,) = segments(tmp_path)
    assert seg.name == "00000000000000000001.journal"
    data = seg.read_bytes()
    assert len(data) == HEADER_SIZE + 3 * ENTRY
    for k, image in enumerate(images(1, 3)[i : i + SLOT] for i in range(0, 3 * SLOT, SLOT)):
        entry = data[HEADER_SIZE + k * ENTRY : HEADER_SIZE + (k + 1) * ENTRY]
        assert entry[:8] == (k + 1).to_bytes(8, "little") and entry[8 : 8 + SLOT] == image
        crc = int.from_bytes(entry[8 + SLOT : 12 + SLOT], "little")
        assert crc == zlib.crc32(entry[: 8 + SLOT]) and entry[12 + SLOT :] == bytes(4)


def test_list_segments_takes_only_segment_names_oldest_first(tmp_path: Path) -> None:
    """``list_segments``: "``(first_seq, path)`` of every segment in ``directory``, oldest
    first."."""
    said("journal_format")
    for name in (segment_name(100), segment_name(9), "1.journal", segment_name(5) + ".tmp"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / ("x" * 20 + ".journal")).write_bytes(b"")
    assert list_segments(tmp_path) == [(n, tmp_path / segment_name(n)) for n in (9, 100)]


def test_name_and_header_must_agree_on_the_first_seq(tmp_path: Path) -> None:
    """journal.py: "a segment's file name, header and first entry agree on its first seq";
    ``JournalCorruptError``: "A segment holds something other than a valid journal at
    ``offset``."."""
    said("journal")
    fill(tmp_path, 15, segment_bytes=SMALL)
    second = segments(tmp_path)[1]
    second.rename(tmp_path / segment_name(12))
    with pytest.raises(JournalCorruptError, match="header first seq 11 differs") as err:
        read_all(tmp_path)
    assert err.value.offset == 32 and err.value.path == tmp_path / segment_name(12)


def test_a_bad_last_entry_then_zeros_is_a_torn_tail_repaired_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """journal.py: "the first entry that fails its CRC (or is cut short) is a torn tail when
    nothing but zero bytes follows it"; "``JournalReader.entries`` stops before it; ``repair``
    (which the writer runs on open) truncates the file there and logs one warning."."""
    said("journal")
    fill(tmp_path, 5)
    (seg,) = segments(tmp_path)
    for at in range(20, 24):  # garbage: one bit off would be rot (review 179), refused
        flip(seg, HEADER_SIZE + 4 * ENTRY + at)
    with open(seg, "ab") as f:
        f.write(bytes(2 * ENTRY + 3))
    assert [s for s, _ in reader(tmp_path).entries()] == [1, 2, 3, 4]
    caplog.set_level(logging.WARNING, "ringex.journal")
    assert reader(tmp_path).repair() == 3 * ENTRY + 3
    assert seg.stat().st_size == HEADER_SIZE + 4 * ENTRY
    assert len([r for r in caplog.records if "torn tail" in r.getMessage()]) == 1
    with writer(tmp_path) as w:  # and the writer's open runs it: an entry cut short
        assert w.next_seq == 5
    with open(seg, "r+b") as f:
        f.truncate(HEADER_SIZE + 3 * ENTRY + ENTRY // 2)
    assert reader(tmp_path).last_seq() == 3
    with writer(tmp_path) as w:
        assert w.next_seq == 4 and seg.stat().st_size == HEADER_SIZE + 3 * ENTRY


def test_a_bad_crc_followed_by_data_is_corruption_naming_file_and_offset(tmp_path: Path) -> None:
    """journal.py: "Anything else is ``JournalCorruptError`` naming the file and byte offset,
    never skipped: a bad CRC followed by non-zero data"; ``repair``: "``JournalCorruptError``
    if the damage is not a torn tail" (where the last entry is unsound too: a sound one is
    all that opening reads)."""
    said("journal")
    fill(tmp_path, 5)
    (seg,) = segments(tmp_path)
    flip(seg, HEADER_SIZE + 2 * ENTRY + 30)
    with pytest.raises(JournalCorruptError) as err:
        read_all(tmp_path)
    assert err.value.offset == HEADER_SIZE + 2 * ENTRY and str(seg) in str(err.value)
    assert reader(tmp_path).repair() == 0
    flip(seg, HEADER_SIZE + 4 * ENTRY + 30)
    with pytest.raises(JournalCorruptError, match="not a torn tail"):
        reader(tmp_path).repair()
    assert seg.stat().st_size == HEADER_SIZE + 5 * ENTRY  # nothing cut


def test_a_sound_last_entry_with_the_wrong_seq_is_not_a_torn_tail(tmp_path: Path) -> None:
    """journal.py: "a valid entry with the wrong seq" is ``JournalCorruptError``, at the
    journal's very end too (where a torn tail would be)."""
    said("journal")
    fill(tmp_path, 5)
    (seg,) = segments(tmp_path)
    rewrite_entry(seg, 4, 9, images(5, 1))
    with pytest.raises(JournalCorruptError, match="entry has seq 9, expected 5"):
        reader(tmp_path).last_seq()
    with pytest.raises(JournalCorruptError):
        writer(tmp_path)


def test_partial_entries_and_damaged_headers(tmp_path: Path) -> None:
    """journal.py: "a damaged or foreign header, a partial entry in any segment but the
    last"; ``JournalFormatError``: "A sound header written for another ... format
    version."."""
    said("journal")
    fill(tmp_path, 15, segment_bytes=SMALL)
    first, last = segments(tmp_path)
    with open(first, "r+b") as f:
        f.truncate(first.stat().st_size - 5)
    with pytest.raises(JournalCorruptError, match="partial entry") as err:
        read_all(tmp_path)
    assert err.value.path == first
    head = bytearray(last.read_bytes()[:HEADER_SIZE])
    struct.pack_into("<H", head, 8, 2)
    struct.pack_into("<I", head, 60, zlib.crc32(head[:60]))
    with open(last, "r+b") as f:
        f.write(head)
    with pytest.raises(JournalFormatError, match="format version is 0x2") as fmt:
        reader(tmp_path).last_seq()
    assert fmt.value.offset == 8
    flip(last, 3)
    with pytest.raises(JournalCorruptError, match="magic") as bad:
        reader(tmp_path).last_seq()
    assert bad.value.offset == 0 and not isinstance(bad.value, JournalFormatError)


def test_opening_reads_only_a_sound_last_entry_replay_verifies_every_one(tmp_path: Path) -> None:
    """journal.py: "Opening reads only the last entry when that one is sound (a full scan of
    the last segment otherwise); replay through ``entries`` verifies every entry it
    yields."."""
    said("journal")
    fill(tmp_path, 6)
    (seg,) = segments(tmp_path)
    flip(seg, HEADER_SIZE + 2 * ENTRY + 40)
    assert reader(tmp_path).last_seq() == 6
    with pytest.raises(JournalCorruptError):
        list(reader(tmp_path).entries(1))
    assert [s for s, _ in reader(tmp_path).entries(4)] == [4, 5, 6]


def test_a_reader_beside_a_writer_and_repair_under_the_lock(tmp_path: Path) -> None:
    """``JournalReader``: "Reading a journal that a writer is appending to sees a prefix of
    it"; "``repair`` refuses to run while a writer holds the directory"; ``DirectoryLock``:
    "one writer (or repair) at a time"; ``entries``: "Yields nothing past the end."."""
    said("journal")
    with writer(tmp_path) as w:
        w.append(1, images(1, 3), 3)
        assert [s for s, _ in reader(tmp_path).entries()] == [1, 2, 3]
        assert list(reader(tmp_path).entries(4)) == list(reader(tmp_path).entries(99)) == []
        with pytest.raises(JournalError, match="is held by a writer"):
            reader(tmp_path).repair()
        with pytest.raises(JournalError, match="is held by a writer"):
            writer(tmp_path)
    assert reader(tmp_path).repair() == 0


# -- rules, schema ids, slot sizes ---------------------------------------------------------------


def test_rules_are_refused_at_replay_and_a_writer_of_other_rules_starts_a_segment(
    tmp_path: Path,
) -> None:
    """journal.py: "a reader given ``rules`` refuses to yield an entry of a segment of another
    version (``JournalRulesError``), and a writer of another version starts a segment of its
    own rather than append to the last."; ``JournalWriter``: "; an empty one is
    replaced)"."""
    said("journal", "journal_writer")
    fill(tmp_path, 3, rules=1)
    with pytest.raises(JournalRulesError, match="rules version 1"):
        list(reader(tmp_path).under(2).entries())
    with writer(tmp_path, rules=2) as w:
        w.append(4, images(4, 2), 2)
    assert [f for f, _ in list_segments(tmp_path)] == [1, 4]
    assert [s for s, _ in reader(tmp_path).under(2).entries(4)] == [4, 5]
    assert [s for s, _ in reader(tmp_path).entries()] == [1, 2, 3, 4, 5]
    with open(tmp_path / segment_name(4), "r+b") as f:  # an empty last segment of rules 2
        f.truncate(HEADER_SIZE)
    with writer(tmp_path, rules=3) as w:
        w.append(4, images(4, 1), 1)
    head = (tmp_path / segment_name(4)).read_bytes()
    assert struct.unpack_from("<I", head, 20)[0] == 3 and len(segments(tmp_path)) == 2


def test_another_schema_is_checked_at_the_first_entry_yielded_not_at_the_header(
    tmp_path: Path,
) -> None:
    """journal.py: "It is checked as ``rules`` is, at the first entry a reader yields from a
    segment (``JournalFormat Error``), not at the header"; "refuse them (the default ...),
    pass over them ... or yield them"."""
    said("journal")
    fill(tmp_path, 4)
    other = JournalReader(tmp_path, slot_size=SLOT, schema_id=SCHEMA ^ 1)
    assert other.last_seq() == 4
    with pytest.raises(JournalFormatError, match="schema_id is") as err:
        list(other.entries())
    assert err.value.offset == 24
    assert list(other.entries(foreign="skip")) == []
    assert [s for s, _ in other.entries(foreign="yield")] == [1, 2, 3, 4]


def test_a_legacy_segment_is_read_without_refusal(tmp_path: Path) -> None:
    """``LEGACY_SCHEMA_IDS``: "A journal schema id -> older ids whose segments this layout
    reads as its own"; "0x5245F1ADAD78 is the same layout under the schema id's own
    rendering";
    ``JournalReader._foreign``: "a legacy alias of its own id is its own"."""
    said("journal", "journal_format")
    assert SCHEMA == 0x5245_F1AD_AD78
    with JournalWriter(tmp_path, slot_size=SLOT, schema_id=0x5245_DCF9_48CF) as w:
        w.append(1, images(1, 2), 2)
    assert [s for s, _ in reader(tmp_path).entries()] == [1, 2]


def _tiny(length: int, slot: int = 64) -> bytes:
    return struct.pack("<H", length) + bytes(range(1, length + 1)) + bytes(slot - 2 - length)


def test_images_of_another_slot_size_are_reframed_or_refused(tmp_path: Path) -> None:
    """journal.py: "reads an older segment's images re-framed to its own slots", "so every
    image a reader yields has its slot size", "an entry whose record does not fit this build's
    slot is refused (``JournalFormatError``)"; ``entries``: "or yielded as the segment holds
    them (``as_stored``"."""
    said("journal")
    with JournalWriter(tmp_path, slot_size=64, schema_id=SCHEMA) as w:
        w.append(1, _tiny(4) + _tiny(6) + _tiny(10), 3)
    small = JournalReader(tmp_path, slot_size=16, schema_id=SCHEMA)
    got = []
    with pytest.raises(JournalFormatError, match="entry of seq 3 holds a 10-byte record"):
        for seq, image in small.entries():
            got.append((seq, bytes(image)))
    assert got == [(1, _tiny(4, 16)), (2, _tiny(6, 16))]
    assert [bytes(i) for _, i in small.entries(as_stored=True)] == [_tiny(n) for n in (4, 6, 10)]


# -- journal_writer.py: rolling, durability ---------------------------------------------


def test_rolling_at_the_segment_boundary(tmp_path: Path) -> None:
    """``JournalWriter``: "An empty journal begins at ``start_seq``"; ``_roll``: "Seal the
    open segment (fsync, close) and start one at ``next_seq``."; a ``segment_bytes`` too
    small for the header and one entry is refused."""
    said("journal_writer")
    with pytest.raises(ValueError, match="cannot hold the 64-byte header and one 168-byte"):
        writer(tmp_path, segment_bytes=HEADER_SIZE + ENTRY - 1)
    with writer(tmp_path, segment_bytes=SMALL + ENTRY - 1, start_seq=41) as w:
        w.append(41, images(41, PER_SEGMENT), PER_SEGMENT)
        assert [f for f, _ in list_segments(tmp_path)] == [41]
        w.append(51, images(51, 1), 1)
    assert [f for f, _ in list_segments(tmp_path)] == [41, 51]
    assert [s for s, _ in reader(tmp_path).entries(41)] == list(range(41, 52))


def test_a_sealed_segment_is_fsynced_before_the_next_is_made_durably(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """journal.py: "Whatever the policy, a segment is fsynced before the next one is created,
    and a new segment is written as ``.tmp``, fsynced, renamed and its directory fsynced"."""
    said("journal")
    events: list[tuple[str, str]] = []
    real_fsync, real_rename, real_open = os.fsync, os.rename, os.open

    def fsync(fd: int) -> None:
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        real_fsync(fd)

    def rename(src: Any, dst: Any) -> None:
        events.append(("rename", Path(dst).name))
        real_rename(src, dst)

    def opened(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if flags & os.O_CREAT and str(path).endswith(".tmp"):
            events.append(("create", Path(path).name))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "open", opened)
    fill(tmp_path, PER_SEGMENT + 2, batch=PER_SEGMENT, segment_bytes=SMALL, fsync="none")
    k = events.index(("create", segment_name(11) + ".tmp"))
    assert ("fsync", segment_name(1)) in events[:k]
    assert [e for e in events[:k] if e[0] == "fsync"][-1] == ("fsync", segment_name(1))
    assert events[k + 1 : k + 4] == [
        ("fsync", segment_name(11) + ".tmp"),
        ("rename", segment_name(11)),
        ("fsync", tmp_path.name),
    ]


def test_the_fsync_policies_and_durable_seq(tmp_path: Path) -> None:
    """journal.py: "fsyncs at the end of every append"; "fsyncs when ``fsync_interval_ms``
    has passed since the last fsync, checked on append and by ``maybe_sync()``"; "inline
    (``sync()``) or on the writer's thread (``maybe_sync()``) as its caller says, and
    ``durable_seq`` says how far it got"; "leaves it to the OS (``durable_seq`` then
    means"."""
    said("journal")
    with writer(tmp_path / "b", fsync="batch") as w:
        w.append(1, images(1, 2), 2)
        assert w.durable_seq == 2 and durable_upto(tmp_path / "b") == 2
    now = [0]
    with writer(tmp_path / "i", fsync="interval", fsync_interval_ms=5, clock=lambda: now[0]) as w:
        now[0] = 1_000_000
        w.append(1, images(1, 1), 1)
        assert w.durable_seq == 0 and not w.maybe_sync()
        assert w.sync_due_in_s() == pytest.approx(0.004)
        now[0] = 6_000_000
        assert w.maybe_sync() and w.durable_seq == 1
        now[0] = 12_000_000
        w.append(2, images(2, 1), 1)
        assert w.durable_seq == 2
    with writer(tmp_path / "p", fsync="pipelined") as w:
        w.append(1, images(1, 3), 3)
        assert w.durable_seq == 0 and w.syncing and durable_upto(tmp_path / "p") == 0
        w.maybe_sync()
        assert w.wait_durable(5.0) or w.durable_seq == 3
        assert w.durable_seq == 3 and not w.syncing
        w.append(4, images(4, 1), 1)
        w.sync()
        assert w.durable_seq == 4
    with writer(tmp_path / "n", fsync="none") as w:
        w.append(1, images(1, 2), 2)
        assert w.durable_seq == 2 and durable_upto(tmp_path / "n") == 2


def test_the_durable_mark(tmp_path: Path) -> None:
    """journal_durable.py: "keeps the last seq it knows durable in this file (16 bytes"; "A
    writer that closes cleanly has made everything durable and marks its last seq";
    "opening fsyncs what the last run left and marks it all"; "No file (a journal of an older
    build, or none yet): no bound (``ALL``)."; "a file a crash left before its first mark"
    reads 0."""
    said("journal_durable")
    assert durable_upto(tmp_path) == ALL
    with writer(tmp_path, fsync="interval", fsync_interval_ms=3_600_000) as w:
        w.append(1, images(1, 3), 3)
        assert durable_upto(tmp_path) == 0
    mark = tmp_path / FILE
    assert durable_upto(tmp_path) == 3 and mark.stat().st_size == 16
    mark.write_bytes((1).to_bytes(8, "little"))  # an older build's killed run's last mark
    with writer(tmp_path, fsync="interval", fsync_interval_ms=3_600_000):
        assert durable_upto(tmp_path) == 3
    mark.write_bytes(b"\1\2")
    assert durable_upto(tmp_path) == 0


def test_archiving_keeps_the_last_segment_and_takes_an_equal_copy_as_moved(tmp_path: Path) -> None:
    """``archive_segments_before``: "Move the segments of ``directory`` whose entries are all
    ``< seq``"; "The last segment always stays"; journal_archive.py: "a segment found in both,
    byte for byte, is taken as moved"."""
    said("journal_archive")
    journal_dir, archive = tmp_path / "j", tmp_path / "a"
    fill(journal_dir, 25, segment_bytes=SMALL)
    assert archive_segments_before(journal_dir, 20, archive) == [archive / segment_name(1)]
    archive.joinpath(segment_name(11)).write_bytes((journal_dir / segment_name(11)).read_bytes())
    moved = archive_segments_before(journal_dir, 10**9, archive)
    assert moved == [archive / segment_name(11)]
    assert [f for f, _ in list_segments(journal_dir)] == [21]
    with pytest.raises(ValueError, match="is the journal's own directory"):
        archive_segments_before(journal_dir, 30, journal_dir)


def test_a_read_before_the_oldest_segment_is_archived_unless_the_archive_has_it(
    tmp_path: Path,
) -> None:
    """``JournalArchivedError``: "A read from a seq before the oldest segment there is (in the
    journal's directory or, where the reader has one, its archive)"; ``unarchive_after``:
    "Move back into the journal ``directory`` the archived segments that hold an entry after
    ``seq``"."""
    said("journal", "journal_archive")
    journal_dir, archive = tmp_path / "j", tmp_path / "a"
    fill(journal_dir, 25, segment_bytes=SMALL)
    archive_segments_before(journal_dir, 21, archive)
    with pytest.raises(JournalArchivedError, match="from_seq 5 precedes the oldest segment"):
        list(reader(journal_dir).entries(5))
    both = JournalReader(journal_dir, slot_size=SLOT, schema_id=SCHEMA, archive=archive)
    assert [s for s, _ in both.entries(5)] == list(range(5, 26))
    unarchive_after(journal_dir, archive, 15)
    assert [f for f, _ in list_segments(journal_dir)] == [11, 21]
    assert [f for f, _ in list_segments(archive)] == [1]


def test_a_segment_archived_across_volumes_stays_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PRIVATE``: "The mode of the venue's files: the owner's alone. The journal (every
    account's orders and transfers)"; journal_archive.py: "or across volumes by a copy that is
    fsynced before the original goes"."""
    said("durable", "journal_archive")
    journal_dir, archive = tmp_path / "j", tmp_path / "a"
    fill(journal_dir, 25, segment_bytes=SMALL)
    real = os.rename

    def cross_device(src: Any, dst: Any) -> None:
        if Path(src).parent == journal_dir:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real(src, dst)

    monkeypatch.setattr(os, "rename", cross_device)
    old = os.umask(0o022)
    try:
        moved = archive_segments_before(journal_dir, 21, archive)
    finally:
        os.umask(old)
    assert [oct(p.stat().st_mode & 0o777) for p in segments(journal_dir)] == ["0o600"]
    assert [oct(p.stat().st_mode & 0o777) for p in moved] == ["0o600", "0o600"]


def test_cut_after_moves_the_tail_aside_under_the_lock(tmp_path: Path) -> None:
    """``cut_after``: "Move every entry after ``seq`` out of the journal ``directory`` into the
    journal ``aside`` (one of its own, beginning at ``seq + 1``, kept for the operator), and
    return how many moved"; "Holds the directory's lock"."""
    said("journal_writer")
    journal_dir, aside = tmp_path / "j", tmp_path / "aside"
    fill(journal_dir, 25, segment_bytes=SMALL)
    with writer(journal_dir), pytest.raises(JournalError, match="held by a writer"):
        cut_after(journal_dir, 12, aside, slot_size=SLOT, schema_id=SCHEMA)
    assert cut_after(journal_dir, 12, aside, slot_size=SLOT, schema_id=SCHEMA) == 13
    assert [s for s, _ in read_all(journal_dir)] == list(range(1, 13))
    assert [s for s, _ in read_all(aside, 13)] == list(range(13, 26))
    assert [f for f, _ in list_segments(journal_dir)] == [1, 11]


# -- journal_history.py ----------------------------------------------------------------------------


def _h(key: bytes, *parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in (key, *parts):
        h.update(part)
    return h.digest()


def test_the_chained_history_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """journal_history.py: "the key before block 0 is a constant, the key after block k is the
    hash of the key before it and the block's records"; "A record is an image's length and the
    bytes it says (``record_bytes``), not its padding, so a build of another slot size ...
    hashes one history alike"; "A digest is ``VERSION`` then the 16 bytes of H"."""
    said("journal_history")
    monkeypatch.setattr("procs.common.journal_history.BLOCK", 4)
    data = images(1, 6)
    recs = [bytes(record_bytes(data[i : i + SLOT])) for i in range(0, 6 * SLOT, SLOT)]
    assert all(len(r) == 2 + (r[0] | r[1] << 8) < SLOT for r in recs)
    k0 = hashlib.blake2b(b"ringex journal history v2", digest_size=16).digest()
    k1 = _h(k0, *recs[:4])
    history = History(SLOT)
    history.update(data)
    assert history.digest() == bytes([2]) + _h(k1, *recs[4:]) and history.next_seq == 7
    assert history.marks == [(1, k1, zlib.crc32(recs[3]))]
    wide = History(200)
    for i in range(0, 6 * SLOT, SLOT):
        wide.update(reframe_slot(data[i : i + SLOT], 200) or b"")
    assert wide.digest() == history.digest()
    with pytest.raises(ValueError, match="are not whole"):
        History(SLOT).update(data[:-1])
