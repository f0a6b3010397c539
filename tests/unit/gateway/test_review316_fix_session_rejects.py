"""Review 316: FIX 4.4 session layer and application-level rejects.

Reviewed: README.md (The FIX gateway; the gateway's config keys), procs/gateway/session.py,
gap_recovery.py, logon.py, resend.py, dictionary.py, fix.py (framing), fix_groups.py,
order_replies.py (cancel rejects), session_interface.py, server.py (shutdown's Logout).

Rig: the gateway over real TCP in front of a real router and matcher (``harness.py``'s
``Harness`` from this directory's ``harness`` fixture: ALICE account 7, BOB account 8), the
simplefix ``Client`` as the counterparty, ``test_gateway``'s ``run``/``logged_on``/``order``/
``cancel``, ``test_adversarial_fix.crafted`` for hand-framed messages and
``test_review32_fix_session.drain_for``.

Faults found (each fixed; its test says what it was):
1. A message FIX 4.4 defines that ringex only sends (ExecutionReport 8, OrderCancelReject 9, and
   likewise OrderMassCancelReport r, SecurityList y, SecurityStatus f, UserResponse BF) is
   validated, when a client sends it, against ringex's own narrow table of what it writes, not
   FIX44.xml: one carrying a field the specification defines for it, TradeDate 75 say, is a session
   Reject 373=2 "tag 75 (TradeDate) is not defined for ExecutionReport". README (The FIX gateway)
   says validation is against the whole FIX 4.4 dictionary and "a field the specification defines
   for a message is never a session Reject"; a QuickFIX engine with the standard dictionary takes
   the message as valid and has it refused by the application (the BusinessMessageReject 380=3
   ringex sends for the same message without the extra field). Cause:
   procs/gateway/dictionary.py:352 widens to the specification only ``ADMIN`` and ``INBOUND_APP``;
   session.py:527 then validates the others against their outbound specs (dictionary.py:324-335)
   before session.py:541 business-rejects them. Fixed: every type in ``dictionary.MESSAGES`` is
   validated against the whole FIX 4.4 specification of its type (at first by a
   BusinessMessageReject before validation, which review 320 found took header faults for business
   ones).

Sound:
- Logon with HeartBtInt 0, negative, past ``max_heartbeat_s`` and past 2^63-1: a Logout
  naming the value (or its bounds), and the connection closed.
- A Logon with ResetSeqNumFlag mid-session: answered by a Logon 141=Y with MsgSeqNum 1, both
  sides then at 2.
- SequenceReset-Reset below the expected number: Reject 373=5 371=36, MsgSeqNum not taken;
  equal to it: taken silently; GapFill in sequence with NewSeqNo not above its MsgSeqNum:
  Reject 373=5 (its number taken); a PossDup GapFill below: ignored; one without PossDup:
  Logout "MsgSeqNum too low".
- PossDupFlag in sequence without OrigSendingTime: Reject 373=1 371=122, number taken; with
  it: processed; OrigSendingTime after SendingTime: Reject 373=10 and Logout, its number
  taken (a Logon again at the next one asks for no resend).
- MsgSeqNum too high: one ResendRequest (7=expected 16=0); the client's resend (PossDup,
  OrigSendingTime) is processed in MsgSeqNum order, every order booked once.
- TestRequest -> Heartbeat with its TestReqID; silence past 1.2 HeartBtInt: a TestRequest,
  then the connection closed when it goes unanswered.
- Logout both ways: a client's Logout is answered and the socket closed; the gateway's own
  (its shutdown) takes the client's reply.
- Session Reject carries 45, 371, 372 and a FIX 4.4 373 for a required tag missing (1), a tag
  without value (4), a value out of range (5), a wrong data format (6), a repeated tag (13),
  a tag not defined for the message (2), a CompID problem (9, then Logout) and a SendingTime
  accuracy problem (10, then Logout); each rejected message takes its number.
- BusinessMessageReject 380=3 with 45 and 372 for an unsupported MsgType (R, V), number taken.
- OrderCancelReject for an unknown order (37=NONE 39=8 102=1 434=1, 11 and 41 echoed), for a
  filled one (39=2 102=0 434=1), and for a G on a filled one (434=2 102=0).
- A wrong CheckSum, a BodyLength too long, too short, or not a number: ignored, no number
  taken (the next message at the same number is answered, no ResendRequest).

Leads not shown:
- A BusinessMessageReject for an unsupported type carried no BusinessRejectRefID (379) when
  the message's own id was not one ``Session.business_reject`` (session.py:371) knew: a
  MarketDataRequest V's MDReqID 262, a QuoteRequest R's QuoteReqID 131, a UserRequest BE's
  UserRequestID 923 when throttled. FIX 4.4 has 379 "required unless the corresponding ID
  field was not specified", but FIX44.xml marks it optional, so a QuickFIX engine does not
  refuse the reject; the client just could not tie it to its request. Mended since:
  ``dictionary.REQUEST_IDS`` (``test_sound_unsupported_msgtype_is_a_business_reject``).
- A message with MsgType twice (``35=1|...|35=0``) is refused 373=14 with RefMsgType 0, the
  last MsgType (``FixMessage.of`` keeps the last value), not the message's own (the third
  field, 1); a malformed message either way, so not shown as a fault. Mended since: 373=13
  371=35 with RefMsgType the first (review 333).
- HeartBtInt is read as a SEQNUM (dictionary.py, 108): a negative one is refused as a wrong
  data format rather than out of range (only a Logout's Text says which). Mended since: an
  INT from 0, -5 out of range (review 333).
- A Logon's NextExpectedMsgSeqNum (789) is taken and ignored; FIX 4.4 makes its processing
  optional, so not a fault.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.test_adversarial_fix import crafted
from tests.unit.gateway.test_gateway import cancel, logged_on, order, run
from tests.unit.gateway.test_review32_fix_session import drain_for

# -- fault 1 ----------------------------------------------------------------------------------

_EXEC_REPORT = [
    (37, "1"), (17, "e1"), (150, "0"), (39, "0"), (55, "BTC-USD"), (54, "1"), (151, "1"),
    (14, "0"), (6, "0"),
]  # fmt: skip
_CANCEL_REJECT = [(37, "1"), (11, "c1"), (41, "o1"), (39, "0"), (434, "1")]


@pytest.mark.parametrize(
    ("kind", "body"), [("8", _EXEC_REPORT), ("9", _CANCEL_REJECT)], ids=["8", "9"]
)
def test_a_spec_field_of_a_type_ringex_only_sends_is_no_session_reject(
    harness: Harness, kind: str, body: list[tuple[int, object]]
) -> None:
    """Scenario: ALICE sends a well-formed ExecutionReport (or OrderCancelReject) carrying
    TradeDate (75), which FIX44.xml defines for both; the same message without 75 is answered
    with a BusinessMessageReject 380=3 (ringex does not take that type from a client).
    Expected: the same BusinessMessageReject 380=3 (README: validation against the whole
    FIX 4.4 dictionary, "a field the specification defines for a message is never a session
    Reject"). Was (fixed): a session Reject 373=2 371=75, "not defined for ExecutionReport"."""

    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send(kind, *body)
        plain = await c.expect("j")
        assert (plain.get(380), plain.get(372), plain.get(45)) == (b"3", kind.encode(), b"2")
        await c.send(kind, *body, (75, "20260101"))
        answers = [m for m in await drain_for(c) if m.get(35) != b"0"]
        assert [m.get(35) for m in answers] == [b"j"], (
            f"answered: {[(m.get(35), m.get(373), m.get(371)) for m in answers]}"
        )

    run(harness, scenario)


# -- sound ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hb", "text"),
    [
        ("0", b"HeartBtInt 0 outside 1..300"),
        ("-5", b"HeartBtInt (108) -5 is out of range: below 0"),  # review 333
        ("99999999999", b"HeartBtInt 99999999999 outside 1..300"),
        ("100000000000000000000", b"is above 9223372036854775807"),
    ],
)
def test_sound_logon_heartbtint_out_of_bounds_is_a_logout(
    harness: Harness, hb: str, text: bytes
) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = Client("ALICE")
        await c.connect(port)
        await c.send("A", (98, 0), (108, hb), (554, "secret"))
        logout = await c.expect("5")
        assert text in logout.get(58)
        assert await c.closed()

    run(harness, scenario)


def test_sound_reset_seqnum_flag_mid_session(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        for k in range(3):
            await c.send("1", (112, f"t{k}"))
            await c.expect("0")
        c.seq = 1
        await c.send("A", (98, 0), (108, 20), (141, "Y"))
        ack = await c.expect("A")
        assert (ack.get(34), ack.get(141), ack.get(108)) == (b"1", b"Y", b"20")
        await c.send("1", (112, "after"))  # seq 2
        beat = await c.expect("0")
        assert (beat.get(34), beat.get(112)) == (b"2", b"after")

    run(harness, scenario)


def test_sound_sequence_reset_modes(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)  # next in: 2
        await c.send("4", (36, 1), seq=2)  # Reset below the expected 2
        rej = await c.expect("3")
        assert (rej.get(373), rej.get(371), rej.get(45)) == (b"5", b"36", b"2")
        await c.send("4", (36, 2), seq=9)  # Reset to the expected: taken, its seq ignored
        await c.send("4", (123, "Y"), (36, 2))  # GapFill in sequence (2), NewSeqNo 2
        rej = await c.expect("3")
        assert (rej.get(373), rej.get(371), rej.get(372)) == (b"5", b"36", b"4")
        await c.send("4", (123, "Y"), (36, 9), seq=2, poss_dup=True)  # below, PossDup
        await c.send("1", (112, "three"))  # 3: the rejected GapFill took 2
        beat = await c.expect("0")
        assert beat.get(112) == b"three"
        await c.send("4", (123, "Y"), (36, 9), seq=2)  # below, no PossDup
        assert b"MsgSeqNum too low" in (await c.expect("5")).get(58)
        assert await c.closed()

    run(harness, scenario)


def test_sound_poss_dup_with_and_without_orig_sending_time(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send("1", (112, "no122"), poss_dup=True)  # 2
        rej = await c.expect("3")
        assert (rej.get(373), rej.get(371), rej.get(45)) == (b"1", b"122", b"2")
        await c.send("1", (112, "with122"), poss_dup=True, orig_sending_time=utc(-5))  # 3
        assert (await c.expect("0")).get(112) == b"with122"
        await c.send("1", (112, "low"), seq=2, poss_dup=True)  # below, without 122
        rej = await c.expect("3")
        assert (rej.get(373), rej.get(371), rej.get(45)) == (b"1", b"122", b"2")
        await c.send("1", (112, "late"), poss_dup=True, orig_sending_time=utc(30))  # 4
        rej = await c.expect("3")
        assert (rej.get(373), rej.get(371), rej.get(45)) == (b"10", b"122", b"4")
        await c.expect("5")
        assert await c.closed()
        again = Client("ALICE")
        again.seq = c.seq  # 5: the refused 4 was taken
        await again.connect(port)
        await again.logon()
        await again.send("1", (112, "back"))
        assert (await again.expect("0")).get(112) == b"back"  # no ResendRequest first

    run(harness, scenario)


def test_sound_too_high_asks_once_and_the_resend_is_processed_in_order(
    harness: Harness,
) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        ids = ["g1", "g2", "g3"]
        c.seq = 3  # 2 lost on the way
        await c.send("D", *order(ids[1], "1", "1.00", "90.00"))
        await c.send("D", *order(ids[2], "1", "1.00", "90.00"))
        rr = await c.expect("2")
        assert (rr.get(7), rr.get(16)) == (b"2", b"0")
        for k, cl in enumerate(ids):
            await c.send("D", *order(cl, "1", "1.00", "90.00"), seq=2 + k, poss_dup=True,
                         orig_sending_time=utc())  # fmt: skip
        news = [await c.expect("8") for _ in ids]
        assert [(m.get(11), m.get(150)) for m in news] == [(i.encode(), b"0") for i in ids]
        others = await drain_for(c)
        assert [m.get(35) for m in others if m.get(35) != b"0"] == []  # once each, one RR

    run(harness, scenario)


def test_sound_test_request_then_silence_is_a_disconnect(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port, hb=1)
        await c.send("1", (112, "ping"))
        assert (await c.expect("0")).get(112) == b"ping"
        started = time.monotonic()
        test = await c.expect("1", timeout=5)  # silent past 1.2 HeartBtInt
        assert test.get(112)
        assert await c.closed(timeout=5)  # the TestRequest goes unanswered
        assert time.monotonic() - started < 8

    run(harness, scenario)


def test_sound_logout_both_directions(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send("5", (58, "bye"))
        assert (await c.expect("5")).get(34) == b"2"
        assert await c.closed()
        d = await logged_on(port, "BOB")
        stopping = asyncio.get_running_loop().create_task(h.stop())
        logout = await d.expect("5")
        assert b"shutting down" in logout.get(58)
        await d.send("5")
        assert await d.closed()
        await stopping

    run(harness, scenario)


_D_BODY = order("r1", "1", "1.00", "90.00")


@pytest.mark.parametrize(
    ("kind", "pairs", "reason", "ref"),
    [
        ("D", [p for p in _D_BODY if p[0] != 11], b"1", b"11"),  # required tag missing
        ("D", [*_D_BODY, (58, "")], b"4", b"58"),  # tag without value
        ("D", [(54, "9") if p[0] == 54 else p for p in _D_BODY], b"5", b"54"),  # out of range
        ("D", [(38, "1.0x") if p[0] == 38 else p for p in _D_BODY], b"6", b"38"),  # format
        ("D", [*_D_BODY, (55, "BTC-USD")], b"13", b"55"),  # repeated
        ("D", [*_D_BODY, (112, "x")], b"2", b"112"),  # not defined for the message
    ],
    ids=["required", "no-value", "range", "format", "repeated", "not-defined"],
)
def test_sound_session_reject_fields_and_sequence(
    harness: Harness, kind: str, pairs: list[tuple[int, object]], reason: bytes, ref: bytes
) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send(kind, *pairs)
        rej = await c.expect("3")
        got = (rej.get(45), rej.get(371), rej.get(372), rej.get(373))
        assert got == (b"2", ref, b"D", reason)
        await c.send("1", (112, "next"))  # 3: the rejected one took 2
        assert (await c.expect("0")).get(112) == b"next"

    run(harness, scenario)


@pytest.mark.parametrize(
    ("problem", "reason", "ref"),
    [("compid", b"9", b"49"), ("sending-time", b"10", b"52")],
)
def test_sound_compid_and_sending_time_reject_then_logout(
    harness: Harness, problem: str, reason: bytes, ref: bytes
) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        if problem == "compid":
            await c.send("1", (112, "x"), sender="BOB")
        else:  # an hour off; the tolerance is 120 s
            await c.send("1", (112, "x"), sending_time=utc(-3600))
        rej = await c.expect("3")
        assert (rej.get(45), rej.get(371), rej.get(373)) == (b"2", ref, reason)
        await c.expect("5")
        assert await c.closed()

    run(harness, scenario)


def test_sound_unsupported_msgtype_is_a_business_reject(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send("R", (131, "qr1"), (146, 1), (55, "BTC-USD"))
        await c.send("V", (262, "md1"), (263, "0"), (264, "1"), (267, 1), (269, "0"),
                     (146, 1), (55, "BTC-USD"))  # fmt: skip
        got = [await c.expect("j") for _ in range(2)]
        assert [(m.get(45), m.get(372), m.get(380)) for m in got] == [
            (b"2", b"R", b"3"), (b"3", b"V", b"3"),
        ]  # fmt: skip
        # each names the request's own id, BusinessRejectRefID 379 (it was left out: a
        # QuoteReqID or an MDReqID was not one ``business_reject`` looked for)
        assert [m.get(379) for m in got] == [b"qr1", b"md1"]
        await c.send("1", (112, "four"))
        assert (await c.expect("0")).get(112) == b"four"

    run(harness, scenario)


def test_sound_cancel_rejects_for_unknown_and_filled_orders(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        a = await logged_on(port)
        b = await logged_on(port, "BOB")
        await a.send("F", *cancel("nope", "c0", "2"))
        rej = await a.expect("9")
        assert (rej.get(37), rej.get(11), rej.get(41), rej.get(39), rej.get(434),
                rej.get(102)) == (b"NONE", b"c0", b"nope", b"8", b"1", b"1")  # fmt: skip
        await a.send("D", *order("s1", "2", "1.00", "100.00"))
        await a.expect("8")
        await b.send("D", *order("b1", "1", "1.00", "100.00"))
        while (await a.expect("8")).get(39) != b"2":
            pass
        await a.send("F", *cancel("s1", "c1", "2"))
        rej = await a.expect("9")
        assert (rej.get(39), rej.get(434), rej.get(102), rej.get(41)) == (b"2", b"1", b"0", b"s1")
        assert rej.get(37) not in (None, b"NONE")
        await a.send("G", (41, "s1"), *order("s2", "2", "2.00", "101.00"))
        rej = await a.expect("9")
        assert (rej.get(39), rej.get(434), rej.get(102), rej.get(11)) == (b"2", b"2", b"0", b"s2")

    run(harness, scenario)


def test_sound_garbled_messages_take_no_sequence_number(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        good = c.message("1", (112, "lost"), seq=2).encode()
        start = good.index(b"\x019=") + 3
        end = good.index(b"\x01", start)
        length = int(good[start:end])
        for bad in (b"%d" % (length + 5), b"%d" % (length - 5), b"abc"):
            await c.send_raw(good[:start] + bad + good[end:])
        wrong_sum = b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)
        await c.send_raw(good[:-4] + wrong_sum)
        await c.send_raw(crafted(c, "1", (112, "two"), seq=2))
        beat = await c.expect("0")
        assert beat.get(112) == b"two"
        assert [m.get(35) for m in await drain_for(c) if m.get(35) != b"0"] == []

    run(harness, scenario)
