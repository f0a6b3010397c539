"""The roles of rings this process holds (a ring's producer, a consumer line), with how many
open handles each: a process may take a role it holds again (a second ``Ring.attach``, a
restart within the process), and the header's pid then names both handles. The first
``close`` must not clear it while the other still publishes or reads: another process
would take the role of a live one (review 103)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Final

#: The producer's role; a consumer's is its line's index.
PRODUCER: Final = -1

#: (pid, instance, ring, created_ns, role) -> handles open; the pid, so that a forked
#: child's copy of the count is not taken for its own.
_open: Counter[tuple[int, str, str, int, int]] = Counter()


def took(instance: str, ring: str, created_ns: int, role: int) -> None:
    """A handle of ``role`` on the ring (made at ``created_ns``) was opened here."""
    _open[os.getpid(), instance, ring, created_ns, role] += 1


def let_go(instance: str, ring: str, created_ns: int, role: int) -> bool:
    """A handle of ``role`` was closed: True when it was this process's last one (the role
    may be cleared in the header)."""
    key = (os.getpid(), instance, ring, created_ns, role)
    _open[key] -= 1
    if _open[key] > 0:
        return False
    del _open[key]
    return True
