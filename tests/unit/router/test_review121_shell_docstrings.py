"""Review 121: the docstrings (module, class and function docstrings, ``#:`` comments) of the
router's process shell held to the code. This file: ``procs/router/main.py`` over review 8's
in-process exchange (real rings, a real journal, a ``RouterShell`` and a ``MatcherShell``
stepped by hand) and over small stand-ins of its state; ``..._docstrings2.py``: ``intake.py``,
``held.py``, ``commits.py``, ``reply_queue.py``, ``reread.py``, ``gateway_rings.py``,
``applied.py``, ``snapshots.py`` and ``time_use.py``.

Convention: every test anchors its claim with a verbatim quote of the docstring it checks
(whitespace folded, ``says``), so a reworded docstring fails here loudly; then it runs the
claim against the code. A claim found right is a plain test; a disagreement is a strict xfail
that asserts what the docstring says, its reason naming the side to fix. A crash is review 8's:
an exception at one point of a step, then ``kill_router`` (nothing more leaves the dead one).

Disagreements found, all fixed since (the first two in the code):

- ``commits.py`` module: a ring is committed "so a restart reads again exactly those whose
  answers were only in its memory", but under ``"pipelined"`` a held batch's balance watch
  routed while a later batch is journaled and not yet durable waits in ``_watch_requests``
  (memory) while ``_commit_answered`` commits its ring wholly: a crash then loses its
  snapshot (part two).
- ``main.py`` module: a step takes "up to ``router_batch``" commands, but ``_take``'s quota
  is at least one a ring: ``router_batch`` 1 with two gateways waiting takes two.
- ``RouterShell.step``: "returns how many gateway commands it took (watches included)", but
  a stop while the batch waits for the standby returns ``_abandon``'s count, watches left out.
- ``RouterShell.__init__``: the ``#:`` comment "a matcher's unread input past which no gateway
  command is taken" sits on ``_balances_since``, not on ``_books_limit`` (a misplaced line).
- ``RouterShell._waiting_since``: "when its replies began to wait for room", but
  ``_commit_answered`` also starts it for a gateway whose commands wait in a held batch.
"""

from __future__ import annotations

import collections
import inspect
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import msgspec
import pytest

from config.schema import JournalConfig, RingexConfig
from procs.common.epochs import Epochs, JournalFencedError
from procs.common.records import (
    Balance,
    CreateAccount,
    Record,
    Rejected,
    SymbolRules,
    WatchBalances,
)
from procs.common.replication_ack import FENCED, AckBlock, ack_dir
from procs.common.topology import journal_dir, matcher_input
from procs.common.types import Side
from procs.router import main as router_main
from procs.router.held import Batch, HeldBatches
from procs.router.main import RouterShell
from procs.router.time_use import FSYNC, FULL, IDLE
from shm import Ring
from tests.unit.router.test_review8_owed_replies import (
    EXPECTED,
    REJECTED,
    RING,
    batch,
    crash_then_restart,
    funded,
    settled,
    standby,
    told,
)
from tests.unit.router.test_review_crash_points_bugs import crash_after, journaled
from tests.unit.router.test_router import CODEC, Exchange, order
from tests.unit.router.test_router import config as router_config
from tests.unit.test_review109_readme_processes2 import REFUSAL, Commits

__all__ = ["standby"]  # review 8's sync primary, a fixture here too
BUY = Side.BUY


def refusal(ref: int, gateway: int = 1) -> Rejected:
    return msgspec.structs.replace(REFUSAL, client_ref=ref, gateway=gateway)


def fold(text: str) -> str:
    return " ".join(text.split())


def says(where: object, quote: str) -> None:
    """``where``'s docstring (a module's: with its ``#:`` comments) still says ``quote``."""
    if isinstance(where, (ModuleType, type)):
        lines = inspect.getsource(where).splitlines()
        text = (
            (inspect.getdoc(where) or "")
            + " "
            + " ".join(
                line.strip().removeprefix("#:") for line in lines if line.strip().startswith("#:")
            )
        )
    else:
        text = inspect.getdoc(where) or ""
    assert fold(quote) in fold(text), f"{where!r} no longer says {quote!r}"


def with_journal(cfg: RingexConfig, **journal: Any) -> RingexConfig:
    return msgspec.structs.replace(cfg, journal=JournalConfig(**journal))


def shell(**state: Any) -> Any:
    """A stand-in of ``RouterShell``'s state; its named methods are RouterShell's, bound."""
    ns = SimpleNamespace(**state)
    for name in dir(RouterShell):
        if (name.startswith("_") and not name.startswith("__")) or name == "settle":
            value = getattr(RouterShell, name)
            if inspect.isfunction(value) and not hasattr(ns, name):
                setattr(ns, name, value.__get__(ns))
    return ns


@pytest.fixture
def exchange(instance: str, tmp_path: Path) -> Iterator[Exchange]:
    ex = funded(router_config(instance, tmp_path))
    yield ex
    ex.stop()


def restarted(ex: Exchange, cfg: RingexConfig) -> Exchange:
    """``ex``'s router started again under ``cfg``."""
    ex.router.close()
    ex.cfg = cfg
    ex.router = RouterShell(cfg)
    return ex


def inbound(ex: Exchange) -> list[Record]:
    """Everything on the matcher's input ring still readable, oldest first."""
    ring = Ring.attach(ex.cfg.instance, matcher_input("m1"), CODEC)
    try:
        cursor = ring.cursor()
        return [ring.record(n) for n in range(max(0, cursor - ring.capacity), cursor)]
    finally:
        ring.close()


# -- main.py: the module's loop ------------------------------------------------------------------


@pytest.mark.parametrize("fsync", ["batch", "interval", "pipelined"])
def test_no_matcher_sees_a_command_that_is_not_durable(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch, fsync: str
) -> None:
    """main.py: "made durable under the fsync policy (group commit) *before* step 4: no
    matcher, hence no execution report, ever sees a command that is not durable" (``step``,
    ``_route``, ``_publish``): every record published to a matcher has a seq the journal's
    ``durable_seq`` covers, under load from two gateways, the router behind."""
    says(router_main, "made durable under the fsync policy (group commit) *before* step 4: no")
    says(router_main, "matcher, hence no execution report, ever sees a command that is not")
    cfg = with_journal(exchange.cfg, fsync=fsync, fsync_interval_ms=2, pipeline_behind=1)
    ex = restarted(exchange, msgspec.structs.replace(cfg, router_batch=6))
    published = ex.router._publish
    seen: list[int] = []

    def checked(producer: Any, records: Any) -> None:
        for r in records:
            seq = getattr(r, "seq", 0)
            assert seq <= ex.router.journal.durable_seq, (seq, ex.router.journal.durable_seq)
            seen.append(seq)
        published(producer, records)

    monkeypatch.setattr(ex.router, "_publish", checked)
    for k in range(3):
        ex.gateways[1].publish_batch(
            [order(100 + 10 * k + j, 7, BUY, 900 + j, 1) for j in range(9)]
        )
        ex.gateways[2].publish_batch([order(500 + k, 7, BUY, 800, 1, gateway=2)])
        for _ in range(3):
            ex.router.step(timeout_s=0.001)
    deadline = time.monotonic() + 5
    while len(seen) < 30 and time.monotonic() < deadline:
        ex.pump()
    assert len(seen) == 30


def test_a_step_settles_then_takes_journals_publishes_answers_and_commits(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main.py steps 1-5: "settle: read every matcher's output ring", "take up to", "append
    the accepted ones to the journal in one write", "publish them to the matchers' input
    rings; send the gateways their replies", "commit the gateways' rings" (``step``)."""
    for quote in (
        "settle: read every matcher's output ring and apply the events",
        "append the accepted ones to the journal in one write",
        "publish them to the matchers' input rings; send the gateways their replies",
        "commit the gateways' rings: a crash before this re-reads the batch",
    ):
        says(router_main, quote)
    router, calls = exchange.router, []

    def spy(target: object, name: str) -> None:
        method = getattr(target, name)

        def run(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return method(*args, **kwargs)

        monkeypatch.setattr(target, name, run)

    for target, name in (
        (router, "settle"),
        (router, "_take"),
        (router.journal, "append"),
        (router.journal, "sync"),
        (router, "_publish"),
        (router, "_send_pending"),
        (router.inputs[0][1], "commit"),
    ):
        spy(target, name)
    exchange.gateways[1].publish_batch([order(60, 7, BUY, 900, 1)])
    # an account's creation on the admin ring, the one that carries them (review 343)
    exchange.gateways[RING].publish_batch([CreateAccount(0, 0, RING, 1, 61, 61)])
    exchange.router.step(timeout_s=0.001)
    assert calls == ["settle", "_take", "append", "sync", "_publish", "_send_pending", "commit"]


def test_a_step_takes_router_batch_at_least_one_a_ring(exchange: Exchange) -> None:
    """main.py: "take up to ``router_batch`` commands from the gateways' rings (at least one
    from each ring that has one)" (review 121: the floor was unsaid): ``router_batch`` 1,
    gateways 1 and 2 with commands waiting: one each."""
    says(router_main, "(at least one from each ring that has one), round robin so that a busy")
    ex = restarted(exchange, msgspec.structs.replace(exchange.cfg, router_batch=1))
    ex.gateways[1].publish_batch([order(70 + k, 9, BUY, 900, 1) for k in range(3)])
    ex.gateways[2].publish_batch([order(80 + k, 9, BUY, 900, 1, gateway=2) for k in range(3)])
    assert ex.router.step(timeout_s=0.001) == 2


def test_a_busy_gateway_does_not_starve_another(exchange: Exchange) -> None:
    """main.py: "round robin so that a busy gateway cannot starve the others": gateway 1
    floods, gateway 2 sends one; the first step answers gateway 2 (``_take``'s quota)."""
    says(router_main, "round robin so that a busy gateway cannot starve the others, and")
    ex = restarted(exchange, msgspec.structs.replace(exchange.cfg, router_batch=30))
    ex.gateways[1].publish_batch([order(1000 + k, 9, BUY, 900, 1) for k in range(200)])
    ex.gateways[2].publish_batch([order(99, 9, BUY, 900, 1, gateway=2)])
    assert ex.router.step(timeout_s=0.001) == 11  # 10 of gateway 1's, gateway 2's one
    assert told(ex, 2) == [(99, *REJECTED)]


def test_balance_watches_are_answered_never_sequenced_or_journaled(exchange: Exchange) -> None:
    """main.py: "their balance watches' snapshots and pushes (``watches.py``: read-only,
    never sequenced or journaled)": a ``WatchBalances`` gets its snapshot, the journal is
    unchanged, the step counts it ("watches included")."""
    says(router_main, "read-only, never sequenced or journaled")
    says(
        RouterShell.step, "One batch; returns how many gateway commands it took (watches included)."
    )
    before = exchange.router.journal.next_seq
    exchange.gateways[1].publish_batch([WatchBalances(0, 0, 1, 1, 88, 7, 60_000)])
    assert exchange.router.step(timeout_s=0.001) == 1
    assert exchange.router.journal.next_seq == before
    snapshot = exchange.replies_of(1)
    assert snapshot and all(type(b) is Balance and b.client_ref == 88 for b in snapshot)


def test_a_stop_waiting_for_the_standby_still_counts_the_watches(
    standby: tuple[Exchange, AckBlock, int],
) -> None:
    """``RouterShell.step`` -> ``_abandon``: a stop while [CreateAccount, WatchBalances]
    (on the admin ring, which carries an account's creation: review 343) waits for the
    standby; the step took two gateway commands (review 121: it said one)."""
    says(RouterShell.step, "returns how many gateway commands it took (watches included)")
    ex, _source, _last = standby
    ex.router._stop = lambda: True
    ex.gateways[RING].publish_batch(
        [CreateAccount(0, 0, RING, 1, 41, 40), WatchBalances(0, 0, RING, 1, 42, 7, 60_000)]
    )
    assert ex.router.step(timeout_s=0.001) == 2


def test_a_crash_after_the_journal_write_is_published_again_at_start(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main.py: "then any journaled command that a matcher's input ring lacks (a crash
    between steps 3 and 4) is published to it again" (``_resend_unrouted``): the order
    reaches the matcher once, and is journaled once."""
    says(router_main, "then any journaled command that a matcher's input ring lacks (a crash")
    crash_after(exchange.router.journal, "append", monkeypatch)
    exchange.gateways[1].publish_batch([order(90, 7, BUY, 900, 1)])
    crash_then_restart(exchange, monkeypatch)
    refs = [getattr(r, "client_ref", 0) for r in inbound(exchange)]
    assert refs.count(90) == 1
    exchange.pump()
    assert [getattr(c, "client_ref", 0) for c in journaled(exchange)].count(90) == 1
    assert [getattr(r, "client_ref", 0) for r in inbound(exchange)].count(90) == 1


def test_a_crash_before_the_commit_rereads_and_answers_in_order(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main.py: "a crash before this re-reads the batch, and because nothing was routed
    before it was journaled, the restart's recovery and the journal agree": killed after the
    batch's replies and publish, before the commit (review 8's batch)."""
    says(router_main, "because nothing was routed before it was journaled, the restart's")
    crash_after(exchange.router, "_flush_replies", monkeypatch)
    exchange.gateways[RING].publish_batch(batch())
    crash_then_restart(exchange, monkeypatch)
    assert settled(exchange) == EXPECTED


def test_a_fenced_journal_is_not_opened(exchange: Exchange) -> None:
    """main.py: "A journal fenced by a promotion (``procs.common.epochs``) is not opened":
    ``RouterShell`` raises ``JournalFencedError`` (``main`` logs it and returns 2)."""
    says(router_main, "A journal fenced by a promotion (``procs.common.epochs``) is not opened:")
    exchange.router.close()
    directory = journal_dir(exchange.cfg)
    Epochs.load(directory).fenced(2, "b").save(directory)
    with pytest.raises(JournalFencedError):
        RouterShell(exchange.cfg)
    exchange.router = SimpleNamespace(close=lambda: None)  # type: ignore[assignment]


def test_a_fenced_router_takes_nothing_and_keeps_settling() -> None:
    """main.py: "sequences nothing more ... it keeps settling the matchers' events";
    ``_fenced``: "take no command; keep the matchers drained" (``step``): the FENCED word
    set, a step settles, takes nothing, logs once, and naps as idle when nothing settled."""
    says(router_main, "sequences nothing more and publishes nothing still waiting for")
    says(RouterShell._fenced, "take no command; keep the matchers drained.")
    settled_: list[int] = []
    use = SimpleNamespace(waited=lambda state, since: settled_.append(state))
    rig = shell(
        acks=SimpleNamespace(words={FENCED: 3}),
        fenced=False,
        time_use=use,
        journal=SimpleNamespace(next_seq=5),
        settle=lambda: 0,
        _take=lambda: pytest.fail("took a command"),
    )
    rig._beat_due = float("inf")
    assert RouterShell.step(rig, 0.001) == 0 and rig.fenced and settled_ == [IDLE]


# -- main.py: the #: comments ---------------------------------------------------------------------


def test_the_router_beats_on_every_line_it_reads_every_beat_s() -> None:
    """``BEAT_S``: "How often the router beats on every line it reads"; ``_beat``: "Every
    ``BEAT_S``, a heartbeat on every line this router reads"."""
    says(router_main, "How often the router beats on every line it reads")
    beats: list[str] = []

    def line(name: str) -> Any:
        return SimpleNamespace(heartbeat=lambda: beats.append(name))

    rig = shell(inputs=[(1, line("g1")), (0, line("admin"))], from_matchers=[line("m1")])
    rig._beat_due = 0.0
    rig._beat()
    rig._beat()  # within BEAT_S: none
    assert beats == ["g1", "admin", "m1"]
    assert rig._beat_due - time.monotonic() == pytest.approx(router_main.BEAT_S, abs=0.1)


def test_a_pipelined_journal_sets_the_gil_switch_interval(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PIPELINED_SWITCH_S``: "The GIL hand-over interval of a router whose journal fsyncs
    on a thread ("pipelined")" (``_open_journal``); ``"batch"`` leaves it."""
    says(router_main, "The GIL hand-over interval of a router whose journal fsyncs on a thread")
    set_to: list[float] = []
    monkeypatch.setattr(sys, "setswitchinterval", set_to.append)
    for fsync in ("batch", "pipelined"):
        cfg = with_journal(router_config(instance, tmp_path / fsync), fsync=fsync)
        router_main._open_journal(cfg, CODEC).close()
    assert set_to == [router_main.PIPELINED_SWITCH_S]


def test_the_router_reads_gateways_and_matchers_as_one_consumer(exchange: Exchange) -> None:
    """``CONSUMER``: "The consumer name the router takes on gateways' command rings and
    matchers' output rings"."""
    says(router_main, "The consumer name the router takes on gateways' command rings and")
    names = {c.name for _g, c in exchange.router.inputs}
    names |= {c.name for c in exchange.router.from_matchers}
    assert names == {router_main.CONSUMER}


def test_the_books_limit_comment_sits_on_books_limit() -> None:
    """``RouterShell.__init__``: a ``#:`` comment documents the assignment after it (review
    121: this one sat a line too high)."""
    quote = "#: a matcher's unread input past which no gateway command is taken"
    lines = inspect.getsource(RouterShell.__init__).splitlines()
    [at] = [k for k, line in enumerate(lines) if line.strip().startswith(quote)]
    assert lines[at + 1].strip().startswith("self._books_limit")


def test_waiting_since_covers_a_held_batch_too() -> None:
    """``RouterShell.__init__``'s ``_waiting_since`` comment ("when its replies (or a watch,
    or its held batch) began to wait"; review 121: it named replies alone), against
    ``_commit_answered`` (review 109's ``Commits`` stand-in): gateway 1, no reply waiting, a
    batch held: its wait is counted."""
    lines = " ".join(inspect.getsource(RouterShell.__init__).split())
    assert "when its replies (or a watch, or its held batch) #: began to wait" in lines
    rig = Commits()
    rig._held.hold(Batch(last_seq=5, decisions=[], origins=[1], watch_requests=[]))
    rig._commit_answered()
    assert not rig.pending_replies[1] and 1 in rig._waiting_since


def test_an_owed_answer_holds_back_every_later_reply_of_its_gateway() -> None:
    """``_answer``: "an answer owed to a command journaled at ``journaled`` before a
    restart waits until the standby holds that entry ... and every later reply of the
    gateway waits behind it, even a refusal"; ``_standby_holds``: "a gate degraded to
    async, or none, asks nothing of the standby"; ``_pay_owed``: "up to the first one the
    standby may not allow yet"."""
    says(RouterShell._answer, "and every later reply of the gateway waits behind it, even a")
    says(RouterShell._standby_holds, "a gate degraded to async, or none, asks nothing")
    says(RouterShell._pay_owed, "up to the first one the standby may not allow yet")
    block = SimpleNamespace(acked_seq=5)
    rig = shell(
        gate=SimpleNamespace(degraded=False, block=block),
        _owed={},
        pending_replies={1: collections.deque(), 2: collections.deque()},
    )
    ok7, ok9, late, other = refusal(1), refusal(2), refusal(3), refusal(4, 2)
    rig._answer(1, ok7, 7)
    rig._answer(1, ok9, 9)
    rig._answer(1, late)
    rig._answer(2, other)
    assert list(rig.pending_replies[1]) == [] and list(rig.pending_replies[2]) == [other]
    block.acked_seq = 7
    rig._pay_owed()
    assert list(rig.pending_replies[1]) == [ok7] and list(rig._owed[1]) == [(9, ok9), (0, late)]
    rig.gate.degraded = True
    rig._pay_owed()
    assert list(rig.pending_replies[1]) == [ok7, ok9, late] and rig._owed == {}


def test_publishing_on_a_full_ring_drains_the_matchers_first() -> None:
    """main.py: "Publishing never blocks while the router has events to drain";
    ``_publish``: "waiting while the ring is full: drain the matchers meanwhile, and between
    drains wait as configured" (chunks of half the ring; the wait counted ``FULL``)."""
    says(RouterShell._publish, "waiting while the ring is full: drain the matchers meanwhile")
    tries = iter([True, False, False, True])
    log: list[Any] = []

    def publish(chunk: list[int]) -> bool:
        log.append(len(chunk))
        return next(tries)

    def settle() -> int:
        log.append("settle")
        return next(drains)

    producer = SimpleNamespace(
        ring=SimpleNamespace(capacity=4),
        try_publish_batch=publish,
        idle_round=lambda n, r: log.append(("idle", r)),
    )
    drains = iter([3, 0])
    rig = shell(settle=settle, time_use=SimpleNamespace(waited=lambda s, t: log.append(s)))
    rig._publish(producer, [1, 2, 3, 4])
    assert log == [2, 2, "settle", 2, "settle", ("idle", 0), FULL, 2]


# -- main.py: start-up ----------------------------------------------------------------------------


def test_a_start_journals_and_fsyncs_its_rules_and_routes_them(
    instance: str, tmp_path: Path
) -> None:
    """``_journal_rules``: "``_resend_unrouted`` routes them to their matchers";
    ``_journal_at_start``: "Journal and fsync what a starting router sequenced of its own":
    a fresh instance under ``"interval"`` (no interval's fsync due) has its rules durable
    and on the matcher's input ring."""
    says(RouterShell._journal_rules, "``_resend_unrouted`` routes them to their matchers.")
    says(RouterShell._journal_at_start, "Journal and fsync what a starting router sequenced")
    cfg = with_journal(router_config(instance, tmp_path), fsync="interval", fsync_interval_ms=10**6)
    ex = Exchange(cfg)
    try:
        journal = ex.router.journal
        assert journal.next_seq > 1 and journal.durable_seq == journal.next_seq - 1
        assert any(type(r) is SymbolRules for r in inbound(ex))
    finally:
        ex.stop()


def test_a_sync_start_never_waits_on_the_standby(instance: str, tmp_path: Path) -> None:
    """``_resend_unrouted``: "in sync mode the loop's first step does, once the standby has
    them, so start-up never waits on the standby"; ``_send_unrouted``: "False if a stop
    came first"."""
    says(RouterShell._resend_unrouted, "so start-up never waits on the standby.")
    says(RouterShell._send_unrouted, "False if a stop came first.")
    rep = msgspec.structs.replace(
        router_config(instance, tmp_path).replication, listen_port=1, mode="sync", sync_timeout_ms=0
    )
    cfg = msgspec.structs.replace(router_config(instance, tmp_path), replication=rep)
    source = AckBlock(ack_dir(cfg.var_dir, cfg.instance))  # acknowledges nothing
    ex = Exchange(cfg)
    try:
        assert ex.router._unrouted and not inbound(ex)  # the rules wait for the standby
        ex.router._stop = lambda: True
        assert ex.router._send_unrouted() is False and not inbound(ex)
        source.acknowledged(ex.router.journal.next_seq - 1)
        assert ex.router._send_unrouted() is True
        assert any(type(r) is SymbolRules for r in inbound(ex))
    finally:
        ex.stop()
        source.close()


# -- main.py: the loop's parts --------------------------------------------------------------------


def test_route_durable_starts_no_fsync() -> None:
    """``_route_durable``: "Under "pipelined" it starts no fsync": it collects a finished
    one (``JournalWriter.collect``) and routes what it made durable, oldest first."""
    says(RouterShell._route_durable, 'Under "pipelined" it starts no fsync:')
    calls: list[str] = []
    held = HeldBatches()
    for last in (3, 5):
        held.hold(Batch(last, [], [], []))
    journal = SimpleNamespace(
        collect=lambda: calls.append("collect"),
        durable_seq=4,
        maybe_sync=lambda: calls.append("maybe_sync"),
        sync=lambda: calls.append("sync"),
    )
    rig = shell(_held=held, journal=journal)
    rig._route = lambda b: calls.append(f"route {b.last_seq}")
    rig._route_durable()
    assert calls == ["collect", "route 3"] and bool(held)


def test_an_idle_step_keeps_the_intervals_promise(exchange: Exchange) -> None:
    """``_idle_step``: "Nothing to decide: send what waits, keep the journal's promises,
    wait": under ``"interval"`` a held batch (an account's creation, on the admin ring: review
    343) goes out by the interval's fsync, with no command after it (the idle wait ends by
    ``sync_due_in_s``)."""
    says(RouterShell._idle_step, "Nothing to decide: send what waits, keep the journal's promises")
    ex = restarted(exchange, with_journal(exchange.cfg, fsync="interval", fsync_interval_ms=30))
    ex.gateways[RING].publish_batch([CreateAccount(0, 0, RING, 1, 95, 95)])
    ex.router.step(timeout_s=0.001)
    assert ex.router._held and told(ex) == []
    began = time.monotonic()
    while ex.router._held and time.monotonic() - began < 5:
        ex.router.step(timeout_s=0.05)
    assert told(ex) == [(95, "AccountReply", "OK")]


def test_an_idle_pipelined_step_waits_for_the_fsync_as_fsync() -> None:
    """``_idle_step``: "the held batches' fsync runs on the journal's thread; nothing else
    to do, so wait for it rather than for the rings" (counted ``FSYNC``, not ``IDLE``)."""
    says(RouterShell._idle_step, "Nothing to decide")
    states: list[int] = []
    waits: list[float] = []
    journal = SimpleNamespace(
        syncing=True, wait_durable=waits.append, maybe_sync=lambda: None, sync_due_in_s=lambda: None
    )
    rig = shell(
        _held=[1],
        journal=journal,
        gate=None,
        _owed={},
        time_use=SimpleNamespace(waited=lambda s, t: states.append(s)),
    )
    for name in ("_route_durable", "_flush_replies", "_commit_answered"):
        setattr(rig, name, lambda: None)
    rig._idle = lambda t: pytest.fail("waited on the rings")
    rig._idle_step(0.01)
    assert waits == [0.01] and states == [FSYNC]
