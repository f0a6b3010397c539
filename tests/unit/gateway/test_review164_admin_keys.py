"""Review 164 (hostile): `ringex admin keys` / `revoke-key` and the README paragraphs added
with them (API keys, a user's own settings, a new password, the gateway's UserRequest BE and
Username 553). The first three tests each named a fault and failed on the code as reviewed;
each passes since its fix (the same session). The rest are contracts that held."""

from __future__ import annotations

import asyncio
import errno
import json
import secrets
import time

import pytest

from procs.common.apikeys import ApiKeyStore
from procs.common.topology import apikeys_path, users_path
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Client, Harness, settled
from tests.unit.gateway.rest_rig import client, run, until_closed
from tests.unit.gateway.test_admin_keys import admin, harness

__all__ = ["harness"]  # the fixture, shared with test_admin_keys


def _key(h: Harness, comp_id: str = "ALICE", label: str = "") -> tuple[ApiKeyStore, str, str]:
    """A key made as a REST login makes one (no gateway needed): the store, id, secret."""
    store = ApiKeyStore(apikeys_path(h.cfg))
    user = h.users.get(comp_id)
    assert user is not None
    k = store.create(user, "read", label)
    store.compact()  # all in apikeys.json, which some tests edit by hand
    return store, k.key, k.secret


def _one_line_naming(err: str, what: str) -> None:
    assert err.count("\n") == 1 and what in err, err


# -- faults --------------------------------------------------------------------------------


def test_a_revoked_keys_stream_closes_within_a_second(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        sweeps: list[float] = []
        real = api.streams.sweep

        def sweep() -> None:
            sweeps.append(time.monotonic())
            real()

        api.streams.sweep = sweep  # type: ignore[method-assign]
        streamed = await client(url, "ALICE", "alice-pw", "read")
        other = await client(url, "ALICE", "alice-pw", "read")
        ws = await streamed.stream()
        try:
            await ws.receive(timeout=2)  # the snapshot
            seen = len(sweeps)
            await settled(lambda: len(sweeps) > seen, 2.0)
            at = sweeps[-1]
            await asyncio.sleep(at + 0.56 - time.monotonic())
            assert (await other.request("GET", "/api/v1/account"))[0] == 200  # the file re-statted
            await asyncio.sleep(max(0.0, at + 0.6 - time.monotonic()))
            assert admin("revoke-key", f"--api-key={streamed.api_key}") == 0
            assert "close within a second" in capsys.readouterr().out
            assert await until_closed(ws, 1.0) == 1008
        finally:
            await ws.close()
            for c in (streamed, other):
                await c.close()

    run(harness, scenario)


def test_revoke_key_takes_an_id_that_begins_with_a_dash(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: "-" + "A" * 31)
    store, key, _ = _key(harness)
    assert key.startswith("-")
    assert admin("revoke-key", "--api-key", key) == 0
    store.refresh()  # (its view of a moment ago held the key)
    assert store.find(key) is None


def test_keys_of_a_hand_edited_created_ms_is_no_traceback(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    _key(harness)
    path = apikeys_path(harness.cfg)
    doc = json.loads(path.read_text())
    doc["keys"][0]["created_ms"] = 10**20
    path.write_text(json.dumps({"keys": doc["keys"]}))
    assert admin("keys", "--json") == 0  # the JSON listing reads it
    capsys.readouterr()
    assert admin("keys") in (0, 1)


# -- contracts that hold -------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["crc", "empty", "not-json", "directory", "null"])
@pytest.mark.parametrize(
    "argv", [("keys",), ("keys", "--json"), ("keys", "--comp-id", "NOBODY"), ("revoke-key",)]
)
def test_a_damaged_key_file_is_exit_1_one_line_naming_it(
    harness: Harness, capsys: pytest.CaptureFixture[str], damage: str, argv: tuple[str, ...]
) -> None:
    _, key, secret = _key(harness)
    path = apikeys_path(harness.cfg)
    if damage == "crc":
        path.write_bytes(path.read_bytes().replace(b'"ALICE"', b'"ALICF"'))
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    else:
        path.write_bytes({"empty": b"", "not-json": b"{\x00\xff", "null": b"null"}[damage])
    if argv == ("revoke-key",):
        argv = ("revoke-key", f"--api-key={key}")  # = : an id may begin with -
    assert admin(*argv) == 1
    out = capsys.readouterr()
    assert out.out == ""
    _one_line_naming(out.err, str(path))
    assert secret not in out.err


def test_revoke_key_of_an_unwritable_file_is_exit_1_and_the_key_stays(
    harness: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key, secret = _key(harness)

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ApiKeyStore, "_write", full)
    assert admin("revoke-key", f"--api-key={key}") == 1
    out = capsys.readouterr()
    _one_line_naming(out.err, str(apikeys_path(harness.cfg)))
    assert "No space left" in out.err and secret not in out.err + out.out
    assert ApiKeyStore(apikeys_path(harness.cfg)).find(key) is not None


@pytest.mark.parametrize("odd", ["", "\x1b[2J\x07", "k" * 5000, "../../etc/passwd", "é\u202e"])
def test_revoke_key_of_an_odd_id_is_exit_1_one_safe_line(
    harness: Harness, capsys: pytest.CaptureFixture[str], odd: str
) -> None:
    _key(harness)
    before = apikeys_path(harness.cfg).read_bytes()
    assert admin("revoke-key", "--api-key", odd) == 1
    err = capsys.readouterr().err
    _one_line_naming(err, "no API key")
    assert "\x1b" not in err and "\u202e" not in err and len(err) < 300
    assert apikeys_path(harness.cfg).read_bytes() == before


def test_keys_json_has_the_readme_keys_and_no_secret(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    _, key, secret = _key(harness, label="ci bot")
    _, bob_key, bob_secret = _key(harness, "BOB")
    assert admin("keys", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [set(k) for k in listed] == [
        {"apiKey", "compId", "account", "scopes", "label", "createdMs"}
    ] * 2
    assert [k["apiKey"] for k in listed] == [key, bob_key]
    assert admin("keys") == 0
    text = capsys.readouterr().out
    assert text.count("\n") == 2 and "'ci bot'" in text
    assert admin("keys", "--comp-id", "BOB", "--json") == 0
    assert [k["apiKey"] for k in json.loads(capsys.readouterr().out)] == [bob_key]
    assert admin("revoke-key", f"--api-key={key}") == 0
    out = capsys.readouterr()
    assert "of ALICE (account 601) revoked" in out.out
    everything = text + out.out + out.err + json.dumps(listed)
    assert secret not in everything and bob_secret not in everything
    assert admin("keys", "--comp-id", "NOBODY", "--json") == 0
    assert capsys.readouterr().out.strip() == "[]"


@pytest.mark.parametrize(
    "argv",
    [
        ("revoke-key",),
        ("revoke-key", "--api-key", "a", "--api-key", "b"),
        ("keys", "--comp-id", "A", "--comp-id", "B"),
        ("keys", "--comp-id"),
        ("keys", "extra"),
    ],
)
def test_keys_argparse_edges_are_usage_errors(harness: Harness, argv: tuple[str, ...]) -> None:
    _, key, _ = _key(harness)
    assert admin(*argv) == 2
    assert ApiKeyStore(apikeys_path(harness.cfg)).find(key) is not None


def test_set_user_and_set_password_exit_codes_as_the_readme_says(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    users = users_path(harness.cfg)
    before = users.read_bytes()
    crossed = ("--min-heartbeat-s", "90", "--max-heartbeat-s", "60")
    cases = [
        (("set-user", "--comp-id", "ALICE"), 2),  # nothing to set
        (("set-user", "--comp-id", "ALICE", *crossed), 2),
        (("set-user", "--comp-id", "ALICE", "--max-heartbeat-s", "0"), 2),
        (("set-user", "--comp-id", "ALICE", "--sending-time-tolerance-s", "86401"), 2),
        (("set-user", "--comp-id", "ALICE", "--min-heartbeat-s", "\u0665"), 2),  # Arabic 5
        (("set-user", "--comp-id", "NOBODY", "--reset-on-logon", "on"), 1),
        (("set-password", "--comp-id", "NOBODY", "--password", "x"), 1),
        (("set-password", "--comp-id", "ALICE", "--password", "a\x01b"), 2),
    ]  # fmt: skip
    for argv, code in cases:
        assert admin(*argv) == code, argv
        if code == 1:
            assert "users: ALICE, BOB" in capsys.readouterr().err
    assert users.read_bytes() == before  # nothing written
    assert admin("set-user", "--comp-id", "ALICE", "--sending-time-tolerance-s", "86400") == 0
    assert admin("set-user", "--comp-id", "ALICE", "--cancel-on-disconnect", "on") == 0
    capsys.readouterr()
    assert admin("users", "--json") == 0
    alice = json.loads(capsys.readouterr().out)[0]
    assert alice["sendingTimeToleranceS"] == 86400 and alice["cancelOnDisconnect"] is True
    assert alice["resetOnLogon"] is None and alice["minHeartbeatS"] is None
    assert alice["maxHeartbeatS"] is None


def test_username_553_and_user_request_be_as_the_readme_says(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        assert harness.gateway is not None
        port = harness.gateway.port
        stranger = Client("ALICE")
        await stranger.connect(port)
        await stranger.send("A", (98, 0), (108, 30), (553, "BOB"), (554, "wrong"))
        logout = await stranger.expect("5")
        text = logout.get(58).decode()
        assert "BOB" in text and "ALICE" in text and "password" not in text.lower(), text
        assert await stranger.closed()
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.logon("alice-pw")
        change = ((554, "alice-pw"), (925, "new-pw"))
        await alice.send("BE", (923, "r1"), (924, 3), (553, "BOB"), *change)
        assert (await alice.expect("BF")).get(926) == b"3"
        await alice.send("BE", (923, "r2"), (924, 3), (553, "ALICE"), *change)
        assert (await alice.expect("BF", 5.0)).get(926) == b"5"
        await alice.send("BE", (923, "r3"), (924, 4), (553, "ALICE"))
        assert (await alice.expect("BF")).get(926) == b"1"  # the session goes on
        rest = await client(url, "ALICE", "new-pw")  # REST login takes the new password
        await rest.close()
        await alice.aclose()

    run(harness, scenario)
