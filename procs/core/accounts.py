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
reserves the same on replay whatever trades the replay has seen by then. Live, a worst price
the client sent is kept for a stop buy (the matcher bands it from its trigger), and for a
market buy only up to the cap: above it the cap takes its place, marked ``CAPPED``, and
before the first trade it is refused as one without a price is (review 328).

A replace reserves what it may add to the order's hold, and the matcher's answer settles it:
``Replaced`` cuts the hold back to what the new price and leaves need, ``Rejected`` releases
the addition. A replace names the new total, fills included, and the matcher leaves open
that total less what has filled by then, so with T the order's total and L its leaves as the
router knows them, and x of those L still open when the replace lands (fills racing it only
lower x, each paid out of the old hold at or below the old price), the order then needs
hold(new price, Q - T + x) where the old hold had hold(old price, x) left. The addition is
the most that difference reaches over 1 <= x <= L (x = 0 is an order filled in full: done,
the matcher refuses the replace and its addition is released; review 146: counting it asked
up to a unit's price difference too much): nothing for a sell that keeps or lowers its total
(a sell holds its size, whatever the price), for a buy whose price and total both go no
higher, and for an order with nothing open; else an end, with no slack for the fee's
rounding but at the same price. A buy's hold of n is c*n + ceil(c*n*m / 10_000) (c: price x
scale, an integer), so one unit more holds c plus floor or ceil of c*m / 10_000: at a higher
price (c at least 1 more, the fee part no smaller) every unit adds at least as much to the
new need as it takes off the old hold, and the difference never falls as x grows (the top at
x = L); at a lower price it never rises (the top at x = 1); at the same price it is no more
than hold(Q - T), ceil being subadditive, and reaches it or falls 1 short by where x lands
(whether some x in 1..L reaches it is a search over x's residues): hold(Q - T) is reserved,
at most 1 minor unit more than the top. (A hold above hold(old price, x), a capped stop's,
only lowers the difference.)
A replace with others in flight cannot know which of them land before it: the order it
lands on is as it is now (each refused) or as one of them left it (price and total as it
asked, the hold what those need, x of those leaves open), and it reserves the most any of
those states needs by the same bound (with more than ``REPLACES_WEIGHED`` in flight, or
restored from an older snapshot, which kept no replace's asks: its full new hold). Replay
re-checks each replace against a state with at least as many fills settled and as many
replaces answered: one of the live states with L no larger, so the addition is no larger,
and no event lowers a free balance, so every journaled check passes again (below).

Settlement (the matchers' events) and the orders' lifetimes: ``settlement.py``.

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
from collections.abc import Iterable
from typing import Final

import msgspec

from config.schema import RingexConfig
from procs.common.records import (
    NewOrder,
    ReplaceOrder,
)
from procs.common.result_codes import ResultCode
from procs.common.types import OrderFlag, OrdType, Side
from procs.core import fees
from procs.core.accounts_state import AccountsState, OrderState
from procs.core.money import Market
from procs.core.settlement import DONE, OpenOrder, Settlement
from procs.core.transfer_keys import TransferKeys, Used

OK: Final = ResultCode.OK
#: The most of one asset all accounts together may hold: records carry amounts as int64.
MAX_TOTAL: Final = 2**63 - 1
# Enum members as module constants: ``Side.BUY`` is a class attribute lookup (~60 ns) on
# paths a replay takes a million times.
_BUY, _SELL = Side.BUY, Side.SELL
_LIMIT, _MARKET, _STOP = OrdType.LIMIT, OrdType.MARKET, OrdType.STOP


#: Replaces of one order in flight a replace's reservation weighs one by one (about 2 us
#: each); past them it reserves its whole new hold, as before review 48 (a FIX session may
#: chain any number of replaces: review 49 measured 1.1 ms a replace with 1,000 in flight).
REPLACES_WEIGHED: Final = 16


class Accounts(Settlement):
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
        #: the transfers' idempotency keys, for a window (``transfer_keys.py``)
        self._keys = TransferKeys()
        self._last: dict[int, int] = {}  # symbol -> last trade price seen
        self._orders: dict[int, OpenOrder] = {}
        self._open: dict[int, int] = {}  # account -> orders sent and not done
        #: account -> {symbol: its entries in ``_orders``}: the books an account's balances
        #: can still change at (a router's balance label per account: review 220); derived
        self._where: dict[int, dict[int, int]] = {}
        self.handlers = self.settlement_handlers()

    # -- commands -------------------------------------------------------------------------------

    def create_account(self, account: int) -> ResultCode:
        if account == 0:
            return ResultCode.UNKNOWN_ACCOUNT  # 0 means "every account" in a mass cancel
        if account in self._accounts:
            return ResultCode.ACCOUNT_EXISTS
        self._accounts.add(account)
        return OK

    def known(self, account: int) -> bool:
        """Whether ``account`` was opened (``create_account``)."""
        return account in self._accounts

    def untouched(self, account: int) -> bool:
        """No balance, no hold and no open order: an account as ``create_account`` left it,
        or emptied since. Judged by value, as a snapshot keeps balances (zeros left out):
        one emptied to 0 would otherwise be touched live and untouched once restored, and
        ``fees.set_fee_account`` keep it on one run and drop it on the other (review 180)."""
        return not self._open.get(account) and not any(
            self._free.get((account, asset)) or self._reserved.get((account, asset))
            for asset in self.assets
        )

    def forget_account(self, account: int) -> None:
        """Drop an ``untouched`` account (``fees.set_fee_account``: the configured seed)."""
        assert self.untouched(account), f"account {account} holds money or orders"
        self._accounts.discard(account)

    def transfer(
        self, account: int, asset: int, amount: int, key: int, seq: int = 0, ts_ns: int = 0
    ) -> ResultCode:
        """Deposit (``amount`` > 0) or withdraw (< 0, at most the free balance), as the
        command of ``seq`` at ``ts_ns``; a key in use (``transfer_keys.py``: within a week)
        is DUPLICATE_TRANSFER (``repeat_of`` tells a repeat of that very transfer from
        another one)."""
        if account not in self._accounts:
            return ResultCode.UNKNOWN_ACCOUNT
        if asset not in self.assets:
            return ResultCode.UNKNOWN_ASSET
        if amount == 0:
            return ResultCode.INVALID_AMOUNT
        if self._keys.get(key, ts_ns) is not None:
            return ResultCode.DUPLICATE_TRANSFER
        slot = (account, asset)
        if self._free.get(slot, 0) + amount < 0:
            return ResultCode.INSUFFICIENT_BALANCE
        if self._net.get(asset, 0) + amount > MAX_TOTAL:
            return ResultCode.BALANCE_LIMIT  # then every balance and hold of it fits an int64
        self._free[slot] = self._free.get(slot, 0) + amount
        self._net[asset] = self._net.get(asset, 0) + amount
        self._keys.add(key, Used(account, asset, amount, seq, ts_ns))
        return OK

    def repeat_of(self, account: int, asset: int, amount: int, key: int, ts_ns: int = 0) -> int:
        """The seq of the transfer ``key`` was used for when it was this same transfer (a
        retry, or a command read again after a router crash: it was applied once), else 0."""
        done = self._keys.get(key, ts_ns)
        return done.seq if done is not None and done[:3] == (account, asset, amount) else 0

    def reserve_new(self, order: NewOrder, *, limits: bool = True) -> tuple[ResultCode, NewOrder]:
        """Check and reserve a new order that carries its ``order_id`` (and ``seq``). Returns
        the order to sequence: a market or stop-market buy gets its cap in ``price``, and a
        market buy sent with a worst price the lower of the two (review 328: its price did
        not escape the band above the last trade), marked ``CAPPED`` when the cap is lower.
        ``limits=False`` (replay) skips the account limits. A replay takes a market buy's
        journaled price: its cap was drawn from the last trade the live router had seen."""
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
        # a stop buy's cap replaces only a missing price; a market buy's bounds any price
        drawn = price == 0 or (kind == _MARKET and limits)
        if side == _BUY and kind in (_MARKET, _STOP) and drawn:
            ref = self._last.get(symbol, 0) if kind == _MARKET else order.stop_price
            if ref == 0 and kind == _MARKET:
                return ResultCode.NO_REFERENCE_PRICE, order
            cap = market.cap(max(ref, 0))
            if price == 0 and cap > MAX_TOTAL:
                return ResultCode.INVALID_PRICE, order  # its cap would not fit the record
            if cap > 0 and (price == 0 or cap < price):
                price = cap
                order = msgspec.structs.replace(
                    order, price=price, flags=order.flags | OrderFlag.CAPPED
                )
        if side == _BUY and price <= 0:
            return ResultCode.INVALID_PRICE, order
        if limits and self.max_notional:
            # A sell market order is checked at its worst price here (0: none; the live path
            # checks it at the last trade price, ``market_sell_notional``, which a replay
            # must not: that would depend on when the router saw which trade).
            at = market.judged_at(side, kind, price, order.stop_price)
            if market.notional(at, order.qty) > self.max_notional:
                return ResultCode.NOTIONAL_TOO_LARGE, order
        hold = market.hold(side, price, order.qty)
        asset = market.hold_asset(side)
        if not self._reserve(account, asset, hold):
            return ResultCode.INSUFFICIENT_BALANCE, order
        self._orders[order.order_id] = OpenOrder(
            account, symbol, side, price, order.qty, hold, order.seq
        )
        self._open[account] = self._open.get(account, 0) + 1
        self._placed(account, symbol)
        return OK, order

    def _placed(self, account: int, symbol: int) -> None:
        where = self._where.get(account)
        if where is None:
            where = self._where[account] = {}
        where[symbol] = where.get(symbol, 0) + 1

    def _forget(self, order_id: int) -> None:
        """``order_id`` leaves ``_orders`` (done, nothing of it in flight)."""
        order = self._orders.pop(order_id)
        where = self._where[order.account]
        if where[order.symbol] == 1:
            del where[order.symbol]
            if not where:
                del self._where[order.account]
        else:
            where[order.symbol] -= 1

    def symbols_of(self, account: int) -> Iterable[int]:
        """The symbols ``account`` has an order on that a matcher may still act on (sent,
        resting, or done with a replace of it in flight)."""
        return self._where.get(account, {}).keys()

    def market_sell_notional(self, order: NewOrder) -> ResultCode:
        """A market or limit sell, live only: ``max_order_notional`` at the last trade price
        when that is above the order's own price (a sell trades at the bids, at or above its
        price: one priced far below the market, or a market sell with a low worst price,
        was checked at that low price and could sweep far more), as venues check orders at
        a reference price; with a notional limit, NO_REFERENCE_PRICE for a market sell before
        the first trade (without one there is nothing to check it against).
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
        if order is None or order.side != _SELL or order.status == DONE:
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
            or order.status == DONE
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
        if not self._reserve(order.account, market.hold_asset(order.side), hold):
            return ResultCode.INSUFFICIENT_BALANCE
        order.replaces.append(hold)
        order.asks.append((cmd.price, cmd.order_qty))
        return OK

    @classmethod
    def _replace_addition(cls, market: Market, order: OpenOrder, price: int, total: int) -> int:
        """What a replace to ``price`` and new ``total`` may add to ``order``'s hold. With
        others in flight, the order it lands on is as it is now (each of them refused) or as
        one of them left it (the latest to land sets price and total): the most any of
        those states needs (review 48: the whole new hold, reserved again, refused a second
        reprice or cut of an order that held all of its account's money)."""
        side, filled = order.side, order.filled
        most = cls._addition_to(market, side, filled, order.price, order.leaves, order.held,
                                price, total)  # fmt: skip
        if not order.replaces:
            return most
        if len(order.asks) < len(order.replaces) or len(order.replaces) > REPLACES_WEIGHED:
            # an older snapshot's (not known), or more than a router step should walk
            return market.hold(side, price, total)
        for was_price, was_total in order.asks:  # one cut to the fills ends it: adds 0
            leaves = max(0, was_total - filled)
            held = market.hold(side, was_price, leaves)  # settlement leaves it so
            landed = cls._addition_to(market, side, filled, was_price, leaves, held, price, total)
            most = max(most, landed)
        return most

    @staticmethod
    def _addition_to(
        market: Market,
        side: Side,
        filled: int,
        was_price: int,
        leaves: int,
        held: int,
        price: int,
        total: int,
    ) -> int:
        """``_replace_addition`` for an order with no other replace in flight: one that
        filled ``filled``, at ``was_price`` with ``leaves`` open and ``held`` held."""
        if leaves <= 0:
            return 0  # filled in full: done, the replace refused (review 146)
        more = total - filled - leaves  # Q - T: the open part is this plus 1 <= x <= L
        if side == _SELL:
            return max(0, more) * market.base_scale
        if price <= was_price and more <= 0:
            return 0  # hold() grows with price and qty: the new need is never the larger
        at_all = market.hold(_BUY, price, max(0, more + leaves)) - held  # x = L
        if more <= 0:  # the low end's addition is below 0: the order ends or shrinks there
            return max(0, at_all)
        if price < was_price:  # the top at x = 1 (docstring)
            at_one = market.hold(_BUY, price, more + 1) - market.hold(_BUY, was_price, 1)
            return max(0, at_one, at_all)
        # the same price: hold(Q - T), the x = 0 bound (ceil's slack may reach it at any x);
        # a higher price: at_all, above it
        return max(market.hold(_BUY, price, more), at_all)

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
        transfer_keys, transfer_times = self._keys.state()
        return AccountsState(
            accounts=sorted(self._accounts),
            balances=[b for b in balances if b[2] or b[3]],
            net=sorted((a, n) for a, n in self._net.items() if n),
            transfer_keys=transfer_keys,
            last_prices=sorted(self._last.items()),
            orders=[
                OrderState(
                    *(oid, o.account, o.symbol, int(o.side), o.price, o.leaves, o.held, o.seq),
                    *(o.status, list(o.replaces), o.filled, list(o.asks)),
                )
                for oid, o in sorted(self._orders.items())
            ],
            fees=sorted((symbol, *bps) for symbol, bps in self.fee_schedule.items()),
            fee_account=self.fee_account_recorded,
            transfer_times=transfer_times,
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
            if (free or reserved) and asset not in accounts.assets:  # (review 278: asserted)
                raise ValueError(f"snapshot balance of account {account} is in unknown asset "
                                 f"id {asset}: {free} free, {reserved} reserved")  # fmt: skip
            if free:
                accounts._free[(account, asset)] = free
            if reserved:
                accounts._reserved[(account, asset)] = reserved
        accounts._net = dict(state.net)
        accounts._keys = TransferKeys.restore(state.transfer_keys, state.transfer_times)
        accounts._last = dict(state.last_prices)
        for o in state.orders:
            if o.symbol not in accounts.markets:
                raise ValueError(f"snapshot order {o.order_id} is on unknown symbol {o.symbol}")
            accounts._orders[o.order_id] = OpenOrder(
                *(o.account, o.symbol, Side(o.side), o.price, o.leaves, o.held, o.seq),
                *(o.status, list(o.replaces), o.filled, list(o.asks)),
            )
            accounts._placed(o.account, o.symbol)
            if o.status != DONE:
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
            if o.status == DONE:
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
        where: dict[int, dict[int, int]] = {}
        for o in self._orders.values():
            mine = where.setdefault(o.account, {})
            mine[o.symbol] = mine.get(o.symbol, 0) + 1
        assert where == self._where, f"orders' symbols {self._where} != counted {where}"
        for asset in self.assets:
            total, net = self.totals(asset), self._net.get(asset, 0)
            assert total == net, f"asset {asset}: balances total {total}, transfers net {net}"
