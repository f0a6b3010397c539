"""The ``ringex`` command: operator tools.

    ringex shm ls|rm             inspect and clean up shared memory
    ringex run [--profile P | --config F] [--detach [--timeout S]]    start the exchange
    ringex stop [--timeout S] | ringex status [--json] [--wait-ready [--timeout S]]
    ringex admin add-user|remove-user|set-password|set-user|users|keys|revoke-key|
                 create-account|deposit|withdraw|balances|cancel-all|halt|resume|
                 end-session|snapshot ...
    ringex replay [--from-start] [--snapshot] [--to-db] [--archive] [--quiet]
                                 rebuild router and matcher state from snapshot + journal,
                                 print the state hashes

Subcommands are contracts that operators' scripts rely on, so they are extended, never
renamed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from config import load_profile
from config.loader import ConfigError
from config.schema import RingexConfig
from procs.admin.args import Once, dashed_values_joined, instance, named, seconds
from procs.admin.commands import add_admin, run_admin
from procs.admin.interrupts import exit_status, ignore_interrupts, interrupted_by, interrupting
from procs.common.durable import fsync_file
from procs.common.endpoints import endpoints, meets_clients, unserved
from procs.common.journal import JournalError, JournalReader
from procs.common.journal import list_segments as journal_segments
from procs.common.journal_archive import archive_segments_before
from procs.common.pending_runs import instances_run_by, pending_runs, stop_pending_runs
from procs.common.record_codec import RecordCodec
from procs.common.run_files import (
    not_ready,
    read_status,
    ready,
    run_dir,
    status_path,
    supervisor_running,
)
from procs.common.topology import journal_archive_dir, journal_dir, rings
from procs.common.units import units_differ
from procs.core.archive_bound import archivable_before
from procs.core.recovery import recover, write_snapshot
from procs.shm_commands import shm_ls, shm_rm
from procs.supervisor.draining import stop_bound_s
from shm import Ring
from shm.errors import ShmError, ShmPermissionError
from shm.inspect import SegmentInfo, list_segments
from shm.liveness import holder_alive, pid_alive, process_start


def _replay(args: argparse.Namespace) -> int:
    # here, not at the top: with the database writer (psycopg), tqdm and the supervisor
    # imported at the top, ``ringex status`` took 0.52-0.62 s on the 2-core VM, 0.35-0.37 without
    from tqdm import tqdm  # noqa: PLC0415

    from procs.dbwriter.main import run as dbwriter_run  # noqa: PLC0415
    from procs.dbwriter.writer import StoppedWaitingError  # noqa: PLC0415

    cfg = load_profile(_profile(args))
    if refused := units_differ(cfg):  # its hashes, snapshot and rows would be in other units
        print(f"ringex replay: {refused}", file=sys.stderr)
        return 1
    if args.to_db and not cfg.database.enabled:  # (review 275: it ran an embedded cluster)
        print("ringex replay --to-db: this config has no database ([database] enabled = "
              "false): nothing to write into", file=sys.stderr)  # fmt: skip
        return 1
    bar = tqdm(total=0, unit="cmd", unit_scale=True, disable=args.quiet, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    # A snapshot must not outrun what is durable (a router with fsync "interval", "pipelined"
    # or "none" may have written entries it has not synced): sync what is there, up to its
    # end now.
    upto = _sync_journal(cfg) if args.snapshot else None
    recovered = recover(
        cfg, progress=progress, use_snapshot=not args.from_start, upto=upto, pipelined=True
    )
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
        written = write_snapshot(cfg, recovered)  # beside the router's (review 239)
        print(f"snapshot written: {written}")
    if args.to_db:
        try:
            checkpoint = dbwriter_run(cfg, to_end=True)
        except StoppedWaitingError as exc:  # a signal while PostgreSQL was unavailable
            print(f"ringex replay: {exc}; the database did not reach the journal's end",
                  file=sys.stderr)  # fmt: skip
            return 1
        print(f"database written up to seq {checkpoint}")
    if args.archive:
        if not journal_dir(cfg).is_dir():
            print(f"nothing archived: no journal at {journal_dir(cfg)}")
            return 0
        before = archivable_before(cfg)
        archive = journal_archive_dir(cfg)
        try:
            moved = archive_segments_before(journal_dir(cfg), before, archive)
        except (OSError, ValueError) as exc:  # a full archive volume, a clash: said, no trace
            print(f"ringex replay --archive: {exc}", file=sys.stderr)
            return 1
        print(f"archived {len(moved)} segment(s) before seq {before} to {archive}")
    return 0


def _sync_journal(cfg: RingexConfig) -> int | None:
    """fsync the journal's segments; the last seq they held before (durable now), or None
    without a journal."""
    directory = journal_dir(cfg)
    if not directory.exists():
        return None
    codec = RecordCodec()
    last = JournalReader(directory, slot_size=codec.slot_size, schema_id=codec.journal_schema_id)
    upto = last.last_seq()
    for _first, path in journal_segments(directory):
        fsync_file(path)
    return upto


def _profile(args: argparse.Namespace) -> str:
    """The profile name, or the config file as a path (so one without a suffix is a file)."""
    if args.config is not None:  # ("" is refused by ``named``: never the dev profile)
        return str(Path(args.config).absolute())
    return "dev" if args.profile is None else str(args.profile)


def _run(args: argparse.Namespace) -> int:
    profile = _profile(args)
    cfg = load_profile(profile)
    running = supervisor_running(read_status(cfg))
    if running is not None:  # its supervisor would refuse, into the running one's log
        print(f"ringex run: instance {cfg.instance} is running (supervisor pid {running}); "
              "stop it first (ringex stop)", file=sys.stderr)  # fmt: skip
        return 1
    logs = run_dir(cfg)
    try:  # the supervisor's first step: a traceback there, on either path
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"ringex run: cannot create {logs} (var_dir = {cfg.var_dir!r}): "
              f"{exc.strerror or exc}", file=sys.stderr)  # fmt: skip
        return 1
    if not args.detach:
        return supervisor_main(["--profile", profile])
    from procs.detached_start import start_detached  # noqa: PLC0415  (as _replay's)

    log_path = logs / "supervisor.log"
    if (failed := start_detached(cfg, profile, log_path, args.timeout)) is not None:
        return failed
    return _print_status(cfg, as_json=False)


def _stop(args: argparse.Namespace) -> int:
    cfg = load_profile(_profile(args))
    status = read_status(cfg)
    pid = supervisor_running(status)
    if pid is None:  # its processes die with it (PR_SET_PDEATHSIG): nothing runs, unless
        if orphans := _still_stopping(status):  # it was killed, and they stop yet
            return _wait_orphans(cfg, status, orphans, args.timeout)
        if (elsewhere := _running_elsewhere(cfg)) is not None:  # its status file elsewhere
            print(elsewhere, file=sys.stderr)
            return 1
        if starts := _starts_under_way(cfg, args):  # no status yet (199)
            return _stop_starts(cfg, args, starts)
        print(f"instance {cfg.instance} is not running")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:  # it ended between the check and the signal
        print(f"instance {cfg.instance} stopped")
        return 0
    timeout = args.timeout
    if timeout is None:
        timeout = stop_bound_s(cfg.supervisor.drain_timeout_s, _stop_grace_s())
    deadline = time.monotonic() + timeout
    started = (status or {}).get("supervisor_started") or 0  # its pid may be reused meanwhile
    while holder_alive(pid, started) and time.monotonic() < deadline:
        time.sleep(0.1)
    if holder_alive(pid, started):
        print(f"supervisor {pid} still running after {timeout:g} s", file=sys.stderr)
        return 1
    print(f"instance {cfg.instance} stopped")
    return 0


def supervisor_main(argv: list[str]) -> int:
    """The supervisor in the foreground (``procs.supervisor.main.main``), imported here: a
    quarter second of every other command's start."""
    from procs.supervisor.main import main  # noqa: PLC0415

    return main(argv)


def _stop_grace_s() -> float:
    """The supervisor's ``STOP_GRACE_S``, imported only by a stop that needs it (the
    supervisor and its metrics server: a quarter second of every command's start)."""
    from procs.supervisor.main import Supervisor  # noqa: PLC0415

    return Supervisor.STOP_GRACE_S


def _starts_under_way(cfg: RingexConfig, args: argparse.Namespace) -> list[int]:
    """``pending_runs``, less a foreground ``ringex run`` whose own supervisor wrote "stopped":
    its run is over and it is ending, no start (taken for one, a second ``ringex stop`` said
    "its start was under way" of a stopped instance, or its SIGTERM made it exit -15:
    review 199)."""
    status = read_status(cfg) or {}
    over = status.get("supervisor_pid") if status.get("state") == "stopped" else None
    if over is not None and process_start(over) != status.get("supervisor_started"):
        over = None  # another process's pid now
    return [pid for pid in pending_runs(cfg, _profile(args), load_profile) if pid != over]


def _stop_starts(cfg: RingexConfig, args: argparse.Namespace, starts: list[int]) -> int:
    bound = stop_bound_s(cfg.supervisor.drain_timeout_s, _stop_grace_s())
    again = functools.partial(_starts_under_way, cfg, args)  # (review 239)
    ran = [name for name in instances_run_by(cfg, starts) if name != cfg.instance]
    if left := stop_pending_runs(starts, bound if args.timeout is None else args.timeout, again):
        print(f"instance {cfg.instance}'s start (pids {left}) still running", file=sys.stderr)
        return 1
    if ran:  # started from this file, which has named another instance since
        print(f"instance {', '.join(ran)} stopped (started from this file, which now names "
              f"{cfg.instance})")  # fmt: skip
        return 0
    print(f"instance {cfg.instance} stopped (its start was under way)")
    return 0


def _still_stopping(status: dict[str, Any] | None) -> list[tuple[int, int]]:
    """The processes, (pid, start time), of a supervisor that ended without stopping them
    (killed outright) which still run: each got SIGTERM as its parent died, and one may take
    up to the stop grace to end (review 101), its rings let go or not (review 103). A pid
    whose process started at another time than the status says is another process's."""
    listed = (status or {}).get("processes", [])
    return [
        (p["pid"], p["started"])
        for p in listed
        if isinstance(p.get("pid"), int)
        and isinstance(p.get("started"), int)
        and process_start(p["pid"]) == p["started"]
    ]


def _alive_until(orphans: list[tuple[int, int]], until: float) -> list[int]:
    """The pids of ``orphans`` still the processes they were, once none is or at ``until``."""
    while (alive := [p for p, s in orphans if holder_alive(p, s)]) and time.monotonic() < until:
        time.sleep(0.05)
    return alive


def _wait_orphans(
    cfg: RingexConfig,
    status: dict[str, Any] | None,
    orphans: list[tuple[int, int]],
    timeout: float | None,
) -> int:
    """Wait, as a stop does, for ``orphans`` (``_still_stopping``) to end: each pid while
    its process is the one that started then (its pid may be taken once it ended). One still
    there at a deadline past the grace a SIGTERM gives is hung or stopped (SIGSTOP), which no
    SIGTERM ends, and no supervisor is left to kill it: SIGKILLed (review 218)."""
    grace = _stop_grace_s()
    if timeout is None:
        timeout = stop_bound_s(cfg.supervisor.drain_timeout_s, grace)
    alive = _alive_until(orphans, time.monotonic() + timeout)
    if alive and timeout >= grace:
        for pid, started in orphans:
            if holder_alive(pid, started):  # (its pid not taken since: checked just before)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        print(f"instance {cfg.instance}: pids {', '.join(map(str, alive))} had not ended "
              f"{timeout:g} s after the stop (hung or stopped): killed (SIGKILL)",
              file=sys.stderr)  # fmt: skip
        alive = _alive_until(orphans, time.monotonic() + 5.0)
    if alive:
        supervisor = (status or {}).get("supervisor_pid")
        print(f"instance {cfg.instance}: its supervisor (pid {supervisor}) "
              f"ended without stopping it, and pids {', '.join(map(str, alive))} are still "
              f"stopping after {timeout:g} s (each ends itself within "
              f"{grace:g} s of its SIGTERM; a stop whose --timeout is that "
              "or more kills what is left then)", file=sys.stderr)  # fmt: skip
        return 1
    print(f"instance {cfg.instance} stopped")
    return 0


def _running_elsewhere(
    cfg: RingexConfig, segments: Iterable[SegmentInfo] | None = None
) -> str | None:
    """Why the instance runs though no status file here says so, or None: its shared memory
    (``segments``, listed here when not given) is in use, so it was started with another
    ``var_dir`` (a relative one, as every shipped profile's, from another working
    directory: review 50)."""
    listed = list_segments(cfg.instance) if segments is None else segments
    pids = sorted({p for s in listed for p in s.live_pids})
    if not pids:
        return None
    if Path(cfg.var_dir).is_absolute():  # (review 275: no working directory helps)
        elsewhere = (
            f"from a config with another var_dir than {cfg.var_dir!r}: run this with that one"
        )
    else:
        elsewhere = (
            f"with another var_dir ({cfg.var_dir!r} is relative to the working directory): "
            "run this where it was started, or with its config's var_dir"
        )
    return (
        f"instance {cfg.instance} runs (its shared memory is in use by pids "
        f"{', '.join(map(str, pids[:8]))}), but {status_path(cfg)} does not say so: it was "
        f"started {elsewhere}"
    )


def _status(args: argparse.Namespace) -> int:
    cfg = load_profile(_profile(args))
    if args.wait_ready:
        deadline = time.monotonic() + args.timeout
        while not ready(read_status(cfg)):  # looked at once at least: --timeout 0 asks
            if time.monotonic() >= deadline:
                status = read_status(cfg)
                # no status here, its shared memory in use: it runs from another directory
                why = (not status and _running_elsewhere(cfg)) or not_ready(status)
                print(f"instance {cfg.instance} not ready within {args.timeout} s: {why}",
                      file=sys.stderr)  # fmt: skip
                return 1
            time.sleep(0.1)
    return _print_status(cfg, as_json=args.json)


def _print_status(cfg: RingexConfig, *, as_json: bool) -> int:
    status = read_status(cfg) or {  # never ran: the keys the supervisor writes, all there
        "instance": cfg.instance,
        "profile": "",
        "supervisor_pid": None,
        "supervisor_started": None,
        "state": "stopped",
        "role": "standby" if cfg.replication.primary else "primary",
        "prestarted": False,
        "reason": "",
        "updated_ns": 0,
        "metrics_url": "",
        "processes": [],
    }
    if status.get("supervisor_pid") and not supervisor_running(status):
        if status.get("state") != "stopped" and not status.get("reason"):  # killed (review 50)
            status["reason"] = (
                f"the supervisor (pid {status['supervisor_pid']}) ended while "
                f"{status.get('state')}, without stopping the instance"
            )
        status["state"] = "stopped"
    for process in status.get("processes", []):  # as it last wrote; see for ourselves, as a
        pid, started = process.get("pid"), process.get("started")  # supervisor busy with a
        # restart writes none meanwhile (review 50); a pid reused since is not the process
        alive = bool(process.get("alive")) and bool(pid) and pid_alive(pid)
        process["alive"] = alive and process_start(pid) == started
        process["ready"] = bool(process.get("ready")) and process["alive"]
        if not process["alive"]:  # its uptime as of the last write: not up now
            process["uptime_s"] = 0.0  # a float up or down (review 154)
    segments = {s.name: s for s in list_segments(cfg.instance)}
    ring_rows: list[dict[str, Any]] = []
    for spec in rings(cfg):
        if spec.name not in segments:
            continue
        try:  # unlinked since it was listed (a stop), or not attachable: not shown
            ring = Ring.attach(cfg.instance, spec.name, RecordCodec())
        except ShmPermissionError as exc:  # another user's rings (review 155: a traceback)
            print(f"ringex status: {exc}", file=sys.stderr)
            return 1
        except ShmError:
            continue
        try:
            info = ring.info()
        finally:
            ring.close()
        ring_rows.append(
            {
                "name": spec.name,
                "capacity": info.capacity,
                "cursor": info.cursor,
                "lags": {c.name: c.lag for c in info.consumers},
            }
        )
    status["rings"] = ring_rows
    status["endpoints"] = endpoints(cfg, status)
    # a standby serves no client (its gateways and feed start when it is promoted): the
    # addresses are its promoted instance's; the supervisor's metrics it serves now
    # and a primary serves them only while a process that meets them (a gateway, the feed)
    # is alive: its gateways all down, no FIX or REST endpoint answers (review 203)
    status["serves_clients"] = (
        status.get("role") != "standby"
        and status["state"] == "running"
        and any(p["alive"] and meets_clients(p["name"]) for p in status.get("processes", []))
    )
    if (
        status["state"] == "stopped"
        and (elsewhere := _running_elsewhere(cfg, segments.values())) is not None
    ):
        status["reason"] = elsewhere
    if as_json:
        print(json.dumps(status, indent=2))
    else:
        _print_status_text(status, ring_rows)
    return 0


def _print_status_text(status: dict[str, Any], ring_rows: list[dict[str, Any]]) -> None:
    """``ringex status`` in text: the state and role, each process, ring and endpoint."""
    role = status.get("role", "")  # a standby may hold its promotion's processes, started
    held = ", its promotion prestarted" if status.get("prestarted") else ""
    shown = f" ({role}{held})" if role else ""
    print(f"instance {status['instance']}: {status['state']}{shown}")
    if status.get("reason"):  # why it stopped (a crash loop, a process that did not start)
        print(f"  reason: {status['reason']}")
    for p in status.get("processes", []):
        state = ("up" if p.get("ready") else "recovering") if p["alive"] else "down"
        beat = p.get("heartbeat_age_s")
        beat_text = f" heartbeat {beat} s ago" if beat is not None and p["alive"] else ""
        print(
            f"  {p['name']:20} pid {p['pid']!s:>7} {state:10} "
            f"cpus {p['cpus'] or 'any'} restarts {p['restarts']} uptime {p['uptime_s']} s"
            f"{beat_text}"
        )
    for r in ring_rows:
        lags = ", ".join(f"{k} {v}" for k, v in r["lags"].items())
        print(f"  ring {r['name']:16} cursor {r['cursor']:>10} lags: {lags}")
    if status.get("role") == "standby":
        print("  endpoints once promoted (a standby serves no client; metrics it serves now):")
    elif not status["serves_clients"]:  # as --json says (review 203)
        print(f"  endpoints (no client is served now: {unserved(status)}):")
    for name, where in status["endpoints"].items():
        print(f"  {name:12} {where}")


def _admin(args: argparse.Namespace) -> int:
    cfg = load_profile(_profile(args))
    command = args.admin_command
    # an amount, an asset or a symbol of another config would be another one to the exchange
    if command not in ("users", "remove-user") and (refused := units_differ(cfg)):
        print(f"ringex admin {command}: {refused}", file=sys.stderr)
        return 1
    return run_admin(args, cfg)


def profile_args(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()  # both given: a usage error, never one in silence
    which.add_argument(
        "--profile", type=named, action=Once,
        help="profile name (config/profiles; default: dev)",
    )  # fmt: skip
    which.add_argument(
        "--config", type=named, action=Once, help="a TOML config file (instead of --profile)"
    )


def _add_lifecycle(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="start the exchange (foreground unless --detach)")
    profile_args(run)
    run.add_argument("--detach", action="store_true", help="return once it is running")
    run.add_argument(
        "--timeout", type=seconds, default=120.0, action=Once, help="--detach: seconds to wait"
    )
    run.set_defaults(func=_run)
    stop = sub.add_parser("stop", help="stop a running instance cleanly")
    profile_args(stop)
    stop.add_argument(
        "--timeout", type=seconds, default=None, action=Once,
        help="seconds to wait (default: as long as the instance's own stop may take, "
        "3 x 20 s of grace + supervisor.drain_timeout_s + 30 s)",
    )  # fmt: skip
    stop.set_defaults(func=_stop)
    status = sub.add_parser("status", help="processes, rings and endpoints of an instance")
    profile_args(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--wait-ready", action="store_true", help="wait until every process is up (and ready)"
    )
    status.add_argument(
        "--timeout", type=seconds, default=60.0, action=Once, help="--wait-ready: seconds"
    )
    status.set_defaults(func=_status)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ringex", description="ringex exchange tools")
    sub = parser.add_subparsers(dest="command", required=True)
    shm = sub.add_parser("shm", help="inspect and clean up shared-memory rings")
    shm_sub = shm.add_subparsers(dest="shm_command", required=True)
    ls = shm_sub.add_parser("ls", help="list ringex segments, their geometry and liveness")
    ls.add_argument("--instance", type=instance, action=Once, help="only this instance")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=shm_ls)
    rm = shm_sub.add_parser("rm", help="remove segments and their semaphores")
    rm.add_argument("--instance", type=instance, action=Once, help="only this instance")
    rm.add_argument("--stale", action="store_true", help="only segments no live process uses")
    rm.add_argument("--all", action="store_true", help="every ringex segment")
    rm.add_argument("--force", action="store_true", help="also remove segments still in use")
    rm.set_defaults(func=shm_rm)
    replay = sub.add_parser(
        "replay",
        help="rebuild router and matcher state from the newest snapshot and the journal, "
        "print the state hashes",
    )
    profile_args(replay)
    replay.add_argument("--snapshot", action="store_true", help="write a snapshot at the end")
    replay.add_argument(
        "--from-start", action="store_true", help="ignore snapshots: replay the whole journal"
    )
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.add_argument(
        "--to-db",
        action="store_true",
        help="then write the journal into PostgreSQL (the database writer's path, to the end; "
        "it resumes from the database's checkpoint, so rebuild into an empty database)",
    )
    replay.add_argument(
        "--archive",
        action="store_true",
        help="then move journal segments no recovery needs (before the oldest snapshot of "
        "the exchange, of every matcher and of the database writer, less the router's "
        "reread window) to journal.archive_dir/<instance> (default "
        "var/<instance>/journal-archive)",
    )
    replay.set_defaults(func=_replay)

    _add_lifecycle(sub)
    add_admin(sub, profile_args)
    sub.choices["admin"].set_defaults(func=_admin)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``ringex`` command: ``argv`` (a test's, in process) or the command line's.

    From the command line (``argv`` None), SIGTERM, SIGHUP and Ctrl-C are ignored once the
    command is done: a second ``ringex stop`` racing the end of a foreground ``ringex run``
    found its supervisor still alive and signalled it as the interpreter finalized, where
    CPython has put the handlers Python set back to the default, and the stopped exchange's
    ``run`` died of SIGTERM, not 0 (review 199). A caller in process keeps its handlers."""
    args = build_parser().parse_args(dashed_values_joined(sys.argv[1:] if argv is None else argv))
    try:
        # SIGTERM and SIGHUP as Ctrl-C, what is left to do said; not for replay, whose
        # pipelined recovery and database writer take signals their own way
        with interrupting() if args.func is not _replay else contextlib.nullcontext():
            result: int = args.func(args)
    except ConfigError as exc:  # a profile or file that does not load: its message names it
        print(f"ringex: {exc}", file=sys.stderr)
        return 2
    except JournalError as exc:  # a damaged journal: its message names segment and offset
        print(f"ringex: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C while a command waits: one line, not a traceback
        print(f"ringex: interrupted ({interrupted_by(exc)})", file=sys.stderr)  # or SIGTERM
        return exit_status(exc)
    except BrokenPipeError:  # `ringex status | head -1`: the reader had enough, no traceback
        # (what is still buffered for the closed pipe must not fail again at exit)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        if argv is None:  # the command line's: done, a late signal changes nothing
            ignore_interrupts()
    return result


if __name__ == "__main__":
    sys.exit(main())
