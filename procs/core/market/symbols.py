"""A symbol as market data shows it: its stream prefix and how its integers become decimals.

Inside, prices are integer price units and sizes integer size units (``SymbolConfig``); at the
edge they are decimal strings, price / 10**price_decimals, so "12345" with 2 decimals is
"123.45". A notional (price x size) has price_decimals + qty_decimals decimals.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.schema import SymbolConfig


def decimal_string(value: int, decimals: int) -> str:
    """``value`` / 10**``decimals`` as an exact decimal string: (12345, 2) -> "123.45"."""
    if decimals == 0:
        return str(value)
    sign = "-" if value < 0 else ""
    digits = str(abs(value)).rjust(decimals + 1, "0")
    return f"{sign}{digits[:-decimals]}.{digits[-decimals:]}"


@dataclass(frozen=True)
class MarketSymbol:
    id: int
    name: str  # as configured: "BTC-USD"
    stream: str  # as streams name it: "btc-usd"
    price_decimals: int
    qty_decimals: int

    @classmethod
    def from_config(cls, s: SymbolConfig) -> MarketSymbol:
        return cls(s.id, s.name, s.name.lower(), s.price_decimals, s.qty_decimals)

    def price(self, ticks: int) -> str:
        return decimal_string(ticks, self.price_decimals)

    def qty(self, lots: int) -> str:
        return decimal_string(lots, self.qty_decimals)

    def notional(self, amount: int) -> str:
        return decimal_string(amount, self.price_decimals + self.qty_decimals)
