"""A session's persisted state: next sequence numbers and the outbound messages it sent.

Per session (SenderCompID) a directory holds ``seqnums`` (next inbound, next outbound, the
first message parked since the last logon, rewritten in place: 24 bytes; 32 while a
connection's output may not all be handed to the kernel, the fourth the first not yet handed;
a 16-byte one from before parking was tracked reads as none parked) and ``messages`` (``RXMS`` and a
version, then every outbound message as a ``crc_frames`` frame of ``u64 seq | raw``), which
serves ResendRequests after reconnects and restarts (version 3: the seq a u64, as MsgSeqNum
may be; version 2's u32 wrapped a session past 2^32 messages, review 225, and is rewritten as
3 at the open, as an older build's is). At the open a torn last entry (a crash
mid-flush) is cut; damage (an entry that fails its CRC with entries after it, a length one
bit off, a ``seqnums`` of another size or with a zero number) is ``MessageStoreError``,
naming the file and the byte, and the session's logon fails until an operator mends it. A
``messages`` an older build wrote (no header, no CRCs) is rewritten in this format once.
Writes are buffered and made visible by ``flush`` (the shell calls it once per loop pass,
before the bytes go to the socket, so a resend can always find what the peer saw; the
commands of the messages ``next_in`` counts are logged before it is saved: ``before_save``).
A reset (ResetSeqNumFlag, ResetOnLogon) truncates both (``messages`` to its header).

Parked messages (``park``: made while the session was not logged on) never reached a
connection. A logon that keeps the sequence numbers lets the client's ResendRequest fetch
them; a logon that resets them takes them first (``unsent``) so the session sends them again
under its new numbers: a reset discards what the client has seen, never what it has not.
Those are copied first to ``carried`` (their entries as ``messages`` held them), which the
flush that stores them anew removes: a crash in between (the truncation done, the messages
sent again not yet stored) finds the file at the next start and parks its messages again,
unless ``messages`` holds them (review 39: they were lost). A gateway killed with messages in
its connection's buffer (never handed to the kernel, so never sent) finds at the next open
the first of them as its last flush saved it (the fourth number), and parks them again, as a
connection cut by the gateway parks them (review 252: a logon that reset the numbers never
got them); those the kernel took since that flush are parked too, and a reset sends them
again (the same ExecIDs), as a stop may.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from itertools import takewhile
from pathlib import Path
from typing import BinaryIO, Final

from procs.common.crc_frames import frame, read_frames, tail_damage
from procs.common.durable import PRIVATE, make_dirs, replace_durably, write_all
from procs.gateway.dictionary import ADMIN

log = logging.getLogger("ringex.gateway")

_SEQNUMS = struct.Struct("<QQQQ")  # next in, next out, first parked, first unconfirmed
_SEQNUMS_BEFORE_CONFIRMING = struct.Struct("<QQQ")
_SEQNUMS_BEFORE_PARKING = struct.Struct("<QQ")
#: What ``messages`` and ``carried`` open with: this layout (a CRC per entry), version 3.
MAGIC: Final = b"RXMS\x03\x00\x00\x00"
_V2_MAGIC: Final = b"RXMS\x02\x00\x00\x00"  # version 2: the same but a u32 seq
_ENTRY = struct.Struct("<IIQ")  # a frame's length and CRC-32 (of seq and raw), the seq
_SEQ = struct.Struct("<Q")
_V2_SEQ = struct.Struct("<I")
#: The high word of a seq read from a version 2 entry as version 3's: its message's "8=FI".
_V2_READ_AS_3: Final = int.from_bytes(b"8=FI", "little")
_FRAME_HEAD = _ENTRY.size - _SEQ.size  # the body a frame's CRC covers starts with the seq
_OLDER_ENTRY = struct.Struct("<II")  # an older build's: length of raw, seq (no CRC)
_LOAD_CHUNK = 4 << 20
#: How far past an entry whose length overruns the file a whole entry is looked for (a
#: message is at most a few KiB: the gateway takes at most ``max_message_bytes``).
_LONGEST = 1 << 20


class MessageStoreError(ValueError):
    """A session's files are damaged (not torn by a crash): the message names the file, the
    byte and what is wrong; the session's logon fails until an operator mends them."""


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
        self._fd = -1  # ``messages``, once opened
        self.closed = False
        try:
            self._open(directory)
        except BaseException:  # both closed: a Logon retried on a full disk leaked two a try
            for fd in (self._fd, self._seq_fd):  # until the gateway took no connection
                if fd >= 0:  # (review 168)
                    os.close(fd)
            raise

    def _open(self, directory: Path) -> None:
        """``__init__``'s reading of the files, from ``seqnums`` opened (see the top)."""
        os.fchmod(self._seq_fd, PRIVATE)
        saved = os.pread(self._seq_fd, _SEQNUMS.size + 1, 0)
        self._seq_size = len(saved)
        self.next_in, self.next_out, self.parked_from, unconfirmed = _saved(
            directory / "seqnums", saved
        )
        #: Each connection writing this session's output -> its first stored message not yet
        #: in the kernel's hands (``unhanded``; review 257: an old connection draining after a
        #: Logout and the new one logged on share the store)
        self._unhanded: dict[object, int] = {}
        self._index = _SparseIndex()
        self._size = 0
        path = directory / "messages"
        _convert_older(path)
        # a crash between ``flush``'s two writes leaves messages past the saved next-out:
        # their MsgSeqNums were sent, never to be given again
        self.next_out = max(self.next_out, self._load(path) + 1)
        if unconfirmed and unconfirmed < self.next_out:  # killed with them in a buffer
            self.park_again(unconfirmed)
        # unbuffered: a flush that fails (a full disk) is cut back to where it began
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE)
        os.fchmod(self._fd, PRIVATE)
        if not self._size:  # a new file (or one a crash left shorter than its header)
            write_all(self._fd, MAGIC)
            self._size = len(MAGIC)
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
        """Index the file, a chunk at a time, each entry's CRC checked; cut a torn tail off
        it, refuse damage (see the top). The last seq in it (0: none)."""
        if not path.exists():
            return 0
        size = path.stat().st_size
        pos = last = 0
        with path.open("rb") as f:
            head = f.read(len(MAGIC))
            if head == MAGIC:
                pos = len(MAGIC)
                last, pos, why = self._index_entries(f, pos, size)
                if why:
                    raise MessageStoreError(f"{path}: entry at byte {pos} {why}")
            elif not (
                MAGIC.startswith(head) or _V2_MAGIC.startswith(head)  # a new file cut (232)
                if len(head) < len(MAGIC)
                else not (any(head) or any(f.read()))
            ):
                # (an older file was converted): not the header a crash cut, nor zeros
                raise MessageStoreError(f"{path}: its header {head!r} is not {MAGIC!r}")
        if pos != size:  # a torn tail from a crash: the peer never saw it
            log.warning("%s: cut a torn tail at byte %d (%d bytes)", path, pos, size - pos)
            with path.open("r+b") as f:
                f.truncate(pos)
        self._size = pos
        return last

    def _index_entries(self, f: BinaryIO, pos: int, size: int) -> tuple[int, int, str]:
        """Index the entries of ``f`` (``size`` bytes) from ``pos``: the last seq, where the
        whole ones end, and why what follows them is damage ("": nothing, or a torn tail)."""
        last, whole = 0, True
        buf, at = b"", 0
        while whole and (chunk := f.read(_LOAD_CHUNK)):
            buf = buf[at:] + chunk
            at, view = 0, memoryview(buf)
            while at + _ENTRY.size <= len(buf):
                length, crc, seq = _ENTRY.unpack_from(buf, at)
                end = at + _FRAME_HEAD + length
                if length <= _SEQ.size or end > len(buf):
                    whole = length > _SEQ.size  # the rest in the next chunk, or past the end
                    break
                if zlib.crc32(view[at + _FRAME_HEAD : end]) != crc:
                    whole = False
                    break
                if seq >> 32 == _V2_READ_AS_3:  # a version 2's header flipped to 3 (review 232)
                    view.release()
                    return last, pos + at, "is version 2's (its seq runs into 8=FI): damaged header"
                self._index.add(seq, pos + at)
                last, at = seq, end
            pos += at
            view.release()
        f.seek(pos)
        rest = f.read(_ENTRY.size + 2 * _LONGEST)
        if len(rest) < _ENTRY.size:
            return last, pos, ""  # a torn header, or nothing
        length = _ENTRY.unpack_from(rest)[0]
        if length <= _SEQ.size:  # no message is empty: zeros past the end are a crash's
            if any(rest) or any(f.read()):
                return last, pos, f"claims {length} bytes, no entry is that short"
            return last, pos, ""
        if pos + _FRAME_HEAD + length < size:
            return last, pos, "fails its CRC and is not the last"
        why = tail_damage(rest, 0, _LONGEST, base=pos)  # the last: torn, unless shown otherwise
        return last, pos, why and f"claims {length} bytes to the end or past it, yet {why}"

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

    @property
    def unconfirmed_from(self) -> int:
        """The first stored message some connection has not handed to the kernel (0: none
        writes): what the next flush saves, so that a kill parks from there."""
        return min(self._unhanded.values(), default=0)

    @property
    def connected(self) -> bool:
        """Whether a connection writes this session's output (a Logout's drain included)."""
        return bool(self._unhanded)

    def unhanded(self, conn: object, seq: int) -> None:
        """``conn``'s output from ``seq`` on is not in the kernel's hands yet. A lower value
        than saved is saved by the next flush (before what it covers goes out: review 257),
        a higher one with the next that saves anything (a kill between parks a few again)."""
        before = self.unconfirmed_from
        self._unhanded[conn] = seq
        if not before or seq < before:
            self._dirty = True

    def connection_ended(self, conn: object) -> None:
        """``conn`` ended: its output drained, or it was cut and parked what it held."""
        if self._unhanded.pop(conn, None) is not None:
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
        unsent = (_type_and_body(raw) for _, raw in self.outbound(self.parked_from, self.next_out))
        # a connection cut with its output unsent parks its session's own messages too (a
        # Heartbeat, its Logout: ``Connection.abort``): a new session has no use for them
        return [(msg_type, body) for msg_type, body in unsent if msg_type not in ADMIN]

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
                length, _, seq = _ENTRY.unpack(head)
                if seq > end:
                    break
                raw = f.read(length - _SEQ.size)
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
            data = MAGIC + b"".join(_entry(seq, raw) for seq, raw in parked)
            replace_durably(
                self._carried, data, mode=PRIVATE, tmp=self._carried.with_name("carried.new")
            )
            self._drop_carried = False  # until this reset's messages are sent anew
        os.ftruncate(self._fd, len(MAGIC))
        self._index.clear()
        self._size = len(MAGIC)
        self.next_in = self.next_out = 1
        self.parked_from = 0
        self._unhanded.clear()  # numbered anew: its connection says again at its next write
        self._dirty = True
        self.flush()

    def carried_sent(self) -> None:
        """The messages a reset carried are sent anew (stored by the next flush)."""
        self._drop_carried = True

    def flush(self) -> None:
        if self.closed:
            return
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
            numbers = (self.next_in, self.next_out, self.parked_from, self.unconfirmed_from)
            # 24 bytes while nothing is unconfirmed (a clean stop's: the build before reads
            # it, review 255), 32 while a connection's output may not all be handed on
            data = (
                _SEQNUMS.pack(*numbers)
                if numbers[3]
                else _SEQNUMS_BEFORE_CONFIRMING.pack(*numbers[:3])
            )
            os.pwrite(self._seq_fd, data, 0)
            if len(data) < self._seq_size:  # (a crash before this: a stale fourth, parked)
                os.ftruncate(self._seq_fd, len(data))
            self._seq_size = len(data)
            self._dirty = False
        if self._drop_carried:
            self._drop_carried = False
            self._carried.unlink(missing_ok=True)

    def close(self) -> None:
        """Flushed and closed; a flush after it does nothing (a finished session's, whose
        store the gateway closed: ``session_stores.py``), and neither does a second close."""
        if self.closed:
            return
        try:
            self.flush()
        finally:  # a flush that fails (a full disk) still gives its descriptors back
            self.closed = True
            os.close(self._fd)
            os.close(self._seq_fd)


def _saved(path: Path, raw: bytes) -> tuple[int, int, int, int]:
    """The numbers a ``seqnums`` file holds: a new session's when it is empty; else refused
    unless it has a known size and numbers a session can have (review 138: zeros read as
    next-in 0, a file cut short as a new session)."""
    if not raw:
        return 1, 1, 0, 0
    saved: tuple[int, int, int, int]
    if len(raw) == _SEQNUMS.size:
        saved = _SEQNUMS.unpack(raw)
    elif len(raw) == _SEQNUMS_BEFORE_CONFIRMING.size:
        saved = (*_SEQNUMS_BEFORE_CONFIRMING.unpack(raw), 0)
    elif len(raw) == _SEQNUMS_BEFORE_PARKING.size:
        saved = (*_SEQNUMS_BEFORE_PARKING.unpack(raw), 0, 0)
    else:
        raise MessageStoreError(
            f"{path}: {len(raw)} bytes, not {_SEQNUMS.size} (or {_SEQNUMS_BEFORE_CONFIRMING.size}"
            f" or {_SEQNUMS_BEFORE_PARKING.size}, an older build's): damaged; to start the "
            "session's numbers at 1, remove it"
        )
    if not saved[0] or not saved[1]:
        raise MessageStoreError(
            f"{path}: next inbound {saved[0]}, next outbound {saved[1]}: a session's numbers "
            "start at 1: damaged; to start the session's numbers at 1, remove it"
        )
    return saved


def _entry(seq: int, raw: bytes) -> bytes:
    """A stored message as ``messages`` and ``carried`` hold it."""
    return frame(_SEQ.pack(seq) + raw)


def _entries(data: bytes) -> list[tuple[int, bytes]]:
    """The ``(seq, raw)`` entries of a ``carried`` file (version 2's, an older build's too: no
    header, no CRCs), up to a damaged one (what a host crash can leave)."""
    return _framed(data)[0] if data.startswith((MAGIC, _V2_MAGIC)) else list(_older_entries(data))


def _framed(data: bytes) -> tuple[list[tuple[int, bytes]], int, str]:
    """The ``(seq, raw)`` entries of a version 3 or 2 file, up to a damaged one; where they end;
    why what follows is damage (``read_frames``)."""
    seq = _SEQ if data.startswith(MAGIC) else _V2_SEQ
    frames, end, why = read_frames(data, len(MAGIC), _LONGEST)
    whole = list(takewhile(lambda at_body: len(at_body[1]) > seq.size, frames))
    if len(whole) < len(frames):
        end, why = frames[len(whole)][0], why or "holds no message"
    return [(seq.unpack_from(body)[0], body[seq.size :]) for _, body in whole], end, why


def _older_entries(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The ``(seq, raw)`` entries of an older build's file (``u32 length | u32 seq | raw``,
    no header), up to a torn one."""
    at = 0
    while at + _OLDER_ENTRY.size <= len(data):
        length, seq = _OLDER_ENTRY.unpack_from(data, at)
        if not length or at + _OLDER_ENTRY.size + length > len(data):
            return
        yield seq, data[at + _OLDER_ENTRY.size : at + _OLDER_ENTRY.size + length]
        at += _OLDER_ENTRY.size + length


def _convert_older(path: Path) -> None:
    """An older build's ``messages`` (no header, no CRCs) rewritten in this layout, its torn
    tail cut as that build cut it: aside, fsynced, renamed over it."""
    try:
        with path.open("rb") as f:
            head = f.read(len(MAGIC))
    except FileNotFoundError:
        return
    if head == _V2_MAGIC:
        _convert_v2(path)
        return
    if head == MAGIC or not any(head) or MAGIC.startswith(head) or _V2_MAGIC.startswith(head):
        return  # this layout, empty, or the header of one a crash cut (either version's)
    if bin(int.from_bytes(head[:4]) ^ int.from_bytes(MAGIC[:4])).count("1") <= 2:
        return  # a damaged header, refused by ``_load`` (an older file opens with a length)
    data = path.read_bytes()
    tmp = path.with_name(path.name + ".new")
    entries = b"".join(_entry(seq, raw) for seq, raw in _older_entries(data))
    replace_durably(path, MAGIC + entries, mode=PRIVATE, tmp=tmp)
    log.info("%s: rewritten with a CRC per entry (%d bytes before)", path, len(data))


def _convert_v2(path: Path) -> None:
    """Version 2's ``messages`` (a u32 seq) rewritten as version 3, its torn tail cut as
    ``_load`` cuts one; damage refused as ``_load`` refuses it, the file left as it was."""
    data = path.read_bytes()
    entries, end, why = _framed(data)
    if why:
        raise MessageStoreError(f"{path}: entry at byte {end} {why}")
    if any(not raw.startswith(b"8=FIX") for _, raw in entries):  # version 3's, a bit flipped
        raise MessageStoreError(
            f"{path}: its header {_V2_MAGIC!r} is damaged: its entries are not version 2's "
            "(a message not opening with 8=FIX)"
        )
    body = b"".join(_entry(seq, raw) for seq, raw in entries)
    replace_durably(path, MAGIC + body, mode=PRIVATE, tmp=path.with_name(path.name + ".new"))
    log.info("%s: rewritten as version 3, a u64 seq (%d bytes before)", path, len(data))


def _type_and_body(raw: bytes) -> tuple[bytes, bytes]:
    """MsgType and the fields after the standard header (35, 49, 56, 34, 52, as the gateway
    frames them) of a stored message, its trailer ``10=ccc|`` cut off."""
    type_at = raw.index(b"\x0135=") + 4
    msg_type = raw[type_at : raw.index(b"\x01", type_at)]
    body_at = raw.index(b"\x01", raw.index(b"\x0152=", type_at) + 1) + 1
    return msg_type, raw[body_at : len(raw) - 7]
