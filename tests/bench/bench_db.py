"""`python -m tests.bench.bench_db`: trades persisted per second, the writer's batcher against
plain ``executemany``, same run, same private PostgreSQL cluster.

```
batcher     Trade events -> Projection.add_trade (packed binary row, 1m/1h/1d candles, marked
            balances) -> Batch.seal -> PgStore.write, a batch of --batch trades: one
            transaction with the checkpoint check, the rest COPYed into temp tables, candles
            merged, balances upserted, and the checkpoint; meanwhile the trades, binary COPY
            straight into the day-partitioned table (PK, BRIN on ts, two account indexes) by
            database.trade_lanes (2) connections side by side, each with its lane checkpoint
  variant   the same with one trade lane (trade_lanes = 1)
  variant   the same, trades through a temp table and INSERT .. ON CONFLICT DO NOTHING
  variant   the same, one batch after the other (no committer thread)
  variant   the same, without the trades' two account indexes (what they cost)
executemany the same trades as tuples (datetime ts) -> cursor.executemany of a plain INSERT
            into the same trades table, one commit a batch
```

Each round gets an empty database. The answer check: after every round the table holds
exactly the trades sent (count, sum of sizes, distinct keys) and, for the batcher, the 1m
candles count every trade once and the checkpoint is the last seq. Targets (issue 7): >= 150k
trades/s through the batcher, >= 3x executemany. Results go to ``var/bench/db.json``.
The cluster runs with fsync off (``EmbeddedPostgres(fast=True)``), as the tests do.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from config.schema import RingexConfig
from procs.common.embedded_postgres import PORT, SUPERUSER, EmbeddedPostgres
from procs.common.records import Trade
from procs.common.types import Side
from procs.core.accounts import Accounts
from procs.dbwriter.committer import Committer, share_the_gil
from procs.dbwriter.projection import Batch, Projection, to_datetime
from procs.dbwriter.store import PgStore, connect, prepare
from tests.bench.report import conclude

TARGET_TPS = 150_000
TARGET_RATIO = 3.0
START_NS = 1_763_000_000_000_000_000
ACCOUNT_INDEXES = ("trades_maker_account", "trades_taker_account")


def trades(n: int) -> list[Trade]:
    """``n`` trades over two symbols, 20 accounts, 100 ms apart (one day partition for 200k:
    5.6 hours)."""
    out = []
    for k in range(n):
        seq = k + 1
        out.append(
            Trade(
                seq, START_NS + k * 100_000_000, k // 2 + 1, 1 + k % 2, 100_000 + k % 37,
                1 + k % 50, Side.BUY if k % 3 else Side.SELL, 2 * k + 1, 10 + k % 20, 1,
                k % 7, 2 * k + 2, 10 + (k + 7) % 20, 1, 0,
            )
        )  # fmt: skip
    return out


def fresh_db(cluster: EmbeddedPostgres, name: str) -> str:
    admin = f"host={cluster.data} port={PORT} dbname=postgres user={SUPERUSER}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return f"host={cluster.data} port={PORT} dbname={name} user={SUPERUSER}"


def run_batcher(
    dsn: str,
    cfg: RingexConfig,
    stream: list[Trade],
    batch: int,
    on_conflict: bool = False,
    pipelined: bool = True,
    account_indexes: bool = True,
    lanes: int | None = None,
) -> dict[str, Any]:
    """The writer's path: batches built here, committed by a ``Committer`` thread while the
    next is built (``pipelined``), or one after the other. ``account_indexes=False`` drops
    the trades' two account indexes (myTrades' lookups, migration 0003) to show their cost."""
    store = PgStore(dsn, cfg, trades_on_conflict=on_conflict, lanes=lanes)
    conn = store.open()
    if not account_indexes:
        for index in ACCOUNT_INDEXES:
            conn.execute(f"DROP INDEX {index}")
        conn.commit()
    accounts = Accounts(cfg)
    projection = Projection(cfg, accounts)  # the trades' fees: the configured ones here
    if pipelined:
        share_the_gil()  # as the writer process does
    committer = Committer(store.write) if pipelined else None
    start = time.perf_counter()
    for lo in range(0, len(stream), batch):
        b = Batch(first_seq=stream[lo].seq)
        add = projection.add_trade
        for trade in stream[lo : lo + batch]:
            add(trade, b, (trade.seq, trade.ts_ns))
        b.last_seq, b.last_ts_ns = stream[min(lo + batch, len(stream)) - 1].seq, 0
        b.seal(accounts, projection.decimals, projection.assets_of)
        if committer is None:
            store.write(b)
        else:
            committer.submit(b)
    if committer is not None:
        committer.drain()
        committer.close()
    elapsed = time.perf_counter() - start
    conn = store.open()
    count, size, keys = conn.execute(
        "SELECT count(*), sum(size), count(DISTINCT (symbol_id, trade_id)) FROM trades"
    ).fetchone()  # type: ignore[misc]
    (candle_trades,) = conn.execute(
        "SELECT sum(trades) FROM candles WHERE interval_s = 60"
    ).fetchone()  # type: ignore[misc]
    (checkpoint,) = conn.execute("SELECT last_seq FROM checkpoint").fetchone()  # type: ignore[misc]
    store.close()
    ok = (count, size, keys, candle_trades, checkpoint) == (
        len(stream), sum(t.qty for t in stream), len(stream), len(stream), stream[-1].seq,
    )  # fmt: skip
    return {"trades_per_s": len(stream) / elapsed, "seconds": elapsed, "ok": ok}


def run_executemany(dsn: str, cfg: RingexConfig, stream: list[Trade], batch: int) -> dict[str, Any]:
    conn = connect(dsn)
    prepare(conn, cfg)
    conn.execute("SELECT ringex_trade_partitions('2025-11-01', '2025-11-30')")
    sql = "INSERT INTO trades VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    start = time.perf_counter()
    for lo in range(0, len(stream), batch):
        rows = [
            (
                t.symbol, t.trade_id, t.seq, to_datetime(t.ts_ns), t.price, t.qty,
                int(t.aggressor), t.maker_order_id, t.maker_account, t.taker_order_id,
                t.taker_account,
            )
            for t in stream[lo : lo + batch]
        ]  # fmt: skip
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(sql, rows)
    elapsed = time.perf_counter() - start
    count, size, keys = conn.execute(
        "SELECT count(*), sum(size), count(DISTINCT (symbol_id, trade_id)) FROM trades"
    ).fetchone()  # type: ignore[misc]
    conn.close()
    ok = (count, size, keys) == (len(stream), sum(t.qty for t in stream), len(stream))
    return {"trades_per_s": len(stream) / elapsed, "seconds": elapsed, "ok": ok}


def median_round(rounds: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    results = sorted((run() for _ in range(rounds)), key=lambda r: r["trades_per_s"])
    row = dict(results[len(results) // 2])
    row["rounds_trades_per_s"] = [round(r["trades_per_s"]) for r in results]
    row["ok"] = all(r["ok"] for r in results)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trades", type=int, default=200_000)
    ap.add_argument("--peer-trades", type=int, default=50_000, help="trades an executemany round")
    ap.add_argument("--batch", type=int, default=10_000, help="trades a transaction")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="var/bench/db.json")
    args = ap.parse_args()
    cfg = RingexConfig()
    root = Path(tempfile.mkdtemp(prefix="rgxbench-"))
    root.chmod(0o755)
    cluster = EmbeddedPostgres(root / "pg", fast=True)
    cluster.start()
    try:
        with psycopg.connect(cluster.dsn) as conn:
            (version,) = conn.execute("SHOW server_version").fetchone()  # type: ignore[misc]
        print(
            f"machine: {platform.machine()} {os.cpu_count()} cpus, Python "
            f"{platform.python_version()}, psycopg {psycopg.__version__} "
            f"({psycopg.pq.__impl__}), PostgreSQL {version} (fsync off)"
        )
        stream = trades(args.trades)
        peer_stream = stream[: args.peer_trades]
        batcher = median_round(
            args.rounds,
            lambda: run_batcher(fresh_db(cluster, "bench"), cfg, stream, args.batch),
        )
        one_lane = median_round(
            args.rounds,
            lambda: run_batcher(fresh_db(cluster, "bench"), cfg, stream, args.batch, lanes=1),
        )
        guarded = median_round(
            args.rounds,
            lambda: run_batcher(fresh_db(cluster, "bench"), cfg, stream, args.batch, True),
        )
        serial = median_round(
            args.rounds,
            lambda: run_batcher(
                fresh_db(cluster, "bench"), cfg, stream, args.batch, pipelined=False
            ),
        )
        unindexed = median_round(
            args.rounds,
            lambda: run_batcher(
                fresh_db(cluster, "bench"), cfg, stream, args.batch, account_indexes=False
            ),
        )
        peer = median_round(
            args.rounds,
            lambda: run_executemany(fresh_db(cluster, "bench"), cfg, peer_stream, args.batch),
        )
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)
    ratio = batcher["trades_per_s"] / peer["trades_per_s"]
    results = [
        {"name": "batcher: binary COPY (checkpoint-checked)",
         "trades": args.trades, "batch": args.batch, **batcher, "x_executemany": ratio},
        {"name": "batcher, one trade lane", "trades": args.trades, "batch": args.batch,
         **one_lane, "x_executemany": one_lane["trades_per_s"] / peer["trades_per_s"]},
        {"name": "batcher, trades INSERT .. ON CONFLICT DO NOTHING", "trades": args.trades,
         "batch": args.batch, **guarded,
         "x_executemany": guarded["trades_per_s"] / peer["trades_per_s"]},
        {"name": "batcher, one batch after the other (no committer thread)",
         "trades": args.trades, "batch": args.batch, **serial,
         "x_executemany": serial["trades_per_s"] / peer["trades_per_s"]},
        {"name": "batcher, trades without their two account indexes",
         "trades": args.trades, "batch": args.batch, **unindexed,
         "x_executemany": unindexed["trades_per_s"] / peer["trades_per_s"]},
        {"name": "executemany INSERT", "trades": args.peer_trades, "batch": args.batch, **peer},
    ]  # fmt: skip
    print(
        f"\n{args.trades:,} trades, transactions of {args.batch:,} ({args.rounds} rounds, median)"
    )
    for row in results:
        print(
            f"  {row['name']:55} {row['trades_per_s']:>10,.0f} trades/s  rounds "
            f"{row['rounds_trades_per_s']}"
        )
    print(f"  batcher is x{ratio:.1f} executemany")
    missed = []
    if batcher["trades_per_s"] < TARGET_TPS:
        missed.append(f"batcher {batcher['trades_per_s']:,.0f} trades/s < {TARGET_TPS:,}")
    if ratio < TARGET_RATIO:
        missed.append(f"batcher x{ratio:.2f} executemany < x{TARGET_RATIO}")
    checks = {
        "batcher rows exact": batcher["ok"],
        "batcher (one lane) rows exact": one_lane["ok"],
        "batcher (on conflict) rows exact": guarded["ok"],
        "batcher (serial) rows exact": serial["ok"],
        "batcher (no account indexes) rows exact": unindexed["ok"],
        "executemany rows exact": peer["ok"],
    }
    doc = {
        "host": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "postgresql": version,
        },
        "results": results,
    }
    return conclude(args.out, doc, checks, missed)


if __name__ == "__main__":
    sys.exit(main())
