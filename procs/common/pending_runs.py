"""The starts of an instance under way that have not said so yet.

A new ``ringex run`` writes its first status only after its imports, the spawning of its
processes and its lock (a fraction of a second, more on a loaded host). ``ringex stop`` asked
meanwhile read the last life's status, said "not running", and the instance came up behind
it (review 199: ``ringex run &`` then ``ringex stop`` left it running). So a stop that finds
no live supervisor looks for such starts among this host's processes, by their command lines:
a ``ringex run`` (the installed script, or ``python -m procs.cli``) or a detached supervisor
(``python -m procs.supervisor.main``) whose profile, read from its own working directory,
has this status file's path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from config.loader import is_file_path
from config.schema import RingexConfig
from procs.common.run_files import status_at, status_path, supervisor_running
from shm.liveness import pid_alive

#: The words before ``run`` (or the profile's flags) in the command lines of a start.
_RUN_AFTER = ("ringex", "procs.cli")
_SUPERVISOR = "procs.supervisor.main"


def pending_runs(cfg: RingexConfig, profile: str, load: Callable[[str], RingexConfig]) -> list[int]:
    """The pids of this host's starts of ``profile`` (``cfg``'s: a name, or a file) whose
    status file is ``cfg``'s (a relative ``var_dir`` is the start's working directory's),
    this process aside; ``load`` reads a profile as ``ringex run`` does."""
    mine = status_path(cfg).absolute()
    wanted = _resolved(profile, Path.cwd())
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = [a.decode(errors="replace") for a in _cmdline(entry.path) if a]
            named = _profile_of(argv)
            if named is None:
                continue
            cwd = Path(os.readlink(f"{entry.path}/cwd"))
            theirs_named = _resolved(named[0], cwd, file=named[1])
            if theirs_named != wanted:  # another profile: not loaded (a test's stand-in
                continue  # loader would take any for its own)
            theirs = load(theirs_named)
            there = Path(theirs.var_dir)
            if not there.is_absolute():
                there = cwd / there
            if there / status_path(theirs).relative_to(theirs.var_dir) == mine:
                found.append(int(entry.name))
        except (OSError, ValueError):  # gone meanwhile, not ours to read, or no profile
            continue
    return found


def stop_pending_runs(
    pids: list[int], timeout_s: float, again: Callable[[], list[int]] = list
) -> list[int]:
    """SIGTERM each start in ``pids`` (before its handlers: it ends; after: it stops what it
    started, as a stop of a running instance does), and wait up to ``timeout_s`` for them to
    end; the pids still there. Then ``again`` (the scan once more) and the same for what it
    finds, until it finds none: a start spawns its supervisor (its own session, which the
    SIGTERM does not reach) between the scan and the signal (review 239)."""
    deadline = time.monotonic() + timeout_s
    while pids:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        left = pids
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [pid for pid in left if pid_alive(pid)]
        if left:
            return left
        pids = again()
    return []


def instances_run_by(cfg: RingexConfig, pids: list[int]) -> list[str]:
    """The instances whose status file, under ``cfg``'s ``var_dir``, says one of ``pids``
    runs them: what a start of a profile edited since runs (review 263: the file renamed
    its instance, and the stop named the new name)."""
    found = []
    for path in sorted(Path(cfg.var_dir).glob("*/run/status.json")):
        status = status_at(path) or {}  # a damaged one: not one of ours to name
        instance = status.get("instance")
        # its pid's process the one that wrote it (review 265: a stale file, its pid reused
        # by the start under way, was named)
        if isinstance(instance, str) and supervisor_running(status) in pids:
            found.append(instance)
    return found


def _resolved(profile: str, cwd: Path, *, file: bool = False) -> str:
    """``profile`` as one start's and one stop's can be compared: a file's absolute path
    (from ``cwd``, the working directory of whoever named it), a name as it is."""
    return str(cwd / profile) if file or is_file_path(profile) else profile


def _cmdline(proc: str) -> list[bytes]:
    with open(f"{proc}/cmdline", "rb") as f:
        return f.read().split(b"\0")


def _profile_of(argv: list[str]) -> tuple[str, bool] | None:
    """The profile a start's command line names and whether it is a file (its ``--config``),
    or None when the command line is not a start. A ``ringex run`` without either: "dev"."""
    for i, word in enumerate(argv[1:], 1):
        before, after = argv[i - 1], argv[i + 1 :]
        if word == "run" and (Path(before).name in _RUN_AFTER or before in _RUN_AFTER):
            if (config := _flag(after, "--config")) is not None:
                return config, True
            return _flag(after, "--profile") or "dev", False
        if word == _SUPERVISOR and before == "-m":
            profile = _flag(after, "--profile")
            return None if profile is None else (profile, False)
    return None


def _flag(args: list[str], name: str) -> str | None:
    for i, word in enumerate(args):
        if word == name and i + 1 < len(args):
            return args[i + 1]
        if word.startswith(name + "="):
            return word[len(name) + 1 :]
    return None
