"""The commission a fill pays, as the gateway's live views show it: the REST order answer's
``fills``, the private stream's ``executionReport`` and FIX ExecutionReports (Commission 12).

The router charges each side floor(notional x bps / 10_000) in the quote asset's minor units
(``Accounts._trade``), the maker's bps for the resting order and the taker's for the
aggressor, under the fees *journaled* in its state (``core/fees.py``). The gateway follows no
journal, so it computes the same formula under the fees of its own config. Those agree once
the router and the gateway run the same config: a router journals its config's fees when it
starts. Between a change of the fees in the config and the restart of both that puts it in
force, the two differ. ``myTrades`` shows what the database writer filed from the journal
(the ``trades`` table's ``maker_fee`` and ``taker_fee``): that is the ledger's word.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from config.schema import AssetConfig, SymbolConfig
from procs.core.money import BPS
from procs.gateway.instruments import format_units


@dataclass(frozen=True, slots=True)
class _Rates:
    maker_bps: int
    taker_bps: int
    quote_scale: int  # quote minor units per price unit x qty unit (``Market.quote_scale``)
    decimals: int  # of the quote asset
    asset: str  # the quote asset's name


class Commissions:
    """Fees of fills per symbol, from the configured symbols and assets. A symbol whose quote
    asset is not among ``assets`` has none (``fee`` returns None)."""

    def __init__(self, symbols: Iterable[SymbolConfig], assets: Iterable[AssetConfig]) -> None:
        by_name = {a.name: a for a in assets}
        self._rates: dict[int, _Rates] = {}
        for s in symbols:
            quote = by_name.get(s.quote)
            if quote is None:
                continue
            scale = 10 ** (quote.decimals - s.price_decimals - s.qty_decimals)
            self._rates[s.id] = _Rates(
                s.maker_fee_bps, s.taker_fee_bps, scale, quote.decimals, quote.name
            )

    def fee(self, symbol: int, price: int, qty: int, maker: bool) -> int | None:
        """What the maker (or taker) side of a trade of ``qty`` lots at ``price`` ticks pays,
        in quote minor units; None for a symbol without a known quote asset."""
        rates = self._rates.get(symbol)
        if rates is None:
            return None
        bps = rates.maker_bps if maker else rates.taker_bps
        return price * qty * rates.quote_scale * bps // BPS

    def shown(self, symbol: int, price: int, qty: int, maker: bool) -> tuple[bytes, str] | None:
        """(the commission as a decimal in quote asset units, the quote asset's name), or
        None for a symbol without a known quote asset."""
        fee = self.fee(symbol, price, qty, maker)
        if fee is None:
            return None
        rates = self._rates[symbol]
        return format_units(fee, rates.decimals), rates.asset
