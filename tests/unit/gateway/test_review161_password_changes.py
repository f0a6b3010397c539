"""Review 161, hostile, of password changes: a session's own (UserRequest BE, UserRequestType
3 -> UserResponse BF, ``procs/gateway/user_requests.py``) and the operator's (`ringex admin
set-password`, ``procs/admin/users.py``, ``UserStore.set_password``).

The eight tests under "faults" each named a fault and failed on the code as reviewed; each
passes since its fix (the same session). Two were rewritten for the fix's design: a change
whose check passed is made though its session ended (its answer parked, its token given
back), and the operator's change is forced inside the check of the current password, now
made against the user the session logged on as. The tests under "contracts" held as
reviewed. Interleavings are forced, not hoped for: the check's scrypt is slowed
(``slow_rehash``) or the gateway's password check wrapped, so a second event lands inside
it. Over real TCP: the gateway harness and a simplefix client.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import simplefix  # ships no type information

import procs.cli
from config.edges import RestConfig
from config.schema import DatabaseConfig
from procs.admin.users import set_password
from procs.common.apikeys import ApiKeyStore
from procs.common.topology import apikeys_path, users_path
from procs.common.users import DEFAULT_N, User, UserStore, password_matches, rehashed
from procs.gateway import user_requests
from procs.gateway.rest_client import ApiCallError, RestClient
from procs.gateway.server import GatewayServer
from tests.unit.gateway.harness import (
    Client,
    Harness,
    run_scenario,
    settled,
    small_ring_exchange,
    utc,
)
from tests.unit.gateway.harness import config as harness_config
from tests.unit.gateway.test_user_request import answer, change, logs_on

FAST = 1 << 4  # the scrypt cost of the users the tests add


@pytest.fixture
def h(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE (7), BOB (8), password "secret"; three wrong passwords a user before the limit."""
    yield small_ring_exchange(
        instance, tmp_path, 4096, users=("ALICE", "BOB"), failed_login_burst=3
    )


def rest_rig(instance: str, tmp_path: Path, **rest: object) -> Harness:
    """ALICE (7) and BOB (8), password "secret", with the REST API on (``rest``: more of its
    settings) and one limiter of wrong passwords for FIX and REST, three a user."""
    config = RestConfig(port=0, login_rate_per_s=100, login_burst=100, key_rate_per_s=1000,
                        key_burst=1000, **rest)  # type: ignore[arg-type]  # fmt: skip
    cfg = harness_config(instance, tmp_path, rest=config, failed_login_burst=3)
    h = Harness(msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False)))
    for k, comp in enumerate(("ALICE", "BOB")):
        h.add_user(comp, "secret", 7 + k)
        h.fund(7 + k)
    return h


@pytest.fixture
def rest_h(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """``h`` with the REST API on."""
    yield rest_rig(instance, tmp_path)


def slow_rehash(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[str]:
    """The new digest's scrypt takes ``seconds`` more (on the executor thread, as it runs);
    the comp ids hashed, in order."""
    real, calls = rehashed, []

    def slow(user: User, password: str, n: int = DEFAULT_N) -> User:
        calls.append(user.comp_id)
        time.sleep(seconds)
        return real(user, password, n)

    monkeypatch.setattr(user_requests, "rehashed", slow)
    return calls


def gateway(h: Harness) -> GatewayServer:
    assert h.gateway is not None
    return h.gateway


async def logged_on(port: int, comp: str = "ALICE", password: str = "secret") -> Client:
    client = Client(comp)
    await client.connect(port)
    await client.logon(password, reset=True)
    return client


async def bf_or_nothing(client: Client, timeout: float) -> simplefix.FixMessage | None:
    """The next UserResponse, or None when none comes within ``timeout`` (heartbeats skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        msg = await client.recv(left)
        if msg is None:
            return None
        if msg.get(35) == b"BF":
            return msg
    return None


def stored(h: Harness, comp: str = "ALICE") -> User | None:
    return UserStore(users_path(h.cfg)).get(comp)  # the file as it is now


# -- faults -----------------------------------------------------------------------------------


def test_another_users_change_during_the_check_loses_the_answer(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_rehash(monkeypatch, 2.0)  # two timer passes inside the check

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send_raw(change(alice, "secret", "alice-2").encode())
        await asyncio.sleep(0.1)
        # the operator changes BOB's password meanwhile (or BOB his own, over his session)
        assert UserStore(users_path(h.cfg)).set_password("BOB", "bob-2", n=FAST) is not None
        bf = await bf_or_nothing(alice, 5.0)
        assert bf is not None, "ALICE's change was never answered"
        assert int(bf.get(926)) == user_requests.PASSWORD_CHANGED

    run_scenario(h, scenario)


def test_a_right_password_whose_session_ended_meanwhile_spends_a_token(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fixed since: a change whose check passed is made though its session ended meanwhile
    (its answer parked), and its right password gives its token back: three such in a row
    (the burst) leave the user able to log on with the last new password."""
    slow_rehash(monkeypatch, 0.4)

    async def scenario(h: Harness, port: int) -> None:
        gw = gateway(h)
        current = "secret"
        for k in range(3):  # the burst is 3
            alice = await logged_on(port, password=current)
            await alice.send_raw(change(alice, current, f"new-{k}", ref=f"r{k}").encode())
            if k % 2:
                await alice.aclose()  # dropped
            else:
                await alice.send("5")  # logged out
                assert await alice.closed()
            await settled(lambda: "ALICE" not in gw._user_changes, 3.0)
            current = f"new-{k}"
        user = stored(h)
        assert user is not None and UserStore(users_path(h.cfg)).verify("ALICE", "new-2")
        last = Client("ALICE")
        await last.connect(port)
        await last.send("A", (98, 0), (108, 30), (141, "Y"), (554, "new-2"))
        msg = await last.recv(3.0)
        assert msg is not None and msg.get(35) == b"A", msg and msg.get(58)

    run_scenario(h, scenario)


def test_a_copy_of_a_request_in_flight_gets_a_contrary_answer(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_rehash(monkeypatch, 0.5)

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send_raw(change(alice, "secret", "alice-2").encode())
        await alice.send_raw(change(alice, "secret", "alice-2", poss_resend=True).encode())
        answers = []
        while (bf := await bf_or_nothing(alice, 2.0)) is not None:
            answers.append((bf.get(923), int(bf.get(926))))
        assert answers and all(a == (b"r1", user_requests.PASSWORD_CHANGED) for a in answers)

    run_scenario(h, scenario)


def test_the_operators_change_during_the_check_is_called_a_wrong_password(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        users = gateway(h).users
        real = password_matches

        def operator_first(user: User, password: str) -> bool:
            if password == "secret":  # the check of the current password
                UserStore(users.path).set_password(user.comp_id, "operator-set", n=FAST)
            return real(user, password)

        monkeypatch.setattr(user_requests, "password_matches", operator_first)
        status, text = await answer(alice, change(alice, "secret", "alice-2"))
        assert status == user_requests.OTHER and "operator" in text, (status, text)

    run_scenario(h, scenario)


def test_a_copy_after_a_gateway_restart_is_acted_on_again(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        assert (await answer(alice, change(alice, "secret", "alice-2")))[0] == 5
        await alice.aclose()
        await h.stop()
        port = await h.start()
        again = await logged_on(port, password="alice-2")
        copy = change(again, "secret", "alice-2", poss_resend=True)
        assert await answer(again, copy) == (5, "password changed")

    run_scenario(h, scenario)


def test_one_users_requests_evict_another_users_remembered_answer(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        bob = await logged_on(port, "BOB")
        assert (await answer(bob, change(bob, "secret", "bob-2", user="BOB")))[0] == 5
        alice = await logged_on(port)
        flood = b"".join(
            alice.message("BE", (923, f"s{k}"), (924, 4), (553, "ALICE")).encode()
            for k in range(1_000)
        )
        await alice.send_raw(flood)
        for _ in range(1_000):
            assert int((await alice.expect("BF")).get(926)) == user_requests.LOGGED_IN
        copy = change(bob, "secret", "bob-2", user="BOB", poss_resend=True)
        assert await answer(bob, copy) == (5, "password changed")

    run_scenario(h, scenario)


def test_the_swap_stalls_the_loop_on_the_users_file_lock(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gaps: list[float] = []

        async def tick() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = asyncio.get_running_loop().create_task(tick())
        fd = os.open(users_path(h.cfg).with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process's set-password, say
        threading.Timer(1.0, os.close, (fd,)).start()
        try:
            assert (await answer(alice, change(alice, "secret", "alice-2")))[0] == 5
            await asyncio.sleep(0.05)  # the ticker's turn: it records the stall it woke from
        finally:
            ticker.cancel()
        assert max(gaps) < 0.3, f"the loop stood still {max(gaps):.2f} s"

    run_scenario(h, scenario)


def test_a_rest_login_racing_set_password_revoke_keys_keeps_its_key(
    rest_h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = rest_h

    async def scenario(h: Harness, port: int) -> None:
        gw = gateway(h)
        assert gw.api is not None
        users = gw.users
        real = users.verify

        def then_operator(comp_id: str, password: str) -> User | None:
            user = real(comp_id, password)  # the old password, right as it is checked
            args = argparse.Namespace(comp_id=comp_id, password="fresh", revoke_keys=True)
            assert set_password(h.cfg, args) == 0
            return user

        monkeypatch.setattr(users, "verify", then_operator)
        client = RestClient(f"http://127.0.0.1:{gw.api.port}")
        try:
            await client.login("ALICE", "secret")
        except ApiCallError:
            pass  # refused: as good as its key revoked
        finally:
            await client.close()
        kept = ApiKeyStore(apikeys_path(h.cfg)).keys_of("ALICE")
        assert not kept, "a key made with the password thought stolen outlives the revoke"

    run_scenario(h, scenario)


# -- contracts that hold ----------------------------------------------------------------------


def test_possdup_copies_below_and_at_the_expected_seqnum(h: Harness) -> None:
    """A PossDup copy below the expected MsgSeqNum is ignored (FIX 4.4); one in sequence is
    answered as before; neither changes the password again."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        seq = alice.seq
        assert (await answer(alice, change(alice, "secret", "alice-2")))[0] == 5
        pairs = [(923, "r1"), (924, 3), (553, "ALICE"), (554, "secret"), (925, "alice-2")]
        earlier = utc(-1.0)
        below = alice.message("BE", *pairs, seq=seq, poss_dup=True, orig_sending_time=earlier)
        await alice.send_raw(below.encode())
        assert await bf_or_nothing(alice, 0.5) is None
        at = alice.message("BE", *pairs, poss_dup=True, orig_sending_time=earlier)
        assert await answer(alice, at) == (5, "password changed")
        await alice.send("1", (112, "on"))
        assert (await alice.expect("0")).get(112) == b"on"
        await alice.aclose()
        assert await logs_on(port, "ALICE", "alice-2")

    run_scenario(h, scenario)


def test_a_resend_request_brings_the_answer_back(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await answer(alice, change(alice, "secret", "alice-2"))
        bf_seq = int(alice.received[-1].get(34))
        await alice.send("2", (7, bf_seq), (16, 0))
        again = await alice.expect("BF")
        assert again.get(43) == b"Y" and int(again.get(34)) == bf_seq
        assert (again.get(923), again.get(926)) == (b"r1", b"5")

    run_scenario(h, scenario)


def test_passwords_reach_neither_the_audit_nor_the_process_log(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        assert (await answer(alice, change(alice, "Wr0ngOld", "Nope1", ref="a")))[0] == 4
        assert (await answer(alice, change(alice, "secret", "S3cr3tNew", ref="b")))[0] == 5
        await alice.send("BE", (923, "c"), (924, 3), (553, "ALICE"), (554, "S3cr3tNew"),
                         (925, "Tw1ce"), (925, "Tw1ce"))  # fmt: skip
        assert (await alice.expect("3")).get(371) == b"925"

    run_scenario(h, scenario)
    audit = b"".join(p.read_bytes() for p in Path(h.cfg.var_dir).rglob("audit.log*"))
    for secret in ("Wr0ngOld", "Nope1", "S3cr3tNew", "Tw1ce"):
        assert secret.encode() not in audit and secret not in caplog.text
    assert b"925=***" in audit


def test_a_non_utf8_new_password_logs_on_with_the_same_bytes(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        msg = alice.message("BE", (923, "r1"), (924, 3), (553, "ALICE"), (554, "secret"),
                            (925, b"\xe9t\xe9"))  # fmt: skip
        assert (await answer(alice, msg))[0] == 5
        await alice.aclose()
        for password in (b"\xe9t\xe9", "été"):  # Latin-1 bytes, or their UTF-8 text
            again = Client("ALICE")
            await again.connect(port)
            await again.send("A", (98, 0), (108, 30), (141, "Y"), (554, password))
            assert (await again.recv(3.0) or simplefix.FixMessage()).get(35) == b"A"
            await again.aclose()

    run_scenario(h, scenario)


def test_a_reset_logon_during_the_check_still_gets_the_answer(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_rehash(monkeypatch, 0.4)

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send_raw(change(alice, "secret", "alice-2").encode())
        alice.seq = 1
        await alice.send("A", (98, 0), (108, 30), (141, "Y"))
        assert (await alice.expect("A")).get(141) == b"Y"
        bf = await alice.expect("BF")
        assert bf.get(926) == b"5" and bf.get(34) == b"2"  # the new numbers

    run_scenario(h, scenario)
    assert UserStore(users_path(h.cfg)).verify("ALICE", "alice-2") is not None


def test_a_flood_while_one_change_is_in_flight_costs_no_scrypt(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed = slow_rehash(monkeypatch, 0.5)

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        flood = b"".join(change(alice, "secret", f"n{k}", ref=f"r{k}").encode() for k in range(30))
        await alice.send_raw(flood)
        statuses = [int((await alice.expect("BF", 3.0)).get(926)) for _ in range(30)]
        assert statuses.count(user_requests.OTHER) == 29 and statuses[-1] == 5

    run_scenario(h, scenario)
    assert hashed == ["ALICE"]


def test_remove_user_during_the_check_is_not_undone(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's removal wins: answered 926=6 or logged out (its timer may come first);
    forbidden: the user back in the file."""
    real = rehashed

    def removed_then(user: User, password: str, n: int = FAST) -> User:
        new = real(user, password, FAST)
        UserStore(users_path(h.cfg)).remove(user.comp_id)
        return new

    monkeypatch.setattr(user_requests, "rehashed", removed_then)

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send_raw(change(alice, "secret", "alice-2").encode())
        msg = await alice.recv(3.0)
        while msg is not None and msg.get(35) == b"0":
            msg = await alice.recv(3.0)
        assert msg is not None and msg.get(35) in (b"BF", b"5")
        if msg.get(35) == b"BF":
            assert msg.get(926) == b"6" and b"operator" in msg.get(927)

    run_scenario(h, scenario)
    assert stored(h) is None and stored(h, "BOB") is not None


def test_a_damaged_users_file_refuses_the_change_and_the_session_goes_on(h: Harness) -> None:
    path = users_path(h.cfg)

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        doc = msgspec.json.decode(path.read_bytes())
        doc["crc32"] = "00000000"
        path.write_bytes(msgspec.json.encode(doc))
        status, text = await answer(alice, change(alice, "secret", "alice-2"))
        assert status == user_requests.OTHER and "could not be changed" in text
        await asyncio.sleep(1.2)  # a timer pass: the users read before are kept
        await alice.send("1", (112, "on"))
        assert (await alice.expect("0")).get(112) == b"on"

    run_scenario(h, scenario)
    assert b'"crc32":"00000000"' in path.read_bytes()  # not rewritten


def test_rest_logins_take_the_new_password_keys_and_the_limiter_go_on(rest_h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        gw = gateway(h)
        assert gw.api is not None
        url = f"http://127.0.0.1:{gw.api.port}"
        keyed = RestClient(url)
        try:
            await keyed.login("ALICE", "secret")
            alice = await logged_on(port)
            assert (await answer(alice, change(alice, "secret", "alice-2")))[0] == 5
            await keyed.call("GET", "/api/v1/openOrders", symbol="BTC-USD")  # the key goes on
            with pytest.raises(ApiCallError) as old:
                await keyed.login("ALICE", "secret")
            assert old.value.status == 401
            await keyed.login("ALICE", "alice-2")  # a burst of 3: 2 left after the 401
            for ref in ("w1", "w2"):  # wrong passwords over FIX spend REST's tokens too
                assert (await answer(alice, change(alice, "nope", "x", ref=ref)))[0] == 4
            with pytest.raises(ApiCallError) as limited:
                await keyed.login("ALICE", "alice-2")
            assert limited.value.status == 429
        finally:
            await keyed.close()

    run_scenario(rest_h, scenario)


def test_set_password_stdin_edges_and_exit_codes(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cfg = harness_config(instance, tmp_path)
    monkeypatch.setattr(procs.cli, "load_profile", lambda _name: cfg)
    store = UserStore(users_path(cfg))
    store.add("ALICE", "secret", 7, n=FAST)
    keys = ApiKeyStore(apikeys_path(cfg))
    alice = store.get("ALICE")
    assert alice is not None
    keys.create(alice, ["read"])

    def admin(stdin: bytes, *argv: str) -> int:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
        try:
            return procs.cli.main(["admin", "set-password", "--profile", "x", "--comp-id",
                                   "ALICE", *argv])  # fmt: skip
        except SystemExit as exc:
            return int(exc.code or 0)

    def right(password: str) -> bool:
        return UserStore(users_path(cfg)).verify("ALICE", password) is not None

    said = capsys.readouterr
    assert admin(b"", "--password-stdin") == 2 and "no password on stdin" in said().err
    assert admin(b"\r\n", "--password-stdin") == 2 and "no password on stdin" in said().err
    assert admin(b"\xff\n", "--password-stdin") == 2 and "not UTF-8 text (byte 0xff)" in said().err
    assert admin(b"a\x01b\n", "--password-stdin") == 2 and "SOH" in said().err
    assert admin(b"x", "--password-stdin", "--password", "y") == 2  # one or the other
    said()
    assert right("secret")
    assert admin(b"  two words \r\nsecond line\n", "--password-stdin") == 0
    assert right("  two words ") and "its API keys stay" in said().out
    apikeys_path(cfg).write_bytes(b"{damaged")
    assert admin(b"third\n", "--password-stdin", "--revoke-keys") == 1
    assert "password not changed" in said().err and right("  two words ")
