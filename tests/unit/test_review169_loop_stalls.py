"""Review 169: event-loop stalls. Synchronous work on an asyncio loop (the REST gateway's, the
replication source's) whose length grows with something a client, an operator or time
controls. Each suspect is driven at a size a real venue reaches while a probe task on the
same loop records its worst lateness (``Probe``), or its synchronous call is timed. Stalls
found, all fixed: the Hello's hash (on a thread now), a login's two fresh reads of the users
file, and the whole-file keys and users stores (a snapshot and a log of changes since:
``procs/common/change_log.py``). What was checked and found correct is pinned below them,
with generous bounds (a noisy 2-core VM)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from array import array
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from procs.common.apikeys import ApiKey, ApiKeysFile, ApiKeyStore, keys_crc
from procs.common.journal_history import VERSION
from procs.common.topology import apikeys_path, users_path
from procs.common.users import (
    DEFAULT_N,
    User,
    UsersFile,
    UserStore,
    _as_written,
    users_crc,
)
from procs.gateway.clordids import SeenLog
from procs.gateway.order_log import COMPACT_STEP_ENTRIES, ORDER, OrderLog
from procs.gateway.rest import RestApi
from procs.replica.source import ReplicationSource
from procs.replica.wire import Hello, receive, send
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import client, rest_exchange, run
from tests.unit.replica.test_review_replica_bugs import CODEC, append, pair

#: The lateness a loop's other clients may see from one request or housekeeping step.
BOUND_S = 0.050


class Probe:
    """A task that sleeps 1 ms at a time and keeps its worst latenesses."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.second = 0.0  # the second worst: one stall of the host's alone is not in it

    def within(self, bound_s: float, what: str, *, once: bool = True) -> None:
        """Say the worst lateness, and hold it to ``bound_s``; with ``once=False``, hold the
        second worst to it (for a step done three times or more: each one's stall would
        count, and a single preemption of this process by a busy host is passed over)."""
        seen = self.worst if once else self.second
        print(f"worst lateness {self.worst * 1e3:.0f} ms, second {self.second * 1e3:.0f} ms")
        assert seen < bound_s, f"{what} held the loop {seen * 1e3:.0f} ms"

    async def run(self) -> None:
        while True:
            began = time.perf_counter()
            try:
                await asyncio.sleep(0.001)
            finally:  # a cancel too: a stall just before it counts
                late = time.perf_counter() - began - 0.001
                if late > self.second:
                    self.worst, self.second = max(late, self.worst), min(late, self.worst)


@contextlib.asynccontextmanager
async def probing() -> AsyncIterator[Probe]:
    probe = Probe()
    task = asyncio.create_task(probe.run())
    await asyncio.sleep(0.02)  # under way
    try:
        yield probe
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def fake_users(n: int) -> list[User]:
    """``n`` users with well-formed salts and digests (no scrypt: written, not added)."""
    salt, digest = secrets.token_hex(16), secrets.token_hex(64)
    return [User(f"U{i:06d}", 10_000 + i, 1_000 + i, salt, digest) for i in range(n)]


def users_bytes(path: Path, extra: int) -> bytes:
    """The users file as it is plus ``extra`` users, as `ringex admin add-user` writes it."""
    doc = msgspec.json.decode(path.read_bytes(), type=UsersFile)
    users = sorted([*doc.users, *fake_users(extra)], key=lambda u: u.comp_id)
    last = max(u.session for u in users)
    written = {"users": [_as_written(u) for u in users], "last_session": last}
    return msgspec.json.encode({**written, "crc32": users_crc(users, last)})


def replace(path: Path, data: bytes) -> None:
    """``path`` becomes ``data`` as another process's write makes it (a new inode). Called on
    a thread inside a probe: a plain write lets the GIL go, so the probe sees the gateway's
    work, not the test's (encoding is done before: msgspec holds the GIL throughout)."""
    tmp = path.with_name(path.name + ".r169")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def fake_keys(n: int) -> list[ApiKey]:
    """``n`` keys, 20 a user (``max_keys_per_user``' default), as apikeys.json orders them."""
    return [
        ApiKey(
            secrets.token_urlsafe(24),
            secrets.token_hex(32),
            f"U{i // 20:06d}",
            10_000 + i // 20,
            1_000 + i // 20,
            ["read", "trade"],
            1_700_000_000_000 + i,
        )
        for i in range(n)
    ]


def keys_bytes(keys: list[ApiKey]) -> bytes:
    order = sorted(keys, key=lambda k: (k.comp_id, k.created_ms, k.key))
    return msgspec.json.encode(ApiKeysFile(order, keys_crc(order)))


# -- stalls found ----------------------------------------------------------------------------


def test_a_login_stalls_the_gateway_loop_for_the_whole_users_and_keys_files(
    harness: Harness,
) -> None:
    """Was (fixed: the users' view in review 169, the keys' change log since,
    ``procs/common/change_log.py``). ``POST /api/v1/apiKey`` ran scrypt on a thread, then on
    the loop ``_password_held`` twice, each a fresh ``UserStore`` that decoded, hex-checked
    and CRCed the whole users file, and ``ApiKeyStore.create``, which under a flock read,
    decoded and CRCed all of apikeys.json, sorted it, encoded it, wrote it and fsynced the
    file and the directory. With 20,000 users (5.7 MB) and 40,000 keys (9 MB: 2,000 users at
    the default 20 keys) one login held the loop ~380 ms on the 2-core VM, every other REST
    and FIX client of the gateway frozen; any user with a password may log in again and
    again (``login_rate_per_s`` is per address). Now the password check asks the gateway's
    login view, and a key made is one frame appended to ``apikeys.log`` (3-4 ms here, the
    fsync's)."""
    users, keys = users_path(harness.cfg), apikeys_path(harness.cfg)

    async def scenario(api: RestApi, url: str) -> None:
        users.write_bytes(users_bytes(users, 20_000))
        keys.write_bytes(keys_bytes(fake_keys(40_000)))
        api.keys.refresh()  # (read once before the probe: the refresh is the next test's)
        api.logins.users()
        async with probing() as probe:
            for _ in range(3):
                alice = await client(url, "ALICE", "alice-pw")
                await alice.close()
        # three logins, each of which held the loop before: the second worst is judged, so
        # one preemption of the process by a loaded host is passed over (seen: a full run on
        # a slow host failed the one login's bound)
        probe.within(BOUND_S, "a login", once=False)

    run(harness, scenario)


def test_a_key_made_elsewhere_rereads_apikeys_json_whole_on_every_gateways_loop(
    harness: Harness,
) -> None:
    """Was (fixed: ``apikeys.log``, ``procs/common/change_log.py``). Every signed request
    calls ``ApiKeyStore.find``/``get``, which re-read the whole apikeys.json on the loop when
    its stamp changed (decode, CRC of all keys re-encoded). Every login or logout at any
    gateway of the instance, and every ``ringex admin revoke-key``, changed it, so each
    gateway paid the parse again within ``recheck_s``: 100,000 keys (5,000 users at the
    default 20; 22 MB) held the loop 330-600 ms per change on the 2-core VM (40,000: ~50 ms),
    once per gateway per login anywhere. Now another gateway's key is a frame it appends to
    the log, and this one reads that frame."""
    keys = apikeys_path(harness.cfg)

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            mine = api.keys.get(alice.api_key)
            assert mine is not None
            keys.write_bytes(keys_bytes([mine, *fake_keys(100_000)]))
            api.keys.refresh()
            elsewhere = ApiKeyStore(keys)  # another gateway's (read before the probe)
            bob = harness.users.get("BOB")
            assert bob is not None
            async with probing() as probe:
                made = await asyncio.to_thread(elsewhere.create, bob, "read")
                await asyncio.sleep(0.6)  # past ``recheck_s``: whatever reads it first
                await alice.call("GET", "/api/v1/openOrders")
                assert api.keys.get(made.key) == made
        finally:
            await alice.close()
        probe.within(BOUND_S, "a re-read")

    run(harness, scenario)


def test_an_added_user_rereads_users_json_whole_on_the_gateways_loop(harness: Harness) -> None:
    """Was (fixed: ``users.log``, ``procs/common/change_log.py``). The REST API's view of the
    users (``RestApi.users``, recheck 1 s) and the FIX sessions' (``UserStore`` of
    server.py, read by every logged-on session's timer) re-read the whole users file on the
    loop when it changed (decode, a hex check of every salt and digest, the CRC of all
    users re-encoded). Each `ringex admin add-user`, ``set-password``, ``set-user`` or a
    FIX user's own password change rewrote it: 60,000 users (17 MB) held the loop ~110-140
    ms per change on the 2-core VM (the parse ~1.8 us a user; 30,000: ~55 ms). Now a change
    is a frame appended to the log, and a view reads that frame."""
    users = users_path(harness.cfg)

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await asyncio.to_thread(replace, users, users_bytes(users, 60_000))
            await asyncio.sleep(1.1)  # past the REST view's recheck: the views read it
            api.users.users()
            api.logins.users()
            admin = UserStore(users)  # `ringex admin add-user`, say (read before the probe)
            async with probing() as probe:
                for k, name in enumerate(("CAROL", "DAVE", "ERIN")):  # each one a re-read
                    await asyncio.to_thread(admin.add, name, "pw", 9_999 + k, n=2)
                    await asyncio.sleep(1.1)  # past the REST view's recheck
                    await alice.call("GET", "/api/v1/openOrders")
                    assert api.users.get(name) is not None
        finally:
            await alice.close()
        # the full re-read held it 110-140 ms; a loaded host preempted the loop 51 and 53 ms
        # in one run: the bound sits between
        probe.within(0.080, "a re-read", once=False)

    run(harness, scenario)


def test_a_standby_hello_hashes_a_block_of_entries_off_the_sources_loop(tmp_path: Path) -> None:
    """Was (fixed: ``_history_off_loop``, a thread with a reader of its own, one Hello at a
    time). ``ReplicationSource.serve`` answered a Hello with ``_history_refusal``, whose
    ``_history_before`` read and hashed the
    journal from the start of the Hello's block (``BLOCK`` = 65,536 entries, 11 MB) on the
    loop; only a seq later in the same block as the last one asked is cheap. A standby
    reconnecting (a flapping link), or two at different seqs, at 64,000 into a block: the
    loop held ~80 ms (~1.3 us an entry; bound 25 ms, what a thread's share of the GIL
    leaves) on the 2-core VM, every other standby's frames and
    acks waiting, a sync-mode router's commits with them. The digests an operator asks for
    already go to a thread (source.py:233); this is the same work. Fix: ``await
    asyncio.to_thread(self._history_refusal, hello)`` (its reader of its own, as
    ``_digests`` has)."""
    primary, _ = pair(tmp_path)
    for first in range(1, 64_001, 8_000):
        append(primary, first, 8_000)
    source = ReplicationSource(primary)

    async def scenario() -> float:
        server = await asyncio.start_server(source.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with probing() as probe:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                digest = bytes([VERSION]) + bytes(16)  # not its history: refused, once hashed
                hello = Hello(64_000, digest, 1, CODEC.journal_schema_id, CODEC.slot_size)
                await send(writer, msgspec.structs.replace(hello, rules=source.records[2]))
                await receive(reader)  # the epochs
                await receive(reader)  # the refusal: after the hash
                writer.close()
            return probe.worst
        finally:
            server.close()
            await server.wait_closed()

    try:
        worst = asyncio.run(scenario())
        source._hashed = None  # the same hash, made on the caller's thread: what it costs
        began = time.perf_counter()
        source._history_before(64_000)
        whole = time.perf_counter() - began
    finally:
        source.close()
    print(f"worst lateness {worst * 1e3:.0f} ms, the hash {whole * 1e3:.0f} ms")
    # (a ratio, not a time: a loaded machine slows both; the thread leaves the loop a turn
    # every switch interval of the GIL)
    assert worst < whole / 2, f"a Hello held the source's loop {worst * 1e3:.0f} ms"


# -- checked and found correct ---------------------------------------------------------------


def test_scrypt_of_a_login_runs_off_the_loop(harness: Harness) -> None:
    """rest_keys.py:53: a REST login's scrypt (``DEFAULT_N``, ~50 ms) is on an executor
    thread (hashlib.scrypt lets the GIL go): with small files the loop stays responsive."""
    harness.users.add("SLOW", "slow-pw", 603, n=DEFAULT_N)

    async def scenario(api: RestApi, url: str) -> None:
        async with probing() as probe:
            began = time.perf_counter()
            for _ in range(3):
                slow = await client(url, "SLOW", "slow-pw")
                await slow.close()
            took = time.perf_counter() - began
        assert took > 0.03  # scrypt ran (its ~50 ms each)
        # three logins: each one's scrypt on the loop would hold it, so the second worst is
        # judged and a host's one preemption of the process passed over (a clean clone's
        # full run saw 63 ms once)
        probe.within(BOUND_S, "a login", once=False)

    run(harness, scenario)


def test_an_order_log_compaction_step_is_a_few_ms(tmp_path: Path) -> None:
    """order_log.py:90-91: a step writes ``COMPACT_STEP_ENTRIES`` (1,000) entries, "about
    2 ms": measured ~2-4 ms with order-sized values; its finish (the tail, an fsync of the
    compacted file, the rename) bounded by the disk, ~10 ms for 32 MB here. A finish past the
    bound is tried again, up to three times: its fsync behind a loaded suite's writes took
    68 ms once; a finish grown slow with the log fails each."""
    for attempt in range(3):
        steps = _compaction_steps(tmp_path / f"orders{attempt}.log")
        if steps[-1] < BOUND_S:
            break
    assert len(steps) >= 20
    typical = sorted(steps[:-1])[len(steps) // 2]  # (one preempted on a busy host: not it)
    assert typical < 0.020, f"steps of {typical * 1e3:.1f} ms, the median"
    assert max(steps[:-1]) < BOUND_S, f"a step of {max(steps[:-1]) * 1e3:.1f} ms"
    assert steps[-1] < BOUND_S, f"a finish of {steps[-1] * 1e3:.1f} ms"


def _compaction_steps(path: Path) -> list[float]:
    """The times of an order log's compaction steps over 20,000 entries, its finish last."""
    value = ["BTC-USD", 1, 2, 123_456, 10**9, 5, 0, 1, 1_700_000_000_000_000_000, "c" * 36]
    log = OrderLog(path)
    log.load()
    log.begin_compaction(iter([(ORDER, i, value) for i in range(20 * COMPACT_STEP_ENTRIES)]))
    steps = []
    while True:
        began = time.perf_counter()
        done = log.step_compaction()
        steps.append(time.perf_counter() - began)
        if done:
            break
    log.close()
    return steps


def test_a_clordid_log_rewrite_of_200k_digests_is_short(tmp_path: Path) -> None:
    """clordids.py:187-197: the rewrite at a generation's drop (1.6 MB, fsynced, renamed)
    runs on the loop once per 100k ClOrdIDs: ~4 ms here. Tried again past the bound, up to
    three times, as the compaction's finish: its fsync behind a loaded suite's writes took
    70 ms once; a rewrite grown slow fails each."""
    values = array("Q", range(200_000))
    for attempt in range(3):
        log = SeenLog(tmp_path / f"clordids{attempt}.log")
        log.load()
        began = time.perf_counter()
        log.rewrite(values)
        took = time.perf_counter() - began
        log.close()
        if took < BOUND_S:
            break
    assert took < BOUND_S, f"a rewrite of {took * 1e3:.1f} ms"


def test_a_fix_logons_scan_of_all_users_is_cheap(tmp_path: Path) -> None:
    """logon.py:36: every Logon, before its password, scans every user for the widest
    SendingTime tolerance (a client with no password can send it). The file read is cached
    by stat: the scan itself (its expression, timed here), 20,000 users, ~0.15 ms a Logon."""
    path = tmp_path / "users.json"
    users = fake_users(20_000)
    written = {"users": [_as_written(u) for u in users], "last_session": 21_000}
    path.write_bytes(msgspec.json.encode({**written, "crc32": users_crc(users, 21_000)}))
    store = UserStore(path)
    began = time.perf_counter()
    for _ in range(10):
        [u.sending_time_tolerance_s or 0 for u in store.users()]
    took = (time.perf_counter() - began) / 10
    assert took < 0.010, f"a Logon's scan of {took * 1e3:.2f} ms"


def test_listing_a_users_keys_is_cheap(tmp_path: Path) -> None:
    """apikeys.py:124-130: ``keys_of`` (``ringex admin keys``, an unchanged file) is a scan
    of the held dict, no read: 40,000 keys in ~1 ms."""
    path = tmp_path / "apikeys.json"
    path.write_bytes(keys_bytes(fake_keys(40_000)))
    store = ApiKeyStore(path)
    began = time.perf_counter()
    assert len(store.keys_of("U000001")) == 20
    took = time.perf_counter() - began
    assert took < 0.020, f"a listing of {took * 1e3:.1f} ms"
