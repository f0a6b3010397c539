"""A hostile review (83) of 5d3b47e, "The journal reads each segment in its own slot size":
each segment is read with the entry layout its header says, images of another slot size are
re-framed to the reader's (``record_codec.reframe_slot``), a record too large is refused,
the writer begins a segment of its own slot size, ``cut_after`` truncates each segment by its
own entries, the replication tail's fast path keeps to segments of the reader's slot size,
the metrics count by the header's entry size, and the gateway re-frames its order log's
command images (README, the journal).

Reviewed: every reader of journal files (``JournalReader`` and its callers in ``procs/`` and
``scripts/``: recovery and its reread window, ``journal_reader``, ``journal_end``, the
gateway's ``journaled_refs`` and restart, ``JournaledEnds``, the promotion's ``begin_epoch``,
``ringex replay``'s ``_sync_journal``, ``failover.py``'s ``journal_state``, ``entry_at`` and
``diverged``), every use of ``EntryLayout``, ``HEADER_SIZE`` and ``layout.size`` (the writer's
open, roll and ``_fsync_failed`` truncation, ``cut_after`` and ``_check_copied``, the
replication tail, the metrics), the archive (``journal_archive.py``: file names and byte
comparisons only), replication (source, standby, rebuild: the ``Build`` tuple with the slot
size in the handshake, the history hash over re-framed images on both sides, the operators'
digests), the database writer (its replay, its checkpoint CRC, its snapshots' CRCs), the
gateway's ``_own_layout``, ``entries(foreign="skip"|"yield")`` over segments of another slot
size, ``_passed_over``, ``_tail``'s scan (``yielding=False``), and ``reframe_slot``'s edges.

What holds (pinned below where cheap, unmarked): a torn tail of an older build's last segment
is found by its own entries by ``last_seq`` and by a reader; ``entries(foreign="skip")``
passes over a foreign segment of another slot size by its own entry size and goes on into
this build's segments; ``reframe_slot`` refuses a zero length, a length past the image and an
image shorter than its length field; ``journal_last_seq`` counts an older last segment by
its header's entry size. Looked at, not pinned: the writer never appends to an older
segment (an empty one is replaced), ``cut_after`` truncates by each segment's own layout and
its copy is in this build's slots, the tail's ``_position`` closes on another slot size so
every image of an older segment goes through ``entries``; a standby at the older build is
refused at the handshake by its ``Build`` (the slot size differs), never by a hash mismatch;
``History`` still sees one image size (every image yielded is re-framed).

Faults, each pinned by a test that failed on 5d3b47e; all three pass since their fixes (the
same session): the database writer takes a checkpoint's or a snapshot's CRC of the image as
this build reads it or as its segment holds it (``_entry_crcs``, ``entries(as_stored=True)``),
and ``_unframed`` names the limit that an image's length field breaks, or says it holds none:

1. The database writer of the new build does not start on a database an older build wrote
   (``procs/dbwriter/writer.py:193`` ``_entry_crc``, ``:173``): the checkpoint keeps the
   CRC-32 of the journal's image at its seq as the older build read it (its own slot size),
   and the new build compares it with the CRC of the *re-framed* image (other padding, other
   length): they never match, and ``start`` raises "the journal lost a tail ... its seqs went
   to other commands" at every start of the writer and of ``ringex replay --to-db``. Its
   snapshots are passed over likewise (``Follower.restore``: "the journal lost a tail"). The
   README promises the database writer reads the older entries "as they read their own".
2. ``JournalReader._too_large`` (``procs/common/journal.py:558``) says a record does not fit
   this build's slot when it does: ``reframe_slot`` also refuses an image whose length runs
   past its *own* slot (``end + STAMP_SIZE > len(image)``), and the message then reads "holds
   a 115-byte record in a 120-byte slot; this build's 128-byte slots hold records of up to
   118 bytes": the value and the limit it names are not the ones broken (115 + 10 > 120).
3. The same message for a segment whose slots are shorter than the 2-byte length field
   (``procs/common/journal.py:563``: ``view[pos + 9]`` is the entry's CRC, not a length byte)
   names a record length read from the CRC ("holds a 25093-byte record in a 1-byte slot"):
   a made-up value, where ``reframe_slot`` itself takes such an image as holding none.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import psycopg
import pytest

from procs.common.journal import (
    HEADER_SIZE,
    JournalFormatError,
    JournalReader,
    entry_layout,
    list_segments,
)
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import reframe_slot
from procs.common.topology import journal_dir
from procs.dbwriter.writer import DbWriter, WriterOptions
from procs.supervisor.metrics import journal_last_seq
from tests.unit.common.test_journal_slot_size import CODEC, SLOT, WIDE, WIDE_CODEC, widen
from tests.unit.dbwriter.journal_gen import build, make_cfg
from tests.unit.replica.test_source import commands

SCHEMA = CODEC.journal_schema_id
OTHER_SCHEMA = SCHEMA ^ 0x1  # a build of other journaled commands


def _reader(directory: Path, slot_size: int = SLOT, schema: int = SCHEMA) -> JournalReader:
    return JournalReader(directory, slot_size=slot_size, schema_id=schema)


def _write(
    directory: Path, first: int, n: int, slot_size: int = SLOT, schema: int = SCHEMA
) -> None:
    """Entries ``first .. first + n - 1`` as a build of ``slot_size`` slots and ``schema``
    journals them (a segment of its own where the last one's differ)."""
    images = [reframe_slot(CODEC.encode_slot(c), slot_size) for c in commands(first, n)]
    with JournalWriter(directory, slot_size=slot_size, schema_id=schema, fsync="none") as w:
        assert w.next_seq == first
        w.append(first, b"".join(i for i in images if i is not None), n)


# -- 1. the database writer after an upgrade of the slot size --------------------------------


def test_the_new_builds_database_writer_resumes_on_an_older_builds_database(
    tmp_path: Path, dsn: str
) -> None:
    """What is wrong: ``DbWriter.start`` (``procs/dbwriter/writer.py:173``) compares the
    database's ``last_crc`` (the CRC-32 of the checkpoint's journal image, as the build that
    wrote the database read it: its slots) with ``_entry_crc`` (``:193``), the CRC of the
    image the new build's reader yields: re-framed to the new slot size, other bytes.

    Expected: after the README's upgrade (``ringex stop``, start the build of other slots)
    the new build's database writer resumes at the checkpoint, as it reads the older entries
    "as they read their own" (README, the journal).

    What happens: ``RuntimeError`` "the journal's entry there is not the one the database was
    written from: the journal lost a tail", at every start of the writer (and of ``ringex
    replay --to-db``): the database cannot be written by the new build at all."""
    cfg = make_cfg(tmp_path)
    live = build(cfg, 60)
    live.writer.close()
    widen(journal_dir(cfg))  # the older build's journal: wider slots
    older = DbWriter(
        cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6), codec=WIDE_CODEC
    )  # that build's database writer, to the journal's end
    try:
        assert older.run(to_end=True) == live.last_seq
    finally:
        older.close()
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT last_seq, last_crc FROM checkpoint").fetchone()
    assert row is not None and row[0] == live.last_seq
    wide_image = next(iter(_reader(journal_dir(cfg), WIDE).entries(live.last_seq)))[1]
    assert row[1] == zlib.crc32(wide_image)  # the older build's image, as it read it
    resumed = DbWriter(cfg, dsn)  # the new build: this build's slots
    try:
        assert resumed.start().seq == live.last_seq
    finally:
        resumed.close()


# -- 2. and 3. the refusal's message ---------------------------------------------------------


def _one_entry(directory: Path, slot_size: int, image: bytes) -> None:
    with JournalWriter(directory, slot_size=slot_size, schema_id=SCHEMA, fsync="none") as w:
        w.append(1, image, 1)


def test_a_length_past_its_own_slot_is_refused_naming_that_slots_limit(tmp_path: Path) -> None:
    """What is wrong: ``_too_large`` (``procs/common/journal.py:558``) has one message for
    both of ``reframe_slot``'s refusals, and names this build's slot as the limit broken even
    where the record fits it and it is the entry's own slot that its length runs past.

    Expected: an entry of a 120-byte slot whose length says 115 bytes (115 + 2 + 8 stamp >
    120: more than its slot holds) is refused naming the limit broken, the 120-byte slot's
    110-byte records.

    What happens: "holds a 115-byte record in a 120-byte slot; this build's 128-byte slots
    hold records of up to 118 bytes": the message says the record does not fit where it does
    (115 <= 118), and sends the operator to the build that wrote it, which refuses it too."""
    narrow = SLOT - 8
    length = SLOT - 13  # fits this build's slot (capacity SLOT - 10), not its own (SLOT - 18)
    image = length.to_bytes(2, "little") + b"\x01" * length
    _one_entry(tmp_path, narrow, image + bytes(narrow - len(image)))
    with pytest.raises(JournalFormatError) as refused:
        list(_reader(tmp_path).entries())
    message = str(refused.value)
    assert f"{length}-byte record in a {narrow}-byte slot" in message
    assert f"up to {narrow - 10} bytes" in message, message


def test_a_slot_shorter_than_its_length_field_is_refused_without_a_made_up_length(
    tmp_path: Path,
) -> None:
    """What is wrong: ``_too_large`` (``procs/common/journal.py:563``) reads the record's
    length as ``view[pos + 8] | view[pos + 9] << 8`` whatever the slot size; in a 1-byte
    slot ``view[pos + 9]`` is the first byte of the entry's CRC.

    Expected: the refusal says the slot cannot hold a record (``reframe_slot`` takes an image
    shorter than 2 bytes as holding none), or at least names no length the entry does not
    have.

    What happens: "entry of seq 1 holds a N-byte record in a 1-byte slot", N made of the
    slot's byte and the CRC's (25093 here): a made-up value, bigger than the slot."""
    _one_entry(tmp_path, 1, b"\x05")
    crc_byte = (
        entry_layout(1).seq_crc.unpack(
            (tmp_path / list_segments(tmp_path)[0][1].name).read_bytes()[HEADER_SIZE:]
        )[1]
        & 0xFF
    )
    made_up = 0x05 | crc_byte << 8
    with pytest.raises(JournalFormatError) as refused:
        list(_reader(tmp_path).entries())
    assert f"holds a {made_up}-byte record" not in str(refused.value), str(refused.value)


# -- what holds --------------------------------------------------------------------------------


def test_reframe_slot_refuses_what_holds_no_record() -> None:
    assert reframe_slot(b"", SLOT) is None
    assert reframe_slot(b"\x05", SLOT) is None  # shorter than the length field
    assert reframe_slot(bytes(SLOT), SLOT) is None  # a zero length
    past = (SLOT - 5).to_bytes(2, "little") + bytes(SLOT - 2)  # runs into its stamp
    assert reframe_slot(past, WIDE) is None
    image = CODEC.encode_slot(next(iter(commands(1, 1))))
    assert reframe_slot(image, SLOT) == image  # its own size: unchanged


def test_a_torn_tail_of_an_older_last_segment_is_found_by_its_own_entries(
    tmp_path: Path,
) -> None:
    """The reader (no writer, which repairs) stops at the torn entry of an older build's
    last segment, and ``last_seq`` and the metrics say where by its entry size."""
    _write(tmp_path, 1, 5, WIDE)
    path = list_segments(tmp_path)[-1][1]
    whole = path.stat().st_size
    with open(path, "ab") as f:  # a crashed write: more than one of this build's entries
        f.write(b"\x07" * (entry_layout(SLOT).size + 3))
        f.write(bytes(entry_layout(WIDE).size * 2 - entry_layout(SLOT).size - 3))
    reader = _reader(tmp_path)
    assert reader.last_seq() == 5
    images = [bytes(i) for _, i in reader.entries()]
    assert [CODEC.decode_slot(i) for i in images] == list(commands(1, 5))
    assert journal_last_seq(tmp_path, entry_layout(SLOT).size) == 5 + 2  # (counts torn)
    assert path.stat().st_size > whole  # a reader changes nothing


def test_skip_passes_over_a_foreign_segment_of_another_slot_size_by_its_own_entries(
    tmp_path: Path,
) -> None:
    _write(tmp_path, 1, 7, WIDE, OTHER_SCHEMA)  # a build of other commands and slots
    _write(tmp_path, 8, 3)  # this build's
    got = [(s, CODEC.decode_slot(i)) for s, i in _reader(tmp_path).entries(2, foreign="skip")]
    assert got == list(zip(range(8, 11), commands(8, 3), strict=True))
    yielded = [(s, len(i)) for s, i in _reader(tmp_path).entries(1, foreign="yield")]
    assert yielded == [(s, SLOT) for s in range(1, 11)]  # re-framed: one size to hash
    with pytest.raises(JournalFormatError, match="schema_id"):
        list(_reader(tmp_path).entries(1))
