"""Review 107: README.md's "## The router and the journal", the journal on disk, held to the
code mechanically: its format (segment names, the checked header, fixed-size entries) and its
recovery claims (a torn tail cut, corruption named, other rules, schemas and slot sizes refused
or re-framed, the durable mark) are shown on a temporary directory.

Convention (as review 104's, shared helpers in ``readme_core_claims``): the README is read as
it is when the test runs, and each claim is found in it by a quote (whitespace folded), so a
claim that is reworded fails here, loudly, rather than being checked no longer. Nothing here
starts a process; the tests write a temporary directory.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest

from procs.common.journal import (
    JournalCorruptError,
    JournalFormatError,
    JournalReader,
    JournalRulesError,
)
from procs.common.journal_durable import durable_upto
from procs.common.journal_format import (
    HEADER,
    HEADER_SIZE,
    LEGACY_SCHEMA_IDS,
    entry_layout,
    list_segments,
    segment_name,
)
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import reframe_slot
from procs.common.records import CreateAccount, NewOrder, Record, ReplaceOrder
from tests.unit.readme_core_claims import CODEC, _claim

# -- the journal on disk ----------------------------------------------------------------------


def _commands(n: int, first: int = 1) -> list[Record]:
    return [CreateAccount(first + k, 1, 1, 1, k, 100 + first + k) for k in range(n)]


def _write(directory: Path, n: int, *, rules: int = 1, slot: int = 152, first: int = 1) -> None:
    with JournalWriter(
        directory, slot_size=slot, schema_id=CODEC.journal_schema_id, rules=rules
    ) as writer:
        images = [CODEC.encode_slot(c) for c in _commands(n, writer.next_seq)]
        framed = [reframe_slot(i, slot) for i in images]  # an older build's slots: 128
        writer.append(writer.next_seq, b"".join(i for i in framed if i is not None), n)


def _reader(directory: Path, *, rules: int | None = 1, schema: int | None = None) -> JournalReader:
    return JournalReader(
        directory,
        slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id if schema is None else schema,
        rules=rules,
    )


def test_segment_name_header_and_entry_size(tmp_path: Path) -> None:
    """README "## The router and the journal": "segment files of fixed-size entries (seq, the
    152-byte slot image, CRC32) behind a checked header", each header saying the rules version
    and the slot size; "Disk": "the journal ~145 GB (168 bytes a command, 144 before
    2026-11-27's client ids)" at 10k orders/s a day (journal_format.py: ``EntryLayout``)."""
    _claim("is segment files of fixed-size entries (seq, the 152-byte slot image, CRC32) behind a")
    _claim("the journal ~145 GB (168 bytes a command, 144 before 2026-11-27's client ids)")
    _write(tmp_path, 3, rules=4)
    [(first, path)] = list_segments(tmp_path)
    assert (first, path.name) == (1, segment_name(1)) and path.name == f"{1:020d}.journal"
    _, _, _, entry, slot, rules, schema, first_seq, _ = HEADER.unpack_from(path.read_bytes())
    assert (entry, slot, rules, schema, first_seq) == (168, 152, 4, CODEC.journal_schema_id, 1)
    assert path.stat().st_size == HEADER_SIZE + 3 * 168
    assert entry_layout(128).size == 144
    assert round(10_000 * 86_400 * 168 / 1e9) == 145
    (seq,) = struct.unpack_from("<Q", path.read_bytes(), HEADER_SIZE + 168)
    assert seq == 2


def test_torn_tail_cut_with_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """README "## The router and the journal": "A torn last entry is truncated with a log
    line": a segment cut inside its third entry reads as two, and the writer that opens it
    cuts it there, saying so (journal.py ``_repair``)."""
    _claim("A torn last entry is truncated with a log line")
    _write(tmp_path, 3)
    [(_, path)] = list_segments(tmp_path)
    with open(path, "r+b") as f:
        f.truncate(HEADER_SIZE + 2 * 168 + 50)
    assert [s for s, _ in _reader(tmp_path).entries()] == [1, 2]
    with caplog.at_level(logging.WARNING, logger="ringex.journal"):
        _write(tmp_path, 1)
    assert any("torn tail" in r.getMessage() for r in caplog.records)
    assert [s for s, _ in _reader(tmp_path).entries()] == [1, 2, 3]


def test_corruption_elsewhere_names_segment_and_offset(tmp_path: Path) -> None:
    """README "## The router and the journal": "corruption anywhere else is an error naming the
    segment and byte offset": a byte flipped in the first of three entries."""
    _claim("corruption anywhere else is an error naming the segment and byte offset")
    _write(tmp_path, 3)
    [(_, path)] = list_segments(tmp_path)
    data = bytearray(path.read_bytes())
    data[HEADER_SIZE + 20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError) as caught:
        list(_reader(tmp_path).entries())
    assert str(path) in str(caught.value) and f"offset {HEADER_SIZE}" in str(caught.value)


def test_other_rules_refused_naming_both_and_a_new_segment(tmp_path: Path) -> None:
    """README "## The router and the journal": recovery "refuses to replay an entry of another
    version, naming the segment and both versions"; "A router of a new version begins a
    segment of its own rather than append to the last"."""
    _claim("refuses to replay an entry of another version, naming the segment and both versions")
    _claim("A router of a new version begins a segment of its own rather than append to the")
    _write(tmp_path, 2, rules=3)
    with pytest.raises(JournalRulesError) as caught:
        list(_reader(tmp_path, rules=4).entries())
    text = str(caught.value)
    assert "00000000000000000001.journal" in text and "version 3" in text and "version 4" in text
    _write(tmp_path, 2, rules=4)
    assert [first for first, _ in list_segments(tmp_path)] == [1, 3]


def test_other_schema_refused_naming_both_ids(tmp_path: Path) -> None:
    """README "## The router and the journal": the schema id "is checked as the rules are, at
    the first entry a reader would decode from a segment (refused, naming the segment and both
    ids)"."""
    _claim("(refused, naming the segment and both ids)")
    _write(tmp_path, 2)
    other = CODEC.journal_schema_id ^ 0x5A5A
    with pytest.raises(JournalFormatError) as caught:
        list(_reader(tmp_path, schema=other).entries())
    text = str(caught.value)
    assert str(list_segments(tmp_path)[0][1]) in text
    assert f"{CODEC.journal_schema_id:#x}" in text and f"{other:#x}" in text


def test_other_slot_size_reframed_and_new_segment(tmp_path: Path) -> None:
    """README "## The router and the journal": "Each segment's header says its slot size and is
    read in it: a build of other slots reads an older build's entries re-framed to its own
    ..., and its writer begins a segment of its own": 128-byte entries read as 152-byte images
    of the same records."""
    _claim("header says its slot size and is read in it: a build of other slots reads an older")
    _write(tmp_path, 2, slot=128)
    images = [(s, bytes(i)) for s, i in _reader(tmp_path).entries()]
    assert [len(i) for _, i in images] == [152, 152]
    assert [CODEC.decode_slot(i) for _, i in images] == _commands(2)
    _write(tmp_path, 1)
    assert [first for first, _ in list_segments(tmp_path)] == [1, 3]


def test_legacy_schema_ids_table() -> None:
    """README "## The router and the journal": "Builds up to 2026-11-27 stamped the whole
    record set's id instead; a segment carrying it is read as this build's ...
    (`LEGACY_SCHEMA_IDS` in `procs/common/journal_format.py`)", and `NewOrder` and
    `ReplaceOrder` "gained `client_id` on 2026-11-27 (b"" in the entries before)": this build's
    commands' id has aliases there."""
    _claim("(`LEGACY_SCHEMA_IDS` in `procs/common/journal_format.py`)")
    _claim('`ReplaceOrder` gained `client_id` on 2026-11-27 (b"" in the entries before)')
    assert LEGACY_SCHEMA_IDS.get(CODEC.journal_schema_id)
    assert NewOrder.__struct_defaults__[-1] == b"" and ReplaceOrder.__struct_defaults__[-1] == b""


def test_durable_mark_after_open(tmp_path: Path) -> None:
    """README "## The router and the journal": the writer keeps the durable seq "in
    `journal/durable` (16 bytes, the seq and its complement ..., stored after each fsync, at
    its open and at its clean close)": after three appends and a close, the mark is 3 and
    the file 16 bytes."""
    _write(tmp_path, 3)
    assert (tmp_path / "durable").stat().st_size == 16
    assert durable_upto(tmp_path) == 3
