"""Review 273: the matcher process's crash-only recovery (snapshot + journal replay).

Reviewed: ``procs/matcher/main.py`` (``MatcherShell.__init__``, ``_replay``,
``_replay_fitting``, ``_publish``, ``step``, ``save_snapshot``, ``_mark``,
``published_position``, ``lapped``, ``routed_upto``), ``procs/core/recovery.py``
(``matcher_snapshot``, ``_exchange_books``, ``journal_commands``, ``restored``),
``procs/common/snapshots.py`` (``SnapshotStore``), ``procs/core/engine.py``
(``Matcher.restore``).

Rig: ``MatcherShell`` in this process over real shm rings (``test_process.config``,
``make_rings``), fed by a real journal (``JournalWriter`` in ``journal_dir``, the router's
format) and no ``replay=``: the shell finds its replay as the process does (its output
ring's position, ``matcher_snapshot``, ``journal_commands`` through ``routed_upto``). A
SIGKILL is a shell dropped without its clean-stop snapshot; a whole-instance restart is new
rings. The truth is a ``Matcher`` fed the journal from its first entry.

Faults found (each fixed; its test says what it was):

1. ``procs/core/recovery.py:465-472`` (``matcher_snapshot``) with
   ``procs/matcher/main.py:108-113``: a journal that lost its tail (``journal.fsync =
   "interval"`` and a power loss, the case ``matcher_snapshot`` bounds by ``journal_end``
   for) leaves the matcher's own snapshot of the lost history on disk. The first start
   passes over it (past the journal's end), but nothing removes it: ``SnapshotStore.save``
   removes "rewound" snapshots only when the matcher next saves one, which is after
   ``snapshot_every`` (1,000,000 by default) commands, a SNAPSHOT or a clean stop. Once the
   router has sequenced the new history past that seq, a matcher SIGKILLed restarts from
   the lost history's books (the snapshot is now "at or before" both the journal's end and
   the output's bound) and replays the new commands on them: orders the new history never
   had rest and trade, orders it acknowledged are gone, and its events differ from those
   its consumers already took. Fixed: ``MatcherShell.__init__`` removes, durably, its own
   snapshots past the journal's end (``SnapshotStore.discard_after``) once it has chosen
   where to restart from.

Sound:

- a SIGKILL mid-stream (a batch published but not committed, own snapshots every 7
  commands, idle marks between bursts) then a restart through the journal: every event
  exactly once and in order on the output ring, trade ids unchanged, and the state hash of
  the journal replayed from scratch (pinned below);
- read without a test: ``published_position``'s walk past REPLAY marks, ``lapped`` /
  ``published_part`` for a publish larger than the ring, the fresh path's room (its two
  marks beside the events), ``routed_upto`` bounding the replay by the input ring's newest
  command, the skip of re-read commands by seq, a damaged snapshot passed over by its CRC.
  A matcher killed during a start on new rings would replay in full into a ring holding
  its first mark (one slot short when the fitting replay filled the ring), but the
  supervisor stops the instance when a matcher dies before ready and the next run makes
  new rings, so that path is not reached.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path

import msgspec

from config.schema import RingexConfig
from procs.common.journal_writer import JournalWriter
from procs.common.records import Heartbeat, NewOrder, Record, Trade
from procs.common.snapshots import SnapshotStore
from procs.common.topology import journal_dir, snapshot_dir
from procs.common.types import Side
from procs.core.engine import Matcher
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import symbol_specs
from procs.matcher.main import MatcherShell
from shm import Ring
from tests.unit.matcher.test_process import CODEC, config, make_rings, order, run_shell

SYMBOL = 9  # BBB: no band, any price


def _order(seq: int, side: Side, price: int) -> NewOrder:
    return msgspec.structs.replace(order(seq, SYMBOL, seq), side=side, price=price)


def _journal(cfg: RingexConfig, commands: Sequence[Record]) -> None:
    """Append ``commands`` (seqs following the journal's last) as the router journals."""
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    ) as writer:
        assert writer.next_seq == commands[0].seq  # type: ignore[attr-defined]
        writer.append(writer.next_seq, b"".join(map(CODEC.encode_slot, commands)), len(commands))


def _truth(cfg: RingexConfig, commands: Sequence[Record]) -> tuple[Matcher, list[Record]]:
    """The journal replayed from its first entry: the state and events a restart must give."""
    matcher = Matcher(symbol_specs(cfg, "m1"), ReferenceBook)
    return matcher, matcher.execute_all(commands)


def _events(outbound: Ring[Record]) -> list[Record]:
    return [e for e in outbound.consumer("tap").read(1 << 16) if not isinstance(e, Heartbeat)]


def test_a_sigkill_mid_stream_restarts_through_the_journal_to_the_same_events_and_state(
    instance: str, tmp_path: Path
) -> None:
    """Own snapshots every 7 commands, bursts of 5 with idle marks between them, the last
    burst published but not committed, then a SIGKILL: the restarted shell (its replay
    found from its output ring, its snapshots and the journal through its input ring's
    newest command) publishes what the ring lacks, once, and reaches the from-scratch
    state; trade ids go on without a gap or repeat."""
    cfg = config(instance, tmp_path, snapshot_every=7, batch=4)
    inbound, outbound = make_rings(cfg)
    commands: list[Record] = [
        _order(seq, Side.BUY if seq % 3 else Side.SELL, 100 + seq % 4) for seq in range(1, 61)
    ]
    _journal(cfg, commands)
    first = MatcherShell(cfg, "m1")
    for k in range(0, 40, 5):
        run_shell(first, inbound, commands[k : k + 5])
        first.step(timeout_s=0.01)  # idle: its "published through" mark
    first.consumer._publish_sequence = lambda upto: None  # type: ignore[method-assign]
    run_shell(first, inbound, commands[40:45])  # published, never committed
    first.producer.close()  # SIGKILL: no clean-stop snapshot
    del first

    second = MatcherShell(cfg, "m1")
    run_shell(second, inbound, commands[45:])
    matcher, events = _truth(cfg, commands)
    try:
        assert _events(outbound) == events
        assert second.matcher.state_hash() == matcher.state_hash()
        ids = [e.trade_id for e in events if isinstance(e, Trade)]
        assert ids == list(range(1, len(ids) + 1)) and ids
    finally:
        second.close()
        inbound.close()
        outbound.close()


def test_an_own_snapshot_of_a_lost_journal_tail_is_never_restored(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ``journal.fsync = "interval"``; the matcher executed history A through seq
    20 and snapshotted it; a power loss keeps the journal through seq 10 only (new rings at
    the restart). The matcher starts (from nothing: its snapshot at 20 is past the journal's
    end), the router sequences history B from seq 11 on (sells at 100 where A had buys at
    90), the matcher executes B through seq 30, and is SIGKILLed before its next snapshot.
    Expected: the restart reaches the state of the journal (A 1..10, B 11..30) replayed
    from scratch, and publishes nothing that differs from what the ring's readers took.
    Was (fixed): it restores the snapshot of the lost history A at 20 (at or before the journal's
    end and the output's bound by now) and replays B 21..30 on it: A's buys 11..20 rest in
    the book, B's sells 11..20 are lost; the state hash differs."""
    cfg = config(instance, tmp_path, snapshot_every=0, batch=64)
    history_a: list[Record] = [_order(seq, Side.BUY, 90) for seq in range(1, 21)]
    lost = Matcher(symbol_specs(cfg, "m1"))
    lost.execute_all(history_a)
    SnapshotStore(snapshot_dir(cfg, "matcher-m1")).save(20, lost.snapshot())
    _journal(cfg, history_a[:10])  # the durable part: seqs 11..20 lost with the power

    inbound, outbound = make_rings(cfg)  # a power loss: new rings
    history_b: list[Record] = [_order(seq, Side.SELL, 100) for seq in range(11, 31)]
    first = MatcherShell(cfg, "m1")
    assert first.matcher.last_seq == 10  # the snapshot at 20 passed over: sound so far
    _journal(cfg, history_b)  # the router journals, then routes
    run_shell(first, inbound, history_b)
    first.step(timeout_s=0.01)  # idle: its mark "published through 30"
    matcher, _ = _truth(cfg, history_a[:10] + history_b)
    assert first.matcher.state_hash() == matcher.state_hash()
    first.producer.close()  # SIGKILL, before its next snapshot
    del first

    second = MatcherShell(cfg, "m1")
    try:
        assert second.matcher.last_seq == 30
        book = second.matcher.books[SYMBOL]
        sides = collections.Counter(o.side for o in book.orders.values())
        assert sides == {Side.BUY: 10, Side.SELL: 20}, (  # A's durable ten, all of B
            "the lost history's buys rest in the restarted book, or B's sells are lost"
        )
        assert second.matcher.state_hash() == matcher.state_hash()
    finally:
        second.close()
        inbound.close()
        outbound.close()
