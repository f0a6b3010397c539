"""The standby's market state: fed by the events its hot matchers make, saved at its stop, and
fed again by a restart's recovery replay without counting anything twice."""

from __future__ import annotations

from pathlib import Path

from procs.core.market.state import MarketState
from procs.core.recovery import recover
from procs.replica.market import HotMarket
from tests.unit.dbwriter.journal_gen import build, make_cfg


def view(state: MarketState) -> list[object]:
    """What a client can read: books, recent trades, the 24h ticker, candles."""
    out: list[object] = [state.last_seq]
    for market in state.symbols.values():
        ticker = market.ticker.ticker()
        out += [
            market.book.levels(),
            [t.trade_id for t in market.tape.recent(200)],
            None if ticker is None else (ticker.volume, ticker.trades, ticker.last),
            [(c.open_ns, c.volume, c.trades) for c in market.candles["1m"].history(500)],
        ]
    return out


def test_the_standby_keeps_the_market_and_a_restart_counts_nothing_twice(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    live = build(cfg, 1500)
    live.close()
    first = HotMarket(cfg)
    recover(cfg, observe=first.observe)
    trades = sum(len(m.tape.recent(200)) for m in first.state.symbols.values())
    assert trades > 50 and 0 < first.state.last_seq <= live.last_seq
    # the market's books are the matchers' own
    recovered = recover(cfg)
    for name, matcher in recovered.matchers.items():
        for symbol, book in matcher.books.items():
            assert first.state.symbols[symbol].book.levels() == book.levels(), (name, symbol)
    first.save()
    again = HotMarket(cfg)  # a standby's restart: the saved state, then the replay again
    assert view(again.state) == view(first.state)
    recover(cfg, observe=again.observe)
    assert view(again.state) == view(first.state)
