"""Review 80: a hostile reread of 98f7295 (stream slots), a78e5f3 (review 79's fixes) and
50645f5 (a mass cancel sorts only the pending stops it takes).

What holds (looked at; pinned where said): every path from ``PrivateStreams._admit``'s
return to the end of ``handle`` gives the slot back (the ``Subscriber``'s construction, a
failed ``prepare``, a handler cancelled at any await, ``_end`` raising, the gateway's
``close`` and aiohttp's cleanup); nothing refuses a stream once its slot is taken (the
gateway's ``max_streams`` and the local limits are checked first); a slot refusal
("key"/"account") keeps no lock (``take`` closes the key's descriptor), and a refusal told
as a close (``closeOnRefusal``) holds none; a refused upgrade opens at most ``limit`` files
one at a time. The slot files stay, one per key and per account that ever streamed (the
module docstring says so; not pinned). a78e5f3: ``_bounded`` is reset in ``run``'s
``finally``; the archive's segments need no fsync (sealed and fsynced before they moved, a
copy across volumes fsynced); ``_passed_over`` on a last segment takes its last entry as
``_tail`` does (an entry inside it that is bad is no more looked at than at a writer's
open: only yielded entries are verified, README "tail rules"). 50645f5: filtering before a
stable sort by the unique ``arrival`` gives the same order (pinned below).

Faults, each pinned by a test that failed on the code it was written against; all three
pass since their fixes (the same session's next commit):

1. ``StreamSlots.take`` (``procs/gateway/stream_slots.py``) keeps the key's lock when
   taking the account's slot raises (EMFILE, ENFILE, ENOSPC for a new slot file): the
   descriptor is neither closed nor returned, so the key holds one slot less at every
   gateway until that gateway restarts, and after ``max_streams_per_key`` such errors can
   stream no more, refused "holds 5 private streams" with none.
2. Each stream now holds two descriptors more (its key's and its account's lock files), but
   ``RestConnections._fit_connections`` (``procs/gateway/rest_connections.py``) still fits
   one a connection: with the port full of streams, 2 x ``max_streams`` descriptors past
   the soft limit it fitted, taken from the FIX sessions' budget (review 38's fault), and
   where the limit runs out the next take fails (fault 1) or the accept.
3. ``DbWriter.run(to_end=True)`` (``procs/dbwriter/writer.py`` ``_hold_journal``) holds the
   journal's ``DirectoryLock`` for the whole run, not only for the fsync: a router that
   starts while ``ringex replay --to-db`` rebuilds a database (README: "stop the instance
   and empty it ..., then start again or run ``ringex replay --to-db``"; hours for a long
   journal) fails its journal's open ("held by a writer") and exits; the supervisor's
   start fails, its restarts count towards ``restart_limit``. Before a78e5f3 it started.
"""

from __future__ import annotations

import gc
import os
import resource
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from config.edges import RestConfig
from procs.common.journal import Foreign, JournalError, JournalReader
from procs.common.records import MassCancel, NewOrder, OrderDone
from procs.common.topology import journal_dir
from procs.common.types import DoneReason, OrdType, Side, StpMode, TimeInForce
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec
from procs.dbwriter.writer import DbWriter, WriterOptions
from procs.gateway import rest_connections
from procs.gateway.rest_connections import RestConnections
from procs.gateway.stream_slots import StreamSlot, StreamSlots
from tests.unit.dbwriter.journal_gen import JournalBuilder
from tests.unit.test_review79_durable import COMMON, _cfg, _router

# -- 1. a failed take keeps its key's lock -------------------------------------------------------


def _open_fds() -> int:
    gc.collect()  # an earlier test's garbage (a socket in a cycle) closes now, not mid-count
    return len(os.listdir("/proc/self/fd"))


def _lowest_free_fd() -> int:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


def test_a_take_that_fails_at_the_account_keeps_no_slot_of_its_key(tmp_path: Path) -> None:
    """Invariant (``stream_slots.py``, README "private stream"): a stream holds a slot only
    while it lives; a take that gives no ``StreamSlot`` holds nothing (as the "account"
    refusal gives the key's lock back).

    A key's limit of 1. The process is one descriptor short of its limit (as a gateway
    whose streams' locks used the room, fault 2): the key's lock file opens, the account's
    fails with EMFILE, and the upgrade is answered an error. The limit back, the key asks
    again. Expected: a slot (nothing streams). What happens: "key", the key's one slot held
    by the descriptor the failed take never closed (one descriptor more stays open)."""
    slots = StreamSlots(tmp_path, 1, 10)
    before = _open_fds()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (_lowest_free_fd() + 1, hard))
    try:
        with pytest.raises(OSError, match="Too many open files"):
            slots.take("K1", 7)  # the key's file opened, the account's did not
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    leaked = _open_fds() - before
    again = slots.take("K1", 7)
    if isinstance(again, StreamSlot):
        again.release()
    assert isinstance(again, StreamSlot), f"{again!r}: {leaked} descriptor(s) left open"


def test_a_slot_refused_for_its_account_keeps_no_descriptor(tmp_path: Path) -> None:
    """Pinned: the "account" refusal closes the key's descriptor it took."""
    slots = StreamSlots(tmp_path, 5, 1)
    held = slots.take("K1", 7)
    assert isinstance(held, StreamSlot)
    before = _open_fds()
    assert slots.take("K2", 7) == "account"
    assert _open_fds() == before
    held.release()


# -- 2. the streams' locks are no descriptors of the port's budget ------------------------------


def test_the_ports_descriptor_budget_counts_the_streams_slot_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant (review 38, ``rest_connections.py`` ``_fit_connections``): the gateway raises
    its soft RLIMIT_NOFILE (``open_files.connections_room``) for every descriptor its
    connections and FIX sessions may hold, so that the port's limit is refused (503)
    before an accept or a FIX Logon fails for want of one.

    A stream's slot holds two descriptors (measured here). The default config: 1,000 FIX
    sessions (4 each), 2,000 REST connections, up to 1,000 of them streams. Expected: the
    descriptors asked for cover 4,000 + 2,000 + 2 x 1,000. What happens: 6,000 are asked
    for (``connections_room`` sets the soft limit to that and its 64 margin), so 1,000
    streams' 2,000 locks come out of the FIX sessions' room."""
    before = _open_fds()
    slot = StreamSlots(tmp_path, 5, 10).take("K1", 7)
    assert isinstance(slot, StreamSlot)
    per_stream = _open_fds() - before
    slot.release()
    assert per_stream == 2
    asked: list[int] = []

    def room(wanted: int, **_: object) -> int:
        asked.append(wanted)
        return wanted  # the soft limit raised as far as asked

    monkeypatch.setattr(rest_connections, "connections_room", room)
    rest = RestConfig()
    gateway = SimpleNamespace(gw=SimpleNamespace(max_sessions=1_000), rest=rest)
    RestConnections._fit_connections(gateway)  # type: ignore[arg-type]
    fix = 4 * 1_000
    streams = min(rest.max_streams, gateway.max_connections)
    need = fix + gateway.max_connections + per_stream * streams
    assert asked[0] >= need, f"{asked[0]} descriptors asked for, {need} may be held"


# -- 3. a run to the end keeps the exchange from starting ---------------------------------------


def test_a_router_starts_while_a_run_to_the_end_writes_the_database(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant (README "the database writer": to write the database anew, "stop the
    instance and empty it ..., then start again or run ``ringex replay --to-db``"; the
    writer's migration 0010: a ``--to-db`` "beside the live one"): a database rebuild does
    not keep the exchange from starting. Before a78e5f3 it did not.

    The router journals 1..24 and stops cleanly. ``ringex replay --to-db`` runs the writer
    to the end (an empty database: in production a long run); while it is at seq 12 the
    instance starts and its router opens the journal. Expected: the router opens (the run
    needs the lock only while it fsyncs the segments and fixes the end it reads to: what a
    router appends after that is bounded by the router's own mark), and the run still
    writes 1..24. What happens: the router's ``JournalWriter`` raises "journal directory
    ... is held by a writer" (the router's ``main`` exits 1 with it, and the supervisor's
    start fails), for as long as the rebuild runs."""
    cfg = _cfg(tmp_path, "batch")
    router = JournalBuilder(cfg)
    router.writer.close()
    router.writer = _router(cfg, "batch")
    router.setup()
    router.writer.close()  # the exchange stopped cleanly
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))
    real = writer.replayed.entries
    started: list[str] = []

    def entries(
        from_seq: int = 1, *, foreign: Foreign = "refuse"
    ) -> Iterator[tuple[int, memoryview]]:
        for seq, image in real(from_seq, foreign=foreign):
            yield seq, image
            if seq == COMMON // 2 and not started:  # the instance starts meanwhile
                try:
                    _router(cfg, "batch").close()
                except JournalError as exc:
                    started.append(f"refused: {exc}")
                else:
                    started.append("opened")

    monkeypatch.setattr(writer.replayed, "entries", entries)
    try:
        checkpoint = writer.run(to_end=True)
    finally:
        writer.close()
    assert checkpoint == COMMON
    assert started == ["opened"]


def test_a_run_to_the_end_gives_the_journal_back(tmp_path: Path, dsn: str) -> None:
    """Pinned: once the run is over (here: after a run that raised too), the lock is given
    back and the next run is bounded by the mark again."""
    cfg = _cfg(tmp_path, "batch")
    router = JournalBuilder(cfg)
    router.writer.close()
    router.writer = _router(cfg, "batch")
    router.setup()
    router.writer.close()
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))

    def boom(to_end: bool) -> int:
        raise RuntimeError("a failed pass")

    try:
        original = writer._run_again
        writer._run_again = boom  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            writer.run(to_end=True)
        assert writer._floor == 0  # (``_bounded`` when this was written)
        _router(cfg, "batch").close()  # the lock is free
        writer._run_again = original  # type: ignore[method-assign]
        assert writer.run(to_end=True) == COMMON
        assert writer._floor == 0
    finally:
        writer.close()
    reader = JournalReader(
        journal_dir(cfg), slot_size=router.codec.slot_size, schema_id=router.codec.journal_schema_id
    )
    assert reader.last_seq() == COMMON


# -- 50645f5: a mass cancel's stops, pinned ------------------------------------------------------

_SPEC = SymbolSpec(symbol=7, tick=5, lot=1, min_qty=1, max_qty=1000)


def _stop(seq: int, order_id: int, account: int, side: Side, stop: int) -> NewOrder:
    return NewOrder(
        seq=seq, ts_ns=1000 + seq, gateway=1, session=1, client_ref=order_id, account=account,
        symbol=_SPEC.symbol, order_id=order_id, side=side, ord_type=OrdType.STOP_LIMIT,
        tif=TimeInForce.GTC, flags=0, stp=StpMode.NONE, price=stop, qty=3, stop_price=stop,
        display_qty=0,
    )  # fmt: skip


@pytest.mark.parametrize("book_cls", [ReferenceBook, FastBook])
def test_a_mass_cancel_ends_its_accounts_stops_in_arrival_order(book_cls: type[Book]) -> None:
    """Pinned (50645f5): one account's pending stops, interleaved with another's and
    restored from a snapshot, end in arrival order; the other's stay parked."""
    book = book_cls(_SPEC)
    plan = [(1, Side.BUY, 120), (2, Side.SELL, 80), (1, Side.SELL, 90), (2, Side.BUY, 110)]
    plan += [(1, Side.BUY, 105), (1, Side.SELL, 95)]
    for k, (account, side, stop) in enumerate(plan, start=1):
        book.execute(_stop(k, 100 + k, account, side, stop))
    book = book_cls.restore(_SPEC, book.snapshot())
    events = book.execute(MassCancel(50, 1050, 1, 1, 0, 1, _SPEC.symbol))
    book.validate_internal_state()
    ended = [(e.order_id, e.reason) for e in events if isinstance(e, OrderDone)]
    assert ended == [(o, DoneReason.MASS_CANCELLED) for o in (101, 103, 105, 106)]
    assert sorted(book.stops) == [102, 104]
