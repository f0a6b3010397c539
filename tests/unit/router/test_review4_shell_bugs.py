"""Bugs a fourth hostile review of the router's process shell found (``procs/router/main.py``
and the balance watches it serves). Each test fails on the code it was written against.

Method: the in-process rig of ``test_router.py`` (real rings, a real journal, a
``RouterShell`` and a ``MatcherShell`` stepped by hand); a crash is an exception raised from
a monkeypatched method, then the router is closed without committing anything and started
again, as the supervisor would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import RingConfig, RingexConfig
from procs.common.journal import JournalReader
from procs.common.records import (
    AdminCommand,
    Balance,
    MassCancel,
    Record,
    Rejected,
    WatchBalances,
)
from procs.common.topology import ADMIN_GATEWAY, journal_dir
from procs.common.types import AdminAction, Side, TimeInForce

from .test_router import BTC, CODEC, USD, Exchange, config, fund, order


class Crash(Exception):  # noqa: N818  (a stand-in for SIGKILL at one instruction)
    """The router dies here: nothing after this point of its step runs."""


def _crash_after(target: object, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    method = getattr(target, name)

    def run_then_die(*args: Any, **kwargs: Any) -> None:
        method(*args, **kwargs)
        raise Crash

    monkeypatch.setattr(target, name, run_then_die)


def _journaled(ex: Exchange) -> list[Record]:
    reader = JournalReader(
        journal_dir(ex.cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    return [CODEC.decode_slot(image) for _seq, image in reader.entries(1)]


def _config(instance: str, var: Path, capacity: int, **risk: int) -> RingexConfig:
    """``test_router.config`` without market data (whose ring line nobody reads here would
    hold the matcher's output ring once it filled), with ``capacity`` slots a ring."""
    base = config(instance, var)
    return msgspec.structs.replace(
        base,
        ring=RingConfig(capacity=capacity),
        marketdata=msgspec.structs.replace(base.marketdata, enabled=False),
        risk=msgspec.structs.replace(base.risk, **risk),
    )


def _watch(account: int, ref: int, gateway: int = 1) -> WatchBalances:
    return WatchBalances(0, 0, gateway, 1, ref, account, 60_000)


# -- replies that can never fit their ring ------------------------------------------------------


def test_balance_pushes_piling_up_past_the_reply_ring_starve_that_gateway_for_ever(
    instance: str, tmp_path: Path
) -> None:
    """A REST gateway (gw1) watches account 7, then falls behind reading its reply ring (a
    GC pause, a restart) until the ring is full. Account 7 keeps trading through gw2; every
    step ``_queue_balances`` appends the pushes of what changed to ``pending_replies[1]``
    whether or not they can go out, so the queue grows past the ring's capacity.

    What is wrong: ``_send_pending`` (procs/router/main.py) publishes a gateway's whole
    queue with one ``try_publish_batch(list(queue))``: all of it or nothing. A queue longer
    than the ring's capacity never fits, even in an empty ring, so once gw1 has caught up
    nothing more is ever sent to it; and since ``step`` takes no command from a gateway
    whose replies wait (``if pending[gateway]: continue``), gw1's orders are never read
    again either: the gateway is starved for ever (and the queue grows without bound).

    A correct router sends what fits (in chunks, as ``_publish`` does for the matchers) and
    bounds what it queues per gateway (pushes of one (account, asset) coalesce: only the
    newest values matter).
    """
    cap = 64
    ex = Exchange(_config(instance, tmp_path, cap * 4))
    try:
        fund(ex, 7, usd=10**9, btc=10**6)
        fund(ex, 8, usd=10**9, btc=10**6)
        ex.replies_of(2)
        ex.send(1, _watch(7, ref=1))
        # gw1 does not read: fill its reply ring with refusals (symbol 9 is unknown)
        capacity = ex.router.replies[1].ring.capacity
        refused = [
            msgspec.structs.replace(order(100 + k, 7, Side.BUY, 1000, 1), symbol=9)
            for k in range(capacity - 2)
        ]
        for k in range(0, len(refused), cap):
            ex.send(1, *refused[k : k + cap])
        ref = 1000
        for _ in range(capacity // 2 + 8):  # 7 trades with 8: pushes of 7's USD and BTC
            ref += 2
            ex.send(2, order(ref, 8, Side.SELL, 1000, 1, gateway=2))
            ex.send(2, order(ref + 1, 7, Side.BUY, 1000, 1, gateway=2))
            ex.replies_of(2)
        waiting = len(ex.router.pending_replies[1])
        got: list[Record] = []
        for _ in range(4):  # gw1 catches up, the router runs on
            while batch := ex.replies_of(1):
                got += batch
            ex.pump()
        ex.send(1, msgspec.structs.replace(order(5, 7, Side.BUY, 1000, 1), symbol=9))
        for _ in range(4):
            ex.pump()
            got += ex.replies_of(1)
        answered = [r for r in got if isinstance(r, Rejected) and r.client_ref == 5]
        pushes = [r for r in got if isinstance(r, Balance) and r.client_ref == 0]
        assert answered and pushes, (
            f"gw1 read its ring empty, yet {len(ex.router.pending_replies[1])} replies wait "
            f"in the router ({waiting} as it began to catch up; ring capacity {capacity}): "
            f"its new order got no answer and none of the pushes came"
        )
    finally:
        ex.stop()


# -- admin commands read again after a crash ----------------------------------------------------


def test_an_end_of_session_journaled_before_a_crash_is_sequenced_again_after_it(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crash point: ``RouterShell.step`` after ``journal.append`` of a batch holding the
    operator's ``AdminCommand(END_OF_SESSION)`` from the admin ring, before the rings'
    commit (the same holds for HALT, RESUME, SNAPSHOT and SHUTDOWN).

    What is wrong: ``identity`` (procs/core/recovery.py) gives an ``AdminCommand`` none, so
    ``JournaledTail`` cannot recognise it and ``Reread.filter`` (procs/router/reread.py)
    keeps it: the restarted router sequences it a second time. In between, gw1's ring (read
    first in the round robin) brings a DAY order its client sent after the session ended
    and the exchange came back; the second END_OF_SESSION expires it. The journal now holds
    the operator's one command twice, and the state differs from the run without the crash.

    A correct router executes an admin command once: it carries an identity (a client ref,
    as the admin client already makes for account commands) that the journaled tail knows.
    """
    ex = Exchange(config(instance, tmp_path))
    admin = ex.gateways[ADMIN_GATEWAY]  # the admin ring's one producer: `ringex admin`
    try:
        fund(ex, 7, usd=10**9, btc=0)
        _crash_after(ex.router.journal, "append", monkeypatch)
        # with its reference in arg, as `ringex admin` sends it
        admin.publish_batch([AdminCommand(0, 0, AdminAction.END_OF_SESSION, 0, 1_000_042)])
        with pytest.raises(Crash):
            ex.router.step(timeout_s=0.001)
        monkeypatch.undo()
        ex.stop()
        ex.start()
        day = msgspec.structs.replace(order(50, 7, Side.BUY, 1000, 10), tif=TimeInForce.DAY)
        ex.gateways[1].publish_batch([day])  # the client's order, sent after the restart
        ex.pump()
        ex.pump()
        sessions = [c.seq for c in _journaled(ex) if isinstance(c, AdminCommand)]
        open_orders = ex.router.sequencer.accounts.open_orders(7)
        assert len(sessions) == 1 and open_orders == 1, (
            f"one END_OF_SESSION was sent; the journal holds it at seqs {sessions}, and the "
            f"DAY order sent after it has {open_orders} open order(s) (expected 1)"
        )
    finally:
        ex.stop()


# -- a balance snapshot that claims a command it has only half applied ---------------------------


def test_a_balance_snapshot_claims_a_mass_cancel_whose_events_it_has_half_applied(
    instance: str, tmp_path: Path
) -> None:
    """Account 7 rests 4200 orders on distinct prices; a mass cancel (seq N) makes 8400
    events (the 4200 OrderDones, then the 4200 BookLevels), more than ``settle`` reads from
    a matcher at once (``consumer.read(4096)``). A REST gateway asks for 7's balances in
    between.

    What is wrong: ``settle`` (procs/router/main.py) sets ``applied_seq`` to the seq of the
    last event it read, though more events of that command may follow, and the watch's
    snapshot is stamped with it (``_queue_balances``: ``self.applied_seq``). The snapshot
    says "as of seq N" while part of the mass cancel's holds are still reserved in it. The
    REST gateway (``rest_orders._balance``: ``_have[account] = balance.seq``) takes it as
    including every event up to N, and answers a client that saw every order cancelled
    with USD still locked. The same holds for a push, which carries the command's seq too,
    and for several matchers (``applied_seq`` is the newest seq of any of them).

    A correct router labels a balance only with a seq all of whose events (and all events
    before it) it has applied: for example the seq before the newest event's, the lowest of
    that across the matchers.
    """
    ex = Exchange(_config(instance, tmp_path, 16384, max_open_orders=10_000))
    try:
        fund(ex, 7, usd=10**12, btc=0)
        orders = [order(10 + k, 7, Side.BUY, 100 + k, 1) for k in range(4200)]
        for k in range(0, len(orders), 1000):
            ex.send(1, *orders[k : k + 1000])
        assert ex.router.sequencer.accounts.open_orders(7) == 4200
        ex.replies_of(1)
        ex.gateways[1].publish_batch([MassCancel(0, 0, 1, 1, 9000, 7, 1)])
        ex.router.step(timeout_s=0.001)  # journaled and sent to the matcher
        mass = ex.router.sequencer.next_seq - 1
        ex.matcher.step(timeout_s=0.001)  # 8400 events out
        ex.gateways[1].publish_batch([_watch(7, ref=9001)])
        ex.router.step(timeout_s=0.001)  # settles 4096 OrderDones, then the watch
        snapshot = [r for r in ex.replies_of(1) if isinstance(r, Balance) and r.client_ref == 9001]
        usd = [(b.seq, b.free, b.reserved) for b in snapshot if b.asset == USD]
        assert usd and not (usd[0][0] >= mass and usd[0][2] != 0), (
            f"the snapshot of 7's USD says seq {usd[0][0]} (the mass cancel is seq {mass}: "
            f"every order done) yet reserved={usd[0][2]}"
        )
        ex.pump()
        assert ex.router.sequencer.accounts.balance(7, USD)[1] == 0
        assert ex.router.sequencer.accounts.balance(7, BTC) == (0, 0)
    finally:
        ex.stop()
