"""Balance watches: a gateway's live view of an account's balances. Sans-I/O, no clock.

A gateway sends ``WatchBalances``; ``execute`` (re)registers the watch for ``lease_ms`` and
returns a snapshot of the account, or drops the watch when ``lease_ms`` is 0. The router then
reports what may have changed a balance (``touch_commands`` for the commands it accepted,
``touch_events`` for the matchers' events it applied) and once per step ``take`` turns the
touched (account, asset) pairs into one ``Balance`` per watching gateway, with the values of
that moment: a hundred fills of one account in a step cost its watcher one record per asset.

A push is labelled as a snapshot is: with the router's applied label for its account (every
event of every seq through it that can touch the account is in the values: review 220), not
with the seq that touched it. An order's reservation is
pushed when the order is routed, before its matcher has made its fills, and a fill settled
from one matcher may come while an older command waits at another: a push labelled with its
touch claimed those events in (review 42), and a gateway's read-your-writes check answered
``GET /account`` without the fill it had just reported. A push labelled below its touch is
made again once the label has reached that seq (``_behind``), so the label a gateway waits
for comes even when nothing touches the account again: twice per touch at most, however
many accounts wait (a re-push at every move of the label grew with their square: review 42).

Watches are not state. They are never sequenced or journaled and a restarted router has none:
a gateway renews its leases, and each renewal brings a fresh snapshot, so nothing is lost.
Expired leases are dropped lazily, when ``take`` passes the earliest expiry, so no timer is
needed. A touch is "may have changed" (a reject of a cancel touches too): a push repeats the
current values, so a spurious one is harmless, a missing one is not.

Cost. The router checks ``bool(watches)`` once per batch of commands or events and calls in
only when something is watched; then a touch of an unwatched account is one dict lookup.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Final

from procs.common.records import (
    NOT_OPEN,
    Balance,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    Replaced,
    ReplaceOrder,
    Trade,
    Transfer,
    WatchBalances,
)
from procs.core.accounts import Accounts

_NS_PER_MS: Final = 1_000_000
_NEVER: Final = 1 << 63  # an expiry later than any clock reading

#: Events that move an order's hold: its account's base and quote may change.
_ORDER_EVENTS: Final = (OrderDone, Rejected, Replaced)
#: Commands that reserve when accepted: their account's base and quote may change.
_ORDER_COMMANDS: Final = (NewOrder, ReplaceOrder)


class Watches:
    """Which gateways watch which accounts, and what changed since the last ``take``. Called
    by the router process only, from its loop; ``accounts`` is the router's live ``Accounts``
    (read, never written)."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self._assets = tuple(sorted(accounts.assets))
        self._pair = {s: (m.base, m.quote) for s, m in accounts.markets.items()}
        self._leases: dict[int, dict[int, int]] = {}  # account -> gateway -> expiry (ns)
        #: (account, asset) of watched accounts -> seq of the newest command or event that
        #: touched it since the last ``take``: pushed again until a label reaches it
        self._touched: dict[tuple[int, int], int] = {}
        #: (account, asset) pushed with a label below the seq that touched it -> that seq:
        #: pushed again once a label reaches it (``take``); and the same as a heap by seq
        #: (an entry whose seq is not the dict's any more is stale, skipped)
        self._behind: dict[tuple[int, int], int] = {}
        self._due: list[tuple[int, tuple[int, int]]] = []
        #: pushes due by the top label and not by their account's own (a matcher holding the
        #: account back): looked at again only when ``take``'s ``holds`` changes (review 224)
        self._parked: list[tuple[int, tuple[int, int]]] = []
        self._parked_under: object = None
        self._earliest = _NEVER  # no lease expires before this

    def __bool__(self) -> bool:
        """Whether any account is watched (an expired lease counts until ``take`` drops it)."""
        return bool(self._leases)

    def watchers(self, account: int) -> tuple[int, ...]:
        """The gateways watching ``account``, ascending (expired leases not yet dropped too)."""
        return tuple(sorted(self._leases.get(account, ())))

    # -- commands from the gateways -----------------------------------------------------------

    def execute(self, gateway: int, watch: WatchBalances, now_ns: int, seq: int) -> list[Balance]:
        """(Re)register or drop ``gateway``'s watch of ``watch.account``. Returns the snapshot
        to send that gateway (see ``snapshot``), or nothing when ``lease_ms`` is 0. ``gateway``
        is the ring the watch came in on, which is where its pushes go."""
        if watch.lease_ms == 0:
            self.unregister(gateway, watch.account)
            return []
        self.register(gateway, watch.account, now_ns + watch.lease_ms * _NS_PER_MS)
        return self.snapshot(gateway, watch, now_ns, seq)

    def register(self, gateway: int, account: int, expires_ns: int) -> None:
        """Push ``account``'s changes to ``gateway`` until ``expires_ns`` (a renewal moves it)."""
        self._leases.setdefault(account, {})[gateway] = expires_ns
        self._earliest = min(self._earliest, expires_ns)

    def unregister(self, gateway: int, account: int) -> None:
        """Stop pushing ``account`` to ``gateway``; a watch that does not exist is no error."""
        gateways = self._leases.get(account)
        if gateways is not None:
            gateways.pop(gateway, None)
            if not gateways:
                del self._leases[account]

    def snapshot(self, gateway: int, watch: WatchBalances, now_ns: int, seq: int) -> list[Balance]:
        """One ``Balance`` per asset the account holds any of, by asset id, the last one with
        ``last`` 1; a single all-zero record with asset 0 when it holds nothing (``last``
        ``NOT_OPEN`` when it was never opened)."""
        account, balance = watch.account, self.accounts.balance
        head = (seq, now_ns, gateway, watch.session, watch.client_ref, account)
        records = []
        for asset in self._assets:
            free, reserved = balance(account, asset)
            if free or reserved:
                records.append(Balance(*head, asset, free, reserved, 0))
        if not records:
            return [Balance(*head, 0, 0, 0, 1 if self.accounts.known(account) else NOT_OPEN)]
        records[-1] = Balance(*head, records[-1].asset, records[-1].free, records[-1].reserved, 1)
        return records

    # -- what may have changed ----------------------------------------------------------------

    def touch(self, account: int, asset: int, seq: int = 0) -> None:
        """``account``'s balance of ``asset`` may have changed (by command or event ``seq``)."""
        if account in self._leases:
            slot = (account, asset)
            self._touched[slot] = max(seq, self._touched.get(slot, 0))

    def touch_commands(self, commands: Iterable[Record]) -> None:
        """Accepted (sequenced) commands: a new order or replace reserves, a transfer moves
        its asset; others change no balance until their events come back."""
        touch = self.touch
        for command in commands:
            if isinstance(command, _ORDER_COMMANDS):
                self._touch_pair(command.account, command.symbol, command.seq)
            elif type(command) is Transfer:
                touch(command.account, command.asset, command.seq)

    def touch_events(self, events: Iterable[Record]) -> None:
        """Matcher events as the router applies them: a trade moves both sides' base and quote
        and pays the fee account; a done order, a reject or a replace moves a hold."""
        touch_pair = self._touch_pair
        # the accounts' own, as of now: a restart that moves risk.fee_account puts the new
        # one in force (journaled) after these watches were made
        fee_account = self.accounts.fee_account
        for event in events:
            if type(event) is Trade:
                touch_pair(event.maker_account, event.symbol, event.seq)
                touch_pair(event.taker_account, event.symbol, event.seq)
                touch_pair(fee_account, event.symbol, event.seq)
            elif isinstance(event, _ORDER_EVENTS):
                touch_pair(event.account, event.symbol, event.seq)

    def _touch_pair(self, account: int, symbol: int, seq: int) -> None:
        if account in self._leases:
            pair = self._pair.get(symbol)
            if pair is not None:
                self.touch(account, pair[0], seq)
                self.touch(account, pair[1], seq)

    # -- pushes -------------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Whether a ``take`` has something to push, now or once the label moves on."""
        return bool(self._touched or self._behind)

    def take(
        self,
        now_ns: int,
        label: int,
        label_of: Callable[[int], int] | None = None,
        holds: object = None,
    ) -> list[tuple[int, Balance]]:
        """(gateway, ``Balance``) for every touched (account, asset) and every gateway whose
        lease of the account is live at ``now_ns``, with the balances of now, ordered by
        account, asset, gateway; at most one per (gateway, account, asset) a ``take``, each
        labelled with its account's label (``label`` for all without ``label_of``: the
        router's applied label, every event of every seq through it in the values). What
        was pushed labelled below the seq that touched it is pushed again, once, at the
        first ``take`` whose label reaches that seq. Leases expired at
        ``now_ns`` are dropped first. ``label_of``: each account's own label, at most
        ``label`` (what can still change its balances is outstanding at the matchers its
        orders are on alone: review 220), where given; ``holds``: what those labels below
        ``label`` depend on (the router: the matchers' oldest outstanding commands), so that
        a push waiting for its account's own label is looked at again only once it changes,
        not at every take (review 224)."""
        if now_ns >= self._earliest:
            self._expire(now_ns)
        touched, behind, due, parked = self._touched, self._behind, self._due, self._parked
        own = label_of if label_of is not None else (lambda _account: label)
        if parked and holds != self._parked_under:
            for entry in parked:
                heapq.heappush(due, entry)
            parked.clear()
        self._parked_under = holds
        while due and due[0][0] <= label:
            seq, slot = heapq.heappop(due)
            if behind.get(slot) == seq:
                if own(slot[0]) < seq:
                    parked.append((seq, slot))
                    continue
                del behind[slot]
                if touched.get(slot, 0) < seq:
                    touched[slot] = seq
        if not touched:
            return []
        balance, leases = self.accounts.balance, self._leases
        pushes = []
        for (account, asset), seq in sorted(touched.items()):
            gateways = leases.get(account)
            if gateways:
                free, reserved = balance(account, asset)
                mine = own(account)
                for gateway in sorted(gateways):
                    push = Balance(mine, now_ns, gateway, 0, 0, account, asset, free, reserved, 0)
                    pushes.append((gateway, push))
                if seq > mine and behind.get((account, asset), 0) < seq:
                    behind[account, asset] = seq
                    if seq <= label:  # held back by its account's own label alone
                        parked.append((seq, (account, asset)))
                    else:
                        heapq.heappush(due, (seq, (account, asset)))
        touched.clear()
        return pushes

    def _expire(self, now_ns: int) -> None:
        """Drop every lease expired at ``now_ns`` and find the next earliest expiry: one pass
        over all leases, made only when the earliest one may have expired."""
        earliest = _NEVER
        for account in list(self._leases):
            gateways = self._leases[account]
            for gateway, expires in list(gateways.items()):
                if expires <= now_ns:
                    del gateways[gateway]
                else:
                    earliest = min(earliest, expires)
            if not gateways:
                del self._leases[account]
        self._earliest = earliest
        if self._behind:  # an account watched no more is pushed nothing (its heap entries:
            leases = self._leases  # stale, skipped)
            self._behind = {slot: seq for slot, seq in self._behind.items() if slot[0] in leases}
        if not self._behind:
            self._due.clear()
            self._parked.clear()
