"""Review 171: threads sharing state (a thread or executor beside the event loop).

Race found, fixed: a FIX Logon's password check on an executor thread was taken as it
stood when it came back, the file not looked at again (the REST login's sibling was fixed
by review 163), so a password the operator changed, or a user removed, during the check
still logged on, and the orders sent behind the Logon were taken. ``done`` now asks the
users file again (``users.still_held``); the two tests say "Was (fixed)".

Checked and found correct:

* ``UserStore._locked`` clears its view (``_users = {}``) outside the ``_reading`` lock, so
  a ``get`` on another thread in between would see no users; but no store the gateway
  shares with a thread is ever written: the FIX password change writes through a
  ``UserStore`` of its own (user_requests.py:200, test below), the operator's changes come
  from another process. (Who makes the loop's store write must take ``_reading`` first.)
* ``UserStore.get`` reads ``self._users`` after ``_load`` let the lock go: a concurrent
  load replaces the dict whole (one store), so it answers from one view, the newer at most.
* The Logon check reads ``session.closed`` and the store only (connections.py:222-231); the
  failed-logins limiters are taken and refunded on the loop alone (``_verify``, ``done``),
  and ``done`` drops the answer for a connection closed or taken over meanwhile.
* The FIX password change's thread reads ``user`` (the session's, taken on the loop), the
  store's path, and writes its own store under the file's flock; ``done`` sets
  ``session.user`` only while it is still the one checked (a timer pass may have taken the
  file's since), on the loop.
* replica/source.py: ``_digest_cache`` (``_digests``) and ``_hashed`` (``_history_refusal``)
  are touched by one thread at a time, under ``_digesting`` and ``_hashing``; those locks
  are let go early only when the awaiting task is cancelled, which nothing does to a
  ``serve`` task (the source waits for them at its stop). ``_hashed`` is a tuple stored
  whole, and the History in it is only ever forked, never fed.
* ``HistoryChain._sound_key`` reads the keys file without the flock ``keep`` takes: ``keep``
  only appends whole records (data in before the size grows) and cuts only a damaged last
  record, so an unlocked read sees whole records or none; every record is CRC-checked and
  borne out by the journal, and a key dropped by a read that lost a race costs a rehash of
  one block, never a wrong hash. Each thread has a JournalReader of its own.
* Not re-read here (no time left in this review): supervisor/metrics.py, parent_death.py,
  journal_writer.py and the database writer's committer and lanes (reviews 26, 42, 50).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from procs.common.users import User, UserStore, password_matches
from procs.gateway.connections import GatewayConnections
from procs.gateway.limits import RateLimiter
from procs.gateway.session_interface import State
from procs.gateway.user_requests import UserRequests
from tests.unit.gateway.test_deferred_logon import order, session
from tests.unit.gateway.test_fuzz import message


class _Conn:
    """A connection as ``done`` sees it (hashable: ``_pending`` is keyed by it)."""

    def __init__(self, session: object) -> None:
        self.session = session


def _shell(users: UserStore, conn: object) -> Any:
    """The parts of ``GatewayConnections`` its ``_verify`` and ``done`` use."""
    shell: Any = SimpleNamespace(
        users=users,
        failed_logins=RateLimiter(10.0, 10),
        _failed_by_address=RateLimiter(10.0, 10),
        _pending={conn: "127.0.0.1"},
        live={},  # no session logged on (review 277: a right password for one counts)
        after_input=lambda conn: None,
    )
    shell._check_if_connected = lambda s, c, p: GatewayConnections._check_if_connected(
        shell, s, c, p
    )
    return shell


async def _logon_with_change(tmp_path: Path, change: str) -> tuple[list[object], State]:
    """A deferred Logon of ALICE plus an order; ``change`` ("password" or "remove") done by
    the operator (another store: another process) while the check is held on its thread."""
    s, app, users = session(tmp_path)
    s.data_received(message("A", 1, (98, 0), (108, 30), (554, "pw")) + order(), time.time_ns())
    assert s.verify_request == ("ALICE", "pw")
    conn = _Conn(s)
    shell = _shell(users, conn)
    checked, go = threading.Event(), threading.Event()
    verify = users.verify

    def held_verify(comp_id: str, password: str) -> User | None:
        user = verify(comp_id, password)  # the check passes on the file of now ...
        checked.set()
        go.wait(5)  # ... and its answer waits on the thread
        return user

    users.verify = held_verify  # type: ignore[method-assign]
    s.verify_request = None
    GatewayConnections._verify(shell, conn, s, "ALICE", "pw")  # type: ignore[arg-type]
    try:
        assert await asyncio.to_thread(checked.wait, 5)
        admin = UserStore(users.path)
        if change == "password":
            assert admin.set_password("ALICE", "new-Password-1234") is not None
        else:
            assert admin.remove("ALICE")
    finally:
        go.set()
    for _ in range(200):  # done runs on the loop once the executor's future is set
        await asyncio.sleep(0.01)
        if s.state is not State.AUTHENTICATING:
            break
    return list(app.messages), s.state


def test_a_password_changed_during_a_logon_check_does_not_log_on(tmp_path: Path) -> None:
    """Was (fixed: ``done`` asks the file again, ``users.still_held``). ``_verify``
    runs ``users.verify`` on an executor thread; the operator's ``ringex admin
    set-password`` (a new epoch: its sessions are to end) writes the file while scrypt
    runs; ``done`` then called ``session.authenticated`` with the user the thread read,
    never asking whether the file still gave it that password, and ``authenticated``
    dispatched at once what was held behind the Logon: an operator locking out a leaked
    password saw a Logon with it succeed and the orders pipelined behind it reach the
    exchange (the timer pass logged it out up to a second later).
    Shows: the check held on its thread (monkeypatched ``verify``) past the change; the
    session must not go ACTIVE, nor the App get the order."""
    taken, state = asyncio.run(_logon_with_change(tmp_path, "password"))
    assert state is not State.ACTIVE, "the old password logged on after it was changed"
    assert not taken, f"orders behind that Logon were taken: {taken}"


def test_a_user_removed_during_a_logon_check_does_not_log_on(tmp_path: Path) -> None:
    """Was (fixed, as above): as above with ``ringex admin remove-user``: the user the
    thread read logged on after the file dropped it, and its orders went in (under its
    account and a session id no longer any user's) until the next timer pass."""
    taken, state = asyncio.run(_logon_with_change(tmp_path, "remove"))
    assert state is not State.ACTIVE, "a removed user logged on"
    assert not taken, f"orders behind that Logon were taken: {taken}"


# -- checked and found correct ----------------------------------------------------------------


def test_a_logon_check_of_a_closed_connection_reads_nothing(tmp_path: Path) -> None:
    """``_check_if_connected`` (connections.py:222) costs no scrypt and no file read for a
    connection closed before its turn: the one attribute it reads is the loop's flag."""
    _, _, users = session(tmp_path)
    s: Any = SimpleNamespace(closed=True)  # (the one attribute it reads)
    users.verify = lambda *a: pytest.fail("checked")  # type: ignore[method-assign]
    assert GatewayConnections._check_if_connected(_shell(users, _Conn(s)), s, "ALICE", "pw") is None


def test_the_password_change_thread_never_writes_the_loops_store(tmp_path: Path) -> None:
    """``_change_if_right`` (user_requests.py:190-206), on an executor thread, writes
    through a store of its own (``_changes_store``: made once, read from where it stopped
    at the next change): the loop's view (its dict) is left as it was, and the loop reads
    the change on its next look, as any other."""
    _, _, users = session(tmp_path)
    user = users.get("ALICE")
    assert user is not None
    view, seen = users._users, dict(users._users)
    fake: Any = SimpleNamespace(users=users, _changes_store=UserStore(users.path))
    answer, stored = UserRequests._change_if_right(fake, user, "pw", "pw2-Longer-1234", False)
    assert stored is not None, answer
    assert fake._changes_store is not users
    assert users._users is view and view == seen
    now = users.get("ALICE")
    assert now is not None and password_matches(now, "pw2-Longer-1234")


def test_a_logon_check_of_an_unchanged_user_logs_on(tmp_path: Path) -> None:
    """The harness of the races above, with no change: the held check logs on and the order
    behind it is taken (so their failures are the change's, not the harness's)."""

    async def scenario() -> tuple[list[object], State]:
        s, app, users = session(tmp_path)
        logon = message("A", 1, (98, 0), (108, 30), (554, "pw"))
        s.data_received(logon + order(), time.time_ns())
        conn = _Conn(s)
        shell = _shell(users, conn)
        s.verify_request = None
        GatewayConnections._verify(shell, conn, s, "ALICE", "pw")  # type: ignore[arg-type]
        for _ in range(300):
            await asyncio.sleep(0.01)
            if s.state is not State.AUTHENTICATING:
                break
        return list(app.messages), s.state

    taken, state = asyncio.run(scenario())
    assert state is State.ACTIVE and len(taken) == 1
