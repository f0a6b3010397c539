"""Review 8: a gateway gets the router's replies to its commands in its commands' order, each
exactly once, across a router crash at any point of a step.

Method: the in-process rig of ``test_router.py`` (real rings, a real journal, a
``RouterShell`` and a ``MatcherShell`` stepped by hand). A crash is an exception raised at
one point of a step (a stand-in for SIGKILL there); the killed router sends, routes and
commits nothing more (``kill_router``) and a new one recovers, as the supervisor restarts it;
the matcher runs on. The admin ring (gateway 0, ``RING``: the one ring that carries an
account's creation and a deposit, review 343) sends one batch that mixes refusals with
commands the router answers once they are durable (a creation, a mass cancel, a deposit):

    11 order of an unknown account   Rejected UNKNOWN_ACCOUNT   (never journaled)
    12 CreateAccount 20              AccountReply OK            (journaled)
    13 order of an unknown account   Rejected UNKNOWN_ACCOUNT
    14 MassCancel account 7          Rejected OK                (journaled)
    15 Transfer to account 20        AccountReply OK            (journaled)
    16 order of an unknown account   Rejected UNKNOWN_ACCOUNT

Without a crash the gateway reads 11..16 in that order. A restart reads the uncommitted
batch again: what its journal holds is answered as owed (``reread.py``), what a reply went
out for is not answered again, the rest is decided again. The failure found: those owed
answers were queued apart from the batch's other replies (at once when read, before the
refusals decided again beside them; in sync mode once the standby held them, after replies
of commands read later), so the gateway read them out of order: 12, 14 and 15 before 11;
in sync mode a later command's reply (a refusal, or a deposit into the account whose
creation was owed) before the creation's OK; a stop while a batch waited for the standby
answered the batch's refusals at once, ahead of the OK owed to a command before them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from config.schema import JournalConfig, ReplicationConfig, RingexConfig
from procs.common.records import Balance, CreateAccount, MassCancel, Record, Transfer
from procs.common.replication_ack import AckBlock, ack_dir
from procs.common.result_codes import ResultCode
from procs.common.topology import ADMIN_GATEWAY
from procs.common.types import Side
from procs.router import main as router_main
from procs.router.main import RouterShell
from shm import Producer
from tests.unit.router.test_review_crash_points_bugs import Crash, crash_after, journaled
from tests.unit.router.test_router import USD, Exchange, config, fund, order

Told = tuple[int, str, str]  # client_ref, reply type, code
BUY = Side.BUY
#: the ring review 8's batch goes on: the admin ring, as only it carries an account's creation
#: and a deposit (review 343); its replies are read as they come (``Exchange.admin_told``)
RING = ADMIN_GATEWAY

REJECTED = ("Rejected", "UNKNOWN_ACCOUNT")
EXPECTED: list[Told] = [
    (11, *REJECTED),
    (12, "AccountReply", "OK"),
    (13, *REJECTED),
    (14, "Rejected", "OK"),
    (15, "AccountReply", "OK"),
    (16, *REJECTED),
]


def batch(gateway: int = RING) -> list[Record]:
    """Review 8's batch, its headers naming ``gateway`` (the ring it is sent on)."""
    return [
        order(11, 9, BUY, 1000, 1, gateway=gateway),
        CreateAccount(0, 0, gateway, 1, 12, 20),
        order(13, 9, BUY, 1000, 1, gateway=gateway),
        MassCancel(0, 0, gateway, 1, 14, 7, 1),
        Transfer(0, 0, gateway, 1, 15, 20, USD, 5_000, 2015),
        order(16, 9, BUY, 1000, 1, gateway=gateway),
    ]


def told(ex: Exchange, gateway: int = RING) -> list[Told]:
    """What the gateway reads now, balances aside: (client_ref, type, code) in order. A
    refusal the crash kept from the gateway, read again before a command of its ring that
    was journaled, is refused again as ``REFUSED_BEFORE_RESTART``, its reason not kept
    (review 193): here it stands for the UNKNOWN_ACCOUNT it was, as these tests check the
    order of the replies, not their reasons."""
    return [
        (r.client_ref, type(r).__name__, _lost(r.code).name)  # type: ignore[attr-defined]
        for r in ex.replies_of(gateway)
        if type(r) is not Balance
    ]


def _lost(code: ResultCode) -> ResultCode:
    return ResultCode.UNKNOWN_ACCOUNT if code == ResultCode.REFUSED_BEFORE_RESTART else code


def kill_router(ex: Exchange, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL of the router: nothing more leaves it (no reply, no held batch routed, no
    ring committed), then a new one recovers; the matcher runs on."""
    dead = ex.router
    monkeypatch.setattr(dead, "_send_pending", lambda: None)
    monkeypatch.setattr(dead, "_route_durable", lambda: None)
    dead.close()
    ex.router = RouterShell(ex.cfg)


def crash_then_restart(ex: Exchange, monkeypatch: pytest.MonkeyPatch) -> None:
    """Step the router into the armed crash, then kill and restart it."""
    with pytest.raises(Crash):
        for _ in range(5):
            ex.router.step(timeout_s=0.001)
    kill_router(ex, monkeypatch)


def replies_out_then_crash(count: int) -> Callable[[deque[Record], Producer[Record]], None]:
    """A ``send_pending`` that publishes ``count`` replies one at a time, then dies: a kill
    between two of the chunks it publishes."""
    sent = [0]

    def send(queue: deque[Record], producer: Producer[Record]) -> None:
        while queue:
            if sent[0] == count:
                raise Crash
            assert producer.try_publish_batch([queue[0]])
            queue.popleft()
            sent[0] += 1

    return send


def funded(cfg: RingexConfig) -> Exchange:
    """An exchange with account 7 funded, its replies read (under any fsync policy)."""
    ex = Exchange(cfg)
    fund(ex, 7, usd=10**6, btc=10**6)
    ex.router.journal.sync()
    ex.pump()
    assert len(ex.replies_of(ADMIN_GATEWAY)) == 3  # funded on the admin ring (review 343)
    return ex


@pytest.fixture
def exchange(instance: str, tmp_path: Path) -> Iterator[Exchange]:
    ex = funded(config(instance, tmp_path))
    yield ex
    ex.stop()


def settled(ex: Exchange, gateway: int = RING) -> list[Told]:
    """Pump the restarted router until idle; what the batch's ring (``gateway``) read, and
    the journal checked: each journaled command of the batch is there once."""
    ex.pump()
    out = told(ex, gateway)
    refs = [getattr(c, "client_ref", 0) for c in journaled(ex)]
    assert [refs.count(ref) for ref in (12, 14, 15)] == [1, 1, 1], refs
    return out


# -- async (no standby): crash points of one step ---------------------------------------------


def test_without_a_crash_the_replies_come_in_the_commands_order(exchange: Exchange) -> None:
    exchange.send(RING, *batch())
    assert told(exchange) == EXPECTED


@pytest.mark.parametrize("point", ["journal.append", "_publish", "_flush_replies"])
def test_a_crash_at_a_point_of_the_step_answers_in_order(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """Killed after the batch's journal write, or after it reached the matcher, before its
    replies left: the restart owes 12, 14 and 15 and decides 11, 13 and 16 again (before
    the fix the owed answers went out first: [12, 14, 15, 11, 13, 16]). Killed after every
    reply left, before the ring's commit: nothing is answered again."""
    target = exchange.router.journal if point == "journal.append" else exchange.router
    crash_after(target, point.rpartition(".")[2], monkeypatch)
    exchange.gateways[RING].publish_batch(batch())
    crash_then_restart(exchange, monkeypatch)
    assert settled(exchange) == EXPECTED


@pytest.mark.parametrize("out", [0, 1, 2, 3, 4, 5])
def test_a_crash_between_two_replies_answers_the_rest_in_order(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch, out: int
) -> None:
    """Killed after ``out`` of the batch's six replies reached the gateway's reply ring,
    before its ring was committed: the restart answers none of those again, and the rest in
    order. Before the fix, with 1 out: [11, 12, 14, 15, 13, 16]."""
    exchange.gateways[RING].publish_batch(batch())
    with monkeypatch.context() as patch:
        patch.setattr(router_main, "send_pending", replies_out_then_crash(out))
        with pytest.raises(Crash):
            for _ in range(5):
                exchange.router.step(timeout_s=0.001)
    kill_router(exchange, monkeypatch)
    assert settled(exchange) == EXPECTED


def test_two_crashes_in_a_row_still_answer_in_order(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the journal write, then the restarted router killed again once its
    first reply left (the same batch read a third time)."""
    crash_after(exchange.router.journal, "append", monkeypatch)
    exchange.gateways[RING].publish_batch(batch())
    crash_then_restart(exchange, monkeypatch)
    with monkeypatch.context() as patch:
        patch.setattr(router_main, "send_pending", replies_out_then_crash(1))
        with pytest.raises(Crash):
            for _ in range(5):
                exchange.router.step(timeout_s=0.001)
    kill_router(exchange, monkeypatch)
    assert settled(exchange) == EXPECTED


def test_a_crash_while_the_batch_waits_for_the_interval_fsync_answers_in_order(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fsync = "interval"``: the batch is journaled and held (nothing of it leaves before
    the interval's fsync) when the router is killed; the OS still has the entries."""
    cfg = config(instance, tmp_path)
    interval = JournalConfig(fsync="interval", fsync_interval_ms=60_000)
    ex = funded(msgspec.structs.replace(cfg, journal=interval))
    try:
        ex.gateways[RING].publish_batch(batch())
        ex.router.step(timeout_s=0.001)
        assert ex.router._held and not told(ex)
        kill_router(ex, monkeypatch)
        assert settled(ex) == EXPECTED
    finally:
        ex.stop()


# -- sync mode: the owed answer waits for the standby -----------------------------------------


class KilledError(Exception):
    """What a SIGKILL does to the router's loop while it waits for the standby."""


def killed() -> bool:
    raise KilledError


@pytest.fixture
def standby(instance: str, tmp_path: Path) -> Iterator[tuple[Exchange, AckBlock, int]]:
    """A sync primary (no timeout), this test playing its replication source; account 7
    funded and acknowledged: the exchange, the source's block, the journal's last seq."""
    rep = ReplicationConfig(listen_port=1, mode="sync", sync_timeout_ms=0)
    cfg = msgspec.structs.replace(config(instance, tmp_path), replication=rep)
    source = AckBlock(ack_dir(cfg.var_dir, cfg.instance))
    source.acknowledged(10**9)
    ex = funded(cfg)
    last = len(journaled(ex))
    source.acknowledged(last)
    yield ex, source, last
    ex.stop()
    source.close()


def killed_waiting_for_the_standby(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch, last: int
) -> None:
    """The admin ring sends 31 (refused) and 32 (CreateAccount 30, journaled at ``last +
    1``); the router is killed while the batch waits for the standby, and restarts."""
    ex.router._stop = killed
    ex.gateways[RING].publish_batch(
        [order(31, 9, BUY, 1000, 1, gateway=RING), CreateAccount(0, 0, RING, 1, 32, 30)]
    )
    with pytest.raises(KilledError):
        ex.router.step(timeout_s=0.001)
    assert len(journaled(ex)) == last + 1
    kill_router(ex, monkeypatch)


def test_a_refusal_read_after_a_restart_waits_behind_the_answer_owed_before_it(
    standby: tuple[Exchange, AckBlock, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the restart the OK owed to 32 waits for the standby; 34, read after it, is
    refused meanwhile. Before the fix the refusal went out at once: [31, 34, 32]. Another
    gateway's replies do not wait behind it."""
    ex, source, last = standby
    killed_waiting_for_the_standby(ex, monkeypatch, last)
    ex.pump()
    ex.gateways[RING].publish_batch([order(34, 9, BUY, 1000, 1, gateway=RING)])
    ex.gateways[2].publish_batch([order(35, 9, BUY, 1000, 1, gateway=2)])
    ex.pump()
    early = told(ex)
    assert told(ex, 2) == [(35, *REJECTED)]
    source.acknowledged(last + 1)
    ex.pump()
    assert early + told(ex) == [(31, *REJECTED), (32, "AccountReply", "OK"), (34, *REJECTED)]
    assert early == [(31, *REJECTED)]  # nothing owed leaves before the standby has it


def test_a_deposit_is_not_answered_before_the_creation_of_its_account(
    standby: tuple[Exchange, AckBlock, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the restart 33 deposits into account 30, whose creation (32) is owed an OK;
    the standby acknowledges both while the router waits on 33. Before the fix 33's OK
    left first: [31, 33, 32] (the client read a deposit into an account not yet created)."""
    ex, source, last = standby
    killed_waiting_for_the_standby(ex, monkeypatch, last)
    ex.gateways[RING].publish_batch([Transfer(0, 0, RING, 1, 33, 30, USD, 5_000, 2033)])
    stepping = threading.Thread(target=ex.router.step, kwargs={"timeout_s": 0.001})
    stepping.start()
    deadline = time.monotonic() + 10
    while len(journaled(ex)) < last + 2:  # 33 journaled: the router waits for the standby
        assert time.monotonic() < deadline
        time.sleep(0.005)
    source.acknowledged(last + 2)
    stepping.join(10)
    assert not stepping.is_alive()
    ex.pump()
    assert told(ex) == [
        (31, *REJECTED),
        (32, "AccountReply", "OK"),
        (33, "AccountReply", "OK"),
    ]


def test_a_stop_while_waiting_for_the_standby_keeps_the_refusals_behind_the_owed_ok(
    standby: tuple[Exchange, AckBlock, int],
) -> None:
    """A stop while [41 CreateAccount, 42 refused] waits for the standby: the batch stays
    journaled, its ring uncommitted. Before the fix 42's refusal was sent at the stop and
    41's OK after the restart: [42, 41]."""
    ex, source, last = standby
    ex.router._stop = lambda: True
    ex.gateways[RING].publish_batch(
        [CreateAccount(0, 0, RING, 1, 41, 40), order(42, 9, BUY, 1000, 1, gateway=RING)]
    )
    ex.router.step(timeout_s=0.001)
    assert len(journaled(ex)) == last + 1
    ex.stop()
    ex.start()
    source.acknowledged(last + 1)
    ex.pump()
    assert told(ex) == [(41, "AccountReply", "OK"), (42, *REJECTED)]


def test_replies_of_other_commands_are_not_affected(exchange: Exchange) -> None:
    """A refusal is still answered at once, an account command once durable."""
    exchange.send(
        RING, order(51, 9, BUY, 1000, 1, gateway=RING), CreateAccount(0, 0, RING, 1, 52, 50)
    )
    assert told(exchange) == [(51, *REJECTED), (52, "AccountReply", "OK")]
