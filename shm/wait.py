"""Wait strategies: what a producer or consumer does while the ring gives it nothing to do.

Picked by config, never hard-wired, because the right choice depends on the machine: on a
16-core box with pinned processes a busy-spinning consumer buys the lowest latency; on this
project's 2-core development machine two spinners already own both cores, so every other stage
must spin briefly, then yield, then sleep or block.

- ``BusySpin``      re-check immediately: lowest latency, one core at 100%.
- ``Yielding``      spin a little, then ``sched_yield``: cedes the core to runnable peers.
- ``SleepBackoff``  spin, yield, then sleep with doubling intervals up to a cap.
- ``Blocking``      spin, then park on a POSIX semaphore that the other side posts only when it
                    sees the parked flag: an idle stage costs ~0% CPU.

The parking protocol is Dekker-shaped: the waiter stores ``parked=1`` then loads the ring
state; the waker stores the ring state then loads ``parked``. x86-64 (TSO) may let each load
pass the other side's store, so both could miss. The waiter closes its half with a fence (a
post + trywait pair on a private semaphore: two locked instructions). Python gives the
waker no cheap fence, so its half stays open for the few nanoseconds a store sits in the store
buffer; ``park_timeout_s`` bounds the cost of that rare miss (the waiter re-checks on timeout).
Nothing is ever lost by it, only delayed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Final, Protocol

import posix_ipc

DEFAULT_PARK_TIMEOUT_S: Final = 0.02


class Parker:
    """One side's way to sleep until the other side posts: a flag word plus a semaphore.

    ``flag_word`` is this waiter's own "parked" word; ``wake_words`` are words on the wakers'
    lines that each waker polls cheaply (one load per publish or commit) before scanning flags.
    ``cap_s``, when set, bounds every park (a caller's own deadline).
    """

    __slots__ = ("_fence_sem", "_flag", "_sem", "_wake", "_words", "cap_s")

    def __init__(
        self, words: memoryview, flag_word: int, sem_name: str, wake_words: tuple[int, ...] = ()
    ) -> None:
        self._words = words
        self._flag = flag_word
        self._wake = wake_words
        self.cap_s: float | None = None
        self._sem = posix_ipc.Semaphore(sem_name, posix_ipc.O_CREAT, initial_value=0)
        # A private semaphore used only as a full memory fence (see the module docstring).
        self._fence_sem = posix_ipc.Semaphore(None, posix_ipc.O_CREX, initial_value=0)
        self._fence_sem.unlink()

    def park(self, ready: Callable[[], bool], timeout_s: float) -> None:
        """Sleep until posted, ``timeout_s`` passes, or ``ready()`` is already true."""
        if self.cap_s is not None:
            timeout_s = min(timeout_s, self.cap_s)
        self.raise_flag()
        try:
            if not ready():
                _acquire(self._sem, timeout_s)
        finally:
            self.lower_flag()
        _drain(self._sem)  # surplus posts: the next park really sleeps

    def raise_flag(self) -> None:
        """Ask the other side to post at its next publish (or commit) as if this side were
        parked, without sleeping: for a waiter that sleeps elsewhere (a thread on a
        ``sleeper`` while an event loop naps). Fenced, so the caller may check its
        condition at once."""
        words = self._words
        words[self._flag] = 1
        for wake in self._wake:
            words[wake] = 1
        self._fence_sem.release()  # StoreLoad fence: the flag must be visible before we re-check
        self._fence_sem.acquire(0)

    def lower_flag(self) -> None:
        self._words[self._flag] = 0

    def sleeper(self) -> Sleeper:
        """A handle of this parker's semaphore for the thread that sleeps on ``raise_flag``'s
        behalf: its own, so that closing this parker never frees a semaphore that thread
        still sleeps on (glibc counts a process's opens of one name and unmaps at the last
        close)."""
        return Sleeper(self._sem.name)

    def unpark(self) -> None:
        """End a ``park`` now, from any thread (one that is not parked returns at once from
        its next ``park``, which drains the post)."""
        self._sem.release()

    def close(self) -> None:
        self._sem.close()
        self._fence_sem.close()


class Sleeper:
    """One thread's handle of a parker's semaphore (``Parker.sleeper``): it sleeps until the
    other side posts. Owned by that thread, which closes it when it is done with it."""

    __slots__ = ("_sem",)

    def __init__(self, sem_name: str) -> None:
        self._sem = posix_ipc.Semaphore(sem_name, posix_ipc.O_CREAT, initial_value=0)

    def sleep(self, timeout_s: float) -> bool:
        """Wait for a post (``unpark``'s included) for ``timeout_s`` at most, whatever the flag
        says; returns whether one came, and drains the surplus."""
        posted = _acquire(self._sem, timeout_s)
        _drain(self._sem)
        return posted

    def post(self) -> None:
        """Wake whoever sleeps on this semaphore (any handle of it), from any thread."""
        self._sem.release()

    def close(self) -> None:
        self._sem.close()


def _acquire(sem: posix_ipc.Semaphore, timeout_s: float) -> bool:
    # A signal (SIGTERM for a clean stop) ends the wait early, like a timeout: the caller
    # re-checks its ring and its stop flag. Python runs the handler first.
    try:
        sem.acquire(timeout_s)
    except (posix_ipc.BusyError, posix_ipc.SignalError):
        return False
    return True


def _drain(sem: posix_ipc.Semaphore) -> None:
    while True:
        try:
            sem.acquire(0)
        except posix_ipc.BusyError:
            break


def post(sem_name: str, cache: dict[str, posix_ipc.Semaphore]) -> None:
    """Wake the waiter parked on ``sem_name`` (opened once, then cached by the caller)."""
    sem = cache.get(sem_name)
    if sem is None:
        sem = cache[sem_name] = posix_ipc.Semaphore(sem_name, posix_ipc.O_CREAT, initial_value=0)
    sem.release()


class WaitStrategy(Protocol):
    """How to pass one idle round. Called from the waiting process only.

    ``rounds`` counts the idle rounds since the last progress (0 on the first); ``ready`` is the
    condition being waited for; ``parker`` is ``None`` where parking is impossible (then a
    blocking strategy degrades to sleeping). Returning means "check again".
    """

    name: str

    def idle(self, rounds: int, ready: Callable[[], bool], parker: Parker | None) -> None: ...


class BusySpin:
    name = "busy-spin"

    def idle(self, rounds: int, ready: Callable[[], bool], parker: Parker | None) -> None:
        pass


class Yielding:
    name = "yield"

    def __init__(self, spins: int = 100) -> None:
        self.spins = spins

    def idle(self, rounds: int, ready: Callable[[], bool], parker: Parker | None) -> None:
        if rounds >= self.spins:
            os.sched_yield()


class SleepBackoff:
    name = "sleep"

    def __init__(
        self,
        spins: int = 100,
        yields: int = 100,
        min_sleep_s: float = 50e-6,
        max_sleep_s: float = 5e-3,
    ) -> None:
        self.spins = spins
        self.yields = yields
        self.min_sleep_s = min_sleep_s
        self.max_sleep_s = max_sleep_s

    def idle(self, rounds: int, ready: Callable[[], bool], parker: Parker | None) -> None:
        if rounds < self.spins:
            return
        if rounds < self.spins + self.yields:
            os.sched_yield()
            return
        doublings = min(rounds - self.spins - self.yields, 30)
        nap = min(self.max_sleep_s, self.min_sleep_s * (1 << doublings))
        if parker is not None and parker.cap_s is not None:  # the caller's deadline
            nap = min(nap, parker.cap_s)
        time.sleep(nap)


class Blocking:
    name = "blocking"

    def __init__(self, spins: int = 200, park_timeout_s: float = DEFAULT_PARK_TIMEOUT_S) -> None:
        self.spins = spins
        self.park_timeout_s = park_timeout_s

    def idle(self, rounds: int, ready: Callable[[], bool], parker: Parker | None) -> None:
        if rounds < self.spins:
            return
        if parker is None:
            time.sleep(self.park_timeout_s)
        else:
            parker.park(ready, self.park_timeout_s)


_STRATEGIES: Final[dict[str, type[BusySpin | Yielding | SleepBackoff | Blocking]]] = {
    "busy-spin": BusySpin,
    "yield": Yielding,
    "sleep": SleepBackoff,
    "blocking": Blocking,
}


def wait_strategy(name: str, **params: float) -> WaitStrategy:
    """Build a strategy by its config name ("busy-spin", "yield", "sleep", "blocking")."""
    try:
        cls = _STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"wait strategy {name!r} is unknown; choose one of {sorted(_STRATEGIES)}"
        ) from None
    try:
        return cls(**params)  # type: ignore[arg-type]  # params are checked by the constructor
    except TypeError as exc:
        raise ValueError(f"wait strategy {name!r}: bad parameters {params}: {exc}") from None
