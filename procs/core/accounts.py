"""The router's accounts and risk core: balances, reservations, settlement. Sans-I/O, no clock.

The router asks a check (``create_account``, ``transfer``, ``reserve_new``, ``reserve_replace``)
before it sequences a command: ``OK`` changes the state, a reject changes nothing. It feeds
every event the matchers emit to ``apply``, in each matcher's order. Integers throughout.

Units. A balance is an integer in its asset's minor unit (10**-decimals). On a symbol a price
is in 10**-price_decimals quote and a qty in 10**-qty_decimals base, so

    notional(price, qty) = price * qty * 10**(quote.decimals - price_decimals - qty_decimals)
    base(qty)            = qty * 10**(base.decimals - qty_decimals)

are whole minor units (the config refuses negative exponents).

Reservations. Each (account, asset) has ``free`` and ``reserved``, never negative; every
``reserved`` is exactly the sum of the holds of its orders. A sell holds base(leaves). A buy
holds notional(limit, leaves) plus the largest fee it may pay, ceil(notional * max(maker,
taker) / 10_000). A market or stop-market buy has no limit, so the router gives it a cap, sent
in its ``price`` (the matcher never trades above it): ref * (10_000 + band_bps) // 10_000
rounded down to the tick, ref being the last trade price the router has seen (for a stop, the
stop price). A cap already in the order is kept as it is, so a journaled order (capped live)
reserves the same on replay whatever trades the replay has seen by then.

A replace reserves what it may add to the order's hold, and the matcher's answer settles it:
``Replaced`` cuts the hold back to what the new price and leaves need, ``Rejected`` releases
the addition. A replace names the new total, fills included, and the matcher leaves open
that total less what has filled by then, so with T the order's total and L its leaves as the
router knows them, and x of those L still open when the replace lands (fills racing it only
lower x, each paid out of the old hold at or below the old price), the order then needs
hold(new price, Q - T + x) where the old hold had hold(old price, x) left. The addition is
the most that difference reaches over 0 <= x <= L: nothing for a sell that keeps or lowers
its total (a sell holds its size, whatever the price) and for a buy whose price and total
both go no higher; else the larger of the ends x = 0 and x = L (the difference is linear in
x but for the fee's rounding up, which moves it by at most 1, added when there is a fee).
A second replace in flight reserves its full new hold, as it cannot know which of those
before it will land. Replay re-checks each replace against a state with at least as many
fills settled: L is no larger, so the addition is no larger, and no event lowers a free
balance, so every journaled check passes again (below).

Settlement. A trade at price p of qty q moves notional(p, q) + the buyer's fee out of the
buyer's hold and credits it base(q); moves base(q) out of the seller's hold and credits it
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

Determinism. Only accepted commands are journaled, and a replay applies each with the events
of everything before it already settled (sooner than the live router did). No event lowers a
free balance (fills and releases only move money out of holds), and each command reserves an
amount that depends on the command alone (a replace: no more than it did live, above), so
every journaled check passes again, and the state after the same commands and events is the
same, whatever the interleaving. A replay skips the account limits (open orders, notional):
they judge new commands, and one lowered between two runs must not refuse what was accepted.
The fees a trade settles under are journaled state, not config of the day (``fees.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from config.schema import RingexConfig
from procs.common.records import (
    Accepted,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    Replaced,
    ReplaceOrder,
    Trade,
    Triggered,
)
from procs.common.result_codes import ResultCode
from procs.common.types import OrdType, Side
from procs.core import fees
from procs.core.accounts_state import AccountsState, OrderState
from procs.core.money import BPS, Market

OK: Final = ResultCode.OK
#: The most of one asset all accounts together may hold: records carry amounts as int64.
MAX_TOTAL: Final = 2**63 - 1
_PENDING, _LIVE, _DONE = 0, 1, 2  # an order's status: new order in flight, accepted, done
# Enum members as module constants: ``Side.BUY`` is a class attribute lookup (~60 ns) on
# paths a replay takes a million times.
_BUY, _SELL = Side.BUY, Side.SELL
_LIMIT, _MARKET, _STOP, _STOP_LIMIT = (
    OrdType.LIMIT,
    OrdType.MARKET,
    OrdType.STOP,
    OrdType.STOP_LIMIT,
)


@dataclass(slots=True)
class _Order:
    account: int
    symbol: int
    side: Side
    price: int  # the limit (or cap) its hold is computed at
    leaves: int
    held: int  # hold(side, price, leaves) while not done, then 0
    seq: int  # its new order's seq: a reject sequenced before is about another command
    status: int = _PENDING
    replaces: list[int] = field(default_factory=list)  # holds of replaces in flight
    filled: int = 0  # of its total (an order from an older snapshot: 0, which overstates T)


class Accounts:
    """Balances and open orders of every account. Called by the router process only."""

    def __init__(self, cfg: RingexConfig) -> None:
        self.markets = Market.all(cfg)
        self.assets = frozenset(a.id for a in cfg.assets)
        self.max_open = cfg.risk.max_open_orders
        self.max_notional = cfg.risk.max_order_notional
        self.fee_account = cfg.risk.fee_account
        self._accounts: set[int] = {self.fee_account}
        #: the fees and fee account journaled or snapshotted (``fees.py``): what a replay
        #: settles under; a symbol not in it still has its configured fees
        self.fee_schedule: dict[int, tuple[int, int]] = {}
        self.fee_account_recorded: int | None = None
        self._free: dict[tuple[int, int], int] = {}
        self._reserved: dict[tuple[int, int], int] = {}
        self._net: dict[int, int] = {}
        #: idempotency key -> (account, asset, amount, seq) of its transfer (None: unknown)
        self._keys: dict[int, tuple[int, int, int, int] | None] = {}
        self._last: dict[int, int] = {}  # symbol -> last trade price seen
        self._orders: dict[int, _Order] = {}
        self._open: dict[int, int] = {}  # account -> orders sent and not done
        #: event type -> what it does here (``apply``; the sequencer's settle loop looks
        #: handlers up itself, one call an event less on the router's hot path)
        self.handlers: dict[type, Callable[[Any], None]] = {
            Trade: self._trade,
            OrderDone: self._done,
            Accepted: self._accepted,
            Rejected: self._rejected,
            Replaced: self._replaced,
            Triggered: self._triggered,
        }

    # -- commands -------------------------------------------------------------------------------

    def create_account(self, account: int) -> ResultCode:
        if account == 0:
            return ResultCode.UNKNOWN_ACCOUNT  # 0 means "every account" in a mass cancel
        if account in self._accounts:
            return ResultCode.ACCOUNT_EXISTS
        self._accounts.add(account)
        return OK

    def transfer(self, account: int, asset: int, amount: int, key: int, seq: int = 0) -> ResultCode:
        """Deposit (``amount`` > 0) or withdraw (< 0, at most the free balance), as the
        command of ``seq``; a key used before is DUPLICATE_TRANSFER (``repeat_of`` tells a
        repeat of that very transfer from another one)."""
        if account not in self._accounts:
            return ResultCode.UNKNOWN_ACCOUNT
        if asset not in self.assets:
            return ResultCode.UNKNOWN_ASSET
        if amount == 0:
            return ResultCode.INVALID_AMOUNT
        if key in self._keys:
            return ResultCode.DUPLICATE_TRANSFER
        slot = (account, asset)
        if self._free.get(slot, 0) + amount < 0:
            return ResultCode.INSUFFICIENT_BALANCE
        if self._net.get(asset, 0) + amount > MAX_TOTAL:
            return ResultCode.BALANCE_LIMIT  # then every balance and hold of it fits an int64
        self._free[slot] = self._free.get(slot, 0) + amount
        self._net[asset] = self._net.get(asset, 0) + amount
        self._keys[key] = (account, asset, amount, seq)
        return OK

    def repeat_of(self, account: int, asset: int, amount: int, key: int) -> int:
        """The seq of the transfer ``key`` was used for when it was this same transfer (a
        retry, or a command read again after a router crash: it was applied once), else 0."""
        done = self._keys.get(key)
        return done[3] if done is not None and done[:3] == (account, asset, amount) else 0

    def reserve_new(self, order: NewOrder, *, limits: bool = True) -> tuple[ResultCode, NewOrder]:
        """Check and reserve a new order that carries its ``order_id`` (and ``seq``). Returns
        the order to sequence: a market or stop-market buy gets its cap in ``price``.
        ``limits=False`` (replay) skips the account limits."""
        account, symbol = order.account, order.symbol
        if account not in self._accounts:
            return ResultCode.UNKNOWN_ACCOUNT, order
        market = self.markets.get(symbol)
        if market is None:
            return ResultCode.UNKNOWN_SYMBOL, order
        if order.order_id in self._orders:
            raise AssertionError(f"order id {order.order_id} is already in use")
        if limits and self._open.get(account, 0) >= self.max_open:
            return ResultCode.TOO_MANY_OPEN_ORDERS, order
        side, kind, price = order.side, order.ord_type, order.price
        if side == _BUY and kind in (_MARKET, _STOP) and price == 0:
            ref = self._last.get(symbol, 0) if kind == _MARKET else order.stop_price
            if ref == 0 and kind == _MARKET:
                return ResultCode.NO_REFERENCE_PRICE, order
            price = market.cap(max(ref, 0))
            if price > MAX_TOTAL:
                return ResultCode.INVALID_PRICE, order  # its cap would not fit the record
            if price > 0:
                order = msgspec.structs.replace(order, price=price)
        if side == _BUY and price <= 0:
            return ResultCode.INVALID_PRICE, order
        if limits and self.max_notional:
            # A sell market order is checked at its worst price here (0: none; the live path
            # checks it at the last trade price, ``market_sell_notional``, which a replay
            # must not: that would depend on when the router saw which trade). A stop sell
            # at its stop price too: it sells into the bids there, above a lower limit.
            at = price
            if side == _SELL and kind in (_STOP, _STOP_LIMIT):
                at = max(price, order.stop_price)
            if market.notional(at, order.qty) > self.max_notional:
                return ResultCode.NOTIONAL_TOO_LARGE, order
        hold = market.hold(side, price, order.qty)
        asset = market.hold_asset(side)
        if not self._reserve(account, asset, hold):
            return ResultCode.INSUFFICIENT_BALANCE, order
        self._orders[order.order_id] = _Order(
            account, symbol, side, price, order.qty, hold, order.seq
        )
        self._open[account] = self._open.get(account, 0) + 1
        return OK, order

    def market_sell_notional(self, order: NewOrder) -> ResultCode:
        """A market or limit sell, live only: ``max_order_notional`` at the last trade price
        when that is above the order's own price (a sell trades at the bids, at or above its
        price: one priced far below the market, or a market sell with a low worst price,
        was checked at that low price and could sweep far more), as venues check orders at
        a reference price; NO_REFERENCE_PRICE for a market sell before the first trade.
        Replay need not repeat it: a sell holds its size, whatever the price,
        so the state does not depend on it."""
        if not self.max_notional or order.side != _SELL:
            return OK
        if order.ord_type not in (_MARKET, _LIMIT):
            return OK  # a stop is checked at its stop price (reserve_new)
        market = self.markets.get(order.symbol)
        if market is None:
            return OK  # the router refuses an unknown symbol before asking
        ref = self._last.get(order.symbol, 0)
        if not ref and order.ord_type == _MARKET:  # its worst price is no reference
            return ResultCode.NO_REFERENCE_PRICE
        if market.notional(max(ref, order.price), order.qty) > self.max_notional:
            return ResultCode.NOTIONAL_TOO_LARGE
        return OK

    def replace_sell_notional(self, cmd: ReplaceOrder) -> ResultCode:
        """A replace of a sell, live only, as ``market_sell_notional``: ``max_order_notional``
        at the last trade price when that is above the new price (a replace far below the
        market re-enters as an aggressor and sells into the bids)."""
        if not self.max_notional:
            return OK
        order = self._orders.get(cmd.order_id)
        if order is None or order.side != _SELL or order.status == _DONE:
            return OK  # a buy is checked at its own price (reserve_replace); else the matcher
        market = self.markets[order.symbol]
        ref = self._last.get(order.symbol, 0)
        if market.notional(max(ref, cmd.price), cmd.order_qty) > self.max_notional:
            return ResultCode.NOTIONAL_TOO_LARGE
        return OK

    def reserve_replace(self, cmd: ReplaceOrder, *, limits: bool = True) -> ResultCode:
        """Check and reserve a replace: what it may add to the order's hold (module
        docstring), until the matcher answers. An order the router does not know as live and
        ``cmd.account``'s is left to the matcher. ``limits=False`` (replay) skips the
        notional limit."""
        order = self._orders.get(cmd.order_id)
        if (
            order is None
            or order.status == _DONE
            or order.account != cmd.account
            or order.symbol != cmd.symbol
        ):
            return OK  # the matcher rejects it, and that reject finds nothing of ours to undo
        market = self.markets[order.symbol]
        if order.side == _BUY and cmd.price <= 0:
            return ResultCode.INVALID_PRICE
        if (
            limits
            and self.max_notional
            and market.notional(cmd.price, cmd.order_qty) > self.max_notional
        ):
            return ResultCode.NOTIONAL_TOO_LARGE
        hold = self._replace_addition(market, order, cmd.price, cmd.order_qty)
        if hold:  # ``_reserve``, inline: most replaces of a replay add nothing
            slot = (order.account, market.hold_asset(order.side))
            free = self._free.get(slot, 0)
            if free < hold:
                return ResultCode.INSUFFICIENT_BALANCE
            self._free[slot] = free - hold
            self._reserved[slot] = self._reserved.get(slot, 0) + hold
        order.replaces.append(hold)
        return OK

    @staticmethod
    def _replace_addition(market: Market, order: _Order, price: int, total: int) -> int:
        """What a replace to ``price`` and new ``total`` may add to ``order``'s hold."""
        if order.replaces:  # another in flight: which of them lands first is not known here
            return market.hold(order.side, price, total)
        leaves = order.leaves
        more = total - order.filled - leaves  # Q - T: the open part is this plus x <= L
        if order.side == _SELL:
            return max(0, more) * market.base_scale
        if price <= order.price and more <= 0:
            return 0  # hold() grows with price and qty: the new need is never the larger
        at_none = market.hold(_BUY, price, max(0, more))  # x = 0
        at_all = market.hold(_BUY, price, max(0, more + leaves)) - order.held  # x = L
        rounding = 1 if market.maker_bps or market.taker_bps else 0
        return max(0, at_none + rounding, at_all + rounding)

    def _reserve(self, account: int, asset: int, amount: int) -> bool:
        slot = (account, asset)
        free = self._free.get(slot, 0)
        if free < amount:
            return False
        if not amount:
            return True  # no zero entries in ``_reserved``: validate compares it as a whole
        self._free[slot] = free - amount
        self._reserved[slot] = self._reserved.get(slot, 0) + amount
        return True

    # -- events ---------------------------------------------------------------------------------

    def apply(self, event: Record) -> None:
        """Apply one matcher event; events of other kinds (book levels, status) are ignored."""
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _accepted(self, accepted: Accepted) -> None:
        order = self._order(accepted.order_id, "accepted")
        seen = (order.status, order.price, order.leaves)
        if seen != (_PENDING, accepted.price, accepted.qty):
            raise AssertionError(
                f"order {accepted.order_id} accepted at price={accepted.price} "
                f"qty={accepted.qty}, the router has status={order.status} "
                f"price={order.price} qty={order.leaves}"
            )
        order.status = _LIVE

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

    def _fill(self, market: Market, oid: int, trade: Trade, leaves: int, cost: int) -> _Order:
        """Take ``cost`` out of order ``oid``'s hold, then release what its rest needs no more."""
        order = self._order(oid, f"trade {trade.trade_id}")
        if order.status != _LIVE or order.leaves - trade.qty != leaves:
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
        if order.status != _LIVE or order.leaves != done.leaves_qty:
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
        if order.status == _PENDING:  # the new order itself
            self._end(rejected.order_id, order)
        elif order.replaces:
            market = self.markets[order.symbol]
            self._unreserve(order.account, market.hold_asset(order.side), order.replaces.pop(0))
            if order.status == _DONE and not order.replaces:
                del self._orders[rejected.order_id]

    def _replaced(self, replaced: Replaced) -> None:
        order = self._orders.get(replaced.order_id) or self._order(replaced.order_id, "replaced")
        if order.status != _LIVE or not order.replaces:
            raise AssertionError(
                f"order {replaced.order_id} replaced with no replace of it in flight "
                f"(status={order.status})"
            )
        market = self.markets[order.symbol]
        held = order.held + order.replaces.pop(0)
        price, leaves = order.price, order.leaves = replaced.price, replaced.qty
        if order.side == _SELL:  # market.hold and hold_asset, inline: the replay's hot path
            need, asset = leaves * market.base_scale, market.base
        else:
            notional = price * leaves * market.quote_scale
            need, asset = notional - (-notional * market.margin_bps // BPS), market.quote
        if held < need:
            raise AssertionError(f"order {replaced.order_id} replaced needs {need}, holds {held}")
        self._unreserve(order.account, asset, held - need)
        order.held = need

    def _end(self, oid: int, order: _Order) -> None:
        """The order is done: release its hold; forget it once no replace of it is in flight."""
        market = self.markets[order.symbol]
        self._unreserve(order.account, market.hold_asset(order.side), order.held)
        order.held, order.status = 0, _DONE
        self._open[order.account] -= 1
        if not self._open[order.account]:
            del self._open[order.account]
        if not order.replaces:
            del self._orders[oid]

    def _unreserve(self, account: int, asset: int, amount: int) -> None:
        """Give ``amount`` of a reserved balance back to free: ``_spend``, then ``_credit``
        written out (every replace and done of a replay takes it)."""
        self._spend(account, asset, amount)
        if amount:
            slot = (account, asset)
            self._free[slot] = self._free.get(slot, 0) + amount

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

    def _order(self, oid: int, what: str) -> _Order:
        order = self._orders.get(oid)
        if order is None:
            raise AssertionError(f"{what} event for order {oid}, which the router does not know")
        return order

    # -- queries --------------------------------------------------------------------------------

    def balance(self, account: int, asset: int) -> tuple[int, int]:
        """(free, reserved) of ``asset`` in minor units; (0, 0) for anything unknown."""
        slot = (account, asset)
        return self._free.get(slot, 0), self._reserved.get(slot, 0)

    def totals(self, asset: int) -> int:
        """Free plus reserved of ``asset`` over every account, the fee account included."""
        return sum(v for (_, a), v in self._free.items() if a == asset) + sum(
            v for (_, a), v in self._reserved.items() if a == asset
        )

    def new_order_seq(self, order_id: int) -> int:
        """The seq of the new order of a tracked order (0 for one not tracked): a reject of
        that seq is the new order's own, any later one a cancel's or replace's."""
        order = self._orders.get(order_id)
        return 0 if order is None else order.seq

    def open_orders(self, account: int) -> int:
        """Orders of ``account`` sent to a matcher and not done (what ``max_open_orders`` caps)."""
        return self._open.get(account, 0)

    def last_price(self, symbol: int) -> int:
        """The last trade price seen on ``symbol``; 0 before the first."""
        return self._last.get(symbol, 0)

    # -- state ----------------------------------------------------------------------------------

    def open_buys(self, symbol: int) -> list[int]:
        """Buys on ``symbol`` that hold a fee margin: open, or with a replace in flight."""
        buys = [(i, o) for i, o in self._orders.items() if o.symbol == symbol]
        return [i for i, o in buys if o.side == _BUY and o.held + sum(o.replaces)]

    def state(self) -> AccountsState:
        slots = sorted(set(self._free) | set(self._reserved))
        balances = [(*s, self._free.get(s, 0), self._reserved.get(s, 0)) for s in slots]
        return AccountsState(
            accounts=sorted(self._accounts),
            balances=[b for b in balances if b[2] or b[3]],
            net=sorted((a, n) for a, n in self._net.items() if n),
            transfer_keys=sorted(
                ((key, *done) if done is not None else key for key, done in self._keys.items()),
                key=lambda e: e if isinstance(e, tuple) else (e,),  # an older snapshot's bare
            ),
            last_prices=sorted(self._last.items()),
            orders=[
                OrderState(
                    *(oid, o.account, o.symbol, int(o.side), o.price, o.leaves, o.held, o.seq),
                    *(o.status, list(o.replaces), o.filled),
                )
                for oid, o in sorted(self._orders.items())
            ],
            fees=sorted((symbol, *bps) for symbol, bps in self.fee_schedule.items()),
            fee_account=self.fee_account_recorded,
        )

    def state_hash(self) -> str:
        return hashlib.blake2b(self.snapshot(), digest_size=16).hexdigest()

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.state())

    @classmethod
    def restore(cls, cfg: RingexConfig, snapshot: bytes) -> Accounts:
        """Accounts from ``snapshot``, checked with ``validate_internal_state``."""
        state = msgspec.msgpack.decode(snapshot, type=AccountsState)
        accounts = cls(cfg)
        for symbol, maker, taker in state.fees:  # what holds were reserved under (if still)
            if symbol in accounts.markets:
                fees.set_schedule(accounts, symbol, maker, taker)
        if state.fee_account is not None:
            fees.set_fee_account(accounts, state.fee_account)
        # the fee account in force exists, even one an older snapshot did not know
        accounts._accounts = set(state.accounts) | {accounts.fee_account}
        for account, asset, free, reserved in state.balances:
            if free:
                accounts._free[(account, asset)] = free
            if reserved:
                accounts._reserved[(account, asset)] = reserved
        accounts._net = dict(state.net)
        for entry in state.transfer_keys:
            if isinstance(entry, int):
                accounts._keys[entry] = None  # an older snapshot: the transfer is unknown
            else:
                key, account, asset, amount, seq = entry
                accounts._keys[key] = (account, asset, amount, seq)
        accounts._last = dict(state.last_prices)
        for o in state.orders:
            if o.symbol not in accounts.markets:
                raise ValueError(f"snapshot order {o.order_id} is on unknown symbol {o.symbol}")
            accounts._orders[o.order_id] = _Order(
                *(o.account, o.symbol, Side(o.side), o.price, o.leaves, o.held, o.seq),
                *(o.status, list(o.replaces), o.filled),
            )
            if o.status != _DONE:
                accounts._open[o.account] = accounts._open.get(o.account, 0) + 1
                market = accounts.markets[o.symbol]
                need = market.hold(Side(o.side), o.price, o.leaves)
                if o.held != need:  # an older snapshot, without its fees: the config's
                    raise ValueError(
                        f"snapshot order {o.order_id} on symbol {o.symbol} holds {o.held}, "
                        f"which the fees {market.maker_bps}/{market.taker_bps} bps (maker/"
                        f"taker) put at {need}: reserved under other fees"
                    )
        accounts.validate_internal_state()
        return accounts

    def validate_internal_state(self) -> None:
        """Raise ``AssertionError`` naming the first broken invariant."""
        for name, table in (("free", self._free), ("reserved", self._reserved)):
            for (account, asset), value in table.items():
                assert value >= 0, f"{name} {asset} of account {account} is {value}"
                assert account in self._accounts, f"{name} {asset} of unknown account {account}"
                assert asset in self.assets, f"{name} of unknown asset {asset} ({account=})"
        holds: dict[tuple[int, int], int] = {}
        open_count: dict[int, int] = {}
        for oid, o in self._orders.items():
            market = self.markets[o.symbol]
            asset = market.hold_asset(o.side)
            if o.status == _DONE:
                assert o.held == 0, f"done order {oid} holds {o.held}"
                assert o.replaces, f"done order {oid} with nothing in flight is kept"
            else:
                need = market.hold(o.side, o.price, o.leaves)
                assert o.held == need, f"order {oid} holds {o.held}, needs {need}"
                open_count[o.account] = open_count.get(o.account, 0) + 1
            assert all(r >= 0 for r in o.replaces), f"order {oid} replaces hold {o.replaces}"
            slot = (o.account, asset)
            holds[slot] = holds.get(slot, 0) + o.held + sum(o.replaces)
        holds = {slot: v for slot, v in holds.items() if v}
        assert holds == self._reserved, f"reserved {self._reserved} != order holds {holds}"
        assert open_count == self._open, f"open orders {self._open} != counted {open_count}"
        for asset in self.assets:
            total, net = self.totals(asset), self._net.get(asset, 0)
            assert total == net, f"asset {asset}: balances total {total}, transfers net {net}"
