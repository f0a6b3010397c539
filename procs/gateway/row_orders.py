"""The open orders the database showed of an account the REST API serves that ``RestOrders``
does not follow (placed through another gateway, or before the account used this one), so
that their fills and their end still reach the account's private stream.

``RestOrders`` follows an order from its ``Accepted`` on: what an account of interest places
from then on, whichever gateway places it. An order placed before that is only in PostgreSQL,
where a private stream's snapshot and ``openOrders`` find it (``RestApi.open_orders_over``
hands their rows here: ``remember``). When an event names such an order, ``take`` gives
``RestOrders`` its view as the row showed it, to be followed from then on: the row gives what
no event repeats (side, price, type, time in force, the quantity filled so far).

Why on an event and not as soon as the row is read: the writer may not have filed the
order's last change yet. A row read just after the order ended would otherwise be followed
as open for as long as its account is of interest (no event would ever end it); a row not
taken is dropped with the next snapshot of the account or with its interest. An event the
row already holds (its seq at or below the row's ``updated_seq``: the writer got there
first) does not take it, nor count twice.

Memory: one ``LiveOrder`` per open order of an account of interest, replaced by each read of
the account's open orders and dropped with its interest: no more than ``live`` may hold of
those accounts (the router caps an account's open orders, ``risk.max_open_orders``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from procs.gateway.instruments import Instruments
from procs.gateway.rest_order_state import LiveOrder, from_row


class RowOrders:
    """Called on the gateway's event loop only: ``remember`` from the HTTP handlers, ``take``
    and ``forget`` from ``RestOrders``."""

    def __init__(self, instruments: Instruments) -> None:
        self.instruments = instruments
        #: account -> order id -> the order as its row showed it
        self._by_account: dict[int, dict[int, LiveOrder]] = {}

    def remember(
        self,
        account: int,
        rows: dict[int, list[Any]],
        known: Callable[[int], LiveOrder | None],
    ) -> None:
        """``account``'s open orders as the database has them (``History.orders`` rows, by
        symbol id), less those ``known`` follows already; replaces what was remembered of
        those symbols (the others' stay: a query of one symbol says nothing of the rest)."""
        by_id = self.instruments.by_id
        kept = {
            oid: order
            for oid, order in self._by_account.get(account, {}).items()
            if order.symbol.id not in rows
        }
        kept.update(
            (row[0], from_row(row, by_id[symbol]))
            for symbol, found in rows.items()
            if symbol in by_id
            for row in found
            if row[1] == account and known(row[0]) is None
        )
        self._by_account[account] = kept

    def add(self, order: LiveOrder) -> None:
        """One more open order of its account, as a row showed it (one named by a request)."""
        self._by_account.setdefault(order.account, {})[order.order_id] = order

    def take(self, account: int, order_id: int, seq: int) -> LiveOrder | None:
        """The remembered order an event of journal seq ``seq`` names, to follow from now on;
        None if none, or if its row holds that event already (``seq`` 0: any event, one a
        row cannot hold, as a stop's trigger, which the table does not keep)."""
        orders = self._by_account.get(account)
        if not orders:
            return None
        order = orders.get(order_id)
        if order is None or 0 < seq <= order.seq:
            return None
        del orders[order_id]
        return order

    def forget(self, account: int) -> None:
        """``account`` is no longer of interest: its rows would be stale when it is again."""
        self._by_account.pop(account, None)
