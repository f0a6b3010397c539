"""Batches the router decided and journaled but may not route yet: under ``fsync =
"interval"`` a batch is written at once and fsynced with the next interval's group commit
(under ``"pipelined"``, with the fsync the journal's thread runs now or next), and until
then nothing of it leaves the router (no command to a matcher, so no execution
report; no reply, no balance push). Issue 4: no report leaves before its command is durable
under the configured policy.

The router goes on taking and journaling commands meanwhile, so one fsync covers every batch
of its interval (or of the fsync before it); each later batch waits behind the held ones
(replies keep their order), and a gateway with a batch held is not committed (a crash
re-reads those commands, as after one between the journal write and the publish).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from procs.common.records import WatchBalances
from procs.core.sequencer import Decision


@dataclass(frozen=True, slots=True)
class Batch:
    last_seq: int  # the newest seq journaled with it (0: it accepted none)
    decisions: Sequence[Decision]
    origins: Sequence[int]  # the gateway of each decision
    watch_requests: Sequence[tuple[int, WatchBalances]]
    #: (gateway, its ring's read position after this batch's commands): what a commit of
    #: that ring may release once the batch is routed and answered, a later one held
    positions: Sequence[tuple[int, int]] = ()


class HeldBatches:
    def __init__(self) -> None:
        self._batches: collections.deque[Batch] = collections.deque()

    def __bool__(self) -> bool:
        return bool(self._batches)

    def hold(self, batch: Batch) -> None:
        self._batches.append(batch)

    def durable(self, durable_seq: int) -> Iterator[Batch]:
        """The held batches, oldest first, whose commands are durable up to ``durable_seq``."""
        batches = self._batches
        while batches and batches[0].last_seq <= durable_seq:
            yield batches.popleft()

    def gateways(self) -> set[int]:
        """The gateways with a command in a held batch: their rings stay uncommitted."""
        held = {g for batch in self._batches for g in batch.origins}
        return held | {g for batch in self._batches for g, _ in batch.watch_requests}
