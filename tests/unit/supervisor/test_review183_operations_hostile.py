"""Review 183: the supervisor (``procs/supervisor/``) and ``ringex run|stop|status|admin``
(``procs/cli.py``, ``procs/admin/``) held against hostile operations: restarts and their
escalation, what ``status --json`` and ``--wait-ready`` say of a process that died, flags
given twice, bad ``admin add-user`` input.

Method: pure pieces driven directly, no exchange process started. ``Supervisor._restart``,
``write_status`` and the escalation run over review 122's ``FakeProcess`` and review 109's
stood-in starts (``_stand_in_starts``) with the clock's ``sleep`` recorded; ``ringex status``,
``stop`` and ``admin`` run in-process (``procs.cli.main``) against a small profile in
``tmp_path`` whose status file is the supervisor's own (``write_status``) or one written here
as it writes it (this test process standing in for a live supervisor). Config loading was
probed by hand (an unknown key in a ``[[gateways]]`` entry, negative cores, a negative
``restart_limit`` or ``ring.capacity``, a float CPU, a string nice, ``1e400``): each refused
naming file, key and value; not repeated here (reviews 100, 104, 134, 142).

Sound (plain tests): restarts older than ``restart_window_s`` do not count towards the limit
(a process that crashed long ago is not stopped for one crash now); the exit that stops the
instance is not counted in ``restarts``; the backoff is 2 s at most up to 1,024 restarts in the
window; a restarted process's status has no heartbeat age until the supervisor has seen its
own line; ``ringex status`` shows a process whose pid is gone (or another's) down, not ready,
``uptime_s`` 0.0; ``ready`` is false once the supervisor is gone, whatever the file says;
``--wait-ready --timeout 0`` of an instance that never ran answers at once, exit 1; a flag
that has ``Once`` is a usage error given twice; ``admin deposit`` names an unknown asset
without a repr's quotes.

Faults, all six fixed (their tests, below, pass now; each says "Was (fixed)"):
1. ``procs/supervisor/main.py:346`` ``0.1 * 2 ** (len(child.restarts) - 1)``: with a window
   and a limit that allow more than 1,024 restarts (``restart_limit = 5000``,
   ``restart_window_s = 86400``: both in range), the 1,025th restart within the window raises
   ``OverflowError`` (int too large to convert to float) out of ``watch``: the instance stops
   with no reason in its status and a traceback, though the limit was not reached.
   Was (fixed: the exponent capped at 16).
   (``test_a_1025th_restart_within_a_long_window_backs_off_2_s_and_restarts``)
2. ``procs/supervisor/main.py:338`` ``{window:.0f}``: ``restart_window_s = 0.5`` (allowed:
   ``gt=0``) made the escalation's reason "exited 1 times within 0 s". Was (fixed: ``{window:g}``).
   (``test_the_escalation_reason_states_a_sub_second_window_as_configured``)
3. ``procs/supervisor/stuck_watch.py:80-86`` ``_heartbeat_age`` checks only that its last
   line's pid is the process's, not that the process runs: ``write_status`` (main.py:449),
   called by ``_restart`` before its backoff and by ``_duties`` for a process that died while
   another restarts (which may last ``ready_timeout_s``), writes ``heartbeat_age_s`` 0.25 for a
   process ``alive: false``; ``ringex status --json`` (``procs/cli.py:414-420``) zeroes its
   ``uptime_s`` but passes the heartbeat age on, where the text output hides it.
   Was (fixed: None once ``process.poll()`` says it exited).
   (``test_status_json_gives_no_heartbeat_age_for_a_process_that_died``)
4. ``procs/common/run_files.py:110`` ``ready`` trusts the file's ``alive``/``ready`` flags,
   while ``_print_status`` (``procs/cli.py:414-420``) checks each pid and start time itself:
   with a status file that lags (var/ full: "logged once and the instance runs"; a supervisor
   held up), ``ringex status --wait-ready --timeout 0`` exits 0, "ready", and prints the
   router down. Was (fixed: ``ready`` and ``not_ready`` check each pid and its start time).
   (``test_wait_ready_is_not_ready_while_its_own_status_shows_a_process_down``)
5. Flags given twice, the last winning in silence, though ``procs/admin/args.py`` ``Once``
   exists for exactly this (review 155, fault 4): ``admin add-user --username`` and
   ``--comp-id`` (``procs/admin/commands.py:313,320``; ``--username a --username b`` adds b),
   ``--password`` of add-user and set-password (``commands.py:334``), and the lifecycle
   ``--timeout`` (``procs/cli.py:505,510,521``; ``stop --timeout 600 --timeout 1`` gives up
   after 1 s). Was (fixed: ``action=Once`` on each).
   (``test_a_flag_given_twice_is_a_usage_error``, one case each)
6. ``procs/admin/add_user.py:62-63`` prints a ``KeyError`` by ``str()``: an unknown asset in
   ``--deposit usd=5`` is ``"asset 'usd' is not configured (...)"`` in a repr's double quotes,
   where ``deposit --asset usd`` (``commands.py:108-109``, ``exc.args[0]``) says it plainly.
   Was (fixed: ``exc.args[0]``).
   (``test_add_user_names_an_unknown_deposit_asset_as_deposit_does``)

Leads suspected, not shown here:
- ``ringex stop`` during a start's first moments (``Supervisor.run``: the refusals,
  ``prestart``'s spawns, ``go`` and the lock come before ``_run``'s first ``write_status``)
  reads the previous run's status, says "not running" and exits 0, and the instance comes up
  after: README Operate says "The status is written from the start (`starting`), so `ringex
  stop` also stops an instance still starting". The window is milliseconds for a plain run
  (seconds in a failover's ``go``, where the standby's status is the one to read); not shown
  without pausing the start by hand.
- ``write_status`` (main.py:444) writes ``started = process_start(pid)`` of a process it has
  already reaped: a pid reused meanwhile gives the reuser's start time, and ``ringex stop`` of
  a killed supervisor (``_still_stopping``, cli.py:318-330, which ignores ``alive``) would wait
  for that unrelated process. Needs a pid reused within the write's window.
- A restart whose process hangs (alive, never ready) stops the whole instance at
  ``ready_timeout_s`` without a retry (``_restart``'s ``raise``): by design per its comment.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import procs.cli
from config import load_profile
from config.schema import RingexConfig
from procs.common.run_files import read_status, ready, status_path
from procs.supervisor import main as supervisor_main
from procs.supervisor.main import Supervisor, SupervisorError
from shm.liveness import process_start
from shm.ring import ConsumerInfo
from tests.unit.supervisor.test_review122_supervisor_docstrings import FakeProcess, tuned
from tests.unit.supervisor.test_supervisor import write_profile
from tests.unit.test_review109_readme_processes import _stand_in_starts

# -- rigs ---------------------------------------------------------------------------------------


@pytest.fixture
def profile(instance: str, tmp_path: Path) -> Path:
    """A matcher and the router (``write_profile``), var/ under ``tmp_path``."""
    return write_profile(tmp_path / "p.toml", instance, tmp_path / "var")


@pytest.fixture
def cfg(profile: Path) -> RingexConfig:
    return load_profile(str(profile))


@pytest.fixture
def sup(cfg: RingexConfig, profile: Path) -> Supervisor:
    """A supervisor of ``profile``, never started, metrics off."""
    return Supervisor(tuned(cfg, metrics=False), str(profile))


@pytest.fixture
def restarts(sup: Supervisor, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """``_restart`` over stood-in starts: no process spawned, no status written, the
    backoff's sleeps recorded (``naps``) and what was spawned (``spawned``)."""
    monkeypatch.setattr(supervisor_main, "units_differ_now", lambda profile: "")
    monkeypatch.setattr(supervisor_main, "layout_differs_now", lambda profile, cfg: "")
    monkeypatch.setattr(supervisor_main, "cpus_missing", lambda specs: "")
    naps: list[float] = []
    clock = SimpleNamespace(monotonic=time.monotonic, sleep=naps.append, time=time.time,
                            time_ns=time.time_ns)  # fmt: skip
    monkeypatch.setattr(supervisor_main, "time", clock)
    monkeypatch.setattr(sup, "write_status", lambda: None)
    spawned = _stand_in_starts(sup, monkeypatch)
    return SimpleNamespace(naps=naps, spawned=spawned)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``ringex ARGV`` in-process: exit status (argparse's ``SystemExit`` included), out, err."""
    capsys.readouterr()
    try:
        code = procs.cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _line(pid: int, heartbeat_age_s: float) -> ConsumerInfo:
    """A consumer line held by ``pid`` that last beat ``heartbeat_age_s`` ago."""
    return ConsumerInfo(
        index=0, name="matcher", state="active", sequence=5, lag=0, pid=pid, pid_alive=True,
        heartbeat_age_s=heartbeat_age_s, parked=False, gates=(),
    )  # fmt: skip


def _gone_pid() -> int:
    """The pid of a process that ran and was reaped (reused meanwhile or not: its start time
    will not be the one written beside it)."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def _status_as_written(cfg: RingexConfig, profile: Path, processes: list[dict[str, Any]]) -> None:
    """A running instance's status file, its supervisor this (live) test process."""
    doc = {
        "instance": cfg.instance, "profile": str(profile), "supervisor_pid": os.getpid(),
        "supervisor_started": process_start(os.getpid()), "state": "running",
        "role": "primary", "prestarted": False, "reason": "", "updated_ns": time.time_ns(),
        "metrics_url": "", "processes": processes,
    }  # fmt: skip
    path = status_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _process(name: str, pid: int, started: int | None) -> dict[str, Any]:
    """A process as ``write_status`` writes one that was up and ready at its last write."""
    return {
        "name": name, "pid": pid, "started": started, "alive": True, "ready": True,
        "cpus": [], "restarts": 0, "heartbeat_age_s": 0.1, "uptime_s": 5.0,
    }  # fmt: skip


# -- 1, 2: restarts and their escalation --------------------------------------------------------


def test_restarts_older_than_the_window_do_not_stop_a_healthy_process(
    sup: Supervisor, restarts: SimpleNamespace
) -> None:
    """``_restart``: only restarts within ``restart_window_s`` count. A process with ten
    restarts a window ago and ``restart_limit = 3`` is restarted once more, not stopped."""
    sup.cfg = tuned(sup.cfg, restart_limit=3, restart_window_s=60.0)
    child = sup.children[0]
    child.restarts = [time.monotonic() - 61.0] * 10
    sup._restart(child, -9)
    assert restarts.spawned == [child.spec.name]
    assert len(child.restarts) == 1 and child.restarts_total == 1
    assert restarts.naps == [0.1]  # its backoff starts over too


def test_the_exit_that_stops_the_instance_is_not_counted_as_a_restart(
    sup: Supervisor, restarts: SimpleNamespace
) -> None:
    """``restart_limit = 0``: the first exit stops the instance, naming the process, the
    count, the code and the limit, with ``restarts`` still 0 and nothing spawned."""
    sup.cfg = tuned(sup.cfg, restart_limit=0, restart_window_s=60.0)
    child = sup.children[0]
    with pytest.raises(SupervisorError) as stopped:
        sup._restart(child, 3)
    said = str(stopped.value)
    assert child.spec.name in said and "exited 1 times within 60 s (last code 3)" in said
    assert "restart_limit=0" in said
    assert child.restarts_total == 0 and restarts.spawned == []


def test_the_1024th_restart_within_a_long_window_backs_off_2_s_and_restarts(
    sup: Supervisor, restarts: SimpleNamespace
) -> None:
    """The bound of fault 1: with 1,023 restarts in the window the backoff is 2 s and the
    process starts again (``0.1 * 2 ** 1023`` is a float, capped by ``min``)."""
    sup.cfg = tuned(sup.cfg, restart_limit=5000, restart_window_s=86400.0)
    child = sup.children[0]
    child.restarts = [time.monotonic() - 1.0] * 1023
    sup._restart(child, 1)
    assert restarts.spawned == [child.spec.name] and restarts.naps == [2.0]


def test_a_1025th_restart_within_a_long_window_backs_off_2_s_and_restarts(
    sup: Supervisor, restarts: SimpleNamespace
) -> None:
    """Was (fixed). Fault 1: ``restart_limit = 5000`` and ``restart_window_s = 86400`` (a flapping
    gateway restarted for a day) are both in range; the 1,025th restart within the day must back off
    2 s and start the process, as the 1,024th does."""
    sup.cfg = tuned(sup.cfg, restart_limit=5000, restart_window_s=86400.0)
    child = sup.children[0]
    child.restarts = [time.monotonic() - 1.0] * 1024
    sup._restart(child, 1)
    assert restarts.spawned == [child.spec.name] and restarts.naps == [2.0]


def test_the_escalation_reason_states_a_sub_second_window_as_configured(
    sup: Supervisor, restarts: SimpleNamespace
) -> None:
    """Was (fixed). Fault 2: the reason a crash loop stopped the instance (its status's ``reason``)
    names the window as configured, ``restart_window_s = 0.5``."""
    sup.cfg = tuned(sup.cfg, restart_limit=0, restart_window_s=0.5)
    with pytest.raises(SupervisorError) as stopped:
        sup._restart(sup.children[0], 1)
    assert "within 0.5 s" in str(stopped.value), str(stopped.value)


# -- 3, 4: what status and --wait-ready say of a process that died -----------------------------


def test_a_restarted_process_has_no_heartbeat_age_until_its_own_line_is_seen(
    sup: Supervisor,
) -> None:
    """``_heartbeat_age``: the line last seen is the old process's (another pid), so the
    restarted one, up, has none yet (``null``), not its predecessor's."""
    child = sup.children[0]
    child.process = FakeProcess()  # type: ignore[assignment]  # up, pid: this process's
    child.seen = _line(os.getpid() + 1, 0.25)
    sup.write_status()
    written = read_status(sup.cfg)
    assert written is not None
    assert written["processes"][0]["alive"] is True
    assert written["processes"][0]["heartbeat_age_s"] is None


def test_status_json_gives_no_heartbeat_age_for_a_process_that_died(
    sup: Supervisor, profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was (fixed). Fault 3: a process that died (as ``_restart`` writes the status before its
    backoff, or ``_duties`` while another process restarts) is ``alive: false`` with ``uptime_s``
    0.0; it beats no more, so its ``heartbeat_age_s`` is ``null`` (README: "since it last beat on
    the ring it reads"), in the file and in ``ringex status --json``."""
    child = sup.children[0]
    dead = FakeProcess(exits=-9)
    child.process = dead  # type: ignore[assignment]
    child.seen = _line(dead.pid, 0.25)  # its line as the last look saw it, before it died
    sup.state = "running"
    sup.write_status()
    code, out, _ = _cli(["status", "--json", "--config", str(profile)], capsys)
    assert code == 0
    shown = json.loads(out)["processes"][0]
    assert shown["alive"] is False and shown["uptime_s"] == 0.0
    assert shown["heartbeat_age_s"] is None


def test_status_shows_a_process_whose_pid_is_gone_down_not_ready_uptime_0(
    cfg: RingexConfig, profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``_print_status`` checks each pid and its start time itself: a process the file
    still says is up and ready, whose pid is gone (or another process's), is shown down,
    not ready, ``uptime_s`` 0.0, in JSON and text."""
    _status_as_written(cfg, profile, [_process("router", _gone_pid(), 12345)])
    code, out, _ = _cli(["status", "--json", "--config", str(profile)], capsys)
    shown = json.loads(out)["processes"][0]
    assert code == 0 and shown["alive"] is False and shown["ready"] is False
    assert shown["uptime_s"] == 0.0
    code, out, _ = _cli(["status", "--config", str(profile)], capsys)
    assert code == 0
    row = next(line for line in out.splitlines() if line.strip().startswith("router"))
    assert " down " in row and "heartbeat" not in row


def test_ready_is_false_once_the_supervisor_is_gone(cfg: RingexConfig) -> None:
    """``run_files.ready``: a status whose every process is up and ready is not ready once
    its supervisor's pid is gone (or another's: its start time differs)."""
    me = os.getpid()
    up = [_process("router", me, process_start(me))]
    alive = {"state": "running", "supervisor_pid": me,
             "supervisor_started": process_start(me), "processes": up}  # fmt: skip
    assert ready(alive)
    assert not ready(alive | {"supervisor_pid": _gone_pid()})
    assert not ready(alive | {"supervisor_started": (process_start(me) or 0) + 1})


def test_wait_ready_of_an_instance_that_never_ran_answers_at_once(
    profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status --wait-ready --timeout 0`` looks once: no status, exit 1, saying it has not
    run (a fail-safe bound of 10 s on what should take well under one)."""
    began = time.monotonic()
    code, _, err = _cli(
        ["status", "--wait-ready", "--timeout", "0", "--config", str(profile)], capsys
    )
    assert time.monotonic() - began < 10.0
    assert code == 1 and "not ready within 0.0 s" in err and "it has not run" in err


def test_wait_ready_is_not_ready_while_its_own_status_shows_a_process_down(
    cfg: RingexConfig, profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was (fixed). Fault 4: a status file that lags the processes (one that cannot be written, var/
    full, is "logged once and the instance runs"; a supervisor held up) says the router up and
    ready, and its pid is gone. ``ringex status`` shows it down; ``--wait-ready`` must not then say
    ready (exit 0): it exits 1 naming the router down."""
    _status_as_written(cfg, profile, [_process("router", _gone_pid(), 12345)])
    code, out, _ = _cli(["status", "--json", "--config", str(profile)], capsys)
    assert code == 0 and json.loads(out)["processes"][0]["alive"] is False  # shown down
    code, out, err = _cli(
        ["status", "--wait-ready", "--timeout", "0", "--json", "--config", str(profile)],
        capsys,
    )
    assert code == 1, out[-400:]
    assert "router down" in err


# -- 5, 6: the command line's arguments ----------------------------------------------------------


def test_a_flag_with_once_given_twice_is_a_usage_error(
    profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``Once`` (``procs/admin/args.py``): add-user's ``--cancel-on-disconnect`` given twice
    is exit 2 naming the flag, before anything is opened."""
    code, _, err = _cli(
        ["admin", "add-user", "--username", "a", "--password", "pw", "--cancel-on-disconnect",
         "on", "--cancel-on-disconnect", "off", "--config", str(profile)],
        capsys,
    )  # fmt: skip
    assert code == 2 and "--cancel-on-disconnect is given twice" in err


TWICE = [
    pytest.param(
        ["admin", "add-user", "--username", "a", "--username", "b", "--password", "pw"],
        "--username", id="add-user-username",
    ),
    pytest.param(
        ["admin", "add-user", "--username", "a", "--comp-id", "x", "--comp-id", "y",
         "--password", "pw"],
        "--comp-id", id="add-user-comp-id",
    ),
    pytest.param(
        ["admin", "add-user", "--username", "a", "--password", "p1", "--password", "p2"],
        "--password", id="add-user-password",
    ),
    pytest.param(
        ["admin", "set-password", "--comp-id", "a", "--password", "p1", "--password", "p2"],
        "--password", id="set-password-password",
    ),
    pytest.param(["stop", "--timeout", "600", "--timeout", "1"], "--timeout", id="stop-timeout"),
    pytest.param(
        ["status", "--wait-ready", "--timeout", "600", "--timeout", "0"], "--timeout",
        id="status-timeout",
    ),
    pytest.param(
        ["run", "--detach", "--timeout", "600", "--timeout", "0", "--profile", "/nonexistent"],
        "--timeout", id="run-timeout",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "flag"), TWICE)
def test_a_flag_given_twice_is_a_usage_error(
    argv: list[str], flag: str, profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was (fixed). Fault 5: each of these given twice is exit 2 naming it ("given twice"), as
    review 155 made ``--amount`` and ``--profile``: ``add-user --username a --username b`` adds b,
    ``stop --timeout 600 --timeout 1`` gives up after 1 s. (``run`` is given a profile that does not
    exist, so the test never starts an instance, fixed or not.)"""
    where = [] if "--profile" in argv else ["--config", str(profile)]
    code, _, err = _cli([*argv, *where], capsys)
    assert code == 2 and f"{flag} is given twice" in err, err[-400:]


def test_deposit_names_an_unknown_asset_plainly(
    profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``_admin_args_refused``: ``deposit --asset usd`` (the config's is USD) is one line
    naming the asset and the configured ones, no repr's quotes, before anything attaches."""
    code, _, err = _cli(
        ["admin", "deposit", "--account", "7", "--asset", "usd", "--amount", "5",
         "--config", str(profile)],
        capsys,
    )  # fmt: skip
    assert code == 1
    assert err.startswith("ringex admin deposit: asset 'usd' is not configured"), err


def test_add_user_names_an_unknown_deposit_asset_as_deposit_does(
    profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was (fixed). Fault 6: ``add-user --deposit usd=5`` is refused (exit 2) before anything is
    opened, naming the asset as ``deposit`` does: "asset 'usd' is not configured", not quoted."""
    code, _, err = _cli(
        ["admin", "add-user", "--username", "a", "--password", "pw", "--deposit", "usd=5",
         "--config", str(profile)],
        capsys,
    )  # fmt: skip
    assert code == 2
    assert err.startswith("ringex admin add-user: asset 'usd' is not configured"), err
