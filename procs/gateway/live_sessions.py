"""The FIX sessions logged on, across every gateway process of an instance.

Gateways may share a port (``reuse_port``): the kernel hands each connection to any of them,
so a gateway's own table of logged-on sessions cannot refuse a second connection for a
session another gateway serves. ``LiveSessions`` is that table plus an exclusive ``flock``
per SenderCompID in a directory the instance's gateways share: ``claim`` takes it (False
when another process holds it), removing the session releases it once the gateway has
published what the session sent (``let_go``: whoever waits for the claim to go comes after
those commands, review 244), and a gateway that dies releases all of its own (the kernel
drops a dead process's locks).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from procs.common.file_locks import try_lock
from procs.common.topology import claim_name


class LiveSessions(dict[str, Any]):
    """SenderCompID -> its session in this process, each claimed instance-wide."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._locks: dict[str, int] = {}
        #: the claims of sessions ended here, held until ``let_go``
        self._ending: dict[str, int] = {}

    def claim(self, comp_id: str) -> bool:
        """Take ``comp_id`` for this process; False while another gateway serves it."""
        if comp_id in self._locks:
            return True
        if comp_id in self._ending:  # ended here, logged on again before ``let_go``
            self._locks[comp_id] = self._ending.pop(comp_id)
            return True
        fd = try_lock(self.directory / claim_name(comp_id))
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
        self.let_go()

    def let_go(self) -> None:
        """Release the claims of the sessions ended here: the gateway calls it once what
        they sent is in the router's ring, so one who waits for a claim to go (``ringex
        admin remove-user``'s cancel-all) comes after their commands (review 244)."""
        for fd in self._ending.values():
            os.close(fd)
        self._ending.clear()

    def __delitem__(self, comp_id: str) -> None:
        super().__delitem__(comp_id)
        fd = self._locks.pop(comp_id, None)
        if fd is not None:
            self._ending[comp_id] = fd
