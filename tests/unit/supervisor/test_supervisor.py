"""The supervisor over real processes: start, readiness, restart after SIGKILL, refusing a
second instance, clean stop with the segments removed; and `ringex status`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from procs.common.run_files import read_status
from procs.supervisor.main import Supervisor
from shm.inspect import list_segments

ROOT = Path(__file__).parents[3]


def write_profile(path: Path, instance: str, var: Path, supervisor: str = "") -> Path:
    """A small instance (a matcher and the router); ``supervisor``: more ``[supervisor]``
    keys, as TOML lines."""
    path.write_text(
        f'instance = "{instance}"\nvar_dir = "{var}"\ngateways = []\n'
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        "[ring]\ncapacity = 1024\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.01\n'
        f"[supervisor]\nrestart_limit = 3\nready_timeout_s = 30\n{supervisor}"
    )
    return path


def wait_for(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout} s: {check}")


@pytest.fixture
def running(instance: str, tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    proc = subprocess.Popen(
        [sys.executable, "-m", "procs.supervisor.main", "--profile", str(profile)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cfg = load_profile(str(profile))
    try:
        wait_for(lambda: (read_status(cfg) or {}).get("state") == "running")
        yield profile, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def test_start_restart_after_kill_and_clean_stop(
    running: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    profile, proc = running
    cfg = load_profile(str(profile))
    status = read_status(cfg)
    assert status is not None
    names = [p["name"] for p in status["processes"]]
    assert names == ["matcher-m1", "router"]
    assert all(p["alive"] and p["ready"] for p in status["processes"])

    victim = status["processes"][0]["pid"]
    os.kill(victim, signal.SIGKILL)

    def restarted() -> bool:
        now = read_status(cfg) or {}
        matcher = now["processes"][0]
        return bool(matcher["pid"] != victim and matcher["ready"] and matcher["restarts"] == 1)

    wait_for(restarted)

    # a second supervisor for the same instance refuses, naming the running segments,
    # before it starts any process of its own
    second = subprocess.run(
        [sys.executable, "-m", "procs.supervisor.main", "--profile", str(profile)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1 and "is running" in second.stderr
    third, went = Supervisor(cfg, str(profile)), threading.Event()

    def go() -> bool:
        went.set()
        return True

    assert third.run(lambda: True, go) == 1
    assert not went.is_set() and all(c.process is None for c in third.children)

    shown = subprocess.run(
        [sys.executable, "-m", "procs.cli", "status", "--config", str(profile), "--json"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    doc = json.loads(shown.stdout)
    rings = {r["name"] for r in doc["rings"]}
    assert doc["state"] == "running" and rings == {"gw0-cmd", "gw0-rep", "m1-in", "m1-out"}
    with urllib.request.urlopen(doc["endpoints"]["metrics"], timeout=10) as response:
        metrics = response.read().decode()
    assert 'ringex_process_restarts_total{process="matcher-m1"} 1.0' in metrics
    assert 'ringex_process_up{process="router"} 1.0' in metrics

    def ringex(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "procs.cli", *args, "--config", str(profile)],
            cwd=ROOT,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = ringex("admin", "create-account", "--account", "5")
    assert made.returncode == 0 and "account 5: OK" in made.stdout, made.stderr
    paid = ringex("admin", "deposit", "--account", "5", "--asset", "USD", "--amount", "12.5")
    assert paid.returncode == 0 and "free balance 12.500000" in paid.stdout  # 6 decimals
    too_fine = ringex("admin", "deposit", "--account", "5", "--asset", "USD", "--amount", "1e-9")
    assert too_fine.returncode == 1 and "6 decimal places" in too_fine.stderr

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert list_segments(cfg.instance) == []
    assert (read_status(cfg) or {})["state"] == "stopped"
    replayed = ringex("replay", "--quiet")
    first = 2 * len(cfg.symbols)  # the router journals each symbol's fees, then its rules
    at = f"state at seq {first + 2}"
    assert replayed.returncode == 0 and at in replayed.stdout, replayed.stderr
