"""Review 97, a hostile reread of the gateway side of the session that followed 8ba4248: the
FIX port's per-address limits (``connections.py``), the junk cap before a Logon
(``audit.JunkCap``), TLS on the FIX port, and the REST 413's message. Rigs: the gateway
tests' harness and ``rest_rig.py`` (real TCP, real TLS, real files).

Each test under "faults" pins a fault found, fixed since (it asserts what should hold; its
docstring says what was wrong); those under "checked and found correct" pin what was
probed and holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import resource
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.schema import DatabaseConfig
from procs.common.users import User, UserStore
from procs.gateway.audit import JUNK_BEFORE_LOGON
from procs.gateway.connection import peer_address
from procs.gateway.rest import RestApi
from procs.gateway.session_interface import State
from procs.gateway.store import MessageStore
from tests.unit.gateway.harness import Client, Harness, config, run_scenario, settled
from tests.unit.gateway.rest_rig import exchange, request, rest_exchange, run, statuses

TLS = Path(__file__).parent / "tls"
CERT, KEY = str(TLS / "cert.pem"), str(TLS / "key.pem")
JUNK = b"x" * 4095 + b"\x01"  # frames as no message: garbled


def _fix_only(instance: str, tmp_path: Path, users: int = 1, **gateway: object) -> Harness:
    cfg = config(instance, tmp_path, **gateway)
    h = Harness(msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False)))
    for n in range(users):
        h.add_user(f"U{n}", "pw", 7 + n)
    return h


@pytest.fixture
def held_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Every password check waits (on its executor thread) until the event is set: a scrypt
    that takes its time, as the real one (~50 ms, more on a busy executor) does."""
    release = threading.Event()
    verify = UserStore.verify

    def slow(self: UserStore, comp_id: str, password: str) -> User | None:
        release.wait(10)
        return verify(self, comp_id, password)

    monkeypatch.setattr(UserStore, "verify", slow)
    yield release
    release.set()


def _states(h: Harness) -> list[State]:
    assert h.gateway is not None
    return [c.session.state for c in h.gateway.connections if c.session is not None]


class _Peer:
    """A transport stand-in that only names its peer (``peer_address`` reads nothing else)."""

    def __init__(self, peername: object) -> None:
        self.peername = peername

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peername if name == "peername" else default


# -- faults ------------------------------------------------------------------------------------


def test_right_logons_at_once_from_one_address_are_not_refused_as_failed(
    instance: str, tmp_path: Path, held_checks: threading.Event
) -> None:
    """25 users of one host log on at once (default ``address_failed_logon_burst`` 20); the
    checks are in flight together. Each should be answered a Logon: none failed."""
    h = _fix_only(instance, tmp_path, users=25)
    answers: list[bytes] = []

    async def scenario(h: Harness, port: int) -> None:
        clients = [Client(f"U{n}") for n in range(25)]
        for c in clients:
            await c.connect(port)
            await c.send("A", (98, 0), (108, 30), (554, "pw"))
        await settled(lambda: State.AWAIT_LOGON not in _states(h))
        held_checks.set()
        for c in clients:
            msg = await c.recv(5.0)
            answers.append(b"" if msg is None else msg.get(35) + b" " + (msg.get(58) or b""))
        assert answers == [b"A "] * 25, [a for a in answers if a != b"A "][:2]

    run_scenario(h, scenario)


def test_junk_after_an_unchecked_logon_is_not_journaled_whole(
    instance: str, tmp_path: Path, held_checks: threading.Event
) -> None:
    """A peer with no account sends a Logon naming a CompID it invents, then 60 KiB of junk
    while the password is checked: all of it lands in audit.log, 60x the cap
    ``JUNK_BEFORE_LOGON`` review 93 set for input before a Logon is accepted."""
    h = _fix_only(instance, tmp_path)
    audit = Path(h.cfg.var_dir) / instance / "gateway" / "gw1" / "audit.log"

    async def scenario(h: Harness, port: int) -> None:
        assert h.gateway is not None
        gw = h.gateway
        peer = Client("NOBODY")
        await peer.connect(port)
        await peer.send("A", (98, 0), (108, 30), (554, "guess"))
        await settled(lambda: _states(h) == [State.AUTHENTICATING])
        gw.audit.flush()
        before = audit.stat().st_size
        sent = 0
        with contextlib.suppress(ConnectionError):
            for _ in range(15):
                await peer.send_raw(JUNK)
                sent += len(JUNK)

        def grown() -> int:
            gw.audit.flush()
            return audit.stat().st_size - before

        await settled(lambda: grown() > 4 * JUNK_BEFORE_LOGON, 2.0)
        held_checks.set()
        assert grown() <= 4 * JUNK_BEFORE_LOGON, f"{sent} bytes of junk, the audit grew {grown()}"

    run_scenario(h, scenario)


def test_a_tls_connection_that_never_shakes_hands_is_bounded_as_a_plain_one(
    instance: str, tmp_path: Path
) -> None:
    """``max_sessions`` 2, ``logon_timeout_s`` 1: ten raw TCP connections to the TLS FIX port
    that send nothing. On plain TCP eight are closed at once and two at the logon timeout
    (the control below); over TLS all ten stay open."""
    h = _fix_only(instance, tmp_path, tls_cert=CERT, tls_key=KEY, max_sessions=2, logon_timeout_s=1)
    closed: list[bool] = []

    async def scenario(h: Harness, port: int) -> None:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]

        async def eof(reader: asyncio.StreamReader) -> bool:
            with contextlib.suppress(TimeoutError, OSError):
                async with asyncio.timeout(5):
                    return await reader.read() == b""
            return False

        closed.extend(await asyncio.gather(*(eof(r) for r, _ in conns)))
        for _, w in conns:
            w.close()
        assert closed == [True] * 10, f"{closed.count(False)} of 10 still open after 5 s"

    run_scenario(h, scenario)


def test_ipv6_peers_of_one_64_prefix_share_one_address_key() -> None:
    one = _Peer(("2001:db8:1:2::1", 40000, 0, 0))
    other = _Peer(("2001:db8:1:2:ffff:ffff:ffff:fffe", 40001, 0, 0))
    assert peer_address(one) == peer_address(other)  # type: ignore[arg-type]


def test_the_413_of_a_compressed_body_does_not_say_it_is_smaller_than_the_limit(
    instance: str, tmp_path: Path
) -> None:
    h = next(rest_exchange(instance, tmp_path))

    async def scenario(api: RestApi, url: str) -> None:
        limit = api.rest.max_body_bytes
        body = gzip.compress(b"symbol=BTC-USD&" + b"a" * (4 * limit), mtime=0)
        raw = await exchange(
            api.port,
            request(
                b"POST /api/v1/apiKey HTTP/1.1",
                b"Content-Type: application/x-www-form-urlencoded",
                b"Content-Encoding: gzip",
                b"Connection: close",
                b"Content-Length: %d" % len(body),
                body=body,
            ),
        )
        assert statuses(raw) == [413], raw[:300]
        assert b"of %d bytes" % len(body) not in raw, raw.split(b"\r\n\r\n", 1)[-1]

    try:
        run(h, scenario)
    finally:
        h.close()


# -- checked and found correct -----------------------------------------------------------------


def test_plain_tcp_connections_past_the_limits_are_closed(instance: str, tmp_path: Path) -> None:
    """The control of the TLS test above: the same ten idle connections on plain TCP."""
    h = _fix_only(instance, tmp_path, max_sessions=2, logon_timeout_s=1)

    async def scenario(h: Harness, port: int) -> None:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
        async with asyncio.timeout(5):
            assert [await r.read() for r, _ in conns] == [b""] * 10
        for _, w in conns:
            w.close()
        assert h.gateway is not None
        await settled(lambda: not h.gateway or not h.gateway._pending_by_address)
        assert not h.gateway._pending_by_address and not h.gateway._pending

    run_scenario(h, scenario)


def test_pending_slots_come_back_after_refusals_logons_and_closes(
    instance: str, tmp_path: Path
) -> None:
    """One address, ``max_pending_per_address`` 2: wrong passwords, a connection closed while
    its password is checked, one refused at the limit, and a right Logon (through the
    executor) each give their slot back; the address can log on twice after."""
    h = _fix_only(instance, tmp_path, users=2, max_pending_per_address=2)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        for _ in range(3):  # refused (wrong password): closed
            c = Client("U0")
            await c.connect(port)
            await c.send("A", (98, 0), (108, 30), (554, "wrong"))
            assert await c.closed(3.0)
            await c.aclose()
        idle = [Client("U0"), Client("U0")]
        for c in idle:
            await c.connect(port)
        third = Client("U0")
        await third.connect(port)  # past the limit: closed at once
        assert await third.closed(3.0)
        await idle[0].send("A", (98, 0), (108, 30), (554, "pw"))
        idle[1].close()  # gone mid-authentication or before
        await idle[0].expect("A")
        await settled(lambda: not gw._pending_by_address)
        assert not gw._pending_by_address and not gw._pending
        await idle[0].aclose()
        for n in range(2):
            c = Client(f"U{n}")
            await c.connect(port)
            assert (await c.logon("pw", reset=True)).get(35) == b"A"

    run_scenario(h, scenario)


def test_a_flush_cut_short_by_a_full_file_is_cut_back_and_written_whole_later(
    tmp_path: Path,
) -> None:
    """``store.flush``: a write the file size limit stops part-way (EFBIG after a partial
    ``os.write``, as a full disk does) leaves the file as it was; the retry writes the
    entries once, where the index says."""
    store = MessageStore(tmp_path / "s")
    store.add_outbound(1, b"8=FIX.4.4\x0135=0\x0134=1\x01")
    store.flush()
    path = tmp_path / "s" / "messages"
    size = path.stat().st_size
    store.add_outbound(2, b"8=FIX.4.4\x0135=0\x0134=2\x01" + b"y" * 100)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 50, hard))
    try:
        with pytest.raises(OSError):
            store.flush()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert path.stat().st_size == size
    store.flush()
    assert [seq for seq, _ in store.outbound(1, 2)] == [1, 2]
    store.close()
    assert [seq for seq, _ in MessageStore(tmp_path / "s").outbound(1, 2)] == [1, 2]
