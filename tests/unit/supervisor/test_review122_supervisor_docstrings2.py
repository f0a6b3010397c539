"""Review 122 (part 2): the supervisor's docstrings held to its code, for ``plan.py``,
``preflight.py``, ``held.py``, ``held_promotion.py``, ``promotion.py``, ``listening.py``,
``draining.py``, ``stuck_watch.py``, ``metrics.py``, ``carried.py``, ``session_clock.py``,
``session_end.py`` and ``journaled_ends.py``. The convention, the helpers and the list of
disagreements are those of ``test_review122_supervisor_docstrings.py``.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import resource
import signal
import socket
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from config import load_profile
from config.schema import ReplicationConfig
from procs.admin.client import AdminBusyError
from procs.common.embedded_postgres import EmbeddedPostgres, find_bin_dir
from procs.common.journal import JournalError
from procs.common.run_files import run_dir
from procs.supervisor import (
    carried,
    draining,
    held,
    held_promotion,
    listening,
    metrics,
    preflight,
    promotion,
    session_clock,
    session_end,
    stuck_watch,
)
from procs.supervisor import plan as plan_module
from procs.supervisor.journaled_ends import STEP_MARGIN_NS, JournaledEnd, JournaledEnds
from procs.supervisor.main import Child, Supervisor
from procs.supervisor.plan import ProcessSpec, plan
from procs.supervisor.session_clock import DAY_NS, behind, due_end, latest_end, next_end
from procs.supervisor.session_end import SessionEnds, session_end_path
from shm.ring import ConsumerInfo
from tests.unit.supervisor.test_promotion import standby_profile
from tests.unit.supervisor.test_review8_session_end_failover import Host
from tests.unit.supervisor.test_review122_supervisor_docstrings import (
    FakeProcess,
    claims,
    tuned,
)
from tests.unit.supervisor.test_session_clock import utc
from tests.unit.supervisor.test_session_end import Sends
from tests.unit.test_review109_readme_processes import full_config

AT_17 = 17 * 60
E = utc("2026-03-10 17:00")  # a scheduled end


# -- plan.py -----------------------------------------------------------------------------------


def test_the_plan_its_order_ready_rings_ports_and_stop_groups() -> None:
    """plan.py: each process "counts as ready once it holds its *ready ring* ... (the
    router's on the admin command ring, a matcher's on its input ring, a gateway's on its
    replies ring, market data's on the first matcher output)"; "a port of 0 is any free one
    and is not waited on"; "The list's order is matchers, then the router, the replication
    source and the database writer, then market data and gateways"; intake "stopped first",
    the writer "stopped last"."""
    claims(plan_module)
    specs = plan(full_config())
    by = {s.name: s for s in specs}
    order = [s.name for s in specs]
    assert order[:3] == ["matcher-m1", "matcher-m2", "router"]
    assert order.index("marketdata") < order.index("gateway-gw1") == len(order) - 1
    assert (by["router"].ready_ring, by["matcher-m2"].ready_ring) == ("gw0-cmd", "m2-in")
    assert (by["gateway-gw1"].ready_ring, by["marketdata"].ready_ring) == ("gw1-rep", "m1-out")
    assert set(by["router"].watched) == {("gw1-cmd", "router"), ("m1-out", "router"),
                                         ("m2-out", "router")}  # fmt: skip
    assert [s.name for s in specs if s.intake] == ["gateway-gw1"]
    assert [s.name for s in specs if s.stop_last] == ["dbwriter"]
    assert by["dbwriter"].ready_ring == "" and by["replica-source"].ready_ring == ""
    cfg = full_config()
    gw = cfg.gateways[0]
    zero = full_config(gateways=[type(gw)(name="gw1", id=1, port=0, rest=None)])
    assert {s.name: s for s in plan(zero)}["gateway-gw1"].ready_ports == ()
    argv = by["matcher-m1"].argv("p.toml")
    assert argv == [sys.executable, "-m", "procs.matcher.main", "--profile", "p.toml",
                    "--name", "m1"]  # fmt: skip


def test_a_standby_runs_its_standby_process_alone_with_its_nice() -> None:
    """plan.py: "a standby runs no intake and no books until promoted"; ``nice``: "scheduling
    niceness it starts with (supervisor.nice)", the replica source's key being "replica"."""
    claims(plan, ProcessSpec)
    cfg = full_config(replication=ReplicationConfig(primary="127.0.0.1:1"))
    cfg = tuned(cfg, nice={"standby": 3})
    assert [(s.name, s.nice, s.intake) for s in plan(cfg)] == [("standby", 3, False)]
    source = {s.name: s for s in plan(tuned(full_config(), nice={"replica": 4}))}
    assert source["replica-source"].nice == 4


# -- preflight.py --------------------------------------------------------------------------------


def test_preflight_refusals_name_the_setting_and_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """preflight.py: "each refusal naming the setting and the limit it meets: CPUs this host
    lacks (``supervisor.cores``), a niceness it may not set (``supervisor.nice``), rings that
    shared memory cannot hold (``ring.capacity``)"; each is "" when fine."""
    claims(preflight, preflight.nice_refused)
    cfg = full_config()
    fine = [ProcessSpec("a", "m", (), tuple(os.sched_getaffinity(0)), "", "", nice=5)]
    assert preflight.cpus_missing(fine) == "" and preflight.nice_refused(fine) == ""
    assert preflight.shm_short(cfg) == ""
    monkeypatch.setattr(preflight, "_has_cap_sys_nice", lambda: False)
    monkeypatch.setattr(resource, "getrlimit", lambda what: (20, 20))  # room: to 0
    lower = [ProcessSpec("b", "m", (), (), "", "", nice=-5)]
    current = os.getpriority(os.PRIO_PROCESS, 0)
    refused = preflight.nice_refused(lower)
    assert (refused == "") == (current - 5 >= 0)
    monkeypatch.setattr(resource, "getrlimit", lambda what: (0, 0))
    assert "CAP_SYS_NICE" in preflight.nice_refused(lower)
    assert "RLIMIT_NICE" in preflight.nice_refused(lower)
    monkeypatch.setattr(os, "statvfs", lambda p: SimpleNamespace(f_bavail=1, f_frsize=1))
    short = preflight.shm_short(cfg)
    assert "ring.capacity = " in short and "MiB free" in short


# -- held.py --------------------------------------------------------------------------------------


def test_a_held_process_runs_on_the_word_exits_on_end_of_file_and_dies_with_its_parent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """held.py: "each imports its module, then waits for the supervisor's word on stdin, and
    only then runs ``<module>.main(args)``"; "End of file instead of the word ... exits 0
    without running"; "SIGKILL once its stop grace has passed (``GRACE_ENV``)"."""
    claims(held)
    ran: list[list[str]] = []
    graces: list[float] = []

    def main(argv: list[str]) -> int:
        ran.append(argv)
        return 7

    monkeypatch.setitem(sys.modules, "r122_probe", SimpleNamespace(main=main))
    monkeypatch.setattr(held, "kill_when_orphaned", graces.append)
    monkeypatch.setenv(held.GRACE_ENV, "20.0")
    for word, code in ((b"", 0), (b"go\n", 7)):
        monkeypatch.setattr(sys, "argv", ["held", "r122_probe", "--profile", "p"])
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(word)))
        assert held.main() == code
    assert ran == [["--profile", "p"]] and graces == [20.0, 20.0]


# -- held_promotion.py, promotion.py --------------------------------------------------------------


class StoodIn:
    """``Supervisor`` in ``held_promotion``, stood in for: records what is asked of it."""

    steps: ClassVar[list[str]] = []
    request: ClassVar[bool] = False

    def __init__(self, cfg: Any, profile: str) -> None:
        self.cfg, self.profile, self.children = cfg, profile, list[Any]()
        self.role = "standby" if cfg.replication.primary else "promoted"
        self.prestarted = False
        run_dir(cfg).mkdir(parents=True, exist_ok=True)

    def run(self, stop: Any, go: Any = None, started: Any = None, begin: Any = None) -> int:
        self.steps.append(f"run {self.role}")
        if started is not None:
            started()
            if self.request:
                promotion.request(self.cfg, os.getpid(), 3)
            assert stop()
        if begin is not None:
            self.steps.append(f"begin {begin()}")
        return 0

    def prestart(self) -> None:
        self.steps.append(f"prestart {self.role}")

    def discard_held(self) -> None:
        self.steps.append(f"discard {self.role}")

    def write_status(self) -> None:
        pass


@pytest.mark.parametrize("requested", [False, True])
def test_a_standby_holds_its_promotion_and_a_request_releases_it_a_stop_does_not(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch, requested: bool
) -> None:
    """``run_standby``: "once it runs, the promoted instance's processes start, held; a
    promotion request stops the standby and releases them, in this process. A plain stop lets
    them go unreleased"; promotion.py: "the supervisor stops its standby process ..., begins
    the epoch and releases the held processes", woken by "SIGUSR1"."""
    claims(held_promotion.run_standby, promotion)
    path = standby_profile(tmp_path, instance)
    cfg = load_profile(str(path))
    StoodIn.steps, StoodIn.request = [], requested
    monkeypatch.setattr(held_promotion, "Supervisor", StoodIn)
    epochs: list[tuple[str, int]] = []

    def begin_epoch(cfg: Any, epoch: int) -> int:
        epochs.append((cfg.replication.primary, epoch))
        return 1

    monkeypatch.setattr(promotion, "begin_epoch", begin_epoch)
    before = signal.getsignal(signal.SIGUSR1)
    try:
        code = held_promotion.run_standby(cfg, str(path), lambda: not requested)
        assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, before)
    finally:
        signal.signal(signal.SIGUSR1, before)
    assert code == 0
    if requested:
        assert StoodIn.steps == ["run standby", "prestart promoted", "run promoted", "begin True"]
        assert epochs == [("", 3)]
    else:
        assert StoodIn.steps == ["run standby", "prestart promoted", "discard promoted"]
        assert epochs == []
    assert promotion.requested(cfg) == 0
    assert not (run_dir(cfg) / promotion.REQUEST).exists()


def test_the_promoted_profile_and_the_epoch_a_request_may_name(
    tmp_path: Path, instance: str
) -> None:
    """promotion.py: "The promoted profile is the standby's TOML without
    ``replication.primary``, written beside it as ``<name>.promoted.toml``"; ``requested``:
    "The epoch this process was asked to promote into, else 0"; ``begin_epoch`` "Raises ...
    ``EpochsError``": an epoch not newer than the journal's is refused (no second primary in
    one epoch). The session record is shared: ``session_end.py`` "(same run directory)"."""
    claims(promotion, promotion.requested, session_end)
    path = standby_profile(tmp_path, instance)
    promoted = promotion.write_promoted_profile(str(path))
    assert promoted == tmp_path / "standby.promoted.toml"
    cfg, primary = load_profile(str(path)), load_profile(str(promoted))
    assert primary.replication.primary == "" and cfg.replication.primary
    assert session_end_path(cfg) == session_end_path(primary)
    run_dir(cfg).mkdir(parents=True, exist_ok=True)
    for epoch, taken in ((1, 0), (True, 0), ("3", 0), (3, 3)):
        promotion.request(cfg, os.getpid(), epoch)  # type: ignore[arg-type]
        assert promotion.requested(cfg) == taken
    assert promotion.begin_epoch(primary, 3) == 1
    with pytest.raises(ValueError, match="the journal is at 3"):
        promotion.begin_epoch(primary, 3)


# -- listening.py, draining.py --------------------------------------------------------------------


def test_a_listener_is_a_listen_socket_on_the_port_among_the_process_descriptors(
    tmp_path: Path,
) -> None:
    """listening.py: "A socket in LISTEN state (``0A``) on the port whose inode is one of the
    process's descriptors is the process's own listener, whatever the others do";
    ``listening_inodes``: "(IPv4 and IPv6)"; ``socket_inodes``: "empty if it is gone"."""
    claims(listening, listening.listening_inodes, listening.socket_inodes)
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  " \
        "timeout inode\n"  # fmt: skip
    v4 = tmp_path / "tcp"
    v4.write_text(head + "0: 0100007F:1F90 00000000:0000 0A 0:0 00:0 0 0 0 111\n"
                  "1: 0100007F:1F91 00000000:0000 01 0:0 00:0 0 0 0 112\n")  # fmt: skip
    v6 = tmp_path / "tcp6"
    v6.write_text(head + "0: 00000000000000000000000000000000:1F92 0:0 0A 0:0 00:0 0 0 0 113\n")
    found = listening.listening_inodes({8080, 8081, 8082}, (str(v4), str(v6), "/nonexistent"))
    assert found == {111: 8080, 113: 8082}
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listening.missing_listeners(os.getpid(), (port,)) == []
        assert listening.missing_listeners(os.getppid(), (port,)) == [port]  # another's
    gone = FakeProcess(exits=0)  # a pid no process has: beyond pid_max
    gone.pid = 1 << 30
    assert listening.socket_inodes(gone.pid) == set()


class FakeRing:
    """A ring whose consumers' lags fall by one each look; its detaches recorded."""

    def __init__(self, name: str, lines: list[tuple[str, int, bool]]) -> None:
        self.name, self.lines, self.detached = name, lines, list[int]()

    def info(self) -> Any:
        state = ["detached" if i in self.detached else "active" for i in range(len(self.lines))]
        rows = [(i, n, state[i], 0, lag, 1, alive, None, False, ()) for i, (n, lag, alive) in
                enumerate(self.lines)]  # fmt: skip
        consumers = [ConsumerInfo(*row) for row in rows]
        self.lines = [(n, max(0, lag - 1), alive) for n, lag, alive in self.lines]
        return SimpleNamespace(name=self.name, consumers=consumers)

    def detach_consumer(self, index: int) -> None:
        self.detached.append(index)


def test_drain_waits_for_live_readers_detaches_the_gone_and_says_who_lags() -> None:
    """``drain``: "Wait until every live consumer has read its ring to the end, at most
    ``timeout_s``, detaching stopped consumers' lines meanwhile; returns the lines still
    behind (``ring:line=lag``), empty when drained"; ``stop_bound_s``: "three groups'
    ``grace_s`` ..., the drain between and ``STOP_SLACK_S``"."""
    claims(draining.drain, draining.stop_bound_s)
    naps: list[float] = []
    ring = FakeRing("m1-out", [("router", 3, True), ("gw1", 50, False)])
    assert draining.drain([ring], 5.0, sleep=naps.append) == []  # type: ignore[list-item]
    assert ring.detached and ring.detached[0] == 1 and naps == [0.05]
    slow = FakeRing("m1-in", [("matcher", 100, True)])
    assert draining.drain([slow], 0.0, sleep=naps.append) == ["m1-in:matcher=99"]  # type: ignore[list-item]
    assert draining.stop_bound_s(10.0, 20.0) == 3 * 20.0 + 10.0 + draining.STOP_SLACK_S


def test_the_embedded_databases_stop_fits_in_the_stop_slack(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``STOP_SLACK_S``: "The embedded database's stop and the rest of a stop, at most (s)",
    which ``stop_bound_s`` (what ``ringex stop`` waits) counts on. ``_stop_embedded_database``
    of a private database runs ``EmbeddedPostgres.stop``'s ``pg_ctl ... -w stop``: its wait
    is bounded within the slack (review 122: it carried no ``-t``, pg_ctl's default 60 s)."""
    claims(draining)
    if find_bin_dir() is None:
        pytest.skip("no PostgreSQL binaries: EmbeddedPostgres cannot be made")
    sup = Supervisor(tuned(full_config(instance, tmp_path), metrics=False), "p")
    assert sup.cfg.database.enabled and not sup.cfg.database.dsn
    ran: list[list[str]] = []
    monkeypatch.setattr(EmbeddedPostgres, "running", lambda self: True)
    monkeypatch.setattr(EmbeddedPostgres, "_check", lambda self, argv, what: ran.append(argv))
    sup._stop_embedded_database()
    (argv,) = ran
    assert "stop" in argv and "-w" in argv
    assert "-t" in argv, argv
    assert float(argv[argv.index("-t") + 1]) <= draining.STOP_SLACK_S


# -- stuck_watch.py -------------------------------------------------------------------------------


def _line(seq: int, age: float | None, lag: int = 5, pid: int = 0) -> ConsumerInfo:
    return ConsumerInfo(0, "matcher", "active", seq, lag, pid or os.getpid(), True, age,
                        False, ())  # fmt: skip


@pytest.mark.parametrize("restart", [False, True])
def test_a_process_whose_line_stands_still_with_records_waiting_is_stuck(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, restart: bool,
) -> None:  # fmt: skip
    """``_look_for_stuck``: "a process with records waiting for it whose position did not
    move since the last look and whose heartbeat is older than ``stuck_after_s`` is stuck
    ... Logged; with ``restart_stuck`` killed"; ``Child.stuck``: "logged as stuck (once per
    episode)"; ``_heartbeat_age``: "as of the last look"."""
    claims(stuck_watch.StuckWatch._look_for_stuck, Child, Supervisor._heartbeat_age)
    cfg = tuned(full_config(instance, tmp_path), stuck_after_s=2.0, restart_stuck=restart)
    sup = Supervisor(cfg, "p")
    child = sup.children[0]
    process = FakeProcess()
    child.process, child.ready = process, True  # type: ignore[assignment]
    looks = iter([_line(4, 0.5), _line(4, 1.5), _line(4, 3.0), _line(4, 4.0), _line(6, 0.1),
                  _line(6, 1.0), _line(6, 5.0)])  # fmt: skip
    monkeypatch.setattr(sup, "_line", lambda c, *a: next(looks) if c is child else None)
    seen = []
    with caplog.at_level(logging.ERROR, logger="ringex.supervisor"):
        for _ in range(7):
            sup._look_for_stuck()
            seen.append(child.stuck)
    assert seen == [False, False, True, True, False, False, True]
    assert caplog.text.count("looks stuck") == 2
    assert process.signals == (["KILL"] * 3 if restart else [])
    # as of the last look; a process killed as stuck beats no more (review 183): none
    assert Supervisor._heartbeat_age(child) == (None if restart else 5.0)


# -- metrics.py, carried.py -----------------------------------------------------------------------


def test_counters_carry_earlier_incarnations_and_never_go_down() -> None:
    """carried.py: "A page restarted when any of its counters went down since the last scrape
    ...; a process when its pid changed, or its CPU time went down"; ``total``: "What
    ``incarnation`` last reported for ``key`` ...; None if never"."""
    claims(carried, carried.Carried.total)
    c = carried.Carried()
    assert c.page("gw1", {"a": 5, "b": 3}) == {"a": 5, "b": 3}
    assert c.page("gw1", {"a": 6, "b": 3}) == {"a": 6, "b": 3}
    assert c.page("gw1", {"a": 1, "b": 4}) == {"a": 7, "b": 7}  # a went down: a new writer
    assert c.total("router") is None
    assert c.incarnation("router", 100, 2.0) == 2.0
    assert c.incarnation("router", 200, 0.5) == 2.5  # another pid
    assert c.incarnation("router", 200, 0.1) == 2.6  # went down: the pid reused
    assert c.total("router") == 2.6


def test_the_metrics_their_names_and_what_each_counts(instance: str, tmp_path: Path) -> None:
    """metrics.py: a ring's cursor as ``ringex_ring_records``, the roles ("commands a gateway
    submitted are its ``gwN-cmd`` ring's records, commands routed to a matcher its ``<m>-in``
    ring's ..."), the supervisor's state, the process table ("A page a process has not made
    yet is skipped ...: never a failed scrape"); ``ProcessSample.pid``: "0: never started";
    a process down keeps the CPU it used; ``journal_last_seq``: "None without a journal"."""
    claims(metrics, metrics.ProcessSample, metrics.journal_last_seq)
    cfg = full_config(instance, tmp_path)
    sup = Supervisor(tuned(cfg, metrics=False), "p")
    sup.create_rings()
    try:
        up = metrics.ProcessSample("router", os.getpid(), True, True, 2, 1.0e9)
        never = metrics.ProcessSample("gateway-gw1", 0, False, False, 0, 0.0)
        down = metrics.ProcessSample("router", 1 << 30, False, False, 3, 2.0e9)
        samples = [[up, never], [down, never]]
        collector = metrics.RingexCollector(cfg, "p", sup._rings, lambda: samples.pop(0),
                                            lambda: "running")  # fmt: skip
        first = {m.name: m for m in collector.collect()}
        later = {m.name: m for m in collector.collect()}
    finally:
        sup.stop()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for m in first.values() for s in m.samples}  # fmt: skip
    assert got[("ringex_supervisor_state", (("ringex_supervisor_state", "running"),))] == 1
    assert got[("ringex_gateway_commands_total", (("gateway", "gw1"),))] == 0
    assert got[("ringex_matcher_events_total", (("matcher", "m2"),))] == 0
    assert got[("ringex_ring_capacity", (("ring", "m1-in"),))] == cfg.ring.capacity
    assert got[("ringex_process_restarts_total", (("process", "router"),))] == 2
    assert ("ringex_process_pid", (("process", "gateway-gw1"),)) not in got
    assert not first["ringex_fix_orders"].samples and not first["ringex_trades"].samples
    assert first["ringex_router_sequenced"].samples == []  # no journal: None, not 0
    cpu = [s.value for s in first["ringex_process_cpu_seconds"].samples]
    assert [s.value for s in later["ringex_process_cpu_seconds"].samples] == cpu  # kept
    assert metrics.journal_last_seq(tmp_path / "none", 64) is None
    (tmp_path / "empty").mkdir()
    assert metrics.journal_last_seq(tmp_path / "empty", 64) == 0
    usage = metrics.proc_stat(os.getpid())
    assert usage is not None and abs(usage[0] - sum(os.times()[:2])) < 0.1


# -- session_clock.py -----------------------------------------------------------------------------


def test_the_schedule_in_utc_one_end_a_day_and_the_clock_set_back() -> None:
    """session_clock.py: "every day ``minute`` minutes after midnight UTC"; "An end exactly at
    ``now_ns`` has come"; "However many ends were missed, one is due"; ``behind``: "more than a
    day before ``last_sent_ns``". The schedule is UTC arithmetic: across a DST change of any
    zone the ends are 24 h apart."""
    claims(session_clock, latest_end, due_end, behind)
    assert latest_end(E, AT_17) == E and next_end(E, AT_17) == E + DAY_NS
    assert latest_end(E - 1, AT_17) == E - DAY_NS
    dst = [latest_end(utc(f"2026-03-{d} 18:00"), AT_17) for d in ("07", "08", "09")]
    assert [b - a for a, b in itertools.pairwise(dst)] == [DAY_NS, DAY_NS]  # US DST began 03-08
    assert due_end(E + 5 * DAY_NS + 1, AT_17, E - DAY_NS) == E + 5 * DAY_NS
    assert due_end(E + 1, AT_17, E) is None
    assert not behind(E - DAY_NS, AT_17, E) and behind(E - DAY_NS - 1, AT_17, E)
    assert not behind(E - 3600 * 10**9, AT_17, E)  # set back an hour: nothing twice
    assert due_end(E - 3600 * 10**9, AT_17, E) is None


# -- session_end.py -------------------------------------------------------------------------------


class Journal:
    """``JournaledEnds`` stood in for: an end found (or not), a last seq, or unreadable."""

    def __init__(self, found: JournaledEnd | None = None, *, broken: bool = False) -> None:
        self.found, self.broken, self.asked = found, broken, list[tuple[int, int]]()

    def first_since(
        self, since_ns: int, after_seq: int = 0, sent_from: int = 0
    ) -> JournaledEnd | None:
        self.asked.append((since_ns, after_seq))
        if self.broken:
            raise JournalError("torn")
        return self.found

    def last_seq(self) -> int:
        return 42


def _ends(tmp_path: Path, journal: Journal, *, follows: bool = False) -> tuple[SessionEnds, Sends]:
    cfg = tuned(full_config("r122", tmp_path), session_end_utc="17:00")
    sends = Sends()
    ends = SessionEnds(cfg, AT_17, sends, follows=follows)
    ends.journal = journal  # type: ignore[assignment]
    return ends, sends


def test_a_first_start_takes_the_passed_end_as_sent_then_sends_each_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """session_clock.py: "With nothing remembered ... the end that already passed is taken as
    sent"; ``poll``: "its scheduled time, or None"; the file "is written after the send"
    (a refused send leaves it); ``LATE_NS``: a late send "says how late it is"."""
    claims(session_clock, session_end)
    ends, sends = _ends(tmp_path, Journal())
    assert ends.poll(E + 60 * 10**9) is None and sends.count == 0
    assert json.loads(ends.path.read_text())["end_ns"] == E
    sends.refuse = AdminBusyError("busy")
    assert ends.poll(E + DAY_NS + 1) is None
    assert json.loads(ends.path.read_text())["end_ns"] == E
    sends.refuse = None
    with caplog.at_level(logging.INFO, logger="ringex.supervisor"):
        assert ends.poll(E + DAY_NS + 9 * 10**9) == E + DAY_NS
    assert "(9 s late)" in caplog.text
    assert ends.poll(E + DAY_NS + 10 * 10**9) is None and sends.count == 1
    assert json.loads(ends.path.read_text())["end_ns"] == E + DAY_NS


def test_a_journaled_end_is_not_sent_again_an_unreadable_journal_sends_it_a_standby_never(
    tmp_path: Path,
) -> None:
    """session_end.py: "an END_OF_SESSION for every symbol sequenced at or after it ... is
    taken as that day's end, remembered, and not sent again"; "A journal that cannot be read
    is logged and the end sent"; ``poll``: "always None where it ``follows``", and a standby
    remembers "each end its primary journals ... as it arrives"."""
    claims(session_end, SessionEnds.poll)
    for follows in (False, True):
        ends, sends = _ends(tmp_path / str(follows), Journal(JournaledEnd(7, E + 1)),
                            follows=follows)  # fmt: skip
        ends.poll(E - 60 * 10**9)  # a first start
        assert ends.poll(E + 10**9) is None and sends.count == 0
        assert ends.last_sent_ns == E
    ends, sends = _ends(tmp_path / "broken", Journal(broken=True))
    ends.poll(E - 60 * 10**9)
    assert ends.poll(E + 10**9) == E and sends.count == 1
    ends, sends = _ends(tmp_path / "standby", Journal(), follows=True)
    ends.poll(E - 60 * 10**9)
    assert ends.poll(E + 10**9) is None and sends.count == 0 and ends.last_sent_ns == E - DAY_NS


def test_an_unreadable_record_is_the_end_before_and_a_clock_set_back_restarts_the_schedule(
    tmp_path: Path,
) -> None:
    """session_end.py: a record "that cannot be read all the same ... is not a first start
    ...: the end before it is, so the end that passed is sent"; "A clock set back past the
    remembered end (``session_clock.behind``) starts the schedule again from the clock's next
    end, remembering the journal's last seq with it"."""
    claims(session_end)
    journal = Journal()
    ends, sends = _ends(tmp_path, journal)
    ends.path.parent.mkdir(parents=True, exist_ok=True)
    ends.path.write_text("{torn")
    assert ends.poll(E + 10**9) == E and sends.count == 1
    back = E - 2 * DAY_NS + 3600 * 10**9
    assert ends.poll(back) is None and ends.after_seq == 42
    doc = json.loads(ends.path.read_text())
    assert (doc["end_ns"], doc["after_seq"]) == (E - 2 * DAY_NS, 42)
    assert ends.poll(E - DAY_NS + 10**9) == E - DAY_NS and sends.count == 2
    assert journal.asked[-1] == (E - DAY_NS - STEP_MARGIN_NS, 42)  # (the margin: review 282)


def test_the_session_end_goes_once_to_the_admin_ring_without_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``send_end_of_session``: "END_OF_SESSION for every symbol, one try at the admin ring"
    (no wait for the ring's roles nor for room; the client closed even when refused)."""
    claims(session_end.send_end_of_session)
    calls: list[Any] = []

    class Client:
        def __init__(self, cfg: Any, wait_s: float) -> None:
            calls.append(("wait_s", wait_s))

        def end_session(self, symbol: str | None, timeout_s: float) -> None:
            calls.append((symbol, timeout_s))
            raise AdminBusyError("full")

        def close(self) -> None:
            calls.append("closed")

    monkeypatch.setattr(session_end, "AdminClient", Client)
    with pytest.raises(AdminBusyError):
        session_end.send_end_of_session(full_config())
    assert calls == [("wait_s", 0.0), (None, 0.0), "closed"]


# -- journaled_ends.py ----------------------------------------------------------------------------


def test_the_journal_holds_a_days_end_only_for_every_symbol_at_or_after_it_within_a_day(
    tmp_path: Path, instance: str
) -> None:
    """journaled_ends.py: "One for a single symbol, or one sequenced before ``E``, is not; nor
    one stamped a day or more after ``E`` ..., nor one at or before a seq the caller names";
    ``first_since``: "None: none yet, or no journal"; ``last_seq``: "0: none yet"."""
    module = sys.modules[JournaledEnds.__module__]
    claims(module)
    host = Host(tmp_path, instance, standby=False)
    ends = JournaledEnds(host.cfg)
    assert ends.first_since(E) is None and ends.last_seq() == 0
    host.journal(("end", "2026-03-10 16:59"), ("end 1", "2026-03-10 17:00:01"),
                 ("end", "2026-03-11 17:00"), ("end", "2026-03-10 17:00:02"))  # fmt: skip
    assert JournaledEnds(host.cfg).first_since(E) == JournaledEnd(4, E + 2 * 10**9)
    assert JournaledEnds(host.cfg).first_since(E, after_seq=4) is None
    assert JournaledEnds(host.cfg).last_seq() == 4
