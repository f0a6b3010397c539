"""Updates rendered as the JSON clients get: ``{"stream": name, "data": {...}}``, with field
names as the most used venue APIs spell them, times in ms and prices and sizes as decimal
strings. Each update is rendered once and the same bytes go to every subscriber."""

from __future__ import annotations

from typing import Any

import msgspec

from procs.common.records import Trade
from procs.common.types import Side, TradingStatus
from procs.core.market.book import BookTop, DepthDiff, DepthSnapshot, Levels
from procs.core.market.candles import Candle
from procs.core.market.state import CandleUpdate, StatusUpdate, Update
from procs.core.market.symbols import MarketSymbol
from procs.core.market.ticker import Ticker

_encode = msgspec.json.Encoder().encode


def _ms(ns: int) -> int:
    return ns // 1_000_000


def wrap(stream: str, data: dict[str, Any]) -> bytes:
    return _encode({"stream": stream, "data": data})


def trade_data(s: MarketSymbol, t: Trade) -> dict[str, Any]:
    return {
        "e": "trade",
        "E": _ms(t.ts_ns),
        "s": s.name,
        "t": t.trade_id,
        "p": s.price(t.price),
        "q": s.qty(t.qty),
        "T": _ms(t.ts_ns),
        "m": t.aggressor == Side.SELL,  # the buyer was the maker
        "M": True,  # Binance's unused field, which its parsers read (review 330)
        "u": t.seq,
    }


def trade(s: MarketSymbol, t: Trade) -> tuple[str, bytes]:
    stream = f"{s.stream}@trade"
    return stream, wrap(stream, trade_data(s, t))


def _levels(s: MarketSymbol, levels: Levels) -> list[list[str]]:
    return [[s.price(p), s.qty(q)] for p, q in levels]


def depth_diff(s: MarketSymbol, d: DepthDiff) -> tuple[str, bytes]:
    stream = f"{s.stream}@depth"
    data = {
        "e": "depthUpdate",
        "E": _ms(d.ts_ns),
        "s": s.name,
        "U": d.first_update_id,
        "u": d.last_update_id,
        "b": _levels(s, d.bids),
        "a": _levels(s, d.asks),
    }
    return stream, wrap(stream, data)


def depth_snapshot(s: MarketSymbol, d: DepthSnapshot) -> bytes:
    return wrap(f"{s.stream}@depth", _depth_data(s, d))


def depth_partial(stream: str, s: MarketSymbol, d: DepthSnapshot) -> bytes:
    """``<symbol>@depth<N>``: the best N levels a side whole (``d``'s), as of
    ``lastUpdateId``: a client reads each message alone, no diffs to apply."""
    return wrap(stream, {**_depth_data(s, d), "e": "depthPartial"})


def depth_json(s: MarketSymbol, d: DepthSnapshot) -> bytes:
    """A depth snapshot as a REST answer (no stream envelope)."""
    return _encode(_depth_data(s, d))


def depth_data(s: MarketSymbol, d: DepthSnapshot) -> dict[str, Any]:
    """``depth_json``'s value, to be cut to fewer levels and encoded (``depth_cut``)."""
    return _depth_data(s, d)


def depth_cut(data: dict[str, Any], limit: int) -> bytes:
    """``depth_json`` of the best ``limit`` levels a side of a ``depth_data``."""
    return _encode({**data, "bids": data["bids"][:limit], "asks": data["asks"][:limit]})


def _depth_data(s: MarketSymbol, d: DepthSnapshot) -> dict[str, Any]:
    return {
        "e": "depthSnapshot",
        "E": _ms(d.ts_ns),
        "s": s.name,
        "lastUpdateId": d.last_update_id,
        "bids": _levels(s, d.bids),
        "asks": _levels(s, d.asks),
    }


def book_ticker(s: MarketSymbol, top: BookTop) -> tuple[str, bytes]:
    """``<symbol>@bookTicker``: the best bid and ask (b, B, a, A: price and size; null for
    an empty side) as of update ``u``, the depth stream's update id."""
    stream = f"{s.stream}@bookTicker"
    bid, ask = top.bid, top.ask
    data = {
        "e": "bookTicker",
        "E": _ms(top.ts_ns),
        "s": s.name,
        "u": top.update_id,
        "b": s.price(bid[0]) if bid else None,
        "B": s.qty(bid[1]) if bid else None,
        "a": s.price(ask[0]) if ask else None,
        "A": s.qty(ask[1]) if ask else None,
    }
    return stream, wrap(stream, data)


def ticker(s: MarketSymbol, t: Ticker, top: BookTop | None = None) -> tuple[str, bytes]:
    """``<symbol>@ticker``: Binance's 24hrTicker, ``t`` with the book's best bid and ask,
    ``top`` (``L2Book.last_top``; None shows both sides empty). ``E`` is the newer of the
    two's times: the hub sends the ticker again when a batch moved the top (review 334)."""
    stream = f"{s.stream}@ticker"
    data = _ticker_data(s, t)
    bid, ask = (top.bid, top.ask) if top is not None else (None, None)
    # An empty side is Binance's zeros (its ticker's b, B, a, A are always strings), where
    # @bookTicker, documented so, shows null.
    data["b"], data["B"] = (s.price(bid[0]), s.qty(bid[1])) if bid else (s.price(0), s.qty(0))
    data["a"], data["A"] = (s.price(ask[0]), s.qty(ask[1])) if ask else (s.price(0), s.qty(0))
    if top is not None and top.ts_ns > t.ts_ns:
        data["E"] = _ms(top.ts_ns)
    return stream, wrap(stream, data)


def ticker_data(s: MarketSymbol, t: Ticker | None) -> dict[str, Any]:
    """The 24h ticker as a REST answer (no stream envelope): ``s`` alone before the symbol's
    first trade."""
    return _ticker_data(s, t) if t is not None else {"s": s.name}


def _vwap(s: MarketSymbol, quote_volume: int, volume: int) -> int:
    """Quote volume / volume (not 0) at a notional's decimals, half up (``_ticker_data``)."""
    scale: int = 10**s.qty_decimals
    return (2 * quote_volume * scale + volume) // (2 * volume)


def _ticker_data(s: MarketSymbol, t: Ticker) -> dict[str, Any]:
    pct = t.change_bps_x100()
    # The weighted average price, quote volume / volume, at a notional's decimals (as "q")
    # rounded half up; 0 for a window with no trade, as the venues show it.
    vwap = _vwap(s, t.quote_volume, t.volume) if t.volume else 0
    return {
        "e": "24hrTicker",
        "E": _ms(t.ts_ns),
        "s": s.name,
        "p": s.price(t.change),
        "P": f"{'-' if pct < 0 else ''}{abs(pct) // 100}.{abs(pct) % 100:02d}",
        "w": s.notional(vwap),
        "x": s.price(t.prev_close),  # "0.00" while the window has dropped no trade yet
        "o": s.price(t.open),
        "h": s.price(t.high),
        "l": s.price(t.low),
        "c": s.price(t.last),
        "Q": s.qty(t.last_qty),
        "v": s.qty(t.volume),
        "q": s.notional(t.quote_volume),
        "O": _ms(t.open_ns),
        "C": _ms(t.ts_ns),
        "F": t.first_trade_id,
        "L": t.last_trade_id,
        "n": t.trades,
    }


def price_data(s: MarketSymbol, last: int) -> dict[str, Any]:
    """REST ``ticker/price``: the last trade's price, None before the symbol's first trade
    (the keys the most used venue APIs give it: a script written for them reads it)."""
    return {"symbol": s.name, "price": s.price(last) if last else None}


#: ``avgPrice``'s window in minutes: the minute under way and the four before it.
AVG_PRICE_MINS = 5


def avg_price_data(s: MarketSymbol, minutes: list[Candle], last: Trade | None) -> dict[str, Any]:
    """REST ``avgPrice`` (the venues' keys): ``price``, the volume-weighted average price of
    the trades in ``minutes`` (the 1m candles of the window) at a notional's decimals, as the
    ticker's weighted average, else, none traded in it, the ``last`` trade's price;
    ``closeTime``, the last trade's time (ms); both None before the symbol's first trade."""
    volume = sum(c.volume for c in minutes)
    if volume:
        price: int | None = _vwap(s, sum(c.quote_volume for c in minutes), volume)
    else:
        price = None if last is None else last.price * 10**s.qty_decimals
    return {
        "symbol": s.name,
        "mins": AVG_PRICE_MINS,
        "price": None if price is None else s.notional(price),
        "closeTime": None if last is None else _ms(last.ts_ns),
    }


def book_ticker_data(
    s: MarketSymbol, bid: tuple[int, int] | None, ask: tuple[int, int] | None
) -> dict[str, Any]:
    """REST ``ticker/bookTicker``: the best bid and ask, price and size, None for an empty
    side (as ``price_data``, the venues' keys)."""
    return {
        "symbol": s.name,
        "bidPrice": s.price(bid[0]) if bid else None,
        "bidQty": s.qty(bid[1]) if bid else None,
        "askPrice": s.price(ask[0]) if ask else None,
        "askQty": s.qty(ask[1]) if ask else None,
    }


def candle_data(s: MarketSymbol, interval: str, c: Candle) -> dict[str, Any]:
    return {
        "t": _ms(c.open_ns),
        "T": _ms(c.close_ns) - 1,
        "s": s.name,
        "i": interval,
        "o": s.price(c.open),
        "h": s.price(c.high),
        "l": s.price(c.low),
        "c": s.price(c.close),
        "v": s.qty(c.volume),
        "q": s.notional(c.quote_volume),
        "n": c.trades,
        "f": c.first_trade_id,
        "L": c.last_trade_id,
        "x": c.closed,
        "V": s.qty(c.taker_buy_volume),
        "Q": s.notional(c.taker_buy_quote_volume),
        "B": "0",  # Binance's unused field, which its parsers read (review 330)
    }


def kline(s: MarketSymbol, u: CandleUpdate, ts_ns: int) -> tuple[str, bytes]:
    stream = f"{s.stream}@kline_{u.interval}"
    data = {"e": "kline", "E": _ms(ts_ns), "s": s.name, "k": candle_data(s, u.interval, u.candle)}
    return stream, wrap(stream, data)


#: A trading status as clients read it (the names the most used venue APIs give symbols).
STATUS_NAMES = {TradingStatus.OPEN: "TRADING", TradingStatus.HALTED: "HALT"}


def status(s: MarketSymbol, u: StatusUpdate) -> tuple[str, bytes]:
    stream = f"{s.stream}@status"
    data = {"e": "status", "E": _ms(u.ts_ns), "s": s.name, "S": STATUS_NAMES[u.status], "u": u.seq}
    return stream, wrap(stream, data)


def render(
    s: MarketSymbol, update: Update, now_ns: int, top: BookTop | None = None
) -> tuple[str, bytes]:
    """The stream an update goes to and its message. A ticker's shows ``top``, the symbol's
    best bid and ask (``ticker``)."""
    if isinstance(update, StatusUpdate):
        return status(s, update)
    if isinstance(update, Trade):
        return trade(s, update)
    if isinstance(update, DepthDiff):
        return depth_diff(s, update)
    if isinstance(update, BookTop):
        return book_ticker(s, update)
    if isinstance(update, Ticker):
        return ticker(s, update, top)
    return kline(s, update, now_ns)


def heartbeat(now_ns: int) -> bytes:
    """The application heartbeat a browser can see (protocol pings are invisible to it)."""
    return wrap("heartbeat", {"e": "heartbeat", "E": _ms(now_ns)})
