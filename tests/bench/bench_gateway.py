"""`make bench-gateway`: the FIX codec against simplefix, and orders through a gateway process.

```
codec      one process, a stream of NewOrderSingles cut in 64 KiB reads (as a socket gives
           them): FixReader (frame, checksum, fields) alone and with dictionary validation,
           against simplefix's FixParser on the same reads; ExecutionReport encoding (fields +
           frame) against simplefix's FixMessage.encode. Best of --rounds. Parsing is
           measured twice: each read's messages looked at and dropped, as the gateway
           does (the target's figure), and all 50k kept in a list, where CPython's
           collector walks the growing heap of parsed messages again and again (a cost
           of the keeping, ~40% of it, that no gateway pays).
pipeline   S simplefix-encoded client sessions (this process, asyncio)
             ──TCP──► gateway process (GatewayServer on uvloop) ──gw1-cmd──► router ┐
             ◄──TCP── execution reports ◄──gw1-rep / m1-out── matcher ◄──m1-in──────┘
           router and matcher are child processes each (one process stepping both deadlocks
           once its rings fill: each blocks on a ring only the other drains). Half the
           sessions buy, half sell, one lot at one price, so every order gets exactly a New
           (150=0) and a Filled (39=2) report. The clock runs from
           the first order written to the last report read; the gateway's CPU seconds over
           that window come from /proc (orders per gateway CPU second = "on one core").
```

Answer checks: our fields equal simplefix's for every message parsed, our encoding equals
simplefix's byte for byte, and in the pipeline each session gets exactly one New and one
Filled report per order and no reject. Results go to ``var/bench/gateway.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import simplefix  # ships no type information
import uvloop

from config.schema import RingexConfig, RiskConfig
from procs.common import gc_policy
from procs.common.records import CreateAccount, Record, Transfer
from procs.common.topology import (
    gateway_commands,
    gateway_consumer,
    gateway_replies,
    rings,
    users_path,
)
from procs.common.users import UserStore
from procs.gateway import dictionary
from procs.gateway.fix import FixMessage, FixReader, Timestamps, field, frame
from procs.gateway.server import GatewayServer
from procs.matcher.main import MatcherShell
from procs.router.main import RouterShell
from shm import Ring
from shm.inspect import remove_instance
from tests.bench.report import conclude
from tests.unit.gateway.harness import BTC, CODEC, FUNDER, USD, config, utc

TARGETS = {"codec parse msgs/s": 250_000, "pipeline orders/s per gateway core": 50_000}
CHUNK = 65536

# -- codec -----------------------------------------------------------------------------------


def new_order(seq: int) -> simplefix.FixMessage:
    m = simplefix.FixMessage()
    for tag, value in (
        (8, "FIX.4.4"), (35, "D"), (49, "ALICE"), (56, "RINGEX"), (34, seq), (52, utc()),
        (11, f"order-{seq}"), (55, "BTC-USD"), (54, 1 + seq % 2), (60, utc()), (38, "1.25"),
        (40, 2), (44, "30123.45"), (59, 1),
    ):  # fmt: skip
        m.append_pair(tag, value, header=tag in (8, 35, 49, 56, 34, 52))
    return m


REPORT: list[tuple[int, bytes]] = [
    (37, b"123456789"), (11, b"order-12345"), (17, b"1-1763000000000000001"), (150, b"F"),
    (39, b"1"), (55, b"BTC-USD"), (54, b"1"), (40, b"2"), (59, b"1"), (38, b"2.00"),
    (44, b"30123.45"), (151, b"0.75"), (14, b"1.25"), (6, b"30123.450000"), (31, b"30123.45"),
    (32, b"1.25"),
]  # fmt: skip


def best(fn: Callable[[], int], rounds: int) -> float:
    """The best ops/s over ``rounds`` calls of ``fn`` (which returns how many ops it did)."""
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - start))
    return max(rates)


def codec(n: int, rounds: int, checks: dict[str, bool]) -> list[dict[str, Any]]:
    stream = b"".join(bytes(new_order(seq).encode()) for seq in range(1, n + 1))
    chunks = [stream[k : k + CHUNK] for k in range(0, len(stream), CHUNK)]

    def ours() -> list[FixMessage]:
        reader = FixReader()
        out: list[FixMessage] = []
        for chunk in chunks:
            reader.feed(chunk)
            out += reader.messages()  # type: ignore[arg-type]  # checked below: no Garbled
        return out

    def theirs() -> list[simplefix.FixMessage]:
        parser = simplefix.FixParser()
        out = []
        for chunk in chunks:
            parser.append_buffer(chunk)
            while (msg := parser.get_message()) is not None:
                out.append(msg)
        return out

    def ours_handled() -> int:
        """As the gateway reads: each read's messages are taken, looked at and dropped."""
        reader = FixReader()
        count = 0
        for chunk in chunks:
            reader.feed(chunk)
            for msg in reader.messages():
                count += msg.msg_type == b"D"  # type: ignore[union-attr]  # no Garbled: checked
        return count

    def theirs_handled() -> int:
        parser = simplefix.FixParser()
        count = 0
        for chunk in chunks:
            parser.append_buffer(chunk)
            while (msg := parser.get_message()) is not None:
                count += msg.get(35) == b"D"
        return count

    def ours_validated() -> int:
        """Read and dropped as ``ours_handled``, each message validated: how many are clean."""
        validate = dictionary.validate
        reader = FixReader()
        clean = 0
        for chunk in chunks:
            reader.feed(chunk)
            for msg in reader.messages():
                clean += validate(msg) is None  # type: ignore[arg-type]  # no Garbled: checked
        return clean

    mine, peer = ours(), theirs()
    checks["codec: every message parses, fields equal simplefix's"] = (
        len(mine) == len(peer) == n
        and all(isinstance(m, FixMessage) for m in mine)
        and all(
            m.pairs == [(int(t), v) for t, v in p.pairs[2:-1]]  # after 8, 9; before 10
            for m, p in zip(mine, peer, strict=True)
        )
    )
    checks["codec: every message validates"] = ours_validated() == n
    checks["codec: read and dropped, every message is a D"] = ours_handled() == n
    checks["codec: simplefix, read and dropped, every message is a D"] = theirs_handled() == n

    times = Timestamps()
    stamp = times.format(time.time_ns())
    head = b"35=8\x0149=RINGEX\x0156=ALICE\x01"

    def encode_ours() -> int:
        for seq in range(1, n + 1):
            body = b"".join([field(t, v) for t, v in REPORT])
            frame(b"%s34=%d\x0152=%s\x01%s" % (head, seq, stamp, body))
        return n

    def encode_theirs() -> int:
        for seq in range(1, n + 1):
            m = simplefix.FixMessage()
            m.append_pair(8, "FIX.4.4", header=True)
            m.append_pair(35, "8", header=True)
            m.append_pair(49, "RINGEX", header=True)
            m.append_pair(56, "ALICE", header=True)
            m.append_pair(34, seq, header=True)
            m.append_pair(52, stamp, header=True)
            for t, v in REPORT:
                m.append_pair(t, v)
            m.encode()
        return n

    m = simplefix.FixMessage()
    for t, v in [(8, b"FIX.4.4"), (35, b"8"), (49, b"RINGEX"), (56, b"ALICE"), (34, b"7")]:
        m.append_pair(t, v, header=True)
    m.append_pair(52, stamp, header=True)
    for t, v in REPORT:
        m.append_pair(t, v)
    body = b"".join([field(t, v) for t, v in REPORT])
    checks["codec: encoding equals simplefix's"] = bytes(m.encode()) == frame(
        b"%s34=7\x0152=%s\x01%s" % (head, stamp, body)
    )

    handled_ours = best(ours_handled, rounds)
    handled_theirs = best(theirs_handled, rounds)
    parse_ours = best(lambda: len(ours()), rounds)
    parse_valid = best(ours_validated, rounds)
    parse_theirs = best(lambda: len(theirs()), rounds)
    enc_ours = best(encode_ours, rounds)
    enc_theirs = best(encode_theirs, rounds)
    return [
        {"name": "ringex parse, each read's messages dropped", "ops_per_s": handled_ours,
         "x_simplefix": handled_ours / handled_theirs},
        {"name": "simplefix parse, each read's messages dropped", "ops_per_s": handled_theirs,
         "x_simplefix": 1.0},
        {"name": f"ringex parse, all {n // 1000}k messages kept" if n % 1000 == 0 else
         f"ringex parse, all {n:,} messages kept", "ops_per_s": parse_ours,
         "x_simplefix": parse_ours / parse_theirs},
        {"name": "ringex parse + validation, dropped", "ops_per_s": parse_valid,
         "x_simplefix": parse_valid / handled_theirs},
        {"name": "simplefix parse, all kept", "ops_per_s": parse_theirs, "x_simplefix": 1.0},
        {"name": "ringex encode ExecutionReport", "ops_per_s": enc_ours,
         "x_simplefix": enc_ours / enc_theirs},
        {"name": "simplefix encode ExecutionReport", "ops_per_s": enc_theirs, "x_simplefix": 1.0},
    ]  # fmt: skip


# -- pipeline --------------------------------------------------------------------------------


def bench_config(instance: str, var: Path, orders: int) -> RingexConfig:
    cfg = config(instance, var, max_messages_per_s=1_000_000)
    risk = RiskConfig(max_open_orders=orders + 10, max_commands_per_s=10_000_000, fee_account=99)
    return msgspec.structs.replace(cfg, risk=risk)


def run_router(cfg: RingexConfig, stop: Any) -> None:
    """Child process: the router, as ``procs.router.main`` runs it."""
    router = RouterShell(cfg)
    gc_policy.settle(cfg.gc)
    try:
        router.run(stop.is_set)
    finally:
        router.close()


def run_matcher(cfg: RingexConfig, stop: Any) -> None:
    """Child process: the matcher, as ``procs.matcher.main`` runs it."""
    matcher = MatcherShell(cfg, "m1")
    gc_policy.settle(cfg.gc)
    try:
        matcher.run(stop.is_set)
    finally:
        matcher.close()


def serve_gateway(
    cfg: RingexConfig,
    started: Callable[[GatewayServer], None],
    stop: Any,
    profile: str,
    name: str = "gw1",
) -> None:
    """In a child process: the gateway as ``procs.gateway.main`` serves it, on uvloop, until
    ``stop`` is set; ``started`` gets the server once it listens. Under cProfile when
    ``profile`` names a stats file: CPU time, not wall time (on a shared 2-core machine the
    gateway is often descheduled, and wall time would charge that to whatever ran then)."""

    async def serve() -> None:
        server = GatewayServer(cfg, name)
        gc_policy.settle(cfg.gc)
        await server.start()
        started(server)
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await server.shutdown(grace_s=0.2)

    if not profile:
        uvloop.run(serve())
        return
    profiler = cProfile.Profile(time.thread_time)
    profiler.runcall(uvloop.run, serve())
    profiler.dump_stats(profile)


def run_gateway(cfg: RingexConfig, port: Any, stop: Any, profile: str) -> None:
    """Child process: the gateway; its FIX port goes to ``port``."""

    def started(server: GatewayServer) -> None:
        port.value = server.port

    serve_gateway(cfg, started, stop, profile)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Counter:
    """Counts reports as they arrive on one client connection (no full parse: cheap)."""

    def __init__(self) -> None:
        self.pending = b""
        self.reports = self.new = self.filled = self.rejects = 0

    def feed(self, data: bytes) -> None:
        data = self.pending + data
        cut = len(data)
        if not (data.endswith(b"\x01") and data[-8:-4] == b"\x0110="):
            cut = max(0, data.rfind(b"8=FIX.4.4\x01"))
        done, self.pending = data[:cut], data[cut:]
        self.reports += done.count(b"\x0135=8\x01")
        self.new += done.count(b"\x01150=0\x01")
        self.filled += done.count(b"\x0139=2\x01")
        self.rejects += sum(done.count(b"\x0135=%s\x01" % k) for k in (b"3", b"9", b"j", b"5"))
        self.rejects += done.count(b"\x01150=8\x01")


async def client_load(port: int, sessions: int, per_session: int) -> tuple[float, list[Counter]]:
    conns = []
    for k in range(sessions):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        logon = simplefix.FixMessage()
        for tag, value in ((8, "FIX.4.4"), (35, "A"), (49, f"C{k}"), (56, "RINGEX"), (34, 1),
                           (52, utc()), (98, 0), (108, 30), (141, "Y"), (554, "pw")):  # fmt: skip
            logon.append_pair(tag, value)
        writer.write(logon.encode())
        assert b"\x0135=A\x01" in await reader.read(4096), f"session C{k} did not log on"
        batch = []
        for seq in range(2, per_session + 2):
            m = simplefix.FixMessage()
            for tag, value in (
                (8, "FIX.4.4"), (35, "D"), (49, f"C{k}"), (56, "RINGEX"), (34, seq),
                (52, utc()), (11, f"C{k}-{seq}"), (55, "BTC-USD"), (54, 1 + k % 2),
                (60, utc()), (38, "0.01"), (40, 2), (44, "100.00"), (59, 1),
            ):  # fmt: skip
                m.append_pair(tag, value)
            batch.append(bytes(m.encode()))
        conns.append((reader, writer, batch, Counter()))

    async def session(reader: Any, writer: Any, batch: list[bytes], counter: Counter) -> None:
        async def write() -> None:
            for k in range(0, len(batch), 64):
                writer.writelines(batch[k : k + 64])
                await writer.drain()

        writing = asyncio.get_running_loop().create_task(write())
        # each order's last answer: a Filled, or a reject (review 264: a rejected order
        # never fills, and the session read until the 300 s timeout)
        while min(counter.new, counter.filled) + counter.rejects < per_session:
            data = await reader.read(CHUNK)
            if not data:
                break
            counter.feed(data)
        await writing

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(session(*c) for c in conns)), 300)
    elapsed = time.perf_counter() - start
    for _, writer, _, _ in conns:
        writer.close()
    return elapsed, [c[3] for c in conns]


def pipeline(
    orders: int, sessions: int, checks: dict[str, bool], profile: str = ""
) -> dict[str, Any]:
    instance = f"benchgw{os.getpid()}"
    var = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    per_session = orders // sessions
    cfg = bench_config(instance, var, per_session * sessions)
    made = [
        Ring.create(instance, r.name, CODEC, capacity=r.capacity, consumers=r.consumers)
        for r in rings(cfg)
    ]
    users = UserStore(users_path(cfg))
    for k in range(sessions):
        users.add(f"C{k}", "pw", 100 + k, n=1 << 4)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    port = ctx.Value("i", 0)
    procs = [
        ctx.Process(target=run_router, args=(cfg, stop), name="router"),
        ctx.Process(target=run_matcher, args=(cfg, stop), name="matcher"),
    ]
    funder = Ring.attach(instance, gateway_commands(FUNDER), CODEC).producer()
    replies = Ring.attach(instance, gateway_replies(FUNDER), CODEC).consumer(
        gateway_consumer(FUNDER)
    )
    try:
        for p in procs:
            p.start()
        commands: list[Record] = []
        for k in range(sessions):
            account = 100 + k
            commands.append(CreateAccount(0, 0, FUNDER, 1, account * 10, account))
            for asset in (USD, BTC):
                commands.append(
                    Transfer(0, 0, FUNDER, 1, account * 10 + asset, account, asset, 10**15,
                             account * 10 + asset)
                )  # fmt: skip
        funder.publish_batch(commands)
        got = 0
        deadline = time.monotonic() + 30
        while got < len(commands) and time.monotonic() < deadline:
            got += len(replies.read(256))
            time.sleep(0.001)
        assert got == len(commands), f"funding: {got} of {len(commands)} replies"
        procs.append(
            ctx.Process(target=run_gateway, args=(cfg, port, stop, profile), name="gateway")
        )
        procs[-1].start()
        deadline = time.monotonic() + 30
        while not port.value and time.monotonic() < deadline:
            time.sleep(0.01)
        gw_pid = procs[-1].pid
        assert gw_pid is not None and port.value, "the gateway did not start"
        cpu_before = cpu_seconds(gw_pid)
        elapsed, counters = asyncio.run(client_load(port.value, sessions, per_session))
        gw_cpu = cpu_seconds(gw_pid) - cpu_before
    finally:
        stop.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        funder.close()
        replies.close()
        for ring in made:
            ring.close()
        remove_instance(instance)
        shutil.rmtree(var, ignore_errors=True)
    total = per_session * sessions
    checks["pipeline: one New and one Filled report per order, no rejects"] = all(
        (c.new, c.filled, c.reports, c.rejects) == (per_session, per_session, 2 * per_session, 0)
        for c in counters
    )
    return {
        "name": "ringex gateway pipeline (orders in, reports out)",
        "sessions": sessions,
        "orders": total,
        "ops_per_s": total / elapsed,
        "gateway_cpu_s": gw_cpu,
        "orders_per_gateway_cpu_s": total / gw_cpu if gw_cpu else 0.0,
        "reports_per_s": 2 * total / elapsed,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--codec-messages", type=int, default=50_000)
    # 100k, not 20k: per order a run gets dearer as it goes on (the order log's compactions
    # grow with the open orders the sessions' drift leaves, the finished orders kept reach
    # their 10,000): 20k orders gave 20.2k orders per gateway CPU second, 100k 15.8k
    # (2026-11-26, one VM, back to back). The default reports the longer run's.
    ap.add_argument("--orders", type=int, default=100_000, help="orders in the pipeline run")
    ap.add_argument("--sessions", type=int, default=4, help="client sessions (even)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="var/bench/gateway.json")
    ap.add_argument("--profile-gateway", default="", help="write the gateway's cProfile here")
    args = ap.parse_args()
    checks: dict[str, bool] = {}
    problems: list[str] = []
    print(f"bench-gateway: python {platform.python_version()}, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip

    results = codec(args.codec_messages, args.rounds, checks)
    print(f"\ncodec, {args.codec_messages:,} NewOrderSingles in 64 KiB reads, best of "
          f"{args.rounds}:")  # fmt: skip
    for row in results:
        print(f"  {row['name']:46} {row['ops_per_s']:>12,.0f} msgs/s  x{row['x_simplefix']:.1f}")
    parse_rate = results[0]["ops_per_s"]
    if parse_rate < TARGETS["codec parse msgs/s"]:
        problems.append(f"codec parse: {parse_rate:,.0f} msgs/s < 250,000")

    sessions = max(2, args.sessions // 2 * 2)
    piped = pipeline(args.orders, sessions, checks, args.profile_gateway)
    results.append(piped)
    per_core = piped["orders_per_gateway_cpu_s"]
    print(
        f"\npipeline, {piped['sessions']} sessions, {piped['orders']:,} orders: "
        f"{piped['ops_per_s']:,.0f} orders/s in with {piped['reports_per_s']:,.0f} reports/s "
        f"out; gateway CPU {piped['gateway_cpu_s']:.2f} s = {per_core:,.0f} orders per "
        "gateway CPU second"
    )
    if per_core < TARGETS["pipeline orders/s per gateway core"]:
        problems.append(f"pipeline: {per_core:,.0f} orders per gateway CPU second < 50,000")

    doc = {
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(),
                 "load_1m": os.getloadavg()[0]},
        "results": results,
    }  # fmt: skip
    return conclude(args.out, doc, checks, problems)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
