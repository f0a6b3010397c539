"""Review 109: README.md's "## The processes", held to the code mechanically, for the rows
supervisor, matcher, router, replica-source / standby and dbwriter and the "Rings" paragraph
under the table (the gateway, gateway (HTTP) and marketdata rows are other reviews'). This
file: the supervisor row (``procs/supervisor/*``, its part of ``procs/cli.py``), the rings
paragraph (``topology.py``), the matcher row and which replica process runs; the router's, the
replica's other and the dbwriter's claims are in ``test_review109_readme_processes2.py``.

Convention (as reviews 104-107's, with ``tests/readme_text.py``): each claim is found in the
README by a quote (whitespace folded), so a reworded claim fails loudly; a claim checked and
found right is a plain test, a disagreement a strict xfail asserting what the README says.
The supervisor is checked through its pure parts (``plan``, ``preflight``, ``listening``) and
a ``Supervisor`` whose process starts are stood in for (no exchange process is started); the
rings are created on an instance of the test's own.

Disagreements found (in ``..._processes2.py``), all fixed on the README side since:

- router: "A gateway's ring is committed once its replies are out", but
  ``RingCommits._commit_answered`` commits a ring whose replies still wait once half the
  restart's look-back (``ring.capacity x (gateways + 1) / 2`` commands) was journaled since
  they began to wait ("committed regardless": a crash then loses those replies);
- dbwriter: "writes accounts, users, ... with binary COPY, exactly once (the checkpoint
  commits with the rows ...)", but the users are mirrored from ``users.json`` by
  ``UserSync.sync``, row by row ``INSERT .. ON CONFLICT`` in a transaction of their own, not
  by COPY and not with the checkpoint;
- dbwriter: the tables it lists leave out ``transfers``, which ``PgStore._write_rest``
  writes with binary COPY and the checkpoint like the others.
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from config.edges import GatewayConfig, MarketDataConfig, RestConfig
from config.schema import (
    DatabaseConfig,
    MatcherConfig,
    ReplicationConfig,
    RingexConfig,
    SupervisorConfig,
)
from procs import cli
from procs.admin import client as admin_client
from procs.common import stopping, topology
from procs.common.run_files import read_status, status_path
from procs.common.types import Side
from procs.core.recovery import fresh
from procs.matcher.main import MatcherShell
from procs.supervisor import exit_reason, held, listening
from procs.supervisor import main as supervisor_main
from procs.supervisor.main import SUPERVISOR_LOG_FORMAT, Supervisor, SupervisorError
from procs.supervisor.plan import MATCHER_MODULE, plan
from shm.inspect import list_segments
from shm.liveness import process_start
from tests.readme_text import ROOT, claim, section
from tests.unit.router.test_router import Exchange, fund, order
from tests.unit.router.test_router import config as router_config
from tests.unit.signals_rig import STOPS, as_a_terminal_starts
from tests.unit.supervisor.test_supervisor import write_profile

PROCESSES = section("The processes")

# -- an instance of every kind of process ------------------------------------------------------


PROCESS_NAMES: tuple[str, ...] = ("matcher-m1", "matcher-m2", "router", "gateway-gw1")
PROCESS_NAMES += ("marketdata", "dbwriter", "replica")  # ``full_config``'s, as cores names them


def full_config(instance: str = "r109", var: Path | str = "var", **changes: Any) -> RingexConfig:
    """Two matchers, a gateway with a REST port, market data, the writer, a replication
    source, every process pinned to a CPU of its own."""
    cfg = RingexConfig(
        instance=instance,
        var_dir=str(var),
        matchers=[
            MatcherConfig(name="m1", symbols=["BTC-USD"]),
            MatcherConfig(name="m2", symbols=["ETH-USD"]),
        ],
        gateways=[GatewayConfig(name="gw1", id=1, port=9871, rest=RestConfig(port=9872))],
        marketdata=MarketDataConfig(enabled=True, port=9873),
        database=DatabaseConfig(enabled=True),
        replication=ReplicationConfig(listen_port=9874),
        supervisor=SupervisorConfig(cores={name: [0] for name in PROCESS_NAMES}),
    )
    return msgspec.structs.replace(cfg, **changes)


@pytest.fixture
def sup(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Supervisor:
    """A supervisor of ``full_config`` whose processes are never started (tests stand in).
    Its profile is a small one, not ``full_config``: a restart's look for a profile edited
    to other rings or processes (``layout_differs_now``) is stood in for too."""
    monkeypatch.setattr(supervisor_main, "layout_differs_now", lambda profile, cfg: "")
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    return Supervisor(full_config(instance, tmp_path / "var"), str(profile))


def names(specs: list[Any]) -> list[str]:
    return [s.name for s in specs]


# -- the table's modules ---------------------------------------------------------------------


def test_each_rows_module_is_a_package_with_a_main() -> None:
    """README "## The processes": the module column, ``procs/supervisor``, ``procs/matcher``,
    ``procs/router``, ``procs/replica``, ``procs/dbwriter``; each is a package with the
    ``main.py`` the supervisor's plan runs (``python -m procs.<kind>.main``)."""
    for row, module in (
        ("| supervisor | `procs/supervisor` |", "supervisor"),
        ("| matcher | `procs/matcher` |", "matcher"),
        ("| router | `procs/router` |", "router"),
        ("| replica-source / standby | `procs/replica` |", "replica"),
        ("| dbwriter | `procs/dbwriter` |", "dbwriter"),
    ):
        claim(row, PROCESSES, where="README's processes table")
        assert (ROOT / "procs" / module / "__init__.py").is_file()
        assert (ROOT / "procs" / module / "main.py").is_file()
    modules = {s.module for s in plan(full_config())}
    assert modules >= {
        "procs.matcher.main",
        "procs.router.main",
        "procs.replica.main",
        "procs.dbwriter.main",
    }
    assert MATCHER_MODULE == "procs.matcher.main"


def test_the_config_keys_the_rows_name_exist_with_their_kind() -> None:
    """The rows name ``supervisor.cores``, ``restart_limit``, ``restart_window_s``,
    ``replication.listen_port``, ``replication.primary``, ``database.dsn`` and
    ``trade_lanes``: each is a field of the schema (``config/schema.py``), and off by
    default where the row says "with" (no replication, the embedded database)."""
    for quote in (
        "pinned to `supervisor.cores`",
        "more than `restart_limit` times within `restart_window_s`",
        "with `replication.listen_port`, the primary's source",
        "on an instance with `replication.primary`, the standby process alone",
        "over `trade_lanes` connections side by side",
        "with no `database.dsn` it runs a private socket-only cluster",
    ):
        claim(quote, PROCESSES)
    cfg = RingexConfig()
    assert cfg.supervisor.cores == {}
    assert isinstance(cfg.supervisor.restart_limit, int)
    assert isinstance(cfg.supervisor.restart_window_s, float)
    assert cfg.replication.listen_port == 0 and cfg.replication.primary == ""
    assert cfg.database.dsn == "" and isinstance(cfg.database.trade_lanes, int)


# -- supervisor: start --------------------------------------------------------------------------


def test_supervisor_creates_every_ring_of_the_topology(sup: Supervisor) -> None:
    """README: the supervisor "creates every ring of `topology.rings(cfg)`".
    ``Supervisor.create_rings`` makes exactly those segments (on this test's instance)."""
    claim("creates every ring of `topology.rings(cfg)`", PROCESSES)
    sup.create_rings()
    try:
        wanted = {spec.name for spec in topology.rings(sup.cfg)}
        assert set(sup._rings) == wanted
        assert {s.name for s in list_segments(sup.cfg.instance)} == wanted
    finally:
        for ring in sup._rings.values():
            ring.unlink()
            ring.close()


def test_each_process_is_pinned_to_its_supervisor_cores() -> None:
    """README: "starts the processes below pinned to `supervisor.cores`". ``plan`` gives
    each process the CPUs its ``supervisor.cores`` name lists (the replication source's key
    is ``replica``), and none to one not listed."""
    claim("starts the processes below pinned to `supervisor.cores`", PROCESSES)
    cfg = full_config(supervisor=SupervisorConfig(cores={"router": [1], "replica": [0, 1]}))
    cpus = {s.name: s.cpus for s in plan(cfg)}
    assert cpus["router"] == (1,) and cpus["replica-source"] == (0, 1)
    assert cpus["matcher-m1"] == () and cpus["dbwriter"] == ()


def test_processes_start_held_after_their_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: "all at once but held after their imports". ``held.main`` imports the
    process's module, then runs its ``main`` only on the supervisor's word (``GO``); end of
    file instead exits 0 and runs nothing."""
    claim("all at once but held after their imports", PROCESSES)
    monkeypatch.delenv(held.GRACE_ENV, raising=False)
    ran: list[list[str]] = []
    monkeypatch.setitem(sys.modules, "r109_probe", SimpleNamespace(main=ran.append))
    for word, runs in ((b"", False), (held.GO, True)):
        monkeypatch.setattr(sys, "argv", ["held", "r109_probe", "x"])
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(word)))
        assert held.main() == 0
        assert bool(ran) is runs
    assert ran == [["x"]]


def test_matchers_are_released_first_then_the_rest_together(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: "releases the matchers first, then the rest together, waits for each".
    ``Supervisor.start``: every matcher released, each waited on; then every other process
    released at once, then each waited on."""
    claim("and releases the matchers first, then the rest together, waits for each", PROCESSES)
    steps: list[tuple[str, str]] = []
    monkeypatch.setattr(sup, "prestart", lambda: None)
    monkeypatch.setattr(sup, "_release", lambda c: steps.append(("release", c.spec.name)))
    monkeypatch.setattr(sup, "_wait_ready", lambda c: steps.append(("ready", c.spec.name)))
    sup.start()
    books = ["matcher-m1", "matcher-m2"]
    rest = [n for n in names([c.spec for c in sup.children]) if n not in books]
    assert steps == (
        [("release", n) for n in books]
        + [("ready", n) for n in books]
        + [("release", n) for n in rest]
        + [("ready", n) for n in rest]
    )
    assert sup.state == "running"


def test_ready_is_its_ring_attached_and_its_ports_listening_read_from_proc() -> None:
    """README: "waits for each to attach its rings and to listen on its client ports (read
    from /proc ...)". ``plan``: each ring reader's ready ring and consumer line, a gateway's
    FIX and REST ports and market data's port as ``ready_ports``; ``missing_listeners``
    reads ``/proc/net/tcp*`` and the process's descriptors: a port this test listens on is
    not missing, one it does not is."""
    claim("waits for each to attach its rings and to listen on its client ports (read from "
          "/proc, so `run --detach` and a promotion answer only once clients can connect)",
          PROCESSES)  # fmt: skip
    specs = {s.name: s for s in plan(full_config())}
    assert (specs["matcher-m1"].ready_ring, specs["matcher-m1"].ready_consumer) == (
        "m1-in",
        "matcher",
    )
    assert (specs["router"].ready_ring, specs["router"].ready_consumer) == ("gw0-cmd", "router")
    assert (specs["gateway-gw1"].ready_ring, specs["gateway-gw1"].ready_ports) == (
        "gw1-rep",
        (9871, 9872),
    )
    assert specs["marketdata"].ready_ports == (9873,)
    assert listening._TABLES == ("/proc/net/tcp", "/proc/net/tcp6")
    with socket.socket() as server, socket.socket() as idle:
        server.bind(("127.0.0.1", 0))
        server.listen()
        idle.bind(("127.0.0.1", 0))  # bound, not listening
        port, other = server.getsockname()[1], idle.getsockname()[1]
        assert listening.missing_listeners(os.getpid(), (port, other)) == [other]


# -- supervisor: restarts -----------------------------------------------------------------------


def _stand_in_starts(sup: Supervisor, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A restart's start, stood in for: no process is spawned; returns what was spawned."""
    spawned: list[str] = []

    def spawn(child: Any) -> None:
        spawned.append(child.spec.name)
        child.process = SimpleNamespace(pid=os.getpid(), poll=lambda: None, returncode=None)

    monkeypatch.setattr(sup, "_spawn", spawn)
    monkeypatch.setattr(sup, "_release", lambda child: None)
    monkeypatch.setattr(sup, "_wait_ready", lambda child, meanwhile=None: None)
    return spawned


def test_one_that_dies_is_restarted(sup: Supervisor, monkeypatch: pytest.MonkeyPatch) -> None:
    """README: the supervisor "restarts one that dies (it recovers by itself)".
    ``Supervisor._restart`` starts it again and counts the restart (a restart's start is the
    start: each process recovers in its own constructor)."""
    claim("restarts one that dies (it recovers by itself)", PROCESSES)
    spawned = _stand_in_starts(sup, monkeypatch)
    child = sup.children[0]
    sup._restart(child, -9)
    assert spawned == [child.spec.name] and child.restarts_total == 1


def test_more_than_restart_limit_within_the_window_stops_the_instance(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: "stops the instance when one has to be restarted more than `restart_limit`
    times within `restart_window_s`". ``_restart``: with ``restart_limit`` restarts in the
    window already, the next exit raises ``SupervisorError`` (the run stops with it); the
    same restarts older than the window do not count."""
    claim("stops the instance when one has to be restarted more than `restart_limit` times "
          "within `restart_window_s`", PROCESSES)  # fmt: skip
    spawned = _stand_in_starts(sup, monkeypatch)
    limit = sup.cfg.supervisor.restart_limit
    window = sup.cfg.supervisor.restart_window_s
    child = sup.children[0]
    child.restarts = [time.monotonic() - window - 1] * limit  # out of the window
    sup._restart(child, 1)
    assert spawned == [child.spec.name]
    child.restarts = [time.monotonic()] * limit
    with pytest.raises(SupervisorError, match=f"more than restart_limit={limit}: stopping"):
        sup._restart(child, 1)
    assert spawned == [child.spec.name]  # not started again


def test_a_restart_that_cannot_start_it_stops_the_instance(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: "or when a restart cannot start it (a fork refused, EAGAIN under a pids
    limit; a `supervisor.cores` CPU taken from the host since the start)". ``_restart``: a
    spawn's ``OSError`` (EAGAIN) and ``cpus_missing`` (a CPU this process may no longer run
    on) each raise ``SupervisorError`` naming the process "not restarted"."""
    claim("or when a restart cannot start it (a fork refused, EAGAIN under a pids limit; a "
          "`supervisor.cores` CPU taken from the host since the start)", PROCESSES)  # fmt: skip
    child = sup.children[0]

    def refused(child: Any) -> None:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(sup, "_spawn", refused)
    with pytest.raises(SupervisorError, match=f"{child.spec.name} not restarted: .*temporarily"):
        sup._restart(child, -9)
    gone = max(os.sched_getaffinity(0)) + 1
    child.spec = replace(child.spec, cpus=(gone,))
    with pytest.raises(SupervisorError, match=rf"not restarted: supervisor.cores.*\[{gone}\]"):
        sup._restart(child, -9)


def test_why_it_stopped_is_named_in_its_status(sup: Supervisor) -> None:
    """README: "... naming why in its status". ``write_status`` writes the supervisor's
    ``reason`` (set from the ``SupervisorError`` that stopped it) into ``status.json``."""
    claim("naming why in its status", PROCESSES)
    sup.state, sup.reason = "stopped", "router exited 6 times within 60 s"
    sup.write_status()
    status = read_status(sup.cfg)
    assert status is not None and status["reason"] == sup.reason
    assert status["state"] == "stopped"


# -- supervisor: stop ---------------------------------------------------------------------------


def test_sigint_sigterm_and_sighup_ask_for_the_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: "on SIGINT/SIGTERM/SIGHUP (a foreground `ringex run` whose terminal closed)
    stops ...". ``stop_on_signals`` (what the supervisor's ``main`` installs) takes all three:
    a SIGHUP asks for the stop, it does not end the process."""
    claim("on SIGINT/SIGTERM/SIGHUP (a foreground `ringex run` whose terminal closed)", PROCESSES)
    assert vars(supervisor_main)["stop_on_signals"] is stopping.stop_on_signals
    with as_a_terminal_starts():
        asked = stopping.stop_on_signals()
        handlers = {signal.getsignal(s) for s in STOPS}
        assert len(handlers) == 1 and handlers != {signal.SIG_DFL}
        assert not asked()
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0.01)
        assert asked()


def test_a_stop_stops_intake_drains_stops_the_rest_and_unlinks(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: a stop "stops intake, drains the rings, stops the rest, unlinks the
    segments". ``Supervisor.stop``: the gateways (``intake``) first, the drain, the others in
    reverse start order, the writer last (``stop_last``: it follows the journal), then the
    instance's segments removed."""
    claim("stops intake, drains the rings, stops the rest, unlinks the segments", PROCESSES)
    sup.create_rings()
    assert list_segments(sup.cfg.instance)
    steps: list[Any] = []
    monkeypatch.setattr(
        sup, "_terminate", lambda group: steps.append(names([c.spec for c in group]))
    )
    monkeypatch.setattr(sup, "_drain", lambda: steps.append("drain"))
    monkeypatch.setattr(sup, "_stop_embedded_database", lambda: None)
    sup.stop()
    assert steps == [
        ["gateway-gw1"],
        "drain",
        ["marketdata", "replica-source", "router", "matcher-m2", "matcher-m1"],
        ["dbwriter"],
    ]
    assert list_segments(sup.cfg.instance) == [] and sup.state == "stopped"


def test_a_status_it_cannot_write_is_logged_once_and_the_run_goes_on(
    sup: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    """README: "a `status.json` it cannot write (var/ full) is logged once and the instance
    runs and stops all the same". ``write_status``: an ``OSError`` is logged once until a
    write works, never raised."""
    claim("a `status.json` it cannot write (var/ full) is logged once and the instance runs "
          "and stops all the same", PROCESSES)  # fmt: skip
    blocker = status_path(sup.cfg).with_suffix(".tmp")
    blocker.mkdir(parents=True)  # the temporary file cannot be written: an OSError, as root too
    with caplog.at_level(logging.ERROR, logger="ringex.supervisor"):
        sup.write_status()
        sup.write_status()
        sup.write_status()
    said = [r for r in caplog.records if "not written" in r.getMessage()]
    assert len(said) == 1
    blocker.rmdir()
    sup.write_status()
    assert read_status(sup.cfg) is not None and not sup._status_failing


def _stop_args(profile: Path, timeout: float | None) -> argparse.Namespace:
    return argparse.Namespace(config=str(profile), profile=None, timeout=timeout)


def test_ringex_stop_of_a_supervisor_that_ends_meanwhile_says_stopped(
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README: "`ringex stop` of a supervisor that ends meanwhile says stopped". ``cli._stop``:
    its SIGTERM finding the supervisor gone (``ProcessLookupError``) prints "stopped", 0."""
    claim("`ringex stop` of a supervisor that ends meanwhile says stopped", PROCESSES)
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    ended = subprocess.Popen(["true"])
    ended.wait()  # reaped: its pid names no process
    monkeypatch.setattr(cli, "supervisor_running", lambda status: ended.pid)
    assert cli._stop(_stop_args(profile, 1.0)) == 0
    assert capsys.readouterr().out.strip() == f"instance {instance} stopped"


def test_ringex_stop_of_one_killed_waits_for_its_processes_and_names_them(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: "and of one killed outright waits for its processes still stopping (each ends
    itself within the 20 s grace), naming them if they outlast its `--timeout`".
    ``cli._still_stopping`` finds them by the status's pid and start time, ``_wait_orphans``
    waits up to the timeout and names those left; ``Supervisor.STOP_GRACE_S`` is 20 and is
    handed to each process (``held.GRACE_ENV``), which kills itself past it once orphaned."""
    claim("and of one killed outright waits for its processes still stopping (each ends itself "
          "within the 20 s grace), naming them if they outlast its `--timeout`",
          PROCESSES)  # fmt: skip
    assert Supervisor.STOP_GRACE_S == 20.0 and held.GRACE_ENV == "RINGEX_STOP_GRACE_S"
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    killed = subprocess.Popen(["true"])
    killed.wait()
    me = os.getpid()  # "still stopping": this test's own process
    status = {
        "state": "running",
        "supervisor_pid": killed.pid,
        "supervisor_started": 1,
        "processes": [{"name": "router", "pid": me, "started": process_start(me)}],
    }
    cfg = full_config(instance, tmp_path / "var")
    status_path(cfg).parent.mkdir(parents=True, exist_ok=True)
    status_path(cfg).write_text(json.dumps(status))
    began = time.monotonic()
    assert cli._stop(_stop_args(profile, 0.3)) == 1
    assert time.monotonic() - began >= 0.3
    said = capsys.readouterr().err
    assert f"pids {me} are still stopping after 0.3 s" in said and "within 20 s" in said


def test_each_supervisor_line_names_its_pid_and_a_refused_start_says_its_own_reason(
    tmp_path: Path,
) -> None:
    """README: "each line the supervisor logs names its pid, so of two `run --detach` at once
    the one refused says its own reason". ``SUPERVISOR_LOG_FORMAT`` puts ``[pid]`` after the
    logger's name; ``exit_reason.start_failure`` takes the last line of the pid it started, not the
    other start's."""
    claim("each line the supervisor logs names its pid, so of two `run --detach` at once the "
          "one refused says its own reason", PROCESSES)  # fmt: skip
    assert "[%(process)d]" in SUPERVISOR_LOG_FORMAT
    formatter = logging.Formatter(SUPERVISOR_LOG_FORMAT)

    def line(pid: int, message: str) -> str:
        record = logging.LogRecord("ringex.supervisor", logging.INFO, "", 0, message, None, None)
        record.process = pid
        return formatter.format(record)

    log = tmp_path / "supervisor.log"
    log.write_text(
        "\n".join(
            [
                line(111, "started router (pid 5)"),
                line(222, "instance 'x' is running: stop it first (ringex stop)"),
                line(111, "instance x running: 2 processes"),
            ]
        )
        + "\n"
    )
    assert "[222]" in log.read_text()
    assert (
        exit_reason.start_failure(None, 222, log, 0)
        == "instance 'x' is running: stop it first (ringex stop)"
    )
    assert exit_reason.start_failure(None, 111, log, 0) == "instance x running: 2 processes"


# -- replica-source / standby: what the supervisor runs (the rest in ..._processes2.py) ---


def test_a_listen_port_runs_the_replication_source_beside_the_rest() -> None:
    """README: "with `replication.listen_port`, the primary's source". ``plan``: a
    ``replica-source`` process (``procs.replica.main source``) with the others, none without
    the port."""
    claim("with `replication.listen_port`, the primary's source", PROCESSES)
    specs = {s.name: s for s in plan(full_config())}
    assert specs["replica-source"].module == "procs.replica.main"
    assert specs["replica-source"].args == ("source",) and "router" in specs
    bare = full_config(replication=ReplicationConfig())
    assert "replica-source" not in {s.name for s in plan(bare)}


def test_a_standby_instance_runs_the_standby_process_alone() -> None:
    """README: "on an instance with `replication.primary`, the standby process alone".
    ``plan``: one process, ``standby`` (``procs.replica.main standby``)."""
    claim("on an instance with `replication.primary`, the standby process alone", PROCESSES)
    cfg = full_config(replication=ReplicationConfig(primary="127.0.0.1:9900"))
    [only] = plan(cfg)
    assert (only.name, only.module, only.args) == ("standby", "procs.replica.main", ("standby",))


# -- the rings ----------------------------------------------------------------------------------


def test_the_rings_named_and_who_writes_and_reads_each() -> None:
    """README, under the table: "Rings (`procs/common/topology.py`): `gw<N>-cmd` gateway ->
    router, `gw<N>-rep` router -> gateway, `<matcher>-in` router -> matcher, `<matcher>-out`
    matcher -> router, gateways, market data". ``topology.rings``: exactly these, each with
    that writer and those readers."""
    claim("Rings (`procs/common/topology.py`): `gw<N>-cmd` gateway -> router, `gw<N>-rep` "
          "router -> gateway, `<matcher>-in` router -> matcher, `<matcher>-out` matcher -> "
          "router, gateways, market data.", PROCESSES)  # fmt: skip
    assert (ROOT / "procs" / "common" / "topology.py").is_file()
    cfg = full_config(
        gateways=[GatewayConfig(name="gw1", id=1), GatewayConfig(name="gw2", id=2, port=9879)]
    )
    specs = {s.name: (s.writer, s.consumers) for s in topology.rings(cfg)}
    for g in (0, 1, 2):
        assert specs[f"gw{g}-cmd"] == (f"gateway {g}", ("router",))
        assert specs[f"gw{g}-rep"] == ("router", (f"gw{g}",))
    for m in ("m1", "m2"):
        assert specs[f"{m}-in"] == ("router", ("matcher",))
        assert specs[f"{m}-out"] == (f"matcher {m}", ("router", "gw1", "gw2", "marketdata"))
    assert len(specs) == 3 * 2 + 2 * 2  # nothing else: the writer follows the journal


def test_gateway_0_is_ringex_admin() -> None:
    """README: "Gateway 0 is `ringex admin`". ``topology.ADMIN_GATEWAY`` is 0, its rings
    ``gw0-cmd`` and ``gw0-rep`` exist with no gateway configured, and the admin client
    (``procs/admin/client.py``) sends and reads on them as gateway 0."""
    claim("Gateway 0 is `ringex admin`.", PROCESSES)
    assert topology.ADMIN_GATEWAY == 0
    assert vars(admin_client)["ADMIN_GATEWAY"] is topology.ADMIN_GATEWAY
    bare = RingexConfig(gateways=[], marketdata=MarketDataConfig(enabled=False))
    assert {s.name for s in topology.rings(bare)} == {"gw0-cmd", "gw0-rep", "m1-in", "m1-out"}


# -- matcher --------------------------------------------------------------------------------------


def test_a_matcher_holds_the_books_of_its_symbols() -> None:
    """README: matcher "the books of its symbols". ``recovery.fresh`` (as every matcher is
    built: ``symbol_specs(cfg, name)``) gives each matcher a book for each of its configured
    symbols and no other."""
    claim("| matcher | `procs/matcher` | the books of its symbols;", PROCESSES)
    cfg = full_config()
    _sequencer, matchers = fresh(cfg)
    ids = {s.name: s.id for s in cfg.symbols}
    for m in cfg.matchers:
        assert set(matchers[m.name].books) == {ids[s] for s in m.symbols}


def test_a_matcher_recovers_from_its_snapshot_and_the_journal(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """README: matcher "snapshot + journal recovery". A ``MatcherShell`` started again (on
    the rings and journal a running router left) restores its newest snapshot and replays the
    journal after it: an order placed before the snapshot and one after both rest again."""
    claim("the books of its symbols; snapshot + journal recovery", PROCESSES)
    ex = Exchange(router_config(instance, tmp_path))
    try:
        fund(ex, 7, usd=10**9, btc=0)
        ex.send(1, order(1, 7, Side.BUY, 1000, 1))
        ex.matcher.save_snapshot()
        ex.send(1, order(2, 7, Side.BUY, 1001, 1))
        ex.matcher.close()
        with caplog.at_level(logging.INFO, logger="ringex.matcher"):
            ex.matcher = MatcherShell(ex.cfg, "m1")
        assert "restored the snapshot of seq" in caplog.text
        book = ex.matcher.matcher.books[1]
        assert sorted(o.price for o in book.orders.values()) == [1000, 1001]
    finally:
        ex.stop()
