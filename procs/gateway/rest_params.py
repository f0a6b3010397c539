"""REST parameters -> checked values: an order request's decimal strings become ticks and lots.

Parameters arrive as strings (query string, form or JSON body, as the venue APIs take them)
and leave as the integers the pipeline carries, or as an ``ApiError`` that names the
parameter, the value and the rule it broke. Names and enumerations are the most used venue
API's: ``side`` BUY/SELL; ``type`` LIMIT, MARKET, STOP_LOSS (stop-market), STOP_LOSS_LIMIT,
LIMIT_MAKER (post-only limit); ``timeInForce`` GTC, IOC, FOK, DAY; ``selfTradePreventionMode``
NONE, EXPIRE_TAKER, EXPIRE_MAKER, EXPIRE_BOTH; ``icebergQty`` the shown slice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import msgspec

from config.schema import RiskConfig, SymbolConfig
from procs.common.result_codes import ResultCode
from procs.common.types import OrderFlag, OrdType, Side, StpMode, TimeInForce
from procs.common.users import MAX_PASSWORD_CHARS
from procs.core.money import Market
from procs.core.order_checks import RESTS
from procs.gateway import api_errors as codes
from procs.gateway.api_errors import ApiError, bad_request
from procs.gateway.commission import Commissions
from procs.gateway.instruments import (
    MAX_INT64,
    Instruments,
    format_units,
    price_ticks,
    qty_lots,
    to_units,
)
from procs.gateway.notional_note import cap_note, notional_note

SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}
TYPES = {
    "LIMIT": OrdType.LIMIT,
    "MARKET": OrdType.MARKET,
    "STOP_LOSS": OrdType.STOP,
    "STOP_LOSS_LIMIT": OrdType.STOP_LIMIT,
    "LIMIT_MAKER": OrdType.LIMIT,
}
TIFS = {
    "GTC": TimeInForce.GTC,
    "IOC": TimeInForce.IOC,
    "FOK": TimeInForce.FOK,
    "DAY": TimeInForce.DAY,
}
STP = {
    "NONE": StpMode.NONE,
    "EXPIRE_TAKER": StpMode.CANCEL_NEWEST,
    "EXPIRE_MAKER": StpMode.CANCEL_OLDEST,
    "EXPIRE_BOTH": StpMode.CANCEL_BOTH,
}
#: Integer (record and database) values -> names.
SIDE_NAMES: dict[int, str] = {int(v): k for k, v in SIDES.items()}
TIF_NAMES: dict[int, str] = {int(v): k for k, v in TIFS.items()}
TYPE_NAMES: dict[int, str] = {
    OrdType.LIMIT: "LIMIT",
    OrdType.MARKET: "MARKET",
    OrdType.STOP: "STOP_LOSS",
    OrdType.STOP_LIMIT: "STOP_LOSS_LIMIT",
}

#: A client order id: what the venues allow, and short enough to keep per order.
CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,36}$")  # fullmatch it: "$" takes a last "\n"
#: A price or size: digits with at most one '.', checked before ``instruments`` parses it.
DECIMAL = re.compile(r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")
#: An integer (ids, times, limits): ASCII digits, a leading '-' at most; ``int()`` alone would
#: also take spaces, '+', '_' separators and any script's digits. As many as a value may hold:
#: one too large is refused by its range, named (review 144).
INTEGER = re.compile(r"-?[0-9]{1,64}")
#: Longest parameter value accepted anywhere (decimals, ids, names): the digits above too.
MAX_VALUE_CHARS = 64
#: Parameters allowed longer values: a password is whatever its user chose, up to the users
#: file's limit; the private stream's signature (64 hex digits) gets room to be wrong, so a
#: signature that does not match is told so (401), not refused for its length.
#: A batch's orders (``rest_new_orders.py``) are one value.
LONG_VALUES: Final = {
    "password": MAX_PASSWORD_CHARS, "signature": 128, "batchOrders": 8_192,
    "orderIdList": 512, "origClientOrderIdList": 512, "symbols": 640,
}  # fmt: skip
MAX_PARAMS = 24
#: The most orders one ``batchOrders`` request may carry (``rest_new_orders.py``; Bybit's
#: spot limit, Binance's futures API takes 5).
MAX_BATCH_ORDERS = 10


class OrderRequest(msgspec.Struct, frozen=True):
    """A new order's parameters in integer units. A msgspec Struct: made once per order,
    and its ``__init__`` costs ~0.1 us where a frozen dataclass's costs ~1.8."""

    symbol: SymbolConfig
    side: Side
    ord_type: OrdType
    tif: TimeInForce
    flags: int
    stp: StpMode
    price: int
    qty: int
    stop_price: int
    display_qty: int
    client_order_id: str
    type_name: str


#: The parameters each endpoint reads. Any other is refused with UNKNOWN_PARAM (-1104): a
#: misspelled name (``timeinforce=IOC``) is an error, not a default taken in silence.
_ORDER_REF = ("symbol", "orderId", "origClientOrderId")
_TIMES = ("startTime", "endTime", "limit")
CREATE_KEY_PARAMS: Final = frozenset(("username", "password", "scopes", "label"))
NEW_ORDER_PARAMS: Final = frozenset(
    (
        *("symbol", "side", "type", "timeInForce", "quantity", "price", "stopPrice"),
        *("icebergQty", "newClientOrderId", "selfTradePreventionMode"),
    )
)
ORDER_PARAMS: Final = frozenset(_ORDER_REF)  # cancel one, query one
BATCH_CANCEL_PARAMS: Final = frozenset(("symbol", "orderIdList", "origClientOrderIdList"))
AMEND_PARAMS: Final = frozenset((*_ORDER_REF, "price", "quantity"))
OPEN_ORDERS_PARAMS: Final = frozenset(("symbol",))
ALL_ORDERS_PARAMS: Final = frozenset(("symbol", "orderId", *_TIMES))
MY_TRADES_PARAMS: Final = frozenset(("symbol", "fromId", "orderId", *_TIMES))
MARKET_PARAMS: Final = frozenset(("symbol", "limit"))  # depth, trades
TICKER_PARAMS: Final = frozenset(("symbol",))
EXCHANGE_INFO_PARAMS: Final = frozenset(("symbol", "symbols"))
KLINES_PARAMS: Final = frozenset(("symbol", "interval", *_TIMES))
#: The private stream's URL: its signature is in the query, a browser's WebSocket sends no
#: headers of its own.
STREAM_PARAMS: Final = frozenset(
    ("apiKey", "timestamp", "recvWindow", "signature", "closeOnRefusal")
)


def only(params: Mapping[str, str], accepted: frozenset[str]) -> None:
    """Refuse a parameter the endpoint does not read, naming it and those it does."""
    unknown = [name for name in params if name not in accepted]
    if unknown:
        raise bad_request(
            codes.UNKNOWN_PARAM,
            f"parameter {unknown[0]!r} is not one this endpoint takes "
            f"({', '.join(sorted(accepted))})",
        )


def check_params(params: Mapping[str, str]) -> None:
    """The size limits every request obeys; and no value is empty (absent is the way to
    ask for a default: an empty one would be taken as absent, in silence)."""
    if len(params) > MAX_PARAMS:
        raise bad_request(
            codes.TOO_MANY_PARAMS, f"{len(params)} parameters, the limit is {MAX_PARAMS}"
        )
    for name, value in params.items():
        if len(name) > MAX_VALUE_CHARS:
            raise bad_request(
                codes.ILLEGAL_PARAM,
                f"a parameter name is {len(name)} characters ({name[:MAX_VALUE_CHARS]!r}...), "
                f"the limit is {MAX_VALUE_CHARS}",
            )
        limit = LONG_VALUES.get(name, MAX_VALUE_CHARS)
        if not value:  # ``icebergQty=`` is no iceberg: never a default taken in silence
            raise bad_request(
                codes.ILLEGAL_PARAM,
                f"parameter {name!r} is sent empty: give it 1..{limit} characters or leave it out",
            )
        if len(value) > limit:
            raise bad_request(
                codes.ILLEGAL_PARAM,
                f"parameter {name!r} is {len(value)} characters, the limit is {limit}",
            )


def batch_size(name: str, count: int) -> None:
    """400 unless a batch parameter ``name`` holds 1..``MAX_BATCH_ORDERS`` orders."""
    if not 1 <= count <= MAX_BATCH_ORDERS:
        raise bad_request(
            codes.ILLEGAL_PARAM,
            f"parameter {name!r} holds {count} orders: the limit is 1..{MAX_BATCH_ORDERS} a "
            "request",
        )


def required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise bad_request(codes.MANDATORY_PARAM, f"mandatory parameter '{name}' was not sent")
    return value


def choice(
    params: Mapping[str, str],
    name: str,
    table: Mapping[str, int],
    default: str | None,
    code: int = codes.ILLEGAL_PARAM,
) -> str:
    """One of ``table``'s names; ``default`` when absent, or mandatory when that is None;
    else a 400 ``code`` naming the allowed names."""
    value = required(params, name) if default is None else params.get(name, default)
    if value not in table:
        raise bad_request(code, f"{name} {value!r} is not one of {', '.join(sorted(table))}")
    return value


def symbol(params: Mapping[str, str], instruments: Instruments) -> SymbolConfig:
    name = required(params, "symbol")
    # ASCII only: str.upper() maps some other letters onto ASCII ones (long s, "\u017f", is "S")
    sym = instruments.by_name.get(name.upper().encode()) if name.isascii() else None
    if sym is None:
        known = ", ".join(s.name for s in instruments.by_id.values())
        raise bad_request(codes.BAD_SYMBOL, f"unknown symbol {name!r} (this exchange has {known})")
    return sym


_NAMES: Final = msgspec.json.Decoder(list[str])


def symbols(params: Mapping[str, str], instruments: Instruments) -> list[SymbolConfig]:
    """The symbols ``symbol`` (one) or ``symbols`` (a JSON array of names, in its order,
    each once) name, not both."""
    if "symbol" in params and "symbols" in params:
        raise bad_request(codes.ILLEGAL_PARAM, "'symbol' and 'symbols' cannot be sent together")
    if "symbols" not in params:
        return [symbol(params, instruments)]  # (neither: -1102, symbol is mandatory)
    try:
        names = _NAMES.decode(params["symbols"])
    except msgspec.DecodeError as exc:
        raise bad_request(
            codes.ILLEGAL_PARAM,
            f"parameter 'symbols' is not a JSON array of symbol names, such as "
            f'["BTC-USD"]: {exc}',
        ) from None
    if not names:
        raise bad_request(codes.ILLEGAL_PARAM, "parameter 'symbols' names no symbol: []")
    # each once as resolved, not as spelt ("xbt-usd" is XBT-USD too: review 284)
    named = (symbol({"symbol": name}, instruments) for name in dict.fromkeys(names))
    return list({found.id: found for found in named}.values())


def opt_integer(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    """An optional integer parameter within [low, high], None when absent."""
    text = params.get(name)
    return None if text is None or text == "" else integer(params, name, 0, low, high)


def integer(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An optional integer parameter within [low, high]."""
    text = params.get(name)
    if text is None or text == "":
        return default
    value = _integer(name, text)
    if not low <= value <= high:
        raise bad_request(codes.ILLEGAL_PARAM, f"{name} {value} is outside {low}..{high}")
    return value


def _integer(name: str, text: str) -> int:
    if not INTEGER.fullmatch(text):
        raise bad_request(codes.ILLEGAL_PARAM, f"{name} {text!r} is not an integer")
    return int(text)


def _decimal(params: Mapping[str, str], name: str, sym: SymbolConfig, *, price: bool) -> str:
    """``params[name]``, a decimal number of at most the symbol's decimals for a price or a
    size (trailing zeros aside), else a 400 naming them and the step (review 315)."""
    text = required(params, name)
    if not DECIMAL.fullmatch(text):
        raise bad_request(codes.ILLEGAL_PARAM, f"{name} {text!r} is not a decimal number")
    decimals = sym.price_decimals if price else sym.qty_decimals
    if len(text.partition(".")[2].rstrip("0")) > decimals:
        precision, step, unit = (
            ("pricePrecision", "tick", sym.tick) if price else ("quantityPrecision", "lot", sym.lot)
        )
        raise bad_request(
            codes.BAD_PRECISION,
            f"{name} {text} has more decimals than {precision} {decimals}: not a multiple "
            f"of {step} {format_units(unit, decimals).decode()} (symbol={sym.name})",
        )
    return text


def _price(
    params: Mapping[str, str], name: str, sym: SymbolConfig, *, off_tick: bool = False
) -> int:
    text = _decimal(params, name, sym, price=True)
    units: int | str = price_ticks(text.encode(), sym)
    if isinstance(units, str) and off_tick:  # (``amendment``'s: its caller judges the tick)
        raw = to_units(text.encode(), sym.price_decimals)
        if raw is not None and 0 < raw <= MAX_INT64 and raw % sym.tick:  # off it, no more
            units = raw
    if isinstance(units, str):
        raise bad_request(codes.FILTER_FAILURE, f"{name}: {units}")
    if not 0 < units <= MAX_INT64:
        raise bad_request(
            codes.FILTER_FAILURE,
            f"{name} {text} must be positive and at most {MAX_INT64} price units "
            f"(symbol={sym.name})",
        )
    return units


def _qty(params: Mapping[str, str], name: str, sym: SymbolConfig) -> int:
    text = _decimal(params, name, sym, price=False)
    units = qty_lots(text.encode(), sym)
    if isinstance(units, str):
        raise bad_request(codes.FILTER_FAILURE, f"{name}: {units}")
    return units


def _order_qty(params: Mapping[str, str], sym: SymbolConfig) -> int:
    """``quantity``, an order's total, within the symbol's size limits."""
    qty = _qty(params, "quantity", sym)
    if not sym.min_qty <= qty <= sym.max_qty:
        raise bad_request(
            codes.FILTER_FAILURE,
            f"quantity {params['quantity']} is outside the symbol's limits "
            f"(minQty {format_units(sym.least_qty, sym.qty_decimals).decode()}, maxQty "
            f"{format_units(sym.most_qty, sym.qty_decimals).decode()}, symbol={sym.name})",
        )
    return qty


def amendment(params: Mapping[str, str], sym: SymbolConfig) -> tuple[int | None, int | None]:
    """An amend's new ``price`` and new total ``quantity`` (fills included), None for one it
    leaves as it is; at least one is needed. A price off the tick is taken here: the order's
    own, off a tick raised since it rested, is kept in place as the matcher keeps it (review
    278); the caller refuses any other (``on_tick``)."""
    if "price" not in params and "quantity" not in params:
        raise bad_request(
            codes.MANDATORY_PARAM, "an amend needs 'price', 'quantity' or both: neither was sent"
        )
    price = _price(params, "price", sym, off_tick=True) if "price" in params else None
    return price, _order_qty(params, sym) if "quantity" in params else None


def on_tick(params: Mapping[str, str], sym: SymbolConfig) -> None:
    """Refuse an amend's ``price`` off the symbol's tick (one ``amendment`` took)."""
    _price(params, "price", sym)


def new_order(params: Mapping[str, str], instruments: Instruments) -> OrderRequest:
    sym = symbol(params, instruments)
    side = SIDES[choice(params, "side", SIDES, None, codes.INVALID_SIDE)]
    type_name = choice(params, "type", TYPES, None, codes.INVALID_ORDER_TYPE)
    ord_type = TYPES[type_name]
    limit = ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT)
    tif_default = "GTC" if limit else "IOC"
    tif = TIFS[choice(params, "timeInForce", TIFS, tif_default, codes.INVALID_TIF)]
    if not limit and "timeInForce" in params and tif not in (TimeInForce.IOC, TimeInForce.FOK):
        raise bad_request(
            codes.NOT_REQUIRED_PARAM,
            f"timeInForce {params['timeInForce']} does not apply to {type_name}",
        )
    if type_name == "LIMIT_MAKER" and tif not in RESTS:  # as FIX's post-only (review 47)
        raise bad_request(
            codes.NOT_REQUIRED_PARAM,
            f"LIMIT_MAKER rests: timeInForce {params['timeInForce']} does not (GTC and DAY do)",
        )
    qty = _order_qty(params, sym)
    price = 0
    if limit or params.get("price"):  # a market order's price is its worst price
        price = _price(params, "price", sym)
    stop = 0
    if ord_type in (OrdType.STOP, OrdType.STOP_LIMIT):
        stop = _price(params, "stopPrice", sym)
    elif params.get("stopPrice"):
        raise bad_request(
            codes.NOT_REQUIRED_PARAM,
            f"stopPrice {params['stopPrice']} applies to STOP_LOSS and STOP_LOSS_LIMIT orders, "
            f"not {type_name}",
        )
    display = 0
    if params.get("icebergQty"):
        if not limit:
            raise bad_request(
                codes.NOT_REQUIRED_PARAM, f"icebergQty needs a limit order, not {type_name}"
            )
        if tif not in RESTS:  # else the matcher's bare INVALID_ORDER
            raise bad_request(
                codes.NOT_REQUIRED_PARAM,
                f"icebergQty needs an order that rests: timeInForce {params['timeInForce']} "
                "does not (GTC and DAY do)",
            )
        display = _qty(params, "icebergQty", sym)
        if display < sym.min_qty:  # a slice is an order's size too (review 47)
            raise bad_request(
                codes.FILTER_FAILURE,
                f"icebergQty {params['icebergQty']} is below the symbol's minQty "
                f"{format_units(sym.least_qty, sym.qty_decimals).decode()}",
            )
        if display >= qty:
            raise bad_request(
                codes.FILTER_FAILURE,
                f"icebergQty {params['icebergQty']} must be below quantity {params['quantity']}",
            )
        if -(-qty // display) > sym.iceberg_parts:
            raise bad_request(
                codes.FILTER_FAILURE,
                f"icebergQty {params['icebergQty']} cuts quantity {params['quantity']} into "
                f"{-(-qty // display)} parts, at most {sym.iceberg_parts} (ICEBERG_PARTS)",
            )
    client_id = params.get("newClientOrderId", "")
    if client_id and not CLIENT_ORDER_ID.fullmatch(client_id):
        raise bad_request(
            codes.ILLEGAL_PARAM,
            f"newClientOrderId {client_id!r} must be 1..36 of A-Z a-z 0-9 . _ : / -",
        )
    stp = STP[choice(params, "selfTradePreventionMode", STP, "NONE")]
    flags = OrderFlag.POST_ONLY if type_name == "LIMIT_MAKER" else 0
    return OrderRequest(
        *(sym, side, ord_type, tif, flags, stp, price, qty, stop, display, client_id, type_name)
    )


def order_id(params: Mapping[str, str]) -> int | None:
    text = params.get("orderId")
    if not text:
        return None
    value = _integer("orderId", text)
    if not 0 < value <= MAX_INT64:
        raise bad_request(codes.ILLEGAL_PARAM, f"orderId {value} is outside 1..{MAX_INT64}")
    return value


def not_found(what: str) -> ApiError:
    return ApiError(400, codes.NO_SUCH_ORDER, f"order does not exist: {what}")


def forgotten(client_id: str) -> ApiError:
    """A clientOrderId used here whose order is no longer remembered: its status is unknown
    here, not "does not exist", which a script takes for "send it again" (review 70)."""
    return ApiError(
        504, codes.TIMEOUT, f"origClientOrderId={client_id} was used here and its order is no "
        "longer remembered: its status is unknown here; find it in allOrders",
    )  # fmt: skip


def opt_ms(params: dict[str, str], name: str) -> int | None:
    if not params.get(name):
        return None
    return integer(params, name, 0, 0, 2**63 - 1)


def time_span(params: dict[str, str]) -> tuple[int | None, int | None]:
    """``startTime`` and ``endTime`` (ms), either absent; a start after the end is refused
    naming both (-1023, as Binance does), never asked of the database for an empty answer
    (review 91)."""
    start, end = opt_ms(params, "startTime"), opt_ms(params, "endTime")
    if start is not None and end is not None and start > end:
        raise bad_request(codes.BAD_TIME_RANGE, f"startTime {start} is after endTime {end}")
    return start, end


def router_refusal(
    req: OrderRequest, market: Market, risk: RiskConfig, amounts: Commissions | None = None
) -> None:
    """The 400 the router would give ``req`` from the order alone, ``order/test``'s check
    (reviews 315, 320, 327): a stop buy without a price whose cap (its stop price plus
    ``bandBps``, as ``Accounts.reserve_new`` caps it) passes the largest price is refused
    ``INVALID_PRICE`` before its notional is judged; then ``FILTER_FAILURE`` where the
    notional passes ``risk.max_order_notional`` at the price the router judges it at
    (``Market.judged_at``). What the router judges at the last trade (a market order, even
    one with a worst price, capped below it from the last trade since review 328; a sell
    below it) is its own."""
    price = req.price
    if req.side == Side.BUY and req.ord_type == OrdType.STOP and not price:
        price = market.cap(req.stop_price)
        if price > MAX_INT64:
            refused = refusal(ResultCode.INVALID_PRICE, req, risk, amounts)
            raise bad_request(codes.NEW_ORDER_REJECTED, refused)
    if not risk.max_order_notional or req.ord_type == OrdType.MARKET:
        return  # a market buy's cap comes from the last trade, the router's (review 328)
    at = market.judged_at(req.side, req.ord_type, price, req.stop_price)
    if at and market.notional(at, req.qty) > risk.max_order_notional:
        refused = refusal(ResultCode.NOTIONAL_TOO_LARGE, req, risk, amounts)
        raise bad_request(codes.FILTER_FAILURE, refused)


def refusal(
    code: ResultCode, req: OrderRequest, risk: RiskConfig, amounts: Commissions | None = None
) -> str:
    """The message of the exchange's refusal of new order ``req``: the code, the order's
    values, and the rule it broke where a configured limit says (review 47: the code's
    name alone told a client neither)."""
    sym = req.symbol
    text = (
        f"order rejected: {code.name} ({int(code)}) symbol={sym.name} "
        f"side={SIDE_NAMES[req.side]} type={req.type_name}"
    )
    if req.price:
        text += f" price={format_units(req.price, sym.price_decimals).decode()}"
    if req.stop_price:
        text += f" stopPrice={format_units(req.stop_price, sym.price_decimals).decode()}"
    text += f" quantity={format_units(req.qty, sym.qty_decimals).decode()}"
    if code == ResultCode.PRICE_OUT_OF_BAND and req.ord_type == OrdType.STOP:
        text += (
            f": the best opposite price is past its stopPrice by more than bandBps "
            f"{sym.band_bps} bps: banded from its stopPrice, it could not trade"
        ) + (", or past its price, the worst it may trade at" if req.price else "")
    elif code == ResultCode.PRICE_OUT_OF_BAND and req.ord_type == OrdType.MARKET:
        text += (
            f": its cap, the last trade plus bandBps {sym.band_bps} bps"
            + (" (lower than its price)" if req.price else "")
            + ", is below the best ask: capped, it could not trade"
        )
    elif code == ResultCode.PRICE_OUT_OF_BAND and req.ord_type == OrdType.STOP_LIMIT:
        text += (
            f": a stop-limit's price may be at most limitBandBps {sym.limit_band_bps} bps from "
            "its stopPrice while it waits (from the last trade once the market is past it)"
        )
    elif code == ResultCode.PRICE_OUT_OF_BAND:
        text += (
            f": a limit price may be at most limitBandBps {sym.limit_band_bps} bps from the "
            "last trade"
        )
    elif code == ResultCode.TOO_MANY_OPEN_ORDERS:
        text += f": an account may have at most {risk.max_open_orders} open orders"
    elif code == ResultCode.INVALID_PRICE and (
        req.side == Side.BUY and req.ord_type == OrdType.STOP and not req.price
    ):
        text += cap_note(sym, "stopPrice")
    elif code == ResultCode.NOTIONAL_TOO_LARGE:
        limit = risk.max_order_notional
        text += notional_note(limit, sym, req.side, req.ord_type, req.price, amounts)
    return text
