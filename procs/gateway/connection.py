"""One FIX client socket: an asyncio protocol that hands bytes to its session and lets the
gateway (``server.py``) write back, with the client's own backpressure.

Output the client does not read stops its input (``pause_writing``: so it cannot make the
gateway answer more, ResendRequests say); output past ``MAX_UNSENT_BYTES`` ends the
connection (the server checks after each write; the session's messages are in its store:
the client gets them by a ResendRequest after it logs on again).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol, cast

from procs.gateway.intake import IntakePacing

if TYPE_CHECKING:
    from procs.gateway.session import Session

#: A client's unsent output past which its input is no longer read, and past which (it does
#: not read at all) it is disconnected.
WRITE_HIGH_BYTES = 256 << 10
MAX_UNSENT_BYTES = 4 << 20


class Owner(Protocol):
    """What a connection needs of its gateway."""

    pacing: IntakePacing

    def connection_made(self, conn: Connection) -> None: ...
    def after_input(self, conn: Connection) -> None: ...
    def connection_lost(self, conn: Connection) -> None: ...


class Connection(asyncio.Protocol):
    def __init__(self, server: Owner) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport implements asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_BYTES)
        self.server.connection_made(self)

    def pause_writing(self) -> None:
        self.writing_paused = True
        self.sync_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.sync_reading()

    @property
    def reading(self) -> bool:
        """Read unless the client does not read its output or the exchange is behind."""
        return not self.writing_paused and not self.server.pacing.paused

    def sync_reading(self) -> None:
        """Pause or resume the socket's reading as ``reading`` says."""
        if self.transport is not None and not self.transport.is_closing():
            (self.transport.resume_reading if self.reading else self.transport.pause_reading)()

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.data_received(data, time.time_ns())
            self.server.after_input(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connection_lost(self)
