"""A hostile review (77) of the per-account order index (f2bf241) and review 75's fixes (07966ea).

Reviewed, f2bf241: ``procs/core/account_orders.py`` and its hooks (``Book._enter``,
``from_state``, ``_mass_cancel``, ``_remove_all``; ``FastBook._fast_new``'s inline add and
``_sweep``), against every path an order comes to rest or re-rests by (a new order, a
replace that moves or crosses, in both books' flows, an iceberg's refresh, a triggered
stop, self-trade prevention, ``from_state`` / ``Matcher.restore``), order id reuse (none
behind the sequencer, which hands out ``next_order_id``), the sort key against the scan
(arrivals are unique per book: every rest, re-rest and refresh takes ``next_arrival``, a
replace that keeps its place keeps its arrival, and a restored level is in its listed
order, which is arrival order), ``END_OF_SESSION`` and account-0 mass cancels (still the
scan), symbol-0 mass cancels (every book, each its own index), the bounds (a rebuild once
past ``2 x book + SLACK`` adds, amortised O(1); ``of`` only shrinks) and the state hash and
snapshots (they never hold the index). No fault found: the test below pins the claim,
events equal to the scan's, with a rebuild at nearly every add (``SLACK`` 0), mass cancels
for symbol 0 and restores mid-stream, for both books.

Reviewed, 07966ea: the tail's next-segment look and open fallback (a segment in both places
is listed once, the journal's; an archived one opens in the archive), ``unrouted``'s start
from an older exchange snapshot (``_exchange_books`` with the recovered snapshot's seq as
its end: the copy's ``last_seq`` is the matcher's last command up to that seq, so it had
none between the held seq and that snapshot), ``cut_after(archive=...)`` and
``_unarchive_after``, ``rebuild`` and ``failover.py`` ``journal_state`` / ``status`` (an ""
hash never agrees; ``diverged`` reads through ``entry_at``, which catches the archive
error). Faults, each pinned by a test that failed on the code it was
written against; both pass since their fixes (the same session's next commit):

1. ``demote`` of an old primary archived past the promotion (review 75's fault 5, now
   "fixed") leaves an instance that cannot start as the standby it was rebuilt to be. The
   archive point was past the kept seq only because every snapshot was past it, and
   ``rebuild`` sets every snapshot past the kept seq aside (``rebuild.py:225``); the
   standby's start (``Standby.__init__`` -> ``recover``) replays from seq 1 through a
   reader without the archive (``recovery.py:213``): ``JournalArchivedError``. The router
   of such an instance, promoted again, fails the same way.
2. ``_unarchive_after`` passes over an archived segment the journal also holds ("a copy",
   ``journal_writer.py:548``) and the cut then leaves it in the archive: a copy of the cut
   history, past the kept seq. Such a pair is what its own EXDEV move leaves when killed
   between the copy into the journal and the archive's unlink (a demote run again), or an
   archive run killed the same way (``archive_segments_before``'s "run killed before its
   unlink"). The followed primary's entries then fill a segment of the same name (segments
   roll at a fixed count of fixed-size entries), and every later archive run of it fails
   (``FileExistsError``, blaming "another journal" sharing the archive).
"""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import DatabaseConfig, RingConfig
from procs.common.epochs import Epochs
from procs.common.journal import HEADER_SIZE, EntryLayout, list_segments
from procs.common.journal_archive import archive_segments_before
from procs.common.journal_writer import JournalWriter
from procs.common.records import MassCancel, Record, Transfer
from procs.common.topology import journal_archive_dir, journal_dir
from procs.common.types import DoneReason
from procs.core import account_orders
from procs.core.archive_bound import archivable_before
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.recovery import recover, write_snapshot
from procs.core.reference_book import ReferenceBook
from procs.replica.rebuild import rebuild
from procs.replica.standby import Standby
from tests.unit.matcher.differential import SPEC, commands
from tests.unit.replica.test_archived_replication import (
    PER_SEGMENT,
    _append,
    _archive,
    _archiving,
)
from tests.unit.replica.test_review_replica2_bugs import pair
from tests.unit.replica.test_source import CODEC

# -- f2bf241: the per-account index (no fault: pinned) ------------------------------------------


def _scanning(book_cls: type[Book]) -> type[Book]:
    """``book_cls`` with the mass cancel of before f2bf241: the priority scan."""

    class Scanning(book_cls):  # type: ignore[valid-type,misc]
        def _mass_cancel(self, cmd: MassCancel) -> list[Record]:
            if cmd.symbol not in (0, self.spec.symbol):
                return []
            events: list[Record] = self._remove_all(
                cmd, DoneReason.MASS_CANCELLED, lambda o: cmd.account in (0, o.account)
            )
            return events

    return Scanning


@pytest.mark.parametrize("book_cls", [FastBook, ReferenceBook])
def test_an_indexed_mass_cancel_makes_the_scans_events_through_rebuilds_and_restores(
    book_cls: type[Book], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant (f2bf241): a mass cancel of one account makes exactly the events the scan
    of ``_priority()`` made, whatever the book went through.

    Two books take the differential stream (every path: icebergs, stops, STP, replaces that
    move or cross, end of session), with a mass cancel of a random account, for symbol 0 or
    the book's, in one command of 20; one takes the index, the other scans; the indexed one
    is restored from its snapshot now and then. ``SLACK`` is 0, so the index is rebuilt
    whenever its adds pass twice the book. Expected, and what happens: the same events at
    every command, and the same state hash at the end."""
    monkeypatch.setattr(account_orders, "SLACK", 0)
    for seed in (5, 77):
        rng = random.Random(seed)
        indexed, scanned = book_cls(SPEC), _scanning(book_cls)(SPEC)
        cancels = 0
        for k, sent in enumerate(commands(seed, 2_500, scanned)):
            command = sent
            if rng.random() < 0.05:
                seq, account = sent.seq, rng.randint(1, 5)  # type: ignore[attr-defined]
                symbol = rng.choice((0, SPEC.symbol))
                command = MassCancel(seq, seq * 10, 1, account, seq, account, symbol)
                cancels += 1
            assert indexed.execute(command) == scanned.execute(command), f"command {k}"
            if rng.random() < 0.01:
                indexed = book_cls.restore(SPEC, indexed.snapshot())
        indexed.validate_internal_state()
        assert cancels > 50
        assert indexed.state_hash() == scanned.state_hash()


# -- 07966ea: demote after an archive past the promotion -----------------------------------------


def test_an_old_primary_demoted_past_its_archive_starts_as_a_standby(tmp_path: Path) -> None:
    """Invariant: ``demote`` makes a stopped old primary "fit to follow" the promoted
    instance as its standby (``rebuild``), and review 75 made it cut one whose archive run
    passed the promotion ("moves them back from the archive first", README).

    The old primary wrote seqs 1-100 (async mode, the promoted epoch 2 began at 51), its
    exchange snapshots are at 80, 90 and 100, and its nightly archive run moved what they
    no longer need (seqs 1-70). ``demote`` (``rebuild``) moves seqs 51-70 back, cuts after
    50 and sets aside every snapshot past 50: all of them. Expected: the instance starts as
    a standby (``Standby``: its state recovered through seq 50, from the archive where the
    journal no longer has them), next seq 51. What happens: ``Standby.__init__``'s
    ``recover`` finds no snapshot and replays from seq 1 through a reader without the
    archive (``recovery.py:213``): ``JournalArchivedError``. Before 07966ea demote refused;
    now it succeeds and leaves an instance that does not start (nor, promoted, its router)."""
    old, new = pair(tmp_path)
    old = msgspec.structs.replace(
        _archiving(old, tmp_path),
        ring=RingConfig(capacity=2),  # a short reread window: the archive bound is near 80
        database=DatabaseConfig(enabled=False),
    )
    _append(old, 1, 100)
    for upto in (80, 90, 100):
        write_snapshot(old, recover(old, upto=upto))
    archive_segments_before(journal_dir(old), archivable_before(old), journal_archive_dir(old))
    assert list_segments(journal_dir(old))[0][0] == 71  # archived past the promotion

    done = rebuild(old, Epochs().promoted(2, 51))
    assert (done.kept_seq, done.cut) == (50, 50)

    follower = msgspec.structs.replace(old, replication=new.replication)  # follows ``new``
    standby = Standby(follower)
    try:
        assert standby.next_seq == 51
        assert standby.state.last_seq == 50
    finally:
        standby.journal.close()


# -- 07966ea: a demote killed while it moves a segment back -------------------------------------


class _KilledError(Exception):
    """The demote's process killed here."""


def _append_followed(cfg: Any, first: int, n: int) -> None:
    """Seqs ``first``.. of the promoted primary's history (other commands than the cut ones),
    as the standby appends them, in segments of ``PER_SEGMENT`` entries."""
    with JournalWriter(
        journal_dir(cfg),
        slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id,
        segment_bytes=HEADER_SIZE + PER_SEGMENT * EntryLayout(CODEC.slot_size).size,
        fsync="none",
    ) as journal:
        for seq in range(first, first + n):
            command = Transfer(seq, 6, 0, 0, seq, 7, 1, 200, seq)  # not the cut 100s
            journal.append(seq, CODEC.encode_slot(command), 1)


def test_a_demote_run_again_after_a_kill_leaves_no_cut_history_in_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant: a cut leaves the entries after it in the journal set aside (``aside``) and
    nowhere else; "a crash anywhere leaves a contiguous journal ..., which running the cut
    again finishes" (``cut_after``); archive runs keep working on the journal that follows.

    The old primary wrote seqs 1-100 and archived 1-60 to an archive on another volume (the
    README's advice: so ``os.rename`` fails with EXDEV). ``demote`` (promoted epoch from 51)
    moves segment 51-60 back by ``_unarchive_after``'s copy, and is killed after the rename
    into the journal, before the archive's unlink; the operator runs it again, which cuts
    after 50 (the journal now begins at 51: nothing to move back). The instance then follows
    the promoted primary, whose seqs 51-70 fill a segment ``..51.journal`` again, and its
    archive run moves seqs before 61. Expected: segment 51-60 archived. What happens: the
    archive still holds the old primary's ``..51.journal`` (passed over as "a copy of a
    segment the journal still has", ``journal_writer.py:548``, and never removed by the
    cut), which differs: ``FileExistsError`` ("another journal archives into ..."), at every
    run from then on. An archive run killed before its unlink leaves the same pair."""
    old, _ = pair(tmp_path)
    old = _archiving(old, tmp_path)
    _append(old, 1, 100)
    assert _archive(old, 61) == 6
    archive = journal_archive_dir(old)
    rename, unlink = os.rename, Path.unlink

    def cross_device(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(src).parent == archive:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        rename(src, dst, *args, **kwargs)

    def killed_at_the_archives_unlink(self: Path, missing_ok: bool = False) -> None:
        if self.parent == archive:
            raise _KilledError(self)
        unlink(self, missing_ok=missing_ok)

    with monkeypatch.context() as patched:
        patched.setattr(os, "rename", cross_device)
        patched.setattr(Path, "unlink", killed_at_the_archives_unlink)
        with pytest.raises(_KilledError):
            rebuild(old, Epochs().promoted(2, 51))
    done = rebuild(old, Epochs().promoted(2, 51))  # run again
    assert (done.kept_seq, done.cut) == (50, 50)
    assert [first for first, _ in list_segments(journal_dir(old))] == [51]

    _append_followed(old, 51, 20)
    assert len(archive_segments_before(journal_dir(old), 61, archive)) == 1
