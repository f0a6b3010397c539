"""Random bytes and mutated valid messages never crash the session core (sans-I/O)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import simplefix  # ships no type information
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procs.common.users import UserStore
from procs.gateway.fix import FixMessage
from procs.gateway.session import Session
from procs.gateway.session_interface import SessionSettings
from procs.gateway.store import MessageStore
from tests.unit.gateway.harness import utc


class App:
    def __init__(self) -> None:
        self.messages: list[FixMessage] = []

    def on_logon(self, session: Session, now_ns: int) -> None:
        pass

    def on_message(self, session: Session, msg: FixMessage, now_ns: int) -> None:
        self.messages.append(msg)

    def on_disconnect(self, session: Session, now_ns: int) -> None:
        pass


def message(msg_type: str, seq: int, *pairs: tuple[int, object]) -> bytes:
    m = simplefix.FixMessage()
    m.append_pair(8, "FIX.4.4", header=True)
    m.append_pair(35, msg_type, header=True)
    m.append_pair(49, "ALICE", header=True)
    m.append_pair(56, "RINGEX", header=True)
    m.append_pair(34, seq, header=True)
    m.append_pair(52, utc(), header=True)
    for tag, value in pairs:
        m.append_pair(tag, value)
    return bytes(m.encode())


VALID = [
    message("A", 1, (98, 0), (108, 30), (554, "pw")),
    message("1", 2, (112, "t")),
    message("D", 3, (11, "a"), (55, "BTC-USD"), (54, 1), (60, utc()), (38, "1"), (40, 2), (44, 1)),
    message("2", 4, (7, 1), (16, 0)),
    message("4", 5, (123, "Y"), (36, 9)),
    message("F", 9, (41, "a"), (11, "b"), (55, "BTC-USD"), (54, 1), (60, utc())),
    message("5", 10),
]

STORES: dict[str, MessageStore] = {}
_DIR = Path(tempfile.mkdtemp(prefix="ringex-fuzz-"))
_USERS = UserStore(_DIR / "users.json")
_USERS.add("ALICE", "pw", 7, n=1 << 4)


def fresh_session() -> Session:
    stores: dict[str, MessageStore] = STORES
    root = Path(tempfile.mkdtemp(dir=_DIR))

    def store(comp: str) -> MessageStore:
        if comp not in stores:
            stores[comp] = MessageStore(root / comp)
        return stores[comp]

    settings_ = SessionSettings(comp_id="RINGEX", max_message_bytes=1024)
    return Session(settings_, _USERS, store, App(), {}, time.time_ns())


def feed(session: Session, chunks: list[bytes]) -> None:
    now = time.time_ns()
    try:
        for chunk in chunks:
            session.data_received(chunk, now)
            session.on_timer(now)
            out = session.take_output()
            assert all(raw.startswith(b"8=FIX.4.4\x01") for raw in out)
    finally:
        while STORES:
            STORES.popitem()[1].close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_random_bytes(chunks: list[bytes]) -> None:
    feed(fresh_session(), [VALID[0], *chunks])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_messages(data: st.DataObject) -> None:
    stream = bytearray(b"".join(VALID))
    for _ in range(data.draw(st.integers(0, 6))):
        kind = data.draw(st.sampled_from(["flip", "delete", "insert", "soh"]))
        at = data.draw(st.integers(0, len(stream) - 1))
        if kind == "flip":
            stream[at] = data.draw(st.integers(0, 255))
        elif kind == "delete":
            del stream[at : at + data.draw(st.integers(1, 20))]
        elif kind == "insert":
            stream[at:at] = data.draw(st.binary(min_size=1, max_size=20))
        else:
            stream[at:at] = b"\x01"
        if not stream:
            break
    cut = data.draw(st.integers(0, len(stream)))
    feed(fresh_session(), [bytes(stream[:cut]), bytes(stream[cut:])])
