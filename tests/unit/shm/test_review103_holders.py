"""Review 103 of who holds a ring: the pid a ring's header names with its process's start time
(02bbf2d), and what `ringex stop` and `ringex run --detach` read of a supervisor killed or
refused (9ee1865: ``cli._still_stopping``, ``_wait_orphans``, ``start_failure``).

Six faults were found, each pinned first as a strict xfail and fixed in the same change (its
docstring says where, and what should happen); the other tests are behaviours checked and
found right. Other processes
are ``sleep`` or a ``python -c`` of a few lines; a pid taken since by another process (which
no test can make happen) is a start word written by the test, or a ``process_start`` that
answers another start once the wait under test has begun, as each docstring says.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

import shm.liveness
from config import load_profile
from config.schema import RingexConfig
from procs import cli
from procs.common.run_files import status_path
from procs.supervisor import exit_reason
from procs.supervisor.main import SUPERVISOR_LOG_FORMAT
from shm import Ring, RingError, StructCodec, roles
from shm import header as h
from shm.consumer import _take
from shm.inspect import list_segments
from shm.liveness import holder_alive, own_start, process_start
from tests.unit.supervisor.test_supervisor import write_profile

ROOT = Path(__file__).parents[3]
CODEC = StructCodec("2q")
#: The creator pid's word of the static line (``STATIC``'s last field, a uint64).
CREATOR_PID = h.STATIC.size // h.WORD - 1


def make(instance: str, consumers: tuple[str, ...] = ("a",)) -> Ring[Any]:
    return Ring.create(instance, "r", CODEC, capacity=8, consumers=list(consumers))


def wait_for(check: Callable[[], object], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s: {check}"
        time.sleep(0.005)


@contextlib.contextmanager
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not this one (it holds nothing until a test writes it in)."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        wait_for(lambda: process_start(proc.pid) is not None)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def dead_process() -> tuple[int, int]:
    """The pid and start time of a process that ran and is gone (reaped)."""
    with sleeper() as proc:
        started = process_start(proc.pid)
        assert started
    return proc.pid, started


def state_of(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()[0]


# -- shm.liveness: a pid with its start time -----------------------------------------------------


def test_a_holder_is_its_pid_and_its_start_time() -> None:
    """``holder_alive`` (shm/liveness.py:53-63): the pid alive and started when written; 0 is
    "not written" (the pid alone, as before 02bbf2d); another start is another process that
    took the pid since; a zombie (exited, not reaped) and a reaped pid hold nothing."""
    with sleeper() as proc:
        started = process_start(proc.pid)
        assert started
        assert holder_alive(proc.pid, started)
        assert holder_alive(proc.pid, 0)
        assert not holder_alive(proc.pid, started + 1)  # the pid, taken since by another
        proc.kill()
        wait_for(lambda: state_of(proc.pid) == "Z")  # killed, not reaped yet
        assert process_start(proc.pid) is None
        assert not holder_alive(proc.pid, started) and not holder_alive(proc.pid, 0)
    assert not holder_alive(proc.pid, started)  # reaped
    assert own_start() == process_start(os.getpid())


def test_a_command_name_that_looks_like_stat_fields_is_not_misread() -> None:
    """``process_start`` (shm/liveness.py:33-44) splits ``/proc/<pid>/stat`` after the last
    ')': a process may name itself anything (15 bytes of ``comm``), here ``) Z 1 2 3 (x``,
    which a split at the first ')' would read as a zombie, or a start of 3. Its start read
    before and after it renamed itself is the same, and it is a live holder."""
    code = (
        "import sys; sys.stdin.readline(); "
        "open('/proc/self/comm', 'w').write(') Z 1 2 3 (x'); print('renamed', flush=True); "
        "sys.stdin.readline()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            wait_for(lambda: process_start(proc.pid) is not None)
            before = process_start(proc.pid)
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == b"renamed\n"
            assert ") Z 1 2 3 (x" in Path(f"/proc/{proc.pid}/stat").read_text()
            assert before is not None and process_start(proc.pid) == before
            assert holder_alive(proc.pid, before)
        finally:
            proc.kill()


# -- the header's start words ---------------------------------------------------------------------


def test_the_start_words_are_spare_words_of_their_lines(instance: str) -> None:
    """shm/header.py:44, 53, 69: ``CREATOR_START`` is the static line's first word past its
    fields, ``P_PID_START`` a word of the producer line no field uses (and not the parked
    line's), ``C_PID_START`` one of a consumer line past its name and flags. A ring used to
    the full (a 16-byte name, two consumers, a lap and more) keeps every field and each
    role's start."""
    per_line = h.LINE // h.WORD
    assert h.CREATOR_START == h.STATIC.size // h.WORD < per_line
    producer = {h.P_CURSOR, h.P_HEARTBEAT, h.P_PID, h.P_WAKE}
    assert h.P_PID_START not in producer and per_line <= h.P_PID_START < h.P_PARKED
    name = set(range(h.C_NAME_BYTE // h.WORD, (h.C_NAME_BYTE + h.NAME_SIZE) // h.WORD))
    consumer = {h.C_SEQUENCE, h.C_HEARTBEAT, h.C_PID, h.C_STATE, h.C_GATES, h.C_PARKED}
    consumer |= {h.C_GENERATION, h.C_WAKE_GATED, *name}
    assert h.C_PID_START not in consumer and 0 <= h.C_PID_START < per_line

    long_name = "n" * h.NAME_SIZE
    ring = make(instance, ("a", long_name))
    producer_role = ring.producer()
    readers = [ring.consumer("a"), ring.consumer(long_name)]
    for n in range(20):
        producer_role.publish((n, -n))
        for reader in readers:
            assert reader.poll() == (n, -n)
    for reader in readers:
        reader.commit()
    again = Ring.attach(instance, "r", CODEC, capacity=8)  # the static line still checks
    info = again.info()
    assert [c.name for c in info.consumers] == ["a", long_name]
    assert [c.sequence for c in info.consumers] == [20, 20] and info.cursor == 20
    me, started = os.getpid(), own_start()
    assert started and ring.words[CREATOR_PID] == me
    assert ring.words[h.CREATOR_START] == ring.words[h.P_PID_START] == started
    for index in range(2):
        assert ring.words[h.consumer_word(index, h.C_PID_START)] == started
    assert info.producer_alive and all(c.pid_alive for c in info.consumers)
    for reader in readers:
        reader.close()
    producer_role.close()
    again.close()


def test_a_consumer_writes_its_start_before_its_pid() -> None:
    """``_take`` (shm/consumer.py:70-74) stores the start, then the pid: a reader that loads
    the pid, then the start (``Ring.info``, ``_describe``'s read in address order, the
    attach checks) sees the new pid only with its own start, never with the last holder's
    (which would take the new, live holder for a reused pid)."""
    stores: list[int] = []

    class Words:
        def __setitem__(self, index: int, value: int) -> None:
            stores.append(index)

    ring = SimpleNamespace(words=Words(), instance="x", name="r", created_ns=1)
    _take(cast(Ring[Any], ring), 3, 12345)
    assert roles.let_go("x", "r", 1, 3)  # the handle it counted, let go
    assert stores == [h.consumer_word(3, h.C_PID_START), h.consumer_word(3, h.C_PID)]
    assert h.C_PID < h.C_PID_START and h.P_PID < h.P_PID_START  # loaded in this order


def test_each_path_that_takes_a_line_writes_its_own_start(instance: str) -> None:
    """A line taken over without its start written would keep the last holder's, and its
    live new holder would read as dead. Each path writes it (shm/producer.py:60-66,
    shm/consumer.py:135-144): a producer or consumer line naming this very pid with another
    start (the pid's earlier process), a rejoin of a detached line a dead process held, and
    a close clears it; a declaration on a freed line (shm/ring.py:286-287) starts at 0."""
    ring = make(instance)
    me, started = os.getpid(), own_start()
    ring.words[h.P_PID], ring.words[h.P_PID_START] = me, started + 7
    producer = ring.producer()
    assert ring.words[h.P_PID_START] == started and ring.info().producer_alive
    pid_word, start_word = h.consumer_word(0, h.C_PID), h.consumer_word(0, h.C_PID_START)
    ring.words[pid_word], ring.words[start_word] = me, started + 7
    reader = ring.consumer("a")
    assert ring.words[start_word] == started and ring.info().consumers[0].pid_alive
    reader.close()
    assert (ring.words[pid_word], ring.words[start_word]) == (0, 0)
    ring.detach_consumer(0)
    ring.words[pid_word], ring.words[start_word] = dead_process()
    reader = ring.consumer("a", rejoin=True)
    assert (ring.words[pid_word], ring.words[start_word]) == (me, started)
    assert ring.info().consumers[0].pid_alive
    reader.close()
    ring.words[pid_word], ring.words[start_word] = dead_process()
    ring.detach_consumer(0)
    ring.free_consumer(0)
    assert ring.declare_consumer("b") == 0
    assert (ring.words[pid_word], ring.words[start_word]) == (0, 0)
    producer.close()
    assert (ring.words[h.P_PID], ring.words[h.P_PID_START]) == (0, 0)


def test_a_forked_child_closing_its_copies_leaves_the_parents_lines(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork after attach (a router's snapshot child): the child's copies of the roles
    close (shm/producer.py:463-465, shm/consumer.py:576-578) only a line naming its own pid,
    so the parent's pid and start stay, and the parent is still the live holder. The child
    is this process with ``os.getpid`` answering another pid (a real fork of a threaded
    pytest is refused on newer Pythons)."""
    ring = make(instance)
    producer = ring.producer()
    reader = ring.consumer("a")
    me, started = os.getpid(), own_start()
    child, _ = dead_process()
    with monkeypatch.context() as m:
        m.setattr(os, "getpid", lambda: child)
        reader.close()
        producer.close()
    assert (ring.words[h.P_PID], ring.words[h.P_PID_START]) == (me, started)
    line = h.consumer_word(0, h.C_PID), h.consumer_word(0, h.C_PID_START)
    assert (ring.words[line[0]], ring.words[line[1]]) == (me, started)
    info = ring.info()
    assert info.producer_alive and info.consumers[0].pid_alive


def test_a_segment_whose_creator_pid_was_reused_is_stale(instance: str) -> None:
    """Review 101's fault 4, fixed by 02bbf2d: a killed instance's ring whose creator pid
    another process took since (here this one: the start word says another process wrote
    it) is stale (shm/inspect.py:99-121), so a start or ``shm rm --stale`` removes it; the
    same pid with its own start is live, and a ring of code before the start word (0)
    falls back to the pid alone."""
    ring = make(instance)
    started = own_start()
    ring.words[h.CREATOR_START] = started + 1
    [segment] = list_segments(instance)
    assert segment.pids == (os.getpid(),) and segment.stale
    ring.words[h.CREATOR_START] = started
    assert list_segments(instance)[0].live_pids == (os.getpid(),)
    ring.words[h.CREATOR_START] = 0
    assert list_segments(instance)[0].live_pids == (os.getpid(),)


# -- a process in another time namespace ---------------------------------------------------------


@pytest.fixture
def timens_producer(instance: str) -> Iterator[int]:
    """A process in a time namespace whose boot time is 100,000 s off this one's (``unshare
    --user --time``: what a container runtime gives a container with ``--pid=host
    --ipc=host``, or a CRIU restore, sets), which creates ring ``r`` and holds its producer;
    its pid. Skipped where the host gives no user and time namespaces."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    code = (
        "import sys; from shm import Ring, StructCodec; "
        f"ring = Ring.create({instance!r}, 'r', StructCodec('2q'), capacity=8, "
        "consumers=['a']); producer = ring.producer(); print('ready', flush=True); "
        "sys.stdin.read()"
    )
    unshare = ["unshare", "--user", "--map-root-user", "--time", "--boottime", "100000"]
    with subprocess.Popen(
        [*unshare, sys.executable, "-c", code],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        try:
            if proc.stdout.readline() != b"ready\n":
                pytest.skip("no user and time namespaces here")
            yield proc.pid
        finally:
            proc.kill()


def test_a_producer_in_another_time_namespace_keeps_its_ring(
    instance: str, timens_producer: int
) -> None:
    """``holder_alive`` (shm/liveness.py:53-63) compares the start a holder wrote, its own
    ``/proc/self/stat`` field 22, with field 22 of ``/proc/<pid>/stat`` read here. Linux
    (5.6+) reports that field in the *reader's* time namespace (boot time plus its offset),
    so a process in a time namespace with a boot-time offset writes a start no reader
    outside it ever reads back: the pid is alive, the start differs, the holder is "dead".
    ``Producer.__init__`` (shm/producer.py:63) then lets a second producer take the ring of
    a live one (two writers of one cursor). Before 02bbf2d the pid alone made it live.
    Expected: refused, "already has a live producer". Fix: write and compare a start
    independent of the time namespace (field 22 less the writer's and reader's boot-time
    offset, ``/proc/self/timens_offsets``), or take a differing start for a live holder
    unless the pid is provably another process's (started after the ring was created)."""
    other = Ring.attach(instance, "r", CODEC)
    try:
        assert other.info().producer_pid == timens_producer
        with pytest.raises(RingError, match="already has a live producer"):
            other.producer()
    finally:
        other.close()


def test_a_ring_held_from_another_time_namespace_is_not_stale(
    instance: str, timens_producer: int
) -> None:
    """``_describe`` (shm/inspect.py:121) keeps a pid live by ``holder_alive``: the ring's
    only holder (its creator and producer, in a time namespace whose boot time is offset)
    is alive, yet ``list_segments`` says stale, and ``ringex shm rm --stale``
    (procs/cli.py ``_shm_rm``) or the next start of the instance unlinks a live instance's
    ring. Expected: ``live_pids`` names it (fix as the test above)."""
    [segment] = list_segments(instance)
    assert timens_producer in segment.pids
    assert timens_producer in segment.live_pids and not segment.stale, segment


# -- a process that attaches one ring twice --------------------------------------------------------


def test_closing_one_of_two_handles_of_a_role_keeps_the_other_live(instance: str) -> None:
    """A process may take a role it holds again (shm/producer.py:63, ``holder != me``: a
    restart within the process, a second ``Ring.attach``); the first handle's ``close``
    (shm/producer.py:463-465) sees the pid is its own and clears pid and start, while the
    second still publishes: ``info()`` says no producer, and another process attaching now
    is not refused (two producers). The same holds for a consumer line
    (shm/consumer.py:576-578). Not from 02bbf2d (the pid was cleared so before), but the
    start word now tells "this very process holds it": expected, a close leaves the line
    to a handle of this process still open (a count of open handles per line in the
    process, or ``close`` clearing only where no other handle took the line since)."""
    ring = make(instance)
    first = ring.producer()
    again = Ring.attach(instance, "r", CODEC)
    second = again.producer()
    try:
        first.close()
        second.publish((1, 1))  # it still publishes
        assert ring.cursor() == 1
        info = ring.info()
        assert info.producer_pid == os.getpid() and info.producer_alive, info
    finally:
        second.close()
        again.close()


# -- exit_reason.start_failure: whose line is the reason ---------------------------------------


def test_a_start_failure_reads_its_own_pid_exactly(tmp_path: Path) -> None:
    """``start_failure`` (procs/cli.py:261-281): a line of a supervisor whose pid begins or
    ends with this one's (12 against 123 and 312) is another's; a line of the format before
    9ee1865 (no pid) and a traceback's lines name none and are taken; the lines before the
    offset (an earlier start's) are not read; ``_LOG_PREFIX`` matches what
    ``SUPERVISOR_LOG_FORMAT`` (procs/supervisor/main.py:74) writes."""
    log = tmp_path / "supervisor.log"
    earlier = "2026-11-28 06:00:00,000 ringex.supervisor[12] an earlier start's reason\n"
    log.write_text(
        earlier + "2026-11-28 06:03:16,101 ringex.supervisor[12] own refusal\n"
        "2026-11-28 06:03:16,200 ringex.supervisor[123] another's line\n"
        "2026-11-28 06:03:16,300 ringex.supervisor[312] another's line\n"
    )
    assert exit_reason.start_failure(None, 12, log, 0) == "own refusal"
    assert exit_reason.start_failure(None, 123, log, 0) == "another's line"
    log.write_text(earlier + "2026-11-28 06:03:16,101 ringex.supervisor an old format line\n")
    assert exit_reason.start_failure(None, 12, log, len(earlier)) == "an old format line"
    log.write_text(earlier)
    assert exit_reason.start_failure(None, 12, log, len(earlier)) == "no reason logged"
    log.write_text(
        "2026-11-28 06:03:16,101 ringex.supervisor[12] starting\n"
        "Traceback (most recent call last):\n"
        '  File "procs/supervisor/main.py", line 1, in <module>\n'
        "OSError: [Errno 28] No space left on device\n"
        "2026-11-28 06:03:16,300 ringex.supervisor[123] instance x running: 2 processes\n"
    )
    assert (
        exit_reason.start_failure(None, 12, log, 0) == "OSError: [Errno 28] No space left on device"
    )
    record = logging.LogRecord("ringex.supervisor", logging.ERROR, "", 0, "refused", None, None)
    record.process = 12  # the prefix as the supervisor's own format writes it
    log.write_text(logging.Formatter(SUPERVISOR_LOG_FORMAT).format(record) + "\n")
    assert exit_reason.start_failure(None, 12, log, 0) == "refused"
    assert exit_reason.start_failure(None, 1, log, 0) == "no reason logged"


def test_a_start_failure_skips_what_continues_another_supervisors_line(tmp_path: Path) -> None:
    """``start_failure`` (procs/cli.py:275-280) skips a line naming another pid, but takes
    every line naming none as this supervisor's. A line that names none continues the line
    before it: two ``run --detach`` at once, the loser (12) refused, then the winner (123)
    writes a multi-line block to the shared log, here the report of ``socketserver``'s
    ``handle_error`` for a metrics scrape reset (its ``/metrics`` server, stderr into
    ``supervisor.log``): the loser says "did not start: ----------------------------------------"
    as its reason. Expected: its own refusal. Fix: read the lines in order, each unprefixed
    line belonging to the pid of the prefixed line before it (those before any: nobody's or
    this pid's), and take the last of this pid's."""
    log = tmp_path / "supervisor.log"
    refusal = "instance 'x' is running or starting: supervisor pid 123 holds supervisor.lock"
    log.write_text(
        f"2026-11-28 06:03:16,101 ringex.supervisor[12] {refusal}\n"
        "2026-11-28 06:03:16,150 ringex.supervisor[123] metrics at http://127.0.0.1:9/metrics\n"
        "----------------------------------------\n"
        "Exception occurred during processing of request from ('127.0.0.1', 51234)\n"
        "Traceback (most recent call last):\n"
        '  File "/usr/lib/python3.12/socketserver.py", line 697, in process_request_thread\n'
        "ConnectionResetError: [Errno 104] Connection reset by peer\n"
        "----------------------------------------\n"
    )
    assert exit_reason.start_failure(None, 12, log, 0) == refusal


# -- `ringex stop` after a killed supervisor: which pids it waits for ------------------------------


@pytest.fixture
def killed(instance: str, tmp_path: Path) -> Iterator[SimpleNamespace]:
    """An instance whose supervisor was killed outright: its ring ``r`` (created by the
    dead supervisor: its pid and start in the static line, no producer), its status.json
    (state running, the supervisor's pid and start), and a live process (``sleep``) that
    the test lists in the status as one of its processes and may write into line ``a``."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    cfg: RingexConfig = load_profile(str(profile))
    supervisor, supervisor_started = dead_process()
    ring = make(instance)
    ring.words[CREATOR_PID], ring.words[h.CREATOR_START] = supervisor, supervisor_started
    with sleeper() as orphan:
        started = process_start(orphan.pid)
        status = {
            "instance": instance,
            "supervisor_pid": supervisor,
            "supervisor_started": supervisor_started,
            "state": "running",
            "reason": "",
            "processes": [{"name": "router", "pid": orphan.pid, "started": started}],
        }
        path = status_path(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(status))

        def hold() -> None:  # the orphan attached as consumer "a"
            ring.words[h.consumer_word(0, h.C_PID_START)] = started or 0
            ring.words[h.consumer_word(0, h.C_PID)] = orphan.pid

        yield SimpleNamespace(profile=profile, orphan=orphan.pid, hold=hold)
    ring.close()


def test_a_stop_after_a_killed_supervisor_waits_for_its_processes_then_answers(
    killed: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    """``_stop`` (procs/cli.py:289-301, 334-351): no supervisor runs, a process status.json
    lists (its pid and start) holds a line of the instance's ring: the stop waits for it,
    not for the dead supervisor's pid, nor for ever: past ``--timeout`` it names it and
    exits 1, within the timeout and a poll."""
    killed.hold()
    begun = time.monotonic()
    code = cli.main(["stop", "--config", str(killed.profile), "--timeout", "0.3"])
    took = time.monotonic() - begun
    err = capsys.readouterr().err
    assert code == 1 and f"pids {killed.orphan} are still stopping after 0.3 s" in err, err
    assert "another var_dir" not in err
    assert 0.3 <= took < 2.0, took


def test_a_stop_does_not_wait_for_a_pid_taken_by_another_process_meanwhile(
    killed: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_still_stopping`` (procs/cli.py:320-331) names a process by its pid *and* start,
    but ``_wait_orphans`` (procs/cli.py:341) then polls ``pid_alive(p)``: a process that
    ends and whose pid is taken by another before the next poll (the case 02bbf2d is about:
    a host that wraps pid_max, a container's small pids) is waited for until ``--timeout``
    (20 s and more by default), and the stop fails naming a pid that is no process of the
    instance. Here ``process_start`` answers another start for the orphan's pid once the
    wait has slept once (the orphan gone, its pid taken). Expected: "stopped", exit 0.
    Fix: poll ``holder_alive(pid, started)`` with the starts ``_still_stopping`` matched."""
    killed.hold()
    real = process_start
    waited: list[float] = []

    def start_of(pid: int) -> int | None:
        found = real(pid)
        return found + 1 if waited and pid == killed.orphan and found else found

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(cli, "process_start", start_of)
    monkeypatch.setattr(shm.liveness, "process_start", start_of)
    monkeypatch.setattr(cli, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleep))
    code = cli.main(["stop", "--config", str(killed.profile), "--timeout", "0.5"])
    out, err = capsys.readouterr()
    assert waited, "the stop did not wait: the orphan was not found"
    assert code == 0 and "stopped" in out, (code, out, err)


def test_a_stop_waits_for_a_process_that_runs_on_without_the_rings(
    killed: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    """``_still_stopping`` (procs/cli.py:330) keeps a listed process only while it holds
    a segment (``p["pid"] in held``), though its pid *and* start, matched against
    status.json, already say it is that very process. One stopping after its SIGTERM that
    has closed its rings and runs on (a router's last journal fsync and snapshot, a
    database writer stopping its PostgreSQL; within the 20 s grace) is dropped: the stop
    says "instance X is not running", exit 0, and an operator's next ``ringex run`` starts
    beside it. Here the orphan holds no line of the ring (its creator, the supervisor, is
    dead: the ring is stale). Expected: the stop waits for it and, past ``--timeout``, names
    it, exit 1. Fix: drop the ``held`` condition (the start check names the process)."""
    begun = time.monotonic()
    code = cli.main(["stop", "--config", str(killed.profile), "--timeout", "0.3"])
    out, err = capsys.readouterr()
    assert time.monotonic() - begun < 2.0
    assert code == 1 and f"pids {killed.orphan} are still stopping" in err, (code, out, err)
