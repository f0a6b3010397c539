"""What a book needs to know about its symbol: tick, lot and size limits, in integer units."""

from __future__ import annotations

from typing import Annotated

import msgspec

from config.schema import RingexConfig
from procs.common.types import SymbolId

Positive = Annotated[int, msgspec.Meta(ge=1)]
BasisPoints = Annotated[int, msgspec.Meta(ge=0, le=10_000)]


class SymbolSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Trading rules of one symbol. Prices are in ticks of the price unit, sizes in lots."""

    symbol: SymbolId
    #: A valid price is a multiple of this many price units.
    tick: Positive = 1
    #: A valid quantity is a multiple of this many size units.
    lot: Positive = 1
    #: Smallest and largest quantity of one order, in size units.
    min_qty: Positive = 1
    max_qty: Positive = 1_000_000_000
    #: An iceberg is at most this many slices: ceil(qty / display) <= iceberg_parts.
    iceberg_parts: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    #: Market protection: a market order never trades further than this from the best
    #: opposite price at its arrival, a triggered stop-market than this from its stop price
    #: (review 42); the unfilled rest is cancelled.
    band_bps: BasisPoints = 500
    #: Price collar for limit prices: once the symbol has traded, a limit price further than
    #: this from the last trade price (a stop-limit's still waiting for its trigger: from its
    #: stop price, review 51) is rejected (``PRICE_OUT_OF_BAND``). 0 turns it off.
    limit_band_bps: BasisPoints = 0


def symbol_specs(cfg: RingexConfig, matcher: str) -> list[SymbolSpec]:
    """The books matcher ``matcher`` owns, from the config's symbols."""
    specs = []
    for name in cfg.matcher(matcher).symbols:
        s = cfg.symbol(name)
        specs.append(
            SymbolSpec(
                symbol=s.id,
                tick=s.tick,
                lot=s.lot,
                min_qty=s.min_qty,
                max_qty=s.max_qty,
                iceberg_parts=s.iceberg_parts,
                band_bps=s.band_bps,
                limit_band_bps=s.limit_band_bps,
            )
        )
    return specs
