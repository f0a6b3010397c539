"""`make bench-ws`: the market-data process fanning trades and depth out to N WebSocket clients.

```
feeder process ──Trade+BookLevel──► m1 output ring ──► marketdata process (the real main)
   paced at --rate trades/s,                                  │ loopback WebSocket
   each trade's ts_ns also in a                               ▼
   shared array (ns latency)         client processes x P: N raw-socket clients, each on
                                     btc-usd@trade + btc-usd@depth, offering
                                     permessage-deflate as browsers do
                                     + one slow client in the second phase (never reads)
```

Defaults are the targets of issue 6 (1000 clients, 1000 trades/s, 15 s per phase: about a
minute). Two phases of ``--seconds`` each: the N clients alone, then the same with the slow client.
Every fast client checks its answers: every trade of the phase, once, in order (one in ten,
``--verify-every``, reads each id; the others count each read's trades against its first and
last ids: see ``ws_clients.FeedClient``), and its depth diffs contiguous (``U`` = previous
``u`` + 1). The run fails if any client saw otherwise. Every client counts the trade and depth
messages and the bytes it received; the delivered figures are those counts summed, measured
on all clients (``delivery``). Latency is from the trade event's ``ts_ns`` (stamped by the
feeder just before it publishes) to the client's read, in 10 us buckets, for every 16th trade
of each client (a sample: ``latency_samples`` says how many). The slow client
(``SlowClient``: it stalls for seconds at a time) must not move the others' p99, and is
expected to be closed with 1008 (or 1011, its pings unanswered; neither judged before 10,000
trades). RSS of the marketdata process is read with every client
connected.

The clients are raw sockets with a minimal frame parser rather than the websockets client:
the point is to load the server, and a full client per connection would need more CPU than
the server under test. On a small machine (2 cores) the clients and the server share the
machine, so the delivered rate is a floor. With ``--pin`` (the default on 2 CPUs or more) the
marketdata process has CPU 0 to itself, as the supervisor pins it in production, and the
clients and feeder share the others: unpinned, six busy processes on two cores gave the server
a sixth of the machine, and the clients' backlog (seconds) was what the latency measured.
Results go to ``var/bench/ws.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from typing import Any

from procs.common.record_codec import RecordCodec
from procs.common.records import BookLevel, Record, Trade
from procs.common.topology import MARKETDATA, matcher_output
from procs.common.types import Side
from shm import Ring
from shm.inspect import remove_instance
from tests.bench.ws_clients import BUCKET_NS, BUCKETS, FeedClient, SlowClient, run_clients

ROOT = Path(__file__).parents[2]
PRICE = 5_000_000  # 50 000.00
TARGET_P99_MS = 50.0
TARGET_DELIVERED = 200_000
TARGET_RSS_MB = 300.0
SERVER_CPUS = {0}  # with --pin


# -- the feeder ----------------------------------------------------------------------------


def feed(
    instance: str,
    rate: int,
    seconds: float,
    first_trade: int,
    first_seq: int,
    stamps: SynchronizedArray[int],
) -> None:
    """Publish ``rate`` trades a second for ``seconds``, each after a BookLevel change."""
    ring = Ring.attach(instance, matcher_output("m1"), RecordCodec())
    producer = ring.producer()
    stamp = stamps.get_obj()  # the ctypes array behind the lock
    total = int(rate * seconds)
    sent, seq = 0, first_seq
    start = time.monotonic()
    while sent < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        batch: list[Record] = []
        while sent < due:
            trade_id = first_trade + sent
            now = time.time_ns()
            stamp[trade_id] = now
            level = trade_id % 20
            batch.append(
                BookLevel(seq, now, 1, Side.SELL, PRICE + level, 1 + trade_id % 7, 1 + level % 3)
            )
            batch.append(
                Trade(
                    *(seq + 1, now, trade_id, 1, PRICE + level, 1 + trade_id % 5, Side.BUY),
                    *(7, 70, 1, 0, 8, 80, 1, 0),
                )
            )
            seq += 2
            sent += 1
        producer.publish_batch(batch)
        time.sleep(0.0005)
    producer.close()
    ring.close()


# -- the run -------------------------------------------------------------------------------


def percentile_ms(hist: list[int], q: float) -> float:
    total = sum(hist)
    if not total:
        return float("nan")
    rank, seen = q * total, 0
    for bucket, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return (bucket + 1) * BUCKET_NS / 1e6
    return BUCKETS * BUCKET_NS / 1e6


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def delivery(stats: list[dict[str, Any]], elapsed_s: float) -> dict[str, Any]:
    """What the clients received, from every client's own counts (``ClientStats``): messages
    (trade and depth), bytes and reads, summed, with the depth messages' spread over the
    clients (a client the server fell behind on may get fewer diffs, conflated), and how
    many clients read every trade id. Nothing here is sampled and scaled up."""
    trades = sum(s["trade_messages"] for s in stats)
    depth = [s["depth"] for s in stats]
    delivered = trades + sum(depth)
    received = sum(s["bytes"] for s in stats)
    reads = sum(s["reads"] for s in stats)
    return {
        "delivered_per_s": round(delivered / elapsed_s),
        "delivered": delivered,
        "delivered_counted_by": len(stats),  # clients whose counts are summed: all of them
        "delivered_trades": trades,
        "delivered_depth": sum(depth),
        "depth_per_client": {"min": min(depth, default=0), "max": max(depth, default=0)},
        "delivered_bytes": received,
        "delivered_bytes_per_s": round(received / elapsed_s),
        "messages_per_read": round(delivered / reads, 1) if reads else 0.0,
        "clients_reading_every_trade_id": sum(bool(s["every_id"]) for s in stats),
    }


@dataclass
class Bench:
    args: argparse.Namespace
    instance: str
    port: int
    pid: int
    stamps: SynchronizedArray[int]
    next_trade: int = 1
    next_seq: int = 1

    def phase(self, name: str, with_slow: bool) -> dict[str, Any]:
        a = self.args
        total = int(a.rate * a.seconds)
        first, last = self.next_trade, self.next_trade + total - 1
        ctx = mp.get_context("fork")
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        timeout_s = a.seconds + 30
        shares = [a.clients // a.procs + (k < a.clients % a.procs) for k in range(a.procs)]
        workers = [
            ctx.Process(
                target=run_clients,
                args=(self.port, n, (first, last), self.stamps, ready, go, results, timeout_s),
                kwargs={"verify_every": a.verify_every},
            )
            for n in shares
            if n
        ]
        for w in workers:
            w.start()
        connected = sum(ready.get(timeout=120) for _ in workers)
        slow = SlowClient(self.port) if with_slow else None
        time.sleep(0.5)  # subscriptions and snapshots settle
        rss_connected = proc_rss_mb(self.pid)
        cpu0 = proc_cpu_s(self.pid)
        go.set()
        t0 = time.monotonic()
        feeder = ctx.Process(
            target=feed,
            args=(self.instance, a.rate, a.seconds, first, self.next_seq, self.stamps),
        )
        feeder.start()
        feeder.join()
        fed_s = time.monotonic() - t0
        got = [results.get(timeout=a.seconds + 60) for _ in workers]
        elapsed = time.monotonic() - t0
        cpu = proc_cpu_s(self.pid) - cpu0
        rss_end = proc_rss_mb(self.pid)
        for w in workers:
            w.join()
        self.next_trade, self.next_seq = last + 1, self.next_seq + 2 * total
        stats = [s for per_proc, _, _ in got for s in per_proc]
        hist = [sum(col) for col in zip(*(h for _, h, _ in got), strict=True)]
        client_cpu = max(c for _, _, c in got) / elapsed
        bad = [
            s
            for s in stats
            if s["trades"] != total or s["out_of_order"] or s["depth_gaps"] or s["closed"]
        ]
        # the depth messages published: what the best-served client got (none gets more)
        depth_published = max((s["depth"] for s in stats), default=0)
        return {
            "phase": name,
            "clients": connected,
            "slow_client": with_slow,
            "slow_close_code": slow.close_code() if slow is not None else None,
            "rate": a.rate,
            "trades": total,
            "feed_s": round(fed_s, 3),
            "published_per_s": round((total + depth_published) / fed_s),
            **delivery(stats, elapsed),
            "latency_samples": sum(hist),  # every FeedClient.SAMPLE-th trade of each client
            "latency_ms": {
                "p50": percentile_ms(hist, 0.50),
                "p99": percentile_ms(hist, 0.99),
                "p999": percentile_ms(hist, 0.999),
                "max": percentile_ms(hist, 1.0),
            },
            "server_cpu_pct": round(100 * cpu / elapsed, 1),
            "busiest_client_process_cpu_pct": round(100 * client_cpu, 1),
            "rss_mb_connected": round(rss_connected, 1),
            "rss_mb_end": round(rss_end, 1),
            "clients_wrong": len(bad),
            "wrong_example": bad[0] if bad else None,
        }


def start_marketdata(instance: str, var: Path, clients: int) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    profile = var / "bench.toml"
    profile.write_text(
        f'instance = "{instance}"\nvar_dir = "{var}"\n'
        '[[symbols]]\nname = "BTC-USD"\nid = 1\nqty_decimals = 4\n'
        '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n'
        f"[marketdata]\nport = {port}\nmax_connections = {clients + 100}\n"
        f"max_connections_per_address = {clients + 100}\n"  # every client is on 127.0.0.1
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "procs.marketdata.main", "--profile", str(profile)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/symbols", timeout=1):
                return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("marketdata did not start") from None
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rate", type=int, default=1000, help="trades per second")
    p.add_argument("--seconds", type=float, default=15.0, help="per phase")
    p.add_argument("--procs", type=int, default=max(2, min(8, (os.cpu_count() or 2) * 2)))
    p.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=(os.cpu_count() or 1) >= 2,
        help="the marketdata process on CPU 0, the clients and the feeder on the others "
        "(default on 2 CPUs or more)",
    )
    p.add_argument(
        "--verify-every",
        type=int,
        default=FeedClient.FULL_EVERY,
        help="every n-th client reads every trade id (1: all of them); the others check each "
        "read's count of trades against its first and last ids",
    )
    p.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "ws.json")
    args = p.parse_args(argv)
    if args.verify_every < 1:
        p.error(f"--verify-every {args.verify_every}: must be 1 or more")
    instance = f"bws{os.getpid()}"
    codec = RecordCodec()
    ring = Ring.create(
        instance, matcher_output("m1"), codec, capacity=1 << 16, consumers=[MARKETDATA]
    )
    ctx = mp.get_context("fork")
    stamps = ctx.Array("q", int(args.rate * args.seconds) * 2 + 2)
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_marketdata(instance, Path(tmp), args.clients)
        others = os.sched_getaffinity(0) - SERVER_CPUS
        if args.pin and not others:
            print(f"  --pin: no CPU besides {SERVER_CPUS} for the clients, nothing pinned")
            args.pin = False
        if args.pin:  # as the supervisor pins it; the clients (forked from here) stand for
            # machines elsewhere, and must not take the server's core from it
            os.sched_setaffinity(proc.pid, SERVER_CPUS)
            os.sched_setaffinity(0, others)
        try:
            bench = Bench(args, instance, port, proc.pid, stamps)
            results = [bench.phase("clients alone", False), bench.phase("with a slow client", True)]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            ring.close()
            remove_instance(instance)
    alone, slow = results
    missed = []
    if alone["latency_ms"]["p99"] > TARGET_P99_MS:
        missed.append(f"p99 {alone['latency_ms']['p99']:.2f} ms > {TARGET_P99_MS} ms")
    if alone["delivered_per_s"] < TARGET_DELIVERED:
        missed.append(f"delivered {alone['delivered_per_s']}/s < {TARGET_DELIVERED}/s")
    rss = max(r["rss_mb_end"] for r in results)
    if rss > TARGET_RSS_MB:
        missed.append(f"RSS {rss} MB > {TARGET_RSS_MB} MB")
    p99a, p99s = alone["latency_ms"]["p99"], slow["latency_ms"]["p99"]
    if p99s > max(1.5 * p99a, p99a + 5):
        missed.append(f"slow client moved p99: {p99a:.2f} -> {p99s:.2f} ms")
    wrong = [f"{r['phase']}: {r['clients_wrong']} clients" for r in results if r["clients_wrong"]]
    # 1008: its outbox overflowed; 1011: it never answered a ping (when the kernel's send
    # buffer, autotuned to megabytes, hides the stall for longer than the ping timeout).
    if slow["slow_close_code"] not in (1008, 1011) and slow["trades"] >= 10_000:
        wrong.append(f"slow client closed with {slow['slow_close_code']}, expected 1008/1011")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    report = {
        "machine": machine,
        "python": platform.python_version(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "results": results,
        "targets_missed": missed,
        "wrong": wrong,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    pinned = (
        f"marketdata pinned to CPU {min(SERVER_CPUS)}, clients and feeder to the others"
        if args.pin
        else "nothing pinned"
    )
    print(f"bench-ws on {machine}, {args.clients} clients over {args.procs} processes, {pinned}")
    for r in results:
        lat = r["latency_ms"]
        print(
            f"  {r['phase']:<20} {r['rate']} trades/s  published {r['published_per_s']:>6}/s  "
            f"delivered {r['delivered_per_s']:>8}/s  p50 {lat['p50']:6.2f} ms  "
            f"p99 {lat['p99']:6.2f} ms  p99.9 {lat['p999']:6.2f} ms  "
            f"CPU server {r['server_cpu_pct']:5.1f}% "
            f"busiest client process {r['busiest_client_process_cpu_pct']:5.1f}%  "
            f"RSS {r['rss_mb_end']:.0f} MB"
            + (f"  slow client closed {r['slow_close_code']}" if r["slow_client"] else "")
        )
        spread = r["depth_per_client"]
        print(
            f"    {r['delivered_counted_by']} clients counted: {r['delivered_trades']:,} trades "
            f"+ {r['delivered_depth']:,} depth ({spread['min']}-{spread['max']} a client), "
            f"{r['delivered_bytes'] / 1e6:,.0f} MB ({r['delivered_bytes_per_s'] / 1e6:,.1f} "
            f"MB/s), {r['messages_per_read']} messages a read"
        )
    first = results[0]
    print(
        f"  measured on all {first['clients']} clients: messages and bytes delivered; each "
        "trade once and in order (each read's count against its span); depth diffs contiguous"
    )
    print(
        f"  sampled: every trade id read by {first['clients_reading_every_trade_id']} of "
        f"{first['clients']} clients (--verify-every {args.verify_every}); latency of every "
        f"{FeedClient.SAMPLE}th trade of each client ({first['latency_samples']:,} samples)"
    )
    print(f"  targets missed: {', '.join(missed) or 'none'}")
    if wrong:
        print(f"  WRONG ANSWERS: {'; '.join(wrong)}")
        for r in results:
            if r["wrong_example"]:
                print(f"    e.g. {r['wrong_example']}")
    print(f"  -> {args.out}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
