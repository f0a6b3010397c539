"""Frames of ``u32 length | u32 crc32 | body`` in an append-only file, and how a reader tells
a torn tail from damage.

An append writes whole frames in one ``write``, so a crash of the process or the host leaves
a prefix of its last write at most: the frame it cut runs past the end of the file (or ends
there with a body that fails its CRC: its header reached the disk, its body did not), and
nothing whole follows that frame's start. A reader cuts such a tail (the writer never
answered for it). Such a last frame is *damage* instead, to refuse rather than cut with
every frame after it (reviews 138 and 139), when

- its length with one bit flipped frames a body that passes its CRC: the body is all there,
  only the length is wrong (the frame may be the file's last);
- a whole frame (a length that fits, a body that passes its CRC) starts after it within the
  longest frame's reach, where its own body must end.

A host crash can also lose the pages a file grew by, which then read as zeros: a frame whose
body fails its CRC with nothing but zeros after it to the end is read as the last frame, cut
at its zeros (review 179: a ``clordids.log``, never fsynced, was refused at the gateway's
start). A reader calls ``tail_damage`` only for such a last frame, so the search costs
nothing on a sound file and at most the torn write's bytes on a torn one.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

HEADER: Final = struct.Struct("<II")  # length of the body, its CRC-32


def crc_hex(data: bytes) -> str:
    """The CRC-32 of ``data`` in 8 hex digits: what the venue's small JSON files keep of
    what they say (a file's size does not vary with it)."""
    return f"{zlib.crc32(data):08x}"


def frame(body: bytes) -> bytes:
    """``body`` behind its length and CRC-32."""
    return HEADER.pack(len(body), zlib.crc32(body)) + body


def tail_damage(data: bytes, at: int, longest: int, base: int = 0) -> str:
    """Why the frame at ``at`` of ``data``, whose length runs past ``data``'s end (or which
    ends there and fails its CRC), is damage and not a torn tail, or "" when it reads as
    torn. ``data`` runs to the end of the file from its byte ``base``; ``longest``: the most
    bytes a frame's body holds."""
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


def read_frames(data: bytes, at: int, longest: int) -> tuple[list[tuple[int, bytes]], int, str]:
    """The whole frames of ``data`` from ``at``, as (offset, body); where they end; and why
    what follows them is damage ("": nothing follows, or a torn tail to cut). ``longest``:
    the most bytes a body holds (no writer makes more, torn or whole). No frame is empty:
    zeros to the end are what a crash left where the file grew before its data reached the
    disk (torn), a zero length with data after it is damage."""
    out: list[tuple[int, bytes]] = []
    view, end = memoryview(data), len(data)
    while end - at >= HEADER.size:
        length, crc = HEADER.unpack_from(data, at)
        start = at + HEADER.size
        if not length:
            return out, at, "" if not any(view[at:]) else "is empty and not the last"
        if length > longest:
            return out, at, f"claims {length} bytes, over the {longest} of a frame"
        body = data[start : start + length]
        if start + length >= end and (start + length > end or zlib.crc32(body) != crc):
            why = tail_damage(data, at, longest)  # the last: torn, unless shown otherwise
            return out, at, why and f"claims {length} bytes to the end or past it, yet {why}"
        if zlib.crc32(body) != crc:
            if not any(view[start + length :]):  # zeros from inside it to the end: torn
                # (a host crash lost the pages the frame ends in), unless shown otherwise
                why = tail_damage(data[: max(start, len(data.rstrip(b"\0")))], at, longest)
                return out, at, why and f"fails its check, zeros after it to the end, yet {why}"
            return out, at, "fails its check and is not the last"
        out.append((at, body))
        at = start + length
    return out, at, ""
