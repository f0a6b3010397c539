"""Following the end of a live journal cheaply, for the replication source.

The source looks for new entries after every router batch. ``JournalReader.entries`` lists
the directory, opens the segment and checks its header on each call (tens of microseconds,
most of the source's CPU per batch); ``JournalTail`` keeps the segment open at the offset it
reached, so a look is one ``pread``. Only that fast path lives here. Every entry it returns
is verified (seq, CRC) as the reader does; anything else (no tail position yet, another
``from_seq``, the segment ended and a new one exists, a bad entry with nothing good before
it) goes to ``JournalReader.entries``, which finds the segment, checks its header, tells a
write in progress (a torn tail) from corruption and raises on the latter. The fast path then
resumes where that read ended, in a segment of this build's slot size (an older build's
segment is read through ``entries`` to its end, which re-frames its images).
"""

from __future__ import annotations

import bisect
import os
import zlib

from procs.common.journal import HEADER_SIZE, SLOT_SIZE_AT, U32, JournalReader, segment_name


class JournalTail:
    """``read(from_seq, limit)``: the images of up to ``limit`` entries from ``from_seq``
    (none yet: an empty list). One caller at a time; the writer may append meanwhile."""

    def __init__(self, reader: JournalReader) -> None:
        self.reader = reader
        self.layout = reader.layout
        self._fd = -1
        self._first = 0  # the open segment's first seq
        self._offset = 0  # where the entry of seq ``_next`` starts in it
        self._next = 0

    def read(self, from_seq: int, limit: int) -> list[bytes]:
        if self._fd >= 0 and from_seq == self._next:
            images = self._fast(limit)
            if images is not None:
                return images
        return self._slow(from_seq, limit)

    def _fast(self, limit: int) -> list[bytes] | None:
        """None when the fast path cannot tell."""
        layout = self.layout
        size_e, body = layout.size, layout.body
        data = os.pread(self._fd, limit * size_e, self._offset)
        whole = len(data) - len(data) % size_e
        if not data:  # the end of this segment: the writer may have moved on to the next
            return None if self._next_segment_exists() else []
        images: list[bytes] = []
        expect, pos, crc32 = self._next, 0, zlib.crc32
        for seq, crc in layout.seq_crc.iter_unpack(memoryview(data)[:whole]):
            if seq != expect or crc32(data[pos : pos + body]) != crc:
                break  # a write in progress, or worse: the reader decides below if need be
            images.append(data[pos + 8 : pos + body])
            pos += size_e
            expect += 1
        if not images and whole:
            return None
        self._offset += pos
        self._next = expect
        return images

    def _next_segment_exists(self) -> bool:
        """Whether a segment begins at ``_next``: in the journal, or in its archive where an
        archive run moved it (a standby catching up behind the archive point; review 75:
        the source found none and answered "nothing new" for good)."""
        name = segment_name(self._next)
        archive = self.reader.archive
        return (self.reader.directory / name).exists() or (
            archive is not None and (archive / name).exists()
        )

    def _slow(self, from_seq: int, limit: int) -> list[bytes]:
        images: list[bytes] = []
        for _seq, image in self.reader.entries(from_seq):
            images.append(bytes(image))
            if len(images) == limit:
                break
        self._position(from_seq + len(images))
        return images

    def _position(self, next_seq: int) -> None:
        """Open the segment that holds (or will hold) ``next_seq``, at its entry."""
        segments = self.reader.segments()  # the archive's too
        k = bisect.bisect_right(segments, next_seq, key=lambda s: s[0]) - 1
        if k < 0:
            return
        first, path = segments[k]
        if next_seq == first:  # a segment no read has opened: its header is unchecked (its
            self.close()  # rules, its layout), so the next read takes the slow path (review 76)
            return
        if self._fd < 0 or first != self._first:
            self.close()
            try:
                self._fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # archived since it was listed (review 75)
                if self.reader.archive is None:
                    raise
                self._fd = os.open(self.reader.archive / path.name, os.O_RDONLY)
            self._first = first
            if U32.unpack(os.pread(self._fd, 4, SLOT_SIZE_AT))[0] != self.layout.slot_size:
                self.close()  # an older build's slots: its images are re-framed by the reader
                return
        self._next = next_seq
        self._offset = HEADER_SIZE + (next_seq - first) * self.layout.size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
