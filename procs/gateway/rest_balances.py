"""The REST API's balances: the router's snapshot of an account, then its pushes, kept
while the account is of interest, and the answers of balance requests (read your writes:
an answer includes what the requests answered before it moved).

A mixin of ``RestOrders`` (``rest_orders.py``). The router pushes every balance that may
have moved; only what did becomes a private-stream event. A zero is kept as the router's
snapshot keeps it, by its absence. A request whose push does not come asks for a snapshot
anew (``renew_watch``, one in flight per account): a restarted router has no watches until
they are renewed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from config.schema import AssetConfig
from procs.common.records import Balance, Record, WatchBalances
from procs.gateway.rest_order_state import PendingRequest, balance_json

LEASE_MS = 30_000  # a balance watch's lease; renewed every third of it
_ZERO = (0, 0)  # free, reserved of an asset the account does not hold


def newest_balances(
    events: list[tuple[int, str, dict[str, Any]]],
) -> list[tuple[int, str, dict[str, Any]]]:
    """Of a pass's balance events, one per account and asset: its newest value (review 228:
    a pass holding an order's hold and its fill streamed the hold after the fill's TRADE,
    money locked by no order until the settled value came)."""
    newest: dict[tuple[int, str], tuple[int, str, dict[str, Any]]] = {}
    for event in events:
        newest.pop(key := (event[0], event[2]["asset"]), None)  # where it moved last
        newest[key] = event
    return list(newest.values())


def with_zeros(
    shown: list[dict[str, str]], assets: Mapping[int, AssetConfig]
) -> list[dict[str, str]]:
    """``shown`` (an account's balances, an asset at zero left out) with every configured
    asset, those at zero too, in the assets' order: ``omitZeroBalances=false``."""
    by_name = {b["asset"]: b for b in shown}
    every = [
        by_name.pop(a.name, {}) or balance_json(assets, i, {}) for i, a in sorted(assets.items())
    ]
    return every + list(by_name.values())  # (an asset no longer configured, if any)


class RestBalances:
    gateway: int
    assets: dict[int, AssetConfig]
    outgoing: list[Record]
    next_ref: Callable[[], int]
    interest: dict[int, float]
    sessions: dict[int, int]
    requests: dict[int, PendingRequest]
    streaming: set[int]
    balance_events: list[tuple[int, str, dict[str, Any]]]
    balances: dict[int, dict[int, tuple[int, int]]]
    updated_ms: dict[int, int]
    _snapshot: dict[int, dict[int, tuple[int, int]]]
    _watched: dict[int, float]
    _need: dict[int, int]
    _have: dict[int, int]
    _stale: dict[int, list[int]]
    _renewing: dict[int, int]
    _unconfirmed: set[int]
    _unstreamed: dict[int, set[int]]
    _answered: list[int]

    def _watch(self, account: int, lease_ms: int) -> int:
        ref = self.next_ref()
        session = self.sessions.get(account, 0)
        self.outgoing.append(
            WatchBalances(0, time.time_ns(), self.gateway, session, ref, account, lease_ms)
        )
        return ref

    def account_balances(self, account: int) -> dict[int, tuple[int, int]] | int:
        """The balances when the router's snapshot is here, else the ref to wait for."""
        known = self.balances.get(account)
        if known is not None and self.has_seen(account) and account not in self._unconfirmed:
            return known
        if known is None:
            return self._balance_request(account, self._watch(account, LEASE_MS))
        return self._waiting(account)  # a push that includes what this gateway saw comes

    def has_seen(self, account: int) -> bool:
        """Whether the balances held of ``account`` include every event of it read here."""
        return self._have.get(account, 0) >= self._need.get(account, 0)

    def router_started(self) -> None:
        """A router started (its mark, first on the reply ring), its watches gone: renew each
        now, and answer no balance held from before it until its snapshot comes (review 340:
        a deposit made after the restart was missing from ``GET account`` until the lease's
        renewal, up to 10 s on; a transfer is no event a request waits for)."""
        now = time.monotonic()
        for account in self._watched.keys() | self.balances.keys():
            self._renewing[account] = self._watch(account, LEASE_MS)
            self._watched[account] = now
        self._unconfirmed = set(self.balances)

    def renew_watch(self, account: int) -> int:
        """Ask the router for ``account``'s balances anew, for a balance request whose push
        never came (a router restarted since, and its watches with it: the snapshot renews
        the watch too); the ref to wait for. One renewal at a time per account: a request
        while one is in flight waits for its snapshot (or a push) with the others."""
        if self._renewing.get(account) in self.requests:
            return self._waiting(account)
        ref = self._renewing[account] = self._watch(account, LEASE_MS)
        self._watched[account] = time.monotonic()
        return self._balance_request(account, ref)

    def _waiting(self, account: int) -> int:
        """A balance request answered by the account's next push or renewal snapshot."""
        ref = self._balance_request(account, self.next_ref())
        self._stale.setdefault(account, []).append(ref)
        return ref

    def _stop_waiting(self, account: int, ref: int) -> None:
        """``ref`` waits for ``account``'s next push no more (its request was given up)."""
        waiting = self._stale.get(account)
        if waiting is not None and ref in waiting:
            waiting.remove(ref)
            if not waiting:
                del self._stale[account]

    def _balance_request(self, account: int, ref: int) -> int:
        self.requests[ref] = PendingRequest("balances", account)
        return ref

    def _answer_waiting(self, account: int, balances: dict[int, tuple[int, int]]) -> None:
        for ref in self._stale.pop(account, []):
            if (request := self.requests.get(ref)) is not None:
                request.outcome.balances = balances
                self._answered.append(ref)

    def _balance(self, balance: Balance) -> None:
        if balance.gateway != self.gateway:
            return
        if balance.client_ref:  # part of a snapshot
            self._snapshot_part(balance)
            return
        account = balance.account
        known = self.balances.get(account)
        if known is None:
            return  # a change before the snapshot: the snapshot will have it
        # The router pushes what may have moved: only what did is news. A zero is kept as
        # the router's snapshot keeps it, by its absence, so every view lists the same.
        value = (balance.free, balance.reserved)
        moved = known.get(balance.asset, _ZERO) != value
        if value == _ZERO:
            known.pop(balance.asset, None)
        else:
            known[balance.asset] = value
        if moved:
            self.updated_ms[account] = balance.ts_ns // 1_000_000
        self._have[account] = have = max(self._have.get(account, 0), balance.seq)
        if account not in self.streaming:
            self._unstreamed.pop(account, None)
        elif moved:
            self._unstreamed.setdefault(account, set()).add(balance.asset)
        if have >= self._need.get(account, 0):
            self._answer_waiting(account, known)
        self._stream_settled(account, known)

    def _snapshot_part(self, balance: Balance) -> None:
        """A record of a snapshot the router sent (``client_ref``, the watch's); the last
        makes it the account's balances."""
        account = balance.account
        partial = self._snapshot.setdefault(balance.client_ref, {})
        if balance.asset:
            partial[balance.asset] = (balance.free, balance.reserved)
        if not balance.last:
            return
        del self._snapshot[balance.client_ref]
        confirmed = False  # the first word of a router started since they were held
        if account in self.interest or balance.client_ref in self.requests:
            before = self.balances.get(account)
            self.balances[account] = partial
            confirmed = account in self._unconfirmed
            self._unconfirmed.discard(account)
            if before != partial:
                self.updated_ms[account] = balance.ts_ns // 1_000_000
            if before is not None and account in self.streaming:
                # a snapshot after a gap (a router restarted: its watches renewed) says
                # what moved meanwhile: the stream is told as of a change (an asset
                # missing is a zero: the router's snapshot lists none), with those still
                # waiting to be (review 293), once it includes what was read (below)
                waiting = self._unstreamed.setdefault(account, set())
                for asset in set(before) | set(partial):
                    if before.get(asset, _ZERO) != partial.get(asset, _ZERO):
                        waiting.add(asset)
        self._have[account] = max(self._have.get(account, 0), balance.seq)
        if account in self.interest or balance.client_ref in self.requests:
            self._stream_settled(account, partial)
        renewal = self._renewing.get(account) == balance.client_ref
        if renewal:
            del self._renewing[account]
        if balance.client_ref in self.requests:
            if self.has_seen(account):
                self.requests[balance.client_ref].outcome.balances = partial
                self._answered.append(balance.client_ref)
            else:  # labelled before an event read here: the push that holds it answers
                self._stale.setdefault(account, []).append(balance.client_ref)  # (review 42)
        if (renewal or confirmed) and self.has_seen(account):  # those waiting with it
            self._answer_waiting(account, partial)

    def _stream_settled(self, account: int, values: dict[int, tuple[int, int]]) -> None:
        """The assets whose change waits (``_unstreamed``) streamed, with ``values``, once
        these include every event read here of the account, as a balance request is answered
        (review 290: a taker's hold pushed before its fill but read after the fill's TRADE was
        streamed after it, money locked by no order)."""
        if account in self.streaming and self.has_seen(account):
            for asset in sorted(self._unstreamed.pop(account, ())):
                data = balance_json(self.assets, asset, values)
                self.balance_events.append((account, "balance", data))
