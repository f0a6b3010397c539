"""The FIX order entry's memory across a gateway restart: a write-ahead log of its orders.

The exchange journals every command, but not what only the gateway knows: which session an
order belongs to, its ClOrdID, what has been reported on it. Without that a restarted gateway
could not report a fill of an order placed before the restart, nor cancel one by its
OrigClOrdID. So the server writes here, in one write each time (a frame, or several replayed
as one: see below):

- before it publishes commands to the router ring: the commands themselves (their sequence in
  that ring and their slot images) and the orders and requests they made. At a restart a
  command the ring never got is published then; one it got is not published twice.
- after a batch of events, once its reports are in the sessions' stores and before the ring
  cursors are committed: the orders the events changed and the cursors. At a restart the
  events of a batch the log has are skipped; those of a batch it lacks (a crash in between)
  are read again, so a report can go out twice but is never lost.

A frame is ``u32 length | u32 crc32 | msgpack list of entries`` and is applied whole or not at
all; a torn last frame (a crash mid-write) is cut off at the next start, with a log line,
and a frame that only looks torn (``crc_frames.tail_damage``: a flipped bit in its length)
is refused.
A write too big for one frame (over ``MAX_FRAME_BYTES``, or more than ``COMPACT_FRAME_ENTRIES``
entries: the cancels of a session that cancels on disconnect, one per live order, or of every
such session at a restart) goes as several, each but the last opening with a ``+`` entry:
replay applies them with the last, all or none, so a write stays whole however large (one
frame of it all once stopped a gateway for good: the write raised, and so did the restart's).
Entries are upserts keyed by kind and key, so replay keeps the last of each:

====  =============================================  =========================================
kind  key                                            value
====  =============================================  =========================================
+     (none)                                         the entries go with the next frame's
O     order ref (the NewOrder's client_ref)          the order's fields (``OrderEntry.dump``)
R     request ref (a cancel's or replace's ref)      the request's fields
X     a ref                                          the order or request is gone
F     order ref                                      a finished order's last fields (the
                                                     newest FINISHED_KEPT are kept)
P     ring name                                      (ring created_ns, cursor) of an input ring
H     ring name                                      the newest event seq handled from it,
                                                     and how many of its events (counted at
                                                     every read, which may end inside one
                                                     command's events; absent, in older
                                                     logs: all of them)
C     sequence in the router ring                    (ring created_ns, slot image, the journal
                                                     schema id of its layout: a build of
                                                     other commands passes over it; absent in
                                                     logs before 2026-11-27: UNSTAMPED_SCHEMA)
M     a MassCancel's ref                             (session id, [[tag, value], ...]): a mass
                                                     cancel the router has not answered yet
A     the ref an order was placed under over REST    the API's view of it (``LiveOrder.entry``):
                                                     open, pending, or among the newest
                                                     finished the API keeps
L     the ref of that API order                      (trade id, maker, journal seq, price,
                                                     qty, time ms, buyer, fee; no fee before
                                                     review 331): a fill of it that
                                                     myTrades shows until the writer files
                                                     it (``rest_order_log.fill_entry``);
                                                     kept with its order, gone with it
====  =============================================  =========================================

Once the file has grown past ``compact_bytes`` *and* to twice what the last compaction wrote,
it is rewritten as frames of what is live (write a new file, then rename it over the old), so
its size follows the open orders rather than the traffic. The doubling keeps the cost of
compacting amortised O(1) per entry written: with more live orders than ``compact_bytes``
holds, compacting at a fixed size would rewrite every live order after each few appends
(the 16-core pipeline run spent half of each gateway's time doing so). A gateway compacts in
steps of ``COMPACT_STEP_ENTRIES``, one per log write, while its appends go on
(``begin_compaction``): done at once, 20k orders held its event loop for 30 ms.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, Final

import msgspec

from procs.common.crc_frames import read_frames
from procs.common.durable import make_dirs, write_all

log = logging.getLogger("ringex.gateway")

_FRAME = struct.Struct("<II")
#: The most bytes a frame holds; a write over it (a pass's cancels on disconnect, a restart's)
#: goes as several frames (``_frames``), and a length past it on load is a torn frame's.
MAX_FRAME_BYTES = 64 << 20
#: The most entries a frame holds, a compacted file's and a write's (an order entry is about
#: 80 bytes).
COMPACT_FRAME_ENTRIES = 50_000
#: Entries a step of a compaction writes: about 2 ms of a gateway's loop.
COMPACT_STEP_ENTRIES = 1_000

ORDER, REQUEST, GONE, POSITION, COMMAND, HANDLED = "O", "R", "X", "P", "C", "H"
FINISHED, MASS, API_ORDER, API_FILL = "F", "M", "A", "L"
#: The journal schema id of a COMMAND entry's image where the entry does not say it: the
#: layout of every build that logged commands without it (before 2026-11-27), so a build
#: of other commands passes over them too (review 76).
UNSTAMPED_SCHEMA: Final = 0x5245_E71E_F8B6
#: A frame's first entry when its entries are applied with the next frame's (``_frames``).
CONTINUED = "+"
_MORE: tuple[str] = (CONTINUED,)
#: Finished orders a cancel, replace or status request can still name (then: too late, or
#: their final state), newest kept, across restarts too.
FINISHED_KEPT = 10_000

Entry = tuple[Any, ...]
#: What a compaction takes: an entry, or one the log wrote before, still encoded (msgspec
#: copies its bytes into the frame).
Kept = Entry | msgspec.Raw
_encode_entry = msgspec.msgpack.Encoder().encode


def encoded(entry: Entry) -> msgspec.Raw:
    """``entry`` as a frame would hold it: kept so by a finished order, whose entry no longer
    changes, for every compaction to copy."""
    return msgspec.Raw(_encode_entry(entry))


def plain(entries: Iterable[Kept]) -> list[Entry]:
    """``entries`` with the encoded ones decoded (a ``dump`` for readers)."""
    return [tuple(msgspec.msgpack.decode(e)) if isinstance(e, msgspec.Raw) else e for e in entries]


class ApiOrderValues(list[Any]):
    """An API order's fields as its last ``API_ORDER`` entry wrote them (a plain list to its
    readers: ``LiveOrder.restore``, ``waiting_refs``), with the fills the log holds of it
    (``API_FILL``: trade id -> the entry's fields after its key), none in a log written
    before review 324. A new entry of the order keeps them."""

    __slots__ = ("fills",)

    def __init__(self, values: list[Any], fills: dict[int, list[Any]]) -> None:
        super().__init__(values)
        self.fills = fills


class OrderLogError(ValueError):
    """The log is damaged before its last frame: named with the file and byte offset."""


@dataclass(slots=True)
class Recovered:
    """What the log held at the last complete write."""

    orders: dict[int, list[Any]] = field(default_factory=dict)
    requests: dict[int, list[Any]] = field(default_factory=dict)
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    commands: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    #: seq -> the journal schema id of a command's image (``UNSTAMPED_SCHEMA`` where unsaid)
    command_schemas: dict[int, int] = field(default_factory=dict)
    handled: dict[str, int] = field(default_factory=dict)
    #: ring -> how many events of its ``handled`` seq were handled (all, or where a read ended
    #: inside them)
    handled_part: dict[str, int] = field(default_factory=dict)
    #: ref -> a finished order's fields (as ``orders``), the newest ``FINISHED_KEPT``
    finished: dict[int, list[Any]] = field(default_factory=dict)
    #: MassCancel ref -> [session id, [[tag, value], ...]], still waiting for its verdict
    mass_cancels: dict[int, list[Any]] = field(default_factory=dict)
    #: ref an order was placed under over REST -> ``LiveOrder.entry()`` (an
    #: ``ApiOrderValues``, with its logged fills), oldest write first
    api_orders: dict[int, list[Any]] = field(default_factory=dict)

    def apply(self, entry: list[Any]) -> None:
        kind, key = entry[0], entry[1]
        if kind == ORDER:
            self.orders[key] = entry[2:]
        elif kind == REQUEST:
            self.requests[key] = entry[2:]
        elif kind == GONE:
            self.orders.pop(key, None)
            self.requests.pop(key, None)
            self.mass_cancels.pop(key, None)
            self.api_orders.pop(key, None)
        elif kind == API_ORDER:
            # the newest write last: restored in that order
            was = self.api_orders.pop(key, None)
            fills = was.fills if isinstance(was, ApiOrderValues) else {}
            self.api_orders[key] = ApiOrderValues(entry[2:], fills)
        elif kind == API_FILL:
            order = self.api_orders.get(key)  # none: its order went (or a compaction's fuzz
            if isinstance(order, ApiOrderValues):  # wrote it first: the tail has it again)
                order.fills[entry[2]] = entry[3:]
        elif kind == MASS:
            self.mass_cancels[key] = entry[2:]
        elif kind == POSITION:
            self.positions[key] = (entry[2], entry[3])
        elif kind == COMMAND:
            self.commands[key] = (entry[2], entry[3])
            self.command_schemas[key] = entry[4] if len(entry) > 4 else UNSTAMPED_SCHEMA
        elif kind == FINISHED:
            self.finished.pop(key, None)
            self.finished[key] = entry[2:]
            if len(self.finished) > FINISHED_KEPT:
                del self.finished[next(iter(self.finished))]
        elif kind == HANDLED:
            self.handled[key] = entry[2]
            if len(entry) > 3 and entry[3] is not None:
                self.handled_part[key] = entry[3]
            else:
                self.handled_part.pop(key, None)
        else:
            raise OrderLogError(f"unknown entry kind {kind!r}")


class OrderLog:
    """Append frames to ``path``; ``load`` replays them (and trims a torn tail)."""

    def __init__(self, path: Path, compact_bytes: int = 64 << 20) -> None:
        self.path = path
        self.compact_bytes = compact_bytes
        make_dirs(path.parent)
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(list[list[Any]]).decode
        self._fd = -1
        self.size = 0
        self.compacted_size = 0  # what this log's last compaction wrote of the live entries
        self.step_entries = COMPACT_STEP_ENTRIES
        # a compaction under way: the file written aside, the live entries still to write,
        # the frames appended since it began
        self._aside = path.with_suffix(".compact")
        self._aside_fd = -1
        self._aside_size = 0
        self._live: Iterator[Kept] = iter(())
        self._tail: list[bytes] = []
        self._loaded = False  # until ``load``, and after ``close``: no write

    def load(self) -> Recovered:
        """Replay every complete write; cut off a torn last one. Opens the log for appends."""
        state = Recovered()
        data = self.path.read_bytes() if self.path.exists() else b""
        end = len(data)
        frames, stop, why = read_frames(data, 0, MAX_FRAME_BYTES)
        if why:  # damage, not a crash: refused, never cut with the frames after it (review 39)
            raise OrderLogError(f"{self.path}: frame at byte {stop} {why}")
        whole = 0  # the end of the last write replayed: a torn one is cut off from there
        held: list[list[Any]] = []  # a write's frames before its last (``CONTINUED``)
        for pos, body in frames:
            entries = self._decode(body)
            if entries and entries[0] == [CONTINUED]:
                held += entries[1:]
                continue
            for entry in chain(held, entries):
                state.apply(entry)
            held, whole = [], pos + _FRAME.size + len(body)
        if whole < end:
            log.warning(
                "%s: cut a torn last frame or an unfinished write at byte %d (%d bytes)",
                self.path,
                whole,
                end - whole,
            )
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.ftruncate(self._fd, whole)
        self.size = whole
        self._loaded = True
        return state

    def write(self, entries: Sequence[Kept]) -> None:
        """One frame (or, too big for one, several that replay applies together), each in
        one ``write``: in the page cache, so a crash of the process keeps it."""
        if not entries:
            return
        if self._fd < 0:
            if not self._loaded:
                raise OrderLogError(f"{self.path}: load() the log before writing to it")
            # a compaction's reopen failed after its rename (out of descriptors): again
            # now, the OSError the caller keeps its entries for if it fails (review 39)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        frames = self._frames(entries)  # all made first: an entry too big writes nothing
        tail = len(self._tail)
        size = self.size
        try:
            for frame in frames:
                write_all(self._fd, frame)
                size += len(frame)
                if self._aside_fd >= 0:  # the compacted file gets it too, after the live ones
                    self._tail.append(frame)
        except OSError:  # a full disk, say: no torn frame may stay with frames after it
            os.ftruncate(self._fd, self.size)
            del self._tail[tail:]
            raise
        self.size = size

    @property
    def wants_compaction(self) -> bool:
        return not self.compacting and self.size > max(self.compact_bytes, 2 * self.compacted_size)

    @property
    def compacting(self) -> bool:
        """A compaction is under way (``begin_compaction``, not finished yet)."""
        return self._aside_fd >= 0

    def compact(self, live: Iterable[Kept]) -> None:
        """Replace the file by the frames of ``live``, at once (``begin_compaction`` and
        ``finish_compaction``)."""
        self.begin_compaction(iter(live))
        self.finish_compaction()

    def begin_compaction(self, live: Iterator[Kept]) -> None:
        """Start replacing the file by the frames of ``live``, which ``step_compaction`` takes
        a slice at a time, so that no one call stalls its caller for all of them (a gateway
        with 20k orders spent 30 ms in one).

        The new file is written aside. Meanwhile ``write`` appends to the log as before (it
        stays the whole truth until the rename) and keeps each frame it appends; the finish
        adds those frames after ``live``'s, then renames the new file over the old. So
        ``live`` may be fuzzy, as Redis's AOF rewrite is: it must hold every key live when the
        compaction began, each with its value of that moment or later (a key gone since may
        still appear), since replay keeps the last write of a key and every change after the
        start is in the frames that follow. "Later" only as far as the log has it when the
        compaction finishes: a value newer than the log would give the renamed file a state
        the log never had (the gateway takes its changes just before each write).

        A step that fails (the side file's write, the iterator) drops the compaction: the
        slice it took is gone, and a later step must not rename a file without it."""
        if self.compacting:
            raise OrderLogError(f"{self.path}: a compaction is under way already")
        self._aside_fd = os.open(self._aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._aside_size = 0
        self._live = live
        self._tail = []

    def step_compaction(self, max_entries: int | None = None, finish: bool = True) -> bool:
        """Write up to ``max_entries`` (``step_entries``) more of the compaction's entries; at
        their end, finish it, unless ``finish`` is False (the caller's state may be ahead of
        the log: a later step, after a write, finishes it). Returns whether it is finished."""
        if not self.compacting:
            return True
        max_entries = max_entries or self.step_entries
        try:
            chunk = list(islice(self._live, max_entries))
            if chunk:
                for frame in self._frames(chunk):
                    self._write_aside(frame)
            if len(chunk) < max_entries and finish:
                self._finish()
                return True
        except BaseException:  # the slice taken is lost to it: a later step must not rename
            self._abandon_compaction()  # a file without it (the log still holds everything)
            raise
        return False

    def finish_compaction(self) -> None:
        """Write the rest of the compaction's entries and finish it."""
        while not self.step_compaction(COMPACT_FRAME_ENTRIES):
            pass

    def _write_aside(self, frame: bytes) -> None:
        write_all(self._aside_fd, frame)
        self._aside_size += len(frame)

    def _finish(self) -> None:
        """The frames appended since the start go after the compacted ones; then the new file
        is made durable and renamed over the old (a crash leaves the old file or the new one,
        never a mix)."""
        compacted = self._aside_size
        # Until the rename the compaction is under way (``compacting``): a failure up to it
        # (a full disk at the tail or the fsync) is the caller's to abandon, side file and
        # tail frames with it (review 39: they stayed, as large as the live orders).
        for frame in self._tail:
            self._write_aside(frame)
        os.fsync(self._aside_fd)
        os.replace(self._aside, self.path)
        # both descriptors detached before either close: a close that fails must not leave
        # writes going to the old file's inode, or to a number a later open reuses
        aside, self._aside_fd = self._aside_fd, -1
        old, self._fd = self._fd, -1
        self.size, self.compacted_size = self._aside_size, compacted
        self._live, self._tail = iter(()), []
        try:
            os.close(aside)
        finally:
            if old >= 0:
                os.close(old)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:  # the compaction is done; the next write opens the log again
            log.warning("order log %s compacted; reopening it failed (%s): the next write "
                        "opens it again", self.path, exc)  # fmt: skip

    def _abandon_compaction(self) -> None:
        if self.compacting:
            fd, self._aside_fd = self._aside_fd, -1
            os.close(fd)
            self._aside.unlink(missing_ok=True)
            self._live, self._tail = iter(()), []

    def _frames(self, entries: Sequence[Kept], last: bool = True) -> list[bytes]:
        """``entries`` as frames: one where it holds them (at most ``COMPACT_FRAME_ENTRIES``
        and ``MAX_FRAME_BYTES``), else several, halved until each does, each but the last
        (``last`` False: all) opening with ``CONTINUED``. Raises ``OrderLogError`` for an
        entry that no frame holds."""
        if len(entries) <= COMPACT_FRAME_ENTRIES:
            body = self._encode(entries if last else [_MORE, *entries])
            if len(body) <= MAX_FRAME_BYTES:
                return [_FRAME.pack(len(body), zlib.crc32(body)) + body]
            if len(entries) == 1:
                kind, key = plain(entries)[0][:2]
                raise OrderLogError(
                    f"{self.path}: entry {kind}/{key} of {len(body)} bytes is over the "
                    f"{MAX_FRAME_BYTES} bytes of a frame"
                )
        half = len(entries) // 2
        return self._frames(entries[:half], False) + self._frames(entries[half:], last)

    def close(self) -> None:
        """Close the log; a compaction under way is dropped (the log holds everything)."""
        self._abandon_compaction()
        self._loaded = False
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
