"""Review 246: a hostile reread of reviews 243-245's changes (483dbfb, 1eb775f, b080886).

Reviewed: ``procs/gateway/live_sessions.py`` (``_ending``, ``claim`` taking a claim back,
``let_go``, ``release_all``), ``procs/gateway/server.py`` (``publish`` calling ``let_go`` once
``entry.outgoing`` is empty; ``close``), ``procs/gateway/session.py`` (``_finish_logon``'s
claim and its ``release``, ``_close``), ``procs/gateway/connections.py`` (``connection_lost``),
``procs/admin/users.py`` (``remove_user``, ``_session_ended``), ``procs/common/topology.py``
(``claim_name``, ``session_claim``), ``procs/dbwriter/migrate.py`` (``lock_timeout``) and its
one caller ``procs/dbwriter/store.py`` (``prepare`` in ``PgStore.open``, retried by
``DbWriter._retry``), ``procs/core/recovery.py`` (``_exchange_books``' ``lacking``,
``_added_since``).

Rig: the harness's exchange (``tests/unit/gateway/harness.py``) with a second gateway, gw2, as
review 36's ``Pair`` runs it (both gateways share the instance's ``logged-on`` directory, as two
processes do; a flock conflicts between two descriptors of one process as between two
processes), rings of 64 records so that a router held still (``Harness.pause``: a router
restarting, or behind) leaves commands waiting in gw1's ``outgoing``.

Faults (each fixed; its test says what it was):
1. ``procs/gateway/server.py:283-284`` (``publish``, since 483dbfb): the claims of every session
   that ended at a gateway go only once the gateway's whole ``outgoing`` queue is empty,
   whoever's commands wait there. A user whose own commands are all in the router's ring, logged
   out at gw1 (the operator changed her password) while another user's commands wait for room,
   is refused at gw2 for as long as gw1 is behind: her claim is held for the other user's
   orders. Fix: hold an ended session's claim until ITS OWN commands are published, not the
   queue's: at its end (``LiveSessions.__delitem__``), the position of its last command still
   waiting, ``producer.sequence + k + 1`` where ``k`` is the last index in ``entry.outgoing`` of
   a command of its session (its account or session id; none waiting: the claim goes at once),
   and ``publish`` calling ``let_go(producer.sequence)``, which releases the claims whose
   position the producer has passed. The queue's end at the session's end (``producer.sequence +
   len(entry.outgoing)``) is not enough: the other user's orders queued before her end keep it.
2. ``procs/gateway/session.py:413-414`` (``_finish_logon``, since 483dbfb): a logon refused
   because another gateway holds the claim of a session that has ENDED there (its commands not
   yet in the router's ring, review 244's ``_ending``) says "session ALICE is already logged on
   (another gateway)": a lie, she is logged on nowhere, and she is told to look for a session
   that does not exist rather than to try again. Fix: have a gateway write the claim's state in
   its lock file (``LiveSessions.claim`` writes "live", ``__delitem__`` "ending"; ``os.pwrite``
   at 0), and have the refusal read it (an unheld or unreadable file: the old text): "session
   ALICE has just ended at another gateway, which is still sending what it sent: log on again in
   a moment".
3. ``procs/admin/users.py:288,303,318-322`` (``remove_user``, ``_session_ended``): the command
   holds the user's claim from the moment it gets it until its cancel-all is answered (up to
   the admin client's 10 s where the router is behind). A user added again under the same
   comp id meanwhile (a new account, which the cancel does not touch) is refused at every
   gateway with "session CAROL is already logged on (another gateway)": no session is. Fix:
   in ``_session_ended``, close the descriptor as soon as ``try_lock`` succeeds (holding it
   protects nothing: the removed user can no longer log on, and a user added again has
   another account), or write "remove-user" into the lock file for the refusal to name, as
   in fault 2's fix.

Found sound: a session that logs out at an idle gateway has its claim let go at once (the
socket's end publishes), and one whose user the operator changed (the timer pass) within a
timer pass, then logs on at gw2; a claim held for waiting commands goes once the router takes
them, and the user then logs on at gw2; a session ended at gw1 with its commands waiting logs
on again at gw1 at once (``claim`` takes it back from ``_ending``), and the claim stays held
for that new session after gw1's backlog drains (``let_go`` does not release it); a gateway
stopped while it holds an ended session's claim lets it go; ``remove-user --cancel-orders`` of
a comp id never logged on (no lock file yet, the directory there) sends its cancel after
``SETTLE_S`` without the 10 s wait, and leaves no claim held.

Read, not tested here (no fault seen): ``migrate``'s ``lock_timeout`` bounds the waits for
locks only, not a statement's length (a hypertable made on a big table runs as long as it
takes); its only caller is ``PgStore.open`` under ``DbWriter._retry`` (``LockNotAvailable`` is
an ``OperationalError``), and ``ringex replay --to-db`` runs the same writer
(``dbwriter_run``); ``_exchange_books`` appends the snapshot it stops at, the first or an
older one, and ``_added_since`` judges that one (review 245 tests both).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
import simplefix

from config.edges import GatewayConfig
from config.schema import DatabaseConfig, RingConfig
from procs.admin import users as admin_users
from procs.admin.client import AdminClient
from procs.common.file_locks import try_lock
from procs.common.topology import session_claim
from procs.gateway.server import GatewayServer
from tests.unit.gateway.harness import Client, Harness, config, settled, utc
from tests.unit.gateway.test_review36_gateways import Pair, run_then_close

ALICE, BOB = 7, 8
#: Records a ring holds: a router held still fills gw1's in a few dozen orders.
CAPACITY = 64
#: Buys that fill it and wait in gw1's queue, short of ``risk.max_open_orders`` (100).
FLOOD = 90


def exchange(instance: str, tmp_path: Path) -> Pair:
    """The harness's exchange, rings of ``CAPACITY``, gw1 and gw2 (FIX only), ALICE and BOB
    (password "pw") funded."""
    cfg = config(instance, tmp_path)
    cfg = msgspec.structs.replace(
        cfg, ring=RingConfig(capacity=CAPACITY),
        matchers=[msgspec.structs.replace(m, batch=16) for m in cfg.matchers],
        gateways=[cfg.gateways[0], GatewayConfig(name="gw2", id=2, port=0)],
        database=DatabaseConfig(enabled=False),
    )  # fmt: skip
    h = Harness(cfg)
    for comp, account in (("ALICE", ALICE), ("BOB", BOB)):
        h.add_user(comp, "pw", account)
        h.fund(account)
    return Pair(h)


def claimed(p: Pair, comp_id: str) -> bool:
    """Whether a gateway holds ``comp_id``'s claim (what ``remove-user`` waits on)."""
    fd = try_lock(session_claim(p.h.cfg, comp_id))
    if fd is None:
        return True
    os.close(fd)
    return False


async def logon_at(gw: GatewayServer, comp_id: str, password: str = "pw") -> tuple[Client, Any]:
    """A connection to ``gw`` and the answer to its Logon (35=A taken, 35=5 refused)."""
    c = Client(comp_id)
    await c.connect(gw.port)
    await c.send("A", (98, 0), (108, 30), (141, "Y"), (554, password))
    while (msg := await c.recv(5)) is not None and msg.get(35) == b"0":
        pass
    assert msg is not None, f"no answer to {comp_id}'s Logon at {gw.gw.name}"
    return c, msg


async def flood(c: Client, n: int, tag: str) -> None:
    """``n`` buys far from the market, in one write."""
    fields = ((55, "BTC-USD"), (54, "1"), (38, "0.01"), (40, "2"), (44, "50.00"), (59, "1"))
    msgs = [c.message("D", (11, f"{tag}{k}"), (60, utc()), *fields) for k in range(n)]
    raw = b"".join(m.encode() for m in msgs)
    await c.send_raw(raw)


async def behind(p: Pair) -> None:
    """The router held still and gw1's ring full, commands waiting in its ``outgoing``."""
    await settled(lambda: len(p.gw1.entry.outgoing) > 0, 5)
    assert p.gw1.entry.outgoing, "gw1 did not fall behind"


async def changed_out(p: Pair, c: Client, comp_id: str) -> None:
    """The operator sets ``comp_id``'s password to "pw2": gw1's timer pass logs it out."""
    p.h.users.set_password(comp_id, "pw2", n=1 << 4)
    logout = await c.expect("5", timeout=5)
    assert b"removed or changed" in logout.get(58), logout


def text(msg: simplefix.FixMessage) -> str:
    return bytes(msg.get(58) or b"").decode()


def resume(p: Pair) -> None:
    """The router and matcher stepped again, only while both gateways keep up
    (``Harness.resume_paced`` watches gw1 alone: in one loop, a matcher whose output ring
    gw2 has not read would wait for it forever)."""
    h, room = p.h, CAPACITY // 2

    async def pipeline() -> None:
        while True:
            gws = [gw for gw in (h.gateway, p.gw2) if gw is not None]
            lag = max((c.ring.cursor() - c.sequence for gw in gws for c in gw.inputs), default=0)
            busy = 0
            if lag < room:
                busy = h.router.step(timeout_s=0) + h.matcher.step(timeout_s=0)
                h.router.settle()
            await asyncio.sleep(0 if busy else 0.0005)

    h._task = asyncio.get_running_loop().create_task(pipeline())


def go(p: Pair, scenario: Callable[[Pair], Awaitable[None]]) -> None:
    run_then_close(p, scenario)


# -- an ended session's claim (review 244's ``let_go``) -------------------------------------


def test_a_claim_is_not_held_for_another_sessions_commands(instance: str, tmp_path: Path) -> None:
    """Scenario: ALICE and BOB at gw1; the router is held still (restarting, behind); BOB
    sends FLOOD buys, which fill gw1's ring and wait in its queue; ALICE sent nothing since.
    The operator changes ALICE's password: gw1 logs her out. She logs on with the new one and
    the kernel hands her connection to gw2.
    Expected: gw2 takes her Logon: nothing of hers waits at gw1 (the claim is held past a
    session's end only for what it sent, review 244).
    Was (fixed): gw2 refuses her ("session ALICE is already logged on (another gateway)")
    for as long as BOB's orders wait at gw1: ``publish`` lets the ended sessions' claims go
    only once gw1's whole ``outgoing`` is empty."""

    async def scenario(p: Pair) -> None:
        gw2 = p.gw2
        assert gw2 is not None
        alice, _ = await logon_at(p.gw1, "ALICE")
        bob, _ = await logon_at(p.gw1, "BOB")
        p.h.pause()
        await flood(bob, FLOOD, "b")
        await behind(p)
        await changed_out(p, alice, "ALICE")
        _, answer = await logon_at(gw2, "ALICE", "pw2")
        assert answer.get(35) == b"A", text(answer)

    go(exchange(instance, tmp_path), scenario)


def test_a_logon_refused_for_a_session_ending_elsewhere_does_not_say_it_is_logged_on(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE at gw1, the router held still; she sends FLOOD buys, which wait at gw1;
    the operator changes her password and gw1 logs her out; she logs on at gw2 with it.
    Expected: refused (her orders are not in the router's ring yet: review 244 holds the
    claim), with a text that does not say she is logged on: she is not, anywhere.
    Was (fixed): "session ALICE is already logged on (another gateway)"."""

    async def scenario(p: Pair) -> None:
        gw2 = p.gw2
        assert gw2 is not None
        alice, _ = await logon_at(p.gw1, "ALICE")
        p.h.pause()
        await flood(alice, FLOOD, "a")
        await behind(p)
        await changed_out(p, alice, "ALICE")
        assert "ALICE" not in p.gw1.live
        _, answer = await logon_at(gw2, "ALICE", "pw2")
        assert answer.get(35) == b"5", answer
        assert "already logged on" not in text(answer), text(answer)

    go(exchange(instance, tmp_path), scenario)


def test_checked_the_claim_goes_once_the_router_takes_the_waiting_commands(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: as the test above, then the router goes on (``Harness.resume``).
    Expected: gw1 publishes what waited, lets ALICE's claim go, and she logs on at gw2 with
    the new password. Now: so (not held forever)."""

    async def scenario(p: Pair) -> None:
        gw2 = p.gw2
        assert gw2 is not None
        alice, _ = await logon_at(p.gw1, "ALICE")
        p.h.pause()
        await flood(alice, FLOOD, "a")
        await behind(p)
        await changed_out(p, alice, "ALICE")
        assert claimed(p, "ALICE")
        resume(p)
        await settled(lambda: not claimed(p, "ALICE"), 8)
        assert not claimed(p, "ALICE") and not p.gw1.entry.outgoing
        _, answer = await logon_at(gw2, "ALICE", "pw2")
        assert answer.get(35) == b"A", text(answer)

    go(exchange(instance, tmp_path), scenario)


def test_checked_an_idle_gateway_lets_an_ended_claim_go_at_once(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: nothing flows; ALICE logs out of gw1 (Logout, answered); then BOB, at gw1
    too, is changed by the operator (gw1's timer pass ends his session, no client act).
    Expected: each claim goes within moments of its end (ALICE's: 0.5 s; BOB's: 1.5 s past
    the change, a timer pass), and each logs on at gw2. Now: so."""

    async def scenario(p: Pair) -> None:
        gw2 = p.gw2
        assert gw2 is not None
        alice, _ = await logon_at(p.gw1, "ALICE")
        bob, _ = await logon_at(p.gw1, "BOB")
        await alice.send("5")
        await alice.expect("5", timeout=5)
        t0 = time.monotonic()
        await settled(lambda: not claimed(p, "ALICE"), 5)
        assert time.monotonic() - t0 < 0.5, "ALICE's claim held past her Logout"
        assert (await logon_at(gw2, "ALICE"))[1].get(35) == b"A"
        t0 = time.monotonic()
        p.h.users.set_password("BOB", "pw2", n=1 << 4)
        await settled(lambda: not claimed(p, "BOB"), 5)
        assert time.monotonic() - t0 < 1.5, "BOB's claim held past his timer pass"
        await bob.expect("5", timeout=1)
        assert (await logon_at(gw2, "BOB", "pw2"))[1].get(35) == b"A"

    go(exchange(instance, tmp_path), scenario)


def test_checked_a_session_logs_on_again_at_its_gateway_and_keeps_the_claim(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE at gw1, the router held still, her FLOOD buys waiting; the operator
    changes her password, gw1 logs her out; she logs on again at gw1 at once; then the router
    goes on and gw1's backlog drains.
    Expected: gw1 takes the Logon (the claim taken back from ``_ending``); after the drain the
    claim is still held (her new session is live), and gw2 refuses her, saying she is logged
    on. Now: so."""

    async def scenario(p: Pair) -> None:
        gw2 = p.gw2
        assert gw2 is not None
        alice, _ = await logon_at(p.gw1, "ALICE")
        p.h.pause()
        await flood(alice, FLOOD, "a")
        await behind(p)
        await changed_out(p, alice, "ALICE")
        again, answer = await logon_at(p.gw1, "ALICE", "pw2")
        assert answer.get(35) == b"A", text(answer)
        resume(p)
        await settled(lambda: not p.gw1.entry.outgoing, 8)
        assert not p.gw1.entry.outgoing and claimed(p, "ALICE")
        _, refused = await logon_at(gw2, "ALICE", "pw2")
        assert refused.get(35) == b"5" and "already logged on" in text(refused)
        await again.send("D", (11, "late"), (55, "BTC-USD"), (54, "1"), (60, utc()),
                         (38, "0.01"), (40, "2"), (44, "50.00"), (59, "1"))  # fmt: skip
        while (report := await again.expect("8", timeout=5)).get(11) != b"late":
            pass  # (the reports of her FLOOD buys come to her new session first)
        assert report.get(150) == b"0", text(report)

    go(exchange(instance, tmp_path), scenario)


def test_checked_a_stopped_gateway_lets_its_ending_claims_go(instance: str, tmp_path: Path) -> None:
    """Scenario: ALICE's session ended at gw1 while her orders wait there (router held
    still); gw1 stops. Expected: the claim is free once gw1 has stopped (``release_all``).
    Now: so."""

    async def scenario(p: Pair) -> None:
        alice, _ = await logon_at(p.gw1, "ALICE")
        p.h.pause()
        await flood(alice, FLOOD, "a")
        await behind(p)
        await changed_out(p, alice, "ALICE")
        assert claimed(p, "ALICE")
        assert p.h.gateway is not None
        await p.h.gateway.shutdown(grace_s=0.2)
        p.h.gateway = None
        assert not claimed(p, "ALICE")

    go(exchange(instance, tmp_path), scenario)


# -- remove-user's wait for the claim (``_session_ended``) ----------------------------------


class Admin:
    """An admin client whose cancel-all waits for ``go`` (a router behind: the admin ring is
    read after the gateways'), as ``remove_user`` calls it."""

    def __init__(self, hold: bool) -> None:
        self.started, self.go = threading.Event(), threading.Event()
        self.cancelled: list[int] = []
        if not hold:
            self.go.set()

    def cancel_all(self, account: int, symbol: object) -> None:
        self.started.set()
        self.go.wait(10)
        self.cancelled.append(account)

    def close(self) -> None:
        self.go.set()


def remove(p: Pair, comp_id: str, admin: Admin) -> int:
    """``ringex admin remove-user --comp-id comp_id --cancel-orders``, as the CLI runs it."""
    args = argparse.Namespace(comp_id=comp_id, cancel_orders=True)
    return admin_users.remove_user(p.h.cfg, args, lambda: cast(AdminClient, admin))


@pytest.fixture
def quick_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_users, "SETTLE_S", 0.05)  # the gateways' timer pass: not here


def test_a_user_added_again_during_remove_users_cancel_is_not_told_it_is_logged_on(
    instance: str, tmp_path: Path, quick_settle: None
) -> None:
    """Scenario: CAROL, never logged on, is removed with ``--cancel-orders``; while its
    cancel-all waits for the router (behind), the operator adds CAROL again (a new account)
    and she logs on at gw1.
    Expected: her Logon is taken (no gateway serves a CAROL session; the cancel is for the
    old account), or refused with a text that says why; not that she is logged on.
    Was (fixed): "session CAROL is already logged on (another gateway)": ``_session_ended``'s
    claim, held by the command until the cancel is sent, is read as a live session."""
    p = exchange(instance, tmp_path)
    p.h.add_user("CAROL", "pw", 9)
    admin = Admin(hold=True)

    async def scenario(p: Pair) -> None:
        command = asyncio.create_task(asyncio.to_thread(remove, p, "CAROL", admin))
        try:
            await asyncio.to_thread(admin.started.wait, 10)
            p.h.add_user("CAROL", "pw", 10)
            _, answer = await logon_at(p.gw1, "CAROL")
        finally:
            admin.go.set()
            assert await command == 0
        assert answer.get(35) == b"A" or "already logged on" not in text(answer), text(answer)

    go(p, scenario)


def test_checked_remove_user_of_a_comp_id_never_logged_on_does_not_wait(
    instance: str, tmp_path: Path, quick_settle: None
) -> None:
    """Scenario: DAVE never logged on (no lock file of his in ``logged-on``, which the
    gateways made); ``remove-user --comp-id DAVE --cancel-orders``.
    Expected: exit 0, the cancel-all sent for his account at once past ``SETTLE_S`` (not 10 s
    later), and no claim of his held after. Now: so."""
    p = exchange(instance, tmp_path)
    p.h.add_user("DAVE", "pw", 11)
    admin = Admin(hold=False)

    async def scenario(p: Pair) -> None:
        assert session_claim(p.h.cfg, "DAVE").parent.is_dir()
        t0 = time.monotonic()
        assert await asyncio.to_thread(remove, p, "DAVE", admin) == 0
        assert time.monotonic() - t0 < 3, "remove-user waited for a claim nobody held"
        assert admin.cancelled == [11] and not claimed(p, "DAVE")

    go(p, scenario)
