"""Bugs a hostile review of the supervisor, the process lifecycle and the systemd units found.

Each test failed on the code as reviewed and passes since its fix. They run the real
commands (``ringex``, ``scripts/systemd_units.py``, the supervisor) as operators do.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import procs.cli
from config import load_profile
from procs.common.run_files import read_status, status_path
from procs.supervisor import draining
from procs.supervisor.main import Supervisor
from shm.liveness import process_start
from tests.free_ports import free_port
from tests.unit.router.test_router import config

ROOT = Path(__file__).parents[3]


def write_profile(
    path: Path, instance: str, var: Path, *, top: str = "gateways = []\n", tail: str = ""
) -> Path:
    """A small instance: a matcher and the router (``top`` adds gateways, ``tail`` adds
    keys to [supervisor] or sections after it)."""
    path.write_text(
        f'instance = "{instance}"\nvar_dir = "{var}"\n{top}'
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        "[ring]\ncapacity = 1024\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.01\n'
        f"[supervisor]\nrestart_limit = 3\nready_timeout_s = 30\nmetrics = false\n{tail}"
    )
    return path


def ringex(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "procs.cli", *args],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout} s")


# -- 1. scripts/systemd_units.py run as a script: a NameError before any unit starts ------------


def systemd_units(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/systemd_units.py", *args],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_systemd_units_start_runs_as_the_readme_says(instance: str, tmp_path: Path) -> None:
    """``python scripts/systemd_units.py start --profile prod.toml`` (the README's command)
    died with ``NameError: name '_span' is not defined``: ``_span`` was defined below the
    ``if __name__ == "__main__"`` block, so only an import (the tests') ever saw it. Every
    start, dry run or not, failed before its first unit."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    done = systemd_units("start", "--profile", str(profile), "--dry-run")
    assert done.returncode == 0, done.stderr[-800:]
    units = [line for line in done.stdout.splitlines() if line.startswith("systemd-run")]
    assert len(units) == 2  # the matcher and the router
    assert "StartLimitIntervalSec=60s" in units[0]


# -- 2. an instance with a dash in its name: its slice nests under another instance's ----------


def parent_slices(name: str) -> list[str]:
    """systemd.slice(5): "foo-bar-baz.slice" lies in "foo-bar.slice", in "foo.slice"."""
    parts = name.removesuffix(".slice").split("-")
    return ["-".join(parts[:k]) + ".slice" for k in range(1, len(parts))]


def slice_of(profile: Path) -> str:
    done = systemd_units("stop", "--profile", str(profile), "--dry-run")
    assert done.returncode == 0, done.stderr[-800:]
    stops = [shlex.split(line) for line in done.stdout.splitlines() if line.startswith("systemctl")]
    slices = [cmd[-1] for cmd in stops if cmd[-1].endswith(".slice")]
    assert len(slices) == 1, done.stdout
    return slices[0]


def test_a_dashed_instance_is_not_inside_another_instances_slice(tmp_path: Path) -> None:
    """Instances "prod" and "prod-a" on one host: "prod-a" ran in ``ringex-prod-a.slice``,
    which systemd places inside ``ringex-prod.slice`` ('-' is its nesting). So ``stop`` of
    instance "prod" (``systemctl stop ringex-prod.slice``) stopped every unit of "prod-a",
    and ``start`` of "prod" refused ("ringex-prod.slice is active") while only "prod-a" ran.
    The dash in an instance name is escaped as ``systemd-escape`` does."""
    prod = slice_of(write_profile(tmp_path / "prod.toml", "prod", tmp_path / "var"))
    prod_a = slice_of(write_profile(tmp_path / "prod-a.toml", "prod-a", tmp_path / "var"))
    assert prod == "ringex-prod.slice"
    assert prod not in parent_slices(prod_a), (prod, prod_a)
    assert parent_slices(prod_a) == ["ringex.slice"]  # still under ringex.slice, as documented


# -- 3. rings bigger than /dev/shm: a SIGBUS, with nothing in the log -------------------------


def in_small_shm(script: str, mib: int = 8) -> subprocess.CompletedProcess[str]:
    """``script`` (sh) in a mount namespace of its own whose /dev/shm is a ``mib`` MiB tmpfs,
    as Docker gives a container by default (64 MiB); skipped where that is not allowed."""
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
        check=False,
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip("needs unshare -m and mount (root): a small /dev/shm of its own")
    mount = f"mount -t tmpfs -o size={mib}m tmpfs /dev/shm && cd {shlex.quote(str(ROOT))} && "
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", mount + script],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rings_that_do_not_fit_in_shared_memory_are_refused_naming_the_setting(
    instance: str, tmp_path: Path
) -> None:
    """Ring segments were sparse files in /dev/shm: a tmpfs too small for them (Docker's 64
    MiB and the latency profile's 8 MiB rings) took them, and the first write to a page it
    could not give was a SIGBUS. Here the supervisor itself died formatting its second ring
    (`ringex run` exit -7, an empty log, a status stuck at "starting"); with a little more
    room, a router or matcher would have died hours later, once its ring filled that far,
    and again at each restart. A start now refuses, naming ring.capacity, what the rings
    need and what /dev/shm has, before anything runs."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    profile.write_text(profile.read_text().replace("capacity = 1024", "capacity = 65536"))
    python = shlex.quote(sys.executable)
    done = in_small_shm(
        f"{python} -m procs.cli run --config {shlex.quote(str(profile))}; "
        f'echo "exit=$?"; ls /dev/shm'
    )
    said = done.stdout + done.stderr
    assert "exit=1" in said, said[-1500:]
    assert "ring.capacity = 65536" in said and "MiB free" in said, said[-1500:]
    assert f"ringex.{instance}." not in done.stdout  # no segment left behind
    status = read_status(load_profile(str(profile)))
    assert status is None or status["state"] != "starting"


def test_a_segment_that_does_not_fit_is_an_error_not_a_sigbus() -> None:
    """The same below the supervisor (``shm.Region.create``, which ``ringex`` tools and
    tests use too, and which a /dev/shm filled since the supervisor's check meets): the
    segment's pages are reserved as it is made, or it is refused, and nothing is left."""
    code = (
        "from shm.region import Region\nfrom shm.errors import ShmError\n"
        "try:\n    Region.create('rv9big', 'seg', 16 << 20)\nexcept ShmError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = in_small_shm(f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}; ls /dev/shm")
    assert done.returncode == 0, (done.returncode, done.stderr[-800:])
    assert "refused:" in done.stdout and "16777216 bytes" in done.stdout, done.stdout
    assert "rv9big" not in done.stdout.split("refused:")[1].split("\n", 1)[1]


# -- 4. a standby whose promotion names a CPU the host lacks: a traceback once it runs ---------


def test_a_standby_whose_promotion_names_a_missing_cpu_is_refused_at_start(
    instance: str, tmp_path: Path
) -> None:
    """A standby holding its promotion starts the promoted instance's processes, pinned,
    once it runs. ``refuse_cpus_missing`` looked only at the standby's own process, so
    ``supervisor.cores = {router = [N]}`` with N past the host's CPUs ran the standby, then
    killed its supervisor with "SubprocessError: Exception occurred in preexec_fn" and a
    traceback naming neither the key nor the CPU. It is refused as the primary's is."""
    cpu = (os.cpu_count() or 1) + 40
    port = free_port()  # nobody listens there: a primary that is down
    tail = f'cores = {{ router = [{cpu}] }}\n[replication]\nprimary = "127.0.0.1:{port}"\n'
    profile = write_profile(tmp_path / "standby.toml", instance, tmp_path / "var", tail=tail)
    done = subprocess.run(
        [sys.executable, "-m", "procs.supervisor.main", "--profile", str(profile)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 1, said[-1500:]
    assert "Traceback" not in said, said[-1500:]
    assert "supervisor.cores['router']" in said and str(cpu) in said, said[-1500:]


# -- 5. `ringex status --wait-ready --timeout 0` of a ready instance: "not ready" --------------


@pytest.fixture
def running(instance: str, tmp_path: Path) -> Iterator[Path]:
    """A running instance (a matcher, the router), stopped afterwards."""
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
        yield profile
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_wait_ready_with_no_time_left_still_looks_once(running: Path) -> None:
    """``--wait-ready --timeout 0`` ("is it ready now?", a health check's question) never
    looked: its loop ran while time was left, and its ``else`` said "not ready within 0.0 s"
    (exit 1) of an instance every process of which was up and ready."""
    waited = ringex("status", "--config", str(running), "--wait-ready", "--timeout", "30")
    assert waited.returncode == 0, waited.stderr
    now = ringex("status", "--config", str(running), "--wait-ready", "--timeout", "0")
    assert now.returncode == 0, now.stderr
    assert "running" in now.stdout.splitlines()[0]


# -- 6. `ringex status` of an instance a failure stopped: "stopped", and nothing of why --------


def test_status_says_why_the_instance_stopped(instance: str, tmp_path: Path) -> None:
    """A crash loop, or a process that could not start, stops the instance with a reason
    naming the process (and the count), which the supervisor logs and writes into
    status.json; ``ringex status`` printed only "instance X: stopped (primary)", so an
    operator of a detached instance had to know to look in a log or the JSON."""
    with socket.socket() as taken:  # the gateway's FIX port: it exits while starting
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        top = f'[[gateways]]\nname = "gw1"\nid = 1\nport = {port}\n'
        profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var", top=top)
        run = ringex("run", "--config", str(profile))
    assert run.returncode == 1, run.stderr[-1500:]
    shown = ringex("status", "--config", str(profile))
    assert shown.returncode == 0, shown.stderr
    assert "gateway-gw1 exited with 1 while starting" in shown.stdout, shown.stdout


# -- `ringex stop` gave up before the supervisor's own stop could have ended -----------------


def test_ringex_stop_waits_as_long_as_the_instances_stop_may_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ringex stop`` waited 60 s by default, while a clean stop may take three groups'
    20 s grace plus ``drain_timeout_s`` (10 s) and the database's stop: a stop running its
    course was reported failed (exit 1). The default is now that bound, from the config.
    Here a "supervisor" that ignores SIGTERM, with the grace shortened, shows which wait
    was used."""
    cfg = msgspec.structs.replace(
        config(f"stopw{os.getpid()}", tmp_path),
        supervisor=msgspec.structs.replace(config("x", tmp_path).supervisor, drain_timeout_s=0.2),
    )
    monkeypatch.setattr(procs.cli, "load_profile", lambda _name: cfg)
    monkeypatch.setattr(Supervisor, "STOP_GRACE_S", 0.1)
    monkeypatch.setattr(draining, "STOP_SLACK_S", 0.3)
    deaf = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
         "signal.SIG_IGN); print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert deaf.stdout is not None and deaf.stdout.readline() == "up\n"
        status = status_path(cfg)
        status.parent.mkdir(parents=True, exist_ok=True)
        status.write_text(
            json.dumps({
                "instance": cfg.instance, "state": "running", "supervisor_pid": deaf.pid,
                "supervisor_started": process_start(deaf.pid), "processes": [],
            })
        )  # fmt: skip
        assert procs.cli.main(["stop", "--profile", "x"]) == 1
        bound = draining.stop_bound_s(0.2, 0.1)
        assert f"still running after {bound:g} s" in capsys.readouterr().err
        assert bound == pytest.approx(3 * 0.1 + 0.2 + 0.3)
        assert draining.stop_bound_s(10.0, 20.0) > 60.0  # the defaults: more than the old 60 s
    finally:
        deaf.kill()
        deaf.wait()
        assert deaf.stdout is not None
        deaf.stdout.close()
