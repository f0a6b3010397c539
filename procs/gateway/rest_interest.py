"""Which accounts the REST API follows: one that used it (a request, a stream) is of
interest for ``interest_s``. Its orders are followed from then on, those its user placed over
FIX on this gateway before included, and its balances watched (the watch renewed every third
of its lease); once its interest ends the core forgets what it followed of it, but for the
orders placed through the API, kept until they finish and then as the order log keeps them.

A mixin of ``RestOrders`` (``rest_orders.py``), which owns the state it names.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from procs.gateway.completing_rows import CompletingRowOrders
from procs.gateway.grouped import GroupedDict
from procs.gateway.order_state import Order
from procs.gateway.rest_balances import LEASE_MS
from procs.gateway.rest_catch_up import UnfollowedEvents
from procs.gateway.rest_order_state import LiveOrder, from_fix


class RestInterest:
    interest_s: float
    interest: dict[int, float]  # account -> monotonic time its interest ends
    sessions: dict[int, int]  # account -> a session id it uses
    live: GroupedDict[int, LiveOrder, int]
    client_ids: dict[tuple[int, str], LiveOrder]
    done: OrderedDict[int, LiveOrder]
    balances: dict[int, dict[int, tuple[int, int]]]
    updated_ms: dict[int, int]
    rows: CompletingRowOrders
    unfollowed: UnfollowedEvents
    streaming: set[int]
    fix_orders: Callable[[int], Iterable[Order]]
    _watched: dict[int, float]
    _need: dict[int, int]
    _have: dict[int, int]
    _unstreamed: dict[int, set[int]]
    _renewing: dict[int, int]
    _unconfirmed: set[int]
    _behind: dict[int, int]

    if TYPE_CHECKING:  # the other mixins' (rest_balances.py, rest_catch_up.py)

        def _watch(self, account: int, lease_ms: int) -> int: ...

        def _follow_recent(self, account: int) -> None: ...

    def touch(self, account: int, session: int, now_s: float) -> None:
        """``account`` used the API: follow its orders and balances for ``interest_s``."""
        begins = account not in self.interest
        self.interest[account] = now_s + self.interest_s
        self.sessions[account] = session
        if begins:  # of interest from now on (``_accepted`` follows its orders)
            self._follow_fix_orders(account, session)
            self._follow_recent(account)
        if account not in self._watched:
            self._watch(account, LEASE_MS)
            self._watched[account] = now_s

    def _follow_fix_orders(self, account: int, session: int) -> None:
        for o in self.fix_orders(session):
            if o.order_id and o.leaves and o.status in (b"0", b"1") and o.order_id not in self.live:
                self.live[o.order_id] = from_fix(o, account)

    def tick(self, now_s: float) -> None:
        """Once a second: renew balance watches, forget accounts no longer of interest."""
        self._renew_behind(now_s)
        for account, until in list(self.interest.items()):
            if until < now_s and account not in self.streaming:  # a stream is a use too
                self._forget_account(account)
            elif now_s - self._watched.get(account, 0.0) >= LEASE_MS / 3000:
                self._watch(account, LEASE_MS)
                self._watched[account] = now_s

    def _renew_behind(self, now_s: float) -> None:
        """A streaming account whose balances still lack an event read here a tick ago (a
        router restarted since, its watches gone, so its pushes stopped) is asked for a
        snapshot now, which renews its watch and tells the stream what moved: not at the
        lease's renewal, up to 10 s on (review 158). A balance request asks the same
        (``RestApi.balances``)."""
        behind: dict[int, int] = {}
        for account in self.streaming:
            have, need = self._have.get(account, 0), self._need.get(account, 0)
            if have >= need:
                continue
            lacked = self._behind.get(account, have)
            # a second since its last watch at least; one renewal in flight, asked again
            # only past a third of the lease (a router that does not answer: review 160)
            wait_s = LEASE_MS / 3000 if account in self._renewing else 1.0
            if have < lacked and now_s - self._watched.get(account, 0.0) >= wait_s:
                self._renewing[account] = self._watch(account, LEASE_MS)
                self._watched[account] = now_s
            behind[account] = need
        self._behind = behind

    def _forget_account(self, account: int) -> None:
        del self.interest[account]
        if self._watched.pop(account, None) is not None:
            self._watch(account, 0)
        self.sessions.pop(account, None)  # after the watch's end, which names it (review 63)
        self.balances.pop(account, None)
        self.updated_ms.pop(account, None)
        self.rows.forget(account)
        self.unfollowed.forget(account)
        self._need.pop(account, None)
        self._have.pop(account, None)
        self._unstreamed.pop(account, None)
        self._unconfirmed.discard(account)
        # Orders placed through this API stay until they finish (their events reach this
        # core whoever is interested: a query or cancel by clientOrderId must find them),
        # and finished, until ``keep_done`` pushes them out, as the order log keeps them
        # (the database has a clientOrderId once filed); the account's others, seen on the
        # rings, go.
        placed = self.client_ids
        for o in self.live.of(account):
            if placed.get((account, o.client_order_id)) is not o:
                del self.live[o.order_id]
        for oid in [oid for oid, o in self.done.items() if o.account == account and not o.placed]:
            del self.done[oid]
