"""Liveness: is the process that holds a role still there, and has it shown signs of life?

Each role writes ``time.monotonic_ns()`` into its header line while idle and when asked, and
its sequence moves while it works; a supervisor tells a stuck consumer (records pending, no
progress, stale heartbeat) from an idle one (nothing pending) from a dead one (pid gone).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists and has not exited (signal 0 probes without
    delivering; a zombie, exited but not yet reaped by its parent, counts as gone)."""
    if not 0 < pid < 2**31:  # past a pid_t: a damaged word, no process (os.kill overflows)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: trust the signal probe
    return state != b"Z"


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since the host's boot, ``/proc/<pid>/stat``
    field 22), or None when there is no such process (or only its zombie), or no /proc to
    ask: with the pid, what names one process for good (a pid alone is reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    if fields[0] == "Z":  # exited, not yet reaped: gone
        return None
    # Linux gives the field in the reader's time namespace (boot time plus its offset): less
    # that offset, two processes of different namespaces read one number (review 103)
    return int(fields[19]) - _boottime_offset_ticks()


@functools.cache
def _boottime_offset_ticks() -> int:
    """This process's time namespace's boot-time offset, in clock ticks (0 outside one, or
    on a kernel without them). A process keeps its namespace, so it is read once."""
    try:
        lines = Path("/proc/self/timens_offsets").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        clock, seconds, nanoseconds = [*line.split(), "0", "0"][:3]
        if clock in ("boottime", "7"):  # named, or CLOCK_BOOTTIME's number on older kernels
            ticks_per_s = os.sysconf("SC_CLK_TCK")
            return int(seconds) * ticks_per_s + int(nanoseconds) * ticks_per_s // 10**9
    return 0


def own_start() -> int:
    """This process's start time (``process_start``), 0 where it cannot be read: what a
    role writes beside its pid in a ring's header."""
    return process_start(os.getpid()) or 0


def holder_alive(pid: int, started: int) -> bool:
    """``pid_alive``, and the very process that wrote ``pid`` where its start time was
    written with it (``started``; 0 where not): a process that took the pid since (a busy
    host wraps pid_max within hours, a container restarts with small pids) holds nothing
    of the ring, and must not keep a killed instance's segments live (review 101)."""
    if not started:
        return pid_alive(pid)
    now = process_start(pid)  # one read of /proc/<pid>/stat says both
    return now == started if now is not None else pid_alive(pid)  # gone, or no /proc to ask
