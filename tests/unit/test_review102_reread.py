"""Review 102: a critical reread of 33b876b..59a1ace: the router counting where its time goes
(``procs/router/time_use.py``, its page in ``procs/common/stats.py``, the timed waits in
``procs/router/main.py``, the journal's ``inline_fsync_ns``, the supervisor's
``ringex_router_*`` metrics, ``tests/bench/stage_watch.py``), and review 100's config and
command-line fixes and review 101's supervisor fixes.

Nine faults were found, each pinned first as a strict xfail and fixed in the same change:
its test's docstring says where (file:line, as of 59a1ace) and what should happen. The
other tests are behaviours checked and found right. The router's
loop is driven over stand-ins (``SimpleNamespace``) for what a round touches, so no router
process runs; time is real only where a wait is the thing measured, and then only as a lower
bound."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import procs.cli
from config import load_profile
from config.loader import ConfigError
from config.schema import RingexConfig
from procs import detached_start
from procs.common.journal_format import HEADER_SIZE, entry_layout
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.replication_ack import FENCED
from procs.common.run_files import read_status, status_path
from procs.common.stats import ROUTER_COUNTERS, ROUTER_PAGE, ROUTER_STATES, matcher_page
from procs.router.main import RouterShell
from procs.router.time_use import FULL, IDLE, TimeUse
from procs.supervisor.child import Child
from procs.supervisor.main import Supervisor
from procs.supervisor.metrics import RingexCollector
from procs.supervisor.plan import ProcessSpec
from shm.counters import Counters
from tests.bench.stage_watch import StageWatch, describe_router
from tests.unit.supervisor.test_supervisor import write_profile

ROOT = Path(__file__).parents[2]
MS = 1_000_000


def _config(tmp_path: Path, instance: str, extra: str = "", name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n{extra}')
    return path


def _page(instance: str) -> dict[str, int]:
    """The router's page as a reader (a scrape, stage_watch) sees it now."""
    page = Counters.attach(instance, ROUTER_PAGE)
    try:
        return page.read()
    finally:
        page.close()


@pytest.fixture
def time_use(instance: str) -> Iterator[TimeUse]:
    use = TimeUse(instance)
    yield use
    use.close()


def _loop(use: TimeUse, shell: Any, rounds: int) -> None:
    """``RouterShell.run`` for ``rounds`` rounds of the real ``step`` over ``shell``, a
    stand-in holding what those rounds touch (its ``time_use`` is ``use``, as the router's
    own, so a wait timed anywhere in them is counted); then stored, as its close does."""
    shell.time_use, shell.stopping = use, False
    shell.journal = types.SimpleNamespace(inline_fsync_ns=0, next_seq=11)
    shell._beat = lambda: None
    shell.step = lambda: RouterShell.step(shell)
    left = [rounds]

    def stop() -> bool:
        left[0] -= 1
        return left[0] < 0

    RouterShell.run(shell, stop)
    use.store()


# -- time_use.py: what is counted, and kept across a restart ---------------------------------


def test_a_restarted_router_goes_on_from_its_page(instance: str) -> None:
    """procs/router/time_use.py:29-30 (and shm/counters.py ``open``): a new router's
    ``TimeUse`` keeps the page of the same names and starts from its counts, so no counter
    of ``stats-router`` goes down across a router's restart (the supervisor's ``Carried``
    then sees no reset), and its ``close`` stores what it counted since the last store."""
    first = TimeUse(instance)
    first.begin(0)
    first.waited(IDLE, time.perf_counter_ns() - 2 * MS)
    first.step_done(3, 0)
    first.settled(5)
    first.close()  # a clean stop stores the events counted after the round's store
    before = _page(instance)
    assert before["commands"] == 3 and before["events"] == 5 and before["idle_ns"] >= 2 * MS
    again = TimeUse(instance)  # the supervisor's restart
    try:
        assert dict(zip(ROUTER_COUNTERS, again.values, strict=True)) == before
        again.begin(0)
        again.step_done(1, 0)
        again.store()
        after = _page(instance)
    finally:
        again.close()
    assert all(after[k] >= v for k, v in before.items()), (before, after)
    assert after["commands"] == 4


def test_a_rounds_states_add_up_to_its_time_and_start_up_fsyncs_are_no_rounds(
    time_use: TimeUse,
) -> None:
    """procs/router/time_use.py:37-62: ``begin`` takes the journal's inline fsync time so
    far (the start's ``_journal_at_start`` syncs, main.py:193-199) as no round's; each round's
    fsync delta goes to ``fsync`` and out of ``busy``; and busy + the waits + fsync is the
    round's time, neither counted twice nor lost."""
    began = time.perf_counter_ns()
    time_use.begin(7 * MS)  # start-up fsyncs: not the loop's
    nap = time.perf_counter_ns()
    time.sleep(0.002)
    time_use.waited(IDLE, nap)  # nothing to take for 2 ms
    time_use.step_done(2, 7 * MS)  # no fsync this round
    ended = time.perf_counter_ns()
    values = dict(zip(ROUTER_COUNTERS, time_use.values, strict=True))
    spent = sum(values[f"{s}_ns"] for s in ROUTER_STATES)
    assert values["fsync_ns"] == 0 and values["idle_ns"] >= 2 * MS
    assert values["idle_ns"] <= spent <= ended - began  # the round's time, once
    time_use.step_done(0, 7 * MS + 3 * MS)  # 3 ms of inline fsync in the next round
    values = dict(zip(ROUTER_COUNTERS, time_use.values, strict=True))
    assert values["fsync_ns"] == 3 * MS
    assert values["commands"] == 2


def test_the_page_shows_a_long_rounds_waits_within_a_millisecond_or_so(
    instance: str, time_use: TimeUse
) -> None:
    """procs/router/time_use.py:21-22 says ``STORE_EVERY_NS`` is "the longest the page lags
    what the router counted", but ``store`` runs only from ``step_done`` (time_use.py:60-62):
    ``waited`` (time_use.py:43-48) adds to ``values`` and stores nothing. A matcher that stops
    reading leaves the router in ``_publish``'s loop (main.py:441-456) for as long as it
    lasts, each ``idle_round`` counted ``full`` and none stored: a scrape shows the router's
    time frozen exactly when an operator asks where it goes. Expected: ``waited`` stores too
    once ``STORE_EVERY_NS`` has passed (or the constant's comment says a round's length)."""
    time_use.begin(0)
    time_use.step_done(1, 0)  # stored: the next store is due in a millisecond
    deadline = time.perf_counter_ns() + 4 * MS
    while time.perf_counter_ns() < deadline:  # _publish's idle rounds on a full ring
        began = time.perf_counter_ns()
        time.sleep(0.001)
        time_use.waited(FULL, began)
    assert time_use.values[FULL] >= 4 * MS  # counted...
    assert _page(instance)["full_ns"] > 0  # ...and, 4 ms on, on the page


def test_a_fenced_routers_nap_is_not_counted_busy(time_use: TimeUse) -> None:
    """procs/router/main.py:399-410: a fenced router (the replication source's FENCED
    word) sequences nothing and, with no events to settle, sleeps ``ADMIN_POLL_S`` a round
    (main.py:409) without ``time_use.waited``, so ``step_done`` counts the whole nap as busy.
    README (the metrics): "with `busy` near 1 a second the router is the stage a pipeline
    waits on": a fenced router reads as the busiest stage. Expected: the nap is idle."""
    shell: Any = types.SimpleNamespace(
        fenced=True,  # said once already
        acks=types.SimpleNamespace(words={FENCED: 2}),
        settle=lambda: 0,
    )
    shell._fenced = lambda timeout_s: RouterShell._fenced(shell, timeout_s)
    _loop(time_use, shell, rounds=4)
    values = dict(zip(ROUTER_COUNTERS, time_use.values, strict=True))
    assert values["idle_ns"] > values["busy_ns"], values


def test_a_restarts_wait_for_the_standby_is_counted_standby(time_use: TimeUse) -> None:
    """procs/router/main.py:229-238: in sync mode a restarted router's first rounds wait in
    ``_send_unrouted`` for the standby to acknowledge the journal's end before they publish
    what a crash left unrouted (up to ``sync_timeout_ms``, or until a stop); only the batch's
    wait in ``step`` (main.py:270-273) is timed as ``STANDBY``. README: `standby` is "sync
    replication waiting for the standby's acknowledgement": here it is busy. Expected: the
    wait timed as ``STANDBY`` there too."""

    def standby_answers_late(*args: object) -> bool:
        time.sleep(0.02)
        return False  # a stop came first: the round ends (step returns 0)

    shell: Any = types.SimpleNamespace(
        acks=types.SimpleNamespace(words={FENCED: 0}),
        gate=types.SimpleNamespace(wait=standby_answers_late),
        settle=lambda: 0,
        _stop=lambda: False,
        _unrouted=[("m1", ["a command"])],
    )
    shell._send_unrouted = lambda: RouterShell._send_unrouted(shell)
    _loop(time_use, shell, rounds=2)
    values = dict(zip(ROUTER_COUNTERS, time_use.values, strict=True))
    assert values["standby_ns"] > values["busy_ns"], values


# -- the journal's fsyncs: what inline_fsync_ns holds ----------------------------------------


def _writer(directory: Path, **kw: Any) -> JournalWriter:
    codec = RecordCodec()
    return JournalWriter(
        directory, slot_size=codec.slot_size, schema_id=codec.journal_schema_id, **kw
    )


def test_a_sync_that_waits_for_the_fsync_in_flight_counts_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """procs/common/journal_writer.py:207-214 and 266-289: under ``fsync = "pipelined"`` a
    step with fewer than ``pipeline_behind`` commands waiting fsyncs inline
    (``_pipelined_sync``, procs/router/intake.py:106-112) and so first waits for the fsync
    the previous step put on the thread ("a batch would wait for the fsync in flight and then
    its own"). Only ``_fsync_open`` (journal_writer.py:291-300) adds to ``inline_fsync_ns``;
    the wait in ``_reap(None)`` is the router's but counted busy (time_use.py:58). The idle
    wait for the same fsync (main.py:330-334) is counted ``FSYNC``. Expected: the wait in
    ``sync`` (and ``_roll``) counted in ``inline_fsync_ns``. The thread's fsync takes 50 ms
    here, the inline one nothing."""
    writer = _writer(tmp_path / "journal", fsync="pipelined")
    real = os.fsync

    def fsync(fd: int) -> None:
        if threading.current_thread().name.startswith("journal-fsync"):
            time.sleep(0.05)  # a slow disk's fsync, on the journal's thread
        else:
            real(fd)

    try:
        image = bytes(RecordCodec().slot_size)
        writer.append(1, image, 1)
        monkeypatch.setattr(os, "fsync", fsync)
        writer.maybe_sync()  # the step that found many waiting: on the thread
        writer.append(2, image, 1)
        monkeypatch.setattr(os, "fsync", lambda fd: None)  # the inline one: free
        writer.sync()  # the next step, with few waiting: inline, after the one in flight
        counted = writer.inline_fsync_ns
    finally:
        monkeypatch.undo()
        writer.close()
    assert counted >= 25 * MS, counted


def test_every_fsync_of_a_roll_is_in_inline_fsync_ns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """procs/common/journal_writer.py:421-446: ``_roll`` seals the open segment through
    ``_fsync_open`` (counted) but fsyncs the new segment's header and the directory with
    plain ``os.fsync`` (uncounted), in the router's step (``append``). README: fsync is "the
    journal's fsyncs, inline or waited for". Expected: every fsync the caller waits on in
    ``inline_fsync_ns``. Each fsync here takes 1 ms of a fake clock, so the count is exact."""
    layout = entry_layout(RecordCodec().slot_size)
    writer = _writer(
        tmp_path / "journal", fsync="batch", segment_bytes=HEADER_SIZE + 2 * layout.size
    )
    clock = [0]
    calls = [0]

    def fsync(fd: int) -> None:
        calls[0] += 1
        clock[0] += MS

    fake_time = types.SimpleNamespace(
        perf_counter_ns=lambda: clock[0],
        monotonic_ns=lambda: clock[0],
        time_ns=time.time_ns,
        perf_counter=lambda: clock[0] / 1e9,
        monotonic=lambda: clock[0] / 1e9,
    )
    image = bytes(layout.slot_size)
    try:
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr("procs.common.journal_writer.time", fake_time)
        for seq in range(1, 4):  # the first makes a segment, the third rolls to a second
            writer.append(seq, image, 1)
        counted, made = writer.inline_fsync_ns, calls[0]
    finally:
        monkeypatch.undo()
        writer.close()
    assert counted == made * MS, (counted, made)


# -- the metrics and the bench's reading of the page -------------------------------------------


def test_the_collector_exports_the_routers_page_in_seconds(
    instance: str, tmp_path: Path, time_use: TimeUse
) -> None:
    """procs/supervisor/metrics.py:288-309: ``ringex_router_commands_total``,
    ``ringex_router_events_total`` and ``ringex_router_time_seconds_total{state}`` (each of
    the six states, ns / 1e9) in a scrape the exposition format parses; a page without the
    router's counters (another version's) is skipped, never a failed scrape."""
    cfg = load_profile(str(_config(tmp_path, instance)))
    time_use.values[:] = [12, 34, 1_500_000_000, 2 * 10**9, 0, 0, 250_000_000, 0]
    time_use.store()
    collector = RingexCollector(cfg, "test", {}, list, lambda: "running")
    registry = CollectorRegistry()
    registry.register(collector)
    try:
        text = generate_latest(registry).decode()
    finally:
        collector.close()
    samples = {
        (s.name, s.labels.get("state", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("ringex_router_commands_total", "")] == 12
    assert samples[("ringex_router_events_total", "")] == 34
    seconds = {s: samples[("ringex_router_time_seconds_total", s)] for s in ROUTER_STATES}
    assert seconds == {
        "busy": 1.5,
        "idle": 2.0,
        "behind": 0,
        "full": 0,
        "fsync": 0.25,
        "standby": 0,
    }


def test_stage_watch_reads_the_routers_shares_and_rates_over_a_window(
    instance: str, tmp_path: Path
) -> None:
    """tests/bench/stage_watch.py:125-145: ``router_time`` gives each state's share of the
    time counted between the samples nearest the window's ends, commands and events per
    second over it; {} when a counter went down (a page made anew), and
    ``describe_router`` says so."""
    cfg = load_profile(str(_config(tmp_path, instance)))
    watch = StageWatch(cfg)

    def page(commands: int, events: int, busy: int, idle: int) -> dict[str, int]:
        values = dict.fromkeys(ROUTER_COUNTERS, 0)
        values.update(commands=commands, events=events, busy_ns=busy, idle_ns=idle)
        return values

    watch._times = [0.0, 1.0, 3.0]
    watch._samples = [
        {ROUTER_PAGE: page(100, 10, 5 * 10**9, 1)},
        {ROUTER_PAGE: page(150, 20, 5 * 10**9 + 10**9, 1)},
        {ROUTER_PAGE: page(400, 50, 5 * 10**9 + 10**9 + 5 * 10**8, 1 + 15 * 10**7)},
    ]
    shares = watch.router_time(0.5, 3.0)
    assert shares["busy_pct"] == pytest.approx(100 * 1.5 / 1.65, abs=0.1)
    assert shares["idle_pct"] == pytest.approx(100 * 0.15 / 1.65, abs=0.1)
    assert shares["commands_per_s"] == 100 and shares["events_per_s"] == 13
    assert describe_router(shares).startswith("router's time: busy 90.9%, idle 9.1%;")
    watch._samples[2] = {ROUTER_PAGE: page(5, 1, 10, 10)}  # made anew: counts went down
    assert watch.router_time(0.5, 3.0) == {}
    assert describe_router({}) == "router: no time counted"


def test_a_matcher_cannot_share_the_routers_counter_page(tmp_path: Path, instance: str) -> None:
    """config/schema.py:469-474 refuses a matcher named like a gateway's page (``gw<N>``,
    review 34) but not ``router``, which config/fields.py's ``Name`` allows;
    procs/common/stats.py:116-117 names its page ``stats-router``, which is
    ``ROUTER_PAGE`` (stats.py:99). ``Counters.open`` replaces a page of other names
    (shm/counters.py:79-102): the router's ``TimeUse`` and the matcher's stats each unlink
    the other's at every start, its trades and the router's time then read from a page no
    one writes, or not at all (the collector skips a page without the router's names).
    Expected: the name refused at load, naming it (or the pages named apart)."""
    text = '[[matchers]]\nname = "router"\nsymbols = ["BTC-USD", "ETH-USD"]\n'
    try:
        cfg = load_profile(str(_config(tmp_path, instance, text)))
    except ConfigError as exc:
        assert "router" in str(exc)
        return
    assert all(matcher_page(m.name) != ROUTER_PAGE for m in cfg.matchers)


# -- review 100: config and the command line -------------------------------------------------


def test_a_comp_id_ending_in_a_newline_is_refused(tmp_path: Path, instance: str) -> None:
    """config/edges.py:78-80: ``comp_id: Annotated[str, Meta(pattern=r"^[!-~]{1,32}$")]``.
    msgspec matches a pattern with ``re.search``, and ``$`` matches before a trailing
    newline, so ``comp_id = "RINGEX\\n"`` loads and every header the gateway sends carries
    ``49=RINGEX\\n``, which no client's TargetCompID matches. README (config): "a gateway
    `comp_id` that is not 1-32 printable ASCII characters without a space" is refused.
    Expected: refused naming comp_id (``\\Z`` in place of ``$``)."""
    text = '[[gateways]]\nname = "gw1"\nid = 1\ncomp_id = "RINGEX\\n"\n'
    with pytest.raises(ConfigError, match="comp_id"):
        load_profile(str(_config(tmp_path, instance, text)))


class _Started:
    """What ``subprocess.Popen`` gives ``ringex run --detach``: a supervisor still
    starting (no status yet), whose end is recorded."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.pid = 4_000_000  # no such process
        self.returncode: int | None = None
        self.ended: list[str] = []
        _Started.last = self

    last: _Started | None = None

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        self.ended.append("terminate")
        self.returncode = -15

    def kill(self) -> None:
        self.ended.append("kill")
        self.returncode = -9

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode or 0


def test_ctrl_c_while_run_detach_waits_stops_the_start(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """procs/cli.py:205-225 starts the supervisor in a session of its own (Ctrl-C does not
    reach it) and waits for it; review 100 made the KeyboardInterrupt one line, exit 130
    (cli.py:573-575), but nothing ends the start: the instance comes up after the operator
    gave up on it, and the next ``ringex run`` is refused as running. The same wait's
    timeout stops the start ("a start reported as failed must not come up later",
    cli.py:227-233). Expected: the child terminated (waited for) before exit 130."""
    config = _config(tmp_path, instance)

    def ctrl_c(_seconds: float) -> None:
        raise KeyboardInterrupt

    fake_subprocess = types.SimpleNamespace(
        Popen=_Started,
        DEVNULL=subprocess.DEVNULL,
        STDOUT=subprocess.STDOUT,
        TimeoutExpired=subprocess.TimeoutExpired,
    )
    monkeypatch.setattr(detached_start, "subprocess", fake_subprocess)
    monkeypatch.setattr(
        detached_start, "time", types.SimpleNamespace(monotonic=time.monotonic, sleep=ctrl_c)
    )
    _Started.last = None
    code = procs.cli.main(["run", "--detach", "--config", str(config), "--timeout", "30"])
    started = _Started.last
    assert code == 130 and started is not None
    assert "terminate" in started.ended or "kill" in started.ended


# -- review 101: the supervisor ----------------------------------------------------------------


@pytest.fixture
def supervisor_cfg(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, RingexConfig]:
    monkeypatch.chdir(ROOT)  # what it starts imports from the repository root
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var", "metrics = false\n")
    return profile, load_profile(str(profile))


def test_a_first_start_that_cannot_fork_exits_1_naming_why(
    supervisor_cfg: tuple[Path, RingexConfig],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """procs/supervisor/main.py:490 calls ``self.prestart()`` (main.py:153-163, ``_spawn``
    main.py:186-217) outside any ``try``: a fork refused (a pids limit, RLIMIT_NPROC,
    ENOMEM) escapes ``run`` as an OSError and ``ringex run`` prints a traceback, where the
    same error at a restart is now a SupervisorError naming it (main.py:336-339). The
    process spawned before it is left held (its stdin closes only when the supervisor
    exits). Expected: ``run`` returns 1 with the error logged, and the processes already
    spawned discarded (``discard_held``)."""
    profile, cfg = supervisor_cfg
    popen = subprocess.Popen
    made: list[subprocess.Popen[bytes]] = []

    def second_fork_refused(*args: Any, **kwargs: Any) -> Any:
        if made:
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        made.append(popen(*args, **kwargs))
        return made[0]

    sup = Supervisor(cfg, str(profile))
    sup.children = [
        Child(ProcessSpec("first", "procs.common.stopping", (), (), "", "")),
        Child(ProcessSpec("second", "procs.common.stopping", (), (), "", "")),
    ]
    monkeypatch.setattr(subprocess, "Popen", second_fork_refused)
    try:
        with caplog.at_level(logging.ERROR):
            code = sup.run(lambda: True)
        left = [p for p in made if p.poll() is None]
    finally:
        monkeypatch.undo()
        for process in made:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdin is not None:
                process.stdin.close()
    assert code == 1 and os.strerror(errno.EAGAIN) in caplog.text
    assert left == []


def test_a_status_that_cannot_be_written_is_logged_once_until_one_is(
    supervisor_cfg: tuple[Path, RingexConfig], caplog: pytest.LogCaptureFixture
) -> None:
    """procs/supervisor/main.py:444-452 (review 101): a ``status.json`` that cannot be
    written (here ``status.tmp`` is a directory: no mode bit refuses root) is logged once,
    not once a second by ``_duties``; a write that works ends the episode, so the next
    failure is logged again; nothing raises."""
    profile, cfg = supervisor_cfg
    sup = Supervisor(cfg, str(profile))
    blocker = status_path(cfg).with_suffix(".tmp")
    with caplog.at_level(logging.ERROR, logger="ringex.supervisor"):
        blocker.mkdir(parents=True)
        sup.write_status()
        sup.write_status()
        blocker.rmdir()
        sup.write_status()
        written = read_status(cfg)
        blocker.mkdir()
        sup.write_status()
        blocker.rmdir()
    said = [r for r in caplog.records if "not written" in r.getMessage()]
    assert written is not None and written["supervisor_pid"] == os.getpid()
    assert len(said) == 2, [r.getMessage() for r in said]
