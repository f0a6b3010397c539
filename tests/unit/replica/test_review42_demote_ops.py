"""Review 42: the operator's failover tooling end to end (``failover.py`` status, promote,
demote; ``agreed_seq`` over AskDigests; the rebuild) after a primary lost a shipped tail.
Real journals, sources, standbys and TCP (``_serve``, ``running``), the script's functions on
TOML profiles; promote's new supervisor is not started; the session's PostgreSQL.

Verified right: demote of a standby ahead of a primary sequencing meanwhile cuts where the
journals part; against a promoted primary that lost a tail, its standby and the fenced old
primary are cut right; promote after such a demote begins a new epoch; demote twice cuts
once; a running instance, or the old one named as the new, is refused, nothing changed; the
derived state is set aside and the standby then holds the primary's journal, state and
gateway files; an external database holding the cut rows is refused by its writer later.
Faults found, each fixed (its test failed before): the rebuild followed a failed-over primary
older than an epoch its journal was told of (``known`` now counts, and is kept);
``agreed_seq`` asked the same question for ever when the primary came back shorter between
questions (a probe it does not answer now disagrees); promote of a demoted instance not yet
started read the old primary's status file and did nothing (demote sets it aside); status
called a diverged standby a lagging one (it names the seq and ``demote`` now).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config import load_profile
from config.schema import DatabaseConfig, ReplicationConfig, RingexConfig
from procs.common.epochs import Epochs, EpochsError
from procs.common.journal import JournalReader
from procs.common.journal_writer import JournalWriter, cut_after
from procs.common.snapshots import SnapshotStore
from procs.common.topology import (
    gateway_root,
    journal_dir,
    market_state_path,
    postgres_dir,
    snapshot_dir,
)
from procs.core.recovery import recover
from procs.dbwriter.writer import DbWriter, WriterOptions
from procs.replica import rebuild as rebuild_module
from procs.replica.rebuild import agreed_seq, rebuild
from procs.replica.standby import Standby, StandbyRefusedError
from procs.replica.wire import Digests, EpochHistory
from procs.supervisor import promotion_checks
from procs.supervisor.promotion import begin_epoch, promoted_path
from shm.liveness import process_start
from tests.e2e.test_standby import profile
from tests.free_ports import free_port
from tests.scripts_loader import load_script
from tests.unit.dbwriter.journal_gen import build, make_cfg, write_all
from tests.unit.replica.test_review33_failover import _no_supervisor, _own
from tests.unit.replica.test_review42_replica_fsync import running
from tests.unit.replica.test_review_replica_bugs import append, pair, until
from tests.unit.replica.test_source import CODEC, commands
from tests.unit.router.test_review42_pipelined import journaled
from tests.unit.supervisor.test_review_ops_bugs import dead_pid, write, write_status
from tests.unit.test_review42_reread2 import _serve

failover = load_script("failover", "review42ops")


def _profile(tmp_path: Path, name: str, extra: str = "") -> Path:
    return profile(tmp_path / f"{name}.toml", f"{name}{os.getpid()}", tmp_path / "var", extra)


def _follower(tmp_path: Path, port: int, name: str = "s") -> tuple[Path, RingexConfig]:
    path = _profile(tmp_path, name, f'[replication]\nprimary = "127.0.0.1:{port}"\n')
    return path, load_profile(str(path))


def _demote(primary: RingexConfig, old_path: Path, new: str = "") -> int:
    address = f"127.0.0.1:{primary.replication.listen_port}"
    code = asyncio.run(_serve(primary, lambda: failover.demote(str(old_path), new, address)))
    assert isinstance(code, int)
    return code


def _follow_to_end(primary: RingexConfig, standby: RingexConfig, close: bool = False) -> int:
    """Run the standby until it holds the primary's journal; its next seq."""
    last = max(journaled(primary))

    async def scenario() -> int:
        async with running(primary, standby) as (_, follower, following, _):
            await until(lambda: following.done() or follower.next_seq == last + 1, 10.0)
            if following.done():
                following.result()
            if close:
                follower.close()  # main()'s finally: the snapshots of its hot state
            return follower.next_seq

    return asyncio.run(scenario())


def _ahead(tmp_path: Path) -> tuple[RingexConfig, Path, RingexConfig]:
    """A primary restarted after losing 4..6 (1..3, then other commands 4..5) and its stopped
    standby holding the lost 1..6."""
    primary, _ = pair(tmp_path)
    append(primary, 1, 3)
    write(primary, _own(range(4, 6)))
    old_path, old = _follower(tmp_path, primary.replication.listen_port)
    append(old, 1, 6)
    return primary, old_path, old


# -- (1) the primary up and sequencing while demote asks it -----------------------------------


def test_demote_while_the_primary_takes_commands_cuts_where_the_journals_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, _ = pair(tmp_path)
    append(primary, 1, 3)
    write(primary, _own(range(4, 400)))  # restarted after losing 4..600: its own from 4
    old_path, old = _follower(tmp_path, primary.replication.listen_port)
    append(old, 1, 600)
    seen: list[int] = []  # the primary's last seq at each question
    real = rebuild_module._ask_digests

    async def counted(host: str, port: int, seqs: list[int], tls: Any = None) -> Digests:
        answer = await real(host, port, seqs, tls)
        seen.append(answer.last_seq)
        await asyncio.sleep(0.02)  # the router goes on between questions
        return answer

    monkeypatch.setattr(rebuild_module, "_ask_digests", counted)
    stop, address = threading.Event(), f"127.0.0.1:{primary.replication.listen_port}"

    def router() -> None:  # the live router: 20 more commands every 2 ms
        with JournalWriter(
            journal_dir(primary), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
        ) as w:
            while not stop.is_set():
                n = w.next_seq
                w.append(n, b"".join(map(CODEC.encode_slot, _own(range(n, n + 20)))), 20)
                time.sleep(0.002)

    def work() -> int:
        thread = threading.Thread(target=router)
        thread.start()
        try:
            return int(failover.demote(str(old_path), "", address))
        finally:
            stop.set()
            thread.join()

    assert asyncio.run(_serve(primary, work)) == 0
    assert len(seen) >= 3 and seen[-1] > seen[0], seen  # it grew under the questions
    assert max(journaled(old)) == 3
    standby = load_profile(str(old_path.with_suffix(".standby.toml")))
    assert _follow_to_end(primary, standby) == max(journaled(primary)) + 1
    assert journaled(standby) == journaled(primary)


# -- (2) a promoted primary that lost a tail ----------------------------------------------------


@pytest.mark.parametrize(("who", "kept"), [("its standby", 9), ("the fenced old primary", 6)])
def test_demote_against_a_promoted_primary_that_lost_a_tail(
    tmp_path: Path, who: str, kept: int
) -> None:
    """B was promoted at epoch 2 from seq 7, shipped 7..12 to its standby, lost 10..12 in a
    host crash and sequenced other commands at 10..12. Its standby (B's epochs) keeps 1..9;
    the old primary A (fenced by 2, its own 7..8 after B's epoch began) keeps 1..6."""
    primary, _ = pair(tmp_path)
    append(primary, 1, 9)
    write(primary, _own(range(10, 13)))
    Epochs().promoted(2, 7).save(journal_dir(primary))
    old_path, old = _follower(tmp_path, primary.replication.listen_port)
    if who == "its standby":
        append(old, 1, 12)
        Epochs().promoted(2, 7).save(journal_dir(old))
    else:
        write(old, commands(1, 6) + _own(range(7, 9)))
        Epochs().fenced(2, "B").save(journal_dir(old))
    assert _demote(primary, old_path) == 0
    assert max(journaled(old)) == kept
    assert Epochs.load(journal_dir(old)) == Epochs(((1, 1), (2, 7)))
    standby = load_profile(str(old_path.with_suffix(".standby.toml")))
    assert _follow_to_end(primary, standby) == 13
    assert journaled(standby) == journaled(primary)


def test_rebuild_refuses_a_primary_older_than_an_epoch_the_journal_was_told_of(
    tmp_path: Path,
) -> None:
    stale, secondary = pair(tmp_path)  # D: epoch 1, failed over, unreachable when fenced
    append(stale, 1, 8)
    append(secondary, 1, 5)
    Epochs(((1, 1),), known=2).save(journal_dir(secondary))  # told of B's epoch 2 (at 100)
    standby = Standby(secondary)
    try:  # the standby itself refuses D
        history = EpochHistory([(1, 1)], CODEC.journal_schema_id, CODEC.slot_size)
        with pytest.raises(StandbyRefusedError, match="older than this journal's 2"):
            standby.follow_epochs(history)
    finally:
        standby.journal.close()
    with pytest.raises(EpochsError):
        rebuild(secondary, Epochs.load(journal_dir(stale)))


def test_agreed_seq_ends_when_the_primary_restarts_shorter_between_questions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, secondary = pair(tmp_path)
    append(primary, 1, 40)
    append(secondary, 1, 60)
    asked: list[list[int]] = []
    real = rebuild_module._ask_digests

    async def shrinking(host: str, port: int, seqs: list[int], tls: Any = None) -> Digests:
        asked.append(seqs)
        if len(asked) > 30:
            raise RuntimeError(f"{len(asked)} questions, last {seqs[:3]}..: no end")
        answer = await real(host, port, seqs, tls)
        if len(asked) == 1:  # another crash: the primary comes back with 1..20
            cut_after(
                journal_dir(primary), 20, tmp_path / "lost",
                slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id,
            )  # fmt: skip
        return answer

    monkeypatch.setattr(rebuild_module, "_ask_digests", shrinking)
    port = primary.replication.listen_port
    agreed = asyncio.run(_serve(primary, lambda: agreed_seq(secondary, "127.0.0.1", port)))
    assert agreed == 20 and len(asked) <= 10


# -- (3) promote after a demote that cut ------------------------------------------------------


def _demoted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, list[object]]:
    """B promoted at epoch 2 from 7 (1..6, own 7..9); A, its old primary killed by the fence
    (1..8, fenced; its status file as a SIGKILLed primary's), demoted: cut to 6. Returns B's
    profile, A's written standby profile, and the supervisors promote would start."""
    port = free_port()
    b_path = _profile(tmp_path, "b", f"[replication]\nlisten_port = {port}\n")
    b = load_profile(str(b_path))
    write(b, commands(1, 6) + _own(range(7, 10)))
    Epochs().promoted(2, 7).save(journal_dir(b))
    a_path = _profile(tmp_path, "a")
    a = load_profile(str(a_path))
    write(a, commands(1, 8))
    Epochs().fenced(2, b.instance).save(journal_dir(a))
    write_status(a, {"role": "primary", "state": "running", "supervisor_pid": dead_pid()})
    assert _demote(b, a_path) == 0 and promotion_checks.journal_last(a) == 6
    started = _no_supervisor(monkeypatch)  # patches ``subprocess.Popen``: ours too
    monkeypatch.setattr(failover, "await_promoted", lambda *args, **kwargs: 0)
    return b_path, a_path.with_suffix(".standby.toml"), started


def test_promote_of_a_demoted_instance_not_yet_started_as_a_standby(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    b_path, a_standby, started = _demoted(tmp_path, monkeypatch)
    code = failover.promote(str(b_path), str(a_standby))
    out = capsys.readouterr().out
    assert (code, started) != (0, []) and "promoted already" not in out, out


def test_promote_after_a_demote_that_cut_starts_a_new_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b_path, a_standby, started = _demoted(tmp_path, monkeypatch)
    a = load_profile(str(a_standby))
    write_status(a, {"role": "standby", "state": "stopped"})
    assert failover.promote(str(b_path), str(a_standby)) == 0 and len(started) == 1
    fence = Epochs.load(journal_dir(load_profile(str(b_path)))).fence
    assert fence is not None and fence.epoch == 3
    promoted = load_profile(str(promoted_path(str(a_standby))))  # a.promoted.toml (review 310)
    assert begin_epoch(promoted, 3) == 7
    assert Epochs.load(journal_dir(promoted)).history == ((1, 1), (2, 7), (3, 7))


# -- (4) status after a lost tail --------------------------------------------------------------


def test_status_of_a_standby_diverged_by_a_lost_tail_says_to_demote_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)
    write(primary, _own(range(4, 11)))
    append(secondary, 1, 6)
    assert failover.status(primary, secondary) == 1
    out = capsys.readouterr().out
    assert "demote" in out, out


# -- (5) demote twice, of a running instance, against itself ------------------------------------


def test_demote_run_twice_cuts_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    primary, old_path, old = _ahead(tmp_path)
    assert _demote(primary, old_path) == 0
    first = capsys.readouterr().out
    assert "3 entries the primary's history does not hold" in first, first
    written = old_path.with_suffix(".standby.toml").read_text()
    asides = list((Path(old.var_dir) / old.instance / "demoted").glob("*/journal"))
    assert _demote(primary, old_path) == 0
    second = capsys.readouterr().out
    assert "kept up to seq 3" in second and "were cut" not in second and "WARNING" not in second
    assert max(journaled(old)) == 3 and Epochs.load(journal_dir(old)) == Epochs()
    assert old_path.with_suffix(".standby.toml").read_text() == written
    aside = JournalReader(asides[0], slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id)
    assert [s for s, _ in aside.entries(4)] == [4, 5, 6]  # the first cut, kept whole


def test_demote_refuses_a_running_instance_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    primary, old_path, old = _ahead(tmp_path)
    me = os.getpid()
    write_status(old, {"supervisor_pid": me, "supervisor_started": process_start(me),
                       "state": "running", "role": "standby", "processes": []})  # fmt: skip
    assert _demote(primary, old_path) == 1 and "still runs" in capsys.readouterr().err
    write_status(old, {"state": "stopped"})
    by_hand = Standby(old)  # started by hand: no status file names it, its journal held
    try:
        assert _demote(primary, old_path) == 1
    finally:
        by_hand.journal.close()
    assert "held by a writer" in capsys.readouterr().err
    assert max(journaled(old)) == 6 and not old_path.with_suffix(".standby.toml").exists()


def test_demote_naming_the_old_instance_as_the_new_lifts_no_fence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--new`` the old profile itself: nothing listens (refused); its own source left running
    (a systemd unit) answers with its own epochs, older than its fence (refused)."""
    port = free_port()
    a_path = _profile(tmp_path, "a", f"[replication]\nlisten_port = {port}\n")
    a = load_profile(str(a_path))
    write(a, commands(1, 8))
    Epochs().fenced(2, "b").save(journal_dir(a))
    assert failover.demote(str(a_path), str(a_path), "") == 1
    assert "Errno 111" in capsys.readouterr().err  # ECONNREFUSED: nothing listens
    assert asyncio.run(_serve(a, lambda: failover.demote(str(a_path), str(a_path), ""))) == 1
    assert "older than this journal's 2" in capsys.readouterr().err
    epochs = Epochs.load(journal_dir(a))
    assert epochs.fence is not None and promotion_checks.journal_last(a) == 8


# -- (6)/(7) what the cut sets aside, and the standby after it --------------------------------


def test_the_cut_sets_derived_state_aside_and_the_standby_then_holds_the_primarys(
    tmp_path: Path,
) -> None:
    primary, _ = pair(tmp_path)
    old_path, old = _follower(tmp_path, primary.replication.listen_port)
    append(primary, 1, 2)
    assert _follow_to_end(primary, old, close=True) == 3  # exchange snapshot at 2
    append(primary, 3, 4)
    assert _follow_to_end(primary, old, close=True) == 7  # ... and at 6
    cut_after(journal_dir(primary), 3, tmp_path / "lost",
              slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id)  # fmt: skip
    write(primary, _own(range(4, 6)))  # the primary's host lost 4..6, then 4..5 anew
    (gateway_root(primary)).mkdir(parents=True)
    (gateway_root(primary) / "users.json").write_text('{"alice": 1}')
    stale = gateway_root(old) / "g1" / "orders.log"  # orders of the lost history
    stale.parent.mkdir(parents=True)
    stale.write_text("4|ORD-4\n")
    (gateway_root(old) / "users.json").write_text('{"stale": 1}')
    market_state_path(old).parent.mkdir(parents=True)
    market_state_path(old).write_bytes(b"state at 6")
    SnapshotStore(snapshot_dir(old, "dbwriter")).save(6, b"writer at 6")
    (postgres_dir(old) / "data").mkdir(parents=True)
    exchange = SnapshotStore(snapshot_dir(old, "exchange"))
    assert [int(p.stem) for p in exchange._paths()] == [2, 6]

    assert _demote(primary, old_path) == 0
    assert [int(p.stem) for p in exchange._paths()] == [2]
    assert not list(snapshot_dir(old, "dbwriter").glob("*.snap"))
    assert not market_state_path(old).exists() and not postgres_dir(old).exists()
    assert not gateway_root(old).exists()

    standby = load_profile(str(old_path.with_suffix(".standby.toml")))
    assert _follow_to_end(primary, standby, close=True) == 6
    assert journaled(standby) == journaled(primary)
    mine, theirs = recover(standby), recover(primary, use_snapshot=False)
    assert mine.snapshot_seq == 5 and mine.state_hashes() == theirs.state_hashes()
    files = sorted(p.relative_to(gateway_root(standby)) for p in gateway_root(standby).rglob("*"))
    assert files == [Path("users.json")]
    assert (gateway_root(standby) / "users.json").read_text() == '{"alice": 1}'
    promoted = msgspec.structs.replace(standby, replication=ReplicationConfig())
    assert begin_epoch(promoted, 2) == 6


def test_an_external_database_holding_the_cut_rows_is_flagged_then_refused(
    tmp_path: Path, dsn: str
) -> None:
    port = free_port()
    primary = msgspec.structs.replace(
        make_cfg(tmp_path / "p", "rp"), replication=ReplicationConfig(listen_port=port)
    )
    old = msgspec.structs.replace(
        make_cfg(tmp_path / "s", "rs"),
        replication=ReplicationConfig(primary=f"127.0.0.1:{port}"),
        database=DatabaseConfig(dsn=dsn, batch_rows=300, batch_ms=50),
    )
    build(primary, 150, seed=2).close()  # shares its first 24 entries with seed 1's
    build(old, 120, seed=1).close()  # the standby's, ahead: the primary lost 25..144
    assert write_all(old, dsn) == 144  # the database holds rows of 25..144
    agreed = asyncio.run(_serve(primary, lambda: agreed_seq(old, "127.0.0.1", port)))
    assert isinstance(agreed, int)
    done = rebuild(old, Epochs.load(journal_dir(primary)), agreed)
    assert (done.kept_seq, done.cut) == (24, 120)
    assert any(dsn in w for w in done.warnings), done.warnings
    assert _follow_to_end(primary, old) == 175
    writer = DbWriter(old, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))
    try:  # promoted later: its writer must not go on atop rows of the lost history
        with pytest.raises(RuntimeError):
            writer.run(to_end=True)
    finally:
        writer.close()


def test_a_new_address_that_is_no_address_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fault (a review, 2026-12-03): ``demote --new-address 127.0.0.1:99999`` ended in a
    traceback (connect's OverflowError), and ``foo`` in "invalid literal for int()", naming
    neither the option nor the form: each is refused, exit 2, naming both."""
    old_path = _profile(tmp_path, "old")
    for address, said in (
        ("127.0.0.1:99999", ": port 99999 is not in 1..65535"),
        ("[::1]:70000", ": port 70000 is not in 1..65535"),
        ("foo", " is not host:port (an IPv6 host in brackets: [::1]:9900)"),
    ):
        assert failover.demote(str(old_path), "", address) == 2
        assert capsys.readouterr().err == f"--new-address {address!r}{said}\n"
