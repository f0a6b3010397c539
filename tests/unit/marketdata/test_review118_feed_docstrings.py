"""Review 118: the market data's own docstrings (module, class and function docstrings, ``#:``
and inline comments) held to what the code does, mechanically. Here: the market state it
publishes (``procs/core/market``: the L2 book and its diffs, candles, the 24h ticker, the
tape, ``MarketState``), ``messages.py`` and ``hub.py``. ``..._docstrings2.py``: ``feed.py``,
``outbox.py``, ``server.py``, ``requests.py``, ``streams.py``, ``web.py``, ``reseed.py`` and
``procs/common/market_snapshots.py``. Review 110 held README.md's feed claims; this holds
the code's.

Convention (review 115's): each claim is anchored by a short verbatim quote of the docstring
or comment it checks (whitespace folded, comment marks dropped: ``_says``); a claim found
right is a plain test, a disagreement a strict xfail asserting what the docstring says, the
side to fix in its reason. All in-process, with review 110's helpers. Seeded adversarial
sequences (depth tops here; a slow client's queue, 1,500 seeds, run aside) found no lost,
duplicated or discontinuous message. Six disagreements, each fixed in the docstring since:
- ``L2Book.snapshot`` "pending changes are not in it": it raises while any are (book.py:144);
- feed.py "(``snapshot.py``)": no such file, it is ``procs/common/market_snapshots.py``;
- reseed.py "subscribers get it in the next diff": a book last changed at the mark's seq
  itself takes a ``reset`` diff, its subscribers a fresh snapshot (book.py:104);
- ``stall_s`` "a slow consumer closed with 1008 gets this long": it gets ``slow_close_s``,
  at least 2 s (server.py:234); ``per_address`` "two at least": at most ``max_connections``
  (server.py:252); ``_on_message`` "returns the distinct stream names it carried": 1 for a
  ``LIST_SUBSCRIPTIONS``, which carries none (server.py:427).
"""

from __future__ import annotations

import inspect
import json
import random
import re
from types import ModuleType
from typing import Any

import pytest

from procs.common.records import Heartbeat, SymbolStatus
from procs.common.types import AdminAction, Side, TradingStatus
from procs.core.market import book as book_mod
from procs.core.market import candles as candles_mod
from procs.core.market import state as state_mod
from procs.core.market import tape as tape_mod
from procs.core.market import ticker as ticker_mod
from procs.core.market.book import L2Book
from procs.core.market.candles import CandleSeries
from procs.core.market.state import MarketState, Update
from procs.core.market.symbols import MarketSymbol
from procs.core.market.ticker import RollingTicker, Ticker
from procs.marketdata import hub as hub_mod
from procs.marketdata import messages
from procs.marketdata.hub import Hub
from procs.marketdata.requests import ErrorCode, RequestError
from procs.marketdata.streams import parse_stream

from .events import MIN, SYMBOL, T0, level, trade
from .test_review110_readme_feed import _feed, _market, _Sub, _subscribe

HOUR = 60 * MIN
DAY = 24 * HOUR


def _text(where: ModuleType | type | Any) -> str:
    """``where``'s source, comment marks (``#``, ``#:``) at a line's start dropped, folded."""
    return " ".join(re.sub(r"(?m)^\s*#:?", " ", inspect.getsource(where)).split())


def _says(where: ModuleType | type | Any, quote: str) -> None:
    """``where`` still says ``quote`` (whitespace folded): the anchor of a claim checked."""
    assert " ".join(quote.split()) in _text(where), f"{where!r} no longer says {quote!r}"


def _spy(calls: list[Any], real: Any) -> Any:
    """``real``, each call's arguments appended to ``calls``."""

    def spy(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    return spy


def _depth(sub: _Sub) -> list[tuple[str, Any, Any]]:
    """A depth subscriber's messages: ("S", lastUpdateId, None) or ("D", U, u)."""
    return [
        ("S", d["lastUpdateId"], None) if d["e"] == "depthSnapshot" else ("D", d["U"], d["u"])
        for d in sub.data("btc-usd@depth")
    ]


# -- procs/core/market/book.py -------------------------------------------------------------


def test_diffs_cover_contiguous_seq_ranges_snapshot_continues() -> None:
    """book.py: "diff k covers the sequence range ``first = previous last + 1 .. last = seq
    of its newest change``" and a snapshot client "applies the first diff with ``first <= L
    + 1 <= last``"; ``process``: a lower seq's events "are replays ... and are ignored"."""
    _says(book_mod, "covers the sequence range ``first = previous last + 1 .. last = seq of")
    _says(book_mod, "applies the first diff with ``first <= L + 1 <= last``")
    state, hub = _market()
    _feed(state, hub, [level(3, Side.BUY, 9_900, 1)])
    sub = _subscribe(hub, "btc-usd@depth")
    _feed(state, hub, [level(4, Side.BUY, 1, 1, symbol=2), level(6, Side.SELL, 10_100, 2)])
    _feed(state, hub, [level(9, Side.BUY, 9_900, 0), level(9, Side.BUY, 9_800, 3)])
    assert _depth(sub) == [("S", 3, None), ("D", 4, 6), ("D", 7, 9)]
    _says(book_mod, "with a lower seq are replays (a restart that re-reads the ring)")
    _feed(state, hub, [level(8, Side.BUY, 9_800, 5)])
    assert state.symbols[1].book.best_bid() == (9_800, 3) and len(_depth(sub)) == 3


def test_changes_of_a_published_seq_alone_are_a_reset_then_a_snapshot() -> None:
    """book.py: "Should the changes of an already published seq come alone anyway ... the
    diff is then a ``reset``, and subscribers get a fresh snapshot instead": ``take_diff``
    flags it, ``Hub.publish`` sends the snapshot; "(With a later seq among them they simply
    ride in its diff ...)"."""
    _says(book_mod, "the diff is then a ``reset``, and subscribers get a fresh snapshot instead")
    state, hub = _market()
    _feed(state, hub, [level(5, Side.BUY, 9_900, 1)])
    sub = _subscribe(hub, "btc-usd@depth")
    _feed(state, hub, [level(5, Side.BUY, 9_800, 2)])  # seq 5's rest, alone
    _feed(state, hub, [level(6, Side.SELL, 10_000, 1)])
    assert _depth(sub) == [("S", 5, None), ("S", 5, None), ("D", 6, 6)]
    assert sub.data("btc-usd@depth")[1]["bids"] == [["99.00", "0.0001"], ["98.00", "0.0002"]]
    _says(book_mod, "With a later seq among them they simply ride in its diff")
    _feed(state, hub, [level(6, Side.BUY, 9_700, 1), level(7, Side.SELL, 10_000, 0)])
    assert _depth(sub)[-1] == ("D", 7, 7)  # seq 6's rest rides with 7: no reset


def test_a_diff_carries_levels_risen_into_the_top() -> None:
    """``L2Book.top``: "A diff also carries each level that rose into them without changing
    ... and then holds the top ``top`` exactly": seeded random books, a client per snapshot."""
    _says(book_mod, "A diff also carries each level that rose into them without changing")
    _says(book_mod, "and then holds the top ``top`` exactly")
    for seed in range(150):
        rnd = random.Random(seed)
        state = MarketState([SYMBOL])
        hub = Hub(state, depth_levels=rnd.choice([1, 2, 3]), max_subscriptions=5)
        subs: list[_Sub] = []
        for seq in range(1, 40):
            if rnd.random() < 0.15:
                subs.append(_subscribe(hub, "btc-usd@depth"))
            side = rnd.choice([Side.BUY, Side.SELL])
            price = rnd.randint(1, 6) + (0 if side is Side.BUY else 10)
            _feed(state, hub, [level(seq, side, price, rnd.choice([0, 0, 1, 2]))])
        want = json.loads(hub.depth_snapshot("btc-usd@depth"))["data"]
        for sub in subs:
            held: dict[str, dict[str, str]] = {"b": {}, "a": {}}
            for d in sub.data("btc-usd@depth"):
                if d["e"] == "depthSnapshot":
                    held = {"b": dict(d["bids"]), "a": dict(d["asks"])}
                    continue
                for key in "ba":
                    for price, qty in d[key]:
                        held[key][price] = qty
            for key, name, sign in (("b", "bids", -1), ("a", "asks", 1)):
                live = [[p, q] for p, q in held[key].items() if q != "0.0000"]
                live.sort(key=lambda pq: sign * float(pq[0]))
                assert live[: hub.depth_levels] == want[name], seed


def test_snapshot_refused_while_changes_are_pending() -> None:
    """``L2Book.snapshot``: "as of the last diff taken, so the next diff continues it.
    Refused (``RuntimeError``) while changes are pending" (review 118: it said they were left
    out): a pending level refuses it; once taken, the snapshot shows it."""
    _says(book_mod, "Refused (``RuntimeError``) while changes are pending: call ``take_diff``")
    book = L2Book(1)
    book.process(level(3, Side.BUY, 9_900, 1))
    book.take_diff()
    book.process(level(4, Side.BUY, 9_800, 2))  # pending
    with pytest.raises(RuntimeError, match="take_diff first"):
        book.snapshot(10)
    book.take_diff()
    assert book.snapshot(10).bids == [(9_900, 1), (9_800, 2)]


# -- procs/core/market/candles.py ----------------------------------------------------------


def test_candles_epoch_aligned_kline_t_and_T() -> None:
    """candles.py: "a 1h candle spans [hh:00, hh+1:00)": a trade at 01:30 is in the 01:00
    hour (kline "t" its open, "T" its end - 1 ms); one at 02:00 exactly opens the next."""
    _says(candles_mod, "a 1h candle spans [hh:00, hh+1:00)")
    state, hub = _market()
    sub = _subscribe(hub, "btc-usd@kline_1h")
    _feed(state, hub, [trade(1, 1, 10_000, 1, ts=T0 + 90 * MIN)])
    _feed(state, hub, [trade(2, 2, 10_100, 1, ts=T0 + 2 * HOUR)])
    ks = [d["k"] for d in sub.data("btc-usd@kline_1h")]
    ms = T0 // 1_000_000
    h = HOUR // 10**6
    got = [(k["t"] - ms, k["T"] - ms, k["x"]) for k in ks]
    assert got == [(h, 2 * h - 1, False), (h, 2 * h - 1, True), (2 * h, 3 * h - 1, False)]


def test_idle_candle_opens_flat_first_trade_is_its_open() -> None:
    """candles.py: "it opens flat at the previous close with zero volume, as the venues do,
    until its first trade, which is its open (open, high and low: the price of the
    interval's first trade ...). Before the first trade there is no candle."."""
    _says(candles_mod, "it opens flat at the previous close with zero volume")
    _says(candles_mod, "Before the first trade there is no candle.")
    series = CandleSeries("1m")
    series.advance(T0 + 5 * MIN)
    assert series.current is None and series.history(10) == []
    series.trade(T0 + 10, 10_000, 2, trade_id=1)
    series.trade(T0 + 20, 10_300, 1, trade_id=2)
    series.advance(T0 + MIN)
    flat = series.current
    assert flat is not None and (flat.open, flat.high, flat.low, flat.close) == (10_300,) * 4
    assert (flat.volume, flat.trades, flat.first_trade_id) == (0, 0, 0)
    series.trade(T0 + MIN + 5, 9_900, 1, trade_id=3)
    assert (flat.open, flat.high, flat.low, flat.close, flat.first_trade_id) == (9_900,) * 4 + (3,)


def test_a_trade_stamped_before_the_clock_counts_in_the_open_candle() -> None:
    """candles.py: "A trade stamped before the clock ... is counted in the candle open at
    the clock: a closed candle never changes" (``MarketState`` passes the clock)."""
    _says(candles_mod, "is counted in the candle open at the clock: a closed candle never changes")
    state = MarketState([SYMBOL])
    out: list[Update] = []
    state.process(trade(1, 1, 10_000, 1, ts=T0 + 30 * 10**9), out)
    state.process(level(2, Side.BUY, 9_000, 1, ts=T0 + MIN + 1), out)  # the clock: next minute
    state.process(trade(3, 2, 11_000, 5, ts=T0 + 59 * 10**9), out)  # stamped before it
    state.flush()
    series = state.symbols[1].candles["1m"]
    closed, current = series.closed[-1], series.current
    assert (closed.open_ns, closed.close, closed.volume) == (T0, 10_000, 1)
    assert current is not None
    assert (current.open_ns, current.close, current.volume) == (T0 + MIN, 11_000, 5)


def test_other_batches_build_the_same_candles() -> None:
    """candles.py: "a replay that reads the same events in other batches builds the same
    candles": one event a flush, or all in one, give the same series."""
    _says(candles_mod, "a replay that reads the same events in other batches builds the same")
    events = [
        trade(1, 1, 10_000, 1, ts=T0 + 50 * 10**9),
        level(2, Side.BUY, 1, 1, symbol=2, ts=T0 + 3 * MIN),  # another symbol's: no clock
        level(3, Side.BUY, 9_000, 1, ts=T0 + MIN + 5),
        trade(4, 2, 10_200, 2, ts=T0 + 55 * 10**9),
        trade(5, 3, 9_800, 1, ts=T0 + 6 * MIN),
    ]
    results = []
    for cuts in ([5], [1, 1, 1, 1, 1], [2, 3]):
        state, hub = _market()
        at = 0
        for n in cuts:
            _feed(state, hub, events[at : at + n])
            at += n
        series = state.symbols[1].candles["5m"]
        results.append([(c.open_ns, c.open, c.close, c.volume) for c in series.history(10)])
    assert results[0] == results[1] == results[2]
    assert results[0][0] == (T0, 10_000, 10_200, 3)


def test_advance_fills_an_idle_gap_with_at_most_history_flats() -> None:
    """``CandleSeries.advance``: "Close the open candle if ``now_ns`` is past its end and
    open the one holding ``now_ns``; flat candles fill an idle gap (at most ``history`` of
    them)"; ``take_changed``: "the candles closed meanwhile, each with its final value (a
    batch may close several), and then the open one"; ``history``: "oldest first"."""
    _says(candles_mod, "flat candles fill an idle gap (at most ``history`` of them)")
    _says(candles_mod, "(a batch may close several), and then the open one")
    series = CandleSeries("1m", history=3)
    series.trade(T0, 10_000, 1, trade_id=1)
    series.take_changed()
    series.advance(T0 + 10 * MIN + 7)
    changed = series.take_changed()
    assert [((c.open_ns - T0) // MIN, c.closed) for c in changed] == [
        *((0, True), (7, True), (8, True), (9, True)),
        (10, False),
    ]
    assert [c.open_ns for c in series.closed] == [T0 + 7 * MIN, T0 + 8 * MIN, T0 + 9 * MIN]
    _says(candles_mod, "Up to ``limit`` most recent candles, oldest first, the open one last.")
    assert [(c.open_ns - T0) // MIN for c in series.history(3)] == [8, 9, 10]


# -- procs/core/market/ticker.py and tape.py -----------------------------------------------


def _ticker(*trades: tuple[int, int, int, int]) -> RollingTicker:
    t = RollingTicker(1)
    for ts, trade_id, price, qty in trades:
        t.trade(ts, trade_id, price, qty)
    return t


def test_window_holds_the_minute_of_now_and_the_1439_before() -> None:
    """ticker.py: "it holds the minute of ``now`` and the 1439 before it"; ``Ticker``: "last
    price when the window is empty", ids 0, ``last_qty`` "kept when the window empties"."""
    _says(ticker_mod, "it holds the minute of ``now`` and the 1439 before it")
    _says(ticker_mod, "last price when the window is empty")
    t = _ticker((T0, 1, 10_000, 3), (T0 + 30 * 10**9, 2, 10_500, 4))
    t.advance(T0 + DAY - 1)  # the last ns of the window's 1440th minute
    full = t.ticker()
    assert full is not None and (full.open, full.volume, full.trades) == (10_000, 7, 2)
    assert (full.first_trade_id, full.open_ns) == (1, T0)
    t.advance(T0 + DAY)
    empty = t.ticker()
    # (prev_close, review 334: the close of the minute that left, 10_500)
    assert empty == Ticker(1, T0 + DAY, *(10_500,) * 4, 0, 0, 0, 0, 0, T0 + MIN, 4, 10_500)


def test_high_and_low_recomputed_when_a_bucket_leaves() -> None:
    """ticker.py: "when a bucket leaves the window the high and low are recomputed over the
    (at most 1440) buckets left"; the open is then the first bucket left's."""
    _says(ticker_mod, "when a bucket leaves the window the high and low are recomputed")
    t = _ticker((T0, 1, 20_000, 1), (T0 + 5 * MIN, 2, 10_000, 1), (T0 + 9 * MIN, 3, 15_000, 1))
    t.advance(T0 + DAY + 1)
    got = t.ticker()
    assert got is not None
    assert (got.open, got.high, got.low, got.last) == (10_000, 15_000, 10_000, 15_000)
    assert (got.trades, got.first_trade_id) == (2, 2)
    assert (got.volume, got.quote_volume, got.change) == (2, 25_000, 5_000)


def test_a_late_stamp_joins_the_newest_bucket() -> None:
    """``RollingTicker.trade``: "a late stamp joins the newest bucket": it leaves the window
    with the minute of the clock, not of its own stamp."""
    _says(ticker_mod, "a late stamp joins the newest bucket")
    t = _ticker((T0 + 10 * MIN, 1, 10_000, 1), (T0 + 2 * MIN, 2, 10_100, 1))
    t.advance(T0 + 2 * MIN + DAY)  # the late trade's own minute is gone, the clock's is not
    got = t.ticker()
    assert got is not None and (got.trades, got.volume) == (2, 2)


def test_change_percent_rounds_half_away_from_zero() -> None:
    """``Ticker.change_bps_x100``: "Change in hundredths of a percent, rounded half away
    from zero (1234 = 12.34%)"; messages' "P" shows it so."""
    _says(ticker_mod, "Change in hundredths of a percent, rounded half away from zero")
    cases = {(20_000, 20_001): "0.01", (20_000, 19_999): "-0.01", (30_000, 30_001): "0.00"}
    cases[(8_000, 8_987)] = "12.34"  # 12.3375 up
    for (open_, last), shown in cases.items():
        t = _ticker((T0, 1, open_, 1), (T0 + 1, 2, last, 1))
        got = t.ticker()
        assert got is not None
        assert json.loads(messages.ticker(SYMBOL, got)[1])["data"]["P"] == shown, (open_, last)


def test_ticker_is_none_before_the_first_trade_tape_drops_replays() -> None:
    """``RollingTicker.ticker``: "The ticker now, or None before the first trade"; tape.py:
    a replayed trade is not kept, ``recent``: "Up to ``limit`` newest trades, oldest first"."""
    _says(ticker_mod, "The ticker now, or None before the first trade.")
    _says(tape_mod, "Up to ``limit`` newest trades, oldest first.")
    assert RollingTicker(1).ticker() is None
    tape = tape_mod.TradeTape(size=3)
    for trade_id in (1, 2, 2, 1, 3, 4):
        tape.process(trade(trade_id, trade_id, 10_000, 1))
    assert [t.trade_id for t in tape.recent(10)] == [2, 3, 4] and tape.recent(0) == []


# -- procs/core/market/state.py ------------------------------------------------------------


def test_trades_one_by_one_the_rest_once_per_flush() -> None:
    """state.py: "Trades go out one by one, as they happened; depth, ticker and candles are
    collected and leave once per ``flush``"; ``flush``: "symbol by symbol"."""
    _says(state_mod, "Trades go out one by one, as they happened; depth, ticker and candles")
    _says(state_mod, "Apply one event; a trade is appended to ``out`` at once.")
    state, _ = _market()
    out: list[Update] = []
    for k in range(1, 4):
        state.process(trade(k, k, 10_000 + k, 1), out)
        state.process(level(k, Side.SELL, 10_000 + k, 0), out)
        assert len(out) == k
    state.process(level(4, Side.BUY, 1, 1, symbol=2), out)
    flushed = state.flush()
    kinds = [(type(u).__name__, u.symbol) for u in flushed]
    candles = [("CandleUpdate", 1)] * 6
    # symbol 2's bid is its best: a BookTop; symbol 1's levels went from an empty side
    assert kinds == [("DepthDiff", 1), ("Ticker", 1), *candles, ("DepthDiff", 2), ("BookTop", 2)]
    assert state.flush() == []


def test_other_records_and_non_changes_are_ignored() -> None:
    """state.py: "those that do not change market data are ignored"; ``process``: "a change
    only ..."; ``SymbolMarket.trade``: "False when it is a replay already applied"."""
    _says(state_mod, "those that do not change market data are ignored")
    _says(state_mod, "or a halt of a halted symbol, with its status as it was")
    state, _ = _market()
    out: list[Update] = []
    assert state.symbols[1].status.seq == 0
    state.process(Heartbeat(T0, 1, 1), out)
    state.process(SymbolStatus(2, T0, 1, AdminAction.END_OF_SESSION, TradingStatus.OPEN), out)
    state.process(SymbolStatus(3, T0, 1, AdminAction.HALT, TradingStatus.HALTED), out)
    state.process(SymbolStatus(4, T0, 1, AdminAction.HALT, TradingStatus.HALTED), out)
    seen: list[Any] = out
    assert [(u.seq, u.status) for u in seen] == [(3, TradingStatus.HALTED)]
    assert state.flush() == []
    _says(state_mod, "False when it is a replay already applied")
    assert state.symbols[1].trade(trade(5, 1, 10_000, 2)) is True
    assert state.symbols[1].trade(trade(5, 1, 10_000, 2)) is False


def test_a_symbols_clock_is_its_own_events() -> None:
    """``SymbolMarket``: "another matcher's ring running ahead ... must not close the candles
    this symbol's trades still belong in": another symbol's events an hour on."""
    _says(state_mod, "must not close the candles this symbol's trades still belong in")
    state, _ = _market()
    out: list[Update] = []
    state.process(trade(1, 1, 10_000, 1, ts=T0 + 5), out)
    state.process(trade(2, 1, 2_000, 1, symbol=2, ts=T0 + HOUR), out)
    state.flush()
    series = state.symbols[1].candles["1m"]
    assert series.current is not None and series.current.open_ns == T0 and not series.closed
    assert state.now_ns == T0 + HOUR


def test_advance_spares_held_symbols_and_those_ahead() -> None:
    """``MarketState.advance``: "Move every symbol's clock to ``now_ns`` (... ignored where
    a symbol's own events are ahead of it) but those in ``held``"."""
    _says(state_mod, "ignored where a symbol's own events are ahead of it) but those in ``held``")
    state, _ = _market()
    out: list[Update] = []
    state.process(trade(1, 1, 10_000, 1, ts=T0 + 10 * MIN), out)
    state.process(trade(2, 1, 2_000, 1, symbol=2, ts=T0), out)
    state.advance(T0 + 2 * MIN, held={2})
    assert [state.symbols[s].clock_ns for s in (1, 2)] == [T0 + 10 * MIN, T0]
    assert state.now_ns == T0 + 10 * MIN  # held: not moved to now_ns
    state.advance(T0 + 12 * MIN)
    assert [state.symbols[s].clock_ns for s in (1, 2)] == [T0 + 12 * MIN] * 2


def test_reseed_applies_as_process_but_leaves_the_clocks() -> None:
    """``MarketState.reseed``: "Apply a level or status set from a matcher's state at its
    replay mark ... as ``process`` does, but leave the clocks"."""
    _says(state_mod, "as ``process`` does, but leave the clocks")
    state, _ = _market()
    out: list[Update] = []
    state.process(trade(1, 1, 10_000, 1, ts=T0), out)
    state.reseed(level(5, Side.BUY, 9_900, 2, ts=T0 + DAY), out)
    state.reseed(SymbolStatus(5, T0 + DAY, 1, AdminAction.HALT, TradingStatus.HALTED), out)
    market = state.symbols[1]
    assert (market.clock_ns, state.now_ns, state.last_seq) == (T0, T0, 5)
    assert market.book.best_bid() == (9_900, 2) and market.status.status is TradingStatus.HALTED
    assert state.flush()[0].last_update_id == 5  # type: ignore[union-attr]


# -- procs/marketdata/messages.py ----------------------------------------------------------


def test_messages_times_in_ms_prices_and_sizes_decimal_strings() -> None:
    """messages.py: "times in ms and prices and sizes as decimal strings"; a trade's "m":
    "the buyer was the maker" when the seller aggressed."""
    _says(messages, "times in ms and prices and sizes as decimal strings")
    _says(messages, "# the buyer was the maker")
    state, hub = _market()
    sub = _subscribe(hub, "btc-usd@trade", "btc-usd@depth", "btc-usd@ticker", "btc-usd@kline_1m")
    sold = trade(3, 1, 12_345, 67, aggressor=Side.SELL)
    _feed(state, hub, [sold, level(3, Side.BUY, 12_300, 5)])
    ms = T0 // 1_000_000
    (t,) = sub.data("btc-usd@trade")
    assert (t["E"], t["T"], t["p"], t["q"], t["m"], t["u"]) == (ms, ms, "123.45", "0.0067", True, 3)
    d = sub.data("btc-usd@depth")[-1]
    assert (d["E"], d["b"]) == (ms, [["123.00", "0.0005"]])
    (k,) = [m["k"] for m in sub.data("btc-usd@kline_1m")]
    assert (k["t"], k["o"], k["v"], k["q"]) == (ms, "123.45", "0.0067", "0.827115")
    (tk,) = sub.data("btc-usd@ticker")
    assert (tk["C"], tk["c"], tk["Q"], tk["q"]) == (ms, "123.45", "0.0067", "0.827115")


def test_vwap_at_a_notionals_decimals_rounded_half_up() -> None:
    """messages.py: "The weighted average price, quote volume / volume, at a notional's
    decimals (as "q") rounded half up; 0 for a window with no trade"."""
    _says(messages, 'at a notional\'s decimals (as "q") rounded half up; 0 for a window')
    whole = MarketSymbol(1, "BTC-USD", "btc-usd", price_decimals=2, qty_decimals=0)
    t = _ticker((T0, 1, 1, 1), (T0 + 1, 2, 2, 1))  # 1.5 units: half, up to 2
    got = t.ticker()
    assert got is not None and json.loads(messages.ticker(whole, got)[1])["data"]["w"] == "0.02"
    t.advance(T0 + 2 * DAY)
    empty = t.ticker()
    assert empty is not None
    assert json.loads(messages.ticker(SYMBOL, empty)[1])["data"]["w"] == "0.000000"


def test_depth_cut_status_names_render_and_heartbeat() -> None:
    """messages.py: ``depth_cut``: "``depth_json`` of the best ``limit`` levels a side";
    ``STATUS_NAMES``; ``render``: "The stream an update goes to and its message";
    ``heartbeat``: "The application heartbeat a browser can see"."""
    _says(messages, "``depth_json`` of the best ``limit`` levels a side of a ``depth_data``")
    _says(messages, "The stream an update goes to and its message.")
    state, hub = _market()
    _feed(state, hub, [level(k, Side.BUY, 9_000 + k, 1) for k in range(1, 6)])
    book = state.symbols[1].book
    data = messages.depth_data(SYMBOL, book.snapshot(10))
    assert messages.depth_cut(data, 2) == messages.depth_json(SYMBOL, book.snapshot(2))
    assert messages.STATUS_NAMES == {TradingStatus.OPEN: "TRADING", TradingStatus.HALTED: "HALT"}
    out: list[Update] = []
    state.process(trade(9, 1, 10_000, 1), out)
    state.process(SymbolStatus(9, T0, 1, AdminAction.HALT, TradingStatus.HALTED), out)
    for update in out + state.flush():
        stream, payload = messages.render(SYMBOL, update, T0)
        assert json.loads(payload)["stream"] == stream and stream.startswith("btc-usd@")
    beat = {"stream": "heartbeat", "data": {"e": "heartbeat", "E": T0 // 1_000_000}}
    assert json.loads(messages.heartbeat(T0)) == beat


# -- procs/marketdata/hub.py ---------------------------------------------------------------


def test_unsubscribed_updates_not_rendered_others_once_for_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """hub.py: "An update nobody subscribed to is not even rendered; one that is, is rendered
    once for everyone, JSON and WebSocket frame alike"; ``publish``: "Render each update
    someone subscribed to once"."""
    _says(hub_mod, "An update nobody subscribed to is not even rendered; one that is, is")
    rendered: list[Any] = []
    real = messages.render
    monkeypatch.setattr(messages, "render", _spy(rendered, real))
    state, hub = _market()
    a, b = _subscribe(hub, "btc-usd@trade"), _subscribe(hub, "btc-usd@trade", "btc-usd@depth")
    _feed(state, hub, [trade(1, 1, 10_000, 1), level(1, Side.BUY, 9_000, 1, symbol=2)])
    assert [type(args[1]).__name__ for args in rendered] == ["Trade"]
    assert a.data("btc-usd@trade") == b.data("btc-usd@trade") != []
    assert (hub.published, hub.delivered) == (1, 2)


def test_one_call_and_one_write_per_group_and_batch() -> None:
    """hub.py: "Subscribers are grouped by the set of streams they follow, and a batch of
    updates is joined once per group into the bytes each member gets: the cost per
    subscriber is one call and one socket write per batch"."""
    _says(hub_mod, "the cost per subscriber is one call and one socket write per batch")
    state, hub = _market()
    calls: list[tuple[int, list[str], bytes]] = []

    class Recorder(_Sub):
        def deliver(self, messages: Any, frames: bytes) -> None:
            calls.append((id(self), [m.stream for m in messages], frames))

    for name in ("btc-usd@trade", "btc-usd@trade", "eth-usd@trade"):
        hub.subscribe(Recorder(), [parse_stream(name, hub.symbols)])
    assert len(hub._groups) == 2
    _feed(state, hub, [trade(k, k, 10_000, 1) for k in (1, 2, 3)] + [trade(4, 1, 1, 1, symbol=2)])
    assert sorted(len(streams) for _, streams, _ in calls) == [1, 3, 3]
    for _, streams, frames in calls:
        assert frames.count(b'"e":"trade"') == len(streams)


def test_subscribe_starts_each_stream_with_its_latest_value() -> None:
    """``Hub.subscribe``: "already subscribed ones are kept as they are ... A depth stream
    starts with a snapshot; ticker and kline streams with their latest value, a status
    stream with the symbol's status"; ``check_subscribe``: counts what ``client`` lacks."""
    _says(hub_mod, "A depth stream starts with a snapshot; ticker and kline streams with their")
    state, hub = _market()
    names = ["btc-usd@depth", "btc-usd@ticker", "btc-usd@kline_5m", "btc-usd@status"]
    early = _subscribe(hub, *names, "btc-usd@trade")
    assert [m["stream"] for m in early.got] == ["btc-usd@depth", "btc-usd@status"]
    _feed(state, hub, [trade(1, 1, 10_000, 1)])
    late = _subscribe(hub, *names)
    got = {m["stream"]: m["data"] for m in late.got}
    assert list(got) == names and got["btc-usd@ticker"]["c"] == "100.00"
    assert got["btc-usd@kline_5m"]["k"]["c"] == "100.00" and got["btc-usd@status"]["S"] == "TRADING"
    before = len(late.got)
    hub.subscribe(late, [parse_stream("btc-usd@depth", hub.symbols)])
    assert len(late.got) == before
    _says(hub_mod, "raises ``RequestError`` when they would take it over ``max_subscriptions``")
    hub.max_subscriptions = 5
    more = [parse_stream(n, hub.symbols) for n in ("btc-usd@depth", "btc-usd@trade")]
    assert hub.check_subscribe(late, more + more) == more[1:]
    with pytest.raises(RequestError) as err:
        hub.check_subscribe(late, [*more, parse_stream("eth-usd@trade", hub.symbols)])
    assert err.value.code is ErrorCode.TOO_MANY_SUBSCRIPTIONS


def test_depth_snapshot_rendered_once_per_book_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Hub.depth_snapshot``: "as of the diffs published so far (cached per book version: a
    burst of subscribers or resnapshots renders it once)"."""
    _says(hub_mod, "a burst of subscribers or resnapshots renders it once")
    count: list[Any] = [0]
    real = messages.depth_snapshot
    monkeypatch.setattr(messages, "depth_snapshot", _spy(count, real))
    state, hub = _market()
    _feed(state, hub, [level(1, Side.BUY, 9_000, 1)])
    subs = [_subscribe(hub, "btc-usd@depth") for _ in range(5)]
    assert len(count) == 2 and len({json.dumps(s.got) for s in subs}) == 1
    _feed(state, hub, [level(2, Side.BUY, 9_100, 1)])
    hub.depth_snapshot("btc-usd@depth")
    assert len(count) == 3


def test_a_candles_close_is_a_final_message_and_frames_are_made_once() -> None:
    """``Message``: "its JSON and the server's WebSocket text frame of it (unmasked, no
    extension), both made once"; ``final``: "A value that must reach the client even when a
    newer one of its stream follows (a candle's close)": ``Hub.publish`` marks it."""
    _says(hub_mod, "(a candle's close): conflation never replaces it")
    state, hub = _market()
    finals: list[tuple[bool, bool]] = []

    class Recorder(_Sub):
        def deliver(self, messages: Any, frames: bytes) -> None:
            assert frames == b"".join(m.frame for m in messages)
            for m in messages:
                assert m.frame[0] == 0x81 and not m.frame[1] & 0x80  # text, final, unmasked
                assert m.frame.endswith(m.payload)
                finals.append((m.final, json.loads(m.payload)["data"]["k"]["x"]))

    hub.subscribe(Recorder(), [parse_stream("btc-usd@kline_1m", hub.symbols)])
    _feed(state, hub, [trade(1, 1, 10_000, 1)])
    _feed(state, hub, [trade(2, 2, 10_000, 1, ts=T0 + MIN)])
    assert finals == [(False, False), (True, True), (False, False)]
