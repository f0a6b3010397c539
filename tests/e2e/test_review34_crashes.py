"""Review 34: crash consistency of the whole running exchange, where the kill-each-in-turn test
(``test_kill_under_load.py``) does not reach: two processes SIGKILLed at once, a process
killed again while its restart recovers, the supervisor itself killed (alone, and with every
process of the instance at the same instant) and ``ringex run`` started again over what it
left, the database writer killed mid-batch several times while trades flow, and a kill while
a mass cancel is in flight.

Each test runs that file's clients (two FIX, two REST, crossing orders and cancels) around
its faults, then checks the invariants: every acknowledged order journaled for its account;
balances conserved (deposits, fees included); PostgreSQL equal to a replay of the journal;
the REST clients' view (openOrders, account balances) equal to the replayed state; the
market-data feed's book equal to the matcher's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.admin.client import AdminClient
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.journal import JournalReader
from procs.common.record_codec import RecordCodec
from procs.common.records import CancelOrder, NewOrder, Record, ReplaceOrder, Trade
from procs.common.run_files import read_status
from procs.common.topology import journal_dir, postgres_dir
from procs.core.recovery import Recovered, recover
from procs.gateway.history import STATUS_NAMES
from procs.gateway.rest_client import RestClient
from shm.liveness import pid_alive
from tests.e2e.running import ringex, run_in_foreground, running_exchange
from tests.e2e.test_kill_under_load import (
    DEPOSIT,
    FIX_USERS,
    REST_USERS,
    FixTrader,
    Load,
    RestTrader,
    add_user,
    database_equals_replay,
    journaled_orders,
    listening,
    wait_for_writer,
)
from tests.free_ports import free_port

AFTER = 20  # acknowledgements each client needs after a fault: the load goes on
USERS = (*FIX_USERS, *REST_USERS)


def rest_section() -> str:
    return f"[gateways.rest]\nport = {free_port()}\norder_timeout_s = 5.0\n"


@contextmanager
def exchange(
    instance: str, tmp_path: Path, *, marketdata: bool = False, database: bool = True
) -> Iterator[tuple[Path, RingexConfig, dict[str, int]]]:
    """A running exchange with the four funded users: (profile, config, user -> account)."""
    with running_exchange(
        instance, tmp_path, rest_section(), marketdata=marketdata, database=database
    ) as profile:
        accounts = {u: add_user(profile, u) for u in USERS}
        yield profile, load_profile(str(profile)), accounts


class Traffic:
    """The kill test's four clients, running until ``stop``; ``progress`` waits until each
    was acknowledged ``AFTER`` more orders (the exchange took the load up again)."""

    def __init__(self, cfg: RingexConfig, accounts: dict[str, int]) -> None:
        rest = cfg.gateways[0].rest
        assert rest is not None
        self.url = f"http://127.0.0.1:{rest.port}"
        self.load = Load()
        port = cfg.gateways[0].port
        self.fix = [FixTrader(self.load, u, accounts[u], port) for u in FIX_USERS]
        self.rest = [RestTrader(self.load, u, self.url) for u in REST_USERS]
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        runs = [*(t.run() for t in self.fix), *(t.run() for t in self.rest)]
        self.tasks = [asyncio.create_task(r) for r in runs]

    async def progress(self, what: str, timeout_s: float = 45.0) -> None:
        start = {u: self.load.by_user.get(u, 0) for u in USERS}
        deadline = time.monotonic() + timeout_s
        while any(self.load.by_user.get(u, 0) < n + AFTER for u, n in start.items()):
            for task in self.tasks:
                if task.done():
                    task.result()  # a client's own failure, raised here
            now = {u: self.load.by_user.get(u, 0) - n for u, n in start.items()}
            assert time.monotonic() < deadline, (
                f"{what}: acknowledgements since {now}; last errors {self.load.last_error}"
            )
            await asyncio.sleep(0.05)

    @asynccontextmanager
    async def running(self, first: str) -> AsyncIterator[None]:
        """The clients started and past ``progress(first)``; stopped on exit unless the body
        stopped them itself."""
        self.start()
        try:
            await self.progress(first)
            yield
        finally:
            if not self.load.stopping:
                await self.stop()

    async def stop(self) -> None:
        self.load.stopping = True
        _, stuck = await asyncio.wait(self.tasks, timeout=30)
        for task in stuck:
            task.print_stack(file=sys.stderr)
            task.cancel()
        assert not stuck, f"{len(stuck)} clients did not stop within 30 s"
        for task in self.tasks:
            task.result()
        assert self.load.session_rejects == []


# -- faults -----------------------------------------------------------------------------------


def processes(cfg: RingexConfig) -> dict[str, dict[str, Any]]:
    status = read_status(cfg)
    assert status is not None
    return {p["name"]: p for p in status["processes"]}


def sigkill(cfg: RingexConfig, *names: str) -> dict[str, dict[str, Any]]:
    """SIGKILL ``names`` back to back (within microseconds); returns their entries before."""
    before = processes(cfg)
    for name in names:
        os.kill(before[name]["pid"], signal.SIGKILL)
    return {n: before[n] for n in names}


async def restarted(cfg: RingexConfig, before: dict[str, dict[str, Any]], times: int = 1) -> None:
    """Wait until each process of ``before`` was restarted ``times`` more and is ready."""
    deadline = time.monotonic() + 60
    while True:
        now = processes(cfg)
        if all(
            now[n]["restarts"] >= p["restarts"] + times and now[n]["ready"]
            for n, p in before.items()
        ):
            return
        assert time.monotonic() < deadline, f"not restarted: {before.keys()}: {now}"
        await asyncio.sleep(0.05)


async def killed_again(cfg: RingexConfig, name: str, times: int) -> AsyncIterator[int]:
    """SIGKILL ``name`` ``times`` times; yields each kill's number (from 0) once the process
    is restarted and ready again."""
    for k in range(times):
        before = sigkill(cfg, name)
        await restarted(cfg, before)
        yield k


async def new_pid(cfg: RingexConfig, name: str, old: int) -> int:
    """The pid of ``name``'s next life, as soon as the supervisor says it started it."""
    deadline = time.monotonic() + 30
    while True:
        pid = processes(cfg)[name]["pid"]
        if pid not in (None, old):
            return int(pid)
        assert time.monotonic() < deadline, f"{name} not started again"
        await asyncio.sleep(0.002)


async def reading_journal(pid: int, journal: Path, timeout_s: float = 10.0) -> bool:
    """Wait until process ``pid`` holds a file of ``journal`` open (its recovery reads it, or
    its writer opened it); False if it died first."""
    deadline = time.monotonic() + timeout_s
    prefix = str(journal)
    while time.monotonic() < deadline:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            return False
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                    return True
            except OSError:
                continue
        await asyncio.sleep(0.001)
    return False


@contextmanager
def run_again(profile: Path, cfg: RingexConfig, dead: int) -> Iterator[None]:
    """``ringex run`` over what the supervisor ``dead`` left; stopped (SIGTERM) on exit. In
    the foreground it logs to its stderr, kept beside the profile: a failure shows it."""
    err_path = profile.with_suffix(".run-again.log")
    proc = run_in_foreground(profile, err_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            status = read_status(cfg) or {}
            if status.get("supervisor_pid") == proc.pid and status.get("state") == "running":
                break
            if proc.poll() is not None:
                log = err_path.read_text(errors="replace")[-3000:]
                why = (read_status(cfg) or {}).get("reason", "")
                pytest.fail(f"ringex run again exited {proc.returncode} ({why}): {log}")
            assert time.monotonic() < deadline, f"not running within 60 s (after {dead})"
            time.sleep(0.1)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


async def gone(pids: list[int], timeout_s: float, poll_s: float, what: str) -> None:
    """Wait until none of ``pids`` is alive; ``what`` is the failure's message."""
    deadline = time.monotonic() + timeout_s
    while any(pid_alive(p) for p in pids):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(poll_s)


# -- checks -----------------------------------------------------------------------------------


def acknowledged_are_journaled(cfg: RingexConfig, load: Load) -> dict[int, int]:
    journaled = journaled_orders(cfg)
    lost = {oid: who for oid, who in load.acked.items() if journaled.get(oid) != who[1]}
    assert not lost, f"{len(lost)} of {len(load.acked)} acknowledged orders not journaled"
    return journaled


def recovered_both_ways(cfg: RingexConfig) -> tuple[Recovered, Recovered, list[Trade], list[str]]:
    """The router recovered from its snapshots and replayed from nothing, the trades the
    replay made, and what differed: their state hashes (reviews 42 and 150)."""
    trades: list[Trade] = []

    def observe(events: list[Record]) -> None:
        trades.extend(e for e in events if type(e) is Trade)

    state, scratch = recover(cfg), recover(cfg, use_snapshot=False, observe=observe)
    broken = []
    if scratch.state_hashes() != state.state_hashes():
        broken.append(f"from snapshots {state.state_hashes()} != {scratch.state_hashes()}")
    return state, scratch, trades, broken


def sequenced_once(cfg: RingexConfig) -> None:
    """No gateway command (its client_ref, unique per gateway) is in the journal twice: a
    command published again after a restart was not executed twice."""
    codec = RecordCodec()
    reader = JournalReader(
        journal_dir(cfg), slot_size=codec.slot_size, schema_id=codec.journal_schema_id
    )
    seen: dict[tuple[int, int], int] = {}
    twice = []
    for seq, image in reader.entries(1):
        command = codec.decode_slot(image)
        if isinstance(command, NewOrder | CancelOrder | ReplaceOrder):
            key = (command.gateway, command.client_ref)
            if key in seen:
                twice.append((seen[key], seq, command))
            seen[key] = seq
    assert not twice, f"{len(twice)} commands journaled twice, first {twice[0]}"


def conserved(cfg: RingexConfig, state: Recovered, accounts: dict[str, int]) -> None:
    for asset in cfg.assets:
        deposited = len(accounts) * DEPOSIT.get(asset.name, 0) * 10**asset.decimals
        assert state.sequencer.accounts.totals(asset.id) == deposited, asset.name


def live_balances_differ(
    cfg: RingexConfig, accounts: dict[str, int], replayed: Iterable[tuple[int, int, int, int]]
) -> list[str]:
    """Each user of ``accounts`` whose balances, as the running router holds them, are not
    the ``replayed`` ones (account, asset, free, reserved), named."""
    replayed = list(replayed)
    broken: list[str] = []
    admin = AdminClient(cfg)
    try:
        for user, account in accounts.items():
            live = {(b.asset, b.free, b.reserved) for b in admin.balances(account)}
            want = {(a, f, r) for acc, a, f, r in replayed if acc == account}
            if live != want:
                broken.append(f"router's live balances of {user}: {live} != replay {want}")
    finally:
        admin.close()
    return broken


def settled(
    cfg: RingexConfig, load: Load, accounts: dict[str, int], *, database: bool
) -> Recovered:
    """Every invariant but the clients' views; the replayed state."""
    journaled = acknowledged_are_journaled(cfg, load)
    sequenced_once(cfg)
    if database:
        dsn = EmbeddedPostgres(postgres_dir(cfg)).dsn
        last = wait_for_writer(cfg, dsn)
        state = recover(cfg)
        assert state.last_seq == last
        database_equals_replay(cfg, dsn, state, journaled)
    else:
        state = recover(cfg)
    conserved(cfg, state, accounts)
    return state


async def rest_views_agree(
    cfg: RingexConfig, url: str, state: Recovered, accounts: dict[str, int], load: Load
) -> None:
    """Each REST user's openOrders and balances are the replayed state's; with the database,
    GET order of each order it was acknowledged (its last 150) is the database's row."""
    books = [b for m in state.matchers.values() for b in m.books.values()]
    decimals = {a.id: a.decimals for a in cfg.assets}
    names = {a.id: a.name for a in cfg.assets}
    qty = Decimal(1).scaleb(-cfg.symbols[0].qty_decimals)
    rows: dict[int, tuple[int, int]] = {}
    if cfg.database.enabled:
        with psycopg.connect(EmbeddedPostgres(postgres_dir(cfg)).dsn) as conn:
            rows = {oid: (st, f) for oid, st, f in conn.execute(
                "SELECT id, status, filled FROM orders")}  # fmt: skip
    for user in REST_USERS:
        account = accounts[user]
        resting = {oid for b in books for oid, o in b.orders.items() if o.account == account}
        async with RestClient(url) as api:
            await api.login(user, "pw")
            listed = await api.call("GET", "/api/v1/openOrders")
            shown = {o["orderId"] for o in listed}
            assert shown == resting, f"{user}: openOrders {sorted(shown ^ resting)} differ"
            balances = (await api.call("GET", "/api/v1/account"))["balances"]
            acked = [oid for oid, (who, _a) in load.acked.items() if who == user][-150:]
            for oid in acked if rows else []:
                got = await api.call("GET", "/api/v1/order", symbol="BTC-USD", orderId=oid)
                status, filled = rows[oid]
                seen = (got["status"], Decimal(got["executedQty"]))
                assert seen == (STATUS_NAMES[status], filled * qty), f"{user} order {oid}"
        seen_b = {b["asset"]: (Decimal(b["free"]), Decimal(b["locked"])) for b in balances}
        for asset, name in names.items():
            free, held = state.sequencer.accounts.balance(account, asset)
            want = (Decimal(free).scaleb(-decimals[asset]), Decimal(held).scaleb(-decimals[asset]))
            assert seen_b.get(name, (Decimal(0), Decimal(0))) == want, f"{user} {name}"


async def run_again_and_check(
    profile: Path, cfg: RingexConfig, dead: int, traffic: Traffic, accounts: dict[str, int]
) -> None:
    """``ringex run`` again over what the supervisor ``dead`` left; the load goes on, stops,
    and every invariant holds, the REST clients' views included."""
    with run_again(profile, cfg, dead):
        await traffic.progress("after ringex run again")
        await traffic.stop()
        state = settled(cfg, traffic.load, accounts, database=True)
        await rest_views_agree(cfg, traffic.url, state, accounts, traffic.load)


# -- the tests --------------------------------------------------------------------------------


def test_router_and_gateway_killed_at_once_then_router_again_while_it_recovers(
    instance: str, tmp_path: Path
) -> None:
    with exchange(instance, tmp_path) as (_profile, cfg, accounts):
        traffic = Traffic(cfg, accounts)

        async def faults() -> None:
            async with traffic.running("before the kills"):
                before = sigkill(cfg, "router", "gateway-gw1")
                await restarted(cfg, before)
                await traffic.progress("after router + gateway")
                # the router again, then its next life while it reads the journal back
                first = sigkill(cfg, "router")
                pid = await new_pid(cfg, "router", first["router"]["pid"])
                assert await reading_journal(pid, journal_dir(cfg)), "router died recovering"
                os.kill(pid, signal.SIGKILL)
                await restarted(cfg, first, times=2)
                await traffic.progress("after the router's kill in recovery")

        asyncio.run(faults())
        state = settled(cfg, traffic.load, accounts, database=True)
        asyncio.run(rest_views_agree(cfg, traffic.url, state, accounts, traffic.load))


def test_database_writer_killed_mid_batch_again_and_again(instance: str, tmp_path: Path) -> None:
    with exchange(instance, tmp_path) as (_profile, cfg, accounts):
        traffic = Traffic(cfg, accounts)

        async def faults() -> None:
            async with traffic.running("before the kills"):
                async for k in killed_again(cfg, "dbwriter", 3):
                    await asyncio.sleep(0.05 * k)  # mid-batch: trades flow meanwhile
                await traffic.progress("after the writer's kills")

        asyncio.run(faults())
        settled(cfg, traffic.load, accounts, database=True)


def test_gateway_killed_again_and_again_under_load(instance: str, tmp_path: Path) -> None:
    """Killed at random points of its loop, the gateway dies now and then between logging a
    command and publishing it: the restart publishes it, once."""
    with exchange(instance, tmp_path, database=False) as (_profile, cfg, accounts):
        traffic = Traffic(cfg, accounts)

        async def faults() -> None:
            async with traffic.running("before the kills"):
                async for k in killed_again(cfg, "gateway-gw1", 3):
                    await traffic.progress(f"after kill {k}", timeout_s=20)

        asyncio.run(faults())
        state = settled(cfg, traffic.load, accounts, database=False)
        asyncio.run(rest_views_agree(cfg, traffic.url, state, accounts, traffic.load))


def test_matcher_and_marketdata_killed_at_once(instance: str, tmp_path: Path) -> None:
    with exchange(instance, tmp_path, marketdata=True, database=False) as (_p, cfg, accounts):
        traffic = Traffic(cfg, accounts)

        async def faults() -> None:
            async with traffic.running("before the kills"):
                before = sigkill(cfg, "matcher-m1", "marketdata")
                await restarted(cfg, before)
                await listening(cfg.marketdata.port)
                await traffic.progress("after matcher + market data")

        asyncio.run(faults())
        state = settled(cfg, traffic.load, accounts, database=False)
        asyncio.run(feed_equals_books(cfg, state))


async def feed_equals_books(cfg: RingexConfig, state: Recovered) -> None:
    """``/api/depth`` of each symbol is the replayed book's levels (once the feed settles)."""
    symbols = {s.id: s for s in cfg.symbols}
    for matcher in state.matchers.values():
        for book in matcher.books.values():
            sym = symbols[book.spec.symbol]
            want: dict[str, dict[Decimal, Decimal]] = {"bids": {}, "asks": {}}
            for o in book.orders.values():
                side = want["bids" if o.side == 1 else "asks"]
                price = Decimal(o.price).scaleb(-sym.price_decimals)
                side[price] = side.get(price, Decimal(0)) + Decimal(o.leaves).scaleb(
                    -sym.qty_decimals
                )
            url = f"http://127.0.0.1:{cfg.marketdata.port}/api/depth?symbol={sym.name}&limit=1000"
            deadline = time.monotonic() + 5
            while True:
                async with aiohttp.ClientSession() as http, http.get(url) as answer:
                    depth = await answer.json(content_type=None)
                got = {k: {Decimal(p): Decimal(q) for p, q in depth[k]} for k in ("bids", "asks")}
                if got == want or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert got == want, f"{sym.name}: the feed's book is not the matcher's"


def test_supervisor_killed_then_run_again(instance: str, tmp_path: Path) -> None:
    """The supervisor alone: its processes get SIGTERM (parent death) and stop each on its
    own, in no order; a new ``ringex run`` takes over once they are gone."""
    with exchange(instance, tmp_path) as (profile, cfg, accounts):
        traffic = Traffic(cfg, accounts)
        status = read_status(cfg)
        assert status is not None
        dead = status["supervisor_pid"]
        children = [p["pid"] for p in status["processes"]]

        async def faults() -> None:
            async with traffic.running("before the kill"):
                os.kill(dead, signal.SIGKILL)
                await gone(children, 30, 0.05, "orphans still run after 30 s")
                await run_again_and_check(profile, cfg, dead, traffic, accounts)

        asyncio.run(faults())


@pytest.mark.parametrize("router_recovering", [False, True])
def test_everything_killed_at_once_then_run_again(
    instance: str, tmp_path: Path, router_recovering: bool
) -> None:
    """Every process of the instance and its supervisor SIGKILLed in the same instant (what
    the kernel's OOM killer of a cgroup, or ``kill -9`` of them all, does): no one stops
    cleanly, and ``ringex run`` starts over the segments, journal and files they left;
    ``router_recovering``: while a restarted router reads the journal back."""
    with exchange(instance, tmp_path) as (profile, cfg, accounts):
        traffic = Traffic(cfg, accounts)
        status = read_status(cfg)
        assert status is not None
        dead = status["supervisor_pid"]

        async def faults() -> None:
            async with traffic.running("before the kill"):
                if router_recovering:
                    first = sigkill(cfg, "router")["router"]["pid"]
                    pid = await new_pid(cfg, "router", first)
                    assert await reading_journal(pid, journal_dir(cfg)), "router died"
                victims = [p["pid"] for p in processes(cfg).values() if p["pid"]] + [dead]
                for pid in victims:
                    os.kill(pid, signal.SIGKILL)
                await gone(victims, 10, 0.01, "killed processes still alive")
                await run_again_and_check(profile, cfg, dead, traffic, accounts)

        asyncio.run(faults())


async def rest_orders(url: str, user: str, count: int, tif: str = "GTC") -> list[int]:
    """``count`` resting buys of ``user`` below the market (none trades)."""
    ids = []
    async with RestClient(url) as api:
        await api.login(user, "pw")
        for k in range(count):
            answer = await api.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="LIMIT",
                timeInForce=tif, price=f"{90 + k / 100:.2f}", quantity="0.0100",
            )  # fmt: skip
            ids.append(answer["orderId"])
    return ids


@pytest.mark.parametrize("victims", [("router", "gateway-gw1"), ("matcher-m1", "gateway-gw1")])
def test_kill_while_a_mass_cancel_is_in_flight(
    instance: str, tmp_path: Path, victims: tuple[str, ...]
) -> None:
    with exchange(instance, tmp_path) as (_profile, cfg, accounts):
        rest = cfg.gateways[0].rest
        assert rest is not None
        url = f"http://127.0.0.1:{rest.port}"

        async def cancel_and_kill() -> None:
            await rest_orders(url, "R1", 60)
            async with RestClient(url) as api:
                await api.login("R1", "pw")
                cancel = asyncio.create_task(
                    api.call("DELETE", "/api/v1/openOrders", symbol="BTC-USD")
                )
                await asyncio.sleep(0.005)  # sent: the cancels are on their way
                before = sigkill(cfg, *victims)
                answered = await asyncio.gather(cancel, return_exceptions=True)
                await restarted(cfg, before)
            await listening(rest.port)
            state = settled(cfg, Load(), accounts, database=True)
            await rest_views_agree(cfg, url, state, accounts, Load())
            if not isinstance(answered[0], BaseException):  # a 200: nothing of R1 is open
                books = [b for m in state.matchers.values() for b in m.books.values()]
                left = [o for b in books for o in b.orders.values() if o.account == accounts["R1"]]
                assert left == [], f"mass cancel answered {answered[0]}, {len(left)} left open"

        asyncio.run(cancel_and_kill())


def test_session_end_in_flight_when_matcher_and_marketdata_die(
    instance: str, tmp_path: Path
) -> None:
    with exchange(instance, tmp_path, marketdata=True) as (profile, cfg, accounts):
        rest = cfg.gateways[0].rest
        assert rest is not None
        url = f"http://127.0.0.1:{rest.port}"

        async def end_and_kill() -> None:
            day = await rest_orders(url, "R1", 30, tif="DAY")
            gtc = await rest_orders(url, "R2", 10)
            await asyncio.to_thread(ringex, profile, "admin", "end-session")
            before = sigkill(cfg, "matcher-m1", "marketdata")
            await restarted(cfg, before)
            await listening(cfg.marketdata.port)
            state = settled(cfg, Load(), accounts, database=True)
            books = [b for m in state.matchers.values() for b in m.books.values()]
            resting = {oid for b in books for oid in b.orders}
            assert not resting & set(day), "DAY orders outlived the session's end"
            assert set(gtc) <= resting
            await rest_views_agree(cfg, url, state, accounts, Load())
            await feed_equals_books(cfg, state)

        asyncio.run(end_and_kill())
