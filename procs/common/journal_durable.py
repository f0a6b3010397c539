"""How far a live journal is durable, for the readers beside its writer: ``journal/durable``.

The database writer follows the router's journal by reading its files, and a file holds
what was written, fsynced or not: under ``fsync = "batch"`` it could commit a checkpoint
past the router's fsync in flight, and a power loss then left the database ahead of the
journal (review 42's documented limit: the writer refuses to start, naming the lost tail).
So the journal's writer keeps the last seq it knows durable in this file (16 bytes, a shared
mapping: a store, no system call, per fsync), and such a reader reads no further
(``durable_upto``). The seq is kept with its complement: a mark whose two halves disagree
(a flipped bit: review 139, where a mark read higher let the writer commit entries never
fsynced; or a read between the two halves' stores) reads as 0, holding readers back until
the next mark; a file of 8 bytes (an older build's writer) is taken as it reads.

The mark is written after the fsync it reports, so it never says more than is durable; a
crash of the machine can leave it behind (its page unwritten), which only holds readers
back until the next writer opens the journal: opening fsyncs what the last run left and
marks it all. A writer that closes cleanly has made everything durable and marks its last
seq; one that was killed leaves its last mark, so what it wrote after it waits for the next
writer's open (the router's restart), as it would be lost to a power loss meanwhile, or for
a reader that holds the journal's lock itself and fsyncs it (``ringex replay --to-db``).
Under ``fsync = "none"`` nothing is promised and each append is marked as written. The mark
is always a seq, never "all": a reader that took "all" at a pass's start would read on into
the next writer's entries, not yet fsynced (review 79). No file (a journal of an older
build, or none yet): no bound (``ALL``).
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import Final

from procs.common.durable import PRIVATE

FILE: Final = "durable"
#: Every entry the files hold is durable (a clean close, or no promise made).
ALL: Final = (1 << 63) - 1
_SEQ: Final = struct.Struct("<Q")
_MARK: Final = struct.Struct("<QQ")  # the seq, its complement
_ONES: Final = (1 << 64) - 1


def durable_upto(directory: Path) -> int:
    """The last seq of the journal in ``directory`` a reader may take as durable (``ALL``:
    no bound known)."""
    try:
        with open(directory / FILE, "rb", buffering=0) as f:
            data = f.read(_MARK.size)
    except FileNotFoundError:
        return ALL
    if len(data) == _SEQ.size:  # an older build's writer: no check
        return int(_SEQ.unpack(data)[0])
    if len(data) < _MARK.size:  # a file a crash left before its first mark
        return 0
    seq, check = _MARK.unpack(data)
    return int(seq) if seq ^ check == _ONES else 0


class DurableMark:
    """The writer's side: ``set`` after each fsync, ``close`` at a clean close."""

    def __init__(self, directory: Path, seq: int) -> None:
        fd = os.open(directory / FILE, os.O_RDWR | os.O_CREAT, PRIVATE)
        try:
            if os.fstat(fd).st_size != _MARK.size:  # (an older build's 8 bytes: grown)
                os.ftruncate(fd, _MARK.size)
            self._map: mmap.mmap | None = mmap.mmap(fd, _MARK.size)
        finally:
            os.close(fd)
        self.set(seq)

    def set(self, seq: int) -> None:
        if self._map is not None:
            _MARK.pack_into(self._map, 0, seq, seq ^ _ONES)

    def close(self) -> None:
        """Release the mapping (the mark stays)."""
        if self._map is not None:
            self._map.close()
            self._map = None
