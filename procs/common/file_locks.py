"""Claims the instance's processes share: an exclusive ``flock`` on a file, held by an open
descriptor. A claim is given back by closing it, and by the kernel when its process dies
(a SIGKILL included), so no claim outlives its holder.

Used where a limit holds across processes: a FIX session logged on at one gateway of an
instance (``gateway/live_sessions.py``), a private stream's slots of its key and account
(``gateway/stream_slots.py``).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def try_lock(path: Path) -> int | None:
    """The descriptor of ``path`` (made, mode 0600, where missing) with its exclusive lock
    taken, or None while another descriptor holds it (another process, or this one)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd
