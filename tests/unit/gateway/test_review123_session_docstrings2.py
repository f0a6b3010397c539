"""Review 123, part 2: the FIX gateway's own docstrings held to the code (convention and
the whole list of disagreements: ``..._docstrings.py``). This file: the codec and dictionary
(``fix.py``, ``fix_groups.py``, ``dictionary.py``), the limits (``limits.py``), the sockets
(``connection.py``, ``connections.py``, ``live_sessions.py``), ``audit.py``, and order entry
(``orders.py``, ``order_replies.py``, ``order_fields.py``, ``disconnect_cancels.py``,
``clordids.py``, ``clordid_holders.py``, ``order_log.py``), run in-process: review 112's
``Rig`` (an ``OrderEntry`` and a stand-in session) and parsers, by import.

Disagreements here (strict xfails): dictionary.py's "user-defined range (5000-9999)"
(373=3 past 9999 too) and orders.py's "turns D/F/G/H/q into ... records" (not an H); both
docstring side, as ``..._docstrings.py`` details.
"""

from __future__ import annotations

import os
import stat
import time
from array import array
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from procs.common.records import Accepted, CancelOrder, NewOrder, OrderDone
from procs.common.result_codes import ResultCode
from procs.common.types import DoneReason, Side
from procs.gateway import audit as audit_mod
from procs.gateway import (
    clordid_holders,
    clordids,
    dictionary,
    disconnect_cancels,
    fix,
    fix_groups,
    limits,
    order_fields,
    order_log,
    order_replies,
    orders,
)
from procs.gateway import connection as connection_mod
from procs.gateway import connections as connections_mod
from procs.gateway import live_sessions as live_mod
from procs.gateway.audit import AuditLog
from procs.gateway.connection import Connection
from procs.gateway.fix import FixMessage, FixReader, FrameError, Garbled
from procs.gateway.limits import RateLimiter, limit_key
from procs.gateway.live_sessions import LiveSessions
from procs.gateway.order_log import OrderLog
from procs.gateway.session import Session
from procs.gateway.session_interface import State
from tests.unit.gateway.test_review4_fix_bugs import (  # its fixture closes the stores
    _close_stores,  # noqa: F401
    framed,
    msg,
    replies,
    session,
    stamp,
)
from tests.unit.gateway.test_review112_readme_fix import _connection, _Transport, fault, parsed
from tests.unit.gateway.test_review112_readme_fix2 import GATEWAY, Rig, order
from tests.unit.gateway.test_review123_session_docstrings import _D, _S, NOW, _says

# -- fix.py, fix_groups.py, dictionary.py --------------------------------------------------------


def test_the_reader_resynchronises_on_the_next_begin_string() -> None:
    """fix.py: "A stream that does not frame (wrong start, bad length, bad checksum) yields
    ``Garbled`` and the reader resynchronises on the next ``8=FIX.4.4``"."""
    _says(fix, "yields ``Garbled`` and the reader resynchronises on the next ``8=FIX.4.4``")
    good = msg("0", 2, now_ns=NOW)
    wrong = good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)
    for junk in (b"hello", wrong, b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01"):
        reader = FixReader(1 << 20)
        reader.feed(junk + good)
        out = reader.messages()
        assert [type(m) for m in out] == [Garbled, FixMessage], (junk, out)


def test_a_body_length_past_the_limit_raises_naming_both_numbers() -> None:
    """``FixReader``: "a BodyLength that declares more raises ``FrameError`` naming both
    numbers"."""
    _says(FixReader, "a BodyLength that declares more raises ``FrameError`` naming both")
    reader = FixReader(100)
    reader.feed(b"8=FIX.4.4\x019=500\x0135=0\x01")
    with pytest.raises(FrameError, match=r"BodyLength 500 .* no more than 100"):
        reader.messages()


def test_the_checksum_is_the_byte_sum_modulo_256() -> None:
    """``checksum``: "The byte sum modulo 256", through Adler-32 up to 256 bytes, two halves
    to 512, chunks past: every length 0..1100 of 0xFF bytes (the largest sums)."""
    _says(fix.checksum, "The byte sum modulo 256.")
    for n in range(1101):
        data = b"\xff" * n
        assert fix.checksum(data) == sum(data) % 256, n


def test_fields_keep_each_tags_last_value_and_msg_type_the_first() -> None:
    """``FixMessage``: "``fields`` maps each tag to its last value; ``msg_type`` is the first
    MsgType (35)" (review 333: it was the last; a run's shape with two is parsed alone)."""
    _says(FixMessage, "``fields`` maps each tag to its last value; ``msg_type`` is the first")
    m = parsed(framed(f"35=0|49=ALICE|56=RINGEX|34=2|52={stamp(NOW)}|58=a|58=b|35=1|"))
    assert m.get(58) == b"b" and m.msg_type == b"0" and m.values.count(b"0") == 1


def test_a_wrong_checksum_or_msg_type_not_third_is_garbled() -> None:
    """``_message``: "parsed, or garbled (a wrong CheckSum, or MsgType not the third
    field; FIX ignores both, consuming no MsgSeqNum)"."""
    _says(fix._message, "garbled (a wrong CheckSum, or MsgType not the third field")
    late = framed(f"49=ALICE|35=0|56=RINGEX|34=2|52={stamp(NOW)}|")
    assert isinstance(fix.parse(late), Garbled) and "third" in cast(Garbled, fix.parse(late)).reason
    good = msg("0", 2, now_ns=NOW)
    assert isinstance(fix.parse(good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)), Garbled)


@pytest.mark.parametrize(
    ("pairs", "reason", "tag"),
    [
        (((453, 1), (448, "A"), (447, "D"), (447, "D"), (452, 1)), 15, 447),  # repeated
        (((448, "A"), (453, 1), (448, "B"), (447, "D"), (452, 1)), 15, 448),  # outside
        (((453, 1), (447, "D"), (448, "A"), (452, 1)), 15, 447),  # before its delimiter
        (((453, 2), (448, "A"), (447, "D"), (452, 1)), 16, 453),  # count
        (((453, 0), (453, 0)), 13, 453),  # the count tag twice: the dictionary's, first
    ],
    ids=["repeated", "outside", "before-delimiter", "count", "count-tag-twice"],
)
def test_group_faults_map_onto_15_and_16(pairs: Any, reason: int, tag: int) -> None:
    """fix_groups.py: "a count that does not match its entries is 16 ..., a member before
    its delimiter, out of its order, repeated in an entry or outside its group 15";
    ``check_group``: "the dictionary refuses a repeated count tag before this runs" (13)."""
    _says(fix_groups, "a member before its delimiter, out of its order, repeated in an entry")
    _says(fix_groups.check_group, "the dictionary refuses a repeated count tag before this runs")
    found = fault(*_D, *pairs)
    assert (found.reason, found.tag) == (reason, tag)


def test_an_undefined_tag_from_5000_up_is_373_3() -> None:
    """dictionary.py: "A tag FIX 4.4 does not define is an invalid tag number (373=0), one
    from 5000 up (the user-defined range and past it) an undefined tag (373=3)" (review 123:
    it said 5000-9999): 4999 is 0; 5000, 9999 and 10000 are 3."""
    _says(dictionary, "one from 5000 up (the user-defined range and past it) an undefined tag")
    assert fault(*_D, (4999, "x")).reason == 0
    assert fault(*_D, (5000, "x")).reason == fault(*_D, (9999, "x")).reason == 3
    assert fault(*_D, (10000, "x")).reason == 3


def test_required_tags_then_groups_after_the_fields() -> None:
    """dictionary.py: "... data formats, enum values, required tags, then repeating groups":
    a bad format beats a missing required tag, which beats a group fault."""
    _says(dictionary, "data formats, enum values, required tags, then repeating groups")
    group = ((453, 2), (448, "A"), (447, "D"), (452, 1))
    assert fault(*_D[1:], *group).reason == 1  # ClOrdID missing and a miscount: 1
    assert fault(*_D[1:-1], (44, "x"), *group).reason == 6  # a Price not a number: 6


def test_unsupported_standard_types_get_j_others_a_reject_11(tmp_path: Path) -> None:
    """dictionary.py ``_STANDARD_TYPES``: "Standard FIX 4.4 message types ringex does not
    support: BusinessMessageReject, not Reject"; a type FIX 4.4 lacks is 373=11."""
    _says(dictionary, "Standard FIX 4.4 message types ringex does not support:")
    s, _ = session(tmp_path, NOW)
    s.data_received(msg("V", 2, (262, "m"), now_ns=NOW) + msg("ZZ", 3, now_ns=NOW), NOW)
    got = [(m.msg_type, m.get(380), m.get(373)) for m in replies(s)]
    assert got == [(b"j", b"3", None), (b"3", None, b"11")]


# -- limits: inbound_limits.py, limits.py ------------------------------------------------------


def test_a_refused_request_spends_nothing_and_its_hint_is_exact() -> None:
    """limits.py: "a request spends ``cost`` tokens or is refused with the time until it
    could pass (the Retry-After hint), spending nothing, so a client that backs off as told
    gets through on its next try"."""
    _says(limits, "spending nothing, so a client that backs off as told gets through")
    rl = RateLimiter(2.0, 3)
    assert [rl.take("k", 10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.take("k", 10.0)
    assert wait == pytest.approx(0.5) and rl.take("k", 10.0) == pytest.approx(0.5)
    assert rl.take("k", 10.0 + wait) == 0.0
    with pytest.raises(ValueError, match="can never pass"):
        rl.take("k", 10.0 + wait, cost=4)


def test_the_table_forgets_the_least_recently_seen_and_long_names_are_digested() -> None:
    """limits.py: "past ``max_keys`` keys the least recently seen is forgotten";
    ``limit_key``: "itself, or a digest of one longer than any name a user has"."""
    _says(limits, "past ``max_keys`` keys the least recently seen is forgotten")
    rl = RateLimiter(1.0, 1, max_keys=2)
    rl.take("a", 0.0)
    rl.take("b", 0.0)
    rl.take("a", 0.0)  # refused, but seen: "b" is the least recent now
    rl.take("c", 0.0)
    assert len(rl) == 2 and rl.take("a", 0.0) > 0 and rl.take("b", 0.0) == 0.0
    _says(limit_key, "itself, or a digest of one longer than any name a user has")
    assert limit_key("x" * 64) == "x" * 64 and len(limit_key("x" * 65)) == 33


# -- the sockets: connection.py, connections.py, live_sessions.py --------------------------------


def test_a_connection_awaiting_its_logon_is_read_while_the_exchange_is_behind() -> None:
    """connection.py: "A connection whose session awaits its Logon is read while the
    exchange is behind"; ``reading``: "Read unless the client does not read its output or
    the exchange is behind"."""
    _says(connection_mod, "A connection whose session awaits its Logon is read while the")
    owner = SimpleNamespace(pacing=SimpleNamespace(paused=True))
    conn = Connection(cast(Any, owner))
    for state, paused, writing_paused, want in [
        (State.AWAIT_LOGON, True, False, True), (State.ACTIVE, True, False, False),
        (State.ACTIVE, False, False, True), (State.AWAIT_LOGON, False, True, False),
    ]:  # fmt: skip
        owner.pacing.paused, conn.writing_paused = paused, writing_paused
        conn.session = cast(Any, SimpleNamespace(state=state))
        assert conn.reading is want, (state, paused, writing_paused)


def test_a_growing_unsent_buffer_counts_as_standing_still() -> None:
    """``check_stalled``: "a buffer that grows while the client reads less than it is sent
    counts as standing still"; disconnected past two heartbeat intervals."""
    _says(Connection.check_stalled, "a buffer that grows while the client reads less than it")
    transport = _Transport(buffered=1 << 20)
    conn = _connection(transport, heartbeat_ns=10 * _S, comp_id="ALICE", store=None)
    conn.writing_paused = True
    for k in range(22):
        transport.buffered += 1000
        conn.check_stalled(NOW + k * _S)
    assert transport.aborted


def test_a_password_check_is_skipped_for_a_connection_gone() -> None:
    """``_check_if_connected``: "The password check, on an executor thread, unless the
    connection is gone by its turn"."""
    _says(connections_mod.GatewayConnections._check_if_connected, "unless the connection is gone")
    checked: list[str] = []
    owner = SimpleNamespace(users=SimpleNamespace(verify=lambda c, p: checked.append(c)))
    check = connections_mod.GatewayConnections._check_if_connected
    assert check(cast(Any, owner), cast(Any, SimpleNamespace(closed=True)), "ALICE", "pw") is None
    check(cast(Any, owner), cast(Any, SimpleNamespace(closed=False)), "ALICE", "pw")
    assert checked == ["ALICE"]


def test_a_comp_id_claimed_elsewhere_is_refused_until_released(tmp_path: Path) -> None:
    """live_sessions.py: "``claim`` takes it (False when another process holds it),
    removing the session releases it once the gateway has published what the session sent
    (``let_go``" (another descriptor here: ``flock`` is per open)."""
    _says(live_mod, "``claim`` takes it (False when another process holds it), removing the")
    _says(live_mod, "releases it once the gateway has published what the session sent (``let_go``")
    one, other = LiveSessions(tmp_path), LiveSessions(tmp_path)
    assert one.claim("ALICE") and one.claim("ALICE") and not other.claim("ALICE")
    one["ALICE"] = object()
    del one["ALICE"]
    assert not other.claim("ALICE")  # held until what the session sent is published
    one.let_go(None)
    assert other.claim("ALICE")
    other.release_all()


# -- audit.py --------------------------------------------------------------------------------------


def test_one_line_a_message_escaped_and_passwords_masked(tmp_path: Path) -> None:
    """audit.py: "One line per message, ``<ts_ns> <in|out> <comp id> <message with SOH shown
    as |>`` ... (mode 0600)"; "A backslash, a literal ``|``, CR and LF inside a value are
    written escaped"; "Passwords (Password 554, NewPassword 925) are written as ``***``"."""
    _says(audit_mod, "Passwords (Password 554, NewPassword 925) are written as ``***``")
    log = AuditLog(tmp_path / "audit.log")
    log.record(5, True, "ALICE", b"35=A\x01554=s3cret\x01925=new\x0158=a|b\\c\r\nd\x01")
    log.record(6, False, "ALICE", b"35=0\x01")
    log.flush()
    lines = (tmp_path / "audit.log").read_bytes().split(b"\n")
    assert lines == [
        b"5 in ALICE 35=A|554=***|925=***|58=a\\|b\\\\c\\r\\nd|", b"6 out ALICE 35=0|", b""
    ]  # fmt: skip
    assert stat.S_IMODE(os.stat(tmp_path / "audit.log").st_mode) == 0o600
    log.close()


def test_a_rotated_log_is_reopened_at_the_next_flush(tmp_path: Path) -> None:
    """audit.py: "an operator renames or removes the file ...; the next flush opens a new
    ``audit.log``"; and "at the latest once ``MAX_BUFFERED_BYTES`` of them wait"."""
    _says(audit_mod, "the next flush opens a new ``audit.log`` (``_reopen_if_moved``)")
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.record(1, True, "A", b"35=0\x01")
    log.flush()
    path.rename(tmp_path / "audit.log.1")
    log.record(2, True, "A", b"35=1\x01")
    log.flush()
    assert path.read_bytes() == b"2 in A 35=1|\n"
    _says(audit_mod, "at the latest once ``MAX_BUFFERED_BYTES`` of them wait")
    log.record(3, True, "A", b"x" * audit_mod.MAX_BUFFERED_BYTES)
    assert path.stat().st_size > audit_mod.MAX_BUFFERED_BYTES
    log.close()


def test_a_message_is_in_the_journal_before_it_is_taken(tmp_path: Path) -> None:
    """audit.py: "written by ``flush``, which ``Session.take_output`` calls before it hands
    frames to a socket: a message is in the file ... before it is on the wire"."""
    _says(audit_mod, "a message is in the file (the OS's, where a crash of the process leaves")
    s, _ = session(tmp_path, NOW)
    s.audit = AuditLog(tmp_path / "audit.log")
    s.send(b"0", b"", NOW)
    assert (tmp_path / "audit.log").read_bytes() == b""
    (out,) = s.take_output()
    assert out.replace(b"\x01", b"|") in (tmp_path / "audit.log").read_bytes()
    s.audit.close()


# -- order entry: orders.py, order_replies.py, order_fields.py, disconnect_cancels.py -----------


_CXL = ((55, "BTC-USD"), (54, 1), (60, "20260101-00:00:00"))


def _done(rig: Rig, new: NewOrder, order_id: int, reason: DoneReason, ref: int = 0) -> Any:
    """The exchange's OrderDone of ``new`` (its order ``order_id``), under ``ref`` (0: the
    order's own ref): the reports it makes."""
    rig.seq += 1
    header = (rig.seq, NOW, GATEWAY, new.session, ref or new.client_ref, 7, 1, order_id)
    return rig.event(OrderDone(*header, reason=reason, filled_qty=0, leaves_qty=new.qty))


def test_refs_start_at_the_wall_clock_and_count_up() -> None:
    """orders.py: "Refs start at the wall clock in ns and count up, so they never repeat
    across restarts": ``next_ref``, and a NewOrder's ``client_ref``."""
    _says(orders, "Refs start at the wall clock in ns and count up")
    before = time.time_ns()
    rig = Rig()
    first, second = rig.new(*order("a")), rig.new(*order("b"))
    assert before <= first.client_ref < second.client_ref == first.client_ref + 1


@pytest.mark.parametrize("flag", ["poss_dup", "poss_resend"])
def test_a_clordid_seen_is_refused_unless_a_possible_duplicate(flag: str) -> None:
    """orders.py: "A ClOrdID already seen on the session is refused, unless the message is a
    possible duplicate (PossDupFlag/PossResend): then it was received before and is not
    executed twice". Also a q's (``_mass_cancel``) and once the order is done."""
    _says(orders, "then it was received before and is not executed twice")
    rig = Rig()
    new, oid = rig.acked(*order("o1"))
    (dup,) = rig.send("D", *order("o1"))
    assert (dup[150], dup[103]) == (b"8", b"6") and rig.entry.outgoing == [new]
    assert rig.send("D", *order("o1"), **{flag: "Y"}) == [] and rig.entry.outgoing == [new]
    _done(rig, new, oid, DoneReason.CANCELLED)
    assert rig.send("D", *order("o1"))[0][103] == b"6"
    assert rig.send("q", (11, "o1"), (530, 7), (60, "20260101-00:00:00"))[0][531] == b"0"


def test_while_closing_new_orders_are_refused_cancels_still_go() -> None:
    """``OrderEntry.closing``: "The gateway is stopping: new orders and replaces are
    refused, cancels still go": a D is 103=2; an F becomes a CancelOrder."""
    _says(orders.OrderEntry, "new orders and replaces are refused, cancels still go")
    rig = Rig()
    rig.acked(*order("o1"))
    rig.entry.closing = True
    (refused,) = rig.send("D", *order("o2"))
    assert (refused[150], refused[103]) == (b"8", b"2")
    assert rig.send("F", (41, "o1"), (11, "c1"), *_CXL) == []
    assert isinstance(rig.entry.outgoing[-1], CancelOrder)


def test_an_order_status_request_is_answered_without_a_record() -> None:
    """orders.py: "It turns D/F/G/q into ``NewOrder``, ... records ..., answers H, AF
    itself" (review 123: it listed H among the records): an H is answered at once."""
    _says(orders, "answers H, AF (from what it holds) and x")
    rig = Rig()
    rig.acked(*order("o1"))
    before = len(rig.entry.outgoing)
    (status,) = rig.send("H", (11, "o1"), (55, "BTC-USD"), (54, 1))
    assert status[150] == b"I" and len(rig.entry.outgoing) == before


def test_a_report_sent_again_repeats_its_exec_id_and_transact_time() -> None:
    """order_replies.py: "a gateway that ... reads the event again after its restart sends
    the same ExecID"; "Each carries TransactTime (60): the time of the event it reports"."""
    _says(order_replies, "reads the event again after its restart sends the same ExecID")
    _says(order_replies, "TransactTime (60): the time of the event it reports")
    reports = []
    for _ in range(2):
        rig = Rig()
        rig.entry._next_ref = 1000  # a restarted gateway, restored
        rig.acked(*order("o1"), ts_ns=NOW - 7 * _S)
        reports.append(rig.session.sent[-1])
    assert reports[0][17] == reports[1][17] == b"3-A101.501"
    assert reports[0][60] == stamp(NOW - 7 * _S).encode()


def test_counter_exec_ids_start_above_the_last_runs(tmp_path: Path) -> None:
    """order_replies.py: "a restart starts above every id the last run could have used, so
    those never repeat across restarts": a gateway refusal's ExecID (the counter's), then a
    new ``OrderEntry`` on the same directory."""
    _says(order_replies, "a restart starts above every id the last run could have used")
    ids = []
    for _ in range(2):
        rig = Rig(tmp_path)
        (refused,) = rig.send("D", *order("x", (55, "NOPE")))
        ids.append(int(refused[17].split(b"-")[1]))
    assert ids[1] > ids[0]


def test_mass_status_with_none_open_is_one_report_saying_so() -> None:
    """``mass_status``: "None to report: one report says so (OrderID and ClOrdID NONE,
    OrdStatus Rejected, 911=0, 912=Y)"; ``status``: "or a Rejected one saying it is unknown"."""
    _says(order_replies.OrderReplies.mass_status, "(OrderID and ClOrdID NONE, OrdStatus Rejected")
    rig = Rig()
    (none,) = rig.send("AF", (584, "m1"), (585, 7))
    assert [none[t] for t in (37, 11, 150, 39, 911, 912, 584)] == [
        b"NONE", b"NONE", b"I", b"8", b"0", b"Y", b"m1"
    ]  # fmt: skip
    _says(order_replies.OrderReplies.status, "or a Rejected one saying it is unknown")
    (unknown,) = rig.send("H", (11, "zz"), (55, "BTC-USD"), (54, 1))
    assert (unknown[150], unknown[39], 103 in unknown) == (b"I", b"8", False)


def test_cancel_reject_reasons_by_default_and_the_pending_status() -> None:
    """``_send_cancel_reject``: "by default 1 (unknown order) without an order, 0 (too late)
    for a finished one, 99 (other) for a live one the request does not fit"; "OrdStatus (39)
    is the order's current one, a cancel or replace still in flight for it included"."""
    _says(order_replies, "by default 1 (unknown order) without an order, 0 (too late)")
    rig = Rig()
    new, oid = rig.acked(*order("o1"))
    (unknown,) = rig.send("F", (41, "zz"), (11, "c0"), *_CXL)
    (unfit,) = rig.send("F", (41, "o1"), (11, "c1"), (55, "BTC-USD"), (54, 2), _CXL[2])
    assert (unknown[102], unfit[102], unfit[39]) == (b"1", b"99", b"0")
    assert rig.send("F", (41, "o1"), (11, "c2"), *_CXL) == []
    cancel = rig.entry.outgoing[-1]
    assert isinstance(cancel, CancelOrder)
    (pending,) = rig.send("F", (41, "o1"), (11, "c3"), (55, "BTC-USD"), (54, 2), _CXL[2])
    assert pending[39] == b"6"
    _done(rig, new, oid, DoneReason.CANCELLED, cancel.client_ref)
    (late,) = rig.send("F", (41, "o1"), (11, "c4"), *_CXL)
    assert (late[102], late[39]) == (b"0", b"4")


def test_a_report_for_a_session_not_logged_on_is_parked() -> None:
    """order_replies.py: "``park`` puts it in the session's outbound store"; ``_deliver``:
    "A session that has closed ... is not logged on"; no ``park``: counted lost."""
    _says(order_replies.OrderReplies._deliver, "A session that has closed (a Logout, say)")
    rig = Rig()
    new, oid = rig.acked(*order("o1"))
    parked: list[tuple[int, bytes]] = []

    def park(session_id: int, kind: bytes, body: bytes, now_ns: int) -> bool:
        parked.append((session_id, kind))
        return True

    rig.entry.park = park
    rig.session.closed = True
    assert _done(rig, new, oid, DoneReason.EXPIRED) == [] and parked == [(5, b"8")]
    rig.entry.park, rig.session.closed = None, False
    del rig.entry.sessions[5]
    rig.acked(*order("o2"))
    assert rig.entry.undeliverable == 1 and rig.session.sent[-1][11] != b"o2"


def test_a_day_order_that_rested_expires_150_c_a_market_one_150_4() -> None:
    """order_fields ``rested``: "a Day order at the end of the session is Expired (150=C). A
    market order ... has its unfilled rest cancelled ... (150=4)"."""
    _says(order_fields.rested, "a Day order at the end of the session is Expired (150=C)")
    for pairs, want in (
        (order("d", tif=0), b"C"),
        ((*order("m", tif=0)[:-2], (40, 1), (59, 0)), b"4"),
        (order("g"), b"4"),
    ):
        rig = Rig()
        new, oid = rig.acked(*pairs)
        (report,) = _done(rig, new, oid, DoneReason.EXPIRED)
        assert report[150] == want, pairs


def test_an_exchange_refusal_without_a_fix_value_is_103_99() -> None:
    """order_fields ``ORD_REJ_REASON``: "others are 99 (Other) with the code's name in Text
    (58)"."""
    _says(order_fields, "others are 99 (Other) with the code's name in Text (58)")
    rig = Rig()
    report = rig.rejected(rig.new(*order("o1")), ResultCode.PRICE_OUT_OF_BAND)
    assert report[103] == b"99" and b"PRICE_OUT_OF_BAND" in report[58]


def test_cancel_on_disconnect_its_own_cancels_an_unacked_one_once_acked() -> None:
    """disconnect_cancels.py: "each with a cancel of its own making (no ClOrdID, no client to
    answer)"; ``cancel_session_orders``: "(one not yet acknowledged once it is); how many";
    orders.py ``on_disconnect``: "an old connection's late end ... orders stay"."""
    _says(disconnect_cancels, "each with a cancel of its own making (no ClOrdID, no client")
    _says(disconnect_cancels.DisconnectCancels, "(one not yet acknowledged once it is); how many")
    rig = Rig()
    rig.entry.cancel_on_disconnect = True
    _, oid = rig.acked(*order("o1"))
    pending = rig.new(*order("o2"))
    rig.entry.on_disconnect(cast(Session, rig.session), NOW)
    (cancel,) = [c for c in rig.entry.outgoing if isinstance(c, CancelOrder)]
    assert cancel.order_id == oid and rig.entry.requests[cancel.client_ref].cl_ord_id == b""
    rig.seq += 1
    rig.event(Accepted(rig.seq, NOW, GATEWAY, 5, pending.client_ref, 7, 1, 900, side=Side.BUY,
                       price=pending.price, qty=pending.qty))  # fmt: skip
    assert [c.order_id for c in rig.entry.outgoing if isinstance(c, CancelOrder)] == [oid, 900]
    _says(orders.OrderEntry.on_disconnect, "an old connection's late end")
    again = Rig()
    again.entry.cancel_on_disconnect = True
    again.acked(*order("o1"))
    again.entry.sessions[5] = cast(Session, object())  # the user logged on again
    again.entry.on_disconnect(cast(Session, again.session), NOW)
    assert not any(isinstance(c, CancelOrder) for c in again.entry.outgoing)


def test_holding_names_a_live_order_and_a_replace_in_flight() -> None:
    """clordid_holders ``holding``: "An unfinished order of a session of ``account`` whose
    ClOrdID is ``cl_ord_id``, or will be once a replace in flight lands. Logged on or not"."""
    _says(clordid_holders, "or will be once a replace in flight lands. Logged on or not")
    rig = Rig()
    rig.entry.account_of = lambda session_id: 7
    rig.acked(*order("o1"))
    assert rig.send("G", (41, "o1"), *order("r1")) == []
    rig.entry.on_disconnect(cast(Session, rig.session), NOW)  # logged off, no COD
    held = rig.entry.holding(7, b"o1")
    assert held is not None and rig.entry.holding(7, b"r1") is held
    assert rig.entry.holding(8, b"o1") is None


# -- clordids.py, order_log.py -------------------------------------------------------------------


def test_the_seen_log_survives_a_restart(tmp_path: Path) -> None:
    """``Generations``: "The newest ``size``..2 x ``size`` values added"; clordids.py:
    "rewritten whole ... whenever the entry drops its oldest one"; "A partial last digest (a
    crash mid-write) is cut"; ``restore``: "nothing of it is left to persist"."""
    _says(clordids.Generations, "The newest ``size``..2 x ``size`` values added")
    _says(clordids, "A torn last frame (a crash mid-write) is cut;")
    path = tmp_path / "clordids.log"
    log, seen = clordids.SeenLog(path), clordids.Generations(2)
    log.load()
    for v in (1, 2, 3):
        seen.add(v)
        log.keep(seen)
    held = clordids.SeenLog(path)
    assert sorted(held.load()) == [1, 2, 3]
    held.close()
    seen.add(4)
    seen.add(5)  # the second roll: 1 and 2 dropped, the file rewritten
    log.keep(seen)
    log.close()
    path.write_bytes(path.read_bytes() + b"\x01\x02")
    back = clordids.Generations(2)
    again = clordids.SeenLog(path)
    back.restore(again.load())
    again.close()
    assert [v in back for v in (2, 3, 4, 5)] == [False, True, True, True]
    assert back.take() == (array("Q"), False)
    assert path.stat().st_size == len(clordids.MAGIC) + 8 + 3 * 8  # one frame of three


def test_a_write_of_several_frames_is_applied_whole_or_not_at_all(tmp_path: Path) -> None:
    """order_log.py: "each but the last opening with a ``+`` entry: replay applies them with
    the last, all or none"; "a torn last frame ... is cut off at the next start"; "Entries are
    upserts keyed by kind and key, so replay keeps the last of each"."""
    _says(order_log, "replay applies them with the last, all or none")
    path = tmp_path / "orders.log"
    log = OrderLog(path)
    log.load()
    log.write([("O", 1, "a"), ("O", 1, "b"), ("O", 2, "x")])
    kept = path.stat().st_size
    many = [("O", k, "v") for k in range(10, 10 + order_log.COMPACT_FRAME_ENTRIES + 1)]
    log.write(many)
    log.close()
    frames = path.read_bytes()
    assert frames[kept + 8 :].count(b"\x91\xa1+") == 1  # a "+" opens the first of two
    path.write_bytes(frames[:-3])  # the last frame torn
    again = OrderLog(path)
    state = again.load()
    again.close()
    assert state.orders == {1: ["b"], 2: ["x"]} and path.stat().st_size == kept


def test_only_the_newest_finished_orders_are_kept() -> None:
    """order_log.py ``F``: "a finished order's last fields (the newest FINISHED_KEPT are
    kept)"; ``X``: "the order or request is gone"."""
    _says(order_log, "(the newest FINISHED_KEPT are kept)")
    state = order_log.Recovered()
    for ref in range(order_log.FINISHED_KEPT + 2):
        state.apply([order_log.FINISHED, ref, "f"])
    state.apply([order_log.FINISHED, 2, "g"])  # written again: the newest now
    assert len(state.finished) == order_log.FINISHED_KEPT and 1 not in state.finished
    assert list(state.finished)[-1] == 2 and 0 not in state.finished
    state.apply([order_log.ORDER, 5, "o"])
    state.apply([order_log.GONE, 5])
    assert state.orders == {}
