"""Cancel on disconnect per user (issue 5: "configurable per session"): `ringex admin
add-user --cancel-on-disconnect` sets it, `ringex admin set-user` changes it; a logged-on
session goes on and the gateway takes the new setting at its next timer pass, so the next
disconnect follows it. Over real TCP with a simplefix client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import procs.cli
from procs.common.topology import users_path
from procs.common.users import UserStore, rehashed, still_logged_on
from tests.unit.gateway.harness import Harness, config, settled
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


def test_still_logged_on_tells_a_setting_from_a_new_password(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    was = store.add("ALICE", "a", 7, n=1 << 4)
    changed = store.set_settings("ALICE", True)
    assert changed is not None and still_logged_on(changed, was) is changed
    assert still_logged_on(was, was) is was
    assert still_logged_on(rehashed(was, "b", n=1 << 4), was) is None
    assert still_logged_on(None, was) is None and still_logged_on(was, None) is None
    assert store.set_settings("NOBODY", True) is None


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
