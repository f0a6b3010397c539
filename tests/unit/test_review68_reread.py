"""Review 68: a hostile reread of 25f1f33 (reviews 66 and 67 fixed: the journal's legacy
schema ids, untimed transfer keys, the demote's cluster id, REST 504 at the stop,
``pg_isready``'s lookup, the benchmarks' judges).

What holds:

- Untimed transfer keys (``procs/core/transfer_keys.py``): a differential run of 3,000
  random transfer sequences (keys reused, the clock stepping forward by up to 8 days and
  back by up to 10, keys of an older snapshot with and without their transfers) decides
  every transfer the same and ends in the same ``state`` (and ``_latest``) whether the keys
  run straight through or are snapshotted (``state``) and restored at any point, right
  after the restore included; an untimed key stays untimed through a snapshot, all are
  timed together at the first accepted transfer (never a refused one: only ``add`` times
  them, and a key still untimed is in use, so it cannot be added again before), and the
  ``_order`` they join stays sorted. The router's live path and every replay (recovery, the
  standby, the database writer's ``Follower``) pass the same ``ts_ns`` (the stamped one),
  and the writer and recovery replay only entries of this build's rules
  (``reader.under(RULES_VERSION)``), so none restores an older snapshot at another point
  than the router's.
- ``LEGACY_SCHEMA_IDS`` as today's build registers it: the whole-set id covers the commands,
  so a segment carrying it holds this build's command layouts. A writer never appends to an
  aliased segment (``JournalWriter`` compares the tail's schema id; ``cut_after`` and the
  standby write through it; a rebuild only truncates). ``under`` keeps the aliases. The
  replication handshake compares the journal id exactly (``records_differ``): a standby of
  the old build (whole-set id, rules 1) is still refused, and would be for its id alone.
- REST 504 at the stop: every request that waits (new order, cancel, amend, mass cancel,
  account) documents 504. ``_settle``: ``pg_isready`` runs through ``_cmd`` (setpriv as the
  server's user, whose socket directory it reaches); a missing one skips the wait as before.
  The benchmarks' judges: "not judged" only below the target's offer (acks cannot exceed the
  offer by more than one order's worth), a ratio below 70% is a miss.

Faults, each pinned by a test that failed on the code it was written against; the first two
pass since their fixes (the same session's commits), the third since a later session's
(it was a documented limit until then):

1. ``rebuild`` (``procs/replica/rebuild.py``) deletes ``journal/cluster``: the demoted
   instance, which carries the newest epoch (it was told of the promotion), says no cluster
   id until a frame arrives, so pointed at another venue's primary it fences that primary
   (review 33's limit the cluster id closed). Before 25f1f33 its id refused it.
2. ``LEGACY_SCHEMA_IDS`` is computed from the build's own record set
   (``procs/common/records.py``): the first build that changes only an event (what the
   journal id was made to allow) registers its own whole-set id, which no build ever wrote,
   and the 82bd4da segments still in the journal stop it again as in review 67.
3. Any other schema id is refused in every segment, also those the snapshot covers, while the
   refusal (``procs/common/journal.py``) and the README tell the operator to snapshot with
   the old build and start this one: doing so meets the same refusal.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import types
import zlib
from pathlib import Path

import pytest

from config.schema import RingexConfig
from procs.common import journal
from procs.common.epochs import Epochs
from procs.common.journal import HEADER_SIZE, JournalReader, list_segments
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.record_layout import schema_id
from procs.common.records import JOURNALED_TYPES
from procs.common.rules_version import RULES_VERSION
from procs.common.topology import journal_dir
from procs.core.recovery import journal_end, recover, write_snapshot
from procs.replica import cluster
from procs.replica.rebuild import rebuild
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby
from procs.replica.wire import records_differ
from tests.unit.replica.test_review_replica_bugs import append, pair, until
from tests.unit.router.test_review3_recovery_bugs import _instance

CODEC = RecordCodec()
OLD_SCHEMA = 0x5245_DCF9_48CF  # what 82bd4da stamped (the whole record set of its day)
_RULES_AT, _SCHEMA_AT, _CRC_AT = 20, 24, HEADER_SIZE - 4


def _restamp(cfg: RingexConfig, schema: int, rules: int = 1) -> None:
    """Rewrite each segment's header as another build wrote it (entries unchanged)."""
    for _, path in list_segments(journal_dir(cfg)):
        data = bytearray(path.read_bytes())
        struct.pack_into("<I", data, _RULES_AT, rules)
        struct.pack_into("<Q", data, _SCHEMA_AT, schema)
        struct.pack_into("<I", data, _CRC_AT, zlib.crc32(bytes(data[:_CRC_AT])))
        path.write_bytes(bytes(data))


def _snapshotted_by(tmp_path: Path, schema: int) -> tuple[RingexConfig, int]:
    """An instance stopped and snapshotted at its journal's end by a build of ``schema``
    (the README's upgrade step), handed to this build."""
    cfg, count = _instance(tmp_path)
    write_snapshot(cfg, recover(cfg))
    _restamp(cfg, schema)
    return cfg, count


# -- 1. a rebuilt primary says no cluster id, and fences another venue's primary --------------


def test_a_demoted_primary_pointed_at_another_venue_does_not_fence_it(tmp_path: Path) -> None:
    """The demoted instance (cluster X) is rebuilt for the promoted one at epoch 2;
    ``_rebuild`` unlinks ``journal/cluster``. Its standby profile names a wrong address: a
    primary of another venue (cluster of its own, epoch 1). The Hello says epoch 2 and
    cluster "", which ``cluster.differ`` does not compare, and the epoch check runs before
    the history check: that healthy primary fences itself and its router stops sequencing.
    Before 25f1f33 the kept X refused the Hello first. A correct rebuild writes the promoted
    instance's id (its EpochHistory carries it; the rebuild has just compared its epochs)
    instead of none, so the wrong primary refuses the standby and stays unfenced."""
    venue_b, demoted = pair(tmp_path)
    append(demoted, 1, 3)
    cluster.keep(journal_dir(demoted), "0123456789abcdef0123456789abcdef")
    Epochs().fenced(2, "the promoted standby").save(journal_dir(demoted))
    # what demote does for the promoted one, its cluster id said (it made its own)
    rebuild(demoted, Epochs().promoted(2, 4), None, "fedcba9876543210fedcba9876543210")
    append(venue_b, 1, 3)  # another venue's primary, at epoch 1

    async def scenario() -> int:
        source = ReplicationSource(venue_b)
        serving = asyncio.create_task(source.run())
        standby = Standby(demoted)
        following = asyncio.create_task(standby.run())
        try:
            await until(lambda: following.done() or source.epochs.fence is not None, 3.0)
            await asyncio.sleep(0.05)
            return source.epochs.fence.epoch if source.epochs.fence is not None else 0
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            standby.journal.close()
            source.stopping.set()
            await serving
            source.close()

    fenced = asyncio.run(scenario())
    assert fenced == 0, f"another venue's primary was fenced at epoch {fenced}"


# -- 2. the legacy alias is lost by the first build that changes an event --------------------


def _future_build_aliases(monkeypatch: pytest.MonkeyPatch) -> dict[int, frozenset[int]]:
    """What ``records.py`` registers in a build that adds a field to ``Balance`` (an event:
    not journaled), executed from today's source into a registry of its own."""
    source = Path(sys.modules["procs.common.records"].__file__ or "").read_text()
    fields = "    reserved: I64\n    last: U8\n"
    assert source.count(fields) == 1
    source = source.replace(fields, fields + "    spare: U8 = 0\n")
    registry = journal.LEGACY_SCHEMA_IDS  # (it registered its own into an empty one here,
    # before the fix: the alias is a constant of journal.py since)
    module = types.ModuleType("review68_future_records")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, module.__name__, "exec"), module.__dict__)
    # (what its codec, record_codec.py's since, makes its journal id of)
    future_journal_id = schema_id(list(module.JOURNALED_TYPES))
    assert future_journal_id == CODEC.journal_schema_id  # the premise: same commands
    assert schema_id(module.RECORD_TYPES) != OLD_SCHEMA  # and another record set
    return registry


def test_a_build_that_changes_an_event_still_reads_the_82bd4da_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``records.py`` registers ``{journal id: {schema_id(RECORD_TYPES)}}``, computed from
    the build's own records. A later build that adds a field to an event keeps the journal
    id (which is why 2eec74d made it the commands' alone: "a build that changes only an
    event replays the journals before it") but registers its *own* whole-set id, which no
    build ever stamped: the segments 82bd4da wrote (today's whole-set id) are no longer read,
    and every reader that opens them (a standby's history from seq 1, a new standby's at the
    primary, ``agreed_seq``, recovery's tail until a segment of this build is written)
    refuses them, as in review 67. A correct alias names the ids that were written: the
    82bd4da whole-set id as a constant, keyed by the journal id it covers."""
    cfg, count = _snapshotted_by(tmp_path, OLD_SCHEMA)
    _future_build_aliases(monkeypatch)
    reader = JournalReader(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    assert sum(1 for _ in reader.entries(1)) == count


# -- 3. the refusal's upgrade path does not start the new build ------------------------------


def test_the_upgrade_path_the_refusal_names_starts_the_new_build(tmp_path: Path) -> None:
    """A build of other journaled commands (a field added to a command: another journal
    id, no alias, as it should be) meets the previous build's journal. The refusal says "To
    upgrade, stop the exchange, write a snapshot at the journal's end with the build that
    wrote it (`ringex replay --snapshot` ...), then start this one", and the README promises
    such a build "refuses them, naming ... the upgrade path above" ("what a snapshot covers
    is never replayed"). Done literally, the snapshot covers every segment and the same
    ``JournalFormatError`` stops the matcher (``journal_end``), the router's recovery and its
    ``JournalWriter``: 25f1f33 made review 67's path work for the one aliased id only. A
    correct exchange checks the schema of the entries it decodes (those after the snapshot)
    and starts from the snapshot, its writer beginning a segment of its own.

    Passes since the reader checks a segment's schema id at the first entry it yields, as
    it checks rules (``tests/unit/router/test_layout_upgrade.py``)."""
    other = schema_id([t for t in JOURNALED_TYPES if t is not JOURNALED_TYPES[-1]])
    assert other not in (CODEC.journal_schema_id, OLD_SCHEMA)
    cfg, count = _snapshotted_by(tmp_path, other)
    assert journal_end(cfg) == count
    recovered = recover(cfg)
    assert (recovered.last_seq, recovered.replayed) == (count, 0)
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    ) as w:
        assert w.next_seq == count + 1


def test_the_old_builds_standby_is_still_refused_at_the_handshake() -> None:
    """Holds: the alias is the journal's only; the handshake compares ids exactly."""
    mine = (CODEC.journal_schema_id, CODEC.slot_size, RULES_VERSION)
    for rules in (1, RULES_VERSION):
        refused = records_differ("the standby's", (OLD_SCHEMA, CODEC.slot_size, rules), "x", mine)
        assert refused is not None and f"{OLD_SCHEMA:#x}" in refused
