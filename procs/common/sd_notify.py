"""sd_notify without libsystemd: a process under systemd (``Type=notify``) says READY, STOPPING
and pets the watchdog with one datagram each to ``$NOTIFY_SOCKET``; elsewhere every call is a
no-op that returns ``False``.

The protocol is newline-separated ``KEY=VALUE`` assignments in one AF_UNIX datagram to the
socket named by ``$NOTIFY_SOCKET``: a path, or an abstract name when it starts with ``@``.
With ``WatchdogSec=`` systemd sets ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``) and kills a
service that stays silent that long; it advises a ping every half of it. A process pets the
watchdog from its own loop (``petting``: one clock read per iteration), not from a thread, so
a loop that is stuck stops the pings and systemd restarts the process.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET``; ``False`` when there is no
    socket (not under systemd) or it could not be reached. Never raises: a process does not
    fail because its manager stopped listening."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):  # unset, or a scheme this module does not speak (vsock)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8", "replace"), address)
    except (OSError, ValueError):  # ValueError: a NUL in the address
        return False
    return True


def ready() -> bool:
    """Start-up is complete: systemd marks the unit active (and starts the next one)."""
    return notify("READY=1")


def stopping() -> bool:
    """The process has begun a clean stop."""
    return notify("STOPPING=1")


def watchdog() -> bool:
    """The process is alive and its loop turns."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """A one-line status that ``systemctl status`` shows."""
    return notify("STATUS=" + text.replace("\n", " "))


def watchdog_interval_s() -> float | None:
    """How often to ping: half of ``$WATCHDOG_USEC`` in seconds, as systemd recommends;
    ``None`` when the watchdog is off, malformed, or meant for another process (a child
    inherits the variables, ``$WATCHDOG_PID`` names the one systemd watches)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    try:
        if not usec or (pid and int(pid) != os.getpid()) or int(usec) <= 0:
            return None
        return int(usec) / 2e6
    except (ValueError, OverflowError):  # OverflowError: past any float
        return None


def petting(
    fn: Callable[P, R], *, ready_first: bool = False, clock: Callable[[], float] = time.monotonic
) -> Callable[P, R]:
    """``fn``, also petting the watchdog on a call when half its timeout has passed: wrap what
    a loop calls once per iteration (its stop poll, its idle sleep). ``ready_first``: the first
    call also sends READY=1 (the loop has started). Returns ``fn`` itself when there is
    nothing to send, so a loop outside systemd pays nothing."""
    interval = watchdog_interval_s()
    if interval is None and not (ready_first and os.environ.get("NOTIFY_SOCKET")):
        return fn
    due = 0.0
    pending_ready = ready_first

    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        nonlocal due, pending_ready
        if pending_ready:
            pending_ready = False
            ready()
        if interval is not None:
            now = clock()
            if now >= due:
                due = now + interval
                watchdog()
        return fn(*args, **kwargs)

    return wrapped


async def watchdog_loop() -> None:
    """For an asyncio process: ping every half timeout while the event loop turns (a blocked
    loop stops the pings). Returns at once when the watchdog is off; cancel it at stop."""
    interval = watchdog_interval_s()
    if interval is None:
        return
    while True:
        watchdog()
        await asyncio.sleep(interval)
