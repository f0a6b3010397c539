"""Operator failover between a primary and its hot standby.

    python scripts/failover.py status  --primary P.toml --standby S.toml
    python scripts/failover.py promote --primary P.toml --standby S.toml

``status``: both journals' last seq, the standby's lag and whether their chained hashes agree.
``promote``: fence the old primary first (SIGKILL its supervisor and every process it ran,
from its status file: two primaries must never accept orders at once), stop the standby, and
start the standby's instance as a primary (its config without ``replication.primary``,
written beside it as ``<name>.promoted.toml``), which recovers from the journal it
replicated. Prints the failover time. Two hosts need the fencing done by the operator's
own means (power, network) before this runs on the standby host.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import tomli_w

from config import load_profile
from config.schema import RingexConfig
from procs.common.journal import JournalReader
from procs.common.records import RecordCodec
from procs.common.topology import journal_dir
from procs.replica.wire import GENESIS, chain
from procs.supervisor.main import read_status
from shm.liveness import pid_alive


def journal_state(cfg: RingexConfig) -> tuple[int, str]:
    codec = RecordCodec()
    directory = journal_dir(cfg)
    if not directory.exists():
        return 0, GENESIS.hex()
    digest, last = GENESIS, 0
    for seq, image in JournalReader(
        directory, slot_size=codec.slot_size, schema_id=codec.schema_id
    ).entries(1):
        digest, last = chain(digest, image), seq
    return last, digest.hex()


def status(primary: RingexConfig, standby: RingexConfig) -> int:
    p_seq, p_hash = journal_state(primary)
    s_seq, s_hash = journal_state(standby)
    print(f"primary {primary.instance}: journal at seq {p_seq}")
    print(f"standby {standby.instance}: journal at seq {s_seq} (lag {p_seq - s_seq})")
    agree = p_seq == s_seq and p_hash == s_hash
    print("histories agree" if agree else "histories differ (or the standby lags)")
    return 0 if agree else 1


def fence(cfg: RingexConfig) -> None:
    """Kill every process of ``cfg``'s instance that its status file names."""
    doc = read_status(cfg) or {}
    pids = [doc.get("supervisor_pid")] + [p.get("pid") for p in doc.get("processes", [])]
    for pid in pids:
        if isinstance(pid, int) and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    print(f"fenced {cfg.instance}: {len([p for p in pids if p])} process(es) killed")


def promote(primary_path: str, standby_path: str) -> int:
    started = time.monotonic()
    primary, standby = load_profile(primary_path), load_profile(standby_path)
    fence(primary)
    ringex = [sys.executable, "-m", "procs.cli"]
    subprocess.run([*ringex, "stop", "--config", standby_path], check=False)
    raw = tomllib.loads(Path(standby_path).read_text())
    raw.setdefault("replication", {})["primary"] = ""
    promoted = Path(standby_path).with_suffix(".promoted.toml")
    promoted.write_text(tomli_w.dumps(raw))
    run = subprocess.run([*ringex, "run", "--config", str(promoted), "--detach"], check=False)
    if run.returncode != 0:
        print("the promoted instance did not start", file=sys.stderr)
        return 1
    print(f"promoted {standby.instance} in {time.monotonic() - started:.2f} s ({promoted})")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["status", "promote"])
    ap.add_argument("--primary", required=True, help="the primary's config file")
    ap.add_argument("--standby", required=True, help="the standby's config file")
    args = ap.parse_args()
    if args.action == "status":
        return status(load_profile(args.primary), load_profile(args.standby))
    return promote(args.primary, args.standby)


if __name__ == "__main__":
    sys.exit(main())
