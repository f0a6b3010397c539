"""A third hostile review of the FIX 4.4 session layer and its asyncio shell (session.py,
server.py, audit.py), over real TCP with the simplefix client of ``harness.py``. What
``test_review_fix_session_bugs.py``, ``test_gateway.py`` and ``test_adversarial_fix*.py`` test
is not repeated. Each test fails because of the bug its docstring names: what is wrong, what
FIX 4.4 (or QuickFIX, or the gateway's own spec in issue 5) says, expected against actual."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import msgspec
import pytest

from config.edges import GatewayConfig
from config.schema import RingConfig
from procs.gateway.server import GatewayServer
from tests.free_ports import free_port
from tests.unit.gateway.harness import (
    Client,
    Harness,
    close_all,
    config,
    run_scenario,
    settled,
    utc,
)
from tests.unit.gateway.test_gateway import logged_on, run


def framed(*fields: tuple[object, object]) -> bytes:
    """A message with exactly these fields, in this order, framed by hand (BodyLength and
    CheckSum computed here): for what simplefix will not write."""

    def text(v: object) -> bytes:
        return v if isinstance(v, bytes) else str(v).encode()

    body = b"".join(b"%s=%s\x01" % (text(t), text(v)) for t, v in fields)
    head = b"8=FIX.4.4\x019=%d\x01" % len(body)
    return head + body + b"10=%03d\x01" % (sum(head + body) % 256)


def bad_checksum(raw: bytes) -> bytes:
    """``raw`` with a CheckSum one off: a garbled message (FIX: ignored, seq not consumed)."""
    good = int(raw[-4:-1])
    return raw[:-4] + b"%03d\x01" % ((good + 1) % 256)


# -- sequence numbers -------------------------------------------------------------------------


def test_a_gap_the_resend_left_open_is_requested_again(harness: Harness) -> None:
    """A too-high message opens a ResendRequest (``_resend_upto``); while one is open the
    session sends no other and drops every too-high message (session.py ``_active``:
    ``if self._resend_upto < expected``). When the resend does not close the gap (here the
    client's resent seq 3 arrives garbled, which FIX says to ignore), ``expected`` stays below
    ``_resend_upto`` for ever: every later message is dropped in silence, TestRequests go
    unanswered, and no ResendRequest ever asks for the hole again. The session is a zombie.

    FIX 4.4 Vol 2 (message recovery) and QuickFIX (``Session::verify``: once a message at or
    past the requested range's end arrives, the ResendRequest counts as satisfied and a new
    gap is requested again): a ResendRequest from 3. Expected 35=2 with 7=3; actual: nothing.
    """

    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)  # seq 1; the gateway expects 2
        await c.send("1", (112, "ahead"), seq=4)
        rr = await c.expect("2")
        assert rr.get(7) == b"2"
        # the client's answer to 2..0: a gap fill for 2, its 3 garbled on the way, then 4
        await c.send("4", (123, "Y"), (36, 3), seq=2, poss_dup=True, orig_sending_time=utc())
        lost = c.message("1", (112, "lost"), seq=3)
        await c.send_raw(bad_checksum(bytes(lost.encode())))
        await c.send("1", (112, "ahead"), seq=4, poss_dup=True, orig_sending_time=utc())
        await c.send("1", (112, "probe"), seq=5)
        answer = await c.recv(2.0)
        assert answer is not None, "silence: seq 3 is never asked for again"
        assert (answer.get(35), answer.get(7)) == (b"2", b"3"), answer

    run(harness, scenario)


# -- validation before the session rules ------------------------------------------------------


@pytest.mark.parametrize(
    ("sending_time", "reason"),
    [
        (None, b"1"),  # SendingTime missing: RequiredTagMissing
        (b"Z", b"6"),  # a time zone designator: IncorrectDataFormat
    ],
)
def test_a_missing_or_malformed_sending_time_is_a_reject_not_a_logout(
    harness: Harness, sending_time: bytes | None, reason: bytes
) -> None:
    """session.py ``_active`` runs the SendingTime tolerance check (``logon.sending_time``)
    before the dictionary validation, and that check returns None for a missing or malformed
    SendingTime too: both are treated as "SendingTime accuracy problem" (373=10) and the
    client is logged out.

    FIX 4.4 Vol 2 and issue 5: a required tag missing is SessionRejectReason 1, a value in
    the wrong format 6 (UTCTimestamp has no time zone), each with RefTagID 52, the seq
    consumed and the session going on; only a well-formed SendingTime outside the tolerance
    is Reject 10 and Logout (QuickFIX validates against the dictionary before ``verify``).
    Expected Reject 373=<1|6> 371=52, then the next TestRequest answered; actual 373=10 and
    a Logout."""

    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        head: list[tuple[object, object]] = [(35, "1"), (49, "ALICE"), (56, "RINGEX")]
        head.append((34, c.seq))
        if sending_time is not None:
            head.append((52, utc() + sending_time))
        c.seq += 1
        await c.send_raw(framed(*head, (112, "x")))
        reject = await c.expect("3")
        assert (reject.get(373), reject.get(371)) == (reason, b"52"), reject
        await c.send("1", (112, "next"))
        assert (await c.expect("0")).get(112) == b"next"

    run(harness, scenario)


# -- the audit journal ------------------------------------------------------------------------


def test_a_value_with_a_newline_cannot_forge_an_audit_line(harness: Harness) -> None:
    """audit.py ``record`` writes one line per message, ``<ts> <in|out> <comp id> <raw with
    SOH shown as |>``, but writes the raw bytes as they came: a value holding a newline (any
    byte is allowed in a String field; TestReqID is echoed back, so it is in two lines) ends
    the line there, and the rest of the value becomes a line of its own. A client can thus
    write whatever audit records it likes, e.g. an outbound ExecutionReport that was never
    sent, into the "raw FIX audit journal" issue 5 asks for.

    Expected: every line of audit.log is one message as it was on the wire (the newline
    escaped); actual: the forged line is in the journal as a record of its own."""
    forged = b"1700000000000000000 out ALICE 8=FIX.4.4|9=5|35=8|10=000|"

    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send("1", (112, b"x\n" + forged))
        assert (await c.expect("0")).get(112) == b"x\n" + forged
        assert h.gateway is not None
        h.gateway.audit.flush()
        lines = h.gateway.audit.path.read_bytes().split(b"\n")
        own = [line for line in lines if line.startswith(forged)]
        assert not own, f"a client wrote its own lines into the audit journal: {own}"

    run(harness, scenario)


def test_the_audit_journal_does_not_keep_passwords_in_clear(harness: Harness) -> None:
    """audit.py records every inbound message raw, the Logon too: its Password (554) lands
    in ``audit.log`` in clear text, for every logon, right or wrong (a wrong one is often
    another of the user's passwords), in a file opened with the default mode (world-readable
    under the usual umask 022). The users file keeps only salted scrypt digests (issue 5:
    "Password (554) is checked against a salted hash"), so the audit journal undoes that.

    Expected: the Password's value masked in the journal (QuickFIX users filter it; FIX
    does not require a journal to keep credentials); actual: ``554=secret`` and
    ``554=guess`` both in audit.log."""

    async def scenario(h: Harness, port: int) -> None:
        wrong = Client("ALICE")
        await wrong.connect(port)
        await wrong.send("A", (98, 0), (108, 30), (554, "guess"))
        assert await wrong.closed()
        await logged_on(port)
        assert h.gateway is not None
        h.gateway.audit.flush()
        journal = h.gateway.audit.path.read_bytes()
        assert b"|554=" in journal  # the Logons are journaled
        assert b"554=secret" not in journal and b"554=guess" not in journal

    run(harness, scenario)


# -- the shell: slow clients, shared ports ----------------------------------------------------


def test_a_client_that_does_not_read_cannot_grow_the_gateways_memory(harness: Harness) -> None:
    """server.py writes every output with ``transport.writelines`` and never looks at the
    transport's buffer: ``Connection`` has no ``pause_writing`` and the gateway keeps
    reading a client whose output it cannot send. A client that stops reading and sends
    ResendRequests (7=1, 16=0; about 80 bytes each, answered with its whole history: an
    amplification of hundreds) makes the gateway buffer what it likes: 600 of them (48 kB)
    after 100 reports buffer ~12 MB for one connection, and nothing bounds it.

    Issue 5 (Robustness: limits, TCP backpressure; a slow client must not take the process
    down) and the practice of FIX engines (QuickFIX/J's MaxScheduledWriteRequests, the
    market-data feed's own ``client_queue``): a connection whose unsent output passes a
    bound stops being read or is dropped. Expected: the connection closed, or under 4 MiB
    buffered for it; actual: ~12 MB buffered and the connection still read."""
    bound = 4 << 20

    async def scenario(h: Harness, port: int) -> None:
        c = Client("ALICE")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that lags
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        c.reader, c.writer = await asyncio.open_connection(sock=sock)
        await c.logon()
        n = 100  # its history: 100 ExecutionReports (rejects of an unknown symbol)
        orders = [
            c.message("D", (11, f"r{k:030d}"), (55, "XX"), (54, 1), (60, utc()), (38, 1), (40, 1))
            for k in range(n)
        ]
        await c.send_raw(b"".join(bytes(m.encode()) for m in orders))
        for _ in range(n):
            await c.expect("8")
        # from here on the client reads nothing
        c.writer.write(
            b"".join(bytes(c.message("2", (7, 1), (16, 0)).encode()) for _ in range(600))
        )
        gw = h.gateway
        assert gw is not None
        await settled(lambda: gw.stores["ALICE"].next_in >= c.seq, 6.0)
        await asyncio.sleep(0.2)
        buffered = [
            x.transport.get_write_buffer_size()
            for x in gw.connections
            if x.transport is not None and not x.transport.is_closing()
        ]
        await c.aclose()  # (the gateway may have dropped it: what the fix does)
        assert max(buffered, default=0) < bound, f"{max(buffered):,} bytes buffered"

    run(harness, scenario)


def test_a_second_logon_through_a_shared_port_is_refused(instance: str, tmp_path: Path) -> None:
    """Two gateways sharing a port with ``reuse_port`` (README: allowed; issue 5: "several
    gateway processes ... sharing one with SO_REUSEPORT") each keep their own ``live``
    sessions and their own session stores (server.py: ``self.live``, ``self.store`` under
    ``gateway_dir``). The kernel spreads connections over them, so a second connection for a
    logged-on CompID that lands on the other gateway is accepted: the same FIX session
    (ALICE-RINGEX) is logged on twice, each with its own sequence numbers (a reconnect that
    lands on the other gateway is then refused as "MsgSeqNum too low" or sees another
    session's numbers).

    Issue 5: "A second connection for a logged-on session is refused and the first stays
    up." Expected: every further Logon as ALICE answered by a Logout; actual: one of them
    (the first that lands on the second gateway) gets a Logon back."""
    port = free_port()
    cfg = config(instance, tmp_path)
    gws = [GatewayConfig(name=f"gw{i}", id=i, port=port, reuse_port=True) for i in (1, 2)]
    cfg = msgspec.structs.replace(cfg, gateways=gws)
    h = Harness(cfg)
    h.add_user("ALICE", "secret", 7)

    async def main() -> None:
        await h.start()
        other = GatewayServer(cfg, "gw2")
        await other.start()
        try:
            first = Client("ALICE")
            await first.connect(port)
            await first.logon()
            answers = []
            for _ in range(16):  # the kernel's hash sends about half to each gateway
                c = Client("ALICE")
                await c.connect(port)
                await c.send("A", (98, 0), (108, 30), (554, "secret"))
                answer = await c.recv()
                answers.append(None if answer is None else answer.get(35))
                await c.aclose()
            assert answers == [b"5"] * 16, answers
        finally:
            await close_all()
            await other.shutdown(grace_s=0.2)
            await h.stop()

    try:
        asyncio.run(main())
    finally:
        h.close()


def test_a_client_is_not_timed_out_for_heartbeats_the_gateway_did_not_read(
    instance: str, tmp_path: Path
) -> None:
    """While the exchange is behind, the shell stops reading every socket (server.py
    ``publish`` -> ``pause_reading``, intake.py), but the sessions' timers go on judging the
    clients by what was read (session.py ``on_timer``: ``_last_in_ns``). A client that
    heartbeats on time, its Heartbeats and its answer to the TestRequest waiting unread in
    the gateway's own socket, is sent a TestRequest and then dropped for "no answer to a
    TestRequest" (and, with cancel on disconnect, loses its orders), for a pause of about
    two heartbeat intervals the gateway chose.

    FIX 4.4 Vol 2: a TestRequest and a disconnect are for a counterparty that has been
    silent; issue 5: the pause is TCP backpressure, nothing accepted is lost. Expected: the
    session up after the pause (its heartbeats read and taken); actual: it is closed after
    ~3 s with HeartBtInt 1 while the client sent a Heartbeat every 0.5 s."""
    cfg = msgspec.structs.replace(config(instance, tmp_path), ring=RingConfig(capacity=256))
    h = Harness(cfg)
    h.add_user("ALICE", "secret", 7)
    h.fund(7)

    async def scenario(h: Harness, port: int) -> None:
        c = Client("ALICE")
        await c.connect(port)
        await c.logon(hb=1)
        gw = h.gateway
        assert gw is not None
        (conn,) = gw.connections
        session = conn.session
        assert session is not None
        h.pause()  # the router stops taking commands: the gateway's intake pauses
        pairs = ((55, "BTC-USD"), (54, 1), (60, utc()), (38, "0.01"), (40, 2), (44, "100.00"))
        orders = [bytes(c.message("D", (11, f"p{k}"), *pairs).encode()) for k in range(200)]
        await c.send_raw(b"".join(orders))
        await settled(lambda: gw.pacing.paused)
        assert gw.pacing.paused
        assert c.writer is not None
        for _ in range(8):  # 4 s of heartbeats every 0.5 s, on time
            c.writer.write(bytes(c.message("0").encode()))
            await asyncio.sleep(0.5)
        h.resume()
        await settled(lambda: not gw.pacing.paused)
        assert not session.closed, f"dropped while paused: {session.close_reason}"

    run_scenario(h, scenario)
