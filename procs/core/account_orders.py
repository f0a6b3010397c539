"""Each account's resting orders in one book, for a mass cancel of one account.

A mass cancel of one account (a client's, a cancel on disconnect, the REST API's ``DELETE
openOrders``) took every resting order of the book in priority order and kept the account's:
against 200k resting orders ~22 ms of the matcher each, which one account could send a
thousand times a second (review 46). This index makes it the account's own orders, sorted
into priority order (bids first, best price first, then arrival: the order the scan gave).

It is kept lazily, a list of order ids per account: an order is added where it comes to rest,
and nothing is done where it leaves (the hot paths of cancels and fills stay as they were);
``of`` passes over and forgets the ids no longer resting, and once the index holds more than
twice the book's orders as of the last rebuild (plus ``SLACK``) it is rebuilt from them, so
its size stays within twice the book's largest (plus ``SLACK``), at an amortised O(1) an
order. A list per account, not a set: an append is the cheapest add (``FastBook``'s new
order inlines it), and ``of`` drops the repeats an order that rested twice left (a replace
that crossed, then rested). Order ids are never reused within a book. The index is derived
state: snapshots and state hashes do not hold it, and a restored book builds it anew.
"""

from __future__ import annotations

from typing import Final

from procs.common.types import Side
from procs.core.resting import RestingOrder

SLACK: Final = 1024


def _priority(order: RestingOrder) -> tuple[bool, int, int]:
    return (order.side != Side.BUY, -order.price if order.side == Side.BUY else order.price,
            order.arrival)  # fmt: skip


class AccountOrders:
    __slots__ = ("added", "ids", "limit")

    def __init__(self) -> None:
        self.ids: dict[int, list[int]] = {}  # account -> ids, some no longer resting
        self.added = 0  # ids added since the last rebuild, and the size it left
        self.limit = SLACK  # past which the next add rebuilds

    def add(self, order: RestingOrder, orders: dict[int, RestingOrder]) -> None:
        """``order`` has come to rest (``orders``: the book's resting orders, by id)."""
        ids = self.ids.get(order.account)
        if ids is None:
            self.ids[order.account] = [order.order_id]
        else:
            ids.append(order.order_id)
        self.added += 1
        if self.added > self.limit:
            self.rebuild(orders)

    def rebuild(self, orders: dict[int, RestingOrder]) -> None:
        self.ids = {}
        for order in orders.values():
            self.ids.setdefault(order.account, []).append(order.order_id)
        self.added = len(orders)
        self.limit = 2 * len(orders) + SLACK

    def of(self, account: int, orders: dict[int, RestingOrder]) -> list[RestingOrder]:
        """``account``'s resting orders in priority order."""
        ids = self.ids.pop(account, None)
        if not ids:
            return []
        mine = [orders[i] for i in dict.fromkeys(ids) if i in orders]
        if mine:
            self.ids[account] = [o.order_id for o in mine]
        return sorted(mine, key=_priority)

    def check(self, orders: dict[int, RestingOrder]) -> None:
        """Raise ``AssertionError`` for a resting order the index lacks."""
        held = {account: set(ids) for account, ids in self.ids.items()}
        for oid, order in orders.items():
            assert oid in held.get(order.account, ()), (
                f"order {oid} of account {order.account} missing from its account's index"
            )
