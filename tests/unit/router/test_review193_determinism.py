"""Review 193: a hostile audit of "the same input sequence gives byte-identical output" and
"a restart takes the same path as recovery", at the router and matcher level.

Reviewed: ``procs/core/sequencer.py`` (``submit``, ``settle``, ``replay``, ``state``/
``restore``), ``accounts.py`` and ``accounts_state.py``, ``transfer_keys.py``, ``engine.py``,
``book.py``/``fast_book.py``/``reference_book.py``, ``resting.py``, ``account_orders.py``,
``recovery.py`` (``Recovered.apply``, ``JournaledTail``), and the shells: ``procs/router/
main.py`` (the step), ``intake.py`` (round robin, the clock read per command), ``reread.py``,
``procs/matcher/main.py``.
Rig: review 187's ``Rig`` (real rings, a real journal in ``tmp_path``, ``RouterShell`` and
``MatcherShell`` stepped by hand, its SIGKILL ``kill``), with the router's clock replaced
(``FakeTime``: a command's stamp is T0 plus its seq in us, so it follows its place in the
journal, not how often the router looked). One stream (``stream``) of rounds over gateways
1, 2 and the admin ring: account creation, deposits, a withdrawal refused for balance and a
transfer key reused, an order refused for balance, limits, an iceberg, post-only, DAY
orders, a stop-market and a stop-limit (triggered by a trade), STP of each mode, a replace,
cancels, IOC, HALT/RESUME with an order refused while halted, END_OF_SESSION, mass cancels
(one account's, the operator's of everything), under maker/taker fees. Compared: the
journal's records byte for byte (their slot images), every event the matcher published
(heartbeats aside: they carry the wall clock by design), each gateway's replies, the
accounts' and the books' ``state_hash``, and the router and matcher snapshots. (a) one
run; (b) router batches of 64, 3 and 1, rings of 4,096 and 64, commands sent all at once or
one by one, the gateways' rings one at a time or all at once (then the round robin decides
the order, and the journal replayed must give the live events and state); (c) the exchange
snapshot after every journaled command, restored (books into ``FastBook`` and
``ReferenceBook``) and the rest replayed, then live decisions on it (``probe``); (d) an
exception at four points of a router step (before the journal write, before the publish,
in the replies, before the commit) in six rounds, then recovery; (e, in
``..._determinism2.py``) two interpreters with different ``PYTHONHASHSEED``.

Faults found:

1. ``procs/router/reread.py:66-75`` (``Reread.filter``) with ``main.py:287-292`` (the step
   journals a batch, then ``_route`` publishes it and queues its replies): a command refused
   in a batch whose accepted commands were journaled, the router dying before the refusal
   went out (in ``_route`` or while sending replies), is neither journaled nor "told", so
   the restarted router decides it again, on the recovered state, which already holds the
   commands journaled after it in that batch. An order refused for balance, followed in the
   same step by a deposit that would fund it, is accepted after the restart and sequenced
   after the deposit its own gateway sent later; a refused withdrawal's reply names another
   balance. The module's own docstring promises "the gateway reads the rest, owed or
   decided again, as a run without the crash would send them" and "a refusal must not
   become an acceptance on the state recovery settled since". Fix: keep the verdict of a
   refusal that precedes a journaled command of its gateway (in ``Reread.filter``: a
   command not journaled, read before a journaled one of the same ring, was refused:
   decide it against the state at its place, e.g. by journaling refusals as markers, or by
   answering it with a refusal kept in the journal's tail), or publish the batch's refusals
   before the journal write they do not depend on. Was (fixed: a command of a journaled
   kind read before its ring's last journaled one, neither journaled nor told, is refused
   again with ``REFUSED_BEFORE_RESTART``, its reason not kept; an admin command and a
   transfer's repeat are decided again, alike). An account command's OK owed after the
   restart names the free balance then, not the one after it (``answered_again``; a live
   one depends on when the matchers' events were settled anyway). Tests:
   ``test_a_refusal_cut_off_by_a_crash_after_the_journal_write_stays_refused`` and the
   round-1 ``route``/``replies`` cases of
   ``test_a_crash_at_any_point_of_a_step_recovers_to_the_uncrashed_run``.

Found sound (plain tests): the same commands in one order give the same journal, events,
replies, state hashes and snapshots whatever the router batch, ring capacity or chunking;
any interleaving of the gateways' rings replays (``Recovered.apply``) to its live events
record for record and to its live accounts, books and router state (``settled_upto``
aside: only a replay moves it, and the live router's state is never snapshotted:
``snapshot_job`` replays); a snapshot after any journaled command restores to the same
bytes, into either book, replays the rest to the same events, and takes the same live
decisions after (client ids, order ids, trade ids, stops, iceberg reserve, DAY orders, STP,
halts, fees, last prices, transfer keys are all in it); a crash before the journal write,
before the publish (but fault 1), in the replies (but fault 1) or before the commit
recovers to the uncrashed journal, events and state, each gateway told the same answers (a
reply may repeat across the crash); no output depends on the hash seed. Not faults: the
per-account command-rate buckets are not in the snapshot (a restart refills them, as the
time a restart takes would), the journal's segment header holds its creation time, and
the matcher's start-up heartbeats carry the wall clock: none is a journaled command,
an event of one, or state a replay reads.
"""

from __future__ import annotations

import hashlib
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import msgspec
import pytest

from config.schema import JournalConfig, MatcherConfig, RingConfig, RingexConfig
from procs.common.records import (
    AccountReply,
    AdminCommand,
    CancelOrder,
    CreateAccount,
    Heartbeat,
    MassCancel,
    NewOrder,
    Record,
    Rejected,
    ReplaceOrder,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.topology import ADMIN_GATEWAY
from procs.common.types import AdminAction, OrderFlag, OrdType, Side, StpMode, TimeInForce
from procs.core.engine import Matcher
from procs.core.fast_book import FastBook
from procs.core.recovery import Recovered, fresh
from procs.core.reference_book import ReferenceBook
from procs.core.sequencer import RouterState, Sequencer
from procs.core.symbols import symbol_specs
from procs.router import intake
from procs.router import main as router_main
from shm.inspect import remove_instance
from tests.unit.router.core_rig import new_order
from tests.unit.router.test_review187_shell_hostile import (
    CODEC,
    CrashError,
    Rig,
    executed,
    small,
    told_refused,
)
from tests.unit.router.test_router import BTC, USD, config

ADMIN = ADMIN_GATEWAY
BUY, SELL = Side.BUY, Side.SELL
T0 = 1_700_000_000_000_000_000
Step = list[tuple[int, Record]]  # (gateway, command): one round, pumped to idle after it


class FakeTime(types.SimpleNamespace):
    """``time`` for the router's modules: ``time_ns`` the exchange's next seq in us past
    ``T0`` (so a command's stamp depends on its place in the journal only, not on how often
    the router asked: a refusal decided again after a crash asks again), the rest the real
    clock's (waits, monotonic deadlines)."""

    def __init__(self, rig: Rig | None = None) -> None:
        super().__init__(
            monotonic=time.monotonic,
            perf_counter_ns=time.perf_counter_ns,
            sleep=time.sleep,
            time=time.time,
        )
        self.rig = rig

    def time_ns(self) -> int:
        return T0 + (1_000 * self.rig.router.sequencer.next_seq if self.rig else 0)


def fake_clock(monkeypatch: pytest.MonkeyPatch, rig: Rig) -> None:
    """The router's clock (``FakeTime``); at its start (fees, rules) and for watches: ``T0``."""
    monkeypatch.setattr(intake, "time", FakeTime(rig))
    monkeypatch.setattr(router_main, "time", FakeTime())


def cfg_for(
    instance: str, var: Path, capacity: int, batch: int, matcher_batch: int
) -> RingexConfig:
    base = config(instance, var)
    return msgspec.structs.replace(
        base,
        ring=RingConfig(capacity=capacity),
        router_batch=batch,
        matchers=[
            MatcherConfig(name="m1", symbols=["BTC-USD"], snapshot_every=0, batch=matcher_batch)
        ],
        journal=JournalConfig(fsync="batch"),
        marketdata=msgspec.structs.replace(base.marketdata, enabled=False),  # no reader here
    )


# -- the command stream ------------------------------------------------------------------------


def new(
    ref: int,
    account: int,
    side: Side,
    price: int,
    qty: int,
    *,
    gateway: int = 1,
    kind: OrdType = OrdType.LIMIT,
    tif: TimeInForce = TimeInForce.GTC,
    stp: StpMode = StpMode.NONE,
    stop: int = 0,
    display: int = 0,
    flags: int = 0,
) -> NewOrder:
    """``core_rig.new_order`` from ``gateway``, session 1."""
    order = new_order(
        *(account, side, price, qty),
        ref=ref, kind=kind, tif=tif, stp=stp, stop=stop, display=display, flags=flags,
    )  # fmt: skip
    return msgspec.structs.replace(order, gateway=gateway, session=1)


def admin(action: AdminAction, arg: int) -> AdminCommand:
    return AdminCommand(0, 0, action, 1, arg)


def stream() -> list[Step]:
    """Rounds of commands over gateways 1, 2 and the admin ring (the accounts and money: only
    it carries them, review 343); within a round no decision waits on an earlier command's
    settlement, so any batching takes the same decisions."""
    return [
        [
            (ADMIN, CreateAccount(0, 0, ADMIN, 1, 1, 7)),
            (ADMIN, CreateAccount(0, 0, ADMIN, 1, 2, 8)),
            (ADMIN, CreateAccount(0, 0, ADMIN, 1, 3, 9)),  # never funded
            (ADMIN, Transfer(0, 0, ADMIN, 1, 4, 7, USD, 10**8, 70)),
            (ADMIN, Transfer(0, 0, ADMIN, 1, 5, 7, BTC, 10**6, 71)),
            (ADMIN, Transfer(0, 0, ADMIN, 1, 6, 8, USD, 10**8, 80)),
            (ADMIN, Transfer(0, 0, ADMIN, 1, 7, 8, BTC, 10**6, 81)),
            # after the journaled ones on its ring, in its step (round 1 is gateway 1's)
            (ADMIN, Transfer(0, 0, ADMIN, 1, 8, 7, USD, -(10**9), 72)),  # refused: too much
            (ADMIN, Transfer(0, 0, ADMIN, 1, 9, 7, USD, 10**8, 70)),  # refused: key in use
        ],
        [
            (1, new(10, 9, BUY, 1000, 10)),  # refused: no money
            (1, new(11, 7, SELL, 1010, 50)),
            (1, new(12, 7, SELL, 1020, 90, display=20)),  # an iceberg
            (2, new(13, 8, BUY, 990, 40, gateway=2)),
            (2, new(14, 8, BUY, 980, 30, tif=TimeInForce.DAY, gateway=2)),
            (1, new(15, 7, BUY, 0, 20, kind=OrdType.STOP, stop=1015, tif=TimeInForce.DAY)),
            (2, new(16, 8, SELL, 985, 10, kind=OrdType.STOP_LIMIT, stop=995, gateway=2)),
            (1, new(17, 7, BUY, 970, 10, flags=OrderFlag.POST_ONLY)),
        ],
        [(2, new(18, 8, BUY, 1010, 60, gateway=2))],  # takes 50 at 1010 (and rests 10)
        [
            (1, new(19, 7, BUY, 1020, 30, stp=StpMode.CANCEL_OLDEST)),  # its own iceberg
            (2, new(20, 8, BUY, 1020, 25, gateway=2)),  # trades 1020: triggers the stop buy
        ],
        [
            (2, ReplaceOrder(0, 0, 2, 1, 21, 8, 1, 5, 995, 50)),
            (1, CancelOrder(0, 0, 1, 1, 22, 7, 1, 4)),
            (2, new(23, 8, SELL, 990, 5, tif=TimeInForce.IOC, gateway=2)),
        ],
        [(ADMIN, admin(AdminAction.HALT, 1001))],
        [(2, new(24, 8, BUY, 1000, 5, gateway=2)), (2, CancelOrder(0, 0, 2, 1, 25, 8, 1, 6))],
        [(ADMIN, admin(AdminAction.RESUME, 1002))],
        [
            (1, new(26, 7, SELL, 1030, 10, tif=TimeInForce.DAY)),
            (1, new(27, 7, BUY, 960, 10, tif=TimeInForce.DAY, display=5)),
            (
                2,
                new(
                    28, 8, SELL, 0, 10, kind=OrdType.STOP, stop=900, tif=TimeInForce.DAY, gateway=2
                ),
            ),
        ],
        [(ADMIN, admin(AdminAction.END_OF_SESSION, 1003))],
        [
            (ADMIN, Transfer(0, 0, ADMIN, 1, 29, 8, USD, -1000, 82)),
            (1, new(30, 7, BUY, 1000, 7)),
            (1, new(31, 7, SELL, 1001, 7, stp=StpMode.CANCEL_BOTH)),
            (2, MassCancel(0, 0, 2, 1, 32, 8, 1)),
        ],
        [(1, new(33, 7, SELL, 1000, 3, stp=StpMode.CANCEL_NEWEST))],
        [(ADMIN, MassCancel(0, 0, ADMIN, 0, 34, 0, 0))],
    ]


# -- running it --------------------------------------------------------------------------------


class Run:
    """What one run showed: journal, events, replies, the state at its end."""

    cfg: RingexConfig

    def __init__(self, rig: Rig) -> None:
        self.journal = rig.journaled()
        self.events = [e for e in rig.events if type(e) is not Heartbeat]
        self.replies = {g: list(told) for g, told in rig.told.items()}
        self.router = rig.router.sequencer.accounts.state_hash()
        self.books = rig.matcher.matcher.state_hash()
        self.matcher_snapshot = rig.matcher.matcher.snapshot()
        self.router_snapshot = rig.router.sequencer.snapshot()


def drive(rig: Rig, steps: Sequence[Step], chunk: int, serial: bool) -> None:
    """Each round: every gateway's commands on its ring, in ``chunk``s; ``serial``: one
    gateway at a time, pumped between (the router takes them in one order whatever its
    batch), else all at once (its round robin and batch decide the order)."""
    for step in steps:
        for gateway in sorted({g for g, _c in step}):
            mine = [c for g, c in step if g == gateway]
            for k in range(0, len(mine), chunk):
                rig.send(gateway, *mine[k : k + chunk])
                if serial:
                    rig.pump()
        rig.pump()


class MakeRun(Protocol):
    def __call__(
        self, capacity: int = ..., batch: int = ..., chunk: int = ..., serial: bool = ...
    ) -> Run: ...


@pytest.fixture
def make_run(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeRun]:
    rigs: list[Rig] = []

    def run(capacity: int = 4096, batch: int = 64, chunk: int = 1_000, serial: bool = True) -> Run:
        monkeypatch.setattr(router_main, "time", FakeTime())
        var = tmp_path / f"r{len(rigs)}"
        rig = Rig(cfg_for(f"{instance}{len(rigs)}", var, capacity, batch, 1))
        fake_clock(monkeypatch, rig)
        rigs.append(rig)
        drive(rig, stream(), chunk, serial)
        out = Run(rig)
        out.cfg = rig.cfg
        return out

    yield run
    for rig in rigs:
        rig.stop()
        remove_instance(rig.cfg.instance)


def replay(cfg: RingexConfig, journal: Sequence[Record]) -> tuple[Recovered, list[Record]]:
    sequencer, matchers = fresh(cfg)
    rec = Recovered(sequencer, matchers, 0, 0, 0, 0.0)
    events: list[Record] = []
    for command in journal:
        rec.apply(command, events.extend)
    return rec, events


def unsettled(router: bytes) -> RouterState:
    state = msgspec.msgpack.decode(router, type=RouterState)
    return msgspec.structs.replace(state, settled_upto=0)


def digest(records: Sequence[Record]) -> str:
    return hashlib.blake2b(bytes(CODEC.encode_slots(list(records))), digest_size=16).hexdigest()


# -- (a), (b): batch sizes, ring capacities, interleavings --------------------------------------


def test_batch_sizes_and_ring_capacities_give_the_same_journal_events_replies_and_state(
    make_run: MakeRun,
) -> None:
    """(a) against (b): the same commands in one order, through a router batch of 64 or 1,
    rings of 4096 or 64, sent all at once or one by one: byte for byte the same."""
    base = make_run()
    assert len(base.journal) == 36 and len(base.events) > 60
    for variant in (make_run(capacity=64, batch=1, chunk=1), make_run(capacity=64, batch=3)):
        assert bytes(CODEC.encode_slots(variant.journal)) == bytes(CODEC.encode_slots(base.journal))
        assert digest(variant.events) == digest(base.events)
        assert variant.replies == base.replies
        assert (variant.router, variant.books) == (base.router, base.books)
        assert variant.matcher_snapshot == base.matcher_snapshot


@pytest.mark.parametrize(("capacity", "batch", "chunk"), [(4096, 64, 1000), (64, 1, 1), (64, 2, 3)])
def test_any_interleaving_replays_to_its_live_events_and_state(
    make_run: MakeRun, capacity: int, batch: int, chunk: int
) -> None:
    """(b): the gateways' rings read round robin, in batches of any size: the order the
    router takes may differ, but its journal replayed gives the live run's events, record
    for record, and its state hashes."""
    live = make_run(capacity=capacity, batch=batch, chunk=chunk, serial=False)
    rec, events = replay(live.cfg, live.journal)
    assert digest(events) == digest(live.events)
    assert rec.sequencer.accounts.state_hash() == live.router
    assert rec.matchers["m1"].state_hash() == live.books
    assert rec.matchers["m1"].snapshot() == live.matcher_snapshot
    # the whole router state but ``settled_upto``, which only a replay moves (the live
    # router's is never snapshotted: ``snapshot_job`` replays the journal)
    assert unsettled(rec.sequencer.snapshot()) == unsettled(live.router_snapshot)


# -- (c): a snapshot at every seq, restored, the rest replayed ----------------------------------


def probe(sequencer: Sequencer, matcher: Matcher) -> bytes:
    """Live decisions after the stream, on the state given: a repeated client ref, a new
    order that trades, a replace and a withdrawal of what is left (hidden state shows)."""
    out: list[Record] = []
    commands: list[Record] = [
        new(11, 7, SELL, 1000, 5),
        new(40, 8, BUY, 1005, 9, gateway=2),
        new(41, 7, SELL, 995, 4, display=2, stp=StpMode.CANCEL_OLDEST),
        ReplaceOrder(0, 0, 2, 1, 42, 8, 1, 19, 1001, 8),
        Transfer(0, 0, 1, 1, 43, 7, USD, -(10**7), 74),
    ]
    for k, command in enumerate(commands):
        decision = sequencer.submit(command, T0 + 10**9 + k)
        out += [r for r in (decision.command, decision.reply) if r is not None]
        if decision.command is not None:
            if sequencer.matchers_for(decision.command):  # one matcher: m1
                events = matcher.execute(decision.command)
                sequencer.settle(events)
                out += events
            sequencer.applied(decision.command.seq)  # type: ignore[attr-defined]
    return bytes(CODEC.encode_slots(out)) + sequencer.snapshot() + matcher.snapshot()


def test_a_snapshot_at_every_seq_restores_to_the_same_bytes_events_and_later_decisions(
    make_run: MakeRun,
) -> None:
    """(c): the exchange snapshot (router and books) after each journaled command, restored
    (the books into either implementation), equals the live state's snapshot byte for byte,
    and the rest of the journal replayed from it gives the same events; live decisions
    after it (``probe``) are the same as on the state never restored."""
    live = make_run(serial=False)
    cfg, journal = live.cfg, live.journal
    whole, events = replay(cfg, journal)
    expected = probe(whole.sequencer, whole.matchers["m1"])
    specs = symbol_specs(cfg, "m1")
    for k in range(len(journal) + 1):
        rec, head = replay(cfg, journal[:k])
        router, books = rec.sequencer.snapshot(), rec.matchers["m1"].snapshot()
        for book_cls in (FastBook, ReferenceBook):
            sequencer = Sequencer.restore(cfg, router)
            matcher = Matcher.restore(specs, books, book_cls)
            assert (sequencer.snapshot(), matcher.snapshot()) == (router, books), k
            restored = Recovered(sequencer, {"m1": matcher}, k, k, 0, 0.0)
            tail: list[Record] = []
            for command in journal[k:]:
                restored.apply(command, tail.extend)
            assert digest(head + tail) == digest(events), (k, book_cls)
            assert probe(sequencer, matcher) == expected, (k, book_cls)


# -- (d): a crash at a point of a step, then recovery -------------------------------------------

#: Where a step of the router dies: before its journal write, after it (before the publish to
#: the matcher), after the publish (before the replies), and after the replies (before the
#: gateways' rings are committed).
CRASH_POINTS = {
    "journal": ("journal", "append"),
    "route": ("router", "_route"),
    "replies": ("router", "_send_pending"),
    "commit": ("router", "_commit_answered"),
}


def crash_run(
    instance: str, var: Path, monkeypatch: pytest.MonkeyPatch, at: int, point: str
) -> Run:
    """The stream one gateway at a time, as ``make_run(serial=True)``, but round ``at``'s
    first gateway's step dies at ``point`` and a new router recovers."""
    monkeypatch.setattr(router_main, "time", FakeTime())
    rig = Rig(cfg_for(instance, var, 4096, 64, 1))
    fake_clock(monkeypatch, rig)
    try:
        steps = stream()
        drive(rig, steps[:at], 1_000, serial=True)
        first = min(g for g, _c in steps[at])
        rig.send(first, *[c for g, c in steps[at] if g == first])
        owner, name = CRASH_POINTS[point]
        target = rig.router.journal if owner == "journal" else rig.router

        def crash(*_args: object) -> None:
            raise CrashError

        with monkeypatch.context() as patch:
            patch.setattr(target, name, crash)
            with pytest.raises(CrashError):
                rig.router.step(timeout_s=0.001)
        rig.kill(monkeypatch)
        rig.pump()
        rest = [(g, c) for g, c in steps[at] if g != first]
        drive(rig, [rest, *steps[at + 1 :]], 1_000, serial=True)
        return Run(rig)
    finally:
        rig.stop()


CRASHES = [(at, point) for at in (0, 1, 3, 5, 9, 10) for point in CRASH_POINTS]
#: Round 1 is refusals, then orders, in one step: a crash after its journal write (in the
#: route or the replies) loses refusals that went out in the run without it.
REFUSED_AGAIN = {(1, "route"), (1, "replies")}


def assert_told_alike(crashed: list[Record], base: list[Record], again: bool) -> None:
    """``crashed`` (each reply once) is ``base``, but that (``again``) a refusal the crash
    lost may come as ``REFUSED_BEFORE_RESTART`` (the same command's, refused there too), and
    an account command's OK owed after it names the free balance at the restart (``balance``:
    ``answered_again``), not the one after it: the replies a crash kept from the gateway."""
    assert len(crashed) == len(base), (crashed, base)
    for got, was in zip(crashed, base, strict=True):
        if again and getattr(got, "code", None) == ResultCode.REFUSED_BEFORE_RESTART:
            assert isinstance(got, (Rejected, AccountReply)), got
            assert type(got) is type(was) and was.code != ResultCode.OK, (got, was)
            assert (got.session, got.client_ref) == (was.session, was.client_ref)
        elif again and isinstance(got, AccountReply):
            assert msgspec.structs.replace(got, balance=0) == msgspec.structs.replace(
                was, balance=0
            )
        else:
            assert got == was


@pytest.mark.parametrize(("at", "point"), CRASHES)
def test_a_crash_at_any_point_of_a_step_recovers_to_the_uncrashed_run(
    make_run: MakeRun,
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    at: int,
    point: str,
) -> None:
    """(d): the journal, the matcher's events and the end state are those of the run without
    the crash, byte for byte; every gateway is told what it was told there (a reply may
    come twice across the crash, never differ or go missing)."""
    base = make_run()
    crashed = crash_run(instance, tmp_path / "crash", monkeypatch, at, point)
    assert bytes(CODEC.encode_slots(crashed.journal)) == bytes(CODEC.encode_slots(base.journal))
    assert digest(crashed.events) == digest(base.events)
    assert (crashed.router, crashed.books) == (base.router, base.books)
    assert unsettled(crashed.router_snapshot) == unsettled(base.router_snapshot)
    for gateway, told in base.replies.items():
        again = (at, point) in REFUSED_AGAIN
        assert_told_alike(list(dict.fromkeys(crashed.replies[gateway])), told, again)


@pytest.fixture
def rig64(instance: str, tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(small(instance, tmp_path, 64))
    yield rig
    rig.stop()


def refused_then_funded(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, point: str, cancel: bool = True
) -> None:
    """One step: gateway 1's order of empty account 9 (refused), then (``cancel``) its mass
    cancel of 9's orders (journaled: gateway 1's ring was decided past the order), and the
    admin ring's deposit that would fund it (read after gateway 1's, round robin); the step
    dies at ``point`` (after its journal write) and a router recovers."""
    rig.send(ADMIN, CreateAccount(0, 0, ADMIN, 1, 1, 9))
    rig.pump()
    after = [MassCancel(0, 0, 1, 1, 102, 9, 0)] if cancel else []
    rig.send(1, new(100, 9, BUY, 1000, 10), *after)
    rig.send(ADMIN, Transfer(0, 0, ADMIN, 1, 101, 9, USD, 10**7, 90))

    def crash(*_args: object) -> None:
        raise CrashError

    with monkeypatch.context() as patch:
        patch.setattr(rig.router, point, crash)
        with pytest.raises(CrashError):
            rig.router.step(timeout_s=0.001)
    rig.kill(monkeypatch)
    rig.pump()


def test_a_refusal_cut_off_by_a_crash_after_the_journal_write_stays_refused(
    rig64: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed: refused again, ``REFUSED_BEFORE_RESTART``, its reason not kept)."""
    refused_then_funded(rig64, monkeypatch, "_route")
    again = [r for r in rig64.told[1] if type(r) is Rejected and r.client_ref == 100]
    assert [r.code for r in again] == [ResultCode.REFUSED_BEFORE_RESTART]
    assert not executed(rig64, 100), "refused in a run without the crash, accepted after it"
    funded = [r for r in rig64.told[ADMIN] if type(r) is AccountReply and r.client_ref == 101]
    assert [r.code for r in funded] == [ResultCode.OK]  # the deposit after it: journaled once


def test_a_refusal_answered_before_the_crash_is_not_decided_again(
    rig64: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault 1's control: the step dies after its replies went out (before the commit)."""
    refused_then_funded(rig64, monkeypatch, "_commit_answered")
    assert told_refused(rig64, 100)
    assert not executed(rig64, 100)


def test_a_refusal_cut_off_with_nothing_of_its_ring_journaled_is_decided_after_the_rest(
    rig64: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault 1's cross-ring case, by design (``reread.py``): with no later command of gateway
    1 journaled, its order refused in the step that journaled the admin ring's deposit, the
    refusal lost, is decided again and accepted, sequenced after the deposit: nobody was
    told the refusal, and the router keeps no order across rings."""
    refused_then_funded(rig64, monkeypatch, "_route", cancel=False)
    assert not told_refused(rig64, 100)
    journal = [(type(c), getattr(c, "client_ref", 0)) for c in rig64.journaled()]
    assert journal.index((Transfer, 101)) < journal.index((NewOrder, 100))
    assert executed(rig64, 100)
