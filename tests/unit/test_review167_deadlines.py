"""Review 167: awaits that can wait for ever on a peer.

Every asyncio edge that talks to something outside the process was read for an await on a
peer with no deadline and no liveness check that bounds it, a buffer that grows with what a
peer does not read, and a close that waits on a peer that stopped reading. Five faults were
found, each shown as "still waiting after N seconds" (N <= 3), never a hang, and fixed: their
tests say "Was (fixed)". Each suspicion found wrong is a plain test that pins the good
behaviour. Real sockets and the real servers and clients throughout: a misbehaving peer is a
raw socket with a small receive buffer (so its window closes at once) that does what the
fault needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from procs.common.replication_ack import CONNECTED
from procs.dbwriter.migrate import migrate
from procs.gateway.connection import Connection
from procs.gateway.history import History
from procs.gateway.intake import IntakePacing
from procs.gateway.rest_client import RestClient
from procs.replica import source as source_module
from procs.replica import standby as standby_module
from procs.replica.rebuild import ask_primary
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby
from procs.replica.wire import GENESIS, Ack, EpochHistory, Hello, receive, send
from tests.scripts_loader import load_script
from tests.unit.replica.test_review_replica_bugs import append, pair, until

mm = load_script("market_maker", "r167")
TCP_ESTABLISHED = 1  # tcp_info's first byte (include/net/tcp_states.h)
SMALL_RCVBUF = 4096  # a peer's receive window that closes at once


def _tcp_state(sock: Any) -> int:
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0])


async def let_go_within(sock: Any, seconds: float) -> None:
    """The peer's socket ``sock`` leaves ESTABLISHED within ``seconds``: the other side
    reset or closed it."""
    deadline = time.monotonic() + seconds
    while _tcp_state(sock) == TCP_ESTABLISHED and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert _tcp_state(sock) != TCP_ESTABLISHED, f"still connected {seconds:g} s after the drop"


async def _connect_small(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client whose receive buffer is tiny: once it stops reading, the sender's kernel
    buffers fill within a few hundred kilobytes and the rest waits in the sender's process."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock, limit=SMALL_RCVBUF)


# -- replication: the source and a standby that stops reading ---------------------------------


async def _stuck_standby(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: Callable[..., Any]
) -> None:
    """A source over a journal of megabytes and a raw standby that says Hello, reads the
    EpochHistory and then reads no more: ``body(source, reader, writer)`` runs once the
    source's sender waits in the drain of a full socket. The standby's silence allowed is
    cut to 0.5 s (as ``test_standby_liveness`` does)."""
    monkeypatch.setattr(source_module, "STANDBY_SILENCE_S", 0.5)
    primary, _ = pair(tmp_path)
    append(primary, 1, 60_000)  # megabytes: more than the socket buffers hold
    source = ReplicationSource(primary)
    serving = asyncio.create_task(source.run())
    writer: asyncio.StreamWriter | None = None
    try:
        await asyncio.sleep(0.05)
        reader, writer = await _connect_small(primary.replication.listen_port)
        await send(writer, Hello(1, GENESIS))
        assert isinstance(await receive(reader), EpochHistory)
        await until(lambda: source.block.words[CONNECTED] == 1)
        # the source's sender is stuck in its drain: its user-space buffer holds a frame
        served = next(iter(source._serving.values()))
        await until(lambda: served.transport.get_write_buffer_size() > 0)
        await body(source, reader, writer, served)
    finally:
        if writer is not None:
            writer.transport.abort()  # (the source's side then fails and is let go)
        await asyncio.sleep(0.05)
        source.stopping.set()
        async with asyncio.timeout(5):
            await serving
        source.close()


def test_a_dropped_standby_that_stopped_reading_has_its_socket_let_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed): ``ReplicationSource.serve`` (source.py:294) ends every connection with
    ``writer.close()``. When the ack reader drops a standby for its silence (a host that
    died, a process that hung), the sender had stalled in the drain of a full socket: close
    waits to flush that buffer first, so the socket (its descriptor, up to a 64 MiB frame in
    user space, the kernel's buffers) is kept until the peer reads (never, for a hung one) or
    TCP gives up on a dead host (~15 min); each reconnect of a flapping standby leaves one
    more. ``run`` aborts for exactly this reason at a stop; the drop does not.
    Shows: the dropped standby's socket is still ESTABLISHED 2 s after the drop (no RST, no
    FIN). Fix: ``writer.transport.abort()`` in ``serve``'s finally when the connection ends
    on an error or a drop (a clean end may close)."""

    async def body(source: Any, reader: Any, writer: Any, served: Any) -> None:
        await until(lambda: source.block.words[CONNECTED] == 0, timeout=5.0)  # dropped
        await let_go_within(writer.get_extra_info("socket"), 2.0)

    asyncio.run(_stuck_standby(tmp_path, monkeypatch, body))


def test_a_standby_that_acks_but_never_reads_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed): the sender's drain (``send`` in ``_stream``, source.py:404) has no deadline of
    its own; what is taken to bound it is the ack reader (source.py:351), which drops a
    standby only when it is *silent* for ``STANDBY_SILENCE_S``. A standby that keeps
    acknowledging an old seq (``Ack(seq <= sent)`` is accepted) while reading nothing (a
    broken or hostile build, a reader thread wedged) is never silent: the drain waits for
    ever, the connection counts as a standby connected, and its acks keep the link "alive".
    So the bound holds for a dead or silent standby (pinned below), not for this one.
    Shows: with the silence cut to 0.5 s and an ``Ack(0)`` every 0.2 s, the standby is still
    connected 3 s after the source's socket stopped taking anything. Fix: a progress
    deadline on the sender (``asyncio.timeout`` around ``send`` in ``_stream``, e.g.
    STANDBY_SILENCE_S), or drop a standby whose acks stop advancing while frames wait."""

    async def body(source: Any, reader: Any, writer: Any, served: Any) -> None:
        async def acks() -> None:
            while True:
                await send(writer, Ack(0))
                await asyncio.sleep(0.2)

        acking = asyncio.create_task(acks())
        try:
            deadline = time.monotonic() + 3.0
            while source.block.words[CONNECTED] == 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert source.block.words[CONNECTED] == 0, "still connected after 3 s"
        finally:
            acking.cancel()
            await asyncio.gather(acking, return_exceptions=True)

    asyncio.run(_stuck_standby(tmp_path, monkeypatch, body))


# -- the FIX gateway's connection: a closed session whose client stopped reading -------------


class _Session:
    """What ``Connection.write`` and ``check_stalled`` read of a session: ``out`` is taken
    once, whole (a burst of reports, a resend, then a Logout)."""

    store = None
    behind_bytes = 0
    resending = False
    comp_id = "SLOW"
    heartbeat_ns = 1_000_000_000

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def take_output(self, room: int, now_ns: int) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def data_received(self, data: bytes, now_ns: int) -> None:  # (never sent here)
        pass


class _Owner:
    """The gateway, as a connection sees it (``connection.Owner``)."""

    def __init__(self) -> None:
        self.pacing = IntakePacing(4096)
        self.conn: Connection | None = None
        self.lost = False

    def connection_made(self, conn: Connection) -> None:
        self.conn = conn
        assert conn.transport is not None  # a small kernel buffer: it fills at once
        sock = conn.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_RCVBUF)
        conn.session = _Session()  # type: ignore[assignment]  # its parts a connection uses

    def after_input(self, conn: Connection) -> None:
        pass

    def connection_lost(self, conn: Connection) -> None:
        self.lost = True


async def _fix_client_not_reading(closed: bool) -> tuple[bool, float]:
    """A real ``Connection`` behind a real listener; a client that reads nothing gets 2 MB
    (under ``MAX_UNSENT_BYTES``) and, when ``closed``, its session ends. The timers'
    ``check_stalled`` is then called as a second's ticks would, with the clock past
    ``STALL_HEARTBEATS`` intervals. Returns whether the connection was lost, and when."""
    owner = _Owner()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(owner), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await _connect_small(port)
    try:
        await until(lambda: owner.conn is not None)
        conn = owner.conn
        assert conn is not None and isinstance(conn.session, _Session)
        conn.session.out = [b"x" * (2 << 20)]
        conn.session.closed = closed
        conn.write()  # past the high-water mark (paused); closed: transport.close()
        assert conn.writing_paused
        began = time.monotonic()
        now = time.time_ns()
        while not owner.lost and time.monotonic() - began < 3.0:
            conn.check_stalled(now)
            now += 3 * _Session.heartbeat_ns
            await asyncio.sleep(0.1)
        return owner.lost, time.monotonic() - began
    finally:
        writer.transport.abort()
        server.close()
        await asyncio.sleep(0.05)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                await server.wait_closed()


def test_a_closed_fix_session_whose_client_stopped_reading_is_let_go() -> None:
    """Was (fixed): a session that ends while its client does not read (the gateway's Logout
    after a removed user, a logout timeout, a Logout read behind a big resend) is closed
    with ``transport.close()`` (connection.py:178), which waits to flush the unsent output
    first: a zero window never flushes. ``check_stalled`` would abort it, but skips a
    transport already closing (connection.py:195), so ``connection_lost`` never comes: the
    connection stays in ``GatewayServer.connections`` for ever, holding one of
    ``max_sessions`` and its buffers (up to ``MAX_UNSENT_BYTES``).
    Shows: the connection is not lost 3 s after the close, ``check_stalled`` called with
    the clock past the stall limit at every tick. Fix: in ``check_stalled``, abort a
    stalled transport whether or not it is closing (or abort, not close, a closed session
    whose output is paused)."""
    lost, _ = asyncio.run(_fix_client_not_reading(closed=True))
    assert lost, "still connected 3 s after its session closed"


# -- the scripts' REST client and the market maker -------------------------------------------


def _mute(accepted: list[float] | None = None) -> Callable[..., Awaitable[None]]:
    """A server's handler that reads and never answers (a gateway wedged, a host behind a
    black hole, a primary that says nothing), noting when each connection came."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if accepted is not None:
            accepted.append(time.monotonic())
        with contextlib.suppress(ConnectionError):
            while await reader.read(1 << 16):
                pass
        writer.close()

    return hold


async def _silent_http_server() -> tuple[asyncio.Server, int]:
    """Accepts and reads, never answers."""
    server = await asyncio.start_server(_mute(), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _book() -> Any:
    market = mm.Market.from_info(
        {"symbol": "BTC-USD", "pricePrecision": 2, "quantityPrecision": 4,
         "tickSize": "0.01", "stepSize": "0.0001", "minQty": "0.0001"}
    )  # fmt: skip
    mid = 3_000_000
    grid = mm.Grid.around(market, mid, levels=2)
    walk = mm.MidWalk(mid, market.tick, random.Random(1), vol_ticks=grid.step / market.tick)
    return mm.Book(market, walk, grid, max_inventory=market.size(mid, 50_000))


def test_the_market_maker_stops_while_the_gateway_does_not_answer() -> None:
    """Was (fixed): ``MarketMaker.run`` looks at ``stop`` (Ctrl-C, SIGTERM) only between cycles
    (market_maker.py:239), and every call of the cycle goes through ``RestClient``, whose
    ``ClientSession`` (rest_client.py:46) has aiohttp's default deadline: 300 s a request.
    A gateway that takes the connection and never answers (wedged, or a host gone behind
    a kept-alive connection) holds a cycle 5 minutes a call, the stop with it, and the exit
    path after it (``cancel_all``, then each key's DELETE: 300 s each again).
    Shows: ``run`` is still running 2 s after ``stop`` was set. Fix: a ``ClientTimeout``
    of seconds in ``RestClient`` (a parameter, e.g. total=10), and ``run`` racing each cycle
    against ``stop`` (cancel the cycle when it is set); bound the exit's calls too."""

    async def scenario() -> bool:
        server, port = await _silent_http_server()
        api = RestClient(f"http://127.0.0.1:{port}")
        api.api_key, api.secret = "k", "s"
        bot = mm.MarketMaker(api, api, [_book()], random.Random(1), interval_s=0.05)
        stop = asyncio.Event()
        running = asyncio.create_task(bot.run(stop))
        try:
            await asyncio.sleep(0.3)  # its first cycle waits for the openOrders answer
            stop.set()
            done, _ = await asyncio.wait({running}, timeout=2.0)
            return bool(done)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await api.close()
            server.close()

    assert asyncio.run(scenario()), "still running 2 s after stop"


# -- the gateway's history reads --------------------------------------------------------------


def test_a_history_read_the_database_holds_ends(dsn: str) -> None:
    """Was (fixed): ``History._rows`` bounds the wait for a pool connection (5 s) but not the
    query (history.py:254): no ``statement_timeout``, no ``asyncio.timeout``, and the pool's
    connections have no keepalives or ``tcp_user_timeout`` (the writer's have, store.py).
    A query the server holds (a lock the writer's migration or an operator holds, a server
    hung, a host gone without a reset) waits for ever, and with it the REST request and
    the pool connection: four such and every history route waits 5 s for a 503.
    Shows: ``filed_seq`` still waits 3 s after it began, the table locked by another
    session. Fix: ``options="-c statement_timeout=..."`` and keepalives/``tcp_user_timeout``
    in the pool's kwargs, and/or ``asyncio.timeout`` around the execute (the REST layer
    already answers 503 for a failed query)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    locker = psycopg.connect(dsn)
    locker.execute("LOCK TABLE checkpoint IN ACCESS EXCLUSIVE MODE")

    async def scenario() -> bool:
        history = History(dsn, max_connections=1, query_s=1.0)
        await history.open()
        reading = asyncio.create_task(history.filed_seq())
        try:
            done, _ = await asyncio.wait({reading}, timeout=3.0)
            return bool(done)
        finally:
            locker.rollback()  # the lock let go: the read ends, and is awaited
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await reading
            await history.close()

    try:
        assert asyncio.run(scenario()), "still waiting for the database after 3 s"
    finally:
        locker.close()


# -- checked and found correct ----------------------------------------------------------------


def test_a_standby_that_stops_reading_and_acking_is_dropped_with_its_stuck_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accepted point, for the standby it is meant for: the sender stuck in the drain of
    a socket that takes nothing is ended by the ack reader's silence (``STANDBY_SILENCE_S``,
    here 0.5 s): the standby is dropped within it and the sender's task is gone."""

    async def body(source: Any, reader: Any, writer: Any, served: Any) -> None:
        began = time.monotonic()
        await until(lambda: source.block.words[CONNECTED] == 0, timeout=3.0)
        assert time.monotonic() - began < 0.5 + 1.0
        await until(lambda: not source._serving, timeout=1.0)  # serve (and its tasks) ended

    asyncio.run(_stuck_standby(tmp_path, monkeypatch, body))


def test_a_standby_reconnects_when_the_primary_never_answers_its_hello(tmp_path: Path) -> None:
    """``Standby._follow`` reads the primary's first answer and every frame after it within
    ``SILENCE_S`` (``receive_within``): a primary that takes the connection and says nothing
    is left, and connected again, in about 2 s, not held for TCP's minutes."""
    _, secondary = pair(tmp_path)
    port = int(secondary.replication.primary_address()[1])

    async def scenario() -> float:
        accepted: list[float] = []

        server = await asyncio.start_server(_mute(accepted), "127.0.0.1", port)
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        try:
            await until(lambda: len(accepted) >= 2, timeout=5.0)
            return accepted[1] - accepted[0]
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            standby.journal.close()
            server.close()

    assert asyncio.run(scenario()) < 2.0 + 1.0


def test_a_standby_leaves_a_primary_that_never_answers_its_tls_handshake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Was (fixed; the review's first untested suspicion): the standby's connect
    (``open_connection`` with the link's TLS, standby.py) had no deadline but the event
    loop's 60 s for a TLS handshake, against its own 2 s silence. Now ``CONNECT_S``, here cut
    to 0.5 s: a port that takes the connection and never answers the ClientHello is left
    and tried again, saying why."""
    monkeypatch.setattr(standby_module, "CONNECT_S", 0.5)
    _, secondary = pair(tmp_path)
    port = int(secondary.replication.primary_address()[1])
    caplog.set_level(logging.WARNING)

    async def scenario() -> int:
        accepted: list[float] = []

        server = await asyncio.start_server(_mute(accepted), "127.0.0.1", port)
        standby = Standby(secondary)
        standby._tls = ssl.create_default_context()  # a TLS link; the peer never answers
        following = asyncio.create_task(standby.run())
        try:
            await until(lambda: len(accepted) >= 2, timeout=3.0)
            return len(accepted)
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            standby.journal.close()
            server.close()

    assert asyncio.run(scenario()) >= 2
    said = [r.getMessage() for r in caplog.records]
    assert any("no connection within 0.5 s" in m for m in said), said


def test_asking_a_silent_primary_for_its_epochs_times_out() -> None:
    """``ask_primary`` (``failover.py demote``'s first question) against a port that takes
    the connection (the kernel's backlog) and never answers: TimeoutError within its
    ``timeout_s``, not a wait for ever on ``receive``, which has no silence of its own."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            ask_primary("127.0.0.1", listener.getsockname()[1], timeout_s=0.5)
        assert time.monotonic() - began < 2.0
    finally:
        listener.close()


def test_a_fix_client_that_stops_reading_is_dropped_by_the_stall_check() -> None:
    """``Connection.check_stalled``: a logged-on client whose paused output stands still past
    ``STALL_HEARTBEATS`` intervals is aborted, and the gateway hears ``connection_lost``
    (its slot and buffers let go), whatever the peer does."""
    lost, took = asyncio.run(_fix_client_not_reading(closed=False))
    assert lost and took < 1.0
