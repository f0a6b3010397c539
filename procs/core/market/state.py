"""Every symbol's market state behind one ``process(event)``: what the feed shell drives.

Sans-I/O: events in (any matcher output record; those that do not change market data are
ignored), updates out. Trades go out one by one, as they happened; depth, ticker and candles
(and the best bid and ask, when a diff moved them) are collected and leave once per ``flush``
(the shell calls it after each batch it reads), so a burst of events costs one diff and one
ticker per symbol, not one per event. ``advance`` moves the clock forward without events,
which opens candles on time.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from config.schema import RingexConfig
from procs.common.records import BookLevel, Record, SymbolStatus, Trade
from procs.common.types import Side, TradingStatus
from procs.core.market.book import BookTop, DepthDiff, L2Book
from procs.core.market.candles import INTERVALS, Candle, CandleSeries
from procs.core.market.symbols import MarketSymbol
from procs.core.market.tape import TradeTape
from procs.core.market.ticker import RollingTicker, Ticker


@dataclass(frozen=True)
class CandleUpdate:
    symbol: int
    interval: str
    candle: Candle


@dataclass(frozen=True)
class StatusUpdate:
    """A symbol's trading status, as of the exchange's seq ``seq`` (0: never changed)."""

    symbol: int
    status: TradingStatus
    seq: int
    ts_ns: int


#: What ``process`` and ``flush`` give the server to publish.
Update = Trade | DepthDiff | BookTop | Ticker | CandleUpdate | StatusUpdate


class SymbolMarket:
    """One symbol: L2 book, trade tape, 24h ticker, candles at every interval. Its clock
    (``clock_ns``) is the newest time of its own events (and of the wall clock, once the
    rings are caught up): another matcher's ring running ahead (a backlog on this one)
    must not close the candles this symbol's trades still belong in."""

    clock_ns = 0  # (a class default: a state saved before it existed loads with 0)

    def __init__(self, symbol: MarketSymbol, candle_history: int = 500) -> None:
        self.symbol = symbol
        self.book = L2Book(symbol.id)
        self.tape = TradeTape()
        self.ticker = RollingTicker(symbol.id)
        self.candles = {name: CandleSeries(name, candle_history) for name in INTERVALS}
        self.status = StatusUpdate(symbol.id, TradingStatus.OPEN, 0, 0)
        self.last_seq = 0

    def trade(self, t: Trade, now_ns: int = 0) -> bool:
        """Apply a trade; False when it is a replay already applied. Its candles and its
        24h ticker minute are those open at ``now_ns`` when the trade is stamped earlier
        (the clock: the newest event time before it in the exchange's order), so where
        batches end does not matter (review 181: the ticker took the trade's own stamp, and
        a restart that read the ring in other batches counted it in another minute)."""
        if t.trade_id <= self.tape.last_trade_id:
            return False
        self.tape.process(t)
        at = max(t.ts_ns, now_ns)
        self.ticker.trade(at, t.trade_id, t.price, t.qty)
        for series in self.candles.values():
            series.trade(at, t.price, t.qty, t.trade_id, t.aggressor == Side.BUY)
        return True

    def advance(self, now_ns: int) -> None:
        self.clock_ns = max(self.clock_ns, now_ns)
        self.ticker.advance(now_ns)
        for series in self.candles.values():
            series.advance(now_ns)

    def flush(self, out: list[Update]) -> None:
        diff = self.book.take_diff()
        if diff is not None:
            out.append(diff)
            top = self.book.take_top()
            if top is not None:
                out.append(top)
        ticker = self.ticker.take_changed()
        if ticker is not None:
            out.append(ticker)
        for name, series in self.candles.items():
            out += [CandleUpdate(self.symbol.id, name, c) for c in series.take_changed()]


def build_state(cfg: RingexConfig) -> MarketState:
    """An empty state for the config's symbols."""
    return MarketState([MarketSymbol.from_config(s) for s in cfg.symbols])


class MarketState:
    def __init__(self, symbols: Sequence[MarketSymbol], candle_history: int = 500) -> None:
        self.symbols = {s.id: SymbolMarket(s, candle_history) for s in symbols}
        self.by_stream = {m.symbol.stream: m for m in self.symbols.values()}
        self.now_ns = 0  # the newest time seen, from events or advance
        self.last_seq = 0

    def process(self, event: Record, out: list[Update]) -> None:
        """Apply one event; a trade is appended to ``out`` at once."""
        kind = type(event)
        if kind is BookLevel:
            level: BookLevel = event  # type: ignore[assignment]
            market = self.symbols.get(level.symbol)
            if market is not None:
                market.book.process(level)
                market.clock_ns = max(market.clock_ns, level.ts_ns)
                self._saw(level.seq, level.ts_ns)
        elif kind is Trade:
            trade: Trade = event  # type: ignore[assignment]
            market = self.symbols.get(trade.symbol)
            if market is not None and market.trade(trade, market.clock_ns):
                market.clock_ns = max(market.clock_ns, trade.ts_ns)
                out.append(trade)
                self._saw(trade.seq, trade.ts_ns)
        elif kind is SymbolStatus:
            status: SymbolStatus = event  # type: ignore[assignment]
            market = self.symbols.get(status.symbol)
            # a change only: the matcher also answers an end of session, or a halt of a
            # halted symbol, with its status as it was, which is no halt or resume
            if (
                market is not None
                and status.seq > market.status.seq
                and status.status != market.status.status
            ):
                market.status = StatusUpdate(status.symbol, status.status, status.seq, status.ts_ns)
                market.clock_ns = max(market.clock_ns, status.ts_ns)
                out.append(market.status)
                self._saw(status.seq, status.ts_ns)

    def reseed(self, event: BookLevel | SymbolStatus, out: list[Update]) -> None:
        """Apply a level or status set from a matcher's state at its replay mark
        (``procs/marketdata/reseed.py``) as ``process`` does, but leave the clocks: the
        mark's time is the matcher's restart, and the replayed events after it are older
        (their trades' candles are those of their own time)."""
        market = self.symbols.get(event.symbol)
        if market is None:
            return
        if isinstance(event, BookLevel):
            market.book.process(event)
        elif event.seq > market.status.seq and event.status != market.status.status:
            market.status = StatusUpdate(event.symbol, event.status, event.seq, event.ts_ns)
            out.append(market.status)
        self.last_seq = max(self.last_seq, event.seq)

    def _saw(self, seq: int, ts_ns: int) -> None:
        self.last_seq = max(self.last_seq, seq)
        self.now_ns = max(self.now_ns, ts_ns)

    def advance(self, now_ns: int, held: Collection[int] = ()) -> None:
        """Move every symbol's clock to ``now_ns`` (the feed's, kept behind the wall clock;
        ignored where a symbol's own events are ahead of it) but those in ``held``: their
        ring is behind, so their events are older than it. Not to the newest event of any
        symbol: another matcher's ring running ahead would close candles this symbol's
        trades, still on their way within the clock's lag, belong in (review 53)."""
        if not held:
            self.now_ns = max(self.now_ns, now_ns)
        for symbol, market in self.symbols.items():
            if symbol not in held:
                market.advance(now_ns)

    def flush(self) -> list[Update]:
        """Depth diffs, best bids and asks, tickers and candles changed since the last
        flush, symbol by symbol."""
        out: list[Update] = []
        for market in self.symbols.values():
            market.advance(market.clock_ns)  # its events' time alone also rolls its candles
            market.flush(out)
        return out
