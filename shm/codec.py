"""How items become fixed-size slots: the codec protocol and a ``struct``-based codec.

A slot is ``slot_size`` bytes; its last 8 bytes are the seqlock stamp, which the ring owns.
A codec writes the body *and* the stamp in one call (``encode_into``), because on this
interpreter the number of calls per record is the cost that matters, and ``struct.pack_into``
writes its fields in address order: the stamp, the last field, lands after the body
(the ordering argument is in ``shm/ring.py``).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from shm.header import STAMP_SIZE

T = TypeVar("T")

#: What a slot is read from or written to: the ring's mmap or a view of it.
Buffer = mmap.mmap | memoryview | bytearray


class SlotCodec(Protocol[T]):
    """Encodes items of type ``T`` into slots and back. Stateless; shared by both sides.

    ``encode_into`` must write the stamp (a positive int64) into the slot's last 8 bytes, after
    (at higher addresses than) everything else it writes. ``decode_from`` reads one slot body;
    ``decode_window`` reads ``count`` consecutive slots and returns their items in order.
    Either raises ``ValueError`` naming the field and value for an item that does not fit.
    """

    slot_size: int
    schema_id: int

    def encode_into(self, buf: Buffer, offset: int, item: T, stamp: int) -> None: ...

    @property
    def decode_from(self) -> Callable[[Buffer, int], T]: ...

    def decode_window(self, view: memoryview, offset: int, count: int) -> list[T]: ...


class StructCodec:
    """Tuples of plain fields laid out by a ``struct`` format (little-endian, no alignment).

    ``fmt`` describes the body only (for example ``"8q"``); the codec pads it to ``slot_size``
    (default: the smallest multiple of 8 that holds body and stamp).
    """

    def __init__(self, fmt: str, *, slot_size: int | None = None, schema_id: int = 0) -> None:
        body = struct.calcsize("<" + fmt)
        need = body + STAMP_SIZE
        if slot_size is None:
            slot_size = -(-need // 8) * 8
        if slot_size < need:
            raise ValueError(
                f"format {fmt!r} needs {need} bytes with its stamp, slot_size is {slot_size}"
            )
        pad = slot_size - need
        self.fmt = fmt
        self.slot_size = slot_size
        self.schema_id = schema_id
        self._packer = struct.Struct(f"<{fmt}{pad}xq")
        self._unpacker = struct.Struct(f"<{fmt}{pad}x{STAMP_SIZE}x")
        self.pack_into = self._packer.pack_into  # pack_into(buf, off, *fields, stamp)
        self._unpack_from = self._unpacker.unpack_from
        self._iter_unpack = self._unpacker.iter_unpack

    def encode_into(self, buf: Buffer, offset: int, item: Sequence[Any], stamp: int) -> None:
        try:
            self.pack_into(buf, offset, *item, stamp)
        except struct.error as exc:
            raise ValueError(f"item {item!r} does not fit format {self.fmt!r}: {exc}") from None

    @property
    def decode_from(self) -> Callable[[Buffer, int], tuple[Any, ...]]:
        return self._unpack_from

    def decode_window(self, view: memoryview, offset: int, count: int) -> list[tuple[Any, ...]]:
        return list(self._iter_unpack(view[offset : offset + count * self.slot_size]))
