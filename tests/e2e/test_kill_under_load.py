"""Issue 8 end to end: under a steady load of FIX and REST orders (crossing, so trades happen,
and cancels), each process kind is SIGKILLed in turn (matcher, router, gateway, market data,
database writer) and comes back; then every acknowledged order is in the journal, balances
are conserved, and PostgreSQL holds what a replay of the journal gives.

Acknowledged means the client got the answer: an ExecutionReport New (FIX) or a 200 with an
orderId (REST). A request in flight at a kill may have no answer and no journal entry; it is
forgotten, and only the acknowledged ones must be there. A FIX client whose gateway died logs
on again on a fresh connection, its sequence numbers continuing (the gateway keeps its own on
disk); a gap the dead gateway left is filled (SequenceReset-GapFill), not resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import psycopg
import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.journal import JournalReader
from procs.common.record_codec import RecordCodec
from procs.common.records import NewOrder
from procs.common.run_files import read_status
from procs.common.topology import journal_dir, postgres_dir
from procs.core.recovery import Recovered, recover
from procs.dbwriter.projection import FILLED, OPEN_STATUSES
from procs.gateway.rest_client import ApiCallError, RestClient
from tests.e2e.running import ringex, running_exchange
from tests.e2e.test_pipeline import kill_and_wait
from tests.free_ports import free_port
from tests.unit.gateway.harness import OPEN, Client, utc

KILLS = ("matcher-m1", "router", "gateway-gw1", "marketdata", "dbwriter")
DEPOSIT = {"USD": 1_000_000, "BTC": 1_000}  # per user, in asset units
FIX_USERS, REST_USERS = ("F1", "F2"), ("R1", "R2")
FIX_RATE_PER_S = 120  # per FIX client; a REST client has one request out at a time
REST_RATE_PER_S = 60
AFTER_RESTART = 25  # acknowledgements each client needs after a restart: the load goes on
PENDING_MAX = 200  # FIX orders sent and not answered before a client holds back
DONE = (b"2", b"4", b"8", b"C")  # OrdStatus: filled, cancelled, rejected, expired
Orders = dict[int, int]  # order id -> account


class OrderRow(NamedTuple):  # the orders table's, in lots
    account: int
    status: int
    size: int
    remaining: int
    filled: int


@pytest.fixture
def exchange(instance: str, tmp_path: Path) -> Iterator[Path]:
    rest = f"[gateways.rest]\nport = {free_port()}\norder_timeout_s = 5.0\n"
    with running_exchange(instance, tmp_path, rest, marketdata=True) as profile:
        yield profile


def random_order() -> tuple[str, str, str]:
    """(side 1 buy / 2 sell, price, quantity) around 100.00: both sides cross often."""
    side = random.choice("12")
    return side, f"{100 + random.randint(-4, 4) / 100:.2f}", f"{random.randint(1, 5) / 100:.4f}"


class Load:
    """What every client was told: acknowledged order id -> (user, account)."""

    def __init__(self) -> None:
        self.acked: dict[int, tuple[str, int]] = {}
        self.by_user: dict[str, int] = {}
        self.stopping = False
        self.session_rejects: list[str] = []  # FIX Rejects (3) of our messages: none expected
        self.last_error: dict[str, str] = {}  # user -> the last request that failed

    def ack(self, order_id: int, user: str, account: int) -> None:
        assert order_id not in self.acked, f"order id {order_id} acknowledged twice"
        self.acked[order_id] = (user, account)
        self.by_user[user] = self.by_user.get(user, 0) + 1


class FixTrader:
    def __init__(self, load: Load, user: str, account: int, port: int) -> None:
        self.load, self.user, self.account, self.port = load, user, account, port
        self.client = Client(user)
        self.ids = itertools.count(1)
        self.open: dict[int, tuple[bytes, str]] = {}  # order id -> (ClOrdID, side)
        self.pending: dict[bytes, int] = {}  # ClOrdID -> MsgSeqNum, not answered yet
        self.logons = 0
        self.logouts: list[str] = []  # why the gateway ended a session: none expected

    async def run(self) -> None:
        while not self.load.stopping:
            try:
                await self.client.connect(self.port)
            except OSError:  # the gateway is restarting
                await asyncio.sleep(0.05)
                continue
            try:
                try:
                    await self.client.logon("pw")
                except AssertionError:  # no Logon back: a refusal, silence, or the connection
                    reader = self.client.reader  # closed by a gateway killed meanwhile (EOF,
                    if reader is None or not reader.at_eof():  # not a reset: it had read the
                        raise  # Logon): that one is a restart, connect again
                    continue
                self.logons += 1
                await self.trade()
            except OSError:
                pass
            finally:
                await self.client.aclose()
                while self.client in OPEN:
                    OPEN.remove(self.client)
            self.open.clear()  # a restarted gateway knows none of them
            self.pending.clear()  # what the dead one had is never answered

    async def trade(self) -> None:
        reader = asyncio.create_task(self.read())
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while not reader.done() and not self.load.stopping:
                await self.send_one()
                next_at = max(next_at + 1 / FIX_RATE_PER_S, loop.time() - 0.1)  # no bursts
                await asyncio.sleep(next_at - loop.time())
            deadline = time.monotonic() + 5
            while self.pending and not reader.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # the answers to what is out
        finally:
            # closed, the reader meets EOF and returns; not cancelled: Client.recv's wait_for
            # (3.11) can swallow a cancel that comes as data arrives, and read on forever
            self.client.close()
            with contextlib.suppress(OSError):
                await reader

    async def send_one(self) -> None:
        c = self.client
        if self.open and random.random() < 0.3:
            oid, (cl_ord_id, side) = next(iter(self.open.items()))  # the oldest
            del self.open[oid]
            await c.send("F", (41, cl_ord_id), (11, f"{self.user}c{next(self.ids)}"),
                         (55, "BTC-USD"), (54, side), (60, utc()))  # fmt: skip
            return
        if len(self.pending) >= PENDING_MAX:
            return  # the pipeline is behind (a process restarting): hold back
        side, price, qty = random_order()
        ref = f"{self.user}n{next(self.ids)}"
        self.pending[ref.encode()] = c.seq
        await c.send("D", (11, ref), (55, "BTC-USD"), (54, side), (60, utc()),
                     (38, qty), (40, "2"), (44, price), (59, "1"))  # fmt: skip

    async def read(self) -> None:
        """Take what comes (``take``) until the connection ends or a Logout."""
        c = self.client
        assert c.reader is not None
        while True:
            msg = await c.recv(timeout=1.0)
            if msg is None:
                if c.reader.at_eof():
                    return
                continue
            if not await self.take(msg):
                return

    async def take(self, msg: Any) -> bool:
        """Act on one message; False at a Logout."""
        c, kind = self.client, msg.get(35)
        if kind == b"8":
            self.report(msg)
        elif kind == b"2":  # the gateway lost the tail of our messages when it died
            begin = int(msg.get(7))
            self.pending = {k: s for k, s in self.pending.items() if s < begin}  # skipped
            await c.send("4", (123, "Y"), (36, c.seq), seq=begin, poss_dup=True,
                         orig_sending_time=self.orig_sending_time(msg))  # fmt: skip
        elif kind == b"1":
            await c.send("0", (112, msg.get(112)))
        elif kind == b"3":
            self.load.session_rejects.append(str(msg))
        elif kind == b"5":
            self.logouts.append(str(msg.get(58)))
            return False
        return True

    def orig_sending_time(self, resend_request: Any) -> Any:
        """The OrigSendingTime (122) of the gap fill that answers ``resend_request``."""
        return utc()

    def report(self, msg: Any) -> None:
        exec_type, status, cl_ord_id, oid = (msg.get(t) for t in (150, 39, 11, 37))
        if exec_type == b"0":  # New: acknowledged
            self.pending.pop(cl_ord_id, None)
            self.load.ack(int(oid), self.user, self.account)
            if status not in DONE:
                self.open[int(oid)] = (cl_ord_id, msg.get(54).decode())
        elif exec_type == b"8":
            self.pending.pop(cl_ord_id, None)
        if status in DONE and oid != b"NONE":
            self.open.pop(int(oid), None)


class RestTrader:
    def __init__(self, load: Load, user: str, url: str) -> None:
        self.load, self.user, self.url = load, user, url
        self.open: list[int] = []

    async def run(self) -> None:
        async with RestClient(self.url) as api:
            await api.login(self.user, "pw")
            while not self.load.stopping:
                try:
                    await self.step(api)
                except ApiCallError as exc:  # a cancel of an order filled meanwhile; a 504
                    self.load.last_error[self.user] = str(exc)
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    self.load.last_error[self.user] = repr(exc)  # the gateway died under it
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1 / REST_RATE_PER_S)

    async def step(self, api: RestClient) -> None:
        if self.open and random.random() < 0.3:
            oid = self.open.pop(0)
            await api.call("DELETE", "/api/v1/order", symbol="BTC-USD", orderId=oid)
            return
        side, price, qty = random_order()
        answer = await api.call(
            "POST", "/api/v1/order", symbol="BTC-USD", side="BUY" if side == "1" else "SELL",
            type="LIMIT", price=price, quantity=qty,
        )  # fmt: skip
        self.load.ack(answer["orderId"], self.user, api.account)
        if answer["status"] in ("NEW", "PARTIALLY_FILLED"):
            self.open.append(answer["orderId"])


def add_user(profile: Path, name: str) -> int:
    deposits = [arg for asset, n in DEPOSIT.items() for arg in ("--deposit", f"{asset}={n}")]
    out = ringex(profile, "admin", "add-user", "--username", name, "--password", "pw", *deposits)
    found = re.search(r"account (\d+)", out)
    assert found is not None, out
    return int(found.group(1))


async def listening(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on port {port}"
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return


async def kill_each_under_load(cfg: RingexConfig, load: Load, accounts: dict[str, int]) -> None:
    rest = cfg.gateways[0].rest
    assert rest is not None
    url = f"http://127.0.0.1:{rest.port}"
    port = cfg.gateways[0].port
    fix = [FixTrader(load, u, accounts[u], port) for u in FIX_USERS]
    traders = [*(t.run() for t in fix), *(RestTrader(load, u, url).run() for u in REST_USERS)]
    tasks = [asyncio.create_task(t) for t in traders]

    async def progress(what: str) -> None:
        """Every client gets AFTER_RESTART more acknowledgements: the load goes on."""
        start = {u: load.by_user.get(u, 0) for u in (*FIX_USERS, *REST_USERS)}
        deadline = time.monotonic() + 45
        while any(load.by_user.get(u, 0) < n + AFTER_RESTART for u, n in start.items()):
            for task in tasks:
                if task.done():
                    task.result()  # a client's own failure, raised here
            now = {u: load.by_user.get(u, 0) - n for u, n in start.items()}
            assert time.monotonic() < deadline, (
                f"{what}: acknowledgements since {now}; last errors {load.last_error}"
            )
            await asyncio.sleep(0.05)

    try:
        await progress("before the first kill")
        for name in KILLS:
            await kill_and_wait(cfg, name)
            if name == "marketdata":
                await listening(cfg.marketdata.port)
            await progress(f"after {name} restarted")
    finally:
        load.stopping = True
        _, stuck = await asyncio.wait(tasks, timeout=30)
        for task in stuck:
            task.print_stack(file=sys.stderr)  # where a client hangs, for the report
            task.cancel()
        assert not stuck, f"{len(stuck)} clients did not stop within 30 s"
    for task in tasks:
        task.result()
    # one logon per gateway life
    assert all(t.logons == 2 for t in fix), [(t.logons, t.logouts) for t in fix]


def wait_for_writer(cfg: RingexConfig, dsn: str) -> int:
    """The journal's last seq, once the database writer's checkpoint has reached it."""
    codec = RecordCodec()
    reader = JournalReader(
        journal_dir(cfg), slot_size=codec.slot_size, schema_id=codec.journal_schema_id
    )
    deadline = time.monotonic() + 45
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            last = reader.last_seq()
            row = conn.execute("SELECT last_seq FROM checkpoint").fetchone()
            assert row is not None
            if row[0] == last:
                return last
            assert time.monotonic() < deadline, f"checkpoint {row[0]}, journal at {last}"
            time.sleep(0.1)


def journaled_orders(cfg: RingexConfig) -> Orders:
    """Order id -> account of every NewOrder in the journal."""
    codec = RecordCodec()
    reader = JournalReader(
        journal_dir(cfg), slot_size=codec.slot_size, schema_id=codec.journal_schema_id
    )
    orders: Orders = {}
    for _seq, image in reader.entries(1):
        command = codec.decode_slot(image)
        if type(command) is NewOrder:
            orders[command.order_id] = command.account
    return orders


def database_equals_replay(cfg: RingexConfig, dsn: str, state: Recovered, journaled: Orders) -> int:
    """PostgreSQL against the replay: every balance; the journal's orders, the open ones as the
    books hold them; the trades. Returns the number of trades."""
    accounts = state.sequencer.accounts
    decimals = {a.id: a.decimals for a in cfg.assets}
    books = [b for m in state.matchers.values() for b in m.books.values()]
    with psycopg.connect(dsn) as conn:  # one transaction: one view of the writer's commits
        balances = {
            (a, s): (f, r)
            for a, s, f, r in conn.execute(
                "SELECT account_id, asset_id, free, reserved FROM balances"
            )
        }
        orders = {
            oid: OrderRow(*row)
            for oid, *row in conn.execute(
                "SELECT id, account_id, status, size, remaining, filled FROM orders"
            )
        }
        trades = {
            sid: (n, top, size)
            for sid, n, top, size in conn.execute(
                "SELECT symbol_id, count(*), max(trade_id), sum(size) FROM trades "
                "GROUP BY symbol_id"
            )
        }
    replayed = {
        (a, s): (Decimal(f).scaleb(-decimals[s]), Decimal(r).scaleb(-decimals[s]))
        for a, s, f, r in accounts.state().balances
    }
    zero = (Decimal(0), Decimal(0))
    for slot in set(replayed) | set(balances):
        assert balances.get(slot, zero) == replayed.get(slot, zero), f"(account, asset) {slot}"

    assert {oid: r.account for oid, r in orders.items()} == journaled, "not the journal's orders"
    resting = {oid: (o.leaves + o.reserve, o.filled) for b in books for oid, o in b.orders.items()}
    live = {oid: r for oid, r in orders.items() if r.status in OPEN_STATUSES}
    assert {oid: (r.remaining, r.filled) for oid, r in live.items()} == resting, "open orders"
    for account in set(journaled.values()):
        held = sum(r.account == account for r in live.values())
        assert held == accounts.open_orders(account), f"open orders of account {account}"
    for oid, r in orders.items():
        if r.status not in OPEN_STATUSES:
            assert r.remaining == 0 and (r.status == FILLED) == (r.filled == r.size), (oid, r)

    counted = {b.spec.symbol: b.next_trade_id - 1 for b in books if b.next_trade_id > 1}
    assert {sid: (n, top) for sid, (n, top, _) in trades.items()} == {
        sid: (n, n) for sid, n in counted.items()
    }, "trade ids are gapless per symbol, up to the books' last"
    filled_total = sum(r.filled for r in orders.values())
    assert filled_total == 2 * sum(size for _n, _top, size in trades.values())  # maker + taker
    return sum(counted.values())


def test_sigkill_each_process_kind_under_load(exchange: Path) -> None:
    cfg = load_profile(str(exchange))
    accounts = {u: add_user(exchange, u) for u in (*FIX_USERS, *REST_USERS)}
    load = Load()
    asyncio.run(kill_each_under_load(cfg, load, accounts))
    assert load.session_rejects == []

    # none lost: every acknowledged order was sequenced, for its own account
    journaled = journaled_orders(cfg)
    lost = {oid: who for oid, who in load.acked.items() if journaled.get(oid) != who[1]}
    assert not lost, f"{len(lost)} of {len(load.acked)} acknowledged orders not journaled"

    # conserved: the replay holds exactly what was deposited, fees included
    dsn = EmbeddedPostgres(postgres_dir(cfg)).dsn
    last = wait_for_writer(cfg, dsn)
    state = recover(cfg)
    assert state.last_seq == last
    for asset in cfg.assets:
        deposited = len(accounts) * DEPOSIT.get(asset.name, 0) * 10**asset.decimals
        assert state.sequencer.accounts.totals(asset.id) == deposited, asset.name

    trades = database_equals_replay(cfg, dsn, state, journaled)
    assert trades > 100 and len(load.acked) > 500, (trades, len(load.acked))

    status = read_status(cfg)
    assert status is not None and status["state"] == "running"
    assert {p["name"]: p["restarts"] for p in status["processes"]} == dict.fromkeys(KILLS, 1)
