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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from procs.common.file_locks import try_lock
from procs.common.topology import claim_name

#: What a claim's file says of its holder (``held_elsewhere``): the session logged on, or
#: ended and its commands still on their way to the router's ring (one width: written at 0)
_LIVE, _ENDING = b"live  ", b"ending"


class LiveSessions(dict[str, Any]):
    """SenderCompID -> its session in this process, each claimed instance-wide."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._locks: dict[str, int] = {}
        #: the claims of sessions ended here, each held until no command of its session
        #: waits to be published (``let_go``): (descriptor, session id)
        self._ending: dict[str, tuple[int, int]] = {}

    def claim(self, comp_id: str) -> bool:
        """Take ``comp_id`` for this process; False while another gateway serves it."""
        if comp_id in self._locks:
            return True
        if comp_id in self._ending:  # ended here, logged on again before ``let_go``
            held = self._locks[comp_id] = self._ending.pop(comp_id)[0]
            os.pwrite(held, _LIVE, 0)
            return True
        fd = try_lock(self.directory / claim_name(comp_id))
        if fd is None:
            return False
        self._locks[comp_id] = fd
        os.pwrite(fd, _LIVE, 0)
        return True

    def held_elsewhere(self, comp_id: str) -> str:
        """Why a logon of ``comp_id`` is refused here, another gateway holding its claim:
        its session is logged on there, or ended there with what it sent still on its way
        (review 246: the refusal said "logged on" of a session logged on nowhere)."""
        try:
            with open(self.directory / claim_name(comp_id), "rb") as f:
                state = f.read(len(_ENDING))
        except OSError:
            state = b""
        if state == _ENDING:
            return (
                f"session {comp_id} has just ended at another gateway, which is still "
                "sending what it sent: log on again in a moment"
            )
        return f"session {comp_id} is already logged on (another gateway)"

    def release(self, comp_id: str) -> None:
        fd = self._locks.pop(comp_id, None)
        if fd is not None:
            os.close(fd)

    def release_all(self) -> None:
        for comp_id in list(self._locks):
            self.release(comp_id)
        self.let_go(None)

    def let_go(self, waiting: Sequence[Any] | None) -> None:
        """Release the claims of the sessions ended here of which no command is among
        ``waiting`` (the commands not yet in the router's ring; None: every claim), so one
        who waits for a claim to go (``ringex admin remove-user``'s cancel-all) comes after
        them (review 244), and none waits for other sessions' commands (review 246)."""
        if not self._ending:
            return
        busy = {getattr(c, "session", None) for c in waiting} if waiting else set()
        for comp_id, (fd, session) in list(self._ending.items()):
            if waiting is None or session not in busy:
                os.close(fd)
                del self._ending[comp_id]

    def __delitem__(self, comp_id: str) -> None:
        session = getattr(self.get(comp_id), "session_id", 0)
        super().__delitem__(comp_id)
        fd = self._locks.pop(comp_id, None)
        if fd is not None:
            os.pwrite(fd, _ENDING, 0)
            self._ending[comp_id] = (fd, session)
