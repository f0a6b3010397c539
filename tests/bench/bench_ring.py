"""`make bench-ring`: the ringex ring against multiprocessing.Queue and pyzmq, in one run.

```
throughput      producer ──► consumer                    (two processes, one core each)
latency         producer ──► consumer   paced at 10k msgs/s, stamps carry monotonic ns
pipeline        producer ──► relay ──► consumer         (relay decodes and re-encodes)
soak            producer ──► consumer   10^7 records, RSS sampled on both sides
```

Every record is 64 bytes: eight int64 fields, the first its sequence number, the second a
send timestamp. Each consumer checks that every record arrived exactly once and in order,
and the run fails if any did not, or if a ring process's RSS grew. Results go to
``var/bench/ring.json``; the ratios to the peers are what the targets in issue 2 are about.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import struct
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from shm import BusySpin, Ring, StructCodec, wait_strategy
from tests.bench.report import conclude, percentile

RECORD = struct.Struct("<8q")  # what the peers send: the same 64 bytes
FIELDS = "8q"
BATCH = 64
SLOT_SIZE = 72  # 64 bytes of record + the 8-byte stamp (128-byte slots measured the same)
CAPACITY = 1 << 14
PACED_RATE = 10_000
INSTANCE = f"bench{os.getpid()}"


def codec() -> StructCodec:
    return StructCodec(FIELDS, schema_id=0xBE, slot_size=SLOT_SIZE)


def pin(cpu: int) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


@dataclass
class Outcome:
    """What a consumer reports: the order check, its end time, latency samples, RSS."""

    in_order: bool = True
    last_ns: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)


class Checker:
    """Exactly once, in order: the n-th record must carry sequence n."""

    def __init__(self, n: int, paced: bool, soak: bool) -> None:
        self.expect = 0
        self.out = Outcome()
        self.paced = paced
        self.soak_every = n // 10 if soak else 0

    def see(self, seq: int, sent_ns: int) -> None:
        if seq != self.expect:
            self.out.in_order = False
        self.expect += 1
        if self.paced:
            self.out.latencies_ns.append(time.monotonic_ns() - sent_ns)
        if self.soak_every and self.expect % self.soak_every == 0:
            self.out.rss_kib.append(rss_kib())


def pace(i: int, start: int, release_gil: bool = False) -> int:
    """Spin until record ``i``'s send time at PACED_RATE; returns the stamp to send.

    With ``release_gil`` it sleeps(0) until 50 us before the due time: mp.Queue sends from a
    feeder thread that needs the GIL, which a spinning main thread would starve (3.6 ms p50).
    ringex and zmq (whose I/O thread is C++) get the spin a latency-minded caller would use."""
    due = start + i * (1_000_000_000 // PACED_RATE)
    while (now := time.monotonic_ns()) < due:
        if release_gil and due - now > 50_000:
            time.sleep(0)
    return now


# -- ringex -----------------------------------------------------------------------------------


def ring_producer(name: str, n: int, batched: bool, paced: bool, go: Any, res: Any) -> None:
    pin(0)
    ring = Ring.attach(INSTANCE, name, codec())
    prod = ring.producer(BusySpin())
    go.wait()
    start = time.monotonic_ns()
    if batched:  # claim 64 slots, pack the records with their stamp, one copy, publish
        pack, size = prod.ring.codec.slot_struct.pack, SLOT_SIZE  # type: ignore[attr-defined]
        claim, publish_claimed = prod.claim, prod.publish_claimed
        lo, sample_every, rss = 0, max(BATCH, n // 10), [rss_kib()]
        while lo < n:
            view, off, stamp, got = claim(min(BATCH, n - lo))
            hi = lo + got
            view[off : off + got * size] = b"".join(
                [pack(i, 0, 1, 2, 3, 4, 5, 6, stamp) for i in range(lo, hi)]
            )
            publish_claimed(got)
            if hi // sample_every != lo // sample_every:
                rss.append(rss_kib())
            lo = hi
    elif paced:
        publish = prod.publish
        for i in range(n):
            publish((i, pace(i, start), 1, 2, 3, 4, 5, 6))
    else:
        publish = prod.publish
        for i in range(n):
            publish((i, 0, 1, 2, 3, 4, 5, 6))
    res.put(("producer", (start, rss if batched else [rss_kib()])))
    prod.close()
    ring.close()


def ring_consumer(
    name: str, n: int, batched: bool, paced: bool, wait: str, soak: bool, go: Any, res: Any
) -> None:
    pin(1)
    ring = Ring.attach(INSTANCE, name, codec())
    cons = ring.consumer("sink", wait_strategy(wait))
    chk = Checker(n, paced, soak)
    see = chk.see
    go.wait()
    if paced:  # one record at a time, as the peers' get()/recv() are
        poll, wait_for = cons.poll, cons.wait
        while chk.expect < n:
            rec = poll()
            if rec is None:
                wait_for()
                continue
            see(rec[0], rec[1])
    elif soak:
        while chk.expect < n:
            for rec in cons.take(4 * BATCH):
                see(rec[0], rec[1])
    elif batched:
        expect, take = 0, cons.take
        while expect < n:
            for rec in take(4 * BATCH):
                if rec[0] != expect:
                    chk.out.in_order = False
                expect += 1
    else:
        expect, poll, wait_for = 0, cons.poll, cons.wait
        while expect < n:
            item = poll()
            if item is None:
                wait_for()
                continue
            if item[0] != expect:
                chk.out.in_order = False
            expect += 1
    chk.out.last_ns = time.monotonic_ns()
    res.put(("consumer", chk.out))
    cons.close()
    ring.close()


def ring_relay(src: str, dst: str, n: int, go: Any, res: Any) -> None:
    pin(0)
    inbound = Ring.attach(INSTANCE, src, codec())
    outbound = Ring.attach(INSTANCE, dst, codec())
    cons = inbound.consumer("relay", wait_strategy("yield"))
    prod = outbound.producer(wait_strategy("yield"))
    go.wait()
    res.put(("relay", rss_kib()))
    done = 0
    while done < n:
        batch = cons.take(BATCH)
        prod.publish_batch(batch)  # decoded tuples, re-encoded by the codec
        done += len(batch)
    prod.close()
    cons.close()


# -- peers ------------------------------------------------------------------------------------


def queue_producer(q: Any, n: int, batched: bool, paced: bool, go: Any, res: Any) -> None:
    pin(0)
    pack = RECORD.pack
    go.wait()
    start = time.monotonic_ns()
    if batched:
        for lo in range(0, n, BATCH):
            q.put([pack(i, 0, 1, 2, 3, 4, 5, 6) for i in range(lo, min(n, lo + BATCH))])
    elif paced:
        for i in range(n):
            q.put(pack(i, pace(i, start, release_gil=True), 1, 2, 3, 4, 5, 6))
    else:
        put = q.put
        for i in range(n):
            put(pack(i, 0, 1, 2, 3, 4, 5, 6))
    res.put(("producer", (start, [rss_kib()])))


def queue_consumer(q: Any, n: int, batched: bool, paced: bool, go: Any, res: Any) -> None:
    pin(1)
    chk = Checker(n, paced, False)
    unpack = RECORD.unpack
    go.wait()
    if paced:
        while chk.expect < n:
            rec = unpack(q.get())
            chk.see(rec[0], rec[1])
    else:
        expect, get = 0, q.get
        while expect < n:
            for raw in get() if batched else (get(),):
                if unpack(raw)[0] != expect:
                    chk.out.in_order = False
                expect += 1
    chk.out.last_ns = time.monotonic_ns()
    res.put(("consumer", chk.out))


def zmq_producer(addr: str, n: int, batched: bool, paced: bool, go: Any, res: Any) -> None:
    pin(0)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.connect(addr)
    pack = RECORD.pack
    go.wait()
    start = time.monotonic_ns()
    if batched:
        for lo in range(0, n, BATCH):
            sock.send(b"".join(pack(i, 0, 1, 2, 3, 4, 5, 6) for i in range(lo, min(n, lo + BATCH))))
    elif paced:
        for i in range(n):
            sock.send(pack(i, pace(i, start), 1, 2, 3, 4, 5, 6))
    else:
        send = sock.send
        for i in range(n):
            send(pack(i, 0, 1, 2, 3, 4, 5, 6))
    res.put(("producer", (start, [rss_kib()])))
    sock.close(linger=-1)
    ctx.term()


def zmq_consumer(addr: str, n: int, batched: bool, paced: bool, go: Any, res: Any) -> None:
    pin(1)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.bind(addr)
    chk = Checker(n, paced, False)
    go.wait()
    recv, unpack, iter_unpack = sock.recv, RECORD.unpack, RECORD.iter_unpack
    if paced:
        while chk.expect < n:
            rec = unpack(recv())
            chk.see(rec[0], rec[1])
    else:
        expect = 0
        while expect < n:
            frame = recv()
            for rec in iter_unpack(frame) if batched else (unpack(frame),):
                if rec[0] != expect:
                    chk.out.in_order = False
                expect += 1
    chk.out.last_ns = time.monotonic_ns()
    res.put(("consumer", chk.out))
    sock.close()
    ctx.term()


# -- harness ----------------------------------------------------------------------------------


def run_procs(targets: list[tuple[Callable[..., None], tuple[Any, ...]]], go: Any) -> None:
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=t, args=a) for t, a in targets]
    for p in procs:
        p.start()
    time.sleep(0.2)  # let every side attach/bind before the clock starts
    go.set()
    for p in procs:
        p.join(600)
        if p.exitcode != 0:
            raise SystemExit(f"bench process {p.name} exited with {p.exitcode}")


def one_round(
    kind: str, n: int, *, paced: bool = False, wait: str = "busy-spin", soak: bool = False
) -> tuple[Outcome, int, dict[str, list[int]]]:
    ctx = mp.get_context("fork")
    go, res = ctx.Event(), ctx.Queue()
    batched = kind.endswith("-batch")
    rings: list[Ring[Any]] = []
    procs: list[tuple[Callable[..., None], tuple[Any, ...]]]
    if kind.startswith("ringex"):
        tag = uuid.uuid4().hex[:8]
        if kind == "ringex-3stage":
            rings = [
                Ring.create(INSTANCE, f"a{tag}", codec(), capacity=CAPACITY, consumers=["relay"]),
                Ring.create(INSTANCE, f"b{tag}", codec(), capacity=CAPACITY, consumers=["sink"]),
            ]
            procs = [
                (ring_producer, (f"a{tag}", n, True, False, go, res)),
                (ring_relay, (f"a{tag}", f"b{tag}", n, go, res)),
                (ring_consumer, (f"b{tag}", n, True, False, "yield", False, go, res)),
            ]
        else:
            rings = [Ring.create(INSTANCE, tag, codec(), capacity=CAPACITY, consumers=["sink"])]
            procs = [
                (ring_producer, (tag, n, batched, paced, go, res)),
                (ring_consumer, (tag, n, batched, paced, wait, soak, go, res)),
            ]
    elif kind.startswith("mp.Queue"):
        q = ctx.Queue()
        procs = [
            (queue_producer, (q, n, batched, paced, go, res)),
            (queue_consumer, (q, n, batched, paced, go, res)),
        ]
    else:
        addr = f"ipc:///tmp/ringex-bench-{uuid.uuid4().hex[:8]}"
        procs = [
            (zmq_consumer, (addr, n, batched, paced, go, res)),
            (zmq_producer, (addr, n, batched, paced, go, res)),
        ]
    try:
        run_procs(procs, go)
        got = dict(res.get(timeout=10) for _ in range(len(procs)))
    finally:
        for ring in rings:
            ring.unlink()
            ring.close()
    out: Outcome = got["consumer"]
    start, producer_rss = got["producer"]
    return out, start, {"producer_rss_kib": producer_rss}


def pct(values: list[int], q: float) -> float:
    """The ``q`` quantile of ``values`` (ns), in us."""
    return percentile(values, q) / 1000


def paced_figures(key: str, out: Outcome, failures: list[str]) -> dict[str, float]:
    """p50 / p99 / p99.9 of a paced round after its warm-up (the first tenth); a round whose
    records came lost, twice or out of order is a failure, as in the throughput rounds."""
    if not out.in_order:
        failures.append(f"latency {key}: records lost, duplicated or out of order")
    lat = out.latencies_ns[len(out.latencies_ns) // 10 :]  # drop warm-up
    return {"p50_us": pct(lat, 0.5), "p99_us": pct(lat, 0.99), "p999_us": pct(lat, 0.999)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=300_000, help="records a throughput round")
    ap.add_argument("--soak", type=int, default=10_000_000, help="records in the RSS soak")
    ap.add_argument("--out", default="var/bench/ring.json")
    args = ap.parse_args()

    print(
        f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"
    )
    kinds = [
        "ringex",
        "ringex-batch",
        "mp.Queue",
        "mp.Queue-batch",
        "zmq",
        "zmq-batch",
        "ringex-3stage",
    ]
    sizes = {"mp.Queue": args.n // 3}
    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    # Round-robin over the transports, so that the machine's slow and fast spells (up to 2x on
    # these VMs) fall on every transport alike and the ratios compare like with like.
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            n = sizes.get(kind, args.n)
            out, start, _ = one_round(kind, n)
            if not out.in_order:
                failures.append(f"{kind}: records lost, duplicated or out of order")
            rates[kind].append(n / ((out.last_ns - start) / 1e9))
    for kind in kinds:
        results[kind] = {
            "name": kind,
            "msgs_per_s": statistics.median(rates[kind]),
            "p50_us": None,  # latency is measured paced, below, for the unbatched transports
            "p99_us": None,
        }
        print(
            f"{kind:16s} {statistics.median(rates[kind]):>12,.0f} msgs/s  (rounds: "
            + ", ".join(f"{r / 1e3:.0f}k" for r in rates[kind])
            + ")"
        )

    latency_n = PACED_RATE  # one second at the paced rate
    for kind, wait in [
        ("ringex", "busy-spin"),
        ("ringex", "blocking"),
        ("mp.Queue", ""),
        ("zmq", ""),
    ]:
        out, _, _ = one_round(kind, latency_n, paced=True, wait=wait or "busy-spin")
        key = kind if kind != "ringex" else ("ringex" if wait == "busy-spin" else "ringex-blocking")
        entry = results.setdefault(key, {"name": key, "msgs_per_s": None})  # ringex-blocking
        entry.update(paced_figures(key, out, failures))
        print(
            f"latency {key:16s} p50 {entry['p50_us']:8.1f} us  p99 {entry['p99_us']:8.1f} us"
            f"  p99.9 {entry['p999_us']:8.1f} us"
        )

    out, _, extra = one_round("ringex-batch", args.soak, soak=True)
    growth = max(out.rss_kib) - min(out.rss_kib) if out.rss_kib else 0
    producer_rss = extra["producer_rss_kib"]
    producer_growth = max(producer_rss[1:]) - min(producer_rss[1:])  # after warm-up
    print(
        f"soak: {args.soak:,} records, consumer RSS samples (KiB) {out.rss_kib}, "
        f"growth {growth} KiB; producer RSS samples {producer_rss}, growth {producer_growth} KiB"
    )
    if not out.in_order:
        failures.append("soak: records out of order or duplicated")
    if growth > 1024:
        failures.append(f"soak: consumer RSS grew {growth} KiB over {args.soak:,} records")
    if producer_growth > 1024:
        failures.append(f"soak: producer RSS grew {producer_growth} KiB")

    def ratio(a: str, b: str) -> float:
        return float(results[a]["msgs_per_s"] / results[b]["msgs_per_s"])

    checks = [
        ("ringex / mp.Queue", ratio("ringex", "mp.Queue"), 12.0),
        ("ringex / zmq", ratio("ringex", "zmq"), 3.0),
        ("ringex-batch / mp.Queue", ratio("ringex-batch", "mp.Queue"), 25.0),
        ("ringex-batch / zmq-batch", ratio("ringex-batch", "zmq-batch"), 1.2),
    ]
    missed = []
    for label, value, target in checks:
        verdict = "" if value >= target else "  MISSED"
        print(f"{label:26s} {value:6.1f}x  (target >= {target}x){verdict}")
        if value < target:
            missed.append(f"{label} {value:.1f}x < {target}x")
    lat_checks = [("ringex", 3.0), ("ringex-blocking", 80.0)]
    for key, target in lat_checks:
        p50 = results[key]["p50_us"]
        print(
            f"{key} p50 {p50:.1f} us (target <= {target} us){'' if p50 <= target else '  MISSED'}"
        )
        if p50 > target:
            missed.append(f"{key} p50 {p50:.1f} us > {target} us")

    doc = {
        "rounds": args.rounds,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "results": list(results.values()),
        "ratios": {label: value for label, value, _ in checks},
        "soak": {
            "records": args.soak,
            "consumer_rss_kib": out.rss_kib,
            "producer_rss_kib": producer_rss,
            "growth_kib": max(growth, producer_growth),
        },
    }
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
    # in the file too, as every bench's (review 65: a failed run's read as a good one's)
    doc["failures"] = failures
    return conclude(args.out, doc, {"records in order, no RSS growth": not failures}, missed)


if __name__ == "__main__":
    sys.exit(main())
