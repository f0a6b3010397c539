"""One FIX client socket: an asyncio protocol that hands bytes to its session and lets the
gateway (``server.py``) write back, with the client's own backpressure.

Output the client does not read stops its input (``pause_writing``: so it cannot make the
gateway answer more, ResendRequests say); output past ``MAX_UNSENT_BYTES`` ends the
connection (the server checks after each write; the session's messages are in its store:
the client gets them by a ResendRequest after it logs on again). The answer to a
ResendRequest is written as the socket drains (``resume_writing``), so however long it is,
a client that reads it is not taken for one that does not. Output that stands still (writing
paused, not a byte taken) for ``STALL_HEARTBEATS`` heartbeat intervals ends the connection as
well, as silence does: the session's timers forgive the silence of a socket the gateway does
not read, so a client hung behind a zero window would otherwise stay logged on for good, its
orders never cancelled on disconnect. Either way the reports are in the session's store.

A connection whose session awaits its Logon is read while the exchange is behind: a Logon
gives the router nothing, and its timeout (``logon_timeout_s``) runs from the connect whatever
the gateway reads, so a Logon left unread would time out (clients connecting after a restart
under load would reconnect in a loop). Once the Logon is read the connection is paced again.
So it is closed once it has sent ``MAX_BYTES_BEFORE_LOGON`` (or two messages' worth) that
hold no Logon: junk (ignored, as a garbled message is) was read as fast as the socket gave
it and journaled whole (``audit.py``), ~200 MB a second of one client's, until the logon
timeout, from anyone who could connect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import deque
from typing import TYPE_CHECKING, Protocol, cast

from procs.common import wall_clock
from procs.common.quiet_log import quieten
from procs.gateway.intake import IntakePacing
from procs.gateway.session_interface import State

if TYPE_CHECKING:
    from procs.gateway.session import Session
    from procs.gateway.store import MessageStore

log = logging.getLogger("ringex.gateway")
#: What a peer that has not logged on can make the gateway say, once a connection: a few
#: lines a minute (``quiet_log``), or a reconnecting peer writes the log at its own rate.
peer_log = logging.getLogger("ringex.gateway.peers")
quieten(peer_log, burst=5)


def peer_address(transport: asyncio.BaseTransport) -> str:
    """The client's address (host, without its port): what per-address limits count. An
    IPv6 host is its /64 (one host usually holds a whole /64: each of its addresses its own
    key would never reach a limit, review 97); an IPv4-mapped one its IPv4 address."""
    peer = transport.get_extra_info("peername")
    if not (isinstance(peer, tuple) and peer):
        return "?"
    try:
        ip = ipaddress.ip_address(str(peer[0]).partition("%")[0])  # (a zone id dropped)
    except ValueError:
        return str(peer[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


#: A client's unsent output past which its input is no longer read, and past which (it does
#: not read at all) it is disconnected.
WRITE_HIGH_BYTES = 256 << 10
MAX_UNSENT_BYTES = 4 << 20
#: Heartbeat intervals a client's paused output may stand still before it is disconnected.
STALL_HEARTBEATS = 2
#: The most of a hold credited to a client's throttle (s): a socket holds a few seconds of
#: a client's rate, and a long stall must not let every client burst minutes of it after.
MAX_HELD_CREDIT_S = 5.0
#: Bytes a connection may send before its Logon (none of them one) before it is closed; two
#: of its largest messages (``max_message_bytes``) where that is more.
MAX_BYTES_BEFORE_LOGON = 64 << 10


class Owner(Protocol):
    """What a connection needs of its gateway."""

    pacing: IntakePacing

    def connection_made(self, conn: Connection) -> None: ...
    def after_input(self, conn: Connection) -> None: ...
    def connection_lost(self, conn: Connection) -> None: ...


def first_new_seq(frames: list[bytes]) -> int:
    """The MsgSeqNum (34) of the first of ``frames`` that is no resent copy (PossDupFlag
    43=Y: the client had it and asked for it again), 0 when every one is: a cut resend is
    the resend's to answer (``Session._drop_resends``), not to park (review 212)."""
    for frame in frames:
        if b"\x0143=Y\x01" not in frame:
            at = frame.index(b"\x0134=") + 4
            return int(frame[at : frame.index(b"\x01", at)])
    return 0


class Connection(asyncio.Protocol):
    def __init__(self, server: Owner) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.writing_paused = False
        self._stalled_ns = 0  # since when its paused output has not moved; 0: it moves
        self._held_ns = 0  # since when the exchange's pace has held its socket unread; 0: not
        self._stall_size = 0
        self._before_logon = 0  # bytes read while its session awaited a Logon
        self._handed = 0  # bytes handed to the transport so far
        #: (``_handed`` at a write's end, the seq of its first new message), for the writes the
        #: transport may still hold: what an abort cuts off is parked again (``abort``)
        self._marks: deque[tuple[int, int]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport implements asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_BYTES)
        self.server.connection_made(self)

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._held_ns = 0  # held for its own unread output from now: no credit for that
        self.sync_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._stalled_ns = 0
        self.sync_reading()
        self.write()  # a resend under way goes on

    @property
    def reading(self) -> bool:
        """Read unless the client does not read its output or the exchange is behind (a
        session awaiting its Logon excepted: the Logon asks nothing of the exchange)."""
        if self.writing_paused:
            return False
        if not self.server.pacing.paused:
            return True
        session = self.session
        return session is not None and session.state is State.AWAIT_LOGON

    def sync_reading(self) -> None:
        """Pause or resume the socket's reading as ``reading`` says. The time the exchange's
        pace held the socket is credited to the session's throttle and intake limit when it
        reads again: what waited in the socket is read as one burst, which the client did not
        send as one."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.reading:
            transport.resume_reading()
            held, self._held_ns = self._held_ns, 0
            if held and self.session is not None:
                now_ns = wall_clock.now_ns()
                seconds = min(MAX_HELD_CREDIT_S, max(0, now_ns - held) / 1e9)
                self.session.throttle.credit(seconds, now_ns)
                self.session.inbound.credit(seconds, now_ns)
        else:
            transport.pause_reading()
            if not self._held_ns and not self.writing_paused:  # the exchange's pace holds it
                self._held_ns = wall_clock.now_ns()

    def write(self) -> None:
        """Write what the session has, and close the socket once the session is closed. A
        resend goes as the socket takes it: up to the high-water mark, the rest as it drains
        (``resume_writing``). Past ``MAX_UNSENT_BYTES`` unsent, those waiting behind a resend
        counted, the client is dropped."""
        session, transport = self.session, self.transport
        if session is None or transport is None:
            return
        store, marks = session.store, self._marks
        if store is not None:  # before ``take_output``, whose resend reads flush the store: a
            # reset logon's carried reports are queued, not handed on (review 257's reread)
            store.unhanded(self, self._first_unhanded(store, session))
        while True:
            # paused: the buffer is past the mark (asyncio pauses a write past it at once)
            room = 0 if self.writing_paused else WRITE_HIGH_BYTES + 1
            out = session.take_output(room - transport.get_write_buffer_size(), wall_clock.now_ns())
            if out:
                if store is not None:
                    self._handed += sum(map(len, out))
                    if first := first_new_seq(out):
                        marks.append((self._handed, first))
                    # saved by this flush, before it goes: a kill parks from there (252, 257)
                    store.unhanded(self, self._first_unhanded(store, session))
                    store.flush()  # a resend can always find what the client saw
                transport.writelines(out)
            buffered = self._drop_handed(transport)
            if store is not None:  # handed on: saved with a later flush
                store.unhanded(self, self._first_unhanded(store, session))
            unsent = buffered + session.behind_bytes
            if unsent > MAX_UNSENT_BYTES:
                log.warning(
                    "%s does not read: %d bytes unsent, the limit is %d; disconnected",
                    session.comp_id, unsent, MAX_UNSENT_BYTES,
                )  # fmt: skip
                self.abort()
                return
            if not (out and session.resending and not self.writing_paused):
                break
        if session.store is not None:  # reports held behind a paused resend are numbered and
            session.store.flush()  # stored already: durable before the log moves past them
        if session.closed and not transport.is_closing():
            transport.close()

    def _drop_handed(self, transport: asyncio.Transport) -> int:
        """Forget the marks of writes the kernel has taken whole; the bytes the transport
        still holds. Looked at by each write and once a second (``check_stalled``): a reset
        parks from the oldest mark left (review 265: a write's mark outlived its bytes,
        drained with no later write, and a reset carried all of them again)."""
        buffered = transport.get_write_buffer_size()
        marks = self._marks
        while marks and marks[0][0] <= self._handed - buffered:
            marks.popleft()  # in the kernel's hands (or the client's) now
        return buffered

    def _first_unhanded(self, store: MessageStore, session: Session) -> int:
        """The first stored message this connection has not handed to the kernel: its
        oldest mark's, or one waiting behind a resend (review 255), else the next one."""
        first = self._marks[0][1] if self._marks else store.next_out
        return min(first, session.waiting_from())

    def clock_stepped(self, step_ns: int) -> None:
        """The wall clock stepped (``procs/common/wall_clock.py``): this connection's marks,
        and its session's, move with it (review 175)."""
        if self._stalled_ns:
            self._stalled_ns += step_ns
        if self._held_ns:
            self._held_ns += step_ns
        if self.session is not None:
            self.session.clock_stepped(step_ns)

    def check_stalled(self, now_ns: int) -> None:
        """Disconnect a client whose paused output has not moved (its write buffer never
        smaller than a call before) for ``STALL_HEARTBEATS`` of its heartbeat intervals. The
        timers call it about once a second; a buffer that grows while the client reads less
        than it is sent counts as standing still (it would reach ``MAX_UNSENT_BYTES``).
        A closing transport counts whether paused or not: its close waits for its output to
        flush, which a client that does not read never lets happen, and the connection, one
        of ``max_sessions`` with its buffers, would never be lost (review 167)."""
        transport, session = self.transport, self.session
        if transport is not None:
            self._drop_handed(transport)
        if (
            transport is None
            or session is None
            or not (self.writing_paused or transport.is_closing())
        ):
            self._stalled_ns = 0
            return
        size = transport.get_write_buffer_size()
        self._stalled_ns = min(self._stalled_ns, now_ns)  # a clock stepped back (review 175)
        if not self._stalled_ns or size < self._stall_size:
            self._stalled_ns, self._stall_size = now_ns, size
            return
        self._stall_size = size
        limit_ns = STALL_HEARTBEATS * session.heartbeat_ns
        if now_ns - self._stalled_ns > limit_ns:
            log.warning(
                "%s does not read: %d bytes unsent have not moved for %.1f s, the limit is "
                "%.1f s (%d heartbeat intervals); disconnected",
                session.comp_id, size, (now_ns - self._stalled_ns) / 1e9, limit_ns / 1e9,
                STALL_HEARTBEATS,
            )  # fmt: skip
            self.abort()

    def abort(self) -> None:
        """Cut the connection at once. The stored messages its transport still held were
        never handed to the kernel, so never reached the client: they are parked again, so
        that a logon that resets the numbers sends them anew, as those made while it was
        away (a logon that keeps them fetches them by ResendRequest) (review 204)."""
        transport, session = self.transport, self.session
        if transport is None:
            return
        if session is not None:
            self._park_unsent(session, transport.get_write_buffer_size())
        transport.abort()

    def _park_unsent(self, session: Session, buffered: int | None) -> None:
        """Park again what this connection never handed to the kernel: from its oldest mark
        past the ``buffered`` bytes its transport still holds (None: not known, an error
        dropped them: from its oldest mark, a few the kernel took since perhaps among them,
        to come twice), and what waits behind a resend (review 255)."""
        store = session.store
        if store is None or session.live.get(session.comp_id, session) is not session:
            return  # (a newer session of its CompID took the store: a reset logon's numbers)
        if buffered is None:
            cut = self._marks[0][1] if self._marks else 0
        else:
            flushed = self._handed - buffered
            cut = next((first for end, first in self._marks if end > flushed), 0)
        if cut:
            store.park_again(cut)
        if (waiting := session.waiting_from()) < store.next_out:
            store.park_again(waiting)  # behind a resend: never handed on (255)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is not None:
            session.data_received(data, wall_clock.now_ns())
            if session.state is State.AWAIT_LOGON and self._closed_without_logon(len(data)):
                return
            if self.server.pacing.paused:  # read for its Logon: paced again once it is in
                self.sync_reading()
            self.server.after_input(self)

    def _closed_without_logon(self, size: int) -> bool:
        """Count ``size`` bytes read with no Logon in them; past the limit, close (True)."""
        assert self.session is not None and self.transport is not None
        self._before_logon += size
        limit = max(MAX_BYTES_BEFORE_LOGON, 2 * self.session.settings.max_message_bytes)
        if self._before_logon <= limit:
            return False
        peer_log.warning(
            "%s sent %d bytes without a Logon, the limit is %d; disconnected",
            self.transport.get_extra_info("peername"), self._before_logon, limit,
        )  # fmt: skip
        self.transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        session = self.session
        if session is not None and session.store is not None:  # its output drained, or cut
            if exc is not None:  # by an error (the peer's RST): asyncio dropped its buffer
                self._park_unsent(session, None)  # (review 260; ``abort`` parked already)
            session.store.connection_ended(self)
        self.server.connection_lost(self)
