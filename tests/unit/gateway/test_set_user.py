"""Cancel on disconnect per user (issue 5: "configurable per session"): `ringex admin
add-user --cancel-on-disconnect` sets it, `ringex admin set-user` changes it; a logged-on
session goes on and the gateway takes the new setting at its next timer pass, so the next
disconnect follows it. Over real TCP with a simplefix client."""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import procs.cli
import procs.common.change_log
import procs.common.users
from procs.common.apikeys import ApiKeyStore
from procs.common.crc_frames import crc_hex
from procs.common.topology import users_path
from procs.common.users import UserStore, rehashed, still_logged_on
from tests.unit.gateway.harness import Client, Harness, config, settled, utc
from tests.unit.gateway.test_gateway import logged_on, order, run
from tests.unit.router.test_router import Exchange
from tests.unit.router.test_router import config as router_config
from tests.unit.test_review_admin_bugs import _Pump


def admin(*argv: str) -> int:
    try:
        return procs.cli.main(["admin", argv[0], "--profile", "x", *argv[1:]])
    except SystemExit as exc:
        return int(exc.code or 0)


def harness(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on: bool) -> Harness:
    """ALICE (account 7) and BOB (8) under a gateway whose cancel_on_disconnect is ``on``;
    `ringex admin --profile x` works on its users file."""
    h = Harness(config(instance, tmp_path, cancel_on_disconnect=on))
    for k, comp in enumerate(("ALICE", "BOB")):
        h.add_user(comp, "secret", 7 + k)
        h.fund(7 + k)
    monkeypatch.setattr(procs.cli, "load_profile", lambda _name: h.cfg)
    return h


@pytest.fixture
def off(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    h = harness(instance, tmp_path, monkeypatch, on=False)
    yield h
    h.close()


@pytest.fixture
def on(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    h = harness(instance, tmp_path, monkeypatch, on=True)
    yield h
    h.close()


async def rest_two_and_leave(h: Harness, port: int, comp: str, account: int) -> None:
    """``comp`` logs on, rests two orders, is switched by the operator (the test's ``admin``
    call before this), stays logged on past a timer pass, then disconnects."""
    c = await logged_on(port, comp)
    for k in range(2):
        await c.send("D", *order(f"{comp}{k}", "1", "1.00", f"9{k}.00"))
        assert (await c.expect("8")).get(150) == b"0"
    await asyncio.sleep(1.3)  # a timer pass takes the new setting: the session goes on
    await c.send("1", (112, "still-on"))
    assert (await c.expect("0")).get(112) == b"still-on"
    await c.aclose()
    await asyncio.sleep(0.5)


def test_set_user_on_cancels_at_the_next_disconnect_without_a_logout(
    off: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    assert admin("set-user", "--comp-id", "ALICE", "--cancel-on-disconnect", "on") == 0
    assert "cancel on disconnect on; its sessions go on" in capsys.readouterr().out

    async def scenario(h: Harness, port: int) -> None:
        await rest_two_and_leave(h, port, "ALICE", 7)
        await settled(lambda: not h.router.sequencer.accounts.open_orders(7))
        assert not h.router.sequencer.accounts.open_orders(7)
        await rest_two_and_leave(h, port, "BOB", 8)  # the gateway's setting: off
        assert h.router.sequencer.accounts.open_orders(8) == 2

    run(off, scenario)


def test_a_change_while_logged_on_is_taken_and_off_keeps_the_orders(
    on: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port, "ALICE")
        await c.send("D", *order("a0", "1", "1.00", "90.00"))
        assert (await c.expect("8")).get(150) == b"0"
        assert admin("set-user", "--comp-id", "ALICE", "--cancel-on-disconnect", "off") == 0
        await asyncio.sleep(1.3)
        gw = h.gateway
        assert gw is not None  # the users file read again (a loaded host: later)
        await settled(
            lambda: (u := gw.live["ALICE"].user) is not None and u.cancel_on_disconnect is False
        )
        await c.send("1", (112, "still-on"))
        assert (await c.expect("0")).get(112) == b"still-on"  # not logged out
        await c.aclose()
        await asyncio.sleep(0.5)
        assert h.router.sequencer.accounts.open_orders(7) == 1  # off: it rests
        await rest_two_and_leave(h, port, "BOB", 8)  # the gateway's setting: on
        await settled(lambda: not h.router.sequencer.accounts.open_orders(8))
        assert not h.router.sequencer.accounts.open_orders(8)

    run(on, scenario)
    assert "cancel on disconnect off" in capsys.readouterr().out
    assert admin("users", "--json") == 0
    listed = {u["compId"]: u["cancelOnDisconnect"] for u in json.loads(capsys.readouterr().out)}
    assert listed == {"ALICE": False, "BOB": None}
    assert admin("users") == 0
    text = capsys.readouterr().out
    assert "cancel on disconnect off" in text and "cancel on disconnect gateway" in text
    assert admin("set-user", "--comp-id", "ALICE", "--cancel-on-disconnect", "gateway") == 0
    user = UserStore(users_path(on.cfg)).get("ALICE")
    assert user is not None and user.cancel_on_disconnect is None


def test_set_user_refuses_what_it_cannot_do(
    off: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    before = UserStore(users_path(off.cfg)).users()
    assert admin("set-user", "--comp-id", "CAROL", "--cancel-on-disconnect", "on") == 1
    assert "no user 'CAROL' (users: ALICE, BOB)" in capsys.readouterr().err
    assert admin("set-user", "--comp-id", "ALICE", "--cancel-on-disconnect", "yes") == 2
    assert admin("set-user", "--comp-id", "ALICE") == 2  # the setting is required
    assert UserStore(users_path(off.cfg)).users() == before


def test_still_logged_on_tells_a_setting_and_an_own_password_from_the_operators(
    tmp_path: Path,
) -> None:
    store = UserStore(tmp_path / "users.json")
    was = store.add("ALICE", "a", 7, n=1 << 4)
    changed = store.set_settings("ALICE", cancel_on_disconnect=True)
    assert changed is not None and still_logged_on(changed, was) is changed
    assert still_logged_on(was, was) is was
    own = rehashed(was, "b", n=1 << 4)  # the user's own change (a UserRequest): it goes on
    assert still_logged_on(own, was) is own
    by_operator = msgspec.structs.replace(own, epoch=1)  # `set-password`: a new epoch
    assert still_logged_on(by_operator, was) is None
    assert still_logged_on(None, was) is None and still_logged_on(was, None) is None
    assert store.set_settings("NOBODY", reset_on_logon=True) is None


def test_add_user_takes_its_setting(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`add-user --cancel-on-disconnect on` stores it; without the flag, the gateway's (None)."""
    ex = Exchange(router_config(instance, tmp_path))
    monkeypatch.setattr(procs.cli, "load_profile", lambda _name: ex.cfg)
    try:
        with _Pump(ex):
            argv = ["--password", "p", "--deposit", "USD=1"]
            assert (
                admin("add-user", "--username", "CAROL", *argv, "--cancel-on-disconnect", "on") == 0
            )
            assert admin("add-user", "--username", "DAN", *argv) == 0
    finally:
        ex.stop()
    store = UserStore(users_path(ex.cfg))
    carol, dan = store.get("CAROL"), store.get("DAN")
    assert carol is not None and carol.cancel_on_disconnect is True
    assert dan is not None and dan.cancel_on_disconnect is None


async def logon_answer(
    port: int, comp: str, *pairs: tuple[int, object], sending_time: bytes | None = None
) -> bytes:
    """The MsgType (and Text, for a Logout) a Logon of ``comp`` at MsgSeqNum 1 gets:
    ``pairs`` after 98; sent at ``sending_time`` (None: now)."""
    client = Client(comp)
    await client.connect(port)
    msg = client.message("A", (98, 0), *pairs, (554, "secret"), sending_time=sending_time or utc())
    await client.send_raw(msg.encode())
    msg = await client.recv(3.0)
    await client.aclose()
    assert msg is not None
    return bytes(msg.get(35)) + b" " + bytes(msg.get(58) or b"")


def test_a_users_own_session_settings_hold_from_its_next_logon(
    off: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """ALICE: reset on logon, HeartBtInt 5..60, SendingTime within 300 s; BOB: the gateway's
    (no reset, 1..300, 120 s); CAROL: SendingTime within 5 s."""
    off.add_user("CAROL", "secret", 9)
    argv = ["--reset-on-logon", "on", "--min-heartbeat-s", "5", "--max-heartbeat-s", "60"]
    assert admin("set-user", "--comp-id", "ALICE", *argv, "--sending-time-tolerance-s", "300") == 0
    assert admin("set-user", "--comp-id", "CAROL", "--sending-time-tolerance-s", "5") == 0
    capsys.readouterr()

    async def scenario(h: Harness, port: int) -> None:
        assert (await logon_answer(port, "ALICE", (108, 2))).startswith(
            b"5 HeartBtInt 2 outside 5..60"
        )
        assert (await logon_answer(port, "BOB", (108, 2), (141, "Y"))).startswith(b"A")
        assert (await logon_answer(port, "ALICE", (108, 90))).startswith(b"5 HeartBtInt 90")
        assert (await logon_answer(port, "BOB", (108, 90), (141, "Y"))).startswith(b"A")
        late = utc(-200)
        assert (await logon_answer(port, "ALICE", (108, 30), sending_time=late)).startswith(b"A")
        refused = await logon_answer(port, "BOB", (108, 30), (141, "Y"), sending_time=late)
        assert refused.startswith(b"5 SendingTime accuracy problem") and b"120 s" in refused
        refused = await logon_answer(port, "CAROL", (108, 30), sending_time=utc(-60))
        assert refused.startswith(b"5 SendingTime accuracy problem") and b"5 s off" in refused
        # reset on logon: each connection starts at 1 without 141=Y; BOB's second is too low
        for comp, second in (("ALICE", b"A"), ("BOB", b"5 MsgSeqNum too low")):
            for _ in range(2):
                answer = await logon_answer(port, comp, (108, 30))
            assert answer.startswith(second), (comp, answer)
        # in session, ALICE's messages 200 s off are taken; BOB's would be rejected
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.logon("secret")
        await alice.send("1", (112, "late"), sending_time=utc(-200))
        assert (await alice.expect("0")).get(112) == b"late"

    run(off, scenario)
    assert admin("users") == 0
    out = capsys.readouterr().out
    assert (
        "reset on logon on, min heartbeat 5 s, max heartbeat 60 s, sending time tolerance 300 s"
        in out
    )
    assert admin("users", "--json") == 0
    listed = {u["compId"]: u for u in json.loads(capsys.readouterr().out)}
    assert listed["ALICE"]["minHeartbeatS"] == 5 and listed["BOB"]["minHeartbeatS"] is None
    assert listed["CAROL"]["sendingTimeToleranceS"] == 5


def test_set_user_refuses_crossed_bounds_and_bad_values(
    off: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    before = UserStore(users_path(off.cfg)).users()
    assert (
        admin("set-user", "--comp-id", "ALICE", "--min-heartbeat-s", "400") == 2
    )  # gateway max 300
    assert "heartbeat bounds would be 400..300 s under gateway 'gw1'" in capsys.readouterr().err
    for bad in ("0", "86401", "5s", "-1", "\u0667"):
        assert admin("set-user", "--comp-id", "ALICE", "--sending-time-tolerance-s", bad) == 2
    assert (
        admin("set-user", "--comp-id", "ALICE", "--reset-on-logon", "on", "--reset-on-logon", "off")
        == 2
    )
    assert admin("set-user", "--comp-id", "ALICE") == 2
    assert "nothing to set" in capsys.readouterr().err
    assert UserStore(users_path(off.cfg)).users() == before
    assert admin("set-user", "--comp-id", "ALICE", "--max-heartbeat-s", "60") == 0
    assert admin("set-user", "--comp-id", "ALICE", "--max-heartbeat-s", "gateway") == 0
    assert UserStore(users_path(off.cfg)).users() == before  # back as it was


def test_a_users_file_of_an_earlier_build_reads_and_is_written_as_it_was(tmp_path: Path) -> None:
    """Users without session settings are written without their keys, so an earlier build's
    file keeps its CRC here and a file written here reads there (its User forbids unknown
    keys)."""
    store = UserStore(tmp_path / "users.json")
    store.add("ALICE", "a", 7, n=1 << 4)
    store.compact()  # (the snapshot the log's changes go into)
    written = json.loads((tmp_path / "users.json").read_bytes())
    assert set(written["users"][0]) == {
        "comp_id", "account", "session", "salt", "digest", "n", "r", "p", "cancel_on_disconnect"
    }  # fmt: skip
    old = {"users": written["users"], "last_session": 1}
    old["crc32"] = crc_hex(msgspec.json.encode([written["users"], 1]))  # as the old build did
    (tmp_path / "users.json").write_bytes(msgspec.json.encode(old))
    reread = UserStore(tmp_path / "users.json")
    assert reread.verify("ALICE", "a") is not None
    reread.set_settings("ALICE", min_heartbeat_s=5)
    reread.compact()
    assert json.loads((tmp_path / "users.json").read_bytes())["users"][0]["min_heartbeat_s"] == 5
    assert UserStore(tmp_path / "users.json").get("ALICE").min_heartbeat_s == 5  # type: ignore[union-attr]


def test_a_users_file_that_cannot_be_written_is_one_line_exit_1(
    off: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk under set-user, set-password or set-password --revoke-keys's key file:
    exit 1 naming the file and why, not a traceback; the users file stays as it was."""
    before = UserStore(users_path(off.cfg)).users()

    def full(*_args: object, **_kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(procs.common.change_log, "write_all", full)
    assert admin("set-user", "--comp-id", "ALICE", "--reset-on-logon", "on") == 1
    assert "ALICE not changed: the users file" in capsys.readouterr().err
    assert admin("set-password", "--comp-id", "ALICE", "--password", "x") == 1
    err = capsys.readouterr().err
    assert "ALICE's password not changed" in err and "No space left on device" in err
    assert UserStore(users_path(off.cfg)).users() == before
    monkeypatch.undo()
    monkeypatch.setattr(procs.cli, "load_profile", lambda _name: off.cfg)
    monkeypatch.setattr(ApiKeyStore, "revoke_user", full)
    assert admin("set-password", "--comp-id", "BOB", "--password", "y", "--revoke-keys") == 1
    captured = capsys.readouterr()
    assert "password changed" in captured.out and "were not revoked" in captured.err
