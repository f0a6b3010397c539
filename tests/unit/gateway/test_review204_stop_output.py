"""Review 204: a hostile review of a gateway's clean stop while clients still have output
pending. Invariant: nothing acknowledged is ever lost.

Reviewed: ``procs/gateway/main.py`` (SIGTERM/SIGINT to ``GatewayServer.stop``),
``server.py`` (``stop``, ``_close_intake``, ``run``, ``shutdown``), ``connection.py`` (the
write path and its store flushes), ``session.py``/``gap_recovery.py`` (``logout``,
``_drop_resends``, what a logon carries), ``store.py`` (parked messages), ``rest.py``
(``stop``), ``rest_fast.py`` (``_answer_queue``, ``close``), ``private_stream.py`` and
``stream_subscriber.py`` (the 1001 close). Rig: ``harness.py``'s in-process exchange (real
rings, the router and matcher stepped in the loop, the gateway on real TCP ports), stopped
as the process stops it: ``stop()`` (the signal), the wait for ``_stop``, then
``shutdown()`` with its default grace, as ``run`` does; a client's full buffers made real
by shrinking the gateway's socket's SO_SNDBUF and the client's SO_RCVBUF to 4 KiB, so
~80 KB of reports are still in the gateway's own transport buffer when the stop aborts
the connection. A stopped gateway is started again on the same instance to see what a
client's next logon recovers. REST requests are raw, signed, pipelined bytes.

Faults found (each fixed; its test says what it was):

1. ``procs/gateway/server.py:559-568`` (``shutdown``: after ``grace_s`` the connection is
   closed, then aborted) with ``procs/gateway/store.py:261-281`` (only messages made while
   the session was logged off are parked): reports written to a connection the stop then
   aborts, still in the gateway's own transport buffer (never handed to the kernel), are
   counted as sent. A ResendRequest after a logon that keeps the numbers recovers them
   (checked), but a logon with ResetSeqNumFlag, which carries parked reports so that a reset
   loses nothing the client never saw, carries none of them: most New reports of orders the
   router accepted (342 of 400 in one run) are never seen. Fix: before the abort, park
   again from the first message still unsent (``store.park_again`` with the seq of the
   oldest frame left in the transport's buffer, which the connection can track as it
   writes), as ``_drop_resends`` already does for a resend cut short. Test:
   ``test_reports_cut_off_by_the_stop_are_carried_to_a_reset_logon``.
2. ``procs/gateway/rest.py:332-338`` (``RestApi.stop`` closes every fast lane, then fails
   the waiters with the 504) with ``procs/gateway/rest_fast.py:363-364`` (``_answer_queue``
   drops an answer once ``transport.is_closing()``): on the fast lane (``POST
   /api/v1/order`` on a fresh connection, the usual path) an order the exchange has not
   answered when ``stop_grace_s`` runs out gets no answer at all, not README's 504 ("may
   still execute"), and the requests pipelined behind it get none either, not a 503; the
   order is then placed once the exchange reads it. (``test_stop.py``'s 504 test passes
   because its client's login had handed the connection to aiohttp.) Fix: in ``stop``, fail
   the waiters first and let each lane answer its queue (504 for the waiter, 503 for the
   requests behind it, as ``closing`` says) before closing it, with a bound (``_end``'s way).
   Test: ``test_a_fast_lane_order_unanswered_at_the_stop_gets_504_and_those_behind_503``.

Found sound (plain tests): a client that reads nothing or reads slowly while the stop
aborts it loses nothing: every report is in the session's store and a ResendRequest after
the next logon returns each (the gateway's Logon numbers past the gap); a client that sends
its Logout while the stop waits for its order is logged out, and the order's report,
made after, is parked and delivered at the next logon, resend or reset; REST orders
pipelined when the stop begins: the one in flight answered 200 NEW and placed, those behind
503 and not placed; the private stream gets the executionReport of an order answered
during the stop, then the 1001 close; the stop ends (no hang) with a FIX client that reads
nothing, a stream that takes nothing and a REST order the exchange never answers.

Leads, not faults: the stop's worst case is ``stop_grace_s`` (up to 15 s by the schema) +
``shutdown``'s 1 s + 0.5 s + the private streams' close (bounded by ``CLOSE_GRACE_S`` + 1 s;
here a stream whose client reads nothing ended at once) + aiohttp's ``runner.cleanup``
(``shutdown_timeout`` 60 s by default, not set at ``rest.py:295``, for an aiohttp handler
stuck writing to a client that does not read; not exercised here): past the supervisor's
20 s group grace, which then SIGKILLs the gateway (crash-only recovery covers it, but the
logouts of a clean stop are lost). Market data runs in its own process, which a gateway's
stop does not touch (not exercised: the harness has none). The private stream drops what is
queued at its 1001 close (``stream_subscriber.py`` ``close``): a client reading slowly loses
the stream's tail, by design (the stream is a view; REST queries are the record).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import msgspec
import pytest
import simplefix

from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.server import GatewayServer
from tests.unit.gateway.harness import (
    OPEN,
    Client,
    Harness,
    run_scenario,
    settled,
    small_ring_exchange,
)
from tests.unit.gateway.rest_rig import ALICE, LIMIT, client, rest_exchange, statuses
from tests.unit.gateway.rest_rig import run as run_rest
from tests.unit.gateway.test_adversarial_fix import order
from tests.unit.gateway.test_review99_tls import _reads
from tests.unit.gateway.test_review201_fix_wire import _messages, _read_all

#: Orders whose New reports (~250 bytes each) fill the buffers of a client that reads nothing.
N = 400
#: Each side's socket buffer in the full-buffer scenarios (the kernel doubles it).
TIGHT = 4096
#: A scenario's limit: a hang guard, not a timing claim.
LIMIT_S = 60.0


def _exchange(instance: str, tmp_path: Path) -> Harness:
    return small_ring_exchange(
        instance, tmp_path, 4096, max_open_orders=2 * N, max_messages_per_s=10_000
    )


def _gw(h: Harness) -> GatewayServer:
    assert h.gateway is not None
    return h.gateway


async def _tight(port: int) -> Client:
    """ALICE logged on over a socket whose receive buffer is ``TIGHT``, its reader's buffer
    1 KiB (so a slow read is slow at the socket too)."""
    c = Client("ALICE")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TIGHT)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    c.reader, c.writer = await asyncio.open_connection(sock=sock, limit=1024)
    OPEN.append(c)
    await c.logon()
    return c


async def _stop(h: Harness) -> None:
    """What the process does at SIGTERM: ``stop()``, the wait, then ``shutdown()`` with
    its own grace (``run``)."""
    gw = _gw(h)
    gw.stop()
    await settled(gw._stop.is_set, 30)
    assert gw._stop.is_set()
    await gw.shutdown()
    h.gateway = None


async def _restart(h: Harness) -> int:
    h.pause()  # the old pipeline task; ``start`` makes another
    return await h.start()


def _acked(msgs: list[simplefix.FixMessage]) -> set[bytes]:
    """The ClOrdIDs of the New reports (150=0) among ``msgs``."""
    return {m.get(11) for m in msgs if m.get(35) == b"8" and m.get(150) == b"0"}


async def _drain(c: Client, timeout_s: float = 2.0) -> list[simplefix.FixMessage]:
    """Every message until ``timeout_s`` of silence (or the close)."""
    out = []
    while (m := await c.recv(timeout_s)) is not None:
        out.append(m)
    return out


async def _read_slowly(reader: asyncio.StreamReader) -> bytes:
    """1 KiB every 20 ms until the close: a client that reads, slower than it is sent."""
    data = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(1024):
            data += chunk
            await asyncio.sleep(0.02)
    return data


async def _full_buffers(h: Harness, port: int) -> Client:
    """ALICE, reading nothing, with ``N`` orders accepted whose reports fill both sockets'
    buffers: most of them wait in the gateway's transport buffer."""
    gw = _gw(h)
    alice = await _tight(port)
    _reads(alice, False)
    for conn in gw.connections:
        assert conn.transport is not None
        conn.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, TIGHT
        )
    raw = b"".join(
        alice.message("D", *order(f"o{k}", "1", "0.01", "100.00")).encode() for k in range(N)
    )
    await alice.send_raw(raw)
    await settled(lambda: sum(o.status == b"0" for o in gw.entry.live.values()) == N, 30)
    assert sum(o.status == b"0" for o in gw.entry.live.values()) == N
    unsent = [c.transport.get_write_buffer_size() for c in gw.connections if c.transport]
    assert unsent and unsent[0] > 0, "the scenario needs output left in the gateway"
    return alice


# -- FIX: a client with output pending when the stop comes


@pytest.mark.parametrize("reads", ["nothing", "slowly"])
def test_checked_reports_cut_off_by_the_stop_are_recovered_by_a_resend(
    instance: str, tmp_path: Path, reads: str
) -> None:
    """Scenario: ALICE has 400 orders accepted while she reads nothing (both socket buffers
    4 KiB: ~80 KB of New reports wait in the gateway's transport buffer); the gateway stops
    as SIGTERM stops it; meanwhile she reads nothing, or 1 KiB every 20 ms. The gateway is
    started again and she logs on keeping her numbers and sends a ResendRequest.
    Expected: every order's New report reaches her, on the old connection or resent.
    Now: so; the stop aborts the connection after its 1 s grace, and the store has them."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        alice = await _full_buffers(h, port)
        assert alice.reader is not None
        slow = None
        if reads == "slowly":
            _reads(alice, True)
            slow = asyncio.ensure_future(_read_slowly(alice.reader))
        await _stop(h)
        if slow is not None:
            old = await asyncio.wait_for(slow, 30)
        else:
            _reads(alice, True)
            old, _ = await _read_all(alice.reader, 5)
        seen = _messages(old)
        assert len(_acked(seen)) < N  # the stop cut her off
        port = await _restart(h)
        back = Client("ALICE")
        back.seq = alice.seq
        await back.connect(port)
        logon = await back.logon()
        assert int(logon.get(34) or 0) > len(seen) + 1  # a gap she sees
        await back.send("2", (7, 2), (16, 0))
        resent = await _drain(back)
        assert _acked(seen) | _acked(resent) == {f"o{k}".encode() for k in range(N)}

    run_scenario(h, scenario, LIMIT_S)


def test_reports_cut_off_by_the_stop_are_carried_to_a_reset_logon(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: as the resend test, ALICE reading nothing; after the restart she logs on
    with ResetSeqNumFlag (141=Y), as many clients do each session.
    Expected: the reports she never saw (the gateway never even wrote them to the kernel)
    are carried after the Logon, as reports parked while she was away are.
    Was (fixed): none was carried; most accepted orders' New reports are never seen."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        alice = await _full_buffers(h, port)
        assert alice.reader is not None
        await _stop(h)
        _reads(alice, True)
        old, _ = await _read_all(alice.reader, 5)
        seen = _messages(old)
        port = await _restart(h)
        again = Client("ALICE")
        await again.connect(port)
        await again.logon(reset=True)
        carried = await _drain(again)
        assert _acked(seen) | _acked(carried) == {f"o{k}".encode() for k in range(N)}

    run_scenario(h, scenario, LIMIT_S)


@pytest.mark.parametrize("reset", [False, True])
def test_checked_a_logout_sent_during_the_stop_leaves_the_report_parked(
    instance: str, tmp_path: Path, reset: bool
) -> None:
    """Scenario: ALICE's order waits for the exchange (paused); the stop begins; she sends
    her Logout; the exchange then accepts the order; the gateway stops and starts again;
    she logs on keeping her numbers (and sends a ResendRequest) or with a reset.
    Expected: her Logout is answered; the order's New report, made after it, reaches her
    at that logon. Now: so (parked in her store, fetched or carried)."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = _gw(h)
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.logon()
        h.pause()
        await alice.send("D", *order("late-1", "1", "0.10", "100.00"))
        await settled(lambda: gw.in_flight() == 1)
        gw.stop()
        await alice.send("5")
        await alice.expect("5")
        assert await alice.closed()
        h.resume()
        await _stop(h)
        port = await _restart(h)
        back = Client("ALICE")
        if not reset:
            back.seq = alice.seq
        await back.connect(port)
        await back.logon(reset=reset)
        if not reset:
            await back.send("2", (7, 1), (16, 0))
        assert b"late-1" in _acked(await _drain(back))

    run_scenario(h, scenario, LIMIT_S)


# -- REST: requests in flight, pipelined, when the stop comes


def _post(c: RestClient, **params: object) -> bytes:
    """A signed ``POST /api/v1/order`` as raw HTTP/1.1 bytes (a form body)."""
    body = urlencode({k: str(v) for k, v in params.items()}).encode()
    head = [
        b"POST /api/v1/order HTTP/1.1",
        b"Host: x",
        b"Content-Type: application/x-www-form-urlencoded",
        b"Content-Length: %d" % len(body),
    ]
    head += [f"{k}: {v}".encode() for k, v in c.headers("POST", "/api/v1/order", "", body).items()]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _rest(instance: str, tmp_path: Path, grace_s: float) -> Harness:
    h = next(rest_exchange(instance, tmp_path))
    gw = msgspec.structs.replace(h.cfg.gateways[0], stop_grace_s=grace_s)
    h.cfg = msgspec.structs.replace(h.cfg, gateways=[gw])
    return h


async def _pipelined_at_stop(h: Harness, api: RestApi, url: str, answered: bool) -> list[int]:
    """Three of ALICE's orders pipelined in one write on a fresh connection (the fast
    lane) while the exchange is paused; the stop begins with the first in flight; the
    exchange goes on during the grace (``answered``) or only after the gateway stopped.
    The statuses she gets until the close."""
    gw = _gw(h)
    alice = await client(url, "ALICE", "alice-pw")
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    try:
        h.pause()
        raw = b"".join(
            _post(alice, **LIMIT, price="100.00", quantity="0.10", newClientOrderId=f"p{k}")
            for k in range(3)
        )
        writer.write(raw)
        await settled(lambda: gw.in_flight() == 1)
        assert gw.in_flight() == 1
        gw.stop()
        if answered:
            h.resume()
        await settled(gw._stop.is_set, 30)
        stopping = asyncio.ensure_future(gw.shutdown())
        out = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(15):
                while chunk := await reader.read(65536):
                    out += chunk
        await asyncio.wait_for(stopping, 30)
        h.gateway = None
        if not answered:
            h.resume()  # the exchange reads what the gateway had published
            await settled(lambda: h.router.sequencer.accounts.open_orders(ALICE) > 0)
        return statuses(out)
    finally:
        writer.close()
        await alice.close()


def test_checked_pipelined_orders_at_the_stop_get_200_then_503(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: three REST orders pipelined; the first is in flight when the stop begins
    and the exchange answers it within ``stop_grace_s``.
    Expected: the first answered 200 (placed), the two behind it 503 (not placed): no
    order answered as refused was accepted, nor the reverse. Now: so."""
    h = _rest(instance, tmp_path, 3.0)

    async def scenario(api: RestApi, url: str) -> None:
        assert await _pipelined_at_stop(h, api, url, answered=True) == [200, 503, 503]
        assert h.router.sequencer.accounts.open_orders(ALICE) == 1

    run_rest(h, scenario)


def test_a_fast_lane_order_unanswered_at_the_stop_gets_504_and_those_behind_503(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: as above, but the exchange does not answer within ``stop_grace_s``
    (0.3 s); it reads the order once the gateway has stopped.
    Expected (README, Stopping): the first gets 504 ("may still execute": it is placed),
    the two behind it 503 (not placed). Was (fixed): the connection closed with no answer at all,
    and the first order is placed."""
    h = _rest(instance, tmp_path, 0.3)

    async def scenario(api: RestApi, url: str) -> None:
        got = await _pipelined_at_stop(h, api, url, answered=False)
        assert h.router.sequencer.accounts.open_orders(ALICE) == 1
        assert got == [504, 503, 503]

    run_rest(h, scenario)


# -- private streams, and the stop's end


def test_checked_the_stream_gets_reports_answered_during_the_stop_then_1001(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE's private stream is open; her REST order is in flight when the stop
    begins and is answered during the grace. Expected: its answer is 200 NEW, the stream
    carries its executionReport, then closes with 1001 (going away). Now: so."""
    h = _rest(instance, tmp_path, 3.0)

    async def scenario(api: RestApi, url: str) -> None:
        gw = _gw(h)
        alice = await client(url, "ALICE", "alice-pw")
        try:
            ws = await alice.stream()
            assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.TEXT  # snapshot
            h.pause()
            pending = asyncio.ensure_future(
                alice.call("POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10")
            )
            await settled(lambda: gw.in_flight() == 1)
            gw.stop()
            h.resume()
            placed = await asyncio.wait_for(pending, 15)
            assert placed["status"] == "NEW"
            await settled(gw._stop.is_set, 30)
            stopping = asyncio.ensure_future(gw.shutdown())
            reported = []
            while (msg := await ws.receive(timeout=15)).type is aiohttp.WSMsgType.TEXT:
                event = msg.json()
                if event["event"] == "executionReport":
                    reported.append(event["data"]["orderId"])
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001
            assert reported == [placed["orderId"]]
            await asyncio.wait_for(stopping, 30)
            h.gateway = None
        finally:
            await alice.close()

    run_rest(h, scenario)


def test_checked_the_stop_ends_with_every_kind_of_client_stuck(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: at the stop a FIX client reads nothing, a private stream reads nothing
    (its close frame left in its socket), and a REST order is never answered by the
    exchange (paused), ``stop_grace_s`` 0.3 s. Expected: the stop ends, leaving no
    connection, and the stream's client finds the 1001 close once it reads. Now: so (the
    FIX connection is aborted after ``shutdown``'s 1 s grace; the stream's handler ends at
    the close it sends, without waiting for the client's reply)."""
    h = _rest(instance, tmp_path, 0.3)

    async def scenario(api: RestApi, url: str) -> None:
        gw = _gw(h)
        fix = Client("ALICE")
        await fix.connect(gw.port)
        await fix.logon("alice-pw")
        _reads(fix, False)
        alice = await client(url, "ALICE", "alice-pw")
        try:
            ws = await alice.stream()
            assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.TEXT  # snapshot
            await settled(lambda: gw.in_flight() == 0)  # (the snapshot's query answered)
            conn = ws._conn  # the stream's socket: read no more (its close frame untaken)
            assert conn is not None and conn.transport is not None
            conn.transport.pause_reading()
            h.pause()
            pending = asyncio.ensure_future(
                alice.request("POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10")
            )
            await settled(lambda: gw.in_flight() == 1)
            gw.stop()
            await settled(gw._stop.is_set, 30)
            await asyncio.wait_for(gw.shutdown(), LIMIT_S)
            h.gateway = None
            assert not gw.connections
            assert not api.lanes
            with contextlib.suppress(aiohttp.ClientError):  # its answer: fault 2's business
                await asyncio.wait_for(pending, 15)
            conn.transport.resume_reading()
            ended = await ws.receive(timeout=15)  # what the gateway left in its socket
            assert (ended.type, ended.data) == (aiohttp.WSMsgType.CLOSE, 1001)
        finally:
            h.resume()
            await alice.close()

    run_rest(h, scenario)
