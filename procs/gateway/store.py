"""A session's persisted state: next sequence numbers and the outbound messages it sent.

Per session (SenderCompID) a directory holds ``seqnums`` (16 bytes: next inbound, next
outbound, rewritten in place) and ``messages`` (every outbound message, each
``u32 length | u32 seq | raw``), which serves ResendRequests after reconnects and restarts.
Writes are buffered and made visible by ``flush`` (the shell calls it once per loop pass,
before the bytes go to the socket, so a resend can always find what the peer saw). A reset
(ResetSeqNumFlag, ResetOnLogon) truncates both.
"""

from __future__ import annotations

import os
import struct
from array import array
from pathlib import Path
from typing import BinaryIO

_SEQNUMS = struct.Struct("<QQ")
_ENTRY = struct.Struct("<II")
_NONE = 2**64 - 1  # no message stored at this seq


class _Offsets:
    """seq -> file offset of its entry. Outbound seqs count up by one from where the session
    (re)started, so an array indexed by seq - first holds them in 8 bytes a message (a dict
    took ~100: a long session's index was most of a gateway's growth in the soak)."""

    #: Messages a resend can reach back (8 MB of index); an older seq is not found, so the
    #: session layer gap-fills it, as a venue does for what it will not resend.
    KEEP = 1_000_000

    def __init__(self) -> None:
        self.first = 1
        self.offsets = array("Q")

    def set(self, seq: int, offset: int) -> None:
        i = seq - self.first
        if i < 0:  # below the first kept seq (not seen in practice): shift the window
            self.offsets[0:0] = array("Q", [_NONE] * -i)
            self.first, i = seq, 0
        n = len(self.offsets)
        if i < n:
            self.offsets[i] = offset
            return
        if i > n:  # a gap (never sent): nothing stored there
            self.offsets.extend([_NONE] * (i - n))
        self.offsets.append(offset)
        if len(self.offsets) > self.KEEP + self.KEEP // 8:  # forget the oldest, in chunks
            drop = len(self.offsets) - self.KEEP
            del self.offsets[:drop]
            self.first += drop

    def get(self, seq: int) -> int | None:
        i = seq - self.first
        if 0 <= i < len(self.offsets):
            offset = self.offsets[i]
            return None if offset == _NONE else offset
        return None

    def clear(self) -> None:
        self.first = 1
        del self.offsets[:]


class MessageStore:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._seq_fd = os.open(directory / "seqnums", os.O_RDWR | os.O_CREAT, 0o644)
        raw = os.pread(self._seq_fd, _SEQNUMS.size, 0)
        saved: tuple[int, int] = _SEQNUMS.unpack(raw) if len(raw) == _SEQNUMS.size else (1, 1)
        self.next_in, self.next_out = saved
        self._index = _Offsets()  # seq -> offset of its entry
        self._size = 0
        path = directory / "messages"
        self._load(path)
        self._file: BinaryIO = path.open("ab")
        self._pending: list[bytes] = []
        self._dirty = False

    def _load(self, path: Path) -> None:
        if not path.exists():
            return
        data = path.read_bytes()
        pos = 0
        while pos + _ENTRY.size <= len(data):
            length, seq = _ENTRY.unpack_from(data, pos)
            if pos + _ENTRY.size + length > len(data):
                break  # a torn tail from a crash: the peer never saw it
            self._index.set(seq, pos)
            pos += _ENTRY.size + length
        if pos != len(data):
            with path.open("r+b") as f:
                f.truncate(pos)
        self._size = pos

    def set_next_in(self, seq: int) -> None:
        self.next_in = seq
        self._dirty = True

    def add_outbound(self, seq: int, raw: bytes) -> None:
        """Record outbound message ``seq`` (the caller advanced ``next_out`` past it)."""
        entry = _ENTRY.pack(len(raw), seq) + raw
        self._index.set(seq, self._size)
        self._size += len(entry)
        self._pending.append(entry)
        self.next_out = seq + 1
        self._dirty = True

    def outbound(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        """Stored outbound messages with ``begin <= seq <= end``, in order."""
        self.flush()
        out = []
        with (self.directory / "messages").open("rb") as f:
            for seq in range(begin, end + 1):
                offset = self._index.get(seq)
                if offset is None:
                    continue
                f.seek(offset)
                length, _ = _ENTRY.unpack(f.read(_ENTRY.size))
                out.append((seq, f.read(length)))
        return out

    def reset(self) -> None:
        self.flush()
        self._file.truncate(0)
        self._index.clear()
        self._size = 0
        self.next_in = self.next_out = 1
        self._dirty = True
        self.flush()

    def flush(self) -> None:
        if self._pending:
            self._file.write(b"".join(self._pending))
            self._pending.clear()
            self._file.flush()
        if self._dirty:
            os.pwrite(self._seq_fd, _SEQNUMS.pack(self.next_in, self.next_out), 0)
            self._dirty = False

    def close(self) -> None:
        self.flush()
        self._file.close()
        os.close(self._seq_fd)
