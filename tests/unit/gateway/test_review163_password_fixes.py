"""Review 163, hostile, of the fixes reviews 161 and 162 brought: the users file's ``epoch``
and ``still_logged_on``, a session's own password change (``user_requests.py``: the check on
an executor thread, answers parked or sent to the user's new session), a deferred Logon's
SendingTime judged at its arrival (``Session._logon_ns``), and a REST login whose key was
made as the password changed (``rest_keys.py``).

The three tests under "faults" each named a fault and failed on the code as reviewed; each
passes since its fix (the same session). The tests under "contracts" held as reviewed.
Interleavings are forced (a slowed or wrapped step of the change on its executor thread),
not hoped for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.common.apikeys import ApiKeyStore
from procs.common.topology import apikeys_path, users_path
from procs.common.users import User, UserStore, rehashed, still_logged_on
from procs.dbwriter.users import password_hash
from procs.gateway import user_requests
from procs.gateway.rest_client import ApiCallError, RestClient
from procs.gateway.session_interface import State
from tests.unit.gateway.harness import (
    Client,
    Harness,
    run_scenario,
    settled,
    small_ring_exchange,
)
from tests.unit.gateway.test_review161_password_changes import (
    FAST,
    bf_or_nothing,
    gateway,
    logged_on,
    rest_rig,
    slow_rehash,
    stored,
)
from tests.unit.gateway.test_review162_user_settings import _SECOND, Rig, fix, logon, replies
from tests.unit.gateway.test_user_request import answer, change, logs_on


@pytest.fixture
def h(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE (7), BOB (8), password "secret"."""
    yield small_ring_exchange(
        instance, tmp_path, 4096, users=("ALICE", "BOB"), failed_login_burst=3
    )


@pytest.fixture
def one_key_h(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE and BOB with the REST API on, one API key a user (a new one evicts the oldest)."""
    yield rest_rig(instance, tmp_path, max_keys_per_user=1)


# -- faults -----------------------------------------------------------------------------------


def test_messages_behind_a_deferred_logon_are_judged_at_their_arrival(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.users.set_settings("ALICE", sending_time_tolerance_s=1)
    s = rig.session(defer_auth=True)
    arrived = time.time_ns()
    s.data_received(logon() + fix("1", 2, (112, "right-behind")), arrived)  # one write
    assert s.state is State.AUTHENTICATING
    s.authenticated(rig.users.verify("ALICE", "pw"), arrived + 3 * _SECOND)  # a busy executor
    said = replies(s)
    assert s.state.value == "active", (s.close_reason, said)
    assert [kind for kind, _ in said] == [b"A", b"0"]


def test_a_login_refused_as_the_password_changed_costs_no_other_key(
    one_key_h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness, port: int) -> None:
        gw = gateway(h)
        assert gw.api is not None
        url = f"http://127.0.0.1:{gw.api.port}"
        first = RestClient(url)
        second = RestClient(url)
        try:
            await first.login("ALICE", "secret")  # the user's one key
            users = gw.users
            real = users.verify

            def then_operator(comp_id: str, password: str) -> User | None:
                user = real(comp_id, password)  # right, as it is checked
                UserStore(users.path).set_password(comp_id, "operator-set", n=FAST)  # no revoke
                return user

            monkeypatch.setattr(users, "verify", then_operator)
            with pytest.raises(ApiCallError) as refused:
                await second.login("ALICE", "secret")
            assert refused.value.status == 401
            kept = [k.key for k in ApiKeyStore(apikeys_path(h.cfg)).keys_of("ALICE")]
            assert kept == [first.api_key], "the key the user had is gone"
        finally:
            await first.close()
            await second.close()

    run_scenario(one_key_h, scenario)


def test_the_answer_does_not_undo_a_setting_a_timer_pass_took(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    class ThenSetUser(UserStore):
        def change_password(self, logged_on: User, new: User) -> User | None:
            done = super().change_password(logged_on, new)
            UserStore(self.path).set_settings(logged_on.comp_id, cancel_on_disconnect=True)
            time.sleep(2.2)  # (the executor thread) two timer passes take the file's user
            return done

    monkeypatch.setattr(user_requests, "UserStore", ThenSetUser)

    async def scenario(h: Harness, port: int) -> None:
        gw = gateway(h)
        alice = await logged_on(port)
        await alice.send_raw(change(alice, "secret", "alice-2").encode())
        await asyncio.sleep(1.8)  # the timer has taken the setting (the check still runs)
        session = gw.live["ALICE"]
        assert session.user is not None and session.user.cancel_on_disconnect is True
        bf = await bf_or_nothing(alice, 5.0)
        assert bf is not None and bf.get(926) == b"5"
        assert session.user.cancel_on_disconnect is True, "the answer put back the old setting"

    run_scenario(h, scenario)


# -- contracts that hold ----------------------------------------------------------------------


async def _changed_and_logged_out(h: Harness, port: int) -> Client:
    """ALICE asks to change "secret" to "alice-2" and logs out while the check runs (slowed);
    the change done, its client, its numbers going on."""
    gw = gateway(h)
    alice = await logged_on(port)  # gateway's 1: its Logon
    await alice.send_raw(change(alice, "secret", "alice-2").encode())  # client's 2
    await alice.send("5")  # client's 3: gateway's 2, its Logout
    assert await alice.closed()
    await alice.aclose()
    await settled(lambda: "ALICE" not in gw._user_changes, 3.0)
    assert stored(h) is not None and UserStore(users_path(h.cfg)).verify("ALICE", "alice-2")
    return alice  # the answer parked as the gateway's 3


def test_a_parked_answer_comes_with_a_resend_request_at_the_next_logon(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_rehash(monkeypatch, 0.5)

    async def scenario(h: Harness, port: int) -> None:
        alice = await _changed_and_logged_out(h, port)
        await alice.connect(port)
        reply = await alice.logon("alice-2")  # the numbers go on
        assert reply.get(34) == b"4"  # 3 is the parked answer: a gap
        await alice.send("2", (7, 3), (16, 0))
        bf = await alice.expect("BF")
        assert (bf.get(34), bf.get(43), bf.get(923), bf.get(926)) == (b"3", b"Y", b"r1", b"5")

    run_scenario(h, scenario)


def test_a_parked_answer_is_sent_anew_after_a_reset_logon(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_rehash(monkeypatch, 0.5)

    async def scenario(h: Harness, port: int) -> None:
        alice = await _changed_and_logged_out(h, port)
        await alice.connect(port)
        alice.seq = 1
        assert (await alice.logon("alice-2", reset=True)).get(34) == b"1"
        bf = await alice.expect("BF")
        assert (bf.get(34), bf.get(923), bf.get(926)) == (b"2", b"r1", b"5")
        assert bf.get(43) != b"Y"  # never seen: sent, not resent

    run_scenario(h, scenario)


def test_a_user_removed_and_added_again_is_another_session(tmp_path: Path) -> None:
    """The new user's epoch is 0 again, as the removed one's was, but its session id is new:
    a session of the removed one does not go on as it (``still_logged_on``, the timer)."""
    rig = Rig(tmp_path)
    s = rig.session()
    s.data_received(logon(), time.time_ns())
    was = s.user
    assert s.state is State.ACTIVE and was is not None and was.epoch == 0
    assert rig.users.remove("ALICE")
    again = rig.users.add("ALICE", "pw", 7, n=FAST)  # the same password and account
    assert again.epoch == 0 and again.session != was.session
    assert still_logged_on(again, was) is None
    replies(s)
    s.on_timer(time.time_ns())
    assert s.closed and "removed or changed by the operator" in s.close_reason


def test_the_operators_change_wins_over_the_users_either_way(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    store = UserStore(path)
    logged_on_as = store.add("ALICE", "a", 7, n=FAST)
    assert store.set_password("ALICE", "operator", n=FAST) is not None  # first: epoch 1
    own = UserStore(path).change_password(logged_on_as, rehashed(logged_on_as, "b", n=FAST))
    assert own is None and UserStore(path).verify("ALICE", "operator") is not None
    # the other way: the user's own change first keeps the epoch, the operator's then ends it
    now = UserStore(path).get("ALICE")
    assert now is not None and now.epoch == 1
    mine = UserStore(path).change_password(now, rehashed(now, "c", n=FAST))
    assert mine is not None and mine.epoch == 1 and still_logged_on(mine, now) is mine
    after = UserStore(path).set_password("ALICE", "operator-2", n=FAST)
    assert after is not None and after.epoch == 2 and still_logged_on(after, mine) is None


def test_the_epoch_is_written_only_once_set_and_checked_by_the_crc(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    store = UserStore(path)
    store.add("ALICE", "a", 7, n=FAST)
    store.compact()
    assert b"epoch" not in path.read_bytes()  # as an earlier build wrote the user
    store.set_password("ALICE", "b", n=FAST)
    store.compact()
    assert b'"epoch":1' in path.read_bytes()
    store.add("ALICE", "c", 7, n=FAST)  # replaced: its sessions end too
    reread = UserStore(path).get("ALICE")
    assert reread is not None and reread.epoch == 2


def test_the_database_mirror_sees_an_own_change(tmp_path: Path) -> None:
    """The database writer's mirror (``procs/dbwriter/users.py``) writes a user whose hash
    changed: the user's own change gives a new one, the epoch aside."""
    store = UserStore(tmp_path / "users.json")
    was = store.add("ALICE", "a", 7, n=FAST)
    now = UserStore(store.path).change_password(was, rehashed(was, "b", n=FAST))
    assert now is not None and password_hash(now) != password_hash(was)


def test_a_restart_takes_what_the_operator_changed_while_it_was_down(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        await h.stop()
        users = UserStore(users_path(h.cfg))
        assert users.set_password("ALICE", "while-down", n=FAST) is not None
        assert users.set_settings("ALICE", min_heartbeat_s=20) is not None
        port = await h.start()
        assert not await logs_on(port, "ALICE", "secret")
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.send("A", (98, 0), (108, 10), (141, "Y"), (554, "while-down"))
        refused = await alice.recv(3.0)
        assert refused is not None and refused.get(35) == b"5"  # its own bound, 20 s
        assert b"HeartBtInt 10" in refused.get(58)
        again = await logged_on(port, password="while-down")
        status, _ = await answer(again, change(again, "while-down", "alice-3"))
        assert status == user_requests.PASSWORD_CHANGED

    run_scenario(h, scenario)


def test_a_logon_naming_another_username_is_refused_before_its_password(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    s = rig.session()
    s.data_received(logon(1, 30, "wrong", (553, "BOB")), time.time_ns())
    [(kind, text)] = replies(s)
    assert kind == b"5" and "'BOB'" in text and "'ALICE'" in text
    assert "bad password" not in text
