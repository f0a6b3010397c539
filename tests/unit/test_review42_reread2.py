"""Review 42, re-read 2: ``git log 1bc666e..HEAD`` attacked: the writer's cut after a failed
fsync, ``AskDigests``/``agreed_seq``/``demote``, the standby's backoff, writer snapshot CRCs.

Rigs: ``Disk`` (``os.fsync``: EIO on demand, per inode what a good fsync made durable) and
``test_review42_replica_fsync``'s pair and ``running``; real journals, sources, standbys, TCP
and (the dbwriter) the session's PostgreSQL. Plain tests pin what was verified right.

Faults found, each fixed (its test failed before): the cut of a failed fsync's entries left
the journal's live tailers (the replication source, the database writer: their own
processes) to go on past it into a restarted router's other commands, so only a standby's
writer cuts now (``cut_on_failure``), the router's journal stays as written; a failed seal
fsync cut nothing (it goes through ``_fsync_failed`` now); any peer of the replication port
bought a whole pass over the journal per ``AskDigests`` (one pass at a time now, a rest as
long after it, and the hashes kept); ``demote`` died on a closed connection or an unreadable
answer instead of cutting by the epochs alone.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.epochs import Epochs
from procs.common.journal import HEADER_SIZE, JournalError, list_segments
from procs.common.journal_writer import JournalWriter
from procs.common.topology import journal_dir
from procs.dbwriter.replay import Follower
from procs.dbwriter.writer import DbWriter, WriterOptions
from procs.replica import rebuild as rebuild_module
from procs.replica import source as source_module
from procs.replica.rebuild import agreed_seq
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby
from procs.replica.wire import MAX_DIGESTS, AskDigests, Digests, History, receive, send
from procs.supervisor import promotion_checks
from tests.unit.dbwriter.journal_gen import make_cfg
from tests.unit.dbwriter.test_review42_db_ahead import COMMON, _history
from tests.unit.dbwriter.test_review42_db_ahead import _reader as db_reader
from tests.unit.replica.test_review33_failover import _own, failover
from tests.unit.replica.test_review42_replica_fsync import Disk, running, stop_source, unsynced_tail
from tests.unit.replica.test_review_replica_bugs import append, pair
from tests.unit.replica.test_source import commands
from tests.unit.router.test_journal import ENTRY, SCHEMA, SLOT, SMALL, images, reader, writer
from tests.unit.router.test_review42_pipelined import journaled
from tests.unit.supervisor.test_review_ops_bugs import configs, write


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    d = Disk()
    monkeypatch.setattr(os, "fsync", d)
    yield d
    d.opened.set()


async def settle(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return condition()


def unsynced_tail_of(cfg: RingexConfig, images: list[bytes], first: int = 1) -> JournalWriter:
    w = JournalWriter(
        journal_dir(cfg), slot_size=SLOT, schema_id=SCHEMA, fsync="interval",
        fsync_interval_ms=10**6,
    )  # fmt: skip
    w.append(first, b"".join(images), len(images))
    return w


# -- 1. the writer's cut: every caller path --------------------------------------------------


@pytest.mark.parametrize("policy", ["batch", "interval", "pipelined"])
def test_a_failed_fsync_cuts_to_the_last_good_one_and_a_reopen_continues_there(
    tmp_path: Path, disk: Disk, policy: str
) -> None:
    """Right: 1..5 durable; 6..8 appended, their fsync fails (inline, or the thread's): the
    file keeps 1..5, the writer refuses more, close works, a reopen continues at 6."""
    w = writer(tmp_path, fsync=policy, fsync_interval_ms=10**6, cut_on_failure=True)
    w.append(1, images(1, 5), 5)
    w.sync()
    disk.fail = 1
    with pytest.raises((OSError, JournalError)):  # JournalError from the thread
        w.append(6, images(6, 3), 3)
        w.wait_durable(5) if policy == "pipelined" else w.sync()
    assert w.failed is not None and (w._written, w._count, w.durable_seq) == (5, 5, 5)
    assert os.path.getsize(list_segments(tmp_path)[-1][1]) == HEADER_SIZE + 5 * ENTRY
    with pytest.raises(JournalError, match="failed earlier"):
        w.append(6, images(6, 1), 1)
    w.close()
    with writer(tmp_path) as again:
        assert again.next_seq == 6


def test_a_thread_fsync_failing_under_a_roll_cuts_the_open_segment(
    tmp_path: Path, disk: Disk
) -> None:
    """Right: pipelined, 10 a segment: 1..8 in flight, 9..12 appended: the roll waits for the
    flight, which fails: 1..10 (the open segment) are cut to its header."""
    w = writer(tmp_path, fsync="pipelined", segment_bytes=SMALL, cut_on_failure=True)
    w.append(1, images(1, 8), 8)
    disk.shut()
    disk.fail = 1
    w.maybe_sync()  # the flight starts, held at the gate
    threading.Timer(0.05, disk.opened.set).start()
    with pytest.raises(JournalError):
        w.append(9, images(9, 4), 4)
    w.close()
    assert [(f, os.path.getsize(p)) for f, p in list_segments(tmp_path)] == [(1, HEADER_SIZE)]


def test_the_routers_journal_is_not_cut_by_a_failed_fsync(tmp_path: Path, disk: Disk) -> None:
    """The router's writer (``cut_on_failure`` off): its journal is tailed by the replication
    source and the database writer, which would go on past a cut into a restarted router's
    other commands; the failed writer refuses more, and the file keeps what was written."""
    w = writer(tmp_path, fsync="batch")
    w.append(1, images(1, 5), 5)
    disk.fail = 1
    with pytest.raises(OSError):
        w.append(6, images(6, 3), 3)
    with pytest.raises(JournalError, match="failed earlier"):
        w.sync()
    w.close()
    assert reader(tmp_path).last_seq() == 8


def test_fsync_none_cuts_as_well(tmp_path: Path, disk: Disk) -> None:
    """Under "none" too an explicit sync that fails cuts what it did not make durable, where
    the writer cuts (a standby's, which syncs before it acknowledges whatever the policy):
    it kept them until review 51 (``test_review51_router``), and a restarted standby
    acknowledged entries its disk had lost."""
    w = writer(tmp_path, fsync="none", cut_on_failure=True)
    w.append(1, images(1, 2), 2)
    w.sync()
    w.append(3, images(3, 2), 2)
    disk.fail = 1
    with pytest.raises(OSError):
        w.sync()
    w.close()
    assert reader(tmp_path).last_seq() == 2


@pytest.mark.parametrize("policy", ["batch", "interval", "pipelined"])
def test_a_failed_seal_fsync_cuts_what_it_did_not_make_durable(
    tmp_path: Path, disk: Disk, policy: str
) -> None:
    w = writer(
        tmp_path, fsync=policy, segment_bytes=SMALL, fsync_interval_ms=10**6, cut_on_failure=True
    )
    w.append(1, images(1, 5), 5)
    w.sync()
    disk.fail = 1
    with pytest.raises(OSError):
        w.append(6, images(6, 10), 10)
    w.close()
    assert reader(tmp_path).last_seq() == 5


# -- 2. the cut, seen by the journal's tailers -----------------------------------------------


def test_a_cut_does_not_leave_a_connected_standby_with_the_lost_entries(
    tmp_path: Path, disk: Disk
) -> None:
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)

    async def scenario() -> tuple[int, bool]:
        async with running(primary, secondary) as (source, standby, following, _):
            await settle(lambda: standby.next_seq == 4)
            router = unsynced_tail(primary, "interval", 4, 3)
            assert await settle(lambda: standby.next_seq == 7)  # shipped before the fsync
            disk.fail_under = journal_dir(primary)
            with pytest.raises(OSError):
                router.sync()
            router.close()
            assert max(journaled(primary)) == 6  # not cut: the router's journal is tailed
            write(primary, _own(range(7, 10)))  # the restarted router goes on at 7
            await settle(lambda: standby.next_seq >= 10 or following.done())
            return source.acked, following.done()

    acked, refused = asyncio.run(scenario())
    mine, theirs = journaled(secondary), journaled(primary)
    wrong = [s for s in sorted(mine) if s in theirs and mine[s] != theirs[s]]
    assert wrong == [] or refused, f"standby differs at {wrong}, acked {acked}"
    assert not wrong or acked < wrong[0], f"acked {acked}, standby differs from {wrong[0]}"


def test_a_cut_does_not_let_the_live_dbwriter_write_on_atop_the_cut_entries(
    tmp_path: Path, dsn: str, disk: Disk
) -> None:
    lost = _history(tmp_path / "a", 1, 120)
    cfg = make_cfg(tmp_path / "c")
    image = [bytes(i) for _s, i in db_reader(lost.cfg).entries(1)]
    router = unsynced_tail_of(cfg, image[:COMMON])  # 1..24 durable
    router.sync()
    router.append(COMMON + 1, b"".join(image[COMMON:]), len(image) - COMMON)  # not fsynced
    live = DbWriter(cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))
    try:
        # (written up to the router's durable mark since a3f49bd: 25..144 are not fsynced;
        # before, the live writer read them from the page cache and returned 144 here)
        assert live.run(to_end=True) == COMMON
        disk.fail_under = journal_dir(cfg)
        with pytest.raises(OSError):
            router.sync()
        router.close()
        assert db_reader(cfg).last_seq() == 144  # not cut: the live writer's stays right
        assert live.run(to_end=True) == 144
    finally:
        live.close()


# -- 3. AskDigests: the answers, their bounds, their cost ------------------------------------


def _hash_of(cfg: RingexConfig, n: int) -> bytes:
    history = History()
    for _seq, image in zip(range(n), reader(journal_dir(cfg)).entries(1), strict=False):
        history.update(image[1])
    return history.digest()


def _ask(port: int, question: object) -> object:
    async def go() -> object:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await send(writer, question)  # type: ignore[arg-type]
            try:
                return await receive(reader)
            except asyncio.IncompleteReadError:
                return None
        finally:
            writer.close()

    return asyncio.run(go())


async def _serve(primary: RingexConfig, work: Callable[[], object]) -> object:
    source = ReplicationSource(primary)
    serving = asyncio.create_task(source.run())
    try:
        await asyncio.sleep(0.05)
        return await asyncio.to_thread(work)
    finally:
        await stop_source(source, serving)


def test_digests_answer_in_order_leaving_out_seq_0_and_past_the_end_within_max_digests(
    tmp_path: Path,
) -> None:
    """Right: 1..10; before seq 1 the genesis hash, before 11 (end + 1) the whole journal's;
    12 left out, duplicates answered twice in the question's order; 64 seqs answered, 65
    dropped unanswered (the frame does not decode), and so is a question of seq 0 (review
    125: it was left out of the answer, which then no longer lined up with the question)."""
    primary, _ = pair(tmp_path)
    append(primary, 1, 10)
    port = primary.replication.listen_port
    questions = [[11, 5, 12, 1, 5], [4] * MAX_DIGESTS, list(range(1, MAX_DIGESTS + 2)), [0, 1]]
    work = lambda: [_ask(port, AskDigests(q)) for q in questions]  # noqa: E731
    answers: Any = asyncio.run(_serve(primary, work))
    small, full, over, zero = answers
    want = [_hash_of(primary, 10), _hash_of(primary, 4), _hash_of(primary, 0)]
    assert (small.last_seq, small.digests) == (10, [*want, want[1]])
    assert len(full.digests) == MAX_DIGESTS and over is None and zero is None


def test_operator_questions_cannot_make_the_primary_hash_its_journal_over_and_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, _ = pair(tmp_path)
    append(primary, 1, 3000)
    port, lock, real = primary.replication.listen_port, threading.Lock(), ReplicationSource._digests
    now, peak, updates = [0], [0], [0]

    class Counted(History):
        def update(self, images: bytes | memoryview) -> None:
            updates[0] += 1
            super().update(images)

    def digests(self: ReplicationSource, seqs: list[int]) -> Digests:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        try:
            time.sleep(0.05)
            return real(self, seqs)
        finally:
            with lock:
                now[0] -= 1

    monkeypatch.setattr(source_module, "History", Counted)
    monkeypatch.setattr(ReplicationSource, "_digests", digests)

    def flood() -> list[object]:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda _: _ask(port, AskDigests([3001])), range(8)))

    answers = asyncio.run(_serve(primary, flood))
    assert all(isinstance(a, Digests) for a in answers)  # type: ignore[attr-defined]
    assert peak[0] <= 1 and updates[0] <= 2 * 3000, f"{peak[0]} at once, {updates[0]} updates"


# -- 4. agreed_seq and demote ----------------------------------------------------------------


def _agreed(
    primary: RingexConfig, secondary: RingexConfig, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, int]:
    """``agreed_seq`` of ``secondary`` against ``primary``'s running source; the questions."""
    asked: list[list[int]] = []
    real = rebuild_module._ask_digests

    async def counted(host: str, port: int, seqs: list[int], tls: Any = None) -> Digests:
        asked.append(seqs)
        return await real(host, port, seqs, tls)

    monkeypatch.setattr(rebuild_module, "_ask_digests", counted)
    port = primary.replication.listen_port
    agreed = asyncio.run(_serve(primary, lambda: agreed_seq(secondary, "127.0.0.1", port)))
    assert all(len(q) <= MAX_DIGESTS for q in asked)
    return agreed, len(asked)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("shared", "theirs", "mine"),
    [
        (20, 0, 0),  # equal journals
        (20, 10, 0),  # the standby behind: a prefix
        (20, 0, 10),  # the standby ahead: the primary's a prefix
        (0, 15, 20),  # no entry shared
        (1, 15, 20),
        (29, 1, 5),  # top - 1 (top 30)
        (0, 7, 7),  # top + 1 a power of two
        (6, 1, 1),
        (1000, 37, 500),
    ],
)
def test_agreed_seq_finds_every_divergence_point_in_a_few_questions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: int, theirs: int, mine: int
) -> None:
    primary, secondary = pair(tmp_path)
    for cfg in (primary, secondary) if shared else ():
        append(cfg, 1, shared)
    if theirs:
        write(primary, _own(range(shared + 1, shared + theirs + 1)))
    if mine:
        append(secondary, shared + 1, mine)  # ``commands``: unlike the primary's ``_own``
    agreed, questions = _agreed(primary, secondary, monkeypatch)
    assert agreed == shared
    assert questions <= 5, questions


def _demoting(
    tmp_path: Path, instance: str, old_last: int, new_last: int, epoch_from: int
) -> tuple[Path, RingexConfig, RingexConfig]:
    """An old primary (stopped, fenced) holding 1..old_last of ``commands``; the promoted
    instance holding 1..epoch_from-1 of them and its own from there to new_last."""
    old_path, _ = configs(tmp_path, instance)
    old = load_profile(str(old_path))
    write(old, commands(1, old_last))
    Epochs().fenced(2, "new").save(journal_dir(old))
    new, _ = pair(tmp_path)
    append(new, 1, epoch_from - 1)
    if new_last >= epoch_from:
        write(new, _own(range(epoch_from, new_last + 1)))
    Epochs().promoted(2, epoch_from).save(journal_dir(new))
    return old_path, old, new


def test_demote_of_an_old_primary_that_is_simply_behind_cuts_nothing(
    tmp_path: Path, instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Right: the old primary holds 1..3 of the promoted one's 1..6 (epoch 2 from 7): the
    epochs keep 6, the digests agree through 3 (all of it); nothing is cut."""
    old_path, old, new = _demoting(tmp_path, instance, 3, 8, 7)
    address = f"127.0.0.1:{new.replication.listen_port}"
    assert asyncio.run(_serve(new, lambda: failover.demote(str(old_path), "", address))) == 0
    out = capsys.readouterr()
    assert promotion_checks.journal_last(old) == 3 and "were cut" not in out.out, out
    assert "WARNING" not in out.out, out.out


@pytest.mark.parametrize("answer", [b"", b"\x01\x00\x00\x00\xc1"], ids=["closed", "garbage"])
def test_demote_falls_back_to_the_epochs_when_the_digests_do_not_come(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch, answer: bytes
) -> None:
    old_path, _, new = _demoting(tmp_path, instance, 5, 3, 4)
    real = ReplicationSource._answer_operator

    async def dropping(self: ReplicationSource, question: object, writer: object) -> None:
        if isinstance(question, AskDigests):
            writer.write(answer)  # type: ignore[attr-defined]
            return
        await real(self, question, writer)  # type: ignore[arg-type]

    monkeypatch.setattr(ReplicationSource, "_answer_operator", dropping)
    address = f"127.0.0.1:{new.replication.listen_port}"
    code = asyncio.run(_serve(new, lambda: failover.demote(str(old_path), "", address)))
    assert code in (0, 1)


# -- 5. the standby's backoff, the writer snapshots' CRC -------------------------------------


def test_a_standby_backs_off_from_a_primary_that_drops_it_at_once(tmp_path: Path) -> None:
    """Right (STEADY_S): connections that end at once are retried 0.05, 0.1, 0.2, 0.4, 0.5 s
    apart: at most 7 in 1.2 s, not hundreds."""
    _, secondary = pair(tmp_path)
    accepted = [0]

    async def scenario() -> int:
        def drop(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            accepted[0] += 1
            w.close()

        port = int(secondary.replication.primary.rpartition(":")[2])
        server = await asyncio.start_server(drop, "127.0.0.1", port)
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        await asyncio.sleep(1.2)
        standby.stopping.set()
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        standby.journal.close()
        server.close()
        return accepted[0]

    assert 3 <= asyncio.run(scenario()) <= 7


def test_a_writer_snapshot_is_used_only_where_the_journal_still_holds_its_entry(
    tmp_path: Path,
) -> None:
    """Right (the store keeps 2): snapshots at 20 and 30; 30's entry changed: the restore to
    35 passes over it for 20; with both changed it starts fresh; one saved with crc 0 (made
    before the CRC was kept) is taken unchecked."""
    cfg = make_cfg(tmp_path)
    follower = Follower(cfg)
    for seq, crc in ((20, 111), (30, 222)):
        follower.seq = seq
        follower.save_snapshot(crc)
    assert Follower.restore(cfg, 35, lambda s: {{20: 111, 30: 999}[s]}).seq == 20
    assert Follower.restore(cfg, 35, lambda s: {{20: 111, 30: 222}[s]}).seq == 30
    assert Follower.restore(cfg, 35, lambda _seq: frozenset()).seq == 0
    assert Follower.restore(cfg, 35).seq == 30  # no journal asked: as before
    follower.seq = 40
    follower.save_snapshot()
    assert Follower.restore(cfg, 45, lambda _seq: frozenset()).seq == 40


def test_a_writer_snapshot_whose_entry_cannot_be_read_is_trusted(tmp_path: Path) -> None:
    """Own reread: an entry that cannot be read (archived, the archive gone: ``JournalError``)
    cannot be checked; the snapshot is used as before, not passed over for a fresh start
    that would need those entries too."""
    cfg = make_cfg(tmp_path)
    follower = Follower(cfg)
    follower.seq = 20
    follower.save_snapshot(111)

    def archived(seq: int) -> frozenset[int]:
        raise JournalError(f"from_seq {seq} precedes the oldest segment: archived")

    assert Follower.restore(cfg, 25, archived).seq == 20
