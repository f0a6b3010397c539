"""Review 286: operators and processes writing the same files at once.

Reviewed: ``procs/common/users.py``, ``procs/common/apikeys.py``,
``procs/common/change_log.py``, ``procs/common/durable.py``, ``procs/common/file_locks.py``,
``procs/common/run_files.py``, ``procs/common/units.py``, ``procs/admin/add_user.py``,
``procs/admin/users.py``, ``procs/admin/keys.py``, ``procs/admin/client.py`` (the admin
lock), ``procs/gateway/rest_keys.py``, ``procs/gateway/rest.py`` (``require_user``),
``procs/gateway/session_stores.py``, ``procs/gateway/live_sessions.py``,
``procs/gateway/stream_slots.py``, ``procs/dbwriter/users.py``, against README's Operate
("Removing a user", "A new password", "API keys") and the REST API's "Keys".

Rig: ``add_user`` driven in process with an admin client that answers OK (no instance: the
users file is what is judged); the stores opened twice, as two processes hold them (they
share only the files); a disk that fills is ``os.write`` / ``os.fsync`` / ``os.replace``
failing with ENOSPC or EIO at the step named. The REST login race uses review 161's
``rest_rig`` (a real gateway with its REST API, ``RestClient`` over HTTP), the operator's
``set-password`` forced between the login's check and its key's creation by a wrapper
around that one step (as reviews 163 and 239 force theirs), never a sleep.

Faults found (each fixed; its test says what it was):
1. ``procs/admin/add_user.py:115-119`` (``_stored``): ``UserStore.add`` raises
   ``ChangeMadeError`` (an OSError) when the users log's frame was written whole and only its
   fsync failed (``procs/common/change_log.py:435-446``): the user IS stored, every gateway
   may log it on. ``_stored`` takes any OSError as "not added: the users file could not be
   written ...; account N was opened for it and stays empty", exit 1, and sends none of the
   deposits. The operator is told the user does not exist while it logs on; a rerun is
   refused ("is a user already"), and the deposits asked for are silently dropped. Reviews
   174/177 fixed the same mismatch in ``set-password``, ``remove-user``, ``revoke-key`` and
   the REST login, not here. Fixed: ``_stored`` takes ``ChangeMadeError`` apart: the user
   is stored, the deposits are sent, its message is said and the exit status is 1 (as
   ``set_password`` does with ``undurable``).
2. ``procs/gateway/rest_keys.py:62-66``: the REST login checks that the password still
   holds (``_password_held``) BEFORE ``ApiKeyStore.create`` takes the keys' lock; ``create``
   (``procs/common/apikeys.py:240-284``) then evicts the user's oldest key at the limit
   without looking at the users again. A ``set-password`` (without ``--revoke-keys``) that
   lands between the check and the write (while ``create`` waits for the keys' ``flock``
   another gateway's fsync holds, or simply between the two lines) makes the login answer
   401 (the post-check, line 73) and revoke its new key: yet the user's oldest key was
   evicted for it. README ("A new password": "a REST login whose check passed on the old
   password as it changed gets a 401, no key of the user's evicted to make room for it")
   is false there. Fixed: ``create`` takes ``held``, asked under the keys' lock before
   anything is written (``NotHeldError``: nothing written); the login passes
   ``_password_held`` and answers 401 on it.

Sound:
- a users log write cut short by a full disk (ENOSPC mid-frame): ``add-user`` says "not
  added", the files load with the users before, the torn part is cut, and the same
  ``add-user`` run again stores the user;
- a compaction whose new log cannot be renamed in (ENOSPC after the snapshot was replaced):
  the change that triggered it is kept; a reader that held the old log and a fresh one both
  see every user; the next change starts a new log and every reader follows it;
- two stores writing users at once (two threads, two stores: two admins) while a third reads
  through compactions: every user kept, distinct session ids, the reader never loses one;
- an API key made by one gateway's store is found by another's at once (``get``, not only
  ``find``), and its revocation by a third is refused there at once (README: "at every
  gateway at once");
- a user removed in another process while its key is valid in the gateway's view of a
  second ago: its key revoked by the same command is refused at once.

Leads not shown:
- ``procs/admin/users.py:301-306`` (``remove_user``): the removal was by comp id
  (``store.remove(user.comp_id)``), not of the user it read, and its keys were revoked by
  comp id after it: two ``remove-user`` of one user at once with an ``add-user`` of that comp
  id between them removed the new user (and printed the old one's account), and a key the new
  user made in that gap was revoked. Fixed in session 69 (forced by a test at the end of this
  file): the removal and the keys' revocation are of the session read.
- ``set-password --revoke-keys`` (``procs/admin/users.py:237-250``) writes the password,
  then sweeps every key of the user: a REST login with the NEW password in between is given
  a key that is then revoked (401 on its first request). Only a user who knew the new
  password before the command ended could hit it.
- ``procs/common/file_locks.py:24-45`` (``try_lock``): eight opens in a row each losing to a
  ``remove_unheld`` report a free stream slot as full; not reachable with one prune a minute.
- ``procs/supervisor/main.py:466-470``: ``status.json`` is written and renamed without an
  fsync (a host crash can leave it empty; readers take that as no status). Not a concurrent
  fault; not pinned.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import pytest

from config.schema import RingexConfig
from procs.admin.add_user import add_user
from procs.admin.client import AdminClient
from procs.admin.users import remove_user
from procs.common.apikeys import ApiKeyStore
from procs.common.change_log import MAGIC
from procs.common.result_codes import ResultCode
from procs.common.topology import apikeys_path, users_path
from procs.common.users import User, UserStore
from procs.gateway.rest_client import ApiCallError, RestClient
from tests.unit.gateway.harness import Harness, run_scenario
from tests.unit.gateway.test_review161_password_changes import FAST, gateway, rest_rig
from tests.unit.test_review254_diff import venue

# -- rig -------------------------------------------------------------------------------------


class OkClient:
    """The admin client ``add_user`` talks to, a router's accounts as it answers them: a new
    one opens, one opened before is ACCOUNT_EXISTS; every deposit is made."""

    #: the router's accounts, across the clients of one test (``cfg`` resets them)
    accounts: ClassVar[set[int]] = set()

    def __init__(self) -> None:
        self.opened: list[int] = []
        self.deposits: list[tuple[int, str, str]] = []
        self.closed = False

    def create_account(self, account: int) -> SimpleNamespace:
        if account in OkClient.accounts:
            return SimpleNamespace(code=ResultCode.ACCOUNT_EXISTS)
        OkClient.accounts.add(account)
        self.opened.append(account)
        return SimpleNamespace(code=ResultCode.OK)

    def transfer(self, account: int, asset: str, amount: str) -> SimpleNamespace:
        self.deposits.append((account, asset, amount))
        return SimpleNamespace(code=ResultCode.OK)

    def close(self) -> None:
        self.closed = True


def _add(cfg: RingexConfig, comp_id: str, client: OkClient, *deposits: str) -> int:
    args = argparse.Namespace(
        username=comp_id,
        comp_id=None,
        password="pw",
        account=None,
        deposit=list(deposits),
        cancel_on_disconnect=None,
    )
    return add_user(cfg, args, lambda: cast(AdminClient, client))


def _fails_on(
    monkeypatch: pytest.MonkeyPatch, name: str, path_part: str, code: int, times: int = 1
) -> list[int]:
    """``os.<name>`` (fsync or write: a descriptor first) raises ``code`` for a descriptor of
    a file whose name holds ``path_part``, ``times`` times; the calls it failed."""
    real: Callable[..., Any] = getattr(os, name)
    failed: list[int] = []

    def failing(fd: int, *rest: Any) -> Any:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if path_part in target and len(failed) < times:
            failed.append(fd)
            if name == "write" and rest and len(rest[0]) > 4:
                real(fd, bytes(rest[0][:4]))  # a part written, then the disk is full
            raise OSError(code, os.strerror(code))
        return real(fd, *rest)

    monkeypatch.setattr(os, name, failing)
    return failed


@pytest.fixture
def cfg(tmp_path: Path) -> RingexConfig:
    OkClient.accounts = set()
    return venue(tmp_path, "c")


# -- fault 1: add-user whose users.log fsync failed ---------------------------------------------


def test_add_user_whose_fsync_failed_does_not_say_not_added(
    cfg: RingexConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ``ringex admin add-user --username carol --deposit USD=100`` on a disk that
    fails the fsync of ``users.log`` after the frame was written whole (EIO): the change is
    made (``ChangeMadeError``), so every gateway logs carol on.
    Expected: the command says the user is stored but its write may not survive a host crash
    (as set-password and remove-user say, review 174), and makes the deposit (or names it as
    not sent); it never says carol was not added.
    Was (fixed): "carol not added: the users file could not be written (...); account 100 was
    opened for it and stays empty", exit 1, no deposit sent, while a gateway's store logs
    carol on with that password (a rerun is refused: "is a user already")."""
    UserStore(users_path(cfg)).add("ALICE", "pw", 99, n=FAST)  # the log exists: an append
    failed = _fails_on(monkeypatch, "fsync", "users.log", errno.EIO)
    client = OkClient()
    code = _add(cfg, "carol", client, "USD=100")
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert failed, "the fsync of users.log was not reached"
    gateway_view = UserStore(users_path(cfg))
    assert gateway_view.verify("carol", "pw") is not None  # stored: it logs on
    assert code == 1  # (either way: its durability is in doubt)
    assert "not added" not in err, err
    assert client.deposits == [(100, "USD", "100")], (client.deposits, err)


def test_sound_add_user_cut_short_by_a_full_disk_is_not_added_and_runs_again(
    cfg: RingexConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A users log write cut short (ENOSPC after 4 bytes): "not added", the torn part cut,
    the users before intact; the same add-user run again stores the user."""
    UserStore(users_path(cfg)).add("ALICE", "pw", 99, n=FAST)
    log_path = users_path(cfg).with_suffix(".log")
    size = log_path.stat().st_size
    failed = _fails_on(monkeypatch, "write", "users.log", errno.ENOSPC)
    client = OkClient()
    assert _add(cfg, "carol", client, "USD=100") == 1
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert failed and "carol not added" in err, err
    assert client.deposits == []
    assert log_path.stat().st_size == size  # the part written is cut back
    view = UserStore(users_path(cfg))
    assert [u.comp_id for u in view.users()] == ["ALICE"]
    again = OkClient()
    assert _add(cfg, "carol", again, "USD=100") == 0, capsys.readouterr().err
    assert UserStore(users_path(cfg)).verify("carol", "pw") is not None
    assert again.deposits == [(101, "USD", "100")]


# -- fault 2: a REST login at the key limit as the password changes --------------------------


@pytest.fixture
def one_key_h(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE and BOB with the REST API on, one API key a user (a new one evicts the oldest)."""
    yield rest_rig(instance, tmp_path, max_keys_per_user=1)


def test_a_login_whose_password_changes_before_its_key_is_written_evicts_nothing(
    one_key_h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: ALICE holds her one key (``max_keys_per_user = 1``); she logs in again over
    REST with "secret"; the password check passes and the pre-check holds; then the
    operator's ``set-password`` (no ``--revoke-keys``) lands while the login's
    ``create`` waits for the keys' lock (forced: a wrapper around ``create`` runs it first).
    Expected (README, "A new password"): the login gets a 401 and "no key of the user's
    evicted to make room for it": her first key stays.
    Was (fixed): 401, and her first key is gone (evicted by ``create``, which never looks at the
    users; the post-check then revokes the new one): she holds no key."""

    async def scenario(h: Harness, port: int) -> None:
        gw = gateway(h)
        assert gw.api is not None
        url = f"http://127.0.0.1:{gw.api.port}"
        first, second = RestClient(url), RestClient(url)
        try:
            await first.login("ALICE", "secret")
            keys = gw.api.keys
            real = keys.create

            def operator_first(user: User, *args: Any, **kwargs: Any) -> Any:
                UserStore(users_path(h.cfg)).set_password("ALICE", "operator-set", n=FAST)
                return real(user, *args, **kwargs)

            monkeypatch.setattr(keys, "create", operator_first)
            with pytest.raises(ApiCallError) as refused:
                await second.login("ALICE", "secret")
            assert refused.value.status == 401
            kept = [k.key for k in ApiKeyStore(apikeys_path(h.cfg)).keys_of("ALICE")]
            assert kept == [first.api_key], "the key the user had was evicted for nothing"
        finally:
            await first.close()
            await second.close()

    run_scenario(one_key_h, scenario)


# -- sound -----------------------------------------------------------------------------------


def test_sound_a_compaction_whose_log_cannot_be_renamed_in_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot of a compaction is renamed in, then the new log's rename fails (ENOSPC):
    the change kept, a reader holding the old log and a fresh one see every user, and the
    next change's new log is followed by that reader."""
    path = tmp_path / "users.json"
    writer = UserStore(path, compact_min=2)
    reader = UserStore(path)
    for k in range(3):  # the log holds 2 own changes: the next one compacts
        writer.add(f"U{k}", "pw", 100 + k, n=FAST)
    assert len(reader.users()) == 3
    real = os.replace

    def no_room_for_the_log(src: Any, dst: Any, *rest: Any) -> None:
        if str(dst).endswith("users.log"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(src, dst, *rest)

    monkeypatch.setattr(os, "replace", no_room_for_the_log)
    writer.add("U3", "pw", 103, n=FAST)  # made; its compaction fails, logged
    monkeypatch.undo()
    names = {f"U{k}" for k in range(4)}
    assert {u.comp_id for u in reader.users()} == names
    assert {u.comp_id for u in UserStore(path).users()} == names
    assert not list(tmp_path.glob("*.tmp"))
    writer.add("U4", "pw", 104, n=FAST)
    names.add("U4")
    assert {u.comp_id for u in reader.users()} == names
    assert {u.comp_id for u in UserStore(path).users()} == names
    assert path.with_suffix(".log").read_bytes().startswith(MAGIC)


def test_sound_two_admins_add_users_at_once_while_a_gateway_reads(tmp_path: Path) -> None:
    """Two stores (two admins) add 40 users each at once, compacting every few changes,
    while a third (a gateway) reads: every user kept with its own session id, and the
    reader's count never goes back."""
    path = tmp_path / "users.json"
    UserStore(path).add("SEED", "pw", 1, n=FAST)
    errors: list[BaseException] = []
    done = threading.Event()

    def admin(prefix: str) -> None:
        store = UserStore(path, compact_min=8)
        try:
            for k in range(40):
                store.add(f"{prefix}{k}", "pw", 1000 + k, n=FAST, new=True)
        except BaseException as exc:  # (said by the test)
            errors.append(exc)

    seen: list[int] = []

    def gateway_reads() -> None:
        store = UserStore(path)
        while not done.is_set():
            seen.append(len(store.users()))

    threads = [threading.Thread(target=admin, args=(p,)) for p in ("A", "B")]
    reader = threading.Thread(target=gateway_reads)
    reader.start()
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    done.set()
    reader.join(10)
    assert not errors, errors
    users = UserStore(path).users()
    assert len(users) == 81
    assert len({u.session for u in users}) == 81
    assert seen and all(b >= a for a, b in itertools.pairwise(seen)), "went back"


def test_sound_a_key_made_at_one_gateway_verifies_at_another_at_once(tmp_path: Path) -> None:
    """Gateway B's store (recheck far off) gets a key gateway A just made through ``get``
    (the per-request lookup), and refuses it at once once an operator revoked it."""
    path = tmp_path / "apikeys.json"
    users = UserStore(tmp_path / "users.json")
    alice = users.add("ALICE", "pw", 7, n=FAST)
    a = ApiKeyStore(path)
    b = ApiKeyStore(path, recheck_s=3600.0)
    assert b.get("nothing") is None
    key = a.create(alice, ["read"])
    assert b.get(key.key) == key
    assert ApiKeyStore(path).revoke(key.key)
    assert b.get(key.key) is None


def test_sound_a_user_removed_elsewhere_has_its_key_refused_at_once(
    cfg: RingexConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """``remove-user`` (another process: its own stores) while a gateway's key store and its
    view of the users (a second old) still hold the user: the key is refused at the very
    next lookup."""
    alice = UserStore(users_path(cfg)).add("ALICE", "pw", 7, n=FAST)
    keys = ApiKeyStore(apikeys_path(cfg), recheck_s=3600.0)
    view = UserStore(users_path(cfg), recheck_s=3600.0)
    key = keys.create(alice, ["read", "trade"])
    assert view.get("ALICE") is not None and keys.get(key.key) is not None
    args = argparse.Namespace(comp_id="ALICE", cancel_orders=False)
    assert remove_user(cfg, args, lambda: None) == 0, capsys.readouterr().err
    assert keys.get(key.key) is None
    assert view.get("ALICE") is not None  # (the view is stale: the key is what refuses)


def test_a_removal_racing_a_removal_and_an_add_of_its_comp_id_spares_the_new_user(
    cfg: RingexConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario (this review's first lead): ``remove-user ALICE`` reads ALICE (account 7);
    before it writes, another operator's ``remove-user ALICE`` and ``add-user ALICE``
    (account 8, a new session) run, and the new ALICE makes an API key.
    Expected: the first removal refuses, naming the race; the new ALICE and her key stay.
    Was (fixed): the removal was by comp id: the new ALICE was removed, her key revoked, and
    the command printed the old one's account."""
    store = UserStore(users_path(cfg))
    old = store.add("ALICE", "pw", 7, n=FAST)
    made: list[str] = []
    real_keys = ApiKeyStore

    def racing_keys(path: Path) -> ApiKeyStore:  # read after the user, before its removal
        other = UserStore(users_path(cfg))
        assert other.remove("ALICE")
        new = other.add("ALICE", "pw2", 8, n=FAST)
        made.append(real_keys(apikeys_path(cfg)).create(new, ["read"]).key)
        return real_keys(path)

    monkeypatch.setattr("procs.admin.users.ApiKeyStore", racing_keys)
    args = argparse.Namespace(comp_id="ALICE", cancel_orders=False)
    assert remove_user(cfg, args, lambda: None) == 1
    err = capsys.readouterr().err
    assert f"ALICE (session {old.session}) was removed meanwhile" in err, err
    now = UserStore(users_path(cfg)).get("ALICE")
    assert now is not None and now.account == 8 and now.session != old.session
    assert ApiKeyStore(apikeys_path(cfg)).get(made[0]) is not None


def test_sound_revoking_a_comp_ids_keys_keeps_its_current_users(
    cfg: RingexConfig,
) -> None:
    """Keys of a comp id but its current user's (``keep``, its session) go; its own stay."""
    store = UserStore(users_path(cfg))
    first = store.add("ALICE", "pw", 7, n=FAST)
    keys = ApiKeyStore(apikeys_path(cfg))
    gone = keys.create(first, ["read"])
    assert store.remove("ALICE", session=first.session)
    second = store.add("ALICE", "pw", 8, n=FAST)
    kept = keys.create(second, ["read"])
    assert not store.remove("ALICE", session=first.session)  # the later one: not removed
    assert keys.revoke_user("ALICE", keep=second.session) == 1
    assert keys.get(gone.key) is None and keys.get(kept.key) is not None
