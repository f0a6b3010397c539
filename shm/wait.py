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

A consumer read by an event loop (the gateway's, the feed's) is *watched* instead of parked:
its parked word says ``WATCHED`` and the waker writes a byte to a FIFO beside the semaphore
(``fifo_path``), which the loop watches like a socket (``Parker.watch``). One wake-up of the
loop, where a thread sleeping on the semaphore for it took two (the thread's, then its hand-
off to the loop): on the 2-core VM a ring record reached a uvloop loop in p50 30 us for 30 us
of CPU, against 47-70 us and 55-70 us of CPU through a thread. A producer an event loop has
waiting for room (the gateway's, its commands held while the router's ring is full) is
watched the same way: a consumer's commit writes its FIFO.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable
from typing import Final, Protocol, TypeAlias

import posix_ipc

from shm.errors import ShmError

DEFAULT_PARK_TIMEOUT_S: Final = 0.02
#: A parked word's values besides 0 (awake): asleep on the semaphore, or watched through the
#: FIFO by an event loop.
PARKED: Final = 1
WATCHED: Final = 2
#: Where the FIFOs live: beside the segments and the semaphores (``sem.<name>``).
FIFO_DIR: Final = "/dev/shm"


class Parker:
    """One side's way to sleep until the other side posts: a flag word plus a semaphore.

    ``flag_word`` is this waiter's own "parked" word; ``wake_words`` are words on the wakers'
    lines that each waker polls cheaply (one load per publish or commit) before scanning flags.
    ``cap_s``, when set, bounds every park (a caller's own deadline).
    """

    __slots__ = ("_fence_sem", "_flag", "_sem", "_wake", "_watch_fd", "_words", "cap_s")

    def __init__(
        self, words: memoryview, flag_word: int, sem_name: str, wake_words: tuple[int, ...] = ()
    ) -> None:
        self._words = words
        self._flag = flag_word
        self._wake = wake_words
        self.cap_s: float | None = None
        self._sem = posix_ipc.Semaphore(sem_name, posix_ipc.O_CREAT, initial_value=0)
        try:
            own(sem_path(sem_name))
        except BaseException:
            self._sem.close()
            raise
        # A private semaphore used only as a full memory fence (see the module docstring).
        self._fence_sem = posix_ipc.Semaphore(None, posix_ipc.O_CREX, initial_value=0)
        self._fence_sem.unlink()
        self._watch_fd = -1

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

    def raise_flag(self, how: int = PARKED) -> None:
        """Ask the other side to post at its next publish (or commit) as if this side were
        parked, without sleeping: ``WATCHED``, for an event loop that naps watching
        ``watch``'s descriptor. Fenced, so the caller may check its condition at once."""
        words = self._words
        words[self._flag] = how
        for wake in self._wake:
            words[wake] = 1
        self._fence_sem.release()  # StoreLoad fence: the flag must be visible before we re-check
        self._fence_sem.acquire(0)

    def lower_flag(self) -> None:
        self._words[self._flag] = 0

    def watch(self) -> int:
        """A descriptor (non-blocking, this parker's) that turns readable when the other side
        posts while the flag says ``WATCHED``: the read end of the FIFO beside the semaphore,
        made if missing. Opened for writing too, so that it never reads as hung up while no
        waker has it open."""
        if self._watch_fd < 0:
            path = fifo_path(self._sem.name)
            with contextlib.suppress(FileExistsError):
                os.mkfifo(path, 0o600)
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                own(path, fd)
            except BaseException:
                os.close(fd)
                raise
            self._watch_fd = fd
        return self._watch_fd

    def close(self) -> None:
        self._sem.close()
        self._fence_sem.close()
        if self._watch_fd >= 0:
            os.close(self._watch_fd)  # the FIFO stays, for the next watcher (Ring.unlink's)
            self._watch_fd = -1


def sem_path(sem_name: str) -> str:
    """Where Linux keeps the named semaphore ``sem_name``."""
    return f"{FIFO_DIR}/sem.{sem_name.lstrip('/')}"


def own(path: str, fd: int = -1) -> None:
    """Make sure ``path`` (a wake-up semaphore or FIFO, opened as found: its name is known
    in the world-writable ``/dev/shm``) is this user's alone: one another local user made
    first would take the wake-ups of the process that adopted it, a router or matcher then
    sleeping to its park timeout on every command (review 93). Ours with a wider mode (an
    older build's, or a umask's) is narrowed to 0600; another user's refuses, naming it."""
    st = os.fstat(fd) if fd >= 0 else os.stat(path)
    if st.st_uid != os.geteuid():
        raise ShmError(
            f"{path} belongs to uid {st.st_uid} (mode {stat.S_IMODE(st.st_mode):04o}), not to "
            f"this process's uid {os.geteuid()}: another user made it first, and would take "
            f"this ring's wake-ups; remove it (as root) or run the instance as that user"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        if fd >= 0:
            os.fchmod(fd, 0o600)
        else:
            os.chmod(path, 0o600)


def fifo_path(sem_name: str) -> str:
    """The FIFO beside the semaphore ``sem_name``, which a watched waiter's wakers write."""
    return f"{FIFO_DIR}/fifo.{sem_name.lstrip('/')}"


class FifoPoster:
    """A waker's end of a watched waiter's FIFO: ``release`` writes one byte, as a post."""

    __slots__ = ("_fd", "_path")

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd = -1

    def release(self) -> None:
        for _ in range(2):  # once more after the watcher the descriptor led to went away
            if self._fd < 0:
                try:
                    self._fd = os.open(self._path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                except OSError:  # no FIFO, or nobody watching it: nobody to wake
                    return
            try:
                os.write(self._fd, b"\0")
                return
            except BlockingIOError:  # full: the watcher has wake-ups waiting already
                return
            except OSError:  # EPIPE: no reader left on the FIFO this descriptor is of
                self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


#: What a waker opened to post, by name: semaphores, and the FIFOs of watched waiters.
Posts: TypeAlias = dict[str, "posix_ipc.Semaphore | FifoPoster"]


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


def post(sem_name: str, cache: Posts, how: int = PARKED) -> None:
    """Wake the waiter of ``sem_name``: parked on it, or ``WATCHED`` through its FIFO (``how``,
    the value of its parked word). What it opens is cached by the caller (``cache``)."""
    key = fifo_path(sem_name) if how == WATCHED else sem_name
    waker = cache.get(key)
    if waker is None:
        if how == WATCHED:
            waker = cache[key] = FifoPoster(key)
        else:
            # (not ``own``'d: a post steals nothing, and root's stop or admin posts the
            # semaphores of the user the units run as: review 98; the waiter checks its own)
            waker = cache[key] = posix_ipc.Semaphore(sem_name, posix_ipc.O_CREAT, initial_value=0)
    try:
        waker.release()
    except OSError as exc:  # at SEM_VALUE_MAX (posts piled up for a waiter that died parked)
        if exc.errno != errno.EOVERFLOW:  # its waiter, if any, has posts enough: it wakes
            raise


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
