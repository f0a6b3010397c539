"""Review 244: taking a user off a running exchange while it trades.

Reviewed: ``procs/admin/users.py`` (``remove_user``: the removal, the keys revoked, ``SETTLE_S``,
the cancel-all), ``procs/admin/add_user.py`` (a comp id added again), ``procs/gateway/session.py``
(``on_timer``: the only place a removed user's session ends), ``procs/gateway/server.py``
(``_timers``), ``procs/gateway/live_sessions.py``, ``procs/common/apikeys.py`` (``get``: the key
looked up per request), ``procs/router/intake.py`` (the admin ring read after the gateways'),
against README's Operate ("Removing a user", "API keys").

Method: one real instance (``ringex run --detach``: matcher, router, gateway gw1 with FIX and
REST; no market data, no database), users by ``ringex admin add-user``, the FIX client of
``tests/unit/gateway/harness.py``, the helpers of review 240 (``ringex``, ``live_book``,
``balances``). A stalled gateway is gw1 SIGSTOPped while its loop runs (REST requests keep it
busy; a stop inside ``epoll_wait`` is retried: that one is woken with EINTR, and libuv then
runs its overdue timer before any socket, which no real stall does) and SIGCONTed
``STALL_S`` (2.5 s) later, past ``SETTLE_S``.

Fault (1, fixed: the command waits for the claim, which a gateway lets go once what the
ended session sent is in the router's ring, ``LiveSessions.let_go``):
1. ``procs/admin/users.py:283``: ``remove-user --cancel-orders`` sleeps ``SETTLE_S`` (1.5 s) and
   trusts every gateway's timer pass (``procs/gateway/server.py:416``, ``session.py:243``) to
   have ended the user's FIX sessions; nothing checks. A gateway stalled past it (a GC pause, a
   loaded host) still serves the session when the cancel-all is sequenced; on waking it reads
   the order the removed user sent after the removal before its overdue pass logs the session
   out, and publishes it: the order rests after "open orders cancelled" (exit 0), its money
   held, and the user, logged out before the ack comes, was never told of it either. A user
   with cancel on disconnect is safe (the Logout's cancel takes it); the default is off.
   Fix: in ``remove_user``, after the removal, wait (deadline, say 10 s) until no gateway holds
   the user's logged-on claim (``try_lock`` on ``var/<instance>/gateway/logged-on/<hex>.lock``
   succeeds; a gateway could write its name into the lock file to be named), then send the
   cancel-all; past the deadline exit 1 naming the gateway (or the lock) and the
   ``cancel-all --account`` to run. The session closes before its claim is released and
   publishes what it read first, and the router reads the gateways' rings before the admin
   ring, so that closes this window; airtight for any stall (an order read but held in the
   gateway's outgoing queue, a ring full) needs the router itself to refuse the account: an
   admin command that closes the account to new orders (journaled, ``UNKNOWN_ACCOUNT`` or a
   new code) sequenced with the mass cancel, and reopened by ``add-user --account``.

Sound: with cancel on disconnect on, the same stall leaves nothing; a REST order posted to the
stalled gateway after the removal is refused 401 when it is read (the key file checked per
request); a user removed and added again at once: its old session logged out ("removed or
changed"), the new one a new account and session id, its mass status and openOrders empty,
the old account's order still resting and its money held, as README says.

Not repeated: review 240 (remove-user under load, no stall), review 45 and 203 (exit codes,
damaged files), review 161 and 164 (password changes, key revocation, streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config import load_profile
from procs.common.file_locks import try_lock
from procs.common.run_files import read_status
from procs.common.topology import session_claim, users_path
from procs.common.users import UserStore
from procs.gateway.rest_client import RestClient
from tests.free_ports import free_port
from tests.unit.gateway.harness import Client, utc
from tests.unit.supervisor.test_review240_emergency_tools import (
    Venue,
    balances,
    live_book,
    ringex,
    until,
)

DEPOSIT = ("--deposit=USD=1000000", "--deposit=BTC=1000")


@contextlib.contextmanager
def running_venue(tmp: Path, name: str, top: str = "") -> Iterator[Venue]:
    """One real instance (``ringex run --detach``): a matcher, the router, gateway gw1 (FIX
    and REST), no market data, no database; ``top``: more top-level settings."""
    profile = tmp / "venue.toml"
    profile.write_text(
        f'instance = "t{os.getpid()}x{name}"\nvar_dir = "{tmp / "var"}"\n{top}'
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        '[ring]\ncapacity = 4096\n[wait]\nstrategy = "blocking"\npark_timeout_s = 0.005\n'
        "[risk]\nfee_account = 1\nmax_commands_per_s = 100000\n[supervisor]\nmetrics = false\n"
        f'[[gateways]]\nname = "gw1"\nid = 1\nport = {free_port()}\nreset_on_logon = true\n'
        f"[gateways.rest]\nport = {free_port()}\nlogin_rate_per_s = 100\nlogin_burst = 100\n"
    )
    code, _, err = asyncio.run(ringex(profile, "run", "--detach", "--timeout", "60"))
    assert code == 0, err
    try:
        cfg = load_profile(str(profile))
        rest = cfg.gateways[0].rest
        assert rest is not None
        yield Venue(cfg, profile, cfg.gateways[0].port, f"http://127.0.0.1:{rest.port}", "")
    finally:
        for p in (read_status(load_profile(str(profile))) or {}).get("processes", []):
            if p["pid"]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p["pid"], signal.SIGCONT)
        asyncio.run(ringex(profile, "stop", "--timeout", "60"))


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    with running_venue(tmp_path_factory.mktemp("r244"), "244") as v:
        yield v


async def add_user(venue: Venue, user: str, *more: str) -> int:
    """``user`` added (password "pw", funded); its account."""
    code, out, err = await ringex(venue.profile, "admin", "add-user", "--username", user,
                                  "--password", "pw", *DEPOSIT, *more)  # fmt: skip
    assert code == 0, err
    venue.accounts[user] = account = int(out.split("account ")[1].split(",")[0])
    return account


def gateway_pid(venue: Venue) -> int:
    """gw1's process id, as ``ringex status`` has it."""
    status = read_status(venue.cfg) or {}
    return int(next(p["pid"] for p in status["processes"] if p["name"] == "gateway-gw1"))


async def buy(client: Client, ref: str, price: str = "90.00") -> None:
    await client.send("D", (11, ref), (55, "BTC-USD"), (54, "1"), (60, utc()),
                      (38, "0.01"), (40, "2"), (44, price), (59, "1"))  # fmt: skip


async def answer(client: Client, ref: str, timeout_s: float = 10.0) -> Any:
    """The ExecutionReport of ClOrdID ``ref``; None when none comes (or the socket ends)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            msg = await client.recv(0.5)
        except ConnectionResetError:
            return None
        if msg is not None and msg.get(35) == b"8" and msg.get(11) == ref.encode():
            return msg
    return None


def run(scenario: Any, limit_s: float = 30) -> Any:
    """``scenario`` run to its end within ``limit_s``."""
    return asyncio.run(asyncio.wait_for(scenario, limit_s))


async def logged_on(venue: Venue, user: str) -> Client:
    client = Client(user)
    await client.connect(venue.fix_port)
    await client.logon("pw", reset=True)
    return client


async def resting_of(venue: Venue, account: int) -> set[int]:
    """``account``'s orders resting in the live matcher (its snapshot, written on demand)."""
    return {oid for oid, o in (await live_book(venue, "BTC-USD")).items() if o.account == account}


async def held(venue: Venue, account: int) -> dict[str, tuple[int, int]]:
    return {a: v for a, v in (await balances(venue, account)).items() if v[1]}


async def ended(client: Client) -> bool:
    """Whether the gateway ends ``client``'s connection within 5 s (a reset is an end: a
    socket closed with unread input)."""
    try:
        return await client.closed(5)
    except ConnectionResetError:
        return True


#: x86-64 and arm64 numbers of epoll_wait, epoll_pwait, epoll_pwait2.
EPOLL_WAITS = {"232", "281", "441", "22"}


async def stall(venue: Venue, pid: int) -> None:
    """Stop ``pid`` (SIGSTOP) while its loop runs, as a GC pause or a starved CPU stops a
    busy gateway (REST requests keep it busy), not while it sleeps in ``epoll_wait``: a
    process stopped there gets EINTR at SIGCONT, and libuv then runs its overdue timers
    before it reads any socket (an artifact of the signal)."""

    async def chatter() -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                async with http.get(f"{venue.rest_url}/api/v1/exchangeInfo") as r:
                    await r.read()

    talk = [asyncio.create_task(chatter()) for _ in range(3)]
    try:
        for _ in range(2000):
            await asyncio.sleep(0.0005)
            os.kill(pid, signal.SIGSTOP)
            while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
                await asyncio.sleep(0.001)
            if Path(f"/proc/{pid}/syscall").read_text().split()[0] not in EPOLL_WAITS:
                return
            os.kill(pid, signal.SIGCONT)
        # a loaded host (the whole suite) may never find it outside: stopped where it is, the
        # weaker stall (its overdue timer first), which the claim's wait must pass all the same
        os.kill(pid, signal.SIGSTOP)
    finally:
        for t in talk:
            t.cancel()
        await asyncio.gather(*talk, return_exceptions=True)


def claimed(venue: Venue, comp_id: str) -> bool:
    """Whether a gateway holds ``comp_id``'s logged-on claim (``LiveSessions``' flock)."""
    fd = try_lock(session_claim(venue.cfg, comp_id))
    if fd is None:
        return True
    os.close(fd)
    return False


async def removed_while_stalled(venue: Venue, user: str, cod: str) -> str:
    """``user`` (FIX, cancel on disconnect ``cod``) with a buy resting; gw1 stalled;
    ``remove-user --cancel-orders`` run, a buy sent once ``user`` is out of the users file;
    gw1 going on ``STALL_S`` after it stalled (past ``SETTLE_S``: the command, as fixed,
    still waits for the session's claim; before the fix it had cancelled and exited). What
    of ``user``'s account rests or is held after its session ended ("": nothing), and what
    the client and gw1 showed."""
    account = await add_user(venue, user, f"--cancel-on-disconnect={cod}")
    client = await logged_on(venue, user)
    pid = gateway_pid(venue)
    try:
        await buy(client, "o1")
        assert (await answer(client, "o1")).get(150) == b"0"
        await stall(venue, pid)
        stalled = time.monotonic()
        cmd = asyncio.create_task(ringex(venue.profile, "admin", "remove-user",
                                         "--comp-id", user, "--cancel-orders"))  # fmt: skip
        store = UserStore(users_path(venue.cfg))
        await until(lambda: store.get(user) is None, f"{user} out of the users file")
        await buy(client, "o2")  # after the removal: it waits in the stalled gw1's socket
        await asyncio.sleep(max(0.0, stalled + STALL_S - time.monotonic()))
        still_claimed = claimed(venue, user)
        os.kill(pid, signal.SIGCONT)  # past SETTLE_S: the command waits for the claim (244)
        code, out, err = await cmd
        assert code == 0 and f"account {account}: open orders cancelled" in out, err
        assert await ended(client), f"{user}'s session goes on after remove-user"
        late = [m.get(150) for m in client.received if m.get(11) == b"o2"]

        async def nothing_left() -> bool:
            return not await resting_of(venue, account) and not await held(venue, account)

        with contextlib.suppress(AssertionError):
            await until(nothing_left, "nothing left", 3)
            return ""
        return (
            f"{user}: orders {sorted(await resting_of(venue, account))} rest, "
            f"{await held(venue, account)} held; o2 answered {late} (150); gw1 held the "
            f"session's claim as remove-user exited: {still_claimed}"
        )
    finally:
        os.kill(pid, signal.SIGCONT)
        await client.aclose()


#: How long gw1 stays stalled: past remove-user's SETTLE_S (1.5 s).
STALL_S = 2.5


@pytest.mark.parametrize(
    ("cod", "tries"),
    [("off", 3), ("on", 1)],
)
def test_a_stalled_gateway_takes_no_order_of_the_removed_user_after_its_cancel(
    venue: Venue, cod: str, tries: int
) -> None:
    """Scenario: S (FIX, cancel on disconnect ``cod``) has a buy resting; gw1 stalls
    ``STALL_S`` (SIGSTOP while its loop runs: a GC pause, a starved CPU) from just before
    ``remove-user --comp-id S --cancel-orders``; once S is out of the users file, S sends
    another buy, which waits in gw1's socket; then gw1 goes on. Up to ``tries`` times
    (which of gw1's socket and its overdue timer pass comes first is the loop's).
    Expected: the command exits 0, "open orders cancelled", S's session ends and no order
    of S's account rests, nothing of it held.
    Was (fixed): with cancel on disconnect on, so (the Logout's own cancel takes the late
    buy); off (the default), the command cancelled after SETTLE_S, gw1 still stalled, then
    gw1 read the late buy before its timer pass ended the session, published it, and it
    rested after the cancel-all, its USD held, S often logged out before the buy's ack
    reached it: neither the operator nor the user was told of an order that rests. The
    command now waits until no gateway holds S's session claim, which a gateway lets go
    once what the session sent is in the router's ring."""
    for n in range(tries):
        left = run(removed_while_stalled(venue, f"S{cod}{n}", cod))
        if left:
            break
    assert not left, left


def test_a_stalled_gateways_rest_order_after_the_removal_is_refused(venue: Venue) -> None:
    """Scenario: R (a REST key) has a buy resting; gw1 stalls as ``remove-user --comp-id R
    --cancel-orders`` runs; once R is out of the users file R posts another buy, which waits
    in gw1's socket until the command has exited. Expected: the late buy is answered 401
    (the key is looked up per request, the key file's change seen at once: review 229), and
    nothing of R's account rests or is held. Now: so."""

    async def scenario() -> None:
        account = await add_user(venue, "R1")
        pid = gateway_pid(venue)
        order: dict[str, Any] = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT"}
        order |= {"timeInForce": "GTC", "quantity": "0.01", "price": "90.00"}
        async with RestClient(venue.rest_url) as api:
            await api.login("R1", "pw")
            assert (await api.call("POST", "/api/v1/order", **order))["status"] == "NEW"
            try:
                await stall(venue, pid)
                cmd = asyncio.create_task(ringex(venue.profile, "admin", "remove-user",
                                                 "--comp-id", "R1", "--cancel-orders"))  # fmt: skip
                store = UserStore(users_path(venue.cfg))
                await until(lambda: store.get("R1") is None, "R1 out of the users file")
                late = asyncio.create_task(api.request("POST", "/api/v1/order", **order))
                code, out, err = await cmd
                assert code == 0 and "open orders cancelled" in out, err
            finally:
                os.kill(pid, signal.SIGCONT)
            status, body = await late
            assert status == 401, body
        assert not await resting_of(venue, account) and not await held(venue, account)

    run(scenario())


def test_a_user_removed_and_added_again_is_a_new_account_and_a_new_session(
    venue: Venue,
) -> None:
    """Scenario: A (FIX) has a buy resting; ``remove-user --comp-id A`` (its orders kept),
    then at once ``add-user --username A`` again, before any timer pass of gw1.
    Expected: A's old session is logged out ("removed or changed"); the new A has a new
    account and session id, logs on, and its FIX mass status and REST openOrders show none
    of the old account's orders; the old account's buy still rests and its USD stays held
    (README: its account, balances and orders stay). Now: so."""

    async def scenario() -> None:
        old_account = await add_user(venue, "A1")
        store = UserStore(users_path(venue.cfg))
        old = store.get("A1")
        client = await logged_on(venue, "A1")
        try:
            await buy(client, "a1")
            old_order = int((await answer(client, "a1")).get(37))
            code, _, err = await ringex(venue.profile, "admin", "remove-user", "--comp-id", "A1")
            assert code == 0, err
            new_account = await add_user(venue, "A1")
            logout = await client.expect("5", timeout=5)
            assert b"removed or changed" in logout.get(58)
        finally:
            await client.aclose()
        new = store.get("A1")
        assert old is not None and new is not None
        assert new_account != old_account and new.session > old.session
        again = await logged_on(venue, "A1")
        try:
            await again.send("AF", (584, "ms"), (585, 7))
            status = await again.expect("8", timeout=5)
            assert status.get(37) == b"NONE" and status.get(912) == b"Y", status
        finally:
            await again.aclose()
        async with RestClient(venue.rest_url) as api:
            await api.login("A1", "pw", "read")
            assert await api.call("GET", "/api/v1/openOrders", symbol="BTC-USD") == []
        assert await resting_of(venue, old_account) == {old_order}
        assert await held(venue, old_account)

    run(scenario())
