"""Frames of ``u32 length | u32 crc32 | body`` in an append-only file, and how a reader tells
a torn tail from damage.

An append writes whole frames in one ``write``, so a crash of the process or the host leaves
a prefix of its last write at most: the frame it cut runs past the end of the file, and
nothing whole follows that frame's start. A reader cuts such a tail (the writer never
answered for it). A frame that runs past the end is *damage* instead, to refuse rather than
cut with every frame after it (review 138), when

- its length with one bit flipped frames a body that passes its CRC: the body is all there,
  only the length is wrong (the frame may be the file's last);
- a whole frame (a length that fits, a body that passes its CRC) starts after it within the
  longest frame's reach, where its own body must end.

A reader calls ``overrun_damage`` only for a frame that overruns the file, so the search costs
nothing on a sound file and at most the torn write's bytes on a torn one.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

HEADER: Final = struct.Struct("<II")  # length of the body, its CRC-32


def frame(body: bytes) -> bytes:
    """``body`` behind its length and CRC-32."""
    return HEADER.pack(len(body), zlib.crc32(body)) + body


def overrun_damage(data: bytes, at: int, longest: int, base: int = 0) -> str:
    """Why the frame at ``at`` of ``data``, whose length runs past ``data``'s end, is damage and
    not a torn tail, or "" when it reads as torn. ``data`` runs to the end of the file from
    its byte ``base``; ``longest``: the most bytes a frame's body holds."""
    length, crc = HEADER.unpack_from(data, at)
    view = memoryview(data)
    start = at + HEADER.size
    room = len(data) - start
    for bit in range(32):
        guess = length ^ (1 << bit)
        if 0 < guess <= room and zlib.crc32(view[start : start + guess]) == crc:
            return f"its length {length} is {guess} with one bit flipped (that body passes its CRC)"
    unpack, end = HEADER.unpack_from, len(data) - HEADER.size
    for next_at in range(start + 1, min(end, start + longest) + 1):
        size, check = unpack(data, next_at)
        body = next_at + HEADER.size
        if 0 < size <= end - next_at and zlib.crc32(view[body : body + size]) == check:
            return f"a whole frame follows it at byte {base + next_at}"
    return ""
