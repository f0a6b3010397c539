"""The archive bound: the first journal entry any reader may still replay from.

``ringex replay --archive`` moves the segments wholly before it to ``journal.archive_dir``
(``journal_archive.py``); readers given the archive read them there all the same. Each
reader that restarts from a snapshot bounds it by its oldest snapshot kept (a damaged newer
one is passed over for it), less the window a restarted router reads back.
"""

from __future__ import annotations

import msgspec

from config.schema import RingexConfig
from procs.common import published_through
from procs.common.snapshots import SnapshotStore
from procs.common.topology import snapshot_dir
from procs.core.recovery import ExchangeSnapshot, JournaledTail, MatcherHead, snapshot_store


def _oldest_copies(exchange: SnapshotStore) -> dict[str, bytes]:
    """The matchers' books in the oldest exchange snapshot kept; none where it is damaged
    (or there is none)."""
    oldest = exchange.oldest_seq()
    found = None if oldest is None else exchange.at_or_before(oldest)
    if found is None:
        return {}
    return msgspec.msgpack.decode(found[1], type=ExchangeSnapshot).matchers


def _served_by_exchange(copies: dict[str, bytes], name: str, own: SnapshotStore) -> bool:
    """Whether matcher ``name`` restarts from an exchange snapshot's copy of its books
    whatever its own snapshots: its output is known published (its newest own snapshot, or
    ``published_through``) through the last command of the oldest exchange snapshot's copy
    (``copies``), which ``matcher_snapshot`` then takes (its output keeps those events; a
    matcher whose rings are new takes the newest snapshot of any kind). False where that
    cannot be read: the oldest exchange snapshot damaged, or without the matcher."""
    books = copies.get(name)
    if books is None:
        return False
    last = msgspec.msgpack.decode(books, type=MatcherHead).last_seq
    published = max(own.newest_seq() or 0, published_through.read(own.directory))
    return published >= last


def archivable_before(cfg: RingexConfig) -> int:
    """The first seq any reader of the journal still needs: segments wholly before it can
    be archived. The oldest snapshot kept of the exchange, of every matcher (a matcher
    replays the journal from its snapshot) and, with the database on, of the writer (it
    replays from there), since a damaged newer one is passed over for it; less the window
    of entries before its snapshot a restarted router reads (``JournaledTail``).

    Replication is no bound: the two sides hash the journal from its first entry to agree on
    a history, and a standby behind the point catches up from there, but both read archived
    segments where the journal no longer has them (``journal.archive_dir``), so an archive
    kept whole serves them (README, Replication).

    A matcher's own snapshots are no bound where it has published through the last command
    of the oldest exchange snapshot's copy of its books (``_served_by_exchange``): it
    restarts from that copy, or a newer snapshot, whatever its own hold. So a matcher whose
    symbols are quiet, whose own oldest may be months old or missing, holds nothing back."""
    exchange = snapshot_store(cfg)
    stores = [exchange]
    copies = _oldest_copies(exchange)
    for m in cfg.matchers:
        own = SnapshotStore(snapshot_dir(cfg, f"matcher-{m.name}"))
        if not _served_by_exchange(copies, m.name, own):
            stores.append(own)
    if cfg.database.enabled:
        stores.append(SnapshotStore(snapshot_dir(cfg, "dbwriter")))
    seqs = [store.oldest_seq() or 0 for store in stores]
    return max(1, min(seqs) + 1 - JournaledTail.for_config(cfg).window)
