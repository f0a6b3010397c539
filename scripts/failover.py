"""Operator failover between a primary and its hot standby.

    python scripts/failover.py status  --primary P.toml --standby S.toml
    python scripts/failover.py promote --primary P.toml --standby S.toml

``status``: both journals' last seq, the standby's lag and whether their history hashes agree,
and the primary's replication status (mode, acknowledged seq, whether sync mode is degraded).
``promote``: fence the old primary first (SIGKILL its supervisor and every process it ran,
from its status file: two primaries must never accept orders at once), stop the standby (a
clean stop: it writes snapshots of its hot state, so nothing is replayed), and start the
standby's instance as a primary (its config without ``replication.primary``, written beside
it as ``<name>.promoted.toml``). The new supervisor's process is started first: it imports
while the fence and the standby's stop happen, and starts the instance once told to go (after
the fence) and once the standby's supervisor has exited. Prints each step's time. Two hosts
need the fencing done by the operator's own means (power, network) before this runs on the
standby host.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from config import load_profile
from config.schema import RingexConfig
from shm.liveness import pid_alive

STOP_TIMEOUT_S = 60.0  # how long the new supervisor waits for the standby's to exit
READY_TIMEOUT_S = 120.0
GO = b"fenced\n"  # promote's word to its supervisor process


def run_file(cfg: RingexConfig, name: str) -> Path:
    """A file of ``var/<instance>/run`` (read here directly: importing the supervisor's
    module for it would cost this script's start a database driver)."""
    return Path(cfg.var_dir) / cfg.instance / "run" / name


def read_json(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return doc


def journal_state(cfg: RingexConfig) -> tuple[int, str]:
    """The journal's last seq and history hash (imports here: promote needs none of it)."""
    from procs.common.journal import JournalReader  # noqa: PLC0415
    from procs.common.records import RecordCodec  # noqa: PLC0415
    from procs.common.topology import journal_dir  # noqa: PLC0415
    from procs.replica.wire import GENESIS, History  # noqa: PLC0415

    codec = RecordCodec()
    directory = journal_dir(cfg)
    if not directory.exists():
        return 0, GENESIS.hex()
    history, last = History(), 0
    for seq, image in JournalReader(
        directory, slot_size=codec.slot_size, schema_id=codec.schema_id
    ).entries(1):
        history.update(image)
        last = seq
    return last, history.digest().hex()


def status(primary: RingexConfig, standby: RingexConfig) -> int:
    p_seq, p_hash = journal_state(primary)
    s_seq, s_hash = journal_state(standby)
    print(f"primary {primary.instance}: journal at seq {p_seq}")
    print(f"standby {standby.instance}: journal at seq {s_seq} (lag {p_seq - s_seq})")
    rep = read_json(run_file(primary, "replication.json"))
    if rep:
        state = "DEGRADED (going on without the standby)" if rep["degraded"] else "ok"
        print(
            f"replication {rep['mode']}: standby acknowledged seq {rep['acked_seq']}, "
            f"{rep['standbys_connected']} connected, {state}, "
            f"degraded {rep['degraded_total']} time(s)"
        )
    agree = p_seq == s_seq and p_hash == s_hash
    print("histories agree" if agree else "histories differ (or the standby lags)")
    return 0 if agree else 1


def fence(cfg: RingexConfig) -> None:
    """Kill every process of ``cfg``'s instance that its status file names."""
    doc = read_json(run_file(cfg, "status.json"))
    pids = [doc.get("supervisor_pid")] + [p.get("pid") for p in doc.get("processes", [])]
    for pid in pids:
        if isinstance(pid, int) and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    print(f"fenced {cfg.instance}: {len([p for p in pids if p])} process(es) killed")


def promote(primary_path: str, standby_path: str) -> int:
    started = time.monotonic()

    def step(what: str) -> None:
        print(f"  {time.monotonic() - started:5.2f} s  {what}")

    primary, standby = load_profile(primary_path), load_profile(standby_path)
    raw = tomllib.loads(Path(standby_path).read_text())
    raw.setdefault("replication", {})["primary"] = ""
    promoted = Path(standby_path).with_suffix(".promoted.toml")
    promoted.write_text(tomli_w.dumps(raw))
    old = read_json(run_file(standby, "status.json")).get("supervisor_pid")
    old = old if isinstance(old, int) and pid_alive(old) else 0
    logs = run_file(standby, "supervisor.log")
    logs.parent.mkdir(parents=True, exist_ok=True)
    with open(logs, "ab") as out:  # it imports, then waits for the standby to be gone
        child = subprocess.Popen(
            [sys.executable, __file__, "supervise", "--profile", str(promoted),
             "--after-pid", str(old)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
    assert child.stdin is not None
    fence(primary)
    step("old primary fenced")
    child.stdin.write(GO)  # only now: two primaries must never accept orders at once
    child.stdin.close()
    if old:
        os.kill(old, signal.SIGTERM)  # the standby stops cleanly, writing its snapshots
    step(f"standby told to stop; the new supervisor (pid {child.pid}) waits for it")
    deadline = time.monotonic() + READY_TIMEOUT_S
    stopped = not old
    while time.monotonic() < deadline:
        if not stopped and not pid_alive(old):
            stopped = True
            step("standby stopped")
        doc = read_json(run_file(standby, "status.json"))
        if doc.get("supervisor_pid") == child.pid and doc.get("state") == "running":
            step(f"promoted instance running ({promoted})")
            print(f"promoted {standby.instance} in {time.monotonic() - started:.2f} s")
            return 0
        if child.poll() is not None:
            print(f"the promoted instance did not start (exit {child.returncode}): see {logs}",
                  file=sys.stderr)  # fmt: skip
            return 1
        time.sleep(0.01)
    print(f"the promoted instance was not running within {READY_TIMEOUT_S} s", file=sys.stderr)
    return 1


def supervise(profile: str, after_pid: int) -> int:
    """The promoted instance's supervisor: imported now, run once ``promote`` says go (the
    old primary is fenced: without that word, nothing starts) and ``after_pid`` has exited."""
    from procs.supervisor.main import main as supervisor_main  # noqa: PLC0415  (the point)

    if sys.stdin.buffer.read(len(GO)) != GO:
        print("promote ended before fencing the old primary: not starting", file=sys.stderr)
        return 1
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while after_pid and pid_alive(after_pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    return supervisor_main(["--profile", profile])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["status", "promote", "supervise"])
    ap.add_argument("--primary", help="the primary's config file")
    ap.add_argument("--standby", help="the standby's config file")
    ap.add_argument("--profile", help=argparse.SUPPRESS)  # supervise: promote's own step
    ap.add_argument("--after-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.action == "supervise":
        return supervise(args.profile, args.after_pid)
    if not (args.primary and args.standby):
        ap.error(f"{args.action} needs --primary and --standby")
    if args.action == "status":
        return status(load_profile(args.primary), load_profile(args.standby))
    return promote(args.primary, args.standby)


if __name__ == "__main__":
    sys.exit(main())
