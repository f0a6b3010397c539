"""Settlement: what the matchers' events do to the router's accounts (``Accounts.apply``).
The commands' side, the reservations each order holds, is ``accounts.py``; this is the
other side, shared by the live router and every replay.

A trade at price p of qty q moves notional(p, q) + the buyer's fee out of the buyer's
hold and credits it base(q); moves base(q) out of the seller's hold and credits it
notional - the seller's fee. A fee is floor(notional * bps / 10_000), the taker's bps for the
aggressor and the maker's for the resting side, credited to the fee account (``RiskConfig.
fee_account``, journaled as the fees are); rounding down never charges more than was reserved.
Then the buyer's hold is cut back to what its remaining qty needs at its limit. That never
goes short: with A = notional(limit, leaves_before) * m / 10_000 and B the same for the leaves
after, the fill cost at most notional(limit, q) + floor(A - B) (p <= limit, bps <= m), and the
hold had notional(limit, q) + ceil(A) - ceil(B) more than what is left needs, where
floor(A - B) <= ceil(A) - ceil(B). The code checks it anyway, as it checks the matcher's
leaves against its own, and raises ``AssertionError`` on a mismatch (a broken invariant).

Order lifetimes. The matcher answers a new order with ``Accepted`` or ``Rejected``, a replace
with ``Replaced`` or ``Rejected``, in command order; each order keeps the holds of its replaces
in flight, first in first out. A cancel is not tracked: one for a live order is never rejected
(its ``OrderDone`` releases everything), and once an order is done every replace still in
flight will be rejected, so a reject then may release any of them. A reject sequenced before
the order's own new order is about some other command and is ignored. ``OrderDone`` (any
reason) releases what is held; the order is forgotten once nothing is in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from procs.common.records import (
    Accepted,
    OrderDone,
    Record,
    Rejected,
    Replaced,
    Trade,
    Triggered,
)
from procs.common.types import Side
from procs.core.money import Market

PENDING, LIVE, DONE = 0, 1, 2  # an order's status: new order in flight, accepted, done
_BUY = Side.BUY  # a module constant: an enum member lookup costs ~60 ns


@dataclass(slots=True)
class OpenOrder:
    """An order as the router tracks it: what it holds, until done and nothing in flight."""

    account: int
    symbol: int
    side: Side
    price: int  # the limit (or cap) its hold is computed at
    leaves: int
    held: int  # hold(side, price, leaves) while not done, then 0
    seq: int  # its new order's seq: a reject sequenced before is about another command
    status: int = PENDING
    replaces: list[int] = field(default_factory=list)  # holds of replaces in flight
    filled: int = 0  # of its total (an order from an older snapshot: 0, which overstates T)
    #: (price, total) each replace in flight asks, oldest first, as ``replaces`` (those an
    #: older snapshot restored are not known: ``asks`` holds the newest replaces' then)
    asks: list[tuple[int, int]] = field(default_factory=list)

    def pop_replace(self) -> int:
        """The hold of the oldest replace in flight, which the matcher answered."""
        if len(self.asks) == len(self.replaces):
            self.asks.pop(0)
        return self.replaces.pop(0)


class Settlement:
    """The event side of ``Accounts`` (a base class: the state is the accounts')."""

    markets: dict[int, Market]
    fee_account: int
    _free: dict[tuple[int, int], int]
    _reserved: dict[tuple[int, int], int]
    _last: dict[int, int]  # symbol -> last trade price seen
    _orders: dict[int, OpenOrder]
    _open: dict[int, int]  # account -> orders sent and not done
    _forget: Callable[[int], None]  # an order leaves ``_orders`` (``Accounts._forget``)
    handlers: dict[type, Callable[[Any], None]]  # ``settlement_handlers()``, made once

    def settlement_handlers(self) -> dict[type, Callable[[Any], None]]:
        """Event type -> what it does (``apply``; the sequencer's settle loop looks handlers
        up itself, one call an event less on the router's hot path)."""
        return {
            Trade: self._trade,
            OrderDone: self._done,
            Accepted: self._accepted,
            Rejected: self._rejected,
            Replaced: self._replaced,
            Triggered: self._triggered,
        }

    # -- events ---------------------------------------------------------------------------------

    def apply(self, event: Record) -> None:
        """Apply one matcher event; events of other kinds (book levels, status) are ignored."""
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _accepted(self, accepted: Accepted) -> None:
        order = self._order(accepted.order_id, "accepted")
        seen = (order.status, order.price, order.leaves)
        if seen != (PENDING, accepted.price, accepted.qty):
            raise AssertionError(
                f"order {accepted.order_id} accepted at price={accepted.price} "
                f"qty={accepted.qty}, the router has status={order.status} "
                f"price={order.price} qty={order.leaves}"
            )
        order.status = LIVE

    def _triggered(self, triggered: Triggered) -> None:
        self._order(triggered.order_id, "triggered")  # reserved at entry: nothing to do

    def _trade(self, trade: Trade) -> None:
        market = self.markets[trade.symbol]
        notional = market.notional(trade.price, trade.qty)
        base = trade.qty * market.base_scale
        maker_fee, taker_fee = market.fees(trade.price, trade.qty)
        maker = (trade.maker_order_id, trade.maker_leaves, maker_fee)
        taker = (trade.taker_order_id, trade.taker_leaves, taker_fee)
        (buy_id, buy_leaves, buy_fee), (sell_id, sell_leaves, sell_fee) = (
            (taker, maker) if trade.aggressor == _BUY else (maker, taker)
        )
        buyer = self._fill(market, buy_id, trade, buy_leaves, notional + buy_fee)
        seller = self._fill(market, sell_id, trade, sell_leaves, base)
        self._credit(buyer.account, market.base, base)
        self._credit(seller.account, market.quote, notional - sell_fee)
        self._credit(self.fee_account, market.quote, buy_fee + sell_fee)
        self._last[trade.symbol] = trade.price

    def _fill(self, market: Market, oid: int, trade: Trade, leaves: int, cost: int) -> OpenOrder:
        """Take ``cost`` out of order ``oid``'s hold, then release what its rest needs no more."""
        order = self._order(oid, f"trade {trade.trade_id}")
        if order.status != LIVE or order.leaves - trade.qty != leaves:
            raise AssertionError(
                f"trade {trade.trade_id} fills {trade.qty} of order {oid} leaving {leaves}; the "
                f"router has status={order.status} leaves={order.leaves}"
            )
        order.leaves = leaves
        order.filled += trade.qty
        need = market.hold(order.side, order.price, leaves)
        excess = order.held - cost - need
        if excess < 0:
            raise AssertionError(
                f"trade {trade.trade_id} costs order {oid} {cost} but it holds {order.held} "
                f"and its rest needs {need}"
            )
        asset = market.hold_asset(order.side)
        self._spend(order.account, asset, cost)
        self._unreserve(order.account, asset, excess)
        order.held = need
        return order

    def _done(self, done: OrderDone) -> None:
        order = self._order(done.order_id, "done")
        if order.status != LIVE or order.leaves != done.leaves_qty:
            raise AssertionError(
                f"order {done.order_id} done ({done.reason.name}) with {done.leaves_qty} left; "
                f"the router has status={order.status} leaves={order.leaves}"
            )
        self._end(done.order_id, order)

    def _rejected(self, rejected: Rejected) -> None:
        order = self._orders.get(rejected.order_id)
        if (
            order is None
            or order.account != rejected.account
            or order.symbol != rejected.symbol
            or rejected.seq < order.seq
        ):
            return  # a command of ours never tracked: a cancel, another's order, an unknown id
        if order.status == PENDING:  # the new order itself
            self._end(rejected.order_id, order)
        elif order.replaces:
            market = self.markets[order.symbol]
            self._unreserve(order.account, market.hold_asset(order.side), order.pop_replace())
            if order.status == DONE and not order.replaces:
                self._forget(rejected.order_id)

    def _replaced(self, replaced: Replaced) -> None:
        order = self._order(replaced.order_id, "replaced")
        if order.status != LIVE or not order.replaces:
            raise AssertionError(
                f"order {replaced.order_id} replaced with no replace of it in flight "
                f"(status={order.status})"
            )
        market = self.markets[order.symbol]
        held = order.held + order.pop_replace()
        order.price, order.leaves = replaced.price, replaced.qty
        need = market.hold(order.side, order.price, order.leaves)
        if held < need:
            raise AssertionError(f"order {replaced.order_id} replaced needs {need}, holds {held}")
        self._unreserve(order.account, market.hold_asset(order.side), held - need)
        order.held = need

    def _end(self, oid: int, order: OpenOrder) -> None:
        """The order is done: release its hold; forget it once no replace of it is in flight."""
        market = self.markets[order.symbol]
        self._unreserve(order.account, market.hold_asset(order.side), order.held)
        order.held, order.status = 0, DONE
        self._open[order.account] -= 1
        if not self._open[order.account]:
            del self._open[order.account]
        if not order.replaces:
            self._forget(oid)

    def _unreserve(self, account: int, asset: int, amount: int) -> None:
        self._spend(account, asset, amount)
        self._credit(account, asset, amount)

    def _spend(self, account: int, asset: int, amount: int) -> None:
        """Take ``amount`` out of a reserved balance (a fill paid it, or it goes back)."""
        slot = (account, asset)
        left = self._reserved.get(slot, 0) - amount
        if left < 0:
            raise AssertionError(f"reserved {asset} of account {account} would go to {left}")
        if left:
            self._reserved[slot] = left
        else:
            self._reserved.pop(slot, None)

    def _credit(self, account: int, asset: int, amount: int) -> None:
        if amount:
            slot = (account, asset)
            self._free[slot] = self._free.get(slot, 0) + amount

    def _order(self, oid: int, what: str) -> OpenOrder:
        order = self._orders.get(oid)
        if order is None:
            raise AssertionError(f"{what} event for order {oid}, which the router does not know")
        return order
