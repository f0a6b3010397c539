"""Review 292: a FIX client's view across a gateway crash (SIGKILL) and restart.

Reviewed: ``procs/gateway/restart.py`` (``_recover``), ``recovery.py``, ``resend.py``,
``gap_recovery.py``, ``order_memory.py`` (``restore``, ``take_changes``), ``order_log.py``,
``order_logging.py``, ``sent_commands.py``, ``server.py`` (``pump``, ``publish``),
``orders.py`` (``process``, ``_rejected``, ``_duplicate``), ``session.py``
(``_finish_logon``, ``_active``), README's FIX gateway section; the docstrings of reviews
252 (store after kill), 260 (peer reset), 192 (exec reports) and 39 (crash points).

Rig: ``tests/unit/gateway/harness.py`` (real rings, an in-process router and matcher, a real
gateway over TCP, simplefix clients) with ALICE (account 7) and BOB (8);
``test_gateway_restart.crash`` for what SIGKILL leaves; ``test_review30_durability.kill_at``
to die at a batch's order-log frame; the client logs on again with its numbers kept
(``back_on``) and asks for the gap (ResendRequest), then H / AF.

Faults found (each fixed; its test says what it was):

1. An order's acknowledgement (any report made from an event) reaches the client twice,
   under two MsgSeqNums, the second without PossResend (97=Y). ``procs/gateway/server.py:
   324-327`` (``pump``) writes a batch's reports to the sessions (store, then socket) before
   the batch's order-log frame; a SIGKILL between the two leaves the cursors unlogged, so the
   restart reads the events again and makes their reports again under new MsgSeqNums
   (parked, then fetched by the ResendRequest). Review 39 pinned that the copy keeps its
   ExecID, but FIX 4.4 has a message "that may contain information that has been sent
   under another sequence number" carry PossResend=Y, and a client that keys on ClOrdID
   and ExecType sees a second New. Fixed: at the start the gateway notes each input ring's
   end (``_note_read_again``); while ``pump`` reads events below it (``read_again``: read
   before the kill maybe, their reports sent) the entry's ``replaying`` puts 97=Y in each
   report's header (the first field after SendingTime, kept by a resend after its 122).
   Test: ``test_an_ack_sent_before_a_kill_is_not_reported_again_as_new``.

2. A cancel (F) or replace (G) whose order filled before its answer, with the gateway
   killed after the fill's batch and before the answer, is never answered.
   ``procs/gateway/order_memory.py:237`` (``restore``: ``target = self.orders.get(order_ref)``)
   drops a logged request whose target is no longer live: a filled order is in
   ``finished_orders``, not ``orders`` (``_forget`` moves it there, and ``_done`` for a fill
   does not pop the requests naming it). After the restart the exchange's refusal ("too
   late") comes for a ref the entry no longer knows, and ``orders.py:557`` (``_rejected``)
   drops it silently: no OrderCancelReject, the client waits for the answer to its F/G for
   good. Without the crash the same flow answers 35=9 102=0 39=2 "too late". Fixed:
   ``restore`` takes the target from ``finished_orders`` too, so the request is restored
   and ``_rejected`` answers it as before the crash.
   Test: ``test_a_cancel_of_an_order_filled_meanwhile_is_answered_after_a_crash``.

Sound:

- a replace (G) in the router ring at the kill: after the restart H and AF say Pending
  Replace (39=E, 911=1, 912=Y), the replace is reported once (150=5 under the new ClOrdID),
  the resend brings each report with 43=Y and 122 and gap-fills only the Logon;
- a D and a q in the router ring at the kill: PossResend copies of both (97=Y, same
  ClOrdIDs) after the restart are not acted on again; H says Pending New (39=A, 37=NONE);
  exactly one 150=0, one OrderMassCancelReport, every order cancelled once, none left open;
- the re-made ack of fault 1 keeps its ExecID and TransactTime (checked inside its test).

Leads not shown:

- an order a pending mass cancel (q) waits for is reported 39=0 by H/AF, not Pending
  Cancel 39=6; README names only "a cancel or replace", so not claimed;
- a PossResend D whose ClOrdID is taken is ignored silently (no status answer); FIX allows
  it, a client that resends because it got no ack gets none unless it asks (H);
- the OrderMassCancelReport can come before the ack of an order placed before the q
  (review 209's documented limit), seen in the sound test, not asserted.
"""

from __future__ import annotations

from typing import Any

import pytest

from procs.common.topology import matcher_output
from tests.unit.gateway.harness import Harness, settled, utc
from tests.unit.gateway.test_gateway import logged_on, order, status_request
from tests.unit.gateway.test_gateway_restart import back_on, crash, drain, run
from tests.unit.gateway.test_review30_durability import has_cursors, kill_at, taker


def reports(got: list[Any], cl: bytes, exec_type: bytes) -> list[Any]:
    return [m for m in got if m.get(35) == b"8" and m.get(11) == cl and m.get(150) == exec_type]


# == fault 1 ====================================================================================


def test_an_ack_sent_before_a_kill_is_not_reported_again_as_new(harness: Harness) -> None:
    """Scenario: ALICE's D is acknowledged (150=0, she reads it); the gateway is SIGKILLed
    after writing the ack and before its batch's order-log frame. It restarts; ALICE logs on
    keeping her numbers and asks for everything after the ack.
    Expected: no second New for 'a1', or, if the gateway cannot tell, the copy under a new
    MsgSeqNum carries PossResend (97=Y), as FIX 4.4 has for information sent under another
    sequence number.
    Was (fixed): a second 150=0 for 'a1' under a new MsgSeqNum (same ExecID and TransactTime), 43=Y
    only because it was parked, no 97=Y: the client's application takes it as new."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        dead = kill_at(gw, has_cursors, written=False)
        await alice.send("D", *order("a1", "2", "1.00", "100.00"))
        ack = await alice.expect("8")
        assert ack.get(150) == b"0"
        await settled(lambda: bool(dead))
        assert dead
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("2", (7, int(ack.get(34)) + 1), (16, 0))
        again = reports(await drain(alice), b"a1", b"0")
        # what held: the copy is recognisable by its ExecID and exchange time
        assert all((m.get(17), m.get(60)) == (ack.get(17), ack.get(60)) for m in again)
        assert [m.get(97) for m in again if m.get(34) != ack.get(34)] == [b"Y"] * len(again), (
            f"first New at seq {ack.get(34)!r}; again: {[str(m) for m in again]}"
        )

    run(harness, scenario)


# == fault 2 ====================================================================================


async def cancel_racing_a_fill(h: Harness, port: int, kind: str, kill: bool) -> list[Any]:
    """ALICE's sell 'o1' rests; a taker (account 8, through the funder's ring) fills it in
    the matcher before ALICE's F/G 'c1' reaches the router, which the gateway read only
    after sending it. With ``kill``, the gateway is SIGKILLed after the fill's batch and
    before the router answers 'c1'; returns what ALICE got after the fill."""
    alice = await logged_on(port)
    await alice.send("D", *order("o1", "2", "1.00", "100.00"))
    assert (await alice.expect("8")).get(150) == b"0"
    gw = h.gateway
    assert gw is not None
    h.pause()
    book = next(c for c in gw.inputs if c.ring.name == matcher_output("m1"))
    blocked, read = [True], book.read
    book.read = lambda n=256: [] if blocked else read(n)  # type: ignore[method-assign, assignment]
    h.funder.publish_batch([taker(8, 100, ref=901)])
    h.step_pipeline()  # filled in the matcher; the gateway has not read it
    before = gw.producer.sequence
    pairs: list[tuple[int, object]]
    if kind == "F":
        pairs = [(41, "o1"), (11, "c1"), (55, "BTC-USD"), (54, "2"), (60, utc())]
    else:
        pairs = [(41, "o1"), *order("c1", "2", "2.00", "101.00")]
    await alice.send(kind, *pairs)
    await settled(lambda: gw.producer.sequence > before)  # in the router ring, unread
    assert gw.producer.sequence > before
    blocked.clear()
    fill = await alice.expect("8")
    assert (fill.get(11), fill.get(150), fill.get(39)) == (b"o1", b"F", b"2")
    await settled(lambda: not gw.entry.orders and not gw._dirty)  # the fill's batch logged
    assert len(gw.entry.requests) == 1
    if not kill:
        h.resume()
        return await drain(alice)
    await crash(h)
    await alice.aclose()
    port = await h.start()  # the router runs again and refuses 'c1': too late
    alice = await back_on(port, "ALICE", alice.seq)
    await alice.send("2", (7, int(fill.get(34)) + 1), (16, 0))
    return await drain(alice)


@pytest.mark.parametrize("kind", ["F", "G"])
def test_a_cancel_of_an_order_filled_meanwhile_is_answered_after_a_crash(
    harness: Harness, kind: str
) -> None:
    """Scenario: ALICE sends a cancel (F) or replace (G) 'c1' of her resting 'o1'; the
    matcher fills 'o1' before the router reads 'c1'; the gateway reports the fill, logs its
    batch, and is SIGKILLed before the router refuses 'c1'. It restarts; ALICE logs on
    keeping her numbers and asks for everything after the fill.
    Expected: one OrderCancelReject for 'c1' (102=0, 39=2, "too late"), as without the crash.
    Was (fixed): none: the restart forgot the request (its target had finished), and the router's
    refusal is dropped; ALICE's F/G is never answered."""

    async def scenario(h: Harness, port: int) -> None:
        got = await cancel_racing_a_fill(h, port, kind, kill=True)
        assert h.gateway is not None and h.gateway.producer.backlog() == 0  # the router took it
        rejects = [m for m in got if m.get(35) == b"9" and m.get(11) == b"c1"]
        assert [(m.get(39), m.get(102)) for m in rejects] == [(b"2", b"0")], [str(m) for m in got]

    run(harness, scenario)


@pytest.mark.parametrize("kind", ["F", "G"])
def test_sound_a_cancel_of_an_order_filled_meanwhile_is_answered_without_a_crash(
    harness: Harness, kind: str
) -> None:
    """The control of fault 2: the same race, no crash, gets its OrderCancelReject."""

    async def scenario(h: Harness, port: int) -> None:
        got = await cancel_racing_a_fill(h, port, kind, kill=False)
        rejects = [m for m in got if m.get(35) == b"9" and m.get(11) == b"c1"]
        assert [(m.get(39), m.get(102)) for m in rejects] == [(b"2", b"0")]
        assert b"too late" in rejects[0].get(58)

    run(harness, scenario)


# == sound ======================================================================================


def test_sound_a_replace_pending_at_a_kill_is_pending_replace_then_replaced_once(
    harness: Harness,
) -> None:
    """A G in the router ring, unread, at the kill: H and AF after the restart say 39=E;
    the replace is reported once; the resend repeats each report with 43=Y and
    OrigSendingTime and gap-fills only the Logon."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("r1", "2", "2.00", "100.00"))
        ack = await alice.expect("8")
        gw = h.gateway
        assert gw is not None
        h.pause()
        before = gw.producer.sequence
        await alice.send("G", (41, "r1"), *order("r2", "2", "3.00", "101.00"))
        await settled(lambda: gw.producer.sequence > before)
        await crash(h)
        await alice.aclose()
        port = await h.start()
        h.pause()  # the router still holds the G
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("H", *status_request("r1", "2"))
        status = await alice.expect("8")
        assert (status.get(150), status.get(39), status.get(38)) == (b"I", b"E", b"2.00")
        await alice.send("AF", (584, "m1"), (585, 7))
        mass = await alice.expect("8")
        assert (mass.get(11), mass.get(39), mass.get(911), mass.get(912)) == (
            b"r1", b"E", b"1", b"Y",
        )  # fmt: skip
        h.resume()
        live = await drain(alice)
        assert [(m.get(11), m.get(41), m.get(38)) for m in reports(live, b"r2", b"5")] == [
            (b"r2", b"r1", b"3.00")
        ]
        await alice.send("2", (7, int(ack.get(34)) + 1), (16, 0))
        resent = await drain(alice)
        fills = [m for m in resent if m.get(35) == b"4"]
        assert len(fills) == 1 and int(fills[0].get(34)) == int(ack.get(34)) + 1  # the Logon
        apps = [m for m in resent if m.get(35) == b"8"]
        assert len(reports(apps, b"r2", b"5")) == 1
        assert all(m.get(43) == b"Y" and m.get(122) for m in apps)

    run(harness, scenario)


def test_sound_possresend_copies_of_a_d_and_a_q_pending_at_a_kill_act_once(
    harness: Harness,
) -> None:
    """A D and a q in the router ring, unread, at the kill; after the restart ALICE sends
    both again with PossResend=Y and the same ClOrdIDs: neither is acted on again."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "2", "1.00", "100.00"))
        ack = await alice.expect("8")
        gw = h.gateway
        assert gw is not None
        h.pause()
        before = gw.producer.sequence
        await alice.send("D", *order("p1", "2", "1.00", "100.00"))
        mass_cancel = [(11, "mc"), (530, "7"), (60, utc())]
        await alice.send("q", *mass_cancel)
        await settled(lambda: gw.producer.sequence > before + 1)
        await crash(h)
        await alice.aclose()
        port = await h.start()
        h.pause()
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("D", *order("p1", "2", "1.00", "100.00"), poss_resend=True)
        await alice.send("q", *mass_cancel, poss_resend=True)
        await alice.send("H", *status_request("p1", "2"))
        status = await alice.expect("8")
        assert (status.get(39), status.get(37)) == (b"A", b"NONE")
        h.resume()
        await drain(alice)
        await alice.send("2", (7, int(ack.get(34)) + 1), (16, 0))
        got = await drain(alice)
        assert len(reports(got, b"p1", b"0")) == 1
        assert [m.get(531) for m in got if m.get(35) == b"r"] == [b"7"]
        assert len(reports(got, b"o1", b"4")) == 1 and len(reports(got, b"p1", b"4")) == 1
        assert not h.router.sequencer.accounts.open_orders(7)

    run(harness, scenario)
