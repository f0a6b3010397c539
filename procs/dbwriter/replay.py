"""The journal, replayed as recovery does, with the events each command makes.

``Follower.step(seq, command)`` re-applies one journaled command to a ``Sequencer`` (risk,
balances), executes it on the matcher cores that own it, and settles every event, exactly as
``procs.core.recovery.recover`` does; it returns the events. The writer keeps its own
snapshots (``var/<instance>/snapshots/dbwriter``): sequencer, matchers and the projection's
open orders, at a seq the database's checkpoint has reached, so a restart replays only from
there (a snapshot above the checkpoint, say of a database restored from a backup, is not
used: the follower starts from the newest one at or below it, of the two kept, else from the
beginning of the journal). A snapshot keeps the CRC
of the journal's entry at its seq, and one whose entry the journal no longer holds is passed
over: a host crash cut the journal's tail and its seqs went to other commands, and a snapshot
from the lost history poisoned every row written after it (review 42).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

import msgspec

from config.schema import RingexConfig
from procs.common.journal import JournalError
from procs.common.records import Record
from procs.common.snapshots import SnapshotStore
from procs.common.topology import snapshot_dir
from procs.core.recovery import fresh, restore_matchers
from procs.core.sequencer import Sequencer
from procs.dbwriter.projection import Projection

log = logging.getLogger("ringex.dbwriter")


class WriterSnapshot(msgspec.Struct, frozen=True, array_like=True):
    seq: int
    router: bytes
    matchers: dict[str, bytes]
    projection: bytes
    crc: int = 0  # CRC-32 of the journal's image at ``seq`` (0: a snapshot made before it)


def _entry_is(entry_crcs: Callable[[int], Collection[int]], seq: int, crc: int) -> bool:
    """Whether the journal's entry at ``seq`` is the one of CRC ``crc`` (one of the CRCs it
    may have been taken under); one that cannot be read (archived, and the archive gone)
    cannot be checked, and is trusted as before."""
    try:
        return crc in entry_crcs(seq)
    except JournalError:
        return True


def snapshot_store(cfg: RingexConfig) -> SnapshotStore:
    return SnapshotStore(snapshot_dir(cfg, "dbwriter"), keep=2)


class Follower:
    """Sequencer, matchers and projection at ``seq`` (every command up to it applied)."""

    def __init__(self, cfg: RingexConfig) -> None:
        self.cfg = cfg
        self.sequencer, self.matchers = fresh(cfg)
        self.projection = Projection(cfg, self.sequencer.accounts)
        self.seq = 0

    @classmethod
    def restore(
        cls,
        cfg: RingexConfig,
        upto: int,
        entry_crcs: Callable[[int], Collection[int]] | None = None,
    ) -> Follower:
        """From the newest snapshot at or below ``upto`` (the checkpoint) whose journal entry
        ``entry_crcs`` (the CRCs the journal's image at a seq may have been taken under; none:
        not there) still finds, else fresh."""
        follower = cls(cfg)
        store = snapshot_store(cfg)
        found = store.at_or_before(upto)  # a damaged one is passed over
        while found is not None:
            snap = msgspec.msgpack.decode(found[1], type=WriterSnapshot)
            if entry_crcs is None or not snap.crc or _entry_is(entry_crcs, snap.seq, snap.crc):
                break
            log.warning(
                "dbwriter snapshot at seq %d passed over: the journal's entry there is not the "
                "one it was made at (the journal lost a tail)", snap.seq,
            )  # fmt: skip
            found = store.at_or_before(snap.seq - 1)
        if found is not None:
            follower.sequencer = Sequencer.restore(cfg, snap.router)
            follower.matchers = restore_matchers(cfg, snap.matchers, snap.seq)
            follower.projection.restore(snap.projection)
            follower.projection.accounts = follower.sequencer.accounts
            follower.seq = snap.seq
        return follower

    def step(self, seq: int, command: Record) -> list[Record]:
        if seq != self.seq + 1:
            raise ValueError(f"journal entry seq {seq} where {self.seq + 1} was next")
        sequencer = self.sequencer
        sequencer.replay(command)
        events: list[Record] = []
        for name in sequencer.matchers_for(command):
            for event in self.matchers[name].execute(command):
                sequencer.apply(event)
                events.append(event)
        sequencer.applied(seq)
        self.seq = seq
        return events

    def save_snapshot(self, crc: int = 0) -> None:
        """Save the state at ``seq``; ``crc``: of the journal's image there (0: unknown)."""
        snap = WriterSnapshot(
            self.seq,
            self.sequencer.snapshot(),
            {name: m.snapshot() for name, m in self.matchers.items()},
            self.projection.snapshot(),
            crc,
        )
        snapshot_store(self.cfg).save(self.seq, msgspec.msgpack.encode(snap))
