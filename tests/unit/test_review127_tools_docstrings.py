"""Review 127: the operator tools' docstrings (module, class, function docstrings, ``#:`` and
``#`` comments) and argparse help texts held to what the tools do. Here ``procs/cli.py`` (usage,
``shm``, ``run --detach``, ``stop``, ``status --json``, ``replay``, exit statuses),
``procs/common/endpoints.py`` and ``run_files.py``; ``procs/admin/*``, ``scripts/systemd_units.py``,
``run_demo.py`` and ``market_maker.py`` are in ``..._docstrings2.py`` (not ``ring_demo.py``).

Convention (reviews 105, 122): each claim is anchored by a short quote of the text it checks
(``said``, whitespace folded): a reworded claim fails. A claim found right is a plain test, a
disagreement a strict xfail asserting the text. No exchange starts: parsers are fed (a script's
stopped at ``parse_args``), ``ringex`` runs in-process on configs of temporary directories, a
supervisor stood in for by a ``sleep``, rings are the test's instance's (a dead one's made by
a child that exits), systemd's commands recorded by a stand-in shell.

Disagreements found, both fixed since: ``status --wait-ready``'s help "wait until it is
running", while
``_status`` waits for ``run_files.ready`` (every process alive and ready: exit 1 for a running
instance with a process recovering; the help's to mend); ``market_maker.py``'s ``--profile``
help "where the REST API is", while ``default_url`` writes an IPv6 host unbracketed
(``http://::1:8080``, no URL; the code's to mend, ``url_host``), in ``..._docstrings2.py``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import procs.admin.args
import procs.cli
from config import load_profile
from config.schema import RingexConfig
from procs import detached_start
from procs.common import endpoints as endpoints_module
from procs.common import run_files
from procs.common.endpoints import endpoints, url_host
from procs.common.journal import JournalError
from procs.common.record_codec import RecordCodec
from procs.common.run_files import instance_lock, status_path
from procs.common.topology import journal_archive_dir
from procs.core.recovery import recover
from procs.detached_start import start_detached
from procs.supervisor import exit_reason
from procs.supervisor.draining import stop_bound_s
from procs.supervisor.main import SUPERVISOR_LOG_FORMAT, Supervisor
from shm import Ring
from shm.inspect import list_segments
from shm.liveness import process_start
from tests.readme_text import ROOT, folded
from tests.unit.readme_operate_claims import fixture_stopped  # noqa: F401  (``stopped``)
from tests.unit.supervisor.test_review122_supervisor_docstrings import FakeProcess
from tests.unit.test_review105_cli import PARSER


def _text(where: object) -> str:
    """``where``'s words: a help text, or a module's, class's or function's docstring and the
    text of its comments (``#:`` and ``#``), whitespace folded."""
    if isinstance(where, str):
        return folded(where)
    source = inspect.getsource(where)  # type: ignore[arg-type]
    comments = " ".join(m for line in source.splitlines() for m in re.findall(r"#:?(.*)$", line))
    return folded(f"{inspect.getdoc(where) or ''} {comments}")


def said(quote: str, *where: object) -> None:
    """The anchor of a claim: ``quote`` is said, word for word with whitespace folded, by one of
    ``where`` (a module, class or function; a string: a help text)."""
    assert any(folded(quote) in _text(w) for w in where), f"no longer said: {quote!r}"


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def helps(parser: argparse.ArgumentParser, *words: str) -> str:
    """The help text of ``words``: a subcommand's (``"admin", "halt"``), or an argument's
    (``"status", "--json"``; a positional by its dest)."""
    *path, last = words
    for word in path:
        parser = _subparsers(parser).choices[word]
    for action in parser._actions:
        if last in action.option_strings or (not action.option_strings and action.dest == last):
            return str(action.help)
    return str(next(a.help for a in _subparsers(parser)._choices_actions if a.dest == last))


def ringex(*argv: str) -> int:
    """``ringex argv`` in-process; a usage error's exit status too."""
    try:
        return procs.cli.main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


def write_status(config: Path, **fields: Any) -> RingexConfig:
    """``config``'s instance with a status file as a supervisor writes it: by default this
    process's, running, with no processes."""
    cfg = load_profile(str(config))
    doc = {"instance": cfg.instance, "supervisor_pid": os.getpid(), "state": "running",
           "supervisor_started": process_start(os.getpid()), "role": "primary",
           "reason": "", "processes": []} | fields  # fmt: skip
    status_path(cfg).parent.mkdir(parents=True, exist_ok=True)
    status_path(cfg).write_text(json.dumps(doc))
    return cfg


def dead_rings(config: Path) -> None:
    """``config``'s rings as a dead instance leaves them: made by a process that then exits."""
    code = ("import os, sys; from config import load_profile; from procs.common.record_codec "
            "import RecordCodec; from procs.common.topology import create_rings; "
            "create_rings(load_profile(sys.argv[1]), RecordCodec()); os._exit(0)")  # fmt: skip
    subprocess.run([sys.executable, "-c", code, str(config)], check=True, cwd=ROOT)


@pytest.fixture
def sleeper() -> Iterator[Callable[[bool], subprocess.Popen[bytes]]]:
    """Starts a ``sleep 30`` (``deaf``: ignoring SIGTERM) to stand in for a supervisor."""
    made: list[subprocess.Popen[bytes]] = []

    def start(deaf: bool = False) -> subprocess.Popen[bytes]:
        cmd = ["sh", "-c", "trap '' TERM; exec sleep 30"] if deaf else ["sleep", "30"]
        made.append(proc := subprocess.Popen(cmd))
        while not Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(b"sleep"):
            time.sleep(0.01)  # exec'd: its SIGTERM ignored from here on
        return proc

    yield start
    for proc in made:
        proc.kill()
        proc.wait()


def test_the_usage_lists_every_command_and_admin_subcommand() -> None:
    """cli.py: "ringex admin add-user|remove-user|users|create-account|deposit|withdraw|
    balances| cancel-all|halt|resume|end-session|snapshot" and "ringex replay [--from-start]
    [--snapshot] [--to-db] [--archive] [--quiet]" (build_parser)."""
    usage = inspect.getdoc(procs.cli) or ""
    said("ringex shm ls|rm inspect and clean up shared memory", procs.cli)
    said("ringex stop [--timeout S] | ringex status [--json] [--wait-ready [--timeout S]]", usage)
    listed = re.search(r"ringex admin ([a-z|\-\s]+)\.\.\.", usage)
    assert listed is not None
    admin = _subparsers(_subparsers(PARSER).choices["admin"]).choices
    assert sorted(folded(listed[1]).replace(" ", "").split("|")) == sorted(admin)
    assert set(_subparsers(PARSER).choices) == {"shm", "run", "stop", "status", "admin", "replay"}
    replay = {a.option_strings[0] for a in _subparsers(PARSER).choices["replay"]._actions}
    shown = set(re.findall(r"\[(--[a-z-]+)\]", usage.split("ringex replay")[1]))
    assert shown == replay - {"-h", "--profile", "--config"}


@pytest.mark.parametrize("value", ["-1", "inf", "nan", "soon"])
def test_a_timeout_is_a_finite_number_of_seconds_0_or_more(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """admin/args.py ``seconds`` (cli.py's ``_seconds`` before): "A ``--timeout``: a finite
    number of seconds, 0 or more (argparse's type)": anything else is a usage error (exit
    2); 0 is taken."""
    said("a finite number of seconds, 0 or more", procs.admin.args.seconds)
    for command in ("run", "stop", "status"):
        assert ringex(command, "--timeout", value) == 2
        assert PARSER.parse_args([command, "--timeout", "0"]).timeout == 0.0
    capsys.readouterr()


def test_main_exit_statuses_for_what_a_command_raises(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py main: "a profile or file that does not load: its message names it" (2), "a
    damaged journal" (1), "Ctrl-C while a command waits: one line, not a traceback" (130)."""
    said("a profile or file that does not load: its message names it", procs.cli.main)
    said("Ctrl-C while a command waits: one line, not a traceback", procs.cli.main)
    assert ringex("status", "--config", "/nonexistent/rv127.toml") == 2
    assert "/nonexistent/rv127.toml" in capsys.readouterr().err
    for raised, code, says in ((JournalError("segment 7 torn"), 1, "segment 7 torn"),
                               (KeyboardInterrupt(), 130, "interrupted (Ctrl-C)")):  # fmt: skip

        def fail(_args: argparse.Namespace, exc: BaseException = raised) -> int:
            raise exc

        monkeypatch.setattr(procs.cli, "_stop", fail)
        assert ringex("stop") == code
        assert capsys.readouterr().err.strip() == f"ringex: {says}"


def test_shm_rm_removes_the_stale_keeps_what_is_in_use_unless_forced(
    stopped: Path, instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py shm help: "remove segments and their semaphores", --stale "only segments no live
    process uses", --force "also remove segments still in use", --instance "only this
    instance"; with none of them it asks which (_shm_rm)."""
    said("only segments no live process uses", helps(PARSER, "shm", "rm", "--stale"))
    said("also remove segments still in use", helps(PARSER, "shm", "rm", "--force"))
    said("only this instance", helps(PARSER, "shm", "rm", "--instance"))
    dead_rings(stopped)
    live = Ring.create(instance, "rv127live", RecordCodec(), capacity=2, consumers=["x"])
    try:
        assert ringex("shm", "ls", "--instance", instance, "--json") == 0
        listed = {s["name"]: s["stale"] for s in json.loads(capsys.readouterr().out)}
        assert listed.pop("rv127live") is False and listed and all(listed.values())
        assert ringex("shm", "rm") == 2
        assert "say which: --instance NAME, --stale or --all" in capsys.readouterr().err
        assert ringex("shm", "rm", "--instance", instance, "--stale") == 0
        assert [s.name for s in list_segments(instance)] == ["rv127live"]
        assert ringex("shm", "rm", "--instance", instance) == 1
        err = capsys.readouterr().err  # the exit says it: the instance was asked for whole
        assert f"skipping {instance}.rv127live: live pids" in err
        assert f"instance {instance!r} is in use (live pids {os.getpid()})" in err
        assert ringex("shm", "rm", "--instance", instance, "--force") == 0
        assert list_segments(instance) == []
    finally:
        live.close()


def test_run_refuses_an_instance_that_runs_naming_its_supervisor(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py _run: "its supervisor would refuse, into the running one's log": refused here,
    exit 1, naming the supervisor's pid."""
    said("its supervisor would refuse, into the running one's log", procs.cli._run)
    cfg = write_status(stopped)
    assert ringex("run", "--config", str(stopped)) == 1
    err = capsys.readouterr().err
    assert f"instance {cfg.instance} is running (supervisor pid {os.getpid()})" in err


def test_run_says_a_run_directory_it_cannot_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py _run: "the supervisor's first step: a traceback there, on either path": one
    line naming the directory and var_dir. A var_dir under a file is refused at load since
    review 134 (exit 2, naming it); one the run cannot make otherwise is exit 1."""
    said("the supervisor's first step: a traceback there, on either path", procs.cli._run)
    (tmp_path / "file").write_text("")
    config = tmp_path / "p.toml"
    config.write_text(f'instance = "rv127run"\nvar_dir = "{tmp_path / "file" / "var"}"\n')
    assert ringex("run", "--config", str(config), "--detach") == 2
    err = capsys.readouterr().err
    assert f"var_dir = '{tmp_path}/file/var' is under" in err and "not a directory" in err


def test_run_detach_returns_once_it_is_running(
    stopped: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py run help: "start the exchange (foreground unless --detach)", --detach "return
    once it is running"; start_detached: "Ctrl-C, SIGTERM, SIGHUP: none reaches the supervisor"."""
    said("return once it is running", helps(PARSER, "run", "--detach"))
    said("Ctrl-C, SIGTERM, SIGHUP: none reaches the supervisor", start_detached)
    started: list[dict[str, Any]] = []

    def popen(argv: list[str], **kwargs: Any) -> FakeProcess:
        started.append({"argv": argv, **kwargs})
        write_status(stopped)  # the supervisor (this pid) says it runs
        return FakeProcess()

    monkeypatch.setattr(subprocess, "Popen", popen)
    assert ringex("run", "--config", str(stopped), "--detach") == 0
    (start,) = started
    assert start["argv"][1:] == ["-m", "procs.supervisor.main", "--profile", str(stopped)]
    assert start["start_new_session"] is True and start["stdout"].name.endswith("supervisor.log")
    out = capsys.readouterr().out
    assert f"running (supervisor pid {os.getpid()})" in out and ": running (primary)" in out


def test_run_detach_says_why_the_supervisor_exited(
    stopped: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """detached_start.py _wait_started: "Wait for the detached supervisor ``child`` to say
    the instance runs"; one that exits is said with start_failure's reason and its exit
    status, exit 1."""
    said("Wait for the detached supervisor ``child`` to say the instance runs",
         detached_start._wait_started)  # fmt: skip

    def popen(argv: list[str], **kwargs: Any) -> FakeProcess:
        write_status(stopped, state="stopped", reason="cpu 99 is not on this host")
        return FakeProcess(exits=3)

    monkeypatch.setattr(subprocess, "Popen", popen)
    assert ringex("run", "--config", str(stopped), "--detach") == 1
    err = capsys.readouterr().err
    assert "did not start: cpu 99 is not on this host (the supervisor exited with 3;" in err


def test_run_detach_timeout_stops_the_start_waiting_as_a_stop_would(
    stopped: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py run --timeout help "--detach: seconds to wait"; _end_start: "Stop a start given
    up on, and wait as long as `ringex stop` would" (detached_start.py)."""
    said("--detach: seconds to wait", helps(PARSER, "run", "--timeout"))
    said("wait as long as `ringex stop` would", detached_start._end_start)
    child = FakeProcess()
    monkeypatch.setattr(subprocess, "Popen", lambda argv, **kw: child)
    assert ringex("run", "--config", str(stopped), "--detach", "--timeout", "0") == 1
    assert "not ready within 0.0 s (not running (it has not run: no status)): stopped" in (
        capsys.readouterr().err
    )
    cfg = load_profile(str(stopped))
    assert child.signals == ["TERM"]
    assert child.waits == [stop_bound_s(cfg.supervisor.drain_timeout_s, Supervisor.STOP_GRACE_S)]


def test_start_failure_is_the_status_reason_else_its_own_last_logged_line(
    tmp_path: Path,
) -> None:
    """exit_reason.py start_failure: "the reason it wrote in its status, else the last line it
    logged from ``offset`` on"; "Lines another supervisor logged meanwhile ... are skipped by
    the pid each line names, and so are the lines that continue one of them"."""
    said("the reason it wrote in its status, else the last line it logged from ``offset`` on",
         exit_reason.start_failure)  # fmt: skip
    said("are skipped by the pid each line names, and so are the lines that continue one of "
         "them", exit_reason.start_failure)  # fmt: skip
    log = tmp_path / "supervisor.log"
    old = "2024-01-01 00:00:00,000 ringex.supervisor[5] an earlier start's\n"
    log.write_text(old + "2024-01-01 00:00:01,000 ringex.supervisor[7] cpu 99 is missing\n"
                   "2024-01-01 00:00:01,500 ringex.supervisor[8] instance x running\n"
                   "  a line continuing pid 8's\n")  # fmt: skip
    assert exit_reason.start_failure(None, 7, log, len(old)) == "cpu 99 is missing"
    status = {"supervisor_pid": 7, "reason": "said in status"}
    assert exit_reason.start_failure(status, 7, log, 0) == "said in status"
    assert exit_reason.start_failure(None, 9, log, len(old)) == "no reason logged"


def test_the_log_prefix_is_the_supervisors_log_format() -> None:
    """exit_reason.py LOG_PREFIX: "What ``logging`` puts before a supervisor's message: its time,
    logger and pid (``SUPERVISOR_LOG_FORMAT``"."""
    said("What ``logging`` puts before a supervisor's message: its time, logger and pid",
         exit_reason)  # fmt: skip
    record = logging.LogRecord("ringex.supervisor", logging.INFO, "", 0, "hello", None, None)
    line = logging.Formatter(SUPERVISOR_LOG_FORMAT).format(record)
    found = exit_reason.LOG_PREFIX.match(line)
    assert found is not None and found["pid"] == str(os.getpid())
    assert line[found.end() :] == "hello"


def test_stop_help_default_is_the_longest_a_clean_stop_takes() -> None:
    """cli.py stop --timeout help: "default: as long as the instance's own stop may take, 3 x
    20 s of grace + supervisor.drain_timeout_s + 30 s" (stop_bound_s, STOP_GRACE_S)."""
    text = helps(PARSER, "stop", "--timeout")
    said("as long as the instance's own stop may take, 3 x 20 s of grace + "
         "supervisor.drain_timeout_s + 30 s", text)  # fmt: skip
    assert PARSER.parse_args(["stop"]).timeout is None  # then stop_bound_s, in _stop
    assert Supervisor.STOP_GRACE_S == 20.0
    assert stop_bound_s(7.0, Supervisor.STOP_GRACE_S) == 3 * 20 + 7.0 + 30


def test_stop_terms_the_supervisor_and_waits_for_it(
    stopped: Path, sleeper: Callable[[bool], subprocess.Popen[bytes]],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """cli.py stop help: "stop a running instance cleanly": SIGTERM to the supervisor the
    status names, "instance ... stopped" once it is gone, exit 0."""
    said("stop a running instance cleanly", helps(PARSER, "stop"))
    proc = sleeper(False)
    cfg = write_status(stopped, supervisor_pid=proc.pid, supervisor_started=process_start(proc.pid))
    assert ringex("stop", "--config", str(stopped), "--timeout", "10") == 0
    assert proc.wait(5) == -15
    assert capsys.readouterr().out == f"instance {cfg.instance} stopped\n"


def test_stop_that_times_out_exits_1_naming_the_supervisor(
    stopped: Path, sleeper: Callable[[bool], subprocess.Popen[bytes]],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """cli.py stop --timeout help: "seconds to wait": a supervisor still there then is said,
    exit 1."""
    said("seconds to wait", helps(PARSER, "stop", "--timeout"))
    proc = sleeper(True)
    write_status(stopped, supervisor_pid=proc.pid, supervisor_started=process_start(proc.pid))
    assert ringex("stop", "--config", str(stopped), "--timeout", "0.2") == 1
    assert f"supervisor {proc.pid} still running after 0.2 s" in capsys.readouterr().err


def test_stop_waits_for_the_processes_of_a_killed_supervisor(
    stopped: Path, sleeper: Callable[[bool], subprocess.Popen[bytes]],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """cli.py _still_stopping: "The processes, (pid, start time), of a supervisor that ended
    without stopping them (killed outright) which still run"; "A pid whose process started at
    another time than the status says is another process's"; _wait_orphans waits "as a stop
    does"."""
    said("of a supervisor that ended without stopping them (killed outright) which still run",
         procs.cli._still_stopping)  # fmt: skip
    said("A pid whose process started at another time than the status says is another "
         "process's", procs.cli._still_stopping)  # fmt: skip
    said("Wait, as a stop does, for ``orphans``", procs.cli._wait_orphans)
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = sleeper(True)
    started = process_start(orphan.pid)
    processes = [{"pid": orphan.pid, "started": started}]
    write_status(stopped, supervisor_pid=gone.pid, processes=processes)
    assert procs.cli._still_stopping({"processes": [{"pid": orphan.pid, "started": 1}]}) == []
    assert ringex("stop", "--config", str(stopped), "--timeout", "0.2") == 1
    err = capsys.readouterr().err
    assert f"its supervisor (pid {gone.pid}) ended without stopping it" in err
    assert f"and pids {orphan.pid} are still stopping after 0.2 s" in err


def test_stop_and_status_say_an_instance_running_from_another_var_dir(
    stopped: Path, admin_rings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py _running_elsewhere: "Why the instance runs though no status file here says so
    ... its shared memory (``segments``, listed here when not given) is in use": ``stop``
    exits 1 saying so, ``status`` gives it as the reason."""
    said("Why the instance runs though no status file here says so", procs.cli._running_elsewhere)
    assert ringex("stop", "--config", str(stopped)) == 1
    err = capsys.readouterr().err
    assert f"its shared memory is in use by pids {os.getpid()}" in err
    assert ringex("status", "--config", str(stopped), "--json") == 0
    assert json.loads(capsys.readouterr().out)["reason"] == err.strip()


def _recovering(stopped: Path) -> RingexConfig:
    """A running instance (this process its supervisor) whose router is up but recovering."""
    me = {"name": "router", "pid": os.getpid(), "started": process_start(os.getpid()),
          "alive": True, "ready": False, "cpus": [], "restarts": 1, "uptime_s": 3}  # fmt: skip
    return write_status(stopped, processes=[me])


def test_status_wait_ready_waits_until_every_process_is_up(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py status --wait-ready help: "wait until every process is up (and ready)" (review
    127: it said "until it is running"; _status, run_files.ready): a running instance with
    a process recovering is not what it waits for."""
    said("wait until every process is up (and ready)", helps(PARSER, "status", "--wait-ready"))
    _recovering(stopped)
    assert ringex("status", "--config", str(stopped), "--json") == 0
    assert json.loads(capsys.readouterr().out)["state"] == "running"
    assert ringex("status", "--config", str(stopped), "--wait-ready", "--timeout", "0") == 1


def test_status_wait_ready_timeout_says_what_is_not_ready(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py status --timeout help: "--wait-ready: seconds"; run_files.not_ready: "the
    processes that are down or recovering"."""
    said("--wait-ready: seconds", helps(PARSER, "status", "--timeout"))
    said("the processes that are down or recovering", run_files.not_ready)
    cfg = _recovering(stopped)
    assert ringex("status", "--config", str(stopped), "--wait-ready", "--timeout", "0.1") == 1
    assert capsys.readouterr().err == (
        f"instance {cfg.instance} not ready within 0.1 s: not ready: router recovering\n"
    )


def test_status_of_a_killed_supervisor_is_stopped_with_a_reason(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py _print_status: "killed (review 50)": a status whose supervisor is gone shows
    the instance stopped, and why; "a pid reused since is not the process", and "its uptime
    as of the last write: not up now"."""
    said("killed (review 50)", procs.cli._print_status)
    said("a pid reused since is not the process", procs.cli._print_status)
    said("its uptime as of the last write: not up now", procs.cli._print_status)
    gone = subprocess.Popen(["true"])
    gone.wait()
    reused = {"name": "router", "pid": os.getpid(), "started": 1, "alive": True,
              "ready": True, "cpus": [], "restarts": 0, "uptime_s": 9}  # fmt: skip
    write_status(stopped, supervisor_pid=gone.pid, processes=[reused])
    assert ringex("status", "--config", str(stopped), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "stopped" and shown["serves_clients"] is False
    assert shown["reason"] == (
        f"the supervisor (pid {gone.pid}) ended while running, without stopping the instance"
    )
    (process,) = shown["processes"]
    assert (process["alive"], process["ready"], process["uptime_s"]) == (False, False, 0)


def test_status_shows_processes_rings_and_endpoints(
    stopped: Path, admin_rings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py status help: "processes, rings and endpoints of an instance"; --json
    "machine-readable output": each ring's capacity, cursor and its consumers' lags."""
    said("processes, rings and endpoints of an instance", helps(PARSER, "status"))
    said("machine-readable output", helps(PARSER, "status", "--json"))
    assert ringex("status", "--config", str(stopped), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in shown["rings"]} == {"gw0-cmd", "gw0-rep"}
    assert all(r["capacity"] == 64 and r["cursor"] == 0 for r in shown["rings"])
    assert {k for r in shown["rings"] for k in r["lags"]} == {"router", "gw0"}
    assert ringex("status", "--config", str(stopped)) == 0
    text = capsys.readouterr().out
    assert "ring gw0-cmd" in text and "lags: router 0" in text and "metrics" in text


def test_a_standby_serves_no_client_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py _print_status: "a standby serves no client (its gateways and feed start when it
    is promoted)"; one that never ran is a standby by its config."""
    said("a standby serves no client (its gateways and feed start when it is promoted)",
         procs.cli._print_status)  # fmt: skip
    config = tmp_path / "standby.toml"
    config.write_text(f'instance = "rv127sb"\nvar_dir = "{tmp_path}"\n'
                      '[replication]\nprimary = "127.0.0.1:9900"\n')  # fmt: skip
    assert ringex("status", "--config", str(config), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["role"], shown["serves_clients"]) == ("standby", False)
    write_status(config, role="standby")
    assert ringex("status", "--config", str(config)) == 0
    out = capsys.readouterr().out
    assert ": running (standby)" in out and "endpoints once promoted (a standby serves" in out


def test_replay_rebuilds_prints_hashes_and_writes_a_snapshot(
    stopped: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.py replay help: "rebuild router and matcher state from the newest snapshot and the
    journal, print the state hashes"; --snapshot "write a snapshot at the end"; --from-start
    "ignore snapshots: replay the whole journal"; --quiet "no progress bar"; --archive with
    no journal moves nothing."""
    said("print the state hashes", helps(PARSER, "replay"))
    said("write a snapshot at the end", helps(PARSER, "replay", "--snapshot"))
    said("ignore snapshots: replay the whole journal", helps(PARSER, "replay", "--from-start"))
    said("no progress bar", helps(PARSER, "replay", "--quiet"))
    said("(default var/<instance>/journal-archive)", helps(PARSER, "replay", "--archive"))
    asked: list[bool] = []

    def recovering(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs["use_snapshot"])
        return recover(*args, **kwargs)

    monkeypatch.setattr("procs.cli.recover", recovering)
    config = str(stopped)
    assert ringex("replay", "--config", config, "--quiet", "--snapshot", "--archive") == 0
    out = capsys.readouterr()
    assert out.err == "" and "state at seq 0" in out.out and "router" in out.out
    assert "snapshot written:" in out.out and "nothing archived: no journal at" in out.out
    assert ringex("replay", "--config", config, "--from-start") == 0
    assert "cmd" in capsys.readouterr().err  # the progress bar, on stderr
    assert asked == [True, False]
    cfg = load_profile(config)
    assert journal_archive_dir(cfg) == Path(cfg.var_dir, cfg.instance, "journal-archive")


def test_endpoints_name_each_gateway_the_feed_and_metrics_and_say_what_is_off() -> None:
    """endpoints.py: "each gateway's FIX and REST address, the feed's WebSocket and page, the
    supervisor's metrics, ...; what is configured off says so"."""
    said("each gateway's FIX and REST address, the feed's WebSocket and page, the supervisor's "
         "metrics, at their configured listen addresses", endpoints_module)  # fmt: skip
    said("name it); what is configured off says so", endpoints_module)
    cfg = msgspec.convert({
        "gateways": [{"name": "gw1", "id": 1, "port": 9001, "tls_cert": "c", "tls_key": "k",
                      "rest": {"host": "::1", "port": 8443, "tls_cert": "c", "tls_key": "k"}}],
        "marketdata": {"enabled": False}, "supervisor": {"metrics": False},
    }, RingexConfig)  # fmt: skip
    assert endpoints(cfg, {"state": "stopped"}) == {
        "fix gw1": "127.0.0.1:9001 (TLS) CompID RINGEX",
        "rest gw1": "https://[::1]:8443/api/v1/",
        "websocket": "off (marketdata.enabled = false)",
        "web page": "off (marketdata.enabled = false)",
        "metrics": "off (supervisor.metrics = false)",
    }


def test_metrics_is_the_url_reported_while_it_runs_else_the_configured_one() -> None:
    """endpoints.py _metrics_url: "the URL it reported while it runs (the port it was given
    when metrics_port = 0), else the configured one"; url_host: "an IPv6 literal in
    brackets"."""
    said("the URL it reported while it runs (the port it was given when metrics_port = 0), "
         "else the configured one", endpoints_module._metrics_url)  # fmt: skip
    said("an IPv6 literal in brackets", url_host)
    cfg = RingexConfig()
    running = {"state": "running", "metrics_url": "http://127.0.0.1:40123/metrics"}
    assert endpoints(cfg, running)["metrics"] == "http://127.0.0.1:40123/metrics"
    stopped = {**running, "state": "stopped"}
    assert (
        endpoints(cfg, stopped)["metrics"] == "http://127.0.0.1:<a free port, once running>/metrics"
    )
    assert (url_host("::1"), url_host("10.0.0.1")) == ("[::1]", "10.0.0.1")


def test_the_instance_lock_names_its_holder_and_is_not_inherited(tmp_path: Path) -> None:
    """run_files.instance_lock: "an exclusive ``flock`` on ``run/supervisor.lock`` held for as
    long as it runs"; "is not inherited (the fd is close-on-exec); the file holds the holder's
    pid, for the refusal to name it"."""
    said("the file holds the holder's pid, for the refusal to name it", instance_lock)
    said("is not inherited (the fd is close-on-exec)", instance_lock)
    cfg = RingexConfig(instance="rv127l", var_dir=str(tmp_path))
    path = tmp_path / "rv127l" / "run" / "supervisor.lock"
    with instance_lock(cfg):
        fds = [int(fd.name) for fd in Path("/proc/self/fd").iterdir()
               if os.path.realpath(fd) == str(path)]  # fmt: skip
        assert fds and not any(os.get_inheritable(fd) for fd in fds)
        busy = pytest.raises(run_files.InstanceBusyError, match=f"supervisor pid {os.getpid()} ")
        with busy, instance_lock(cfg):
            pass
    with instance_lock(cfg):  # let go with it
        pass
