"""Free TCP ports for the tests' profiles and servers: never the same one twice in a process.

Picked one at a time (a socket bound to port 0, then closed), the kernel may hand out a port
it has just given: make test once gave review 248's market data and a gateway one port, and
the profile was refused ("both listen there"). Each one given is remembered here."""

from __future__ import annotations

import socket

_GIVEN: set[int] = set()


def free_port() -> int:
    """A port no listener holds now, and none this process was given before."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def free_ports(n: int) -> list[int]:
    """``n`` free ports, each a different one."""
    return [free_port() for _ in range(n)]
