"""Review 40: the database writer's crash points (``procs/dbwriter``), by a hostile reviewer.

Each ``xfail(strict=True)`` test names a fault: it asserts what the writer promises ("the
database equals a replay of the journal"; after a crash and restart nothing is lost and
nothing is written twice) and fails today; its docstring gives the sequence that triggers
it, what is lost or wrong, and where. The ``test_checked_`` tests pin crash points this
review tried and found right. Everything runs the real writer (``DbWriter``: committer
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

import msgspec
import psycopg
import pytest

from config.schema import AssetConfig, MatcherConfig, RingexConfig, SymbolConfig
from procs.common.embedded_postgres import PORT, EmbeddedPostgres
from procs.common.records import CancelOrder, MassCancel, Transfer
from procs.common.topology import journal_dir
from procs.common.types import Side
from procs.core.recovery import restore_matchers
from procs.core.sequencer import Sequencer
from procs.dbwriter.migrate import MIGRATIONS, load, migrate
from procs.dbwriter.projection import CANCELLED, MASS_CANCELLED, Batch
from procs.dbwriter.replay import snapshot_store
from procs.dbwriter.store import PgStore
from procs.dbwriter.writer import Backoff, DbWriter, WriterOptions
from tests.unit.dbwriter.journal_gen import (
    JournalBuilder,
    build,
    fund,
    limit_order,
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


@pytest.mark.xfail(
    strict=True,
    reason="review 40: a trade lane ahead of the checkpoint carries no CRC: a lost journal "
    "tail (or another writer's journal) leaves its trades filed and the new history's skipped",
)
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
    lane), or the lane's rows above the checkpoint deleted and written anew."""
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
    lets the orphan end. Everything is written once it does (checked after the wait)."""
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
    backup's checkpoint until the next command."""
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
    is not to be had); actual: both wait for the reader."""
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


# -- checked and found right --------------------------------------------------------------------


def test_checked_a_crash_between_one_lanes_commit_and_the_others_is_written_once(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: the writer dies after lane 0 committed the third batch's ETH-USD trades and
    before lane 1 (BTC-USD) did, so before the batch too. Restarted with other batch bounds
    (its first batch ends inside the one lane 0 wrote, then one past it), lane 0 sends only
    what follows its own checkpoint and lane 1 everything it lacks: every trade once,
    candles, balances and orders as the live exchange has them."""
    cfg = make_cfg(tmp_path)
    live = build(cfg, 2000)
    live.close()
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=300, batch_ms=10**6))
    write_lane = writer.store._write_lane
    batches = 0

    def lane(k: int, symbols: list[int], batch: Batch) -> None:
        nonlocal batches
        if k == 1:
            batches += 1
            if batches == 3:
                raise CrashError  # lane 0's result is read (and its commit made) first
        write_lane(k, symbols, batch)

    writer.store._write_lane = lane  # type: ignore[method-assign, assignment]
    with pytest.raises(CrashError):
        writer.run(to_end=True)
    writer.close()
    at, lanes = _state(dsn)
    assert lanes[0] > at >= lanes[1] > 0
    restarted = DbWriter(cfg, dsn, WriterOptions(batch_rows=97, batch_ms=10**6))
    assert restarted.run(to_end=True) == live.last_seq
    restarted.close()
    reconcile(dsn, live)


def test_checked_a_connection_killed_before_the_batchs_commit_is_retried_not_skipped(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: PostgreSQL ends the writer's main session (``pg_terminate_backend``: an
    administrator, a restart) inside the third batch's transaction, after its lanes
    committed. The COMMIT fails (``OperationalError``), ``_retry`` writes the same batch
    again on a new connection: the lanes, ahead, skip their trades, the rest is written
    once (candles not doubled, balances absolute), nothing skipped."""
    cfg = make_cfg(tmp_path)
    live = build(cfg, 1500)
    live.close()
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6, backoff=_QUICK))
    seen: list[tuple[int, dict[int, int], int]] = []

    def kill(conn: psycopg.Connection[Any], batch: Batch) -> None:
        if len(seen) == 0 and batch.trades.count and batch.first_seq > 400:
            with psycopg.connect(dsn, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s, 5000)", (conn.info.backend_pid,))
            seen.append((*_state(dsn), batch.last_seq))

    writer.store.before_commit.append(kill)
    assert writer.run(to_end=True) == live.last_seq
    writer.close()
    [(at, lanes, last)] = seen
    assert at < last and max(lanes.values()) == last  # the lanes were in, the batch not
    assert writer.store.connections >= 2  # it reconnected and wrote again
    reconcile(dsn, live)


def test_checked_a_commit_whose_answer_was_lost_counts_candles_once(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: a batch committed whose answer never came (the connection broke after the
    server committed) is retried by ``_retry``; the retry finds the checkpoint at the
    batch's end and writes nothing, so the candles' merged volumes and trade counts, which
    are added, not set, count each trade once; balances are absolute values, kept by seq."""
    cfg = make_cfg(tmp_path)
    live = build(cfg, 1500)
    live.close()
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=150, batch_ms=10**6, backoff=_QUICK))
    write = writer.store.write
    answers: list[bool] = []

    def lost_answer(batch: Batch) -> bool:
        answered = write(batch)
        answers.append(answered)
        if len(answers) in (2, 6, 11):  # committed, then the connection broke
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return answered

    writer.store.write = lost_answer  # type: ignore[method-assign]
    assert writer.run(to_end=True) == live.last_seq
    writer.close()
    assert [i for i, a in enumerate(answers) if not a] == [2, 6, 11]  # each retry: a no-op
    reconcile(dsn, live)


def test_checked_a_cancel_of_an_order_from_before_the_writers_snapshot_is_filed(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: an order placed before the writer's snapshot, then a restart that restores
    the snapshot (so the order's NewOrder is not replayed), then its cancel and a partial
    fill of another such order: both rows move on from the snapshot's open orders, and the
    balances they free are filed."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    fund(b, 11, {1: 10**15, 2: 10**15})
    old = limit_order(b, 10, 1, Side.SELL, 200_000, 5)
    half = limit_order(b, 10, 1, Side.SELL, 150_000, 8)
    options = WriterOptions(batch_rows=2, batch_ms=10**6, snapshot_every=1)
    first = DbWriter(cfg, dsn, options)
    assert first.run(to_end=True) == b.last_seq
    first.close()
    snapped = snapshot_store(cfg).latest()
    assert snapped is not None and snapped[0] == b.last_seq
    b.submit(CancelOrder(*b._header(10, 1), old))
    limit_order(b, 11, 1, Side.BUY, 150_000, 3)
    b.close()
    second = DbWriter(cfg, dsn, options)
    assert second.start().seq == snapped[0]  # restored, not replayed
    assert second.run(to_end=True) == b.last_seq
    second.close()
    with psycopg.connect(dsn) as conn:
        query = "SELECT id, status, filled, remaining FROM orders"
        rows = {r[0]: r[1:] for r in conn.execute(query)}
    assert rows[old] == (CANCELLED, 0, 0)
    assert rows[half][1:] == (3, 5)
    reconcile(dsn, b)


def test_checked_migrations_run_by_two_writers_at_once_or_cut_short(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: two writers opening a fresh database at once (each ``PgStore.open``:
    migrations, reference data, temp tables, the lanes' layout) both go on, every migration
    applied and recorded once; and a migration whose session is ended part-way (after its
    first statement: a SIGKILLed writer, a server restart) leaves nothing of itself, so the
    next run applies it whole."""
    cfg = make_cfg(tmp_path)
    gate = threading.Barrier(2)
    errors: list[BaseException] = []
    stores = [PgStore(dsn, cfg), PgStore(dsn, cfg)]

    def open_store(store: PgStore) -> None:
        try:
            gate.wait(10)
            store.open()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=open_store, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in stores:
        s.close()
    assert errors == []
    every = load()
    with psycopg.connect(dsn) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        (lanes,) = conn.execute("SELECT count(*) FROM trade_lanes").fetchone() or (0,)
    assert versions == [m.version for m in every] and lanes == cfg.database.trade_lanes

    later = tmp_path / "later"
    shutil.copytree(MIGRATIONS, later)
    (later / "0099_r40_slow.sql").write_text(
        "CREATE TABLE r40_half (id int);\nSELECT pg_sleep(30);\nCREATE TABLE r40_rest (id int);\n"
    )
    failed: list[BaseException] = []
    with psycopg.connect(dsn, autocommit=True) as victim:
        pid = victim.info.backend_pid

        def run() -> None:
            try:
                migrate(victim, later)
            except BaseException as exc:  # the session's end, expected
                failed.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        with psycopg.connect(dsn, autocommit=True) as watch:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                row = watch.execute(
                    "SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
                if row is not None and row[0] == "PgSleep":
                    break
                time.sleep(0.02)
            watch.execute("SELECT pg_terminate_backend(%s)", (pid,))
        thread.join(10)
    assert len(failed) == 1 and isinstance(failed[0], psycopg.OperationalError)
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('r40_half')").fetchone() == (None,)
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (
            every[-1].version,
        )
        (later / "0099_r40_slow.sql").write_text("CREATE TABLE r40_half (id int);\n")
        assert migrate(conn, later) == ["0099_r40_slow.sql"]


def _bounds_cfg(tmp_path: Path) -> RingexConfig:
    """One symbol and two assets with ids at their config bound (the database's integer)."""
    top = 2**31 - 1
    cfg = make_cfg(tmp_path)
    return msgspec.structs.replace(
        cfg,
        assets=[
            AssetConfig(name="USD", id=top, decimals=6),
            AssetConfig(name="BTC", id=top - 1, decimals=8),
        ],
        symbols=[
            SymbolConfig(name="BTC-USD", id=top, price_decimals=2, qty_decimals=4, base="BTC")
        ],
        matchers=[MatcherConfig(name="m1", symbols=["BTC-USD"])],
        risk=msgspec.structs.replace(cfg.risk, fee_account=2**63 - 3),
    )


def test_checked_ids_prices_and_times_at_their_bounds_go_through_the_writer(
    tmp_path: Path, dsn: str
) -> None:
    """Checked, through the real router and the whole writer (lanes, candles, balances,
    partitions): accounts 2**63 - 1 and 2**63 - 2 and a fee account beside them, symbol and
    asset ids 2**31 - 1, a transfer key 2**63 - 1, a price of 4 * 10**18 ticks, a day's quote
    volume past 2**63 (numeric), balances near 2**63, and every command stamped in the last
    minutes a ``U64`` nanosecond clock can hold (2262-04-11, its own day partition)."""
    cfg = _bounds_cfg(tmp_path)
    usd, btc, sym = 2**31 - 1, 2**31 - 2, 2**31 - 1
    a, z = 2**63 - 1, 2**63 - 2
    b = JournalBuilder(cfg)
    b.clock = 2**63 - 1 - 700 * 10**9  # ~11 minutes before the clock's end
    fund(b, a, {usd: 6 * 10**18, btc: 2 * 10**17})
    fund(b, z, {usd: 3 * 10**18 - 1})
    assert b.submit(Transfer(0, 0, 1, 1, b._next(), z, btc, 2 * 10**17, 2**63 - 1))
    limit_order(b, z, sym, Side.SELL, 4 * 10**18, 1)
    limit_order(b, a, sym, Side.BUY, 4 * 10**18, 1)
    limit_order(b, a, sym, Side.SELL, 9 * 10**9, 590_000_000)
    limit_order(b, z, sym, Side.BUY, 9 * 10**9, 590_000_000)
    b.close()
    assert len(b.trades) == 2
    assert write_all(cfg, dsn, batch_rows=3) == b.last_seq
    reconcile(dsn, b)
    with psycopg.connect(dsn) as conn:
        day = conn.execute(
            "SELECT quote_volume, trades, to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD') "
            "FROM candles WHERE interval_s = 86400"
        ).fetchall()
        where = conn.execute("SELECT DISTINCT tableoid::regclass::text FROM trades").fetchall()
        (key,) = conn.execute("SELECT max(key) FROM transfers").fetchone() or (0,)
    assert day == [(4 * 10**18 + 9 * 10**9 * 590_000_000, 2, "2262-04-11")]
    assert day[0][0] > 2**63 and where == [("trades_22620411",)] and key == 2**63 - 1


def test_checked_a_mass_cancel_of_thousands_of_orders_is_written_as_one_batch(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: an account with 3,000 resting orders mass-cancelled by one command: the
    batch holds every order's final row (thirty times ``batch_rows``: a command is never
    split between batches) and its freed balances; every order mass-cancelled, nothing else."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15, 3: 10**15})
    orders = [limit_order(b, 10, 1 + i % 2, Side.SELL, 200_000 + i % 50, 1) for i in range(3000)]
    gw, session, ref, account = b._header(10, 0)[2:6]
    b.submit(MassCancel(0, 0, gw, session, ref, account, 0))
    b.close()
    sizes: list[int] = []
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=100, batch_ms=10**6))
    writer.store.before_commit.append(lambda _c, batch: sizes.append(len(batch.orders)))
    assert writer.run(to_end=True) == b.last_seq
    writer.close()
    assert sizes[-1] == 3000
    with psycopg.connect(dsn) as conn:
        query = "SELECT status, count(*) FROM orders GROUP BY 1"
        statuses: dict[int, int] = dict(conn.execute(query).fetchall())
    assert statuses == {MASS_CANCELLED: len(orders)}
    reconcile(dsn, b)


def test_checked_a_symbol_added_later_is_filed_after_a_restore(tmp_path: Path, dsn: str) -> None:
    """Checked: a symbol (with a new asset and a new matcher) added to the config after the
    writer's snapshot: the router restarts on the new config, trades it; the writer,
    restarted on it too, restores the snapshot (its matchers lack the new one, which starts
    empty), files the new symbol's reference row, its trades on its lane, its candles and
    the new asset's balances."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    fund(b, 11, {1: 10**15, 2: 10**15})
    limit_order(b, 10, 1, Side.SELL, 100_000, 5)
    limit_order(b, 11, 1, Side.BUY, 100_000, 5)
    options = WriterOptions(batch_rows=2, batch_ms=10**6, snapshot_every=1)
    writer = DbWriter(cfg, dsn, options)
    assert writer.run(to_end=True) == b.last_seq
    writer.close()
    snapped = snapshot_store(cfg).latest()
    assert snapped is not None and snapped[0] == b.last_seq
    grown = msgspec.structs.replace(
        cfg,
        assets=[*cfg.assets, AssetConfig(name="SOL", id=4, decimals=8)],
        symbols=[*cfg.symbols, SymbolConfig(name="SOL-USD", id=3, base="SOL", qty_decimals=4)],
        matchers=[*cfg.matchers, MatcherConfig(name="m2", symbols=["SOL-USD"])],
    )
    b.cfg = grown  # the router's restart on the new config: its state, restored
    b.sequencer = Sequencer.restore(grown, b.sequencer.snapshot())
    b.matchers = restore_matchers(grown, {n: m.snapshot() for n, m in b.matchers.items()})
    b.owner = {grown.symbol(s).id: m.name for m in grown.matchers for s in m.symbols}
    for account in (10, 11):
        assert b.submit(Transfer(0, 0, 1, 1, b._next(), account, 4, 10**15, b.ref))
    limit_order(b, 10, 3, Side.SELL, 2_000, 7)
    limit_order(b, 11, 3, Side.BUY, 2_000, 7)
    limit_order(b, 11, 1, Side.BUY, 100_000, 2)
    b.close()
    assert [t.symbol for t in b.trades] == [1, 3]
    restarted = DbWriter(grown, dsn, options)
    assert restarted.start().seq == snapped[0]
    assert restarted.run(to_end=True) == b.last_seq
    restarted.close()
    reconcile(dsn, b)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT name FROM symbols WHERE id = 3").fetchone() == ("SOL-USD",)
        candles = conn.execute(
            "SELECT interval_s, volume, trades FROM candles WHERE symbol_id = 3 ORDER BY 1"
        ).fetchall()
    assert candles == [(60, 7, 1), (3_600, 7, 1), (86_400, 7, 1)]
