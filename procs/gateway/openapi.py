"""The REST API's OpenAPI 3.1 document (``GET /openapi.json``), built from the tables the server
checks against, so that the two cannot drift.

Enumerations come from ``rest_params`` (sides, order types, TIFs, self-trade modes, the client
order id and decimal patterns, the value length limit), ``history`` (kline intervals, the row
limit, order statuses), ``rest_orders`` (live statuses), ``apikeys`` (scopes), ``api_errors``
and ``signing`` (error codes, header names: ``openapi_intro``), and the config (symbols).
What has no table there (a limit's default, which handler may answer 503) is written once
here; ``tests/unit/gateway/test_openapi.py`` holds the running server to it (schemathesis).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from config.schema import RingexConfig
from procs.common.apikeys import MAX_LABEL, SCOPES
from procs.gateway import rest_params as rp
from procs.gateway.exchange_info import FILTER_TYPES, FLAGS, PRECISIONS
from procs.gateway.history import KLINES, MAX_LIMIT, STATUS_NAMES
from procs.gateway.instruments import MAX_INT64, format_units
from procs.gateway.openapi_intro import ERRORS, INFO, security_schemes
from procs.gateway.private_stream import PATH as STREAM_PATH
from procs.gateway.rest_market_rows import TICKER_DECIMALS
from procs.gateway.rest_order_state import DONE_STATUS, OPEN_STATUSES

Json = dict[str, Any]

V1 = "/api/v1"
_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"
#: A decimal string as the server writes it (``instruments.format_units``).
_DECIMAL_OUT = r"^-?[0-9]+(\.[0-9]+)?$"


def document(cfg: RingexConfig) -> Json:
    """The OpenAPI 3.1 document of the API serving ``cfg``'s symbols and assets."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "ringex REST API", "version": "1", "description": INFO},
        "tags": [
            {"name": "public", "description": "Market and exchange data: no key needed."},
            {"name": "keys", "description": "API keys: made with a password, revoked signed."},
            {"name": "trading", "description": "Orders, fills and balances: signed."},
        ],
        "paths": _paths(),
        "components": {
            "schemas": {**_order_schemas(cfg), **_other_schemas(cfg)},
            "responses": _error_responses(),
            "securitySchemes": security_schemes(),
        },
    }


# -- building blocks ------------------------------------------------------------------------------


def _ref(name: str, kind: str = "schemas") -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _obj(properties: Json, required: Iterable[str] | None = None) -> Json:
    """An object with these properties, all of them required unless ``required`` says."""
    return {
        "type": "object",
        "required": list(properties if required is None else required),
        "properties": properties,
    }


def _array(items: Json) -> Json:
    return {"type": "array", "items": items}


def _enum(values: Iterable[str]) -> Json:
    return {"type": "string", "enum": list(values)}


_INT = {"type": "integer"}
_MS = {"type": "integer", "minimum": 0, "description": "ms since the epoch"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_DEC = {"type": "string", "pattern": _DECIMAL_OUT}
#: A decimal string parameter, as ``rest_params`` parses it.
_DEC_IN = {"type": "string", "pattern": rp.DECIMAL.pattern, "maxLength": rp.MAX_VALUE_CHARS}


def _int_param(low: int, high: int, default: int | None = None) -> Json:
    schema: Json = {"type": "integer", "minimum": low, "maximum": high}
    return schema if default is None else schema | {"default": default}


def _query(name: str, schema: Json, description: str, *, required: bool = False) -> Json:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema}  # fmt: skip


def _symbol(required: bool = True) -> Json:
    return _query("symbol", _ref("Symbol"), "The symbol (case does not matter).", required=required)


def _one_or_all(schema: str) -> Json:
    """A symbol's ``schema``, or an array of every symbol's (no ``symbol`` sent)."""
    return {"oneOf": [_ref(schema), _array(_ref(schema))]}


def _limit(default: int) -> Json:
    return _query("limit", _int_param(1, MAX_LIMIT, default), "Most rows returned.")


def _times(what: str) -> list[Json]:
    return [
        _query("startTime", _int_param(0, MAX_INT64), f"Oldest {what} (ms since the epoch)."),
        _query("endTime", _int_param(0, MAX_INT64), f"Newest {what} (ms), not before startTime."),
    ]


def _order_ref() -> list[Json]:
    return [
        _query("orderId", _int_param(1, MAX_INT64), "The order's id; or origClientOrderId."),
        _query(
            "origClientOrderId",
            {"type": "string", "minLength": 1, "maxLength": rp.MAX_VALUE_CHARS},
            "The client order id it was placed with, when orderId is not given.",
        ),
    ]


#: Signed: the key, timestamp and signature headers, with or without the receive window.
_SIGNED: list[dict[str, list[str]]] = [
    {"ApiKey": [], "Timestamp": [], "RecvWindow": [], "Signature": []},
    {"ApiKey": [], "Timestamp": [], "Signature": []},
]


def _id_lists() -> list[Json]:
    """``DELETE batchOrders``' two ways to name its orders, each a JSON array as text."""
    ids = {"type": "integer", "minimum": 1, "maximum": MAX_INT64}
    return [_query(name, {"type": "string", "contentMediaType": _JSON, "contentSchema": {
        **_array(items), "minItems": 1, "maxItems": rp.MAX_BATCH_ORDERS},
        "maxLength": rp.LONG_VALUES[name]}, f"A JSON array of {what}, e.g. {example}.")
        for name, items, what, example in (("orderIdList", ids, "order ids", "[12,13]"), (
            "origClientOrderIdList", {"type": "string", "pattern": rp.CLIENT_ORDER_ID.pattern},
            "client order ids", '["a1","a2"]'))]  # fmt: skip


def _operation(
    op_id: str,
    summary: str,
    ok: Json,
    *,
    tag: str = "public",
    params: Iterable[Json] = (),
    body: Json | None = None,
    scope: str | None = None,
    errors: Iterable[int] = (),
    description: str = "",
) -> Json:
    """One operation: 200 with ``ok``, and the error statuses it can answer. Every request
    may get 400 (a parameter it does not take, a bad value), 408, 413 and 429; a signed one 401,
    and 403 when it needs a ``scope`` ("": any valid key)."""
    params = list(params)
    statuses = {400, 408, 413, 429, *errors}
    if scope is not None:
        statuses.add(401)
        if scope:
            statuses.add(403)
            description = f"{description} Signed; the API key needs scope `{scope}`.".strip()
        else:
            description = f"{description} Signed; any valid API key.".strip()
    responses: Json = {"200": {"description": "OK", "content": {_JSON: {"schema": ok}}}}
    responses.update({str(s): _ref(ERRORS[s][0], "responses") for s in sorted(statuses)})
    op: Json = {"operationId": op_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    op["parameters"] = params
    if body is not None:
        media = {"schema": body}
        op["requestBody"] = {"required": True, "content": {_FORM: media, _JSON: media}}
    op["security"] = _SIGNED if scope is not None else []
    op["responses"] = responses
    return op


# -- paths ----------------------------------------------------------------------------------------


def _paths() -> Json:
    """Every route ``rest.py`` registers (grouped by what they serve, not in its order)."""
    market = [_symbol(), _limit(100)]
    proxied = "Answered by the market-data process: 503 when it is not enabled or not reachable."
    every = " Without a symbol: every symbol's, an array in the exchange's order."
    history = "From the history database: 503 when it is not enabled or does not answer."
    order_ref = [_symbol(), *_order_ref()]
    return {
        f"{V1}/ping": {"get": _operation("ping", "Is the API up?", _ref("Empty"))},
        f"{V1}/time": {"get": _operation("time", "The server's clock.", _ref("ServerTime"))},
        f"{V1}/exchangeInfo": {"get": _operation(
            "exchangeInfo", "Symbols and their filters, assets, rate limits.", _ref("ExchangeInfo"),
            params=[_symbol(required=False), _query(
                "symbols", {"type": "string", "maxLength": rp.LONG_VALUES["symbols"]},
                'Some symbols, a JSON array of their names (["BTC-USD","ETH-USD"]), in its '
                "order; not with symbol. Without either: every symbol.",
            )],
        )},
        f"{V1}/depth": {"get": _operation(
            "depth", "The order book, best levels first.", _ref("Depth"),
            params=market, errors=[502, 503], description=proxied,
        )},
        f"{V1}/trades": {"get": _operation(
            "trades", "Recent trades, oldest first.", _array(_ref("MarketTrade")),
            params=[_symbol(), _limit(500)], errors=[502, 503], description=proxied,
        )},
        f"{V1}/ticker/24hr": {"get": _operation(
            "ticker24hr", "The 24-hour rolling ticker.", _one_or_all("Ticker"),
            params=[_symbol(required=False)], errors=[502, 503], description=proxied + every,
        )},
        f"{V1}/ticker/price": {"get": _operation(
            "tickerPrice", "The last trade's price.", _one_or_all("Price"),
            params=[_symbol(required=False)], errors=[502, 503], description=proxied + every,
        )},
        f"{V1}/ticker/bookTicker": {"get": _operation(
            "bookTicker", "The best bid and ask, price and size.", _one_or_all("BookTicker"),
            params=[_symbol(required=False)], errors=[502, 503], description=proxied + every,
        )},
        f"{V1}/avgPrice": {"get": _operation(
            "avgPrice", "The volume-weighted average price of the last 5 minutes' trades.",
            _ref("AvgPrice"), params=[_symbol()], errors=[502, 503], description=proxied,
        )},
        f"{V1}/klines": {"get": _operation(
            "klines", "Candles, oldest first: the newest `limit` unless startTime is given.",
            _array(_ref("Kline")), errors=[503], description=history, params=[
                _symbol(), _query("interval", _enum(KLINES), "The candle width.", required=True),
                *_times("candle's open time"), _limit(500),
            ],
        )},
        f"{V1}/apiKey": {
            "post": _operation(
                "createApiKey", "Make an API key with a username and password.",
                _ref("ApiKeyCreated"), tag="keys", body=_ref("ApiKeyRequest"), errors=[401],
                description="Logins are rate limited per client address (429). Credentials "
                "go in the body only: in the query string they are refused (400). A user who "
                "already has the most keys a user may hold gets a new one all the same: the "
                "oldest is revoked to make room, and the answer names it (revokedApiKey).",
            ),
            "delete": _operation(
                "revokeApiKey", "Revoke the API key this request is signed with.",
                _ref("ApiKeyRevoked"), tag="keys", scope="",
            ),
        },
        f"{V1}/order": {
            "post": _operation(
                "newOrder", "Place an order; the answer waits for the exchange's.",
                _ref("NewOrderResult"), tag="trading", body=_ref("NewOrderRequest"),
                scope="trade", errors=[503, 504], description="503 while the exchange is "
                "stopping (cancels are still taken).",
            ),
            "delete": _operation(
                "cancelOrder", "Cancel an open order (504 -1007: an id no longer remembered).",
                _ref("Order"), tag="trading", params=order_ref, scope="trade",
                errors=[503, 504],  # 503: by origClientOrderId, the history database's fault
            ),
            "put": _operation(
                "amendOrder", "Amend an open order's price and/or total quantity in place.",
                _ref("Order"), tag="trading", scope="trade", errors=[503, 504], params=[
                    *order_ref, _query("price", _DEC_IN, "The new price."),
                    _query("quantity", _DEC_IN, "The new total, fills included."),
                ], description="Price, quantity or both. A smaller quantity at the same price "
                "keeps the order's place, else it goes to the back (a crossing price trades); a "
                "total at or below the fills ends it. 503: stopping or no database. 504 (-1007) "
                "also for an origClientOrderId no longer remembered here (see allOrders).",
            ),
            "get": _operation(
                "queryOrder", "One order of this account: live, recent or from the history. "
                "504 (-1007): an origClientOrderId used here whose order is no longer remembered.",
                _ref("Order"), tag="trading", params=order_ref, scope="read", errors=[503, 504],
            ),
        },
        f"{V1}/order/test": {"post": _operation(
            "testNewOrder", "Check an order as newOrder does, without sending it.",
            _ref("Empty"), tag="trading", body=_ref("NewOrderRequest"), scope="trade",
            errors=[503], description="{} where newOrder would send it. Balance, price band "
            "and open-order limits are the exchange's checks: not made here.",
        )},
        f"{V1}/batchOrders": {"post": _operation(
            "batchOrders", f"Place 1..{rp.MAX_BATCH_ORDERS} orders in one request; the answer "
            "waits for the exchange's.", _array({"anyOf": [_ref("NewOrderResult"), _ref("Error")]}),
            tag="trading", body=_ref("BatchOrdersRequest"), scope="trade", errors=[503],
            description="An entry per order, in order: the order as newOrder answers it, or "
            "{code, msg} where that one was refused (the others are placed). 503 while the "
            "exchange is stopping. The key's rate limit is spent once per order.",
        ), "delete": _operation(
            "batchCancel", f"Cancel 1..{rp.MAX_BATCH_ORDERS} open orders of a symbol in one "
            "request.", _array({"anyOf": [_ref("Order"), _ref("Error")]}), tag="trading",
            scope="trade", params=[_symbol(), *_id_lists()],
            description="By orderIdList or origClientOrderIdList (one of them). An entry per "
            "order, in order: the order as cancelOrder answers it, or {code, msg} where that "
            "cancel was refused. The key's rate limit is spent once per order.",
        )},
        f"{V1}/openOrders": {
            "get": _operation(
                "openOrders", "This account's open orders (every symbol's when none is given).",
                _array(_ref("Order")), tag="trading", scope="read", errors=[503],
                params=[_symbol(required=False)],
            ),
            "delete": _operation(
                "cancelOpenOrders", "Cancel every open order of this account (every symbol's "
                "when none is given) in one command.", _array(_ref("Order")), tag="trading",
                scope="trade", errors=[504], params=[_symbol(required=False)],
                description="Lists the orders open when it came, each as it ended.",
            ),
        },
        f"{V1}/allOrders": {"get": _operation(
            "allOrders", "This account's orders on a symbol, by order id (as the live views "
            "show them where the history has not filed their last change yet).",
            _array(_ref("Order")), tag="trading", scope="read", errors=[503],
            description=history, params=[
                _symbol(),
                _query("orderId", _int_param(0, MAX_INT64), "The first order id (else newest)."),
                *_times("order's creation time"), _limit(500),
            ],
        )},
        f"{V1}/myTrades": {"get": _operation(
            "myTrades", "This account's fills on a symbol, one row per side it was on (with "
            "those this gateway saw that the history has not filed yet).",
            _array(_ref("AccountTrade")), tag="trading", scope="read", errors=[503],
            description=history, params=[
                _symbol(),
                _query("fromId", _int_param(0, MAX_INT64), "The first trade id (else newest)."),
                _query("orderId", _int_param(0, MAX_INT64), "Only this order's trades."),
                *_times("trade"), _limit(500),
            ],
        )},
        f"{V1}/account": {"get": _operation(
            "account", "This account's balances.", _ref("Account"), tag="trading", scope="read",
            errors=[504], params=[_query("omitZeroBalances", _enum(["true", "false"]),
                                         "false: the assets at zero listed too.")],
        )},
        STREAM_PATH: {"get": _stream_operation()},
        "/openapi.json": {"get": _operation("openapi", "This document.", _ref("OpenApiDocument"))},
    }  # fmt: skip


def _stream_operation() -> Json:
    """The private stream's upgrade: credentials in the query (browsers cannot set headers)."""
    params = [
        _query("apiKey", _STR, "The API key.", required=True),
        _query("timestamp", _int_param(0, MAX_INT64), "ms since the epoch.", required=True),
        _query("recvWindow", _int_param(1, 60_000), "The receive window (ms)."),
        _query(
            "signature",
            {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            f"As for a signed request, over method GET, path `{STREAM_PATH}`, an empty query "
            "and an empty body.",
            required=True,
        ),
        _query("closeOnRefusal", _enum(["true", "false"]), "`true`: a refused upgrade is taken "
               "and closed at once (1008 credentials, 1013 a limit; reason `<code> <msg>`), "
               "since a browser cannot read a refused handshake's body. Not signed."),
    ]  # fmt: skip
    responses: Json = {
        "101": {
            "description": "Switching Protocols: the WebSocket. Messages are "
            '`{"event": name, "seq": n, "data": {...}}`, seq from 1: a `snapshot` (balances, '
            "open orders), then `executionReport` and `balance` events (a fill's carries "
            "`lastPrice`, `lastQty`, `tradeId`, `isMaker`, `commission`, `commissionAsset` as a "
            "`Fill` does); after 5 s of nothing else a `heartbeat` (no `seq`: a quiet stream, "
            "not a half-open one). A client too far behind is closed with code 1008.",
        }
    }
    for status in (400, 401, 403, 413, 426, 429, 503):
        responses[str(status)] = _ref(ERRORS[status][0], "responses")
    return {
        "operationId": "privateStream",
        "summary": "This account's execution reports and balance changes (WebSocket).",
        "description": "A request that is not a WebSocket upgrade answers 400 naming the "
        "headers it sent, an upgrade of another version than 13 answers 426.",
        "tags": ["trading"],
        "parameters": params,
        "security": [],
        "responses": responses,
    }


# -- schemas --------------------------------------------------------------------------------------


def _order_schemas(cfg: RingexConfig) -> Json:
    statuses = sorted({*STATUS_NAMES.values(), *DONE_STATUS.values(), *OPEN_STATUSES})
    types = sorted({*rp.TYPES, *rp.TYPE_NAMES.values()})
    order = _obj({
        "symbol": _ref("Symbol"), "orderId": {"type": "integer", "minimum": 0},
        "clientOrderId": _STR, "price": _DEC, "origQty": _DEC, "executedQty": _DEC,
        "cummulativeQuoteQty": {
            "type": ["string", "null"], "pattern": _DECIMAL_OUT,
            "description": "null where not all its fills are known here (README, REST)",
        },
        "status": _enum(statuses),
        "timeInForce": {**_enum([*sorted(rp.TIFS), ""]), "description": "empty: not known"},
        "type": {**_enum([*types, ""]), "description": "empty: placed through FIX"},
        "side": {
            **_enum([*rp.SIDES, ""]),
            "description": "empty: a cancel's answer for an order this gateway did not follow",
        },
        "stopPrice": _DEC, "icebergQty": _DEC, "time": _MS, "updateTime": _MS, "isWorking": _BOOL,
    })  # fmt: skip
    request = _obj({
        "symbol": _ref("Symbol"), "side": _enum(rp.SIDES), "type": _enum(sorted(rp.TYPES)),
        "quantity": _DEC_IN,
        "price": {**_DEC_IN, "description": "Limit types; a market order's worst price."},
        "stopPrice": {**_DEC_IN, "description": "STOP_LOSS and STOP_LOSS_LIMIT."},
        "timeInForce": {
            **_enum(sorted(rp.TIFS)),
            "description": "GTC for limit types, IOC (or FOK) for the others by default.",
        },
        "icebergQty": {**_DEC_IN, "description": "The shown slice of a limit order."},
        "newClientOrderId": {
            "type": "string",
            "pattern": rp.CLIENT_ORDER_ID.pattern,
            "description": "Refused (-2010) while an open order of the account has it.",
        },
        "selfTradePreventionMode": {**_enum(sorted(rp.STP)), "default": "NONE"},
    }, required=["symbol", "side", "type", "quantity"])  # fmt: skip
    request["additionalProperties"] = False
    request["examples"] = _order_examples(cfg)
    array = {**_array(_ref("NewOrderRequest")), "minItems": 1, "maxItems": rp.MAX_BATCH_ORDERS}
    orders = {"anyOf": [{"type": "string", "minLength": 2, "contentMediaType": _JSON,
                         "maxLength": rp.LONG_VALUES["batchOrders"], "contentSchema": array},
                        {**array, "description": "In a JSON body, the array itself."}],
              "description": "A JSON array of NewOrderRequest, or its text."}  # fmt: skip
    batch = {**_obj({"batchOrders": orders}, required=["batchOrders"]),
             "additionalProperties": False,
             "examples": [{"batchOrders": json.dumps(request["examples"])}]}  # fmt: skip
    quote = {**_enum(sorted({s.quote for s in cfg.symbols})), "description": "The quote asset"}
    return {
        "Symbol": _enum(s.name for s in cfg.symbols),
        "Order": order | {"properties": order["properties"] | {"origClientOrderId": {
            **_STR, "description": "In a cancel's answer: the order's clientOrderId"}}},
        "Fill": _obj({
            "price": _DEC, "qty": _DEC, "tradeId": _INT, "isMaker": _BOOL,
            "commission": {
                **_DEC, "description": "This side's fee, in commissionAsset units, under the "
                "gateway's configured fees (myTrades shows what the exchange charged)",
            },
            "commissionAsset": quote,
        }),
        "NewOrderResult": {
            "allOf": [_ref("Order"), _obj({"transactTime": _MS, "fills": _array(_ref("Fill"))})]
        },
        "NewOrderRequest": request,
        "BatchOrdersRequest": batch,
        "AccountTrade": _obj({
            "symbol": _ref("Symbol"), "id": _INT, "orderId": _INT, "price": _DEC, "qty": _DEC,
            "quoteQty": _DEC, "time": _MS, "isBuyer": _BOOL, "isMaker": _BOOL,
            "commission": {
                "type": ["string", "null"], "pattern": _DECIMAL_OUT,
                "description": "This side's fee as the exchange charged it (maker or taker "
                "rate in force at the trade), in commissionAsset units; null for a trade the "
                "history filed before it kept fees; one not filed yet shows the gateway's "
                "configured fees, as a Fill does",
            },
            "commissionAsset": quote,
        }),
    }  # fmt: skip


def _order_examples(cfg: RingexConfig) -> list[Json]:
    """A resting sell, and a buy that takes it, on the first symbol (a hundred ticks, a lot)."""
    if not cfg.symbols:
        return []
    s = cfg.symbols[0]
    price = format_units(100 * s.tick, s.price_decimals).decode()
    qty = format_units(s.least_qty, s.qty_decimals).decode()
    order = {"symbol": s.name, "type": "LIMIT", "price": price, "quantity": qty}
    return [
        {**order, "side": "SELL", "timeInForce": "GTC", "newClientOrderId": "my-order-1"},
        {**order, "side": "BUY", "timeInForce": "IOC"},
    ]


def _other_schemas(cfg: RingexConfig) -> Json:
    level = {"type": "array", "prefixItems": [_DEC, _DEC], "minItems": 2, "items": False}
    scopes = "|".join(sorted(SCOPES))
    name = {"type": "string", "minLength": 1, "maxLength": rp.MAX_VALUE_CHARS}
    password = {**name, "maxLength": rp.LONG_VALUES["password"]}
    key_request = _obj({
        "username": name, "password": password,
        "scopes": {
            "type": "string", "pattern": f"^({scopes})(,({scopes}))*$", "default": "read,trade",
            "description": "Comma-separated.",
        },
        "label": {
            "type": "string", "minLength": 1, "maxLength": MAX_LABEL, "description": "Printable.",
        },
    }, required=["username", "password"])  # fmt: skip
    key_request["additionalProperties"] = False
    return {
        "Error": _obj({"code": _INT, "msg": _STR}),
        "Empty": {"type": "object", "maxProperties": 0},
        "ServerTime": _obj({"serverTime": _MS}),
        "OpenApiDocument": _obj({"openapi": _STR, "info": {"type": "object"}}),
        "Balance": _obj({"asset": _STR, "free": _DEC, "locked": _DEC}),
        "Account": _obj({
            "accountId": _INT, "username": _STR, "canTrade": _BOOL, "updateTime": _MS,
            "balances": _array(_ref("Balance")),
        }),
        "ExchangeInfo": _exchange_info(cfg),
        "Kline": {
            "type": "array", "minItems": 12, "items": False,
            "prefixItems": [_MS, *[_DEC] * 5, _MS, _DEC, _INT, _DEC, _DEC, {"const": "0"}],
            "description": "[open time, open, high, low, close, volume, close time, quote "
            "volume, trades, taker buy volume, taker buy quote volume, unused: \"0\"]",
        },
        "Depth": _obj({
            "e": {"const": "depthSnapshot"}, "E": _MS, "s": _ref("Symbol"), "lastUpdateId": _INT,
            "bids": _array(level), "asks": _array(level),
        }),
        "MarketTrade": _obj({
            "id": _INT, "price": _DEC, "qty": _DEC, "quoteQty": _DEC, "time": _MS,
            "isBuyerMaker": _BOOL, "isBestMatch": {"const": True},
        }),
        "Ticker": {
            **_obj({"symbol": _ref("Symbol"), **{k: _DEC for k in TICKER_DECIMALS},
                    **{k: _MS for k in ("openTime", "closeTime")},
                    **{k: _INT for k in ("firstId", "lastId", "count")}}, required=["symbol"]),
            "description": "Only `symbol` until the symbol's first trade, then every field "
            "(the rolling 24 h window); no bid or ask (ticker/bookTicker has them); "
            "prevClosePrice zeros until the window first drops a trade.",
        },
        "Price": _obj({
            "symbol": _ref("Symbol"), "price": {**_DEC, "type": ["string", "null"]},
        }) | {"description": "price: null until the symbol's first trade"},
        "AvgPrice": _obj({
            "symbol": _ref("Symbol"), "mins": {"const": 5},
            "price": {**_DEC, "type": ["string", "null"]},
            "closeTime": {**_MS, "type": ["integer", "null"]},
        }) | {"description": "price: the trades' of the minute under way and the four before "
              "it, else the last trade's; closeTime: the last trade's time; both null until "
              "the symbol's first trade"},
        "BookTicker": _obj({
            "symbol": _ref("Symbol"), **{k: {**_DEC, "type": ["string", "null"]} for k in (
                "bidPrice", "bidQty", "askPrice", "askQty")},
        }) | {"description": "a side with no order: its price and size null"},
        "ApiKeyRequest": key_request,
        "ApiKeyCreated": _obj({
            "apiKey": _STR, "secretKey": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "scopes": _array(_enum(sorted(SCOPES))), "accountId": _INT, "username": _STR,
            "revokedApiKey": _STR,
        }, required=["apiKey", "secretKey", "scopes", "accountId", "username"]),
        "ApiKeyRevoked": _obj({"apiKey": _STR, "revoked": {"const": True}}),
    }  # fmt: skip


def _exchange_info(cfg: RingexConfig) -> Json:
    rate_limit = _obj({
        "rateLimitType": _enum(["REQUEST_WEIGHT", "ORDERS"]), "interval": {"const": "SECOND"},
        "intervalNum": {"const": 1}, "limit": {"type": "number"}, "burst": _INT,
        **dict.fromkeys(("perKey", "perIp", "perAccount"), _BOOL),
    }, required=["rateLimitType", "interval", "intervalNum", "limit", "burst"])  # fmt: skip
    # Binance's filters' fields: decimal strings, integers, flags (``exchange_info.py``)
    a_filter = _obj({"filterType": _enum(FILTER_TYPES)}) | {
        "additionalProperties": {"type": ["string", "integer", "boolean"]}}  # fmt: skip
    ints = ("pricePrecision", "quantityPrecision", "icebergParts", "bandBps", "limitBandBps",
            "makerFeeBps", "takerFeeBps", *PRECISIONS)  # fmt: skip
    stp = _enum(sorted(rp.STP))
    symbol = _obj({
        "symbol": _ref("Symbol"), "status": _enum(["TRADING", "HALT", "UNKNOWN"]),
        "baseAsset": _STR, "quoteAsset": _STR, **dict.fromkeys(ints, _INT), **dict.fromkeys((
            "tickSize", "stepSize", "minQty", "maxQty"), _DEC), "filters": _array(a_filter),
        "orderTypes": _array(_enum(sorted(rp.TYPES))), **dict.fromkeys(FLAGS, _BOOL),
        "timeInForce": _array(_enum(sorted(rp.TIFS))), "permissions": _array({"const": "SPOT"}),
        "defaultSelfTradePreventionMode": stp, "allowedSelfTradePreventionModes": _array(stp),
    })  # fmt: skip
    asset = _obj({"asset": _enum(a.name for a in cfg.assets), "decimals": _INT})
    limit = _obj({"filterType": {"const": "EXCHANGE_MAX_NUM_ORDERS"}, "maxNumOrders": _INT})
    return _obj({
        "timezone": {"const": "UTC"}, "serverTime": _MS, "rateLimits": _array(rate_limit),
        "exchangeFilters": _array(limit), "assets": _array(asset), "symbols": _array(symbol),
    })  # fmt: skip


# -- errors ---------------------------------------------------------------------------------------


def _error_responses() -> Json:
    out: Json = {}
    for status, (name, when) in ERRORS.items():
        response: Json = {"description": when, "content": {_JSON: {"schema": _ref("Error")}}}
        if status == 429:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds until the request would pass.",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        out[name] = response
    return out
