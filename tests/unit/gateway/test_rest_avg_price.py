"""``GET /api/v1/avgPrice``: the volume-weighted average price of the trades of the last five
minutes (the minute under way and the four before it, by the 1m candles and the wall clock),
else the last trade's price, with the last trade's time, as the most used venue API answers it
(``{"mins", "price", "closeTime"}``, ``symbol`` mandatory). Answered by the market-data port
through the gateway's proxy, here review 47's stand-in serving the real ``Site``; each answer
held to the OpenAPI document's schema."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema_rs
import pytest

from procs.common.records import Trade
from procs.common.types import Side
from procs.core.market.state import MarketState, build_state
from procs.core.market.symbols import decimal_string
from procs.gateway.openapi import document
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import rest_exchange, run
from tests.unit.gateway.test_review47_rest_public import _get, market_data

MINUTE_NS = 60 * 10**9


@pytest.fixture
def public(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def _traded(h: Harness, trades: list[tuple[int, int, int]]) -> MarketState:
    """A market-data state that has seen these BTC-USD trades: (ts_ns, price, qty) each."""
    state = build_state(h.cfg)
    for i, (ts_ns, price, qty) in enumerate(trades, 1):
        trade = Trade(
            *(i, ts_ns, i, 1), price=price, qty=qty, aggressor=Side.BUY,
            maker_order_id=2 * i, maker_account=602, maker_gateway=1, maker_leaves=0,
            taker_order_id=2 * i + 1, taker_account=601, taker_gateway=1, taker_leaves=0,
        )  # fmt: skip
        state.process(trade, [])
    state.flush()
    return state


def test_the_average_is_the_last_five_minutes_trades_then_the_last_price(
    public: Harness,
) -> None:
    sym = public.cfg.symbols[0]
    notional = sym.price_decimals + sym.qty_decimals
    doc = document(public.cfg)
    schema = jsonschema_rs.validator_for({**doc, "$ref": "#/components/schemas/AvgPrice"})
    now = time.time_ns()
    old = now - now % MINUTE_NS - 6 * MINUTE_NS  # before the window
    recent = [(now - 2 * MINUTE_NS, 3_000_000, 30), (now, 3_000_100, 10)]

    async def scenario(api: RestApi, url: str) -> None:
        async with market_data(api, _traded(public, [(old, 9_000_000, 50), *recent])):
            status, body = await _get(url, "/api/v1/avgPrice", symbol="btc-usd")
        # (3,000,000 x 30 + 3,000,100 x 10) / 40 = 3,000,025 price units: the old trade out
        average = decimal_string(3_000_025 * 10**sym.qty_decimals, notional)
        assert status == 200 and schema.is_valid(body), body
        assert body == {"symbol": "BTC-USD", "mins": 5, "price": average,
                        "closeTime": now // 10**6}, body  # fmt: skip
        async with market_data(api, _traded(public, [(old, 9_000_000, 50)])):
            status, body = await _get(url, "/api/v1/avgPrice", symbol="BTC-USD")
        last = decimal_string(9_000_000 * 10**sym.qty_decimals, notional)
        assert (status, body["price"], body["closeTime"]) == (200, last, old // 10**6), body
        async with market_data(api, build_state(public.cfg)):
            status, body = await _get(url, "/api/v1/avgPrice", symbol="BTC-USD")
        assert (status, body["price"], body["closeTime"]) == (200, None, None), body
        assert schema.is_valid(body), body
        async with market_data(api, build_state(public.cfg)):
            missing = await _get(url, "/api/v1/avgPrice")
            unknown = await _get(url, "/api/v1/avgPrice", symbol="DOGE-USD")
            extra = await _get(url, "/api/v1/avgPrice", symbol="BTC-USD", limit=5)
        assert missing[0] == 400 and "symbol" in missing[1]["msg"], missing
        assert unknown[0] == 400 and "DOGE-USD" in unknown[1]["msg"], unknown
        assert extra[0] == 400 and "limit" in extra[1]["msg"], extra

    run(public, scenario)
