"""Review 101 of the supervisor's lifecycle, its behaviours checked and found right (tests 9-12):
a process that dies as it starts, a stop during a restart, a killed supervisor's processes,
two starts at once. The stand-ins, fixtures and helpers are those of
``test_review101_lifecycle`` (whose module the stand-ins run)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import procs.supervisor.main as supervisor_main
from config import load_profile
from config.schema import RingexConfig
from procs import cli
from procs.common.run_files import read_status
from procs.supervisor.main import Child, Supervisor, SupervisorError
from procs.supervisor.plan import ProcessSpec
from shm.inspect import list_segments
from shm.liveness import pid_alive
from tests.unit.supervisor.test_review101_lifecycle import (
    READY_LINE,
    READY_RING,
    ROOT,
    Leftovers,
    ended,
    once,
    pids_in,
    stand_in,
    supervisor_process,
)
from tests.unit.supervisor.test_supervisor import wait_for, write_profile


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the stand-ins import their module from the repository root


@pytest.fixture
def profile(instance: str, tmp_path: Path) -> Path:
    return write_profile(tmp_path / "p.toml", instance, tmp_path / "var", "metrics = false\n")


@pytest.fixture
def cfg(profile: Path) -> RingexConfig:
    return load_profile(str(profile))


@pytest.fixture
def leftovers() -> Iterator[Leftovers]:
    left = Leftovers()
    yield left
    left.kill()


# -- 9-12. what holds ----------------------------------------------------------------------------


def test_a_process_that_dies_as_it_starts_backs_off_then_stops_the_instance(
    profile: Path, cfg: RingexConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart storm is bounded: each restart of a process that exits as it starts waits
    twice as long as the one before (0.1 s, 0.2 s, 0.4 s), and the one past
    ``restart_limit`` (3) stops the instance naming the process, the count, the window, the
    last exit code and the limit; ``restarts`` counts those made."""
    sup = Supervisor(cfg, str(profile))
    # json has no main(): it exits 1 once released, before it holds any line
    sup.children = [Child(ProcessSpec("crasher", "json", (), (), READY_RING, READY_LINE))]
    sup.create_rings()
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        time.sleep(seconds)

    clock = SimpleNamespace(
        monotonic=time.monotonic, sleep=sleep, time=time.time, time_ns=time.time_ns
    )
    monkeypatch.setattr(supervisor_main, "time", clock)
    child = sup.children[0]
    try:
        with pytest.raises(SupervisorError) as stopped:
            sup._restart(child, -9)
    finally:
        monkeypatch.undo()
        ended(sup)
        sup.stop()
    backoffs = [s for s in naps if s >= 0.1]  # _wait_ready's own ticks are 0.02 s
    assert backoffs == [0.1, 0.2, 0.4], naps
    said = str(stopped.value)
    assert "crasher exited 4 times within 60 s (last code 1)" in said, said
    assert "more than restart_limit=3" in said, said
    assert child.restarts_total == 3


def test_stop_while_a_process_recovers_from_a_restart_stops_at_once(
    profile: Path, cfg: RingexConfig, tmp_path: Path, instance: str, leftovers: Leftovers,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A process SIGKILLed, its restart replaying for long (30 s here): ``ringex stop``
    meanwhile is taken at once, exit 0; the supervisor exits 0, the recovering process is
    stopped and every segment removed."""
    marker = tmp_path / "pids"
    with supervisor_process(profile, "slow-again", str(marker), "30") as sup:
        wait_for(lambda: (read_status(cfg) or {}).get("state") == "running", 30)
        first = pids_in(marker)[-1]
        os.kill(first, signal.SIGKILL)

        def recovering() -> dict[str, Any] | None:
            shown = (read_status(cfg) or {}).get("processes", [{}])[0]
            return shown if shown.get("pid") != first and shown.get("alive") else None

        restarted = wait_for(recovering, 20)
        leftovers.add(restarted["pid"])
        assert not restarted["ready"] and restarted["restarts"] == 1, restarted
        began = time.monotonic()
        code = cli.main(["stop", "--config", str(profile), "--timeout", "15"])
        took = time.monotonic() - began
        assert sup.wait(5) == 0
    assert code == 0 and took < 5, (code, took, capsys.readouterr())
    assert not pid_alive(restarted["pid"])
    assert list_segments(instance) == []


def test_a_killed_supervisor_takes_its_processes_and_the_next_start_runs(
    profile: Path, cfg: RingexConfig, tmp_path: Path, instance: str, leftovers: Leftovers
) -> None:
    """The supervisor SIGKILLed: its process dies with it (parent-death signal), its
    segments are left stale and its lock free, and the next start removes them, makes
    the rings anew and runs; its stop leaves nothing."""
    marker = tmp_path / "pids"
    with supervisor_process(profile, "hold", str(marker)) as sup:
        wait_for(lambda: (read_status(cfg) or {}).get("state") == "running", 30)
        first = pids_in(marker)[-1]
        leftovers.add(first)
        sup.kill()
        sup.wait()
        wait_for(lambda: not pid_alive(first), 10)
    stale = list_segments(instance)
    assert stale and all(s.stale for s in stale), stale
    killed_ns = time.time_ns()
    made: list[int] = []
    again = Supervisor(cfg, str(profile))
    again.children = [Child(stand_in("hold", str(marker)))]
    try:
        code = again.run(
            once(lambda: again.state == "running"),
            started=lambda: made.extend(r.created_ns for r in again._rings.values()),
        )
    finally:
        ended(again)
    assert code == 0 and len(made) == len(stale), (code, made)
    assert all(created > killed_ns for created in made)  # made anew, not the stale ones
    assert list_segments(instance) == []


def test_two_starts_at_once_run_one_instance_and_refuse_the_other(
    profile: Path, cfg: RingexConfig, tmp_path: Path, instance: str, leftovers: Leftovers
) -> None:
    """Two supervisors of one instance started at the same moment: one runs, the other
    exits 1 saying the instance is running or starting, without touching the winner's
    status, rings or process; the winner then stops cleanly."""
    marker = tmp_path / "pids"
    with (
        supervisor_process(profile, "hold", str(marker)) as a,
        supervisor_process(profile, "hold", str(marker)) as b,
    ):
        wait_for(lambda: a.poll() is not None or b.poll() is not None, 30)
        loser, winner = (a, b) if a.poll() is not None else (b, a)
        assert loser.returncode == 1
        assert loser.stderr is not None
        refused = loser.stderr.read().decode()
        wait_for(lambda: (read_status(cfg) or {}).get("state") == "running", 30)
        leftovers.add(*pids_in(marker))
        status = read_status(cfg) or {}
        assert status["supervisor_pid"] == winner.pid
        assert len(pids_in(marker)) == 1 and pid_alive(pids_in(marker)[0])
        assert list_segments(instance) and winner.poll() is None
        winner.send_signal(signal.SIGTERM)
        assert winner.wait(15) == 0
    assert "is running" in refused and "Traceback" not in refused, refused[-1500:]
    assert list_segments(instance) == []
