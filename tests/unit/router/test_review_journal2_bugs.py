"""Bugs a second hostile review of the journal, snapshots, recovery and the operator commands
(``ringex replay``, ``ringex status``, ``ringex admin``) found. Each test fails today.

Found sound (no test): a crash at every byte offset of a batch of entries (cut short, or cut
and zero-filled as a delayed allocation leaves it) is a torn tail: repaired with one log line,
the writer continues at the first lost seq, the reader yields exactly the whole entries; a
segment header cannot be torn (written as ``.tmp``, fsynced, renamed, directory fsynced;
stale ``.tmp`` removed on open); a batch that rolls over mid-way fsyncs the sealed segment
before the next is created; a bad CRC followed by data, a partial entry or a bad CRC in a
sealed segment, a wrong seq and a seq gap are ``JournalCorruptError`` naming file and
offset; ``batch`` fsyncs before ``append`` returns, so nothing is routed before it is
durable; ``ringex replay`` takes no lock and reads a live journal's prefix; archiving moves
only segments wholly before the oldest snapshot any reader restarts from, never the last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

import procs.cli
from config import load_profile
from config.schema import RingexConfig
from procs.common.journal import HEADER_SIZE, EntryLayout, list_segments
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import AccountReply, NewOrder
from procs.common.result_codes import ResultCode
from procs.common.run_files import status_path
from procs.common.topology import (
    ADMIN_GATEWAY,
    ROUTER,
    gateway_commands,
    gateway_consumer,
    gateway_replies,
    journal_dir,
)
from procs.common.types import Side
from procs.core.recovery import recover, snapshot_store, write_snapshot
from procs.supervisor.main import Supervisor
from shm import Ring
from tests.unit.router import core_rig
from tests.unit.router.test_review_crash_points_bugs import Crash, crash_after, journaled
from tests.unit.router.test_router import Exchange, config, fund, order

CODEC = RecordCodec()
SLOT = CODEC.slot_size
ENTRY = EntryLayout(SLOT).size
TEN = HEADER_SIZE + 10 * ENTRY  # segment_bytes for 10 entries a segment


def _commands_journal(tmp_path: Path) -> tuple[RingexConfig, list[bytes]]:
    """An instance (core rig config under ``tmp_path``) and the slot images of 22 real
    commands (accounts, deposits, resting orders) in journal order, not yet written."""
    cfg = core_rig.exchange_config(var_dir=str(tmp_path), max_open=50)
    ex = core_rig.funded(cfg)
    for ref in range(10):
        order_ = core_rig.new_order(1 + ref % 3, core_rig.BUY, 9_000 + 5 * ref, 1, ref=100 + ref)
        core_rig.placed(ex, order_)
    return cfg, [CODEC.encode_slot(command) for command in ex.journal]


def _write_journal(cfg: RingexConfig, images: list[bytes]) -> None:
    with JournalWriter(
        journal_dir(cfg), slot_size=SLOT, schema_id=CODEC.journal_schema_id, segment_bytes=TEN
    ) as w:
        w.append(w.next_seq, b"".join(images), len(images))


def _run_cli(monkeypatch: pytest.MonkeyPatch, cfg: RingexConfig, argv: list[str]) -> int:
    """``ringex ARGV`` on the instance ``cfg`` (its profile loads as ``cfg``)."""
    with monkeypatch.context() as m:
        m.setattr(procs.cli, "load_profile", lambda _profile: cfg)
        return procs.cli.main(argv)


# -- snapshots that hide a batch the router reads again ---------------------------------------


def test_replay_snapshot_on_a_live_instance_makes_a_restart_reject_a_live_order(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ringex replay --snapshot`` is run against a live instance (it takes no lock; the
    issue asks that it work there). A router restarted after a crash between journaling a
    batch and committing its read of the gateway's ring reads that batch again; it knows
    the commands are done only from ``JournaledTail``, which ``recover`` fills with the
    commands it replays *after the newest snapshot* (procs/core/recovery.py ``recover``: the
    tail's docstring relies on snapshots being "taken after the commit"). The replay's
    snapshot is taken at whatever the journal holds (procs/cli.py ``_replay``), so it can
    cover a batch whose ring is not committed: the restart then recovers the order from the
    snapshot, does not know it, sequences it again and the gateway gets
    DUPLICATE_CLIENT_ORDER_ID for an order that rests on the book (the client is told
    150=8 while its money stays reserved and the order can trade).

    Expected: after the restart, no reply for client_ref 300 (as without the replay's
    snapshot). Actual: Rejected(DUPLICATE_CLIENT_ORDER_ID) for 300, which rests.
    """
    ex = Exchange(config(instance, tmp_path))
    try:
        fund(ex, 7, usd=10**9, btc=10**6)
        ex.replies_of(1)
        crash_after(ex.router, "_publish", monkeypatch)  # journaled and routed, not committed
        ex.gateways[1].publish_batch([order(300, 7, Side.BUY, 1000, 100)])
        with pytest.raises(Crash):
            for _ in range(5):
                ex.router.step(timeout_s=0.001)
        monkeypatch.undo()
        # the operator's replay runs while the router is down (or just before its crash)
        assert _run_cli(monkeypatch, ex.cfg, ["replay", "--snapshot", "--quiet"]) == 0
        ex.stop()
        ex.start()
        ex.pump()
        told = [r for r in ex.replies_of(1) if getattr(r, "client_ref", 0) == 300]
        refs = [c.client_ref for c in journaled(ex) if isinstance(c, NewOrder)]
        assert refs == [300]
        assert told == [], f"the live order 300 was answered {told} after the restart"
    finally:
        ex.stop()


def test_a_router_snapshot_while_replies_wait_makes_a_restart_reject_a_live_order(
    instance: str, tmp_path: Path
) -> None:
    """The router's own snapshots break the same rule. ``step`` commits only the gateway
    rings whose replies all went out (``_commit_answered``: a ring whose replies wait for
    room stays uncommitted, "so a restart reads those commands again"), then calls
    ``_maybe_snapshot`` (procs/router/main.py ``step``), which forks a snapshot of every
    journaled command, the uncommitted batch included. A restart (here a clean stop while
    gateway 1's reply ring is full, as the close's docstring allows: "the rest's commands
    are read again after a restart") recovers from that snapshot, so ``JournaledTail`` lacks
    the batch, and the accepted order 301 is decided again: DUPLICATE_CLIENT_ORDER_ID for a
    resting order. Without the snapshot (snapshot_every = 0) the restart answers only 302.

    Expected: after the restart, gateway 1 hears only 302's reject. Actual: 301 is rejected
    as a duplicate too, while it rests with its USD reserved.
    """
    base = config(instance, tmp_path)
    journal = msgspec.structs.replace(base.journal, snapshot_every=1, snapshot_every_s=0.0)
    ex = Exchange(msgspec.structs.replace(base, journal=journal))
    try:
        fund(ex, 7, usd=10**9, btc=10**6)
        assert ex.router.snapshot_done(30)
        ex.replies_of(1)
        # gateway 1 is slow: its reply ring is full
        filler = [AccountReply(0, 0, 1, 9, 10**9 + k, 7, 0, ResultCode.OK, 0) for k in range(64)]
        while ex.router.replies[1].try_publish_batch(filler):
            pass
        ex.gateways[1].publish_batch(
            [order(301, 7, Side.BUY, 1000, 100), order(302, 8, Side.BUY, 1000, 100)]
        )
        ex.router.step(timeout_s=0.001)  # 301 journaled and routed; 302's reject waits
        assert ex.router.pending_replies[1]
        assert ex.router.snapshot_done(30)
        ex.stop()
        while ex.replies_of(1):  # the gateway catches up
            pass
        ex.start()
        ex.pump()
        told = [(r.client_ref, r.code) for r in ex.replies_of(1)]  # type: ignore[attr-defined]
        refs = [c.client_ref for c in journaled(ex) if isinstance(c, NewOrder)]
        assert refs == [301]
        assert told == [(302, ResultCode.UNKNOWN_ACCOUNT)], told
    finally:
        ex.stop()


# -- durability: replay snapshots and the interval policy --------------------------------------


def test_replay_snapshot_of_a_live_journal_never_outruns_what_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``journal.fsync = "interval"`` (or "none") a live router's last entries are
    written but not yet fsynced. ``ringex replay --snapshot`` reads them (readers see the
    page cache) and writes a durable snapshot at that seq (procs/cli.py ``_replay`` ->
    ``write_snapshot``); the router's own snapshot job reads only through what it synced
    (``journal.sync()`` before the fork). A power loss then leaves the journal short of the
    snapshot, and every restart fails: "the newest exchange snapshot is at seq 22, past the
    journal's last entry 0". The replay could fsync the segments it read (any descriptor of
    the file will do) before it writes the snapshot.

    Expected: after the power loss, ``recover`` succeeds. Actual: ValueError.
    """
    cfg, images = _commands_journal(tmp_path)
    cfg = msgspec.structs.replace(
        cfg, journal=msgspec.structs.replace(cfg.journal, fsync="interval")
    )
    durable: dict[int, int] = {}  # inode -> the size its last fsync made durable
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        st = os.fstat(fd)
        durable[st.st_ino] = st.st_size

    monkeypatch.setattr(os, "fsync", fsync)
    live = JournalWriter(
        journal_dir(cfg), slot_size=SLOT, schema_id=CODEC.journal_schema_id, fsync="interval",
        fsync_interval_ms=60_000,
    )  # fmt: skip
    live.append(1, b"".join(images), len(images))
    assert live.durable_seq < len(images)  # written, not yet durable
    assert _run_cli(monkeypatch, cfg, ["replay", "--snapshot", "--quiet"]) == 0
    live.fsync = "none"  # the power goes: nothing more is synced
    live.close()
    monkeypatch.undo()
    for _first, path in list_segments(journal_dir(cfg)):  # what the disk kept
        with open(path, "r+b") as f:
            f.truncate(durable.get(path.stat().st_ino, 0))
    recovered = recover(cfg)  # today: ValueError, the snapshot is past the journal
    assert recovered.last_seq <= len(images)


def test_interval_policy_syncs_an_idle_router_within_the_interval(
    instance: str, tmp_path: Path
) -> None:
    """``fsync = "interval"`` promises that a crash loses at most ``fsync_interval_ms`` of
    commands; the writer syncs "on append and by maybe_sync() when the caller is idle". The
    router calls ``maybe_sync`` once per idle step, *before* ``_idle`` waits: with more
    than one trading gateway ``_idle`` polls for the whole ``timeout_s`` (0.05 s in
    ``run``), so the last batch before a pause stays unsynced for 50 ms whatever the
    interval (procs/router/main.py ``step``/``_idle``), 10x the default of 5 ms.

    Expected: after an idle step of 50 ms with a 10 ms interval, the last command appended
    is durable. Actual: ``durable_seq`` is still one behind.
    """
    base = config(instance, tmp_path)  # two trading gateways
    journal = msgspec.structs.replace(base.journal, fsync="interval", fsync_interval_ms=10)
    ex = Exchange(msgspec.structs.replace(base, journal=journal))
    try:
        fund(ex, 7, usd=10**9, btc=0)
        time.sleep(0.05)
        writer = ex.router.journal
        ex.gateways[1].publish(order(1, 7, Side.BUY, 900, 10))
        assert ex.router.step(timeout_s=0.001)  # past the interval: synced on append
        ex.gateways[1].publish(order(2, 7, Side.BUY, 901, 10))
        assert ex.router.step(timeout_s=0.001)  # within it: written only
        last = writer.next_seq - 1
        assert writer.durable_seq < last, "precondition: appended within the interval"
        started = time.monotonic()
        assert ex.router.step() == 0  # idle, as ``run`` steps it
        idle_s = time.monotonic() - started
        # (fixed: the idle wait now ends when the sync is due, and the sync follows it)
        assert writer.durable_seq == last, (
            f"{idle_s * 1000:.0f} ms idle with fsync_interval_ms = 10, and seq {last} is "
            f"still not durable (durable_seq {writer.durable_seq})"
        )
    finally:
        ex.stop()


# -- corrupt snapshots ------------------------------------------------------------------------


def _two_snapshots(tmp_path: Path) -> tuple[RingexConfig, Path, dict[str, str]]:
    """A journal of 22 commands with exchange snapshots at 5 and 22; returns the config,
    the newest snapshot's path and the state hashes at 22."""
    cfg, images = _commands_journal(tmp_path)
    _write_journal(cfg, images[:5])
    write_snapshot(cfg, recover(cfg))
    _write_journal(cfg, images[5:])
    newest = write_snapshot(cfg, recover(cfg))
    assert newest == snapshot_store(cfg).path(len(images))
    return cfg, newest, recover(cfg).state_hashes()


def test_a_torn_newest_snapshot_falls_back_or_names_its_file(tmp_path: Path) -> None:
    """The newest exchange snapshot is damaged (a disk error, a copy cut short; the store
    keeps three so there is one to fall back to, and the journal holds everything after
    it). ``recover`` decodes it with no check and no context (procs/core/recovery.py
    ``recover``: ``msgspec.msgpack.decode(latest[1], ...)``): the router and ``ringex
    replay`` die with ``msgspec.DecodeError: Input data was truncated``, naming no file, at
    every restart, so the supervisor gives up on the instance and the operator cannot tell
    which of the many files under var/ to move aside.

    Expected: the state from the previous snapshot and the journal, or an error naming the
    snapshot's path. Actual: DecodeError("Input data was truncated").
    """
    cfg, newest, hashes = _two_snapshots(tmp_path)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    try:
        recovered = recover(cfg)
    except Exception as exc:  # which error is the finding
        assert str(newest) in str(exc), f"{type(exc).__name__}: {exc}"
    else:
        assert recovered.state_hashes() == hashes


def test_a_bit_flip_in_a_snapshot_is_not_loaded_as_state(tmp_path: Path) -> None:
    """Journal entries carry a CRC so that rot is an error, "never silently skipped"; the
    snapshot every restart starts from carries none (procs/common/snapshots.py,
    procs/core/recovery.py ``ExchangeSnapshot``). One flipped bit in a balance decodes
    fine: the router restarts with money created or destroyed (conservation broken) and a
    different state hash, and nothing says so.

    Expected: every single-bit flip in the snapshot is refused (or the previous snapshot
    used), never a different state. Actual: a flip decodes to a different state.
    """
    cfg, newest, hashes = _two_snapshots(tmp_path)
    data = newest.read_bytes()
    for at in range(min(len(data), 256)):
        damaged = bytearray(data)
        damaged[at] ^= 0x01
        newest.write_bytes(bytes(damaged))
        try:
            got = recover(cfg).state_hashes()
        except Exception:  # refusing it is right
            continue
        assert got == hashes, f"bit 0 of byte {at} flipped: recovered a different state"


# -- the operator commands ---------------------------------------------------------------------


def test_replay_of_a_corrupt_journal_is_a_message_naming_segment_and_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ringex replay`` on a journal with a bad entry in a sealed segment: the
    ``JournalCorruptError`` (which names the file and offset) escapes ``main`` as a
    traceback (procs/cli.py ``main`` catches only ConfigError; ``_replay`` nothing), as a
    bad profile did before its fix; the same for a snapshot past the journal's end.

    Expected: a non-zero exit status and one line on stderr naming the segment and offset.
    Actual: JournalCorruptError raised out of ``main``.
    """
    cfg, images = _commands_journal(tmp_path)
    _write_journal(cfg, images)
    (_first, segment), *_ = list_segments(journal_dir(cfg))
    offset = HEADER_SIZE + 3 * ENTRY + 20  # inside entry 4's image
    with open(segment, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff")
    try:
        code = _run_cli(monkeypatch, cfg, ["replay", "--quiet"])
    except Exception as exc:  # the finding
        pytest.fail(f"ringex replay ended in a traceback: {type(exc).__name__}: {exc}")
    err = capsys.readouterr().err
    assert code != 0 and str(segment) in err and str(HEADER_SIZE + 3 * ENTRY) in err, err


def test_status_of_a_crashed_supervisor_shows_no_process_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A supervisor killed (SIGKILL, the OOM killer) leaves status.json saying "running"
    with every process alive. ``ringex status`` sees that the supervisor is gone and says
    "stopped" (procs/cli.py ``_print_status``), but keeps the file's processes as they
    were: ``"alive": true`` in --json and "up" in the table, for pids that no longer exist.
    A script that checks the processes (or the operator) is told a dead router is up.

    Expected: a dead pid is never "alive"/"up". Actual: ``alive`` true, shown "up".
    """
    text = f'instance = "rvstatus{tmp_path.name[-6:]}"\nvar_dir = "{tmp_path}"\n'
    (tmp_path / "ringex.toml").write_text(text)
    cfg = load_profile(str(tmp_path / "ringex.toml"))
    Supervisor(cfg, "dev").write_status()
    doc = json.loads(status_path(cfg).read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    doc |= {"state": "running", "supervisor_pid": dead.pid}
    doc["processes"] = [
        {"name": "router", "pid": dead.pid, "alive": True, "ready": True, "cpus": [],
         "restarts": 0, "heartbeat_age_s": 0.1, "uptime_s": 30.0},
    ]  # fmt: skip
    status_path(cfg).write_text(json.dumps(doc))
    assert procs.cli.main(["status", "--config", str(tmp_path / "ringex.toml"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "stopped"
    assert [p["alive"] for p in shown["processes"]] == [False], shown["processes"]


_ADMIN_ON_A_FULL_RING = """
import sys, time
from config import load_profile
from procs.admin.client import AdminClient, AdminError
from procs.common.records import CreateAccount
from procs.common.record_codec import RecordCodec
from procs.common.topology import ADMIN_GATEWAY, gateway_commands
from shm import Ring

cfg = load_profile(sys.argv[1])
ring = Ring.attach(cfg.instance, gateway_commands(ADMIN_GATEWAY), RecordCodec())
producer = ring.producer()
for k in range(ring.capacity):  # earlier calls the stopped router never read
    producer.publish(CreateAccount(0, 0, ADMIN_GATEWAY, 0, k + 1, 1_000 + k))
producer.close()
ring.close()
client = AdminClient(cfg)
started = time.monotonic()
try:
    client.create_account(5, timeout_s=0.5)
except AdminError as exc:
    print(f"AdminError after {time.monotonic() - started:.1f} s: {exc}")
"""


def test_an_admin_call_times_out_when_the_admin_ring_is_full(tmp_path: Path, instance: str) -> None:
    """``AdminClient._call`` starts its ``timeout_s`` only after ``publish``, which waits
    without bound while the admin command ring is full (procs/admin/client.py ``_call``;
    ``halt`` too). A router that is down or hung leaves each unanswered call's command in
    the ring; once it holds ``capacity`` of them, ``ringex admin deposit`` (and any script
    retrying one with its idempotency key, as the timeout message says to) hangs forever
    instead of "no answer from the router within 0.5 s".

    Expected: AdminError within about the timeout. Actual: still waiting after 8 s.
    """
    (tmp_path / "ringex.toml").write_text(f'instance = "{instance}"\nvar_dir = "{tmp_path}"\n')
    made = [
        Ring.create(instance, gateway_commands(ADMIN_GATEWAY), CODEC, capacity=64,
                    consumers=[ROUTER]),
        Ring.create(instance, gateway_replies(ADMIN_GATEWAY), CODEC, capacity=64,
                    consumers=[gateway_consumer(ADMIN_GATEWAY)]),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            [sys.executable, "-c", _ADMIN_ON_A_FULL_RING, str(tmp_path / "ringex.toml")],
            check=False,
            capture_output=True,
            text=True,
            timeout=8,
            cwd=Path(__file__).resolve().parents[3],
        )
    except subprocess.TimeoutExpired:
        pytest.fail("ringex admin create-account (timeout 0.5 s) still waiting after 8 s")
    finally:
        for ring in made:
            ring.close()
    assert "AdminError" in done.stdout, done.stdout + done.stderr
