"""The REST core catching up on events it saw but did not apply: those of an order it did not
follow when they came. A mixin of ``RestOrders`` (``rest_orders.py``).

Two kinds, kept apart:

- **Before an account's interest** (``recent_elsewhere.py``): ``_follow_recent`` takes the
  account's last events when its interest begins, for the orders it placed just before.
- **During it** (``UnfollowedEvents``): an account of interest may have orders this core does
  not follow, known from their database rows only (placed elsewhere, or before its interest
  lapsed). An event of such an order finds neither a followed order nor a remembered row
  when it comes, for instance while a private stream's snapshot still reads the database,
  before ``RowOrders.remember``. Such events are kept, the last ``UNFOLLOWED_KEPT`` of each
  account, and ``follow_kept`` applies them once rows are remembered: to an order whose
  row lacks them (the event's seq past the row's ``updated_seq``), in the order they came,
  each once (review 44: a fill during the snapshot's read was neither in the snapshot nor
  reported, and the order's later counts missed it). An event whose order is not among the
  rows stays kept for a later read, within the bound.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from procs.common.records import Accepted, OrderDone, Replaced, Trade, Triggered
from procs.gateway.completing_rows import CompletingRowOrders
from procs.gateway.grouped import GroupedDict
from procs.gateway.instruments import Instruments
from procs.gateway.live_trades import LiveTrades
from procs.gateway.recent_elsewhere import RecentElsewhere
from procs.gateway.rest_order_state import LiveOrder, from_done
from procs.gateway.unfiled_orders import UnfiledOrders

#: Events kept per account of interest for the orders it does not follow (a kept event is a
#: reference to a record the poll loop decoded, and whether it is the maker's side).
UNFOLLOWED_KEPT = 256

Kept = tuple[Trade | Replaced | Triggered | OrderDone, bool]


class UnfollowedEvents:
    """The events of accounts of interest that named an order not followed, by account."""

    def __init__(self, limit: int = UNFOLLOWED_KEPT) -> None:
        self.limit = limit
        self._by_account: dict[int, deque[Kept]] = {}

    def keep(
        self, account: int, event: Trade | Replaced | Triggered | OrderDone, maker: bool = False
    ) -> None:
        kept = self._by_account.get(account)
        if kept is None:
            kept = self._by_account[account] = deque(maxlen=self.limit)
        kept.append((event, maker))

    def take(self, account: int) -> list[Kept]:
        return list(self._by_account.pop(account, ()))

    def put_back(self, account: int, kept: list[Kept]) -> None:
        """What ``take`` gave and found no order for (older than what came since)."""
        if kept:
            newer = self._by_account.pop(account, ())
            self._by_account[account] = deque([*kept, *newer], maxlen=self.limit)

    def forget(self, account: int) -> None:
        self._by_account.pop(account, None)


class RestCatchUp:
    instruments: Instruments
    live: GroupedDict[int, LiveOrder, int]
    done: dict[int, LiveOrder]
    rows: CompletingRowOrders
    recent: RecentElsewhere
    unfollowed: UnfollowedEvents
    unfiled: UnfiledOrders
    trades: LiveTrades
    _fill: Callable[[int, int, Trade, int, bool], bool]
    _accepted: Callable[[Accepted], None]
    _done: Callable[[OrderDone], None]
    _replaced: Callable[[Replaced], None]
    _triggered: Callable[[Triggered], None]

    def follow_kept(self, account: int) -> bool:
        """Apply ``account``'s kept events (``UnfollowedEvents``) to the orders its rows
        just remembered (``RowOrders.remember``), and to those this takes from them; whether
        any applied (their reports are in ``events``)."""
        applied = False
        left: list[Kept] = []
        floors: dict[int, int] = {}  # order id -> the seq its state held before this
        for event, maker in self.unfollowed.take(account):
            if isinstance(event, Trade):
                oid = event.maker_order_id if maker else event.taker_order_id
            else:
                oid = event.order_id
            order = self.live.get(oid)
            if order is not None:
                floor = floors.setdefault(oid, order.seq)
                if event.seq <= floor and not (
                    isinstance(event, Triggered) and not order.triggered
                ):
                    continue  # its state holds it already (a trigger: where it says so)
            # a row holds no trigger, whatever its seq (reread 44: a trigger the writer had
            # filed was never applied, and the stop read as not working)
            elif (
                order := self.rows.take(
                    account, oid, 0 if isinstance(event, Triggered) else event.seq
                )
            ) is None:
                left.append((event, maker))
                continue
            else:
                floors[oid] = order.seq  # the row's
                self.live[oid] = order
            applied = True
            if isinstance(event, Trade):
                leaves = event.maker_leaves if maker else event.taker_leaves
                self._fill(oid, account, event, leaves, maker)
            elif isinstance(event, Replaced):
                self._replaced(event)
            elif isinstance(event, Triggered):
                self._triggered(event)
            else:
                self._done(event)
        self.unfollowed.put_back(account, left)
        return applied

    def _follow_recent(self, account: int) -> None:
        """``account``'s interest begins: its events seen just before (``recent_elsewhere.py``)
        are taken as if it had been of interest then, for the writer may not have filed them.
        An order accepted among them is followed from its ``Accepted`` (unless followed from
        FIX already: as it stands now), and only such orders take the events after it, so
        nothing counts twice (a trade kept for its other side and taken again after a lapse
        is of an order accepted before); every trade of the account is kept for myTrades,
        whatever its order (review 219: a FIX order's fill, shown by GET order, was missing
        there until filed). Every end among them is kept as an end not filed
        (``ended_elsewhere.py``): that of an order placed before them as ``from_done`` makes
        it, that of one followed here as ``done`` has it. No report: no stream is open yet."""
        followed: set[int] = set()
        by_id = self.instruments.by_id
        ends: list[LiveOrder] = []  # in event order
        for event in self.recent.take(account):
            if isinstance(event, Trade):
                for oid, leaves, maker in (
                    (event.maker_order_id, event.maker_leaves, True),
                    (event.taker_order_id, event.taker_leaves, False),
                ):
                    if (event.maker_account if maker else event.taker_account) != account:
                        continue
                    if oid in followed:
                        self._fill(oid, account, event, leaves, maker)
                    else:  # a fill of an order followed as it stands (FIX's), or of none:
                        self.trades.add(event, account, oid, maker)  # myTrades' all the same
            elif isinstance(event, Accepted):
                if event.order_id not in self.live:
                    followed.add(event.order_id)
                    self._accepted(event)
            elif event.order_id not in followed:
                if isinstance(event, OrderDone) and (sym := by_id.get(event.symbol)) is not None:
                    ends.append(from_done(event, sym))
            elif isinstance(event, OrderDone):
                self._done(event)  # kept as an end too (placed elsewhere), moved back below
                if (order := self.done.get(event.order_id)) is not None:
                    ends.append(order)
            elif isinstance(event, Replaced):
                self._replaced(event)
            else:
                self._triggered(event)
        for order in reversed(ends):  # each before those kept: oldest first
            self.unfiled.ended.add(order, older=True)
