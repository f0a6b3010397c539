"""Fees as journaled state (``procs/core/fees.py``): what a starting router journals, and what
it refuses while buys rest under the old fee margin."""

from __future__ import annotations

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common.records import FeeSchedule
from procs.core.fees import FeeChangeError
from procs.core.sequencer import Sequencer
from tests.unit.router.core_rig import BTCUSD, BUY, exchange_config, funded, new_order, placed


def _btc_fees(cfg: RingexConfig, maker: int, taker: int) -> RingexConfig:
    btc = msgspec.structs.replace(cfg.symbols[0], maker_fee_bps=maker, taker_fee_bps=taker)
    return msgspec.structs.replace(cfg, symbols=[btc, *cfg.symbols[1:]])


def test_a_new_journal_starts_with_every_symbols_fees_and_nothing_more_is_journaled() -> None:
    cfg = exchange_config()
    ex = funded(cfg)
    firsts = [c for c in ex.journal if isinstance(c, FeeSchedule)]
    assert [(f.seq, f.symbol) for f in firsts] == [(k + 1, s.id) for k, s in enumerate(cfg.symbols)]
    assert all(f.fee_account == cfg.risk.fee_account for f in firsts)
    again = Sequencer.restore(cfg, ex.sequencer.snapshot())
    assert again.fee_changes(0) == []  # the state holds the configured fees


def test_a_margin_change_with_a_buy_resting_is_refused_naming_it() -> None:
    cfg = exchange_config()
    ex = funded(cfg)
    bid = placed(ex, new_order(1, BUY, 10_000, 5, ref=1))
    ex.settle()
    margin = max(cfg.symbols[0].maker_fee_bps, cfg.symbols[0].taker_fee_bps)
    restarted = Sequencer.restore(_btc_fees(cfg, 0, margin + 5), ex.sequencer.snapshot())
    next_seq = restarted.next_seq
    with pytest.raises(FeeChangeError, match=rf"symbol BTC-USD: .*orders {bid.order_id}"):
        restarted.fee_changes(0)
    assert restarted.next_seq == next_seq  # nothing sequenced
    # the same margin (maker and taker swapped within it) leaves every hold as it is: taken
    swapped = Sequencer.restore(_btc_fees(cfg, margin, 1), ex.sequencer.snapshot())
    (change,) = swapped.fee_changes(0)
    assert (change.symbol, change.maker_bps, change.taker_bps) == (BTCUSD, margin, 1)
    swapped.accounts.validate_internal_state()


def test_a_symbol_dropped_from_the_config_does_not_stop_a_restore() -> None:
    cfg = exchange_config()
    ex = funded(cfg)
    kept = msgspec.structs.replace(
        cfg,
        symbols=[s for s in cfg.symbols if s.id == BTCUSD],
        matchers=[
            msgspec.structs.replace(m, symbols=[s for s in m.symbols if s == cfg.symbols[0].name])
            for m in cfg.matchers
            if cfg.symbols[0].name in m.symbols
        ],
    )
    again = Sequencer.restore(kept, ex.sequencer.snapshot())
    assert again.fee_changes(0) == []
    for record in ex.journal:
        if isinstance(record, FeeSchedule):
            fresh = Sequencer(kept, again.accounts.__class__(kept))
            fresh.next_seq = record.seq
            fresh.replay(record)  # a schedule of a dropped symbol: nothing to apply
