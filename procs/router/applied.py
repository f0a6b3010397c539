"""What the router has applied of the matchers' events: settling them, and the seq a balance
snapshot may say every event through is in (its label). A part of ``RouterShell``
(``main.py``), whose state it names below."""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence

from procs.common.records import Heartbeat, Record
from procs.common.topology import RECOVERED_SOURCE, matcher_output
from procs.core.sequencer import Sequencer
from procs.core.watches import Watches
from procs.router.time_use import TimeUse
from shm.consumer import Consumer

#: Events settled per matcher per read (a balance is labelled with the newest seq whole).
SETTLE_BATCH = 4096


class AppliedEvents:
    from_matchers: list[Consumer[Record]]
    sequencer: Sequencer
    watches: Watches
    applied_seq: int
    _routed_seq: int
    _outstanding: dict[str, collections.deque[int]]
    time_use: TimeUse

    def settle(self) -> int:
        """Apply what the matchers published, up to a whole ring of each one's events (in
        reads of ``SETTLE_BATCH``). A step takes up to ``router_batch`` commands, and each
        makes several events (3.5 an order in bench-pipeline's mix); a step that settled
        one read fell behind under load until the matcher stopped on its full output ring,
        the router waiting on it in turn (a 16-core host: the router's lag sat near the
        ring's capacity and the pipeline fell from 70k orders/s to 40k with no process busy)."""
        settle = self.sequencer.settle
        watches = self.watches
        count = marks = 0
        for consumer in self.from_matchers:
            # a full read may end inside a command's events; on a ring smaller than a read,
            # one ring's worth is full (a matcher's bigger publish goes in ring-sized
            # chunks, each into an empty ring: review 41)
            full = min(SETTLE_BATCH, consumer.ring.capacity)
            outstanding = self._outstanding[consumer.ring.name]
            for _ in range(max(1, consumer.ring.capacity // full)):
                events = consumer.read(full)
                settle(events)
                if events:
                    whole = whole_seq(events, full)
                    self.applied_seq = max(self.applied_seq, whole)
                    last = events[-1]  # a mark: executed and published through its counter
                    if isinstance(last, Heartbeat) and last.source == RECOVERED_SOURCE:
                        whole = max(whole, last.counter)
                    while outstanding and outstanding[0] <= whole:
                        outstanding.popleft()
                    if watches:  # once per batch: nothing per event when none is watched
                        watches.touch_events(events)
                count += len(events)
                marks += [*map(type, events)].count(Heartbeat)  # ~10 ns an event
                if len(events) < full:
                    break
        self.time_use.settled(count - marks)  # events, not the matchers' marks (review 296)
        return count

    def _labels(self) -> tuple[int, Callable[[int], int], object]:
        """The most any balance may be labelled now (the newest whole seq settled, or
        routed), each account's label: below a command outstanding at a matcher that holds
        an order of the account, or at any matcher for the fee account (every trade pays
        it), and what those labels depend on (the matchers' oldest outstanding commands:
        ``Watches.take``'s ``holds``). What is outstanding elsewhere cannot change the
        account's balances: one matcher held or restarting no longer holds back every
        account's (review 220)."""
        top, heads = self._heads()
        if not heads:
            return top, lambda _account: top, None
        lowest = min(heads.values()) - 1
        accounts = self.sequencer.accounts
        fee_account, symbols_of, ring_of = accounts.fee_account, accounts.symbols_of, self._ring_of

        def label(account: int) -> int:
            if account == fee_account:
                return lowest
            mine = top
            for symbol in symbols_of(account):
                head = heads.get(ring_of[symbol])
                if head is not None and head <= mine:
                    mine = head - 1
            return mine

        return top, label, tuple(sorted(heads.items()))

    @functools.cached_property
    def _ring_of(self) -> dict[int, str]:
        """Symbol id -> the output ring of the matcher that owns it."""
        cfg = self.sequencer.cfg
        return {cfg.symbol(s).id: matcher_output(m.name) for m in cfg.matchers for s in m.symbols}

    def _heads(self) -> tuple[int, dict[str, int]]:
        """The newest whole seq settled, or routed (a command no matcher takes, a transfer,
        is applied as it is decided), and by matcher output ring the oldest command still
        outstanding at that matcher, where one is at or below it."""
        top = max(self.applied_seq, self._routed_seq)
        return top, {ring: q[0] for ring, q in self._outstanding.items() if q and q[0] <= top}

    def _applied_label(self) -> int:
        """The label every balance may carry whatever its account (the fee account's in
        ``_labels``): below any command still outstanding at a matcher (review 41: the
        newest whole on one ring is not enough, an older command may wait at another)."""
        top, heads = self._heads()
        return min(heads.values(), default=top + 1) - 1


def whole_seq(events: Sequence[Record], full: int) -> int:
    """The newest seq whose events ``events`` (a read of at most ``full``) hold all of: its
    last event's, less one where a full read may end inside that command's events. A read
    may end in a matcher's mark (a ``Heartbeat``, no seq: one follows every batch once the
    matcher idles), which closes the events before it."""
    for k in range(len(events) - 1, -1, -1):
        seq = getattr(events[k], "seq", None)
        if seq is not None:
            return int(seq) - 1 if k == full - 1 else int(seq)
    return 0
