"""A process's clean stop: SIGTERM (the supervisor, systemd) and SIGINT (Ctrl-C) set a flag
that its loop polls between batches, so it stops where its state is consistent."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType


def stop_on_signals() -> Callable[[], bool]:
    """Install the handlers (SIGTERM, SIGINT and SIGHUP: a foreground ``ringex run`` whose
    terminal closed stops in order, as at Ctrl-C, not outright; SIGINT and SIGHUP left
    ignored where the process was started so, ``nohup`` or a shell's background job, review
    258); the returned function says whether a stop was asked for."""
    asked = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal asked
        asked = True

    signal.signal(signal.SIGTERM, on_signal)
    for s in (signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, on_signal)
    return lambda: asked
