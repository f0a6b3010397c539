"""The session core with ``defer_auth``: a Logon asks the shell to check the password and
waits; what arrives meanwhile is held, in order, and handled once the answer comes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import simplefix  # ships no type information

from procs.common.users import UserStore
from procs.gateway.fix import FixReader
from procs.gateway.session import Session
from procs.gateway.session_interface import SessionSettings, State
from procs.gateway.store import MessageStore
from tests.unit.gateway.harness import utc
from tests.unit.gateway.test_fuzz import App, message


def order() -> bytes:
    """A NewOrderSingle sent now (its SendingTime must be within the session's tolerance)."""
    return message(
        "D", 2, (11, "a"), (55, "BTC-USD"), (54, 1), (60, utc()), (38, "1"), (40, 2), (44, 1)
    )


STORES: list[MessageStore] = []


@pytest.fixture(autouse=True)
def _close_stores() -> object:
    yield
    while STORES:
        STORES.pop().close()


def session(tmp_path: Path, **settings: object) -> tuple[Session, App, UserStore]:
    users = UserStore(tmp_path / "users.json")
    users.add("ALICE", "pw", 7, n=1 << 4)
    app = App()
    cfg = SessionSettings(comp_id="RINGEX", defer_auth=True, **settings)  # type: ignore[arg-type]
    stores: dict[str, MessageStore] = {}

    def store(comp: str) -> MessageStore:
        if comp not in stores:
            stores[comp] = MessageStore(tmp_path / comp)
            STORES.append(stores[comp])
        return stores[comp]

    return Session(cfg, users, store, app, {}, time.time_ns()), app, users


def replies(s: Session) -> list[bytes]:
    reader = FixReader(1 << 16)
    reader.feed(b"".join(s.take_output()))
    return [m.msg_type for m in reader.messages()]  # type: ignore[union-attr]


def test_a_logon_waits_for_the_check_and_what_followed_it_is_handled_after(
    tmp_path: Path,
) -> None:
    s, app, users = session(tmp_path)
    logon = message("A", 1, (98, 0), (108, 30), (554, "pw"))
    s.data_received(logon + order(), time.time_ns())
    assert s.verify_request == ("ALICE", "pw")
    assert s.state is State.AUTHENTICATING and not s.take_output() and not app.messages
    s.verify_request = None
    s.authenticated(users.verify("ALICE", "pw"), time.time_ns())
    assert s.state.value == "active"
    assert replies(s) == [b"A"]
    assert [m.get(11) for m in app.messages] == [b"a"]


def test_a_bad_password_refuses_the_logon_and_drops_what_was_held(tmp_path: Path) -> None:
    s, app, users = session(tmp_path)
    s.data_received(message("A", 1, (98, 0), (108, 30), (554, "nope")) + order(), time.time_ns())
    assert s.verify_request is not None
    s.authenticated(users.verify(*s.verify_request), time.time_ns())
    assert s.closed and "bad password" in s.close_reason
    assert replies(s) == [b"5"] and not app.messages


def test_cheap_checks_come_first_and_the_logon_timeout_still_applies(tmp_path: Path) -> None:
    s, _, _ = session(tmp_path)
    m = simplefix.FixMessage()
    for tag, value in ((8, "FIX.4.4"), (35, "A"), (49, "ALICE"), (56, "OTHER"), (34, 1)):
        m.append_pair(tag, value, header=True)
    m.append_pair(52, utc(), header=True)
    for tag, value in ((98, 0), (108, 30), (554, "pw")):
        m.append_pair(tag, value)
    wrong = bytes(m.encode())
    s.data_received(wrong, time.time_ns())
    assert s.verify_request is None and s.closed  # no scrypt for a Logon refused anyway

    slow, _, _ = session(tmp_path, logon_timeout_s=1.0)
    slow.data_received(message("A", 1, (98, 0), (108, 30), (554, "pw")), time.time_ns())
    assert slow.state is State.AUTHENTICATING
    slow.on_timer(time.time_ns() + 2_000_000_000)
    assert slow.closed and "no Logon within" in slow.close_reason
    slow.authenticated(None, time.time_ns())  # the answer after the close changes nothing
    assert slow.closed
