"""`make bench-pipeline`: the whole exchange under FIX load, end to end.

```
load generator (this process, asyncio)          the exchange (ringex run --detach)
  N sessions, NewOrderSingle on a schedule  ──TCP──►  gateway ─► router ─► matcher
  ExecutionReports: ack (150=0), fill (150=F) ◄──TCP──  gateway ◄──────────┘
```

Sessions alternate buy and sell at one price, so every second order trades: each order gets
an ack, a crossing one a fill, and the book stays small. Orders are sent on a planned schedule
(open loop) and latency is measured from the *planned* send time, so queueing delay counts
(no coordinated omission); HDR histograms (hdrhistogram) give p50/p99/p99.9.

Phases: ``latency`` at --rate orders/s for --seconds; ``throughput`` at --max-rate, reporting
the ack rate actually sustained. The answer check: every order sent got exactly one ack, no
order two (the fills are counted and reported, not checked). Writes ``var/bench/pipeline.json``
and ``var/bench/pipeline.png`` (tests/bench/plot.py).
Targets (issue 8, this 2-core machine): >= 50k orders/s sustained; at 10k orders/s order->ack
p50 <= 200 us and p99 <= 2 ms.

The full-size run of a many-core host: ``--gateways N`` runs N gateway processes (sessions
spread over them), ``--workers W`` W load processes (each offering its share of the rate,
starting each phase together; their HDR histograms are merged), ``--pin`` gives the matcher,
the router and each gateway a core of its own and the load processes the rest, and
``--no-database`` leaves the database writer out (a host without PostgreSQL). For example
``--no-database --pin --wait busy-spin --gateways 4 --workers 4 --sessions 16``.

``--soak SECONDS`` (``make bench-soak``) adds a third phase: up to --soak-rate orders/s (issue
8: 10k/s for 10 minutes) with at most --soak-window orders un-acked, sampling every process's
RSS (tests/bench/soak.py) and the p99 of each --soak-sample window. Target: no process's RSS
grows more than 5% from the end of the warm-up to the end of the soak, judged by the rise of
the least-squares line through its samples (``soak.py`` says why).
The achieved rate is reported beside the offered one; not reaching it is a figure of the
machine, not a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from config import load_profile
from config.schema import RingexConfig
from procs.admin.client import AdminClient
from procs.common.journal_writer import FSYNC_POLICIES
from procs.common.topology import users_path
from procs.common.users import UserStore
from tests.bench.cpu_watch import CpuWatch, describe
from tests.bench.fix_load import (
    Latencies,
    Phase,
    Recorder,
    Session,
    drive,
    free_port,
    load_processes,
    read_reports,
    send_order,
)
from tests.bench.plot import write_plot
from tests.bench.report import conclude
from tests.bench.ring_watch import RingWatch, describe_lags
from tests.bench.soak import RssWatch, print_growth, process_table
from tests.bench.stage_watch import StageWatch, describe_router, describe_stages

TARGETS = {
    "orders/s": 50_000,
    "latency at": 10_000,  # orders/s: where issue 8 sets the ack p50 and p99 targets
    "ack p50 us": 200,
    "ack p99 us": 2_000,
    "soak rss growth %": 5.0,
}


@dataclass
class SoakRun:
    """What one soak measured; ``report`` turns it into the JSON's ``soak`` object."""

    watch: RssWatch
    warmup_s: float
    windows: list[dict[str, Any]] = field(default_factory=list)  # one per --soak-sample
    warm_acks: int = -1  # acks when the warm-up ended (-1: not yet)
    warm_t_s: float = 0.0
    pids_after: dict[str, int] = field(default_factory=dict)
    orders: int = 0
    acks: int = 0
    fills: int = 0
    duplicate_acks: int = 0
    elapsed_s: float = 0.0
    latency: Latencies = field(default_factory=Latencies)

    def report(self, offered: int, window: int) -> dict[str, Any]:
        achieved = self.acks / self.elapsed_s
        after = achieved  # when the soak ended inside its warm-up
        if self.warm_acks >= 0:
            after = (self.acks - self.warm_acks) / (self.elapsed_s - self.warm_t_s)
        return {
            "seconds": round(self.elapsed_s, 1),
            "warmup_s": round(self.warm_t_s, 1),
            "offered_rate": offered,
            "window": window,
            "orders": self.orders,
            "acks": self.acks,
            "fills": self.fills,
            "duplicate_acks": self.duplicate_acks,
            "achieved_rate": round(achieved),
            "achieved_rate_after_warmup": round(after),
            "offered_rate_reached": achieved >= 0.95 * offered,
            "latency_from": "actual send",
            **self.latency.summary(),
            "rss_target_pct": TARGETS["soak rss growth %"],
            "rss": self.watch.growth(TARGETS["soak rss growth %"]),
            "rss_mib": self.watch.series(),
            "windows": self.windows,
        }


def soak_warmup(args: argparse.Namespace) -> float:
    """--soak-warmup, or a sixth of the soak within 10..60 s (and at most half of it)."""
    if args.soak_warmup is not None:
        return float(args.soak_warmup)
    soak = float(args.soak)
    return min(60.0, max(10.0, soak / 6), soak / 2)


async def soak(sessions: list[Session], cfg: RingexConfig, args: argparse.Namespace) -> SoakRun:
    """--soak seconds at up to --soak-rate orders/s, at most --soak-window orders un-acked.

    The window is what keeps a rate the exchange cannot sustain from queueing without bound
    (the open-loop phases above measure that queueing); here the sender holds back and the
    achieved rate is reported beside the offered one. Latency is measured from the actual send,
    one histogram per --soak-sample window, so p99 over time shows drift rather than backlog.
    RSS is sampled at the start, at every window and after the last ack.
    """
    rec, total = Recorder(), Latencies()
    run = SoakRun(RssWatch(process_table(cfg)), warmup_s=soak_warmup(args))
    run.watch.sample(0.0)
    readers = [asyncio.create_task(read_reports(s, rec)) for s in sessions]
    interval_ns = 1e9 / args.soak_rate
    every_ns = int(args.soak_sample * 1e9)
    start = time.perf_counter_ns()
    end = start + int(args.soak * 1e9)
    next_sample, last_sample, last_acks = start + every_ns, start, 0
    sent = k = 0
    while (now := time.perf_counter_ns()) < end:
        acks = sum(s.acks for s in sessions)
        room = min(int((now - start) / interval_ns) + 1 - sent, args.soak_window - (sent - acks))
        for _ in range(room):
            session = sessions[sent % len(sessions)]
            side = b"1" if (sent // len(sessions)) % 2 == 0 else b"2"
            send_order(session, b"soak-%s-%d" % (session.comp_id.encode(), sent), side, now)
            sent += 1
        k += 1
        if k % 64 == 0:
            await asyncio.gather(*(s.writer.drain() for s in sessions if s.writer))
        if now >= next_sample:
            window, rec.lat = rec.lat, Latencies()
            total.add(window)
            t_s = (now - start) / 1e9
            run.windows.append(
                {
                    "t_s": round(t_s, 2),
                    "acks_per_s": round((acks - last_acks) * 1e9 / (now - last_sample)),
                    "ack_p99_us": window.ack.get_value_at_percentile(99),
                    "fill_p99_us": window.fill.get_value_at_percentile(99),
                }
            )
            run.watch.sample(t_s)
            if run.warm_acks < 0 and t_s >= run.warmup_s:
                run.watch.mark_baseline()
                run.warm_acks, run.warm_t_s = acks, t_s
            next_sample, last_sample, last_acks = next_sample + every_ns, now, acks
        if sent - acks >= args.soak_window:
            await asyncio.sleep(0.001)  # window full: let the readers run
        else:
            await asyncio.sleep(max(0.0, (start + sent * interval_ns - now) / 1e9))
    deadline = time.monotonic() + 30
    while sum(s.acks for s in sessions) < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    elapsed_s = (time.perf_counter_ns() - start) / 1e9
    for task in readers:
        task.cancel()
    total.add(rec.lat)
    run.watch.sample(elapsed_s)
    run.pids_after = process_table(cfg)
    run.orders, run.acks = sent, sum(s.acks for s in sessions)
    run.fills, run.elapsed_s, run.latency = sum(s.fills for s in sessions), elapsed_s, total
    run.duplicate_acks = sum(s.duplicate_acks for s in sessions)
    for s in sessions:
        s.planned.clear()
        s.acks = s.fills = s.duplicate_acks = 0
    return run


def write_profile(
    path: Path, args: argparse.Namespace, ports: list[int]
) -> tuple[RingexConfig, list[int]]:
    """The bench instance's profile; with --pin, also the CPUs left for the load processes."""
    text = (
        f'instance = "bp{os.getpid()}"\nvar_dir = "{path.parent / "var"}"\n'
        + (f"router_batch = {args.router_batch}\n" if args.router_batch else "")
        + (f"[ring]\ncapacity = {args.ring_capacity}\n" if args.ring_capacity else "")
        + "[marketdata]\nenabled = false\n"
        f'[wait]\nstrategy = "{args.wait}"\n'
        "[risk]\nmax_commands_per_s = 1000000000\nmax_open_orders = 1000000\n"
        f'[journal]\nfsync = "{args.fsync}"\n'
    )
    if args.gc == "cpython":  # CPython's own collector, to compare with the [gc] policy
        text += "[gc]\nfreeze = false\nthreshold2 = 10\n"
    if args.no_database:
        text += "[database]\nenabled = false\n"
    text += "".join(
        f'[[gateways]]\nname = "gw{k + 1}"\nid = {k + 1}\nport = {port}\n'
        "max_messages_per_s = 1000000\n" + "".join(f"{o}\n" for o in args.gateway_option)
        for k, port in enumerate(ports)
    )
    path.write_text(text)
    cfg = load_profile(str(path))
    if not args.pin:
        return cfg, []
    names = [f"matcher-{m.name}" for m in cfg.matchers] + ["router"]
    names += [f"gateway-{g.name}" for g in cfg.gateways]
    cpus = sorted(os.sched_getaffinity(0))[1:]  # the first for the supervisor and the OS
    if len(cpus) < len(names) + args.workers:
        raise SystemExit(
            f"--pin needs {len(names) + args.workers + 1} CPUs ({len(names)} processes, "
            f"{args.workers} load processes, one spare), this host has {len(cpus) + 1}"
        )
    cores = ", ".join(f'"{name}" = [{cpu}]' for name, cpu in zip(names, cpus, strict=False))
    path.write_text(text + f"[supervisor]\ncores = {{ {cores} }}\n")
    print(f"pinned: {cores}; load processes on CPUs {cpus[len(names) :]}")
    return load_profile(str(path)), cpus[len(names) :]


def judge(latency: dict[str, Any], throughput: dict[str, Any], rate: int) -> list[str]:
    """The targets missed. Issue 8's latency targets are at ``TARGETS["latency at"]``
    orders/s: a latency phase run slower (the default --rate) has less queueing, so its
    figures are not judged against them (a target not judged is listed, never met)."""
    problems = []
    acked, offered = throughput["ops_per_s"], throughput.get("offered_rate", 0)
    if offered and offered < TARGETS["orders/s"] and acked >= 0.95 * offered:
        # offered less than the target and kept up: a figure of the load, not the exchange's
        # capacity (offered more and short of it is a miss: review 66)
        problems.append(
            f"sustained >= {TARGETS['orders/s']:,} orders/s: not judged, the throughput phase "
            f"was offered {offered:,}/s and kept up ({acked:,.0f} acks/s; --max-rate above "
            f"{TARGETS['orders/s']:,} to judge it)"
        )
    elif acked < TARGETS["orders/s"]:
        problems.append(f"sustained {acked:,.0f} orders/s < {TARGETS['orders/s']:,}")
    at, p50, p99 = TARGETS["latency at"], TARGETS["ack p50 us"], TARGETS["ack p99 us"]
    if rate < at:
        problems.append(
            f"ack p50 <= {p50} us and p99 <= {p99} us at {at:,}/s: not judged, the latency "
            f"phase ran at {rate:,}/s (p50 {latency['ack_p50_us']} us, p99 "
            f"{latency['ack_p99_us']} us there; --rate {at} to judge them)"
        )
        return problems
    if latency["ack_p50_us"] > p50:
        problems.append(f"ack p50 {latency['ack_p50_us']} us > {p50} (at {rate}/s)")
    if latency["ack_p99_us"] > p99:
        problems.append(f"ack p99 {latency['ack_p99_us']} us > {p99} (at {rate}/s)")
    return problems


def print_phase(phase: str, row: dict[str, Any]) -> None:
    print(
        f"{phase:10} offered {row['offered_rate']:>7,}/s: {row['ops_per_s']:>9,.0f} acks/s, "
        f"{row['acks']:,}/{row['orders']:,} acked, {row['fills']:,} fills; "
        f"ack p50 {row['ack_p50_us']:,} us p99 {row['ack_p99_us']:,} us "
        f"p99.9 {row['ack_p999_us']:,} us; fill p50 {row['fill_p50_us']:,} us; "
        f"sent late p50 {row['send_p50_us']:,} us p99 {row['send_p99_us']:,} us"
    )


def print_soak(doc: dict[str, Any]) -> None:
    print(
        f"soak       {doc['seconds']:.0f} s, offered {doc['offered_rate']:,}/s (window "
        f"{doc['window']:,}): achieved {doc['achieved_rate']:,} acks/s "
        f"({doc['achieved_rate_after_warmup']:,} after the warm-up), "
        f"{doc['acks']:,}/{doc['orders']:,} acked, {doc['fills']:,} fills; ack p50 "
        f"{doc['ack_p50_us']:,} us p99 {doc['ack_p99_us']:,} us max {doc['ack_max_us']:,} us "
        "(from the actual send)"
    )
    if not doc["offered_rate_reached"]:
        print(
            f"  the offered {doc['offered_rate']:,}/s was not reached: {doc['achieved_rate']:,}/s "
            f"is what this machine ({os.cpu_count()} CPUs) sustains; the sender held back rather "
            "than queue without bound (a figure, not a failure)"
        )
    print_growth(doc["rss"], doc["rss_target_pct"], doc["warmup_s"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--rate", type=int, default=2_000, help="latency phase, orders/s")
    ap.add_argument("--max-rate", type=int, default=20_000, help="throughput phase, offered")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--fsync", default="batch", choices=list(FSYNC_POLICIES))
    ap.add_argument(
        "--gc",
        default="policy",
        choices=["policy", "cpython"],
        help="the processes' collector: ringex's [gc] defaults, or CPython's own",
    )
    ap.add_argument(
        "--wait", default="blocking", choices=["blocking", "sleep", "yield", "busy-spin"],
        help="the instance's wait strategy (busy-spin wants a core per process)",
    )  # fmt: skip
    ap.add_argument("--soak", type=float, default=0, metavar="SECONDS", help="then soak (0: no)")
    ap.add_argument("--soak-rate", type=int, default=10_000, help="soak, offered orders/s")
    ap.add_argument("--soak-window", type=int, default=1_024, help="soak, max orders un-acked")
    ap.add_argument("--soak-sample", type=float, default=5.0, help="soak, seconds per sample")
    ap.add_argument("--soak-warmup", type=float, help="soak, seconds before the RSS baseline")
    ap.add_argument("--out", default="var/bench/pipeline.json", help="and a .png beside it")
    # the full-size run of a many-core host: gateways and load processes side by side
    ap.add_argument("--gateways", type=int, default=1, help="gateway processes (own ports)")
    ap.add_argument("--workers", type=int, default=1, help="load-generator processes")
    ap.add_argument(
        "--pin", action="store_true",
        help="a core each for the matcher, the router and the gateways; the load the rest",
    )  # fmt: skip
    ap.add_argument(
        "--no-database", action="store_true", help="no database writer (a host without PostgreSQL)"
    )
    # the pipeline's slack, for a many-core host's full-size run (0: the config's default)
    ap.add_argument("--ring-capacity", type=int, default=0, help="slots per ring (power of 2)")
    ap.add_argument("--router-batch", type=int, default=0, help="commands per router step")
    ap.add_argument(
        "--gateway-option", action="append", default=[], metavar="KEY=VALUE",
        help="a TOML line for every [[gateways]] table (say idle_spin_us = 0); repeatable",
    )  # fmt: skip
    args = ap.parse_args()
    if args.soak and args.workers > 1:
        ap.error("--soak runs in one load process: leave --workers at 1")
    work = Path("var/bench/pipeline")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ports = [free_port() for _ in range(args.gateways)]
    profile = work / "bench.toml"
    cfg, workers_cpus = write_profile(profile, args, ports)
    cli = [sys.executable, "-m", "procs.cli"]
    subprocess.run([*cli, "run", "--config", str(profile), "--detach"], check=True)
    results: list[dict[str, Any]] = []
    soaks: list[SoakRun] = []
    problems: list[str] = []
    phases = (("latency", args.rate), ("throughput", args.max_rate))
    try:
        admin = AdminClient(cfg)
        users = UserStore(users_path(cfg))
        names = [f"S{k}" for k in range(args.sessions)]
        for k, name in enumerate(names):
            account = 100 + k
            admin.create_account(account)
            admin.transfer(account, "USD", "100000000")
            admin.transfer(account, "BTC", "1000000")
            users.add(name, "pw", account, n=2**10)
        admin.close()
        homes = [ports[k % len(ports)] for k in range(args.sessions)]  # round-robin

        def report(phase: str, run: Phase) -> None:
            row = run.row()
            row["name"] = f"pipeline {phase}"
            row["cpu_pct"] = watch.share(*run.window)
            row["ring_lags"] = ring_watch.lags(*run.window)
            row["inside"] = stage_watch.stages(*run.window)
            row["router_time"] = stage_watch.router_time(*run.window)
            results.append(row)
            print_phase(phase, row)
            print(f"{'':10} {describe(row['cpu_pct'], args.workers)}")
            print(f"{'':10} {describe_lags(row['ring_lags'])}")
            print(f"{'':10} {describe_stages(row['inside'])}")
            print(f"{'':10} {describe_router(row['router_time'])}")

        async def run() -> None:
            sessions = [Session(name, home) for name, home in zip(names, homes, strict=True)]
            await asyncio.gather(*(s.logon() for s in sessions))
            for phase, rate in phases:
                report(phase, await drive(sessions, rate, args.seconds, phase))
            if args.soak:
                print(
                    f"soak: {args.soak:g} s at up to {args.soak_rate:,} orders/s, RSS every "
                    f"{args.soak_sample:g} s (issue 8's soak is 10 minutes: make bench-soak "
                    "SOAK=600)"
                )
                soaks.append(await soak(sessions, cfg, args))
            for s in sessions:
                if s.writer is not None:
                    s.writer.close()

        with (
            CpuWatch(process_table(cfg)) as watch,
            RingWatch(cfg) as ring_watch,
            StageWatch(cfg) as stage_watch,
        ):
            if args.workers == 1:
                uvloop.run(run())
            else:
                for (phase, _), run_ in zip(
                    phases, load_processes(args, names, homes, phases, workers_cpus), strict=True
                ):
                    report(phase, run_)
    finally:
        subprocess.run([*cli, "stop", "--config", str(profile)], check=False)
    checks = {
        f"{r['name']}: every order acked once": r["acks"] == r["orders"]
        and r["duplicate_acks"] == 0
        for r in results
    }
    latency, throughput = results
    problems += judge(latency, throughput, args.rate)
    doc: dict[str, Any] = {"results": results}
    if soaks:
        done = soaks[0]
        doc["soak"] = soak_doc = done.report(args.soak_rate, args.soak_window)
        print_soak(soak_doc)
        checks["soak: every order acked once"] = (
            done.acks == done.orders and done.duplicate_acks == 0
        )
        checks["soak: no process exited or restarted"] = (
            not done.watch.gone and done.pids_after == done.watch.pids
        )
        problems += [
            f"RSS of {r['process']} rose {r['trend_pct']:+.2f}% over the soak, by its trend (> "
            f"{TARGETS['soak rss growth %']:g}%, judged after a {done.warm_t_s:.0f} s warm-up)"
            if r["judged"]
            else f"RSS of {r['process']}: not judged, {r['samples_judged']} samples after the "
            f"warm-up (3 draw a trend: a longer --soak or a shorter --soak-sample)"
            for r in soak_doc["rss"]
            if not r["within_target"] and not r.get("gone")
        ]
    png = Path(args.out).with_suffix(".png")
    write_plot(png, latency, doc.get("soak"))
    doc["plot"] = str(png)
    print(f"wrote {png}")
    return conclude(args.out, doc, checks, problems)


if __name__ == "__main__":
    sys.exit(main())
