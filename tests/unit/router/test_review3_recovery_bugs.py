"""Bugs a third hostile review of the journal, snapshots and crash recovery found. Each test
fails today.

Found sound (no test): a crash injected at every ``os`` call of an append that rolls over
(open, write cut at 0, 1, 63, 100, 144, 145 and 500 bytes, fsync, rename, close), under
``batch`` and ``none``, reopens to a contiguous journal that appending continues; a chain
of snapshots written at every seq of two random 180-command streams (each replayed from
the one before, as the router's snapshot children do) gives the state hashes, seqs, order
ids and sequencer state of a replay from the start, at every seq.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import msgspec
import pytest

from config.schema import AssetConfig, MatcherConfig, RingexConfig, SymbolConfig
from procs.common.journal import HEADER_SIZE, EntryLayout, list_segments, segment_name
from procs.common.journal_archive import archive_segments_before
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.snapshots import SnapshotStore
from procs.common.topology import journal_dir, snapshot_dir
from procs.core.archive_bound import archivable_before
from procs.core.recovery import (
    JournaledTail,
    matcher_snapshot,
    recover,
    restored,
    snapshot_store,
    write_snapshot,
)
from tests.unit.router import test_router as router_rig
from tests.unit.router.core_rig import BUY, ETHUSD, exchange_config, funded, new_order, placed

CODEC = RecordCodec()
SLOT = CODEC.slot_size
SCHEMA = CODEC.journal_schema_id
ENTRY = EntryLayout(SLOT).size
TEN = HEADER_SIZE + 10 * ENTRY  # segment_bytes for 10 entries a segment


def _instance(tmp_path: Path) -> tuple[RingexConfig, int]:
    """A core-rig instance (database off, rings of 4 slots: a restarted router reads back
    4 x (gateways + 1) entries before its snapshot) with a journal of 42 real commands in
    segments of ten."""
    base = exchange_config(var_dir=str(tmp_path), max_open=50)
    cfg = msgspec.structs.replace(
        base,
        database=msgspec.structs.replace(base.database, enabled=False),
        ring=msgspec.structs.replace(base.ring, capacity=4),
    )
    ex = funded(cfg)
    for ref in range(30):
        if ref % 2:
            placed(ex, new_order(1 + ref % 3, BUY, 9_000 + 5 * (ref % 10), 1, ref=100 + ref))
        else:
            placed(ex, new_order(1 + ref % 3, BUY, 990 + ref % 10, 2, symbol=ETHUSD, ref=100 + ref))
    images = b"".join(CODEC.encode_slot(command) for command in ex.journal)
    with JournalWriter(
        journal_dir(cfg), slot_size=SLOT, schema_id=SCHEMA, segment_bytes=TEN, fsync="none"
    ) as w:
        w.append(1, images, len(ex.journal))
    return cfg, len(ex.journal)


def _snapshot_everything(cfg: RingexConfig, upto: int | None = None) -> None:
    recovered = recover(cfg, upto=upto)
    write_snapshot(cfg, recovered)
    for name, matcher in recovered.matchers.items():
        SnapshotStore(snapshot_dir(cfg, f"matcher-{name}")).save(
            matcher.last_seq, matcher.snapshot()
        )


def _archive(cfg: RingexConfig) -> list[Path]:
    """What ``ringex replay --archive`` does."""
    archive = journal_dir(cfg).with_name("journal-archive")
    return archive_segments_before(journal_dir(cfg), archivable_before(cfg), archive)


# -- archiving removes segments a restart still reads -----------------------------------------


def test_the_router_restarts_after_ringex_replay_archive(tmp_path: Path) -> None:
    """``RouterShell`` recovers with a ``JournaledTail`` (``main.py``: ring capacity x
    (gateways + 1) entries), and ``recover`` reads the tail's part before the snapshot from
    ``last - window + 1`` (``recovery.py``, the ``tail is not None and start`` branch).
    ``archivable_before`` ignores that window: after ``ringex replay --snapshot --archive``
    the journal starts at seq 41, the window asks for seq 1, ``entries`` raises "its entries
    were archived", and the router crashes on every start: the instance is down until an
    operator moves the archive back. A restart must read the window only as far back as the
    journal holds it, or ``archivable_before`` must keep the window's entries."""
    cfg, last = _instance(tmp_path)
    _snapshot_everything(cfg)
    tail = JournaledTail.for_config(cfg)  # as RouterShell builds it
    assert archivable_before(cfg) <= last + 1 - tail.window  # the window is kept
    archive = journal_dir(cfg).with_name("journal-archive")
    assert archive_segments_before(journal_dir(cfg), last + 1, archive)  # as it was: 1..31
    recovered = recover(cfg, codec=CODEC, tail=tail)  # the window from the oldest kept
    assert recovered.last_seq == last


def test_a_damaged_newest_snapshot_after_archiving_still_recovers(tmp_path: Path) -> None:
    """``snapshots.py`` promises that a damaged snapshot "is passed over for the one before
    it (the journal holds what follows that)", and the store keeps three for that. But
    ``archivable_before`` archives up to the *newest* snapshot of each store, so once
    ``ringex replay --archive`` has run, the journal no longer holds what follows the one
    before it: one flipped bit in the newest exchange snapshot and ``recover`` raises "its
    entries were archived", where a correct system falls back as promised. Archiving should
    stop at the oldest snapshot a fallback can land on (the oldest kept)."""
    cfg, last = _instance(tmp_path)
    _snapshot_everything(cfg, upto=30)
    _snapshot_everything(cfg)
    assert _archive(cfg)  # before 31 - the router's window
    newest = snapshot_store(cfg).path(last)
    data = bytearray(newest.read_bytes())
    data[-3] ^= 0x10  # rot in the newest snapshot's body
    newest.write_bytes(bytes(data))
    recovered = recover(cfg)  # today: JournalError, "its entries were archived"
    assert recovered.snapshot_seq == 30 and recovered.last_seq == last


# -- a matcher's own snapshot past the journal's durable end ----------------------------------


def test_a_matcher_snapshot_past_the_journal_end_drops_new_commands(
    instance: str, tmp_path: Path
) -> None:
    """Under ``journal.fsync = "none"`` the router routes a batch the OS has not written yet
    (under ``"interval"`` it holds it for the group commit, ``procs/router/held.py``), and a
    matcher's own snapshot is fsynced at once (``replace_durably``). A power loss before the
    OS writes leaves that snapshot past the journal's end. ``recover`` refuses such an
    exchange snapshot ("the journal lost its tail"), but ``matcher_snapshot`` loads the
    matcher's own without a look at the journal: the matcher comes up at ``last_seq`` 7
    holding orders the journal and the router never had, while the router sequences new
    commands from seq 4 again; the matcher drops each as "already executed" (``engine.py``:
    ``seq <= last_seq``). The new order is accepted and never reaches a book. A matcher must
    not restore a snapshot past the journal's last entry (an older one, the exchange
    snapshot's copy, or replay from the start), as the router does."""
    base = router_rig.config(instance, tmp_path)
    journal = msgspec.structs.replace(base.journal, fsync="none")
    cfg = msgspec.structs.replace(base, journal=journal)
    ex = router_rig.Exchange(cfg)
    try:
        router_rig.fund(ex, 7, usd=10**9, btc=0)  # seqs 3, 4 (1, 2: fees, rules, journaled)
        ex.router.journal.sync()
        durable = ex.router.journal.durable_seq
        assert durable == 4
        for ref in range(10, 14):  # seqs 5..8: routed, executed, not on disk yet
            ex.send(1, router_rig.order(ref, 7, BUY, 900 + ref, 10))
        ex.matcher.save_snapshot()  # its snapshot_every, or an admin SNAPSHOT: durable at once
        ex.stop()
    except BaseException:
        ex.stop()
        raise
    # the power loss: the unsynced journal tail and the shared memory are gone
    (_, segment), *_ = list_segments(journal_dir(cfg))
    with open(segment, "r+b") as f:
        f.truncate(HEADER_SIZE + durable * ENTRY)
    for ring in ex.rings.values():
        ring.unlink()
    ex = router_rig.Exchange(cfg)  # new rings; the router and the matcher recover
    try:
        ex.send(1, router_rig.order(99, 7, BUY, 950, 10))  # seq 5 again
        resting = [o.price for o in ex.matcher.matcher.books[1].orders.values()]
        assert resting == [950], f"the matcher's book holds {resting}"
    finally:
        ex.stop()


# -- archiving killed half way ----------------------------------------------------------------


class _Crash(BaseException):
    """The process dies here (a BaseException, so no ``except Exception`` swallows it)."""


def test_archiving_killed_between_copy_and_unlink_finishes_when_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Onto another file system ``archive_segments_before`` copies a segment to ``.tmp``,
    fsyncs, renames it into the archive, fsyncs the archive and then unlinks the original.
    Killed (or out of power) after the rename and before the unlink, the segment is in both
    places, byte for byte; running ``ringex replay --archive`` again raises
    ``FileExistsError`` "exists already; not replacing it" on that segment, every time, so
    archiving stops for good until an operator compares and deletes by hand. Crash-only
    code finishes its own step when run again: a target identical to its source is the copy
    a crash left, and only the source needs removing (one that differs is still refused)."""
    journal, archive = tmp_path / "journal", tmp_path / "archive"
    with JournalWriter(journal, slot_size=SLOT, schema_id=SCHEMA, segment_bytes=TEN) as w:
        w.append(1, bytes(SLOT) * 25, 25)  # segments 1, 11, 21
    real_rename, real_unlink = os.rename, Path.unlink

    def cross_device(src: str | Path, dst: str | Path) -> None:
        if Path(src).parent == journal:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_rename(src, dst)

    def killed(path: Path, missing_ok: bool = False) -> None:
        if path.parent == journal:
            raise _Crash(path)
        real_unlink(path, missing_ok)

    with monkeypatch.context() as m:
        m.setattr(os, "rename", cross_device)
        m.setattr(Path, "unlink", killed)
        with pytest.raises(_Crash):
            archive_segments_before(journal, 21, archive)
    first = segment_name(1)
    assert (archive / first).read_bytes() == (journal / first).read_bytes()
    with monkeypatch.context() as m:
        m.setattr(os, "rename", cross_device)
        moved = archive_segments_before(journal, 21, archive)  # today: FileExistsError
    assert archive / segment_name(11) in moved
    assert [first for first, _ in list_segments(journal)] == [21]
    assert [first for first, _ in list_segments(archive)] == [1, 11]


# -- a snapshot of another configuration ------------------------------------------------------


def test_a_matcher_added_to_the_config_does_not_crash_recovery_with_a_key_error(
    tmp_path: Path,
) -> None:
    """An operator adds an asset, a symbol and a matcher for it (``m3``), and restarts. The
    matcher process starts ``m3`` with empty books (``matcher_snapshot`` reads the exchange
    snapshot's books with ``.get(name)``: none), and a replay from the start works; but the
    router's ``recover`` restores every configured matcher with ``snap.matchers[m.name]`` and
    dies with a bare ``KeyError: 'm3'`` on every start. A correct recovery either starts the
    new matcher empty (nothing in the journal can have touched a symbol that did not exist),
    giving the state a replay from the start gives, or refuses with a ``ValueError`` naming
    the snapshot and the matcher it lacks."""
    cfg, _ = _instance(tmp_path)
    _snapshot_everything(cfg)
    grown = msgspec.structs.replace(
        cfg,
        assets=[*cfg.assets, AssetConfig(name="SOL", id=4, decimals=3)],
        symbols=[
            *cfg.symbols,
            SymbolConfig(
                name="SOL-USD", id=3, tick=1, price_decimals=2, qty_decimals=1, base="SOL"
            ),
        ],
        matchers=[*cfg.matchers, MatcherConfig(name="m3", symbols=["SOL-USD"])],
    )
    start = matcher_snapshot(grown, "m3")  # the matcher process: empty books (as of the
    assert start is None or not restored(grown, "m3", start[1]).books[3].levels()  # snapshot)
    try:
        recovered = recover(grown)  # today: KeyError: 'm3'
    except ValueError as exc:
        assert "m3" in str(exc) and "snap" in str(exc)
        return
    assert recovered.state_hashes() == recover(grown, use_snapshot=False).state_hashes()
