"""The order entry's memory across restarts: what it writes to the order log, what it takes
back from it, and how it corrects that from the books when the rings it read are gone.

A mixin of ``OrderEntry`` (``orders.py``), which notes in ``touched`` every order and request it
creates, changes or forgets; the server writes ``take_changes()`` to the log
(``order_log.py``) and a restarted gateway calls ``restore`` and, when the rings are new
(``recovery.py``), ``reconcile``.

A finished order is logged encoded, and keeps those bytes (``Order.logged``): a compaction
rewrites the ``FINISHED_KEPT`` newest, a gateway under load compacts every second or so, and
making and encoding each again was most of a compaction's cost (``rest_order_log.py``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from itertools import chain
from typing import Any

from procs.common.types import OrdType, Side, TimeInForce
from procs.core.resting import RestingOrder
from procs.gateway.grouped import GroupedDict
from procs.gateway.instruments import Instruments
from procs.gateway.order_log import (
    FINISHED,
    FINISHED_KEPT,
    GONE,
    MASS,
    ORDER,
    REQUEST,
    Entry,
    Kept,
    encoded,
    plain,
)
from procs.gateway.order_state import MassCancelRequest, Order, Request

log = logging.getLogger("ringex.gateway")
_PRICED = (OrdType.LIMIT, OrdType.STOP_LIMIT)
#: Where a FINISHED entry's fields (after its ref) say whether the order is known by its
#: OrigClOrdID too; an ORDER entry's end before it.
_BY_ORIG = 20


class OrderMemory:
    instruments: Instruments
    orders: dict[int, Order]  # NewOrder client_ref -> order
    by_id: dict[int, Order]
    requests: dict[int, Request]
    mass_cancels: dict[int, MassCancelRequest]
    live: GroupedDict[tuple[int, bytes], Order, int]
    touched: dict[int, Order | Request | MassCancelRequest | None]
    #: (session, ClOrdID) -> a finished order of ``finished_orders``: what a cancel, replace
    #: or status request naming it is answered from (a cancelled order by both ClOrdIDs).
    finished: dict[tuple[int, bytes], Order]
    #: ref -> a finished order and its keys in ``finished``, the newest ``FINISHED_KEPT``
    #: orders, in the order of their last finish: as the order log keeps them (one FINISHED
    #: entry an order, by ref, the one written last newest), so that a compaction and a
    #: restart keep the same ones.
    finished_orders: OrderedDict[int, tuple[Order, list[tuple[int, bytes]]]]
    #: order id -> its ref in ``finished_orders``: a Replaced event names the replace's ref,
    #: so the API's views find an order that filled as it was replaced by its id (review 253)
    finished_ids: dict[int, int]
    finished_changes: list[Order]
    _next_ref: int  # the last client ref handed out

    def _forget(self, order: Order) -> None:
        self.orders.pop(order.ref, None)
        self.by_id.pop(order.order_id, None)
        self.live.pop((order.session, order.cl_ord_id), None)
        self.touched[order.ref] = None
        self._finish(order)

    def _finish(self, order: Order) -> None:
        """Keep ``order`` answerable under its current ClOrdID (too), as the newest."""
        key = (order.session, order.cl_ord_id)
        self._keep_finished(order, [key])
        self.finished[key] = order
        self.finished_changes.append(order)  # logged: a restart still answers for it

    def _keep_finished(self, order: Order, keys: list[tuple[int, bytes]]) -> None:
        """List ``order`` as the newest finished one, known by ``keys`` too; the oldest past
        ``FINISHED_KEPT`` goes with all its keys (counted in orders, not keys, as the log
        counts its FINISHED entries)."""
        kept = self.finished_orders.pop(order.ref, None)
        if kept is not None:
            keys = kept[1] + [k for k in keys if k not in kept[1]]
        self.finished_orders[order.ref] = (order, keys)
        if order.order_id:
            self.finished_ids[order.order_id] = order.ref
        if len(self.finished_orders) > FINISHED_KEPT:
            _, (old, old_keys) = self.finished_orders.popitem(last=False)
            for k in old_keys:
                if self.finished.get(k) is old:
                    del self.finished[k]
            if self.finished_ids.get(old.order_id) == old.ref:
                del self.finished_ids[old.order_id]

    def _pop_request(self, ref: int) -> Request | None:
        request = self.requests.pop(ref, None)
        if request is not None:
            self.touched[ref] = None
        return request

    def reconcile(
        self, resting: dict[int, RestingOrder], symbols: set[int]
    ) -> tuple[list[Order], int]:
        """Correct the orders on ``symbols`` from a matcher's books (``resting``: this
        gateway's live orders there, by their NewOrder's client_ref), when the events since
        the log's last write are lost: an acknowledged order not in a book finished meanwhile
        and is forgotten; one in a book takes its id, fills and what is left (fills it missed
        are priced at its limit, where a resting order trades), and its price, quantity and
        stop price (a replace it missed: one sent through another gateway's REST API, or its
        own request in flight). One not acknowledged yet and not in a book is kept: its
        command may come after the books' seq. Requests in flight on those symbols are
        dropped: their answers went with the rings.
        Returns the orders whose fills or terms changed (to restate to their clients) and how
        many were forgotten."""
        changed: list[Order] = []
        forgotten = 0
        for ref, order in list(self.orders.items()):
            if order.symbol.id not in symbols:
                continue
            found = resting.get(ref)
            if found is None or found.session != order.session:
                if order.order_id:
                    self._forget(order)
                    forgotten += 1
                continue
            left = found.leaves + found.reserve
            terms = (order.cum, order.price, order.qty, order.stop_price)
            if found.filled != order.cum:
                order.notional += (found.filled - order.cum) * found.price
                order.cum = found.filled
            self.by_id.pop(order.order_id, None)
            order.order_id, order.leaves = found.order_id, left
            if order.ord_type in _PRICED:  # a market order's book price is its protection
                order.price = found.price
            if found.stop_price:  # a stop not triggered yet
                order.stop_price = found.stop_price
            order.qty = order.cum + left
            if terms != (order.cum, order.price, order.qty, order.stop_price):
                changed.append(order)
            order.status = b"1" if order.cum else b"0"
            self.by_id[order.order_id] = order
            self.touched[ref] = order
        for ref, request in list(self.requests.items()):
            if request.order.symbol.id in symbols:
                self._pop_request(ref)
        return changed, forgotten

    def unanswered(self, ref: int) -> bool:
        """Whether the command of client ref ``ref`` still waits for its answer: a new order
        not acknowledged, or a cancel or replace request in flight."""
        order = self.orders.get(ref)
        if order is not None:
            return not order.order_id and order.status == b"A"
        return ref in self.requests or ref in self.mass_cancels

    def take_changes(self) -> list[Kept]:
        """Log entries for what changed since the last call (a finished order's encoded)."""
        if not self.touched and not self.finished_changes:
            return []
        entries: list[Kept] = [
            (GONE, ref) if item is None else _entry(ref, item) for ref, item in self.touched.items()
        ]
        for o in self.finished_changes:  # what a compaction copies of it until it goes
            o.logged = encoded(self._finished_entry(o))
            entries.append(o.logged)
        self.touched.clear()
        self.finished_changes.clear()
        return entries

    def dump(self) -> list[Entry]:
        """Log entries for every live order and request (a compacted log), decoded."""
        return plain(self.dump_lazily())

    def dump_lazily(self) -> Iterator[Kept]:
        """``dump``'s entries for the orders and requests live now, each made when it is
        taken, from its state then (``OrderLog.begin_compaction``); a finished order's as the
        log last wrote it, encoded."""
        finished = [order for order, _ in self.finished_orders.values()]
        live: list[tuple[int, Order | Request | MassCancelRequest]] = [
            *self.orders.items(),
            *self.mass_cancels.items(),
            *self.requests.items(),
        ]
        return chain(
            (self._finished_entry(o) if o.logged is None else o.logged for o in finished),
            (_entry(ref, item) for ref, item in live),
        )

    def restore(
        self,
        orders: dict[int, list[Any]],
        requests: dict[int, list[Any]],
        finished: dict[int, list[Any]] | None = None,
        mass_cancels: dict[int, list[Any]] | None = None,
    ) -> int:
        """Take back the orders, requests, finished orders and unanswered mass cancels an
        order log recovered; returns how many orders (one on a symbol no longer configured
        is dropped, with a log line)."""
        for ref, (session, pairs) in (mass_cancels or {}).items():
            self.mass_cancels[ref] = MassCancelRequest(session, {tag: v for tag, v in pairs})
        for ref, values in (finished or {}).items():  # oldest first, as the log keeps them
            done = self._order(ref, values)
            if done is None:
                continue
            done.logged = encoded((FINISHED, ref, *values))  # as the log has it
            keys = [(done.session, done.cl_ord_id)]
            # known by the ClOrdID it had too where the live gateway knew it so (a cancel
            # renamed it as it finished); a log older than that flag: wherever it had one
            flagged = len(values) > _BY_ORIG  # a cancel's ClOrdID took its name
            if done.orig_cl_ord_id and (values[_BY_ORIG] if flagged else True):
                keys.append((done.session, done.orig_cl_ord_id))
                if flagged:
                    done.name = done.orig_cl_ord_id
            self._keep_finished(done, keys)
        for done, keys in self.finished_orders.values():  # a current ClOrdID wins over an
            self.finished[keys[0]] = done  # earlier one of another order
        for done, keys in self.finished_orders.values():
            for key in keys[1:]:
                self.finished.setdefault(key, done)
        for ref, values in orders.items():
            order = self._order(ref, values)
            if order is None:
                continue
            self.orders[ref] = order
            self.live[(order.session, order.cl_ord_id)] = order
            if order.order_id:
                self.by_id[order.order_id] = order
        for ref, values in requests.items():
            kind, session, cl, order_ref, price, qty = values[:6]
            orig = values[6] if len(values) > 6 else b""  # (an older log's: none kept)
            # its order may have finished meanwhile (a fill before the router refuses the
            # cancel as too late): answered as without the crash (review 292: never answered)
            finished_target = self.finished_orders.get(order_ref)
            target = self.orders.get(order_ref) or (finished_target and finished_target[0])
            if target is not None:
                self.requests[ref] = Request(kind, session, cl, target, price, qty, orig)
        # A clock stepped back since the last run must not hand out a ref still in use.
        known = [*orders, *requests, *(finished or {}), *(mass_cancels or {})]
        self._next_ref = max(self._next_ref, max(known, default=0))
        return len(self.orders)

    def keep_refs_above(self, ref: int) -> None:
        """Hand out no ref at or below ``ref``: one the REST API's orders hold (restored
        apart from FIX's), with the clock stepped back since the last run."""
        self._next_ref = max(self._next_ref, ref)

    def _finished_entry(self, order: Order) -> Entry:
        """A finished order's FINISHED entry: its ORDER entry's fields, then whether it is
        known by its OrigClOrdID too (``_BY_ORIG``): only one a cancel renamed as it finished
        (``_finish`` twice), not one replaced and then filled, expired or cancelled another
        way, whose OrigClOrdID the replace took from it. ``restore`` keys it the same way."""
        kept = self.finished_orders.get(order.ref)
        orig = (order.session, order.orig_cl_ord_id)
        by_orig = bool(order.orig_cl_ord_id) and kept is not None and orig in kept[1]
        return (FINISHED, *_entry(order.ref, order)[1:], by_orig)

    def _order(self, ref: int, values: list[Any]) -> Order | None:
        """An order from its log fields; None (with a log line) on an unknown symbol."""
        (session, cl, orig, symbol, side, ord_type, tif, price, stop, qty, order_id, cum,
         notional, leaves, status) = values[:15]  # fmt: skip
        display, triggered = values[15:17] if len(values) >= 17 else (0, False)  # older logs
        time_ns = values[17] if len(values) >= 18 else 0
        post_only = bool(values[18]) if len(values) >= 19 else False
        updated_ns = values[19] if len(values) >= 20 else 0
        sym = self.instruments.by_id.get(symbol)
        if sym is None:
            log.warning("order log: order %d on unknown symbol id %s dropped", ref, symbol)
            return None
        order = Order(
            ref, session, cl, orig, sym, Side(side), OrdType(ord_type), TimeInForce(tif),
            price, stop, qty, order_id, cum, notional, leaves, status,
        )  # fmt: skip
        order.display, order.triggered, order.time_ns = display, bool(triggered), time_ns
        order.post_only, order.updated_ns = post_only, updated_ns
        return order


def _entry(ref: int, item: Order | Request | MassCancelRequest) -> Entry:
    # An order first: it is most of what changes (about three entries an order under load).
    # Its enums go as they are: msgpack writes an IntEnum as its int, so the bytes are those
    # of int() of each, without the calls.
    if type(item) is Order:
        return (
            ORDER, ref, item.session, item.cl_ord_id, item.orig_cl_ord_id, item.symbol.id,
            item.side, item.ord_type, item.tif, item.price, item.stop_price,
            item.qty, item.order_id, item.cum, item.notional, item.leaves, item.status,
            item.display, item.triggered, item.time_ns, item.post_only, item.updated_ns,
        )  # fmt: skip
    if isinstance(item, MassCancelRequest):
        return (MASS, ref, item.session, sorted(item.fields.items()))
    assert isinstance(item, Request), item
    return (REQUEST, ref, item.kind, item.session, item.cl_ord_id, item.order.ref,
            item.price, item.qty, item.orig_cl_ord_id)  # fmt: skip
