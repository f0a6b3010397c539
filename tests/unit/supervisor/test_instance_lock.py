"""One supervisor an instance: two starts at the same moment cannot both pass the check of
the running segments (neither has made its rings yet), so the run holds a lock."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from config import load_profile
from procs.common.run_files import InstanceBusyError, instance_lock, status_path
from procs.supervisor.main import Supervisor
from shm.inspect import list_segments
from tests.unit.supervisor.test_supervisor import ROOT, wait_for, write_profile


def test_a_second_start_while_the_first_holds_the_lock_touches_nothing(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first start has the lock but no rings yet (it is still starting): the second is
    refused before ``begin`` (``go``, before the lock, is where a promotion's supervisor
    waits for the standby's to exit), with no status written and no segment made."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    cfg = load_profile(str(profile))
    went = threading.Event()

    def begin() -> bool:
        went.set()
        return True

    supervisor = Supervisor(cfg, str(profile))
    with instance_lock(cfg), caplog.at_level(logging.ERROR):
        assert supervisor.run(lambda: True, begin=begin) == 1
    assert not went.is_set() and all(c.process is None for c in supervisor.children)
    assert not status_path(cfg).exists()
    assert list_segments(instance) == []
    assert f"supervisor pid {os.getpid()} holds" in caplog.text
    assert "is running or starting" in caplog.text


def test_the_lock_names_its_holder_and_is_free_again_when_released(
    instance: str, tmp_path: Path
) -> None:
    cfg = load_profile(str(write_profile(tmp_path / "p.toml", instance, tmp_path / "var")))
    refused = pytest.raises(InstanceBusyError, match=f"pid {os.getpid()} holds .*supervisor.lock")
    with instance_lock(cfg), refused, instance_lock(cfg):
        pass
    with instance_lock(cfg):  # released: taken again
        pass


def test_a_killed_supervisor_leaves_the_lock_free(instance: str, tmp_path: Path) -> None:
    """The lock is the process's: a SIGKILL (no clean stop, no file removed) frees it, and
    the next start goes on through the crash-only path."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    cfg = load_profile(str(profile))
    proc = subprocess.Popen(
        [sys.executable, "-m", "procs.supervisor.main", "--profile", str(profile)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(status_path(cfg).exists)  # written once the lock is held
        with pytest.raises(InstanceBusyError, match=f"pid {proc.pid} holds"), instance_lock(cfg):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    with instance_lock(cfg):
        pass
