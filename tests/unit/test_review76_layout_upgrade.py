"""A hostile review (76) of the upgrade path for a build of other journaled commands
(0d1a5d6): the reader checks a segment's schema id at the first entry it yields
(``entries(foreign="refuse"|"skip"|"yield")``), recovery's reread window passes over the old
entries, replication hashes them as bytes, and the gateway's order log stamps its command
images with their layout's id.

What holds (looked at, not pinned unless said): the router's recovery, its ``unrouted`` check
and a matcher's restart start from the snapshot at the journal's end and read nothing before
it; the gateway's ``missed_events`` falls back to the books where the old entries cannot be
decoded, and ``matchers_at`` (the gateway's reconcile, market data's reseed) starts from the
exchange snapshot at the upgrade; the JournalWriter begins a segment of its own on a foreign
last segment (an empty one is replaced: pinned below); replication's history hash, demote's
probes and failover.py read the old entries as bytes; the replay pipeline's child refuses
them as the serial replay does.

Faults, each pinned by a test that failed on the code it was written against; all five pass
since their fixes (the same session's next commit):

1. The database writer of the new build does not start after the README's upgrade
   (``ringex replay --snapshot --to-db`` by the old build): ``DbWriter.start`` checks the
   checkpoint's entry CRC with ``_entry_crc`` (``procs/dbwriter/writer.py``), which reads
   that entry with the default ``foreign="refuse"``: the checkpoint is the old build's last
   entry, so the writer raises ``JournalFormatError`` telling the operator to "upgrade from
   a snapshot at the journal's end", which is what they just did.
2. The supervisor's session end cannot read an upgraded journal: ``JournaledEnds``
   (``procs/supervisor/journaled_ends.py``) bisects and scans with the default reader, so
   the old entries (in the journal or its archive, for good) raise at every look. A
   standby's supervisor then never remembers its primary's end, and promoted the next
   morning it sends yesterday's END_OF_SESSION again, expiring the DAY orders of the new
   session (a primary restarted after sending its end sends it twice likewise).
3. The replication source's ``JournalTail`` (``procs/replica/tail.py``) opens the next
   segment in ``_position`` without the header check ``entries`` makes at its first yield:
   a slow read that ends at a segment's end hands the fast path the next segment, and a
   segment of another layout there (an upgrade rolled back the same way: this build, the
   other, this build) is shipped to a standby that decodes it as its own, where
   ``entries`` refuses it.
4. An order-log COMMAND entry without a stamp is taken as the reading build's layout,
   whatever that build is (``Recovered.apply`` in ``procs/gateway/order_log.py``,
   ``GatewayRestart._own_layout``): the images a gateway logged before 2026-11-27 are of
   the commands' layout 0x5245E71EF8B6, so the next build of other commands decodes them as
   its own and sends them (review 68's alias fault, again: the meaning of "unstamped"
   follows the build that reads it).
5. ``entries(foreign="skip")`` on a reader of given rules (``under``) raises the schema
   refusal for a segment of another layout *and* other rules instead of passing over it
   (``JournalReader._scan``: the rules' ``refused`` flag then takes the ``other`` branch).
   No caller combines the two today (recovery's window reader has no rules), but an
   upgrade that changes a layout usually bumps the rules too (``_upgraded_pair`` does).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from procs.common.journal import JournalFormatError, JournalReader, list_segments
from procs.common.journal_writer import JournalWriter
from procs.common.records import AdminCommand
from procs.common.rules_version import RULES_VERSION
from procs.common.topology import journal_dir
from procs.common.types import AdminAction
from procs.dbwriter.replay import snapshot_store as dbwriter_snapshots
from procs.dbwriter.writer import DbWriter
from procs.gateway.order_log import COMMAND, OrderLog
from procs.gateway.restart import GatewayRestart
from procs.replica.tail import JournalTail
from procs.supervisor import session_end
from procs.supervisor.session_end import session_end_path
from tests.unit.dbwriter.journal_gen import build, make_cfg, write_all
from tests.unit.replica.test_source import commands
from tests.unit.router.test_layout_upgrade import CODEC, OTHER
from tests.unit.supervisor.test_review8_session_end_failover import Host
from tests.unit.supervisor.test_session_clock import utc
from tests.unit.supervisor.test_session_end import Sends
from tests.unit.test_review68_reread import _restamp

SLOT, SCHEMA = CODEC.slot_size, CODEC.journal_schema_id


def _write(directory: Path, first: int, n: int, schema: int, rules: int = RULES_VERSION) -> None:
    """Entries ``first .. first + n - 1`` as a build of ``schema`` and ``rules`` journals them
    (a writer of another id or rules than the last segment's begins a segment of its own)."""
    images = b"".join(map(CODEC.encode_slot, commands(first, n)))
    with JournalWriter(
        directory, slot_size=SLOT, schema_id=schema, rules=rules, fsync="none"
    ) as writer:
        assert writer.next_seq == first
        writer.append(first, images, n)


def _reader(directory: Path) -> JournalReader:
    return JournalReader(directory, slot_size=SLOT, schema_id=SCHEMA)


# -- 1. the database writer after the upgrade -------------------------------------------------


def test_the_new_builds_database_writer_resumes_at_the_to_db_checkpoint(
    tmp_path: Path, dsn: str
) -> None:
    """Invariant: after the README's upgrade with a database (stop; ``ringex replay
    --snapshot --to-db`` by the build that wrote the journal; start the new build) the new
    build's writer resumes at the checkpoint, replaying nothing (as for a build of other
    rules: ``test_rules_version``).

    Expected: ``start()`` returns a follower at the journal's last seq (the old build's
    writer snapshot is there, and nothing after it is to replay).

    What happens: ``start`` compares the database's ``last_crc`` with ``_entry_crc``
    (checkpoint), whose ``self.reader.entries(seq)`` refuses the old layout's entry:
    ``JournalFormatError`` ("... or upgrade from a snapshot at the journal's end"), at every
    start of the database writer, and of ``ringex replay --to-db`` by the new build."""
    cfg = make_cfg(tmp_path)
    live = build(cfg, 60)
    live.writer.close()
    assert write_all(cfg, dsn) == live.last_seq  # the old build's `--to-db`, to the end
    newest = dbwriter_snapshots(cfg).latest()
    assert newest is not None and newest[0] == live.last_seq
    _restamp(cfg, OTHER, rules=RULES_VERSION)  # that build's segments: another layout
    resumed = DbWriter(cfg, dsn)
    try:
        assert resumed.start().seq == live.last_seq
    finally:
        resumed.close()


# -- 2. the session end on an upgraded journal ------------------------------------------------


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sends]:
    """The admin ring of whichever instance sends, counted."""
    counted = Sends()
    monkeypatch.setattr(session_end, "send_end_of_session", lambda cfg: counted())
    yield counted


def test_a_standby_promoted_after_an_upgrade_does_not_send_its_primarys_end_again(
    tmp_path: Path, instance: str, sends: Sends, caplog: pytest.LogCaptureFixture
) -> None:
    """Invariant: the journal is what tells a supervisor whether a day's END_OF_SESSION went
    (review 8): a standby remembers each end its primary journals, so promoted it does not
    send that end again (a second one expires the DAY orders of the session after it).

    Expected: the pair was upgraded after the 03-09 session (the old build's entries, then
    the new build's); the primary journals the 03-10 end at 17:00 and the standby's
    supervisor, looking at 17:00:05, remembers it; promoted at 03-11 10:00, it sends nothing.

    What happens: ``JournaledEnds._first_at`` bisects from the journal's oldest seq, and
    ``_ts`` reads each probe with ``reader.entries(seq)`` (``foreign="refuse"``): the old
    entries raise ``JournalFormatError`` at every look ("the journal cannot be read"), the
    standby never remembers the end, and the promoted one sends the 03-10 end at 03-11
    10:00, expiring the 03-11 session's DAY orders. The old segments stay readable to it
    in the archive, so this lasts for good."""
    host = Host(tmp_path, instance, standby=True)
    host.orders("2026-03-09 09:00", "2026-03-09 16:00", 1800)
    _restamp(host.cfg, OTHER, rules=RULES_VERSION)  # the old build's, snapshotted at its end
    assert host.supervise(host.cfg, "2026-03-10 08:00") == [None]  # the new build's start
    host.journal(("end", "2026-03-10 17:00:00"), ("order", "2026-03-11 09:00"))  # its own
    assert len(list_segments(journal_dir(host.cfg))) == 2  # a segment of its own
    with caplog.at_level(logging.WARNING, logger="ringex.supervisor"):
        assert host.supervise(host.cfg, "2026-03-10 17:00:05") == [None]
    remembered = session_end_path(host.cfg).read_text()

    promoted = host.promote()
    assert host.supervise(promoted, "2026-03-11 10:00") == [None]  # sent: the 03-10 end
    assert sends.count == 0
    assert str(utc("2026-03-10 17:00")) in remembered
    assert not any("cannot be read" in r.getMessage() for r in caplog.records)


# -- 3. the replication source's fast path ----------------------------------------------------


def test_the_sources_tail_refuses_a_segment_of_another_layout_as_entries_does(
    tmp_path: Path,
) -> None:
    """Invariant: what the source ships (``ReplicationSource.shipped``, through
    ``JournalTail``) is refused where it is of another layout, as ``entries`` refuses it
    (a standby decodes what it is shipped as its own: "one behind the upgrade is refused").

    Expected: the journal of an upgrade rolled back the README's way (this build's 1..10,
    another layout's 11..20, this build's again from 21); ``read(11)`` raises
    ``JournalFormatError`` as ``entries(11)`` does.

    What happens: ``read(1, 10)`` goes the slow way and ends at its segment's end;
    ``_position(11)`` opens the next segment without its header check, and the fast path
    returns its 10 entries (seq and CRC verified only): shipped, applied as this build's."""
    directory = tmp_path / "journal"
    _write(directory, 1, 10, SCHEMA)
    _write(directory, 11, 10, OTHER)  # the other build's, upgraded to
    _write(directory, 21, 10, SCHEMA)  # and back
    assert [first for first, _ in list_segments(directory)] == [1, 11, 21]
    shipped = _reader(directory).under(RULES_VERSION)
    with pytest.raises(JournalFormatError):
        list(shipped.entries(11))
    tail = JournalTail(shipped)
    try:
        assert len(tail.read(1, 10)) == 10
        with pytest.raises(JournalFormatError):
            tail.read(11, 10)
    finally:
        tail.close()


# -- 4. unstamped order-log commands ----------------------------------------------------------


def test_an_unstamped_logged_command_is_of_the_layout_before_the_stamp(tmp_path: Path) -> None:
    """Invariant: a gateway of another layout passes over the command images it did not
    write in its own (``_own_layout``); an entry without the stamp was written by a build up
    to 2026-11-27, whose commands' layout is 0x5245E71EF8B6 (this build's today, the key of
    ``LEGACY_SCHEMA_IDS``), whichever build reads it.

    Expected: a gateway of the next build of other commands (journal id ``OTHER``) passes
    over an unstamped image, as it passes over one stamped 0x5245E71EF8B6.

    What happens: ``Recovered.apply`` records no schema for it and ``_own_layout`` keeps
    every command without one, so that build decodes the old image under its own layout and
    publishes it (or raises ``RecordDecodeError`` at its start)."""
    path = tmp_path / "orders.log"
    image = CODEC.encode_slot(AdminCommand(0, 0, AdminAction.SNAPSHOT, 0, 42))
    log = OrderLog(path)
    log.load()
    log.write([(COMMAND, 7, 1, image)])  # as a gateway before the stamp logged it
    log.write([(COMMAND, 8, 1, image, SCHEMA)])  # and one of today's build
    log.close()
    log = OrderLog(path)
    try:
        recovered = log.load()
    finally:
        log.close()
    next_build = cast(
        GatewayRestart,
        SimpleNamespace(codec=SimpleNamespace(journal_schema_id=OTHER, slot_size=CODEC.slot_size)),
    )
    assert GatewayRestart._own_layout(next_build, recovered) == {}


def test_this_build_keeps_its_own_and_the_unstamped_commands(tmp_path: Path) -> None:
    """Pinned: today's build takes both an unstamped image and one of its own id as its own
    (the fix for 4 must keep that: the unstamped layout is this build's)."""
    path = tmp_path / "orders.log"
    image = CODEC.encode_slot(AdminCommand(0, 0, AdminAction.SNAPSHOT, 0, 42))
    log = OrderLog(path)
    log.load()
    log.write([(COMMAND, 7, 1, image), (COMMAND, 8, 1, image, SCHEMA)])
    log.write([(COMMAND, 9, 1, image, OTHER)])
    log.close()
    log = OrderLog(path)
    try:
        recovered = log.load()
    finally:
        log.close()
    this_build = cast(GatewayRestart, SimpleNamespace(codec=CODEC))
    assert sorted(GatewayRestart._own_layout(this_build, recovered)) == [7, 8]


# -- 5. skip under rules ----------------------------------------------------------------------


def test_a_reader_of_given_rules_passes_over_another_layouts_entries_when_told_to(
    tmp_path: Path,
) -> None:
    """Invariant: ``entries(foreign="skip")`` passes over the entries of another layout
    (its docstring); rules refuse only what a reader yields, and it yields none of them.

    Expected: an old build of another layout and other rules wrote 1..5, this build 6..8;
    ``under(RULES_VERSION).entries(1, foreign="skip")`` yields 6, 7, 8.

    What happens: ``_scan`` sets ``refused`` for the other rules, and at the first entry
    ``if refused: if other: raise _format_error(...)``: the schema refusal, in the very
    mode that promised to pass over another layout's entries."""
    directory = tmp_path / "journal"
    _write(directory, 1, 5, OTHER, rules=RULES_VERSION + 1)
    _write(directory, 6, 3, SCHEMA)
    reader = _reader(directory)
    assert [s for s, _ in reader.entries(1, foreign="skip")] == [6, 7, 8]  # no rules: holds
    assert [s for s, _ in reader.under(RULES_VERSION).entries(1, foreign="skip")] == [6, 7, 8]


# -- pinned: what holds -----------------------------------------------------------------------


def test_an_empty_last_segment_of_another_layout_is_replaced_by_the_writers(
    tmp_path: Path,
) -> None:
    """Pinned: the old build rolled a fresh segment and stopped before its first entry; the
    new build's writer replaces it (same file name) with one of its own id, and every
    reader meets the old entries only in the segment before."""
    directory = tmp_path / "journal"
    _write(directory, 1, 4, OTHER)
    with JournalWriter(
        directory, slot_size=SLOT, schema_id=OTHER, segment_bytes=64 + 144 * 4
    ) as old:
        old._roll()  # the empty segment at 5
    assert [first for first, _ in list_segments(directory)] == [1, 5]
    _write(directory, 5, 2, SCHEMA)
    assert [first for first, _ in list_segments(directory)] == [1, 5]
    reader = _reader(directory)
    assert reader.last_seq() == 6
    assert [s for s, _ in reader.entries(5)] == [5, 6]
    assert [s for s, _ in reader.entries(1, foreign="skip")] == [5, 6]
    with pytest.raises(JournalFormatError, match=f"schema_id is {OTHER:#x}"):
        list(reader.entries(4))
