"""A FIX user changes its own password over its session (UserRequest BE, UserRequestType 3 ->
UserResponse BF), as FIX 4.4 has a client do it, and an operator changes one with `ringex
admin set-password`: over real TCP, a simplefix client against the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import simplefix  # ships no type information

import procs.cli
from procs.common.apikeys import ApiKeyStore
from procs.common.topology import apikeys_path, users_path
from procs.common.users import UserStore, rehashed, still_logged_on
from procs.gateway import user_requests
from tests.unit.gateway.harness import Client, Harness, run_scenario, small_ring_exchange


@pytest.fixture
def h(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE (account 7) and BOB (8), password "secret"; three wrong passwords a user before
    the limit."""
    yield small_ring_exchange(
        instance, tmp_path, 4096, users=("ALICE", "BOB"), failed_login_burst=3
    )


def change(
    client: Client, old: str | None, new: str | None, ref: str = "r1", user: str = "ALICE",
    poss_resend: bool = False,
) -> simplefix.FixMessage:  # fmt: skip
    pairs: list[tuple[int, object]] = [(923, ref), (924, 3), (553, user)]
    if old is not None:
        pairs.append((554, old))
    if new is not None:
        pairs.append((925, new))
    return client.message("BE", *pairs, poss_resend=poss_resend)


async def answer(client: Client, msg: simplefix.FixMessage) -> tuple[int, str]:
    await client.send_raw(msg.encode())
    bf = await client.expect("BF", timeout=5.0)
    return int(bf.get(926)), bf.get(927).decode()


async def logs_on(port: int, comp: str, password: str) -> bool:
    client = Client(comp)
    await client.connect(port)
    await client.send("A", (98, 0), (108, 30), (141, "Y"), (554, password))
    msg = await client.recv(3.0)
    await client.aclose()
    assert msg is not None
    return bool(msg.get(35) == b"A")


def test_a_session_changes_its_password_and_goes_on(h: Harness) -> None:
    before = h.users.get("ALICE")

    async def scenario(h: Harness, port: int) -> None:
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.logon("secret", reset=True)
        msg = change(alice, "secret", "n3w-pässword")
        assert await answer(alice, msg) == (user_requests.PASSWORD_CHANGED, "password changed")
        bf = alice.received[-1]
        assert bf.get(923) == b"r1" and bf.get(553) == b"ALICE"
        await asyncio.sleep(1.3)  # a timer pass: its own change is not the operator's
        await alice.send("1", (112, "still-on"))
        assert (await alice.expect("0")).get(112) == b"still-on"
        # a PossResend copy of the request is answered as before, not acted on again (a
        # second change would find "secret" wrong now)
        copy = change(alice, "secret", "n3w-pässword", poss_resend=True)
        assert await answer(alice, copy) == (user_requests.PASSWORD_CHANGED, "password changed")
        await alice.aclose()
        assert not await logs_on(port, "ALICE", "secret")
        assert await logs_on(port, "ALICE", "n3w-pässword")
        assert await logs_on(port, "BOB", "secret")  # another user's is its own

    run_scenario(h, scenario)
    after = UserStore(users_path(h.cfg)).get("ALICE")
    assert before is not None and after is not None
    assert (after.account, after.session) == (before.account, before.session)
    assert after.digest != before.digest
    audit = b"".join(p.read_bytes() for p in Path(h.cfg.var_dir).rglob("audit.log*"))
    assert b"ALICE" in audit and b"n3w" not in audit and b"554=secret" not in audit


def test_a_wrong_password_another_user_and_the_other_types(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.logon("secret", reset=True)
        status, text = await answer(alice, change(alice, "wrong", "x", ref="r2"))
        assert (status, text) == (user_requests.PASSWORD_INCORRECT, "password incorrect")
        status, text = await answer(alice, change(alice, "secret", "x", ref="r3", user="BOB"))
        assert status == user_requests.NOT_RECOGNISED and "BOB" in text and "ALICE" in text
        status, text = await answer(alice, change(alice, "secret", None, ref="r4"))
        assert status == user_requests.OTHER and "NewPassword (925)" in text
        status, text = await answer(alice, change(alice, "secret", "y" * 1025, ref="r5"))
        assert status == user_requests.OTHER and "1025 characters, the limit is 1024" in text
        for kind, status, said in ((4, 1, "logged on"), (1, 6, "(log on)"), (2, 6, "Logout")):
            msg = alice.message("BE", (923, f"t{kind}"), (924, kind), (553, "ALICE"))
            got = await answer(alice, msg)
            assert got[0] == status and said in got[1], got
        await alice.send("BE", (923, "bad"), (924, 9), (553, "ALICE"))
        reject = await alice.expect("3")
        assert reject.get(373) == b"5" and reject.get(371) == b"924"  # a value not in 924's enum
        # wrong passwords spend the user's tokens as failed Logons do: the third is the last
        for ref in ("w1", "w2"):
            assert (await answer(alice, change(alice, "nope", "z", ref=ref)))[0] == 4
        status, text = await answer(alice, change(alice, "secret", "z", ref="w3"))
        assert status == user_requests.OTHER and "too many wrong passwords for ALICE" in text
        await alice.aclose()
        assert await logs_on(port, "BOB", "secret")

    run_scenario(h, scenario)
    user = UserStore(users_path(h.cfg)).get("ALICE")
    assert user is not None and user == h.users.get("ALICE")  # nothing changed


def test_the_operator_sets_a_password_and_the_session_logs_on_again(
    h: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(procs.cli, "load_profile", lambda _name: h.cfg)
    keys = ApiKeyStore(apikeys_path(h.cfg))
    for comp in ("ALICE", "BOB"):
        user = h.users.get(comp)
        assert user is not None
        keys.create(user, ["read"])

    def admin(*argv: str) -> int:
        try:
            return procs.cli.main(["admin", "set-password", "--profile", "x", *argv])
        except SystemExit as exc:
            return int(exc.code or 0)

    async def scenario(h: Harness, port: int) -> None:
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.logon("secret", reset=True)
        assert admin("--comp-id", "ALICE", "--password", "operator-set") == 0
        assert "its API keys stay" in capsys.readouterr().out
        logout = await alice.expect("5", timeout=3.0)  # its next timer pass
        assert b"removed or changed by the operator" in logout.get(58)
        assert await logs_on(port, "ALICE", "operator-set")
        assert not await logs_on(port, "ALICE", "secret")

    run_scenario(h, scenario)
    assert admin("--comp-id", "BOB", "--password", "b2", "--revoke-keys") == 0
    assert "1 API key(s) revoked" in capsys.readouterr().out
    after = ApiKeyStore(apikeys_path(h.cfg))
    assert not after.keys_of("BOB") and len(after.keys_of("ALICE")) == 1
    assert admin("--comp-id", "CAROL", "--password", "x") == 1
    assert "no user 'CAROL' (users: ALICE, BOB)" in capsys.readouterr().err
    assert admin("--comp-id", "BOB", "--password", "") == 2
    assert "must not be empty" in capsys.readouterr().err
    assert admin("--comp-id", "BOB", "--password", "a\x01b") == 2
    assert "SOH" in capsys.readouterr().err
    store = UserStore(users_path(h.cfg))
    assert store.verify("BOB", "b2") is not None and store.verify("ALICE", "operator-set")


def test_change_password_refuses_the_operators_change_meanwhile(tmp_path: Path) -> None:
    """A session's own change (``change_password``) stands on the user it logged on as: a
    setting changed meanwhile is kept, an operator's new password (a new epoch) or removal
    wins; the operator's change ends the user's sessions, its own does not."""
    store = UserStore(tmp_path / "users.json")
    logged_on = store.add("ALICE", "a", 7, n=1 << 4)
    other = UserStore(tmp_path / "users.json")
    assert other.set_settings("ALICE", min_heartbeat_s=5) is not None
    stored = store.change_password(logged_on, rehashed(logged_on, "b", n=1 << 4))
    assert stored is not None and stored.min_heartbeat_s == 5 and stored.epoch == 0
    assert still_logged_on(stored, logged_on) is stored  # its own change: it goes on
    assert UserStore(tmp_path / "users.json").verify("ALICE", "b") is not None
    by_operator = other.set_password("ALICE", "c", n=1 << 4)
    assert by_operator is not None and by_operator.epoch == 1
    assert still_logged_on(by_operator, stored) is None  # the operator's: logged out
    assert store.change_password(stored, rehashed(stored, "d", n=1 << 4)) is None
    assert UserStore(tmp_path / "users.json").verify("ALICE", "c") is not None
    assert other.set_password("NOBODY", "x") is None
    assert other.remove("ALICE")
    assert store.change_password(by_operator, rehashed(by_operator, "e", n=1 << 4)) is None


def test_a_logon_whose_username_is_not_its_comp_id_is_refused(h: Harness) -> None:
    """A user is its CompID: a Logon's Username (553), where it is given, must be its
    SenderCompID, else a Logout naming both before any password check (a client set up to
    log on as a Username would otherwise be taken as its CompID's user without a word)."""

    async def scenario(h: Harness, port: int) -> None:
        for username, kind in (("BOB", b"5"), ("ALICE", b"A")):
            client = Client("ALICE")
            await client.connect(port)
            await client.send("A", (98, 0), (108, 30), (141, "Y"), (553, username), (554, "secret"))
            msg = await client.recv(3.0)
            await client.aclose()
            assert msg is not None and msg.get(35) == kind, msg
            if kind == b"5":
                assert b"Username (553) 'BOB' is not the SenderCompID 'ALICE'" in msg.get(58)

    run_scenario(h, scenario)
