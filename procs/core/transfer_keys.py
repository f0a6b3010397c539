"""The transfers' idempotency keys, remembered for a window of the exchange's time.

A deposit or withdrawal carries a key (``Transfer.key``): a second transfer with a key in
use is ``DUPLICATE_TRANSFER``, and one that repeats the very transfer (a retry after a lost
answer, a command read again after a crash) is answered as the first was, applied once.
Kept for ever, the keys grew the router's memory and every snapshot by ~250 bytes a
transfer for the life of the venue (review 63), so each is remembered for
``WINDOW_NS`` (7 days) after its transfer: a retry within it is applied once, a key older
than that is free again.

Deterministic: a key's time is that of its transfer (``ts_ns``, which the journal holds)
or, should the router's clock have stepped back, the latest of the accepted transfers
before it: the exchange's time never goes back here, so a clock that ran a week ahead and
was set right does not free every new key at once (review 64). A key's age is measured
against that time or the asking transfer's, whichever is later, where the key is looked up;
a key past the window then can never be in use again, so when it is dropped (``_expire``,
as an accepted transfer is added) decides nothing; a refused transfer, which the journal
does not hold, changes nothing. Part of the rules (``procs/common/rules_version.py``: 2).
"""

from __future__ import annotations

import collections
from typing import Final, NamedTuple

#: How long after its transfer a key stays in use (ns of the exchange's clock).
WINDOW_NS: Final = 7 * 86_400 * 10**9


class Used(NamedTuple):
    """The transfer a key was used for."""

    account: int
    asset: int
    amount: int
    seq: int
    ts_ns: int  # UNTIMED: from a snapshot of a build that did not record it


#: The time of a key an older build's snapshot holds without one: in use until the first
#: transfer this build accepts, then timed at its time (a retry across the upgrade is applied
#: once; the same on every replay from that snapshot). Review 67: they were free at once.
UNTIMED: Final = -1


class TransferKeys:
    def __init__(self) -> None:
        self._used: dict[int, Used] = {}
        self._order: collections.deque[tuple[int, int]] = collections.deque()  # (ts_ns, key)
        self._latest = 0  # the latest time kept: that of the newest key
        self._untimed: list[int] = []  # keys of an older snapshot, by seq (``UNTIMED``)

    def __len__(self) -> int:
        return len(self._used)

    def get(self, key: int, now_ns: int) -> Used | None:
        """The transfer ``key`` was used for, if within the window (before ``now_ns``, the
        asking transfer's time, or the latest accepted one's, whichever is later)."""
        used = self._used.get(key)
        if used is None:
            return None
        if used.ts_ns != UNTIMED and max(now_ns, self._latest) - used.ts_ns >= WINDOW_NS:
            return None
        return used

    def add(self, key: int, used: Used) -> None:
        """``key`` used by an accepted transfer (at ``used.ts_ns``; kept at the latest time
        before it where that is later: the times kept never go back)."""
        if used.ts_ns < self._latest:
            used = used._replace(ts_ns=self._latest)
        self._latest = used.ts_ns
        if self._untimed:  # an older snapshot's keys: timed at the first transfer after it
            for old in self._untimed:
                if (kept := self._used.get(old)) is not None and kept.ts_ns == UNTIMED:
                    self._used[old] = kept._replace(ts_ns=used.ts_ns)
                    self._order.append((used.ts_ns, old))
            self._untimed = []
        self._used[key] = used
        self._order.append((used.ts_ns, key))
        self._expire()

    def _expire(self) -> None:
        """Drop the keys past the window, oldest first (the times are in order)."""
        order, used, latest = self._order, self._used, self._latest
        while order and latest - order[0][0] >= WINDOW_NS:
            ts, key = order.popleft()
            current = used.get(key)
            if current is not None and current.ts_ns == ts:  # not used again since
                del used[key]

    def state(
        self,
    ) -> tuple[list[int | tuple[int, int, int, int, int]], list[tuple[int, int]]]:
        """``(key, account, asset, amount, seq)`` and ``(key, ts_ns)`` of each key, by key
        (an untimed key has no time: restored untimed again)."""
        keys = sorted(self._used.items())
        used: list[int | tuple[int, int, int, int, int]] = [(k, *u[:4]) for k, u in keys]
        return used, [(k, u.ts_ns) for k, u in keys if u.ts_ns != UNTIMED]

    @classmethod
    def restore(
        cls, keys: list[int | tuple[int, int, int, int, int]], times: list[tuple[int, int]]
    ) -> TransferKeys:
        """From ``state``'s two lists; an older snapshot's keys (without a time; a bare key:
        its transfer unknown too) are ``UNTIMED``."""
        at = dict(times)
        made = {}
        for entry in keys:
            key, account, asset, amount, seq = (
                (entry, 0, 0, 0, 0) if isinstance(entry, int) else entry
            )
            made[key] = Used(account, asset, amount, seq, at.get(key, UNTIMED))
        restored = cls()
        for key, used in sorted(made.items(), key=lambda kv: (kv[1].ts_ns, kv[1].seq)):
            restored._used[key] = used
            if used.ts_ns == UNTIMED:
                restored._untimed.append(key)
            else:
                restored._order.append((used.ts_ns, key))
                restored._latest = max(restored._latest, used.ts_ns)
        return restored
