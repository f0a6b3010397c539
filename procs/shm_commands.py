"""``ringex shm ls`` and ``ringex shm rm``: the instance's shared-memory segments, listed or
removed (a live one only with ``--force``). ``rm --instance I`` of an instance still in use
removes only what no process uses and exits 1: the operator asked for the whole of it."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from shm.inspect import list_segments, remove


def shm_ls(args: argparse.Namespace) -> int:
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
        if s.foreign:
            state = "another user's: not readable, so never stale"
        kind = "" if s.is_ring else "  (not a ring)"
        print(
            f"{s.instance:12} {s.name:20} {s.size:>10} {s.capacity:>8} {s.slot_size:>5} "
            f"{s.cursor:>12}  {state}{kind}"
        )
    return 0


def shm_rm(args: argparse.Namespace) -> int:
    if not (args.instance or args.stale or args.all):
        print("ringex shm rm: say which: --instance NAME, --stale or --all", file=sys.stderr)
        return 2
    removed = foreign = 0
    skipped: set[int] = set()
    for s in list_segments(args.instance):
        if s.foreign:  # not ours to judge, nor to remove: /dev/shm is sticky
            print(f"skipping {s.instance}.{s.name}: another user's (run as that user)",
                  file=sys.stderr)  # fmt: skip
            foreign += 1
            continue
        if args.stale and not s.stale:
            continue
        if not args.stale and not args.force and not s.stale:
            print(
                f"skipping {s.instance}.{s.name}: live pids {s.live_pids} (use --force)",
                file=sys.stderr,
            )
            skipped.update(s.live_pids)
            continue
        remove(s)
        removed += 1
        print(f"removed {s.instance}.{s.name}")
    print(f"{removed} segment(s) removed")
    if skipped and not (args.stale or args.all):  # --stale, --all: the live ones stay, as said
        print(
            f"ringex shm rm: instance {args.instance!r} is in use (live pids "
            f"{', '.join(map(str, sorted(skipped)))}): stop it first (ringex stop), or --force",
            file=sys.stderr,
        )
        return 1
    return 1 if foreign and not (args.stale or args.all) else 0  # an --instance left whole
