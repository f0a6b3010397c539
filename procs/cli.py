"""The ``ringex`` command: operator tools.

    ringex shm ls|rm             inspect and clean up shared memory
    ringex replay [--snapshot] [--archive]
                                 rebuild router and matcher state from snapshot + journal,
                                 print the state hashes

Later issues add the process commands (``ringex run``, ...); subcommands are contracts that
operators' scripts rely on, so they are extended, never renamed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from tqdm import tqdm

from config import load_profile
from procs.common.journal import archive_segments_before
from procs.common.topology import journal_dir
from procs.router.recovery import archivable_before, recover, write_snapshot
from shm.inspect import list_segments, remove


def _shm_ls(args: argparse.Namespace) -> int:
    segments = list_segments(args.instance)
    if args.json:
        print(json.dumps([asdict(s) | {"stale": s.stale} for s in segments], indent=2))
        return 0
    if not segments:
        print("no ringex segments" + (f" for instance {args.instance!r}" if args.instance else ""))
        return 0
    print(
        f"{'instance':12} {'name':20} {'bytes':>10} {'slots':>8} {'slot':>5} {'cursor':>12}  state"
    )
    for s in segments:
        state = "stale" if s.stale else f"live pids {','.join(map(str, s.live_pids))}"
        kind = "" if s.is_ring else "  (not a ring)"
        print(
            f"{s.instance:12} {s.name:20} {s.size:>10} {s.capacity:>8} {s.slot_size:>5} "
            f"{s.cursor:>12}  {state}{kind}"
        )
    return 0


def _shm_rm(args: argparse.Namespace) -> int:
    if not (args.instance or args.stale or args.all):
        print("ringex shm rm: say which: --instance NAME, --stale or --all", file=sys.stderr)
        return 2
    removed = 0
    for s in list_segments(args.instance):
        if args.stale and not s.stale:
            continue
        if not args.stale and not args.force and not s.stale:
            print(
                f"skipping {s.instance}.{s.name}: live pids {s.live_pids} (use --force)",
                file=sys.stderr,
            )
            continue
        remove(s)
        removed += 1
        print(f"removed {s.instance}.{s.name}")
    print(f"{removed} segment(s) removed")
    return 0


def _replay(args: argparse.Namespace) -> int:
    cfg = load_profile(args.profile)
    bar = tqdm(total=0, unit="cmd", unit_scale=True, disable=args.quiet, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    recovered = recover(cfg, progress=progress, use_snapshot=not args.from_start)
    bar.close()
    rate = recovered.replayed / recovered.seconds if recovered.seconds else 0.0
    print(
        f"instance {cfg.instance}: state at seq {recovered.last_seq} (snapshot "
        f"{recovered.snapshot_seq} + {recovered.replayed} journaled commands in "
        f"{recovered.seconds:.2f} s, {rate:,.0f}/s)"
    )
    for name, digest in recovered.state_hashes().items():
        print(f"  {name:20} {digest}")
    if args.snapshot:
        print(f"snapshot written: {write_snapshot(cfg, recovered)}")
    if args.archive:
        before = archivable_before(cfg)
        archive = journal_dir(cfg).with_name("journal-archive")
        moved = archive_segments_before(journal_dir(cfg), before, archive)
        print(f"archived {len(moved)} segment(s) before seq {before} to {archive}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ringex", description="ringex exchange tools")
    sub = parser.add_subparsers(dest="command", required=True)
    shm = sub.add_parser("shm", help="inspect and clean up shared-memory rings")
    shm_sub = shm.add_subparsers(dest="shm_command", required=True)
    ls = shm_sub.add_parser("ls", help="list ringex segments, their geometry and liveness")
    ls.add_argument("--instance", help="only this instance")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_shm_ls)
    rm = shm_sub.add_parser("rm", help="remove segments and their semaphores")
    rm.add_argument("--instance", help="only this instance")
    rm.add_argument("--stale", action="store_true", help="only segments no live process uses")
    rm.add_argument("--all", action="store_true", help="every ringex segment")
    rm.add_argument("--force", action="store_true", help="also remove segments still in use")
    rm.set_defaults(func=_shm_rm)
    replay = sub.add_parser(
        "replay",
        help="rebuild router and matcher state from the newest snapshot and the journal, "
        "print the state hashes",
    )
    replay.add_argument("--profile", default="dev", help="profile name or TOML path")
    replay.add_argument("--snapshot", action="store_true", help="write a snapshot at the end")
    replay.add_argument(
        "--from-start", action="store_true", help="ignore snapshots: replay the whole journal"
    )
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.add_argument(
        "--archive",
        action="store_true",
        help="then move journal segments no recovery needs (before the oldest snapshot of "
        "the exchange and of every matcher) to var/<instance>/journal-archive",
    )
    replay.set_defaults(func=_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
