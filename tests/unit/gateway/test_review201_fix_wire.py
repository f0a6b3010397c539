"""Review 201: a hostile review of the FIX gateway's TCP shell, over real TCP with raw bytes.

Reviewed: ``procs/gateway/server.py`` (start, ``_close_intake``, ``shutdown``),
``connections.py`` (``connection_made``'s limits, ``after_input``, ``connection_lost``),
``connection.py`` (the protocol: reading, writing, pause/resume, the bytes before a Logon),
``procs/common/tls.py`` (the handshake's and close's times), against README's "The FIX
gateway" (the slow-client rule, the logon timeout, the per-address limit, backpressure: "an
accepted message is never dropped"). Rig: ``harness.py``'s in-process exchange (real rings, the
router and matcher stepped in the loop, the gateway on a real port) on uvloop's loop as in
production (review 99's ``on_uvloop``), its simplefix ``Client`` to frame messages, written
as raw bytes: half-closed (``write_eof``: shutdown(SHUT_WR)), a byte at a time, 300 orders in
one write, reset (SO_LINGER 0), half a TLS ClientHello, plaintext to the TLS port. An order's
fate is read back by a new logon's OrderMassStatusRequest.

Faults found:

1. ``procs/gateway/connection.py:89`` (``Connection`` has no ``eof_received``; asyncio's
   default returns None, so the transport closes at the client's FIN) with ``:246``
   (``connection_lost`` ends the session): a client that sends an order and then half-closes
   its socket (``shutdown(SHUT_WR)``, as ``nc -N`` or a one-shot script does) has its session
   ended at once; the order is placed, but its ExecutionReport, made a moment later, is parked
   in the store, never written on the connection that is still open for reading (review 191
   found the REST fast lane's twin). A Logon and an order in one write, then the FIN, fare
   worse: the session ends before the password check returns, so the Logon is never answered
   and the order, waiting behind it, is never taken. Fix: ``eof_received`` returns True (the
   write side stays open) and the session ends the connection as it ends any other (a Logout,
   its TestRequest unanswered, the logon timeout; a client that closed outright sends the same
   FIN, so its slot and cancel on disconnect then wait for that: checked here with the fix
   patched in, every other test here still passes). Left a documented limit (README, The
   FIX gateway): FIX engines take a FIN as the end, and a client that closes outright must
   have its cancel on disconnect at once, not after a heartbeat's TestRequest. Test:
   ``test_an_order_sent_before_a_half_close_gets_its_report``.

Found sound (plain tests): the half-closed client's order is placed and rests (its report
parked for the next logon); a Logon and two orders written a byte at a time are answered in
order; 300 orders and heartbeats in one write are all answered, in their order; a client reset
(RST) right after its order has the order placed, and cancelled on disconnect where the
gateway says so; a connection that sends nothing, one stalled mid-TLS-handshake and one
writing plaintext to the TLS port are all closed within the logon timeout, none left counted;
connections past ``max_sessions`` are closed at once while the sessions logged on go on, and a
slot freed takes a new logon; the shutdown logs out a client that reads (its Logout says why)
and ends a client that stopped reading, a half-closed one and one that never logged on within
its grace, none left.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path

import pytest
import simplefix

from procs.gateway.server import GatewayServer
from tests.unit.gateway.harness import (
    OPEN,
    Client,
    Harness,
    run_scenario,
    settled,
    small_ring_exchange,
)
from tests.unit.gateway.test_adversarial_fix import order
from tests.unit.gateway.test_review99_tls import _reads, on_uvloop  # noqa: F401
from tests.unit.gateway.test_tls import CERT, KEY


def _messages(raw: bytes) -> list[simplefix.FixMessage]:
    parser, out = simplefix.FixParser(), []
    parser.append_buffer(raw)
    while (msg := parser.get_message()) is not None:
        out.append(msg)
    return out


async def _read_all(reader: asyncio.StreamReader, timeout_s: float = 3.0) -> tuple[bytes, bool]:
    """What the gateway writes until it closes (True) or ``timeout_s`` passes (False)."""
    data = b""
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        return data, False
    except ConnectionError:
        pass
    return data, True


def _reports(raw: bytes) -> list[tuple[bytes, bytes]]:
    return [(m.get(11), m.get(150)) for m in _messages(raw) if m.get(35) == b"8"]


async def _open_orders(port: int, comp: str = "ALICE") -> int:
    c = Client(comp)
    await c.connect(port)
    await c.logon(reset=True)
    await c.send("AF", (584, "mass-1"), (585, 7))
    n = 0
    while True:
        msg = await c.expect("8")
        if msg.get(584) != b"mass-1":
            continue  # a report parked meanwhile, sent anew after the Logon
        if msg.get(911) == b"0":
            break
        n += 1
        if msg.get(912) == b"Y":
            break
    await c.aclose()
    return n


def _resting(gw: GatewayServer, cl_ord_id: bytes) -> bool:
    """Whether the exchange acknowledged ``cl_ord_id`` and it rests (OrdStatus New)."""
    return any(o.cl_ord_id == cl_ord_id and o.status == b"0" for o in gw.entry.live.values())


def _gateway(h: Harness) -> GatewayServer:
    assert h.gateway is not None
    return h.gateway


# -- half close


@pytest.mark.xfail(
    strict=True,
    reason="a documented limit (README, The FIX gateway; review 201): a client's FIN ends its "
    "session, so after a half-close the order's report is parked, not written",
)
def test_an_order_sent_before_a_half_close_gets_its_report(instance: str, tmp_path: Path) -> None:
    h = small_ring_exchange(instance, tmp_path, 4096)

    async def scenario(h: Harness, port: int) -> None:
        c = Client("ALICE")
        await c.connect(port)
        await c.logon()
        assert c.writer is not None and c.reader is not None
        await c.send("D", *order("half-1", "1", "0.10", "100.00"))
        c.writer.write_eof()
        raw, _ = await _read_all(c.reader, 1.5)  # (fixed, the session may stay on)
        assert (b"half-1", b"0") in _reports(raw)

    run_scenario(h, scenario)


def test_an_order_sent_before_a_half_close_is_placed(instance: str, tmp_path: Path) -> None:
    h = small_ring_exchange(instance, tmp_path, 4096)

    async def scenario(h: Harness, port: int) -> None:
        c = Client("ALICE")
        await c.connect(port)
        await c.logon()
        assert c.writer is not None and c.reader is not None
        await c.send("D", *order("half-1", "1", "0.10", "100.00"))
        c.writer.write_eof()
        await _read_all(c.reader, 1.0)
        assert _resting(_gateway(h), b"half-1")

    run_scenario(h, scenario)


# -- splits and bursts


def test_a_logon_and_orders_split_at_every_byte_are_answered_in_order(
    instance: str, tmp_path: Path
) -> None:
    h = small_ring_exchange(instance, tmp_path, 4096)

    async def scenario(h: Harness, port: int) -> None:
        c = Client("ALICE")
        await c.connect(port)
        assert c.writer is not None
        c.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw = c.message("A", (98, 0), (108, 30), (554, "secret")).encode()
        raw += c.message("D", *order("split-1", "1", "0.10", "100.00")).encode()
        raw += c.message("D", *order("split-2", "1", "0.10", "100.00")).encode()
        for k in range(len(raw)):
            await c.send_raw(raw[k : k + 1])
            await asyncio.sleep(0.001)
        await c.expect("A")
        assert (await c.expect("8")).get(11) == b"split-1"
        assert (await c.expect("8")).get(11) == b"split-2"

    run_scenario(h, scenario)


def test_300_orders_in_one_write_are_all_answered_in_order(instance: str, tmp_path: Path) -> None:
    h = small_ring_exchange(
        instance, tmp_path, 4096, max_open_orders=1000, max_messages_per_s=10_000
    )

    async def scenario(h: Harness, port: int) -> None:
        c = Client("ALICE")
        await c.connect(port)
        raw = c.message("A", (98, 0), (108, 30), (554, "secret")).encode()
        for k in range(300):
            raw += c.message("D", *order(f"many-{k}", "1", "0.01", "100.00")).encode()
            if k % 50 == 0:
                raw += c.message("0").encode()
        await c.send_raw(raw)
        await c.expect("A")
        msgs = [await c.expect("8") for _ in range(300)]
        got = [m.get(11) for m in msgs]
        assert got == [f"many-{k}".encode() for k in range(300)]

    run_scenario(h, scenario)


# -- RST


def _rst(c: Client) -> None:
    assert c.writer is not None
    sock = c.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.writer.transport.abort()


@pytest.mark.parametrize(("cancel_on_disconnect", "open_after"), [(True, 0), (False, 1)])
def test_an_order_then_a_reset_is_placed_and_cancelled_as_its_setting_says(
    instance: str, tmp_path: Path, cancel_on_disconnect: bool, open_after: int
) -> None:
    """Placed, then cancelled on disconnect where the session's setting says so; else it
    rests."""
    h = small_ring_exchange(instance, tmp_path, 4096, cancel_on_disconnect=cancel_on_disconnect)

    async def scenario(h: Harness, port: int) -> None:
        c = Client("ALICE")
        await c.connect(port)
        await c.logon()
        await c.send("D", *order("rst-1", "1", "0.10", "100.00"))
        _rst(c)
        OPEN.remove(c)
        gw = _gateway(h)
        await settled(lambda: not gw.connections)
        await asyncio.sleep(0.2)
        # the order (and its cancel) through the router: late on a loaded host
        await settled(lambda: h.router.sequencer.accounts.open_orders(7) == open_after)
        assert await _open_orders(port) == open_after

    run_scenario(h, scenario)


# -- limits and timeouts


def test_silent_stalled_tls_and_plaintext_peers_are_closed_by_the_logon_timeout(
    instance: str, tmp_path: Path
) -> None:
    h = small_ring_exchange(
        instance, tmp_path, 4096, logon_timeout_s=1.0, tls_cert=CERT, tls_key=KEY
    )

    async def scenario(h: Harness, port: int) -> None:
        t0 = time.monotonic()
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(b"\x16\x03\x01\x02\x00\x01")  # half a ClientHello
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)
        w3.write(b"8=FIX.4.4\x019=5\x0135=A\x0110=000\x01")  # plaintext FIX
        outs = await asyncio.gather(_read_all(r1, 4), _read_all(r2, 4), _read_all(r3, 4))
        took = time.monotonic() - t0
        for w in (w1, w2, w3):
            w.close()
        assert [closed for _, closed in outs] == [True] * 3, outs
        assert took < 3.0, took
        assert not _gateway(h).connections

    run_scenario(h, scenario)


def test_connections_past_max_sessions_are_closed_and_the_sessions_go_on(
    instance: str, tmp_path: Path
) -> None:
    h = small_ring_exchange(
        instance,
        tmp_path,
        4096,
        users=("ALICE", "BOB", "CAROL"),
        max_sessions=2,
        max_pending_per_address=2,
    )

    async def scenario(h: Harness, port: int) -> None:
        a, b = Client("ALICE"), Client("BOB")
        await a.connect(port)
        await b.connect(port)
        await a.logon()
        await b.logon()
        extra = []
        for _ in range(5):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            extra.append((r, w))
        outs = await asyncio.gather(*(_read_all(r, 2) for r, _ in extra))
        assert [closed for _, closed in outs] == [True] * 5
        assert len(_gateway(h).connections) == 2
        _rst(a)  # (a FIN alone is a half-close, fault 1's fix may keep it)
        OPEN.remove(a)
        await settled(lambda: len(_gateway(h).connections) == 1)
        c = Client("CAROL")
        await c.connect(port)
        await c.logon()
        await b.send("D", *order("b-1", "1", "0.10", "100.00"))
        assert (await b.expect("8")).get(150) == b"0"
        for _, w in extra:
            w.close()

    run_scenario(h, scenario)


# -- shutdown


def test_the_shutdown_logs_out_readers_and_ends_every_state_within_its_grace(
    instance: str, tmp_path: Path
) -> None:
    h = small_ring_exchange(
        instance, tmp_path, 4096, users=("ALICE", "BOB", "CAROL"), cancel_on_disconnect=True
    )

    async def main() -> None:
        port = await h.start()
        gw = _gateway(h)
        alice, bob, carol = Client("ALICE"), Client("BOB"), Client("CAROL")
        for c in (alice, bob, carol):
            await c.connect(port)
            await c.logon()
        await bob.send("D", *order("bob-1", "1", "0.10", "100.00"))
        assert (await bob.expect("8")).get(150) == b"0"
        _reads(bob, False)  # reads nothing more
        assert carol.writer is not None
        carol.writer.write_eof()  # half-closed (ended at its FIN today: fault 1)
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.monotonic()
        await gw.shutdown(grace_s=0.5)
        took = time.monotonic() - t0
        h.gateway = None
        msg = await alice.expect("5")
        assert b"shutting down" in msg.get(58)
        assert took < 1.5, took
        assert not gw.connections
        assert (await _read_all(idle_r, 1.0))[1], "the connection awaiting its Logon is open"
        idle_w.close()
        for c in (alice, bob, carol):
            OPEN.remove(c)
            c.close()

    async def run() -> None:
        try:
            await asyncio.wait_for(main(), 20)
        finally:
            await h.stop()

    try:
        asyncio.run(run())
    finally:
        h.close()
