"""The matcher process: its input ring -> ``Matcher`` -> its output ring.

    python -m procs.matcher.main --profile dev --name m1

Start, restart and crash recovery are one path:

1. find where the output ring stopped (``published_position``: every event of the commands
   up to a seq, or of the last one only the first few when a crash cut a publish short);
2. restore the newest snapshot as of that point (any, for a new ring): its own
   (``<var>/<instance>/snapshots/matcher-<name>/``) or the exchange snapshot's copy of its
   books (a later one's where it had no command in between), whichever is newer
   (``recovery.matcher_snapshot``), or start with empty books;
3. replay the journaled commands after it (the router's journal, ``procs.common.journal``)
   that are this matcher's, through the newest one the router routed to it (its input
   ring's; the whole journal on a new ring): one past it may not be durable yet
   (``routed_upto``); publishing only the events the output ring does not hold yet (on a
   new ring, whose readers start after this one is ready, only as many as it holds:
   ``_replay_fitting``);
4. consume the input ring from this matcher's committed position; a command that step 3
   already executed is skipped by its sequence number. A record that is not a command is
   logged and passed over.

Per batch: take up to ``batch`` commands, execute them, publish their events in one
``publish_batch`` (the cursor store makes it all-or-nothing up to the ring's capacity), then
commit the input. A crash between publish and commit re-executes the batch after recovery,
and step 3's rule drops the duplicate events. The first idle step after a batch marks the
output "published through" its last command (``_mark``), so that a restart of a matcher
whose symbols went quiet starts from the newest exchange snapshot, not from one before its
last command. ``AdminCommand(SNAPSHOT)`` writes a snapshot after its batch, as does every
``snapshot_every`` commands and a clean stop (SIGTERM, SIGINT or ``AdminCommand(SHUTDOWN)``).
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
import time
from array import array
from collections.abc import Callable, Iterable
from typing import TypeVar

from config import load_profile
from config.schema import RingexConfig
from procs.common import gc_policy, sd_notify
from procs.common.events_after import events_after
from procs.common.published_through import PublishedThrough
from procs.common.record_codec import RecordCodec
from procs.common.records import AdminCommand, Heartbeat, Record
from procs.common.snapshots import SnapshotStore
from procs.common.stats import LatencyHistogram, matcher_counters, matcher_page
from procs.common.stopping import stop_on_signals
from procs.common.topology import (
    MATCHER,
    RECOVERED_SOURCE,
    REPLAY_SOURCE,
    matcher_input,
    matcher_output,
    snapshot_dir,
)
from procs.common.types import AdminAction
from procs.common.units import exit_if_other_units
from procs.core.book import Book
from procs.core.engine import Matcher
from procs.core.fast_book import FastBook
from procs.core.recovery import (
    MATCHER_COMMANDS,
    journal_commands,
    journal_end,
    matcher_snapshot,
    restored,
)
from procs.core.symbols import symbol_specs
from shm import Ring
from shm.counters import Counters

T = TypeVar("T")
log = logging.getLogger("ringex.matcher")

#: The consumer name a matcher takes on its input ring.
INPUT_CONSUMER = MATCHER
#: ``events``' place on the stats page (``matcher_counters``: after ``last_seq``).
EVENTS = 1


class MatcherShell:
    """The I/O around one ``Matcher``: rings, snapshots, recovery. ``step()`` is one batch."""

    def __init__(
        self,
        cfg: RingexConfig,
        name: str,
        *,
        replay: Iterable[Record] | None = None,
        codec: RecordCodec | None = None,
        book_cls: type[Book] = FastBook,
    ) -> None:
        self.cfg = cfg
        self.settings = cfg.matcher(name)
        self.codec = codec or RecordCodec()
        self.store = SnapshotStore(snapshot_dir(cfg, f"matcher-{name}"))
        specs = symbol_specs(cfg, name)
        out_ring = Ring.attach(cfg.instance, matcher_output(name), self.codec)
        #: Events of commands up to this sequence are in the output ring already; of the
        #: one at it, only the first ``_partial`` when that is not None (a publish cut short).
        self.published_upto, self._partial = published_position(out_ring)
        #: the events of ``published_upto`` the ring holds when they fill it (``lapped``)
        self._lapped = [] if self._partial is None else lapped(out_ring, self.published_upto)
        fresh = out_ring.cursor() == 0  # new rings: their readers catch up from the marks
        complete = self.published_upto - (self._partial is not None)
        bounds = None if fresh else (self.published_upto, complete)
        latest = matcher_snapshot(cfg, name, bounds)
        # those past the journal's end, passed over above, are gone for good: the new history
        # will pass their seqs (review 273); read after: it only grows while a router appends
        if (end := journal_end(cfg)) is not None:
            self.store.discard_after(end)
        if latest is None:
            self.matcher = Matcher(specs, book_cls)
        else:
            self.matcher = restored(cfg, name, latest[1], book_cls)
            log.info("matcher %s restored the snapshot of seq %d", name, latest[0])
        self._since_snapshot = 0
        self.stats = Counters.open(cfg.instance, matcher_page(name), matcher_counters(cfg, name))
        self.queue_latency = LatencyHistogram()  # sequenced -> read, per batch (``stats.py``)
        self.producer = out_ring.producer(cfg.wait.build())
        in_ring = Ring.attach(cfg.instance, matcher_input(name), self.codec)
        if replay is None:
            # the exchange snapshot's copy holds every command up to its seq, which may be
            # past the last one of this matcher's symbols (its own ``last_seq``)
            after = max(self.matcher.last_seq, latest[0] if latest is not None else 0)
            upto = routed_upto(in_ring)
            replay = journal_commands(cfg, name, after=after, codec=self.codec, upto=upto)
        if fresh:  # no reader yet: what it cannot hold would wait for ever (review 266)
            # (room for the replay's mark and the recovered one: a replay that fits is whole)
            replayed = self._replay_fitting(replay, out_ring.geometry.capacity - 2)
        else:
            mark = Heartbeat(time.time_ns(), REPLAY_SOURCE, self.matcher.last_seq)
            self.producer.publish_batch([mark])
            replayed = self._replay(replay)
        # commands sequenced before now waited for the recovery: not counted as queueing
        self._started_ns = time.time_ns()
        self._count()
        self._marked = -1  # the counter of this process's newest "published through" mark
        #: the archive bound's copy of the marks (``published_through.py``)
        self.published = PublishedThrough(self.store.directory)
        self._mark()  # "executed through": a starting router resends only what comes after it
        self.published_upto = max(self.published_upto, self.matcher.last_seq)
        self._partial, self._lapped = None, []
        self.consumer = in_ring.consumer(INPUT_CONSUMER, cfg.wait.build(), auto_commit=False)
        self.stopping = False
        log.info(
            "matcher %s up: symbols %s, last seq %d, replayed %d, output at seq %d",
            *(name, self.settings.symbols, self.matcher.last_seq, replayed, self.published_upto),
        )

    def _replay(self, commands: Iterable[Record]) -> int:
        count = 0
        for chunk in _chunks(commands, self.settings.batch):
            self._publish([e for c in chunk for e in self._execute(c)])
            count += len(chunk)
        return count

    def _replay_fitting(self, commands: Iterable[Record], room: int) -> int:
        """Replay into a new ring, whose readers start once this matcher is ready: its mark,
        then the events of the replay, or, where they are more than ``room``, those of the
        newest commands that fit (review 266: a replay that filled the ring waited for ever
        for readers the supervisor releases after it, and a crashed instance never started
        again). The mark's seq is then the last command left out: the ring holds every event
        after it. The gateways make the earlier ones again from the journal
        (``procs/gateway/recovery.py``); the market data sets its books at the mark
        (``procs/marketdata/reseed.py``), and its tape, ticker and candles miss the trades
        left out (README: the database has them)."""
        kept: collections.deque[tuple[int, list[Record]]] = collections.deque()
        held, mark, count, first = 0, self.matcher.last_seq, 0, self.matcher.last_seq
        for command in commands:
            events = self._execute(command)
            count += 1
            if events:
                kept.append((_seq(events[0]), events))
                held += len(events)
            while held > room:
                mark, dropped = kept.popleft()
                held -= len(dropped)
        if mark != first:
            log.warning(
                "matcher %s: its replay's events are more than its new output ring holds: "
                "those of seqs up to %d left out (its readers make them again)",
                self.settings.name, mark,
            )  # fmt: skip
        self.producer.publish_batch([Heartbeat(time.time_ns(), REPLAY_SOURCE, mark)])
        for chunk in _chunks(kept, self.settings.batch):  # (a batch of commands, as _replay)
            self._publish([e for _, events in chunk for e in events])
        return count

    def _execute(self, command: Record) -> list[Record]:
        """A command's events; a record that is not a command (a bug upstream) is logged and
        passed over, never the end of this process (nor, left uncommitted, of the next)."""
        if type(command) not in MATCHER_COMMANDS:
            log.error("matcher input holds %r, which is not a command: ignored", command)
            return []
        return self.matcher.execute(command)

    def _publish(self, events: list[Record]) -> None:
        if events and _seq(events[0]) <= self.published_upto:
            upto = self.published_upto
            if self._lapped and any(_seq(e) == upto for e in events):
                self._partial = published_part(events, upto, self._lapped)
                self._lapped = []
            events, self._partial = events_after(events, self.published_upto, self._partial)
        if events:
            self.producer.publish_batch(events)
            # counted on the page, which outlives this process (review 296: the metrics took
            # the ring's records, the marks among them, for events)
            self.stats.values[EVENTS] += len(events)

    def step(self, timeout_s: float = 0.2) -> int:
        """Execute one batch from the input ring; returns how many commands it took."""
        commands = self.consumer.take(self.settings.batch, timeout_s=timeout_s)
        if not commands:
            if self._marked != self.matcher.last_seq:
                self._mark(wait=False)
            elif self._marked >= 0:  # (a burst's last mark, written within a second)
                self.published.note(self._marked)
            self.consumer.heartbeat()
            self.producer.heartbeat()
            return 0
        sequenced = getattr(commands[0], "ts_ns", 0)  # the oldest: the batch's longest wait
        if sequenced >= self._started_ns:
            self.queue_latency.record(time.time_ns() - sequenced)
        execute, kinds = self.matcher.execute, MATCHER_COMMANDS
        events: list[Record] = []
        snapshot = False
        for command in commands:  # _execute, inlined: a call per command is ~7% of a step
            kind = type(command)
            if kind not in kinds:
                events += self._execute(command)  # says what it is, and passes it over
                continue
            events += execute(command)
            if kind is AdminCommand and isinstance(command, AdminCommand):  # (narrows for mypy)
                if command.action == AdminAction.SNAPSHOT:
                    snapshot = True
                elif command.action == AdminAction.SHUTDOWN:
                    snapshot = self.stopping = True
        self._publish(events)
        self.consumer.commit()
        self._count()
        self._since_snapshot += len(commands)
        every = self.settings.snapshot_every
        if snapshot or (every and self._since_snapshot >= every):
            self.save_snapshot()
        return len(commands)

    def _count(self) -> None:
        """Store the metrics' counters (``procs.common.stats``): one word each per batch."""
        values = self.stats.values
        values[0] = self.matcher.last_seq
        books = self.matcher.books.values()
        for k, book in enumerate(books, start=2):  # (after last_seq and events)
            values[k] = book.next_trade_id - 1
        # the queue histogram's words, last: one copy (a store each took 2.5 us a batch)
        values[len(books) + 2 :] = array("Q", self.queue_latency.values())

    def save_snapshot(self) -> None:
        # "executed and published through": a command with no events (a mass cancel that
        # found nothing, a SNAPSHOT) leaves the output's last event behind ``last_seq``, and
        # a restart takes no snapshot past where the output says it got
        self._mark()
        self._since_snapshot = 0  # (a failed one is tried again as many commands later)
        try:
            path = self.store.save(self.matcher.last_seq, self.matcher.snapshot())
        except OSError as exc:  # a full disk: the journal holds every command, a snapshot
            log.error(  # only shortens a replay; the matcher goes on (review 211)
                "snapshot at seq %d not saved in %s: %s",
                self.matcher.last_seq, self.store.directory, exc,
            )  # fmt: skip
            return
        log.info("snapshot at seq %d: %s", self.matcher.last_seq, path)

    def _mark(self, *, wait: bool = True) -> None:
        """Mark the output "executed and published through ``last_seq``" (a ``Heartbeat``
        of ``RECOVERED_SOURCE``), as a start, a snapshot and the first idle step after a
        batch do: the ring's newest record is then no longer a command's events, which a
        restart must take as maybe cut short (``published_position``) and replay from a
        snapshot before that command; a matcher whose symbols went quiet would have only
        one from before its last command, long pruned, and replay the journal from its
        first entry. An idle step's mark waits for no room: the next idle step tries again."""
        mark = Heartbeat(time.time_ns(), RECOVERED_SOURCE, self.matcher.last_seq)
        if wait:
            self.producer.publish_batch([mark])
        elif not self.producer.try_publish_batch([mark]):
            return
        self._marked = self.matcher.last_seq
        self.published.note(self._marked)

    def run(self, stop: Callable[[], bool] = lambda: False) -> None:
        while not (self.stopping or stop()):
            self.step()
        self.save_snapshot()

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()
        self.stats.close()


def published_position(ring: Ring[Record]) -> tuple[int, int | None]:
    """Where a matcher's output stopped, as ``(seq, partial)``: every event of the commands
    up to ``seq`` is in ``ring`` (``partial`` None), or of the command at ``seq`` only the
    first ``partial`` (a publish larger than the ring, cut short by a crash). A mark that a
    replay started (``REPLAY_SOURCE``, the seq after which the ring has the events) says nothing of
    what went out, so the walk goes back past it, except on a ring that holds nothing before
    it (a start on new rings killed before its replay published anything): its readers catch
    up from that mark, as from the state at its seq. The ``RECOVERED_SOURCE`` mark says
    "executed and published through its counter"."""
    cursor = ring.cursor()
    lowest = max(0, cursor - ring.capacity)
    seq = count = 0
    first_mark: Heartbeat | None = None
    for n in range(cursor - 1, lowest - 1, -1):
        record = ring.record(n)
        if isinstance(record, Heartbeat):
            if count:
                break
            if record.source == REPLAY_SOURCE:
                first_mark = record
                continue
            return record.counter, None
        if count and _seq(record) != seq:
            break
        seq, count = _seq(record), count + 1
    if not count and not lowest and first_mark is not None:
        return first_mark.counter, None  # nothing but marks since the ring was made
    return (seq, count) if count else (0, None)


def lapped(ring: Ring[Record], seq: int) -> list[Record]:
    """The events of ``seq`` in ``ring`` when they fill it from its oldest record on (a
    command that answered more events than the ring holds: a mass cancel, an end of
    session), else []. ``published_position`` can count only these; how many went out is
    where they end among all of that command's events, which the replay makes again
    (``published_part``)."""
    cursor = ring.cursor()
    if cursor <= ring.capacity:
        return []
    oldest = cursor - ring.capacity
    events = []
    for n in range(oldest, cursor):  # ends at the first record that says []: often the first
        record = ring.record(n)
        if isinstance(record, Heartbeat):
            if n == oldest and record.source == RECOVERED_SOURCE:
                return []  # the walk stopped at a mark: it counted every event since
            continue  # the restarts' REPLAY marks (events of the seq may precede one)
        if _seq(record) != seq:
            return []
        events.append(record)
    return events


def published_part(events: list[Record], seq: int, held: list[Record]) -> int:
    """How many events of ``seq`` (all of them among ``events``) went out, given the newest
    ones, which filled the ring (``held``): the end of the first run of them equal to
    ``held``. Events are made deterministically, so a run is found; if none is, the count
    held (what the ring shows, at least)."""
    made = [e for e in events if _seq(e) == seq]
    size = len(held)
    for end in range(size, len(made) + 1):
        if made[end - 1] == held[-1] and made[end - size : end] == held:
            return end
    log.warning("output ring: the newest %d events of seq %d are not among the %d the replay "
                "made: %d counted as published", size, seq, len(made), size)  # fmt: skip
    return size


def routed_upto(in_ring: Ring[Record]) -> int | None:
    """How far a restarting matcher may replay the journal: through the newest command the
    router routed to it (None: a new input ring, the whole journal). The router journals a
    batch before it routes it and holds it until it is durable (``fsync = "interval"`` or
    ``"pipelined"``, or sync replication's standby acknowledgement): a command past its
    newest routed one may not be durable yet, and its events would be execution reports of
    it. The router routes it once durable, or a restarted router resends it
    (``RouterShell._resend_unrouted``)."""
    newest = in_ring.last_published()
    return None if newest is None else getattr(newest, "seq", None)  # every command has one


def _seq(event: Record) -> int:
    # Every event a matcher publishes carries its command's seq; the Record base does not.
    return event.seq  # type: ignore[attr-defined,no-any-return]


def _chunks(items: Iterable[T], size: int) -> Iterable[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ringex matcher process")
    parser.add_argument("--profile", default="dev", help="profile name or TOML path")
    parser.add_argument("--name", required=True, help="which [[matchers]] entry this is")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load_profile(args.profile)
    exit_if_other_units(cfg, f"matcher {args.name}")  # a unit restarted on an edited profile
    shell = MatcherShell(cfg, args.name)
    # a publish held back by a slow reader of its events waits (the reader has a watchdog of
    # its own): it pets the watchdog as the stop poll does (review 189), and beats on its
    # input line, so that the supervisor's stuck check takes it for waiting and finds the
    # reader that holds it back, frozen (review 218: the matcher was killed in its place)
    shell.producer.on_wait = sd_notify.petting(shell.consumer.heartbeat)
    stopped = stop_on_signals()
    gc_policy.settle(cfg.gc)  # recovered: the restored books are never walked again
    sd_notify.ready()  # recovered, the input ring attached: what the supervisor waits for
    try:
        shell.run(sd_notify.petting(stopped))  # the stop poll, once per batch, pets the watchdog
    finally:
        sd_notify.stopping()
        shell.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
