"""``ringex run --detach``'s start (procs/detached_start.py) and the hold of signals
around its spawn (``held_interrupts``).

CI (session 71's submission) failed once on review 258's nohup test: a SIGTERM that came
while ``subprocess.Popen`` still waited for its child's exec raised within ``Popen``, so the
command said "interrupted (SIGTERM)" and never stopped the supervisor it had spawned, which
then came up behind the operator. Signals are now held for the spawn and taken after it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from procs import detached_start
from procs.admin.interrupts import Interrupted, held_interrupts, interrupting
from tests.unit.test_review239_operator_races import _profile
from tests.unit.test_review258_diff import dispositions


def test_a_sigterm_within_held_interrupts_is_raised_as_it_ends() -> None:
    """Scenario: ``interrupting`` (a ringex command); a SIGTERM sent within
    ``held_interrupts``. Expected: nothing raised within; ``Interrupted`` (SIGTERM) as the
    hold ends, the command's handlers back. Was (fixed): no hold."""
    with dispositions(), interrupting():
        before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        reached = False
        with pytest.raises(Interrupted) as raised, held_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # a handler that raised would have by now
            reached = True
        assert reached
        assert raised.value.signal is signal.SIGTERM
        assert {s: signal.getsignal(s) for s in before} == before


def test_sound_held_interrupts_leaves_an_ignored_sighup_ignored() -> None:
    """Scenario: ``nohup`` (SIGHUP ignored); a SIGHUP within ``held_interrupts``. Expected:
    ignored within and after, nothing raised. Now: so."""
    with dispositions():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        with interrupting(), held_interrupts():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


def test_a_sigterm_amid_the_spawn_stops_the_spawned_supervisor(
    tmp_path: Path,
    instance: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Scenario: ``ringex run --detach``; a SIGTERM comes while ``Popen`` has forked its
    child but not returned (its exec awaited: the supervisor held by SIGSTOP there, as review
    258's nohup test may hold it). Expected: the start given up, "SIGTERM while instance ...
    was starting", exit 143, the spawned child stopped. Was (fixed): ``Interrupted`` raised
    within ``Popen``, the command said "interrupted (SIGTERM)" and left the child to run."""
    cfg = load_profile(str(_profile(tmp_path / "p.toml", instance)))
    real = subprocess.Popen
    spawned: list[subprocess.Popen[bytes]] = []

    def spawning(_argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        spawned.append(real(["sleep", "60"], **kwargs))  # the supervisor's stand-in
        os.kill(os.getpid(), signal.SIGTERM)  # before Popen returns
        time.sleep(0.05)
        return spawned[0]

    monkeypatch.setattr(subprocess, "Popen", spawning)  # as detached_start calls it
    try:
        with dispositions(), interrupting():
            status = detached_start.start_detached(cfg, "p", tmp_path / "log", 60.0)
        assert status == 143
        assert f"SIGTERM while instance {instance} was starting" in capsys.readouterr().err
        assert spawned[0].poll() is not None  # stopped, and reaped
    finally:
        for child in spawned:
            if child.poll() is None:
                child.kill()
                child.wait()
