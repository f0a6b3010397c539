"""The journal's on-disk format: segment names, the 64-byte header, the entries' layout (and
whether a bad entry is one bit from passing its CRC: rot, not a torn write).

``journal.py`` reads it and says what it means; ``journal_writer.py`` writes it. A segment is
``<first_seq:020d>.journal``, a header (``pack_header``) and then fixed-size entries
(``EntryLayout``: u64 seq, slot image, u32 CRC, zero pad to 8), all little-endian.
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from pathlib import Path
from typing import Final

MAGIC: Final = b"RGXJRNL\x00"
VERSION: Final = 1
HEADER_SIZE: Final = 64
SUFFIX: Final = ".journal"
HEADER = struct.Struct("<8sHHIIIQQq12x")  # everything but the trailing CRC
#: Where the header keeps the entry size and the slot size (for a look without a reader).
ENTRY_SIZE_AT: Final = 12
SLOT_SIZE_AT: Final = 16
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
_NAME_DIGITS: Final = 20
#: The largest slot size a header may declare: a record's length is a u16.
MAX_SLOT_SIZE: Final = 1 << 16


class EntryLayout:
    """Sizes of one journal's entries, which follow from its slot size."""

    def __init__(self, slot_size: int) -> None:
        if not 1 <= slot_size <= MAX_SLOT_SIZE:
            raise ValueError(f"slot_size {slot_size} must be within 1..{MAX_SLOT_SIZE}")
        self.slot_size = slot_size
        self.body = 8 + slot_size  # seq and image: what the CRC covers
        self.size = -(-(self.body + 4) // 8) * 8
        # iter_unpack over whole entries gives (seq, crc) without copying images
        self.seq_crc = struct.Struct(f"<Q{slot_size}xI{self.size - self.body - 4}x")


@functools.cache
def entry_layout(slot_size: int) -> EntryLayout:
    """The (shared) ``EntryLayout`` of ``slot_size``."""
    return EntryLayout(slot_size)


def segment_name(first_seq: int) -> str:
    return f"{first_seq:0{_NAME_DIGITS}d}{SUFFIX}"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """``(first_seq, path)`` of every segment in ``directory``, oldest first."""
    found = []
    for entry in os.scandir(directory):
        stem = entry.name[: -len(SUFFIX)]
        if entry.name.endswith(SUFFIX) and len(stem) == _NAME_DIGITS and stem.isdigit():
            found.append((int(stem), Path(entry.path)))
    return sorted(found)


def pack_header(
    layout: EntryLayout, schema_id: int, first_seq: int, created_ns: int, rules: int = 0
) -> bytes:
    body = HEADER.pack(
        MAGIC, VERSION, HEADER_SIZE, layout.size, layout.slot_size, rules, schema_id,
        first_seq, created_ns,
    )  # fmt: skip
    return body + U32.pack(zlib.crc32(body))


#: A journal schema id -> older ids whose segments this layout reads as its own: the same
#: layouts, or ones it only extends by trailing fields with defaults (a shorter array decodes).
#: Builds up to 82bd4da (2026-11-27) stamped the whole record set's id, 0x5245DCF948CF, whose
#: commands' id is 0x5245E71EF8B6; 0x52452A093320 added ``client_id`` to ``NewOrder`` and
#: ``ReplaceOrder`` (2026-11-27, b"" in the entries before it); 0x5245F1ADAD78 is the same
#: layout under the schema id's own rendering of types, enum members included (2026-11-29:
#: msgspec's ``repr`` before, ``record_layout.describe``). Constants, keyed by the
#: commands' id, so any later build with those commands reads them, whatever its events, and
#: one of other commands does not (review 68: computed from the build's own records, the
#: alias followed its events).
_BEFORE_CLIENT_IDS: Final = frozenset({0x5245_E71E_F8B6, 0x5245_DCF9_48CF})
LEGACY_SCHEMA_IDS: Final[dict[int, frozenset[int]]] = {
    0x5245_E71E_F8B6: frozenset({0x5245_DCF9_48CF}),
    0x5245_2A09_3320: _BEFORE_CLIENT_IDS,
    0x5245_F1AD_AD78: _BEFORE_CLIENT_IDS | {0x5245_2A09_3320},
}


def one_bit_off(body: memoryview, stored: int) -> int | None:
    """Which bit of ``body`` (its seq and image), counted from its first byte, or of the CRC
    after it (numbered on from there), flipped makes the entry pass; None if none does.
    A host crash that tears the last entry loses its end, the CRC with it (zeros), so a
    last entry one bit off is damage at rest, which reading on would drop though it was
    acknowledged (review 179). ``len(body) * 8`` CRCs, on a bad last entry only."""
    computed = zlib.crc32(body)
    if (stored ^ computed).bit_count() == 1:
        return len(body) * 8 + (stored ^ computed).bit_length() - 1
    image = bytearray(body)
    for i, byte in enumerate(image):
        for bit in range(8):
            image[i] = byte ^ (1 << bit)
            if zlib.crc32(image) == stored:
                return i * 8 + bit
        image[i] = byte
    return None
