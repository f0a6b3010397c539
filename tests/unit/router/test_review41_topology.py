"""Review 41: the router's pipeline under topology and configuration extremes.

Rigs: three gateways and two matchers (m1: BTC-USD, m2: ETH-USD) on real rings and a real
journal, market data off. ``Rig.pump`` steps every shell by hand in one thread (the output
ring must then hold a whole matcher batch's events); ``Rig.threaded`` runs each matcher in
a thread, as its own process would, a "gateways" thread reading every ring a gateway
reads, and the router in this thread.

Holds (plain tests): every command is answered exactly once, with no stall, for ring
capacities 2 to 65,536, ``router_batch`` 1 to 65,536 (far under, at and far over the
capacity), matcher batches 1 to 4,096, under ``fsync = "batch"`` and ``"interval"``; the
books-behind hold (``capacity // 8``, 0 under 8) and the looped settle let it drain. A
router killed with a batch held under ``"interval"`` answers it after its restart (the
gateway's ring was left uncommitted).

Faults, all four fixed with this file (each test failed without its fix):

- ``applied_seq``, the seq a balance snapshot is labelled "every event through here
  applied", is the newest seq whole on *one* matcher's ring, maxed over all: with two
  matchers, an older command still queued at the other one is claimed applied, and a
  gateway's read-your-writes check (``_have >= _need``) takes the snapshot as including
  that command's fills (``main.py`` ``settle``). Fixed: the router keeps, per matcher,
  the seqs routed to it whose events have not all come back (a matcher's mark closes them
  too), and labels a snapshot below the oldest (``_applied_label``).
- ``_whole_seq(events, SETTLE_BATCH)`` only suspects a read of 4,096 events of ending
  inside a command. A ring under 4,096 slots never gives one; a matcher publish larger
  than the ring (a sweep, a mass cancel, ``batch`` x events per order) goes out in
  ring-sized chunks, so a read that ends inside a command is labelled whole. Fixed: a
  read of a ring's worth counts as full on such a ring.
- Under ``"interval"``, ``_commit_answered`` force-commits a healthy gateway's ring once
  ``capacity x (gateways + 1) / 2`` commands are journaled while its batch is held (small
  rings or a long ``fsync_interval_ms``), logging that the gateway "has not read its
  replies": a router killed then never answers those commands (a refusal is lost; its
  client waits forever). Fixed: the router first makes the held batches durable and
  routes them, and commits with their answers out.
- While a gateway's replies wait for room, the router reads none of its commands, yet
  ``_idle`` returns as soon as that gateway's ring has an unread record: the router loop
  spins (no park) until the gateway reads. Fixed: such a gateway's ring ends no wait;
  the room for its replies does.

Checked and not faults: on rings of 4,096 slots or more a ring-sized chunk ends on a full
read (labelled ``seq - 1``), so the looped settle keeps ``_whole_seq`` right there; the
settle loop is bounded (``capacity // SETTLE_BATCH`` reads a matcher), so it delays the
router's other duties by at most a ring of events; a dead consumer line gating a matcher
is the documented limit (``detach_consumer``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from config.edges import GatewayConfig, MarketDataConfig
from config.schema import (
    AssetConfig,
    JournalConfig,
    MatcherConfig,
    RingConfig,
    RingexConfig,
    SymbolConfig,
)
from procs.common.record_codec import RecordCodec
from procs.common.records import (
    Accepted,
    AccountReply,
    Balance,
    CreateAccount,
    MassCancel,
    Record,
    Rejected,
    Transfer,
    WatchBalances,
)
from procs.common.result_codes import ResultCode
from procs.common.topology import (
    ADMIN_GATEWAY,
    create_rings,
    gateway_commands,
    gateway_consumer,
    gateway_replies,
    matcher_output,
)
from procs.common.types import Side
from procs.matcher.main import MatcherShell
from procs.router.held import HeldBatches
from procs.router.main import RouterShell
from shm import Ring
from tests.unit.router import test_router as router_rig
from tests.unit.router.test_router import BTC, USD, order

CODEC = RecordCodec()
ETH, BTCUSD, ETHUSD = 3, 1, 2
GATEWAYS = (1, 2, 3)
ADMIN = ADMIN_GATEWAY  # the admin ring: accounts and money (review 343), as ``ringex admin``
MATCHERS = ("m1", "m2")


def topology(
    instance: str,
    var: Path,
    *,
    capacity: int = 1024,
    router_batch: int = 4096,
    fsync: str = "batch",
    interval_ms: int = 5,
    matcher_batch: int = 64,
    pipeline_behind: int = 1,
) -> RingexConfig:
    """``test_router``'s exchange with three gateways, m2 for ETH-USD, no market data.
    Under ``pipelined`` a step's fsync goes to the thread with one command waiting (the
    default waits for 32), so these few-command tests take the thread's path."""
    cfg = router_rig.config(instance, var)
    return msgspec.structs.replace(
        cfg,
        ring=RingConfig(capacity=capacity),
        assets=[*cfg.assets, AssetConfig(name="ETH", id=ETH, decimals=4)],
        symbols=[
            *cfg.symbols,
            SymbolConfig(
                name="ETH-USD", id=ETHUSD, price_decimals=2, qty_decimals=2, base="ETH", quote="USD"
            ),
        ],
        matchers=[
            MatcherConfig(name="m1", symbols=["BTC-USD"], snapshot_every=0, batch=matcher_batch),
            MatcherConfig(name="m2", symbols=["ETH-USD"], snapshot_every=0, batch=matcher_batch),
        ],
        gateways=[GatewayConfig(name=f"gw{g}", id=g, port=9870 + g) for g in GATEWAYS],
        marketdata=MarketDataConfig(enabled=False),
        risk=msgspec.structs.replace(cfg.risk, max_open_orders=1_000_000),
        journal=JournalConfig(
            fsync=fsync,  # type: ignore[arg-type]
            fsync_interval_ms=interval_ms,
            pipeline_behind=pipeline_behind,
        ),
        router_batch=router_batch,
    )


class Rig:
    """Rings, a router and two matchers; what each gateway was told, by client ref. The
    admin ring (``ADMIN``) carries the accounts' creations and deposits (review 343); its
    replies are read with the gateways'."""

    def __init__(self, cfg: RingexConfig) -> None:
        self.cfg = cfg
        inst = cfg.instance
        self.rings = create_rings(cfg, CODEC)
        self.gateways = {
            g: Ring.attach(inst, gateway_commands(g), CODEC).producer() for g in (*GATEWAYS, ADMIN)
        }
        self.replies = {
            g: Ring.attach(inst, gateway_replies(g), CODEC).consumer(gateway_consumer(g))
            for g in (*GATEWAYS, ADMIN)
        }
        self.taps = [
            (g, Ring.attach(inst, matcher_output(m), CODEC).consumer(gateway_consumer(g)))
            for m in MATCHERS
            for g in GATEWAYS
        ]
        self.told: dict[tuple[int, int], list[Record]] = {}  # (gateway, client_ref) -> answers
        self.start()

    def start(self) -> None:
        self.router = RouterShell(self.cfg)
        self.matchers = {m: MatcherShell(self.cfg, m) for m in MATCHERS}

    def stop(self) -> None:
        self.router.close()
        for shell in self.matchers.values():
            shell.close()

    def kill_router(self) -> None:
        """SIGKILL after its last step: what it held in memory is gone (the journal's
        writes are in the page cache, as after a crash of the process alone)."""
        self.router._held = HeldBatches()
        for queue in self.router.pending_replies.values():
            queue.clear()
        self.router.close()

    def read_gateways(self, replies: bool = True) -> int:
        """What the gateways read: every matcher's events and (``replies``) their replies."""
        got = 0
        for g, tap in self.taps:
            events = tap.read(4096)
            got += len(events)
            if g == 1:  # every event once: gateway 1's tap sees them all
                for e in events:
                    if isinstance(e, Accepted) or (isinstance(e, Rejected) and e.seq):
                        self.told.setdefault((e.gateway, e.client_ref), []).append(e)
        if replies:
            for rep in self.replies.values():
                for r in rep.read(4096):
                    got += 1
                    if isinstance(r, (AccountReply, Rejected)):
                        self.told.setdefault((r.gateway, r.client_ref), []).append(r)
        return got

    def pump(self, rounds: int = 1000) -> None:
        """Step everything until nothing moves (a cap: a stall fails, never hangs)."""
        for _ in range(rounds):
            moved = self.router.step(timeout_s=0.001)
            moved += sum(m.step(timeout_s=0.001) for m in self.matchers.values())
            moved += self.read_gateways()
            if not moved:
                break
        else:
            raise AssertionError("the pipeline never went idle")
        self.router.settle()

    def durable(self) -> None:
        """Under "interval": make what is journaled durable now, and route it."""
        self.router.journal.sync()
        self.pump()

    def threaded(
        self, feed: dict[int, list[Record]], done: Callable[[], bool], limit_s: float
    ) -> bool:
        """Matchers and gateways' reads in threads, the router here; ``feed`` published as
        each ring takes it. True once ``done()``, False at ``limit_s`` (a stall)."""
        stop = threading.Event()
        lock = threading.Lock()

        def matcher(shell: MatcherShell) -> None:
            while not stop.is_set():
                shell.step(timeout_s=0.002)

        def reader() -> None:
            while not stop.is_set():
                with lock:
                    got = self.read_gateways()
                if not got:
                    time.sleep(0.0005)

        threads = [threading.Thread(target=matcher, args=(m,)) for m in self.matchers.values()]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        ok = False
        deadline = time.monotonic() + limit_s
        try:
            while time.monotonic() < deadline:
                for g, commands in feed.items():
                    while commands:
                        chunk = commands[: max(1, self.cfg.ring.capacity // 2)]
                        if not self.gateways[g].try_publish_batch(chunk):
                            break
                        del commands[: len(chunk)]
                self.router.step(timeout_s=0.002)
                with lock:
                    if done():
                        ok = True
                        break
        finally:
            for _ in range(5000):  # drain, so no matcher is left waiting for room
                self.router.step(timeout_s=0.0005)
                if all(
                    m.consumer.ring.cursor() == m.consumer.sequence for m in self.matchers.values()
                ):
                    break
            stop.set()
            for t in threads:
                t.join(10)
        return ok


@pytest.fixture
def make(instance: str, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def build(**kwargs: object) -> Rig:
        rig = Rig(topology(instance, tmp_path, **kwargs))  # type: ignore[arg-type]
        made.append(rig)
        return rig

    yield build
    for rig in made:
        rig.stop()


def fund(rig: Rig, gateway: int, account: int, amount: int = 10**12) -> None:
    """Open ``account`` (its trader's on gateway ``gateway``) and deposit ``amount`` of each
    asset, on the admin ring as ``ringex admin`` does (review 343: a trading gateway's ring
    carries no operator's command). The router takes them before this returns: a step reads
    the trading gateways' rings before the admin ring, so an order published next would
    otherwise be decided before its account exists. Their replies are read by
    ``read_gateways``, under ``(ADMIN, ref)``."""
    del gateway  # the account's trader's gateway: the commands are the operator's
    take_funding(rig, funding(account, amount, first_ref=account * 1000))


def funding(account: int, amount: int = 10**12, first_ref: int | None = None) -> list[Record]:
    """The admin ring's commands that open ``account`` and deposit ``amount`` of each asset:
    client refs ``first_ref`` (``account * 100`` by default) and the asset ids after it."""
    ref = account * 100 if first_ref is None else first_ref
    commands: list[Record] = [CreateAccount(0, 0, ADMIN, 1, ref, account)]
    for asset in (USD, BTC, ETH):
        commands.append(Transfer(0, 0, ADMIN, 1, ref + asset, account, asset, amount, ref + asset))
    return commands


def take_funding(rig: Rig, commands: list[Record]) -> None:
    """Publish ``commands`` on the admin ring and step the router until it took them all."""
    rig.gateways[ADMIN].publish_batch(commands)
    ring = rig.gateways[ADMIN].ring
    reader = dict(rig.router.inputs)[ADMIN]
    for _ in range(1000):
        if reader.sequence >= ring.cursor():
            return
        rig.router.step(timeout_s=0.001)
    raise AssertionError("the router never took the admin ring's commands")


def traded(
    gateway: int, ref: int, account: int, symbol: int, side: Side, price: int, qty: int
) -> Record:
    return msgspec.structs.replace(order(ref, account, side, price, qty, gateway), symbol=symbol)


def workload(gateway: int, orders: int) -> list[Record]:
    """Orders of the gateway's account (``100 + gateway``) on both matchers, many crossing.
    The account is opened and funded on the admin ring first (``funding(100 + gateway)``):
    a trading gateway's ring carries no operator's command (review 343)."""
    account = 100 + gateway
    commands: list[Record] = []
    for i in range(orders):
        side = Side.BUY if (i + gateway) % 2 else Side.SELL
        symbol = BTCUSD if i % 2 else ETHUSD
        commands.append(traded(gateway, 10 + i, account, symbol, side, 997 + i % 7, 1 + i % 3))
    return commands


def snapshot(rig: Rig, gateway: int, account: int) -> list[Balance]:
    rig.gateways[gateway].publish_batch([WatchBalances(0, 0, gateway, 1, 4242, account, 60_000)])
    rig.router.step(timeout_s=0.001)
    return [r for r in rig.replies[gateway].read(4096) if isinstance(r, Balance) and r.client_ref]


def as_of(rig: Rig, account: int) -> dict[int, tuple[int, int]]:
    accounts = rig.router.sequencer.accounts
    return {
        a: accounts.balance(account, a)
        for a in (USD, BTC, ETH)
        if any(accounts.balance(account, a))
    }


# -- what holds -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "router_batch", "fsync", "matcher_batch", "orders"),
    [
        (2, 1, "batch", 1, 20),  # the smallest ring: no books-behind slack at all
        (4, 65_536, "interval", 4096, 30),
        (64, 1, "interval", 256, 120),  # router_batch far under the ring
        (64, 65_536, "batch", 4096, 200),  # far over it; matcher publishes in chunks
        (256, 256, "interval", 64, 200),  # equal
        (65_536, 65_536, "batch", 4096, 1500),  # settle loops 16 reads of 4096
    ],
)
def test_every_command_is_answered_once_at_ring_extremes(
    make: Callable[..., Rig],
    capacity: int,
    router_batch: int,
    fsync: str,
    matcher_batch: int,
    orders: int,
) -> None:
    rig = make(
        capacity=capacity, router_batch=router_batch, fsync=fsync, matcher_batch=matcher_batch
    )
    funded = [c for g in GATEWAYS for c in funding(100 + g)]  # the admin ring's, first
    feed = {g: workload(g, orders) for g in GATEWAYS}
    expected = {
        (getattr(c, "gateway", 0), getattr(c, "client_ref", 0))
        for f in (funded, *feed.values())
        for c in f
    }
    assert rig.threaded({ADMIN: list(funded)}, lambda: len(rig.told) >= len(funded), 15.0), (
        f"stalled: {len(rig.told)} of {len(funded)} funding commands answered"
    )
    assert rig.threaded(feed, lambda: len(rig.told) >= len(expected), limit_s=15.0), (
        f"stalled: {len(rig.told)} of {len(expected)} answered"
    )
    assert set(rig.told) == expected
    assert {k: len(v) for k, v in rig.told.items() if len(v) != 1} == {}  # none twice
    assert all(not isinstance(r[0], Rejected) for r in rig.told.values())  # every one accepted


@pytest.mark.parametrize(
    "flood",
    [
        0,
        140,
    ],
)
def test_a_router_killed_with_a_batch_held_answers_it_after_its_restart(
    make: Callable[..., Rig], flood: int
) -> None:
    """``fsync = "interval"`` (10 s: nothing turns durable by itself here), 64-slot rings:
    the tail a restart recognises is 64 x 4 entries. Gateway 1 sends an order refused for
    its size and the admin ring a deposit (review 343: only it carries one), taken in one
    step: the deposit is journaled, and the batch (the refusal's reply too) is held.
    ``flood`` more journaled commands come before the interval's fsync, deposits from the
    admin ring and mass cancels of accounts without orders from gateways 2 and 3 (fewer than
    a matcher's ring holds: this thread steps no matcher); then the router is killed and
    restarted. With no flood gateway 1's ring is left uncommitted and
    the restart answers both. Past half the tail (128) the ring was
    committed regardless, logged as if gateway 1 did not read its replies: neither the
    refusal nor the deposit's reply was ever sent. Fixed: there the router makes the held
    batches durable and routes them first, so the ring is committed with its answers out."""
    rig = make(capacity=64, fsync="interval", interval_ms=10_000)
    fund(rig, 1, 7)
    fund(rig, 2, 8)
    fund(rig, 3, 9)
    rig.pump()
    rig.durable()
    rig.read_gateways()
    rig.told.clear()
    refused = traded(1, 501, 7, BTCUSD, Side.BUY, 1000, 10**9)  # more than account 7 holds
    deposit = Transfer(0, 0, ADMIN, 1, 502, 7, USD, 5, 7502)
    rig.gateways[1].publish_batch([refused])
    rig.gateways[ADMIN].publish_batch([deposit])
    rig.router.step(timeout_s=0.001)
    assert rig.router._held  # journaled, held for the interval's fsync
    sent = 0
    while sent < flood:  # journaled; no matcher's ring fills (this thread steps none)
        for g, account in ((ADMIN, 7), (2, 8), (3, 9)):
            k = min(20, flood - sent)
            refs = range(1000 + sent, 1000 + sent + k)
            more: list[Record] = [
                Transfer(0, 0, g, 1, ref, account, USD, 1, 8000 + ref)
                if g == ADMIN
                else MassCancel(0, 0, g, 1, ref, account, BTCUSD if g == 2 else ETHUSD)
                for ref in refs
            ]
            assert rig.gateways[g].try_publish_batch(more)
            sent += k
        rig.router.step(timeout_s=0.001)
    rig.kill_router()
    rig.router = RouterShell(rig.cfg)
    rig.pump()
    rig.durable()
    assert [type(r) for r in rig.told.get((1, 501), [])] == [Rejected]
    assert [type(r) for r in rig.told.get((ADMIN, 502), [])] == [AccountReply]


# -- the labelling of balances (``applied_seq``) ---------------------------------------------


def test_a_snapshot_labelled_past_a_command_on_the_other_matcher_includes_its_fills(
    make: Callable[..., Rig],
) -> None:
    """Account 7 buys ETH from a resting sell (seq S, routed to m2, which has not run yet);
    then an order of another account on m1 executes and settles. A snapshot of account 7
    is labelled with m1's newer seq, so it says every event through S is in it, yet S's
    fill is not: a gateway that has seen S's trade (``_need`` = S) answers a balance request
    with it. After m2 runs nothing newer touches account 7: its balances then are what a
    label >= S promises."""
    rig = make()
    fund(rig, 1, 7)
    fund(rig, 2, 8)
    fund(rig, 3, 9)
    rig.gateways[2].publish_batch([traded(2, 601, 8, ETHUSD, Side.SELL, 1000, 10)])
    rig.pump()
    rig.gateways[1].publish_batch([traded(1, 602, 7, ETHUSD, Side.BUY, 1000, 10)])
    rig.router.step(timeout_s=0.001)  # journaled and routed to m2, which does not step
    crossing = rig.router.sequencer.next_seq - 1
    rig.gateways[3].publish_batch([traded(3, 603, 9, BTCUSD, Side.BUY, 900, 1)])
    rig.router.step(timeout_s=0.001)
    assert rig.matchers["m1"].step(timeout_s=0.001) == 1
    rig.read_gateways(replies=False)
    rig.router.settle()
    balances = snapshot(rig, 2, 7)
    rig.pump()  # m2 executes the crossing buy; its events settle
    label = balances[0].seq
    shown = {b.asset: (b.free, b.reserved) for b in balances if b.asset}
    assert label < crossing or shown == as_of(rig, 7)


def test_a_read_ending_inside_a_commands_events_on_a_small_ring_is_not_labelled_whole(
    make: Callable[..., Rig],
) -> None:
    """64-slot rings. Account 7 sweeps 40 resting sells: 122 events (``Accepted``, 40 x
    ``Trade`` and ``OrderDone``, 40 levels, its ``OrderDone``), so m1 publishes them in two
    chunks and waits for room between them (m1 runs in a thread; the gateways read nothing
    meanwhile). The router settles the first chunk, which ends inside the fills:
    ``applied_seq`` is the sweep's seq, and a snapshot of account 7 is labelled with it
    while the last fills of the sweep are not in it."""
    rig = make(capacity=64, matcher_batch=8)
    fund(rig, 1, 7)
    fund(rig, 2, 8)
    rig.pump()
    for k in range(0, 40, 10):
        rig.gateways[2].publish_batch(
            [traded(2, 700 + k + i, 8, BTCUSD, Side.SELL, 1000 + k + i, 1) for i in range(10)]
        )
        rig.pump()
    out = Ring.attach(rig.cfg.instance, matcher_output("m1"), CODEC)
    start = out.cursor()
    rig.gateways[1].publish_batch([traded(1, 799, 7, BTCUSD, Side.BUY, 1100, 40)])
    rig.router.step(timeout_s=0.001)  # routed to m1
    sweep = rig.router.sequencer.next_seq - 1
    m1 = rig.matchers["m1"]
    worker = threading.Thread(target=m1.step, kwargs={"timeout_s": 1.0})
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while out.cursor() < start + 64 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert out.cursor() == start + 64  # the first chunk; the rest waits for room
        rig.router.settle()
        balances = snapshot(rig, 3, 7)
    finally:
        while worker.is_alive():
            rig.read_gateways()
            rig.router.settle()
            worker.join(0.01)
    rig.pump()
    label = balances[0].seq
    shown = {b.asset: (b.free, b.reserved) for b in balances if b.asset}
    assert label < sweep or shown == as_of(rig, 7)


# -- the router's idle wait ----------------------------------------------------------------


@pytest.mark.parametrize("first", [64, 59], ids=["ring full", "room for less than a chunk"])
def test_the_router_parks_while_a_gateways_replies_wait_for_room(
    make: Callable[..., Rig], first: int
) -> None:
    """Gateway 1 stops reading its replies (its 64-slot reply ring full of refusals, or
    short of room for the next 16-reply chunk: the reread of review 41) and sends more
    commands. The router reads none of them until the replies go out, but its idle wait
    returned at once for the unread commands, or for room that sends nothing: each
    ``step(timeout_s=0.05)`` was a spin, thousands a quarter second, a core taken from the
    gateway it waits on."""
    rig = make(capacity=64)
    unknown = 77  # no such symbol: a refusal for each
    rig.gateways[1].publish_batch(
        [traded(1, 800 + i, 7, unknown, Side.BUY, 1, 1) for i in range(first)]
    )
    rig.router.step(timeout_s=0.001)  # the refusals: the reply ring full, or 5 slots free
    rig.gateways[1].publish_batch(
        [traded(1, 900 + i, 7, unknown, Side.BUY, 1, 1) for i in range(20)]
    )
    rig.router.step(timeout_s=0.001)  # 20 more refusals wait for room
    rig.gateways[1].publish_batch([traded(1, 950, 7, unknown, Side.BUY, 1, 1)])  # unread
    assert rig.router.pending_replies[1]
    steps, deadline = 0, time.monotonic() + 0.25
    while time.monotonic() < deadline:
        rig.router.step(timeout_s=0.05)
        steps += 1
    got = rig.replies[1].read(4096)
    assert all(isinstance(r, Rejected) and r.code == ResultCode.UNKNOWN_SYMBOL for r in got)
    assert steps < 100, f"{steps} steps in 0.25 s with nothing it could do"


def test_a_pipelined_router_commits_the_rings_of_routed_batches_under_steady_input(
    make: Callable[..., Rig],
) -> None:
    """``fsync = "pipelined"`` with a command always waiting: each batch's fsync goes to the
    journal's thread and the batch is held, so a ring committed only when no batch of its
    gateway was held stayed uncommitted (the reread of review 41: one commit in 200 steps,
    1,990 commands read and not released, its gateway soon stopped on a full ring). Each
    ring is now committed up to its newest routed and answered batch: here the admin ring's
    deposits (review 343: only it carries them)."""
    rig = make(capacity=4096, fsync="pipelined", router_batch=4)  # a command a ring a step
    fund(rig, 1, 7)
    rig.pump()
    rig.read_gateways()
    deposits = [Transfer(0, 0, ADMIN, 1, 2000 + k, 7, USD, 1, 8000 + k) for k in range(40)]
    rig.gateways[ADMIN].publish_batch(deposits)
    for _ in range(30):  # ten left: a command waits after every batch taken
        rig.router.step(timeout_s=0.001)
        rig.read_gateways()  # the gateway reads its replies as they come
        flight, deadline = rig.router.journal._flight, time.monotonic() + 2
        while flight and not flight[0].done() and time.monotonic() < deadline:
            time.sleep(0.001)  # the fsync's thread returns (2 ms had been too short under load)
    assert rig.gateways[ADMIN].backlog() < 20  # published, not yet committed: 40 before
