"""Free TCP ports for the tests' profiles and servers: never the same one twice in a process.

Picked one at a time (a socket bound to port 0, then closed), the kernel may hand out a port
it has just given: make test once gave review 248's market data and a gateway one port, and
the profile was refused ("both listen there"). Each one given is remembered here. And a port
picked from the kernel's ephemeral range could be handed out again by the kernel to any other
bind to port 0 or outgoing connection before its server listened (the supervisor's metrics
endpoint, port 0 by default, once took review 248's gateway's REST port): so ports are drawn
at random below that range, where the kernel never hands one out by itself, and one that
does not bind now is passed over."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_GIVEN: set[int] = set()
#: The lowest port drawn (above the well-known and most registered services' ports).
LOWEST = 10_000


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (Linux's default where unreadable)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A port no listener holds now, none this process was given before, and outside the
    kernel's ephemeral range where that leaves room."""
    below = _ephemeral_start()
    while True:
        if below - LOWEST >= 1_000:
            port = random.randrange(LOWEST, below)
        else:  # (a range moved down to the bottom: the kernel's pick, as before)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # held (or in TIME_WAIT): another
                continue
        _GIVEN.add(port)
        return port


def free_ports(n: int) -> list[int]:
    """``n`` free ports, each a different one."""
    return [free_port() for _ in range(n)]
