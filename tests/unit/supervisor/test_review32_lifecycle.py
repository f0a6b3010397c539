"""Review 32 of the supervisor and the operator's command line: configs accepted that break
at run time, errors that do not name the value, and `ringex run --detach`, `status
--wait-ready` and the ops scripts failing without saying why.

Each ``test_*`` whose docstring starts with "Fault" failed on the code as reviewed and passes
since its fix. They run the real commands (``ringex``, ``scripts/*.py``) as operators do.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from config.loader import ConfigError
from procs.common.run_files import read_status
from tests.scripts_loader import ROOT
from tests.unit.supervisor.test_review9_lifecycle_bugs import ringex, wait_for, write_profile

TWO_MATCHERS = """
[[matchers]]
name = "m1"
symbols = ["BTC-USD", "ETH-USD"]
[[matchers]]
name = "m2"
symbols = []
"""


def _refused(tmp_path: Path, text: str) -> str:
    """The one line ``ringex status`` says of a config file holding ``text`` (exit 2)."""
    path = tmp_path / "bad.toml"
    path.write_text(f'instance = "rv32bad"\nvar_dir = "{tmp_path / "var"}"\n{text}')
    shown = ringex("status", "--config", str(path))
    assert shown.returncode == 2, (shown.returncode, shown.stdout, shown.stderr)
    assert len(shown.stderr.strip().splitlines()) == 1 and str(path) in shown.stderr
    return shown.stderr


# -- 1. config: what loads must run; what is refused names key, value and limit ---------------


def test_a_matcher_owning_no_symbols_is_refused_at_load(tmp_path: Path) -> None:
    """Fault: ``[[matchers]]`` with ``symbols = []`` loads (``MatcherConfig.symbols`` has no
    lower bound, and the ownership check only looks at symbols that are listed); ``ringex
    run`` then starts every process and the matcher dies while starting ("ValueError: a
    matcher needs at least one symbol", procs/core/engine.py), which stops the instance with
    only "matcher-m2 exited with 1 while starting". Refused at load, naming the matcher."""
    said = _refused(tmp_path, TWO_MATCHERS)
    assert "'m2'" in said and "no symbol" in said, said


def test_a_symbol_listed_twice_by_one_matcher_is_named_so(tmp_path: Path) -> None:
    """Fault: one matcher that lists a symbol twice was refused as "symbol 'BTC-USD' is owned
    by matchers 'm1' and 'm1'; each symbol has one matcher": the operator looks for a second
    matcher that is not there."""
    said = _refused(tmp_path, '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD", "ETH-USD", '
                    '"BTC-USD"]\n')  # fmt: skip
    assert "'m1' lists symbol 'BTC-USD' twice" in said, said


def test_a_sleep_minimum_above_its_maximum_is_refused(tmp_path: Path) -> None:
    """Fault: README (Configure): "a minimum above its maximum" is refused at load. But
    ``wait.min_sleep_s = 0.5`` with ``max_sleep_s = 0.001`` loads, and the backoff then
    ignores the minimum in silence (``min(max_sleep_s, ...)``)."""
    said = _refused(
        tmp_path, '[wait]\nstrategy = "sleep"\nmin_sleep_s = 0.5\nmax_sleep_s = 0.001\n'
    )
    assert "min_sleep_s = 0.5" in said and "max_sleep_s = 0.001" in said, said


def test_a_symbol_whose_lot_fits_no_size_between_min_and_max_is_refused(tmp_path: Path) -> None:
    """Fault: ``lot = 10`` with ``min_qty = 1`` and ``max_qty = 5`` loads: an order's size must
    be a multiple of the lot within [min_qty, max_qty] (procs/core/order_checks.py), so the
    symbol runs and refuses every order. Refused at load, naming the three and the symbol."""
    said = _refused(
        tmp_path,
        '[[symbols]]\nname = "BTC-USD"\nid = 1\nqty_decimals = 4\nlot = 10\nmin_qty = 1\n'
        'max_qty = 5\n[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n',
    )
    assert "'BTC-USD'" in said and "lot = 10" in said and "max_qty = 5" in said, said


@pytest.mark.parametrize(
    ("text", "named"),
    [  # msgspec's own message names the path and the limit, never the value refused
        ('[[symbols]]\nname = "BTC-USD"\nid = 1\ntick = 0\n[[matchers]]\nname = "m1"\n'
         'symbols = ["BTC-USD"]\n', ("symbols[0].tick = 0", "'BTC-USD'", ">= 1")),
        ("[ring]\ncapacity = 1\n", ("ring.capacity = 1", ">= 2")),
        ("[supervisor.nice]\nrouter = 40\n", ("supervisor.nice['router'] = 40", "<= 19")),
        ("[supervisor.cores]\nrouter = [0, -3]\n", ("supervisor.cores['router'][1] = -3",)),
        ('[ring]\ncapacity = "big"\n', ("ring.capacity = 'big'",)),
    ],
)  # fmt: skip
def test_a_value_out_of_range_is_named_with_the_value(
    tmp_path: Path, text: str, named: tuple[str, ...]
) -> None:
    """Fault: a value out of its range was refused as "Expected `int` >= 1 - at
    `$.symbols[0].tick`": the path and the limit, not the value nor which symbol (and for a
    table of names, ``supervisor.nice[...]``, not even which process)."""
    said = _refused(tmp_path, text)
    for part in named:
        assert part in said, said


# -- 2. `ringex run --detach` that fails says why ----------------------------------------------


def test_run_detach_refused_at_start_says_why_on_stderr(instance: str, tmp_path: Path) -> None:
    """Fault: a start the supervisor refuses (here a ``supervisor.cores`` CPU this host
    lacks) ended ``ringex run --detach`` with "the supervisor exited with 1: see
    .../supervisor.log" on stdout: the reason only in the log, a script's stderr empty."""
    cpu = (os.cpu_count() or 1) + 40
    tail = f'cores = {{ "router" = [{cpu}] }}\n'
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var", tail=tail)
    run = ringex("run", "--config", str(profile), "--detach", "--timeout", "30")
    assert run.returncode == 1
    assert "supervisor.cores" in run.stderr and str(cpu) in run.stderr, (run.stdout, run.stderr)
    assert "Traceback" not in run.stdout + run.stderr


def test_a_failed_start_is_reported_by_run_detach_and_status_wait_ready(
    instance: str, tmp_path: Path
) -> None:
    """Fault: a process that exits while starting stops the instance with a reason the
    supervisor writes into status.json; yet ``ringex run --detach`` said only "the supervisor
    exited with 1: see ...log" (stdout), and ``ringex status --wait-ready --timeout S`` "not
    ready within S s": neither why, nor that nothing runs. Also: the stopped instance's
    status showed each dead process with the uptime it had when the stop killed it."""
    with socket.socket() as taken:  # the gateway's FIX port: it exits while starting
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        top = f'[[gateways]]\nname = "gw1"\nid = 1\nport = {port}\n'
        profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var", top=top)
        run = ringex("run", "--config", str(profile), "--detach", "--timeout", "60")
    assert run.returncode == 1
    assert "gateway-gw1 exited with 1 while starting" in run.stderr, (run.stdout, run.stderr)
    waited = ringex("status", "--config", str(profile), "--wait-ready", "--timeout", "0.2")
    assert waited.returncode == 1
    assert "not running" in waited.stderr, waited.stderr
    assert "gateway-gw1 exited with 1 while starting" in waited.stderr, waited.stderr
    shown = ringex("status", "--config", str(profile), "--json")
    doc = json.loads(shown.stdout)
    down = [p for p in doc["processes"] if not p["alive"]]
    assert down and all(p["uptime_s"] == 0 for p in down), doc["processes"]


def test_wait_ready_of_an_instance_that_never_ran_says_so(tmp_path: Path) -> None:
    """Fault: ``status --wait-ready`` of an instance with no status at all timed out with
    "not ready within S s", as if it were starting."""
    profile = write_profile(tmp_path / "p.toml", "rv32never", tmp_path / "var")
    waited = ringex("status", "--config", str(profile), "--wait-ready", "--timeout", "0")
    assert waited.returncode == 1 and "not running" in waited.stderr, waited.stderr


def test_run_with_a_var_dir_it_cannot_create_is_one_line(instance: str, tmp_path: Path) -> None:
    """Fault: a ``var_dir`` that cannot be created (here under /proc) made ``ringex run``,
    foreground or ``--detach``, end in a FileNotFoundError traceback."""
    profile = write_profile(tmp_path / "p.toml", instance, Path("/proc/ringex-rv32"))
    for detach in ([], ["--detach", "--timeout", "5"]):
        run = ringex("run", "--config", str(profile), *detach)
        assert run.returncode == 1, (detach, run.stderr)
        said = run.stdout + run.stderr
        assert "Traceback" not in said and "/proc/ringex-rv32" in run.stderr, said
        assert "var_dir" in run.stderr, said


# -- 3. the ops scripts: a config that does not load is one line, exit 2 ----------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["scripts/systemd_units.py", "start", "--dry-run", "--profile", "{missing}"],
        ["scripts/failover.py", "status", "--primary", "{missing}", "--standby", "{missing}"],
        ["scripts/failover.py", "promote", "--primary", "{missing}", "--standby", "{missing}"],
        ["scripts/run_demo.py", "--profile", "{missing}"],
    ],
)
def test_an_ops_script_given_a_config_that_does_not_load_says_so_in_one_line(
    tmp_path: Path, argv: list[str]
) -> None:
    """Fault: ``scripts/systemd_units.py``, ``scripts/failover.py`` and ``scripts/run_demo.py``
    (`make run PROFILE=...`) given a profile that does not load (a typo in the path, a bad
    key) ended in a ConfigError traceback, exit 1, where every ``ringex`` command says it
    in one line, exit 2."""
    missing = str(tmp_path / "nope.toml")
    done = subprocess.run(
        [sys.executable, *(a.format(missing=missing) for a in argv)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and missing in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# -- pinned: checked and found sound ------------------------------------------------------------


def test_pinned_config_refusals_name_what_is_wrong(tmp_path: Path) -> None:
    """Pinned. Symbols owned by two matchers, a symbol no matcher owns, ports that collide
    between a gateway and market data, min_qty above max_qty: refused, each named."""
    for text, named in (
        ('[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD", "ETH-USD"]\n[[matchers]]\n'
         'name = "m2"\nsymbols = ["ETH-USD"]\n', "matchers 'm1' and 'm2'"),
        ('[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n', "ETH-USD"),
        ('[[gateways]]\nname = "gw1"\nid = 1\nport = 9000\n[marketdata]\nport = 9000\n',
         "both listen there"),
        ('[[symbols]]\nname = "BTC-USD"\nid = 1\nqty_decimals = 4\nmin_qty = 9\nmax_qty = 5\n'
         '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n', "min_qty = 9 is above max_qty = 5"),
    ):  # fmt: skip
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(ConfigError) as refused:
            load_profile(str(path))
        assert named in str(refused.value) and str(path) in str(refused.value)


def test_pinned_stop_of_an_instance_that_is_not_running_says_so(tmp_path: Path) -> None:
    """Pinned. ``ringex stop`` with nothing running: says so, exit 0 (README)."""
    profile = write_profile(tmp_path / "p.toml", "rv32idle", tmp_path / "var")
    stopped = ringex("stop", "--config", str(profile))
    assert stopped.returncode == 0 and "rv32idle is not running" in stopped.stdout


# -- 4. a crash loop: escalated with the reason, and the restarts counted as made --------------


def test_a_crash_loop_stops_the_instance_with_the_reason_and_counts_restarts_made(
    instance: str, tmp_path: Path
) -> None:
    """Fault: a process that exits more than ``restart_limit`` times within
    ``restart_window_s`` stops the instance (exit 1, the reason in ``ringex status``), but
    ``restarts`` (status.json, and ``ringex_process_restarts_total``) counted the exit that
    was *not* restarted: with ``restart_limit = 1``, one restart, then the stop, and the
    status said ``restarts 2``."""
    tail = "restart_window_s = 600\n"
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var", tail=tail)
    profile.write_text(profile.read_text().replace("restart_limit = 3", "restart_limit = 1"))
    cfg = load_profile(str(profile))
    sup = subprocess.Popen(
        [sys.executable, "-m", "procs.supervisor.main", "--profile", str(profile)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def matcher() -> dict[str, Any]:
            status = read_status(cfg) or {"state": "", "processes": []}
            found = [p for p in status["processes"] if p["name"] == "matcher-m1"]
            return found[0] if found and status["state"] == "running" else {}

        wait_for(lambda: matcher().get("ready"))
        first = matcher()["pid"]
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: matcher().get("ready") and matcher()["pid"] != first)
        os.kill(matcher()["pid"], signal.SIGKILL)
        assert sup.wait(60) == 1
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
        assert sup.stderr is not None
        logged = sup.stderr.read().decode()
        sup.stderr.close()
    assert "more than restart_limit=1" in logged, logged[-2000:]
    shown = ringex("status", "--config", str(profile), "--json")
    doc = json.loads(shown.stdout)
    assert doc["state"] == "stopped" and "matcher-m1 exited 2 times" in doc["reason"], doc
    counted = {p["name"]: p["restarts"] for p in doc["processes"]}
    assert counted == {"matcher-m1": 1, "router": 0}, counted
