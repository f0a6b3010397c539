"""What a restarted gateway can trust in its order log, and the books where it cannot.

The order log (``order_log.py``) is exact while the rings it logged positions in are the ones
the gateway reads again: a gateway-only restart. When they are new (the whole exchange was
restarted, or this is a promoted standby whose logs were shipped from the primary), the
events after the log's last write went with the old rings. Each matcher starts a new output
ring with a mark (``REPLAY_SOURCE``: the seq of the snapshot it restored, or, where its
replay's events are more than the new ring holds, of the last command it left out: review
266), then the events of the journaled commands it replays after that seq, then the live
ones. So for each ring:

- events up to the newest seq the log says were handled are skipped (handled already);
- if the mark is past that seq, the events in between are nowhere: they are made again
  (``missed_events``: the matcher as it was at the handled seq, rebuilt the way it recovers,
  executes the journaled commands up to the mark; it is deterministic, so these are the very
  events), and reach the order entry as if the ring had carried them: every fill, cancel
  and expiry is reported. Where that state is no longer kept (a newer snapshot) or the gap
  is too long to replay at a start, this gateway's orders on that matcher's symbols are
  corrected from the matcher as of the mark instead (``resting_orders``). Either way the
  ring is read on from the mark.
"""

from __future__ import annotations

import logging

from config.schema import RingexConfig
from procs.common.journal import JournalError, JournalReader
from procs.common.record_codec import RecordCodec
from procs.common.records import Record
from procs.common.topology import (
    gateway_commands,
    gateway_replies,
    journal_dir,
    matcher_output,
)
from procs.core.engine import Matcher
from procs.core.recovery import journal_commands, matcher_snapshot, matchers_at
from procs.core.resting import RestingOrder
from procs.core.symbols import symbol_specs
from shm import Ring
from shm.errors import ShmError

log = logging.getLogger("ringex.gateway")


def ring_identities(cfg: RingexConfig, gateway: int, codec: RecordCodec) -> dict[str, int]:
    """Ring name -> created_ns of every ring this gateway writes or reads."""
    names = [gateway_commands(gateway), gateway_replies(gateway)]
    names += [matcher_output(m.name) for m in cfg.matchers]
    found = {}
    for name in names:
        try:
            ring = Ring.attach(cfg.instance, name, codec)
        except ShmError:
            continue
        found[name] = ring.created_ns
        ring.close()
    return found


def rings_replaced(logged: dict[str, tuple[int, int]], current: dict[str, int]) -> bool:
    """True when a ring the log has a position in is not the ring of that name now."""
    return any(name in current and made != current[name] for name, (made, _) in logged.items())


def matcher_of_ring(cfg: RingexConfig, ring: str) -> str | None:
    return next((m.name for m in cfg.matchers if matcher_output(m.name) == ring), None)


#: The longest gap ``missed_events`` replays at a gateway's start (commands).
CATCH_UP_LIMIT = 500_000


def journaled_refs(
    cfg: RingexConfig, gateway: int, after: int, codec: RecordCodec
) -> set[int] | None:
    """The client refs of ``gateway``'s commands the journal holds after seq ``after``; None
    when that is more than ``CATCH_UP_LIMIT`` entries or the journal lacks them (archived)."""
    directory = journal_dir(cfg)
    if not directory.exists():
        return set()
    reader = JournalReader(directory, slot_size=codec.slot_size, schema_id=codec.journal_schema_id)
    if reader.last_seq() - after > CATCH_UP_LIMIT:
        return None
    refs: set[int] = set()
    try:
        for _seq, image in reader.entries(after + 1):
            command = codec.decode_slot(image)
            if getattr(command, "gateway", None) == gateway:
                refs.add(command.client_ref)  # type: ignore[attr-defined]
    except JournalError as exc:
        log.warning("gateway %d: the journal after seq %d is not readable: %s", gateway, after, exc)
        return None
    return refs


def missed_events(
    cfg: RingexConfig,
    matcher: str,
    handled: int,
    upto: int,
    codec: RecordCodec,
    part: int | None = None,
) -> list[Record] | None:
    """The events ``matcher`` made for its journaled commands after seq ``handled`` through
    ``upto``: the matcher from its newest kept snapshot as of ``handled`` (its own, or the
    exchange snapshot's copy of its books, a later one's where it had no command in between:
    ``matcher_snapshot``), or from nothing, the journal replayed to ``handled`` without a
    look at the events, then on to ``upto`` keeping them. None when that is more than
    ``CATCH_UP_LIMIT`` commands to replay, or the journal no longer holds them (archived)."""
    specs = symbol_specs(cfg, matcher)
    # with a part of seq ``handled`` left to make, the replay must execute it: start before
    bound = handled if part is None else handled - 1
    saved = matcher_snapshot(cfg, matcher, (bound, bound))
    start = saved[0] if saved is not None else 0
    if upto - start > CATCH_UP_LIMIT:
        return None
    engine = Matcher(specs) if saved is None else Matcher.restore(specs, saved[1])
    after = max(engine.last_seq, start)
    events: list[Record] = []
    try:
        for command in journal_commands(cfg, matcher, after=after, codec=codec, upto=upto):
            seq: int = command.seq  # type: ignore[attr-defined]
            made = engine.execute(command)
            if seq > handled:
                events += made
            elif seq == handled and part is not None:  # a read ended inside its events
                events += made[part:]
    except JournalError as exc:  # archived: the books will have to do
        log.warning("matcher %s: events after seq %d not made again: %s", matcher, handled, exc)
        return None
    return events


def resting_orders(
    cfg: RingexConfig, matcher: str, upto: int, gateway: int, codec: RecordCodec
) -> tuple[dict[int, RestingOrder], set[int]] | None:
    """This gateway's live orders on ``matcher`` after the command of seq ``upto`` (resting,
    and stops not triggered yet), by their NewOrder's client_ref, with the matcher's symbol
    ids; None when that state is not kept (a newer snapshot)."""
    rebuilt = matchers_at(cfg, {matcher: upto}, codec)
    if rebuilt is None:
        return None
    mine = {}
    books = rebuilt[matcher].books
    for book in books.values():
        for order in (*book.orders.values(), *book.stops.values()):
            if order.gateway == gateway:
                mine[order.client_ref] = order
    return mine, set(books)


def note_handled(
    ring: str, events: list[Record], handled: dict[str, int], parts: dict[str, int]
) -> None:
    """Record the newest seq of ``events`` as handled from ``ring``, with how many of its
    events were (a command's events may run on into the next read): a full restart makes
    again only the rest of them (``restart.py``)."""
    last = tail = 0
    for event in reversed(events):
        seq = getattr(event, "seq", 0)
        if not seq:
            continue  # a mark
        if last and seq != last:
            break
        last, tail = seq, tail + 1
    if not last:
        return
    parts[ring] = parts.get(ring, 0) + tail if handled.get(ring) == last else tail
    handled[ring] = last


def within_journal(handled: int, part: int | None, end: int | None) -> tuple[int, int | None]:
    """A ring's handled seq and part, at most the journal's end (None: no journal). A log
    can name a seq past it: one shipped to a standby ahead of the journal (async
    replication), then promoted, or a tail lost under ``fsync = "none"``. The router
    numbers new commands from the journal's end, and their events must not be skipped as
    handled (review 41)."""
    if end is not None and handled > end:
        return end, None
    return handled, part
