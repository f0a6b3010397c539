"""Review 294: a reread of session 68's changes outside the gateway.

Reviewed: ``git diff ec67f27`` of ``procs/common/exit_codes.py``, ``units.py``,
``procs/supervisor/main.py`` (``_restart``: a REFUSED exit stops the instance),
``session_end.py`` (``_journaled`` from ``STEP_MARGIN_NS`` before the end),
``procs/dbwriter/main.py`` (``_reviving`` in a worker thread, petting), ``writer.py``
(``_save_snapshot``), ``procs/replica/standby.py`` (``DamagedFrameError``, ``_damaged``,
``ssl.SSLError``, ``write_status``), ``source.py`` (``ssl.SSLError``, ``write_status``),
``replica/main.py``, ``router/main.py``, ``procs/admin/add_user.py`` (ChangeMadeError),
``scripts/failover.py`` (``_tidied``), ``scripts/systemd_units.py``, README's sentences on
them; the commit messages ec67f27..HEAD and reviews 281, 282, 286, 289, 291's test files.

Rig: review 8's ``Host``/``Watch`` (a journal written entry by entry, a supervisor's schedule
polled at given times, the admin ring counted); review 289's ``Proxy`` with a rule of its
own (``HeartbeatProxy``: damages the next Heartbeat frames in transit) between a real
``ReplicationSource`` and ``Standby`` in one event loop; ``_reviving`` with a stand-in
cluster whose start sleeps, under a SIGTERM handler like the writer's; ``_tidied`` with a
stand-in ``EmbeddedPostgres``.

Faults found (each fixed; its test says what it was):

1. A day's catch-up end counts as the next day's end. ``procs/supervisor/session_end.py:199``
   (``_journaled``) searches from ``end - STEP_MARGIN_NS`` past ``after_seq`` only; nothing
   bounds the search below by the end remembered before. An instance down across the 03-09
   end that starts at 03-10 16:59 sends the 03-09 end then (README: "an instance that was
   down across one or more ends sends one (the latest) once it runs"); it is stamped
   16:59:01, inside the two minutes before 17:00, so at 17:00 the 03-10 end is "journaled at
   seq N ... not sent again": the DAY orders taken in the last minute rest into the next
   session. The same for a promoted standby whose primary's catch-up end fell there.
   Fixed: an end stamped in the margin before ``end`` counts only where its sender's clock
   (its ``arg``, the admin client's time at the send) said ``end`` or later
   (``JournaledEnds.first_since``'s ``sent_from``): a router clock stepped back, not an end
   sent before; README says so.
   ``test_a_catch_up_end_just_before_the_next_end_is_not_that_days_end``.
2. Two damaged heartbeats, any time apart, refuse the standby as "another version of
   ringex?". ``procs/replica/standby.py:335-344`` (``_damaged``) keys the damage on
   ``self.next_seq`` and never forgets it; ``:315-319`` counts a ``FrameError`` of any frame
   (a Heartbeat, a StateFile, the EpochHistory) as a frame "from seq next_seq". On an idle
   primary next_seq does not move, so one damaged heartbeat, a reconnect, good heartbeats for
   as long as you like, and another damaged heartbeat end ``Standby.run`` with
   StandbyRefusedError: exit REFUSED (2), which under systemd is now never restarted
   (``RestartPreventExitStatus=2``). README: "refused only when the same seq arrives so
   twice": no seq arrived unreadable at all. Fixed: a ``FrameError`` past the handshake
   (``connected``) is a lost connection, reconnected with the backoff; only one in the
   handshake, or an Entries frame unreadable twice at one seq, refuses.
   ``test_two_damaged_heartbeats_of_an_idle_primary_do_not_refuse_the_standby``.

Sound (test_sound_*): a damaged Entries frame, then progress, then another damaged one at a
later seq reconnects each time (the key moves with progress, so no loop without progress:
a second damage without progress refuses); a SIGTERM while the revive waits on the
cluster's start neither interrupts the start nor escapes as an error: the handler only
flags the stop, the worker finishes, the pool is joined, ``pet`` kept being called;
``_tidied`` stops only the fenced primary's cluster (``promote`` refuses a primary and
standby of one journal path, so of one ``var_dir/instance``, before it; ``postgres_dir``
is ``var_dir/instance/pg``), and nothing where the promotion failed or the primary's
database is external; ``exit_codes.REFUSED`` is what ``exit_if_other_units`` exits with and
what a systemd unit spares. By reading: exit 2 in a child otherwise comes from argparse
(arguments the supervisor wrote: a restart would fail alike) and no other clause of a
process's ``main``; the supervisor's REFUSED check runs only for an exit before ready (a
standby is ready at spawn, so its run-time refusals still go the restart_limit way);
``_save_snapshot`` sets the period before the try, and ``SnapshotStore.save`` removes a
stale ``.tmp``; add-user's ChangeMadeError is caught before OSError (its subclass); the
stand-ins of review 172's DbWriter.__new__ do not reach the new attributes.

Leads not shown:
- ``_reviving`` pets for as long as its worker waits (an unbounded lock or connect in
  ``EmbeddedPostgres.start``): since bounded, it pets for ``PETTED_S`` (180 s) at most and
  leaves a hang to the watchdog.
- add-user: an AdminError in a deposit after a ChangeMadeError prints "ringex admin: ..."
  and exits 1, dropping the "stored, not durable" line (``add_user.py:88-90``).
- README (Session end) said for a while that an operator's end-session in the two minutes
  before the schedule "counts as that day's end"; with fault 1's fix it does not (its
  ``arg`` is before the end), and README says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from config.schema import RingexConfig
from procs.common import embedded_postgres
from procs.common.exit_codes import REFUSED
from procs.common.topology import postgres_dir
from procs.dbwriter import main as dbwriter_main
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby
from tests.scripts_loader import load_script
from tests.unit.replica.test_review_replica_bugs import append, pair, until
from tests.unit.supervisor.test_review8_session_end_failover import Host, Watch, sends
from tests.unit.supervisor.test_session_clock import utc
from tests.unit.supervisor.test_session_end import Sends
from tests.unit.test_review289_replication_network import (
    _LEN,
    Proxy,
    caught_up,
    journal_bytes,
    linked,
    via,
)

__all__ = ["sends"]  # review 8's fixture, used by name

# -- 1. a catch-up end just before the next end ---------------------------------------------------


def test_a_catch_up_end_just_before_the_next_end_is_not_that_days_end(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """Scenario: a primary under the 17:00 schedule runs on 03-09 until 12:00, is down across
    the 03-09 end and starts again at 03-10 16:59:00; it sends the 03-09 end at once (README:
    "an instance that was down across one or more ends sends one (the latest) once it runs"),
    which the router stamps 16:59:01; orders come in until 17:00.
    Expected: at 17:00 the 03-10 end is sent (the 03-09 one was that day's, not this one's):
    two sends. Was (fixed): ``_journaled`` (session_end.py:199) finds the 16:59:01 end within its
    two minutes' margin and logs the 03-10 end as "journaled ... not sent again": one send,
    and the DAY orders taken in the last minute rest into 03-11."""
    host = Host(tmp_path, instance, standby=False)
    host.supervise(host.cfg, "2026-03-09 12:00")  # first start: from the 03-09 end
    host.orders("2026-03-09 09:00", "2026-03-09 12:00", 600)
    watch = Watch(host.cfg)  # back at 16:59: the 03-09 end is owed
    assert watch.at("2026-03-10 16:59:00") == [utc("2026-03-09 17:00")]
    host.journal(("end", "2026-03-10 16:59:01"))
    host.orders("2026-03-10 16:59:02", "2026-03-10 16:59:58", 2)
    assert watch.at("2026-03-10 16:59:30") == [None]  # seen journaled: remembered
    assert watch.at("2026-03-10 17:00:01") == [utc("2026-03-10 17:00")]
    assert sends.count == 2


def test_sound_the_previous_days_end_does_not_count_for_the_next(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """An end sent on time is not taken for the next day's: the margin is two minutes, the
    days 24 hours apart; and an operator's end at 16:57 (outside it) is not 17:00's."""
    host = Host(tmp_path, instance, standby=False)
    watch = Watch(host.cfg)
    assert watch.at("2026-03-09 12:00", "2026-03-09 17:00:01") == [None, utc("2026-03-09 17:00")]
    host.journal(("end", "2026-03-09 17:00:01"))
    host.orders("2026-03-09 18:00", "2026-03-10 16:56", 1800)
    host.journal(("end", "2026-03-10 16:57:00"))
    assert watch.at("2026-03-09 17:00:05", "2026-03-10 17:00:01") == [
        None,
        utc("2026-03-10 17:00"),
    ]
    assert sends.count == 2


# -- 2. damaged heartbeats of an idle primary -----------------------------------------------------


class HeartbeatProxy(Proxy):
    """``flip_entries`` counts the Heartbeat frames still to damage: the body ``[8]``
    (``\\x91\\x08``) gets tag 24, which no message has (a FrameError at the standby)."""

    def _damage(self, data: bytes) -> tuple[bytes, bytes]:
        out, at = bytearray(), 0
        while len(data) - at >= _LEN.size:
            (length,) = _LEN.unpack_from(data, at)
            end = at + _LEN.size + length
            if end > len(data):
                break
            body = bytearray(data[at + _LEN.size : end])
            if self.flip_entries and body == b"\x91\x08":
                body[1] = 0x18
                self.flip_entries -= 1
            out += data[at : at + _LEN.size] + body
            at = end
        if not self.flip_entries:
            return b"", bytes(out) + data[at:]
        return data[at:], bytes(out)


@contextlib.asynccontextmanager
async def linked_by_heartbeats(
    primary: RingexConfig, secondary: RingexConfig
) -> AsyncIterator[tuple[Standby, asyncio.Task[None], HeartbeatProxy]]:
    """Review 289's ``linked`` through a ``HeartbeatProxy``."""
    source = ReplicationSource(primary)
    serving = asyncio.create_task(source.run())
    proxy = HeartbeatProxy(primary.replication.listen_port)
    async with proxy:
        standby = Standby(via(secondary, proxy))
        task = asyncio.create_task(standby.run())
        try:
            yield standby, task, proxy
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            standby.journal.close()
            source.stopping.set()
            await serving
            source.close()


def test_two_damaged_heartbeats_of_an_idle_primary_do_not_refuse_the_standby(
    tmp_path: Path,
) -> None:
    """Scenario: plain TCP; the standby holds the idle primary's 200 entries; a middlebox
    damages one heartbeat, the standby reconnects and follows (good heartbeats for 1.5 s),
    then damages another one.
    Expected: another reconnect (README: "refused only when the same seq arrives so twice":
    no entry arrived unreadable; a heartbeat has no seq), the standby still following.
    Was (fixed): the second FrameError finds ``_damaged_at == next_seq`` (201, unmoved on an idle
    primary: standby.py:340) and raises "sent a frame this standby cannot read ...: another
    version of ringex?": ``Standby.run`` ends, the process exits REFUSED (2)."""
    primary, secondary = pair(tmp_path)
    append(primary, 1, 200)

    async def scenario() -> None:
        async with linked_by_heartbeats(primary, secondary) as (standby, task, proxy):
            await caught_up(standby, task, 200, 15.0)
            proxy.flip_entries = 1
            await until(lambda: proxy.connections >= 2 and standby.connected, 15.0)
            await asyncio.sleep(1.5)  # good heartbeats on the new connection
            assert not task.done()
            proxy.flip_entries = 1
            await until(lambda: proxy.connections >= 3 or task.done(), 15.0)
            await asyncio.sleep(0.5)
            assert not task.done(), f"refused: {task.exception()}"
            await until(lambda: standby.connected, 15.0)

    asyncio.run(scenario())


def test_sound_damage_at_two_seqs_with_progress_between_reconnects_each_time(
    tmp_path: Path,
) -> None:
    """An Entries frame damaged at seq 1, caught up; then one damaged at seq 1501 (a new
    key, as progress moved next_seq): a reconnect each time, and a byte-identical journal."""
    primary, secondary = pair(tmp_path)
    append(primary, 1, 1500)

    async def scenario() -> None:
        async with linked(primary, secondary) as (_, standby, task, proxy):
            proxy.flip_entries = 1
            await caught_up(standby, task, 1500, 15.0)
            proxy.flip_entries = 1
            append(primary, 1501, 1500)
            await caught_up(standby, task, 3000, 15.0)
            assert proxy.connections >= 3, proxy.connections

    asyncio.run(scenario())
    assert journal_bytes(secondary) == journal_bytes(primary)


# -- sound: the revive's worker under a SIGTERM ---------------------------------------------------


class _SlowStart:
    """A stand-in cluster that is down and takes ``seconds`` to start, on any thread."""

    data = Path("/nonexistent/pg/data")

    def __init__(self, seconds: float) -> None:
        self.seconds, self.starts = seconds, 0
        self.threads: list[str] = []

    def running(self) -> bool:
        return False

    def start(self) -> str:
        self.threads.append(threading.current_thread().name)
        time.sleep(self.seconds)
        self.starts += 1
        return "dsn"


def test_sound_a_sigterm_while_the_revive_waits_lets_the_start_finish(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer's SIGTERM handler only flags the stop (``dbwriter/main.py`` ``stop``), so a
    SIGTERM 0.3 s into a 1 s start is handled on the main thread between waits: the start
    ends in its worker, the pool is joined, nothing is logged as a failed start, and the
    watchdog kept being petted."""
    monkeypatch.setattr(dbwriter_main, "PET_S", 0.1)
    stops: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: stops.append(signum))
    cluster = _SlowStart(1.0)
    pets: list[float] = []
    stand_in: Any = cluster
    revive = dbwriter_main._reviving(stand_in, lambda: pets.append(time.monotonic()), 0.0)
    timer = threading.Timer(0.3, lambda: signal.raise_signal(signal.SIGTERM))
    try:
        timer.start()
        revive()
    finally:
        timer.join()
        signal.signal(signal.SIGTERM, previous)
    assert stops == [signal.SIGTERM]
    assert cluster.starts == 1 and cluster.threads[0].startswith("revive")
    assert len(pets) >= 5, pets
    assert "did not start" not in caplog.text
    assert not [t for t in threading.enumerate() if t.name.startswith("revive")]


# -- sound: _tidied stops the fenced primary's cluster only ---------------------------------------


class _Cluster:
    """A stand-in ``EmbeddedPostgres``: records the root it was made for and its stops."""

    made: ClassVar[list[Path]] = []
    stopped: ClassVar[list[tuple[Path, str]]] = []

    def __init__(self, root: Path) -> None:
        self.root = self.data = root
        _Cluster.made.append(root)

    def running(self) -> bool:
        return True

    def stop(self, mode: str = "fast", timeout_s: int = 60) -> None:
        _Cluster.stopped.append((self.root, mode))


@pytest.fixture
def clusters(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Cluster]]:
    _Cluster.made, _Cluster.stopped = [], []
    monkeypatch.setattr(embedded_postgres, "EmbeddedPostgres", _Cluster)
    yield _Cluster


def test_sound_tidied_stops_the_fenced_primarys_cluster_only(
    tmp_path: Path, clusters: type[_Cluster]
) -> None:
    """Promoted (code 0): the primary's ``var_dir/instance/pg`` is stopped (immediate), never
    the standby's; not promoted, or a primary on an external database: nothing."""
    failover: Any = load_script("failover", "rv294")
    primary, standby = pair(tmp_path)
    said: list[str] = []
    assert failover._tidied(primary, said.append, 0) == 0
    assert clusters.stopped == [(postgres_dir(primary), "immediate")]
    assert postgres_dir(primary) != postgres_dir(standby)
    assert failover._tidied(primary, said.append, 1) == 1
    db = primary.database.__class__(dsn="host=/elsewhere dbname=x")
    external = primary.__class__(instance=primary.instance, var_dir=primary.var_dir, database=db)
    assert failover._tidied(external, said.append, 0) == 0
    assert clusters.made == [postgres_dir(primary)]


def test_sound_refused_is_the_units_exit(instance: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``exit_if_other_units`` exits ``REFUSED`` (2) on a refusal (review 281's test pins the
    systemd units' ``RestartPreventExitStatus=2``)."""
    from procs.common import units  # noqa: PLC0415

    monkeypatch.setattr(units, "units_differ", lambda cfg: "BTC's scale 8, the journal's 6")
    with pytest.raises(SystemExit) as exited:
        units.exit_if_other_units(RingexConfig(instance=instance), "router")
    assert exited.value.code == REFUSED == 2
