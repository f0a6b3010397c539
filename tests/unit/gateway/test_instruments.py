"""Decimal text <-> integer units at the edge: steps, signs and the int64 ceiling."""

from __future__ import annotations

from config.schema import SymbolConfig
from procs.gateway.instruments import format_units, price_ticks, qty_lots

SYM = SymbolConfig(name="BTC-USD", id=1, price_decimals=2, qty_decimals=2, tick=5, base="BTC")


def test_values_on_the_step_become_units() -> None:
    assert price_ticks(b"30000.05", SYM) == 3_000_005
    assert qty_lots(b"0.5", SYM) == 50
    assert format_units(3_000_005, 2) == b"30000.05"


def test_refusals_name_the_value_and_the_rule() -> None:
    assert price_ticks(b"1.01", SYM) == "price 1.01 is not a multiple of tick 0.05 (symbol=BTC-USD)"
    assert "must be positive" in str(qty_lots(b"0", SYM))
    assert "not a multiple of lot" in str(qty_lots(b"0.001", SYM))


def test_values_beyond_int64_are_refused_not_encoded() -> None:
    huge = b"9" * 30
    assert "beyond the largest price 92233720368547758.05" in str(price_ticks(huge, SYM))
    assert "beyond the largest quantity" in str(qty_lots(huge, SYM))
    assert price_ticks(b"92233720368547758.05", SYM) == 9_223_372_036_854_775_805
