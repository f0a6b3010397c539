"""The ring header's byte layout: one static line, one producer line, one line per consumer.

Every mutable field is an aligned 8-byte word, read and written through a ``memoryview`` cast
to ``'q'``: on x86-64 an aligned 8-byte load or store is a single atomic ``mov``, so a reader
never sees half a sequence. Each role's words live on their own 128-byte line (two cache
lines, which also defeats the adjacent-line prefetcher), so a consumer bumping its sequence
never invalidates the line the producer writes.

```
line 0     static      magic, layout version, slot size, capacity, schema id, max consumers,
                       ..., created ns, creator pid, the creator's start time
line 1     producer    cursor, heartbeat ns, pid, "a consumer is parked" (wake) flag, pid's start
line 2     parked      the producer's parked flag                 (consumers read per commit)
line 3+i   consumer i  sequence, heartbeat ns, pid, state, gate mask, parked flag, name,
                       generation, "a consumer gated on this one is parked" flag, pid's start
data       capacity x slot_size bytes; each slot's last 8 bytes are its seqlock stamp
```
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

MAGIC: Final = b"RINGEX\x00\x01"
#: A ring's magic while ``Ring.create`` lays it out: written last, so nothing attaches early.
NO_MAGIC: Final = b"\0" * len(MAGIC)
LAYOUT_VERSION: Final = 1
LINE: Final = 128
WORD: Final = 8
STAMP_SIZE: Final = 8
NAME_SIZE: Final = 16
MAX_SEGMENT: Final = 1 << 40  # bytes: far above any ring, below what an mmap can hold
MAX_SLOT: Final = 2**32 - 1  # the static line's slot size field is a uint32

# Static line: magic, layout_version, slot_size, capacity, schema_id, max_consumers,
# header_size, created_ns, creator_pid.
STATIC: Final = struct.Struct("<8sIIQQIIQQ")

#: Word of the static line after its fields: when the creator started (clock ticks since
#: the host's boot, ``shm.liveness.process_start``; 0 where unknown). A pid with the start
#: time it had when written names one process for good: a pid alone may be reused.
CREATOR_START: Final = STATIC.size // WORD

# Producer line, as word indexes into the 'q' view.
P_CURSOR: Final = LINE // WORD + 0  # number of records published (next sequence to publish)
P_HEARTBEAT: Final = LINE // WORD + 1  # monotonic ns of the producer's last sign of life
P_PID: Final = LINE // WORD + 2  # pid of the attached producer, 0 when none
# Read by the producer on every publish, right after it stores the cursor, and written only
# by a consumer about to park: on the cursor's line it costs no second line per publish.
P_WAKE: Final = LINE // WORD + 3  # 1 when some consumer is parked: the producer must post
P_PID_START: Final = LINE // WORD + 4  # when the producer ``P_PID`` started (``CREATOR_START``)
# Read by consumers on every commit, written only by a producer about to park: its own line,
# so those reads do not pull the cursor's line away from the producer.
P_PARKED: Final = 2 * LINE // WORD  # 1 while the producer sleeps on its semaphore (ring full)
FIRST_CONSUMER_LINE: Final = 3

# Consumer line fields, as word offsets from the start of the consumer's line.
C_SEQUENCE: Final = 0  # records consumed = the next sequence this consumer will read
C_HEARTBEAT: Final = 1
C_PID: Final = 2
C_STATE: Final = 3
C_GATES: Final = 4  # bitmask of consumer indexes this one may not overtake
C_PARKED: Final = 5
C_NAME_BYTE: Final = 6 * WORD  # NAME_SIZE bytes of UTF-8, NUL padded
C_GENERATION: Final = 8  # bumped by every declare: a process holding an older line is stale
C_WAKE_GATED: Final = 9  # 1 when a consumer gated on this one is parked: its commit must post
C_PID_START: Final = 10  # when the consumer ``C_PID`` started (``CREATOR_START``)

STATE_FREE: Final = 0
STATE_ACTIVE: Final = 1  # declared: gates the producer whether or not a process is attached
STATE_DETACHED: Final = 2  # dead or cut loose: gates nobody, may be lapped
STATE_NAMES: Final = {STATE_FREE: "free", STATE_ACTIVE: "active", STATE_DETACHED: "detached"}
#: The most consumer lines a ring has: a gate mask is a word, its sign bit is not one, and
#: bit 62 is the consumer's "no gate" mark (``consumer._NO_GATE``).
MAX_CONSUMERS: Final = 62


def state_name(state: int) -> str:
    """A line's state word in words; a corrupted one is named, not a ``KeyError``."""
    return STATE_NAMES.get(state, f"unknown ({state})")


def consumer_word(index: int, field: int) -> int:
    """Word index of ``field`` in consumer ``index``'s line."""
    return (FIRST_CONSUMER_LINE + index) * LINE // WORD + field


def consumer_name_at(index: int) -> int:
    """Byte offset of consumer ``index``'s name field."""
    return consumer_word(index, 0) * WORD + C_NAME_BYTE


def header_size(max_consumers: int) -> int:
    return (FIRST_CONSUMER_LINE + max_consumers) * LINE


@dataclass(frozen=True, slots=True)
class Geometry:
    """What a ring's creator fixed and every attacher validates."""

    slot_size: int
    capacity: int
    schema_id: int
    max_consumers: int

    @property
    def header_size(self) -> int:
        return header_size(self.max_consumers)

    @property
    def total_size(self) -> int:
        return self.header_size + self.slot_size * self.capacity

    def validate(self) -> None:
        if self.capacity < 2 or self.capacity & (self.capacity - 1):
            raise ValueError(f"capacity {self.capacity} is not a power of two >= 2")
        if self.slot_size < 16 or self.slot_size % WORD:
            raise ValueError(f"slot_size {self.slot_size} is not a multiple of 8 that is >= 16")
        if self.slot_size > MAX_SLOT:
            raise ValueError(
                f"slot_size {self.slot_size} is more than {MAX_SLOT}, what the header's "
                "slot size field (uint32) holds"
            )
        if not 1 <= self.max_consumers <= MAX_CONSUMERS:
            raise ValueError(f"max_consumers {self.max_consumers} is outside 1..{MAX_CONSUMERS}")
        if not 0 <= self.schema_id < 2**63:
            raise ValueError(f"schema_id {self.schema_id} is outside 0..2**63-1")
        if self.total_size > MAX_SEGMENT:
            raise ValueError(
                f"capacity {self.capacity} x slot_size {self.slot_size} makes a segment of "
                f"{self.total_size} bytes, more than {MAX_SEGMENT} (1 TiB)"
            )
