"""Review 30 of operations: the supervisor's instance lock, the units pinned beside the journal,
and the standby's copy of the gateways' state (``exec-ids``, ``units.json``).

Each ``test_*`` whose docstring starts with "Fault" failed on the code as reviewed; the
"pinned" tests at the end hold behaviour that was checked and found sound.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from config.edges import GatewayConfig
from config.schema import RingexConfig
from procs import cli
from procs.common.epochs import Epochs
from procs.common.run_files import instance_lock, read_status, run_dir
from procs.common.topology import gateway_root, journal_dir, snapshot_dir
from procs.common.units import pin_units, units_path, units_refused
from procs.replica.files import SHIPPABLE, FileReceiver, FileShipper, shipped_files
from procs.supervisor.preflight import layout_differs_now
from shm.inspect import list_segments
from tests.scripts_loader import ROOT, load_script
from tests.unit.replica.test_epochs import write
from tests.unit.replica.test_source import commands
from tests.unit.supervisor.test_supervisor import wait_for

failover = load_script("failover", "review30")
systemd_units = load_script("systemd_units", "review30")


def write_profile(
    path: Path, instance: str, var: Path, btc: int = 8, extra: str = "", gateways: str = ""
) -> Path:
    """The supervisor tests' small instance (a matcher and the router; ``gateways``: TOML of
    some), its assets spelled out so that a test can give BTC other decimals."""
    assets = "".join(
        f'[[assets]]\nname = "{name}"\nid = {k}\ndecimals = {decimals}\n'
        for k, (name, decimals) in enumerate((("USD", 6), ("BTC", btc), ("ETH", 8)), 1)
    )
    path.write_text(
        f'instance = "{instance}"\nvar_dir = "{var}"\n{gateways or "gateways = []"}\n{assets}'
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        "[ring]\ncapacity = 1024\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.01\n'
        "[supervisor]\nrestart_limit = 3\nready_timeout_s = 30\n" + extra
    )
    return path


def start_supervisor(
    profile: Path, cfg: RingexConfig, reaped: list[subprocess.Popen[Any]]
) -> subprocess.Popen[Any]:
    """A supervisor of ``profile`` in its own process, once its instance runs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "procs.supervisor.main", "--profile", str(profile)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    reaped.append(proc)
    wait_for(lambda: (read_status(cfg) or {}).get("state") == "running", timeout=60)
    return proc


@pytest.fixture
def reaped() -> Iterator[list[subprocess.Popen[Any]]]:
    """Processes a test started, stopped at its end whatever it asserted."""
    procs: list[subprocess.Popen[Any]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def said(proc: subprocess.Popen[bytes]) -> str:
    """What an exited process wrote to its stderr pipe."""
    return proc.stderr.read().decode() if proc.stderr is not None else ""


def test_a_promotions_new_supervisor_waits_out_the_standbys_lock_instead_of_failing(
    instance: str, tmp_path: Path, reaped: list[subprocess.Popen[Any]]
) -> None:
    """Fault: with ``replication.prestart = false``, ``failover.py promote`` fences the old
    primary, then starts the promoted instance's supervisor (``failover.py supervise``) while
    the standby's supervisor still runs, so that its processes import during the standby's
    stop; ``go`` waits for that supervisor to exit. But the instance lock was taken before
    ``go``, and the standby's supervisor holds it until it has exited: whenever the
    standby's stop (it writes its snapshots) outlasted the new supervisor's import, the new
    one was refused ("is running or starting: supervisor pid <the standby's>") and exited 1,
    the old primary fenced and nothing running. The e2e test passes only because its tiny
    standby stops faster than a supervisor imports. Here the "standby's supervisor" holds
    the lock until the new one's processes have started (it waits in ``go``)."""
    profile = write_profile(tmp_path / "promoted.toml", instance, tmp_path / "var")
    cfg = load_profile(str(profile))
    release = tmp_path / "standby-stopped"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys, time\n"
         "from config import load_profile\n"
         "from procs.common.run_files import instance_lock\n"
         "with instance_lock(load_profile(sys.argv[1])):\n"
         "    print('held', flush=True)\n"
         "    while not os.path.exists(sys.argv[2]):\n"
         "        time.sleep(0.01)\n",
         str(profile), str(release)],
        cwd=ROOT, stdout=subprocess.PIPE,
    )  # fmt: skip
    reaped.append(holder)
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    supervise = subprocess.Popen(
        [sys.executable, "scripts/failover.py", "supervise", "--profile", str(profile),
         "--after-pid", str(holder.pid), "--epoch", "2"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    reaped.append(supervise)
    assert supervise.stdin is not None
    supervise.stdin.write(failover.GO)  # the old primary is fenced
    supervise.stdin.close()
    # its processes are started (held: their logs are made), or it gave up already
    wait_for(lambda: (run_dir(cfg) / "router.log").exists() or supervise.poll() is not None)
    assert supervise.poll() is None, said(supervise)
    release.touch()  # the standby's supervisor exits
    holder.wait(30)

    def running() -> bool:
        doc = read_status(cfg) or {}
        assert supervise.poll() is None, said(supervise)
        return doc.get("supervisor_pid") == supervise.pid and doc.get("state") == "running"

    wait_for(running)
    epochs = Epochs.load(journal_dir(cfg))
    assert epochs.current == 2 and epochs.history[-1] == (2, 1)  # begun with the lock held


def two_instances(tmp_path: Path, btc: int = 8) -> tuple[RingexConfig, RingexConfig]:
    """A primary and its standby (another instance, on this host), the standby's BTC of
    ``btc`` decimals."""
    gateways = [GatewayConfig(name="gw1", id=1)]
    primary = RingexConfig(instance="p", var_dir=str(tmp_path / "p"), gateways=gateways)
    standby_doc = write_profile(tmp_path / "s.toml", "s", tmp_path / "s", btc=btc)
    return primary, load_profile(str(standby_doc))


def ship(primary: RingexConfig, standby: RingexConfig) -> None:
    """What the replication source sends from ``primary``, written by ``standby``'s receiver."""
    shipper = FileShipper(gateway_root(primary), shipped_files(primary))
    receiver = FileReceiver(gateway_root(standby))
    for change in shipper.changes():
        receiver.apply(change)
    receiver.sync()


def test_the_journals_units_are_shipped_to_the_standby(tmp_path: Path) -> None:
    """Fault: ``units.json`` was not shipped (README: "A standby's router pins its own
    config's at its promotion (the file is not shipped)"). The standby's journal is the
    primary's, entry for entry, but a standby configured with BTC of 7 decimals where the
    primary's journal holds 8 was started, promoted and pinned without a word: its router
    then settled every journaled trade, and read every balance, in units ten times off. The
    file now goes with the gateways' state to the standby's journal directory, where the
    standby's start, ``promote`` and the promoted start check it."""
    primary, standby = two_instances(tmp_path, btc=7)
    pin_units(primary)  # the primary's router, at its first start
    ship(primary, standby)
    assert units_path(standby).read_bytes() == units_path(primary).read_bytes()
    assert gateway_root(standby).parent / "journal" == journal_dir(standby)  # where it lands
    assert "asset BTC decimals: 7 in the config, 8 in the journal" in units_refused(standby)
    (tmp_path / "same").mkdir()
    _, same = two_instances(tmp_path / "same")
    ship(primary, same)
    assert units_refused(same) == ""  # a standby of the primary's units goes on


def test_promote_refuses_a_standby_of_other_units_before_it_fences(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: ``failover.py promote`` fenced the old primary (killing it and marking its
    journal) before anything looked at the standby's units: a standby of other units was
    then either promoted with them (see above) or, once its start checks them, refused after
    the fence: no primary at all. It is refused first, nothing done, naming the difference."""
    primary_doc = write_profile(tmp_path / "p.toml", "p", tmp_path / "p")
    standby_doc = write_profile(
        tmp_path / "s.toml", "s", tmp_path / "s", btc=7,
        extra='[replication]\nprimary = "127.0.0.1:9"\nprestart = false\n',
    )  # fmt: skip
    pin_units(load_profile(str(primary_doc)))  # read where this host reaches it
    fenced: list[str] = []
    monkeypatch.setattr(failover, "fence", lambda cfg, *a: fenced.append(cfg.instance))

    def no_supervisor(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a promoted supervisor was started")

    monkeypatch.setattr(failover.subprocess, "Popen", no_supervisor)
    assert failover.promote(str(primary_doc), str(standby_doc)) == 1
    err = capsys.readouterr().err
    assert "s cannot be promoted" in err and "BTC decimals: 7 in the config, 8" in err, err
    assert fenced == []


def test_promote_refuses_a_config_that_is_no_standby_before_it_fences(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault (a review, 2026-12-03): ``promote --standby`` given a plain instance's config
    (no ``replication.primary``, never run) fenced the running primary and promoted an
    empty exchange (no users, no balances; the primary, fenced, refused to start). It is
    refused first, nothing done, and so is a standby whose journal is empty beside the
    primary's 3 seqs (``--force`` skips both, as the checks beside them)."""
    primary_doc = write_profile(tmp_path / "p.toml", "p", tmp_path / "p")
    plain_doc = write_profile(tmp_path / "s.toml", "s", tmp_path / "s")
    follows = '[replication]\nprimary = "127.0.0.1:9"\nprestart = false\n'
    fresh_doc = write_profile(tmp_path / "f.toml", "f", tmp_path / "f", extra=follows)
    write(load_profile(str(primary_doc)), commands(1, 3))
    fenced: list[str] = []
    monkeypatch.setattr(failover, "fence", lambda cfg, *a: fenced.append(cfg.instance))
    monkeypatch.setattr(failover.subprocess, "Popen", None)  # (started, it would raise)
    for doc, said in (
        (plain_doc, "s cannot be promoted safely: its config names no primary"),
        (fresh_doc, "f cannot be promoted safely: its journal holds no seq, and p's ends at seq 3"),
    ):
        assert failover.promote(str(primary_doc), str(doc)) == 1
        err = capsys.readouterr().err
        assert said in err and "--force promotes it anyway" in err, err
    assert fenced == []


def test_a_restart_under_a_profile_edited_to_other_units_stops_at_once_naming_them(
    instance: str, tmp_path: Path, reaped: list[subprocess.Popen[Any]]
) -> None:
    """Fault: every process loads its profile again when it is restarted. An operator who
    edits the profile of a running instance to other units (to restart it later) and then
    has a process crash got a crash loop: the router refused at each restart (exit 2), the
    supervisor restarted it ``restart_limit`` times with backoff and stopped the instance
    with "router exited 4 times ... (last code 2)", the reason only in router.log (a gateway
    restarted so would read the journal's integers in other units). The supervisor checks
    the profile's units before each restart and stops at once, naming them."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    cfg = load_profile(str(profile))
    proc = start_supervisor(profile, cfg, reaped)
    assert units_path(cfg).exists()  # pinned by the router
    write_profile(profile, instance, tmp_path / "var", btc=7)  # edited, not restarted yet
    router = next(p for p in (read_status(cfg) or {})["processes"] if p["name"] == "router")
    os.kill(router["pid"], signal.SIGKILL)
    assert proc.wait(60) == 1
    status = read_status(cfg) or {}
    assert status["state"] == "stopped"
    assert "router not restarted" in status["reason"], status["reason"]
    assert "BTC decimals: 7 in the config, 8 in the journal" in status["reason"]
    (router,) = (p for p in status["processes"] if p["name"] == "router")
    assert router["restarts"] == 0


def test_replay_refuses_other_units_and_writes_no_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: ``ringex replay`` took any config. ``--snapshot`` under other units wrote a
    snapshot of balances settled in them, which the router, started under the right config
    (its check passes), then restored without a word; ``--to-db`` wrote rows in them, and
    the hashes printed were not the journal's. The check the router makes now comes first."""
    right = write_profile(tmp_path / "right.toml", "r", tmp_path / "var")
    other = write_profile(tmp_path / "other.toml", "r", tmp_path / "var", btc=7)
    pin_units(load_profile(str(right)))
    code = cli.main(["replay", "--snapshot", "--config", str(other), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "BTC decimals: 7 in the config, 8 in the journal" in err, err
    snapshots = snapshot_dir(load_profile(str(right)), "exchange")
    assert not snapshots.exists() or not any(snapshots.iterdir())
    assert cli.main(["replay", "--config", str(right), "--quiet"]) == 0


def test_admin_refuses_amounts_in_other_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: ``ringex admin deposit --amount 0.5 --asset BTC`` converts the amount with the
    config it is given: a profile edited to BTC of 7 decimals (the instance still running
    under 8) deposited 0.05 BTC, and ``balances`` showed every amount ten times off. It is
    refused before anything is attached, naming the difference."""
    right = write_profile(tmp_path / "right.toml", "a", tmp_path / "var")
    other = write_profile(tmp_path / "other.toml", "a", tmp_path / "var", btc=7)
    pin_units(load_profile(str(right)))
    code = cli.main(["admin", "deposit", "--account", "5", "--asset", "BTC", "--amount",
                     "0.5", "--config", str(other)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "ringex admin deposit: the config's units differ" in err, err


class RecordingShell:
    """``systemd_units.Shell`` not in a dry run, but systemd's side not run: each command
    recorded; no slice is active."""

    dry_run = False

    def __init__(self) -> None:
        self.ran: list[list[str]] = []

    def __call__(self, cmd: Any, *, quiet: bool = False) -> int:
        self.ran.append(list(cmd))
        return 3 if "is-active" in cmd else 0

    def note(self, text: str) -> None:
        print(text)


def systemd_start(profile: Path) -> tuple[int, RecordingShell]:
    cfg = load_profile(str(profile))
    opts = systemd_units.Options(profile=str(profile), workdir=ROOT)
    shell = RecordingShell()
    return systemd_units.start(cfg, opts, shell), shell


def test_systemd_start_is_refused_while_a_supervisor_holds_the_instance(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: ``systemd_units.py start`` took no lock. While a ``ringex run`` of the instance
    was starting (lock held, rings not made yet) it passed the check of the running segments
    too and made the rings, and the two starts then removed each other's: what the lock was
    for. It is refused now, and holds the lock itself until its units have started."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    with instance_lock(load_profile(str(profile))):  # a supervisor, starting
        code, shell = systemd_start(profile)
    assert code == 1 and "is running or starting" in capsys.readouterr().err
    assert not any(cmd[0] == "systemd-run" for cmd in shell.ran)
    assert list_segments(instance) == []


def test_systemd_start_refuses_other_units_before_it_makes_anything(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault: ``systemd_units.py start`` skipped the supervisor's units check: it made the
    rings and started the units, the router's refused (exit 2), and ``Restart=on-failure``
    restarted it up to ``StartLimitBurst``, the reason only in journald. Now refused first,
    naming the difference, with nothing made."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    pin_units(load_profile(str(profile)))
    write_profile(profile, instance, tmp_path / "var", btc=7)
    code, shell = systemd_start(profile)
    err = capsys.readouterr().err
    assert code == 1 and "BTC decimals: 7 in the config, 8 in the journal" in err, err
    assert not any(cmd[0] == "systemd-run" for cmd in shell.ran)
    assert list_segments(instance) == []


def test_a_gateway_started_on_its_own_refuses_other_units(tmp_path: Path) -> None:
    """Found (review 30), fixed. Under the supervisor every restart is checked (above).
    Under systemd each unit restarts itself and loads the edited profile: the router
    refused (exit 2), but a gateway (or market data, or the database writer) went on in
    the new units. Now every process's main refuses as the router does, before it
    attaches anything (``units.exit_if_other_units``)."""
    right = write_profile(tmp_path / "right.toml", "gwunits", tmp_path / "var")
    pin_units(load_profile(str(right)))
    other = write_profile(
        tmp_path / "other.toml", "gwunits", tmp_path / "var", btc=7,
        gateways='[[gateways]]\nname = "gw1"\nid = 1\nport = 0',
    )  # fmt: skip
    gateway = subprocess.run(
        [sys.executable, "-m", "procs.gateway.main", "--profile", str(other), "--name", "gw1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert gateway.returncode != 0
    assert "BTC decimals: 7 in the config, 8 in the journal" in gateway.stderr, gateway.stderr


# -- pinned: checked and found sound --------------------------------------------------------


def test_pinned_the_lock_is_not_inherited_by_the_supervisors_processes(
    instance: str, tmp_path: Path, reaped: list[subprocess.Popen[Any]]
) -> None:
    """The lock's descriptor is close-on-exec and ``Popen`` closes the rest: no process of
    the instance holds it, so a supervisor SIGKILLed while they finish stopping does not
    block the next start by the lock (only by their live segments, until they are gone)."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    cfg = load_profile(str(profile))
    proc = start_supervisor(profile, cfg, reaped)
    lock = str((run_dir(cfg) / "supervisor.lock").resolve())

    def holds(pid: int) -> bool:
        fds = Path(f"/proc/{pid}/fd")
        return any(os.path.realpath(fd) == lock for fd in fds.iterdir())

    pids = [p["pid"] for p in (read_status(cfg) or {})["processes"]]
    assert holds(proc.pid) and pids and not any(holds(pid) for pid in pids)
    assert (run_dir(cfg) / "supervisor.lock").read_text() == f"{proc.pid}\n"


def test_pinned_units_keep_each_id_to_its_name_through_removal_and_return(
    tmp_path: Path,
) -> None:
    """An asset removed from the config stays pinned: back under its own id and decimals it
    is accepted, under another name (or its id under another name) it is refused naming
    both, and a symbol's assets and decimals are compared by name."""
    base = RingexConfig(instance="u", var_dir=str(tmp_path))
    pin_units(base)
    assets, symbols = list(base.assets), list(base.symbols)
    eth = next(a for a in assets if a.name == "ETH")
    without = [a for a in assets if a.name != "ETH"]
    kept = [s for s in symbols if "ETH" not in (s.base, s.quote)]
    dropped = RingexConfig(
        instance="u", var_dir=str(tmp_path), assets=without, symbols=kept,
        matchers=[m.__class__(name=m.name, symbols=[s.name for s in kept]) for m in base.matchers],
    )  # fmt: skip
    assert units_refused(dropped) == ""
    pin_units(dropped)
    assert "ETH" in json.loads(units_path(base).read_text())["assets"]  # still pinned
    assert units_refused(base) == ""  # back as it was
    renamed = [*without, eth.__class__(name="ETC", id=eth.id, decimals=eth.decimals)]
    other = RingexConfig(
        instance="u", var_dir=str(tmp_path), assets=renamed, symbols=kept,
        matchers=dropped.matchers,
    )  # fmt: skip
    assert f"asset id {eth.id} names 'ETC' in the config and 'ETH' in the journal" in (
        units_refused(other)
    )


def test_pinned_the_standby_accepts_every_file_the_primary_ships(tmp_path: Path) -> None:
    """Each name ``shipped_files`` gives, for any gateway name the config allows (24 of
    ``[A-Za-z0-9_-]``), is one the standby writes (``SHIPPABLE``): a file it refused would
    reset the connection before every frame, and the standby would never catch up."""
    names = ["gw1", "A" * 24, "a-b_C9"]
    cfg = RingexConfig(
        instance="f", var_dir=str(tmp_path),
        gateways=[GatewayConfig(name=n, id=k, port=9000 + k) for k, n in enumerate(names, 1)],
    )  # fmt: skip
    shipped = shipped_files(cfg)
    assert "A" * 24 + "/exec-ids" in shipped
    assert [n for n in shipped if not SHIPPABLE.fullmatch(n)] == []
    assert not SHIPPABLE.fullmatch("../journal/units.json")
    assert not any(re.search(r"\.(tmp|shipping)$", n) for n in shipped)


def test_a_profile_edited_to_another_instance_or_var_dir_is_not_restarted_on(
    tmp_path: Path,
) -> None:
    """A review (2026-12-03) edited ``var_dir`` in a running instance's profile and killed
    the router: restarted on the profile as it now is, it recovered from an empty journal
    beside the live one (a renamed instance crash-looped on rings that do not exist).
    ``_restart`` asks ``layout_differs_now`` first, as it asks about units: the instance
    stops naming the edit. Fees and rules stay what a restart may change."""
    path = write_profile(tmp_path / "p.toml", "lay", tmp_path / "var")
    running = load_profile(str(path))
    text = path.read_text()
    assert layout_differs_now(str(path), running) == ""
    path.write_text(text + "[risk]\nmax_open_orders = 5\n")
    assert layout_differs_now(str(path), running) == ""  # what a restart may change
    for edit, said in (
        ((f"{tmp_path / 'var'}", f"{tmp_path / 'var2'}"), f"var_dir = '{tmp_path / 'var2'}'"),
        (('"lay"', '"lay2"'), "now says instance = 'lay2', the running instance has 'lay'"),
        (("capacity = 1024", "capacity = 2048"), "now wires other rings or processes"),
    ):
        path.write_text(text.replace(*edit, 1))
        assert said in layout_differs_now(str(path), running), edit
