"""Review 112: README.md's ``gateway`` row of "## The processes" held against the code,
mechanically. This file: the session layer and dictionary (SessionRejectReason 0, 1, 2, 3, 5, 9,
10, 15, 16; 40-character numbers, 2^63-1; data fields, third-party routing, groups, 464=Y), the
connection (256 KiB, 4 MiB, two heartbeat intervals, 64 KiB before a Logon, 1 KiB of junk), the
inbound and per-address limits, ResendRequests (256 a chunk, 1,000 waiting), file modes (0600),
the audit log. ``..._fix2.py``: order entry, ``logged-on/``, ``orders.log``, the ClOrdID windows.

Convention: each test anchors its claim with ``claim("a verbatim README phrase")`` and checks it
against a constant, a config default or a pure part of the gateway run in-process (the sans-I/O
``Session`` of ``test_review4_fix_bugs``, a ``Connection`` over a stand-in transport); a
disagreement is a strict xfail asserting what the README says.

Disagreement found, fixed on the README side: it said "a tag it does not define is 373=0, one of
the user-defined range 5000-9999 373=3", but ``dictionary.first_fault`` answers 373=3 for every
undefined tag from 5000 up, 10000 and 20000 included (QuickFIX too takes 5000 and up as
user-defined); the README says so now.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import stat
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from config.edges import GatewayConfig
from procs.common import durable, quiet_log
from procs.common.users import UserStore
from procs.gateway import audit, connection, dictionary, gap_recovery, inbound_limits
from procs.gateway.audit import JUNK_BEFORE_LOGON, AuditLog, JunkCap
from procs.gateway.clordids import Generations, SeenLog
from procs.gateway.connection import Connection, peer_address
from procs.gateway.dictionary import RejectReason
from procs.gateway.fix import FixMessage, FixReader, Garbled
from procs.gateway.fix_groups import INCORRECT_COUNT, OUT_OF_ORDER
from procs.gateway.inbound_limits import InboundLimits
from procs.gateway.order_log import OrderLog
from procs.gateway.session import Session
from procs.gateway.session_interface import SessionSettings, State
from procs.gateway.store import MessageStore
from shm.errors import ShmError
from shm.wait import own
from tests.readme_text import claim
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

_S = 1_000_000_000
ROOT = Path(__file__).parents[3]


def source(module: str) -> str:
    """The text of ``procs/<module>.py`` (``gateway/server`` say)."""
    return (ROOT / "procs" / f"{module}.py").read_text()


NOW = time.time_ns()
_D = ((11, "r112"), (55, "BTC-USD"), (54, 1), (60, stamp(NOW)), (38, "1"), (40, 2), (44, "100"))


def parsed(raw: bytes) -> FixMessage:
    reader = FixReader(1 << 20)
    reader.feed(raw)
    (m,) = reader.messages()
    assert isinstance(m, FixMessage), m
    return m


def fault(*pairs: tuple[int, object], kind: str = "D", header: str = "") -> dictionary.Fault:
    """The dictionary's verdict on ALICE's message ``kind`` (an order by default)."""
    found = dictionary.validate(parsed(msg(kind, 2, *pairs, now_ns=NOW, header=header)))
    assert found is not None
    return found


def shown(s: Session) -> list[tuple[bytes, bytes | None, bytes | None, bytes | None]]:
    return [(m.msg_type, m.get(373), m.get(371), m.get(58)) for m in replies(s)]


# -- the acceptor ----------------------------------------------------------------------------


def test_fix44_acceptor_on_uvloop_with_scrypt_users() -> None:
    """README: "FIX 4.4 acceptor on uvloop: scrypt-hashed users" and "validation against the
    whole FIX 4.4 dictionary": fix.py, main.py's ``uvloop.run``, ``hashlib.scrypt``, fix44.json."""
    claim("FIX 4.4 acceptor on uvloop: scrypt-hashed users")
    assert b"FIX.4.4" in source("gateway/fix").encode()
    assert "uvloop.run(" in source("gateway/main")
    assert "hashlib.scrypt(" in source("common/users")
    claim("validation against the whole FIX 4.4 dictionary (QuickFIX's `FIX44.xml`")
    assert "fix44.json" in source("gateway/dictionary")  # written from FIX44.xml
    assert dictionary.FIELDS[110][0] == "MinQty" and dictionary.FIELDS[864][0] == "NoEvents"


# -- SessionRejectReason ---------------------------------------------------------------------


def test_reject_reason_numbers_are_fix44s() -> None:
    """README names SessionRejectReason 0, 1, 2, 3, 5, 9, 10, 15, 16 for the faults it gives:
    ``RejectReason`` and fix_groups.py's constants hold FIX 4.4's numbers."""
    claim("with SessionRejectReason (numbers up to 40 characters")
    named = {
        RejectReason.INVALID_TAG_NUMBER: 0, RejectReason.REQUIRED_TAG_MISSING: 1,
        RejectReason.TAG_NOT_DEFINED_FOR_MESSAGE: 2, RejectReason.UNDEFINED_TAG: 3,
        RejectReason.VALUE_OUT_OF_RANGE: 5, RejectReason.COMPID_PROBLEM: 9,
        RejectReason.SENDING_TIME_ACCURACY: 10, RejectReason.GROUP_FIELDS_OUT_OF_ORDER: 15,
        RejectReason.INCORRECT_NUMINGROUP: 16,
    }  # fmt: skip
    assert {int(k): v for k, v in named.items()} == {v: v for v in named.values()}
    assert (OUT_OF_ORDER, INCORRECT_COUNT) == (15, 16)


@pytest.mark.parametrize(("tag", "length"), [(355, 354), (96, 95), (213, 212)])
def test_data_fields_are_refused_373_2_saying_so(tag: int, length: int) -> None:
    """README: "the data fields ... EncodedText 355, RawData 96, XmlData 213 and the like:
    they are refused 373=2 saying so". ``dictionary.DATA_FIELDS`` and ``first_fault``."""
    claim("EncodedText 355, RawData 96, XmlData 213 and the like: they are refused 373=2 saying so")
    assert {tag, length} <= dictionary.DATA_FIELDS
    for pairs in (((tag, "abc"),), ((length, 3), (tag, "abc"))):
        found = fault(*_D, *pairs)
        assert found.reason == 2 and "a data field" in found.text


@pytest.mark.parametrize("tag", [115, 128, 116, 129, 144, 145])
def test_third_party_routing_is_refused_373_2(tag: int) -> None:
    """README: "as are OnBehalfOfCompID 115, DeliverToCompID 128 and their sub and location
    ids on any message". ``dictionary.THIRD_PARTY``; a Heartbeat and an order each refused."""
    claim("as are OnBehalfOfCompID 115, DeliverToCompID 128")
    assert tag in dictionary.THIRD_PARTY
    for kind, pairs in (("D", _D), ("0", ())):
        found = fault(*pairs, kind=kind, header=f"{tag}=X|")
        assert (found.reason, found.tag) == (2, tag) and "third party" in found.text


@pytest.mark.parametrize(
    "pairs",
    [
        ((453, 1), (448, "T1"), (447, "D"), (452, 12)),  # Parties
        ((454, 1), (455, "US0000000001"), (456, "4")),  # NoSecurityAltID
        ((78, 1), (79, "FUND-A"), (80, "1")),  # NoAllocs: a group, refused by order entry
    ],
    ids=["453", "454", "78"],
)
def test_an_orders_groups_are_taken_as_groups(pairs: tuple[tuple[int, object], ...]) -> None:
    """README: "every repeating group FIX 4.4 defines for a message ... is taken as a group
    ... its values ignored: ... an order's Parties and NoSecurityAltID". ``validate``."""
    claim("the header's NoHops (627) included, is taken as a group")
    claim("its values ignored: a Logon's NoMsgTypes, an order's Parties and NoSecurityAltID")
    assert dictionary.validate(parsed(msg("D", 2, *_D, *pairs, now_ns=NOW))) is None


def test_a_logons_nomsgtypes_and_the_headers_nohops_are_groups() -> None:
    """README: "the header's NoHops (627) included" and "a Logon's NoMsgTypes" (384):
    ``dictionary.HEADER_GROUPS`` and the Logon's groups."""
    claim("a Logon's NoMsgTypes")
    assert 627 in {g.count_tag for g in dictionary.HEADER_GROUPS}
    assert 384 in {g.count_tag for g in dictionary.MESSAGES[b"A"].groups}
    logon = msg("A", 1, (98, 0), (108, 30), (384, 1), (372, "D"), (385, "R"), now_ns=NOW)
    assert dictionary.validate(parsed(logon)) is None
    hop = msg("0", 2, now_ns=NOW, header=f"627=1|628=HUB|629={stamp(NOW)}|")
    assert dictionary.validate(parsed(hop)) is None


def test_group_members_out_of_order_373_15_and_a_wrong_count_373_16() -> None:
    """README: "an entry's members in the specified order, else 373=15; a count that does not
    match its entries 373=16". ``fix_groups.check_group`` through ``validate``."""
    claim("in the specified order, else 373=15; a count that does not match its entries 373=16")
    out_of_order = fault(*_D, (453, 1), (447, "D"), (448, "T1"), (452, 12))
    assert (out_of_order.reason, out_of_order.tag) == (15, 447)
    miscounted = fault(*_D, (453, 2), (448, "T1"), (447, "D"), (452, 12))
    assert (miscounted.reason, miscounted.tag) == (16, 453)


def test_a_logon_with_test_message_indicator_y_is_refused_373_5(tmp_path: Path) -> None:
    """README: "a Logon with TestMessageIndicator 464=Y is refused (373=5: this is no test
    session)". dictionary.py's 464 takes N only (VALUE_OUT_OF_RANGE, 5); session.py refuses
    the Logon (``logon.before_password``: a Logout naming the field, the connection closed)."""
    claim("a Logon with TestMessageIndicator 464=Y is refused (373=5: this is no test session)")
    logon = msg("A", 1, (98, 0), (108, 30), (464, "Y"), (554, "pw"), now_ns=NOW)
    found = dictionary.validate(parsed(logon))
    assert found is not None and (found.reason, found.tag) == (5, 464)
    users = UserStore(tmp_path / "users.json")
    users.add("ALICE", "pw", 7, n=1 << 4)

    def store(comp: str) -> MessageStore:
        _STORES.append(MessageStore(tmp_path / "sessions" / comp))
        return _STORES[-1]

    s = Session(SessionSettings(comp_id="RINGEX"), users, store, App(), {}, NOW)
    s.data_received(logon, NOW)
    (logout,) = shown(s)
    assert logout[0] == b"5" and b"TestMessageIndicator (464)" in (logout[3] or b"")
    assert s.state is State.CLOSED


@pytest.mark.parametrize("tag", [5000, 9999])
def test_an_undefined_tag_is_373_0_a_user_defined_one_373_3(tag: int) -> None:
    """README: "a tag it does not define is 373=0, one of the user-defined range 5000-9999
    373=3". ``first_fault`` and ``USER_DEFINED_FROM``: 4999 (undefined) is 0, ``tag`` 3."""
    claim("a tag it does not define is 373=0, one from 5000 up (the user-defined range and past")
    assert (fault(*_D, (4999, "x")).reason, fault(*_D, (4999, "x")).tag) == (0, 4999)
    assert dictionary.USER_DEFINED_FROM == 5000
    assert fault(*_D, (tag, "x")).reason == 3


@pytest.mark.parametrize("tag", [10000, 20000])
def test_an_undefined_tag_past_9999_is_373_3(tag: int) -> None:
    """README: "one from 5000 up (the user-defined range and past it) 373=3" (review 112: it
    said the user-defined range 5000-9999, but ``first_fault`` takes every undefined tag from
    ``USER_DEFINED_FROM`` up as user-defined, as QuickFIX does): 10000 and 20000 are 3."""
    claim("one from 5000 up (the user-defined range and past it) 373=3")
    assert fault(*_D, (tag, "x")).reason == 3


def test_numbers_up_to_40_characters() -> None:
    """README: "numbers up to 40 characters": ``MAX_NUMBER_CHARS``; a 41-character Price is
    373=5 naming the limit, a 40-character one is taken."""
    claim("numbers up to 40 characters")
    assert dictionary.MAX_NUMBER_CHARS == 40
    ok = msg("D", 2, *_D[:-1], (44, "1" * 40), now_ns=NOW)
    assert dictionary.validate(parsed(ok)) is None
    found = fault(*_D[:-1], (44, "1" * 41))
    assert (found.reason, found.tag) == (5, 44) and "more than 40" in found.text


def test_sequence_numbers_up_to_2_63_minus_1() -> None:
    """README: "sequence numbers up to 2^63-1": ``MAX_SEQNUM``; a BeginSeqNo of 2**63 is
    373=5, 2**63-1 taken."""
    claim("sequence numbers up to 2^63-1")
    assert dictionary.MAX_SEQNUM == 2**63 - 1
    assert dictionary.validate(parsed(msg("2", 2, (7, 2**63 - 1), (16, 0), now_ns=NOW))) is None
    assert fault((7, 2**63), (16, 0), kind="2").reason == 5


@pytest.mark.parametrize(
    ("raw", "reason", "tag"),
    [
        (lambda: framed(f"35=0|49=MALLORY|56=RINGEX|34=2|52={stamp(NOW)}|"), 9, 49),
        (lambda: msg("0", 2, now_ns=NOW - 200 * _S), 10, 52),
    ],
    ids=["compid", "sending-time"],
)
def test_a_wrong_compid_or_sending_time_is_rejected_then_logged_out_taking_its_seqnum(
    tmp_path: Path, raw: Any, reason: int, tag: int
) -> None:
    """README: "a message rejected for a wrong CompID or SendingTime, Reject 373=9/10 then
    Logout, takes its MsgSeqNum, so no resend brings it back". session.py
    ``_refuse_header``."""
    claim("Reject 373=9/10 then Logout, takes its MsgSeqNum, so no resend brings it back")
    s, _ = session(tmp_path, NOW)
    s.data_received(raw(), NOW)
    out = shown(s)
    assert [(m[0], m[1], m[2]) for m in out] == [
        (b"3", b"%d" % reason, b"%d" % tag),
        (b"5", None, None),
    ]
    assert s.state is State.CLOSED and s.store is not None and s.store.next_in == 3


@pytest.mark.parametrize("tag", [49, 56])
def test_a_message_without_a_compid_is_373_1_and_the_session_goes_on(
    tmp_path: Path, tag: int
) -> None:
    """README: "one without SenderCompID or TargetCompID is a Reject 373=1 naming the tag,
    and the session goes on". session.py ``_active`` leaves it to validation."""
    claim("is a Reject 373=1 naming the tag, and the session goes on")
    s, _ = session(tmp_path, NOW)
    header = {49: "56=RINGEX|", 56: "49=ALICE|"}[tag]
    s.data_received(framed(f"35=0|{header}34=2|52={stamp(NOW)}|"), NOW)
    assert [(m[0], m[1], m[2]) for m in shown(s)] == [(b"3", b"1", b"%d" % tag)]
    assert s.state is State.ACTIVE


def test_a_resend_request_of_ours_is_sent_again_after_a_heartbeat_interval(
    tmp_path: Path,
) -> None:
    """README: "a ResendRequest of the gateway's whose answer has not moved the gap on for a
    heartbeat interval since it went out ... is sent again when the next message past the gap
    comes". session.py ``_active``'s ``stale``: HeartBtInt 30 here."""
    claim("has not moved the gap on for a heartbeat interval since it went out")
    claim("is sent again when the next message past the gap comes")
    s, _ = session(tmp_path, NOW)
    kinds = []
    for seq, at in ((3, NOW), (4, NOW + _S), (5, NOW + 31 * _S)):
        s.data_received(msg("0", seq, now_ns=at), at)
        kinds.append([m[0] for m in shown(s)])
    assert kinds == [[b"2"], [], [b"2"]]


# -- inbound limits ----------------------------------------------------------------------------


def test_max_inbound_per_s_defaults_to_twice_max_messages_per_s() -> None:
    """README: "`max_inbound_per_s` ... twice `max_messages_per_s` by default". config
    edges.py: 0 means the default; server.py ``GatewayServer.__init__`` makes it twice."""
    claim("twice `max_messages_per_s` by default")
    gw = GatewayConfig(name="g", id=1)
    assert gw.max_inbound_per_s == 0 and gw.max_messages_per_s == 10_000
    text = source("gateway/server")
    assert "max_inbound_per_s=gw.max_inbound_per_s or 2 * gw.max_messages_per_s" in text


def test_every_message_counts_and_past_the_limit_a_logout_names_it(tmp_path: Path) -> None:
    """README: "every message a session sends counts against `max_inbound_per_s` (Heartbeats
    ...)" and "a session past either gets a Logout naming the limit and is disconnected".
    ``InboundLimits.read`` through the session, at a limit of 5."""
    claim("every message a session sends counts against `max_inbound_per_s`")
    claim("a session past either gets a Logout naming the limit and is disconnected")
    s, _ = session(tmp_path, NOW, max_inbound_per_s=5)
    s.data_received(b"".join(msg("0", k, now_ns=NOW) for k in range(2, 9)), NOW)
    (logout,) = shown(s)
    assert logout[0] == b"5" and b"the limit is 5/s" in (logout[3] or b"")
    assert s.state is State.CLOSED


def test_garbled_bytes_against_64_kib_a_second_or_two_of_the_largest_messages() -> None:
    """README: "garbled bytes ... against 64 KiB a second (or two of the largest messages)".
    inbound_limits.py ``MAX_JUNK_BYTES_PER_S`` and ``InboundLimits.junk_per_s``."""
    claim("against 64 KiB a second (or two of the largest messages)")
    assert inbound_limits.MAX_JUNK_BYTES_PER_S == 64 << 10
    assert InboundLimits(10, 8192, NOW).junk_per_s == 64 << 10
    assert InboundLimits(10, 40_000, NOW).junk_per_s == 80_000
    limits = InboundLimits(10, 8192, NOW)
    assert limits.garbled(64 << 10, NOW) is None
    assert "65536 bytes/s" in (limits.garbled(1, NOW) or "")


# -- the connection --------------------------------------------------------------------------


class _Transport:
    """A stand-in transport: what ``Connection`` asks of one."""

    def __init__(self, peer: object = ("127.0.0.1", 5000), buffered: int = 0) -> None:
        self.peer, self.buffered = peer, buffered
        self.limits: dict[str, int] = {}
        self.closed = self.aborted = False

    def get_extra_info(self, name: str) -> object:
        return self.peer if name == "peername" else None

    def set_write_buffer_limits(self, high: int) -> None:
        self.limits["high"] = high

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def writelines(self, out: list[bytes]) -> None:
        self.buffered += sum(map(len, out))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted


def _connection(transport: _Transport, **session: object) -> Connection:
    owner = SimpleNamespace(pacing=SimpleNamespace(paused=False), connection_made=lambda c: None)
    conn = Connection(cast(Any, owner))
    conn.transport = cast(asyncio.Transport, transport)
    conn.session = cast(Any, SimpleNamespace(**session))
    return conn


def test_input_is_no_longer_read_past_256_kib_unsent() -> None:
    """README: "a client that does not read its output is no longer read (past 256 KiB
    unsent)". connection.py ``WRITE_HIGH_BYTES``, the transport's high-water mark, whose
    ``pause_writing`` pauses reading."""
    claim("a client that does not read its output is no longer read (past 256 KiB unsent)")
    assert connection.WRITE_HIGH_BYTES == 256 << 10
    transport = _Transport()
    conn = Connection(cast(Any, SimpleNamespace(connection_made=lambda c: None)))
    conn.connection_made(cast(Any, transport))
    assert transport.limits == {"high": 256 << 10}
    assert "self.sync_reading()" in inspect.getsource(Connection.pause_writing)


def test_disconnected_past_4_mib_unsent_those_behind_a_resend_counted() -> None:
    """README: "is disconnected past 4 MiB" and "with what the session sends meanwhile
    waiting behind them and counted in the 4 MiB". ``Connection.write``."""
    claim("and is disconnected past 4 MiB")
    claim("with what the session sends meanwhile waiting behind them and counted in the 4 MiB")
    assert connection.MAX_UNSENT_BYTES == 4 << 20
    for buffered, behind, dropped in ((4 << 20, 0, False), (3 << 20, (1 << 20) + 1, True)):
        transport = _Transport(buffered=buffered)
        conn = _connection(
            transport, take_output=lambda *a: [], store=None, behind_bytes=behind,
            resending=False, closed=False, comp_id="ALICE",
        )  # fmt: skip
        conn.writing_paused = True
        conn.write()
        assert transport.aborted is dropped


def test_disconnected_once_its_unsent_output_stands_for_two_heartbeat_intervals() -> None:
    """README: "or once its unsent output has not shrunk for two of its heartbeat intervals".
    ``STALL_HEARTBEATS`` and ``Connection.check_stalled``, HeartBtInt 30."""
    claim("or once its unsent output has not shrunk for two of its heartbeat intervals")
    assert connection.STALL_HEARTBEATS == 2
    transport = _Transport(buffered=1 << 20)
    conn = _connection(transport, heartbeat_ns=30 * _S, comp_id="ALICE", store=None)
    conn.writing_paused = True
    conn.check_stalled(NOW)
    conn.check_stalled(NOW + 60 * _S)
    assert not transport.aborted
    conn.check_stalled(NOW + 60 * _S + 1)
    assert transport.aborted


def test_closed_once_it_sent_64_kib_without_a_logon_or_two_of_the_largest_messages() -> None:
    """README: "is closed once it has sent 64 KiB (or two of the largest messages) without
    one". ``MAX_BYTES_BEFORE_LOGON`` and ``Connection._closed_without_logon``."""
    claim("is closed once it has sent 64 KiB (or two of the largest messages) without one")
    assert connection.MAX_BYTES_BEFORE_LOGON == 64 << 10
    for largest, limit in ((8192, 64 << 10), (40_000, 80_000)):
        transport = _Transport()
        settings = SessionSettings(comp_id="RINGEX", max_message_bytes=largest)
        conn = _connection(transport, settings=settings)
        assert not conn._closed_without_logon(limit)
        assert not transport.closed
        assert conn._closed_without_logon(1) and transport.closed


def test_the_journal_keeps_the_first_kib_of_junk_and_a_note() -> None:
    """README: "the audit journal keeps the first 1 KiB of such junk and a note that the rest
    is not kept". audit.py ``JUNK_BEFORE_LOGON`` and ``JunkCap.cut``."""
    claim("keeps the first 1 KiB of such junk and a note that the rest is not kept")
    assert JUNK_BEFORE_LOGON == 1024
    cap = JunkCap()
    first = cap.cut(Garbled(b"x" * 1000, "junk"), State.AWAIT_LOGON)
    second = cap.cut(Garbled(b"y" * 1000, "junk"), State.AWAIT_LOGON)
    assert first == b"x" * 1000
    assert second is not None and second.startswith(b"y" * 24 + b" (")
    assert b"not journaled" in second
    assert cap.cut(Garbled(b"z" * 10, "junk"), State.AWAIT_LOGON) is None


def test_the_closes_log_line_is_one_of_a_few_a_minute() -> None:
    """README: "the close's log line is one of a few a minute". connection.py's
    ``peer_log`` carries a ``QuietFilter`` of 5 a 60 s period."""
    claim("the close's log line is one of a few a minute")
    (quiet,) = [f for f in connection.peer_log.filters if isinstance(f, quiet_log.QuietFilter)]
    assert (quiet.burst, quiet.period_s) == (5, 60.0)
    assert "peer_log.warning(" in inspect.getsource(Connection._closed_without_logon)


def test_pending_connections_per_address_default_to_half_of_max_sessions() -> None:
    """README: "one address ... holds at most `max_pending_per_address` connections that
    have not logged on (half of `max_sessions` by default". edges.py's defaults and
    connections.py ``connection_made``."""
    claim("(half of `max_sessions` by default")
    gw = GatewayConfig(name="g", id=1)
    assert gw.max_pending_per_address == 0 and gw.max_sessions == 1_000
    text = source("gateway/connections")
    assert "gw.max_pending_per_address or max(1, gw.max_sessions // 2)" in text


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        (("2001:db8:1:2:aaaa::1", 5000, 0, 0), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 5000, 0, 0), "2001:db8:1:2::/64"),
        (("10.0.0.7", 5000), "10.0.0.7"),
    ],
)
def test_an_ipv6_peer_is_its_slash_64(peer: tuple[object, ...], address: str) -> None:
    """README: "one address (an IPv6 peer's /64)". connection.py ``peer_address``."""
    claim("one address (an IPv6 peer's /64)")
    assert peer_address(cast(Any, _Transport(peer))) == address


def test_failed_logons_per_address_1_a_second_after_a_burst_of_20() -> None:
    """README: "`address_failed_logon_rate_per_s`, 1 a second after a burst of 20".
    edges.py's defaults, which connections.py's limiter takes."""
    claim("(`address_failed_logon_rate_per_s`, 1 a second after a burst of 20")
    gw = GatewayConfig(name="g", id=1)
    assert (gw.address_failed_logon_rate_per_s, gw.address_failed_logon_burst) == (1.0, 20)
    wanted = "RateLimiter(gw.address_failed_logon_rate_per_s, gw.address_failed_logon_burst)"
    assert wanted in source("gateway/connections")


# -- resends ---------------------------------------------------------------------------------


def test_a_resend_is_read_from_the_store_256_messages_at_a_time() -> None:
    """README: "read from the store 256 messages at a time". gap_recovery.py
    ``RESEND_CHUNK``, the span ``_resent_output`` reads at once."""
    claim("read from the store 256 messages at a time")
    assert gap_recovery.RESEND_CHUNK == 256
    assert "begin + RESEND_CHUNK - 1" in inspect.getsource(gap_recovery.GapRecovery)


def test_more_than_1000_resend_requests_waiting_get_a_logout(tmp_path: Path) -> None:
    """README: "more than 1,000 ResendRequests waiting for their answer get a Logout".
    ``MAX_RESENDS`` and ``GapRecovery._resend``: 1,001 in one read, none answered yet."""
    claim("more than 1,000 ResendRequests waiting for their answer get a Logout")
    assert gap_recovery.MAX_RESENDS == 1_000
    s, _ = session(tmp_path, NOW)
    s.data_received(b"".join(msg("2", k, (7, 1), (16, 0), now_ns=NOW) for k in range(2, 1002)), NOW)
    states = [s.state]
    s.data_received(msg("2", 1002, (7, 1), (16, 0), now_ns=NOW), NOW)
    assert [*states, s.state] == [State.ACTIVE, State.CLOSED]
    assert shown(s)[-1][::3] == (b"5", b"more than 1000 ResendRequests waiting for their answer")


# -- files ---------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_gateways_files_are_its_users_alone(tmp_path: Path) -> None:
    """README: "the gateway's files (the journal, snapshots, a session's store, the logs of
    orders and ids) are its user's alone (0600)" and the audit log's "(mode 0600". Each made
    under a umask of 022: ``AuditLog``, ``MessageStore``, ``OrderLog``, ``SeenLog``."""
    claim("the logs of orders and ids) are its user's alone (0600)")
    claim("an audit log of every message (mode 0600")
    assert durable.PRIVATE == 0o600
    old = os.umask(0o022)
    try:
        log = AuditLog(tmp_path / "audit.log")
        log.record(NOW, True, "ALICE", b"35=0\x01")
        log.close()
        store = MessageStore(tmp_path / "sessions" / "ALICE")
        store.close()
        orders = OrderLog(tmp_path / "orders.log", 4 << 20)
        orders.load()
        orders.compact(iter(()))  # a snapshot of the live orders, renamed over the log
        orders.close()
        for name in ("clordids.log", "api_ids.log"):
            seen = SeenLog(tmp_path / name)
            seen.load()
            seen.rewrite(Generations(4).content())
            seen.close()
    finally:
        os.umask(old)
    made = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in made} >= {"audit.log", "orders.log", "clordids.log", "seqnums"}
    assert {p: _mode(p) for p in made} == {p: 0o600 for p in made}


def test_the_audit_log_shows_passwords_as_stars(tmp_path: Path) -> None:
    """README: "one line a message whatever its values hold, passwords as `***`". audit.py
    ``shown``: 554 masked, SOH as |, a newline escaped."""
    claim("one line a message whatever its values hold, passwords as `***`")
    log = AuditLog(tmp_path / "audit.log")
    log.record(NOW, True, "ALICE", b"35=A\x01554=hunter2\x0158=two\nlines\x01")
    log.close()
    (line,) = (tmp_path / "audit.log").read_bytes().splitlines()
    assert b"554=***|" in line and b"hunter2" not in line and b"two\\nlines" in line
    assert audit.shown(b"554=a\x01925=b\x01") == b"554=***|925=***|"  # Password, NewPassword


def test_another_users_wake_up_file_refuses_the_start_naming_it(tmp_path: Path) -> None:
    """README: "a wake-up semaphore or FIFO in `/dev/shm` that another user made under a
    ring's name refuses the start, naming it". shm/wait.py ``own`` (on a file chowned to
    another uid: the machine runs these tests as root)."""
    claim("that another user made under a ring's name refuses the start, naming it")
    if os.geteuid() != 0:
        pytest.skip("needs root to make a file another user's")
    path = tmp_path / "fifo.ring"
    path.write_bytes(b"")
    os.chown(path, 54321, 54321)
    with pytest.raises(ShmError, match=str(path)):
        own(str(path))
