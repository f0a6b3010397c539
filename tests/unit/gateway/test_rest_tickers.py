"""``GET /api/v1/ticker/price`` and ``GET /api/v1/ticker/bookTicker``: the last trade's price
and the best bid and ask, as the most used venue APIs answer them (``{"symbol", "price"}``,
``{"symbol", "bidPrice", "bidQty", "askPrice", "askQty"}``), so a script written for them
reads ringex's. Served as ``ticker/24hr`` is: the gateway's proxy (``rest_public.py``) asks
the market-data port (``procs/marketdata/web.py``), here review 47's stand-in serving the real
``Site`` over a ``MarketState``; the figures are held to the same state's ``trades``,
``ticker/24hr`` and ``depth`` answers, and to the OpenAPI document."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema_rs
import msgspec
import pytest

from config.schema import RingexConfig, SymbolConfig
from procs.common.records import BookLevel
from procs.common.types import Side
from procs.core.market.state import MarketState, build_state
from procs.gateway.openapi import document
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import rest_exchange, run
from tests.unit.gateway.test_review47_rest_public import _get, _trades, market_data


def _with_xbt(cfg: RingexConfig) -> RingexConfig:
    """A second symbol, XBT-USD (bitcoin at 1 decimal), on the same matcher."""
    xbt = SymbolConfig(name="XBT-USD", id=2, price_decimals=1, qty_decimals=3, tick=1, base="BTC")
    m1 = msgspec.structs.replace(cfg.matchers[0], symbols=[*cfg.matchers[0].symbols, xbt.name])
    return msgspec.structs.replace(cfg, symbols=[*cfg.symbols, xbt], matchers=[m1])


@pytest.fixture
def public(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, reshape=_with_xbt)


def _schema(h: Harness, name: str) -> jsonschema_rs.Validator:
    """The OpenAPI document's schema ``name`` (or the 200 answer of ticker ``name``: "24hr",
    "price", "bookTicker"), its references resolved in the document."""
    doc = document(h.cfg)
    if name in ("24hr", "price", "bookTicker"):
        answer = doc["paths"][f"/api/v1/ticker/{name}"]["get"]["responses"]["200"]
        return jsonschema_rs.validator_for({**doc, **answer["content"]["application/json"]})
    return jsonschema_rs.validator_for({**doc, "$ref": f"#/components/schemas/{name}"})


def _book(h: Harness, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> MarketState:
    """A market-data state whose BTC-USD book holds these (price, qty) levels."""
    state, sym, now = build_state(h.cfg), h.cfg.symbols[0].id, time.time_ns()
    sides = [(Side.BUY, bids), (Side.SELL, asks)]
    levels = [(side, p, q) for side, pairs in sides for p, q in pairs]
    for seq, (side, price, qty) in enumerate(levels, 1):
        state.process(BookLevel(seq, now, sym, side, price, qty, 1), [])
    state.flush()  # as the feed does after each batch (a depth answer is of the last diff)
    return state


def test_the_price_is_the_last_trades_and_null_before_the_first(public: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        price = _schema(public, "Price")
        async with market_data(api, _trades(public.cfg, 3)):
            status, body = await _get(url, "/api/v1/ticker/price", symbol="BTC-USD")
            _, trades = await _get(url, "/api/v1/trades", symbol="BTC-USD")
            _, ticker = await _get(url, "/api/v1/ticker/24hr", symbol="BTC-USD")
        assert status == 200 and body == {"symbol": "BTC-USD", "price": trades[-1]["price"]}, body
        assert body["price"] == ticker["lastPrice"] and price.is_valid(body), body
        # Binance's REST names, as the document says them (review 312: the stream's keys)
        assert _schema(public, "Ticker").is_valid(ticker), ticker
        assert all(_schema(public, "MarketTrade").is_valid(t) for t in trades), trades
        async with market_data(api, build_state(public.cfg)):
            status, body = await _get(url, "/api/v1/ticker/price", symbol="BTC-USD")
        assert (status, body) == (200, {"symbol": "BTC-USD", "price": None}), body
        assert price.is_valid(body), body

    run(public, scenario)


def test_the_book_ticker_is_the_best_level_of_each_side(public: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        book = _schema(public, "BookTicker")
        state = _book(public, [(2_999_950, 30), (2_999_900, 70)], [(3_000_050, 12)])
        async with market_data(api, state):
            status, body = await _get(url, "/api/v1/ticker/bookTicker", symbol="BTC-USD")
            _, depth = await _get(url, "/api/v1/depth", symbol="BTC-USD", limit="1")
        (bid_price, bid_qty), (ask_price, ask_qty) = depth["bids"][0], depth["asks"][0]
        assert status == 200 and body == {
            "symbol": "BTC-USD", "bidPrice": bid_price, "bidQty": bid_qty,
            "askPrice": ask_price, "askQty": ask_qty,
        }, body  # fmt: skip
        assert book.is_valid(body), body
        async with market_data(api, _book(public, [(2_999_950, 30)], [])):
            status, body = await _get(url, "/api/v1/ticker/bookTicker", symbol="BTC-USD")
        assert status == 200 and body["bidPrice"] == bid_price, body
        assert (body["askPrice"], body["askQty"]) == (None, None) and book.is_valid(body), body

    run(public, scenario)


TICKERS = ("/api/v1/ticker/24hr", "/api/v1/ticker/price", "/api/v1/ticker/bookTicker")


def test_each_ticker_takes_a_known_symbol_and_nothing_else(public: Harness) -> None:
    """A ``limit`` (one row a symbol) is refused naming it (-1104), an unknown symbol naming
    it (-1121); the document lists ``symbol`` alone, optional."""

    async def scenario(api: RestApi, url: str) -> None:
        async with market_data(api, _trades(public.cfg, 1)):
            for path in TICKERS:
                status, body = await _get(url, path, symbol="BTC-USD", limit="1")
                assert (status, body["code"]) == (400, -1104) and "limit" in body["msg"], body
                status, body = await _get(url, path, symbol="DOGE-USD")
                assert (status, body["code"]) == (400, -1121), body
                assert "DOGE-USD" in body["msg"], body
                doc = document(public.cfg)["paths"][path]["get"]
                assert [(p["name"], p["required"]) for p in doc["parameters"]] == [
                    ("symbol", False)
                ], doc

    run(public, scenario)


def test_without_a_symbol_each_ticker_answers_every_symbols(public: Harness) -> None:
    """As the venues' tickers: no ``symbol``, an array of every symbol's answer, in the
    config's order, each what that symbol's own request answers."""

    async def scenario(api: RestApi, url: str) -> None:
        names = [s.name for s in public.cfg.symbols]
        assert len(names) > 1, names
        async with market_data(api, _trades(public.cfg, 2)):
            for path in TICKERS:
                status, every = await _get(url, path)
                assert status == 200 and isinstance(every, list), every
                one = [(await _get(url, path, symbol=name))[1] for name in names]
                assert every == one, (path, every)
                assert _schema(public, path.rsplit("/", 1)[1]).is_valid(every), every

    run(public, scenario)
