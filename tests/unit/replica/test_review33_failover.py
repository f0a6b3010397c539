"""A hostile review of replication to the hot standby and of failover (review 33).

Each test shows one fault: it failed on the code as reviewed and passes since its fix, or is
an ``xfail(strict=True)`` naming a fault whose fix lies outside replication and failover.
Real files, journals, replication blocks and TCP; ``promote``'s new supervisor is the one
thing not started (``FakeChild``), as in the other reviews of ``failover.py``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.epochs import Epochs
from procs.common.records import Record, Transfer
from procs.common.replication_ack import FENCED, AckBlock, SyncGate, ack_dir
from procs.common.rules_version import RULES_VERSION
from procs.common.topology import journal_dir
from procs.replica.source import ReplicationSource
from procs.replica.wire import GENESIS, Hello, History, Message, Refused, receive, send
from procs.supervisor import promotion_checks
from tests.e2e.test_standby import profile
from tests.scripts_loader import load_script
from tests.unit.replica.test_review_replica_bugs import append, pair
from tests.unit.replica.test_source import CODEC, commands
from tests.unit.supervisor.test_review_ops_bugs import FakeChild, configs, write

failover = load_script("failover", "review33")
CODEC_RECORDS = (CODEC.journal_schema_id, CODEC.slot_size, RULES_VERSION)  # as a Hello says them


def _sync_pair(tmp_path: Path, instance: str) -> tuple[Path, Path]:
    """A sync-mode primary's and its standby's profiles (one host: both journals readable)."""
    primary = profile(
        tmp_path / "primary.toml", f"{instance}p", tmp_path / "var",
        '[replication]\nlisten_port = 1\nmode = "sync"\nsync_timeout_ms = 1\n',
    )  # fmt: skip
    standby = profile(
        tmp_path / "standby.toml", f"{instance}s", tmp_path / "var",
        '[replication]\nprimary = "127.0.0.1:1"\nprestart = false\n',
    )  # fmt: skip
    return primary, standby


def _acked_pair(
    tmp_path: Path, instance: str, *, journaled: int, acknowledged: int
) -> tuple[Path, Path, RingexConfig]:
    """A sync pair (``_sync_pair``) whose primary journaled 1..``journaled`` and whose block
    says the standby acknowledged ``acknowledged``; the standby holds 1..3. Returns both
    profiles' paths and the primary's config."""
    primary_path, standby_path = _sync_pair(tmp_path, instance)
    primary = load_profile(str(primary_path))
    write(primary, commands(1, journaled))
    write(load_profile(str(standby_path)), commands(1, 3))
    block = AckBlock(ack_dir(primary.var_dir, primary.instance))
    block.acknowledged(acknowledged)
    block.appended(journaled)
    block.close()
    return primary_path, standby_path, primary


def _no_supervisor(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record each promoted supervisor promote would start, starting none."""
    started: list[object] = []

    class Recorded(FakeChild):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            started.append(args)

    monkeypatch.setattr(failover.subprocess, "Popen", Recorded)
    monkeypatch.setattr(failover, "await_promoted", lambda *args, **kwargs: 0)
    return started


def _own(seqs: range) -> list[Record]:
    """Commands unlike ``commands``': another exchange's history."""
    return [Transfer(seq, 6, 0, 0, seq, 7, 1, 55, seq) for seq in seqs]


def test_promote_refuses_a_standby_behind_a_degraded_sync_primary(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sync mode promises that nothing acknowledged is missing on the standby, except while
    the router goes on without it (``sync_timeout_ms`` passed: ``DEGRADED`` in the block,
    "orders acknowledged meanwhile can be lost in a failover"). ``promote`` looked only for
    a divergence of the two journals: a standby holding 1..3 of a primary that journaled,
    degraded, and so acknowledged 4..6, was promoted without a word, those three acknowledged
    orders (and their trade ids, reused by the promoted instance) gone. Expected: refused,
    naming the seqs, the primary untouched (``--force`` still promotes); a lagging standby of
    a sync primary that is not degraded (what it lacks was never acknowledged) is promoted."""
    primary_path, standby_path = _sync_pair(tmp_path, instance)
    primary, standby = load_profile(str(primary_path)), load_profile(str(standby_path))
    write(primary, commands(1, 6))
    write(standby, commands(1, 3))
    block = AckBlock(ack_dir(primary.var_dir, primary.instance))  # the primary's router's
    try:
        block.acknowledged(3)
        block.appended(6)
        gate = SyncGate(block, timeout_ms=1)
        assert gate.wait(6)  # no acknowledgement within 1 ms: degraded, 4..6 go out
        assert block.status()["degraded"]
    finally:
        block.close()
    started = _no_supervisor(monkeypatch)
    code = failover.promote(str(primary_path), str(standby_path))
    assert (code, started) == (1, []), "promoted over acknowledged seqs 4..6"
    assert Epochs.load(journal_dir(primary)).fence is None
    assert failover.promote(str(primary_path), str(standby_path), force=True) == 0
    assert len(started) == 1


def test_promote_takes_a_lagging_standby_of_a_sync_primary_that_never_degraded(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 4..6 journaled, waiting for the standby: unanswered
    primary_path, standby_path, _ = _acked_pair(tmp_path, instance, journaled=6, acknowledged=3)
    started = _no_supervisor(monkeypatch)
    assert failover.promote(str(primary_path), str(standby_path)) == 0
    assert len(started) == 1


def test_promote_refuses_a_standby_behind_what_it_acknowledged(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The primary's block says the standby acknowledged seq 5 as durable (so the sync
    router published 1..5), but the standby named holds 1..3 (its disk restored, or another
    standby's acknowledgement): promoting it loses acknowledged seqs 4..5. Expected: refused."""
    primary_path, standby_path, primary = _acked_pair(
        tmp_path, instance, journaled=5, acknowledged=5
    )
    started = _no_supervisor(monkeypatch)
    assert failover.promote(str(primary_path), str(standby_path)) == 1
    assert started == [] and Epochs.load(journal_dir(primary)).fence is None


def test_promote_refuses_a_fenced_journal_as_the_standby(
    tmp_path: Path,
    instance: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A fenced journal is an old primary's: another instance was promoted over it, and
    whatever it wrote after that instance's epoch began was never replicated. "Only demote
    lifts a fence" (epochs.py), which cuts that tail first. ``promote --standby`` of such a
    journal (the promoted instance on another host, unreadable here, so no divergence
    check) picked an epoch past the fence, and ``begin_epoch`` dropped the fence: the old
    primary became a primary again, its unreplicated tail kept and everything the promoted
    instance acknowledged since missing, a fork. Expected: refused, naming the fence and
    demote, nothing fenced or started."""
    primary_path, standby_path = configs(tmp_path, instance)
    old = load_profile(str(standby_path))
    write(old, commands(1, 5))  # 4..5 written after the promoted instance began epoch 2 at 4
    Epochs().fenced(2, "the instance promoted at seq 4").save(journal_dir(old))
    started = _no_supervisor(monkeypatch)
    assert failover.promote(str(primary_path), str(standby_path)) == 1
    assert started == []
    assert "fenced by epoch 2" in capsys.readouterr().err
    assert Epochs.load(journal_dir(old)).fence is not None


def test_promote_refuses_one_instance_named_as_both_primary_and_standby(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``promote --primary S.toml --standby S.toml`` (a slip of the operator's) found no
    divergence (one journal against itself), fenced "the old primary", which is the standby
    itself (its processes killed, its journal fenced by the new epoch), then promoted it into
    that very epoch, which ``begin_epoch`` refuses: no instance left running, and a fence only
    demote lifts. Expected: refused at once, nothing fenced."""
    _, standby_path = configs(tmp_path, instance)
    standby = load_profile(str(standby_path))
    write(standby, commands(1, 3))
    started = _no_supervisor(monkeypatch)
    assert failover.promote(str(standby_path), str(standby_path)) == 1
    assert started == [] and Epochs.load(journal_dir(standby)).fence is None


async def _hello(port: int, hello: Hello) -> Message:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await send(writer, hello)
        return await asyncio.wait_for(receive(reader), 5.0)
    finally:
        writer.close()


def _ask_source(tmp_path: Path, hello: Hello) -> tuple[Message, int]:
    """What a primary holding seqs 1..3 answers ``hello``, and its block's ``FENCED`` word."""
    primary, _ = pair(tmp_path)
    append(primary, 1, 3)

    async def scenario() -> tuple[Message, int]:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        try:
            await asyncio.sleep(0.05)  # listening
            answer = await _hello(primary.replication.listen_port, hello)
            return answer, source.block.words[FENCED]
        finally:
            source.stopping.set()
            await serving
            source.close()

    answer, word = asyncio.run(scenario())
    assert Epochs.load(journal_dir(primary)).fence is None or word, "fenced on disk only"
    return answer, word


def test_a_peer_of_other_records_and_a_newer_epoch_does_not_fence_the_primary(
    tmp_path: Path,
) -> None:
    """The source checked a Hello's epoch before its records: a standby of another build
    (schema, slot size), which can never follow this primary, fenced it when its epoch was
    newer (another deployment's standby pointed here, or any peer: the epoch is a number it
    sends), and the running router stopped sequencing. Expected: refused for its records,
    as the wire protocol says of a peer of another schema, and nothing fenced."""
    other = Hello(1, GENESIS, 5, CODEC.journal_schema_id ^ 1, CODEC.slot_size * 2)
    answer, word = _ask_source(tmp_path, other)
    assert isinstance(answer, Refused) and "records" in answer.reason, answer
    assert word == 0


def test_a_standby_of_another_instance_with_a_newer_epoch_does_not_fence_the_primary(
    tmp_path: Path,
) -> None:
    """A documented limit (the Hello carried no identity of the history it follows) until
    the cluster id (``procs/replica/cluster.py``): the other instance's standby says its
    own, and is refused for it before its epoch counts."""
    history = History()
    history.update(b"".join(CODEC.encode_slot(r) for r in _own(range(1, 4))))
    other = "0123456789abcdef0123456789abcdef"  # the other instance's cluster id
    answer, word = _ask_source(tmp_path, Hello(4, history.digest(), 3, *CODEC_RECORDS, other))
    assert isinstance(answer, Refused) and word == 0, answer
    assert "another replicated history" in answer.reason, answer


def test_demote_refuses_a_promoted_instance_of_other_records_before_it_cuts_anything(
    tmp_path: Path, instance: str
) -> None:
    """``ask_epochs`` (rebuild.py) took the promoted instance's epochs and dropped the
    records its ``EpochHistory`` names, so ``demote`` against an instance of another build
    (an upgraded one, or a wrong ``--new-address``) cut the old primary's tail, set its
    snapshots and gateway state aside and removed its database, for a standby its start
    then refuses ("records ... are not this standby's"). Expected: refused first, nothing
    touched, naming both records."""
    old_path, _ = configs(tmp_path, instance)
    old = load_profile(str(old_path))
    write(old, commands(1, 5))  # 4..5 after the promoted instance began epoch 2 at 4
    Epochs().fenced(2, "new").save(journal_dir(old))
    new, _ = pair(tmp_path)
    append(new, 1, 3)
    Epochs().promoted(2, 4).save(journal_dir(new))

    async def scenario() -> int:
        source = ReplicationSource(new)
        source.records = (
            CODEC.journal_schema_id ^ 1,
            CODEC.slot_size,
            RULES_VERSION,
        )  # another build's
        serving = asyncio.create_task(source.run())
        try:
            await asyncio.sleep(0.05)
            address = f"127.0.0.1:{new.replication.listen_port}"
            code: int = await asyncio.to_thread(failover.demote, str(old_path), "", address)
            return code
        finally:
            source.stopping.set()
            await serving
            source.close()

    assert asyncio.run(scenario()) == 1
    assert promotion_checks.journal_last(old) == 5
    assert Epochs.load(journal_dir(old)).fence is not None
