"""A record type's layout, read off its msgspec fields (integers, integer enums and bytes of a
bounded length): the worst-case size of its MessagePack encoding (what sizes a ring's slots),
the bounds of its integer fields (what the codec's backstop checks) and a schema id of a
record set (what a ring's header carries, so a ring written by one build and read by another
with different records fails on attach)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import msgspec


def max_encoded_size(cls: type[msgspec.Struct]) -> int:
    """Worst-case MessagePack size of a ``cls`` record, from its fields' integer bounds."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    items = len(info.fields) + 1  # the tag is the first array element
    size = 1 if items <= 15 else 3  # fixarray or array16 header
    size += _int_size(0, int(cls.__struct_config__.tag))  # type: ignore[arg-type]
    for field in info.fields:
        bounds = _bounds(field.type)
        if bounds is not None:
            size += _int_size(*bounds)
        elif isinstance(field.type, msgspec.inspect.BytesType) and field.type.max_length:
            size += _bin_header(field.type.max_length) + field.type.max_length
        else:
            raise TypeError(f"record field type {field.type!r} has no fixed worst-case size")
    return size


def int_bounds(cls: type[msgspec.Struct]) -> list[tuple[str, int, int]]:
    """``cls``'s integer fields with their bounds (an enum's: its values' range)."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    out = []
    for field in info.fields:
        bounds = _bounds(field.type)
        if bounds is not None:
            out.append((field.name, *bounds))
    return out


def _bounds(t: msgspec.inspect.Type) -> tuple[int, int] | None:
    """(low, high) of an integer or integer enum field; None for any other type."""
    if isinstance(t, msgspec.inspect.IntType):
        low = t.ge if t.ge is not None else -(2**63)
        high = t.le if t.le is not None else 2**64 - 1
        return low, high
    if isinstance(t, msgspec.inspect.EnumType):
        values = [member.value for member in t.cls]
        return min(values), max(values)
    return None


def _int_size(low: int, high: int) -> int:
    if low >= -32 and high <= 127:
        return 1  # fixint
    if low >= -(2**7) and high <= 2**8 - 1:
        return 2
    if low >= -(2**15) and high <= 2**16 - 1:
        return 3
    if low >= -(2**31) and high <= 2**32 - 1:
        return 5
    return 9


def _bin_header(length: int) -> int:
    """The MessagePack bin header of ``length`` bytes: bin8, bin16 or bin32."""
    return 2 if length <= 2**8 - 1 else 3 if length <= 2**16 - 1 else 5


def schema_id(types: Sequence[type[msgspec.Struct]]) -> int:
    """A stable id of the record set's layout: names, tags, fields and their types, an enum's
    members and values with them, in a rendering of its own (``describe``), not msgspec's
    ``repr`` of its type objects, which a msgspec upgrade may change (a journal of the same
    layout refused) and which names an enum's class alone (a member renumbered went unseen)."""
    parts = []
    for cls in types:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        fields = ",".join(f"{f.name}:{describe(f.type)}" for f in info.fields)
        parts.append(f"{cls.__name__}={cls.__struct_config__.tag}({fields})")
    return zlib.crc32(";".join(parts).encode()) | 0x5245 << 32  # "RE" marks a records schema


def describe(t: msgspec.inspect.Type) -> str:
    """A record field's type as the schema id takes it: ``int[ge..le]`` (with ``gt``, ``lt``
    and ``multiple_of`` where set), ``Side{BUY=1,SELL=2}``, ``bytes[..36]``."""
    if isinstance(t, msgspec.inspect.IntType):
        extra = "".join(
            f",{name}={value}"
            for name, value in (("gt", t.gt), ("lt", t.lt), ("multiple_of", t.multiple_of))
            if value is not None
        )
        return f"int[{_end(t.ge)}..{_end(t.le)}{extra}]"
    if isinstance(t, msgspec.inspect.EnumType):
        members = ",".join(f"{m.name}={m.value!r}" for m in t.cls)
        return f"{t.cls.__name__}{{{members}}}"
    if isinstance(t, msgspec.inspect.BytesType):
        return f"bytes[{_end(t.min_length)}..{_end(t.max_length)}]"
    raise TypeError(f"record field type {t!r} has no layout a schema id describes")


def _end(bound: int | None) -> str:
    return "" if bound is None else str(bound)
