"""What the gateway writes to its order log (``order_log.py``), and when: its commands before
the router ring gets them (and before a session's store saves the MsgSeqNums that count
them, and after the audit journal has the messages they came from), its orders' changes with
the input cursors after each batch of events, in one write with the commands those events
made (a cancel on disconnect), and a compaction in steps, one per write. (A write is one
frame, or several that replay applies all or none: ``order_log.py``.)

A batch's changes go in no other write: a restart must find all of a batch or none of it
(half of it, and the events read again are applied twice: a fill counted twice). So a store
that saves inside a batch (``park`` for a session that is away) logs nothing
(``_in_batch``): every command a client sent was logged by the ``publish`` that begins the
pass, and those the events make go in the batch's write.

A mixin of ``GatewayServer`` (``server.py``), which owns the state it names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import TYPE_CHECKING

from procs.common.record_codec import RecordCodec
from procs.common.records import Record
from procs.gateway.audit import AuditLog
from procs.gateway.clordids import SeenLog
from procs.gateway.order_log import COMMAND, HANDLED, POSITION, Entry, Kept, OrderLog
from procs.gateway.orders import OrderEntry
from procs.gateway.sent_commands import SentCommands
from shm import EncodeError, Producer
from shm.consumer import Consumer

if TYPE_CHECKING:
    from procs.gateway.rest import RestApi

log = logging.getLogger("ringex.gateway")
#: After an order-log compaction failed (a full disk), how long before one is begun again.
COMPACT_RETRY_S = 5


class OrderLogging:
    codec: RecordCodec
    entry: OrderEntry
    api: RestApi | None
    audit: AuditLog
    order_log: OrderLog
    seen_log: SeenLog
    api_seen_log: SeenLog
    producer: Producer[Record]
    inputs: list[Consumer[Record]]
    _handled: dict[str, int]
    _handled_part: dict[str, int]
    #: Sequence in the router ring -> slot image, of commands logged and not yet published.
    _unpublished: dict[int, bytes]
    #: and of those published, whose answer may not have come (a compaction keeps them)
    sent: SentCommands
    _logged_to: int  # commands below this sequence in the router ring are in the log
    _compact_after: float  # a failed compaction is begun again from then on (monotonic s)
    _in_batch: bool  # ``pump`` is taking a batch of events, not logged yet
    #: The entries of the last write that failed (a full disk): the next write's first.
    _unwritten: list[Kept]
    _closed: bool

    def _changes(self) -> list[Kept]:
        """The order entries' changes since the last log write: FIX's, then the API's; after
        the entries of a write that failed, if any (newer ones win a replay)."""
        entries = self.entry.take_changes()
        if self._unwritten:
            entries[:0], self._unwritten = self._unwritten, []
        if self.api is not None:
            entries += self.api.core.take_changes()
        return entries

    def _write_log(self, entries: list[Kept]) -> None:
        order_log = self.order_log
        try:
            order_log.write(entries)
        except OSError:  # a full disk: the changes were taken, the next write carries them
            self._unwritten = entries
            raise
        if order_log.compacting:  # a step per write: no pass of the loop waits for all of it
            self._compaction_step(order_log.step_compaction)
        elif order_log.wants_compaction and time.monotonic() >= self._compact_after:
            self._compaction_step(lambda: order_log.begin_compaction(self._live_entries()))

    def _commands_unlogged(self) -> bool:
        """Whether a command in ``outgoing`` is not in the log yet (those before
        ``_logged_to`` in the router ring's numbering are)."""
        outgoing = self.entry.outgoing
        return bool(outgoing) and self.producer.sequence + len(outgoing) > self._logged_to

    def _idle_compaction_step(self) -> None:
        """The timers' step of a compaction under way (an idle gateway finishes it too), but
        not its finish while the log lacks a change the entries it took may hold: the renamed
        file would have a state no write made (review 39: an amend whose command was never
        logged, waiting for its answer for good after a crash). A write's step finishes it."""
        if self.order_log.compacting:
            current = self._log_is_current()
            self._compaction_step(lambda: self.order_log.step_compaction(finish=current))

    def _log_is_current(self) -> bool:
        """Whether the order log holds every change made so far: no command waits to be
        logged, no order entry changed since the last write (FIX's or the API's)."""
        entry, api = self.entry, self.api
        return not (
            self._commands_unlogged()
            or entry.touched
            or entry.finished_changes
            or self._unwritten
            or (api is not None and api.core.changed_since_taken())
        )

    def _compaction_step(self, step: Callable[[], object]) -> None:
        """A step of the order log's compaction; one that fails (a full disk: the log keeps
        everything, its appends may still fit) is given up, logged, and begun again later,
        never the end of the gateway."""
        try:
            step()
        except OSError as exc:
            log.error("order log compaction failed (%s): the log is whole; again in %d s",
                      exc, COMPACT_RETRY_S)  # fmt: skip
            self._compact_after = time.monotonic() + COMPACT_RETRY_S

    def _live_entries(self) -> Iterator[Kept]:
        """The order log's live entries as of now, for a compaction in steps: the orders'
        entries made as they are taken, the positions and commands (a few) at once."""
        created = self.producer.ring.created_ns
        now = [self._position(c) for c in self.inputs]
        now += [
            (HANDLED, name, seq, self._handled_part.get(name))
            for name, seq in self._handled.items()
        ]
        now += self.sent.entries()  # first: one at the same seq is older (a ring before)
        schema = self.codec.journal_schema_id
        now += [(COMMAND, seq, created, image, schema) for seq, image in self._unpublished.items()]
        api = () if self.api is None else self.api.core.dump_lazily()
        return chain(self.entry.dump_lazily(), api, now)

    @staticmethod
    def _position(consumer: Consumer[Record]) -> Entry:
        return (POSITION, consumer.ring.name, consumer.ring.created_ns, consumer.sequence)

    def _log_commands(
        self, chunk: list[Record], base: int, tail: Sequence[Kept] = ()
    ) -> int | None:
        """Log the chunk's commands not yet logged, with the order entry's changes (and
        ``tail``, in the same write); returns the index of one that does not fit its record
        (nothing from it on is logged). The audit journal is written first: a command is
        never in the log, nor the ring, ahead of the line of the message it came from."""
        self.audit.flush()
        entries = self._changes()
        created = self.producer.ring.created_ns
        bad = None
        for i in range(max(0, self._logged_to - base), len(chunk)):
            try:
                image = self.codec.encode_slot(chunk[i])
            except EncodeError as exc:  # the edges check every value; this is the backstop
                log.error("dropped a command that does not fit its record: %s", exc)
                bad = i
                break
            self._unpublished[base + i] = image
            entries.append((COMMAND, base + i, created, image, self.codec.journal_schema_id))
        entries.append((POSITION, self.producer.ring.name, created, base + len(chunk)))
        entries += tail
        self._write_log(entries)
        self._logged_to = base + (len(chunk) if bad is None else bad)
        return bad

    def _log_outgoing(self) -> None:
        """Log every command waiting in ``outgoing``, whatever the ring takes: a session's
        store counts their MsgSeqNums, and a crash must not lose one it counts."""
        outgoing, producer = self.entry.outgoing, self.producer
        while self._commands_unlogged():
            bad = self._log_commands(outgoing, producer.sequence)
            if bad is None:
                break
            del outgoing[bad]

    def _log_batch(self, tail: Sequence[Kept]) -> None:
        """A batch of events handled: its changes and ``tail`` (the input cursors) in one
        write, with the commands its events made (an acknowledged order's cancel on
        disconnect), so that a crash leaves no request without its command."""
        outgoing, producer = self.entry.outgoing, self.producer
        if self._commands_unlogged():
            bad = self._log_commands(outgoing, producer.sequence, tail)
            if bad is not None:
                del outgoing[bad]
                self._log_outgoing()
        else:
            entries = self._changes()
            entries += tail
            self._write_log(entries)

    def _keep_api_seen(self) -> None:
        """Persist the REST API's new clientOrderIds (``api_ids.log``), as ``seen_log`` the
        FIX ClOrdIDs: after the orders that use them."""
        if self.api is not None and self.api.core.seen is not None:
            self.api_seen_log.keep(self.api.core.seen)

    def _before_store_save(self) -> None:
        """A session's store is about to save its next inbound MsgSeqNum: the commands of
        the messages it counts are logged first. Its write waits for ``publish`` to do so
        (``after_input``), but a store saves on its own too: a Logout read with an order
        closes the session, a ResendRequest reads the store, a reset truncates it. Not
        inside a batch of events: what waits then, its events made (see the top)."""
        if (  # outgoing first: a store saves during recovery too, before ``_closed`` is set
            self.entry.outgoing
            and not self._closed
            and not self._in_batch
            and self._commands_unlogged()
        ):
            self._log_outgoing()
            self.seen_log.keep(self.entry.seen)  # after the orders: see ``publish``
            self._keep_api_seen()

    def _unanswered(self, ref: int) -> bool:
        """Whether the command of client ref ``ref`` waits for its answer (FIX or REST)."""
        return self.entry.unanswered(ref) or (
            self.api is not None and ref in self.api.core.requests
        )
