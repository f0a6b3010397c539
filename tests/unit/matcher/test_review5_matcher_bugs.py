"""Bugs a fifth hostile review of the matcher (core books and process shell) found. Each test
fails on the code as reviewed; its docstring says what is wrong and what is right.

Found sound (no test): the fast book against the reference, event for event and by state
hash, on random streams with tick 5, lot 2, the limit collar, small ``iceberg_parts``, every
order type, STP mode and time in force, snapshot and restore every 97 commands and a
``SWEEP_AT`` of 4 (so the empty-level sweep runs all the time); quantity conservation, one
``OrderDone`` per order, FOK all-or-nothing, ``BookLevel`` events that rebuild ``levels()``
exactly, and no pending stop left reached by the last price; and a ``Matcher`` fed
out-of-range prices, sizes, ids and symbols: no exception, no event that fails to encode.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.schema import (
    DatabaseConfig,
    MatcherConfig,
    RingConfig,
    RingexConfig,
    SymbolConfig,
    WaitConfig,
)
from procs.common.journal import HEADER_SIZE, EntryLayout
from procs.common.journal_archive import archive_segments_before
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import Heartbeat, MassCancel, NewOrder, Record
from procs.common.snapshots import SnapshotStore
from procs.common.topology import (
    REPLAY_SOURCE,
    journal_dir,
    matcher_input,
    matcher_output,
    snapshot_dir,
)
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.core.archive_bound import archivable_before
from procs.core.engine import Matcher
from procs.core.recovery import ExchangeSnapshot, snapshot_store
from procs.core.symbols import symbol_specs
from procs.matcher.main import INPUT_CONSUMER, MatcherShell
from shm import Ring

CODEC = RecordCodec()

# -- the process shell: snapshots taken after the last event ----------------------------------


def _shell_config(instance: str, var: Path) -> RingexConfig:
    return RingexConfig(
        instance=instance,
        ring=RingConfig(capacity=4),  # a restarted router reads back 4 x 2 journal entries
        wait=WaitConfig(strategy="blocking", park_timeout_s=0.01),
        symbols=[SymbolConfig(name="AAA", id=3, max_qty=100)],
        matchers=[MatcherConfig(name="m1", symbols=["AAA"], snapshot_every=5, batch=1)],
        database=DatabaseConfig(enabled=False),
        var_dir=str(var),
    )


def _bid(seq: int, price: int) -> NewOrder:
    return NewOrder(
        *(seq, seq, 1, 1, seq, 1, 3, seq),
        side=Side.BUY,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC,
        flags=0,
        stp=StpMode.NONE,
        price=price,
        qty=1,
        stop_price=0,
        display_qty=0,
    )


def test_a_restart_uses_the_snapshots_taken_after_the_last_event_so_archiving_is_safe(
    instance: str, tmp_path: Path
) -> None:
    """A matcher restarts from "the newest snapshot at or before where its output ring
    stopped" (README, Recovery), and ``archivable_before`` (procs/core/recovery.py) lets
    ``ringex replay --archive`` move away every journal segment before the oldest snapshot
    kept of each matcher, since "a matcher replays the journal from its snapshot".

    But ``published_position`` (procs/matcher/main.py) takes where the ring stopped from the
    seq of the last *event* in it, and ``MatcherShell.__init__`` refuses every snapshot newer
    than that. Commands that produce no event (a mass cancel for an account with nothing on
    these symbols, as every symbol-0 mass cancel is for most matchers; a SNAPSHOT or SHUTDOWN
    admin command) leave the ring behind ``last_seq``, so every snapshot taken after them
    (``snapshot_every``, SNAPSHOT, the clean stop's) is refused at the next start. Here five
    resting bids (seqs 1-5, events) are followed by 54 mass cancels that cancel nothing; the
    matcher snapshots at 50, 55 and 59 (its three kept) and the router's exchange snapshot is
    at 55. The restart falls back to the empty book and asks the journal for seq 1 on, which
    ``--archive`` (judging by those very snapshots) has moved away: ``JournalError``, at every
    start, and the matcher never comes back.

    Expected: the restart restores its clean-stop snapshot (seq 59; every event up to 59 is
    in the ring), needs nothing of the journal before it, and holds the five bids. A fix:
    publish a "published through ``last_seq``" mark (the ``RECOVERED_SOURCE`` heartbeat) when
    a batch produced no event, or at least before each snapshot is saved."""
    cfg = _shell_config(instance, tmp_path)
    Ring.create(instance, matcher_input("m1"), CODEC, capacity=1024, consumers=[INPUT_CONSUMER])
    outbound = Ring.create(instance, matcher_output("m1"), CODEC, capacity=1024, consumers=["tap"])
    journal: list[Record] = [_bid(seq, 100 + seq) for seq in range(1, 6)]
    # account 2 has no orders: these cancel nothing and answer nothing
    journal += [MassCancel(seq, seq, 1, 2, seq, 2, 0) for seq in range(6, 60)]

    shell = MatcherShell(cfg, "m1")  # starts with no journal: it all comes live, by its ring
    entry = EntryLayout(CODEC.slot_size).size
    with JournalWriter(
        journal_dir(cfg),
        slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id,
        segment_bytes=HEADER_SIZE + 10 * entry,  # ten entries a segment
        fsync="none",
    ) as writer:  # what the router journaled before it routed them
        writer.append(1, b"".join(CODEC.encode_slot(c) for c in journal), len(journal))
    producer = Ring.attach(instance, matcher_input("m1"), CODEC).producer()
    producer.publish_batch(journal)
    while shell.step(timeout_s=0.01):
        pass
    shell.save_snapshot()  # a clean stop
    shell.close()
    producer.close()
    own = SnapshotStore(snapshot_dir(cfg, "matcher-m1"))
    latest = own.latest()
    assert own.oldest_seq() == 50 and latest is not None and latest[0] == 59

    # the router's snapshot child saved the exchange (and this matcher's books) at 55
    at_55 = Matcher(symbol_specs(cfg, "m1"))
    at_55.execute_all(journal[:55])
    copy = ExchangeSnapshot(55, b"", {"m1": at_55.snapshot()})
    snapshot_store(cfg).save(55, msgspec.msgpack.encode(copy))

    # ``ringex replay --archive``: every reader restarts from one of those snapshots
    before = archivable_before(cfg)
    # 55 + 1 - the router's window of 8: the exchange snapshot's (43, from its own oldest
    # 50, until its own snapshots stopped bounding a matcher whose output is known to be
    # past the copy's last command: its newest, 59, says so; test_quiet_matcher_archive.py)
    assert before == 48
    archive_segments_before(journal_dir(cfg), before, tmp_path / "journal-archive")

    restarted = MatcherShell(cfg, "m1")  # JournalError: from_seq 1 ... entries were archived
    try:
        marks = [
            e.counter
            for e in outbound.consumer("tap").read(4096)
            if isinstance(e, Heartbeat) and e.source == REPLAY_SOURCE
        ]
        assert marks[-1] == 59  # replayed from the clean stop's snapshot
        assert restarted.matcher.last_seq == 59
        assert sorted(restarted.matcher.books[3].orders) == [1, 2, 3, 4, 5]
    finally:
        restarted.close()


def test_a_start_killed_during_its_replay_on_new_rings_leaves_the_next_able_to_start(
    instance: str, tmp_path: Path
) -> None:
    """On new rings (a reboot wiped /dev/shm) a matcher may start from any snapshot: it
    publishes the mark ``Heartbeat(REPLAY_SOURCE, <snapshot seq>)``, which says that "every
    event of the commands up to that seq went out before, on this ring or on the one an
    earlier run had" (procs/marketdata/reseed.py), then replays the journal after it. A long
    replay killed there (the supervisor's start timeout, OOM, an operator) leaves a ring that
    holds that one mark. The next start no longer counts the ring as new (its cursor is 1),
    and ``published_position`` (procs/matcher/main.py) walks back past the REPLAY mark, finds
    no event and answers "nothing published": every snapshot is refused and the matcher asks
    the journal for seq 1 on. After ``ringex replay --archive`` (which kept only what the
    snapshots at 20 need) that is ``JournalError`` at every start: the matcher never comes
    back. With the whole journal it starts, but from scratch, and republishes the events of
    seqs 1..20 that its readers had on the earlier ring.

    Expected: the second start restores the same snapshot (seq 20), as the first did, and
    publishes only the events of the commands after it. A fix: a ring that holds no event yet
    (only marks) is still new; or a walk that reaches the ring's first record on a REPLAY
    mark answers that mark's seq."""
    cfg = msgspec.structs.replace(
        _shell_config(instance, tmp_path),
        matchers=[MatcherConfig(name="m1", symbols=["AAA"], batch=8)],
    )
    journal: list[Record] = [_bid(seq, 100 + seq) for seq in range(1, 31)]
    entry = EntryLayout(CODEC.slot_size).size
    with JournalWriter(
        journal_dir(cfg),
        slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id,
        segment_bytes=HEADER_SIZE + 10 * entry,  # ten entries a segment
        fsync="none",
    ) as writer:
        writer.append(1, b"".join(CODEC.encode_slot(c) for c in journal), len(journal))
    at_20 = _matcher_after(cfg, journal[:20])
    SnapshotStore(snapshot_dir(cfg, "matcher-m1")).save(20, at_20.snapshot())
    copy = ExchangeSnapshot(20, b"", {"m1": at_20.snapshot()})
    snapshot_store(cfg).save(20, msgspec.msgpack.encode(copy))
    assert archivable_before(cfg) == 13  # 20 + 1 - the router's window of 8
    archive_segments_before(journal_dir(cfg), 13, tmp_path / "journal-archive")  # seqs 1..10

    Ring.create(instance, matcher_input("m1"), CODEC, capacity=1024, consumers=[INPUT_CONSUMER])
    outbound = Ring.create(instance, matcher_output("m1"), CODEC, capacity=1024, consumers=["tap"])
    tap = outbound.consumer("tap")

    def killed_during_replay() -> Iterator[Record]:
        raise KeyboardInterrupt("killed")  # the process dies here, before its mark (266)
        yield  # pragma: no cover

    with pytest.raises(KeyboardInterrupt):
        MatcherShell(cfg, "m1", replay=killed_during_replay())
    # on new rings the mark now goes after the replay (review 266: the events that fit with
    # it), so the kill leaves the ring new; a build before left the mark alone in it
    assert tap.read(16) == []

    restarted = MatcherShell(cfg, "m1")  # JournalError: from_seq 1 ... were archived
    try:
        got = tap.read(1024)
        marks = [e.counter for e in got if isinstance(e, Heartbeat) and e.source == REPLAY_SOURCE]
        seqs = {getattr(e, "seq", 0) for e in got if not isinstance(e, Heartbeat)}
        assert (marks, sorted(seqs)) == ([20], list(range(21, 31)))
        assert restarted.matcher.state_hash() == _matcher_after(cfg, journal).state_hash()
    finally:
        restarted.close()


def _matcher_after(cfg: RingexConfig, commands: list[Record]) -> Matcher:
    matcher = Matcher(symbol_specs(cfg, "m1"))
    matcher.execute_all(commands)
    return matcher
