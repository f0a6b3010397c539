"""The journal's history hash, chained in blocks, and the file that keeps the chain.

Replication proves that a standby's journal is a prefix of its primary's by a hash of every
slot image in seq order (``History``): the standby sends the hash of what it holds, the
primary compares it with its own before the same seq, and every frame carries the hash
after it. A hash of one long stream needed every entry from seq 1 at each start of a standby
and at each Hello (a year at 10k commands/s is 4.5 TB of journal: hours of reading), so a
replicated instance could never let its archive go.

The hash is chained in blocks of ``BLOCK`` entries: the key before block 0 is a constant, the
key after block k is the hash of the key before it and the block's records, and the hash
before seq s is the hash of the key of s's block and that block's records before s::

    K[0] = blake2b("ringex journal history v2")        K[k+1] = blake2b(K[k] || block k)
    H(s) = blake2b(K[(s-1) // BLOCK] || the records of seqs (s-1) // BLOCK * BLOCK + 1 .. s-1)

A record is an image's length and the bytes it says (``record_bytes``), not its padding, so a
build of another slot size (a field added to an event: ``journal.py``) hashes one history
alike and its keys stand (review 85). A digest is ``VERSION`` then the 16 bytes of H: a
build before the chain sent 16 bytes only, and is told apart by that (``older_peer``).

``HistoryChain`` keeps the keys in ``history.chain`` beside the segments, a 24-byte record a
block: the key, the CRC-32 of the block's last record (the entry at ``k * BLOCK``) and the
CRC-32 of the two. So a hash before any seq reads at most one block of entries (11 MB of
152-byte slots), wherever the journal's older segments went, and a lookup or an append reads
one record of the file. The file is derived data, written by whatever hashes the journal (a
replication source, a standby, ``failover.py``) under an exclusive ``flock``, fsynced, and
only for blocks the journal holds durable (its writer's mark, ``journal_durable.py``): a
source ships entries before the router's fsync, and a key of a tail a host crash then loses
would stand for a history the journal no longer holds (review 85). A key is checked before
use against the journal's entry at its block's end, and dropped with those after it where
that entry differs or the journal ends before it (a journal cut by ``demote``, or one that
lost a tail under ``fsync = "none"``, which promises nothing); where the entry is gone (its
segments archived away) the key stands for it. A record that fails its own CRC is taken again
from the journal.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from procs.common.durable import PRIVATE
from procs.common.journal import JournalArchivedError, JournalError, JournalReader
from procs.common.journal_durable import durable_upto
from procs.common.record_codec import RecordCodec

#: Entries a block of the chain holds.
BLOCK: Final = 1 << 16
#: The first byte of every digest: the chained hash (a build before it sent 16 bytes).
VERSION: Final = 2
DIGEST_SIZE: Final = 1 + 16
_ROOT: Final = hashlib.blake2b(b"ringex journal history v2", digest_size=16).digest()
#: A chain record: the key after the block, the CRC-32 of its last image, the record's CRC.
_RECORD = struct.Struct("<16sII")
CHAIN_FILE: Final = "history.chain"
#: The slot size of the images a ``History`` is fed unless told another: this build's.
SLOT_SIZE: Final = RecordCodec().slot_size


class History:
    """The history hash of a run of slot images from seq 1, fed in seq order (``update``
    takes whole slots, one or many joined). ``marks`` collects the keys of the blocks it
    completes (block number, key, CRC of the block's last record), for ``HistoryChain.keep``,
    which takes those it may keep."""

    __slots__ = ("_block", "_count", "_hash", "marks", "slot_size")

    def __init__(self, slot_size: int = SLOT_SIZE, key: bytes = _ROOT, block: int = 0) -> None:
        self.slot_size = slot_size  # of the images fed (a reader's: every image it yields)
        self._block = block  # the block being hashed: seqs block * BLOCK + 1 ..
        self._count = 0  # its images hashed so far
        self._hash = _keyed(key)
        self.marks: list[tuple[int, bytes, int]] = []

    @property
    def next_seq(self) -> int:
        """The seq of the next image to feed."""
        return self._block * BLOCK + self._count + 1

    def update(self, images: bytes | memoryview) -> None:
        """Feed whole slot images, joined, in seq order. Each is hashed as its record (its
        length and bytes, ``record_bytes``), not its padding: a build of another slot size
        hashes the same history alike (review 85)."""
        slot = self.slot_size
        count, partial = divmod(len(images), slot)
        if partial:
            raise ValueError(f"{len(images)} bytes are not whole {slot}-byte slot images")
        view, update = memoryview(images), self._hash.update
        for pos in range(0, count * slot, slot):
            record = record_bytes(view[pos : pos + slot])
            update(record)
            self._count += 1
            if self._count == BLOCK:  # the block is complete: its key begins the next
                key = self._hash.digest()
                self._block += 1
                self.marks.append((self._block, key, zlib.crc32(record)))
                self._hash, self._count = _keyed(key), 0
                update = self._hash.update

    def digest(self) -> bytes:
        return bytes((VERSION,)) + self._hash.digest()

    def fork(self) -> History:
        """A copy to feed apart (its ``marks`` begin empty)."""
        other = History.__new__(History)
        other.slot_size, other._block, other._count = self.slot_size, self._block, self._count
        other._hash, other.marks = self._hash.copy(), []
        return other


def block_of(seq: int) -> int:
    """The block the hash before ``seq`` is taken in (its key is the one before it)."""
    return (seq - 1) // BLOCK


def feed_to(history: History, reader: JournalReader, seq: int) -> None:
    """Feed ``history`` the entries of ``reader``'s journal from its next seq up to ``seq``
    (any layout's: they are only hashed)."""
    if history.next_seq < seq:
        for found, image in reader.entries(history.next_seq, foreign="yield"):
            if found >= seq:
                break
            history.update(image)


def record_bytes(image: bytes | memoryview) -> memoryview:
    """The record of a slot image: its 2-byte length and the bytes it says (the whole image
    where the length says more than it holds), without padding or stamp."""
    view = memoryview(image)
    if len(view) < 2:
        return view
    return view[: min(len(view), 2 + (view[0] | view[1] << 8))]


def _keyed(key: bytes) -> hashlib.blake2b:
    h = hashlib.blake2b(digest_size=16)
    h.update(key)
    return h


GENESIS: Final = History().digest()  # the history of an empty journal


def older_peer(digest: bytes) -> bool:
    """Whether ``digest`` is a history hash of a build before the chain (16 bytes)."""
    return len(digest) != DIGEST_SIZE or digest[0] != VERSION


class HistoryChain:
    """The block keys of the journal in ``directory`` (``history.chain``)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / CHAIN_FILE

    def history_before(self, reader: JournalReader, seq: int) -> History:
        """The history of ``reader``'s journal before ``seq`` (at most its last seq + 1),
        from the newest key kept at or before it and the entries since; the keys it
        completes on the way are kept where durable (``keep``). Raises
        ``JournalArchivedError`` where an entry it must read is gone and no key stands for
        it."""
        if seq < 1:
            raise ValueError(f"seq {seq} must be at least 1")
        block, key = self._sound_key(reader, block_of(seq))
        history = History(reader.layout.slot_size, key, block)
        feed_to(history, reader, seq)
        if history.next_seq != seq:
            raise JournalError(
                f"the journal {reader.directory} ends before seq {seq - 1}: no history there"
            )
        self.keep(history)
        return history

    def hashes_before(self, reader: JournalReader, seqs: Iterable[int]) -> dict[int, bytes]:
        """The history hash before each of ``seqs`` that ``reader``'s journal reaches (its
        last seq + 1 at most), each from the key of its block (seqs of one block from one
        pass)."""
        last = reader.last_seq()
        found: dict[int, bytes] = {}
        history: History | None = None
        for seq in sorted({s for s in seqs if 1 <= s <= last + 1}):
            if history is None or block_of(history.next_seq) != block_of(seq):
                history = self.history_before(reader, seq)
            else:  # on from the last one, in the same block
                feed_to(history, reader, seq)
            found[seq] = history.digest()
        return found

    def keep(self, history: History) -> None:
        """Append the keys ``history`` made (``marks``) whose blocks the journal holds
        durable (``journal_durable``: a source hashes what it ships before the router's
        fsync, and a key of a tail a host crash loses would stand for another history,
        review 85); the others stay in ``marks`` for a later call. A key follows those kept,
        in order; one of a block kept already is passed over (another process kept it).
        Reads the file's last record only."""
        if not history.marks:
            return
        durable = durable_upto(self.directory)
        ready = [m for m in history.marks if m[0] * BLOCK <= durable]
        history.marks = [m for m in history.marks if m[0] * BLOCK > durable]
        if not ready:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            kept = os.fstat(fd).st_size // _RECORD.size
            while kept and _unpack(os.pread(fd, _RECORD.size, (kept - 1) * _RECORD.size)) is None:
                kept -= 1  # a damaged last record (a torn one is cut below)
            new = [(block, key, crc) for block, key, crc in ready if block > kept]
            if not new or [b for b, _, _ in new] != list(range(kept + 1, kept + 1 + len(new))):
                return  # nothing new, or a gap before them: the next hash keeps them
            os.ftruncate(fd, kept * _RECORD.size)
            os.pwrite(fd, b"".join(_pack(key, crc) for _, key, crc in new), kept * _RECORD.size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def keys(self) -> list[tuple[bytes, int]]:
        """The keys kept, ``(key after block k, CRC of its last record)`` for k = 1, 2, ...,
        up to the first record that fails its CRC (a whole read: for tests and tools)."""
        try:
            return _sound_records(self.path.read_bytes())
        except FileNotFoundError:
            return []

    def truncate(self, blocks: int) -> None:
        """Keep the keys of the first ``blocks`` blocks only (a journal cut within the next)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size > blocks * _RECORD.size:
                os.ftruncate(fd, blocks * _RECORD.size)
                os.fsync(fd)
        finally:
            os.close(fd)

    def _sound_key(self, reader: JournalReader, blocks: int) -> tuple[int, bytes]:
        """The newest key of the first ``blocks`` that the journal bears out, as ``(its block
        number, key)`` (``(0, root)``: none): one record read, and the journal's entry at its
        block's end; a key the entry no longer bears out (it differs, or the journal ends
        before it) is dropped with those after it. A key whose entry is gone (archived away)
        stands for it: only keys of durable entries are kept."""
        try:
            f = open(self.path, "rb", buffering=0)  # noqa: SIM115  (closed below)
        except FileNotFoundError:
            return 0, _ROOT
        with f:
            kept = os.fstat(f.fileno()).st_size // _RECORD.size
            k, record = min(blocks, kept), None
            while k:
                record = _unpack(os.pread(f.fileno(), _RECORD.size, (k - 1) * _RECORD.size))
                if record is not None and self._borne_out(reader, k * BLOCK, record[1]):
                    break
                k -= 1
        if k < min(blocks, kept):  # dropped: those after it go too
            self.truncate(k)
        return (k, record[0]) if k and record is not None else (0, _ROOT)

    @staticmethod
    def _borne_out(reader: JournalReader, seq: int, crc: int) -> bool:
        try:
            for found, image in reader.entries(seq, foreign="yield"):
                return found == seq and zlib.crc32(record_bytes(image)) == crc
        except JournalArchivedError:
            return True  # gone from the journal and its archive: the key stands for it
        return False  # the journal ends before it


def _unpack(data: bytes) -> tuple[bytes, int] | None:
    """A record's key and CRC, or None where it is torn or fails its own CRC."""
    if len(data) < _RECORD.size:
        return None
    key, crc, check = _RECORD.unpack(data)
    return (key, crc) if zlib.crc32(key + crc.to_bytes(4, "little")) == check else None


def _sound_records(data: bytes) -> list[tuple[bytes, int]]:
    """The records of ``data`` up to the first torn or damaged one."""
    out = []
    for at in range(0, len(data), _RECORD.size):
        record = _unpack(data[at : at + _RECORD.size])
        if record is None:
            break
        out.append(record)
    return out


def _pack(key: bytes, crc: int) -> bytes:
    head = key + crc.to_bytes(4, "little")
    return _RECORD.pack(key, crc, zlib.crc32(head))
