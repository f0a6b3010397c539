"""``GET /api/v1/exchangeInfo``'s answer: the config's symbols as Binance spot describes them.

Beside ringex's own keys (``tickSize``, ``minQty``, ``bandBps``, the fees), each symbol carries
what a Binance client library reads to round and check an order before it sends it:
``baseAssetPrecision`` / ``quoteAssetPrecision``, the flags (``icebergAllowed``,
``cancelReplaceAllowed``, ``isSpotTradingAllowed``), the self-trade modes, and ``filters``
with Binance's filter types and field names (``PRICE_FILTER``, ``LOT_SIZE``,
``MARKET_LOT_SIZE``, ``ICEBERG_PARTS``, and ``NOTIONAL`` when ``risk.max_order_notional`` is
set). The per-account open-order limit is ``exchangeFilters``' ``EXCHANGE_MAX_NUM_ORDERS``:
like Binance's, it counts an account's open orders over every symbol. ``rateLimits`` gives
the API key's and the client address's request rates (``REQUEST_WEIGHT``: a request weighs
one, a batch of orders on the key's as many as it holds) and the account's command rate
(``ORDERS``, ``perAccount``: ``risk.max_commands_per_s``, a bucket as deep as its rate, over
every key, gateway and FIX session), so a client paces its orders without learning the rate
from 429s.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from config.edges import RestConfig
from config.schema import RingexConfig, SymbolConfig
from procs.gateway import rest_params as rp
from procs.gateway.instruments import MAX_INT64
from procs.gateway.instruments import format_units as fmt

Json = dict[str, Any]

#: A symbol's status when the market-data process cannot say (disabled, restarting):
#: a client that trades only on "TRADING" waits rather than trade on a guess.
UNKNOWN_STATUS = "UNKNOWN"
#: The filter types a symbol's ``filters`` may hold (``openapi.py`` lists them).
FILTER_TYPES = ("PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE", "ICEBERG_PARTS", "NOTIONAL")
#: What every symbol allows: icebergs; no OCO/OTO lists, no quote-sized market orders, no
#: trailing stops, no margin, and no ``order/cancelReplace`` (ringex replaces with ``PUT
#: order``, keeping the order id: review 315).
FLAGS: Final = {
    "icebergAllowed": True,
    "ocoAllowed": False,
    "otoAllowed": False,
    "quoteOrderQtyMarketAllowed": False,
    "allowTrailingStop": False,
    "cancelReplaceAllowed": False,
    "isSpotTradingAllowed": True,
    "isMarginTradingAllowed": False,
}
#: Binance's names for the assets' decimals (``_symbol``).
PRECISIONS: Final = (
    "baseAssetPrecision",
    "quotePrecision",
    "quoteAssetPrecision",
    "quoteCommissionPrecision",
    "baseCommissionPrecision",
)


def body(
    cfg: RingexConfig, rest: RestConfig, chosen: Iterable[SymbolConfig], statuses: Mapping[str, str]
) -> Json:
    """The answer for the symbols ``chosen``; ``statuses``: each one's trading status."""
    return {
        "timezone": "UTC",
        "serverTime": time.time_ns() // 1_000_000,
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "SECOND",
                "intervalNum": 1,
                "perKey": True,
                "limit": rest.key_rate_per_s,
                "burst": rest.key_burst,
            },
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "SECOND",
                "intervalNum": 1,
                "perIp": True,
                "limit": rest.ip_rate_per_s,
                "burst": rest.ip_burst,
            },
            {  # the router's bucket: new orders, amends and mass cancels, 429 -1015 past it
                "rateLimitType": "ORDERS",
                "interval": "SECOND",
                "intervalNum": 1,
                "perAccount": True,
                "limit": cfg.risk.max_commands_per_s,
                "burst": cfg.risk.max_commands_per_s,
            },
        ],
        "exchangeFilters": [
            {"filterType": "EXCHANGE_MAX_NUM_ORDERS", "maxNumOrders": cfg.risk.max_open_orders}
        ],
        "assets": [{"asset": a.name, "decimals": a.decimals} for a in cfg.assets],
        "symbols": [_symbol(cfg, s, statuses.get(s.name, UNKNOWN_STATUS)) for s in chosen],
    }


def _symbol(cfg: RingexConfig, s: SymbolConfig, status: str) -> Json:
    decimals = {a.name: a.decimals for a in cfg.assets}
    return {
        "symbol": s.name,
        "status": status,
        "baseAsset": s.base,
        "quoteAsset": s.quote,
        "baseAssetPrecision": decimals[s.base],
        "quotePrecision": decimals[s.quote],
        "quoteAssetPrecision": decimals[s.quote],
        "quoteCommissionPrecision": decimals[s.quote],  # fees are paid in the quote asset
        "baseCommissionPrecision": decimals[s.base],
        "pricePrecision": s.price_decimals,
        "quantityPrecision": s.qty_decimals,
        "tickSize": fmt(s.tick, s.price_decimals).decode(),
        "stepSize": fmt(s.lot, s.qty_decimals).decode(),
        # the least and the largest size an order may have: a multiple
        # of stepSize (the config's bounds need not be)
        "minQty": fmt(s.least_qty, s.qty_decimals).decode(),
        "maxQty": fmt(s.most_qty, s.qty_decimals).decode(),
        "icebergParts": s.iceberg_parts,
        "bandBps": s.band_bps,
        "limitBandBps": s.limit_band_bps,
        "makerFeeBps": s.maker_fee_bps,
        "takerFeeBps": s.taker_fee_bps,
        "orderTypes": sorted(rp.TYPES),
        "timeInForce": sorted(rp.TIFS),
        **FLAGS,
        "permissions": ["SPOT"],
        "defaultSelfTradePreventionMode": "NONE",
        "allowedSelfTradePreventionModes": sorted(rp.STP),
        "filters": filters(s, cfg.risk.max_order_notional, decimals[s.quote]),
    }


def filters(s: SymbolConfig, max_notional: int, quote_decimals: int) -> list[Json]:
    """Binance's filters for symbol ``s``: the tick and the largest price, the lot and the
    size bounds (market orders too), the iceberg slices, and ``max_notional`` (quote minor
    units; 0: no limit) as ``NOTIONAL``'s ``maxNotional``."""
    tick = fmt(s.tick, s.price_decimals).decode()
    lot = {
        "minQty": fmt(s.least_qty, s.qty_decimals).decode(),
        "maxQty": fmt(s.most_qty, s.qty_decimals).decode(),
        "stepSize": fmt(s.lot, s.qty_decimals).decode(),
    }
    out: list[Json] = [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": tick,
            "maxPrice": fmt(MAX_INT64 // s.tick * s.tick, s.price_decimals).decode(),
            "tickSize": tick,
        },
        {"filterType": "LOT_SIZE", **lot},
        {"filterType": "MARKET_LOT_SIZE", **lot},
        {"filterType": "ICEBERG_PARTS", "limit": s.iceberg_parts},
    ]
    if max_notional:
        out.append(
            {
                "filterType": "NOTIONAL",
                "minNotional": fmt(0, quote_decimals).decode(),
                "applyMinToMarket": False,
                "maxNotional": fmt(max_notional, quote_decimals).decode(),
                "applyMaxToMarket": True,
            }
        )
    return out
