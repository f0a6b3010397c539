"""Waiting for orders to end: a request that asked the exchange to end several orders (a mass
cancel) is answered once each of them is no longer open, with how each ended.

Sans-I/O: the REST core tells ``finished`` of every order that ends (cancelled, filled,
expired, rejected) and collects the refs ``take`` gives back after each batch of events, as
it does for its other requests. An order that ends before ``watch`` is asked about it is not
waited for (the caller passes only the orders still open).

The core follows only some orders; the others' ends say little (no side, price or type), but
a cancel-all must still tell how the orders it found only in the database ended, and their
ends may come before the database has answered. So while an account ``collect``s, the ends
of its orders the core does not follow are kept (``unfollowed``), and ``collected`` hands
them over and stops: a bounded window (a cancel-all's own), nothing kept otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from procs.common.records import OrderDone


class OrderEnds:
    def __init__(self) -> None:
        self._pending: dict[int, set[int]] = {}  # ref -> order ids not ended yet
        self._refs_of: dict[int, list[int]] = {}  # order id -> refs waiting for its end
        self._ended: list[int] = []  # refs whose orders have all ended, until ``take``
        #: account -> (cancel-alls collecting, ends of its unfollowed orders by order id)
        self._collecting: dict[int, tuple[int, dict[int, OrderDone]]] = {}

    def watch(self, ref: int, order_ids: Iterable[int]) -> bool:
        """Wait under ``ref`` for ``order_ids`` to end. False when there is nothing to wait
        for (no ids): ``ref`` is not taken then."""
        pending = set(order_ids)
        if not pending:
            return False
        if ref in self._pending:
            raise ValueError(f"ref {ref} already waits for {len(self._pending[ref])} orders")
        self._pending[ref] = pending
        for oid in pending:
            self._refs_of.setdefault(oid, []).append(ref)
        return True

    def finished(self, order_id: int) -> None:
        """``order_id`` is no longer open."""
        for ref in self._refs_of.pop(order_id, ()):
            pending = self._pending.get(ref)
            if pending is None:
                continue
            pending.discard(order_id)
            if not pending:
                del self._pending[ref]
                self._ended.append(ref)

    def collect(self, account: int) -> None:
        """Keep the ends of ``account``'s unfollowed orders until ``collected``."""
        count, ends = self._collecting.get(account, (0, {}))
        self._collecting[account] = (count + 1, ends)

    def unfollowed(self, done: OrderDone) -> None:
        """An order the core does not follow ended."""
        collecting = self._collecting.get(done.account)
        if collecting is not None:
            collecting[1][done.order_id] = done
            self.finished(done.order_id)

    def seen(self, account: int) -> Mapping[int, OrderDone]:
        """The ends kept for ``account`` so far (collecting goes on)."""
        return self._collecting.get(account, (0, {}))[1]

    def collected(self, account: int) -> dict[int, OrderDone]:
        """The ends kept for ``account`` since ``collect``, which stops (once every
        ``collect`` of it has its ``collected``)."""
        count, ends = self._collecting.pop(account, (1, {}))
        if count > 1:
            self._collecting[account] = (count - 1, ends)
        return dict(ends)

    def abandon(self, ref: int) -> None:
        """Nobody waits under ``ref`` any more (its request timed out)."""
        for oid in self._pending.pop(ref, ()):
            refs = self._refs_of.get(oid)
            if refs is not None:
                refs.remove(ref)
                if not refs:
                    del self._refs_of[oid]

    def take(self) -> list[int]:
        """The refs whose orders have all ended since the last call."""
        ended, self._ended = self._ended, []
        return ended

    def __len__(self) -> int:
        """How many refs are waiting."""
        return len(self._pending)
