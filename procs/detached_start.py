"""``ringex run --detach``: the supervisor started in a session of its own, and waited for.

The command returns once the supervisor says the instance runs. A start that fails says
why (the supervisor's own reason, from its status or its log); one not running within the
timeout, or given up on (Ctrl-C, SIGTERM, SIGHUP while it waits), is stopped, so that it
never comes up behind the operator nor refuses a retry.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from config.schema import RingexConfig
from procs.admin.interrupts import exit_status, held_interrupts, ignore_interrupts, interrupted_by
from procs.common.run_files import not_ready, read_status
from procs.supervisor.draining import stop_bound_s
from procs.supervisor.exit_reason import start_failure
from procs.supervisor.main import Supervisor


def start_detached(cfg: RingexConfig, profile: str, log_path: Path, timeout: float) -> int | None:
    """Start ``profile``'s supervisor detached, its output appended to ``log_path``: None
    once it says the instance runs (and that said), else the command's exit status, its
    reason said."""
    child: subprocess.Popen[bytes] | None = None
    try:
        # a signal amid the spawn is taken once it is over: the child known, and so stopped
        # (one that raised within Popen left it to come up unknown behind the operator)
        with held_interrupts(), open(log_path, "ab") as out:
            logged = out.tell()  # where this start's lines begin
            child = subprocess.Popen(
                [sys.executable, "-m", "procs.supervisor.main", "--profile", profile],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if (failed := _wait_started(cfg, child, log_path, logged, timeout)) is not None:
            return failed
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: none reaches the supervisor
        if child is None:  # before the spawn: nothing to stop
            raise
        ignore_interrupts()  # (in its own session); a second must not cut the stop short
        _end_start(cfg, child)  # given up on: it must not come up behind the operator
        print(f"ringex run: {interrupted_by(exc)} while instance {cfg.instance} was starting: "
              f"the start is given up, its supervisor (pid {child.pid}) stopped; see "
              f"{log_path}", file=sys.stderr)  # fmt: skip
        return exit_status(exc)
    # said once the wait is over: a signal from here on ends the command, not the instance
    print(f"instance {cfg.instance} running (supervisor pid {child.pid})")
    return None


def _wait_started(
    cfg: RingexConfig, child: subprocess.Popen[bytes], log_path: Path, logged: int,
    timeout: float,
) -> int | None:  # fmt: skip
    """Wait for the detached supervisor ``child`` to say the instance runs: None once it
    does, else the command's exit status, its reason said."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        status = read_status(cfg)
        if status and status.get("supervisor_pid") == child.pid and status["state"] == "running":
            return None
        if child.poll() is not None:
            why = start_failure(read_status(cfg), child.pid, log_path, logged)
            print(f"ringex run: instance {cfg.instance} did not start: {why} (the supervisor "
                  f"exited with {child.returncode}; see {log_path})", file=sys.stderr)  # fmt: skip
            return 1
        time.sleep(0.1)
    why = not_ready(read_status(cfg))  # as it stood when the wait ended
    _end_start(cfg, child)  # reported as failed, it must not come up later (nor refuse a retry)
    print(f"instance {cfg.instance} not ready within {timeout} s ({why}): stopped; see "
          f"{log_path}", file=sys.stderr)  # fmt: skip
    return 1


def _end_start(cfg: RingexConfig, child: subprocess.Popen[bytes]) -> None:
    """Stop a start given up on, and wait as long as `ringex stop` would: a stop killed
    mid-way leaves segments behind."""
    child.terminate()
    try:
        child.wait(stop_bound_s(cfg.supervisor.drain_timeout_s, Supervisor.STOP_GRACE_S))
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
