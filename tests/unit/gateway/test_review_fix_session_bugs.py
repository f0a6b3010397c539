"""A hostile review of the FIX 4.4 session layer (session.py, fix.py, dictionary.py, logon.py)
against the FIX 4.4 session rules as QuickFIX implements them. Each test drives the sans-I/O
session core with hand-framed bytes (an encoder independent of the gateway's); each failed on
the code it was written against, and passes since its fix."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.common.users import UserStore
from procs.gateway.fix import FixMessage, FixReader
from procs.gateway.session import Session
from procs.gateway.session_interface import SessionSettings, State
from procs.gateway.store import MessageStore

_S = 1_000_000_000


def stamp(ns: int) -> str:
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(ns // _S)) + f".{ns // 10**6 % 1000:03d}"


def framed(body: str, begin: str = "FIX.4.4") -> bytes:
    """``body`` (``tag=value|`` fields after BodyLength, ``|`` for SOH) as a framed message,
    its BodyLength and CheckSum computed here, not by the gateway's codec."""
    raw_body = body.replace("|", "\x01").encode("latin-1")
    head = f"8={begin}\x019={len(raw_body)}\x01".encode()
    return head + raw_body + b"10=%03d\x01" % (sum(head + raw_body) % 256)


def msg(
    msg_type: str,
    seq: int,
    *pairs: tuple[int, object],
    now_ns: int,
    sender: str = "ALICE",
    target: str = "RINGEX",
    begin: str = "FIX.4.4",
) -> bytes:
    body = f"35={msg_type}|49={sender}|56={target}|34={seq}|52={stamp(now_ns)}|"
    body += "".join(f"{t}={v}|" for t, v in pairs)
    return framed(body, begin)


class App:
    def __init__(self) -> None:
        self.messages: list[FixMessage] = []
        self.disconnects = 0

    def on_logon(self, session: Session, now_ns: int) -> None:
        pass

    def on_message(self, session: Session, msg: FixMessage, now_ns: int) -> None:
        self.messages.append(msg)

    def on_disconnect(self, session: Session, now_ns: int) -> None:
        self.disconnects += 1


_STORES: list[MessageStore] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while _STORES:
        _STORES.pop().close()


def make(tmp_path: Path, now_ns: int) -> tuple[Session, App]:
    users = UserStore(tmp_path / "users.json")
    users.add("ALICE", "pw", 7, n=1 << 4)
    stores: dict[str, MessageStore] = {}

    def store(comp: str) -> MessageStore:
        if comp not in stores:
            stores[comp] = MessageStore(tmp_path / "sessions" / comp)
            _STORES.append(stores[comp])
        return stores[comp]

    app = App()
    session = Session(SessionSettings(comp_id="RINGEX"), users, store, app, {}, now_ns)
    return session, app


def replies(s: Session) -> list[FixMessage]:
    reader = FixReader(1 << 20)
    reader.feed(b"".join(s.take_output()))
    out = reader.messages()
    assert all(isinstance(m, FixMessage) for m in out)
    return out  # type: ignore[return-value]


def logged_on(tmp_path: Path, now_ns: int, hb: int = 30) -> tuple[Session, App]:
    s, app = make(tmp_path, now_ns)
    s.data_received(msg("A", 1, (98, 0), (108, hb), (554, "pw"), now_ns=now_ns), now_ns)
    assert [m.msg_type for m in replies(s)] == [b"A"] and s.state is State.ACTIVE
    return s, app


def order(seq: int, now_ns: int, *extra: tuple[int, object]) -> bytes:
    return msg(
        "D",
        seq,
        (11, f"c{seq}"),
        (55, "BTC-USD"),
        (54, 1),
        (60, stamp(now_ns)),
        (38, "1"),
        (40, 2),
        (44, "100"),
        *extra,
        now_ns=now_ns,
    )


# -- garbled messages ---------------------------------------------------------------------------


def test_msgtype_not_the_third_field_is_garbled_ignored_and_consumes_no_seq(
    tmp_path: Path,
) -> None:
    now = time.time_ns()
    s, _ = logged_on(tmp_path, now)
    # FIX 4.4 Vol 2 (what constitutes a garbled message): MsgType(35) is not the third tag.
    # QuickFIX: InvalidMessage("Header fields out of order") -> ignored while logged on.
    s.data_received(framed(f"49=ALICE|35=1|56=RINGEX|34=2|52={stamp(now)}|112=x|"), now)
    assert replies(s) == []  # nothing: neither a Reject nor a Heartbeat
    s.data_received(msg("1", 2, (112, "again"), now_ns=now), now)  # seq 2 is still expected
    answer = replies(s)
    assert [(m.msg_type, m.get(112)) for m in answer] == [(b"0", b"again")]
    assert s.state is State.ACTIVE


def test_a_message_with_an_incorrect_begin_string_gets_a_logout(tmp_path: Path) -> None:
    now = time.time_ns()
    s, _ = logged_on(tmp_path, now)
    # FIX 4.4 Vol 2 / QuickFIX (UnsupportedVersion): BeginString not as expected -> Logout
    # ("Incorrect BeginString") and disconnect.
    s.data_received(msg("1", 2, (112, "x"), now_ns=now, begin="FIX.4.2"), now)
    out = replies(s)
    assert [m.msg_type for m in out] == [b"5"]
    assert s.closed


# -- logon ----------------------------------------------------------------------------------


def test_a_logon_with_sending_time_outside_the_tolerance_is_refused(tmp_path: Path) -> None:
    now = time.time_ns()
    s, _ = make(tmp_path, now)
    an_hour_ago = now - 3600 * _S
    s.data_received(msg("A", 1, (98, 0), (108, 30), (554, "pw"), now_ns=an_hour_ago), now)
    # QuickFIX nextLogon -> verify -> isGoodTime fails -> Reject(10) and Logout
    assert b"A" not in [m.msg_type for m in replies(s)]
    assert s.state is not State.ACTIVE


def test_a_logon_with_reset_seq_num_flag_while_logged_on_resets_the_sequences(
    tmp_path: Path,
) -> None:
    now = time.time_ns()
    s, _ = logged_on(tmp_path, now)
    s.data_received(msg("1", 2, (112, "a"), now_ns=now), now)
    assert [m.msg_type for m in replies(s)] == [b"0"]
    # FIX 4.4 Vol 2: ResetSeqNumFlag may reset both sides' sequences during a session;
    # QuickFIX (nextLogon, receivedReset) resets and answers a Logon with 141=Y.
    s.data_received(msg("A", 1, (98, 0), (108, 30), (141, "Y"), (554, "pw"), now_ns=now), now)
    out = replies(s)
    assert [(m.msg_type, m.get(34), m.get(141)) for m in out] == [(b"A", b"1", b"Y")]
    assert s.state is State.ACTIVE and s.store is not None and s.store.next_in == 2


# -- in session -------------------------------------------------------------------------------


def test_a_wrong_target_comp_id_is_rejected_naming_tag_56(tmp_path: Path) -> None:
    now = time.time_ns()
    s, _ = logged_on(tmp_path, now)
    s.data_received(msg("1", 2, (112, "x"), now_ns=now, target="ELSEWHERE"), now)
    out = replies(s)
    assert [m.msg_type for m in out] == [b"3", b"5"]
    assert out[0].get(373) == b"9"
    assert out[0].get(371) in (None, b"56")  # the tag at fault, or none (as QuickFIX)


def test_begin_string_repeated_inside_the_header_is_rejected(tmp_path: Path) -> None:
    now = time.time_ns()
    s, _ = logged_on(tmp_path, now)
    s.data_received(framed(f"35=1|8=FIX.4.4|49=ALICE|56=RINGEX|34=2|52={stamp(now)}|112=x|"), now)
    out = replies(s)
    assert [m.msg_type for m in out] == [b"3"]
    assert out[0].get(371) == b"8" and out[0].get(373) in (b"13", b"14")


def test_group_entries_past_the_group_end_are_rejected(tmp_path: Path) -> None:
    now = time.time_ns()
    s, app = logged_on(tmp_path, now)
    s.data_received(
        order(2, now, (453, 1), (448, "A"), (447, "D"), (452, 3), (58, "x"), (448, "B")), now
    )
    out = replies(s)
    assert not app.messages  # never executed
    assert [m.msg_type for m in out] == [b"3"]


# -- heartbeats and test requests ---------------------------------------------------------------


def test_traffic_after_a_test_request_keeps_the_session_up(tmp_path: Path) -> None:
    t0 = time.time_ns()
    s, _ = logged_on(tmp_path, t0, hb=30)
    s.on_timer(t0 + 37 * _S)  # silent for 1.2 x HeartBtInt: a TestRequest goes out
    assert [m.msg_type for m in replies(s)] == [b"1"]
    # the client's own timer heartbeat (no TestReqID) crossed it; then it keeps sending
    s.data_received(msg("0", 2, now_ns=t0 + 38 * _S), t0 + 38 * _S)
    s.data_received(msg("1", 3, (112, "mine"), now_ns=t0 + 60 * _S), t0 + 60 * _S)
    replies(s)
    # QuickFIX: verify() resets the test request count on every message; timeout is 2.4 x
    # HeartBtInt since the last message received (here 8 s ago), so the session stays up.
    s.on_timer(t0 + 68 * _S)
    assert not s.closed, s.close_reason


# -- cancel on disconnect -----------------------------------------------------------------------


def test_a_session_closed_for_an_unanswered_test_request_gets_on_disconnect(
    tmp_path: Path,
) -> None:
    t0 = time.time_ns()
    s, app = logged_on(tmp_path, t0, hb=30)
    s.on_timer(t0 + 37 * _S)  # TestRequest
    s.on_timer(t0 + 80 * _S)  # no answer: the session gives up
    assert s.closed and "TestRequest" in s.close_reason
    s.connection_lost(t0 + 80 * _S)  # the shell closes the socket; it reports the loss
    assert app.disconnects == 1


def test_a_session_ended_by_logout_gets_on_disconnect(tmp_path: Path) -> None:
    now = time.time_ns()
    s, app = logged_on(tmp_path, now)
    s.data_received(msg("5", 2, now_ns=now), now)
    assert [m.msg_type for m in replies(s)] == [b"5"] and s.closed
    s.connection_lost(now)
    assert app.disconnects == 1
