"""The market-data process's ticker and trades, renamed for REST as Binance's spot API names them.

The market-data process answers ``/api/ticker`` and ``/api/trades`` with its WebSocket
stream's payloads (compact keys: ``{"e": "24hrTicker", "s", "p", "c", ...}``, ``{"e":
"trade", "t", "p", "q", ...}``), which its own page reads. A REST client written for the most
used venue API reads ``GET /api/v3/ticker/24hr``'s and ``GET /api/v3/trades``'s names
(``lastPrice``, ``price``, ``id``...): the gateway renames here, so the feed keeps its keys
(review 312). Decimals stay the strings market data wrote; ids, times and counts integers.

Left out: the ticker's ``bidPrice``, ``bidQty``, ``askPrice``, ``askQty``
(``ticker/bookTicker`` has the best bid and ask); before a symbol's first trade its ticker is
``{"symbol"}`` alone.
"""

from __future__ import annotations

from typing import Any

import msgspec

from config.schema import SymbolConfig
from procs.gateway.instruments import format_units, to_units

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

#: The ticker's stream keys and their REST names, in Binance's order.
TICKER_NAMES: tuple[tuple[str, str], ...] = (
    ("s", "symbol"),
    ("p", "priceChange"),
    ("P", "priceChangePercent"),
    ("w", "weightedAvgPrice"),
    ("x", "prevClosePrice"),
    ("c", "lastPrice"),
    ("Q", "lastQty"),
    ("o", "openPrice"),
    ("h", "highPrice"),
    ("l", "lowPrice"),
    ("v", "volume"),
    ("q", "quoteVolume"),
    ("O", "openTime"),
    ("C", "closeTime"),
    ("F", "firstId"),
    ("L", "lastId"),
    ("n", "count"),
)
#: The ticker's decimal strings (the others: its symbol, times in ms, trade ids and count).
TICKER_DECIMALS = tuple(
    name
    for key, name in TICKER_NAMES
    if key in ("p", "P", "w", "x", "c", "Q", "o", "h", "l", "v", "q")
)


def rest_ticker(data: dict[str, Any]) -> dict[str, Any]:
    """A ticker stream payload under Binance's REST names (the event's ``e`` and ``E`` are
    not a REST ticker's; ``C`` is its time); a key it lacks (before the first trade: all but
    ``s``) is left out."""
    return {name: data[key] for key, name in TICKER_NAMES if key in data}


def rest_trade(data: dict[str, Any], sym: SymbolConfig) -> dict[str, Any]:
    """A trade stream event as a row of Binance's ``GET /api/v3/trades``: ``quoteQty`` is
    price x qty exactly, at a notional's decimals (price's plus size's, as ``myTrades``'s and
    the ticker's ``quoteVolume``); every trade is the best match, as on Binance's book."""
    pd, qd = sym.price_decimals, sym.qty_decimals
    price, qty = _units(data["p"], pd), _units(data["q"], qd)
    return {
        "id": data["t"],
        "price": data["p"],
        "qty": data["q"],
        "quoteQty": format_units(price * qty, pd + qd).decode(),
        "time": data["T"],
        "isBuyerMaker": data["m"],
        "isBestMatch": True,
    }


def _units(text: str, decimals: int) -> int:
    units = to_units(text.encode(), decimals)
    if units is None:  # market data formats at the config's decimals: a mismatch is a fault
        raise ValueError(f"market data sent {text!r}, not a decimal with {decimals} decimals")
    return units


def ticker_body(body: bytes, sym: SymbolConfig | None) -> bytes:
    """``/api/ticker``'s answer (one ticker, or every symbol's array) renamed for REST."""
    data = _decode(body)
    if isinstance(data, list):
        return _encode([rest_ticker(t) for t in data])
    return _encode(rest_ticker(data))


def trades_body(body: bytes, sym: SymbolConfig | None) -> bytes:
    """``/api/trades``'s answer (``sym``'s trades, oldest first) as Binance's REST rows."""
    assert sym is not None  # trades are asked for one symbol
    return _encode([rest_trade(t, sym) for t in _decode(body)])
