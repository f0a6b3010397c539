"""`python -m tests.bench.bench_journal`: the router's journal against peers, same run, same disk.

```
append   JournalWriter.append of real NewOrder slot images (one per command, seq = command),
         batches of 256 and 4096: fsync "batch" (one fsync a batch: group commit) and "none";
         p50 / p99 of one append (build + write + fsync)
peers    sqlite3, WAL, synchronous=FULL: executemany of the same (seq, blob) rows, one commit
         a batch; a naive log: one write + fsync a record (--naive-records of them)
replay   JournalReader.entries: read + CRC verify, then + RecordCodec.decode_slot, from the page
         cache (just written) and cold (the segments' pages dropped with posix_fadvise first);
         peer: SELECT seq, image ORDER BY seq from the sqlite database (+ decode)
restart  an exchange snapshot, then --restart-tail journaled commands (the exchange-core mix
         through the real sequencer, accounts and matcher): ``recover`` timed as the router
         starts (pipelined: matchers in a forked child) and in one process, the states it
         rebuilds checked against the live one
```

The answer check: every replay yields seqs 1..N in order, images byte-equal to what was
appended, and every 101st record decoded equal to its original. Targets (issue): >= 300k
commands/s appended with per-batch fsync, >= 300k commands/s replayed, a restart from a
snapshot plus a 1M-command tail in <= 5 s. Data lives under ``var/bench/journal-data``
and is removed afterwards; results go to ``var/bench/journal.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from config.schema import JournalConfig, RingexConfig, RiskConfig
from procs.common.journal import JournalReader, list_segments
from procs.common.journal_writer import FsyncPolicy, JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import (
    CancelOrder,
    CreateAccount,
    NewOrder,
    Record,
    ReplaceOrder,
    Transfer,
)
from procs.common.topology import journal_dir
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.core.recovery import Recovered, fresh, recover, write_snapshot
from tests.bench.matcher_mixes import CANCEL, NEW, exchange_core_mix
from tests.bench.report import conclude, percentile

TARGET: dict[str, float] = {
    "append fsync ops/s": 300_000,
    "replay ops/s": 300_000,
    "restart s per 1M": 5.0,
}
CODEC = RecordCodec()
SLOT = CODEC.slot_size


def command(seq: int) -> NewOrder:
    return NewOrder(
        seq=seq, ts_ns=1_763_000_000_000_000_000 + seq * 1_000, gateway=1 + seq % 4,
        session=seq % 97, client_ref=seq, account=1_000 + seq % 500, symbol=1 + seq % 8,
        order_id=seq, side=Side.BUY if seq % 2 else Side.SELL, ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC, flags=0, stp=StpMode.CANCEL_NEWEST,
        price=1_000_000 + (seq * 7919) % 2_000, qty=1 + seq % 100, stop_price=0, display_qty=0,
    )  # fmt: skip


def pct(samples: list[float], q: float) -> float:
    return percentile(samples, q)


def fs_type(path: Path) -> str:
    """The file system under ``path`` (the longest mount point that contains it)."""
    best, kind = "", "?"
    resolved = str(path.resolve())
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            mount = fields[1]
            inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, kind = mount, f"{fields[2]} on {fields[0]}"
    return kind


# -- append -------------------------------------------------------------------------------


def append_journal(
    data: Path, images: memoryview, n: int, batch: int, fsync: FsyncPolicy, segment_bytes: int
) -> dict[str, Any]:
    shutil.rmtree(data, ignore_errors=True)
    writer = JournalWriter(
        data,
        slot_size=SLOT,
        schema_id=CODEC.journal_schema_id,
        fsync=fsync,
        segment_bytes=segment_bytes,
    )
    lat: list[float] = []
    append, clock = writer.append, time.perf_counter_ns
    start = clock()
    for lo in range(0, n, batch):
        count = min(batch, n - lo)
        t0 = clock()
        append(lo + 1, images[lo * SLOT : (lo + count) * SLOT], count)
        lat.append((clock() - t0) / 1000)
    elapsed = (clock() - start) / 1e9
    durable = writer.durable_seq
    writer.close()
    return {
        "ops_per_s": n / elapsed,
        "append_p50_us": pct(lat, 0.5),
        "append_p99_us": pct(lat, 0.99),
        "durable_ok": durable == n,
    }


def append_sqlite(db: Path, images: memoryview, n: int, batch: int) -> dict[str, Any]:
    for p in db.parent.glob(db.name + "*"):
        p.unlink()
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, image BLOB NOT NULL)")
    lat: list[float] = []
    clock = time.perf_counter_ns
    start = clock()
    for lo in range(0, n, batch):
        count = min(batch, n - lo)
        t0 = clock()
        rows = [(lo + k + 1, images[(lo + k) * SLOT : (lo + k + 1) * SLOT]) for k in range(count)]
        con.execute("BEGIN")
        con.executemany("INSERT INTO journal VALUES (?, ?)", rows)
        con.execute("COMMIT")
        lat.append((clock() - t0) / 1000)
    elapsed = (clock() - start) / 1e9
    con.close()
    return {
        "ops_per_s": n / elapsed,
        "append_p50_us": pct(lat, 0.5),
        "append_p99_us": pct(lat, 0.99),
    }


def append_naive(path: Path, images: memoryview, n: int) -> dict[str, Any]:
    """One write and one fsync a record: what a journal without group commit pays."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    lat: list[float] = []
    clock = time.perf_counter_ns
    start = clock()
    for k in range(n):
        t0 = clock()
        os.write(fd, images[k * SLOT : (k + 1) * SLOT])
        os.fsync(fd)
        lat.append((clock() - t0) / 1000)
    elapsed = (clock() - start) / 1e9
    os.close(fd)
    path.unlink()
    return {
        "ops_per_s": n / elapsed,
        "append_p50_us": pct(lat, 0.5),
        "append_p99_us": pct(lat, 0.99),
    }


# -- replay -------------------------------------------------------------------------------


def drop_cache(data: Path) -> None:
    for _, path in list_segments(data):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # clean pages: fsynced
        finally:
            os.close(fd)


def replay_journal(data: Path, n: int, decode: bool) -> float:
    reader = JournalReader(data, slot_size=SLOT, schema_id=CODEC.journal_schema_id)
    decode_slot = CODEC.decode_slot
    count = 0
    start = time.perf_counter()
    if decode:
        for _seq, image in reader.entries():
            decode_slot(image)
            count += 1
    else:
        for _seq, _image in reader.entries():
            count += 1
    elapsed = time.perf_counter() - start
    assert count == n, f"replayed {count} entries, appended {n}"
    return n / elapsed


def replay_sqlite(db: Path, n: int, decode: bool) -> float:
    con = sqlite3.connect(db)
    decode_slot = CODEC.decode_slot
    count = 0
    start = time.perf_counter()
    cursor = con.execute("SELECT seq, image FROM journal ORDER BY seq")
    if decode:
        for _seq, image in cursor:
            decode_slot(image)
            count += 1
    else:
        for _seq, _image in cursor:
            count += 1
    elapsed = time.perf_counter() - start
    con.close()
    assert count == n, f"sqlite returned {count} rows, inserted {n}"
    return n / elapsed


def check_replay(stream: Iterator[tuple[int, Any]], images: memoryview, n: int) -> bool:
    """Seqs 1..n in order, images byte-equal, every 101st record equal to its original."""
    expect = 1
    for seq, image in stream:
        at = (seq - 1) * SLOT
        if seq != expect or bytes(image) != images[at : at + SLOT]:
            return False
        if seq % 101 == 0 and CODEC.decode_slot(image) != command(seq):
            return False
        expect += 1
    return expect == n + 1


# -- main ---------------------------------------------------------------------------------


def best_of(rounds: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput, with every round's figure."""
    results = sorted((run() for _ in range(rounds)), key=lambda r: r["ops_per_s"])
    row = dict(results[len(results) // 2])
    row["rounds_ops_per_s"] = [round(r["ops_per_s"]) for r in results]
    if "durable_ok" in row:  # every round's durability, not the median's alone (review 130)
        row["durable_ok"] = all(r["durable_ok"] for r in results)
    return row


def restart(work: Path, tail: int) -> dict[str, Any]:
    """Restart time: an exchange snapshot, then ``tail`` journaled commands (the exchange-core
    mix through the real sequencer, accounts and matcher), then ``recover`` timed. Returns
    the figures and whether the recovered state equals the live one."""
    cfg = RingexConfig(
        instance="benchrestart",
        var_dir=str(work / "restart"),
        journal=JournalConfig(fsync="none"),
        risk=RiskConfig(max_commands_per_s=10**9, max_open_orders=10**7, fee_account=99),
    )
    codec = RecordCodec()
    sequencer, matchers = fresh(cfg)
    (matcher,) = matchers.values()
    writer = JournalWriter(
        journal_dir(cfg), slot_size=codec.slot_size, schema_id=codec.journal_schema_id, fsync="none"
    )
    clock = 0

    def submit(command: Record) -> Record | None:
        nonlocal clock
        clock += 1000
        decision = sequencer.submit(command, clock)
        if decision.command is None:
            return None
        stamped = decision.command
        writer.append(stamped.seq, codec.encode_slot(stamped), 1)  # type: ignore[attr-defined]
        if decision.matchers:
            for event in matcher.execute(stamped):
                sequencer.apply(event)
        return stamped

    account = 7
    for command in (
        CreateAccount(0, 0, 1, 1, 1, account),
        Transfer(0, 0, 1, 1, 2, account, 1, 10**17, 1),
        Transfer(0, 0, 1, 1, 3, account, 2, 10**17, 2),
    ):
        submit(command)
    ids: dict[int, int] = {}
    warm = 2_000  # the warm-up, then the snapshot, then the tail (review 130: it ate the tail)
    ops = exchange_core_mix(tail + warm, 5)
    started = None
    for k, op in enumerate(ops):
        if k == warm:
            sequencer.applied(sequencer.next_seq - 1)
            write_snapshot(cfg, Recovered(sequencer, matchers, sequencer.next_seq - 1, 0, 0, 0))
            started = sequencer.next_seq
        kind, oid = op[0], op[1]
        header = (0, 0, 1, 1, k + 10, account, 1)
        if kind == NEW:
            _, _, side, price, qty, ioc = op
            new = NewOrder(
                *header, 0, side=Side(side), ord_type=OrdType.LIMIT,
                tif=TimeInForce.IOC if ioc else TimeInForce.GTC, flags=0, stp=StpMode.NONE,
                price=price, qty=qty, stop_price=0, display_qty=0,
            )  # fmt: skip
            stamped = submit(new)
            if isinstance(stamped, NewOrder):
                ids[oid] = stamped.order_id
        elif kind == CANCEL:
            submit(CancelOrder(*header, ids[oid]))
        else:
            resting = matcher.books[1].orders[ids[oid]]
            submit(ReplaceOrder(*header, ids[oid], op[2], resting.filled + resting.leaves))
    writer.close()
    live = {"router": sequencer.accounts.state_hash(), "matcher m1": matcher.state_hash()}
    assert started is not None
    timed: dict[bool, tuple[float, Recovered]] = {}
    for pipelined in (False, True):  # the serial replay, then the router's own (pipelined)
        begin = time.perf_counter()
        recovered = recover(cfg, pipelined=pipelined)
        timed[pipelined] = (time.perf_counter() - begin, recovered)
    seconds, recovered = timed[True]
    serial_seconds, serial = timed[False]
    return {
        "tail": recovered.replayed,
        "from_seq": started,
        "seconds": seconds,
        "ops_per_s": recovered.replayed / seconds,
        "serial_seconds": serial_seconds,
        "x_serial": serial_seconds / seconds,
        "same_state": recovered.state_hashes() == live == serial.state_hashes(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--commands", type=int, default=300_000, help="commands a journal round")
    ap.add_argument("--peer-commands", type=int, default=100_000, help="commands a sqlite round")
    ap.add_argument("--naive-records", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--segment-mib", type=int, default=64)
    ap.add_argument("--dir", default="var/bench/journal-data")
    ap.add_argument(
        "--restart-tail", type=int, default=1_000_000, help="journaled commands after the snapshot"
    )
    ap.add_argument("--out", default="var/bench/journal.json")
    args = ap.parse_args()
    n, rounds = args.commands, args.rounds
    segment_bytes = args.segment_mib * 2**20
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    data, db = work / "journal", work / "peer.sqlite"

    disk = fs_type(work)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}; disk: {disk}"
    )
    images = memoryview(b"".join(CODEC.encode_slot(command(s)) for s in range(1, n + 1)))
    results: list[dict[str, Any]] = []
    checks: dict[str, bool] = {}
    problems: list[str] = []
    try:
        print(f"\nappend: {n:,} NewOrder commands, {SLOT}-byte slot images ({rounds} rounds)")
        print(f"  {'':50} {'commands/s':>12} {'p50 us':>9} {'p99 us':>9}  x peer")
        appended: dict[str, float] = {}
        for batch in (256, 4096):
            peer = best_of(rounds, partial(append_sqlite, db, images, args.peer_commands, batch))
            rows = [(f"sqlite WAL FULL, commit per {batch}", peer)]
            fsync: FsyncPolicy
            for fsync in ("batch", "none"):
                row = best_of(
                    rounds,
                    partial(append_journal, data, images, n, batch, fsync, segment_bytes),
                )
                rows.append((f"ringex journal, fsync {fsync!r}, batch {batch}", row))
                checks[f"durable_seq after fsync {fsync!r} batch {batch}"] = row["durable_ok"]
                appended[f"{fsync} {batch}"] = row["ops_per_s"]
            for name, row in rows:
                ratio = row["ops_per_s"] / peer["ops_per_s"]
                print(
                    f"  {name:50} {row['ops_per_s']:>12,.0f} {row['append_p50_us']:>9.1f} "
                    f"{row['append_p99_us']:>9.1f}  x{ratio:.2f}"
                )
                results.append({"name": name, "batch": batch, **row, "x_sqlite": ratio})
            if appended[f"batch {batch}"] < TARGET["append fsync ops/s"]:
                problems.append(
                    f"append, fsync per batch of {batch}: {appended[f'batch {batch}']:,.0f} "
                    f"commands/s < {TARGET['append fsync ops/s']:,.0f}"
                )
        naive = best_of(
            rounds, lambda: append_naive(work / "naive.log", images, args.naive_records)
        )
        ratio = appended["batch 4096"] / naive["ops_per_s"]
        print(
            f"  {'naive log: write + fsync a record':50} {naive['ops_per_s']:>12,.0f} "
            f"{naive['append_p50_us']:>9.1f} {naive['append_p99_us']:>9.1f}  "
            f"(journal batch 4096 is x{ratio:,.0f})"
        )
        results.append({"name": "naive write+fsync per record", **naive})

        # the last append round left an n-command journal (fsync 'none', batch 4096): make it
        # durable so dropping its pages really drops them
        with JournalWriter(data, slot_size=SLOT, schema_id=CODEC.journal_schema_id):
            pass
        for _, path in list_segments(data):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        reader = JournalReader(data, slot_size=SLOT, schema_id=CODEC.journal_schema_id)
        checks["journal replay equals the appended stream"] = check_replay(
            reader.entries(), images, n
        )
        con = sqlite3.connect(db)
        checks["sqlite replay equals the inserted stream"] = check_replay(
            iter(con.execute("SELECT seq, image FROM journal ORDER BY seq")),
            images,
            args.peer_commands,
        )
        con.close()

        print(f"\nreplay: {n:,} entries ({rounds} rounds)")
        print(f"  {'':50} {'commands/s':>12}  x sqlite")
        for decode in (False, True):
            what = "read + verify + decode" if decode else "read + verify"
            peer_ops = statistics.median(
                replay_sqlite(db, args.peer_commands, decode) for _ in range(rounds)
            )
            warm = statistics.median(replay_journal(data, n, decode) for _ in range(rounds))

            def cold(d: bool = decode) -> float:
                drop_cache(data)
                return replay_journal(data, n, d)

            cold_ops = statistics.median(cold() for _ in range(rounds))
            for name, ops in (
                (f"sqlite SELECT, {'+ decode' if decode else 'rows only'}", peer_ops),
                (f"ringex journal, {what}, page cache", warm),
                (f"ringex journal, {what}, cold", cold_ops),
            ):
                print(f"  {name:50} {ops:>12,.0f}  x{ops / peer_ops:.2f}")
                results.append(
                    {"name": f"replay {name}", "ops_per_s": ops, "x_sqlite": ops / peer_ops}
                )
            for label, ops in (("page cache", warm), ("cold", cold_ops)):
                if ops < TARGET["replay ops/s"]:
                    problems.append(
                        f"replay {what} ({label}): {ops:,.0f} commands/s < "
                        f"{TARGET['replay ops/s']:,.0f}"
                    )
        print(f"\nrestart: snapshot + a {args.restart_tail:,}-command tail (exchange-core mix)")
        restarted = restart(work, args.restart_tail)
        checks["restart: recovered state == live state"] = restarted["same_state"]
        print(
            f"  recovered {restarted['tail']:,} commands in {restarted['seconds']:.2f} s "
            f"({restarted['ops_per_s']:,.0f} commands/s; matchers in a second process, as the "
            f"router restarts); target <= 5 s for 1M\n"
            f"  in one process: {restarted['serial_seconds']:.2f} s "
            f"(pipelined x{restarted['x_serial']:.2f})"
        )
        cadence = JournalConfig().snapshot_every
        bound = cadence / restarted["ops_per_s"]
        print(
            f"  at the default snapshot cadence (journal.snapshot_every = {cadence:,}) a "
            f"restart replays at most about that many: ~{bound:.1f} s at this rate"
        )
        restarted["default_cadence_bound_s"] = bound
        results.append({"name": "restart from snapshot + tail", **restarted})
        per_million = restarted["seconds"] * 1_000_000 / max(1, restarted["tail"])
        if per_million > TARGET["restart s per 1M"]:
            problems.append(f"restart: {per_million:.1f} s per 1M-command tail > 5")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    doc = {
        "host": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "disk": disk,
        },
        "commands": n,
        "results": results,
    }
    return conclude(args.out, doc, checks, problems)


if __name__ == "__main__":
    sys.exit(main())
