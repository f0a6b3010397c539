"""Review 123: the FIX gateway's own docstrings (module, class and function docstrings, ``#:``
comments) held to what the code does, mechanically. This file: the session layer
(``session.py``, ``session_interface.py``, ``logon.py``, ``gap_recovery.py``, ``resend.py``,
``store.py``) and ``inbound_limits.py``. ``..._docstrings2.py``: the codec and dictionary
(``fix.py``, ``fix_groups.py``, ``dictionary.py``), ``limits.py``, the sockets
(``connection.py``, ``connections.py``, ``live_sessions.py``), ``audit.py`` and order entry
(``orders.py``, ``order_replies.py``, ``order_fields.py``, ``order_log.py``,
``disconnect_cancels.py``, ``clordids.py``, ``clordid_holders.py``).
Review 112 held README.md's gateway row; this holds the code's own word.

Convention (reviews 115-120): each claim is anchored by a short verbatim quote of the
docstring or comment it checks (whitespace folded, comment marks dropped: ``_says``); a claim
found right is a plain test, a disagreement a strict xfail asserting what the docstring says,
the side to fix in its reason. All in-process: the sans-I/O ``Session`` of
``test_review4_fix_bugs`` and review 112's stand-in transport, by import.

Disagreements found, all fixed since (the first in the code; the last two in part 2):
- store.py "a reset discards what the client has seen, never what it has not": reports a
  reset logon carried (parked, sent anew) and that never left the gateway (the connection
  went before ``take_output`` wrote them) are lost for good at the next reset logon:
  ``Session._close`` drops the queued first sending (gap_recovery.py:188) and ``reset``
  cleared ``parked_from`` (store.py:242), so ``unsent`` finds nothing. A real loss of
  execution reports (a client that resets at each logon, dropped mid-backlog); code side.
- session_interface.py ``on_message`` "An in-sequence, valid D/F/G/H/q/j message": the
  session hands OrderMassStatusRequest (AF) too (``INBOUND_APP``); docstring side.
- dictionary.py "one of the user-defined range (5000-9999) an undefined tag (373=3)", any
  other undefined tag 373=0: ``first_fault`` answers 3 from 5000 up, past 9999 too
  (dictionary.py:495); docstring side (review 112 mended the README's same sentence).
- orders.py "It turns D/F/G/H/q into ``NewOrder``, ... records": an H is answered from
  memory, no record made; docstring side.
Adversarial sequences (gaps and bursts past them, PossDup copies of answered TestRequests,
resends with sends behind them, resets in and out of session, ClOrdID reuse after a fill, a
cancel, a replace and as a mass cancel's id, PossDup and PossResend repeats, cancel on
disconnect before an ack) found no other message lost or sent twice, no MsgSeqNum reused.
"""

from __future__ import annotations

import inspect
import re
import time
import zlib
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, cast

import pytest

from procs.common.crc_frames import frame as crc_frame
from procs.common.users import UserStore
from procs.gateway import (
    gap_recovery,
    inbound_limits,
    logon,
    resend,
)
from procs.gateway import session as session_mod
from procs.gateway import session_interface as iface_mod
from procs.gateway import store as store_mod
from procs.gateway.fix import FixMessage, FixReader, frame
from procs.gateway.session import Session
from procs.gateway.session_interface import SessionSettings, State
from procs.gateway.store import MessageStore
from tests.unit.gateway.test_review4_fix_bugs import (  # its fixture closes the stores
    _STORES,
    App,
    _close_stores,  # noqa: F401
    framed,
    msg,
    replies,
    session,
    stamp,
)
from tests.unit.gateway.test_review112_readme_fix import parsed

_S = 1_000_000_000
NOW = time.time_ns()
_D = ((11, "r123"), (55, "BTC-USD"), (54, 1), (60, stamp(NOW)), (38, "1"), (40, 2), (44, "100"))


def _text(where: ModuleType | type | Any) -> str:
    """``where``'s source, comment marks (``#``, ``#:``) at a line's start dropped, folded."""
    return " ".join(re.sub(r"(?m)^\s*#:?", " ", inspect.getsource(where)).split())


def _says(where: ModuleType | type | Any, quote: str) -> None:
    """``where`` still says ``quote`` (whitespace folded): the anchor of a claim checked."""
    assert " ".join(quote.split()) in _text(where), f"{where!r} no longer says {quote!r}"


def _users(tmp_path: Path) -> UserStore:
    users = UserStore(tmp_path / "users.json")
    users.add("ALICE", "pw", 7, n=1 << 4)
    return users


def _store(path: Path) -> MessageStore:
    _STORES.append(MessageStore(path))
    return _STORES[-1]


def _fixed(store: MessageStore) -> Any:
    """A session's ``stores``: ``store`` for any CompID."""
    return lambda comp: store


def _logon(*extra: tuple[int, object], seq: int = 1, hb: int = 30) -> bytes:
    return msg("A", seq, (98, 0), (108, hb), *extra, (554, "pw"), now_ns=NOW)


def _kinds(s: Session) -> list[tuple[bytes, bytes | None]]:
    return [(m.msg_type, m.get(34)) for m in replies(s)]


def _report(seq: int, cl: str) -> bytes:
    """An ExecutionReport of the gateway's to ALICE, MsgSeqNum ``seq``, as a store holds it."""
    return frame(b"35=8\x0149=RINGEX\x0156=ALICE\x0134=%d\x0152=%s\x0111=%s\x01"
                 % (seq, stamp(NOW).encode(), cl.encode()))  # fmt: skip


# -- session.py: the rules in the order a message meets them ---------------------------------


def test_a_garbled_message_consumes_no_sequence_number(tmp_path: Path) -> None:
    """session.py rule 1: "a garbled message is ignored and consumes no sequence number":
    ``data_received`` skips a ``Garbled`` (a wrong CheckSum here); 2 is still expected."""
    _says(session_mod, "a garbled message is ignored and consumes no sequence number")
    s, _ = session(tmp_path, NOW)
    bad = msg("0", 2, now_ns=NOW)
    s.data_received(bad[:-4] + b"%03d\x01" % ((int(bad[-4:-1]) + 1) % 256), NOW)
    assert replies(s) == [] and s.store is not None and s.store.next_in == 2
    s.data_received(msg("0", 2, now_ns=NOW), NOW)
    assert replies(s) == [] and s.store.next_in == 3


def test_before_logon_anything_else_closes_the_connection(tmp_path: Path) -> None:
    """Rule 2: "Before logon only a Logon is accepted (anything else closes the
    connection)": ``_logon`` closes on a first Heartbeat, answering nothing."""
    _says(session_mod, "Before logon only a Logon is accepted (anything else closes the")
    stores = cast(Any, _store)
    s = Session(SessionSettings(comp_id="RINGEX"), _users(tmp_path), stores, App(), {}, NOW)
    s.data_received(msg("0", 1, now_ns=NOW), NOW)
    assert s.state is State.CLOSED and s.take_output() == []


def test_a_second_connection_is_refused_and_the_first_stays_up(tmp_path: Path) -> None:
    """Rule 2: "not logged on over another connection (the new one is refused, the first
    stays up)": ``logon.after_password`` against the shared ``live`` table."""
    _says(session_mod, "(the new one is refused, the first stays up)")
    users, live = _users(tmp_path), cast(dict[str, Session], {})
    store = _fixed(_store(tmp_path / "ALICE"))

    first = Session(SessionSettings(comp_id="RINGEX"), users, store, App(), live, NOW)
    first.data_received(_logon(), NOW)
    second = Session(SessionSettings(comp_id="RINGEX"), users, store, App(), live, NOW)
    second.data_received(_logon(seq=2), NOW)
    (logout,) = replies(second)
    assert logout.msg_type == b"5" and b"already logged on" in (logout.get(58) or b"")
    assert second.state is State.CLOSED and first.state is State.ACTIVE and live["ALICE"] is first


@pytest.mark.parametrize("how", ["141=Y", "reset_on_logon"])
def test_reset_seq_num_flag_or_reset_on_logon_restart_both_at_1(tmp_path: Path, how: str) -> None:
    """Rule 2: "ResetSeqNumFlag or ResetOnLogon restart both sequences at 1; otherwise they
    continue from the session's ``store.MessageStore``". ``_finish_logon``: the reply is 34=1
    and 2 is expected next; without either, the reply takes the store's next-out (9)."""
    _says(session_mod, "ResetSeqNumFlag or ResetOnLogon restart both sequences at 1; otherwise")
    for reset in (True, False):
        path = tmp_path / f"{reset}"
        kept = MessageStore(path)
        kept.next_in, kept.next_out = 5, 9
        kept.set_next_in(5)
        kept.close()
        store = _store(path)
        flag = ((141, "Y"),) if reset and how == "141=Y" else ()
        settings = SessionSettings(comp_id="RINGEX", reset_on_logon=reset and how != "141=Y")
        s = Session(settings, _users(tmp_path), _fixed(store), App(), {}, NOW)
        s.data_received(_logon(*flag, seq=1 if reset else 5), NOW)
        got = _kinds(s)
        assert got == ([(b"A", b"1")] if reset else [(b"A", b"9")]), got
        assert store.next_in == (2 if reset else 6)


def test_with_defer_auth_what_arrives_meanwhile_waits_in_order(tmp_path: Path) -> None:
    """Rule 2: "messages that arrive meanwhile wait for its answer, in order":
    ``AUTHENTICATING`` holds two TestRequests; ``authenticated`` answers them after the
    Logon, in their order."""
    _says(session_mod, "messages that arrive meanwhile wait for its answer, in order")
    users = _users(tmp_path)
    settings = SessionSettings(comp_id="RINGEX", defer_auth=True)
    s = Session(settings, users, lambda c: _store(tmp_path / c), App(), {}, NOW)
    later = [msg("1", k, (112, f"t{k}"), now_ns=NOW) for k in (2, 3)]
    s.data_received(_logon() + b"".join(later), NOW)
    assert s.state is State.AUTHENTICATING and s.verify_request == ("ALICE", "pw")
    assert s.take_output() == []
    s.authenticated(users.get("ALICE"), NOW)
    got = [(m.msg_type, m.get(112)) for m in replies(s)]
    assert got == [(b"A", None), (b"0", b"t2"), (b"0", b"t3")]


def test_msgseqnum_missing_is_a_logout(tmp_path: Path) -> None:
    """Rule 3: "MsgSeqNum missing: Logout." ``_active``: a Logout naming 34, then closed."""
    _says(session_mod, "MsgSeqNum missing: Logout.")
    s, _ = session(tmp_path, NOW)
    s.data_received(framed(f"35=0|49=ALICE|56=RINGEX|52={stamp(NOW)}|"), NOW)
    (logout,) = replies(s)
    assert logout.msg_type == b"5" and b"MsgSeqNum (34)" in (logout.get(58) or b"")
    assert s.state is State.CLOSED


def test_a_sequence_reset_reset_is_taken_whatever_its_msgseqnum(tmp_path: Path) -> None:
    """Rule 4: "SequenceReset-Reset is taken whatever its MsgSeqNum": a too-low (1, no
    PossDup) and a too-high (50) SequenceReset without 123=Y move next-in, no Logout;
    gap_recovery ``_sequence_reset`` refuses a NewSeqNo below the expected one (373=5, 36)."""
    _says(session_mod, "SequenceReset-Reset is taken whatever its MsgSeqNum.")
    s, _ = session(tmp_path, NOW)
    assert s.store is not None
    s.data_received(msg("4", 1, (36, 10), now_ns=NOW), NOW)
    s.data_received(msg("4", 50, (36, 20), now_ns=NOW), NOW)
    assert replies(s) == [] and s.store.next_in == 20 and s.state is State.ACTIVE
    s.data_received(msg("4", 20, (36, 7), now_ns=NOW), NOW)
    (reject,) = replies(s)
    assert (reject.msg_type, reject.get(373), reject.get(371)) == (b"3", b"5", b"36")


def test_too_high_asks_once_per_gap_and_drops_the_message(tmp_path: Path) -> None:
    """Rule 4: "Too high: ResendRequest (once per gap) and the message is dropped": orders 3
    and 4 past a lost 2 ask 7=2 16=0 once; the application gets neither."""
    _says(session_mod, "Too high: ResendRequest (once per gap) and the message is dropped")
    s, app = session(tmp_path, NOW)
    for seq in (3, 4):
        s.data_received(msg("D", seq, *_D[:1], (11, f"o{seq}"), *_D[1:], now_ns=NOW), NOW)
    assert [(m.msg_type, m.get(7), m.get(16)) for m in replies(s)] == [(b"2", b"2", b"0")]
    assert app.messages == [] and s.store is not None and s.store.next_in == 2


def test_a_too_high_test_request_is_answered_at_once_and_its_copy_not_again(
    tmp_path: Path,
) -> None:
    """Rule 4: "a TestRequest, answered at once ... a PossDup copy is not answered again":
    ``_answer_early``, then ``_answer_test_request`` pops its seq when the copy comes."""
    _says(session_mod, "and a TestRequest, answered at once")
    _says(session_mod, "a PossDup copy is not answered again")
    s, _ = session(tmp_path, NOW)
    s.data_received(msg("1", 3, (112, "T3"), now_ns=NOW), NOW)
    assert {(m.msg_type, m.get(112)) for m in replies(s)} == {(b"0", b"T3"), (b"2", None)}
    copy = msg("1", 3, (112, "T3"), now_ns=NOW, header=f"43=Y|122={stamp(NOW)}|")
    s.data_received(msg("0", 2, now_ns=NOW, header=f"43=Y|122={stamp(NOW)}|") + copy, NOW)
    assert replies(s) == [] and s.store is not None and s.store.next_in == 4


def test_too_low_ignored_with_poss_dup_else_logout(tmp_path: Path) -> None:
    """Rule 4: "Too low: with PossDupFlag it is ignored (after the OrigSendingTime rules),
    without it Logout": ``_active``'s ``seq < expected``."""
    _says(session_mod, "Too low: with PossDupFlag it is ignored (after the OrigSendingTime")
    s, app = session(tmp_path, NOW)
    s.data_received(msg("D", 1, *_D, now_ns=NOW, header=f"43=Y|122={stamp(NOW)}|"), NOW)
    assert replies(s) == [] and app.messages == [] and s.state is State.ACTIVE
    s.data_received(msg("0", 1, now_ns=NOW), NOW)
    (logout,) = replies(s)
    assert logout.msg_type == b"5" and b"too low" in (logout.get(58) or b"")


def test_in_sequence_reject_business_reject_and_throttle(tmp_path: Path) -> None:
    """Rule 5: "dictionary validation (``dictionary.validate``) -> Reject (3); unsupported
    application types -> BusinessMessageReject (j); over the throttle ->
    BusinessMessageReject": ``_in_sequence``, with a throttle of 1 a second."""
    _says(session_mod, "unsupported application types -> BusinessMessageReject (j); over the")
    s, app = session(tmp_path, NOW, max_messages_per_s=1)
    s.data_received(msg("D", 2, *_D[:-1], now_ns=NOW), NOW)  # a limit without Price: valid
    s.data_received(msg("0", 3, (9999, "x"), now_ns=NOW), NOW)
    s.data_received(msg("R", 4, (131, "q1"), now_ns=NOW), NOW)
    s.data_received(msg("D", 5, *_D, now_ns=NOW), NOW)
    got = [(m.msg_type, m.get(373) or m.get(380)) for m in replies(s)]
    assert got == [(b"3", b"3"), (b"j", b"3"), (b"j", b"0")] and len(app.messages) == 1


def test_a_test_request_after_silence_then_the_close(tmp_path: Path) -> None:
    """``on_timer``: "Heartbeats, test requests, logon and logout timeouts": a Heartbeat
    once a HeartBtInt passes without output, a TestRequest past 1.2 intervals of silence,
    the close when it goes unanswered another interval."""
    _says(Session.on_timer, "Heartbeats, test requests, logon and logout timeouts")
    s, _ = session(tmp_path, NOW)
    s.on_timer(NOW + 30 * _S)
    assert [m.msg_type for m in replies(s)] == [b"0"]
    s.on_timer(NOW + 37 * _S)
    assert [m.msg_type for m in replies(s)] == [b"1"]
    s.on_timer(NOW + 67 * _S)
    states = [s.state]
    s.on_timer(NOW + 68 * _S)
    assert [*states, s.state] == [State.ACTIVE, State.CLOSED]
    assert "no answer to a TestRequest" in s.close_reason


def test_silence_while_not_read_is_not_held_against_the_client(tmp_path: Path) -> None:
    """``on_timer``: "``reading`` False ... its silence is not held against it": a minute
    of timers with ``reading=False`` sends no TestRequest and closes nothing."""
    _says(Session.on_timer, "so its silence is not held against it")
    s, _ = session(tmp_path, NOW)
    for k in range(1, 61):
        s.on_timer(NOW + k * _S, reading=False)
    assert b"1" not in [m.msg_type for m in replies(s)] and s.state is State.ACTIVE


def test_connection_lost_tells_the_application_once(tmp_path: Path) -> None:
    """``connection_lost``: "the session ends, and ``_close`` tells the application once" (a
    session that ended itself before, a Logout, told it then: review 230)."""
    _says(Session.connection_lost, "tells the application once")
    s, _ = session(tmp_path, NOW)
    told: list[Session] = []
    s.app = cast(Any, SimpleNamespace(on_disconnect=lambda session, now: told.append(session)))
    s.data_received(msg("5", 2, now_ns=NOW), NOW)
    assert s.state is State.CLOSED
    s.connection_lost(NOW)
    s.connection_lost(NOW)
    assert told == [s]


def test_logout_closes_on_the_reply_or_the_timeout(tmp_path: Path) -> None:
    """``logout``: "the session closes on the reply or timeout" (``logout_timeout_s``)."""
    _says(Session.logout, "the session closes on the reply or timeout")
    for reply in (True, False):
        s, _ = session(tmp_path / f"{reply}", NOW)
        s.logout("bye", NOW)
        states = [s.state]
        assert [m.msg_type for m in replies(s)] == [b"5"]
        if reply:
            s.data_received(msg("5", 2, now_ns=NOW), NOW)
        else:
            s.on_timer(NOW + 3 * _S)
        assert [*states, s.state] == [State.LOGGING_OUT, State.CLOSED] and replies(s) == []


def test_a_logon_with_reset_while_logged_on_starts_both_at_1(tmp_path: Path) -> None:
    """``_reset_in_session``: "both sides start again at 1, and the answer is a Logon with
    141=Y"; the next message expected is 2."""
    _says(Session._reset_in_session, "both sides start again at 1, and the answer is a Logon")
    s, _ = session(tmp_path, NOW)
    s.data_received(msg("0", 2, now_ns=NOW), NOW)
    s.data_received(_logon((141, "Y")), NOW)
    (answer,) = replies(s)
    assert (answer.msg_type, answer.get(34), answer.get(141)) == (b"A", b"1", b"Y")
    assert s.store is not None and s.store.next_in == 2


def test_a_resend_answer_goes_before_what_is_sent_meanwhile(tmp_path: Path) -> None:
    """``take_output``: "what the session sends meanwhile waits behind it
    (``behind_bytes``)"; gap_recovery.py: "the client still reads every message in MsgSeqNum
    order". 600 stored, a ResendRequest for all, a send meanwhile, taken 4 KiB a call."""
    _says(Session.take_output, "what the session sends meanwhile waits behind it")
    _says(gap_recovery, "so the client still reads every message in MsgSeqNum order")
    s, _ = session(tmp_path, NOW)
    for k in range(600):
        s.send(b"8", b"11=c%d\x01" % k, NOW)
    s.take_output()
    s.data_received(msg("2", 2, (7, 1), (16, 0), now_ns=NOW), NOW)
    s.send(b"8", b"11=late\x01", NOW)
    assert s.behind_bytes > 0
    seqs: list[int] = []
    while (out := s.take_output(4096, NOW)) or s.resending:
        seqs += [int(m.fields[34]) for m in replies_of(out)]
    assert seqs == list(range(1, 603)) and s.behind_bytes == 0


def replies_of(out: list[bytes]) -> list[FixMessage]:
    reader = FixReader(1 << 20)
    reader.feed(b"".join(out))
    return cast(list[FixMessage], reader.messages())


# -- gap_recovery.py and resend.py -------------------------------------------------------------


def test_early_answers_are_bounded_the_oldest_dropped() -> None:
    """``MAX_EARLY_ANSWERS``: "Too-high TestRequests remembered as answered until their
    MsgSeqNum is reached"; ``_answer_early``: "at most ``MAX_EARLY_ANSWERS``, the newest"."""
    _says(gap_recovery, "at most ``MAX_EARLY_ANSWERS``, the newest")
    sent: list[bytes] = []
    holder = SimpleNamespace(_answered_early={}, send=lambda t, body, now: sent.append(body))
    answer = gap_recovery.GapRecovery._answer_early
    for seq in range(2, gap_recovery.MAX_EARLY_ANSWERS + 3):
        answer(cast(Any, holder), parsed(msg("1", seq, (112, "t"), now_ns=NOW)), seq, NOW)
    kept = holder._answered_early
    assert len(kept) == gap_recovery.MAX_EARLY_ANSWERS and 2 not in kept and 3 in kept


def test_a_poss_dup_without_orig_sending_time_or_with_a_later_one(tmp_path: Path) -> None:
    """gap_recovery.py: "the OrigSendingTime a PossDup message must carry": none is 373=1
    (122), the session goes on; one after SendingTime is 373=10 and a Logout."""
    _says(gap_recovery, "the OrigSendingTime a PossDup message must carry")
    s, _ = session(tmp_path, NOW)
    s.data_received(msg("0", 2, now_ns=NOW, header="43=Y|"), NOW)
    assert [(m.get(373), m.get(371)) for m in replies(s)] == [(b"1", b"122")]
    later = stamp(NOW + 60 * _S)
    s.data_received(msg("0", 3, now_ns=NOW, header=f"43=Y|122={later}|"), NOW)
    assert [(m.msg_type, m.get(373)) for m in replies(s)] == [(b"3", b"10"), (b"5", None)]


def test_what_waits_behind_a_resend_is_not_resent_as_well(tmp_path: Path) -> None:
    """``_resend``: "those waiting behind a resend under way are not sent yet: they follow
    it as themselves": a second ResendRequest meanwhile ends before them."""
    _says(gap_recovery, "those waiting behind a resend under way are not sent yet")
    s, _ = session(tmp_path, NOW)
    s.data_received(msg("2", 2, (7, 1), (16, 0), now_ns=NOW), NOW)
    s.send(b"8", b"11=behind\x01", NOW)
    s.data_received(msg("2", 3, (7, 1), (16, 0), now_ns=NOW), NOW)
    seqs = [int(m.fields[34]) for m in replies(s)]
    assert seqs == [1, 1, 2]  # two gap fills of the Logon, then the report, once


def test_resent_application_messages_and_gap_fills() -> None:
    """resend.py: "Application messages go again as they were, with PossDupFlag (43=Y) and
    their first SendingTime as OrigSendingTime (122); every run of session messages, and any
    seq the store lacks, becomes one SequenceReset-GapFill (35=4, 123=Y)"."""
    _says(resend, "every run of session messages, and any seq the store lacks, becomes one")
    first = stamp(NOW - 5 * _S).encode()
    hdr = b"49=RINGEX\x0156=ALICE\x01"

    def stored(seq: int, kind: bytes, body: bytes = b"") -> tuple[int, bytes]:
        return seq, frame(b"35=%s\x01%s34=%d\x0152=%s\x01%s" % (kind, hdr, seq, first, body))

    rows = [stored(1, b"A", b"98=0\x01108=30\x01"), stored(2, b"0"), stored(4, b"8", b"11=a\x01")]
    now = stamp(NOW).encode()
    out = [parsed(r) for r in resend.resent(rows, 1, 6, hdr, now)]
    got = [(m.msg_type, m.get(34), m.get(36), m.get(43), m.get(122)) for m in out]
    assert got == [
        (b"4", b"1", b"4", b"Y", now),
        (b"8", b"4", None, b"Y", first),
        (b"4", b"5", b"7", b"Y", now),
    ]
    assert out[1].get(11) == b"a" and out[0].get(123) == b"Y"
    _says(resend, "go the same way for the first time: as themselves, with only a new SendingTime")
    (fresh,) = [parsed(r) for r in resend.resent(rows[2:], 4, 4, hdr, now, again=False)]
    assert (fresh.get(43), fresh.get(122), fresh.get(52)) == (None, None, now)


def test_resend_range_refuses_or_caps() -> None:
    """``resend_range``: "The last seq a ResendRequest for ``begin``..``asked`` (0: through
    the last sent) gets ... or 0 and why the request is refused"."""
    _says(resend.resend_range, "(0: through the last sent)")
    assert resend.resend_range(3, 0, 10) == (10, "") and resend.resend_range(3, 50, 10) == (10, "")
    assert resend.resend_range(3, 5, 10) == (5, "")
    assert resend.resend_range(6, 5, 10)[0] == 0 and resend.resend_range(12, 0, 10)[0] == 0


# -- store.py ------------------------------------------------------------------------------------


def test_seqnums_is_24_bytes_and_a_16_byte_one_reads_as_none_parked(tmp_path: Path) -> None:
    """store.py: "``seqnums`` (next inbound, next outbound, the first message parked since
    the last logon, rewritten in place: 24 bytes; ...; a 16-byte one from before parking was
    tracked reads as none parked)"."""
    _says(store_mod, "a 16-byte one from before parking was tracked reads as none parked")
    store = MessageStore(tmp_path / "a")
    store.park(1, _report(1, "p"))
    store.close()
    words = [n.to_bytes(8, "little") for n in (1, 2, 1)]
    assert (tmp_path / "a" / "seqnums").read_bytes() == b"".join(words)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "seqnums").write_bytes((4).to_bytes(8, "little") + (9).to_bytes(8, "little"))
    old = _store(tmp_path / "b")
    assert (old.next_in, old.next_out, old.parked_from) == (4, 9, 0)


def test_messages_entries_and_a_reset_truncates_both(tmp_path: Path) -> None:
    """store.py: "``messages`` (``RXMS`` and a version, then every outbound message as a
    ``crc_frames`` frame of ``u64 seq | raw``)" and "A reset (ResetSeqNumFlag, ResetOnLogon)
    truncates both (``messages`` to its header)"."""
    _says(store_mod, "then every outbound message as a ``crc_frames`` frame of ``u64 seq | raw``")
    _says(store_mod, "A reset (ResetSeqNumFlag, ResetOnLogon) truncates both (``messages`` to")
    store = _store(tmp_path)
    raw = _report(1, "x")
    store.add_outbound(1, raw)
    store.flush()
    data = (tmp_path / "messages").read_bytes()
    body = (1).to_bytes(8, "little") + raw
    assert data == store_mod.MAGIC + crc_frame(body)
    assert data[8:16] == len(body).to_bytes(4, "little") + zlib.crc32(body).to_bytes(4, "little")
    store.reset()
    assert (tmp_path / "messages").read_bytes() == store_mod.MAGIC
    assert (store.next_in, store.next_out) == (1, 1)


def test_a_crash_between_the_two_writes_never_gives_a_seq_again(tmp_path: Path) -> None:
    """``MessageStore.__init__``: "a crash between ``flush``'s two writes leaves messages
    past the saved next-out: their MsgSeqNums were sent, never to be given again"; and a
    torn tail (``_load``) is cut."""
    _says(MessageStore, "their MsgSeqNums were sent, never to be given again")
    store = MessageStore(tmp_path)
    for seq in (1, 2, 3):
        store.add_outbound(seq, _report(seq, "x"))
    store.flush()
    store.close()
    (tmp_path / "seqnums").write_bytes(b"".join(n.to_bytes(8, "little") for n in (1, 2, 0)))
    with (tmp_path / "messages").open("ab") as f:
        f.write(b"\x50\x00\x00\x00\x04\x00\x00\x00torn")
    again = _store(tmp_path)
    assert again.next_out == 4 and [s for s, _ in again.outbound(1, 9)] == [1, 2, 3]


def test_every_message_ever_stored_can_be_resent(tmp_path: Path) -> None:
    """``_SparseIndex``: "so every message ever stored can be resent, for 16 bytes per
    ``STRIDE`` messages": 700 stored, any range read back whole, after a reopen too."""
    _says(store_mod, "so every message ever stored can be resent")
    store = MessageStore(tmp_path)
    for seq in range(1, 701):
        store.add_outbound(seq, _report(seq, f"c{seq}"))
    assert [s for s, _ in store.outbound(250, 520)] == list(range(250, 521))
    store.close()
    again = _store(tmp_path)
    assert [s for s, _ in again.outbound(1, 3)] == [1, 2, 3]
    assert [s for s, _ in again.outbound(699, 900)] == [699, 700]


def test_a_reset_logon_sends_what_was_parked_anew(tmp_path: Path) -> None:
    """store.py: "a logon that resets them takes them first (``unsent``) so the session sends
    them again under its new numbers": two parked reports follow the reset Logon as 2, 3."""
    _says(store_mod, "a logon that resets them takes them first (``unsent``) so the session")
    store = _store(tmp_path / "s")
    for k in (1, 2):
        store.park(store.next_out, _report(store.next_out, f"p{k}"))
    s = Session(SessionSettings(comp_id="RINGEX"), _users(tmp_path), _fixed(store), App(),
                {}, NOW)  # fmt: skip
    s.data_received(_logon((141, "Y")), NOW)
    got = [(m.msg_type, m.get(34), m.get(11), m.get(43)) for m in replies(s)]
    assert got == [(b"A", b"1", None, None), (b"8", b"2", b"p1", None), (b"8", b"3", b"p2", None)]


def test_a_reset_never_discards_reports_the_client_has_not_seen(tmp_path: Path) -> None:
    """store.py: "a reset discards what the client has seen, never what it has not". Two
    reports parked; a reset Logon queues them anew, but the connection goes before the shell
    takes them (``take_output(0)``: its socket full, say); the client logs on again with
    141=Y. Expected: the two reports follow its Logon; actual: only the Logon."""
    _says(store_mod, "a reset discards what the client has seen, never what it has not")
    store, users = _store(tmp_path / "s"), _users(tmp_path)
    for k in (1, 2):
        store.park(store.next_out, _report(store.next_out, f"p{k}"))
    first = Session(SessionSettings(comp_id="RINGEX"), users, _fixed(store), App(), {}, NOW)
    first.data_received(_logon((141, "Y")), NOW)
    assert [m.msg_type for m in replies_of(first.take_output(0, NOW))] == [b"A"]
    first.connection_lost(NOW)
    again = Session(SessionSettings(comp_id="RINGEX"), users, _fixed(store), App(), {}, NOW)
    again.data_received(_logon((141, "Y")), NOW)
    assert [m.get(11) for m in replies(again) if m.msg_type == b"8"] == [b"p1", b"p2"]


# -- session_interface.py and logon.py -------------------------------------------------------------


def test_a_reset_flag_with_a_seq_other_than_1_is_refused(tmp_path: Path) -> None:
    """logon.py: "each returns why the Logon is refused, or None"; ``after_password``:
    141=Y with MsgSeqNum 3 is "expected 1"; ``heartbeat_problem``: a HeartBtInt past 300."""
    _says(logon, "each returns why the Logon is refused, or None")
    settings = SessionSettings(comp_id="RINGEX")
    user = _users(tmp_path).get("ALICE")
    reset3 = parsed(_logon((141, "Y"), seq=3))
    assert "expected 1" in (logon.after_password(reset3, user, settings, {}) or "")
    assert logon.after_password(parsed(_logon()), user, settings, {}) is None
    assert "outside 1..300" in (logon.heartbeat_problem(parsed(_logon(hb=301)), settings) or "")


_ON_MESSAGE = "An in-sequence, valid D/F/G/H/q/AF/BE/x/e/j message"


def test_on_message_gets_d_f_g_h_q_af_be_x_j(tmp_path: Path) -> None:
    """session_interface.py ``on_message``: "An in-sequence, valid D/F/G/H/q/AF/BE/x/e/j
    message" (review 123: AF was unsaid): an OrderMassStatusRequest, a UserRequest and a
    SecurityListRequest reach the application."""
    _says(iface_mod.Application.on_message, _ON_MESSAGE)
    s, app = session(tmp_path, NOW)
    s.data_received(msg("AF", 2, (584, "m1"), (585, 7), now_ns=NOW), NOW)
    s.data_received(msg("BE", 3, (923, "u1"), (924, 4), (553, "ALICE"), now_ns=NOW), NOW)
    s.data_received(msg("x", 4, (320, "s1"), (559, 4), now_ns=NOW), NOW)
    assert [m.msg_type for m in app.messages] == [b"AF", b"BE", b"x"]


def test_the_inbound_limit_counts_every_message_once_logged_on() -> None:
    """session_interface.py ``max_inbound_per_s``: "Every message a second once logged on,
    garbled, session-level and rejected ones too"; inbound_limits.py ``credit``: "what waited
    there is read as one burst, which the client did not send as one"."""
    _says(iface_mod, "Every message a second once logged on, garbled, session-level and")
    _says(inbound_limits, "what waited there is read as one burst")
    limits_ = inbound_limits.InboundLimits(10, 8192, NOW)
    assert limits_.read(10, NOW) is None and limits_.read(1, NOW) is not None
    limits_.credit(2.0, NOW)
    assert limits_.read(20, NOW) is None
