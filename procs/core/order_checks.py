"""A book's checks of a command before it touches anything: prices, sizes, order types and
ownership against the symbol's rules (``SymbolSpec``), each refusal a ``ResultCode``.

A mixin of ``Book`` (``book.py``), which owns the state it reads.
"""

from __future__ import annotations

from procs.common.records import CancelOrder, NewOrder, ReplaceOrder
from procs.common.result_codes import ResultCode
from procs.common.types import OrderFlag, OrdType, Side, TimeInForce
from procs.core.resting import RestingOrder
from procs.core.symbols import SymbolSpec

#: Times in force an order may rest with.
RESTS = (TimeInForce.GTC, TimeInForce.DAY)
_MAX_PRICE = 2**63 - 1  # the highest price an int64 field holds


def _other(side: Side) -> Side:
    return Side.SELL if side == Side.BUY else Side.BUY


class OrderChecks:
    spec: SymbolSpec
    halted: bool
    last_price: int
    orders: dict[int, RestingOrder]
    stops: dict[int, RestingOrder]

    def _crossable(self, side: Side, price: int, enough: int) -> int:
        raise NotImplementedError

    def _best(self, side: Side) -> int | None:
        raise NotImplementedError

    def _check_order(self, cmd: NewOrder) -> ResultCode | None:
        if cmd.symbol != self.spec.symbol:
            return ResultCode.UNKNOWN_SYMBOL
        if self.halted:
            return ResultCode.SYMBOL_HALTED
        if cmd.order_id in self.orders or cmd.order_id in self.stops:
            return ResultCode.INVALID_ORDER  # the router never reuses an id
        if cmd.flags & ~OrderFlag.ALL:
            return ResultCode.INVALID_ORDER
        ord_type, tif = cmd.ord_type, cmd.tif
        marketable = ord_type in (OrdType.MARKET, OrdType.STOP)
        if marketable:
            if cmd.price < 0:
                return ResultCode.INVALID_PRICE  # a market order's cap: 0 (none) or on tick
            if cmd.price % self.spec.tick:
                return ResultCode.PRICE_NOT_ON_TICK
        if ord_type in (OrdType.STOP, OrdType.STOP_LIMIT):
            if cmd.stop_price <= 0:
                return ResultCode.INVALID_PRICE
            if cmd.stop_price % self.spec.tick:
                return ResultCode.PRICE_NOT_ON_TICK
        elif cmd.stop_price:
            return ResultCode.INVALID_ORDER  # a stop price on an order that is not a stop
        if not marketable:
            # a stop-limit waiting for its trigger enters the book at the market its stop
            # names, not today's: its limit is collared around the stop (review 51; no
            # collar before the first trade, as for any limit)
            waits = ord_type == OrdType.STOP_LIMIT and not self._reached(cmd.side, cmd.stop_price)
            reference = cmd.stop_price if waits and self.last_price else 0
            problem = self._check_limit(cmd.price, reference)
            if problem is not None:
                return problem
        elif ord_type == OrdType.STOP and (dead := self._dead_on_arrival(cmd)) is not None:
            return dead
        problem = self._check_qty(cmd.qty)
        if problem is not None:
            return problem
        rests = tif in RESTS and not marketable
        if cmd.flags & OrderFlag.POST_ONLY:
            if not rests:
                return ResultCode.INVALID_ORDER  # post-only must be able to rest
            if ord_type == OrdType.LIMIT and self._crossable(cmd.side, cmd.price, 1) > 0:
                return ResultCode.POST_ONLY_WOULD_TAKE
            if ord_type == OrdType.STOP_LIMIT:
                return ResultCode.INVALID_ORDER
        if cmd.display_qty:
            if not rests:
                return ResultCode.INVALID_ORDER  # an iceberg must be able to rest
            spec = self.spec
            if cmd.display_qty % spec.lot:
                return ResultCode.QTY_NOT_ON_LOT
            if not spec.min_qty <= cmd.display_qty <= cmd.qty:
                return ResultCode.QTY_OUT_OF_RANGE
            if -(-cmd.qty // cmd.display_qty) > spec.iceberg_parts:
                return ResultCode.INVALID_QTY  # a slice per trade: bound the trades
        if ord_type == OrdType.MARKET:
            return self._unreachable(cmd)
        return None

    def _unreachable(self, cmd: NewOrder) -> ResultCode | None:
        """Why a market order could not trade, or None: nothing rests opposite it
        (NO_LIQUIDITY), or it is a buy whose cap, the router's (``CAPPED``: the last trade
        plus ``band_bps``), is below the best ask (PRICE_OUT_OF_BAND). Refused rather than
        accepted and expired unfilled with no reason, as a stop-market that triggers on
        arrival is (``_dead_on_arrival``; review 328). A worst price the client chose, within
        the cap, is the client's limit: below the ask, it expires as an IOC limit would."""
        best = self._best(_other(cmd.side))
        if best is None:
            return ResultCode.NO_LIQUIDITY
        capped = cmd.side == Side.BUY and cmd.flags & OrderFlag.CAPPED
        return ResultCode.PRICE_OUT_OF_BAND if capped and best > cmd.price else None

    def _check_limit(self, price: int, reference: int = 0) -> ResultCode | None:
        """A limit price: positive, on a tick, within the collar (``limit_band_bps``) of
        ``reference`` (0: the last trade price; none before the first trade)."""
        spec = self.spec
        if price <= 0:
            return ResultCode.INVALID_PRICE
        if price % spec.tick:
            return ResultCode.PRICE_NOT_ON_TICK
        reference = reference or self.last_price
        if spec.limit_band_bps and reference:
            band = reference * spec.limit_band_bps // 10_000
            if abs(price - reference) > band:
                return ResultCode.PRICE_OUT_OF_BAND
        return None

    def _reached(self, side: Side, stop_price: int) -> bool:
        """Whether a stop of ``side`` at ``stop_price`` triggers on arrival: the last trade
        is at or past it (``Book._trigger_stops``)."""
        last = self.last_price
        if not last:
            return False
        return stop_price <= last if side == Side.BUY else stop_price >= last

    def _dead_on_arrival(self, cmd: NewOrder) -> ResultCode | None:
        """Why a stop-market that triggers on arrival could not trade, or None: it enters
        banded from its trigger (``Book._take``, review 42), within its cap, and the best
        opposite price is past that (PRICE_OUT_OF_BAND), or there is none (NO_LIQUIDITY).
        Refused rather than accepted, triggered and expired unfilled whatever the book
        (review 51; judged by the book it would meet, not the last trade: the reread)."""
        side = cmd.side
        if not self._reached(side, cmd.stop_price):
            return None
        limit = self._protection(side, cmd.stop_price)
        best = self._best(_other(side))
        if limit is None or best is None:
            return ResultCode.NO_LIQUIDITY
        if cmd.price:  # the router's cap
            limit = min(limit, cmd.price) if side == Side.BUY else max(limit, cmd.price)
        beyond = best > limit if side == Side.BUY else best < limit
        return ResultCode.PRICE_OUT_OF_BAND if beyond else None

    def _check_qty(self, qty: int) -> ResultCode | None:
        spec = self.spec
        if qty % spec.lot:
            return ResultCode.QTY_NOT_ON_LOT
        if not spec.min_qty <= qty <= spec.max_qty:
            return ResultCode.QTY_OUT_OF_RANGE
        return None

    def _check_owner(
        self, cmd: CancelOrder | ReplaceOrder, order: RestingOrder | None
    ) -> ResultCode | None:
        if cmd.symbol != self.spec.symbol:
            return ResultCode.UNKNOWN_SYMBOL
        if order is None:
            return ResultCode.UNKNOWN_ORDER
        if order.account != cmd.account:
            return ResultCode.NOT_ORDER_OWNER
        return None

    def _protection(self, side: Side, reference: int = 0) -> int | None:
        """The furthest price a market ``side`` order may trade at: ``reference`` (a
        triggered stop's trigger price; 0: the best opposite price) moved ``band_bps``
        against the taker, on a tick, never short of the reference (one off the tick, after
        the tick was raised, is reached: review 231). None when there is no opposite."""
        best = self._best(_other(side))
        if best is None:
            return None
        best = reference or best
        tick = self.spec.tick
        band = best * self.spec.band_bps // 10_000
        if side == Side.BUY:  # at most the highest price a record carries (int64)
            return max(best, min((best + band) // tick * tick, _MAX_PRICE // tick * tick))
        return min(best, max(tick, -(-(best - band) // tick) * tick))
