"""Review 101 of the supervisor's lifecycle: a process killed at a bad moment, one that dies
again and again, the supervisor itself killed, a stop while a process restarts, two starts
at once, what `ringex run/stop/status` say and exit with when something fails.

A strict xfail is a fault found (its reason says what is wrong; its docstring where, and
what should happen); a plain test is a behaviour checked and found right. The supervisor
runs in this process or in one of its own (``python -m <this module> supervise PROFILE MODE
ARGS``), over stand-ins: this module is also what they run (``python -m
procs.supervisor.held <this module> MODE ...`` calls ``main``), so every start is cheap.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs import cli
from procs.common.record_codec import RecordCodec
from procs.common.run_files import read_status, status_path
from procs.common.stopping import stop_on_signals
from procs.common.topology import MATCHER, create_rings, matcher_input
from procs.supervisor import exit_reason
from procs.supervisor.main import Child, Supervisor, SupervisorError
from procs.supervisor.plan import ProcessSpec
from shm import Ring, header
from shm.inspect import SHM_DIR, list_segments
from shm.liveness import pid_alive, process_start
from shm.region import PREFIX
from tests.unit.supervisor.test_supervisor import wait_for, write_profile

ROOT = Path(__file__).parents[3]
THIS = "tests.unit.supervisor.test_review101_lifecycle"
#: The ring and line a stand-in holds to be ready: the small instance's matcher's.
READY_RING, READY_LINE = matcher_input("m1"), MATCHER
#: The stop grace of a supervisor run by ``supervise`` (20 s in production).
GRACE_S = 3.0


# -- the stand-ins and their supervisor ------------------------------------------------------


def main(argv: list[str]) -> int:
    """A supervised stand-in (``held.py`` calls it; ``argv`` is ``--profile FILE MODE ARGS``):
    ``hold MARKER`` holds the ready line and sleeps until killed; ``deaf MARKER`` as well,
    SIGTERM ignored (a slow clean stop); ``slow-again MARKER DELAY`` holds it at once on its
    first start, only after DELAY seconds on a later one (a restart replaying a journal).
    Each appends its pid to MARKER just before it takes the line (so, once ready)."""
    profile, mode, marker = argv[1], argv[2], Path(argv[3])
    if mode == "deaf":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "slow-again" and marker.exists():
        time.sleep(float(argv[4]))
    with marker.open("a") as f:
        f.write(f"{os.getpid()}\n")
    cfg = load_profile(profile)
    line = Ring.attach(cfg.instance, READY_RING, RecordCodec()).consumer(
        READY_LINE, cfg.wait.build()
    )
    while line is not None:
        time.sleep(1)
    return 0


def stand_in(mode: str, *args: str) -> ProcessSpec:
    return ProcessSpec("fake", THIS, (mode, *args), (), READY_RING, READY_LINE)


def supervise(profile: str, mode: str, *args: str) -> int:
    """A supervisor of one stand-in, as `ringex run` runs one (logging to stderr)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    Supervisor.STOP_GRACE_S = GRACE_S
    sup = Supervisor(load_profile(profile), profile)
    sup.children = [Child(stand_in(mode, *args))]
    return sup.run(stop_on_signals())


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the stand-ins import this module from the repository root


@pytest.fixture
def profile(instance: str, tmp_path: Path) -> Path:
    return write_profile(tmp_path / "p.toml", instance, tmp_path / "var", "metrics = false\n")


@pytest.fixture
def cfg(profile: Path) -> RingexConfig:
    return load_profile(str(profile))


class Leftovers:
    """Processes a test may leave running when it fails, by pid and start time."""

    def __init__(self) -> None:
        self.started: dict[int, int | None] = {}

    def add(self, *pids: int) -> None:
        for pid in pids:
            self.started[pid] = process_start(pid)

    def kill(self) -> None:
        """SIGKILL each that still runs: the same process, not one that took its pid since."""
        for pid, started in self.started.items():
            if started is not None and process_start(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def leftovers() -> Iterator[Leftovers]:
    left = Leftovers()
    yield left
    left.kill()


@contextlib.contextmanager
def supervisor_process(profile: Path, mode: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``supervise`` in a process of its own; killed at the end if it still runs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", THIS, "supervise", str(profile), mode, *args],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def pids_in(marker: Path) -> list[int]:
    """The pids the stand-ins wrote to ``marker``, in order."""
    return [int(p) for p in marker.read_text().split()] if marker.exists() else []


def ended(sup: Supervisor) -> None:
    """Whatever a test's supervisor in this process left: its processes, killed."""
    for child in sup.children:
        if child.process is not None:
            if child.process.poll() is None:
                child.process.kill()
            child.process.wait()
            if child.process.stdin is not None:
                child.process.stdin.close()


def closing_its_log(popen: Callable[..., Any]) -> Callable[..., Any]:
    """``popen`` that closes the log file it was given when it fails: ``_spawn`` leaves it
    open then (main.py:186, 209), and its ResourceWarning, collected later, would fail
    whichever test runs then (warnings are errors)."""

    def spawn(*args: Any, **kwargs: Any) -> Any:
        try:
            return popen(*args, **kwargs)
        except BaseException:
            kwargs["stdout"].close()
            raise

    return spawn


def once(check: Callable[[], bool]) -> Callable[[], bool]:
    """A stop that is asked once ``check()`` was true once."""
    seen = False

    def asked() -> bool:
        nonlocal seen
        seen = seen or check()
        return seen

    return asked


# -- 1. a restart that cannot start its process: a traceback, no reason ----------------------


def test_a_restart_that_cannot_fork_stops_the_instance_naming_why(
    profile: Path, cfg: RingexConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OOM killer SIGKILLs a process when memory is short, and a container's pids limit
    or RLIMIT_NPROC makes fork fail with EAGAIN: the moment a restart is needed is the
    moment it may not start. ``Supervisor._restart`` (procs/supervisor/main.py:330) calls
    ``_spawn`` (``subprocess.Popen``, main.py:199) unguarded, and ``_run`` (main.py:513)
    catches only ``SupervisorError``: the OSError ends the supervisor with a traceback and
    the instance stopped, its status "stopped" with an empty reason (``ringex status`` shows
    no why). Expected: a SupervisorError as for any restart that fails, so the run exits 1
    and the status's reason names the error (or the restart is tried again with its
    backoff, up to ``restart_limit``, and then that)."""
    sup = Supervisor(cfg, str(profile))
    marker = tmp_path / "pids"
    sup.children = [Child(stand_in("hold", str(marker)))]

    def no_fork(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    def killed_when_memory_is_short() -> None:
        monkeypatch.setattr(subprocess, "Popen", closing_its_log(no_fork))
        process = sup.children[0].process
        assert process is not None
        process.kill()

    deadline = time.monotonic() + 20
    try:
        code = sup.run(lambda: time.monotonic() > deadline, started=killed_when_memory_is_short)
    finally:
        monkeypatch.undo()
        ended(sup)
    reason = (read_status(cfg) or {}).get("reason", "")
    assert code == 1 and os.strerror(errno.EAGAIN) in reason, (code, reason)


# -- 2. a pinned CPU gone since the start: the restart dies in preexec_fn ---------------------


def test_a_restart_pinned_to_a_cpu_gone_since_the_start_names_it(
    profile: Path, cfg: RingexConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: "A `supervisor.cores` CPU this host lacks is refused at start, naming it and
    the host's CPUs". The check (``preflight.cpus_missing``) runs once, in ``Supervisor.run``
    (main.py:469); before a restart only the units are checked again (main.py:313). A CPU
    taken from the instance while it runs (``docker update --cpuset-cpus``, systemd's
    AllowedCPUs, a CPU offlined) makes the pinning in ``_spawn``'s ``preexec_fn``
    (main.py:192) fail at the next restart: ``subprocess.SubprocessError: Exception occurred
    in preexec_fn.`` escapes ``_restart``, a traceback naming nothing. Expected: a
    SupervisorError naming ``supervisor.cores``, the process and the CPU, as at start.
    Here the host's CPUs are shrunk for this process by patching ``sched_getaffinity`` and
    ``sched_setaffinity`` (the forked child runs the patched one)."""
    cpu = max(os.sched_getaffinity(0))
    marker = tmp_path / "pids"
    sup = Supervisor(cfg, str(profile))
    sup.children = [Child(ProcessSpec("fake", THIS, ("hold", str(marker)), (cpu,), "", ""))]
    sup.create_rings()
    try:
        sup.start()
        wait_for(lambda: pids_in(marker), 20)
        left = (os.sched_getaffinity(0) - {cpu}) or {cpu + 1}

        def pin(pid: int, cpus: Any) -> None:
            raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: CPUs {sorted(cpus)}")

        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(left))
        monkeypatch.setattr(os, "sched_setaffinity", pin)
        popen = subprocess.Popen
        monkeypatch.setattr(subprocess, "Popen", closing_its_log(popen))
        child = sup.children[0]
        assert child.process is not None
        child.process.kill()
        child.process.wait()
        with pytest.raises(SupervisorError) as refused:
            sup._restart(child, -9)
    finally:
        monkeypatch.undo()
        ended(sup)
        sup.stop()
    said = str(refused.value)
    assert "supervisor.cores" in said and str(cpu) in said, said


# -- 3. a status that cannot be written: the stop stops nothing --------------------------------


def test_a_status_that_cannot_be_written_leaves_no_process_or_ring(
    profile: Path, cfg: RingexConfig, tmp_path: Path, instance: str
) -> None:
    """``watch`` writes the status once a second (``_duties``, main.py:303); an OSError
    there (ENOSPC, EIO on ``var/``) escapes ``watch``, and ``_run``'s ``finally`` calls
    ``stop()``, whose first step is ``write_status()`` again (main.py:348): it raises too,
    so no process is sent SIGTERM, nothing is drained and no segment is removed; the
    supervisor ends with a traceback (its processes then get only their parent-death
    SIGTERM, unordered: intake is not stopped first). Expected: a status write that fails
    is logged (or stops the instance with that reason), and a stop goes through whatever
    the status file does: every process stopped, every segment removed. Here the write
    fails because ``status.tmp`` is a directory (as root no mode bit refuses a write)."""
    marker = tmp_path / "pids"
    sup = Supervisor(cfg, str(profile))
    sup.children = [Child(stand_in("hold", str(marker)))]
    blocker = status_path(cfg).with_suffix(".tmp")
    deadline = time.monotonic() + 30
    alive: list[int] = []
    try:
        sup.run(
            once(lambda: time.monotonic() > deadline or sup._duties_done > 0),
            started=blocker.mkdir,
        )
    finally:
        alive = [pid for pid in pids_in(marker) if pid_alive(pid)]
        segments = [s.name for s in list_segments(instance)]
        ended(sup)
        blocker.rmdir()
    assert alive == [] and segments == [], (alive, segments)


# -- 4. a start after a killed supervisor, one of whose pids was since reused -------------------


def reused_by(path: Path, pid: int, created_ns: int) -> None:
    """Rewrite the header of the ring at ``path`` as if made at ``created_ns`` by ``pid``,
    which also holds its producer line: what a leftover ring says once its creator's pid
    (and its producer's) was taken by another process. The start times beside them stay
    the processes' that wrote them (the creator's, here this one's, also the producer's)."""
    with path.open("r+b") as f:
        static = list(header.STATIC.unpack(f.read(header.STATIC.size)))
        static[-2:] = [created_ns, pid]  # created_ns, creator_pid
        f.seek(0)
        f.write(header.STATIC.pack(*static))
        f.seek(header.CREATOR_START * header.WORD)
        (started,) = struct.unpack("<q", f.read(header.WORD))
        f.seek(header.P_PID * header.WORD)
        f.write(struct.pack("<q", pid))
        f.seek(header.P_PID_START * header.WORD)
        f.write(struct.pack("<q", started))


def test_a_start_after_a_killed_supervisor_is_not_refused_for_a_reused_pid(
    profile: Path, cfg: RingexConfig, tmp_path: Path, instance: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A supervisor SIGKILLed (the OOM killer, a host's hang) leaves its segments, and a
    start removes them while no pid they name is alive. ``refuse_running``
    (procs/supervisor/main.py:119) takes a segment as live when any pid in its header is
    alive (``shm/inspect.py`` ``_describe``: ``pid_alive``, no start time), though the ring
    header says when the segment was made (``created_ns``): a process that started after
    that cannot be its creator or producer. Once the killed supervisor's pid, or one of
    its processes', is taken by another process (a busy host wraps pid_max within hours;
    containers restart with small pids), ``ringex run`` refuses "is running" and keeps
    refusing, and ``ringex shm`` does not call the segments stale: only removing them by
    hand starts the instance. Expected: a pid whose process started after the segment was
    made does not keep it live; the start removes the leftovers and runs. Here the
    leftover rings are made as the supervisor makes them, and their header is rewritten:
    made an hour ago, by a ``sleep`` started now (which also holds the producer line).
    Fixed: each pid in a ring's header has its process's start time beside it
    (``shm.liveness.holder_alive``), so a pid taken since holds nothing."""
    for ring in create_rings(cfg, RecordCodec()).values():
        ring.close()  # left behind, as by a supervisor killed outright
    reused = subprocess.Popen(["sleep", "60"])
    marker = tmp_path / "pids"
    again = Supervisor(cfg, str(profile))
    again.children = [Child(stand_in("hold", str(marker)))]
    code = None
    try:
        an_hour_ago = time.time_ns() - 3600 * 10**9
        rings = [s for s in list_segments(instance) if s.is_ring]
        for ring_info in rings:
            reused_by(SHM_DIR / f"{PREFIX}.{instance}.{ring_info.name}", reused.pid, an_hour_ago)
        taken = [set(s.live_pids) for s in list_segments(instance) if s.is_ring]
        assert pid_alive(reused.pid) and rings and taken == [set()] * len(rings), taken
        code = again.run(once(lambda: again.state == "running"))
    finally:
        ended(again)
        reused.kill()
        reused.wait()
    refused = [r.getMessage() for r in caplog.records if "is running" in r.getMessage()]
    assert code == 0 and not refused, (code, refused)
    assert list_segments(instance) == []


# -- 5. a killed supervisor's processes, still stopping, blamed on another var_dir ---------------


def test_the_orphans_of_a_killed_supervisor_are_not_blamed_on_another_var_dir(
    profile: Path, cfg: RingexConfig, tmp_path: Path, leftovers: Leftovers,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A supervisor killed outright: its processes get SIGTERM (their parent-death signal)
    and, one slow to stop (a gateway logging its sessions out, the database writer
    stopping its PostgreSQL), run on up to the stop grace (20 s), holding the segments.
    ``ringex stop`` meanwhile (procs/cli.py ``_stop``) finds no running supervisor in
    status.json and asks ``_running_elsewhere``, which sees the segments in use and says
    the instance "runs ... but status.json does not say so: it was started with another
    var_dir", exit 1: a false lead (the operator hunts another working directory), though
    the pids it names are the very ones status.json lists, written by the supervisor that
    ended. Expected: it says the supervisor ended and its processes are still stopping
    (or waits for them, as a stop does): not another var_dir. Here the process ignores
    SIGTERM (``deaf``), so it runs on for the grace (3 s) after its supervisor's kill. Fixed:
    ``ringex stop`` waits for them (``_still_stopping``) and names them if they outlast it."""
    marker = tmp_path / "pids"
    with supervisor_process(profile, "deaf", str(marker)) as sup:
        wait_for(lambda: (read_status(cfg) or {}).get("state") == "running", 30)
        orphan = pids_in(marker)[-1]
        leftovers.add(orphan)
        sup.kill()
        sup.wait()
    listed = [p["pid"] for p in (read_status(cfg) or {}).get("processes", [])]
    assert listed == [orphan] and pid_alive(orphan), (listed, orphan)  # the window is open
    code = cli.main(["stop", "--config", str(profile), "--timeout", "1"])
    out, err = capsys.readouterr()
    wait_for(lambda: not pid_alive(orphan), GRACE_S + 5)  # killed by itself after the grace
    assert "another var_dir" not in out + err, (code, out, err)
    assert code == 1 and f"pids {orphan} are still stopping" in err, (code, out, err)
    assert cli.main(["stop", "--config", str(profile)]) == 0  # now gone: nothing runs


# -- 6. two `run --detach` at once: the loser says the winner's line -----------------------------


def test_the_start_that_loses_the_race_says_its_own_reason(
    cfg: RingexConfig, tmp_path: Path
) -> None:
    """Two ``ringex run --detach`` of one instance at once: both pass the status check,
    both supervisors log to the one ``run/supervisor.log`` (opened for append by each
    ``_run``, procs/cli.py:201-204), and the loser is refused by the instance lock.
    ``start_failure`` (procs/cli.py:240-247) takes the last line logged from the loser's
    offset on, whoever wrote it: by the time the loser's exit is seen, the winner has
    logged "instance X running: 2 processes", so the loser prints "did not start: instance
    X running: 2 processes": a start that failed says the instance runs, as its reason.
    Expected: the loser's own refusal (its supervisor's lines, or its error line). Here
    ``start_failure`` is given the log as the race leaves it: the loser's refusal, then the
    winner's line, with the winner's status (no reason of the loser's there). Fixed: each
    supervisor's line names its pid (``SUPERVISOR_LOG_FORMAT``), and the loser's own are read."""
    loser, winner = 4_000_001, 4_000_002  # past pid_max: no process's
    lock = status_path(cfg).with_name("supervisor.lock")
    refusal = (
        f"instance {cfg.instance!r} is running or starting: supervisor pid {winner} holds "
        f"{lock}; stop it first (ringex stop)"
    )
    log = tmp_path / "supervisor.log"
    log.write_text(
        f"2026-11-28 06:03:16,101 ringex.supervisor[{loser}] {refusal}\n"
        f"2026-11-28 06:03:16,312 ringex.supervisor[{winner}] instance {cfg.instance} "
        "running: "
        "2 processes\n"
    )
    status = {"supervisor_pid": winner, "state": "running", "reason": "", "processes": []}
    why = exit_reason.start_failure(status, loser, log, 0)
    assert why == refusal, why


# -- 7. a stop racing the supervisor's exit: a traceback ------------------------------------------


def test_stop_of_a_supervisor_that_exits_meanwhile_is_no_traceback(
    profile: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``_stop`` (procs/cli.py:256-263) checks that the supervisor runs, then
    ``os.kill(pid, SIGTERM)`` unguarded: a supervisor that ends in between (its own stop
    after a crash loop ending, a second ``ringex stop`` a moment earlier) makes ``ringex
    stop`` end with a ProcessLookupError traceback (``cli.main`` catches no OSError).
    The window is narrow; here the check answers with the pid of a supervisor that is
    gone: one past the largest pid_max, which no process can have (nothing else is hit).
    Expected: "stopped" (or "not running"), exit 0."""
    gone = 2**22 + 1
    monkeypatch.setattr(cli, "supervisor_running", lambda status: gone)
    code = cli.main(["stop", "--config", str(profile), "--timeout", "1"])
    assert code == 0, capsys.readouterr()


# -- 8. a hangup: the supervisor dies outright --------------------------------------------------


def test_a_hangup_does_not_kill_the_supervisor_outright(
    profile: Path, cfg: RingexConfig, tmp_path: Path, instance: str, leftovers: Leftovers
) -> None:
    """``ringex run`` runs in the foreground (``make run`` does), so an SSH session that
    drops sends it SIGHUP. ``stop_on_signals`` (procs/common/stopping.py:106-107, used by
    ``supervisor_main``, procs/supervisor/main.py:533) handles SIGTERM and SIGINT only, so
    the hangup's default action ends the supervisor at once, as a SIGKILL would: intake is
    not closed first, the rings are not drained, the processes (in sessions of their own,
    which the hangup does not reach) stop unordered on their parent-death SIGTERM, the
    segments stay and ``ringex status`` says the supervisor "ended while running, without
    stopping the instance". Expected: a hangup stops the instance in order, as Ctrl-C does
    (exit 0, status "stopped", no segment left), or is ignored and the instance runs on."""
    marker = tmp_path / "pids"
    with supervisor_process(profile, "hold", str(marker)) as sup:
        wait_for(lambda: (read_status(cfg) or {}).get("state") == "running", 30)
        leftovers.add(*pids_in(marker))
        sup.send_signal(signal.SIGHUP)
        with contextlib.suppress(subprocess.TimeoutExpired):
            sup.wait(5)
        code = sup.poll()
        state = (read_status(cfg) or {}).get("state")
        segments = [s.name for s in list_segments(instance)]
    assert code is None or (code == 0 and state == "stopped" and segments == []), (
        code,
        state,
        segments,
    )


if __name__ == "__main__":
    sys.exit(supervise(*sys.argv[2:]) if sys.argv[1] == "supervise" else 2)
