"""Review 108: README.md's "## Hot standby and failover" against the code, part 2 of 2.

Here: ``scripts/failover.py`` in-process on TOML profiles (promote's refusals and both paths,
status, fence, demote, ``rebuild``), the source and the standby as small objects over local
TCP. Part 1: schema, constants, sync gate, epochs, commands. A plain test is a claim found
right; a strict xfail asserts the README where the code differs. Found, and fixed on the code
side: "run again on an instance it already promoted, it does nothing", but ``failover.promote``
rewrote ``<standby>.promoted.toml`` before it looked whether it was promoted (an edit lost).
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import json
import logging
import os
import re
import signal
import ssl
import tomllib
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from config import load_profile
from config.schema import DatabaseConfig, JournalConfig, ReplicationConfig, RingexConfig
from procs.common.epochs import Epochs
from procs.common.journal import JournalError, JournalReader
from procs.common.records import Transfer
from procs.common.replication_ack import DEGRADED, DEGRADED_TOTAL, AckBlock, ack_dir
from procs.common.run_files import read_json, run_dir
from procs.common.snapshots import SnapshotStore
from procs.common.topology import gateway_root, journal_dir, market_state_path, snapshot_dir
from procs.replica import cluster
from procs.replica import main as replica_main
from procs.replica import rebuild as rebuild_module
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.replica.wire import (
    GENESIS,
    Ack,
    AskDigests,
    Digests,
    EpochHistory,
    Heartbeat,
    Hello,
    Message,
    Refused,
    receive,
    send,
)
from procs.router.main import _open_journal
from procs.supervisor import promotion, promotion_checks
from shm.liveness import process_start
from tests.e2e.test_standby import profile
from tests.readme_text import claim
from tests.scripts_loader import load_script
from tests.unit.gateway.test_tls import CERT, KEY
from tests.unit.replica.test_review33_failover import CODEC_RECORDS, _acked_pair, _ask_source, _own
from tests.unit.replica.test_review_replica_bugs import append, pair
from tests.unit.replica.test_source import CODEC, commands
from tests.unit.replica.test_standby import COMMANDS, frame
from tests.unit.supervisor.test_review_ops_bugs import write, write_status

failover = load_script("failover", "review108b")
SCHEMA = CODEC.journal_schema_id
Capsys = pytest.CaptureFixture[str]


def _pair(tmp_path: Path, instance: str, standby_extra: str = "") -> tuple[Path, Path]:
    """A primary's and its standby's profiles on one host (both journals readable)."""
    var, standby = tmp_path / "var", '[replication]\nprimary = "127.0.0.1:1"\n' + standby_extra
    primary = profile(tmp_path / "primary.toml", f"{instance}p", var, "")
    return primary, profile(tmp_path / "standby.toml", f"{instance}s", var, standby)


def _loaded(*paths: Path) -> list[RingexConfig]:
    return [load_profile(str(path)) for path in paths]


def _held_by_me(cfg: RingexConfig, *, prestarted: bool = False, role: str = "standby") -> None:
    """A status file naming this process as ``cfg``'s running supervisor."""
    me = os.getpid()
    write_status(cfg, {
        "supervisor_pid": me, "supervisor_started": process_start(me), "role": role,
        "state": "running", "prestarted": prestarted, "processes": [],
    })  # fmt: skip


def _recording_kill(events: list[object]) -> Callable[[int, int], None]:
    """``os.kill`` recording each signal instead (signal 0, ``pid_alive``'s probe, is real)."""
    kill = os.kill
    return lambda pid, sig: events.append(("kill", pid, sig)) if sig else kill(pid, sig)


def _record_promote(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record in order what ``promote`` does: the supervisor it starts (none is), each fence
    and request file (done for real), each signal (none sent), its word on that stdin."""
    events: list[object] = []
    fence, request = failover.fence, promotion.request

    class Child:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            events.append("popen")
            self.pid, self.stdin = (
                0,
                types.SimpleNamespace(
                    write=lambda data: events.append(("stdin", data)),
                    close=lambda: events.append("stdin closed"),
                ),
            )

    def fenced(cfg: RingexConfig, epoch: int, by: str) -> None:
        events.append(("fence", cfg.instance, epoch))
        fence(cfg, epoch, by)

    def requested(cfg: RingexConfig, pid: int, epoch: int) -> None:
        events.append(("request", pid, epoch))
        request(cfg, pid, epoch)

    monkeypatch.setattr(failover.subprocess, "Popen", Child)
    monkeypatch.setattr(failover, "fence", fenced)
    monkeypatch.setattr(failover.promotion, "request", requested)
    monkeypatch.setattr(failover.os, "kill", _recording_kill(events))
    monkeypatch.setattr(failover, "await_promoted", lambda *args, **kwargs: 0)
    return events


def test_promote_with_prestart_fences_then_asks_the_held_supervisor(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fence, request file, SIGUSR1, in epoch 5 (primary at 3, standby told of 4)."""
    claim("then it fences the old primary")
    claim("then asks the standby's supervisor to promote (`procs/supervisor/promotion.py`: a")
    claim("request file naming the new epoch, then SIGUSR1)")
    claim("`promote` picks one past every epoch, fence and known epoch either journal has")
    primary_path, standby_path = _pair(tmp_path, instance)
    primary, standby = _loaded(primary_path, standby_path)
    write(primary, commands(1, 3))
    write(standby, commands(1, 3))
    Epochs(((1, 1), (3, 2))).save(journal_dir(primary))
    Epochs(known=4).save(journal_dir(standby))
    _held_by_me(standby, prestarted=True)
    events = _record_promote(monkeypatch)
    assert failover.promote(str(primary_path), str(standby_path)) == 0
    me = os.getpid()
    usr1 = ("kill", me, signal.SIGUSR1)
    assert events == [("fence", primary.instance, 5), ("request", me, 5), usr1]
    asked = read_json(run_dir(standby) / promotion.REQUEST)
    assert asked is not None and asked.items() >= {"pid": me, "epoch": 5}.items()
    fence = Epochs.load(journal_dir(primary)).fence
    assert fence is not None and fence.epoch == 5


def test_promote_without_prestart_starts_a_supervisor_then_fences_then_stops_the_standby(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    """New supervisor, fence, its go word, SIGTERM to the standby; each step timed."""
    claim("With `prestart = false`, `promote` stops the standby instead and starts a new")
    claim("whose processes import while the fence and the standby's stop happen")
    claim("Either way it prints each step's time")
    primary_path, standby_path = _pair(tmp_path, instance, "prestart = false\n")
    primary, standby = _loaded(primary_path, standby_path)
    _held_by_me(standby)
    events = _record_promote(monkeypatch)
    assert failover.promote(str(primary_path), str(standby_path)) == 0
    assert events == [
        "popen", ("fence", primary.instance, 2), ("stdin", failover.GO), "stdin closed",
        ("kill", os.getpid(), signal.SIGTERM),
    ]  # fmt: skip
    steps = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["s", "old", "primary", "fenced"] in [step[1:] for step in steps]


def test_promote_refuses_before_any_fence(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    """Refused unfenced: one instance twice, other units (both forced), fees unless forced."""
    claim("and the same instance given as both (`--force` promotes anyway, but never the last)")
    claim("a standby of other units, whatever `--force` says")
    claim("a standby whose promoted router would refuse its configured fees and not start")
    claim("so it costs that recovery's time; `--force` skips it)")
    assert "recover(standby)" in inspect.getsource(failover.fees_refused)
    primary_path, standby_path = _pair(tmp_path, instance)
    (again := tmp_path / "again.toml").write_text(primary_path.read_text())
    events, asked = _record_promote(monkeypatch), []

    def refused(cfg: RingexConfig) -> str:
        asked.append(cfg.instance)
        return "the fee margin of BTC-USD changed while buys rest"

    monkeypatch.setattr(failover, "fees_refused", refused)
    assert failover.promote(str(primary_path), str(again), force=True) == 1
    assert "both name instance" in capsys.readouterr().err
    assert failover.promote(str(primary_path), str(standby_path)) == 1
    assert events == [] and len(asked) == 1
    assert failover.promote(str(primary_path), str(standby_path), force=True) == 0
    assert len(asked) == 1 and events[:2] == ["popen", ("fence", f"{instance}p", 2)]
    (standby,) = _loaded(standby_path)
    journal_dir(standby).mkdir(parents=True)
    (journal_dir(standby) / "units.json").write_text("{}")
    del events[:]
    assert failover.promote(str(primary_path), str(standby_path), force=True) == 1
    assert events == [] and "cannot be promoted" in capsys.readouterr().err


def test_promote_and_status_catch_a_standby_ahead_of_a_resequenced_primary(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    """``diverged``: a standby at 6, the primary lost 4..6, made 4..5 anew; ``status`` names 5."""
    claim("(the first entry, the standby's last and the last both hold are compared: a standby")
    claim("ahead of a primary that lost a shipped tail in a host crash and then sequenced other")
    claim("where the standby holds another history rather than lagging, it names the seq and says")
    primary_path, standby_path = _pair(tmp_path, instance)
    primary, standby = _loaded(primary_path, standby_path)
    write(primary, commands(1, 3) + _own(range(4, 6)))
    write(standby, commands(1, 6))
    assert failover.diverged(primary, standby) == 5
    events = _record_promote(monkeypatch)
    assert failover.promote(str(primary_path), str(standby_path)) == 1
    assert events == [] and "at seq 5" in capsys.readouterr().err
    assert failover.status(primary, standby) == 1
    out = capsys.readouterr().out
    assert "histories differ at seq 5" in out and "failover.py demote" in out


def test_status_compares_seq_hash_epoch_and_fence(
    tmp_path: Path, instance: str, capsys: Capsys
) -> None:
    """``status``: seqs, epochs, fence, ``replication.json``, prestart, hashes, lag."""
    claim("`status` compares both journals (last seq, history hash, epoch and fence) and prints")
    claim("the primary's replication state and whether the standby holds its promotion prestarted")
    primary, standby = _loaded(*_pair(tmp_path, instance))
    write(primary, commands(1, 4))
    write(standby, commands(1, 4))
    Epochs().fenced(2, "elsewhere").save(journal_dir(primary))
    _held_by_me(standby, prestarted=True)
    me = os.getpid()
    run_dir(primary).mkdir(parents=True)
    (run_dir(primary) / "replication.json").write_text(json.dumps({
        "pid": me, "started": process_start(me), "mode": "sync", "acked_seq": 4,
        "standbys_connected": 1, "degraded": False, "degraded_total": 0,
    }))  # fmt: skip
    assert failover.status(primary, standby) == 0
    out = capsys.readouterr().out
    assert "journal at seq 4, epoch 1 (since seq 1), FENCED by epoch 2" in out
    assert "replication sync: standby acknowledged seq 4, 1 connected, ok" in out
    assert "standby's promotion: prestarted (held)" in out and "histories agree" in out
    write(primary, commands(5, 1))
    assert failover.status(primary, standby) == 1 and "(lag 1)" in capsys.readouterr().out


def test_promote_refuses_a_fenced_standby_or_seqs_a_sync_primary_acknowledged(
    tmp_path: Path, instance: str
) -> None:
    """``unsafe``: acked past the standby (3), at 3 not, degraded past it, a fenced standby."""
    claim("(its journal fenced: an old primary, which only `demote` makes a standby again;")
    claim("in sync mode, where the primary's replication block is readable, seqs it says were")
    claim("acknowledged, by the standby or, once the router went on without it, to clients, past")
    _, standby_path, primary = _acked_pair(tmp_path, instance, journaled=6, acknowledged=5)
    (standby,) = _loaded(standby_path)
    assert "acknowledged seq 5 as durable" in failover.unsafe(primary, standby)
    block = AckBlock(ack_dir(primary.var_dir, primary.instance))
    block.acknowledged(3)
    assert failover.unsafe(primary, standby) == ""
    block.words[DEGRADED] = 1
    assert "degraded" in failover.unsafe(primary, standby)
    block.close()
    Epochs().fenced(2, "b").save(journal_dir(standby))
    why = failover.unsafe(primary, standby)
    assert "fenced by epoch 2" in why and "failover.py demote" in why


def test_promote_run_again_does_nothing(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    """Promoted already (running, or stopped since): no supervisor, fence nor epoch."""
    claim("run again on an instance it already promoted, it does nothing")
    primary_path, standby_path = _pair(tmp_path, instance)
    primary, standby = _loaded(primary_path, standby_path)
    events = _record_promote(monkeypatch)
    _held_by_me(standby, role="primary")
    assert failover.promote(str(primary_path), str(standby_path)) == 0
    write_status(standby, {"role": "primary", "state": "stopped", "supervisor_pid": 1})
    assert failover.promote(str(primary_path), str(standby_path)) == 0
    assert events == [] and capsys.readouterr().out.count("nothing done") == 2
    assert Epochs.load(journal_dir(primary)).fence is None
    assert Epochs.load(journal_dir(standby)).history == ((1, 1),)


def test_promote_run_again_leaves_the_promoted_config_alone(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``standby.promoted.toml``, edited since (its own ``listen_port``), stays as it is."""
    claim("run again on an instance it already promoted, it does nothing")
    primary_path, standby_path = _pair(tmp_path, instance)
    (standby,) = _loaded(standby_path)
    promoted = promotion.write_promoted_profile(str(standby_path))
    edited = promoted.read_text() + "listen_port = 9932\n"
    assert tomllib.loads(edited)["replication"]["listen_port"] == 9932
    promoted.write_text(edited)
    write_status(standby, {"role": "primary", "state": "stopped", "supervisor_pid": 1})
    _record_promote(monkeypatch)
    assert failover.promote(str(primary_path), str(standby_path)) == 0
    assert promoted.read_text() == edited


def test_fence_kills_only_while_the_supervisor_runs_and_marks_the_journal(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fence``: kills only a supervisor started when its status says; journal fenced."""
    claim("kills every process its status file names, only while that supervisor runs, its")
    claim("start time checked, and marks its journal fenced")
    (primary,) = _loaded(_pair(tmp_path, instance)[0])
    write(primary, commands(1, 2))
    killed: list[object] = []
    monkeypatch.setattr(failover.os, "kill", _recording_kill(killed))
    me = os.getpid()
    doc = {"state": "running", "supervisor_pid": me, "supervisor_started": -1}
    doc["processes"] = [{"pid": me}]
    write_status(primary, doc)
    failover.fence(primary, 2, "s")
    fence = Epochs.load(journal_dir(primary)).fence
    assert killed == [] and fence is not None and (fence.epoch, fence.by) == (2, "s")
    write_status(primary, doc | {"supervisor_started": process_start(me)})
    failover.fence(primary, 2, "s")
    assert killed == [("kill", me, signal.SIGKILL)] * 2


def test_demote_rebuilds_the_old_primary_as_a_standby(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    """``demote``: epochs asked (over the link's TLS), the tail past epoch 2's seq 7 cut
    into ``demoted/<time>/journal``, derived state and the status file set aside, fence
    lifted, the promoted instance's id, ``primary.standby.toml``; no hashes: epochs cut."""
    claim("`demote` rebuilds the stopped old primary as the promoted instance's standby: it asks")
    claim("kept as a journal of its own under `var/<instance>/demoted/<time>/journal` for the")
    claim(
        "sets aside the snapshots, gateway state, market data state and the old run's status file"
    )
    claim("lifts the fence and writes `primary.standby.toml`")
    claim("`demote` gives the old primary the promoted instance's, asked with its epochs")
    claim("epochs alone then decide the cut")
    tls = f'[replication]\ntls_cert = "{CERT}"\ntls_key = "{KEY}"\ntls_ca = "{CERT}"\n'
    old_path = profile(tmp_path / "primary.toml", f"{instance}a", tmp_path / "var", tls)
    (old,) = _loaded(old_path)
    write(old, commands(1, 8))
    Epochs().fenced(2, "b").save(journal_dir(old))
    SnapshotStore(snapshot_dir(old, "exchange")).save(8, b"covers 7..8")
    for path in (gateway_root(old) / "users.json", market_state_path(old)):
        path.parent.mkdir(parents=True)
        path.write_text("{}")
    write_status(old, {"role": "primary", "state": "stopped", "supervisor_pid": 1})
    asked: list[object] = []

    def ask(host: str, port: int, timeout_s: float = 10, tls: Any = None) -> tuple[Epochs, str]:
        asked.append(tls)
        return Epochs(((1, 1), (2, 7))), "c" * 32

    def agreed_seq(*args: object) -> int:
        raise JournalError("its first segments are archived and gone")

    monkeypatch.setattr(rebuild_module, "ask_primary", ask)
    monkeypatch.setattr(rebuild_module, "agreed_seq", agreed_seq)
    assert failover.demote(str(old_path), "", "127.0.0.1:9") == 0
    out = capsys.readouterr().out
    assert len(asked) == 1 and isinstance(asked[0], ssl.SSLContext)
    assert promotion_checks.journal_last(old) == 6
    (aside,) = (Path(old.var_dir) / old.instance / "demoted").iterdir()
    kept = JournalReader(
        aside / "journal", slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    assert kept.last_seq() == 8 and (aside / "run" / "status.json").exists()
    assert not (gateway_root(old) / "users.json").exists() and not market_state_path(old).exists()
    assert not list(snapshot_dir(old, "exchange").glob("*.snap"))
    assert not (run_dir(old) / "status.json").exists()
    assert Epochs.load(journal_dir(old)) == Epochs(((1, 1), (2, 7)))
    assert cluster.load(journal_dir(old)) == "c" * 32
    written = tomllib.loads((tmp_path / "primary.standby.toml").read_text())["replication"]
    assert (written["primary"], written["tls_ca"]) == ("127.0.0.1:9", CERT)
    assert "epochs alone cut it" in out and "ringex run --config" in out


def test_demote_asks_the_new_configs_port_and_refuses_a_running_old_primary(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    """Asks the new config's ``listen_port``; a running one refused; an external DB warned."""
    claim("over the replication port (`--new-address host:port` on two hosts)")
    claim("`demote` rebuilds the stopped old primary")
    old_path = profile(tmp_path / "primary.toml", f"{instance}a", tmp_path / "var", "")
    rep = '[replication]\nlisten_port = 9933\nlisten_host = "0.0.0.0"\n'
    new_path = profile(tmp_path / "s.promoted.toml", f"{instance}b", tmp_path / "var", rep)
    asked: list[tuple[str, int]] = []

    def ask(host: str, port: int, timeout_s: float = 10, tls: Any = None) -> tuple[Epochs, str]:
        asked.append((host, port))
        raise OSError("connection refused")

    monkeypatch.setattr(rebuild_module, "ask_primary", ask)
    assert failover.demote(str(old_path), str(new_path), "") == 1
    assert asked == [("127.0.0.1", 9933)]
    _held_by_me(load_profile(str(old_path)), role="primary")
    assert failover.demote(str(old_path), str(new_path), "") == 1
    assert "stop it first" in capsys.readouterr().err and len(asked) == 1
    claim("an external one is left to you, with a warning: empty it before this instance is")
    claim("promoted again, and its writer rebuilds it from the journal)")
    dsn = DatabaseConfig(dsn="postgresql://db.example/ringex")
    cfg = RingexConfig(instance="r108db", var_dir=str(tmp_path), database=dsn)
    append(cfg, 1, 8)
    done = rebuild_module.rebuild(cfg, Epochs(((1, 1), (2, 7))))
    assert (done.kept_seq, done.cut, done.removed) == (6, 2, [])
    assert any("empty it before this instance is promoted again" in w for w in done.warnings)


def test_the_sources_refusals(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Epoch 9 fences (word, journal), not of another id or records; ahead and forked: logged."""
    claim("a replication source that meets a standby of a newer epoch refuses it and fences its")
    claim("and one naming a large epoch fences the primary")
    claim("a standby of an unrelated instance pointed at a primary is refused for it before its")
    claim("epoch counts, as a peer of other records is")
    answer, word = _ask_source(tmp_path, Hello(1, GENESIS, 9, *CODEC_RECORDS))
    assert isinstance(answer, Refused) and "this primary is fenced" in answer.reason
    fence = Epochs.load(journal_dir(pair(tmp_path)[0])).fence  # the paths _ask_source used
    assert word == 9 and fence is not None and fence.epoch == 9
    answer, word = _ask_source(tmp_path / "o", Hello(1, GENESIS, 9, *CODEC_RECORDS, "f" * 32))
    assert isinstance(answer, Refused) and "another replicated history" in answer.reason
    answer, word2 = _ask_source(tmp_path / "records", Hello(1, GENESIS, 9, 0x1234, 64, 1))
    assert isinstance(answer, Refused) and "records" in answer.reason and word == word2 == 0
    claim("(`standby ... refused: standby is at seq N, the primary at M`, or `history differs`)")
    with caplog.at_level(logging.ERROR, logger="ringex.replica"):
        _ask_source(tmp_path / "ahead", Hello(10, GENESIS, 1, *CODEC_RECORDS))
        _ask_source(tmp_path / "other", Hello(3, GENESIS, 1, *CODEC_RECORDS))
    logged = " | ".join(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert re.search(r"standby .+? refused: standby is at seq 9, the primary at 3", logged)
    assert re.search(r"standby .+? refused: history differs", logged)


class _Writer:
    """What ``wire.send`` writes to."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


def test_the_source_answers_digests_makes_the_id_and_reports_degraded_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``_answer_operator`` locked, rests, keeps hashes; the id; degraded ``write_status``."""
    claim("The primary answers one such question at a time, rests as long after it, and keeps")
    claim("the hashes it made (the replication port is for the operators and the standby only)")
    primary, _ = pair(tmp_path)
    append(primary, 1, 3)
    source = ReplicationSource(primary)
    slept: list[tuple[bool, float]] = []

    async def sleep(seconds: float) -> None:
        slept.append((source._digesting.locked(), seconds))

    writer = _Writer()
    monkeypatch.setattr(asyncio, "sleep", sleep)
    asyncio.run(source._answer_operator(AskDigests([2, 3, 9]), cast(Any, writer)))
    monkeypatch.undo()
    claim("an id the first primary makes")
    claim('`replication.json` says `"degraded": true` (with a count)')
    assert len(cluster.load(journal_dir(primary))) == 32
    source.block.words[DEGRADED], source.block.words[DEGRADED_TOTAL] = 1, 2
    with caplog.at_level(logging.ERROR, logger="ringex.replica"):
        source.write_status()
    source.close()
    doc = json.loads((run_dir(primary) / "replication.json").read_text())
    assert (doc["degraded"], doc["degraded_total"]) == (True, 2)
    assert any("SYNC REPLICATION SUSPENDED" in r.getMessage() for r in caplog.records)
    answer = msgspec.msgpack.decode(bytes(writer.data[4:]), type=Digests)
    assert (answer.last_seq, len(answer.digests), set(source._digest_cache)) == (3, 2, {2, 3})
    assert len(slept) == 1 and slept[0][0] is True and slept[0][1] >= 0


def _standby_cfg(tmp_path: Path, **kwargs: Any) -> RingexConfig:
    rep = ReplicationConfig(primary="127.0.0.1:1")
    return RingexConfig(instance="rs", var_dir=str(tmp_path), replication=rep, **kwargs)


def test_a_standby_syncs_before_it_acknowledges_and_cuts_after_a_failed_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``persist`` fsyncs under "none", ``_follow`` acks then applies; a failed fsync cuts."""
    claim("makes every entry durable (fsync) before acknowledging it, then applies it")
    claim("A standby makes each entry durable before it acknowledges it, whatever its")
    claim("`journal.fsync` (`none` included), and cuts what a failed fsync did not cover")
    claim("A standby whose journal fsync fails cuts the entries that fsync did not make durable")
    claim("The router does not: its journal is read as it is written by the replication source")
    cfg = _standby_cfg(tmp_path, journal=JournalConfig(fsync="none"))
    standby = Standby(cfg)
    standby.receive_entries(frame(1, COMMANDS[:1]))
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    assert standby.persist(frame(2, COMMANDS[1:])) == 2
    assert synced and standby.state.last_seq == 1 and standby.journal.cut_on_failure
    standby.apply(frame(2, COMMANDS[1:]))
    assert standby.state.last_seq == 2
    follow = inspect.getsource(Standby._follow)
    persist, acked = follow.index("seq = self.persist(message)"), follow.index("_ack(writer, seq)")
    assert persist < acked < follow.index("self.apply(message)")

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError):
        standby.persist(frame(3, [Transfer(3, 6, 0, 0, 3, 7, 1, 5, 3)]))
    monkeypatch.undo()
    reader = JournalReader(journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=SCHEMA)
    assert reader.last_seq() == 2
    os.close(standby.journal._fd)
    router = _open_journal(RingexConfig(instance="rr", var_dir=str(tmp_path)), CODEC)
    assert router.cut_on_failure is False
    router.close()


def test_a_standby_takes_on_an_idle_primarys_epoch_and_id_and_answers_heartbeats(
    tmp_path: Path,
) -> None:
    """``_follow``: Hello, epoch 2 and the id kept, ``Ack(2)``; ``close``: snapshots, market."""
    claim("asks for what follows with the hash of its history")
    claim("The standby answers every heartbeat with an acknowledgement")
    claim("records its primary's newer epoch as soon as the primary has checked its history (an")
    claim("idle promoted primary too), before the entries of it")
    claim("that each standby takes on once its primary has checked its history")
    cfg = _standby_cfg(tmp_path)
    standby = Standby(cfg)
    standby.receive_entries(frame(1, COMMANDS))
    got: list[Message] = []

    async def primary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await receive(reader, silence_s=5))
        await send(writer, EpochHistory([(1, 1), (2, 3)], *CODEC_RECORDS, "c" * 32))
        await send(writer, Heartbeat())
        got.append(await receive(reader, silence_s=5))
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(primary, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        try:
            with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
                await standby._follow(reader, writer)
        finally:
            writer.close()
            server.close()

    asyncio.run(scenario())
    standby.close()
    hello, acked = got
    assert isinstance(hello, Hello) and (hello.next_seq, hello.digest) == (3, standby.digest)
    assert acked == Ack(2) and Epochs.load(journal_dir(cfg)).history == ((1, 1), (2, 3))
    assert cluster.load(journal_dir(cfg)) == "c" * 32
    claim("it stops the standby process (which writes snapshots of its hot state, so nothing")
    claim("and saves it at its stop, at the seq of its other snapshots")
    claim("(and the standby's `standby.json`)")
    status = json.loads((tmp_path / "rs" / "run" / "standby.json").read_text())
    assert status["last_seq"] == 2 and status["primary"] == "127.0.0.1:1"
    assert standby.market is not None and market_state_path(cfg).exists()
    again = Standby(cfg)
    again.close()
    assert (again.state.snapshot_seq, again.state.last_seq) == (2, 2)


def test_a_gap_an_older_primary_or_a_fenced_journal_stops_the_standby(tmp_path: Path) -> None:
    """``persist`` (a gap), ``follow_epochs`` (epoch 2 < 3), the process (fenced: exit 2)."""
    claim("A gap or a different history stops it with the reason.")
    claim("A standby refuses a primary of an older epoch")
    cfg = _standby_cfg(tmp_path)
    Epochs(((1, 1), (3, 1))).save(journal_dir(cfg))
    standby = Standby(cfg)
    with pytest.raises(StandbyRefusedError, match="gap: the primary sent seq 2, this standby"):
        standby.persist(frame(2, COMMANDS[1:]))
    with pytest.raises(StandbyRefusedError, match="older than this journal's 3"):
        standby.follow_epochs(EpochHistory([(1, 1), (2, 1)], *CODEC_RECORDS))
    standby.close()
    Epochs().fenced(4, "b").save(journal_dir(cfg))
    assert asyncio.run(replica_main._standby(cfg)) == 2
