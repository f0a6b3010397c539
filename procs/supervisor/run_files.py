"""An instance's run directory, ``var/<instance>/run``: what a running instance says of
itself (``status.json``, the processes' logs, a promotion request). Light on purpose: the
ops scripts (``scripts/failover.py``) read it without importing the supervisor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from config.schema import RingexConfig


def run_dir(cfg: RingexConfig) -> Path:
    return Path(cfg.var_dir) / cfg.instance / "run"


def status_path(cfg: RingexConfig) -> Path:
    return run_dir(cfg) / "status.json"


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object a process writes whole (renamed over), or None while there is none."""
    try:
        doc = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def read_status(cfg: RingexConfig) -> dict[str, Any] | None:
    """``status.json`` as the supervisor last wrote it, or None."""
    return read_json(status_path(cfg))


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, ``/proc/<pid>/stat`` field 22),
    or None when there is no such process (or only its zombie): with the pid, what names one
    process for good (a pid alone is reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    if fields[0] == "Z":  # exited, not yet reaped: gone
        return None
    return int(fields[19])


def supervisor_running(status: dict[str, Any] | None) -> int | None:
    """The pid of the supervisor ``status`` was written by, while that very process runs
    (its pid alive *and* started when the file says: after a crash or a reboot the pid may
    be another process's); else None."""
    if not status or status.get("state") == "stopped":
        return None
    pid = status.get("supervisor_pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    started = process_start(pid)
    if started is None or started != status.get("supervisor_started", started):
        return None
    return pid
