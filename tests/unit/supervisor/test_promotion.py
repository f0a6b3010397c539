"""A standby's supervisor holds its promotion (``promotion.py``): the promoted profile is the
standby's without its primary, a request is taken only by the supervisor it names, the new
epoch starts at the journal's next seq, and a standby stopped without a promotion lets its
held processes go. The promotion itself runs in tests/e2e/test_failover_fix.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import psutil

from config import load_profile
from config.edges import GatewayConfig
from procs.common.epochs import Epochs
from procs.common.exec_ids import FILE_NAME, PROMOTION_SKIP, parse_mark
from procs.common.run_files import read_status, run_dir
from procs.common.topology import journal_dir, users_path
from procs.supervisor import promotion
from tests.e2e.test_standby import profile
from tests.free_ports import free_port

ROOT = Path(__file__).parents[3]


def standby_profile(tmp_path: Path, instance: str) -> Path:
    return profile(
        tmp_path / "standby.toml", instance, tmp_path / "var",
        f'[replication]\nprimary = "127.0.0.1:{free_port()}"\n',  # nobody there: it retries
    )  # fmt: skip


def test_the_promoted_profile_is_the_standby_without_its_primary(
    tmp_path: Path, instance: str
) -> None:
    path = standby_profile(tmp_path, instance)
    promoted = promotion.write_promoted_profile(str(path))
    assert promoted == tmp_path / "standby.promoted.toml"
    standby, primary = load_profile(str(path)), load_profile(str(promoted))
    assert standby.replication.primary and not primary.replication.primary
    assert primary.instance == standby.instance and primary.var_dir == standby.var_dir


def test_a_request_is_taken_only_by_the_supervisor_it_names(tmp_path: Path, instance: str) -> None:
    cfg = load_profile(str(standby_profile(tmp_path, instance)))
    run_dir(cfg).mkdir(parents=True)
    assert promotion.requested(cfg) == 0
    promotion.request(cfg, os.getpid() + 1, 3)  # another supervisor's (or a run before's)
    assert promotion.requested(cfg) == 0
    promotion.request(cfg, os.getpid(), 3)
    assert promotion.requested(cfg) == 3
    (run_dir(cfg) / promotion.REQUEST).write_text("{not json")
    assert promotion.requested(cfg) == 0
    promotion.forget_request(cfg)
    promotion.forget_request(cfg)  # gone already: no error
    assert not (run_dir(cfg) / promotion.REQUEST).exists()


def test_the_epoch_begins_at_the_journals_next_seq(tmp_path: Path, instance: str) -> None:
    cfg = load_profile(str(standby_profile(tmp_path, instance)))
    journal_dir(cfg).mkdir(parents=True)
    assert promotion.begin_epoch(cfg, 2) == 1  # an empty journal
    assert Epochs.load(journal_dir(cfg)).history == ((1, 1), (2, 1))


def test_a_promotion_skips_each_gateways_execids_past_its_copy(
    tmp_path: Path, instance: str
) -> None:
    """The standby's copy of a gateway's exec-ids may lag what the old primary used: the
    promotion moves each mark ``PROMOTION_SKIP`` past it (or past the clock)."""
    standby = load_profile(str(standby_profile(tmp_path, instance)))
    cfg = msgspec.structs.replace(standby, gateways=[GatewayConfig(name="gw1", id=1)])
    journal_dir(cfg).mkdir(parents=True)
    copy = users_path(cfg).parent / cfg.gateways[0].name / FILE_NAME
    copy.parent.mkdir(parents=True, exist_ok=True)
    ahead = time.time_ns() + 10**15  # the old primary's clock, ahead of this host's
    copy.write_bytes(b"%d\n" % ahead)
    promotion.begin_epoch(cfg, 2)
    assert parse_mark(copy.read_bytes()) == ahead + PROMOTION_SKIP


def test_a_standby_stopped_without_a_promotion_lets_its_held_processes_go(
    tmp_path: Path, instance: str
) -> None:
    path = standby_profile(tmp_path, instance)
    cfg = load_profile(str(path))
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "procs.supervisor.main", "--profile", str(path)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 60
        while not (read_status(cfg) or {}).get("prestarted"):
            assert time.monotonic() < deadline, "the standby never said it holds its promotion"
            assert supervisor.poll() is None, "the standby's supervisor exited"
            time.sleep(0.05)
        shown = subprocess.run(
            [sys.executable, "-m", "procs.cli", "status", "--config", str(path)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert f"instance {instance}: running (standby, its promotion prestarted)" in shown, shown
        children = psutil.Process(supervisor.pid).children()
        # the standby, and the promoted instance's router and matcher, held
        assert len(children) == 3, [c.cmdline() for c in children]
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0
        assert not [c for c in children if c.is_running() and c.status() != "zombie"]
        assert (read_status(cfg) or {}).get("state") == "stopped"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()


def test_a_standby_that_cannot_write_its_promoted_profile_runs_without_it(
    tmp_path: Path, instance: str
) -> None:
    path = standby_profile(tmp_path, instance)
    promotion.promoted_path(str(path)).mkdir()  # where the file would go: it cannot be written
    cfg = load_profile(str(path))
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "procs.supervisor.main", "--profile", str(path)],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (read_status(cfg) or {}).get("state") != "running":
            assert time.monotonic() < deadline, "the standby did not start"
            assert supervisor.poll() is None, "the standby's supervisor exited"
            time.sleep(0.05)
        assert not (read_status(cfg) or {}).get("prestarted")
        assert len(psutil.Process(supervisor.pid).children()) == 1  # the standby alone
        supervisor.send_signal(signal.SIGTERM)
        _, err = supervisor.communicate(timeout=60)
        assert supervisor.returncode == 0
        assert "the promotion is not prestarted" in err, err
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
