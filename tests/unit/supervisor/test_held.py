"""Processes started ahead of their turn (``held.py``): the word runs the module's main with
its arguments and its exit status; end of file instead exits 0 and runs nothing. A
supervisor whose ``go`` says no lets every held process go without starting the instance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from config.schema import RingexConfig
from procs.supervisor.held import GO
from procs.supervisor.main import Supervisor

ROOT = Path(__file__).parents[3]


def held(out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "procs.supervisor.held", "tests.unit.supervisor.held_probe",
         str(out)],
        stdin=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip


def test_the_word_runs_main_and_end_of_file_runs_nothing(tmp_path: Path) -> None:
    released, dropped = held(tmp_path / "a"), held(tmp_path / "b")
    released.communicate(GO, timeout=60)
    dropped.communicate(b"", timeout=60)
    assert released.returncode == 3 and (tmp_path / "a").read_text() == "ran"
    assert dropped.returncode == 0 and not (tmp_path / "b").exists()


def test_a_supervisor_told_not_to_go_starts_nothing(instance: str, tmp_path: Path) -> None:
    cfg = RingexConfig(instance=instance, var_dir=str(tmp_path))
    supervisor = Supervisor(cfg, "test")
    assert supervisor.run(lambda: False, go=lambda: False) == 1
    assert [c.process for c in supervisor.children] == [None] * len(supervisor.children)
    assert not (tmp_path / instance / "run" / "status.json").exists()
