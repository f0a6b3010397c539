"""Hot standby, as an operator runs it: a primary and a standby instance on this machine
(their own segment prefixes, directories and ports), both under `ringex run`. Commands on the
primary reach the standby's journal with the same history; a standby with another history is
refused; `scripts/failover.py promote` fences the primary (its router will not start again)
and the promoted standby serves with every balance the primary had; `demote` rebuilds the
old primary as the promoted one's standby, which catches up to the same history."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from config import load_profile
from procs.common.run_files import read_status
from procs.core.recovery import recover
from shm.inspect import remove_instance
from tests.free_ports import free_port

ROOT = Path(__file__).parents[2]


def profile(path: Path, instance: str, var: Path, extra: str) -> Path:
    path.write_text(
        f'instance = "{instance}"\nvar_dir = "{var}"\ngateways = []\n'
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.005\n' + extra
    )
    return path


def ringex(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "procs.cli", *args],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=90,
    )


def wait_running(cfg_path: Path) -> None:
    cfg = load_profile(str(cfg_path))
    deadline = time.monotonic() + 60
    while (read_status(cfg) or {}).get("state") != "running":
        assert time.monotonic() < deadline, f"{cfg.instance} not running"
        time.sleep(0.1)


@pytest.fixture
def pair(instance: str, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    port, promoted_port = free_port(), free_port()
    primary = profile(
        tmp_path / "primary.toml", instance + "p", tmp_path / "p",
        f"[replication]\nlisten_port = {port}\n",
    )  # fmt: skip
    standby = profile(  # its listen_port serves once it is promoted; promote starts a new
        tmp_path / "standby.toml", instance + "s", tmp_path / "s",  # supervisor (prestart off)
        f'[replication]\nprimary = "127.0.0.1:{port}"\nlisten_port = {promoted_port}\n'
        "prestart = false\n",
    )  # fmt: skip
    with primary_and_standby(instance, primary, standby):
        yield primary, standby


@contextmanager
def primary_and_standby(instance: str, primary: Path, standby: Path) -> Iterator[None]:
    """Both instances under `ringex run` (instance names: ``instance`` + "p" and + "s"); at
    the end stopped, the promoted one too if a test promoted the standby, and their shared
    memory removed."""
    procs = []
    try:
        for path in (primary, standby):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "procs.cli", "run", "--config", str(path)],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_running(path)
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
        promoted = standby.with_suffix(".promoted.toml")
        if promoted.exists():
            ringex("stop", "--config", str(promoted))
        for name in (instance + "p", instance + "s"):
            remove_instance(name)


def failover(command: str, primary: Path, standby: Path) -> subprocess.CompletedProcess[str]:
    """``scripts/failover.py <command>`` for this pair, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "scripts/failover.py", command,
         "--primary", str(primary), "--standby", str(standby)],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def standby_seq(cfg_path: Path) -> int:
    cfg = load_profile(str(cfg_path))
    status = Path(cfg.var_dir) / cfg.instance / "run" / "standby.json"
    try:
        return int(json.loads(status.read_text())["last_seq"])
    except (FileNotFoundError, json.JSONDecodeError):
        return -1


def wait_seq(cfg_path: Path, seq: int) -> None:
    deadline = time.monotonic() + 30
    while standby_seq(cfg_path) < seq:
        assert time.monotonic() < deadline, f"standby {cfg_path.name} did not reach seq {seq}"
        time.sleep(0.05)


def test_the_standby_takes_over_and_the_old_primary_follows_it(
    pair: tuple[Path, Path],
) -> None:
    primary, standby = pair
    for k, (what, *args) in enumerate(
        [
            ("create-account", "--account", "5"),
            ("deposit", "--account", "5", "--asset", "USD", "--amount", "10"),
            ("deposit", "--account", "5", "--asset", "BTC", "--amount", "0.5"),
        ]
    ):
        done = ringex("admin", what, *args, "--config", str(primary))
        assert done.returncode == 0, (k, done.stderr)
    fees = 2 * len(load_profile(str(primary)).symbols)  # fees, then rules, per symbol: first
    wait_seq(standby, fees + 3)
    shown = failover("status", primary, standby)
    assert shown.returncode == 0 and "histories agree" in shown.stdout, shown.stdout
    assert "not prestarted" in shown.stdout, shown.stdout  # prestart = false
    p_state = recover(load_profile(str(primary))).state_hashes()
    s_state = recover(load_profile(str(standby))).state_hashes()
    assert p_state == s_state

    promote = failover("promote", primary, standby)
    assert promote.returncode == 0, promote.stdout + promote.stderr
    assert "the new supervisor" in promote.stdout, promote.stdout
    again = failover("promote", primary, standby)  # an operator's retry changes nothing
    assert again.returncode == 0 and "already runs as a primary" in again.stdout, again.stdout
    promoted = standby.with_suffix(".promoted.toml")
    more = ringex("admin", "deposit", "--account", "5", "--asset", "USD", "--amount", "1",
                  "--config", str(promoted))  # fmt: skip
    assert more.returncode == 0 and "free balance 11.000000" in more.stdout, more.stdout

    # the old primary is fenced: whatever restarts its router, it refuses to sequence
    router = subprocess.run(
        [sys.executable, "-m", "procs.router.main", "--profile", str(primary)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert router.returncode == 2 and "was promoted to epoch 2" in router.stderr, router.stderr
    demote = subprocess.run(
        [sys.executable, "scripts/failover.py", "demote",
         "--old", str(primary), "--new", str(promoted)],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert demote.returncode == 0 and "epoch 2" in demote.stdout, demote.stdout + demote.stderr
    follower = primary.with_suffix(".standby.toml")
    with subprocess.Popen(
        [sys.executable, "-m", "procs.cli", "run", "--config", str(follower)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) as proc:  # fmt: skip
        try:
            wait_seq(follower, fees + 4)  # the deposit on the promoted instance
            shown = failover("status", promoted, follower)
            assert "histories agree" in shown.stdout, shown.stdout
            since = f"epoch 2 (since seq {fees + 4})"
            assert shown.stdout.count(since) == 2, shown.stdout
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
