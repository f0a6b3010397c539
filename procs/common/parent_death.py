"""Tie a child process's life to its parent's: Linux ``prctl(PR_SET_PDEATHSIG)``.

A child made by ``fork`` or started by a supervisor keeps running when its parent is killed
(SIGKILL, the OOM killer): nobody then watches it, and it can hold what a restarted parent
needs (a journal's lock, a live instance's segments). With this the kernel sends it
``signal`` the moment the parent thread that made it dies. No library wraps this one call
(``python-prctl`` is unmaintained), so it is ``ctypes`` over libc.
"""

from __future__ import annotations

import ctypes
import os
import signal as signals
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
#: Loaded once, in the parent: a ``preexec_fn`` runs between fork and exec, where loading a
#: library could take a lock another thread held at the fork.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(signal: int = signals.SIGTERM, *, parent: int | None = None) -> bool:
    """Ask for ``signal`` when the parent dies; False where the call is not available.

    Call it in the child (a ``preexec_fn``, or first thing in a fork's target), with
    ``parent`` the parent's pid taken before the fork (``os.getpid()`` there): a parent that
    died before the call is then caught by the ppid check, and the signal sent at once.
    Without it, the pid the child sees on entry stands in, which is already the reaper's
    when the parent died before the call: only a death during the call is caught."""
    if _LIBC is None:
        return False
    if parent is None:
        parent = os.getppid()
    if _LIBC.prctl(_PR_SET_PDEATHSIG, signal, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # the parent went between the fork and the call
        os.kill(os.getpid(), signal)
    return True


def kill_when_orphaned(grace_s: float, poll_s: float = 0.25) -> threading.Thread:
    """SIGKILL this process ``grace_s`` after its parent died (a daemon thread): the
    parent-death signal asks for a clean stop, and a process that is hung, or deaf to it,
    would otherwise live on with nobody watching it, as the parent's own stop would not
    let it (it kills after the same grace)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        time.sleep(grace_s)
        os.kill(os.getpid(), signals.SIGKILL)

    thread = threading.Thread(target=watch, name="orphan-watch", daemon=True)
    thread.start()
    return thread
