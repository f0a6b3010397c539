"""Bugs a sixth hostile review of the database writer found.

Each test runs the real writer into a real PostgreSQL (``tests/unit/conftest.py``'s cluster,
a database per test) over a small journal made through the real sequencer and matchers
(``journal_gen.JournalBuilder``), and fails today because of the product.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
import psycopg

from config.schema import RiskConfig
from procs.common.types import Side
from tests.unit.dbwriter.journal_gen import (
    JournalBuilder,
    fund,
    limit_order,
    make_cfg,
    write_all,
)


def _journal_fee_changes(b: JournalBuilder) -> None:
    """What a starting router does (``Sequencer.fee_changes``): journal the FeeSchedule
    records (tag 7) of the config ``b.sequencer.cfg`` its state does not hold yet."""
    for record in b.sequencer.fee_changes(b.clock):
        b.writer.append(record.seq, b.codec.encode_slot(record), 1)
        b.last_seq = record.seq


def _balances(dsn: str) -> dict[tuple[int, int], tuple[Decimal, Decimal]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT account_id, asset_id, free, reserved FROM balances").fetchall()
    return {(a, s): (f, r) for a, s, f, r in rows}


def _expected(b: JournalBuilder, account: int, asset: int) -> tuple[Decimal, Decimal]:
    places = -next(a.decimals for a in b.cfg.assets if a.id == asset)
    free, reserved = b.sequencer.accounts.balance(account, asset)
    return Decimal(free).scaleb(places), Decimal(reserved).scaleb(places)


def test_fees_credited_to_a_journaled_fee_account_reach_its_balance_row(
    tmp_path: Path, dsn: str
) -> None:
    """The fee account is journaled state (``FeeSchedule.fee_account``, records.py: "a replay
    settles every trade under the fees it was made under, whatever the config says at the
    time of the replay"; ``fees.set_fee_account``). The writer's replay credits the fees to
    the journaled account (99 here), but ``Projection.add_trade`` marks the balance of
    ``cfg.risk.fee_account`` (the config of the day: 98, changed since and journaled as a
    later FeeSchedule) as the one that changed. So account 99's quote balance, which every
    trade before the change credited, never gets a row (or keeps a stale one).
    Expected: the balances table holds 99's fees as the exchange does."""
    cfg_a = make_cfg(tmp_path)  # fee account 99
    b = JournalBuilder(cfg_a)
    _journal_fee_changes(b)  # a brand-new journal starts with the fee schedule
    fund(b, 10, {1: 10**12, 2: 10**12, 3: 10**12})
    fund(b, 11, {1: 10**12, 2: 10**12, 3: 10**12})
    limit_order(b, 10, 1, Side.SELL, 100_000, 10)
    limit_order(b, 11, 1, Side.BUY, 100_000, 10)
    assert b.trades
    # the operator changes the fee account; the restarted router journals the change
    cfg_b = msgspec.structs.replace(cfg_a, risk=msgspec.structs.replace(cfg_a.risk, fee_account=98))
    assert isinstance(cfg_b.risk, RiskConfig)
    b.sequencer.cfg = cfg_b
    _journal_fee_changes(b)
    b.close()
    quote = next(a.id for a in cfg_a.assets if a.name == cfg_a.symbols[0].quote)
    fees = _expected(b, 99, quote)
    assert fees[0] > 0  # the trade credited 99
    assert write_all(cfg_b, dsn) == b.last_seq  # the writer runs under today's config
    assert _balances(dsn).get((99, quote)) == fees
