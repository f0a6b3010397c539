"""Why the router refused an order's notional (``NOTIONAL_TOO_LARGE``), as both edges say it:
the limit and the price it judged the order at (``Accounts.reserve_new`` and
``market_sell_notional``: a reference price, as venues check; review 49). The REST API adds
it to its refusal's message, FIX to the Text (58) of its ExecutionReport (review 62). And why
a stop buy without a price was refused ``INVALID_PRICE``: its cap would not fit (``cap_note``)."""

from __future__ import annotations

from config.schema import SymbolConfig
from procs.common.types import OrdType, Side
from procs.core.money import largest_capped
from procs.gateway.commission import Commissions
from procs.gateway.instruments import MAX_INT64, format_units


def notional_note(
    limit: int, sym: SymbolConfig, side: Side, ord_type: OrdType, price: int,
    amounts: Commissions | None = None,
) -> str:  # fmt: skip
    """``": its notional may be at most ..."``, or "" where no limit is set (0). The limit
    (quote minor units) as ``amounts`` shows a quote amount: a decimal of the quote asset,
    as exchangeInfo's ``maxNotional`` (review 335: "100000000 minor units of USD" read as a
    hundred million dollars); in minor units where its assets are not known."""
    if not limit:
        return ""
    shown = None if amounts is None else amounts.formatted(sym.id, limit)
    most = f"{shown[0].decode()} {shown[1]}" if shown else f"{limit} minor units of {sym.quote}"
    return f": its notional may be at most {most}, judged at " + (
        judged_at(sym, side, ord_type, price)
    )


def judged_at(sym: SymbolConfig, side: Side, ord_type: OrdType, price: int) -> str:
    """At what price the router judges an order's notional."""
    band = f"bandBps {sym.band_bps}"
    if side == Side.SELL:
        if ord_type in (OrdType.STOP, OrdType.STOP_LIMIT):
            return "the higher of its price and its stopPrice"
        return "the higher of its price and the last trade"
    if ord_type == OrdType.MARKET:  # a worst price never lifts the cap (review 328)
        lower = ", or its price where lower" if price else ""
        return f"its cap: the last trade plus {band}{lower}"
    if price or ord_type != OrdType.STOP:
        return "its price"
    return f"its cap: its stopPrice plus {band}"


def cap_note(sym: SymbolConfig, stop: str) -> str:
    """Why the router refused a stop buy without a price ``INVALID_PRICE``: its cap, the
    stop price (named ``stop``) plus ``band_bps``, is past the largest price (review 217)."""
    top = format_units(largest_capped(sym.tick, sym.band_bps, MAX_INT64), sym.price_decimals)
    return (
        f": without a price, a stop buy is capped at its {stop} plus bandBps {sym.band_bps}, "
        f"which must not pass the largest price: the largest {stop} is {top.decode()}"
    )
