"""Review 224 (helper, hostile): the router's balance label per account (d183f08).

A ``Balance`` the router pushes or snapshots for account A is labelled L: every event through
L that can change A's balances is applied (``AppliedEvents._labels``). Since d183f08 that is
the oldest command outstanding at the matchers where A has an entry in ``Accounts._orders``
(``symbols_of``), at every matcher for the fee account. The claim is checked here against
what really happens, not against the code's own reasoning: every event the router settles is
applied one at a time and each (account, seq) whose balances it changed is noted with the
moment; every label the router computes (``_labels``, at each push and snapshot, and after
every step of anything) is noted with the moment too. A label L of A is false when an event
of seq <= L changed A after L was given.

Rig: review 42's ``LabelRig`` (review 41's two matchers m1 BTC-USD and m2 ETH-USD, three
gateways, stepped by hand; gateway 1's ``Balance`` records kept), plus the admin ring. A seeded
random workload of limit, IOC, iceberg, stop-limit and DAY orders, cancels, replaces (some
of done orders), mass cancels of one account and of every account (account 0, the operator's),
an end of session, self-trade prevention and transfers, from three accounts, with each
matcher held for stretches (not stepped) and m2 killed and restarted on its rings now and
then. Then everything runs to the end, and each watched (account, asset)'s newest push or
snapshot must equal the router's balance and be labelled at or past the newest seq that
changed it (a push made below its touch is made again: ``Watches.take`` with ``label_of``).

What held (plain tests): no false label over the seeds below, nor with a small ring (reads that
end inside a command's events); every watched balance's last word is the router's, labelled
past its last change; a held matcher holds back only the accounts with an order on it, and
the fee account; an account's label falls back as soon as it places an order at a held
matcher. (The oracle is not idle: with ``symbols_of`` stubbed empty it finds thousands.)

One fault, of cost, fixed (its test begins "Was (fixed)"): ``Watches.take`` popped, asked the
label of and pushed back into its heap every push waiting for its own account's label at
every take, that is at every router step, for as long as a matcher was held; such pushes are
parked now, and looked at again only when the matchers' outstanding heads move (``holds``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import msgspec
import pytest

from procs.common.record_codec import RecordCodec
from procs.common.records import (
    AdminCommand,
    Balance,
    CancelOrder,
    MassCancel,
    Record,
    ReplaceOrder,
    Transfer,
)
from procs.common.topology import ADMIN_GATEWAY
from procs.common.types import AdminAction, OrdType, Side, StpMode, TimeInForce
from procs.core.accounts import Accounts
from procs.core.sequencer import Decision, Sequencer
from procs.core.watches import Watches
from procs.matcher.main import MatcherShell
from tests.unit.router.test_review41_topology import BTCUSD, ETH, ETHUSD, fund, topology, traded
from tests.unit.router.test_review42_balance_labels import FEE, LabelRig, watch
from tests.unit.router.test_router import BTC, USD, config

CODEC = RecordCodec()
ACCOUNTS = (7, 8, 9)
WATCHED = (*ACCOUNTS, FEE)
ASSETS = (USD, BTC, ETH)
GATEWAY_OF = {7: 1, 8: 2, 9: 3}


class Probe:
    """What the router settled and what it labelled, each with the moment (events applied so
    far): ``changed`` (account, seq, moment) for each event that moved an account's balances,
    ``labels`` (account, label, moment) for each label the router gave or would give."""

    def __init__(self, rig: LabelRig, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rig = rig
        self.moment = 0
        self.changed: list[tuple[int, int, int]] = []
        self.labels: list[tuple[int, int, int]] = []
        self.last_change: dict[tuple[int, int], int] = {}  # (account, asset) -> newest seq
        settle = Sequencer.settle

        def one_by_one(sequencer: Sequencer, events: Iterable[Record]) -> None:
            accounts = sequencer.accounts
            for event in events:
                before = {(a, s): accounts.balance(a, s) for a in WATCHED for s in ASSETS}
                settle(sequencer, (event,))
                self.moment += 1
                seq: int = getattr(event, "seq", 0)
                for (account, asset), was in before.items():
                    if accounts.balance(account, asset) != was:
                        self.changed.append((account, seq, self.moment))
                        slot = (account, asset)
                        self.last_change[slot] = max(self.last_change.get(slot, 0), seq)

        submit = Sequencer.submit

        def decided(sequencer: Sequencer, command: Record, now_ns: int) -> Decision:
            accounts = sequencer.accounts
            before = {(a, s): accounts.balance(a, s) for a in WATCHED for s in ASSETS}
            decision = submit(sequencer, command, now_ns)
            seq: int = getattr(decision.command, "seq", 0)
            for (account, asset), was in before.items():
                if accounts.balance(account, asset) != was:
                    self.commands(account, asset, seq)
            return decision

        monkeypatch.setattr(Sequencer, "settle", one_by_one)
        monkeypatch.setattr(Sequencer, "submit", decided)
        self.wrap(rig)

    def wrap(self, rig: LabelRig) -> None:
        labels = rig.router._labels

        def noted() -> tuple[int, Callable[[int], int], object]:
            top, label, holds = labels()
            self.note(label)
            return top, label, holds

        rig.router._labels = noted  # type: ignore[method-assign]

    def note(self, label: Callable[[int], int]) -> None:
        self.labels += [(a, label(a), self.moment) for a in WATCHED]

    def look(self) -> None:
        """The labels the router would give now (between any two steps)."""
        self.rig.router._labels()  # noted by ``wrap``

    def commands(self, account: int, asset: int, seq: int) -> None:
        """A command of ``account`` accepted at ``seq`` (a transfer, a reservation) changed
        its ``asset`` as it was decided: noted as an event."""
        self.changed.append((account, seq, self.moment))
        self.last_change[account, asset] = max(self.last_change.get((account, asset), 0), seq)

    def false_labels(self) -> list[tuple[int, int, int, int]]:
        """(account, label, seq, by how many events late) of every label given before an
        event of a seq it covers changed that account."""
        out = []
        for account, label, at in self.labels:
            for whose, seq, moment in self.changed:
                if whose == account and seq <= label and moment > at:
                    out.append((account, label, seq, moment - at))
                    break
        return out


@pytest.fixture
def make(instance: str, tmp_path: Path) -> Iterator[Callable[..., LabelRig]]:
    made: list[LabelRig] = []

    def build(**kwargs: object) -> LabelRig:
        rig = LabelRig(topology(instance, tmp_path, **kwargs))  # type: ignore[arg-type]
        made.append(rig)
        return rig

    yield build
    for rig in made:
        rig.stop()


class Workload:
    """A seeded random mix of commands over both matchers, and the stepping of it."""

    def __init__(self, rig: LabelRig, probe: Probe, seed: int) -> None:
        self.rig, self.probe = rig, probe
        self.rnd = random.Random(seed)
        self.ref = 10_000
        self.admin_producer = rig.gateways[ADMIN_GATEWAY]  # the admin ring's one producer
        self.held = {"m1": False, "m2": False}

    def new_order(self, account: int) -> Record:
        rnd = self.rnd
        self.ref += 1
        symbol = rnd.choice((BTCUSD, ETHUSD))
        side = rnd.choice((Side.BUY, Side.SELL))
        price = rnd.randint(996, 1004)
        command = traded(
            GATEWAY_OF[account], self.ref, account, symbol, side, price, 1 + rnd.randint(0, 6)
        )
        kind = rnd.random()
        if kind < 0.15:
            command = msgspec.structs.replace(command, tif=TimeInForce.IOC)
        elif kind < 0.3:
            command = msgspec.structs.replace(command, tif=TimeInForce.DAY)
        elif kind < 0.4:
            command = msgspec.structs.replace(command, display_qty=1)
        elif kind < 0.5:
            stop = price + (3 if side == Side.BUY else -3)
            command = msgspec.structs.replace(command, ord_type=OrdType.STOP_LIMIT, stop_price=stop)
        if rnd.random() < 0.3:
            command = msgspec.structs.replace(command, stp=rnd.choice(list(StpMode)[1:]))
        return command

    def some_order_of(self, account: int) -> tuple[int, int] | None:
        """(order id, symbol) of an order the router tracks for ``account``, done ones too."""
        mine = [
            (oid, o.symbol)
            for oid, o in self.rig.router.sequencer.accounts._orders.items()
            if o.account == account
        ]
        return self.rnd.choice(mine) if mine else None

    def command(self) -> None:
        rnd, rig = self.rnd, self.rig
        account = rnd.choice(ACCOUNTS)
        gateway = GATEWAY_OF[account]
        roll = rnd.random()
        self.ref += 1
        if roll < 0.55:
            rig.gateways[gateway].publish_batch([self.new_order(account)])
        elif roll < 0.85 and (found := self.some_order_of(account)) is not None:
            oid, symbol = found
            head = (0, 0, gateway, 1, self.ref, account, symbol, oid)
            if roll < 0.7:
                rig.gateways[gateway].publish_batch([CancelOrder(*head)])
            else:
                price, qty = rnd.randint(996, 1004), rnd.randint(1, 8)
                rig.gateways[gateway].publish_batch([ReplaceOrder(*head, price, qty)])
        elif roll < 0.9:
            symbol = rnd.choice((0, BTCUSD, ETHUSD))
            rig.gateways[gateway].publish_batch(
                [MassCancel(0, 0, gateway, 1, self.ref, account, symbol)]
            )
        elif roll < 0.93:  # the operator's: every account's orders
            self.admin_producer.publish_batch([MassCancel(0, 0, ADMIN_GATEWAY, 0, self.ref, 0, 0)])
        elif roll < 0.95:
            action = AdminAction.END_OF_SESSION
            self.admin_producer.publish_batch([AdminCommand(0, 0, action, 0, self.ref)])
        else:  # the operator's too: a deposit (review 343: only the admin ring carries one)
            asset = rnd.choice(ASSETS)
            self.admin_producer.publish_batch(
                [Transfer(0, 0, ADMIN_GATEWAY, 1, self.ref, account, asset, 1000, self.ref)]
            )

    def step(self) -> None:
        rnd, rig, probe = self.rnd, self.rig, self.probe
        roll = rnd.random()
        if roll < 0.35:
            self.command()
        elif roll < 0.4:
            name = rnd.choice(("m1", "m2"))
            self.held[name] = not self.held[name]
        elif roll < 0.42 and not self.held["m2"]:
            rig.matchers["m2"].close()  # a SIGKILL, the supervisor's restart on its rings
            rig.matchers["m2"] = MatcherShell(rig.cfg, "m2")
        self.route()
        probe.look()
        for name, shell in rig.matchers.items():
            if not self.held[name] and rnd.random() < 0.7:
                shell.step(timeout_s=0)
                rig.read_gateways()
                probe.look()
                if rnd.random() < 0.5:
                    self.route()
                    probe.look()

    def route(self) -> None:
        self.rig.router.step(timeout_s=0)
        self.rig.read_gateways()

    def finish(self) -> None:
        self.held = {"m1": False, "m2": False}
        for _ in range(2000):
            self.route()
            moved = sum(m.step(timeout_s=0) for m in self.rig.matchers.values())
            moved += self.rig.read_gateways()
            self.probe.look()
            if not moved and not self.rig.router.watches.pending:
                break
        self.route()
        self.probe.look()


def run_workload(
    make: Callable[..., LabelRig],
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    steps: int,
    **topo: object,
) -> tuple[LabelRig, Probe]:
    """The workload run to its end. Matchers take 4 commands a step: one step's events
    always fit the output ring (a matcher waiting for room there would wait on this very
    thread)."""
    rig = make(matcher_batch=4, **topo)
    for account in ACCOUNTS:
        fund(rig, GATEWAY_OF[account], account, amount=10**9)
    rig.pump()
    watch(rig, *WATCHED)
    probe = Probe(rig, monkeypatch)
    work = Workload(rig, probe, seed)
    for _ in range(steps):
        work.step()
    work.finish()
    rig.router.sequencer.accounts.validate_internal_state()
    return rig, probe


def last_words(rig: LabelRig) -> dict[tuple[int, int], Balance]:
    """Gateway 1's newest push or snapshot record of each (account, asset)."""
    newest: dict[tuple[int, int], Balance] = {}
    for b in rig.balances:
        if b.asset:
            newest[b.account, b.asset] = b
    return newest


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_no_label_covers_an_event_that_changes_its_account_later(
    make: Callable[..., LabelRig], monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    _rig, probe = run_workload(make, monkeypatch, seed, steps=800)
    assert len(probe.changed) > 100 and len(probe.labels) > 1000  # the workload did work
    assert probe.false_labels() == []


@pytest.mark.parametrize("fsync", ["interval", "pipelined"])
def test_no_false_label_with_batches_held_for_their_fsync(
    make: Callable[..., LabelRig], monkeypatch: pytest.MonkeyPatch, fsync: str
) -> None:
    """Batches journaled and held until durable (an account's order accepted, reserved and
    in ``_orders`` before it is routed): no label covers what it will do."""
    _rig, probe = run_workload(make, monkeypatch, 31, steps=600, fsync=fsync)
    assert probe.false_labels() == []


def test_no_false_label_with_reads_ending_inside_a_commands_events(
    make: Callable[..., LabelRig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads of 3 events (``SETTLE_BATCH``): a read often ends inside one command's events
    (an account's order done in the first part, more of that command in the next)."""
    monkeypatch.setattr("procs.router.applied.SETTLE_BATCH", 3)
    _rig, probe = run_workload(make, monkeypatch, 11, steps=600)
    assert probe.false_labels() == []


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_every_watched_balance_s_last_word_is_the_routers_and_covers_its_last_change(
    make: Callable[..., LabelRig], monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rig, probe = run_workload(make, monkeypatch, seed, steps=300)
    accounts = rig.router.sequencer.accounts
    newest = last_words(rig)
    for (account, asset), seq in probe.last_change.items():
        word = newest.get((account, asset))
        now = accounts.balance(account, asset)
        if word is None:
            assert now == (0, 0), (account, asset, now)
            continue
        assert (word.free, word.reserved) == now, (account, asset, word, now)
        assert word.seq >= seq, (account, asset, word.seq, seq)


def test_a_held_matcher_holds_back_only_its_accounts_and_the_fee_account(
    make: Callable[..., LabelRig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """7 rests a bid on m2, 8 a bid on m1; m2 held with 9's ETH offer in it: 7's and 9's
    labels and the fee account's stay below it, 8's moves on with m1 (a fill of its own
    there) until 8 itself sends an order to m2 (held back from the moment it is sequenced)."""
    rig = make()
    for account in ACCOUNTS:
        fund(rig, GATEWAY_OF[account], account, amount=10**9)
    rig.pump()
    rig.gateways[1].publish_batch([traded(1, 501, 7, ETHUSD, Side.BUY, 990, 5)])
    rig.gateways[2].publish_batch([traded(2, 502, 8, BTCUSD, Side.BUY, 990, 5)])
    rig.pump()
    rig.gateways[3].publish_batch([traded(3, 503, 9, ETHUSD, Side.SELL, 1010, 5)])
    rig.router.step(timeout_s=0)  # routed to m2, which is held
    held_at = rig.router.sequencer.next_seq - 1
    rig.gateways[2].publish_batch([traded(2, 504, 8, BTCUSD, Side.SELL, 990, 2)])
    rig.router.step(timeout_s=0)
    rig.matchers["m1"].step(timeout_s=0)
    rig.read_gateways()
    rig.router.step(timeout_s=0)
    top, label, _holds = rig.router._labels()
    assert top > held_at
    assert label(7) == held_at - 1 and label(9) == held_at - 1 and label(FEE) == held_at - 1
    assert label(8) == top  # its own fill on m1 is in; nothing of it at m2
    rig.gateways[2].publish_batch([traded(2, 505, 8, ETHUSD, Side.BUY, 980, 1)])
    rig.router.step(timeout_s=0)
    assert rig.router._labels()[1](8) == held_at - 1
    rig.pump()
    top, label, _holds = rig.router._labels()
    assert {label(a) for a in WATCHED} == {top}


def test_a_take_with_nothing_moved_does_not_walk_every_push_waiting_for_its_own_label(
    tmp_path: Path,
) -> None:
    """Was (fixed): a push made below its touch, whose account's own label is below the touch while
    the router's top label is past it (an account with an order at a held or restarting
    matcher, touched by an event of another: the fee account by every trade), is popped
    from ``_due``, its account's label asked and pushed back into the heap at every ``take``,
    and the router takes at every step (``_flush_replies``): 10,000 such accounts (20,000
    slots) cost ~14 ms a step here with a trivial ``label_of`` (the router's walks the
    account's symbols), for as long as the matcher is held: the other matchers' flow slows
    to a crawl in the very case d183f08 was for. Before d183f08 the heap loop stopped at
    the global label, below them all: nothing. Should: a take re-examine only what may
    have moved (park a waiting entry by the matcher head that holds its account back, and
    look at it again when that head moves)."""
    accounts = Accounts(config("review224", tmp_path))
    watches = Watches(accounts)
    n = 2_000
    for account in range(1, n + 1):
        watches.register(1, account, 1 << 62)
        watches.touch(account, USD, 30)
    asked = 0

    def own(_account: int) -> int:
        nonlocal asked
        asked += 1
        return 20  # the account's order is at the held matcher, whose head is 21

    assert len(watches.take(1, 40, own)) == n  # pushed, labelled 20: each waits for 30
    asked = 0
    assert watches.take(2, 41, own) == []  # nothing touched, no head moved
    assert asked < n // 10, f"{asked} labels asked of a take with nothing to push"
