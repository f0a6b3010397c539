"""A seventh review of the FIX 4.4 session layer: a TestRequest whose MsgSeqNum is past a
gap. Each test fails on the code it was written against because of the bug its docstring
names; the first two end to end through the harness (real TCP, router and matcher, a
simplefix client), the last on one sans-I/O session."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from procs.gateway.gap_recovery import MAX_EARLY_ANSWERS
from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.test_gateway import logged_on, order, run
from tests.unit.gateway.test_review4_fix_bugs import (  # its fixture closes the stores
    _close_stores,  # noqa: F401
    msg,
    replies,
    session,
    stamp,
)


async def drain_for(client: Client, timeout: float = 0.5) -> list[Any]:
    """Every message that comes within ``timeout`` of the last one."""
    got = []
    while (msg := await client.recv(timeout)) is not None:
        got.append(msg)
    return got


def heartbeats(messages: list[Any]) -> list[bytes]:
    return [m.get(112) for m in messages if m.get(35) == b"0" and m.get(112) is not None]


def contiguous(client: Client) -> None:
    """The gateway's MsgSeqNums as the client received them: 1, 2, 3, ... without a gap."""
    seqs = [int(m.get(34)) for m in client.received]
    assert seqs == list(range(1, len(seqs) + 1)), f"gateway MsgSeqNums {seqs}"


def test_a_too_high_test_request_is_answered(harness: Harness) -> None:
    """ALICE's seq 2 and 3 are lost; her TestRequest 4 (112=ping) arrives past the gap.
    ``session.py`` ``_active`` sends the ResendRequest (7=2 16=0) and drops the message
    ("the resend brings it back"), but a resend never brings a TestRequest back: FIX 4.4
    has session messages re-sent as a SequenceReset-GapFill, so the client gap-fills 2..4
    and the TestRequest is never answered. The client, whose TestRequest is how it learns
    that the link is alive, times out and drops a healthy session.

    FIX 4.4 Vol 2 (TestRequest): the receiver answers with a Heartbeat carrying the
    TestReqID; QuickFIX answers a too-high TestRequest, then handles its MsgSeqNum in
    sequence. Expected: a Heartbeat 112=ping, the ResendRequest for the gap, and after the
    gap fill the session in step (one answer, no second one). Actual: no Heartbeat."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("1", (112, "ping"), seq=4)
        first = await drain_for(alice)
        assert b"ping" in heartbeats(first), f"no Heartbeat 112=ping: {first}"
        asked = [(m.get(7), m.get(16)) for m in first if m.get(35) == b"2"]
        assert asked == [(b"2", b"0")], f"ResendRequests for the gap: {asked}"
        # her resend: 2..4 are session messages (the TestRequest too), one gap fill
        await alice.send("4", (123, "Y"), (36, 5), seq=2, poss_dup=True, orig_sending_time=utc())
        alice.seq = 5
        await alice.send("1", (112, "after"))
        await alice.send("D", *order("o1", "1", "1.00", "90.00"))
        later = await drain_for(alice)
        assert heartbeats(later) == [b"after"], f"answers after the gap fill: {later}"
        acks = [m for m in later if m.get(35) == b"8"]
        assert [(m.get(11), m.get(150)) for m in acks] == [(b"o1", b"0")], later
        assert not [m for m in later if m.get(35) in (b"2", b"3", b"5")], later
        contiguous(alice)

    run(harness, scenario)


def test_a_too_high_test_request_resent_as_poss_dup_is_answered_once(harness: Harness) -> None:
    """As above, but ALICE's resend sends the TestRequest itself again (43=Y, 122) rather
    than gap-filling it. It was answered when it first came; its copy only takes its
    MsgSeqNum, so the client gets one Heartbeat 112=ping, not two."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        sent = utc()
        await alice.send("1", (112, "ping"), seq=4, sending_time=sent)
        first = await drain_for(alice)
        assert heartbeats(first) == [b"ping"], first
        await alice.send("4", (123, "Y"), (36, 4), seq=2, poss_dup=True, orig_sending_time=utc())
        await alice.send("1", (112, "ping"), seq=4, poss_dup=True, orig_sending_time=sent)
        alice.seq = 5
        await alice.send("1", (112, "after"))
        later = await drain_for(alice)
        assert heartbeats(later) == [b"after"], f"answers after the resend: {later}"
        assert not [m for m in later if m.get(35) in (b"2", b"3", b"5")], later
        contiguous(alice)

    run(harness, scenario)


def test_too_high_test_requests_are_remembered_within_a_bound(tmp_path: Path) -> None:
    """A flood of TestRequests past a gap: each is answered once, one ResendRequest asks
    for the gap, and what the session keeps of them (to answer a PossDup copy no more)
    stays within ``MAX_EARLY_ANSWERS`` (sans-I/O, one session)."""
    now = time.time_ns()
    s, _ = session(tmp_path, now)
    count = MAX_EARLY_ANSWERS + 200
    for seq in range(3, 3 + count):
        s.data_received(msg("1", seq, (112, f"t{seq}"), now_ns=now), now)
    out = replies(s)
    assert [m.get(112) for m in out if m.msg_type == b"0"] == [
        f"t{seq}".encode() for seq in range(3, 3 + count)
    ]
    assert [(m.get(7), m.get(16)) for m in out if m.msg_type == b"2"] == [(b"2", b"0")]
    assert len(s._answered_early) <= MAX_EARLY_ANSWERS
    # the gap filled up to the last one, which comes again as a PossDup copy: not answered
    last = 2 + count
    fill = msg("4", 2, (123, "Y"), (36, last), now_ns=now, header=f"43=Y|122={stamp(now)}|")
    s.data_received(fill, now)
    copy = msg("1", last, (112, f"t{last}"), now_ns=now, header=f"43=Y|122={stamp(now)}|")
    s.data_received(copy + msg("1", last + 1, (112, "next"), now_ns=now), now)
    assert [m.get(112) for m in replies(s) if m.msg_type == b"0"] == [b"next"]
    assert s.store is not None
    assert s.store.next_in == last + 2
