"""Review 106, orders: README.md's "### The REST API and the private stream" on an order's
refusals and defaults, a forgotten id, the numbers the gateway keeps, and the decimal strings
and commission keys of the answers (``rest_params``, ``history``, and the scenario's answers).
Shared rig: ``readme_rest_claims.py``.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

from config.schema import RiskConfig, SymbolConfig
from procs.common.result_codes import ResultCode
from procs.common.types import StpMode
from procs.gateway import api_errors as codes
from procs.gateway import history, rest_history
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError
from procs.gateway.clordids import API_IDS_KEPT
from procs.gateway.instruments import Instruments
from procs.gateway.live_trades import MAX_LIVE_FILLS
from procs.gateway.recent_elsewhere import RECENT_EVENTS
from procs.gateway.rest_body import body_pairs
from procs.gateway.rest_catch_up import UNFOLLOWED_KEPT
from procs.gateway.rest_mass_cancel import ENDS_WAIT_S
from procs.gateway.rest_open_orders import LISTING_WAIT_S
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_public import PublicRoutes
from procs.gateway.unfiled_orders import MAX_UNFILED_ORDERS
from tests.unit.gateway import readme_rest_claims as claims
from tests.unit.gateway.readme_rest_claims import DOC, _claim, _refused

served = claims.served  # the fixture: the scenario's observations, run once for this module


def test_the_refusals_of_a_new_order_name_the_rule() -> None:
    """README: "An order the exchange refuses is told its code, its price and quantity, and
    the rule where a configured limit says (the collar's `limitBandBps`, `max_open_orders`,
    `max_order_notional`, ...); a `LIMIT_MAKER` takes `GTC` or `DAY`; an `icebergQty` below
    `minQty` is refused naming both" (rest_params.py:267-340 ``new_order``, :380
    ``refusal``)."""
    _claim(
        "An order the exchange refuses is told its code, its price and quantity, and the "
        "rule where a configured limit says (the collar's `limitBandBps`, "
        "`max_open_orders`, `max_order_notional`, said as a decimal of the quote asset, as "
        "exchangeInfo's `maxNotional`: review 335); a `LIMIT_MAKER` takes `GTC` or `DAY`; an "
        "`icebergQty` below `minQty` is refused naming both"
    )
    sym = SymbolConfig(
        name="BTC-USD",
        id=1,
        base="BTC",
        price_decimals=2,
        qty_decimals=2,
        min_qty=10,
        limit_band_bps=250,
    )
    inst = Instruments([sym])
    base = {"symbol": "BTC-USD", "side": "BUY", "price": "10.00", "quantity": "1.00"}
    order = rp.new_order({**base, "type": "LIMIT"}, inst)
    risk = RiskConfig(max_open_orders=7, max_order_notional=5, fee_account=99)
    for code, rule in [
        (ResultCode.PRICE_OUT_OF_BAND, "limitBandBps 250"),
        (ResultCode.TOO_MANY_OPEN_ORDERS, "at most 7 open orders"),
        (ResultCode.NOTIONAL_TOO_LARGE, "notional may be at most 5 minor units of USD"),
    ]:
        text = rp.refusal(code, order, risk)
        assert code.name in text and str(int(code)) in text
        assert "price=10.00" in text and "quantity=1.00" in text and rule in text, text
    for tif in ("GTC", "DAY"):
        rp.new_order({**base, "type": "LIMIT_MAKER", "timeInForce": tif}, inst)
    for tif in ("IOC", "FOK"):
        maker = {**base, "type": "LIMIT_MAKER", "timeInForce": tif}
        with pytest.raises(ApiError) as refused:
            rp.new_order(maker, inst)
        assert refused.value.code == codes.NOT_REQUIRED_PARAM and tif in refused.value.msg  # 306
    ice = {**base, "type": "LIMIT", "icebergQty": "0.05"}
    below = _refused(lambda: rp.new_order(ice, inst))
    assert below.code == codes.FILTER_FAILURE
    assert "icebergQty 0.05" in below.msg and "minQty 0.10" in below.msg


def test_self_trade_prevention_defaults_to_none() -> None:
    """README: "`selfTradePreventionMode` defaults to `NONE`" (rest_params.py:334), as the
    document's default says (openapi.py ``NewOrderRequest``)."""
    _claim("`selfTradePreventionMode` defaults to `NONE`")
    inst = Instruments([SymbolConfig(name="BTC-USD", id=1, base="BTC")])
    order = rp.new_order(
        {"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT", "price": "1", "quantity": "1"}, inst
    )
    assert order.stp == StpMode.NONE
    props = DOC["components"]["schemas"]["NewOrderRequest"]["properties"]
    assert props["selfTradePreventionMode"]["default"] == "NONE"


def test_a_forgotten_id_is_504_minus_1007_and_a_start_after_the_end_minus_1023() -> None:
    """README: an id used here and no longer remembered "is answered `504` (`-1007`, its
    status unknown here: find it in `allOrders`)" (rest_params.py:355 ``forgotten``); "a
    `startTime` after the `endTime` is refused naming both (-1023, here and in `klines`)"
    (rest_params.py:370 ``time_span``, which allOrders, myTrades and klines call)."""
    _claim("is answered `504` (`-1007`, its status unknown here: find it in `allOrders`)")
    _claim("a `startTime` after the `endTime` is refused naming both (-1023, here and in `klines`)")
    forgotten = rp.forgotten("my-id")
    assert (forgotten.status, forgotten.code) == (504, -1007)
    assert "origClientOrderId=my-id" in forgotten.msg and "allOrders" in forgotten.msg
    span = _refused(lambda: rp.time_span({"startTime": "20", "endTime": "10"}))
    assert (span.status, span.code) == (400, -1023) and "20" in span.msg and "10" in span.msg
    for handler in (
        rest_history.HistoryRoutes.all_orders,
        rest_history.HistoryRoutes.my_trades,
        PublicRoutes.klines,
    ):
        assert "rp.time_span(params)" in inspect.getsource(handler), handler


def test_the_constants_the_section_names_are_the_codes() -> None:
    """README (Private): the numbers it gives for what the gateway keeps: `keep_done` 10,000
    (rest_orders.py:85), the API's ids "newest 100k-200k" (clordids.py:31, two generations
    of half), `MAX_LIVE_FILLS` 20,000, `MAX_UNFILED_ORDERS` 20,000, `RECENT_EVENTS` 30,000,
    "the last 256 an account" (rest_catch_up.py:35), the mass cancel's 2 s waits
    (rest_open_orders.py:30, rest_mass_cancel.py:43), the stream's snapshot's 2 s."""
    claims: list[tuple[str, object, object]] = [
        (
            "past its newest `keep_done`, 10,000, finished orders",
            inspect.signature(RestOrders.__init__).parameters["keep_done"].default,
            10_000,
        ),
        ("the API's newest 100k-200k", (API_IDS_KEPT // 2, API_IDS_KEPT), (100_000, 200_000)),
        (
            "at most 20,000 are kept (`MAX_LIVE_FILLS` in `procs/gateway/live_trades.py`",
            MAX_LIVE_FILLS,
            20_000,
        ),
        (
            "at most 20,000 such orders are indexed (`MAX_UNFILED_ORDERS` in "
            "`procs/gateway/unfiled_orders.py`)",
            MAX_UNFILED_ORDERS,
            20_000,
        ),
        (
            "the last 30,000 events of accounts not using the API are kept for that, "
            "`RECENT_EVENTS` in `procs/gateway/recent_elsewhere.py`",
            RECENT_EVENTS,
            30_000,
        ),
        ("the last 256 an account", UNFOLLOWED_KEPT, 256),
        ("those the database lists, read meanwhile for at most 2 s", LISTING_WAIT_S, 2.0),
        ("one not seen to end within 2 s as it was listed", ENDS_WAIT_S, 2.0),
        ("The snapshot waits for the database at most 2 s", LISTING_WAIT_S, 2.0),
    ]
    for quote, value, said in claims:
        _claim(quote)
        assert value == said, quote


def test_prices_and_sizes_are_decimal_strings_both_ways(served: dict[str, Any]) -> None:
    """README: "Prices and sizes are decimal strings" (rest_params.py ``DECIMAL``, rest_body.py
    ``_text``: a JSON number is refused, -1100, naming it; ``format_units`` writes them): the
    document's patterns are the code's, and every price and size the scenario's answers
    carry matches the document's output pattern."""
    _claim("Prices and sizes are decimal strings")
    props = DOC["components"]["schemas"]["NewOrderRequest"]["properties"]
    assert props["price"]["pattern"] == props["quantity"]["pattern"] == rp.DECIMAL.pattern
    number = _refused(lambda: body_pairs(b'{"price": 10.5}', "application/json"))
    assert number.code == codes.ILLEGAL_PARAM and "'price'" in number.msg
    decimal = DOC["components"]["schemas"]["Order"]["properties"]["price"]["pattern"]
    answers = [served["new"][1], served["bob_sell"][1], *served["bob_sell"][1]["fills"]]
    for answer in answers + served["account"][1]["balances"]:
        for key in ("price", "origQty", "executedQty", "stopPrice", "icebergQty", "qty",
                    "commission", "free", "locked"):  # fmt: skip
            if key in answer:
                assert isinstance(answer[key], str) and re.fullmatch(decimal, answer[key]), key


def test_commission_keys_are_in_a_trades_row_a_fill_and_a_fills_report(
    served: dict[str, Any],
) -> None:
    """README: "a `myTrades` row, an order answer's `fills` entry and a fill's
    `executionReport` carry `commission` (a decimal string) and `commissionAsset` (the quote
    asset)" (history.py:124 ``trade_json``, rest_orders.py:502, rest_order_state.py:153)."""
    _claim(
        "a `myTrades` row, an order answer's `fills` entry and a fill's `executionReport` "
        "carry `commission` (a decimal string) and `commissionAsset` (the quote asset)"
    )
    sym = SymbolConfig(name="BTC-USD", id=1, base="BTC", quote="USD")
    row = history.trade_json(sym, 1, 2, 1000, 10, 1, True, False, b"0.0200")
    fill = served["bob_sell"][1]["fills"][0]
    trade = next(e for e in served["events"] if e.get("executionType") == "TRADE")
    for where in (row, fill, trade):
        assert re.fullmatch(r"[0-9]+\.[0-9]+", where["commission"]), where
        assert where["commissionAsset"] == "USD", where
