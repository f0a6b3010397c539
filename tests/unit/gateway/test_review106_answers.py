"""Review 106, the answers: the keys of each answer are those the code writes and the served
OpenAPI document's schemas give, and those README.md's "### The REST API and the private
stream" names (``LiveOrder.json``, ``history.order_json``, and the scenario's answers).
Shared rig: ``readme_rest_claims.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from config.schema import SymbolConfig
from procs.common.types import OrdType
from procs.gateway import history
from procs.gateway.rest_order_state import LiveOrder, as_cancelled
from tests.unit.gateway import readme_rest_claims as claims
from tests.unit.gateway.readme_rest_claims import DOC, _claim, _fits, _says, _schema_keys

served = claims.served  # the fixture: the scenario's observations, run once for this module


# -- 4. the answers' keys ---------------------------------------------------------------------

#: (observation, the document's schema its JSON must fit: keys as the schema's properties,
#: every required one present).
ANSWERS: list[tuple[str, str]] = [
    ("new", "NewOrderResult"),
    ("amend", "Order"),
    ("cancel", "Order"),
    ("get_pending", "Order"),
    ("stp", "NewOrderResult"),
    ("account", "Account"),
    ("login", "ApiKeyCreated"),
    ("login_evicting", "ApiKeyCreated"),
    ("revoke", "ApiKeyRevoked"),
    ("time", "ServerTime"),
    ("ping", "Empty"),
    ("exchange_info", "ExchangeInfo"),
    ("dup", "Error"),
]


@pytest.mark.parametrize(("seen", "schema"), ANSWERS)
def test_each_answers_keys_are_its_schemas(served: dict[str, Any], seen: str, schema: str) -> None:
    """Each answer, as the gateway wrote it over HTTP (rest.py ``new_order``, ``account``;
    rest_keys.py; rest_public.py; ``LiveOrder.json``), has the keys of its schema in the
    document (openapi.py ``_order_schemas``, ``_other_schemas``): no key the document lacks,
    none it requires missing."""
    _fits(served[seen][1], {"$ref": f"#/components/schemas/{schema}"})


def test_nested_answers_keys_are_their_schemas(served: dict[str, Any]) -> None:
    """The lists and nested objects: a new order's ``fills`` entries (``Fill``), the
    account's balances (``Balance``), openOrders and DELETE openOrders items (``Order``),
    exchangeInfo's symbols, assets and rate limits."""
    ref = "#/components/schemas/"
    for fill in served["bob_sell"][1]["fills"]:
        _fits(fill, {"$ref": f"{ref}Fill"})
    for balance in served["account"][1]["balances"]:
        _fits(balance, {"$ref": f"{ref}Balance"})
    assert served["open_orders"][1] and served["mass_cancel"][1]
    for order in served["open_orders"][1] + served["mass_cancel"][1]:
        _fits(order, {"$ref": f"{ref}Order"})
    info = served["exchange_info"][1]
    props = DOC["components"]["schemas"]["ExchangeInfo"]["properties"]
    for key in ("symbols", "assets", "rateLimits"):
        for item in info[key]:
            _fits(item, props[key]["items"])


def test_a_database_rows_order_and_a_live_order_have_the_same_keys() -> None:
    """history.py:97 ``order_json`` (allOrders, an order only the database knows) and
    rest_order_state.py:87 ``LiveOrder.json`` write the same keys: the document's ``Order``
    but the cancels' ``origClientOrderId`` (``as_cancelled``); ``trade_json`` (history.py:124)
    writes ``AccountTrade``'s."""
    sym = SymbolConfig(name="BTC-USD", id=1, base="BTC")
    row = (7, 601, 1, 1, 1, 1, 100, 0, 10, 10, 0, 1, 0, 1, 2, 0, 3, 0, "cid")
    live = LiveOrder(7, 601, sym, 1, "LIMIT", 1, 100, 0, 10, 10)
    _, props = _schema_keys({"$ref": "#/components/schemas/Order"})
    assert set(history.order_json(row, sym)) == set(live.json()) == props - {"origClientOrderId"}
    assert set(as_cancelled(live.json())) == props
    trade = history.trade_json(sym, 1, 7, 100, 10, 5, True, True, None)
    assert set(trade) == _schema_keys({"$ref": "#/components/schemas/AccountTrade"})[1]


#: (a README quote naming keys of the answers, the observation, the keys).
README_KEYS: list[tuple[str, str, list[str]]] = [
    ("`scopes` (`read,trade`) returns `apiKey` and `secretKey`", "login", ["apiKey", "secretKey"]),
    ("names it (`revokedApiKey`)", "login_evicting", ["revokedApiKey"]),
    ("the API's `clientOrderId`", "new", ["clientOrderId"]),
    ("`PENDING_NEW` with `orderId` 0", "get_pending", ["orderId", "status"]),
    ("An order's `time` is the exchange's", "new", ["time"]),
    ("`updateTime` is the time of the order's last change", "new", ["updateTime"]),
    ("`isWorking` is false for a stop until its trigger", "new", ["isWorking"]),
    ("with `cummulativeQuoteQty` null", "new", ["cummulativeQuoteQty"]),
    ("an iceberg its `icebergQty`", "new", ["icebergQty"]),
    (
        "A new order's answer is the order as its own command left it, with the fills that command "
        "made",
        "bob_sell",
        ["fills"],
    ),
    ("`account` (balances from the router", "account", ["balances"]),
]


@pytest.mark.parametrize(("quote", "seen", "keys"), README_KEYS)
def test_each_answer_key_the_readme_names_is_written(
    served: dict[str, Any], quote: str, seen: str, keys: list[str]
) -> None:
    """README (Keys, Private): each key it names of an answer is one the gateway writes."""
    _claim(quote)
    answer = served[seen][1]
    for key in keys:
        assert key in answer, (key, sorted(answer))


def test_exchange_info_names_the_keys_the_readme_gives(served: dict[str, Any]) -> None:
    """README (Public): each symbol of exchangeInfo has `status`, `minQty`, `maxQty`,
    `stepSize`, `bandBps`, `limitBandBps`, and (PUT order) `icebergParts`."""
    _claim("each symbol's `status` is `TRADING` or `HALT`")
    symbol = served["exchange_info"][1]["symbols"][0]
    for key in (
        "status",
        "minQty",
        "maxQty",
        "stepSize",
        "bandBps",
        "limitBandBps",
        "icebergParts",
    ):
        assert key in symbol, key
    assert symbol["status"] == "UNKNOWN"  # market data disabled here


def test_the_iceberg_qty_of_an_order_that_shows_all_is_the_readmes(served: dict[str, Any]) -> None:
    """README: "every order view has the field, "0" for an order that shows all"."""
    quote = 'every order view has the field, "0" for an order that shows all'
    shown = served["new"][1]["icebergQty"]
    assert shown == "0" or not _says(quote), shown


def test_zero_balances_are_not_listed(served: dict[str, Any]) -> None:
    """README: `account` ... "an asset at zero is not listed, as in the private stream's
    snapshot" (rest.py:545 ``balances``): CAROL, funded with BTC alone, sees BTC alone."""
    _claim("an asset at zero is not listed, as in the private stream's snapshot")
    balances = served["carol_account"][1]["balances"]
    assert [b["asset"] for b in balances] == ["BTC"]
    assert all(b["free"] != "0.000000" or b["locked"] != "0.000000" for b in balances)


def test_a_pending_order_is_found_and_listed_after_the_answered_ones(
    served: dict[str, Any],
) -> None:
    """README: "Until its answer comes, such an order is `PENDING_NEW` with `orderId` 0:
    `GET order` finds it, `openOrders` lists it after the answered ones" (rest.py:502,
    rest_open_orders.py:52)."""
    _claim(
        "Until its answer comes, such an order is `PENDING_NEW` with `orderId` 0: `GET "
        "order` finds it, `openOrders` lists it after the answered ones"
    )
    found = served["get_pending"][1]
    assert (found["status"], found["orderId"], found["clientOrderId"]) == (
        "PENDING_NEW",
        0,
        "r106-p",
    )
    listed = served["open_orders"][1]
    kinds = [o["status"] == "PENDING_NEW" for o in listed]
    assert kinds == sorted(kinds) and kinds[0] is False and kinds[-1] is True, listed


def test_self_trade_prevention_ends_as_expired_in_match(served: dict[str, Any]) -> None:
    """README: "an order ended by self-trade prevention is reported with `executionType`
    `TRADE_PREVENTION` and status `EXPIRED_IN_MATCH`" (rest_orders.py:532,
    rest_order_state.py:32)."""
    _claim(
        "an order ended by self-trade prevention is reported with `executionType` "
        "`TRADE_PREVENTION` and status `EXPIRED_IN_MATCH`"
    )
    assert served["stp"][1]["status"] == "EXPIRED_IN_MATCH"
    report = next(e for e in served["events"] if e["executionType"] == "TRADE_PREVENTION")
    assert report["status"] == "EXPIRED_IN_MATCH"
    assert (
        "EXPIRED_IN_MATCH" in DOC["components"]["schemas"]["Order"]["properties"]["status"]["enum"]
    )


def test_a_stop_is_not_working_until_its_trigger() -> None:
    """README: "`isWorking` is false for a stop until its trigger (it is not on the book;
    the history, which does not keep the trigger, takes a stop with nothing filled as not
    triggered yet)" (rest_order_state.py:109, history.py:119)."""
    _claim(
        "`isWorking` is false for a stop until its trigger (it is not on the book; the "
        "history, which does not keep the trigger, takes a stop with nothing filled as not "
        "triggered yet)"
    )
    sym = SymbolConfig(name="BTC-USD", id=1, base="BTC")
    stop = LiveOrder(7, 601, sym, 1, "STOP_LOSS", 2, 0, 100, 10, 10, status="NEW")
    assert stop.json()["isWorking"] is False
    stop.triggered = True
    assert stop.json()["isWorking"] is True
    row = (7, 601, 1, 1, int(OrdType.STOP), 2, 0, 100, 10, 10, 0, 1, 0, 1, 2, 0, 3, 0, "")
    assert history.order_json(row, sym)["isWorking"] is False
