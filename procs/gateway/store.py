"""A session's persisted state: next sequence numbers and the outbound messages it sent.

Per session (SenderCompID) a directory holds ``seqnums`` (24 bytes: next inbound, next
outbound, and the first message parked since the last logon, rewritten in place; a 16-byte
file from before parking was tracked reads as none parked) and ``messages`` (every outbound
message, each ``u32 length | u32 seq | raw``), which serves ResendRequests after reconnects
and restarts.
Writes are buffered and made visible by ``flush`` (the shell calls it once per loop pass,
before the bytes go to the socket, so a resend can always find what the peer saw; the
commands of the messages ``next_in`` counts are logged before it is saved: ``before_save``).
A reset (ResetSeqNumFlag, ResetOnLogon) truncates both.

Parked messages (``park``: made while the session was not logged on) never reached a
connection. A logon that keeps the sequence numbers lets the client's ResendRequest fetch
them; a logon that resets them takes them first (``unsent``) so the session sends them again
under its new numbers: a reset discards what the client has seen, never what it has not.
Those are copied first to ``carried`` (their entries as ``messages`` held them), which the
flush that stores them anew removes: a crash in between (the truncation done, the messages
sent again not yet stored) finds the file at the next start and parks its messages again,
unless ``messages`` holds them (review 39: they were lost).
"""

from __future__ import annotations

import contextlib
import os
import struct
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from pathlib import Path

from procs.common.durable import PRIVATE, make_dirs, replace_durably, write_all

_SEQNUMS = struct.Struct("<QQQ")  # next in, next out, first parked (0: none)
_SEQNUMS_BEFORE_PARKING = struct.Struct("<QQ")
_ENTRY = struct.Struct("<II")
_LOAD_CHUNK = 4 << 20


class _SparseIndex:
    """Where every ``STRIDE``-th stored message starts: (seq, file offset) pairs, seqs
    increasing. A resend seeks to the block before its first seq and reads forward, so every
    message ever stored can be resent, for 16 bytes per ``STRIDE`` messages (a dense index took
    8 bytes a message and, capped, still grew a long soak's gateway by tens of MB)."""

    STRIDE = 256

    def __init__(self) -> None:
        self.seqs = array("Q")
        self.offsets = array("Q")
        self._since = self.STRIDE  # messages since the last indexed one
        self._last = 0  # the newest seq stored

    def add(self, seq: int, offset: int) -> None:
        if seq <= self._last:  # a seq again (not written by the session layer): a new block
            self._since = self.STRIDE
        if self._since >= self.STRIDE:
            if self.seqs and seq <= self.seqs[-1]:
                cut = bisect_left(self.seqs, seq)  # keep the index sorted: the newer wins
                del self.seqs[cut:]
                del self.offsets[cut:]
            self.seqs.append(seq)
            self.offsets.append(offset)
            self._since = 0
        self._since += 1
        self._last = seq

    def start(self, seq: int) -> int | None:
        """The offset to read from to meet ``seq``: the block that holds it, or None."""
        at = bisect_right(self.seqs, seq) - 1
        if at < 0:
            return self.offsets[0] if self.offsets else None
        return self.offsets[at]

    def clear(self) -> None:
        del self.seqs[:]
        del self.offsets[:]
        self._since, self._last = self.STRIDE, 0


class MessageStore:
    def __init__(self, directory: Path) -> None:
        make_dirs(directory)
        self.directory = directory
        # the owner's alone, one an older build made too: the messages are the account's
        # execution reports (review 93)
        self._seq_fd = os.open(directory / "seqnums", os.O_RDWR | os.O_CREAT, PRIVATE)
        os.fchmod(self._seq_fd, PRIVATE)
        raw = os.pread(self._seq_fd, _SEQNUMS.size, 0)
        saved: tuple[int, int, int] = (1, 1, 0)
        if len(raw) == _SEQNUMS.size:
            saved = _SEQNUMS.unpack(raw)
        elif len(raw) == _SEQNUMS_BEFORE_PARKING.size:
            saved = (*_SEQNUMS_BEFORE_PARKING.unpack(raw), 0)
        self.next_in, self.next_out, self.parked_from = saved
        self._index = _SparseIndex()
        self._size = 0
        path = directory / "messages"
        # a crash between ``flush``'s two writes leaves messages past the saved next-out:
        # their MsgSeqNums were sent, never to be given again
        self.next_out = max(self.next_out, self._load(path) + 1)
        # unbuffered: a flush that fails (a full disk) is cut back to where it began
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE)
        os.fchmod(self._fd, PRIVATE)
        self._pending: list[bytes] = []
        self._dirty = False
        self._carried = directory / "carried"
        self._drop_carried = False  # the next flush stores what a reset carried: then drop it
        #: Called before ``flush`` saves the sequence numbers: the shell logs there the
        #: commands of the inbound messages ``next_in`` counts, or a crash right after the
        #: save loses an order the client will not send again.
        self.before_save: Callable[[], None] | None = None
        if self._carried.exists():
            self._recover_carried()

    def _recover_carried(self) -> None:
        """A reset's carried messages outlived what ended it (a crash; a failure this process
        went on after): parked again, unless ``messages`` holds them still (the reset never
        truncated it) or anew (their copies, sent after it, by MsgType and body: a copy has a
        new header). Parked under new numbers, after every one given: a resend numbers a
        stored message by its entry, and the index wants them rising."""
        entries = _entries(self._carried.read_bytes())
        if entries and self.outbound(entries[0][0], entries[-1][0]) == entries:
            self._carried.unlink()  # the reset never truncated: they are where they were
            return
        held: set[tuple[bytes, bytes]] = set()
        for _, raw in self.outbound(1, self.next_out):  # a truncated file: the new copies
            with contextlib.suppress(ValueError):
                held.add(_type_and_body(raw))
        missing = []
        for _, raw in entries:
            with contextlib.suppress(ValueError):  # a damaged entry (a host crash) is not one
                if _type_and_body(raw) not in held:
                    missing.append(raw)
        if missing:
            first = self.next_out
            for raw in missing:
                self.park(self.next_out, raw)
            self.parked_from = min(self.parked_from or first, first)
            self.flush()
        self._carried.unlink()

    def _load(self, path: Path) -> int:
        """Index the file, a chunk at a time, and cut a torn tail off it; the last seq in it
        (0: none)."""
        if not path.exists():
            return 0
        pos = last = 0
        zeros = False  # no message is empty: a zero length is what a crash left past the
        with path.open("rb") as f:  # end (the file grew, its data never written): torn (138)
            buf = b""
            base = 0  # file offset of buf[0]
            while not zeros and (chunk := f.read(_LOAD_CHUNK)):
                buf = buf[pos - base :] + chunk if buf else chunk
                base, at = pos, 0
                while at + _ENTRY.size <= len(buf):
                    length, seq = _ENTRY.unpack_from(buf, at)
                    if not length:
                        zeros = True
                        break
                    if at + _ENTRY.size + length > len(buf):
                        break  # the rest is in the next chunk, or a torn tail
                    self._index.add(seq, base + at)
                    last = seq
                    at += _ENTRY.size + length
                pos = base + at
        size = path.stat().st_size
        if pos != size:  # a torn tail from a crash: the peer never saw it
            with path.open("r+b") as f:
                f.truncate(pos)
        self._size = pos
        return last

    def set_next_in(self, seq: int) -> None:
        self.next_in = seq
        self._dirty = True

    def add_outbound(self, seq: int, raw: bytes) -> None:
        """Record outbound message ``seq`` (the caller advanced ``next_out`` past it)."""
        entry = _entry(seq, raw)
        self._index.add(seq, self._size)
        self._size += len(entry)
        self._pending.append(entry)
        self.next_out = seq + 1
        self._dirty = True

    def park(self, seq: int, raw: bytes) -> None:
        """Record outbound message ``seq`` made while no connection was logged on."""
        self.add_outbound(seq, raw)
        if not self.parked_from:
            self.parked_from = seq

    def park_again(self, seq: int) -> None:
        """Stored messages from ``seq`` on never reached the client (a connection that ended
        before it took them): parked, as if made while it was away."""
        if not self.parked_from or seq < self.parked_from:
            self.parked_from = seq
            self._dirty = True

    def logged_on(self) -> None:
        """A logon kept the sequence numbers: what was parked is the client's to fetch."""
        if self.parked_from:
            self.parked_from = 0
            self._dirty = True

    def unsent(self) -> list[tuple[bytes, bytes]]:
        """The messages parked since the last logon, as (MsgType, body after the standard
        header) in order: what a reset must send again."""
        if self._carried.exists():  # a reset that failed after its copy: parked again
            self._recover_carried()
        if not self.parked_from:
            return []
        return [_type_and_body(raw) for _, raw in self.outbound(self.parked_from, self.next_out)]

    def outbound(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        """Stored outbound messages with ``begin <= seq <= end``, in order."""
        self.flush()
        out: list[tuple[int, bytes]] = []
        offset = self._index.start(begin)
        if offset is None:
            return out
        with (self.directory / "messages").open("rb") as f:
            f.seek(offset)
            while head := f.read(_ENTRY.size):
                if len(head) < _ENTRY.size:
                    break
                length, seq = _ENTRY.unpack(head)
                if seq > end:
                    break
                raw = f.read(length)
                if seq >= begin:
                    out.append((seq, raw))
        return out

    def reset(self) -> None:
        """Start the numbers again, both files emptied; the parked messages (never seen) are
        kept in ``carried`` until the flush after ``carried_sent`` (see the top)."""
        self.flush()
        if self._carried.exists():  # an earlier reset's, never stored anew: parked first
            self._recover_carried()
        if self.parked_from:
            parked = self.outbound(self.parked_from, self.next_out)
            data = b"".join(_entry(seq, raw) for seq, raw in parked)
            replace_durably(
                self._carried, data, mode=PRIVATE, tmp=self._carried.with_name("carried.new")
            )
            self._drop_carried = False  # until this reset's messages are sent anew
        os.ftruncate(self._fd, 0)
        self._index.clear()
        self._size = 0
        self.next_in = self.next_out = 1
        self.parked_from = 0
        self._dirty = True
        self.flush()

    def carried_sent(self) -> None:
        """The messages a reset carried are sent anew (stored by the next flush)."""
        self._drop_carried = True

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            try:
                write_all(self._fd, data)
            except OSError:  # a disk filling up mid-write: cut its part back, keep them all
                os.ftruncate(self._fd, self._size - len(data))  # pending for the next flush
                raise  # (review 96: a retry wrote them after the torn part; a resend lost one)
            self._pending.clear()
        if self._dirty:
            if self.before_save is not None:
                self.before_save()
            os.pwrite(self._seq_fd, _SEQNUMS.pack(self.next_in, self.next_out, self.parked_from), 0)
            self._dirty = False
        if self._drop_carried:
            self._drop_carried = False
            self._carried.unlink(missing_ok=True)

    def close(self) -> None:
        self.flush()
        os.close(self._fd)
        os.close(self._seq_fd)


def _entry(seq: int, raw: bytes) -> bytes:
    """A stored message as ``messages`` and ``carried`` hold it."""
    return _ENTRY.pack(len(raw), seq) + raw


def _entries(data: bytes) -> list[tuple[int, bytes]]:
    """The ``(seq, raw)`` entries of a ``carried`` file, up to a damaged one (a zero length,
    a length past the end: what a host crash can leave)."""
    out: list[tuple[int, bytes]] = []
    at = 0
    while at + _ENTRY.size <= len(data):
        length, seq = _ENTRY.unpack_from(data, at)
        if not length or at + _ENTRY.size + length > len(data):
            break
        out.append((seq, data[at + _ENTRY.size : at + _ENTRY.size + length]))
        at += _ENTRY.size + length
    return out


def _type_and_body(raw: bytes) -> tuple[bytes, bytes]:
    """MsgType and the fields after the standard header (35, 49, 56, 34, 52, as the gateway
    frames them) of a stored message, its trailer ``10=ccc|`` cut off."""
    type_at = raw.index(b"\x0135=") + 4
    msg_type = raw[type_at : raw.index(b"\x01", type_at)]
    body_at = raw.index(b"\x01", raw.index(b"\x0152=", type_at) + 1) + 1
    return msg_type, raw[body_at : len(raw) - 7]
