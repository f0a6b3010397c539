"""Claims the instance's processes share: an exclusive ``flock`` on a file, held by an open
descriptor. A claim is given back by closing it, and by the kernel when its process dies
(a SIGKILL included), so no claim outlives its holder. A file no claim holds carries nothing
and may be removed (``remove_unheld``): one per name ever claimed would pile up.

Used where a limit holds across processes: a FIX session logged on at one gateway of an
instance (``gateway/live_sessions.py``), a private stream's slots of its key and account
(``gateway/stream_slots.py``).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

#: Opens of a lock file that another process removed between the open and the lock, before
#: ``try_lock`` counts the claim held (each such removal needs an unheld file: rare).
_REOPENS = 8


def try_lock(path: Path) -> int | None:
    """The descriptor of ``path`` (made, mode 0600, where missing) with its exclusive lock
    taken, or None while another descriptor holds it (another process, or this one). The lock
    is on the file ``path`` names once taken: a file ``remove_unheld`` unlinked between this
    open and the lock is let go and ``path`` opened again (else two holders could each hold a
    "claim" of one name, on two files)."""
    for _ in range(_REOPENS):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                named = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                named = False
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if named:
            return fd
        os.close(fd)
    return None


def remove_unheld(path: Path) -> bool:
    """Remove the lock file ``path`` unless a claim holds it; whether it was removed (or
    gone). Its lock is taken first, so no holder loses a claim, and a process that opened it
    before the unlink takes the lock on a file its path no longer names: ``try_lock`` opens
    the path again."""
    fd = try_lock(path)
    if fd is None:
        return False
    try:
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)
    return True
