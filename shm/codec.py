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
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from shm.errors import EncodeError
from shm.header import STAMP_SIZE

T = TypeVar("T")

#: What a slot is read from or written to: the ring's mmap or a view of it.
Buffer = mmap.mmap | memoryview | bytearray | bytes


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

    def encode_window(self, buf: Buffer, offset: int, items: Sequence[T], stamp: int) -> None:
        """Encode ``items`` into consecutive slots from ``offset``, all with ``stamp`` (a window
        never crosses the end of the buffer, so all its slots are on one lap). One call per
        window is what makes batched publishing cheap."""
        ...

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
        #: Packs a whole slot image for ``Producer.publish_slots``: ``pack(*fields, 0)``.
        self.slot_struct = self._packer
        self._unpacker = struct.Struct(f"<{fmt}{pad}x{STAMP_SIZE}x")
        self.fields = len(self._unpacker.unpack(bytes(slot_size)))
        self.encode_into, self.encode_window, self.encode_namespace = compile_encoders(
            self._packer.pack_into, self.fields, self.fmt, slot_size
        )
        self.encode_source = struct_encode_source(self.fields)
        self._unpack_from = self._unpacker.unpack_from
        self._iter_unpack = self._unpacker.iter_unpack

    @property
    def decode_from(self) -> Callable[[Buffer, int], tuple[Any, ...]]:
        return self._unpack_from

    def decode_window(self, view: memoryview, offset: int, count: int) -> list[tuple[Any, ...]]:
        return list(self._iter_unpack(view[offset : offset + count * self.slot_size]))


Encoder = Callable[[Buffer, int, Any, int], None]


def struct_encode_source(fields: int) -> str:
    """The statement that writes tuple ``item`` into ``buf`` at ``offset`` with ``stamp``.

    A codec may expose such a statement (``encode_source`` with ``encode_namespace``) so that
    ``Producer`` compiles it inline into ``publish``: one Python frame per record instead of
    two. Generated rather than written as ``pack_into(buf, offset, *item, stamp)``: a star-call
    with leading arguments builds a fresh argument tuple and costs about as much as the packing
    itself (measured 470 ns against 210 ns positional).
    """
    names = ", ".join(f"f{i}" for i in range(fields))
    return (
        "try:\n"
        f"    {names}, = item\n"
        f"    pack_into(buf, offset, {names}, stamp)\n"
        "except (struct.error, ValueError, TypeError) as exc:\n"
        "    raise EncodeError(f'item {item!r} does not fit {what!r}: {exc}') from None\n"
    )


def compile_encoders(
    pack_into: Callable[..., None], fields: int, what: str, slot_size: int
) -> tuple[Encoder, Encoder, dict[str, Any]]:
    """``encode_into(buf, offset, item, stamp)``, ``encode_window(buf, offset, items, stamp)``
    and the namespace their source needs, for tuples of ``fields`` values. The window form
    unpacks in the ``for`` target: one Python frame per batch."""
    names = ", ".join(f"f{i}" for i in range(fields))
    body = textwrap.indent(struct_encode_source(fields), "    ")
    source = f"""
def encode_into(buf, offset, item, stamp):
{body}

def encode_window(buf, offset, items, stamp):
    start = offset
    try:
        for {names}, in items:
            pack_into(buf, offset, {names}, stamp)
            offset += {slot_size}
    except (struct.error, ValueError, TypeError) as exc:
        k = (offset - start) // {slot_size}
        raise EncodeError(
            f"item {{k}} of the window, {{items[k]!r}}, does not fit {{what!r}}: {{exc}}", k
        ) from None
"""
    namespace: dict[str, Any] = {
        "pack_into": pack_into,
        "struct": struct,
        "what": what,
        "EncodeError": EncodeError,
    }
    exec(source, namespace)  # the generated source is the fixed template above
    return namespace["encode_into"], namespace["encode_window"], namespace
