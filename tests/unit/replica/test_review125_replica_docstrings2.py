"""Review 125: the replication code's docstrings held against what it does, part 2 of 2.

Here: the source (``source.py``: acknowledgements, fencing, what it ships and when, its
history cache), the standby (``standby.py``: fsync before the ack, the hot state, epochs),
``rebuild.py`` (the cut, what is set aside, the refusals, ``agreed_seq``) and
``scripts/failover.py``'s function docstrings (``journal_state``, ``epochs_text``,
``instance_pids``, ``fence``, ``entry_at``, ``diverged``, ``unsafe``, ``supervise``).
Conventions and the disagreements found: part 1's docstring.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import DatabaseConfig, JournalConfig, ReplicationConfig, RingexConfig
from procs.common.epochs import Epochs, EpochsError
from procs.common.journal import JournalReader, list_segments
from procs.common.replication_ack import (
    ACKED_SEQ,
    BLOCK_FILE,
    CONNECTED,
    DEGRADED,
    FENCED,
    JOURNAL_SEQ,
    AckBlock,
    ack_dir,
)
from procs.common.snapshots import SnapshotStore
from procs.common.topology import gateway_root, journal_dir, market_state_path, snapshot_dir
from procs.core.recovery import recover
from procs.replica import cluster
from procs.replica import rebuild as rebuild_module
from procs.replica import source as source_module
from procs.replica import standby as standby_module
from procs.replica.rebuild import agreed_seq, rebuild
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.replica.wire import (
    GENESIS,
    MAX_DIGESTS,
    Ack,
    Digests,
    Entries,
    EpochHistory,
    Heartbeat,
    Hello,
    History,
    Message,
    Refused,
    StateFile,
    send,
)
from procs.supervisor import promotion_checks
from tests.scripts_loader import load_script
from tests.unit.gateway.test_tls import CERT, KEY
from tests.unit.replica.test_epochs import write
from tests.unit.replica.test_review33_failover import CODEC_RECORDS, _ask_source, _own
from tests.unit.replica.test_review108_readme_failover2 import _standby_cfg
from tests.unit.replica.test_review125_replica_docstrings import (
    _talk_to_source,
    primary_says,
    said,
)
from tests.unit.replica.test_review_replica_bugs import append, pair
from tests.unit.replica.test_source import CODEC, commands
from tests.unit.replica.test_standby import COMMANDS, frame
from tests.unit.replica.test_tail import open_journal

failover = load_script("failover", "review125")


def _noting(events: list[str], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def noted(*args: Any) -> Any:
        events.append(name)
        return fn(*args)

    return noted


def _digest_of(first: int, n: int) -> bytes:
    history = History()
    history.update(b"".join(CODEC.encode_slot(r) for r in commands(first, n)))
    return history.digest()


# -- source.py ----------------------------------------------------------------------------------


def test_nothing_is_acknowledged_until_said_and_the_latest_report_counts(tmp_path: Path) -> None:
    """ "nothing is known acknowledged until a standby says so"; "with several, the
    acknowledged seq is the latest one any of them reported". ``ReplicationSource.__init__``,
    ``_acknowledged``."""
    said("source")
    primary, _ = pair(tmp_path)
    block = AckBlock(ack_dir(primary.var_dir, primary.instance))
    block.acknowledged(7)  # a previous run's
    source = ReplicationSource(primary)
    assert source.acked == 0
    source._acknowledged("a", 5)
    source._acknowledged("b", 3)
    assert (source.acked, source.block.words[CONNECTED]) == (3, 2)
    source.close()
    block.close()


def _unwritable(self: Epochs, directory: Path) -> None:
    raise OSError("read-only file system")


def test_the_fence_word_goes_first_and_the_other_standbys_are_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "stop the router (``FENCED``), then mark the journal fenced (the word first: the
    running router is stopped even if the file cannot be written)"; "its standbys take nothing
    more"; "the connection that fenced it is told why". ``ReplicationSource.fence``."""
    said("source")
    primary = pair(tmp_path)[0]
    source = ReplicationSource(primary)
    monkeypatch.setattr(Epochs, "save", _unwritable)

    async def unwritable() -> None:  # logged, not raised (review 125): tried again later
        source.fence(3, "the standby")

    asyncio.run(unwritable())
    assert source.block.words[FENCED] == 3 and source.epochs.fence is None
    monkeypatch.undo()
    source.close()
    source = ReplicationSource(pair(tmp_path / "2")[0])
    closed: list[str] = []

    async def scenario() -> None:
        other = asyncio.create_task(asyncio.sleep(0))
        me = asyncio.current_task()
        assert me is not None
        for task, name in ((me, "fencing"), (other, "other")):
            writer = types.SimpleNamespace(close=lambda name=name: closed.append(name))
            source._serving[task] = writer  # type: ignore[assignment]
        source.fence(3, "the standby")
        await other

    asyncio.run(scenario())
    assert closed == ["other"] and source.block.words[FENCED] == 3
    fence = Epochs.load(journal_dir(source.cfg)).fence
    assert fence is not None and fence.epoch == 3
    source.close()


def test_a_fence_whose_file_write_failed_marks_the_journal_at_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "A newer epoch exists: stop the router (``FENCED``), then mark the journal fenced".
    ``ReplicationSource.fence`` after a first write of the epochs file failed (a full disk,
    an I/O error), called again as the next Hello of that epoch calls it."""
    said("source")
    source = ReplicationSource(pair(tmp_path)[0])
    monkeypatch.setattr(Epochs, "save", _unwritable)

    async def again() -> None:
        source.fence(3, "the standby")

    asyncio.run(again())
    monkeypatch.undo()
    asyncio.run(again())
    fenced = Epochs.load(journal_dir(source.cfg)).fence
    source.close()
    assert fenced is not None, "the journal is not fenced: a restarted router opens it"


def test_a_fenced_primary_serves_nobody(tmp_path: Path) -> None:
    """ "a fenced primary serves nobody". ``_epoch_refusal`` with the block's ``FENCED`` word
    set (as ``failover.py fence`` sets it on a running primary): a standby of its own epoch
    and history is refused, shipped nothing."""
    said("source")
    got = _talk_to_source(tmp_path, Hello(4, _digest_of(1, 3), 1, *CODEC_RECORDS), block_fenced=2)
    assert isinstance(got[0], Refused) and "fenced by epoch 2" in got[0].reason
    assert got[1:] == ["EOF"]


def test_a_handshake_refusal_comes_before_the_epoch_history(tmp_path: Path) -> None:
    """ "every answer to a standby that passes the handshake (its records, build and cluster
    id, and this primary not fenced) begins with this journal's epoch history" (review 125:
    it said every answer): ``serve``, to a Hello of another build's records, a bare
    ``Refused``."""
    said("source")
    answer, _ = _ask_source(tmp_path, Hello(1, GENESIS, 1, 0x1234, 64, 1))
    assert isinstance(answer, Refused), answer


def test_a_reconnecting_standby_costs_only_the_entries_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "from the last one made when it was at or before ``seq`` in the same block (a standby
    that reconnects costs only the entries since), else from the chain's key of its block".
    ``ReplicationSource._history_before``: the same hash as the chain's, the chain not asked."""
    said("source")
    primary, _ = pair(tmp_path)
    append(primary, 1, 5)
    source = ReplicationSource(primary)
    assert source._history_before(3).digest() == _digest_of(1, 2)
    monkeypatch.setattr(source.chain, "history_before", lambda *a: pytest.fail("the chain"))
    assert source._history_before(6).digest() == _digest_of(1, 5)
    source.close()


def test_the_source_ships_files_before_the_frame_beats_when_idle_drops_the_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "the source ships what the files gained right then, before the frame, on the same
    connection"; "Heartbeat() every HEARTBEAT_S while there is nothing else to send"; "a
    primary that hears nothing for STANDBY_SILENCE_S drops the standby". ``_stream``,
    ``_acks`` (its silence cut to 1 s), a peer that never acknowledges."""
    said("wire", "files")
    monkeypatch.setattr(source_module, "STANDBY_SILENCE_S", 1.0)
    users = gateway_root(pair(tmp_path)[0]) / "users.json"
    users.parent.mkdir(parents=True)
    users.write_text("[]")
    got = _talk_to_source(tmp_path, Hello(1, GENESIS, 1, *CODEC_RECORDS), quiet_s=3.0)
    kinds = [type(m).__name__ if not isinstance(m, str) else m for m in got]
    assert kinds[:3] == ["EpochHistory", "StateFile", "Entries"], kinds
    assert "Heartbeat" in kinds[3:] and kinds[-1] == "EOF"
    entries = got[2]
    assert isinstance(entries, Entries) and entries.digest == _digest_of(1, 3)


def test_an_ack_past_what_was_sent_drops_the_standby(tmp_path: Path) -> None:
    """ "one past what was sent is a broken peer's, which would let the sync router go on
    without a standby: it is dropped." ``ReplicationSource._acks``."""
    said("source")

    def past(message: Message) -> Message | None:
        return Ack(9) if isinstance(message, EpochHistory) else None

    hello = Hello(4, _digest_of(1, 3), 1, *CODEC_RECORDS)
    got = _talk_to_source(tmp_path, hello, quiet_s=3.0, reply=past)
    assert isinstance(got[0], EpochHistory) and got[-1] == "EOF"
    assert all(isinstance(m, Heartbeat) for m in got[1:-1])


# -- standby.py ---------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["interval", "pipelined"])
def test_entries_are_fsynced_whatever_the_policy_before_persist_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    """ "Entries are appended to its own journal and fsynced, whatever the journal policy,
    then acknowledged"; "Check one frame and make it durable here". ``Standby.persist``
    under a policy that would wait (a 10 s interval, a pipelined fsync)."""
    said("standby")
    journal = JournalConfig(fsync=policy, fsync_interval_ms=10_000)  # type: ignore[arg-type]
    standby = Standby(_standby_cfg(tmp_path, journal=journal))
    synced: list[str] = []
    monkeypatch.setattr(os, "fsync", _noting(synced, "fsync", os.fsync))
    assert standby.persist(frame(1, COMMANDS)) == 2
    assert synced and standby.journal.durable_seq == 2 and standby.state.last_seq == 0
    monkeypatch.undo()
    standby.close()


def test_acknowledged_before_applied_and_the_hot_state_is_the_journals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "then acknowledged (... so it is sent before the entries are applied), then applied to
    its router and matcher state, so at every seq its state hash equals the primary's".
    ``Standby._follow``: the order of persist, Ack and apply; the hot state against a replay
    of the same journal."""
    said("standby")
    cfg = _standby_cfg(tmp_path)
    standby = Standby(cfg)
    events: list[str] = []
    persist, apply, real_send = Standby.persist, Standby.apply, send

    async def sending(writer: Any, message: Message) -> None:
        events.append(type(message).__name__)
        await real_send(writer, message)

    monkeypatch.setattr(Standby, "persist", _noting(events, "persist", persist))
    monkeypatch.setattr(Standby, "apply", _noting(events, "apply", apply))
    monkeypatch.setattr(standby_module, "send", sending)
    epochs = EpochHistory([(1, 1)], *CODEC_RECORDS)
    asyncio.run(primary_says(standby, [epochs, frame(1, COMMANDS)]))
    assert events == ["Hello", "persist", "Ack", "apply"]
    standby.journal.close()
    assert standby.state.state_hashes() == recover(cfg, use_snapshot=False).state_hashes()


def test_a_standby_whose_journal_goes_past_the_primarys_new_epoch_does_not_follow(
    tmp_path: Path,
) -> None:
    """ "does not follow when its own journal goes on past the point where the primary's
    epoch began (a demoted primary not yet rebuilt: run ``failover.py demote``)"; "a standby
    refuses ... one whose journal goes on past where the primary's epoch began".
    ``Standby.follow_epochs``."""
    said("standby", "wire")
    cfg = _standby_cfg(tmp_path)
    write(cfg, commands(1, 5))
    standby = Standby(cfg)
    with pytest.raises(StandbyRefusedError, match=r"holds seqs 4\.\.5 of epoch 1.*they diverge"):
        standby.follow_epochs(EpochHistory([(1, 1), (2, 4)], *CODEC_RECORDS))
    standby.follow_epochs(EpochHistory([(1, 1), (2, 6)], *CODEC_RECORDS))  # past its end: fine
    standby.close()


def test_the_primarys_epochs_are_kept_with_the_frames_that_reach_them(tmp_path: Path) -> None:
    """ "they are kept with the first frame that follows (a primary whose history check fails
    leaves none)"; "Take on the primary's epochs that begin by ``next_seq``; a later one
    waits for the frame that reaches it". ``follow_epochs``, ``persist``, ``_adopt_reached``."""
    said("standby")
    cfg = _standby_cfg(tmp_path)
    standby = Standby(cfg)
    standby.follow_epochs(EpochHistory([(1, 1), (2, 5)], *CODEC_RECORDS))
    assert not (journal_dir(cfg) / "epochs.json").exists()  # nothing checked yet
    standby.persist(frame(1, commands(1, 2)))
    on_disk = Epochs.load(journal_dir(cfg))
    assert (on_disk.history, on_disk.known) == (((1, 1),), 2)  # told of 2, not begun here
    history = History()
    history.update(b"".join(CODEC.encode_slot(r) for r in commands(1, 4)))
    images = [CODEC.encode_slot(r) for r in commands(3, 2)]
    standby.persist(Entries(3, images, history.digest()))  # now up to seq 4: 2 begins at 5
    assert Epochs.load(journal_dir(cfg)).history == ((1, 1), (2, 5))
    standby.journal.close()


# -- cluster.py, the link's TLS ----------------------------------------------------------------
def test_a_primary_makes_a_hex_id_once_and_a_missing_one_is_not_compared(tmp_path: Path) -> None:
    """ "A primary makes one when its journal has none"; "The file is ``<journal dir>/cluster``
    (the id in hex)"; "An id not said ... is not compared". ``load_or_make``, ``differ``."""
    said("cluster")
    assert cluster.load(tmp_path) == ""
    made = cluster.load_or_make(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{32}", made) and (tmp_path / "cluster").read_text() == made
    assert cluster.load_or_make(tmp_path) == made
    assert cluster.differ("standby", "", made) is None and cluster.differ("p", made, "") is None
    assert "another replicated history" in (cluster.differ("standby", "a" * 32, made) or "")


def test_a_tls_standby_retries_a_primary_it_cannot_shake_hands_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ "(ssl.SSLError too: a primary of another CA, say)": retried, not a refusal;
    "It reconnects with a backoff while the primary is away"; "Longest wait between attempts
    to reach an absent primary". ``Standby._connect_loop`` with the link's mutual TLS against
    a plain-TCP peer, its sleeps recorded."""
    said("standby")
    _, plain = pair(tmp_path)
    rep = msgspec.structs.replace(plain.replication, tls_cert=CERT, tls_key=KEY, tls_ca=CERT)
    standby = Standby(msgspec.structs.replace(plain, replication=rep))
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 6:
            standby.stopping.set()
        await real_sleep(0)

    fake = types.ModuleType("asyncio_with_recorded_sleeps")
    fake.__dict__.update(vars(asyncio))
    fake.sleep = sleep  # type: ignore[attr-defined]
    monkeypatch.setattr(standby_module, "asyncio", fake)

    async def not_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 400 no\r\n\r\n" * 4)
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        host, port = rep.primary_address()
        server = await asyncio.start_server(not_tls, host, port)
        try:
            await asyncio.wait_for(standby._connect_loop(), 10)
        finally:
            server.close()

    with caplog.at_level(logging.WARNING, logger="ringex.replica"):
        asyncio.run(scenario())
    standby.close()
    assert pauses == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert any("unreachable" in r.getMessage() for r in caplog.records)


# -- rebuild.py ---------------------------------------------------------------------------------


def test_rebuild_cuts_sets_aside_and_takes_the_promoted_epochs_unfenced(tmp_path: Path) -> None:
    """ "the old primary keeps every entry before the promoted epoch's first seq"; "kept for
    the operator as a journal of its own under ``var/<instance>/demoted/<stamp>/journal``";
    "snapshots newer than the kept seq, the gateways' state ..., the market data state and
    the replication block"; "an external one is left to the operator, with a warning";
    "the journal takes the promoted instance's epoch history, unfenced". ``rebuild``."""
    said("rebuild")
    cfg = _standby_cfg(tmp_path, database=DatabaseConfig(dsn="postgresql://db/x"))
    write(cfg, commands(1, 6))
    Epochs(known=3).fenced(4, "new").save(journal_dir(cfg))
    exchange = SnapshotStore(snapshot_dir(cfg, "exchange"))
    old, new = exchange.save(3, b"old"), exchange.save(6, b"new")
    (gateway_root(cfg) / "gw1").mkdir(parents=True)
    market_state_path(cfg).parent.mkdir(parents=True, exist_ok=True)
    market_state_path(cfg).write_bytes(b"m")
    AckBlock(ack_dir(cfg.var_dir, cfg.instance)).close()
    done = rebuild(cfg, Epochs(((1, 1), (4, 5))))
    assert (done.kept_seq, done.cut) == (4, 2) and old.exists() and not new.exists()
    assert done.aside.parent == tmp_path / "rs" / "demoted"
    cut = JournalReader(
        done.aside / "journal", slot_size=CODEC.slot_size, schema_id=CODEC_RECORDS[0]
    )
    assert [s for s, _ in cut.entries(5)] == [5, 6]
    assert not gateway_root(cfg).exists() and not market_state_path(cfg).exists()
    assert not (ack_dir(cfg.var_dir, cfg.instance) / BLOCK_FILE).exists()
    assert any("postgresql://db/x" in w for w in done.warnings)
    epochs = Epochs.load(journal_dir(cfg))
    assert (epochs.history, epochs.fence, epochs.known) == (((1, 1), (4, 5)), None, 3)


def test_rebuild_refuses_an_older_primary_counting_what_it_was_told_and_its_fence(
    tmp_path: Path,
) -> None:
    """ "an epoch it was told of counts as a standby counts it"; "as a standby refuses it: it
    was failed over". ``rebuild``: nothing cut."""
    said("rebuild")
    cfg = _standby_cfg(tmp_path)
    write(cfg, commands(1, 3))
    for epochs in (Epochs(known=3), Epochs().fenced(3, "new")):
        epochs.save(journal_dir(cfg))
        with pytest.raises(EpochsError, match="older than this journal's 3"):
            rebuild(cfg, Epochs(((1, 1), (2, 2))))
    assert promotion_checks.journal_last(cfg) == 3


def test_agreed_seq_finds_where_the_histories_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "The last seq up to which ``cfg``'s journal ... holds the primary's history ...: all
    of it when it is a prefix of the primary's"; "agrees only up to where the tail was
    lost"; "a few dozen seqs a question". ``agreed_seq`` on a model of two histories that
    agree before seq ``part + 1`` (its questions and hashes faked, its search real)."""
    said("rebuild")
    cfg = _standby_cfg(tmp_path)
    journal_dir(cfg).mkdir(parents=True)
    model: dict[str, int] = {}
    asked: list[int] = []

    def digest(side: str, seq: int) -> bytes:
        mark = "same" if seq - 1 <= model["part"] else side
        return bytes((2,)) + hashlib.blake2b(f"{mark}{seq}".encode(), digest_size=16).digest()

    async def ask(host: str, port: int, seqs: list[int], tls: object) -> Digests:
        asked.append(len(seqs))
        return Digests(model["theirs"], [digest("p", s) for s in seqs if s <= model["theirs"] + 1])

    def own(cfg: RingexConfig, seqs: list[int]) -> dict[int, bytes]:
        return {s: digest("s", s) for s in seqs if s <= model["mine"] + 1}

    class Reader:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def last_seq(self) -> int:
            return model["mine"]

    monkeypatch.setattr(rebuild_module, "_ask_digests", ask)
    monkeypatch.setattr(rebuild_module, "_own_digests", own)
    monkeypatch.setattr(rebuild_module, "JournalReader", Reader)
    for mine, theirs, part in [(0, 5, 0), (10, 10, 10), (10, 20, 10), (20, 10, 10), (20, 12, 7),
                               (5000, 4000, 1234), (5000, 6000, 4999), (300, 300, 0)]:  # fmt: skip
        model.update(mine=mine, theirs=theirs, part=part)
        assert agreed_seq(cfg, "h", 1) == min(mine, theirs, part), model
    assert max(asked) <= MAX_DIGESTS


# -- scripts/failover.py ------------------------------------------------------------------------


def test_journal_state_of_a_journal_whose_first_segments_are_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "the hash is "" where the journal's first segments are gone from its archive too, and
    the line printed says so". ``failover.journal_state``."""
    said("failover")
    cfg = _standby_cfg(tmp_path)
    writer, tail = open_journal(journal_dir(cfg), segment_entries=2)
    writer.append(1, b"".join(CODEC.encode_slot(r) for r in commands(1, 5)), 5)
    writer.close()
    tail.close()
    assert failover.journal_state(cfg)[0] == 5 and capsys.readouterr().out == ""
    list_segments(journal_dir(cfg))[0][1].unlink()
    assert failover.journal_state(cfg) == (5, "")
    assert "rs: no history hash" in capsys.readouterr().out


def test_fence_stops_a_router_through_its_block_where_no_journal_is_reachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "mark its journal fenced by ``epoch`` where this host can reach it"; "A router still
    running (one no status file names ...) is stopped through its replication block: it
    sequences nothing once ``FENCED`` is set." ``failover.fence``: no journal here, a block."""
    said("failover")
    cfg = _standby_cfg(tmp_path)
    router = AckBlock(ack_dir(cfg.var_dir, cfg.instance))
    failover.fence(cfg, 5, "new")
    assert router.words[FENCED] == 5 and not journal_dir(cfg).exists()
    assert "0 process(es) killed, replication block fenced" in capsys.readouterr().out
    router.close()


def test_diverged_compares_the_first_the_standbys_last_and_the_last_both_hold(
    tmp_path: Path,
) -> None:
    """ "A seq where both journals, readable from this host, hold different entries, else 0.
    Compared: their first, the standby's last, and the last both hold." ``failover.diverged``,
    ``entry_at`` ("else None")."""
    said("promotion_checks")
    primary = _standby_cfg(tmp_path / "p")
    write(primary, commands(1, 6))
    standbys = [_standby_cfg(tmp_path / name) for name in ("a", "b", "c")]
    write(standbys[0], commands(1, 3) + _own(range(4, 5)))  # its last differs
    write(standbys[1], _own(range(1, 2)) + commands(2, 2))  # its first differs
    write(standbys[2], commands(1, 2) + _own(range(3, 4)) + commands(4, 2))  # the middle only
    assert [failover.diverged(primary, s) for s in standbys] == [4, 1, 0]
    assert (
        promotion_checks.entry_at(primary, 0) is None
        and promotion_checks.entry_at(primary, 7) is None
    )


def test_unsafe_in_sync_mode_only(tmp_path: Path) -> None:
    """ "in sync mode, the primary's block shows seqs acknowledged that the standby lacks: it
    acknowledged more than it holds, or the router went on without it (degraded) past its
    end. Async mode loses its lag by design." ``failover.unsafe``."""
    said("promotion_checks")
    rep = ReplicationConfig(listen_port=1, mode="sync")
    primary = RingexConfig(instance="rp", var_dir=str(tmp_path), replication=rep)
    standby = _standby_cfg(tmp_path)
    write(standby, commands(1, 3))
    block = AckBlock(ack_dir(primary.var_dir, primary.instance))
    block.words[ACKED_SEQ] = 5
    assert "acknowledged seq 5 as durable" in failover.unsafe(primary, standby)
    block.words[ACKED_SEQ], block.words[DEGRADED], block.words[JOURNAL_SEQ] = 3, 1, 6
    assert "seqs 4..6 may have been acknowledged" in failover.unsafe(primary, standby)
    block.words[ACKED_SEQ] = 5
    async_primary = RingexConfig(instance="rp", var_dir=str(tmp_path))
    assert failover.unsafe(async_primary, standby) == ""
    block.close()


@pytest.mark.parametrize(("word", "starts"), [(b"", False), (b"fenced\n", True)])
def test_supervise_starts_nothing_without_promotes_word(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], word: bytes, starts: bool
) -> None:
    """ "It goes on once ``promote`` says go (the old primary is fenced: without that word,
    nothing starts)". ``failover.supervise``'s ``go``, the supervisor's main faked."""
    said("failover")
    from procs.supervisor import main as supervisor_main  # noqa: PLC0415

    monkeypatch.setattr(supervisor_main, "main", lambda argv, go, begin, **_: int(go()))
    monkeypatch.setattr(failover.sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(word)))
    assert failover.supervise("p.toml", 0, 2) == int(starts)
    assert ("not starting" in capsys.readouterr().err) is not starts


def test_a_frame_sent_to_a_standby_whose_state_file_fails_is_not_acknowledged(
    tmp_path: Path,
) -> None:
    """ "Acknowledging later frames would leave a hole in the copy ...: start a new connection,
    which ships the files again from the start." ``Standby._follow``: a state file it may not
    write ends the connection before the frame after it is taken."""
    said("standby")
    standby = Standby(_standby_cfg(tmp_path))
    bad = StateFile("gw1/../../etc.log", 0, b"x", True)
    messages: list[Message] = [EpochHistory([(1, 1)], *CODEC_RECORDS), bad, frame(1, COMMANDS)]
    got, ended = asyncio.run(primary_says(standby, messages))
    standby.close()
    assert isinstance(ended, ConnectionResetError) and len(got) == 1 and standby.next_seq == 1
