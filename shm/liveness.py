"""Liveness: is the process that holds a role still there, and has it shown signs of life?

Each role writes ``time.monotonic_ns()`` into its header line while idle and when asked, and
its sequence moves while it works; a supervisor tells a stuck consumer (records pending, no
progress, stale heartbeat) from an idle one (nothing pending) from a dead one (pid gone).
"""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists and has not exited (signal 0 probes without
    delivering; a zombie, exited but not yet reaped by its parent, counts as gone)."""
    if pid <= 0:
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
