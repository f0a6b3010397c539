"""An instance's run directory, ``var/<instance>/run``: what a running instance says of
itself (``status.json``, the processes' logs, a promotion request). Light on purpose: the
ops scripts (``scripts/failover.py``) read it without importing the supervisor."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from config.schema import RingexConfig
from procs.common.durable import PRIVATE, make_dirs
from shm.liveness import holder_alive, process_start


def run_dir(cfg: RingexConfig) -> Path:
    return Path(cfg.var_dir) / cfg.instance / "run"


def status_path(cfg: RingexConfig) -> Path:
    return run_dir(cfg) / "status.json"


class InstanceBusyError(RuntimeError):
    """Another supervisor holds the instance (``instance_lock``)."""


@contextmanager
def instance_lock(cfg: RingexConfig) -> Iterator[None]:
    """One supervisor an instance: an exclusive ``flock`` on ``run/supervisor.lock`` held for
    as long as it runs. The segments' check alone let two starts at the same moment both
    pass it before either made its rings, and then write over each other's status and
    rings. The lock goes with its process (a SIGKILL frees it) and is not inherited (the
    fd is close-on-exec); the file holds the holder's pid, for the refusal to name it."""
    path = run_dir(cfg) / "supervisor.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE)  # (another user could hold its flock:
    os.fchmod(fd, PRIVATE)  # a start refused as "running", review 95)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise InstanceBusyError(
                f"instance {cfg.instance!r} is running or starting: supervisor pid {holder} "
                f"holds {path}; stop it first (ringex stop)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object a process writes whole (renamed over), or None while there is none."""
    try:
        doc = json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # none, or damaged: not a status to act on
    return doc if isinstance(doc, dict) else None


#: The types of the keys readers act on: a status whose ``state`` is missing, or with one of
#: these of another type, is damaged (review 139: a flipped bit in a key raised KeyError out
#: of ``ringex status``); ``supervisor_running`` needs ``supervisor_started`` too.
_STATUS_KEYS: dict[str, type | tuple[type, ...]] = {
    "state": str,
    "supervisor_pid": (int, type(None)),
    "supervisor_started": (int, type(None)),
    "processes": list,
    "reason": (str, type(None)),
}


def read_status(cfg: RingexConfig) -> dict[str, Any] | None:
    """``status.json`` as the supervisor last wrote it, or None (none, damaged, or another
    instance's: a copy of a running instance's ``var/`` under another name took the source's
    status for its own, and ``ringex stop`` of the copy stopped the source, review 308)."""
    status = status_at(status_path(cfg))
    if status is not None and status.get("instance", cfg.instance) != cfg.instance:
        return None
    return status


def status_at(path: Path) -> dict[str, Any] | None:
    """The status file at ``path`` (another instance's too), or None (none, or damaged)."""
    status = read_json(path)
    if status is None or "state" not in status:
        return None
    for key, kind in _STATUS_KEYS.items():
        if key in status and not isinstance(status[key], kind):
            return None
    return status


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
    if started is None or started != status.get("supervisor_started"):
        return None
    return pid


def ready(status: dict[str, Any] | None) -> bool:
    """Running, with every process up and none recovering from a restart: as the file
    says, and each process's pid still the process it started as (a status file behind, a
    full ``var/`` say, would otherwise say ready of one gone: review 183)."""
    if not status or status.get("state") != "running" or not supervisor_running(status):
        return False
    return all(
        p.get("alive") and p.get("ready") and _still_running(p) for p in status.get("processes", [])
    )


def _still_running(process: dict[str, Any]) -> bool:
    """Whether the process a status entry names runs still (its pid and start time)."""
    pid, started = process.get("pid"), process.get("started")
    return isinstance(pid, int) and holder_alive(pid, started if isinstance(started, int) else 0)


def not_ready(status: dict[str, Any] | None) -> str:
    """Why ``status`` is not a ready instance, for an operator: not running (and why it
    stopped), still starting or stopping, or the processes that are down or recovering."""
    if not status:
        return "not running (it has not run: no status)"
    if not supervisor_running(status):
        reason = status.get("reason")
        return f"not running (stopped: {reason})" if reason else "not running"
    if status.get("state") != "running":
        return f"still {status.get('state')}"
    waiting = [
        f"{p.get('name')} {'recovering' if up else 'down'}"
        for p in status.get("processes", [])
        if not ((up := bool(p.get("alive")) and _still_running(p)) and p.get("ready"))
    ]
    return f"not ready: {', '.join(waiting)}" if waiting else "ready"


class StatusFile:
    """A JSON status file written whole at each ``write`` (a temporary file renamed over it),
    for a process that reports on itself (the replication source, the standby). A write the
    disk refuses (var/ full) is logged once, until one works, and never raised: what reports
    goes on (review 291: one failed write ended the source's reporter for good)."""

    def __init__(self, path: Path, log: logging.Logger) -> None:
        self.path, self._log = path, log
        self.failing = False  # the last write failed (said)

    def write(self, doc: Mapping[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            make_dirs(self.path.parent)
            tmp.write_text(json.dumps(doc, indent=2))
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self.failing:
                self._log.error("%s not written: %s (said once until a write works)",
                                self.path, exc)  # fmt: skip
            self.failing = True
        else:
            self.failing = False
