"""How far a live journal is durable, for the readers beside its writer: ``journal/durable``.

The database writer follows the router's journal by reading its files, and a file holds
what was written, fsynced or not: under ``fsync = "batch"`` it could commit a checkpoint
past the router's fsync in flight, and a power loss then left the database ahead of the
journal (review 42's documented limit: the writer refuses to start, naming the lost tail).
So the journal's writer keeps the last seq it knows durable in this file (8 bytes, a shared
mapping: a store, no system call, per fsync), and such a reader reads no further
(``durable_upto``).

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


def durable_upto(directory: Path) -> int:
    """The last seq of the journal in ``directory`` a reader may take as durable (``ALL``:
    no bound known)."""
    try:
        with open(directory / FILE, "rb", buffering=0) as f:
            data = f.read(_SEQ.size)
    except FileNotFoundError:
        return ALL
    if len(data) < _SEQ.size:  # a file a crash left before its first mark
        return 0
    (seq,) = _SEQ.unpack(data)
    return int(seq)


class DurableMark:
    """The writer's side: ``set`` after each fsync, ``close`` at a clean close."""

    def __init__(self, directory: Path, seq: int) -> None:
        fd = os.open(directory / FILE, os.O_RDWR | os.O_CREAT, PRIVATE)
        try:
            if os.fstat(fd).st_size < _SEQ.size:
                os.ftruncate(fd, _SEQ.size)
            self._map: mmap.mmap | None = mmap.mmap(fd, _SEQ.size)
        finally:
            os.close(fd)
        self.set(seq)

    def set(self, seq: int) -> None:
        if self._map is not None:
            _SEQ.pack_into(self._map, 0, seq)

    def close(self) -> None:
        """Release the mapping (the mark stays)."""
        if self._map is not None:
            self._map.close()
            self._map = None
