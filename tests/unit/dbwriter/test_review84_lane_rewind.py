"""Review 84: a hostile review of dad879c, the writer's start rewinding a trade lane ahead.

dad879c has ``DbWriter.start`` (``writer.py``) call ``PgStore.rewind_lanes`` (``store.py``):
each lane whose ``trade_lanes`` row is past the checkpoint has its symbols' trades from the
replay state's ``book.next_trade_id`` on deleted and its row moved back, so the next batch
files them again from the journal, whatever became of its tail.

Reviewed: ``store.py`` (``write``, ``_write_lane``, ``rewind_lanes``, ``_lay_out``, the
orphan handling), ``writer.py`` (``start``, ``_retry``, ``_run_again``, the idle check),
``replay.py``, ``projection.py``, the migrations (the trades' key and indexes, the day
partitions), the matchers' trade ids (``book.py``, ``fast_book.py``: gapless per symbol,
only books make them), ``ringex replay --to-db`` (``dbwriter/main.py``), the REST history
(``gateway/history.py``, ``rest_history.py``) and README's database section.

Checked and found sound (the ``test_checked_`` tests pin some): every row a lane writes is a
trade of one of its symbols made after its row's seq, and the replay at the checkpoint gives
each configured symbol's next trade id (a book per configured symbol, fresh or restored;
trade ids come only from the books, gapless), so ``trade_id >= next`` covers them, in the
same history or a lost one (the checkpoint's CRC check vouches for the prefix); the modulo
is the table's lane count, the layout the crashed writer used (a different configured count
is laid out only after the rewind); a checkpoint of 0 deletes from trade id 1; the lanes
write no other table (candles, balances, orders commit with the checkpoint); the DELETE
finds its rows through each partition's primary key; a connection lost inside the rewind
leaves nothing behind (rolled back, or its orphan ended by the next open) and the retry
finishes it; the rewind and a batch of a live writer are serialised by the checkpoint row's
lock, so a second writer either waits for the first's batch and then sees the checkpoint
moved, or rewinds a lane whose batch was rolled back, which the first's retry then writes
again; ``start`` runs again only after a checkpoint found behind (``_run_again``), where a
lane ahead of the lower checkpoint is rewound rightly; readers see the rewind whole (one
transaction) and never trades of a batch the checkpoint does not hold once it is done.

Faults, each pinned by a test that failed on dad879c; it passes since its fix (the same
session: ``rewind_lanes`` leaves a checkpoint that moved to the first batch's check):

1. ``store.py:503-507`` (``rewind_lanes``), called from ``writer.py:186`` (``start``): a
   checkpoint that went *back* between the start's read and its rewind (a backup restored,
   a failover to a replica that lags, a crash under ``synchronous_commit = off`` while the
   start replays the journal, which may take minutes) raises ``RuntimeError`` "another
   writer is filing this database", which nothing catches: the writer crashes and ``ringex
   replay --to-db`` fails, with a false diagnosis. Every other path takes a checkpoint found
   behind for commits the database lost and restarts from it (``CheckpointMismatchError``
   with ``behind``, ``_run_again``), as the writer did here before dad879c (its first batch
   found the checkpoint behind).

Noted, not of this commit (untested here): a second writer configured for another lane
count lays ``trade_lanes`` out anew under a live writer whose ``layout`` is then stale
(``open``/``_lay_out``), and a crash of the live one leaves lanes ahead under a modulo the
rewind does not use; an orphaned *lane* session (it locks ``trade_lanes``, not the
checkpoint) is not ended by ``_end_stale_holders``, so ``_lay_out`` waits on it in a loop.
The start logs "trade lanes stay N" and then lays the new count out at once; the
``writer.py`` docstring said the start replays "without writing" (it names the rewind now).
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from config.schema import RingexConfig
from procs.common.topology import journal_dir
from procs.dbwriter.projection import Batch
from procs.dbwriter.writer import Backoff, DbWriter, WriterOptions
from tests.unit.dbwriter.journal_gen import JournalBuilder, build, make_cfg, write_all
from tests.unit.dbwriter.reconcile import reconcile

_QUICK = Backoff(0.01, 0.1)
_ONE_BATCH = WriterOptions(batch_rows=10**6, batch_ms=10**6, backoff=_QUICK)


class CrashError(Exception):
    """The writer dies here (raised inside the batch's transaction: rolled back)."""


def _with_lanes(cfg: RingexConfig, lanes: int) -> RingexConfig:
    return msgspec.structs.replace(
        cfg, database=msgspec.structs.replace(cfg.database, trade_lanes=lanes)
    )


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


def _crash_with_lanes_ahead(cfg: RingexConfig, dsn: str) -> None:
    """A writer over the whole journal, as one batch: its lanes commit, then it dies before
    the batch's commit."""
    writer = DbWriter(cfg, dsn, _ONE_BATCH)

    def crash(_conn: psycopg.Connection[Any], _batch: Batch) -> None:
        raise CrashError

    writer.store.before_commit.append(crash)
    with pytest.raises(CrashError):
        writer.run(to_end=True)
    writer.close()


def _lose_the_tail(cfg: RingexConfig, commands: int, seed: int) -> JournalBuilder:
    """The journal cut back to its first ``commands`` random commands (as ``build`` with
    ``seed`` made them), then other commands (400 of ``seed + 1``) at the lost seqs."""
    shutil.rmtree(journal_dir(cfg))
    live = build(cfg, commands, seed=seed)
    live.rng = random.Random(seed + 1)
    live.random_commands(400)
    live.close()
    return live


def _filed_is_made(dsn: str, live: JournalBuilder) -> None:
    with psycopg.connect(dsn) as conn:
        filed = {tuple(r) for r in conn.execute("SELECT symbol_id, trade_id, seq FROM trades")}
    made = {(t.symbol, t.trade_id, t.seq) for t in live.trades}
    assert filed == made, (
        f"{len(filed - made)} trades filed that the journal does not hold, "
        f"{len(made - filed)} of the journal's missing"
    )


# -- faults -------------------------------------------------------------------------------------


def test_a_checkpoint_gone_back_during_the_start_restarts_the_writer(
    tmp_path: Path, dsn: str
) -> None:
    """Fault (``store.py:503-507``, ``PgStore.rewind_lanes``; ``writer.py:186``,
    ``DbWriter.start``). The rewind locks the checkpoint and refuses with a ``RuntimeError``
    ("the database checkpoint moved from seq X to Y while this writer started: another
    writer is filing this database") whenever it is not the seq ``start`` read, lower as well
    as higher. A checkpoint lower than the one read is a database that lost commits: a
    backup restored, a failover to a replica that lags, a server crash under the writer's
    ``synchronous_commit = off``; the start's replay (the whole journal after a snapshot:
    minutes) is a wide window for it. Every other path (``PgStore.write``'s
    ``CheckpointMismatchError`` with ``behind``, the idle look's ``CheckpointBehindError``)
    restarts the writer from the lower checkpoint (``_run_again``), and before dad879c this
    one did too (the first batch found it behind). Now nothing catches the ``RuntimeError``:
    the writer crashes, ``ringex replay --to-db`` fails, and both say another writer is at
    work, which is false.

    Sequence: the database at seq c1, a copy of it kept (the backup), then written on to c2;
    a writer starts, reads c2, and while it replays the backup is restored (the database
    swapped for its copy at c1). Expected: the writer restarts from c1 and files the journal
    to its end (every row reconciles). Happens: ``RuntimeError`` from ``rewind_lanes``."""
    cfg = make_cfg(tmp_path)
    live = build(cfg, 300)
    c1 = write_all(cfg, dsn)
    name, admin = _admin(dsn)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}_bak TEMPLATE {name}")
    live.random_commands(200)
    c2 = write_all(cfg, dsn)
    live.random_commands(200)
    live.close()
    assert c1 < c2 < live.last_seq
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=150, batch_ms=10**6, backoff=_QUICK))
    read = writer.store.checkpoint_entry

    def then_restored() -> tuple[int, int | None]:
        entry = read()
        writer.store.close()  # the restore ends every session on the database
        with psycopg.connect(admin, autocommit=True) as conn:
            for _ in range(100):
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
                try:
                    conn.execute(f"ALTER DATABASE {name} RENAME TO {name}_old")
                    break
                except psycopg.errors.ObjectInUse:
                    time.sleep(0.05)
            conn.execute(f"ALTER DATABASE {name}_bak RENAME TO {name}")
            conn.execute(f"DROP DATABASE {name}_old")
        writer.store.checkpoint_entry = read  # type: ignore[method-assign]
        return entry

    writer.store.checkpoint_entry = then_restored  # type: ignore[method-assign]
    try:
        assert writer.run(to_end=True) == live.last_seq
    finally:
        writer.close()
    reconcile(dsn, live)


# -- checked ------------------------------------------------------------------------------------


def test_checked_a_lane_ahead_of_checkpoint_0_over_a_lost_tail_is_rewound(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: the first batch ever (checkpoint 0, no CRC kept) crashes after both lanes
    committed; the journal then loses everything after its setup and goes on otherwise. The
    replay at seq 0 is fresh (every next trade id 1): the rewind deletes every trade, the
    next batches file the new history's, and the database reconciles with it."""
    cfg = make_cfg(tmp_path)
    lost = build(cfg, 300, seed=11)
    lost.close()
    _crash_with_lanes_ahead(cfg, dsn)
    at, lanes = _state(dsn)
    assert at == 0 and min(lanes.values()) == lost.last_seq
    live = _lose_the_tail(cfg, 0, seed=21)
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=150, batch_ms=10**6, backoff=_QUICK))
    try:
        assert writer.run(to_end=True) == live.last_seq
    finally:
        writer.close()
    _filed_is_made(dsn, live)
    reconcile(dsn, live)


@pytest.mark.parametrize(("crashed", "restarted"), [(3, 2), (1, 2), (2, 1)])
def test_checked_a_lane_count_changed_after_the_crash_rewinds_the_layout_written(
    tmp_path: Path, dsn: str, crashed: int, restarted: int
) -> None:
    """Checked: the lanes ahead were written under one lane count (``crashed``), the writer
    restarts configured for another over a journal that lost that tail. The rewind takes the
    symbols by the count ``trade_lanes`` is laid out for (the crashed writer's), not the
    configured one, so no lost trade stays (a new trade of the same id is another row: the
    key holds ``ts``, so a missed one would stay silently beside it); the new count is laid
    out after the rewind."""
    cfg = make_cfg(tmp_path)
    lost = build(cfg, 300, seed=5)
    kept = write_all(_with_lanes(cfg, crashed), dsn)
    lost.random_commands(200)
    lost.close()
    _crash_with_lanes_ahead(_with_lanes(cfg, crashed), dsn)
    at, lanes = _state(dsn)
    assert at == kept and len(lanes) == crashed and max(lanes.values()) == lost.last_seq
    live = _lose_the_tail(cfg, 300, seed=5)
    assert live.last_seq > lost.last_seq
    writer = DbWriter(_with_lanes(cfg, restarted), dsn, WriterOptions(batch_rows=150))
    try:
        assert writer.run(to_end=True) == live.last_seq
        assert writer.store.layout == restarted
    finally:
        writer.close()
    _filed_is_made(dsn, live)
    reconcile(dsn, live)


def test_checked_the_rewinds_delete_finds_its_rows_by_each_partitions_key(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: ``DELETE FROM trades WHERE symbol_id = %s AND trade_id >= %s`` has no bound
    on ``ts``, so it visits every day partition, but through each one's primary key
    (``symbol_id, trade_id, ts``): an index probe a partition, never a scan of one."""
    cfg = make_cfg(tmp_path)
    build(cfg, 600).close()
    write_all(cfg, dsn)
    with psycopg.connect(dsn) as conn:
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'trades'::regclass"
        ).fetchone()
        assert parts is not None and parts[0] >= 3
        conn.execute("SET enable_seqscan = off")  # an index that cannot serve leaves a seq scan
        plan = "\n".join(
            str(r[0])
            for r in conn.execute(
                "EXPLAIN DELETE FROM trades WHERE symbol_id = %s AND trade_id >= %s", (1, 10)
            )
        )
    assert "Seq Scan" not in plan, plan
    assert plan.count("pkey") >= parts[0], plan


def test_checked_a_connection_lost_inside_the_rewind_is_retried_to_the_end(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: the rewind's session is ended (``pg_terminate_backend``: an administrator, a
    restart, a network cut whose orphan the next open ends) while its DELETE waits for a
    row a reader holds locked. ``_retry`` reopens and rewinds again: nothing of the first
    attempt stayed (its transaction rolled back), the lane is rewound once, and the journal
    is filed to its end, every row reconciled."""
    cfg = make_cfg(tmp_path)
    lost = build(cfg, 300, seed=5)
    kept = write_all(cfg, dsn)
    lost.random_commands(200)
    lost.close()
    _crash_with_lanes_ahead(cfg, dsn)
    live = _lose_the_tail(cfg, 300, seed=5)
    first = min(t.trade_id for t in lost.trades if t.seq > kept and t.symbol == 1)
    locker = psycopg.connect(dsn)
    locker.execute(
        "SELECT 1 FROM trades WHERE symbol_id = 1 AND trade_id = %s FOR UPDATE", (first,)
    )
    ended: list[int] = []

    def end_the_rewind() -> None:
        with psycopg.connect(dsn, autocommit=True) as other:
            for _ in range(600):
                row = other.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM trades%%'"
                ).fetchone()
                if row is not None:
                    other.execute("SELECT pg_terminate_backend(%s, 5000)", (row[0],))
                    ended.append(int(row[0]))
                    break
                time.sleep(0.05)
        locker.rollback()

    killer = threading.Thread(target=end_the_rewind)
    killer.start()
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=150, batch_ms=10**6, backoff=_QUICK))
    try:
        assert writer.run(to_end=True) == live.last_seq
    finally:
        killer.join(60)
        locker.close()
        writer.close()
    assert ended, "the rewind's DELETE never waited on the locked row"
    assert writer.store.connections >= 2  # it reconnected and rewound again
    _filed_is_made(dsn, live)
    reconcile(dsn, live)
