"""scripts/systemd_units.py without systemd: the dry run's command lines (unit names, slice,
pinning, notify and restart settings, plan order, stop order), the refusal where systemd is
not PID 1, and the drain it waits on before stopping the rest."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from config import load_profile
from procs.common.record_codec import RecordCodec
from procs.common.topology import create_rings
from tests.scripts_loader import load_script

ROOT = Path(__file__).parents[3]


units = load_script("systemd_units")


def write_profile(tmp_path: Path, instance: str) -> Path:
    path = tmp_path / "pinned.toml"
    path.write_text(
        f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n'
        '[[gateways]]\nname = "gw1"\nid = 1\n'
        "[supervisor]\nrestart_limit = 3\nrestart_window_s = 30\nready_timeout_s = 45\n"
        'cores = { "matcher-m1" = [3], router = [2], dbwriter = [0], marketdata = [1], '
        '"gateway-gw1" = [4, 5] }\n'
    )
    return path


def lines(out: str, program: str) -> list[list[str]]:
    return [shlex.split(line) for line in out.splitlines() if line.startswith(program)]


def props(cmd: list[str]) -> dict[str, str]:
    pairs = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-p"]
    return dict(p.split("=", 1) for p in pairs)


def option(cmd: list[str], name: str) -> str | None:
    found = [arg.split("=", 1)[1] for arg in cmd if arg.startswith(f"--{name}=")]
    return found[0] if found else None


def test_dry_run_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = write_profile(tmp_path, "sdunits")
    assert units.main(["start", "--profile", str(profile), "--dry-run"]) == 0
    runs = lines(capsys.readouterr().out, "systemd-run")
    names = [option(cmd, "unit") for cmd in runs]
    assert names == [  # the plan's order: matchers, router, dbwriter, market data, gateways
        "ringex-sdunits-matcher-m1.service",
        "ringex-sdunits-router.service",
        "ringex-sdunits-dbwriter.service",
        "ringex-sdunits-marketdata.service",
        "ringex-sdunits-gateway-gw1.service",
    ]
    assert {option(cmd, "slice") for cmd in runs} == {"ringex-sdunits.slice"}
    assert [props(cmd).get("CPUAffinity") for cmd in runs] == ["3", "2", "0", "1", "4,5"]
    for cmd in runs:
        p = props(cmd)
        assert p["Type"] == "notify" and p["NotifyAccess"] == "main"
        assert p["Restart"] == "on-failure" and p["WatchdogSec"] == "30s"
        assert p["StartLimitBurst"] == "4" and p["StartLimitIntervalSec"] == "30s"
        assert option(cmd, "working-directory") == str(Path.cwd())
        tail = cmd[cmd.index("--") + 1 :]
        assert tail[:2] == [sys.executable, "-m"]
        assert tail[3:5] == ["--profile", str(profile)]
    router = runs[1]
    assert router[router.index("--") + 1 :][2] == "procs.router.main"
    assert props(router)["TimeoutStartSec"] == "45s" and "--no-block" not in router
    dbwriter = runs[2]  # no ready ring: the supervisor does not wait for it, nor does this
    assert "--no-block" in dbwriter and props(dbwriter)["TimeoutStartSec"] == "infinity"
    assert runs[4][-2:] == ["--name", "gw1"]


def test_dry_run_options_and_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = write_profile(tmp_path, "sdunits")
    argv = ["--profile", str(profile), "--dry-run", "--user", "--watchdog-sec", "0"]
    assert units.main(["start", *argv]) == 0
    runs = lines(capsys.readouterr().out, "systemd-run")
    assert all(cmd[1] == "--user" and "WatchdogSec" not in props(cmd) for cmd in runs)

    assert units.main(["stop", *argv]) == 0
    stops = [cmd[3:] for cmd in lines(capsys.readouterr().out, "systemctl --user stop")]
    assert stops == [  # intake first, then (after the drain) the rest in reverse, the writer
        ["ringex-sdunits-gateway-gw1.service"],  # of the journal's history last, the slice
        ["ringex-sdunits-marketdata.service"],
        ["ringex-sdunits-router.service"],
        ["ringex-sdunits-matcher-m1.service"],
        ["ringex-sdunits-dbwriter.service"],
        ["ringex-sdunits.slice"],
    ]


def test_refuses_without_systemd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    comm = tmp_path / "comm"
    comm.write_text("bash\n")
    monkeypatch.setattr(units, "INIT_COMM", comm)
    monkeypatch.setattr(units, "BOOTED_DIR", tmp_path / "no-systemd")
    profile = write_profile(tmp_path, "sdunits")
    for action in ("start", "stop", "status"):
        assert units.main([action, "--profile", str(profile)]) == 2
        err = capsys.readouterr().err
        assert "systemd is not PID 1 here (PID 1 is 'bash'" in err
        assert f"ringex run --profile {profile}" in err
    assert not (tmp_path / "var").exists()  # refused before touching anything

    (tmp_path / "systemd").mkdir()
    monkeypatch.setattr(units, "BOOTED_DIR", tmp_path / "systemd")
    assert units.why_not_systemd() is None


def test_drain_returns_when_no_live_consumer_lags(tmp_path: Path, instance: str) -> None:
    cfg = load_profile(str(write_profile(tmp_path, instance)))
    created = create_rings(cfg, RecordCodec())
    try:
        naps: list[float] = []
        units.drain(cfg, sleep=naps.append)  # declared consumers, none attached: nothing waits
        assert naps == []
    finally:
        for ring in created.values():
            ring.close()


def test_the_replication_units_notify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    primary = write_profile(tmp_path, "sdrepl")
    primary.write_text(primary.read_text() + "[replication]\nlisten_port = 9900\n")
    standby = tmp_path / "standby.toml"
    standby.write_text(
        f'instance = "sdstby"\nvar_dir = "{tmp_path / "var"}"\n[replication]\nprimary = "h:9900"\n'
    )
    for profile, name in ((primary, "replica-source"), (standby, "standby")):
        assert units.main(["start", "--profile", str(profile), "--dry-run"]) == 0
        runs = lines(capsys.readouterr().out, "systemd-run")
        (cmd,) = [c for c in runs if str(option(c, "unit")).endswith(f"-{name}.service")]
        assert props(cmd)["Type"] == "notify" and props(cmd)["WatchdogSec"] == "30s"
