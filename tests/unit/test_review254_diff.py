"""Review 254: a hostile reread of today's operator-tool changes (5e6eace, d5218ba, 54e9cc8,
5d2b4c7).

Reviewed: ``procs/admin/interrupts.py`` (``interrupting``, ``ignore_interrupts``),
``procs/cli.py`` (``main``, ``_run`` and its foreground path through
``procs/supervisor/main.py``'s ``main`` and ``procs/common/stopping.py``, ``_stop``,
``_status --wait-ready``, ``_replay`` through ``procs/dbwriter/main.py``'s ``run``),
``scripts/run_demo.py`` (``make run``: its stop after ``ignore_interrupts``),
``procs/admin/users.py`` (``remove_user``, ``_cancel_orders``,
``_keys_left``, ``_session_ended``, ``_gateways_read``), ``procs/gateway/rest.py``
(``holder_unchanged``, ``require_user``), ``procs/common/users.py`` (where a session id is
given or kept), ``procs/supervisor/exit_reason.py`` (``last_logged``) and its caller in
``Supervisor``'s restart limit, ``procs/dbwriter/migrate.py`` (the MigrationError wrap) against
psycopg's class tree, ``procs/common/durable.py`` (``replace_durably`` under a
KeyboardInterrupt).

Faults (each fixed; its test below passes):
1. ``procs/admin/interrupts.py:43`` (``interrupting``): SIGTERM and SIGHUP get the raising
   handler even where the command was started with them ignored. ``nohup ringex admin
   remove-user X --cancel-orders &`` over ssh, the session then closed: before, the hangup was
   ignored (nohup's whole point) and the cancel-all ran; now the command dies of SIGHUP in its
   settle, the user removed, its orders resting. ``make run`` (``scripts/run_demo.py:247``)
   ignores all three before its ``ringex stop`` so that a second signal cannot cut the stop
   short: the stop now takes SIGTERM/SIGHUP as an interrupt. Fix: in ``interrupting``, skip a
   signal whose ``signal.getsignal(s)`` is ``SIG_IGN`` (as CPython does for SIGINT at start).
2. ``procs/dbwriter/migrate.py:119-122``: the MigrationError carries ``str(exc).strip()``,
   psycopg's whole message, which for a syntax error is three lines (``LINE 1: ...`` and a
   caret line). The writer's traceback then ends with ``^`` and ``last_logged``
   (``procs/supervisor/exit_reason.py:49``) gives the supervisor's restart-limit stop "its
   log's last line: ^": the README's "which the supervisor's stop repeats" is not kept. Fix:
   in ``migrate``, the message's first line only (``str(exc).strip().splitlines()[0]``, as
   ``DbWriter._retry`` logs it), the rest left to the cause.
3. ``procs/supervisor/exit_reason.py:53-62`` (``last_logged``): a last line longer than
   ``TAIL_BYTES`` is read from the middle: the 300 characters given are a fragment from 4 KiB
   before its end, its start (the exception's type and message) lost, and only the end marked
   as cut. Fix: where the tail holds no newline before its last line, read back to it (or
   from the file's start, bounded), and keep the line's first ``LINE_CHARS``.
4. ``procs/admin/users.py:263`` (``remove_user`` -> ``_keys_left``): ``remove-user X
   --cancel-orders`` of a comp id that is no user but holds keys revokes the keys and exits 0;
   ``--cancel-orders`` is dropped without a word, though the keys name the account whose
   orders the operator asked to have cancelled. Fix: in ``_keys_left``, with
   ``--cancel-orders``, cancel the accounts the keys name (``connect()``, ``cancel_all``) or
   say the orders were not cancelled and exit 1.
5. ``procs/admin/users.py:368`` (``_gateways_read``): the rings waited for are the profile's
   gateways as read now, not the instance's: a gateway taken out of the profile while it runs
   (to go at the next restart) still takes orders, and its ring is not waited for, so an order
   of the user's there is sequenced after the cancel-all (the fault 54e9cc8 mends for the
   others). Fix: take the rings from the instance's segments (``shm.inspect.list_segments``,
   ``gw<N>-cmd`` of a live producer), or from status.json's processes.
6. ``procs/admin/interrupts.py:51-55`` and ``:46-48``: ``ignore_interrupts`` says
   ``interrupting`` restores what it ignored; it restores SIGTERM and SIGHUP only, so a caller
   of ``cli.main`` in process (a test, a script) has Ctrl-C ignored from a given-up ``run
   --detach`` on. Fix: save and restore SIGINT in ``interrupting`` too.

Sound: a command without nohup takes SIGTERM as Ctrl-C (one line, 143); a migration's
transient errors (SerializationFailure, DeadlockDetected: psycopg's ``OperationalError``
subclasses) keep their type and are retried; ``_gateways_read`` waits for exactly the cursor
(no off by one) and takes a detached router's sequence as it stands; ``last_logged`` of a log
gone, empty, or of binary junk; ``set-password`` and ``set-user`` keep the session id a key
is checked against. Read, not forced: ``ringex run`` in the foreground (``stop_on_signals``
replaces the handler before anything is started; a SIGTERM before it is ``ringex:
interrupted``, nothing to undo), ``replace_durably`` (its ``except BaseException`` removes
the temp file), ``replay --to-db`` (SIGHUP now unwinds through the embedded cluster's stop,
where it killed the command outright before).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import time
import traceback
from pathlib import Path

import msgspec
import psycopg
import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.admin.client import AdminClient
from procs.admin.interrupts import ignore_interrupts, interrupting
from procs.admin.users import _gateways_read, remove_user
from procs.common.apikeys import ApiKeyStore
from procs.common.record_codec import RecordCodec
from procs.common.records import Heartbeat, Record
from procs.common.topology import ROUTER, apikeys_path, gateway_commands, users_path
from procs.common.users import UserStore
from procs.dbwriter.migrate import MigrationError, migrate
from procs.supervisor.exit_reason import LINE_CHARS, last_logged
from shm import Ring
from tests.unit.test_review239_operator_races import CLI, ROOT, _profile


def until(what: object, deadline_s: float = 10.0) -> None:
    """Wait, a 20 ms nap at a time, until ``what()`` is true."""
    end = time.monotonic() + deadline_s
    while not what():  # type: ignore[operator]
        assert time.monotonic() < end, f"not within {deadline_s} s"
        time.sleep(0.02)


def caught(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (``/proc``'s SigCgt)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def waiting_status(
    profile: Path, ignored: tuple[int, ...], timeout_s: float = 4
) -> subprocess.Popen[str]:
    """``ringex status --wait-ready`` of an instance that never runs (it waits out its
    ``timeout_s``), started with ``ignored`` ignored (as ``nohup`` and ``make run``'s stop
    start it); returned once its ``interrupting`` is in place (SIGTERM caught)."""

    def ignore() -> None:
        for s in ignored:
            signal.signal(s, signal.SIG_IGN)

    proc = subprocess.Popen(
        [*CLI, "status", "--config", str(profile), "--wait-ready", "--timeout", str(timeout_s)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore,  # noqa: PLW1509  (signal dispositions only)
    )
    until(lambda: proc.poll() is not None or caught(proc.pid, signal.SIGTERM), 20.0)
    return proc


def test_a_command_started_with_sighup_ignored_survives_the_hangup(tmp_path: Path) -> None:
    """Scenario: ``nohup ringex status --wait-ready --timeout 4`` (SIGHUP ignored at its
    start, as nohup, or make run's ``ringex stop``, starts it), a SIGHUP once it waits.
    Expected: the hangup ignored, as before 5d2b4c7: the wait runs out, exit 1, "not ready".
    Was (fixed): ``interrupting`` replaces SIG_IGN: "ringex: interrupted (SIGHUP)", exit 129."""
    profile = _profile(tmp_path / "p.toml", f"r254n{id(tmp_path) % 10**6}")
    proc = waiting_status(profile, (signal.SIGHUP,))
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1, err
    assert "not ready within" in err


def test_a_command_not_ignoring_sigterm_takes_it_as_ctrl_c(tmp_path: Path) -> None:
    """Scenario: the same wait, SIGTERM not ignored, given one. Expected: one line naming
    it, exit 143, no traceback. Now: so. (A 60 s wait, which the signal ends: one make test
    ran out the 4 s before the SIGTERM came, the loaded host slow to send it.)"""
    profile = _profile(tmp_path / "p.toml", f"r254t{id(tmp_path) % 10**6}")
    proc = waiting_status(profile, (), timeout_s=60)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 143, err
    assert err.strip() == "ringex: interrupted (SIGTERM)"


def test_interrupting_restores_what_ignore_interrupts_ignored() -> None:
    """Scenario: ``cli.main`` in process: ``interrupting``, a start given up (``_run`` calls
    ``ignore_interrupts``), the command's end. Expected: Ctrl-C's handler back, as its
    docstring says ("``interrupting`` restores them"). Was (fixed): SIGINT stays ignored."""
    before, term = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with interrupting():
            ignore_interrupts()
        assert signal.getsignal(signal.SIGINT) is before
        assert signal.getsignal(signal.SIGTERM) is term  # (the suite's conftest sets one)
    finally:
        signal.signal(signal.SIGINT, before)


# -- migrations: what the supervisor's stop repeats ------------------------------------------


def traceback_logged(tmp_path: Path, exc: BaseException) -> Path:
    """A child's log ending as an uncaught ``exc`` ends it (the default excepthook's text,
    the child's stderr being its log)."""
    log = tmp_path / "dbwriter.log"
    text = "2026-11-30 05:00:00,000 ringex.dbwriter INFO connecting\n"
    log.write_text(text + "".join(traceback.format_exception(exc)))
    return log


def test_a_migration_with_a_syntax_error_is_named_by_the_supervisors_stop(
    dsn: str, tmp_path: Path
) -> None:
    """Scenario: a migration file with bad syntax; the writer dies of the MigrationError
    (each restart alike), the supervisor's restart limit quotes its log's last line.
    Expected: that line names the file ("0002_b.sql failed: syntax error ..."), as the
    README says the stop repeats it. Was (fixed): psycopg's message has the server's ``LINE 1:``
    and caret lines: the traceback's, and the stop's, last line is ``^``."""
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "0001_a.sql").write_text("CREATE TABLE a (x int);")
    (migrations / "0002_b.sql").write_text("ALTER TABLE a ADD COLUMN y int,, z int;")
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(MigrationError) as e:
        migrate(conn, migrations)
    said = last_logged(traceback_logged(tmp_path, e.value))
    assert said is not None
    assert "0002_b.sql failed: syntax error" in said, said


@pytest.mark.parametrize(
    ("code", "kind"),
    [("40001", psycopg.errors.SerializationFailure), ("40P01", psycopg.errors.DeadlockDetected)],
)
def test_a_migrations_transient_error_keeps_its_type(
    dsn: str, tmp_path: Path, code: str, kind: type[psycopg.Error]
) -> None:
    """Scenario: a migration that fails with a serialization failure or a deadlock (raised
    by the file here with that SQLSTATE). Expected: not a MigrationError (which stops the
    writer for good): psycopg's class, an ``OperationalError`` ``DbWriter._retry`` retries,
    with the file in a note; nothing recorded. Now: so."""
    (tmp_path / "0001_a.sql").write_text(
        f"DO $$ BEGIN RAISE EXCEPTION 'transient' USING ERRCODE = '{code}'; END $$;"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(kind) as raised:
            migrate(conn, tmp_path)
        assert isinstance(raised.value, psycopg.OperationalError)
        assert f"in migration {tmp_path / '0001_a.sql'}" in raised.value.__notes__
        # the whole run undone, the migrations' own table with it
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)


# -- last_logged ------------------------------------------------------------------------------


def test_a_long_last_line_is_quoted_from_its_start(tmp_path: Path) -> None:
    """Scenario: a gateway's last logged line is an error whose message is 6 KB (a long repr
    of what it refused). Expected: the quote begins with the line's start (the error's type
    and reason), cut at its end. Was (fixed): it begins 4 KiB before the line's end, in the repr,
    the error's name gone; only its end is marked as cut."""
    log = tmp_path / "gw1.log"
    line = "ValueError: profile refused: " + ", ".join(f"s{n}" for n in range(1200))
    log.write_text("starting\n" + line + "\n")
    said = last_logged(log)
    assert said is not None
    assert said.startswith("ValueError: profile refused"), said[:60]
    assert len(said) <= LINE_CHARS


def test_last_logged_of_a_log_gone_empty_or_junk(tmp_path: Path) -> None:
    """Scenario: the log deleted (a rotation by rename), empty or blank, or binary junk.
    Expected: None for the first two, a bounded line of text for junk; never an error.
    Now: so."""
    assert last_logged(tmp_path / "gone.log") is None
    (tmp_path / "blank.log").write_text("\n  \n\n")
    assert last_logged(tmp_path / "blank.log") is None
    (tmp_path / "junk.log").write_bytes(bytes(range(256)) * 40 + b"\xff\xfe last words\n\n")
    said = last_logged(tmp_path / "junk.log")
    assert said is not None
    assert said.endswith("last words")
    assert len(said) <= LINE_CHARS


# -- remove-user ------------------------------------------------------------------------------


def venue(tmp_path: Path, name: str, gateways: int = 1) -> RingexConfig:
    """A profile of ``gateways`` FIX gateways under ``tmp_path`` (nothing runs)."""
    text = _profile(tmp_path / f"{name}.toml", f"r254{name}{id(tmp_path) % 10**6}").read_text()
    for n in range(2, gateways + 1):
        text += f'[[gateways]]\nname = "gw{n}"\nid = {n}\nport = {40000 + n}\n'
    (tmp_path / f"{name}.toml").write_text(text)
    cfg = load_profile(str(tmp_path / f"{name}.toml"))
    users_path(cfg).parent.mkdir(parents=True, exist_ok=True)
    return cfg


class Connect:
    """``remove_user``'s ``connect``: counts the calls, gives no client."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> AdminClient | None:
        self.calls += 1
        return None


def test_remove_user_cancel_orders_of_keys_left_does_not_drop_the_cancel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ALICE (account 7) was removed but her key revocation failed (the message
    says to run remove-user again); the operator runs ``remove-user ALICE --cancel-orders``.
    Expected: her account's orders cancelled (the client asked for), or the command saying
    they were not, exit 1. Was (fixed): her keys revoked, exit 0, ``--cancel-orders`` never looked
    at: no connection, not a word of orders."""
    cfg = venue(tmp_path, "k")
    users = UserStore(users_path(cfg))
    alice = users.add("ALICE", "pw", 7, n=2)
    ApiKeyStore(apikeys_path(cfg)).create(alice, ["read", "trade"])
    users.remove("ALICE")
    connect = Connect()
    code = remove_user(cfg, argparse.Namespace(comp_id="ALICE", cancel_orders=True), connect)
    out, err = capsys.readouterr()
    assert not ApiKeyStore(apikeys_path(cfg)).keys_of("ALICE")  # revoked, as said
    assert connect.calls == 1 or (code == 1 and "not cancelled" in out + err), (code, out, err)


def test_set_password_and_set_user_keep_the_session_a_key_names(tmp_path: Path) -> None:
    """Scenario: a key made for ALICE; her password changed, then her settings. Expected:
    her session id unchanged (the key still hers for ``holder_unchanged``); removed and
    added again, a new one (the key left is not hers). Now: so."""
    cfg = venue(tmp_path, "s")
    users = UserStore(users_path(cfg))
    alice = users.add("ALICE", "pw", 7, n=2)
    key = ApiKeyStore(apikeys_path(cfg)).create(alice, ["read"])
    users.set_password("ALICE", "pw2", n=2)
    users.add("ALICE", "pw3", 7, n=2, cancel_on_disconnect=True)
    now = users.get("ALICE")
    assert now is not None
    assert (now.account, now.session) == (key.account, key.session)
    users.remove("ALICE")
    again = users.add("ALICE", "pw", 7, n=2)
    assert again.session != key.session


def rings_of(cfg: RingexConfig, gateways: list[int]) -> list[Ring[Record]]:
    return [
        Ring.create(
            cfg.instance, gateway_commands(g), RecordCodec(), capacity=64, consumers=[ROUTER]
        )
        for g in gateways
    ]


def test_gateways_read_waits_for_exactly_the_cursor(tmp_path: Path) -> None:
    """Scenario: gw1's ring holds 3 commands; the router has committed 2, then all 3, and
    is then detached (a router restarting). Expected: not read while 2 (a short deadline
    runs out), read at 3 and after the detach (its sequence stands). Now: so."""
    cfg = venue(tmp_path, "g")
    (ring,) = rings_of(cfg, [1])
    try:
        producer = ring.producer()
        for n in range(3):
            producer.publish(Heartbeat(ts_ns=1, source=1, counter=n))
        router = ring.consumer(ROUTER)
        assert len(router.read(2)) == 2
        router.commit()
        assert not _gateways_read(cfg, time.monotonic() + 0.2)
        assert len(router.read()) == 1
        router.commit()
        assert _gateways_read(cfg, time.monotonic() + 5)
        router.close()
        producer.close()
        ring.detach_consumer(next(i for i, n in ring.consumer_names().items() if n == ROUTER))
        assert _gateways_read(cfg, time.monotonic() + 5)
    finally:
        ring.unlink()
        ring.close()


def test_gateways_read_waits_for_a_running_gateway_the_profile_lost(tmp_path: Path) -> None:
    """Scenario: an instance runs gw1 and gw2; gw2 is taken out of the profile (to go at the
    next restart) while it runs, and its ring holds an order the router has not read.
    Expected: ``_gateways_read`` (remove-user's wait before its cancel-all) does not answer
    read while gw2's ring holds it. Was (fixed): the profile's gateways alone are looked at: read at
    once, and the order would be sequenced after the cancel-all."""
    both = venue(tmp_path, "b", gateways=2)
    rings = rings_of(both, [1, 2])
    try:
        producer = rings[1].producer()
        producer.publish(Heartbeat(ts_ns=1, source=2, counter=0))
        producer.close()
        edited = msgspec.structs.replace(both, gateways=both.gateways[:1])
        assert [g.id for g in edited.gateways] == [1]
        assert not _gateways_read(edited, time.monotonic() + 0.2)
    finally:
        for ring in rings:
            ring.unlink()
            ring.close()
