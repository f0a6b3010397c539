"""Review 28 of operations: the supervisor, the `ringex` command line and the config.

Each ``test_*`` whose docstring starts with a fault fails on the code as reviewed; the
"pinned" tests at the end hold behaviour that was checked and found correct.

The supervisor tests that need stand-in processes run this module under
``python -m procs.supervisor.held <this module> MODE MARKER`` (``main`` below), as
``test_review3_ops_bugs`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

import procs.supervisor.main as supervisor_main
from config import load_profile
from config.loader import ConfigError
from procs import cli, detached_start
from procs.common.run_files import read_status
from procs.common.topology import users_path
from procs.common.users import UserStore
from procs.supervisor.draining import stop_bound_s
from procs.supervisor.main import Child, Supervisor, SupervisorError
from procs.supervisor.plan import ProcessSpec
from shm.inspect import list_segments
from shm.liveness import pid_alive
from tests.scripts_loader import ROOT, load_script
from tests.unit.supervisor.test_supervisor import write_profile
from tests.unit.test_review_config_cli_bugs import _cli, _instance_config, fake_admin

__all__ = ["fake_admin"]  # a fixture of the config/CLI review, used here as it is

THIS = "tests.unit.supervisor.test_review28_ops"


def main(argv: list[str]) -> int:
    """A supervised stand-in (``held.py`` calls it): ``sleep MARKER`` writes its pid to MARKER
    and sleeps until it is stopped."""
    _mode, marker = argv[2:4]  # after "--profile <file>", which every process is given
    # made whole at once: a reader that sees the file sees the pid (a file made, then
    # written, was read empty once: int('') under load)
    Path(f"{marker}.tmp").write_text(str(os.getpid()))
    Path(f"{marker}.tmp").replace(marker)
    while True:
        time.sleep(1)


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the stand-ins import this module from the repository root


def _segments(instance: str) -> set[str]:
    return {s.name for s in list_segments(instance)}


# -- 1. two starts at once: the loser removes the winner's rings ------------------------------


def test_a_start_that_loses_the_race_for_the_rings_leaves_the_winners_rings(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Supervisor.create_rings`` (procs/supervisor/main.py:123-132) checks for a running
    instance, removes "what a dead instance left", then creates the rings: nothing holds the
    instance between the check and the creation. When two starts of one instance overlap
    (two ``ringex run --detach`` at once, a retry script, systemd plus an operator), the
    one whose creation meets the other's first ring fails with "already exists" and its
    error path (line 131) runs ``remove_instance``: it unlinks every ring the *other*
    supervisor just made, whose processes then fail to attach. Here two concurrent ``ringex
    run --detach`` of one profile both ended "the supervisor exited with 1" (the log: the
    loser's "segment ... gw0-cmd already exists", then the winner's "matcher-m1 exited with
    1 while starting"): nothing ran. The interleaving is made deterministic by running the
    winner's creation at the loser's ``shm_short`` check, the step between its check and its
    creation. A correct start removes only segments it made (or stale ones), under a lock
    on the instance held from the check to the creation."""
    cfg = load_profile(str(write_profile(tmp_path / "p.toml", instance, tmp_path / "var")))
    winner, loser = Supervisor(cfg, "p"), Supervisor(cfg, "p")
    real = supervisor_main.shm_short  # type: ignore[attr-defined]

    def the_other_start_creates_now(c: Any) -> str:
        monkeypatch.setattr(supervisor_main, "shm_short", real)
        with contextlib.suppress(SupervisorError):  # a fix may refuse the winner here
            winner.create_rings()
        return real(c)

    monkeypatch.setattr(supervisor_main, "shm_short", the_other_start_creates_now)
    try:
        with contextlib.suppress(SupervisorError):
            loser.create_rings()
        made = set(winner._rings)
        left = _segments(instance)
        assert made <= left, f"the winner's rings {sorted(made - left)} were removed by the loser"
    finally:
        for sup in (winner, loser):
            for ring in sup._rings.values():
                ring.close()


# -- 2. add-user: a comp id the user store refuses opens the account first --------------------


def test_add_user_refuses_a_comp_id_the_user_store_cannot_take_before_opening_the_account(
    tmp_path: Path, instance: str, fake_admin: list[tuple[Any, ...]]
) -> None:
    """``add_user`` (procs/admin/add_user.py:32) checks only a comp id's length; the user
    store takes ``[A-Za-z0-9][A-Za-z0-9._:-]{0,31}`` (procs/common/users.py:38). So
    ``add-user --comp-id "bad id"`` (or a username with a space, a slash, a leading dash)
    passes the checks, opens the account (line 62), and then ``UserStore.add`` raises
    ValueError, which nothing catches: a traceback, and an open account no user can log on
    to (run against a live instance here: account 100 was opened, the next add-user got
    101). With the instance down it says "not running", where README promises add-user's own
    checks are exit 2 "whether the instance runs or not". The fix: check the comp id with
    ``users.COMP_ID`` beside the length check, before anything is opened."""
    config = _instance_config(tmp_path, instance)
    argv = ["admin", "add-user", "--config", str(config), "--password", "p"]
    try:
        code = _cli([*argv, "--username", "u", "--comp-id", "bad id", "--deposit", "USD=10"])
    except ValueError as exc:
        pytest.fail(f"a traceback ({exc}) after the admin client sent {fake_admin}")
    assert code == 2
    assert fake_admin == []


# -- 3. add-user: an empty password on the command line makes a passwordless user -------------


def test_add_user_refuses_an_empty_password_given_on_the_command_line(
    tmp_path: Path, instance: str, fake_admin: list[tuple[Any, ...]]
) -> None:
    """``run_admin`` refuses an empty password read with ``--password-stdin`` ("no password
    on stdin", exit 2: procs/admin/commands.py:90-94) but takes ``--password ""`` as it is
    (procs/admin/add_user.py has no check): the user is stored with the digest of "" and
    the command says it is done (exit 0). The gateway hashes a Logon's Password (554) as
    ``msg.get(554) or b""`` (procs/gateway/logon.py:69), so a Logon carrying that comp id and
    no password at all logs on as the user and trades its account. A script that builds the
    command from an unset variable (``--password "$PW"``) makes such a user silently. The
    fix: refuse an empty password from argv exactly as from stdin, before anything opens."""
    config = _instance_config(tmp_path, instance)
    argv = ["admin", "add-user", "--config", str(config), "--username", "nopw"]
    code = _cli([*argv, "--password", ""])
    stored = UserStore(users_path(load_profile(str(config)))).get("nopw")
    assert (code, stored, fake_admin) == (2, None, []), (
        f"exit {code}; stored {stored}; sent {fake_admin}"
    )


# -- 4. supervisor.nice the supervisor may not set: an opaque traceback -----------------------


def test_a_negative_nice_the_supervisor_may_not_set_is_a_message_not_a_traceback(
    instance: str, tmp_path: Path
) -> None:
    """``supervisor.nice`` takes -20..19 (config/schema.py:160) and the preflight
    (procs/supervisor/preflight.py) checks only the CPUs of ``supervisor.cores``, although
    its docstring says it is there so that no process fails to start with "an opaque
    ``preexec_fn`` error". A negative niceness needs CAP_SYS_NICE (or RLIMIT_NICE), which
    a supervisor run by an ordinary user lacks: ``os.nice(-5)`` in ``_spawn``'s ``pin``
    (procs/supervisor/main.py:184-185) fails in the child, and ``prestart`` (called outside any
    ``try`` at main.py:510) raises "SubprocessError: Exception occurred in preexec_fn."
    through ``Supervisor.run`` and ``main``: a traceback that names neither the process
    nor the setting, and no status.json reason for ``ringex status``. Run here with
    CAP_SYS_NICE dropped from the bounding set (``setpriv``), as a non-root operator runs it.
    The fix: refuse it in the preflight, naming ``supervisor.nice[...]`` and the limit, or
    turn a spawn failure into a SupervisorError naming the process and its cores/nice."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    profile = write_profile(
        tmp_path / "p.toml", instance, tmp_path / "var", 'nice = {"matcher-m1" = -5}\n'
    )
    result = subprocess.run(
        [setpriv, "--bounding-set", "-sys_nice", sys.executable, "-m", "procs.supervisor.main",
         "--profile", str(profile)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert _segments(instance) == set()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    assert "nice" in result.stderr


# -- 5. a metrics_host the config takes for "every address" cannot be served ------------------


def test_the_wildcard_metrics_host_the_config_accepts_is_served(tmp_path: Path) -> None:
    """``_check_listeners`` (config/schema.py:398) treats a host of "" as the wildcard
    ("every address": it clashes with any host on the port), and the gateways' asyncio
    servers bind "" as every interface. ``supervisor.metrics_host = ""`` therefore loads,
    but ``MetricsServer`` (procs/supervisor/metrics.py:393) calls ``getaddrinfo("", port)``,
    which fails ("Name or service not known"): the supervisor starts every process, then
    gives up in ``serve_metrics`` and stops the instance with "cannot serve metrics on :0"
    (seen with `ringex run --detach`: "the supervisor exited with 1"). A config value that
    loads must run: serve "" as the wildcard (``getaddrinfo(host or None, ...)``, with the
    URL showing a usable address), or refuse it at load naming ``supervisor.metrics_host``."""
    path = tmp_path / "m.toml"
    path.write_text(
        f'instance = "rv28m"\nvar_dir = "{tmp_path}"\n[supervisor]\nmetrics_host = ""\n'
    )
    try:
        cfg = load_profile(str(path))
    except ConfigError as exc:  # refused at load: as good, if it names the key
        assert "metrics_host" in str(exc)
        return
    sup = Supervisor(cfg, str(path))
    try:
        sup.serve_metrics()
    except SupervisorError as exc:
        pytest.fail(f"loaded, then not served: {exc}")
    finally:
        if sup.metrics is not None:
            sup.metrics.close()


# -- 6. `ringex run --detach` that gives up kills the supervisor in the middle of its stop -----


def test_run_detach_that_gives_up_waits_for_the_stop_as_long_as_ringex_stop_does(
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """When ``--timeout`` passes, ``_run`` (procs/cli.py:192-197) sends SIGTERM to the
    supervisor it started and waits ``STOP_WAIT_S`` = 30 s (cli.py:54, "its own stop grace
    is 20 s for the slowest process") before SIGKILL. But a supervisor's stop takes up to
    three groups' 20 s grace, ``drain_timeout_s`` and 30 s more (``stop_bound_s``: 100 s
    with the defaults), which is what ``ringex stop`` waits (cli.py:213-215) for that very
    reason. A supervisor still stopping a slow database writer or a deaf process after 30 s
    is SIGKILLed: it never reaches ``_stop_embedded_database`` (the embedded PostgreSQL
    keeps running) nor ``remove_instance`` (the segments stay), and its processes are left
    to their parent-death signals. The fix: wait ``stop_bound_s(...)`` as ``_stop`` does."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    cfg = load_profile(str(profile))
    waits: list[float | None] = []

    class NeverReady:
        pid = 0x3FFFFFFF  # no such process: read_status never names it
        returncode = None

        def poll(self) -> None:
            return None

        def terminate(self) -> None:
            pass

        def kill(self) -> None:
            pass

        def wait(self, timeout: float | None = None) -> int:
            waits.append(timeout)
            if timeout is not None:
                raise subprocess.TimeoutExpired("supervisor", timeout)
            return -9

    fake = types.SimpleNamespace(
        Popen=lambda *a, **k: NeverReady(),
        DEVNULL=subprocess.DEVNULL,
        STDOUT=subprocess.STDOUT,
        TimeoutExpired=subprocess.TimeoutExpired,
    )
    monkeypatch.setattr(detached_start, "subprocess", fake)
    assert cli.main(["run", "--config", str(profile), "--detach", "--timeout", "0.05"]) == 1
    assert "not ready" in capsys.readouterr().err
    bound = stop_bound_s(cfg.supervisor.drain_timeout_s, Supervisor.STOP_GRACE_S)
    assert waits and waits[0] is not None
    assert waits[0] >= bound, f"SIGKILL after {waits[0]} s; a stop may take {bound} s"


# -- 7. `status --wait-ready --timeout nan` never returns --------------------------------------


def test_wait_ready_with_a_nan_timeout_does_not_wait_forever(instance: str, tmp_path: Path) -> None:
    """``--timeout`` is ``type=float`` (procs/cli.py:375), which takes "nan"; ``_status``
    compares ``time.monotonic() >= deadline`` (cli.py:231) with ``deadline = nan``, which is
    never true: ``ringex status --wait-ready --timeout nan`` on an instance that is not
    ready polls forever (a health check that never answers, a deploy script that hangs,
    e.g. with a timeout computed from an unset variable). ``run --detach --timeout nan``
    instead kills the supervisor at once, and ``stop --timeout nan`` reports "still
    running after nan s". The fix: refuse a timeout that is not a number >= 0 (argparse
    type), exit 2."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    argv = [sys.executable, "-m", "procs.cli", "status", "--config", str(profile)]
    try:
        result = subprocess.run(
            [*argv, "--wait-ready", "--timeout", "nan"],
            cwd=ROOT, capture_output=True, text=True, timeout=8, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("ringex status --wait-ready --timeout nan still waiting after 8 s")
    assert result.returncode != 0


# -- 8. systemd_units.py stop unlinks the rings of units it did not stop ----------------------


def test_systemd_units_stop_keeps_the_rings_of_units_that_did_not_stop(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``stop`` (scripts/systemd_units.py:227-243) ignores every ``systemctl stop`` exit
    status, then unlinks the instance's segments with ``remove_instance`` whoever still
    uses them, prints "instance ... stopped" and returns 0. An instance started with
    ``--user`` and stopped without it (or by a user the system manager refuses) meets
    "Unit ... not loaded" (exit 5) or "Access denied" for every unit: its processes run on,
    on segments now unlinked, the script says it stopped them, and the next ``start``
    creates new rings beside them (a second matcher on new books while the first still
    holds the journal's lock...). Here the rings' live process is this test's; systemctl
    answers 5 for every unit. The fix: fail (exit 1, naming the units) when a stop fails,
    and remove only segments no live process uses."""
    units = load_script("systemd_units")
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    cfg = load_profile(str(profile))
    owner = Supervisor(cfg, str(profile))
    owner.create_rings()  # live: this process made them, as a unit's process would hold them

    class NotLoaded(units.Shell):  # type: ignore[misc,name-defined]
        def __call__(self, cmd: list[str], *, quiet: bool = False) -> int:
            return 5 if cmd[0] == "systemctl" else 0

    try:
        made = set(owner._rings)
        opts = units.Options(profile=str(profile), workdir=tmp_path)
        code = units.stop(cfg, opts, NotLoaded(dry_run=False))
        left = _segments(instance)
        assert (code, sorted(made - left)) == (1, []), capsys.readouterr().out
    finally:
        for ring in owner._rings.values():
            ring.close()


# -- 9. a standby's held promotion process that died fails the promotion ----------------------


def test_a_held_process_that_died_before_its_release_is_started_again(
    instance: str, tmp_path: Path
) -> None:
    """A standby's supervisor starts its promotion's processes at its own start, held after
    their imports (``run_standby``, procs/supervisor/main.py:575-578), and nothing watches
    them while the standby runs (its ``watch`` looks at the standby's children only). One
    that dies meanwhile (the OOM killer, an operator's kill) is still ``child.process`` at
    the promotion: ``prestart`` (main.py:150-152) skips it, ``_release`` writes its "go" into
    a broken pipe (suppressed), and ``_wait_ready`` raises "exited with -9 while starting":
    the promoted instance stops at once and the failover fails, although a fresh start of
    that process (what any restart does: crash-only) would have run. Meanwhile `ringex
    status` says the promotion is prestarted. Shown with the spare supervisor and one
    stand-in process killed while held. The fix: start anew a held process that has
    exited (``prestart``: ``child.process is None or child.process.poll() is not None``),
    or watch the spare's held processes while the standby runs."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var", "metrics = false\n")
    marker = tmp_path / "pid"
    spare = Supervisor(load_profile(str(profile)), str(profile))
    spare.children = [Child(ProcessSpec("standin", THIS, ("sleep", str(marker)), (), "", ""))]
    spare.prestart()
    held = spare.children[0].process
    assert held is not None
    try:
        held.kill()  # dies while held, before the promotion releases it
        held.wait()
        code = spare.run(lambda: spare.state == "running")
        assert code == 0, (read_status(spare.cfg) or {}).get("reason")
    finally:
        if held.stdin is not None and not held.stdin.closed:  # a fix may leave it unreleased
            with contextlib.suppress(OSError):
                held.stdin.close()
        for child in spare.children:
            if child.process is not None and child.process.poll() is None:
                child.process.kill()
                child.process.wait()
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(marker.read_text()), signal.SIGKILL)
    assert _segments(instance) == set()


# == pinned: checked and found correct =========================================================


def test_pinned_run_status_wait_ready_and_stop_of_a_real_instance(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pinned. `ringex run --detach` returns once every process is ready; ``status --json``
    has the README's per-process keys with their types (pid, alive, ready, cpus, restarts,
    uptime_s, heartbeat_age_s) and the state; ``--wait-ready --timeout 0`` says ready (0);
    a second ``run`` is refused naming the pid (1) and starts nothing; ``stop`` returns 0
    once the supervisor is gone, with no process and no segment left; ``status`` of the
    stopped instance is 0 and says "stopped"."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    cfg = load_profile(str(profile))
    conf = ["--config", str(profile)]
    pids: list[int] = []
    try:
        started = subprocess.run(  # as a shell runs it: the supervisor outlives the command
            [sys.executable, "-m", "procs.cli", "run", *conf, "--detach", "--timeout", "60"],
            cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        assert cli.main(["status", *conf, "--json", "--wait-ready", "--timeout", "0"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["state"] == "running" and isinstance(doc["supervisor_pid"], int)
        for p in doc["processes"]:
            pids.append(p["pid"])
            assert isinstance(p["pid"], int) and p["alive"] is True and p["ready"] is True
            assert isinstance(p["cpus"], list) and isinstance(p["restarts"], int)
            assert isinstance(p["uptime_s"], (int, float))
            assert p["heartbeat_age_s"] is None or isinstance(p["heartbeat_age_s"], float)
        pids.append(doc["supervisor_pid"])
        assert cli.main(["run", *conf, "--detach"]) == 1
        assert str(doc["supervisor_pid"]) in capsys.readouterr().err
        assert read_status(cfg)["supervisor_pid"] == doc["supervisor_pid"]  # type: ignore[index]
    finally:
        stopped = cli.main(["stop", *conf, "--timeout", "60"])
    assert stopped == 0
    assert not [pid for pid in pids if pid_alive(pid)]
    assert _segments(instance) == set()
    capsys.readouterr()
    assert cli.main(["status", *conf]) == 0
    assert "stopped" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[[gateways]]\nname = "gw1"\nid = 1\n[gateways.rest]\nport = 8080\nbogus = 1\n',
         "bogus"),
        ('[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD", "ETH-USD"]\nsnapshot = 5\n',
         "snapshot"),
        ('[[assets]]\nname = "USD"\nid = 1\ndecimals = 6\nprecision = 2\n', "precision"),
        ("[supervisor.cores]\nmatcher = [0]\n", "matcher"),
        ("[ring]\ncapacity = 1000\n", "ring.capacity"),
        ("[supervisor]\nmetrics_port = 70000\n", "metrics_port"),
        ("[supervisor]\nready_timeout_s = 0\n", "ready_timeout_s"),
        ("[supervisor]\ndrain_timeout_s = -1.0\n", "drain_timeout_s"),
        ("[supervisor]\nrestart_window_s = nan\n", "restart_window_s"),
    ],
    ids=["rest-key", "matcher-key", "asset-key", "cores-name", "capacity", "port",
         "ready-zero", "drain-negative", "window-nan"],
)  # fmt: skip
def test_pinned_bad_config_is_refused_naming_the_key_and_the_file(
    tmp_path: Path, text: str, named: str
) -> None:
    """Pinned. Unknown keys in nested tables and arrays of tables, a capacity that is not a
    power of two, a port past 65535, zero, negative and NaN timeouts: each is one
    ConfigError naming the key (or its path) and the file, and `ringex status` says it on
    one line with exit status 2."""
    path = tmp_path / "bad.toml"
    path.write_text(f'instance = "rv28c"\nvar_dir = "{tmp_path}"\n{text}')
    with pytest.raises(ConfigError) as caught:
        load_profile(str(path))
    message = str(caught.value)
    assert str(path) in message
    assert named.rsplit(".", maxsplit=1)[-1] in message, message
    assert _cli(["status", "--config", str(path)]) == 2


@pytest.mark.parametrize(
    ("argv", "status", "said"),
    [
        (["deposit", "--account", "7", "--asset", "USD", "--amount", "1.0000001"], 1,
         ["1.0000001", "6 decimal places"]),
        (["deposit", "--account", "7", "--asset", "USD", "--amount", "1e30"], 1,
         ["1e30", str(2**63 - 1)]),
        (["withdraw", "--account", "7", "--asset", "USD", "--amount", "-5"], 2,
         ["-5", "positive"]),
        (["deposit", "--account", "7", "--asset", "DOGE", "--amount", "1"], 1,
         ["DOGE", "USD"]),
        (["deposit", "--account", "0", "--asset", "USD", "--amount", "1"], 1, ["account 0"]),
        (["halt", "DOGE-USD"], 2, ["DOGE-USD", "BTC-USD"]),
        (["deposit", "--account", "7", "--asset", "USD", "--amount", "abc"], 1, ["abc"]),
    ],
    ids=["precision", "past-int64", "negative", "asset", "account", "symbol", "not-a-number"],
)  # fmt: skip
def test_pinned_admin_refuses_bad_values_naming_value_and_limit_with_nothing_running(
    argv: list[str],
    status: int,
    said: list[str],
    instance: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Pinned. README: an unknown symbol is exit 2, an amount, asset or account the records
    cannot carry exit 1, a signed amount exit 2, each one line on stderr naming the value
    (and the limit or the known names) whether the instance runs or not."""
    config = _instance_config(tmp_path, instance)
    assert _cli(["admin", argv[0], "--config", str(config), *argv[1:]]) == status
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not running" not in err, err
    for text in said:
        assert text in err, err
