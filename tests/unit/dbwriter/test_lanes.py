"""Trades written in lanes: each lane's rows with its own checkpoint, exactly once whatever
the batch bounds after a crash between a lane's commit and the batch's, and a change of the
lane count that waits until no lane is ahead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from config.schema import RingexConfig
from procs.common.records import Trade
from procs.common.types import Side
from procs.dbwriter.copy import HEADER, TRAILER, GroupedRows
from procs.dbwriter.projection import TRADES, Batch, trade_row
from procs.dbwriter.writer import Backoff, DbWriter, WriterOptions
from tests.unit.dbwriter.journal_gen import build, make_cfg
from tests.unit.dbwriter.reconcile import reconcile


def test_a_trade_row_packs_as_its_layout_does() -> None:
    t = Trade(7, 10**18, 3, 2, 30_000, 5, Side.SELL, 11, 21, 1, 0, 12, 22, 1, 4)
    values = (2, 3, 7, 123, 30_000, 5, int(Side.SELL), 11, 21, 12, 22, 150, 300)
    assert trade_row(t, 123, 150, 300) == TRADES.pack(values)


def test_grouped_rows_cut_by_key_and_seq() -> None:
    rows = GroupedRows(TRADES)
    for seq in (5, 6, 6, 9):
        for symbol in (1, 2):
            rows.add(symbol, seq, (symbol, seq, seq, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1))
    assert rows.count == 8
    width = TRADES.row.size
    payload, count = rows.payload([1], 5)  # symbol 1 after seq 5: 6, 6, 9
    assert count == 3 and len(payload) == len(HEADER) + 3 * width + len(TRAILER)
    assert payload[len(HEADER) : len(HEADER) + width] == TRADES.pack((1, 6, 6, 0, *[1] * 9))
    assert rows.payload([1, 2], 0)[1] == 8
    assert rows.payload([2], 9) == (HEADER + TRAILER, 0)
    assert rows.payload([3], 0) == (HEADER + TRAILER, 0)


class CrashError(Exception):
    pass


def _crash_before_the_third_commit(writer: DbWriter) -> None:
    """The third batch's lanes commit, then the writer dies before the batch does."""
    calls = 0

    def crash(conn: psycopg.Connection[Any], batch: Batch) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise CrashError

    writer.store.before_commit.append(crash)
    with pytest.raises(CrashError):
        writer.run(to_end=True)
    writer.close()


def _lanes(dsn: str) -> tuple[int, dict[int, int]]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT last_seq FROM checkpoint").fetchone()
        assert row is not None
        return int(row[0]), dict(conn.execute("SELECT lane, last_seq FROM trade_lanes"))


def _with_lanes(cfg: RingexConfig, lanes: int) -> RingexConfig:
    return msgspec.structs.replace(
        cfg, database=msgspec.structs.replace(cfg.database, trade_lanes=lanes)
    )


def test_a_lane_ahead_of_the_checkpoint_ends_with_every_trade_once(
    tmp_path: Path, dsn: str
) -> None:
    cfg = _with_lanes(make_cfg(tmp_path), 2)
    live = build(cfg, 2000)
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=300, backoff=Backoff(0.01, 0.1)))
    _crash_before_the_third_commit(writer)
    at, lanes = _lanes(dsn)
    assert sorted(lanes) == [0, 1] and max(lanes.values()) > at > 0  # the crash left one ahead
    # other bounds this time: the first batch ends inside the one the lanes wrote
    restarted = DbWriter(cfg, dsn, WriterOptions(batch_rows=97, backoff=Backoff(0.01, 0.1)))
    assert restarted.run(to_end=True) == live.last_seq
    restarted.close()
    reconcile(dsn, live)  # every trade once, none missing
    at, lanes = _lanes(dsn)
    assert at == live.last_seq and max(lanes.values()) <= at


def test_the_lane_count_changes_once_no_lane_is_ahead(
    tmp_path: Path, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_cfg(tmp_path)
    live = build(cfg, 2000)
    _crash_before_the_third_commit(
        DbWriter(_with_lanes(cfg, 2), dsn, WriterOptions(batch_rows=300))
    )
    at, lanes = _lanes(dsn)
    assert max(lanes.values()) > at
    restarted = DbWriter(_with_lanes(cfg, 3), dsn, WriterOptions(batch_rows=300))
    restarted.start()
    # the open keeps 2 (else symbol 2 would leave lane 0 under its checkpoint), then the
    # start rewinds the lane ahead (``rewind_lanes``): the new count takes effect at once
    assert "trade lanes stay 2 (configured: 3)" in caplog.text
    assert "trade lanes [" in caplog.text and "written again from the journal" in caplog.text
    assert restarted.store.layout == 3
    assert restarted.run(to_end=True) == live.last_seq
    assert restarted.store.layout == 3
    restarted.close()
    reconcile(dsn, live)
    at, lanes = _lanes(dsn)
    assert sorted(lanes) == [0, 1, 2] and max(lanes.values()) <= at == live.last_seq


def test_one_lane_writes_what_two_did(tmp_path: Path, dsn: str) -> None:
    cfg = _with_lanes(make_cfg(tmp_path), 1)
    live = build(cfg, 1000)
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=300))
    assert writer.run(to_end=True) == live.last_seq
    writer.close()
    reconcile(dsn, live)
    at, lanes = _lanes(dsn)
    assert at == live.last_seq and sorted(lanes) == [0]
