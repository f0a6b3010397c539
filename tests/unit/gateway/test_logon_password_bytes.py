"""A Logon's Password (554) is read as the user store hashes it: UTF-8 where its bytes are
UTF-8 (as ``ringex admin add-user`` took the password from its command line), Latin-1 where
they are not (a client that sends one byte a character). Before, it was read as Latin-1
only, so a user whose password is not ASCII could not log on with its UTF-8 bytes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from procs.common.users import UserStore
from procs.gateway.session import Session
from procs.gateway.session_interface import SessionSettings, State
from procs.gateway.store import MessageStore
from tests.unit.gateway.test_deferred_logon import replies
from tests.unit.gateway.test_fuzz import App, message


@pytest.mark.parametrize(
    ("password", "sent", "logged_on"),
    [
        ("pässwörd-€", "pässwörd-€".encode(), True),  # UTF-8
        ("pässwörd", "pässwörd".encode("latin-1"), True),  # one byte a character
        ("pässwörd-€", "pässwörd-€".encode("utf-16-le"), False),  # other bytes: no
    ],
    ids=["utf-8", "latin-1", "other"],
)
def test_a_password_that_is_not_ascii_logs_on_from_its_bytes(
    tmp_path: Path, password: str, sent: bytes, logged_on: bool
) -> None:
    users = UserStore(tmp_path / "users.json")
    users.add("ALICE", password, 7, n=1 << 4)
    stores: list[MessageStore] = []

    def store(comp: str) -> MessageStore:
        stores.append(MessageStore(tmp_path / comp))
        return stores[-1]

    session = Session(SessionSettings(comp_id="RINGEX"), users, store, App(), {}, time.time_ns())
    try:
        session.data_received(message("A", 1, (98, 0), (108, 30), (554, sent)), time.time_ns())
        assert (session.state == State.ACTIVE) is logged_on, session.state
        assert replies(session)[:1] == ([b"A"] if logged_on else [b"5"])
    finally:
        for s in stores:
            s.close()
