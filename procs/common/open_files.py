"""How many connections a process can hold: each is a file descriptor, and the usual soft
limit (1024) is far below a server's configured connection limit. ``connections_room``
raises it towards the hard limit at start and says what fits, so a server can answer the
rest (503) rather than have ``accept`` fail and drop them without a word.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource

log = logging.getLogger("ringex")

#: Descriptors kept for what is not a client: files, snapshots, logs, the rings' semaphores.
FD_MARGIN = 64


def connections_room(wanted: int, *, warn: bool = True) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards its hard one, far enough for
    ``wanted`` connections (1024 is the usual soft limit, a fifth of the market data's 5000);
    returns how many connections fit (at least one). Past it an accept would fail (EMFILE)
    and the client be dropped without a word; the limit check answers it 503 instead."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = FD_MARGIN
    need = in_use + wanted + FD_MARGIN
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(1, soft - in_use - FD_MARGIN)
    if room < wanted and warn:  # (a caller that fits several kinds of files says its own)
        log.warning(
            "max_connections %d does not fit %d open files (RLIMIT_NOFILE hard "
            "limit %s): at most %d connections, the others answered 503", wanted, soft, hard, room,
        )  # fmt: skip
    return min(wanted, room)
