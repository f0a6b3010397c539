"""Review 38: a logged-on FIX client that makes the gateway write its audit journal without a
bound, by sending what the session ignores, answers or rejects.

Review 37 closed a connection that sends 64 KiB without a Logon (``connection.py``).
Before this review, once logged on, nothing counted what the session ignores or refuses.
The one throttle (``GatewayConfig.max_messages_per_s``, a ``TokenBucket`` in
``Session._in_sequence``) counts only application messages that are in sequence, valid and
not a BusinessMessageReject (j) of the client's; past it each one is answered with a j, one
by one, for as long as the client goes on: no Logout, no disconnect. Every inbound message,
garbled or not, is journaled (``Session.data_received``), and every answer too (``_sent``),
answers also in the session's message store (``sessions/<comp>/messages``), which only a
reset logon truncates.

Measured before the fix (a client in its own process flooding for 2 s as fast as it can, a
gateway in the harness, this 2-core machine; ``audit.log`` growth per second of sending):

========================================  =============  ==============================
what the logged-on client sends           audit.log      also
========================================  =============  ==============================
junk, no ``8=FIX.4.4`` (40 KiB writes)    ~238 MB/s      each read journaled as one line
BodyLength past the message (9=80xx)      ~280 MB/s      from 3.5 MB/s sent: ~80x
BodyLength wrong (over by 100)            ~43 MB/s       from 16 MB/s sent
CheckSum wrong                            ~14 MB/s
Heartbeat (0), in sequence                ~11 MB/s
TestRequest (1)                           ~19 MB/s       store +7.5 MB/s (Heartbeats)
invalid message -> Reject (3)             ~13 MB/s       store +6.9 MB/s
unsupported MsgType -> j                  ~16 MB/s       store +7.9 MB/s
past the throttle (100/s) -> j each       ~19 MB/s       store +8.7 MB/s
a BusinessMessageReject (j) of the client ~12 MB/s       not throttled at all
========================================  =============  ==============================

None of them ended the session. A garbled message whose BodyLength points past its end was
journaled as the bytes up to where that BodyLength ends (``FixReader.messages``:
``buf[pos:body_end]``), and the reader then resynchronises on the next ``8=FIX.4.4`` inside
them: each byte the client sent is journaled up to ``max_message_bytes / its message size``
times over, so the journal is not the wire (and a BodyLength short of the message leaves
the bytes it skips out of the journal altogether).

Bounded already, pinned here: a declared message over ``max_message_bytes`` and another
FIX version's BeginString end the session with a Logout naming the value (the latter after
journaling the read it came in, up to 256 KiB, as one line); a client that does not read its
answers stops being read (``connection.py``); application messages past the throttle never
reach the exchange.

Fixed since: a logged-on session's every message counts against ``max_inbound_per_s``
(``GatewayConfig``; twice ``max_messages_per_s`` by default), its junk's bytes against 64 KiB
a second, each past its limit a Logout naming it and a close; a garbled message is journaled
as the bytes skipped to the next message (``FixReader._skip``). The flood tests send
``FLOOD`` messages (or ``JUNK_BYTES`` of junk) at a throttle of ``THROTTLE`` messages/s and
hold the gateway to that: the session logged out naming a limit and closed, under
``MOST_JOURNALED`` bytes journaled (a flood of ``MOST_MESSAGES``, twice over for the
answers).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from procs.gateway.server import GatewayServer
from tests.unit.gateway.harness import Client, Harness, config, run_scenario, settled
from tests.unit.gateway.test_adversarial_fix import crafted, order
from tests.unit.gateway.test_gateway import logged_on
from tests.unit.gateway.test_review37_overload import buffers, small_window

#: The session throttle these tests run with (application messages/s).
THROTTLE = 50
#: Messages a flood sends.
FLOOD = 30_000
#: Bytes of junk a junk flood sends, in writes of ``JUNK``.
JUNK = b"\x00junk" * 8192
JUNK_BYTES = 16 << 20
#: Messages the gateway takes from a session flooding far past its throttle before it
#: logs it out: 20 seconds of the throttle (a rule of "N times the throttle" for any N up to
#: ~10 meets it), and what they may journal: each line and its answer's, ~200 bytes each,
#: with room for a 256 KiB read of junk.
MOST_MESSAGES = 20 * THROTTLE
MOST_JOURNALED = 1 << 20
#: The most one read of a socket gives (uvloop's buffer): a garbled stretch of it is one line.
READ_BYTES = 256 << 10
#: Sent before the closing TestRequest: a garbled message whose BodyLength points past
#: its end waits for that many bytes, and would hold the TestRequest back.
PAD = b"\x00" * 8_300
_LOGOUT_TEXT = re.compile(rb"\x0135=5\x01.*?\x0158=([^\x01]*)\x01", re.DOTALL)


def _exchange(instance: str, tmp_path: Path, **gateway: object) -> Harness:
    h = Harness(config(instance, tmp_path, max_messages_per_s=THROTTLE, **gateway))
    h.add_user("ALICE", "secret", 7)
    h.fund(7)
    return h


@dataclass
class Flood:
    """What a flood did to the gateway."""

    sent: int  # bytes the client wrote
    journaled: int  # bytes audit.log grew by
    stored: int  # bytes the session's message store grew by
    seconds: float  # from the first write to the answer to the closing TestRequest (or EOF)
    closed: bool  # the gateway closed the connection
    logout: bytes  # the text of the Logout it sent, if any
    received: bytes  # all the client read

    def rate(self) -> str:
        return (
            f"sent {self.sent} B, journaled {self.journaled} B "
            f"({self.journaled / self.seconds / 1e6:.1f} MB/s), stored {self.stored} B, "
            f"in {self.seconds:.2f} s; closed={self.closed} logout={self.logout!r}"
        )


def _sizes(gw: GatewayServer) -> tuple[int, int]:
    gw.audit.flush()
    store = gw.stores["ALICE"]
    store.flush()
    messages = store.directory / "messages"
    return gw.audit.path.stat().st_size, messages.stat().st_size if messages.exists() else 0


async def flood(gw: GatewayServer, c: Client, writes: list[bytes]) -> Flood:
    """Write ``writes`` (500 messages' worth at a time) as fast as the socket takes them,
    reading all the while, then a TestRequest (112=END) and wait for its Heartbeat or for the
    gateway to close the connection."""
    assert c.reader is not None and c.writer is not None
    reader, writer = c.reader, c.writer
    audit0, store0 = _sizes(gw)
    received = bytearray()
    done = asyncio.Event()
    reset = False  # the gateway closed with our bytes unread: the kernel's RST, not EOF

    async def read() -> None:
        nonlocal reset
        try:
            while not done.is_set():
                data = await reader.read(1 << 20)
                if not data:
                    break
                received.extend(data)
                if b"\x01112=END\x01" in received[-len(data) - 16 :]:
                    break
        except ConnectionError:
            reset = True
        finally:
            done.set()

    task = asyncio.get_running_loop().create_task(read())
    sent = 0
    start = time.monotonic()
    try:
        for k in range(0, len(writes), 500):
            if done.is_set():
                break
            data = b"".join(writes[k : k + 500])
            writer.write(data)
            await writer.drain()
            sent += len(data)
        if not done.is_set():
            writer.write(PAD + crafted(c, "1", (112, "END")))
            await writer.drain()
    except ConnectionError:
        pass  # the gateway closed it
    await settled(done.is_set, 15.0)
    seconds = time.monotonic() - start
    task.cancel()
    closed = reset or reader.at_eof()
    audit1, store1 = _sizes(gw)
    found = _LOGOUT_TEXT.search(received)
    return Flood(
        sent=sent,
        journaled=audit1 - audit0,
        stored=store1 - store0,
        seconds=seconds,
        closed=closed,
        logout=found.group(1) if found else b"",
        received=bytes(received),
    )


# -- what a logged-on client may send without end ---------------------------------------------


def _bad_checksum(c: Client) -> bytes:
    raw = crafted(c, "0", seq=c.seq)  # garbled: its MsgSeqNum is never taken
    return raw[:-4] + b"%03d\x01" % ((int(raw[-4:-1]) + 1) % 256)


def _length(c: Client, extra: int) -> bytes:
    raw = crafted(c, "0", seq=c.seq)
    length = int(raw.split(b"\x01")[1][2:])
    return raw.replace(b"\x019=%d\x01" % length, b"\x019=%d\x01" % (length + extra), 1)


#: name -> (one message of the kind, from the client's next MsgSeqNum), FLOOD of each
KINDS: dict[str, Callable[[Client], bytes]] = {
    "checksum wrong (garbled)": _bad_checksum,
    "BodyLength over by 100 (garbled)": lambda c: _length(c, 100),
    "Heartbeat": lambda c: crafted(c, "0"),
    "TestRequest": lambda c: crafted(c, "1", (112, "T")),
    "invalid NewOrderSingle -> Reject": lambda c: crafted(c, "D"),
    "unsupported MsgType -> BusinessMessageReject": lambda c: crafted(c, "B", (148, "x")),
    "cancels past the throttle -> BusinessMessageReject": lambda c: crafted(
        c, "F", (41, "none"), (11, f"c{c.seq}"), (55, "BTC-USD"), (54, 1), (60, "20240101-00:00:00")
    ),
    "the client's BusinessMessageReject (not throttled)": lambda c: crafted(
        c, "j", (45, 1), (372, "8"), (380, 0)
    ),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_logged_on_flood_is_logged_out_before_the_journal_grows_far(
    instance: str, tmp_path: Path, kind: str
) -> None:
    """The gateway counts every inbound message, garbled ones included, against the
    session's limit, and logs a session far past it out (naming the limit) and closes it:
    having journaled under ``MOST_JOURNALED`` bytes. (Before review 38 all ``FLOOD`` were
    journaled, and answered where they are answered, and the session stayed up.)"""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        alice = await logged_on(port)
        make = KINDS[kind]
        got = await flood(gw, alice, [make(alice) for _ in range(FLOOD)])
        assert got.closed and b"the limit is" in got.logout, f"{kind}: {got.rate()}"
        assert got.journaled < MOST_JOURNALED, f"{kind}: {got.rate()}"

    run_scenario(h, scenario, 25)


def test_junk_after_a_logon_is_cut_off_as_junk_before_it_is(instance: str, tmp_path: Path) -> None:
    """Bytes that hold no ``8=FIX.4.4`` are not a message however long they run: a fixed
    gateway logs the session out past a limit (``max_message_bytes`` or the 64 KiB before a
    Logon) rather than journal every read of them as one line."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        alice = await logged_on(port)
        got = await flood(gw, alice, [JUNK] * (JUNK_BYTES // len(JUNK)))
        assert got.closed and b"the limit is" in got.logout, f"junk: {got.rate()}"
        assert got.journaled < MOST_JOURNALED, f"junk: {got.rate()}"

    run_scenario(h, scenario, 25)


def test_a_garbled_message_journals_the_bytes_it_skipped_not_those_after(
    instance: str, tmp_path: Path
) -> None:
    """Messages each declaring a BodyLength 8,000 bytes past its end (under the 8,192
    limit): the reader skips one message and resynchronises on the next; before review 38
    it journaled the 8 KB its BodyLength spans, 2,000 such messages (~160 KB) as ~16 MB.
    Now it journals what it skipped (``FixReader._skip``): no more than was sent, and a
    line's prefix (timestamp, direction, CompID) a message."""
    h = _exchange(instance, tmp_path)
    count = 2_000

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        alice = await logged_on(port)
        got = await flood(gw, alice, [_length(alice, 8_000) for _ in range(count)])
        lines = count + 8  # and the pad's, the TestRequest and its Heartbeat
        most = got.sent + len(PAD) + 2 * lines * 64
        assert got.journaled <= most, f"{got.journaled} B journaled, at most {most}: {got.rate()}"

    run_scenario(h, scenario, 25)


# -- bounded already ---------------------------------------------------------------------------


def test_a_declared_oversize_message_logs_out_naming_the_limit(
    instance: str, tmp_path: Path
) -> None:
    """Held: a BodyLength over ``max_message_bytes`` ends the stream (``FrameError``) with a
    Logout that names both numbers; nothing of the body is read or journaled."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        alice = await logged_on(port)
        body = b"35=0\x01" + b"x" * 99_995
        got = await flood(gw, alice, [b"8=FIX.4.4\x019=100000\x01" + body])
        assert got.closed, got.rate()
        assert b"BodyLength 100000" in got.logout and b"8192" in got.logout, got.logout
        assert got.journaled < 4096, got.rate()

    run_scenario(h, scenario, 25)


def test_another_fix_version_after_a_logon_logs_out(instance: str, tmp_path: Path) -> None:
    """Held: a message framed as another FIX version is garbled but answered: a Logout that
    names the BeginString, and the connection closes."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        alice = await logged_on(port)
        raw = crafted(alice, "0").replace(b"FIX.4.4", b"FIX.4.2", 1)
        got = await flood(gw, alice, [raw] * 1_000)
        assert got.closed, got.rate()
        assert got.logout == b"Incorrect BeginString 'FIX.4.2', expected FIX.4.4"
        assert got.journaled < READ_BYTES + (64 << 10), got.rate()  # one read, one line

    run_scenario(h, scenario, 25)


def test_a_test_request_flood_from_a_client_that_does_not_read_stops_being_read(
    instance: str, tmp_path: Path
) -> None:
    """Held: answers the client does not read stop its input (``Connection.pause_writing``),
    so a TestRequest flood without reading journals only what fits the buffers: the
    gateway's write buffer (256 KiB) and the kernel's, here 4 KiB each way. (The intake limit
    is raised here: bounded by the client's reading alone.)"""
    h = _exchange(instance, tmp_path, max_inbound_per_s=1_000_000)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        alice = await small_window(port, "ALICE")
        buffers(gw, [alice], 4096)
        (conn,) = gw.connections
        audit0, _ = _sizes(gw)
        assert alice.writer is not None
        alice.writer.write(b"".join(crafted(alice, "1", (112, "T")) for _ in range(FLOOD)))
        assert conn.session is not None
        session = conn.session
        await settled(lambda: conn.writing_paused or session.closed, 10.0)
        assert conn.writing_paused and not session.closed
        taken = gw.stores["ALICE"].next_in
        await asyncio.sleep(0.3)
        assert gw.stores["ALICE"].next_in == taken, "read while its output was paused"
        assert taken < FLOOD // 2, f"{taken} of {FLOOD} TestRequests read"
        journaled = _sizes(gw)[0] - audit0
        assert journaled < 4 * MOST_JOURNALED, f"{journaled} B journaled"

    run_scenario(h, scenario, 25)


def test_orders_past_the_throttle_never_reach_the_exchange(instance: str, tmp_path: Path) -> None:
    """Held: the throttle keeps the exchange from a flood of orders (only the j answers and
    the journal grow): at most a second's worth up front and ``THROTTLE`` a second after.
    (The intake limit is raised here: the throttle's tier alone.)"""
    h = _exchange(instance, tmp_path, max_inbound_per_s=1_000_000)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        alice = await logged_on(port)
        count = 2_000
        orders = [crafted(alice, "D", *order(f"o{k}", "1", "0.01", "1.00")) for k in range(count)]
        got = await flood(gw, alice, orders)
        await settled(lambda: not gw.in_flight())  # then the last reports come before END's
        received = got.received
        if not got.closed:
            received += (await flood(gw, alice, [])).received
        reports = received.count(b"\x0135=8\x01")  # a New, or refused by the risk checks
        throttled = received.count(b"\x0158=throttle: more than 50 messages/s\x01")
        assert not got.closed and reports + throttled == count, (reports, throttled)
        assert reports <= THROTTLE * (1 + got.seconds) + 1, (reports, got.rate())
        placed = h.router.sequencer.accounts.open_orders(7)
        assert placed <= THROTTLE * (1 + got.seconds) + 1, (placed, got.rate())
        assert placed == received.count(b"\x01150=0\x01")

    run_scenario(h, scenario, 25)
