"""Review 223 (helper, hostile): the whole of session 62's change, read as a diff.

Each fix asked of in every case: the database writer's checkpoint page while it starts, the
router's reaping of a failed snapshot child, the session end's "journaled" record against a
router clock stepped back, ``ringex stop``'s SIGKILL and a reused pid, the unfiled index by
``orderId`` and another account, ``money.largest_capped`` at its edges, ``to_units``'s ".0".

Rigs: ``Host``/``Watch``/``sends`` of test_review8_session_end_failover (the clock is each
poll's argument: nothing sleeps), fakes for the snapshot child (no fork), a PostgreSQL that
refuses connections (a closed port) for the writer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs import cli
from procs.common import gc_policy, sd_notify
from procs.common.stats import DBWRITER_COUNTERS, DBWRITER_PAGE
from procs.core.money import BPS, largest_capped
from procs.dbwriter import main as dbwriter_main
from procs.gateway.instruments import MAX_INT64, to_units
from procs.gateway.rest_order_state import LiveOrder
from procs.gateway.unfiled_orders import UnfiledOrders
from procs.router import snapshots as router_snapshots
from procs.router.snapshots import Snapshots
from procs.supervisor.main import Supervisor
from shm.counters import Counters
from shm.liveness import process_start
from tests.unit.supervisor.test_review8_session_end_failover import Host, Watch, sends
from tests.unit.supervisor.test_session_clock import utc
from tests.unit.supervisor.test_session_end import Sends

__all__ = ["sends"]  # the counted admin ring's fixture, imported


def _profile(tmp_path: Path, instance: str, extra: str = "") -> RingexConfig:
    path = tmp_path / "p.toml"
    path.write_text(
        f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n'
        f'[marketdata]\nenabled = false\n[[gateways]]\nname = "gw1"\nid = 1\n{extra}'
    )
    return load_profile(str(path))


# -- the database writer's checkpoint page (procs/dbwriter/main.py) ----------------------------


class _WaitedError(Exception):
    """The writer's first wait, where the test looks at its page and stops it."""


def test_a_writer_waiting_for_postgresql_at_its_start_says_no_checkpoint(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed): PostgreSQL away when the writer (re)starts, its connect's retry waits through
    ``_noting``, which writes ``writer.committed`` (0: the checkpoint not read yet) with
    known=1, so ``ringex_dbwriter_committed_total`` drops to 0 and ``ringex_dbwriter_lag``
    says the whole journal (a restarted writer overwrites its previous run's true figure).
    Should: as the commit says ("no figure until the writer has said one, not a lag of the
    whole journal while it starts"): nothing said until the checkpoint is read."""
    cfg = _profile(tmp_path, instance, "[database]\nenabled = true\n")
    earlier = Counters.open(instance, DBWRITER_PAGE, DBWRITER_COUNTERS)
    earlier.values[0], earlier.values[1] = 5_000, 1  # the previous run's checkpoint
    seen: list[dict[str, int]] = []

    def first_wait(_seconds: float) -> None:
        seen.append(earlier.read())
        raise _WaitedError

    def petting(fn: Any, *, ready_first: bool = False) -> Any:
        return first_wait if ready_first else fn

    monkeypatch.setattr(sd_notify, "petting", petting)
    monkeypatch.setattr(gc_policy, "settle", lambda _gc: None)
    try:
        with pytest.raises(_WaitedError):  # a closed port: refused at once, retried after a wait
            dbwriter_main.run(cfg, dsn="postgresql://ringex@127.0.0.1:1/none?connect_timeout=2")
    finally:
        earlier.close()
    # (and it says it is ready: the supervisor's start does not wait for PostgreSQL away)
    assert seen == [{"committed": 5_000, "known": 1, "ready": 1}], seen


# -- the router's snapshot child (procs/router/snapshots.py) ----------------------------------


class _Child:
    """A snapshot child's stand-in: ``exitcode`` None while it runs."""

    def __init__(self, exitcode: int | None, pid: int = 4242) -> None:
        self.exitcode, self.pid = exitcode, pid

    def is_alive(self) -> bool:
        return self.exitcode is None

    def start(self) -> None:
        pass


class _Forks:
    """``multiprocessing.get_context("fork")``'s stand-in: each Process lets go at once."""

    def __init__(self) -> None:
        self.started: list[int] = []

    def get_context(self, _method: str) -> _Forks:
        return self

    def Process(self, target: Any, args: tuple[Any, ...], name: str, daemon: bool) -> _Child:
        os.write(args[3], b".")  # the child's "let go of the journal's lock"
        self.started.append(args[1])
        return _Child(None)


def test_a_failed_snapshot_is_logged_when_the_next_is_due_within_the_second(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Was (fixed): the child for seq 100 fails (the disk full) a moment after ``_reap`` saw it
    running; the next snapshot is due (``snapshot_every`` commands came) before a second
    has passed: ``maybe_start``'s ``is_alive()`` is False, the new child replaces it, and
    the failure is not logged nor counted (``failures`` 0). With a small ``snapshot_every``
    under load every failure can go so. Should: each failed child logged, whatever comes
    due after it (look at the old child's exit code before starting the next)."""
    cfg = _profile(tmp_path, instance, "[journal]\nsnapshot_every = 100\n")
    forks = _Forks()
    monkeypatch.setattr(router_snapshots, "multiprocessing", forks)
    snaps = Snapshots(cfg, 0)
    journal: Any = SimpleNamespace(sync=lambda: None, lock_fd=-1)
    snaps.maybe_start(100, journal)  # due by count: the child for seq 100
    assert forks.started == [100]
    child = snaps._child
    assert isinstance(child, _Child)
    snaps._reap_at = time.monotonic()  # looked just now while it ran:
    snaps.maybe_start(150, journal)  # (not due, nothing started)
    child.exitcode = 1  # then it fails
    with caplog.at_level(logging.ERROR, "ringex.router"):
        snaps.maybe_start(200, journal)  # due again within the second
    assert forks.started == [100, 200]
    assert (snaps.failures, "snapshot of seq 100 failed" in caplog.text) == (1, True)


def test_a_failed_snapshot_is_logged_once_looked_at(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Right: a child killed by a signal, looked at a second later, is one error naming its
    seq and the signal, and the next snapshot starts at its due point."""
    cfg = _profile(tmp_path, instance, "[journal]\nsnapshot_every = 100\n")
    forks = _Forks()
    monkeypatch.setattr(router_snapshots, "multiprocessing", forks)
    snaps = Snapshots(cfg, 0)
    journal: Any = SimpleNamespace(sync=lambda: None, lock_fd=-1)
    snaps.maybe_start(100, journal)
    assert isinstance(snaps._child, _Child)
    snaps._child.exitcode = -signal.SIGKILL
    with caplog.at_level(logging.ERROR, "ringex.router"):
        snaps.maybe_start(150, journal)
    assert snaps.failures == 1 and "snapshot of seq 100 failed (killed by signal 9" in caplog.text
    snaps.maybe_start(200, journal)
    assert forks.started == [100, 200]


# -- the session end's record (procs/supervisor/session_end.py, journaled_ends.py) -----------


def test_an_end_stamped_before_its_time_is_not_sent_again_at_the_next_start(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """Was (fixed): the supervisor sends the 17:00 end at 17:00:00; NTP steps the host's clock back
    2 s and the router sequences it stamped 16:59:58 (the review 221 case, the step before
    the stamp instead of after it). ``_confirm`` never finds it (``since_ns <= ts``), the
    record keeps ``"journaled": false``; the next start takes the end for lost and sends it
    again, expiring the DAY orders placed since for the new session. Before today the
    record said sent and nothing was resent. Should: an END_OF_SESSION for every symbol
    sequenced after the send (past the journal's last seq then, within STEP_MARGIN_NS of
    its time) confirms it."""
    host = Host(tmp_path, instance, standby=False)
    host.supervise(host.cfg, "2026-03-10 12:00")  # first start: from the next end
    host.orders("2026-03-10 12:00", "2026-03-10 16:59", 600)
    first = Watch(host.cfg)
    assert first.at("2026-03-10 17:00:00") == [utc("2026-03-10 17:00")]
    host.journal(("end", "2026-03-10 16:59:58"), ("order", "2026-03-10 17:00:01"))
    assert first.at("2026-03-10 17:00:02", "2026-03-10 17:00:03") == [None, None]
    host.journal(("order", "2026-03-10 17:30"))  # the next session's orders
    assert host.supervise(host.cfg, "2026-03-10 18:00", "2026-03-10 18:00:01") == [None, None]
    assert sends.count == 1


def test_an_end_confirmed_after_a_step_back_past_it_is_not_sent_again(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """Right (review 221's case): stamped 17:00:01, then entries stamped 17:05 and, the clock
    stepped back, 17:00:00; a restart finds it (the search starts 15 min early) and an
    operator's end 10 min before the time is not taken for the day's."""
    host = Host(tmp_path, instance, standby=False)
    host.supervise(host.cfg, "2026-03-10 12:00")
    host.journal(("end", "2026-03-10 16:50"))  # by hand, before the end: not the day's
    first = Watch(host.cfg)
    assert first.at("2026-03-10 17:00:00") == [utc("2026-03-10 17:00")]
    host.journal(("order", "2026-03-10 17:05"), ("end", "2026-03-10 17:00:01"))
    host.journal(("order", "2026-03-10 17:00:00"))
    assert first.at("2026-03-10 17:06") == [None]
    assert host.supervise(host.cfg, "2026-03-10 17:10", "2026-03-11 09:00") == [None, None]
    assert sends.count == 1


# -- ringex stop's SIGKILL (procs/cli.py _wait_orphans) ---------------------------------------


@pytest.fixture
def stopped_child() -> Iterator[subprocess.Popen[bytes]]:
    """A process frozen by SIGSTOP, as a hung orphan of a killed supervisor."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    os.kill(child.pid, signal.SIGSTOP)
    yield child
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGKILL)
    child.wait(10)


def test_ringex_stop_kills_no_process_that_took_an_orphans_pid(
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stopped_child: subprocess.Popen[bytes],
) -> None:
    """Right: a pid listed with another start time (a process that took it since) is not
    killed; the listed one, frozen, is, and the stop says stopped."""
    cfg = _profile(tmp_path, instance)
    monkeypatch.setattr(Supervisor, "STOP_GRACE_S", 0.2)  # the grace, shortened
    started = process_start(stopped_child.pid)
    assert started is not None
    other = [(stopped_child.pid, started + 1)]  # its pid, another process's start
    assert cli._wait_orphans(cfg, {}, other, 0.2) == 0  # not that one's: gone already
    assert stopped_child.poll() is None
    assert cli._wait_orphans(cfg, {}, [(stopped_child.pid, started)], 0.2) == 0
    deadline = time.monotonic() + 10
    while stopped_child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stopped_child.returncode == -signal.SIGKILL


# -- the unfiled index by orderId (procs/gateway/rest_named.py, unfiled_orders.py) -----------


def test_the_unfiled_index_gives_no_other_accounts_order(instance: str, tmp_path: Path) -> None:
    """Right: ``UnfiledOrders.get`` checks the account, so GET order by another account's
    orderId finds nothing there (review 222's lookup leaks nothing)."""
    sym = _profile(tmp_path, instance).symbols[0]
    index = UnfiledOrders(limit=4)
    order = LiveOrder(77, 1, sym, 1, "LIMIT", 1, 100, 0, 10, 0, cum=10, status="FILLED")
    index.changed(order, 9)
    assert (index.get(1, 77), index.get(2, 77), index.get(1, 78)) == (order, None, None)


# -- the cap's inverse and ".0" (procs/core/money.py, procs/gateway/instruments.py) ----------


def _cap(ref: int, tick: int, band_bps: int) -> int:
    return ref * (BPS + band_bps) // BPS // tick * tick  # Market.cap


@pytest.mark.parametrize(
    ("tick", "band_bps"),
    [(1, 0), (100, 0), (7, 0), (3, 1), (10**18, 0), (10**18, 500), (2**62, 0), (MAX_INT64, 0)],
)
def test_largest_capped_at_band_zero_and_huge_ticks(tick: int, band_bps: int) -> None:
    """Right: the largest stop price on the tick whose cap fits, one tick more does not."""
    top = largest_capped(tick, band_bps, MAX_INT64)
    assert top % tick == 0 and _cap(top, tick, band_bps) <= MAX_INT64
    assert _cap(top + tick, tick, band_bps) > MAX_INT64


@pytest.mark.parametrize(
    ("text", "units"),
    [(b".0", 0), (b"-.0", 0), (b".", None), (b"-", None), (b"", None), (b"0.", 0), (b".05", 5)],
)
def test_to_units_reads_a_bare_fraction(text: bytes, units: int | None) -> None:
    """Right: ".0" a zero (the edge then says it must be positive), "." and "" nothing."""
    assert to_units(text, 2) == units
