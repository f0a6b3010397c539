"""Review 32, hostile, of crash recovery and determinism (the router, the matchers, the
journal, the snapshots). Each test failed on the code it was written against, but the
second, which guards the first fix (the resend path it relies on).

Method: the in-process rig of ``test_router.py`` (real rings, a real journal, a
``RouterShell`` and a ``MatcherShell`` stepped by hand), and real rings written by hand
where a single thread cannot drive the shells (a publish larger than a ring).

Found sound (no test): a matcher snapshotted and restored at every 7th command of 40 random
streams of every order type, time in force, STP mode, iceberg, post-only, halt, resume and
end of session (fast and reference books) makes the uninterrupted run's events byte for
byte; 15 random 300-step streams of ``money_rig`` journaled to real segments, with chains of
exchange snapshots at random seqs and a pipelined replay, recover to the full replay's state
hashes and sequencer state.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from config.schema import JournalConfig, RingexConfig
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import Accepted, Heartbeat, MassCancel, Record
from procs.common.topology import journal_dir, matcher_input, matcher_output
from procs.common.types import Side
from procs.core.engine import Matcher
from procs.core.symbols import symbol_specs
from procs.matcher.main import INPUT_CONSUMER, MatcherShell
from procs.router.main import RouterShell
from shm import Ring
from tests.unit.matcher.test_review5_matcher_bugs import _bid, _shell_config
from tests.unit.router import test_router as router_rig
from tests.unit.router.test_router import fund, order

CODEC = RecordCodec()


def _published(ring: Ring[Record]) -> list[Record]:
    """Every record a ring still holds, oldest first."""
    cursor = ring.cursor()
    return [ring.record(n) for n in range(max(0, cursor - ring.capacity), cursor)]


def _interval(cfg: RingexConfig) -> RingexConfig:
    """``cfg`` with the group commit of ``fsync = "interval"``, its interval long enough that
    no test step reaches it."""
    return msgspec.structs.replace(
        cfg, journal=JournalConfig(fsync="interval", fsync_interval_ms=10_000)
    )


# -- a matcher's restart replays only what the router routed -------------------------------------


def test_a_restarted_matcher_executes_no_command_the_router_holds_as_not_durable(
    instance: str, tmp_path: Path
) -> None:
    """Under ``fsync = "interval"`` the router journals a batch at once and holds it until
    the interval's fsync (``held.py``: "no report leaves before its command is durable"); in
    sync replication it holds it until the standby has it. A matcher that restarts meanwhile
    replayed the journal to its end, so it executed the held order and published its
    execution report: a power loss (or a failover to a standby that lacks it) then loses an
    order its client was told of. A restarted matcher must execute from the journal only
    what the router routed to it (its input ring's newest command); the rest comes through
    the ring once durable, each event exactly once."""
    ex = router_rig.Exchange(router_rig.config(instance, tmp_path))
    try:
        fund(ex, 7, usd=10**9, btc=0)
        ex.router.close()
        ex.router = RouterShell(_interval(ex.cfg))
        ex.gateways[1].publish_batch([order(50, 7, Side.BUY, 900, 10)])
        ex.router.step(timeout_s=0.001)
        seq = ex.router.sequencer.next_seq - 1
        assert ex.router.journal.durable_seq < seq  # journaled, held: not routed
        inbound = Ring.attach(ex.cfg.instance, matcher_input("m1"), CODEC)
        assert all(getattr(c, "seq", 0) < seq for c in _published(inbound))

        ex.matcher.close()  # the matcher restarts while the batch is held
        ex.matcher = MatcherShell(ex.cfg, "m1")
        out = Ring.attach(ex.cfg.instance, matcher_output("m1"), CODEC)
        assert [e for e in _published(out) if getattr(e, "seq", 0) == seq] == []

        ex.router.journal.sync()  # the interval's group commit: routed now
        ex.pump()
        reports = [e for e in _published(out) if isinstance(e, Accepted) and e.seq == seq]
        assert len(reports) == 1  # its report, once
    finally:
        ex.stop()


def test_a_command_journaled_and_never_routed_reaches_a_restarted_matcher_once(
    instance: str, tmp_path: Path
) -> None:
    """The router journals an order and dies before it publishes it; the matcher restarts
    before the router does (as the supervisor restarts whichever died). Whether the matcher
    replays it from the journal or the restarted router resends it, its execution report
    goes out exactly once and the books and the accounts agree on it."""
    ex = router_rig.Exchange(router_rig.config(instance, tmp_path))
    try:
        fund(ex, 7, usd=10**9, btc=0)
        last = ex.router.sequencer.next_seq - 1
        oid = ex.router.sequencer.next_order_id
        new = msgspec.structs.replace(order(60, 7, Side.BUY, 901, 10), seq=last + 1, order_id=oid)
        ex.router.journal.append(last + 1, CODEC.encode_slot(new), 1)
        ex.router.close()  # killed before its publish
        ex.matcher.close()
        ex.matcher = MatcherShell(ex.cfg, "m1")
        ex.router = RouterShell(ex.cfg)
        ex.pump()
        out = Ring.attach(ex.cfg.instance, matcher_output("m1"), CODEC)
        reports = [e for e in _published(out) if isinstance(e, Accepted) and e.seq == last + 1]
        assert len(reports) == 1
        assert oid in ex.matcher.matcher.books[1].orders
        assert ex.router.sequencer.accounts.open_orders(7) == 1
    finally:
        ex.stop()


# -- a matcher's restart after a command whose events outran its output ring ---------------------


@pytest.mark.parametrize("cut", [0, 2])
def test_a_restarted_matcher_republishes_nothing_of_a_command_larger_than_its_output_ring(
    instance: str, tmp_path: Path, cut: int
) -> None:
    """A mass cancel (or an end of session, symbol 0) can answer more events than the
    matcher's output ring holds: its readers take them as they go. Killed before it
    publishes anything more (an idle night after the session's end), the matcher restarts,
    and ``published_position`` finds the whole ring full of that command's events: it
    counted the ring's capacity as the part published and republished the rest, events its
    readers had had already (a second ``OrderDone`` of each order, which the live router's
    settlement refuses as a broken invariant: it crashes). The replay makes that command's
    events again, so the restart can find where the ring's newest ones end among them, and
    publish only what a kill in the middle of that publish (``cut``) left unsent."""
    cfg = _shell_config(instance, tmp_path)
    journal: list[Record] = [_bid(seq, 100 + seq) for seq in range(1, 11)]
    journal.append(MassCancel(11, 11, 1, 1, 11, 1, 0))  # account 1's ten bids: 20 events
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id, fsync="none"
    ) as writer:
        writer.append(1, CODEC.encode_slots(journal), len(journal))
    inbound = Ring.create(instance, matcher_input("m1"), CODEC, capacity=64,
                          consumers=[INPUT_CONSUMER])  # fmt: skip
    outbound = Ring.create(instance, matcher_output("m1"), CODEC, capacity=16,
                           consumers=["tap"])  # fmt: skip
    # the live run, by hand: routed, executed, committed; its events read as they went out
    router = inbound.producer()
    router.publish_batch(journal)
    router.close()
    taken = inbound.consumer(INPUT_CONSUMER, auto_commit=False)
    assert len(taken.read(64)) == len(journal)
    taken.commit()
    taken.close()
    events = Matcher(symbol_specs(cfg, "m1")).execute_all(journal)
    assert len([e for e in events if getattr(e, "seq", 0) == 11]) == 20  # more than 16
    tap = outbound.consumer("tap")
    live = outbound.producer()
    sent = events[: len(events) - cut]
    for at in range(0, len(sent), 8):
        live.publish_batch(sent[at : at + 8])
        tap.read(16)
    live.close()

    restarted = MatcherShell(cfg, "m1")  # killed after (or in) that publish: a restart
    try:
        again = [e for e in tap.read(16) if not isinstance(e, Heartbeat)]
        assert again == events[len(sent) :]
        assert restarted.matcher.last_seq == 11 and not restarted.matcher.books[3].orders
    finally:
        restarted.close()
