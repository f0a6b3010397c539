"""Errors raised by the shared-memory substrate; each message carries the values involved."""

from __future__ import annotations

import weakref
from typing import TypeVar

T = TypeVar("T")


class ShmError(Exception):
    """Base class for every error raised by ``shm``."""


class ShmPermissionError(ShmError):
    """A segment this user may not open: another user's instance (its mode is 0600)."""


class HeaderMismatchError(ShmError):
    """An attached segment's header differs from what the caller expects (names both values)."""

    def __init__(self, name: str, field: str, expected: object, found: object) -> None:
        super().__init__(f"segment {name!r}: header {field} is {found!r}, expected {expected!r}")
        self.name = name
        self.field = field
        self.expected = expected
        self.found = found


class EncodeError(ValueError):
    """An item does not fit its slot layout. ``published`` items before it in the same window
    were written and stamped, so the producer publishes them (a window is ordered, not
    atomic)."""

    def __init__(self, message: str, published: int = 0) -> None:
        super().__init__(message)
        self.published = published


class RingError(ShmError):
    """Misuse of a ring: a second producer, an unknown consumer index (bad geometry is a
    ``ValueError`` of ``Geometry.validate``, naming the value)."""


class RingFullError(RingError):
    """Raised by a bounded wait when the slowest consumer does not free a slot in time."""


class TornReadError(RingError):
    """A slot changed while it was being read: the reader was lapped (it had been detached)."""


class ConsumerDetachedError(RingError):
    """The consumer was detached (by a supervisor) and may have been lapped by the producer."""


def alive(ref: weakref.ref[T], role: str) -> T:
    """The handle behind a compiled hot path (``publish``, ``poll``), whose slow path needs
    it; a RingError, before anything is published or read, when it was let go while the
    function was kept (the closure holds it weakly: no cycle)."""
    handle = ref()
    if handle is None:
        raise RingError(f"this {role} was let go: keep the {role} while its functions are used")
    return handle
