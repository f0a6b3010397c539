"""The FIX sessions logged on, across every gateway process of an instance.

Gateways may share a port (``reuse_port``): the kernel hands each connection to any of them,
so a gateway's own table of logged-on sessions cannot refuse a second connection for a
session another gateway serves. ``LiveSessions`` is that table plus an exclusive ``flock``
per SenderCompID in a directory the instance's gateways share: ``claim`` takes it (False
when another process holds it), removing the session releases it, and a gateway that dies
releases all of its own (the kernel drops a dead process's locks).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from procs.common.file_locks import try_lock


class LiveSessions(dict[str, Any]):
    """SenderCompID -> its session in this process, each claimed instance-wide."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._locks: dict[str, int] = {}

    def claim(self, comp_id: str) -> bool:
        """Take ``comp_id`` for this process; False while another gateway serves it."""
        if comp_id in self._locks:
            return True
        fd = try_lock(self.directory / f"{comp_id.encode().hex()}.lock")  # any CompID: a name
        if fd is None:
            return False
        self._locks[comp_id] = fd
        return True

    def release(self, comp_id: str) -> None:
        fd = self._locks.pop(comp_id, None)
        if fd is not None:
            os.close(fd)

    def release_all(self) -> None:
        for comp_id in list(self._locks):
            self.release(comp_id)

    def __delitem__(self, comp_id: str) -> None:
        super().__delitem__(comp_id)
        self.release(comp_id)
