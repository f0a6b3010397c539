"""Review 309: what a removed user leaves behind.

Reviewed: ``procs/admin/users.py`` (``remove_user``), ``procs/admin/add_user.py`` (a comp id
added again), ``procs/gateway/session_stores.py`` (stores by comp id), ``procs/gateway/store.py``
(``unsent``, ``reset``, ``outbound``), ``procs/gateway/session.py`` (``_finish_logon``,
the resend), ``procs/gateway/server.py`` (``park``, ``_user_of``), ``procs/gateway/orders.py``
(ClOrdIDs by session id), against README's Operate ("Removing a user", "API keys", the FIX
user's sequence numbers) and the gateway row (a session's store).

Rig: review 244's instance (``running_venue``: ``ringex run --detach``, a matcher, the router,
gw1 with FIX and REST, ``reset_on_logon = true`` at the gateway, no database), users by
``ringex admin add-user`` / ``set-user`` / ``remove-user`` (the CLI as a shell runs it), the
FIX client of ``tests/unit/gateway/harness.py``, review 240's ``ringex``/``until``; a gateway
restart is gw1 SIGKILLed and restarted by the supervisor.

Faults found (each fixed; its test says what it was):
1. A user added again under a removed user's comp id inherits the removed user's FIX session store,
   sequence numbers first: its first Logon at MsgSeqNum 1 (no reset, as any FIX engine starts a new
   session) is logged out "MsgSeqNum too low, expecting N", N being where the removed user's
   session stood. Cause: ``procs/gateway/session_stores.py:72`` opens ``sessions/<comp_id>``
   whoever the user is now, and ``procs/gateway/session.py:406`` checks the Logon against its
   numbers; nothing ties a store to the user's session id, and ``remove_user``
   (``procs/admin/users.py:304``) leaves the store as it is. Fixed: a store's ``owner`` file names
   the session id of the user it is for; ``SessionStores.get`` (through ``server.store``) moves a
   store of another session id aside to ``removed-sessions/<comp_id>.<session>`` (beside
   ``sessions/``) and opens a new one.
2. Through that store the new user reads the removed user's reports: logged on at the number the
   refusal named, a ResendRequest 1..0 is answered with the removed user's ExecutionReports
   (PossDup: its ClOrdIDs, order ids, prices, account), another person's (or another desk's)
   trading. Cause and fix as 1 (``MessageStore.outbound``, ``procs/gateway/store.py:337``, serves
   whatever ``sessions/<comp_id>/messages`` holds). Fixed as 1.
3. Reports parked for the removed user before its removal (a fill while it was logged off) are sent
   to the user added again under its comp id at its first Logon, even one that resets the numbers
   (the daily practice, and this rig's gateway setting): ``_finish_logon``
   (``procs/gateway/session.py:417``) takes ``store.unsent()`` and ``_send_carried`` sends them
   anew, unmarked, as this session's own reports, of an order of an account the new user does not
   hold; the same after a gateway restart (the store is on disk). Fixed as 1.
4. The removed user's store (``var/<instance>/gateway/<gw>/sessions/<comp_id>/``: ``seqnums``,
   ``messages`` with every report it was sent) stays on disk for good, once its session has ended
   and with no user to resend to, after a gateway restart too; README says nothing of it ("Removing
   a user" names the account, balances, session id and orders as what stays). Cause: nothing
   removes it (``procs/admin/users.py:275`` ``remove_user``, nor the gateway's
   ``Session.on_timer``, ``procs/gateway/session.py:225``, that ends the session). Fixed: a gateway
   moves, at its start, the store of a comp id that is no user's, or of another session id than its
   user's, to ``removed-sessions/`` (README, "Removing a user": kept for the operator's retention,
   the audit log holds every message anyway).

Sound: nothing is parked for a removed user whose resting order fills after its removal (its
store does not grow: ``server.park`` finds no user of its session id), the counterparty
filled as usual; a user added again may use a ClOrdID the removed user's resting order still
holds (ClOrdIDs go by session id), its order acknowledged and the old one still resting; a
removed user's open private stream is closed (1008), its old key's requests and a new REST
login answered 401, its FIX Logon refused (Logout), and its API keys gone from ``ringex
admin keys``.

Leads not shown: the failed-login allowance (``failed_login_rate_per_s``) is kept by
username, so a user added again under a name whose removed owner spent it may be refused
(429 / Logout) at first; not tried. The database's ``users`` row of a removed user (deleted
by the writer) and its ``orders``/``trades`` rows, which keep the old account: not run here
(no database in this rig). The stream slot files under ``gateway/streams/`` of a removed
user's closed streams go at the minute's sweep (README) and were not watched.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from procs.common.run_files import read_status
from procs.common.topology import gateway_dir
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import Client, utc
from tests.unit.supervisor.test_review240_emergency_tools import Venue, ringex, until
from tests.unit.test_review244_user_removal import (
    add_user,
    answer,
    buy,
    ended,
    gateway_pid,
    logged_on,
    resting_of,
    run,
    running_venue,
)


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    with running_venue(tmp_path_factory.mktemp("r309"), "309") as v:
        yield v


def store_dir(venue: Venue, comp_id: str) -> Path:
    """``comp_id``'s FIX session store at gw1."""
    return gateway_dir(venue.cfg, "gw1") / "sessions" / comp_id


async def admin(venue: Venue, *args: str) -> str:
    """``ringex admin ARGS``, which must exit 0; its stdout."""
    code, out, err = await ringex(venue.profile, "admin", *args)
    assert code == 0, f"ringex admin {' '.join(args)}: exit {code}: {err}"
    return out


async def sell(client: Client, ref: str, price: str) -> None:
    await client.send("D", (11, ref), (55, "BTC-USD"), (54, "2"), (60, utc()),
                      (38, "0.01"), (40, "2"), (44, price), (59, "1"))  # fmt: skip


async def logout(client: Client) -> None:
    """A Logout, answered (reports before its answer skipped), and the connection closed."""
    await client.send("5")
    got = await client.recv(5)
    while got is not None and got.get(35) != b"5":
        got = await client.recv(5)
    assert got is not None, f"{client.comp_id}'s Logout not answered"
    await client.aclose()


async def drain(client: Client, seconds: float) -> list[Any]:
    """Every message ``client`` receives within ``seconds`` (until its connection ends)."""
    got: list[Any] = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            msg = await client.recv(left)
        except ConnectionResetError:
            break
        if msg is None:
            break
        got.append(msg)
    return got


async def filled_while_away(venue: Venue, user: str, taker: str, price: str) -> int:
    """``user`` buys 0.01 at ``price`` (ClOrdID "p1") and logs out; ``taker`` sells into it,
    so ``user``'s fill report is parked in its store. The order id."""
    await add_user(venue, user)
    await add_user(venue, taker)
    maker = await logged_on(venue, user)
    await buy(maker, "p1", price)
    order = int((await answer(maker, "p1")).get(37))
    await logout(maker)
    other = await logged_on(venue, taker)
    try:
        await sell(other, "t1", price)
        await until(lambda: answer(other, "t1", 1.0), "the taker's first report")

        async def filled() -> bool:
            return order not in await resting_of(venue, venue.accounts[user])

        await until(filled, f"{user}'s order {order} filled")
    finally:
        await logout(other)
    return order


async def restart_gw1(venue: Venue) -> None:
    """gw1 killed (SIGKILL) and restarted by the supervisor, serving again."""
    before = gateway_pid(venue)
    os.kill(before, signal.SIGKILL)

    def back() -> bool:
        procs = (read_status(venue.cfg) or {}).get("processes", [])
        gw = next((p for p in procs if p["name"] == "gateway-gw1"), None)
        return gw is not None and gw["pid"] != before and gw["ready"] and gw["alive"]

    await until(back, "gw1 restarted", 30)


async def sequenced_then_removed(venue: Venue, user: str) -> int:
    """``user`` (its own reset on logon off) logs on with a reset, buys at 80.00 (ClOrdID
    "s1", acknowledged) and logs out; then ``remove-user`` (orders kept) and ``add-user``
    again, reset on logon off again. The first user's next inbound number at the end."""
    await add_user(venue, user)
    await admin(venue, "set-user", "--comp-id", user, "--reset-on-logon", "off")
    first = await logged_on(venue, user)  # 141=Y: a new session at 1
    await buy(first, "s1", "80.00")
    assert (await answer(first, "s1")).get(150) == b"0"
    await logout(first)  # Logon 1, D 2, Logout 3
    await admin(venue, "remove-user", "--comp-id", user)
    await add_user(venue, user)
    await admin(venue, "set-user", "--comp-id", user, "--reset-on-logon", "off")
    return 4


async def first_logon_at_one(venue: Venue, user: str) -> Any:
    """The gateway's answer to a Logon of ``user`` at MsgSeqNum 1 without a reset."""
    client = Client(user)
    await client.connect(venue.fix_port)
    try:
        await client.send("A", (98, 0), (108, 30), (554, "pw"))
        return await client.recv(5)
    finally:
        await client.aclose()


def test_a_user_added_again_starts_its_sequence_numbers_at_one(venue: Venue) -> None:
    """Scenario: Q1 (its own reset on logon off, as a real venue's users have it) logs on,
    buys, logs out; ``remove-user --comp-id Q1``; ``add-user --username Q1`` again (a new
    account and session id: README, "Removing a user"), reset on logon off; the new Q1's
    engine logs on at MsgSeqNum 1 without ResetSeqNumFlag, as a new FIX session starts.
    Expected: the Logon is answered (35=A): a new user's session has no history.
    Was (fixed): Logout "MsgSeqNum too low, expecting 4 but received 1": the store of the removed
    user (``sessions/Q1``) is the new user's."""

    async def scenario() -> None:
        await sequenced_then_removed(venue, "Q1")
        reply = await first_logon_at_one(venue, "Q1")
        assert reply is not None and reply.get(35) == b"A", f"the new Q1's first Logon: {reply}"

    run(scenario())


def test_a_user_added_again_is_not_resent_the_removed_users_reports(venue: Venue) -> None:
    """Scenario: as above for Q2; the new Q2 logs on at the number the refusal names
    (without a reset) and sends a ResendRequest 1..0 (everything).
    Expected: nothing of the removed Q2's session comes: no ExecutionReport of its order
    "s1" (another account's, and another person's for all the exchange knows).
    Was (fixed): the removed Q2's ExecutionReport of "s1" is resent (PossDup), its order id and
    price with it."""

    async def scenario() -> None:
        await sequenced_then_removed(venue, "Q2")
        client = Client("Q2")
        await client.connect(venue.fix_port)
        try:
            await client.send("A", (98, 0), (108, 30), (554, "pw"))
            reply = await client.recv(5)
            if reply is not None and reply.get(35) == b"5":  # at the number the refusal names
                await client.aclose()
                found = re.search(rb"expecting (\d+)", reply.get(58) or b"")
                client = Client("Q2")
                client.seq = int(found.group(1)) if found else 1
                await client.connect(venue.fix_port)
                await client.send("A", (98, 0), (108, 30), (554, "pw"))
                reply = await client.expect("A", timeout=5)
            assert reply is not None and reply.get(35) == b"A", reply
            await client.send("2", (7, 1), (16, 0))
            got = await drain(client, 3)
        finally:
            await client.aclose()
        old = [m for m in got if m.get(35) == b"8" and m.get(11) == b"s1"]
        assert not old, f"the new Q2 was resent the removed Q2's reports: {[str(m) for m in old]}"

    run(scenario())


@pytest.mark.parametrize("restart", [False, True], ids=["running", "after-a-gateway-restart"])
def test_a_user_added_again_is_not_sent_the_removed_users_parked_fill(
    venue: Venue, restart: bool
) -> None:
    """Scenario: P (FIX) buys 0.01 at a price of its own and logs out; T sells into it
    (P's fill report is parked in P's store, for P's next logon); ``remove-user --comp-id
    P``; (gw1 restarted, for the second case); ``add-user --username P`` again; the new P
    logs on with ResetSeqNumFlag (a fresh session).
    Expected: the new P is sent nothing of the removed P's order: its account is another
    (README: a user added again is a new account and session id) and the fill is not its.
    Was (fixed): the removed P's fill (35=8, 150=F, ClOrdID "p1") comes right after the Logon,
    as the new session's own report."""

    async def scenario() -> None:
        user, price = ("PR", "95.00") if restart else ("PN", "94.00")
        await filled_while_away(venue, user, f"T{user}", price)
        await admin(venue, "remove-user", "--comp-id", user)
        if restart:
            await restart_gw1(venue)
        await add_user(venue, user)
        client = await logged_on(venue, user)
        try:
            got = await drain(client, 3)
        finally:
            await client.aclose()
        old = [m for m in got if m.get(35) == b"8" and m.get(11) == b"p1"]
        assert not old, (
            f"the new {user} was sent the removed {user}'s report: {[str(m) for m in old]}"
        )

    run(scenario(), 60)


def test_a_removed_users_store_does_not_stay_on_disk(venue: Venue) -> None:
    """Scenario: K (FIX) buys, is removed while logged on; its session ends (Logout);
    then gw1 restarts (a day's restart, say).
    Expected: no ``sessions/K`` under gw1's directory holds the removed user's reports
    (gone, or moved where README says): nothing can be resent to a user that is no more,
    and README names what stays of a removed user (account, balances, session id, orders).
    Was (fixed): ``sessions/K/messages`` stays, with K's reports in it, after the restart too."""

    async def scenario() -> None:
        await add_user(venue, "K1")
        client = await logged_on(venue, "K1")
        try:
            await buy(client, "k1", "81.00")
            assert (await answer(client, "k1")).get(150) == b"0"
            await admin(venue, "remove-user", "--comp-id", "K1")
            assert await ended(client), "K1's session goes on after remove-user"
        finally:
            await client.aclose()
        await restart_gw1(venue)
        messages = store_dir(venue, "K1") / "messages"
        left = messages.read_bytes() if messages.exists() else b""
        assert b"11=k1" not in left, f"{messages} keeps the removed K1's reports"

    run(scenario(), 60)


def test_sound_nothing_is_parked_for_a_user_removed_with_orders_resting(venue: Venue) -> None:
    """Scenario: N (FIX) buys 0.01 at 93.00 and logs out; ``remove-user --comp-id N``
    (orders kept); T sells into the order. Expected: T is filled, N's order ends, and N's
    store does not grow (no report parked for a user that is no more). Was (fixed): so."""

    async def scenario() -> None:
        await add_user(venue, "N1")
        await add_user(venue, "TN1")
        maker = await logged_on(venue, "N1")
        await buy(maker, "n1", "93.00")
        order = int((await answer(maker, "n1")).get(37))
        await logout(maker)
        await admin(venue, "remove-user", "--comp-id", "N1")
        messages = store_dir(venue, "N1") / "messages"
        size = messages.stat().st_size
        taker = await logged_on(venue, "TN1")
        try:
            await sell(taker, "t1", "93.00")
            fills = [await answer(taker, "t1", 5.0) for _ in range(2)]
            assert any(f is not None and f.get(150) == b"F" for f in fills), fills
        finally:
            await logout(taker)
        assert order not in await resting_of(venue, venue.accounts["N1"])
        assert messages.stat().st_size == size, "a report parked for the removed N1"

    run(scenario())


def test_sound_a_user_added_again_may_use_a_clordid_the_removed_users_order_holds(
    venue: Venue,
) -> None:
    """Scenario: C (FIX) rests a buy "c1" at 82.00 (ClOrdID "c1"); ``remove-user`` (orders
    kept); ``add-user`` C again; the new C sends a buy with ClOrdID "c1". Expected: it is
    acknowledged (150=0), a new order of the new account, the old one still resting. Now:
    so (ClOrdIDs go by session id)."""

    async def scenario() -> None:
        old_account = await add_user(venue, "C1")
        first = await logged_on(venue, "C1")
        await buy(first, "c1", "82.00")
        old_order = int((await answer(first, "c1")).get(37))
        await logout(first)
        await admin(venue, "remove-user", "--comp-id", "C1")
        new_account = await add_user(venue, "C1")
        again = await logged_on(venue, "C1")
        try:
            await buy(again, "c1", "82.00")
            ack = await answer(again, "c1")
            while ack is not None and ack.get(43) == b"Y":  # (a carried one: fault 3)
                ack = await answer(again, "c1")
            assert ack is not None and ack.get(150) == b"0", ack
            assert int(ack.get(37)) != old_order
        finally:
            await again.aclose()
        assert old_order in await resting_of(venue, old_account)
        assert new_account != old_account

    run(scenario())


def test_sound_a_removed_user_cannot_log_on_by_fix_or_rest_and_keeps_no_key(
    venue: Venue,
) -> None:
    """Scenario: G (FIX and a REST key with a private stream open) is removed. Expected:
    its stream is closed (1008), the old key's request 401, a REST login of G answered 401,
    a FIX Logon of G refused (Logout), and ``ringex admin keys --comp-id G`` lists none.
    Was (fixed): so."""

    async def scenario() -> None:
        await add_user(venue, "G1")
        async with RestClient(venue.rest_url) as api:
            await api.login("G1", "pw")
            stream = await api.stream()
            await admin(venue, "remove-user", "--comp-id", "G1")
            status, _ = await api.request("GET", "/api/v1/account")
            assert status == 401
            async with asyncio.timeout(5):  # its frames (the snapshot), then its close
                while (frame := await stream.receive()).type == aiohttp.WSMsgType.TEXT:
                    pass
            # the code the gateway sent (aiohttp's close_code says 1006 where the socket was
            # gone before its answering close was written)
            assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 1008, frame
        async with RestClient(venue.rest_url) as again:
            status, body = await again.request(
                "POST", "/api/v1/apiKey", signed=False, username="G1", password="pw"
            )
            assert status == 401, body
        client = Client("G1")
        await client.connect(venue.fix_port)
        try:
            await client.send("A", (98, 0), (108, 30), (141, "Y"), (554, "pw"))
            reply = await client.recv(5)
            assert reply is not None and reply.get(35) == b"5", reply
        finally:
            await client.aclose()
        out = await admin(venue, "keys", "--comp-id", "G1", "--json")
        assert out.strip() in ("[]", ""), out

    run(scenario())
