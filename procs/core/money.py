"""One symbol's money rules in integer units: notional, the hold an order needs, the asset it
holds, a market buy's cap. The units and the hold's fee margin are explained in
``accounts.py``, their user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from config.schema import AssetConfig, RingexConfig, SymbolConfig
from procs.common.types import OrdType, Side

BPS: Final = 10_000  # basis points in one
_BUY, _SELL = Side.BUY, Side.SELL  # module constants: an enum member lookup costs ~60 ns


def largest_capped(tick: int, band_bps: int, limit: int) -> int:
    """The largest reference price on ``tick`` whose cap (``Market.cap``) is at most
    ``limit``: the largest stop price a stop buy without a price may have."""
    ref = limit * BPS // (BPS + band_bps) // tick * tick
    while (ref + tick) * (BPS + band_bps) // BPS // tick * tick <= limit:
        ref += tick
    return ref


@dataclass(frozen=True, slots=True)
class Market:
    """One symbol's money rules, in integer units (units: ``accounts.py``)."""

    symbol: int
    base: int  # asset ids
    quote: int
    tick: int
    band_bps: int
    maker_bps: int
    taker_bps: int
    quote_scale: int  # quote minor units per price unit x qty unit
    base_scale: int  # base minor units per qty unit
    #: max(maker, taker): a buy's hold carries the larger fee (derived; a hot-path read)
    margin_bps: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "margin_bps", max(self.maker_bps, self.taker_bps))

    @classmethod
    def all(cls, cfg: RingexConfig) -> dict[int, Market]:
        return {s.id: cls.of(s, cfg.asset(s.base), cfg.asset(s.quote)) for s in cfg.symbols}

    @classmethod
    def of(cls, s: SymbolConfig, base: AssetConfig, quote: AssetConfig) -> Market:
        """Symbol ``s``'s rules under its configured fees."""
        return cls(
            *(s.id, base.id, quote.id, s.tick, s.band_bps, s.maker_fee_bps, s.taker_fee_bps),
            10 ** (quote.decimals - s.price_decimals - s.qty_decimals),
            10 ** (base.decimals - s.qty_decimals),
        )

    def notional(self, price: int, qty: int) -> int:
        return price * qty * self.quote_scale

    @staticmethod
    def judged_at(side: Side, kind: OrdType, price: int, stop_price: int) -> int:
        """The price a new order's notional is judged at against ``max_order_notional``:
        its ``price`` (a market or stop-market buy's: its cap), a stop sell's the higher of
        its price and its stop price, as it sells into the bids there; 0 for a market sell,
        which the live path judges at the last trade (``Accounts.market_sell_notional``).
        The router (``Accounts.reserve_new``) and the REST ``order/test`` judge alike."""
        if side == _SELL and kind in (OrdType.STOP, OrdType.STOP_LIMIT):
            return max(price, stop_price)
        return price

    def fees(self, price: int, qty: int) -> tuple[int, int]:
        """(maker's, taker's) fee of a trade of ``qty`` at ``price``: floor(notional x bps
        / 10_000), in quote minor units (rounded down, never more than was held)."""
        notional = price * qty * self.quote_scale
        return notional * self.maker_bps // BPS, notional * self.taker_bps // BPS

    def hold(self, side: Side, price: int, qty: int) -> int:
        """What an order of ``side`` with limit ``price`` and ``qty`` left must hold."""
        if side == _SELL:
            return qty * self.base_scale
        notional = price * qty * self.quote_scale
        return notional - (-notional * self.margin_bps // BPS)

    def hold_asset(self, side: Side) -> int:
        """The asset an order of ``side`` holds: quote to buy with, base to sell."""
        return self.quote if side == _BUY else self.base

    def cap(self, ref: int) -> int:
        """The highest price a market buy may pay when the reference price is ``ref``, on a
        tick: rounded down, unless that falls short of ``ref`` (one off the tick, after the
        tick was raised: then the tick above it; review 231: the touch there was out of
        reach)."""
        cap = ref * (BPS + self.band_bps) // BPS // self.tick * self.tick
        return cap if cap >= ref else -(-ref // self.tick) * self.tick
