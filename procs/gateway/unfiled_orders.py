"""The orders this gateway follows whose last change the database writer may not have filed
yet, so that ``allOrders`` lists an order as ``GET order``, ``openOrders`` and the private
stream already show it, not a writer's batch later (read your orders). ``live_trades.py``
does the same for ``myTrades``.

The writer follows the journal and commits in batches; its checkpoint (``History.filed_seq``)
is the last journal seq whose rows are all in. ``RestOrders`` stamps each order it follows
with the journal seq of the last event about it (``LiveOrder.seq``) and hands it here
(``changed``); an order whose seq is at or below the checkpoint is in the database as it
stands, and goes (``forget_filed``). ``merged`` takes the database's allOrders rows and:

- shows each row's order as the live view has it when that is at least as new: the row's
  ``updated_seq`` (its last change in the database) at or below the order's seq, or the
  order's seq not known (0: followed from FIX, or restored from an order log written
  before it kept the seq; shown as ``GET order`` shows it). A finished order restored with
  its seq is handed here again, so a restart does not take it out of ``allOrders`` while
  the writer lags (review 158). On a tie the live view wins: the same state, with the
  clientOrderId and quote quantity the table does not keep. A row newer than the live view
  (the gateway missed an event) stays as it is.
- adds the orders kept here and the gateway's open ones that the rows lack, filtered, ordered
  and cut under the request's own ``orderId``, ``startTime``, ``endTime`` and ``limit``, each
  once (by order id). The rows are the first (or newest) ``limit`` of the database's, and a
  followed order they lack is either not in the database or past their cut: the cut of the
  union is the one the database alone would make once the writer has filed everything.

The ends of orders the gateway does not follow wait here too (``ended``,
``ended_elsewhere.py``), let go at the same checkpoint or row; ``merged`` finds them through
``Followed.known``. A live view that lacks what the row says (an order placed elsewhere:
no type; an end seen alone: no side either) is completed from the row
(``LiveOrder.complete``) before it is shown over it.

Memory: the orders are the ``LiveOrder`` objects ``RestOrders`` follows (``live`` and
``done``), not copies; this index refers to at most ``MAX_UNFILED_ORDERS`` of them, the one
changed longest ago dropped first, each until the checkpoint passes its last change or a row
shows it. It keeps an unfiled order past ``done``'s ``keep_done`` and past its account's
interest, so a busy gateway's finished order is still listed until the writer has it.
``done`` alone cannot serve: it is not indexed by account, and scanning its 10,000 orders on
every request would stall the event loop that serves FIX too.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

from config.schema import SymbolConfig
from procs.gateway.ended_elsewhere import EndedElsewhere
from procs.gateway.history import newest_first, order_json
from procs.gateway.rest_order_state import LiveOrder

#: Most orders indexed here, all accounts together (about 200 bytes each, plus the order when
#: ``RestOrders`` has let it go: ~10 MB). The writer lags by its batch time (tens of ms), so
#: this covers a writer stopped or behind for many seconds at the rate the API's accounts
#: place orders; beyond it the order changed longest ago goes first.
MAX_UNFILED_ORDERS = 20_000

#: Where ``History.orders`` puts a row's ``updated_seq``.
UPDATED_SEQ = 16


class Followed(Protocol):
    """The orders ``RestOrders`` keeps, as ``merged`` asks for them (event loop only)."""

    def known(self, order_id: int) -> LiveOrder | None:
        """An order followed here, open or finished recently, or the end of one not followed
        that the writer may not have filed (``ended``); None if none."""

    def open_orders(self, account: int, symbol: int | None) -> list[LiveOrder]:
        """``account``'s open orders on ``symbol`` followed here."""


class UnfiledOrders:
    """The followed orders by their last change, oldest first, bounded by ``limit``. Called
    on the gateway's event loop only: ``changed`` from the poll loop (``RestOrders``), the
    others from the allOrders handler."""

    def __init__(self, limit: int = MAX_UNFILED_ORDERS) -> None:
        self.limit = limit
        self._orders: OrderedDict[int, LiveOrder] = OrderedDict()  # order id -> order
        #: (account, symbol id) -> order id -> its order (the same objects)
        self._by_account: dict[tuple[int, int], dict[int, LiveOrder]] = {}
        #: the ends of orders not followed here, until filed (``RestOrders`` adds them)
        self.ended = EndedElsewhere()

    def __len__(self) -> int:
        return len(self._orders)

    def changed(self, order: LiveOrder, seq: int) -> None:
        """An event of journal seq ``seq`` changed ``order`` (one with its exchange id); an
        event read again leaves its seq as it was."""
        order.seq = max(order.seq, seq)
        oid, orders = order.order_id, self._orders
        if oid in orders:
            orders.move_to_end(oid)
        orders[oid] = order
        key = order.account, order.symbol.id
        mine = self._by_account.get(key)
        if mine is None:  # no setdefault: no dict made per event on the poll loop
            mine = self._by_account[key] = {}
        mine[oid] = order
        if len(orders) > self.limit:
            self._drop(next(iter(orders)))

    def _drop(self, order_id: int) -> None:
        order = self._orders.pop(order_id)
        key = order.account, order.symbol.id
        mine = self._by_account[key]
        del mine[order_id]
        if not mine:
            del self._by_account[key]

    def get(self, account: int, order_id: int) -> LiveOrder | None:
        """``account``'s order ``order_id`` here (its last change not filed yet), or None."""
        order = self._orders.get(order_id)
        return order if order is not None and order.account == account else None

    def named(self, account: int, symbol: int, client_id: str) -> LiveOrder | None:
        """The newest order of ``account`` on ``symbol`` here under ``client_id`` whose last
        change the writer has not filed: newer than any row of that id (review 87)."""
        mine = self._by_account.get((account, symbol), {})
        found = [o for o in mine.values() if o.client_order_id == client_id]
        return max(found, key=lambda o: o.order_id) if found else None

    def forget_filed(self, filed_seq: int) -> None:
        """Let go of the orders whose last change is at or below the writer's checkpoint
        ``filed_seq``, from the one changed longest ago up to the first one above it (events
        of several matchers arrive a little out of seq order: one left behind goes once a
        database row shows it, or later), and of the ends kept there (``ended``)."""
        self.ended.forget_filed(filed_seq)
        orders = self._orders
        while orders:
            oid = next(iter(orders))
            if orders[oid].seq > filed_seq:
                return
            self._drop(oid)

    def merged(
        self,
        rows: list[tuple[Any, ...]],
        account: int,
        sym: SymbolConfig,
        followed: Followed,
        *,
        from_id: int | None,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """The database's allOrders ``rows`` of ``account`` on ``sym`` (``History.orders``
        asked with these parameters), each shown as its newer view, with the orders followed
        here that they lack and the parameters take, by order id, cut to ``limit`` as the
        database cuts: the first ones from ``from_id`` or ``start_ms``, else the newest."""
        out: dict[int, dict[str, Any]] = {}
        orders = self._orders
        for row in rows:
            oid, filed = row[0], row[UPDATED_SEQ]
            # the view followed now first: one kept here from before a lapse of the account's
            # interest is no longer told its fills (review 219: allOrders said NEW, GET order
            # PARTIALLY_FILLED)
            live = followed.known(oid) or orders.get(oid)
            # the row when it is newer, or as new and the live view's counts are in doubt (a
            # fill counted from a row that lagged: ``RestOrders._fill``)
            if (
                live is None
                or live.account != account
                or 0 < live.seq < filed
                or (0 < live.seq == filed and not live.notional_known)
            ):
                out[oid] = order_json(row, sym)
            else:
                live.complete(row)  # what the events did not say (placed elsewhere)
                out[oid] = live.json()
            if oid in orders and orders[oid].seq <= filed:  # the database has its last change
                self._drop(oid)
            self.ended.filed(oid, filed)
        first = from_id or 0
        mine = self._by_account.get((account, sym.id), {})
        for order in (*mine.values(), *followed.open_orders(account, sym.id)):
            oid = order.order_id
            if (
                oid >= first
                and oid not in out
                and (start_ms is None or order.time_ms >= start_ms)
                and (end_ms is None or order.time_ms <= end_ms)
            ):
                out[oid] = (followed.known(oid) or order).json()
        ordered = [out[k] for k in sorted(out)]
        return ordered[-limit:] if newest_first(from_id, start_ms) else ordered[:limit]
