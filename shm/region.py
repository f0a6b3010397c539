"""A named shared-memory segment (posix_ipc + mmap): create, attach, close, unlink.

Names carry an instance prefix, ``/ringex.<instance>.<name>``, so two ringex instances on one
host (a test run beside a dev pipeline, a primary beside its standby) never share a segment.
The same prefix names the segment's semaphores, which is how ``shm.inspect`` finds and removes
everything a crashed instance left behind.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
from collections.abc import Callable
from typing import Final

import posix_ipc

from shm.errors import HeaderMismatchError, ShmError, ShmPermissionError

PREFIX: Final = "ringex"
_POPULATE: Final = getattr(mmap, "MAP_POPULATE", 0)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,48}")
#: What ``attach`` reads of a segment for its caller's check, before mapping it: any header's
#: fixed part.
HEAD_BYTES: Final = 4096

#: ``check(posix_name, size, head)``: refuses (raises) a segment from its size and first bytes.
Check = Callable[[str, int, bytes], None]


def segment_name(instance: str, name: str) -> str:
    """The POSIX name of segment ``name`` of ``instance``; both parts are checked."""
    for what, value in (("instance", instance), ("name", name)):
        if not _TOKEN.fullmatch(value):
            raise ValueError(f"{what} {value!r} must be 1..48 of [A-Za-z0-9_-]")
    return f"/{PREFIX}.{instance}.{name}"


class Region:
    """One mapped segment. ``buf`` is the mmap; ``words`` views it as aligned int64 words.

    Close a region only after every ``memoryview`` taken from ``buf`` has been released.
    """

    __slots__ = ("buf", "name", "posix_name", "size", "words")

    def __init__(self, posix_name: str, name: str, size: int, buf: mmap.mmap) -> None:
        self.posix_name = posix_name
        self.name = name
        self.size = size
        self.buf = buf
        self.words = memoryview(buf).cast("q")

    @classmethod
    def create(
        cls, instance: str, name: str, size: int, *, replace: bool = False, head: bytes = b""
    ) -> Region:
        """Create a zero-filled segment of ``size`` bytes; an existing one is an error unless
        ``replace`` (then it is unlinked first: attached processes keep the old mapping).
        ``head`` is written at its start first, before its pages are allocated and mapped
        (milliseconds for a ring of the dev profile's size, seconds for the largest): a
        ring's creator names itself there, so that ``shm.inspect`` never takes a segment
        being made for a dead instance's, to remove (a review, 2026-12-03: ``shm rm --stale``
        removed one under its creator, which then ran on a ring no process could attach)."""
        if size <= 0 or size % 8:
            raise ValueError(f"size {size} must be a positive multiple of 8")
        posix_name = segment_name(instance, name)
        if replace:
            _unlink_quietly(posix_name)
        try:
            mem = posix_ipc.SharedMemory(posix_name, posix_ipc.O_CREX, size=size)
        except posix_ipc.ExistentialError as exc:
            raise ShmError(
                f"segment {posix_name!r} already exists (a running instance, or a stale one: "
                f"`ringex shm rm --instance {instance}`)"
            ) from exc
        try:
            if head:
                os.pwrite(mem.fd, head, 0)
            _reserve(mem, posix_name)
            return cls._map(mem, posix_name, name)
        except BaseException:
            _unlink_quietly(posix_name)  # nothing half-made left behind to block a retry
            raise

    @classmethod
    def attach(cls, instance: str, name: str, check: Check | None = None) -> Region:
        """Map an existing segment. ``check``, given its size and first ``HEAD_BYTES`` (fewer
        if it is smaller) before anything is mapped, may raise to refuse it: the map faults in
        every page, so a segment of a foreign size (sparse, as large as its maker liked) must
        be refused from its header, not after its whole size was allocated."""
        posix_name = segment_name(instance, name)
        try:
            mem = posix_ipc.SharedMemory(posix_name)
        except posix_ipc.ExistentialError as exc:
            raise ShmError(f"segment {posix_name!r} does not exist") from exc
        except posix_ipc.PermissionsError as exc:  # (review 155: a traceback in the CLI)
            raise ShmPermissionError(
                f"segment {posix_name!r}: no permission to open it (another user's instance? "
                "run as the user that started it)"
            ) from exc
        if check is not None:
            try:
                _check_size(posix_name, mem.size)
                check(posix_name, mem.size, os.pread(mem.fd, min(mem.size, HEAD_BYTES), 0))
            except BaseException:
                mem.close_fd()
                raise
        return cls._map(mem, posix_name, name)

    @staticmethod
    def peek(instance: str, name: str) -> bytes | None:
        """The first ``HEAD_BYTES`` of segment ``name`` (fewer if it is smaller), read without
        mapping it; None if there is none."""
        try:
            mem = posix_ipc.SharedMemory(segment_name(instance, name))
        except posix_ipc.ExistentialError:
            return None
        try:
            return os.pread(mem.fd, min(mem.size, HEAD_BYTES), 0)
        finally:
            mem.close_fd()

    @classmethod
    def _map(cls, mem: posix_ipc.SharedMemory, posix_name: str, name: str) -> Region:
        size = mem.size
        try:
            _check_size(posix_name, size)
            # Pre-fault the pages: the first lap of a fresh ring would otherwise take a page
            # fault every 4 KiB, on the hot path.
            try:
                buf = mmap.mmap(mem.fd, size, flags=mmap.MAP_SHARED | _POPULATE)
            except OSError as exc:
                raise ShmError(f"segment {posix_name!r}: cannot map {size} bytes: {exc}") from exc
        finally:
            mem.close_fd()
        return cls(posix_name, name, size, buf)

    def close(self) -> None:
        """Unmap. Idempotent."""
        if not self.buf.closed:
            self.words.release()
            self.buf.close()

    def unlink(self) -> None:
        """Remove the name; mappings stay valid until each process closes its own."""
        _unlink_quietly(self.posix_name)


def _check_size(posix_name: str, size: int) -> None:
    if size <= 0 or size % 8:  # not one of ours (a header is words): never mapped
        raise HeaderMismatchError(posix_name, "segment size", "a positive multiple of 8", size)


def _reserve(mem: posix_ipc.SharedMemory, posix_name: str) -> None:
    """Allocate every page of a new segment now, or raise ``ShmError``. A tmpfs past its
    size (Docker's 64 MiB /dev/shm) still takes the segment, sparse, and then kills with
    SIGBUS whoever first touches a page it cannot give: its creator as it formats it, or a
    process hours later, once its ring has filled that far."""
    size = mem.size
    try:
        os.posix_fallocate(mem.fd, 0, size)
    except OSError as exc:
        fs = os.fstatvfs(mem.fd)
        mem.close_fd()
        raise ShmError(
            f"segment {posix_name!r}: cannot allocate its {size} bytes of shared memory "
            f"({exc.strerror}; {fs.f_bavail * fs.f_frsize} bytes free)"
        ) from exc


def _unlink_quietly(posix_name: str) -> None:
    with contextlib.suppress(posix_ipc.ExistentialError):
        posix_ipc.unlink_shared_memory(posix_name)
