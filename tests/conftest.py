"""Shared fixtures: every test gets its own shm instance name, removed afterwards.

A run that is stopped removes them too: SIGTERM (``timeout``, a runner giving up on a hung
test, such as an in-process pipeline whose producer waits on a ring only its own loop
drains) ends the test as Ctrl-C does, and pytest tears its fixtures down. Python's default
ended the process at once, and every segment, semaphore and FIFO of the instance stayed in
/dev/shm. What a run killed outright (SIGKILL, the OOM killer) left goes at the next run's
start: an instance named after a pytest process no longer alive, that no live process uses.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
from collections.abc import Iterator
from types import FrameType

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
    remove_dead_runs_instances()
