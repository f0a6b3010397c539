"""A third hostile review of the supervisor, `ringex` and the ops scripts: each test shows one
bug, and fails on the code as reviewed.

Tests that need a supervisor run one over stand-in processes: this module is also what the
stand-ins run (``python -m procs.supervisor.held <this module> MODE ...`` calls ``main``), and
``python -m <this module> supervise PROFILE KIND MARKER`` is a supervisor of one stand-in.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs import cli
from procs.common.epochs import Epochs
from procs.common.run_files import read_status, status_path
from procs.common.stopping import stop_on_signals
from procs.supervisor.main import Child, Supervisor
from procs.supervisor.plan import ProcessSpec
from shm.liveness import pid_alive
from tests.scripts_loader import load_script

ROOT = Path(__file__).parents[3]
THIS = "tests.unit.supervisor.test_review3_ops_bugs"


# -- the stand-ins and their supervisor ------------------------------------------------------


def main(argv: list[str]) -> int:
    """A supervised stand-in: ``sleep MARKER`` or ``ignore-term MARKER`` (SIGTERM ignored);
    either writes its pid to MARKER, then sleeps until killed."""
    mode, marker = argv[2:4]  # after "--profile <file>", which every process is given
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # made whole at once: a reader that sees the file sees the pid (a file made, then
    # written, was read empty once: int('') under load)
    Path(f"{marker}.tmp").write_text(str(os.getpid()))
    Path(f"{marker}.tmp").replace(marker)
    while True:
        time.sleep(1)


def supervise(profile: str, kind: str, marker: str) -> int:
    """A supervisor of one stand-in. ``stubborn``: it ignores SIGTERM (a hung process);
    ``slow``: it never attaches its ready ring (a long recovery)."""
    Supervisor.STOP_GRACE_S = 1.0  # any grace a fix gives an orphan is this one, shortened
    sup = Supervisor(load_profile(profile), profile)
    if kind == "stubborn":
        spec = ProcessSpec("stubborn", THIS, ("ignore-term", marker), (), "", "")
    else:
        spec = ProcessSpec("slow", THIS, ("sleep", marker), (), "m1-in", "matcher")
    sup.children = [Child(spec)]
    return sup.run(stop_on_signals())


def write_profile(path: Path, instance: str, var: Path, extra: str = "") -> Path:
    path.write_text(
        f'instance = "{instance}"\nvar_dir = "{var}"\ngateways = []\n'
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        "[ring]\ncapacity = 1024\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.01\n'
        f"[supervisor]\nrestart_limit = 3\nmetrics = false\nready_timeout_s = 30\n{extra}"
    )
    return path


@pytest.fixture
def profile(instance: str, tmp_path: Path) -> Path:
    return write_profile(tmp_path / "p.toml", instance, tmp_path / "var")


@pytest.fixture
def cfg(profile: Path) -> RingexConfig:
    return load_profile(str(profile))


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the stand-ins import this module from the repository root


def wait_for(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        time.sleep(0.05)


@contextlib.contextmanager
def supervisor_process(profile: Path, kind: str, marker: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", THIS, "supervise", str(profile), kind, str(marker)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(marker.read_text()), signal.SIGKILL)


# -- 1. `ringex stop` while the instance starts: "not running", and it goes on starting --------


def test_ringex_stop_while_the_instance_starts_stops_it(profile: Path, tmp_path: Path) -> None:
    """status.json is first written once every process is ready (``Supervisor.start``), so
    while processes start or recover (a long journal replay: up to ``ready_timeout_s``)
    ``ringex stop`` finds no status, prints "not running" with exit status 0, and the
    instance then comes up anyway. ``ringex status`` says "stopped" and ``failover.py
    promote`` fences nothing meanwhile, for the same reason. A correct supervisor writes its
    status (state "starting", its pid and start time) before it starts anything, so a stop
    reaches it and is taken at once (README: "a stop that comes while processes start or
    recover is taken at once")."""
    marker = tmp_path / "slow.pid"
    with supervisor_process(profile, "slow", marker) as sup:
        wait_for(marker.exists)  # released: recovering, not ready yet
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main(["stop", "--config", str(profile), "--timeout", "5"])
        with contextlib.suppress(subprocess.TimeoutExpired):
            sup.wait(5)
        assert code != 0 or sup.poll() is not None, (
            f"`ringex stop` said {out.getvalue().strip()!r} (exit {code}), and the "
            f"supervisor {sup.pid} goes on starting the instance"
        )


# -- 2. a supervisor killed outright leaves a process that ignores SIGTERM running for good ----


def test_a_process_deaf_to_sigterm_does_not_outlive_a_killed_supervisor(
    profile: Path, cfg: RingexConfig, tmp_path: Path
) -> None:
    """``die_with_parent`` (procs/common/parent_death.py) asks for SIGTERM at the
    supervisor's death, and nothing escalates: a process that is hung, or handles SIGTERM by
    a slow clean stop, lives on with nobody watching it once the supervisor is SIGKILLed (the
    OOM killer), although the README promises "a supervisor killed outright leaves nothing
    running". The supervisor's own stop escalates to SIGKILL after ``STOP_GRACE_S``; a
    correct orphan is killed too after that grace (say, a thread in ``held.py`` that reads
    the supervisor's pipe, kept open, and SIGKILLs its process a grace after end of file; or
    PR_SET_PDEATHSIG = SIGKILL, the processes being crash-only)."""
    marker = tmp_path / "stubborn.pid"
    with supervisor_process(profile, "stubborn", marker) as sup:
        wait_for(lambda: (read_status(cfg) or {}).get("state") == "running" and marker.exists())
        child = int(marker.read_text())
        sup.kill()
        sup.wait()
        deadline = time.monotonic() + 4  # the grace (1 s here) and then some
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(child), f"pid {child} outlived its supervisor, unwatched"


# -- 3. supervisor.cores naming a CPU the host lacks: a traceback from preexec_fn --------------


def test_a_core_the_host_lacks_is_a_message_not_a_traceback(profile: Path) -> None:
    """``supervisor.cores = {"matcher-m1" = [N]}`` with N past the host's CPUs loads; ``ringex
    run`` then dies in ``Supervisor._spawn`` with "SubprocessError: Exception occurred in
    preexec_fn" (``os.sched_setaffinity`` fails in the child) and a traceback that names
    neither the key nor the CPU. A correct start refuses it with one line naming
    ``supervisor.cores``, the process, the CPU and the CPUs this host has (at load, or before
    the first process starts)."""
    cpu = (os.cpu_count() or 1) + 40
    profile.write_text(profile.read_text() + f'cores = {{ "matcher-m1" = [{cpu}] }}\n')
    done = subprocess.run(
        [sys.executable, "-m", "procs.cli", "run", "--config", str(profile)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in said and str(cpu) in said, said[-600:]


# -- 4. config: listeners that load but cannot all bind ----------------------------------------


def test_a_wildcard_listener_and_a_loopback_one_on_one_port_are_refused(tmp_path: Path) -> None:
    """``_check_listeners`` (config/schema.py) compares (host, port) pairs as strings, so a
    gateway on 0.0.0.0:9101 and market data on 127.0.0.1:9101 load, and whichever binds
    second fails with EADDRINUSE at every start until the restart limit stops the instance
    (Linux refuses a specific address on a port a wildcard socket listens on). A correct
    check treats a wildcard host (0.0.0.0, ::, "") as overlapping every host."""
    path = tmp_path / "p.toml"
    path.write_text(
        '[[gateways]]\nname = "gw1"\nid = 1\nhost = "0.0.0.0"\nport = 9101\n'
        '[marketdata]\nhost = "127.0.0.1"\nport = 9101\n'
    )
    with pytest.raises(ValueError, match="9101"):
        load_profile(str(path))


def test_a_primary_port_past_65535_is_refused_at_load(tmp_path: Path) -> None:
    """``ReplicationConfig.primary_address`` checks that the port is digits, not that it is
    a port: ``primary = "127.0.0.1:70000"`` loads, and the standby process fails to
    connect (OverflowError / "port must be 0-65535") at every start. A correct check names
    the value and the range 1..65535, as every other port setting (``Port``) does."""
    path = tmp_path / "p.toml"
    path.write_text('[replication]\nprimary = "127.0.0.1:70000"\n')
    with pytest.raises(ValueError, match="70000"):
        load_profile(str(path))


# -- 5. `ringex status` of a dead instance shows a reused pid "up" -----------------------------


def test_status_of_a_dead_instance_does_not_show_another_process_up(
    profile: Path, cfg: RingexConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the supervisor is gone, ``_print_status`` (procs/cli.py) marks each process
    alive by ``pid_alive(pid)`` alone, the check the supervisor's own pid was taken off
    (``supervisor_running`` compares its start time): after a reboot or long after a crash
    the pid is some other process's, and ``ringex status`` shows the router "up". A correct
    status.json records each process's start time (``process_start``) and status compares
    it, as it does for the supervisor."""
    sup = Supervisor(cfg, str(profile))
    sup.children = [Child(ProcessSpec("router", THIS, ("sleep", "/dev/null"), (), "", ""))]
    try:
        sup.start()
        sup.write_status()
        doc = json.loads(status_path(cfg).read_text())
    finally:
        sup.stop()
    # start times are in clock ticks (10 ms): one in the router's tick would be it
    time.sleep(0.05)
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        done = subprocess.Popen([sys.executable, "-c", "pass"])
        done.wait()
        doc["supervisor_pid"] = done.pid  # the supervisor was SIGKILLed (or the host rebooted)
        doc["processes"][0]["pid"] = bystander.pid  # and its router's pid is now another's
        status_path(cfg).write_text(json.dumps(doc))
        assert cli._print_status(cfg, as_json=True) == 0
        shown = json.loads(capsys.readouterr().out)["processes"][0]
        assert not shown["alive"], (
            f"`ringex status` shows pid {bystander.pid} (sleep) as the router"
        )
    finally:
        bystander.kill()
        bystander.wait()


# -- 6. systemd units: a time span systemd cannot parse ------------------------------------------


def test_systemd_time_spans_are_ones_systemd_parses(tmp_path: Path) -> None:
    """``run_command`` (scripts/systemd_units.py) formats seconds with ``:g``, which turns
    1,000,000 s (``restart_window_s``, ``ready_timeout_s``: floats with no upper bound) into
    ``1e+06s``: systemd rejects it ("Failed to parse time span '1e+06s'", systemd-analyze
    timespan, systemd 252), so ``systemd-run`` refuses every unit of a profile that loads.
    A correct unit writes plain decimals (``1000000s``), or milliseconds as integers."""
    units = load_script("systemd_units", "review3")
    path = write_profile(
        tmp_path / "p.toml", "sdspan", tmp_path / "var", "restart_window_s = 1000000\n"
    )
    cfg = load_profile(str(path))
    opts = units.Options(profile=str(path), workdir=tmp_path)
    for spec in units.plan(cfg):
        cmd = units.run_command(cfg, spec, opts)
        spans = [p for p in cmd if p.startswith(("StartLimitIntervalSec=", "TimeoutStartSec="))]
        bad = [p for p in spans if "e+" in p or "e-" in p]
        assert not bad, f"{spec.name}: {bad}"


# -- 7. failover.py promote run again once the promoted instance has stopped -----------------


def test_promote_run_again_after_the_promotion_does_nothing(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: "run again on an instance it already promoted, it does nothing". ``promote``
    (scripts/failover.py) only sees a promotion while the promoted supervisor runs (its
    status.json says role primary); once that instance has stopped (a restart, a host
    reboot) the same command begins another epoch and fences the old primary again: and
    the old primary, demoted meanwhile to the promoted instance's standby, is killed and
    its journal fenced, so it must be demoted again. A correct promote sees from the
    journals that the standby already began an epoch the old primary was fenced by or
    follows, and changes nothing (it may say to start the promoted config)."""
    failover = load_script("failover", "review3")
    primary_path = write_profile(tmp_path / "primary.toml", f"{instance}p", tmp_path / "var")
    standby_path = write_profile(
        tmp_path / "standby.toml", f"{instance}s", tmp_path / "var",
        '[replication]\nprimary = "127.0.0.1:9999"\n',
    )  # fmt: skip
    primary, standby = load_profile(str(primary_path)), load_profile(str(standby_path))
    after = Epochs().promoted(2, 1)
    after.save(failover.journal_path(standby))  # the promotion began epoch 2 ...
    after.save(failover.journal_path(primary))  # ... and demote made the old primary follow it
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    status_path(standby).parent.mkdir(parents=True, exist_ok=True)
    status_path(standby).write_text(  # the promoted instance, stopped
        json.dumps({"supervisor_pid": gone.pid, "state": "stopped", "role": "primary"})
    )
    started: list[list[str]] = []

    class NoSupervisor:
        def __init__(self, argv: list[str], **kwargs: Any) -> None:
            started.append(argv)
            self.pid, self.stdin = gone.pid, io.BytesIO()

        def poll(self) -> int:
            return 1

    monkeypatch.setattr(failover.subprocess, "Popen", NoSupervisor)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        failover.promote(str(primary_path), str(standby_path))
    fence = Epochs.load(failover.journal_path(primary)).fence
    assert fence is None and not started, (fence, started)


# -- 8. `ringex run --detach` that times out: "not ready", exit 1, and the instance comes up ---


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # its Popen
def test_run_detach_that_gives_up_leaves_no_instance_starting(
    profile: Path, cfg: RingexConfig
) -> None:
    """``_run`` (procs/cli.py) starts the supervisor in a session of its own and, when
    ``--timeout`` passes first, prints "not ready within N s" and exits 1, but leaves that
    supervisor starting: the instance comes up and takes orders after the command (and the
    operator's script) reported a failed start, and a retry is refused as "running". A
    correct ``run --detach`` stops the supervisor it started when it gives up (or, if it
    leaves it, says so with its pid and does not report a failure)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(["run", "--config", str(profile), "--detach", "--timeout", "0.05"])
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            if (read_status(cfg) or {}).get("state") == "running":
                break
            time.sleep(0.1)
        state = (read_status(cfg) or {}).get("state")
        assert code == 0 or state != "running", f"{out.getvalue().strip()!r}, then {state!r}"
    finally:
        with contextlib.redirect_stdout(io.StringIO()):
            cli.main(["stop", "--config", str(profile), "--timeout", "20"])


# -- 9. `ringex replay --archive` of an instance with no journal: a traceback -----------------


def test_replay_archive_without_a_journal_is_a_message(
    profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ringex replay --archive`` on an instance that has not journaled yet (a new host, a
    wrong ``var_dir``) recovers nothing, then ``archive_segments_before`` lists a journal
    directory that does not exist and FileNotFoundError ends the command in a traceback
    (procs/cli.py ``_replay``). A correct one says there is nothing to archive (or names
    the missing directory on one line)."""
    assert cli.main(["replay", "--config", str(profile), "--quiet", "--archive"]) == 0
    assert "archive" in capsys.readouterr().out


if __name__ == "__main__":
    sys.exit(supervise(*sys.argv[2:]) if sys.argv[1] == "supervise" else 2)
