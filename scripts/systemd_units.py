"""Production under systemd: each process of an instance as a transient unit, in place of the
built-in supervisor.

    python scripts/systemd_units.py start  --profile P [--dry-run] [--user] [--uid U]
    python scripts/systemd_units.py stop   --profile P [--dry-run] [--user]
    python scripts/systemd_units.py status --profile P [--user]

Where the supervisor (``procs/supervisor/main.py``) does a job, systemd does it here:

- the instance's rings are created first, by the supervisor's own code (``create_rings``:
  it refuses a running instance and removes what a dead one left), after its refusal of a
  config whose units are not the journal's (``refuse_other_units``), and the whole start
  holds the instance's lock (``run_files.instance_lock``), as a supervisor's start does: a
  ``ringex run`` of the instance at the same moment is refused, or refuses this one;
- each process of ``plan(cfg)``, in its order, becomes ``ringex-<instance>-<name>.service`` in
  ``ringex-<instance>.slice`` (``systemd-run``), pinned with ``CPUAffinity=`` and niced with
  ``Nice=`` (``supervisor.cores``, ``supervisor.nice``, refused as the supervisor refuses
  them: a CPU the host lacks, a niceness this user may not set). It is
  ``Type=notify``: it sends READY=1 (``procs/common/sd_notify.py``) at the point where the
  supervisor would see it attach its ready ring, and ``systemd-run`` waits for that before the
  next one starts; a process with no ready ring (the database writer) is not waited for, as
  the supervisor does not wait for it either;
- restarts: ``Restart=on-failure``, and ``supervisor.restart_limit`` restarts within
  ``restart_window_s`` leave the unit failed (``StartLimitBurst=``, ``StartLimitIntervalSec=``)
  where the supervisor would stop the whole instance;
- liveness: ``WatchdogSec=`` (``--watchdog-sec``; the database writer's at least twice its
  longest nap, ``database.retry_max_s``): a process whose loop stops pinging is killed and
  restarted, which the supervisor does not do;
- logs go to journald (``journalctl _SYSTEMD_SLICE=<the instance's slice>``), not
  ``var/<instance>/run``;
- stop: the gateways first, then the rings drain, then the rest in reverse order, the slice,
  and the segments are removed.

Where systemd is not PID 1 (containers, CI) this refuses and points to ``ringex run``;
``--dry-run`` prints the commands anywhere without running them.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import pwd
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from config import load_profile
from config.loader import ConfigError
from config.schema import RingexConfig
from procs.common.exit_codes import REFUSED
from procs.common.record_codec import RecordCodec
from procs.common.records import Record
from procs.common.run_files import InstanceBusyError, instance_lock, run_dir
from procs.common.topology import rings
from procs.supervisor.draining import drain as drain_rings
from procs.supervisor.main import Supervisor, SupervisorError
from procs.supervisor.plan import ProcessSpec, plan
from shm import Ring
from shm.errors import ShmError
from shm.inspect import SHM_DIR, list_segments, remove
from shm.region import PREFIX

#: The processes that speak sd_notify (READY, STOPPING, WATCHDOG); others run as Type=exec.
NOTIFYING = frozenset(
    f"procs.{p}.main" for p in ("matcher", "router", "gateway", "marketdata", "dbwriter", "replica")
)
#: As the supervisor: a process gets this long to stop cleanly before it is killed.
STOP_TIMEOUT_S = 20
#: What sd_booted() looks at, and what PID 1 is called (for the message).
BOOTED_DIR = Path("/run/systemd/system")
INIT_COMM = Path("/proc/1/comm")


@dataclass(frozen=True)
class Options:
    profile: str  # as the processes get it: a profile name or an absolute path
    workdir: Path  # var_dir and the journal are relative to it, as under the supervisor
    python: str = sys.executable
    user: bool = False  # the user's manager (systemctl --user) instead of the system's
    uid: str = ""  # the system manager runs the processes as this user
    watchdog_s: int = 30  # WatchdogSec (0: off)

    def systemctl(self, *args: str) -> list[str]:
        return ["systemctl", *(["--user"] if self.user else []), *args]


def unit_name(cfg: RingexConfig, spec: ProcessSpec) -> str:
    return f"ringex-{cfg.instance}-{spec.name}.service"


def logs_command(cfg: RingexConfig, user: bool) -> str:
    """The journalctl line that follows the instance's units: by their slice, which names
    this instance alone (a unit glob ``ringex-prod-*`` takes in ``prod-a``'s too)."""
    field = "_SYSTEMD_USER_SLICE" if user else "_SYSTEMD_SLICE"
    journal = "journalctl --user" if user else "journalctl"
    return f"{journal} {shlex.quote(f'{field}={slice_name(cfg)}')} -f"


def slice_name(cfg: RingexConfig) -> str:
    """``ringex-<instance>.slice``, a child of ringex.slice: '-' is systemd's nesting, so a
    dash in the instance is escaped as ``systemd-escape`` does (``\\x2d``). Unescaped,
    instance "prod-a"'s slice would be a child of instance "prod"'s, which its stop (and
    its start's is-active check) would take for its own."""
    escaped = cfg.instance.replace("-", "\\x2d")
    return f"ringex-{escaped}.slice"


def run_command(cfg: RingexConfig, spec: ProcessSpec, opts: Options) -> list[str]:
    """The ``systemd-run`` line that starts one process of ``plan(cfg)``."""
    sup = cfg.supervisor
    notifying = spec.module in NOTIFYING
    waited = bool(spec.ready_ring)  # the supervisor waits for these only
    props = [
        f"Type={'notify' if notifying else 'exec'}",
        *(["NotifyAccess=main"] if notifying else []),  # not postgres, not a forked snapshot
        *([f"WatchdogSec={watchdog_s(cfg, spec, opts)}s"] if notifying and opts.watchdog_s else []),
        "Restart=on-failure",
        f"RestartPreventExitStatus={REFUSED}",  # a refusal of its config: it would again
        "RestartSec=1s",
        f"StartLimitIntervalSec={_span(sup.restart_window_s)}",
        f"StartLimitBurst={sup.restart_limit + 1}",  # the first start and restart_limit more
        f"TimeoutStartSec={_span(sup.ready_timeout_s) if waited else 'infinity'}",
        f"TimeoutStopSec={STOP_TIMEOUT_S}s",
        "KillMode=mixed",  # SIGTERM to the process alone: it stops its own children
        *([f"CPUAffinity={','.join(map(str, spec.cpus))}"] if spec.cpus else []),
        *([f"Nice={spec.nice}"] if spec.nice else []),  # as the supervisor's os.nice
    ]
    return [
        "systemd-run",
        *(["--user"] if opts.user else []),
        f"--unit={unit_name(cfg, spec)}",
        f"--slice={slice_name(cfg)}",
        f"--description=ringex {cfg.instance} {spec.name}",
        *([] if waited else ["--no-block"]),
        *([f"--uid={opts.uid}"] if opts.uid and not opts.user else []),
        f"--working-directory={opts.workdir}",
        "--setenv=PYTHONUNBUFFERED=1",  # log lines reach the journal as they are written
        *passed_environment(),
        *(arg for p in props for arg in ("-p", p)),
        "--",
        *map(exec_arg, [opts.python, "-m", spec.module, "--profile", opts.profile, *spec.args]),
    ]


def watchdog_s(cfg: RingexConfig, spec: ProcessSpec, opts: Options) -> int:
    """``WatchdogSec=`` of a unit: ``--watchdog-sec``, and for the database writer at least
    twice ``database.retry_max_s``: it pings between its naps, and while PostgreSQL is down
    it naps that long between tries (killed for it, it would be restarted into the same
    outage until its start limit leaves it failed, where the supervisor lets it retry)."""
    if spec.module == "procs.dbwriter.main":
        return max(opts.watchdog_s, math.ceil(2 * cfg.database.retry_max_s))
    return opts.watchdog_s


def exec_arg(arg: str) -> str:
    """``arg`` as systemd takes it literally: the manager expands ``$NAME`` and ``${NAME}``
    in a service's command line (``systemd-run --expand-environment``, on by default), so a
    ``$`` in a path (the venv's, the profile's) is written ``$$``."""
    return arg.replace("$", "$$")


def _span(seconds: float) -> str:
    """A systemd time span, never with an exponent (systemd refuses ``1e+06s``); ``inf`` (no
    bound: the config refuses it, a caller may not) systemd spells ``infinity``. A positive
    span is at least 1 ms: systemd reads 0 as no timeout, no limit (a review, 2026-12-03:
    ``ready_timeout_s = 0.0001`` became ``TimeoutStartSec=0ms``, a start never timed out)."""
    if math.isinf(seconds):
        return "infinity"
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def stop_order(cfg: RingexConfig) -> list[list[ProcessSpec]]:
    """As the supervisor stops them: intake, (the rings drain), the rest in reverse, last."""
    specs = plan(cfg)
    return [
        [s for s in specs if s.intake],
        [s for s in reversed(specs) if not (s.intake or s.stop_last)],
        [s for s in specs if s.stop_last],
    ]


def why_not_systemd() -> str | None:
    """None when systemd runs this machine (sd_booted's test), else why not."""
    if BOOTED_DIR.is_dir():
        return None
    try:
        init = INIT_COMM.read_text().strip()
    except OSError:
        init = "unknown"
    return f"systemd is not PID 1 here (PID 1 is {init!r}, no {BOOTED_DIR})"


class Shell:
    """Runs commands, or prints them (``dry_run``)."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run

    def __call__(self, cmd: Sequence[str], *, quiet: bool = False) -> int:
        if self.dry_run:
            print(shlex.join(cmd))
            return 0
        out = subprocess.DEVNULL if quiet else None
        return subprocess.call(list(cmd), stdout=out, stderr=out)

    def note(self, text: str) -> None:
        print(f"# {text}" if self.dry_run else text)


def start(cfg: RingexConfig, opts: Options, sh: Shell) -> int:
    """Start the instance's units; 1 where it is refused (it runs, or starts under a
    supervisor, or its units are not its journal's) or a unit did not start."""
    if sh.dry_run:
        return _start(cfg, opts, sh)
    try:
        with instance_lock(cfg):  # until every unit has started: its rings are held then
            return _start(cfg, opts, sh)
    except InstanceBusyError as exc:
        print(f"systemd_units: {exc}", file=sys.stderr)
        return 1


def _start(cfg: RingexConfig, opts: Options, sh: Shell) -> int:
    specs = plan(cfg)
    units = [unit_name(cfg, s) for s in specs]
    if sh.dry_run:
        sh.note(f"create the rings of instance {cfg.instance} (Supervisor.create_rings)")
    else:
        if sh(opts.systemctl("is-active", "--quiet", slice_name(cfg))) == 0:
            print(
                f"systemd_units: {slice_name(cfg)} is active: instance {cfg.instance} runs; "
                "stop it first",
                file=sys.stderr,
            )
            return 1
        if opts.uid and not opts.user:
            try:
                unit_user(opts.uid)  # before anything is created: a typo leaves nothing behind
            except KeyError:
                print(f"systemd_units: no user {opts.uid!r} on this host", file=sys.stderr)
                return 1
        try:
            supervisor = Supervisor(cfg, opts.profile)
            supervisor.refuse_cpus_missing()  # CPUAffinity= and Nice= would fail at exec
            supervisor.refuse_other_units()  # the router would refuse, and be restarted
            supervisor.create_rings()
        except SupervisorError as exc:
            print(f"systemd_units: {exc}", file=sys.stderr)
            return 1
        if opts.uid and not opts.user:
            chown_segments(cfg, opts.uid)
            chown_instance_dirs(cfg, opts.uid)
    sh(opts.systemctl("reset-failed", *units), quiet=True)  # names a failed run left loaded
    for spec in specs:
        if sh(run_command(cfg, spec, opts)) != 0:
            unit = unit_name(cfg, spec)
            print(
                f"systemd_units: {unit} did not start; see "
                f"{shlex.join(opts.systemctl('status', unit))} and journalctl -u {unit}; "
                "stopping what started",
                file=sys.stderr,
            )
            stop(cfg, opts, sh)
            return 1
    sh.note(f"instance {cfg.instance}: {len(specs)} units in {slice_name(cfg)}; logs: "
            f"{logs_command(cfg, opts.user)}")  # fmt: skip
    if cfg.supervisor.metrics:  # the supervisor serves them, and no unit runs it (review 52)
        sh.note(f"the Prometheus metrics (supervisor.metrics_port "
                f"{cfg.supervisor.metrics_port}) are not served: the built-in supervisor "
                "serves them, and under systemd none runs")  # fmt: skip
    return 0


def stop(cfg: RingexConfig, opts: Options, sh: Shell) -> int:
    """Stop the units in order and remove the segments no live process holds; 1 (naming
    them) when a unit did not stop (not loaded: started with or without ``--user`` unlike
    this call, say), whose processes then keep their rings."""
    intake, rest, last = stop_order(cfg)
    failed: list[str] = []
    if intake:
        names = [unit_name(cfg, s) for s in intake]
        if sh(opts.systemctl("stop", *names)):
            failed += names
    if sh.dry_run:
        sh.note(f"wait until the rings drain (at most {cfg.supervisor.drain_timeout_s:g} s)")
    else:
        drain(cfg)
    for spec in [*rest, *last]:  # one at a time: each stops before the one it feeds
        if sh(opts.systemctl("stop", unit_name(cfg, spec)), quiet=True):
            failed.append(unit_name(cfg, spec))
    sh(opts.systemctl("stop", slice_name(cfg)), quiet=True)  # anything left behind
    if sh.dry_run:
        sh.note(f"remove the shared-memory segments of instance {cfg.instance}")
        return 0
    segments = list_segments(cfg.instance)
    for segment in segments:
        if segment.stale:  # a live process's rings stay: it may still be running on them
            remove(segment)
    held = [s.name for s in segments if not s.stale]
    if failed or held:
        print(
            f"instance {cfg.instance}: units not stopped: {failed or 'none'}; segments still "
            f"held by live processes (kept): {held or 'none'}",
            file=sys.stderr,
        )
        return 1
    print(f"instance {cfg.instance} stopped; {len(segments)} segments removed")
    return 0


def status(cfg: RingexConfig, opts: Options, sh: Shell) -> int:
    units = [unit_name(cfg, s) for s in plan(cfg)]
    return sh(opts.systemctl("status", "--no-pager", "--lines=5", slice_name(cfg), *units))


def drain(cfg: RingexConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until every live consumer has read its ring to the end, at most
    ``supervisor.drain_timeout_s`` (as the supervisor does: ``draining.drain``)."""
    attached: list[Ring[Record]] = []
    for spec in rings(cfg):
        try:
            attached.append(Ring.attach(cfg.instance, spec.name, RecordCodec()))
        except ShmError:
            continue  # already removed: nothing to drain
    try:
        lagging = drain_rings(attached, cfg.supervisor.drain_timeout_s, sleep=sleep)
        if lagging:
            print(f"rings not drained in {cfg.supervisor.drain_timeout_s:g} s: {lagging}")
    finally:
        for ring in attached:
            ring.close()


def unit_user(user: str) -> pwd.struct_passwd:
    """The account ``systemd-run --uid`` names: a user name or a number (``KeyError``)."""
    return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)


def passed_environment() -> list[str]:
    """``--setenv`` of what the supervisor would pass its processes and a unit needs: the
    ``RINGEX_*`` variables (``RINGEX_ALLOW_WEAK_MEMORY`` on ARM or POWER) and libpq's ``PG*``
    (an external ``database.dsn`` may rely on them); ``systemd-run`` passes none of the
    caller's environment (review 52)."""
    return [  # by name: systemd-run takes the value from its own environment, so none (a
        # PGPASSWORD) is written on a command line that ps shows (the reread of review 51)
        f"--setenv={name}"
        for name in sorted(os.environ)
        if name.startswith(("RINGEX_", "PG"))
    ]


def chown_instance_dirs(cfg: RingexConfig, user: str) -> None:
    """What ``start`` (root) made of ``var/<instance>``, handed to ``user``, as the rings
    are: the units write the journal, snapshots and status there (review 52)."""
    entry = unit_user(user)
    top = run_dir(cfg).parent
    # by directory descriptors: no link is followed, nor one swapped in for a directory
    # while the walk goes (a link may name any file: the rereads of review 51)
    for _, dirs, files, fd in os.fwalk(top, follow_symlinks=False):
        for name in (".", *dirs, *files):
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if st.st_uid == 0 and not stat.S_ISLNK(st.st_mode):
                    os.chown(name, entry.pw_uid, entry.pw_gid, dir_fd=fd, follow_symlinks=False)


def chown_segments(cfg: RingexConfig, user: str) -> None:
    """The rings were created by this (root) process; the units run as ``user``."""
    entry = unit_user(user)
    for segment in list_segments(cfg.instance):
        names = [f"{PREFIX}.{segment.instance}.{segment.name}"]
        names += [f"sem.{sem.lstrip('/')}" for sem in segment.semaphores]
        for name in names:
            path = SHM_DIR / name
            if path.exists():
                os.chown(path, entry.pw_uid, entry.pw_gid)


def _seconds(text: str) -> int:
    """``--watchdog-sec``: whole seconds, 0 or more (systemd refuses ``WatchdogSec=-5s``)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0 (0 turns the watchdog off)")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0].replace("\n", " "))
    ap.add_argument("action", choices=("start", "stop", "status"))
    ap.add_argument("--profile", default="dev", help="profile name or TOML path")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--user", action="store_true", help="use the user's systemd manager")
    ap.add_argument("--uid", default="", help="system manager: run the processes as this user")
    ap.add_argument("--watchdog-sec", type=_seconds, default=30, help="WatchdogSec (0: off)")
    args = ap.parse_args(argv)
    profile = args.profile
    if Path(profile).suffix:  # a file: the units run it from their working directory
        profile = str(Path(profile).resolve())
    try:
        cfg = load_profile(profile)
    except ConfigError as exc:  # as every `ringex` command says it: one line, exit 2
        print(f"systemd_units: {exc}", file=sys.stderr)
        return 2
    opts = Options(
        profile=profile,
        workdir=Path.cwd(),
        user=args.user,
        uid=args.uid,
        watchdog_s=args.watchdog_sec,
    )
    if not args.dry_run:
        reason = why_not_systemd()
        if reason is not None:
            print(
                f"systemd_units: {reason}, as in containers and CI: run the instance with its "
                f"built-in supervisor instead:\n    .venv/bin/ringex run --profile {args.profile}"
                "\n(--dry-run prints the systemd commands without running them)",
                file=sys.stderr,
            )
            return 2
    actions = {"start": start, "stop": stop, "status": status}
    return actions[args.action](cfg, opts, Shell(args.dry_run))


if __name__ == "__main__":
    sys.exit(main())
