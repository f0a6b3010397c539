"""``pending_runs``: a stop finds the starts of its instance that have not written a status
yet by their command lines (review 199), and only those: another instance's, or one of the
same name under another ``var_dir``, is left alone."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.loader import PROFILES, load_profile
from procs.common.pending_runs import _profile_of, pending_runs, stop_pending_runs

SLEEPER = "import time\ntime.sleep(60)\n"


def _profile(tmp_path: Path, name: str, instance: str, var: str) -> Path:
    """A config file of ``instance`` with its ``var_dir`` (the test profile's rest)."""
    text = (PROFILES / "test.toml").read_text()
    path = tmp_path / name
    path.write_text(f'instance = "{instance}"\nvar_dir = "{var}"\n' + _without_top(text))
    return path


def _without_top(text: str) -> str:
    """``text`` without its top-level ``instance`` and ``var_dir`` lines."""
    keep = []
    top = True
    for line in text.splitlines():
        top = top and not line.startswith("[")
        if top and line.split("=")[0].strip() in ("instance", "var_dir"):
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"


@pytest.fixture
def starts(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes whose command lines are starts (a stand-in ``ringex`` script that sleeps),
    run from ``tmp_path`` (their relative paths resolve there)."""
    script = tmp_path / "ringex"
    script.write_text(SLEEPER)
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def _start(
    starts: list[subprocess.Popen[bytes]], tmp_path: Path, *args: str
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "ringex", *args], cwd=tmp_path)
    starts.append(proc)
    return proc


def test_a_start_of_this_instance_is_found_and_stopped(
    starts: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    instance: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mine = _profile(tmp_path, "mine.toml", instance, "var")  # relative: the start's cwd's
    other = _profile(tmp_path, "other.toml", instance, "var")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "ringex").write_text(SLEEPER)
    ours = _start(starts, tmp_path, "run", "--config", "mine.toml")  # relative: from its cwd
    _start(starts, tmp_path / "b", "run", "--config", str(mine))  # another var: b/var
    _start(starts, tmp_path, "run", "--config", str(other))  # another profile file
    _start(starts, tmp_path, "status", "--config", "mine.toml")  # not a start
    time.sleep(0.3)  # exec'd: their command lines are theirs
    monkeypatch.chdir(tmp_path)  # the stop's, as an operator's in that directory
    cfg = load_profile(str(mine))
    assert pending_runs(cfg, str(mine), load_profile) == [ours.pid]
    assert stop_pending_runs([ours.pid], 5.0) == []
    assert ours.wait(5) != 0  # ended by the SIGTERM
    assert pending_runs(cfg, str(mine), load_profile) == []


def test_a_start_that_ignores_sigterm_is_named_still_running(
    starts: list[subprocess.Popen[bytes]], tmp_path: Path, instance: str
) -> None:
    ignoring = tmp_path / "ignoring"  # written once SIGTERM is ignored: a fixed wait was
    (tmp_path / "ringex").write_text(  # short of a loaded machine's interpreter start
        "import pathlib, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ignoring)!r}).touch()\ntime.sleep(60)\n"
    )
    mine = _profile(tmp_path, "mine.toml", instance, str(tmp_path / "var"))
    stubborn = _start(starts, tmp_path, "run", "--config", str(mine))
    deadline = time.monotonic() + 30
    while not ignoring.exists():
        assert stubborn.poll() is None and time.monotonic() < deadline, "the start never began"
        time.sleep(0.01)
    found = pending_runs(load_profile(str(mine)), str(mine), load_profile)
    assert stop_pending_runs(found, 0.3) == [stubborn.pid]


@pytest.mark.parametrize(
    ("argv", "profile"),
    [
        (["/v/bin/python", "/v/bin/ringex", "run"], ("dev", False)),
        (["python", "-m", "procs.cli", "run", "--profile", "latency"], ("latency", False)),
        (["python", "ringex", "run", "--detach", "--config=a.toml"], ("a.toml", True)),
        (["python", "-m", "procs.supervisor.main", "--profile", "/x/p.toml"], ("/x/p.toml", False)),
        (["python", "ringex", "stop"], None),
        (["python", "-m", "procs.router", "--profile", "dev"], None),
        (["python", "-m", "procs.supervisor.main"], None),
        (["bash", "-c", "run"], None),
    ],
)
def test_a_start_is_known_by_its_command_line(
    argv: list[str], profile: tuple[str, bool] | None
) -> None:
    assert _profile_of(argv) == profile
