"""The REST API's orders in the gateway's order log: what ``RestOrders`` writes of the orders
placed through the API (``take_changes``, a compaction's ``dump``) and takes back after a
restart (``restore``), so that a restarted gateway still knows them by their clientOrderId.

A mixin of ``RestOrders`` (``rest_orders.py``), which notes each change with ``_touched``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from procs.gateway.instruments import Instruments
from procs.gateway.order_log import API_ORDER, GONE, Entry
from procs.gateway.rest_order_state import LiveOrder, PendingRequest


class RestOrderLog:
    instruments: Instruments
    keep_done: int
    live: dict[int, LiveOrder]
    client_ids: dict[tuple[int, str], LiveOrder]
    done: OrderedDict[int, LiveOrder]
    requests: dict[int, PendingRequest]
    #: orders placed through this API that changed since ``take_changes`` (by ``placed``),
    #: and those no longer kept (finished and past ``keep_done``)
    _changed: dict[int, LiveOrder]
    _gone: list[int]

    def take_changes(self) -> list[Entry]:
        """Order-log entries for what changed of the orders placed through this API."""
        entries: list[Entry] = [(GONE, placed) for placed in self._gone]
        entries += [(API_ORDER, placed, *o.entry()) for placed, o in self._changed.items()]
        self._gone.clear()
        self._changed.clear()
        return entries

    def dump(self) -> list[Entry]:
        """Entries for every order placed through this API that is still kept."""
        return list(self.dump_lazily())

    def dump_lazily(self) -> Iterator[Entry]:
        """``dump``'s entries for the orders kept now, each made when it is taken, from its
        state then (``OrderLog.begin_compaction``)."""
        kept = [o for o in self.done.values() if o.placed]
        kept += [o for o in self.client_ids.values() if o.placed]
        return ((API_ORDER, o.placed, *o.entry()) for o in kept)

    def restore(self, entries: dict[int, list[Any]]) -> int:
        """Take back the orders placed through this API that an order log kept: open ones are
        followed again and hold their clientOrderIds, one still waiting for the exchange's
        answer gets it, finished ones answer queries. Returns how many are open or pending."""
        for placed, values in entries.items():
            order = LiveOrder.restore(placed, values, self.instruments)
            if order is None:
                continue
            if not order.open:
                if order.status != "REJECTED":  # as live: a refused order is not kept
                    self.done[order.order_id] = order
                continue
            self.client_ids[order.account, order.client_order_id] = order
            if order.ref:
                self.requests[order.ref] = PendingRequest("new", order.account, order)
            if order.order_id:
                self.live[order.order_id] = order
        while len(self.done) > self.keep_done:
            self.done.popitem(last=False)
        return len(self.client_ids)

    def _touched(self, order: LiveOrder | None) -> None:
        if order is not None and order.placed:
            self._changed[order.placed] = order
