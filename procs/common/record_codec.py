"""The records' fixed-size slot codec (``RecordCodec``): a record (``records.py``) is
stored as msgspec MessagePack behind a 2-byte length, padded to the ring's slot size, whose
last 8 bytes are the ring's seqlock stamp:

    | u16 length | msgpack [tag, field, field, ...] | zero padding | stamp (ring's) |

Why MessagePack and not a ``struct`` layout derived from the fields: measured with
``python -m tests.bench.bench_records --rounds 15`` on the 2-core development VM (Python
3.11.7, medians of 15 rounds of 30k calls; these machines swing up to 2x between runs, so read
the columns against each other):

    record      struct enc  msgpack enc  struct dec*  struct raw  msgpack dec  bytes s/m
    NewOrder      964 ns      847 ns      1327 ns      850 ns      1545 ns       88/43
    Trade         863 ns      760 ns      1352 ns      476 ns      1517 ns       98/47
    BookLevel     722 ns      648 ns       568 ns      661 ns      1199 ns       42/25

    struct dec* = unpack_from + msgspec.convert, which validates like msgpack does;
    struct raw  = unpack_from + the constructor, which validates nothing.

MessagePack encodes ~10% faster; a validated struct decode is 10-50% faster than our msgpack
decode (which pays ~300 ns for slicing and parsing from a buffer). We still store MessagePack,
because only it can refuse garbage without a checksum: a struct layout with a valid tag byte
turns any 88 bytes into *some* NewOrder, while random bytes essentially never parse as a
MessagePack array of the right length, tag and bounded integers. A short, oversized or garbage
slot therefore becomes ``RecordDecodeError`` naming the field and value, never a wrong record
(the hypothesis and garbage tests in ``tests/unit/common/test_records.py``). Revisit if a
profile of the matcher shows record decoding dominating. Slots are sized for the worst case of
the largest record in the ring, from the field bounds (an ``int`` field takes at most 9 bytes).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from typing import Any, Final, Union

import msgspec

from procs.common.record_layout import int_bounds, max_encoded_size, schema_id
from procs.common.records import JOURNALED_TYPES, RECORD_TYPES, Record
from shm.codec import Buffer
from shm.errors import EncodeError
from shm.header import STAMP_SIZE


class RecordDecodeError(ValueError):
    """A slot does not hold a valid record; the message says where and why."""


_LENGTH = struct.Struct("<H")
_LENGTH_SIZE: Final = _LENGTH.size


#: MessagePack's uint64 marker followed by a byte with the top bit set: a value of 2**63 or
#: more, past every record field's int64 bound (a data byte can match too: then the fields
#: are checked one by one).
_UINT64_PAST_INT64: Final = re.compile(rb"\xcf[\x80-\xff]")


#: A slot image's bytes besides its record: the length before it, the stamp last.
SLOT_FRAMING: Final = _LENGTH_SIZE + STAMP_SIZE
#: The slot sizes of earlier builds: 128 until 2026-11-27 (``NewOrder.client_id`` made 152).
#: What checks a CRC an earlier build took of an image re-frames the image to each of them.
EARLIER_SLOT_SIZES: Final = (128,)


def reframe_slot(image: bytes | memoryview, slot_size: int) -> bytes | None:
    """``image``, a slot image of another size, as a ``slot_size`` one: its length and record
    kept, zero padding and a zero stamp after them (a journal's stamps are zero). None when
    its record does not fit a ``slot_size`` slot, or its length says more than it holds.
    What reads a journal or an order log that a build of another slot size wrote (a field
    added to an event grows every slot) takes its commands this way."""
    length = image[0] | image[1] << 8 if len(image) >= _LENGTH_SIZE else 0
    end = _LENGTH_SIZE + length
    if length <= 0 or end + STAMP_SIZE > min(len(image), slot_size):
        return None
    return bytes(image[:end]) + bytes(slot_size - end)


class RecordCodec:
    """Slot codec (``shm.codec.SlotCodec``) for a set of record types.

    ``slot_size`` defaults to the smallest multiple of 8 that holds the length prefix, the
    largest record's worst case and the stamp.
    """

    def __init__(
        self, types: Sequence[type[Record]] = RECORD_TYPES, *, slot_size: int | None = None
    ) -> None:
        self.types = tuple(types)
        self.max_body = max(max_encoded_size(cls) for cls in self.types)
        need = _LENGTH_SIZE + self.max_body + STAMP_SIZE
        if slot_size is None:
            slot_size = -(-need // 8) * 8
        if slot_size < need:
            raise ValueError(
                f"slot_size {slot_size} cannot hold the largest record: it needs {need} bytes"
            )
        self.slot_size = slot_size
        self.schema_id = schema_id(self.types)
        #: what a journal of this codec's records records: its commands' layout alone
        self.journal_schema_id = schema_id([t for t in self.types if t in JOURNALED_TYPES])
        self.capacity_body = slot_size - _LENGTH_SIZE - STAMP_SIZE
        self._encoder = msgspec.msgpack.Encoder()
        self._bounds = {cls: int_bounds(cls) for cls in self.types}
        #: the type a record of this codec decodes as (a union of ``types``, or the one)
        self.union: Any = Union[self.types] if len(self.types) > 1 else self.types[0]  # noqa: UP007
        self._decoder: msgspec.msgpack.Decoder[Record] = msgspec.msgpack.Decoder(self.union)
        self._decode = self._decoder.decode
        # One struct per body length: length, body, padding and stamp in a single pack_into.
        self._packers = [
            struct.Struct(f"<H{n}s{slot_size - _LENGTH_SIZE - n - STAMP_SIZE}xq").pack_into
            for n in range(self.capacity_body + 1)
        ]
        self._images = [
            struct.Struct(f"<H{n}s{slot_size - _LENGTH_SIZE - n}x").pack
            for n in range(self.capacity_body + 1)
        ]

    # -- SlotCodec -----------------------------------------------------------------------

    def encode_into(self, buf: Buffer, offset: int, item: Record, stamp: int) -> None:
        try:
            body = self._encoder.encode(item)
        except OverflowError:
            raise EncodeError(self.out_of_bounds(item) or f"{item!r} does not encode") from None
        try:
            self._packers[len(body)](buf, offset, len(body), body, stamp)
        except IndexError:
            raise EncodeError(
                f"{type(item).__name__} encodes to {len(body)} bytes, slot holds "
                f"{self.capacity_body} (slot_size={self.slot_size})"
            ) from None

    def encode_window(self, buf: Buffer, offset: int, items: Sequence[Record], stamp: int) -> None:
        """``encode_into`` of each item, a slot apart, inlined: one Python frame a window
        rather than one a record (~25% of an encode; every batch a process publishes). An
        item that does not fit takes ``encode_into`` again, which says why."""
        encode, packers, slot = self._encoder.encode, self._packers, self.slot_size
        first = offset
        try:
            for item in items:
                body = encode(item)
                n = len(body)
                packers[n](buf, offset, n, body, stamp)
                offset += slot
        except (OverflowError, IndexError):
            k = (offset - first) // slot  # the item that failed
            try:
                self.encode_into(buf, offset, items[k], stamp)
            except EncodeError as exc:
                raise EncodeError(f"item {k} of the window: {exc}", k) from None
            raise

    def decode_from(self, buf: Buffer, offset: int) -> Record:
        # Two byte loads are cheaper than a struct call; a memoryview slice is zero-copy (the
        # ring hands its consumers a memoryview); msgspec validates while it parses.
        length = buf[offset] | buf[offset + 1] << 8
        if 0 < length <= self.capacity_body:
            start = offset + _LENGTH_SIZE
            try:
                return self._decode(buf[start : start + length])
            except msgspec.MsgspecError as exc:
                raise RecordDecodeError(self._explain(exc, buf, start, length)) from None
        raise RecordDecodeError(
            f"slot at offset {offset} declares a {length}-byte record; a slot of "
            f"{self.slot_size} bytes holds 1..{self.capacity_body}"
        )

    def decode_window(self, view: memoryview, offset: int, count: int) -> list[Record]:
        """``decode_from`` of ``count`` slots, inlined (~20% of a decode: every batch a
        process reads); a slot that does not decode takes ``decode_from`` again, which
        raises ``RecordDecodeError`` saying why."""
        decode, capacity, slot = self._decode, self.capacity_body, self.slot_size
        out: list[Record] = []
        append = out.append
        first = start = offset + _LENGTH_SIZE
        try:
            for start in range(first, first + count * slot, slot):
                length = view[start - 2] | view[start - 1] << 8
                if not 0 < length <= capacity:
                    break
                append(decode(view[start : start + length]))
            else:
                return out
        except msgspec.MsgspecError:
            pass
        self.decode_from(view, start - _LENGTH_SIZE)  # raises, naming the fault
        raise AssertionError("decode_from took a slot the window refused")  # pragma: no cover

    # -- whole slots (journals, tests, tools) -------------------------------------------------

    def encode_slot(self, item: Record) -> bytes:
        """The slot image of ``item`` with a zero stamp (what ``Producer.publish_slots`` takes)."""
        try:
            body = self._encoder.encode(item)
        except OverflowError:
            raise EncodeError(self.out_of_bounds(item) or f"{item!r} does not encode") from None
        if len(body) > self.capacity_body:
            raise EncodeError(
                f"{type(item).__name__} encodes to {len(body)} bytes, slot holds "
                f"{self.capacity_body}"
            )
        return self._images[len(body)](len(body), body)

    def encode_slots(self, items: Sequence[Record]) -> bytes:
        """The slot images of ``items``, joined: the journal's path, which also refuses a
        field of 2**63 or more (naming it; one scan of the whole batch) rather than journal
        a slot no reader decodes. Narrower bounds are not checked here: what the router
        journals it decoded from a gateway's ring (the typed decode checks every bound) or
        set itself (seq, ts, order id, a market buy's cap: int64 by construction); the
        edges check every client value."""
        images = b"".join(map(self.encode_slot, items))
        for match in _UINT64_PAST_INT64.finditer(images):  # a data byte can match too
            why = self.out_of_bounds(items[match.start() // self.slot_size])
            if why:
                raise EncodeError(why)
        return images

    def decode_slot(self, data: bytes | bytearray | memoryview) -> Record:
        """Decode one whole slot image (a byte buffer), refusing any other length. The hot
        path of a replay: the length check and the body's bounds inline (wrapping the image
        in a memoryview to measure it cost as much as the decode)."""
        if len(data) != self.slot_size:
            raise RecordDecodeError(f"slot is {len(data)} bytes, expected exactly {self.slot_size}")
        length = data[0] | data[1] << 8
        if 0 < length <= self.capacity_body:
            try:
                return self._decode(data[_LENGTH_SIZE : _LENGTH_SIZE + length])
            except msgspec.MsgspecError:
                pass  # decode_from explains it
        return self.decode_from(data, 0)

    def out_of_bounds(self, item: Record) -> str:
        """The first field of ``item`` outside its type's bounds, as an error text; ""."""
        for name, low, high in self._bounds[type(item)]:
            value = getattr(item, name)
            if not low <= value <= high:
                return f"{type(item).__name__}.{name}={value} is outside {low}..{high}"
        return ""

    def _explain(self, exc: msgspec.MsgspecError, buf: Buffer, start: int, length: int) -> str:
        """Name the field behind msgspec's ``$[k]`` path, and show the offending bytes."""
        message = str(exc)
        tag: Any = None
        try:
            raw = msgspec.msgpack.decode(memoryview(buf)[start : start + length])
            tag = raw[0] if isinstance(raw, list) and raw else None
        except (msgspec.MsgspecError, ValueError):  # garbage: strings that are not UTF-8, ...
            raw = None
        cls = next((c for c in self.types if c.__struct_config__.tag == tag), None)
        if cls is not None and "$[" in message:
            index = int(message.rsplit("$[", 1)[1].split("]", 1)[0])
            if 1 <= index <= len(cls.__struct_fields__):
                name = cls.__struct_fields__[index - 1]
                value = raw[index] if isinstance(raw, list) and index < len(raw) else "?"
                return f"{cls.__name__}.{name}={value!r}: {message}"
        preview = bytes(memoryview(buf)[start : start + min(length, 16)]).hex()
        return f"{length}-byte record {preview}...: {message}"
