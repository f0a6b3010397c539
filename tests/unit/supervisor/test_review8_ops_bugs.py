"""An eighth hostile review of the operator's contract (issue 8): what a script driving
`ringex run`, `ringex admin` hits. Each test shows one bug and failed on the code as
reviewed; its docstring says what is right and why."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import procs.admin.commands
import procs.cli
from procs.admin.client import AdminClient
from procs.common.records import AccountReply, AdminCommand
from procs.common.result_codes import ResultCode
from procs.common.run_files import status_path
from procs.common.topology import users_path
from procs.common.users import UserStore
from shm.liveness import process_start
from tests.unit.router.test_router import config
from tests.unit.supervisor.test_review5_ops_bugs import router_line  # noqa: F401  (a fixture)
from tests.unit.test_review_admin_bugs import _cli, _use_config

ROOT = Path(__file__).parents[3]


def _hold_admin_ring(cfg_instance: str, var_dir: Path, hold_s: float) -> subprocess.Popen[str]:
    """Another `ringex admin` (a process of its own) holding the admin ring for ``hold_s``;
    it prints "held" once it has it."""
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from procs.admin.client import AdminClient
        from tests.unit.router.test_router import config
        client = AdminClient(config({cfg_instance!r}, Path({str(var_dir)!r})))
        print("held", flush=True)
        time.sleep({hold_s})
        client.close()
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    with holder.stdout:
        assert holder.stdout.readline().strip() == "held"
    return holder


# -- 1. a second `ringex admin` at once is told the instance is not running --------------------


def test_two_admin_commands_at_once_both_go_through(
    admin_rings: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    router_line: Any,  # noqa: F811  (the fixture)
) -> None:
    """The admin ring takes one producer at a time (``shm.Producer``: a live second one is
    refused with ``RingError``, a ``ShmError``), and ``_admin_client`` turns every
    ``ShmError`` into "instance X is not running", exit 1. So `ringex admin halt BTC-USD`
    run while another `ringex admin` command (a deposit waiting for its answer, the
    supervisor's session end) holds the ring says the running instance is not running and
    halts nothing. The claim is also a check-then-set on the ring's producer word: two
    started at the same instant could both take it and write the same slots. Expected: admin
    commands take turns (a lock on ``var/<instance>/run/admin.lock``): the second waits for
    the first, then goes through."""
    cfg = config(admin_rings, tmp_path)
    _use_config(monkeypatch, cfg)
    holder = _hold_admin_ring(admin_rings, tmp_path, hold_s=1.0)
    try:
        code = _cli(["admin", "halt", "--profile", "x", "BTC-USD"])
    finally:
        holder.wait(10)
    out, err = capsys.readouterr()
    assert code == 0, f"exit {code}: {err.strip()!r}"
    assert "sent" in out
    sent = router_line.read(8)
    assert [type(r) for r in sent] == [AdminCommand], sent


def test_an_admin_command_that_waits_too_long_says_who_holds_the_ring(
    admin_rings: str, tmp_path: Path
) -> None:
    """One try (``wait_s=0``, the supervisor's session end) while another admin command
    holds the ring: refused with a message naming that command's pid, not "not running"."""
    cfg = config(admin_rings, tmp_path)
    holder = _hold_admin_ring(admin_rings, tmp_path, hold_s=2.0)
    try:
        with pytest.raises(Exception, match=f"pid {holder.pid}") as refused:
            AdminClient(cfg, wait_s=0.0).close()
    finally:
        holder.wait(10)
    assert "not running" not in str(refused.value)


# -- 2. argument errors of halt/resume/deposit/withdraw: found only after attaching -----------


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["halt", "BTC-XYZ"], 2),
        (["resume", "BTC-XYZ"], 2),
        (["deposit", "--account", "7", "--asset", "USD", "--amount", "1.0000000001"], 1),
        (["deposit", "--account", "7", "--asset", "USD", "--amount", "ten"], 1),
        (["deposit", "--account", "7", "--asset", "XYZ", "--amount", "1"], 1),
        (["withdraw", "--account", "7", "--asset", "USD", "--amount", "1e400"], 1),
        (["deposit", "--account", "0", "--asset", "USD", "--amount", "1"], 1),
        (["deposit", "--account", "7", "--asset", "USD", "--amount", "1", "--key", "0"], 1),
    ],
)
def test_a_bad_admin_argument_is_refused_before_anything_is_attached(
    argv: list[str],
    status: int,
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`ringex admin end-session BTC-XYZ` and `add-user --deposit USD=1.001` are refused
    before anything is attached, naming what is wrong. `halt BTC-XYZ` and `deposit --amount
    1.0000000001` (an unknown symbol or asset, too many decimals, not a number, beyond 64
    bits, account or key out of range) were checked only inside ``AdminClient``, once the
    instance's rings were attached: on an instance that is down the operator is told "not
    running" (and fixes the wrong thing), and an unknown name printed as a quoted
    ``KeyError`` repr. Expected: one line on stderr naming the value, whether the instance
    runs or not (here: it does not, so the message must not be "not running"); exit 2 for
    an unknown symbol, as `end-session` has it, and 1 for a value, as deposit has always
    had it (tests/unit/supervisor/test_supervisor.py pins "1e-9": 1)."""
    _use_config(monkeypatch, config(instance, tmp_path))
    code = _cli(["admin", *argv[:1], "--profile", "x", *argv[1:]])
    err = capsys.readouterr().err
    assert code == status, f"exit {code}: {err.strip()!r}"
    assert "not running" not in err
    assert err.count("\n") == 1 and not err.startswith('ringex admin: "'), err


# -- 3. `ringex run` over a running instance starts a second supervisor ------------------------


def test_run_of_an_instance_that_runs_is_refused_without_starting_anything(
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`ringex run --detach` twice: the second starts a supervisor, which refuses (its
    segments are live) and exits 1; the command prints "the supervisor exited with 1: see
    .../supervisor.log" on stdout, and the reason is only in the log of the instance that
    runs, interleaved with its lines. Expected: `ringex run` (foreground or --detach) of an
    instance whose status names a live supervisor says so on stderr, with its pid, exit 1,
    and starts nothing."""
    cfg = config(instance, tmp_path)
    _use_config(monkeypatch, cfg)
    status_path(cfg).parent.mkdir(parents=True, exist_ok=True)
    status_path(cfg).write_text(
        f'{{"state": "running", "supervisor_pid": {os.getpid()}, '
        f'"supervisor_started": {process_start(os.getpid())}, "processes": []}}'
    )
    started: list[object] = []

    def start(*args: object, **kwargs: object) -> int:
        started.append(args)
        return 0

    monkeypatch.setattr(subprocess, "Popen", start)
    monkeypatch.setattr(procs.cli, "supervisor_main", start)
    for argv in (["run", "--profile", "x", "--detach", "--timeout", "1"], ["run"]):
        code = _cli(argv)
        out, err = capsys.readouterr()
        assert code == 1, f"{argv}: exit {code}: {out!r} {err!r}"
        assert f"pid {os.getpid()}" in err and "running" in err, err
    assert started == []


# -- 4. add-user takes its password only on argv (visible in ps, kept in shell history) --------


def test_add_user_reads_its_password_from_stdin(
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--password P`` is the only way to give add-user a password: any user on the host
    sees it in ``ps``/``/proc/<pid>/cmdline`` while the command runs, and it lands in shell
    history. Expected: ``--password-stdin`` reads it from the first line of stdin (as
    ``docker login --password-stdin``); an empty one is refused, exit 2."""
    cfg = config(instance, tmp_path)
    _use_config(monkeypatch, cfg)
    monkeypatch.setattr(procs.admin.commands, "admin_client", lambda _cfg: _FakeClient())
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret\n"))
    argv = ["admin", "add-user", "--profile", "x", "--username", "dora", "--password-stdin"]
    code = _cli(argv)
    err = capsys.readouterr().err
    assert code == 0, f"exit {code}: {err!r}"
    assert UserStore(users_path(cfg)).verify("dora", "s3cret") is not None
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    assert _cli([*argv[:5], "erin", "--password-stdin"]) == 2
    assert UserStore(users_path(cfg)).get("erin") is None


class _FakeClient:
    """An admin client whose router opens every account."""

    def create_account(self, account: int) -> AccountReply:
        return AccountReply(1, time.time_ns(), 0, 0, 0, account, 0, ResultCode.OK, 0)

    def close(self) -> None:
        pass
