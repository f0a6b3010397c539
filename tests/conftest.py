"""Shared fixtures: every test gets its own shm instance name, removed afterwards.

A run that is stopped removes them too: SIGTERM (``timeout``, a runner giving up on a hung
test, such as an in-process pipeline whose producer waits on a ring only its own loop
drains) ends the test as Ctrl-C does, and pytest tears its fixtures down. Python's default
ended the process at once, and every segment, semaphore and FIFO of the instance stayed in
/dev/shm. What a run killed outright (SIGKILL, the OOM killer) left goes at the next run's
start: an instance named after a pytest process no longer alive, that no live process uses.
"""

from __future__ import annotations

import faulthandler
import hashlib
import itertools
import os
import re
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

import pytest

from shm.inspect import SegmentInfo, list_segments, remove, remove_instance
from shm.liveness import pid_alive

_counter = itertools.count()
#: ``instance``'s names: t<pid of the pytest process>x<n>.
INSTANCE_NAME = re.compile(r"t(\d+)x\d+")
_SESSION_PID = os.getpid()


@pytest.fixture
def instance() -> Iterator[str]:
    name = f"t{os.getpid()}x{next(_counter)}"
    yield name
    remove_instance(name)


def _stop_as_interrupted(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _SESSION_PID:  # a forked child (``fork`` context): dies as by default
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def remove_dead_runs_instances() -> list[str]:
    """Remove what the ``instance``s of pytest processes no longer alive left, where no live
    process uses it (an orphan of a killed run still holding its rings keeps them); returns
    the instances removed."""
    found: dict[str, list[SegmentInfo]] = {}
    for segment in list_segments():
        named = INSTANCE_NAME.fullmatch(segment.instance)
        if named is None or pid_alive(int(named.group(1))):
            continue
        found.setdefault(segment.instance, []).append(segment)
    removed = []
    for name, segments in sorted(found.items()):
        if all(s.stale for s in segments):
            for s in segments:
                remove(s)
            removed.append(name)
    return removed


def pytest_sessionstart(session: pytest.Session) -> None:
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stop_as_interrupted)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # ``make test &``: a shell ignores
        # Ctrl-C for a background job, and every process the tests start inherited it: a
        # ``ringex run`` given SIGINT ran on and review 199's Ctrl-C test hung to its timeout
        signal.signal(signal.SIGINT, signal.default_int_handler)
    remove_dead_runs_instances()


# -- a hung test -------------------------------------------------------------------------------
# pytest-timeout (pyproject: ``timeout``, ``timeout_method = "thread"``) ends a test that runs
# past its timeout, printing where every thread waits. In an xdist worker that print goes
# nowhere (a worker's output is not the run's) and the controller reports only "worker
# crashed". So a worker's timer is faulthandler's (its watchdog needs no GIL: it fires even
# while a C call holds it), which writes the stacks to a file that the controller adds to the
# crash's report.

_STACKS = pytest.StashKey[IO[str]]()


def _stacks_path(nodeid: str, controller_pid: int) -> Path:
    digest = hashlib.sha1(nodeid.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"ringex-hung-{controller_pid}-{digest}.txt"


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    if not hasattr(item.config, "workerinput"):
        return None  # pytest-timeout's own timer, printing to the terminal
    out = _stacks_path(item.nodeid, os.getppid()).open("w")  # the controller's pid
    out.write(f"{item.nodeid} still ran after {settings.timeout:g} s; every thread's stack:\n")
    out.flush()
    faulthandler.dump_traceback_later(settings.timeout, exit=True, file=out)
    item.stash[_STACKS] = out
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    out = item.stash.get(_STACKS, None)
    if out is None:
        return None
    faulthandler.cancel_dump_traceback_later()
    out.close()
    Path(out.name).unlink(missing_ok=True)
    del item.stash[_STACKS]
    return True


def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: Any) -> None:
    """xdist's controller, on a worker's crash in ``crashitem``: its stacks, if it hung."""
    path = _stacks_path(crashitem, os.getpid())
    if path.exists():
        report.longrepr = f"{report.longrepr}\n\n{path.read_text()}"
        path.unlink()
