"""The transfers' idempotency keys, remembered for a window of the exchange's time.

A deposit or withdrawal carries a key (``Transfer.key``): a second transfer with a key in
use is ``DUPLICATE_TRANSFER``, and one that repeats the very transfer (a retry after a lost
answer, a command read again after a crash) is answered as the first was, applied once.
Kept for ever, the keys grew the router's memory and every snapshot by ~250 bytes a
transfer for the life of the venue (review 63), so each is remembered for
``WINDOW_NS`` (7 days) after its transfer: a retry within it is applied once, a key older
than that is free again.

Deterministic: a key's age is measured against the latest time of the accepted transfers
(``ts_ns``, which the journal holds; never back, should the clock step back) or the asking
transfer's, whichever is later, where the key is looked up. A key past the window then can
never be in use again, so when it is dropped (``_expire``, as an accepted transfer is
added) decides nothing; a refused transfer, which the journal does not hold, changes
nothing. Part of the rules (``procs/common/rules_version.py``: 2).
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
    ts_ns: int  # 0: from a snapshot of a build that did not record it (free at once)


class TransferKeys:
    def __init__(self) -> None:
        self._used: dict[int, Used] = {}
        self._order: collections.deque[tuple[int, int]] = collections.deque()  # (ts_ns, key)
        self._latest = 0  # the latest time of an accepted transfer: max(ts_ns) of ``_used``

    def __len__(self) -> int:
        return len(self._used)

    def get(self, key: int, now_ns: int) -> Used | None:
        """The transfer ``key`` was used for, if within the window (before ``now_ns``, the
        asking transfer's time, or the latest accepted one's, whichever is later)."""
        used = self._used.get(key)
        if used is None or max(now_ns, self._latest) - used.ts_ns >= WINDOW_NS:
            return None
        return used

    def add(self, key: int, used: Used) -> None:
        """``key`` used by an accepted transfer (at ``used.ts_ns``)."""
        self._latest = max(self._latest, used.ts_ns)
        self._used[key] = used
        self._order.append((used.ts_ns, key))
        self._expire()

    def _expire(self) -> None:
        """Drop the keys past the window, oldest first (to the first one that is not: after
        a step back of the clock a few may wait behind it, harmless: ``get`` ignores them)."""
        order, used, latest = self._order, self._used, self._latest
        while order and latest - order[0][0] >= WINDOW_NS:
            ts, key = order.popleft()
            if used[key].ts_ns == ts:  # not used again since (a key free again was reused)
                del used[key]

    def state(
        self,
    ) -> tuple[list[int | tuple[int, int, int, int, int]], list[tuple[int, int]]]:
        """``(key, account, asset, amount, seq)`` and ``(key, ts_ns)`` of each key, by key."""
        keys = sorted(self._used.items())
        used: list[int | tuple[int, int, int, int, int]] = [(k, *u[:4]) for k, u in keys]
        return used, [(k, u.ts_ns) for k, u in keys]

    @classmethod
    def restore(
        cls, keys: list[int | tuple[int, int, int, int, int]], times: list[tuple[int, int]]
    ) -> TransferKeys:
        """From ``state``'s two lists; an older snapshot's keys (a bare key: its transfer
        unknown; no time) are free again."""
        at = dict(times)
        restored = cls()
        entries = [(e, 0, 0, 0, 0) if isinstance(e, int) else e for e in keys]
        for key, account, asset, amount, seq in sorted(entries, key=lambda e: e[4]):
            restored.add(key, Used(account, asset, amount, seq, at.get(key, 0)))
        return restored
