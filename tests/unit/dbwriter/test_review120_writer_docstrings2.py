"""Review 120, continued (the first file has the convention and the disagreements found):
``copy.py``, ``committer.py``, ``replay.py``'s snapshots, ``store.py`` against the session's
PostgreSQL (``tests/unit/conftest.py``'s ``dsn``: a batch and its checkpoint, lanes, retries,
refusals, partitions ahead), ``writer.py`` over a recording store (contiguous batches, what
a restart replays and skips), ``migrate.py`` and ``main.py``."""

from __future__ import annotations

import datetime as dt
import inspect
import itertools
import random
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from config.schema import RingexConfig
from procs.common.journal import JournalError
from procs.common.record_codec import RecordCodec
from procs.common.records import Record, ReplaceOrder, Trade
from procs.core.recovery import journal_reader
from procs.dbwriter import copy as copy_module
from procs.dbwriter import migrate as migrate_module
from procs.dbwriter import replay as replay_module
from procs.dbwriter import store as store_module
from procs.dbwriter import writer as writer_module
from procs.dbwriter.committer import Committer
from procs.dbwriter.copy import (
    HEADER,
    PG_EPOCH_US,
    TRAILER,
    BinaryRows,
    GroupedRows,
    RowLayout,
    pg_micros,
)
from procs.dbwriter.main import options
from procs.dbwriter.migrate import MigrationError, migrate
from procs.dbwriter.projection import (
    TRADES,
    Batch,
    Projection,
    to_datetime,
)
from procs.dbwriter.replay import Follower, snapshot_store
from procs.dbwriter.store import (
    CheckpointMismatchError,
    OtherHistoryError,
    PgStore,
    connect,
)
from procs.dbwriter.writer import Backoff, DbWriter, StoppedWaitingError, WriterOptions
from tests.unit.dbwriter.journal_gen import JournalBuilder, make_cfg
from tests.unit.dbwriter.test_review26_dbwriter import _every_kind
from tests.unit.dbwriter.test_review120_writer_docstrings import (
    BUY,
    PRICE,
    SELL,
    Rig,
    _db,
    inspect_source,
    says,
    trades_of,
)

COPY_DOC = copy_module.__doc__
REPLAY_DOC = replay_module.__doc__
STORE_DOC = store_module.__doc__
WRITER_DOC = writer_module.__doc__
MIGRATE_DOC = migrate_module.__doc__


# -- copy.py ----------------------------------------------------------------------------------


def test_the_copy_header_is_19_bytes_and_the_trailer_minus_one() -> None:
    """ "the 19-byte signature and header, then ... an i16 -1 trailer"."""
    says(COPY_DOC, "the 19-byte signature and header")
    says(COPY_DOC, "then an i16 -1 trailer")
    assert len(HEADER) == 19 and HEADER.startswith(b"PGCOPY\n\xff\r\n\x00")
    assert HEADER[11:] == bytes(8) and TRAILER == b"\xff\xff"


def test_a_row_is_field_count_then_length_and_value_per_field() -> None:
    """ "per row a big-endian i16 field count and per field an i32 length and the value
    (int2/int4/int8 big-endian; timestamptz is int8 microseconds since 2000-01-01 UTC; text
    its bytes, here ASCII)"; ``RowLayout``: "the last one maybe ``text`` (its value ``bytes``:
    the layout's rows are then of varying width, ``fixed`` False)"."""
    says(COPY_DOC, "per row a big-endian i16 field count and per field an i32 length")
    says(RowLayout.__doc__, "the layout's rows are then of varying width, ``fixed`` False")
    layout = RowLayout(
        "t", [("a", "int2"), ("b", "int4"), ("c", "int8"), ("d", "timestamptz"), ("e", "text")]
    )
    row = layout.pack((-2, 70_000, -(2**40), 123, b"xy"))
    assert row == (
        struct.pack(">h", 5) + struct.pack(">ih", 2, -2) + struct.pack(">ii", 4, 70_000)
        + struct.pack(">iq", 8, -(2**40)) + struct.pack(">iq", 8, 123)
        + struct.pack(">i", 2) + b"xy"
    )  # fmt: skip
    assert not layout.fixed and TRADES.fixed
    rows = BinaryRows(layout)
    rows.add((1, 2, 3, 4, b""))
    assert rows.payload() == HEADER + layout.pack((1, 2, 3, 4, b"")) + TRAILER


def test_pg_micros_counts_from_2000_truncated() -> None:
    """``PG_EPOCH_US``: "Microseconds from 1970-01-01 to 2000-01-01, the PostgreSQL epoch";
    ``pg_micros``: "microseconds since 2000-01-01 UTC (truncated)"."""
    says(pg_micros.__doc__, "microseconds since 2000-01-01 UTC (truncated)")
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert epoch // dt.timedelta(microseconds=1) == PG_EPOCH_US
    assert pg_micros(PG_EPOCH_US * 1000 + 1_999) == 1
    assert to_datetime(PG_EPOCH_US * 1000 + 1_999) == dt.datetime(
        2000, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC
    )


def test_grouped_rows_cut_for_keys_after_a_seq() -> None:
    """``GroupedRows.payload``: "A complete COPY stream of the rows of ``keys`` made after
    ``after_seq``, and how many rows it holds"."""
    says(GroupedRows.payload.__doc__, "A complete COPY stream of the rows of ``keys`` made after")
    rows = GroupedRows(RowLayout("t", [("k", "int4"), ("s", "int8")]))
    for key, seq in ((1, 3), (2, 3), (1, 5), (1, 5), (2, 8), (1, 9)):
        rows.add(key, seq, (key, seq))
    payload, count = rows.payload([1], 4)
    assert count == 3
    assert payload == HEADER + b"".join(rows.layout.pack((1, s)) for s in (5, 5, 9)) + TRAILER
    assert rows.payload([1, 2], 0)[1] == 6 and rows.payload([2, 7], 8) == (HEADER + TRAILER, 0)


# -- committer.py -----------------------------------------------------------------------------


def _batch(first: int, last: int) -> Batch:
    b = Batch(first_seq=first)
    b.last_seq = last
    return b


def test_close_finishes_the_batch_in_flight_and_drops_the_waiting_one() -> None:
    """``Committer.close``: "Stop the thread (after the batch in flight); what still waits is
    not written"."""
    says(Committer.close.__doc__, "what still waits is not written")
    started, release = threading.Event(), threading.Event()
    written: list[int] = []

    def write(b: Batch) -> None:
        started.set()
        release.wait(5)
        written.append(b.last_seq)

    c = Committer(write)
    c.submit(_batch(1, 1))
    assert started.wait(5)
    c.submit(_batch(2, 2))
    closer = threading.Thread(target=c.close)
    closer.start()
    closer.join(0.05)
    assert closer.is_alive()  # waits for the one in flight
    release.set()
    closer.join(5)
    assert written == [1]


# -- replay.py --------------------------------------------------------------------------------


def test_step_returns_the_events_the_live_exchange_made(tmp_path: Path) -> None:
    """ "``Follower.step(seq, command)`` re-applies one journaled command to a ``Sequencer``
    ..., executes it on the matcher cores that own it, and settles every event ...; it
    returns the events": the replay's trades and balances are the live run's."""
    says(REPLAY_DOC, "it returns the events")
    cfg = make_cfg(tmp_path)
    live = JournalBuilder(cfg, seed=3)
    live.setup()
    _every_kind(live, 300, random.Random(3))
    live.close()
    codec, f = RecordCodec(), Follower(cfg)
    trades: list[Record] = []
    for seq, image in journal_reader(cfg, codec).entries(1):
        trades += [e for e in f.step(seq, codec.decode_slot(image)) if isinstance(e, Trade)]
    assert trades == live.trades and len(trades) > 20
    assert f.sequencer.accounts.state() == live.sequencer.accounts.state()


@pytest.fixture
def snapshots(tmp_path: Path) -> Iterator[tuple[RingexConfig, dict[int, int]]]:
    """A journal of 30 commands, the writer's snapshots at seqs 10 and 20 (with their
    entries' CRCs), and those CRCs."""
    cfg = make_cfg(tmp_path)
    live = JournalBuilder(cfg)
    live.setup()
    live.random_commands(20)
    live.close()
    codec, f = RecordCodec(), Follower(cfg)
    crcs: dict[int, int] = {}
    for seq, image in journal_reader(cfg, codec).entries(1):
        f.step(seq, codec.decode_slot(image))
        crcs[seq] = zlib.crc32(image)
        if seq in (10, 20):
            f.save_snapshot(crcs[seq])
    yield cfg, crcs
    shutil.rmtree(tmp_path / "dbw", ignore_errors=True)


def test_restore_takes_the_newest_snapshot_at_or_below_the_checkpoint(
    snapshots: tuple[RingexConfig, dict[int, int]],
) -> None:
    """``Follower.restore``: "From the newest snapshot at or below ``upto`` (the checkpoint)
    whose journal entry ``entry_crcs`` ... still finds, else fresh"; the projection is given
    the restored accounts (``Projection.accounts``: "a restore sets the restored ones")."""
    says(Follower.restore.__doc__, "From the newest snapshot at or below ``upto`` (the checkpoint)")
    says(inspect_source(Projection.__init__), "a restore sets the restored ones")
    cfg, crcs = snapshots
    found = Follower.restore(cfg, 25, lambda seq: {crcs[seq]})
    assert found.seq == 20
    assert found.projection.accounts is found.sequencer.accounts
    assert Follower.restore(cfg, 19, lambda seq: {crcs[seq]}).seq == 10
    assert Follower.restore(cfg, 9, lambda seq: {crcs[seq]}).seq == 0


def test_a_snapshot_whose_entry_the_journal_lost_is_passed_over(
    snapshots: tuple[RingexConfig, dict[int, int]],
) -> None:
    """ "one whose entry the journal no longer holds is passed over"; ``_entry_is``: "one
    that cannot be read (archived, and the archive gone) cannot be checked, and is trusted";
    ``WriterSnapshot.crc``: "0: a snapshot made before it" (not checked)."""
    says(REPLAY_DOC, "one whose entry the journal no longer holds is passed over")
    says(replay_module._entry_is.__doc__, "cannot be checked, and is trusted as before")
    cfg, crcs = snapshots
    lost_20 = Follower.restore(cfg, 25, lambda seq: set() if seq == 20 else {crcs[seq]})
    assert lost_20.seq == 10

    def unreadable(seq: int) -> set[int]:
        raise JournalError("archived, and the archive gone")

    assert Follower.restore(cfg, 25, unreadable).seq == 20
    data = snapshot_store(cfg).latest()
    assert data is not None
    snap = msgspec.msgpack.decode(data[1], type=replay_module.WriterSnapshot)
    snapshot_store(cfg).save(20, msgspec.msgpack.encode(msgspec.structs.replace(snap, crc=0)))
    assert Follower.restore(cfg, 25, lambda seq: set()).seq == 20


def test_a_snapshot_above_the_checkpoint_gives_way_to_the_older_one(
    snapshots: tuple[RingexConfig, dict[int, int]],
) -> None:
    """ "(a snapshot above the checkpoint ... is not used: the follower starts from the newest
    one at or below it, of the two kept, else from the beginning of the journal)" (review
    120: it said from the beginning): a checkpoint of 15 under the snapshot at 20 starts the
    follower at the one at 10."""
    says(REPLAY_DOC, "the follower starts from the newest one at or below it, of the two kept")
    cfg, crcs = snapshots
    assert Follower.restore(cfg, 15, lambda seq: {crcs[seq]}).seq == 10


# -- store.py against PostgreSQL --------------------------------------------------------------


def _traded(tmp_path: Path) -> tuple[Rig, Batch]:
    """A rig with a sealed first batch: accounts, transfers, a trade on each symbol."""
    rig = Rig(tmp_path)
    rig.fund(10, 11)
    for symbol in (1, 2):
        rig.new(10, SELL, PRICE, 5, symbol=symbol)
        rig.new(11, BUY, PRICE, 2, symbol=symbol)
    return rig, rig.cut()


def _one(dsn: str, query: str) -> Any:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchone()[0]  # type: ignore[index]


def test_a_batch_commits_with_its_checkpoint_once_and_refuses_another_start(
    tmp_path: Path, dsn: str
) -> None:
    """``store.py`` step 1: "when it already equals ``batch.last_seq`` the batch was committed
    before ... and nothing is written; anything else raises ``CheckpointMismatchError``";
    ``write``: "False when it was committed already"; ``OtherHistoryError``: "Not ``behind``".
    Timestamps and balances land as ``copy.py`` and 0001 say (UTC us, exact asset units)."""
    says(STORE_DOC, "when it already equals ``batch.last_seq`` the batch was committed before")
    says(PgStore.write.__doc__, "False when it was committed already")
    says(OtherHistoryError.__doc__, "Not ``behind``: the writer stops")
    rig, batch = _traded(tmp_path)
    batch.last_crc = 7
    store = PgStore(dsn, rig.cfg)
    try:
        assert store.write(batch) is True
        assert store.write(batch) is False
        assert store.checkpoint_entry() == (batch.last_seq, 7)
        assert _one(dsn, "SELECT count(*) FROM trades") == 2
        ts = trades_of(batch)[0][3]
        got = _one(dsn, "SELECT ts FROM trades ORDER BY symbol_id LIMIT 1")
        assert got == dt.datetime(2000, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ts)
        free = _one(dsn, "SELECT free FROM balances WHERE account_id = 11 AND asset_id = 2")
        assert free == next(b[2] for b in batch.balances if b[:2] == (11, 2))
        rig.new(10, SELL, PRICE, 1)
        second = rig.cut()
        second.prev_crc = 8
        with pytest.raises(OtherHistoryError) as other:
            store.write(second)
        assert other.value.behind is False
        second.prev_crc, second.first_seq = 7, second.first_seq + 1
        with pytest.raises(CheckpointMismatchError) as behind:
            store.write(second)
        assert behind.value.behind is True and behind.value.at == batch.last_seq
        assert store.checkpoint() == batch.last_seq
    finally:
        store.close()


def test_a_batchs_trades_commit_in_their_lanes_first(tmp_path: Path, dsn: str) -> None:
    """``Batch``: "the trades in each lane's transaction, committed first, the rest with the
    checkpoint in one more" (review 120: it said one transaction): another session sees the
    batch's trades while the checkpoint is still 0."""
    says(Batch.__doc__, "the trades in each lane's transaction, committed first, the rest with")
    rig, batch = _traded(tmp_path)
    seen: list[tuple[int, int]] = []
    store = PgStore(dsn, rig.cfg)
    store.before_commit.append(
        lambda conn, b: seen.append(
            (_one(dsn, "SELECT count(*) FROM trades"), _one(dsn, "SELECT last_seq FROM checkpoint"))
        )
    )
    try:
        store.write(batch)
    finally:
        store.close()
    assert seen == [(2, 0)]


def test_lanes_take_symbols_by_modulo_and_a_retry_after_their_commit_writes_each_once(
    tmp_path: Path, dsn: str
) -> None:
    """ "lane k takes the symbols whose id modulo the lane count is k"; "a crash between a
    lane's commit and the batch's leaves the lane ahead: a retry of the batch sends it only
    the trades after it"; ``rewind_lanes``: "Returns the lanes rewound: none where the
    checkpoint is no longer ``checkpoint``", else its trades past it deleted."""
    says(STORE_DOC, "lane k takes the symbols whose id modulo the lane count is k")
    says(STORE_DOC, "a retry of the batch sends it only the trades after it")
    says(PgStore.rewind_lanes.__doc__, "none where the checkpoint is no longer ``checkpoint``")
    rig, batch = _traded(tmp_path)
    store = PgStore(dsn, rig.cfg)
    crash = [True]

    def die(conn: Any, b: Batch) -> None:
        if crash[0]:
            raise RuntimeError("crash before the batch's commit")

    store.before_commit.append(die)
    try:
        with pytest.raises(RuntimeError):
            store.write(batch)
        lanes = "SELECT array_agg(last_seq ORDER BY lane) FROM trade_lanes"
        assert _one(dsn, lanes) == [batch.last_seq] * 2 and store.checkpoint() == 0
        crash[0] = False
        assert store.write(batch) is True
        assert _one(dsn, "SELECT count(*) FROM trades") == 2
        rig.new(11, BUY, PRICE, 1)  # symbol 1 only: lane 1
        second = rig.cut()
        crash[0] = True
        with pytest.raises(RuntimeError):
            store.write(second)
        assert _one(dsn, lanes) == [batch.last_seq, second.last_seq]
        first_id = trades_of(second)[0][1]
        assert store.rewind_lanes(batch.last_seq - 1, {1: first_id}) == []
        assert store.rewind_lanes(batch.last_seq, {1: first_id, 2: 99}) == [1]
        assert _one(dsn, lanes) == [batch.last_seq] * 2
        assert _one(dsn, "SELECT count(*) FROM trades") == 2
    finally:
        store.close()


def test_partitions_ahead_are_made_once_and_a_reader_defers_them_a_minute(
    tmp_path: Path, dsn: str
) -> None:
    """ "the days the batch touches (waited for: its rows go there) and ``days_ahead`` days
    after today (under a short ``lock_timeout``; a refusal, a reader of ``trades`` holding
    the lock off, is tried again a minute later), each day once per connection"."""
    says(STORE_DOC, "is tried again a minute later), each day once per connection")
    assert (store_module.AHEAD_LOCK_TIMEOUT_MS, store_module.AHEAD_RETRY_S) == (100, 60)
    rig, batch = _traded(tmp_path)
    store = PgStore(dsn, rig.cfg)
    made: list[tuple[int, int]] = []
    real = PgStore._partitions

    def spy(conn: Any, lo: int, hi: int) -> None:
        made.append((lo, hi))
        real(conn, lo, hi)

    store._partitions = spy  # type: ignore[method-assign]
    today = dt.datetime.now(dt.UTC).date()
    name = "to_regclass('trades_' || to_char(%s::date, 'YYYYMMDD')) IS NOT NULL"
    try:
        store.write(batch)
        with psycopg.connect(dsn) as conn:
            for k in range(4):
                assert conn.execute(
                    f"SELECT {name}", (today + dt.timedelta(days=k),)
                ).fetchone() == (True,)
        assert len(made) == 2  # the batch's day, then today + 0..3
        store.ensure_partitions(batch.ts_min_us, batch.ts_max_us)
        assert len(made) == 2
        store.days_ahead = 5
        with psycopg.connect(dsn) as reader:
            reader.execute("SELECT 1 FROM trades LIMIT 0")  # a transaction holds its lock
            started = time.monotonic()
            store.ensure_partitions(batch.ts_min_us, batch.ts_max_us)
            assert time.monotonic() - started < 2
            assert store._ahead_after - time.monotonic() > 55
            reader.rollback()
        later = (today + dt.timedelta(days=5),)
        with psycopg.connect(dsn) as conn:
            assert conn.execute(f"SELECT {name}", later).fetchone() == (False,)
        calls = len(made)
        store.ensure_partitions(batch.ts_min_us, batch.ts_max_us)
        assert len(made) == calls  # not tried again before the minute is out
    finally:
        store.close()


def test_the_writers_session_commits_asynchronously_under_its_name(dsn: str) -> None:
    """``connect``: "``synchronous_commit = off``"; "The writer's sessions' application_name"."""
    says(connect.__doc__, "``synchronous_commit = off``: a commit returns before its WAL is")
    says(inspect.getsource(store_module), "The writer's sessions' application_name")
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT current_setting('synchronous_commit'), current_setting('application_name')"
        ).fetchone()
    assert row == ("off", "ringex-dbwriter")


# -- migrate.py -------------------------------------------------------------------------------


def test_migrations_run_in_one_transaction_each_in_a_savepoint(tmp_path: Path, dsn: str) -> None:
    """ "all run in one transaction, each file in a savepoint of its own with its record ...,
    so a file that fails undoes the files before it too" (review 120: it said each in its own
    transaction): after 0002 fails, 0001's table is gone too."""
    says(MIGRATE_DOC, "so a file that fails undoes the files before it too")
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "0002_b.sql").write_text("SELECT 1 / 0;")
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(MigrationError, match=r"0002_b\.sql failed: division by zero") as e:
            migrate(conn, tmp_path)
        assert isinstance(e.value.__cause__, psycopg.errors.DivisionByZero)
        assert conn.execute("SELECT to_regclass('a')").fetchone() == (None,)


def test_migrations_apply_once_and_a_changed_one_is_an_error(tmp_path: Path, dsn: str) -> None:
    """``migrate``: "return the names applied (in order)"; "A recorded file whose text
    changed since is an error ..., never silently re-run or skipped"."""
    says(MIGRATE_DOC, "A recorded file whose text changed since is an error")
    (tmp_path / "0002_b.sql").write_text("CREATE TABLE b (x int);")
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x int);")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert migrate(conn, tmp_path) == ["0001_a.sql", "0002_b.sql"]
        assert migrate(conn, tmp_path) == []
        (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x bigint);")
        with pytest.raises(MigrationError, match=r"0001_a\.sql changed since it was applied"):
            migrate(conn, tmp_path)


# -- writer.py over a recording store ---------------------------------------------------------


class Recording:
    """What ``DbWriter`` asks of its ``PgStore``, the checkpoint checks as ``write`` makes
    them, every batch kept."""

    def __init__(self, at: int = 0) -> None:
        self.at, self.batches, self.rewinds = at, list[Batch](), list[Any]()
        self.checkpoint_entry = lambda: (self.at, None)
        self.checkpoint = lambda: self.at

    def rewind_lanes(self, checkpoint: int, next_trade_ids: dict[int, int]) -> list[int]:
        self.rewinds.append((checkpoint, dict(next_trade_ids)))
        return []

    def write(self, batch: Batch) -> bool:
        if self.at == batch.last_seq:
            return False
        if self.at != batch.first_seq - 1:
            raise CheckpointMismatchError(self.at, batch)
        self.batches.append(batch)
        self.at = batch.last_seq
        return True

    def close(self) -> None: ...


def _run(cfg: RingexConfig, at: int, rows: int = 40) -> Recording:
    writer = DbWriter(cfg, "", WriterOptions(batch_rows=rows, batch_ms=10**6, snapshot_s=0))
    writer.store = store = Recording(at)  # type: ignore[assignment]
    assert writer.run(to_end=True) == store.at
    return store


def test_batches_are_contiguous_and_a_restart_writes_only_what_follows(tmp_path: Path) -> None:
    """Writer: "A batch closes when it holds ``batch_rows`` rows"; "it covers a contiguous
    range of seqs, including commands that made no rows, so the checkpoint moves over them
    too"; a restart: "replay up to the checkpoint without writing, rewind a trade lane left
    ahead of it ..., then write every command after it": its rows are the first run's of the
    commands after the checkpoint; ``rewind_lanes`` gets each symbol's next trade id."""
    says(WRITER_DOC, "including commands that made no rows, so the checkpoint moves over them")
    says(WRITER_DOC, "replay up to the checkpoint without writing, rewind a trade lane left")
    cfg = make_cfg(tmp_path)
    live = JournalBuilder(cfg, seed=120)
    live.setup()
    live.random_commands(400)
    live.submit(ReplaceOrder(0, 0, 1, 1, 99_999, 10, 1, 10**9, PRICE, 5))  # no rows
    live.close()
    whole = _run(cfg, 0)
    seqs = [(b.first_seq, b.last_seq) for b in whole.batches]
    assert seqs[0][0] == 1 and seqs[-1][1] == live.last_seq == whole.at
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(seqs))
    assert all(b.rows() >= 40 for b in whole.batches[:-1])
    at = 211
    again = _run(cfg, at, rows=17)
    assert again.batches[0].first_seq == at + 1 and again.at == live.last_seq
    after = [t for t in live.trades if t.seq > at]
    assert again.rewinds == [
        (
            at,
            {
                1: min(t.trade_id for t in after if t.symbol == 1),
                2: min(t.trade_id for t in after if t.symbol == 2),
            },
        )
    ]
    first, restarted = _db(whole.batches), _db(again.batches)
    assert restarted["trades"] == {k: v for k, v in first["trades"].items() if v[2] > at}
    assert restarted["orders"] == {k: v for k, v in first["orders"].items() if v[15] > at}
    assert restarted["bal"] == {k: v for k, v in first["bal"].items() if v[4] > at}


def test_a_stop_while_postgresql_is_down_ends_a_run_to_the_end(tmp_path: Path) -> None:
    """``run``: "``to_end`` (a one-shot run): a stop while PostgreSQL is unavailable raises
    ``StoppedWaitingError``, since the database did not reach the end"."""
    says(DbWriter.run.__doc__, "a stop while PostgreSQL is unavailable raises")
    cfg = make_cfg(tmp_path)
    live = JournalBuilder(cfg)
    live.setup()
    live.close()
    writer = DbWriter(cfg, "", WriterOptions(batch_ms=10**6, backoff=Backoff(0.001, 0.002)))
    store = Recording(0)

    def down(batch: Batch) -> bool:
        writer.request_stop()
        raise psycopg.OperationalError("server closed the connection")

    store.write = down  # type: ignore[method-assign]
    writer.store = store  # type: ignore[assignment]
    with pytest.raises(StoppedWaitingError, match="stopped while PostgreSQL was unavailable"):
        writer.run(to_end=True)


def test_backoff_doubles_from_initial_to_max_and_options_follow_the_config(
    tmp_path: Path,
) -> None:
    """``Backoff``: "Delays between retries: ``initial_s``, doubling, at most ``max_s``";
    ``check_s`` "(2 s)"; ``main.options``: ``[database]``'s, ``retry_max_s`` the backoff's."""
    says(Backoff.__doc__, "Delays between retries: ``initial_s``, doubling, at most ``max_s``")
    says(WRITER_DOC, "where the writer reads the checkpoint every ``check_s`` (2 s;")
    delay = Backoff(0.05, 0.3).delays()
    assert [delay() for _ in range(5)] == pytest.approx([0.05, 0.1, 0.2, 0.3, 0.3])
    assert (WriterOptions().check_s, WriterOptions().report_s) == (2.0, 5.0)
    cfg = make_cfg(tmp_path)
    opts = options(cfg)
    db = cfg.database
    assert (opts.batch_rows, opts.batch_ms, opts.snapshot_every, opts.snapshot_s) == (
        db.batch_rows, db.batch_ms, db.snapshot_every, db.snapshot_s,
    )  # fmt: skip
    assert opts.backoff.max_s == db.retry_max_s


def test_0001s_mended_comments_keep_its_old_checksum_accepted() -> None:
    """``EARLIER_TEXTS``: "0001: two column comments said what the writer does not (review
    120); the SQL is the same": a database that recorded 0001's text before is accepted, and
    the text on disk differs from that one in comments only (the old one's hash is a pin)."""
    says(inspect.getsource(migrate_module), "0001: two column comments said what the writer")
    old = "2466ee3a9075fc4d0c23b06773da17f03d0532eb2e42b3d61c8e68267e917f0b"
    assert old in migrate_module.EARLIER_TEXTS["0001_core.sql"]
    (m,) = [m for m in migrate_module.load() if m.name == "0001_core.sql"]
    assert m.checksum != old and "-- ticks, as sent (0: none;" in m.sql
