"""A hostile review of the late changes (1af9f28..HEAD): each test shows one bug the changes
introduced; each fails on the code it was written against."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from procs.common.snapshots import MAGIC, SnapshotStore
from procs.common.users import UserStore
from procs.gateway.fix import FixMessage
from procs.gateway.live_sessions import LiveSessions
from procs.gateway.session import Session
from procs.gateway.session_interface import SessionSettings
from procs.gateway.store import MessageStore

_S = 1_000_000_000


def _framed(body: str) -> bytes:
    raw = body.replace("|", "\x01").encode("latin-1")
    head = f"8=FIX.4.4\x019={len(raw)}\x01".encode()
    return head + raw + b"10=%03d\x01" % (sum(head + raw) % 256)


def _stamp(ns: int) -> str:
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(ns // _S)) + ".000"


class _App:
    def on_logon(self, session: Session, now_ns: int) -> None:
        pass

    def on_message(self, session: Session, msg: FixMessage, now_ns: int) -> None:
        pass

    def on_disconnect(self, session: Session, now_ns: int) -> None:
        pass


def test_snapshot_with_rotted_magic_is_taken_unchecked(tmp_path: Path) -> None:
    """snapshots.py _body: a file whose first bytes (the ``RXS1`` prefix) rot is taken as an
    "older file, without a check", so rot there is never caught: ``latest`` returns the
    damaged file's bytes (prefix and CRC included) instead of passing over it for the
    snapshot before it. Expected (1, b"older"); actual (2, b"RXS0....newer")."""
    store = SnapshotStore(tmp_path)
    store.save(1, b"older")
    path = store.save(2, b"newer")
    raw = bytearray(path.read_bytes())
    assert raw.startswith(MAGIC)
    raw[3] ^= 0x01  # one bit of the prefix
    path.write_bytes(bytes(raw))
    assert store.latest() == (1, b"older")


def test_snapshot_cut_shorter_than_its_prefix_is_taken(tmp_path: Path) -> None:
    """snapshots.py _body: a copy cut short to fewer bytes than ``RXS1`` (or to nothing) does
    not start with the prefix, so it is taken as an unchecked older file: ``latest`` returns
    (2, b"RX") instead of passing over it. Expected (1, b"older"); actual (2, b"RX")."""
    store = SnapshotStore(tmp_path)
    store.save(1, b"older")
    path = store.save(2, b"newer")
    path.write_bytes(path.read_bytes()[:2])
    assert store.latest() == (1, b"older")


def test_session_lock_leaks_when_logon_fails_after_claim(tmp_path: Path) -> None:
    """session.py _finish_logon: the instance-wide lock is claimed before the message store
    is opened; if ``stores(sender)`` (or ``store.reset``) raises, the session never enters
    ``live`` and ``_close`` releases nothing, so the flock stays held by this gateway for
    its whole life: no gateway of the instance can log ALICE on. Expected: after the
    connection is lost, another gateway can claim ALICE; actual: claim() is False."""
    users = UserStore(tmp_path / "users.json")
    users.add("ALICE", "pw", 7, n=1 << 4)

    def stores(comp: str) -> MessageStore:
        raise OSError("the session store does not open")

    live = LiveSessions(tmp_path / "logged-on")
    now = time.time_ns()
    session = Session(SessionSettings(comp_id="RINGEX"), users, stores, _App(), live, now)
    logon = _framed(f"35=A|49=ALICE|56=RINGEX|34=1|52={_stamp(now)}|98=0|108=30|554=pw|")
    with contextlib.suppress(OSError):
        session.data_received(logon, now)
    session.connection_lost(now)
    other = LiveSessions(tmp_path / "logged-on")
    try:
        assert other.claim("ALICE")
    finally:
        other.release_all()
        live.release_all()
