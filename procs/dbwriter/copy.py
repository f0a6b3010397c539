"""PostgreSQL binary COPY rows of fixed-width columns, packed with one ``struct`` call a row.

psycopg's ``Copy.write_row`` adapts value by value (several microseconds a row); the hot
tables (trades, orders) hold only integers and timestamps, so a row is one precompiled
``struct.pack`` of (field count, then length and value per field) into a growing buffer, and a
flush hands the whole buffer to ``Copy.write``. Tables with numerics (balances, candles) are few
rows a batch and go through ``write_row``.

Binary COPY format: the 19-byte signature and header, then per row a big-endian i16 field
count and per field an i32 length and the value (int2/int4/int8 big-endian; timestamptz is
int8 microseconds since 2000-01-01 UTC; text its bytes, here ASCII), then an i16 -1 trailer.
A layout may end in one ``text`` column (the orders' client id): its rows are then of varying
width, which ``BinaryRows`` takes and ``GroupedRows`` (whose rows are found by width) does not.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from collections.abc import Callable, Collection, Sequence
from typing import Final, cast

HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER: Final = struct.pack(">h", -1)
#: Microseconds from 1970-01-01 to 2000-01-01, the PostgreSQL epoch.
PG_EPOCH_US: Final = 946_684_800_000_000

_LENGTH: Final = struct.Struct(">i")
_WIDTH: Final = {"int2": ("h", 2), "int4": ("i", 4), "int8": ("q", 8), "timestamptz": ("q", 8)}


def pg_micros(ts_ns: int) -> int:
    """A ``timestamptz`` binary value: microseconds since 2000-01-01 UTC (truncated)."""
    return ts_ns // 1000 - PG_EPOCH_US


class RowLayout:
    """The columns of one table in COPY order, each ``int2``, ``int4``, ``int8`` or
    ``timestamptz`` (pass timestamps through ``pg_micros``), the last one maybe ``text``
    (its value ``bytes``: the layout's rows are then of varying width, ``fixed`` False)."""

    def __init__(self, table: str, columns: Sequence[tuple[str, str]]) -> None:
        fixed = list(columns[:-1]) + ([] if columns[-1][1] == "text" else [columns[-1]])
        unknown = [f"{name}:{kind}" for name, kind in fixed if kind not in _WIDTH]
        if unknown:
            raise ValueError(
                f"{table}: column types {unknown} are not fixed-width integers (only the last "
                "column may be text)"
            )
        self.table = table
        self.names = tuple(name for name, _ in columns)
        self.types = tuple(kind for _, kind in columns)
        self.fixed = len(fixed) == len(columns)
        fmt = ">h" + "".join(f"i{_WIDTH[kind][0]}" for _, kind in fixed)
        self.row = struct.Struct(fmt)  # the fixed-width part: the whole row where ``fixed``
        # pack(values) interleaves the constant lengths: a generated call, one per layout,
        # so no per-row tuple building (a row of 11 int8 costs ~1 us).
        args = ", ".join(f"{_WIDTH[k][1]}, v[{i}]" for i, (_, k) in enumerate(fixed))
        text = "" if self.fixed else f" + _length(len(v[{len(fixed)}])) + v[{len(fixed)}]"
        namespace: dict[str, object] = {"_pack": self.row.pack, "_length": _LENGTH.pack}
        exec(f"def pack(v):\n    return _pack({len(columns)}, {args}){text}\n", namespace)
        self.pack = cast(Callable[[Sequence[int | bytes]], bytes], namespace["pack"])

    @property
    def column_list(self) -> str:
        return ", ".join(self.names)


class BinaryRows:
    """A buffer of packed rows for one layout; ``payload()`` is a complete COPY stream."""

    __slots__ = ("buf", "count", "layout")

    def __init__(self, layout: RowLayout) -> None:
        self.layout = layout
        self.buf = bytearray()
        self.count = 0

    def add(self, values: Sequence[int | bytes]) -> None:
        self.buf += self.layout.pack(values)
        self.count += 1

    def payload(self) -> bytes:
        return HEADER + bytes(self.buf) + TRAILER

    def clear(self) -> None:
        self.buf.clear()
        self.count = 0


class GroupedRows:
    """Packed rows of one layout, grouped by a key (the trades: by symbol), each group's in seq
    order, so that a COPY stream can be cut out for any set of keys and from any seq on: a
    writer's lane sends its symbols' rows after its own checkpoint (``store.py``). Rows are
    fixed-width, so a seq's row is found by bisecting the group's seqs, without unpacking."""

    __slots__ = ("count", "groups", "layout")

    def __init__(self, layout: RowLayout) -> None:
        if not layout.fixed:
            raise ValueError(f"{layout.table}: grouped rows must be of fixed width")
        self.layout = layout
        self.groups: dict[int, tuple[bytearray, array[int]]] = {}
        self.count = 0

    def add(self, key: int, seq: int, values: Sequence[int]) -> None:
        """A row of group ``key``, made by command ``seq`` (not below the group's last)."""
        self.add_row(key, seq, self.layout.pack(values))

    def add_row(self, key: int, seq: int, row: bytes) -> None:
        """``add`` of a row already packed (``layout.pack`` or its equal)."""
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = (bytearray(), array("q"))
        group[0].extend(row)
        group[1].append(seq)
        self.count += 1

    def payload(self, keys: Collection[int], after_seq: int = 0) -> tuple[bytes, int]:
        """A complete COPY stream of the rows of ``keys`` made after ``after_seq``, and how
        many rows it holds."""
        width = self.layout.row.size
        parts: list[bytes | bytearray] = [HEADER]
        rows = 0
        for key in keys:
            group = self.groups.get(key)
            if group is None:
                continue
            buf, seqs = group
            start = bisect_right(seqs, after_seq) if after_seq else 0
            if start < len(seqs):
                parts.append(buf[start * width :] if start else buf)
                rows += len(seqs) - start
        parts.append(TRAILER)
        return b"".join(parts), rows
