"""SIGTERM and SIGHUP taken by an operator's command (``ringex``) as it takes Ctrl-C.

A command killed by either (SIGTERM: ``timeout``, ``kill``; SIGHUP: a closed terminal) used
to die silently where Ctrl-C says what is left to do: the key a transfer may still be applied
under, a detached start stopped, a removed user's orders not cancelled (review 247). So
for the command's run each raises ``Interrupted``, a ``KeyboardInterrupt``: every handler
of Ctrl-C handles it too, and ``exit_status`` is 128 + its signal.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Final

#: Signals that interrupt a command as Ctrl-C does
INTERRUPTING: Final = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP while a command ran."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signal = signal.Signals(signum)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupting() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``Interrupted`` within, unless the command was started with
    them ignored (``nohup``, or a parent that ignores them around its own cleanup, as ``make
    run``'s stop does: review 254; Python leaves an ignored SIGINT so too); the handlers
    before, SIGINT's too, restored after (a command run in process, by a test). Off the
    main thread, where no handler can be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, *INTERRUPTING)}
    for s in INTERRUPTING:
        if previous[s] is not signal.SIG_IGN:
            signal.signal(s, _interrupt)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def ignore_interrupts() -> None:
    """Ctrl-C, SIGTERM and SIGHUP ignored: a cleanup they must not cut short (the stop of a
    start given up) runs to its end; ``interrupting`` restores them."""
    for s in (signal.SIGINT, *INTERRUPTING):
        signal.signal(s, signal.SIG_IGN)


def interrupted_by(exc: KeyboardInterrupt) -> str:
    """What interrupted: the signal's name, or Ctrl-C."""
    return exc.signal.name if isinstance(exc, Interrupted) else "Ctrl-C"


def exit_status(exc: KeyboardInterrupt) -> int:
    """A shell's status of a command its signal ended: 128 + the signal (130 for Ctrl-C)."""
    return 128 + (exc.signal if isinstance(exc, Interrupted) else signal.SIGINT)


@contextlib.contextmanager
def held_interrupts() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP held within, and the first taken as the handler before
    would have taken it as this ends: a step that must not be cut short, as the spawn of a
    detached supervisor whose pid the stop of a start given up needs (a signal raised within
    ``Popen`` left the supervisor to come up, unknown). Those ignored stay so; off the main
    thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, *INTERRUPTING)}
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, lambda signum, _frame: held.append(signum))
    try:
        yield
    finally:  # restored with the three blocked: one that comes meanwhile is held by the
        # kernel and taken by its own handler then, never by the holder left on another
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, previous)
        try:
            for s, handler in previous.items():
                signal.signal(s, handler)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    if held:  # (raise_signal runs a Python handler before it returns: raised here)
        signal.raise_signal(held[0])
