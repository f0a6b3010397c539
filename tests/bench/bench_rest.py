"""`make bench-rest`: orders through the REST API and the same orders through FIX, one run.

```
load generator (a child process, uvloop)               the exchange (a process each)
  REST: N keep-alive HTTP/1.1 connections,  ──TCP──►  gateway ─gw1-cmd─► router ─m1-in─► matcher
        one signed request in flight each             (REST API on aiohttp      │            │
  FIX:  S sessions x N/S workers, one order           and FIX acceptor, one     │            │
        in flight per worker (N lanes too)  ◄──TCP──  uvloop loop) ◄─gw1-rep────┘◄──m1-out───┘
bench (this process): spawns the four, funds accounts and reads balances over the admin ring,
samples every process's CPU with psutil, checks the answers
```

Each lane repeats: an aggressive limit order one tick through 100.00 (the buyer's at 100.01
crosses the seller's at 99.99: orders rest or trade, partly when the sizes differ), a passive
one a point away (it rests), then the cancel of that passive one. One account only buys, the
other only sells (no self-trade); REST trades BTC-USD and FIX ETH-USD (the same matcher), so
neither path's orders fill the other's. Phases, the two paths interleaved so that the noise of
the moment hits both:

- throughput: closed loop, a lane sends its next request when the answer to the last came,
  for --seconds; the latency under saturation is recorded too;
- latency: open loop at --rate requests/s for --latency-seconds; request k is planned at
  start + k/rate and measured from then (queueing counts: no coordinated omission). A REST
  request waits for a free connection of its user (HTTP/1.1: one in flight); a cancel takes
  the oldest acknowledged passive order of its lane's user (FIX: of its session).

A REST answer is the HTTP response (the order, with the fills its command made); a FIX answer
is the first ExecutionReport for the ClOrdID (the ack 150=0, or 150=4 for a cancel).

Answer checks: every answer is right (REST: 200 and NEW/PARTIALLY_FILLED/FILLED, NEW for a
passive order, CANCELED for a cancel, executedQty >= the sum of its fills (more is counted
and shown: the answer renders the live order after later fills); FIX: ack or cancel, no
reject), none is missing, and quantity is conserved: the buyer's base asset grew by what
was traded and the seller's shrank by as much (balances from the router), where traded = the
taker fills in the REST answers, or the buy-side = the sell-side fills of the FIX reports.

Figures per phase: requests/s (new orders and cancels, 2:1), latency percentiles (HDR; in
the latency phase also the generator's own lateness), each process's CPU in % of one core
(psutil) and the rest of the machine's ("others": this box is shared, so say how much), the
gateway's CPU per request, and which side was saturated (a process at >= 85% of a core, or
the machine at >= 90%). The bench raises the REST API's per-key (default 2,000/s) and
per-address (5,000/s) rate limits, which would cap one client below the target. Target
(issue: this 2-core machine): >= 10k requests/s through REST. Writes ``var/bench/rest.json``.

--client aiohttp drives REST through ``RestClient`` instead of the hand-written client;
--profile-gateway FILE runs the gateway under cProfile (CPU time) and prints where its time
goes per REST request (with --paths rest, so that FIX work is not mixed in).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import multiprocessing as mp
import os
import platform
import pstats
import re
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgspec
import psutil
import uvloop
from hdrh.histogram import HdrHistogram

from config.schema import (
    DatabaseConfig,
    GatewayConfig,
    JournalConfig,
    MarketDataConfig,
    RestConfig,
    RingexConfig,
    RiskConfig,
)
from procs.common.records import (
    Balance,
    CreateAccount,
    Record,
    RecordCodec,
    Transfer,
    WatchBalances,
)
from procs.common.topology import (
    ADMIN_GATEWAY,
    create_rings,
    gateway_commands,
    gateway_consumer,
    gateway_replies,
    users_path,
)
from procs.common.users import UserStore
from procs.gateway.fix import Timestamps, fields, frame
from procs.gateway.rest_client import RestClient
from procs.gateway.server import GatewayServer
from procs.gateway.signing import API_KEY, RECV_WINDOW, SIGNATURE, TIMESTAMP, sign
from shm import Ring
from shm.inspect import remove_instance
from tests.bench.bench_gateway import run_matcher, run_router
from tests.bench.report import conclude

TARGET_REST_PER_S = 10_000
CODEC = RecordCodec()
USD, BTC, ETH = 1, 2, 3  # the default assets; BTC-USD and ETH-USD: 2 price, 4 qty decimals
#: Per path: the symbol, its base asset, (buyer, seller) accounts.
MARKETS = {"rest": ("BTC-USD", BTC, (101, 102)), "fix": ("ETH-USD", ETH, (201, 202))}
UNITS_PER_LOT = 10 ** (8 - 4)  # base assets have 8 decimals, quantities 4
AGGRESSIVE = ("100.01", "99.99")  # the buyer's, the seller's: each crosses the other's
PASSIVE = ("99.00", "101.00")
BUY_QTY, SELL_QTY = ("0.0100", "0.0300"), "0.0200"  # the buyer alternates: partial fills
ORDER_PATH = "/api/v1/order"
WINDOW_MS = 60_000
P = TypeVar("P", bound=asyncio.Protocol)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class Answer(NamedTuple):
    ok: bool
    status: str
    ref: Any  # what cancels the order: its orderId (REST), its ClOrdID (FIX)
    taker_lots: int  # REST: the fills the request's own command made as taker
    detail: str = ""
    ahead: bool = False  # REST: executedQty counts fills that came after the answer's fills


def lots(text: str | bytes) -> int:
    return int(Decimal(text.decode() if isinstance(text, bytes) else text) * 10**4)


# -- the exchange ----------------------------------------------------------------------------


def bench_config(instance: str, var: Path, fsync: str) -> RingexConfig:
    """The dev profile's rings and wait strategy; no database, market data or snapshots."""
    high = 1_000_000_000
    rest = RestConfig(
        port=0, key_rate_per_s=high, key_burst=high, ip_rate_per_s=high, ip_burst=high,
        login_rate_per_s=high, login_burst=1_000, recv_window_ms=WINDOW_MS,
    )  # fmt: skip
    return RingexConfig(
        instance=instance,
        var_dir=str(var),
        gateways=[GatewayConfig(name="gw1", id=1, port=0, max_messages_per_s=high, rest=rest)],
        marketdata=MarketDataConfig(enabled=False),
        database=DatabaseConfig(enabled=False),
        risk=RiskConfig(max_open_orders=10_000_000, max_commands_per_s=high),
        journal=JournalConfig(fsync=fsync, snapshot_every=0),  # type: ignore[arg-type]
    )


def run_gateway(cfg: RingexConfig, ports: Any, stop: Any, profile: str) -> None:
    """Child process: the gateway as ``procs.gateway.main`` serves it, FIX and REST on one
    uvloop loop (under cProfile, its stats written to ``profile``, when that is not empty)."""

    async def serve() -> None:
        server = GatewayServer(cfg, "gw1")
        await server.start()
        assert server.api is not None
        ports[1] = server.api.port
        ports[0] = server.port
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await server.shutdown(grace_s=0.2)

    if not profile:
        uvloop.run(serve())
        return
    # CPU time, not wall time: on a shared 2-core machine the gateway is often descheduled,
    # and wall time would charge that to whatever function happened to be running
    profiler = cProfile.Profile(time.thread_time)
    profiler.runcall(uvloop.run, serve())
    profiler.dump_stats(profile)


class Admin:
    """The bench's own line to the router: the admin gateway's rings, as `ringex admin`."""

    def __init__(self, instance: str) -> None:
        self.out = Ring.attach(instance, gateway_commands(ADMIN_GATEWAY), CODEC).producer()
        self.replies = Ring.attach(instance, gateway_replies(ADMIN_GATEWAY), CODEC).consumer(
            gateway_consumer(ADMIN_GATEWAY)
        )
        self.ref = 1 << 20

    def fund(self, accounts: list[int]) -> None:
        commands: list[Record] = []
        for account in accounts:
            commands.append(CreateAccount(0, 0, ADMIN_GATEWAY, 1, account * 10, account))
            for asset in (USD, BTC, ETH):
                ref = account * 10 + asset
                commands.append(Transfer(0, 0, ADMIN_GATEWAY, 1, ref, account, asset, 10**15, ref))
        self.out.publish_batch(commands)
        got: list[Record] = []
        deadline = time.monotonic() + 30
        while len(got) < len(commands) and time.monotonic() < deadline:
            got += self.replies.read(256)
            time.sleep(0.001)
        assert len(got) == len(commands), f"funding: {len(got)} of {len(commands)} replies"

    def holdings(self, account: int) -> dict[int, int]:
        """Free + reserved per asset, from the router (a watch with a 1 ms lease)."""
        self.ref += 1
        ref = self.ref
        self.out.publish_batch(
            [WatchBalances(0, time.time_ns(), ADMIN_GATEWAY, 0, ref, account, 1)]
        )
        held: dict[int, int] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for r in self.replies.read(256):
                if type(r) is Balance and r.client_ref == ref:
                    held[r.asset] = r.free + r.reserved
                    if r.last:
                        return held
            time.sleep(0.001)
        raise TimeoutError(f"no balance snapshot of account {account} in 10 s")

    def close(self) -> None:
        self.out.close()
        self.replies.close()


# -- lanes: one request in flight each ----------------------------------------------------------


class Lane:
    """A REST connection, or a worker on a FIX session: ``order`` and ``cancel`` send one
    request and return its answer; ``home`` is where its orders can be cancelled from."""

    user: int  # 0 buys, 1 sells
    home: object

    async def order(self, passive: bool) -> Answer:
        raise NotImplementedError

    async def cancel(self, ref: Any) -> Answer:
        raise NotImplementedError


class RestLane(Lane):
    """The request mix as REST calls; ``call`` is the HTTP client's."""

    def __init__(self, user: int, tag: str) -> None:
        self.user, self.home, self.tag, self.n = user, user, tag, 0

    async def call(self, method: str, query: str, body: bytes) -> tuple[int, Any]:
        raise NotImplementedError

    async def order(self, passive: bool) -> Answer:
        self.n += 1
        u = self.user
        body = (
            f"symbol=BTC-USD&side={'SELL' if u else 'BUY'}&type=LIMIT&timeInForce=GTC"
            f"&price={(PASSIVE if passive else AGGRESSIVE)[u]}"
            f"&quantity={SELL_QTY if u else BUY_QTY[self.n % 2]}"
            f"&newClientOrderId={self.tag}-{self.n}"
        ).encode()
        status, doc = await self.call("POST", "", body)
        if status != 200 or not isinstance(doc, dict):
            return Answer(False, f"HTTP {status}", None, 0, str(doc)[:200])
        state, fills = doc.get("status", ""), doc.get("fills", [])
        ok = state == "NEW" if passive else state in ("NEW", "PARTIALLY_FILLED", "FILLED")
        executed, filled = lots(doc["executedQty"]), sum(lots(f["qty"]) for f in fills)
        ok = ok and executed >= filled
        taker = sum(lots(f["qty"]) for f in fills if not f["isMaker"])
        why = f"orderId={doc.get('orderId')} executedQty={doc.get('executedQty')} fills={fills}"
        return Answer(ok, state, doc["orderId"], taker, "" if ok else why, executed > filled)

    async def cancel(self, ref: Any) -> Answer:
        status, doc = await self.call("DELETE", f"symbol=BTC-USD&orderId={ref}", b"")
        state = doc.get("status", "") if isinstance(doc, dict) else ""
        ok = status == 200 and state == "CANCELED"
        return Answer(ok, state or f"HTTP {status}", ref, 0, "" if ok else str(doc)[:200])


class RawHttpLane(RestLane, asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection written by hand: the cheapest honest client (signs
    every request with ``signing.sign`` as ``RestClient`` does), so the gateway is measured."""

    def __init__(self, user: int, tag: str, key: str, secret: str, host: str) -> None:
        super().__init__(user, tag)
        self.key, self.secret, self.host = key, secret, host
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        end = buf.find(b"\r\n\r\n")
        length = _CONTENT_LENGTH.search(buf, 0, end) if end >= 0 else None
        if length is None or len(buf) < end + 4 + int(length.group(1)):
            self.buf = buf
            return
        stop = end + 4 + int(length.group(1))
        self.buf = buf[stop:]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((int(buf[9:12]), buf[end + 4 : stop]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"the gateway closed the connection: {exc}"))

    async def call(self, method: str, query: str, body: bytes) -> tuple[int, Any]:
        now = time.time_ns() // 1_000_000
        signature = sign(self.secret, now, WINDOW_MS, method, ORDER_PATH, query, body)
        head = (
            f"{method} {ORDER_PATH}{'?' if query else ''}{query} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"{API_KEY}: {self.key}\r\n{TIMESTAMP}: {now}\r\n{RECV_WINDOW}: {WINDOW_MS}\r\n"
            f"{SIGNATURE}: {signature}\r\n"
        )
        if body:
            head += "Content-Type: application/x-www-form-urlencoded\r\n"
            head += f"Content-Length: {len(body)}\r\n"
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(head.encode() + b"\r\n" + body)
        status, raw = await self.waiter
        return status, msgspec.json.decode(raw) if raw else None


class AiohttpLane(RestLane):
    """The same calls through ``RestClient`` (aiohttp's client): what a Python user runs."""

    def __init__(self, user: int, tag: str, api: RestClient) -> None:
        super().__init__(user, tag)
        self.api = api

    async def call(self, method: str, query: str, body: bytes) -> tuple[int, Any]:
        pairs = (p.partition("=") for p in (query or body.decode()).split("&"))
        params: dict[str, Any] = {name: value for name, _, value in pairs}
        return await self.api.request(method, ORDER_PATH, **params)


class FixSession(asyncio.Protocol):
    """One FIX session: sends orders for its workers and resolves each worker's wait on the
    first report for its ClOrdID; counts every fill by side (LastQty)."""

    def __init__(self, comp_id: str, user: int) -> None:
        self.comp_id, self.user = comp_id, user
        self.seq = 1
        self.times = Timestamps()
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.pending: dict[bytes, asyncio.Future[Answer]] = {}
        self.fill_lots = [0, 0]  # buy, sell
        self.problems: list[str] = []
        self.logged_on: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def send(self, msg_type: bytes, *pairs: tuple[int, bytes | str | int]) -> None:
        stamp = self.times.format(time.time_ns())
        body = fields(
            (35, msg_type), (49, self.comp_id), (56, "RINGEX"), (34, self.seq), (52, stamp),
            *pairs,
        )  # fmt: skip
        self.seq += 1
        assert self.transport is not None
        self.transport.write(frame(body))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        start = 0
        while (end := buf.find(b"\x0110=", start)) >= 0 and (
            stop := buf.find(b"\x01", end + 4)
        ) > 0:
            pairs = (p.partition(b"=") for p in buf[start:stop].split(b"\x01"))
            self.message({tag: value for tag, _, value in pairs})
            start = stop + 1
        self.buf = buf[start:]

    def message(self, f: dict[bytes, bytes]) -> None:
        kind = f[b"35"]
        if kind == b"8":
            exec_type = f[b"150"]
            if exec_type == b"F":
                self.fill_lots[f[b"54"] == b"2"] += lots(f[b"32"])
            future = self.pending.pop(f[b"11"], None)
            if future is not None and not future.done():
                ok = exec_type in (b"0", b"4", b"F")
                detail = "" if ok else f"150={exec_type.decode()} {f.get(b'58', b'').decode()}"
                future.set_result(Answer(ok, exec_type.decode(), f[b"11"], 0, detail))
        elif kind == b"9":
            future = self.pending.pop(f[b"11"], None)
            if future is not None and not future.done():
                future.set_result(Answer(False, "9", None, 0, f.get(b"58", b"").decode()))
        elif kind == b"A" and not self.logged_on.done():
            self.logged_on.set_result(None)
        elif kind == b"1":
            self.send(b"0", (112, f.get(b"112", b"")))
        elif kind in (b"3", b"5", b"j"):
            self.problems.append(f"35={kind.decode()} {f.get(b'58', b'').decode()}")

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"session {self.comp_id} closed: {exc}"))


class FixLane(Lane):
    def __init__(self, session: FixSession, tag: str) -> None:
        self.session = self.home = session
        self.user, self.tag, self.n = session.user, tag, 0

    async def request(self, msg_type: bytes, *pairs: tuple[int, bytes | str | int]) -> Answer:
        self.n += 1
        cl_ord_id = b"%s-%d" % (self.tag.encode(), self.n)
        s = self.session
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        s.pending[cl_ord_id] = future
        s.send(msg_type, (11, cl_ord_id), (55, "ETH-USD"), (54, ("1", "2")[self.user]), *pairs,
               (60, s.times.format(time.time_ns())))  # fmt: skip
        return await future

    async def order(self, passive: bool) -> Answer:
        u = self.user
        answer = await self.request(
            b"D", (38, SELL_QTY if u else BUY_QTY[self.n % 2]), (40, "2"), (59, "1"),
            (44, (PASSIVE if passive else AGGRESSIVE)[u]),
        )  # fmt: skip
        return answer._replace(ok=answer.ok and (answer.status == "0" or not passive))

    async def cancel(self, ref: Any) -> Answer:
        answer = await self.request(b"F", (41, ref))
        return answer._replace(ok=answer.ok and answer.status == "4")


# -- the load generator (a child process per phase) ---------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.hist = HdrHistogram(1, 60_000_000, 3)  # us
        self.lag = HdrHistogram(1, 60_000_000, 3)  # the generator's own lateness, open loop
        self.ops: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.errors: list[str] = []
        self.taker_lots = self.ahead = 0
        self.start_ns = self.end_ns = 0

    def record(self, kind: str, t0_ns: int, answer: Answer) -> None:
        self.end_ns = now = time.perf_counter_ns()
        self.hist.record_value(max(1, (now - t0_ns) // 1000))
        self.ops[kind] += 1
        self.statuses[answer.status] += 1
        self.taker_lots += answer.taker_lots
        self.ahead += answer.ahead
        if not answer.ok:
            self.errors.append(f"{kind} {answer.status} {answer.detail}")


async def closed_loop(lanes: list[Lane], seconds: float, stats: Stats) -> int:
    """Every lane as fast as its answers come; returns the lanes left without an answer."""
    clock = time.perf_counter_ns
    stats.start_ns = clock()
    deadline = stats.start_ns + int(seconds * 1e9)

    async def run(lane: Lane) -> None:
        while clock() < deadline:
            t = clock()
            stats.record("new", t, await lane.order(False))
            t = clock()
            placed = await lane.order(True)
            stats.record("new", t, placed)
            if placed.ok:
                t = clock()
                stats.record("cancel", t, await lane.cancel(placed.ref))

    tasks = [asyncio.ensure_future(run(lane)) for lane in lanes]
    done, missing = await asyncio.wait(tasks, timeout=seconds + 30)
    for task in missing:
        task.cancel()
    for task in done:
        if task.exception() is not None:
            stats.errors.append(repr(task.exception()))
    return len(missing)


async def open_loop(lanes: list[Lane], rate: float, seconds: float, stats: Stats) -> int:
    """Request k at start + k/rate, whatever came back; returns the requests left unanswered."""
    clock = time.perf_counter_ns
    free: dict[int, asyncio.Queue[Lane]] = {0: asyncio.Queue(), 1: asyncio.Queue()}
    for lane in lanes:
        free[lane.user].put_nowait(lane)
    resting: defaultdict[object, deque[Any]] = defaultdict(deque)

    async def one(k: int, planned: int) -> None:
        stats.lag.record_value(max(1, (clock() - planned) // 1000))
        lane = await free[k % 2].get()
        try:
            queue = resting[lane.home]
            if (k // 2) % 3 == 2 and queue:
                stats.record("cancel", planned, await lane.cancel(queue.popleft()))
                return
            passive = (k // 2) % 3 != 0
            answer = await lane.order(passive)
            stats.record("new", planned, answer)
            if passive and answer.ok:
                queue.append(answer.ref)
        finally:
            free[k % 2].put_nowait(lane)

    interval = 1e9 / rate
    stats.start_ns = start = clock() + 10_000_000
    tasks = []
    for k in range(int(rate * seconds)):
        planned = start + int(k * interval)
        if planned > clock():
            await asyncio.sleep((planned - clock()) / 1e9)
        tasks.append(asyncio.ensure_future(one(k, planned)))
    done, missing = await asyncio.wait(tasks, timeout=30)
    for task in missing:
        task.cancel()
    for task in done:
        if task.exception() is not None:
            stats.errors.append(repr(task.exception()))
    return len(missing)


async def connect(protocol: P, port: int) -> P:
    await asyncio.get_running_loop().create_connection(lambda: protocol, "127.0.0.1", port)
    return protocol


async def generate(spec: dict[str, Any], pipe: Connection) -> dict[str, Any]:
    n, tag, port = spec["lanes"], spec["tag"], spec["port"]
    lanes: list[Lane] = []
    sessions: list[FixSession] = []
    clients: list[RestClient] = []
    if spec["path"] == "fix":
        for k, comp_id in enumerate(spec["comp_ids"]):
            session = await connect(FixSession(comp_id, k % 2), port)
            session.send(b"A", (98, 0), (108, 30), (141, "Y"), (554, "pw"))
            await asyncio.wait_for(session.logged_on, 10)
            sessions.append(session)
        lanes = [FixLane(sessions[k % len(sessions)], f"{tag}{k}") for k in range(n)]
    elif spec["client"] == "aiohttp":
        for key, secret in spec["keys"]:
            api = RestClient(f"http://127.0.0.1:{port}", connections=n)
            api.api_key, api.secret, api.recv_window_ms = key, secret, WINDOW_MS
            clients.append(api)
        lanes = [AiohttpLane(k % 2, f"{tag}{k}", clients[k % 2]) for k in range(n)]
    else:
        host = f"127.0.0.1:{port}"
        for k in range(n):
            key, secret = spec["keys"][k % 2]
            lanes.append(await connect(RawHttpLane(k % 2, f"{tag}{k}", key, secret, host), port))
    pipe.send("ready")
    pipe.recv()  # go: nothing is in flight, so blocking the loop here costs nothing
    stats = Stats()
    if spec["phase"] == "throughput":
        missing = await closed_loop(lanes, spec["seconds"], stats)
    else:
        missing = await open_loop(lanes, spec["rate"], spec["seconds"], stats)
    pipe.send("done")  # the bench samples CPU now, before the wind-down
    await asyncio.sleep(0.2)  # the fill reports that follow the last acks
    for s in sessions:
        stats.errors += s.problems
        assert s.transport is not None
        s.transport.close()
    for each in lanes:
        if isinstance(each, RawHttpLane) and each.transport is not None:
            each.transport.close()
    for api in clients:
        await api.close()
    elapsed = (stats.end_ns - stats.start_ns) / 1e9
    h, lag = stats.hist, stats.lag
    return {
        "requests": sum(stats.ops.values()), "new": stats.ops["new"],
        "cancels": stats.ops["cancel"], "missing": missing, "errors": len(stats.errors),
        "error_samples": stats.errors[:5], "elapsed_s": elapsed,
        "per_s": sum(stats.ops.values()) / elapsed if elapsed > 0 else 0.0,
        "p50_us": h.get_value_at_percentile(50), "p99_us": h.get_value_at_percentile(99),
        "p999_us": h.get_value_at_percentile(99.9), "max_us": h.get_max_value(),
        "generator_lag_p50_us": lag.get_value_at_percentile(50) if lag.total_count else 0,
        "generator_lag_p99_us": lag.get_value_at_percentile(99) if lag.total_count else 0,
        "statuses": dict(stats.statuses), "taker_lots": stats.taker_lots,
        "answers_ahead_of_their_fills": stats.ahead,
        "fill_lots": [sum(s.fill_lots[i] for s in sessions) for i in (0, 1)],
    }  # fmt: skip


def load_process(spec: dict[str, Any], pipe: Connection) -> None:
    """Child process: one phase's load generator (its CPU is its own, not the bench's)."""
    try:
        pipe.send(uvloop.run(generate(spec, pipe)))
    except BaseException as exc:
        pipe.send({"failed": repr(exc)})
        raise


# -- the bench ---------------------------------------------------------------------------------


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def run_phase(ctx: Any, spec: dict[str, Any], procs: dict[str, psutil.Process]) -> dict[str, Any]:
    parent, child = ctx.Pipe()
    load = ctx.Process(target=load_process, args=(spec, child), name="load")
    load.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the load generator did not connect in 60 s")
        ready = parent.recv()
        if ready != "ready":
            raise RuntimeError(f"the load generator failed: {ready}")
        watched = {**procs, "client": psutil.Process(load.pid)}
        before = {name: cpu_s(p) for name, p in watched.items()}
        machine = psutil.cpu_times()
        wall = time.perf_counter()
        parent.send("go")
        if not parent.poll(spec["seconds"] + 90):
            raise RuntimeError("the load generator did not finish")
        done = parent.recv()
        wall = time.perf_counter() - wall
        cpu = {name: 100 * (cpu_s(p) - before[name]) / wall for name, p in watched.items()}
        now = psutil.cpu_times()
        result: dict[str, Any] = parent.recv() if done == "done" else done
        if "failed" in result:
            raise RuntimeError(f"the load generator failed: {result['failed']}")
        total = sum(now) - sum(machine)
        idle = (now.idle + now.iowait) - (machine.idle + machine.iowait)
        cores = psutil.cpu_count() or 1
        busy = 100 * cores * (total - idle) / total if total else 0.0
        steal = getattr(now, "steal", 0.0) - getattr(machine, "steal", 0.0)
        result["cpu_pct"] = {name: round(v, 1) for name, v in cpu.items()}
        result["cpu_pct"]["others"] = round(max(0.0, busy - sum(cpu.values())), 1)
        result["machine_busy_pct"] = round(busy, 1)
        result["steal_pct"] = round(100 * cores * steal / total if total else 0.0, 1)
        gw_cpu_s = cpu["gateway"] * wall / 100
        result["gateway_cpu_us_per_request"] = (
            1e6 * gw_cpu_s / result["requests"] if result["requests"] else 0.0
        )
        result["saturated"] = verdict(result["cpu_pct"], busy, cores)
    finally:
        load.join(15)
        if load.is_alive():
            load.kill()
    return result


def verdict(cpu: dict[str, float], busy: float, cores: int) -> str:
    hot = [f"{name} {cpu[name]:.0f}%" for name in ("gateway", "client") if cpu[name] >= 85]
    if busy >= 90 * cores:
        return f"machine ({busy:.0f}% of {cores * 100}%)" + (f"; {', '.join(hot)}" if hot else "")
    return ", ".join(hot) if hot else "none"


def profile_report(path: str, requests: int, top: int) -> list[dict[str, Any]]:
    """Where the gateway's CPU goes under REST load: each function's share of the profiled
    time, in its own code (self) and with what it calls (cum), and its calls per request.
    Shares, not microseconds: cProfile's own cost per call inflates small, frequent calls."""
    raw: dict[Any, Any] = pstats.Stats(path).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    rows = []
    for (file, line, name), (_cc, calls, self_s, cum_s, _callers) in raw.items():
        short = re.sub(r".*/(site-packages|lib/python3\.\d+)/", "", file)
        rows.append({
            "function": f"{short.replace(str(Path.cwd()) + '/', '')}:{line}({name})",
            "self_pct": 100 * self_s / total, "cum_pct": 100 * cum_s / total,
            "calls_per_request": calls / requests,
        })  # fmt: skip
    by_self = sorted(rows, key=lambda r: -r["self_pct"])[:top]
    ours = [r for r in rows if r["function"].startswith(("procs/", "shm/"))]
    by_cum = sorted(ours, key=lambda r: -r["cum_pct"])[:top]
    print(f"\ngateway profile (CPU time): {1e6 * total / requests:,.0f} us per REST request with "
          f"cProfile's overhead, {requests:,} requests; share of it:")  # fmt: skip
    for title, table in (("self time", by_self), ("cumulative, ringex code", by_cum)):
        print(f"  top {title}: {'self %':>11} {'cum %':>6} {'calls':>6}")
        for r in table:
            print(f"    {r['function'][:70]:70} {r['self_pct']:6.1f} {r['cum_pct']:6.1f} "
                  f"{r['calls_per_request']:6.2f}")  # fmt: skip
    return by_self + [r for r in by_cum if r not in by_self]


async def login(port: int) -> list[tuple[str, str]]:
    keys = []
    for user in ("RA", "RB"):
        async with RestClient(f"http://127.0.0.1:{port}") as api:
            await api.login(user, "pw")
            keys.append((api.api_key, api.secret))
    return keys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=32, help="lanes per path (even)")
    ap.add_argument("--fix-sessions", type=int, default=4, help="FIX sessions (even)")
    ap.add_argument("--seconds", type=float, default=8.0, help="throughput phase, each path")
    ap.add_argument("--rate", type=float, default=1_000, help="latency phase, requests/s")
    ap.add_argument("--latency-seconds", type=float, default=5.0)
    ap.add_argument("--paths", default="rest,fix", help="rest, fix or both")
    ap.add_argument("--client", default="raw", choices=["raw", "aiohttp"], help="REST client")
    ap.add_argument("--fsync", default="batch", choices=["batch", "interval", "none"])
    ap.add_argument("--out", default="var/bench/rest.json")
    ap.add_argument("--profile-gateway", default="", help="write the gateway's cProfile here")
    args = ap.parse_args()
    paths = [p for p in ("rest", "fix") if p in args.paths.split(",")]
    lanes = max(2, args.connections // 2 * 2)
    sessions = max(2, min(lanes, args.fix_sessions) // 2 * 2)
    print(f"bench-rest: python {platform.python_version()}, {os.cpu_count()} cpus, load "
          f"{os.getloadavg()[0]:.2f}; {lanes} lanes per path (REST: {args.client} client; FIX: "
          f"{sessions} sessions), fsync={args.fsync}")  # fmt: skip

    instance = f"benchrest{os.getpid()}"
    var = Path(tempfile.mkdtemp(prefix="bench-rest-"))
    cfg = bench_config(instance, var, args.fsync)
    made = create_rings(cfg, CODEC)
    users = UserStore(users_path(cfg))
    comp_ids = [f"F{k}" for k in range(sessions)]
    for name, account in (("RA", 101), ("RB", 102), *((c, (201, 202)[k % 2]) for k, c in
                                                        enumerate(comp_ids))):  # fmt: skip
        users.add(name, "pw", account, n=1 << 4)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    ports = ctx.Array("i", 2)
    children = [
        ctx.Process(target=run_router, args=(cfg, stop), name="router"),
        ctx.Process(target=run_matcher, args=(cfg, stop), name="matcher"),
        ctx.Process(target=run_gateway, args=(cfg, ports, stop, args.profile_gateway),
                    name="gateway"),
    ]  # fmt: skip
    admin = Admin(instance)
    results: list[dict[str, Any]] = []
    checks: dict[str, bool] = {}
    try:
        children[0].start()
        children[1].start()
        admin.fund([101, 102, 201, 202])
        children[2].start()
        deadline = time.monotonic() + 30
        while not ports[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ports[0], "the gateway did not start"
        keys = asyncio.run(login(ports[1]))
        procs = {p.name: psutil.Process(p.pid) for p in children}
        for phase in ("throughput", "latency"):
            for path in paths:
                symbol, base, (buyer, seller) = MARKETS[path]
                before = [admin.holdings(a).get(base, 0) for a in (buyer, seller)]
                spec = {
                    "path": path, "phase": phase, "lanes": lanes, "tag": phase[0],
                    "port": ports[1] if path == "rest" else ports[0], "keys": keys,
                    "comp_ids": comp_ids, "client": args.client, "rate": args.rate,
                    "seconds": args.seconds if phase == "throughput" else args.latency_seconds,
                }  # fmt: skip
                row = run_phase(ctx, spec, procs)
                after = [admin.holdings(a).get(base, 0) for a in (buyer, seller)]
                bought, sold = after[0] - before[0], before[1] - after[1]
                row |= {"name": f"{path} {phase}", "path": path, "phase": phase,
                        "symbol": symbol, "base_bought": bought, "base_sold": sold}  # fmt: skip
                traded = row["taker_lots"] if path == "rest" else row["fill_lots"][0]
                checks[f"{path} {phase}: every answer right, none missing"] = (
                    row["errors"] == 0 and row["missing"] == 0 and row["requests"] > 0
                )
                checks[f"{path} {phase}: bought = sold = traded"] = (
                    bought == sold == traded * UNITS_PER_LOT
                    and (path == "rest" or row["fill_lots"][0] == row["fill_lots"][1])
                )
                results.append(row)
                print_row(row)
    finally:
        stop.set()
        for p in children:
            p.join(15)
            if p.is_alive():
                p.kill()
        admin.close()
        for ring in made.values():
            ring.close()
        remove_instance(instance)
        shutil.rmtree(var, ignore_errors=True)
    return finish(args, results, checks, lanes, sessions)


def print_row(row: dict[str, Any]) -> None:
    cpu, lag = row["cpu_pct"], row["phase"] == "latency"
    print(
        f"  {row['name']:16} {row['per_s']:>8,.0f} req/s ({row['new']:,} orders, "
        f"{row['cancels']:,} cancels, {row['statuses'].get('FILLED', 0):,} filled at once)  "
        f"p50 {row['p50_us']:,} us  p99 {row['p99_us']:,} us  p99.9 {row['p999_us']:,} us"
        + (f"  (generator lag p99 {row['generator_lag_p99_us']:,} us)" if lag else "")
    )
    print(
        f"  {'':16} CPU gateway {cpu['gateway']:.0f}% client {cpu['client']:.0f}% router "
        f"{cpu['router']:.0f}% matcher {cpu['matcher']:.0f}% others {cpu['others']:.0f}% "
        f"(steal {row['steal_pct']:.0f}%); gateway {row['gateway_cpu_us_per_request']:.0f} us "
        f"CPU/request; saturated: {row['saturated']}; errors {row['errors']}"
        + (f" e.g. {row['error_samples'][:2]}" if row["errors"] else "")
    )
    if row.get("answers_ahead_of_their_fills"):
        print(
            f"  {'':16} {row['answers_ahead_of_their_fills']:,} answers with executedQty above "
            "the sum of their fills (later fills of the live order, rendered after the answer)"
        )


def finish(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    checks: dict[str, bool],
    lanes: int,
    sessions: int,
) -> int:
    by = {r["name"]: r for r in results}
    rest, fix = by.get("rest throughput"), by.get("fix throughput")
    missed: list[str] = []
    summary: dict[str, Any] = {"target_rest_requests_per_s": TARGET_REST_PER_S}
    print()
    if rest is not None:
        met = rest["per_s"] >= TARGET_REST_PER_S
        summary |= {"rest_requests_per_s": rest["per_s"], "target_met": met}
        print(f"REST {rest['per_s']:,.0f} requests/s ({rest['new'] / rest['elapsed_s']:,.0f} "
              f"orders/s + cancels): target >= {TARGET_REST_PER_S:,} "
              f"{'met' if met else 'NOT met'}")  # fmt: skip
        if not met:
            missed.append(f"REST {rest['per_s']:,.0f} requests/s < {TARGET_REST_PER_S:,}")
    if rest is not None and fix is not None:
        ratio = rest["per_s"] / fix["per_s"]
        cost = rest["gateway_cpu_us_per_request"] / fix["gateway_cpu_us_per_request"]
        summary |= {"fix_requests_per_s": fix["per_s"], "rest_over_fix": ratio,
                    "rest_over_fix_gateway_cpu_per_request": cost}  # fmt: skip
        print(f"FIX  {fix['per_s']:,.0f} requests/s; REST/FIX = {ratio:.2f}x throughput, "
              f"{cost:.1f}x gateway CPU per request")  # fmt: skip
    for path in ("rest", "fix"):
        lat = by.get(f"{path} latency")
        if lat is not None:
            print(f"{path.upper():4} at {args.rate:,.0f}/s planned: p50 {lat['p50_us']:,} us, "
                  f"p99 {lat['p99_us']:,} us, p99.9 {lat['p999_us']:,} us")  # fmt: skip
    doc = {
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(),
                 "load_1m_after": os.getloadavg()[0]},
        "settings": {"lanes": lanes, "fix_sessions": sessions, "client": args.client,
                     "seconds": args.seconds, "rate": args.rate,
                     "latency_seconds": args.latency_seconds, "fsync": args.fsync},
        "summary": summary,
        "results": results,
    }  # fmt: skip
    if args.profile_gateway:
        requests = sum(r["requests"] for r in results if r["path"] == "rest")
        if requests and Path(args.profile_gateway).exists():
            doc["gateway_profile_per_rest_request"] = profile_report(
                args.profile_gateway, requests, 25
            )
    return conclude(args.out, doc, checks, missed)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
