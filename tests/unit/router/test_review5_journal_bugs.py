"""Bugs a fifth hostile review of the journal, snapshots, replay and crash recovery found.
Each test fails today.

Found sound (no test): 3,000 random damages of a three-segment journal (a cut at any byte, a
flipped bit, a zeroed range, zeros or garbage appended, a segment removed) each give either
a contiguous prefix (only for damage in the last segment followed by nothing but zeros) or a
``JournalError`` naming the file, from ``entries``, ``last_seq`` and a writer's open alike;
``last_seq`` agrees with what ``entries`` yields; ``events_after`` keeps exactly the events
past ``(seq, part)`` when a read ends inside one command's events.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

import procs.cli
from config.schema import RingexConfig
from procs.common.journal import list_segments
from procs.common.record_codec import RecordCodec
from procs.common.records import CreateAccount
from procs.common.snapshots import SnapshotStore
from procs.common.topology import journal_dir, snapshot_dir
from procs.common.types import Side
from procs.core.recovery import matchers_at, recover, write_snapshot
from tests.unit.router.test_review_journal2_bugs import _commands_journal, _write_journal
from tests.unit.router.test_router import Exchange, config, fund, order

CODEC = RecordCodec()


def _run_cli(monkeypatch: pytest.MonkeyPatch, cfg: RingexConfig, argv: list[str]) -> int:
    """``ringex ARGV`` on the instance ``cfg`` (its profile loads as ``cfg``)."""
    with monkeypatch.context() as m:
        m.setattr(procs.cli, "load_profile", lambda _profile: cfg)
        return procs.cli.main(argv)


# -- ringex replay: damaged input ends in a traceback -----------------------------------------


@pytest.mark.parametrize("damage", ["journal lost its last segment", "snapshot does not decode"])
def test_replay_of_a_damaged_instance_is_a_message_not_a_traceback(
    damage: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``recover`` reports a snapshot past the journal's end (a journal that lost its tail)
    and a snapshot that does not decode as ``ValueError`` with a good message naming the
    snapshot's file (procs/core/recovery.py ``recover``); ``ringex replay``'s ``main``
    catches only ``ConfigError`` and ``JournalError`` (procs/cli.py ``main``), so the operator
    gets a Python traceback instead of the one line. Issue 4: corrupted input is "an error
    naming the segment" (here: the snapshot), the way a damaged journal already is.

    Expected: a non-zero exit status and a line on stderr naming the snapshot. Actual:
    ``ValueError`` raised out of ``main``.
    """
    cfg, images = _commands_journal(tmp_path)
    _write_journal(cfg, images)  # 22 entries: segments from 1, 11, 21
    snap = write_snapshot(cfg, recover(cfg))
    if damage == "journal lost its last segment":
        list_segments(journal_dir(cfg))[-1][1].unlink()  # the journal now ends at 20
    else:
        snap.write_bytes(b"\x93\x01\x02\x03")  # msgpack, as an older snapshot, of no state
    try:
        code = _run_cli(monkeypatch, cfg, ["replay", "--quiet"])
    except Exception as exc:  # the finding
        pytest.fail(f"ringex replay ended in a traceback: {type(exc).__name__}: {exc}")
    err = capsys.readouterr().err
    assert code != 0 and str(snap) in err, err


# -- fsync "interval": routed and answered before it is durable -------------------------------


def test_interval_policy_routes_and_answers_nothing_before_it_is_durable(
    instance: str, tmp_path: Path
) -> None:
    """Issue 4: "No execution report leaves the exchange before its command is durable
    under the configured policy (a gated consumer on the ring, not a sleep)"; README: the
    router "fsyncs it under the policy (group commit), and only then publishes them to the
    matchers"; the sequencer: an account command's ``AccountReply`` "is sent once the
    command is durable". Under ``fsync = "interval"`` the journal's ``durable_seq`` lags what
    it wrote by up to ``fsync_interval_ms``, yet ``RouterShell.step`` publishes the batch to
    the matchers and queues its replies right after ``journal.append`` returns
    (procs/router/main.py ``step``): a fill (or a deposit's OK) reaches the client for a
    command a power loss then erases, and the restarted router gives its seq to another
    command. Nothing gates either on ``durable_seq``.

    Expected: what the matcher's input ring and the gateway's reply ring hold is no newer
    than ``journal.durable_seq`` (held back until the interval's fsync). Actual: both hold
    commands past it.
    """
    base = config(instance, tmp_path)
    journal = msgspec.structs.replace(base.journal, fsync="interval", fsync_interval_ms=10_000)
    ex = Exchange(msgspec.structs.replace(base, journal=journal))
    try:
        writer = ex.router.journal
        ex.gateways[1].publish_batch([CreateAccount(0, 0, 1, 1, 7000, 7)])
        assert ex.router.step(timeout_s=0.001) == 1
        problems = [
            f"AccountReply for seq {r.seq} sent with durable_seq {writer.durable_seq}"  # type: ignore[attr-defined]
            for r in ex.replies_of(1)
            if r.seq > writer.durable_seq  # type: ignore[attr-defined]
        ]
        fund(ex, 8, usd=10**9, btc=0)
        ex.gateways[1].publish_batch([order(1, 8, Side.BUY, 900, 10)])
        assert ex.router.step(timeout_s=0.001) == 1
        routed = ex.router.to_matchers["m1"].ring.last_published()
        at = 0 if routed is None else routed.seq  # type: ignore[attr-defined]
        if at > writer.durable_seq:
            problems.append(
                f"order seq {at} published to the matcher with durable_seq "
                f"{writer.durable_seq}: its execution report can leave before it is durable"
            )
        assert not problems, problems
    finally:
        ex.stop()


# -- matchers_at: a kept snapshot passed over -------------------------------------------------


def test_matchers_at_uses_a_kept_snapshot_at_or_before_the_seq(tmp_path: Path) -> None:
    """``matchers_at`` rebuilds a matcher as it was after seq N (the gateway's
    ``resting_orders`` when its rings are new, market data's ``Reseed`` at a matcher's replay
    mark). It restores the matcher's *newest* own snapshot and gives up (None) when that one
    is past N (procs/core/recovery.py ``matchers_at``: ``.latest()``), although the store
    keeps three and has ``at_or_before``; the journal from an older kept snapshot (or from
    the start) rebuilds N exactly. So after a matcher saved one more snapshot (a stop, an
    admin SNAPSHOT, ``snapshot_every``) past the mark a gateway or the feed has yet to
    read, the gateway logs "fills meanwhile are missing from their reports" and the feed
    keeps stale books, though the state is at hand.

    Expected: m1's books after seq 16, from its kept snapshot at 16. Actual: None.
    """
    cfg, images = _commands_journal(tmp_path)
    _write_journal(cfg, images)  # 12 account commands, then BTC-USD orders (m1) at 13..22
    store = SnapshotStore(snapshot_dir(cfg, "matcher-m1"))
    for at in (16, 22):  # both kept (keep=3)
        matcher = recover(cfg, upto=at, use_snapshot=False).matchers["m1"]
        store.save(matcher.last_seq, matcher.snapshot())
    assert store.at_or_before(16) is not None
    expected = recover(cfg, upto=16, use_snapshot=False).matchers["m1"].state_hash()
    rebuilt = matchers_at(cfg, {"m1": 16}, CODEC)
    assert rebuilt is not None, "m1 at seq 16 said not kept, with its snapshot at 16 kept"
    assert rebuilt["m1"].state_hash() == expected
