"""The page's HTTP API renders what it shows once and cuts each answer from it (review 47):
its answers are byte for byte what rendering each one anew gives, at every limit, before
and after the state changes (the reference: ``messages``' renderers over the state)."""

from __future__ import annotations

from typing import Any

from procs.common.types import Side
from procs.core.market.state import MarketState
from procs.marketdata import messages
from procs.marketdata.web import Site

from .events import MIN, OTHER, SYMBOL, T0, level, trade

LIMITS = (1, 2, 7, 119, 120, 121, 500, 501, 1000)


def _reference(state: MarketState, target: str, limit: int) -> bytes:
    market = state.by_stream["btc-usd"]
    s = market.symbol
    if target == "depth":
        return messages.depth_json(s, market.book.snapshot(limit))
    if target == "trades":
        return messages._encode([messages.trade_data(s, t) for t in market.tape.recent(limit)])
    candles = market.candles["1m"].history(limit)
    return messages._encode([messages.candle_data(s, "1m", c) for c in candles])


def _grow(state: MarketState, start: int, levels: int, trades: int) -> None:
    out: list[Any] = []
    seq = start
    for k in range(levels):
        state.process(level(seq, Side.BUY, 5_000 + k, 10 + start), out)
        state.process(level(seq + 1, Side.SELL, 20_000 + k, 10 + start), out)
        seq += 2
    first = state.by_stream["btc-usd"].tape.last_trade_id + 1
    for k in range(trades):
        t = first + k
        state.process(trade(seq + k, t, 10_000 + k % 7, 1, ts=T0 + t * MIN // 3), out)
    state.flush()


def test_cached_answers_equal_fresh_renders_at_every_limit_as_the_state_changes() -> None:
    state = MarketState([SYMBOL, OTHER])
    site = Site(state)
    _grow(state, 1, 300, 400)
    for step in range(3):
        for target in ("depth", "trades", "klines"):
            for limit in LIMITS:
                query = f"symbol=btc-usd&limit={limit}" + ("&interval=1m" * (target == "klines"))
                answer = site.get(f"/api/{target}?{query}")
                assert answer.status_code == 200
                assert answer.body == _reference(state, target, limit), (step, target, limit)
        market = state.by_stream["btc-usd"]  # the answers were long enough to cut
        assert len(market.tape.recent(1000)) >= 400 and len(market.candles["1m"].closed) > 120
        assert len(market.book.snapshot(1000).bids) >= 300
        _grow(state, 10_000 * (step + 1), 50 * (step + 1), 700)
