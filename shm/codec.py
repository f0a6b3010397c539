"""How items become fixed-size slots: the codec protocol and a ``struct``-based codec.

A slot is ``slot_size`` bytes; its last 8 bytes are the seqlock stamp, which the ring owns.
A codec writes the body *and* the stamp in one call (``encode_into``), because on this
interpreter the number of calls per record is the cost that matters, and ``struct.pack_into``
writes its fields in address order: the stamp, the last field, lands after the body
(the ordering argument is in ``shm/ring.py``).
"""

from __future__ import annotations

import mmap
import re
import struct
import textwrap
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, TypeVar

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

    def __init__(
        self, fmt: str, *, slot_size: int | None = None, schema_id: int | None = None
    ) -> None:
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
        # none given: one of the layout, so a ring of another format is a header mismatch
        if schema_id is None:
            schema_id = zlib.crc32(f"{fmt}/{slot_size}".encode()) & 0x7FFF_FFFF
        self.schema_id = schema_id
        self._packer = struct.Struct(f"<{fmt}{pad}xq")
        #: Packs a whole slot image for ``Producer.publish_slots``: ``pack(*fields, 0)``.
        self.slot_struct = self._packer
        self._unpacker = struct.Struct(f"<{fmt}{pad}x{STAMP_SIZE}x")
        self.fields = len(self._unpacker.unpack(bytes(slot_size)))
        codes = field_codes(fmt)
        self.encode_into, self.encode_window, self.encode_namespace = compile_encoders(
            self._packer.pack_into, self.fields, self.fmt, slot_size, codes
        )
        self.encode_source = struct_encode_source(self.fields, codes)
        self._unpack_from = self._unpacker.unpack_from
        self._iter_unpack = self._unpacker.iter_unpack

    @property
    def decode_from(self) -> Callable[[Buffer, int], tuple[Any, ...]]:
        return self._unpack_from

    def decode_window(self, view: memoryview, offset: int, count: int) -> list[tuple[Any, ...]]:
        return list(self._iter_unpack(view[offset : offset + count * self.slot_size]))


Encoder = Callable[[Buffer, int, Any, int], None]


_FIELD: Final = re.compile(r"(\d*)([xcbB?hHiIlLqQnNefdsp])")
_INT_BITS: Final = {"b": 8, "h": 16, "i": 32, "l": 32, "q": 64, "n": 64}


def field_codes(fmt: str) -> list[tuple[str, int]]:
    """(struct code, size for s/p) of each field of a standard-size, little-endian ``fmt``."""
    out: list[tuple[str, int]] = []
    for count, code in _FIELD.findall(fmt):
        n = int(count) if count else 1
        if code == "x":
            continue
        out += [(code, n)] if code in "sp" else [(code, 0)] * n
    return out


def misfit(codes: list[tuple[str, int]], item: Any) -> str:
    """Which field of ``item`` does not fit its code, with its value and the limit (for an
    error message; "" when none can be named)."""
    for k, ((code, size), value) in enumerate(zip(codes, item, strict=False)):
        if code.lower() in _INT_BITS and isinstance(value, int):
            bits = _INT_BITS[code.lower()]
            low, high = (
                (0, 2**bits - 1) if code.isupper() else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
            )
            if not low <= value <= high:
                return f"field {k} ({code!r}) is {value}, outside {low}..{high}"
        elif code in "sp" and isinstance(value, bytes | bytearray):
            room = _room(code, size)
            if len(value) > room:
                return f"field {k} ({size}{code!r}) is {len(value)} bytes, at most {room}"
        elif code in "efd" and isinstance(value, float):
            try:
                struct.pack("<" + code, value)
            except (OverflowError, struct.error) as exc:
                return f"field {k} ({code!r}) is {value!r}: {exc}"
    return ""


def _room(code: str, size: int) -> int:
    """The most bytes a ``Ns`` or ``Np`` field carries back whole: a Pascal string spends a
    byte on its length, which holds at most 255."""
    return min(size - 1, 255) if code == "p" else size


def _length_checks(codes: list[tuple[str, int]]) -> str:
    """Statements refusing a bytes field longer than its ``Ns`` (struct truncates it)."""
    return "".join(
        f"    if len(f{k}) > {_room(code, size)}:\n        raise ValueError('too long')\n"
        for k, (code, size) in enumerate(codes)
        if code in "sp"
    )


def struct_encode_source(fields: int, codes: list[tuple[str, int]] | None = None) -> str:
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
        f"{_length_checks(codes or [])}"
        f"    pack_into(buf, offset, {names}, stamp)\n"
        "except (struct.error, ValueError, TypeError, OverflowError) as exc:\n"
        "    why = misfit(codes, item) or str(exc)\n"
        "    raise EncodeError(f'item {item!r} does not fit {what!r}: {why}') from None\n"
    )


def compile_encoders(
    pack_into: Callable[..., None],
    fields: int,
    what: str,
    slot_size: int,
    codes: list[tuple[str, int]] | None = None,
) -> tuple[Encoder, Encoder, dict[str, Any]]:
    """``encode_into(buf, offset, item, stamp)``, ``encode_window(buf, offset, items, stamp)``
    and the namespace their source needs, for tuples of ``fields`` values. The window form
    unpacks in the ``for`` target: one Python frame per batch."""
    names = ", ".join(f"f{i}" for i in range(fields))
    codes = codes or []
    body = textwrap.indent(struct_encode_source(fields, codes), "    ")
    checks = textwrap.indent(_length_checks(codes), "        ")
    source = f"""
def encode_into(buf, offset, item, stamp):
{body}

def encode_window(buf, offset, items, stamp):
    start = offset
    try:
        for {names}, in items:
{checks}            pack_into(buf, offset, {names}, stamp)
            offset += {slot_size}
    except (struct.error, ValueError, TypeError, OverflowError) as exc:
        k = (offset - start) // {slot_size}
        why = misfit(codes, items[k]) or str(exc)
        raise EncodeError(
            f"item {{k}} of the window, {{items[k]!r}}, does not fit {{what!r}}: {{why}}", k
        ) from None
"""
    namespace: dict[str, Any] = {
        "pack_into": pack_into,
        "struct": struct,
        "what": what,
        "codes": codes,
        "misfit": misfit,
        "EncodeError": EncodeError,
    }
    exec(source, namespace)  # the generated source is the fixed template above
    return namespace["encode_into"], namespace["encode_window"], namespace
