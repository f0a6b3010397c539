"""A hostile re-read of review 44's fixes (``git diff 7c612a8..HEAD -- procs config``): what
they left or introduced. Each test failed on the code as reviewed, for the fault it names, and
passes since its fix (the same commit).

Rigs: ``rest_rig.py`` (real HTTP, WebSocket and FIX over real sockets in front of real
rings) and ``unfiled_rig.py`` (the same with a private PostgreSQL and the writer run by
hand); one test puts a Unix-socket relay between the gateway and PostgreSQL, to hold the
database's bytes as a dead link would. BTC-USD: prices 2 decimals, sizes 2. ALICE (601)
holds dollars, BOB (602) bitcoin.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest

from config.schema import DatabaseConfig
from procs.common.types import OrdType, TimeInForce
from procs.gateway.limits import RateLimiter
from procs.gateway.rest import RestApi
from procs.gateway.signing import OUTSIDE_WINDOW, AuthError, Verifier, sign
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import Client, Harness
from tests.unit.gateway.rest_rig import ALICE, rest_exchange, run
from tests.unit.gateway.test_review29_rest_views import TICKS, _elsewhere, _publish
from tests.unit.gateway.test_review44_stream import CAROL, ORDER, SELL, _read, _unfollowed_bid

db_harness = unfiled_rig.harness


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


class Relay:
    """A Unix-socket relay in front of PostgreSQL's socket: ``hold`` keeps every byte either
    way (new connections too) until ``release``, as a link that went dead would."""

    def __init__(self, dsn: str) -> None:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        port = info["port"]
        self.upstream = f"{info['host']}/.s.PGSQL.{port}"
        self.dir = tempfile.mkdtemp(prefix="rgxrelay-")  # short: a socket path has 108 bytes
        self.dsn = psycopg.conninfo.make_conninfo(dsn, host=self.dir)
        self.open = threading.Event()
        self.open.set()
        self.sockets: list[socket.socket] = []
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(f"{self.dir}/.s.PGSQL.{port}")
        self.listener.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self.open.clear()

    def release(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.release()
        for s in [self.listener, *self.sockets]:
            s.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            far = socket.socket(socket.AF_UNIX)
            far.connect(self.upstream)
            self.sockets += [near, far]
            for src, dst in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                self.open.wait()
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def relayed(instance: str, tmp_path: Path, dsn: str) -> Iterator[tuple[Harness, Relay]]:
    """``unfiled_rig.harness`` whose history reaches PostgreSQL through a ``Relay``."""
    relay = Relay(dsn)
    try:
        for h in rest_exchange(instance, tmp_path, DatabaseConfig(dsn=relay.dsn)):
            yield h, relay
    finally:
        relay.close()


# -- faults ------------------------------------------------------------------------------------


def test_a_kept_trigger_is_dropped_once_the_writer_files_it(db_harness: Harness) -> None:
    """ALICE's stop-limit buy of 0.30 (stop and limit 30000.00), known from the database
    only; she uses the API again (``GET account``: no rows read). CAROL takes all of BOB's
    0.05 at 30000.00 through gateway 0: the stop triggers and rests on the book, unfilled.
    ``_triggered`` finds neither a followed order nor a row and keeps the event
    (``UnfollowedEvents``); the writer then files it (the row's ``updated_seq`` is the
    trigger's seq; the row keeps no trigger). Her ``openOrders`` remembers the row and
    ``follow_kept`` offers it the kept Triggered, which ``RowOrders.take`` refuses as "held
    by the row" (seq <= updated_seq), and the event is never applied.
    Expected (README: the events of such an order "are applied to it where its row lacks
    them"; ``isWorking`` is false "for a stop until its trigger"): isWorking true.
    Before the fix: false, from the row (``order_json``: a stop with nothing filled)."""
    h = db_harness
    h.fund(CAROL)

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            stop = {"ord_type": OrdType.STOP_LIMIT, "price": TICKS, "qty": 30, "stop": TICKS}
            oid = await _unfollowed_bid(api, h, alice, **stop)
            await alice.call("GET", "/api/v1/account")  # of interest again, no rows read
            await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.05")
            await _publish(_elsewhere(2, CAROL, tif=TimeInForce.IOC, price=TICKS, qty=5), h=h)
            kept = api.core.unfollowed.take(ALICE)
            api.core.unfollowed.put_back(ALICE, kept)
            assert [type(event).__name__ for event, _ in kept] == ["Triggered"], kept
            await unfiled_rig.file_all(h)
            got = await alice.call("GET", "/api/v1/openOrders")
            assert [(o["orderId"], o["isWorking"]) for o in got] == [(oid, True)], got

    run(h, scenario)


def test_wrong_fix_logons_count_against_the_username(harness: Harness) -> None:
    """The username limit (``failed_logins``, rest_keys.py:46) guards one of the two doors
    to the same password: a FIX Logon (``connections._verify`` -> ``UserStore.verify``)
    checks it with no limit per username (nor per address). Here the username's burst is 3:
    four wrong FIX Logons for ALICE, each answered "bad password", then one wrong REST
    login. Expected: the guesses count wherever they come from, so the REST one is 429
    (and a fifth FIX guess would be refused). Before the fix: 401, the FIX guesses never counted."""

    async def scenario(api: RestApi, url: str) -> None:
        api.failed_logins = RateLimiter(0.01, 3)
        assert harness.gateway is not None
        for i in range(4):
            fix = Client("ALICE")
            await fix.connect(harness.gateway.port)
            await fix.send("A", (98, 0), (108, 30), (554, f"guess-{i}"))
            text = (await fix.expect("5")).get(58)
            if i < 3:
                assert b"bad password" in text, text
            else:  # past the burst: refused unchecked, naming the limit (the fix)
                assert b"too many wrong passwords for ALICE" in text, text
            await fix.aclose()
        async with aiohttp.ClientSession() as session:
            guess = {"username": "ALICE", "password": "guess-4"}
            async with session.post(f"{url}/api/v1/apiKey", data=guess) as r:
                assert r.status == 429, (r.status, await r.text())

    run(harness, scenario)


def test_a_dead_database_link_holds_the_snapshot_past_the_bound(
    relayed: tuple[Harness, Relay],
) -> None:
    """README: "The snapshot waits for the database at most 2 s (then the live view goes
    alone)"; ``open_order_rows``: "the reads stop at ``LISTING_WAIT_S`` (a database that
    hangs: a lock, a dead link)". The link to PostgreSQL goes dead (the relay holds every
    byte) while the pool's connection is idle; ALICE subscribes. At 2 s ``asyncio.timeout``
    cancels the read, but psycopg's ``AsyncConnection.wait`` catches the cancel of an ACTIVE
    query, sends a cancel request on a new connection (``cancel_safe(timeout=5)``: the dead
    link again) and waits up to 5 s more for the query to end, before it re-raises: the
    cancel the timeout sent is not taken for about 10 s. Expected: the snapshot within
    4 s. Before the fix: nothing (it comes at about 12 s; ``DELETE openOrders``' answer likewise).
    The lock of ``test_review44_stream`` is a live server, which takes the cancel at once."""
    h, relay = relayed

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            await alice.call("GET", "/api/v1/openOrders")  # the pool's connection is up, idle
            relay.hold()
            try:
                ws = await alice.stream()
                messages, close = await _read(ws, 4.0)
            finally:
                relay.release()
            await ws.close()
            assert [m["event"] for m in messages] == ["snapshot"], (messages, close)

    run(h, scenario)


def test_a_client_whose_clock_is_behind_is_not_told_why_after_a_restart() -> None:
    """A client whose clock is 1 s behind (inside its 5 s window: taken at any other time)
    signs a fresh request half a second after the gateway started. Refused (-1021) as
    "signed before a restart ... sign it again": signing again is refused the same way for
    another half second (for up to 60 s with a clock further behind and a wider window),
    and unlike the receive-window refusal, the message does not name the server's time, the
    one thing that tells the client its clock is off. Expected: the refusal names the server
    time (or the clock). Before the fix: it names the timestamp and the start only."""
    start = 1_700_000_000_000
    v = Verifier(60_000, 5_000, not_before_ms=start)
    now = start + 500
    ts = now - 1_000
    sig = sign("secret", ts, 5_000, "GET", "/api/v1/account", "", b"")
    with pytest.raises(AuthError) as refused:
        v.check("secret", str(ts), None, sig, "GET", "/api/v1/account", "", b"", now)
    assert refused.value.code == OUTSIDE_WINDOW
    assert str(now) in refused.value.msg, refused.value.msg
