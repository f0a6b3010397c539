"""The pure per-symbol state: L2 book and its diffs, candles, the rolling ticker, the tape,
and ``MarketState`` routing events by symbol."""

from __future__ import annotations

import pytest

from procs.common.records import SymbolStatus, Trade
from procs.common.types import AdminAction, Side, TradingStatus
from procs.core.market.book import DepthDiff, L2Book
from procs.core.market.candles import INTERVALS, CandleSeries
from procs.core.market.state import CandleUpdate, MarketState, StatusUpdate, Update
from procs.core.market.symbols import decimal_string
from procs.core.market.ticker import BUCKET_NS, RollingTicker

from .events import MIN, OTHER, SYMBOL, T0, level, trade


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [(12345, 2, "123.45"), (5, 4, "0.0005"), (-5, 2, "-0.05"), (7, 0, "7"), (0, 3, "0.000")],
)
def test_decimal_string(value: int, decimals: int, text: str) -> None:
    assert decimal_string(value, decimals) == text


def test_book_levels_snapshot_and_contiguous_diffs() -> None:
    book = L2Book(1)
    assert book.take_diff() is None
    book.process(level(10, Side.BUY, 100, 5))
    book.process(level(10, Side.BUY, 101, 2))
    book.process(level(10, Side.SELL, 103, 4))
    d1 = book.take_diff()
    assert d1 == DepthDiff(1, 1, 10, T0, [(101, 2), (100, 5)], [(103, 4)])
    snap = book.snapshot(levels=1)
    assert (snap.last_update_id, snap.bids, snap.asks) == (10, [(101, 2)], [(103, 4)])
    book.process(level(14, Side.BUY, 101, 0))  # gone
    book.process(level(17, Side.SELL, 102, 1))
    book.process(level(17, Side.SELL, 102, 3))  # the latest qty of a level wins in a diff
    d2 = book.take_diff()
    assert d2 is not None
    assert (d2.first_update_id, d2.last_update_id) == (d1.last_update_id + 1, 17)
    assert (d2.bids, d2.asks) == ([(101, 0)], [(102, 3)])
    assert book.best_bid() == (100, 5) and book.best_ask() == (102, 3)
    assert book.depth() == (1, 2)
    book.process(level(12, Side.BUY, 99, 1))  # an older seq: a replay, ignored
    assert book.take_diff() is None


def test_changes_of_a_published_seq_alone_make_a_reset_not_a_backwards_diff() -> None:
    book = L2Book(1)
    book.process(level(10, Side.BUY, 100, 5))
    assert not book.take_diff().reset  # type: ignore[union-attr]
    version = book.version
    book.process(level(10, Side.BUY, 99, 3))  # the rest of seq 10, published in two parts
    assert book.version == version + 1  # a snapshot cached at update 10 is stale
    reset = book.take_diff()
    assert reset is not None and reset.reset and reset.last_update_id == 10
    assert book.snapshot(10).bids == [(100, 5), (99, 3)]
    book.process(level(10, Side.BUY, 98, 1))  # with a later seq: it rides in that diff
    book.process(level(11, Side.SELL, 103, 1))
    diff = book.take_diff()
    assert diff is not None and not diff.reset
    assert (diff.first_update_id, diff.last_update_id, diff.bids) == (11, 11, [(98, 1)])


def test_book_refuses_a_snapshot_with_untaken_changes() -> None:
    book = L2Book(1)
    book.process(level(3, Side.BUY, 100, 5))
    with pytest.raises(RuntimeError, match="untaken changes up to update 3"):
        book.snapshot(10)


def test_candles_roll_on_time_and_fill_idle_gaps() -> None:
    series = CandleSeries("1m", history=3)
    series.advance(T0)
    assert series.take_changed() == []  # no trade yet: no candle
    series.trade(T0 + 1, 100, 2)
    series.trade(T0 + 2, 105, 1)
    series.trade(T0 + 3, 98, 1)
    (c,) = series.take_changed()
    assert (c.open_ns, c.close_ns, c.open, c.high, c.low, c.close) == (
        T0,
        T0 + MIN,
        100,
        105,
        98,
        98,
    )
    assert (c.volume, c.quote_volume, c.trades, c.closed) == (4, 200 + 105 + 98, 3, False)
    series.advance(T0 + MIN)  # the next minute opens without a trade, flat at the close
    closed, current = series.take_changed()
    assert closed.closed and closed.close == 98
    assert (current.open_ns, current.open, current.volume, current.closed) == (
        T0 + MIN,
        98,
        0,
        False,
    )
    series.trade(T0 + 10, 200, 1)  # stamped in a closed minute: counts in the open one
    assert series.current is not None and series.current.high == 200
    series.advance(T0 + 100 * MIN)  # a long idle gap: bounded by the history
    assert len(series.closed) == 3
    history = series.history(10)
    assert [c.open_ns for c in history] == [T0 + k * MIN for k in (97, 98, 99, 100)]
    assert all(c.open == 200 for c in history[1:])


def test_candle_intervals_align_to_the_epoch() -> None:
    for name, length in INTERVALS.items():
        series = CandleSeries(name)
        series.trade(T0 + 7 * MIN + 5, 1, 1)
        assert series.current is not None
        assert series.current.open_ns % length == 0
        assert series.current.open_ns <= T0 + 7 * MIN + 5 < series.current.close_ns
    with pytest.raises(ValueError, match="interval '2m' is not one of"):
        CandleSeries("2m")


def test_ticker_rolls_over_24_hours() -> None:
    t = RollingTicker(1)
    assert t.ticker() is None
    t.trade(T0, 1, 100, 2)
    t.trade(T0 + 10 * MIN, 2, 120, 1)
    t.trade(T0 + 20 * MIN, 3, 90, 1)
    k = t.ticker()
    assert k is not None
    assert (k.open, k.high, k.low, k.last, k.volume, k.trades) == (100, 120, 90, 90, 4, 3)
    assert k.quote_volume == 200 + 120 + 90
    assert (k.change, k.change_bps_x100()) == (-10, -1000)  # -10.00%
    assert (k.first_trade_id, k.last_trade_id) == (1, 3)
    t.advance(T0 + 24 * 60 * MIN + 5 * MIN)  # the first trade's minute left the window
    k = t.ticker()
    assert k is not None
    assert (k.open, k.high, k.low, k.volume, k.first_trade_id) == (120, 120, 90, 2, 2)
    t.advance(T0 + 48 * 60 * MIN)  # nothing left: flat at the last price
    k = t.ticker()
    assert k is not None
    assert (k.open, k.high, k.low, k.last, k.volume, k.trades) == (90, 90, 90, 90, 0, 0)
    assert k.open_ns % BUCKET_NS == 0


@pytest.mark.parametrize(("last", "pct"), [(101, 100), (100, 0), (99, -100), (1, -9900)])
def test_ticker_change_percent(last: int, pct: int) -> None:
    t = RollingTicker(1)
    t.trade(T0, 1, 100, 1)
    t.trade(T0, 2, last, 1)
    k = t.ticker()
    assert k is not None and k.change_bps_x100() == pct


def test_market_state_routes_by_symbol_and_batches_updates() -> None:
    state = MarketState([SYMBOL, OTHER])
    out: list[Update] = []
    for event in [
        level(1, Side.SELL, 100, 5),
        trade(2, 1, 100, 2, ts=T0 + 1),
        level(2, Side.SELL, 100, 3),
        trade(3, 1, 200, 1, symbol=2),
        trade(2, 1, 100, 2),  # replayed: ignored
        level(4, Side.BUY, 1, 1, symbol=99),  # not ours: ignored
        SymbolStatus(5, T0, 1, AdminAction.HALT, TradingStatus.HALTED),
    ]:
        state.process(event, out)
    assert [(u.symbol, u.trade_id) for u in out if isinstance(u, Trade)] == [(1, 1), (2, 1)]
    assert out[2:] == [StatusUpdate(1, TradingStatus.HALTED, 5, T0)]  # at once, as trades
    flushed = state.flush()
    kinds = [(type(u).__name__, u.symbol) for u in flushed]
    assert kinds.count(("DepthDiff", 1)) == 1 and ("DepthDiff", 2) not in kinds
    assert kinds.count(("Ticker", 1)) == 1 and kinds.count(("Ticker", 2)) == 1
    assert sum(isinstance(u, CandleUpdate) for u in flushed) == 2 * len(INTERVALS)
    assert state.flush() == []  # nothing changed since
    assert state.symbols[1].status.status == TradingStatus.HALTED
    assert state.last_seq == 5
    state.advance(T0 + MIN)
    rolled = state.flush()
    assert [u.interval for u in rolled if isinstance(u, CandleUpdate)] == ["1m", "1m"] * 2
