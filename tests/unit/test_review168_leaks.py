"""Hostile review 168: kernel resources that leak over a long-running venue (descriptors,
sockets, threads, mappings, files, child processes, locks) per connection, reconnect, failed
attempt, restart or rotation. Each test drives one path many times and compares the process's
counts before and after. The one leak found (a store that cannot be made, two descriptors a
Logon) is fixed, its test says "Was (fixed)"; the rest pin paths found correct."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest
from msgspec.structs import replace

from config.edges import MarketDataConfig
from config.schema import DatabaseConfig, RingexConfig
from procs.common.record_codec import RecordCodec
from procs.dbwriter.store import PgStore
from procs.gateway import store as store_module
from procs.gateway.audit import AuditLog
from procs.gateway.order_log import OrderLog
from procs.replica import standby as standby_module
from procs.replica.wire import Heartbeat, receive, send
from procs.supervisor.child import Child
from procs.supervisor.main import Supervisor
from procs.supervisor.plan import ProcessSpec
from shm import Ring
from tests.free_ports import free_port
from tests.unit.gateway.harness import Client, Harness, config, run_scenario
from tests.unit.gateway.rest_rig import rest_exchange
from tests.unit.gateway.rest_rig import run as rest_run
from tests.unit.gateway.test_tls import CERT, KEY
from tests.unit.marketdata.rig import running
from tests.unit.replica.test_review_replica_bugs import append, following, pair, until

#: What a count may move by for reasons of its own (the event loop, logging, the executor).
SLACK = 3


def fds() -> int:
    """The process's open descriptors, after a full collection: garbage an earlier test left
    (a socket in a cycle) closes when the collector runs, wherever that falls in a count."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def maps() -> int:
    return len(Path("/proc/self/maps").read_text().splitlines())


def threads() -> int:
    """Live threads other than the event loop's default executor's: ``asyncio.to_thread``
    starts a worker whenever none is idle at that instant and keeps it for reuse (named
    ``asyncio_N``, at most ``min(32, cpus + 4)``), a bounded pool, not a per-connection
    thread. Counting them made review 168's reconnect test fail by one on a loaded host."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("asyncio_"))


def fix_exchange(instance: str, tmp_path: Path, **gateway: object) -> Iterator[Harness]:
    cfg = config(instance, tmp_path, **gateway)
    h = Harness(msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False)))
    h.add_user("ALICE", "alice-pw", 7)
    h.fund(7)
    yield h
    h.close()


@pytest.fixture
def fix(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from fix_exchange(instance, tmp_path)


async def refused_logon(port: int, password: str) -> None:
    """A Logon as ALICE with ``password`` that the gateway refuses: the connection closes."""
    alice = Client("ALICE")
    await alice.connect(port)
    await alice.send("A", (98, 0), (108, 30), (554, password))
    assert await alice.closed(3.0)
    await alice.aclose()


async def settle_fds(before: int, timeout_s: float = 2.0) -> int:
    """The descriptor count once it comes back within ``SLACK`` of ``before`` (closes the
    loop has still to run), or what it is when ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while fds() > before + SLACK and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return fds()


# -- leaks found ------------------------------------------------------------------------------


def test_a_logon_whose_store_cannot_be_made_leaks_no_descriptor(
    fix: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed: ``__init__`` closes both on any failure). ``MessageStore.__init__``
    opened ``seqnums`` and ``messages``, then wrote the header and might recover
    ``carried``, and its ``try`` covered only the load between the two opens: an OSError
    from the header write (a full disk), ``fchmod`` or ``_recover_carried`` left both open.
    The gateway answers such a Logon by aborting the session and keeps no store it failed
    to make, so every retry of the client made a new one: two descriptors a Logon while
    the disk was full, until EMFILE refused every connection of the venue.
    Now: 30 Logons refused for a full disk, no more descriptors after than before."""

    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "write_all", full)
    counts: list[int] = []

    async def scenario(h: Harness, port: int) -> None:
        await refused_logon(port, "alice-pw")  # the executor's thread, the first connection
        before = await settle_fds(fds())
        for _ in range(30):
            await refused_logon(port, "alice-pw")
        counts.extend((before, await settle_fds(before)))

    run_scenario(fix, scenario)
    before, after = counts
    assert after <= before + SLACK, f"descriptors {before} -> {after} over 30 refused Logons"


# -- checked and found correct ----------------------------------------------------------------


def test_logons_with_a_wrong_password_leak_nothing(instance: str, tmp_path: Path) -> None:
    """Connect, Logon with a wrong password, refused and closed, 50 times: the connection,
    its pending check on the executor and the per-address limit keep nothing open."""
    limits = {"failed_login_rate_per_s": 1e3, "failed_login_burst": 1000}
    limits |= {"address_failed_logon_rate_per_s": 1e3, "address_failed_logon_burst": 1000}
    h = next(fix_exchange(instance, tmp_path, **limits))
    counts: list[int] = []

    async def scenario(h: Harness, port: int) -> None:
        await refused_logon(port, "wrong")
        before, tasks = await settle_fds(fds()), threads()
        for _ in range(50):
            await refused_logon(port, "wrong")
        counts.extend((before, await settle_fds(before), tasks, threads()))

    run_scenario(h, scenario)  # (closes the harness too)
    before, after, threads_before, threads_after = counts
    assert after <= before + SLACK, f"descriptors {before} -> {after} over 50 wrong logons"
    assert threads_after <= threads_before + 1


def test_logon_and_logout_fifty_times_leaks_no_lock_nor_store(fix: Harness) -> None:
    """A session logged on and out 50 times: its instance-wide ``flock`` (live_sessions.py)
    goes back at each logout, its store is one kept per CompID (not one per logon), and the
    ``logged-on`` directory holds one file for the CompID."""
    counts: list[int] = []

    async def scenario(h: Harness, port: int) -> None:
        async def session() -> None:
            alice = Client("ALICE")
            await alice.connect(port)
            await alice.logon("alice-pw", reset=True)
            await alice.send("5")
            await alice.expect("5")
            assert await alice.closed(3.0)
            await alice.aclose()

        await session()
        before = await settle_fds(fds())
        for _ in range(50):
            await session()
        assert h.gateway is not None
        counts.extend((before, await settle_fds(before), len(h.gateway.stores)))
        counts.append(len(list((h.gateway.directory.parent / "logged-on").iterdir())))

    run_scenario(fix, scenario)
    before, after, stores, lock_files = counts
    assert after <= before + SLACK, f"descriptors {before} -> {after} over 50 sessions"
    assert (stores, lock_files) == (1, 1)


def test_failed_tls_handshakes_on_the_fix_port_leak_nothing(instance: str, tmp_path: Path) -> None:
    """50 clients that fail the handshake (one that does not trust the certificate, one that
    sends plain FIX): each socket is closed by the gateway."""
    h = next(fix_exchange(instance, tmp_path, tls_cert=CERT, tls_key=KEY))
    counts: list[int] = []

    async def scenario(h: Harness, port: int) -> None:
        distrust = ssl.create_default_context()  # the system's CAs: not the tests' one

        async def failed(k: int) -> None:
            client = Client("ALICE")
            if k % 2:
                with pytest.raises(ssl.SSLError):
                    await client.connect(port, tls=distrust)
                return
            await client.connect(port)
            with contextlib.suppress(ConnectionError):
                await client.send("A", (98, 0), (108, 30), (554, "alice-pw"))
            assert await client.recv(3.0) is None
            await client.aclose()

        await failed(0)
        await failed(1)
        before = await settle_fds(fds())
        for k in range(50):
            await failed(k)
        counts.extend((before, await settle_fds(before, 5.0)))

    run_scenario(h, scenario)  # (closes the harness too)
    before, after = counts
    assert after <= before + SLACK, f"descriptors {before} -> {after} over 50 failed handshakes"


def test_the_audit_log_renamed_fifty_times_keeps_one_descriptor(tmp_path: Path) -> None:
    """A logrotate that renames ``audit.log`` between flushes, 50 times: each reopen closes the
    old file (audit.py:117-126); a reopen that fails (the directory read-only) keeps the old
    one and opens nothing (review 72's fix holds)."""
    audit = AuditLog(tmp_path / "audit.log")
    audit.record(1, True, "ALICE", b"8=FIX.4.4\x0135=0\x01")
    audit.flush()
    before = fds()
    for k in range(50):
        os.replace(tmp_path / "audit.log", tmp_path / f"audit.log.{k}")
        audit.record(k, True, "ALICE", b"8=FIX.4.4\x0135=0\x01")
        audit.flush()
    after_rotations = fds()
    os.replace(tmp_path / "audit.log", tmp_path / "audit.log.last")
    os.chmod(tmp_path, 0o500)
    try:
        for k in range(50):
            audit.record(k, True, "ALICE", b"8=FIX.4.4\x0135=0\x01")
            audit.flush()
    finally:
        os.chmod(tmp_path, 0o700)
    after_failures = fds()
    audit.close()
    if os.geteuid() == 0:  # root writes a read-only directory: the failing half proves nothing
        after_failures = before
    assert (after_rotations, after_failures) == (before, before)
    assert (tmp_path / "audit.log").exists()


def test_order_log_compactions_keep_one_descriptor(tmp_path: Path) -> None:
    """50 compactions of the gateway's order log (aside file, rename, reopen: order_log.py
    :331-362), and 50 begun then abandoned: the descriptor count and the directory are as
    before."""
    log = OrderLog(tmp_path / "orders.log", 1 << 20)
    log.load()
    before, files = fds(), sorted(p.name for p in tmp_path.iterdir())
    for _ in range(50):
        log.compact(iter(()))
    for _ in range(50):
        log.begin_compaction(iter(()))
        log._abandon_compaction()
    assert fds() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    log.close()


def test_rest_connections_handed_to_aiohttp_leak_nothing(instance: str, tmp_path: Path) -> None:
    """50 connections each with a request the fast lane hands to aiohttp (``/ping``), 50 with
    a malformed one (aiohttp's 400), and 50 asking the market data, which is not running (the
    proxy's refused connection, rest_public.py), each closed by the client: nothing stays
    open, in the server nor in the proxy's client session."""
    nowhere = MarketDataConfig(enabled=True, port=free_port())  # nothing listens there
    h = next(rest_exchange(instance, tmp_path, reshape=lambda c: replace(c, marketdata=nowhere)))
    counts: list[int] = []

    async def scenario(api: object, url: str) -> None:
        port = int(url.rsplit(":", 1)[1])

        async def once(request: bytes) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            status = await reader.readline()
            assert status.startswith(b"HTTP/1.")
            assert b" 503 " in status or request != depth, status
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

        ping = b"GET /api/v1/ping HTTP/1.1\r\nHost: x\r\n\r\n"
        bad = b"GET /api/v1/ping HTTP/1.1\r\nHost x\r\n\r\n"
        depth = b"GET /api/v1/depth?symbol=BTC-USD HTTP/1.1\r\nHost: x\r\n\r\n"
        await once(ping)
        await once(depth)
        before = await settle_fds(fds())
        for _ in range(50):
            await once(ping)
            await once(bad)
            await once(depth)
        counts.extend((before, await settle_fds(before, 3.0)))

    try:
        rest_run(h, scenario)
    finally:
        h.close()
    before, after = counts
    assert after <= before + SLACK, f"descriptors {before} -> {after} over 150 connections"


def test_a_standby_reconnecting_twenty_times_leaks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The primary drops its standby 20 times (its connection aborted): both sides, in this
    process, end with the descriptors and threads they had (the source's journal tail and
    file shipper per connection, the standby's socket per reconnect)."""
    monkeypatch.setattr(standby_module, "STEADY_S", 0.0)  # reconnect at once, no backoff
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)
    counts: list[int] = []

    async def scenario() -> None:
        async with following(primary, secondary) as (source, standby, _):
            await until(lambda: standby.connected and bool(source._serving))
            await asyncio.sleep(0.1)
            before, tasks = fds(), threads()
            for _ in range(20):
                serving = list(source._serving.values())
                for writer in serving:
                    writer.transport.abort()
                await until(
                    lambda s=serving: (
                        standby.connected  # type: ignore[misc]
                        and bool(source._serving)
                        and all(w not in s for w in source._serving.values())
                    )
                )
            await asyncio.sleep(0.1)
            counts.extend((before, await settle_fds(before), tasks, threads()))

    asyncio.run(scenario())
    before, after, threads_before, threads_after = counts
    assert after <= before + SLACK, f"descriptors {before} -> {after} over 20 reconnects"
    assert threads_after <= threads_before


def test_peers_that_fail_the_sources_handshake_leak_nothing(tmp_path: Path) -> None:
    """50 peers at the replication port that send junk, or a Heartbeat instead of a Hello,
    or close at once: each connection is let go (source.py ``_let_go``)."""
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)
    port = primary.replication.listen_port
    counts: list[int] = []

    async def scenario() -> None:
        async with following(primary, secondary) as (_, standby, _):
            await until(lambda: standby.connected)

            async def peer(k: int) -> None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                if k % 3 == 0:
                    writer.write(b"\xff" * 64)
                elif k % 3 == 1:
                    await send(writer, Heartbeat())
                    with contextlib.suppress(Exception):
                        await receive(reader)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

            await peer(1)
            before = await settle_fds(fds())
            for k in range(51):
                await peer(k)
            counts.extend((before, await settle_fds(before, 3.0)))

    asyncio.run(scenario())
    before, after = counts
    assert after <= before + SLACK, f"descriptors {before} -> {after} over 51 bad peers"


def test_a_refused_database_connection_leaks_nothing(tmp_path: Path) -> None:
    """The writer's store opened 50 times against a port where nothing listens (its retry
    loop's path, writer.py ``_retry``): every try's socket closed, no lane thread left."""
    dsn = f"host=127.0.0.1 port={free_port()} dbname=x user=x connect_timeout=2"
    store = PgStore(dsn, RingexConfig(instance="r168", var_dir=str(tmp_path)))
    with pytest.raises(psycopg.OperationalError):
        store.open()
    before, tasks = fds(), threads()
    for _ in range(50):
        with pytest.raises(psycopg.OperationalError):
            store.open()
        store.close()
    assert fds() <= before, "a leak only grows the count"
    assert threads() == tasks


def test_a_child_restarted_twenty_times_leaves_no_descriptor(instance: str, tmp_path: Path) -> None:
    """The supervisor's ``_spawn`` and ``_release`` of a process that exits at once, 20 times
    (what ``_restart`` does): its log file and stdin pipe are closed each time and the
    exited process reaped; no zombie and no descriptor piles up."""
    supervisor = Supervisor(RingexConfig(instance=instance, var_dir=str(tmp_path)), "test")
    child = Child(ProcessSpec("probe", "json", (), (), "", ""))  # json has no main: exits
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    supervisor._spawn(child)
    supervisor._release(child)
    assert child.process is not None
    child.process.wait(30)
    before = fds()
    for _ in range(20):
        supervisor._spawn(child)
        supervisor._release(child)
        child.process.wait(30)
    assert fds() <= before
    assert len(children.read_text().split()) <= 1  # the last one, reaped by its Popen


def test_rings_attached_and_closed_fifty_times_leave_no_mapping(instance: str) -> None:
    """A ring attached (producer or consumer, with its semaphore and FIFO) and closed 50
    times: descriptors and mappings as before."""
    codec = RecordCodec()
    ring = Ring.create(instance, "r168", codec, capacity=64, consumers=["c"])
    try:
        for _ in range(2):
            Ring.attach(instance, "r168", codec).consumer("c").close()
        before, mapped = fds(), maps()
        for _ in range(50):
            Ring.attach(instance, "r168", codec).consumer("c").close()
            Ring.attach(instance, "r168", codec).producer().close()
        assert (fds(), maps()) == (before, mapped)
    finally:
        ring.unlink()


def test_market_data_clients_connecting_fifty_times_leak_nothing(instance: str) -> None:
    """50 WebSocket clients connect, subscribe, and close (or drop the socket): the feed
    keeps no descriptor, and no client, of theirs."""
    counts: list[int] = []

    async def scenario() -> None:
        async with running(instance) as rig:
            async with rig.client() as ws:
                await ws.request("SUBSCRIBE", ["btcusd@trade"])
            before = await settle_fds(fds())
            for k in range(50):
                async with rig.client() as ws:
                    await ws.request("SUBSCRIBE", ["btcusd@trade"])
                    if k % 2:
                        ws.ws.transport.abort()
            await until(lambda: not rig.process.server.clients)
            counts.extend((before, await settle_fds(before, 3.0)))

    asyncio.run(scenario())
    before, after = counts
    assert after <= before + SLACK, f"descriptors {before} -> {after} over 50 clients"
