"""Review 52 of the operator-facing surfaces: the config's cross-field checks, the systemd
units, and `scripts/failover.py status`, as an operator of a venue meets them.

Each test failed on the code it was written against, for the fault it names (its
docstring: what README or issue 8 asks, what the code did and where, and what happened),
and passes since its fix (the same session's commits). All of them are pure calls
(config loading, the units' dry run or a recording shell, ``failover.status`` over files
written here): no instance is started.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from config import load_profile
from config.loader import ConfigError
from procs.common.record_codec import RecordCodec
from procs.common.run_files import run_dir
from procs.core.symbol_rules import record_of
from procs.core.symbols import symbol_specs
from tests.e2e.test_standby import profile as standby_profile
from tests.scripts_loader import load_script

units = load_script("systemd_units", "review52")
failover = load_script("failover", "review52")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def unit_profile(tmp_path: Path, instance: str, extra: str = "") -> Path:
    return write(
        tmp_path,
        "units.toml",
        f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n'
        '[[gateways]]\nname = "gw1"\nid = 1\n' + extra,
    )


def dry_run(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[list[list[str]], str]:
    """The ``systemd-run`` lines of ``start --dry-run``, and everything it printed."""
    assert units.main(["start", "--profile", str(path), "--dry-run"]) == 0
    said = capsys.readouterr()
    out = said.out + said.err
    runs = [shlex.split(line) for line in said.out.splitlines() if line.startswith("systemd-run")]
    return runs, out


def unit_environment(cmd: list[str]) -> dict[str, str]:
    """The variables a ``systemd-run`` line gives its unit, whichever way it spells them
    (``--setenv=K=V``, ``--setenv K=V``, ``-E K=V``, ``-p Environment=K=V``; a name alone,
    ``--setenv=K``, takes the value of the caller's environment, as systemd-run does)."""
    found: dict[str, str] = {}
    for i, arg in enumerate(cmd):
        if arg == "--":
            break
        value = ""
        if arg.startswith("--setenv="):
            value = arg.removeprefix("--setenv=")
        elif arg in ("--setenv", "-E") and i + 1 < len(cmd):
            value = cmd[i + 1]
        elif arg == "-p" and i + 1 < len(cmd) and cmd[i + 1].startswith("Environment="):
            value = cmd[i + 1].removeprefix("Environment=")
        if "=" in value:
            key, _, val = value.partition("=")
            found[key] = val
        elif value and arg != "-p" and value in os.environ:
            found[value] = os.environ[value]
    return found


# -- the config ------------------------------------------------------------------------------


def test_gateways_sharing_a_fix_port_with_other_comp_ids_are_refused_at_load(
    tmp_path: Path,
) -> None:
    """README (Configure): "two listeners on one host:port" are refused at load, except
    "gateways that all set `reuse_port` may share theirs"; a client's Logon must carry
    TargetCompID = the gateway's ``comp_id`` (Operate). ``RingexConfig._check_listeners``
    (config/schema.py) lets two ``reuse_port`` gateways share port 9878 whatever their
    ``comp_id``: this config loads, and ``ringex status`` lists ``fix gw1 127.0.0.1:9878
    CompID RINGEX1`` and ``fix gw2 127.0.0.1:9878 CompID RINGEX2``. The kernel hands each
    connection to either gateway, and ``logon.before_password`` (procs/gateway/logon.py)
    refuses a TargetCompID that is not its own, so about half of every client's Logons are
    refused ("TargetCompID 'RINGEX1' is not 'RINGEX2'") at random: a config that loads and
    cannot serve. It should be refused at load, naming both gateways and comp ids."""
    path = write(
        tmp_path,
        "reuse.toml",
        'instance = "r52reuse"\n'
        '[[gateways]]\nname = "gw1"\nid = 1\nport = 9878\nreuse_port = true\ncomp_id = "RINGEX1"\n'
        '[[gateways]]\nname = "gw2"\nid = 2\nport = 9878\nreuse_port = true\ncomp_id = "RINGEX2"\n',
    )
    with pytest.raises(ConfigError, match="comp_id") as refused:
        load_profile(str(path))
    assert "RINGEX1" in str(refused.value) and "RINGEX2" in str(refused.value)


def test_a_bracketed_ipv6_primary_is_understood_or_refused_at_load(tmp_path: Path) -> None:
    """README (Configure): "a `replication.primary` that is not host:port" is refused at
    load. ``"[::1]:9900"`` is how host:port is written for an IPv6 host (RFC 3986; `ringex
    status` itself writes IPv6 hosts in brackets, ``endpoints.url_host``). It loads, and
    ``ReplicationConfig.primary_address`` (config/schema.py) splits it with ``rpartition``
    into host ``"[::1]"``, brackets kept: ``Standby._connect_loop``
    (procs/replica/standby.py) then calls ``asyncio.open_connection("[::1]", 9900)``, which
    fails name resolution ("Name or service not known") and is retried forever, logged as
    "primary [::1]:9900 unreachable": a standby that never follows its primary, from a
    config that loaded (`failover.py demote --new-address [::1]:9900` fails the same way).
    The host should come out without its brackets (or the value be refused at load)."""
    path = write(
        tmp_path,
        "standby.toml",
        'instance = "r52v6"\n[replication]\nprimary = "[::1]:9900"\n',
    )
    try:
        cfg = load_profile(str(path))
    except ConfigError as exc:  # refused at load, naming the value: fixed too
        assert "[::1]:9900" in str(exc)
        return
    host, port = cfg.replication.primary_address()
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror as exc:
        pytest.fail(f"primary {cfg.replication.primary!r} loads as host {host!r}, which {exc}")


def test_a_max_qty_no_record_can_carry_is_refused_at_load(tmp_path: Path) -> None:
    """README (Configure): "A config that could not run is refused at load, naming what is
    wrong". ``SymbolConfig`` (config/schema.py) bounds ``tick``, ``lot``, ``min_qty`` and
    ``max_qty`` below only (``Positive``), and TOML gives Python integers of any size, so
    ``max_qty = 9223372036854775808`` (2**63, an operator's "no limit") loads. A starting
    router journals each symbol's rules (``Router._journal_rules``, procs/router/main.py)
    as a ``SymbolRules`` record whose ``max_qty`` is an int64: ``RecordCodec.encode_slots``
    raises ``EncodeError: SymbolRules.max_qty=9223372036854775808 is outside
    0..9223372036854775807`` at every start, so the router dies at each restart until the
    supervisor stops the instance. The limit should be refused at load, naming the key and
    the value (the same holds for ``tick``, ``lot`` and ``min_qty``)."""
    path = write(
        tmp_path,
        "big.toml",
        'instance = "r52big"\n'
        '[[symbols]]\nname = "BTC-USD"\nid = 1\nprice_decimals = 2\nqty_decimals = 4\n'
        "max_qty = 9223372036854775808\n"
        '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n',
    )
    try:
        cfg = load_profile(str(path))
    except ConfigError as exc:
        assert "max_qty" in str(exc) and "9223372036854775808" in str(exc), exc
        return
    record = record_of(symbol_specs(cfg, "m1")[0])  # what the router journals at its start
    try:
        RecordCodec().encode_slots([record])
    except ValueError as exc:  # EncodeError
        pytest.fail(f"the config loads, and its router cannot journal its rules: {exc}")


# -- production with systemd -----------------------------------------------------------------


def test_the_units_get_the_ringex_environment_the_supervisor_passes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """README (The rings): on ARM or POWER "`Ring` refuses to run there unless
    `RINGEX_ALLOW_WEAK_MEMORY=1`" (``shm/ring.py:_check_memory_model``); README
    (Production with systemd): the units run "the same processes" in place of the
    supervisor. The supervisor starts every process with its own environment
    (``Supervisor._spawn``: ``env={**os.environ, ...}``), so an operator who exported the
    variable runs the instance with `ringex run`. ``systemd_units.run_command``
    (scripts/systemd_units.py) gives each unit only ``--setenv=PYTHONUNBUFFERED=1``, and
    ``systemd-run`` passes the caller's environment to no unit: ``start`` creates the rings
    (the variable is set in its own process), then every unit's ``Ring.attach`` raises
    ``RingError`` on such a host and each unit is restarted until it is failed: the
    systemd path cannot run there at all, and no option sets the variable. (The same drops
    libpq's ``PG*`` variables an external ``database.dsn`` may rely on.) The ringex
    variables set where ``start`` runs should be passed on (``--setenv``)."""
    monkeypatch.setenv("RINGEX_ALLOW_WEAK_MEMORY", "1")
    runs, _ = dry_run(unit_profile(tmp_path, "r52env"), capsys)
    assert runs
    for cmd in runs:
        env = unit_environment(cmd)
        assert env.get("RINGEX_ALLOW_WEAK_MEMORY") == "1", (cmd, env)


@pytest.mark.skipif(os.geteuid() != 0, reason="--uid is the system manager's: run as root")
def test_start_with_uid_leaves_the_instance_directory_writable_by_the_units(
    tmp_path: Path, instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """README (Production with systemd): "`--uid ringex` runs the processes as that user
    (the rings are handed to it; `var/` must be its)". ``systemd_units.start`` (as root)
    takes the instance's lock first (``run_files.instance_lock``), whose
    ``run_dir(cfg).mkdir(parents=True)`` makes ``var/<instance>`` and
    ``var/<instance>/run`` owned by root, mode 0755, inside the ``var/`` the operator gave
    the unit user; only the shared-memory segments are handed over (``chown_segments``).
    The units then run as that user: the router cannot create ``var/<instance>/journal``
    (checked by hand: ``mkdir`` as ``nobody`` there is "Permission denied"), nor the
    replication source write ``run/replication.json``: on a first start the router's unit
    dies at each restart until it is failed, and ``start`` stops what started (exit 1).
    What ``start`` creates under ``var/`` should be handed to the unit user too."""
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody on this host")
    path = unit_profile(tmp_path, instance, "[database]\nenabled = false\n")
    var = tmp_path / "var"
    var.mkdir()
    os.chown(var, user.pw_uid, user.pw_gid)  # README: `var/` must be its
    cfg = load_profile(str(path))

    class Recorded(units.Shell):  # type: ignore[name-defined,misc]
        """Runs nothing: every unit "starts", every systemctl says inactive."""

        def __init__(self) -> None:
            super().__init__(dry_run=False)

        def __call__(self, cmd: list[str], *, quiet: bool = False) -> int:
            return 0 if cmd[0] == "systemd-run" else 3

    opts = units.Options(profile=str(path), workdir=Path.cwd(), uid="nobody")
    assert units.start(cfg, opts, Recorded()) == 0, capsys.readouterr().err
    owners = {
        str(d.relative_to(var)): d.stat().st_uid for d in (var / instance, var / instance / "run")
    }
    assert owners == {instance: user.pw_uid, f"{instance}/run": user.pw_uid}, owners


def test_start_serves_the_metrics_or_says_it_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8: "Prometheus metrics (prometheus_client) at a `/metrics` endpoint"; README
    (Configure): ``supervisor.metrics = true`` (the default) serves them at
    ``metrics_host:metrics_port``, and (Production with systemd) the units run the instance
    "in place of the built-in supervisor". The supervisor is what serves them
    (``Supervisor.serve_metrics``); ``systemd_units._start`` (scripts/systemd_units.py)
    makes one unit per process of ``plan(cfg)`` and none serves ``/metrics``, and neither
    its output nor the README's systemd section says so: a venue moved to production under
    systemd with ``metrics_port = 9464`` scrapes a closed port, its ring-lag and reject
    alerts silent. A unit should serve them, or ``start`` say they are not served."""
    path = unit_profile(tmp_path, "r52met", "[supervisor]\nmetrics_port = 9464\n")
    runs, out = dry_run(path, capsys)
    assert runs
    said = out.replace(str(tmp_path), "<tmp>")  # the test's own name holds "metrics"
    assert "metrics" in said.lower(), said


# -- failover --------------------------------------------------------------------------------


def test_status_does_not_take_a_reused_pid_for_a_live_replication_source(
    tmp_path: Path, instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """README (Hot standby): `failover.py status` "prints the primary's replication state";
    a stale ``replication.json`` of a source that is gone is to read as down (review: a
    dead pid is). ``failover.status`` (scripts/failover.py) believes the file while
    ``pid_alive(rep["pid"])``: the source writes no start time beside its pid
    (``ReplicationSource.write_status``, procs/replica/source.py), unlike ``status.json``,
    whose pids `ringex status` and ``fence`` trust only with a matching start time (review
    50). After the primary's host reboots, its old source pid is soon another process's: a
    file left there (here a pid of a live process that is no source, this test's) is shown
    as "replication sync: standby acknowledged seq 5, 1 connected, ok" for a primary whose
    source is down, the line an operator reads before deciding to promote. The source
    should record its start time, and status compare it."""
    primary = load_profile(
        str(standby_profile(tmp_path / "primary.toml", f"{instance}p", tmp_path / "var", ""))
    )
    standby = load_profile(
        str(
            standby_profile(
                tmp_path / "standby.toml", f"{instance}s", tmp_path / "var",
                '[replication]\nprimary = "127.0.0.1:1"\n',
            )
        )
    )  # fmt: skip
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        run_dir(primary).mkdir(parents=True)
        (run_dir(primary) / "replication.json").write_text(
            json.dumps(
                {  # what a source left before the host rebooted; its pid is reused since
                    "pid": bystander.pid,
                    "mode": "sync",
                    "acked_seq": 5,
                    "journal_seq": 5,
                    "standbys_connected": 1,
                    "degraded": False,
                    "degraded_total": 0,
                }
            )
        )
        failover.status(primary, standby)
        out = capsys.readouterr().out
        assert "1 connected" not in out, out
    finally:
        bystander.kill()
        bystander.wait()
