"""A named page of unsigned 64-bit counters: one process writes them, any process reads them.

What a metrics scrape reads without asking the writer anything: the writer stores plain words
(an aligned 8-byte store is atomic on x86-64; a reader sees each counter whole, possibly one
batch older than its neighbour), the reader maps the page read-only in spirit and copies.

Layout: ``magic(8) | count u32 | pad u32 | count x 32-byte NUL-padded names | count x u64``.
``open`` (the writer) keeps an existing page whose names match, so counters continue across a
restart of the writer; a page with other names is replaced. ``attach`` (a reader) validates
the magic and takes the names from the page.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from shm import header as h
from shm.errors import ShmError
from shm.region import Region

MAGIC: Final = b"RGXCNT01"
_HEAD: Final = struct.Struct("<8sII")
NAME_BYTES: Final = 32


def _is_other(instance: str, name: str) -> bool:
    """Whether ``name`` is a live segment of another kind: a ring (its header's magic)."""
    head = Region.peek(instance, name)
    return head is not None and head[: len(h.MAGIC)] == h.MAGIC


def _check_page(posix_name: str, size: int, head: bytes) -> None:
    """Refuse a segment that is not a whole counter page, from its size and first bytes."""
    if size < _HEAD.size:
        raise ShmError(
            f"segment {posix_name!r} of {size} bytes is not a counter page "
            f"(its header alone is {_HEAD.size})"
        )
    magic, count, _pad = _HEAD.unpack_from(head, 0)
    if magic != MAGIC:
        raise ShmError(f"segment {posix_name!r} is not a counter page (magic {magic!r})")
    if size != _size(count):
        raise ShmError(
            f"counter page {posix_name!r}: {count} counters need {_size(count)} "
            f"bytes, the segment has {size}"
        )


def _name(posix_name: str, table: bytes, k: int) -> str:
    raw = table[k * NAME_BYTES : (k + 1) * NAME_BYTES].rstrip(b"\0")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ShmError(
            f"counter page {posix_name!r}: counter {k} name {raw!r} is not UTF-8"
        ) from None


def _size(count: int) -> int:
    return _HEAD.size + count * NAME_BYTES + count * 8


class Counters:
    """``values[i]`` is counter ``names[i]``; ``index(name)`` finds i."""

    def __init__(self, region: Region) -> None:
        _check_page(region.posix_name, region.size, region.buf[: _HEAD.size])
        _magic, count, _pad = _HEAD.unpack_from(region.buf, 0)
        self.region = region
        table = bytes(region.buf[_HEAD.size : _HEAD.size + count * NAME_BYTES])
        self.names = tuple(_name(region.posix_name, table, k) for k in range(count))
        start = _HEAD.size + count * NAME_BYTES
        self.values = memoryview(region.buf)[start : start + count * 8].cast("Q")
        self._index = {name: k for k, name in enumerate(self.names)}

    @classmethod
    def open(cls, instance: str, name: str, names: Sequence[str]) -> Counters:
        """The writer's page: the existing one if it has exactly ``names``, else a new one."""
        for counter in names:
            if not 0 < len(counter.encode()) <= NAME_BYTES:
                raise ValueError(f"counter name {counter!r} is not 1..{NAME_BYTES} bytes")
            if "\0" in counter:  # the table pads with NULs: it would not read back
                raise ValueError(f"counter name {counter!r} holds a NUL byte")
        if len(set(names)) != len(names):  # ``read`` is by name: one would be lost
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"counter names {twice!r} are given more than once")
        try:
            found = cls.attach(instance, name)
        except ShmError:
            found = None
        if found is not None:
            if found.names == tuple(names):
                return found
            found.close()
        elif _is_other(instance, name):
            raise ShmError(
                f"segment {name!r} of instance {instance!r} exists and is not a counter page "
                "(a ring?): not replaced"
            )
        region = Region.create(instance, name, _size(len(names)), replace=True)
        for k, counter in enumerate(names):
            at = _HEAD.size + k * NAME_BYTES
            region.buf[at : at + NAME_BYTES] = counter.encode().ljust(NAME_BYTES, b"\0")
        _HEAD.pack_into(region.buf, 0, MAGIC, len(names), 0)  # last: a reader sees it whole
        return cls(region)

    @classmethod
    def attach(cls, instance: str, name: str) -> Counters:
        region = Region.attach(instance, name, _check_page)  # checked before it is mapped
        try:
            return cls(region)
        except ShmError:
            region.close()
            raise

    @classmethod
    def peek(cls, instance: str, name: str, counter: str) -> int | None:
        """Counter ``counter`` of page ``name`` now: None while there is no such page (its
        writer has not made it) or no such counter on it."""
        try:
            page = cls.attach(instance, name)
        except ShmError:
            return None
        try:
            return page.read().get(counter)
        finally:
            page.close()

    @classmethod
    def zero(cls, instance: str, name: str, counter: str) -> None:
        """Set counter ``counter`` of page ``name`` to 0 where both exist: what a writer's
        earlier run left (its page outlives it) read as this run's otherwise."""
        try:
            page = cls.attach(instance, name)
        except ShmError:
            return
        try:
            page.values[page.index(counter)] = 0
        except ShmError:  # no such counter on it
            pass
        finally:
            page.close()

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise ShmError(f"no counter {name!r} on {self.region.posix_name!r}") from None

    def read(self) -> dict[str, int]:
        """Every counter, copied."""
        return dict(zip(self.names, self.values.tolist(), strict=True))

    def close(self) -> None:
        self.values.release()
        self.region.close()
