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
  for --seconds, in --rounds rounds (3; the paths take turns) of which the median one is
  reported, with every round's figure; the latency under saturation is recorded too. 64
  lanes per path by default: with 32 the gateway waited on the round trip for about a
  tenth of its time (88-92% busy, 7.8k REST requests/s), so the figure was the round
  trip's, not the gateway's capacity; with 64 it is busy (94-97%) and its CPU per request
  falls (115 -> 95 us: more requests per ring batch, log write and wake-up). Both paths get
  the same lanes;
- latency: open loop at --rate requests/s for --latency-seconds; request k is planned at
  start + k/rate and measured from then (queueing counts: no coordinated omission). A REST
  request waits for a free connection of its user (HTTP/1.1: one in flight); a cancel takes
  the oldest acknowledged passive order of its lane's user (FIX: of its session).

A REST answer is the HTTP response (the order, with the fills its command made); a FIX answer
is the first ExecutionReport for the ClOrdID (the ack 150=0, or 150=4 for a cancel).

Answer checks: every answer is right (REST: 200 and NEW/PARTIALLY_FILLED/FILLED, NEW for a
passive order, CANCELED for a cancel, executedQty >= the sum of its fills (more is counted
and shown: the answer renders the live order after later fills); FIX: ack or cancel, no
reject, no second ack of an order, whenever it comes), none is missing, and quantity is
conserved: the buyer's base asset grew by what was traded and the seller's shrank by as much
(balances from the router), where traded = the taker fills in the REST answers, or the
buy-side = the sell-side fills of the FIX reports.

Figures per phase: requests/s (new orders and cancels, 2:1), latency percentiles (HDR; in
the latency phase also the generator's own lateness), each process's CPU in % of one core
(psutil) and the rest of the machine's ("others": this box is shared, so say how much), the
gateway's CPU per request, and which side was saturated (a process at >= 85% of a core, or
the machine at >= 90%). The bench raises the REST API's per-key (default 2,000/s) and
per-address (5,000/s) rate limits, which would cap one client below the target. Target
(issue 10, this 2-core machine): >= 10k new orders/s through REST (the cancels not counted).
Writes ``var/bench/rest.json``.

--mix crossing sends new orders alone, every one an aggressive limit order through the touch
(the default mix, "orders", is the cycle above): the figure for "orders/s" read as new
orders, each of which trades, and the gateway's dearest request (the fills of both sides,
maker and taker, are its own). The target is judged on the figure either way.

--client aiohttp drives REST through ``RestClient`` instead of the hand-written client;
--profile-gateway FILE runs the gateway under cProfile (CPU time) and prints where its time
goes per REST request (with --paths rest, so that FIX work is not mixed in). --gateways N runs
N gateway processes sharing the FIX and REST ports (``reuse_port``): "gateway" is then their
CPU summed, each one's in ``gateways_cpu_pct``, and the verdict names each one at >= 85%.
--pin gives each gateway a CPU of its own, as a venue pins it (``pin_plan``: on two CPUs the
router, the matcher and the load generator share the other).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from config.edges import GatewayConfig, MarketDataConfig, RestConfig
from config.schema import DatabaseConfig, JournalConfig, RingexConfig, RiskConfig
from procs.common.journal_writer import FSYNC_POLICIES
from procs.common.record_codec import RecordCodec
from procs.common.records import Balance, CreateAccount, Record, Transfer, WatchBalances
from procs.common.topology import (
    ADMIN_GATEWAY,
    create_rings,
    gateway_commands,
    gateway_consumer,
    gateway_replies,
    users_path,
)
from procs.common.users import UserStore
from procs.gateway.rest_client import RestClient
from procs.gateway.rest_params import MAX_BATCH_ORDERS
from procs.gateway.server import GatewayServer
from shm import Ring
from shm.inspect import remove_instance
from tests.bench.bench_gateway import run_matcher, run_router, serve_gateway
from tests.bench.fix_load import free_port
from tests.bench.rest_load import (
    BTC,
    ETH,
    MARKETS,
    MIXES,
    UNITS_PER_LOT,
    USD,
    WINDOW_MS,
    load_process,
)
from tests.bench.rest_report import (
    finish,
    median_round,
    print_row,
)

CODEC = RecordCodec()
# -- the exchange ----------------------------------------------------------------------------


def bench_config(instance: str, var: Path, fsync: str, gateways: int = 1) -> RingexConfig:
    """The dev profile's rings and wait strategy; no database, market data or snapshots.
    Several gateways share a FIX port and a REST port (``reuse_port``: the kernel spreads
    the connections over them)."""
    high = 1_000_000_000
    shared = gateways > 1
    fix_port = rest_port = 0
    while shared and fix_port == rest_port:  # two ports, not one found twice
        fix_port, rest_port = free_port(), free_port()
    rest = RestConfig(
        port=rest_port, key_rate_per_s=high, key_burst=high, ip_rate_per_s=high,
        ip_burst=high, login_rate_per_s=high, login_burst=1_000, recv_window_ms=WINDOW_MS,
    )  # fmt: skip

    def gateway(k: int) -> GatewayConfig:
        return GatewayConfig(
            name=f"gw{k}", id=k, port=fix_port, reuse_port=shared, max_messages_per_s=high,
            rest=rest,
        )  # fmt: skip

    return RingexConfig(
        instance=instance,
        var_dir=str(var),
        gateways=[gateway(k) for k in range(1, gateways + 1)],
        marketdata=MarketDataConfig(enabled=False),
        database=DatabaseConfig(enabled=False),
        risk=RiskConfig(max_open_orders=10_000_000, max_commands_per_s=high),
        journal=JournalConfig(fsync=fsync, snapshot_every=0),  # type: ignore[arg-type]
    )


def run_gateway(cfg: RingexConfig, ports: Any, stop: Any, profile: str, name: str) -> None:
    """Child process: the gateway ``name``, FIX and REST on one uvloop loop; its ports go to
    ``ports`` (FIX, REST; the gateways that share them write the same)."""

    def started(server: GatewayServer) -> None:
        assert server.api is not None
        ports[1] = server.api.port
        ports[0] = server.port

    serve_gateway(cfg, started, stop, profile, name)


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


# -- the bench ---------------------------------------------------------------------------------


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def pin_plan(names: list[str], cpus: list[int]) -> dict[str, list[int]]:
    """``--pin``: each gateway a CPU of its own, as a venue pins it, from the last CPUs; the
    router, the matcher and the load generator (the bench beside it: it only samples) take
    turns on the rest. With no CPU left over (two CPUs, two gateways), everything else shares
    the first and the gateways take turns on the others. On two CPUs and one gateway: the
    gateway on one, the rest (about 65% of a core here) on the other."""
    gateways = [n for n in names if n.startswith("gateway")]
    others = [n for n in names if n not in gateways] + ["client"]
    if len(cpus) < 2:
        return {}
    spare = len(cpus) - len(gateways)
    shared, own = (cpus[:spare], cpus[spare:]) if spare >= 1 else (cpus[:1], cpus[1:])
    plan = {name: [shared[k % len(shared)]] for k, name in enumerate(others)}
    plan["bench"] = plan["client"]
    return plan | {name: [own[k % len(own)]] for k, name in enumerate(gateways)}


def pin(proc: psutil.Process, cpus: list[int]) -> None:
    """``proc`` and every thread it has on ``cpus`` (an affinity is a thread's: a thread
    started before, a default executor's, would keep every CPU)."""
    for thread in proc.threads():
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(thread.id, cpus)


def run_phase(
    ctx: Any,
    spec: dict[str, Any],
    procs: dict[str, psutil.Process],
    pins: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    parent, child = ctx.Pipe()
    load = ctx.Process(target=load_process, args=(spec, child), name="load")
    load.start()
    if pins:
        pin(psutil.Process(load.pid), pins["client"])
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
        gateways = {name: v for name, v in cpu.items() if name.startswith("gateway")}
        if len(gateways) > 1:  # "gateway": all of them; each one's too, for the verdict
            result["gateways_cpu_pct"] = [round(v, 1) for v in gateways.values()]
            for name in gateways:
                del cpu[name]
            cpu["gateway"] = sum(gateways.values())
        result["cpu_pct"] = {name: round(v, 1) for name, v in cpu.items()}
        result["cpu_pct"]["others"] = round(max(0.0, busy - sum(cpu.values())), 1)
        result["machine_busy_pct"] = round(busy, 1)
        result["steal_pct"] = round(100 * cores * steal / total if total else 0.0, 1)
        gw_cpu_s = cpu["gateway"] * wall / 100
        result["gateway_cpu_us_per_request"] = (
            1e6 * gw_cpu_s / result["requests"] if result["requests"] else 0.0
        )
        result["saturated"] = verdict(
            result["cpu_pct"], busy, cores, result.get("gateways_cpu_pct")
        )
    finally:
        load.join(15)
        if load.is_alive():
            load.kill()
    return result


def verdict(
    cpu: dict[str, float], busy: float, cores: int, gateways: list[float] | None = None
) -> str:
    """What held the figure: a process at >= 85% of a core (each gateway on its own), or
    the machine at >= 90%."""
    each = [("gateway" if not gateways else f"gateway{k + 1}", v)
            for k, v in enumerate(gateways or [cpu["gateway"]])]  # fmt: skip
    hot = [f"{name} {v:.0f}%" for name, v in [*each, ("client", cpu["client"])] if v >= 85]
    if busy >= 90 * cores:
        return f"machine ({busy:.0f}% of {cores * 100}%)" + (f"; {', '.join(hot)}" if hot else "")
    return ", ".join(hot) if hot else "none"


async def login(port: int) -> list[tuple[str, str]]:
    keys = []
    for user in ("RA", "RB"):
        async with RestClient(f"http://127.0.0.1:{port}") as api:
            await api.login(user, "pw")
            keys.append((api.api_key, api.secret))
    return keys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=64, help="lanes per path (even)")
    ap.add_argument("--fix-sessions", type=int, default=4, help="FIX sessions (even)")
    ap.add_argument("--seconds", type=float, default=5.0, help="throughput round, each path")
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds, paths interleaved")
    ap.add_argument("--rate", type=float, default=1_000, help="latency phase, requests/s")
    ap.add_argument("--latency-seconds", type=float, default=5.0)
    ap.add_argument("--paths", default="rest,fix", help="rest, fix, or both: rest,fix")
    ap.add_argument("--client", default="raw", choices=["raw", "aiohttp"], help="REST client")
    ap.add_argument("--fsync", default="batch", choices=list(FSYNC_POLICIES))
    ap.add_argument(
        "--mix", default="orders", choices=MIXES,
        help="orders: 2 new orders and a cancel; crossing: new orders alone, each one trading",
    )  # fmt: skip
    ap.add_argument(
        "--batch", type=int, default=1,
        help=f"REST orders a POST batchOrders, 1..{MAX_BATCH_ORDERS} (even with --mix orders: "
        "half passive, cancelled in a DELETE batchOrders)",
    )  # fmt: skip
    ap.add_argument("--out", default="var/bench/rest.json")
    ap.add_argument("--profile-gateway", default="", help="write the gateway's cProfile here")
    ap.add_argument(
        "--gateways", type=int, default=1,
        help="gateway processes sharing the FIX and REST ports (reuse_port)",
    )  # fmt: skip
    ap.add_argument(
        "--pin", action="store_true",
        help="each gateway on a CPU of its own (the last ones); router, matcher and load "
        "take turns on the rest",
    )  # fmt: skip
    args = ap.parse_args()
    wanted = set(args.paths.split(","))
    if not wanted or not wanted <= {"rest", "fix"}:
        ap.error(f"--paths {args.paths!r}: a comma list of rest and fix")
    paths = [p for p in ("rest", "fix") if p in wanted]
    if args.rounds < 1:
        ap.error(f"--rounds {args.rounds}: at least 1")
    odd = args.batch > 1 and args.batch % 2 == 1  # the orders mix pairs its batch's orders
    if not 1 <= args.batch <= MAX_BATCH_ORDERS or (odd and args.mix == "orders"):
        ap.error(f"--batch {args.batch}: 1..{MAX_BATCH_ORDERS}, even with --mix orders")
    if not 1 <= args.gateways <= 8:
        ap.error(f"--gateways {args.gateways}: 1 to 8")
    if args.gateways > 1 and args.profile_gateway:
        ap.error("--profile-gateway profiles one gateway: leave --gateways at 1")
    lanes = max(2, args.connections // 2 * 2)
    sessions = max(2, min(lanes, args.fix_sessions) // 2 * 2)
    print(f"bench-rest: python {platform.python_version()}, {os.cpu_count()} cpus, load "
          f"{os.getloadavg()[0]:.2f}; {lanes} lanes per path (REST: {args.client} client; FIX: "
          f"{sessions} sessions), mix {args.mix}"
          f"{f', {args.batch} REST orders a request' if args.batch > 1 else ''}, "
          f"fsync={args.fsync}, {args.gateways} gateway "
          f"process{'es sharing the ports' if args.gateways > 1 else ''}")  # fmt: skip

    instance = f"benchrest{os.getpid()}"
    var = Path(tempfile.mkdtemp(prefix="bench-rest-"))
    cfg = bench_config(instance, var, args.fsync, args.gateways)
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
    ]
    for k, gw in enumerate(cfg.gateways):  # CPU of "gateway", "gateway2"...: gateway_pct
        name = "gateway" if k == 0 else f"gateway{k + 1}"
        children.append(ctx.Process(
            target=run_gateway, args=(cfg, ports, stop, args.profile_gateway, gw.name), name=name,
        ))  # fmt: skip
    admin = Admin(instance)
    results: list[dict[str, Any]] = []
    pins: dict[str, list[int]] = {}
    checks: dict[str, bool] = {}
    try:
        children[0].start()
        children[1].start()
        admin.fund([101, 102, 201, 202])
        for gateway in children[2:]:  # one at a time: each listens before the next starts
            ports[0] = 0
            gateway.start()
            deadline = time.monotonic() + 30
            while not ports[0] and time.monotonic() < deadline:
                time.sleep(0.01)
            assert ports[0], f"{gateway.name} did not start"
        keys = asyncio.run(login(ports[1]))
        procs = {p.name: psutil.Process(p.pid) for p in children}
        if args.pin:
            pins = pin_plan(list(procs), sorted(os.sched_getaffinity(0)))
        for name, cpus in pins.items():  # the load generator's, as each phase starts it
            if name != "client":
                pin(psutil.Process() if name == "bench" else procs[name], cpus)
        if pins:
            print(f"pinned: {', '.join(f'{n} {c}' for n, c in pins.items())}")
        rounds: dict[str, list[dict[str, Any]]] = {path: [] for path in paths}
        plan = [("throughput", k, path) for k in range(args.rounds) for path in paths]
        for phase, k, path in plan + [("latency", 0, path) for path in paths]:
            symbol, base, (buyer, seller) = MARKETS[path]
            before = [admin.holdings(a).get(base, 0) for a in (buyer, seller)]
            spec = {
                "path": path, "phase": phase, "lanes": lanes, "tag": f"{phase[0]}{k}",
                "port": ports[1] if path == "rest" else ports[0], "keys": keys,
                "comp_ids": comp_ids, "client": args.client, "rate": args.rate, "mix": args.mix,
                "batch": args.batch,
                "seconds": args.seconds if phase == "throughput" else args.latency_seconds,
            }  # fmt: skip
            row = run_phase(ctx, spec, procs, pins)
            after = [admin.holdings(a).get(base, 0) for a in (buyer, seller)]
            bought, sold = after[0] - before[0], before[1] - after[1]
            row |= {"name": f"{path} {phase}", "path": path, "phase": phase,
                    "symbol": symbol, "base_bought": bought, "base_sold": sold}  # fmt: skip
            traded = row["taker_lots"] if path == "rest" else row["fill_lots"][0]
            right = f"{path} {phase}: every answer right, none missing"  # in every round
            checks[right] = checks.get(right, True) and (
                row["errors"] == 0 and row["missing"] == 0 and row["requests"] > 0
            )
            conserved = f"{path} {phase}: bought = sold = traded"
            checks[conserved] = checks.get(conserved, True) and (
                bought == sold == traded * UNITS_PER_LOT
                and (path == "rest" or row["fill_lots"][0] == row["fill_lots"][1])
            )
            if phase == "latency":
                results.append(row)
                print_row(row)
                continue
            rounds[path].append(row)
            if len(rounds[path]) == args.rounds:  # its median round stands for the path
                results.append(median_round(rounds[path]))
                print_row(results[-1])
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
    return finish(args, results, checks, lanes, sessions, pins)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
