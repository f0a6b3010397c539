"""Review 37: a gateway pushed far past its capacity, after the burst fix (c01ffc7).

Found and fixed:

1. The order log's frame limit (``order_log.MAX_FRAME_BYTES``, 64 MiB) was still reachable
   by a frame the gateway builds of what no client sent in one read: the cancels of a session
   that cancels on disconnect (one per live order, ~176 bytes each: 400k orders made a frame
   of 70 MB, and the bench's accounts may hold a million), at a restart those of every such
   session at once, a compaction step, the orders a restart corrects from the books. The
   write raised ``OrderLogError`` on every pass from then on (the cancels never went), and
   a restart rebuilt the same frame: the gateway could not start again. Now a write too big
   for a frame goes as several that replay applies together (``order_log.py``). The gateway
   tests shrink the limit (the frames are the same, only smaller) so that 400 orders reach
   it; the log's own test writes past the real one.
2. Input that makes no output (Heartbeats, junk) waited in the audit journal's buffer for
   the timers' flush: 40k Heartbeats were all held, 3 s of junk 583 MB (``audit.py``).
3. Junk before a Logon was read at the socket's speed and journaled whole until the logon
   timeout, from a client nobody had let in: 590 MB of audit.log in 3 s (``connection.py``).

Held, pinned here: FIX sessions that flood and read nothing, then read it all; a ResendRequest
for the whole session while it floods; a MassCancel of every order; a hundred REST orders
pipelined on each of a dozen connections while the router takes nothing.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import msgspec
import pytest
import simplefix  # ships no type information

from config.edges import RestConfig
from config.schema import DatabaseConfig, RingConfig
from procs.gateway import connection, order_log
from procs.gateway.audit import MAX_BUFFERED_BYTES
from procs.gateway.order_log import COMMAND, ORDER, OrderLog
from procs.gateway.rest_client import RestClient
from procs.gateway.server import GatewayServer
from procs.gateway.signing import API_KEY, RECV_WINDOW, SIGNATURE, TIMESTAMP, sign
from tests.unit.gateway.harness import (
    OPEN,
    Client,
    Harness,
    config,
    run_scenario,
    settled,
    utc,
)
from tests.unit.gateway.rest_rig import client as rest_client
from tests.unit.gateway.rest_rig import request as rest_request
from tests.unit.gateway.rest_rig import statuses
from tests.unit.gateway.test_adversarial_fix import logged_on, order
from tests.unit.gateway.test_gateway_restart import crash

#: The limit the tests shrink the order log's frames to, and orders that need more.
SMALL_FRAME = 24 << 10
ORDERS = 400
#: Orders sent at a time: their own frame (order and command ~250 bytes each) stays small.
BATCH = 40


def _exchange(instance: str, tmp_path: Path, **gw: object) -> Harness:
    base = config(instance, tmp_path, **gw)
    risk = msgspec.structs.replace(base.risk, max_open_orders=10 * ORDERS)
    h = Harness(msgspec.structs.replace(base, risk=risk))
    h.add_user("ALICE", "secret", 7)
    h.add_user("BOB", "secret", 8)
    h.fund(7)
    h.fund(8)
    return h


def open_orders(h: Harness, account: int) -> int:
    return h.router.sequencer.accounts.open_orders(account)


async def resting(alice: Client, count: int) -> None:
    """``count`` resting buys, each acknowledged."""
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        burst = b"".join(
            bytes(alice.message("D", *order(f"r{start + k}", "1", "0.01", "1.00")).encode())
            for k in range(n)
        )
        await alice.send_raw(burst)
        for _ in range(n):
            assert (await alice.expect("8", 5.0)).get(150) == b"0"


async def still_serves(port: int) -> None:
    """BOB logs on, places an order and has it acknowledged."""
    bob = await logged_on(port, "BOB")
    await bob.send("D", *order("alive", "2", "1.00", "50000.00"))
    assert (await bob.expect("8", 5.0)).get(150) == b"0"


@pytest.mark.parametrize("how", ["disconnect", "disconnect, compacting", "mass cancel"])
def test_cancelling_more_orders_than_a_frame_holds(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Found, fixed: ``disconnect`` (one frame of all the cancels) and ``compacting`` (a
    compaction step of all the live orders) raised ``OrderLogError`` on every pass after.
    ``mass cancel``: its events' changes are logged a batch (a read of 1,024 events a
    ring) at a time, far under the real limit, though over this test's before the fix.
    Then a clean restart finds none of her orders live."""
    h = _exchange(instance, tmp_path, cancel_on_disconnect=how.startswith("disconnect"))
    monkeypatch.setattr(order_log, "MAX_FRAME_BYTES", SMALL_FRAME)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        if how.endswith("compacting"):  # each write steps a compaction of every live order
            gw.order_log.compact_bytes, gw.order_log.step_entries = 1, 10 * ORDERS
        alice = await logged_on(port)
        await resting(alice, ORDERS)
        assert open_orders(h, 7) == ORDERS
        if how == "mass cancel":
            await alice.send("q", (11, "all"), (530, "7"), (60, utc()))
            assert (await alice.expect("r", 5.0)).get(531) == b"7"
        else:
            await alice.aclose()  # her session cancels on disconnect: ORDERS cancels at once
        await settled(lambda: not open_orders(h, 7), 10.0)
        assert open_orders(h, 7) == 0
        assert all(not t.done() for t in gw._tasks[:2]), "the poll or timer task ended"
        await still_serves(port)
        await h.stop()
        await h.start()
        restarted = h.gateway
        assert restarted is not None
        hers = h.users.get("ALICE")
        assert hers is not None
        assert not [o for o in restarted.entry.orders.values() if o.session == hers.session]

    run_scenario(h, scenario, 30)


def test_a_restart_that_cancels_more_orders_than_a_frame_holds(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found, fixed: the restart's cancels (``_recover``) made one frame too big, the first
    publish raised and the poll task ended; every restart after did the same."""
    h = _exchange(instance, tmp_path, cancel_on_disconnect=True)
    monkeypatch.setattr(order_log, "MAX_FRAME_BYTES", SMALL_FRAME)

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await resting(alice, ORDERS)
        await crash(h)  # SIGKILL: no disconnect seen, the cancels are the restart's
        await alice.aclose()
        port = await h.start()
        await settled(lambda: not open_orders(h, 7), 10.0)
        assert open_orders(h, 7) == 0
        gw = h.gateway
        assert gw is not None
        assert all(not t.done() for t in gw._tasks[:2]), "the poll or timer task ended"
        await still_serves(port)

    run_scenario(h, scenario, 30)


# -- the order log: a write too big for one frame ---------------------------------------------


def test_a_write_over_the_real_frame_limit_is_replayed_whole(tmp_path: Path) -> None:
    """The real 64 MiB: 66 entries of 1 MiB, and a write of many small ones (more entries
    than one frame takes), both come back whole."""
    path = tmp_path / "orders.log"
    log = OrderLog(path)
    log.load()
    big = [(ORDER, k, b"x" * (1 << 20)) for k in range(66)]
    log.write(big)
    many = [(COMMAND, k, 1, b"c") for k in range(2 * order_log.COMPACT_FRAME_ENTRIES + 7)]
    log.write(many)
    log.close()
    assert path.stat().st_size > order_log.MAX_FRAME_BYTES
    back = OrderLog(path).load()
    assert len(back.orders) == 66 and all(len(v[0]) == 1 << 20 for v in back.orders.values())
    assert len(back.commands) == len(many)


def test_a_write_cut_between_its_frames_is_dropped_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash inside a write of several frames: replay applies none of it (as it applies
    none of a torn frame), cuts it off, and appends go on after what it kept."""
    monkeypatch.setattr(order_log, "MAX_FRAME_BYTES", 4 << 10)
    path = tmp_path / "orders.log"
    log = OrderLog(path)
    log.load()
    log.write([(ORDER, 1, "before")])
    kept = log.size
    log.write([(ORDER, 100 + k, "x" * 200) for k in range(100)])  # ~20 KB: several frames
    log.close()
    data = path.read_bytes()
    frames = []
    pos = kept
    while pos < len(data):
        length, _ = order_log._FRAME.unpack_from(data, pos)
        pos += order_log._FRAME.size + length
        frames.append(pos)
    assert len(frames) > 2, "the write went as one frame"
    for cut in (frames[0], frames[-2], len(data) - 1):  # after its first, before its last, torn
        path.write_bytes(data[:cut])
        again = OrderLog(path)
        back = again.load()
        assert back.orders == {1: ["before"]}, f"cut at {cut}: {sorted(back.orders)[:5]}"
        assert path.stat().st_size == kept
        again.write([(ORDER, 2, "after")])
        again.close()
        assert OrderLog(path).load().orders == {1: ["before"], 2: ["after"]}


# -- FIX clients far ahead of the exchange that do not read ----------------------------------


async def small_window(port: int, comp: str) -> Client:
    """A client logged on over a socket with a small receive buffer: what it does not read
    backs up into the gateway's buffers at once."""
    c = Client(comp)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    c.reader, c.writer = await asyncio.open_connection(sock=sock)
    OPEN.append(c)
    await c.logon()
    return c


def buffers(gw: GatewayServer, clients: list[Client], size: int) -> None:
    """Every connection's kernel buffers (the gateway's send, the clients' receive) set to
    ``size``: small, what a client does not read backs up into the gateway's own buffers;
    large again, a client that reads gets it without a 4 KiB window's crawl."""
    for conn in gw.connections:
        assert conn.transport is not None
        sock = conn.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    for c in clients:
        assert c.writer is not None
        sock = c.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def flood(c: Client, prefix: str, count: int) -> None:
    """``count`` resting buys written at once, not waited for (no drain)."""
    assert c.writer is not None
    c.writer.write(
        b"".join(
            bytes(c.message("D", *order(f"{prefix}{k}", "1", "0.01", "1.00")).encode())
            for k in range(count)
        )
    )


async def take(c: Client, count: int) -> None:
    """Read until ``count`` first acks (``acks``) came (or 15 s of silence)."""
    got = len(acks(c))
    while got < count:
        msg = await c.recv(15.0)
        if msg is None:
            return
        got += _new_ack(msg)


def _new_ack(m: simplefix.FixMessage) -> bool:
    return bool(m.get(35) == b"8" and m.get(150) == b"0" and m.get(43) != b"Y")


def acks(c: Client) -> list[bytes]:
    """The ClOrdIDs of the New reports ``c`` got, first sendings only (no PossDup)."""
    return [m.get(11) for m in c.received if _new_ack(m)]


def seqs(c: Client, poss_dup: bool) -> list[int]:
    return [int(m.get(34)) for m in c.received if (m.get(43) == b"Y") == poss_dup]


SESSIONS = 8
FLOOD = 2_500


def test_sessions_that_flood_and_do_not_read_get_every_answer_once(
    instance: str, tmp_path: Path
) -> None:
    """Held: sessions that send far ahead of the exchange and read nothing have their reads
    stopped (their output is past the high-water mark) rather than their reports piled up;
    read at last, each gets one ack per order, in MsgSeqNum order, none lost, none twice."""
    h = _exchange(instance, tmp_path)
    names = [f"S{k}" for k in range(SESSIONS)]
    for k, name in enumerate(names):
        h.add_user(name, "secret", 100 + k)
        h.fund(100 + k)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        h.pause()  # in one loop, a matcher that filled the gateway's ring would wait for it
        h.resume_paced()  # forever: stepped only while the gateway keeps up
        clients = [await small_window(port, name) for name in names]
        buffers(gw, clients, 4096)
        for c in clients:
            flood(c, c.comp_id, FLOOD)

        def held_or_done() -> bool:
            by_comp = {conn.session.comp_id: conn for conn in gw.connections if conn.session}
            return all(
                by_comp[n].writing_paused or gw.stores[n].next_in == FLOOD + 2 for n in names
            )

        await settled(held_or_done, 20.0)
        assert held_or_done()
        paused = sum(conn.writing_paused for conn in gw.connections)
        assert paused, "no client's output backed up: the scenario tests nothing"
        buffers(gw, clients, 1 << 20)
        await asyncio.gather(*(take(c, FLOOD) for c in clients))
        for c in clients:
            got = acks(c)
            assert len(got) == FLOOD == len(set(got)), (c.comp_id, len(got), len(set(got)))
            assert seqs(c, False) == list(range(1, FLOOD + 2)), c.comp_id
        assert sum(open_orders(h, 100 + k) for k in range(SESSIONS)) == SESSIONS * FLOOD
        await settled(lambda: not gw.in_flight())
        assert gw.in_flight() == 0

    run_scenario(h, scenario, 60)


def test_a_resend_of_the_whole_session_while_it_floods_and_does_not_read(
    instance: str, tmp_path: Path
) -> None:
    """Held: a ResendRequest for everything (7=1, 16=0) followed at once by a flood of
    orders, nothing read until the gateway has stopped reading the client: the resend is
    answered in order, then every new order's ack, once, MsgSeqNums unbroken."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        h.pause()
        h.resume_paced()
        alice = await small_window(port, "ALICE")
        buffers(gw, [alice], 4096)
        await resting(alice, 1_000)  # a history to resend
        last = int(alice.received[-1].get(34))
        alice.received.clear()
        await alice.send("2", (7, 1), (16, 0))
        flood(alice, "n", FLOOD)
        (conn,) = gw.connections
        await settled(lambda: conn.writing_paused, 10.0)
        assert conn.writing_paused
        buffers(gw, [alice], 1 << 20)
        await take(alice, FLOOD)
        assert seqs(alice, True)[0] == 1 and seqs(alice, True)[-1] <= last
        assert seqs(alice, False) == list(range(last + 1, last + 1 + len(seqs(alice, False))))
        got = acks(alice)
        assert len(got) == FLOOD == len(set(got))
        assert open_orders(h, 7) == 1_000 + FLOOD

    run_scenario(h, scenario, 60)


# -- input that makes no output: the audit journal's buffer -----------------------------------


#: What the audit journal's buffer may hold (``audit.MAX_BUFFERED_BYTES``).
AUDIT_BUFFER = MAX_BUFFERED_BYTES


class _Held:
    """The most the audit journal's buffer held (bytes of its messages) over its records."""

    def __init__(self, gw: GatewayServer) -> None:
        self.audit, self.lines, self.bytes, self.most = gw.audit, 0, 0, 0
        real = gw.audit.record

        def record(ts_ns: int, inbound: bool, comp_id: str, raw: bytes) -> None:
            real(ts_ns, inbound, comp_id, raw)
            entries = self.audit._entries
            if len(entries) > self.lines:
                self.bytes += len(raw)
            else:  # written meanwhile
                self.bytes = sum(len(e[2]) for e in entries)
            self.lines = len(entries)
            self.most = max(self.most, self.bytes)

        gw.audit.record = record  # type: ignore[method-assign]  # a spy on the instance


def test_a_heartbeat_flood_is_not_held_in_the_audit_buffer(instance: str, tmp_path: Path) -> None:
    """Found, fixed. Heartbeats in sequence answer nothing and publish nothing: their audit
    lines waited for another session's output or the timers' flush once a second. 40k of
    them (3 MB) were all held; a client sending junk for 3 s made the gateway hold 583 MB.
    Now the buffer is written once ``MAX_BUFFERED_BYTES`` wait. (40k in one burst is past
    the default intake limit, 20k messages a second, since review 38: raised here.)"""
    h = _exchange(instance, tmp_path, max_inbound_per_s=1_000_000)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        gw._tasks[1].cancel()  # no flush once a second: the buffer is all there is
        alice = await logged_on(port)
        held = _Held(gw)
        count = 40_000
        await alice.send_raw(b"".join(bytes(alice.message("0").encode()) for _ in range(count)))
        await settled(lambda: gw.stores["ALICE"].next_in == count + 2, 20.0)
        assert gw.stores["ALICE"].next_in == count + 2
        assert held.most <= AUDIT_BUFFER, f"the audit buffer held {held.most} bytes of messages"

    run_scenario(h, scenario, 30)


def test_junk_before_a_logon_is_cut_off_not_read_and_journaled_at_socket_speed(
    instance: str, tmp_path: Path
) -> None:
    """Found, fixed. A connection that sends no Logon is read while the exchange is behind
    as always (connection.py), and junk is ignored as a garbled message: read as fast as
    the socket gives it, each read journaled whole until the logon timeout (10 s): 590 MB
    of audit.log in 3 s from one client nobody had let in. Now it is closed past
    ``MAX_BYTES_BEFORE_LOGON``."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        gw._tasks[1].cancel()  # no logon timeout: the limit alone ends it
        before = gw.audit.path.stat().st_size
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        junk = b"\x00junk" * (1 << 16)  # 320 KiB a write
        sent = 0
        try:
            for _ in range(64):  # 20 MiB
                writer.write(junk)
                await writer.drain()
                sent += len(junk)
        except (ConnectionResetError, BrokenPipeError):
            pass
        await settled(lambda: not gw.connections)
        gw.audit.flush()
        journaled = gw.audit.path.stat().st_size - before
        assert not gw.connections, f"still connected after {sent} bytes of junk"
        assert journaled < 2 * connection.MAX_BYTES_BEFORE_LOGON + (512 << 10), journaled
        writer.close()
        await still_serves(port)

    run_scenario(h, scenario, 30)


# -- REST: pipelined orders on many keep-alive connections ----------------------------------

LANES = 12
PIPELINED = 100
STREAM_QUEUE = 64
_BODY = "symbol=BTC-USD&side=BUY&type=LIMIT&price=1.00&quantity=0.01&newClientOrderId={}"


def _rest_exchange(instance: str, tmp_path: Path) -> Harness:
    rest = RestConfig(port=0, key_rate_per_s=1e6, key_burst=10**6, ip_rate_per_s=1e6,
                      ip_burst=10**6, stream_queue=STREAM_QUEUE)  # fmt: skip
    base = config(instance, tmp_path, rest=rest)
    risk = msgspec.structs.replace(base.risk, max_open_orders=10 * LANES * PIPELINED)
    cfg = msgspec.structs.replace(
        base, ring=RingConfig(capacity=64), risk=risk, database=DatabaseConfig(enabled=False)
    )
    h = Harness(cfg)
    h.add_user("ALICE", "alice-pw", 601)
    h.fund(601)
    return h


def signed(c: RestClient, now_ms: int, body: bytes) -> dict[str, str]:
    """An order's headers signed at ``now_ms`` (the client's own clock counts a millisecond
    a request: 1,200 at once would run a second ahead of the server's window)."""
    signature = sign(c.secret, now_ms, 5_000, "POST", "/api/v1/order", "", body)
    return {API_KEY: c.api_key, TIMESTAMP: str(now_ms), RECV_WINDOW: "5000", SIGNATURE: signature}


def test_pipelined_orders_on_many_connections_wait_one_a_connection(
    instance: str, tmp_path: Path
) -> None:
    """Held: a client that pipelines a hundred orders on each of a dozen keep-alive
    connections while the router takes nothing has one order a connection waiting for its
    answer (the lane answers in order), so what waits in the gateway is bounded by its
    connections, not by what was sent; once the router goes on, each order is answered
    once, 200, and placed once. Her private stream, which she does not read, queues no
    more than its limit (past it, it is cut: a slow consumer), the orders unaffected."""
    h = _rest_exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None and gw.api is not None
        api = gw.api
        alice = await rest_client(f"http://127.0.0.1:{api.port}", "ALICE", "alice-pw")
        ws = await alice.stream()  # never read
        await settled(lambda: any(sub.ready for sub in api.streams.by_account.get(601, ())))
        (sub,) = api.streams.by_account[601]
        longest = 0
        real_push = sub.push

        def push(event: str, data: dict[str, object]) -> None:
            nonlocal longest
            real_push(event, data)
            longest = max(longest, len(sub.queue))

        sub.push = push  # type: ignore[method-assign]  # a spy on the instance
        h.pause()  # the router takes nothing: the first answers wait
        streams = [await asyncio.open_connection("127.0.0.1", api.port) for _ in range(LANES)]
        now_ms = time.time_ns() // 1_000_000
        for n, (_, writer) in enumerate(streams):
            data = b""
            for k in range(PIPELINED):
                body = _BODY.format(f"p{n}x{k}").encode()
                head = signed(alice, now_ms, body)
                data += rest_request(
                    b"POST /api/v1/order HTTP/1.1",
                    b"Content-Type: application/x-www-form-urlencoded",
                    b"Content-Length: %d" % len(body),
                    *(f"{name}: {value}".encode() for name, value in head.items()),
                    body=body,
                )
            writer.write(data)
        await settled(lambda: len(api.waiters) == LANES)
        assert len(api.waiters) == LANES
        assert len(api.core.requests) == LANES and len(gw.entry.outgoing) <= LANES
        assert max(len(lane._queue) for lane in api.lanes) < PIPELINED
        h.resume_paced()

        async def answers(reader: asyncio.StreamReader) -> list[int]:
            codes: list[int] = []
            while len(codes) < PIPELINED:
                head = await reader.readuntil(b"\r\n\r\n")
                codes += statuses(head)
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
            return codes

        got = await asyncio.gather(*(answers(reader) for reader, _ in streams))
        assert got == [[200] * PIPELINED] * LANES
        for _, writer in streams:
            writer.close()
        assert open_orders(h, 601) == LANES * PIPELINED
        assert not api.waiters and not api.core.requests
        assert longest <= STREAM_QUEUE + 1, f"the stream queued {longest} messages"
        assert not sub.cut or sub.cut.startswith(b"slow consumer"), sub.cut
        await ws.close()
        await alice.close()

    run_scenario(h, scenario, 60)
