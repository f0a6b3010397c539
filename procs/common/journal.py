"""The router's journal: every sequenced command, on disk before any matcher sees it.

The router gives each accepted command the next global sequence number (1, 2, 3, ...) and
appends its slot image here; recovery loads the newest snapshot and replays the journal from
the snapshot's seq + 1 (crash-only: startup runs the same path). The journal stores slot
images opaquely: it knows their size and the schema id of their layout, never their types.

Format: a directory of segments ``<first_seq:020d>.journal``, each a 64-byte header and then
fixed-size entries, all little-endian::

    header  | magic "RGXJRNL\\0" | u16 version | u16 header size | u32 entry size |
            | u32 slot size | u32 rules | u64 schema id | u64 first seq | i64 created ns |
            | 12 zero bytes | u32 CRC32 of the 60 bytes before it |
    entry   | u64 seq | slot image (slot size bytes) | u32 CRC32(seq, image) | zero pad to 8 |

With 128-byte slots an entry is 144 bytes. Entry seqs are contiguous within a segment and
across segments; a segment's file name, header and first entry agree on its first seq.
``rules`` is the version of the exchange's rules its entries were sequenced under
(``procs/common/rules_version.py``; 0: not recorded): a reader given ``rules`` refuses to
yield an entry of a segment of another version (``JournalRulesError``), and a writer of
another version starts a segment of its own rather than append to the last.

``schema id`` names the journaled commands' layout (``RecordCodec.journal_schema_id``). It is
checked as ``rules`` is, at the first entry a reader yields from a segment (``JournalFormat
Error``), not at the header: a build of another layout starts from a snapshot at the journal's
end and its writer begins a segment of its own, so the segments the snapshot covers are only
looked at (their tail, their last seq). ``entries`` takes what to do with another layout's
entries: refuse them (the default: what is decoded), pass over them (the router's reread
window before its snapshot, whose commands no ring of this build can hold), or yield them
(what only hashes or compares the images: replication's history, ``demote``'s probes).

``slot size`` fixes the size of a segment's entries, and each segment is read with its own.
A build of another slot size (a field added to an event grows every slot: the slot holds the
largest record) reads an older segment's images re-framed to its own slots
(``record_codec.reframe_slot``: the record's length and bytes kept, the padding resized),
so every image a reader yields has its slot size and hashes alike on both sides of a
replication; an entry whose record does not fit this build's slot is refused
(``JournalFormatError``). Its writer begins a segment of its own, as for other rules.

Durability. ``append`` writes a whole batch with one ``write`` per segment (group commit);
the ``fsync`` policy decides when it is made durable: ``"batch"`` fsyncs at the end of every
append (the caller acknowledges nothing it has not appended); ``"interval"`` fsyncs when
``fsync_interval_ms`` has passed since the last fsync, checked on append and by
``maybe_sync()`` when the caller is idle (a crash loses at most that window);
``"pipelined"`` fsyncs every append too, inline (``sync()``) or on the writer's thread
(``maybe_sync()``) as its caller says, and ``durable_seq`` says how far it got; ``"none"``
leaves it to the OS (``durable_seq`` then means "written"). Whatever the policy, a segment is
fsynced before the next one is created, and a new segment is written as ``.tmp``, fsynced,
renamed and its directory fsynced, so only the last segment can ever have a torn tail.

Tail rules. In the last segment, the first entry that fails its CRC (or is cut short) is a
torn tail when nothing but zero bytes follows it: a crashed write, or zeros from preallocation.
``JournalReader.entries`` stops before it; ``repair`` (which the writer runs on open)
truncates the file there and logs one warning. Anything else is ``JournalCorruptError`` naming
the file and byte offset, never skipped: a bad CRC followed by non-zero data (a later page
of a write can reach the disk before an earlier one, but fsync covers both, so the journal
cannot tell a lost unacknowledged write from rot in an acknowledged one and refuses to guess),
a valid entry with the wrong seq, a damaged or foreign header, a partial entry in any segment
but the last, and a last entry one bit from passing its CRC (a torn write loses the entry's
end, its CRC with it: one bit off is rot at rest in an entry that may have been
acknowledged, review 179). Opening reads only the last entry when that one is sound (a full
scan of the last segment otherwise); replay through ``entries`` verifies every entry it
yields.

Rejected: mmap for reading (a yielded view would pin the map, so the reader could not close a
segment it has finished), one CRC per batch (a torn batch would lose every entry in it, and
replication wants to verify single entries), and preallocating segments (every append still
changes the file size, so fsync writes metadata either way, and zeros lengthen the tail scan).
"""

from __future__ import annotations

import bisect
import fcntl
import io
import logging
import os
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Literal

from procs.common.journal_format import (
    ENTRY_SIZE_AT,
    HEADER,
    HEADER_SIZE,
    LEGACY_SCHEMA_IDS,
    MAGIC,
    MAX_SLOT_SIZE,
    SLOT_SIZE_AT,
    SUFFIX,
    U32,
    U64,
    VERSION,
    EntryLayout,
    entry_layout,
    list_segments,
    one_bit_off,
    pack_header,
    segment_name,
)
from procs.common.record_codec import SLOT_FRAMING, reframe_slot

#: The format's names, taken from here by the journal's readers and writers.
__all__ = [
    "ENTRY_SIZE_AT", "HEADER_SIZE", "LEGACY_SCHEMA_IDS", "MAGIC", "MAX_SLOT_SIZE",
    "SLOT_SIZE_AT", "SUFFIX", "U32", "U64", "VERSION", "EntryLayout", "entry_layout",
    "list_segments", "pack_header", "segment_name",
]  # fmt: skip

log = logging.getLogger("ringex.journal")


_READ_CHUNK: Final = 4 * 2**20  # bytes per read while replaying, rounded down to whole entries


class JournalError(Exception):
    """The journal cannot be used as asked (locked, failed earlier, archived too far)."""


class JournalCorruptError(JournalError):
    """A segment holds something other than a valid journal at ``offset``."""

    def __init__(self, path: Path, offset: int, detail: str) -> None:
        super().__init__(f"{path}: offset {offset}: {detail}")
        self.path = path
        self.offset = offset


class JournalArchivedError(JournalError):
    """A read from a seq before the oldest segment there is (in the journal's directory or,
    where the reader has one, its archive): its entries were archived and moved on."""


class JournalRulesError(JournalError):
    """A replay reached entries sequenced under other rules than this build's: made again,
    they would not make the events they made (``procs/common/rules_version.py``)."""

    def __init__(self, path: Path, first: int, found: int, expected: int) -> None:
        written = f"rules version {found}" if found else "no rules version (an older build)"
        super().__init__(
            f"journal segment {path} (seqs from {first}) was written under {written}, and "
            f"this build runs rules version {expected}: replayed, its entries would not make "
            "the events they made. Replay it with the build that wrote it and write a "
            "snapshot at the journal's end (ringex replay --snapshot) before upgrading"
        )
        self.path, self.first, self.found, self.expected = path, first, found, expected


class JournalFormatError(JournalCorruptError):
    """A sound header written for another slot size, schema or format version."""


class ReplayError(JournalError, ValueError):
    """The journal and the snapshots do not make one history: a snapshot past the journal's
    end or one that does not decode, or a journaled command the state replayed so far
    refuses. The message names the file or the seq (``ringex replay`` prints it)."""


#: What ``JournalReader.entries`` does with the entries of another layout (schema id).
Foreign = Literal["refuse", "skip", "yield"]


def _format_error(
    path: Path, offset: int, name: str, found: int, expected: int
) -> JournalFormatError:
    return JournalFormatError(
        path, offset, f"{name} is {found:#x} in the file, expected {expected:#x}: written by "
        "a build of other journaled records, whose entries this build cannot read: run the "
        "build that wrote it, or upgrade from a snapshot at the journal's end (README, the "
        "journal)",
    )  # fmt: skip


class JournalSequenceError(ValueError):
    """``append`` was given a first seq other than the journal's next one."""


@dataclass(frozen=True)
class _Tail:
    """Where the valid entries of a segment end (meaningful for a scan from its first entry)."""

    path: Path
    good_end: int  # byte offset just after the last good entry
    last_seq: int  # first seq - 1 when the segment holds no entry
    size: int  # the file's size when scanned
    rules: int  # the rules version its header records
    schema: int  # and the schema id
    slot_size: int  # and the slot size its entries were written with


def _drain(scan: Generator[tuple[int, memoryview], None, _Tail]) -> _Tail:
    while True:
        try:
            next(scan)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]  # StopIteration.value is Any


class JournalReader:
    """Reads and verifies a journal directory; any process may use one, the writer included.

    Reading a journal that a writer is appending to sees a prefix of it (a half-written last
    entry reads as a torn tail); ``repair`` refuses to run while a writer holds the directory.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        slot_size: int,
        schema_id: int,
        archive: Path | str | None = None,
        rules: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.schema_id = schema_id
        self._aliases = LEGACY_SCHEMA_IDS.get(schema_id, frozenset())
        #: the rules version a replay runs (``JournalRulesError`` for an entry of another);
        #: None for readers that only copy or look at the commands
        self.rules = rules
        self.layout = EntryLayout(slot_size)
        #: where archived segments went: read where the directory no longer has them (a
        #: database restored from a backup older than what was archived)
        self.archive = None if archive is None else Path(archive)

    def entries(
        self, from_seq: int = 1, *, foreign: Foreign = "refuse", as_stored: bool = False
    ) -> Iterator[tuple[int, memoryview]]:
        """``(seq, slot image)`` for every entry from ``from_seq`` on, verified, in order.

        Each image is a read-only view into a chunk of the file that it keeps alive. Stops at
        a torn tail; raises ``JournalCorruptError`` on anything else wrong, ``JournalError`` if
        ``from_seq`` precedes the oldest segment (archived). Yields nothing past the end.
        The entries of a segment of another schema id are refused (``JournalFormatError`` at
        the first), passed over (``foreign="skip"``) or yielded (``"yield"``). Those of a
        segment of another slot size are re-framed to this reader's, or yielded as the
        segment holds them (``as_stored``: what compares them with a CRC an older build took).
        """
        if from_seq < 1:
            raise ValueError(f"from_seq {from_seq} must be at least 1")
        segments = self._segments()
        if not segments:
            return
        start = bisect.bisect_right(segments, from_seq, key=lambda s: s[0]) - 1
        if start < 0:
            first, path = segments[0]
            raise JournalArchivedError(
                f"from_seq {from_seq} precedes the oldest segment {path} (first seq {first}): "
                f"its entries were archived"
            )
        expect_first: int | None = None
        for k in range(start, len(segments)):
            first, path = segments[k]
            begin = from_seq if k == start else first
            last = k == len(segments) - 1
            tail = yield from self._scan(
                path, first, begin, last=last, expect_first=expect_first, foreign=foreign,
                as_stored=as_stored,
            )  # fmt: skip
            expect_first = tail.last_seq + 1

    def under(self, rules: int) -> JournalReader:
        """A reader of the same journal that refuses entries of other ``rules`` than these:
        for what is executed again (a replay), beside this one for what is only looked at."""
        return JournalReader(
            self.directory,
            slot_size=self.layout.slot_size,
            schema_id=self.schema_id,
            archive=self.archive,
            rules=rules,
        )

    def segment_rules(self, first: int, path: Path) -> int:
        """The rules version the header of ``path`` (the segment from ``first``) records."""
        with open(path, "rb", buffering=0) as f:
            return self._header(path, f, first)[1]

    def segment_layout(self, first: int, path: Path) -> EntryLayout:
        """The layout of the entries of ``path`` (the segment from ``first``): its slot size's,
        which may be another build's."""
        with open(path, "rb", buffering=0) as f:
            return self._header(path, f, first)[3]

    def last_seq(self) -> int:
        """The seq of the last good entry (0 for an empty journal)."""
        tail = self._tail()
        return 0 if tail is None else tail.last_seq

    def repair(self) -> int:
        """Truncate a torn tail of the last segment; return the bytes dropped (0: none).

        Raises ``JournalError`` while a writer holds the directory, ``JournalCorruptError`` if
        the damage is not a torn tail.
        """
        with DirectoryLock(self.directory):
            return self._repair()[1]

    # -- internals (the writer calls _repair under its own lock) ---------------------------

    def segments(self) -> list[tuple[int, Path]]:
        """``(first seq, path)`` of every segment, the archive's first where the journal's
        directory no longer has them."""
        return self._segments()

    def _segments(self) -> list[tuple[int, Path]]:
        if not self.directory.is_dir():
            raise FileNotFoundError(f"journal directory {self.directory} does not exist")
        live = list_segments(self.directory)
        if self.archive is None or not self.archive.is_dir():
            return live
        first = live[0][0] if live else 1 << 62
        return [s for s in list_segments(self.archive) if s[0] < first] + live

    def _open_segment(self, path: Path) -> io.FileIO:
        """``path`` opened, or its namesake in the archive where an archive run moved it
        since this reader listed the segments (``ringex replay --archive`` beside a running
        instance: a source shipping old entries to a standby, a writer restoring a backup)."""
        try:
            return open(path, "rb", buffering=0)  # the caller closes it
        except FileNotFoundError:
            if self.archive is None or path.parent == self.archive:
                raise
            return open(self.archive / path.name, "rb", buffering=0)

    def _repair(self) -> tuple[_Tail | None, int]:
        """The last segment's tail after repair, and the bytes dropped."""
        tail = self._tail()
        if tail is None or tail.good_end == tail.size:
            return tail, 0
        dropped = tail.size - tail.good_end
        with open(tail.path, "r+b") as f:
            f.truncate(tail.good_end)
            os.fsync(f.fileno())
        log.warning(
            "journal %s: torn tail at offset %d: dropped %d bytes after seq %d",
            tail.path, tail.good_end, dropped, tail.last_seq,
        )  # fmt: skip
        return replace(tail, size=tail.good_end), dropped

    def _tail(self) -> _Tail | None:
        """The last segment's tail: from its last entry when that is sound, else a full scan."""
        segments = self._segments()
        if not segments:
            return None
        first, path = segments[-1]
        with open(path, "rb", buffering=0) as f:
            _, rules, schema, layout = self._header(path, f, first)
            size = os.fstat(f.fileno()).st_size
            last = self._sound_end(f, first, size, layout)
            if last is not None:
                return _Tail(path, size, last, size, rules, schema, layout.slot_size)
        scan = self._scan(path, first, first, last=True, expect_first=None, yielding=False)
        return _drain(scan)

    def _header(self, path: Path, f: io.FileIO, name_seq: int) -> tuple[int, int, int, EntryLayout]:
        """Check ``path``'s header and its name; return its first seq, its rules version, its
        schema id (checked at a yield: ``_foreign``) and its entries' layout (its own slot
        size: images of another are re-framed as they are yielded)."""
        data = f.read(HEADER_SIZE)
        if len(data) < HEADER_SIZE:
            raise JournalCorruptError(
                path, len(data), f"header is {len(data)} bytes, expected {HEADER_SIZE}"
            )
        magic, version, header_size, entry_size, slot_size, rules, schema, first, _ = (
            HEADER.unpack_from(data)
        )
        if magic != MAGIC:
            raise JournalCorruptError(path, 0, f"magic {magic!r}, expected {MAGIC!r}")
        (stored,) = U32.unpack_from(data, HEADER.size)
        computed = zlib.crc32(data[: HEADER.size])
        if stored != computed:
            raise JournalCorruptError(
                path, HEADER.size, f"header CRC {stored:#010x}, computed {computed:#010x}"
            )
        checks = (
            (8, "format version", version, VERSION),
            (10, "header size", header_size, HEADER_SIZE),
        )
        for offset, name, found, expected in checks:
            if found != expected:
                raise _format_error(path, offset, name, found, expected)
        if not 1 <= slot_size <= MAX_SLOT_SIZE:
            raise JournalCorruptError(
                path, 16, f"slot size {slot_size} is outside 1..{MAX_SLOT_SIZE}"
            )
        layout = entry_layout(slot_size)
        if entry_size != layout.size:
            raise JournalCorruptError(
                path, 12, f"entry size {entry_size}, but {slot_size}-byte slots make "
                f"{layout.size}-byte entries"
            )  # fmt: skip
        if first != name_seq:
            raise JournalCorruptError(
                path, 32, f"header first seq {first} differs from the file name's {name_seq}"
            )
        return int(first), int(rules), int(schema), layout

    def _foreign(self, schema: int) -> bool:
        """Whether a segment of ``schema`` holds another layout's entries than this reader's
        (a legacy alias of its own id is its own)."""
        return schema != self.schema_id and schema not in self._aliases

    def _passed_over(
        self, f: io.FileIO, path: Path, first: int, size: int, last: bool, layout: EntryLayout
    ) -> int | None:
        """The last seq of a segment ``entries(foreign="skip")`` passes over, from its size
        without reading its entries (review 78), or None where they must be read: the last
        segment when its last entry is not sound as it stands (a torn tail's scan says where
        the entries end). A partial entry in any other is corruption, as a scan says."""
        size_e = layout.size
        count, partial = divmod(size - HEADER_SIZE, size_e)
        if last:
            return self._sound_end(f, first, size, layout)
        if partial:
            raise JournalCorruptError(
                path, size - partial, f"{partial} bytes of a partial entry (entries are "
                f"{size_e} bytes) in a segment that is not the last"
            )  # fmt: skip
        return first + count - 1

    def _sound_end(self, f: io.FileIO, first: int, size: int, layout: EntryLayout) -> int | None:
        """The seq of the last entry of the segment open as ``f`` (from ``first``, ``size``
        bytes) where it ends on a whole, sound entry (``first - 1``: none), else None: a
        scan must say where its entries end (a torn tail)."""
        size_e = layout.size
        count, partial = divmod(size - HEADER_SIZE, size_e)
        if partial:
            return None
        if not count:
            return first - 1
        f.seek(size - size_e)
        entry = f.read(size_e)
        seq, crc = layout.seq_crc.unpack_from(entry)
        if seq == first + count - 1 and zlib.crc32(entry[: layout.body]) == crc:
            return int(seq)
        return None

    def _scan(
        self,
        path: Path,
        name_seq: int,
        from_seq: int,
        *,
        last: bool,
        expect_first: int | None,
        foreign: Foreign = "refuse",
        yielding: bool = True,
        as_stored: bool = False,
    ) -> Generator[tuple[int, memoryview], None, _Tail]:
        """Yield ``path``'s verified entries from ``from_seq`` (``entries``' ``foreign``
        says what of another layout's; none, not ``yielding``); return where they end."""
        with self._open_segment(path) as f:
            first, rules, schema, layout = self._header(path, f, name_seq)
            size_e, body = layout.size, layout.body
            iter_unpack, crc32 = layout.seq_crc.iter_unpack, zlib.crc32
            slot = self.layout.slot_size
            # another build's slots: re-framed to ours (unless asked for as stored)
            reframed = layout.slot_size != slot and not as_stored
            if expect_first is not None and first != expect_first:
                raise JournalCorruptError(
                    path, 32, f"first seq {first}, but the previous segment ends at "
                    f"{expect_first - 1}: a seq gap"
                )  # fmt: skip
            size = os.fstat(f.fileno()).st_size
            offset = HEADER_SIZE + (from_seq - first) * size_e
            # entries sequenced under other rules are refused at the first one to yield (a torn
            # tail is none); ``refused`` stays False past it, a check per entry of one bool
            other = foreign != "yield" and self._foreign(schema)
            # passed over whatever its rules (and not yielding: only where they end is asked)
            skip = (other and foreign == "skip") or not yielding
            if skip:  # passed over unread where it can be (a search that probes each seq
                passed = self._passed_over(f, path, first, size, last, layout)  # (no run of
                if passed is not None:  # them is read)
                    return _Tail(path, size, passed, size, rules, schema, layout.slot_size)
            refused = not skip and self.rules is not None and rules != self.rules
            if other and not skip:  # refused at the first entry to yield, as rules are
                refused = True
            expect = from_seq
            f.seek(offset)
            chunk_bytes = max(1, _READ_CHUNK // size_e) * size_e
            while chunk := f.read(chunk_bytes):
                whole = len(chunk) - len(chunk) % size_e
                view = memoryview(chunk)
                pos = 0
                for seq, crc in iter_unpack(view[:whole]):
                    if seq != expect or crc32(chunk[pos : pos + body]) != crc:  # bytes: cheaper
                        self._bad_entry(
                            f, path, offset + pos, view[pos : pos + size_e], expect, last, layout
                        )
                        return _Tail(
                            path, offset + pos, expect - 1, size, rules, schema, layout.slot_size
                        )
                    if refused:
                        if other:
                            raise _format_error(path, 24, "schema_id", schema, self.schema_id)
                        raise JournalRulesError(path, first, rules, self.rules or 0)
                    if reframed and not skip:
                        image = reframe_slot(view[pos + 8 : pos + body], slot)
                        if image is None:
                            raise self._unframed(
                                path, offset + pos, seq, view[pos + 8 : pos + body], layout
                            )
                        yield seq, memoryview(image)
                    elif not skip:
                        yield seq, view[pos + 8 : pos + body]
                    pos += size_e
                    expect += 1
                offset += whole
                if whole < len(chunk):  # a partial entry: only the end of the file reads short
                    if not last:
                        raise JournalCorruptError(
                            path, offset, f"{len(chunk) - whole} bytes of a partial entry "
                            f"(entries are {size_e} bytes) in a segment that is not the last"
                        )  # fmt: skip
                    return _Tail(path, offset, expect - 1, size, rules, schema, layout.slot_size)
            return _Tail(path, offset, expect - 1, size, rules, schema, layout.slot_size)

    def _unframed(
        self, path: Path, offset: int, seq: int, image: memoryview, layout: EntryLayout
    ) -> JournalFormatError:
        """The error for an image of a segment of another slot size that ``reframe_slot``
        refused: its record does not fit this reader's slot, or its length field does not fit
        its own slot (it says no record, or one past the slot's end)."""
        own, ours = layout.slot_size, self.layout.slot_size
        if own < SLOT_FRAMING:
            why = f"is a {own}-byte slot, shorter than a record's framing ({SLOT_FRAMING} bytes)"
        elif not (length := image[0] | image[1] << 8):
            why = f"holds no record (a length of 0 in its {own}-byte slot)"
        elif length > own - SLOT_FRAMING:
            why = (
                f"holds a {length}-byte record in a {own}-byte slot, which holds records of "
                f"up to {own - SLOT_FRAMING} bytes"
            )
        else:
            why = (
                f"holds a {length}-byte record in a {own}-byte slot; this build's {ours}-byte "
                f"slots hold records of up to {ours - SLOT_FRAMING} bytes: run the build that "
                "wrote it, or upgrade from a snapshot at the journal's end (README, the journal)"
            )
        return JournalFormatError(path, offset, f"entry of seq {seq} {why}")

    def _bad_entry(
        self,
        f: io.FileIO,
        path: Path,
        offset: int,
        entry: memoryview,
        expect: int,
        last: bool,
        layout: EntryLayout,
    ) -> None:
        """Raise unless the bad entry at ``offset`` is a torn tail."""
        seq, stored = layout.seq_crc.unpack(entry)
        computed = zlib.crc32(entry[: layout.body])
        if stored == computed:
            raise JournalCorruptError(path, offset, f"entry has seq {seq}, expected {expect}")
        what = f"CRC {stored:#010x}, computed {computed:#010x} (seq field {seq}, expected {expect})"
        if not last:
            raise JournalCorruptError(path, offset, f"{what} in a segment that is not the last")
        f.seek(offset + layout.size)
        at = offset + layout.size
        while rest := f.read(_READ_CHUNK):
            if rest.count(0) != len(rest):
                nonzero = at + len(rest) - len(rest.lstrip(b"\0"))
                raise JournalCorruptError(
                    path, offset, f"{what}, followed by data at offset {nonzero}: not a torn tail"
                )
            at += len(rest)
        if (flipped := one_bit_off(entry[: layout.body], stored)) is not None:
            raise JournalCorruptError(  # a torn write zeros its CRC (after the body): rot
                path, offset, f"{what}: it passes with its bit {flipped} flipped, damage at "
                "rest, not a torn tail (the entry may have been acknowledged)"
            )  # fmt: skip


class DirectoryLock:
    """An exclusive ``flock`` on the journal directory: one writer (or repair) at a time."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise JournalError(f"journal directory {directory} is held by a writer") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the last descriptor releases the lock
            self.fd = -1

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
