"""Each trade's maker and taker fee in the ``trades`` table (migration 0007), filed by the real
writer into a real PostgreSQL from journals made through the real sequencer and matchers:
exact values, each side under its own rate, and every trade under the fees journaled when it
was made, whatever the writer's config says and whether it resumed from a snapshot."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
import psycopg

from config.schema import RingexConfig, SymbolConfig
from procs.common.types import Side
from procs.dbwriter.replay import snapshot_store
from procs.dbwriter.writer import DbWriter, WriterOptions
from tests.unit.dbwriter.journal_gen import (
    FEE_ACCOUNT,
    JournalBuilder,
    fund,
    limit_order,
    make_cfg,
    write_all,
)

USD = 1  # both symbols' quote asset (6 decimals; price 2 and qty 4 decimals: 1 unit a tick-lot)
MAKER, TAKER = 10, 11


def _with_fees(cfg: RingexConfig, symbol: int, maker_bps: int, taker_bps: int) -> RingexConfig:
    symbols: list[SymbolConfig] = [
        msgspec.structs.replace(s, maker_fee_bps=maker_bps, taker_fee_bps=taker_bps)
        if s.id == symbol
        else s
        for s in cfg.symbols
    ]
    return msgspec.structs.replace(cfg, symbols=symbols)


def _journal_fee_changes(b: JournalBuilder, cfg: RingexConfig) -> None:
    """What a router starting under ``cfg`` does: journal the fees its state lacks."""
    b.sequencer.cfg = cfg
    for record in b.sequencer.fee_changes(b.clock):
        b.writer.append(record.seq, b.codec.encode_slot(record), 1)
        b.last_seq = record.seq


def _trade(b: JournalBuilder, symbol: int, price: int, qty: int) -> None:
    """MAKER rests a sell, TAKER buys all of it: one trade, neither order left open."""
    before = len(b.trades)
    limit_order(b, MAKER, symbol, Side.SELL, price, qty)
    limit_order(b, TAKER, symbol, Side.BUY, price, qty)
    assert len(b.trades) == before + 1


def _fees(dsn: str) -> list[tuple[int, int, int | None, int | None]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT symbol_id, trade_id, maker_fee, taker_fee FROM trades ORDER BY seq"
        ).fetchall()
    return [(int(s), int(t), m, k) for s, t, m, k in rows]


def _fee_account_usd(b: JournalBuilder) -> int:
    return sum(b.sequencer.accounts.balance(FEE_ACCOUNT, USD))


def _journal(tmp_path: Path) -> tuple[JournalBuilder, RingexConfig]:
    """Symbol 1 at 10/20 bps (maker/taker), a trade; symbol 1 changed to 5/40 bps, a trade on
    each symbol (symbol 2 keeps 10/20). Returns the builder and the config of the change."""
    cfg_a = _with_fees(make_cfg(tmp_path), 1, 10, 20)
    b = JournalBuilder(cfg_a)
    _journal_fee_changes(b, cfg_a)  # a brand-new journal starts with the fee schedule
    fund(b, MAKER, {1: 10**12, 2: 10**12, 3: 10**12})
    fund(b, TAKER, {1: 10**12, 2: 10**12, 3: 10**12})
    _trade(b, 1, 100_000, 10)  # notional 1_000_000 USD units (1.000000 USD)
    cfg_b = _with_fees(cfg_a, 1, 5, 40)
    _journal_fee_changes(b, cfg_b)
    _trade(b, 1, 100_003, 7)  # notional 700_021: fees 350.01 and 2800.08, rounded down
    _trade(b, 2, 100_003, 7)
    return b, cfg_b


def test_each_side_pays_its_own_rate_under_the_fees_of_its_time(tmp_path: Path, dsn: str) -> None:
    b, cfg_b = _journal(tmp_path)
    b.close()
    taker_usd = sum(b.sequencer.accounts.balance(TAKER, USD))
    # the writer runs under a config whose fees are neither of the journaled ones
    cfg_now = _with_fees(_with_fees(cfg_b, 1, 1, 2), 2, 3, 4)
    assert write_all(cfg_now, dsn) == b.last_seq
    assert _fees(dsn) == [
        (1, 1, 1_000, 2_000),  # 10 and 20 bps of 1_000_000
        (1, 2, 350, 2_800),  # 5 and 40 bps of 700_021, rounded down as the router does
        (2, 1, 700, 1_400),  # symbol 2 kept 10/20 bps
    ]
    # what the router charged: the fee account holds exactly the fees filed ...
    assert _fee_account_usd(b) == 1_000 + 2_000 + 350 + 2_800 + 700 + 1_400
    # ... and the taker (the buyer) paid each notional plus its fee
    spent = 1_000_000 + 2_000 + 2 * 700_021 + 2_800 + 1_400
    assert taker_usd == 10**12 - spent
    with psycopg.connect(dsn) as conn:
        shown = conn.execute(
            "SELECT symbol, trade_id, maker_fee, taker_fee, fee_asset FROM trades_decimal "
            "ORDER BY seq"
        ).fetchall()
    assert shown == [
        ("BTC-USD", 1, Decimal("0.001"), Decimal("0.002"), "USD"),
        ("BTC-USD", 2, Decimal("0.00035"), Decimal("0.0028"), "USD"),
        ("ETH-USD", 1, Decimal("0.0007"), Decimal("0.0014"), "USD"),
    ]


def test_a_writer_resumed_from_its_snapshot_files_the_journaled_fees(
    tmp_path: Path, dsn: str
) -> None:
    """The writer's snapshot holds the accounts with the fees journaled so far: a writer
    restored from it (under a config with other fees) files later trades under those."""
    b, cfg_b = _journal(tmp_path)
    options = WriterOptions(batch_rows=5, batch_ms=10**6, snapshot_every=1)
    first = DbWriter(cfg_b, dsn, options)
    try:
        assert first.run(to_end=True) == b.last_seq
    finally:
        first.close()
    _trade(b, 1, 100_001, 3)  # notional 300_003 at 5/40 bps: 150 and 1_200
    b.close()
    cfg_now = _with_fees(cfg_b, 1, 1, 2)  # a config changed since, not journaled yet
    found = snapshot_store(cfg_now).at_or_before(b.last_seq)
    assert found is not None and found[0] == b.last_seq - 2  # at the checkpoint: no replay
    again = DbWriter(cfg_now, dsn, options)
    try:
        assert again.run(to_end=True) == b.last_seq
    finally:
        again.close()
    assert _fees(dsn)[-1] == (1, 3, 150, 1_200)
    assert _fee_account_usd(b) == 1_000 + 2_000 + 350 + 2_800 + 700 + 1_400 + 150 + 1_200
