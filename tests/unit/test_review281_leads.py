"""Review 281: leads the last sessions' notes left open, each shown and fixed.

Reviewed: ``procs/supervisor/main.py`` (``_restart``), ``procs/common/exit_codes.py``,
``procs/router/main.py``, ``procs/replica/main.py``, ``procs/common/units.py`` (their
refusals' exit status), ``scripts/systemd_units.py`` (``run_command``),
``procs/dbwriter/main.py`` (``_reviving``), ``procs/gateway/order_fields.py`` (``amounts``),
``scripts/failover.py`` (``promote``).

Rig: a never-started ``Supervisor`` over a matcher and the router (review 183's), its restarts'
sleeps recorded and its spawns stood in for by a process that has already exited with the
given status (its real ``_wait_ready`` looks at it); a stand-in embedded cluster whose start
takes a while, for the writer's revive.

Faults found (each fixed; its test says what it was):

1. A process that refuses its config at a restart is restarted until ``restart_limit``: the
   router exits 2 with one line ("fees of BTC-USD ... cancel them first") when the profile
   was edited since the start to change a symbol's fee margin while buys rest, and
   ``_restart`` (``procs/supervisor/main.py:368-373``) took that exit like a crash, starting
   it again with a growing backoff until the limit stopped the instance ("exited 6 times
   within 60 s ... more than restart_limit=5"). Its start checks ask about units and the fee
   account, not the fees (which need the journal's open orders). Fixed: the refusals'
   status is ``exit_codes.REFUSED`` (2), shared by the router, the standby and every
   process's units check; a restart's start that exits with it stops the instance at once
   with its line, and a systemd unit is not restarted on it (``RestartPreventExitStatus``:
   ``Restart=on-failure`` restarted it to ``StartLimitBurst`` the same way).
2. A revive of the embedded cluster does not pet the watchdog: ``_reviving``
   (``procs/dbwriter/main.py:83-90``) runs ``EmbeddedPostgres.start``, whose ``pg_ctl start
   -w -t 60`` waits up to 60 s for a crash recovery, in the writer's loop, with nothing
   sent to systemd meanwhile: past the unit's ``WatchdogSec`` (30 s by default) systemd
   killed the writer that was bringing the database back. Fixed: the start runs in a
   worker thread while the loop waits on it, calling the writer's ``pet`` every second.
3. A triggered stop-limit resting at a StopPx off a tick raised since cannot be replaced:
   a G must restate its StopPx (``replace_fault``), and ``order_fields.amounts``
   (``procs/gateway/order_fields.py:389``) judged it with ``price_ticks`` under today's
   tick, refusing "not a multiple of tick 0.05", though the matcher checks no stop at a
   replace (only triggered stops can be) and review 278 takes the order's own Price so.
   Fixed: a G's StopPx equal to its order's own is taken off the tick.
4. A promotion on one host leaves the fenced primary's embedded PostgreSQL running
   (``scripts/failover.py``, ``fence``): its writer, SIGKILLed, never stopped the cluster it
   started, which ran on reparented to init, and ``ringex stop`` of the fenced instance says
   "not running" (review 288's walk through the README found it). Fixed: ``promote`` stops
   it (immediate: ``demote`` removes it anyway) once the promoted instance runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from config import load_profile
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.exit_codes import REFUSED
from procs.common.topology import postgres_dir
from procs.common.types import OrdType, Side, TimeInForce
from procs.dbwriter import main as dbwriter_main
from procs.gateway import order_fields as of
from procs.gateway.fix import FixMessage
from procs.gateway.order_state import Order
from procs.supervisor import main as supervisor_main
from procs.supervisor.main import Supervisor, SupervisorError
from procs.supervisor.plan import plan
from tests.scripts_loader import load_script
from tests.unit.gateway.test_review112_readme_fix2 import SYM, message, order
from tests.unit.supervisor.test_review122_supervisor_docstrings import tuned
from tests.unit.supervisor.test_supervisor import write_profile
from tests.unit.test_review278_config_changes import RAISED


@pytest.fixture
def sup(instance: str, tmp_path: Path) -> Supervisor:
    """A never-started supervisor of a matcher and the router, metrics off."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    return Supervisor(tuned(load_profile(str(profile)), metrics=False), str(profile))


@pytest.fixture
def naps(sup: Supervisor, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The restarts' backoff sleeps, recorded (not slept); no status written, no CPU check."""
    monkeypatch.setattr(supervisor_main, "cpus_missing", lambda specs: "")
    slept: list[float] = []
    clock = SimpleNamespace(monotonic=time.monotonic, sleep=slept.append, time=time.time,
                            time_ns=time.time_ns)  # fmt: skip
    monkeypatch.setattr(supervisor_main, "time", clock)
    monkeypatch.setattr(sup, "write_status", lambda: None)
    return slept


def _exiting_starts(sup: Supervisor, monkeypatch: pytest.MonkeyPatch, code: int) -> list[str]:
    """Each restart's start: a process already exited with ``code``, seen by the real
    ``_wait_ready``; returns what was spawned."""
    spawned: list[str] = []

    def spawn(child: Any) -> None:
        spawned.append(child.spec.name)
        child.process = SimpleNamespace(pid=1, poll=lambda: code, returncode=code)

    monkeypatch.setattr(sup, "_spawn", spawn)
    monkeypatch.setattr(sup, "_release", lambda child: None)
    monkeypatch.setattr(sup, "_wait_ready", Supervisor._wait_ready.__get__(sup))
    return spawned


# -- fault 1: a refusal restarted until the limit -------------------------------------------------


def test_a_restart_refused_by_its_config_stops_the_instance_at_once(
    sup: Supervisor, naps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: the router dies (SIGKILL) after the profile was edited in a way its start
    refuses (a fee margin under resting buys); each start exits ``REFUSED`` with its reason
    logged. Expected: one start, then the instance stops naming the process and its exit
    (``restart_limit = 5`` is for crashes: a refusal repeats). Was (fixed): six starts, then
    "exited 6 times within 60 s ... more than restart_limit=5"."""
    sup.cfg = tuned(sup.cfg, restart_limit=5, restart_window_s=60.0)
    spawned = _exiting_starts(sup, monkeypatch, REFUSED)
    child = sup.children[-1]
    with pytest.raises(SupervisorError) as stopped:
        sup._restart(child, -9)
    said = str(stopped.value)
    assert spawned == [child.spec.name], spawned
    assert f"{child.spec.name} not restarted: " in said and "exited with 2 while starting" in said
    assert "restart_limit" not in said, said


def test_sound_a_start_that_crashes_is_still_tried_to_the_limit(
    sup: Supervisor, naps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start that dies otherwise (exit 1: a traceback, a resource gone for now) is retried
    with its backoff until ``restart_limit``, as before."""
    sup.cfg = tuned(sup.cfg, restart_limit=3, restart_window_s=60.0)
    spawned = _exiting_starts(sup, monkeypatch, 1)
    child = sup.children[-1]
    with pytest.raises(SupervisorError) as stopped:
        sup._restart(child, -9)
    assert len(spawned) == 3 and "more than restart_limit=3" in str(stopped.value)
    assert naps == [0.1, 0.2, 0.4]


# -- fault 2: a revive that does not pet the watchdog ---------------------------------------------


class _SlowCluster:
    """An embedded cluster that is down and takes ``start_s`` to start (a crash recovery)."""

    def __init__(self, start_s: float, fails: bool = False) -> None:
        self.start_s, self.fails, self.data, self.starts = start_s, fails, Path("pg"), 0

    def running(self) -> bool:
        return False

    def start(self) -> str:
        self.starts += 1
        time.sleep(self.start_s)
        if self.fails:
            raise OSError("pg_ctl: could not start server")
        return "dsn"


def test_a_revive_pets_the_watchdog_while_the_cluster_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scenario: the writer's retry finds its cluster down and starts it; the start takes
    2.5 s (``PET_S`` shortened to 0.5 s: as 60 s against a 30 s ``WatchdogSec``). Expected:
    the writer's ``pet`` is called while it waits (each call pets where half the watchdog has
    passed). Was (fixed): not once until the start returned."""
    monkeypatch.setattr(dbwriter_main, "PET_S", 0.5)
    pets: list[float] = []
    cluster = _SlowCluster(2.5)
    revive = dbwriter_main._reviving(cluster, lambda: pets.append(time.monotonic()), 0.0)  # type: ignore[arg-type]
    began = time.monotonic()
    revive()
    assert cluster.starts == 1 and time.monotonic() - began >= 2.5
    assert len(pets) >= 3, pets


def test_sound_a_revive_that_fails_is_said_and_tried_later(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A start that fails in the worker is logged as before (not raised into the writer's
    retry), and the next revive tries again."""
    monkeypatch.setattr(dbwriter_main, "PET_S", 0.05)
    cluster = _SlowCluster(0.1, fails=True)
    revive = dbwriter_main._reviving(cluster, lambda: None, 0.0)  # type: ignore[arg-type]
    revive()
    revive()
    assert cluster.starts == 2
    assert "could not start server" in caplog.text


def test_a_systemd_unit_is_not_restarted_on_a_refusal(instance: str, tmp_path: Path) -> None:
    """Under systemd (``scripts/systemd_units.py``) the same: each unit's ``Restart=on-failure``
    spares the refusal's status (``RestartPreventExitStatus=2``), as the supervisor does."""
    units = load_script("systemd_units", "rv281")
    cfg = load_profile(str(write_profile(tmp_path / "p.toml", instance, tmp_path / "var")))
    for spec in plan(cfg):
        cmd = units.run_command(cfg, spec, units.Options("p", Path("/w")))
        props = [cmd[k + 1] for k, arg in enumerate(cmd) if arg == "-p"]
        assert "Restart=on-failure" in props and f"RestartPreventExitStatus={REFUSED}" in props


# -- fault 3: a triggered stop-limit off a raised tick ---------------------------------------------


def _triggered(stop: int, price: int) -> Order:
    """A buy stop-limit of 5.00 (``stop``, ``price`` in ticks of 0.01), triggered: it rests."""
    return Order(
        1, 5, b"o", b"", SYM, Side.BUY, OrdType.STOP_LIMIT, TimeInForce.GTC, price, stop, 500,
        order_id=9, leaves=500, status=b"0",
    )  # fmt: skip


def _g_stop_limit(qty: str, price: str, stop: str) -> FixMessage:
    """A G of order "o" as a stop-limit (OrdType 4): ``qty``, ``price``, StopPx ``stop``."""
    pairs = [(t, v) for t, v in order("n") if t not in (38, 40, 44)]
    return message("G", (41, "o"), *pairs, (40, "4"), (38, qty), (44, price), (99, stop))


def test_a_g_of_a_triggered_stop_limit_restates_its_off_tick_stop() -> None:
    """Scenario: a buy stop-limit (StopPx 100.01, limit 100.05) triggered and rests; the
    operator raises BTC-USD's tick to 0.05; the client cuts it to 4.00 with a G that must
    restate its StopPx (``replace_fault``: a replace changes only price and size). Expected:
    taken, (10_005, 10_001, 400, 0), as review 278 takes the order's own price off the tick
    (the matcher checks neither an unchanged price nor the stop of a triggered order). Was
    (fixed): "StopPx 100.01 is not a multiple of tick 0.05": it could only be cancelled."""
    was = _triggered(stop=10_001, price=10_005)
    taken = of.amounts(_g_stop_limit("4", "100.05", "100.01"), RAISED, OrdType.STOP_LIMIT,
                       replacing=was)  # fmt: skip
    assert taken == (10_005, 10_001, 400, 0), taken
    assert of.replace_fault(_g_stop_limit("4", "100.05", "100.01"), was, 10_001, 0) is None


def test_sound_a_new_stop_off_the_tick_is_refused() -> None:
    """A new stop-limit (no order replaced) with that StopPx is refused naming the tick; a G
    restating another StopPx is refused by ``replace_fault`` as before."""
    new = of.amounts(_g_stop_limit("4", "100.05", "100.01"), RAISED, OrdType.STOP_LIMIT)
    assert isinstance(new, of.Fault) and "tick 0.05" in new.text, new
    was = _triggered(stop=10_001, price=10_005)
    other = of.amounts(_g_stop_limit("4", "100.05", "100.10"), RAISED, OrdType.STOP_LIMIT,
                       replacing=was)  # fmt: skip
    assert (
        isinstance(other, tuple)
        and of.replace_fault(_g_stop_limit("4", "100.05", "100.10"), was, other[1], 0) is not None
    )


# -- fault 4: the fenced primary's database left running -------------------------------------------


def test_a_promotion_stops_the_fenced_primarys_embedded_database(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ``failover.py promote`` on one host fences the primary (SIGKILL of its
    supervisor and processes: its database writer too) and the standby runs as the primary.
    Expected: the old primary's embedded PostgreSQL, which its killed writer started, is
    stopped once the promoted instance runs (off the promotion's clock); a promotion that
    failed leaves it as it was. Was (fixed): it ran on, reparented to init, and ``ringex stop``
    of the fenced instance said "not running" (review 288's walk through the README)."""
    failover = load_script("failover", "rv281")
    cfg = load_profile(str(write_profile(tmp_path / "p.toml", instance, tmp_path / "var")))
    cfg = msgspec.structs.replace(
        cfg, database=msgspec.structs.replace(cfg.database, enabled=True, dsn="")
    )
    cluster = EmbeddedPostgres(postgres_dir(cfg), fast=True)
    cluster.start()  # as the old primary's writer started it
    try:
        said: list[str] = []
        assert failover._tidied(cfg, said.append, 1) == 1 and cluster.running()
        assert failover._tidied(cfg, said.append, 0) == 0
        assert not cluster.running() and "embedded database stopped" in said[0], said
    finally:
        cluster.destroy()
