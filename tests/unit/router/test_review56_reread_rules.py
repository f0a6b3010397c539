"""A hostile reread of 145229c ("Journal: each segment records the rules version its entries
were sequenced under"), against its own promise (README, "The router and the journal"): a
replay never makes events or a state again from entries sequenced under other rules, and
each segment's header says what rules its entries were sequenced under.

Each test pinned one fault and failed on the code it was written against; its docstring
says what should happen, what happened, where the cause was and a fix. Each passes since
its fix (the same session's commits). Checked and found right (no test): the router's
recovery, pipelined or not (a refusal in the child falls back to the serial replay, which
raises ``JournalRulesError``), ``journal_commands`` (a matcher's start, ``missed_events``,
``matchers_at``, the market-data reseed), a segment boundary exactly at the snapshot's seq,
look-only readers (``unrouted``, ``journaled_refs``, the supervisor's, promotion, failover's
digests), a writer switching rules over a torn or full old segment, its directory fsyncs,
``cut_on_failure`` after the switch, and the handshake (Hello, EpochHistory, AskEpochs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from config.schema import RingexConfig
from procs.common.journal import JournalReader, JournalRulesError, list_segments
from procs.common.journal_writer import JournalWriter, cut_after
from procs.common.records import Record
from procs.common.rules_version import RULES_VERSION
from procs.common.topology import journal_dir
from procs.core import recovery
from procs.core.recovery import journal_commands, recover, write_snapshot
from procs.dbwriter.replay import Follower
from procs.dbwriter.writer import DbWriter
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby
from tests.unit.replica.test_review_replica_bugs import pair, until
from tests.unit.replica.test_source import commands
from tests.unit.router.test_review3_recovery_bugs import _instance
from tests.unit.router.test_rules_version import CODEC, SCHEMA, SLOT, _rewrite_rules, _rules_of


def _journal(directory: Path, first: int, batch: list[Record], rules: int) -> None:
    """``batch`` appended from seq ``first`` by a build of rules version ``rules``."""
    with JournalWriter(directory, slot_size=SLOT, schema_id=SCHEMA, fsync="none", rules=rules) as w:
        w.append(first, b"".join(map(CODEC.encode_slot, batch)), len(batch))


def _old_build_snapshot(cfg: RingexConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's upgrade step: the build that wrote the journal (rules 0) writes a
    snapshot at its end (``ringex replay --snapshot``)."""
    with monkeypatch.context() as old_build:
        old_build.setattr(recovery, "RULES_VERSION", 0)
        write_snapshot(cfg, recover(cfg))


def test_a_standby_does_not_apply_entries_the_primary_sequenced_under_other_rules(
    tmp_path: Path,
) -> None:
    """The README: "A standby follows only a primary of its own rules version". The
    handshake compares the two builds' versions, not the entries': a primary upgraded the
    README's way holds seqs 1..2 in a segment of rules 0 (the old build's) and 3..4 in one
    of its own. A standby of the new build that is behind those seqs (added after the
    upgrade, rebuilt by demote, or down during it and upgraded "with the primary") asks
    from seq 1; the source (``source.py`` ``_stream``, through ``JournalTail`` and an
    unchecked ``JournalReader``) ships them, and the standby (``standby.py`` ``persist``
    then ``apply``, i.e. ``Recovered.apply``) executes them under its own rules, making
    the state and market data the upgrade procedure exists to avoid. Worse, its
    ``JournalWriter`` stamps them with its own ``RULES_VERSION``: the label that would make
    a later replay refuse is lost, and a promoted standby replays them in silence.
    Expected: the standby refuses (the source names the seqs of other rules) and applies
    nothing. Fix: the source reads with ``rules=RULES_VERSION`` from the Hello's
    ``next_seq`` and answers ``Refused`` on ``JournalRulesError`` (or ``Entries`` carries
    the segment's rules, and the standby refuses to apply, and labels its segment, by
    them)."""
    primary, secondary = pair(tmp_path)
    _journal(journal_dir(primary), 1, commands(1, 2), rules=0)  # the old build's
    _journal(journal_dir(primary), 3, commands(3, 2), rules=RULES_VERSION)  # upgraded

    async def scenario() -> int:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        standby = Standby(secondary)  # a new standby of the new build
        following = asyncio.create_task(standby.run())
        try:
            await until(lambda: standby.next_seq == 5 or following.done(), timeout=5.0)
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            standby.journal.close()
            source.stopping.set()
            await serving
            source.close()
        return standby.state.last_seq

    applied = asyncio.run(scenario())
    relabelled = [_rules_of(path) for _, path in list_segments(journal_dir(secondary))]
    assert applied == 0, f"applied seqs 1..{applied}; its segments say rules {relabelled}"


def test_the_database_writer_does_not_replay_entries_of_other_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``procs/dbwriter/replay.py``: "The journal, replayed as recovery does, with the
    events each command makes": ``Follower.step`` runs each journaled command through a
    ``Sequencer`` and the matchers and the rows written come from the events. The commit
    checks the router's, a matcher's and ``ringex replay``'s replays, not this one:
    ``DbWriter.reader`` has no ``rules``. After the README's upgrade (the old build's
    snapshot at the journal's end), the new build's database writer restores its own
    snapshot, older than that (every 1M commands or 300 s; none here), and replays the
    old-rules entries up to its checkpoint under the new rules: its books, balances and open
    orders differ from the exchange's, and every row it writes after them is of a history
    no client was told of. ``ringex replay --to-db`` ("rebuild into an empty database")
    writes such rows for the whole journal. Expected: ``JournalRulesError`` (or no replay of
    an old-rules entry). Fix: ``DbWriter.reader`` with ``rules=RULES_VERSION``; the upgrade
    procedure (README, rules_version.py) gives the writer a snapshot at the journal's end
    too (``ringex replay --snapshot`` writing the dbwriter's, or a clean stop of the old
    writer writing one)."""
    cfg, count = _instance(tmp_path)
    _rewrite_rules(cfg, 0)
    _old_build_snapshot(cfg, monkeypatch)
    assert recover(cfg).replayed == 0  # the router's side of the upgrade is right
    stepped: list[int] = []
    step = Follower.step

    def recorded(self: Follower, seq: int, command: Record) -> list[Record]:
        stepped.append(seq)
        return step(self, seq, command)

    monkeypatch.setattr(Follower, "step", recorded)
    writer = DbWriter(cfg, "postgresql://ringex@127.0.0.1:1/none")
    monkeypatch.setattr(writer.store, "checkpoint_entry", lambda: (count, None))
    try:
        writer.start()  # the database holds every row up to the journal's end
    except JournalRulesError:
        pass
    finally:
        writer.close()
    assert stepped == [], f"replayed seqs {stepped[0]}..{stepped[-1]} of rules 0 under rules 1"


def test_a_torn_last_entry_of_an_old_rules_segment_is_not_refused_as_an_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal's docstring: "a reader given rules refuses to yield an entry of a segment
    of another version"; a torn last entry (full size, bad CRC, nothing after it: what a
    crash in the write leaves, ``_bad_entry``) is no entry, and every reader stops before it.
    After a crash of the old build, the README's upgrade (the old build's snapshot at the
    journal's last good entry, then the new build) leaves the torn entry until the router's
    writer repairs it, and the matchers start first: ``matcher/main.py`` replays
    ``journal_commands(after=<the snapshot's seq>)`` (a new input ring: no ``upto``), and
    ``JournalReader._scan`` raises ``JournalRulesError`` because ``size - offset >= size_e``,
    before it looks at the bytes. The matcher exits, refusing a segment whose every entry
    the snapshot covers. Expected: nothing to replay, no error. Fix: check the rules where
    an entry is about to be yielded (its CRC good), not on the file's size."""
    cfg, count = _instance(tmp_path)
    _rewrite_rules(cfg, 0)
    [(_, segment)] = list_segments(journal_dir(cfg))
    data = bytearray(segment.read_bytes())
    data[-8] ^= 0xFF  # the last entry's CRC: a torn tail
    segment.write_bytes(bytes(data))
    reader = JournalReader(journal_dir(cfg), slot_size=SLOT, schema_id=SCHEMA)
    assert reader.last_seq() == count - 1
    _old_build_snapshot(cfg, monkeypatch)
    assert recover(cfg).replayed == 0  # the router is fine: it reads no entry after it
    assert list(journal_commands(cfg, "m1", after=count - 1, codec=CODEC)) == []


def test_a_cut_keeps_the_rules_of_the_entries_it_sets_aside(tmp_path: Path) -> None:
    """README: "Each segment's header also records the version of the exchange's rules its
    entries were sequenced under". ``cut_after`` (what ``failover.py demote`` does with an
    old primary's tail, "kept for the operator") copies the entries after ``seq`` into a
    journal of its own through ``JournalWriter(aside, ...)`` with the default
    ``rules=RULES_VERSION``: a tail sequenced under rules 0 is set aside in a segment that
    says rules 1, so a replay of it (checked) takes it as this build's and makes events
    under the wrong rules. Expected: the aside segment says 0 (each of its segments the
    rules of the source segment its entries came from), and a rules-checked read of it is
    refused. Fix: in ``cut_after``, write the aside per source segment with that segment's
    rules (the reader's ``_Tail``/header already returns them)."""
    directory, aside = tmp_path / "journal", tmp_path / "aside"
    _journal(directory, 1, commands(1, 6), rules=0)
    assert cut_after(directory, 3, aside, slot_size=SLOT, schema_id=SCHEMA) == 3
    [(first, path)] = list_segments(aside)
    assert first == 4
    assert _rules_of(path) == 0, f"set aside as rules {_rules_of(path)}"
    with pytest.raises(JournalRulesError):
        list(JournalReader(aside, slot_size=SLOT, schema_id=SCHEMA, rules=1).entries(4))
