"""Rebuild the exchange's state from the newest snapshot and the journal after it.

The router's startup and ``ringex replay`` take this one path (crash-only: a restart is a
recovery). A snapshot here is the router's state *and* every matcher's books at one sequence
number, so the journal tail can be replayed through matcher cores inside this process: each
command is re-applied to the router's accounts and executed by its matcher, and the events
settle, exactly as live. After it, every event of every journaled command is settled
(``settled_upto``), so a restarted router ignores those events when the live matchers publish
them again.

    var/<instance>/journal/                 the sequenced command stream (journal.py)
    var/<instance>/snapshots/exchange/      <seq>.snap: ExchangeSnapshot
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from config.schema import RingexConfig
from procs.common.journal import JournalArchivedError, JournalReader, ReplayError, list_segments
from procs.common.record_codec import RecordCodec
from procs.common.records import (
    AdminCommand,
    CancelOrder,
    CreateAccount,
    MassCancel,
    NewOrder,
    OrderRecord,
    Record,
    ReplaceOrder,
    SymbolRules,
    Transfer,
)
from procs.common.rules_version import RULES_VERSION
from procs.common.snapshots import SnapshotStore
from procs.common.topology import ADMIN_GATEWAY, journal_archive_dir, journal_dir, snapshot_dir
from procs.common.units import removed_assets, removed_symbols
from procs.core.accounts import Accounts
from procs.core.book import Book
from procs.core.engine import Matcher
from procs.core.fast_book import FastBook
from procs.core.replay_pipeline import ReplayChildError, replay_in_child
from procs.core.sequencer import RouterState, Sequencer
from procs.core.symbols import symbol_specs

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (commands replayed, commands in all)
Observer = Callable[[list[Record]], None]  # a matcher's events of one command, as executed


#: What identifies a gateway's command: its type and routing header (client refs are unique
#: per gateway: a counter that starts at the wall clock in ns).
Identity = tuple[type, int, int, int, int]


def identity(command: Record) -> Identity | None:
    """A gateway command's identity; an admin command's by the reference its client puts
    in ``arg``; None for one without (an admin command from an older client)."""
    if isinstance(command, AdminCommand):
        return (AdminCommand, ADMIN_GATEWAY, 0, command.arg, 0) if command.arg else None
    if not isinstance(command, (OrderRecord, MassCancel, CreateAccount, Transfer)):
        return None
    return (type(command), command.gateway, command.session, command.client_ref, command.account)


class JournaledTail:
    """The newest ``per_gateway`` journaled commands of each gateway, by identity.

    A router killed between journaling a batch and committing its read of the gateways'
    rings (both cannot be one step) finds that batch in the rings again after its restart:
    the commands of it are in the journal, recovered, and must not be sequenced twice. They
    are among the newest journaled of their gateway (its ring holds at most its capacity
    unread), so among the journal's newest ``per_gateway`` x ``gateways`` entries, which
    ``recover`` reads whatever snapshot it starts from (one may be newer than the commit:
    ``ringex replay --snapshot``, or a ring left uncommitted while its replies wait); the
    router drops what it reads again that this tail holds (``RouterShell``)."""

    @classmethod
    def for_config(cls, cfg: RingexConfig) -> JournaledTail:
        """The router's: a ring's capacity for every gateway, and the admin's ring."""
        return cls(cfg.ring.capacity, len(cfg.gateways) + 1)

    def __init__(self, per_gateway: int, gateways: int = 1) -> None:
        self.per_gateway = per_gateway
        self.window = per_gateway * gateways  # the journal's newest entries it looks at
        self._newest: dict[int, deque[tuple[Identity, int]]] = {}

    def add(self, command: Record) -> None:
        key = identity(command)
        if key is not None:
            newest = self._newest.get(key[1])
            if newest is None:
                newest = self._newest[key[1]] = deque(maxlen=self.per_gateway)
            newest.append((key, command.seq))  # type: ignore[attr-defined]

    def clear(self) -> None:
        """Forget every command added (a replay that starts over)."""
        self._newest.clear()

    def by_gateway(self) -> dict[int, dict[Identity, int]]:
        """gateway -> {identity: the seq it was journaled at}."""
        return {gateway: dict(keys) for gateway, keys in self._newest.items()}


class ExchangeSnapshot(msgspec.Struct, frozen=True, array_like=True):
    seq: int  # every command up to here is in the state, and all its events settled
    router: bytes
    matchers: dict[str, bytes]


@dataclass
class Recovered:
    sequencer: Sequencer
    matchers: dict[str, Matcher]
    last_seq: int  # the journal's last command
    snapshot_seq: int  # where the replay started from (0: the beginning)
    replayed: int
    seconds: float
    #: each matcher's last command (``Matcher.last_seq``) in the snapshot the replay started
    #: from: what it held at ``snapshot_seq`` (``unrouted``)
    snapshot_last: dict[str, int] = field(default_factory=dict)

    def apply(self, command: Record, observe: Observer | None = None) -> None:
        """One more journaled command, as live: re-applied to the accounts, executed by its
        matcher(s), the events settled (and shown to ``observe``). A hot standby calls it per
        replicated entry."""
        self.sequencer.replay(command)
        for name in self.sequencer.matchers_for(command):
            events = self.matchers[name].execute(command)
            self.sequencer.settle(events)
            if observe is not None:
                observe(events)
        self.last_seq = command.seq  # type: ignore[attr-defined]
        self.sequencer.applied(self.last_seq)

    def state_hashes(self) -> dict[str, str]:
        hashes = {"router": self.sequencer.accounts.state_hash()}
        hashes |= {f"matcher {name}": m.state_hash() for name, m in self.matchers.items()}
        return hashes

    def snapshot(self) -> ExchangeSnapshot:
        return ExchangeSnapshot(
            self.last_seq,
            self.sequencer.snapshot(),
            {name: m.snapshot() for name, m in self.matchers.items()},
        )


def snapshot_store(cfg: RingexConfig) -> SnapshotStore:
    return SnapshotStore(snapshot_dir(cfg, "exchange"))


def fresh(cfg: RingexConfig) -> tuple[Sequencer, dict[str, Matcher]]:
    sequencer = Sequencer(cfg, Accounts(cfg))
    matchers = {m.name: Matcher(symbol_specs(cfg, m.name)) for m in cfg.matchers}
    return sequencer, matchers


#: The shortest tail ``recover(pipelined=True)`` forks for: below it, a fork and a pipe cost
#: more than the second core saves (a few ms against ~6 us a command).
PIPELINE_MIN = 20_000


def recover(
    cfg: RingexConfig,
    *,
    codec: RecordCodec | None = None,
    progress: Progress | None = None,
    use_snapshot: bool = True,
    observe: Observer | None = None,
    upto: int | None = None,
    tail: JournaledTail | None = None,
    pipelined: bool = False,
) -> Recovered:
    """The state after the newest snapshot and the journal after it (through ``upto`` when
    given). A snapshot past the journal's end is an error: the journal lost a tail the
    snapshot had read (possible only with fsync "none" or "interval").

    ``pipelined``: a tail of ``PIPELINE_MIN`` commands or more replays in two processes
    (``replay_pipeline.py``: the matchers in a forked child), same result in about half the
    time; a startup's choice (router, ``ringex replay``), not a background snapshot's, which
    must leave the second core to the live exchange. Not with ``observe``."""
    codec = codec or RecordCodec()
    try:
        if pipelined and observe is None:
            try:
                return _recover(
                    cfg, codec, progress, use_snapshot, None, upto, tail, pipelined=True
                )
            except ReplayChildError as exc:
                log.warning("pipelined replay failed (%s): replaying in one process", exc)
                if tail is not None:
                    tail.clear()
        return _recover(cfg, codec, progress, use_snapshot, observe, upto, tail, pipelined=False)
    except ValueError as exc:  # a ReplayError too; one for want of a symbol removed blames it
        said = "are not in the config" in str(exc)  # by ``restored``, naming the matcher
        if (gone := removed_symbols(cfg)) and "symbol" in str(exc).lower() and not said:
            raise ReplayError(
                f"{exc}: the journal's symbols {gone} are not in the config, and its replay "
                "or snapshot still needs them: configure them again, on their matchers (a "
                "symbol may stay halted for good; one leaves only with its orders cancelled "
                "and its matcher with it, its commands behind a snapshot) (reviews 206, 212)"
            ) from exc
        unknown = "unknown asset" in str(exc).lower() or "UNKNOWN_ASSET" in str(exc)
        if unknown and (gone := removed_assets(cfg)):
            raise ReplayError(
                f"{exc}: the journal's assets {gone} are not in the config, and its replay "
                "or snapshot still holds balances in them: configure them again (an asset "
                "leaves only once every balance in it is withdrawn, its commands behind a "
                "snapshot) (review 278)"
            ) from exc
        raise


def _recover(
    cfg: RingexConfig,
    codec: RecordCodec,
    progress: Progress | None,
    use_snapshot: bool,
    observe: Observer | None,
    upto: int | None,
    tail: JournaledTail | None,
    *,
    pipelined: bool,
) -> Recovered:
    started = time.perf_counter()
    sequencer, matchers, start = from_snapshot(cfg) if use_snapshot else (*fresh(cfg), None)
    reader = journal_reader(cfg, codec)  # (archived: a demote past them sets snapshots aside)
    # what is made again must have been sequenced under this build's rules; the tail's part
    # before the snapshot is only looked at
    replayed_from = reader.under(RULES_VERSION)
    last = reader.last_seq() if journal_dir(cfg).exists() else 0
    if start is not None and start > last:
        raise ReplayError(
            f"the newest exchange snapshot is at seq {start}, past the journal's last entry "
            f"{last}: the journal lost its tail (journal.fsync = {cfg.journal.fsync!r}); move "
            f"{snapshot_store(cfg).path(start)} aside to recover from the one before it"
        )
    start = start or 0
    snapshot_last = {name: m.last_seq for name, m in matchers.items()}
    if upto is not None:
        last = min(last, upto)
    if tail is not None and start:  # the tail's part at or before the snapshot
        kept = list_segments(journal_dir(cfg))  # from the first entry not archived
        first = max(1, last - tail.window + 1, kept[0][0] if kept else 1)
        # (a build of another layout starts from a snapshot past them: no ring of this build
        # holds their commands, so they are passed over, not decoded)
        for seq, image in reader.entries(first, foreign="skip"):
            if seq > start:
                break
            tail.add(codec.decode_slot(image))
    total = max(0, last - start)
    replayed = 0

    def replay(items: Iterable[tuple[Record, list[list[Record]]]]) -> None:
        """Journaled commands, as live: each re-applied to the accounts, its matchers' events
        settled (the matchers ran it already: here, or in the pipeline's child)."""
        nonlocal replayed
        again, settle = sequencer.replay, sequencer.settle
        for command, events_by_matcher in items:
            again(command)
            for events in events_by_matcher:
                settle(events)
                if observe is not None:
                    observe(events)
            if tail is not None:
                tail.add(command)
            replayed += 1
            if progress is not None and replayed % 10_000 == 0:
                progress(replayed, total)

    if pipelined and total >= PIPELINE_MIN:
        states = replay_in_child(
            *(replayed_from.entries(start + 1), last, codec, sequencer.matchers_for, matchers),
            replay,
            frozenset(sequencer.accounts.handlers),  # what settling takes: not book levels
        )
        matchers = restore_matchers(cfg, states)
    elif total:
        decode, route = codec.decode_slot, sequencer.matchers_for

        def executed() -> Iterator[tuple[Record, list[list[Record]]]]:
            for seq, image in replayed_from.entries(start + 1):
                if seq > last:
                    return
                command = decode(image)
                yield command, [matchers[name].execute(command) for name in route(command)]

        replay(executed())
    sequencer.applied(max(last, start))
    if progress is not None:
        progress(replayed, total)
    return Recovered(
        sequencer,
        matchers,
        max(last, start),
        start,
        replayed,
        time.perf_counter() - started,
        snapshot_last,
    )


def from_snapshot(cfg: RingexConfig) -> tuple[Sequencer, dict[str, Matcher], int | None]:
    """Router and matchers from the newest exchange snapshot, and its seq; fresh ones and
    None where there is none."""
    latest = snapshot_store(cfg).latest()
    if latest is None:
        return (*fresh(cfg), None)
    try:
        snap = msgspec.msgpack.decode(latest[1], type=ExchangeSnapshot)
    except msgspec.DecodeError as exc:
        path = snapshot_store(cfg).path(latest[0])
        raise ReplayError(f"snapshot {path} does not decode ({exc}): move it aside") from exc
    matchers = restore_matchers(cfg, snap.matchers, snap.seq)
    return Sequencer.restore(cfg, snap.router), matchers, snap.seq


def journal_commands(
    cfg: RingexConfig, name: str, *, after: int, codec: RecordCodec, upto: int | None = None
) -> Iterator[Record]:
    """The journaled commands after ``after`` (through ``upto`` when given) that matcher
    ``name`` executes: its symbols' orders and rules, and mass cancels and admin commands for
    its symbols or for all (symbol 0)."""
    directory = journal_dir(cfg)
    if not directory.exists():
        return
    if upto is not None and upto <= after:
        return  # nothing to read: not even the entry past ``upto`` that would end the loop
    mine = {cfg.symbol(s).id for s in cfg.matcher(name).symbols} | {0}
    reader = journal_reader(cfg, codec, rules=RULES_VERSION)  # (an own snapshot, archived)
    for seq, image in reader.entries(after + 1):
        if upto is not None and seq > upto:
            return
        command = codec.decode_slot(image)
        if isinstance(command, MATCHER_COMMANDS) and command.symbol in mine:
            yield command


def unrouted(
    cfg: RingexConfig,
    recovered: Recovered,
    held: Mapping[str, int],
    last_seq: int,
    codec: RecordCodec,
) -> dict[str, list[Record]]:
    """The journaled commands through ``last_seq`` each matcher of ``held`` lacks, in order
    (a restarting router's check, ``RouterShell._resend_unrouted``), the journal read once
    for all of them. ``held[name]``: the newest seq it has (its input ring's newest command,
    or its mark of how far it recovered), so it has every command of it up to there.

    Each is looked for from where one may be, not from ``held`` (a matcher whose symbols
    were idle holds a seq long past): the recovered books say where each matcher's newest
    command up to the recovered seq is, and the snapshot's where its newest up to the
    snapshot was; at or before ``held``, it lacks nothing up to that seq. Else (a command
    journaled before the snapshot and never routed: a kill between the journal's write and
    the publish, just after the fork) from the newest older exchange snapshot whose copy of
    its books is at or before ``held`` (it had no command between), else from ``held``: a
    quiet matcher's may be months back, archived since (review 75)."""
    first = {}
    for name, have in held.items():
        after = have
        if recovered.matchers[name].last_seq <= have:
            after = max(have, recovered.last_seq)
        elif recovered.snapshot_last.get(name, 0) <= have:  # (0: no snapshot)
            after = max(have, recovered.snapshot_seq)
        elif older := _exchange_books(snapshot_store(cfg), name, recovered.snapshot_seq, have):
            after = max(have, older[0])
        if after < last_seq:
            first[name] = after + 1
    missing: dict[str, list[Record]] = {name: [] for name in first}
    if not first:
        return missing
    reader = journal_reader(cfg, codec)  # from a quiet matcher's held seq: archived? (75)
    route = recovered.sequencer.matchers_for
    for seq, image in reader.entries(min(first.values())):
        if seq > last_seq:
            break
        command = codec.decode_slot(image)
        for name in route(command):
            if seq >= first.get(name, seq + 1):
                missing[name].append(command)
    return missing


MATCHER_COMMANDS = (NewOrder, CancelOrder, ReplaceOrder, MassCancel, AdminCommand, SymbolRules)


def restore_matchers(
    cfg: RingexConfig, books: Mapping[str, bytes], seq: int | None = None
) -> dict[str, Matcher]:
    """Every configured matcher from a snapshot's ``books`` (matcher name -> its state), the
    snapshot of ``seq``. One the snapshot lacks was added to the config since (one moved from
    another matcher, or a matcher renamed, is refused before anything starts: ``units.py``
    pins each symbol's matcher): rebuilt from its newest snapshot and the journal after it
    (``matchers_at``; new, no command of the journal is its: empty), as its process does
    (review 226: one listed again began with fresh books here, its trade ids given again,
    its halts forgotten); empty too when the journal it would replay is archived."""
    matchers = {}
    for m in cfg.matchers:
        if m.name in books:
            matchers[m.name] = restored(cfg, m.name, books[m.name])
            continue
        again = matchers_at(cfg, {m.name: seq}) if seq is not None else None  # (review 234)
        matchers[m.name] = Matcher(symbol_specs(cfg, m.name)) if again is None else again[m.name]
    return matchers


def restored(
    cfg: RingexConfig, name: str, snapshot: bytes, book_cls: type[Book] = FastBook
) -> Matcher:
    """Matcher ``name`` from its ``snapshot``; one holding a book of a symbol the config took
    from it is refused naming both (review 212: the ids alone were said)."""
    try:
        return Matcher.restore(symbol_specs(cfg, name), snapshot, book_cls)
    except ValueError as exc:
        gone = removed_symbols(cfg) or "some"
        raise ReplayError(
            f"matcher {name}: {exc}; the journal's symbols {gone} are not in the config: "
            f"configure them again on {name} (a symbol may stay halted for good)"
        ) from exc


def matchers_at(
    cfg: RingexConfig, upto: Mapping[str, int], codec: RecordCodec | None = None
) -> dict[str, Matcher] | None:
    """The matchers ``upto`` names, each as it was after the command of seq ``upto[name]``,
    rebuilt from the newest snapshot of it as of that seq (its own, or the exchange
    snapshot's copy of its books, which may be a later one's where the matcher had no
    command in between: ``matcher_snapshot``) and its journaled commands after it (read
    from the archive too, as the matcher process does: review 235), or from nothing; None
    when the snapshots kept are all past the seq, or the archive lacks what it replays."""
    codec = codec or RecordCodec()
    matchers = {}
    for name, seq in upto.items():
        specs = symbol_specs(cfg, name)
        start = matcher_snapshot(cfg, name, (seq, seq))
        matcher = Matcher(specs) if start is None else restored(cfg, name, start[1])
        after = max(matcher.last_seq, start[0] if start is not None else 0)
        if matcher.last_seq > seq:
            return None
        try:
            for command in journal_commands(cfg, name, after=after, codec=codec, upto=seq):
                matcher.execute(command)  # the books are wanted, not the events: none kept
        except JournalArchivedError:
            return None  # what it would replay is gone from the journal and its archive
        matchers[name] = matcher
    return matchers


def matcher_snapshot(
    cfg: RingexConfig, name: str, upto: tuple[int, int] | None = None
) -> tuple[int, bytes] | None:
    """Where matcher ``name`` restarts from: the newer of its own snapshot and the exchange
    snapshot's copy of its books, as ``(seq, state)`` (its replay goes on after ``seq``);
    with ``upto`` (own, exchange), each as of its bound (a matcher whose output ring holds
    the events up to there: a newer snapshot would skip commands whose events it never
    published; its own snapshots are written after their events went out, so their bound
    may be one seq further). An exchange snapshot past the bound will do when its copy's
    last command is at or before it (``_exchange_books``): a matcher whose symbols were idle
    restarts from the newest one, not from one before its last command, long pruned. The
    router's snapshot children write the latter every ``journal.snapshot_every`` commands
    off every loop, so a restarting matcher replays no longer a tail than the router does,
    however rarely it snapshots itself (its own snapshots pause its loop)."""
    own_store = SnapshotStore(snapshot_dir(cfg, f"matcher-{name}"))
    store = snapshot_store(cfg)
    # Never past the journal's end: with fsync "none" a power loss can take a tail the
    # matcher had executed and snapshotted; the router sequences those seqs anew.
    end = journal_end(cfg)
    if end is None:  # no journal at all (a matcher fed its replay by hand)
        end = 1 << 62
    own_bound, exchange_bound = (end, end) if upto is None else upto
    own = own_store.at_or_before(min(own_bound, end))
    lacking: list[tuple[int, bytes]] = []  # the exchange snapshot the walk stopped at
    exchange = _exchange_books(store, name, end, exchange_bound, lacking)
    if exchange is None and own is None and lacking:
        return _added_since(cfg, name, *lacking[0])
    if exchange is None or (own is not None and own[0] >= exchange[0]):
        return own
    return exchange


def _added_since(cfg: RingexConfig, name: str, seq: int, router: bytes) -> tuple[int, bytes] | None:
    """Matcher ``name``, of no snapshot at all, as of the exchange snapshot of ``seq``
    that lacks it (the one ``_exchange_books`` stopped at: review 245), where its router
    (``router``, its state) journaled rules for none of its symbols: added since (the router
    journals a symbol's rules at the first start that lists it, before any of its orders),
    so it had no command up to there: empty books, its replay from there on, not from the
    journal's first entry, which may be an older build's (other rules, another layout,
    archived or not: refused, review 241). None where that cannot be told: a snapshot from
    before the router kept the rules (it keeps those of a symbol removed since: one listed
    again replays from the start, review 226)."""
    journaled = {rules[0] for rules in msgspec.msgpack.decode(router, type=RouterState).rules}
    mine = {cfg.symbol(s).id for s in cfg.matcher(name).symbols}
    if not journaled or mine & journaled:
        return None
    return seq, Matcher(symbol_specs(cfg, name)).snapshot()


class MatcherHead(msgspec.Struct, frozen=True, array_like=True):
    """The head of a matcher's state (``engine.MatcherState``): its last command; the books
    after it are passed over undecoded."""

    last_seq: int


def _exchange_books(
    store: SnapshotStore,
    name: str,
    end: int,
    bound: int,
    lacking: list[tuple[int, bytes]] | None = None,
) -> tuple[int, bytes] | None:
    """The newest exchange snapshot at or before the journal's ``end`` whose copy of matcher
    ``name``'s books has executed no command past ``bound``, as ``(its seq, the books)``.

    Its seq may be past ``bound``: the copy's ``last_seq`` is the matcher's newest command
    at or before that seq (every command routed to a matcher advances it), so the matcher
    had none after ``bound`` up to there, and the books are its state as of ``bound`` too.
    A snapshot at or before ``bound`` always qualifies, so this is never older than the
    newest one at or before it. None when there is none, or the snapshot lacks the matcher
    (added to the config since: that snapshot's seq and router state appended to
    ``lacking``)."""
    below = end
    while (found := store.at_or_before(below)) is not None:
        seq, data = found
        snapshot = msgspec.msgpack.decode(data, type=ExchangeSnapshot)
        books = snapshot.matchers.get(name)
        if books is None:
            if lacking is not None:
                lacking.append((seq, snapshot.router))
            return None
        if seq <= bound or msgspec.msgpack.decode(books, type=MatcherHead).last_seq <= bound:
            return seq, books
        below = seq - 1
    return None


def journal_reader(
    cfg: RingexConfig, codec: RecordCodec, *, rules: int | None = None
) -> JournalReader:
    """A reader of the instance's journal that reads archived segments where the journal no
    longer has them (``journal.archive_dir``): what reads from a seq a snapshot, a standby
    or a history hash may name."""
    return JournalReader(
        journal_dir(cfg),
        slot_size=codec.slot_size,
        schema_id=codec.journal_schema_id,
        archive=journal_archive_dir(cfg),
        rules=rules,
    )


def journal_end(cfg: RingexConfig, codec: RecordCodec | None = None) -> int | None:
    """The journal's last seq (0: no entry yet); None where there is no journal."""
    if not journal_dir(cfg).exists():
        return None
    codec = codec or RecordCodec()
    reader = JournalReader(
        journal_dir(cfg), slot_size=codec.slot_size, schema_id=codec.journal_schema_id
    )
    return reader.last_seq()


def write_snapshot(cfg: RingexConfig, recovered: Recovered) -> Path:
    data = msgspec.msgpack.encode(recovered.snapshot())  # one past the journal: rewound
    return snapshot_store(cfg).save(recovered.last_seq, data, lambda: journal_end(cfg))


def snapshot_job(cfg: RingexConfig, upto: int) -> None:
    """A forked child's work: replay through ``upto`` (durable before the fork) and snapshot."""
    write_snapshot(cfg, recover(cfg, upto=upto))
