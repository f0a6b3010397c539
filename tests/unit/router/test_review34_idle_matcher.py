"""Review 34: restarts beside a matcher whose symbols have been idle a long time.

A venue has quiet symbols beside busy ones. The exchange snapshots (every
``journal.snapshot_every`` commands) hold every matcher's books, so no restart should read
more of the journal than the commands since the newest one. Each test counts the journal
entries a restart reads (``JournalReader.entries``, wrapped), in an exchange of two matchers
stepped by hand (the rig of ``test_router.py``): m1's symbol trades, m2's had one order,
long ago, and exchange snapshots were written along the way (the older ones pruned, as the
store keeps three). Each read the journal from m2's last command, or from its first entry:
work that grows with how long m2's symbols have been idle. The last two tests guard the
fixes (a command m2 lacks is still found and sent, a snapshot holding a command m2 never
published is still passed over).

Fixed: an exchange snapshot past a bound does when its copy of the matcher's books holds
no command past it (``recovery.matcher_snapshot``), for ``matchers_at``, a gateway's
``missed_events`` and a matcher's restart, which an idle step's "published through" mark
lets trust its last command whole (``MatcherShell._mark``); the router looks for unrouted
commands from where its recovery says one may be (``recovery.unrouted``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import AssetConfig, MatcherConfig, RingexConfig, SymbolConfig
from procs.common.journal import JournalReader
from procs.common.record_codec import RecordCodec
from procs.common.records import Accepted, Heartbeat, OrderDone, Record
from procs.common.topology import RECOVERED_SOURCE, gateway_consumer, matcher_output
from procs.common.types import DoneReason, Side
from procs.core.recovery import matchers_at, recover, snapshot_store, write_snapshot
from procs.gateway.recovery import missed_events, resting_orders
from procs.matcher.main import MatcherShell
from procs.router.applied import whole_seq as _whole_seq
from procs.router.main import RouterShell
from shm import Ring
from tests.unit.router import test_router as router_rig
from tests.unit.router.test_router import fund, order

CODEC = RecordCodec()
ETH, ETHUSD = 3, 2
#: m1's commands between two exchange snapshots (the snapshot interval of these tests)
EVERY = 40
#: snapshots written before m2's order and after it: the store keeps the newest 3
ROUNDS = 4


def _config(instance: str, var: Path) -> RingexConfig:
    """``test_router``'s exchange with a second matcher, m2, for ETH-USD."""
    cfg = router_rig.config(instance, var)
    return msgspec.structs.replace(
        cfg,
        assets=[*cfg.assets, AssetConfig(name="ETH", id=ETH, decimals=4)],
        symbols=[
            *cfg.symbols,
            SymbolConfig(
                name="ETH-USD", id=ETHUSD, price_decimals=2, qty_decimals=2, base="ETH", quote="USD"
            ),
        ],
        matchers=[
            *cfg.matchers,
            MatcherConfig(name="m2", symbols=["ETH-USD"], snapshot_every=0, batch=64),
        ],
        risk=msgspec.structs.replace(cfg.risk, max_open_orders=10_000),
    )


class TwoMatchers(router_rig.Exchange):
    """``test_router``'s rig with m2 beside m1 (``idle``), stepped and tapped alike."""

    idle_seq = 0  # m2's last command

    def __init__(self, cfg: RingexConfig) -> None:
        super().__init__(cfg)
        self.taps += [
            Ring.attach(cfg.instance, matcher_output("m2"), CODEC).consumer(gateway_consumer(g.id))
            for g in cfg.gateways
        ]

    def start(self) -> None:
        super().start()
        self.idle = MatcherShell(self.cfg, "m2")

    def stop(self) -> None:
        super().stop()
        self.idle.close()

    def pump(self) -> None:
        while (
            self.router.step(timeout_s=0.001)
            + self.matcher.step(timeout_s=0.001)
            + self.idle.step(timeout_s=0.001)
        ):
            for tap in self.taps:
                tap.read(4096)
        self.router.settle()


def _busy(ex: TwoMatchers, rounds: int, ref: int) -> int:
    """``rounds`` of ``EVERY`` m1 orders, an exchange snapshot after each; the next ref."""
    for _ in range(rounds):
        ex.send(1, *(order(ref + k, 7, Side.BUY, 900 + k % 50, 10) for k in range(EVERY)))
        ref += EVERY
        write_snapshot(ex.cfg, recover(ex.cfg))
    return ref


@pytest.fixture
def ex(instance: str, tmp_path: Path) -> Iterator[TwoMatchers]:
    """m1 busy for ``ROUNDS`` snapshots, one resting order on m2 (``ex.idle_seq``), m1 busy
    for ``ROUNDS`` more: every snapshot kept is past m2's last command."""
    rig = TwoMatchers(_config(instance, tmp_path))
    fund(rig, 7, usd=10**12, btc=10**6)
    ref = _busy(rig, ROUNDS, 100)
    rig.send(1, msgspec.structs.replace(order(ref, 7, Side.BUY, 500, 10), symbol=ETHUSD))
    rig.idle_seq = rig.router.sequencer.next_seq - 1
    assert rig.idle.matcher.last_seq == rig.idle_seq
    _busy(rig, ROUNDS, ref + 1)
    kept = snapshot_store(rig.cfg)
    assert (kept.oldest_seq() or 0) > rig.idle_seq  # what m2 was at its last command: pruned
    yield rig
    rig.stop()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The seq of every journal entry read from here on."""
    seqs: list[int] = []
    original = JournalReader.entries

    def entries(
        self: JournalReader, from_seq: int = 1, **how: Any
    ) -> Iterator[tuple[int, memoryview]]:
        for seq, image in original(self, from_seq, **how):
            seqs.append(seq)
            yield seq, image

    monkeypatch.setattr(JournalReader, "entries", entries)
    return seqs


@pytest.fixture
def resent(reads: list[int], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many journal entries each ``RouterShell._resend_unrouted`` from here on read."""
    counts: list[int] = []
    original = RouterShell._resend_unrouted

    def counted(self: RouterShell, *args: object) -> None:
        at = len(reads)
        original(self, *args)  # type: ignore[arg-type]
        counts.append(len(reads) - at)

    monkeypatch.setattr(RouterShell, "_resend_unrouted", counted)
    return counts


def _last(ex: TwoMatchers) -> int:
    return ex.router.sequencer.next_seq - 1


def test_the_idle_matchers_state_at_its_mark_comes_from_the_newest_snapshot(
    ex: TwoMatchers, reads: list[int]
) -> None:
    """``matchers_at`` (the market data's reseed, a gateway's check of its orders) of m2 as
    of its last command took only a snapshot at or before that seq, so it replayed the
    journal from its first entry. The newest exchange snapshot holds m2's books as they are
    since that command: nothing to replay."""
    seq = ex.idle_seq
    rebuilt = matchers_at(ex.cfg, {"m2": seq}, CODEC)
    assert rebuilt is not None
    assert rebuilt["m2"].state_hash() == ex.idle.matcher.state_hash()
    assert reads == []
    found = resting_orders(ex.cfg, "m2", seq, 1, CODEC)  # a gateway's start: the same
    assert found is not None and len(found[0]) == 1
    assert reads == []


def test_a_gateway_makes_the_idle_matchers_missed_events_from_the_newest_snapshot(
    ex: TwoMatchers, reads: list[int]
) -> None:
    """m2 trades again after its long quiet; a gateway that handled its ring through m2's
    previous command missed the new one's events (a full restart: new rings). They were made
    again from m2's own snapshots only (none), so from the journal's first entry; the
    exchange snapshot holds m2's books since that previous command."""
    handled = ex.idle_seq
    ex.send(1, msgspec.structs.replace(order(9_000, 7, Side.BUY, 501, 10), symbol=ETHUSD))
    upto = _last(ex)
    made = missed_events(ex.cfg, "m2", handled, upto, CODEC)
    assert made is not None
    assert next(type(e) for e in made if not isinstance(e, Heartbeat)) is Accepted
    assert all(getattr(e, "seq", 0) == upto for e in made)
    newest = snapshot_store(ex.cfg).latest()
    assert newest is not None
    assert min(reads) > newest[0]  # only the commands after the newest snapshot


def test_a_restarted_idle_matcher_replays_nothing_before_the_newest_snapshot(
    ex: TwoMatchers, reads: list[int]
) -> None:
    """m2 is killed and restarts (its rings kept). Its output ring ended with its last
    command's events, which a restart must take as maybe cut short, so only a snapshot
    before that command would do: none kept, and it replayed the journal from its first
    entry. An idle matcher marks "published through" on its ring; the newest exchange
    snapshot then holds its books, and the restart reads no journal entry."""
    ex.pump()  # an idle step of m2's: what a live matcher has had by then
    before = ex.idle.matcher.state_hash()
    ex.idle.close()  # killed: no snapshot of its own
    ex.idle = MatcherShell(ex.cfg, "m2")
    assert ex.idle.matcher.state_hash() == before
    assert reads == []
    out = Ring.attach(ex.cfg.instance, matcher_output("m2"), CODEC)
    cursor = out.cursor()
    events: list[Record] = [out.record(n) for n in range(max(0, cursor - 64), cursor)]
    assert [e for e in events if isinstance(e, Accepted)] == [
        e for e in events if isinstance(e, Accepted) and e.seq == ex.idle_seq
    ]  # no event made twice: its one Accepted is the live one


def test_a_restarted_router_reads_only_what_came_after_the_idle_matchers_last_command(
    ex: TwoMatchers, reads: list[int], resent: list[int]
) -> None:
    """The router restarts. To find journaled commands a matcher's input ring lacks, it
    read the whole journal after the newest command that ring holds: for m2, after its one
    order, long ago. Its recovery already says m2 has no command after that one: it reads
    none of it (its recovery's own reads, the snapshot's tail, are not counted here)."""
    ex.router.close()
    ex.router = RouterShell(ex.cfg)
    assert resent == [0]
    ex.send(1, msgspec.structs.replace(order(9_001, 7, Side.BUY, 502, 10), symbol=ETHUSD))
    assert ex.idle.matcher.last_seq == _last(ex)  # routed to m2 as ever


def test_a_command_the_router_never_routed_to_the_idle_matcher_is_sent_once(
    ex: TwoMatchers, reads: list[int], resent: list[int]
) -> None:
    """The guard of the router's shortcut: an order for m2 journaled and never routed (the
    router killed between the two) is still found and sent, exactly once, reading the
    journal from the newest snapshot on, not from m2's previous command."""
    last = _last(ex)
    oid = ex.router.sequencer.next_order_id
    new = msgspec.structs.replace(
        order(9_002, 7, Side.BUY, 503, 10), symbol=ETHUSD, seq=last + 1, order_id=oid
    )
    ex.router.journal.append(last + 1, CODEC.encode_slot(new), 1)
    ex.router.close()  # killed before its publish
    del reads[:]
    ex.router = RouterShell(ex.cfg)
    newest = snapshot_store(ex.cfg).latest()
    assert newest is not None
    assert resent and resent[0] <= last + 1 - newest[0]
    ex.pump()
    assert oid in ex.idle.matcher.books[ETHUSD].orders
    out = Ring.attach(ex.cfg.instance, matcher_output("m2"), CODEC)
    cursor = out.cursor()
    held = [out.record(n) for n in range(max(0, cursor - 64), cursor)]
    assert len([e for e in held if isinstance(e, Accepted) and e.seq == last + 1]) == 1
    assert ex.router.sequencer.accounts.open_orders(7) == 2 * ROUNDS * EVERY + 2


def test_a_snapshot_holding_a_command_the_idle_matcher_never_published_is_not_taken(
    ex: TwoMatchers,
) -> None:
    """The guard of the matcher's shortcut: an order routed to m2, which is killed before it
    executes it, and an exchange snapshot after it (its copy of m2's books holds the order).
    That snapshot is not m2's state as of what its ring published: the restart replays the
    order from the journal instead, and its report goes out exactly once."""
    order_id = ex.router.sequencer.next_order_id
    ex.gateways[1].publish_batch(
        [msgspec.structs.replace(order(9_003, 7, Side.BUY, 504, 10), symbol=ETHUSD)]
    )
    ex.router.step(timeout_s=0.001)  # journaled and routed; m2 does not step
    seq = _last(ex)
    write_snapshot(ex.cfg, recover(ex.cfg))
    newest = snapshot_store(ex.cfg).latest()
    assert newest is not None and newest[0] == seq  # m2's books in it hold the order
    ex.idle.close()
    ex.idle = MatcherShell(ex.cfg, "m2")
    ex.pump()
    assert order_id in ex.idle.matcher.books[ETHUSD].orders
    out = Ring.attach(ex.cfg.instance, matcher_output("m2"), CODEC)
    cursor = out.cursor()
    held = [out.record(n) for n in range(max(0, cursor - 64), cursor)]
    assert len([e for e in held if isinstance(e, Accepted) and e.seq == seq]) == 1


def test_a_settle_read_ending_in_an_idle_mark_still_moves_the_applied_seq() -> None:
    """Found rereading this review's change: the matcher now marks its output after every
    batch once idle, and the router took its applied seq from the read's last record, which
    a mark (no seq) made 0: the events before it moved nothing, and a balance request that
    waits for them (``_need``) waited for the next command."""
    mark = Heartbeat(0, RECOVERED_SOURCE, 7)
    done = [OrderDone(seq, 0, 1, 1, seq, 1, 1, seq, DoneReason.CANCELLED, 0, 1) for seq in (5, 7)]
    assert _whole_seq([*done, mark], full=8) == 7  # the mark closes seq 7's events
    assert _whole_seq([*done, mark], full=3) == 7  # full, but its last event is not cut
    assert _whole_seq(done, full=2) == 6  # a full read may end inside seq 7's events
    assert _whole_seq([mark], full=8) == 0
