"""A hostile review of the operations scripts (scripts/failover.py, promotion.py,
rebuild.py, scripts/systemd_units.py): each test shows one bug found; it failed on the code
as reviewed and passes since its fix."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.epochs import Epochs, EpochsError
from procs.common.journal_writer import JournalWriter
from procs.common.records import Record, Transfer
from procs.common.run_files import run_dir, status_path
from procs.common.topology import journal_dir
from procs.replica.rebuild import rebuild
from procs.supervisor import promotion
from shm.liveness import process_start
from tests.e2e.test_standby import profile
from tests.scripts_loader import load_script
from tests.unit.replica.test_source import CODEC, commands

ROOT = Path(__file__).parents[3]


failover = load_script("failover", "review")
units = load_script("systemd_units", "review")


def write(cfg: RingexConfig, records: list[Record]) -> None:
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    ) as journal:
        journal.append(journal.next_seq, b"".join(map(CODEC.encode_slot, records)), len(records))


def configs(tmp_path: Path, instance: str) -> tuple[Path, Path]:
    primary = profile(tmp_path / "primary.toml", f"{instance}p", tmp_path / "var", "")
    standby = profile(
        tmp_path / "standby.toml", f"{instance}s", tmp_path / "var",
        '[replication]\nprimary = "127.0.0.1:1"\n',
    )  # fmt: skip
    return primary, standby


def write_status(cfg: RingexConfig, doc: dict[str, Any]) -> None:
    run_dir(cfg).mkdir(parents=True, exist_ok=True)
    status_path(cfg).write_text(json.dumps(doc))


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_fence_does_not_kill_a_process_that_reuses_a_stale_pid(
    tmp_path: Path, instance: str
) -> None:
    primary_path, _ = configs(tmp_path, instance)
    primary = load_profile(str(primary_path))
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = process_start(bystander.pid)
        assert started is not None
        # what a primary's supervisor left before the host rebooted (or long ago, stopped):
        # the pid is now another process's, started at another time
        write_status(
            primary,
            {
                "supervisor_pid": bystander.pid,
                "supervisor_started": started + 1_000_000,
                "state": "running",
                "role": "primary",
                "processes": [{"name": "router", "pid": bystander.pid}],
            },
        )
        failover.fence(primary, 2, "standby")
        with contextlib.suppress(subprocess.TimeoutExpired):
            bystander.wait(0.5)  # a SIGKILL takes a moment
        assert bystander.poll() is None, "fence killed a process that is not the instance's"
    finally:
        bystander.kill()
        bystander.wait()


def test_a_demoted_instance_behind_the_promotion_point_can_be_promoted(tmp_path: Path) -> None:
    old = RingexConfig(instance="old", var_dir=str(tmp_path / "old"))
    write(old, commands(1, 3))  # its last seqs (4, 5) were lost (fsync policy none, a crash)
    promoted = Epochs().promoted(2, 6)  # the promoted instance had 5 when it began epoch 2
    done = rebuild(old, promoted)  # failover.py demote
    assert (done.kept_seq, done.cut) == (3, 0)
    # the promoted instance dies before this standby caught up: promote it in its place.
    # The old primary is fenced already; an epoch that cannot be written leaves no primary.
    assert promotion.begin_epoch(old, 3) == 4
    assert Epochs.load(journal_dir(old)).current == 3


def test_rebuild_refuses_a_primary_of_an_older_epoch(tmp_path: Path) -> None:
    old = RingexConfig(instance="old", var_dir=str(tmp_path / "old"))
    write(old, commands(1, 3))
    Epochs().promoted(2, 4).save(journal_dir(old))  # it was promoted at seq 4 ...
    own: list[Record] = [Transfer(seq, 6, 0, 0, seq, 7, 1, 55, seq) for seq in (4, 5)]
    write(old, own)  # ... and sequenced 4 and 5 in epoch 2
    stale = Epochs()  # the instance asked never saw epoch 2 (the wrong --new, or its old primary)
    with pytest.raises(EpochsError):
        rebuild(old, stale)  # keeps seqs 4..5 and overwrites epoch 2 away (as it does now)


def test_status_does_not_report_a_stopped_standby_as_prestarted(
    tmp_path: Path, instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    primary_path, standby_path = configs(tmp_path, instance)
    primary, standby = load_profile(str(primary_path)), load_profile(str(standby_path))
    write_status(
        standby,
        {
            "supervisor_pid": dead_pid(),
            "state": "stopped",
            "role": "standby",
            "prestarted": True,
            "processes": [],
        },
    )
    failover.status(primary, standby)
    out = capsys.readouterr().out
    assert "prestarted (held)" not in out, out


def test_status_does_not_show_a_dead_sources_replication_state_as_live(
    tmp_path: Path, instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    primary_path, standby_path = configs(tmp_path, instance)
    primary, standby = load_profile(str(primary_path)), load_profile(str(standby_path))
    run_dir(primary).mkdir(parents=True)
    (run_dir(primary) / "replication.json").write_text(
        json.dumps(
            {
                "pid": dead_pid(),  # the source that wrote it is gone (the primary crashed)
                "mode": "sync",
                "acked_seq": 5,
                "journal_seq": 5,
                "standbys_connected": 1,
                "degraded": 0,
                "degraded_total": 0,
            }
        )
    )
    failover.status(primary, standby)
    out = capsys.readouterr().out
    assert "1 connected" not in out, out


class FakeChild:
    """What promote's ``Popen`` of the new supervisor returns, without a process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.stdin = io.BytesIO()
        self.pid = 0

    def poll(self) -> int | None:
        return None


def test_promote_refuses_a_standby_whose_history_diverged(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary_path, standby_path = configs(tmp_path, instance)
    primary, standby = load_profile(str(primary_path)), load_profile(str(standby_path))
    write(primary, commands(1, 5))  # five commands, acknowledged to their clients
    diverged: list[Record] = [Transfer(seq, 6, 0, 0, seq, 7, 1, 55, seq) for seq in (1, 2, 3)]
    write(standby, diverged)  # not a prefix of the primary's journal (status says so)
    assert failover.journal_state(primary)[1] != failover.journal_state(standby)[1]
    monkeypatch.setattr(failover.subprocess, "Popen", FakeChild)
    monkeypatch.setattr(failover, "await_promoted", lambda *args, **kwargs: 0)
    code = failover.promote(str(primary_path), str(standby_path))
    # the promoted instance would carry on from the standby's history: the primary's five
    # acknowledged commands are gone, and nothing said so
    assert Epochs.load(journal_dir(primary)).fence is None
    assert code != 0


def test_chown_segments_takes_a_numeric_uid(tmp_path: Path, instance: str) -> None:
    cfg = RingexConfig(instance=instance, var_dir=str(tmp_path / "var"))
    units.chown_segments(cfg, str(os.getuid()))  # systemd-run --uid takes a number too
