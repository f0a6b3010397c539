"""The router process: gateways' rings -> sequence, risk, journal -> matchers' rings.

    python -m procs.router.main --profile dev

One loop, one thread:

1. settle: read every matcher's output ring and apply the events (balances, order lifetimes);
2. take up to ``router_batch`` commands from the gateways' rings (at least one from each ring
   that has one), round robin so that a busy gateway cannot starve the others, and decide
   each (``Sequencer.submit``);
3. append the accepted ones to the journal in one write, made durable under the fsync policy
   (group commit) *before* step 4: no matcher, hence no execution report, ever sees a command
   that is not durable (under ``"interval"`` and ``"pipelined"`` the batch is held, ``held.py``,
   and routed once the interval's fsync, or the fsync on the journal's thread, covers it); in
   sync replication (``replication.mode``) durable means on the standby too: the step waits
   until the replication source says the standby has acknowledged the batch's last seq
   (``replication_ack.SyncGate``: one round trip per batch, draining the matchers meanwhile;
   past ``sync_timeout_ms`` it goes on without the standby, loudly, until it catches up);
4. publish them to the matchers' input rings; send the gateways their replies (rejects,
   account answers) and their balance watches' snapshots and pushes (``watches.py``: read-only,
   never sequenced or journaled);
5. commit the gateways' rings: a crash before this re-reads the batch, and because nothing
   was routed before it was journaled, the restart's recovery and the journal agree.

A journal fenced by a promotion (``procs.common.epochs``) is not opened: the router exits
saying so, whoever restarted it (so too a demoted one: ``open_check.py``). A running router
that the replication source finds fenced (the block's ``FENCED`` word) sequences nothing more
and publishes nothing still waiting for the standby; it keeps settling the matchers' events.

Start-up is recovery (``recovery.recover``): the newest exchange snapshot plus the journal,
replayed through matcher cores in this process; then any journaled command that a matcher's
input ring lacks (a crash between steps 3 and 4) is published to it again.

Publishing never blocks while the router has events to drain: a matcher waiting for room in
its output ring would otherwise wait on the router that waits on it.
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from config import load_profile
from config.schema import RingexConfig
from procs.common import gc_policy, sd_notify
from procs.common.epochs import JournalFencedError
from procs.common.exit_codes import REFUSED
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import Heartbeat, Record, WatchBalances
from procs.common.replication_ack import FENCED, AckBlock, SyncGate, ack_dir
from procs.common.stopping import stop_on_signals
from procs.common.topology import (
    ADMIN_GATEWAY,
    RECOVERED_SOURCE,
    ROUTER,
    gateway_commands,
    gateway_replies,
    journal_dir,
    matcher_input,
    matcher_output,
)
from procs.common.units import UnitsError, gone_gateways_refused, pin_units, units_refused
from procs.core.engine import Matcher
from procs.core.fees import FeeChangeError
from procs.core.recovery import JournaledTail, Recovered, recover, unrouted
from procs.core.sequencer import Decision, route_all
from procs.core.watches import Watches
from procs.router.applied import AppliedEvents
from procs.router.commits import RingCommits
from procs.router.held import Batch, HeldBatches
from procs.router.intake import ADMIN_POLL_S, GatewayIntake
from procs.router.open_check import check_open
from procs.router.reply_queue import send_pending, started_queues
from procs.router.reread import Reread
from procs.router.snapshots import Snapshots
from procs.router.time_use import BEHIND, FSYNC, FULL, IDLE, STANDBY, TimeUse
from shm import Ring
from shm.consumer import Consumer
from shm.producer import Producer

log = logging.getLogger("ringex.router")

#: How often the router beats on every line it reads: a supervisor tells a router that waits
#: on purpose (matchers behind, fenced) from a frozen one by it (``supervisor.stuck_after_s``).
BEAT_S = 0.5

#: The GIL hand-over interval of a router whose journal fsyncs on a thread ("pipelined").
PIPELINED_SWITCH_S = 0.0002
#: The consumer name the router takes on gateways' command rings and matchers' output rings.
CONSUMER = ROUTER


def resting_by_gateway(matchers: Mapping[str, Matcher]) -> dict[int, int]:
    """Gateway id -> how many orders it entered rest in ``matchers``' books, stops waiting to
    trigger too (a start refuses a gateway gone that has some: ``units.py``)."""
    counts: collections.Counter[int] = collections.Counter()
    for matcher in matchers.values():
        for book in matcher.books.values():
            counts.update(o.gateway for o in book.orders.values())
            counts.update(o.gateway for o in book.stops.values())
    return dict(counts)


def _checked(cfg: RingexConfig, recovered: Recovered) -> Recovered:
    """The state the journal left, unless orders of a gateway no longer configured rest in
    it (``UnitsError``: their fills would be reported to no one, review 208)."""
    if refused := gone_gateways_refused(cfg, resting_by_gateway(recovered.matchers)):
        raise UnitsError(refused)
    return recovered


class RouterShell(GatewayIntake, RingCommits, AppliedEvents):
    def __init__(self, cfg: RingexConfig, *, codec: RecordCodec | None = None) -> None:
        self.cfg = cfg
        self.codec = codec = codec or RecordCodec()
        check_open(journal_dir(cfg))  # JournalFencedError: fenced, or follow-only
        if refused := units_refused(cfg):  # before a replay under other units
            raise UnitsError(refused)
        tail = JournaledTail.for_config(cfg)
        self._tail_window = tail.window
        #: gateway -> the journal's next seq when its replies (or a watch, or its held batch)
        #: began to wait
        self._waiting_since: dict[int, int] = {}
        self._routed_upto: dict[int, int] = {}  # a gateway's ring position, batches routed
        self._commit_floor: dict[int, int] = {}  # and how far its ring is committed
        recovered = _checked(cfg, recover(cfg, codec=codec, tail=tail, pipelined=True))
        self.sequencer = recovered.sequencer
        self.watches = Watches(self.sequencer.accounts)  # none survive a restart: leases renew
        # the newest seq whose events were applied, and the newest routed (``_labels``)
        self.applied_seq = self._routed_seq = recovered.last_seq
        log.info(
            "router recovered to seq %d (snapshot %d + %d replayed in %.2f s)",
            *(recovered.last_seq, recovered.snapshot_seq, recovered.replayed, recovered.seconds),
        )
        self.time_use = TimeUse(cfg.instance)  # where its time goes, for the metrics
        self.journal = _open_journal(cfg, codec)
        pin_units(cfg)
        self._journal_fees()
        self._journal_rules()
        rep = cfg.replication
        self.acks: AckBlock | None = None  # shared with the replication source, if one runs
        self.gate: SyncGate | None = None  # sync mode: the standby acknowledges every batch
        if rep.listen_port:
            self.acks = AckBlock(ack_dir(cfg.var_dir, cfg.instance))
            self.acks.appended(self.journal.next_seq - 1)
            if rep.mode == "sync":
                spin = cfg.wait.strategy == "busy-spin"
                self.gate = SyncGate(self.acks, rep.sync_timeout_ms, spin=spin)
        self._stop: Callable[[], bool] = lambda: False
        wait = cfg.wait.build
        gateways = [*(g.id for g in cfg.gateways), ADMIN_GATEWAY]
        self.inputs: list[tuple[int, Consumer[Record]]] = [
            (
                g,
                Ring.attach(cfg.instance, gateway_commands(g), codec).consumer(
                    CONSUMER, wait(), auto_commit=False
                ),
            )
            for g in gateways
        ]
        self.replies: dict[int, Producer[Record]] = {
            g: Ring.attach(cfg.instance, gateway_replies(g), codec).producer(wait())
            for g in gateways
        }
        #: what a crash before the rings' commit left to be read again (``reread.py``)
        self._reread = Reread(
            tail.by_gateway(), self.inputs, {g: p.ring for g, p in self.replies.items()}
        )
        self.to_matchers: dict[str, Producer[Record]] = {
            m.name: Ring.attach(cfg.instance, matcher_input(m.name), codec).producer(wait())
            for m in cfg.matchers
        }
        self.from_matchers: list[Consumer[Record]] = [
            Ring.attach(cfg.instance, matcher_output(m.name), codec).consumer(CONSUMER, wait())
            for m in cfg.matchers
        ]
        # per matcher output ring, the seqs routed to its matcher whose events have not all
        # come back: a balance is labelled below the oldest (``_labels``)
        self._outstanding: dict[str, collections.deque[int]] = {
            matcher_output(m.name): collections.deque() for m in cfg.matchers
        }
        self.pending_replies = started_queues(self.replies, self.applied_seq, time.time_ns())
        self.stopping = self.fenced = False
        self.snapshots = Snapshots(cfg, recovered.snapshot_seq)
        self._unrouted: list[tuple[Producer[Record], list[Record]]] = []
        self._held = HeldBatches()  # journaled, not yet fsynced ("interval", "pipelined")
        self._watch_requests: list[tuple[int, WatchBalances]] = []  # answered once none is
        self._balances_since = 0.0  # when balances began to wait for a durable state
        #: a matcher's unread input past which no gateway command is taken (``_books_behind``)
        self._books_limit = cfg.ring.capacity // 8
        #: gateway -> its replies parked behind an answer owed to a command read again after
        #: a restart whose entry the standby lacks yet (sync mode): (the seq the standby must
        #: hold first, 0: none; reply), in the order of its commands (``_answer``)
        self._owed: dict[int, collections.deque[tuple[int, Record]]] = {}
        self._beat_due = 0.0
        self._behind_rounds = 0
        self._resend_unrouted(recovered, self.journal.next_seq - 1)

    def _journal_fees(self) -> None:
        """The configured fees the state does not hold yet, so that every trade from here on
        settles under them in a replay too (``procs/core/fees.py``)."""
        self._journal_at_start("fees", self.sequencer.fee_changes(time.time_ns()))

    def _journal_rules(self) -> None:
        """The configured symbol rules the state has not journaled, so that a replay executes
        each order under the rules it met live (``symbol_rules.py``); ``_resend_unrouted``
        routes them to their matchers."""
        self._journal_at_start("rules", self.sequencer.rules_changes(time.time_ns()))

    def _journal_at_start(self, what: str, changes: Sequence[Record]) -> None:
        """Journal and fsync what a starting router sequenced of its own."""
        if changes:
            first: int = changes[0].seq  # type: ignore[attr-defined]
            self.journal.append(first, self.codec.encode_slots(changes), len(changes))
            self.journal.sync()
            log.info("%s journaled for %d symbols from seq %d", what, len(changes), first)

    def _resend_unrouted(self, recovered: Recovered, last_seq: int) -> None:
        """Publish journaled commands a matcher's input ring does not hold: those up to
        ``recovered.last_seq`` when a crash came between the journal write and the publish,
        and the rules this start journaled after it (``recovery.unrouted``: the journal read
        from where one may be); in sync mode the loop's first step does, once the standby
        has them, so start-up never waits on the standby."""
        held = {}
        for name, producer in self.to_matchers.items():
            newest = producer.ring.last_published()
            have: int = getattr(newest, "seq", 0) if newest is not None else 0
            # a matcher that recovered from the journal after this ring last moved (a fresh
            # instance: an empty ring) says how far it got: nothing up to there is missing
            mark = Ring.attach(self.cfg.instance, matcher_output(name), self.codec)
            executed = mark.last_published()
            mark.close()
            if isinstance(executed, Heartbeat) and executed.source == RECOVERED_SOURCE:
                have = max(have, executed.counter)
            held[name] = have
        for name, missing in unrouted(self.cfg, recovered, held, last_seq, self.codec).items():
            producer = self.to_matchers[name]
            lost = sum(1 for c in missing if getattr(c, "seq", 0) <= recovered.last_seq)
            if lost:
                log.warning("matcher %s lacked %d journaled commands: sent", name, lost)
            if missing:
                self._unrouted.append((producer, missing))
        if self.gate is None:  # sync: the loop sends them once the standby has them
            self._send_unrouted()

    def _send_unrouted(self) -> bool:
        """Publish what ``_resend_unrouted`` found, after the standby's acknowledgement in
        sync mode (they make execution reports); False if a stop came first."""
        if self.gate is not None:
            began = time.perf_counter_ns()
            held = self.gate.wait(self.journal.next_seq - 1, self.settle, self._stop)
            self.time_use.waited(STANDBY, began)
            if not held:
                return False
        for producer, missing in self._unrouted:
            self._publish(producer, missing)
        self._unrouted.clear()
        return True

    # -- the loop -----------------------------------------------------------------------------

    def step(self, timeout_s: float = 0.05) -> int:
        """One batch; returns how many gateway commands it took (watches included)."""
        self._beat()
        if self.acks is not None and self.acks.words[FENCED]:
            return self._fenced(timeout_s)
        if self._unrouted and not self._send_unrouted():
            return 0
        self.settle()
        self._route_durable()
        if self._books_behind():
            return 0
        decisions, origins, watch_requests, positions = self._take()
        if not decisions and not watch_requests:
            self._idle_step(timeout_s)
            return 0
        accepted = [d.command for d in decisions if d.command is not None]
        if accepted:
            images = self.codec.encode_slots(accepted)
            first: int = accepted[0].seq  # type: ignore[attr-defined]
            self.journal.append(first, images, len(accepted))
        if self.journal.fsync == "pipelined" and (accepted or self._held):
            # the step decides where the fsync runs (its start only collected one): for its
            # batch, or, with refusals alone, for the held ones (a flood of them never idles)
            self._pipelined_sync()
        if accepted and self.acks is not None:
            last = first + len(accepted) - 1
            self.acks.appended(last)
            if self.gate is not None:
                began = time.perf_counter_ns()
                held = self.gate.wait(last, self.settle, self._stop, first - 1)
                self.time_use.waited(STANDBY, began)
                if not held:
                    return self._abandon(decisions, origins) + len(watch_requests)
        batch = Batch(self.journal.next_seq - 1 if accepted else 0, decisions, origins,
                      watch_requests, positions)  # fmt: skip
        if self._held:  # made durable meanwhile (an inline fsync, the standby's ack)
            self._route_durable()
        if self._held or self.journal.durable_seq < batch.last_seq:
            self._held.hold(batch)  # "interval", "pipelined": routed once durable (held.py)
        else:
            self._route(batch)
        self._commit_answered()
        self.snapshots.maybe_start(self.sequencer.next_seq - 1, self.journal)
        return len(decisions) + len(watch_requests)

    def _route(self, batch: Batch) -> None:
        """Publish a durable batch to the matchers and queue its replies and watches."""
        if self.watches:  # the balances it changed, pushed now that it is durable
            self.watches.touch_commands([d.command for d in batch.decisions if d.command])
        for name, commands in route_all(batch.decisions).items():
            self._publish(self.to_matchers[name], commands)
            self._outstanding[matcher_output(name)].extend(
                [seq for c in commands if (seq := getattr(c, "seq", 0))]
            )
        # applied through it, but for what is outstanding at a matcher (``_labels``)
        self._routed_seq = max(self._routed_seq, batch.last_seq)
        pending, owed = self.pending_replies, self._owed
        for gateway, decision in zip(batch.origins, batch.decisions, strict=True):
            reply = decision.reply
            if reply is not None:
                if owed or decision.journaled:
                    self._answer(gateway, reply, decision.journaled)
                else:
                    pending[gateway].append(reply)
        self._flush_replies(batch.watch_requests)
        for gateway, position in batch.positions:  # committed once its replies are out
            self._routed_upto[gateway] = position

    def _route_durable(self) -> None:
        """Route the held batches the journal has made durable since. Under "pipelined"
        it starts no fsync: a step that then fsyncs inline would wait for that one first,
        and a held batch for three (review 43)."""
        if self._held:
            self.journal.collect()
            for batch in self._held.durable(self.journal.durable_seq):
                self._route(batch)

    def _idle_step(self, timeout_s: float) -> None:
        """Nothing to decide: send what waits, keep the journal's promises, wait."""
        self._route_durable()
        self._flush_replies()
        self._commit_answered()  # what waited for room and went out now
        self.journal.maybe_sync()
        if self.gate is not None and self.gate.catching_up:
            self.gate.poll(self.journal.next_seq - 1)
        due = self.journal.sync_due_in_s()  # "interval": an idle wait ends by then
        began = time.perf_counter_ns()
        if self._held and self.journal.syncing:
            # "pipelined": the held batches' fsync runs on the journal's thread; nothing
            # else to do, so wait for it rather than for the rings (a few ms at most)
            self.journal.wait_durable(timeout_s)
            self.time_use.waited(FSYNC, began)
        else:
            self._idle(timeout_s if due is None else min(timeout_s, due))
            self.time_use.waited(IDLE, began)
        self._route_durable()

    def _answer(self, gateway: int, reply: Record, journaled: int = 0) -> None:
        """Queue ``reply`` for ``gateway`` in its command's order: an answer owed to a command
        journaled at ``journaled`` before a restart waits until the standby holds that entry
        (sync mode: an answer says the command is durable there too), and every later reply
        of the gateway waits behind it, even a refusal, which promises nothing durable."""
        parked = self._owed.get(gateway)
        if parked is None and self._standby_holds(journaled):
            self.pending_replies[gateway].append(reply)
            return
        if parked is None:
            parked = self._owed[gateway] = collections.deque()
        parked.append((journaled, reply))

    def _standby_holds(self, seq: int) -> bool:
        """Whether an answer may say that the entry at ``seq`` is durable (a gate degraded to
        async, or none, asks nothing of the standby)."""
        gate = self.gate
        return gate is None or gate.degraded or gate.block.acked_seq >= seq

    def _pay_owed(self) -> None:
        """Queue each gateway's parked replies up to the first one the standby may not allow
        yet (``_answer``)."""
        for gateway, parked in list(self._owed.items()):
            queue = self.pending_replies[gateway]
            while parked and self._standby_holds(parked[0][0]):
                queue.append(parked.popleft()[1])
            if not parked:
                del self._owed[gateway]

    def _beat(self) -> None:
        """Every ``BEAT_S``, a heartbeat on every line this router reads: alive, whether it
        reads (matchers behind, fenced) or not."""
        now = time.monotonic()
        if now >= self._beat_due:
            self._beat_due = now + BEAT_S
            for _gateway, consumer in self.inputs:
                consumer.heartbeat()
            for consumer in self.from_matchers:
                consumer.heartbeat()

    def _books_behind(self) -> bool:
        """True (after one idle round) while a matcher has more than an eighth of its input
        ring unread: no command is taken from the gateways until it catches up. The commands
        wait in the gateways' rings and then the clients' sockets (a gateway stops reading
        them), so the rings after the matcher never fill: with them full, every stage
        waited on the next one and 25k orders/s offered gave a fifth of what 15k did."""
        for producer in self.to_matchers.values():
            if producer.backlog() > self._books_limit:
                self._flush_replies()
                self.journal.maybe_sync()
                room = producer.ring.capacity - self._books_limit  # fits: caught up
                began = time.perf_counter_ns()
                producer.idle_round(room, self._behind_rounds)
                self.time_use.waited(BEHIND, began)
                self._behind_rounds += 1
                return True
        self._behind_rounds = 0
        return False

    def _fenced(self, timeout_s: float) -> int:
        """A newer epoch fenced this primary: take no command; keep the matchers drained."""
        if not self.fenced:
            self.fenced = True
            log.error(
                "FENCED by epoch %d: this router sequences nothing more (journal at seq %d); "
                "rebuild this instance as the promoted one's standby (scripts/failover.py demote)",
                self.acks.words[FENCED] if self.acks is not None else 0, self.journal.next_seq - 1,
            )  # fmt: skip
        if not self.settle():
            began = time.perf_counter_ns()
            time.sleep(min(timeout_s, ADMIN_POLL_S))
            self.time_use.waited(IDLE, began)  # it sequences nothing: not the busy stage
        return 0

    def _abandon(self, decisions: Sequence[Decision], origins: Sequence[int]) -> int:
        """A stop (or a fence) came while the batch waited for the standby. The batch stays
        journaled and unpublished, as after a crash between journal and publish (the restart
        publishes it once the standby has it; a fenced one is cut by the rebuild); the
        gateways' rings are left uncommitted, so the restart reads the batch again, does not
        sequence it twice (``JournaledTail``) and answers what it owes once the standby has
        it. Refusals, which promise nothing durable, are answered now, those a gateway sent
        before its first command of the batch that waits: a later one answered now would
        overtake that command's owed answer; unanswered, it is decided again after the
        restart, in its place."""
        # the gateways with a command of the batch that waits, or of a held batch (routed
        # at close, once durable: a refusal answered now would overtake its answers)
        waits: set[int] = self._held.gateways()
        for gateway, decision in zip(origins, decisions, strict=True):
            if decision.command is not None or decision.journaled:
                waits.add(gateway)
            elif decision.reply is not None and gateway not in waits:
                self._answer(gateway, decision.reply)
        self._send_pending()
        why = "fenced" if self.acks is not None and self.acks.words[FENCED] else "stopping"
        log.warning("%s while batch %d waited for the standby: left unpublished",
                    why, self.journal.next_seq - 1)  # fmt: skip
        return len(decisions)

    def snapshot_done(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the snapshot child; True when none is running."""
        return self.snapshots.done(timeout_s)

    def _publish(self, producer: Producer[Record], records: Sequence[Record]) -> None:
        """Publish ``records``, waiting while the ring is full: drain the matchers meanwhile,
        and between drains wait as configured (a yield loop here took a third of a core from
        the gateway that the full pipeline waited on, on two cores)."""
        done = rounds = 0
        while done < len(records):
            chunk = records[done : done + producer.ring.capacity // 2]
            if producer.try_publish_batch(chunk):
                done += len(chunk)
                rounds = 0
            elif self.settle():
                rounds = 0
            else:
                began = time.perf_counter_ns()
                producer.idle_round(len(chunk), rounds)
                self.time_use.waited(FULL, began)
                rounds += 1

    def _flush_replies(self, watch_requests: Sequence[tuple[int, WatchBalances]] = ()) -> None:
        """Send what waits; balances only of a durable state: none while a batch is held
        (``held.py``), whose reservations they would show (its watches wait with it)."""
        self._watch_requests += watch_requests
        if self._watch_requests or self.watches:
            if self._durable_state():
                self._queue_balances(self._watch_requests)
                self._watch_requests = []
                self._balances_since = 0.0
            elif not self._balances_since and (self._watch_requests or self.watches.pending):
                self._balances_since = time.monotonic()  # ``_pipelined_sync`` bounds the wait
        if self._balances_since and not (self._watch_requests or self.watches.pending):
            self._balances_since = 0.0  # the watches ended meanwhile: nothing waits
        if self._owed:
            self._pay_owed()
        self._send_pending()

    def _durable_state(self) -> bool:
        """Whether the sequencer's state is durable: nothing held, and nothing journaled
        past the durable seq (a step's batch, decided and journaled, is held only after the
        held batches its fsync made durable are routed, and their route must not push its
        reservations: review 42)."""
        return not self._held and self.journal.durable_seq >= self.journal.next_seq - 1

    def _send_pending(self) -> None:
        for gateway, queue in self.pending_replies.items():
            if queue:
                send_pending(queue, self.replies[gateway])  # reply_queue.py
                if len(queue) > 100_000:
                    log.error("gateway %d does not read its replies: %d wait", gateway, len(queue))

    def _queue_balances(self, watch_requests: Sequence[tuple[int, WatchBalances]]) -> None:
        """Queue the pushes of what this step changed, then the snapshots of this step's
        watches: after the journal write, so a gateway never sees a balance that a command
        not yet durable made; pushes first, so a new watch's snapshot is not followed by a
        push of the same values."""
        now = time.time_ns()
        pending = self.pending_replies
        top, label, holds = self._labels()  # pushes and snapshots alike (reviews 42, 220)
        for gateway, balance in self.watches.take(now, top, label, holds):
            pending[gateway].append(balance)
        for gateway, request in watch_requests:  # as of the newest event applied
            pending[gateway].extend(
                self.watches.execute(gateway, request, now, label(request.account))
            )

    def run(self, stop: Callable[[], bool] = lambda: False) -> None:
        self._stop = stop  # also polled while a batch waits for the standby
        use, journal = self.time_use, self.journal
        use.begin(journal.inline_fsync_ns)
        while not (self.stopping or stop()):
            use.step_done(self.step(), journal.inline_fsync_ns)

    def close(self) -> None:
        """Make what was journaled durable and route it, then release the journal and the
        rings, whatever failed before (an fsync failing here too: review 42)."""
        try:
            if self.journal.failed is None:  # else nothing held is durable (review 42)
                self.journal.sync()
                if not self.fenced:  # a fenced primary publishes nothing held (``_fenced``)
                    self._route_durable()
            self._send_pending()  # what fits: the rest's commands are read again after a restart
            self.snapshot_done(60)
        finally:
            self.time_use.close()
            self.journal.close()
            if self.acks is not None:
                self.acks.close()
            for _g, consumer in self.inputs:
                consumer.close()
            for consumer in self.from_matchers:
                consumer.close()
            for producer in (*self.replies.values(), *self.to_matchers.values()):
                producer.close()


def _open_journal(cfg: RingexConfig, codec: RecordCodec) -> JournalWriter:
    journal = cfg.journal
    if journal.fsync == "pipelined":
        # the fsync's thread needs the GIL to start an fsync and to report it done; at
        # CPython's 5 ms a busy router held it that long each time, and batches waited
        sys.setswitchinterval(PIPELINED_SWITCH_S)
    return JournalWriter(
        journal_dir(cfg),
        slot_size=codec.slot_size,
        schema_id=codec.journal_schema_id,
        segment_bytes=journal.segment_mb << 20,
        fsync=journal.fsync,
        fsync_interval_ms=journal.fsync_interval_ms,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ringex router process")
    parser.add_argument("--profile", default="dev", help="profile name or TOML path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        shell = RouterShell(load_profile(args.profile))
    except (JournalFencedError, UnitsError, FeeChangeError) as exc:
        log.error("%s", exc)  # one line, the supervisor's reason (review 278: a traceback)
        return REFUSED
    stopped = stop_on_signals()
    gc_policy.settle(shell.cfg.gc)  # recovered: what it holds now is never walked again
    sd_notify.ready()  # recovered, the admin ring attached: what the supervisor waits for
    try:
        shell.run(sd_notify.petting(stopped))  # the stop poll, once per batch, pets the watchdog
    finally:
        sd_notify.stopping()
        shell.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
