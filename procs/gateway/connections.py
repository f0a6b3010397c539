"""The gateway's FIX connections: taking them (up to ``max_sessions``), each with its
``Session``; writing a connection when its session has something to say; the scrypt check
of a Logon on the executor's threads (skipped for a connection gone before its turn).

A pass of the poll loop writes only the connections in ``_dirty``, those whose session got
output (or closed) since their last write (``Session.on_output``): visiting every connection
cost each order ~0.6 us per session logged on (300 idle sessions: 345 -> 520 us of gateway
CPU per order at 1k orders/s), so a gateway with 1,000 sessions would have topped out near
1.5k orders/s. The timers still visit every connection, once a second.

A read's commands are published at the end of the event loop's pass, with those of every
other connection read in it (``submit``); but libuv reads a readable socket again and again
(up to 32 times) before the pass goes on, so a client far ahead of the exchange (its
kernel's buffers full while the gateway paced it) got megabytes read at once: 300k orders
in one pass at 40k/s offered, and a log frame over the order log's 64 MiB that stopped the
gateway. Once ``burst_limit`` commands wait, a read publishes at once, and the pacing
(``intake.py``) stops the reads under way.

A mixin of ``GatewayServer`` (``server.py``), which owns the state it names.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from config.edges import GatewayConfig
from procs.common import wall_clock
from procs.common.users import User, UserStore, still_held
from procs.gateway.audit import AuditLog
from procs.gateway.connection import Connection, peer_address, peer_log
from procs.gateway.intake import IntakePacing
from procs.gateway.limits import RateLimiter, limit_key
from procs.gateway.orders import OrderEntry
from procs.gateway.session import Session
from procs.gateway.session_interface import SessionSettings, State
from procs.gateway.session_stores import SessionStores
from procs.gateway.store import MessageStore, MessageStoreError

if TYPE_CHECKING:
    from procs.gateway.rest import RestApi

log = logging.getLogger("ringex.gateway")
#: The states past the Logon: a connection in them no longer counts as waiting for it.
LOGGED_ON = frozenset((State.ACTIVE, State.LOGGING_OUT))


class GatewayConnections:
    gw: GatewayConfig
    settings: SessionSettings
    users: UserStore
    entry: OrderEntry
    live: dict[str, Session]
    audit: AuditLog
    pacing: IntakePacing
    connections: set[Connection]
    _dirty: set[Connection]
    _writes_due: list[Connection]
    _started_ns: int
    store: Callable[[str], MessageStore]
    stores: SessionStores
    publish: Callable[[], None]
    submit: Callable[[], None]
    #: commands waiting to be published past which a read publishes at once (``burst_limit``)
    burst_limit: int
    api: RestApi | None

    def clock_stepped(self, step_ns: int) -> None:
        """The wall clock stepped (``procs/common/wall_clock.py``): every connection's marks,
        and its session's, move with it (review 175), and the start the intake latency is
        counted from (review 177)."""
        for conn in self.connections:
            conn.clock_stepped(step_ns)
        self._started_ns += step_ns

    @property
    def failed_logins(self) -> RateLimiter:
        """Wrong passwords per user: the REST API's limiter where it runs (one count for
        FIX Logons and REST logins), else this gateway's own (reread 44: FIX's were never
        counted)."""
        return self.api.failed_logins if self.api is not None else self._own_failed_logins

    @functools.cached_property
    def _own_failed_logins(self) -> RateLimiter:
        return RateLimiter(self.gw.failed_login_rate_per_s, self.gw.failed_login_burst)

    @functools.cached_property
    def _failed_by_address(self) -> RateLimiter:
        """Failed Logons (wrong password, unknown CompID) per client address: a peer that
        invents a CompID at each Logon is never slowed by the per-user count, and each costs
        a scrypt on the threads real Logons share (review 93)."""
        gw = self.gw
        return RateLimiter(gw.address_failed_logon_rate_per_s, gw.address_failed_logon_burst)

    @functools.cached_property
    def _pending_by_address(self) -> collections.Counter[str]:
        """Connections not logged on yet, per client address."""
        return collections.Counter()

    @functools.cached_property
    def _pending(self) -> dict[Connection, str]:
        """Each connection not logged on yet, and its address (``_pending_by_address``)."""
        return {}

    def _logged_on(self, conn: Connection) -> None:
        """``conn`` is no longer waiting for its Logon: its address's count drops."""
        address = self._pending.pop(conn, None)
        if address is not None:
            self._pending_by_address[address] -= 1
            if not self._pending_by_address[address]:
                del self._pending_by_address[address]

    def connection_made(self, conn: Connection) -> None:
        assert conn.transport is not None
        gw = self.gw
        if len(self.connections) >= gw.max_sessions:
            peer_log.warning("refused a connection: %d sessions is the limit", gw.max_sessions)
            conn.transport.close()
            return
        address = peer_address(conn.transport)
        per_address = gw.max_pending_per_address or max(1, gw.max_sessions // 2)
        if self._pending_by_address[address] >= per_address:  # one cannot take every slot
            peer_log.warning(
                "refused a connection from %s: %d connections from one address not logged "
                "on yet is the limit", address, per_address,
            )  # fmt: skip
            conn.transport.close()
            return
        self._pending_by_address[address] += 1
        self._pending[conn] = address
        self.connections.add(conn)
        conn.session = Session(
            self.settings, self.users, self.store, self.entry, self.live, wall_clock.now_ns(),
            self.audit,
        )  # fmt: skip
        conn.session.on_output = functools.partial(self._wants_write, conn)
        # (while the exchange is behind it is read for its Logon only: connection.py)

    def _wants_write(self, conn: Connection) -> None:
        self._dirty.add(conn)

    def _write(self, conn: Connection) -> None:
        self._dirty.discard(conn)
        conn.write()

    def connection_lost(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self._logged_on(conn)  # (or never: its slot comes back either way)
        if (session := conn.session) is not None:
            session.on_output = None  # its close has nowhere to go: not dirty again
            session.connection_lost(wall_clock.now_ns())
            if session.user is not None:  # its store used last now: kept among the spare
                self.stores.touch(session.user.comp_id)  # (review 260)
        self._dirty.discard(conn)
        self.publish()
        self.submit()  # its cancels (cancel on disconnect) are answered by the poll loop

    def write_now(self, session: Session) -> None:
        """What ``session`` sent outside the poll loop's batches (an answer made when an
        executor thread or a fetch returned) goes out now, not at the loop's next batch."""
        conn = next((c for c in self.connections if c.session is session), None)
        if conn is not None:
            self.after_input(conn)

    def after_input(self, conn: Connection) -> None:
        session = conn.session
        if conn in self._pending and session is not None and session.state in LOGGED_ON:
            self._logged_on(conn)
        if session is not None and session.verify_request is not None:
            self._verify(conn, session, *session.verify_request)
        self.submit()
        if len(self.entry.outgoing) >= self.burst_limit:
            self.publish()  # now, not at the pass's end: its pacing stops the reads under way
        if self.entry.outgoing:  # its store's MsgSeqNum counts them: logged first
            self._writes_due.append(conn)
        else:
            self._write(conn)

    def _verify(self, conn: Connection, session: Session, comp_id: str, password: str) -> None:
        session.verify_request = None
        limits = self.failed_logins  # every try spends a token, a right password gives it back
        now = time.monotonic()
        if retry := limits.take(limit_key(comp_id), now):
            what = "Logons while it is logged on" if comp_id in self.live else "wrong passwords"
            session.refused(
                f"too many {what} for {comp_id[:64]}: the limit is "
                f"{limits.rate_per_s:g}/s; try again in {math.ceil(retry)} s",
                wall_clock.now_ns(),
            )
            return
        address = self._pending.get(conn, "?")  # (a Logon is checked while it is pending)
        by_address = self._failed_by_address
        if retry := by_address.take(address, now):
            limits.refund(limit_key(comp_id))  # not this user's guess: refused before it
            session.refused(
                f"too many failed Logons from {address}: the limit is "
                f"{by_address.rate_per_s:g}/s; try again in {math.ceil(retry)} s",
                wall_clock.now_ns(),
            )
            return
        # a look, not a spend: only a failed Logon spends (``done``), or a host's sessions
        # logging on at once were refused while their checks ran (review 97)
        by_address.refund(address)
        check = asyncio.get_running_loop().run_in_executor(
            None, self._check_if_connected, session, comp_id, password
        )

        def done(check: asyncio.Future[User | None]) -> None:
            if conn.session is not session or session.closed:
                return
            try:
                user = check.result()
            except Exception:  # a broken users file: refuse, and say why in the log
                log.exception("checking the password of %s failed", comp_id)
                user = None
            if user is not None:  # the file looked at again: an operator's set-password or
                user = still_held(self.users.get(comp_id), user)  # remove-user meanwhile wins
            # a right password for a session logged on already (``after_password`` refuses
            # it next) keeps its CompID's token spent: a reconnect loop cost a scrypt a
            # connection (review 277), and no other CompID of its host pays for it
            if user is not None and comp_id not in self.live:
                self.failed_logins.refund(limit_key(comp_id))
            elif user is None:  # (past the limit already, by failures in flight: counted as
                # far as it goes)
                self._failed_by_address.take(self._pending.get(conn, "?"), time.monotonic())
            try:
                session.authenticated(user, wall_clock.now_ns())
            except OSError as exc:  # its store: out of descriptors, a full disk. Closed, not
                log.error("the logon of %s failed: %s", comp_id, exc)  # left unanswered
                session.abort(f"the logon failed: {exc.strerror or exc}")
            except MessageStoreError as exc:  # its files damaged: refused until mended
                log.error("the logon of %s failed: %s", comp_id, exc)
                session.abort("the logon failed: the session's store is damaged")
            self.after_input(conn)

        check.add_done_callback(done)

    def _check_if_connected(self, session: Session, comp_id: str, password: str) -> User | None:
        """The password check, on an executor thread, unless the connection is gone by its
        turn: its slot came back as it closed, so ``max_sessions`` bounds the checks queued
        only if those of the dropped ones cost nothing (a storm of connect, Logon, close would
        queue a scrypt each and hold a real Logon past its timeout). ``closed`` is a read of
        one attribute the loop sets: a check that starts just before the close runs, no more."""
        if session.closed:
            return None
        return self.users.verify(comp_id, password)
