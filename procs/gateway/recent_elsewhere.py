"""The last events of the orders the REST core does not follow, kept as the matchers sent them,
so that an account whose interest in the API begins follows the orders it placed just before,
which the database writer may not have filed yet.

``RestOrders`` follows an account's orders from its first use of the API on; an older order
is in PostgreSQL, where ``openOrders`` and a private stream's snapshot read it. An order
accepted just before the interest began, not filed yet, is in neither: the snapshot lacked
it, its fills were reported to no one, and ``openOrders`` listed it once filed. Its end, the
same window (``ended_elsewhere.py``). So every event the core drops because its account is
not of interest (``Accepted``, ``Trade``, ``Replaced``, ``Triggered``, ``OrderDone``) is
kept here (``passed``), the last ``limit`` of them, and an account whose interest begins
takes its own (``take``): ``RestOrders._follow_recent`` follows each order whose ``Accepted``
is among them as if the account had been of interest then, and keeps the end of any other
as an end not filed yet.

Rejected: a first snapshot that waits for the writer's checkpoint to pass the last seq seen
when the interest began. It would cost every first snapshot the writer's lag and a database
round trip (a writer down: the wait's limit, then the same fault), and mend the snapshot
alone: ``GET order``, ``allOrders`` and ``myTrades`` would still lack the order until filed.
Indexing the events by account would cost a dict look-up and a list per event on the poll
loop, where one ``deque.append`` costs ~25 ns; the scan in ``take`` runs once per interest.

Memory: ``limit`` references to records the poll loop decoded already (no copy), the oldest
replaced first: ~300 bytes a record with its integers, ~9 MB at ``RECENT_EVENTS``. An order
accepted before the window is in the database unless the writer lags by more than the
window: then the order is missed as before (its end, if in the window, is still kept).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from procs.common.records import Accepted, OrderDone, Replaced, Trade, Triggered

#: Most events kept, all accounts not of interest together. At 100,000 events a second (two
#: or three an order: a busy venue, every gateway's orders) the last 0.3 s, many times the
#: writer's lag (its batch time, tens of ms).
RECENT_EVENTS = 30_000

#: The events about an order that ``RestOrders`` drops when its account is not of interest.
Passed = Accepted | Trade | Replaced | Triggered | OrderDone


class RecentElsewhere:
    """The last ``limit`` events passed, oldest first. Called on the gateway's event loop
    only: ``passed`` from the poll loop (``RestOrders.process``), ``take`` as an account's
    interest begins (``RestOrders.touch``)."""

    def __init__(self, limit: int = RECENT_EVENTS) -> None:
        self.limit = limit
        self._events: deque[Passed] = deque(maxlen=limit)
        #: An event about an order not followed, of an account not of interest: kept, the
        #: oldest dropped past ``limit``. The deque's own ``append`` (no Python frame: the
        #: poll loop calls it for most events of a venue whose accounts mostly use FIX).
        self.passed: Callable[[Passed], None] = self._events.append

    def __len__(self) -> int:
        return len(self._events)

    def take(self, account: int) -> list[Passed]:
        """``account``'s events among those kept, oldest first (its interest begins): a
        ``Trade`` where it is the maker or the taker. Those only of it leave (its interest
        follows its orders from now on, and once it lapses, only the events after are news:
        an ``Accepted`` taken again would follow an order without the fills of its interest);
        a trade with another account stays, for that one's side. A scan of at most
        ``limit``, ~1.5 ms at ``RECENT_EVENTS``, and another to let the account's own go
        when it has any, once an interest."""
        events = self._events
        mine = [
            e
            for e in events
            # ``type() is``, not isinstance (2x slower here), which mypy narrows only where
            # true: the others all have an account
            if (
                account in (e.maker_account, e.taker_account)
                if type(e) is Trade
                else e.account == account  # type: ignore[union-attr]
            )
        ]
        if mine:  # in place: ``passed`` is this deque's append
            rest = [
                e
                for e in events
                if not (
                    e.maker_account == e.taker_account == account
                    if type(e) is Trade
                    else e.account == account  # type: ignore[union-attr]
                )
            ]
            events.clear()
            events.extend(rest)
        return mine
