"""The ClOrdIDs a gateway has seen, kept across its restarts: ``<gateway>/clordids.log``.

FIX refuses a ClOrdID a session has used before (``OrderEntry._duplicate``). The order entry
keeps the newest 100k-200k of them as 64-bit digests of (session, ClOrdID), in two
generations (``Generations``); before, a restart forgot them all, and a client that
reused the ClOrdID of an order finished before the restart had it accepted. This file holds
what the entry added: ``MAGIC``, then ``crc_frames`` frames of little-endian u64s, one per
append, made before the commands they came with are published (``GatewayServer.publish``);
rewritten whole (a new file fsynced and renamed over) with both generations whenever the
entry drops its oldest one, so it holds at most 200k digests (1.6 MB). A restart feeds them
back in order. A torn last frame (a crash mid-write) is cut; damage (a frame that fails its
CRC with frames after it, a length one bit off) is ``SeenLogError`` naming the file and
byte, never read as other digests (review 139: a flipped bit let a used ClOrdID be taken
again). A file an older build wrote (bare u64s, no header) is rewritten in this layout. It
is shipped to a standby beside the order log (``procs/replica/files.py``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from array import array
from pathlib import Path
from typing import Final

from procs.common.crc_frames import frame, read_frames
from procs.common.durable import PRIVATE, make_dirs, replace_durably, write_all

log = logging.getLogger("ringex.gateway")

_SWAP = sys.byteorder != "little"
#: The REST API's clientOrderIds, a window of their own beside this file (review 73).
API_IDS: Final = "api_ids.log"
API_IDS_KEPT: Final = 200_000
#: What the file opens with: this layout (CRC frames), version 2.
MAGIC: Final = b"RXSEEN\x00\x02"
#: The most bytes a frame holds: a rewrite's whole content (two generations) and more.
_LONGEST = 8 << 20


class SeenLogError(ValueError):
    """The file is damaged (not torn by a crash); the message names it, the byte, and what
    to do."""


def digest(session: int, cl_ord_id: bytes) -> int:
    """A stable 64-bit digest of a session's ClOrdID (``hash`` changes with each process)."""
    key = b"%d\x01%s" % (session, cl_ord_id)
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def api_digest(account: int, client_order_id: str) -> int:
    """The digest of an API order's clientOrderId, in ``RestOrders.seen`` (``api_ids.log``:
    its own window and its own domain, an account's, not a session's; a build before
    2026-11-27 kept them in ``OrderEntry.seen`` with the FIX ClOrdIDs): a query by it once its
    order is forgotten says "unknown here", never "does not exist" (review 70)."""
    return digest(-1 - account, client_order_id.encode("latin-1", "replace"))


def _bytes(values: array[int]) -> bytes:
    if _SWAP:
        values = array("Q", values)
        values.byteswap()
    return values.tobytes()


class Generations:
    """The newest ``size``..2 x ``size`` values added, in two sets: a membership test is two
    lookups, and memory is two sets of at most ``size``, freed whole a generation at a time.
    ``take`` says what to persist since its last call (``clordids.py``): the values added,
    or, when a generation was dropped meanwhile, that the whole content must be rewritten."""

    __slots__ = ("_new", "_old", "added", "rolled", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._new: set[int] = set()
        self._old: set[int] = set()
        self.added = array("Q")
        self.rolled = False

    def take(self) -> tuple[array[int], bool]:
        added, rolled = self.added, self.rolled
        if added or rolled:  # (an idle call, once a publish, allocates nothing)
            self.added, self.rolled = array("Q"), False
        return added, rolled

    def give_back(self, added: array[int], rolled: bool) -> None:
        """What ``take`` gave, not persisted after all: before what came since."""
        self.added = added + self.added
        self.rolled = self.rolled or rolled

    def restore(self, values: array[int]) -> None:
        """Add what a ``SeenLog`` held, in order (the generations come back as they were);
        nothing of it is left to persist."""
        for value in values:
            self.add(value)
        self.take()

    def content(self) -> array[int]:
        """Every value kept, the older generation first (what ``add`` rebuilds them from)."""
        return array("Q", [*self._old, *self._new])

    def __contains__(self, value: int) -> bool:
        return value in self._new or value in self._old

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def add(self, value: int) -> None:
        if len(self._new) >= self.size:
            self._old, self._new = self._new, set()
            self.rolled = True
        self._new.add(value)
        self.added.append(value)


class SeenLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        make_dirs(path.parent)
        self._fd = -1

    def load(self) -> array[int]:
        """Every digest the file holds, oldest first; opens it for appends."""
        data = self.path.read_bytes() if self.path.exists() else b""
        values = array("Q")
        older = not data.startswith(MAGIC) and not MAGIC.startswith(data[: len(MAGIC)])
        if older:  # bare digests: a partial last one (a crash mid-write) cut
            whole = len(data) - len(data) % 8
            values.frombytes(data[:whole])
        elif len(data) < len(MAGIC):
            whole = 0  # a new file whose header a crash cut
        else:
            frames, whole, why = read_frames(data, len(MAGIC), _LONGEST)
            odd = next((at for at, body in frames if len(body) % 8), None)
            if why or odd is not None:
                raise SeenLogError(
                    f"{self.path}: frame at byte {odd if odd is not None else whole} "
                    f"{why or 'holds a part of a digest'}; to start again without the ids it "
                    "held (one used before is then taken), remove it"
                )
            for _, body in frames:
                values.frombytes(body)
        if _SWAP:
            values.byteswap()
        if whole < len(data):
            log.warning("%s: cut a torn tail at byte %d (%d bytes)", self.path, whole,
                        len(data) - whole)  # fmt: skip
        if older and data:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            self.rewrite(values)  # in this layout, once
            return values
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE)
        os.ftruncate(self._fd, whole)
        if not whole:
            write_all(self._fd, MAGIC)
        self._size = max(whole, len(MAGIC))  # the file's, as this log wrote it
        return values

    def keep(self, seen: Generations) -> None:
        """Persist what ``seen`` gained since the last call (before the commands go out). A
        write that fails (a full disk) gives it back to ``seen``: the next call writes it
        (review 86: the caller, a REST request's, failed, and the gateway ran on without)."""
        added, rolled = seen.take()
        try:
            if rolled:
                self.rewrite(seen.content())
            elif added:
                self.append(added)
        except OSError:
            seen.give_back(added, rolled)
            raise

    def append(self, values: array[int]) -> None:
        """``values`` at the end, whole or not at all: a write cut short (a disk filling up)
        is cut back off, or every digest after it would be read shifted."""
        data = frame(_bytes(values))
        try:
            write_all(self._fd, data)
        except OSError:
            os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)

    def rewrite(self, values: array[int]) -> None:
        """The file becomes ``values`` (a new file fsynced and renamed over: never half of
        either, and never an empty file after a crash of the machine: review 139)."""
        data = MAGIC + (frame(_bytes(values)) if values else b"")
        tmp = self.path.with_name(self.path.name + ".new")
        replace_durably(self.path, data, mode=PRIVATE, tmp=tmp)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)  # the new file's, before the old
        os.close(self._fd)  # goes: a failed open kept a closed number that a later close
        self._fd = fd  # would have closed under another file's feet (review 168)
        self._size = len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
