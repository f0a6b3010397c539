"""The ends of orders the REST core does not follow, kept until the database writer has filed
them: until then the database still shows such an order open, and a view made from its row
(``openOrders``, the private stream's snapshot) would list it open with no event left to end
it for a client that applies the snapshot and then each event.

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
end it. So the last ``RECENT_ENDS`` ends of the accounts not of interest are kept as the
matchers sent them (``passed``: a reference to the decoded record, no copy, on the poll
loop), and an account whose interest begins takes its own among them (``recent``) as ends.

Memory: one ``LiveOrder`` per end, each kept until the writer's checkpoint passes it
(``forget_filed``, read by each allOrders request) or a row shows it filed (``filed``), and
at most ``MAX_ENDED_ELSEWHERE`` of them, the oldest dropped first. Without allOrders
requests the checkpoint is not read and the bound alone lets them go: harmless for an end
older than the writer's lag, which the database then shows. The recent ends of the other
accounts: ``RECENT_ENDS`` records (about 150 bytes each), the oldest replaced first.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from procs.common.records import OrderDone
from procs.gateway.rest_order_state import LiveOrder

#: Most ends kept, all accounts together (about 500 bytes each: 5 MB). Only orders open
#: when an account's interest began end unfollowed, at most ``risk.max_open_orders`` (1,000
#: by default) per account of interest, and the writer files each within its batch time
#: (tens of ms): this holds ten such full books cancelled at once within the writer's lag,
#: or far more smaller ones. Past it the oldest end goes first; its row, if the writer has
#: still not filed it, shows it open again (the fault this keeps away, for that order).
MAX_ENDED_ELSEWHERE = 10_000

#: Most ends kept of the accounts not of interest, all together, for an account whose interest
#: begins (``recent``): at 20,000 ends a second, the last half second, many times the writer's
#: lag. An end older than that, the database shows (its writer filed it).
RECENT_ENDS = 10_000


class EndedElsewhere:
    """Ends by order id, oldest first, bounded by ``limit``. Called on the gateway's event
    loop only: ``add`` and ``passed`` from the poll loop (``RestOrders``; ``add`` also as an
    account's interest begins, with ``recent``), the others from the handlers."""

    def __init__(self, limit: int = MAX_ENDED_ELSEWHERE, recent: int = RECENT_ENDS) -> None:
        self.limit = limit
        self._ends: OrderedDict[int, LiveOrder] = OrderedDict()  # order id -> its end
        #: the last ends of the accounts not of interest, oldest first
        self._recent: deque[OrderDone] = deque(maxlen=recent)

    def __len__(self) -> int:
        return len(self._ends)

    def add(self, order: LiveOrder, *, older: bool = False) -> None:
        """``order`` (``from_done``: its ``seq`` the end's) ended, not followed here.
        ``older``: before every end kept (its account's interest began after it: ``recent``,
        newest first), so it goes first, to the checkpoint or to the bound: a busy account's
        recent ends, mostly filed, never push out the other accounts' unfiled ones."""
        self._ends[order.order_id] = order
        if older:
            self._ends.move_to_end(order.order_id, last=False)
        if len(self._ends) > self.limit:
            self._ends.popitem(last=False)

    def passed(self, done: OrderDone) -> None:
        """An order of an account not of interest ended, not followed here (the poll loop:
        one append, the oldest of ``recent`` dropped)."""
        self._recent.append(done)

    def recent(self, account: int) -> list[OrderDone]:
        """The ends of ``account``'s orders among the last ones ``passed``, oldest first (its
        interest begins: a scan of at most ``RECENT_ENDS``, once an interest)."""
        return [done for done in self._recent if done.account == account]

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
