"""Review 251 (hostile): credentials changed while they are in use. A user's API key revoked
(`ringex admin revoke-key`), its password changed (`set-password`, with and without
``--revoke-keys``), its settings changed (`set-user`), the user removed (`remove-user`) and
added again, while a private stream of its key is open, REST requests signed with it keep
coming and its FIX session is logged on; the same across two gateways sharing the users dir.

Reviewed: ``procs/gateway/rest.py`` (``signed``, ``require_user``, ``holder_unchanged``,
``tick``), ``rest_keys.py``, ``signing.py``, ``private_stream.py`` (``sweep``, ``_admit``),
``stream_subscriber.py`` (``close``), ``procs/common/apikeys.py`` (``get``, ``find``,
``revoke_user``), ``procs/common/users.py`` (``still_logged_on``, ``still_held``),
``procs/gateway/session.py`` (``on_timer``), ``procs/admin/users.py`` (``remove_user``,
``set_password``, ``_revoke_keys``), ``procs/admin/keys.py``, ``procs/admin/add_user.py``;
README's "Removing a user", "A new password", "API keys", the REST API's keys and stream.

Rig: ``rest_rig.rest_exchange`` (a real gateway over real HTTP, WebSocket and FIX, the
router and matcher in process), the admin commands run through ``procs.cli.main`` as
``test_admin_keys`` runs them; review 36's ``Pair`` for two gateways.

Faults (fixed: a key signs only for the user of its account and session id; remove-user of
a comp id that is no user but holds keys revokes them):
1. A key that outlived its user's removal signs for the user added again on the same account.
   ``RestApi.holder_unchanged`` (``procs/gateway/rest.py:489-492``) and so ``require_user``
   (``rest.py:479-487``), the stream's upgrade (``private_stream.py:234``) and its sweep
   (``private_stream.py:159``) compare only the key's comp id and account with the users
   file's, never the session id the key was made for (``ApiKey.session``), which README says
   a user added later never takes. A remove-user whose revocation of the keys failed (a full
   disk: the user is removed, exit 1) or was lost in a failover (README: "a key's revocation
   made in the old primary's last moments may be missing") leaves the keys refused only while
   the comp id is gone; `add-user ALICE --account 601` (the account stays, README says so)
   brings the old key back: it places orders for the new user (with the removed user's
   session id) and opens a private stream of her account. The FIX side ends such a session
   (README: "the same for a session whose user was removed and added again"). Fix:
   ``holder_unchanged`` also requires ``user.session == key.session`` (and ``require_user``'s
   fallback the same), binding a key to the user it was made for as ``still_logged_on``
   binds a FIX session.
2. remove-user's message when the keys could not be revoked lies. ``_revoke_keys``
   (``procs/admin/users.py:238-250``) says "... were not revoked ...; run it again once it
   can", but ``remove_user`` (``users.py:261-263``) answers a second run "no user 'ALICE'"
   (exit 1) before it opens the key file: the keys stay, listed by `ringex admin keys`, and
   no command the message names can revoke them. Fix: in ``remove_user``, a comp id that is
   not a user but still holds keys has them revoked (exit 0, saying how many); or
   ``_revoke_keys`` called from remove-user says to run `ringex admin revoke-key` on each of
   `ringex admin keys --comp-id C`.

Found sound (plain tests): `revoke-key` refuses the key's next request at once (401) and
closes its open stream with 1008 "API key revoked" within a second, the user's other key and
FIX session untouched; `set-user` leaves the FIX session, the stream and the keys alone;
`set-password` logs the FIX session out within a second, its keys and stream going on, and
with ``--revoke-keys`` the stream closes (1008) and the keys get 401, a login with the new
password working; remove-user logs FIX out, refuses the keys and closes the stream; with two
gateways a key made at gw1 opens a stream at gw2 at once, and `set-password --revoke-keys`
refuses it at both at once and closes the streams at both. By reading: no admin command
changes a key's scopes (a trade key becomes a read one only as a new key), and key ids and
secrets are random, so a request signed before a revoke cannot be replayed against a key
made again. Documented, not faults: a revoked key's stream may carry its fills for up to a
second (the sweep); keys survive `set-password` without ``--revoke-keys``; a signature's
replay memory is per gateway.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

import procs.cli
from procs.common.apikeys import ApiKeyStore
from procs.common.topology import apikeys_path
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import Client, Harness
from tests.unit.gateway.rest_rig import LIMIT, client, fix_user, rest_exchange, run
from tests.unit.gateway.test_admin_keys import admin
from tests.unit.gateway.test_review36_gateways import Pair, alice_at_two, rest_config, same_key
from tests.unit.gateway.test_review36_gateways import run as run_pair

ACCOUNT = "/api/v1/account"


@pytest.fixture
def harness(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    for h in rest_exchange(instance, tmp_path):
        monkeypatch.setattr(procs.cli, "load_profile", lambda _name, cfg=h.cfg: cfg)
        yield h


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> tuple[int, str]:
    """The close code and reason the server sent within ``timeout_s`` ((0, "") when the
    stream stayed open that long); other messages are skipped."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING):
            return int(msg.data), str(msg.extra or "")
        if msg.type is aiohttp.WSMsgType.CLOSED:
            return ws.close_code or 0, ""
    return 0, ""


async def refused_within(c: RestClient, timeout_s: float) -> bool:
    """Whether ``c``'s key is refused (401) within ``timeout_s``, asked every 0.1 s."""
    deadline = time.monotonic() + timeout_s
    while (status := (await c.request("GET", ACCOUNT))[0]) != 401:
        assert status == 200, status
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def upgrade(c: RestClient) -> int | str:
    """A private stream of ``c``'s key: the upgrade's HTTP status when refused, else the
    first event it sends (the stream then closed)."""
    try:
        ws = await c.stream()
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    try:
        msg = await ws.receive(timeout=3)
        return str(msg.json()["event"]) if msg.type is aiohttp.WSMsgType.TEXT else str(msg.type)
    finally:
        await ws.close()


def _full_disk_for_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ApiKeyStore, "_write", full)


# -- faults ------------------------------------------------------------------------------------


def test_a_removed_users_key_does_not_sign_for_the_user_added_again(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ALICE (account 601) has a key and its private stream open. `remove-user
    ALICE` removes her, but its revocation of her keys hits a full disk (exit 1, said). Her
    key is refused (401) within a second, her stream closed. The operator adds ALICE again on
    her account (what `add-user --username ALICE --account 601` stores): a new user, a new
    password, a new session id.
    Expected: the old key stays refused (401), requests and stream upgrades alike: a removed
    user's keys end with her (README), as her FIX sessions do when she is added again.
    Was (fixed): the key signs again for the new ALICE (200), places an order (200) and opens a
    private stream of her account (its snapshot comes)."""
    seen: dict[str, object] = {}

    async def scenario(api: RestApi, url: str) -> None:
        old = await client(url, "ALICE", "alice-pw")
        ws = await old.stream()
        try:
            await ws.receive(timeout=3)  # the snapshot
            before = harness.users.get("ALICE")
            assert before is not None
            with monkeypatch.context() as m:
                _full_disk_for_keys(m)
                assert admin("remove-user", "--comp-id", "ALICE") == 1
            assert "were not revoked" in capsys.readouterr().err
            assert await refused_within(old, 3.0)  # gone: refused (the users' view: 1 s)
            harness.add_user("ALICE", "new-pw", 601)  # added again, her account kept
            again = harness.users.get("ALICE")
            assert again is not None and again.session != before.session
            deadline = time.monotonic() + 3.0  # the gateways' view of the users (1 s)
            while (status := (await old.request("GET", ACCOUNT))[0]) == 401:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            seen["status"] = status
            order = await old.request("POST", "/api/v1/order", **LIMIT, price="90.00", quantity="1")
            seen["order"] = order[0]
            seen["upgrade"] = await upgrade(old)  # a new stream of the old key
        finally:
            await ws.close()
            await old.close()

    run(harness, scenario)
    assert seen == {"status": 401, "order": 401, "upgrade": 401}, seen


def test_remove_user_run_again_revokes_the_keys_its_first_run_could_not(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: `remove-user ALICE` with the key file unwritable (a full disk): ALICE is
    removed, her keys not, and the command says "run it again once it can". The disk is
    freed and the operator runs it again.
    Expected: the second run revokes ALICE's keys (exit 0), as the message promised.
    Was (fixed): the second run says "no user 'ALICE'" (exit 1) and the keys stay in the file."""
    store = ApiKeyStore(apikeys_path(harness.cfg))
    user = harness.users.get("ALICE")
    assert user is not None
    store.create(user, ["read", "trade"])
    with monkeypatch.context() as m:
        _full_disk_for_keys(m)
        assert admin("remove-user", "--comp-id", "ALICE") == 1
    first = capsys.readouterr().err
    assert "were not revoked" in first and "run it again" in first
    code = admin("remove-user", "--comp-id", "ALICE")
    second = capsys.readouterr().err
    left = ApiKeyStore(apikeys_path(harness.cfg)).keys_of("ALICE")
    assert (code, len(left)) == (0, 0), (code, second, left)


# -- sound -------------------------------------------------------------------------------------


async def login_status(url: str, user: str, password: str) -> int:
    """The status of a REST login (``POST apiKey``) as ``user`` with ``password``."""
    async with RestClient(url) as c:
        form = {"username": user, "password": password}
        return (await c.request("POST", "/api/v1/apiKey", signed=False, **form))[0]


async def answers(fix: Client, tag: str) -> bool:
    """Whether ``fix``'s session still answers a TestRequest (its Heartbeat names ``tag``)."""
    await fix.send("1", (112, tag))
    heartbeat = await fix.expect("0", timeout=3.0)
    return bool(heartbeat.get(112) == tag.encode())


def test_revoke_key_refuses_at_once_and_closes_its_stream_alone(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ALICE logged on over FIX, two REST keys, a private stream of the first.
    `ringex admin revoke-key` of the first.
    Expected: its next request 401 at once (README: "at every gateway at once"); its stream
    closed 1008 "API key revoked" within a second or two; the other key and the FIX session
    untouched.
    Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(harness, "ALICE", "alice-pw")
        first, second = (
            await client(url, "ALICE", "alice-pw"),
            await client(url, "ALICE", "alice-pw"),
        )
        ws = await first.stream()
        try:
            await ws.receive(timeout=3)  # the snapshot
            assert admin("revoke-key", f"--api-key={first.api_key}") == 0
            assert "revoked" in capsys.readouterr().out
            status, body = await first.request("GET", ACCOUNT)
            assert status == 401 and body["code"] == -2014, body
            assert await closed_with(ws, 2.5) == (1008, "API key revoked")
            assert (await second.request("GET", ACCOUNT))[0] == 200
            assert await answers(fix, "after-revoke")
        finally:
            fix.close()
            await ws.close()
            for c in (first, second):
                await c.close()

    run(harness, scenario)


def test_set_user_leaves_the_session_the_stream_and_the_keys_alone(harness: Harness) -> None:
    """Scenario: ALICE logged on over FIX, a REST key with its stream open; `set-user
    --comp-id ALICE --cancel-on-disconnect on --min-heartbeat-s 5`.
    Expected: README "the user's sessions go on": the FIX session answers past two timer
    passes, the stream is not closed, the key signs.
    Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(harness, "ALICE", "alice-pw")
        alice = await client(url, "ALICE", "alice-pw")
        ws = await alice.stream()
        try:
            await ws.receive(timeout=3)
            argv = ("--comp-id", "ALICE", "--cancel-on-disconnect", "on", "--min-heartbeat-s", "5")
            assert admin("set-user", *argv) == 0
            assert await closed_with(ws, 2.2) == (0, "")  # two sweeps, past the users' view
            assert await answers(fix, "after-set-user")
            assert (await alice.request("GET", ACCOUNT))[0] == 200
        finally:
            fix.close()
            await ws.close()
            await alice.close()

    run(harness, scenario)


def test_set_password_ends_the_fix_session_and_keeps_the_keys_and_stream(
    harness: Harness,
) -> None:
    """Scenario: ALICE on FIX and REST (a key, its stream); `set-password --comp-id ALICE
    --password pw2` (no --revoke-keys).
    Expected (README "A new password"): the FIX session logged out within a second, naming
    the operator; the API key and its stream go on; a REST login with the old password is
    refused, with the new one taken.
    Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(harness, "ALICE", "alice-pw")
        alice = await client(url, "ALICE", "alice-pw")
        ws = await alice.stream()
        try:
            await ws.receive(timeout=3)
            assert admin("set-password", "--comp-id", "ALICE", "--password", "pw2") == 0
            logout = await fix.expect("5", timeout=3.0)
            assert b"changed by the operator" in logout.get(58)
            assert (await alice.request("GET", ACCOUNT))[0] == 200
            assert await closed_with(ws, 1.2) == (0, "")
            assert await login_status(url, "ALICE", "alice-pw") == 401
            assert await login_status(url, "ALICE", "pw2") == 200
        finally:
            fix.close()
            await ws.close()
            await alice.close()

    run(harness, scenario)


def test_set_password_revoke_keys_closes_the_streams_at_both_gateways(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: two gateways sharing the users dir; ALICE's key (made at gw1) streams at gw1
    and at gw2, and signs at both; `set-password --comp-id ALICE --password pw2
    --revoke-keys`.
    Expected: the key 401 at both at once; both streams closed 1008 within a second or two;
    a login with the new password at gw2 gives a key that signs at gw1 at once.
    Now: so."""
    h = alice_at_two(instance, tmp_path, rest_config())
    monkeypatch.setattr(procs.cli, "load_profile", lambda _name, cfg=h.cfg: cfg)

    async def scenario(p: Pair) -> None:
        at1 = await client(p.url(p.gw1), "ALICE", "alice-pw")
        at2 = same_key(at1, p.url(p.gw2))
        streams = [await at1.stream(), await at2.stream()]
        try:
            for ws in streams:
                await ws.receive(timeout=3)
            argv = ("--comp-id", "ALICE", "--password", "pw2", "--revoke-keys")
            assert admin("set-password", *argv) == 0
            for c in (at1, at2):
                assert (await c.request("GET", ACCOUNT))[0] == 401
            for ws in streams:
                assert (await closed_with(ws, 2.5))[0] == 1008
            fresh = await client(p.url(p.gw2), "ALICE", "pw2")
            async with same_key(fresh, p.url(p.gw1)) as there:
                assert (await there.request("GET", ACCOUNT))[0] == 200
            await fresh.close()
        finally:
            for ws in streams:
                await ws.close()
            for c in (at1, at2):
                await c.close()

    try:
        run_pair(Pair(h), scenario)
    finally:
        h.close()


def test_remove_user_ends_fix_rest_and_stream(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ALICE on FIX and REST (a key, its stream); `remove-user --comp-id ALICE`.
    Expected (README "Removing a user"): the key 401 at once, the stream closed 1008, the FIX
    session logged out within a second; a REST login as ALICE refused; BOB untouched.
    Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(harness, "ALICE", "alice-pw")
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        ws = await alice.stream()
        try:
            await ws.receive(timeout=3)
            assert admin("remove-user", "--comp-id", "ALICE") == 0
            assert "1 API key(s) revoked" in capsys.readouterr().out
            assert (await alice.request("GET", ACCOUNT))[0] == 401
            assert (await closed_with(ws, 2.5))[0] == 1008
            assert b"removed or changed" in (await fix.expect("5", timeout=3.0)).get(58)
            assert await login_status(url, "ALICE", "alice-pw") == 401
            assert (await bob.request("GET", ACCOUNT))[0] == 200
        finally:
            fix.close()
            await ws.close()
            for c in (alice, bob):
                await c.close()

    run(harness, scenario)
