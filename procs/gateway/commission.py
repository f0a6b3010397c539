"""The commission a fill pays, as the gateway's live views show it: the REST order answer's
``fills``, the private stream's ``executionReport`` and FIX ExecutionReports (Commission 12).

The router charges each side floor(notional x bps / 10_000) in the quote asset's minor units
(``settlement.py``), the maker's bps for the resting order and the taker's for the
aggressor, under the fees *journaled* in its state (``core/fees.py``). The gateway follows no
journal, so it computes the same formula under the fees of its own config. Those agree once
the router and the gateway run the same config: a router journals its config's fees when it
starts. Between a change of the fees in the config and the restart of both that puts it in
force, the two differ. ``myTrades`` shows what the database writer filed from the journal
(the ``trades`` table's ``maker_fee`` and ``taker_fee``): that is the ledger's word; a fill
the writer has not filed yet it shows from here (``live_trades.py``) until it has, with the
fee computed when the gateway saw it (kept in its order log across a restart).
"""

from __future__ import annotations

from collections.abc import Iterable

from config.schema import AssetConfig, SymbolConfig
from procs.core.money import Market
from procs.gateway.instruments import format_units


class Commissions:
    """Fees of fills per symbol, from the configured symbols and assets (``Market.fees``, the
    router's formula). A symbol whose assets are not among ``assets`` has none (``fee``
    returns None)."""

    def __init__(self, symbols: Iterable[SymbolConfig], assets: Iterable[AssetConfig]) -> None:
        by_name = {a.name: a for a in assets}
        #: symbol id -> (its market, its quote asset)
        self._markets: dict[int, tuple[Market, AssetConfig]] = {}
        for s in symbols:
            base, quote = by_name.get(s.base), by_name.get(s.quote)
            if base is not None and quote is not None:
                self._markets[s.id] = (Market.of(s, base, quote), quote)

    def fee(self, symbol: int, price: int, qty: int, maker: bool) -> int | None:
        """What the maker (or taker) side of a trade of ``qty`` lots at ``price`` ticks pays,
        in quote minor units; None for a symbol without known assets."""
        known = self._markets.get(symbol)
        if known is None:
            return None
        maker_fee, taker_fee = known[0].fees(price, qty)
        return maker_fee if maker else taker_fee

    def shown(self, symbol: int, price: int, qty: int, maker: bool) -> tuple[bytes, str] | None:
        """(the commission as a decimal in quote asset units, the quote asset's name), or
        None for a symbol without known assets."""
        fee = self.fee(symbol, price, qty, maker)
        return None if fee is None else self.formatted(symbol, fee)

    def formatted(self, symbol: int, fee: int) -> tuple[bytes, str] | None:
        """``shown`` of a ``fee`` computed already (``fee``'s, in quote minor units; or any
        quote amount so: a notional limit), or None for a symbol without known assets."""
        known = self._markets.get(symbol)
        if known is None:
            return None
        return format_units(fee, known[1].decimals), known[1].name
