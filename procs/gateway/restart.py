"""A gateway's start after a stop or a crash: what it takes back from its order log, and how
it reads input rings that are new since (the shell side of ``recovery.py``).

A mixin of ``GatewayServer`` (``server.py``), which owns the state it names.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.edges import GatewayConfig
from config.schema import RingexConfig
from procs.common.events_after import events_after
from procs.common.journal import LEGACY_SCHEMA_IDS
from procs.common.record_codec import RecordCodec, reframe_slot
from procs.common.records import Heartbeat, MassCancel, Record
from procs.common.topology import REPLAY_SOURCE, symbol_rings
from procs.common.users import UserStore
from procs.core.recovery import JournaledTail
from procs.gateway.clordids import SeenLog
from procs.gateway.clordids import digest as clordid_digest
from procs.gateway.order_log import OrderLog, Recovered
from procs.gateway.orders import OrderEntry
from procs.gateway.recovery import (
    journaled_refs,
    matcher_of_ring,
    missed_events,
    resting_orders,
    ring_identities,
    rings_replaced,
)
from procs.gateway.rest_order_state import LiveOrder
from procs.gateway.sent_commands import SentCommands
from shm import Producer
from shm.consumer import Consumer

if TYPE_CHECKING:
    from procs.gateway.rest import RestApi

log = logging.getLogger("ringex.gateway")

#: In the gateway's directory while it is stopped after a shutdown (``mark_clean_stop``).
CLEAN_STOP = "stopped-cleanly"


class GatewayRestart:
    cfg: RingexConfig
    gw: GatewayConfig
    codec: RecordCodec
    entry: OrderEntry
    users: UserStore
    order_log: OrderLog
    seen_log: SeenLog
    producer: Producer[Record]
    inputs: list[Consumer[Record]]
    _handled: dict[str, int]
    _handled_part: dict[str, int]
    _new_rings: bool
    _unpublished: dict[int, bytes]
    sent: SentCommands
    _logged_to: int
    _positions: dict[str, tuple[int, int]]
    _api_orders: dict[int, list[Any]]
    #: input ring -> the newest event seq handled before a restart (and how many of its
    #: events, None: all), while the ring is new and its first events are checked against
    #: it (``_after_new_rings``)
    _awaiting: dict[str, tuple[int, int | None]]
    _api_waiting: set[int]
    _again: dict[str, int]  # input ring -> its end at the start (``read_again``)
    directory: Path
    api: RestApi | None  # the REST API, when the gateway serves one

    def _recover(self, now_ns: int) -> dict[str, tuple[int, int]]:
        """Take back what the order log holds; returns the input cursors it logged."""
        self._again = {}  # (filled once the rings are attached: ``_note_read_again``)
        recovered = self.order_log.load()
        orders = self.entry.restore(
            recovered.orders, recovered.requests, recovered.finished, recovered.mass_cancels
        )
        self.entry.seen.restore(self.seen_log.load())
        self._seen_from_orders()
        self._api_orders = recovered.api_orders  # the REST core, made later, takes them
        # the refs of its new orders and amends still waiting for an answer: as unanswered
        # as the FIX entry's
        self._api_waiting = {
            ref
            for values in recovered.api_orders.values()
            for ref in LiveOrder.waiting_refs(values)
        }
        self._handled = dict(recovered.handled)
        self._handled_part = dict(recovered.handled_part)
        current = ring_identities(self.cfg, self.gw.id, self.codec)
        self._new_rings = rings_replaced(recovered.positions, current)
        created, first = self.producer.ring.created_ns, self.producer.sequence
        commands = self._own_layout(recovered)
        decoded = {seq: self.codec.decode_slot(image) for seq, (_, image) in commands.items()}
        pending = sorted(
            (seq, image)
            for seq, (ring, image) in recovered.commands.items()
            if ring == created and seq >= first
        )
        self.entry.outgoing.extend(decoded[seq] for seq, _ in pending)
        # new refs above every ref the log holds: the REST API's orders' and amends' (restored
        # apart from FIX's, ``restore``) and any logged command's (a REST cancel's, a balance
        # request's), with the clock stepped back since the last run (review 39)
        refs = [getattr(command, "client_ref", 0) for command in decoded.values()]
        self.entry.keep_refs_above(
            max((*recovered.api_orders, *self._api_waiting, *refs), default=0)
        )
        self._unpublished = dict(pending)
        self._logged_to = first + len(pending)
        # the ones published before and still unanswered: a compaction keeps them, for a full
        # restart to send again should the ring take them along unread (``sent_commands.py``)
        unanswered = []
        for seq, (ring, image) in recovered.commands.items():
            if ring != created or seq < first:
                command = decoded[seq]
                ref = command.client_ref  # type: ignore[attr-defined]
                if self.entry.unanswered(ref) or ref in self._api_waiting:
                    self.sent.add(seq, ring, ref, image)
                    unanswered.append((ring, command))
        if self._new_rings:
            # one sent again by an earlier full restart is logged under this ring too: it is
            # in the ring (or waits for it) already. A plain restart before this gateway
            # logged a position of every ring since that start is taken for a full one
            # again, and sent it twice (review 42)
            here = {
                getattr(decoded[seq], "client_ref", 0)
                for seq, (ring, _) in commands.items()
                if ring == created
            }
            stale = [
                command
                for ring, command in unanswered
                if ring != created and command.client_ref not in here  # type: ignore[attr-defined]
            ]
            self.entry.outgoing.extend(self._lost_commands(stale))
        cancelled = 0
        for user in self.users.users() if orders else []:
            wanted = user.cancel_on_disconnect
            if wanted if wanted is not None else self.gw.cancel_on_disconnect:
                cancelled += self.entry.cancel_session_orders(user.session, user.account, now_ns)
        if orders or pending:
            log.info(
                "order log: %d orders and %d requests back, %d commands to publish again, "
                "%d orders cancelled (their sessions cancel on disconnect)",
                orders, len(self.entry.requests), len(pending), cancelled,
            )  # fmt: skip
        return recovered.positions

    def _seen_from_orders(self) -> None:
        """The ClOrdIDs of the orders and requests the order log holds, taken whatever
        ``clordids.log`` says: it is written after the order log (``publish``), so a crash
        between the two leaves an order whose ClOrdID a resend must still find taken."""
        entry = self.entry
        keys = [*entry.live, *entry.finished]
        keys += [(r.session, r.cl_ord_id) for r in entry.requests.values() if r.cl_ord_id]
        keys += [(m.session, m.fields[11]) for m in entry.mass_cancels.values() if 11 in m.fields]
        for key in keys:
            value = clordid_digest(*key)
            if value not in entry.seen:
                entry.seen.add(value)
        self.seen_log.keep(entry.seen)

    def _own_layout(self, recovered: Recovered) -> dict[int, tuple[int, bytes]]:
        """The logged commands, less those of another build's layout (an upgrade to a build
        of other journaled commands: ``ringex stop`` has every command answered first, so
        only answered ones are left, but an image is not decoded under another layout, where
        it would read as another command). They go from ``recovered`` too. An image of
        another slot size (a build whose largest event grew) is re-framed to this build's,
        as the journal's are: its ring takes only slots of its size."""
        mine = {
            self.codec.journal_schema_id,
            *LEGACY_SCHEMA_IDS.get(self.codec.journal_schema_id, ()),
        }
        foreign = {s for s, schema in recovered.command_schemas.items() if schema not in mine}
        slot = self.codec.slot_size
        for seq, (ring, image) in list(recovered.commands.items()):
            if len(image) != slot and seq not in foreign:
                reframed = reframe_slot(image, slot)
                if reframed is None:  # (a record larger than this build's slot: not its own)
                    foreign.add(seq)
                else:
                    recovered.commands[seq] = (ring, reframed)
        for seq in foreign:
            del recovered.commands[seq]
        if foreign:
            log.warning("order log: %d command(s) logged by a build of other journaled records "
                        "(or of records too large for this build's slots) passed over (not sent "
                        "again)", len(foreign))  # fmt: skip
        return recovered.commands

    def _lost_commands(self, logged: list[Record]) -> list[Record]:
        """Of ``logged`` (commands logged for a router ring that is gone, still unanswered),
        those not in the journal: the ring took them along unread. They go into the new
        ring. One that is in the journal is answered by the events made again after the
        matcher's replay mark. An order command was journaled, if at all, after every seq
        this gateway had handled from its matcher (its answer would have come there); a mass
        cancel's verdict comes on the reply ring, which the matchers' events may overtake,
        so for those the journal is read from the oldest of every matcher's. Each look-up
        starts that much less the router's own look-back (``JournaledTail``: every
        gateway's ring's worth of commands)."""
        # by client_ref, once: one sent again after an earlier full restart was logged again
        # under that start's ring, and its entry of the ring before stays with it
        by_ref = {command.client_ref: command for command in logged}  # type: ignore[attr-defined]
        waiting = list(by_ref.values())
        if not waiting:
            return []
        window = JournaledTail.for_config(self.cfg).window
        rings = symbol_rings(self.cfg)
        found: dict[bool, set[int] | None] = {}
        for cancels in (False, True):  # orders, then mass cancels: a look-up each
            group = [c for c in waiting if isinstance(c, MassCancel) is cancels]
            if not group:
                continue
            after = min(self._journaled_after(c, rings) for c in group) - 1 - window
            found[cancels] = refs = journaled_refs(self.cfg, self.gw.id, max(0, after), self.codec)
            self._answer_mass_cancels(group, refs)
            if refs is None:
                log.warning(
                    "%d commands logged for the old router ring are unanswered; the journal "
                    "cannot tell whether it took them: not sent again",
                    len(group),
                )
        lost = []
        for command in waiting:  # in their order
            refs = found[isinstance(command, MassCancel)]
            if refs is not None and command.client_ref not in refs:  # type: ignore[attr-defined]
                lost.append(command)
        if lost:
            log.info("%d commands the old router ring took along unread: sent again", len(lost))
        return lost

    def _journaled_after(self, command: Record, rings: dict[int, str]) -> int:
        """The seq ``command`` was journaled after, if at all: the newest its matcher's ring
        was handled through, or every matcher's oldest for a mass cancel (see
        ``_lost_commands``). Not every matcher's oldest for every command: a quiet
        matcher's (0, or its last event hours ago) put the look-up past ``CATCH_UP_LIMIT``,
        and an order command the old ring took along unread was never sent again (review
        41)."""
        if isinstance(command, MassCancel):
            return min((self._handled.get(name, 0) for name in rings.values()), default=0)
        ring = rings.get(getattr(command, "symbol", 0))
        if ring is None:  # no matcher's symbol: refused, never journaled; it bounds nothing
            return max(self._handled.values(), default=0)
        return self._handled.get(ring, 0)

    def _answer_mass_cancels(self, waiting: list[Record], found: set[int] | None) -> None:
        """A mass cancel's verdict came from the router on the old ring, gone now. One the
        journal holds was taken (the router journals only what it accepts); one the journal
        cannot tell of is refused, for its client to send again (a second cancel of the same
        orders is harmless). One the journal lacks is sent again (``_lost_commands``)."""
        for command in waiting:
            if not isinstance(command, MassCancel):
                continue
            if found is None:
                why = "the gateway restarted and cannot tell whether it was taken: send it again"
                self.entry.answer_mass_cancel(command.client_ref, why)
            elif command.client_ref in found:
                self.entry.answer_mass_cancel(command.client_ref, None)

    def _after_new_rings(self, consumer: Consumer[Record], events: list[Record]) -> list[Record]:
        """The first events of a ring that is new since the order log was written: skip what
        was handled before; past a matcher's replay mark, make again the events the ring
        cannot give, or correct the orders from the books (``recovery.py``)."""
        ring = consumer.ring.name
        handled, part = self._awaiting[ring]
        first = events[0]
        matcher = matcher_of_ring(self.cfg, ring)
        missed: list[Record] = []
        if (
            matcher is not None
            and isinstance(first, Heartbeat)
            and first.source == REPLAY_SOURCE
            # past what was handled, or at it with only a part of its events handled (a
            # read ended inside them and the matcher's snapshot is at that seq: a clean
            # stop's; review 41): the rest of them exist nowhere else
            and (first.counter > handled or (first.counter == handled and part is not None))
        ):
            made = missed_events(self.cfg, matcher, handled, first.counter, self.codec, part)
            if made is None:
                self._reconcile(matcher, first.counter)
            else:
                missed = made
                log.info(
                    "matcher %s: %d events of seqs %d..%d the old ring took along made again "
                    "from the journal", matcher, len(made),
                    handled if part is not None else handled + 1, first.counter,
                )  # fmt: skip
            handled, part = first.counter, None
        kept, part = events_after(events, handled, part)
        if kept:
            del self._awaiting[ring]  # from here on the ring is read as usual
        else:
            self._awaiting[ring] = (handled, part)
        return missed + kept

    def _reconcile(self, matcher: str, upto: int) -> None:
        found = resting_orders(self.cfg, matcher, upto, self.gw.id, self.codec)
        if found is None:
            log.warning(
                "orders on matcher %s not checked: its state at seq %d is no longer kept "
                "(a newer snapshot); fills meanwhile are missing from their reports",
                matcher, upto,
            )  # fmt: skip
            return
        resting, symbols = found
        changed, forgotten = self.entry.reconcile(resting, symbols)
        for order in changed:
            self.entry.restate(order)
        if self.api is not None:  # and the API's orders (their stream is told nothing)
            api_changed, api_forgotten = self.api.core.reconcile(resting, symbols)
            log.info("API orders on matcher %s: %d corrected, %d finished meanwhile",
                     matcher, api_changed, api_forgotten)  # fmt: skip
        log.info(
            "orders on matcher %s checked against its books at seq %d (the rings are new): "
            "%d restated with fills or replaces they had missed, %d finished meanwhile",
            matcher, upto, len(changed), forgotten,
        )  # fmt: skip

    def _skip_handled(self) -> None:
        """Pass over events the order log says were handled before a restart (a crash after
        the log's write and before the cursors' commit)."""
        for consumer in self.inputs:
            ring = consumer.ring
            created, upto = self._positions.get(ring.name, (0, 0))
            if created != ring.created_ns or upto <= consumer.sequence:
                continue
            skipped = consumer.skip_to(upto)
            log.info("%s: skipped %d events handled before the restart", ring.name, skipped)

    def _note_read_again(self) -> None:
        """What the rings hold at the start past the logged positions may have been reported
        before a crash: reports made of it again carry PossResend (``read_again``). Not after
        a shutdown (``mark_clean_stop``), which logged all it read: what follows is new
        (review 293: a fill made while the gateway was stopped came with 97=Y)."""
        clean = self.directory / CLEAN_STOP
        if clean.exists():
            clean.unlink()  # (a crash after this start's first reports is not clean)
            return
        self._again = {c.ring.name: end for c in self.inputs if (end := c.ring.cursor()) > 0}

    def mark_clean_stop(self) -> None:
        """Say, for the next start, that this run logged every event it read (its shutdown
        took its last batch): ``_note_read_again``. Not written (a full disk): the next start
        marks what it reads past the log's positions, as after a crash."""
        with contextlib.suppress(OSError):
            (self.directory / CLEAN_STOP).touch()

    def read_again(self, consumer: Consumer[Record]) -> bool:
        """Whether ``consumer``'s next events may have been read before a crash (their
        reports sent, the order log's frame not written): up to the ring's end at the start
        (review 292: an ack went to the client twice, the second without PossResend (97),
        which FIX 4.4 asks of a message that may repeat what another MsgSeqNum carried)."""
        upto = self._again.get(consumer.ring.name, 0)
        if consumer.sequence < upto:
            return True
        self._again.pop(consumer.ring.name, None)
        return False
