"""The ends of orders placed elsewhere (not through this API), kept until the database writer
has filed them: until then the database still shows such an order open, and a view made from
its row (``openOrders``, the private stream's snapshot) would list it open with no event left
to end it for a client that applies the snapshot and then each event.

Which orders: from an account's first use of the API on, ``RestOrders`` follows every order
of it from its ``Accepted``; the orders not followed are those open before (placed through
another gateway, or before the account's interest in this one began or came back), which
the database alone knows. ``RestOrders._done`` keeps the end of one of an account of
interest (only those accounts' views read rows) as ``from_done`` makes it, which
``RestOrders.known`` finds: ``openOrders`` and the snapshot leave its stale row out and do
not follow it (``RowOrders.remember``), and ``allOrders`` shows the end over the row,
completed from it (``LiveOrder.complete``).

An account's interest may begin just after one of its orders ended, before the writer
filed that end: its first snapshot would list the order open, and no event would come to
end it. So the recent events of the accounts not of interest are kept
(``recent_elsewhere.py``), and an account whose interest begins follows the orders it placed
among them (``RestOrders._follow_recent``); the end of an order placed before them is kept
here as ``from_done`` makes it, before every end kept (``add``, ``older``).

The end of an order placed elsewhere that ``RestOrders`` follows (from its ``Accepted``, a
row or FIX) is kept here too, as ``done`` holds it (the same object): ``DELETE openOrders``
lists the database's open rows and leaves out those whose end came before the request
(``rest_mass_cancel.py``), which it tells by this. (An order placed through the API that
ended before the request is listed there, its row not filed yet: open.)

Memory: one ``LiveOrder`` per end, each kept until the writer's checkpoint passes it
(``forget_filed``, read by each allOrders request) or a row shows it filed (``filed``), and
at most ``MAX_ENDED_ELSEWHERE`` of them, the oldest dropped first. Without allOrders
requests the checkpoint is not read and the bound alone lets them go: harmless for an end
older than the writer's lag, which the database then shows.
"""

from __future__ import annotations

from collections import OrderedDict

from procs.gateway.rest_order_state import LiveOrder

#: Most ends kept, all accounts together (about 500 bytes each: 5 MB). The ends of the
#: orders of accounts of interest placed elsewhere, and the writer files each within its
#: batch time (tens of ms): this holds 10,000 ends within the writer's lag (ten full books,
#: at ``risk.max_open_orders`` 1,000, cancelled at once). Past it the oldest end goes first;
#: its row, if the writer has still not filed it, shows it open again (the fault this keeps
#: away, for that order).
MAX_ENDED_ELSEWHERE = 10_000


class EndedElsewhere:
    """Ends by order id, oldest first, bounded by ``limit``. Called on the gateway's event
    loop only: ``add`` from the poll loop (``RestOrders``; also as an account's interest
    begins), the others from the handlers."""

    def __init__(self, limit: int = MAX_ENDED_ELSEWHERE) -> None:
        self.limit = limit
        self._ends: OrderedDict[int, LiveOrder] = OrderedDict()  # order id -> its end

    def __len__(self) -> int:
        return len(self._ends)

    def add(self, order: LiveOrder, *, older: bool = False) -> None:
        """``order`` (``from_done``, or as ``RestOrders.done`` holds it: its ``seq`` the
        end's) ended, placed elsewhere.
        ``older``: before every end kept (its account's interest began after it, newest
        first: ``RestOrders._follow_recent``), so it goes first, to the checkpoint or to the
        bound: a busy account's recent ends, mostly filed, never push out the other
        accounts' unfiled ones."""
        self._ends[order.order_id] = order
        if older:
            self._ends.move_to_end(order.order_id, last=False)
        if len(self._ends) > self.limit:
            self._ends.popitem(last=False)

    def get(self, order_id: int) -> LiveOrder | None:
        """The end kept of ``order_id``, or None."""
        return self._ends.get(order_id)

    def filed(self, order_id: int, updated_seq: int) -> None:
        """A row of ``order_id`` last changed at journal seq ``updated_seq``: its end goes
        if the row has it."""
        order = self._ends.get(order_id)
        if order is not None and order.seq <= updated_seq:
            del self._ends[order_id]

    def forget_filed(self, filed_seq: int) -> None:
        """Let go of the ends at or below the writer's checkpoint ``filed_seq``, oldest first
        up to the first above it (one left behind, a little out of seq order, goes with the
        next checkpoint past it, a row, or the bound)."""
        ends = self._ends
        while ends and next(iter(ends.values())).seq <= filed_seq:
            ends.popitem(last=False)
