"""Review 317: crash at any point, replay, and the outputs are the same.

Reviewed: README (the matcher's Recovery, the router and the journal, start-up is recovery),
procs/common/journal.py, procs/common/journal_writer.py, procs/core/recovery.py,
procs/router/main.py, procs/matcher/main.py, procs/supervisor/main.py.

Rig: a real instance (``tests/e2e/running.py``'s ``running_exchange``: ``ringex run``, a
FIX + REST gateway, market data, no database) with two matchers (m1: BTC-USD, m2:
ETH-USD), driven by seeded REST traders on both symbols while the router, each matcher,
the gateway and market data are SIGKILLed one at a time (review 34's ``sigkill`` /
``restarted``); then review 34's and 42's checks (``recovered_both_ways``,
``sequenced_once``, ``snapshots_equal_replay``, ``feed_equals_books``,
``live_balances_differ``) and this file's: each matcher's live output ring (every record
it still holds, heartbeats aside) against the events a from-scratch replay of the journal
makes, byte for byte; order ids and trade ids. A ``JournalWriter`` in a child process
SIGKILLed at random instants, many times, for torn records.

Faults found: none demonstrated in the time box.

Sound:
- A journal writer SIGKILLed at random instants (30 kills, batches of 1-400 entries,
  64 KiB segments so that kills land in rollovers too) always reopens, and its reader
  yields seqs 1..N, contiguous, each image the one appended: no torn record misread.
- Two matchers, each SIGKILLed under load, the router, the gateway and market data too:
  every acknowledged order journaled, no command journaled twice, recovery from the
  snapshots equal to a replay from nothing, every snapshot kept equal to a replay to its
  seq, the live router's balances the replay's, the feed's depth the replayed books'.
- Each matcher's output ring after its kill holds exactly the events a from-scratch
  replay makes for its commands, byte for byte, in order (no duplicate, no changed event).
- m2 left quiet past several exchange snapshots while BTC-USD trades, then SIGKILLed (and
  again with the router): its restart and the ring's events are the replay's.
- m1 SIGKILLed eight times in a row, 0-50 ms after each restart was ready: each event in
  its ring once, byte for byte the replay's.
- Trade ids gapless per symbol; order ids unique and increasing in the journal; each
  REST order's last answer (its status and executed quantity) never exceeds what the
  replay filled.

Leads not shown:
- The database writer was not in this rig (no PostgreSQL: time box); reviews 34 and 285
  cover its rows against the journal.
- The journal kill test runs ``fsync = "none"`` (no fsync between appends, so kills land in
  writes and rollovers more often); a kill inside an fsync of ``batch`` was not aimed at.
- Whether a matcher kill ever landed between two events of one command (the README's "the
  first few of one a crash cut short") was not observed, only that the ring held no
  duplicate or changed event after the kills.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import subprocess
import sys
import time
from asyncio import Task
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import aiohttp

from config import load_profile
from config.schema import RingexConfig
from procs.common.journal import JournalReader
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import Heartbeat, NewOrder, Record
from procs.common.topology import matcher_output
from procs.core.recovery import fresh, journal_reader
from procs.gateway.rest_client import ApiCallError, RestClient
from shm import Ring
from tests.e2e import test_review34_crashes as r34
from tests.e2e.running import ringex, running_exchange
from tests.unit.supervisor.test_review42_chaos_pipelined import snapshots_equal_replay

CODEC = RecordCodec()
SYMBOLS = ("BTC-USD", "ETH-USD")
USERS = ("R1", "R2")
VICTIMS = ("matcher-m2", "router", "matcher-m1", "gateway-gw1", "marketdata")
LOT = Decimal("0.0001")

# -- the journal writer, killed at random instants ------------------------------------------

SLOT = CODEC.slot_size
SCHEMA = CODEC.journal_schema_id

WRITER = """
import random, sys
from procs.common.journal_writer import JournalWriter
slot, schema, seed = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
def image(seq):
    return (seq.to_bytes(8, "little") * (slot // 8 + 1))[:slot]
w = JournalWriter(sys.argv[1], slot_size=slot, schema_id=schema, segment_bytes=65536,
                  fsync="none")
print("open", w.next_seq, flush=True)
while True:
    n = rng.randint(1, 400)
    first = w.next_seq
    w.append(first, b"".join(image(s) for s in range(first, first + n)), n)
"""


def image_of(seq: int) -> bytes:
    return (seq.to_bytes(8, "little") * (SLOT // 8 + 1))[:SLOT]


def test_sound_journal_writer_killed_at_random_instants_reads_back_whole(
    tmp_path: Path,
) -> None:
    """Scenario: a journal writer in a child appends batches (1-400 entries, 64 KiB
    segments) and is SIGKILLed 1-40 ms after it opened, 30 times over one directory.
    Expected: each reopen repairs what the kill left; the reader yields seqs 1..N with the
    images appended, and each life starts where the last one's whole entries ended."""
    rng = random.Random(317)
    directory = tmp_path / "journal"
    last = 0
    for k in range(30):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(directory), str(SLOT), str(SCHEMA), str(k)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        assert child.stdout is not None
        opened = child.stdout.readline().split()
        assert opened and int(opened[1]) == last + 1, (k, opened, last)
        time.sleep(rng.uniform(0.001, 0.04))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
        reader = JournalReader(directory, slot_size=SLOT, schema_id=SCHEMA)
        seqs = 0
        for seq, img in reader.entries(1):
            seqs += 1
            assert seq == seqs and bytes(img) == image_of(seq), (k, seq)
        assert seqs >= last, (k, seqs, last)
        last = seqs
    with JournalWriter(directory, slot_size=SLOT, schema_id=SCHEMA, fsync="none") as w:
        assert w.next_seq == last + 1
    assert last > 0


# -- the exchange with two matchers ----------------------------------------------------------


@dataclass
class Answers:
    """Every REST answer an order got: order id -> (user, symbol, status, executed lots)."""

    orders: dict[int, tuple[str, str, str, int]] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)
    stopping: bool = False
    symbols: tuple[str, ...] = SYMBOLS  # what the traders trade now


async def trader(url: str, user: str, seed: int, out: Answers) -> None:
    """Seeded limit orders around 100.00 on both symbols, and cancels of its own."""
    rng = random.Random(seed)
    open_orders: list[tuple[int, str]] = []
    async with RestClient(url) as api:
        while not out.stopping:
            try:
                if not api.account:
                    await api.login(user, "pw")
                if open_orders and rng.random() < 0.25:
                    oid, sym = open_orders.pop(rng.randrange(len(open_orders)))
                    await api.call("DELETE", "/api/v1/order", symbol=sym, orderId=oid)
                    continue
                sym, side = rng.choice(out.symbols), rng.choice(("BUY", "SELL"))
                price = f"{100 + rng.randint(-3, 3) / 100:.2f}"
                qty = f"{rng.randint(1, 5) / 100:.4f}"
                got = await api.call(
                    "POST", "/api/v1/order", symbol=sym, side=side, type="LIMIT",
                    price=price, quantity=qty,
                )  # fmt: skip
                oid = got["orderId"]
                assert oid not in out.orders, f"order id {oid} answered twice: {got}"
                executed = int(Decimal(got["executedQty"]) / LOT)
                out.orders[oid] = (user, sym, got["status"], executed)
                out.count[user] += 1
                if got["status"] in ("NEW", "PARTIALLY_FILLED"):
                    open_orders.append((oid, sym))
            except ApiCallError as exc:  # a cancel of a filled order; a 503/504 in a kill
                out.errors.append(str(exc))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                out.errors.append(repr(exc))
                await asyncio.sleep(0.05)


async def progress(out: Answers, tasks: list[asyncio.Task[None]], n: int = 15) -> None:
    start = dict(out.count)
    deadline = time.monotonic() + 60
    while any(out.count[u] < start.get(u, 0) + n for u in USERS):
        for task in tasks:
            if task.done():
                task.result()
        assert time.monotonic() < deadline, f"no progress: {dict(out.count)}, {out.errors[-3:]}"
        await asyncio.sleep(0.05)


@contextmanager
def two_matchers(instance: str, tmp_path: Path) -> Iterator[tuple[RingexConfig, dict[str, int]]]:
    extra = (
        r34.rest_section()
        + "[journal]\nsnapshot_every = 150\n[supervisor]\nrestart_limit = 100\n"
        + '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\nsnapshot_every = 100\n'
        + '[[matchers]]\nname = "m2"\nsymbols = ["ETH-USD"]\nsnapshot_every = 100\n'
    )
    with running_exchange(instance, tmp_path, extra, marketdata=True, database=False) as prof:
        accounts = {}
        for user in USERS:
            out = ringex(
                prof, "admin", "add-user", "--username", user, "--password", "pw",
                "--deposit", "USD=1000000", "--deposit", "BTC=1000", "--deposit", "ETH=1000",
            )  # fmt: skip
            found = re.search(r"account (\d+)", out)
            assert found is not None, out
            accounts[user] = int(found.group(1))
        yield load_profile(str(prof)), accounts


def replayed_events(cfg: RingexConfig) -> tuple[dict[str, list[Record]], list[Record]]:
    """Each matcher's events from a replay of the whole journal from nothing, and the
    journal's commands."""
    sequencer, matchers = fresh(cfg)
    events: dict[str, list[Record]] = {name: [] for name in matchers}
    commands: list[Record] = []
    for _seq, image in journal_reader(cfg, CODEC).entries(1):
        command = CODEC.decode_slot(image)
        commands.append(command)
        sequencer.replay(command)
        for name in sequencer.matchers_for(command):
            made = matchers[name].execute(command)
            sequencer.settle(made)
            events[name].extend(made)
        sequencer.applied(command.seq)  # type: ignore[attr-defined]
    return events, commands


def ring_records(cfg: RingexConfig, matcher: str) -> list[Record]:
    ring = Ring.attach(cfg.instance, matcher_output(matcher), CODEC)
    try:
        end = ring.cursor()
        begin = max(0, end - ring.capacity)
        return [r for n in range(begin, end) if type(r := ring.record(n)) is not Heartbeat]
    finally:
        ring.close()


def contiguous_in(window: list[bytes], whole: list[bytes]) -> int:
    """Where ``window`` is a contiguous run of ``whole`` ending at its end; -1 if not."""
    at = len(whole) - len(window)
    return at if at >= 0 and whole[at:] == window else -1


def invariants(cfg: RingexConfig, accounts: dict[str, int], out: Answers) -> list[str]:
    """Every check of the module docstring; what broke."""
    r34.sequenced_once(cfg)
    state, scratch, trades, broken = r34.recovered_both_ways(cfg)
    broken += snapshots_equal_replay(cfg)
    broken += r34.live_balances_differ(cfg, accounts, state.sequencer.accounts.state().balances)
    events, commands = replayed_events(cfg)
    orders = [c.order_id for c in commands if type(c) is NewOrder]
    if orders != sorted(set(orders)):
        broken.append("journaled order ids not unique and increasing")
    journaled = set(orders)
    lost = [o for o in out.orders if o not in journaled]
    if lost:
        broken.append(f"answered orders not journaled: {lost[:5]}")
    filled: dict[int, int] = defaultdict(int)
    by_symbol: dict[int, list[int]] = defaultdict(list)
    for t in trades:
        by_symbol[t.symbol].append(t.trade_id)
        filled[t.maker_order_id] += t.qty
        filled[t.taker_order_id] += t.qty
    for sym, ids in by_symbol.items():
        if ids != list(range(1, len(ids) + 1)):
            broken.append(f"symbol {sym}: trade ids not gapless")
    over = [(o, e, filled[o]) for o, (_u, _s, _st, e) in out.orders.items() if e > filled[o]]
    if over:
        broken.append(f"answered executed qty past the replay's fills: {over[:5]}")
    for name in ("m1", "m2"):
        live = [CODEC.encode_slot(r) for r in ring_records(cfg, name)]
        whole = [CODEC.encode_slot(r) for r in events[name]]
        if not live or contiguous_in(live, whole) < 0:
            same = sum(1 for a, b in zip(reversed(live), reversed(whole), strict=False)
                       if a == b)  # fmt: skip
            broken.append(
                f"{name}: ring's {len(live)} events are not the replay's last "
                f"({len(whole)} in all; {same} equal from the end)"
            )
    try:
        asyncio.run(r34.feed_equals_books(cfg, scratch))
    except AssertionError as exc:
        broken.append(f"feed: {exc}")
    return broken


def traded_through(
    cfg: RingexConfig, out: Answers, seed: int, life: Callable[[list[Task[None]]], Awaitable[None]]
) -> None:
    """Two REST traders (seeds ``seed``, ``seed + 1``) on the instance while ``life`` runs
    its kills, then stopped; a trader's own failure raised."""
    rest = cfg.gateways[0].rest
    assert rest is not None
    url = f"http://127.0.0.1:{rest.port}"

    async def run() -> None:
        tasks = [asyncio.create_task(trader(url, u, seed + i, out)) for i, u in enumerate(USERS)]
        try:
            await life(tasks)
        finally:
            out.stopping = True
            await asyncio.wait(tasks, timeout=30)
        for task in tasks:
            task.result()

    asyncio.run(run())


def test_sound_two_matchers_each_killed_under_load_replay_the_same(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: two REST traders on both symbols (m1: BTC-USD, m2: ETH-USD); m2, the
    router, m1, the gateway and market data SIGKILLed in turn under load, each restarted.
    Expected: every invariant of the module docstring; each matcher's ring the replay's
    events byte for byte."""
    with two_matchers(instance, tmp_path) as (cfg, accounts):
        out = Answers()
        done: list[str] = []
        rng = random.Random(3170)

        async def life(tasks: list[Task[None]]) -> None:
            await progress(out, tasks)
            for victim in VICTIMS:
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                await r34.restarted(cfg, r34.sigkill(cfg, victim))
                done.append(victim)
                await progress(out, tasks)

        traded_through(cfg, out, 317, life)
        assert len(done) == len(VICTIMS)
        broken = invariants(cfg, accounts, out)
        assert not broken, f"after {done}: {broken[:8]}"


def test_sound_a_quiet_matcher_killed_after_an_exchange_snapshot_replays_the_same(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: both symbols trade; then only BTC-USD, past a few exchange snapshots and
    m2's "published through" mark (idle 0.2 s, written once a second), so m2 restarts
    from a newer exchange snapshot; m2 SIGKILLed, then both symbols trade again.
    Expected: m2's ring holds the replay's events byte for byte, every invariant holds."""
    with two_matchers(instance, tmp_path) as (cfg, accounts):
        out = Answers()

        async def life(tasks: list[Task[None]]) -> None:
            await progress(out, tasks)
            out.symbols = ("BTC-USD",)
            await progress(out, tasks, 200)
            await r34.restarted(cfg, r34.sigkill(cfg, "matcher-m2"))
            out.symbols = SYMBOLS
            await progress(out, tasks)
            await r34.restarted(cfg, r34.sigkill(cfg, "matcher-m2", "router"))
            await progress(out, tasks)

        traded_through(cfg, out, 31, life)
        broken = invariants(cfg, accounts, out)
        assert not broken, broken[:8]


def test_sound_a_matcher_killed_again_and_again_publishes_each_event_once(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: m1 SIGKILLed eight times in a row under load, 0-50 ms after each restart
    is ready (some kills land inside a command's events: a sweep makes several).
    Expected: m1's ring holds the replay's events byte for byte (none twice, none
    changed); every invariant holds."""
    with two_matchers(instance, tmp_path) as (cfg, accounts):
        out = Answers()
        rng = random.Random(17)

        async def life(tasks: list[Task[None]]) -> None:
            await progress(out, tasks)
            for _ in range(8):
                await asyncio.sleep(rng.uniform(0.0, 0.05))
                await r34.restarted(cfg, r34.sigkill(cfg, "matcher-m1"))
            await progress(out, tasks)

        traded_through(cfg, out, 7, life)
        broken = invariants(cfg, accounts, out)
        assert not broken, broken[:8]
