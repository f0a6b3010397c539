"""Review 252: a FIX session's persisted state (its sequence numbers and the message store
that serves ResendRequests) across a gateway SIGKILLed at awkward moments, the client keeping
its own view (simplefix, ``harness.Client``).

Reviewed: ``procs/gateway/store.py`` (``MessageStore``: ``seqnums``, ``messages``, the torn
tail cut at the open, ``park``/``park_again``/``unsent``/``reset``), ``resend.py`` (what a
ResendRequest is answered with), ``gap_recovery.py`` (``_resend``, ``_send_carried``,
``_drop_resends``), ``session.py`` (``_finish_logon``: too low, too high, ResetSeqNumFlag),
``connection.py`` (``write``: the store flushed before the socket; ``abort``: what the
transport still held parked again), ``server.py`` (``park``, ``store``). Rig: ``harness.py``'s
in-process exchange over real TCP; ``test_gateway_restart.crash`` for what SIGKILL leaves
(no flush, no logout, no ``Connection.abort``: the transport's buffer simply goes);
``test_review204_stop_output``'s full-buffer scenario (4 KiB socket buffers, 400 New reports
of which most wait in the gateway's own transport buffer).

Fault found (fixed: each flush saves the first message not yet handed to the kernel, which
the next open parks again):

1. ``procs/gateway/connection.py:245-258`` (``Connection.abort``: messages still in the
   transport's buffer are parked again, so a reset logon carries them) runs only when the
   gateway itself cuts a connection; ``procs/gateway/store.py:284-294`` (``unsent``: a reset
   carries only what ``parked_from`` marks) with ``:316-335`` (``reset``). A SIGKILL loses the
   transport's buffer as surely as a stop's abort, but nothing on disk says those messages
   never reached the kernel: ``parked_from`` is 0 for a session that was logged on. After the
   restart a logon with ResetSeqNumFlag (the usual daily practice, and what a client does
   after a failover) discards them: in the test 371 of 400 New reports of orders the router
   accepted are never seen (the store's own promise: "a reset discards what the client has
   seen, never what it has not"; README's for a stop: they are "parked again: a logon with
   ResetSeqNumFlag sends them anew"). A logon that keeps the numbers gets them by
   ResendRequest (checked). Fix: persist the connection's marks, not only keep them in
   memory: in ``Connection.write``, once the marks are popped, set a store field
   ``unconfirmed_from`` (the first seq of ``marks[0]``, else ``next_out``) that ``flush``
   writes with the numbers (a fourth u64 of ``seqnums``: the pwrite happens at every flush
   already); ``MessageStore._open`` parks again from it when set (``park_again``), and a clean
   end (``Session._close`` after ``abort``) clears it. A few messages the client did see may
   then come twice, their ExecIDs the same, as README already says of a stop.
   Test: ``test_reports_left_in_the_gateway_at_a_kill_are_carried_to_a_reset_logon``.

Found sound (plain tests): after a kill the gateway's numbers go on past every message the
client received (its Logon's MsgSeqNum), and a ResendRequest returns each application message
byte for byte but for the renewed header (same ExecIDs, fields, order; PossDupFlag=Y,
OrigSendingTime its first SendingTime), one GapFill for each run of session messages; the same
holds for the reports a kill left in the transport buffer, fetched after a logon that keeps the
numbers; an order read and published just before the kill is counted (its MsgSeqNum saved
before the ring has it), reported once after the restart, and a PossDup copy of it is not
executed again; a torn ``messages`` tail (cut by a few bytes while the gateway is down) is cut
at the logon with a log line naming the file, the byte and the bytes cut, the numbers go on
from ``seqnums`` (no MsgSeqNum given twice), the whole entries are resent and the torn one is
gap-filled; a Logon with MsgSeqNum far too low after a restart gets a Logout naming both
numbers, changes nothing, and the next Logon with the right one is taken; a Logon with
ResetSeqNumFlag after a kill starts both sides at 1 and carries a fill parked while the
session was away, once. Not faults: a damaged (not torn) ``seqnums`` refuses the logon with a
bare close and a log line (README: "refuses ... that session's logon"); the Logout for a Logon
too low is unsequenced (34=1), as every refusal before a session is.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest

from tests.unit.gateway.harness import Client, Harness, run_scenario, settled
from tests.unit.gateway.test_gateway import cancel, logged_on, order, status_request
from tests.unit.gateway.test_gateway_restart import back_on, crash, drain, run
from tests.unit.gateway.test_review30_durability import taker
from tests.unit.gateway.test_review99_tls import _reads
from tests.unit.gateway.test_review201_fix_wire import _messages, _read_all
from tests.unit.gateway.test_review204_stop_output import N, _acked, _exchange, _full_buffers

#: Header fields a resent copy has anew or added (and the framing: 8, 9, 10).
_RENEWED = {8, 9, 10, 34, 43, 52, 122}


def _fields(msg: Any) -> list[tuple[int, bytes]]:
    """A simplefix message's fields in order, but for the renewed header fields."""
    return [(int(t), v) for t, v in msg.pairs if int(t) not in _RENEWED]


def _seq(msg: Any) -> int:
    return int(msg.get(34))


async def _reports_then_kill(h: Harness, port: int) -> tuple[Client, list[Any]]:
    """ALICE gets a New, a Fill, a status answer and a cancel reject; then SIGKILL. Returns
    her old client and the messages she received."""
    alice = await logged_on(port)
    await alice.send("D", *order("s1", "2", "1.00", "100.00"))
    await alice.expect("8")
    h.funder.publish_batch([taker(8, 40, 991)])  # BOB buys 0.40 of it
    await alice.expect("8")
    await alice.send("H", *status_request("s1", "2"))
    await alice.expect("8")
    await alice.send("F", *cancel("zz", "c1", "2"))
    await alice.expect("9")
    await crash(h)
    await alice.aclose()
    return alice, list(alice.received)


# == the fault ====================================================================================


def test_reports_left_in_the_gateway_at_a_kill_are_carried_to_a_reset_logon(
    instance: str, tmp_path: Any
) -> None:
    """Scenario: ALICE (both socket buffers 4 KiB) reads nothing while 400 orders of hers are
    accepted: most New reports wait in the gateway's own transport buffer. The gateway is
    SIGKILLed; she reads what reached her, then logs on to the restarted gateway with
    ResetSeqNumFlag (141=Y).
    Expected: the reports that never left the gateway are carried after her Logon, as those
    a clean stop cut off are (review 204), as those parked while she was away are.
    Was (fixed): none is carried: of 400 accepted orders she hears of a few dozen, the rest
    never."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        alice = await _full_buffers(h, port)
        await crash(h)
        _reads(alice, True)
        assert alice.reader is not None
        old, _ = await _read_all(alice.reader, 5)
        seen = _acked(_messages(old))
        assert len(seen) < N  # the kill cut her off
        port = await h.start()
        again = Client("ALICE")
        await again.connect(port)
        logon = await again.logon(reset=True)
        assert logon.get(141) == b"Y" and _seq(logon) == 1
        carried = _acked(await drain(again))
        missing = {f"o{k}".encode() for k in range(N)} - seen - carried
        assert not missing, f"{len(missing)} of {N} New reports never reach her"

    run_scenario(h, scenario, 60)


# == sound ========================================================================================


def test_checked_reports_left_in_the_gateway_at_a_kill_are_resent_after_a_logon_that_keeps_them(
    instance: str, tmp_path: Any
) -> None:
    """Scenario: as the test above, but ALICE logs on keeping her numbers and sends a
    ResendRequest from 2.
    Expected: every accepted order's New report reaches her, on the old connection or resent,
    and her Logon's MsgSeqNum is past all of them.
    Now: so."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        alice = await _full_buffers(h, port)
        await crash(h)
        _reads(alice, True)
        assert alice.reader is not None
        old, _ = await _read_all(alice.reader, 5)
        seen = _messages(old)
        port = await h.start()
        again = Client("ALICE")
        again.seq = alice.seq
        await again.connect(port)
        logon = await again.logon()
        assert _seq(logon) > N + 1  # the Logon (1) and 400 reports were numbered before
        await again.send("2", (7, 2), (16, 0))
        resent = await drain(again)
        assert all(m.get(43) == b"Y" for m in resent if m.get(35) == b"8")
        assert _acked(seen) | _acked(resent) == {f"o{k}".encode() for k in range(N)}

    run_scenario(h, scenario, 60)


def test_checked_a_resend_after_a_kill_repeats_each_report_field_for_field(
    harness: Harness,
) -> None:
    """Scenario: ALICE gets a New, a partial Fill, a status answer (a counter ExecID) and an
    OrderCancelReject; SIGKILL; she logs on again with her next MsgSeqNum and asks for 1..0.
    Expected: the Logon's MsgSeqNum is past everything she received; every application
    message comes again under its MsgSeqNum with the same fields in the same order (ExecIDs
    too), PossDupFlag=Y and OrigSendingTime its first SendingTime; the Logons are gap-filled
    (the old one to 2, the new one to the end), nothing else is.
    Now: so."""

    async def scenario(h: Harness, port: int) -> None:
        old, received = await _reports_then_kill(h, port)
        last = max(_seq(m) for m in received)
        port = await h.start()
        alice = await back_on(port, "ALICE", old.seq)
        logon = alice.received[-1]
        assert _seq(logon) == last + 1
        await alice.send("2", (7, 1), (16, 0))
        resent = await drain(alice)
        apps = {_seq(m): m for m in received if m.get(35) not in (b"A", b"0")}
        copies = {_seq(m): m for m in resent if m.get(35) != b"4"}
        assert copies.keys() == apps.keys()
        for seq, first in apps.items():
            again = copies[seq]
            assert again.get(43) == b"Y" and again.get(122) == first.get(52)
            assert _fields(again) == _fields(first)
        fills = [(_seq(m), int(m.get(36))) for m in resent if m.get(35) == b"4"]
        assert fills == [(1, 2), (last + 1, last + 2)]

    run(harness, scenario)


def test_checked_an_order_taken_just_before_a_kill_is_counted_and_executed_once(
    harness: Harness,
) -> None:
    """Scenario: the router is held; ALICE sends a D, the gateway publishes it to the router
    ring, and is SIGKILLed before any answer. The router then takes it; the gateway restarts;
    ALICE logs on with her next MsgSeqNum and, unsure, sends the D again as a PossDup copy
    under its first MsgSeqNum; then asks for a resend and for the order's status.
    Expected: the gateway expects her next MsgSeqNum (the D was counted: no ResendRequest
    for it); the copy is ignored; the order rests once, with one New report (fetched by the
    ResendRequest, as it was parked while she was away).
    Now: so."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        producer = gw.producer
        h.pause()
        before = producer.sequence
        d_seq = alice.seq
        first = alice.message("D", *order("s1", "2", "1.00", "100.00"))
        await alice.send_raw(first.encode())
        await settled(lambda: producer.sequence > before)
        assert producer.sequence == before + 1
        await crash(h)
        await alice.aclose()
        h.resume()
        port = await h.start()
        again = await back_on(port, "ALICE", alice.seq)
        copy = again.message(
            "D", *order("s1", "2", "1.00", "100.00"), seq=d_seq, poss_dup=True,
            orig_sending_time=first.get(52),
        )  # fmt: skip
        await again.send_raw(copy.encode())
        await again.send("2", (7, 1), (16, 0))
        got = await drain(again)
        assert not [m for m in got if m.get(35) in (b"2", b"5")]  # no gap, no Logout
        news = [m for m in got if m.get(35) == b"8" and m.get(150) == b"0"]
        assert [m.get(11) for m in news] == [b"s1"]
        await again.send("H", *status_request("s1", "2"))
        status = await again.expect("8")
        assert status.get(39) == b"0" and status.get(151) == b"1.00"
        gw = h.gateway
        assert gw is not None
        assert [o.cl_ord_id for o in gw.entry.live.values()] == [b"s1"]

    run(harness, scenario)


@pytest.mark.parametrize("cut", [5, 40])
def test_checked_a_torn_store_tail_is_cut_said_and_never_reuses_a_msgseqnum(
    harness: Harness, caplog: pytest.LogCaptureFixture, cut: int
) -> None:
    """Scenario: ALICE gets reports; SIGKILL; while the gateway is down ``messages`` loses its
    last ``cut`` bytes (the tail a crash mid-write leaves). It restarts; ALICE logs on with her
    next MsgSeqNum, asks for 1..0, and places another order.
    Expected: the logon is taken; a warning names the file, the byte and how much was cut;
    the Logon's MsgSeqNum is past all she received (the numbers come from ``seqnums``); the
    whole entries come again, the torn one as part of a GapFill; the new order's report takes
    the next number, none given twice.
    Now: so."""

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        directory = gw.directory / "sessions" / "ALICE"
        old, received = await _reports_then_kill(h, port)
        last = max(_seq(m) for m in received)
        path = directory / "messages"
        os.truncate(path, path.stat().st_size - cut)
        port = await h.start()
        alice = await back_on(port, "ALICE", old.seq)
        assert _seq(alice.received[-1]) == last + 1
        torn = [r.getMessage() for r in caplog.records if "torn tail" in r.getMessage()]
        assert len(torn) == 1 and str(path) in torn[0] and "bytes)" in torn[0]
        await alice.send("2", (7, 1), (16, 0))
        resent = await drain(alice)
        copies = {_seq(m) for m in resent if m.get(35) != b"4"}
        apps = {_seq(m) for m in received if m.get(35) not in (b"A", b"0")}
        assert copies == apps - {last}  # the torn one: gap-filled
        assert any(m.get(35) == b"4" and _seq(m) <= last < int(m.get(36)) for m in resent)
        await alice.send("D", *order("s2", "2", "1.00", "100.00"))
        new = await alice.expect("8")
        assert new.get(11) == b"s2" and _seq(new) == last + 2

    with caplog.at_level(logging.WARNING, logger="ringex.gateway"):
        run(harness, scenario)


def test_checked_a_logon_far_too_low_after_a_kill_is_logged_out_and_changes_nothing(
    harness: Harness,
) -> None:
    """Scenario: ALICE gets reports; SIGKILL; after the restart she logs on with MsgSeqNum 1
    (her numbers lost), then again with her real next one.
    Expected: the first Logon gets a Logout naming the expected and the received numbers and
    the close; the store is untouched: the second Logon is taken, numbered past all she had.
    Now: so."""

    async def scenario(h: Harness, port: int) -> None:
        old, received = await _reports_then_kill(h, port)
        last = max(_seq(m) for m in received)
        port = await h.start()
        low = Client("ALICE")
        await low.connect(port)
        await low.send("A", (98, 0), (108, 30), (554, "secret"))
        logout = await low.expect("5")
        assert logout.get(58) == f"MsgSeqNum too low, expecting {old.seq} but received 1".encode()
        assert await low.closed()
        await low.aclose()
        alice = await back_on(port, "ALICE", old.seq)
        assert _seq(alice.received[-1]) == last + 1

    run(harness, scenario)


def test_checked_a_reset_logon_after_a_kill_carries_a_fill_parked_meanwhile_once(
    harness: Harness,
) -> None:
    """Scenario: ALICE has an order resting; SIGKILL; while the gateway is down the order
    fills; the restarted gateway parks the fill for her; she logs on with ResetSeqNumFlag, then
    asks for 1..0.
    Expected: her Logon is answered 34=1 with 141=Y; the fill comes next (no PossDupFlag: she
    never saw it), after the order's New at most (the last write the gateway handed on before
    the kill, which its last flush had not seen handed: parked again, the same ExecID); the
    resend gap-fills the Logon and repeats what came after it once. Now: so."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        ack = await alice.expect("8")
        await crash(h)
        await alice.aclose()
        h.funder.publish_batch([taker(8, 100, 992)])  # fills s1 while the gateway is down
        h.resume()
        port = await h.start()
        gw = h.gateway
        assert gw is not None
        await settled(lambda: not gw.entry.live)
        again = Client("ALICE")
        await again.connect(port)
        logon = await again.logon(reset=True)
        assert (logon.get(141), _seq(logon)) == (b"Y", 1)
        got = [await again.expect("8")]
        while got[-1].get(150) != b"F":
            got.append(await again.expect("8"))
        fill = got[-1]
        assert [m.get(17) for m in got[:-1]] in ([], [ack.get(17)])  # the New she saw, again
        assert (fill.get(150), fill.get(11), fill.get(43)) == (b"F", b"s1", None)
        assert [_seq(m) for m in got] == list(range(2, 2 + len(got)))
        await again.send("2", (7, 1), (16, 0))
        resent = await drain(again)
        assert [(m.get(35), _seq(m)) for m in resent] == [(b"4", 1)] + [
            (b"8", _seq(m)) for m in got
        ]
        assert resent[-1].get(17) == fill.get(17) and resent[-1].get(43) == b"Y"

    run(harness, scenario)
