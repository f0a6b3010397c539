"""The gateway's asyncio shell: TCP connections <-> ``Session`` cores, rings <-> ``OrderEntry``
(FIX) and, when the gateway has a ``rest`` section, ``RestOrders`` behind the HTTP API
(``rest.py``), which sees the same events after the FIX side.

One event loop (uvloop in ``main``), no threads:

- each connection feeds its bytes to its ``Session``; what the session and the order entry
  produce is published to the router ring at the end of the loop's pass, with what every
  connection read in it (``submit``; at once past ``burst_limit`` commands waiting:
  ``connections.py``), and written back once its commands are logged;
- a poll task reads the router's replies ring and every matcher's output ring without
  blocking (``read`` never waits; it looks again for ``idle_spin_us`` after the last event,
  then naps, 1 ms or longer once idle, unless a ring's record or a client ends the nap:
  ``_poll``), feeds the events to ``OrderEntry.process`` and writes the resulting reports;
- a timer task drives heartbeats, test requests and logon/logout timeouts once a second.

Backpressure: commands wait in ``OrderEntry.outgoing`` until the router ring takes them. When it
is full every socket stops being read (``pause_reading``: TCP pushes back on the clients) until
the poll task has published the backlog and the router has taken all but an eighth of a ring of
it, with at most a sixteenth of a ring of events waiting (``IntakePacing``'s hysteresis,
``intake.py``); nothing accepted is dropped. Only the router makes that room, so the poll task
waits for it (the router's answers or its commit wake it), not by looking again at once (on two
cores that took the core the router needed): see ``_poll``. Outbound, the session's message
store is flushed before the bytes are written, so a ResendRequest can always be served, and the
audit journal too (``Session.take_output``: the first write of a pass writes the lines of all).
A Logon's ``scrypt`` check (tens of ms) runs on the default executor's threads (hashlib
releases the GIL): a burst of logons after a restart does not stall the sessions logged on.

Restart: the order log (``order_log.py``, ``order_logging.py``) gets commands before the router
ring does and before a session's store saves the MsgSeqNums that count them, and the order
entry's changes with the input cursors after each batch of events, whose cursors are
committed only then. A restarted gateway takes its orders back, publishes the commands the ring
never got, skips the events it had already handled, and cancels the orders of sessions that
cancel on disconnect (their connections died with the old process).
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING

from config.schema import RingexConfig, WaitConfig
from procs.common import after_reads, sd_notify, wall_clock
from procs.common.record_codec import RecordCodec
from procs.common.records import NewOrder, Record
from procs.common.ring_waker import RingWaker, nap_for, settle
from procs.common.stats import GATEWAY_COUNTERS, LatencyHistogram, gateway_page
from procs.common.tls import server_context, tls_kwargs
from procs.common.topology import (
    gateway_commands,
    gateway_consumer,
    gateway_dir,
    gateway_replies,
    matcher_output,
    users_path,
)
from procs.common.users import User, UserStore, fee_account_refused
from procs.core.recovery import journal_end
from procs.gateway.audit import AuditLog
from procs.gateway.clordids import API_IDS, SeenLog
from procs.gateway.connection import Connection
from procs.gateway.connections import GatewayConnections
from procs.gateway.fix import Timestamps, frame
from procs.gateway.instruments import Instruments
from procs.gateway.intake import IntakePacing
from procs.gateway.live_sessions import LiveSessions
from procs.gateway.order_log import HANDLED, Kept, OrderLog
from procs.gateway.order_logging import OrderLogging
from procs.gateway.orders import OrderEntry
from procs.gateway.recovery import note_handled, within_journal
from procs.gateway.rest_wiring import RestWiring
from procs.gateway.restart import GatewayRestart
from procs.gateway.security_status import SecurityStatuses
from procs.gateway.sent_commands import SentCommands
from procs.gateway.session import Session
from procs.gateway.session_interface import SessionSettings
from procs.gateway.session_stores import SessionStores
from procs.gateway.store import MessageStore, MessageStoreError
from procs.gateway.user_requests import UserRequests
from shm import Ring
from shm.consumer import Consumer
from shm.counters import Counters

if TYPE_CHECKING:  # the HTTP stack (aiohttp, psycopg) is imported only by a REST gateway:
    from procs.gateway.rest import RestApi  # a FIX-only one starts 0.6 s sooner (failover)

log = logging.getLogger("ringex.gateway")

#: The poll loop's nap when nothing flows: uvloop's timers tick in whole milliseconds (a
#: shorter sleep returns at once, and the loop would spin a core at 100%), so 1 ms.
IDLE_NAP_S = 0.001
#: The longest parked nap (``park_after_ms``) with no command held for the router's ring
#: (one held waits ``held_nap_s``): the loop then looks and parks again.
PARKED_NAP_S = 1.0
#: ``burst_limit``'s cap: once a quarter of a ring of commands (or this many, if fewer) wait
#: for the end of a loop's pass, a read publishes them at once (``connections.py``). A log
#: write of them is ~2 MB, one frame far under the order log's 64 MiB.
MAX_BURST_COMMANDS = 8192
#: Events a pump takes from each input ring per pass. Every gateway reads every event of a
#: matcher's output ring (its own are a share of them), so with G gateways a pass must take
#: about G times what its own orders made: at 1,024 a gateway of six fell behind by a near
#: full ring at 50k orders/s on a 16-core host, and its matcher stopped for it.
EVENTS_PER_PASS = 4096


def held_nap_s(wait: WaitConfig) -> float:
    """The poll loop's nap once commands have waited ``park_after_ms`` for room in the
    router's ring with nothing moving (a router stopped, fenced or restarting): the wait
    strategy's own bound on a wait nothing ends (blocking: ``park_timeout_s``; sleep:
    ``max_sleep_s``; yield, which never sleeps long: ``IDLE_NAP_S``), never under the loop's
    1 ms tick. A record on an input ring ends it sooner, as the router's commit that makes
    the room does (``RingWaker``'s ``room_for``)."""
    if wait.strategy == "blocking":
        return max(IDLE_NAP_S, wait.park_timeout_s)
    if wait.strategy == "sleep":
        return max(IDLE_NAP_S, wait.max_sleep_s)
    return IDLE_NAP_S


class GatewayServer(GatewayConnections, GatewayRestart, OrderLogging, RestWiring, UserRequests):
    def __init__(self, cfg: RingexConfig, name: str, *, codec: RecordCodec | None = None) -> None:
        gw = next((g for g in cfg.gateways if g.name == name), None)
        if gw is None:
            raise ValueError(
                f"gateway {name!r} is not configured ({[g.name for g in cfg.gateways]})"
            )
        self.cfg, self.gw = cfg, gw
        self.directory = gateway_dir(cfg, gw.name)
        self.settings = SessionSettings(
            comp_id=gw.comp_id,
            min_heartbeat_s=gw.min_heartbeat_s,
            max_heartbeat_s=gw.max_heartbeat_s,
            sending_time_tolerance_s=gw.sending_time_tolerance_s,
            max_messages_per_s=gw.max_messages_per_s,
            max_inbound_per_s=gw.max_inbound_per_s or 2 * gw.max_messages_per_s,
            max_message_bytes=gw.max_message_bytes,
            logon_timeout_s=gw.logon_timeout_s,
            reset_on_logon=gw.reset_on_logon,
            defer_auth=True,
        )
        self.users = UserStore(users_path(cfg))
        if refused := fee_account_refused(self.users, cfg.risk.fee_account):
            raise ValueError(refused)
        self.audit = AuditLog(self.directory / "audit.log")
        self.entry = OrderEntry(
            gw.id, Instruments(cfg.symbols), gw.cancel_on_disconnect, cfg.assets, self.directory
        )
        self.entry.park, self.entry.risk = self.park, cfg.risk
        self.entry.shell_requests[b"BE"] = self.user_request  # UserRequest: user_requests.py
        self._times = Timestamps()
        #: the sessions logged on here, each claimed across the instance's gateways
        self.live: dict[str, Session] = LiveSessions(self.directory.parent / "logged-on")
        self.stores = SessionStores(self.directory / "sessions", gw.max_sessions,
                                    lambda c: c in self.live, self._before_store_save)  # fmt: skip
        self.stores.retire({u.comp_id: u.session for u in self.users.users()})  # (309)
        self.connections: set[Connection] = set()
        #: connections whose session has something to write (or closed) since their last
        #: write: a pass writes those, not every connection (1,000 sessions logged on)
        self._dirty: set[Connection] = set()
        self.codec = codec or RecordCodec()
        self.producer = Ring.attach(cfg.instance, gateway_commands(gw.id), self.codec).producer()
        # the metrics' page, and the one histogram counted here: a new order received ->
        # in the router's ring (the rest are the order entry's), from this start on: one a
        # restart sends again or sends at last is recovery, not intake (its wait spans it)
        self.stats = Counters.open(cfg.instance, gateway_page(gw.id), GATEWAY_COUNTERS)
        self.to_ring, self._started_ns = LatencyHistogram(), wall_clock.now_ns()
        self.order_log = OrderLog(self.directory / "orders.log", gw.order_log_compact_mb << 20)
        self._compact_after = 0.0  # a failed compaction is begun again from then on
        self._in_batch = False  # ``pump`` is taking a batch of events, not logged yet
        self._unwritten: list[Kept] = []  # a write a full disk refused: the next one's first
        self.seen_log = SeenLog(self.directory / "clordids.log")
        #: the REST API's clientOrderIds, a window of their own (``RestOrders.seen``)
        self.api_seen_log = SeenLog(self.directory / API_IDS)
        #: Sequence in the router ring -> slot image, of commands logged and not yet published.
        self._unpublished: dict[int, bytes] = {}
        self.sent = SentCommands(self._unanswered, self.codec.journal_schema_id)  # unanswered
        self._logged_to = self.producer.sequence  # commands below it are in the log
        self.api: RestApi | None = None  # (set below, once recovered)
        self._positions = self._recover(wall_clock.now_ns())
        #: Attached by ``start`` once the listeners are up: holding the replies ring is what
        #: the supervisor calls ready, so ready means clients can connect.
        self.inputs: list[Consumer[Record]] = []
        self.api = self._rest_api(cfg, gw)
        self.security_statuses = SecurityStatuses(self)  # e, and halts: security_status.py
        self._api_orders = {}  # taken (or dropped: no REST here), not kept twice
        self.pacing = IntakePacing(cfg.ring.capacity)
        self.burst_limit = max(1, min(self.pacing.high, MAX_BURST_COMMANDS))
        self._publish_due = self._closed = False
        wall_clock.CLOCK.follow(self)  # a step of the wall clock: its sessions' marks move
        self._writes_due: list[Connection] = []  # whose commands publish() logs first
        #: input ring -> the newest event seq handled before a restart, while the ring is
        #: new and its first events are checked against it (``_after_new_rings``)
        self._awaiting: dict[str, tuple[int, int | None]] = {}
        self.port, self._spin_until = gw.port, 0.0
        self._nap: asyncio.Future[None] | None = None
        self._waker: RingWaker | None = None  # set once the input rings are attached
        self._server: asyncio.Server | None = None
        self._closing: asyncio.Task[None] | None = None
        self._stop, self._stop_asked = asyncio.Event(), 0.0  # (monotonic s)

    def _user_of(self, session_id: int) -> User | None:
        return next((u for u in self.users.users() if u.session == session_id), None)

    def park(self, session_id: int, msg_type: bytes, body: bytes, now_ns: int) -> bool:
        """Store a message for a session that is not logged on, with its next MsgSeqNum: the
        client sees the gap at its next logon and its ResendRequest delivers it (PossDup);
        a logon that resets the numbers gets it sent anew (``MessageStore.unsent``)."""
        if (user := self._user_of(session_id)) is None:
            return False
        try:
            store = self.stores.get(user.comp_id, user.session)
        except (MessageStoreError, OSError) as exc:  # damaged, or out of descriptors (256):
            log.error("a report to %s is not parked: %s", user.comp_id, exc)  # undeliverable
            return False
        seq = store.next_out
        header = b"49=%s\x0156=%s\x01" % (self.gw.comp_id.encode(), user.comp_id.encode())
        stamp = self._times.format(now_ns)
        raw = frame(b"35=%s\x01%s34=%d\x0152=%s\x01%s" % (msg_type, header, seq, stamp, body))
        store.park(seq, raw)
        store.flush()
        self.audit.record(now_ns, False, user.comp_id, raw)
        return True

    def store(self, comp_id: str) -> MessageStore:  # its user's, not a removed one's (309)
        user = self.users.get(comp_id)
        return self.stores.get(comp_id, None if user is None else user.session)

    def submit(self) -> None:
        """Publish what a client just sent and wake the poll loop: its answer is on the way.

        The publish waits for the end of this pass of the event loop, so that the requests
        of every connection that had data in it go out together: one log write and one ring
        publish for all of them (the loop runs its ready callbacks in order, this one after
        the reads that were already due)."""
        if not self._publish_due:
            self._publish_due = True
            asyncio.get_running_loop().call_soon(self._publish_soon)
        self._spin_until = time.perf_counter() + self.gw.idle_spin_us / 1e6
        if self._nap is not None:
            settle(self._nap)

    def _publish_soon(self) -> None:
        self._publish_due = False
        if not self._closed:  # a callback due after ``close`` (at shutdown) has nothing to do
            self.publish()
        due, self._writes_due = self._writes_due, []
        for conn in due:
            self._write(conn)

    @property
    def publish_chunk(self) -> int:
        """Commands a publish puts in the router ring at once: half of it."""
        return max(1, self.producer.ring.capacity // 2)

    def publish(self) -> None:
        """Move waiting commands into the router ring, logging them first; pace the intake."""
        outgoing, step = self.entry.outgoing, self.publish_chunk
        producer, unpublished = self.producer, self._unpublished
        self._log_outgoing()  # all of them, whatever the ring takes: none is logged below
        # the ClOrdIDs after the orders that use them, before their commands go: a ClOrdID
        # logged without its order made the client's resend a silent no-op (review 39); an
        # order logged without its ClOrdID gets it back at the restart (``_recover``)
        self.seen_log.keep(self.entry.seen)
        self._keep_api_seen()
        while outgoing:
            chunk = outgoing[:step]
            base = producer.sequence
            # the images the log holds: the records are not encoded a second time
            seqs = range(base, base + len(chunk))
            if not producer.try_publish_slots(b"".join([unpublished[s] for s in seqs]), len(chunk)):
                break
            self.sent.published(base, producer.ring.created_ns, chunk, unpublished)
            now, started = wall_clock.now_ns(), self._started_ns
            for command in chunk:
                if type(command) is NewOrder and command.ts_ns >= started:
                    self.to_ring.record(now - command.ts_ns)
            del outgoing[: len(chunk)]
        if isinstance(self.live, LiveSessions):  # ended sessions' claims, once what they sent
            self.live.let_go(outgoing)  # is in the ring (reviews 244, 246)
        backlog = max((c.ring.cursor() - c.sequence for c in self.inputs), default=0)
        paused = self.pacing.update(bool(outgoing), backlog, producer.backlog())
        if paused is not None:  # intake.py: reading stops while the exchange is behind
            for c in self.connections:
                c.sync_reading()

    # -- the loop ---------------------------------------------------------------------------

    def pump(self) -> int:
        """Publish, take events, write reports; returns how many events it took. From the
        first event to the batch's frame, a store's save logs nothing (``order_logging.py``)."""
        self.publish()
        count, cut = 0, False  # cut: a ring held more than this pass read (review 228)
        process = self.entry.process
        api = self.api
        moved: list[Consumer[Record]] = []
        handled, parts = self._handled, self._handled_part
        self._in_batch = True
        try:
            for consumer in self.inputs:
                self.entry.replaying = self.read_again(consumer)
                events = consumer.read(EVENTS_PER_PASS)
                if not events:
                    continue
                moved.append(consumer)
                if len(events) >= EVENTS_PER_PASS:  # and more left (review 233: none)
                    cut = cut or consumer.ring.cursor() > consumer.sequence
                if self._awaiting and consumer.ring.name in self._awaiting:
                    events = self._after_new_rings(consumer, events)
                note_handled(consumer.ring.name, events, handled, parts)
                for event in events:
                    process(event)
                if api is not None:
                    rest = api.core.process
                    for event in events:
                        rest(event)
                count += len(events)
            if moved:
                if api is not None:
                    api.after_batch(cut)
                dirty, self._dirty = self._dirty, set()
                for conn in dirty:
                    conn.write()  # the first write's take put the pass's audit lines out
                self.audit.flush()  # the lines no write carried: orders not acked yet, parked
                # reports are in the sessions' stores: now the log, then the cursors
                self._log_batch(
                    [self._position(c) for c in moved]
                    + [
                        (HANDLED, c.ring.name, handled.get(c.ring.name, 0), parts.get(c.ring.name))
                        for c in moved
                    ]
                )
                for consumer in moved:
                    consumer.commit()
                counted = [*self.entry.counters(), *self.to_ring.values()]
                self.stats.values[:] = array("Q", counted)
        finally:  # (reports made after it, a status answer's, are no repeats: review 293)
            self._in_batch = self.entry.replaying = False
        return count

    async def _poll(self) -> None:
        """Pump while events flow; when the rings are empty, keep looking for ``idle_spin_us``
        after the last event or client request (the answer to what a client just sent
        usually comes within it), then nap until a ring has a record (its producer writes
        the FIFO the loop watches: ``RingWaker``), a client sends something (``submit`` ends
        it) or ``IDLE_NAP_S`` passes; ``park_after_ms`` after the last activity the naps last
        ``PARKED_NAP_S``. With the busy-spin strategy it never naps; with ``park_after_ms =
        0`` there is no waker and only the 1 ms timer ends a nap.

        Waiting for the ring rather than the timer is what an answer that comes after the
        spin window gains: uvloop's timers tick in whole milliseconds, so a 1 ms nap added
        up to a millisecond to an order -> ack at low rates. A ring wakes the loop in about
        30 us here, as a socket does; a nap costs the loop an arm and a disarm (no syscall).

        Commands that the router's ring has no room for are activity only when some of them
        go in: a pass that moves nothing waits as if the rings were empty, since only the
        router can make room, and looking again at once (``sleep(0)``) took the core it
        needed. While the router moves, its answers end such a nap, and the 1 ms timer the
        rare one whose commit came after them. Past ``park_after_ms`` with nothing moving (a
        router stopped), a nap lasts ``held_nap_s`` rather than ``PARKED_NAP_S`` and waits
        for the room as well (``room_for``: the router's commit writes the FIFO of the
        waker's producer): a step of commands the router answers nowhere (watches ended,
        lease 0; journaled orders read again after its restart) ends it with no record on
        an input ring. (Not while the router moves: the commit of each of its steps would
        wake the loop, mostly for room short of a chunk.) No nap can be shorter than the 1 ms
        tick (uvloop runs a shorter timer at once), and a blocking sleep would hold up the
        reports' writes with nothing to end it early."""
        loop = asyncio.get_running_loop()
        spin = self.cfg.wait.strategy == "busy-spin"
        window = self.gw.idle_spin_us / 1e6
        park_after = self.gw.park_after_ms / 1e3
        held_nap = held_nap_s(self.cfg.wait)
        clock = time.perf_counter
        producer, outgoing = self.producer, self.entry.outgoing
        step = self.publish_chunk  # the room a held nap waits for: one publish's chunk
        while not self._stop.is_set():
            sent = producer.sequence
            if self.pump() or producer.sequence != sent:
                self._spin_until = clock() + window
                await asyncio.sleep(0)
            elif spin or clock() < self._spin_until:
                await asyncio.sleep(0)
            else:
                self._nap = nap = loop.create_future()
                # a ring's record (through the waker's watched FIFOs) or a client ends any
                # nap; idle a while, the loop stops looking every millisecond as well
                idle = self._waker is not None and clock() >= self._spin_until + park_after
                longest = held_nap if outgoing else PARKED_NAP_S
                room_for = min(len(outgoing), step) if idle else 0  # 0: not waited for
                try:
                    await nap_for(nap, longest if idle else IDLE_NAP_S, self._waker, room_for)
                finally:
                    self._nap = None

    async def _timers(self) -> None:
        while not self._stop.is_set():
            now = wall_clock.now_ns()
            for consumer in self.inputs:  # alive, as the supervisor's stuck check reads it:
                consumer.heartbeat()  # a loop that turns beats (review 50: none did)
            if self.api is not None:
                self.api.tick(time.monotonic())
            sessions = [c for c in self.connections if c.session is not None]
            for conn in sessions:  # all first, then the writes: one audit write for all
                assert conn.session is not None
                conn.check_stalled(now)  # output that stands still ends it (connection.py)
                conn.session.on_timer(now, conn.reading)
            for conn in sessions:
                self._write(conn)
            self.audit.flush()  # the lines no write carried (inbound, parked)
            self._idle_compaction_step()
            if self.entry.outgoing:  # a timed-out session's cancels (cancel on disconnect)
                self.submit()
            await after_reads.sleep_then_read(1.0)  # its clients' words read first (295)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        gw = self.gw
        self._server = await loop.create_server(
            lambda: Connection(self),
            self.gw.host,
            self.gw.port,
            reuse_port=self.gw.reuse_port or None,
            # a peer that never completes the handshake is not a connection yet (no
            # limit counts it): it gets the logon's time, not asyncio's 60 s (review 97)
            **tls_kwargs(server_context(gw.tls_cert, gw.tls_key), gw.logon_timeout_s),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks = [
            loop.create_task(self._poll(), name="poll"),
            loop.create_task(self._timers(), name="timers"),
        ]
        if self.api is not None:
            await self.api.start()
        me, codec, inst = gateway_consumer(self.gw.id), self.codec, self.cfg.instance
        rings = [Ring.attach(inst, gateway_replies(self.gw.id), codec)]
        rings += [Ring.attach(inst, matcher_output(m.name), codec) for m in self.cfg.matchers]
        self.inputs = [ring.consumer(me, auto_commit=False) for ring in rings]
        if self.api is not None:  # a deadline waits for what the rings hold unread
            self.api.deadlines.behind = self._unread
        if self.gw.park_after_ms and self.cfg.wait.strategy != "busy-spin":
            self._waker = RingWaker(self.inputs, producer=self.producer)
        if self._new_rings:  # what the log says was handled, per ring (``recovery.py``)
            end = journal_end(self.cfg, codec)
            self._awaiting = {  # the matchers' rings: the reply ring holds new replies only
                r.name: within_journal(
                    self._handled.get(r.name, 0), self._handled_part.get(r.name), end
                )
                for r in rings[1:]
                if self._replaced(r)
            }
        self._skip_handled()  # the rings the log has a position in (the others are new)
        self._note_read_again()
        log.info("gateway %s (id %d) listening on %s:%d", gw.name, gw.id, gw.host, self.port)
        self._tasks.append(loop.create_task(sd_notify.watchdog_loop()))
        sd_notify.ready()  # listening, the replies ring held: clients can connect

    def _unread(self) -> Callable[[], bool] | None:
        """None when the input rings hold no event this gateway has not read; else whether
        it has read what they hold now (a REST deadline waits for that: ``deadlines.py``)."""
        marks = [(c, end) for c in self.inputs if (end := c.ring.cursor()) > c.sequence]
        if not marks:
            return None
        return lambda: all(c.sequence >= end for c, end in marks)

    def _replaced(self, ring: Ring[Record]) -> bool:
        """Whether ``ring`` is new since the order log's position in it (or has none). One
        read since a full restart is not: a plain restart before the gateway logged every
        ring's position since is taken for a full one, and a matcher's ring it had read
        then had its first events checked as a new ring's, from the committed cursor: the
        rest of a command's events were dropped as handled (review 42)."""
        logged = self._positions.get(ring.name)
        return logged is None or logged[0] != ring.created_ns

    def stop(self) -> None:
        """SIGTERM or SIGINT. The first closes intake and lets what is in flight be answered
        (``_close_intake``); a second (past half a second: a parent-death signal comes once per
        thread of a multi-threaded parent), or a stop before the loop runs, stops at once."""
        if self._closing is None and not self._stop.is_set():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._closing = loop.create_task(self._close_intake(), name="close-intake")
                self._stop_asked = time.monotonic()
                return
        if time.monotonic() - self._stop_asked < 0.5:
            return
        self._stop.set()
        if self._nap is not None:
            settle(self._nap)

    def in_flight(self, pending: list[int] | None = None) -> int:
        """Requests of this gateway's clients not yet answered by the exchange (``pending``:
        the refs ``OrderEntry.pending_new`` gave, to look at instead of every order)."""
        waiting = self.entry.in_flight(pending) + len(self._unpublished)
        if self.api is not None:
            waiting += len(self.api.core.requests)
        return waiting

    async def _close_intake(self) -> None:
        """Stop taking new orders, keep delivering reports until every request in flight is
        answered or ``stop_grace_s`` passes, then stop: a client sees the outcome of all it
        sent before its Logout, and the rings are left drained of this gateway's commands."""
        grace = self.gw.stop_grace_s
        self.entry.closing = True
        pending = self.entry.pending_new()  # no new order comes now: only these can wait
        log.info("stopping: intake closed, up to %.1f s for %d requests in flight",
                 grace, self.in_flight(pending))  # fmt: skip
        if self.api is not None:
            self.api.closing = True
        if self._server is not None:
            self._server.close()  # no new connections; the sessions stay
        deadline = time.monotonic() + grace
        while self.in_flight(pending) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        left = self.in_flight(pending)
        if left:
            log.warning("stopping with %d requests unanswered after %.1f s", left, grace)
        self._stop.set()
        if self._nap is not None:
            settle(self._nap)

    async def run(self) -> None:
        """Serve until ``stop()``. Should the poll or timer task fail (a bug), log it, shut
        down and raise, so that the process exits and its supervisor restarts it (the
        restart recovers) instead of leaving a gateway that takes orders but never answers."""
        await self.start()
        stopped = asyncio.ensure_future(self._stop.wait())
        workers = self._tasks[:2]  # poll and timers; the watchdog's returns at once when off
        done, _ = await asyncio.wait([stopped, *workers], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        failed = next(
            (t for t in done if t is not stopped and (t.exception() or not self._stop.is_set())),
            None,
        )
        error = failed.exception() if failed is not None else None
        if failed is not None:
            log.critical("gateway task %s ended; stopping the gateway", failed.get_name(),
                         exc_info=error)  # fmt: skip
        await self.shutdown()
        if failed is not None:
            raise RuntimeError(f"gateway task {failed.get_name()} ended: {error!r}") from error

    async def shutdown(self, grace_s: float = 1.0) -> None:
        """Log every session out (waiting up to ``grace_s`` for the replies), then close."""
        self._stop.set()
        if self._closing is not None and self._closing is not asyncio.current_task():
            self._closing.cancel()
        sd_notify.stopping()
        if self._server is not None:
            self._server.close()
        now = wall_clock.now_ns()
        for conn in list(self.connections):
            if conn.session is not None:
                conn.session.logout("gateway shutting down", now)
                self._write(conn)
        deadline = time.monotonic() + grace_s
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)  # a plain connection is lost at its close
        for conn in list(self.connections):  # a TLS one waits for the peer's close_notify, past
            if conn.transport is not None:  # the logs' close below (review 99): cut
                conn.abort()  # (what its transport held parked again: review 204)
        deadline = time.monotonic() + 0.5  # (their connection_lost: their cancels published)
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.api is not None:
            await self.api.stop()
        await self.security_statuses.close()
        await asyncio.sleep(0)
        for task in getattr(self, "_tasks", []):
            task.cancel()
        self.publish()
        self.close()
        self.mark_clean_stop()

    def close(self) -> None:
        if self._closed:  # a shutdown after a shutdown
            return
        self._closed = True
        self.stats.close()
        self.order_log.close()
        self.seen_log.close()
        self.api_seen_log.close()
        self.audit.close()
        self.stores.close()
        if isinstance(self.live, LiveSessions):
            self.live.release_all()  # (a process that dies drops them anyway)
        if self._waker is not None:  # it watches the consumers' and the producer's FIFOs
            self._waker.close()
        self.producer.close()
        for consumer in self.inputs:
            consumer.close()
