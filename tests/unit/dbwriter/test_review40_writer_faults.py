"""Review 40: the database writer's crash points (``procs/dbwriter``), by a hostile reviewer.

Each test here names a fault: it asserts what the writer promises ("the database equals a
replay of the journal"; after a crash and restart nothing is lost and nothing is written
twice); its docstring gives the sequence that triggers it, what is lost or wrong, and where.
All four are fixed: three by the review's session (a "Fixed:" line says how), the lane
ahead of a journal that lost its tail, a strict xfail until 2026-11-27, by ``rewind_lanes``
(``store.py``): a writer's start deletes a lane's trades past the checkpoint and writes
them again from the journal. The crash points this review tried and found right are in
``test_review40_checked.py``. Everything runs the real writer (``DbWriter``: committer
thread, trade lanes, checkpoint) into the session's real PostgreSQL
(``tests/unit/conftest.py``, a database per test) over journals made by the real sequencer
and matchers (``journal_gen``). A crash is an exception raised inside the batch's
transaction or a lane's: the server then rolls back what was not committed, as it does for
a SIGKILLed client, whose sockets the kernel closes.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from procs.common.embedded_postgres import PORT, EmbeddedPostgres
from procs.common.topology import journal_dir
from procs.dbwriter.projection import Batch
from procs.dbwriter.writer import Backoff, DbWriter, WriterOptions
from tests.unit.dbwriter.journal_gen import (
    build,
    make_cfg,
    write_all,
)
from tests.unit.dbwriter.reconcile import reconcile

_QUICK = Backoff(0.01, 0.1)


class CrashError(Exception):
    """The writer dies here (raised inside a transaction: the server rolls it back)."""


def _state(dsn: str) -> tuple[int, dict[int, int]]:
    """(the checkpoint, each trade lane's own checkpoint)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT last_seq FROM checkpoint").fetchone()
        assert row is not None
        return int(row[0]), dict(conn.execute("SELECT lane, last_seq FROM trade_lanes"))


def _admin(dsn: str) -> tuple[str, str]:
    """(the database's name, the admin dsn beside it)."""
    name = dsn.split("dbname=")[1].split(maxsplit=1)[0]
    return name, dsn.replace(f"dbname={name}", "dbname=postgres")


class _Running:
    """``writer.run()`` on a thread of its own; what it raised, kept for the test."""

    def __init__(self, writer: DbWriter, *, to_end: bool) -> None:
        self.writer = writer
        self.errors: list[BaseException] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(to_end,))
        self.thread.start()

    def _run(self, to_end: bool) -> None:
        try:
            self.writer.run(to_end=to_end)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)
        finally:
            self.done.set()

    def stop(self, timeout: float = 30) -> None:
        self.writer.request_stop()
        self.thread.join(timeout)
        self.writer.close()
        assert not self.thread.is_alive(), "the writer did not stop"


# -- faults -------------------------------------------------------------------------------------


def test_a_lane_ahead_of_a_journal_that_lost_its_tail_is_not_kept_silently(
    tmp_path: Path, dsn: str
) -> None:
    """Fault (``store.py``, ``PgStore._write_lane`` and ``trade_lanes``; ``writer.py``,
    ``DbWriter.start``). Review 26 made the checkpoint keep the CRC-32 of the journal entry it
    was written from, so a writer over a journal that lost its tail (a host crash under
    ``journal.fsync = "none"`` or ``"interval"``, the seqs then given to other commands), or
    over another journal (a failover's new primary, whose journal lacks the old one's last
    unreplicated entries, while the old primary's writer was mid-batch), refuses rather than
    file two histories. The trade lanes' own checkpoints escaped it: a lane commits its
    trades and moves its row *before* the batch's transaction commits, and ``_write_lane``
    skips every trade of its symbols up to that row (``done >= batch.last_seq: return``,
    else ``payload(symbols, done)``), whatever journal they came from.

    Sequence: the checkpoint at R; the writer's next batch (R+1..L) of a journal tail that
    is then lost: both lanes commit, the writer dies before the batch's commit (a crash of
    its host, or of the old primary's). The journal is R long again and the router goes on
    with other commands at R+1.. . The restarted writer finds the checkpoint's CRC right
    (entry R is the same), replays, writes R+1.. with its orders, balances and candles from
    the new history, and its lanes skip their trades up to L: the lost history's trades stay
    and the new one's are never filed (here dozens each way), silently; the trades no
    longer add up to the candles, the balances or the orders filled. Expected: refused
    (each lane's row keeps the CRC of the entry at its seq, checked by ``start`` or the
    lane), or the lane's rows above the checkpoint deleted and written anew.

    Fixed: ``DbWriter.start`` has ``PgStore.rewind_lanes`` delete an ahead lane's trades
    from each of its symbols' first trade id past the checkpoint (the replay state's) and
    move its row back; the next batch files the journal's."""
    cfg = make_cfg(tmp_path)  # two lanes: BTC-USD on lane 1, ETH-USD on lane 0
    lost = build(cfg, 300, seed=5)
    kept = lost.last_seq
    assert write_all(cfg, dsn) == kept
    lost.random_commands(200)  # a tail the journal will lose ...
    lost.close()
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=10**6, batch_ms=10**6))

    def crash(_conn: psycopg.Connection[Any], _batch: Batch) -> None:
        raise CrashError  # both lanes committed; the batch and its checkpoint are not

    writer.store.before_commit.append(crash)
    with pytest.raises(CrashError):
        writer.run(to_end=True)
    writer.close()
    at, lanes = _state(dsn)
    assert at == kept and min(lanes.values()) == lost.last_seq  # both lanes ahead
    shutil.rmtree(journal_dir(cfg))  # ... lost: 1..R again, then other commands
    live = build(cfg, 300, seed=5)
    assert live.last_seq == kept
    live.rng = random.Random(6)
    live.random_commands(400)
    live.close()
    assert live.last_seq > lost.last_seq
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))
    try:
        writer.run(to_end=True)
    except RuntimeError as exc:  # refused, naming the problem: acceptable
        assert "journal" in str(exc)
        return
    finally:
        writer.close()
    with psycopg.connect(dsn) as conn:
        filed = {tuple(r) for r in conn.execute("SELECT symbol_id, trade_id, seq FROM trades")}
    made = {(t.symbol, t.trade_id, t.seq) for t in live.trades}
    assert filed == made, (
        f"{len(filed - made)} trades filed that the journal does not hold, "
        f"{len(made - filed)} of the journal's missing"
    )


class _Proxy:
    """A PostgreSQL socket that forwards to the real one and can cut its clients off while
    their server sessions live on: what a network outage does once the client's side gives
    up (``connect``'s ``tcp_user_timeout`` and keepalives: about a minute) and the server's
    has not (its keepalives: two hours by the OS defaults)."""

    def __init__(self, target: Path, directory: Path) -> None:
        self.target = str(target)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(directory / f".s.PGSQL.{PORT}"))
        self.listener.listen(64)
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._cut: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self._lock:
                self._pairs.append((client, upstream))
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            if src in self._cut or dst in self._cut:
                return  # the server's side stays open, and silent
        with contextlib.suppress(OSError):  # ended already
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """End every client's connection; leave their server sessions as they are."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self._cut |= {upstream for _, upstream in pairs}
        for client, _ in pairs:
            _end(client)

    def heal(self) -> None:
        """The server notices at last (its keepalive): the cut sessions end."""
        with self._lock:
            cut = list(self._cut)
        for upstream in cut:
            _end(upstream)

    def close(self) -> None:
        self.heal()
        _end(self.listener)
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            _end(client)
            _end(upstream)
        for thread in self._threads:
            thread.join(5)


def _end(sock: socket.socket) -> None:
    """Close ``sock``, waking a thread blocked on it (``close`` alone does not)."""
    with contextlib.suppress(OSError):  # not connected, or ended already
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def proxied(pg: EmbeddedPostgres) -> Iterator[tuple[_Proxy, Callable[[str], str]]]:
    directory = Path(tempfile.mkdtemp(prefix="rgx40-"))  # short: a socket path is <108 bytes
    proxy = _Proxy(pg.data / f".s.PGSQL.{PORT}", directory)
    try:
        yield proxy, lambda dsn: dsn.replace(f"host={pg.data}", f"host={directory}")
    finally:
        proxy.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_a_connection_lost_mid_batch_does_not_leave_the_writer_waiting_on_itself(
    tmp_path: Path, dsn: str, proxied: tuple[_Proxy, Callable[[str], str]]
) -> None:
    """Fault (``store.py``: ``connect``, ``PgStore.write``; ``writer.py``: ``_retry``). A
    batch's transaction locks the checkpoint row (``FOR UPDATE``) and holds it while its
    lanes write. The writer's sessions give up on a silent server after about a minute
    (``tcp_user_timeout`` 60 s, keepalives 30 + 3 x 10 s): a network outage that long
    mid-batch (a switch reboot, a cloud network blip, a NAT or firewall dropping the flow)
    raises ``OperationalError`` and ``_retry`` writes the batch again on a new connection.
    The server knows nothing of it: the old session stays "idle in transaction" with the
    lock until *its* TCP keepalive gives up, two hours and some by the OS defaults
    (PostgreSQL's ``tcp_keepalives_*`` 0; the writer sets no
    ``idle_in_transaction_session_timeout``). The retry's ``open`` lays the lanes out under
    ``SELECT .. FROM checkpoint FOR UPDATE`` (``_lay_out``) and waits there behind the
    writer's own orphan, without a log line; the main thread then blocks on the committer
    (backpressure) and stops petting the watchdog, so systemd restarts the writer into the
    same wait (before READY, where ``TimeoutStartSec=infinity``). The history stops for
    hours after a one-minute outage, though nothing is lost.

    Here the outage is a proxy that cuts the writer's connections inside the third batch's
    transaction (the lanes committed, the batch's COMMIT not sent) and leaves the server
    sessions open. Expected: the writer through the journal within 8 s (its transactions
    are idle only while its lanes write, well under a second: e.g.
    ``idle_in_transaction_session_timeout`` on its sessions, or the backends of the
    connections it gave up terminated before it retries); actual: it waits until the test
    lets the orphan end. Everything is written once it does (checked after the wait).

    Fixed: the writer's next main connection ends the server sessions of those it closed
    (``PgStore._end_orphans``: pid and start time) before it lays the lanes out.
    """
    proxy, via = proxied
    cfg = make_cfg(tmp_path)
    live = build(cfg, 600)
    live.close()
    writer = DbWriter(cfg, via(dsn), WriterOptions(batch_rows=100, batch_ms=10**6, backoff=_QUICK))
    calls = 0

    def outage(_conn: psycopg.Connection[Any], _batch: Batch) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            proxy.cut()

    writer.store.before_commit.append(outage)
    running = _Running(writer, to_end=True)
    try:
        in_time = running.done.wait(8)
    finally:
        proxy.heal()  # the orphan ends: the writer goes on
        running.done.wait(30)
        running.stop()
    assert not running.errors, running.errors
    reconcile(dsn, live)  # nothing lost, nothing twice, once the orphan was gone
    assert in_time, "the writer waited on its own orphaned transaction"


def test_commits_the_database_lost_are_written_again_while_the_journal_is_idle(
    tmp_path: Path, dsn: str
) -> None:
    """Fault (``writer.py``, ``DbWriter._follow``). The writer commits with
    ``synchronous_commit = off`` (``store.connect``: "a crash loses at most the last few
    commits whole ... and the writer writes them again from the journal"), and its
    docstring promises that a checkpoint found behind (commits lost, a failover to a
    lagging replica, a restored backup) restarts it from there. It finds one only when it
    writes its *next* batch: a writer caught up with an idle journal reads nothing from the
    database, and does not notice that its connection broke either. A PostgreSQL crash
    right after the last commits of a busy spell (a market halted after an incident; the
    night on a quiet venue) leaves the history without its last trades, fills and balances
    for as long as no command comes, while the writer logs "checkpoint N, lag 0"; a stop
    then logs "stopped at checkpoint N" too, and ``ringex replay --to-db`` returns N.

    Here the database is replaced by a backup taken earlier (deterministic, where lost
    asynchronous commits are not) while the writer is idle at the journal's end. Expected:
    the database back at the journal's end within a few seconds (a look at the checkpoint
    when a new session is made, or now and then while idle); actual: it stays at the
    backup's checkpoint until the next command.

    Fixed: an idle writer reads the checkpoint every ``check_s`` (2 s) and restarts from it
    when it is behind (``CheckpointBehindError``).
    """
    cfg = make_cfg(tmp_path)
    b = build(cfg, 200)
    assert write_all(cfg, dsn) == b.last_seq
    name, admin = _admin(dsn)
    backup = f"{name}b"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {backup} TEMPLATE {name}")
    restored_at = b.last_seq
    b.random_commands(200)
    b.close()
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=100, batch_ms=20, poll_max_s=0.05))
    running = _Running(writer, to_end=False)
    try:
        deadline = time.monotonic() + 20
        while writer.committed < b.last_seq and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.committed == b.last_seq
        with psycopg.connect(admin, autocommit=True) as conn:  # lost: back to the backup
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {backup}")
        assert _state(dsn)[0] == restored_at
        deadline = time.monotonic() + 6
        while _state(dsn)[0] != b.last_seq and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        running.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {backup} WITH (FORCE)")
    assert not running.errors, running.errors
    assert _state(dsn)[0] == b.last_seq, (
        f"the database is at seq {restored_at}; the writer says {writer.committed}"
    )


def test_a_partition_made_ahead_waits_for_no_reader_of_trades(tmp_path: Path, dsn: str) -> None:
    """Fault (``store.py``, ``PgStore.ensure_partitions``; ``ringex_trade_partitions``). A
    partition is made by ``CREATE TABLE .. PARTITION OF trades``, which takes an ACCESS
    EXCLUSIVE lock on ``trades``; the writer makes one each UTC day, for the day
    ``days_ahead`` (3) days on, at its first batch with trades after midnight, with no
    ``lock_timeout``. Any transaction that has read ``trades`` holds a lock that conflicts:
    ``pg_dump`` holds one on every table for its whole run (a nightly backup at 00:00 UTC,
    the usual slot), as does a report or a ``psql`` session left in a transaction. The
    writer then waits for the dump to end, its batch and every one after it with it (no
    log line, no watchdog ping: systemd restarts it into the same wait), and its queued
    exclusive request makes every new read of ``trades`` wait behind it: the REST API's
    myTrades hangs for as long as the dump runs. The partition it waits for is not needed
    for three days.

    Here the day three days on is dropped (the state just after midnight), a reader keeps a
    transaction open on ``trades``, and the exchange trades on (on days whose partitions
    exist). Expected: a new read of ``trades`` answered at once and the trades filed
    (the ahead day made under a short ``lock_timeout`` and tried again later, where a lock
    is not to be had); actual: both wait for the reader.

    Fixed: days ahead are made under a 100 ms ``lock_timeout``, tried again a minute after a
    refusal; the days a batch's rows need are still waited for.
    """
    cfg = make_cfg(tmp_path)
    b = build(cfg, 300)
    assert write_all(cfg, dsn) == b.last_seq
    with psycopg.connect(dsn, autocommit=True) as conn:
        (ahead,) = conn.execute(
            "SELECT 'trades_' || to_char((now() AT TIME ZONE 'UTC')::date + 3, 'YYYYMMDD')"
        ).fetchone() or ("",)
        conn.execute(f"DROP TABLE {ahead}")
    trades_before = len(b.trades)
    b.random_commands(300)
    b.close()
    assert len(b.trades) > trades_before
    dump = psycopg.connect(dsn)  # a backup's transaction: it has read trades, and goes on
    dump.execute("SELECT count(*) FROM trades")
    running = _Running(
        DbWriter(cfg, dsn, WriterOptions(batch_rows=100, batch_ms=10**6)), to_end=True
    )
    try:
        time.sleep(1)  # the writer's first batch is at its partitions by now
        with psycopg.connect(dsn, autocommit=True) as api:  # a myTrades request
            api.execute("SET statement_timeout = 3000")
            try:
                api.execute("SELECT count(*) FROM trades WHERE maker_account_id = 10").fetchone()
                answered = True
            except psycopg.errors.QueryCanceled:
                answered = False
        filed = running.done.wait(4)
    finally:
        dump.close()  # the dump ends: the writer goes on
        running.done.wait(30)
        running.stop()
    assert not running.errors, running.errors
    assert answered, "a read of trades waited behind the writer's partition DDL"
    assert filed, "the writer waited for a reader of trades to make a partition not yet needed"
