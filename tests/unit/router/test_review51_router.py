"""Review 51 of the router's durability edges: the hot standby's own journal, sync
replication's record of what it acknowledged without the standby, and failover.

Each test failed on the code it was written against, for the fault it names (its
docstring: what README asks, what the code did and where, and what happened), and passes
since its fix (the same session's commits). Real journals, replication blocks, sources,
standbys and TCP where the fault needs them (``os.fsync`` as a disk,
``test_review42_replica_fsync.Disk``); ``promote``'s new supervisor is the one thing not
started, as in the other reviews of ``failover.py``.

Verified right, no test here: the money core (holds of market, stop and replaced orders,
fees on partial fills, releases on cancel and expiry, conservation and no overdraft, a
snapshot-restored and a journal-replayed copy going on byte-identically) under the money
rig's random streams run unseeded, a few thousand streams of up to 300 commands each; the
journal's torn-tail and mid-file rules; the standby's frame checks and acknowledgements
under the batch, pipelined and interval policies.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_profile
from procs.common.epochs import Epochs
from procs.common.records import CreateAccount, Transfer
from procs.common.replication_ack import AckBlock, SyncGate, ack_dir
from procs.common.topology import journal_dir
from procs.core.fees import FeeChangeError
from procs.core.recovery import fresh, recover
from procs.replica.standby import Standby
from procs.replica.wire import Entries
from tests.e2e.test_standby import profile
from tests.unit.replica.test_review33_failover import _no_supervisor, failover
from tests.unit.replica.test_review42_replica_fsync import (
    Disk,
    follow_into_a_failed_fsync,
    running,
)
from tests.unit.replica.test_review_replica_bugs import until
from tests.unit.replica.test_source import commands
from tests.unit.router.core_rig import BUY, new_order
from tests.unit.router.test_review42_pipelined import journaled
from tests.unit.supervisor.test_review_ops_bugs import write


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    d = Disk()
    monkeypatch.setattr(os, "fsync", d)
    yield d
    d.opened.set()


# -- 1. a standby under journal.fsync = "none" ------------------------------------------------


def test_a_standby_under_fsync_none_cuts_what_a_failed_fsync_did_not_make_durable(
    tmp_path: Path, disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README (hot standby): a standby "makes every entry durable (fsync) before
    acknowledging it", whatever the journal policy (standby.py: "fsynced, whatever the
    journal policy"), and "a standby whose journal fsync fails cuts the entries that fsync did
    not make durable from the file before it stops (Linux reports a writeback error once and
    may drop the pages: a restart otherwise took the page cache's copy for durable, and
    acknowledged what its disk had lost)".

    Code: ``Standby.persist`` appends a frame and calls ``JournalWriter.sync()`` under every
    policy, but ``JournalWriter._fsync_failed`` (journal_writer.py) returns without the cut
    when ``self.fsync == "none"``: that exception is right for a router (``"none"`` promises
    nothing there) and wrong for a standby, whose explicit ``sync`` is a promise under
    every policy. Review 42's tests of this cut ran under batch, pipelined and interval only.

    What happened: a standby configured with ``fsync = "none"`` follows 1..3; the fsync of
    its frame 4..6 fails with EIO. Its journal still holds 4..6 (the page cache's copy). Its
    restart fsyncs the file (0: the error was reported once) and says Hello at seq 7: the
    source publishes 6 as acknowledged at once, and 4..6 are never sent, nor written, again.
    Under ``"pipelined"`` the same run cuts 4..6 and fetches them anew."""
    primary, secondary, died, acked, _ = follow_into_a_failed_fsync(tmp_path, disk, "none")
    assert isinstance(died, OSError) and acked == 3, (died, acked)  # nothing of 4..6 acked yet
    kept = max(journaled(secondary))
    persisted: list[int] = []  # the first seq of each frame the restarted standby writes
    real_persist = Standby.persist

    def persist(self: Standby, entries: Entries) -> int:
        persisted.append(entries.first_seq)
        return real_persist(self, entries)

    monkeypatch.setattr(Standby, "persist", persist)

    async def restart() -> int:  # the supervisor restarts the standby
        async with running(primary, secondary) as (source, _, following, _):
            await until(lambda: source.acked >= 6 or following.done())
            await asyncio.sleep(0.1)
            return source.acked

    assert asyncio.run(restart()) == 6
    assert (kept, persisted) == (3, [4]), (
        f"after the failed fsync the standby's journal ends at seq {kept}; restarted, it "
        f"wrote frames {persisted} and seqs 4..6 were acknowledged"
    )


# -- 2. sync replication's record of what it acknowledged without the standby ------------------


def test_a_restart_with_no_sync_timeout_keeps_promote_from_losing_degraded_acks(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README (hot standby, sync): past ``sync_timeout_ms`` the router goes on without the
    standby, and "orders acknowledged meanwhile can be lost in a failover"; ``promote``
    refuses "a standby that would lose ... acknowledged history ... in sync mode, where the
    primary's replication block is readable, seqs it says were acknowledged, by the standby
    or, once the router went on without it, to clients, past the standby's end".

    Code: ``SyncGate.__init__`` (replication_ack.py) sets ``block.words[DEGRADED] = 0`` when
    the router starts with ``sync_timeout_ms = 0`` (review 5: such a gate must never go on
    without the standby). But the word is also the only record ``failover.unsafe`` reads of
    seqs acknowledged to clients without the standby; clearing it at a start forgets them
    while the standby still lacks them.

    What happened: the primary journaled 1..6 with the standby at 3; its router degraded and
    answered 4..6. The operator, seeing SYNC REPLICATION SUSPENDED, sets ``sync_timeout_ms =
    0`` so that it never happens again and restarts the primary. The primary then dies before
    the standby is back: ``promote`` takes the standby holding 1..3 without a word, and the
    three orders acknowledged to clients (their trade ids reused by the promoted instance)
    are gone. Expected: refused as before the restart (``--force`` still promotes); the word
    cleared once the standby has acknowledged everything journaled."""
    primary_path = profile(
        tmp_path / "primary.toml", f"{instance}p", tmp_path / "var",
        '[replication]\nlisten_port = 1\nmode = "sync"\nsync_timeout_ms = 0\n',
    )  # fmt: skip
    standby_path = profile(
        tmp_path / "standby.toml", f"{instance}s", tmp_path / "var",
        '[replication]\nprimary = "127.0.0.1:1"\nprestart = false\n',
    )  # fmt: skip
    primary, standby = load_profile(str(primary_path)), load_profile(str(standby_path))
    write(primary, commands(1, 6))
    write(standby, commands(1, 3))
    block = AckBlock(ack_dir(primary.var_dir, primary.instance))
    try:
        block.acknowledged(3)
        block.appended(6)
        assert SyncGate(block, timeout_ms=1).wait(6)  # the run before: degraded, 4..6 answered
        assert block.status()["degraded"]
        SyncGate(block, timeout_ms=0)  # the router restarted with sync_timeout_ms = 0
    finally:
        block.close()
    started = _no_supervisor(monkeypatch)
    code = failover.promote(str(primary_path), str(standby_path))
    assert (code, started) == (1, []), "promoted over seqs 4..6 acknowledged while degraded"
    assert Epochs.load(journal_dir(primary)).fence is None


# -- 3. promoting a standby whose configured fees its state cannot take -------------------------


_SYMBOLS = """
[[symbols]]
name = "BTC-USD"
id = 1
price_decimals = 2
qty_decimals = 4
base = "BTC"
maker_fee_bps = 10
taker_fee_bps = {taker}

[[symbols]]
name = "ETH-USD"
id = 2
price_decimals = 2
qty_decimals = 4
base = "ETH"
"""


def test_promote_refuses_a_standby_whose_fees_its_promoted_router_would_refuse(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README (router): "A change of a symbol's fee margin while buys rest on it is refused
    at start, naming the symbol and the orders ... (cancel them first)"; (failover):
    ``promote`` refuses a standby it cannot make a working primary of before it fences the
    old one (a standby of other units: "refused ... by ``failover.py promote`` before it
    fences the primary (nothing done)"; ``units_differ``'s comment: "before the fence: else
    no primary at all").

    Code: a starting router journals the configured fees its state does not hold
    (``RouterShell._journal_fees`` -> ``Sequencer.fee_changes`` -> ``fees.check_schedule``),
    and raises ``FeeChangeError`` when buys rest under another margin; ``router.main``
    catches only ``JournalFencedError`` and ``UnitsError``, so the router exits at every
    start. ``failover.promote`` checks the standby's units, not its fees, then fences the
    primary and starts the promoted instance.

    What happened: the primary (BTC-USD 10/20 bps, margin 20) journaled its fees and a
    resting buy; its standby's config says BTC-USD 10/50 (margin 50: the config an operator
    forgot to keep in step). ``promote`` fenced the primary (journal fenced, processes killed)
    and launched the promoted instance, whose router cannot start on that state: no primary
    at all, and no client can cancel the buy that blocks it. Expected: refused before the
    fence, naming the symbol, as a standby of other units is."""
    primary_path = profile(
        tmp_path / "primary.toml", f"{instance}p", tmp_path / "var",
        "[replication]\nlisten_port = 1\n" + _SYMBOLS.format(taker=20),
    )  # fmt: skip
    standby_path = profile(
        tmp_path / "standby.toml", f"{instance}s", tmp_path / "var",
        '[replication]\nprimary = "127.0.0.1:1"\nprestart = false\n'
        + _SYMBOLS.format(taker=50),
    )  # fmt: skip
    primary, standby = load_profile(str(primary_path)), load_profile(str(standby_path))
    sequencer, _ = fresh(primary)  # the primary's journal: fees, rules, a funded resting buy
    journal = [*sequencer.fee_changes(1), *sequencer.rules_changes(1)]
    for command in (
        CreateAccount(0, 0, 1, 7, 1, 7),
        Transfer(0, 0, 1, 7, 2, 7, 1, 10**12, 1),
        new_order(7, BUY, 3_000_000, 10_000, ref=3),
    ):
        decided = sequencer.submit(command, 1).command
        assert decided is not None
        journal.append(decided)
    write(primary, journal)
    write(standby, journal)  # replicated: the standby holds all of it
    with pytest.raises(FeeChangeError, match="symbol BTC-USD"):  # what the promoted router meets
        recover(standby).sequencer.fee_changes(2)
    started = _no_supervisor(monkeypatch)
    code = failover.promote(str(primary_path), str(standby_path))
    assert (code, started) == (1, []), "the primary was fenced for a router that cannot start"
    assert Epochs.load(journal_dir(primary)).fence is None
