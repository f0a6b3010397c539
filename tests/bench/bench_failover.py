"""`make bench-failover`: what replication costs the whole primary, and how long failover takes.

```
load generator (this process)     primary (ringex run --detach)               standby
  N FIX sessions ──TCP──► gateway ─► router ─journal─► source ──TCP──► standby: append,
                 ◄──TCP── reports ◄─ matcher ◄─┘ (sync: once acked)  ◄──Ack── fsync, ack
```

1. The replication round trip alone: this process appends batches to a journal as the router
   does and waits on the acknowledgement word (``SyncGate``) of a real source and standby
   process; p50/p99 per batch size, beside the same appends without replication.
2. Three primaries, each fresh, same load, --rounds times interleaved: replication ``off``,
   ``async`` and ``sync`` (``sync_timeout_ms = 0``: every acknowledged order is on the
   standby). Each gets the open-loop FIX load of ``bench_pipeline`` (latency from the
   *planned* send time): a latency phase at --rate, then a throughput phase offered --max-rate
   (above what this machine sustains, so acks/s is the capacity). Best of the rounds per mode.
3. Failover from each replicated pair, under load: fresh FIX sessions send orders at
   ``CRASH_RATE`` a second, and ``CRASH_AFTER_S`` in, every process of the primary is
   SIGKILLed while they flow (a crash); then ``scripts/failover.py promote`` as an operator
   would run it, timed from the kill until the promoted instance's gateway acknowledges a new
   order (detecting the crash is not counted). The standby holds its promotion prestarted
   (``procs/supervisor/promotion.py``), and the bench checks that promote used it.

Answer checks: every order acked exactly once in every phase; after the load the standby's
journal has the primary's history (same last seq, same history hash) for async and sync; the
promoted instance holds every order the clients saw acknowledged before the crash (their
OrderIDs) in sync mode, and in async mode loses at most the lag (the entries the dead
primary journaled past the seq where the promoted epoch begins); it takes a new order.
Targets (issue 9): sync keeps >= 70% of the throughput without replication; failover <= 2 s
(the worst of the rounds). Writes ``var/bench/failover.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from config import load_profile
from config.schema import RingexConfig
from procs.admin.client import AdminClient
from procs.common.epochs import Epochs
from procs.common.journal import JournalReader
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import CreateAccount, NewOrder, Transfer
from procs.common.replication_ack import AckBlock, SyncGate, ack_dir
from procs.common.run_files import read_status
from procs.common.topology import journal_dir, users_path
from procs.common.users import UserStore
from procs.replica.wire import History
from shm.inspect import remove_instance
from shm.liveness import pid_alive
from tests.bench.fix_load import SOH, Session, drive, free_port, send_order
from tests.bench.report import conclude, percentile

TARGETS = {"sync throughput / off": 0.70, "failover s": 2.0}
#: The drill's crash: orders flow at this rate for this long, then the primary is killed.
CRASH_RATE = 500
CRASH_AFTER_S = 1.5
CLI = [sys.executable, "-m", "procs.cli"]
WORK = Path("var/bench/failover")


def round_trip(
    batches: tuple[int, ...], rounds: int, checks: dict[str, bool]
) -> list[dict[str, Any]]:
    """Append ``rounds`` batches of each size as the router does, and wait for the standby's
    acknowledgement of each; the same appends without replication for comparison."""
    base = WORK / "round-trip"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    port, tag = free_port(), f"bf{os.getpid()}r"
    primary, standby = base / "primary.toml", base / "standby.toml"
    primary.write_text(f'instance = "{tag}p"\nvar_dir = "{base}"\n'
                       f'[replication]\nlisten_port = {port}\nmode = "sync"\n')  # fmt: skip
    standby.write_text(f'instance = "{tag}s"\nvar_dir = "{base}"\n'
                       f'[replication]\nprimary = "127.0.0.1:{port}"\n')  # fmt: skip
    cfg = load_profile(str(primary))
    codec = RecordCodec()
    journal = JournalWriter(
        journal_dir(cfg), slot_size=codec.slot_size, schema_id=codec.journal_schema_id
    )
    block = AckBlock(ack_dir(cfg.var_dir, cfg.instance))
    gate = SyncGate(block, 0)
    replica = [sys.executable, "-m", "procs.replica.main"]
    procs = [subprocess.Popen([*replica, role, "--profile", str(path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for role, path in (("source", primary), ("standby", standby))]  # fmt: skip
    rows = []
    try:
        seq = 1
        journal.append(1, codec.encode_slot(CreateAccount(1, 5, 0, 0, 1, 7)), 1)
        block.appended(1)
        gate.wait(1)  # the standby is connected and has seq 1
        for n in batches:
            for replicated in (False, True):
                took = []
                for _ in range(rounds):
                    first, seq = seq + 1, seq + n
                    images = b"".join(
                        codec.encode_slot(Transfer(s, 6, 0, 0, s, 7, 1, 1, s))
                        for s in range(first, seq + 1)
                    )
                    started = time.perf_counter_ns()
                    journal.append(first, images, n)
                    if replicated:
                        block.appended(seq)
                        gate.wait(seq)
                    took.append(time.perf_counter_ns() - started)
                    time.sleep(0.001)
                what = "append + standby ack" if replicated else "append alone"
                rows.append({
                    "name": f"round trip, batch of {n}: {what}", "batch": n,
                    "replicated": replicated, "p50_us": int(percentile(took, 0.5)) // 1000,
                    "p99_us": int(percentile(took, 0.99)) // 1000,
                })  # fmt: skip
                print(f"{rows[-1]['name']:42} p50 {rows[-1]['p50_us']:>6,} us "
                      f"p99 {rows[-1]['p99_us']:>6,} us")  # fmt: skip
        checks["round trip: the standby acknowledged every batch"] = block.acked_seq == seq
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
        journal.close()
        block.close()
    return rows


def write_profile(
    path: Path, instance: str, fix_port: int, replication: str, fsync: str = "batch"
) -> Path:
    path.write_text(
        f'instance = "{instance}"\nvar_dir = "{path.parent / "var"}"\n'
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        '[wait]\nstrategy = "blocking"\n'
        "[risk]\nmax_commands_per_s = 1000000000\nmax_open_orders = 1000000\n"
        f'[journal]\nfsync = "{fsync}"\n'
        f'[[gateways]]\nname = "gw1"\nid = 1\nport = {fix_port}\nmax_messages_per_s = 1000000\n'
        f"[replication]\n{replication}"
    )
    return path


class Deployment:
    """A primary and, unless replication is off, its standby: profiles, start, stop."""

    def __init__(self, mode: str, sessions: list[str]) -> None:
        self.mode = mode
        self.sessions = sessions
        base = WORK / mode
        shutil.rmtree(base, ignore_errors=True)
        (base / "p").mkdir(parents=True)
        (base / "s").mkdir(parents=True)
        tag = f"bf{os.getpid()}{mode[0]}"
        self.port = free_port()
        self.standby_port = free_port()
        repl_port = free_port()
        repl = "" if mode == "off" else f'listen_port = {repl_port}\nmode = "{mode}"\n'
        repl += "sync_timeout_ms = 0\n" if mode == "sync" else ""
        self.primary = write_profile(base / "p" / "primary.toml", tag + "p", self.port, repl)
        self.standby: Path | None = None
        if mode != "off":
            self.standby = write_profile(
                base / "s" / "standby.toml", tag + "s", self.standby_port,
                f'primary = "127.0.0.1:{repl_port}"\n',
            )  # fmt: skip

    def start(self) -> None:
        for path in (self.primary, self.standby):
            if path is not None:
                subprocess.run([*CLI, "run", "--config", str(path), "--detach"],
                               check=True, capture_output=True)  # fmt: skip
        cfg = load_profile(str(self.primary))
        admin = AdminClient(cfg)
        for k in range(len(self.sessions)):
            account = 100 + k
            admin.create_account(account)
            admin.transfer(account, "USD", "100000000")
            admin.transfer(account, "BTC", "1000000")
        admin.close()
        users = UserStore(users_path(cfg))  # the standby is shipped the primary's
        for k, name in enumerate(self.sessions):
            users.add(name, "pw", 100 + k, n=2**10)

    def stop(self) -> None:
        for path in (self.primary, self.standby, self.promoted):
            if path is not None and path.exists():
                subprocess.run([*CLI, "stop", "--config", str(path)], check=False,
                               capture_output=True)  # fmt: skip
                remove_instance(load_profile(str(path)).instance)

    @property
    def promoted(self) -> Path | None:
        return None if self.standby is None else self.standby.with_suffix(".promoted.toml")


async def load(
    port: int, names: list[str], phases: list[tuple[str, int, float]]
) -> list[dict[str, Any]]:
    sessions = [Session(name, port) for name in names]
    await asyncio.gather(*(s.logon() for s in sessions))
    rows = []
    for phase, rate, seconds in phases:
        rows.append((await drive(sessions, rate, seconds, phase)).row())
    for s in sessions:
        if s.writer is not None:
            s.writer.close()
    return rows


def journal_state(cfg: RingexConfig) -> tuple[int, bytes]:
    """The journal's last seq and history hash (as ``scripts/failover.py status`` compares)."""
    codec = RecordCodec()
    reader = JournalReader(
        journal_dir(cfg), slot_size=codec.slot_size, schema_id=codec.journal_schema_id
    )
    history, last = History(), 0
    for seq, image in reader.entries(1):
        history.update(image)
        last = seq
    return last, history.digest()


def order_ids_in(cfg: RingexConfig) -> set[int]:
    """The exchange order ids of the journal's NewOrders (the router stamps them)."""
    codec = RecordCodec()
    reader = JournalReader(
        journal_dir(cfg), slot_size=codec.slot_size, schema_id=codec.journal_schema_id
    )
    commands = (codec.decode_slot(image) for _seq, image in reader.entries(1))
    return {c.order_id for c in commands if isinstance(c, NewOrder)}


def new_orders_from(cfg: RingexConfig, first_seq: int) -> int:
    """The NewOrders journaled at ``first_seq`` or later: on a promoted instance, from the
    seq its epoch begins at, the orders it took itself (the primary's history precedes it)."""
    codec = RecordCodec()
    reader = JournalReader(
        journal_dir(cfg), slot_size=codec.slot_size, schema_id=codec.journal_schema_id
    )
    images = (image for _seq, image in reader.entries(max(1, first_seq)))
    return sum(isinstance(codec.decode_slot(image), NewOrder) for image in images)


async def crash_under_load(
    port: int, names: list[str], pids: list[int], rate: int, before_s: float
) -> tuple[set[int], float]:
    """Orders at ``rate`` a second from fresh sessions; ``before_s`` in, SIGKILL every process
    of the primary (``pids``) while they flow. Returns the OrderIDs (37) of every New report
    the clients got before the crash, and the perf counter of the kill."""
    sessions = [Session(name, port) for name in names]
    await asyncio.gather(*(s.logon() for s in sessions))
    acked: set[int] = set()

    async def read(session: Session) -> None:
        assert session.reader is not None
        buf = b""
        while True:
            try:
                data = await session.reader.read(1 << 16)
            except OSError:  # the crash
                return
            if not data:
                return
            buf += data
            while (end := buf.find(b"\x0110=")) >= 0 and (stop := buf.find(SOH, end + 4)) >= 0:
                message, buf = buf[: stop + 1], buf[stop + 1 :]
                if b"\x0135=8\x01" in message and b"\x01150=0\x01" in message:
                    acked.add(int(message.split(b"\x0137=", 1)[1].split(SOH, 1)[0]))

    readers = [asyncio.create_task(read(s)) for s in sessions]
    start, sent = time.perf_counter(), 0
    while time.perf_counter() - start < before_s:
        while sent < int((time.perf_counter() - start) * rate) + 1:
            session = sessions[sent % len(sessions)]
            side = b"1" if (sent // len(sessions)) % 2 == 0 else b"2"
            send_order(session, b"crash-%d" % sent, side, 0)
            sent += 1
        with contextlib.suppress(OSError):
            await asyncio.gather(*(s.writer.drain() for s in sessions if s.writer))
        await asyncio.sleep(0.002)
    killed = time.perf_counter()
    for pid in pids:  # the crash: every process of the primary at once, orders in flight
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    await asyncio.wait(readers, timeout=10)  # each ends as its connection drops
    for task in readers:
        task.cancel()
    for s in sessions:
        if s.writer is not None:
            s.writer.close()
    return acked, killed


def wait_caught_up(primary: RingexConfig, standby: RingexConfig, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if journal_state(primary) == journal_state(standby):
            return True
        time.sleep(0.05)
    return False


async def first_ack(port: int, name: str, deadline_s: float) -> float:
    """Connect (retrying until the gateway listens), log on, send one order; the perf
    counter when its New report arrives."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            session = Session(name, port)
            await session.logon()
            break
        except (OSError, asyncio.IncompleteReadError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.005)
    assert session.writer is not None and session.reader is not None
    session.writer.write(
        session.message(b"D", (11, b"after-failover"), (55, "BTC-USD"), (54, b"1"),
                        (60, b"20260101-00:00:00.000"), (38, "1"), (40, "2"),
                        (44, "99.00"), (59, "1"))
    )  # fmt: skip
    await session.writer.drain()
    while True:
        message = await asyncio.wait_for(session.reader.readuntil(b"\x0110="), deadline_s)
        await session.reader.readuntil(SOH)
        if b"\x0135=8\x01" in message and b"\x01150=0\x01" in message:
            done = time.perf_counter()
            session.writer.close()
            return done


def failover(deploy: Deployment, checks: dict[str, bool]) -> dict[str, Any]:
    assert deploy.standby is not None and deploy.promoted is not None
    primary = load_profile(str(deploy.primary))
    status = read_status(primary) or {}
    found = [status.get("supervisor_pid")] + [p.get("pid") for p in status.get("processes", [])]
    pids = [pid for pid in found if isinstance(pid, int)]
    acked, killed = asyncio.run(
        crash_under_load(deploy.port, deploy.sessions, pids, CRASH_RATE, CRASH_AFTER_S)
    )
    promote = subprocess.run(
        [sys.executable, "scripts/failover.py", "promote",
         "--primary", str(deploy.primary), "--standby", str(deploy.standby)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    promoted_at = time.perf_counter()
    acked_at = asyncio.run(first_ack(deploy.standby_port, deploy.sessions[0], 30))
    print(promote.stdout.rstrip())
    checks["failover: the promote script succeeded"] &= promote.returncode == 0
    prestarted = "its processes are prestarted" in promote.stdout  # what this bench times
    checks["failover: the standby's held processes were released"] &= prestarted
    promoted = load_profile(str(deploy.promoted))
    after = order_ids_in(promoted)
    lost = acked - after
    # what the standby had not received at the crash: the dead primary's journal beyond the
    # seq where the promoted epoch begins
    began = Epochs.load(journal_dir(promoted)).history[-1][1]
    lag = max(0, journal_state(primary)[0] - (began - 1))
    if deploy.mode == "sync":
        checks["failover (sync): no order acknowledged before the crash is lost"] &= (
            bool(acked) and not lost
        )
    else:
        checks[f"failover ({deploy.mode}): the orders lost are at most the lag"] &= (
            bool(acked) and len(lost) <= lag
        )
    # its own orders: journaled in its epoch (every order of the load phases precedes it)
    checks["failover: the promoted instance took a new order"] &= (
        new_orders_from(promoted, began) > 0
    )
    return {
        "name": "failover (SIGKILL primary -> promoted gateway acks an order)",
        "failover_s": acked_at - killed,
        "promote_script_s": promoted_at - killed,
        "first_order_s": acked_at - promoted_at,
        "mode": deploy.mode,
        "prestarted": prestarted,
        "orders_acked_before_the_crash": len(acked),
        "acked_orders_lost": len(lost),
        "lag_at_crash": lag,
        "orders_on_the_promoted_instance": len(after),
        "promote_output": promote.stdout.strip().splitlines(),
    }


def run_mode(
    mode: str, names: list[str], phases: list[tuple[str, int, float]], checks: dict[str, bool]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """One fresh deployment under the load; failover too where it is a replicated pair (async
    or sync)."""
    deploy = Deployment(mode, names)
    rows: dict[str, dict[str, Any]] = {}
    failed_over = None
    try:
        deploy.start()
        for (phase, rate, _s), row in zip(
            phases, asyncio.run(load(deploy.port, names, phases)), strict=True
        ):
            row["name"] = f"replication {mode}, {phase}"
            row["mode"], row["phase"] = mode, phase
            rows[phase] = row
            checks[f"{row['name']}: every order acked once"] &= (
                row["acks"] == row["orders"] and row["duplicate_acks"] == 0
            )
            print(
                f"{mode:5} {phase:10} offered {rate:>6,}/s: {row['ops_per_s']:>8,.0f} acks/s; "
                f"ack p50 {row['ack_p50_us']:>9,} us p99 {row['ack_p99_us']:>9,} us"
            )
        if deploy.standby is not None:
            same = wait_caught_up(
                load_profile(str(deploy.primary)), load_profile(str(deploy.standby))
            )
            checks[f"replication {mode}: the standby has the primary's history"] &= same
        if deploy.standby is not None:
            failed_over = failover(deploy, checks)
            print(
                f"failover ({mode}): {failed_over['failover_s']:.2f} s from SIGKILL to the first "
                f"order acked by the promoted instance (promote script "
                f"{failed_over['promote_script_s']:.2f} s, then "
                f"{failed_over['first_order_s']:.2f} s to connect and get an ack); "
                f"{failed_over['orders_acked_before_the_crash']} orders acked before the crash, "
                f"{failed_over['acked_orders_lost']} lost (lag {failed_over['lag_at_crash']})"
            )
    finally:
        deploy.stop()
    return rows, failed_over


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--rate", type=int, default=1_000, help="latency phase, orders/s")
    ap.add_argument("--max-rate", type=int, default=12_000, help="throughput phase, offered")
    ap.add_argument("--seconds", type=float, default=3.0, help="per phase")
    ap.add_argument("--rounds", type=int, default=2, help="each mode's deployment, interleaved")
    ap.add_argument("--modes", default="off,async,sync", help="comma-separated subset")
    ap.add_argument("--trips", type=int, default=300, help="round trips per batch size")
    ap.add_argument("--out", default="var/bench/failover.json")
    args = ap.parse_args()
    print(f"bench-failover: python {platform.python_version()}, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    names = [f"S{k}" for k in range(args.sessions)]
    modes = args.modes.split(",")
    phases = [("latency", args.rate, args.seconds), ("throughput", args.max_rate, args.seconds)]
    results: list[dict[str, Any]] = []
    checks: collections.defaultdict[str, bool] = collections.defaultdict(lambda: True)
    runs: dict[str, list[dict[str, dict[str, Any]]]] = {m: [] for m in modes}
    failovers: list[dict[str, Any]] = []
    if args.trips:
        results += round_trip((1, 100), args.trips, checks)
    for _round in range(args.rounds):
        for mode in modes:
            rows, failed_over = run_mode(mode, names, phases, checks)
            runs[mode].append(rows)
            results += rows.values()
            if failed_over is not None:
                failovers.append(failed_over)
                results.append(failed_over)
    # best of the rounds per mode (the machine's noise only ever slows a run down): the round
    # of the most orders/s, and the round of the lowest latency p99 with its own p50
    best = {}
    for m, rs in runs.items():
        fastest = max((r["throughput"] for r in rs), key=lambda t: t["ops_per_s"])
        calmest = min((r["latency"] for r in rs), key=lambda t: t["ack_p99_us"])
        best[m] = {
            "orders_per_s": fastest["ops_per_s"],
            "latency_p50_us": calmest["ack_p50_us"],
            "latency_p99_us": calmest["ack_p99_us"],
            "throughput_p99_us": fastest["ack_p99_us"],
        }
    summary: dict[str, Any] = {"best": best}
    print(f"\nbest of {args.rounds} round(s), at {args.rate:,}/s for latency:")
    for m, b in best.items():
        print(f"  {m:5} {b['orders_per_s']:>8,.0f} orders/s; ack p50 {b['latency_p50_us']:>7,} us "
              f"p99 {b['latency_p99_us']:>7,} us")  # fmt: skip
    missed = []
    if "off" in best:
        for m in ("async", "sync"):
            if m in best:
                ratio = best[m]["orders_per_s"] / best["off"]["orders_per_s"]
                extra = best[m]["latency_p99_us"] - best["off"]["latency_p99_us"]
                summary[f"{m} / off orders/s"] = ratio
                summary[f"{m} - off p99 us"] = extra
                print(f"  {m} / off: {ratio:.2f} x the orders/s, p99 {extra:+,} us")
        ratio_ok = (
            "sync" in best and summary["sync / off orders/s"] >= TARGETS["sync throughput / off"]
        )
        if ratio_ok and best["off"]["orders_per_s"] >= 0.95 * args.max_rate:
            # off kept up with its offer: its capacity is unknown, a ratio met may be one of
            # ceilings; one missed is a miss all the same (off's capacity is at least that)
            missed.append(
                f"sync keeps >= 70% of off's orders/s: not judged, off kept up with the "
                f"{args.max_rate:,}/s offered (--max-rate higher to judge it)"
            )
        elif "sync" in best and summary["sync / off orders/s"] < TARGETS["sync throughput / off"]:
            missed.append(f"sync keeps {summary['sync / off orders/s']:.0%} of the orders/s < 70%")
    if failovers:
        worst = max(f["failover_s"] for f in failovers)
        summary["failover_s"] = [round(f["failover_s"], 3) for f in failovers]
        summary["failover_worst_s"] = worst
        print(f"  failover: {', '.join(f'{f:.2f}' for f in summary['failover_s'])} s")
        if worst > TARGETS["failover s"]:
            missed.append(f"failover took {worst:.2f} s > 2 s (worst of {len(failovers)})")
    doc = {
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(),
                 "load_1m": os.getloadavg()[0]},
        "targets": TARGETS,
        "summary": summary,
        "results": results,
    }  # fmt: skip
    return conclude(args.out, doc, dict(checks), missed)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
