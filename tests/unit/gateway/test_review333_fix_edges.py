"""Review 333: edges of the FIX 4.4 session layer and of the OrderStatusRequest (H).

Reviewed: procs/gateway/session.py, logon.py, dictionary.py, fix.py, gap_recovery.py,
resend.py, order_replies.py (``status``), order_id_check.py.

Rig: the gateway over real TCP in front of a real router and matcher (``harness.py``'s
``Harness`` from this directory's ``harness`` fixture: ALICE account 7, BOB account 8), the
simplefix ``Client`` as the counterparty, ``test_gateway``'s ``run``/``logged_on``/``order``,
``test_adversarial_fix.framed`` for hand-framed messages and
``test_review32_fix_session.drain_for``.

Sound (checked, not changed): a ResendRequest's range (BeginSeqNo above EndSeqNo: Reject
373=5; EndSeqNo 0 or past the last sent: through the last); a SequenceReset-GapFill going
backwards or to its own MsgSeqNum (Reject 373=5), a SequenceReset-Reset below the expected
number (Reject 373=5, its number not taken); PossDupFlag without OrigSendingTime (Reject 373=1
371=122); a TestRequest answered with its TestReqID (``test_review316_fix_session_rejects``
pins each).
"""

from __future__ import annotations

import pytest

from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.test_adversarial_fix import framed
from tests.unit.gateway.test_gateway import logged_on, order, run
from tests.unit.gateway.test_review32_fix_session import drain_for

# -- 1. a negative HeartBtInt -------------------------------------------------------------------


def test_a_logon_with_a_negative_heartbtint_is_refused_as_out_of_range(harness: Harness) -> None:
    """Scenario: a Logon with HeartBtInt (108) -5. Expected: a Logout saying the value is out of
    range, naming 108, -5 and the limit (FIX 4.4's HeartBtInt is an INT, so -5 is well formed:
    QuickFIX refuses it as SessionRejectReason 5, "Value is incorrect (out of range)"), and the
    close. Was (fixed): "HeartBtInt (108) '-5' has the wrong format" (read as a SEQNUM)."""

    async def scenario(h: Harness, port: int) -> None:
        c = Client("ALICE")
        await c.connect(port)
        await c.send("A", (98, 0), (108, -5), (554, "secret"))
        text = (await c.expect("5")).get(58)
        assert b"HeartBtInt (108) -5 is out of range: below 0" in text, text
        assert await c.closed()

    run(harness, scenario)


def test_a_logon_in_session_with_a_negative_heartbtint_is_rejected_373_5(
    harness: Harness,
) -> None:
    """Scenario: ALICE, logged on, sends a Logon (no ResetSeqNumFlag) with HeartBtInt -5.
    Expected: a session Reject 373=5 (value out of range), 371=108, 372=A, its Text naming
    108, -5 and the limit. Was (fixed): 373=6, incorrect data format, "has the wrong
    format"."""

    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send("A", (98, 0), (108, -5))
        rej = await c.expect("3")
        got = (rej.get(45), rej.get(371), rej.get(372), rej.get(373))
        assert got == (b"2", b"108", b"A", b"5"), rej
        assert b"HeartBtInt (108) -5 is out of range: below 0" in rej.get(58)
        await c.send("1", (112, "next"))  # 3: the rejected one took 2
        assert (await c.expect("0")).get(112) == b"next"

    run(harness, scenario)


# -- 2. MsgType twice -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "at_end"),
    [("1", "0", False), ("1", "0", True), ("B", "0", False), ("D", "5", True)],
    ids=["header", "after-body", "unsupported-first", "logout-last"],
)
def test_msgtype_twice_is_rejected_naming_35_as_repeated_with_the_first_type(
    harness: Harness, first: str, second: str, at_end: bool
) -> None:
    """Scenario: ALICE sends, in sequence, a message whose MsgType (35) comes twice: right
    after the first (in the header) or after the body, the first a TestRequest 1, a News B
    (a type ringex does not take) or an order D. Expected: a session Reject 373=13 (tag appears
    more than once), 371=35, RefMsgType (372) the first MsgType, the message's own, and Text
    saying MsgType (35) repeats; its MsgSeqNum taken; nothing acted on. Was (fixed): the message
    was the last MsgType's (``FixMessage.of`` kept the last value): 372 named it, a 35 after
    the body was 373=14 "header tag 35 after the body", and a first type ringex does not take
    (B) with a second it takes was a Reject of the second type's rules."""

    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        head = [(35, first), (49, "ALICE"), (56, "RINGEX"), (34, 2), (52, utc())]
        body = [(112, "t")] if first in ("1", "B") else order("twice", "1", "1.00", "90.00")
        fields = [*head, *body, (35, second)] if at_end else [(35, first), (35, second),
                                                               *head[1:], *body]  # fmt: skip
        await c.send_raw(framed(*fields))
        rej = await c.expect("3")
        got = (rej.get(45), rej.get(371), rej.get(372), rej.get(373))
        assert got == (b"2", b"35", first.encode(), b"13"), rej
        assert b"MsgType (35) appears more than once" in rej.get(58), rej.get(58)
        c.seq = 3
        await c.send("1", (112, "next"))
        answers = [m for m in await drain_for(c) if m.get(112) != b"next"]
        assert answers == [], answers  # no order acted on, no Logout
        assert not h.router.sequencer.accounts.open_orders(7)

    run(harness, scenario)


# -- 3. an OrderStatusRequest's OrderID ---------------------------------------------------


def test_a_status_request_whose_order_id_is_another_orders_is_answered_unknown(
    harness: Harness,
) -> None:
    """Scenario: ALICE has orders s1 and s2, BOB b1; she sends an OrderStatusRequest (H) for
    ClOrdID s1 with OrderID (37) s2's id, then with b1's, then with s1's own, then NONE.
    Expected: the first two answered as an unknown order's status request is (150=I, 39=8,
    37=NONE) with Text naming both ids, not s1's status; s1's own id and NONE answered with
    s1's status, as an F or G is judged (review 329). Was (fixed): s1's status, 37 not read."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        ids = {}
        for c, cl in ((alice, "s1"), (alice, "s2"), (bob, "b1")):
            await c.send("D", *order(cl, "1", "1.00", "90.00"))
            ids[cl] = (await c.expect("8")).get(37)
        s1 = ids["s1"].decode()
        for other in ("s2", "b1"):
            theirs = ids[other].decode()
            await alice.send("H", (11, "s1"), (55, "BTC-USD"), (54, "1"), (37, theirs))
            answer = await alice.expect("8")
            got = (answer.get(150), answer.get(39), answer.get(37), answer.get(11))
            assert got == (b"I", b"8", b"NONE", b"s1"), answer
            text = answer.get(58).decode()
            assert f"OrderID {theirs}" in text and s1 in text and "unknown order" in text, text
        for own in (s1, "NONE"):
            await alice.send("H", (11, "s1"), (55, "BTC-USD"), (54, "1"), (37, own))
            answer = await alice.expect("8")
            own_status = (answer.get(150), answer.get(39), answer.get(37))
            assert own_status == (b"I", b"0", ids["s1"]), answer

    run(harness, scenario)
