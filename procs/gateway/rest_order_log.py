"""The REST API's orders in the gateway's order log: what ``RestOrders`` writes of the orders
placed through the API (``take_changes``, a compaction's ``dump``) and takes back after a
restart (``restore``), so that a restarted gateway still knows them by their clientOrderId.

A mixin of ``RestOrders`` (``rest_orders.py``), which notes each change with ``_touched``.

A finished order no longer changes, but a compaction rewrites it until ``keep_done`` pushes it
out: with 10k kept and a compaction each second at 10k requests/s, the API's finished orders
are most of what a compaction writes, and making and encoding each again took 10 ms a
compaction. So ``take_changes`` keeps a finished order's entry as the log wrote it, encoded
(``LiveOrder.logged``), and a compaction copies those bytes (2.3 ms); ``_touched`` drops
them, and ``restore`` gives a finished order the bytes the log holds.

The fills of these orders go in the log too, one ``API_FILL`` entry each, written once with
the order's change (``fill_entry``): ``restore`` gives them back to ``LiveTrades``, so that
``myTrades`` still lists a fill the writer has not filed after a restart, clean or not, as
``allOrders`` lists its order (review 324), with the commission computed when it was seen,
whatever fees the restarted gateway's config has (review 331). Not in the order's own
entry, which is written again at each of its changes: an order filled k times would write k²
fills. A compaction keeps those still in ``LiveTrades`` (not yet past the writer's
checkpoint, at most ``MAX_LIVE_FILLS``) of the orders it keeps; an order's ``GONE`` takes its
fills along.
The fills of the other orders ``RestOrders`` follows (placed over FIX, or through another
gateway) are the gateway's memory only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any

from procs.core.resting import RestingOrder
from procs.gateway.grouped import GroupedDict
from procs.gateway.instruments import Instruments
from procs.gateway.live_trades import LiveFill, LiveTrades
from procs.gateway.order_log import (
    API_FILL,
    API_ORDER,
    GONE,
    ApiOrderValues,
    Entry,
    Kept,
    encoded,
    plain,
)
from procs.gateway.rest_order_state import LiveOrder, PendingRequest
from procs.gateway.unfiled_orders import UnfiledOrders


class RestOrderLog:
    instruments: Instruments
    keep_done: int
    live: GroupedDict[int, LiveOrder, int]
    client_ids: dict[tuple[int, str], LiveOrder]
    done: OrderedDict[int, LiveOrder]
    requests: dict[int, PendingRequest]
    unfiled: UnfiledOrders
    trades: LiveTrades
    #: orders placed through this API that changed since ``take_changes`` (by ``placed``),
    #: and those no longer kept (finished and past ``keep_done``)
    _changed: dict[int, LiveOrder]
    _gone: list[int]
    #: the fills of orders placed through this API since ``take_changes``, by ``placed``
    _fills_to_log: list[tuple[int, LiveFill]]

    if TYPE_CHECKING:  # ``RestOrders``'

        def note_used(self, account: int, client_id: str) -> None: ...

    def take_changes(self) -> list[Kept]:
        """Order-log entries for what changed of the orders placed through this API (a
        finished order's encoded already)."""
        entries: list[Kept] = [(GONE, placed) for placed in self._gone]
        for placed, o in self._changed.items():
            entry = (API_ORDER, placed, *o.entry())
            if o.open:
                entries.append(entry)
            else:  # finished: what a compaction copies until it goes (or changes after all)
                o.logged = encoded(entry)
                entries.append(o.logged)
        entries += [fill_entry(placed, f) for placed, f in self._fills_to_log]  # after theirs
        self._gone.clear()
        self._changed.clear()
        self._fills_to_log.clear()
        return entries

    def changed_since_taken(self) -> bool:
        """Whether ``take_changes`` has entries to give."""
        return bool(self._changed or self._gone or self._fills_to_log)

    def dump(self) -> list[Entry]:
        """Entries for every order placed through this API that is still kept, decoded."""
        return plain(self.dump_lazily())

    def dump_lazily(self) -> Iterator[Kept]:
        """``dump``'s entries for the orders kept now, each made when it is taken, from its
        state then (``OrderLog.begin_compaction``); a finished order's as the log last wrote
        it, already encoded."""
        kept = [o for o in self.done.values() if o.placed]
        kept += [o for o in self.client_ids.values() if o.placed]
        orders = ((API_ORDER, o.placed, *o.entry()) if o.logged is None else o.logged for o in kept)
        return chain(orders, self._fills_kept())

    def _fills_kept(self) -> Iterator[Entry]:
        """The ``API_FILL`` entries of the fills still live of the orders kept, taken once
        the orders' entries are (replay drops a fill whose order it has not: one placed
        since the compaction began has both in the frames that follow)."""
        for (account, _symbol, _trade, _maker), fill in self.trades.kept():
            o = self.live.get(fill.order_id) or self.done.get(fill.order_id)
            if o is not None and o.placed and o.account == account:
                yield fill_entry(o.placed, fill)

    def restore(self, entries: dict[int, list[Any]]) -> int:
        """Take back the orders placed through this API that an order log kept: open ones are
        followed again and hold their clientOrderIds, one still waiting for the exchange's
        answer gets it, finished ones answer queries; their logged fills go back to the live
        fills, oldest first, until the writer's checkpoint passes them (``forget_filed``).
        Returns how many are open or pending."""
        fills: list[tuple[int, int, LiveFill]] = []
        for placed, values in entries.items():
            order = LiveOrder.restore(placed, values, self.instruments)
            if order is None:
                continue
            if order.order_id and order.status != "REJECTED":  # taken by the exchange: its
                self.note_used(order.account, order.client_order_id)  # id "used" (a crash)
            if isinstance(values, ApiOrderValues):  # (a log of before review 324: none)
                for trade_id, logged in values.fills.items():
                    maker, seq, price, qty, time_ms, buyer = logged[:6]
                    fee = logged[6] if len(logged) > 6 else None  # none before review 331
                    fill = LiveFill(seq, trade_id, order.order_id, maker, buyer, price, qty,
                                    time_ms, fee)  # fmt: skip
                    fills.append((order.account, order.symbol.id, fill))
            if not order.open:
                order.cancel_ref = 0  # ended: a cancel of it has nothing left to do
                if order.status != "REJECTED":  # as live: a refused order is not kept
                    order.logged = encoded((API_ORDER, placed, *values))
                    self.done[order.order_id] = order
                    if order.seq:  # allOrders lists it until the writer has it (review 158)
                        self.unfiled.changed(order, order.seq)
                continue
            self.client_ids[order.account, order.client_order_id] = order
            if order.ref:
                self.requests[order.ref] = PendingRequest("new", order.account, order)
            if order.amend_ref:  # its answer still comes; a second amend waits for it
                self.requests[order.amend_ref] = PendingRequest("amend", order.account, order)
            if order.cancel_ref:
                self.requests[order.cancel_ref] = PendingRequest("cancel", order.account, order)
            if order.order_id:
                self.live[order.order_id] = order
        while len(self.done) > self.keep_done:
            self.done.popitem(last=False)
        for account, symbol, fill in sorted(fills, key=lambda f: f[2].seq):
            self.trades.restore(account, symbol, fill)
        return len(self.client_ids)

    def _touched(self, order: LiveOrder | None) -> None:
        if order is not None and order.placed:
            self._changed[order.placed] = order
            order.logged = None

    def reconcile(self, resting: dict[int, RestingOrder], symbols: set[int]) -> tuple[int, int]:
        """Correct the open orders placed through this API on ``symbols`` from a matcher's
        books, as ``OrderMemory.reconcile`` does the FIX ones, when a restart over new rings
        cannot make their missed events again (``resting``: this gateway's live orders by
        their NewOrder's client_ref, which is an API order's ``placed``). One in a book takes
        its fills, what is left and its price (the notional of fills it missed is unknown);
        an acknowledged one not in a book finished meanwhile, how the books cannot say: it is
        forgotten here, its clientOrderId free, and shown as the database has it. An amend
        in flight is answered by neither (its answer went with the rings): it is dropped, so
        the next amend is taken. Returns how many were corrected and forgotten."""
        corrected = forgotten = 0
        for order in list(self.client_ids.values()):
            if not order.placed or order.symbol.id not in symbols:
                continue
            found = resting.get(order.placed)
            if not order.order_id:  # its Accepted went with the rings, or is yet to come
                if found is None or found.account != order.account:
                    continue  # its command may come after the books' seq
                # in a book: accepted. Its request's HTTP answer died with the old process:
                # nobody waits for it any more
                order.order_id, order.status = found.order_id, "NEW"
                self.note_used(order.account, order.client_order_id)  # its Accepted is gone
                self.live[order.order_id] = order
                self.requests.pop(order.ref, None)
                order.ref = 0
                self._touched(order)
            if order.amend_ref:  # its answer went with the rings: the books have its effect
                self.requests.pop(order.amend_ref, None)
                order.amend_ref = 0
                self._touched(order)
            if order.cancel_ref:  # the same
                self.requests.pop(order.cancel_ref, None)
                order.cancel_ref = 0
                self._touched(order)
            if found is None or found.account != order.account:
                del self.client_ids[order.account, order.client_order_id]
                self.live.pop(order.order_id, None)
                self._changed.pop(order.placed, None)
                self._gone.append(order.placed)
                forgotten += 1
                continue
            left = found.leaves + found.reserve
            if (found.filled, left, found.price) != (order.cum, order.leaves, order.price):
                if found.filled != order.cum:
                    order.notional_known = False
                order.cum, order.leaves, order.price = found.filled, left, found.price
                order.qty = order.cum + left
                order.status = "PARTIALLY_FILLED" if order.cum else "NEW"
                order.triggered = order.triggered or order.cum > 0  # a stop that traded
                self._touched(order)
                corrected += 1
        return corrected, forgotten


def fill_entry(placed: int, f: LiveFill) -> Entry:
    """The order log's entry of a fill of the API order placed under ``placed``; its fee
    last (review 331: an entry written before has none, and ``restore`` computes it)."""
    return (
        API_FILL, placed, f.trade_id, f.maker, f.seq, f.price, f.qty, f.time_ms, f.buyer, f.fee,
    )  # fmt: skip
