"""The HTTP side of the market-data port: the page's static files and a small JSON API for
what a page needs once when it opens (symbols, recent candles, recent trades, the book and the
24h ticker: the gateways' REST API serves these last two from here, and the last price, the
best bid and ask and the average price of the last 5 minutes, which only the REST API asks
for).

Served from websockets' ``process_request`` hook, so the page and its WebSocket share one
port and origin. Only GET; every file is read once at start (the page is a few kilobytes).
``/api/config`` tells the page where the gateway's REST API is, for its trading panels.
"""

from __future__ import annotations

import http
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, NamedTuple
from urllib.parse import parse_qs

import msgspec
from websockets.datastructures import Headers
from websockets.http11 import Response

from config.schema import RingexConfig
from procs.core.market.candles import INTERVALS
from procs.core.market.state import MarketState, SymbolMarket
from procs.core.market.tape import TRADES_KEPT
from procs.marketdata import messages
from procs.marketdata.requests import cut, shown

STATIC_DIR: Final = Path(__file__).with_name("static")

_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

_encode = msgspec.json.Encoder().encode


class Target(NamedTuple):
    path: str
    query: str


def split_target(target: str) -> Target:
    """A request target's path and query. A request line carries the origin form
    (``/path?query``): split at the first ``?``, not with ``urlsplit``, which reads a
    target starting ``//`` as a network location and raises on one like ``//[x``."""
    path, _, query = target.partition("?")
    return Target(path, query.partition("#")[0])


#: What every answer says of how a browser may use it (review 95). The trading page keeps an
#: API secret in sessionStorage: no script but its own files may run on it (no inline or
#: injected one: a value shown could never become code), no other site may frame it (its
#: buttons under another page's), and nothing is sniffed into another type. It connects to
#: its own feed and to the gateway's REST API, on another port (and host, as configured).
SECURITY_HEADERS: Final = (
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' http: https: ws: wss:; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


def response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("Connection", "close"),
            *SECURITY_HEADERS,
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def text(status: http.HTTPStatus, message: str) -> Response:
    return response(status, (message + "\n").encode(), "text/plain; charset=utf-8")


def _json(value: Any) -> Response:
    return response(http.HTTPStatus.OK, _encode(value), "application/json")


#: Hosts a server binds to listen on every address: no use to a browser as a URL.
_ANY_HOST: Final = frozenset({"", "0.0.0.0", "::"})


def page_config(cfg: RingexConfig) -> dict[str, Any]:
    """What ``/api/config`` answers: ``{"rest": {"host": ..., "port": ...}}`` for the first
    gateway that serves a REST API, host None when it listens on every address (the page then
    uses its own host name); ``{"rest": None}`` when no gateway has one on a fixed port."""
    for gw in cfg.gateways:
        rest = gw.rest
        if rest is not None and rest.port:
            host = None if rest.host in _ANY_HOST else rest.host
            return {"rest": {"host": host, "port": rest.port}}
    return {"rest": None}


#: The most rows an ``/api/*`` answer holds (``limit``): as many as the tape keeps, which
#: ``_recent_trades``' trimming takes for the oldest trade on it.
MAX_LIMIT = TRADES_KEPT

#: The one-row answers of a symbol's market (``_ticker_row``): without a ``symbol``, every
#: symbol's, in an array in the config's order.
TICKER_PATHS: Final = frozenset({"/api/ticker", "/api/price", "/api/bookTicker"})
#: The ``/api/*`` answers of one symbol's market (``symbol``, and a ``limit`` each takes).
MARKET_PATHS: Final = frozenset(
    {"/api/klines", "/api/trades", "/api/depth", "/api/avgPrice", *TICKER_PATHS}
)


def _ticker_row(path: str, market: SymbolMarket) -> dict[str, Any]:
    """``market``'s 24h ticker, last price or best bid and ask (``TICKER_PATHS``)."""
    s = market.symbol
    if path == "/api/ticker":
        return messages.ticker_data(s, market.ticker.ticker())
    if path == "/api/price":
        return messages.price_data(s, market.ticker.last)
    book = market.book  # the live book's, changes not yet diffed too
    return messages.book_ticker_data(s, book.best_bid(), book.best_ask())


def _avg_price(market: SymbolMarket, now_ns: int) -> dict[str, Any]:
    """``market``'s average price over the minute under way (by the wall clock: the candles
    advance only with events) and the ones before it (``messages.AVG_PRICE_MINS``)."""
    minute = INTERVALS["1m"]
    start = now_ns - now_ns % minute - (messages.AVG_PRICE_MINS - 1) * minute
    recent = market.candles["1m"].history(messages.AVG_PRICE_MINS)
    last = market.tape.recent(1)
    return messages.avg_price_data(
        market.symbol, [c for c in recent if c.open_ns >= start], last[-1] if last else None
    )


class _Rendered:
    """What a source (a tape, a candle series) shows of items that never change (a trade, a
    closed candle), each rendered once, by its key; a source restored since (a reseed)
    starts anew."""

    __slots__ = ("by_key", "source")

    def __init__(self, source: Any) -> None:
        self.source = source
        self.by_key: dict[int, dict[str, Any]] = {}

    @classmethod
    def of(cls, table: dict[Any, _Rendered], key: Any, source: Any) -> _Rendered:
        found = table.get(key)
        if found is None or found.source is not source:
            found = table[key] = cls(source)
        return found

    def get(self, key: int, render: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        data = self.by_key.get(key)
        if data is None:
            data = self.by_key[key] = render(*args)
        return data

    def keep(self, held: int, first: Callable[[], int]) -> None:
        """Past twice the ``held`` items the source holds, forget those before ``first()``,
        the oldest it still holds."""
        if len(self.by_key) > 2 * held:
            oldest = first()
            for key in [k for k in self.by_key if k < oldest]:
                del self.by_key[key]


class Site:
    def __init__(
        self,
        state: MarketState,
        static_dir: Path = STATIC_DIR,
        *,
        config: dict[str, Any] | None = None,
    ) -> None:
        """``config``: the ``/api/config`` answer (``page_config``); default: no REST API."""
        self.state = state
        self.config = _encode(config if config is not None else {"rest": None})
        self.files = {
            "/" + p.name: (p.read_bytes(), _TYPES.get(p.suffix, "application/octet-stream"))
            for p in sorted(static_dir.iterdir())
            if p.is_file() and p.suffix in _TYPES
        }
        if "/index.html" in self.files:
            self.files["/"] = self.files["/index.html"]
        #: Rendering costs more than encoding (1,000 levels a side: 2.5 ms, review 38), so
        #: what an answer shows is rendered once and each answer cut from it (review 47: a
        #: cache by limit was rendered anew for each limit a client cycled through):
        #: ``/api/depth``: by symbol, the book's ``MAX_LIMIT`` levels a side at its version;
        self._depths: dict[str, tuple[Any, int, dict[str, Any]]] = {}
        #: ``/api/trades``: by symbol, the tape and each trade on it by its id (a trade never
        #: changes);
        self._trades: dict[Any, _Rendered] = {}
        #: ``/api/klines``: by symbol and interval, the series and each closed candle by its
        #: open time (a closed candle never changes; the open one is rendered each answer).
        #: A tape or series restored since (a reseed) starts its own.
        self._candles: dict[Any, _Rendered] = {}

    def _depth(self, market: Any, limit: int) -> bytes:
        """``market``'s depth answer at ``limit`` levels: rendered once per book version."""
        key, book = market.symbol.stream, market.book
        cached = self._depths.get(key)
        if cached is None or cached[0] is not book or cached[1] != book.version:
            # a new version, or a book restored since: render its deepest answer
            data = messages.depth_data(market.symbol, book.snapshot(MAX_LIMIT))
            cached = self._depths[key] = (book, book.version, data)
        return messages.depth_cut(cached[2], limit)

    def _recent_trades(self, market: Any, limit: int) -> Response:
        s, tape = market.symbol, market.tape
        rendered = _Rendered.of(self._trades, s.stream, tape)
        out = [rendered.get(t.trade_id, messages.trade_data, s, t) for t in tape.recent(limit)]
        rendered.keep(MAX_LIMIT, lambda: tape.recent(MAX_LIMIT)[0].trade_id)
        return _json(out)

    def _klines(self, market: Any, interval: str, limit: int) -> Response:
        s, series = market.symbol, market.candles[interval]
        rendered = _Rendered.of(self._candles, (s.stream, interval), series)
        closed = list(series.closed)
        count = limit - (series.current is not None)  # the open candle is the last one shown
        shown = closed[max(0, len(closed) - count) :] if count > 0 else []
        out = [rendered.get(c.open_ns, messages.candle_data, s, interval, c) for c in shown]
        if series.current is not None:  # open: it changes, rendered each answer
            out.append(messages.candle_data(s, interval, series.current))
        rendered.keep(series.closed.maxlen or MAX_LIMIT, lambda: closed[0].open_ns if closed else 0)
        return _json(out)

    def get(self, target: str) -> Response:
        """The response to ``GET target`` (path and query)."""
        parts = split_target(target)
        found = self.files.get(parts.path)
        if found is not None:
            return response(http.HTTPStatus.OK, *found)
        parsed = parse_qs(parts.query, keep_blank_values=True)  # a blank copy is a copy
        if twice := next((k for k, v in parsed.items() if len(v) > 1), None):
            # as the REST API: which copy counts is no guess to make (review 300)
            said = f"parameter {shown(twice)} is sent {len(parsed[twice])} times, once at most"
            return text(http.HTTPStatus.BAD_REQUEST, said)
        query = {k: v[0] for k, v in parsed.items()}
        if parts.path == "/api/config":
            return response(http.HTTPStatus.OK, self.config, "application/json")
        if parts.path == "/api/symbols":
            return _json(
                [
                    {
                        "symbol": m.symbol.name,
                        "stream": m.symbol.stream,
                        "priceDecimals": m.symbol.price_decimals,
                        "qtyDecimals": m.symbol.qty_decimals,
                        "status": messages.STATUS_NAMES[m.status.status],
                    }
                    for m in self.state.symbols.values()
                ]
            )
        if parts.path in TICKER_PATHS and "symbol" not in query:
            return _json([_ticker_row(parts.path, m) for m in self.state.symbols.values()])
        if parts.path in MARKET_PATHS:
            market = self.state.by_stream.get(query.get("symbol", "").lower())
            if market is None:
                known = ", ".join(sorted(self.state.by_stream))
                return text(
                    http.HTTPStatus.BAD_REQUEST,
                    f"symbol {shown(query.get('symbol', ''))} is unknown ({known})",
                )
            limit_raw = query.get("limit", "500")
            digits = limit_raw.isascii() and limit_raw.isdigit() and len(limit_raw) <= 4
            if not (digits and 1 <= int(limit_raw) <= MAX_LIMIT):
                return text(
                    http.HTTPStatus.BAD_REQUEST, f"limit {shown(limit_raw)} is not 1..{MAX_LIMIT}"
                )
            limit = int(limit_raw)
            if parts.path == "/api/trades":
                return self._recent_trades(market, limit)
            if parts.path == "/api/depth":
                return response(http.HTTPStatus.OK, self._depth(market, limit), "application/json")
            if parts.path in TICKER_PATHS:
                return _json(_ticker_row(parts.path, market))
            if parts.path == "/api/avgPrice":
                return _json(_avg_price(market, time.time_ns()))
            interval = query.get("interval", "1m")
            if interval not in INTERVALS:
                return text(
                    http.HTTPStatus.BAD_REQUEST,
                    f"interval {shown(interval)} is not one of {', '.join(INTERVALS)}",
                )
            return self._klines(market, interval, limit)
        return text(http.HTTPStatus.NOT_FOUND, f"no such page: {cut(parts.path)}")
