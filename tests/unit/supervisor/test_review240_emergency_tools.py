"""Review 240: an operator's emergency tools used while the exchange is busy.

Reviewed: ``procs/admin/commands.py`` (``cancel-all``, ``halt``, ``resume``),
``procs/admin/client.py``, ``procs/admin/users.py`` (``remove_user``: the removal, the keys
revoked, the cancel-all 1.5 s later), ``procs/core/sequencer.py`` (``_mass_cancel``),
``procs/core/book.py`` (``_mass_cancel``, ``_admin``, ``_remove_all``, the halt's checks),
against README's Operate ("Balances and cancel-all", "Removing a user").

Method: one real instance for the module (``ringex run --detach``: a matcher with BTC-USD and
ETH-USD, the router, a FIX gateway with a REST port, the market data; no database), users by
``ringex admin add-user``. A closed loop of FIX (the harness's ``Client``) and REST clients
sends orders about 100.00 on both sides (GTC, DAY, icebergs, stop-limits off the market; some
cross, some rest at several levels) and REST cancels while ``ringex admin`` runs as a shell
runs it. The truth is the live matcher's snapshot (``ringex admin snapshot``), held against
the feed's ``/api/depth``, REST ``openOrders``, FIX mass status and ``admin balances``.

Faults: none reproduced. Sound: ``cancel-all --every-account --symbol`` under load (nothing
acknowledged before it rests after its exit; what raced it rests alike in matcher, feed,
REST and FIX; a quiet cancel-all then leaves nothing held, each asset's total the deposits);
``halt`` under load (once exchangeInfo says HALT every order is refused naming
SYMBOL_HALTED, FIX 103=2, REST -2010; cancels taken; a pending stop stays pending through
the resume, then triggers at the next trade at its price; no refused order trades);
``remove-user --cancel-orders`` of a user trading on FIX and REST at once (Logout and close,
401, none of its orders rests, nothing held); ``ringex replay --from-start`` after all of it
(the live matcher's hash, balances).

Leads, not shown: ``halt`` exits "sent" once the command is in the admin ring (an order sent
just after may still trade: README's "sent"). ``remove-user --cancel-orders`` cancels 1.5 s
after the removal, trusting each gateway's timer pass (1 s) to have ended the sessions: a
gateway stalled longer would take an order of the removed user after it; not forced here."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aiohttp
import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.snapshots import SnapshotStore
from procs.common.topology import snapshot_dir
from procs.common.types import Side
from procs.core.engine import Matcher
from procs.core.recovery import recover
from procs.core.symbols import symbol_specs
from procs.gateway.rest_client import ApiCallError, RestClient
from tests.e2e.running import ROOT
from tests.free_ports import free_port
from tests.unit.gateway.harness import Client

USERS = ("F1", "F2", "R1", "R2", "V1")
DEPOSIT = {"USD": 1_000_000, "BTC": 1_000, "ETH": 1_000}
UNITS = {"USD": 10**6, "BTC": 10**8, "ETH": 10**8}
FEE_ACCOUNT = 1
SYMBOL_ID = {"BTC-USD": 1, "ETH-USD": 2}
PRICE_UNITS, QTY_UNITS = 100, 10_000  # 2 and 4 decimals
T = TypeVar("T")


@dataclass
class Venue:  # the running instance, its endpoints and its users' accounts
    cfg: RingexConfig
    profile: Path
    fix_port: int
    rest_url: str
    feed_url: str
    accounts: dict[str, int] = field(default_factory=dict)


async def ringex(profile: Path, *args: str) -> tuple[int, str, str]:
    """``ringex ARGS --config PROFILE`` as a shell runs it, while the test's loop goes on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "procs.cli", *args, "--config", str(profile),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    tmp = tmp_path_factory.mktemp("r240")
    profile = tmp / "venue.toml"
    profile.write_text(
        f'instance = "t{os.getpid()}x240"\nvar_dir = "{tmp / "var"}"\n'
        f"[marketdata]\nenabled = true\nport = {free_port()}\n[database]\nenabled = false\n"
        '[ring]\ncapacity = 4096\n[wait]\nstrategy = "blocking"\npark_timeout_s = 0.005\n'
        f"[risk]\nfee_account = {FEE_ACCOUNT}\nmax_commands_per_s = 100000\n"
        "[supervisor]\nmetrics = false\n"
        f'[[gateways]]\nname = "gw1"\nid = 1\nport = {free_port()}\nreset_on_logon = true\n'
        f"[gateways.rest]\nport = {free_port()}\nlogin_rate_per_s = 100\nlogin_burst = 100\n"
    )
    code, _, err = asyncio.run(ringex(profile, "run", "--detach", "--timeout", "60"))
    assert code == 0, err
    try:
        cfg = load_profile(str(profile))
        rest, feed = cfg.gateways[0].rest, cfg.marketdata
        assert rest is not None
        v = Venue(cfg, profile, cfg.gateways[0].port, f"http://127.0.0.1:{rest.port}",
                  f"http://127.0.0.1:{feed.port}")  # fmt: skip
        for user in USERS:
            deposits = [f"--deposit={a}={n}" for a, n in DEPOSIT.items()]
            add = ["admin", "add-user", "--username", user, "--password", "pw", *deposits]
            code, out, err = asyncio.run(ringex(profile, *add))
            assert code == 0, err
            v.accounts[user] = int(out.split("account ")[1].split(",")[0])
        yield v
    finally:
        asyncio.run(ringex(profile, "stop", "--timeout", "60"))


@dataclass
class Load:
    """What the clients were told: acknowledged order id -> (account, when); refusals."""

    symbol: str
    acked: dict[int, tuple[int, float]] = field(default_factory=dict)
    refused: list[tuple[float, str]] = field(default_factory=list)  # (when, reason)
    cancels_taken: list[float] = field(default_factory=list)
    stopping: bool = False

    def order(self) -> tuple[str, str, str, str]:
        """(BUY or SELL, price, quantity, kind): bids 99.90..100.02, asks 99.98..100.10; kind
        "limit" (GTC) mostly, else "day", "iceberg" (0.01 shown) or "stop" (a stop-limit
        off the market: it waits)."""
        side = random.choice(("BUY", "SELL"))
        base = 9990 if side == "BUY" else 9998
        kind = random.choice(("limit", "limit", "limit", "day", "iceberg", "stop"))
        qty = "0.05" if kind == "iceberg" else f"0.0{random.randint(1, 5)}"
        return side, f"{(base + random.randint(0, 12)) / 100:.2f}", qty, kind


#: A stop-limit's (trigger, limit) for each side: off the load's prices, so it waits.
STOPS = {"BUY": ("100.50", "100.60"), "SELL": ("99.50", "99.40")}


class FixTrader:
    """A FIX client that sends one order and waits for its answer."""

    def __init__(self, venue: Venue, user: str) -> None:
        self.venue, self.user, self.account = venue, user, venue.accounts[user]
        self.client, self.ids = Client(user), itertools.count(1)
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self.reports: list[Any] = []
        self.closed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        STARTED.append(self)
        await self.client.connect(self.venue.fix_port)
        await self.client.logon("pw", reset=True)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:  # closed with orders of ours unread, the gateway's socket resets (CI's run: the
            while (msg := await self.client.recv(30)) is not None:
                if msg.get(35) == b"8":
                    self.reports.append(msg)
                ref = (msg.get(11) or b"").decode()
                future = self.waiting.pop(ref, None)
                if future is not None and not future.done():
                    future.set_result(msg)
        except ConnectionError:  # task died, ``closed`` never set): closed too
            pass
        self.closed.set()
        for left in [f for f in self.waiting.values() if not f.done()]:
            left.set_result(None)

    async def _ask(self, ref: str, msg_type: str, *pairs: tuple[int, object]) -> Any:
        self.waiting[ref] = asyncio.get_running_loop().create_future()
        await self.client.send(msg_type, (11, ref), *pairs)
        return await asyncio.wait_for(self.waiting[ref], 10)

    async def step(self, load: Load) -> None:
        side, price, qty, kind = load.order()
        ref = f"o{self.user}-{next(self.ids)}"
        tif = "0" if kind == "day" else "1"
        fields: list[tuple[int, object]] = [(38, qty), (40, "2"), (44, price), (59, tif)]
        if kind == "iceberg":
            fields.append((111, "0.01"))  # MaxFloor
        elif kind == "stop":
            fields[1:3] = [(40, "4"), (99, STOPS[side][0]), (44, STOPS[side][1])]
        sent = time.monotonic()
        answer = await self._ask(ref, "D", (55, load.symbol), (54, "1" if side == "BUY" else "2"),
                                 (60, _now()), *fields)  # fmt: skip
        if answer is not None and (answer.get(39) == b"8" or answer.get(35) != b"8"):
            load.refused.append((sent, f"FIX {answer.get(103)!r} {answer.get(58)!r}"))
        elif answer is not None:
            load.acked[int(answer.get(37))] = (self.account, time.monotonic())

    async def mass_status(self) -> dict[int, bytes]:
        """Order id -> OrdStatus of each open order, as an OrderMassStatusRequest answers."""
        ref = f"ms{next(self.ids)}"
        start = len(self.reports)
        await self.client.send("AF", (584, ref), (585, 7))

        def mine() -> list[Any]:
            return [m for m in self.reports[start:] if m.get(584) == ref.encode()]

        await until(lambda: any(m.get(912) == b"Y" for m in mine()), f"{self.user}'s mass status")
        return {int(m.get(37)): m.get(39) for m in mine() if m.get(37) != b"NONE"}

    async def close(self) -> None:
        await self.client.aclose()
        if self.reader is not None:  # (its recv ends with the connection)
            self.reader.cancel()


class RestTrader:
    """A REST client that sends one order (or a cancel of its own) and waits for its answer."""

    def __init__(self, venue: Venue, user: str) -> None:
        self.venue, self.user, self.account = venue, user, venue.accounts[user]
        self.api = RestClient(venue.rest_url)
        self.open: set[int] = set()
        self.statuses: list[int] = []  # the HTTP status of each refused request

    async def start(self) -> None:
        STARTED.append(self)
        await self.api.login(self.user, "pw")

    async def step(self, load: Load) -> None:
        try:
            if self.open and random.random() < 0.2:
                oid = self.open.pop()
                await self.api.call("DELETE", "/api/v1/order", symbol=load.symbol, orderId=oid)
                load.cancels_taken.append(time.monotonic())
                return
            side, price, qty, kind = load.order()
            tif = "DAY" if kind == "day" else "GTC"
            fields: dict[str, Any] = {"type": "LIMIT", "timeInForce": tif, "price": price}
            if kind == "iceberg":
                fields["icebergQty"] = "0.01"
            elif kind == "stop":
                fields.update(
                    type="STOP_LOSS_LIMIT", stopPrice=STOPS[side][0], price=STOPS[side][1]
                )
            sent = time.monotonic()
            try:
                answer = await self.api.call(
                    "POST", "/api/v1/order", symbol=load.symbol, side=side, quantity=qty, **fields
                )
            except ApiCallError as exc:
                load.refused.append((sent, f"REST {exc.status} {exc.body}"))
                raise
            load.acked[answer["orderId"]] = (self.account, time.monotonic())
            if answer["status"] in ("NEW", "PARTIALLY_FILLED"):
                self.open.add(answer["orderId"])
        except ApiCallError as exc:
            self.statuses.append(exc.status)
            if exc.status == 401:
                await asyncio.sleep(0.05)  # revoked: the loop keeps knocking, slowly

    async def close(self) -> None:
        await self.api.close()


Trader = FixTrader | RestTrader
STARTED: list[Trader] = []  # the running scenario's (``run`` closes them, whatever happened)


def run(scenario: Coroutine[Any, Any, T], limit_s: float = 60) -> T:
    async def main() -> T:
        try:
            return await asyncio.wait_for(scenario, limit_s)
        finally:
            while STARTED:
                await STARTED.pop().close()

    return asyncio.run(main())


async def drive(load: Load, traders: list[Trader]) -> list[asyncio.Task[None]]:
    """Each trader started, then its closed loop, as tasks; ``load.stopping`` ends them."""
    for t in traders:
        if t not in STARTED:
            await t.start()

    async def loop(trader: Trader) -> None:
        while not load.stopping:
            if isinstance(trader, FixTrader) and trader.closed.is_set():
                return
            try:
                await trader.step(load)
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                await asyncio.sleep(0.05)

    return [asyncio.create_task(loop(t)) for t in traders]


async def stop(load: Load, tasks: list[asyncio.Task[None]]) -> None:
    load.stopping = True
    await asyncio.wait_for(asyncio.gather(*tasks), 15)


async def until(check: Any, what: str, timeout_s: float = 10.0) -> Any:
    """Await ``check()`` until it gives something true; that, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.05)


def _now() -> bytes:
    return time.strftime("%Y%m%d-%H:%M:%S.000", time.gmtime()).encode()


class Resting(NamedTuple):
    account: int
    side: Side
    price: int
    visible: int  # lots shown (an iceberg's slice)
    stop: bool  # a pending stop: in no level


async def live_book(venue: Venue, symbol: str) -> dict[int, Resting]:
    """The live matcher's resting orders and stops of ``symbol`` by order id, from the
    snapshot ``ringex admin snapshot`` has it write."""
    store = SnapshotStore(snapshot_dir(venue.cfg, "matcher-m1"))
    before = store.latest()
    code, _, err = await ringex(venue.profile, "admin", "snapshot")
    assert code == 0, err
    newer = lambda: (x := store.latest()) and (before is None or x[0] > before[0]) and x  # noqa: E731
    _, image = await until(newer, "the matcher's snapshot")
    book = Matcher.restore(symbol_specs(venue.cfg, "m1"), image).books[SYMBOL_ID[symbol]]
    return {
        o.order_id: Resting(o.account, o.side, o.price, o.leaves, stop)
        for stop, orders in ((False, book.orders), (True, book.stops))
        for o in orders.values()
    }


def levels(book: dict[int, Resting]) -> dict[tuple[str, str], int]:
    """The book's L2 as the feed shows it: (BUY|SELL, price) -> quantity shown, in lots."""
    out: dict[tuple[str, str], int] = {}
    for o in book.values():
        if not o.stop:
            key = ("BUY" if o.side == Side.BUY else "SELL", f"{o.price / PRICE_UNITS:.2f}")
            out[key] = out.get(key, 0) + o.visible
    return out


async def feed_shows(venue: Venue, book: dict[int, Resting]) -> bool:
    """Whether the feed's BTC-USD depth is ``book``'s."""
    url = f"{venue.feed_url}/api/depth"
    async with aiohttp.ClientSession() as s, s.get(url, params={"symbol": "BTC-USD"}) as r:
        depth = await r.json()
    sides = (("BUY", "bids"), ("SELL", "asks"))
    shown = {(side, p): round(float(q) * QTY_UNITS) for side, k in sides for p, q in depth[k]}
    return shown == levels(book)


async def balances(venue: Venue, account: int) -> dict[str, tuple[int, int]]:
    """Asset -> (free, locked) in minor units, as ``ringex admin balances --json`` says."""
    args = ("balances", "--account", str(account), "--json")
    code, out, err = await ringex(venue.profile, "admin", *args)
    if code == 1 and "UNKNOWN_ACCOUNT" in err:
        return {}
    assert code == 0, err
    shown = json.loads(out)["balances"]
    return {
        a: (round(float(b["free"]) * UNITS[a]), round(float(b["locked"]) * UNITS[a]))
        for a, b in shown.items()
    }


async def status_is(venue: Venue, status: str) -> bool:
    """Whether exchangeInfo says ``status`` of ETH-USD."""
    async with RestClient(venue.rest_url) as api:
        info = await api.call("GET", "/api/v1/exchangeInfo", signed=False, symbol="ETH-USD")
    return bool(info["symbols"][0]["status"] == status)


async def gone(venue: Venue, order_id: int) -> bool:
    return order_id not in await live_book(venue, "ETH-USD")


async def rest_open(venue: Venue, user: str, symbol: str) -> set[int]:
    async with RestClient(venue.rest_url) as api:
        await api.login(user, "pw", "read")
        return {o["orderId"] for o in await api.call("GET", "/api/v1/openOrders", symbol=symbol)}


async def everything_released(venue: Venue) -> None:
    """A quiet cancel-all of every account and symbol; then nothing is held anywhere and
    each asset's total over every account (the fee account's included) is the deposits."""
    code, _, err = await ringex(venue.profile, "admin", "cancel-all", "--every-account")
    assert code == 0, err
    accounts = [*venue.accounts.values(), FEE_ACCOUNT]

    async def released() -> dict[int, dict[str, tuple[int, int]]] | None:
        seen = {a: await balances(venue, a) for a in accounts}
        held = {a: {k: v for k, v in b.items() if v[1]} for a, b in seen.items()}
        return seen if not any(held.values()) else None

    seen = await until(released, "every hold released after a quiet cancel-all", 15)
    for asset, each in DEPOSIT.items():
        total = sum(sum(b.get(asset, (0, 0))) for b in seen.values())
        assert total == each * UNITS[asset] * len(USERS), (asset, seen)


def test_cancel_all_every_account_of_a_symbol_under_load_leaves_every_view_consistent(
    venue: Venue,
) -> None:
    """Scenario: F1, F2 (FIX) and R1, R2 (REST) keep sending BTC-USD orders, both sides,
    several levels, and cancels; ``cancel-all --every-account --symbol BTC-USD`` runs.
    Expected: exit 0; no order acknowledged before it was sent rests after; the load stopped,
    the matcher's book, the feed's depth, REST openOrders and FIX mass status agree on what
    raced it; a quiet cancel-all then leaves nothing held and every asset's total is the
    deposits. Now: so."""

    async def scenario() -> None:
        load = Load("BTC-USD")
        traders: list[Trader] = [FixTrader(venue, "F1"), FixTrader(venue, "F2"),
                                 RestTrader(venue, "R1"), RestTrader(venue, "R2")]  # fmt: skip
        tasks = await drive(load, traders)
        try:
            await until(lambda: len(load.acked) >= 60, "60 orders acknowledged")
            sent = time.monotonic()
            code, out, err = await ringex(
                venue.profile, "admin", "cancel-all", "--every-account", "--symbol", "BTC-USD"
            )
            assert (code, out) == (0, "cancel-all every account, BTC-USD: done (orders end)\n"), err
            await asyncio.sleep(0.3)  # the load goes on: orders race it and rest
        finally:
            await stop(load, tasks)
        before = {oid for oid, (_, at) in load.acked.items() if at < sent}
        book = await live_book(venue, "BTC-USD")
        assert before and not before & set(book), sorted(before & set(book))
        await until(
            lambda: feed_shows(venue, book), f"the depth feed shows the book {levels(book)}"
        )
        for t in traders:
            mine = {oid for oid, (account, *_) in book.items() if account == t.account}
            assert await rest_open(venue, t.user, "BTC-USD") == mine, t.user
            if isinstance(t, FixTrader):
                assert set(await t.mass_status()) == mine, t.user
        await everything_released(venue)

    run(scenario())


def test_halt_under_load_refuses_orders_naming_it_takes_cancels_and_resume_surprises_none(
    venue: Venue,
) -> None:
    """Scenario: F1 and R1 keep sending ETH-USD orders and cancels; F2 holds a buy stop at
    101.00 (the load trades about 100), R1 a sell stop at 99.50; ``halt ETH-USD``; once the feed
    says HALT, the load goes on a while, R1 cancels its stop; ``resume`` and a trade at 101.00.
    Expected: every order sent after the feed said HALT is refused, naming SYMBOL_HALTED
    (FIX 103=2, REST -2010); cancels are still taken; exchangeInfo says HALT; the stop is
    still pending at the resume (nothing traded), and it triggers on the first trade at its
    price after; no refused order ever trades. Now: so."""

    async def scenario() -> None:
        load = Load("ETH-USD")
        f1, r1, f2 = FixTrader(venue, "F1"), RestTrader(venue, "R1"), FixTrader(venue, "F2")
        await asyncio.gather(f1.start(), r1.start(), f2.start())  # F2's stop next: it waits
        stop_answer = await f2._ask("stop", "D", (55, "ETH-USD"), (54, "1"), (60, _now()),
                                    (38, "0.01"), (40, "3"), (99, "101.00"), (59, "1"))  # fmt: skip
        stop_id = int(stop_answer.get(37))
        held = await r1.api.call("POST", "/api/v1/order", symbol="ETH-USD", side="SELL",
                                 quantity="0.01", type="STOP_LOSS_LIMIT", timeInForce="GTC",
                                 stopPrice="99.50", price="99.40")  # fmt: skip
        tasks = await drive(load, [f1, r1])
        try:
            await until(lambda: len(load.acked) >= 30, "30 orders acknowledged")
            code, out, err = await ringex(venue.profile, "admin", "halt", "ETH-USD")
            assert (code, out) == (0, "halt ETH-USD: sent\n"), err
            await until(lambda: status_is(venue, "HALT"), "exchangeInfo says HALT")
            since = time.monotonic()
            cancels = len(load.cancels_taken)
            await until(
                lambda: sum(at > since for at, _ in load.refused) >= 20,
                "20 orders refused under the halt",
            )
            await r1.api.call("DELETE", "/api/v1/order", symbol="ETH-USD", orderId=held["orderId"])
            load.cancels_taken.append(time.monotonic())  # the load's own come by chance
        finally:
            await stop(load, tasks)
        late = [oid for oid, (_, at) in load.acked.items() if at > since]
        assert not late, f"orders acknowledged while the feed said HALT: {late}"
        reasons = {why for at, why in load.refused if at > since}
        assert all("SYMBOL_HALTED" in why for why in reasons), reasons
        assert any(why.startswith("FIX b'2'") for why in reasons), [w[:60] for w in reasons]
        assert any("-2010" in why for why in reasons), reasons
        assert len(load.cancels_taken) > cancels, "no cancel taken under the halt"
        assert (await live_book(venue, "ETH-USD"))[stop_id].stop  # pending
        code, _, err = await ringex(venue.profile, "admin", "resume", "ETH-USD")
        assert code == 0, err
        refused_refs = {m.get(11) for m in f1.reports if m.get(39) == b"8"}
        await until(lambda: status_is(venue, "TRADING"), "exchangeInfo says TRADING")
        assert stop_id in await live_book(venue, "ETH-USD"), "the stop triggered at the resume"
        for user in ("F1", "R1"):  # the asks below 101.00 go: a trade there must be at 101
            account = str(venue.accounts[user])
            code, _, err = await ringex(
                venue.profile, "admin", "cancel-all", "--account", account, "--symbol", "ETH-USD"
            )
            assert code == 0, err
        for who, side in ((f1, "2"), (f2, "1")):  # not one account's: no self-trade
            await who._ask(f"at101-{side}", "D", (55, "ETH-USD"), (54, side), (60, _now()),
                           (38, "0.01"), (40, "2"), (44, "101.00"), (59, "1"))  # fmt: skip
        await until(lambda: gone(venue, stop_id), "the stop triggered by the trade at 101.00")
        traded = {m.get(11) for m in f1.reports if m.get(150) == b"F"}
        assert not refused_refs & traded, refused_refs & traded
        await everything_released(venue)

    run(scenario())


def test_remove_user_cancel_orders_with_orders_in_flight_on_fix_and_rest_leaves_none(
    venue: Venue,
) -> None:
    """Scenario: V1 trades BTC-USD on a FIX session and a REST key at once (a closed loop
    each, orders resting on both sides), F1 trades beside it; ``remove-user --comp-id V1
    --cancel-orders`` runs. Expected: exit 0; V1's FIX session is logged out and closed, its
    REST key answers 401; none of V1's orders rests in the matcher, the feed or F1's views;
    nothing of V1's account is held. Now: so."""

    async def scenario() -> None:
        load = Load("BTC-USD")
        v_fix, v_rest, f1 = FixTrader(venue, "V1"), RestTrader(venue, "V1"), FixTrader(venue, "F1")
        tasks = await drive(load, [v_fix, v_rest, f1])
        account = venue.accounts["V1"]
        try:
            await until(
                lambda: v_rest.open and sum(a == account for a, _ in load.acked.values()) >= 40,
                "V1's orders resting",
            )
            code, out, err = await ringex(venue.profile, "admin", "remove-user", "--comp-id", "V1",
                                           "--cancel-orders")  # fmt: skip
            assert code == 0, err
            assert f"account {account}: open orders cancelled" in out, out
            await until(v_fix.closed.is_set, "V1's FIX session closed (a moment after)", 15)
            assert 401 in v_rest.statuses
            assert [m for m in v_fix.client.received if m.get(35) == b"5"], "no Logout"
        finally:
            await stop(load, tasks)
        book = await live_book(venue, "BTC-USD")
        assert not [oid for oid, (a, *_) in book.items() if a == account], book
        assert set(await f1.mass_status()) == {
            oid for oid, (a, *_) in book.items() if a == f1.account
        }
        await until(lambda: feed_shows(venue, book), "the depth feed shows the book")
        held = {a: v for a, v in (await balances(venue, account)).items() if v[1]}
        assert not held, held
        await everything_released(venue)

    run(scenario())


def test_replay_from_start_after_the_emergencies_gives_the_live_state(venue: Venue) -> None:
    """Scenario: after the tests above (cancel-alls, a halt, a user removed, all under load),
    a few orders rest; ``ringex admin snapshot`` of the live matcher, ``balances`` of every
    account, then ``ringex replay --from-start``. Expected: the replay's matcher hash is the
    live one's, its balances the live ones. Now: so."""

    async def scenario() -> tuple[str, dict[int, dict[str, tuple[int, int]]]]:
        f2, load = FixTrader(venue, "F2"), Load("BTC-USD")
        await f2.start()
        for _ in range(6):
            await f2.step(load)
        await live_book(venue, "BTC-USD")
        latest = SnapshotStore(snapshot_dir(venue.cfg, "matcher-m1")).latest()
        assert latest is not None
        live = Matcher.restore(symbol_specs(venue.cfg, "m1"), latest[1]).state_hash()
        accounts = [*venue.accounts.values(), FEE_ACCOUNT]
        return live, {a: await balances(venue, a) for a in accounts}

    live_hash, live_balances = run(scenario(), 30)
    code, out, err = asyncio.run(ringex(venue.profile, "replay", "--from-start", "--quiet"))
    assert code == 0, err
    hashes = dict(re.findall(r"^  (router|matcher \S+)\s+([0-9a-f]+)$", out, re.M))
    assert hashes.get("matcher m1") == live_hash, out
    state = recover(venue.cfg, use_snapshot=False)
    ids = {a.name: a.id for a in venue.cfg.assets}
    replayed_balances = {
        account: {a: state.sequencer.accounts.balance(account, ids[a]) for a in shown}
        for account, shown in live_balances.items()
    }
    assert replayed_balances == live_balances
