"""Review 93, hostile and security-minded: what a local user of the host, an unauthenticated
peer of the FIX port, or a holder of a captured REST request can do to a venue. Rigs: the
gateway tests' harness and ``rest_rig.py`` (real TCP and HTTP in front of real rings, an
in-process router and matcher), review 36's pair of gateways, and real files under
``var/`` and ``/dev/shm`` (modes read after the code that writes them ran, under the usual
umask 022).

The tests under "faults" each pin a fault the review found, fixed since (their docstrings say
what was wrong and where), but one: a signature replayed to another gateway, a documented
limit (its strict xfail). The others pin what was probed and holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import msgspec
import posix_ipc
import pytest

from config.schema import DatabaseConfig
from procs.common.snapshots import SnapshotStore
from procs.common.topology import gateway_commands
from procs.gateway.rest import RestApi
from shm import Ring
from shm.errors import ShmError
from shm.wait import FIFO_DIR, Parker, fifo_path
from tests.unit.gateway.harness import CODEC, Client, Harness, config, run_scenario
from tests.unit.gateway.rest_rig import LIMIT, client, fix_user, rest_exchange, run
from tests.unit.gateway.test_review36_gateways import Pair, alice_at_two, rest_config, same_key
from tests.unit.gateway.test_review36_gateways import run as run_pair

ORDER = b"symbol=BTC-USD&side=BUY&type=LIMIT&price=100.00&quantity=0.10"


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    """A host's usual umask: what a file is made with where the code does not say."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def _fix_only(instance: str, tmp_path: Path, **gateway: object) -> Harness:
    cfg = config(instance, tmp_path, **gateway)
    h = Harness(msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False)))
    h.add_user("ALICE", "alice-pw", 7)
    h.fund(7)
    return h


def _others_may(path: Path) -> int:
    """The permission bits ``path`` gives its group and everyone else."""
    return stat.S_IMODE(path.stat().st_mode) & 0o077


async def _traded(h: Harness, url: str) -> None:
    """ALICE places an order over REST; BOB logs on over FIX and sells into it: the
    journal, BOB's session store and the order logs all have something of both."""
    alice = await client(url, "ALICE", "alice-pw")
    await alice.call("POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10")
    bob = await fix_user(h, "BOB", "bob-pw")
    await bob.send(
        "D", (11, "bob-1"), (55, "BTC-USD"), (54, "2"), (60, "20250101-00:00:00"),
        (38, "0.10"), (40, "2"), (44, "100.00"), (59, "1"),
    )  # fmt: skip
    await bob.expect("8")  # New
    await bob.expect("8")  # the fill
    await alice.close()


# -- faults ------------------------------------------------------------------------------------


def test_a_fix_sessions_store_is_not_readable_by_other_local_users(harness: Harness) -> None:
    """A local user of the host reads ``var/<instance>/gateway/<gw>/sessions/<CompID>/
    messages``: every message the gateway sent the session, its execution reports (order
    ids, prices, sizes, fills, commissions) among them. The audit journal, which holds the
    same messages, is made 0600 on purpose (``audit.py``), as are the order log and the
    ClOrdID windows; the store is opened with ``path.open("ab")`` (the umask's 0644,
    store.py:101) and ``seqnums`` with an explicit 0o644 (store.py:87), in directories
    ``make_dirs`` leaves 0755. Fix: open both (and ``carried``, store.py:230) with 0600 and
    ``fchmod`` one an older build made, as ``AuditLog._open`` does."""
    run(harness, lambda api, url: _traded(harness, url))
    sessions = Path(harness.cfg.var_dir) / harness.cfg.instance / "gateway" / "gw1" / "sessions"
    store = sessions / "BOB"
    assert b"35=8" in (store / "messages").read_bytes()  # its execution reports are there
    assert {p.name: _others_may(p) for p in store.iterdir()} == {
        "messages": 0,
        "seqnums": 0,
        "owner": 0,
    }


def test_the_journal_and_the_snapshots_are_not_readable_by_other_local_users(
    harness: Harness,
) -> None:
    """Every command of every account (orders with their prices and sizes, deposits and
    withdrawals) is in the journal, and every account's balances in the router's snapshots.
    A new segment is made ``0o644`` (journal_writer.py:428) and a snapshot with the umask's
    mode (``replace_durably(path, ...)`` without ``mode``, snapshots.py:69, durable.py:56),
    so any local user reads the whole venue's flow; the standby writes the very same
    segments 0600 (``procs/replica/files.py:190``). Fix: 0o600 for segments, snapshots (the
    router's, the matchers', the writer's) and ``durable``; fchmod those an older build
    made."""
    run(harness, lambda api, url: _traded(harness, url))
    journal = Path(harness.cfg.var_dir) / harness.cfg.instance / "journal"
    segments = sorted(journal.glob("*.journal"))
    assert segments
    snapshot = SnapshotStore(Path(harness.cfg.var_dir) / "snapshots-probe").save(1, b"balances")
    assert [_others_may(p) for p in [*segments, snapshot]] == [0] * (len(segments) + 1)


def test_unauthenticated_junk_over_many_connections_does_not_fill_the_audit_journal(
    instance: str, tmp_path: Path
) -> None:
    """Anyone who can reach the FIX port connects, sends 64 KiB that hold no Logon, is
    closed (``MAX_BYTES_BEFORE_LOGON``), connects again: each connection's bytes are
    journaled whole (``Session.data_received`` records every garbled chunk, logged on or
    not) and its close writes a warning line to the process log, neither bounded across
    connections nor per address. Measured: 20 connections, 1.39 MB sent, audit.log grew by
    1.39 MB. Fix: before a Logon is accepted, journal a connection's garbled input cut short
    (its first few hundred bytes and a count of the rest), and quiet the per-connection
    warning (``quiet_log``) as the REST side does."""
    h = _fix_only(instance, tmp_path)
    audit = Path(h.cfg.var_dir) / instance / "gateway" / "gw1" / "audit.log"
    chunk = b"x" * 4095 + b"\x01"
    sent = 0

    async def scenario(h: Harness, port: int) -> None:
        nonlocal sent
        before = audit.stat().st_size
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            with contextlib.suppress(OSError):
                for _ in range(17):
                    writer.write(chunk)
                    sent += len(chunk)
                    await writer.drain()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(reader.read(), 5)  # closed by the gateway
            writer.close()
        assert h.gateway is not None
        h.gateway.audit.flush()
        grew = audit.stat().st_size - before
        assert grew < sent // 8, f"{sent} bytes sent without a Logon, the audit grew {grew}"

    run_scenario(h, scenario)


def test_one_address_cannot_take_every_fix_connection(instance: str, tmp_path: Path) -> None:
    """An unauthenticated peer opens ``max_sessions`` (1,000 by default) connections and sends
    nothing: each lasts ``logon_timeout_s`` (10 s) and is opened again when it closes. Every
    other client's connection is then closed at once (``connection_made``: "refused a
    connection: N sessions is the limit", a log line each), so no FIX user can log on, while
    the REST port bounds one address (``max_connections_per_address``, review 38). Here
    ``max_sessions`` is 4, the squatter is 127.0.0.1 and ALICE comes from 127.0.0.2. Fix: a
    ``max_connections_per_address`` for the FIX port too, counting connections not logged on
    (or all), well below ``max_sessions``."""
    h = _fix_only(instance, tmp_path, max_sessions=4)

    async def scenario(h: Harness, port: int) -> None:
        squat = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        try:
            await asyncio.sleep(0.2)
            alice = Client("ALICE")
            alice.reader, alice.writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.2", 0)
            )
            try:
                with contextlib.suppress(ConnectionError):
                    await alice.send("A", (98, 0), (108, 30), (554, "alice-pw"))
                answer = await alice.recv(3.0)
                assert answer is not None and answer.get(35) == b"A", "ALICE was refused"
            finally:
                await alice.aclose()
        finally:
            for _, writer in squat:
                writer.close()

    run_scenario(h, scenario)


def test_fix_logons_from_one_address_are_limited_as_rest_logins_are(
    instance: str, tmp_path: Path
) -> None:
    """The wrong-password limit is per CompID (``failed_logins``), so a peer that names a new
    CompID at each Logon is never slowed, and each Logon costs the gateway a full scrypt
    (``UserStore.verify`` hashes for an unknown user too, ~16 MiB and tens of ms), on the
    event loop's default executor that real Logons share: a few hundred in flight from one
    address hold a real Logon past its ``logon_timeout_s``. The REST login is limited per
    address (``login_rate_per_s`` 2, burst 10, then 429); the FIX door is not. Fix: count
    FIX Logons per address on the same limiter as REST logins (``login_limits``), refusing
    one past it with a Logout naming the limit, before the password is checked. Here the
    address's count refills 0.05 a second, not the default 1: 25 Logons one after another,
    each a full scrypt behind a loaded suite's other workers, outlasted the default's burst
    of 20 on a 39-minute make test, and none was refused."""
    h = _fix_only(instance, tmp_path, address_failed_logon_rate_per_s=0.05)
    texts: list[str] = []

    async def scenario(h: Harness, port: int) -> None:
        for n in range(25):
            guess = Client(f"NOBODY{n}")
            await guess.connect(port)
            await guess.send("A", (98, 0), (108, 30), (554, "guess"))
            answer = await guess.expect("5", 5.0)
            texts.append((answer.get(58) or b"").decode())
            await guess.aclose()
        assert any("limit" in t for t in texts), texts[-3:]

    run_scenario(h, scenario, limit_s=60)


@pytest.mark.xfail(
    strict=True,
    reason="a documented limit (README, REST): the replay memory is per gateway process, so "
    "a captured signed order is taken again by another gateway of the instance within its "
    "window (signing.py's docstring); serve the API behind TLS",
)
def test_a_captured_order_is_not_replayed_through_another_gateway(
    instance: str, tmp_path: Path
) -> None:
    """The README: "A signature is accepted once, within its window". With two gateways
    (``reuse_port`` on one port, or two ports; keys sign at every gateway), a request
    captured (the API is plain HTTP: no TLS in ringex) and sent again within its window
    (5 s by default, up to 60 s) is executed once per gateway: the second copy of a signed
    ``POST /api/v1/order`` here books a second order. The code says so
    (``signing.py``'s docstring: "a request replayed to a *different* process is still
    accepted once there"); the README does not, and a venue that scales out its gateways
    doubles a client's orders for whoever can see its traffic. Fix: keep the seen
    signatures where every gateway looks (a shared-memory table keyed by the signature
    hash, like the stream slots' lock files), or bind a signature to its gateway (sign the
    gateway's id)."""
    h = alice_at_two(instance, tmp_path, rest_config())
    h.fund(601, usd=1_000_000 * 10**6, btc=0)
    pair = Pair(h)
    statuses: list[int] = []

    async def scenario(p: Pair) -> None:
        at1 = await client(p.url(p.gw1), "ALICE", "alice-pw")
        at2 = same_key(at1, p.url(p.gw2))
        headers = at1.headers("POST", "/api/v1/order", "", ORDER)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            async with aiohttp.ClientSession() as http:
                for url in (p.url(p.gw1), p.url(p.gw2)):
                    async with http.post(f"{url}/api/v1/order", data=ORDER, headers=headers) as r:
                        statuses.append(r.status)
            open_orders = await at1.call("GET", "/api/v1/openOrders")
        finally:
            await at1.close()
            await at2.close()
        assert statuses[0] == 200
        assert (statuses[1], len(open_orders)) != (200, 2), "the captured order ran twice"

    try:
        run_pair(pair, scenario)
    finally:
        h.close()


@pytest.mark.parametrize("what", ["semaphore", "fifo"])
def test_a_wake_up_semaphore_or_fifo_made_by_another_user_is_not_adopted(
    instance: str, what: str
) -> None:
    """The rings are created exclusively (``O_CREX``, mode 0600), but the semaphores and
    FIFOs beside them in the world-writable ``/dev/shm`` are opened as found:
    ``posix_ipc.Semaphore(name, O_CREAT)`` (wait.py:69, and ``post``, wait.py:187) and
    ``mkfifo`` whose ``FileExistsError`` is ignored, then ``open`` (wait.py:108-110). Their
    names are known (``sem.ringex.<instance>.<ring>.c<i>``), ``Ring.create`` removes none
    of them, and a stop leaves the names free for the next start. A local user who made
    them first, mode 0666, holds them: waiting on the semaphore or reading the FIFO steals
    every post, so a parked router or matcher sleeps to its ``park_timeout_s`` and a parked
    gateway to its 1 s nap on every command (the ``fs.protected_fifos`` sysctl guards
    ``O_CREAT`` opens only). Here the probe makes them 0666 itself, under the ring's names.
    Fix: unlink the ring's semaphores and FIFOs in ``Ring.create`` before the segment's
    magic goes in, and have ``Parker`` check (``fstat``) that what it opened is its own user's
    and 0600, refusing to start otherwise."""
    ring = Ring.create(instance, gateway_commands(1), CODEC, capacity=64, consumers=["router"])
    name = ring.consumer_sem_name(0)
    try:
        old = os.umask(0)
        try:
            if what == "semaphore":
                posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=0o666).close()
            else:
                os.mkfifo(fifo_path(name), 0o666)
        finally:
            os.umask(old)
        words = memoryview(bytearray(64)).cast("Q")
        parker = Parker(words, 0, name)
        try:
            if what == "semaphore":
                mode = os.stat(f"{FIFO_DIR}/sem.{name.lstrip('/')}").st_mode
            else:
                mode = os.fstat(parker.watch()).st_mode
        finally:
            parker.close()
        assert stat.S_IMODE(mode) & 0o077 == 0, f"{what} {name} is {oct(stat.S_IMODE(mode))}"
    finally:
        ring.unlink()
        ring.close()


# -- checked and found correct -----------------------------------------------------------------


def test_checked_secret_files_segments_and_fifos_are_the_owners_alone(harness: Harness) -> None:
    """After a real run (a REST login and order, a FIX logon and fill): the users file (scrypt
    digests), the API keys file (secrets in the clear), the audit journal, the order log and
    the ClOrdID windows are 0600, and so are the rings, the counter pages, the wake-up
    semaphores and FIFOs that run made in /dev/shm (a local user cannot attach to a ring)."""
    shm: dict[str, int] = {}

    async def scenario(api: RestApi, url: str) -> None:
        await _traded(harness, url)
        prefix = f"ringex.{harness.cfg.instance}."
        for entry in Path(FIFO_DIR).iterdir():
            if prefix in entry.name:
                shm[entry.name] = stat.S_IMODE(entry.lstat().st_mode)

    run(harness, scenario)
    gateway = Path(harness.cfg.var_dir) / harness.cfg.instance / "gateway"
    secrets = [
        gateway / "users.json",
        gateway / "apikeys.json",
        gateway / "gw1" / "audit.log",
        gateway / "gw1" / "orders.log",
        gateway / "gw1" / "clordids.log",
        gateway / "gw1" / "api_ids.log",
    ]
    assert {p.name: _others_may(p) for p in secrets} == {p.name: 0 for p in secrets}
    assert any(n.startswith("sem.") for n in shm) and any(n.startswith("fifo.") for n in shm)
    assert {n: m for n, m in shm.items() if m != 0o600} == {}


def test_checked_a_garbled_logon_is_journaled_with_its_password_masked(
    instance: str, tmp_path: Path
) -> None:
    """A Logon with a wrong CheckSum is journaled as the bytes skipped (garbled), not parsed:
    its Password is still written ``***``, as is a NewPassword (925) in a good one."""
    h = _fix_only(instance, tmp_path)
    audit = Path(h.cfg.var_dir) / instance / "gateway" / "gw1" / "audit.log"
    body = (
        b"35=A\x0149=ALICE\x0156=RINGEX\x0134=1\x0152=20250101-00:00:00.000\x0198=0\x01"
        b"108=30\x01554=TopSecretPw\x01925=OtherSecretPw\x01"
    )
    garbled = b"8=FIX.4.4\x019=%d\x01" % len(body) + body + b"10=000\x01"

    async def scenario(h: Harness, port: int) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(garbled)
        await writer.drain()
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.send("A", (98, 0), (108, 30), (554, "alice-pw"), (925, "NewSecretPw"))
        await alice.recv(2.0)
        writer.close()
        assert h.gateway is not None
        h.gateway.audit.flush()

    run_scenario(h, scenario)
    text = audit.read_bytes()
    assert b"|10=000|" in text  # the garbled Logon is journaled
    assert b"554=***" in text and b"925=***" in text
    assert b"SecretPw" not in text and b"alice-pw" not in text


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user's needs root")
def test_another_users_wake_up_semaphore_refuses_the_start_naming_it(instance: str) -> None:
    """The fix's other half: a semaphore under a ring's name that another user owns is not
    narrowed (it is not ours to change) but refused, naming its path, owner and mode."""
    ring = Ring.create(instance, gateway_commands(1), CODEC, capacity=64, consumers=["router"])
    name = ring.consumer_sem_name(0)
    try:
        posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=0o666).close()
        path = f"{FIFO_DIR}/sem.{name.lstrip('/')}"
        os.chown(path, 65534, 65534)
        words = memoryview(bytearray(64)).cast("Q")
        with pytest.raises(ShmError, match=r"belongs to uid 65534 \(mode 06\d\d\)"):
            Parker(words, 0, name)
    finally:
        ring.unlink()
        ring.close()
