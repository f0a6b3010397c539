"""One FIX client socket: an asyncio protocol that hands bytes to its session and lets the
gateway (``server.py``) write back, with the client's own backpressure.

Output the client does not read stops its input (``pause_writing``: so it cannot make the
gateway answer more, ResendRequests say); output past ``MAX_UNSENT_BYTES`` ends the
connection (the server checks after each write; the session's messages are in its store:
the client gets them by a ResendRequest after it logs on again). The answer to a
ResendRequest is written as the socket drains (``resume_writing``), so however long it is,
a client that reads it is not taken for one that does not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol, cast

from procs.gateway.intake import IntakePacing

if TYPE_CHECKING:
    from procs.gateway.session import Session

log = logging.getLogger("ringex.gateway")

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
        self.write()  # a resend under way goes on

    @property
    def reading(self) -> bool:
        """Read unless the client does not read its output or the exchange is behind."""
        return not self.writing_paused and not self.server.pacing.paused

    def sync_reading(self) -> None:
        """Pause or resume the socket's reading as ``reading`` says."""
        if self.transport is not None and not self.transport.is_closing():
            (self.transport.resume_reading if self.reading else self.transport.pause_reading)()

    def write(self) -> None:
        """Write what the session has, and close the socket once the session is closed. A
        resend goes as the socket takes it: up to the high-water mark, the rest as it drains
        (``resume_writing``). Past ``MAX_UNSENT_BYTES`` unsent, those waiting behind a resend
        counted, the client is dropped."""
        session, transport = self.session, self.transport
        if session is None or transport is None:
            return
        while True:
            # paused: the buffer is past the mark (asyncio pauses a write past it at once)
            room = 0 if self.writing_paused else WRITE_HIGH_BYTES + 1
            out = session.take_output(room - transport.get_write_buffer_size(), time.time_ns())
            if out:
                if session.store is not None:
                    session.store.flush()  # a resend can always find what the client saw
                transport.writelines(out)
            unsent = transport.get_write_buffer_size() + session.behind_bytes
            if unsent > MAX_UNSENT_BYTES:
                log.warning(
                    "%s does not read: %d bytes unsent, the limit is %d; disconnected",
                    session.comp_id, unsent, MAX_UNSENT_BYTES,
                )  # fmt: skip
                transport.abort()
                return
            if not (out and session.resending and not self.writing_paused):
                break
        if session.store is not None:  # reports held behind a paused resend are numbered and
            session.store.flush()  # stored already: durable before the log moves past them
        if session.closed and not transport.is_closing():
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.data_received(data, time.time_ns())
            self.server.after_input(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connection_lost(self)
