"""The rules version in the journal (``procs/common/rules_version.py``): each segment says
what rules its entries were sequenced under, a replay refuses entries of other rules rather
than make other events from them, the upgrade path (a snapshot at the journal's end by the
build that wrote it) needs no such replay, and a standby follows only a primary of its own
rules."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from config.schema import RingexConfig
from procs.common.journal import (
    HEADER_SIZE,
    EntryLayout,
    JournalReader,
    JournalRulesError,
    list_segments,
    pack_header,
    segment_name,
)
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.rules_version import RULES_VERSION
from procs.common.topology import journal_dir, snapshot_dir
from procs.core import recovery
from procs.core.recovery import journal_commands, recover, write_snapshot
from procs.dbwriter import writer as writer_module
from procs.dbwriter.replay import snapshot_store as dbwriter_snapshots
from procs.dbwriter.writer import DbWriter
from procs.replica.wire import GENESIS, Hello, Refused, records_differ
from tests.unit.dbwriter.journal_gen import build, make_cfg, write_all
from tests.unit.replica.test_review33_failover import _ask_source
from tests.unit.router.test_journal import images
from tests.unit.router.test_review3_recovery_bugs import _instance

CODEC = RecordCodec()
SLOT, SCHEMA = CODEC.slot_size, CODEC.journal_schema_id
_RULES_AT = 20  # the header's u32 after magic, version, header size, entry and slot sizes


def _rules_of(segment: Path) -> int:
    return int(struct.unpack_from("<I", segment.read_bytes(), _RULES_AT)[0])


def _writer(directory: Path, rules: int) -> JournalWriter:
    return JournalWriter(directory, slot_size=SLOT, schema_id=SCHEMA, fsync="none", rules=rules)


def _seqs(directory: Path, rules: int | None, from_seq: int = 1) -> list[int]:
    reader = JournalReader(directory, slot_size=SLOT, schema_id=SCHEMA, rules=rules)
    return [seq for seq, _ in reader.entries(from_seq)]


def test_a_segment_records_its_rules_and_a_replay_of_other_rules_is_refused(
    tmp_path: Path,
) -> None:
    with _writer(tmp_path, 7) as w:
        w.append(1, images(1, 3), 3)
    [(_, segment)] = list_segments(tmp_path)
    assert _rules_of(segment) == 7
    assert _seqs(tmp_path, 7) == [1, 2, 3] == _seqs(tmp_path, None)
    with pytest.raises(JournalRulesError) as refused:
        _seqs(tmp_path, 8)
    assert (refused.value.found, refused.value.expected, refused.value.first) == (7, 8, 1)
    text = str(refused.value)
    assert str(segment) in text and "rules version 7" in text and "version 8" in text
    assert "ringex replay --snapshot" in text
    assert _seqs(tmp_path, 8, from_seq=4) == []  # nothing of it to replay: nothing refused


def test_a_writer_of_other_rules_begins_a_segment_of_its_own(tmp_path: Path) -> None:
    with _writer(tmp_path, 0) as w:  # a build from before rules versions
        w.append(1, images(1, 3), 3)
    with _writer(tmp_path, 2) as w:
        assert w.next_seq == 4
        w.append(4, images(4, 2), 2)
    with _writer(tmp_path, 2) as w:  # the same rules: appends to its own segment
        w.append(6, images(6, 1), 1)
    segments = list_segments(tmp_path)
    assert [first for first, _ in segments] == [1, 4]
    assert [_rules_of(path) for _, path in segments] == [0, 2]
    assert _seqs(tmp_path, None) == [1, 2, 3, 4, 5, 6]  # contiguous across the two
    assert _seqs(tmp_path, 2, from_seq=4) == [4, 5, 6]
    with pytest.raises(JournalRulesError, match="no rules version"):
        _seqs(tmp_path, 2, from_seq=3)


def test_an_empty_segment_of_other_rules_is_replaced_by_one_of_the_writers(
    tmp_path: Path,
) -> None:
    """A segment created and never written (a crash between its rename and its first
    entry) holds nothing: the writer of other rules takes its name."""
    path = tmp_path / segment_name(1)
    path.write_bytes(pack_header(EntryLayout(SLOT), SCHEMA, 1, 0, rules=1))
    assert len(path.read_bytes()) == HEADER_SIZE
    with _writer(tmp_path, 3) as w:
        w.append(1, images(1, 2), 2)
    assert [p for _, p in list_segments(tmp_path)] == [path]
    assert _rules_of(path) == 3
    assert _seqs(tmp_path, 3) == [1, 2]


def _rewrite_rules(cfg: RingexConfig, rules: int) -> None:
    """The instance's journal as a build of ``rules`` would have written it."""
    directory = journal_dir(cfg)
    reader = JournalReader(directory, slot_size=SLOT, schema_id=SCHEMA)
    entries = [bytes(image) for _, image in reader.entries(1)]
    for _, path in list_segments(directory):
        path.unlink()
    with JournalWriter(directory, slot_size=SLOT, schema_id=SCHEMA, fsync="none", rules=rules) as w:
        w.append(1, b"".join(entries), len(entries))


def test_recovery_refuses_a_journal_of_other_rules_and_the_upgrade_path_replays_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, count = _instance(tmp_path)
    expected = recover(cfg).state_hashes()  # this build's own journal
    _rewrite_rules(cfg, 0)  # as an older build wrote it
    with pytest.raises(JournalRulesError, match="ringex replay --snapshot"):
        recover(cfg)
    with pytest.raises(JournalRulesError):  # a matcher's own replay, from no snapshot
        list(journal_commands(cfg, "m1", after=0, codec=CODEC))
    # the upgrade: the old build writes a snapshot at the journal's end ...
    with monkeypatch.context() as old_build:
        old_build.setattr(recovery, "RULES_VERSION", 0)
        write_snapshot(cfg, recover(cfg))
    # ... and the new one replays nothing of the old rules, then journals under its own
    recovered = recover(cfg)
    assert (recovered.last_seq, recovered.replayed) == (count, 0)
    assert recovered.state_hashes() == expected
    assert list(journal_commands(cfg, "m1", after=count, codec=CODEC)) == []
    with JournalWriter(journal_dir(cfg), slot_size=SLOT, schema_id=SCHEMA) as w:
        assert w.rules == RULES_VERSION
        w.append(count + 1, images(count + 1, 1), 1)  # its own segment, from count + 1
    assert [first for first, _ in list_segments(journal_dir(cfg))][-1] == count + 1


def test_a_peer_of_other_rules_or_of_unsaid_rules_is_refused() -> None:
    mine = (SCHEMA, SLOT, RULES_VERSION)
    assert records_differ("the standby's", mine, "the primary's", mine) is None
    assert records_differ("the standby's", (0, 0, 0), "the primary's", mine) is None  # unsaid
    other = records_differ("the standby's", (SCHEMA, SLOT, RULES_VERSION + 1), "ours", mine)
    assert other is not None and f"rules version {RULES_VERSION + 1}" in other
    assert records_differ("the standby's", (SCHEMA, SLOT, 0), "ours", mine) is not None


def test_the_primary_refuses_a_standby_of_other_rules(tmp_path: Path) -> None:
    answer, fenced = _ask_source(tmp_path, Hello(1, GENESIS, 1, SCHEMA, SLOT, RULES_VERSION + 1))
    assert isinstance(answer, Refused) and "rules version" in answer.reason, answer
    assert fenced == 0


def test_a_database_writer_run_to_the_end_leaves_a_snapshot_there_for_the_next_build(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upgrade with a database: ``ringex replay --snapshot --to-db`` by the build that
    wrote the journal brings the writer to the journal's end and leaves its snapshot there,
    so the new build's writer resumes at its checkpoint replaying nothing; without it, the
    writer refuses the old rules' entries rather than make rows from them."""
    cfg = make_cfg(tmp_path)
    live = build(cfg, 300)
    live.writer.close()
    _rewrite_rules(cfg, 0)  # as an older build wrote it
    with monkeypatch.context() as old_build:  # that build's writer, run to the end
        old_build.setattr(writer_module, "RULES_VERSION", 0)
        assert write_all(cfg, dsn) == live.last_seq
    newest = dbwriter_snapshots(cfg).latest()
    assert newest is not None and newest[0] == live.last_seq
    resumed = DbWriter(cfg, dsn)
    try:  # the new build: from its snapshot at the checkpoint, nothing replayed
        assert resumed.start().seq == live.last_seq
    finally:
        resumed.close()
    for path in snapshot_dir(cfg, "dbwriter").iterdir():
        path.unlink()  # without it, the replay from the start is refused
    refused = DbWriter(cfg, dsn)
    try:
        with pytest.raises(JournalRulesError):
            refused.start()
    finally:
        refused.close()
