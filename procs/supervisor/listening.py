"""Which TCP ports a process listens on, read from /proc: the supervisor's readiness probe.

A process that serves clients (a gateway's FIX and REST ports, market data's WebSocket and
page) is ready only once it listens: attaching its ready ring comes earlier (market data
loads its saved state in between), and ``ringex run --detach`` or a promotion that reported
"running" before the port opened sent the first client a refused connection.

Reading /proc rather than connecting: a probe connection would be a client to every server
(a FIX session that never logs on, an HTTP request in the access log), and with
``reuse_port`` another gateway may already answer on the same port. A socket in LISTEN
state (``0A``) on the port whose inode is one of the process's descriptors is the process's
own listener, whatever the others do.
"""

from __future__ import annotations

import os
from pathlib import Path

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column
_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def listening_inodes(ports: set[int], tables: tuple[str, ...] = _TABLES) -> dict[int, int]:
    """Inode -> port of every listening TCP socket (IPv4 and IPv6) on one of ``ports``."""
    found: dict[int, int] = {}
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:  # no IPv6 on this host, say
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != _LISTEN:
                continue
            port = int(cols[1].rsplit(":", 1)[1], 16)
            if port in ports:
                found[int(cols[9])] = port
    return found


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets among ``pid``'s descriptors (empty if it is gone)."""
    inodes: set[int] = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:  # closed since the listing
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def missing_listeners(pid: int, ports: tuple[int, ...]) -> list[int]:
    """The ports of ``ports`` on which process ``pid`` holds no listening socket yet."""
    if not ports:
        return []
    wanted = set(ports)
    listeners = listening_inodes(wanted)
    held = {listeners[inode] for inode in socket_inodes(pid) if inode in listeners}
    return sorted(wanted - held)
