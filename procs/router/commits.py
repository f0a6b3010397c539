"""When the router commits a gateway's command ring: once that ring's commands are answered,
so a restart reads again exactly those whose answers were only in its memory. A part of
``RouterShell`` (``main.py``), whose state it names below."""

from __future__ import annotations

import collections
import logging

from procs.common.journal_writer import JournalWriter
from procs.common.records import Record, WatchBalances
from procs.router.held import HeldBatches
from shm.consumer import Consumer

log = logging.getLogger("ringex.router")


class RingCommits:
    inputs: list[tuple[int, Consumer[Record]]]
    pending_replies: dict[int, collections.deque[Record]]
    journal: JournalWriter
    _owed: dict[int, collections.deque[tuple[int, Record]]]
    _held: HeldBatches
    _tail_window: int
    _waiting_since: dict[int, int]
    _routed_upto: dict[int, int]
    _commit_floor: dict[int, int]
    _watch_requests: list[tuple[int, WatchBalances]]

    def _route_durable(self) -> None:
        raise NotImplementedError  # RouterShell's

    def _commit_answered(self) -> None:
        """Commit each gateway's ring whose replies are all out: one whose replies still
        wait for room stays uncommitted, so a restart reads those commands again instead of
        leaving them unanswered (the replies are in this process's memory only). A ring
        with a batch held (``interval``, ``pipelined``) is committed up to its newest routed
        batch: under steady input a batch is nearly always held, and a ring left wholly
        uncommitted filled and stopped its gateway (review 41)."""
        at = self.journal.next_seq
        held = self._held.gateways()
        half = self._tail_window // 2
        if any(at - self._waiting_since.get(g, at) > half for g in held):
            # a gateway waits on a held batch past half the restart's look-back: make the
            # batches durable and route them now rather than commit with their answers
            # unsent (a crash then would answer them never: review 41)
            self.journal.sync()
            self._route_durable()
            held = self._held.gateways()
        # a watch waiting for a durable state is answered from memory only: its ring stays
        # uncommitted until then, or a crash would leave it unanswered (review 121)
        watching = {gateway for gateway, _ in self._watch_requests}
        for gateway, consumer in self.inputs:
            answered = (
                not self.pending_replies[gateway]
                and gateway not in self._owed
                and gateway not in watching
            )
            if answered and gateway not in held:
                self._committed(gateway, consumer, None, at)
                continue
            routed = self._routed_upto.get(gateway)
            if answered and routed is not None:  # the routed batches', not the held one's
                self._committed(gateway, consumer, routed, at)
                continue
            since = self._waiting_since.setdefault(gateway, at)
            if at - since > half:
                # Any longer and a restart could no longer tell its journaled commands
                # (``JournaledTail`` looks that far back): commit; a crash before its
                # replies go out now loses them (they are in this process's memory only).
                log.warning("gateway %d has not read its replies for %d commands: its ring "
                            "committed regardless", gateway, at - since)  # fmt: skip
                self._committed(gateway, consumer, None, at)
                self._waiting_since[gateway] = at

    def _committed(
        self, gateway: int, consumer: Consumer[Record], upto: int | None, at: int
    ) -> None:
        """Commit ``gateway``'s ring, wholly (``upto`` None) or up to a routed batch's end;
        the wait for its answers then starts anew."""
        self._routed_upto.pop(gateway, None)
        floor = self._commit_floor.get(gateway, 0)
        if upto is not None and upto <= floor:  # a forced commit went past it already
            return
        consumer.commit(upto)
        self._commit_floor[gateway] = consumer.sequence if upto is None else upto
        if upto is None:
            self._waiting_since.pop(gateway, None)
        else:  # what stays uncommitted is a held batch's, journaled since
            self._waiting_since[gateway] = at
