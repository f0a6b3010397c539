"""Decimal prices and sizes at the edge <-> integer ticks and lots inside, per symbol.

A FIX price ``30123.45`` on a symbol with ``price_decimals = 2`` is 3012345 price units, and
must be a multiple of ``tick``; a size works the same with ``qty_decimals`` and ``lot``. A
value the symbol cannot represent is refused with a message that names it and the step.
"""

from __future__ import annotations

import functools

from config.schema import SymbolConfig


class Instruments:
    def __init__(self, symbols: list[SymbolConfig]) -> None:
        self.by_name: dict[bytes, SymbolConfig] = {s.name.encode(): s for s in symbols}
        self.by_id: dict[int, SymbolConfig] = {s.id: s for s in symbols}


def to_units(text: bytes, decimals: int) -> int | None:
    """``text`` scaled by 10**decimals, or None when it has more (non-zero) decimals."""
    negative = text[:1] == b"-"
    whole, _, digits = (text[1:] if negative else text).partition(b".")
    frac = digits.rstrip(b"0")
    if len(frac) > decimals or not (whole or digits):  # ".0" is a zero (review 217), "." none
        return None
    value: int = int(whole or b"0") * 10**decimals + int(
        (frac or b"0").ljust(decimals, b"0") or b"0"
    )
    return -value if negative else value


@functools.lru_cache(maxsize=4096)  # reports repeat the same prices and sizes
def format_units(value: int, decimals: int) -> bytes:
    if decimals == 0:
        return b"%d" % value
    sign = b"-" if value < 0 else b""
    whole, frac = divmod(abs(value), 10**decimals)
    return b"%s%d.%0*d" % (sign, whole, decimals, frac)


#: The largest integer a record field holds (prices, sizes, ids are int64 inside).
MAX_INT64 = 2**63 - 1


def price_ticks(text: bytes, s: SymbolConfig) -> int | str:
    """Price units of ``text`` for symbol ``s`` (positive, a multiple of the tick), or why
    not."""
    units = to_units(text, s.price_decimals)
    if units is None or units % s.tick:
        step = format_units(s.tick, s.price_decimals).decode()
        return f"price {text.decode()} is not a multiple of tick {step} (symbol={s.name})"
    if units <= 0:
        return f"price {text.decode()} must be positive (symbol={s.name})"
    if abs(units) > MAX_INT64:  # named: the largest the symbol takes, on its tick
        top = format_units(MAX_INT64 // s.tick * s.tick, s.price_decimals).decode()
        return f"price {text.decode()} is beyond the largest price {top} (symbol={s.name})"
    return units


def qty_lots(text: bytes, s: SymbolConfig) -> int | str:
    """Size units of ``text`` for symbol ``s`` (a positive multiple of the lot), or why not."""
    units = to_units(text, s.qty_decimals)
    if units is None or units % s.lot:
        step = format_units(s.lot, s.qty_decimals).decode()
        return f"quantity {text.decode()} is not a multiple of lot {step} (symbol={s.name})"
    if units <= 0:
        return f"quantity {text.decode()} must be positive (symbol={s.name})"
    if units > MAX_INT64:  # named: the largest the symbol takes (review 144: not int64's)
        top = format_units(s.most_qty, s.qty_decimals).decode()
        return (
            f"quantity {text.decode()} is beyond the largest quantity, maxQty {top} "
            f"(symbol={s.name})"
        )
    return units
