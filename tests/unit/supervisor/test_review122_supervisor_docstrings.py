"""Review 122: the supervisor's docstrings (module, class, function docstrings, ``#:``
comments) held to its code. Here ``main.py`` (start, readiness, restarts and their limit, what
stops the instance, the stop order and drain, status.json, ``run``'s go/begin) and ``child``;
``plan``, ``preflight``, ``held``, ``held_promotion``, ``promotion``, ``listening``,
``draining``, ``stuck_watch``, ``metrics``, ``carried``, ``session_clock``, ``session_end``
and ``journaled_ends`` are in ``..._docstrings2.py``.

Convention (reviews 101, 109): each "quote" in a test's docstring is found verbatim in the
docstring or comment it checks (``claims``, whitespace folded): a reworded claim fails. A
claim found right is a plain test, a disagreement a strict xfail asserting the docstring.
No exchange process starts: a ``Supervisor``'s starts are stood in for (``FakeProcess``,
review 109's ``_stand_in_starts``); rings are made on the test's own instance.

Disagreement found (in ``..._docstrings2.py``, fixed since in the code):
``draining.STOP_SLACK_S``, "The embedded database's stop and the rest of a stop, at most" 30 s,
while ``Supervisor._stop_embedded_database`` ran ``pg_ctl -w stop`` with no ``-t`` (pg_ctl
waits up to 60 s by default). Every other claim checked holds. Noted beside, and fixed: a
session-end record that cannot be written stopped the instance; plan.py's order left out the
replication source and the database writer.
"""

from __future__ import annotations

import inspect
import io
import os
import re
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

from config.schema import RingexConfig
from procs.common import topology
from procs.common.run_files import instance_lock, read_status, run_dir
from procs.supervisor import held, plan, preflight
from procs.supervisor import main as supervisor_main
from procs.supervisor.main import Child, StopAsked, Supervisor, SupervisorError
from procs.supervisor.plan import MATCHER_MODULE, ProcessSpec
from shm.inspect import list_segments
from shm.inspect import remove_instance as real_remove
from tests.readme_text import folded
from tests.unit.supervisor.test_supervisor import write_profile
from tests.unit.test_review109_readme_processes import _stand_in_starts, full_config


def _text(where: object) -> str:
    """``where``'s docstring and source (its ``#:`` and ``#`` comments' marks cut), folded."""
    source = inspect.getsource(where)  # type: ignore[arg-type]
    comments = "\n".join(re.sub(r"^\s*#:?", "", line) for line in source.splitlines())
    return folded(inspect.getdoc(where) or "") + " " + folded(comments)


def claims(*where: object) -> None:
    """Each "quote" of the calling test's docstring (cut at its "..." elisions) is said, word
    for word with whitespace folded, by one of ``where`` (module, class or function)."""
    frame = inspect.stack()[1]
    doc = frame.frame.f_globals[frame.function].__doc__ or ""
    text = " ".join(_text(w) for w in where)
    quotes = re.findall(r'"([^"]{12,})"', folded(doc))
    assert quotes, f"{frame.function} quotes no claim"
    for quote in quotes:
        for part in (p.strip(" .,;:") for p in quote.split("...")):
            assert not part or part in text, f"no longer said: {part!r}"


class FakeProcess:
    """A started process, stood in for: ``exits`` is its exit code at once (None: it runs);
    ``deaf`` ignores SIGTERM (its ``wait`` times out)."""

    def __init__(self, exits: int | None = None, *, deaf: bool = False) -> None:
        self.pid, self.returncode, self.stdin, self.deaf = os.getpid(), exits, io.BytesIO(), deaf
        self.signals: list[str] = []
        self.waits: list[float | None] = []

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        self.signals.append("TERM")
        if not self.deaf:
            self.returncode = -15

    def kill(self) -> None:
        self.signals.append("KILL")
        self.returncode = -9

    def wait(self, timeout: float | None = None) -> int | None:
        self.waits.append(timeout)
        if self.returncode is None and timeout is not None:
            time.sleep(timeout)
            raise subprocess.TimeoutExpired("fake", timeout)
        if self.returncode is None:
            self.returncode = 0  # end of file: a held one exits
        return self.returncode


def tuned(cfg: RingexConfig, **settings: Any) -> RingexConfig:
    return msgspec.structs.replace(
        cfg, supervisor=msgspec.structs.replace(cfg.supervisor, **settings)
    )


@pytest.fixture
def sup(instance: str, tmp_path: Path) -> Supervisor:
    """A supervisor of review 109's ``full_config`` (every kind of process), never started."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    cfg = full_config(instance, tmp_path / "var")
    return Supervisor(tuned(cfg, metrics=False, cores={}), str(profile))


# -- main.py: start --------------------------------------------------------------------------


def test_every_process_starts_at_once_held_pinned_and_logging_to_its_file(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main.py: "every process of ``plan(cfg)`` is started at once, pinned to its CPUs, and
    held after its imports" and "each process logs to ``var/<instance>/run/<name>.log``".
    ``prestart``/``_spawn``: one Popen per spec of ``plan``, through ``held``, with a pinning
    ``preexec_fn``, stdin a pipe (the word), the stop grace in its environment."""
    claims(supervisor_main)
    started: list[tuple[list[str], dict[str, Any]]] = []

    def popen(argv: list[str], **kwargs: Any) -> FakeProcess:
        started.append((argv, {**kwargs, "log": kwargs["stdout"].name}))
        return FakeProcess()

    monkeypatch.setattr(subprocess, "Popen", popen)
    sup.prestart()
    specs = plan.plan(sup.cfg)
    assert [argv[3] for argv, _ in started] == [s.module for s in specs]
    for (argv, kwargs), spec in zip(started, specs, strict=True):
        assert argv[:3] == [sys.executable, "-m", "procs.supervisor.held"]
        assert argv[4:] == ["--profile", sup.profile, *spec.args]
        assert kwargs["stdin"] is subprocess.PIPE and callable(kwargs["preexec_fn"])
        assert kwargs["env"][held.GRACE_ENV] == str(Supervisor.STOP_GRACE_S)
        assert kwargs["log"] == str(Path(sup.cfg.var_dir) / sup.cfg.instance / "run" /
                                    f"{spec.name}.log")  # fmt: skip
    assert all(c.held and not c.ready and c.started_at == 0.0 for c in sup.children)


def test_a_start_refuses_a_running_instance_then_clears_a_dead_ones_then_makes_its_rings(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main.py: "refuse if the instance's segments have live processes (it is running);
    remove what a dead one left; create every ring of ``topology.rings(cfg)``".
    ``create_rings``: the refusal, then ``remove_instance``, then the rings; a second start
    of the same instance (this process holds its segments) is refused naming it."""
    claims(supervisor_main)
    steps: list[str] = []
    monkeypatch.setattr(sup, "refuse_running", lambda: steps.append("refuse"))

    def remove(instance: str) -> None:
        steps.append("remove")
        real_remove(instance)

    monkeypatch.setattr(supervisor_main, "remove_instance", remove)
    sup.create_rings()
    try:
        assert steps == ["refuse", "remove"]
        assert set(sup._rings) == {r.name for r in topology.rings(sup.cfg)}
        other = Supervisor(sup.cfg, sup.profile)
        with pytest.raises(SupervisorError, match=r"is running: .*stop it first"):
            other.refuse_running()
    finally:
        for ring in sup._rings.values():
            ring.close()
        real_remove(sup.cfg.instance)


def test_the_matchers_are_released_then_the_rest_and_meanwhile_runs_after_the_last_release(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Supervisor.start``: "Release in two waves, each at once and then waited on in order:
    the matchers ..., then everything else" and "``meanwhile`` runs once the last wave is
    released, while it starts"; then the state is "running" and written."""
    claims(Supervisor.start)
    steps: list[tuple[str, str]] = []
    monkeypatch.setattr(sup, "prestart", lambda: None)
    monkeypatch.setattr(sup, "_release", lambda c: steps.append(("release", c.spec.name)))
    monkeypatch.setattr(sup, "_wait_ready", lambda c: steps.append(("ready", c.spec.name)))
    sup.start(meanwhile=lambda: steps.append(("meanwhile", "")))
    books = [c.spec.name for c in sup.children if c.spec.module == MATCHER_MODULE]
    rest = [n for n in [c.spec.name for c in sup.children] if n not in books]
    assert steps == [
        *(("release", n) for n in books),
        *(("ready", n) for n in books),
        *(("release", n) for n in rest),
        ("meanwhile", ""),
        *(("ready", n) for n in rest),
    ]
    assert sup.state == "running" and (read_status(sup.cfg) or {})["state"] == "running"


def test_ready_is_the_ready_ring_held_and_every_ready_port_listening(sup: Supervisor) -> None:
    """``_wait_ready``: "Until ``child`` is ready: it holds its ready ring and listens on its
    ports" and "``meanwhile`` runs every tick"; ``StopAsked``: "A stop came while processes
    were starting or recovering: stop now, not once ready"; an exit while starting an error."""
    claims(Supervisor._wait_ready, StopAsked)
    sup.cfg = tuned(sup.cfg, ready_timeout_s=0.2)
    ticks: list[int] = []
    with socket.socket() as server, socket.socket() as idle:
        server.bind(("127.0.0.1", 0))
        server.listen()
        idle.bind(("127.0.0.1", 0))
        port, silent = server.getsockname()[1], idle.getsockname()[1]
        child = Child(ProcessSpec("gw", "m", (), (), "", "", ready_ports=(port,)))
        child.process = FakeProcess()  # type: ignore[assignment]
        sup._wait_ready(child, lambda: ticks.append(1))
        assert child.ready and ticks
        deaf = Child(ProcessSpec("gw2", "m", (), (), "", "", ready_ports=(port, silent)))
        deaf.process = FakeProcess()  # type: ignore[assignment]
        with pytest.raises(SupervisorError, match=rf"did not listen on port\(s\) \[{silent}\]"):
            sup._wait_ready(deaf)
        assert not deaf.ready
    sup.stop_asked = lambda: True  # "Looked at while a process starts (``_wait_ready``)"
    with pytest.raises(StopAsked, match="stop asked while gw2 starts"):
        sup._wait_ready(deaf)
    sup.stop_asked = lambda: False
    deaf.process = FakeProcess(exits=3)  # type: ignore[assignment]
    with pytest.raises(SupervisorError, match="gw2 exited with 3 while starting"):
        sup._wait_ready(deaf)


def test_prestart_starts_again_a_held_one_that_died_and_names_a_refused_fork(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``prestart``: "one held that died meanwhile ... is started again. A fork refused is a
    ``SupervisorError`` naming it"; ``discard_held``: "Let go of processes never released: end
    of file, and they exit without running" (a released one stays)."""
    claims(Supervisor.prestart, Supervisor.discard_held)
    spawned = _stand_in_starts(sup, monkeypatch)
    for c in sup.children:
        c.process = FakeProcess()  # type: ignore[assignment]
    dead = sup.children[2]
    dead.process = FakeProcess(exits=-9)  # type: ignore[assignment]
    sup.prestart()
    assert spawned == [dead.spec.name]

    def refused(child: Child) -> None:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(sup, "_spawn", refused)
    sup.children[0].process = None
    with pytest.raises(SupervisorError, match=f"{sup.children[0].spec.name} not started: "):
        sup.prestart()
    sup.children[1].held = True
    stdin = sup.children[1].process.stdin  # type: ignore[union-attr]
    sup.discard_held()
    assert (
        stdin is not None
        and stdin.closed
        and sup.children[1].process is None
        and not sup.children[1].held
    )
    assert sup.children[3].process is not None  # released: stays


def test_refusals_before_a_start_name_cores_and_units(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``refuse_cpus_missing``: "Refuse ``supervisor.cores`` naming a CPU this host does not
    let us run on" (``nice_refused``: part 2);
    ``refuse_other_units``: "Refuse a config whose units differ from its journal's"."""
    claims(Supervisor.refuse_cpus_missing, Supervisor.refuse_other_units)
    sup.refuse_cpus_missing()  # nothing pinned, nice 10 for the writer: fine
    gone = max(os.sched_getaffinity(0)) + 1
    sup.children[0].spec = replace(sup.children[0].spec, cpus=(gone,))
    with pytest.raises(SupervisorError, match=r"supervisor.cores\[.*\].*lacks"):
        sup.refuse_cpus_missing()
    monkeypatch.setattr(supervisor_main, "units_differ", lambda cfg: "units differ: x")
    with pytest.raises(SupervisorError, match="units differ: x"):
        sup.refuse_other_units()


# -- main.py: watch and restarts -------------------------------------------------------------


def test_watch_restarts_what_exits_until_stop_on_the_wakeup_fd(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``watch``: "Restart what exits, every 0.1 s, until ``stop()``. A signal ends the wait
    at once (``signal.set_wakeup_fd``...)". An exited child is restarted with its code, the
    wakeup fd is set while it watches and put back after, and a signal (SIGUSR1, as
    ``held_promotion`` installs it) ends the 0.1 s wait at once."""
    claims(Supervisor.watch)
    restarted: list[tuple[str, int]] = []

    def restart(child: Child, code: int) -> None:
        restarted.append((child.spec.name, code))
        child.process = None

    monkeypatch.setattr(sup, "_restart", restart)
    monkeypatch.setattr(sup, "_duties", lambda: None)
    sup.children[1].process = FakeProcess(exits=-9)  # type: ignore[assignment]
    calls: list[float] = []
    fds: list[int] = []

    def stop() -> bool:
        calls.append(time.monotonic())
        fd = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(fd)
        fds.append(fd)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGUSR1)
        return len(calls) > 2

    before = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    try:
        sup.watch(stop)
    finally:
        signal.signal(signal.SIGUSR1, before)
    assert restarted == [(sup.children[1].spec.name, -9)]
    assert fds[0] != -1 and signal.set_wakeup_fd(-1) == -1
    assert calls[1] - calls[0] > 0.08  # a tick
    assert calls[2] - calls[1] < 0.08, "the signal did not end the 0.1 s wait"


def test_duties_run_once_a_second_stuck_status_and_the_session_end(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_duties``: "Once a second ...: look for stuck processes, write the status ..., send a
    session end that is due"; ``session_ends``: "polled by ``watch``" (its duties)."""
    claims(Supervisor._duties, Supervisor)
    done: list[str] = []
    monkeypatch.setattr(sup, "_look_for_stuck", lambda: done.append("stuck"))
    monkeypatch.setattr(sup, "write_status", lambda: done.append("status"))
    sup.session_ends = SimpleNamespace(poll=lambda now: done.append("end"))  # type: ignore[assignment]
    sup._duties()
    sup._duties()
    assert done == ["stuck", "status", "end"]
    sup._duties_done -= 1.0
    sup._duties()
    assert done == ["stuck", "status", "end"] * 2


def test_a_restart_that_exits_again_backs_off_longer_until_the_limit_stops_the_instance(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_restart``: "One that exits again while starting is one more restart, tried again
    with a longer backoff, until more than ``restart_limit`` within ``restart_window_s`` stop
    the instance"; main.py: "More than ``restart_limit`` restarts of one process within
    ``restart_window_s`` stops the instance with the reason" (stand-in starts that exit at
    once); preflight.py: "units other than the journal's (``procs/common/units.py``), checked
    again before each restart"."""
    claims(Supervisor._restart, supervisor_main, preflight)
    sup.cfg = tuned(sup.cfg, restart_limit=3)
    monkeypatch.setattr(supervisor_main, "units_differ_now", lambda profile: "")
    monkeypatch.setattr(supervisor_main, "layout_differs_now", lambda profile, cfg: "")
    spawned: list[str] = []

    def spawn(child: Child) -> None:
        spawned.append(child.spec.name)
        child.process = FakeProcess(exits=1)  # type: ignore[assignment]

    naps: list[float] = []
    clock = SimpleNamespace(monotonic=time.monotonic, sleep=naps.append, time=time.time,
                            time_ns=time.time_ns)  # fmt: skip
    monkeypatch.setattr(supervisor_main, "time", clock)
    monkeypatch.setattr(sup, "_spawn", spawn)
    child = sup.children[0]
    with pytest.raises(SupervisorError) as stopped:
        sup._restart(child, -9)
    assert [n for n in naps if n >= 0.1] == [0.1, 0.2, 0.4]
    assert len(spawned) == 3 and child.restarts_total == 3
    assert "exited 4 times within 60 s (last code 1), more than restart_limit=3" in str(
        stopped.value
    )
    child.restarts, spawned[:] = [], []  # units other than the journal's: refused at once
    monkeypatch.setattr(supervisor_main, "units_differ_now", lambda profile: "other units")
    with pytest.raises(SupervisorError, match=f"{child.spec.name} not restarted: other units"):
        sup._restart(child, -9)
    assert spawned == []


# -- main.py: stop -----------------------------------------------------------------------------


def test_a_stop_stops_intake_drains_with_its_timeout_then_the_rest_reversed_writer_last(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main.py: "Stop (SIGINT, SIGTERM): stop intake (the gateways), wait until every ring is
    drained (``drain_timeout_s``...), stop the rest in reverse order ..., the database writer
    last ..., then unlink the segments"; ``stopping`` is written first, ``stopped`` last."""
    claims(supervisor_main)
    sup.create_rings()
    steps: list[Any] = []
    states: list[str] = []
    real_write = sup.write_status

    def write() -> None:
        states.append(sup.state)
        real_write()

    def drain(rings: Any, timeout_s: float) -> list[str]:
        steps.append(("drain", len(list(rings)), timeout_s))
        return []

    monkeypatch.setattr(sup, "write_status", write)
    monkeypatch.setattr(sup, "_terminate", lambda group: steps.append([c.spec.name for c in group]))
    monkeypatch.setattr(supervisor_main, "drain", drain)
    monkeypatch.setattr(sup, "_stop_embedded_database", lambda: steps.append("database"))
    sup.stop()
    rings = len(topology.rings(sup.cfg))
    assert steps == [
        ["gateway-gw1"],
        ("drain", rings, sup.cfg.supervisor.drain_timeout_s),
        ["marketdata", "replica-source", "router", "matcher-m2", "matcher-m1"],
        ["dbwriter"],
        "database",
    ]
    assert states == ["stopping", "stopped"] and list_segments(sup.cfg.instance) == []


def test_terminate_gives_a_group_one_grace_and_kills_who_ignores_sigterm(
    sup: Supervisor,
) -> None:
    """``STOP_GRACE_S``: "a process ignoring SIGTERM this long (all of a group) is killed";
    ``_terminate``: "SIGTERM the group, then one ``STOP_GRACE_S`` deadline for all of it (not
    each)". Two deaf processes: the second waits what is left of the first's grace (nothing),
    not a grace of its own; both are killed; an exited one is not signalled."""
    claims(Supervisor, Supervisor._terminate)
    sup.STOP_GRACE_S = 0.2
    deaf = [FakeProcess(deaf=True), FakeProcess(deaf=True)]
    done = FakeProcess(exits=0)
    group = [Child(c.spec, process=p) for c, p in zip(sup.children, [*deaf, done], strict=False)]  # type: ignore[arg-type]
    began = time.monotonic()
    sup._terminate(group)
    assert time.monotonic() - began < 0.4
    assert [p.signals for p in deaf] == [["TERM", "KILL"]] * 2 and done.signals == []
    first, second = deaf[0].waits[0], deaf[1].waits[0]
    assert first is not None and second is not None and first > 0.15 and second < 0.05


def test_the_private_database_goes_down_with_the_instance_an_external_one_does_not(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_stop_embedded_database``: "The instance's private PostgreSQL (no database.dsn) goes
    down with it"; with a dsn, or no database, nothing is stopped."""
    claims(Supervisor._stop_embedded_database)
    stopped: list[Path] = []

    class Cluster:
        def __init__(self, root: Path) -> None:
            self.root = root

        def running(self) -> bool:
            return True

        def stop(self, timeout_s: int = 60) -> None:
            stopped.append(self.root)

    monkeypatch.setattr(supervisor_main, "EmbeddedPostgres", Cluster)
    sup._stop_embedded_database()
    assert stopped == [topology.postgres_dir(sup.cfg)]
    for database in ({"dsn": "host=elsewhere"}, {"enabled": False}):
        sup.cfg = msgspec.structs.replace(
            sup.cfg, database=msgspec.structs.replace(sup.cfg.database, **database)
        )
        sup._stop_embedded_database()
    assert len(stopped) == 1


# -- main.py: status --------------------------------------------------------------------------


def test_status_json_says_pids_cpus_restarts_state_and_the_metrics_url(sup: Supervisor) -> None:
    """main.py: "``var/<instance>/run/status.json`` says what runs (pids, CPUs, restarts,
    state, the metrics URL)"; ``Child.uptime_s``: "0 held, down or gone"; ``process_samples``:
    "The process table for a metrics scrape", a held process's ``start_time_s`` 0."""
    claims(supervisor_main, Child.uptime_s, Supervisor.process_samples)
    sup.cfg = tuned(sup.cfg, cores={"router": [0]})
    sup.children = [Child(s) for s in plan.plan(sup.cfg)]
    router = next(c for c in sup.children if c.spec.name == "router")
    router.process, router.restarts_total = FakeProcess(), 2  # type: ignore[assignment]
    router.started_at, router.started_unix = time.monotonic() - 5, time.time() - 5
    sup.metrics = SimpleNamespace(url="http://127.0.0.1:9/metrics")  # type: ignore[assignment]
    sup.state = "running"
    sup.write_status()
    doc = read_status(sup.cfg)
    assert doc is not None and doc["state"] == "running" and doc["role"] == "primary"
    assert doc["metrics_url"] == "http://127.0.0.1:9/metrics"
    shown = {p["name"]: p for p in doc["processes"]}
    assert shown["router"]["pid"] == os.getpid() and shown["router"]["cpus"] == [0]
    assert shown["router"]["restarts"] == 2 and shown["router"]["alive"]
    assert shown["router"]["uptime_s"] >= 5
    assert shown["matcher-m1"]["pid"] is None and shown["matcher-m1"]["uptime_s"] == 0
    assert (run_dir(sup.cfg) / "status.json").is_file()
    samples = {s.name: s for s in sup.process_samples()}
    assert abs(samples["router"].start_time_s + 5 - time.time()) < 1
    assert samples["matcher-m1"].pid == 0 and not samples["matcher-m1"].up
    router.started_at = router.started_unix = 0.0  # held
    assert {s.name: s for s in sup.process_samples()}["router"].start_time_s == 0.0


# -- main.py: run ---------------------------------------------------------------------------------


def _run_stood_in(sup: Supervisor, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``run`` with its steps recorded: no process, no ring."""
    steps: list[str] = []
    for name in ("prestart", "create_rings", "watch", "stop"):
        monkeypatch.setattr(sup, name, lambda *a, _n=name: steps.append(_n))
    monkeypatch.setattr(sup, "discard_held", lambda: steps.append("discard"))
    monkeypatch.setattr(sup, "write_status", lambda: steps.append(f"status {sup.state}"))

    def start(meanwhile: Any = None) -> None:
        sup.state = "running"
        steps.append("start")

    monkeypatch.setattr(sup, "start", start)
    return steps


def test_run_go_before_the_lock_begin_under_it_and_false_from_either_starts_nothing(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run``: "``go`` is called while the processes import, before the instance's lock is
    taken ...; ``begin`` with it held, before anything of the instance is touched ... False
    from either ... starts nothing. ``started`` runs once the instance is running ... The
    rest of the run holds the lock: a second supervisor is refused there"."""
    claims(Supervisor.run)
    steps = _run_stood_in(sup, monkeypatch)

    def lock_free() -> bool:
        try:
            with instance_lock(sup.cfg):
                return True
        except Exception:
            return False

    def go() -> bool:
        steps.append(f"go, lock free {lock_free()}")
        return False

    assert sup.run(lambda: True, go=go) == 1
    assert steps == ["prestart", "go, lock free True", "discard"]
    steps.clear()

    def begin() -> bool:
        steps.append(f"begin, lock free {lock_free()}")
        return False

    assert sup.run(lambda: True, begin=begin) == 1
    assert steps == ["prestart", "begin, lock free False", "discard"]
    steps.clear()
    assert sup.run(lambda: True, started=lambda: steps.append(f"started {sup.state}")) == 0
    assert steps == ["prestart", "status starting", "create_rings", "start", "started running",
                     "watch", "stop"]  # fmt: skip
    steps.clear()
    with instance_lock(sup.cfg):  # another supervisor's
        assert sup.run(lambda: True) == 1
    assert steps == ["prestart", "discard"]


def test_what_stops_the_instance_is_its_reason_and_exit_status(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main.py: a crash loop "stops the instance with the reason"; ``run``: "Returns the exit
    status": 1 with the reason kept for the status, 0 for a stop asked while starting."""
    claims(Supervisor.run, supervisor_main)
    steps = _run_stood_in(sup, monkeypatch)

    def loops(stop: Any) -> None:
        raise SupervisorError("router exited 6 times within 60 s")

    monkeypatch.setattr(sup, "watch", loops)
    assert sup.run(lambda: False) == 1 and sup.reason == "router exited 6 times within 60 s"
    assert steps[-1] == "stop"

    def asked(meanwhile: Any = None) -> None:
        raise StopAsked("stop asked while router starts")

    sup.reason = ""
    monkeypatch.setattr(sup, "start", asked)
    assert sup.run(lambda: True) == 0 and sup.reason == "" and steps[-1] == "stop"


def test_metrics_are_served_only_when_configured(sup: Supervisor) -> None:
    """``serve_metrics``: "Serve /metrics (``supervisor.metrics``)"; off, none is served."""
    claims(Supervisor.serve_metrics)
    sup.serve_metrics()
    assert sup.metrics is None
    sup.cfg = tuned(sup.cfg, metrics=True, metrics_host="127.0.0.1", metrics_port=0)
    sup.serve_metrics()
    try:
        assert sup.metrics is not None
        assert sup.metrics.url == f"http://127.0.0.1:{sup.metrics.port}/metrics"
    finally:
        if sup.metrics is not None:
            sup.metrics.close()
