"""The private streams' per-key and per-account limits, across every gateway of an instance.

Gateways may share a port, and a client's streams land on any of them, so a gateway's own
count let a key hold ``max_streams_per_key`` streams at each gateway (review 36's documented
limit). A stream now holds a slot of its key and one of its account: an exclusive ``flock``
on one of ``limit`` files in a directory the instance's gateways share (as ``LiveSessions``
holds a FIX session's), taken before the upgrade's handshake and given back at its end. A
gateway that dies gives back its slots (the kernel drops a dead process's locks).

A file no stream holds is removed by ``prune`` (the private streams' sweep, once a minute):
each login is a new key, and the files of every key that ever streamed piled up (review
151). Its lock is taken before the unlink, and ``try_lock`` holds only the file its path
still names, so two streams never hold "one" slot.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from procs.common.file_locks import remove_unheld, try_lock


class StreamSlot:
    """The locks one stream holds; ``release`` gives them back (once)."""

    __slots__ = ("_fds",)

    def __init__(self, fds: list[int]) -> None:
        self._fds = fds

    def release(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)


class StreamSlots:
    def __init__(self, directory: Path, per_key: int, per_account: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.per_key = per_key
        self.per_account = per_account

    def take(self, key: str, account: int) -> StreamSlot | str:
        """A slot of ``key`` and one of ``account``, or which is full: "key" or "account"."""
        digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
        mine = self._one(f"key-{digest}", self.per_key)
        if mine is None:
            return "key"
        try:
            theirs = self._one(f"account-{account}", self.per_account)
        except BaseException:  # (out of descriptors, say: the key's slot is given back,
            os.close(mine)  # review 80)
            raise
        if theirs is None:
            os.close(mine)
            return "account"
        return StreamSlot([mine, theirs])

    def prune(self) -> int:
        """Remove the slot files no stream holds (of keys gone, mostly); how many."""
        removed = 0
        with os.scandir(self.directory) as entries:
            names = [e.name for e in entries if e.name.endswith(".lock")]
        for name in names:
            removed += remove_unheld(self.directory / name)
        return removed

    def _one(self, stem: str, limit: int) -> int | None:
        """The descriptor of a free slot of ``stem`` it locked, or None: all ``limit`` held."""
        for k in range(limit):
            fd = try_lock(self.directory / f"{stem}-{k}.lock")
            if fd is not None:
                return fd
        return None
