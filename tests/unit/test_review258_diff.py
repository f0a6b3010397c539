"""Review 258: a hostile reread of the latest operator-tool changes (164013e, 6d69c0b).

Reviewed: ``procs/admin/interrupts.py`` (``interrupting`` leaving an ignored SIGTERM/SIGHUP
ignored, SIGINT saved and restored; ``ignore_interrupts``), ``procs/cli.py`` (``main``,
``_run`` both ways: ``--detach`` under ``nohup``, and the foreground path into
``procs/supervisor/main.py``'s ``main`` and ``procs/common/stopping.py``), ``procs/admin/
users.py`` (``_gateways_read`` from ``shm.inspect.list_segments``, ``_keys_left`` with
``--cancel-orders``, ``no_user``'s ten names), ``shm/inspect.py`` and ``shm/region.py`` (how
an instance's segment names are told apart), ``procs/supervisor/main.py`` (``create_rings``:
what a restart does with a removed gateway's ring), ``procs/supervisor/exit_reason.py``
(``last_logged``'s 1 MiB), ``procs/dbwriter/migrate.py`` (the MigrationError's first line).

Faults (fixed: stop_on_signals leaves SIGINT and SIGHUP ignored where the process was
started so):
1. ``procs/common/stopping.py:21-23`` (``stop_on_signals``), reached by ``procs/cli.py:161``
   (``_run`` -> ``supervisor_main`` in the foreground) inside ``interrupting``: the README
   (``Every ringex command``: "one the command was started with ignored, as by ``nohup``,
   stays ignored") holds for every command but ``ringex run`` in the foreground. ``nohup
   ringex run > run.log &`` over ssh: the supervisor sets its SIGHUP handler over the ignored
   one, so the hangup at logout stops the whole instance, the one thing nohup was asked to
   prevent. Fix: in ``stop_on_signals``, leave a signal whose ``signal.getsignal`` is
   ``SIG_IGN`` alone (as ``interrupting`` now does); its children are in their own sessions
   and never see the terminal's hangup.

Sound: ``interrupting`` restores SIGINT as it was at its entry, ignored too, after
``ignore_interrupts``; a SIGHUP ignored at entry stays ignored within and after, SIGTERM
still raises ``Interrupted``; ``ringex run --detach`` under ``nohup``: a SIGHUP while it
starts is ignored, a SIGTERM gives the start up (exit 143, its supervisor stopped). Segment
names are ``ringex.<instance>.<name>`` and an instance is ``[A-Za-z0-9_-]`` (no dot): another
instance whose name is a prefix or a suffix of this one's is never listed, and no matcher's
ring can be taken for ``gw<N>-cmd`` (its names end ``-in``/``-out``); a removed gateway's ring
cannot outlive a restart (``create_rings`` removes a dead instance's segments first), so no
stale ring holds remove-user's wait; the admin ring (gw0) is not waited for; listing 73
segments and reading 8 gateway rings took ~60 ms here. ``no_user`` names ten users and the
count of the rest (11 users: "and 1 more"), none past ten: README's documented limit (no near
match: a lead, not a fault). A MigrationError of a message whose first lines are blank names
its first line of text.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.admin.interrupts import Interrupted, ignore_interrupts, interrupting
from procs.admin.users import NAMED_USERS, _gateways_read, no_user
from procs.common.record_codec import RecordCodec
from procs.common.records import Heartbeat, Record
from procs.common.run_files import read_status, run_dir
from procs.common.topology import ADMIN_GATEWAY, ROUTER, gateway_commands, users_path
from procs.common.users import UserStore
from procs.dbwriter.migrate import MigrationError, migrate
from procs.supervisor.main import Supervisor
from shm import Ring
from shm.inspect import list_segments, remove_instance
from tests.unit.test_review239_operator_races import CLI, ROOT, _profile
from tests.unit.test_review254_diff import caught, until


def ignored(pid: int, signum: int) -> bool:
    """Whether process ``pid`` ignores ``signum`` (``/proc``'s SigIgn)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def stat_fields(pid: int) -> list[str]:
    """``/proc``'s stat of process ``pid`` after "pid (comm)": state, parent, ...; none
    once it is reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def run_state(pid: int) -> str:
    """Process ``pid``'s state letter (R, S, T stopped, Z...), "gone" once reaped."""
    return (stat_fields(pid) or ["gone"])[0]


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [p for p in pids if stat_fields(p)[1:2] == [str(pid)]]


def nohup_ringex(tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """``nohup ringex args``: SIGHUP ignored at its start; its output in files (no pipe to
    fill)."""

    def ignore() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    with (tmp_path / "out.txt").open("wb") as out, (tmp_path / "err.txt").open("wb") as err:
        return subprocess.Popen(
            [*CLI, *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=ignore,  # noqa: PLW1509  (signal dispositions only)
        )


def ended(proc: subprocess.Popen[bytes], cfg: RingexConfig) -> None:
    """``proc`` (a ringex run) and what it started stopped; the instance's segments gone."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    remove_instance(cfg.instance)


# -- nohup: SIGHUP ----------------------------------------------------------------------------


def test_nohup_ringex_run_in_the_foreground_keeps_the_hangup_ignored(
    tmp_path: Path, instance: str
) -> None:
    """Scenario: ``nohup ringex run --config p &`` (the foreground supervisor, SIGHUP ignored
    at its start), the instance running; the operator's ssh session then closes.
    Expected: SIGHUP still ignored by that process, as README says of every ringex command
    started with it ignored: the instance outlives the logout. Was (fixed): ``stop_on_signals`` set
    its handler over SIG_IGN: the hangup stops the whole instance."""
    profile = _profile(tmp_path / "p.toml", instance)
    cfg = load_profile(str(profile))
    proc = nohup_ringex(tmp_path, "run", "--config", str(profile))
    try:

        def running() -> bool:
            assert proc.poll() is None, (tmp_path / "err.txt").read_text()
            status = read_status(cfg) or {}
            return status.get("supervisor_pid") == proc.pid and status["state"] == "running"

        until(running, 60.0)
        assert ignored(proc.pid, signal.SIGHUP), "SIGHUP caught: a logout stops the instance"
    finally:
        ended(proc, cfg)


def test_nohup_run_detach_ignores_sighup_and_sigterm_gives_the_start_up(
    tmp_path: Path, instance: str
) -> None:
    """Scenario: ``nohup ringex run --detach``; its supervisor held (SIGSTOP) while it
    starts; SIGHUP, then SIGTERM to the command, then the supervisor let go. Expected: the
    hangup ignored (handled first, it would say SIGHUP, exit 129), the SIGTERM gives the start
    up: "SIGTERM while instance ... was starting", exit 143, the supervisor stopped, not
    running. Now: so."""
    profile = _profile(tmp_path / "p.toml", instance)
    cfg = load_profile(str(profile))
    proc = nohup_ringex(tmp_path, "run", "--config", str(profile), "--detach", "--timeout", "60")
    spawned: list[int] = []
    try:

        def spawned_one() -> bool:
            spawned[:] = spawned or children(proc.pid)
            return bool(spawned)

        until(spawned_one, 30.0)
        (supervisor,) = spawned
        os.kill(supervisor, signal.SIGSTOP)
        until(lambda: run_state(supervisor) in ("T", "t", "Z", "X", "gone"), 10.0)  # or ended
        log = run_dir(cfg) / "supervisor.log"  # (one make test: gone by the SIGCONT below)
        held = run_state(supervisor)
        assert held in ("T", "t"), f"supervisor {held}: " + "\n".join(
            f.read_text(errors="replace")[-2000:] for f in (tmp_path / "err.txt", log)
            if f.exists())  # fmt: skip
        until(lambda: caught(proc.pid, signal.SIGTERM), 10.0)
        assert ignored(proc.pid, signal.SIGHUP)
        proc.send_signal(signal.SIGHUP)
        proc.send_signal(signal.SIGTERM)
        os.kill(supervisor, signal.SIGCONT)
        assert proc.wait(60) == 143, (tmp_path / "err.txt").read_text()
        err = (tmp_path / "err.txt").read_text()
        assert f"SIGTERM while instance {instance} was starting" in err, err
        assert not Path(f"/proc/{supervisor}").exists()  # stopped and reaped
        assert (read_status(cfg) or {}).get("state") != "running"
    finally:
        for pid in spawned:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        ended(proc, cfg)


# -- interrupting: what it restores -----------------------------------------------------------


@contextlib.contextmanager
def dispositions() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP as they were, after the test (the suite sets SIGTERM's)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_interrupting_restores_an_ignored_sigint_after_ignore_interrupts() -> None:
    """Scenario: a command started with SIGINT ignored (``cmd &`` in a script) and with the
    default Ctrl-C; each time ``interrupting``, a start given up (``ignore_interrupts``), the
    end. Expected: SIGINT as it was at entry, ignored or Python's. Now: so."""
    with dispositions():
        for start in (signal.SIG_IGN, signal.default_int_handler):
            signal.signal(signal.SIGINT, start)
            with interrupting():
                ignore_interrupts()
                assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGINT) is start


def test_interrupting_leaves_an_ignored_sighup_and_takes_sigterm() -> None:
    """Scenario: ``nohup``: SIGHUP ignored at ``interrupting``'s entry; a SIGHUP, then a
    SIGTERM within. Expected: the SIGHUP does nothing, the SIGTERM raises ``Interrupted``
    (exit 143's); SIGHUP ignored after too, SIGTERM's handler before back. Now: so."""
    with dispositions():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        before = signal.getsignal(signal.SIGTERM)
        with pytest.raises(Interrupted) as raised, interrupting():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
            os.kill(os.getpid(), signal.SIGTERM)
            until(lambda: False, 5.0)  # the handler raises within the wait
        assert raised.value.signal is signal.SIGTERM
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is before


# -- _gateways_read: which rings ---------------------------------------------------------------


def venue(tmp_path: Path, instance: str) -> RingexConfig:
    cfg = load_profile(str(_profile(tmp_path / f"{instance}.toml", instance)))
    users_path(cfg).parent.mkdir(parents=True, exist_ok=True)
    return cfg


def unread_ring(instance: str, name: str) -> Ring[Record]:
    """Ring ``name`` of ``instance`` holding a command its router has not read."""
    ring: Ring[Record] = Ring.create(instance, name, RecordCodec(), capacity=64,
                                     consumers=[ROUTER])  # fmt: skip
    producer = ring.producer()
    producer.publish(Heartbeat(ts_ns=1, source=1, counter=0))
    producer.close()
    return ring


def test_gateways_read_looks_at_its_own_instance_alone(tmp_path: Path, instance: str) -> None:
    """Scenario: instance I runs; instances ``<I>-b``, ``a<I>`` and ``<I>_`` (names that
    share its prefix or suffix) each hold an unread gw1-cmd; I's admin ring (gw0) holds one
    too (the cancel-all's own way); a matcher of I named ``gw7`` has rings gw7-in/out.
    Expected: none of them holds I's wait (read at once). Now: so."""
    cfg = venue(tmp_path, instance)
    others = [f"{instance}-b", f"a{instance}", f"{instance}_"]
    rings = [unread_ring(o, gateway_commands(1)) for o in others]
    rings.append(unread_ring(instance, gateway_commands(ADMIN_GATEWAY)))
    rings += [unread_ring(instance, n) for n in ("gw7-in", "gw7-out")]
    try:
        assert {s.name for s in list_segments(instance)} == {"gw0-cmd", "gw7-in", "gw7-out"}
        started = time.monotonic()
        assert _gateways_read(cfg, time.monotonic() + 5)
        assert time.monotonic() - started < 2.0
        rings.append(unread_ring(instance, gateway_commands(1)))  # and its own is waited for
        assert not _gateways_read(cfg, time.monotonic() + 0.2)
    finally:
        for ring in rings:
            ring.unlink()
            ring.close()
        for o in others:
            remove_instance(o)


STALE = """
import sys
from procs.common.record_codec import RecordCodec
from procs.common.records import Heartbeat
from shm import Ring
ring = Ring.create(sys.argv[1], "gw2-cmd", RecordCodec(), capacity=64, consumers=["router"])
ring.producer().publish(Heartbeat(ts_ns=1, source=2, counter=0))
"""


def test_a_removed_gateways_ring_does_not_outlive_a_restart(tmp_path: Path, instance: str) -> None:
    """Scenario: an instance ran gateways 1 and 2 and was killed, gw2's ring holding a
    command never read (its process dead); gateway 2 is then taken out of the profile and
    the instance started again. Expected: the start removes that ring, so remove-user's
    wait is not held the whole 10 s (and its exit 1) by a ring no router reads. Now: so."""
    cfg = venue(tmp_path, instance)
    subprocess.run([sys.executable, "-c", STALE, instance], cwd=ROOT, check=True, timeout=60)
    assert not _gateways_read(cfg, time.monotonic() + 0.2)  # the stale ring, unread
    supervisor = Supervisor(cfg, str(tmp_path / f"{instance}.toml"))
    try:
        supervisor.create_rings()
        names = {s.name for s in list_segments(instance)}
        assert "gw2-cmd" not in names and "gw1-cmd" in names, names
        assert _gateways_read(cfg, time.monotonic() + 5)
    finally:
        remove_instance(instance)


# -- no_user, MigrationError ------------------------------------------------------------------


def test_no_user_names_ten_and_the_count_of_the_rest(
    tmp_path: Path, instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ``set-password`` of a mistyped comp id with 10, then 11 users. Expected:
    the 10 named, no "more"; then the first 10 by name, "and 1 more", the command that lists
    them; exit 1. Now: so."""
    cfg = venue(tmp_path, instance)
    store = UserStore(users_path(cfg))
    for n in range(NAMED_USERS):
        store.add(f"U{n:02}", "pw", 100 + n, n=2)
    assert no_user("set-password", store, "U1") == 1
    err = capsys.readouterr().err
    assert "more" not in err and "U09" in err, err
    store.add("U10", "pw", 200, n=2)
    assert no_user("set-password", store, "U1") == 1
    err = capsys.readouterr().err
    assert "U09 and 1 more: `ringex admin users` lists them)" in err, err
    assert "U10" not in err


def test_a_migration_error_whose_message_begins_blank_names_its_text(
    dsn: str, tmp_path: Path
) -> None:
    """Scenario: a migration that raises an error whose message begins with blank lines,
    its reason on the third. Expected: the MigrationError names the file and that reason,
    one line. Now: so (the message is stripped before its first line is taken)."""
    (tmp_path / "0001_a.sql").write_text(
        "DO $$ BEGIN RAISE EXCEPTION E'\\n\\n  the real reason\\nmore'; END $$;"
    )
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(MigrationError) as e:
        migrate(conn, tmp_path)
    said = str(e.value)
    assert said == f"migration {tmp_path / '0001_a.sql'} failed: the real reason", said
