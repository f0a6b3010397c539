"""The FIX order entry's memory across a gateway restart: a write-ahead log of its orders.

The exchange journals every command, but not what only the gateway knows: which session an
order belongs to, its ClOrdID, what has been reported on it. Without that a restarted gateway
could not report a fill of an order placed before the restart, nor cancel one by its
OrigClOrdID. So the server writes here, in one frame each time:

- before it publishes commands to the router ring: the commands themselves (their sequence in
  that ring and their slot images) and the orders and requests they made. At a restart a
  command the ring never got is published then; one it got is not published twice.
- after a batch of events, once its reports are in the sessions' stores and before the ring
  cursors are committed: the orders the events changed and the cursors. At a restart the
  events of a batch the log has are skipped; those of a batch it lacks (a crash in between)
  are read again, so a report can go out twice but is never lost.

A frame is ``u32 length | u32 crc32 | msgpack list of entries`` and is applied whole or not at
all; a torn last frame (a crash mid-write) is cut off at the next start, with a log line.
Entries are upserts keyed by kind and key, so replay keeps the last of each:

====  =============================================  =========================================
kind  key                                            value
====  =============================================  =========================================
O     order ref (the NewOrder's client_ref)          the order's fields (``OrderEntry.dump``)
R     request ref (a cancel's or replace's ref)      the request's fields
X     a ref                                          the order or request is gone
F     order ref                                      a finished order's last fields (the
                                                     newest FINISHED_KEPT are kept)
P     ring name                                      (ring created_ns, cursor) of an input ring
H     ring name                                      the newest event seq handled from it,
                                                     and how many of its events (a read may
                                                     end inside one command's events; absent:
                                                     all of them)
C     sequence in the router ring                    (ring created_ns, slot image)
M     a MassCancel's ref                             (session id, [[tag, value], ...]): a mass
                                                     cancel the router has not answered yet
A     the ref an order was placed under over REST    the API's view of it (``LiveOrder.entry``):
                                                     open, pending, or among the newest
                                                     finished the API keeps
====  =============================================  =========================================

Once the file has grown past ``compact_bytes`` *and* to twice what the last compaction wrote,
it is rewritten as frames of what is live (write a new file, then rename it over the old), so
its size follows the open orders rather than the traffic. The doubling keeps the cost of
compacting amortised O(1) per entry written: with more live orders than ``compact_bytes``
holds, compacting at a fixed size would rewrite every live order after each few appends
(the 16-core pipeline run spent half of each gateway's time doing so).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from procs.common.durable import make_dirs

log = logging.getLogger("ringex.gateway")

_FRAME = struct.Struct("<II")
#: A frame is one flush: a pass of the poll loop or one publish. 64 MiB is far beyond any.
MAX_FRAME_BYTES = 64 << 20
#: Entries per frame of a compacted file (an order entry is about 80 bytes).
COMPACT_FRAME_ENTRIES = 50_000

ORDER, REQUEST, GONE, POSITION, COMMAND, HANDLED = "O", "R", "X", "P", "C", "H"
FINISHED, MASS, API_ORDER = "F", "M", "A"
#: Finished orders a cancel, replace or status request can still name (then: too late, or
#: their final state), newest kept, across restarts too.
FINISHED_KEPT = 10_000

Entry = tuple[Any, ...]


class OrderLogError(ValueError):
    """The log is damaged before its last frame: named with the file and byte offset."""


@dataclass(slots=True)
class Recovered:
    """What the log held at the last complete frame."""

    orders: dict[int, list[Any]] = field(default_factory=dict)
    requests: dict[int, list[Any]] = field(default_factory=dict)
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    commands: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    handled: dict[str, int] = field(default_factory=dict)
    #: ring -> events of its ``handled`` seq handled, where a read ended inside them
    handled_part: dict[str, int] = field(default_factory=dict)
    #: ref -> a finished order's fields (as ``orders``), the newest ``FINISHED_KEPT``
    finished: dict[int, list[Any]] = field(default_factory=dict)
    #: MassCancel ref -> [session id, [[tag, value], ...]], still waiting for its verdict
    mass_cancels: dict[int, list[Any]] = field(default_factory=dict)
    #: ref an order was placed under over REST -> ``LiveOrder.entry()``, oldest write first
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
            self.api_orders.pop(key, None)  # the newest write last: restored in that order
            self.api_orders[key] = entry[2:]
        elif kind == MASS:
            self.mass_cancels[key] = entry[2:]
        elif kind == POSITION:
            self.positions[key] = (entry[2], entry[3])
        elif kind == COMMAND:
            self.commands[key] = (entry[2], entry[3])
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
        self.compacted_size = 0  # what this log's last compaction wrote

    def load(self) -> Recovered:
        """Replay every complete frame; cut off a torn last one. Opens the log for appends."""
        state = Recovered()
        data = self.path.read_bytes() if self.path.exists() else b""
        pos, end = 0, len(data)
        while pos < end:
            if end - pos < _FRAME.size:
                break
            length, crc = _FRAME.unpack_from(data, pos)
            body = data[pos + _FRAME.size : pos + _FRAME.size + length]
            if not length and not any(data[pos:]):  # no frame is empty: zeros a crash left
                break  # after the file grew and before its data reached the disk: torn
            if length > MAX_FRAME_BYTES or len(body) < length or zlib.crc32(body) != crc:
                if pos + _FRAME.size + length < end and length <= MAX_FRAME_BYTES:
                    raise OrderLogError(
                        f"{self.path}: frame at byte {pos} fails its check and is not the last"
                    )
                break
            for entry in self._decode(body):
                state.apply(entry)
            pos += _FRAME.size + length
        if pos < end:
            log.warning(
                "%s: cut a torn last frame at byte %d (%d bytes)", self.path, pos, end - pos
            )
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.ftruncate(self._fd, pos)
        self.size = pos
        return state

    def write(self, entries: list[Entry]) -> None:
        """One frame, in one ``write``: in the page cache, so a crash of the process keeps it."""
        if not entries:
            return
        if self._fd < 0:
            raise OrderLogError(f"{self.path}: load() the log before writing to it")
        frame = self._frame(entries)
        os.write(self._fd, frame)
        self.size += len(frame)

    @property
    def wants_compaction(self) -> bool:
        return self.size > max(self.compact_bytes, 2 * self.compacted_size)

    def compact(self, live: list[Entry]) -> None:
        """Replace the file by the frames of ``live`` (written aside, then renamed over it:
        a crash leaves the old file or the new one, never a mix)."""
        aside = self.path.with_suffix(".compact")
        size = 0
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for at in range(0, len(live), COMPACT_FRAME_ENTRIES):
                frame = self._frame(live[at : at + COMPACT_FRAME_ENTRIES])
                os.write(fd, frame)
                size += len(frame)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(aside, self.path)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.size = self.compacted_size = size

    def _frame(self, entries: list[Entry]) -> bytes:
        body = self._encode(entries)
        if len(body) > MAX_FRAME_BYTES:
            raise OrderLogError(f"a frame of {len(body)} bytes is over {MAX_FRAME_BYTES}")
        return _FRAME.pack(len(body), zlib.crc32(body)) + body

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
