"""The router's snapshot child that fails: the router says so (``Snapshots._reap``).

A snapshot job runs in a forked child, off the router's loop. One that raised, or that a
signal ended (the disk full, the OOM killer), was never looked at: the router's log said
"started" and nothing else, and the journal's tail a restart replays grew from the snapshot
before it in silence. Now its end is looked at within ``REAP_EVERY_S`` of the next command,
and a failure is an error naming the seq and the exit code or signal.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from config.schema import JournalConfig, RingexConfig
from procs.router import snapshots as snapshots_module
from procs.router.snapshots import Snapshots


class _Journal:
    """What ``maybe_start`` asks of the journal writer: a sync and the lock's descriptor."""

    def __init__(self) -> None:
        self.lock_fd = os.open(os.devnull, os.O_RDONLY)

    def sync(self) -> None:
        pass


@pytest.fixture
def journal() -> Iterator[_Journal]:
    j = _Journal()
    yield j
    os.close(j.lock_fd)


def _cfg(tmp_path: Path) -> RingexConfig:
    journal = msgspec.convert({"snapshot_every": 1, "snapshot_every_s": 0}, JournalConfig)
    return RingexConfig(instance="snapfail", var_dir=str(tmp_path), journal=journal)


def _run_job(
    job: Callable[[RingexConfig, int], None],
    tmp_path: Path,
    journal: _Journal,
    monkeypatch: pytest.MonkeyPatch,
) -> Snapshots:
    """Start one snapshot job ``job`` at seq 7, wait for its end, then give the router its
    next command (seq 8), past the reap interval."""
    monkeypatch.setattr(snapshots_module, "snapshot_job", job)  # the fork inherits it
    monkeypatch.setattr(snapshots_module, "die_with_parent", lambda parent: None)
    snaps = Snapshots(_cfg(tmp_path), 0)
    snaps.maybe_start(7, journal)  # type: ignore[arg-type]
    assert snaps._child is not None
    snaps._child.join(30)
    assert snaps._child.exitcode is not None
    snaps._reap_at = 0.0
    snaps.maybe_start(7, journal)  # type: ignore[arg-type]  # nothing new: only the reap
    return snaps


def _raises(cfg: RingexConfig, upto: int) -> None:
    raise OSError(28, "No space left on device")


def _killed(cfg: RingexConfig, upto: int) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _fine(cfg: RingexConfig, upto: int) -> None:
    pass


def test_a_snapshot_job_that_raises_is_an_error_naming_its_seq_and_exit_code(
    tmp_path: Path,
    journal: _Journal,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="ringex.router"):
        snaps = _run_job(_raises, tmp_path, journal, monkeypatch)
    assert snaps.failures == 1 and snaps._child is None
    assert "snapshot of seq 7 failed (exit code 1)" in caplog.text


def test_a_snapshot_job_killed_by_a_signal_names_the_signal(
    tmp_path: Path,
    journal: _Journal,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="ringex.router"):
        snaps = _run_job(_killed, tmp_path, journal, monkeypatch)
    assert snaps.failures == 1
    assert f"snapshot of seq 7 failed (killed by signal {int(signal.SIGKILL)}, Killed)" in (
        caplog.text
    )


def test_a_snapshot_job_that_succeeds_logs_no_error_and_the_next_one_starts(
    tmp_path: Path,
    journal: _Journal,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="ringex.router"):
        snaps = _run_job(_fine, tmp_path, journal, monkeypatch)
        assert snaps.failures == 0 and snaps._child is None
        snaps.maybe_start(8, journal)  # type: ignore[arg-type]
        assert snaps._child is not None and snaps._child_seq == 8
        assert snaps.done(30)
    assert not caplog.records


def test_the_reap_looks_at_most_once_every_reap_interval(
    tmp_path: Path, journal: _Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``waitpid`` per command would be a syscall on the router's hot path: one a second."""
    snaps = _run_job(_fine, tmp_path, journal, monkeypatch)
    assert snaps._reap_at > time.monotonic() + snapshots_module.REAP_EVERY_S / 2
