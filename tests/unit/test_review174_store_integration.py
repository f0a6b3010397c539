"""Review 174: the users' and API keys' stores (snapshot + log of changes) as their callers use
them, each store in its own process as in production.

Review 173 (``test_review173_change_log.py``) took ``LoggedSnapshot`` apart in one process;
this one runs the callers' paths across processes (``multiprocessing``, fork: each store is
its own process's, sharing only the files).

Found correct (pinned by the passing tests):

- two gateways' ``ApiKeyStore.create(evict_oldest=True)`` for one user at
  ``max_keys_per_user``, at once: the limit holds, the keys left are the newest, and every
  ``revokedApiKey`` a process names (``evicted``) is a key that really went, each once;
- a key revoked by ``ringex admin revoke-key`` (``procs/admin/keys.py``, another process)
  stops verifying at the gateway's next ``get`` recheck (``recheck_s``) and at once through
  ``refresh`` (what ``PrivateStreams.sweep`` calls, ``procs/gateway/private_stream.py:147``);
- an operator's ``set-password`` / ``remove-user`` in another process is seen by the FIX
  session timer's check (``still_logged_on(users.get(...))``, ``procs/gateway/session.py:241``)
  and the REST login's re-check (``still_held``, ``procs/gateway/rest_keys.py:87``) at once;
- a reader looking users up continuously while another process adds users through many
  compactions never misses a user, and never sees the count go back;
- a store opened on files a crashed writer left with a torn tail loads, and a writer in
  another process cuts the tail and appends after it, which the first store follows;
- every file the stores make (both snapshots, both logs, both lock files) is 0600 under a
  0022 umask, after a compaction too, and no temp file is left.

Faults, both fixed (``ChangeMadeError``: the callers say the change is made; the tests say
"Was (fixed)"):

- ``procs/admin/users.py:201-204`` (``set_password``) takes any OSError from
  ``UserStore.set_password`` as "nothing written": but ``LoggedSnapshot.append``
  (``procs/common/change_log.py``, docstring of ``append``) raises OSError after a whole frame
  whose fsync failed, the change MADE (review 173). The operator is told "password not
  changed" (exit 1) while every gateway already takes the new password and logs the user's
  sessions out, and with ``--revoke-keys`` the keys are NOT revoked (it returns before
  ``revoke_user``): a password thought stolen is changed, its keys left working, and the
  operator told nothing happened. Same contract mismatch, not shown by a test here (leads):
  ``procs/admin/keys.py:63-70`` (revoke-key says "not revoked" for a revoked key),
``procs/gateway/rest_keys.py:59-62`` (an OSError from
  ``create`` is not caught: the key is made, maybe the user's oldest evicted, and the client
  gets a 500 with neither the secret nor ``revokedApiKey``).
- ``procs/gateway/user_requests.py:200-202`` (shown too): a FIX UserRequest whose change was
  made (fsync failed) is answered 926=6 "the password could not be changed".

Docs in procs/ that are now false (callers still describing whole-file rewrites):

- ``procs/gateway/user_requests.py:11``: "the users file rewritten under its lock"; it is a
  frame appended to ``users.log``.
- ``procs/admin/users.py:203``: "a full disk, say: the file stays as it was (written, then
  renamed)"; a change is appended, and an fsync failure leaves it made (the fault above).
- ``procs/gateway/rest_keys.py:89-91``: "read again only where the file changed: a fresh
  read of it whole, twice a login": a refresh reads what the log gained, not the file whole.
- ``procs/dbwriter/users.py:1-5``: mirrors "``users.json``" "whenever the file's content
  changes": the users are the snapshot plus ``users.log``; most changes touch only the log.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import stat
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec

import procs.admin.keys as admin_keys
import procs.admin.users as admin_users
from procs.common.apikeys import ApiKeyStore, KeysChange
from procs.common.change_log import MAGIC
from procs.common.crc_frames import frame, read_frames
from procs.common.users import User, UserStore, still_held, still_logged_on
from procs.gateway.user_requests import PASSWORD_CHANGED, UserRequests

_CTX = multiprocessing.get_context("fork")
_N = 1 << 4  # scrypt cost for the tests' users: fast


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # reported to the parent
        conn.send(("err", repr(exc)))
    finally:
        conn.close()


def _start(fn: Callable[..., Any], *args: Any) -> tuple[Any, Connection]:
    parent, child = _CTX.Pipe(duplex=False)
    proc = _CTX.Process(target=_child, args=(child, fn, args))
    proc.start()
    child.close()
    return proc, parent


def _finish(proc: Any, conn: Connection, timeout: float = 4.0) -> Any:
    assert conn.poll(timeout), "child did not answer in time"
    status, value = conn.recv()
    proc.join(timeout)
    assert status == "ok", value
    return value


def _run(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in another process (a store of its own); its result."""
    proc, conn = _start(fn, *args)
    return _finish(proc, conn)


def _user(tmp: Path, comp_id: str = "alice", account: int = 7) -> User:
    return UserStore(tmp / "users.json").add(comp_id, "pw-old", account, n=_N)


# -- two gateways at max_keys_per_user ------------------------------------------------------


def _make_keys(path: str, user: User, count: int, go: float) -> list[tuple[str, str | None]]:
    store = ApiKeyStore(Path(path), max_keys_per_user=3)
    while time.time() < go:
        pass
    made: list[tuple[str, str | None]] = []
    for _ in range(count):
        key = store.create(user, ["read"], evict_oldest=True)
        made.append((key.key, None if store.evicted is None else store.evicted.key))
    return made


def test_two_gateways_at_the_key_limit_hold_it_and_name_what_went(tmp_path: Path) -> None:
    user = _user(tmp_path)
    path = tmp_path / "apikeys.json"
    go = time.time() + 0.3
    runs = [_start(_make_keys, str(path), user, 15, go) for _ in range(2)]
    made = [pair for proc, conn in runs for pair in _finish(proc, conn)]
    final = ApiKeyStore(path, max_keys_per_user=3).keys_of("alice")
    created = {key for key, _ in made}
    evicted = [gone for _, gone in made if gone is not None]
    assert len(final) == 3  # the limit held
    assert len(evicted) == len(set(evicted)) == len(created) - 3  # each went once, named once
    assert set(evicted) == created - {k.key for k in final}  # named = really gone
    # the keys left are the newest made: every evicted key is older than each one left
    ages = {k.key: k.created_ms for k in final}
    assert len(set(ages.values())) == 3
    history = _run(_all_keys_ever, str(path))
    assert all(history[gone] < min(ages.values()) for gone in evicted)


def _all_keys_ever(path: str) -> dict[str, int]:
    """Every key ever made, from the log itself (the snapshot holds only those left)."""
    data = Path(path).with_suffix(".log").read_bytes()
    frames, _, _ = read_frames(data, len(MAGIC), 1 << 20)
    out: dict[str, int] = {}
    for _, body in frames[1:]:
        for key in msgspec.json.decode(body, type=KeysChange).put:
            out[key.key] = key.created_ms
    return out


# -- an operator's revoke-key, another process ----------------------------------------------


def _revoke_by_cli(path: str, key: str) -> tuple[int, str]:
    setattr(admin_keys, "apikeys_path", lambda cfg: Path(path))  # noqa: B010
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = admin_keys.revoke_key(None, argparse.Namespace(api_key=key))  # type: ignore[arg-type]
    return rc, out.getvalue()


def test_revoke_key_from_the_cli_stops_a_running_gateways_key(tmp_path: Path) -> None:
    user = _user(tmp_path)
    path = tmp_path / "apikeys.json"
    gateway = ApiKeyStore(path, recheck_s=0.3)
    key = gateway.create(user, ["read", "trade"])
    other = gateway.create(user, ["read"])
    stream_view = ApiKeyStore(path, recheck_s=60.0)  # only ``refresh`` makes it look
    assert stream_view.get(key.key) is not None
    rc, said = _run(_revoke_by_cli, str(path), key.key)
    assert rc == 0, said
    stream_view.refresh()  # what ``PrivateStreams.sweep`` does first: gone at once
    assert stream_view.get(key.key) is None
    assert stream_view.get(other.key) is not None
    deadline = time.monotonic() + 0.3 + 0.2
    while gateway.get(key.key) is not None:
        assert time.monotonic() < deadline, "still verifies past recheck_s"
        time.sleep(0.02)
    assert gateway.find(other.key) == other


# -- an operator's set-password / remove-user, seen by a running gateway --------------------


def _set_password(path: str, comp_id: str) -> None:
    assert UserStore(Path(path)).set_password(comp_id, "pw-new", n=_N) is not None


def _remove(path: str, comp_id: str) -> None:
    assert UserStore(Path(path)).remove(comp_id)


def test_operator_changes_reach_the_session_timer_and_rest_login(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    alice, bob = _user(tmp_path), _user(tmp_path, "bob", 8)
    gateway = UserStore(path)  # server.py's: looked at at every call
    view = UserStore(path, recheck_s=1.0)  # rest.py's view of a second ago
    assert still_logged_on(gateway.get("alice"), alice) is not None
    assert view.get("alice") is not None
    _run(_set_password, str(path), "alice")
    assert still_logged_on(gateway.get("alice"), alice) is None  # the timer logs it out
    assert still_held(gateway.get("alice"), alice) is None  # a login checked on the old: 401
    assert gateway.verify("alice", "pw-new") is not None
    assert gateway.verify("alice", "pw-old") is None
    _run(_remove, str(path), "bob")
    assert still_logged_on(gateway.get("bob"), bob) is None
    time.sleep(1.05)
    assert view.get("bob") is None  # the REST view within its second


# -- logins while another process compacts --------------------------------------------------


def _add_many(path: str, count: int) -> int:
    store = UserStore(Path(path), compact_min=8)
    for i in range(20):
        store.add(f"u{i:04d}", "pw", 1000 + i, n=_N)
    for i in range(count):  # changes past the users held: a compaction every ~22
        store.set_password(f"u{i % 20:04d}", f"pw{i}", n=_N)
    return int(json.loads(Path(path).read_bytes())["generation"])


def test_lookups_during_compactions_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    _user(tmp_path)
    reader = UserStore(path)
    proc, conn = _start(_add_many, str(path), 300)
    seen = 0
    while proc.is_alive() or not conn.poll(0):
        assert reader.get("alice") is not None  # never missing mid-compaction
        count = len(reader.users())
        assert count >= seen  # never set back
        seen = count
        if conn.poll(0):
            break
    generation = _finish(proc, conn)
    assert generation > 5  # many compactions happened meanwhile
    assert len(reader.users()) == 21
    assert reader.verify("u0019", "pw299") is not None


# -- a gateway started on a crashed writer's torn tail ---------------------------------------


def _crash_mid_append(path: str, user: User) -> str:
    store = ApiKeyStore(Path(path))
    kept = store.create(user, ["read"])
    torn = frame(b'{"put":[]}' * 20)[:-7]
    with open(store.log_path, "ab") as f:
        f.write(torn)
    return kept.key


def _create_one(path: str, user: User) -> str:
    return ApiKeyStore(Path(path)).create(user, ["trade"]).key


def test_gateway_starts_on_a_torn_tail_and_follows_the_next_writer(tmp_path: Path) -> None:
    user = _user(tmp_path)
    path = tmp_path / "apikeys.json"
    kept = _run(_crash_mid_append, str(path), user)
    gateway = ApiKeyStore(path)
    assert gateway.get(kept) is not None
    torn_size = gateway.log_path.stat().st_size
    made = _run(_create_one, str(path), user)
    assert gateway.log_path.stat().st_size < torn_size + 200  # the tail was cut, not kept
    assert gateway.find(made) is not None
    assert {k.key for k in gateway.keys_of("alice")} == {kept, made}


# -- file modes --------------------------------------------------------------------------------


def _write_both(root: str) -> None:
    os.umask(0o022)
    users = UserStore(Path(root) / "users.json", compact_min=4)
    keys = ApiKeyStore(Path(root) / "apikeys.json", compact_min=4)
    for i in range(12):  # several compactions each
        user = users.add(f"m{i}", "pw", 50 + i, n=_N)
        keys.create(user, ["read"])
    users.compact()
    keys.compact()


def test_every_file_is_private_after_compactions(tmp_path: Path) -> None:
    _run(_write_both, str(tmp_path))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "apikeys.json",
        "apikeys.json.lock",
        "apikeys.log",
        "users.json",
        "users.lock",
        "users.log",
    ]
    for name in names:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


# -- faults ------------------------------------------------------------------------------------


def _set_password_fsync_fails(root: str) -> tuple[int, str]:
    """``ringex admin set-password --revoke-keys`` whose fsync of users.log fails."""
    setattr(admin_users, "users_path", lambda cfg: Path(root) / "users.json")  # noqa: B010
    setattr(admin_users, "apikeys_path", lambda cfg: Path(root) / "apikeys.json")  # noqa: B010
    real = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("/users.log"):
            raise OSError(5, "Input/output error")
        real(fd)

    setattr(os, "fsync", fsync)  # noqa: B010 (this child process only)
    out = io.StringIO()
    args = argparse.Namespace(comp_id="alice", password="pw-new", revoke_keys=True)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = admin_users.set_password(None, args)  # type: ignore[arg-type]
    return rc, out.getvalue()


def test_set_password_whose_fsync_failed_does_not_say_nothing_changed(tmp_path: Path) -> None:
    """Was (fixed: ``ChangeMadeError``, said as a change made). ``procs/admin/users.py:201-204``
    takes an OSError from ``UserStore.set_password`` as "nothing written" ("password not
    changed", exit 1, and with ``--revoke-keys`` returns before ``keys.revoke_user``). But
    ``LoggedSnapshot.append`` raises OSError after a whole frame whose fsync failed with the
    change MADE (its docstring; review 173): every gateway already takes the new password
    and logs the user's sessions out, while the user's API keys (a password thought stolen)
    stay valid and the operator is told nothing changed. Shown: the CLI's ``set_password``
    in another process whose fsync of users.log fails; a gateway's store then verifies the
    new password, yet the CLI said "not changed" and the key still verifies. Fix: tell the
    two OSErrors apart (a ``ChangeMadeError(OSError)`` subclass from ``append``, say): on
    it, say the change is made but may not survive a machine crash, go on to revoke the
    keys, and exit non-zero naming that; the same in ``procs/admin/keys.py:63``,
    ``procs/gateway/user_requests.py:200`` and ``procs/gateway/rest_keys.py:59`` (which does
    not catch OSError at all)."""
    alice = _user(tmp_path)
    keys = ApiKeyStore(tmp_path / "apikeys.json")
    key = keys.create(alice, ["trade"])
    rc, said = _run(_set_password_fsync_fails, str(tmp_path))
    gateway = UserStore(tmp_path / "users.json")
    assert gateway.verify("alice", "pw-new") is not None  # the change IS made (passes)
    keys.refresh()
    assert keys.get(key.key) is None, "--revoke-keys left the key working"
    assert "not changed" not in said, said
    assert rc != 0  # still said as a fault: the change may not survive a crash


def _user_request_fsync_fails(root: str, user: User) -> tuple[int, str]:
    """A FIX UserRequest's change (``UserRequests._change_if_right``, its executor thread's
    work) whose fsync of users.log fails."""
    requests = UserRequests.__new__(UserRequests)
    requests.users = UserStore(Path(root) / "users.json")
    real = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("/users.log"):
            raise OSError(5, "Input/output error")
        real(fd)

    setattr(os, "fsync", fsync)  # noqa: B010 (this child process only)
    answer, _ = requests._change_if_right(user, "pw-old", "pw-new", False)
    return answer


def test_user_request_whose_fsync_failed_is_not_answered_unchanged(tmp_path: Path) -> None:
    """Was (fixed: ``ChangeMadeError`` answered 926=5). ``procs/gateway/user_requests.py:200-202``
    answers any OSError from ``UserStore.change_password`` with UserStatus 926=6 "the
    password could not be changed", but ``LoggedSnapshot.append`` raises OSError after a
    whole frame whose fsync failed with the change MADE: the client is told its old password
    stands, while every gateway (and its next Logon) takes only the new one; a client that
    believes the answer locks itself out (and spends its wrong-password allowance trying).
    Shown: ``_change_if_right`` in another process whose fsync of users.log fails; a store
    then verifies the new password, and the answer says "could not be changed". Fix: as for
    set-password: an OSError that says the change is made (a subclass raised by ``append``)
    answers 926=5 (password changed) and logs that it may not survive a crash."""
    alice = _user(tmp_path)
    answer = _run(_user_request_fsync_fails, str(tmp_path), alice)
    gateway = UserStore(tmp_path / "users.json")
    assert gateway.verify("alice", "pw-new") is not None  # the change IS made (passes)
    assert gateway.verify("alice", "pw-old") is None
    assert "could not be changed" not in answer[1], answer
    assert answer[0] == PASSWORD_CHANGED
