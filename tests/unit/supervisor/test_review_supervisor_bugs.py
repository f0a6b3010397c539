"""Bugs a hostile review of the supervisor (procs/supervisor/) and `ringex status`/`stop` found.

Each test failed on the code as reviewed and passes since its fix. Most run a
``Supervisor`` in this process over stand-in processes: this module is also the module the
stand-ins run (``python -m procs.supervisor.held <this module> MODE ...`` calls ``main``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config import load_profile
from config.edges import GatewayConfig
from config.schema import RingexConfig
from procs import cli
from procs.common.run_files import read_status, status_path
from procs.common.stats import GATEWAY_COUNTERS, gateway_page
from procs.supervisor.main import Child, Supervisor
from procs.supervisor.metrics import RingexCollector
from procs.supervisor.plan import ProcessSpec
from shm.counters import _HEAD, MAGIC, NAME_BYTES, Counters, _size
from shm.inspect import SegmentInfo
from shm.liveness import pid_alive
from shm.region import Region
from tests.unit.supervisor.test_supervisor import wait_for

ROOT = Path(__file__).parents[3]
THIS = "tests.unit.supervisor.test_review_supervisor_bugs"


# -- the stand-in processes ------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """A supervised stand-in: ``sleep`` (until killed), ``ignore-term MARKER`` (ignores
    SIGTERM, then writes MARKER and sleeps)."""
    args = argv[2:]  # after "--profile <file>", which the supervisor passes every process
    if args[0] == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        Path(args[1]).write_text("ignoring")
    while True:
        time.sleep(1)


def fake(name: str, *args: str, ready_ring: str = "", ready_consumer: str = "") -> ProcessSpec:
    return ProcessSpec(name, THIS, args, (), ready_ring, ready_consumer)


# -- helpers -----------------------------------------------------------------------------------


def write_profile(path: Path, instance: str, var: Path, extra: str = "") -> Path:
    path.write_text(
        f'instance = "{instance}"\nvar_dir = "{var}"\ngateways = []\n'
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        "[ring]\ncapacity = 1024\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.01\n'
        f"[supervisor]\nrestart_limit = 3\nmetrics = false\n{extra}"
    )
    return path


@pytest.fixture
def profile(instance: str, tmp_path: Path) -> Path:
    return write_profile(tmp_path / "p.toml", instance, tmp_path / "var", "ready_timeout_s = 30\n")


@pytest.fixture
def cfg(profile: Path) -> RingexConfig:
    return load_profile(str(profile))


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the stand-ins import this module from the repository root


def supervisor(cfg: RingexConfig, profile: Path, *specs: ProcessSpec) -> Supervisor:
    sup = Supervisor(cfg, str(profile))
    sup.children = [Child(spec) for spec in specs]
    return sup


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- 1. a supervisor that dies leaves its processes running, and `ringex stop` says "not running"


def test_stop_after_the_supervisor_died_leaves_no_process(profile: Path, cfg: RingexConfig) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "procs.supervisor.main", "--profile", str(profile)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pids: list[int] = []
    try:
        wait_for(lambda: (read_status(cfg) or {}).get("state") == "running")
        pids = [p["pid"] for p in (read_status(cfg) or {})["processes"]]
        proc.kill()  # OOM killer, kill -9, a crash of the supervisor itself
        proc.wait(10)
        stopped = subprocess.run(
            [sys.executable, "-m", "procs.cli", "stop", "--config", str(profile)],
            cwd=ROOT,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.1)
        alive = [p for p in pids if pid_alive(p)]
        # "stopped" / "not running" with exit status 0 must mean nothing of it runs
        assert stopped.returncode != 0 or not alive, (stopped.stdout, alive)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_all(pids)


# -- 2. pid reuse: `ringex stop` signals whatever process now has a dead supervisor's pid -----


def test_stop_does_not_signal_an_unrelated_process_with_a_stale_pid(
    profile: Path, cfg: RingexConfig
) -> None:
    # status.json as a supervisor that was SIGKILLed (or lost with the machine) left it; its
    # pid now belongs to some other process (after a reboot, low pids come round at once)
    unrelated = subprocess.Popen(["sleep", "30"])
    try:
        path = status_path(cfg)
        sup = supervisor(cfg, profile)
        sup.state = "running"
        sup.write_status()
        doc = json.loads(path.read_text())
        path.write_text(json.dumps({**doc, "supervisor_pid": unrelated.pid}))
        assert (read_status(cfg) or {})["supervisor_pid"] == unrelated.pid
        cli.main(["stop", "--config", str(profile), "--timeout", "1"])
        time.sleep(0.2)
        assert unrelated.poll() is None, "ringex stop killed an unrelated process"
    finally:
        unrelated.kill()
        unrelated.wait()


# -- 3. during a restart, status.json still says the dead process is up and ready -------------


def test_wait_ready_is_not_ready_while_a_process_restarts(
    profile: Path, cfg: RingexConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup = supervisor(cfg, profile, fake("a", "sleep"))
    try:
        sup.start()
        child = sup.children[0]
        assert child.process is not None
        old = child.process.pid
        child.process.kill()
        child.process.wait()
        seen: list[tuple[int, dict[str, Any]]] = []
        wait_ready = Supervisor._wait_ready

        def spy(self: Supervisor, c: Child, *rest: Any) -> None:  # it recovers here
            code = cli.main(
                ["status", "--config", str(profile), "--wait-ready", "--timeout", "0.3"]
            )
            seen.append((code, (read_status(cfg) or {})["processes"][0]))
            wait_ready(self, c, *rest)

        monkeypatch.setattr(Supervisor, "_wait_ready", spy)
        sup._restart(child, -9)
        code, shown = seen[0]
        assert not (shown["pid"] == old and shown["alive"]), shown  # a dead pid shown "up"
        assert code == 1  # not ready: a process is down and recovering
    finally:
        sup.stop()


# -- 4. a stop waits 20 s per process that ignores SIGTERM, one after the other ----------------


def test_terminate_waits_one_timeout_for_a_group(
    profile: Path, cfg: RingexConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    markers = [tmp_path / f"m{k}" for k in range(3)]
    sup = supervisor(
        cfg, profile, *(fake(f"p{k}", "ignore-term", str(m)) for k, m in enumerate(markers))
    )
    try:
        sup.start()
        wait_for(lambda: all(m.exists() for m in markers))
        monkeypatch.setattr(Supervisor, "STOP_GRACE_S", 1.0)  # 20 s -> 1 s
        started = time.monotonic()
        sup._terminate(sup.children)
        took = time.monotonic() - started
        assert all(c.process is not None and c.process.poll() is not None for c in sup.children)
        assert took < 2.2, f"3 processes ignoring SIGTERM took {took:.1f} s (one timeout: 1 s)"
    finally:
        monkeypatch.undo()
        for c in sup.children:
            if c.process is not None and c.process.poll() is None:
                c.process.kill()
                c.process.wait()
        sup.stop()


# -- 5. a stop asked for while the instance starts waits until every process is ready ---------


def test_a_stop_during_start_is_not_held_up_by_a_recovering_process(
    instance: str, tmp_path: Path
) -> None:
    profile = write_profile(
        tmp_path / "p.toml", instance, tmp_path / "var", "ready_timeout_s = 4\n"
    )
    cfg = load_profile(str(profile))
    # a process that takes long to recover: it has not attached its ready ring yet
    sup = supervisor(
        cfg, profile, fake("slow", "sleep", ready_ring="m1-in", ready_consumer="matcher")
    )
    stop_asked = True  # SIGTERM arrived while it starts
    started = time.monotonic()
    sup.run(lambda: stop_asked)
    took = time.monotonic() - started
    assert all(c.process is None or c.process.poll() is not None for c in sup.children)
    assert took < 2.5, f"the stop waited {took:.1f} s for a start it had been asked to abandon"


# -- 6. no heartbeat / ring-progress watch: status has no heartbeat age, a hung process is "up" -


def test_status_reports_each_process_heartbeat_age(profile: Path, cfg: RingexConfig) -> None:
    sup = supervisor(cfg, profile, fake("a", "sleep"))
    try:
        sup.start()
        sup.write_status()
        processes = (read_status(cfg) or {})["processes"]
        assert all(any("heartbeat" in key for key in p) for p in processes), processes
    finally:
        sup.stop()


# -- 7. `ringex status` crashes when a ring goes away between listing and attaching ------------


def test_status_survives_a_ring_removed_while_it_looks(
    cfg: RingexConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = SegmentInfo(cfg.instance, "m1-in", 4096, True, 1024, 128, 0, (1,), (1,), ())
    # list_segments saw it; the stopping supervisor unlinked it before the attach
    monkeypatch.setattr(cli, "list_segments", lambda instance: [gone])
    assert cli._print_status(cfg, as_json=True) == 0


# -- 8. metrics: a counter page caught half-made is cached, broken, for good ------------------


def test_a_counter_page_scraped_while_made_is_read_again(cfg: RingexConfig) -> None:
    made = msgspec.structs.replace(cfg, gateways=[GatewayConfig(name="gw1", id=1)])
    name = gateway_page(1)
    # Counters.open's first steps: the segment, then the header (magic, count) ...
    region = Region.create(made.instance, name, _size(len(GATEWAY_COUNTERS)), replace=True)
    _HEAD.pack_into(region.buf, 0, MAGIC, len(GATEWAY_COUNTERS), 0)
    collector = RingexCollector(made, "test", {}, list, lambda: "running")
    try:
        with contextlib.suppress(KeyError):
            list(collector.collect())  # a scrape right then
        # ... then the names, and the gateway counts an order
        for k, counter in enumerate(GATEWAY_COUNTERS):
            at = _HEAD.size + k * NAME_BYTES
            region.buf[at : at + NAME_BYTES] = counter.encode().ljust(NAME_BYTES, b"\0")
        page = Counters(region)
        page.values[page.index("orders")] = 7
        page.values.release()
        families = {m.name: m for m in collector.collect()}  # every later scrape
        orders = families["ringex_fix_orders"].samples
        assert [s.value for s in orders] == [7]
    finally:
        collector.close()
        region.close()


# -- 9. status "restarts" goes down after a restart ---------------------------------------------


def test_status_restarts_never_goes_down(profile: Path, cfg: RingexConfig) -> None:
    sup = supervisor(cfg, profile, fake("a", "sleep"))
    try:
        sup.start()
        child = sup.children[0]
        hour_ago = time.monotonic() - 3600
        child.restarts, child.restarts_total = [hour_ago] * 3, 3  # three crashes an hour ago
        sup.write_status()
        before = (read_status(cfg) or {})["processes"][0]["restarts"]
        assert child.process is not None
        child.process.kill()
        child.process.wait()
        sup._restart(child, -9)  # a fourth, now
        after = (read_status(cfg) or {})["processes"][0]["restarts"]
        assert after >= before, (before, after)
    finally:
        sup.stop()
