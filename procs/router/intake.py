"""How the router reads its gateways' rings: a batch from them round robin (an operator's
command on a trading gateway's ring refused there, review 343), whether to fsync it on the
journal's thread, and the wait when none has anything. A part of ``RouterShell``
(``main.py``), whose state it names below."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Sequence

from config.schema import RingexConfig
from procs.common.journal_writer import JournalWriter
from procs.common.records import Record, WatchBalances
from procs.common.topology import ADMIN_GATEWAY
from procs.core.sequencer import (
    OPERATORS,
    SEQUENCED,
    Decision,
    Sequencer,
    not_permitted,
    operators_only,
)
from procs.router.gateway_rings import from_ring, read_commands
from procs.router.reply_queue import can_send
from procs.router.reread import Reread
from shm.consumer import Consumer
from shm.producer import Producer

log = logging.getLogger("ringex.router")

#: Longest the router parks on its one trading gateway's ring before it looks at the admin
#: ring and the matchers' events again.
ADMIN_POLL_S = 0.005


#: Longest wait of balance watches for a durable state under ``fsync = "pipelined"`` (s):
#: past it a step fsyncs inline. A step's fsync then overlaps nothing, once per this wait at
#: most while balances are watched and touched.
BALANCES_WAIT_S = 0.02


class GatewayIntake:
    cfg: RingexConfig
    _balances_since: float
    inputs: list[tuple[int, Consumer[Record]]]
    from_matchers: list[Consumer[Record]]
    pending_replies: dict[int, collections.deque[Record]]
    replies: dict[int, Producer[Record]]
    journal: JournalWriter
    sequencer: Sequencer
    _reread: Reread

    def _readable(self) -> list[tuple[int, Consumer[Record]]]:
        """The gateways' rings the router reads now: not one whose replies wait for room
        (it takes no more of that gateway's commands until they go)."""
        return [(g, c) for g, c in self.inputs if not self.pending_replies[g]]

    def _take(
        self,
    ) -> tuple[list[Decision], list[int], list[tuple[int, WatchBalances]], list[tuple[int, int]]]:
        """A batch from the gateways' rings, round robin (a quota each, so a busy gateway
        cannot starve the others), decided: the decisions, each one's gateway, the watch
        requests, and each ring's read position after its part."""
        quota = max(1, self.cfg.router_batch // max(1, len(self.inputs)))
        decisions: list[Decision] = []
        origins: list[int] = []
        watch_requests: list[tuple[int, WatchBalances]] = []
        positions: list[tuple[int, int]] = []
        submit = self.sequencer.submit
        for gateway, consumer in self._readable():
            read = from_ring(read_commands(consumer, quota), gateway)
            if read:
                positions.append((gateway, consumer.sequence))
            commands: Sequence[Record | Decision] = read
            if gateway in self._reread:  # after a restart: owed answers in their places
                commands = self._reread.filter(gateway, consumer, read, self.sequencer)
            for command in commands:
                kind = type(command)
                if kind is WatchBalances:  # read-only: not for the sequencer
                    watch_requests.append((gateway, command))  # type: ignore[arg-type]
                elif kind in SEQUENCED:
                    record: Record = command  # type: ignore[assignment]
                    if gateway != ADMIN_GATEWAY and kind in OPERATORS and operators_only(record):
                        # that gateway's bug, or a gateway taken over (review 343)
                        log.error("gateway %d sent %r, the operator's alone: refused",
                                  gateway, record)  # fmt: skip
                        decisions.append(not_permitted(record))
                    else:
                        decisions.append(submit(record, time.time_ns()))
                    origins.append(gateway)
                elif kind is Decision:  # owed to a command journaled before a restart
                    decisions.append(command)  # type: ignore[arg-type]
                    origins.append(gateway)
                else:  # a gateway's bug: never the router's end
                    log.error("gateway %d sent %r, which is not a command: ignored",
                              gateway, command)  # fmt: skip
        return decisions, origins, watch_requests, positions

    def _waiting(self) -> int:
        """Commands on the gateways' rings the router reads now, not read yet."""
        return sum(c.ring.cursor() - c.sequence for _g, c in self._readable())

    def _pipelined_sync(self) -> None:
        """``fsync = "pipelined"``: with ``[journal] pipeline_behind`` commands or more
        waiting (the router is behind), the fsync goes to the journal's thread and the
        router goes on to them (the batch is held until it returns); with fewer, it runs
        here, as under ``"batch"``: there is little to overlap it with, and a batch would
        wait for the fsync in flight and then its own. With none waiting that cost ack p50
        2.3-2.4 ms against 1.7 ms at 2k orders/s on the 2-core VM; with any waiting,
        sequenced -> matcher p50 292-492 us against batch's 223-254 at 10k/s on a 16-core
        host, where a step at that rate finds a few (175-240 us with the threshold, 590f8ac;
        208 against batch's 270 after 7a137f5). A matcher's events waiting do not count:
        there nearly always are some, and settling them is short.

        Balance watches' snapshots and pushes show a durable state only, and under sustained
        load one batch is always journaled and not yet durable: once they have waited
        ``BALANCES_WAIT_S``, the fsync runs here, and they go out with this step's batch
        (each waited for the load to stop before: review 42)."""
        waiting = self._balances_since
        if waiting and time.monotonic() - waiting > BALANCES_WAIT_S:
            self.journal.sync()  # a durable state, for the balances (review 42)
        elif self._waiting() >= self.cfg.journal.pipeline_behind:
            self.journal.maybe_sync()
        else:
            self.journal.sync()

    def _idle(self, timeout_s: float) -> None:
        """Nothing from the gateways. With one trading gateway, wait on its ring with the
        configured strategy (parking costs no CPU), at most ``ADMIN_POLL_S`` so the admin ring
        and settlement are served too; with several, poll them all with a backoff from a
        yield to a 1 ms sleep, so no gateway waits on another's ring. A gateway whose replies
        wait for room has its commands left unread (``_readable``): its ring's records end
        no wait, or the router would spin on them; room for its replies' next chunk does
        (``can_send``; room for less sends nothing: review 41)."""
        readable = self._readable()
        blocked = [g for g, queue in self.pending_replies.items() if queue]
        trading = [c for g, c in readable if g != ADMIN_GATEWAY]
        gateways = sum(1 for g, _c in self.inputs if g != ADMIN_GATEWAY)
        if gateways == 1 and len(trading) == 1:  # one trading gateway, and it is readable
            trading[0].wait(min(timeout_s, ADMIN_POLL_S))
            return
        deadline = time.monotonic() + timeout_s
        pause = 0.0
        while time.monotonic() < deadline:
            if (
                any(c.ready() for _g, c in readable)
                or any(c.ready() for c in self.from_matchers)
                or any(can_send(self.pending_replies[g], self.replies[g]) for g in blocked)
            ):
                return
            time.sleep(pause)
            pause = min(1e-3, pause * 2 or 50e-6)
