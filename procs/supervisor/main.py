"""The supervisor: creates an instance's rings, runs its processes, restarts them, stops it.

    python -m procs.supervisor.main --profile dev      (what `ringex run` runs)

- Start: every process of ``plan(cfg)`` is started at once, pinned to its CPUs, and held
  after its imports (``held.py``); refuse if the instance's segments have live processes
  (it is running); remove what a dead one left; create every ring of ``topology.rings(cfg)``;
  release the matchers, then the rest together, waiting until each holds its ready ring.
- Watch: a process that exits is restarted; each start recovers through the crash-only path
  (snapshot + journal). More than ``restart_limit`` restarts of one process within
  ``restart_window_s`` stops the instance with the reason (as one refusal of its config
  does): a crash loop is not fixed by looping. Once a day at ``supervisor.session_end_utc``
  it sends END_OF_SESSION through the admin rings (``session_end.py``): DAY orders expire.
- Stop (SIGINT, SIGTERM): stop intake (the gateways), wait until every ring is drained
  (``drain_timeout_s``; the stopped gateways' lines are detached: ``draining.py``), stop the
  rest in reverse order (each flushes, snapshots, fsyncs), the database writer last (it
  reads the journal to the end first), then unlink the segments.

``var/<instance>/run/status.json`` says what runs (pids, CPUs, restarts, state, the metrics
URL) for ``ringex status`` and ``ringex stop``; each process logs to
``var/<instance>/run/<name>.log``. Prometheus metrics (``metrics.py``) are served from here,
read from shared memory when scraped (ring headers and the processes' counter pages).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from config import load_profile
from config.loader import is_file_path
from config.schema import RingexConfig
from procs.common.embedded_postgres import EmbeddedError, EmbeddedPostgres
from procs.common.exit_codes import REFUSED
from procs.common.parent_death import die_with_parent
from procs.common.record_codec import RecordCodec
from procs.common.run_files import (
    InstanceBusyError,
    StatusFile,
    instance_lock,
    run_dir,
    status_path,
)
from procs.common.stopping import stop_on_signals
from procs.common.topology import create_rings, postgres_dir
from procs.common.units import units_differ
from procs.supervisor.child import Child
from procs.supervisor.draining import STOP_SLACK_S, drain
from procs.supervisor.exit_reason import last_logged
from procs.supervisor.held import GO, GRACE_ENV
from procs.supervisor.listening import missing_listeners
from procs.supervisor.metrics import MetricsServer, ProcessSample, RingexCollector
from procs.supervisor.plan import MATCHER_MODULE, plan
from procs.supervisor.preflight import (
    cpus_missing,
    embedded_refused,
    fee_account_user,
    fee_account_user_now,
    layout_differs_now,
    nice_refused,
    shm_short,
    tls_refused,
    units_differ_now,
)
from procs.supervisor.session_end import SessionEnds
from procs.supervisor.stuck_watch import StuckWatch
from shm import Ring, ShmError
from shm.counters import Counters
from shm.inspect import list_segments, remove_instance
from shm.liveness import process_start

#: What is imported from here (``Child`` lives in ``child.py`` now).
__all__ = ["Child", "StopAsked", "Supervisor", "SupervisorError", "main"]

log = logging.getLogger("ringex.supervisor")
#: Its log lines' format: the pid after the logger's name, as syslog writes it.
SUPERVISOR_LOG_FORMAT = "%(asctime)s %(name)s[%(process)d] %(message)s"


class SupervisorError(RuntimeError):
    """The instance cannot be started or kept running; the message says why."""


class StopAsked(Exception):  # noqa: N818  (not an error: the operator's stop, while starting)
    """A stop came while processes were starting or recovering: stop now, not once ready."""


class Supervisor(StuckWatch):
    STOP_GRACE_S = 20.0  # a process ignoring SIGTERM this long (all of a group) is killed

    def __init__(self, cfg: RingexConfig, profile: str) -> None:
        self.cfg = cfg
        self.profile = profile
        self.children = [Child(spec) for spec in plan(cfg)]
        self.state = "starting"
        self.reason = ""
        #: Looked at while a process starts (``_wait_ready``): ``run`` sets it to its stop.
        self.stop_asked: Callable[[], bool] = lambda: False
        self._rings: dict[str, Ring[Any]] = {}
        self.metrics: MetricsServer | None = None
        #: A standby's: its promoted instance's processes are started and held (``spare``).
        self.prestarted = False
        self._status = StatusFile(status_path(cfg), log)  # (a failed write: said once)
        #: The daily END_OF_SESSION (``supervisor.session_end_utc``), polled by ``watch``.
        self.session_ends = SessionEnds.of(cfg)
        self._duties_done = 0.0  # when ``_duties`` last ran (monotonic)
        run_dir(cfg).mkdir(parents=True, exist_ok=True)

    # -- start ----------------------------------------------------------------------------------

    def refuse_cpus_missing(self) -> None:
        """Refuse ``supervisor.cores`` naming a CPU this host does not let us run on, a
        ``supervisor.nice`` this process may not set, TLS files that do not load, and the
        rest of ``preflight.py``'s start checks."""
        specs = [child.spec for child in self.children]
        refused = cpus_missing(specs) or nice_refused(specs) or tls_refused(self.cfg)
        if refused := refused or fee_account_user(self.cfg) or embedded_refused(self.cfg):
            raise SupervisorError(refused)

    def refuse_other_units(self) -> None:
        """Refuse a config whose units differ from its journal's (``procs/common/units.py``):
        its router would refuse at each restart."""
        if refused := units_differ(self.cfg):
            raise SupervisorError(refused)

    def refuse_running(self) -> None:
        instance = self.cfg.instance
        live = [s for s in list_segments(instance) if not s.stale]
        if live:
            names = ", ".join(f"{s.name} (pids {list(s.live_pids)})" for s in live[:4])
            raise SupervisorError(
                f"instance {instance!r} is running: {names}; stop it first (ringex stop)"
            )

    def create_rings(self) -> None:
        self.refuse_running()  # again: the check before the processes started was a while ago
        remove_instance(self.cfg.instance)  # what a dead instance left behind
        if short := shm_short(self.cfg):  # refused before a SIGBUS, whoever it would hit
            raise SupervisorError(short)
        try:
            self._rings = create_rings(self.cfg, RecordCodec())
        except ShmError as exc:  # /dev/shm filled since, or another start made its rings (it
            raise SupervisorError(str(exc)) from exc  # removed those it made, not another's)

    def serve_metrics(self) -> None:
        """Serve /metrics (``supervisor.metrics``); scrapes read the rings this created."""
        settings = self.cfg.supervisor
        if not settings.metrics:
            return
        collector = RingexCollector(
            self.cfg, self.profile, self._rings, self.process_samples, lambda: self.state
        )
        try:
            self.metrics = MetricsServer(collector, settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            raise SupervisorError(str(exc)) from exc
        log.info("metrics at %s", self.metrics.url)

    def prestart(self) -> None:
        """Start every process, held after its imports until ``start`` releases it; one held
        that died meanwhile (nothing watches a standby's held processes: the OOM killer, an
        operator's kill) is started again. A fork refused is a ``SupervisorError`` naming it."""
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                log.warning("held %s exited with %s: started again", child.spec.name,
                            child.process.returncode)  # fmt: skip
                child.process = None
            if child.process is None:
                try:
                    self._spawn(child)
                except (OSError, subprocess.SubprocessError) as exc:  # fork: EAGAIN, ENOMEM
                    raise SupervisorError(f"{child.spec.name} not started: {exc}") from None

    def start(self, meanwhile: Callable[[], None] | None = None) -> None:
        """Release in two waves, each at once and then waited on in order: the matchers
        (the router's start reads how far each recovered), then everything else (a gateway
        that listens before the router is ready only queues commands in its ring). One
        after the other took about 1.3 s of a failover, and imports after the release
        another 0.6 s. ``meanwhile`` runs once the last wave is released, while it starts
        (the metrics server: 0.1 s a failover's first order need not wait for)."""
        books = [c for c in self.children if c.spec.module == MATCHER_MODULE]
        self.prestart()
        waves = (books, [c for c in self.children if c not in books])
        for k, wave in enumerate(waves):
            for child in wave:
                self._release(child)
            if meanwhile is not None and k == len(waves) - 1:
                meanwhile()
            for child in wave:
                self._wait_ready(child)
        self.state = "running"
        self.write_status()
        log.info("instance %s running: %d processes", self.cfg.instance, len(self.children))

    def _spawn(self, child: Child) -> None:
        spec = child.spec
        logfile = open(run_dir(self.cfg) / f"{spec.name}.log", "ab")  # noqa: SIM115
        child.log_from = logfile.tell()  # (its end: this run's lines follow)
        cpus = set(spec.cpus)
        supervisor = os.getpid()

        def pin() -> None:  # in the child, before exec: the process starts on its CPUs
            if cpus:
                os.sched_setaffinity(0, cpus)
            if spec.nice:
                os.nice(spec.nice)
            # a supervisor killed outright (even before this call) takes its processes with it
            die_with_parent(parent=supervisor)

        held = [sys.executable, "-m", "procs.supervisor.held", spec.module]
        try:
            child.process = subprocess.Popen(
                [*held, "--profile", self.profile, *spec.args],
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE,  # the word that releases it (``held.py``)
                preexec_fn=pin,  # noqa: PLW1509  (affinity and niceness only; no locks)
                start_new_session=True,  # Ctrl-C reaches the supervisor: it stops them in order
                cwd=Path.cwd(),
                env={**os.environ, GRACE_ENV: str(self.STOP_GRACE_S)},
            )
        finally:
            logfile.close()
        child.held, child.ready, child.started_at, child.started_unix = True, False, 0.0, 0.0
        if spec.ready_counter:  # its last run's 1 is not this run's (the page outlives it)
            Counters.zero(self.cfg.instance, *spec.ready_counter)

    def _release(self, child: Child) -> None:
        process = child.process
        assert process is not None and process.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died: _wait_ready says so
            process.stdin.write(GO)
            process.stdin.close()
        child.held = False
        child.started_at, child.started_unix = time.monotonic(), time.time()
        spec = child.spec
        log.info("started %s (pid %d) %s", spec.name, process.pid, " ".join(spec.args))

    def discard_held(self) -> None:
        """Let go of processes never released: end of file, and they exit without running."""
        for child in self.children:
            if child.held and child.process is not None:
                assert child.process.stdin is not None
                child.process.stdin.close()
                child.process.wait()
                child.process = None
                child.held = False

    def _wait_ready(self, child: Child, meanwhile: Callable[[], None] | None = None) -> None:
        """Until ``child`` is ready: it holds its ready ring and listens on its ports (the
        dbwriter: sets its ready counter). ``meanwhile`` runs every tick (a restart's: the
        watch's once-a-second duties)."""
        spec, process = child.spec, child.process
        assert process is not None
        deadline = time.monotonic() + self.cfg.supervisor.ready_timeout_s
        while time.monotonic() < deadline:
            if meanwhile is not None:
                meanwhile()
            if self.stop_asked():
                raise StopAsked(f"stop asked while {spec.name} starts")
            if (code := process.poll()) is not None:
                said = self._last_logged(child) or "nothing logged"  # (278; this run's)
                raise SupervisorError(f"{spec.name} exited with {code} while starting: {said}; "
                                      f"see {run_dir(self.cfg) / f'{spec.name}.log'}")  # fmt: skip
            if self._not_ready(child) is None:
                child.ready, child.ready_at = True, time.monotonic()
                return
            time.sleep(0.02)
        missing = self._not_ready(child) or "was not ready"  # (ready just now: late still)
        raise SupervisorError(
            f"{spec.name} {missing} within {self.cfg.supervisor.ready_timeout_s} s; see "
            f"{run_dir(self.cfg) / spec.name}.log"
        )

    def _not_ready(self, child: Child) -> str | None:
        """What ``child`` has yet to do to be ready (None: nothing): hold its ready ring, set
        its ready counter, listen on its ports."""
        spec, process = child.spec, child.process
        assert process is not None
        if spec.ready_ring in self._rings and self._line(child) is None:
            return f"did not attach {spec.ready_ring!r} as {spec.ready_consumer!r}"
        if spec.ready_counter and not Counters.peek(self.cfg.instance, *spec.ready_counter):
            page, counter = spec.ready_counter  # the dbwriter: it reached PostgreSQL
            return f"did not set {counter!r} on its page {page!r}"
        if silent := missing_listeners(process.pid, spec.ready_ports):
            return f"did not listen on port(s) {silent}"
        return None

    # -- watch ----------------------------------------------------------------------------------

    def watch(self, stop: Callable[[], bool]) -> None:
        """Restart what exits, every 0.1 s, until ``stop()``. A signal ends the wait at once
        (``signal.set_wakeup_fd``: a sleep resumes after its handler), so a stop does not
        wait out the tick: a failover waits for this supervisor to be gone."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        old_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        woken = select.poll()
        woken.register(wake_r, select.POLLIN)
        try:
            while not stop():
                for child in self.children:
                    process = child.process
                    if process is not None and process.poll() is not None:
                        self._restart(child, process.returncode)
                self._duties()
                woken.poll(100)  # (poll: any descriptor, select() none past 1023)
        finally:
            signal.set_wakeup_fd(old_fd)
            os.close(wake_r)
            os.close(wake_w)

    def _duties(self) -> None:
        """Once a second, whatever else goes on (a restart waiting out a process's recovery,
        which may take minutes, included): look for stuck processes, write the status (a
        process that died meanwhile shows down), send a session end that is due."""
        if time.monotonic() - self._duties_done < 1.0:
            return
        self._look_for_stuck()
        self.write_status()
        if self.session_ends is not None:
            self.session_ends.poll(time.time_ns())
        self._duties_done = time.monotonic()

    def _last_logged(self, child: Child) -> str | None:
        return last_logged(run_dir(self.cfg) / f"{child.spec.name}.log", child.log_from)

    def _restart(self, child: Child, code: int) -> None:
        """Start ``child`` again after it exited with ``code``. One that exits again while
        starting is one more restart, tried again with a longer backoff, until more than
        ``restart_limit`` within ``restart_window_s`` stop the instance; one that refuses
        its config (``exit_codes.REFUSED``) stops it at once, with its reason."""
        while True:
            refused = units_differ_now(self.profile) or layout_differs_now(self.profile, self.cfg)
            if refused := refused or fee_account_user_now(self.profile):
                raise SupervisorError(f"{child.spec.name} not restarted: {refused}")
            now = time.monotonic()
            window = self.cfg.supervisor.restart_window_s
            child.restarts = [t for t in child.restarts if now - t < window] + [now]
            limit = self.cfg.supervisor.restart_limit
            if len(child.restarts) > limit:
                raise SupervisorError(
                    f"{child.spec.name} exited {len(child.restarts)} times within {window:g} "
                    f"s (last code {code}), more than restart_limit={limit}: stopping the "
                    f"instance; its log's last line: {self._last_logged(child) or 'none'}"
                )
            child.restarts_total += 1  # made: the exit that stops the instance is not one
            log.warning("%s exited with %s: restarting (it recovers)", child.spec.name, code)
            child.ready = False
            self.write_status()  # down and recovering: not ready, no dead pid shown "up"
            # (the exponent capped: 2 ** 1024 is past a float, review 183; 2 s from the 6th)
            time.sleep(min(2.0, 0.1 * 2 ** min(len(child.restarts) - 1, 16)))
            if refused := cpus_missing([child.spec]):  # CPUs taken from us since the start
                raise SupervisorError(f"{child.spec.name} not restarted: {refused}")
            try:
                self._spawn(child)
            except (OSError, subprocess.SubprocessError) as exc:  # fork: EAGAIN, ENOMEM
                raise SupervisorError(f"{child.spec.name} not restarted: {exc}") from None
            self._release(child)
            self.write_status()
            try:
                self._wait_ready(child, self._duties)
            except SupervisorError as exc:
                process = child.process
                if process is None or process.poll() is None:
                    raise  # not an exit (a start that hangs): as before
                if (code := process.returncode) == REFUSED:  # each start would refuse again
                    raise SupervisorError(f"{child.spec.name} not restarted: {exc}") from None
                continue
            self.write_status()
            return

    # -- stop -----------------------------------------------------------------------------------

    def stop(self) -> None:
        self.state = "stopping"
        self.write_status()
        intake = [c for c in self.children if c.spec.intake]
        last = [c for c in self.children if c.spec.stop_last]
        rest = [c for c in reversed(self.children) if not (c.spec.intake or c.spec.stop_last)]
        self._terminate(intake)
        self._drain()
        self._terminate(rest)
        self._terminate(last)
        self._stop_embedded_database()
        if self.metrics is not None:  # before the rings are unmapped under a scrape
            self.metrics.close()
            self.metrics = None
        for ring in self._rings.values():
            ring.close()
        self._rings.clear()
        remove_instance(self.cfg.instance)
        self.state = "stopped"
        self.write_status()
        log.info("instance %s stopped", self.cfg.instance)

    def _stop_embedded_database(self) -> None:
        """The instance's private PostgreSQL (no database.dsn) goes down with it; the writer
        that started it may have been restarted since, and only its starter stops it."""
        if not self.cfg.database.enabled or self.cfg.database.dsn:
            return
        try:
            cluster = EmbeddedPostgres(postgres_dir(self.cfg))
            if cluster.running():  # within the stop's slack, which ``ringex stop`` waits
                cluster.stop(timeout_s=int(STOP_SLACK_S * 2 / 3))  # (review 122)
        except EmbeddedError as exc:
            log.warning("embedded database not stopped: %s", exc)

    def _terminate(self, children: list[Child]) -> None:
        """SIGTERM the group, then one ``STOP_GRACE_S`` deadline for all of it (not each)."""
        for child in children:
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + self.STOP_GRACE_S
        for child in children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s did not stop in %s s: killed", child.spec.name, self.STOP_GRACE_S)
                child.process.kill()
                child.process.wait()

    def _drain(self) -> None:
        lagging = drain(self._rings.values(), self.cfg.supervisor.drain_timeout_s)
        if lagging:
            log.warning(
                "rings not drained in %.0f s: %s", self.cfg.supervisor.drain_timeout_s, lagging
            )

    # -- status ---------------------------------------------------------------------------------

    def write_status(self) -> None:
        doc = {
            "instance": self.cfg.instance,
            "profile": self.profile,
            "supervisor_pid": os.getpid(),
            "supervisor_started": process_start(os.getpid()),
            "state": self.state,
            "role": "standby" if self.cfg.replication.primary else "primary",
            "prestarted": self.prestarted,
            "reason": self.reason,
            "updated_ns": time.time_ns(),
            "metrics_url": self.metrics.url if self.metrics is not None else "",
            "processes": [
                {
                    "name": c.spec.name,
                    "pid": c.process.pid if c.process is not None else None,
                    # with the pid, what names the process for good (a pid is reused)
                    "started": process_start(c.process.pid) if c.process is not None else None,
                    "alive": (alive := c.process is not None and c.process.poll() is None),
                    "ready": c.ready and alive,  # (gone in a drain: review 272)
                    "cpus": list(c.spec.cpus),
                    "restarts": c.restarts_total,
                    "heartbeat_age_s": self._heartbeat_age(c),
                    "uptime_s": c.uptime_s(),
                }
                for c in self.children
            ],
        }
        self._status.write(doc)  # var/ full or failing: said once, the instance runs on

    @property
    def _status_failing(self) -> bool:
        return self._status.failing

    def process_samples(self) -> list[ProcessSample]:
        """The process table for a metrics scrape (called from the server's thread)."""
        return [
            ProcessSample(
                name=c.spec.name,
                pid=c.process.pid if c.process is not None else 0,
                up=(up := c.process is not None and c.process.poll() is None),
                ready=c.ready and up,  # gone in a drain or another's restart (review 272)
                restarts=c.restarts_total,
                start_time_s=c.started_unix,  # 0 while held: no sample
            )
            for c in self.children
        ]

    def run(
        self,
        stop: Callable[[], bool],
        go: Callable[[], bool] = lambda: True,
        started: Callable[[], None] = lambda: None,
        begin: Callable[[], bool] = lambda: True,
        *,
        successor: bool = False,
    ) -> int:
        """Start, watch until ``stop()``, stop. Returns the exit status. ``go`` is called
        while the processes import, before the instance's lock is taken (a promotion's new
        supervisor waits there for the standby's, which holds it, to exit); ``begin`` with
        it held, before anything of the instance is touched (a promotion: its epoch). False
        from either (a promotion that did not fence the old primary) starts nothing.
        ``started`` runs once the instance is running (a standby's: prestart its promotion).
        The rest of the run holds the lock: a second supervisor is refused there. ``successor``:
        a promotion's, whose ``go`` waits for the instance running now (the standby) to exit,
        so the look for it before the processes start is left to the rings' creation after
        ``go`` (the standby's stop can come after this start's own checks: review 182's)."""
        try:
            if not successor:
                self.refuse_running()  # before starting anything of it
            self.refuse_cpus_missing()
            self.refuse_other_units()
            self.prestart()
        except SupervisorError as exc:
            log.error("%s", exc)
            self.discard_held()  # those started before a fork was refused
            return 1
        if not go():
            self.discard_held()
            return 1
        try:
            with instance_lock(self.cfg):
                return self._run(stop, begin, started)
        except InstanceBusyError as exc:
            log.error("%s", exc)
            self.discard_held()
            return 1

    def _run(
        self, stop: Callable[[], bool], begin: Callable[[], bool], started: Callable[[], None]
    ) -> int:
        try:
            self.refuse_other_units()  # again: a standby's file may have been shipped since
            if not begin():
                self.discard_held()
                return 1
            # "starting": `ringex stop` and `status` find it from now on (not before begin():
            # a promoted instance's would overwrite the standby's, which still runs then)
            self.write_status()
            self.create_rings()  # refuses a running instance before touching anything of it
        except SupervisorError as exc:
            log.error("%s", exc)
            self.discard_held()
            self.state, self.reason = "stopped", str(exc)  # not "starting" for good
            self.write_status()
            return 1
        self.stop_asked = stop
        code = 0
        try:
            self.start(meanwhile=self.serve_metrics)
            started()
            self.watch(stop)
        except StopAsked as exc:
            log.info("%s: stopping", exc)
        except SupervisorError as exc:
            log.error("%s", exc)
            self.reason = str(exc)
            code = 1
        finally:
            self.stop()
        return code


def main(
    argv: list[str] | None = None,
    go: Callable[[], bool] = lambda: True,
    begin: Callable[[], bool] = lambda: True,
    *,
    successor: bool = False,
) -> int:
    """``go``, ``begin``, ``successor``: see ``Supervisor.run`` (``scripts/failover.py`` waits
    in ``go`` for the fence and the standby's exit, and begins the new epoch in ``begin``)."""
    parser = argparse.ArgumentParser(description="ringex supervisor")
    parser.add_argument("--profile", default="dev", help="profile name or TOML path")
    args = parser.parse_args(argv)
    # its pid on each line: two starts at once share run/supervisor.log, and each `run
    # --detach` reports its own supervisor's lines (``exit_reason.start_failure``)
    logging.basicConfig(level=logging.INFO, format=SUPERVISOR_LOG_FORMAT)
    stopped = stop_on_signals()
    cfg = load_profile(args.profile)
    with contextlib.suppress(KeyboardInterrupt):
        if cfg.replication.primary and cfg.replication.prestart:
            if not is_file_path(args.profile):  # its promoted profile goes beside a file
                print(f"ringex run: replication.prestart needs the standby's config as a file "
                      f"(--config), not profile {args.profile!r}: the promoted config is "
                      "written beside it", file=sys.stderr)  # fmt: skip
                return 2
            # here, not at the top: that module builds on this one's Supervisor
            from procs.supervisor.held_promotion import run_standby  # noqa: PLC0415

            return run_standby(cfg, args.profile, stopped)
        return Supervisor(cfg, args.profile).run(stopped, go, begin=begin, successor=successor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
